/* Tests of src/waypoint/balance.c: endpoint sets, least-request balancing,
 * outlier detection, retry budget and back-off. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "waypoint/balance.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

enum { MAXN = 32 };

/* n endpoints 10.0.0.1.. :8080, workload "Workload/shop/p<i>". */
struct fixture {
    struct veil_wp_bal_ep_in in[MAXN];
    char wl[MAXN][48], id[MAXN][64];
};

static void fill(struct fixture *f, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        snprintf(f->wl[i], sizeof(f->wl[i]), "Workload/shop/p%zu", i);
        snprintf(f->id[i], sizeof(f->id[i]), "spiffe://cluster.local/ns/shop/sa/p%zu", i);
        f->in[i] = (struct veil_wp_bal_ep_in){
            .addr = {htonl(0x0a000001u + (uint32_t)i)},
            .port = 8080,
            .identity = f->id[i],
            .workload = f->wl[i],
        };
    }
}

static struct veil_wp_bal_set *make(const struct veil_wp_bal_cfg *cfg, struct fixture *f, size_t n)
{
    struct veil_wp_bal_set *set = veil_wp_bal_new(cfg);
    assert_non_null(set);
    fill(f, n);
    assert_int_equal(veil_wp_bal_update(set, f->in, n), 0);
    assert_int_equal(veil_wp_bal_count(set), n);
    return set;
}

/* The set's endpoint i (address order = fixture order). */
static struct veil_wp_bal_ep *ep_at(struct veil_wp_bal_set *set, size_t i)
{
    return (struct veil_wp_bal_ep *)veil_wp_bal_at(set, i);
}

/* k failed attempts (5xx) on ep at `now`. */
static void fail5xx(struct veil_wp_bal_set *set, struct veil_wp_bal_ep *ep, int k, uint64_t now)
{
    for (int i = 0; i < k; i++) {
        veil_wp_bal_start(set, ep);
        veil_wp_bal_done(set, ep, VEIL_WP_BAL_5XX, now);
    }
}

static void succeed(struct veil_wp_bal_set *set, struct veil_wp_bal_ep *ep, uint64_t now)
{
    veil_wp_bal_start(set, ep);
    veil_wp_bal_done(set, ep, VEIL_WP_BAL_OK, now);
}

static struct veil_wp_bal_stats stats(struct veil_wp_bal_set *set, uint64_t now)
{
    struct veil_wp_bal_stats s;
    veil_wp_bal_stats(set, now, &s);
    return s;
}

