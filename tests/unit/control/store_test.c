#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "control/resource.h"
#include "control/store.h"
#include "core/alloc.h"
#include "core/conf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct veil_conf *yaml(const char *name, const char *text)
{
    struct veil_conf *c = NULL;
    struct veil_conf_err err;
    if (veil_conf_parse_yaml(&c, text, strlen(text), name, &err) != 0)
        fail_msg("yaml: %s:%d: %s", err.file, err.line, err.msg);
    return c;
}

static struct veil_store *open_store(const char *dir)
{
    struct veil_store *s;
    struct veil_conf_err err;
    struct veil_store_opts o = {.state_dir = dir, .service_cidr = "198.19.0.0/24"};
    if (veil_store_open(&s, &o, &err) != 0)
        fail_msg("open: %s", err.msg);
    return s;
}

/* Applies (api) one YAML text; returns rc and the formatted error. */
static int apply(struct veil_store *s, const char *name, const char *text, char *msg, size_t n)
{
    struct veil_conf *c = yaml(name, text);
    struct veil_conf_err err;
    int rc = veil_store_apply(s, &c, 1, NULL, &err);
    if (rc < 0 && msg != NULL)
        veil_conf_err_format(&err, msg, n);
    veil_conf_free(c);
    return rc;
}

static void apply_ok(struct veil_store *s, const char *text)
{
    char msg[1024];
    if (apply(s, "ok.yaml", text, msg, sizeof(msg)) != 0)
        fail_msg("apply: %s", msg);
}

static int replace_dir(struct veil_store *s, const char *text, char *msg, size_t n)
{
    struct veil_conf *c = yaml("dir/a.yaml", text);
    struct veil_conf_err err;
    int rc = veil_store_replace_dir(s, &c, 1, NULL, &err);
    if (rc < 0 && msg != NULL)
        veil_conf_err_format(&err, msg, n);
    veil_conf_free(c);
    return rc;
}

#define SVC(name, sel)                                                                             \
    "apiVersion: v1\nkind: Service\nmetadata: {name: " name "}\nspec:\n  selector: {app: " sel     \
    "}\n  ports: [{name: http, port: 80, targetPort: 8080}]\n"
#define POD(name, app, node, ip)                                                                   \
    "apiVersion: v1\nkind: Pod\nmetadata: {name: " name ", labels: {app: " app "}}\n"              \
    "spec: {nodeName: " node "}\nstatus: {podIP: " ip "}\n"

#define BASE SVC("web", "web") "---\n" POD("web-1", "web", "n1", "10.0.0.1")

static void make_tmpdir(char *dir)
{
    assert_non_null(mkdtemp(dir));
}

