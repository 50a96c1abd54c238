/* The L4 byte pump; see pump.h. */
#include "l4/pump.h"

#include "core/alloc.h"
#include "core/buf.h"
#include "core/container.h"
#include "core/loop.h"

#include <errno.h>

/* One direction: bytes read from `from` wait in `buf` until `to` takes them.
 * `buf` holds memory only while bytes wait: pump_run() frees it when a turn
 * leaves it empty (once per turn, not per read), so an idle connection costs
 * no buffer. */
struct pump_dir {
    struct veil_l4_end *from, *to;
    struct veil_buf buf;
    uint64_t bytes; /* accepted by `to` */
    bool eof;       /* `from` reported end of stream */
    bool done;      /* eof passed on as shutdown_write */
};

struct veil_l4_pump {
    struct veil_loop *loop;
    struct pump_dir dir[2]; /* [0] a -> b, [1] b -> a */
    veil_l4_pump_done_cb done_cb;
    void *arg;
    struct veil_defer defer_d; /* pump_deferred(): start from the loop, or free once done */
    struct veil_timer again_t; /* continue after a full turn, next iteration */
    const char *err;
    int error;
    char failed_side;
    bool in_done; /* done_cb running or ran */
    bool running; /* inside pump_run: do not recurse */
};

static char side_of(const struct veil_l4_pump *p, const struct veil_l4_end *e)
{
    return e == p->dir[0].from ? 'a' : 'b';
}

static void pump_run(struct veil_l4_pump *p);

static void pump_free(struct veil_l4_pump *p)
{
    veil_buf_free(&p->dir[0].buf);
    veil_buf_free(&p->dir[1].buf);
    veil_free(p);
}

/* One deferred function for both uses: a pump finished while its start (or
 * a continuation) was still queued frees itself when that runs. */
static void pump_deferred(struct veil_defer *d)
{
    struct veil_l4_pump *p = VEIL_CONTAINER_OF(d, struct veil_l4_pump, defer_d);
    if (p->in_done)
        pump_free(p);
    else
        pump_run(p);
}

static void pump_finish(struct veil_l4_pump *p, const char *err)
{
    if (p->in_done)
        return;
    p->in_done = true;
    p->err = err;
    veil_timer_stop(&p->again_t);
    struct veil_l4_pump_stats st;
    veil_l4_pump_stats(p, &st);
    struct veil_l4_end *a = p->dir[0].from, *b = p->dir[1].from;
    veil_l4_end_bind(a, NULL, NULL);
    veil_l4_end_bind(b, NULL, NULL);
    p->done_cb(p, err, &st, p->arg);
    a->ops->close(a, err != NULL);
    b->ops->close(b, err != NULL);
    veil_loop_defer(p->loop, &p->defer_d, pump_deferred);
}

static void pump_fail(struct veil_l4_pump *p, const struct veil_l4_end *e, long rc,
                      const char *what)
{
    p->error = (int)rc;
    p->failed_side = side_of(p, e);
    pump_finish(p, what);
}

/* Moves what it can in one direction, at most `budget` bytes. Returns the
 * bytes moved (or 1 for a state change), -1 once the pump is finished. */
static long dir_step(struct veil_l4_pump *p, struct pump_dir *d, size_t budget)
{
    long progress = 0;
    if (d->done)
        return 0;
    while (!d->eof && veil_buf_space(&d->buf) > 0 && (size_t)progress < budget) {
        char *ptr;
        size_t avail, min = 1;
        /* An empty buffer starts with a chunk, not with doublings from the
         * smallest allocation (it was freed at the end of the last turn). */
        if (veil_buf_is_empty(&d->buf))
            min = veil_buf_space(&d->buf) < VEIL_L4_PUMP_CHUNK ? veil_buf_space(&d->buf)
                                                               : VEIL_L4_PUMP_CHUNK;
        int rc = veil_buf_reserve(&d->buf, min, &ptr, &avail);
        if (rc != 0) {
            pump_fail(p, d->from, rc, "out of memory");
            return -1;
        }
        ssize_t n = d->from->ops->read(d->from, ptr, avail);
        if (n == -EAGAIN)
            break;
        if (n < 0) {
            pump_fail(p, d->from, n, n == -ECONNRESET ? "connection reset" : "read failed");
            return -1;
        }
        if (n == 0) {
            d->eof = true;
            progress++;
            break;
        }
        veil_buf_commit(&d->buf, (size_t)n);
        progress += n;
        if ((size_t)n < avail)
            break; /* drained for now: write before the next read */
    }
    while (!veil_buf_is_empty(&d->buf)) {
        ssize_t n = d->to->ops->write(d->to, veil_buf_data(&d->buf), veil_buf_len(&d->buf));
        if (n == -EAGAIN)
            break;
        if (n <= 0) {
            pump_fail(p, d->to, n < 0 ? n : -EIO,
                      n == -ECONNRESET || n == -EPIPE ? "connection reset" : "write failed");
            return -1;
        }
        veil_buf_consume(&d->buf, (size_t)n);
        d->bytes += (uint64_t)n;
        progress += n;
    }
    if (d->eof && veil_buf_is_empty(&d->buf)) {
        int rc = d->to->ops->shutdown_write(d->to);
        if (rc != 0) {
            pump_fail(p, d->to, rc, "shutdown failed");
            return -1;
        }
        d->done = true;
        veil_buf_free(&d->buf);
        progress++;
    }
    return progress;
}

