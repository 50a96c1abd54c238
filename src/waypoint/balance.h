/*
 * The waypoint's resilience logic (docs/resilience.md): for each backend (a
 * service and port) an endpoint set that
 *
 *  - keeps its endpoints' state across configuration updates,
 *  - picks an endpoint by least request (Envoy's default: the lighter of two
 *    random choices among the healthy endpoints),
 *  - ejects an endpoint after consecutive 5xx or connect failures (outlier
 *    detection, Istio's DestinationRule semantics, simplified), and
 *  - holds the retry budget of the backend (Envoy's retry_budget).
 *
 * A pure library: no I/O, no clock, no random source. The caller passes the
 * time (`now`, monotonic milliseconds, never going back) and the random
 * values, so tests are deterministic. The set is not locked: one thread (the
 * loop's) at a time.
 *
 * How the engine uses it, per request attempt:
 *
 *     ep = veil_wp_bal_pick(set, now, rand(), rand(), NULL);   NULL: 503
 *     veil_wp_bal_start(set, ep);
 *     ... tunnel the request to ep->addr:ep->port as ep->identity ...
 *     veil_wp_bal_done(set, ep, veil_wp_bal_outcome_of(status), now);
 *
 * and for a retry, before it picks again (avoiding the endpoint that failed):
 *
 *     if (!veil_wp_bal_retry_start(set)) -> answer with the last response
 *     delay = veil_wp_bal_backoff_ms(route_base_ms, 0, retry_no, rand());
 *     ... later: pick(set, now, r1, r2, failed_ep), start, done as above ...
 *     veil_wp_bal_retry_done(set);            when the retry attempt ends
 *
 * Every veil_wp_bal_start() is matched by exactly one veil_wp_bal_done() on
 * the same set, and every successful veil_wp_bal_retry_start() by one
 * veil_wp_bal_retry_done().
 */
#ifndef VEIL_WAYPOINT_BALANCE_H
#define VEIL_WAYPOINT_BALANCE_H

#include "waypoint/balance-t.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Fills `cfg` with the defaults (VEIL_WP_BAL_DEF_*). */
void veil_wp_bal_cfg_default(struct veil_wp_bal_cfg *cfg);

/* 0 if `cfg` is usable, -EINVAL if not (ranges in balance-t.h). */
int veil_wp_bal_cfg_check(const struct veil_wp_bal_cfg *cfg);

/* Makes an empty set with `cfg` (copied; NULL = the defaults). NULL with
 * errno set: EINVAL (a bad cfg), ENOMEM. */
struct veil_wp_bal_set *veil_wp_bal_new(const struct veil_wp_bal_cfg *cfg);

/* Frees the set and all its endpoints, removed ones with attempts still in
 * flight included: no endpoint pointer of the set may be used afterwards.
 * NULL is a no-op. */
void veil_wp_bal_free(struct veil_wp_bal_set *set);

/*
 * Replaces the set's endpoints with the `n` in `eps` (the backend's current
 * endpoints, any order). An endpoint is the same one as before when its
 * address, port and workload key are all the same: it keeps its state
 * (attempts in flight, consecutive failures, ejection) and takes the new
 * identity. Others start fresh. Those no longer listed leave the set (an
 * ejected one stops counting as ejected); one with attempts in flight stays
 * allocated, outside the set, until its last veil_wp_bal_done(). A
 * duplicate (same address, port and workload) is listed once.
 *
 * 0, or -EINVAL (eps NULL with n > 0), -E2BIG (n > VEIL_WP_BAL_MAX_EPS),
 * -ENOMEM; on failure the set is unchanged.
 */
int veil_wp_bal_update(struct veil_wp_bal_set *set, const struct veil_wp_bal_ep_in *eps, size_t n);

/* The number of endpoints in the set, and the i-th of them (i < count), in
 * address order; for status pages. Valid until the next update. */
size_t veil_wp_bal_count(const struct veil_wp_bal_set *set);
const struct veil_wp_bal_ep *veil_wp_bal_at(const struct veil_wp_bal_set *set, size_t i);

