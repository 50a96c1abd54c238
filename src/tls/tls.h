/*
 * TLS for veil's mutual-TLS transports (the control plane's push port,
 * later HBONE): OpenSSL contexts with veil's settings, and non-blocking TLS
 * connections driven by the event loop.
 *
 * Settings: TLS 1.3 only; ALPN "h2" (a server refuses a client that offers
 * something else with no_application_protocol, a client refuses a server
 * that selects nothing); the peer's chain verifies against the trust
 * bundle, or, for a client that has no bundle yet, against a pinned root
 * (veil_tls_ctx_opts.root_pin). Expired or not-yet-valid certificates and
 * chains that do not reach a trusted root fail the handshake. Who the peer
 * is (its SPIFFE ID) is the caller's check, after the handshake.
 *
 * Returns follow docs/internals.md: 0 or a byte count, else -errno:
 * -EAGAIN (wait for the io to be ready, nothing lost), -EPROTO (a TLS or
 * verification failure; the reason is in err where there is one),
 * -ECONNRESET (the peer closed without close_notify or the socket failed),
 * -ENOBUFS (the output buffer is full), -ENOMEM, -EINVAL.
 *
 * Threads: a context may be shared by connections on several threads once
 * made; a connection belongs to the thread of its loop.
 */
#ifndef VEIL_TLS_TLS_H
#define VEIL_TLS_TLS_H

#include "tls/tls-t.h"

#include <stddef.h>
#include <sys/types.h>

/* ---- contexts ---- */

/* Makes a context. Returns NULL with errno set (EINVAL with a reason in err
 * for bad options, certificates or keys; ENOMEM). */
struct veil_tls_ctx *veil_tls_ctx_new(const struct veil_tls_ctx_opts *opts, char *err,
                                      size_t errlen);
void veil_tls_ctx_free(struct veil_tls_ctx *ctx);

/* The root pin of a PEM certificate (the first in `pem`): SHA-256 of its
 * DER as 64 lowercase hex digits, into hex (>= 65 bytes). 0 or -EINVAL. */
int veil_tls_cert_pin(const char *pem, char *hex, size_t hexlen);

/* ---- connections ---- */

/*
 * Sets up `c` (zeroed by the caller) for `fd`, a connected non-blocking
 * socket that `c` then owns, and starts watching it on `loop` with `cb`.
 * Returns 0 or -errno; on failure fd is closed and `c` is left so that
 * veil_tls_conn_close() is a no-op. `cb` runs on the io's events (through
 * the connection's own callback, which first notes that the socket may have
 * bytes again).
 *
 * I/O: OpenSSL reads the socket ahead (up to VEIL_TLS_READ_BUF per recv,
 * several records), and a short read marks the socket empty until the io
 * fires again, so veil_tls_read() returns -EAGAIN without a system call when
 * there is nothing to read. Records are sealed into a buffer of the
 * connection and sent with one send(MSG_NOSIGNAL) per flush; plaintext
 * shorter than VEIL_TLS_GATHER is gathered first, so a burst of small frames
 * becomes one record.
 */
int veil_tls_conn_init(struct veil_tls_conn *c, struct veil_tls_ctx *ctx, struct veil_loop *loop,
                       int fd, veil_io_cb cb);

/* Stops the io, frees the SSL and the buffer, closes the fd. Idempotent, and
 * a no-op on a zeroed `c` that was never set up. */
void veil_tls_conn_close(struct veil_tls_conn *c);

/* Drives the handshake: 0 once established (and every later call), -EAGAIN
 * to wait for the io, -EPROTO or -ECONNRESET on failure (reason in err). */
int veil_tls_handshake(struct veil_tls_conn *c, char *err, size_t errlen);

/* Reads decrypted bytes: > 0, 0 at the peer's close_notify, -EAGAIN,
 * -EPROTO, -ECONNRESET. Call until -EAGAIN: OpenSSL may hold bytes that the
 * io will not report again. */
ssize_t veil_tls_read(struct veil_tls_conn *c, void *buf, size_t n);

/* Queues `n` bytes for sending, all or nothing. 0, -ENOBUFS past
 * VEIL_TLS_OUT_MAX, -ENOMEM, -EPROTO (sealing failed). Nothing is sent
 * before veil_tls_flush(). */
int veil_tls_send(struct veil_tls_conn *c, const void *data, size_t n);

/* Frees the connection's buffers if they are empty and larger than
 * VEIL_TLS_GATHER (an idle connection keeps at most that much each; the
 * next send allocates again). */
void veil_tls_trim(struct veil_tls_conn *c);

/* veil_tls_trim(), and OpenSSL's record buffers go too unless a record is
 * pending (for contexts made with hold_buffers; the others free them after
 * every read and write). Call when the connection has gone quiet. */
void veil_tls_release(struct veil_tls_conn *c);

/* Bytes queued and not yet taken by the socket. */
size_t veil_tls_out_len(const struct veil_tls_conn *c);

/* Writes what is queued until done or the socket is full, and watches the
 * io for writability while something is left. 0 (even if bytes are left:
 * the io will fire), -EPROTO, -ECONNRESET. */
int veil_tls_flush(struct veil_tls_conn *c);

/* After a failure of read or flush: a short reason (e.g. OpenSSL's "sslv3
 * alert certificate expired"); static storage. */
const char *veil_tls_error(const struct veil_tls_conn *c);

/* After the handshake: whether ALPN agreed on "h2". */
bool veil_tls_alpn_is_h2(const struct veil_tls_conn *c);

/*
 * After the handshake: the peer certificate's SPIFFE ID (through
 * veil_spiffe_from_cert(), so a veil workload or node ID) into buf.
 * 0; -ENOENT if the peer sent no certificate; -EINVAL if it has no valid
 * veil ID; -ENOBUFS.
 */
int veil_tls_peer_id(const struct veil_tls_conn *c, char *buf, size_t n);

/* After the handshake: the peer certificate's one URI SAN, whatever it is
 * (for identities veil_spiffe_parse() does not know, like the control
 * plane's spiffe://<td>/veil/control). Same returns as veil_tls_peer_id(). */
int veil_tls_peer_uri(const struct veil_tls_conn *c, char *buf, size_t n);

#endif
