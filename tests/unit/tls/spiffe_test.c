#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls/spiffe.h"

static void test_names(void **state)
{
    (void)state;
    assert_true(veil_spiffe_valid_label("default"));
    assert_true(veil_spiffe_valid_label("a"));
    assert_true(veil_spiffe_valid_label("kube-system"));
    assert_true(veil_spiffe_valid_label("0abc9"));
    assert_false(veil_spiffe_valid_label(NULL));
    assert_false(veil_spiffe_valid_label(""));
    assert_false(veil_spiffe_valid_label("-a"));
    assert_false(veil_spiffe_valid_label("a-"));
    assert_false(veil_spiffe_valid_label("Default"));
    assert_false(veil_spiffe_valid_label("a.b")); /* a label has no dots */
    assert_false(veil_spiffe_valid_label("a_b"));
    char long_label[80];
    memset(long_label, 'a', sizeof(long_label));
    long_label[63] = '\0';
    assert_true(veil_spiffe_valid_label(long_label));
    long_label[63] = 'a';
    long_label[64] = '\0';
    assert_false(veil_spiffe_valid_label(long_label));

    assert_true(veil_spiffe_valid_subdomain("web"));
    assert_true(veil_spiffe_valid_subdomain("build-bot.ci"));
    assert_false(veil_spiffe_valid_subdomain("a..b"));
    assert_false(veil_spiffe_valid_subdomain(".a"));
    assert_false(veil_spiffe_valid_subdomain("a."));
    assert_false(veil_spiffe_valid_subdomain("a.-b"));
    assert_false(veil_spiffe_valid_subdomain(""));
    char long_sub[300];
    memset(long_sub, 'a', sizeof(long_sub));
    long_sub[253] = '\0';
    assert_true(veil_spiffe_valid_subdomain(long_sub));
    long_sub[253] = 'a';
    long_sub[254] = '\0';
    assert_false(veil_spiffe_valid_subdomain(long_sub));

    assert_true(veil_spiffe_valid_trust_domain("cluster.local"));
    assert_true(veil_spiffe_valid_trust_domain("my_td-1.example"));
    assert_false(veil_spiffe_valid_trust_domain("Cluster.local"));
    assert_false(veil_spiffe_valid_trust_domain("td:8080"));
    assert_false(veil_spiffe_valid_trust_domain("user@td"));
    assert_false(veil_spiffe_valid_trust_domain(""));
    assert_false(veil_spiffe_valid_trust_domain(NULL));
}

static void test_format(void **state)
{
    (void)state;
    char buf[VEIL_SPIFFE_ID_MAX + 1];
    assert_int_equal(veil_spiffe_workload_id(buf, sizeof(buf), "cluster.local", "default", "web"),
                     0);
    assert_string_equal(buf, "spiffe://cluster.local/ns/default/sa/web");
    assert_int_equal(veil_spiffe_node_id(buf, sizeof(buf), "cluster.local", "node-1.zone-a"), 0);
    assert_string_equal(buf, "spiffe://cluster.local/veil/node/node-1.zone-a");

    assert_int_equal(veil_spiffe_workload_id(buf, sizeof(buf), "cluster.local", "a.b", "web"),
                     -EINVAL);
    assert_string_equal(buf, "");
    assert_int_equal(veil_spiffe_workload_id(buf, sizeof(buf), "cluster.local", "ns", "Web"),
                     -EINVAL);
    assert_int_equal(veil_spiffe_workload_id(buf, sizeof(buf), "Cluster", "ns", "web"), -EINVAL);
    assert_int_equal(veil_spiffe_workload_id(buf, sizeof(buf), "td", "ns", "a/b"), -EINVAL);
    assert_int_equal(veil_spiffe_node_id(buf, sizeof(buf), "td", "node_1"), -EINVAL);

    char small[20];
    assert_int_equal(veil_spiffe_workload_id(small, sizeof(small), "cluster.local", "ns", "sa"),
                     -ENOBUFS);
    assert_string_equal(small, "");
    /* exactly fitting: 22 characters + NUL */
    char exact[23];
    assert_int_equal(veil_spiffe_workload_id(exact, sizeof(exact), "td", "ns", "s"), 0);
    assert_string_equal(exact, "spiffe://td/ns/ns/sa/s");
    assert_int_equal(veil_spiffe_workload_id(exact, sizeof(exact) - 1, "td", "ns", "s"), -ENOBUFS);

    /* What is formatted parses back. */
    struct veil_spiffe_id id;
    assert_int_equal(veil_spiffe_workload_id(buf, sizeof(buf), "td_1", "ns-1", "sa.x"), 0);
    assert_int_equal(veil_spiffe_parse(buf, &id), 0);
    assert_string_equal(id.ns, "ns-1");
    assert_string_equal(id.sa, "sa.x");
}

