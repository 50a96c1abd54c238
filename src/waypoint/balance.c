/* The waypoint's endpoint sets, balancing, outlier detection and retry
 * budget (balance.h, docs/resilience.md). */
#include "waypoint/balance.h"

#include "core/alloc.h"
#include "core/bug.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

struct veil_wp_bal_set {
    struct veil_wp_bal_cfg cfg;
    struct veil_wp_bal_ep **eps; /* sorted by key (address, port, workload) */
    size_t n;
    struct veil_wp_bal_ep **cand; /* the pick's scratch: n slots */
    struct veil_wp_bal_ep *gone;  /* removed, with attempts still in flight */
    uint32_t ejected;             /* endpoints of eps ejected */
    uint64_t next_expiry;         /* no ejection ends before this */
    uint32_t active, retries_active;
    uint64_t ejections_total, ejections_overflow;
    uint64_t retries_total, retries_refused, panic_picks;
};

/* ---- configuration ---- */

void veil_wp_bal_cfg_default(struct veil_wp_bal_cfg *cfg)
{
    cfg->consecutive_5xx = VEIL_WP_BAL_DEF_CONSECUTIVE_5XX;
    cfg->interval_ms = VEIL_WP_BAL_DEF_INTERVAL_MS;
    cfg->base_ejection_ms = VEIL_WP_BAL_DEF_BASE_EJECTION_MS;
    cfg->max_ejection_ms = VEIL_WP_BAL_DEF_MAX_EJECTION_MS;
    cfg->max_ejection_percent = VEIL_WP_BAL_DEF_MAX_EJECTION_PCT;
    cfg->budget_percent = VEIL_WP_BAL_DEF_BUDGET_PCT;
    cfg->min_retry_concurrency = VEIL_WP_BAL_DEF_MIN_RETRY_CONC;
}

int veil_wp_bal_cfg_check(const struct veil_wp_bal_cfg *cfg)
{
    if (cfg == NULL || cfg->interval_ms == 0 || cfg->base_ejection_ms == 0 ||
        cfg->base_ejection_ms > VEIL_WP_BAL_MAX_EJECTION_MS ||
        cfg->max_ejection_ms > VEIL_WP_BAL_MAX_EJECTION_MS || cfg->max_ejection_percent > 100 ||
        cfg->budget_percent > 100)
        return -EINVAL;
    return 0;
}

struct veil_wp_bal_set *veil_wp_bal_new(const struct veil_wp_bal_cfg *cfg)
{
    struct veil_wp_bal_cfg def;
    if (cfg == NULL) {
        veil_wp_bal_cfg_default(&def);
        cfg = &def;
    }
    if (veil_wp_bal_cfg_check(cfg) != 0) {
        errno = EINVAL;
        return NULL;
    }
    struct veil_wp_bal_set *set = veil_calloc(1, sizeof(*set));
    if (set == NULL)
        return NULL;
    set->cfg = *cfg;
    set->next_expiry = UINT64_MAX;
    return set;
}

/* ---- endpoints ---- */

static struct veil_wp_bal_ep *ep_new(const struct veil_wp_bal_ep_in *in)
{
    struct veil_wp_bal_ep *ep = veil_calloc(1, sizeof(*ep));
    if (ep == NULL)
        return NULL;
    ep->addr = in->addr;
    ep->port = in->port;
    ep->identity = veil_strdup(in->identity != NULL ? in->identity : "");
    ep->workload = veil_strdup(in->workload != NULL ? in->workload : "");
    if (ep->identity == NULL || ep->workload == NULL) {
        veil_free(ep->identity);
        veil_free(ep->workload);
        veil_free(ep);
        return NULL;
    }
    return ep;
}

static void ep_free(struct veil_wp_bal_ep *ep)
{
    veil_free(ep->identity);
    veil_free(ep->workload);
    veil_free(ep);
}

void veil_wp_bal_free(struct veil_wp_bal_set *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->n; i++)
        ep_free(set->eps[i]);
    while (set->gone != NULL) {
        struct veil_wp_bal_ep *ep = set->gone;
        set->gone = ep->_next_gone;
        ep_free(ep);
    }
    veil_free(set->eps);
    veil_free(set->cand);
    veil_free(set);
}

/* An endpoint's identity in a set: address, port and workload key. */
struct key {
    uint32_t addr; /* host order, so the status order reads naturally */
    uint16_t port;
    const char *wl;
};

static struct key key_of_in(const struct veil_wp_bal_ep_in *in)
{
    return (struct key){ntohl(in->addr.s_addr), in->port, in->workload != NULL ? in->workload : ""};
}

static struct key key_of_ep(const struct veil_wp_bal_ep *ep)
{
    return (struct key){ntohl(ep->addr.s_addr), ep->port, ep->workload};
}

