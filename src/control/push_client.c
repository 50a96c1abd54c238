/* The push protocol's client; see push_client.h and docs/protocol.md. */
#include "control/push_client.h"

#include "core/alloc.h"
#include "core/buf.h"
#include "core/container.h"
#include "core/log.h"
#include "core/loop.h"
#include "tls/ca.h"
#include "tls/spiffe.h"
#include "tls/h2.h"
#include "tls/tls.h"

#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>

#define MOD        "push-client"
#define READ_CHUNK 16384
#define TIMEOUT_MS 10000

struct pc_stream {
    struct veil_push_client *pc;
    struct pc_stream *prev, *next;
    int32_t id;
    bool watch;
    bool done;     /* its end callback ran (or must not run any more) */
    bool eof_out;  /* out holds the end of the request body */
    bool deferred; /* the data provider is waiting */
    int status;
    struct veil_buf out; /* request body not yet taken by nghttp2 */
    struct veil_buf in;  /* response body, or the partial update line */
    veil_push_response_cb on_response;
    veil_push_update_cb on_update;
    veil_push_end_cb on_end;
    void *arg;
};

struct veil_push_client {
    struct veil_tls_conn tls;
    struct veil_loop *loop;
    struct veil_tls_ctx *ctx;
    nghttp2_session *ng;
    struct pc_stream *streams;
    struct pc_stream *watch;
    struct veil_timer timer; /* connect deadline, then PING */
    struct veil_defer free_d;
    veil_push_connect_cb on_connect;
    void *arg;
    uint64_t ping_ms;
    bool connected;   /* TCP */
    bool established; /* TLS, ALPN and identity checked */
    bool dead;
    bool freed;
    bool ping_out;
    bool in_recv;    /* inside nghttp2_session_mem_recv(): do not send */
    char *server_id; /* expected, or NULL */
    char peer[VEIL_SPIFFE_ID_MAX + 1];
    char err[512];
};

/* ---- teardown ---- */

static void stream_free(struct pc_stream *s)
{
    struct veil_push_client *pc = s->pc;
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        pc->streams = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    if (pc->watch == s)
        pc->watch = NULL;
    veil_buf_free(&s->out);
    veil_buf_free(&s->in);
    veil_free(s);
}

static void pc_free_now(struct veil_defer *d)
{
    struct veil_push_client *pc = VEIL_CONTAINER_OF(d, struct veil_push_client, free_d);
    while (pc->streams != NULL)
        stream_free(pc->streams);
    nghttp2_session_del(pc->ng);
    veil_tls_conn_close(&pc->tls);
    veil_tls_ctx_free(pc->ctx);
    veil_free(pc->server_id);
    veil_free(pc);
}

/* Delivers the end of a stream once, unless the client was freed. */
static void stream_end(struct pc_stream *s, const char *err)
{
    struct veil_push_client *pc = s->pc;
    if (s->done)
        return;
    s->done = true;
    if (pc->freed)
        return;
    const char *body = "";
    size_t len = 0;
    if (veil_buf_append(&s->in, "", 1) == 0) {
        body = veil_buf_data(&s->in);
        len = veil_buf_len(&s->in) - 1;
    }
    if (s->watch) {
        if (s->on_end != NULL)
            s->on_end(pc, s->status,
                      err != NULL ? err
                      : len > 0   ? body
                                  : "the server ended the watch",
                      s->arg);
    } else if (s->on_response != NULL) {
        s->on_response(pc, err != NULL ? 0 : s->status, body, len, err, s->arg);
    }
}

/* The connection is dead: tell everyone waiting, once. */
static void pc_fail(struct veil_push_client *pc, const char *err)
{
    if (pc->dead)
        return;
    pc->dead = true;
    if (err != pc->err)
        snprintf(pc->err, sizeof(pc->err), "%s", err);
    VEIL_DEBUG(MOD, "%s", pc->err);
    veil_timer_stop(&pc->timer);
    veil_io_stop(&pc->tls.io);
    if (!pc->established && !pc->freed && pc->on_connect != NULL)
        pc->on_connect(pc, pc->err, pc->arg);
    for (struct pc_stream *s = pc->streams; s != NULL; s = s->next)
        stream_end(s, pc->err);
}

