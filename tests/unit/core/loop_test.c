#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"
#include "core/loop.h"

#define container_of(p, type, member) ((type *)(void *)((char *)(p)-offsetof(type, member)))

/* Stops a test's loop if what it waits for never comes. */
#define GUARD_MS 10000

struct guard {
    struct veil_timer timer;
    int fired;
};

static void on_guard(struct veil_timer *t)
{
    struct guard *g = container_of(t, struct guard, timer);
    g->fired = 1;
    veil_loop_stop(veil_timer_loop(t));
}

static void guard_start(struct veil_loop *loop, struct guard *g)
{
    *g = (struct guard){0};
    assert_int_equal(veil_timer_start(loop, &g->timer, GUARD_MS, 0, on_guard), 0);
}

static void run_guarded(struct veil_loop *loop)
{
    struct guard g;
    guard_start(loop, &g);
    assert_int_equal(veil_loop_run(loop), 0);
    assert_int_equal(g.fired, 0);
    veil_timer_stop(&g.timer);
}

static void make_pipe(int fds[2])
{
    assert_int_equal(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
}

static void sleep_ms(unsigned ms)
{
    usleep(ms * 1000);
}

/* ---- log capture ---- */

static int log_fds[2] = {-1, -1};
static char log_text[8192];

static void log_capture_start(void)
{
    make_pipe(log_fds);
    veil_log_set_level(VEIL_LOG_INFO);
    veil_log_set_fd(log_fds[1]);
}

static const char *log_capture_end(void)
{
    veil_log_set_fd(STDERR_FILENO);
    ssize_t n = read(log_fds[0], log_text, sizeof(log_text) - 1);
    log_text[n > 0 ? n : 0] = '\0';
    close(log_fds[0]);
    close(log_fds[1]);
    return log_text;
}

static int count_lines_with(const char *text, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(text, needle); p != NULL; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* ---- io ---- */

struct reader {
    struct veil_io io;
    int calls;
    uint32_t events;
    char got[16];
    size_t len;
};

static void on_read(struct veil_io *io, uint32_t events)
{
    struct reader *r = container_of(io, struct reader, io);
    r->calls++;
    r->events |= events;
    ssize_t n = read(veil_io_fd(io), r->got + r->len, sizeof(r->got) - 1 - r->len);
    if (n > 0)
        r->len += (size_t)n;
    if (r->len >= 5) {
        veil_io_stop(io);
        veil_loop_stop(veil_io_loop(io));
    }
}

static void test_io_read_pipe(void **state)
{
    (void)state;
    int fds[2];
    struct reader r = {0};
    struct veil_loop *loop = veil_loop_new("io");
    assert_non_null(loop);
    make_pipe(fds);
    assert_int_equal(veil_io_start(loop, &r.io, fds[0], VEIL_IO_READ, on_read), 0);
    assert_true(veil_io_is_active(&r.io));
    assert_int_equal(veil_io_start(loop, &r.io, fds[0], VEIL_IO_READ, on_read), -EBUSY);
    assert_int_equal(write(fds[1], "hello", 5), 5);

    run_guarded(loop);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.events, VEIL_IO_READ);
    assert_memory_equal(r.got, "hello", 5);
    assert_false(veil_io_is_active(&r.io));
    assert_int_equal(veil_io_modify(&r.io, VEIL_IO_WRITE), -EINVAL);
    veil_io_stop(&r.io); /* again: no-op */

    close(fds[0]);
    close(fds[1]);
    veil_loop_free(loop);
}

static void test_io_start_errors(void **state)
{
    (void)state;
    struct veil_io io = {0};
    struct veil_loop *loop = veil_loop_new("err");
    char path[] = "/tmp/veil-loop-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(veil_io_start(loop, &io, fd, VEIL_IO_READ, on_read), -EPERM);
    assert_int_equal(veil_io_start(loop, &io, -1, VEIL_IO_READ, on_read), -EBADF);
    assert_false(veil_io_is_active(&io));
    close(fd);
    veil_loop_free(loop);
}

/* One end writes when writable, then reads; the peer answers and closes. */
struct chat {
    struct veil_io a, b;
    int sp[2];
    char trace[64];
};

static void trace(struct chat *c, const char *step)
{
    strncat(c->trace, step, sizeof(c->trace) - strlen(c->trace) - 1);
}

static void on_a(struct veil_io *io, uint32_t events)
{
    struct chat *c = container_of(io, struct chat, a);
    char buf[16];
    if (events & VEIL_IO_WRITE) {
        trace(c, "W");
        assert_int_equal(write(c->sp[0], "ping", 4), 4);
        assert_int_equal(veil_io_modify(io, VEIL_IO_READ | VEIL_IO_ERROR), 0);
        return;
    }
    ssize_t n = read(c->sp[0], buf, sizeof(buf));
    if (n > 0) {
        trace(c, "R");
        assert_memory_equal(buf, "pong", 4);
    }
    if (n == 0 && (events & VEIL_IO_ERROR)) {
        trace(c, "E");
        veil_io_stop(io);
        veil_loop_stop(veil_io_loop(io));
    }
}

static void on_b(struct veil_io *io, uint32_t events)
{
    struct chat *c = container_of(io, struct chat, b);
    char buf[16];
    assert_true(events & VEIL_IO_READ);
    assert_int_equal(read(c->sp[1], buf, sizeof(buf)), 4);
    assert_memory_equal(buf, "ping", 4);
    trace(c, "b");
    assert_int_equal(write(c->sp[1], "pong", 4), 4);
    veil_io_stop(io);
    close(c->sp[1]);
}

static void test_io_socketpair(void **state)
{
    (void)state;
    struct chat c = {0};
    struct veil_loop *loop = veil_loop_new("chat");
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, c.sp), 0);
    assert_int_equal(veil_io_start(loop, &c.a, c.sp[0], VEIL_IO_WRITE, on_a), 0);
    assert_int_equal(veil_io_start(loop, &c.b, c.sp[1], VEIL_IO_READ, on_b), 0);
    run_guarded(loop);
    assert_string_equal(c.trace, "WbRE");
    close(c.sp[0]);
    veil_loop_free(loop);
}

