#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "control/store.h"
#include "control/view.h"
#include "core/alloc.h"
#include "core/conf.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void apply(struct veil_store *s, const char *text)
{
    struct veil_conf *c = NULL;
    struct veil_conf_err err;
    if (veil_conf_parse_yaml(&c, text, strlen(text), "t.yaml", &err) != 0)
        fail_msg("yaml: %d: %s", err.line, err.msg);
    if (veil_store_apply(s, &c, 1, NULL, &err) != 0)
        fail_msg("apply: %d: %s", err.line, err.msg);
    veil_conf_free(c);
}

static void del(struct veil_store *s, const char *id)
{
    assert_int_equal(veil_store_delete(s, &id, 1, NULL, NULL), 0);
}

#define SVC(name, sel)                                                                             \
    "apiVersion: v1\nkind: Service\nmetadata: {name: " name "}\nspec:\n  selector: {app: " sel     \
    "}\n  ports: [{name: http, port: 80, targetPort: http}, {name: raw, port: 81, targetPort: "    \
    "9000}]\n"
#define POD_NS(ns, name, app, node, ip)                                                            \
    "apiVersion: v1\nkind: Pod\nmetadata: {name: " name ", namespace: " ns ", labels: {app: " app  \
    "}}\nspec:\n  nodeName: " node "\n  serviceAccountName: sa-" app "\n  containers: [{name: "    \
    "c, ports: [{name: http, containerPort: 8080}]}]\nstatus: {podIP: " ip "}\n"
#define POD(name, app, node, ip) POD_NS("default", name, app, node, ip)
#define POLICY(ns, name)                                                                           \
    "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: " name          \
    ", namespace: " ns "}\nspec: {action: DENY, rules: [{from: [{source: {namespaces: [x]}}]}]}\n"

/* A parsed update: keys of upserts and removals. */
struct upd {
    json_t *root;
    uint64_t version;
    bool full;
};

static struct upd parse_update(char *text)
{
    struct upd u = {0};
    assert_non_null(text);
    json_error_t je;
    u.root = json_loads(text, 0, &je);
    if (u.root == NULL)
        fail_msg("bad JSON: %s: %s", je.text, text);
    assert_string_equal(json_string_value(json_object_get(u.root, "type")), "update");
    u.version = (uint64_t)json_integer_value(json_object_get(u.root, "version"));
    u.full = json_is_true(json_object_get(u.root, "full"));
    veil_free(text);
    return u;
}

static json_t *upsert(const struct upd *u, const char *key)
{
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(u->root, "upserts"), i, it)
    {
        if (strcmp(json_string_value(json_object_get(it, "key")), key) == 0)
            return it;
    }
    return NULL;
}

static bool removed(const struct upd *u, const char *key)
{
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(u->root, "removals"), i, it)
    {
        if (strcmp(json_string_value(it), key) == 0)
            return true;
    }
    return false;
}

static size_t nupserts(const struct upd *u)
{
    return json_array_size(json_object_get(u->root, "upserts"));
}

static size_t nremovals(const struct upd *u)
{
    return json_array_size(json_object_get(u->root, "removals"));
}

struct fx {
    struct veil_store *s;
    struct veil_views *v;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct veil_store_opts o = {.service_cidr = "198.19.0.0/16"};
    assert_int_equal(veil_store_open(&f->s, &o, NULL), 0);
    apply(
        f->s,
        SVC("web", "web") "---\n" POD("web-1", "web", "n1", "10.0.0.1") "---\n" POD("web-2", "web", "n2", "10.0.0.2") "---\n" POD(
            "db-1", "db", "n2",
            "10.0.0.3") "---\n" POD_NS("other", "web-x", "web", "n3",
                                       "10.0.9.9") "---\n" POLICY("istio-system",
                                                                  "root") "---\n" POLICY("default",
                                                                                         "deny") "-"
                                                                                                 "-"
                                                                                                 "-"
                                                                                                 "\n" POLICY(
                                                                                                     "other",
                                                                                                     "o"));
    struct veil_views_opts vo = {.node_log_max = 64};
    f->v = veil_views_new(f->s, &vo);
    assert_non_null(f->v);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    veil_views_free(f->v);
    veil_store_free(f->s);
    free(f);
    return 0;
}

static void test_node_view(void **state)
{
    struct fx *f = *state;
    struct veil_view_sub *sub;
    char *json;
    assert_int_equal(veil_view_subscribe(f->v, "n1", 0, false, &sub, &json), 0);
    struct upd u = parse_update(json);
    assert_true(u.full);
    assert_int_equal(u.version, veil_store_version(f->s));
    assert_non_null(upsert(&u, "Workload/default/web-1"));
    assert_null(upsert(&u, "Workload/default/web-2"));
    assert_null(upsert(&u, "Workload/other/web-x"));
    assert_non_null(upsert(&u, "AuthorizationPolicy/istio-system/root"));
    assert_non_null(upsert(&u, "AuthorizationPolicy/default/deny"));
    assert_null(upsert(&u, "AuthorizationPolicy/other/o"));
    assert_int_equal(nupserts(&u), 4); /* workload, service, two policies */
    /* The service: endpoints in its namespace only, named targetPort resolved. */
    json_t *svc = json_object_get(upsert(&u, "Service/default/web"), "spec");
    assert_string_equal(json_string_value(json_object_get(svc, "clusterIP")), "198.19.0.1");
    json_t *eps = json_object_get(svc, "endpoints");
    assert_int_equal(json_array_size(eps), 2);
    json_t *e0 = json_array_get(eps, 0);
    assert_string_equal(json_string_value(json_object_get(e0, "address")), "10.0.0.1");
    assert_string_equal(json_string_value(json_object_get(e0, "node")), "n1");
    assert_string_equal(json_string_value(json_object_get(e0, "identity")),
                        "spiffe://cluster.local/ns/default/sa/sa-web");
    json_t *p0 = json_array_get(json_object_get(e0, "ports"), 0);
    assert_int_equal(json_integer_value(json_object_get(p0, "port")), 80);
    assert_int_equal(json_integer_value(json_object_get(p0, "targetPort")), 8080);
    json_t *p1 = json_array_get(json_object_get(e0, "ports"), 1);
    assert_int_equal(json_integer_value(json_object_get(p1, "targetPort")), 9000);
    json_t *w = json_object_get(upsert(&u, "Workload/default/web-1"), "spec");
    assert_string_equal(json_string_value(json_object_get(w, "identity")),
                        "spiffe://cluster.local/ns/default/sa/sa-web");
    json_decref(u.root);
    /* Nothing changed: nothing to send. */
    assert_int_equal(veil_view_poll(sub, &json), 0);
    assert_null(json);
    /* n3 has a workload in "other" only. */
    struct veil_view_sub *s3;
    assert_int_equal(veil_view_subscribe(f->v, "n3", 0, false, &s3, &json), 0);
    u = parse_update(json);
    assert_non_null(upsert(&u, "AuthorizationPolicy/other/o"));
    assert_null(upsert(&u, "AuthorizationPolicy/default/deny"));
    json_decref(u.root);
    veil_view_unsubscribe(s3);
    veil_view_unsubscribe(sub);
}