void veil_push_client_free(struct veil_push_client *pc)
{
    if (pc == NULL || pc->freed)
        return;
    pc->freed = true;
    pc->dead = true;
    veil_timer_stop(&pc->timer);
    veil_io_stop(&pc->tls.io);
    veil_loop_defer(pc->loop, &pc->free_d, pc_free_now);
}

/* ---- sending ---- */

static void pc_after(struct veil_push_client *pc)
{
    if (pc->dead || !pc->established || pc->in_recv)
        return;
    int rc = veil_tls_h2_flush(&pc->tls, pc->ng);
    if (rc == -EBADMSG) {
        pc_fail(pc, "HTTP/2 error");
        return;
    }
    if (rc == -ENOBUFS || rc == -ENOMEM) {
        pc_fail(pc, "output buffer full");
        return;
    }
    if (rc != 0) {
        snprintf(pc->err, sizeof(pc->err), "connection lost: %s", veil_tls_error(&pc->tls));
        pc_fail(pc, pc->err);
        return;
    }
    if (!nghttp2_session_want_read(pc->ng) && !nghttp2_session_want_write(pc->ng))
        pc_fail(pc, "the server closed the connection (GOAWAY)");
}

static ssize_t body_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *source, void *user)
{
    (void)ng;
    (void)id;
    (void)user;
    struct pc_stream *s = source->ptr;
    size_t n = veil_buf_len(&s->out);
    if (n > length)
        n = length;
    if (n > 0) {
        memcpy(buf, veil_buf_data(&s->out), n);
        veil_buf_consume(&s->out, n);
    }
    if (veil_buf_is_empty(&s->out)) {
        if (s->eof_out) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
        } else if (n == 0) {
            s->deferred = true;
            return NGHTTP2_ERR_DEFERRED;
        }
    }
    return (ssize_t)n;
}

