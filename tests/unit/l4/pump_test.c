/* Tests of src/l4/pump.c and src/l4/tcp.c: two TCP peers on loopback talk
 * through a pump between two TCP ends. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/container.h"
#include "core/log.h"
#include "core/loop.h"
#include "l4/pump.h"

#define GUARD_MS 20000

/* ---- loopback TCP pairs ---- */

/* Two connected non-blocking TCP sockets on 127.0.0.1. */
static void tcp_pair(int fds[2])
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(l >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(l, 1), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &len), 0);
    fds[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fds[0] >= 0);
    assert_int_equal(connect(fds[0], (struct sockaddr *)&a, sizeof(a)), 0);
    fds[1] = accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    assert_true(fds[1] >= 0);
    close(l);
    assert_int_equal(fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK), 0);
}

/* The end that owned the other side of fd is closed: EOF or reset. */
static bool peer_closed(int fd)
{
    char c;
    ssize_t r = recv(fd, &c, 1, 0);
    return r == 0 || (r < 0 && errno != EAGAIN);
}

/* ---- a test peer: sends a pattern, checks what it receives ---- */

struct peer {
    struct veil_io io;
    int fd;
    uint8_t seed_out, seed_in;
    size_t to_send, sent;
    size_t received;
    bool shut_after_send; /* shutdown(SHUT_WR) once everything is sent */
    bool send_after_eof;  /* start sending only after the peer's EOF */
    bool paused;          /* do not read */
    bool eof, shut, reset, bad;
    bool blocked; /* a send returned EAGAIN */
    struct test *t;
};

struct test {
    struct veil_loop *loop;
    struct peer p[2];
    struct veil_l4_pump *pump;
    bool done;
    const char *err;
    struct veil_l4_pump_stats st;
    size_t max_buffered;
    struct veil_timer guard, resume;
    bool guard_fired;
};

static uint8_t pat(uint8_t seed, size_t i)
{
    return (uint8_t)(i % 251 + seed);
}

static void maybe_stop(struct test *t)
{
    bool peers = true;
    for (int i = 0; i < 2; i++)
        peers &= (t->p[i].eof || t->p[i].reset) &&
                 (t->p[i].shut || !t->p[i].shut_after_send || t->p[i].reset);
    if (t->done && peers)
        veil_loop_stop(t->loop);
}

static void peer_update(struct peer *p)
{
    if (!veil_io_is_active(&p->io))
        return;
    uint32_t ev = p->paused || p->eof ? 0 : VEIL_IO_READ;
    bool may_send = !p->send_after_eof || p->eof;
    if (may_send && p->sent < p->to_send)
        ev |= VEIL_IO_WRITE;
    veil_io_modify(&p->io, ev);
}

static void peer_send(struct peer *p)
{
    uint8_t buf[16384];
    while (p->sent < p->to_send) {
        size_t n = p->to_send - p->sent;
        if (n > sizeof(buf))
            n = sizeof(buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = pat(p->seed_out, p->sent + i);
        ssize_t w = send(p->fd, buf, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN)
                p->blocked = true;
            else
                p->reset = true;
            return;
        }
        p->sent += (size_t)w;
    }
    if (p->shut_after_send && !p->shut) {
        shutdown(p->fd, SHUT_WR);
        p->shut = true;
    }
}

static void peer_recv(struct peer *p)
{
    uint8_t buf[16384];
    for (;;) {
        ssize_t r = recv(p->fd, buf, sizeof(buf), 0);
        if (r < 0) {
            if (errno != EAGAIN)
                p->reset = true;
            return;
        }
        if (r == 0) {
            p->eof = true;
            return;
        }
        for (ssize_t i = 0; i < r; i++)
            if (buf[i] != pat(p->seed_in, p->received + (size_t)i))
                p->bad = true;
        p->received += (size_t)r;
    }
}

static void peer_io(struct veil_io *io, uint32_t events)
{
    struct peer *p = VEIL_CONTAINER_OF(io, struct peer, io);
    if (events & (VEIL_IO_READ | VEIL_IO_ERROR))
        peer_recv(p);
    if (!p->send_after_eof || p->eof)
        peer_send(p);
    if (p->reset || (p->eof && p->sent == p->to_send && (p->shut || !p->shut_after_send))) {
        veil_io_stop(&p->io);
    } else {
        peer_update(p);
    }
    maybe_stop(p->t);
}

static void on_done(struct veil_l4_pump *pump, const char *err, const struct veil_l4_pump_stats *st,
                    void *arg)
{
    struct test *t = arg;
    assert_ptr_equal(pump, t->pump);
    assert_false(t->done);
    t->done = true;
    t->err = err;
    t->st = *st;
    t->pump = NULL;
    maybe_stop(t);
}

static void on_guard(struct veil_timer *tm)
{
    struct test *t = VEIL_CONTAINER_OF(tm, struct test, guard);
    t->guard_fired = true;
    veil_loop_stop(t->loop);
}

