#include "core/loop.h"

#include "core/alloc.h"
#include "core/bug.h"
#include "core/log.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#define LOOP_MAX_EVENTS     64
#define LOOP_HEAP_MIN       16
#define WATCHDOG_MIN_PERIOD 5
#define WATCHDOG_MAX_PERIOD 250

#include "core/container.h"

struct loop_post {
    struct loop_post *next;
    void (*fn)(void *arg);
    void *arg;
};

struct veil_loop {
    char *name;
    int epfd;
    int wakefd;
    struct veil_io wakeup;
    bool running;
    atomic_bool stop;
    uint64_t now;

    /* Timers: a binary min-heap on (_due, _seq). */
    struct veil_timer **heap;
    size_t nheap, heap_cap;
    uint64_t timer_seq;

    /* The epoll_wait() batch being dispatched; pos is the event whose
     * callback runs. nevents is 0 outside dispatch. */
    struct epoll_event events[LOOP_MAX_EVENTS];
    int nevents, pos;

    struct veil_defer *defer_head, **defer_tail;

    pthread_mutex_t post_lock;
    struct loop_post *post_head, **post_tail;

    /* Read by the watchdog thread. iter_start is 0 between iterations. */
    _Atomic uint64_t iter, iter_start, reported, stalls, watchdog_ms;
    _Atomic(struct veil_watchdog *) wd;
    struct veil_loop *wd_next, *wd_prev; /* under wd->lock */
};

struct veil_watchdog {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct veil_loop *loops;
    bool quit;
    pthread_t thread;
};

uint64_t veil_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t veil_loop_now(const struct veil_loop *loop)
{
    return loop->now;
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
    return b > UINT64_MAX - a ? UINT64_MAX : a + b;
}

/* ---- wakeup and posts ---- */

static void loop_wake(struct veil_loop *loop)
{
    uint64_t one = 1;
    ssize_t n;
    do
        n = write(loop->wakefd, &one, sizeof(one));
    while (n < 0 && errno == EINTR);
}

static bool loop_run_posts(struct veil_loop *loop)
{
    pthread_mutex_lock(&loop->post_lock);
    struct loop_post *p = loop->post_head;
    loop->post_head = NULL;
    loop->post_tail = &loop->post_head;
    pthread_mutex_unlock(&loop->post_lock);
    bool ran = p != NULL;
    while (p != NULL) {
        struct loop_post *next = p->next;
        p->fn(p->arg);
        veil_free(p);
        p = next;
    }
    return ran;
}

static void loop_on_wakeup(struct veil_io *io, uint32_t events)
{
    struct veil_loop *loop = VEIL_CONTAINER_OF(io, struct veil_loop, wakeup);
    uint64_t count;
    ssize_t n;
    (void)events;
    do
        n = read(loop->wakefd, &count, sizeof(count));
    while (n < 0 && errno == EINTR);
    loop_run_posts(loop);
}