static void test_deltas_reach_right_nodes(void **state)
{
    struct fx *f = *state;
    struct veil_view_sub *s1, *s2, *s3;
    char *json;
    assert_int_equal(veil_view_subscribe(f->v, "n1", 0, false, &s1, &json), 0);
    veil_free(json);
    assert_int_equal(veil_view_subscribe(f->v, "n2", 0, false, &s2, &json), 0);
    veil_free(json);
    assert_int_equal(veil_view_subscribe(f->v, "n3", 0, false, &s3, &json), 0);
    veil_free(json);
    uint64_t v0 = veil_store_version(f->s);

    /* web-2 (n2) leaves the service by a label change. */
    apply(f->s, POD("web-2", "api", "n2", "10.0.0.2"));
    assert_int_equal(veil_view_poll(s1, &json), 0);
    struct upd u = parse_update(json);
    assert_false(u.full);
    assert_true(u.version > v0);
    assert_int_equal(nupserts(&u), 1); /* the service only */
    json_t *eps =
        json_object_get(json_object_get(upsert(&u, "Service/default/web"), "spec"), "endpoints");
    assert_int_equal(json_array_size(eps), 1);
    json_decref(u.root);
    assert_int_equal(veil_view_poll(s2, &json), 0);
    u = parse_update(json);
    assert_int_equal(nupserts(&u), 2); /* the service and its own workload */
    assert_non_null(upsert(&u, "Workload/default/web-2"));
    json_decref(u.root);
    assert_int_equal(veil_view_poll(s3, &json), 0);
    u = parse_update(json);
    assert_int_equal(nupserts(&u), 1);
    json_decref(u.root);
    assert_int_equal(veil_view_poll(s1, &json), 0);
    assert_null(json);

    /* A policy in "default": n1, n2 get it; n3 (no workload there) does not. */
    apply(f->s, POLICY("default", "deny2"));
    assert_int_equal(veil_view_poll(s1, &json), 0);
    u = parse_update(json);
    assert_non_null(upsert(&u, "AuthorizationPolicy/default/deny2"));
    json_decref(u.root);
    assert_int_equal(veil_view_poll(s3, &json), 0);
    assert_null(json);
    assert_int_equal(veil_view_poll(s2, &json), 0);
    veil_free(json);

    /* The only "default" workload of n1 moves to n3: n1 loses the workload and
     * the default policies; n3 gains them. */
    apply(f->s, POD("web-1", "web", "n3", "10.0.0.1"));
    assert_int_equal(veil_view_poll(s1, &json), 0);
    u = parse_update(json);
    assert_true(removed(&u, "Workload/default/web-1"));
    assert_true(removed(&u, "AuthorizationPolicy/default/deny"));
    assert_true(removed(&u, "AuthorizationPolicy/default/deny2"));
    assert_int_equal(nremovals(&u), 3);
    assert_non_null(upsert(&u, "Service/default/web")); /* its endpoint's node changed */
    json_decref(u.root);
    assert_int_equal(veil_view_poll(s3, &json), 0);
    u = parse_update(json);
    assert_non_null(upsert(&u, "Workload/default/web-1"));
    assert_non_null(upsert(&u, "AuthorizationPolicy/default/deny"));
    assert_non_null(upsert(&u, "AuthorizationPolicy/default/deny2"));
    json_decref(u.root);
    assert_int_equal(veil_view_poll(s2, &json), 0);
    u = parse_update(json);
    assert_int_equal(nupserts(&u), 1);
    assert_int_equal(nremovals(&u), 0);
    json_decref(u.root);

    /* Delete: a removal. */
    del(f->s, "Service/default/web");
    assert_int_equal(veil_view_poll(s2, &json), 0);
    u = parse_update(json);
    assert_true(removed(&u, "Service/default/web"));
    json_decref(u.root);
    veil_view_unsubscribe(s1);
    veil_view_unsubscribe(s2);
    veil_view_unsubscribe(s3);
}

static void test_resume(void **state)
{
    struct fx *f = *state;
    struct veil_view_sub *s;
    char *json;
    assert_int_equal(veil_view_subscribe(f->v, "n1", 0, false, &s, &json), 0);
    struct upd u = parse_update(json);
    uint64_t v1 = u.version;
    json_decref(u.root);
    veil_view_ack(s, v1);
    veil_view_unsubscribe(s);

    /* While away: one change that matters to n1, one that does not. */
    apply(f->s, POD("web-1", "web", "n1", "10.0.0.11"));
    apply(f->s, POD("db-1", "db2", "n2", "10.0.0.3"));
    assert_int_equal(veil_view_subscribe(f->v, "n1", v1, false, &s, &json), 0);
    u = parse_update(json);
    assert_false(u.full);
    assert_int_equal(u.version, veil_store_version(f->s));
    assert_int_equal(nupserts(&u), 2);
    assert_non_null(upsert(&u, "Workload/default/web-1"));
    assert_non_null(upsert(&u, "Service/default/web"));
    assert_int_equal(nremovals(&u), 0);
    uint64_t v2 = u.version;
    json_decref(u.root);
    veil_view_unsubscribe(s);

    /* Up to date: nothing. */
    assert_int_equal(veil_view_subscribe(f->v, "n1", v2, false, &s, &json), 0);
    assert_null(json);
    veil_view_unsubscribe(s);

    /* The node says it only has v1 (it never applied v2): resent. */
    assert_int_equal(veil_view_subscribe(f->v, "n1", v1, false, &s, &json), 0);
    u = parse_update(json);
    assert_false(u.full);
    assert_int_equal(nupserts(&u), 2);
    json_decref(u.root);
    veil_view_unsubscribe(s);

    /* A removal while away. */
    del(f->s, "AuthorizationPolicy/default/deny");
    assert_int_equal(veil_view_subscribe(f->v, "n1", v2, false, &s, &json), 0);
    u = parse_update(json);
    assert_int_equal(nupserts(&u), 0);
    assert_true(removed(&u, "AuthorizationPolicy/default/deny"));
    json_decref(u.root);
    veil_view_unsubscribe(s);

    /* Unknown node, version 0, a version never sent: full. */
    assert_int_equal(veil_view_subscribe(f->v, "n9", 5, false, &s, &json), 0);
    u = parse_update(json);
    assert_true(u.full);
    json_decref(u.root);
    veil_view_unsubscribe(s);
    assert_int_equal(
        veil_view_subscribe(f->v, "n1", veil_store_version(f->s) + 10, false, &s, &json), 0);
    u = parse_update(json);
    assert_true(u.full);
    json_decref(u.root);
    veil_view_unsubscribe(s);
}

