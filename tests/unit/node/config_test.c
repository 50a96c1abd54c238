/* Tests of src/node/config.c: update application, validation, persistence,
 * lookups and endpoint selection. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "node/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WL(name, ip)                                                                               \
    "{\"key\":\"Workload/default/" name "\",\"kind\":\"Workload\",\"namespace\":\"default\","      \
    "\"name\":\"" name "\",\"spec\":{\"source\":\"Pod\",\"address\":\"" ip "\",\"node\":\"n1\","   \
    "\"serviceAccount\":\"web\",\"identity\":\"spiffe://cluster.local/ns/default/sa/web\","        \
    "\"labels\":{\"app\":\"web\"},\"ports\":{\"http\":8080}}}"

#define EP(name, ip, tp)                                                                           \
    "{\"workload\":\"Workload/default/" name "\",\"address\":\"" ip "\",\"node\":\"n1\","          \
    "\"identity\":\"spiffe://cluster.local/ns/default/sa/web\",\"ports\":[{\"port\":80,"           \
    "\"targetPort\":" tp "}]}"

#define SVC(eps)                                                                                   \
    "{\"key\":\"Service/default/web\",\"kind\":\"Service\",\"namespace\":\"default\","             \
    "\"name\":\"web\",\"spec\":{\"clusterIP\":\"198.19.0.1\",\"ports\":[{\"name\":\"http\","       \
    "\"port\":80,\"targetPort\":\"http\",\"protocol\":\"TCP\"}],\"endpoints\":[" eps "]}}"

#define POLICY(name)                                                                               \
    "{\"key\":\"AuthorizationPolicy/default/" name "\",\"kind\":\"AuthorizationPolicy\","          \
    "\"namespace\":\"default\",\"name\":\"" name "\",\"spec\":{\"action\":\"DENY\"}}"

static int apply(struct veil_node_cfg *cfg, const char *text, char *err)
{
    return veil_node_cfg_apply(cfg, text, strlen(text), NULL, err, 256);
}

static struct in_addr ip(const char *s)
{
    struct in_addr a;
    assert_int_equal(inet_pton(AF_INET, s, &a), 1);
    return a;
}

static const char *full2 = "{\"type\":\"update\",\"version\":5,\"full\":true,\"upserts\":[" WL(
    "web-1",
    "198.18.1.2") "," WL("web-2",
                         "198.18.1.3") "," SVC(EP("web-1", "198.18.1.2",
                                                  "8080") "," EP("web-2", "198.18.1.3",
                                                                 "8081")) "],\"removals\":[]}";

static void snapshot_and_lookups(void **state)
{
    (void)state;
    struct veil_node_cfg cfg;
    char err[256] = "";
    veil_node_cfg_init(&cfg, NULL);
    assert_false(cfg.loaded);
    assert_int_equal(apply(&cfg, full2, err), 0);
    assert_true(cfg.loaded);
    assert_int_equal(cfg.version, 5);
    const struct veil_node_wl *w = veil_node_cfg_wl_by_ip(&cfg, ip("198.18.1.3"));
    assert_non_null(w);
    assert_string_equal(w->name, "web-2");
    assert_string_equal(w->identity, "spiffe://cluster.local/ns/default/sa/web");
    assert_null(veil_node_cfg_wl_by_ip(&cfg, ip("198.18.1.9")));
    struct veil_node_svc *s = veil_node_cfg_svc_by_vip(&cfg, ip("198.19.0.1"));
    assert_non_null(s);
    assert_ptr_equal(s, veil_node_cfg_svc_by_name(&cfg, "default", "web"));
    assert_null(veil_node_cfg_svc_by_name(&cfg, "other", "web"));
    const struct veil_node_ep *ep = veil_node_cfg_ep_by_ip(&cfg, ip("198.18.1.3"));
    assert_non_null(ep);
    assert_string_equal(ep->workload, "Workload/default/web-2");
    assert_null(veil_node_cfg_ep_by_ip(&cfg, ip("198.18.1.9")));
    assert_true(veil_node_svc_has_port(s, 80));
    assert_false(veil_node_svc_has_port(s, 81));
    veil_node_cfg_free(&cfg);
}

static void round_robin(void **state)
{
    (void)state;
    struct veil_node_cfg cfg;
    char err[256] = "";
    veil_node_cfg_init(&cfg, NULL);
    assert_int_equal(apply(&cfg, full2, err), 0);
    struct veil_node_svc *s = veil_node_cfg_svc_by_vip(&cfg, ip("198.19.0.1"));
    uint16_t t1 = 0, t2 = 0, t3 = 0;
    const struct veil_node_ep *a = veil_node_svc_pick(s, 80, &t1);
    const struct veil_node_ep *b = veil_node_svc_pick(s, 80, &t2);
    const struct veil_node_ep *c = veil_node_svc_pick(s, 80, &t3);
    assert_non_null(a);
    assert_non_null(b);
    assert_ptr_not_equal(a, b);
    assert_ptr_equal(a, c);
    assert_int_equal(t1 + t2, 8080 + 8081);
    assert_null(veil_node_svc_pick(s, 443, &t1));
    veil_node_cfg_free(&cfg);
}

static void skips_endpoints_without_address(void **state)
{
    (void)state;
    struct veil_node_cfg cfg;
    char err[256] = "";
    veil_node_cfg_init(&cfg, NULL);
    const char *u = "{\"version\":1,\"full\":true,\"upserts\":[" SVC(
        "{\"workload\":\"Workload/default/a\",\"identity\":\"spiffe://cluster.local/ns/default/sa/"
        "web\",\"ports\":[{\"port\":80,\"targetPort\":1}]}," EP("b", "198.18.1.5", "9000")) "]}";
    assert_int_equal(apply(&cfg, u, err), 0);
    struct veil_node_svc *s = veil_node_cfg_svc_by_name(&cfg, "default", "web");
    for (int i = 0; i < 4; i++) {
        uint16_t t = 0;
        const struct veil_node_ep *e = veil_node_svc_pick(s, 80, &t);
        assert_non_null(e);
        assert_int_equal(t, 9000);
        assert_string_equal(e->workload, "Workload/default/b");
    }
    veil_node_cfg_free(&cfg);
}

static void delta_upsert_and_removal(void **state)
{
    (void)state;
    struct veil_node_cfg cfg;
    char err[256] = "";
    veil_node_cfg_init(&cfg, NULL);
    assert_int_equal(apply(&cfg, full2, err), 0);
    const char *d = "{\"type\":\"update\",\"version\":6,\"full\":false,\"upserts\":[" WL(
        "web-3", "198.18.1.4") "],\"removals\":[\"Workload/default/web-1\"]}";
    uint64_t v = 0;
    assert_int_equal(veil_node_cfg_apply(&cfg, d, strlen(d), &v, err, sizeof(err)), 0);
    assert_int_equal(v, 6);
    assert_null(veil_node_cfg_wl_by_ip(&cfg, ip("198.18.1.2")));
    assert_non_null(veil_node_cfg_wl_by_ip(&cfg, ip("198.18.1.4")));
    assert_non_null(veil_node_cfg_wl_by_ip(&cfg, ip("198.18.1.3")));
    assert_non_null(veil_node_cfg_get(&cfg, "Service/default/web"));
    /* A stale delta is refused and changes nothing. */
    assert_int_equal(apply(&cfg, d, err), -EINVAL);
    assert_non_null(strstr(err, "not newer"));
    assert_int_equal(cfg.version, 6);
    /* A full snapshot replaces everything. */
    const char *f = "{\"version\":7,\"full\":true,\"upserts\":[" WL("x", "198.18.2.1") "]}";
    assert_int_equal(apply(&cfg, f, err), 0);
    assert_null(veil_node_cfg_get(&cfg, "Service/default/web"));
    assert_null(veil_node_cfg_svc_by_vip(&cfg, ip("198.19.0.1")));
    assert_int_equal(cfg.items.n, 1);
    veil_node_cfg_free(&cfg);
}

