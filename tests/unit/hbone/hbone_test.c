/*
 * Tests of src/hbone: an HBONE server and a client pool on one loop over
 * loopback, with workload certificates from a test CA. The server's
 * on_connect connects to a TCP echo server and pumps the tunnel into it.
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
#include <malloc.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <openssl/ssl.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/container.h"
#include "core/log.h"
#include "core/loop.h"
#include "hbone/hbone-int.h"
#include "hbone/hbone.h"
#include "l4/pump.h"
#include "tls/ca.h"
#include "tls/tls.h"

#define GUARD_MS  20000
#define SERVER_ID "spiffe://cluster.local/ns/default/sa/server"
#define CLIENT_ID "spiffe://cluster.local/ns/default/sa/client"

/* Authorities whose port tells the test server what to answer. */
#define PORT_401   401
#define PORT_503   503
#define PORT_DEFER 9 /* keep the CONNECT unanswered in env->deferred */

/* ---- temp dirs and certificates ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

struct ident {
    char *key, *cert;
};

static void issue(struct veil_ca *ca, const char *id, struct ident *out)
{
    char err[256];
    assert_int_equal(veil_ca_issue(ca, id, 0, &out->key, &out->cert, err, sizeof(err)), 0);
}

static void ident_free(struct ident *i)
{
    veil_free(i->key);
    veil_free(i->cert);
}

/* ---- the environment ---- */

struct echo_conn {
    struct veil_io io;
    int fd;
    struct veil_buf buf;
    bool eof, shut;
    struct echo_conn *next;
};

struct env {
    char dir[64], dir2[64];
    struct veil_ca *ca, *ca2;
    struct ident server, client, foreign;
    struct veil_tls_ctx *srv_tls, *cli_tls, *foreign_tls;
    struct veil_loop *loop;
    struct veil_hbone_server *srv;
    struct veil_hbone_pool *pool;
    struct veil_hbone_server_opts so;
    struct veil_hbone_pool_opts po;
    int lfd, efd; /* the HBONE listener, the echo listener */
    struct veil_io lio, eio;
    struct sockaddr_in hbone_addr;
    uint16_t echo_port;
    struct echo_conn *echoes;
    struct veil_timer guard, poll;
    bool guard_fired;
    long fail_after; /* >= 0: allocations fail after that many, during run() */
    /* what the server saw */
    int on_connects;
    char last_peer_id[256];
    char last_authority[64];
    char last_principal[256]; /* x-veil-source-principal, "" if none */
    size_t last_nheaders;
    bool last_dropped;
    int srv_pumps, srv_pumps_done, srv_pumps_failed;
    struct veil_hbone_h2s *deferred;
    /* what the test waits for */
    int waiting;
    bool (*until)(struct env *e);
};

static struct env *E;

static int listen_any(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, 128), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void check_stop(struct env *e)
{
    if (e->waiting <= 0 && (e->until == NULL || e->until(e)))
        veil_loop_stop(e->loop);
}

/* ---- echo server ---- */

static void echo_close(struct echo_conn *c)
{
    veil_io_stop(&c->io);
    close(c->fd);
    c->fd = -1;
    veil_buf_free(&c->buf);
}

static void echo_io(struct veil_io *io, uint32_t events)
{
    (void)events;
    struct echo_conn *c = VEIL_CONTAINER_OF(io, struct echo_conn, io);
    for (;;) {
        while (!c->eof && !veil_buf_is_full(&c->buf)) {
            ssize_t n = veil_buf_read_fd(&c->buf, c->fd);
            if (n == 0)
                c->eof = true;
            if (n == -EAGAIN)
                break;
            if (n < 0 && n != -EAGAIN) {
                echo_close(c);
                return;
            }
        }
        ssize_t w = veil_buf_write_fd(&c->buf, c->fd);
        if (w < 0 && w != -EAGAIN) {
            echo_close(c);
            return;
        }
        if (w <= 0 || c->eof)
            break;
    }
    if (c->eof && veil_buf_is_empty(&c->buf) && !c->shut) {
        shutdown(c->fd, SHUT_WR);
        c->shut = true;
    }
    if (c->shut) {
        echo_close(c);
        return;
    }
    uint32_t ev = (!c->eof && !veil_buf_is_full(&c->buf) ? VEIL_IO_READ : 0) |
                  (!veil_buf_is_empty(&c->buf) ? VEIL_IO_WRITE : 0);
    veil_io_modify(&c->io, ev);
}