static void test_too_old(void **state)
{
    struct fx *f = *state;
    struct veil_view_sub *s;
    char *json;
    assert_int_equal(veil_view_subscribe(f->v, "n1", 0, false, &s, &json), 0);
    struct upd u = parse_update(json);
    uint64_t v1 = u.version;
    json_decref(u.root);
    /* More changes than the node's log (64) keeps. */
    for (int i = 0; i < 70; i++) {
        char text[512];
        snprintf(text, sizeof(text), POD("web-1", "web", "n1", "10.0.1.%d"), i);
        apply(f->s, text);
        assert_int_equal(veil_view_poll(s, &json), 0);
        json_decref(parse_update(json).root);
    }
    veil_view_unsubscribe(s);
    assert_int_equal(veil_view_subscribe(f->v, "n1", v1, false, &s, &json), 0);
    u = parse_update(json);
    assert_true(u.full);
    json_decref(u.root);
    veil_view_unsubscribe(s);
}

static void test_ack_nack_status(void **state)
{
    struct fx *f = *state;
    struct veil_view_sub *s, *obs;
    char *json;
    struct veil_view_node_status st;
    assert_false(veil_views_node_status(f->v, "nobody", &st));
    assert_int_equal(veil_view_subscribe(f->v, "n1", 0, false, &s, &json), 0);
    struct upd u = parse_update(json);
    json_decref(u.root);
    veil_view_ack(s, u.version);
    apply(f->s, POD("web-1", "web", "n1", "10.0.0.12"));
    assert_int_equal(veil_view_poll(s, &json), 0);
    struct upd u2 = parse_update(json);
    json_decref(u2.root);
    veil_view_nack(s, u2.version, "cannot apply: bad thing");
    /* An observer: its own snapshot, its acks do not count. */
    assert_int_equal(veil_view_subscribe(f->v, "n1", 0, true, &obs, &json), 0);
    veil_free(json);
    veil_view_ack(obs, 999);
    assert_true(veil_views_node_status(f->v, "n1", &st));
    assert_true(st.subscribed);
    assert_int_equal(st.workloads, 1);
    assert_int_equal(st.sent, u2.version);
    assert_int_equal(st.acked, u.version);
    assert_int_equal(st.nacked, u2.version);
    assert_string_equal(st.nack_reason, "cannot apply: bad thing");
    /* A new stream supersedes the old one. */
    struct veil_view_sub *s2;
    assert_int_equal(veil_view_subscribe(f->v, "n1", u2.version, false, &s2, &json), 0);
    assert_null(json);
    assert_int_equal(veil_view_poll(s, &json), -ESTALE);
    veil_view_unsubscribe(s);
    assert_true(veil_views_node_status(f->v, "n1", &st));
    assert_true(st.subscribed);
    veil_view_unsubscribe(s2);
    veil_view_unsubscribe(obs);
    assert_true(veil_views_node_status(f->v, "n1", &st));
    assert_false(st.subscribed);
}

static void test_may_have(void **state)
{
    struct fx *f = *state;
    assert_true(veil_view_node_may_have(f->v, "n1", "default", "sa-web"));
    assert_false(veil_view_node_may_have(f->v, "n1", "default", "sa-db"));
    assert_true(veil_view_node_may_have(f->v, "n2", "default", "sa-db"));
    assert_false(veil_view_node_may_have(f->v, "n3", "default", "sa-web"));
    assert_true(veil_view_node_may_have(f->v, "n3", "other", "sa-web"));
    assert_false(veil_view_node_may_have(f->v, "n9", "default", "sa-web"));
    del(f->s, "Pod/default/web-1");
    assert_false(veil_view_node_may_have(f->v, "n1", "default", "sa-web"));
}

static void test_no_selector_and_workload_entry(void **state)
{
    struct fx *f = *state;
    apply(f->s,
          "apiVersion: v1\nkind: Service\nmetadata: {name: ext}\nspec: {ports: [{port: 80}]}\n"
          "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: "
          "vm, labels: {app: web, veil.io/node: n1}}\nspec: {address: 10.0.5.5, ports: "
          "{http: 7070}, serviceAccount: vm}\n");
    const char *ext = veil_views_item(f->v, "Service/default/ext");
    assert_non_null(ext);
    assert_non_null(strstr(ext, "\"endpoints\":[]"));
    const char *web = veil_views_item(f->v, "Service/default/web");
    assert_non_null(strstr(web, "\"address\":\"10.0.5.5\""));
    assert_non_null(strstr(web, "\"targetPort\":7070"));
    assert_true(veil_view_node_may_have(f->v, "n1", "default", "vm"));
}

static size_t endpoints(struct fx *f, const char *key)
{
    json_error_t je;
    json_t *it = json_loads(veil_views_item(f->v, key), 0, &je);
    assert_non_null(it);
    size_t n = json_array_size(json_object_get(json_object_get(it, "spec"), "endpoints"));
    json_decref(it);
    return n;
}

