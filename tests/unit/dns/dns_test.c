#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <string.h>

#include "dns/dns.h"

static int resolve_calls;

/* Knows web.default (all three forms via veil_dns_service_name, pod ns
 * "default") and db.shop. */
static int resolve(void *arg, const char *fqdn, struct in_addr *out)
{
    char svc[64], ns[64];
    resolve_calls++;
    assert_string_equal((const char *)arg, "ctx");
    for (const char *p = fqdn; *p; p++)
        assert_false(*p >= 'A' && *p <= 'Z');
    assert_true(fqdn[0] != '\0' && fqdn[strlen(fqdn) - 1] != '.');
    if (veil_dns_service_name(fqdn, "default", svc, sizeof(svc), ns, sizeof(ns)) < 0)
        return -ENOENT;
    if (strcmp(svc, "web") == 0 && strcmp(ns, "default") == 0)
        return inet_pton(AF_INET, "198.19.0.1", out) == 1 ? 0 : -ENOENT;
    if (strcmp(svc, "db") == 0 && strcmp(ns, "shop") == 0)
        return inet_pton(AF_INET, "198.19.0.7", out) == 1 ? 0 : -ENOENT;
    return -ENOENT;
}

static const struct veil_dns_lookup lookup = {.resolve = resolve, .arg = "ctx"};

/* Asks `name`/`qtype`, parses the response, checks id/QR/AA/RD/question. */
static enum veil_dns_rcode ask(const char *name, uint16_t qtype, struct veil_dns_msg *m)
{
    uint8_t q[512], out[512];
    ssize_t ql = veil_dns_build_query(q, sizeof(q), 0x1234, name, qtype);
    assert_true(ql > 0);
    ssize_t n = veil_dns_answer(q, (size_t)ql, out, sizeof(out), &lookup);
    assert_true(n > 0);
    assert_int_equal(veil_dns_parse(out, (size_t)n, m), 0);
    assert_int_equal(m->hdr.id, 0x1234);
    assert_true(m->hdr.flags & VEIL_DNS_F_QR);
    assert_true(m->hdr.flags & VEIL_DNS_F_AA);
    assert_true(m->hdr.flags & VEIL_DNS_F_RD);
    assert_int_equal(m->hdr.qdcount, 1);
    assert_int_equal(m->q.qtype, qtype);
    return (enum veil_dns_rcode)VEIL_DNS_RCODE(m->hdr.flags);
}

static void test_name_round_trip(void **state)
{
    (void)state;
    static const char *const names[] = {"web.default.svc.cluster.local", "a", "Mixed.Case.Name",
                                        "x-1.y_2.z"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        uint8_t buf[300];
        char txt[VEIL_DNS_NAME_MAX + 1];
        size_t off = 3, roff = 3;
        assert_int_equal(veil_dns_write_name(buf, sizeof(buf), &off, names[i]), 0);
        assert_int_equal(off, 3 + strlen(names[i]) + 2);
        assert_int_equal(veil_dns_read_name(buf, off, &roff, txt, sizeof(txt)), 0);
        assert_int_equal(roff, off);
        assert_string_equal(txt, names[i]);
    }
    /* trailing dot and the root */
    uint8_t buf[64];
    char txt[64];
    size_t off = 0, roff = 0;
    assert_int_equal(veil_dns_write_name(buf, sizeof(buf), &off, "web."), 0);
    assert_int_equal(off, 5);
    off = 0;
    assert_int_equal(veil_dns_write_name(buf, sizeof(buf), &off, "."), 0);
    assert_int_equal(off, 1);
    assert_int_equal(veil_dns_read_name(buf, 1, &roff, txt, sizeof(txt)), 0);
    assert_string_equal(txt, "");
}

