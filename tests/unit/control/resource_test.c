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
    struct veil_res *r = ok("apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\n"
                            "metadata: {name: r, namespace: shop}\nspec: {anything: [1]}\n");
    assert_int_equal(r->kind, VEIL_RES_IGNORED);
    assert_string_equal(r->id, "TCPRoute.gateway.networking.k8s.io/shop/r");
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

#define HR(spec)                                                                                   \
    "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: "   \
    "shop}\nspec:\n" spec
#define GR(spec)                                                                                   \
    "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: g, namespace: "   \
    "shop}\nspec:\n" spec
#define PARENT "  parentRefs: [{group: \"\", kind: Service, name: cart, port: 80}]\n"

static void test_http_route(void **state)
{
    (void)state;
    struct veil_res *r = ok(HR(
        PARENT "  hostnames: [cart.shop.svc.cluster.local, \"*.example.com\"]\n"
               "  rules:\n"
               "  - matches:\n"
               "    - path: {type: PathPrefix, value: /api}\n"
               "      headers: [{name: x-version, value: v2}, {type: RegularExpression, name: "
               "x-user, value: \"^(alice|bob)$\"}]\n"
               "      queryParams: [{name: debug, value: \"1\"}]\n"
               "      method: POST\n"
               "    filters:\n"
               "    - type: RequestHeaderModifier\n"
               "      requestHeaderModifier: {set: [{name: x-a, value: b}], add: [{name: x-c, "
               "value: d}], remove: [x-e]}\n"
               "    - type: URLRewrite\n"
               "      urlRewrite: {hostname: cart.internal, path: {type: ReplacePrefixMatch, "
               "replacePrefixMatch: /v2}}\n"
               "    - type: RequestMirror\n"
               "      requestMirror: {backendRef: {name: shadow, port: 80}, fraction: "
               "{numerator: 5, denominator: 1000}}\n"
               "    backendRefs:\n"
               "    - {name: cart-v1, port: 80, weight: 90}\n"
               "    - name: cart-v2\n"
               "      namespace: shop\n"
               "      port: 8080\n"
               "      weight: 10\n"
               "      filters: [{type: ResponseHeaderModifier, responseHeaderModifier: {remove: "
               "[server]}}]\n"
               "    timeouts: {request: 10s, backendRequest: 2s500ms}\n"
               "    retry: {attempts: 3, codes: [502, 503], backoff: 100ms}\n"
               "  - matches: [{path: {type: RegularExpression, value: \"^/items/[0-9]+$\"}}]\n"
               "    filters: [{type: RequestRedirect, requestRedirect: {scheme: https, port: 443, "
               "statusCode: 301}}]\n"
               "  - backendRefs: [{name: cart-v1, port: 80}]\n"));
    assert_int_equal(r->kind, VEIL_RES_HTTP_ROUTE);
    assert_string_equal(r->id, "HTTPRoute/shop/r");
    assert_int_equal(r->u.route.nrules, 3);
    assert_int_equal(r->u.route.nparents, 1);
    assert_string_equal(r->u.route.parents[0].group, "");
    assert_string_equal(r->u.route.parents[0].kind, "Service");
    assert_string_equal(r->u.route.parents[0].ns, "shop");
    assert_int_equal(r->u.route.parents[0].port, 80);
    assert_int_equal(r->u.route.nbackends, 4); /* the mirror, two backends, the last rule's */
    assert_string_equal(r->u.route.backends[0].name, "shadow");
    assert_string_equal(r->u.route.backends[1].kind, "Service");
    assert_string_equal(r->u.route.backends[2].name, "cart-v2");
    veil_res_free(r);
    /* The spec's defaults: a parentRef is a Gateway of the Gateway API group. */
    r = ok("apiVersion: gateway.networking.k8s.io/v1beta1\nkind: HTTPRoute\nmetadata: {name: "
           "r}\nspec:\n  parentRefs: [{name: gw}]\n");
    assert_string_equal(r->u.route.parents[0].group, "gateway.networking.k8s.io");
    assert_string_equal(r->u.route.parents[0].kind, "Gateway");
    assert_string_equal(r->u.route.parents[0].ns, "default");
    assert_int_equal(r->u.route.nrules, 0);
    veil_res_free(r);
}

