#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "node/authz.h"

/* ---- helpers ---- */

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
    if (j == NULL)
        fail_msg("bad test JSON: %s: %s", e.text, text);
    return j;
}

/* Sets an AuthorizationPolicy; returns set's rc; err kept in last_err. */
static char last_err[512];

static int set(struct veil_authz *a, const char *ns, const char *name, const char *spec)
{
    json_t *j = J(spec);
    int rc = veil_authz_set(a, ns, name, j, last_err, sizeof(last_err));
    json_decref(j);
    return rc;
}

static int peer_set(struct veil_authz *a, const char *ns, const char *name, const char *spec)
{
    json_t *j = J(spec);
    int rc = veil_authz_peer_set(a, ns, name, j, last_err, sizeof(last_err));
    json_decref(j);
    return rc;
}

static void ip4(struct veil_authz_ip *ip, const char *s)
{
    ip->family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, s, &ip->u.v4), 1);
}

static void ip6(struct veil_authz_ip *ip, const char *s)
{
    ip->family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, s, &ip->u.v6), 1);
}

static json_t *labels_web; /* {"app":"web","tier":"front"} */

/* A request to app=web in "default" on port 80 from default/sleep at 10.0.0.5. */
static struct veil_authz_req req(void)
{
    struct veil_authz_req r = {
        .dst_ns = "default",
        .dst_labels = {veil_authz_json_label, labels_web},
        .dst_port = 80,
        .src_principal = "spiffe://cluster.local/ns/default/sa/sleep",
    };
    ip4(&r.src_ip, "10.0.0.5");
    ip4(&r.dst_ip, "10.0.1.1");
    return r;
}

static enum veil_authz_verdict check(const struct veil_authz *a, const struct veil_authz_req *r,
                                     struct veil_authz_decision *d)
{
    return veil_authz_decide(a, r, d);
}

#define ALLOWED(a, r) assert_int_equal(check(a, r, NULL), VEIL_AUTHZ_ALLOW)
#define DENIED(a, r)  assert_int_equal(check(a, r, NULL), VEIL_AUTHZ_DENY)

static int group_setup(void **state)
{
    (void)state;
    labels_web = J("{\"app\":\"web\",\"tier\":\"front\"}");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    json_decref(labels_web);
    return 0;
}

/* ---- decisions ---- */

static void test_no_policy_allows(void **state)
{
    (void)state;
    struct veil_authz *a = veil_authz_new(NULL);
    struct veil_authz_req r = req();
    struct veil_authz_decision d;
    assert_int_equal(check(a, &r, &d), VEIL_AUTHZ_ALLOW);
    assert_int_equal(d.reason, VEIL_AUTHZ_NO_POLICY);
    assert_string_equal(d.policy, "");
    /* DENY and AUDIT policies alone do not turn on allow-listing */
    assert_int_equal(set(a, "default", "d",
                         "{\"action\":\"DENY\",\"rules\":[{\"from\":[{\"source\":"
                         "{\"namespaces\":[\"evil\"]}}]}]}"),
                     0);
    assert_int_equal(set(a, "default", "au", "{\"action\":\"AUDIT\",\"rules\":[{}]}"), 0);
    assert_int_equal(check(a, &r, &d), VEIL_AUTHZ_ALLOW);
    assert_int_equal(d.reason, VEIL_AUTHZ_NO_POLICY);
    assert_string_equal(d.audit, "default/au");
    veil_authz_free(a);
}

static void test_deny_wins(void **state)
{
    (void)state;
    struct veil_authz *a = veil_authz_new(NULL);
    struct veil_authz_req r = req();
    struct veil_authz_decision d;
    char name[64];
    assert_int_equal(set(a, "default", "allow-all", "{\"rules\":[{}]}"), 0);
    ALLOWED(a, &r);
    assert_int_equal(set(a, "default", "deny-sleep",
                         "{\"action\":\"DENY\",\"rules\":[{\"from\":[{\"source\":{\"principals\":"
                         "[\"cluster.local/ns/default/sa/sleep\"]}}]}]}"),
                     0);
    assert_int_equal(check(a, &r, &d), VEIL_AUTHZ_DENY);
    assert_int_equal(d.reason, VEIL_AUTHZ_DENY_MATCHED);
    assert_string_equal(d.policy, "default/deny-sleep");
    assert_int_equal(veil_authz_check(a, &r, name, sizeof(name)), VEIL_AUTHZ_DENY);
    assert_string_equal(name, "default/deny-sleep");
    r.src_principal = "spiffe://cluster.local/ns/default/sa/other";
    assert_int_equal(veil_authz_check(a, &r, name, sizeof(name)), VEIL_AUTHZ_ALLOW);
    assert_string_equal(name, "default/allow-all");
    veil_authz_free(a);
}

static void test_allow_must_match(void **state)
{
    (void)state;
    struct veil_authz *a = veil_authz_new(NULL);
    struct veil_authz_req r = req();
    struct veil_authz_decision d;
    assert_int_equal(set(a, "default", "from-shop",
                         "{\"action\":\"ALLOW\",\"rules\":[{\"from\":[{\"source\":{\"namespaces\":"
                         "[\"shop\"]}}]}]}"),
                     0);
    assert_int_equal(check(a, &r, &d), VEIL_AUTHZ_DENY);
    assert_int_equal(d.reason, VEIL_AUTHZ_NO_ALLOW_MATCHED);
    assert_string_equal(d.policy, "");
    r.src_principal = "spiffe://cluster.local/ns/shop/sa/cart";
    assert_int_equal(check(a, &r, &d), VEIL_AUTHZ_ALLOW);
    assert_int_equal(d.reason, VEIL_AUTHZ_ALLOW_MATCHED);
    assert_string_equal(d.policy, "default/from-shop");
    /* a second ALLOW policy adds to the first */
    assert_int_equal(set(a, "default", "from-default",
                         "{\"rules\":[{\"from\":[{\"source\":{\"namespaces\":[\"default\"]}}]}]}"),
                     0);
    r.src_principal = "spiffe://cluster.local/ns/default/sa/sleep";
    ALLOWED(a, &r);
    /* plaintext matches no namespace */
    r.src_principal = NULL;
    DENIED(a, &r);
    /* an explicit source namespace wins over the principal's */
    r.src_principal = "spiffe://cluster.local/ns/default/sa/sleep";
    r.src_ns = "elsewhere";
    DENIED(a, &r);
    veil_authz_free(a);
}

static void test_empty_rules(void **state)
{
    (void)state;
    struct veil_authz *a = veil_authz_new(NULL);
    struct veil_authz_req r = req();
    /* spec {}: ALLOW with no rules = allow nothing */
    assert_int_equal(set(a, "default", "nothing", "{}"), 0);
    DENIED(a, &r);
    /* a null spec is the same */
    assert_int_equal(veil_authz_set(a, "default", "nothing", NULL, NULL, 0), 0);
    DENIED(a, &r);
    assert_int_equal(set(a, "default", "nothing", "{\"rules\":[]}"), 0);
    DENIED(a, &r);
    /* a rule {} matches everything, also plaintext */
    assert_int_equal(set(a, "default", "all", "{\"rules\":[{}]}"), 0);
    r.src_principal = NULL;
    ALLOWED(a, &r);
    /* empty from/to lists are "not given" */
    assert_int_equal(set(a, "default", "all", "{\"rules\":[{\"from\":[],\"to\":[],\"when\":[]}]}"),
                     0);
    ALLOWED(a, &r);
    /* DENY with no rules denies nothing; DENY with {} denies all */
    veil_authz_clear(a);
    assert_int_equal(set(a, "default", "d", "{\"action\":\"DENY\"}"), 0);
    ALLOWED(a, &r);
    assert_int_equal(set(a, "default", "d", "{\"action\":\"DENY\",\"rules\":[{}]}"), 0);
    DENIED(a, &r);
    veil_authz_free(a);
}