static void echo_accept(struct veil_io *io, uint32_t events)
{
    (void)events;
    struct env *e = VEIL_CONTAINER_OF(io, struct env, eio);
    int fd;
    while ((fd = accept4(e->efd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        struct echo_conn *c = calloc(1, sizeof(*c));
        assert_non_null(c);
        c->fd = fd;
        veil_buf_init(&c->buf, 32768);
        c->next = e->echoes;
        e->echoes = c;
        assert_int_equal(veil_io_start(e->loop, &c->io, fd, VEIL_IO_READ, echo_io), 0);
    }
}

/* ---- the HBONE server side ---- */

static void hbone_accept(struct veil_io *io, uint32_t events)
{
    (void)events;
    struct env *e = VEIL_CONTAINER_OF(io, struct env, lio);
    int fd;
    while ((fd = accept4(e->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0)
        veil_hbone_server_accept(e->srv, fd);
}

static void srv_pump_done(struct veil_l4_pump *p, const char *err,
                          const struct veil_l4_pump_stats *st, void *arg)
{
    (void)p;
    (void)st;
    struct env *e = arg;
    e->srv_pumps_done++;
    if (err != NULL)
        e->srv_pumps_failed++;
    check_stop(e);
}

/* Connects to the echo server and pumps the tunnel into it. */
static void tunnel_to_echo(struct env *e, struct veil_hbone_h2s *h2s)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons(e->echo_port)};
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    if (veil_hbone_h2s_respond(h2s, 200) != 0) {
        close(fd);
        return;
    }
    struct veil_l4_end *up = veil_l4_tcp_new(e->loop, fd);
    struct veil_l4_end *tun = veil_hbone_h2s_end(h2s);
    if (up == NULL) {
        tun->ops->close(tun, true);
        return;
    }
    if (veil_l4_pump_start(e->loop, tun, up, srv_pump_done, e) != NULL)
        e->srv_pumps++;
}

static void on_connect(struct veil_hbone_h2s *h2s, const struct veil_hbone_connect_info *info,
                       void *arg)
{
    struct env *e = arg;
    e->on_connects++;
    snprintf(e->last_peer_id, sizeof(e->last_peer_id), "%s", info->peer_id);
    snprintf(e->last_authority, sizeof(e->last_authority), "%s", info->authority);
    const char *principal = veil_hbone_connect_header(info, "x-veil-source-principal");
    snprintf(e->last_principal, sizeof(e->last_principal), "%s", principal ? principal : "");
    e->last_nheaders = info->nheaders;
    e->last_dropped = info->headers_dropped;
    assert_string_equal(veil_hbone_h2s_authority(h2s), info->authority);
    assert_int_equal(info->dst->sa_family, AF_INET);
    assert_int_equal(info->peer->sa_family, AF_INET);
    uint16_t port = ntohs(((const struct sockaddr_in *)info->dst)->sin_port);
    if (port == PORT_401 || port == PORT_503) {
        assert_int_equal(veil_hbone_h2s_respond(h2s, port), 0);
    } else if (port == PORT_DEFER) {
        assert_null(e->deferred);
        e->deferred = h2s;
        check_stop(e);
    } else {
        tunnel_to_echo(e, h2s);
    }
}

/* ---- the client side: a tunnel that sends a pattern and checks the echo ---- */

struct tunnel {
    struct env *e;
    struct veil_hbone_h2s *h2s; /* pending, then open */
    struct veil_l4_end *end;
    size_t to_send, sent, received;
    uint8_t seed;
    bool shut, eof, bad, failed, done, cb_called;
    int status;
    char err[200];
};

static uint8_t pat(uint8_t seed, size_t i)
{
    return (uint8_t)(i % 253 + seed);
}

static void tunnel_finish(struct tunnel *t, bool abort)
{
    if (t->end != NULL)
        t->end->ops->close(t->end, abort);
    t->end = NULL;
    t->done = true;
    t->e->waiting--;
    check_stop(t->e);
}

static void tunnel_drive(struct tunnel *t)
{
    struct veil_l4_end *end = t->end;
    uint8_t buf[8192];
    while (t->sent < t->to_send) {
        size_t n = t->to_send - t->sent < sizeof(buf) ? t->to_send - t->sent : sizeof(buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = pat(t->seed, t->sent + i);
        ssize_t w = end->ops->write(end, buf, n);
        if (w == -EAGAIN)
            break;
        if (w < 0) {
            t->failed = true;
            tunnel_finish(t, true);
            return;
        }
        t->sent += (size_t)w;
    }
    if (t->sent == t->to_send && !t->shut) {
        assert_int_equal(end->ops->shutdown_write(end), 0);
        t->shut = true;
    }
    for (;;) {
        ssize_t r = end->ops->read(end, buf, sizeof(buf));
        if (r == -EAGAIN)
            break;
        if (r < 0) {
            t->failed = true;
            tunnel_finish(t, true);
            return;
        }
        if (r == 0) {
            t->eof = true;
            break;
        }
        for (ssize_t i = 0; i < r; i++)
            if (buf[i] != pat(t->seed, t->received + (size_t)i))
                t->bad = true;
        t->received += (size_t)r;
    }
    if (t->eof && t->shut) {
        tunnel_finish(t, false);
        return;
    }
    end->ops->set_interest(end, VEIL_L4_READ | (t->sent < t->to_send ? VEIL_L4_WRITE : 0));
}

static void tunnel_notify(struct veil_l4_end *end, uint32_t events, void *arg)
{
    (void)end;
    (void)events;
    tunnel_drive(arg);
}

static void tunnel_cb(struct veil_hbone_h2s *h2s, int status, const char *err, void *arg)
{
    struct tunnel *t = arg;
    assert_false(t->cb_called);
    t->cb_called = true;
    t->status = status;
    snprintf(t->err, sizeof(t->err), "%s", err != NULL ? err : "");
    if (h2s == NULL) {
        assert_int_not_equal(status, 200);
        assert_non_null(err);
        t->h2s = NULL;
        tunnel_finish(t, false);
        return;
    }
    assert_ptr_equal(h2s, t->h2s);
    assert_int_equal(status, 200);
    assert_null(err);
    t->end = veil_hbone_h2s_end(h2s);
    veil_l4_end_bind(t->end, tunnel_notify, t);
    tunnel_drive(t);
}

static void dial_for(struct env *e, struct veil_hbone_dial *d, const char *authority)
{
    *d = (struct veil_hbone_dial){
        .key = CLIENT_ID "|pod-a|127.0.0.1:15008",
        .tls = e->cli_tls,
        .dst = (const struct sockaddr *)&e->hbone_addr,
        .dst_len = sizeof(e->hbone_addr),
        .authority = authority,
        .server_id = SERVER_ID,
    };
}

static void tunnel_open(struct env *e, struct tunnel *t, const struct veil_hbone_dial *d, size_t n,
                        uint8_t seed)
{
    *t = (struct tunnel){.e = e, .to_send = n, .seed = seed};
    t->h2s = veil_hbone_pool_connect(e->pool, d, tunnel_cb, t);
    assert_non_null(t->h2s);
    e->waiting++;
}

static void echo_authority(struct env *e, char *buf, size_t n)
{
    snprintf(buf, n, "127.0.0.1:%u", e->echo_port);
}

/* ---- setup and running ---- */

static void on_guard(struct veil_timer *tm)
{

    struct env *e = VEIL_CONTAINER_OF(tm, struct env, guard);
    e->guard_fired = true;
    veil_loop_stop(e->loop);
}

static void on_poll(struct veil_timer *tm)
{
    check_stop(VEIL_CONTAINER_OF(tm, struct env, poll));
}

/* Runs the loop until nothing is awaited (e->waiting) and e->until holds. */
static void run(struct env *e)
{
    e->guard_fired = false;
    assert_int_equal(veil_timer_start(e->loop, &e->guard, GUARD_MS, 0, on_guard), 0);
    assert_int_equal(veil_timer_start(e->loop, &e->poll, 2, 2, on_poll), 0);
    if (e->fail_after >= 0)
        veil_alloc_fail_after(e->fail_after);
    assert_int_equal(veil_loop_run(e->loop), 0);
    veil_alloc_fail_reset();
    if (e->guard_fired)
        fprintf(stderr, "guard: still waiting for %d, server pumps %d/%d done\n", e->waiting,
                e->srv_pumps_done, e->srv_pumps);
    assert_false(e->guard_fired);
    veil_timer_stop(&e->guard);
    veil_timer_stop(&e->poll);
}

static struct veil_tls_ctx *ctx(enum veil_tls_role role, const struct ident *i, const char *bundle)
{
    char err[256];
    struct veil_tls_ctx_opts o = {
        .role = role,
        .cert_pem = i != NULL ? i->cert : NULL,
        .key_pem = i != NULL ? i->key : NULL,
        .trust_bundle_pem = bundle,
        .require_client_cert = role == VEIL_TLS_SERVER,
    };
    struct veil_tls_ctx *c = veil_tls_ctx_new(&o, err, sizeof(err));
    if (c == NULL)
        fail_msg("tls ctx: %s", err);
    return c;
}

static void start_servers(struct env *e)
{
    e->so.tls = e->srv_tls;
    e->so.cbs.on_connect = on_connect;
    e->so.arg = e;
    e->srv = veil_hbone_server_new(e->loop, &e->so);
    assert_non_null(e->srv);
    e->pool = veil_hbone_pool_new(e->loop, &e->po);
    assert_non_null(e->pool);
}

static int setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    strcpy(e->dir, "/tmp/veil-hbone-test-XXXXXX");
    strcpy(e->dir2, "/tmp/veil-hbone-test2-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    assert_non_null(mkdtemp(e->dir2));
    char err[256];
    struct veil_ca_opts co = {.state_dir = e->dir};
    assert_int_equal(veil_ca_open(&e->ca, &co, err, sizeof(err)), 0);
    co.state_dir = e->dir2;
    assert_int_equal(veil_ca_open(&e->ca2, &co, err, sizeof(err)), 0);
    issue(e->ca, SERVER_ID, &e->server);
    issue(e->ca, CLIENT_ID, &e->client);
    issue(e->ca2, CLIENT_ID, &e->foreign);
    e->srv_tls = ctx(VEIL_TLS_SERVER, &e->server, veil_ca_bundle_pem(e->ca));
    e->cli_tls = ctx(VEIL_TLS_CLIENT, &e->client, veil_ca_bundle_pem(e->ca));
    e->foreign_tls = ctx(VEIL_TLS_CLIENT, &e->foreign, veil_ca_bundle_pem(e->ca));
    e->fail_after = -1;
    e->loop = veil_loop_new("hbone-test");
    assert_non_null(e->loop);
    uint16_t port;
    e->lfd = listen_any(&port);
    e->hbone_addr = (struct sockaddr_in){
        .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK), .sin_port = htons(port)};
    e->efd = listen_any(&e->echo_port);
    assert_int_equal(veil_io_start(e->loop, &e->lio, e->lfd, VEIL_IO_READ, hbone_accept), 0);
    assert_int_equal(veil_io_start(e->loop, &e->eio, e->efd, VEIL_IO_READ, echo_accept), 0);
    E = e;
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    struct env *e = *state;
    veil_hbone_pool_free(e->pool);
    veil_hbone_server_free(e->srv);
    veil_io_stop(&e->lio);
    veil_io_stop(&e->eio);
    close(e->lfd);
    close(e->efd);
    veil_loop_free(e->loop); /* runs what is deferred: pumps and streams go */
    while (e->echoes != NULL) {
        struct echo_conn *c = e->echoes;
        e->echoes = c->next;
        if (c->fd >= 0)
            echo_close(c);
        free(c);
    }
    veil_tls_ctx_free(e->srv_tls);
    veil_tls_ctx_free(e->cli_tls);
    veil_tls_ctx_free(e->foreign_tls);
    ident_free(&e->server);
    ident_free(&e->client);
    ident_free(&e->foreign);
    veil_ca_free(e->ca);
    veil_ca_free(e->ca2);
    nftw(e->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    nftw(e->dir2, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(e);
    E = NULL;
    return 0;
}

static bool server_pumps_done(struct env *e)
{
    return e->srv_pumps_done == e->srv_pumps;
}

/* ---- tests ---- */

static void tunnel_echo_both_ways(void **state)
{
    struct env *e = *state;
    start_servers(e);
    char auth[64];
    echo_authority(e, auth, sizeof(auth));
    struct veil_hbone_dial d;
    dial_for(e, &d, auth);
    struct tunnel t;
    tunnel_open(e, &t, &d, 4 * 1024 * 1024 + 3, 7);
    e->until = server_pumps_done;
    run(e);
    assert_true(t.done);
    assert_false(t.failed);
    assert_false(t.bad);
    assert_int_equal(t.status, 200);
    assert_int_equal(t.received, t.to_send);
    assert_int_equal(e->on_connects, 1);
    assert_string_equal(e->last_peer_id, CLIENT_ID);
    assert_string_equal(e->last_authority, auth);
    assert_int_equal(e->srv_pumps_failed, 0);
    struct veil_hbone_stats ss, ps;
    veil_hbone_server_stats(e->srv, &ss);
    veil_hbone_pool_stats(e->pool, &ps);
    assert_int_equal(ss.connections_total, 1);
    assert_int_equal(ss.streams_total, 1);
    assert_int_equal(ss.streams_ok, 1);
    assert_int_equal(ss.handshake_failures, 0);
    assert_int_equal(ps.connections_total, 1);
    assert_int_equal(ps.connections, 1);
    assert_int_equal(ps.streams_total, 1);
    assert_int_equal(ps.streams_ok, 1);
}

static void many_streams_share_one_h2c(void **state)
{
    struct env *e = *state;
    start_servers(e);
    char auth[64];
    echo_authority(e, auth, sizeof(auth));
    struct veil_hbone_dial d;
    dial_for(e, &d, auth);
    enum { N = 60 };
    struct tunnel *t = calloc(N, sizeof(*t));
    assert_non_null(t);
    for (int i = 0; i < N; i++)
        tunnel_open(e, &t[i], &d, 100000 + (size_t)i * 1000, (uint8_t)i);
    e->until = server_pumps_done;
    run(e);
    for (int i = 0; i < N; i++) {
        assert_true(t[i].done);
        assert_false(t[i].failed || t[i].bad);
        assert_int_equal(t[i].received, t[i].to_send);
    }
    struct veil_hbone_stats ss, ps;
    veil_hbone_server_stats(e->srv, &ss);
    veil_hbone_pool_stats(e->pool, &ps);
    assert_int_equal(ps.connections_total, 1);
    assert_int_equal(ps.pool_reuses, N - 1);
    assert_int_equal(ps.streams_ok, N);
    assert_int_equal(ss.connections_total, 1);
    assert_int_equal(ss.streams_ok, N);
    assert_int_equal(ss.streams, 0);
    free(t);
}

/* With at most 10 streams per h2c, 25 concurrent tunnels need 3 h2c; a
 * different key never shares. */
static void pool_opens_more_h2c_when_full(void **state)
{
    struct env *e = *state;
    e->po.limits.max_streams = 10;
    start_servers(e);
    char auth[64];
    echo_authority(e, auth, sizeof(auth));
    struct veil_hbone_dial d, d2;
    dial_for(e, &d, auth);
    dial_for(e, &d2, auth);
    d2.key = "another-key";
    enum { N = 25 };
    struct tunnel t[N + 1];
    for (int i = 0; i < N; i++)
        tunnel_open(e, &t[i], &d, 5000, (uint8_t)i);
    tunnel_open(e, &t[N], &d2, 5000, 99);
    e->until = server_pumps_done;
    run(e);
    for (int i = 0; i <= N; i++)
        assert_true(t[i].done && !t[i].failed && !t[i].bad && t[i].received == 5000);
    struct veil_hbone_stats ps;
    veil_hbone_pool_stats(e->pool, &ps);
    assert_int_equal(ps.connections_total, 4);
    assert_int_equal(ps.streams_ok, N + 1);
}

static void refused_401_and_503(void **state)
{
    struct env *e = *state;
    start_servers(e);
    struct veil_hbone_dial d1, d2;
    dial_for(e, &d1, "10.0.0.1:401");
    dial_for(e, &d2, "10.0.0.1:503");
    struct tunnel t1, t2;
    tunnel_open(e, &t1, &d1, 10, 1);
    tunnel_open(e, &t2, &d2, 10, 2);
    run(e);
    assert_int_equal(t1.status, 401);
    assert_string_equal(t1.err, "HTTP 401");
    assert_int_equal(t2.status, 503);
    assert_string_equal(t2.err, "HTTP 503");
    struct veil_hbone_stats ss, ps;
    veil_hbone_server_stats(e->srv, &ss);
    veil_hbone_pool_stats(e->pool, &ps);
    assert_int_equal(ss.streams_refused, 2);
    assert_int_equal(ps.streams_refused, 2);
    assert_int_equal(ps.connections_total, 1);
}

static void wrong_server_identity_refused(void **state)
{
    struct env *e = *state;
    start_servers(e);
    char auth[64];
    echo_authority(e, auth, sizeof(auth));
    struct veil_hbone_dial d;
    dial_for(e, &d, auth);
    d.server_id = "spiffe://cluster.local/ns/default/sa/other";
    struct tunnel t1, t2;
    tunnel_open(e, &t1, &d, 10, 1);
    tunnel_open(e, &t2, &d, 10, 2);
    run(e);
    assert_int_equal(t1.status, 0);
    assert_non_null(strstr(t1.err, "wrong server identity"));
    assert_non_null(strstr(t2.err, "wrong server identity"));
    assert_int_equal(e->on_connects, 0);
    struct veil_hbone_stats ps;
    veil_hbone_pool_stats(e->pool, &ps);
    assert_int_equal(ps.identity_mismatch, 1);
    assert_int_equal(ps.connections_total, 1);
    assert_int_equal(ps.connections, 0);
}

static bool server_has_handshake_failure(struct env *e)
{
    struct veil_hbone_stats ss;
    veil_hbone_server_stats(e->srv, &ss);
    return ss.handshake_failures >= 1 && ss.connections == 0;
}

static void client_from_another_ca_refused(void **state)
{
    struct env *e = *state;
    start_servers(e);
    char auth[64];
    echo_authority(e, auth, sizeof(auth));
    struct veil_hbone_dial d;
    dial_for(e, &d, auth);
    d.tls = e->foreign_tls;
    struct tunnel t;
    tunnel_open(e, &t, &d, 10, 1);
    e->until = server_has_handshake_failure;
    run(e);
    assert_true(t.done);
    assert_int_equal(t.status, 0);
    assert_true(t.err[0] != '\0');
    assert_int_equal(e->on_connects, 0);
}

/* ---- garbage instead of TLS, and a silent client ---- */

struct raw {
    struct veil_io io;
    int fd;
    bool closed;
    struct env *e;
};

static void raw_io(struct veil_io *io, uint32_t events)
{
    (void)events;
    struct raw *r = VEIL_CONTAINER_OF(io, struct raw, io);
    char buf[512];
    ssize_t n = recv(r->fd, buf, sizeof(buf), 0);
    if (n == 0 || (n < 0 && errno != EAGAIN)) {
        r->closed = true;
        veil_io_stop(&r->io);
        r->e->waiting--;
        check_stop(r->e);
    }
}

static void raw_connect(struct env *e, struct raw *r, const char *send_first)
{
    *r = (struct raw){.e = e};
    r->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(r->fd >= 0);
    assert_int_equal(connect(r->fd, (struct sockaddr *)&e->hbone_addr, sizeof(e->hbone_addr)), 0);
    if (send_first != NULL)
        assert_true(send(r->fd, send_first, strlen(send_first), 0) > 0);
    assert_int_equal(fcntl(r->fd, F_SETFL, fcntl(r->fd, F_GETFL) | O_NONBLOCK), 0);
    assert_int_equal(veil_io_start(e->loop, &r->io, r->fd, VEIL_IO_READ, raw_io), 0);
    e->waiting++;
}

static void garbage_refused_server_keeps_serving(void **state)
{
    struct env *e = *state;
    start_servers(e);
    struct raw r;
    raw_connect(e, &r, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    run(e);
    assert_true(r.closed);
    close(r.fd);
    struct veil_hbone_stats ss;
    veil_hbone_server_stats(e->srv, &ss);
    assert_int_equal(ss.handshake_failures, 1);
    /* The server still serves. */
    char auth[64];
    echo_authority(e, auth, sizeof(auth));
    struct veil_hbone_dial d;
    dial_for(e, &d, auth);
    struct tunnel t;
    tunnel_open(e, &t, &d, 1000, 3);
    e->until = server_pumps_done;
    run(e);
    assert_true(t.done && !t.failed && !t.bad);
    assert_int_equal(t.received, 1000);
}

static void handshake_timeout(void **state)
{
    struct env *e = *state;
    e->so.limits.handshake_ms = 50;
    start_servers(e);
    struct raw r;
    raw_connect(e, &r, NULL);
    run(e);
    assert_true(r.closed);
    close(r.fd);
    struct veil_hbone_stats ss;
    veil_hbone_server_stats(e->srv, &ss);
    assert_int_equal(ss.handshake_failures, 1);
    assert_int_equal(ss.connections, 0);
}

/* ---- idle h2c, cancel, pool free ---- */

static bool pool_idle_closed(struct env *e)
{
    struct veil_hbone_stats ps;
    veil_hbone_pool_stats(e->pool, &ps);
    return ps.connections == 0 && server_pumps_done(e);
}

/* Starts the servers and opens one tunnel of n bytes to the echo server
 * (the pool copies what it keeps of the dial). */
static void echo_tunnel(struct env *e, struct tunnel *t, size_t n, uint8_t seed)
{
    start_servers(e);
    char auth[64];
    echo_authority(e, auth, sizeof(auth));
    struct veil_hbone_dial d;
    dial_for(e, &d, auth);
    tunnel_open(e, t, &d, n, seed);
}

static void idle_h2c_closed(void **state)
{
    struct env *e = *state;
    e->po.limits.idle_ms = 30;
    struct tunnel t;
    echo_tunnel(e, &t, 1000, 3);
    e->until = pool_idle_closed;
    run(e);
    assert_true(t.done && !t.failed);
    struct veil_hbone_stats ps;
    veil_hbone_pool_stats(e->pool, &ps);
    assert_int_equal(ps.connections_total, 1);
    assert_int_equal(ps.connections, 0);
}

/* ---- TLS record buffers held while busy ---- */

static uint64_t quiet_until;

static bool quiet_long_enough(struct env *e)
{
    return server_pumps_done(e) && veil_loop_now(e->loop) >= quiet_until;
}

static struct veil_tls_ctx *held_ctx(enum veil_tls_role role, const struct ident *i,
                                     const char *bundle)
{
    char err[256];
    struct veil_tls_ctx_opts o = {.role = role,
                                  .cert_pem = i->cert,
                                  .key_pem = i->key,
                                  .trust_bundle_pem = bundle,
                                  .require_client_cert = role == VEIL_TLS_SERVER,
                                  .hold_buffers = true};
    struct veil_tls_ctx *c = veil_tls_ctx_new(&o, err, sizeof(err));
    if (c == NULL)
        fail_msg("tls ctx: %s", err);
    return c;
}

/* Contexts made with hold_buffers (the node's and the waypoint's) keep
 * OpenSSL's record buffers from one read or write to the next; the h2c's
 * trim gives them back once the connection is quiet: memory in use drops
 * by at least the two ends' read buffers, with the h2c still open. */
static void held_tls_buffers_go_when_quiet(void **state)
{
    struct env *e = *state;
    veil_tls_ctx_free(e->srv_tls);
    veil_tls_ctx_free(e->cli_tls);
    e->srv_tls = held_ctx(VEIL_TLS_SERVER, &e->server, veil_ca_bundle_pem(e->ca));
    e->cli_tls = held_ctx(VEIL_TLS_CLIENT, &e->client, veil_ca_bundle_pem(e->ca));
    assert_int_equal(SSL_CTX_get_mode(e->srv_tls->_ssl_ctx) & SSL_MODE_RELEASE_BUFFERS, 0);
    assert_int_equal(SSL_CTX_get_mode(e->cli_tls->_ssl_ctx) & SSL_MODE_RELEASE_BUFFERS, 0);
    assert_int_not_equal(SSL_CTX_get_mode(e->foreign_tls->_ssl_ctx) & SSL_MODE_RELEASE_BUFFERS,
                         0); /* the default */
    struct tunnel t;
    echo_tunnel(e, &t, 1000, 5);
    e->until = server_pumps_done;
    run(e);
    assert_true(t.done && !t.failed);
    size_t busy = mallinfo2().uordblks;
    quiet_until = veil_loop_now(e->loop) + 2 * HBONE_TRIM_MS;
    e->until = quiet_long_enough;
    run(e);
    size_t quiet = mallinfo2().uordblks;
    struct veil_hbone_stats ps;
    veil_hbone_pool_stats(e->pool, &ps);
    assert_int_equal(ps.connections, 1); /* not closed: only its buffers went */
#ifndef __SANITIZE_ADDRESS__ /* ASan's allocator is not glibc's: mallinfo2 sees nothing */
    assert_true(busy > quiet && busy - quiet >= 2 * VEIL_TLS_READ_BUF);
#else
    (void)busy;
    (void)quiet;
#endif
}

static bool have_deferred(struct env *e)
{
    return e->deferred != NULL;
}

static bool server_stream_gone(struct env *e)
{
    struct veil_hbone_stats ss;
    veil_hbone_server_stats(e->srv, &ss);
    return ss.streams == 0;
}

/* The client gives up while the server's application still thinks; the
 * late answer fails cleanly. A connect cancelled before its h2c is up never
 * calls back. */
static void cancel_pending_connect(void **state)
{
    struct env *e = *state;
    start_servers(e);
    struct veil_hbone_dial d;
    dial_for(e, &d, "10.0.0.1:9");
    struct tunnel t1, t2;
    tunnel_open(e, &t1, &d, 10, 1);
    tunnel_open(e, &t2, &d, 10, 2);
    veil_hbone_h2s_cancel(t2.h2s);
    e->waiting = 0;
    e->until = have_deferred;
    run(e);
    assert_false(t1.cb_called);
    veil_hbone_h2s_cancel(t1.h2s);
    e->until = server_stream_gone;
    run(e);
    assert_int_equal(veil_hbone_h2s_respond(e->deferred, 200), -ECONNRESET);
    e->deferred = NULL;
    assert_false(t1.cb_called);
    assert_false(t2.cb_called);
    assert_int_equal(e->on_connects, 1);
}

static void pool_free_fails_pending(void **state)
{
    struct env *e = *state;
    start_servers(e);
    struct veil_hbone_dial d;
    dial_for(e, &d, "10.0.0.1:9");
    struct tunnel t;
    tunnel_open(e, &t, &d, 10, 1);
    e->until = have_deferred;
    e->waiting = 0;
    run(e);
    e->waiting = 1;
    e->until = NULL;
    veil_hbone_pool_free(e->pool);
    e->pool = NULL;
    assert_false(t.cb_called); /* not from inside the free */
    run(e);
    assert_true(t.cb_called);
    assert_string_equal(t.err, "pool closed");
    e->until = server_stream_gone; /* the server sees the close in its own time */
    run(e);
    assert_int_equal(veil_hbone_h2s_respond(e->deferred, 503), -ECONNRESET);
    e->deferred = NULL;
}

/* ---- malformed requests, sent with nghttp2 directly: a GET, a CONNECT
 * without :authority, one to a name, one with headers over the limit, and
 * a good one on the same connection ---- */

struct rawh2 {
    struct veil_tls_conn tls;
    nghttp2_session *ng;
    bool connected, established, dead;
    int32_t ids[5];
    int status[5];
    uint32_t rst[5];
    bool closed[5];
    char echo[16];
    size_t echo_len;
    struct env *e;
};

static int rawh2_index(struct rawh2 *r, int32_t id)
{
    for (int i = 0; i < 5; i++)
        if (r->ids[i] == id)
            return i;
    return -1;
}

static int rh_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    (void)ng;
    (void)flags;
    struct rawh2 *r = user;
    int i = rawh2_index(r, f->hd.stream_id);
    if (i >= 0 && namelen == 7 && memcmp(name, ":status", 7) == 0)
        r->status[i] = atoi((const char *)value) * (valuelen == 3);
    return 0;
}

static int rh_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                   void *user)
{
    (void)ng;
    (void)flags;
    struct rawh2 *r = user;
    if (rawh2_index(r, id) == 3 && r->echo_len + len < sizeof(r->echo)) {
        memcpy(r->echo + r->echo_len, data, len);
        r->echo_len += len;
    }
    return 0;
}

static int rh_close(nghttp2_session *ng, int32_t id, uint32_t code, void *user)
{
    (void)ng;
    struct rawh2 *r = user;
    int i = rawh2_index(r, id);
    if (i >= 0) {
        r->closed[i] = true;
        r->rst[i] = code;
        r->e->waiting--;
    }
    return 0;
}

static ssize_t rh_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                       uint32_t *flags, nghttp2_data_source *source, void *user)
{
    (void)ng;
    (void)id;
    (void)source;
    (void)user;
    assert_true(length >= 4);
    memcpy(buf, "ping", 4);
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    return 4;
}

static void rawh2_flush(struct rawh2 *r)
{
    const uint8_t *data;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(r->ng, &data)) > 0)
        assert_int_equal(veil_tls_send(&r->tls, data, (size_t)n), 0);
    veil_tls_flush(&r->tls);
}