static void test_selectors(void **state)
{
    struct fx *f = *state;
    apply(f->s, "apiVersion: v1\nkind: Service\nmetadata: {name: multi}\nspec: {selector: {app: "
                "web, tier: fe}, ports: [{port: 80}]}\n---\napiVersion: v1\nkind: Service\n"
                "metadata: {name: every}\nspec: {selector: {}, ports: [{port: 80}]}\n");
    assert_int_equal(endpoints(f, "Service/default/multi"), 0);
    assert_int_equal(endpoints(f, "Service/default/every"), 3);
    struct veil_view_sub *s;
    char *json;
    assert_int_equal(veil_view_subscribe(f->v, "n2", 0, false, &s, &json), 0);
    veil_free(json);
    /* A label that is not the selector's first pair brings web-1 in. */
    apply(f->s, "apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, labels: {app: web, tier: "
                "fe}}\nspec: {nodeName: n1}\nstatus: {podIP: 10.0.0.1}\n");
    assert_int_equal(endpoints(f, "Service/default/multi"), 1);
    assert_int_equal(veil_view_poll(s, &json), 0);
    struct upd u = parse_update(json);
    assert_non_null(upsert(&u, "Service/default/multi"));
    assert_non_null(upsert(&u, "Service/default/every")); /* its serviceAccount changed */
    json_decref(u.root);
    /* The directory source: what vanishes from it is removed for the nodes. */
    struct veil_conf *c;
    const char *dir = POD("dir-pod", "zzz", "n2", "10.0.0.50");
    assert_int_equal(veil_conf_parse_yaml(&c, dir, strlen(dir), "d.yaml", NULL), 0);
    assert_int_equal(veil_store_replace_dir(f->s, &c, 1, NULL, NULL), 0);
    veil_conf_free(c);
    assert_int_equal(veil_view_poll(s, &json), 0);
    u = parse_update(json);
    assert_non_null(upsert(&u, "Workload/default/dir-pod"));
    json_decref(u.root);
    assert_int_equal(veil_store_replace_dir(f->s, NULL, 0, NULL, NULL), 0);
    assert_int_equal(veil_view_poll(s, &json), 0);
    u = parse_update(json);
    assert_true(removed(&u, "Workload/default/dir-pod"));
    json_decref(u.root);
    assert_int_equal(endpoints(f, "Service/default/every"), 3);
    veil_view_unsubscribe(s);
}

/* 100 nodes x 2,000 workloads; one change reaches the right nodes. */
static void test_scale_small(void **state)
{
    (void)state;
    struct veil_store *s;
    assert_int_equal(veil_store_open(&s, NULL, NULL), 0);
    size_t cap = 2000 * 400 + 200 * 300, len = 0;
    char *text = malloc(cap);
    for (int i = 0; i < 200; i++)
        len += (size_t)snprintf(text + len, cap - len,
                                "apiVersion: v1\nkind: Service\nmetadata: {name: svc-%d}\nspec: "
                                "{selector: {app: a%d}, ports: [{port: 80}]}\n---\n",
                                i, i);
    for (int i = 0; i < 2000; i++)
        len += (size_t)snprintf(text + len, cap - len,
                                "apiVersion: v1\nkind: Pod\nmetadata: {name: p-%d, labels: {app: "
                                "a%d}}\nspec: {nodeName: node-%d}\nstatus: {podIP: 10.%d.%d.%d}\n"
                                "---\n",
                                i, i % 200, i % 100, 1, i / 250, i % 250);
    apply(s, text);
    free(text);
    struct veil_views *v = veil_views_new(s, NULL);
    struct veil_view_sub *subs[100];
    char *json;
    for (int i = 0; i < 100; i++) {
        char name[32];
        snprintf(name, sizeof(name), "node-%d", i);
        assert_int_equal(veil_view_subscribe(v, name, 0, false, &subs[i], &json), 0);
        struct upd u = parse_update(json);
        assert_int_equal(nupserts(&u), 200 + 20);
        json_decref(u.root);
    }
    apply(s, "apiVersion: v1\nkind: Pod\nmetadata: {name: p-7, labels: {app: a8}}\nspec: "
             "{nodeName: node-7}\nstatus: {podIP: 10.1.0.7}\n");
    for (int i = 0; i < 100; i++) {
        assert_int_equal(veil_view_poll(subs[i], &json), 0);
        struct upd u = parse_update(json);
        assert_non_null(upsert(&u, "Service/default/svc-7"));
        assert_non_null(upsert(&u, "Service/default/svc-8"));
        assert_int_equal(nupserts(&u), i == 7 ? 3 : 2);
        json_decref(u.root);
        veil_view_unsubscribe(subs[i]);
    }
    veil_views_free(v);
    veil_store_free(s);
}

/* ---- a model check: what nodes hold after any mix of changes and resumes ---- */

/* A node's side: what it applied (key -> upsert) and at which version. */
struct mnode {
    const char *name;
    struct veil_view_sub *s;
    json_t *have, *old; /* now, and a state it kept from earlier */
    uint64_t version, old_version;
};

static void model_apply(struct mnode *m, char *text)
{
    if (text == NULL)
        return;
    struct upd u = parse_update(text);
    assert_true(u.version > m->version || u.full);
    if (u.full)
        json_object_clear(m->have);
    json_t *ups = json_object_get(u.root, "upserts"), *rms = json_object_get(u.root, "removals");
    for (size_t i = 0; i < json_array_size(ups); i++) {
        json_t *it = json_array_get(ups, i);
        json_object_set(m->have, json_string_value(json_object_get(it, "key")), it);
    }
    for (size_t i = 0; i < json_array_size(rms); i++)
        assert_int_equal(json_object_del(m->have, json_string_value(json_array_get(rms, i))), 0);
    m->version = u.version;
    json_decref(u.root);
}

/* The node's state equals a fresh snapshot of its view. */
static void model_check(struct fx *f, const struct mnode *m)
{
    struct veil_view_sub *o;
    char *json;
    assert_int_equal(veil_view_subscribe(f->v, m->name, 0, true, &o, &json), 0);
    struct mnode snap = {.name = m->name, .have = json_object()};
    model_apply(&snap, json);
    veil_view_unsubscribe(o);
    if (!json_equal(snap.have, m->have)) {
        char *a = json_dumps(snap.have, JSON_SORT_KEYS), *b = json_dumps(m->have, JSON_SORT_KEYS);
        fail_msg("%s: want %s\nhave %s", m->name, a, b);
    }
    json_decref(snap.have);
}