static void rm_tmpdir(const char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_apply_and_outcomes(void **state)
{
    (void)state;
    struct veil_store *s = open_store(NULL);
    struct veil_conf *c = yaml("a.yaml", BASE);
    struct veil_store_report rep;
    assert_int_equal(veil_store_apply(s, &c, 1, &rep, NULL), 0);
    assert_int_equal(rep.n, 2);
    assert_string_equal(rep.v[0].id, "Service/default/web");
    assert_int_equal(rep.v[0].what, VEIL_STORE_CREATED);
    veil_store_report_free(&rep);
    assert_int_equal(veil_store_version(s), 2);
    /* Same again: unchanged, no new version. */
    assert_int_equal(veil_store_apply(s, &c, 1, &rep, NULL), 0);
    assert_int_equal(rep.v[1].what, VEIL_STORE_UNCHANGED);
    veil_store_report_free(&rep);
    assert_int_equal(veil_store_version(s), 2);
    veil_conf_free(c);
    apply_ok(s, POD("web-1", "web", "n1", "10.0.0.9"));
    const struct veil_res *p = veil_store_get(s, "Pod/default/web-1");
    assert_string_equal(p->u.wl.address, "10.0.0.9");
    assert_int_equal(p->version, 3);
    assert_int_equal(veil_store_count(s, VEIL_RES_POD), 1);
    veil_store_free(s);
}

static void test_delete(void **state)
{
    (void)state;
    struct veil_store *s = open_store(NULL);
    apply_ok(s, BASE);
    const char *ids[] = {"Pod/default/web-1", "Pod/default/nope"};
    struct veil_conf_err err;
    char msg[512];
    assert_int_equal(veil_store_delete(s, ids, 2, NULL, &err), -ENOENT);
    veil_conf_err_format(&err, msg, sizeof(msg));
    assert_string_equal(msg, "Pod/default/nope not found");
    assert_non_null(veil_store_get(s, "Pod/default/web-1")); /* all or nothing */
    assert_int_equal(veil_store_delete(s, ids, 1, NULL, &err), 0);
    assert_null(veil_store_get(s, "Pod/default/web-1"));
    assert_int_equal(veil_store_version(s), 3);
    /* By documents, as `veil delete -f`. */
    struct veil_conf *c = yaml("d.yaml", SVC("web", "web"));
    assert_int_equal(veil_store_delete_docs(s, &c, 1, NULL, &err), 0);
    veil_conf_free(c);
    assert_int_equal(veil_store_count(s, VEIL_RES_NKINDS), 0);
    veil_store_free(s);
}

static void test_cluster_ip(void **state)
{
    (void)state;
    struct veil_store *s = open_store(NULL);
    apply_ok(s, SVC("a", "a") "---\n" SVC("b", "b"));
    const struct veil_res *a = veil_store_get(s, "Service/default/a");
    const struct veil_res *b = veil_store_get(s, "Service/default/b");
    assert_string_equal(a->cluster_ip, "198.19.0.1");
    assert_string_equal(b->cluster_ip, "198.19.0.2");
    /* A change keeps the address. */
    apply_ok(s, "apiVersion: v1\nkind: Service\nmetadata: {name: a, labels: {x: y}}\n"
                "spec: {selector: {app: a}, ports: [{port: 81}]}\n");
    assert_string_equal(veil_store_get(s, "Service/default/a")->cluster_ip, "198.19.0.1");
    assert_string_equal(veil_store_cluster_ip(s, "default", "a"), "198.19.0.1");
    /* An explicit address in use is refused. */
    char msg[1024];
    assert_int_equal(apply(s, "c.yaml",
                           "apiVersion: v1\nkind: Service\nmetadata: {name: c}\nspec:\n  "
                           "clusterIP: 198.19.0.2\n  ports: [{port: 80}]\n",
                           msg, sizeof(msg)),
                     -EINVAL);
    assert_string_equal(msg, "c.yaml:5:14: spec.clusterIP: 198.19.0.2 is already allocated to "
                             "Service default/b");
    apply_ok(s, "apiVersion: v1\nkind: Service\nmetadata: {name: c}\nspec:\n  "
                "clusterIP: 198.19.0.77\n  ports: [{port: 80}]\n");
    apply_ok(s, "apiVersion: v1\nkind: Service\nmetadata: {name: h}\nspec:\n  "
                "clusterIP: None\n  ports: [{port: 80}]\n");
    assert_string_equal(veil_store_get(s, "Service/default/h")->cluster_ip, "None");
    veil_store_free(s);
}

static void test_range_exhausted(void **state)
{
    (void)state;
    struct veil_store *s;
    struct veil_store_opts o = {.service_cidr = "10.96.0.0/30"};
    assert_int_equal(veil_store_open(&s, &o, NULL), 0);
    apply_ok(s, SVC("a", "a"));
    assert_string_equal(veil_store_get(s, "Service/default/a")->cluster_ip, "10.96.0.1");
    char msg[512];
    assert_int_equal(apply(s, "b.yaml", SVC("b", "b") "---\n" SVC("c", "c"), msg, sizeof(msg)),
                     -ENOSPC);
    assert_non_null(strstr(msg, "no free ClusterIP"));
    assert_int_equal(veil_store_count(s, VEIL_RES_SERVICE), 1);
    veil_store_free(s);
}

static void test_persistence(void **state)
{
    (void)state;
    char dir[] = "/tmp/veil-store-XXXXXX";
    make_tmpdir(dir);
    struct veil_store *s = open_store(dir);
    apply_ok(s, BASE);
    assert_int_equal(replace_dir(s, SVC("fromdir", "x"), NULL, 0), 0);
    apply_ok(s, SVC("later", "later"));
    uint64_t version = veil_store_version(s);
    char ip_web[64], ip_dir[64], ip_later[64];
    snprintf(ip_web, sizeof(ip_web), "%s", veil_store_cluster_ip(s, "default", "web"));
    snprintf(ip_dir, sizeof(ip_dir), "%s", veil_store_cluster_ip(s, "default", "fromdir"));
    snprintf(ip_later, sizeof(ip_later), "%s", veil_store_cluster_ip(s, "default", "later"));
    uint64_t pod_version = veil_store_get(s, "Pod/default/web-1")->version;
    veil_store_free(s);

    s = open_store(dir);
    assert_int_equal(veil_store_version(s), version);
    const struct veil_res *p = veil_store_get(s, "Pod/default/web-1");
    assert_non_null(p);
    assert_int_equal(p->version, pod_version);
    assert_string_equal(p->file, "ok.yaml");
    assert_int_equal(p->line, 8);
    assert_string_equal(veil_store_get(s, "Service/default/web")->cluster_ip, ip_web);
    assert_string_equal(veil_store_get(s, "Service/default/later")->cluster_ip, ip_later);
    assert_null(veil_store_get(s, "Service/default/fromdir")); /* dir: re-read at start */
    assert_int_equal(replace_dir(s, SVC("fromdir", "x"), NULL, 0), 0);
    assert_string_equal(veil_store_get(s, "Service/default/fromdir")->cluster_ip, ip_dir);
    /* A new service gets a fresh address, not one of the kept ones. */
    apply_ok(s, SVC("new", "new"));
    const char *ip_new = veil_store_cluster_ip(s, "default", "new");
    assert_string_not_equal(ip_new, ip_web);
    assert_string_not_equal(ip_new, ip_dir);
    assert_string_not_equal(ip_new, ip_later);
    veil_store_free(s);

    /* A corrupt state file is an error, never silently dropped. */
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, VEIL_STORE_STATE_FILE);
    FILE *f = fopen(path, "w");
    fputs("{\"version\": \"x\"}", f);
    fclose(f);
    struct veil_conf_err err;
    struct veil_store_opts o = {.state_dir = dir};
    assert_int_equal(veil_store_open(&s, &o, &err), -EINVAL);
    assert_int_equal(err.line, 1);
    rm_tmpdir(dir);
}

