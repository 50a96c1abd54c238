/*
 * Tests of HTTP/2 (h2c with prior knowledge, gRPC) through the waypoint
 * engine (src/waypoint/h2.c, h2up.c), on one loop over loopback, as
 * engine_test.c: a client HBONE pool dials the waypoint's HBONE server with
 * the service VIP:port as authority; the client speaks HTTP/2 (nghttp2) on
 * that tunnel. The engine sends each stream on to one of two backend
 * "pods", HBONE servers on 127.0.0.2 and 127.0.0.3 whose tunnels are
 * served by an nghttp2 server session:
 *   /echo.Echo/Unary   gRPC: the request body back, then grpc-status 0
 *   /echo.Echo/Stream  gRPC: each DATA chunk echoed at once, grpc-status 0
 *                      after the request's end
 *   /reset             RST_STREAM(INTERNAL_ERROR) on the request head
 *   /slow...           200 after 1500 ms
 *   /fail              503 on pod-b (its request body is kept)
 *   /big               200 with BIG bytes
 *   anything else      200 "ok from <pod>"
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <nghttp2/nghttp2.h>

#include "core/alloc.h"
#include "core/container.h"
#include "core/log.h"
#include "core/loop.h"
#include "hbone/hbone.h"
#include "l4/pump.h"
#include "node/config.h"
#include "tls/ca.h"
#include "tls/tls.h"
#include "waypoint/waypoint.h"
#include "waypoint/wp-int.h"

#define GUARD_MS 20000
#define WP_ID    "spiffe://cluster.local/ns/default/sa/waypoint"
#define POD_ID   "spiffe://cluster.local/ns/default/sa/web"
#define CLI_ID   "spiffe://cluster.local/ns/default/sa/client"
#define VIP      "198.19.0.10"
#define NMSG     100
#define BIG      (2 * 1024 * 1024)

struct ident {
    char *key, *cert;
};

/* HTTP/2 on an L4 end (the client's and the pods'). */
struct h2io {
    nghttp2_session *ng;
    struct veil_l4_end *end;
    char *out;
    size_t outlen, outcap;
    bool eof, closed;
};

/* A stream a pod serves. */
struct pstream {
    struct pod_conn *pc;
    int32_t id;
    char path[128];
    char body[262144];
    size_t blen, boff;
    bool req_end, resp_end, streaming;
    size_t big_left; /* /big: bytes still to send (made up on the fly) */
    struct veil_timer delay;
    struct pstream *next;
};

struct pod_conn {
    struct h2io io;
    struct pod *pod;
    struct pstream *streams;
    struct pod_conn *next;
};

struct pod {
    const char *name;
    struct veil_hbone_server *srv;
    int lfd;
    struct veil_io lio;
    struct env *env;
    int requests, tunnels;
    char last_path[128], last_added[64]; /* the last request's :path and x-added */
    size_t body_bytes;                   /* request DATA received, all streams */
};

/* A client stream. */
struct cstream {
    int32_t id;
    int status;
    char grpc_status[8];
    char body[262144];
    size_t blen;
    char send[262144];
    size_t slen, soff;
    bool send_eof, closed;
    uint32_t rst;
    int echo_step; /* streaming: messages sent so far */
    char location[256], via[32];
    bool x_pod; /* the response had x-pod */
};

struct env {
    char dir[64];
    struct veil_ca *ca;
    struct ident wp_id, pod_id, cli_id;
    struct veil_tls_ctx *wp_srv, *wp_cli, *pod_srv, *cli;
    struct veil_loop *loop;
    struct veil_node_cfg cfg;
    struct veil_hbone_pool *wp_pool, *cli_pool;
    struct veil_hbone_server *wp_srv_h;
    int wp_lfd;
    struct veil_io wp_lio;
    uint16_t wp_port, pod_port;
    struct pod pods[2];
    struct veil_wp *wp;
    struct pod_conn *pconns;
    struct veil_timer guard, stopper;
    bool guard_fired;
    /* the client */
    struct h2io cio;
    bool cready;
    bool manual_window; /* the client gives no window back by itself */
    size_t got;         /* DATA bytes the client received (all streams) */
    struct cstream cs[16];
    size_t ncs;
};

static struct env *E;

/* ---- HTTP/2 on an end ---- */

static void h2io_put(struct h2io *io, const uint8_t *p, size_t n)
{
    if (io->outlen + n > io->outcap) {
        io->outcap = (io->outlen + n) * 2;
        io->out = realloc(io->out, io->outcap);
    }
    memcpy(io->out + io->outlen, p, n);
    io->outlen += n;
}