static struct pc_stream *stream_new(struct veil_push_client *pc, const char *path, size_t out_max,
                                    size_t in_max)
{
    if (pc->dead) {
        errno = ENOTCONN;
        return NULL;
    }
    struct pc_stream *s = veil_calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->pc = pc;
    veil_buf_init(&s->out, out_max);
    veil_buf_init(&s->in, in_max);
    const nghttp2_nv nva[] = {
        {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":scheme", (uint8_t *)"https", 7, 5, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":authority", (uint8_t *)"veil-control", 10, 12, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":path", (uint8_t *)path, 5, strlen(path), NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type", (uint8_t *)"application/json", 12, 16, NGHTTP2_NV_FLAG_NONE},
    };
    nghttp2_data_provider dp = {.source.ptr = s, .read_callback = body_read};
    s->id = nghttp2_submit_request(pc->ng, NULL, nva, 5, &dp, s);
    if (s->id < 0) {
        veil_free(s);
        errno = EPROTO;
        return NULL;
    }
    s->next = pc->streams;
    if (pc->streams != NULL)
        pc->streams->prev = s;
    pc->streams = s;
    return s;
}

int veil_push_client_post(struct veil_push_client *pc, const char *path, const char *body,
                          size_t len, veil_push_response_cb cb, void *arg)
{
    if (len > VEIL_PUSH_BODY_MAX)
        return -EINVAL;
    struct pc_stream *s = stream_new(pc, path, VEIL_PUSH_BODY_MAX, VEIL_PUSH_BODY_MAX + 1);
    if (s == NULL)
        return -errno;
    s->on_response = cb;
    s->arg = arg;
    s->eof_out = true;
    if (veil_buf_append(&s->out, body, len) != 0) {
        nghttp2_submit_rst_stream(pc->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
        s->done = true;
        return -ENOMEM;
    }
    pc_after(pc);
    return 0;
}

static int watch_send(struct veil_push_client *pc, json_t *msg)
{
    struct pc_stream *s = pc->watch;
    char *text = msg != NULL ? json_dumps(msg, JSON_COMPACT) : NULL;
    json_decref(msg);
    if (text == NULL)
        return -ENOMEM;
    int rc = veil_buf_append(&s->out, text, strlen(text));
    if (rc == 0 && (rc = veil_buf_append(&s->out, "\n", 1)) != 0)
        veil_buf_reset(&s->out); /* never leave half a line */
    free(text);
    if (rc != 0)
        return rc;
    if (s->deferred) {
        s->deferred = false;
        nghttp2_session_resume_data(pc->ng, s->id);
    }
    pc_after(pc);
    return 0;
}

int veil_push_client_watch(struct veil_push_client *pc, uint64_t version, bool observer,
                           veil_push_update_cb on_update, veil_push_end_cb on_end, void *arg)
{
    if (pc->watch != NULL)
        return -EBUSY;
    struct pc_stream *s = stream_new(pc, "/v1/watch", VEIL_PUSH_LINE_MAX, VEIL_PUSH_PENDING_MAX);
    if (s == NULL)
        return -errno;
    s->watch = true;
    s->on_update = on_update;
    s->on_end = on_end;
    s->arg = arg;
    pc->watch = s;
    return watch_send(pc, json_pack("{s:s, s:I, s:b}", "type", "subscribe", "version",
                                    (json_int_t)version, "observer", observer));
}

int veil_push_client_ack(struct veil_push_client *pc, uint64_t version)
{
    if (pc->watch == NULL || pc->dead)
        return -ENOTCONN;
    return watch_send(pc, json_pack("{s:s, s:I}", "type", "ack", "version", (json_int_t)version));
}

int veil_push_client_nack(struct veil_push_client *pc, uint64_t version, const char *reason)
{
    if (pc->watch == NULL || pc->dead)
        return -ENOTCONN;
    return watch_send(pc, json_pack("{s:s, s:I, s:s}", "type", "nack", "version",
                                    (json_int_t)version, "reason", reason != NULL ? reason : ""));
}

const char *veil_push_client_server_id(const struct veil_push_client *pc)
{
    return pc->established ? pc->peer : "";
}

/* ---- nghttp2 callbacks ---- */

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    (void)flags;
    (void)user;
    struct pc_stream *s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (s != NULL && f->hd.type == NGHTTP2_HEADERS && namelen == 7 &&
        memcmp(name, ":status", 7) == 0 && valuelen == 3)
        s->status = (value[0] - '0') * 100 + (value[1] - '0') * 10 + (value[2] - '0');
    return 0;
}

static void watch_lines(struct pc_stream *s)
{
    struct veil_push_client *pc = s->pc;
    while (!s->done && !pc->freed && !veil_buf_is_empty(&s->in)) {
        char *data = veil_buf_data(&s->in);
        char *nl = memchr(data, '\n', veil_buf_len(&s->in));
        if (nl == NULL)
            return;
        *nl = '\0';
        size_t n = (size_t)(nl - data);
        if (n > 0 && s->on_update != NULL)
            s->on_update(pc, data, n, s->arg);
        if (s->pc->freed || s->done)
            return;
        veil_buf_consume(&s->in, n + 1);
    }
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    (void)flags;
    (void)user;
    struct pc_stream *s = nghttp2_session_get_stream_user_data(ng, id);
    if (s == NULL || s->done)
        return 0;
    if (veil_buf_append(&s->in, data, len) != 0) {
        stream_end(s, "response too large");
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
        return 0;
    }
    if (s->watch && s->status == 200)
        watch_lines(s);
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    struct veil_push_client *pc = user;
    if (f->hd.type == NGHTTP2_PING && (f->hd.flags & NGHTTP2_FLAG_ACK))
        pc->ping_out = false;
    if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
        !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct pc_stream *s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (s != NULL)
        stream_end(s, s->watch && s->status == 200 ? "the server ended the watch" : NULL);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *user)
{
    (void)user;
    struct pc_stream *s = nghttp2_session_get_stream_user_data(ng, id);
    if (s == NULL)
        return 0;
    char err[128];
    snprintf(err, sizeof(err), "stream reset by the server: %s", nghttp2_http2_strerror(code));
    stream_end(s, err);
    stream_free(s);
    return 0;
}

static int make_session(struct veil_push_client *pc)
{
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        return -ENOMEM;
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    int rv = nghttp2_session_client_new(&pc->ng, cbs, pc);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0)
        return -ENOMEM;
    const nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1024 * 1024},
    };
    return nghttp2_submit_settings(pc->ng, NGHTTP2_FLAG_NONE, iv, 2) == 0 ? 0 : -ENOMEM;
}