#define NV(n, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE             \
    }

static void rawh2_submit(struct rawh2 *r)
{
    char auth[64];
    echo_authority(r->e, auth, sizeof(auth));
    const nghttp2_nv get[] = {NV(":method", "GET"), NV(":scheme", "https"),
                              NV(":authority", "10.0.0.1:80"), NV(":path", "/")};
    const nghttp2_nv noauth[] = {NV(":method", "CONNECT")};
    const nghttp2_nv name[] = {NV(":method", "CONNECT"), NV(":authority", "example.com:80")};
    const nghttp2_nv good[] = {NV(":method", "CONNECT"), NV(":authority", auth)};
    nghttp2_data_provider dp = {.read_callback = rh_body};
    r->ids[0] = nghttp2_submit_request(r->ng, NULL, get, 4, NULL, NULL);
    r->ids[1] = nghttp2_submit_request(r->ng, NULL, noauth, 1, NULL, NULL);
    r->ids[2] = nghttp2_submit_request(r->ng, NULL, name, 2, NULL, NULL);
    r->ids[3] = nghttp2_submit_request(r->ng, NULL, good, 2, &dp, NULL);
    static char big[20000];
    memset(big, 'x', sizeof(big) - 1);
    const nghttp2_nv huge[] = {NV(":method", "CONNECT"), NV(":authority", auth), NV("x-big", big)};
    r->ids[4] = nghttp2_submit_request(r->ng, NULL, huge, 3, NULL, NULL);
    for (int i = 0; i < 5; i++)
        assert_true(r->ids[i] > 0);
}

