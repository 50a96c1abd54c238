#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "control/resource.h"
#include "core/alloc.h"
#include "core/conf.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Parses the first document of `text`; returns rc, the resource or the error text. */
static int parse(const char *text, struct veil_res **out, char *msg, size_t n)
{
    struct veil_conf *c;
    struct veil_conf_err err;
    int rc = veil_conf_parse_yaml(&c, text, strlen(text), "r.yaml", &err);
    if (rc == 0) {
        rc = veil_res_parse(veil_conf_doc(c, 0), VEIL_RES_SRC_API, out, &err);
        veil_conf_free(c);
    }
    if (rc < 0)
        veil_conf_err_format(&err, msg, n);
    return rc;
}

static int failed;

static void fails(const char *text, const char *want)
{
    struct veil_res *r = NULL;
    char msg[1024] = "";
    int rc = parse(text, &r, msg, sizeof(msg));
    if (rc != -EINVAL || strcmp(msg, want) != 0) {
        print_error("rc %d\n got: %s\nwant: %s\n", rc, msg, want);
        failed++;
    }
    assert_null(r);
}

static struct veil_res *ok(const char *text)
{
    struct veil_res *r = NULL;
    char msg[1024] = "";
    if (parse(text, &r, msg, sizeof(msg)) != 0)
        fail_msg("unexpected error: %s", msg);
    assert_non_null(r);
    return r;
}

static void test_service(void **state)
{
    (void)state;
    struct veil_res *r = ok("apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n"
                            "  labels: {app: web}\nspec:\n  selector: {app: web}\n"
                            "  ports:\n  - {name: http, port: 80, targetPort: http, appProtocol: "
                            "http}\n  - {name: admin, port: 9000, targetPort: \"9001\"}\n");
    assert_int_equal(r->kind, VEIL_RES_SERVICE);
    assert_string_equal(r->id, "Service/default/web");
    assert_string_equal(r->ns, "default");
    assert_true(r->u.svc.has_selector);
    assert_int_equal(r->u.svc.nports, 2);
    assert_string_equal(r->u.svc.ports[0].target_name, "http");
    assert_string_equal(r->u.svc.ports[0].app_protocol, "http");
    assert_int_equal(r->u.svc.ports[1].target_port, 9001);
    assert_null(r->u.svc.cluster_ip);
    assert_string_equal(veil_res_label_get(&r->labels, "app"), "web");
    veil_res_free(r);
}

static void test_pod_and_workload_entry(void **state)
{
    (void)state;
    struct veil_res *p = ok("apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: shop, "
                            "labels: {app: web}}\nspec:\n  nodeName: n1\n  serviceAccountName: "
                            "web\n  containers:\n  - name: c\n    ports: [{name: http, "
                            "containerPort: 8080}]\nstatus: {podIP: 10.0.0.5}\n");
    assert_int_equal(p->kind, VEIL_RES_POD);
    assert_string_equal(p->u.wl.address, "10.0.0.5");
    assert_string_equal(p->u.wl.node, "n1");
    assert_string_equal(p->u.wl.service_account, "web");
    assert_int_equal(p->u.wl.nports, 1);
    assert_int_equal(p->u.wl.ports[0].port, 8080);
    veil_res_free(p);
    struct veil_res *w = ok("apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
                            "metadata: {name: vm-1, annotations: {veil.io/node: n2}}\n"
                            "spec: {address: \"2001:db8::0:1\", labels: {app: vm}, ports: {http: "
                            "8080}}\n");
    assert_string_equal(w->u.wl.address, "2001:db8::1");
    assert_string_equal(w->u.wl.node, "n2");
    assert_string_equal(w->u.wl.service_account, "default");
    assert_string_equal(veil_res_label_get(&w->labels, "app"), "vm");
    veil_res_free(w);
}

static void test_policies(void **state)
{
    (void)state;
    struct veil_res *a =
        ok("apiVersion: security.istio.io/v1beta1\nkind: AuthorizationPolicy\nmetadata: {name: "
           "allow, namespace: shop}\nspec:\n  selector: {matchLabels: {app: web}}\n  action: DENY\n"
           "  rules:\n  - from: [{source: {principals: [\"cluster.local/ns/a/sa/b\"], namespaces: "
           "[a], ipBlocks: [10.0.0.0/8, 1.2.3.4]}}]\n    to: [{operation: {ports: [\"80\", 443], "
           "methods: [GET]}}]\n    when: [{key: \"request.headers[x]\", values: [y]}]\n");
    assert_int_equal(a->u.authz.action, VEIL_RES_DENY);
    assert_true(a->u.authz.has_selector);
    assert_int_equal(a->u.authz.nrules, 1);
    veil_res_free(a);
    struct veil_res *p = ok("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
                            "metadata: {name: strict, namespace: istio-system}\nspec:\n  mtls: "
                            "{mode: STRICT}\n  portLevelMtls: {\"8080\": {mode: PERMISSIVE}}\n");
    assert_int_equal(p->u.pa.mode, VEIL_RES_MTLS_STRICT);
    assert_int_equal(p->u.pa.nports, 1);
    assert_int_equal(p->u.pa.ports[0].port, 8080);
    assert_int_equal(p->u.pa.ports[0].mode, VEIL_RES_MTLS_PERMISSIVE);
    veil_res_free(p);
}