static void defaults_and_checks(void **state)
{
    (void)state;
    struct veil_wp_bal_cfg c;
    veil_wp_bal_cfg_default(&c);
    assert_int_equal(c.consecutive_5xx, 5);
    assert_int_equal(c.interval_ms, 10000);
    assert_int_equal(c.base_ejection_ms, 30000);
    assert_int_equal(c.max_ejection_ms, 300000);
    assert_int_equal(c.max_ejection_percent, 10);
    assert_int_equal(c.budget_percent, 20);
    assert_int_equal(c.min_retry_concurrency, 3);
    assert_int_equal(veil_wp_bal_cfg_check(&c), 0);
    assert_int_equal(veil_wp_bal_cfg_check(NULL), -EINVAL);
    struct veil_wp_bal_cfg bad = c;
    bad.max_ejection_percent = 101;
    assert_int_equal(veil_wp_bal_cfg_check(&bad), -EINVAL);
    bad = c;
    bad.budget_percent = 101;
    assert_int_equal(veil_wp_bal_cfg_check(&bad), -EINVAL);
    bad = c;
    bad.base_ejection_ms = 0;
    assert_int_equal(veil_wp_bal_cfg_check(&bad), -EINVAL);
    bad = c;
    bad.interval_ms = 0;
    assert_int_equal(veil_wp_bal_cfg_check(&bad), -EINVAL);
    bad = c;
    bad.max_ejection_ms = VEIL_WP_BAL_MAX_EJECTION_MS + 1;
    assert_int_equal(veil_wp_bal_cfg_check(&bad), -EINVAL);
    errno = 0;
    assert_null(veil_wp_bal_new(&bad));
    assert_int_equal(errno, EINVAL);

    assert_int_equal(veil_wp_bal_outcome_of(200), VEIL_WP_BAL_OK);
    assert_int_equal(veil_wp_bal_outcome_of(404), VEIL_WP_BAL_OK);
    assert_int_equal(veil_wp_bal_outcome_of(499), VEIL_WP_BAL_OK);
    assert_int_equal(veil_wp_bal_outcome_of(500), VEIL_WP_BAL_5XX);
    assert_int_equal(veil_wp_bal_outcome_of(503), VEIL_WP_BAL_5XX);
    assert_int_equal(veil_wp_bal_outcome_of(0), VEIL_WP_BAL_LOCAL_FAIL);
    assert_int_equal(veil_wp_bal_outcome_of(-1), VEIL_WP_BAL_LOCAL_FAIL);

    /* An empty set picks nothing; NULL frees nothing. */
    struct veil_wp_bal_set *set = veil_wp_bal_new(NULL);
    assert_non_null(set);
    assert_null(veil_wp_bal_pick(set, 0, 1, 2, NULL));
    assert_null(veil_wp_bal_at(set, 0));
    assert_int_equal(veil_wp_bal_update(set, NULL, 1), -EINVAL);
    assert_int_equal(veil_wp_bal_update(set, NULL, 0), 0);
    assert_int_equal(veil_wp_bal_update(set, (void *)&c, VEIL_WP_BAL_MAX_EPS + 1), -E2BIG);
    veil_wp_bal_free(set);
    veil_wp_bal_free(NULL);
}

/* Of the two random choices, the one with fewer attempts in flight wins,
 * whichever order they were drawn in. */
static void least_request_picks_lighter(void **state)
{
    (void)state;
    struct fixture f;
    struct veil_wp_bal_set *set = make(NULL, &f, 3);
    struct veil_wp_bal_ep *a = ep_at(set, 0), *b = ep_at(set, 1), *c = ep_at(set, 2);
    veil_wp_bal_start(set, a);
    veil_wp_bal_start(set, a);
    veil_wp_bal_start(set, b);
    assert_ptr_equal(veil_wp_bal_pick(set, 0, 0, 1, NULL), b);
    assert_ptr_equal(veil_wp_bal_pick(set, 0, 1, 0, NULL), b);
    assert_ptr_equal(veil_wp_bal_pick(set, 0, 0, 2, NULL), c);
    assert_ptr_equal(veil_wp_bal_pick(set, 0, 5, 3, NULL), c); /* 5 % 3, 3 % 3 */
    /* Random values pick by modulo, even huge ones: 2^64 - 1 = 0 mod 3. */
    assert_ptr_equal(veil_wp_bal_pick(set, 0, UINT64_MAX, UINT64_MAX - 2, NULL), b);
    /* Over many picks, the idle endpoint gets the most. */
    int got[3] = {0};
    for (uint64_t r = 0; r < 9; r++) {
        struct veil_wp_bal_ep *e = veil_wp_bal_pick(set, 0, r / 3, r % 3, NULL);
        got[e == a ? 0 : e == b ? 1 : 2]++;
    }
    assert_int_equal(got[0], 1); /* only when both draws are a */
    assert_int_equal(got[1], 3);
    assert_int_equal(got[2], 5);
    veil_wp_bal_done(set, a, VEIL_WP_BAL_OK, 0);
    veil_wp_bal_done(set, a, VEIL_WP_BAL_OK, 0);
    veil_wp_bal_done(set, b, VEIL_WP_BAL_OK, 0);
    assert_int_equal(stats(set, 0).active, 0);
    veil_wp_bal_free(set);
}