int veil_loop_post(struct veil_loop *loop, void (*fn)(void *arg), void *arg)
{
    struct loop_post *p = veil_malloc(sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    *p = (struct loop_post){.fn = fn, .arg = arg};
    pthread_mutex_lock(&loop->post_lock);
    bool was_empty = loop->post_head == NULL;
    *loop->post_tail = p;
    loop->post_tail = &p->next;
    pthread_mutex_unlock(&loop->post_lock);
    /* An empty queue has been drained after its last wakeup was read. */
    if (was_empty)
        loop_wake(loop);
    return 0;
}

void veil_loop_stop(struct veil_loop *loop)
{
    atomic_store(&loop->stop, true);
    loop_wake(loop);
}

/* ---- defers ---- */

void veil_loop_defer(struct veil_loop *loop, struct veil_defer *d, veil_defer_fn fn)
{
    if (d->_queued)
        return;
    d->_queued = true;
    d->_fn = fn;
    d->_next = NULL;
    *loop->defer_tail = d;
    loop->defer_tail = &d->_next;
}

static bool loop_run_defers(struct veil_loop *loop)
{
    bool ran = loop->defer_head != NULL;
    while (loop->defer_head != NULL) {
        struct veil_defer *d = loop->defer_head;
        loop->defer_head = d->_next;
        if (loop->defer_head == NULL)
            loop->defer_tail = &loop->defer_head;
        d->_queued = false;
        d->_fn(d);
    }
    return ran;
}

/* ---- io ---- */

static uint32_t io_to_epoll(uint32_t events)
{
    uint32_t e = 0;
    if (events & VEIL_IO_READ)
        e |= EPOLLIN;
    if (events & VEIL_IO_WRITE)
        e |= EPOLLOUT;
    if (events & VEIL_IO_ERROR)
        e |= EPOLLRDHUP;
    return e;
}

static uint32_t io_from_epoll(uint32_t e)
{
    uint32_t events = 0;
    if (e & EPOLLIN)
        events |= VEIL_IO_READ;
    if (e & EPOLLOUT)
        events |= VEIL_IO_WRITE;
    if (e & (EPOLLERR | EPOLLHUP | EPOLLRDHUP))
        events |= VEIL_IO_ERROR;
    return events;
}

static int io_ctl(struct veil_loop *loop, int op, struct veil_io *io, int fd, uint32_t events)
{
    struct epoll_event ev = {.events = io_to_epoll(events), .data.ptr = io};
    return epoll_ctl(loop->epfd, op, fd, &ev) == 0 ? 0 : -errno;
}

int veil_io_start(struct veil_loop *loop, struct veil_io *io, int fd, uint32_t events,
                  veil_io_cb cb)
{
    if (io->_active)
        return -EBUSY;
    int err = io_ctl(loop, EPOLL_CTL_ADD, io, fd, events);
    if (err != 0)
        return err;
    *io = (struct veil_io){._loop = loop, ._cb = cb, ._fd = fd, ._events = events, ._active = true};
    return 0;
}

int veil_io_modify(struct veil_io *io, uint32_t events)
{
    if (!io->_active)
        return -EINVAL;
    if (events == io->_events)
        return 0;
    int err = io_ctl(io->_loop, EPOLL_CTL_MOD, io, io->_fd, events);
    if (err == 0)
        io->_events = events;
    return err;
}

/* Drops the event of `io` still waiting in the batch being dispatched. */
static void loop_forget_pending(struct veil_loop *loop, const struct veil_io *io)
{
    for (int i = loop->pos + 1; i < loop->nevents; i++) {
        if (loop->events[i].data.ptr == io) {
            loop->events[i].data.ptr = NULL;
            return;
        }
    }
}

void veil_io_stop(struct veil_io *io)
{
    if (!io->_active)
        return;
    struct veil_loop *loop = io->_loop;
    /* Fails only if the fd was closed already; the registration is gone then. */
    (void)epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->_fd, NULL);
    io->_active = false;
    loop_forget_pending(loop, io);
}

static void loop_dispatch(struct veil_loop *loop, int n)
{
    loop->nevents = n;
    for (loop->pos = 0; loop->pos < n; loop->pos++) {
        const struct epoll_event *ev = &loop->events[loop->pos];
        struct veil_io *io = ev->data.ptr;
        if (io == NULL)
            continue;
        uint32_t ready = io_from_epoll(ev->events) & (io->_events | VEIL_IO_ERROR);
        if (ready != 0)
            io->_cb(io, ready);
    }
    loop->nevents = 0;
    loop->pos = 0;
}

/* ---- timers ---- */

static bool timer_before(const struct veil_timer *a, const struct veil_timer *b)
{
    return a->_due != b->_due ? a->_due < b->_due : a->_seq < b->_seq;
}

static void heap_set(struct veil_loop *loop, size_t i, struct veil_timer *t)
{
    loop->heap[i] = t;
    t->_index = i + 1;
}

static void heap_up(struct veil_loop *loop, size_t i)
{
    struct veil_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(t, loop->heap[parent]))
            break;
        heap_set(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_set(loop, i, t);
}