/*
 * Picks the endpoint for a new attempt: of two endpoints drawn at random
 * (r1 % k and r2 % k among the k candidates; both may be the same), the one
 * with fewer attempts in flight, the first on a tie. Candidates are the
 * healthy (not ejected) endpoints other than `avoid` (the endpoint a retry
 * just failed on; NULL = none); if there are none, the healthy ones with
 * `avoid`; if none is healthy (panic mode, counted), all the endpoints but
 * `avoid`, else all. Ejections whose time is up end first.
 *
 * NULL only when the set has no endpoint. The pointer is the set's; it does
 * not start an attempt (veil_wp_bal_start() does).
 */
struct veil_wp_bal_ep *veil_wp_bal_pick(struct veil_wp_bal_set *set, uint64_t now, uint64_t r1,
                                        uint64_t r2, const struct veil_wp_bal_ep *avoid);

/* An attempt to `ep` (an endpoint of this set) starts: it counts as in
 * flight for the balancing and the retry budget until veil_wp_bal_done(). */
void veil_wp_bal_start(struct veil_wp_bal_set *set, struct veil_wp_bal_ep *ep);

/*
 * The attempt to `ep` ended with `outcome` at `now`. A success resets the
 * endpoint's consecutive failures; a 5xx or local failure adds one, and the
 * cfg.consecutive_5xx-th in a row ejects the endpoint (if max_ejection_percent
 * allows; else counted as an overflow) and starts the count again. Verdicts
 * on an ejected endpoint, or on one an update removed, change nothing. If
 * `ep` was removed and this was its last attempt, `ep` is freed: do not use
 * the pointer after this call.
 */
void veil_wp_bal_done(struct veil_wp_bal_set *set, struct veil_wp_bal_ep *ep,
                      enum veil_wp_bal_outcome outcome, uint64_t now);

/* The outcome of an attempt that ended with HTTP `status`: 5xx -> 5XX, any
 * other status -> OK, status <= 0 (no response: connect failure, reset,
 * timeout) -> LOCAL_FAIL. */
static inline enum veil_wp_bal_outcome veil_wp_bal_outcome_of(int status)
{
    if (status <= 0) {
        return VEIL_WP_BAL_LOCAL_FAIL;
    }
    return status >= 500 && status <= 599 ? VEIL_WP_BAL_5XX : VEIL_WP_BAL_OK;
}

/* Whether the retry budget would allow one more retry now: retries in flight
 * < max(min_retry_concurrency, budget_percent % of the attempts in flight).
 * No side effect. */
bool veil_wp_bal_may_retry(const struct veil_wp_bal_set *set);

/* Asks the budget for a retry. true: allowed, it counts as in flight (and in
 * retries_total) until veil_wp_bal_retry_done(); false: refused (counted in
 * retries_refused), do not retry. Call before the retry's pick and start. */
bool veil_wp_bal_retry_start(struct veil_wp_bal_set *set);

/* The retry an earlier true veil_wp_bal_retry_start() allowed has ended. */
void veil_wp_bal_retry_done(struct veil_wp_bal_set *set);

/* The set's counters at `now` (ejections whose time is up end first). */
void veil_wp_bal_stats(struct veil_wp_bal_set *set, uint64_t now, struct veil_wp_bal_stats *out);

/* Whether `ep` is ejected, and its attempts in flight, as of the last call
 * on its set that took a time. */
static inline bool veil_wp_bal_ep_ejected(const struct veil_wp_bal_ep *ep)
{
    return ep->_ejected;
}

static inline uint32_t veil_wp_bal_ep_active(const struct veil_wp_bal_ep *ep)
{
    return ep->_active;
}

/*
 * The wait before retry number `retry` (1 for the first retry), Envoy's
 * fully jittered exponential back-off: `rnd` modulo the window
 * (2^retry - 1) * base_ms, the window capped at max_ms. base_ms 0 = 25 ms;
 * max_ms 0 = 10 x base_ms, and a max_ms below base_ms counts as base_ms;
 * retry 0 counts as 1. So with the defaults: 0-24 ms, 0-74 ms, 0-174 ms, ...,
 * never 250 ms or more.
 */
uint64_t veil_wp_bal_backoff_ms(uint64_t base_ms, uint64_t max_ms, uint32_t retry, uint64_t rnd);

#endif