/* A callback stops (and frees at once) another io whose event is already
 * in the same epoll_wait batch: that io's callback must not run. */
struct twin {
    struct veil_io io;
    int fds[2];
    struct twin *peer;
};

static int twin_calls;

static void twin_close(struct twin *t)
{
    veil_io_stop(&t->io);
    close(t->fds[0]);
    close(t->fds[1]);
    veil_free(t);
}

static void on_twin(struct veil_io *io, uint32_t events)
{
    struct twin *t = container_of(io, struct twin, io);
    (void)events;
    twin_calls++;
    if (t->peer != NULL) {
        twin_close(t->peer);
        t->peer = NULL;
    }
    veil_loop_stop(veil_io_loop(io));
}

static void test_stop_other_io_with_pending_event(void **state)
{
    (void)state;
    struct veil_loop *loop = veil_loop_new("twins");
    struct twin *t[2];
    for (int i = 0; i < 2; i++) {
        t[i] = veil_calloc(1, sizeof(*t[i]));
        assert_non_null(t[i]);
        make_pipe(t[i]->fds);
        assert_int_equal(veil_io_start(loop, &t[i]->io, t[i]->fds[0], VEIL_IO_READ, on_twin), 0);
        assert_int_equal(write(t[i]->fds[1], "x", 1), 1);
    }
    t[0]->peer = t[1];
    t[1]->peer = t[0];
    twin_calls = 0;

    run_guarded(loop);
    assert_int_equal(twin_calls, 1);
    assert_int_equal(veil_loop_iterations(loop), 1);
    twin_close(t[0]->peer == NULL ? t[0] : t[1]);
    veil_loop_free(loop);
}

/* A callback removes WRITE from another io whose event (READ|WRITE) is
 * already in the batch: that io then sees only READ. */
struct duo {
    struct veil_io io;
    int sp[2];
    struct duo *peer;
};

static int duo_calls;
static uint32_t duo_events[2];

static void on_duo(struct veil_io *io, uint32_t events)
{
    struct duo *d = container_of(io, struct duo, io);
    duo_events[duo_calls++] = events;
    if (duo_calls == 1)
        assert_int_equal(veil_io_modify(&d->peer->io, VEIL_IO_READ), 0);
    else
        veil_loop_stop(veil_io_loop(io));
}