static int key_cmp(struct key a, struct key b)
{
    if (a.addr != b.addr)
        return a.addr < b.addr ? -1 : 1;
    if (a.port != b.port)
        return a.port < b.port ? -1 : 1;
    return strcmp(a.wl, b.wl);
}

static int ep_sort_cmp(const void *a, const void *b)
{
    const struct veil_wp_bal_ep *const *x = a, *const *y = b;
    return key_cmp(key_of_ep(*x), key_of_ep(*y));
}

/* The index of the endpoint with key `k` in the set, or -1. */
static long find(const struct veil_wp_bal_set *set, struct key k)
{
    size_t lo = 0, hi = set->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = key_cmp(k, key_of_ep(set->eps[mid]));
        if (c == 0)
            return (long)mid;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

/* What an update builds before it commits; freed whole on failure. */
struct upd {
    struct veil_wp_bal_ep **eps; /* the new list */
    size_t n;
    struct veil_wp_bal_ep **cand;  /* the new pick scratch */
    struct veil_wp_bal_ep **fresh; /* endpoints made by this update */
    size_t nfresh;
    char **ids;  /* per old endpoint: its new identity, or NULL */
    bool *taken; /* per old endpoint: listed again */
};

static int upd_alloc(struct upd *u, size_t n, size_t old_n)
{
    size_t nn = n > 0 ? n : 1, on = old_n > 0 ? old_n : 1;
    u->eps = veil_calloc(nn, sizeof(*u->eps));
    u->cand = veil_calloc(nn, sizeof(*u->cand));
    u->fresh = veil_calloc(nn, sizeof(*u->fresh));
    u->ids = veil_calloc(on, sizeof(*u->ids));
    u->taken = veil_calloc(on, sizeof(*u->taken));
    if (u->eps == NULL || u->cand == NULL || u->fresh == NULL || u->ids == NULL || u->taken == NULL)
        return -ENOMEM;
    return 0;
}

/* Frees the update's scaffolding; with `abort`, also what it made. */
static void upd_release(struct upd *u, size_t old_n, bool abort)
{
    if (abort) {
        for (size_t i = 0; i < u->nfresh; i++)
            ep_free(u->fresh[i]);
        for (size_t i = 0; u->ids != NULL && i < old_n; i++)
            veil_free(u->ids[i]);
        veil_free(u->eps);
        veil_free(u->cand);
    }
    veil_free(u->fresh);
    veil_free(u->ids);
    veil_free(u->taken);
}

/* Lists the old endpoint `i` again, with the identity `id`. */
static int upd_keep(const struct veil_wp_bal_set *set, struct upd *u, size_t i, const char *id)
{
    if (u->taken[i])
        return 0; /* a duplicate */
    if (strcmp(set->eps[i]->identity, id) != 0 && (u->ids[i] = veil_strdup(id)) == NULL)
        return -ENOMEM;
    u->taken[i] = true;
    u->eps[u->n++] = set->eps[i];
    return 0;
}

static int upd_fill(const struct veil_wp_bal_set *set, struct upd *u,
                    const struct veil_wp_bal_ep_in *eps, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        long old = find(set, key_of_in(&eps[i]));
        if (old >= 0) {
            const char *id = eps[i].identity != NULL ? eps[i].identity : "";
            if (upd_keep(set, u, (size_t)old, id) != 0)
                return -ENOMEM;
            continue;
        }
        struct veil_wp_bal_ep *ep = ep_new(&eps[i]);
        if (ep == NULL)
            return -ENOMEM;
        u->fresh[u->nfresh++] = ep;
        u->eps[u->n++] = ep;
    }
    return 0;
}

/* Sorts the new list and drops duplicates among the new endpoints (a kept
 * one has a key no new one has). */
static void upd_sort(struct upd *u)
{
    if (u->n > 1)
        qsort(u->eps, u->n, sizeof(*u->eps), ep_sort_cmp);
    size_t w = 0;
    for (size_t r = 0; r < u->n; r++) {
        if (w > 0 && key_cmp(key_of_ep(u->eps[w - 1]), key_of_ep(u->eps[r])) == 0) {
            ep_free(u->eps[r]);
            continue;
        }
        u->eps[w++] = u->eps[r];
    }
    u->n = w;
}

/* The endpoint leaves the set: freed now, or at its last done. */
static void retire(struct veil_wp_bal_set *set, struct veil_wp_bal_ep *ep)
{
    if (ep->_ejected) {
        ep->_ejected = false;
        set->ejected--;
    }
    if (ep->_active == 0) {
        ep_free(ep);
        return;
    }
    ep->_gone = true;
    ep->_next_gone = set->gone;
    set->gone = ep;
}