static void test_parse_good(void **state)
{
    (void)state;
    struct veil_spiffe_id id;
    assert_int_equal(veil_spiffe_parse("spiffe://cluster.local/ns/default/sa/web", &id), 0);
    assert_int_equal(id.kind, VEIL_SPIFFE_WORKLOAD);
    assert_string_equal(id.trust_domain, "cluster.local");
    assert_string_equal(id.ns, "default");
    assert_string_equal(id.sa, "web");
    assert_string_equal(id.node, "");

    assert_int_equal(veil_spiffe_parse("spiffe://prod_eu-1.example/ns/a/sa/build.bot", &id), 0);
    assert_string_equal(id.trust_domain, "prod_eu-1.example");
    assert_string_equal(id.sa, "build.bot");

    assert_int_equal(veil_spiffe_parse("spiffe://cluster.local/veil/node/worker-3", &id), 0);
    assert_int_equal(id.kind, VEIL_SPIFFE_NODE);
    assert_string_equal(id.trust_domain, "cluster.local");
    assert_string_equal(id.node, "worker-3");
    assert_string_equal(id.ns, "");
    assert_string_equal(id.sa, "");

    assert_int_equal(veil_spiffe_parse("spiffe://cluster.local/veil/control", &id), 0);
    assert_int_equal(id.kind, VEIL_SPIFFE_CONTROL);
    assert_string_equal(id.node, "");
    assert_int_not_equal(veil_spiffe_parse("spiffe://cluster.local/veil/control/x", &id), 0);
}

static void test_parse_bad(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "spiffe://",
        "spiffe:///ns/a/sa/b",           /* empty trust domain */
        "spiffe://td",                   /* no path */
        "spiffe://td/",                  /* empty path */
        "SPIFFE://td/ns/a/sa/b",         /* scheme is lower case */
        "https://td/ns/a/sa/b",          /* other scheme */
        "spiffe:/td/ns/a/sa/b",          /* not an authority */
        "spiffe://TD/ns/a/sa/b",         /* trust domain is lower case */
        "spiffe://td/ns/a/sa/b?x=1",     /* query */
        "spiffe://td/ns/a/sa/b#frag",    /* fragment */
        "spiffe://td:443/ns/a/sa/b",     /* port */
        "spiffe://user@td/ns/a/sa/b",    /* userinfo */
        "spiffe://user:pw@td/ns/a/sa/b", /* userinfo with password */
        "spiffe://td/ns//sa/b",          /* empty segment */
        "spiffe://td//ns/a/sa/b",        /* empty segment */
        "spiffe://td/ns/a/sa/b/",        /* trailing slash */
        "spiffe://td/ns/./sa/b",         /* "." */
        "spiffe://td/ns/../sa/b",        /* ".." */
        "spiffe://td/ns/a/sa/..",        /* ".." */
        "spiffe://td/ns/a/../a/sa/b",    /* ".." in the middle */
        "spiffe://td/ns/a/sa/b%2fc",     /* percent-encoding */
        "spiffe://td/ns/%61/sa/b",       /* percent-encoding */
        "spiffe://td/ns/a/sa",           /* short */
        "spiffe://td/ns/a/sa/b/c",       /* long */
        "spiffe://td/ns/a/b/c",          /* not /sa/ */
        "spiffe://td/NS/a/sa/b",         /* keyword case */
        "spiffe://td/ns/A/sa/b",         /* not a Kubernetes name */
        "spiffe://td/ns/a.b/sa/c",       /* namespace is a label */
        "spiffe://td/ns/a/sa/-b",        /* not a DNS-1123 name */
        "spiffe://td/ns/a_b/sa/c",       /* underscore */
        "spiffe://td/veil/node",         /* node without name */
        "spiffe://td/veil/node/n/x",     /* node with more */
        "spiffe://td/veil/nodes/n",      /* wrong keyword */
        "spiffe://td/veil/node/N1",      /* not a Kubernetes name */
        "spiffe://td/some/other/path",   /* a SPIFFE ID, not a veil one */
        "spiffe://td/ns/a/sa/b\n",       /* control character */
        "spiffe://td/ns/a/sa/b c",       /* space */
        "spiffe://td /ns/a/sa/b",        /* space in trust domain */
        "spiffe://[::1]/ns/a/sa/b",      /* IP literal */
        "spiffe://td/ns/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/sa/b",
    };
    struct veil_spiffe_id id;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&id, 0x5a, sizeof(id));
        int rc = veil_spiffe_parse(bad[i], &id);
        if (rc != -EINVAL)
            fail_msg("accepted \"%s\"", bad[i]);
        assert_int_equal(id.kind, 0);
        assert_string_equal(id.trust_domain, "");
    }
    assert_int_equal(veil_spiffe_parse(NULL, &id), -EINVAL);
}