/* ---- connection life ---- */

static bool control_id_ok(const struct veil_push_client *pc)
{
    if (pc->server_id != NULL)
        return strcmp(pc->peer, pc->server_id) == 0;
    size_t n = strlen(pc->peer), pre = strlen("spiffe://"), suf = strlen(VEIL_PUSH_CONTROL_PATH);
    if (n <= pre + suf || strncmp(pc->peer, "spiffe://", pre) != 0 ||
        strcmp(pc->peer + n - suf, VEIL_PUSH_CONTROL_PATH) != 0)
        return false;
    char td[VEIL_SPIFFE_TD_MAX + 1];
    if (n - pre - suf > VEIL_SPIFFE_TD_MAX)
        return false;
    memcpy(td, pc->peer + pre, n - pre - suf);
    td[n - pre - suf] = '\0';
    return veil_spiffe_valid_trust_domain(td);
}

static void pc_timer(struct veil_timer *t)
{
    struct veil_push_client *pc = VEIL_CONTAINER_OF(t, struct veil_push_client, timer);
    if (!pc->established) {
        pc_fail(pc, "connect timed out");
        return;
    }
    if (pc->ping_out) {
        pc_fail(pc, "the server does not answer PING");
        return;
    }
    pc->ping_out = nghttp2_submit_ping(pc->ng, NGHTTP2_FLAG_NONE, NULL) == 0;
    pc_after(pc);
}