static void rawh2_io(struct veil_io *io, uint32_t events)
{
    (void)events;
    struct rawh2 *r = VEIL_CONTAINER_OF(io, struct rawh2, tls.io);
    if (r->dead)
        return;
    if (!r->established) {
        char err[256];
        int rc = veil_tls_handshake(&r->tls, err, sizeof(err));
        if (rc == -EAGAIN)
            return;
        assert_int_equal(rc, 0);
        r->established = true;
        nghttp2_session_callbacks *cbs;
        assert_int_equal(nghttp2_session_callbacks_new(&cbs), 0);
        nghttp2_session_callbacks_set_on_header_callback(cbs, rh_header);
        nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, rh_data);
        nghttp2_session_callbacks_set_on_stream_close_callback(cbs, rh_close);
        assert_int_equal(nghttp2_session_client_new(&r->ng, cbs, r), 0);
        nghttp2_session_callbacks_del(cbs);
        assert_int_equal(nghttp2_submit_settings(r->ng, NGHTTP2_FLAG_NONE, NULL, 0), 0);
        rawh2_submit(r);
    }
    uint8_t buf[4096];
    ssize_t n;
    while ((n = veil_tls_read(&r->tls, buf, sizeof(buf))) > 0)
        assert_true(nghttp2_session_mem_recv(r->ng, buf, (size_t)n) >= 0);
    if (n != -EAGAIN) {
        r->dead = true;
        veil_io_stop(&r->tls.io);
    }
    rawh2_flush(r);
    check_stop(r->e);
}