/* On a tie the first draw wins (Envoy); both draws may be the same one. */
static void ties(void **state)
{
    (void)state;
    struct fixture f;
    struct veil_wp_bal_set *set = make(NULL, &f, 2);
    struct veil_wp_bal_ep *a = ep_at(set, 0), *b = ep_at(set, 1);
    assert_ptr_equal(veil_wp_bal_pick(set, 0, 0, 1, NULL), a);
    assert_ptr_equal(veil_wp_bal_pick(set, 0, 1, 0, NULL), b);
    assert_ptr_equal(veil_wp_bal_pick(set, 0, 1, 1, NULL), b);
    veil_wp_bal_start(set, b);
    assert_ptr_equal(veil_wp_bal_pick(set, 0, 1, 1, NULL), b); /* both draws b */
    assert_ptr_equal(veil_wp_bal_pick(set, 0, 1, 0, NULL), a);
    veil_wp_bal_start(set, a);
    assert_ptr_equal(veil_wp_bal_pick(set, 0, 1, 0, NULL), b);
    veil_wp_bal_done(set, a, VEIL_WP_BAL_CANCEL, 0);
    veil_wp_bal_done(set, b, VEIL_WP_BAL_CANCEL, 0);
    veil_wp_bal_free(set);
}

/* N consecutive 5xx or local failures eject; a success in between resets
 * the count; a cancelled attempt neither counts nor resets. */
static void ejection_after_consecutive_failures(void **state)
{
    (void)state;
    struct fixture f;
    struct veil_wp_bal_set *set = make(NULL, &f, 3);
    struct veil_wp_bal_ep *a = ep_at(set, 0);
    fail5xx(set, a, 4, 100);
    succeed(set, a, 100);
    fail5xx(set, a, 4, 100);
    assert_false(veil_wp_bal_ep_ejected(a));
    veil_wp_bal_start(set, a);
    veil_wp_bal_done(set, a, VEIL_WP_BAL_CANCEL, 100);
    assert_false(veil_wp_bal_ep_ejected(a));
    veil_wp_bal_start(set, a);
    veil_wp_bal_done(set, a, VEIL_WP_BAL_LOCAL_FAIL, 100); /* the 5th in a row */
    assert_true(veil_wp_bal_ep_ejected(a));
    struct veil_wp_bal_stats s = stats(set, 100);
    assert_int_equal(s.ejected_now, 1);
    assert_int_equal(s.ejections_total, 1);
    assert_int_equal(s.endpoints, 3);

    /* consecutive_5xx = 0: never ejects. */
    struct veil_wp_bal_cfg c;
    veil_wp_bal_cfg_default(&c);
    c.consecutive_5xx = 0;
    struct fixture g;
    struct veil_wp_bal_set *off = make(&c, &g, 2);
    fail5xx(off, ep_at(off, 0), 50, 0);
    assert_false(veil_wp_bal_ep_ejected(ep_at(off, 0)));
    assert_int_equal(stats(off, 0).ejections_total, 0);
    veil_wp_bal_free(off);
    veil_wp_bal_free(set);
}

/* The pick never returns an ejected endpoint while a healthy one is left,
 * whatever the random draws. */
static void ejected_endpoints_skipped(void **state)
{
    (void)state;
    struct fixture f;
    struct veil_wp_bal_set *set = make(NULL, &f, 3);
    struct veil_wp_bal_ep *b = ep_at(set, 1);
    fail5xx(set, b, 5, 0);
    assert_true(veil_wp_bal_ep_ejected(b));
    for (uint64_t r1 = 0; r1 < 6; r1++)
        for (uint64_t r2 = 0; r2 < 6; r2++)
            assert_ptr_not_equal(veil_wp_bal_pick(set, 1000, r1, r2, NULL), b);
    assert_int_equal(stats(set, 1000).panic_picks, 0);
    /* Back when its time is up (30 s), and picked again. */
    assert_true(veil_wp_bal_pick(set, 29999, 1, 1, NULL) != b);
    assert_ptr_equal(veil_wp_bal_pick(set, 30000, 1, 1, NULL), b);
    assert_false(veil_wp_bal_ep_ejected(b));
    assert_int_equal(stats(set, 30000).ejected_now, 0);
    veil_wp_bal_free(set);
}

/* A retry avoids the endpoint that just failed, unless it is the only
 * healthy one. */
