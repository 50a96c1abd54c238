/*
 * Bulk transfers through HBONE streams: a real server and pool on one loop
 * over loopback, and the test driving both ends of each stream itself
 * (no pump), so that either side can be a slow reader: it reads in small
 * pieces of varying size and pauses on a timer every so often, so that the
 * stream's receive buffer and HTTP/2 window fill and drain many times.
 * Data is pseudo-random (a keyed hash of the position) and checked byte for
 * byte.
 *
 * A stall fails the test: nothing moved for STALL_MS, or the whole run
 * exceeded DEADLINE_MS. Neither is a speed assertion: a healthy run moves
 * bytes every few milliseconds.
 *
 * Some runs give the TCP sockets tiny kernel buffers, so that TLS writes
 * hit a full socket all the time (the paths that wait for writability).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
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

#define SERVER_ID    "spiffe://cluster.local/ns/default/sa/server"
#define CLIENT_ID    "spiffe://cluster.local/ns/default/sa/client"
#define STALL_MS     10000  /* nothing moved this long: a stall */
#define DEADLINE_MS  300000 /* the whole run */
#define MAX_STREAMS  301
#define PORT_BASE    1000 /* the authority's port names the stream: PORT_BASE + index */
#define TINY_SOCKBUF 4096

#define MIB (1024u * 1024u)

/* Heap an idle open stream may cost, both sides together. */
#define IDLE_STREAM_MAX 2048

/* ---- the data: byte i of a direction with seed s ---- */

static uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static void gen(uint64_t seed, uint64_t pos, uint8_t *buf, size_t n)
{
    uint64_t w = mix(seed ^ (pos / 8));
    for (size_t i = 0; i < n; i++, pos++) {
        if (pos % 8 == 0)
            w = mix(seed ^ (pos / 8));
        buf[i] = (uint8_t)(w >> (8 * (pos % 8)));
    }
}

/* ---- one end of a stream, driven by the test ---- */

/* How an end reads: pieces of 1..chunk bytes; after `burst` bytes (0:
 * never) it stops reading for pause_ms (0: until the next iteration). */
struct reader {
    size_t chunk;
    size_t burst;
    uint32_t pause_ms;
};

struct side {
    struct bulk *b;
    const char *name;
    struct veil_hbone_h2s *h2s;
    struct veil_l4_end *end;
    struct reader rd;
    uint64_t tx_total, tx, rx_total, rx;
    uint64_t tx_seed, rx_seed;
    uint64_t rng;
    size_t burst_left;
    struct veil_timer pause;
    bool paused, hold; /* hold: the test keeps the reader stopped */
    bool keep_open;    /* once everything moved, stay open and idle (no EOF) */
    bool shut, eof, done, failed;
    char why[96];
};

struct stream {
    struct side cli, srv;
};

struct bulk {
    char dir[64];
    struct veil_ca *ca;
    char *srv_key, *srv_cert, *cli_key, *cli_cert;
    struct veil_tls_ctx *srv_tls, *cli_tls;
    struct veil_loop *loop;
    struct veil_hbone_server *srv;
    struct veil_hbone_pool *pool;
    struct veil_hbone_limits limits;
    int lfd;
    struct veil_io lio;
    struct sockaddr_in addr;
    bool tiny_sockbufs;
    struct stream st[MAX_STREAMS];
    int nstreams;
    int sides_done;
    struct veil_timer poll;
    uint64_t last_progress, last_progress_ms, started_ms;
    bool stalled, timed_out;
    /* called when a side finishes (may release held readers) */
    void (*on_side_done)(struct bulk *b);
};

static uint64_t rnd(struct side *s)
{
    s->rng = mix(s->rng);
    return s->rng;
}

static void side_finish(struct side *s, bool failed, const char *why)
{
    if (s->done)
        return;
    s->done = true;
    s->failed = failed;
    if (why != NULL)
        snprintf(s->why, sizeof(s->why), "%s", why);
    veil_timer_stop(&s->pause);
    if (s->end != NULL)
        s->end->ops->close(s->end, failed);
    s->end = NULL;
    s->b->sides_done++;
    if (s->b->on_side_done != NULL)
        s->b->on_side_done(s->b);
    if (s->b->sides_done == 2 * s->b->nstreams)
        veil_loop_stop(s->b->loop);
}