static void malformed_connects_answered(void **state)
{
    struct env *e = *state;
    start_servers(e);
    struct rawh2 r = {.e = e};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&e->hbone_addr, sizeof(e->hbone_addr)), 0);
    assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    assert_int_equal(veil_tls_conn_init(&r.tls, e->cli_tls, e->loop, fd, rawh2_io), 0);
    e->waiting = 5; /* the streams to close */
    e->until = server_pumps_done;
    run(e);
    assert_false(r.dead);
    assert_int_equal(r.status[0], 400);                 /* GET */
    assert_int_equal(r.rst[1], NGHTTP2_PROTOCOL_ERROR); /* CONNECT without :authority */
    assert_int_equal(r.status[2], 400);                 /* a name, not an IP */
    assert_int_equal(r.status[3], 200);                 /* and the good one works */
    assert_int_equal(r.echo_len, 4);
    assert_memory_equal(r.echo, "ping", 4);
    assert_int_equal(r.status[4], 0); /* headers over the limit: reset */
    assert_int_not_equal(r.rst[4], 0);
    struct veil_hbone_stats ss;
    veil_hbone_server_stats(e->srv, &ss);
    assert_int_equal(ss.bad_requests, 4);
    assert_int_equal(ss.streams_ok, 1);
    assert_int_equal(ss.protocol_errors, 0);
    assert_int_equal(e->on_connects, 1);
    nghttp2_session_del(r.ng);
    veil_tls_conn_close(&r.tls);
}