static void test_principals(void **state)
{
    (void)state;
    struct veil_authz *a = veil_authz_new(NULL);
    struct veil_authz_req r = req();
    struct {
        const char *pat;
        bool match;
    } cases[] = {
        {"cluster.local/ns/default/sa/sleep", true},
        {"spiffe://cluster.local/ns/default/sa/sleep", true},
        {"cluster.local/ns/default/sa/sleepy", false},
        {"cluster.local/ns/default/*", true},
        {"cluster.local/ns/shop/*", false},
        {"*/sa/sleep", true},
        {"*/sa/other", false},
        {"*", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char spec[256];
        snprintf(spec, sizeof(spec),
                 "{\"rules\":[{\"from\":[{\"source\":{\"principals\":[\"%s\"]}}]}]}", cases[i].pat);
        assert_int_equal(set(a, "default", "p", spec), 0);
        r.src_principal = "spiffe://cluster.local/ns/default/sa/sleep";
        assert_int_equal(check(a, &r, NULL), cases[i].match ? VEIL_AUTHZ_ALLOW : VEIL_AUTHZ_DENY);
        /* plaintext never matches a principal, not even "*" */
        r.src_principal = NULL;
        DENIED(a, &r);
    }
    /* notPrincipals: everyone but sleep; plaintext is "not sleep" */
    assert_int_equal(set(a, "default", "p",
                         "{\"rules\":[{\"from\":[{\"source\":{\"notPrincipals\":[\"*/sa/sleep\"]}}]"
                         "}]}"),
                     0);
    r.src_principal = "spiffe://cluster.local/ns/default/sa/sleep";
    DENIED(a, &r);
    r.src_principal = "spiffe://cluster.local/ns/default/sa/other";
    ALLOWED(a, &r);
    r.src_principal = NULL;
    ALLOWED(a, &r);
    /* notPrincipals: ["*"] = unauthenticated only */
    assert_int_equal(set(a, "default", "p",
                         "{\"rules\":[{\"from\":[{\"source\":{\"notPrincipals\":[\"*\"]}}]}]}"),
                     0);
    ALLOWED(a, &r);
    r.src_principal = "spiffe://cluster.local/ns/default/sa/other";
    DENIED(a, &r);
    veil_authz_free(a);
}

static void test_namespaces(void **state)
{
    (void)state;
    struct veil_authz *a = veil_authz_new(NULL);
    struct veil_authz_req r = req();
    assert_int_equal(set(a, "default", "n",
                         "{\"rules\":[{\"from\":[{\"source\":{\"namespaces\":[\"def*\",\"*-prod\"],"
                         "\"notNamespaces\":[\"default-x\"]}}]}]}"),
                     0);
    ALLOWED(a, &r);
    r.src_principal = "spiffe://cluster.local/ns/shop-prod/sa/x";
    ALLOWED(a, &r);
    r.src_principal = "spiffe://cluster.local/ns/default-x/sa/x";
    DENIED(a, &r);
    r.src_principal = "spiffe://cluster.local/ns/shop/sa/x";
    DENIED(a, &r);
    /* a principal without /ns/ has no namespace */
    r.src_principal = "spiffe://cluster.local/weird";
    DENIED(a, &r);
    char ns[8];
    assert_int_equal(veil_authz_principal_ns("spiffe://td/ns/abc/sa/x", ns, sizeof(ns)), 0);
    assert_string_equal(ns, "abc");
    assert_int_equal(veil_authz_principal_ns("td/ns/abc/sa/x", ns, sizeof(ns)), 0);
    assert_int_equal(veil_authz_principal_ns("spiffe://td/ns/abc", ns, sizeof(ns)), -EINVAL);
    assert_int_equal(veil_authz_principal_ns("spiffe://td/ns//sa/x", ns, sizeof(ns)), -EINVAL);
    assert_int_equal(veil_authz_principal_ns("spiffe://td/ns/abcdefgh/sa/x", ns, sizeof(ns)),
                     -ENOBUFS);
    assert_int_equal(veil_authz_principal_ns(NULL, ns, sizeof(ns)), -EINVAL);
    veil_authz_free(a);
}

static void test_ip_blocks(void **state)
{
    (void)state;
    struct veil_authz *a = veil_authz_new(NULL);
    struct veil_authz_req r = req();
    assert_int_equal(set(a, "default", "ip",
                         "{\"rules\":[{\"from\":[{\"source\":{\"ipBlocks\":[\"10.0.0.0/24\","
                         "\"192.168.1.7\",\"fd00::/8\"],\"notIpBlocks\":[\"10.0.0.128/25\"]}}]}]}"),
                     0);
    ALLOWED(a, &r); /* 10.0.0.5 */
    ip4(&r.src_ip, "10.0.0.200");
    DENIED(a, &r);
    ip4(&r.src_ip, "10.0.1.5");
    DENIED(a, &r);
    ip4(&r.src_ip, "192.168.1.7");
    ALLOWED(a, &r);
    ip4(&r.src_ip, "192.168.1.8");
    DENIED(a, &r);
    ip6(&r.src_ip, "fd12::1");
    ALLOWED(a, &r);
    ip6(&r.src_ip, "fe80::1");
    DENIED(a, &r);
    ip6(&r.src_ip, "::ffff:10.0.0.9"); /* mapped: compared as IPv4 */
    ALLOWED(a, &r);
    r.src_ip.family = 0; /* unknown */
    DENIED(a, &r);
    /* remoteIpBlocks are the source address at L4; /0 and odd prefixes */
    assert_int_equal(
        set(a, "default", "ip",
            "{\"rules\":[{\"from\":[{\"source\":{\"remoteIpBlocks\":[\"10.0.0.0/"
            "13\",\"::ffff:172.16.0.0/108\"],\"notRemoteIpBlocks\":[\"10.7.0.0/16\"]}}]"
            "}]}"),
        0);
    ip4(&r.src_ip, "10.7.255.1");
    DENIED(a, &r);
    ip4(&r.src_ip, "10.6.255.1");
    ALLOWED(a, &r);
    ip4(&r.src_ip, "10.8.0.1");
    DENIED(a, &r);
    ip4(&r.src_ip, "172.16.3.3");
    ALLOWED(a, &r);
    assert_int_equal(set(a, "default", "ip",
                         "{\"rules\":[{\"from\":[{\"source\":{\"ipBlocks\":[\"0.0.0.0/0\"]}}]}]}"),
                     0);
    ALLOWED(a, &r);
    ip6(&r.src_ip, "2001:db8::1");
    DENIED(a, &r);
    /* invalid CIDRs are refused, the previous version stays */
    static const char *const bad[] = {"300.0.0.0/8", "10.0.0.0/33", "fd00::/129", "10.0.0.0/",
                                      "10.0.0.0/-1", "10.0.0/8",    "",           "10.0.0.0/8x",
                                      "/8"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char spec[256];
        snprintf(spec, sizeof(spec),
                 "{\"rules\":[{\"from\":[{\"source\":{\"ipBlocks\":[\"1.2.3.4\",\"%s\"]}}]}]}",
                 bad[i]);
        assert_int_equal(set(a, "default", "ip", spec), -EINVAL);
        char want[200];
        snprintf(want, sizeof(want),
                 "spec.rules[0].from[0].source.ipBlocks[1]: \"%s\" is not a valid IP address or "
                 "CIDR",
                 bad[i]);
        assert_string_equal(last_err, want);
    }
    ip4(&r.src_ip, "1.2.3.4");
    ALLOWED(a, &r); /* still 0.0.0.0/0 */
    veil_authz_free(a);
}

static void test_ports_and_conditions(void **state)
{
    (void)state;
    struct veil_authz *a = veil_authz_new(NULL);
    struct veil_authz_req r = req();
    assert_int_equal(set(a, "default", "ports",
                         "{\"rules\":[{\"to\":[{\"operation\":{\"ports\":[\"80\",8080]}}]}]}"),
                     0);
    ALLOWED(a, &r);
    r.dst_port = 8080;
    ALLOWED(a, &r);
    r.dst_port = 443;
    DENIED(a, &r);
    assert_int_equal(set(a, "default", "ports",
                         "{\"rules\":[{\"to\":[{\"operation\":{\"notPorts\":[\"443\"]}}]}]}"),
                     0);
    DENIED(a, &r);
    r.dst_port = 80;
    ALLOWED(a, &r);
    /* bad ports refused */
    assert_int_equal(
        set(a, "default", "ports", "{\"rules\":[{\"to\":[{\"operation\":{\"ports\":[\"0\"]}}]}]}"),
        -EINVAL);
    assert_string_equal(last_err,
                        "spec.rules[0].to[0].operation.ports[0]: not a valid port (1..65535)");
    assert_int_equal(set(a, "default", "ports",
                         "{\"rules\":[{\"to\":[{\"operation\":{\"ports\":[\"80-90\"]}}]}]}"),
                     -EINVAL);
    assert_int_equal(
        set(a, "default", "ports", "{\"rules\":[{\"to\":[{\"operation\":{\"ports\":[65536]}}]}]}"),
        -EINVAL);
    /* when: L4 keys; all conditions must hold */
    assert_int_equal(set(a, "default", "ports",
                         "{\"rules\":[{\"when\":["
                         "{\"key\":\"source.ip\",\"values\":[\"10.0.0.0/8\"]},"
                         "{\"key\":\"source.namespace\",\"notValues\":[\"shop\"]},"
                         "{\"key\":\"source.principal\",\"values\":[\"*/sa/sleep\"]},"
                         "{\"key\":\"destination.port\",\"values\":[\"80\"]},"
                         "{\"key\":\"destination.ip\",\"values\":[\"10.0.1.0/24\"]},"
                         "{\"key\":\"remote.ip\",\"notValues\":[\"10.9.0.0/16\"]}]}]}"),
                     0);
    ALLOWED(a, &r);
    struct veil_authz_req r2 = r;
    r2.dst_port = 81;
    DENIED(a, &r2);
    r2 = r;
    ip4(&r2.dst_ip, "10.0.2.1");
    DENIED(a, &r2);
    r2 = r;
    r2.src_principal = "spiffe://cluster.local/ns/shop/sa/sleep";
    DENIED(a, &r2);
    r2 = r;
    ip4(&r2.src_ip, "10.9.0.1");
    DENIED(a, &r2);
    r2 = r;
    r2.src_principal = "spiffe://cluster.local/ns/default/sa/x";
    DENIED(a, &r2);
    /* conditions are checked */
    assert_int_equal(set(a, "default", "c",
                         "{\"rules\":[{\"when\":[{\"key\":\"source.ip\",\"values\":[\"x\"]}]}]}"),
                     -EINVAL);
    assert_int_equal(set(a, "default", "c", "{\"rules\":[{\"when\":[{\"key\":\"source.ip\"}]}]}"),
                     -EINVAL);
    assert_string_equal(last_err, "spec.rules[0].when[0]: values or notValues required");
    assert_int_equal(set(a, "default", "c", "{\"rules\":[{\"when\":[{\"values\":[\"a\"]}]}]}"),
                     -EINVAL);
    assert_string_equal(last_err, "spec.rules[0].when[0].key: required field is missing");
    assert_int_equal(
        set(a, "default", "c",
            "{\"rules\":[{\"when\":[{\"key\":\"destination.port\",\"values\":[\"http\"]}]}]}"),
        -EINVAL);
    veil_authz_free(a);
}

static void test_rules_are_or_fields_are_and(void **state)
{
    (void)state;
    struct veil_authz *a = veil_authz_new(NULL);
    struct veil_authz_req r = req();
    /* one rule: from ns shop AND to port 80; second rule: from 10.0.0.0/24 */
    assert_int_equal(set(a, "default", "x",
                         "{\"rules\":["
                         "{\"from\":[{\"source\":{\"namespaces\":[\"shop\"]}}],"
                         " \"to\":[{\"operation\":{\"ports\":[\"80\"]}}]},"
                         "{\"from\":[{\"source\":{\"ipBlocks\":[\"10.0.0.0/24\"]}}]}]}"),
                     0);
    ALLOWED(a, &r); /* second rule */
    ip4(&r.src_ip, "10.1.0.1");
    DENIED(a, &r);
    r.src_principal = "spiffe://cluster.local/ns/shop/sa/x";
    ALLOWED(a, &r);
    r.dst_port = 81;
    DENIED(a, &r);
    /* from: [A, B] is A or B; inside one source, all fields */
    assert_int_equal(set(a, "default", "x",
                         "{\"rules\":[{\"from\":["
                         "{\"source\":{\"namespaces\":[\"shop\"],\"ipBlocks\":[\"10.2.0.0/16\"]}},"
                         "{\"source\":{\"principals\":[\"*/sa/admin\"]}}]}]}"),
                     0);
    DENIED(a, &r); /* shop but not 10.2/16 */
    ip4(&r.src_ip, "10.2.0.1");
    ALLOWED(a, &r);
    ip4(&r.src_ip, "10.1.0.1");
    r.src_principal = "spiffe://cluster.local/ns/any/sa/admin";
    ALLOWED(a, &r);
    veil_authz_free(a);
}

static void test_l7_fields(void **state)
{
    (void)state;
    struct veil_authz *a = veil_authz_new(NULL);
    struct veil_authz_req r = req();
    struct veil_authz_decision d;
    /* ALLOW: a rule with an L7 part never matches; the note says so */
    assert_int_equal(set(a, "default", "get",
                         "{\"rules\":[{\"to\":[{\"operation\":{\"methods\":[\"GET\"]}}]}]}"),
                     1);
    assert_non_null(strstr(last_err, "spec.rules[0].to[0].operation.methods: L7 field in an "
                                     "ALLOW policy"));
    assert_int_equal(check(a, &r, &d), VEIL_AUTHZ_DENY);
    assert_int_equal(d.reason, VEIL_AUTHZ_NO_ALLOW_MATCHED);
    /* ... while its other, L4-only rules still work */
    assert_int_equal(set(a, "default", "get",
                         "{\"rules\":[{\"to\":[{\"operation\":{\"paths\":[\"/a\"]}}]},"
                         "{\"from\":[{\"source\":{\"namespaces\":[\"default\"]}}]}]}"),
                     1);
    ALLOWED(a, &r);
    /* requestPrincipals and L7 condition keys count as L7 too */
    assert_int_equal(set(a, "default", "get",
                         "{\"rules\":[{\"from\":[{\"source\":{\"requestPrincipals\":[\"*\"]}}]}]}"),
                     1);
    DENIED(a, &r);
    assert_int_equal(set(a, "default", "get",
                         "{\"rules\":[{\"when\":[{\"key\":\"request.headers[x]\",\"values\":[\"1\"]"
                         "}]}]}"),
                     1);
    assert_non_null(strstr(last_err, "spec.rules[0].when[0].key:"));
    DENIED(a, &r);
    /* DENY: the L7 parts are dropped, so it denies more */
    veil_authz_clear(a);
    assert_int_equal(set(a, "default", "no-delete",
                         "{\"action\":\"DENY\",\"rules\":[{\"to\":[{\"operation\":"
                         "{\"methods\":[\"DELETE\"],\"ports\":[\"80\"]}}]}]}"),
                     1);
    assert_non_null(strstr(last_err, "applies to more traffic"));
    assert_int_equal(check(a, &r, &d), VEIL_AUTHZ_DENY);
    assert_string_equal(d.policy, "default/no-delete");
    r.dst_port = 81; /* the L4 part still applies */
    ALLOWED(a, &r);
    r.dst_port = 80;
    assert_int_equal(set(a, "default", "no-delete",
                         "{\"action\":\"DENY\",\"rules\":[{\"from\":[{\"source\":{"
                         "\"namespaces\":[\"shop\"],\"notRequestPrincipals\":[\"*\"]}}],"
                         "\"when\":[{\"key\":\"request.auth.claims[iss]\",\"values\":[\"x\"]}]}]}"),
                     1);
    ALLOWED(a, &r); /* default is not shop */
    r.src_principal = "spiffe://cluster.local/ns/shop/sa/x";
    DENIED(a, &r);
    /* not-forms and hosts are L7 too */
    assert_int_equal(set(a, "default", "h",
                         "{\"action\":\"AUDIT\",\"rules\":[{\"to\":[{\"operation\":{\"notHosts\":"
                         "[\"a\"]}}]}]}"),
                     1);
    veil_authz_free(a);
}

static void test_selector_and_root(void **state)
{
    (void)state;
    struct veil_authz *a = veil_authz_new(NULL);
    struct veil_authz_req r = req();
    struct veil_authz_decision d;
    /* selector not matching: not applied */
    assert_int_equal(set(a, "default", "db-only",
                         "{\"selector\":{\"matchLabels\":{\"app\":\"db\"}},\"rules\":[]}"),
                     0);
    ALLOWED(a, &r);
    /* matching all given labels */
    assert_int_equal(set(a, "default", "web-only",
                         "{\"selector\":{\"matchLabels\":{\"app\":\"web\",\"tier\":\"front\"}},"
                         "\"rules\":[]}"),
                     0);
    DENIED(a, &r);
    assert_int_equal(set(a, "default", "web-only",
                         "{\"selector\":{\"matchLabels\":{\"app\":\"web\",\"tier\":\"back\"}},"
                         "\"rules\":[]}"),
                     0);
    ALLOWED(a, &r);
    /* no labels at all: only selector-less policies (and empty matchLabels) apply */
    struct veil_authz_req nl = r;
    nl.dst_labels.get = NULL;
    assert_int_equal(
        set(a, "default", "web-only", "{\"selector\":{\"matchLabels\":{}},\"rules\":[]}"), 0);
    DENIED(a, &nl);
    assert_int_equal(veil_authz_remove(a, "default", "web-only"), 0);
    ALLOWED(a, &nl);
    /* another namespace's policy does not apply */
    assert_int_equal(set(a, "shop", "nothing", "{}"), 0);
    ALLOWED(a, &r);
    /* the root namespace applies everywhere, with its selector */
    assert_int_equal(
        set(a, "istio-system", "mesh-deny",
            "{\"action\":\"DENY\",\"selector\":{\"matchLabels\":{\"app\":\"web\"}},"
            "\"rules\":[{\"from\":[{\"source\":{\"notNamespaces\":[\"default\"]}}]}]}"),
        0);
    ALLOWED(a, &r);
    r.src_principal = "spiffe://cluster.local/ns/other/sa/x";
    assert_int_equal(check(a, &r, &d), VEIL_AUTHZ_DENY);
    assert_string_equal(d.policy, "istio-system/mesh-deny");
    r.src_principal = NULL; /* plaintext is "not default" */
    DENIED(a, &r);
    /* a configurable root namespace */
    struct veil_authz *b = veil_authz_new("mesh-root");
    assert_int_equal(set(b, "istio-system", "x", "{}"), 0);
    ALLOWED(b, &r);
    assert_int_equal(set(b, "mesh-root", "x", "{}"), 0);
    DENIED(b, &r);
    /* a request without namespace matches nothing */
    r.dst_ns = NULL;
    ALLOWED(b, &r);
    veil_authz_free(b);
    veil_authz_free(a);
}

static void test_ignored_policies(void **state)
{
    (void)state;
    struct veil_authz *a = veil_authz_new(NULL);
    struct veil_authz_req r = req();
    assert_int_equal(set(a, "default", "ext",
                         "{\"action\":\"CUSTOM\",\"provider\":{\"name\":\"x\"},\"rules\":[{}]}"),
                     1);
    assert_string_equal(last_err, "spec.action: action CUSTOM (external authorization) is not "
                                  "supported; policy ignored");
    ALLOWED(a, &r);
    assert_int_equal(set(a, "default", "wp",
                         "{\"targetRefs\":[{\"kind\":\"Service\",\"name\":\"web\"}],\"rules\":[]}"),
                     1);
    assert_non_null(strstr(last_err, "waypoint"));
    ALLOWED(a, &r);
    assert_int_equal(veil_authz_count(a), 2);
    veil_authz_free(a);
}

static void test_refused_specs(void **state)
{
    (void)state;
    struct veil_authz *a = veil_authz_new(NULL);
    struct veil_authz_req r = req();
    assert_int_equal(set(a, "default", "p", "{\"rules\":[{}]}"), 0);
    uint64_t gen = veil_authz_generation(a);
    struct {
        const char *spec, *err;
    } cases[] = {
        {"[]", "spec: expected a map"},
        {"{\"action\":\"REJECT\"}",
         "spec.action: unknown action \"REJECT\" (ALLOW, DENY or AUDIT)"},
        {"{\"action\":7}", "spec.action: expected a string"},
        {"{\"rule\":[]}", "spec.rule: unknown field"},
        {"{\"rules\":{}}", "spec.rules: expected a list"},
        {"{\"rules\":[7]}", "spec.rules[0]: expected a map"},
        {"{\"rules\":[{\"from\":[{\"source\":{\"principal\":[\"a\"]}}]}]}",
         "spec.rules[0].from[0].source.principal: unknown field"},
        {"{\"rules\":[{\"from\":[{\"src\":{}}]}]}", "spec.rules[0].from[0].src: unknown field"},
        {"{\"rules\":[{\"from\":[{}]}]}",
         "spec.rules[0].from[0].source: required field is missing"},
        {"{\"rules\":[{\"from\":{}}]}", "spec.rules[0].from: expected a list"},
        {"{\"rules\":[{\"from\":[{\"source\":{\"principals\":[\"\"]}}]}]}",
         "spec.rules[0].from[0].source.principals[0]: must not be empty"},
        {"{\"rules\":[{\"from\":[{\"source\":{\"namespaces\":\"a\"}}]}]}",
         "spec.rules[0].from[0].source.namespaces: expected a list"},
        {"{\"rules\":[{\"from\":[{\"source\":{\"namespaces\":[1]}}]}]}",
         "spec.rules[0].from[0].source.namespaces[0]: expected a string"},
        {"{\"rules\":[{\"to\":[{\"operation\":{\"method\":[\"GET\"]}}]}]}",
         "spec.rules[0].to[0].operation.method: unknown field"},
        {"{\"rules\":[{\"to\":[{\"operation\":7}]}]}",
         "spec.rules[0].to[0].operation: expected a map"},
        {"{\"rules\":[{\"when\":{}}]}", "spec.rules[0].when: expected a list"},
        {"{\"rules\":[{\"when\":[{\"key\":\"a\",\"values\":[\"x\"],\"x\":1}]}]}",
         "spec.rules[0].when[0].x: unknown field"},
        {"{\"selector\":{\"matchLabels\":{\"app\":1}}}",
         "spec.selector.matchLabels.app: expected a string"},
        {"{\"selector\":{\"labels\":{}}}", "spec.selector.labels: unknown field"},
        {"{\"selector\":[]}", "spec.selector: expected a map"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(set(a, "default", "p", cases[i].spec), -EINVAL);
        assert_string_equal(last_err, cases[i].err);
    }
    /* the previous version stays, the generation did not move */
    ALLOWED(a, &r);
    assert_int_equal(veil_authz_generation(a), gen);
    /* a short error buffer is cut, never overrun */
    char small[8];
    json_t *j = J("{\"action\":\"REJECT\"}");
    assert_int_equal(veil_authz_set(a, "default", "p", j, small, sizeof(small)), -EINVAL);
    assert_string_equal(small, "spec.ac");
    json_decref(j);
    veil_authz_free(a);
}

static void test_generation(void **state)
{
    (void)state;
    struct veil_authz *a = veil_authz_new(NULL);
    assert_int_equal(veil_authz_generation(a), 0);
    assert_int_equal(set(a, "default", "p", "{\"rules\":[{}]}"), 0);
    assert_int_equal(veil_authz_generation(a), 1);
    /* the same spec again: unchanged */
    assert_int_equal(set(a, "default", "p", "{\"rules\":[{}]}"), 0);
    assert_int_equal(veil_authz_generation(a), 1);
    assert_string_equal(last_err, "");
    assert_int_equal(set(a, "default", "p", "{\"rules\":[]}"), 0);
    assert_int_equal(veil_authz_generation(a), 2);
    assert_int_equal(veil_authz_remove(a, "default", "nope"), -ENOENT);
    assert_int_equal(veil_authz_remove(a, "default", "p"), 0);
    assert_int_equal(veil_authz_generation(a), 3);
    assert_int_equal(veil_authz_count(a), 0);
    assert_int_equal(peer_set(a, "default", "pa", "{\"mtls\":{\"mode\":\"STRICT\"}}"), 0);
    assert_int_equal(veil_authz_generation(a), 4);
    assert_int_equal(veil_authz_peer_count(a), 1);
    veil_authz_clear(a);
    assert_int_equal(veil_authz_generation(a), 5);
    veil_authz_clear(a);
    assert_int_equal(veil_authz_generation(a), 5);
    assert_int_equal(veil_authz_peer_count(a), 0);
    assert_int_equal(veil_authz_peer_remove(a, "default", "pa"), -ENOENT);
    veil_authz_free(a);
    veil_authz_free(NULL);
}

/* The caller's spec is copied: changing or freeing it later changes nothing. */
static void test_spec_copied(void **state)
{
    (void)state;
    struct veil_authz *a = veil_authz_new(NULL);
    struct veil_authz_req r = req();
    json_t *j = J("{\"selector\":{\"matchLabels\":{\"app\":\"web\"}},\"rules\":[]}");
    assert_int_equal(veil_authz_set(a, "default", "p", j, NULL, 0), 0);
    json_object_set_new(json_object_get(json_object_get(j, "selector"), "matchLabels"), "app",
                        json_string("other"));
    json_decref(j);
    DENIED(a, &r);
    veil_authz_free(a);
}

/* ---- peer authentication ---- */

static enum veil_mtls_mode mode(const struct veil_authz *a, const char *ns, uint16_t port)
{
    struct veil_authz_labels l = {veil_authz_json_label, labels_web};
    return veil_authz_peer_mode(a, ns, &l, port);
}

static void test_peer_precedence(void **state)
{
    (void)state;
    struct veil_authz *a = veil_authz_new(NULL);
    assert_int_equal(mode(a, "default", 80), VEIL_MTLS_PERMISSIVE);
    /* mesh-wide */
    assert_int_equal(peer_set(a, "istio-system", "mesh", "{\"mtls\":{\"mode\":\"STRICT\"}}"), 0);
    assert_int_equal(mode(a, "default", 80), VEIL_MTLS_STRICT);
    assert_int_equal(mode(a, "shop", 80), VEIL_MTLS_STRICT);
    /* namespace beats mesh */
    assert_int_equal(peer_set(a, "default", "ns", "{\"mtls\":{\"mode\":\"PERMISSIVE\"}}"), 0);
    assert_int_equal(mode(a, "default", 80), VEIL_MTLS_PERMISSIVE);
    assert_int_equal(mode(a, "shop", 80), VEIL_MTLS_STRICT);
    /* workload beats namespace */
    assert_int_equal(peer_set(a, "default", "wl",
                              "{\"selector\":{\"matchLabels\":{\"app\":\"web\"}},"
                              "\"mtls\":{\"mode\":\"DISABLE\"}}"),
                     0);
    assert_int_equal(mode(a, "default", 80), VEIL_MTLS_DISABLE);
    struct veil_authz_labels none = {0};
    assert_int_equal(veil_authz_peer_mode(a, "default", &none, 80), VEIL_MTLS_PERMISSIVE);
    assert_int_equal(veil_authz_peer_mode(a, "default", NULL, 80), VEIL_MTLS_PERMISSIVE);
    /* UNSET at workload level inherits the namespace's */
    assert_int_equal(peer_set(a, "default", "wl",
                              "{\"selector\":{\"matchLabels\":{\"app\":\"web\"}},"
                              "\"mtls\":{\"mode\":\"UNSET\"}}"),
                     0);
    assert_int_equal(mode(a, "default", 80), VEIL_MTLS_PERMISSIVE);
    /* and UNSET at namespace level inherits the mesh's */
    assert_int_equal(peer_set(a, "default", "ns", "{}"), 0);
    assert_int_equal(mode(a, "default", 80), VEIL_MTLS_STRICT);
    assert_int_equal(peer_set(a, "default", "ns", "{\"mtls\":{}}"), 0);
    assert_int_equal(mode(a, "default", 80), VEIL_MTLS_STRICT);
    /* a root-namespace policy with a selector is for the root namespace's workloads */
    assert_int_equal(peer_set(a, "istio-system", "sel",
                              "{\"selector\":{\"matchLabels\":{\"app\":\"web\"}},"
                              "\"mtls\":{\"mode\":\"DISABLE\"}}"),
                     0);
    assert_int_equal(mode(a, "default", 80), VEIL_MTLS_STRICT);
    assert_int_equal(mode(a, "istio-system", 80), VEIL_MTLS_DISABLE);
    veil_authz_free(a);
}

static void test_peer_port_level(void **state)
{
    (void)state;
    struct veil_authz *a = veil_authz_new(NULL);
    assert_int_equal(peer_set(a, "default", "wl",
                              "{\"selector\":{\"matchLabels\":{\"app\":\"web\"}},"
                              "\"mtls\":{\"mode\":\"STRICT\"},"
                              "\"portLevelMtls\":{\"8080\":{\"mode\":\"PERMISSIVE\"},"
                              "\"9090\":{\"mode\":\"UNSET\"},\"9000\":{\"mode\":\"DISABLE\"}}}"),
                     0);
    assert_int_equal(mode(a, "default", 80), VEIL_MTLS_STRICT);
    assert_int_equal(mode(a, "default", 8080), VEIL_MTLS_PERMISSIVE);
    assert_int_equal(mode(a, "default", 9000), VEIL_MTLS_DISABLE);
    assert_int_equal(mode(a, "default", 9090), VEIL_MTLS_STRICT);
    assert_int_equal(mode(a, "default", 0), VEIL_MTLS_STRICT);
    /* the oldest selecting policy decides, even if a newer one also selects */
    assert_int_equal(peer_set(a, "default", "wl2",
                              "{\"selector\":{\"matchLabels\":{\"tier\":\"front\"}},"
                              "\"mtls\":{\"mode\":\"DISABLE\"}}"),
                     0);
    assert_int_equal(mode(a, "default", 80), VEIL_MTLS_STRICT);
    assert_int_equal(veil_authz_peer_remove(a, "default", "wl"), 0);
    assert_int_equal(mode(a, "default", 80), VEIL_MTLS_DISABLE);
    /* port level without selector: accepted, ignored, noted */
    assert_int_equal(peer_set(a, "shop", "ns",
                              "{\"mtls\":{\"mode\":\"STRICT\"},"
                              "\"portLevelMtls\":{\"80\":{\"mode\":\"DISABLE\"}}}"),
                     1);
    assert_string_equal(last_err, "spec.portLevelMtls: ignored: port-level modes need a selector");
    assert_int_equal(mode(a, "shop", 80), VEIL_MTLS_STRICT);
    /* refused specs */
    struct {
        const char *spec, *err;
    } bad[] = {
        {"{\"mtls\":{\"mode\":\"ON\"}}",
         "spec.mtls.mode: unknown mode \"ON\" (STRICT, PERMISSIVE, DISABLE or UNSET)"},
        {"{\"mtls\":{\"mod\":\"STRICT\"}}", "spec.mtls.mod: unknown field"},
        {"{\"mtls\":[]}", "spec.mtls: expected a map"},
        {"{\"mtls\":{\"mode\":1}}", "spec.mtls.mode: expected a string"},
        {"{\"portLevelMtls\":{\"0\":{\"mode\":\"STRICT\"}}}",
         "spec.portLevelMtls.0: not a valid port (1..65535)"},
        {"{\"portLevelMtls\":{\"http\":{\"mode\":\"STRICT\"}}}",
         "spec.portLevelMtls.http: not a valid port (1..65535)"},
        {"{\"portLevelMtls\":{\"80\":{\"mode\":\"X\"}}}",
         "spec.portLevelMtls.80.mode: unknown mode \"X\" (STRICT, PERMISSIVE, DISABLE or UNSET)"},
        {"{\"portLevelMtls\":[]}", "spec.portLevelMtls: expected a map"},
        {"{\"mtls\":{},\"x\":1}", "spec.x: unknown field"},
        {"7", "spec: expected a map"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(peer_set(a, "shop", "ns", bad[i].spec), -EINVAL);
        assert_string_equal(last_err, bad[i].err);
    }
    assert_int_equal(mode(a, "shop", 80), VEIL_MTLS_STRICT);
    assert_string_equal(veil_mtls_mode_str(VEIL_MTLS_STRICT), "STRICT");
    assert_string_equal(veil_mtls_mode_str(VEIL_MTLS_PERMISSIVE), "PERMISSIVE");
    assert_string_equal(veil_mtls_mode_str(VEIL_MTLS_DISABLE), "DISABLE");
    assert_string_equal(veil_authz_verdict_str(VEIL_AUTHZ_DENY), "DENY");
    assert_string_equal(veil_authz_verdict_str(VEIL_AUTHZ_ALLOW), "ALLOW");
    veil_authz_free(a);
}

/* ---- the waypoint (L7) ---- */

#define S(lit) ((struct veil_authz_str){(lit), sizeof(lit) - 1})

static const struct veil_authz_header wp_headers[] = {
    {S("X-User"), S("alice")},
    {S("accept"), S("text/html")},
    {S("Accept"), S("application/json")},
    {S("x-empty"), S("")},
};

/* GET /api/items?id=1 to Service shop/web through waypoint shop/wp, from
 * default/sleep at 10.0.0.5, dialled 10.96.0.10:8080. */
static struct veil_authz_l7_req l7req(void)
{
    struct veil_authz_l7_req r = {
        .wp_ns = "shop",
        .wp_name = "wp",
        .svc_ns = "shop",
        .svc_name = "web",
        .src_principal = "spiffe://cluster.local/ns/default/sa/sleep",
        .dst_port = 8080,
        .http = true,
        .method = S("GET"),
        .path = S("/api/items?id=1"),
        .host = S("web.shop.svc.cluster.local:8080"),
        .headers = wp_headers,
        .nheaders = sizeof(wp_headers) / sizeof(wp_headers[0]),
    };
    ip4(&r.src_ip, "10.0.0.5");
    ip4(&r.dst_ip, "10.96.0.10");
    return r;
}

#define WP_ALLOWED(a, r) assert_int_equal(veil_authz_decide_l7(a, r, NULL), VEIL_AUTHZ_ALLOW)
#define WP_DENIED(a, r)  assert_int_equal(veil_authz_decide_l7(a, r, NULL), VEIL_AUTHZ_DENY)

#define TO_WP                                                                                      \
    "\"targetRefs\":[{\"group\":\"gateway.networking.k8s.io\",\"kind\":\"Gateway\",\"name\":"      \
    "\"wp\"}]"
#define TO_WEB "\"targetRefs\":[{\"kind\":\"Service\",\"group\":\"\",\"name\":\"web\"}]"

/* Upserts ALLOW policy shop/p on the waypoint with one rule {to: [{operation: OP}]}. */
static int allow_op(struct veil_authz *a, const char *op)
{
    char spec[512];
    snprintf(spec, sizeof(spec), "{" TO_WP ",\"rules\":[{\"to\":[{\"operation\":%s}]}]}", op);
    return set(a, "shop", "p", spec);
}

/* The example: DENY POST gives a 403-worthy deny while GET passes. */
static void test_wp_deny_post(void **state)
{
    (void)state;
    struct veil_authz *a = veil_authz_new(NULL);
    struct veil_authz_l7_req r = l7req();
    struct veil_authz_decision d;
    assert_int_equal(set(a, "shop", "no-post",
                         "{" TO_WP ",\"action\":\"DENY\",\"rules\":[{\"to\":[{\"operation\":"
                         "{\"methods\":[\"POST\"]}}]}]}"),
                     1);
    assert_string_equal(last_err,
                        "spec.targetRefs: policy attaches to a waypoint; not enforced by the node "
                        "proxy");
    assert_int_equal(veil_authz_decide_l7(a, &r, &d), VEIL_AUTHZ_ALLOW);
    assert_int_equal(d.reason, VEIL_AUTHZ_NO_POLICY);
    r.method = S("POST");
    assert_int_equal(veil_authz_decide_l7(a, &r, &d), VEIL_AUTHZ_DENY);
    assert_int_equal(d.reason, VEIL_AUTHZ_DENY_MATCHED);
    assert_string_equal(d.policy, "shop/no-post");
    /* the node proxy does not enforce it (not even without its L7 part) */
    struct veil_authz_req n = req();
    n.dst_ns = "shop";
    ALLOWED(a, &n);
    /* a plain L4 DENY at the node does not reach the waypoint either */
    assert_int_equal(set(a, "shop", "node-deny", "{\"action\":\"DENY\",\"rules\":[{}]}"), 0);
    DENIED(a, &n);
    r.method = S("GET");
    WP_ALLOWED(a, &r);
    veil_authz_free(a);
}

static void test_wp_paths(void **state)
{
    (void)state;
    struct veil_authz *a = veil_authz_new(NULL);
    struct veil_authz_l7_req r = l7req();
    struct {
        const char *op;
        bool allowed;
    } cases[] = {
        {"{\"paths\":[\"/api/items\"]}", true}, /* the query is not part of it */
        {"{\"paths\":[\"/api/items?id=1\"]}", false},
        {"{\"paths\":[\"/api/item\"]}", false},
        {"{\"paths\":[\"/API/items\"]}", false}, /* case-sensitive */
        {"{\"paths\":[\"/api/*\"]}", true},
        {"{\"paths\":[\"/api/items*\"]}", true},
        {"{\"paths\":[\"/web/*\"]}", false},
        {"{\"paths\":[\"*/items\"]}", true},
        {"{\"paths\":[\"*.png\"]}", false},
        {"{\"paths\":[\"*\"]}", true},
        {"{\"paths\":[\"/x\",\"/api/items\"]}", true},
        {"{\"notPaths\":[\"/admin/*\"]}", true},
        {"{\"notPaths\":[\"/api/*\"]}", false},
        {"{\"paths\":[\"/api/*\"],\"notPaths\":[\"*/items\"]}", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(allow_op(a, cases[i].op), 1);
        if (veil_authz_decide_l7(a, &r, NULL) !=
            (cases[i].allowed ? VEIL_AUTHZ_ALLOW : VEIL_AUTHZ_DENY))
            fail_msg("case %zu: %s", i, cases[i].op);
    }
    /* a fragment ends the path too; "*" needs a non-empty path */
    assert_int_equal(allow_op(a, "{\"paths\":[\"/a\"]}"), 1);
    r.path = S("/a#frag");
    WP_ALLOWED(a, &r);
    assert_int_equal(allow_op(a, "{\"paths\":[\"*\"]}"), 1);
    r.path = S("?q");
    WP_DENIED(a, &r);
    r.path = (struct veil_authz_str){NULL, 0};
    WP_DENIED(a, &r);
    assert_int_equal(allow_op(a, "{\"notPaths\":[\"/a\"]}"), 1);
    WP_ALLOWED(a, &r); /* an absent path matches every not-form */
    veil_authz_free(a);
}

static void test_wp_methods_hosts(void **state)
{
    (void)state;
    struct veil_authz *a = veil_authz_new(NULL);
    struct veil_authz_l7_req r = l7req();
    struct {
        const char *op;
        bool allowed;
    } cases[] = {
        {"{\"methods\":[\"GET\",\"HEAD\"]}", true},
        {"{\"methods\":[\"get\"]}", false}, /* case-sensitive */
        {"{\"methods\":[\"POST\"]}", false},
        {"{\"methods\":[\"*\"]}", true},
        {"{\"notMethods\":[\"POST\",\"DELETE\"]}", true},
        {"{\"notMethods\":[\"GET\"]}", false},
        /* hosts: the Host as received, port included, any case */
        {"{\"hosts\":[\"web.shop.svc.cluster.local:8080\"]}", true},
        {"{\"hosts\":[\"WEB.Shop.svc.cluster.local:8080\"]}", true},
        {"{\"hosts\":[\"web.shop.svc.cluster.local\"]}", false},
        {"{\"hosts\":[\"web.shop.svc.cluster.local:*\"]}", true},
        {"{\"hosts\":[\"WEB.*\"]}", true},
        {"{\"hosts\":[\"*:8080\"]}", true},
        {"{\"hosts\":[\"*.example.com\"]}", false},
        {"{\"hosts\":[\"*\"]}", true},
        {"{\"notHosts\":[\"web.*\"]}", false},
        {"{\"notHosts\":[\"db.*\"]}", true},
        /* fields of one operation are ANDed, with the port (the dialled one) */
        {"{\"methods\":[\"GET\"],\"hosts\":[\"web.*\"],\"ports\":[\"8080\"]}", true},
        {"{\"methods\":[\"GET\"],\"hosts\":[\"web.*\"],\"ports\":[\"80\"]}", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(allow_op(a, cases[i].op), 1);
        if (veil_authz_decide_l7(a, &r, NULL) !=
            (cases[i].allowed ? VEIL_AUTHZ_ALLOW : VEIL_AUTHZ_DENY))
            fail_msg("case %zu: %s", i, cases[i].op);
    }
    /* no Host: hosts ["*"] does not match, notHosts does */
    r.host = (struct veil_authz_str){NULL, 0};
    assert_int_equal(allow_op(a, "{\"hosts\":[\"*\"]}"), 1);
    WP_DENIED(a, &r);
    assert_int_equal(allow_op(a, "{\"notHosts\":[\"web.*\"]}"), 1);
    WP_ALLOWED(a, &r);
    veil_authz_free(a);
}

/* Upserts ALLOW policy shop/p on the waypoint with one rule {when: [COND]}. */
static int allow_when(struct veil_authz *a, const char *cond)
{
    char spec[512];
    snprintf(spec, sizeof(spec), "{" TO_WP ",\"rules\":[{\"when\":[%s]}]}", cond);
    return set(a, "shop", "p", spec);
}

static void test_wp_headers(void **state)
{
    (void)state;
    struct veil_authz *a = veil_authz_new(NULL);
    struct veil_authz_l7_req r = l7req();
    struct {
        const char *cond;
        bool allowed;
    } cases[] = {
        {"{\"key\":\"request.headers[x-user]\",\"values\":[\"alice\"]}", true},
        {"{\"key\":\"request.headers[X-USER]\",\"values\":[\"alice\"]}", true},
        {"{\"key\":\"request.headers[x-user]\",\"values\":[\"Alice\"]}", false},
        {"{\"key\":\"request.headers[x-user]\",\"values\":[\"bob\",\"al*\"]}", true},
        {"{\"key\":\"request.headers[x-user]\",\"values\":[\"*ice\"]}", true},
        {"{\"key\":\"request.headers[x-user]\",\"values\":[\"*\"]}", true},
        {"{\"key\":\"request.headers[x-user]\",\"notValues\":[\"alice\"]}", false},
        {"{\"key\":\"request.headers[x-user]\",\"notValues\":[\"bob\"]}", true},
        {"{\"key\":\"request.headers[x-none]\",\"values\":[\"*\"]}", false},
        {"{\"key\":\"request.headers[x-none]\",\"notValues\":[\"*\"]}", true},
        {"{\"key\":\"request.headers[x-empty]\",\"values\":[\"*\"]}", true},
        {"{\"key\":\"request.headers[x-empty]\",\"values\":[\"\"]}", true},
        /* repeated lines are joined with "," as Envoy does */
        {"{\"key\":\"request.headers[accept]\",\"values\":[\"text/html,application/json\"]}", true},
        {"{\"key\":\"request.headers[accept]\",\"values\":[\"text/html\"]}", false},
        {"{\"key\":\"request.headers[accept]\",\"values\":[\"text/html,*\"]}", true},
        {"{\"key\":\"request.headers[accept]\",\"values\":[\"*html,application/json\"]}", true},
        {"{\"key\":\"request.headers[accept]\",\"values\":[\"*/json\"]}", true},
        {"{\"key\":\"request.headers[accept]\",\"values\":[\"*/xml\"]}", false},
        {"{\"key\":\"request.headers[accept]\",\"values\":[\"text/html,application/jso\"]}", false},
        {"{\"key\":\"request.headers[accept]\",\"values\":[\"text/html,application/json,\"]}",
         false},
        /* pseudo-headers read the request */
        {"{\"key\":\"request.headers[:method]\",\"values\":[\"GET\"]}", true},
        {"{\"key\":\"request.headers[:path]\",\"values\":[\"/api/items?id=1\"]}", true},
        {"{\"key\":\"request.headers[:authority]\",\"values\":[\"web.shop*\"]}", true},
        {"{\"key\":\"request.headers[host]\",\"values\":[\"db*\"]}", false},
        /* the L4 keys work at the waypoint with the caller's attributes */
        {"{\"key\":\"source.namespace\",\"values\":[\"default\"]}", true},
        {"{\"key\":\"source.principal\",\"values\":[\"cluster.local/ns/default/sa/*\"]}", true},
        {"{\"key\":\"source.ip\",\"values\":[\"10.0.0.0/24\"]}", true},
        {"{\"key\":\"remote.ip\",\"values\":[\"192.0.2.1\"]}", false},
        {"{\"key\":\"destination.ip\",\"values\":[\"10.96.0.10\"]}", true},
        {"{\"key\":\"destination.port\",\"values\":[\"8080\"]}", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(allow_when(a, cases[i].cond), 1);
        if (veil_authz_decide_l7(a, &r, NULL) !=
            (cases[i].allowed ? VEIL_AUTHZ_ALLOW : VEIL_AUTHZ_DENY))
            fail_msg("case %zu: %s", i, cases[i].cond);
    }
    /* remote.ip reads remote_ip when the waypoint gives one */
    ip4(&r.remote_ip, "192.0.2.1");
    assert_int_equal(allow_when(a, "{\"key\":\"remote.ip\",\"values\":[\"192.0.2.0/24\"]}"), 1);
    WP_ALLOWED(a, &r);
    /* several conditions are ANDed */
    assert_int_equal(allow_when(a, "{\"key\":\"request.headers[x-user]\",\"values\":[\"alice\"]},"
                                   "{\"key\":\"request.headers[accept]\",\"values\":[\"x\"]}"),
                     1);
    WP_DENIED(a, &r);
    /* a DENY on a header */
    veil_authz_clear(a);
    assert_int_equal(set(a, "shop", "no-bob",
                         "{" TO_WEB ",\"action\":\"DENY\",\"rules\":[{\"when\":[{\"key\":"
                         "\"request.headers[x-user]\",\"values\":[\"bob\"]}]}]}"),
                     1);
    WP_ALLOWED(a, &r);
    static const struct veil_authz_header bob[] = {{S("x-user"), S("bob")}};
    r.headers = bob;
    r.nheaders = 1;
    WP_DENIED(a, &r);
    veil_authz_free(a);
}

static void test_wp_sources(void **state)
{
    (void)state;
    struct veil_authz *a = veil_authz_new(NULL);
    struct veil_authz_l7_req r = l7req();
    struct veil_authz_decision d;
    /* shop's reader may GET; only the cart may POST */
    assert_int_equal(
        set(a, "shop", "rw",
            "{" TO_WEB ",\"rules\":["
            "{\"from\":[{\"source\":{\"namespaces\":[\"default\"]}}],"
            "\"to\":[{\"operation\":{\"methods\":[\"GET\"]}}]},"
            "{\"from\":[{\"source\":{\"principals\":[\"cluster.local/ns/shop/sa/cart\"]"
            "}}],\"to\":[{\"operation\":{\"methods\":[\"POST\"],\"paths\":"
            "[\"/api/*\"]}}]}]}"),
        1);
    assert_int_equal(veil_authz_decide_l7(a, &r, &d), VEIL_AUTHZ_ALLOW);
    assert_int_equal(d.reason, VEIL_AUTHZ_ALLOW_MATCHED);
    assert_string_equal(d.policy, "shop/rw");
    r.method = S("POST");
    assert_int_equal(veil_authz_decide_l7(a, &r, &d), VEIL_AUTHZ_DENY);
    assert_int_equal(d.reason, VEIL_AUTHZ_NO_ALLOW_MATCHED);
    assert_string_equal(d.policy, "");
    r.src_principal = "spiffe://cluster.local/ns/shop/sa/cart";
    WP_ALLOWED(a, &r);
    r.path = S("/admin");
    WP_DENIED(a, &r);
    /* plaintext: no principal, no namespace */
    r = l7req();
    r.src_principal = NULL;
    WP_DENIED(a, &r);
    /* an explicit source namespace wins */
    r = l7req();
    r.src_ns = "other";
    WP_DENIED(a, &r);
    /* notNamespaces / ipBlocks / remoteIpBlocks in a DENY */
    assert_int_equal(set(a, "shop", "deny",
                         "{" TO_WP ",\"action\":\"DENY\",\"rules\":[{\"from\":[{\"source\":{"
                         "\"notNamespaces\":[\"default\",\"shop\"]}}]},{\"from\":[{\"source\":{"
                         "\"remoteIpBlocks\":[\"203.0.113.0/24\"]}}]}]}"),
                     1);
    r = l7req();
    WP_ALLOWED(a, &r);
    r.src_principal = "spiffe://cluster.local/ns/evil/sa/x";
    assert_int_equal(veil_authz_decide_l7(a, &r, &d), VEIL_AUTHZ_DENY);
    assert_string_equal(d.policy, "shop/deny");
    r = l7req();
    ip4(&r.remote_ip, "203.0.113.9");
    WP_DENIED(a, &r);
    r.remote_ip.family = 0;
    ip4(&r.src_ip, "203.0.113.9"); /* no remote_ip: the source address */
    WP_DENIED(a, &r);
    veil_authz_free(a);
}

static void test_wp_binding(void **state)
{
    (void)state;
    struct veil_authz *a = veil_authz_new(NULL);
    struct veil_authz_l7_req r = l7req();
    struct veil_authz_decision d;
    /* node-proxy policies (selector, namespace-wide, root) are not the waypoint's */
    assert_int_equal(set(a, "shop", "sel", "{\"selector\":{\"matchLabels\":{\"app\":\"web\"}}}"),
                     0);
    assert_int_equal(set(a, "shop", "ns-wide", "{}"), 0);
    assert_int_equal(set(a, "istio-system", "mesh", "{\"action\":\"DENY\",\"rules\":[{}]}"), 0);
    assert_int_equal(veil_authz_decide_l7(a, &r, &d), VEIL_AUTHZ_ALLOW);
    assert_int_equal(d.reason, VEIL_AUTHZ_NO_POLICY);
    /* targetRefs: [] is "not set": a namespace-wide policy, the node's */
    assert_int_equal(set(a, "shop", "empty-refs", "{\"targetRefs\":[],\"rules\":[]}"), 0);
    WP_ALLOWED(a, &r);
    veil_authz_clear(a);

    /* Gateway: the waypoint's own namespace and name */
    assert_int_equal(set(a, "shop", "gw", "{" TO_WP "}"), 1);
    WP_DENIED(a, &r);
    r.wp_name = "other-wp";
    WP_ALLOWED(a, &r);
    r = l7req();
    r.wp_ns = "default"; /* a waypoint wp of another namespace */
    WP_ALLOWED(a, &r);
    assert_int_equal(veil_authz_remove(a, "shop", "gw"), 0);
    /* the singular targetRef form */
    assert_int_equal(set(a, "shop", "gw1",
                         "{\"targetRef\":{\"group\":\"gateway.networking.k8s.io\",\"kind\":"
                         "\"Gateway\",\"name\":\"wp\"}}"),
                     1);
    r = l7req();
    WP_DENIED(a, &r);
    veil_authz_clear(a);

    /* Service: requests to that Service of the policy's namespace */
    assert_int_equal(set(a, "shop", "svc",
                         "{\"targetRefs\":[{\"kind\":\"Service\",\"name\":"
                         "\"web\"}]}"),
                     1);
    WP_DENIED(a, &r);
    r.svc_name = "db";
    WP_ALLOWED(a, &r);
    r.svc_name = NULL; /* not to a Service: only Gateway-bound policies */
    WP_ALLOWED(a, &r);
    r = l7req();
    r.svc_ns = "default";
    WP_ALLOWED(a, &r);
    /* several targets: any binds */
    assert_int_equal(set(a, "shop", "svc",
                         "{\"targetRefs\":[{\"kind\":\"Service\",\"name\":\"db\"},{\"kind\":"
                         "\"Service\",\"name\":\"web\"}]}"),
                     1);
    r = l7req();
    WP_DENIED(a, &r);
    veil_authz_clear(a);

    /* GatewayClass istio-waypoint from the root namespace: every waypoint */
    const char *cls = "{\"targetRefs\":[{\"group\":\"gateway.networking.k8s.io\",\"kind\":"
                      "\"GatewayClass\",\"name\":\"istio-waypoint\"}],\"action\":\"DENY\","
                      "\"rules\":[{\"to\":[{\"operation\":{\"methods\":[\"DELETE\"]}}]}]}";
    assert_int_equal(set(a, "istio-system", "all-wp", cls), 1);
    r.method = S("DELETE");
    assert_int_equal(veil_authz_decide_l7(a, &r, &d), VEIL_AUTHZ_DENY);
    assert_string_equal(d.policy, "istio-system/all-wp");
    r.wp_ns = "default";
    r.wp_name = "other";
    WP_DENIED(a, &r);
    /* ... and from another namespace it binds nothing (with a note) */
    veil_authz_clear(a);
    assert_int_equal(set(a, "shop", "all-wp", cls), 1);
    assert_non_null(strstr(last_err, "spec.targetRefs[0]: binds nothing"));
    WP_ALLOWED(a, &r);
    veil_authz_clear(a);

    /* targets that bind nothing: noted, never applied */
    const char *dead[] = {
        "{\"targetRefs\":[{\"kind\":\"Gateway\",\"name\":\"wp\"}]}", /* no group */
        "{\"targetRefs\":[{\"group\":\"networking.istio.io\",\"kind\":\"ServiceEntry\","
        "\"name\":\"web\"}]}",
        "{\"targetRefs\":[{\"kind\":\"Service\",\"name\":\"web\",\"namespace\":\"other\"}]}",
        "{\"targetRefs\":[{\"group\":\"gateway.networking.k8s.io\",\"kind\":\"GatewayClass\","
        "\"name\":\"custom\"}]}",
    };
    for (size_t i = 0; i < sizeof(dead) / sizeof(dead[0]); i++) {
        assert_int_equal(set(a, "shop", "dead", dead[i]), 1);
        assert_non_null(strstr(last_err, "binds nothing"));
        WP_ALLOWED(a, &r);
    }
    /* the same namespace written out is fine */
    assert_int_equal(
        set(a, "shop", "dead",
            "{\"targetRefs\":[{\"kind\":\"Service\",\"name\":\"web\",\"namespace\":\"shop\"}]}"),
        1);
    assert_null(strstr(last_err, "binds nothing"));
    r = l7req();
    WP_DENIED(a, &r);
    /* deciding never allocates */
    veil_alloc_fail_after(0);
    WP_DENIED(a, &r);
    veil_alloc_fail_reset();
    veil_authz_free(a);
}

static void test_wp_refused_targets(void **state)
{
    (void)state;
    struct veil_authz *a = veil_authz_new(NULL);
    struct {
        const char *spec, *err;
    } cases[] = {
        {"{\"targetRefs\":{}}", "spec.targetRefs: expected a list"},
        {"{\"targetRefs\":[7]}", "spec.targetRefs[0]: expected a map"},
        {"{\"targetRefs\":[{\"kind\":\"Service\"}]}", "spec.targetRefs[0].name: required field "
                                                      "is missing"},
        {"{\"targetRefs\":[{\"name\":\"web\"}]}", "spec.targetRefs[0].kind: required field is "
                                                  "missing"},
        {"{\"targetRefs\":[{\"kind\":\"Service\",\"name\":1}]}",
         "spec.targetRefs[0].name: expected a string"},
        {"{\"targetRefs\":[{\"kind\":\"Service\",\"name\":\"a\",\"port\":80}]}",
         "spec.targetRefs[0].port: unknown field"},
        {"{\"targetRef\":[]}", "spec.targetRef: expected a map"},
        {"{\"targetRef\":{\"kind\":\"Service\",\"name\":\"a\"},\"targetRefs\":[{\"kind\":"
         "\"Service\",\"name\":\"a\"}]}",
         "spec.targetRef: only one of targetRef and targetRefs may be set"},
        {"{\"selector\":{\"matchLabels\":{\"app\":\"web\"}},\"targetRefs\":[{\"kind\":"
         "\"Service\",\"name\":\"a\"}]}",
         "spec.targetRefs: only one of selector and targetRef(s) may be set"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(set(a, "shop", "p", cases[i].spec), -EINVAL);
        assert_string_equal(last_err, cases[i].err);
    }
    assert_int_equal(veil_authz_count(a), 0);
    veil_authz_free(a);
}

/* JWTs, path templates and unknown keys: ALLOW rules never match, DENY
 * rules apply without them. */
static void test_wp_unsupported(void **state)
{
    (void)state;
    struct veil_authz *a = veil_authz_new(NULL);
    struct veil_authz_l7_req r = l7req();
    assert_int_equal(set(a, "shop", "jwt",
                         "{" TO_WP ",\"rules\":[{\"from\":[{\"source\":{\"requestPrincipals\":"
                         "[\"*\"]}}]}]}"),
                     1);
    assert_string_equal(last_err, "spec.rules[0].from[0].source.requestPrincipals: not supported "
                                  "by the waypoint (JWT claims, path templates, this condition "
                                  "key): ALLOW rules with it match nothing, DENY rules apply "
                                  "without it; policy attaches to a waypoint");
    WP_DENIED(a, &r);
    /* the other rules of the policy still work */
    assert_int_equal(set(a, "shop", "jwt",
                         "{" TO_WP ",\"rules\":[{\"from\":[{\"source\":{\"requestPrincipals\":"
                         "[\"*\"]}}]},{\"to\":[{\"operation\":{\"methods\":[\"GET\"]}}]}]}"),
                     1);
    WP_ALLOWED(a, &r);
    assert_int_equal(veil_authz_remove(a, "shop", "jwt"), 0);
    assert_int_equal(allow_op(a, "{\"paths\":[\"/api/{*}\"]}"), 1);
    assert_non_null(strstr(last_err, "operation.paths: not supported by the waypoint"));
    WP_DENIED(a, &r);
    assert_int_equal(allow_when(a, "{\"key\":\"request.auth.claims[iss]\",\"values\":[\"x\"]}"), 1);
    assert_non_null(strstr(last_err, "when[0].key: not supported by the waypoint"));
    WP_DENIED(a, &r);
    assert_int_equal(allow_when(a, "{\"key\":\"request.headers[]\",\"values\":[\"x\"]}"), 1);
    WP_DENIED(a, &r);
    veil_authz_clear(a);
    /* DENY: left out, so it denies more (here: every GET) */
    assert_int_equal(set(a, "shop", "d",
                         "{" TO_WP ",\"action\":\"DENY\",\"rules\":[{\"from\":[{\"source\":{"
                         "\"notRequestPrincipals\":[\"*\"]}}],\"to\":[{\"operation\":{"
                         "\"methods\":[\"GET\"],\"notPaths\":[\"/{**}\"]}}],\"when\":[{\"key\":"
                         "\"request.auth.audiences\",\"values\":[\"x\"]}]}]}"),
                     1);
    WP_DENIED(a, &r);
    r.method = S("PUT");
    WP_ALLOWED(a, &r);
    veil_authz_free(a);
}

/* A TCP connection through the waypoint: L7 parts as at L4. */
static void test_wp_tcp(void **state)
{
    (void)state;
    struct veil_authz *a = veil_authz_new(NULL);
    struct veil_authz_l7_req r = l7req();
    r.http = false;
    assert_int_equal(allow_op(a, "{\"methods\":[\"GET\"]}"), 1);
    WP_DENIED(a, &r);
    assert_int_equal(allow_op(a, "{\"ports\":[\"8080\"]}"), 1);
    WP_ALLOWED(a, &r);
    assert_int_equal(allow_when(a, "{\"key\":\"request.headers[x-user]\",\"values\":[\"*\"]}"), 1);
    WP_DENIED(a, &r);
    veil_authz_clear(a);
    assert_int_equal(set(a, "shop", "d",
                         "{" TO_WP ",\"action\":\"DENY\",\"rules\":[{\"to\":[{\"operation\":{"
                         "\"methods\":[\"DELETE\"],\"ports\":[\"8080\"]}}]}]}"),
                     1);
    WP_DENIED(a, &r);
    r.dst_port = 9090;
    WP_ALLOWED(a, &r);
    veil_authz_free(a);
}

static void test_wp_audit_and_custom(void **state)
{
    (void)state;
    struct veil_authz *a = veil_authz_new(NULL);
    struct veil_authz_l7_req r = l7req();
    struct veil_authz_decision d;
    assert_int_equal(set(a, "shop", "au",
                         "{" TO_WP ",\"action\":\"AUDIT\",\"rules\":[{\"to\":[{\"operation\":{"
                         "\"paths\":[\"/api/*\"]}}]}]}"),
                     1);
    assert_int_equal(set(a, "shop", "ext",
                         "{" TO_WP ",\"action\":\"CUSTOM\",\"provider\":{\"name\":\"x\"},"
                         "\"rules\":[{}]}"),
                     1);
    assert_non_null(strstr(last_err, "CUSTOM"));
    assert_int_equal(veil_authz_decide_l7(a, &r, &d), VEIL_AUTHZ_ALLOW);
    assert_int_equal(d.reason, VEIL_AUTHZ_NO_POLICY);
    assert_string_equal(d.audit, "shop/au");
    r.path = S("/other");
    veil_authz_decide_l7(a, &r, &d);
    assert_string_equal(d.audit, "");
    veil_authz_free(a);
}

static void test_spec_helpers(void **state)
{
    (void)state;
    struct {
        const char *spec;
        bool l7, targeted;
    } cases[] = {
        {"{}", false, false},
        {"{\"rules\":[{\"to\":[{\"operation\":{\"ports\":[\"80\"]}}]}]}", false, false},
        {"{\"rules\":[{\"to\":[{\"operation\":{\"methods\":[\"GET\"]}}]}]}", true, false},
        {"{\"rules\":[{\"to\":[{\"operation\":{\"notPaths\":[\"/a\"]}}]}]}", true, false},
        {"{\"rules\":[{\"from\":[{\"source\":{\"requestPrincipals\":[\"*\"]}}]}]}", true, false},
        {"{\"rules\":[{\"when\":[{\"key\":\"request.headers[a]\",\"values\":[\"1\"]}]}]}", true,
         false},
        {"{\"rules\":[{\"when\":[{\"key\":\"source.ip\",\"values\":[\"1.2.3.4\"]}]}]}", false,
         false},
        {"{" TO_WP "}", false, true},
        {"{\"targetRef\":{\"kind\":\"Service\",\"name\":\"a\"}}", false, true},
        {"{\"targetRefs\":[]}", false, false},
        /* malformed: no crash, counts as absent */
        {"[]", false, false},
        {"{\"rules\":7,\"targetRef\":\"x\"}", false, false},
        {"{\"rules\":[7,{\"to\":7},{\"when\":[{\"key\":1},7]}]}", false, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *j = J(cases[i].spec);
        if (veil_authz_spec_has_l7(j) != cases[i].l7 ||
            veil_authz_spec_targeted(j) != cases[i].targeted)
            fail_msg("case %zu: %s", i, cases[i].spec);
        json_decref(j);
    }
}

/* ---- allocation failures ---- */

static void test_alloc_failures(void **state)
{
    (void)state;
    struct veil_authz *a = NULL;
    for (long n = 0;; n++) {
        veil_alloc_fail_after(n);
        a = veil_authz_new("root");
        veil_alloc_fail_reset();
        if (a != NULL)
            break;
        assert_int_equal(errno, ENOMEM);
    }
    struct veil_authz_req r = req();
    json_t *allow = J("{\"rules\":[{\"from\":[{\"source\":{\"namespaces\":[\"shop\"]}}]}]}");
    json_t *deny = J("{\"action\":\"DENY\",\"rules\":[{}]}");
    /* a new policy */
    for (long n = 0;; n++) {
        veil_alloc_fail_after(n);
        int rc = veil_authz_set(a, "default", "p", allow, NULL, 0);
        veil_alloc_fail_reset();
        if (rc == 0)
            break;
        assert_int_equal(rc, -ENOMEM);
        assert_int_equal(veil_authz_count(a), 0);
        assert_int_equal(veil_authz_generation(a), 0);
        ALLOWED(a, &r);
    }
    DENIED(a, &r);
    /* replacing it */
    for (long n = 0;; n++) {
        veil_alloc_fail_after(n);
        int rc = veil_authz_set(a, "default", "p", deny, NULL, 0);
        veil_alloc_fail_reset();
        if (rc == 0)
            break;
        assert_int_equal(rc, -ENOMEM);
        assert_int_equal(veil_authz_generation(a), 1);
    }
    assert_int_equal(veil_authz_count(a), 1);
    assert_int_equal(veil_authz_generation(a), 2);
    /* a peer policy */
    json_t *strict = J("{\"mtls\":{\"mode\":\"STRICT\"}}");
    for (long n = 0;; n++) {
        veil_alloc_fail_after(n);
        int rc = veil_authz_peer_set(a, "root", "m", strict, NULL, 0);
        veil_alloc_fail_reset();
        if (rc == 0)
            break;
        assert_int_equal(rc, -ENOMEM);
        assert_int_equal(mode(a, "default", 80), VEIL_MTLS_PERMISSIVE);
    }
    assert_int_equal(mode(a, "default", 80), VEIL_MTLS_STRICT);
    /* checks never allocate */
    veil_alloc_fail_after(0);
    DENIED(a, &r);
    assert_int_equal(mode(a, "default", 80), VEIL_MTLS_STRICT);
    veil_alloc_fail_reset();
    json_decref(allow);
    json_decref(deny);
    json_decref(strict);
    veil_authz_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_policy_allows),
        cmocka_unit_test(test_deny_wins),
        cmocka_unit_test(test_allow_must_match),
        cmocka_unit_test(test_empty_rules),
        cmocka_unit_test(test_principals),
        cmocka_unit_test(test_namespaces),
        cmocka_unit_test(test_ip_blocks),
        cmocka_unit_test(test_ports_and_conditions),
        cmocka_unit_test(test_rules_are_or_fields_are_and),
        cmocka_unit_test(test_l7_fields),
        cmocka_unit_test(test_selector_and_root),
        cmocka_unit_test(test_ignored_policies),
        cmocka_unit_test(test_refused_specs),
        cmocka_unit_test(test_generation),
        cmocka_unit_test(test_spec_copied),
        cmocka_unit_test(test_peer_precedence),
        cmocka_unit_test(test_peer_port_level),
        cmocka_unit_test(test_wp_deny_post),
        cmocka_unit_test(test_wp_paths),
        cmocka_unit_test(test_wp_methods_hosts),
        cmocka_unit_test(test_wp_headers),
        cmocka_unit_test(test_wp_sources),
        cmocka_unit_test(test_wp_binding),
        cmocka_unit_test(test_wp_refused_targets),
        cmocka_unit_test(test_wp_unsupported),
        cmocka_unit_test(test_wp_tcp),
        cmocka_unit_test(test_wp_audit_and_custom),
        cmocka_unit_test(test_spec_helpers),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
