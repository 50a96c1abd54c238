/*
 * HBONE: TCP tunnels as HTTP/2 CONNECT streams over mutual TLS 1.3 (ALPN
 * h2, port 15008), wire-compatible with Istio's ztunnel. The wire format,
 * limits and counters are in docs/hbone.md.
 *
 * Levels: an h2c is one mTLS connection (HTTP/2 session); an h2s is one
 * stream on it, carrying one TCP tunnel. Many h2s share one h2c.
 *
 * An open h2s is an L4 end (l4/pump.h) through veil_hbone_h2s_end(), so the
 * pump moves bytes between it and a TCP socket. The stream's HTTP/2
 * flow-control window is given back only as bytes are read: a pump that
 * cannot pass bytes on stops the sender (at most limits.stream_window bytes
 * wait per stream). The connection's window is given back as bytes arrive,
 * so a stream nobody reads does not stop the other streams of its h2c. An
 * idle stream holds no buffer memory.
 * shutdown_write sends END_STREAM; the peer's END_STREAM reads as EOF; a
 * RST_STREAM or a lost h2c reads (and writes) as -ECONNRESET. close(abort)
 * sends RST_STREAM(CANCEL) if the stream is still open; a graceful close
 * lets the bytes accepted so far go out first, then ends the stream (RST
 * NO_ERROR if the peer has not finished its side).
 *
 * Everything runs on the loop thread of the server or pool; the stats
 * functions may be called from any thread. Callbacks never run from inside
 * the call that caused them, except where said so (pool and server free).
 */
#ifndef VEIL_HBONE_HBONE_H
#define VEIL_HBONE_HBONE_H

#include "core/loop-t.h"
#include "hbone/hbone-t.h"
#include "l4/pump-t.h"
#include "tls/tls-t.h"

/* ---- streams (both sides) ---- */

/* The L4 end of an open tunnel: after veil_hbone_h2s_respond(h2s, 200)
 * returned 0 (server), or in the pool's callback with status 200 (client).
 * Whoever holds the h2s then owns the end: hand it to a pump, or release
 * it with end->ops->close(end, abort). The h2s pointer is dead after that. */
struct veil_l4_end *veil_hbone_h2s_end(struct veil_hbone_h2s *h2s);

/* The authority ("ip:port") of the stream. */
const char *veil_hbone_h2s_authority(const struct veil_hbone_h2s *h2s);

/* ---- server ---- */

/* Makes a server. Returns NULL with errno set (EINVAL: no tls or no
 * on_connect; ENOMEM). */
struct veil_hbone_server *veil_hbone_server_new(struct veil_loop *loop,
                                                const struct veil_hbone_server_opts *opts);

/*
 * Takes `fd`, a TCP connection just accepted (non-blocking), which the
 * server owns from now on (closed on failure too), and serves it: TLS
 * handshake within limits.handshake_ms with a verified client certificate,
 * ALPN h2 and a SPIFFE ID in it; then HTTP/2. Every valid CONNECT (method
 * CONNECT, an ":authority" "ip:port" with an IPv4 or bracketed IPv6 literal
 * and a port 1-65535, no :scheme nor :path) goes to on_connect. Invalid
 * requests are answered 400 (counted as bad_requests) without bothering the
 * application. A failed handshake or bad HTTP/2 closes that connection only.
 * Returns 0, or -errno (-ENOMEM) if the connection could not be set up.
 */
int veil_hbone_server_accept(struct veil_hbone_server *srv, int fd);

/*
 * Answers a CONNECT given to on_connect. Must be called exactly once per
 * h2s, from the loop thread, now or later (the client may have gone
 * meanwhile; then it fails).
 * - status 200 (tunnel open): returns 0 and the h2s is then an L4 end
 *   (veil_hbone_h2s_end()) owned by the caller; or -ECONNRESET if the stream
 *   or its h2c is gone, -ENOMEM: then the h2s is released (dead pointer).
 * - another status (400-599: 401, 403, 503, ...): the stream is ended with
 *   that status and no body; the h2s is released. Returns 0, -ECONNRESET
 *   if it was already gone, -EINVAL for a status outside 200-599.
 */