static void test_name_limits(void **state)
{
    (void)state;
    uint8_t buf[600];
    char name[400], txt[300];
    size_t off = 0;
    /* 63-octet label fine, 64 not */
    memset(name, 'a', 63);
    name[63] = '\0';
    assert_int_equal(veil_dns_write_name(buf, sizeof(buf), &off, name), 0);
    name[63] = 'a';
    name[64] = '\0';
    off = 0;
    assert_int_equal(veil_dns_write_name(buf, sizeof(buf), &off, name), -EINVAL);
    /* 253 characters fine, 254 not */
    for (int i = 0; i < 253; i++)
        name[i] = (i % 2) ? '.' : 'b';
    name[253] = '\0';
    off = 0;
    assert_int_equal(veil_dns_write_name(buf, sizeof(buf), &off, name), 0);
    assert_int_equal(off, 255);
    size_t roff = 0;
    assert_int_equal(veil_dns_read_name(buf, off, &roff, txt, sizeof(txt)), 0);
    assert_string_equal(txt, name);
    roff = 0;
    assert_int_equal(veil_dns_read_name(buf, off, &roff, txt, 100), -ENOBUFS);
    strcat(name, "b");
    off = 0;
    assert_int_equal(veil_dns_write_name(buf, sizeof(buf), &off, name), -EINVAL);
    /* empty labels */
    static const char *const bad[] = {"a..b", ".a", "a..", ".."};
    for (size_t i = 0; i < 4; i++) {
        off = 0;
        assert_int_equal(veil_dns_write_name(buf, sizeof(buf), &off, bad[i]), -EINVAL);
    }
    off = 0;
    assert_int_equal(veil_dns_write_name(buf, 4, &off, "abcd"), -ENOBUFS);
    /* a wire name over 255 octets (labels of 63, read side) */
    size_t p = 0;
    for (int l = 0; l < 5; l++) {
        buf[p++] = 63;
        memset(buf + p, 'c', 63);
        p += 63;
    }
    buf[p++] = 0;
    roff = 0;
    assert_int_equal(veil_dns_read_name(buf, p, &roff, txt, sizeof(txt)), -EINVAL);
}

static void test_read_name_malformed(void **state)
{
    (void)state;
    char txt[300];
    size_t off;
    /* truncated: label runs past the end; no terminating zero */
    static const uint8_t t1[] = {3, 'w', 'e'};
    static const uint8_t t2[] = {3, 'w', 'e', 'b'};
    off = 0;
    assert_int_equal(veil_dns_read_name(t1, sizeof(t1), &off, txt, sizeof(txt)), -EINVAL);
    off = 0;
    assert_int_equal(veil_dns_read_name(t2, sizeof(t2), &off, txt, sizeof(txt)), -EINVAL);
    off = 0;
    assert_int_equal(veil_dns_read_name(t2, 0, &off, txt, sizeof(txt)), -EINVAL);
    /* pointer to itself, pointer forwards, mutual loop, half a pointer,
     * a label then a pointer back to that label (backwards, still a loop):
     * each after a 12-byte header */
#define H12 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
    struct {
        uint8_t m[20];
        size_t len, at;
    } bad[] = {
        {{H12, 0xc0, 12}, 14, 12},
        {{H12, 0xc0, 14, 0}, 15, 12},
        {{H12, 1, 'a', 0xc0, 16, 1, 'b', 0xc0, 12}, 20, 16},
        {{H12, 1, 'a', 0xc0}, 15, 12},
        {{H12, 3, 'w', 'e', 'b', 0xc0, 12}, 18, 12},
    };
#undef H12
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        off = bad[i].at;
        assert_int_equal(veil_dns_read_name(bad[i].m, bad[i].len, &off, txt, sizeof(txt)), -EINVAL);
    }
    /* reserved label types, a dot or NUL inside a label */
    static const uint8_t ext[] = {0x41, 0};
    static const uint8_t res[] = {0x81, 0};
    static const uint8_t dot[] = {3, 'a', '.', 'b', 0};
    static const uint8_t nul[] = {3, 'a', 0, 'b', 0};
    off = 0;
    assert_int_equal(veil_dns_read_name(ext, sizeof(ext), &off, txt, sizeof(txt)), -EINVAL);
    off = 0;
    assert_int_equal(veil_dns_read_name(res, sizeof(res), &off, txt, sizeof(txt)), -EINVAL);
    off = 0;
    assert_int_equal(veil_dns_read_name(dot, sizeof(dot), &off, txt, sizeof(txt)), -EINVAL);
    off = 0;
    assert_int_equal(veil_dns_read_name(nul, sizeof(nul), &off, txt, sizeof(txt)), -EINVAL);
}