static void upd_commit(struct veil_wp_bal_set *set, struct upd *u)
{
    for (size_t i = 0; i < set->n; i++) {
        struct veil_wp_bal_ep *ep = set->eps[i];
        if (!u->taken[i]) {
            retire(set, ep);
        } else if (u->ids[i] != NULL) {
            veil_free(ep->identity);
            ep->identity = u->ids[i];
        }
    }
    veil_free(set->eps);
    veil_free(set->cand);
    set->eps = u->eps;
    set->cand = u->cand;
    set->n = u->n;
}

int veil_wp_bal_update(struct veil_wp_bal_set *set, const struct veil_wp_bal_ep_in *eps, size_t n)
{
    if (set == NULL || (eps == NULL && n > 0))
        return -EINVAL;
    if (n > VEIL_WP_BAL_MAX_EPS)
        return -E2BIG;
    struct upd u = {0};
    int rc = upd_alloc(&u, n, set->n);
    if (rc == 0)
        rc = upd_fill(set, &u, eps, n);
    if (rc != 0) {
        upd_release(&u, set->n, true);
        return rc;
    }
    upd_sort(&u);
    upd_commit(set, &u);
    upd_release(&u, 0, false);
    return 0;
}

size_t veil_wp_bal_count(const struct veil_wp_bal_set *set)
{
    return set->n;
}

const struct veil_wp_bal_ep *veil_wp_bal_at(const struct veil_wp_bal_set *set, size_t i)
{
    return i < set->n ? set->eps[i] : NULL;
}

/* ---- outlier detection ---- */

static void uneject(struct veil_wp_bal_set *set, struct veil_wp_bal_ep *ep)
{
    ep->_ejected = false;
    ep->_back_at = ep->_until;
    ep->_fails = 0;
    set->ejected--;
}

/* Ends the ejections whose time is up at `now`. */
static void expire(struct veil_wp_bal_set *set, uint64_t now)
{
    if (set->ejected == 0 || now < set->next_expiry)
        return;
    uint64_t next = UINT64_MAX;
    for (size_t i = 0; i < set->n; i++) {
        struct veil_wp_bal_ep *ep = set->eps[i];
        if (!ep->_ejected)
            continue;
        if (now >= ep->_until)
            uneject(set, ep);
        else if (ep->_until < next)
            next = ep->_until;
    }
    set->next_expiry = next;
}

/* Whether one more ejection keeps within max_ejection_percent; the first
 * one always does (Envoy: "will eject at least one host"). */
static bool may_eject(const struct veil_wp_bal_set *set)
{
    if (set->ejected == 0)
        return true;
    return ((uint64_t)set->ejected + 1) * 100 <= (uint64_t)set->cfg.max_ejection_percent * set->n;
}

/* The length of the endpoint's next ejection. The multiplier loses one for
 * each interval the endpoint has been back, then grows by one while the
 * time stays under the maximum (Envoy's outlier detector). */
static uint64_t ejection_ms(const struct veil_wp_bal_cfg *cfg, struct veil_wp_bal_ep *ep,
                            uint64_t now)
{
    if (ep->_ejections > 0 && now > ep->_back_at) {
        uint64_t steps = (now - ep->_back_at) / cfg->interval_ms;
        ep->_ejections = steps >= ep->_ejections ? 0 : ep->_ejections - (uint32_t)steps;
    }
    uint64_t base = cfg->base_ejection_ms;
    uint64_t max = cfg->max_ejection_ms > base ? cfg->max_ejection_ms : base;
    if (ep->_ejections == 0 || base * ep->_ejections < max)
        ep->_ejections++;
    uint64_t t = base * ep->_ejections;
    return t < max ? t : max;
}

static void eject(struct veil_wp_bal_set *set, struct veil_wp_bal_ep *ep, uint64_t now)
{
    if (!may_eject(set)) {
        set->ejections_overflow++;
        return;
    }
    ep->_until = now + ejection_ms(&set->cfg, ep, now);
    ep->_ejected = true;
    set->ejected++;
    set->ejections_total++;
    if (ep->_until < set->next_expiry)
        set->next_expiry = ep->_until;
}

/* Outlier detection's view of one finished attempt. */
static void judge(struct veil_wp_bal_set *set, struct veil_wp_bal_ep *ep,
                  enum veil_wp_bal_outcome outcome, uint64_t now)
{
    if (ep->_ejected || outcome == VEIL_WP_BAL_CANCEL)
        return;
    if (outcome == VEIL_WP_BAL_OK) {
        ep->_fails = 0;
        return;
    }
    if (set->cfg.consecutive_5xx == 0 || ++ep->_fails < set->cfg.consecutive_5xx)
        return;
    ep->_fails = 0;
    eject(set, ep, now);
}