static void test_modify_masks_pending_event(void **state)
{
    (void)state;
    struct veil_loop *loop = veil_loop_new("duo");
    struct duo d[2] = {0};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, d[i].sp), 0);
        assert_int_equal(write(d[i].sp[1], "x", 1), 1);
        d[i].peer = &d[1 - i];
        assert_int_equal(
            veil_io_start(loop, &d[i].io, d[i].sp[0], VEIL_IO_READ | VEIL_IO_WRITE, on_duo), 0);
    }
    duo_calls = 0;
    run_guarded(loop);
    assert_int_equal(duo_calls, 2);
    assert_int_equal(veil_loop_iterations(loop), 1);
    assert_int_equal(duo_events[0], VEIL_IO_READ | VEIL_IO_WRITE);
    assert_int_equal(duo_events[1], VEIL_IO_READ);
    for (int i = 0; i < 2; i++) {
        veil_io_stop(&d[i].io);
        close(d[i].sp[0]);
        close(d[i].sp[1]);
    }
    veil_loop_free(loop);
}

/* ---- timers ---- */

struct tick {
    struct veil_timer timer;
    int id;
};

static struct {
    int ids[512];
    uint64_t iters[512];
    int n;
} rec;

static void on_tick(struct veil_timer *t)
{
    struct tick *k = container_of(t, struct tick, timer);
    assert_true(rec.n < 512);
    rec.ids[rec.n] = k->id;
    rec.iters[rec.n] = veil_loop_iterations(veil_timer_loop(t));
    rec.n++;
}

static void on_stop_loop(struct veil_timer *t)
{
    veil_loop_stop(veil_timer_loop(t));
}

static void tick_start(struct veil_loop *loop, struct tick *k, int id, uint64_t ms)
{
    k->id = id;
    assert_int_equal(veil_timer_start(loop, &k->timer, ms, 0, on_tick), 0);
}

/* Runs `kick` from a timer so that everything it starts shares one
 * veil_loop_now(). */
static void run_kicked(struct veil_loop *loop, veil_timer_cb kick)
{
    struct veil_timer t = {0};
    memset(&rec, 0, sizeof(rec));
    assert_int_equal(veil_timer_start(loop, &t, 0, 0, kick), 0);
    run_guarded(loop);
}

static struct tick order_ticks[7];
static struct veil_timer order_end;
static uint64_t kick_iter;

static void kick_order(struct veil_timer *t)
{
    struct veil_loop *loop = veil_timer_loop(t);
    kick_iter = veil_loop_iterations(loop);
    tick_start(loop, &order_ticks[0], 30, 30);
    tick_start(loop, &order_ticks[1], 10, 10);
    tick_start(loop, &order_ticks[2], 20, 20);
    tick_start(loop, &order_ticks[3], 0, 0);
    tick_start(loop, &order_ticks[4], 150, 15);
    tick_start(loop, &order_ticks[5], 151, 15);
    assert_int_equal(veil_timer_start(loop, &order_end, 40, 0, on_stop_loop), 0);
}

static void test_timers_fire_in_order(void **state)
{
    (void)state;
    static const int want[] = {0, 10, 150, 151, 20, 30};
    struct veil_loop *loop = veil_loop_new("order");
    run_kicked(loop, kick_order);
    assert_int_equal(rec.n, 6);
    assert_memory_equal(rec.ids, want, sizeof(want));
    /* started from a callback with timeout 0: runs in the next iteration */
    assert_true(rec.iters[0] > kick_iter);
    for (int i = 0; i < 6; i++)
        assert_false(veil_timer_is_active(&order_ticks[i].timer));
    veil_loop_free(loop);
}

static int repeat_count, oneshot_active;

static void on_repeat(struct veil_timer *t)
{
    assert_true(veil_timer_is_active(t));
    if (++repeat_count == 3)
        veil_timer_stop(t);
}

static void on_oneshot(struct veil_timer *t)
{
    oneshot_active = veil_timer_is_active(t);
}

static void test_timer_repeat(void **state)
{
    (void)state;
    struct veil_timer rep = {0}, one = {0}, end = {0};
    struct veil_loop *loop = veil_loop_new("repeat");
    repeat_count = 0;
    oneshot_active = -1;
    assert_int_equal(veil_timer_start(loop, &rep, 5, 5, on_repeat), 0);
    assert_int_equal(veil_timer_start(loop, &one, 1, 0, on_oneshot), 0);
    assert_int_equal(veil_timer_start(loop, &end, 100, 0, on_stop_loop), 0);
    run_guarded(loop);
    assert_int_equal(repeat_count, 3);
    assert_false(veil_timer_is_active(&rep));
    assert_int_equal(oneshot_active, 0);
    assert_true(veil_loop_iterations(loop) >= 4);
    veil_loop_free(loop);
}