static void test_compression_backwards(void **state)
{
    (void)state;
    /* After a 12-byte header: "web.default" at 12, then "api" + pointer to
     * "default" at 16, then a pointer to the second name (a chain of two). */
    static const uint8_t m[] = {0,   0,   0,   0,   0,   0,   0,   0,    0,   0,    0,
                                0,   3,   'w', 'e', 'b', 7,   'd', 'e',  'f', 'a',  'u',
                                'l', 't', 0,   3,   'a', 'p', 'i', 0xc0, 16,  0xc0, 25};
    char txt[64];
    size_t off = 25;
    assert_int_equal(veil_dns_read_name(m, sizeof(m), &off, txt, sizeof(txt)), 0);
    assert_string_equal(txt, "api.default");
    assert_int_equal(off, 31);
    assert_int_equal(veil_dns_read_name(m, sizeof(m), &off, txt, sizeof(txt)), 0);
    assert_string_equal(txt, "api.default");
    assert_int_equal(off, 33);
    /* a pointer into the header is malformed */
    static const uint8_t hdr[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xc0, 4};
    off = 12;
    assert_int_equal(veil_dns_read_name(hdr, sizeof(hdr), &off, txt, sizeof(txt)), -EINVAL);
    /* a long backward chain is bounded: 200 pointers, each to the one
     * before, ending in the root at 12 */
    uint8_t chain[13 + 2 * 200] = {0};
    for (int i = 0; i < 200; i++) {
        size_t at = 13 + 2 * (size_t)i, target = i == 0 ? 12 : at - 2;
        chain[at] = (uint8_t)(0xc0 | (target >> 8));
        chain[at + 1] = (uint8_t)target;
    }
    off = sizeof(chain) - 2;
    assert_int_equal(veil_dns_read_name(chain, sizeof(chain), &off, txt, sizeof(txt)), -EINVAL);
    off = 33; /* 10 pointers deep is fine */
    assert_int_equal(veil_dns_read_name(chain, sizeof(chain), &off, txt, sizeof(txt)), 0);
    assert_string_equal(txt, "");
    assert_int_equal(off, 35);
}

static void test_header_and_parse(void **state)
{
    (void)state;
    uint8_t b[512];
    struct veil_dns_header h = {.id = 7, .flags = 0x8180, .qdcount = 1, .ancount = 0};
    struct veil_dns_header g;
    assert_int_equal(veil_dns_write_header(b, 11, &h), -ENOBUFS);
    assert_int_equal(veil_dns_write_header(b, sizeof(b), &h), 0);
    assert_int_equal(veil_dns_parse_header(b, 11, &g), -EINVAL);
    assert_int_equal(veil_dns_parse_header(b, 12, &g), 0);
    assert_memory_equal(&g, &h, sizeof(g));
    ssize_t n = veil_dns_build_query(b, sizeof(b), 99, "web.default", VEIL_DNS_T_AAAA);
    assert_int_equal(n, 12 + 13 + 4);
    struct veil_dns_msg m;
    assert_int_equal(veil_dns_parse(b, (size_t)n, &m), 0);
    assert_int_equal(m.hdr.id, 99);
    assert_string_equal(m.q.name, "web.default");
    assert_int_equal(m.q.qtype, VEIL_DNS_T_AAAA);
    assert_int_equal(m.q.qclass, VEIL_DNS_C_IN);
    /* every truncation of it is malformed, and trailing garbage too */
    for (ssize_t i = 0; i < n; i++)
        assert_int_equal(veil_dns_parse(b, (size_t)i, &m), -EINVAL);
    assert_int_equal(veil_dns_parse(b, (size_t)n + 1, &m), -EINVAL);
    assert_int_equal(veil_dns_build_query(b, 20, 1, "web.default", 1), -ENOBUFS);
    assert_int_equal(veil_dns_build_query(b, 26, 1, "web.default", 1), -ENOBUFS);
    assert_int_equal(veil_dns_build_query(b, 10, 1, "web.default", 1), -ENOBUFS);
    assert_int_equal(veil_dns_build_query(b, sizeof(b), 1, "a..b", 1), -EINVAL);
}

static void test_answer_a(void **state)
{
    (void)state;
    struct veil_dns_msg m;
    static const char *const forms[] = {"web.default.svc.cluster.local", "web.default.svc",
                                        "web.default", "web", "WEB.Default.SVC.cluster.LOCAL."};
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        assert_int_equal(ask(forms[i], VEIL_DNS_T_A, &m), VEIL_DNS_NOERROR);
        assert_int_equal(m.hdr.ancount, 1);
        assert_int_equal(m.nan, 1);
        assert_int_equal(m.an[0].type, VEIL_DNS_T_A);
        assert_int_equal(m.an[0].rclass, VEIL_DNS_C_IN);
        assert_int_equal(m.an[0].ttl, 30);
        assert_int_equal(m.an[0].rdlen, 4);
        assert_memory_equal(m.an[0].rdata, "\xc6\x13\x00\x01", 4);
        /* the answer's name is the question's, case kept (compressed) */
        char want[64];
        strcpy(want, forms[i]);
        if (want[strlen(want) - 1] == '.')
            want[strlen(want) - 1] = '\0';
        assert_string_equal(m.an[0].name, want);
        assert_string_equal(m.q.name, want);
    }
    assert_int_equal(ask("db.shop.svc.cluster.local", VEIL_DNS_T_ANY, &m), VEIL_DNS_NOERROR);
    assert_int_equal(m.nan, 1);
    assert_memory_equal(m.an[0].rdata, "\xc6\x13\x00\x07", 4);
}