int veil_hbone_h2s_respond(struct veil_hbone_h2s *h2s, int status);

/* Swaps the TLS context used for new connections (certificate rotation).
 * Connections already open keep theirs. */
void veil_hbone_server_set_tls(struct veil_hbone_server *srv, struct veil_tls_ctx *tls);

/* Counters; any thread. */
void veil_hbone_server_stats(const struct veil_hbone_server *srv, struct veil_hbone_stats *out);

/*
 * Closes every connection and frees the server. Streams still waiting for
 * an answer and open tunnels stay valid handles: respond() fails with
 * -ECONNRESET, and open ends read and write -ECONNRESET (their users are
 * notified from the loop). NULL is a no-op.
 */
void veil_hbone_server_free(struct veil_hbone_server *srv);

/* ---- client: the pool ---- */

/* Makes a pool. opts may be NULL (defaults). NULL with errno = ENOMEM. */
struct veil_hbone_pool *veil_hbone_pool_new(struct veil_loop *loop,
                                            const struct veil_hbone_pool_opts *opts);

/*
 * Opens a tunnel: a CONNECT to d->authority on an h2c of d->key: one already
 * open with room for a stream (fewer than min(limits.max_streams, the
 * server's SETTINGS_MAX_CONCURRENT_STREAMS) streams), else a new one (TCP
 * connect through d->make_socket, TLS with d->tls, ALPN h2, and the server
 * certificate's URI SAN must equal d->server_id exactly, else the h2c fails
 * with "wrong server identity"). cb runs once, from the loop, never from
 * inside this call (see veil_hbone_connect_cb). A failed h2c fails all the
 * streams waiting on it.
 * d->headers go with this stream's CONNECT, after :method and :authority.
 * Returns the pending h2s (a handle for veil_hbone_h2s_cancel() until cb
 * runs; then the same pointer is the open tunnel on 200), or NULL with
 * errno set (EINVAL: a field missing, authority too long, headers refused
 * by veil_hbone_headers_check(); ENOMEM; the socket factory's error) and cb
 * is not called.
 */
struct veil_hbone_h2s *veil_hbone_pool_connect(struct veil_hbone_pool *pool,
                                               const struct veil_hbone_dial *d,
                                               veil_hbone_connect_cb cb, void *arg);

/* Gives up a connect whose cb has not run yet (the client left): cb is not
 * called; the stream is reset if it was sent. The h2s is dead after. */
void veil_hbone_h2s_cancel(struct veil_hbone_h2s *h2s);

/* Counters; any thread. */
void veil_hbone_pool_stats(const struct veil_hbone_pool *pool, struct veil_hbone_stats *out);

/*
 * Closes every h2c and frees the pool. The callbacks of connects still
 * pending run later, from the loop (at the latest in veil_loop_free()),
 * with err "pool closed" (or with 200 if the answer had already come).
 * Open tunnels stay valid ends that read and write -ECONNRESET (their users
 * are notified from the loop). NULL is a no-op.
 */
void veil_hbone_pool_free(struct veil_hbone_pool *pool);

/* ---- helpers ---- */

/* The value of the extra request header `name` (lower case) of a CONNECT
 * given to on_connect (the first one if it came more than once), or NULL.
 * Only the headers the server kept are seen (info->headers_dropped). */
const char *veil_hbone_connect_header(const struct veil_hbone_connect_info *info, const char *name);

/* Whether n extra headers are acceptable for a dial (see struct
 * veil_hbone_header and the bounds in hbone-t.h): 0 or -EINVAL. */
int veil_hbone_headers_check(const struct veil_hbone_header *h, size_t n);

/* Parses an HBONE authority, "a.b.c.d:port" or "[v6]:port" (port 1-65535,
 * nothing else), into *ss. 0 or -EINVAL. */
int veil_hbone_parse_authority(const char *s, size_t n, struct sockaddr_storage *ss,
                               socklen_t *len);

/* Formats sa (IPv4 or IPv6 with port) as an authority into buf (>=
 * VEIL_HBONE_AUTHORITY_MAX bytes). 0, -EINVAL or -ENOBUFS. */
int veil_hbone_format_authority(const struct sockaddr *sa, char *buf, size_t n);

#endif