/* Sets up peer 0 <-> end a = pump = end b <-> peer 1. */
static void setup_test(struct test *t)
{
    memset(t, 0, sizeof(*t));
    t->loop = veil_loop_new("pump-test");
    assert_non_null(t->loop);
    int ab[2], cd[2];
    tcp_pair(ab);
    tcp_pair(cd);
    t->p[0] = (struct peer){.fd = ab[0], .seed_out = 1, .seed_in = 2, .t = t};
    t->p[1] = (struct peer){.fd = cd[1], .seed_out = 2, .seed_in = 1, .t = t};
    struct veil_l4_end *a = veil_l4_tcp_new(t->loop, ab[1]);
    struct veil_l4_end *b = veil_l4_tcp_new(t->loop, cd[0]);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(veil_l4_tcp_fd(a), ab[1]);
    t->pump = veil_l4_pump_start(t->loop, a, b, on_done, t);
    assert_non_null(t->pump);
}

static void start_peers(struct test *t)
{
    for (int i = 0; i < 2; i++) {
        assert_int_equal(veil_io_start(t->loop, &t->p[i].io, t->p[i].fd, 0, peer_io), 0);
        peer_update(&t->p[i]);
    }
}

static void run(struct test *t)
{
    assert_int_equal(veil_timer_start(t->loop, &t->guard, GUARD_MS, 0, on_guard), 0);
    assert_int_equal(veil_loop_run(t->loop), 0);
    assert_false(t->guard_fired);
    veil_timer_stop(&t->guard);
}

static void teardown_test(struct test *t)
{
    for (int i = 0; i < 2; i++) {
        veil_io_stop(&t->p[i].io);
        close(t->p[i].fd);
    }
    veil_loop_free(t->loop);
}

/* ---- tests ---- */

static void pump_both_ways_with_half_close(void **state)
{
    (void)state;
    struct test t;
    setup_test(&t);
    t.p[0].to_send = 3 * 1024 * 1024 + 17;
    t.p[1].to_send = 2 * 1024 * 1024 + 5;
    t.p[0].shut_after_send = t.p[1].shut_after_send = true;
    start_peers(&t);
    run(&t);
    assert_true(t.done);
    assert_null(t.err);
    assert_int_equal(t.st.a_to_b, t.p[0].to_send);
    assert_int_equal(t.st.b_to_a, t.p[1].to_send);
    assert_int_equal(t.st.error, 0);
    assert_int_equal(t.p[1].received, t.p[0].to_send);
    assert_int_equal(t.p[0].received, t.p[1].to_send);
    assert_false(t.p[0].bad || t.p[1].bad || t.p[0].reset || t.p[1].reset);
    teardown_test(&t);
}

/* Peer 1 answers only after it saw peer 0's EOF: the half-close went
 * through and the other direction stayed open. */
static void pump_reply_after_half_close(void **state)
{
    (void)state;
    struct test t;
    setup_test(&t);
    t.p[0].to_send = 1000;
    t.p[0].shut_after_send = true;
    t.p[1].to_send = 500000;
    t.p[1].send_after_eof = true;
    t.p[1].shut_after_send = true;
    start_peers(&t);
    run(&t);
    assert_true(t.done);
    assert_null(t.err);
    assert_int_equal(t.p[1].received, 1000);
    assert_int_equal(t.p[0].received, 500000);
    assert_int_equal(t.st.a_to_b, 1000);
    assert_int_equal(t.st.b_to_a, 500000);
    assert_false(t.p[0].bad || t.p[1].bad);
    teardown_test(&t);
}

/* A reader that does not read: the writer gets blocked and the pump holds at
 * most VEIL_L4_PUMP_BUF bytes; once reading resumes everything arrives. */
static void on_resume(struct veil_timer *tm)
{
    struct test *t = VEIL_CONTAINER_OF(tm, struct test, resume);
    struct veil_l4_pump_stats st;
    assert_non_null(t->pump);
    veil_l4_pump_stats(t->pump, &st);
    assert_true(st.buffered_a_to_b <= VEIL_L4_PUMP_BUF);
    /* at most the bound (how much is held at this moment depends on how
     * fast the sockets filled on a loaded machine) */
    assert_true(st.buffer_memory <= VEIL_L4_PUMP_BUF);
    /* Not everything got through: the sender is held back. */
    assert_true(st.a_to_b + st.buffered_a_to_b < t->p[0].to_send);
    assert_true(t->p[0].sent < t->p[0].to_send);
    assert_int_equal(t->p[1].received, 0);
    t->p[1].paused = false;
    peer_update(&t->p[1]);
}

static void check_blocked(struct veil_timer *tm)
{
    struct test *t = VEIL_CONTAINER_OF(tm, struct test, resume);
    if (t->p[0].blocked) {
        /* Give the pump time to fill its buffer, then check and resume. */
        veil_timer_start(t->loop, &t->resume, 50, 0, on_resume);
        return;
    }
    veil_timer_start(t->loop, &t->resume, 5, 0, check_blocked);
}