static void model_change(struct fx *f, unsigned r)
{
    static const char *apps[] = {"web", "db", "api"};
    static const char *nodes[] = {"n1", "n2", "n3", "n4"};
    char text[1024], id[64];
    unsigned k = (r >> 4) % 5;
    switch (r % 4) {
    case 0:
        snprintf(text, sizeof(text), SVC("svc-%u", "%s"), k, apps[(r >> 8) % 3]);
        apply(f->s, text);
        break;
    case 1:
        snprintf(id, sizeof(id), "Service/default/svc-%u", k);
        if (veil_store_get(f->s, id) != NULL)
            del(f->s, id);
        break;
    case 2:
        snprintf(text, sizeof(text), POD("p-%u", "%s", "%s", "10.1.%u.%u"), k, apps[(r >> 8) % 3],
                 nodes[(r >> 12) % 4], apps[(r >> 8) % 3], k, (r >> 16) % 200 + 1);
        apply(f->s, text);
        break;
    default:
        snprintf(id, sizeof(id), "Pod/default/p-%u", k);
        if (veil_store_get(f->s, id) != NULL)
            del(f->s, id);
        break;
    }
}

static void model_node_step(struct fx *f, struct mnode *m, unsigned r)
{
    char *json;
    switch (r % 5) {
    case 0:
    case 1:
        if (m->s != NULL) {
            assert_int_equal(veil_view_poll(m->s, &json), 0);
            model_apply(m, json);
        }
        break;
    case 2:
        veil_view_unsubscribe(m->s);
        m->s = NULL;
        break;
    case 3: /* keeps its state for a later "never applied what followed" */
        json_decref(m->old);
        m->old = json_deep_copy(m->have);
        m->old_version = m->version;
        break;
    default:
        veil_view_unsubscribe(m->s);
        if (m->old != NULL && (r >> 8) % 2 == 0) {
            json_decref(m->have);
            m->have = json_deep_copy(m->old);
            m->version = m->old_version;
        }
        assert_int_equal(veil_view_subscribe(f->v, m->name, m->version, false, &m->s, &json), 0);
        model_apply(m, json);
        break;
    }
}

static void test_model(void **state)
{
    struct fx *f = *state;
    struct mnode m[4] = {{.name = "n1"}, {.name = "n2"}, {.name = "n3"}, {.name = "n4"}};
    char *json;
    for (int i = 0; i < 4; i++) {
        m[i].have = json_object();
        assert_int_equal(veil_view_subscribe(f->v, m[i].name, 0, false, &m[i].s, &json), 0);
        model_apply(&m[i], json);
    }
    unsigned seed = 12345;
    for (int step = 0; step < 3000; step++) {
        seed = seed * 1103515245u + 12345u;
        unsigned r = seed >> 1;
        if (r % 3 == 0)
            model_change(f, r >> 2);
        else
            model_node_step(f, &m[(r >> 2) % 4], r >> 4);
        if (step % 100 == 99) {
            for (int i = 0; i < 4; i++) {
                if (m[i].s == NULL)
                    assert_int_equal(
                        veil_view_subscribe(f->v, m[i].name, m[i].version, false, &m[i].s, &json),
                        0);
                else
                    assert_int_equal(veil_view_poll(m[i].s, &json), 0);
                model_apply(&m[i], json);
                model_check(f, &m[i]);
            }
        }
    }
    for (int i = 0; i < 4; i++) {
        veil_view_unsubscribe(m[i].s);
        json_decref(m[i].have);
        json_decref(m[i].old);
    }
}

static void test_alloc_failures(void **state)
{
    struct fx *f = *state;
    struct veil_view_sub *s;
    char *json;
    for (long n = 0;; n++) {
        veil_alloc_fail_after(n);
        int rc = veil_view_subscribe(f->v, "n1", 0, false, &s, &json);
        veil_alloc_fail_reset();
        if (rc == 0)
            break;
        assert_int_equal(rc, -ENOMEM);
    }
    struct upd u = parse_update(json);
    json_decref(u.root);
    /* A store change while allocations fail: the views recover on the next poll. */
    for (long n = 0;; n++) {
        char text[512];
        snprintf(text, sizeof(text), POD("web-1", "web", "n1", "10.2.%ld.%ld"), n / 250,
                 n % 250 + 1);
        veil_alloc_fail_after(n);
        struct veil_conf *c = NULL;
        int rc = veil_conf_parse_yaml(&c, text, strlen(text), "t.yaml", NULL);
        if (rc == 0)
            rc = veil_store_apply(f->s, &c, 1, NULL, NULL);
        veil_conf_free(c);
        veil_alloc_fail_reset();
        if (rc != 0)
            continue;
        assert_int_equal(veil_view_poll(s, &json), 0);
        u = parse_update(json);
        json_t *w = json_object_get(upsert(&u, "Workload/default/web-1"), "spec");
        char want[32];
        snprintf(want, sizeof(want), "10.2.%ld.%ld", n / 250, n % 250 + 1);
        assert_string_equal(json_string_value(json_object_get(w, "address")), want);
        json_decref(u.root);
        if (n > 300)
            break;
    }
    veil_view_unsubscribe(s);
}

/* ---- routes, waypoints and the L7 status ---- */

#define ROUTE(name, parent)                                                                        \
    "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: " name            \
    ", namespace: shop}\nspec:\n  parentRefs: [{group: \"\", kind: Service, name: " parent         \
    ", port: 80}]\n  rules:\n  - matches: [{headers: [{name: x-v, value: \"2\"}]}]\n"              \
    "    backendRefs: [{name: cart-v2, port: 80}]\n  - backendRefs: [{name: cart, port: 80, "      \
    "weight: 90}, {name: cart-v3, port: 80, weight: 10}]\n"
#define SHOP_SVC(name, labels)                                                                     \
    "apiVersion: v1\nkind: Service\nmetadata: {name: " name ", namespace: shop, labels: {" labels  \
    "}}\nspec:\n  selector: {app: " name "}\n  ports: [{name: http, port: 80}]\n"
#define SHOP_POD(name, app, ip)                                                                    \
    "apiVersion: v1\nkind: Pod\nmetadata: {name: " name ", namespace: shop, labels: {app: " app    \
    "}}\nspec: {nodeName: n5, serviceAccountName: " app "}\nstatus: {podIP: " ip "}\n"