static void test_parse_length(void **state)
{
    (void)state;
    /* A trust domain of 255 is fine; the whole ID may reach 2048 bytes but not pass it. */
    char uri[VEIL_SPIFFE_ID_MAX + 64];
    char td[300];
    memset(td, 'a', sizeof(td));
    td[255] = '\0';
    snprintf(uri, sizeof(uri), "spiffe://%s/ns/a/sa/b", td);
    struct veil_spiffe_id id;
    assert_int_equal(veil_spiffe_parse(uri, &id), 0);
    assert_int_equal(strlen(id.trust_domain), 255);
    td[255] = 'a';
    td[256] = '\0';
    snprintf(uri, sizeof(uri), "spiffe://%s/ns/a/sa/b", td);
    assert_int_equal(veil_spiffe_parse(uri, &id), -EINVAL);

    /* Longer than 2048 bytes is refused before anything else. */
    memset(uri, 'a', sizeof(uri));
    memcpy(uri, "spiffe://td/ns/a/sa/", 20);
    uri[sizeof(uri) - 1] = '\0';
    assert_int_equal(veil_spiffe_parse(uri, &id), -EINVAL);
}

/* A self-signed certificate whose SAN extension is `san` (OpenSSL config syntax), or none. */
static X509 *cert_with_san(const char *san)
{
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    X509 *x = X509_new();
    assert_non_null(key);
    assert_non_null(x);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 3600));
    assert_int_equal(X509_set_pubkey(x, key), 1);
    if (san != NULL) {
        X509V3_CTX v3;
        X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
        X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, &v3, NID_subject_alt_name, san);
        assert_non_null(ext);
        assert_int_equal(X509_add_ext(x, ext, -1), 1);
        X509_EXTENSION_free(ext);
    }
    assert_true(X509_sign(x, key, EVP_sha256()) > 0);
    EVP_PKEY_free(key);
    return x;
}

static int id_of(const char *san, char *buf, size_t n)
{
    X509 *x = cert_with_san(san);
    int rc = veil_spiffe_from_cert(x, buf, n);
    X509_free(x);
    return rc;
}

static void test_from_cert(void **state)
{
    (void)state;
    char buf[VEIL_SPIFFE_ID_MAX + 1];
    assert_int_equal(id_of("URI:spiffe://cluster.local/ns/default/sa/web", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "spiffe://cluster.local/ns/default/sa/web");

    /* DNS and IP SANs next to the one URI are allowed by the X.509-SVID spec. */
    assert_int_equal(
        id_of("DNS:web.example,URI:spiffe://td/veil/node/n1,IP:10.0.0.1", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "spiffe://td/veil/node/n1");

    /* Two URI SANs: refused, even if both are valid. */
    assert_int_equal(id_of("URI:spiffe://td/ns/a/sa/b,URI:spiffe://td/ns/a/sa/c", buf, sizeof(buf)),
                     -EINVAL);
    assert_string_equal(buf, "");
    assert_int_equal(id_of("URI:spiffe://td/ns/a/sa/b,URI:https://example.com/", buf, sizeof(buf)),
                     -EINVAL);
    assert_int_equal(id_of(NULL, buf, sizeof(buf)), -EINVAL);
    assert_int_equal(id_of("DNS:web.example", buf, sizeof(buf)), -EINVAL);
    assert_int_equal(id_of("URI:https://example.com/", buf, sizeof(buf)), -EINVAL);
    assert_int_equal(id_of("URI:spiffe://td/ns/a/sa/b?x", buf, sizeof(buf)), -EINVAL);
    assert_int_equal(veil_spiffe_from_cert(NULL, buf, sizeof(buf)), -EINVAL);

    char small[10];
    assert_int_equal(id_of("URI:spiffe://td/ns/a/sa/b", small, sizeof(small)), -ENOBUFS);
    assert_string_equal(small, "");
    assert_int_equal(ERR_peek_error(), 0); /* the error queue is left clean */
}

/* Two separate subjectAltName extensions are refused too. */
static void test_from_cert_two_extensions(void **state)
{
    (void)state;
    X509 *x = cert_with_san("URI:spiffe://td/ns/a/sa/b");
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext =
        X509V3_EXT_nconf_nid(NULL, &v3, NID_subject_alt_name, "URI:spiffe://td/ns/a/sa/c");
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(x, ext, -1), 1);
    X509_EXTENSION_free(ext);
    char buf[VEIL_SPIFFE_ID_MAX + 1];
    assert_int_equal(veil_spiffe_from_cert(x, buf, sizeof(buf)), -EINVAL);
    X509_free(x);
    assert_int_equal(ERR_peek_error(), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_parse_good),
        cmocka_unit_test(test_parse_bad),
        cmocka_unit_test(test_parse_length),
        cmocka_unit_test(test_from_cert),
        cmocka_unit_test(test_from_cert_two_extensions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
