#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
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
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