/* Everything moved: an idle side stays open (and ignores notifications). */
static void side_idle(struct side *s)
{
    s->done = true;
    s->end->ops->set_interest(s->end, 0);
    s->b->sides_done++;
    if (s->b->sides_done == 2 * s->b->nstreams)
        veil_loop_stop(s->b->loop);
}

static bool side_write(struct side *s)
{
    uint8_t buf[32768];
    while (s->tx < s->tx_total) {
        size_t n = 1 + rnd(s) % sizeof(buf);
        if (n > s->tx_total - s->tx)
            n = s->tx_total - s->tx;
        gen(s->tx_seed, s->tx, buf, n);
        ssize_t w = s->end->ops->write(s->end, buf, n);
        if (w == -EAGAIN)
            break;
        if (w <= 0) {
            side_finish(s, true, "write failed");
            return false;
        }
        s->tx += (uint64_t)w;
    }
    if (s->tx == s->tx_total && !s->shut && !s->keep_open) {
        if (s->end->ops->shutdown_write(s->end) != 0) {
            side_finish(s, true, "shutdown_write failed");
            return false;
        }
        s->shut = true;
    }
    return true;
}

static void pause_done(struct veil_timer *t);

static bool side_read(struct side *s)
{
    uint8_t buf[65536], want[65536];
    while (!s->eof && !s->paused && !s->hold) {
        size_t n = s->rd.chunk > sizeof(buf) ? sizeof(buf) : s->rd.chunk;
        n = 1 + rnd(s) % n;
        ssize_t r = s->end->ops->read(s->end, buf, n);
        if (r == -EAGAIN)
            break;
        if (r < 0) {
            side_finish(s, true, "read failed");
            return false;
        }
        if (r == 0) {
            s->eof = true;
            if (s->rx != s->rx_total) {
                side_finish(s, true, "early EOF");
                return false;
            }
            break;
        }
        if (s->rx + (uint64_t)r > s->rx_total) {
            side_finish(s, true, "too many bytes");
            return false;
        }
        gen(s->rx_seed, s->rx, want, (size_t)r);
        if (memcmp(buf, want, (size_t)r) != 0) {
            side_finish(s, true, "corrupt bytes");
            return false;
        }
        s->rx += (uint64_t)r;
        if (s->rd.burst > 0) {
            s->burst_left = (size_t)r >= s->burst_left ? 0 : s->burst_left - (size_t)r;
            if (s->burst_left == 0) {
                s->burst_left = s->rd.burst / 2 + rnd(s) % s->rd.burst;
                s->paused = true;
                uint32_t ms = s->rd.pause_ms > 0 ? (uint32_t)(rnd(s) % (s->rd.pause_ms + 1)) : 0;
                assert_int_equal(veil_timer_start(s->b->loop, &s->pause, ms, 0, pause_done), 0);
            }
        }
    }
    return true;
}

/* Moves what it can both ways, then says what it waits for. */
static void side_drive(struct side *s)
{
    if (s->done || s->end == NULL)
        return;
    if (!side_write(s) || !side_read(s))
        return;
    if (s->eof && s->shut) {
        side_finish(s, false, NULL);
        return;
    }
    if (s->keep_open && s->tx == s->tx_total && s->rx == s->rx_total) {
        side_idle(s);
        return;
    }
    uint32_t want = (!s->eof && !s->paused && !s->hold ? VEIL_L4_READ : 0) |
                    (s->tx < s->tx_total ? VEIL_L4_WRITE : 0);
    s->end->ops->set_interest(s->end, want);
}

static void pause_done(struct veil_timer *t)
{
    struct side *s = VEIL_CONTAINER_OF(t, struct side, pause);
    s->paused = false;
    side_drive(s); /* reading again on our own initiative: no notification is owed */
}

static void side_notify(struct veil_l4_end *e, uint32_t events, void *arg)
{
    (void)e;
    (void)events;
    side_drive(arg);
}

static void side_open(struct side *s, struct veil_hbone_h2s *h2s)
{
    s->h2s = h2s;
    s->end = veil_hbone_h2s_end(h2s);
    s->burst_left = s->rd.burst;
    veil_l4_end_bind(s->end, side_notify, s);
    side_drive(s);
}

/* ---- server and client ---- */

static void on_connect(struct veil_hbone_h2s *h2s, const struct veil_hbone_connect_info *info,
                       void *arg)
{
    struct bulk *b = arg;
    int i = ntohs(((const struct sockaddr_in *)info->dst)->sin_port) - PORT_BASE;
    assert_true(i >= 0 && i < b->nstreams);
    assert_null(b->st[i].srv.end);
    assert_int_equal(veil_hbone_h2s_respond(h2s, 200), 0);
    side_open(&b->st[i].srv, h2s);
}