#define WAYPOINT(name, gw, ip)                                                                     \
    "apiVersion: v1\nkind: Pod\nmetadata: {name: " name ", namespace: shop, labels: "              \
    "{gateway.networking.k8s.io/gateway-name: " gw "}}\nspec: {nodeName: wp.shop." gw              \
    ", serviceAccountName: " gw "}\nstatus: {podIP: " ip "}\n"
#define SHOP_NS(labels)                                                                            \
    "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop, labels: {" labels "}}\n"

/* Applies each document of a NULL-terminated list, one apply each. */
static void apply_each(struct veil_store *s, const char *const *docs)
{
    for (size_t i = 0; docs[i] != NULL; i++)
        apply(s, docs[i]);
}

/* The "waypoint" of Service shop/NAME's current item, or NULL (a new reference). */
static json_t *waypoint_of(struct fx *f, const char *svc)
{
    char key[128];
    snprintf(key, sizeof(key), "Service/shop/%s", svc);
    const char *text = veil_views_item(f->v, key);
    assert_non_null(text);
    json_t *it = json_loads(text, 0, NULL);
    json_t *w = json_incref(json_object_get(json_object_get(it, "spec"), "waypoint"));
    json_decref(it);
    return w;
}

/* Polls `s`; the "waypoint" of Service shop/NAME in the update (which must
 * carry that Service), or NULL when it has none. */
static json_t *polled_waypoint(struct veil_view_sub *s, const char *svc)
{
    char *json, key[128];
    snprintf(key, sizeof(key), "Service/shop/%s", svc);
    assert_int_equal(veil_view_poll(s, &json), 0);
    struct upd u = parse_update(json);
    json_t *it = upsert(&u, key);
    assert_non_null(it);
    json_t *w = json_incref(json_object_get(json_object_get(it, "spec"), "waypoint"));
    json_decref(u.root);
    return w;
}

static void assert_waypoint(json_t *w, const char *name, const char *address)
{
    assert_non_null(w);
    assert_string_equal(json_string_value(json_object_get(w, "name")), name);
    assert_string_equal(json_string_value(json_object_get(w, "namespace")), "shop");
    assert_string_equal(json_string_value(json_object_get(w, "address")), address);
    char id[128], wl[128];
    snprintf(id, sizeof(id), "spiffe://cluster.local/ns/shop/sa/%s", name);
    assert_string_equal(json_string_value(json_object_get(w, "identity")), id);
    assert_int_equal(json_object_size(w), 5);
    snprintf(wl, sizeof(wl), "Workload/shop/%s-0", name);
    assert_string_equal(json_string_value(json_object_get(w, "workload")), wl);
    json_decref(w);
}

static void test_routes_reach_every_node(void **state)
{
    struct fx *f = *state;
    struct veil_view_sub *s1, *s3;
    char *json;
    assert_int_equal(veil_view_subscribe(f->v, "n1", 0, false, &s1, &json), 0);
    veil_free(json);
    apply(f->s, ROUTE("r", "cart") "---\napiVersion: gateway.networking.k8s.io/v1\nkind: "
                                   "GRPCRoute\nmetadata: {name: g, namespace: shop}\nspec: "
                                   "{rules: [{backendRefs: [{name: cart, port: 9000}]}]}\n");
    assert_int_equal(veil_view_poll(s1, &json), 0);
    struct upd u = parse_update(json);
    json_t *r = upsert(&u, "HTTPRoute/shop/r");
    assert_non_null(r);
    assert_string_equal(json_string_value(json_object_get(r, "kind")), "HTTPRoute");
    assert_string_equal(json_string_value(json_object_get(r, "namespace")), "shop");
    assert_string_equal(json_string_value(json_object_get(r, "name")), "r");
    json_t *rules = json_object_get(json_object_get(r, "spec"), "rules");
    assert_int_equal(json_array_size(rules), 2); /* the spec as written */
    json_t *g = upsert(&u, "GRPCRoute/shop/g");
    assert_string_equal(json_string_value(json_object_get(g, "kind")), "GRPCRoute");
    assert_int_equal(nupserts(&u), 2);
    json_decref(u.root);
    /* A node with no workload in shop gets them too, in its snapshot. */
    assert_int_equal(veil_view_subscribe(f->v, "n3", 0, false, &s3, &json), 0);
    u = parse_update(json);
    assert_non_null(upsert(&u, "HTTPRoute/shop/r"));
    assert_non_null(upsert(&u, "GRPCRoute/shop/g"));
    json_decref(u.root);
    /* The canonical text: sorted keys. */
    const char *text = veil_views_item(f->v, "GRPCRoute/shop/g");
    assert_non_null(text);
    assert_non_null(strstr(text, "{\"backendRefs\":[{\"name\":\"cart\",\"port\":9000}]}"));
    /* A change and a delete reach both. */
    apply(f->s, ROUTE("r", "pay"));
    del(f->s, "GRPCRoute/shop/g");
    struct veil_view_sub *subs[2] = {s1, s3};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(veil_view_poll(subs[i], &json), 0);
        u = parse_update(json);
        assert_non_null(upsert(&u, "HTTPRoute/shop/r"));
        assert_true(removed(&u, "GRPCRoute/shop/g"));
        assert_int_equal(nupserts(&u) + nremovals(&u), 2);
        json_decref(u.root);
    }
    /* A resumed node gets what it missed. */
    uint64_t have = veil_store_version(f->s);
    veil_view_unsubscribe(s3);
    del(f->s, "HTTPRoute/shop/r");
    assert_int_equal(veil_view_subscribe(f->v, "n3", have, false, &s3, &json), 0);
    u = parse_update(json);
    assert_false(u.full);
    assert_true(removed(&u, "HTTPRoute/shop/r"));
    json_decref(u.root);
    veil_view_unsubscribe(s1);
    veil_view_unsubscribe(s3);
}