static void set_interests(struct veil_l4_pump *p)
{
    for (int i = 0; i < 2; i++) {
        struct pump_dir *rd = &p->dir[i], *wr = &p->dir[1 - i];
        uint32_t want = 0;
        if (!rd->done && !rd->eof && veil_buf_space(&rd->buf) > 0)
            want |= VEIL_L4_READ;
        if (!wr->done && !veil_buf_is_empty(&wr->buf))
            want |= VEIL_L4_WRITE;
        rd->from->ops->set_interest(rd->from, want);
    }
}

static void pump_again_timer(struct veil_timer *t);

static void pump_run(struct veil_l4_pump *p)
{
    if (p->in_done || p->running)
        return;
    p->running = true;
    size_t moved[2] = {0, 0};
    bool progress;
    do {
        progress = false;
        for (int i = 0; i < 2; i++) {
            if (moved[i] >= VEIL_L4_PUMP_TURN)
                continue;
            long n = dir_step(p, &p->dir[i], VEIL_L4_PUMP_TURN - moved[i]);
            if (n < 0)
                return; /* finished: p is going away */
            moved[i] += (size_t)n;
            progress |= n > 0;
        }
    } while (progress && (moved[0] < VEIL_L4_PUMP_TURN || moved[1] < VEIL_L4_PUMP_TURN));
    p->running = false;
    if (p->dir[0].done && p->dir[1].done) {
        pump_finish(p, NULL);
        return;
    }
    veil_buf_trim(&p->dir[0].buf);
    veil_buf_trim(&p->dir[1].buf);
    set_interests(p);
    /* A full turn: let the other connections of the loop run, and go on in
     * the next iteration (or at the end of this one, without memory). */
    if ((moved[0] >= VEIL_L4_PUMP_TURN || moved[1] >= VEIL_L4_PUMP_TURN) &&
        veil_timer_start(p->loop, &p->again_t, 0, 0, pump_again_timer) != 0)
        veil_loop_defer(p->loop, &p->defer_d, pump_deferred);
}

static void pump_again_timer(struct veil_timer *t)
{
    pump_run(VEIL_CONTAINER_OF(t, struct veil_l4_pump, again_t));
}

static void pump_notify(struct veil_l4_end *e, uint32_t events, void *arg)
{
    (void)e;
    (void)events;
    pump_run(arg);
}

struct veil_l4_pump *veil_l4_pump_start(struct veil_loop *loop, struct veil_l4_end *a,
                                        struct veil_l4_end *b, veil_l4_pump_done_cb done_cb,
                                        void *arg)
{
    struct veil_l4_pump *p = veil_calloc(1, sizeof(*p));
    if (p == NULL) {
        a->ops->close(a, true);
        b->ops->close(b, true);
        errno = ENOMEM;
        return NULL;
    }
    p->loop = loop;
    p->done_cb = done_cb;
    p->arg = arg;
    p->dir[0] = (struct pump_dir){.from = a, .to = b};
    p->dir[1] = (struct pump_dir){.from = b, .to = a};
    veil_buf_init(&p->dir[0].buf, VEIL_L4_PUMP_BUF);
    veil_buf_init(&p->dir[1].buf, VEIL_L4_PUMP_BUF);
    veil_l4_end_bind(a, pump_notify, p);
    veil_l4_end_bind(b, pump_notify, p);
    /* Start from the loop, so that done_cb never runs inside this call. */
    veil_loop_defer(loop, &p->defer_d, pump_deferred);
    return p;
}

void veil_l4_pump_abort(struct veil_l4_pump *p, const char *reason)
{
    if (p->in_done)
        return;
    p->error = -ECONNABORTED;
    pump_finish(p, reason != NULL ? reason : "aborted");
}

void veil_l4_pump_stats(const struct veil_l4_pump *p, struct veil_l4_pump_stats *out)
{
    *out = (struct veil_l4_pump_stats){
        .a_to_b = p->dir[0].bytes,
        .b_to_a = p->dir[1].bytes,
        .buffered_a_to_b = veil_buf_len(&p->dir[0].buf),
        .buffered_b_to_a = veil_buf_len(&p->dir[1].buf),
        .buffer_memory = veil_buf_alloc_size(&p->dir[0].buf) + veil_buf_alloc_size(&p->dir[1].buf),
        .error = p->error,
        .failed_side = p->failed_side,
    };
}