static void test_answer_other_types(void **state)
{
    (void)state;
    struct veil_dns_msg m;
    static const uint16_t types[] = {VEIL_DNS_T_AAAA, VEIL_DNS_T_MX, VEIL_DNS_T_TXT,
                                     VEIL_DNS_T_SRV};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(ask("web.default.svc.cluster.local", types[i], &m), VEIL_DNS_NOERROR);
        assert_int_equal(m.hdr.ancount, 0);
    }
}

static void test_answer_nxdomain_refused(void **state)
{
    (void)state;
    struct veil_dns_msg m;
    assert_int_equal(ask("nope.default.svc.cluster.local", VEIL_DNS_T_A, &m), VEIL_DNS_NXDOMAIN);
    assert_int_equal(m.hdr.ancount, 0);
    assert_int_equal(ask("nope.default.svc.cluster.local", VEIL_DNS_T_AAAA, &m), VEIL_DNS_NXDOMAIN);
    assert_int_equal(ask("cluster.local", VEIL_DNS_T_A, &m), VEIL_DNS_NXDOMAIN);
    assert_int_equal(ask("web.svc.cluster.local", VEIL_DNS_T_A, &m), VEIL_DNS_NXDOMAIN);
    assert_int_equal(ask("example.com", VEIL_DNS_T_A, &m), VEIL_DNS_REFUSED);
    assert_int_equal(ask("notcluster.local", VEIL_DNS_T_A, &m), VEIL_DNS_REFUSED);
    assert_int_equal(ask("nope", VEIL_DNS_T_A, &m), VEIL_DNS_REFUSED);
    assert_int_equal(ask(".", VEIL_DNS_T_NS, &m), VEIL_DNS_REFUSED);
    /* another cluster domain */
    struct veil_dns_lookup lk = lookup;
    lk.domain = "corp.example";
    uint8_t q[128], out[512];
    ssize_t ql = veil_dns_build_query(q, sizeof(q), 1, "x.corp.example", VEIL_DNS_T_A);
    enum veil_dns_rcode rc;
    assert_true(veil_dns_answer_rcode(q, (size_t)ql, out, sizeof(out), &lk, &rc) > 0);
    assert_int_equal(rc, VEIL_DNS_NXDOMAIN);
    ql = veil_dns_build_query(q, sizeof(q), 1, "x.cluster.local", VEIL_DNS_T_A);
    assert_true(veil_dns_answer_rcode(q, (size_t)ql, out, sizeof(out), &lk, &rc) > 0);
    assert_int_equal(rc, VEIL_DNS_REFUSED);
}

static void test_answer_bad_queries(void **state)
{
    (void)state;
    uint8_t q[512], out[512];
    struct veil_dns_msg m;
    enum veil_dns_rcode rc;
    ssize_t ql = veil_dns_build_query(q, sizeof(q), 5, "web.default", VEIL_DNS_T_A);
    /* too short for a header: dropped */
    assert_int_equal(veil_dns_answer(q, 11, out, sizeof(out), &lookup), -EINVAL);
    /* a response (QR set): dropped, never answered (no reflection loops) */
    q[2] |= 0x80;
    assert_int_equal(veil_dns_answer(q, (size_t)ql, out, sizeof(out), &lookup), -EINVAL);
    q[2] &= 0x7f;
    /* truncated question: FORMERR with no question echoed */
    for (ssize_t i = 12; i < ql; i++) {
        ssize_t n = veil_dns_answer_rcode(q, (size_t)i, out, sizeof(out), &lookup, &rc);
        assert_int_equal(n, 12);
        assert_int_equal(rc, VEIL_DNS_FORMERR);
        assert_int_equal(veil_dns_parse(out, (size_t)n, &m), 0);
        assert_int_equal(VEIL_DNS_RCODE(m.hdr.flags), VEIL_DNS_FORMERR);
        assert_int_equal(m.hdr.id, 5);
        assert_int_equal(m.hdr.qdcount, 0);
    }
    /* QDCOUNT 0 and 2 */
    q[5] = 0;
    assert_int_equal(veil_dns_answer_rcode(q, (size_t)ql, out, sizeof(out), &lookup, &rc), 12);
    assert_int_equal(rc, VEIL_DNS_FORMERR);
    q[5] = 2;
    assert_int_equal(veil_dns_answer_rcode(q, (size_t)ql, out, sizeof(out), &lookup, &rc), 12);
    assert_int_equal(rc, VEIL_DNS_FORMERR);
    q[5] = 1;
    /* opcode STATUS (2): NOTIMP, opcode echoed */
    q[2] = (uint8_t)(q[2] | (2 << 3));
    assert_int_equal(veil_dns_answer_rcode(q, (size_t)ql, out, sizeof(out), &lookup, &rc), 12);
    assert_int_equal(rc, VEIL_DNS_NOTIMP);
    assert_int_equal((out[2] >> 3) & 0xf, 2);
    q[2] = (uint8_t)(q[2] & ~(0xf << 3));
    /* class CH: REFUSED */
    q[ql - 1] = 3;
    assert_true(veil_dns_answer_rcode(q, (size_t)ql, out, sizeof(out), &lookup, &rc) > 0);
    assert_int_equal(rc, VEIL_DNS_REFUSED);
    q[ql - 1] = 1;
    /* trailing bytes (an EDNS OPT record) are ignored */
    static const uint8_t opt[] = {0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0};
    memcpy(q + ql, opt, sizeof(opt));
    q[11] = 1;
    resolve_calls = 0;
    ssize_t n = veil_dns_answer_rcode(q, (size_t)ql + sizeof(opt), out, sizeof(out), &lookup, &rc);
    assert_int_equal(resolve_calls, 1);
    assert_int_equal(rc, VEIL_DNS_NOERROR);
    assert_int_equal(veil_dns_parse(out, (size_t)n, &m), 0);
    assert_int_equal(m.nan, 1);
    /* a small output buffer */
    assert_int_equal(veil_dns_answer(q, (size_t)ql, out, 20, &lookup), -ENOBUFS);
}