static void refuses_bad_updates(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "not json",
        "[]",
        "{\"version\":\"x\"}",
        "{\"version\":9,\"upserts\":{}}",
        "{\"version\":9,\"upserts\":[{\"kind\":\"Workload\"}]}",
        "{\"version\":9,\"upserts\":[" WL("w", "300.1.1.1") "]}",
        "{\"version\":9,\"upserts\":[{\"key\":\"Workload/default/w\",\"kind\":\"Workload\","
        "\"namespace\":\"default\",\"name\":\"w\",\"spec\":{\"address\":\"198.18.0.1\"}}]}",
        "{\"version\":9,\"upserts\":[" SVC(EP("a", "198.18.0.1", "0")) "]}",
        "{\"version\":9,\"upserts\":[" SVC(EP("a", "198.18.0.1", "70000")) "]}",
        "{\"version\":9,\"removals\":[1]}",
        "{\"type\":\"hello\",\"version\":9}",
    };
    struct veil_node_cfg cfg;
    veil_node_cfg_init(&cfg, NULL);
    char err[256];
    assert_int_equal(apply(&cfg, full2, err), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(apply(&cfg, bad[i], err), -EINVAL);
        assert_true(err[0] != '\0');
        assert_int_equal(cfg.version, 5);
        assert_int_equal(cfg.items.n, 3);
        assert_non_null(veil_node_cfg_wl_by_ip(&cfg, ip("198.18.1.2")));
    }
    veil_node_cfg_free(&cfg);
}