static void retry_avoids_failed_endpoint(void **state)
{
    (void)state;
    struct fixture f;
    struct veil_wp_bal_set *set = make(NULL, &f, 3);
    struct veil_wp_bal_ep *a = ep_at(set, 0), *b = ep_at(set, 1), *c = ep_at(set, 2);
    for (uint64_t r = 0; r < 4; r++)
        assert_ptr_not_equal(veil_wp_bal_pick(set, 0, r, r, a), a);
    fail5xx(set, b, 5, 0);
    assert_ptr_equal(veil_wp_bal_pick(set, 0, 0, 1, a), c);
    /* Only a healthy, avoided: still a, not the ejected b. */
    struct veil_wp_bal_cfg cfg;
    veil_wp_bal_cfg_default(&cfg);
    cfg.max_ejection_percent = 100;
    struct fixture g;
    struct veil_wp_bal_set *s2 = make(&cfg, &g, 2);
    fail5xx(s2, ep_at(s2, 1), 5, 0);
    assert_ptr_equal(veil_wp_bal_pick(s2, 0, 0, 1, ep_at(s2, 0)), ep_at(s2, 0));
    assert_int_equal(stats(s2, 0).panic_picks, 0);
    /* Both ejected (panic): the other one, though ejected. */
    fail5xx(s2, ep_at(s2, 0), 5, 0);
    assert_ptr_equal(veil_wp_bal_pick(s2, 0, 0, 1, ep_at(s2, 0)), ep_at(s2, 1));
    assert_int_equal(stats(s2, 0).panic_picks, 1);
    veil_wp_bal_free(s2);
    veil_wp_bal_free(set);
}

/* Each ejection lasts base x the times ejected, up to max_ejection_ms; the
 * multiplier loses one per interval the endpoint stays back. */
static void ejection_time_growth(void **state)
{
    (void)state;
    struct fixture f;
    struct veil_wp_bal_set *set = make(NULL, &f, 2);
    struct veil_wp_bal_ep *a = ep_at(set, 0);
    uint64_t t = 1000;
    fail5xx(set, a, 5, t);
    assert_true(veil_wp_bal_ep_ejected(a));
    assert_int_equal(stats(set, t + 29999).ejected_now, 1);
    assert_int_equal(stats(set, t + 30000).ejected_now, 0);
    t += 30000;
    fail5xx(set, a, 5, t); /* right away: twice as long */
    assert_int_equal(stats(set, t + 59999).ejected_now, 1);
    assert_int_equal(stats(set, t + 60000).ejected_now, 0);
    t += 60000;
    fail5xx(set, a, 5, t + 5000); /* back less than an interval: 3 x */
    assert_int_equal(stats(set, t + 5000 + 89999).ejected_now, 1);
    assert_int_equal(stats(set, t + 5000 + 90000).ejected_now, 0);
    t += 5000 + 90000;
    /* Two intervals back: 3 - 2 = 1, then 2 x. */
    fail5xx(set, a, 5, t + 20000);
    assert_int_equal(stats(set, t + 20000 + 59999).ejected_now, 1);
    assert_int_equal(stats(set, t + 20000 + 60000).ejected_now, 0);
    t += 20000 + 60000;
    /* Long healthy: back to 1 x. */
    fail5xx(set, a, 5, t + 3600000);
    assert_int_equal(stats(set, t + 3600000 + 29999).ejected_now, 1);
    assert_int_equal(stats(set, t + 3600000 + 30000).ejected_now, 0);
    assert_int_equal(stats(set, t + 3600000 + 30000).ejections_total, 5);
    veil_wp_bal_free(set);

    /* The cap: base 100 ms, max 250 ms -> 100, 200, 250, 250. */
    struct veil_wp_bal_cfg c;
    veil_wp_bal_cfg_default(&c);
    c.base_ejection_ms = 100;
    c.max_ejection_ms = 250;
    set = make(&c, &f, 2);
    a = ep_at(set, 0);
    t = 0;
    static const uint64_t want[] = {100, 200, 250, 250, 250};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        fail5xx(set, a, 5, t);
        assert_int_equal(stats(set, t + want[i] - 1).ejected_now, 1);
        assert_int_equal(stats(set, t + want[i]).ejected_now, 0);
        t += want[i];
    }
    veil_wp_bal_free(set);
}

