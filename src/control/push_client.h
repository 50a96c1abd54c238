/*
 * The client side of the push protocol (docs/protocol.md): one HTTP/2
 * connection over mutual TLS to the control plane, on an event loop. Used
 * by the node proxy and by `veil debug watch`; blocking wrappers, which run
 * a private loop, serve the CLI and tests.
 *
 * Callbacks run on the loop's thread. Every call returns 0 or -errno
 * (docs/internals.md); callbacks get `err` NULL on success or a static or
 * client-owned string naming the reason (valid during the callback).
 * Strings returned through `char **` are veil_malloc'd and the caller's.
 */
#ifndef VEIL_CONTROL_PUSH_CLIENT_H
#define VEIL_CONTROL_PUSH_CLIENT_H

#include "control/push-t.h"
#include "core/loop-t.h"

#include <stddef.h>

/* Called once: err NULL when TLS and HTTP/2 are up and the server's
 * identity is verified; else the connection is dead (free the client). */
typedef void (*veil_push_connect_cb)(struct veil_push_client *pc, const char *err, void *arg);

/* A unary call's end: the HTTP status and body (NUL-terminated, len bytes)
 * or, with status 0, err. */
typedef void (*veil_push_response_cb)(struct veil_push_client *pc, int status, const char *body,
                                      size_t len, const char *err, void *arg);

/* One update line from a watch (without the newline, NUL-terminated). */
typedef void (*veil_push_update_cb)(struct veil_push_client *pc, const char *json, size_t len,
                                    void *arg);

/* The watch ended: err names why (the connection or stream closed, the
 * server refused the subscription with a status). */
typedef void (*veil_push_end_cb)(struct veil_push_client *pc, int status, const char *err,
                                 void *arg);

/*
 * Starts connecting. Returns the client, or NULL with errno set (EINVAL
 * with a reason in err for bad options; the socket's errno). Requests may
 * be queued at once; they go out after the handshake.
 */
struct veil_push_client *veil_push_client_connect(struct veil_loop *loop,
                                                  const struct veil_push_client_opts *opts,
                                                  veil_push_connect_cb cb, void *arg, char *err,
                                                  size_t errlen);

/* Closes the connection; pending callbacks are not called any more. May be
 * called from the client's own callbacks (the memory goes at the end of
 * the loop iteration). NULL is a no-op. */
void veil_push_client_free(struct veil_push_client *pc);

/* The peer identity checked at the handshake ("" before). */
const char *veil_push_client_server_id(const struct veil_push_client *pc);

/* POST `path` with a JSON body (copied; at most VEIL_PUSH_BODY_MAX bytes);
 * cb runs once. Response bodies over VEIL_PUSH_BODY_MAX fail the call. */
int veil_push_client_post(struct veil_push_client *pc, const char *path, const char *body,
                          size_t len, veil_push_response_cb cb, void *arg);

/* Opens the watch stream (one per client): subscribes from `version`;
 * on_update runs for each update line, on_end once at the end. */
int veil_push_client_watch(struct veil_push_client *pc, uint64_t version, bool observer,
                           veil_push_update_cb on_update, veil_push_end_cb on_end, void *arg);

/* Acknowledge / reject a version on the watch stream. -ENOTCONN without a
 * watch; -ENOBUFS if the stream's queue is full. */
int veil_push_client_ack(struct veil_push_client *pc, uint64_t version);
int veil_push_client_nack(struct veil_push_client *pc, uint64_t version, const char *reason);

/* ---- blocking wrappers (private loop; not from a loop callback) ---- */

/* One POST; *status and *body (veil_malloc'd) on a response. Returns 0 if a
 * response came (whatever its status), else -errno with err set. */
int veil_push_call(const struct veil_push_client_opts *opts, const char *path, const char *body,
                   int *status, char **resp_body, char *err, size_t errlen);

/* What a join gives: the node's key and certificate (leaf + chain), the
 * trust bundle and the control plane's identity. */
struct veil_push_join_result {
    char *key_pem;
    char *cert_pem;
    char *trust_bundle_pem;
    char *control_id;
};
void veil_push_join_result_free(struct veil_push_join_result *r);

/*
 * Joins as `node` with `token` ("<secret>.<root pin>", as printed by the
 * control plane): makes a key and CSR, verifies the server against the pin,
 * and returns the signed certificate. opts needs addr and port only (the
 * rest is ignored). Returns 0, or -errno with err set (-EACCES for a
 * refused token, -EPROTO for a failed handshake or response).
 */
int veil_push_join(const struct veil_push_client_opts *opts, const char *token, const char *node,
                   struct veil_push_join_result *out, char *err, size_t errlen);

/* Asks for the certificate of ns/sa with the node certificate of opts;
 * *key_pem, *cert_pem (leaf + chain), *bundle_pem (may be NULL). 0, or
 * -EACCES when refused (err holds the server's reason), or -errno. */
int veil_push_request_certificate(const struct veil_push_client_opts *opts, const char *ns,
                                  const char *sa, char **key_pem, char **cert_pem,
                                  char **bundle_pem, char *err, size_t errlen);

#endif