struct calls {
    int clears, sets, removes;
    int refuse;
};

static int check(void *ctx, const struct veil_node_item *it, char *err, size_t errlen)
{
    struct calls *c = ctx;
    if (c->refuse && strcmp(it->name, "bad") == 0) {
        snprintf(err, errlen, "%s: refused", it->key);
        return -EINVAL;
    }
    return 0;
}

static void policy(void *ctx, const char *key, const struct veil_node_item *it)
{
    struct calls *c = ctx;
    if (key == NULL)
        c->clears++;
    else if (it == NULL)
        c->removes++;
    else
        c->sets++;
}

static void policy_hooks(void **state)
{
    (void)state;
    struct calls calls = {0};
    struct veil_node_cfg_hooks h = {&calls, check, policy};
    struct veil_node_cfg cfg;
    char err[256];
    veil_node_cfg_init(&cfg, &h);
    assert_int_equal(
        apply(&cfg, "{\"version\":1,\"full\":true,\"upserts\":[" POLICY("a") "]}", err), 0);
    assert_int_equal(calls.clears, 1);
    assert_int_equal(calls.sets, 1);
    assert_int_equal(apply(&cfg, "{\"version\":2,\"upserts\":[" POLICY("b") "]}", err), 0);
    assert_int_equal(calls.sets, 2);
    assert_int_equal(
        apply(&cfg, "{\"version\":3,\"removals\":[\"AuthorizationPolicy/default/a\"]}", err), 0);
    assert_int_equal(calls.removes, 1);
    calls.refuse = 1;
    assert_int_equal(apply(&cfg, "{\"version\":4,\"upserts\":[" POLICY("bad") "]}", err), -EINVAL);
    assert_string_equal(err, "AuthorizationPolicy/default/bad: refused");
    assert_int_equal(calls.sets, 2);
    assert_int_equal(cfg.version, 3);
    veil_node_cfg_free(&cfg);
}