static void test_waypoint_field(void **state)
{
    struct fx *f = *state;
    struct veil_view_sub *s;
    char *json;
    static const char *const docs[] = {SHOP_NS("istio.io/use-waypoint: wp"),
                                       SHOP_SVC("cart", ""),
                                       SHOP_SVC("pay", "istio.io/use-waypoint: none"),
                                       SHOP_SVC("ship", "istio.io/use-waypoint: wp2"),
                                       SHOP_POD("cart-1", "cart", "10.5.0.1"),
                                       WAYPOINT("wp-0", "wp", "198.18.1.12"),
                                       NULL};
    apply_each(f->s, docs);
    assert_int_equal(veil_view_subscribe(f->v, "n1", 0, false, &s, &json), 0);
    struct upd u = parse_update(json);
    json_t *spec = json_object_get(upsert(&u, "Service/shop/cart"), "spec");
    assert_waypoint(json_incref(json_object_get(spec, "waypoint")), "wp", "198.18.1.12");
    json_decref(u.root);
    /* "none" opts out; a waypoint that does not exist is no waypoint. */
    assert_null(waypoint_of(f, "pay"));
    assert_null(waypoint_of(f, "ship"));
    /* A Service without the label, in a namespace without it: none. */
    json_t *web = json_loads(veil_views_item(f->v, "Service/default/web"), 0, NULL);
    assert_null(json_object_get(json_object_get(web, "spec"), "waypoint"));
    json_decref(web);
    const struct veil_res *svc = veil_store_get(f->s, "Service/shop/ship");
    const char *name;
    assert_null(veil_views_service_waypoint(f->v, svc, &name));
    assert_string_equal(name, "wp2");

    /* The Service's own label changes: wp2 now exists, ship moves to it. */
    apply(f->s, WAYPOINT("wp2-0", "wp2", "198.18.1.13"));
    assert_waypoint(polled_waypoint(s, "ship"), "wp2", "198.18.1.13");
    apply(f->s, SHOP_SVC("ship", ""));
    assert_waypoint(polled_waypoint(s, "ship"), "wp", "198.18.1.12");
    apply(f->s, SHOP_SVC("cart", "istio.io/use-waypoint: none"));
    assert_null(polled_waypoint(s, "cart"));
    apply(f->s, SHOP_SVC("cart", ""));
    assert_waypoint(polled_waypoint(s, "cart"), "wp", "198.18.1.12");
    veil_view_unsubscribe(s);
}

static void test_waypoint_propagation(void **state)
{
    struct fx *f = *state;
    struct veil_view_sub *s;
    char *json;
    static const char *const docs[] = {SHOP_NS("team: a"), SHOP_SVC("cart", ""),
                                       SHOP_SVC("pay", ""), SHOP_POD("cart-1", "cart", "10.5.0.1"),
                                       NULL};
    apply_each(f->s, docs);
    assert_int_equal(veil_view_subscribe(f->v, "n1", 0, false, &s, &json), 0);
    veil_free(json);
    assert_null(waypoint_of(f, "cart"));

    /* The Namespace gets the label: no waypoint exists yet, nothing changes. */
    apply(f->s, SHOP_NS("team: a, istio.io/use-waypoint: wp"));
    assert_int_equal(veil_view_poll(s, &json), 0);
    assert_null(json);
    /* The waypoint's workload is added: every Service of the namespace gets it. */
    apply(f->s, WAYPOINT("wp-0", "wp", "198.18.1.12"));
    assert_int_equal(veil_view_poll(s, &json), 0);
    struct upd u = parse_update(json);
    assert_waypoint(json_incref(json_object_get(
                        json_object_get(upsert(&u, "Service/shop/cart"), "spec"), "waypoint")),
                    "wp", "198.18.1.12");
    assert_non_null(upsert(&u, "Service/shop/pay"));
    assert_int_equal(nupserts(&u), 2);
    json_decref(u.root);
    /* Readdressed. */
    apply(f->s, WAYPOINT("wp-0", "wp", "198.18.1.99"));
    assert_waypoint(polled_waypoint(s, "cart"), "wp", "198.18.1.99");
    assert_waypoint(waypoint_of(f, "pay"), "wp", "198.18.1.99");
    /* Another label of the Namespace: nothing to recompute. */
    apply(f->s, SHOP_NS("team: b, istio.io/use-waypoint: wp"));
    assert_int_equal(veil_view_poll(s, &json), 0);
    assert_null(json);
    /* The Namespace label goes: the Services lose it. */
    apply(f->s, SHOP_NS("team: b"));
    assert_null(polled_waypoint(s, "pay"));
    assert_null(waypoint_of(f, "cart"));
    /* ... and comes back through the Namespace's deletion and re-creation. */
    apply(f->s, SHOP_NS("istio.io/use-waypoint: wp"));
    assert_waypoint(polled_waypoint(s, "cart"), "wp", "198.18.1.99");
    del(f->s, "Namespace/shop");
    assert_null(polled_waypoint(s, "cart"));
    apply(f->s, SHOP_NS("istio.io/use-waypoint: wp"));
    assert_waypoint(polled_waypoint(s, "cart"), "wp", "198.18.1.99");
    /* The waypoint's workload is removed. */
    del(f->s, "Pod/shop/wp-0");
    assert_int_equal(veil_view_poll(s, &json), 0);
    u = parse_update(json);
    assert_null(
        json_object_get(json_object_get(upsert(&u, "Service/shop/cart"), "spec"), "waypoint"));
    assert_null(
        json_object_get(json_object_get(upsert(&u, "Service/shop/pay"), "spec"), "waypoint"));
    json_decref(u.root);
    /* A waypoint workload without an address is none. */
    apply(f->s, "apiVersion: v1\nkind: Pod\nmetadata: {name: wp-0, namespace: shop, labels: "
                "{gateway.networking.k8s.io/gateway-name: wp}}\nspec: {nodeName: wp.shop.wp}\n");
    assert_null(waypoint_of(f, "cart"));
    veil_view_unsubscribe(s);
}

static json_t *find_by(json_t *arr, const char *k1, const char *v1, const char *k2, const char *v2)
{
    size_t i;
    json_t *x;
    json_array_foreach(arr, i, x)
    {
        if (strcmp(json_string_value(json_object_get(x, k1)), v1) == 0 &&
            strcmp(json_string_value(json_object_get(x, k2)), v2) == 0)
            return x;
    }
    fail_msg("no %s=%s %s=%s", k1, v1, k2, v2);
    return NULL;
}

