/*
 * The CPU scheduling policy of a proxy process (docs/node.md,
 * "Scheduling"). A node proxy or a waypoint runs as SCHED_BATCH by default:
 * the scheduler then never preempts the task that is running to run the
 * proxy at once when traffic wakes it, so a proxy woken by its peer's write
 * waits until the writer sleeps, and the writer is not switched out and
 * back in for every message. The nice value is kept. Returns 0 or -errno
 * (docs/internals.md).
 */
#ifndef VEIL_CORE_SCHED_H
#define VEIL_CORE_SCHED_H

enum veil_sched {
    VEIL_SCHED_BATCH,   /* SCHED_BATCH (the default) */
    VEIL_SCHED_INHERIT, /* leave the policy the process was started with */
};

/* "batch" or "inherit": 0, or -EINVAL for anything else. */
int veil_sched_parse(const char *s, enum veil_sched *out);

/* Sets the calling thread's policy; threads it starts afterwards inherit
 * it, so call it before starting any. VEIL_SCHED_INHERIT changes nothing. */
int veil_sched_apply(enum veil_sched policy);

#endif