static void test_ignored_kind(void **state)
{
    (void)state;
    struct veil_res *r = ok("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
                            "metadata: {name: r, namespace: shop}\nspec: {anything: [1]}\n");
    assert_int_equal(r->kind, VEIL_RES_IGNORED);
    assert_string_equal(r->id, "HTTPRoute.gateway.networking.k8s.io/shop/r");
    veil_res_free(r);
    r = ok("apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: k}\n");
    assert_int_equal(r->kind, VEIL_RES_IGNORED);
    veil_res_free(r);
}

static void test_errors(void **state)
{
    (void)state;
    fails("kind: Service\nmetadata: {name: a}\n",
          "r.yaml:1:1: apiVersion: required field is missing");
    fails("apiVersion: v1\nmetadata: {name: a}\n", "r.yaml:1:1: kind: required field is missing");
    fails("apiVersion: v1\nkind: Pod\nmetadata:\n  labels: {}\nspec: {}\n",
          "r.yaml:4:3: metadata.name: required field is missing");
    fails("apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  ports:\n  - port: eighty\n",
          "r.yaml:6:11: spec.ports[0].port: expected an integer, got a string \"eighty\"");
    fails("apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec:\n  ports:\n  - port: 70000\n",
          "r.yaml:6:11: spec.ports[0].port: 70000 is not a valid port (1..65535)");
    fails("apiVersion: v1\nkind: Pod\nmetadata: {name: Bad_Name}\nspec: {}\n",
          "r.yaml:3:18: metadata.name: \"Bad_Name\" is not a valid name (lowercase letters, "
          "digits, '-' and '.', at most 253)");
    fails("apiVersion: v1\nkind: Pod\nmetadata: {name: a, labels: {\"-x\": y}}\nspec: {}\n",
          "r.yaml:3:30: metadata.labels.-x: \"-x\" is not a valid label key");
    fails("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nspec: {}\nstatus: {podIP: 10.0.0.300}\n",
          "r.yaml:5:17: status.podIP: \"10.0.0.300\" is not a valid IP address");
    fails("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\n"
          "spec:\n  action: MAYBE\n",
          "r.yaml:5:11: spec.action: unknown action \"MAYBE\" (ALLOW, DENY or AUDIT)");
    fails("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\n"
          "spec:\n  action: CUSTOM\n",
          "r.yaml:5:11: spec.action: action CUSTOM (external authorization) is not supported");
    fails("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\n"
          "spec:\n  rules:\n  - from:\n    - source: {ipBlocks: [10.0.0.0/33]}\n",
          "r.yaml:7:27: spec.rules[0].from[0].source.ipBlocks[0]: \"10.0.0.0/33\" is not a valid "
          "IP address or CIDR");
    fails("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\n"
          "spec:\n  rules:\n  - to:\n    - operation: {ports: [\"0\"]}\n",
          "r.yaml:7:27: spec.rules[0].to[0].operation.ports[0]: 0 is not a valid port (1..65535)");
    fails("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\n"
          "spec:\n  rules:\n  - from:\n    - source: {principal: [x]}\n",
          "r.yaml:7:16: spec.rules[0].from[0].source.principal: unknown field");
    fails("apiVersion: security.istio.io/v2\nkind: PeerAuthentication\nmetadata: {name: a}\n",
          "r.yaml:1:13: apiVersion: unsupported apiVersion \"security.istio.io/v2\" for kind "
          "PeerAuthentication");
    fails(
        "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: a}\n"
        "spec: {mtls: {mode: ON}}\n",
        "r.yaml:4:21: spec.mtls.mode: unknown mode \"ON\" (STRICT, PERMISSIVE, DISABLE or UNSET)");
    assert_int_equal(failed, 0);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    const char *text = "apiVersion: v1\nkind: Service\nmetadata: {name: web, labels: {a: b}}\n"
                       "spec: {selector: {app: web}, ports: [{name: http, port: 80}]}\n";
    struct veil_conf *c;
    assert_int_equal(veil_conf_parse_yaml(&c, text, strlen(text), "r.yaml", NULL), 0);
    for (long n = 0;; n++) {
        struct veil_res *r = NULL;
        struct veil_conf_err err;
        veil_alloc_fail_after(n);
        int rc = veil_res_parse(veil_conf_doc(c, 0), VEIL_RES_SRC_API, &r, &err);
        veil_alloc_fail_reset();
        if (rc == 0) {
            veil_res_free(r);
            break;
        }
        assert_int_equal(rc, -ENOMEM);
        assert_null(r);
    }
    veil_conf_free(c);
}

static void test_cidr(void **state)
{
    (void)state;
    unsigned char a[16];
    int fam, len;
    assert_int_equal(veil_res_parse_cidr("10.1.0.0/16", true, a, &fam, &len), 0);
    assert_int_equal(fam, 4);
    assert_int_equal(len, 16);
    assert_int_equal(veil_res_parse_cidr("10.1.0.1/16", true, a, &fam, &len), -EINVAL);
    assert_int_equal(veil_res_parse_cidr("fd00::/8", true, a, &fam, &len), 0);
    assert_int_equal(veil_res_parse_cidr("1.2.3.4/", false, a, &fam, &len), -EINVAL);
    assert_int_equal(veil_res_parse_cidr("1.2.3/8", false, a, &fam, &len), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_service),  cmocka_unit_test(test_pod_and_workload_entry),
        cmocka_unit_test(test_policies), cmocka_unit_test(test_ignored_kind),
        cmocka_unit_test(test_errors),   cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_cidr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