static void on_tunnel(struct veil_hbone_h2s *h2s, int status, const char *err, void *arg)
{
    struct side *s = arg;
    if (h2s == NULL) {
        fprintf(stderr, "%s: connect failed: %d %s\n", s->name, status, err);
        side_finish(s, true, "connect failed");
        return;
    }
    side_open(s, h2s);
}

static void set_tiny_bufs(int fd)
{
    int n = TINY_SOCKBUF;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &n, sizeof(n));
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &n, sizeof(n));
}

static int make_socket(int family, void *arg)
{
    struct bulk *b = arg;
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (b->tiny_sockbufs)
        set_tiny_bufs(fd);
    return fd;
}

static void on_accept(struct veil_io *io, uint32_t events)
{
    (void)events;
    struct bulk *b = VEIL_CONTAINER_OF(io, struct bulk, lio);
    int fd;
    while ((fd = accept4(b->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        if (b->tiny_sockbufs)
            set_tiny_bufs(fd);
        assert_int_equal(veil_hbone_server_accept(b->srv, fd), 0);
    }
}

/* ---- set up, run, check ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static struct veil_tls_ctx *tls_ctx(enum veil_tls_role role, const char *cert, const char *key,
                                    const char *bundle)
{
    char err[256];
    struct veil_tls_ctx_opts o = {
        .role = role,
        .cert_pem = cert,
        .key_pem = key,
        .trust_bundle_pem = bundle,
        .require_client_cert = role == VEIL_TLS_SERVER,
    };
    struct veil_tls_ctx *c = veil_tls_ctx_new(&o, err, sizeof(err));
    if (c == NULL)
        fail_msg("tls ctx: %s", err);
    return c;
}

static int setup(void **state)
{
    struct bulk *b = calloc(1, sizeof(*b));
    assert_non_null(b);
    strcpy(b->dir, "/tmp/veil-hbone-bulk-XXXXXX");
    assert_non_null(mkdtemp(b->dir));
    char err[256];
    struct veil_ca_opts co = {.state_dir = b->dir};
    assert_int_equal(veil_ca_open(&b->ca, &co, err, sizeof(err)), 0);
    assert_int_equal(
        veil_ca_issue(b->ca, SERVER_ID, 0, &b->srv_key, &b->srv_cert, err, sizeof(err)), 0);
    assert_int_equal(
        veil_ca_issue(b->ca, CLIENT_ID, 0, &b->cli_key, &b->cli_cert, err, sizeof(err)), 0);
    const char *bundle = veil_ca_bundle_pem(b->ca);
    b->srv_tls = tls_ctx(VEIL_TLS_SERVER, b->srv_cert, b->srv_key, bundle);
    b->cli_tls = tls_ctx(VEIL_TLS_CLIENT, b->cli_cert, b->cli_key, bundle);
    b->loop = veil_loop_new("hbone-bulk");
    assert_non_null(b->loop);
    *state = b;
    return 0;
}

static int teardown(void **state)
{
    struct bulk *b = *state;
    for (int i = 0; i < b->nstreams; i++) {
        struct side *sides[2] = {&b->st[i].cli, &b->st[i].srv};
        for (int k = 0; k < 2; k++) {
            veil_timer_stop(&sides[k]->pause);
            if (sides[k]->end != NULL) /* a connect still pending goes with the pool */
                sides[k]->end->ops->close(sides[k]->end, true);
            sides[k]->end = NULL;
        }
    }
    veil_timer_stop(&b->poll);
    veil_hbone_pool_free(b->pool);
    veil_hbone_server_free(b->srv);
    if (b->lfd > 0) {
        veil_io_stop(&b->lio);
        close(b->lfd);
    }
    veil_loop_free(b->loop);
    veil_tls_ctx_free(b->srv_tls);
    veil_tls_ctx_free(b->cli_tls);
    veil_free(b->srv_key);
    veil_free(b->srv_cert);
    veil_free(b->cli_key);
    veil_free(b->cli_cert);
    veil_ca_free(b->ca);
    nftw(b->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(b);
    return 0;
}