/* At most max_ejection_percent of the endpoints are ejected at once, but
 * always at least one; refusals are counted. */
static void max_ejection_percent(void **state)
{
    (void)state;
    struct fixture f;
    struct veil_wp_bal_set *set = make(NULL, &f, 10); /* 10 %: one of 10 */
    fail5xx(set, ep_at(set, 0), 5, 0);
    fail5xx(set, ep_at(set, 1), 5, 0);
    assert_true(veil_wp_bal_ep_ejected(ep_at(set, 0)));
    assert_false(veil_wp_bal_ep_ejected(ep_at(set, 1)));
    struct veil_wp_bal_stats s = stats(set, 0);
    assert_int_equal(s.ejected_now, 1);
    assert_int_equal(s.ejections_overflow, 1);
    /* The refused one needs another 5 in a row to try again. */
    fail5xx(set, ep_at(set, 1), 4, 0);
    assert_int_equal(stats(set, 0).ejections_overflow, 1);
    fail5xx(set, ep_at(set, 1), 1, 0);
    assert_int_equal(stats(set, 0).ejections_overflow, 2);
    /* Once the first is back, the second may go. */
    fail5xx(set, ep_at(set, 1), 5, 30000);
    assert_false(veil_wp_bal_ep_ejected(ep_at(set, 0)));
    assert_true(veil_wp_bal_ep_ejected(ep_at(set, 1)));
    veil_wp_bal_free(set);

    set = make(NULL, &f, 20); /* 10 % of 20: two */
    for (size_t i = 0; i < 3; i++)
        fail5xx(set, ep_at(set, i), 5, 0);
    s = stats(set, 0);
    assert_int_equal(s.ejected_now, 2);
    assert_int_equal(s.ejections_overflow, 1);
    veil_wp_bal_free(set);

    struct veil_wp_bal_cfg c;
    veil_wp_bal_cfg_default(&c);
    c.max_ejection_percent = 50;
    set = make(&c, &f, 4); /* 50 %: two of 4 */
    for (size_t i = 0; i < 4; i++)
        fail5xx(set, ep_at(set, i), 5, 0);
    s = stats(set, 0);
    assert_int_equal(s.ejected_now, 2);
    assert_int_equal(s.ejections_total, 2);
    assert_int_equal(s.ejections_overflow, 2);
    veil_wp_bal_free(set);
}

/* With every endpoint ejected the pick still answers (panic mode: among
 * all), and counts it. */
static void all_ejected_still_returns_one(void **state)
{
    (void)state;
    struct fixture f;
    struct veil_wp_bal_set *set = make(NULL, &f, 1);
    struct veil_wp_bal_ep *a = ep_at(set, 0);
    fail5xx(set, a, 5, 0); /* the single endpoint: "at least one" */
    assert_true(veil_wp_bal_ep_ejected(a));
    assert_ptr_equal(veil_wp_bal_pick(set, 10, 7, 9, NULL), a);
    assert_ptr_equal(veil_wp_bal_pick(set, 10, 7, 9, a), a);
    assert_int_equal(stats(set, 10).panic_picks, 2);
    /* A failure while ejected changes nothing. */
    fail5xx(set, a, 5, 10);
    assert_int_equal(stats(set, 10).ejections_total, 1);
    veil_wp_bal_free(set);

    struct veil_wp_bal_cfg c;
    veil_wp_bal_cfg_default(&c);
    c.max_ejection_percent = 100;
    set = make(&c, &f, 3);
    for (size_t i = 0; i < 3; i++)
        fail5xx(set, ep_at(set, i), 5, 0);
    assert_int_equal(stats(set, 0).ejected_now, 3);
    veil_wp_bal_start(set, ep_at(set, 0));
    assert_ptr_equal(veil_wp_bal_pick(set, 0, 0, 1, NULL), ep_at(set, 1)); /* least request */
    veil_wp_bal_done(set, ep_at(set, 0), VEIL_WP_BAL_OK, 0);
    veil_wp_bal_free(set);
}

