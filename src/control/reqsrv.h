/*
 * A one-request-per-connection server on the event loop, shared by the
 * control plane's admin socket (JSON over a Unix socket) and its status port
 * (HTTP/1.1 GET on 15014).
 *
 * Each accepted connection is read into a bounded buffer until `complete`
 * says a whole request is there; then `handle` runs (on the loop thread) and
 * its response is written; then the connection is closed. A request larger
 * than `max_request` or a peer silent for `timeout_ms` is dropped and
 * counted. Connections are freed through the loop's deferred close.
 */
#ifndef VEIL_CONTROL_REQSRV_H
#define VEIL_CONTROL_REQSRV_H

#include <stddef.h>
#include <stdint.h>

struct veil_loop;
struct veil_reqsrv;

struct veil_reqsrv_opts {
    /* Returns the length of the complete request at the start of `data`, or 0
     * while more bytes are needed. `eof` is true once the peer has shut down
     * its side: a handler may then accept what is there. */
    size_t (*complete)(const char *data, size_t len, int eof);
    /* Builds the response in *resp (veil_malloc'd; the server frees it).
     * Returning -errno (or *resp == NULL) closes without a response. */
    int (*handle)(void *ctx, const char *req, size_t len, char **resp, size_t *resp_len);
    void *ctx;
    size_t max_request; /* bytes; a bigger request is refused */
    uint64_t timeout_ms;
};

/* Serves on `listen_fd` (bound and listening; taken over and closed by
 * veil_reqsrv_free). Returns NULL with errno set on failure. */
struct veil_reqsrv *veil_reqsrv_new(struct veil_loop *loop, int listen_fd,
                                    const struct veil_reqsrv_opts *opts);
void veil_reqsrv_free(struct veil_reqsrv *srv);

/* Requests refused for size, timeout or a failed read. */
uint64_t veil_reqsrv_refused(const struct veil_reqsrv *srv);

/* ---- small HTTP/1.1 GET servers on top (status, metrics, readiness) ---- */

/* A veil_reqsrv_opts.complete for HTTP: the request ends at its blank line
 * (GET only: bodies are not read). */
size_t veil_reqsrv_http_complete(const char *data, size_t len, int eof);

/* An HTTP/1.1 response with Content-Type and Content-Length that closes the
 * connection, into *resp (veil_malloc'd) and *resp_len. 0 or -ENOMEM. */
int veil_reqsrv_http_reply(int code, const char *reason, const char *type, const char *body,
                           size_t body_len, char **resp, size_t *resp_len);

/* Listening sockets (non-blocking): return the fd or -errno; -EINVAL for an
 * address that is not a numeric IPv4 or IPv6 address. */
int veil_listen_tcp(const char *addr, uint16_t port, uint16_t *bound_port);
int veil_listen_unix(const char *path, unsigned mode);

#endif
