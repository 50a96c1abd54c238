/* Types of the waypoint's resilience logic (endpoint sets, least-request
 * balancing, outlier detection, retry budget); see balance.h for the
 * contract and docs/resilience.md for the behaviour. */
#ifndef VEIL_WAYPOINT_BALANCE_T_H
#define VEIL_WAYPOINT_BALANCE_T_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

/* Most endpoints one set holds (veil_wp_bal_update() refuses more). */
#define VEIL_WP_BAL_MAX_EPS 16384

/* Longest base or maximum ejection time accepted (one day). */
#define VEIL_WP_BAL_MAX_EJECTION_MS (24ull * 3600 * 1000)

/* Defaults: Istio's DestinationRule outlierDetection defaults and Envoy's
 * retry_budget / retry back-off defaults (docs/resilience.md). */
#define VEIL_WP_BAL_DEF_CONSECUTIVE_5XX    5
#define VEIL_WP_BAL_DEF_INTERVAL_MS        10000
#define VEIL_WP_BAL_DEF_BASE_EJECTION_MS   30000
#define VEIL_WP_BAL_DEF_MAX_EJECTION_MS    300000
#define VEIL_WP_BAL_DEF_MAX_EJECTION_PCT   10
#define VEIL_WP_BAL_DEF_BUDGET_PCT         20
#define VEIL_WP_BAL_DEF_MIN_RETRY_CONC     3
#define VEIL_WP_BAL_DEF_BACKOFF_BASE_MS    25
#define VEIL_WP_BAL_DEF_BACKOFF_MAX_FACTOR 10

/* The verdict on one finished request attempt, for outlier detection. */
enum veil_wp_bal_outcome {
    VEIL_WP_BAL_OK = 0,     /* a response with a status below 500 */
    VEIL_WP_BAL_5XX,        /* a 5xx response */
    VEIL_WP_BAL_LOCAL_FAIL, /* connect failure, reset or upstream timeout:
                               counted as a 5xx (Envoy's default) */
    VEIL_WP_BAL_CANCEL,     /* no verdict (the client went away, shutdown):
                               ends the attempt, changes no health state */
};

/* A set's settings. Fill with veil_wp_bal_cfg_default(), then change. */
struct veil_wp_bal_cfg {
    uint32_t consecutive_5xx;       /* failures in a row that eject; 0 = never eject */
    uint32_t interval_ms;           /* healthy time that takes one off the ejection
                                       multiplier (>= 1) */
    uint64_t base_ejection_ms;      /* first ejection time (1 .. one day) */
    uint64_t max_ejection_ms;       /* longest ejection time (<= one day); below
                                       base_ejection_ms it counts as base_ejection_ms */
    uint32_t max_ejection_percent;  /* 0..100; one endpoint may always be ejected */
    uint32_t budget_percent;        /* 0..100: retries allowed per active request */
    uint32_t min_retry_concurrency; /* retries always allowed at once */
};

/* An endpoint as the engine gives it to veil_wp_bal_update() (borrowed for
 * the call only). */
struct veil_wp_bal_ep_in {
    struct in_addr addr;  /* the pod's address */
    uint16_t port;        /* the target port */
    const char *identity; /* its SPIFFE ID; NULL = "" */
    const char *workload; /* its key "Workload/ns/name"; NULL = none */
};

/*
 * One endpoint of a set. The engine reads the public members; the `_`
 * members only through balance.h. The set owns it; a pointer stays valid
 * until the set is freed, or, once an update has removed the endpoint,
 * until its last attempt ends (veil_wp_bal_done()).
 */
struct veil_wp_bal_ep {
    struct in_addr addr;
    uint16_t port;
    char *identity;      /* never NULL */
    char *workload;      /* never NULL; "" when none was given */
    uint32_t _active;    /* attempts in flight */
    uint32_t _fails;     /* consecutive failures */
    uint32_t _ejections; /* ejection-time multiplier */
    bool _ejected;       /* out of the healthy pool until _until */
    bool _gone;          /* removed by an update; freed at its last done */
    uint64_t _until;     /* while _ejected: when it comes back */
    uint64_t _back_at;   /* when it last came back (decay of _ejections) */
    struct veil_wp_bal_ep *_next_gone;
};

/* The counters of a set (veil_wp_bal_stats()); the totals survive updates. */
struct veil_wp_bal_stats {
    uint32_t endpoints;          /* endpoints in the set now */
    uint32_t ejected_now;        /* of which ejected */
    uint32_t active;             /* attempts in flight (removed endpoints included) */
    uint32_t retries_active;     /* retries in flight */
    uint64_t ejections_total;    /* ejections done */
    uint64_t ejections_overflow; /* ejections refused by max_ejection_percent */
    uint64_t retries_total;      /* retries the budget allowed */
    uint64_t retries_refused;    /* retries the budget refused */
    uint64_t panic_picks;        /* picks made among ejected endpoints (none healthy) */
};

/* An endpoint set: the endpoints of one backend (a service and port). Opaque. */
struct veil_wp_bal_set;

#endif