/* Reads, feeds, sends. */
static void h2io_run(struct h2io *io)
{
    if (io->closed)
        return;
    char buf[16384];
    for (;;) {
        ssize_t n = io->end->ops->read(io->end, buf, sizeof(buf));
        if (n > 0) {
            assert_true(nghttp2_session_mem_recv(io->ng, (uint8_t *)buf, (size_t)n) >= 0);
            continue;
        }
        if (n != -EAGAIN)
            io->eof = true;
        break;
    }
    for (;;) {
        const uint8_t *d;
        ssize_t n = nghttp2_session_mem_send(io->ng, &d);
        assert_true(n >= 0);
        if (n == 0)
            break;
        h2io_put(io, d, (size_t)n);
    }
    size_t off = 0;
    while (off < io->outlen) {
        ssize_t n = io->end->ops->write(io->end, io->out + off, io->outlen - off);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    memmove(io->out, io->out + off, io->outlen - off);
    io->outlen -= off;
    io->end->ops->set_interest(io->end,
                               (io->eof ? 0 : VEIL_L4_READ) | (io->outlen ? VEIL_L4_WRITE : 0));
}

static void h2io_close(struct h2io *io)
{
    if (!io->closed) {
        io->closed = true;
        io->end->ops->close(io->end, true);
    }
    nghttp2_session_del(io->ng);
    io->ng = NULL;
    free(io->out);
    io->out = NULL;
}

static nghttp2_nv nv(const char *n, const char *v)
{
    return (nghttp2_nv){(uint8_t *)n, (uint8_t *)v, strlen(n), strlen(v), NGHTTP2_NV_FLAG_NONE};
}

/* ---- certificates, sockets ---- */

static void issue(struct veil_ca *ca, const char *id, struct ident *out)
{
    char err[256];
    assert_int_equal(veil_ca_issue(ca, id, 0, &out->key, &out->cert, err, sizeof(err)), 0);
}

static struct veil_tls_ctx *ctx(enum veil_tls_role role, const struct ident *i, const char *bundle)
{
    char err[256];
    struct veil_tls_ctx_opts o = {.role = role,
                                  .cert_pem = i->cert,
                                  .key_pem = i->key,
                                  .trust_bundle_pem = bundle,
                                  .require_client_cert = role == VEIL_TLS_SERVER};
    struct veil_tls_ctx *c = veil_tls_ctx_new(&o, err, sizeof(err));
    if (c == NULL)
        fail_msg("tls ctx: %s", err);
    return c;
}

static int listen_on(const char *ip, uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(*port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    socklen_t len = sizeof(a);
    if (bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0)
        fail_msg("bind %s:%u: %s", ip, *port, strerror(errno));
    assert_int_equal(listen(fd, 128), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* ---- the backend pods: HTTP/2 servers ---- */

static struct pstream *pstream_of(nghttp2_session *ng, int32_t id)
{
    return nghttp2_session_get_stream_user_data(ng, id);
}

static ssize_t pod_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                        nghttp2_data_source *src, void *user)
{
    (void)src, (void)user;
    struct pstream *s = pstream_of(ng, id);
    if (s == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (s->big_left > 0) {
        size_t m = s->big_left < len ? s->big_left : len;
        memset(buf, 'x', m);
        s->big_left -= m;
        s->boff += m;
        if (s->big_left == 0)
            *flags |= NGHTTP2_DATA_FLAG_EOF;
        return (ssize_t)m;
    }
    size_t n = s->blen - s->boff;
    if (n > len)
        n = len;
    memcpy(buf, s->body + s->boff, n);
    s->boff += n;
    if (s->boff < s->blen)
        return (ssize_t)n;
    if (!s->resp_end)
        return n > 0 ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (strncmp(s->path, "/echo.", 6) == 0) {
        const nghttp2_nv tr[] = {nv("grpc-status", "0"), nv("grpc-message", "ok")};
        nghttp2_submit_trailer(ng, id, tr, 2);
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    }
    return (ssize_t)n;
}

static void pod_respond(struct pstream *s, const char *status, bool grpc)
{
    const nghttp2_nv h[] = {nv(":status", status),
                            nv("content-type", grpc ? "application/grpc" : "text/plain"),
                            nv("x-pod", s->pc->pod->name), nv("connection", "keep-alive")};
    const nghttp2_data_provider dp = {.read_callback = pod_read};
    /* the engine must drop the connection-specific field */
    assert_int_equal(nghttp2_submit_response(s->pc->io.ng, s->id, h, 3, &dp), 0);
}

static void pod_slow_done(struct veil_timer *t)
{
    struct pstream *s = VEIL_CONTAINER_OF(t, struct pstream, delay);
    s->blen = (size_t)snprintf(s->body, sizeof(s->body), "slow");
    s->resp_end = true;
    pod_respond(s, "200", false);
    h2io_run(&s->pc->io);
}

static int pod_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    struct pod_conn *pc = user;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct pstream *s = calloc(1, sizeof(*s));
    s->pc = pc;
    s->id = f->hd.stream_id;
    s->next = pc->streams;
    pc->streams = s;
    nghttp2_session_set_stream_user_data(ng, s->id, s);
    return 0;
}

static int pod_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                      const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
    (void)flags, (void)user;
    struct pstream *s = pstream_of(ng, f->hd.stream_id);
    if (s == NULL)
        return 0;
    if (nlen == 5 && memcmp(name, ":path", 5) == 0) {
        snprintf(s->path, sizeof(s->path), "%.*s", (int)vlen, value);
        snprintf(s->pc->pod->last_path, sizeof(s->pc->pod->last_path), "%s", s->path);
        s->pc->pod->last_added[0] = '\0';
    }
    if (nlen == 7 && memcmp(name, "x-added", 7) == 0)
        snprintf(s->pc->pod->last_added, sizeof(s->pc->pod->last_added), "%.*s", (int)vlen, value);
    /* connection-specific fields never reach the backend */
    assert_false(nlen == 10 && memcmp(name, "connection", 10) == 0);
    return 0;
}

static int pod_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    (void)user;
    struct pstream *s = pstream_of(ng, f->hd.stream_id);
    if (s == NULL)
        return 0;
    bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST) {
        s->pc->pod->requests++;
        if (strcmp(s->path, "/reset") == 0) {
            nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
            return 0;
        }
        if (strcmp(s->path, "/echo.Echo/Stream") == 0) {
            s->streaming = true;
            pod_respond(s, "200", true); /* headers at once, then the echoes */
        } else if (strncmp(s->path, "/slow", 5) == 0) {
            veil_timer_start(s->pc->pod->env->loop, &s->delay, 1500, 0, pod_slow_done);
        }
    }
    if (!end)
        return 0;
    s->req_end = true;
    if (strcmp(s->path, "/reset") == 0 || strncmp(s->path, "/slow", 5) == 0)
        return 0;
    s->resp_end = true;
    if (s->streaming) {
        nghttp2_session_resume_data(ng, s->id);
    } else if (strcmp(s->path, "/big") == 0) {
        s->big_left = BIG;
        pod_respond(s, "200", false);
    } else if (strcmp(s->path, "/echo.Echo/Unary") == 0) {
        pod_respond(s, "200", true);
    } else if (strcmp(s->path, "/fail") == 0 && strcmp(s->pc->pod->name, "pod-b") == 0) {
        s->blen = (size_t)snprintf(s->body, sizeof(s->body), "fail");
        pod_respond(s, "503", false);
    } else {
        s->blen = (size_t)snprintf(s->body, sizeof(s->body), "ok from %s", s->pc->pod->name);
        pod_respond(s, "200", false);
    }
    return 0;
}