static void pump_backpressure(void **state)
{
    (void)state;
    struct test t;
    setup_test(&t);
    t.p[0].to_send = 32 * 1024 * 1024;
    t.p[0].shut_after_send = true;
    t.p[1].shut_after_send = true;
    t.p[1].paused = true;
    start_peers(&t);
    assert_int_equal(veil_timer_start(t.loop, &t.resume, 5, 0, check_blocked), 0);
    run(&t);
    veil_timer_stop(&t.resume);
    assert_true(t.done);
    assert_null(t.err);
    assert_int_equal(t.p[1].received, t.p[0].to_send);
    assert_int_equal(t.st.a_to_b, t.p[0].to_send);
    assert_false(t.p[1].bad);
    teardown_test(&t);
}

/* Once bursts larger than the bound went through both ways and the
 * connection is idle, the pump holds no buffer memory. */
static void check_idle(struct veil_timer *tm)
{
    struct test *t = VEIL_CONTAINER_OF(tm, struct test, resume);
    if (t->p[1].received < t->p[0].to_send || t->p[0].received < t->p[1].to_send) {
        veil_timer_start(t->loop, &t->resume, 5, 0, check_idle);
        return;
    }
    struct veil_l4_pump_stats st;
    veil_l4_pump_stats(t->pump, &st);
    assert_int_equal(st.buffered_a_to_b + st.buffered_b_to_a, 0);
    assert_int_equal(st.buffer_memory, 0);
    assert_int_equal(st.a_to_b, t->p[0].to_send);
    assert_int_equal(st.b_to_a, t->p[1].to_send);
    veil_l4_pump_abort(t->pump, "test over");
}

static void pump_idle_holds_no_buffer(void **state)
{
    (void)state;
    struct test t;
    setup_test(&t);
    t.p[0].to_send = 3 * VEIL_L4_PUMP_BUF + 1;
    t.p[1].to_send = 2 * VEIL_L4_PUMP_BUF + 7;
    start_peers(&t);
    assert_int_equal(veil_timer_start(t.loop, &t.resume, 5, 0, check_idle), 0);
    run(&t);
    assert_true(t.done);
    assert_string_equal(t.err, "test over");
    assert_false(t.p[0].bad || t.p[1].bad);
    teardown_test(&t);
}

/* Peer 1 resets its connection: the pump fails, naming side b, and resets
 * side a. */
static void pump_reset_propagates(void **state)
{
    (void)state;
    struct test t;
    setup_test(&t);
    t.p[0].to_send = 100;
    start_peers(&t);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    assert_int_equal(setsockopt(t.p[1].fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    veil_io_stop(&t.p[1].io);
    close(t.p[1].fd);
    t.p[1].fd = -1;
    t.p[1].reset = true;
    run(&t);
    assert_true(t.done);
    assert_non_null(t.err);
    assert_int_equal(t.st.failed_side, 'b');
    assert_true(t.st.error < 0);
    assert_true(t.p[0].reset || t.p[0].eof);
    teardown_test(&t);
}

static void pump_abort(void **state)
{
    (void)state;
    struct test t;
    setup_test(&t);
    start_peers(&t);
    veil_l4_pump_abort(t.pump, "policy revoked");
    assert_true(t.done);
    assert_string_equal(t.err, "policy revoked");
    assert_int_equal(t.st.error, -ECONNABORTED);
    run(&t);
    assert_true(t.p[0].reset || t.p[0].eof);
    assert_true(t.p[1].reset || t.p[1].eof);
    teardown_test(&t);
}

/* Every allocation of ends and pump may fail: nothing leaks, fds are closed. */
static void pump_alloc_failures(void **state)
{
    (void)state;
    bool ok = false;
    for (long n = 0; !ok && n < 20; n++) {
        struct veil_loop *loop = veil_loop_new("alloc");
        assert_non_null(loop);
        int ab[2], cd[2];
        tcp_pair(ab);
        tcp_pair(cd);
        veil_alloc_fail_after(n);
        struct veil_l4_end *a = veil_l4_tcp_new(loop, ab[1]);
        struct veil_l4_end *b = a != NULL ? veil_l4_tcp_new(loop, cd[0]) : NULL;
        struct test t = {.loop = loop};
        if (a == NULL) {
            close(cd[0]);
        } else if (b == NULL) {
            a->ops->close(a, true);
        } else {
            t.pump = veil_l4_pump_start(loop, a, b, on_done, &t);
            ok = t.pump != NULL;
        }
        veil_alloc_fail_reset();
        if (ok) {
            veil_l4_pump_abort(t.pump, "test over");
            assert_true(t.done);
        }
        /* The fds the ends owned are closed: the peers read EOF or reset. */
        assert_true(peer_closed(ab[0]));
        assert_true(peer_closed(cd[1]));
        close(ab[0]);
        close(cd[1]);
        veil_loop_free(loop);
    }
    assert_true(ok);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    veil_log_set_level(VEIL_LOG_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pump_both_ways_with_half_close),
        cmocka_unit_test(pump_reply_after_half_close),
        cmocka_unit_test(pump_backpressure),
        cmocka_unit_test(pump_idle_holds_no_buffer),
        cmocka_unit_test(pump_reset_propagates),
        cmocka_unit_test(pump_abort),
        cmocka_unit_test(pump_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