static void test_grpc_route(void **state)
{
    (void)state;
    struct veil_res *r =
        ok(GR(PARENT "  rules:\n"
                     "  - matches:\n"
                     "    - method: {service: shop.Cart, method: Get}\n"
                     "      headers: [{name: x-user, value: alice}]\n"
                     "    - method: {type: RegularExpression, service: \"shop\\\\..*\"}\n"
                     "    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {add: "
                     "[{name: x-grpc, value: \"1\"}]}}]\n"
                     "    backendRefs: [{name: cart, port: 9000, weight: 1}]\n"));
    assert_int_equal(r->kind, VEIL_RES_GRPC_ROUTE);
    assert_string_equal(r->id, "GRPCRoute/shop/g");
    assert_int_equal(r->u.route.nbackends, 1);
    assert_int_equal(r->u.route.backends[0].port, 9000);
    veil_res_free(r);
    r = ok("apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: GRPCRoute\nmetadata: {name: "
           "g}\nspec: {}\n");
    assert_int_equal(r->kind, VEIL_RES_GRPC_ROUTE);
    veil_res_free(r);
}

static void test_route_errors(void **state)
{
    (void)state;
    fails("apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: HTTPRoute\nmetadata: {name: r}\n"
          "spec: {}\n",
          "r.yaml:1:13: apiVersion: unsupported apiVersion \"gateway.networking.k8s.io/v1alpha2\" "
          "for kind HTTPRoute");
    fails("apiVersion: gateway.networking.k8s.io/v1beta1\nkind: GRPCRoute\nmetadata: {name: r}\n"
          "spec: {}\n",
          "r.yaml:1:13: apiVersion: unsupported apiVersion \"gateway.networking.k8s.io/v1beta1\" "
          "for kind GRPCRoute");
    fails(HR("  parentRef: [{name: a}]\n"), "r.yaml:5:3: spec.parentRef: unknown field");
    fails(HR("  parentRefs: [{kind: Service}]\n"),
          "r.yaml:5:16: spec.parentRefs[0].name: required field is missing");
    fails(HR("  parentRefs: [{name: a, port: 0}]\n"),
          "r.yaml:5:32: spec.parentRefs[0].port: 0 is not a valid port (1..65535)");
    fails(HR("  parentRefs: [{name: a}, {name: a}]\n"),
          "r.yaml:5:27: spec.parentRefs[1]: duplicate parentRef (same as parentRefs[0])");
    fails(HR("  hostnames: [\"foo..bar\"]\n"),
          "r.yaml:5:15: spec.hostnames[0]: \"foo..bar\" is not a valid hostname (lowercase DNS "
          "name, may start with \"*.\")");
    fails(HR("  hostnames: [10.0.0.1]\n"),
          "r.yaml:5:15: spec.hostnames[0]: \"10.0.0.1\": an IP address is not allowed as a "
          "hostname");
    fails(HR("  rules: [{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}]\n"),
          "r.yaml:5:10: spec.rules: at most 16 items, got 17");
    fails(HR("  rules:\n  - matchs: []\n"), "r.yaml:6:5: spec.rules[0].matchs: unknown field");
    fails(HR("  rules:\n  - matches: [{path: {type: Prefix, value: /}}]\n"),
          "r.yaml:6:29: spec.rules[0].matches[0].path.type: unknown path match type \"Prefix\" "
          "(Exact, PathPrefix or RegularExpression)");
    fails(HR("  rules:\n  - matches: [{path: {type: Exact, value: api}}]\n"),
          "r.yaml:6:43: spec.rules[0].matches[0].path.value: \"api\" must start with \"/\" for "
          "type Exact");
    fails(HR("  rules:\n  - matches: [{path: {value: /a//b}}]\n"),
          "r.yaml:6:30: spec.rules[0].matches[0].path.value: \"/a//b\" must not contain \"//\", "
          "\"/./\", \"/../\", \"%2f\" or \"#\" for type PathPrefix");
    fails(HR("  rules:\n  - matches: [{path: {type: RegularExpression, value: \"a(\"}}]\n"),
          "r.yaml:6:55: spec.rules[0].matches[0].path.value: \"a(\" is not a valid regular "
          "expression (POSIX extended): Unmatched ( or \\(");
    fails(HR("  rules:\n  - matches: [{headers: [{name: \"x y\", value: a}]}]\n"),
          "r.yaml:6:33: spec.rules[0].matches[0].headers[0].name: \"x y\" is not a valid header "
          "name");
    fails(HR("  rules:\n  - matches: [{queryParams: [{name: q}]}]\n"),
          "r.yaml:6:30: spec.rules[0].matches[0].queryParams[0].value: required field is missing");
    fails(HR("  rules:\n  - matches: [{method: FETCH}]\n"),
          "r.yaml:6:24: spec.rules[0].matches[0].method: unknown method \"FETCH\" (GET, HEAD, "
          "POST, PUT, DELETE, CONNECT, OPTIONS, TRACE or PATCH)");
    fails(HR("  rules:\n  - filters: [{type: RequestHeaderModifier, urlRewrite: {}}]\n"),
          "r.yaml:6:57: spec.rules[0].filters[0].urlRewrite: must not be set when type is "
          "RequestHeaderModifier");
    fails(HR("  rules:\n  - filters: [{type: URLRewrite}]\n"),
          "r.yaml:6:15: spec.rules[0].filters[0].urlRewrite: required when type is URLRewrite");
    fails(HR("  rules:\n  - filters: [{type: ExtensionRef, extensionRef: {}}]\n"),
          "r.yaml:6:22: spec.rules[0].filters[0].type: filter type ExtensionRef is not "
          "supported");
    fails(HR("  rules:\n  - filters: [{type: Magic}]\n"),
          "r.yaml:6:22: spec.rules[0].filters[0].type: unknown filter type \"Magic\" "
          "(RequestHeaderModifier, ResponseHeaderModifier, RequestMirror, RequestRedirect, "
          "URLRewrite or ExtensionRef)");
    fails(HR("  rules:\n  - filters:\n    - {type: RequestRedirect, requestRedirect: {}}\n"
             "    - {type: URLRewrite, urlRewrite: {}}\n"),
          "r.yaml:8:7: spec.rules[0].filters[1]: RequestRedirect and URLRewrite must not both be "
          "used");
    fails(HR("  rules:\n  - filters:\n    - {type: RequestHeaderModifier, requestHeaderModifier: "
             "{set: [{name: A, value: b}, {name: a, value: c}]}}\n"),
          "r.yaml:7:95: spec.rules[0].filters[0].requestHeaderModifier.set[1].name: duplicate "
          "header name \"a\"");
    fails(HR("  rules:\n  - filters: [{type: RequestRedirect, requestRedirect: {statusCode: "
             "304}}]\n"),
          "r.yaml:6:69: spec.rules[0].filters[0].requestRedirect.statusCode: 304 is not a "
          "redirect status (301, 302, 303, 307 or 308)");
    fails(HR("  rules:\n  - filters: [{type: RequestRedirect, requestRedirect: {scheme: ftp}}]\n"),
          "r.yaml:6:65: spec.rules[0].filters[0].requestRedirect.scheme: unknown scheme \"ftp\" "
          "(http or https)");
    fails(HR("  rules:\n  - filters: [{type: URLRewrite, urlRewrite: {path: {type: "
             "ReplaceFullPath, replacePrefixMatch: /x}}}]\n"),
          "r.yaml:6:97: spec.rules[0].filters[0].urlRewrite.path.replacePrefixMatch: must not be "
          "set when type is ReplaceFullPath");
    fails(HR("  rules:\n  - matches: [{path: {type: Exact, value: /a}}]\n    filters: [{type: "
             "URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: "
             "/b}}}]\n"),
          "r.yaml:7:15: spec.rules[0].filters: ReplacePrefixMatch needs exactly one match, of "
          "path type PathPrefix");
    fails(
        HR("  rules:\n  - filters: [{type: RequestMirror, requestMirror: {backendRef: {name: "
           "m, port: 80}, percent: 101}}]\n"),
        "r.yaml:6:95: spec.rules[0].filters[0].requestMirror.percent: 101 is out of range 0..100");
    fails(HR("  rules:\n  - filters: [{type: RequestMirror, requestMirror: {backendRef: {name: "
             "m}}}]\n"),
          "r.yaml:6:65: spec.rules[0].filters[0].requestMirror.backendRef.port: required for a "
          "Service backend");
    fails(HR("  rules:\n  - filters: [{type: RequestMirror, requestMirror: {backendRef: {name: "
             "m, port: 80}, fraction: {numerator: 3, denominator: 2}}}]\n"),
          "r.yaml:6:108: spec.rules[0].filters[0].requestMirror.fraction.numerator: must not be "
          "greater than the denominator (2)");
    fails(HR("  rules:\n  - backendRefs: [{name: a, port: 80, weight: 1000001}]\n"),
          "r.yaml:6:47: spec.rules[0].backendRefs[0].weight: 1000001 is out of range 0..1000000");
    fails(HR("  rules:\n  - backendRefs: [{name: a}]\n"),
          "r.yaml:6:19: spec.rules[0].backendRefs[0].port: required for a Service backend");
    fails(HR("  rules:\n  - timeouts: {request: 10sec}\n"),
          "r.yaml:6:25: spec.rules[0].timeouts.request: \"10sec\" is not a valid duration (1 to "
          "4 parts of up to 5 digits and h, m, s or ms, e.g. 1m30s)");
    fails(HR("  rules:\n  - timeouts: {request: 1s, backendRequest: 2s}\n"),
          "r.yaml:6:45: spec.rules[0].timeouts.backendRequest: must not be longer than request "
          "(1s)");
    fails(HR("  rules:\n  - retry: {codes: [200]}\n"),
          "r.yaml:6:21: spec.rules[0].retry.codes[0]: 200 is not a retryable status (400..599)");
    fails(HR("  rules:\n  - retry: {attempts: -1}\n"),
          "r.yaml:6:23: spec.rules[0].retry.attempts: -1 is out of range 0..2147483647");
    fails(HR("  rules:\n  - sessionPersistence: {}\n"),
          "r.yaml:6:25: spec.rules[0].sessionPersistence: session persistence is not supported");
    fails(GR("  rules:\n  - timeouts: {request: 1s}\n"),
          "r.yaml:6:5: spec.rules[0].timeouts: unknown field");
    fails(GR("  rules:\n  - matches: [{method: {}}]\n"),
          "r.yaml:6:24: spec.rules[0].matches[0].method: one or both of service and method must "
          "be given");
    fails(GR("  rules:\n  - matches: [{method: {service: \"a..b\"}}]\n"),
          "r.yaml:6:34: spec.rules[0].matches[0].method.service: \"a..b\" is not a valid gRPC "
          "service name");
    fails(GR("  rules:\n  - filters: [{type: URLRewrite, urlRewrite: {}}]\n"),
          "r.yaml:6:22: spec.rules[0].filters[0].type: unknown filter type \"URLRewrite\" "
          "(RequestHeaderModifier, ResponseHeaderModifier, RequestMirror or ExtensionRef)");
    assert_int_equal(failed, 0);
}

