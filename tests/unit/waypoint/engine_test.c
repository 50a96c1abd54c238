/*
 * Tests of the waypoint engine (src/waypoint/waypoint.c and the files it
 * drives), on one loop over loopback: a client HBONE pool dials the
 * waypoint's HBONE server with the service VIP:port as authority, as a node
 * proxy does; the engine tunnels each request on to one of two backend
 * "pods", HBONE servers on 127.0.0.2 and 127.0.0.3 whose streams are
 * answered by a small HTTP/1.1 server written with the h1 parser:
 *   /ok       200 "ok from <pod>"
 *   /fail     503 on pod-b, 200 on pod-a
 *   /slow     200 after 1500 ms
 *   /echo     200 with the request body
 *   /chunked  a chunked response
 *   /ws       101 upgrade, then the bytes echoed
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <signal.h>
#include <unistd.h>

#include <jansson.h>

#include "core/alloc.h"
#include "core/container.h"
#include "core/loop.h"
#include "core/metrics.h"
#include "hbone/hbone.h"
#include "http/h1.h"
#include "l4/pump.h"
#include "node/config.h"
#include "tls/ca.h"
#include "tls/tls.h"
#include "waypoint/waypoint.h"

#define GUARD_MS 20000
#define WP_ID    "spiffe://cluster.local/ns/default/sa/waypoint"
#define POD_ID   "spiffe://cluster.local/ns/default/sa/web"
#define CLI_ID   "spiffe://cluster.local/ns/default/sa/client"
#define VIP      "198.19.0.10"

struct ident {
    char *key, *cert;
};

/* A backend stream: an HTTP/1.1 server on an HBONE end. */
struct pod_stream {
    struct veil_l4_end *end;
    struct pod *pod;
    char in[65536];
    size_t inlen;
    char out[262144];
    size_t outoff, outlen;
    struct veil_h1_parser p;
    bool raw, closed, eof;
    struct veil_timer delay;
    char pending[512];
    size_t npending;
    struct pod_stream *next;
};

struct pod {
    const char *name;
    struct veil_hbone_server *srv;
    int lfd;
    struct veil_io lio;
    struct env *env;
    int requests;
    char last[256]; /* the last request's target, a space, its body */
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
    struct pod_stream *streams;
    struct veil_timer guard;
    bool guard_fired;
    /* the client's exchange */
    struct veil_l4_end *c;
    char resp[262144];
    size_t resplen;
    bool ceof, cdone;
    const char *send;
    size_t sendlen, sent;
    bool want_close;              /* wait for EOF instead of one response */
    size_t want_len;              /* > 0: wait for this many bytes instead */
    int alog[2];                  /* the access log's pipe (setup_alog), else -1 */
    struct veil_metrics *metrics; /* setup_metrics, else NULL */
};

static struct env *E;

/* ---- certificates ---- */

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

/* ---- the backend pods ---- */

static void ps_notify(struct veil_l4_end *end, uint32_t ev, void *arg);

static void ps_out(struct pod_stream *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(s->out + s->outlen, sizeof(s->out) - s->outlen, fmt, ap);
    va_end(ap);
    s->outlen += (size_t)n;
}

static void ps_flush(struct pod_stream *s)
{
    while (s->outoff < s->outlen) {
        ssize_t n = s->end->ops->write(s->end, s->out + s->outoff, s->outlen - s->outoff);
        if (n <= 0)
            break;
        s->outoff += (size_t)n;
    }
    if (s->outoff == s->outlen)
        s->outoff = s->outlen = 0;
}

static void ps_slow_done(struct veil_timer *t)
{
    struct pod_stream *s = VEIL_CONTAINER_OF(t, struct pod_stream, delay);
    if (s->closed)
        return;
    ps_out(s, "HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nslow");
    ps_notify(s->end, VEIL_L4_WRITE, s);
}