static void test_l7_status(void **state)
{
    struct fx *f = *state;
    static const char *const docs[] = {
        SHOP_NS("istio.io/use-waypoint: wp"),
        SHOP_SVC("cart", ""),
        SHOP_SVC("pay", "istio.io/use-waypoint: none"),
        SHOP_SVC("ship", "istio.io/use-waypoint: wp2"),
        SHOP_SVC("cart-v2", ""),
        SHOP_POD("cart-1", "cart", "10.5.0.1"),
        SHOP_POD("pay-1", "pay", "10.5.0.2"),
        WAYPOINT("wp-0", "wp", "198.18.1.12"),
        ROUTE("r", "cart"),
        ROUTE("to-pay", "pay"),
        ROUTE("to-ship", "ship"),
        ROUTE("to-none", "nope"),
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: gw, "
        "namespace: shop}\nspec: {parentRefs: [{name: ingress}]}\n",
        /* sectionName: the name of the Service's port */
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: sect-ok, "
        "namespace: shop}\nspec: {parentRefs: [{group: \"\", kind: Service, name: cart, "
        "sectionName: http}]}\n",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: sect-bad, "
        "namespace: shop}\nspec: {parentRefs: [{group: \"\", kind: Service, name: cart, port: 80, "
        "sectionName: grpc}]}\n",
        NULL,
    };
    apply_each(f->s, docs);
    /* L7 policies: on pay-1 (no waypoint), on cart-1 (a waypoint), namespace-wide. */
    apply(f->s,
          "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: get-only, "
          "namespace: shop}\nspec:\n  selector: {matchLabels: {app: pay}}\n  rules:\n  - to: "
          "[{operation: {methods: [GET]}}]\n---\n"
          "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: "
          "cart-l7, namespace: shop}\nspec:\n  selector: {matchLabels: {app: cart}}\n  action: "
          "DENY\n  rules:\n  - to: [{operation: {paths: [/admin]}}]\n---\n"
          "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: "
          "all, namespace: shop}\nspec:\n  action: DENY\n  rules:\n  - when: [{key: "
          "\"request.auth.claims[iss]\", values: [x]}]\n---\n"
          "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: "
          "l4, namespace: shop}\nspec:\n  rules:\n  - from: [{source: {namespaces: [shop]}}]\n");
    json_t *st = json_object();
    assert_int_equal(veil_views_l7_status(f->v, st), 0);

    json_t *wps = json_object_get(st, "waypoints");
    assert_int_equal(json_array_size(wps), 2);
    json_t *wp = find_by(wps, "namespace", "shop", "name", "wp");
    assert_string_equal(json_string_value(json_object_get(wp, "address")), "198.18.1.12");
    assert_string_equal(json_string_value(json_object_get(wp, "identity")),
                        "spiffe://cluster.local/ns/shop/sa/wp");
    json_t *users = json_object_get(wp, "services");
    assert_int_equal(json_array_size(users), 2);
    assert_string_equal(json_string_value(json_array_get(users, 0)), "shop/cart");
    assert_string_equal(json_string_value(json_array_get(users, 1)), "shop/cart-v2");
    json_t *wp2 = find_by(wps, "namespace", "shop", "name", "wp2");
    assert_null(json_object_get(wp2, "address"));
    assert_non_null(strstr(json_string_value(json_object_get(wp2, "why")), "no workload"));

    json_t *routes = json_object_get(st, "routes");
    assert_int_equal(json_array_size(routes), 7);
    json_t *r = json_array_get(
        json_object_get(find_by(routes, "kind", "HTTPRoute", "name", "r"), "parents"), 0);
    assert_true(json_is_true(json_object_get(r, "accepted")));
    assert_string_equal(json_string_value(json_object_get(r, "waypoint")), "shop/wp");
    assert_string_equal(json_string_value(json_object_get(r, "ref")), "Service shop/cart:80");
    r = json_array_get(
        json_object_get(find_by(routes, "kind", "HTTPRoute", "name", "sect-ok"), "parents"), 0);
    assert_true(json_is_true(json_object_get(r, "accepted")));
    assert_string_equal(json_string_value(json_object_get(r, "ref")),
                        "Service shop/cart (sectionName http)");
    json_t *bad =
        json_object_get(find_by(routes, "kind", "HTTPRoute", "name", "r"), "unresolvedBackends");
    assert_int_equal(json_array_size(bad), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(bad, 0), "reason")),
                        "backendRef Service shop/cart-v3 not found");
    struct {
        const char *kind, *name, *reason;
    } want[] = {
        {"HTTPRoute", "to-pay",
         "Service shop/pay has no waypoint: the route has no effect until one is added (veil "
         "waypoint add)"},
        {"HTTPRoute", "to-ship",
         "Service shop/ship uses waypoint wp2, which is not running: the route has no effect "
         "until it is (veil waypoint add)"},
        {"HTTPRoute", "to-none", "Service shop/nope not found"},
        {"GRPCRoute", "gw", "parentRef kind Gateway is not supported"},
        {"HTTPRoute", "sect-bad", "Service shop/cart has no port 80 named grpc (sectionName)"},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        json_t *p = json_array_get(
            json_object_get(find_by(routes, "kind", want[i].kind, "name", want[i].name), "parents"),
            0);
        assert_false(json_is_true(json_object_get(p, "accepted")));
        assert_string_equal(json_string_value(json_object_get(p, "reason")), want[i].reason);
    }

    json_t *pols = json_object_get(st, "l7Policies");
    assert_int_equal(json_array_size(pols), 2); /* not cart-l7 (cart has a waypoint), not l4 */
    json_t *p = find_by(pols, "namespace", "shop", "name", "get-only");
    assert_string_equal(json_string_value(json_object_get(p, "action")), "ALLOW");
    assert_string_equal(json_string_value(json_object_get(p, "field")),
                        "spec.rules[0].to[0].operation.methods");
    assert_string_equal(json_string_value(json_array_get(json_object_get(p, "workloads"), 0)),
                        "shop/pay-1");
    assert_string_equal(json_string_value(json_object_get(p, "enforced")),
                        "an ALLOW with L7 parts denies the requests those rules would allow");
    p = find_by(pols, "namespace", "shop", "name", "all");
    assert_int_equal(json_integer_value(json_object_get(p, "count")), 1); /* pay-1, not wp-0 */
    assert_string_equal(json_string_value(json_object_get(p, "enforced")),
                        "a DENY applies without its L7 parts");
    json_decref(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_node_view, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deltas_reach_right_nodes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_old, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ack_nack_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_may_have, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_selector_and_workload_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_selectors, setup, teardown),
        cmocka_unit_test(test_scale_small),
        cmocka_unit_test_setup_teardown(test_model, setup, teardown),
        cmocka_unit_test_setup_teardown(test_alloc_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_routes_reach_every_node, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waypoint_field, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waypoint_propagation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_l7_status, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