static int pod_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                    void *user)
{
    (void)flags, (void)user;
    struct pstream *s = pstream_of(ng, id);
    if (s == NULL)
        return 0;
    assert_true(s->blen + len <= sizeof(s->body));
    memcpy(s->body + s->blen, data, len);
    s->blen += len;
    s->pc->pod->body_bytes += len;
    if (s->streaming)
        nghttp2_session_resume_data(ng, id);
    return 0;
}

static int pod_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *user)
{
    (void)code, (void)user;
    struct pstream *s = pstream_of(ng, id);
    if (s != NULL) {
        veil_timer_stop(&s->delay);
        nghttp2_session_set_stream_user_data(ng, id, NULL);
    }
    return 0;
}

static void pod_notify(struct veil_l4_end *end, uint32_t ev, void *arg)
{
    (void)end, (void)ev;
    struct pod_conn *pc = arg;
    h2io_run(&pc->io);
    if (pc->io.eof && !pc->io.closed) {
        pc->io.closed = true;
        pc->io.end->ops->close(pc->io.end, false);
    }
}

static nghttp2_session *new_session(bool server, void *user)
{
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session *ng;
    if (server) {
        nghttp2_session_callbacks_set_on_begin_headers_callback(cb, pod_begin_headers);
        nghttp2_session_callbacks_set_on_header_callback(cb, pod_header);
        nghttp2_session_callbacks_set_on_frame_recv_callback(cb, pod_frame_recv);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, pod_data);
        nghttp2_session_callbacks_set_on_stream_close_callback(cb, pod_stream_close);
        assert_int_equal(nghttp2_session_server_new(&ng, cb, user), 0);
    }
    nghttp2_session_callbacks_del(cb);
    return server ? ng : NULL;
}

static void pod_on_connect(struct veil_hbone_h2s *h2s, const struct veil_hbone_connect_info *info,
                           void *arg)
{
    struct pod *pod = arg;
    /* the original caller's identity rides on the CONNECT (contract C) */
    const char *sp = veil_hbone_connect_header(info, "x-veil-source-principal");
    assert_non_null(sp);
    assert_string_equal(sp, CLI_ID);
    assert_int_equal(veil_hbone_h2s_respond(h2s, 200), 0);
    struct pod_conn *pc = calloc(1, sizeof(*pc));
    pc->pod = pod;
    pod->tunnels++;
    pc->io.end = veil_hbone_h2s_end(h2s);
    pc->io.ng = new_session(true, pc);
    nghttp2_submit_settings(pc->io.ng, NGHTTP2_FLAG_NONE, NULL, 0);
    pc->next = pod->env->pconns;
    pod->env->pconns = pc;
    veil_l4_end_bind(pc->io.end, pod_notify, pc);
    h2io_run(&pc->io);
}