static struct tick sr_a, sr_b, sr_c, sr_d;
static struct veil_timer sr_end;

static void on_sr_a(struct veil_timer *t)
{
    on_tick(t);
    veil_timer_stop(&sr_b.timer);
    if (rec.n == 1)
        assert_int_equal(veil_timer_start(veil_timer_loop(t), t, 0, 0, on_sr_a), 0);
}

static void kick_stop_restart(struct veil_timer *t)
{
    struct veil_loop *loop = veil_timer_loop(t);
    sr_a.id = 1;
    assert_int_equal(veil_timer_start(loop, &sr_a.timer, 5, 0, on_sr_a), 0);
    tick_start(loop, &sr_b, 2, 5);
    tick_start(loop, &sr_d, 4, 5);
    tick_start(loop, &sr_d, 4, 20); /* restart while active: moves it */
    assert_int_equal(veil_timer_start(loop, &sr_end, 40, 0, on_stop_loop), 0);
}

static void test_timer_stop_and_restart(void **state)
{
    (void)state;
    static const int want[] = {1, 1, 4};
    struct veil_loop *loop = veil_loop_new("stop");
    tick_start(loop, &sr_c, 3, 10);
    veil_timer_stop(&sr_c.timer);
    assert_false(veil_timer_is_active(&sr_c.timer));
    veil_timer_stop(&sr_c.timer);
    run_kicked(loop, kick_stop_restart);
    assert_int_equal(rec.n, 3);
    assert_memory_equal(rec.ids, want, sizeof(want));
    assert_true(rec.iters[1] > rec.iters[0]);
    veil_loop_free(loop);
}

#define MANY 300

static struct tick many[MANY];
static int many_timeout[MANY], many_order[MANY], many_live[MANY];
static struct veil_timer many_end;

static void kick_many(struct veil_timer *t)
{
    struct veil_loop *loop = veil_timer_loop(t);
    int order = 0;
    for (int i = 0; i < MANY; i++) {
        many_timeout[i] = (i * 37) % 50;
        many_order[i] = order++;
        many_live[i] = 1;
        tick_start(loop, &many[i], i, (uint64_t)many_timeout[i]);
    }
    for (int i = 0; i < MANY; i += 3) {
        veil_timer_stop(&many[i].timer);
        many_live[i] = 0;
    }
    for (int i = 0; i < MANY; i += 5) {
        if (!many_live[i])
            continue;
        many_timeout[i] = (i * 13) % 50;
        many_order[i] = order++;
        tick_start(loop, &many[i], i, (uint64_t)many_timeout[i]);
    }
    assert_int_equal(veil_timer_start(loop, &many_end, 200, 0, on_stop_loop), 0);
}

static int many_cmp(const void *pa, const void *pb)
{
    int a = *(const int *)pa, b = *(const int *)pb;
    if (many_timeout[a] != many_timeout[b])
        return many_timeout[a] - many_timeout[b];
    return many_order[a] - many_order[b];
}

static void test_timer_heap_many(void **state)
{
    (void)state;
    int want[MANY] = {0}, n = 0;
    struct veil_loop *loop = veil_loop_new("many");
    run_kicked(loop, kick_many);
    for (int i = 0; i < MANY; i++)
        if (many_live[i])
            want[n++] = i;
    qsort(want, (size_t)n, sizeof(want[0]), many_cmp);
    assert_int_equal(rec.n, n);
    assert_memory_equal(rec.ids, want, (size_t)n * sizeof(want[0]));
    veil_loop_free(loop);
}

/* ---- deferred close ---- */

struct conn {
    struct veil_io io;
    struct veil_defer defer;
    int fds[2];
    int alive;
};

static int conn_freed;
static char steps[16];

static void conn_free(struct veil_defer *d)
{
    struct conn *c = container_of(d, struct conn, defer);
    assert_int_equal(c->alive, 1);
    strcat(steps, "D");
    conn_freed++;
    veil_free(c);
}

