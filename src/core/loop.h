/*
 * The event loop: epoll, timers, deferred close, cross-thread posts and a
 * watchdog. One loop per worker thread.
 *
 * An iteration is one epoll_wait() round and the callbacks it leads to, in
 * this order: the io callbacks of the ready fds, then the due timers (in
 * order of due time, ties in start order), then the deferred functions.
 * Posted functions run from an io callback (the loop's own eventfd).
 *
 * Threading: a loop, and every io, timer and defer started on it, is
 * touched only from the thread that runs it (or, before veil_loop_run(),
 * the thread that set it up). The exceptions, safe from any thread, are
 * veil_loop_post(), veil_loop_stop(), veil_loop_set_watchdog_ms(),
 * veil_loop_iterations(), veil_loop_stalls() and the veil_watchdog_*
 * functions.
 *
 * Ownership: the object that embeds a struct veil_io, veil_timer or
 * veil_defer owns it; the loop only points at it while it is active. To
 * close an object from inside a callback, stop its io and timers and free it
 * from a veil_defer, so that it is freed only after the callbacks of the
 * current iteration have returned.
 *
 * Time is CLOCK_MONOTONIC in milliseconds.
 */
#ifndef VEIL_CORE_LOOP_H
#define VEIL_CORE_LOOP_H

#include "core/loop-t.h"

/* Default threshold above which an iteration is reported as a stall. */
#define VEIL_LOOP_WATCHDOG_MS 1000

/* ---- time ---- */

/* The monotonic clock now, in ms. */
uint64_t veil_now_ms(void);

/* The loop's time: read once when epoll_wait() returns, so the same for
 * every callback of an iteration. Timers count from it. */
uint64_t veil_loop_now(const struct veil_loop *loop);

/* ---- loop ---- */

/* Creates a loop; `name` (copied) names it in logs. Returns NULL with errno
 * set (ENOMEM, or epoll/eventfd's error) on failure. */
struct veil_loop *veil_loop_new(const char *name);

/*
 * Frees a loop that is not running, from any one thread. First it runs what
 * is pending, on the calling thread, until nothing is left: posted functions
 * (so whatever their `arg` owns is released by them) and deferred functions.
 * It leaves the watchdog, if in one. Ios and timers still active are
 * forgotten: their owners must not touch them through the loop afterwards
 * (stop them before, to be safe); the loop never calls them again.
 * NULL is a no-op.
 */
void veil_loop_free(struct veil_loop *loop);

const char *veil_loop_name(const struct veil_loop *loop);

/*
 * Runs iterations on the calling thread until veil_loop_stop(). Returns 0
 * after a stop, or -errno if epoll_wait() failed (not for EINTR). A stop
 * requested while the loop was not running makes the next run return at
 * once. Not reentrant: must not be called from a callback.
 */
int veil_loop_run(struct veil_loop *loop);

/* Makes veil_loop_run() return once the current iteration (if any) is over.
 * Any thread; wakes the loop through its eventfd. */
void veil_loop_stop(struct veil_loop *loop);

/*
 * Queues fn(arg) to run on the loop's thread at its next iteration (in post
 * order). Any thread. Returns 0 or -ENOMEM. Functions still queued when the
 * loop is freed are run by veil_loop_free(), never dropped. Posting to a
 * loop that is being freed is a bug.
 */
int veil_loop_post(struct veil_loop *loop, void (*fn)(void *arg), void *arg);

/*
 * Queues d->fn(d) to run at the end of the current iteration, after every
 * io and timer callback of the iteration has returned (or, outside run, at
 * the end of the next iteration or in veil_loop_free()). Deferred functions
 * run in queue order; ones queued by them run in the same round. Queuing a
 * defer that is already queued is a no-op (the first `fn` stays). `fn` may
 * free the object that embeds `d`.
 */
void veil_loop_defer(struct veil_loop *loop, struct veil_defer *d, veil_defer_fn fn);

static inline bool veil_defer_is_queued(const struct veil_defer *d)
{
    return d->_queued;
}

/* Number of iterations started since the loop was created. Any thread. */
uint64_t veil_loop_iterations(const struct veil_loop *loop);

/* ---- io ---- */