/* An update keeps the state of the endpoints still listed (same pointer),
 * starts new ones fresh, forgets removed ones; a removed endpoint with an
 * attempt in flight lives until that attempt ends. */
static void churn_keeps_survivors(void **state)
{
    (void)state;
    struct fixture f;
    struct veil_wp_bal_cfg c;
    veil_wp_bal_cfg_default(&c);
    c.max_ejection_percent = 100;
    struct veil_wp_bal_set *set = make(&c, &f, 3);
    struct veil_wp_bal_ep *a = ep_at(set, 0), *b = ep_at(set, 1), *cc = ep_at(set, 2);
    veil_wp_bal_start(set, a); /* in flight on a, which goes */
    veil_wp_bal_start(set, b);
    veil_wp_bal_start(set, b);
    fail5xx(set, b, 3, 0);  /* b: 3 failures in a row */
    fail5xx(set, cc, 5, 0); /* c: ejected, goes */
    assert_int_equal(stats(set, 0).ejected_now, 1);

    /* New list: a new pod d, then b (with a new identity), then b again. */
    struct veil_wp_bal_ep_in in[3];
    in[0] = (struct veil_wp_bal_ep_in){.addr = {htonl(0x0a000063)},
                                       .port = 8080,
                                       .identity = "spiffe://x/ns/shop/sa/d",
                                       .workload = "Workload/shop/d"};
    in[1] = f.in[1];
    in[1].identity = "spiffe://x/ns/shop/sa/renamed";
    in[2] = f.in[1];
    assert_int_equal(veil_wp_bal_update(set, in, 3), 0);
    assert_int_equal(veil_wp_bal_count(set), 2);
    assert_ptr_equal(ep_at(set, 0), b); /* 10.0.0.2 before 10.0.0.99 */
    struct veil_wp_bal_ep *d = ep_at(set, 1);
    assert_string_equal(b->identity, "spiffe://x/ns/shop/sa/renamed");
    assert_string_equal(d->workload, "Workload/shop/d");
    assert_int_equal(veil_wp_bal_ep_active(b), 2);
    assert_int_equal(veil_wp_bal_ep_active(d), 0);
    struct veil_wp_bal_stats s = stats(set, 0);
    assert_int_equal(s.endpoints, 2);
    assert_int_equal(s.ejected_now, 0); /* c left */
    assert_int_equal(s.ejections_total, 1);
    assert_int_equal(s.active, 3); /* a's attempt still counts */
    /* b kept its count: 2 more failures eject it. */
    fail5xx(set, b, 2, 0);
    assert_true(veil_wp_bal_ep_ejected(b));
    /* a's attempt ends after a left: a is freed (ASan checks). */
    veil_wp_bal_done(set, a, VEIL_WP_BAL_5XX, 0);
    assert_int_equal(stats(set, 0).active, 2);
    /* Same address and port, another workload: another endpoint. */
    struct veil_wp_bal_ep_in in2[2] = {f.in[1], in[0]};
    in2[0].workload = "Workload/shop/other";
    assert_int_equal(veil_wp_bal_update(set, in2, 2), 0);
    assert_ptr_not_equal(ep_at(set, 0), b); /* b left with 2 in flight */
    assert_false(veil_wp_bal_ep_ejected(ep_at(set, 0)));
    assert_ptr_equal(ep_at(set, 1), d);
    veil_wp_bal_done(set, b, VEIL_WP_BAL_OK, 0);
    veil_wp_bal_done(set, b, VEIL_WP_BAL_OK, 0);
    assert_int_equal(stats(set, 0).active, 0);
    /* No workload key: address and port alone; duplicates listed once. */
    struct veil_wp_bal_ep_in bare[3] = {
        {.addr = {htonl(0x0a000005)}, .port = 80},
        {.addr = {htonl(0x0a000005)}, .port = 80},
        {.addr = {htonl(0x0a000005)}, .port = 81},
    };
    assert_int_equal(veil_wp_bal_update(set, bare, 3), 0);
    assert_int_equal(veil_wp_bal_count(set), 2);
    struct veil_wp_bal_ep *p80 = ep_at(set, 0);
    assert_string_equal(p80->identity, "");
    assert_string_equal(p80->workload, "");
    assert_int_equal(p80->port, 80);
    veil_wp_bal_start(set, p80);
    assert_int_equal(veil_wp_bal_update(set, bare, 1), 0);
    assert_ptr_equal(ep_at(set, 0), p80);
    assert_int_equal(veil_wp_bal_count(set), 1);
    /* Freed with an attempt still in flight on a removed endpoint. */
    assert_int_equal(veil_wp_bal_update(set, NULL, 0), 0);
    assert_null(veil_wp_bal_pick(set, 0, 0, 0, NULL));
    veil_wp_bal_free(set);
}