static void heap_down(struct veil_loop *loop, size_t i)
{
    struct veil_timer *t = loop->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= loop->nheap)
            break;
        if (child + 1 < loop->nheap && timer_before(loop->heap[child + 1], loop->heap[child]))
            child++;
        if (!timer_before(loop->heap[child], t))
            break;
        heap_set(loop, i, loop->heap[child]);
        i = child;
    }
    heap_set(loop, i, t);
}

static int heap_push(struct veil_loop *loop, struct veil_timer *t)
{
    if (loop->nheap == loop->heap_cap) {
        size_t cap = loop->heap_cap != 0 ? loop->heap_cap * 2 : LOOP_HEAP_MIN;
        struct veil_timer **heap = veil_realloc(loop->heap, cap * sizeof(*heap));
        if (heap == NULL)
            return -ENOMEM;
        loop->heap = heap;
        loop->heap_cap = cap;
    }
    heap_set(loop, loop->nheap++, t);
    heap_up(loop, loop->nheap - 1);
    return 0;
}

static void heap_remove(struct veil_loop *loop, struct veil_timer *t)
{
    size_t i = t->_index - 1;
    struct veil_timer *last = loop->heap[--loop->nheap];
    t->_index = 0;
    if (i == loop->nheap)
        return;
    heap_set(loop, i, last);
    heap_up(loop, i);
    heap_down(loop, last->_index - 1);
}

int veil_timer_start(struct veil_loop *loop, struct veil_timer *t, uint64_t timeout_ms,
                     uint64_t repeat_ms, veil_timer_cb cb)
{
    VEIL_BUG_ON(t->_index != 0 && t->_loop != loop);
    if (t->_index != 0)
        heap_remove(t->_loop, t);
    if (!loop->running)
        loop->now = veil_now_ms();
    t->_loop = loop;
    t->_cb = cb;
    t->_repeat = repeat_ms;
    t->_due = add_sat(loop->now, timeout_ms);
    t->_seq = ++loop->timer_seq;
    return heap_push(loop, t);
}

void veil_timer_stop(struct veil_timer *t)
{
    if (t->_index != 0)
        heap_remove(t->_loop, t);
}

/* Runs the timers due at loop->now, but not those (re)started meanwhile:
 * those sort after every older due timer. */
static void loop_run_timers(struct veil_loop *loop)
{
    uint64_t last_seq = loop->timer_seq;
    while (loop->nheap > 0) {
        struct veil_timer *t = loop->heap[0];
        if (t->_due > loop->now || t->_seq > last_seq)
            break;
        if (t->_repeat != 0) {
            t->_due = add_sat(loop->now, t->_repeat);
            t->_seq = ++loop->timer_seq;
            heap_down(loop, 0);
        } else {
            heap_remove(loop, t);
        }
        t->_cb(t);
    }
}

static int loop_timeout(const struct veil_loop *loop)
{
    if (loop->nheap == 0)
        return -1;
    uint64_t due = loop->heap[0]->_due;
    if (due <= loop->now)
        return 0;
    return due - loop->now > INT_MAX ? INT_MAX : (int)(due - loop->now);
}

/* ---- iterations and stalls ---- */

static void loop_count_stall(struct veil_loop *loop, uint64_t iter)
{
    if (atomic_exchange(&loop->reported, iter) != iter)
        atomic_fetch_add(&loop->stalls, 1);
}

/* The watchdog reads iter_start after iter: storing them in this order (and
 * clearing iter_start first at the end) lets it check they match. */
static uint64_t iteration_begin(struct veil_loop *loop)
{
    uint64_t iter = atomic_fetch_add(&loop->iter, 1) + 1;
    atomic_store(&loop->iter_start, loop->now != 0 ? loop->now : 1);
    return iter;
}

static void iteration_end(struct veil_loop *loop, uint64_t iter)
{
    uint64_t took = veil_now_ms() - loop->now;
    uint64_t limit = atomic_load(&loop->watchdog_ms);
    atomic_store(&loop->iter_start, 0);
    if (limit == 0 || took <= limit)
        return;
    VEIL_WARN("loop", "loop %s: one iteration took %llu ms", loop->name, (unsigned long long)took);
    loop_count_stall(loop, iter);
}