/* Connect and handshake; 0 when established, -EAGAIN, or -1 (failed). */
static int pc_establish(struct veil_push_client *pc, uint32_t events)
{
    if (!pc->connected) {
        if (!(events & (VEIL_IO_WRITE | VEIL_IO_ERROR)))
            return -EAGAIN;
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        if (getsockopt(veil_io_fd(&pc->tls.io), SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
            soerr = errno;
        if (soerr != 0) {
            snprintf(pc->err, sizeof(pc->err), "connect: %s", strerror(soerr));
            pc_fail(pc, pc->err);
            return -1;
        }
        pc->connected = true;
    }
    char err[256];
    int rc = veil_tls_handshake(&pc->tls, err, sizeof(err));
    if (rc == -EAGAIN)
        return rc;
    if (rc != 0) {
        pc_fail(pc, err);
        return -1;
    }
    if (!veil_tls_alpn_is_h2(&pc->tls)) {
        pc_fail(pc, "the server did not agree to ALPN h2");
        return -1;
    }
    if (veil_tls_peer_uri(&pc->tls, pc->peer, sizeof(pc->peer)) != 0 || !control_id_ok(pc)) {
        snprintf(pc->err, sizeof(pc->err), "unexpected server identity \"%.200s\" (want %.200s)",
                 pc->peer, pc->server_id != NULL ? pc->server_id : "spiffe://*/veil/control");
        pc_fail(pc, pc->err);
        return -1;
    }
    pc->established = true;
    veil_timer_start(pc->loop, &pc->timer, pc->ping_ms, pc->ping_ms, pc_timer);
    if (pc->on_connect != NULL)
        pc->on_connect(pc, NULL, pc->arg);
    return 0;
}

static void pc_io(struct veil_io *io, uint32_t events)
{
    struct veil_push_client *pc = VEIL_CONTAINER_OF(io, struct veil_push_client, tls.io);
    if (pc->dead)
        return;
    if (!pc->established && pc_establish(pc, events) != 0)
        return;
    uint8_t buf[READ_CHUNK];
    while (!pc->dead) {
        ssize_t n = veil_tls_read(&pc->tls, buf, sizeof(buf));
        if (n == -EAGAIN)
            break;
        if (n <= 0) {
            snprintf(pc->err, sizeof(pc->err), "%s%s",
                     n == 0 ? "the server closed the connection" : "connection lost: ",
                     n == 0 ? "" : veil_tls_error(&pc->tls));
            pc_fail(pc, pc->err);
            return;
        }
        pc->in_recv = true;
        ssize_t rv = nghttp2_session_mem_recv(pc->ng, buf, (size_t)n);
        pc->in_recv = false;
        if (rv < 0) {
            pc_fail(pc, nghttp2_strerror((int)rv));
            return;
        }
    }
    pc_after(pc);
}

static int open_socket(const char *addr, uint16_t port, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%u", (unsigned)(port != 0 ? port : VEIL_PUSH_PORT));
    if (addr == NULL || getaddrinfo(addr, portstr, &hints, &ai) != 0 || ai == NULL) {
        snprintf(err, errlen, "bad control plane address %s (a numeric IP address)",
                 addr != NULL ? addr : "(none)");
        return -EINVAL;
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int rc = fd;
    if (fd < 0 || (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0 && errno != EINPROGRESS)) {
        rc = -errno;
        snprintf(err, errlen, "connect to %s port %s: %s", addr, portstr, strerror(errno));
        if (fd >= 0)
            close(fd);
    }
    freeaddrinfo(ai);
    return rc;
}

struct veil_push_client *veil_push_client_connect(struct veil_loop *loop,
                                                  const struct veil_push_client_opts *opts,
                                                  veil_push_connect_cb cb, void *arg, char *err,
                                                  size_t errlen)
{
    struct veil_push_client *pc = veil_calloc(1, sizeof(*pc));
    if (pc == NULL)
        return NULL;
    pc->loop = loop;
    pc->on_connect = cb;
    pc->arg = arg;
    pc->ping_ms = opts->ping_ms != 0 ? opts->ping_ms : VEIL_PUSH_PING_MS;
    struct veil_tls_ctx_opts to = {
        .role = VEIL_TLS_CLIENT,
        .cert_pem = opts->cert_pem,
        .key_pem = opts->key_pem,
        .trust_bundle_pem = opts->trust_bundle_pem,
        .root_pin = opts->root_pin,
    };
    int rc = -EINVAL;
    if ((opts->server_id != NULL && (pc->server_id = veil_strdup(opts->server_id)) == NULL) ||
        (pc->ctx = veil_tls_ctx_new(&to, err, errlen)) == NULL)
        rc = -errno;
    else if ((rc = make_session(pc)) == 0 &&
             (rc = open_socket(opts->addr, opts->port, err, errlen)) >= 0)
        rc = veil_tls_conn_init(&pc->tls, pc->ctx, loop, rc, pc_io);
    if (rc == 0)
        rc = veil_timer_start(loop, &pc->timer, opts->timeout_ms ? opts->timeout_ms : TIMEOUT_MS, 0,
                              pc_timer);
    if (rc != 0) {
        if (rc == -ENOMEM && err != NULL && errlen > 0)
            snprintf(err, errlen, "out of memory");
        veil_timer_stop(&pc->timer);
        nghttp2_session_del(pc->ng);
        veil_tls_conn_close(&pc->tls);
        veil_tls_ctx_free(pc->ctx);
        veil_free(pc->server_id);
        veil_free(pc);
        errno = -rc;
        return NULL;
    }
    return pc;
}

/* ---- blocking wrappers ---- */

struct call {
    struct veil_loop *loop;
    struct veil_timer timer;
    const char *path;
    const char *body;
    /* Makes the body once connected, knowing the trust domain (or NULL
     * with err set). Returns a malloc'd string. */
    char *(*make_body)(struct call *c, const char *td);
    void *arg;
    int rc;
    int status;
    char *resp;
    char err[512];
};

static void call_response(struct veil_push_client *pc, int status, const char *body, size_t len,
                          const char *err, void *arg)
{
    (void)pc;
    struct call *c = arg;
    if (err != NULL) {
        c->rc = -EPROTO;
        snprintf(c->err, sizeof(c->err), "%s", err);
    } else {
        c->rc = 0;
        c->status = status;
        c->resp = veil_strndup(body, len);
        if (c->resp == NULL)
            c->rc = -ENOMEM;
    }
    veil_loop_stop(c->loop);
}

static void call_connected(struct veil_push_client *pc, const char *err, void *arg)
{
    struct call *c = arg;
    if (err != NULL) {
        c->rc = -EPROTO;
        snprintf(c->err, sizeof(c->err), "%s", err);
        veil_loop_stop(c->loop);
        return;
    }
    char td[VEIL_SPIFFE_TD_MAX + 1] = "";
    const char *id = veil_push_client_server_id(pc);
    id = strncmp(id, "spiffe://", 9) == 0 ? id + 9 : "";
    const char *slash = strchr(id, '/');
    if (slash != NULL && (size_t)(slash - id) <= VEIL_SPIFFE_TD_MAX) {
        memcpy(td, id, (size_t)(slash - id));
        td[slash - id] = '\0';
    }
    char *made = c->make_body != NULL ? c->make_body(c, td) : NULL;
    const char *body = c->make_body != NULL ? made : c->body;
    int rc = body == NULL
                 ? -EINVAL
                 : veil_push_client_post(pc, c->path, body, strlen(body), call_response, c);
    free(made);
    if (rc != 0) {
        c->rc = rc;
        if (c->err[0] == '\0')
            snprintf(c->err, sizeof(c->err), "cannot send the request: %s", strerror(-rc));
        veil_loop_stop(c->loop);
    }
}

static void call_timeout(struct veil_timer *t)
{
    struct call *c = VEIL_CONTAINER_OF(t, struct call, timer);
    c->rc = -ETIMEDOUT;
    snprintf(c->err, sizeof(c->err), "no answer from the control plane in time");
    veil_loop_stop(c->loop);
}

static int call_run(struct call *c, const struct veil_push_client_opts *opts, char *err,
                    size_t errlen)
{
    c->rc = -EPROTO;
    c->loop = veil_loop_new("push-client");
    if (c->loop == NULL) {
        snprintf(err, errlen, "cannot make a loop: %s", strerror(errno));
        return -errno;
    }
    struct veil_push_client *pc =
        veil_push_client_connect(c->loop, opts, call_connected, c, c->err, sizeof(c->err));
    if (pc == NULL) {
        c->rc = -errno;
    } else {
        veil_timer_start(c->loop, &c->timer, 2 * (opts->timeout_ms ? opts->timeout_ms : TIMEOUT_MS),
                         0, call_timeout);
        veil_loop_run(c->loop);
        veil_timer_stop(&c->timer);
        veil_push_client_free(pc);
    }
    veil_loop_free(c->loop);
    if (c->rc != 0)
        snprintf(err, errlen, "%s", c->err);
    return c->rc;
}

int veil_push_call(const struct veil_push_client_opts *opts, const char *path, const char *body,
                   int *status, char **resp_body, char *err, size_t errlen)
{
    struct call c = {.path = path, .body = body};
    int rc = call_run(&c, opts, err, errlen);
    *status = c.status;
    *resp_body = c.resp;
    return rc;
}

/* The string member `key` of the JSON text, veil_malloc'd, or NULL. */
static char *json_member(const char *text, const char *key)
{
    json_t *root = json_loads(text, 0, NULL);
    const char *v = NULL;
    char *out = NULL;
    if (root != NULL && json_unpack(root, "{s:s}", key, &v) == 0)
        out = veil_strdup(v);
    json_decref(root);
    return out;
}

/* Maps a non-200 answer to -errno and err. */
static int answer_error(const struct call *c, char *err, size_t errlen)
{
    char *msg = json_member(c->resp, "error");
    snprintf(err, errlen, "control plane answered %d: %s", c->status,
             msg != NULL ? msg : "(no reason)");
    veil_free(msg);
    return c->status == 403 || c->status == 401 ? -EACCES : -EPROTO;
}

struct keyed {
    const char *a, *b; /* join: token secret, node; certificate: ns, sa */
    char *key_pem;
};

static char *join_body(struct call *c, const char *td)
{
    struct keyed *k = c->arg;
    char id[VEIL_SPIFFE_ID_MAX + 1];
    char *csr = NULL;
    if (veil_spiffe_node_id(id, sizeof(id), td, k->b) != 0) {
        snprintf(c->err, sizeof(c->err), "invalid node name \"%s\"", k->b);
        return NULL;
    }
    if (veil_csr_new(id, &k->key_pem, &csr, c->err, sizeof(c->err)) != 0)
        return NULL;
    json_t *req = json_pack("{s:s, s:s, s:s}", "token", k->a, "node", k->b, "csr", csr);
    veil_free(csr);
    char *text = req != NULL ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    return text;
}

static char *cert_body(struct call *c, const char *td)
{
    struct keyed *k = c->arg;
    char id[VEIL_SPIFFE_ID_MAX + 1];
    char *csr = NULL;
    if (veil_spiffe_workload_id(id, sizeof(id), td, k->a, k->b) != 0) {
        snprintf(c->err, sizeof(c->err), "invalid identity %s/%s", k->a, k->b);
        return NULL;
    }
    if (veil_csr_new(id, &k->key_pem, &csr, c->err, sizeof(c->err)) != 0)
        return NULL;
    json_t *req =
        json_pack("{s:s, s:s, s:s}", "namespace", k->a, "serviceAccount", k->b, "csr", csr);
    veil_free(csr);
    char *text = req != NULL ? json_dumps(req, JSON_COMPACT) : NULL;
    json_decref(req);
    return text;
}

static void free_key(char **key)
{
    if (*key != NULL) {
        OPENSSL_cleanse(*key, strlen(*key));
        veil_free(*key);
        *key = NULL;
    }
}

void veil_push_join_result_free(struct veil_push_join_result *r)
{
    if (r == NULL)
        return;
    free_key(&r->key_pem);
    veil_free(r->cert_pem);
    veil_free(r->trust_bundle_pem);
    veil_free(r->control_id);
    memset(r, 0, sizeof(*r));
}

int veil_push_join(const struct veil_push_client_opts *opts, const char *token, const char *node,
                   struct veil_push_join_result *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    const char *dot = token != NULL ? strchr(token, '.') : NULL;
    if (dot == NULL || dot == token || strlen(dot + 1) != VEIL_TLS_PIN_HEX_LEN ||
        (size_t)(dot - token) > VEIL_PUSH_TOKEN_SECRET_MAX) {
        snprintf(err, errlen, "a join token looks like <secret>.<64 hex digits>");
        return -EINVAL;
    }
    char secret[VEIL_PUSH_TOKEN_SECRET_MAX + 1];
    memcpy(secret, token, (size_t)(dot - token));
    secret[dot - token] = '\0';
    struct veil_push_client_opts o = {
        .addr = opts->addr,
        .port = opts->port,
        .root_pin = dot + 1,
        .timeout_ms = opts->timeout_ms,
    };
    struct keyed k = {.a = secret, .b = node};
    struct call c = {.path = "/v1/join", .make_body = join_body, .arg = &k};
    int rc = call_run(&c, &o, err, errlen);
    OPENSSL_cleanse(secret, sizeof(secret));
    if (rc == 0 && c.status != 200)
        rc = answer_error(&c, err, errlen);
    if (rc == 0) {
        out->cert_pem = json_member(c.resp, "certificate");
        out->trust_bundle_pem = json_member(c.resp, "trustBundle");
        out->control_id = json_member(c.resp, "controlIdentity");
        out->key_pem = k.key_pem;
        k.key_pem = NULL;
        if (out->cert_pem == NULL || out->trust_bundle_pem == NULL || out->control_id == NULL) {
            snprintf(err, errlen, "malformed join answer from the control plane");
            veil_push_join_result_free(out);
            rc = -EPROTO;
        }
    }
    free_key(&k.key_pem);
    veil_free(c.resp);
    return rc;
}

int veil_push_request_certificate(const struct veil_push_client_opts *opts, const char *ns,
                                  const char *sa, char **key_pem, char **cert_pem,
                                  char **bundle_pem, char *err, size_t errlen)
{
    *key_pem = *cert_pem = NULL;
    if (bundle_pem != NULL)
        *bundle_pem = NULL;
    struct keyed k = {.a = ns, .b = sa};
    struct call c = {.path = "/v1/certificates", .make_body = cert_body, .arg = &k};
    int rc = call_run(&c, opts, err, errlen);
    if (rc == 0 && c.status != 200)
        rc = answer_error(&c, err, errlen);
    if (rc == 0) {
        *cert_pem = json_member(c.resp, "certificate");
        if (bundle_pem != NULL)
            *bundle_pem = json_member(c.resp, "trustBundle");
        if (*cert_pem == NULL) {
            snprintf(err, errlen, "malformed certificate answer from the control plane");
            rc = -EPROTO;
        } else {
            *key_pem = k.key_pem;
            k.key_pem = NULL;
        }
    }
    free_key(&k.key_pem);
    veil_free(c.resp);
    return rc;
}