static void test_authz_l7(void **state)
{
    (void)state;
    struct veil_res *a =
        ok("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\n"
           "spec:\n  rules:\n  - to: [{operation: {ports: [\"80\"]}}]\n  - from: [{source: "
           "{namespaces: [a]}}]\n    to: [{operation: {methods: [GET]}}]\n");
    assert_string_equal(a->u.authz.l7_field, "spec.rules[1].to[0].operation.methods");
    assert_false(a->u.authz.has_target_refs);
    veil_res_free(a);
    a = ok("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\n"
           "spec:\n  rules:\n  - when: [{key: source.ip, values: [1.2.3.4]}, {key: "
           "\"request.headers[x]\", values: [y]}]\n");
    assert_string_equal(a->u.authz.l7_field, "spec.rules[0].when[1]");
    veil_res_free(a);
    a = ok("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\n"
           "spec:\n  targetRefs: [{kind: Service, group: \"\", name: s}]\n  rules:\n  - from: "
           "[{source: {principals: [x], requestPrincipals: [\"*\"]}}]\n");
    assert_string_equal(a->u.authz.l7_field, "spec.rules[0].from[0].source.requestPrincipals");
    assert_true(a->u.authz.has_target_refs);
    veil_res_free(a);
    a = ok("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: a}\n"
           "spec:\n  rules:\n  - from: [{source: {principals: [x]}}]\n");
    assert_null(a->u.authz.l7_field);
    veil_res_free(a);
}