static void conn_close(struct veil_loop *loop, struct conn *c)
{
    veil_io_stop(&c->io);
    close(c->fds[0]);
    close(c->fds[1]);
    veil_loop_defer(loop, &c->defer, conn_free);
    veil_loop_defer(loop, &c->defer, conn_free); /* again: no-op */
}

static void on_conn(struct veil_io *io, uint32_t events)
{
    struct conn *c = container_of(io, struct conn, io);
    (void)events;
    strcat(steps, "I");
    conn_close(veil_io_loop(io), c);
    assert_int_equal(conn_freed, 0);
    assert_true(veil_defer_is_queued(&c->defer));
    c->alive = 1; /* still ours: ASan would catch a use after free */
    veil_loop_stop(veil_io_loop(io));
}

static void on_conn_timer(struct veil_timer *t)
{
    (void)t;
    strcat(steps, "T");
    assert_int_equal(conn_freed, 0);
}

static void test_deferred_close(void **state)
{
    (void)state;
    struct veil_timer t = {0};
    struct veil_loop *loop = veil_loop_new("defer");
    struct conn *c = veil_calloc(1, sizeof(*c));
    assert_non_null(c);
    make_pipe(c->fds);
    assert_int_equal(veil_io_start(loop, &c->io, c->fds[0], VEIL_IO_READ, on_conn), 0);
    assert_int_equal(write(c->fds[1], "x", 1), 1);
    assert_int_equal(veil_timer_start(loop, &t, 0, 0, on_conn_timer), 0);
    conn_freed = 0;
    steps[0] = '\0';

    run_guarded(loop);
    assert_int_equal(conn_freed, 1);
    assert_string_equal(steps, "ITD"); /* io, then timers, then defers */
    assert_int_equal(veil_loop_iterations(loop), 1);
    veil_loop_free(loop);
}

struct chained {
    struct veil_defer first, second;
    struct veil_loop *loop;
    int *ran;
};

static void chained_second(struct veil_defer *d)
{
    struct chained *c = container_of(d, struct chained, second);
    *c->ran += 10;
    veil_free(c);
}

static void chained_first(struct veil_defer *d)
{
    struct chained *c = container_of(d, struct chained, first);
    *c->ran += 1;
    veil_loop_defer(c->loop, &c->second, chained_second);
}

/* veil_loop_free() runs what is deferred, and what that defers. */
static void test_defer_pending_at_free(void **state)
{
    (void)state;
    int ran = 0;
    struct veil_loop *loop = veil_loop_new("defer-free");
    struct chained *c = veil_calloc(1, sizeof(*c));
    assert_non_null(c);
    c->loop = loop;
    c->ran = &ran;
    veil_loop_defer(loop, &c->first, chained_first);
    assert_int_equal(ran, 0);
    veil_loop_free(loop);
    assert_int_equal(ran, 11);
}

/* ---- posts and stop across threads ---- */

#define POSTERS 2
#define POSTS   1000

struct post_ctx {
    struct veil_loop *loop;
    pthread_t loop_thread;
    int count, last[POSTERS], wrong_thread, wrong_order;
    int post_errors[POSTERS];
};

struct post_item {
    struct post_ctx *ctx;
    int poster, seq;
};

struct poster {
    struct post_ctx *ctx;
    int id;
};

static void on_post(void *arg)
{
    struct post_item *item = arg;
    struct post_ctx *ctx = item->ctx;
    if (!pthread_equal(pthread_self(), ctx->loop_thread))
        ctx->wrong_thread++;
    if (item->seq != ctx->last[item->poster] + 1)
        ctx->wrong_order++;
    ctx->last[item->poster] = item->seq;
    if (++ctx->count == POSTERS * POSTS)
        veil_loop_stop(ctx->loop);
    free(item);
}

static void *poster_main(void *arg)
{
    struct poster *p = arg;
    for (int seq = 1; seq <= POSTS; seq++) {
        struct post_item *item = malloc(sizeof(*item));
        *item = (struct post_item){.ctx = p->ctx, .poster = p->id, .seq = seq};
        if (veil_loop_post(p->ctx->loop, on_post, item) != 0) {
            p->ctx->post_errors[p->id]++;
            free(item);
        }
        if (seq % 100 == 0)
            sleep_ms(1);
    }
    return NULL;
}