static void save_and_load(void **state)
{
    (void)state;
    char dir[] = "/tmp/veil-node-cfg.XXXXXX", path[300], err[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/config.json", dir);
    struct veil_node_cfg a, b;
    veil_node_cfg_init(&a, NULL);
    veil_node_cfg_init(&b, NULL);
    assert_int_equal(veil_node_cfg_load(&b, path, err, sizeof(err)), -ENOENT);
    assert_int_equal(apply(&a, full2, err), 0);
    assert_int_equal(veil_node_cfg_save(&a, path), 0);
    assert_int_equal(veil_node_cfg_load(&b, path, err, sizeof(err)), 0);
    assert_true(b.loaded);
    assert_int_equal(b.version, 5);
    assert_int_equal(b.items.n, 3);
    assert_non_null(veil_node_cfg_svc_by_vip(&b, ip("198.19.0.1")));
    char *da, *db;
    size_t la, lb;
    assert_int_equal(veil_node_cfg_dump(&a, &da, &la), 0);
    assert_int_equal(veil_node_cfg_dump(&b, &db, &lb), 0);
    assert_string_equal(da, db);
    veil_free(da);
    veil_free(db);
    /* A delta after a load continues from the saved version. */
    assert_int_equal(apply(&b, "{\"version\":5,\"upserts\":[]}", err), -EINVAL);
    assert_int_equal(apply(&b, "{\"version\":6,\"upserts\":[]}", err), 0);
    /* A corrupt file is refused and changes nothing. */
    FILE *f = fopen(path, "w");
    fputs("{\"version\":", f);
    fclose(f);
    assert_int_equal(veil_node_cfg_load(&b, path, err, sizeof(err)), -EINVAL);
    assert_int_equal(b.version, 6);
    unlink(path);
    rmdir(dir);
    veil_node_cfg_free(&a);
    veil_node_cfg_free(&b);
}

/* ---- waypoints (CONTRACT A) and routes ---- */

#define WP_ID "spiffe://cluster.local/ns/default/sa/wp"

#define WP_WL                                                                                      \
    "{\"key\":\"Workload/default/wp\",\"kind\":\"Workload\",\"namespace\":\"default\","            \
    "\"name\":\"wp\",\"spec\":{\"source\":\"Pod\",\"address\":\"198.18.1.12\",\"node\":"           \
    "\"wp.default.wp\",\"serviceAccount\":\"wp\",\"identity\":\"" WP_ID "\",\"labels\":{"          \
    "\"gateway.networking.k8s.io/gateway-name\":\"wp\"}}}"

#define WAYPOINT(addr, id)                                                                         \
    "{\"name\":\"wp\",\"namespace\":\"default\",\"address\":\"" addr "\",\"identity\":\"" id       \
    "\",\"workload\":\"Workload/default/wp\"}"

#define SVC_WP(wp)                                                                                 \
    "{\"key\":\"Service/default/web\",\"kind\":\"Service\",\"namespace\":\"default\","             \
    "\"name\":\"web\",\"spec\":{\"clusterIP\":\"198.19.0.1\",\"ports\":[{\"name\":\"http\","       \
    "\"port\":80}],\"endpoints\":[" EP("web-1", "198.18.1.2", "8080") "],\"waypoint\":" wp "}}"

#define ROUTE(kind, name)                                                                          \
    "{\"key\":\"" kind "/default/" name "\",\"kind\":\"" kind "\",\"namespace\":\"default\","      \
    "\"name\":\"" name "\",\"spec\":{\"parentRefs\":[{\"kind\":\"Service\",\"name\":\"web\"}]}}"

static void service_waypoint_parsed(void **state)
{
    (void)state;
    struct veil_node_cfg cfg;
    char err[256] = "";
    veil_node_cfg_init(&cfg, NULL);
    const char *u = "{\"version\":1,\"full\":true,\"upserts\":[" WL(
        "web-1", "198.18.1.2") "," WP_WL "," SVC_WP(WAYPOINT("198.18.1.12", WP_ID)) "]}";
    assert_int_equal(apply(&cfg, u, err), 0);
    const struct veil_node_svc *s = veil_node_cfg_svc_by_vip(&cfg, ip("198.19.0.1"));
    assert_non_null(s);
    assert_true(s->has_waypoint);
    assert_string_equal(s->waypoint.name, "wp");
    assert_string_equal(s->waypoint.ns, "default");
    assert_string_equal(s->waypoint.identity, WP_ID);
    assert_string_equal(s->waypoint.workload, "Workload/default/wp");
    assert_int_equal(s->waypoint.addr.s_addr, ip("198.18.1.12").s_addr);
    /* The waypoint workload is known by its identity; others are not. */
    const struct veil_node_wl *w = veil_node_cfg_waypoint_by_id(&cfg, WP_ID);
    assert_non_null(w);
    assert_string_equal(w->name, "wp");
    assert_string_equal(w->waypoint, "wp");
    assert_null(veil_node_cfg_waypoint_by_id(&cfg, "spiffe://cluster.local/ns/default/sa/web"));
    assert_null(veil_node_cfg_waypoint_by_id(&cfg, NULL));
    assert_null(veil_node_cfg_wl_by_ip(&cfg, ip("198.18.1.2"))->waypoint);
    /* A null waypoint, or none: the Service has none. */
    assert_int_equal(apply(&cfg, "{\"version\":2,\"upserts\":[" SVC_WP("null") "]}", err), 0);
    assert_false(veil_node_cfg_svc_by_vip(&cfg, ip("198.19.0.1"))->has_waypoint);
    assert_int_equal(
        apply(&cfg, "{\"version\":3,\"upserts\":[" SVC(EP("a", "198.18.1.2", "80")) "]}", err), 0);
    assert_false(veil_node_cfg_svc_by_vip(&cfg, ip("198.19.0.1"))->has_waypoint);
    /* The waypoint workload removed: the identity is no longer a waypoint's. */
    assert_int_equal(apply(&cfg, "{\"version\":4,\"removals\":[\"Workload/default/wp\"]}", err), 0);
    assert_null(veil_node_cfg_waypoint_by_id(&cfg, WP_ID));
    assert_false(veil_node_cfg_is_waypoint(&cfg, WP_ID));
    veil_node_cfg_free(&cfg);
}

/* A node that has not the waypoint's workload (it runs on another node)
 * knows the waypoint from the Services that name it. */
static void waypoint_known_from_services(void **state)
{
    (void)state;
    struct veil_node_cfg cfg;
    char err[256] = "";
    veil_node_cfg_init(&cfg, NULL);
    const char *u =
        "{\"version\":1,\"full\":true,\"upserts\":[" SVC_WP(WAYPOINT("198.18.1.12", WP_ID)) "]}";
    assert_int_equal(apply(&cfg, u, err), 0);
    assert_null(veil_node_cfg_waypoint_by_id(&cfg, WP_ID));
    assert_true(veil_node_cfg_is_waypoint(&cfg, WP_ID));
    assert_false(veil_node_cfg_is_waypoint(&cfg, "spiffe://cluster.local/ns/default/sa/web"));
    assert_false(veil_node_cfg_is_waypoint(&cfg, NULL));
    /* the Service no longer uses it */
    assert_int_equal(apply(&cfg, "{\"version\":2,\"upserts\":[" SVC_WP("null") "]}", err), 0);
    assert_false(veil_node_cfg_is_waypoint(&cfg, WP_ID));
    veil_node_cfg_free(&cfg);
}

static void bad_waypoint_refused(void **state)
{
    (void)state;
    static const struct {
        const char *update, *why;
    } bad[] = {
        {"{\"version\":9,\"upserts\":[" SVC_WP("\"wp\"") "]}", "spec.waypoint: not an object"},
        {"{\"version\":9,\"upserts\":[" SVC_WP("{\"name\":1}") "]}",
         "spec.waypoint: not an object"},
        {"{\"version\":9,\"upserts\":[" SVC_WP(
             "{\"namespace\":\"default\",\"address\":\"198.18.1.12\""
             ",\"identity\":\"" WP_ID "\"}") "]}",
         "name and namespace are required"},
        {"{\"version\":9,\"upserts\":[" SVC_WP(WAYPOINT("198.18.1.300", WP_ID)) "]}",
         "spec.waypoint.address: not an IPv4 address"},
        {"{\"version\":9,\"upserts\":[" SVC_WP(WAYPOINT("fd00::1", WP_ID)) "]}",
         "spec.waypoint.address"},
        {"{\"version\":9,\"upserts\":[" SVC_WP(
             "{\"name\":\"wp\",\"namespace\":\"default\",\"identity\":\"" WP_ID "\"}") "]}",
         "spec.waypoint.address"},
        {"{\"version\":9,\"upserts\":[" SVC_WP(WAYPOINT("198.18.1.12", "wp")) "]}",
         "spec.waypoint.identity: not a workload SPIFFE ID"},
        {"{\"version\":9,\"upserts\":[" SVC_WP(
             WAYPOINT("198.18.1.12", "spiffe://cluster.local/veil/node/n1")) "]}",
         "spec.waypoint.identity"},
    };
    struct veil_node_cfg cfg;
    veil_node_cfg_init(&cfg, NULL);
    char err[256];
    assert_int_equal(apply(&cfg, full2, err), 0);
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(apply(&cfg, bad[i].update, err), -EINVAL);
        if (strstr(err, bad[i].why) == NULL || strncmp(err, "Service/default/web: ", 21) != 0)
            fail_msg("case %zu: \"%s\" does not say \"%s\"", i, err, bad[i].why);
        assert_int_equal(cfg.version, 5);
        assert_false(veil_node_cfg_svc_by_vip(&cfg, ip("198.19.0.1"))->has_waypoint);
    }
    veil_node_cfg_free(&cfg);
}

