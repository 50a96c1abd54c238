/*
 * HTTP/2 over a veil TLS connection: the one loop that moves the frames
 * nghttp2 has ready onto the socket, shared by the push protocol and HBONE.
 */
#ifndef VEIL_TLS_H2_H
#define VEIL_TLS_H2_H

#include "tls/tls-t.h"

#include <nghttp2/nghttp2.h>
#include <stddef.h>

/* Frames are pulled from nghttp2 while less than this is queued in TLS
 * (then one send: 48 KiB and a last frame of up to 16 KiB). */
#define VEIL_TLS_H2_OUT_HIGH (48 * 1024)

/*
 * Pulls frames from `ng` into `c` and writes them out, again and again while
 * the socket takes everything queued (a socket that took it all sends no
 * write event to come back on), until nghttp2 has nothing more or the
 * socket is full (then the io fires when it drains). Once all is sent and
 * nghttp2 has nothing more, the connection's buffers are released
 * (veil_tls_trim()).
 * Returns 0; -EBADMSG if nghttp2 failed; veil_tls_send()'s -ENOBUFS or
 * -ENOMEM; veil_tls_flush()'s -EPROTO or -ECONNRESET.
 */
int veil_tls_h2_flush(struct veil_tls_conn *c, nghttp2_session *ng);

#endif