/* Every bad-input class: error names file, line and field; nothing changes. */
static int bad_failed;

static void bad(struct veil_store *s, const char *text, const char *want)
{
    uint64_t version = veil_store_version(s);
    size_t count = veil_store_count(s, VEIL_RES_NKINDS);
    char msg[1024] = "";
    int rc = apply(s, "bad.yaml", text, msg, sizeof(msg));
    if (rc != -EINVAL || strcmp(msg, want) != 0) {
        print_error("rc %d\n got: %s\nwant: %s\n", rc, msg, want);
        bad_failed++;
    }
    assert_int_equal(veil_store_version(s), version);
    assert_int_equal(veil_store_count(s, VEIL_RES_NKINDS), count);
    assert_string_equal(veil_store_get(s, "Pod/default/web-1")->u.wl.address, "10.0.0.1");
    const struct veil_conf_err *last = veil_store_last_error(s, VEIL_RES_SRC_API);
    assert_non_null(last);
    assert_string_equal(last->file, "bad.yaml");
}

static void test_bad_input_classes(void **state)
{
    (void)state;
    struct veil_store *s = open_store(NULL);
    apply_ok(s, BASE);
    /* YAML syntax: the loader refuses the file; the store never sees it. */
    struct veil_conf *c = NULL;
    struct veil_conf_err err;
    const char *broken = "apiVersion: v1\nkind: Pod\nmetadata: {name: x\n";
    assert_int_equal(veil_conf_parse_yaml(&c, broken, strlen(broken), "bad.yaml", &err), -EINVAL);
    assert_string_equal(err.file, "bad.yaml");
    assert_true(err.line >= 3);
    assert_int_equal(veil_store_version(s), 2);
    assert_int_equal(veil_store_count(s, VEIL_RES_NKINDS), 2);
    /* Wrong field type; a good resource before it is not applied either. */
    bad(s,
        POD("web-1", "web", "n1", "10.0.0.2") "---\napiVersion: v1\nkind: Service\nmetadata: "
                                              "{name: s}\nspec:\n  ports: [{port: \"eighty\"}]\n",
        "bad.yaml:11:18: spec.ports[0].port: expected an integer, got a string \"eighty\"");
    /* Missing required field. */
    bad(s, "apiVersion: v1\nkind: Pod\nmetadata: {labels: {a: b}}\nspec: {}\n",
        "bad.yaml:3:11: metadata.name: required field is missing");
    bad(s, "kind: Pod\nmetadata: {name: a}\n",
        "bad.yaml:1:1: apiVersion: required field is missing");
    /* Duplicate name in one apply. */
    bad(s, POD("dup", "a", "n1", "10.0.0.3") "---\n" POD("dup", "b", "n1", "10.0.0.4"),
        "bad.yaml:9:18: metadata.name: duplicate: Pod/default/dup is already defined at "
        "bad.yaml:1");
    /* Invalid CIDR. */
    bad(s,
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p}\n"
        "spec:\n  rules:\n  - from:\n    - source:\n        ipBlocks: [\"10.0.0.0/8\", "
        "\"300.0.0.0/8\"]\n",
        "bad.yaml:8:34: spec.rules[0].from[0].source.ipBlocks[1]: \"300.0.0.0/8\" is not a valid "
        "IP address or CIDR");
    /* Invalid port. */
    bad(s,
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  ports:\n  - port: 80\n"
        "    targetPort: 0\n",
        "bad.yaml:7:17: spec.ports[0].targetPort: 0 is not a valid port (1..65535)");
    /* Invalid address. */
    bad(s, POD("x", "a", "n1", "10.0.0"),
        "bad.yaml:5:17: status.podIP: \"10.0.0\" is not a valid "
        "IP address");
    /* Unknown policy action. */
    bad(s,
        "apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: p}\n"
        "spec: {action: REJECT}\n",
        "bad.yaml:4:16: spec.action: unknown action \"REJECT\" (ALLOW, DENY or AUDIT)");
    /* Invalid names and labels. */
    bad(s, "apiVersion: v1\nkind: Namespace\nmetadata: {name: a.b}\n",
        "bad.yaml:3:18: metadata.name: \"a.b\" is not a valid name (lowercase letters, digits and "
        "'-', at most 63)");
    bad(s, POD("x", "\"-bad-\"", "n1", "10.0.0.5"),
        "bad.yaml:3:35: metadata.labels.app: \"-bad-\" is not a valid label value");
    /* A Pod and a WorkloadEntry may not share a name. */
    bad(s,
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: web-1}\n"
        "spec: {address: 10.1.1.1}\n",
        "bad.yaml:3:18: metadata.name: WorkloadEntry/default/web-1 has the same namespace and name "
        "as Pod/default/web-1 (ok.yaml:8): a Pod and a WorkloadEntry may not share a name");
    assert_int_equal(bad_failed, 0);
    /* Success clears the source's last error. */
    apply_ok(s, SVC("other", "o"));
    assert_null(veil_store_last_error(s, VEIL_RES_SRC_API));
    veil_store_free(s);
}