static void test_post_from_threads(void **state)
{
    (void)state;
    struct post_ctx ctx = {.loop = veil_loop_new("post"), .loop_thread = pthread_self()};
    struct poster posters[POSTERS];
    pthread_t th[POSTERS];
    for (int i = 0; i < POSTERS; i++) {
        posters[i] = (struct poster){.ctx = &ctx, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, poster_main, &posters[i]), 0);
    }
    run_guarded(ctx.loop);
    for (int i = 0; i < POSTERS; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(ctx.post_errors[i], 0);
        assert_int_equal(ctx.last[i], POSTS);
    }
    assert_int_equal(ctx.count, POSTERS * POSTS);
    assert_int_equal(ctx.wrong_thread, 0);
    assert_int_equal(ctx.wrong_order, 0);
    veil_loop_free(ctx.loop);
}

struct owned {
    int *ran;
    char *memory;
};

static void on_owned(void *arg)
{
    struct owned *o = arg;
    *o->ran = 1;
    veil_free(o->memory);
    veil_free(o);
}

/* Posts still queued at free are run (ASan would report the leak). */
static void test_post_pending_at_free(void **state)
{
    (void)state;
    int ran = 0;
    struct veil_loop *loop = veil_loop_new("post-free");
    struct owned *o = veil_malloc(sizeof(*o));
    assert_non_null(o);
    *o = (struct owned){.ran = &ran, .memory = veil_malloc(100)};
    assert_int_equal(veil_loop_post(loop, on_owned, o), 0);
    veil_loop_free(loop);
    assert_int_equal(ran, 1);
}

static void *stopper_main(void *arg)
{
    sleep_ms(30);
    veil_loop_stop(arg);
    return NULL;
}

static void test_stop_from_thread(void **state)
{
    (void)state;
    pthread_t th;
    struct veil_loop *loop = veil_loop_new("stop");

    veil_loop_stop(loop); /* before run: the run returns at once */
    assert_int_equal(veil_loop_run(loop), 0);
    assert_int_equal(veil_loop_iterations(loop), 0);

    assert_int_equal(pthread_create(&th, NULL, stopper_main, loop), 0);
    run_guarded(loop); /* nothing but the guard: only the stop can end it */
    pthread_join(th, NULL);
    assert_true(veil_loop_iterations(loop) >= 1);
    veil_loop_free(loop);
}

/* ---- stalls and the watchdog ---- */

static void on_sleep_120(struct veil_timer *t)
{
    sleep_ms(120);
    veil_loop_stop(veil_timer_loop(t));
}

static void test_slow_iteration_logged_after(void **state)
{
    (void)state;
    struct veil_timer t = {0};
    struct veil_loop *loop = veil_loop_new("slow");
    veil_loop_set_watchdog_ms(loop, 50);
    assert_int_equal(veil_timer_start(loop, &t, 0, 0, on_sleep_120), 0);
    log_capture_start();
    run_guarded(loop);
    const char *log = log_capture_end();
    assert_int_equal(veil_loop_stalls(loop), 1);
    assert_non_null(strstr(log, "WARN  loop: loop slow: one iteration took "));
    assert_null(strstr(log, "stuck"));
    veil_loop_free(loop);
}

static uint64_t stuck_seen, stuck_waited;

/* Stays stuck until the watchdog reports it (or 5 s), then a while longer. */
static void on_stuck(struct veil_timer *t)
{
    struct veil_loop *loop = veil_timer_loop(t);
    uint64_t start = veil_now_ms();
    while (veil_loop_stalls(loop) == 0 && veil_now_ms() - start < 5000)
        sleep_ms(2);
    stuck_waited = veil_now_ms() - start;
    stuck_seen = veil_loop_stalls(loop);
    sleep_ms(100); /* several more watchdog rounds: still one report */
    veil_loop_stop(loop);
}