/* The budget allows min_retry_concurrency retries at once, and more as
 * budget_percent of the attempts in flight grows past it. */
static void retry_budget(void **state)
{
    (void)state;
    struct fixture f;
    struct veil_wp_bal_set *set = make(NULL, &f, 2);
    struct veil_wp_bal_ep *a = ep_at(set, 0);
    for (int i = 0; i < 3; i++)
        assert_true(veil_wp_bal_retry_start(set));
    assert_false(veil_wp_bal_may_retry(set));
    assert_false(veil_wp_bal_retry_start(set));
    struct veil_wp_bal_stats s = stats(set, 0);
    assert_int_equal(s.retries_active, 3);
    assert_int_equal(s.retries_total, 3);
    assert_int_equal(s.retries_refused, 1);
    veil_wp_bal_retry_done(set);
    assert_true(veil_wp_bal_may_retry(set));
    assert_true(veil_wp_bal_retry_start(set));

    /* 20 in flight: 20 % = 4 retries. */
    for (int i = 0; i < 20; i++)
        veil_wp_bal_start(set, a);
    assert_true(veil_wp_bal_retry_start(set));
    assert_false(veil_wp_bal_retry_start(set));
    /* 100 in flight: 20. */
    for (int i = 0; i < 80; i++)
        veil_wp_bal_start(set, a);
    int more = 0;
    while (veil_wp_bal_retry_start(set))
        more++;
    assert_int_equal(more, 16);
    s = stats(set, 0);
    assert_int_equal(s.retries_active, 20);
    assert_int_equal(s.retries_total, 21);
    assert_int_equal(s.retries_refused, 3);
    for (int i = 0; i < 100; i++)
        veil_wp_bal_done(set, a, VEIL_WP_BAL_CANCEL, 0);
    for (int i = 0; i < 20; i++)
        veil_wp_bal_retry_done(set);
    assert_int_equal(stats(set, 0).retries_active, 0);
    veil_wp_bal_free(set);

    /* budget 0 %, min 0: no retries at all. */
    struct veil_wp_bal_cfg c;
    veil_wp_bal_cfg_default(&c);
    c.budget_percent = 0;
    c.min_retry_concurrency = 0;
    set = veil_wp_bal_new(&c);
    assert_non_null(set);
    assert_false(veil_wp_bal_retry_start(set));
    veil_wp_bal_free(set);
}

/* Envoy's fully jittered exponential back-off: retry n waits
 * rnd % min((2^n - 1) x base, max). */