static int loop_iterate(struct veil_loop *loop)
{
    loop->now = veil_now_ms();
    int n = epoll_wait(loop->epfd, loop->events, LOOP_MAX_EVENTS, loop_timeout(loop));
    if (n < 0 && errno != EINTR)
        return -errno;
    loop->now = veil_now_ms();
    uint64_t iter = iteration_begin(loop);
    loop_dispatch(loop, n > 0 ? n : 0);
    loop_run_timers(loop);
    loop_run_defers(loop);
    iteration_end(loop, iter);
    return 0;
}

int veil_loop_run(struct veil_loop *loop)
{
    int err = 0;
    VEIL_BUG_ON(loop->running);
    loop->running = true;
    while (err == 0 && !atomic_load(&loop->stop))
        err = loop_iterate(loop);
    atomic_store(&loop->stop, false);
    loop->running = false;
    return err;
}

uint64_t veil_loop_iterations(const struct veil_loop *loop)
{
    return atomic_load(&loop->iter);
}

uint64_t veil_loop_stalls(const struct veil_loop *loop)
{
    return atomic_load(&loop->stalls);
}

void veil_loop_set_watchdog_ms(struct veil_loop *loop, uint64_t ms)
{
    atomic_store(&loop->watchdog_ms, ms);
}

const char *veil_loop_name(const struct veil_loop *loop)
{
    return loop->name;
}

/* ---- create and free ---- */

static int loop_open(struct veil_loop *loop, const char *name)
{
    loop->name = veil_strdup(name != NULL ? name : "loop");
    if (loop->name == NULL)
        return -ENOMEM;
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0)
        return -errno;
    loop->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (loop->wakefd < 0)
        return -errno;
    return veil_io_start(loop, &loop->wakeup, loop->wakefd, VEIL_IO_READ, loop_on_wakeup);
}

static void loop_close(struct veil_loop *loop)
{
    for (size_t i = 0; i < loop->nheap; i++)
        loop->heap[i]->_index = 0;
    if (loop->wakefd >= 0)
        close(loop->wakefd);
    if (loop->epfd >= 0)
        close(loop->epfd);
    pthread_mutex_destroy(&loop->post_lock);
    veil_free(loop->heap);
    veil_free(loop->name);
    veil_free(loop);
}

struct veil_loop *veil_loop_new(const char *name)
{
    struct veil_loop *loop = veil_calloc(1, sizeof(*loop));
    if (loop == NULL)
        return NULL;
    loop->epfd = -1;
    loop->wakefd = -1;
    loop->defer_tail = &loop->defer_head;
    loop->post_tail = &loop->post_head;
    loop->now = veil_now_ms();
    atomic_init(&loop->watchdog_ms, VEIL_LOOP_WATCHDOG_MS);
    pthread_mutex_init(&loop->post_lock, NULL);
    int err = loop_open(loop, name);
    if (err != 0) {
        loop_close(loop);
        errno = -err;
        return NULL;
    }
    return loop;
}

void veil_loop_free(struct veil_loop *loop)
{
    if (loop == NULL)
        return;
    VEIL_BUG_ON(loop->running);
    struct veil_watchdog *wd = atomic_load(&loop->wd);
    if (wd != NULL)
        veil_watchdog_remove(wd, loop);
    bool ran;
    do {
        ran = loop_run_posts(loop);
        ran |= loop_run_defers(loop);
    } while (ran);
    loop_close(loop);
}

/* ---- watchdog ---- */

/* `now` was read before the loads: a matching (iter, iter_start) pair then
 * proves the iteration was still running at `now`. */
static void watchdog_check(struct veil_loop *loop, uint64_t now, uint64_t limit)
{
    uint64_t iter = atomic_load(&loop->iter);
    uint64_t start = atomic_load(&loop->iter_start);
    if (start == 0 || atomic_load(&loop->iter) != iter || now < start || now - start <= limit)
        return;
    if (atomic_exchange(&loop->reported, iter) == iter)
        return;
    atomic_fetch_add(&loop->stalls, 1);
    VEIL_WARN("loop", "loop %s: stuck in one iteration for %llu ms", loop->name,
              (unsigned long long)(now - start));
}