static void test_watchdog_reports_stuck_loop(void **state)
{
    (void)state;
    struct veil_timer t = {0};
    struct veil_watchdog *wd = veil_watchdog_new();
    struct veil_watchdog *wd2 = veil_watchdog_new();
    struct veil_loop *loop = veil_loop_new("stuck");
    assert_non_null(wd);
    veil_loop_set_watchdog_ms(loop, 50);
    assert_int_equal(veil_watchdog_add(wd, loop), 0);
    assert_int_equal(veil_watchdog_add(wd, loop), -EBUSY);
    assert_int_equal(veil_watchdog_add(wd2, loop), -EBUSY);
    assert_int_equal(veil_timer_start(loop, &t, 0, 0, on_stuck), 0);
    log_capture_start();
    run_guarded(loop);
    const char *log = log_capture_end();

    assert_int_equal(stuck_seen, 1); /* reported while still stuck */
    assert_true(stuck_waited >= 50); /* not before the threshold */
    assert_true(stuck_waited < 5000);
    assert_int_equal(veil_loop_stalls(loop), 1); /* counted once */
    assert_int_equal(count_lines_with(log, "loop stuck: stuck in one iteration for "), 1);
    assert_int_equal(count_lines_with(log, "loop stuck: one iteration took "), 1);
    veil_loop_free(loop); /* leaves the watchdog */
    veil_watchdog_free(wd);
    veil_watchdog_free(wd2);
}

static int fast_count;

static void on_fast(struct veil_timer *t)
{
    if (++fast_count == 20)
        veil_loop_stop(veil_timer_loop(t));
}

static void on_idle_done(struct veil_timer *t)
{
    assert_int_equal(veil_timer_start(veil_timer_loop(t), t, 2, 2, on_fast), 0);
}

/* Waiting in epoll_wait is not a stall, nor are quick iterations. */
static void test_no_report_for_idle_or_fast(void **state)
{
    (void)state;
    struct veil_timer t = {0};
    struct veil_watchdog *wd = veil_watchdog_new();
    struct veil_loop *loop = veil_loop_new("calm");
    veil_loop_set_watchdog_ms(loop, 200);
    assert_int_equal(veil_watchdog_add(wd, loop), 0);
    assert_int_equal(veil_timer_start(loop, &t, 600, 0, on_idle_done), 0);
    fast_count = 0;
    log_capture_start();
    run_guarded(loop);
    const char *log = log_capture_end();
    assert_int_equal(fast_count, 20);
    assert_int_equal(veil_loop_stalls(loop), 0);
    assert_null(strstr(log, "loop calm"));
    veil_watchdog_free(wd); /* before the loop: removes it */
    veil_loop_free(loop);
}

/* ---- allocation failures ---- */

static void on_nothing(void *arg)
{
    (void)arg;
}

static void test_alloc_failures(void **state)
{
    (void)state;
    struct veil_loop *loop = NULL;
    long n;
    for (n = 0; loop == NULL; n++) {
        assert_true(n < 20);
        veil_alloc_fail_after(n);
        errno = 0;
        loop = veil_loop_new("oom");
        veil_alloc_fail_reset();
        if (loop == NULL)
            assert_int_equal(errno, ENOMEM);
    }
    assert_true(n > 1);

    struct veil_timer t = {0};
    veil_alloc_fail_after(0);
    assert_int_equal(veil_timer_start(loop, &t, 10, 0, on_stop_loop), -ENOMEM);
    assert_false(veil_timer_is_active(&t));
    assert_int_equal(veil_loop_post(loop, on_nothing, NULL), -ENOMEM);
    veil_alloc_fail_reset();
    assert_int_equal(veil_timer_start(loop, &t, 10, 0, on_stop_loop), 0);
    run_guarded(loop);

    veil_alloc_fail_after(0);
    struct veil_watchdog *wd = veil_watchdog_new();
    veil_alloc_fail_reset();
    assert_null(wd);
    veil_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_io_read_pipe),
        cmocka_unit_test(test_io_start_errors),
        cmocka_unit_test(test_io_socketpair),
        cmocka_unit_test(test_stop_other_io_with_pending_event),
        cmocka_unit_test(test_modify_masks_pending_event),
        cmocka_unit_test(test_timers_fire_in_order),
        cmocka_unit_test(test_timer_repeat),
        cmocka_unit_test(test_timer_stop_and_restart),
        cmocka_unit_test(test_timer_heap_many),
        cmocka_unit_test(test_deferred_close),
        cmocka_unit_test(test_defer_pending_at_free),
        cmocka_unit_test(test_post_from_threads),
        cmocka_unit_test(test_post_pending_at_free),
        cmocka_unit_test(test_stop_from_thread),
        cmocka_unit_test(test_slow_iteration_logged_after),
        cmocka_unit_test(test_watchdog_reports_stuck_loop),
        cmocka_unit_test(test_no_report_for_idle_or_fast),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
