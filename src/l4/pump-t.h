/* Types of the L4 transport ends and the byte pump; see pump.h for the
 * contract. */
#ifndef VEIL_L4_PUMP_T_H
#define VEIL_L4_PUMP_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Bytes a pump buffers per direction, at most. */
#define VEIL_L4_PUMP_BUF (64 * 1024)

/* A direction's buffer exists only while bytes wait in it (it is freed when
 * a turn of the pump leaves it empty). It is allocated at this size and
 * grows, up to VEIL_L4_PUMP_BUF, while bytes pile up. */
#define VEIL_L4_PUMP_CHUNK (16 * 1024)

/* Bytes a pump moves per direction in one turn before it lets the loop run
 * other work (it continues in the same iteration's deferred round). */
#define VEIL_L4_PUMP_TURN (1024 * 1024)

/* What an end's user wants to hear about (set_interest) and what a
 * notification reports. */
enum {
    VEIL_L4_READ = 1u << 0,  /* read() may make progress (bytes, EOF or error) */
    VEIL_L4_WRITE = 1u << 1, /* write() may make progress (room, or an error) */
};

struct veil_l4_end;

/*
 * A transport end's operations (its vtable). All but close are called only
 * while the end is open; none of them calls the end's notify function (see
 * pump.h): notifications come only from the loop (io callbacks, deferred
 * functions), never from inside an op.
 */
struct veil_l4_end_ops {
    const char *name; /* "tcp", "hbone", ... for logs */
    /* Reads up to n bytes: > 0 bytes read, 0 at end of stream (the peer
     * half-closed: TCP FIN, HTTP/2 END_STREAM), -EAGAIN nothing now,
     * else -errno (-ECONNRESET: TCP RST, RST_STREAM, connection lost). */
    ssize_t (*read)(struct veil_l4_end *e, void *buf, size_t n);
    /* Takes up to n > 0 bytes: > 0 bytes accepted (they will be sent; the
     * rest must be offered again), -EAGAIN none now, else -errno (-EPIPE
     * after the peer went away). */
    ssize_t (*write)(struct veil_l4_end *e, const void *buf, size_t n);
    /* Half-closes the sending side once the bytes accepted so far are sent
     * (TCP shutdown(SHUT_WR), HTTP/2 END_STREAM). No write after it. 0 or
     * -errno. */
    int (*shutdown_write)(struct veil_l4_end *e);
    /* Which notifications the user wants (VEIL_L4_READ | VEIL_L4_WRITE). */
    void (*set_interest)(struct veil_l4_end *e, uint32_t events);
    /* Releases the end; the pointer is dead after it. abort = false: a
     * graceful close (bytes accepted are still delivered; TCP close,
     * HTTP/2 stream ended or reset with NO_ERROR); abort = true: reset
     * (TCP RST through SO_LINGER 0, RST_STREAM CANCEL). Never fails; the
     * memory goes in a deferred function, so an end may be closed from a
     * notification of its own. */
    void (*close)(struct veil_l4_end *e, bool abort);
};

/* Called by an end, from the loop, when something it was asked to watch
 * (set_interest) may have changed. Spurious calls are allowed. */
typedef void (*veil_l4_notify_fn)(struct veil_l4_end *e, uint32_t events, void *arg);

/* One end of an L4 byte stream. Embedded in the transport's object (struct
 * veil_l4_tcp, the HBONE stream); users see only a pointer. */
struct veil_l4_end {
    const struct veil_l4_end_ops *ops;
    veil_l4_notify_fn _notify; /* set by veil_l4_end_bind(); NULL: none */
    void *_notify_arg;
};

/* A pump between two ends. Opaque. */
struct veil_l4_pump;

/* What a pump moved; in done_cb and from veil_l4_pump_stats(). "a" and "b"
 * are the ends given to veil_l4_pump_start(), in that order. */
struct veil_l4_pump_stats {
    uint64_t a_to_b;        /* bytes read from a and accepted by b */
    uint64_t b_to_a;        /* bytes read from b and accepted by a */
    size_t buffered_a_to_b; /* held by the pump now (<= VEIL_L4_PUMP_BUF) */
    size_t buffered_b_to_a;
    size_t buffer_memory; /* allocated for both directions now; 0 while idle */
    int error;            /* 0, or the -errno that ended the pump with an error */
    char failed_side;     /* 0, 'a' or 'b': the end whose op failed */
};

/* See veil_l4_pump_start(). err is NULL when both directions ended cleanly
 * (each side's EOF was passed on as a half-close), else a static string. */
typedef void (*veil_l4_pump_done_cb)(struct veil_l4_pump *p, const char *err,
                                     const struct veil_l4_pump_stats *st, void *arg);

#endif