/* ---- authorities ---- */

static void authority_parse_and_format(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    socklen_t len;
    char buf[VEIL_HBONE_AUTHORITY_MAX];
    const char *good[] = {"10.1.2.3:80", "[fd00::1]:15008", "255.255.255.255:65535"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        assert_int_equal(veil_hbone_parse_authority(good[i], strlen(good[i]), &ss, &len), 0);
        assert_int_equal(veil_hbone_format_authority((struct sockaddr *)&ss, buf, sizeof(buf)), 0);
        assert_string_equal(buf, good[i]);
    }
    const char *bad[] = {"",
                         "10.1.2.3",
                         "10.1.2.3:",
                         "10.1.2.3:0",
                         "10.1.2.3:65536",
                         "10.1.2.3:08",
                         "host:80",
                         "fd00::1:80",
                         "[fd00::1]80",
                         "[fd00::1]:",
                         "1.2.3.4:80 ",
                         "[1.2.3.4]:80",
                         "10.1.2.3:+80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(veil_hbone_parse_authority(bad[i], strlen(bad[i]), &ss, &len), -EINVAL);
}

/* ---- extra request headers ---- */

#define WAYPOINT_CALLER "spiffe://cluster.local/ns/shop/sa/caller"

/* A header sent with a dial arrives in on_connect; the next dial on the
 * same h2c without headers carries none. */
static void extra_headers_arrive(void **state)
{
    struct env *e = *state;
    start_servers(e);
    char auth[64];
    echo_authority(e, auth, sizeof(auth));
    const struct veil_hbone_header hdrs[] = {
        {"x-veil-source-principal", WAYPOINT_CALLER},
        {"baggage", "k8s.namespace.name=shop,service.name=caller"},
    };
    struct veil_hbone_dial d;
    dial_for(e, &d, auth);
    d.headers = hdrs;
    d.nheaders = 2;
    struct tunnel t;
    tunnel_open(e, &t, &d, 1000, 3);
    e->until = server_pumps_done;
    run(e);
    assert_true(t.done && !t.failed && !t.bad && t.received == 1000);
    assert_string_equal(e->last_principal, WAYPOINT_CALLER);
    assert_int_equal(e->last_nheaders, 2);
    assert_false(e->last_dropped);
    d.headers = NULL;
    d.nheaders = 0;
    tunnel_open(e, &t, &d, 10, 4);
    run(e);
    assert_true(t.done && !t.failed && t.received == 10);
    assert_string_equal(e->last_principal, "");
    assert_int_equal(e->last_nheaders, 0);
    assert_int_equal(e->on_connects, 2);
    struct veil_hbone_stats ps;
    veil_hbone_pool_stats(e->pool, &ps);
    assert_int_equal(ps.connections_total, 1);
}

/* Headers that break the rules or the bounds are refused at dial: EINVAL,
 * no callback, nothing sent. */
static void bad_extra_headers_refused_at_dial(void **state)
{
    struct env *e = *state;
    start_servers(e);
    static char big[VEIL_HBONE_HEADERS_BYTES];
    memset(big, 'v', sizeof(big) - 1);
    const struct veil_hbone_header bad[][1] = {
        {{"X-Upper", "v"}},    {{"has space", "v"}}, {{"", "v"}},          {{":path", "/"}},
        {{"connection", "x"}}, {{"host", "a"}},      {{"te", "trailers"}}, {{"x-crlf", "a\r\nb"}},
        {{"x-lf", "a\nb"}},    {{"x-ctl", "a\x01"}}, {{"x-lead", " v"}},   {{"x-trail", "v\t"}},
        {{"x-big", big}},      {{NULL, "v"}},        {{"x-null", NULL}},
    };
    char auth[64];
    echo_authority(e, auth, sizeof(auth));
    struct veil_hbone_dial d;
    dial_for(e, &d, auth);
    struct tunnel t = {.e = e};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(veil_hbone_headers_check(bad[i], 1), -EINVAL);
        d.headers = bad[i];
        d.nheaders = 1;
        errno = 0;
        assert_null(veil_hbone_pool_connect(e->pool, &d, tunnel_cb, &t));
        assert_int_equal(errno, EINVAL);
    }
    /* Too many, and too many bytes together (each one fine alone). */
    struct veil_hbone_header many[VEIL_HBONE_HEADERS_MAX + 1];
    for (size_t i = 0; i < VEIL_HBONE_HEADERS_MAX + 1; i++)
        many[i] = (struct veil_hbone_header){"x-h", "v"};
    assert_int_equal(veil_hbone_headers_check(many, VEIL_HBONE_HEADERS_MAX), 0);
    assert_int_equal(veil_hbone_headers_check(many, VEIL_HBONE_HEADERS_MAX + 1), -EINVAL);
    static char half[VEIL_HBONE_HEADERS_BYTES / 2];
    memset(half, 'v', sizeof(half) - 1);
    const struct veil_hbone_header two[] = {{"x-a", half}, {"x-b", half}};
    assert_int_equal(veil_hbone_headers_check(two, 1), 0);
    assert_int_equal(veil_hbone_headers_check(two, 2), -EINVAL);
    d.headers = many;
    d.nheaders = VEIL_HBONE_HEADERS_MAX + 1;
    assert_null(veil_hbone_pool_connect(e->pool, &d, tunnel_cb, &t));
    assert_int_equal(errno, EINVAL);
    d.headers = NULL;
    d.nheaders = 1;
    assert_null(veil_hbone_pool_connect(e->pool, &d, tunnel_cb, &t));
    assert_int_equal(errno, EINVAL);
    assert_false(t.cb_called);
    /* Good ones pass, obs-text and inner blanks included. */
    const struct veil_hbone_header good[] = {{"x-veil-source-principal", WAYPOINT_CALLER},
                                             {"traceparent", "00-ab-cd-01"},
                                             {"x-t", "a b\tc \xc3\xa9"},
                                             {"x-empty", ""}};
    assert_int_equal(veil_hbone_headers_check(good, 4), 0);
    assert_int_equal(veil_hbone_headers_check(NULL, 0), 0);
    struct veil_hbone_stats ps;
    veil_hbone_pool_stats(e->pool, &ps);
    assert_int_equal(ps.connections_total, 0);
    assert_int_equal(ps.streams_total, 0);
}