static void route_hooks(void **state)
{
    (void)state;
    /* The same counters for both hooks: one policy and two routes. */
    struct calls pol = {0};
    struct veil_node_cfg_hooks h = {&pol, check, policy};
    struct veil_node_cfg_route_hooks rh = {&pol, check, policy};
    struct veil_node_cfg cfg;
    char err[256];
    veil_node_cfg_init(&cfg, &h);
    veil_node_cfg_set_route_hooks(&cfg, &rh);
    assert_int_equal(apply(&cfg,
                           "{\"version\":1,\"full\":true,\"upserts\":[" ROUTE(
                               "HTTPRoute", "a") "," ROUTE("GRPCRoute", "g") "," POLICY("p") "]}",
                           err),
                     0);
    assert_int_equal(pol.clears, 2); /* the policies' and the routes' */
    assert_int_equal(pol.sets, 3);
    const struct veil_node_item *it = veil_node_cfg_get(&cfg, "HTTPRoute/default/a");
    assert_non_null(it);
    assert_int_equal(it->kind, VEIL_NODE_ROUTE);
    assert_int_equal(veil_node_cfg_get(&cfg, "GRPCRoute/default/g")->kind, VEIL_NODE_ROUTE);
    assert_int_equal(apply(&cfg, "{\"version\":2,\"removals\":[\"GRPCRoute/default/g\"]}", err), 0);
    assert_int_equal(pol.removes, 1);
    /* A route the hook refuses refuses the update. */
    pol.refuse = 1;
    assert_int_equal(
        apply(&cfg, "{\"version\":3,\"upserts\":[" ROUTE("HTTPRoute", "bad") "]}", err), -EINVAL);
    assert_string_equal(err, "HTTPRoute/default/bad: refused");
    assert_int_equal(cfg.version, 2);
    assert_int_equal(pol.sets, 3);
    veil_node_cfg_free(&cfg);
    /* Without route hooks, routes are kept and nobody is told. */
    struct calls only = {0};
    struct veil_node_cfg_hooks h2 = {&only, check, policy};
    veil_node_cfg_init(&cfg, &h2);
    veil_node_cfg_set_route_hooks(&cfg, NULL);
    assert_int_equal(
        apply(&cfg, "{\"version\":1,\"full\":true,\"upserts\":[" ROUTE("HTTPRoute", "a") "]}", err),
        0);
    assert_int_equal(only.sets, 0);
    assert_int_equal(only.clears, 1); /* the policies' only */
    assert_non_null(veil_node_cfg_get(&cfg, "HTTPRoute/default/a"));
    veil_node_cfg_free(&cfg);
}

static void allocation_failures(void **state)
{
    (void)state;
    char err[256];
    for (long n = 0;; n++) {
        struct veil_node_cfg cfg;
        veil_node_cfg_init(&cfg, NULL);
        veil_alloc_fail_after(n);
        int rc = apply(&cfg, full2, err);
        veil_alloc_fail_reset();
        if (rc == 0) {
            assert_int_equal(cfg.items.n, 3);
            veil_node_cfg_free(&cfg);
            break;
        }
        assert_int_equal(rc, -ENOMEM);
        assert_false(cfg.loaded);
        assert_int_equal(cfg.items.n, 0);
        veil_node_cfg_free(&cfg);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(snapshot_and_lookups),
        cmocka_unit_test(round_robin),
        cmocka_unit_test(skips_endpoints_without_address),
        cmocka_unit_test(delta_upsert_and_removal),
        cmocka_unit_test(refuses_bad_updates),
        cmocka_unit_test(policy_hooks),
        cmocka_unit_test(save_and_load),
        cmocka_unit_test(allocation_failures),
        cmocka_unit_test(service_waypoint_parsed),
        cmocka_unit_test(waypoint_known_from_services),
        cmocka_unit_test(bad_waypoint_refused),
        cmocka_unit_test(route_hooks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