static void test_dir_source(void **state)
{
    (void)state;
    struct veil_store *s = open_store(NULL);
    apply_ok(s, POD("api-pod", "x", "n1", "10.0.0.8"));
    assert_int_equal(replace_dir(s, BASE, NULL, 0), 0);
    assert_int_equal(veil_store_get(s, "Pod/default/web-1")->source, VEIL_RES_SRC_DIR);
    /* What disappeared from the directory is removed; api resources stay. */
    assert_int_equal(replace_dir(s, SVC("web", "web"), NULL, 0), 0);
    assert_null(veil_store_get(s, "Pod/default/web-1"));
    assert_non_null(veil_store_get(s, "Pod/default/api-pod"));
    /* One id, one source. */
    char msg[1024];
    assert_int_equal(replace_dir(s, POD("api-pod", "x", "n1", "10.0.0.8"), msg, sizeof(msg)),
                     -EINVAL);
    assert_string_equal(msg, "dir/a.yaml:1:1: Pod/default/api-pod is defined by the api source "
                             "(ok.yaml:1); change it there");
    assert_non_null(veil_store_last_error(s, VEIL_RES_SRC_DIR));
    const char *id = "Service/default/web";
    assert_int_equal(veil_store_delete(s, &id, 1, NULL, NULL), -EINVAL);
    /* An empty directory removes all dir resources. */
    assert_int_equal(veil_store_replace_dir(s, NULL, 0, NULL, NULL), 0);
    assert_int_equal(veil_store_count(s, VEIL_RES_NKINDS), 1);
    veil_store_free(s);
}