static void test_route_alloc_failures(void **state)
{
    (void)state;
    const char *text =
        HR(PARENT "  rules:\n  - matches: [{path: {value: /a}}]\n"
                  "    filters: [{type: RequestMirror, requestMirror: {backendRef: "
                  "{name: m, port: 80}}}]\n    backendRefs: [{name: a, port: 80}]\n");
    struct veil_conf *c;
    assert_int_equal(veil_conf_parse_yaml(&c, text, strlen(text), "r.yaml", NULL), 0);
    for (long n = 0;; n++) {
        struct veil_res *r = NULL;
        struct veil_conf_err err;
        veil_alloc_fail_after(n);
        int rc = veil_res_parse(veil_conf_doc(c, 0), VEIL_RES_SRC_API, &r, &err);
        veil_alloc_fail_reset();
        if (rc == 0) {
            assert_int_equal(r->u.route.nbackends, 2);
            veil_res_free(r);
            break;
        }
        assert_int_equal(rc, -ENOMEM);
        assert_null(r);
    }
    veil_conf_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_service),    cmocka_unit_test(test_pod_and_workload_entry),
        cmocka_unit_test(test_policies),   cmocka_unit_test(test_ignored_kind),
        cmocka_unit_test(test_errors),     cmocka_unit_test(test_alloc_failures),
        cmocka_unit_test(test_cidr),       cmocka_unit_test(test_http_route),
        cmocka_unit_test(test_grpc_route), cmocka_unit_test(test_route_errors),
        cmocka_unit_test(test_authz_l7),   cmocka_unit_test(test_route_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