static void test_service_names(void **state)
{
    (void)state;
    char svc[64], ns[64];
    struct {
        const char *q, *pod_ns, *svc, *ns;
    } ok[] = {
        {"web.default.svc.cluster.local", "x", "web", "default"},
        {"web.default.svc.cluster.local.", NULL, "web", "default"},
        {"Web.Shop.SVC.Cluster.Local", NULL, "web", "shop"},
        {"web.shop.svc", NULL, "web", "shop"},
        {"web.shop", NULL, "web", "shop"},
        {"web", "default", "web", "default"},
        {"web.", "default", "web", "default"},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        assert_int_equal(
            veil_dns_service_name(ok[i].q, ok[i].pod_ns, svc, sizeof(svc), ns, sizeof(ns)), 0);
        assert_string_equal(svc, ok[i].svc);
        assert_string_equal(ns, ok[i].ns);
    }
    static const char *const bad[] = {"",
                                      ".",
                                      "web",
                                      "a.b.c",
                                      "a.b.c.svc.cluster.local",
                                      "web.svc.cluster.local",
                                      "web.svc",
                                      "cluster.local",
                                      "svc.cluster.local",
                                      "x.cluster.local",
                                      "-web.default",
                                      "web_1.default",
                                      "web..default"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(veil_dns_service_name(bad[i], NULL, svc, sizeof(svc), ns, sizeof(ns)),
                         -ENOENT);
    assert_int_equal(veil_dns_service_name("web.default", NULL, svc, 3, ns, sizeof(ns)), -ENOBUFS);
    assert_int_equal(veil_dns_service_name("web.default", NULL, svc, 4, ns, 7), -ENOBUFS);
    /* another domain */
    assert_int_equal(veil_dns_service_name_in("web.ns.svc.corp.example", "corp.example", NULL, svc,
                                              sizeof(svc), ns, sizeof(ns)),
                     0);
    assert_string_equal(ns, "ns");
    assert_int_equal(veil_dns_service_name_in("web.ns.svc.cluster.local", "corp.example", NULL, svc,
                                              sizeof(svc), ns, sizeof(ns)),
                     -ENOENT);
    assert_true(veil_dns_in_domain("cluster.local", "cluster.local"));
    assert_true(veil_dns_in_domain("a.cluster.local", "cluster.local"));
    assert_false(veil_dns_in_domain("acluster.local", "cluster.local"));
    assert_false(veil_dns_in_domain("local", "cluster.local"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_name_round_trip),     cmocka_unit_test(test_name_limits),
        cmocka_unit_test(test_read_name_malformed), cmocka_unit_test(test_compression_backwards),
        cmocka_unit_test(test_header_and_parse),    cmocka_unit_test(test_answer_a),
        cmocka_unit_test(test_answer_other_types),  cmocka_unit_test(test_answer_nxdomain_refused),
        cmocka_unit_test(test_answer_bad_queries),  cmocka_unit_test(test_service_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
