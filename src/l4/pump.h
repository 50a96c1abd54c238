/*
 * L4 transport ends and the byte pump.
 *
 * An end (struct veil_l4_end) is a byte stream with a small vtable: a raw
 * non-blocking TCP socket (veil_l4_tcp_new() below) or an HBONE stream
 * (veil_hbone_h2s_end() in hbone/hbone.h). One direction-parameterised pump
 * moves bytes both ways between two ends, whatever they are.
 *
 * Notification contract, for every end: the user binds a notify function
 * (veil_l4_end_bind()) and sets its interest. After read() returned -EAGAIN
 * while VEIL_L4_READ is set, the end calls notify(VEIL_L4_READ) when read()
 * may make progress (bytes, EOF or error); after write() returned -EAGAIN
 * while VEIL_L4_WRITE is set, notify(VEIL_L4_WRITE) when write() may make
 * progress. Notifications come from the loop (io callbacks or deferred
 * functions), never from inside one of the end's ops, and may be spurious.
 * An end that stopped being read by choice (its user's buffer was full) is
 * read again by the user on its own initiative: no notification is owed.
 *
 * Ownership: the creator owns an end until it hands it to a pump (which then
 * owns it) or calls ops->close. Everything runs on the end's loop thread.
 *
 * The pump: bounded buffering (VEIL_L4_PUMP_BUF per direction): while one
 * side cannot take bytes, the other is not read (TCP's window or HTTP/2 flow
 * control pushes back on the sender). A direction holds a buffer only while
 * bytes wait in it: an idle pump holds no buffer memory. A direction ends when its source
 * reports EOF and the buffered bytes were accepted by the destination, which
 * is then half-closed (shutdown_write). The pump is done when both directions
 * ended (err NULL), when an op fails (err names it), or on
 * veil_l4_pump_abort().
 */
#ifndef VEIL_L4_PUMP_H
#define VEIL_L4_PUMP_H

#include "core/loop-t.h"
#include "l4/pump-t.h"

/* Sets the function the end calls (see above). NULL fn: none. */
static inline void veil_l4_end_bind(struct veil_l4_end *e, veil_l4_notify_fn fn, void *arg)
{
    e->_notify = fn;
    e->_notify_arg = arg;
}

/* For implementations of ends: calls the bound notify function, if any. */
static inline void veil_l4_end_notify(struct veil_l4_end *e, uint32_t events)
{
    if (e->_notify != NULL)
        e->_notify(e, events, e->_notify_arg);
}

/* ---- the TCP end ---- */

/*
 * An end over `fd`, a connected non-blocking stream socket (TCP or a Unix
 * socketpair), which the end owns from now on, even on failure (then the fd
 * is closed). Watched on `loop`. Returns NULL with errno set (ENOMEM, or
 * epoll's error). Reading after the peer's RST returns -ECONNRESET; writing
 * after the peer went away -EPIPE (MSG_NOSIGNAL: no SIGPIPE).
 */
struct veil_l4_end *veil_l4_tcp_new(struct veil_loop *loop, int fd);

/* The socket of a TCP end (for getsockname and the like; do not close it,
 * do not read or write it). */
int veil_l4_tcp_fd(const struct veil_l4_end *e);

/* ---- the pump ---- */

/*
 * Starts pumping between `a` and `b` (two different ends, not bound to
 * anything else), which the pump owns from now on, also on failure (then
 * both are aborted and done_cb is not called). Bytes start moving at once if
 * available. done_cb(p, err, stats, arg) runs exactly once, from the loop
 * (never from inside veil_l4_pump_start()) or from veil_l4_pump_abort();
 * after it returns the pump closes both ends (gracefully when err is NULL,
 * else with abort) and frees itself: `p` is dead once done_cb returns.
 * Returns the pump, or NULL with errno = ENOMEM.
 */
struct veil_l4_pump *veil_l4_pump_start(struct veil_loop *loop, struct veil_l4_end *a,
                                        struct veil_l4_end *b, veil_l4_pump_done_cb done_cb,
                                        void *arg);

/*
 * Ends the pump now with `reason` (a static string, e.g. "policy revoked"),
 * for an owner that must cut a live connection: done_cb runs before this
 * returns (with err = reason), then both ends are reset (TCP RST,
 * RST_STREAM). A no-op on a pump whose done_cb is running. Not to be called
 * after done_cb returned (the pump is gone).
 */
void veil_l4_pump_abort(struct veil_l4_pump *p, const char *reason);

/* The counters so far. */
void veil_l4_pump_stats(const struct veil_l4_pump *p, struct veil_l4_pump_stats *out);

#endif
