/* Types of the event loop; see loop.h for the contract. */
#ifndef VEIL_CORE_LOOP_T_H
#define VEIL_CORE_LOOP_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One epoll event loop, run by one thread. Opaque. */
struct veil_loop;

/* Watches loops from its own thread and reports one stuck in an iteration.
 * Opaque. */
struct veil_watchdog;

/* Readiness flags of struct veil_io (not epoll's: loop.h maps them). */
enum {
    VEIL_IO_READ = 1u << 0,
    VEIL_IO_WRITE = 1u << 1,
    VEIL_IO_ERROR = 1u << 2, /* error, hang-up, or peer shut down its side */
};

struct veil_io;
typedef void (*veil_io_cb)(struct veil_io *io, uint32_t events);

/* A file descriptor watched by a loop. Embedded in its owner's object and
 * zeroed before first use. */
struct veil_io {
    struct veil_loop *_loop; /* kept after stop */
    veil_io_cb _cb;
    int _fd;
    uint32_t _events; /* VEIL_IO_* asked for */
    bool _active;
};

struct veil_timer;
typedef void (*veil_timer_cb)(struct veil_timer *t);

/* A one-shot or repeating timer. Embedded in its owner's object and zeroed
 * before first use. */
struct veil_timer {
    struct veil_loop *_loop; /* kept after stop */
    veil_timer_cb _cb;
    uint64_t _due;    /* loop time (ms) it fires at */
    uint64_t _repeat; /* 0: one-shot */
    uint64_t _seq;    /* start order; breaks ties between equal _due */
    size_t _index;    /* 1 + position in the loop's heap; 0: inactive */
};

struct veil_defer;
typedef void (*veil_defer_fn)(struct veil_defer *d);

/* A function queued to run at the end of the loop's current iteration
 * (deferred close). Embedded in its owner's object and zeroed before first
 * use. */
struct veil_defer {
    struct veil_defer *_next;
    veil_defer_fn _fn;
    bool _queued;
};

#endif