/*
 * Watches `fd` (level-triggered) for `events` (VEIL_IO_READ, VEIL_IO_WRITE;
 * VEIL_IO_ERROR also reports the peer shutting down its side, EPOLLRDHUP).
 * cb(io, ready) runs once per iteration while the fd is ready; `ready` holds
 * the asked-for flags that are ready, plus VEIL_IO_ERROR on error or
 * hang-up (always reported). `io` must not be active. Returns 0, -EBUSY if
 * it is active, or epoll_ctl's -errno (-EPERM for regular files, -EEXIST if
 * the fd is already watched by this loop).
 */
int veil_io_start(struct veil_loop *loop, struct veil_io *io, int fd, uint32_t events,
                  veil_io_cb cb);

/* Changes the flags watched. Returns 0, -EINVAL if `io` is not active, or
 * epoll_ctl's -errno. A flag removed is not reported any more, even if it
 * was already ready in the current iteration. */
int veil_io_modify(struct veil_io *io, uint32_t events);

/*
 * Stops watching; no-op if not active. After it returns, cb is not called
 * for `io` again, even for an event already collected in the current
 * iteration, so a callback may stop (and even free) another io. Call it
 * before closing the fd.
 */
void veil_io_stop(struct veil_io *io);

static inline bool veil_io_is_active(const struct veil_io *io)
{
    return io->_active;
}

static inline int veil_io_fd(const struct veil_io *io)
{
    return io->_fd;
}

/* The loop of the last veil_io_start() (NULL if never started). */
static inline struct veil_loop *veil_io_loop(const struct veil_io *io)
{
    return io->_loop;
}

/* ---- timers ---- */

/*
 * Starts (or restarts, if active) `t`: cb(t) runs at the first iteration at
 * least `timeout_ms` after veil_loop_now() (the current time, outside
 * run), then every `repeat_ms` after that if `repeat_ms` > 0. A one-shot
 * timer is inactive when its cb runs; a repeating one is already
 * rescheduled. A cb may stop or restart its own or any other timer; a timer
 * started from a cb with timeout 0 runs in the next iteration, not the
 * current one. O(log n). Returns 0, or -ENOMEM (the timer is then inactive).
 */
int veil_timer_start(struct veil_loop *loop, struct veil_timer *t, uint64_t timeout_ms,
                     uint64_t repeat_ms, veil_timer_cb cb);

/* Stops `t`; no-op if inactive. O(log n). */
void veil_timer_stop(struct veil_timer *t);

static inline bool veil_timer_is_active(const struct veil_timer *t)
{
    return t->_index != 0;
}

/* The loop of the last veil_timer_start() (NULL if never started). */
static inline struct veil_loop *veil_timer_loop(const struct veil_timer *t)
{
    return t->_loop;
}

/* ---- stalls and the watchdog ---- */

/*
 * An iteration longer than the loop's threshold (VEIL_LOOP_WATCHDOG_MS by
 * default; 0 turns the checks off) is a stall. It is reported twice over:
 * - by the loop after the iteration: WARN "loop NAME: one iteration took N
 *   ms";
 * - while it is still stuck, by the watchdog the loop was added to (if any):
 *   WARN "loop NAME: stuck in one iteration for N ms", once per iteration.
 * veil_loop_stalls() counts stalled iterations, each once whoever saw it.
 * Both are safe from any thread.
 */
void veil_loop_set_watchdog_ms(struct veil_loop *loop, uint64_t ms);
uint64_t veil_loop_stalls(const struct veil_loop *loop);

/*
 * Creates a watchdog and starts its thread, which checks the loops added to
 * it every quarter of their smallest threshold (between 5 and 250 ms).
 * Returns NULL with errno set on failure. One per process is enough; it is
 * an object, not global state, so that tests and embedders own its life.
 */
struct veil_watchdog *veil_watchdog_new(void);

/* Stops and joins the thread, removes the loops still added, frees `wd`.
 * Must not race with veil_loop_free() of those loops. NULL is a no-op. */
void veil_watchdog_free(struct veil_watchdog *wd);

/* Adds `loop` to `wd`. Returns 0, or -EBUSY if the loop is already in a
 * watchdog. veil_loop_free() removes it. */
int veil_watchdog_add(struct veil_watchdog *wd, struct veil_loop *loop);

/* Removes `loop` from `wd`; no-op if it is not in it. */
void veil_watchdog_remove(struct veil_watchdog *wd, struct veil_loop *loop);

#endif