/* The server keeps at most VEIL_HBONE_HEADERS_MAX headers and
 * VEIL_HBONE_HEADERS_BYTES, says it dropped some, and the lookup finds the
 * first of a name. */
static void server_keeps_headers_within_bounds(void **state)
{
    (void)state;
    struct veil_hbone_h2s *s = calloc(1, sizeof(*s));
    assert_non_null(s);
    const uint8_t *v = (const uint8_t *)"one";
    assert_int_equal(hbone__xhdr_add(s, (const uint8_t *)"x-a", 3, v, 3), 0);
    assert_int_equal(hbone__xhdr_add(s, (const uint8_t *)"x-a", 3, (const uint8_t *)"two", 3), 0);
    static uint8_t big[VEIL_HBONE_HEADERS_BYTES];
    memset(big, 'b', sizeof(big));
    assert_int_equal(hbone__xhdr_add(s, (const uint8_t *)"x-big", 5, big, sizeof(big)), 0);
    assert_true(s->xhdr_dropped);
    for (int i = 0; i < 10; i++)
        assert_int_equal(hbone__xhdr_add(s, (const uint8_t *)"x-n", 3, v, 3), 0);
    assert_int_equal(s->nxhdr, VEIL_HBONE_HEADERS_MAX);
    struct veil_hbone_header h[VEIL_HBONE_HEADERS_MAX];
    struct veil_hbone_connect_info info = {.headers = h, .nheaders = hbone__xhdr_list(s, h)};
    assert_int_equal(info.nheaders, VEIL_HBONE_HEADERS_MAX);
    assert_string_equal(veil_hbone_connect_header(&info, "x-a"), "one");
    assert_string_equal(veil_hbone_connect_header(&info, "x-n"), "one");
    assert_null(veil_hbone_connect_header(&info, "x-big"));
    assert_null(veil_hbone_connect_header(&info, "x-other"));
    assert_null(veil_hbone_connect_header(NULL, "x-a"));
    /* A value with a NUL is not kept (it could not be read back whole). */
    hbone__xhdr_free(s);
    s->xhdr_dropped = false;
    assert_int_equal(hbone__xhdr_add(s, (const uint8_t *)"x-z", 3, (const uint8_t *)"a\0b", 3), 0);
    assert_true(s->xhdr_dropped);
    assert_int_equal(s->nxhdr, 0);
    hbone__xhdr_free(s);
    free(s);
}