/* ---- balancing ---- */

/* Gathers the candidates into set->cand; returns how many. */
static size_t collect(struct veil_wp_bal_set *set, bool healthy_only,
                      const struct veil_wp_bal_ep *avoid)
{
    size_t k = 0;
    for (size_t i = 0; i < set->n; i++) {
        struct veil_wp_bal_ep *ep = set->eps[i];
        if (ep == avoid || (healthy_only && ep->_ejected))
            continue;
        set->cand[k++] = ep;
    }
    return k;
}

struct veil_wp_bal_ep *veil_wp_bal_pick(struct veil_wp_bal_set *set, uint64_t now, uint64_t r1,
                                        uint64_t r2, const struct veil_wp_bal_ep *avoid)
{
    if (set->n == 0)
        return NULL;
    expire(set, now);
    size_t k = collect(set, true, avoid);
    if (k == 0 && avoid != NULL)
        k = collect(set, true, NULL);
    if (k == 0) {
        set->panic_picks++;
        k = collect(set, false, avoid);
        if (k == 0)
            k = collect(set, false, NULL);
    }
    struct veil_wp_bal_ep *a = set->cand[r1 % k], *b = set->cand[r2 % k];
    return b->_active < a->_active ? b : a;
}

void veil_wp_bal_start(struct veil_wp_bal_set *set, struct veil_wp_bal_ep *ep)
{
    ep->_active++;
    set->active++;
}

static void unlink_gone(struct veil_wp_bal_set *set, struct veil_wp_bal_ep *ep)
{
    for (struct veil_wp_bal_ep **p = &set->gone; *p != NULL; p = &(*p)->_next_gone) {
        if (*p == ep) {
            *p = ep->_next_gone;
            return;
        }
    }
}

void veil_wp_bal_done(struct veil_wp_bal_set *set, struct veil_wp_bal_ep *ep,
                      enum veil_wp_bal_outcome outcome, uint64_t now)
{
    VEIL_BUG_ON(ep->_active == 0 || set->active == 0);
    if (ep->_active > 0)
        ep->_active--;
    if (set->active > 0)
        set->active--;
    if (ep->_gone) {
        if (ep->_active == 0) {
            unlink_gone(set, ep);
            ep_free(ep);
        }
        return;
    }
    expire(set, now);
    judge(set, ep, outcome, now);
}

/* ---- retry budget ---- */

bool veil_wp_bal_may_retry(const struct veil_wp_bal_set *set)
{
    uint64_t allowed = (uint64_t)set->active * set->cfg.budget_percent / 100;
    if (allowed < set->cfg.min_retry_concurrency)
        allowed = set->cfg.min_retry_concurrency;
    return set->retries_active < allowed;
}

bool veil_wp_bal_retry_start(struct veil_wp_bal_set *set)
{
    if (!veil_wp_bal_may_retry(set)) {
        set->retries_refused++;
        return false;
    }
    set->retries_active++;
    set->retries_total++;
    return true;
}

void veil_wp_bal_retry_done(struct veil_wp_bal_set *set)
{
    VEIL_BUG_ON(set->retries_active == 0);
    if (set->retries_active > 0)
        set->retries_active--;
}

void veil_wp_bal_stats(struct veil_wp_bal_set *set, uint64_t now, struct veil_wp_bal_stats *out)
{
    expire(set, now);
    *out = (struct veil_wp_bal_stats){
        .endpoints = (uint32_t)set->n,
        .ejected_now = set->ejected,
        .active = set->active,
        .retries_active = set->retries_active,
        .ejections_total = set->ejections_total,
        .ejections_overflow = set->ejections_overflow,
        .retries_total = set->retries_total,
        .retries_refused = set->retries_refused,
        .panic_picks = set->panic_picks,
    };
}

/* ---- back-off ---- */

uint64_t veil_wp_bal_backoff_ms(uint64_t base_ms, uint64_t max_ms, uint32_t retry, uint64_t rnd)
{
    if (base_ms == 0)
        base_ms = VEIL_WP_BAL_DEF_BACKOFF_BASE_MS;
    if (max_ms == 0)
        max_ms = base_ms <= UINT64_MAX / VEIL_WP_BAL_DEF_BACKOFF_MAX_FACTOR
                     ? base_ms * VEIL_WP_BAL_DEF_BACKOFF_MAX_FACTOR
                     : UINT64_MAX;
    if (max_ms < base_ms)
        max_ms = base_ms;
    if (retry == 0)
        retry = 1;
    uint64_t window = max_ms;
    if (retry < 64) {
        uint64_t mult = (UINT64_C(1) << retry) - 1;
        if (mult <= max_ms / base_ms)
            window = mult * base_ms;
    }
    return rnd % window;
}