static void backoff_bounds(void **state)
{
    (void)state;
    /* Defaults: base 25, max 250. */
    assert_int_equal(veil_wp_bal_backoff_ms(0, 0, 1, 24), 24);
    assert_int_equal(veil_wp_bal_backoff_ms(0, 0, 1, 25), 0);
    assert_int_equal(veil_wp_bal_backoff_ms(0, 0, 0, 24), 24); /* retry 0 = 1 */
    assert_int_equal(veil_wp_bal_backoff_ms(0, 0, 2, 74), 74);
    assert_int_equal(veil_wp_bal_backoff_ms(0, 0, 2, 75), 0);
    assert_int_equal(veil_wp_bal_backoff_ms(0, 0, 3, 174), 174);
    assert_int_equal(veil_wp_bal_backoff_ms(0, 0, 4, 249), 249); /* 375 capped at 250 */
    assert_int_equal(veil_wp_bal_backoff_ms(0, 0, 4, 250), 0);
    static const uint64_t rnds[] = {0, 1, 12345, 0xdeadbeef, UINT64_MAX / 3, UINT64_MAX};
    for (uint32_t retry = 0; retry < 80; retry++) {
        for (size_t i = 0; i < sizeof(rnds) / sizeof(rnds[0]); i++) {
            assert_true(veil_wp_bal_backoff_ms(0, 0, retry, rnds[i]) < 250);
            assert_true(veil_wp_bal_backoff_ms(100, 0, retry, rnds[i]) < 1000);
            assert_true(veil_wp_bal_backoff_ms(100, 300, retry, rnds[i]) < 300);
            uint64_t win = retry <= 1 ? 100 : retry == 2 ? 300 : retry == 3 ? 700 : 1000;
            assert_true(veil_wp_bal_backoff_ms(100, 0, retry, rnds[i]) < win);
        }
    }
    assert_int_equal(veil_wp_bal_backoff_ms(100, 0, 5, 999), 999);
    /* max below base counts as base; huge bases do not overflow. */
    assert_int_equal(veil_wp_bal_backoff_ms(50, 10, 3, 49), 49);
    assert_int_equal(veil_wp_bal_backoff_ms(50, 10, 3, 50), 0);
    assert_true(veil_wp_bal_backoff_ms(UINT64_MAX / 2, 0, 63, UINT64_MAX - 1) < UINT64_MAX);
}

/* Every allocation of an update may fail: -ENOMEM and the set unchanged. */
static void allocation_failures(void **state)
{
    (void)state;
    struct fixture f;
    fill(&f, 6);
    struct veil_wp_bal_set *set = NULL;
    for (long k = 0; set == NULL; k++) {
        veil_alloc_fail_after(k);
        set = veil_wp_bal_new(NULL);
        veil_alloc_fail_reset();
    }
    assert_int_equal(veil_wp_bal_update(set, f.in, 4), 0);
    struct veil_wp_bal_ep *kept = ep_at(set, 2);
    veil_wp_bal_start(set, kept);
    /* New list: 2..5, with a new identity for 2. */
    struct veil_wp_bal_ep_in in[4] = {f.in[2], f.in[3], f.in[4], f.in[5]};
    in[0].identity = "spiffe://x/new";
    int rc = -ENOMEM;
    long k;
    for (k = 0; rc != 0; k++) {
        veil_alloc_fail_after(k);
        rc = veil_wp_bal_update(set, in, 4);
        veil_alloc_fail_reset();
        if (rc != 0) {
            assert_int_equal(rc, -ENOMEM);
            assert_int_equal(veil_wp_bal_count(set), 4);
            assert_ptr_equal(ep_at(set, 2), kept);
            assert_string_equal(kept->identity, f.id[2]);
        }
    }
    assert_true(k > 5);
    assert_int_equal(veil_wp_bal_count(set), 4);
    assert_ptr_equal(ep_at(set, 0), kept);
    assert_string_equal(kept->identity, "spiffe://x/new");
    veil_wp_bal_done(set, kept, VEIL_WP_BAL_OK, 0);
    veil_wp_bal_free(set);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults_and_checks),
        cmocka_unit_test(least_request_picks_lighter),
        cmocka_unit_test(ties),
        cmocka_unit_test(ejection_after_consecutive_failures),
        cmocka_unit_test(ejected_endpoints_skipped),
        cmocka_unit_test(retry_avoids_failed_endpoint),
        cmocka_unit_test(ejection_time_growth),
        cmocka_unit_test(max_ejection_percent),
        cmocka_unit_test(all_ejected_still_returns_one),
        cmocka_unit_test(churn_keeps_survivors),
        cmocka_unit_test(retry_budget),
        cmocka_unit_test(backoff_bounds),
        cmocka_unit_test(allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