/* Checks every loop; returns how long to wait before the next round. */
static uint64_t watchdog_scan(struct veil_watchdog *wd)
{
    uint64_t now = veil_now_ms();
    uint64_t period = WATCHDOG_MAX_PERIOD;
    for (struct veil_loop *loop = wd->loops; loop != NULL; loop = loop->wd_next) {
        uint64_t limit = atomic_load(&loop->watchdog_ms);
        if (limit == 0)
            continue;
        if (limit / 4 < period)
            period = limit / 4;
        watchdog_check(loop, now, limit);
    }
    return period < WATCHDOG_MIN_PERIOD ? WATCHDOG_MIN_PERIOD : period;
}

static struct timespec deadline_after(uint64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    return ts;
}

static void *watchdog_main(void *arg)
{
    struct veil_watchdog *wd = arg;
    pthread_mutex_lock(&wd->lock);
    while (!wd->quit) {
        struct timespec until = deadline_after(watchdog_scan(wd));
        pthread_cond_clockwait(&wd->cond, &wd->lock, CLOCK_MONOTONIC, &until);
    }
    pthread_mutex_unlock(&wd->lock);
    return NULL;
}

struct veil_watchdog *veil_watchdog_new(void)
{
    struct veil_watchdog *wd = veil_calloc(1, sizeof(*wd));
    if (wd == NULL)
        return NULL;
    pthread_mutex_init(&wd->lock, NULL);
    pthread_cond_init(&wd->cond, NULL);
    int err = pthread_create(&wd->thread, NULL, watchdog_main, wd);
    if (err != 0) {
        pthread_cond_destroy(&wd->cond);
        pthread_mutex_destroy(&wd->lock);
        veil_free(wd);
        errno = err;
        return NULL;
    }
    return wd;
}

static void watchdog_unlink(struct veil_watchdog *wd, struct veil_loop *loop)
{
    if (loop->wd_prev != NULL)
        loop->wd_prev->wd_next = loop->wd_next;
    else
        wd->loops = loop->wd_next;
    if (loop->wd_next != NULL)
        loop->wd_next->wd_prev = loop->wd_prev;
    loop->wd_next = loop->wd_prev = NULL;
    atomic_store(&loop->wd, NULL);
}

void veil_watchdog_free(struct veil_watchdog *wd)
{
    if (wd == NULL)
        return;
    pthread_mutex_lock(&wd->lock);
    wd->quit = true;
    pthread_cond_signal(&wd->cond);
    pthread_mutex_unlock(&wd->lock);
    pthread_join(wd->thread, NULL);
    while (wd->loops != NULL)
        watchdog_unlink(wd, wd->loops);
    pthread_cond_destroy(&wd->cond);
    pthread_mutex_destroy(&wd->lock);
    veil_free(wd);
}

int veil_watchdog_add(struct veil_watchdog *wd, struct veil_loop *loop)
{
    struct veil_watchdog *none = NULL;
    pthread_mutex_lock(&wd->lock);
    int err = atomic_compare_exchange_strong(&loop->wd, &none, wd) ? 0 : -EBUSY;
    if (err == 0) {
        loop->wd_prev = NULL;
        loop->wd_next = wd->loops;
        if (wd->loops != NULL)
            wd->loops->wd_prev = loop;
        wd->loops = loop;
        pthread_cond_signal(&wd->cond); /* rescan now, with this loop's threshold */
    }
    pthread_mutex_unlock(&wd->lock);
    return err;
}

void veil_watchdog_remove(struct veil_watchdog *wd, struct veil_loop *loop)
{
    pthread_mutex_lock(&wd->lock);
    if (atomic_load(&loop->wd) == wd)
        watchdog_unlink(wd, loop);
    pthread_mutex_unlock(&wd->lock);
}