/* Answers complete requests in s->in. */
static void ps_serve(struct pod_stream *s)
{
    while (!s->raw && s->inlen > 0) {
        struct veil_h1_head h;
        struct veil_h1_header hdrs[64];
        ssize_t n = veil_h1_parse_request(&s->p, s->in, s->inlen, &h, hdrs, 64);
        if (n == -EAGAIN)
            return;
        assert_true(n > 0);
        /* the body: Content-Length or chunked, all in the buffer */
        struct veil_h1_body b;
        veil_h1_body_init(&b, &h, NULL);
        char body[65536];
        size_t blen = 0, off = (size_t)n;
        while (!veil_h1_body_done(&b)) {
            struct veil_h1_span d;
            ssize_t m = veil_h1_body_read(&b, s->in + off, s->inlen - off, &d);
            assert_true(m >= 0);
            if (m == 0)
                return; /* more to come */
            memcpy(body + blen, s->in + off + d.off, d.len);
            blen += d.len;
            off += (size_t)m;
        }
        char target[256];
        snprintf(target, sizeof(target), "%.*s", (int)h.target.len, s->in + h.target.off);
        const struct veil_h1_header *pr = veil_h1_header_find(&h, s->in, "x-veil-seen", NULL);
        (void)pr;
        const struct veil_h1_header *tp = veil_h1_header_find(&h, s->in, "traceparent", NULL);
        char tps[80] = "";
        if (tp != NULL)
            snprintf(tps, sizeof(tps), "%.*s", (int)tp->value.len, s->in + tp->value.off);
        memmove(s->in, s->in + off, s->inlen - off);
        s->inlen -= off;
        veil_h1_parser_init(&s->p, NULL);
        s->pod->requests++;
        snprintf(s->pod->last, sizeof(s->pod->last), "%.100s %.*s", target,
                 blen < 100 ? (int)blen : 100, body);
        if (strcmp(target, "/fail") == 0 && strcmp(s->pod->name, "pod-b") == 0) {
            ps_out(s, "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nfail");
        } else if (strcmp(target, "/slow") == 0) {
            veil_timer_start(s->pod->env->loop, &s->delay, 1500, 0, ps_slow_done);
        } else if (strcmp(target, "/echo") == 0) {
            ps_out(s, "HTTP/1.1 200 OK\r\ncontent-length: %zu\r\n\r\n", blen);
            memcpy(s->out + s->outlen, body, blen);
            s->outlen += blen;
        } else if (strcmp(target, "/chunked") == 0) {
            ps_out(s, "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
        } else if (strcmp(target, "/ws") == 0) {
            ps_out(s, "HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\n"
                      "upgrade: websocket\r\n\r\n");
            s->raw = true;
        } else if (strcmp(target, "/trace") == 0) {
            ps_out(s, "HTTP/1.1 200 OK\r\ncontent-length: %zu\r\n\r\n%s", strlen(tps), tps);
        } else {
            char msg[64];
            snprintf(msg, sizeof(msg), "ok from %s", s->pod->name);
            ps_out(s, "HTTP/1.1 200 OK\r\ncontent-length: %zu\r\n\r\n%s", strlen(msg), msg);
        }
    }
    if (s->raw && s->inlen > 0) { /* echo */
        memcpy(s->out + s->outlen, s->in, s->inlen);
        s->outlen += s->inlen;
        s->inlen = 0;
    }
}

static void ps_notify(struct veil_l4_end *end, uint32_t ev, void *arg)
{
    (void)end, (void)ev;
    struct pod_stream *s = arg;
    if (s->closed)
        return;
    for (;;) {
        ssize_t n = s->end->ops->read(s->end, s->in + s->inlen, sizeof(s->in) - s->inlen);
        if (n > 0) {
            s->inlen += (size_t)n;
            continue;
        }
        if (n == 0 || (n < 0 && n != -EAGAIN))
            s->eof = true;
        break;
    }
    ps_serve(s);
    ps_flush(s);
    if (s->eof && s->outlen == 0 && !veil_timer_is_active(&s->delay)) {
        s->closed = true;
        s->end->ops->close(s->end, false);
        return;
    }
    s->end->ops->set_interest(s->end, VEIL_L4_READ | (s->outlen ? VEIL_L4_WRITE : 0));
}

static void pod_on_connect(struct veil_hbone_h2s *h2s, const struct veil_hbone_connect_info *info,
                           void *arg)
{
    (void)info;
    struct pod *pod = arg;
    assert_int_equal(veil_hbone_h2s_respond(h2s, 200), 0);
    struct pod_stream *s = calloc(1, sizeof(*s));
    s->pod = pod;
    s->end = veil_hbone_h2s_end(h2s);
    veil_h1_parser_init(&s->p, NULL);
    s->next = pod->env->streams;
    pod->env->streams = s;
    veil_l4_end_bind(s->end, ps_notify, s);
    s->end->ops->set_interest(s->end, VEIL_L4_READ);
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

/* A service with one endpoint. */
#define SVC1(name, vip, pod, ip)                                                                   \
    "{\"key\":\"Service/default/" name "\",\"kind\":\"Service\",\"namespace\":\"default\","        \
    "\"name\":\"" name "\",\"spec\":{\"clusterIP\":\"" vip "\","                                   \
    "\"ports\":[{\"name\":\"http\",\"port\":80,\"targetPort\":8080,\"protocol\":\"TCP\"}],"        \
    "\"endpoints\":[{\"workload\":\"Workload/default/" pod "\",\"address\":\"" ip "\","            \
    "\"node\":\"n1\",\"identity\":\"" POD_ID                                                       \
    "\",\"ports\":[{\"port\":80,\"targetPort\":8080}]}]}}"

static void apply_config(struct env *e, uint64_t version)
{
    char json[4096];
    snprintf(json, sizeof(json),
             "{\"type\":\"update\",\"version\":%llu,\"full\":true,\"upserts\":["
             "{\"key\":\"Service/default/web\",\"kind\":\"Service\",\"namespace\":\"default\","
             "\"name\":\"web\",\"spec\":{\"clusterIP\":\"" VIP "\","
             "\"ports\":[{\"name\":\"http\",\"port\":80,\"targetPort\":8080,\"protocol\":\"TCP\"}],"
             "\"endpoints\":["
             "{\"workload\":\"Workload/default/pod-a\",\"address\":\"127.0.0.2\",\"node\":\"n1\","
             "\"identity\":\"" POD_ID "\",\"ports\":[{\"port\":80,\"targetPort\":8080}]},"
             "{\"workload\":\"Workload/default/pod-b\",\"address\":\"127.0.0.3\",\"node\":\"n1\","
             "\"identity\":\"" POD_ID "\",\"ports\":[{\"port\":80,\"targetPort\":8080}]}]}}," SVC1(
                 "web-v1", "198.19.0.11", "pod-a",
                 "127.0.0.2") "," SVC1("web-v2", "198.19.0.12", "pod-b",
                                       "127.0.0.3") "],\"removals\":[]}",
             (unsigned long long)version);
    char err[256];
    if (veil_node_cfg_apply(&e->cfg, json, strlen(json), NULL, err, sizeof(err)) != 0)
        fail_msg("config: %s", err);
}

/* ---- the client ---- */

static bool resp_complete(struct env *e)
{
    if (e->want_close)
        return e->ceof;
    if (e->want_len > 0)
        return e->resplen >= e->want_len || e->ceof;
    struct veil_h1_parser p;
    struct veil_h1_head h;
    struct veil_h1_header hdrs[64];
    veil_h1_parser_init(&p, NULL);
    ssize_t n = veil_h1_parse_response(&p, e->resp, e->resplen, VEIL_H1_M_GET, &h, hdrs, 64);
    if (n == -EAGAIN)
        return e->ceof;
    if (n < 0)
        return true;
    if (h.flags & VEIL_H1_F_TUNNEL)
        return true;
    struct veil_h1_body b;
    veil_h1_body_init(&b, &h, NULL);
    size_t off = (size_t)n;
    while (!veil_h1_body_done(&b)) {
        struct veil_h1_span d;
        ssize_t m = veil_h1_body_read(&b, e->resp + off, e->resplen - off, &d);
        if (m <= 0)
            return e->ceof;
        off += (size_t)m;
    }
    return true;
}

static void cli_notify(struct veil_l4_end *end, uint32_t ev, void *arg)
{
    (void)ev;
    struct env *e = arg;
    while (e->sent < e->sendlen) {
        ssize_t n = end->ops->write(end, e->send + e->sent, e->sendlen - e->sent);
        if (n <= 0)
            break;
        e->sent += (size_t)n;
    }
    for (;;) {
        ssize_t n = end->ops->read(end, e->resp + e->resplen, sizeof(e->resp) - e->resplen - 1);
        if (n > 0) {
            e->resplen += (size_t)n;
            e->resp[e->resplen] = '\0';
            continue;
        }
        if (n != -EAGAIN)
            e->ceof = true;
        break;
    }
    if (resp_complete(e)) {
        e->cdone = true;
        veil_loop_stop(e->loop);
        return;
    }
    end->ops->set_interest(end, (e->ceof ? 0 : VEIL_L4_READ) |
                                    (e->sent < e->sendlen ? VEIL_L4_WRITE : 0));
}

static void cli_dialed(struct veil_hbone_h2s *h2s, int status, const char *err, void *arg)
{
    struct env *e = arg;
    if (status != 200)
        fail_msg("dial waypoint: %d %s", status, err ? err : "");
    e->c = veil_hbone_h2s_end(h2s);
    veil_l4_end_bind(e->c, cli_notify, e);
    cli_notify(e->c, VEIL_L4_WRITE, e);
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
    e->cdone = false;
    veil_loop_run(e->loop);
    veil_timer_stop(&e->guard);
    assert_false(e->guard_fired);
}

/* Opens a tunnel to the VIP through the waypoint (once per test). */
static void open_tunnel(struct env *e, const char *authority)
{
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(e->wp_port)};
    inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
    struct veil_hbone_dial d = {.key = "cli",
                                .tls = e->cli,
                                .dst = (struct sockaddr *)&dst,
                                .dst_len = sizeof(dst),
                                .authority = authority,
                                .server_id = WP_ID};
    assert_non_null(veil_hbone_pool_connect(e->cli_pool, &d, cli_dialed, e));
}

/* Sends `req` on the tunnel (opened if needed) and runs until one
 * response (or EOF) is in e->resp. */
static void exchange(struct env *e, const char *req)
{
    e->send = req;
    e->sendlen = strlen(req);
    e->sent = 0;
    e->resplen = 0;
    e->resp[0] = '\0';
    if (e->c == NULL)
        open_tunnel(e, VIP ":80");
    else
        cli_notify(e->c, VEIL_L4_WRITE, e);
    run(e);
}

static int status_of(const struct env *e)
{
    int st = 0;
    if (sscanf(e->resp, "HTTP/1.1 %d", &st) != 1)
        return 0;
    return st;
}

static const char *body_of(const struct env *e)
{
    const char *p = strstr(e->resp, "\r\n\r\n");
    return p != NULL ? p + 4 : "";
}

/* ---- setup ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static int alog_pipe[2] = {-1, -1}; /* for the next setup */
static struct veil_metrics *next_metrics;

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    strcpy(e->dir, "/tmp/veil-wp-test-XXXXXX");
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
    e->loop = veil_loop_new("wp-test");
    veil_node_cfg_init(&e->cfg, NULL);
    apply_config(e, 1);
    e->wp_pool = veil_hbone_pool_new(e->loop, NULL);
    e->cli_pool = veil_hbone_pool_new(e->loop, NULL);
    struct veil_hbone_server_opts so = {
        .tls = e->wp_srv, .cbs.on_connect = wp_on_connect, .arg = e};
    e->wp_srv_h = veil_hbone_server_new(e->loop, &so);
    e->wp_lfd = listen_on("127.0.0.1", &e->wp_port);
    veil_io_start(e->loop, &e->wp_lio, e->wp_lfd, VEIL_IO_READ, wp_accept);
    const char *ips[2] = {"127.0.0.2", "127.0.0.3"};
    const char *names[2] = {"pod-a", "pod-b"};
    e->pod_port = 0;
    for (int i = 0; i < 2; i++) {
        struct pod *p = &e->pods[i];
        p->name = names[i];
        p->env = e;
        struct veil_hbone_server_opts po = {
            .tls = e->pod_srv, .cbs.on_connect = pod_on_connect, .arg = p};
        p->srv = veil_hbone_server_new(e->loop, &po);
        p->lfd = listen_on(ips[i], &e->pod_port); /* the same port on both */
        veil_io_start(e->loop, &p->lio, p->lfd, VEIL_IO_READ, pod_accept);
    }
    struct veil_wp_env env = {.loop = e->loop,
                              .cfg = &e->cfg,
                              .pool = e->wp_pool,
                              .client_tls = e->wp_cli,
                              .ns = "default",
                              .name = "waypoint",
                              .identity = WP_ID,
                              .upstream_port = e->pod_port,
                              .access_log_fd = alog_pipe[1],
                              .metrics = next_metrics};
    e->metrics = next_metrics;
    next_metrics = NULL;
    e->alog[0] = alog_pipe[0];
    e->alog[1] = alog_pipe[1];
    alog_pipe[0] = alog_pipe[1] = -1;
    e->wp = veil_wp_new(&env);
    assert_non_null(e->wp);
    E = e;
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    if (e->c != NULL)
        e->c->ops->close(e->c, true);
    veil_wp_free(e->wp);
    for (struct pod_stream *s = e->streams; s != NULL; s = s->next) {
        veil_timer_stop(&s->delay);
        if (!s->closed)
            s->end->ops->close(s->end, true);
        s->closed = true;
    }
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
    veil_loop_free(e->loop);
    while (e->streams != NULL) {
        struct pod_stream *s = e->streams;
        e->streams = s->next;
        free(s);
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
    for (int i = 0; i < 2; i++)
        if (e->alog[i] >= 0)
            close(e->alog[i]);
    veil_metrics_free(e->metrics);
    free(e);
    return 0;
}

/* The same with the access log going to a pipe the test reads. */
static int setup_alog(void **state)
{
    if (pipe2(alog_pipe, O_NONBLOCK) != 0)
        return -1;
    return setup(state);
}

/* ---- tests ---- */

static void test_get_keepalive(void **state)
{
    struct env *e = *state;
    exchange(e, "GET /ok HTTP/1.1\r\nHost: web\r\n\r\n");
    assert_int_equal(status_of(e), 200);
    assert_non_null(strstr(body_of(e), "ok from pod-"));
    exchange(e, "GET /ok HTTP/1.1\r\nHost: web\r\n\r\n");
    assert_int_equal(status_of(e), 200);
    assert_int_equal(e->pods[0].requests + e->pods[1].requests, 2);
}

static void test_post_body_and_chunked(void **state)
{
    struct env *e = *state;
    exchange(e, "POST /echo HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\n\r\nhello");
    assert_int_equal(status_of(e), 200);
    assert_string_equal(body_of(e), "hello");
    exchange(e, "POST /echo HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\n"
                "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
    assert_int_equal(status_of(e), 200);
    assert_string_equal(body_of(e), "abcde");
    exchange(e, "GET /chunked HTTP/1.1\r\nHost: web\r\n\r\n");
    assert_int_equal(status_of(e), 200);
    assert_non_null(strstr(e->resp, "transfer-encoding: chunked"));
    assert_non_null(strstr(body_of(e), "hello"));
}

static void test_smuggling_refused(void **state)
{
    struct env *e = *state;
    static const char *const bad[] = {
        "POST /echo HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\nTransfer-Encoding: "
        "chunked\r\n\r\n0\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        "GET /ok HTTP/1.1\r\nHost: web\r\nX-A: 1\r\n  folded\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: web\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "GET /ok HTTP/1.1\nHost: web\r\n\r\n",
        "GET /ok HTTP/1.1\r\nHost: web\rX: y\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (e->c != NULL) {
            e->c->ops->close(e->c, true);
            e->c = NULL;
        }
        e->ceof = false;
        e->want_close = true;
        exchange(e, bad[i]);
        e->want_close = false;
        if (status_of(e) != 400)
            fail_msg("case %zu: got %.60s", i, e->resp);
        assert_non_null(strstr(e->resp, "connection: close"));
        assert_true(e->ceof); /* and the connection closed */
    }
    assert_int_equal(e->pods[0].requests + e->pods[1].requests, 0);
}

static void test_upgrade_websocket(void **state)
{
    struct env *e = *state;
    exchange(e,
             "GET /ws HTTP/1.1\r\nHost: web\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    assert_int_equal(status_of(e), 101);
    e->want_len = 10;
    exchange(e, "ping-bytes");
    e->want_len = 0;
    assert_string_equal(e->resp, "ping-bytes");
}

static void test_traceparent(void **state)
{
    struct env *e = *state;
    exchange(e, "GET /trace HTTP/1.1\r\nHost: web\r\n"
                "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n\r\n");
    assert_int_equal(status_of(e), 200);
    const char *b = body_of(e);
    assert_int_equal(strncmp(b, "00-0af7651916cd43dd8448eb211c80319c-", 36), 0);
    assert_true(strncmp(b + 36, "b7ad6b7169203331", 16) != 0);
    assert_string_equal(b + 52, "-01"); /* the flags kept */
    exchange(e, "GET /trace HTTP/1.1\r\nHost: web\r\n"
                "traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00\r\n\r\n");
    assert_string_equal(body_of(e) + 52, "-00");
    exchange(e, "GET /trace HTTP/1.1\r\nHost: web\r\n\r\n");
    assert_int_equal(strlen(body_of(e)), 55);
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

/* An L7 DENY of POST bound to the waypoint (its Gateway). */
static void deny_post(struct env *e)
{
    config_json(e, "AuthorizationPolicy", "no-post",
                "{\"action\":\"DENY\",\"targetRefs\":[{\"group\":\"gateway.networking.k8s.io\","
                "\"kind\":\"Gateway\",\"name\":\"waypoint\"}],"
                "\"rules\":[{\"to\":[{\"operation\":{\"methods\":[\"POST\"]}}]}]}");
}

static void test_l7_deny_post(void **state)
{
    struct env *e = *state;
    deny_post(e);
    exchange(e, "GET /ok HTTP/1.1\r\nHost: web\r\n\r\n");
    assert_int_equal(status_of(e), 200);
    exchange(e, "POST /echo HTTP/1.1\r\nHost: web\r\nContent-Length: 2\r\n\r\nhi");
    assert_int_equal(status_of(e), 403);
    assert_string_equal(body_of(e), "RBAC: access denied\n");
    /* the body was read: the connection goes on */
    exchange(e, "GET /ok HTTP/1.1\r\nHost: web\r\n\r\n");
    assert_int_equal(status_of(e), 200);
    assert_int_equal(e->pods[0].requests + e->pods[1].requests, 2);
}

#define PARENT        "\"parentRefs\":[{\"group\":\"\",\"kind\":\"Service\",\"name\":\"web\"}]"
#define BACKEND(n, w) "{\"name\":\"" n "\",\"port\":80,\"weight\":" #w "}"

static int count_from(struct env *e, const char *req, int n, const char *pod)
{
    int hits = 0;
    for (int i = 0; i < n; i++) {
        exchange(e, req);
        assert_int_equal(status_of(e), 200);
        hits += strstr(body_of(e), pod) != NULL;
    }
    return hits;
}

static void test_route_weights_and_header_match(void **state)
{
    struct env *e = *state;
    config_json(e, "HTTPRoute", "split",
                "{" PARENT ",\"rules\":["
                "{\"matches\":[{\"headers\":[{\"name\":\"x-version\",\"value\":\"v2\"}]}],"
                "\"backendRefs\":[" BACKEND("web-v2", 1) "]},"
                                                         "{\"backendRefs\":[" BACKEND(
                                                             "web-v1", 90) "," BACKEND("web-v2",
                                                                                       10) "]}]}");
    int b = count_from(e, "GET /ok HTTP/1.1\r\nHost: web\r\n\r\n", 400, "pod-b");
    /* 10% of 400 = 40; binomial sd ~6: +-25 is far outside noise */
    assert_in_range(b, 15, 65);
    assert_int_equal(
        count_from(e, "GET /ok HTTP/1.1\r\nHost: web\r\nX-Version: v2\r\n\r\n", 20, "pod-b"), 20);
}

/* A parentRef's sectionName names the Service port: "http" is web's port
 * 80, so that route applies; one naming another port does not. */
static void test_route_section_name(void **state)
{
    struct env *e = *state;
    config_json(
        e, "HTTPRoute", "other-port",
        "{\"parentRefs\":[{\"group\":\"\",\"kind\":\"Service\",\"name\":\"web\","
        "\"sectionName\":\"grpc\"}],\"rules\":[{\"backendRefs\":[" BACKEND("web-v2", 1) "]}]}");
    assert_in_range(count_from(e, "GET /ok HTTP/1.1\r\nHost: web\r\n\r\n", 40, "pod-b"), 1, 39);
    config_json(
        e, "HTTPRoute", "this-port",
        "{\"parentRefs\":[{\"group\":\"\",\"kind\":\"Service\",\"name\":\"web\","
        "\"sectionName\":\"http\"}],\"rules\":[{\"backendRefs\":[" BACKEND("web-v2", 1) "]}]}");
    assert_int_equal(count_from(e, "GET /ok HTTP/1.1\r\nHost: web\r\n\r\n", 20, "pod-b"), 20);
}

static void test_route_retry_hides_503(void **state)
{
    struct env *e = *state;
    /* pod-b answers /fail with 503; without retries about half fail */
    int fails = 0;
    for (int i = 0; i < 20; i++) {
        exchange(e, "GET /fail HTTP/1.1\r\nHost: web\r\n\r\n");
        fails += status_of(e) == 503;
    }
    assert_true(fails > 0);
    config_json(e, "HTTPRoute", "retry",
                "{" PARENT ",\"rules\":[{\"backendRefs\":[" BACKEND(
                    "web", 1) "],"
                              "\"retry\":{\"attempts\":3,\"codes\":[503],\"backoff\":\"1ms\"}}]}");
    for (int i = 0; i < 40; i++) {
        exchange(e, "GET /fail HTTP/1.1\r\nHost: web\r\n\r\n");
        assert_int_equal(status_of(e), 200);
    }
}

static void test_route_timeout_504(void **state)
{
    struct env *e = *state;
    config_json(e, "HTTPRoute", "t",
                "{" PARENT ",\"rules\":[{\"backendRefs\":[" BACKEND(
                    "web", 1) "],"
                              "\"timeouts\":{\"request\":\"300ms\"}}]}");
    uint64_t t0 = veil_now_ms();
    exchange(e, "GET /slow HTTP/1.1\r\nHost: web\r\n\r\n");
    uint64_t took = veil_now_ms() - t0;
    assert_int_equal(status_of(e), 504);
    assert_true(took >= 250); /* and the 504 came before the backend answered (200) */
    exchange(e, "GET /ok HTTP/1.1\r\nHost: web\r\n\r\n");
    assert_int_equal(status_of(e), 200);
}

static void test_route_filters(void **state)
{
    struct env *e = *state;
    config_json(e, "HTTPRoute", "f",
                "{" PARENT ",\"rules\":["
                "{\"matches\":[{\"path\":{\"type\":\"PathPrefix\",\"value\":\"/old\"}}],"
                "\"filters\":[{\"type\":\"RequestRedirect\",\"requestRedirect\":"
                "{\"path\":{\"type\":\"ReplacePrefixMatch\",\"replacePrefixMatch\":\"/new\"},"
                "\"statusCode\":301}}]},"
                "{\"matches\":[{\"path\":{\"type\":\"PathPrefix\",\"value\":\"/api\"}}],"
                "\"filters\":[{\"type\":\"URLRewrite\",\"urlRewrite\":{\"path\":"
                "{\"type\":\"ReplacePrefixMatch\",\"replacePrefixMatch\":\"/\"}}},"
                "{\"type\":\"ResponseHeaderModifier\",\"responseHeaderModifier\":"
                "{\"add\":[{\"name\":\"x-via\",\"value\":\"veil\"}]}}],"
                "\"backendRefs\":[" BACKEND(
                    "web", 1) "]},"
                              "{\"matches\":[{\"path\":{\"type\":\"Exact\",\"value\":\"/only\"}}],"
                              "\"backendRefs\":[" BACKEND("web", 1) "]}]}");
    exchange(e, "GET /old/x?q=1 HTTP/1.1\r\nHost: web\r\n\r\n");
    assert_int_equal(status_of(e), 301);
    assert_non_null(strstr(e->resp, "location: http://web/new/x?q=1"));
    exchange(e, "POST /api/echo HTTP/1.1\r\nHost: web\r\nContent-Length: 3\r\n\r\nabc");
    assert_int_equal(status_of(e), 200);
    assert_string_equal(body_of(e), "abc"); /* /api/echo reached /echo */
    assert_non_null(strstr(e->resp, "x-via: veil"));
    exchange(e, "GET /nothing HTTP/1.1\r\nHost: web\r\n\r\n");
    assert_int_equal(status_of(e), 404);
}

static void test_drain_closes_keepalive(void **state)
{
    struct env *e = *state;
    exchange(e, "GET /ok HTTP/1.1\r\nHost: web\r\n\r\n");
    assert_int_equal(status_of(e), 200);
    assert_false(e->ceof);
    veil_wp_drain(e->wp); /* the idle keep-alive connection closes */
    e->want_close = true;
    exchange(e, "");
    assert_true(e->ceof);
    assert_int_equal((int)e->resplen, 0);
}

/* The same with a metrics registry. */
static int setup_metrics(void **state)
{
    if ((next_metrics = veil_metrics_new()) == NULL)
        return -1;
    return setup(state);
}

/* The sum of the istio_requests_total lines with these labels in them
 * (one series per destination pod). */
static long requests_with(struct env *e, const char *labels)
{
    char *text;
    size_t len;
    assert_int_equal(veil_metrics_render(e->metrics, &text, &len), 0);
    long n = 0;
    for (char *l = strstr(text, "\nistio_requests_total{"); l != NULL;
         l = strstr(l + 1, "\nistio_requests_total{")) {
        char *end = strchr(l + 1, '\n');
        if (end != NULL)
            *end = '\0';
        char *hit = strstr(l, labels);
        char *sp = strrchr(l, ' ');
        if (hit != NULL && sp != NULL)
            n += atol(sp + 1);
        if (end != NULL)
            *end = '\n';
    }
    veil_free(text);
    return n;
}

/* Istio's request metrics, with the labels of each request: the series are
 * cached per connection, so a request with other labels on the same
 * connection must not count in the last one's. */
static void test_request_metrics(void **state)
{
    struct env *e = *state;
    deny_post(e);
    static const char *const reqs[] = {
        "GET /ok HTTP/1.1\r\nHost: web\r\n\r\n",
        "GET /ok HTTP/1.1\r\nHost: web\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: web\r\nContent-Length: 2\r\n\r\nhi",
        "GET /ok HTTP/1.1\r\nHost: web\r\n\r\n",
        "POST /echo HTTP/1.1\r\nHost: web\r\nContent-Length: 2\r\n\r\nhi",
    };
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++)
        exchange(e, reqs[i]);
    assert_int_equal(requests_with(e, "response_code=\"200\""), 3);
    assert_int_equal(requests_with(e, "response_code=\"403\""), 2);
    assert_int_equal(requests_with(e, "source_principal=\"" CLI_ID "\""), 5);
    assert_int_equal(requests_with(e, "destination_service=\"web.default.svc.cluster.local\""), 5);
}

static void stop_loop(struct veil_timer *t)
{
    veil_loop_stop(veil_timer_loop(t));
}

/* Runs the loop until pod i has answered n requests in all (the guard
 * fails the test if it never does). */
static int wait_pod, wait_n;
static void poll_pod(struct veil_timer *t)
{
    if (E->pods[wait_pod].requests >= wait_n)
        veil_loop_stop(veil_timer_loop(t));
}
static void wait_requests(struct env *e, int i, int n)
{
    struct veil_timer poll = {0};
    wait_pod = i;
    wait_n = n;
    veil_timer_start(e->loop, &poll, 5, 5, poll_pod);
    run(e);
    veil_timer_stop(&poll);
}

/* RequestMirror: pod-a (web-v1) answers; pod-b (web-v2) gets a copy of
 * each request, body included, and its answers go nowhere. */
static void test_route_mirror(void **state)
{
    struct env *e = *state;
    config_json(e, "HTTPRoute", "m",
                "{" PARENT ",\"rules\":[{\"backendRefs\":[" BACKEND(
                    "web-v1", 1) "],"
                                 "\"filters\":[{\"type\":\"RequestMirror\",\"requestMirror\":"
                                 "{\"backendRef\":{\"name\":\"web-v2\",\"port\":80}}}]}]}");
    for (int i = 0; i < 3; i++) {
        exchange(e, "GET /ok HTTP/1.1\r\nHost: web\r\n\r\n");
        assert_int_equal(status_of(e), 200);
        assert_string_equal(body_of(e), "ok from pod-a");
    }
    exchange(e, "POST /echo HTTP/1.1\r\nHost: web\r\nContent-Length: 4\r\n\r\ncopy");
    assert_string_equal(body_of(e), "copy");
    wait_requests(e, 1, 4);
    assert_int_equal(e->pods[0].requests, 4);
    assert_int_equal(e->pods[1].requests, 4);
    assert_string_equal(e->pods[1].last, "/echo copy");
    /* a copy is one request on a stream of its own, closed after it */
    assert_int_equal(requests_with(e, "response_code=\"200\""), 4);
    char *text;
    size_t len;
    assert_int_equal(veil_metrics_render(e->metrics, &text, &len), 0);
    assert_non_null(strstr(text, "veil_waypoint_mirrors_total{result=\"ok\"} 4"));
    veil_free(text);
}

/* One JSON line per request with Envoy's field names, written in a batch
 * (within WP_ALOG_FLUSH_MS, 1 s), not one write per request. */
static void test_access_log(void **state)
{
    struct env *e = *state;
    exchange(e, "GET /ok?q=1 HTTP/1.1\r\nHost: web\r\n\r\n");
    assert_int_equal(status_of(e), 200);
    exchange(e, "POST /echo HTTP/1.1\r\nHost: web\r\nContent-Length: 5\r\n\r\nhello");
    assert_int_equal(status_of(e), 200);
    struct veil_timer t = {0};
    veil_timer_start(e->loop, &t, 1300, 0, stop_loop);
    veil_loop_run(e->loop);
    char buf[8192];
    ssize_t n = read(e->alog[0], buf, sizeof(buf) - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    const char *line[2];
    line[0] = buf;
    char *nl = strchr(buf, '\n');
    assert_non_null(nl);
    line[1] = nl + 1;
    nl = strchr(line[1], '\n');
    assert_non_null(nl);
    assert_int_equal(nl[1], '\0'); /* two lines, both whole */
    static const char *const want[2][2] = {{"GET", "/ok?q=1"}, {"POST", "/echo"}};
    for (int i = 0; i < 2; i++) {
        json_error_t je;
        json_t *j = json_loadb(line[i], (size_t)(strchr(line[i], '\n') - line[i]), 0, &je);
        if (j == NULL)
            fail_msg("line %d: %s: %.200s", i, je.text, line[i]);
        assert_string_equal(json_string_value(json_object_get(j, "reporter")), "waypoint");
        assert_string_equal(json_string_value(json_object_get(j, "method")), want[i][0]);
        assert_string_equal(json_string_value(json_object_get(j, "path")), want[i][1]);
        assert_string_equal(json_string_value(json_object_get(j, "authority")), "web");
        assert_string_equal(json_string_value(json_object_get(j, "protocol")), "HTTP/1.1");
        assert_int_equal(json_integer_value(json_object_get(j, "response_code")), 200);
        assert_string_equal(json_string_value(json_object_get(j, "response_flags")), "-");
        assert_string_equal(json_string_value(json_object_get(j, "attempts")), "once");
        if (i == 1) /* head and body */
            assert_true(json_integer_value(json_object_get(j, "bytes_received")) > 5);
        assert_string_equal(json_string_value(json_object_get(j, "source_principal")), CLI_ID);
        assert_string_equal(json_string_value(json_object_get(j, "destination_service")), "web");
        assert_int_equal(strlen(json_string_value(json_object_get(j, "traceparent"))), 55);
        const char *up = json_string_value(json_object_get(j, "upstream_host"));
        assert_non_null(up);
        assert_int_equal(strncmp(up, "127.0.0.", 8), 0);
        assert_non_null(json_string_value(json_object_get(j, "start_time")));
        json_decref(j);
    }
}

static void test_unknown_vip(void **state)
{
    struct env *e = *state;
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(e->wp_port)};
    inet_pton(AF_INET, "127.0.0.1", &dst.sin_addr);
    (void)dst;
    /* a CONNECT to a port the service does not have is refused */
    open_tunnel(e, VIP ":81");
    veil_timer_start(e->loop, &e->guard, GUARD_MS, 0, guard);
    /* cli_dialed fails the test on non-200: expect that path not to run */
    (void)state;
    veil_timer_stop(&e->guard);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_keepalive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_body_and_chunked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_smuggling_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_upgrade_websocket, setup, teardown),
        cmocka_unit_test_setup_teardown(test_traceparent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_l7_deny_post, setup, teardown),
        cmocka_unit_test_setup_teardown(test_route_weights_and_header_match, setup, teardown),
        cmocka_unit_test_setup_teardown(test_route_section_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_route_retry_hides_503, setup, teardown),
        cmocka_unit_test_setup_teardown(test_route_timeout_504, setup, teardown),
        cmocka_unit_test_setup_teardown(test_route_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_closes_keepalive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_access_log, setup_alog, teardown),
        cmocka_unit_test_setup_teardown(test_request_metrics, setup_metrics, teardown),
        cmocka_unit_test_setup_teardown(test_route_mirror, setup_metrics, teardown),
    };
    (void)test_unknown_vip;
    return cmocka_run_group_tests(tests, NULL, NULL);
}