/* ---- allocation failures ---- */

static void alloc_failures(void **state)
{
    struct env *e = *state;
    struct veil_hbone_server_opts so = {.tls = e->srv_tls, .cbs.on_connect = on_connect};
    for (long n = 0; n < 4; n++) {
        veil_alloc_fail_after(n);
        struct veil_hbone_server *srv = veil_hbone_server_new(e->loop, &so);
        struct veil_hbone_pool *pool = veil_hbone_pool_new(e->loop, NULL);
        veil_alloc_fail_reset();
        veil_hbone_server_free(srv);
        veil_hbone_pool_free(pool);
    }
    /* Setting up a tunnel with the n-th allocation failing. */
    start_servers(e);
    char auth[64];
    echo_authority(e, auth, sizeof(auth));
    struct veil_hbone_dial d;
    dial_for(e, &d, auth);
    for (long n = 0; n < 4; n++) {
        struct tunnel t = {.e = e};
        veil_alloc_fail_after(n);
        struct veil_hbone_h2s *h2s = veil_hbone_pool_connect(e->pool, &d, tunnel_cb, &t);
        veil_alloc_fail_reset();
        if (h2s != NULL)
            veil_hbone_h2s_cancel(h2s);
    }
    /* A whole tunnel with the n-th allocation on the loop failing (HBONE
     * streams, buffers, pumps, TCP ends, timers): it works or fails
     * cleanly, and nothing leaks. */
    bool ok = false;
    int failed = 0;
    for (long n = 0; !ok && n < 400; n++) {
        struct tunnel t;
        tunnel_open(e, &t, &d, 100000, 5);
        e->until = server_pumps_done;
        e->fail_after = n;
        run(e);
        e->fail_after = -1;
        ok = t.done && !t.failed && !t.bad && t.received == 100000;
        failed += !ok;
    }
    assert_true(ok);
    assert_true(failed > 0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    veil_log_set_level(VEIL_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(authority_parse_and_format),
        cmocka_unit_test_setup_teardown(tunnel_echo_both_ways, setup, teardown),
        cmocka_unit_test_setup_teardown(many_streams_share_one_h2c, setup, teardown),
        cmocka_unit_test_setup_teardown(pool_opens_more_h2c_when_full, setup, teardown),
        cmocka_unit_test_setup_teardown(refused_401_and_503, setup, teardown),
        cmocka_unit_test_setup_teardown(wrong_server_identity_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(client_from_another_ca_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(garbage_refused_server_keeps_serving, setup, teardown),
        cmocka_unit_test_setup_teardown(handshake_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(idle_h2c_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(held_tls_buffers_go_when_quiet, setup, teardown),
        cmocka_unit_test_setup_teardown(cancel_pending_connect, setup, teardown),
        cmocka_unit_test_setup_teardown(pool_free_fails_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(malformed_connects_answered, setup, teardown),
        cmocka_unit_test_setup_teardown(alloc_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(extra_headers_arrive, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_extra_headers_refused_at_dial, setup, teardown),
        cmocka_unit_test(server_keeps_headers_within_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