static void test_ignored_listed(void **state)
{
    (void)state;
    struct veil_store *s = open_store(NULL);
    apply_ok(s,
             BASE "---\napiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: "
                  "{name: r}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm, "
                  "namespace: default}\n");
    const struct veil_res **v;
    size_t n;
    assert_int_equal(veil_store_list(s, VEIL_RES_IGNORED, &v, &n), 0);
    assert_int_equal(n, 2);
    assert_string_equal(v[0]->id, "ConfigMap/default/cm");
    assert_string_equal(v[0]->file, "ok.yaml");
    assert_int_equal(v[0]->line, 18);
    assert_string_equal(v[1]->kind_name, "TCPRoute"); /* HTTPRoute is a known kind */
    veil_free(v);
    assert_int_equal(veil_store_list(s, VEIL_RES_SERVICE, &v, &n), 0);
    assert_int_equal(n, 1);
    veil_free(v);
    veil_store_free(s);
}

static int seen;

static void count_change(void *ctx, const struct veil_store_change *c)
{
    (void)ctx;
    (void)c;
    seen++;
}

static void test_log(void **state)
{
    (void)state;
    struct veil_store *s;
    struct veil_store_opts o = {.log_max = 3};
    assert_int_equal(veil_store_open(&s, &o, NULL), 0);
    apply_ok(s, BASE);                                  /* 1, 2 */
    apply_ok(s, POD("web-1", "web", "n1", "10.0.0.2")); /* 3 */
    seen = 0;
    assert_int_equal(veil_store_changes_since(s, 1, count_change, NULL), 0);
    assert_int_equal(seen, 2);
    apply_ok(s, POD("web-1", "web", "n1", "10.0.0.3")); /* 4: drops 1 */
    assert_int_equal(veil_store_changes_since(s, 0, count_change, NULL), -ERANGE);
    assert_int_equal(veil_store_changes_since(s, 1, count_change, NULL), 0);
    veil_store_free(s);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    char dir[] = "/tmp/veil-store-XXXXXX";
    make_tmpdir(dir);
    struct veil_store *s = open_store(dir);
    apply_ok(s, SVC("old", "old") "---\n" POD("web-1", "web", "n1", "10.0.0.1"));
    struct veil_conf *c =
        yaml("a.yaml", SVC("web", "web") "---\n" POD("web-1", "web", "n1", "10.0.0.2") "---\n" POD(
                           "web-2", "web", "n2", "10.0.0.3"));
    for (long n = 0;; n++) {
        struct veil_store_report rep;
        veil_alloc_fail_after(n);
        int rc = veil_store_apply(s, &c, 1, &rep, NULL);
        veil_alloc_fail_reset();
        if (rc == 0) {
            veil_store_report_free(&rep);
            break;
        }
        assert_int_equal(rc, -ENOMEM);
        assert_int_equal(veil_store_version(s), 2);
        assert_null(veil_store_get(s, "Service/default/web"));
        assert_string_equal(veil_store_get(s, "Pod/default/web-1")->u.wl.address, "10.0.0.1");
        assert_int_equal(veil_store_count(s, VEIL_RES_NKINDS), 2);
    }
    assert_int_equal(veil_store_version(s), 5);
    assert_string_equal(veil_store_cluster_ip(s, "default", "web"), "198.19.0.2");
    veil_conf_free(c);
    const char *ids[] = {"Service/default/old", "Pod/default/web-2"};
    for (long n = 0;; n++) {
        veil_alloc_fail_after(n);
        int rc = veil_store_delete(s, ids, 2, NULL, NULL);
        veil_alloc_fail_reset();
        if (rc == 0)
            break;
        assert_int_equal(veil_store_count(s, VEIL_RES_NKINDS), 4);
    }
    assert_int_equal(veil_store_count(s, VEIL_RES_NKINDS), 2);
    veil_store_free(s);
    for (long n = 0;; n++) {
        struct veil_store_opts o = {.state_dir = dir};
        veil_alloc_fail_after(n);
        int rc = veil_store_open(&s, &o, NULL);
        veil_alloc_fail_reset();
        if (rc == 0)
            break;
        assert_int_equal(rc, -ENOMEM);
    }
    assert_int_equal(veil_store_count(s, VEIL_RES_NKINDS), 2);
    veil_store_free(s);
    rm_tmpdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_apply_and_outcomes),
        cmocka_unit_test(test_delete),
        cmocka_unit_test(test_cluster_ip),
        cmocka_unit_test(test_range_exhausted),
        cmocka_unit_test(test_persistence),
        cmocka_unit_test(test_bad_input_classes),
        cmocka_unit_test(test_dir_source),
        cmocka_unit_test(test_ignored_listed),
        cmocka_unit_test(test_log),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