static void pod_accept(struct veil_io *io, uint32_t ev)
{
    (void)ev;
    struct pod *pod = VEIL_CONTAINER_OF(io, struct pod, lio);
    int fd;
    while ((fd = accept4(pod->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
        veil_hbone_server_accept(pod->srv, fd);
}

static void wp_on_connect(struct veil_hbone_h2s *h2s, const struct veil_hbone_connect_info *info,
                          void *arg)
{
    struct env *e = arg;
    veil_wp_connect(e->wp, h2s, info);
}

static void wp_accept(struct veil_io *io, uint32_t ev)
{
    (void)ev;
    struct env *e = VEIL_CONTAINER_OF(io, struct env, wp_lio);
    int fd;
    while ((fd = accept4(e->wp_lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
        veil_hbone_server_accept(e->wp_srv_h, fd);
}

/* ---- config ---- */

static void apply_config(struct env *e)
{
    const char *json =
        "{\"type\":\"update\",\"version\":1,\"full\":true,\"upserts\":["
        "{\"key\":\"Service/default/web\",\"kind\":\"Service\",\"namespace\":\"default\","
        "\"name\":\"web\",\"spec\":{\"clusterIP\":\"" VIP "\","
        "\"ports\":[{\"name\":\"grpc\",\"port\":80,\"targetPort\":8080,\"protocol\":\"TCP\"}],"
        "\"endpoints\":["
        "{\"workload\":\"Workload/default/pod-a\",\"address\":\"127.0.0.2\",\"node\":\"n1\","
        "\"identity\":\"" POD_ID "\",\"ports\":[{\"port\":80,\"targetPort\":8080}]},"
        "{\"workload\":\"Workload/default/pod-b\",\"address\":\"127.0.0.3\",\"node\":\"n1\","
        "\"identity\":\"" POD_ID "\",\"ports\":[{\"port\":80,\"targetPort\":8080}]}]}},"
        "{\"key\":\"Service/default/web-v1\",\"kind\":\"Service\",\"namespace\":\"default\","
        "\"name\":\"web-v1\",\"spec\":{\"clusterIP\":\"198.19.0.11\","
        "\"ports\":[{\"name\":\"http\",\"port\":80,\"targetPort\":8080,\"protocol\":\"TCP\"}],"
        "\"endpoints\":["
        "{\"workload\":\"Workload/default/pod-a\",\"address\":\"127.0.0.2\",\"node\":\"n1\","
        "\"identity\":\"" POD_ID "\",\"ports\":[{\"port\":80,\"targetPort\":8080}]}]}},"
        "{\"key\":\"Service/default/web-v2\",\"kind\":\"Service\",\"namespace\":\"default\","
        "\"name\":\"web-v2\",\"spec\":{\"clusterIP\":\"198.19.0.12\","
        "\"ports\":[{\"name\":\"http\",\"port\":80,\"targetPort\":8080,\"protocol\":\"TCP\"}],"
        "\"endpoints\":["
        "{\"workload\":\"Workload/default/pod-b\",\"address\":\"127.0.0.3\",\"node\":\"n1\","
        "\"identity\":\"" POD_ID "\",\"ports\":[{\"port\":80,\"targetPort\":8080}]}]}}"
        "],\"removals\":[]}";
    char err[256];
    if (veil_node_cfg_apply(&e->cfg, json, strlen(json), NULL, err, sizeof(err)) != 0)
        fail_msg("config: %s", err);
}

static void config_json(struct env *e, const char *kind, const char *name, const char *spec_json)
{
    json_error_t je;
    json_t *spec = json_loads(spec_json, 0, &je);
    if (spec == NULL)
        fail_msg("test json: %s", je.text);
    char err[256];
    int rc = veil_wp_config_item(e->wp, kind, "k", "default", name, spec, err, sizeof(err));
    json_decref(spec);
    if (rc < 0)
        fail_msg("config %s: %s", kind, err);
}

/* ---- the client ---- */

static struct cstream *cs_of(struct env *e, int32_t id)
{
    for (size_t i = 0; i < e->ncs; i++)
        if (e->cs[i].id == id)
            return &e->cs[i];
    return NULL;
}

/* One gRPC message: 5-byte prefix, then "msg-<i>" padded to 32 bytes. */
static size_t grpc_msg(char *out, int i)
{
    char payload[32];
    memset(payload, '.', sizeof(payload));
    int n = snprintf(payload, sizeof(payload), "msg-%03d", i);
    payload[n] = '.';
    out[0] = 0;
    uint32_t len = htonl(sizeof(payload));
    memcpy(out + 1, &len, 4);
    memcpy(out + 5, payload, sizeof(payload));
    return 5 + sizeof(payload);
}

static ssize_t cli_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                        nghttp2_data_source *src, void *user)
{
    (void)ng, (void)src;
    struct cstream *s = cs_of(user, id);
    size_t n = s->slen - s->soff;
    if (n > len)
        n = len;
    memcpy(buf, s->send + s->soff, n);
    s->soff += n;
    if (s->soff < s->slen)
        return (ssize_t)n;
    if (!s->send_eof)
        return n > 0 ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int cli_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                      const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
    (void)ng, (void)flags;
    struct cstream *s = cs_of(user, f->hd.stream_id);
    if (s == NULL)
        return 0;
    if (nlen == 7 && memcmp(name, ":status", 7) == 0)
        s->status = atoi((const char *)value);
    if (nlen == 11 && memcmp(name, "grpc-status", 11) == 0)
        snprintf(s->grpc_status, sizeof(s->grpc_status), "%.*s", (int)vlen, value);
    if (nlen == 8 && memcmp(name, "location", 8) == 0)
        snprintf(s->location, sizeof(s->location), "%.*s", (int)vlen, value);
    if (nlen == 5 && memcmp(name, "x-via", 5) == 0)
        snprintf(s->via, sizeof(s->via), "%.*s", (int)vlen, value);
    s->x_pod |= nlen == 5 && memcmp(name, "x-pod", 5) == 0;
    return 0;
}

static int cli_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                    void *user)
{
    (void)flags;
    struct env *e = user;
    e->got += len;
    struct cstream *s = cs_of(user, id);
    if (s == NULL || e->manual_window)
        return 0;
    assert_true(s->blen + len <= sizeof(s->body));
    memcpy(s->body + s->blen, data, len);
    s->blen += len;
    /* streaming: the next message goes only once the last one came back */
    size_t one = 37;
    if (s->echo_step > 0 && s->blen == (size_t)s->echo_step * one) {
        if (s->echo_step < NMSG) {
            s->slen += grpc_msg(s->send + s->slen, s->echo_step++);
        } else {
            s->send_eof = true;
        }
        nghttp2_session_resume_data(ng, id);
    }
    return 0;
}

static int cli_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *user)
{
    (void)ng;
    struct cstream *s = cs_of(user, id);
    if (s != NULL) {
        s->closed = true;
        s->rst = code;
    }
    return 0;
}

static bool all_closed(struct env *e)
{
    for (size_t i = 0; i < e->ncs; i++)
        if (!e->cs[i].closed)
            return false;
    return true;
}

static void cli_notify(struct veil_l4_end *end, uint32_t ev, void *arg)
{
    (void)end, (void)ev;
    struct env *e = arg;
    h2io_run(&e->cio);
    if ((e->ncs > 0 && all_closed(e)) || e->cio.eof)
        veil_loop_stop(e->loop);
}

static void cli_session(struct env *e)
{
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, cli_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, cli_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, cli_stream_close);
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_window_update(opt, e->manual_window);
    assert_int_equal(nghttp2_session_client_new2(&e->cio.ng, cb, e, opt), 0);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(e->cio.ng, NGHTTP2_FLAG_NONE, NULL, 0);
}

static void cli_dialed(struct veil_hbone_h2s *h2s, int status, const char *err, void *arg)
{
    struct env *e = arg;
    if (status != 200)
        fail_msg("dial waypoint: %d %s", status, err ? err : "");
    e->cio.end = veil_hbone_h2s_end(h2s);
    veil_l4_end_bind(e->cio.end, cli_notify, e);
    e->cready = true;
    h2io_run(&e->cio);
}

static void guard(struct veil_timer *t)
{
    struct env *e = VEIL_CONTAINER_OF(t, struct env, guard);
    e->guard_fired = true;
    veil_loop_stop(e->loop);
}

static void run(struct env *e)
{
    veil_timer_start(e->loop, &e->guard, GUARD_MS, 0, guard);
    veil_loop_run(e->loop);
    veil_timer_stop(&e->guard);
    assert_false(e->guard_fired);
}

/* Opens the tunnel to the VIP through the waypoint and starts HTTP/2. */
static void open_tunnel(struct env *e)
{
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(e->wp_port)};
    inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
    struct veil_hbone_dial d = {.key = "cli",
                                .tls = e->cli,
                                .dst = (struct sockaddr *)&dst,
                                .dst_len = sizeof(dst),
                                .authority = VIP ":80",
                                .server_id = WP_ID};
    cli_session(e);
    assert_non_null(veil_hbone_pool_connect(e->cli_pool, &d, cli_dialed, e));
}

/* Starts a request on the client session. body NULL: no body. */
static struct cstream *request(struct env *e, const char *method, const char *path, bool grpc,
                               const void *body, size_t blen, bool eof)
{
    if (e->cio.ng == NULL)
        open_tunnel(e);
    struct cstream *s = &e->cs[e->ncs++];
    memset(s, 0, sizeof(*s));
    if (blen > 0)
        memcpy(s->send, body, blen);
    s->slen = blen;
    s->send_eof = eof;
    const nghttp2_nv h[] = {nv(":method", method),
                            nv(":scheme", "http"),
                            nv(":authority", "web.default.svc.cluster.local"),
                            nv(":path", path),
                            nv("content-type", grpc ? "application/grpc" : "text/plain"),
                            nv("te", "trailers")};
    const nghttp2_data_provider dp = {.read_callback = cli_read};
    bool has_body = body != NULL || !eof;
    s->id = nghttp2_submit_request(e->cio.ng, NULL, h, 6, has_body ? &dp : NULL, NULL);
    assert_true(s->id > 0);
    if (e->cready)
        h2io_run(&e->cio);
    return s;
}

/* ---- setup ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    strcpy(e->dir, "/tmp/veil-wph2-test-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    char err[256];
    struct veil_ca_opts co = {.state_dir = e->dir};
    assert_int_equal(veil_ca_open(&e->ca, &co, err, sizeof(err)), 0);
    issue(e->ca, WP_ID, &e->wp_id);
    issue(e->ca, POD_ID, &e->pod_id);
    issue(e->ca, CLI_ID, &e->cli_id);
    const char *bundle = veil_ca_bundle_pem(e->ca);
    e->wp_srv = ctx(VEIL_TLS_SERVER, &e->wp_id, bundle);
    e->wp_cli = ctx(VEIL_TLS_CLIENT, &e->wp_id, bundle);
    e->pod_srv = ctx(VEIL_TLS_SERVER, &e->pod_id, bundle);
    e->cli = ctx(VEIL_TLS_CLIENT, &e->cli_id, bundle);
    e->loop = veil_loop_new("wp-h2-test");
    veil_node_cfg_init(&e->cfg, NULL);
    apply_config(e);
    e->wp_pool = veil_hbone_pool_new(e->loop, NULL);
    e->cli_pool = veil_hbone_pool_new(e->loop, NULL);
    struct veil_hbone_server_opts so = {
        .tls = e->wp_srv, .cbs.on_connect = wp_on_connect, .arg = e};
    e->wp_srv_h = veil_hbone_server_new(e->loop, &so);
    e->wp_lfd = listen_on("127.0.0.1", &e->wp_port);
    veil_io_start(e->loop, &e->wp_lio, e->wp_lfd, VEIL_IO_READ, wp_accept);
    const char *ips[2] = {"127.0.0.2", "127.0.0.3"};
    const char *names[2] = {"pod-a", "pod-b"};
    for (int i = 0; i < 2; i++) {
        struct pod *p = &e->pods[i];
        p->name = names[i];
        p->env = e;
        struct veil_hbone_server_opts po = {
            .tls = e->pod_srv, .cbs.on_connect = pod_on_connect, .arg = p};
        p->srv = veil_hbone_server_new(e->loop, &po);
        p->lfd = listen_on(ips[i], &e->pod_port);
        veil_io_start(e->loop, &p->lio, p->lfd, VEIL_IO_READ, pod_accept);
    }
    struct veil_wp_env env = {.loop = e->loop,
                              .cfg = &e->cfg,
                              .pool = e->wp_pool,
                              .client_tls = e->wp_cli,
                              .ns = "default",
                              .name = "waypoint",
                              .identity = WP_ID,
                              .upstream_port = e->pod_port};
    e->wp = veil_wp_new(&env);
    assert_non_null(e->wp);
    E = e;
    *state = e;
    return 0;
}

static void stop_soon(struct veil_timer *t)
{
    struct env *e = VEIL_CONTAINER_OF(t, struct env, guard);
    veil_loop_stop(e->loop);
}

static int teardown(void **state)
{
    struct env *e = *state;
    /* the client leaves first: the engine closes the connection itself */
    if (e->cio.ng != NULL)
        h2io_close(&e->cio);
    for (int i = 0; i < 100 && e->wp->nconns > 0; i++) {
        veil_timer_start(e->loop, &e->guard, 10, 0, stop_soon);
        veil_loop_run(e->loop);
    }
    assert_int_equal(e->wp->nconns, 0);
    veil_wp_free(e->wp);
    veil_hbone_pool_free(e->cli_pool);
    veil_hbone_pool_free(e->wp_pool);
    veil_hbone_server_free(e->wp_srv_h);
    veil_io_stop(&e->wp_lio);
    close(e->wp_lfd);
    for (int i = 0; i < 2; i++) {
        veil_hbone_server_free(e->pods[i].srv);
        veil_io_stop(&e->pods[i].lio);
        close(e->pods[i].lfd);
    }
    for (struct pod_conn *pc = e->pconns; pc != NULL; pc = pc->next)
        for (struct pstream *s = pc->streams; s != NULL; s = s->next)
            veil_timer_stop(&s->delay);
    for (struct pod_conn *pc = e->pconns; pc != NULL; pc = pc->next)
        h2io_close(&pc->io);
    veil_loop_free(e->loop);
    while (e->pconns != NULL) {
        struct pod_conn *pc = e->pconns;
        e->pconns = pc->next;
        while (pc->streams != NULL) {
            struct pstream *s = pc->streams;
            pc->streams = s->next;
            free(s);
        }
        free(pc);
    }
    veil_node_cfg_free(&e->cfg);
    veil_tls_ctx_free(e->wp_srv);
    veil_tls_ctx_free(e->wp_cli);
    veil_tls_ctx_free(e->pod_srv);
    veil_tls_ctx_free(e->cli);
    struct ident *ids[3] = {&e->wp_id, &e->pod_id, &e->cli_id};
    for (int i = 0; i < 3; i++) {
        veil_free(ids[i]->key);
        veil_free(ids[i]->cert);
    }
    veil_ca_free(e->ca);
    nftw(e->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(e);
    return 0;
}

/* ---- tests ---- */

static void test_grpc_unary_trailers(void **state)
{
    struct env *e = *state;
    char msg[64];
    size_t n = grpc_msg(msg, 7);
    struct cstream *s = request(e, "POST", "/echo.Echo/Unary", true, msg, n, true);
    run(e);
    assert_true(s->closed);
    assert_int_equal(s->rst, NGHTTP2_NO_ERROR);
    assert_int_equal(s->status, 200);
    assert_string_equal(s->grpc_status, "0"); /* from the trailers */
    assert_int_equal(s->blen, n);
    assert_memory_equal(s->body, msg, n);
    assert_int_equal(e->pods[0].requests + e->pods[1].requests, 1);
    assert_true(e->wp->requests_total >= 1);
}

/* A body of 4 stream windows each way: the windows are given back as the
 * bytes move on. */
static void test_large_body_flow_control(void **state)
{
    struct env *e = *state;
    static char big[4 * 65536];
    for (size_t i = 0; i < sizeof(big); i++)
        big[i] = (char)('a' + i % 23);
    struct cstream *s = request(e, "POST", "/echo.Echo/Unary", true, big, sizeof(big), true);
    run(e);
    assert_true(s->closed);
    assert_int_equal(s->rst, NGHTTP2_NO_ERROR);
    assert_string_equal(s->grpc_status, "0");
    assert_int_equal(s->blen, sizeof(big));
    assert_memory_equal(s->body, big, sizeof(big));
}

static void test_concurrent_streams(void **state)
{
    struct env *e = *state;
    struct cstream *s[10];
    for (int i = 0; i < 10; i++)
        s[i] = request(e, "GET", "/ok", false, NULL, 0, true);
    run(e);
    for (int i = 0; i < 10; i++) {
        assert_true(s[i]->closed);
        assert_int_equal(s[i]->status, 200);
        s[i]->body[s[i]->blen] = '\0';
        assert_non_null(strstr(s[i]->body, "ok from pod-"));
    }
    assert_int_equal(e->pods[0].requests + e->pods[1].requests, 10);
    /* one tunnel per endpoint for the whole client connection */
    assert_true(e->pods[0].tunnels <= 1 && e->pods[1].tunnels <= 1);
    assert_int_equal(e->wp->nconns, 1);
}

static void test_grpc_streaming(void **state)
{
    struct env *e = *state;
    char first[64];
    size_t n = grpc_msg(first, 0);
    struct cstream *s = request(e, "POST", "/echo.Echo/Stream", true, first, n, false);
    s->echo_step = 1; /* cli_data sends message i+1 when echo i came back */
    run(e);
    assert_true(s->closed);
    assert_int_equal(s->rst, NGHTTP2_NO_ERROR);
    assert_int_equal(s->status, 200);
    assert_string_equal(s->grpc_status, "0");
    assert_int_equal(s->echo_step, NMSG);
    assert_int_equal(s->blen, NMSG * n);
    char m[64];
    for (int i = 0; i < NMSG; i++) {
        grpc_msg(m, i);
        assert_memory_equal(s->body + (size_t)i * n, m, n);
    }
}

static void test_deny_path(void **state)
{
    struct env *e = *state;
    config_json(e, "AuthorizationPolicy", "no-admin",
                "{\"action\":\"DENY\",\"targetRefs\":[{\"group\":\"gateway.networking.k8s.io\","
                "\"kind\":\"Gateway\",\"name\":\"waypoint\"}],"
                "\"rules\":[{\"to\":[{\"operation\":{\"paths\":[\"/admin*\","
                "\"/echo.Admin/*\"]}}]}]}");
    struct cstream *ok = request(e, "GET", "/ok", false, NULL, 0, true);
    struct cstream *no = request(e, "POST", "/admin/x", false, "body", 4, true);
    char msg[64];
    size_t n = grpc_msg(msg, 1);
    struct cstream *g = request(e, "POST", "/echo.Admin/Do", true, msg, n, true);
    run(e);
    assert_int_equal(ok->status, 200);
    assert_int_equal(no->status, 403);
    no->body[no->blen] = '\0';
    assert_string_equal(no->body, "RBAC: access denied\n");
    assert_int_equal(g->status, 200);
    assert_string_equal(g->grpc_status, "7"); /* PERMISSION_DENIED, trailers-only */
    assert_int_equal(e->pods[0].requests + e->pods[1].requests, 1);
}

static void test_backend_reset(void **state)
{
    struct env *e = *state;
    struct cstream *r = request(e, "GET", "/reset", false, NULL, 0, true);
    char msg[64];
    size_t n = grpc_msg(msg, 2);
    struct cstream *g = request(e, "POST", "/reset", true, msg, n, true);
    struct cstream *ok = request(e, "GET", "/ok", false, NULL, 0, true);
    run(e);
    assert_true(r->closed && g->closed && ok->closed);
    assert_true(r->rst != NGHTTP2_NO_ERROR || r->status == 502 || r->status == 503);
    assert_true(g->rst != NGHTTP2_NO_ERROR || strcmp(g->grpc_status, "14") == 0);
    assert_int_equal(ok->status, 200); /* the connection goes on */
}

static void stop_at(struct veil_timer *t)
{
    struct env *e = VEIL_CONTAINER_OF(t, struct env, stopper);
    veil_loop_stop(e->loop);
}

static void test_client_reset(void **state)
{
    struct env *e = *state;
    /* a slow request the client gives up on: the engine cancels upstream */
    struct cstream *s = request(e, "GET", "/slow", false, NULL, 0, true);
    struct cstream *ok = request(e, "GET", "/ok", false, NULL, 0, true);
    veil_timer_start(e->loop, &e->stopper, 300, 0, stop_at);
    run(e);
    assert_false(s->closed);
    nghttp2_submit_rst_stream(e->cio.ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_CANCEL);
    h2io_run(&e->cio);
    veil_timer_start(e->loop, &e->stopper, 300, 0, stop_at);
    run(e);
    assert_true(ok->closed);
    assert_int_equal(ok->status, 200);
    assert_true(s->closed);
    /* the backend saw its stream reset too */
    bool reset = true;
    for (struct pod_conn *pc = e->pconns; pc != NULL; pc = pc->next)
        for (struct pstream *p = pc->streams; p != NULL; p = p->next)
            if (strcmp(p->path, "/slow") == 0 && veil_timer_is_active(&p->delay))
                reset = false;
    assert_true(reset);
}

/* A client that reads nothing stops the backend: a bounded number of bytes
 * wait in between, then everything moves once it reads. */
static void test_slow_reader(void **state)
{
    struct env *e = *state;
    e->manual_window = true;
    struct cstream *s = request(e, "GET", "/big", false, NULL, 0, true);
    veil_timer_start(e->loop, &e->stopper, 500, 0, stop_at);
    run(e);
    assert_false(s->closed);
    size_t sent = 0;
    for (struct pod_conn *pc = e->pconns; pc != NULL; pc = pc->next)
        for (struct pstream *p = pc->streams; p != NULL; p = p->next)
            sent += p->boff;
    print_message("slow reader: client got %zu, backend sent %zu of %d\n", e->got, sent, BIG);
    /* client window + the waypoint's stream buffer + tunnel buffers */
    assert_true(e->got <= 65535);
    assert_true(sent <= 2 * 65535 + 16384);
    /* now the client reads: window back as it goes */
    for (int i = 0; i < 2000 && !s->closed; i++) {
        nghttp2_session_consume(e->cio.ng, s->id, e->got - s->blen);
        s->blen = e->got;
        h2io_run(&e->cio);
        veil_timer_start(e->loop, &e->stopper, 5, 0, stop_at);
        run(e);
    }
    assert_true(s->closed);
    assert_int_equal(s->status, 200);
    assert_int_equal(e->got, BIG);
}

static void test_route_timeout(void **state)
{
    struct env *e = *state;
    config_json(e, "HTTPRoute", "web",
                "{\"parentRefs\":[{\"group\":\"\",\"kind\":\"Service\",\"name\":\"web\"}],"
                "\"rules\":[{\"matches\":[{\"path\":{\"type\":\"PathPrefix\",\"value\":\"/slow\"}},"
                "{\"path\":{\"type\":\"PathPrefix\",\"value\":\"/slow.Svc\"}}],"
                "\"backendRefs\":[{\"name\":\"web\",\"port\":80}],"
                "\"timeouts\":{\"request\":\"200ms\"}},"
                "{\"backendRefs\":[{\"name\":\"web\",\"port\":80}]}]}");
    struct cstream *h = request(e, "GET", "/slow", false, NULL, 0, true);
    char msg[64];
    size_t n = grpc_msg(msg, 3);
    struct cstream *g = request(e, "POST", "/slow.Svc/Do", true, msg, n, true);
    struct cstream *ok = request(e, "GET", "/ok", false, NULL, 0, true);
    run(e);
    assert_int_equal(h->status, 504);
    assert_int_equal(g->status, 200);
    assert_string_equal(g->grpc_status, "4"); /* DEADLINE_EXCEEDED */
    assert_int_equal(ok->status, 200);
}

/* An HTTPRoute's filters and backendRequest timeout on HTTP/2, as on
 * HTTP/1.1: RequestRedirect, URLRewrite, request and response header
 * modifiers (rule and backendRef). */
static void test_route_filters(void **state)
{
    struct env *e = *state;
    config_json(e, "HTTPRoute", "web",
                "{\"parentRefs\":[{\"group\":\"\",\"kind\":\"Service\",\"name\":\"web\"}],"
                "\"rules\":[{\"matches\":[{\"path\":{\"type\":\"PathPrefix\",\"value\":\"/old\"}}],"
                "\"filters\":[{\"type\":\"RequestRedirect\",\"requestRedirect\":"
                "{\"path\":{\"type\":\"ReplacePrefixMatch\",\"replacePrefixMatch\":\"/new\"},"
                "\"statusCode\":301}}]},"
                "{\"matches\":[{\"path\":{\"type\":\"PathPrefix\",\"value\":\"/api\"}}],"
                "\"filters\":[{\"type\":\"URLRewrite\",\"urlRewrite\":{\"path\":"
                "{\"type\":\"ReplacePrefixMatch\",\"replacePrefixMatch\":\"/\"}}},"
                "{\"type\":\"ResponseHeaderModifier\",\"responseHeaderModifier\":"
                "{\"add\":[{\"name\":\"x-via\",\"value\":\"veil\"}],\"remove\":[\"x-pod\"]}}],"
                "\"backendRefs\":[{\"name\":\"web-v1\",\"port\":80,\"filters\":["
                "{\"type\":\"RequestHeaderModifier\",\"requestHeaderModifier\":"
                "{\"set\":[{\"name\":\"x-added\",\"value\":\"yes\"}]}}]}]},"
                "{\"matches\":[{\"path\":{\"type\":\"PathPrefix\",\"value\":\"/slow\"}}],"
                "\"backendRefs\":[{\"name\":\"web\",\"port\":80}],"
                "\"timeouts\":{\"request\":\"5s\",\"backendRequest\":\"200ms\"}},"
                "{\"backendRefs\":[{\"name\":\"web\",\"port\":80}]}]}");
    struct cstream *rd = request(e, "GET", "/old/x?q=1", false, NULL, 0, true);
    struct cstream *rw = request(e, "GET", "/api/thing?q=2", false, NULL, 0, true);
    run(e);
    assert_int_equal(rd->status, 301);
    assert_string_equal(rd->location, "http://web.default.svc.cluster.local/new/x?q=1");
    assert_int_equal(rw->status, 200);
    assert_string_equal(e->pods[0].last_path, "/thing?q=2"); /* web-v1 is pod-a */
    assert_string_equal(e->pods[0].last_added, "yes");
    assert_string_equal(rw->via, "veil");
    assert_false(rw->x_pod);
    struct cstream *slow = request(e, "GET", "/slow", false, NULL, 0, true);
    run(e);
    assert_int_equal(slow->status, 504);
    struct cstream *plain = request(e, "GET", "/ok", false, NULL, 0, true);
    run(e);
    assert_int_equal(plain->status, 200);
    assert_true(plain->x_pod);
    assert_string_equal(plain->via, "");
}

/* A route's retry on 503 hides the failing pod from HTTP/2 clients, and a
 * retried request reaches the other pod with its whole body again. */
static void test_route_retry(void **state)
{
    struct env *e = *state;
    char body[1000];
    memset(body, 'x', sizeof(body));
    int fails = 0;
    for (int i = 0; i < 10; i++) {
        e->ncs = 0; /* the streams before are closed: their slots are reused */
        struct cstream *c = request(e, "POST", "/fail", false, body, sizeof(body), true);
        run(e);
        fails += c->status == 503;
    }
    assert_true(fails > 0); /* pod-b fails without the route */
    config_json(e, "HTTPRoute", "web",
                "{\"parentRefs\":[{\"group\":\"\",\"kind\":\"Service\",\"name\":\"web\"}],"
                "\"rules\":[{\"backendRefs\":[{\"name\":\"web\",\"port\":80}],"
                "\"retry\":{\"attempts\":3,\"codes\":[503],\"backoff\":\"1ms\"}}]}");
    int a0 = e->pods[0].requests;
    size_t b0 = e->pods[0].body_bytes;
    for (int i = 0; i < 20; i++) {
        e->ncs = 0;
        struct cstream *c = request(e, "POST", "/fail", false, body, sizeof(body), true);
        run(e);
        assert_int_equal(c->status, 200);
        assert_string_equal(c->body, "ok from pod-a");
    }
    /* every request ended on pod-a, each with its whole body once */
    assert_int_equal(e->pods[0].requests - a0, 20);
    assert_int_equal(e->pods[0].body_bytes - b0, 20 * sizeof(body));
}

/* Runs the loop until pod i has received n requests and `bytes` bytes of
 * request bodies, and no mirror is in flight (the guard fails the test if
 * that never comes). */
static int wait_pod, wait_n;
static size_t wait_bytes;
static void poll_pod(struct veil_timer *t)
{
    if (E->pods[wait_pod].requests >= wait_n && E->pods[wait_pod].body_bytes >= wait_bytes &&
        E->wp->nmirrors == 0)
        veil_loop_stop(veil_timer_loop(t));
}
static void wait_pod_requests(struct env *e, int i, int n, size_t bytes)
{
    struct veil_timer poll = {0};
    wait_pod = i;
    wait_n = n;
    wait_bytes = bytes;
    veil_timer_start(e->loop, &poll, 5, 5, poll_pod);
    run(e);
    veil_timer_stop(&poll);
}

/* RequestMirror on a GRPCRoute: each call is answered by web-v1 (pod-a)
 * and copied, head and body, to web-v2 (pod-b), whose answers go nowhere. */
static void test_grpc_mirror(void **state)
{
    struct env *e = *state;
    config_json(e, "GRPCRoute", "web",
                "{\"parentRefs\":[{\"group\":\"\",\"kind\":\"Service\",\"name\":\"web\"}],"
                "\"rules\":[{\"backendRefs\":[{\"name\":\"web-v1\",\"port\":80}],"
                "\"filters\":[{\"type\":\"RequestMirror\",\"requestMirror\":"
                "{\"backendRef\":{\"name\":\"web-v2\",\"port\":80}}}]}]}");
    char msg[64];
    size_t n = grpc_msg(msg, 5);
    struct cstream *s[3];
    for (int i = 0; i < 3; i++)
        s[i] = request(e, "POST", "/echo.Echo/Unary", true, msg, n, true);
    run(e);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(s[i]->status, 200);
        assert_string_equal(s[i]->grpc_status, "0");
        assert_memory_equal(s[i]->body, msg, n);
    }
    veil_log_set_level(VEIL_LOG_DEBUG); /* a failed mirror would say why */
    wait_pod_requests(e, 1, 3, 3 * n);
    /* and once the tunnel to web-v1 is up */
    for (int i = 0; i < 2; i++) {
        struct cstream *c = request(e, "POST", "/echo.Echo/Unary", true, msg, n, true);
        run(e);
        assert_string_equal(c->grpc_status, "0");
    }
    wait_pod_requests(e, 1, 5, 5 * n);
    veil_log_set_level(VEIL_LOG_INFO);
    assert_int_equal(e->pods[0].requests, 5);
    assert_int_equal(e->pods[1].requests, 5);
    assert_int_equal(e->pods[1].body_bytes, 5 * n);
    assert_string_equal(e->pods[1].last_path, "/echo.Echo/Unary");
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_grpc_unary_trailers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_streams, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grpc_streaming, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deny_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backend_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_body_flow_control, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_route_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_route_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grpc_mirror, setup, teardown),
        cmocka_unit_test_setup_teardown(test_route_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_reader, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
