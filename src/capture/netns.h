/*
 * Network namespaces: open one, create a socket in it, run code in it.
 *
 * A socket belongs to the netns it was created in, for its whole life. The
 * node proxy creates its per-pod listeners by switching the *calling
 * thread* into the pod's netns (setns), creating the socket and switching
 * back. setns() is per thread: call these from a thread that does nothing
 * else meanwhile (they are synchronous and short).
 *
 * The way back: on the first call on a thread, the thread's current netns
 * (its "home") is opened from /proc/thread-self/ns/net and that fd is kept,
 * per thread, until the thread exits (a pthread key destructor closes it).
 * So a thread must be in its home netns when it first calls here; it
 * always is again when each call returns. This per-thread fd is the only
 * state of this module.
 */
#ifndef VEIL_CAPTURE_NETNS_H
#define VEIL_CAPTURE_NETNS_H

/*
 * Opens a netns: a NAME (no '/') means /run/netns/NAME (what `ip netns add`
 * makes), anything with a '/' is a path (/proc/PID/ns/net, ...).
 * Returns an O_RDONLY|O_CLOEXEC fd the caller closes, or -errno.
 */
int veil_netns_open(const char *name_or_path);

/*
 * Runs fn(arg) with the calling thread inside `netns_fd`, then switches
 * back. Returns fn's return value, or -errno if the switch in failed (fn
 * not run). If the switch back fails (it cannot, short of a kernel bug) the
 * thread is left in the wrong netns: that is logged and -ENOTRECOVERABLE
 * returned.
 */
int veil_netns_run(int netns_fd, int (*fn)(void *), void *arg);

/*
 * socket(domain, type | SOCK_NONBLOCK | SOCK_CLOEXEC, protocol) inside
 * `netns_fd`. Returns the fd, or -errno.
 */
int veil_netns_socket(int netns_fd, int domain, int type, int protocol);

#endif
