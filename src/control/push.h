/*
 * The control plane's push server: HTTP/2 over mutual TLS 1.3 on port 15012
 * (docs/protocol.md). It lets nodes join (POST /v1/join, with the join
 * token), signs workload certificates for them (POST /v1/certificates) and
 * streams configuration updates to them (POST /v1/watch), all on one event
 * loop, without blocking.
 *
 * Who may do what: /v1/join needs no client certificate; every other path
 * needs a certificate that chains to the CA's trust bundle and carries a
 * node identity spiffe://<td>/veil/node/<name> (else 401). The node name
 * always comes from that certificate. Workload certificates are signed only
 * for identities the provider says the node runs (may_have, else 403).
 *
 * Bad input (not TLS, a failed handshake, bad HTTP/2, bodies over the
 * limit, malformed JSON) is refused, logged at debug or warn, and counted;
 * it never stops the server.
 *
 * Threads: the server and all its callbacks (the provider's too) run on the
 * loop's thread; veil_push_server_stats() and veil_push_server_port() may
 * be called from any thread. The process must ignore SIGPIPE (OpenSSL
 * writes with write(2)).
 */
#ifndef VEIL_CONTROL_PUSH_H
#define VEIL_CONTROL_PUSH_H

#include "control/push-t.h"
#include "core/loop-t.h"

/*
 * Binds, listens and starts serving on `loop`. The options' strings are
 * copied; the CA, the provider's ctx and the metrics registry must outlive
 * the server. Returns NULL with errno set (EINVAL, with a reason in err, for
 * bad options or a CA that cannot issue the server certificate; the
 * socket's errno, e.g. EADDRINUSE; ENOMEM).
 */
struct veil_push_server *veil_push_server_new(struct veil_loop *loop,
                                              const struct veil_push_server_opts *opts, char *err,
                                              size_t errlen);

/*
 * Closes the listener and every connection (unsubscribing their
 * subscribers). On the loop's thread, not from a provider callback. NULL is
 * a no-op.
 */
void veil_push_server_free(struct veil_push_server *srv);

/* The bound port (useful with port 0). */
uint16_t veil_push_server_port(const struct veil_push_server *srv);

/* The server's identity, spiffe://<td>/veil/control. */
const char *veil_push_server_identity(const struct veil_push_server *srv);

/* The join token to give to joining nodes: "<secret>.<root pin>", the root
 * pin being the SHA-256 (hex) of the trust bundle's first certificate DER.
 * NULL if join is off. Valid until veil_push_server_free(). */
const char *veil_push_server_join_token(const struct veil_push_server *srv);

/*
 * The provider's state changed: polls every subscriber until it has nothing
 * more, queues the updates and sends them. A subscriber whose queue would
 * exceed limits.max_pending is disconnected (it resumes from its version).
 * On the loop's thread.
 */
void veil_push_server_notify(struct veil_push_server *srv);

/* A snapshot of the counters; any thread. */
void veil_push_server_stats(const struct veil_push_server *srv, struct veil_push_stats *out);

#endif