static void listen_on(struct bulk *b)
{
    b->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(b->lfd >= 0);
    if (b->tiny_sockbufs)
        set_tiny_bufs(b->lfd); /* accepted sockets inherit it (and a small window) */
    b->addr =
        (struct sockaddr_in){.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(b->addr);
    assert_int_equal(bind(b->lfd, (struct sockaddr *)&b->addr, sizeof(b->addr)), 0);
    assert_int_equal(listen(b->lfd, 128), 0);
    assert_int_equal(getsockname(b->lfd, (struct sockaddr *)&b->addr, &len), 0);
    assert_int_equal(veil_io_start(b->loop, &b->lio, b->lfd, VEIL_IO_READ, on_accept), 0);
}

static uint64_t progress(const struct bulk *b)
{
    uint64_t n = 0;
    for (int i = 0; i < b->nstreams; i++)
        n += b->st[i].cli.tx + b->st[i].cli.rx + b->st[i].srv.tx + b->st[i].srv.rx;
    return n;
}

static void on_poll(struct veil_timer *t)
{
    struct bulk *b = VEIL_CONTAINER_OF(t, struct bulk, poll);
    uint64_t now = veil_now_ms(), p = progress(b);
    if (p != b->last_progress) {
        b->last_progress = p;
        b->last_progress_ms = now;
    }
    if (now - b->last_progress_ms >= STALL_MS)
        b->stalled = true;
    if (now - b->started_ms >= DEADLINE_MS)
        b->timed_out = true;
    if (b->stalled || b->timed_out)
        veil_loop_stop(b->loop);
}

static void dump_side(const struct side *s)
{
    fprintf(stderr, "  %s: tx %llu/%llu%s rx %llu/%llu%s%s%s%s %s", s->name,
            (unsigned long long)s->tx, (unsigned long long)s->tx_total, s->shut ? " (shut)" : "",
            (unsigned long long)s->rx, (unsigned long long)s->rx_total, s->eof ? " (eof)" : "",
            s->paused ? " paused" : "", s->hold ? " held" : "", s->done ? " done" : "", s->why);
    const struct veil_hbone_h2s *h = s->h2s;
    if (h != NULL && s->end != NULL) {
        fprintf(stderr, "| h2s id %d in %zu out %zu%s%s%s", (int)h->id, veil_buf_len(&h->in),
                veil_buf_len(&h->out), h->attached ? "" : " detached",
                h->write_blocked ? " write_blocked" : "", h->data_item ? " data_item" : "");
        if (h->attached) {
            nghttp2_session *ng = h->h2c->ng;
            fprintf(stderr,
                    " | ng: stream send window %d recv window %d; conn send %d recv %d;"
                    " want_write %d; tls out %zu",
                    nghttp2_session_get_stream_remote_window_size(ng, h->id),
                    nghttp2_session_get_stream_effective_recv_data_length(ng, h->id),
                    nghttp2_session_get_remote_window_size(ng),
                    nghttp2_session_get_effective_recv_data_length(ng),
                    nghttp2_session_want_write(ng), veil_tls_out_len(&h->h2c->tls));
        }
    }
    fprintf(stderr, "\n");
}

static void start(struct bulk *b)
{
    struct veil_hbone_server_opts so = {
        .tls = b->srv_tls, .cbs.on_connect = on_connect, .arg = b, .limits = b->limits};
    b->srv = veil_hbone_server_new(b->loop, &so);
    assert_non_null(b->srv);
    struct veil_hbone_pool_opts po = {.limits = b->limits};
    b->pool = veil_hbone_pool_new(b->loop, &po);
    assert_non_null(b->pool);
    listen_on(b);
}

/* Opens streams first.. (set with stream_set()) and runs until every side
 * is done or the transfer stalls; fails on a stall, a timeout or a bad
 * side. */
static void run_from(struct bulk *b, int first)
{
    if (b->srv == NULL)
        start(b);
    for (int i = first; i < b->nstreams; i++) {
        char auth[32];
        snprintf(auth, sizeof(auth), "127.0.0.1:%d", PORT_BASE + i);
        struct veil_hbone_dial d = {
            .key = "bulk",
            .tls = b->cli_tls,
            .dst = (const struct sockaddr *)&b->addr,
            .dst_len = sizeof(b->addr),
            .authority = auth,
            .server_id = SERVER_ID,
            .make_socket = make_socket,
            .make_socket_arg = b,
        };
        struct side *c = &b->st[i].cli;
        assert_non_null(veil_hbone_pool_connect(b->pool, &d, on_tunnel, c));
    }
    b->started_ms = b->last_progress_ms = veil_now_ms();
    assert_int_equal(veil_timer_start(b->loop, &b->poll, 100, 100, on_poll), 0);
    assert_int_equal(veil_loop_run(b->loop), 0);
    veil_timer_stop(&b->poll);
    bool bad = b->stalled || b->timed_out;
    for (int i = 0; i < b->nstreams; i++)
        bad |= b->st[i].cli.failed || b->st[i].srv.failed;
    if (bad) {
        fprintf(stderr, "%s after %llu ms:\n",
                b->stalled     ? "STALL"
                : b->timed_out ? "TIMEOUT"
                               : "FAILED",
                (unsigned long long)(veil_now_ms() - b->started_ms));
        for (int i = 0; i < b->nstreams; i++) {
            dump_side(&b->st[i].cli);
            dump_side(&b->st[i].srv);
        }
    }
    assert_false(b->stalled);
    assert_false(b->timed_out);
    for (int i = 0; i < b->nstreams; i++) {
        const struct stream *st = &b->st[i];
        assert_true(st->cli.done && !st->cli.failed);
        assert_true(st->srv.done && !st->srv.failed);
        assert_true(st->cli.rx == st->cli.rx_total && st->srv.rx == st->srv.rx_total);
        assert_true(st->cli.tx == st->cli.tx_total && st->srv.tx == st->srv.tx_total);
    }
    struct veil_hbone_stats ps;
    veil_hbone_pool_stats(b->pool, &ps);
    assert_int_equal(ps.connections_total, 1); /* all streams on one h2c */
    assert_int_equal(ps.streams_ok, (uint64_t)b->nstreams);
}

static void run(struct bulk *b)
{
    run_from(b, 0);
}

/* Stream i: `up` bytes client -> server, `down` bytes server -> client. */
static void stream_set(struct bulk *b, int i, uint64_t up, uint64_t down, struct reader cli_rd,
                       struct reader srv_rd)
{
    assert_true(i < MAX_STREAMS);
    struct stream *st = &b->st[i];
    uint64_t k = (uint64_t)i * 4 + 1;
    st->cli = (struct side){.b = b,
                            .name = "client",
                            .rd = cli_rd,
                            .tx_total = up,
                            .rx_total = down,
                            .tx_seed = k,
                            .rx_seed = k + 1,
                            .rng = k * 77};
    st->srv = (struct side){.b = b,
                            .name = "server",
                            .rd = srv_rd,
                            .tx_total = down,
                            .rx_total = up,
                            .tx_seed = k + 1,
                            .rx_seed = k,
                            .rng = k * 91};
    if (i >= b->nstreams)
        b->nstreams = i + 1;
}

static const struct reader FAST = {.chunk = 65536};
static const struct reader SLOW = {.chunk = 4096, .burst = 64 * 1024, .pause_ms = 2};
static const struct reader SLOWER = {.chunk = 1500, .burst = 16 * 1024, .pause_ms = 3};

/* ---- tests ---- */

/* One stream, client to server, the server a slow reader. */
static void bulk_upload_slow_reader(void **state)
{
    struct bulk *b = *state;
    stream_set(b, 0, 48 * MIB + 7, 0, FAST, SLOW);
    run(b);
}

/* One stream, server to client, the client a slow reader; tiny socket
 * buffers. */
static void bulk_download_slow_reader_tiny_sockbufs(void **state)
{
    struct bulk *b = *state;
    b->tiny_sockbufs = true;
    stream_set(b, 0, 0, 48 * MIB + 11, SLOW, FAST);
    run(b);
}

/* One stream, both ends writing 32 MiB at once, both reading slowly. */
static void bulk_both_ways_at_once(void **state)
{
    struct bulk *b = *state;
    stream_set(b, 0, 32 * MIB, 32 * MIB + 5, SLOW, SLOW);
    run(b);
}

static void bulk_both_ways_at_once_tiny_sockbufs(void **state)
{
    struct bulk *b = *state;
    b->tiny_sockbufs = true;
    stream_set(b, 0, 32 * MIB + 3, 32 * MIB, SLOWER, SLOW);
    run(b);
}

/* Eight streams on one h2c at the same time, both ways, readers of every
 * speed. */
static void bulk_many_streams(void **state)
{
    struct bulk *b = *state;
    b->tiny_sockbufs = true;
    const struct reader rds[] = {FAST, SLOW, SLOWER};
    for (int i = 0; i < 8; i++)
        stream_set(b, i, 6 * MIB + (uint64_t)i, 5 * MIB + (uint64_t)i * 13, rds[i % 3],
                   rds[(i + 1) % 3]);
    run(b);
}

static void release_held(struct bulk *b)
{
    for (int i = 1; i < b->nstreams; i++)
        if (!b->st[i].cli.done || !b->st[i].srv.done)
            return;
    struct side *s = &b->st[0].srv;
    if (s->hold) {
        s->hold = false;
        side_drive(s);
    }
}

/* A stream whose reader stops reading (its buffer and window full) must not
 * hold up the other streams of its h2c, even with a connection window no
 * larger than one stream's. */
static void bulk_stuck_reader_does_not_block_others(void **state)
{
    struct bulk *b = *state;
    b->limits.stream_window = 256 * 1024;
    b->limits.conn_window = 256 * 1024;
    for (int i = 0; i < 4; i++)
        stream_set(b, i, 4 * MIB, 4 * MIB, SLOW, i == 0 ? FAST : SLOW);
    b->st[0].srv.hold = true; /* reads nothing until the others are done */
    b->on_side_done = release_held;
    run(b);
}

static void on_settle(struct veil_timer *t)
{
    veil_loop_stop(veil_timer_loop(t));
}

/* Runs the loop a little: deferred frees, frames still queued, drained
 * buffers freed (HBONE_TRIM_MS). */
static void settle(struct bulk *b)
{
    struct veil_timer t = {0};
    assert_int_equal(veil_timer_start(b->loop, &t, HBONE_TRIM_MS + 100, 0, on_settle), 0);
    assert_int_equal(veil_loop_run(b->loop), 0);
}

static size_t heap_used(void)
{
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
}

/* Opens streams first..last that move some bytes both ways (enough for
 * the buffers to grow) and then stay open, idle. */
static void open_idle(struct bulk *b, int first, int last)
{
    for (int i = first; i <= last; i++) {
        stream_set(b, i, 100 * 1024 + (uint64_t)i, 70 * 1024, SLOW, FAST);
        b->st[i].cli.keep_open = b->st[i].srv.keep_open = true;
    }
    run_from(b, first);
    settle(b);
}

/*
 * What an open stream that moved bytes and went idle costs, both sides
 * together: the HBONE stream state and nghttp2's stream; its buffers hold
 * nothing. The heap is measured between 100 and 300 idle streams: the h2c,
 * TLS and HPACK tables (full by then) are the same at both points.
 */
static void idle_stream_memory(void **state)
{
    struct bulk *b = *state;
    b->limits.max_streams = 400;
    stream_set(b, 0, 100000, 100000, FAST, FAST);
    run(b);
    open_idle(b, 1, 100);
    size_t before = heap_used();
    open_idle(b, 101, 300);
    size_t after = heap_used();
    for (int i = 1; i <= 300; i++) {
        const struct side *sides[2] = {&b->st[i].cli, &b->st[i].srv};
        for (int k = 0; k < 2; k++) {
            assert_true(sides[k]->h2s->attached);
            assert_null(veil_buf_data(&sides[k]->h2s->in));
            assert_null(veil_buf_data(&sides[k]->h2s->out));
        }
    }
    long per = ((long)after - (long)before) / 200;
    fprintf(stderr,
            "  idle stream: %ld bytes of heap for both sides; sizeof(struct veil_hbone_h2s) %zu\n",
            per, sizeof(struct veil_hbone_h2s));
#ifndef __SANITIZE_ADDRESS__ /* ASan's allocator is not glibc's: mallinfo2 sees nothing */
    assert_true(per < IDLE_STREAM_MAX);
#endif
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    veil_log_set_level(VEIL_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(bulk_upload_slow_reader, setup, teardown),
        cmocka_unit_test_setup_teardown(bulk_download_slow_reader_tiny_sockbufs, setup, teardown),
        cmocka_unit_test_setup_teardown(bulk_both_ways_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(bulk_both_ways_at_once_tiny_sockbufs, setup, teardown),
        cmocka_unit_test_setup_teardown(bulk_many_streams, setup, teardown),
        cmocka_unit_test_setup_teardown(bulk_stuck_reader_does_not_block_others, setup, teardown),
        cmocka_unit_test_setup_teardown(idle_stream_memory, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
