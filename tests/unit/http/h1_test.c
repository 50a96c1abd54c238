#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The .c under test, to reach the character table and the word tests. */
#include "http/h1.c"

static struct veil_h1_header hdrs[VEIL_H1_HEAD_FIELDS_MAX];

/* A literal and its length, NUL bytes included. */
#define LIT(s) s, sizeof(s) - 1

/* The expected return of a refusal: limits are -E2BIG, the rest -EINVAL. */
static ssize_t errno_of(enum veil_h1_error e)
{
    switch (e) {
    case VEIL_H1_E_HEAD_TOO_LARGE:
    case VEIL_H1_E_TOO_MANY_FIELDS:
    case VEIL_H1_E_CHUNK_LINE_TOO_LONG:
    case VEIL_H1_E_TRAILERS_TOO_LARGE:
        return -E2BIG;
    default:
        return -EINVAL;
    }
}

/* Parses a whole head (request, or response to `m` when response). */
static ssize_t parse(bool response, enum veil_h1_method m, const char *buf, size_t len,
                     const struct veil_h1_limits *lim, struct veil_h1_head *h,
                     enum veil_h1_error *err)
{
    struct veil_h1_parser p;
    veil_h1_parser_init(&p, lim);
    ssize_t n = response ? veil_h1_parse_response(&p, buf, len, m, h, hdrs, VEIL_H1_HEAD_FIELDS_MAX)
                         : veil_h1_parse_request(&p, buf, len, h, hdrs, VEIL_H1_HEAD_FIELDS_MAX);
    *err = veil_h1_parser_error(&p);
    return n;
}

/*
 * The same, one byte more per call, each prefix in its own exact-size copy
 * (so ASan sees a read past what was passed, and the buffer moves between
 * calls). Returns the first result that is not -EAGAIN.
 */
static ssize_t parse_bytewise(bool response, enum veil_h1_method m, const char *buf, size_t len,
                              const struct veil_h1_limits *lim, struct veil_h1_head *h,
                              enum veil_h1_error *err)
{
    struct veil_h1_parser p;
    ssize_t n = -EAGAIN;
    size_t step = len > 4096 ? 61 : 1; /* big heads: fewer, still odd, steps */
    veil_h1_parser_init(&p, lim);
    for (size_t i = step < len ? step : len; n == -EAGAIN; i = i + step < len ? i + step : len) {
        char *copy = malloc(i);
        assert_non_null(copy);
        memcpy(copy, buf, i);
        n = response ? veil_h1_parse_response(&p, copy, i, m, h, hdrs, VEIL_H1_HEAD_FIELDS_MAX)
                     : veil_h1_parse_request(&p, copy, i, h, hdrs, VEIL_H1_HEAD_FIELDS_MAX);
        free(copy);
        if (i == len)
            break;
    }
    *err = veil_h1_parser_error(&p);
    return n;
}

static ssize_t req(const char *s, struct veil_h1_head *h)
{
    enum veil_h1_error err;
    ssize_t n = parse(false, VEIL_H1_M_OTHER, s, strlen(s), NULL, h, &err);
    assert_int_equal(err, n > 0 ? VEIL_H1_OK : err);
    return n;
}

static ssize_t resp(enum veil_h1_method m, const char *s, struct veil_h1_head *h)
{
    enum veil_h1_error err;
    return parse(true, m, s, strlen(s), NULL, h, &err);
}

/* A refusal: whole and byte by byte, the same code and errno. */
static void refuse_lim(bool response, const char *s, size_t len, const struct veil_h1_limits *lim,
                       enum veil_h1_error want)
{
    struct veil_h1_head h;
    enum veil_h1_error err;
    ssize_t n = parse(response, VEIL_H1_M_GET, s, len, lim, &h, &err);
    if (err != want)
        fail_msg("%s: got \"%s\", want \"%s\"", s, veil_h1_strerror(err), veil_h1_strerror(want));
    assert_int_equal(n, errno_of(want));
    n = parse_bytewise(response, VEIL_H1_M_GET, s, len, lim, &h, &err);
    if (err != want)
        fail_msg("%s (bytewise): got \"%s\", want \"%s\"", s, veil_h1_strerror(err),
                 veil_h1_strerror(want));
    assert_int_equal(n, errno_of(want));
}

static void refuse_req(const char *s, enum veil_h1_error want)
{
    refuse_lim(false, s, strlen(s), NULL, want);
}

static void refuse_resp(const char *s, enum veil_h1_error want)
{
    refuse_lim(true, s, strlen(s), NULL, want);
}

static bool span_is(const char *buf, struct veil_h1_span sp, const char *s)
{
    return veil_h1_span_eq(buf, sp, s);
}

/* Decodes a chunked body one byte per call; data goes to out (NUL-ended).
 * Returns the bytes consumed in all, or the error. */
static ssize_t chunked_bytewise(const char *in, size_t len, const struct veil_h1_limits *lim,
                                char *out, size_t cap, enum veil_h1_error *err)
{
    struct veil_h1_chunked c;
    size_t used = 0, outlen = 0;
    veil_h1_chunked_init(&c, lim);
    while (used < len && !veil_h1_chunked_done(&c)) {
        struct veil_h1_span d;
        char byte = in[used];
        ssize_t n = veil_h1_chunked_decode(&c, &byte, 1, &d);
        *err = veil_h1_chunked_error(&c);
        if (n < 0)
            return n;
        assert_int_equal(n, 1);
        if (d.len > 0) {
            assert_true(d.off == 0 && d.len == 1 && outlen + 1 < cap);
            out[outlen++] = byte;
        }
        used++;
    }
    out[outlen] = '\0';
    assert_int_equal(veil_h1_chunked_total(&c), outlen);
    *err = veil_h1_chunked_error(&c);
    return veil_h1_chunked_done(&c) ? (ssize_t)used : -EAGAIN;
}

/* Decodes in one call per data span. */
static ssize_t chunked_whole(const char *in, size_t len, const struct veil_h1_limits *lim,
                             char *out, size_t cap, enum veil_h1_error *err)
{
    struct veil_h1_chunked c;
    size_t used = 0, outlen = 0;
    veil_h1_chunked_init(&c, lim);
    while (used < len && !veil_h1_chunked_done(&c)) {
        struct veil_h1_span d;
        ssize_t n = veil_h1_chunked_decode(&c, in + used, len - used, &d);
        *err = veil_h1_chunked_error(&c);
        if (n < 0)
            return n;
        assert_true(n > 0 && (d.len == 0 || d.off + d.len == (size_t)n));
        assert_true(outlen + d.len < cap);
        memcpy(out + outlen, in + used + d.off, d.len);
        outlen += d.len;
        used += (size_t)n;
    }
    out[outlen] = '\0';
    *err = veil_h1_chunked_error(&c);
    return veil_h1_chunked_done(&c) ? (ssize_t)used : -EAGAIN;
}

static void refuse_chunked_n(const char *s, size_t len, const struct veil_h1_limits *lim,
                             enum veil_h1_error want)
{
    char out[256];
    enum veil_h1_error err;
    ssize_t n = chunked_whole(s, len, lim, out, sizeof(out), &err);
    if (err != want)
        fail_msg("%s: got \"%s\", want \"%s\"", s, veil_h1_strerror(err), veil_h1_strerror(want));
    assert_int_equal(n, errno_of(want));
    n = chunked_bytewise(s, len, lim, out, sizeof(out), &err);
    if (err != want)
        fail_msg("%s (bytewise): got \"%s\", want \"%s\"", s, veil_h1_strerror(err),
                 veil_h1_strerror(want));
    assert_int_equal(n, errno_of(want));
}

static void refuse_chunked_lim(const char *s, const struct veil_h1_limits *lim,
                               enum veil_h1_error want)
{
    refuse_chunked_n(s, strlen(s), lim, want);
}

static void refuse_chunked(const char *s, enum veil_h1_error want)
{
    refuse_chunked_lim(s, NULL, want);
}

/* ---- the character table and the word-at-a-time scans ---- */

/* The classes as h1.c wrote them before the table: the definitions. */
static bool ref_alnum(unsigned c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static bool ref_tchar(unsigned c)
{
    return ref_alnum(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", (int)c) != NULL);
}

static bool ref_field_char(unsigned c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

static bool ref_reg_name_char(unsigned c)
{
    return ref_alnum(c) || (c != '\0' && strchr("-._~!$&'()*+,;=", (int)c) != NULL);
}

static bool ref_target_char(unsigned c)
{
    return !(c <= 0x20 || c >= 0x7f || c == '#');
}

static unsigned ref_lower(unsigned c)
{
    return c >= 'A' && c <= 'Z' ? c + ('a' - 'A') : c;
}

static void test_char_table(void **state)
{
    (void)state;
    for (unsigned c = 0; c < 256; c++) {
        unsigned char b = (unsigned char)c;
        if (is_tchar(b) != ref_tchar(c) || is_field_char(b) != ref_field_char(c) ||
            is_reg_name_char(b) != ref_reg_name_char(c) ||
            ((char_class[c] & CC_TARGET) != 0) != ref_target_char(c) ||
            ((char_class[c] & CC_PLAIN) != 0) != (c != '\0' && c != '\r' && c != '\n') ||
            lower(b) != ref_lower(c))
            fail_msg("byte 0x%02x: table %02x", c, char_class[c]);
    }
}

/* low_bytes() flags exactly the first byte below 0x0e, word_has_ctl() any
 * CTL: against byte-by-byte answers, on words made mostly of edge bytes. */
static void test_word_tests(void **state)
{
    static const unsigned char edge[] = {0x00, 0x01, '\t', '\n', '\r', 0x0e, 0x1f, ' ',
                                         'a',  0x7e, 0x7f, 0x80, 0x8d, 0xfe, 0xff};
    uint32_t x = 12345;
    (void)state;
    for (int round = 0; round < 200000; round++) {
        char w[8];
        size_t first = 8;
        bool ctl = false;
        for (size_t i = 0; i < 8; i++) {
            x = x * 1103515245u + 12345u;
            unsigned r = x >> 16;
            w[i] = (char)(r % 4 == 0 ? (unsigned char)(r >> 2) : edge[(r >> 2) % sizeof(edge)]);
            unsigned char b = (unsigned char)w[i];
            if (b < 0x0e && first == 8)
                first = i;
            ctl |= b < 0x20 || b == 0x7f;
        }
        uint64_t m = low_bytes(load8(w));
        assert_int_equal(m == 0 ? 8 : (size_t)__builtin_ctzll(m) / 8, first);
        assert_int_equal(word_has_ctl(w), ctl);
    }
}

/* scan() as it was, one byte at a time: the error of the first offending
 * byte in b[0..n), and in *known the shortest prefix that shows it. Stops
 * at the blank line ending the head. */
static enum veil_h1_error ref_scan(const char *b, size_t n, size_t *known)
{
    size_t line = 0;
    for (size_t i = 0; i < n; i++) {
        *known = i + 1;
        if (b[i] == '\0')
            return VEIL_H1_E_NUL;
        if (b[i] == '\n')
            return VEIL_H1_E_BARE_LF;
        if (b[i] != '\r' || i + 1 == n)
            continue;
        *known = i + 2;
        if (b[i + 1] != '\n')
            return VEIL_H1_E_BARE_CR;
        if (i == line && line > 0)
            break;
        line = i + 2;
        i++;
    }
    *known = 0;
    return VEIL_H1_OK;
}

/* Parses b[0..n) in one call from an exact-size copy; the error. */
static enum veil_h1_error parse_copy(const char *b, size_t n, ssize_t *ret)
{
    struct veil_h1_parser p;
    struct veil_h1_head h;
    char *copy = malloc(n > 0 ? n : 1);
    assert_non_null(copy);
    memcpy(copy, b, n);
    veil_h1_parser_init(&p, NULL);
    *ret = veil_h1_parse_request(&p, copy, n, &h, hdrs, VEIL_H1_HEAD_FIELDS_MAX);
    free(copy);
    return veil_h1_parser_error(&p);
}

/* One head with bad bytes put in: the error the byte-by-byte scan gives,
 * found once the prefix that shows it is there and not before, in one
 * call, and in two calls split at `split`. */
static void check_bad_head(const char *b, size_t n, size_t split)
{
    size_t known;
    enum veil_h1_error want = ref_scan(b, n, &known), err;
    ssize_t ret;
    assert_int_not_equal(want, VEIL_H1_OK);
    err = parse_copy(b, n, &ret);
    if (err != want)
        fail_msg("got \"%s\", want \"%s\"", veil_h1_strerror(err), veil_h1_strerror(want));
    assert_int_equal(ret, errno_of(want));
    assert_int_equal(parse_copy(b, known, &ret), want);
    assert_int_equal(parse_copy(b, known - 1, &ret), VEIL_H1_OK);
    assert_int_equal(ret, -EAGAIN);

    struct veil_h1_parser p;
    struct veil_h1_head h;
    veil_h1_parser_init(&p, NULL);
    ret = veil_h1_parse_request(&p, b, split < n ? split : n, &h, hdrs, VEIL_H1_HEAD_FIELDS_MAX);
    if (ret == -EAGAIN)
        ret = veil_h1_parse_request(&p, b, n, &h, hdrs, VEIL_H1_HEAD_FIELDS_MAX);
    assert_int_equal(veil_h1_parser_error(&p), want);
    assert_int_equal(ret, errno_of(want));
}

/* NUL, bare CR and bare LF at every position 0..300 of a long head (the
 * word-at-a-time scan meets them at every offset in a word), alone and
 * followed by another of them. */
static void test_scan_bad_byte_everywhere(void **state)
{
    static const char bad[] = {'\0', '\r', '\n'};
    char good[512], b[520];
    int glen = snprintf(good, sizeof(good),
                        "GET /a/long/path/to/somewhere?with=a&query=string HTTP/1.1\r\n"
                        "Host: backend.example.com:8080\r\n"
                        "User-Agent: test/1.0 (a \tlonger one)\r\n"
                        "Accept: */*\r\n"
                        "X-Pad: %s\r\n"
                        "\r\n",
                        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                        "0123456789");
    (void)state;
    assert_true(glen > 340 && (size_t)glen < sizeof(good));
    size_t n = (size_t)glen;
    struct veil_h1_head h;
    enum veil_h1_error err;
    assert_int_equal(parse(false, VEIL_H1_M_OTHER, good, n, NULL, &h, &err), glen);

    for (size_t pos = 0; pos <= 300; pos++) {
        for (size_t k = 0; k < sizeof(bad); k++) {
            /* one bad byte put in at pos */
            memcpy(b, good, pos);
            b[pos] = bad[k];
            memcpy(b + pos + 1, good + pos, n - pos);
            check_bad_head(b, n + 1, pos);
            check_bad_head(b, n + 1, pos / 2);
            /* and another, of a different kind, a few bytes on */
            size_t pos2 = pos + 2 + pos % 11;
            memmove(b + pos2 + 1, b + pos2, n + 1 - pos2);
            b[pos2] = bad[(k + 1 + pos % 2) % sizeof(bad)];
            check_bad_head(b, n + 2, pos + 1);
        }
    }
}

/* A CTL at every position of a field value and a reason phrase, across
 * the words all_field_chars() looks at. */
static void test_field_value_ctl_everywhere(void **state)
{
    static const char ctl[] = {'\x01', '\x1f', '\x7f', '\x0b'};
    (void)state;
    for (size_t vlen = 1; vlen <= 40; vlen++) {
        for (size_t pos = 0; pos < vlen; pos++) {
            for (size_t k = 0; k < sizeof(ctl); k++) {
                char v[41], b[128];
                memset(v, 'v', vlen);
                v[vlen] = '\0';
                if (vlen > 2)
                    v[vlen / 2] = '\t'; /* an HTAB is fine anywhere */
                v[pos] = ctl[k];
                v[0] = v[0] == '\t' ? 'v' : v[0];
                snprintf(b, sizeof(b), "GET / HTTP/1.1\r\nHost: a\r\nX: %s\r\n\r\n", v);
                refuse_req(b, VEIL_H1_E_FIELD_VALUE);
                snprintf(b, sizeof(b), "HTTP/1.1 200 %s\r\n\r\n", v);
                refuse_resp(b, VEIL_H1_E_STATUS_LINE);
            }
        }
        char v[41], b[128];
        struct veil_h1_head h;
        memset(v, 'v', vlen);
        v[vlen] = '\0';
        if (vlen > 2)
            v[vlen / 2] = '\t';
        snprintf(b, sizeof(b), "GET / HTTP/1.1\r\nHost: a\r\nX: %s\r\n\r\n", v);
        assert_true(req(b, &h) > 0);
        assert_true(h.nheaders == 2 && h.headers[1].value.len == vlen);
        snprintf(b, sizeof(b), "HTTP/1.1 200 %s\xff\r\n\r\n", v);
        assert_true(resp(VEIL_H1_M_GET, b, &h) > 0);
        assert_int_equal(h.reason.len, vlen + 1);
    }
}

/* veil_h1_span_ieq() without strlen: the same answers as with it. */
static void test_span_ieq(void **state)
{
    static const char buf[] = "Content-LENGTH\0te\0x";
    static const char *const lits[] = {
        "content-length", "CONTENT-LENGTH", "content-lengt", "content-lengthx", "", "te", "t",
        "te\0x"};
    (void)state;
    for (uint32_t off = 0; off < sizeof(buf) - 1; off++) {
        for (uint32_t len = 0; off + len <= sizeof(buf) - 1; len++) {
            struct veil_h1_span sp = {.off = off, .len = len};
            for (size_t k = 0; k < sizeof(lits) / sizeof(lits[0]); k++) {
                const char *s = lits[k];
                bool want = strlen(s) == len;
                for (size_t i = 0; want && i < len; i++)
                    want = ref_lower((unsigned char)buf[off + i]) == ref_lower((unsigned char)s[i]);
                assert_int_equal(veil_h1_span_ieq(buf, sp, s), want);
            }
            assert_int_equal(VEIL_H1_SPAN_IEQ_LIT(buf, sp, "content-length"),
                             veil_h1_span_ieq(buf, sp, "content-length"));
            assert_int_equal(VEIL_H1_SPAN_IEQ_LIT(buf, sp, ""), len == 0);
        }
    }
}

/* ---- good messages ---- */

static void test_get_no_body(void **state)
{
    (void)state;
    const char *s = "GET /index.html?q=1 HTTP/1.1\r\nHost: web.default:8080\r\n"
                    "User-Agent: curl/8\r\nAccept:  */* \t\r\nX-Empty:\r\n\r\nrest";
    struct veil_h1_head h;
    ssize_t n = req(s, &h);
    assert_int_equal(n, strlen(s) - 4);
    assert_int_equal(h.head_len, n);
    assert_int_equal(h.method, VEIL_H1_M_GET);
    assert_true(span_is(s, h.method_span, "GET"));
    assert_true(span_is(s, h.target, "/index.html?q=1"));
    assert_int_equal(h.version_minor, 1);
    assert_int_equal(h.nheaders, 4);
    assert_ptr_equal(h.headers, hdrs);
    assert_true(span_is(s, h.headers[0].name, "Host"));
    assert_true(span_is(s, h.headers[1].value, "curl/8"));
    assert_true(span_is(s, h.headers[2].value, "*/*"));
    assert_int_equal(h.headers[3].value.len, 0);
    assert_true((h.flags & VEIL_H1_F_HOST) && span_is(s, h.host, "web.default:8080"));
    assert_int_equal(h.framing, VEIL_H1_BODY_NONE);
    assert_true(h.flags & VEIL_H1_F_KEEP_ALIVE);
    assert_false(h.flags & (VEIL_H1_F_UPGRADE | VEIL_H1_F_CONNECT));
    /* case-insensitive lookup */
    const struct veil_h1_header *f = veil_h1_header_find(&h, s, "user-AGENT", NULL);
    assert_ptr_equal(f, &h.headers[1]);
    assert_null(veil_h1_header_find(&h, s, "user-agent", f));
    assert_null(veil_h1_header_find(&h, s, "cookie", NULL));
    assert_true(veil_h1_span_ieq(s, h.headers[0].name, "HOST"));
    assert_false(veil_h1_span_eq(s, h.headers[0].name, "HOST"));

    struct veil_h1_body b;
    struct veil_h1_span d;
    veil_h1_body_init(&b, &h, NULL);
    assert_true(veil_h1_body_done(&b));
    assert_int_equal(veil_h1_body_read(&b, s + n, 4, &d), 0);
    assert_int_equal(d.len, 0);
}

static void test_post_content_length(void **state)
{
    (void)state;
    const char *s = "POST /api HTTP/1.1\r\nhost: a\r\ncontent-LENGTH: 11\r\n\r\nhello worldGET";
    struct veil_h1_head h;
    ssize_t n = req(s, &h);
    assert_true(n > 0);
    assert_int_equal(h.method, VEIL_H1_M_POST);
    assert_int_equal(h.framing, VEIL_H1_BODY_LENGTH);
    assert_int_equal(h.content_length, 11);

    struct veil_h1_body b;
    struct veil_h1_span d;
    veil_h1_body_init(&b, &h, NULL);
    assert_false(veil_h1_body_done(&b));
    /* in two reads; the bytes after the body are not consumed */
    assert_int_equal(veil_h1_body_read(&b, s + n, 5, &d), 5);
    assert_true(d.off == 0 && d.len == 5);
    assert_false(veil_h1_body_done(&b));
    assert_int_equal(veil_h1_body_read(&b, s + n + 5, strlen(s + n + 5), &d), 6);
    assert_true(d.off == 0 && d.len == 6);
    assert_true(veil_h1_body_done(&b));
    assert_int_equal(veil_h1_body_total(&b), 11);
    assert_int_equal(veil_h1_body_read(&b, "GET", 3, &d), 0);
    assert_int_equal(veil_h1_body_eof(&b), 0);

    /* the largest length accepted */
    assert_true(
        req("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n", &h) > 0);
    assert_true(h.content_length == VEIL_H1_LENGTH_MAX);
    /* a zero length is a complete body */
    assert_true(req("PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 000\r\n\r\n", &h) > 0);
    veil_h1_body_init(&b, &h, NULL);
    assert_true(h.framing == VEIL_H1_BODY_LENGTH && veil_h1_body_done(&b));
}

static const char chunked_req[] =
    "POST /upload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n"
    "5;name=value;quoted=\"a b;c\"\r\nhello\r\n"
    "000006 \t; ext\r\n world\r\n"
    "1A\r\nabcdefghijklmnopqrstuvwxyz\r\n"
    "0;last\r\nExpires: never\r\nX-Checksum: \t abc\r\n\r\n"
    "GET /next HTTP/1.1\r\n";

static void test_chunked_byte_by_byte(void **state)
{
    (void)state;
    const char *want = "hello worldabcdefghijklmnopqrstuvwxyz";
    size_t len = strlen(chunked_req);
    struct veil_h1_head h;
    enum veil_h1_error err;

    ssize_t n = parse_bytewise(false, VEIL_H1_M_OTHER, chunked_req, len, NULL, &h, &err);
    assert_true(n > 0);
    assert_int_equal(err, VEIL_H1_OK);
    assert_int_equal(h.framing, VEIL_H1_BODY_CHUNKED);
    const char *body = chunked_req + n;
    size_t blen = len - (size_t)n, end = blen - strlen("GET /next HTTP/1.1\r\n");

    char out[128];
    assert_int_equal(chunked_bytewise(body, blen, NULL, out, sizeof(out), &err), end);
    assert_string_equal(out, want);
    assert_int_equal(chunked_whole(body, blen, NULL, out, sizeof(out), &err), end);
    assert_string_equal(out, want);

    /* every split in two pieces, through the body reader */
    for (size_t cut = 0; cut <= blen; cut++) {
        struct veil_h1_body b;
        struct veil_h1_span d;
        size_t used = 0, outlen = 0;
        veil_h1_body_init(&b, &h, NULL);
        while (!veil_h1_body_done(&b)) {
            size_t stop = used < cut ? cut : blen;
            ssize_t r = veil_h1_body_read(&b, body + used, stop - used, &d);
            assert_true(r > 0);
            memcpy(out + outlen, body + used + d.off, d.len);
            outlen += d.len;
            used += (size_t)r;
        }
        out[outlen] = '\0';
        assert_string_equal(out, want);
        assert_int_equal(used, end);
        assert_int_equal(veil_h1_body_total(&b), strlen(want));
    }
}

static void test_incremental_head(void **state)
{
    (void)state;
    const char *s = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    size_t len = strlen(s);
    struct veil_h1_parser p;
    struct veil_h1_head h;
    veil_h1_parser_init(&p, NULL);
    for (size_t i = 0; i < len; i++)
        assert_int_equal(veil_h1_parse_request(&p, s, i, &h, hdrs, 4), -EAGAIN);
    assert_int_equal(veil_h1_parse_request(&p, s, len, &h, hdrs, 4), len);
    /* the parser is ready for the next message */
    assert_int_equal(veil_h1_parse_request(&p, s, 3, &h, hdrs, 4), -EAGAIN);
    assert_int_equal(veil_h1_parse_request(&p, s, len, &h, hdrs, 4), len);
}

static void test_keep_alive_rules(void **state)
{
    (void)state;
    static const struct {
        const char *head;
        bool keep;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: CLOSE ,foo\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: keep-alives\r\n\r\n", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct veil_h1_head h;
        assert_true(req(cases[i].head, &h) > 0);
        if (!!(h.flags & VEIL_H1_F_KEEP_ALIVE) != cases[i].keep)
            fail_msg("case %zu: keep-alive %d", i, !cases[i].keep);
    }
    struct veil_h1_head h;
    /* responses: the same, and a body read until close ends the connection */
    assert_true(resp(VEIL_H1_M_GET, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", &h) > 0);
    assert_true(h.flags & VEIL_H1_F_KEEP_ALIVE);
    assert_true(resp(VEIL_H1_M_GET,
                     "HTTP/1.1 200 OK\r\nConnection: close\r\n"
                     "Content-Length: 0\r\n\r\n",
                     &h) > 0);
    assert_false(h.flags & VEIL_H1_F_KEEP_ALIVE);
    assert_true(h.flags & VEIL_H1_F_CONN_CLOSE);
    assert_true(resp(VEIL_H1_M_GET, "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", &h) > 0);
    assert_false(h.flags & VEIL_H1_F_KEEP_ALIVE);
    assert_true(resp(VEIL_H1_M_GET, "HTTP/1.1 200 OK\r\n\r\n", &h) > 0);
    assert_int_equal(h.framing, VEIL_H1_BODY_CLOSE);
    assert_false(h.flags & VEIL_H1_F_KEEP_ALIVE);
}

static void test_pipelined(void **state)
{
    (void)state;
    const char *s = "GET /a HTTP/1.1\r\nHost: a\r\n\r\n"
                    "POST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nxyz"
                    "\r\n" /* a stray CRLF after a body is skipped (RFC 9112 2.2) */
                    "DELETE /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "1\r\nq\r\n0\r\n\r\n";
    static const char *const targets[] = {"/a", "/b", "/c"};
    static const char *const bodies[] = {"", "xyz", "q"};
    size_t len = strlen(s), pos = 0;
    struct veil_h1_parser p;
    veil_h1_parser_init(&p, NULL);
    for (size_t i = 0; i < 3; i++) {
        struct veil_h1_head h;
        struct veil_h1_body b;
        struct veil_h1_span d;
        char body[8] = "";
        ssize_t n = veil_h1_parse_request(&p, s + pos, len - pos, &h, hdrs, 8);
        assert_true(n > 0);
        assert_true(span_is(s + pos, h.target, targets[i]));
        pos += (size_t)n;
        veil_h1_body_init(&b, &h, NULL);
        while (!veil_h1_body_done(&b)) {
            n = veil_h1_body_read(&b, s + pos, len - pos, &d);
            assert_true(n > 0);
            strncat(body, s + pos + d.off, d.len);
            pos += (size_t)n;
        }
        assert_string_equal(body, bodies[i]);
    }
    assert_int_equal(pos, len);
}

static void test_response_no_body(void **state)
{
    (void)state;
    struct veil_h1_head h;
    /* 204, 304 and a response to HEAD: no body whatever the fields say */
    assert_true(resp(VEIL_H1_M_GET, "HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n", &h) >
                0);
    assert_int_equal(h.status, 204);
    assert_int_equal(h.framing, VEIL_H1_BODY_NONE);
    assert_true(h.flags & VEIL_H1_F_KEEP_ALIVE);
    assert_true(resp(VEIL_H1_M_GET, "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", &h) >
                0);
    assert_int_equal(h.framing, VEIL_H1_BODY_NONE);
    assert_true(resp(VEIL_H1_M_HEAD, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", &h) > 0);
    assert_int_equal(h.framing, VEIL_H1_BODY_NONE);
    assert_true(resp(VEIL_H1_M_HEAD, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", &h) >
                0);
    assert_int_equal(h.framing, VEIL_H1_BODY_NONE);
    /* the same to GET has a body */
    assert_true(resp(VEIL_H1_M_GET, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", &h) > 0);
    assert_true(h.framing == VEIL_H1_BODY_LENGTH && h.content_length == 10);
    assert_true(
        resp(VEIL_H1_M_GET, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", &h) > 0);
    assert_int_equal(h.framing, VEIL_H1_BODY_CHUNKED);
    /* 1xx: interim, then the final response on the same stream */
    const char *s = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    ssize_t n = resp(VEIL_H1_M_POST, s, &h);
    assert_true(n > 0);
    assert_true(h.status == 100 && (h.flags & VEIL_H1_F_INTERIM));
    assert_int_equal(h.framing, VEIL_H1_BODY_NONE);
    assert_true(span_is(s, h.reason, "Continue"));
    assert_true(resp(VEIL_H1_M_POST, s + n, &h) > 0);
    assert_true(h.status == 200 && !(h.flags & VEIL_H1_F_INTERIM));
    /* read until close: complete at EOF */
    assert_true(resp(VEIL_H1_M_GET, "HTTP/1.0 200\r\n\r\n", &h) > 0);
    assert_int_equal(h.framing, VEIL_H1_BODY_CLOSE);
    assert_int_equal(h.reason.len, 0);
    struct veil_h1_body b;
    struct veil_h1_span d;
    veil_h1_body_init(&b, &h, NULL);
    assert_int_equal(veil_h1_body_read(&b, "abcdef", 6, &d), 6);
    assert_true(d.off == 0 && d.len == 6 && !veil_h1_body_done(&b));
    assert_int_equal(veil_h1_body_eof(&b), 0);
    assert_true(veil_h1_body_done(&b));
    /* a 2xx to CONNECT opens a tunnel; a 4xx to CONNECT has a body */
    assert_true(resp(VEIL_H1_M_CONNECT, "HTTP/1.1 200 Connection established\r\n\r\n", &h) > 0);
    assert_true((h.flags & VEIL_H1_F_TUNNEL) && h.framing == VEIL_H1_BODY_NONE);
    assert_false(h.flags & VEIL_H1_F_KEEP_ALIVE);
    assert_true(resp(VEIL_H1_M_CONNECT, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n", &h) >
                0);
    assert_false(h.flags & VEIL_H1_F_TUNNEL);
    assert_int_equal(h.req_method, VEIL_H1_M_CONNECT);
}

static void test_upgrade_and_connect(void **state)
{
    (void)state;
    struct veil_h1_head h;
    const char *ws = "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                     "Connection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n";
    assert_true(req(ws, &h) > 0);
    assert_true(h.flags & VEIL_H1_F_UPGRADE);
    assert_true(h.flags & VEIL_H1_F_CONN_UPGRADE);
    assert_true(span_is(ws, h.upgrade, "websocket"));
    /* Upgrade without Connection: upgrade, or in HTTP/1.0, is ignored */
    assert_true(req("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", &h) > 0);
    assert_false(h.flags & VEIL_H1_F_UPGRADE);
    assert_int_equal(h.upgrade.len, 0);
    assert_true(req("GET / HTTP/1.0\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n", &h) > 0);
    assert_false(h.flags & VEIL_H1_F_UPGRADE);
    /* the 101 answer */
    const char *sw = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\n\r\n";
    assert_true(resp(VEIL_H1_M_GET, sw, &h) > 0);
    assert_true((h.flags & VEIL_H1_F_UPGRADE) && (h.flags & VEIL_H1_F_TUNNEL));
    assert_false(h.flags & VEIL_H1_F_INTERIM);
    assert_true(span_is(sw, h.upgrade, "websocket"));
    /* CONNECT */
    const char *c = "CONNECT 10.0.0.1:443 HTTP/1.1\r\nHost: 10.0.0.1:443\r\n\r\n";
    assert_true(req(c, &h) > 0);
    assert_true(h.method == VEIL_H1_M_CONNECT && (h.flags & VEIL_H1_F_CONNECT));
    assert_true(span_is(c, h.target, "10.0.0.1:443"));
    assert_true(req("CONNECT [::1]:8080 HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", &h) > 0);
    assert_true(req("GET / HTTP/1.1\r\nHost: web%2Ddefault.svc:80\r\n\r\n", &h) > 0);
    /* other target forms */
    assert_true(req("OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", &h) > 0);
    assert_true(req("GET http://web.default:80/x?y=%20 HTTP/1.1\r\nHost: \r\n\r\n", &h) > 0);
    assert_int_equal(h.host.len, 0);
    assert_true(req("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", &h) > 0);
    assert_int_equal(h.target.off, 8);
    assert_true(req("M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n", &h) < 0); /* '*' only for OPTIONS */
    assert_true(req("M-SEARCH / HTTP/1.1\r\nHost: a\r\n\r\n", &h) > 0);
    assert_int_equal(h.method, VEIL_H1_M_OTHER);
}

static void test_limits(void **state)
{
    (void)state;
    struct veil_h1_limits l;
    veil_h1_limits_default(&l);
    assert_int_equal(l.head_bytes_max, 64 * 1024);
    assert_int_equal(l.head_fields_max, 100);
    assert_true(l.chunk_line_max > 0 && l.trailer_bytes_max > 0 && l.trailer_fields_max > 0);

    /* a head of exactly the limit is accepted, one byte more is refused */
    char big[64 * 1024 + 2];
    const char *pre = "GET / HTTP/1.1\r\nHost: a\r\nX: ";
    memset(big, 'x', sizeof(big));
    memcpy(big, pre, strlen(pre));
    memcpy(big + 64 * 1024 - 4, "\r\n\r\n", 4);
    struct veil_h1_head h;
    enum veil_h1_error err;
    assert_int_equal(parse(false, 0, big, sizeof(big), NULL, &h, &err), 64 * 1024);
    memcpy(big + 64 * 1024 - 4, "x\r\n\r\n", 5);
    refuse_lim(false, big, sizeof(big), NULL, VEIL_H1_E_HEAD_TOO_LARGE);
    /* zero fields take the defaults */
    struct veil_h1_limits zero = {0};
    assert_int_equal(parse(false, 0, big, sizeof(big), &zero, &h, &err), -E2BIG);

    /* 3 fields allowed: 3 pass, 4 do not; the caller's array bounds it too */
    struct veil_h1_limits three = {.head_fields_max = 3};
    const char *s3 = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n";
    const char *s4 = "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n";
    assert_true(parse(false, 0, s3, strlen(s3), &three, &h, &err) > 0);
    assert_int_equal(h.nheaders, 3);
    refuse_lim(false, s4, strlen(s4), &three, VEIL_H1_E_TOO_MANY_FIELDS);
    struct veil_h1_parser p;
    veil_h1_parser_init(&p, NULL);
    assert_int_equal(veil_h1_parse_request(&p, s4, strlen(s4), &h, hdrs, 3), -E2BIG);
    assert_int_equal(veil_h1_parser_error(&p), VEIL_H1_E_TOO_MANY_FIELDS);
}

static void test_errors_are_sticky_and_named(void **state)
{
    (void)state;
    struct veil_h1_parser p;
    struct veil_h1_head h;
    const char *bad = "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n";
    const char *good = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    veil_h1_parser_init(&p, NULL);
    assert_int_equal(veil_h1_parse_request(&p, bad, strlen(bad), &h, hdrs, 8), -EINVAL);
    assert_int_equal(veil_h1_parse_request(&p, good, strlen(good), &h, hdrs, 8), -EINVAL);
    assert_int_equal(veil_h1_parser_error(&p), VEIL_H1_E_CL_DUP);

    assert_string_equal(veil_h1_strerror(VEIL_H1_E_CL_TE),
                        "conflicting Content-Length and Transfer-Encoding");
    assert_string_equal(veil_h1_strerror(VEIL_H1_OK), "ok");
    assert_string_equal(veil_h1_strerror(VEIL_H1_E_COUNT), "unknown error");
    /* every code has its own reason */
    for (int i = 0; i < VEIL_H1_E_COUNT; i++) {
        assert_string_not_equal(veil_h1_strerror((enum veil_h1_error)i), "unknown error");
        for (int j = 0; j < i; j++)
            assert_string_not_equal(veil_h1_strerror((enum veil_h1_error)i),
                                    veil_h1_strerror((enum veil_h1_error)j));
    }
}

/* ---- refusals: framing (RFC 9112 6.1, 6.3) ---- */

static void test_refuse_cl_and_te(void **state)
{
    (void)state;
    refuse_req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
               "Transfer-Encoding: chunked\r\n\r\n",
               VEIL_H1_E_CL_TE);
    refuse_req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
               "Content-Length: 0\r\n\r\n",
               VEIL_H1_E_CL_TE);
    refuse_resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                VEIL_H1_E_CL_TE);
}

static void test_refuse_cl_duplicate(void **state)
{
    (void)state;
    refuse_req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
               VEIL_H1_E_CL_DUP);
    refuse_req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\ncontent-length: 6\r\n\r\n",
               VEIL_H1_E_CL_DUP);
    refuse_resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
                VEIL_H1_E_CL_DUP);
}

static void test_refuse_cl_list(void **state)
{
    (void)state;
    refuse_req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", VEIL_H1_E_CL_DUP);
    refuse_req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,5\r\n\r\n", VEIL_H1_E_CL_DUP);
    refuse_req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ,5\r\n\r\n", VEIL_H1_E_CL_DUP);
}

static void test_refuse_cl_invalid(void **state)
{
    (void)state;
    static const char *const values[] = {"", "abc", "+5", "-1", "0x10", "5 5", "5\t", "1e3", "٣"};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char s[128];
        snprintf(s, sizeof(s), "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %s\r\n\r\n",
                 values[i]);
        /* "5\t" is trimmed to a valid "5" */
        if (strcmp(values[i], "5\t") == 0) {
            struct veil_h1_head h;
            assert_true(req(s, &h) > 0);
            assert_int_equal(h.content_length, 5);
            continue;
        }
        refuse_req(s, VEIL_H1_E_CL_INVALID);
    }
}

static void test_refuse_cl_overflow(void **state)
{
    (void)state;
    refuse_req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n",
               VEIL_H1_E_CL_TOO_LARGE);
    refuse_req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 18446744073709551617\r\n\r\n",
               VEIL_H1_E_CL_TOO_LARGE);
    refuse_req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
               VEIL_H1_E_CL_TOO_LARGE);
}

static void test_refuse_te_not_chunked(void **state)
{
    (void)state;
    refuse_req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
               VEIL_H1_E_TE_NOT_CHUNKED);
    refuse_req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
               VEIL_H1_E_TE_NOT_CHUNKED);
    refuse_req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
               "Transfer-Encoding: gzip\r\n\r\n",
               VEIL_H1_E_TE_NOT_CHUNKED);
    refuse_req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n",
               VEIL_H1_E_TE_NOT_CHUNKED);
    /* a response with a final coding other than chunked is refused too */
    refuse_resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
                VEIL_H1_E_TE_NOT_CHUNKED);
}

static void test_refuse_te_unknown_in_request(void **state)
{
    (void)state;
    refuse_req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
               VEIL_H1_E_TE_UNKNOWN);
    refuse_req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n"
               "Transfer-Encoding: chunked\r\n\r\n",
               VEIL_H1_E_TE_UNKNOWN);
}

static void test_refuse_te_invalid(void **state)
{
    (void)state;
    static const char *const values[] = {
        "chunked, chunked", "chunked,", ", chunked", "", "chunked;q=1", "\"chunked\"", "chu nked",
    };
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char s[128];
        snprintf(s, sizeof(s), "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: %s\r\n\r\n",
                 values[i]);
        refuse_req(s, VEIL_H1_E_TE_INVALID);
    }
    refuse_req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n"
               "Transfer-Encoding: chunked\r\n\r\n",
               VEIL_H1_E_TE_INVALID);
}

static void test_refuse_te_http10(void **state)
{
    (void)state;
    refuse_req("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", VEIL_H1_E_TE_HTTP10);
    refuse_resp("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", VEIL_H1_E_TE_HTTP10);
}

/* ---- refusals: bytes and lines (RFC 9112 2.2, 5.2) ---- */

static void test_refuse_obs_fold(void **state)
{
    (void)state;
    refuse_req("GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n", VEIL_H1_E_OBS_FOLD);
    refuse_req("GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n\ttwo\r\n\r\n", VEIL_H1_E_OBS_FOLD);
    /* whitespace before the first field line (RFC 9112 2.2) */
    refuse_req("GET / HTTP/1.1\r\n Host: a\r\n\r\n", VEIL_H1_E_OBS_FOLD);
    refuse_resp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n 0\r\n\r\n", VEIL_H1_E_OBS_FOLD);
}

static void test_refuse_bare_cr(void **state)
{
    (void)state;
    refuse_req("GET / HTTP/1.1\rHost: a\r\n\r\n", VEIL_H1_E_BARE_CR);
    refuse_req("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", VEIL_H1_E_BARE_CR);
    refuse_req("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", VEIL_H1_E_BARE_CR);
    refuse_resp("HTTP/1.1 200 OK\r\nX: 1\r\r\n\r\n", VEIL_H1_E_BARE_CR);
}

static void test_refuse_bare_lf(void **state)
{
    (void)state;
    refuse_req("GET / HTTP/1.1\nHost: a\r\n\r\n", VEIL_H1_E_BARE_LF);
    refuse_req("GET / HTTP/1.1\r\nHost: a\n\n", VEIL_H1_E_BARE_LF);
    refuse_req("GET / HTTP/1.1\r\nHost: a\r\nX: a\nb\r\n\r\n", VEIL_H1_E_BARE_LF);
    refuse_req("\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", VEIL_H1_E_BARE_LF);
    refuse_resp("HTTP/1.1 200 OK\n\n", VEIL_H1_E_BARE_LF);
}

static void test_refuse_nul(void **state)
{
    (void)state;
    refuse_lim(false, LIT("GET /a\0b HTTP/1.1\r\nHost: a\r\n\r\n"), NULL, VEIL_H1_E_NUL);
    refuse_lim(false, LIT("GET / HTTP/1.1\r\nHost: a\0\r\n\r\n"), NULL, VEIL_H1_E_NUL);
    refuse_lim(false, LIT("GET / HTTP/1.1\r\nHo\0st: a\r\n\r\n"), NULL, VEIL_H1_E_NUL);
    refuse_lim(false, LIT("\0GET / HTTP/1.1\r\nHost: a\r\n\r\n"), NULL, VEIL_H1_E_NUL);
    refuse_lim(false, LIT("\r\n\0"), NULL, VEIL_H1_E_NUL);
    refuse_lim(true, LIT("HTTP/1.1 200 O\0K\r\n\r\n"), NULL, VEIL_H1_E_NUL);
}

static void test_refuse_head_too_large(void **state)
{
    (void)state;
    struct veil_h1_limits l = {.head_bytes_max = 64};
    const char *s = "GET / HTTP/1.1\r\nHost: a\r\nX-Long: 0123456789012345678901234567890\r\n\r\n";
    refuse_lim(false, s, strlen(s), &l, VEIL_H1_E_HEAD_TOO_LARGE);
    /* refused as soon as 64 bytes without the end are held, not later */
    struct veil_h1_parser p;
    struct veil_h1_head h;
    veil_h1_parser_init(&p, &l);
    assert_int_equal(veil_h1_parse_request(&p, s, 63, &h, hdrs, 8), -EAGAIN);
    assert_int_equal(veil_h1_parse_request(&p, s, 64, &h, hdrs, 8), -E2BIG);
    /* leading empty lines count */
    l.head_bytes_max = 30;
    refuse_lim(false, LIT("\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), &l,
               VEIL_H1_E_HEAD_TOO_LARGE);
    refuse_lim(true, LIT("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"), &l,
               VEIL_H1_E_HEAD_TOO_LARGE);
}

static void test_refuse_too_many_fields(void **state)
{
    (void)state;
    char s[8192];
    size_t n = (size_t)snprintf(s, sizeof(s), "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 0; i < 100; i++)
        n += (size_t)snprintf(s + n, sizeof(s) - n, "X-%d: %d\r\n", i, i);
    n += (size_t)snprintf(s + n, sizeof(s) - n, "\r\n");
    refuse_lim(false, s, n, NULL, VEIL_H1_E_TOO_MANY_FIELDS);
    /* 100 is fine */
    const char *second = strstr(s, "X-0:");
    struct veil_h1_head h;
    enum veil_h1_error err;
    memmove((char *)second, second + strlen("X-0: 0\r\n"), strlen(second + 8) + 1);
    assert_true(parse(false, 0, s, strlen(s), NULL, &h, &err) > 0);
    assert_int_equal(h.nheaders, 100);
}

/* ---- refusals: start lines (RFC 9112 3, 4) ---- */

static void test_refuse_request_target(void **state)
{
    (void)state;
    static const char *const lines[] = {
        "GET  HTTP/1.1",                  /* empty */
        "GET HTTP/1.1",                   /* missing */
        "GET  / HTTP/1.1",                /* empty, then an extra SP */
        "GET foo HTTP/1.1",               /* no form */
        "GET /a#frag HTTP/1.1",           /* fragment */
        "GET /\x7f HTTP/1.1",             /* DEL */
        "GET /caf\xc3\xa9 HTTP/1.1",      /* not ASCII */
        "GET * HTTP/1.1",                 /* asterisk-form for GET */
        "CONNECT /x HTTP/1.1",            /* origin-form for CONNECT */
        "CONNECT host HTTP/1.1",          /* authority-form without port */
        "CONNECT host:99999 HTTP/1.1",    /* port out of range */
        "CONNECT user@host:1 HTTP/1.1",   /* userinfo */
        "GET http://user@host/ HTTP/1.1", /* userinfo */
        "GET http:///x HTTP/1.1",         /* empty authority */
        "GET 1http://a/ HTTP/1.1",        /* bad scheme */
        "GET http:/a HTTP/1.1",           /* no authority */
        "GET http://a%zz/ HTTP/1.1",      /* bad percent-encoding */
        "GET http://[::1/ HTTP/1.1",      /* unclosed IP literal */
    };
    for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
        char s[128];
        snprintf(s, sizeof(s), "%s\r\nHost: a\r\n\r\n", lines[i]);
        refuse_req(s, VEIL_H1_E_TARGET);
    }
}

static void test_refuse_request_line(void **state)
{
    (void)state;
    refuse_req("G@T / HTTP/1.1\r\nHost: a\r\n\r\n", VEIL_H1_E_METHOD);
    refuse_req(" GET / HTTP/1.1\r\nHost: a\r\n\r\n", VEIL_H1_E_METHOD);
    refuse_req("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", VEIL_H1_E_METHOD);
    refuse_req("GET\r\nHost: a\r\n\r\n", VEIL_H1_E_REQUEST_LINE);
    refuse_req("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", VEIL_H1_E_REQUEST_LINE);
    refuse_req("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", VEIL_H1_E_REQUEST_LINE);
    refuse_req("GET /\r\nHost: a\r\n\r\n", VEIL_H1_E_VERSION);
    refuse_req("GET / HTTP/1.2\r\nHost: a\r\n\r\n", VEIL_H1_E_VERSION);
    refuse_req("GET / HTTP/2.0\r\nHost: a\r\n\r\n", VEIL_H1_E_VERSION);
    refuse_req("GET / http/1.1\r\nHost: a\r\n\r\n", VEIL_H1_E_VERSION);
    refuse_req("GET / HTTP/1.10\r\nHost: a\r\n\r\n", VEIL_H1_E_VERSION);
    refuse_req("GET / HTTP/0.9\r\nHost: a\r\n\r\n", VEIL_H1_E_VERSION);
}

static void test_refuse_status_line(void **state)
{
    (void)state;
    refuse_resp("HTTP/1.1 20 OK\r\n\r\n", VEIL_H1_E_STATUS);
    refuse_resp("HTTP/1.1 20\r\n\r\n", VEIL_H1_E_STATUS);
    refuse_resp("HTTP/1.1 099 Low\r\n\r\n", VEIL_H1_E_STATUS);
    refuse_resp("HTTP/1.1 600 High\r\n\r\n", VEIL_H1_E_STATUS);
    refuse_resp("HTTP/1.1 2000 OK\r\n\r\n", VEIL_H1_E_STATUS);
    refuse_resp("HTTP/1.1 2x0 OK\r\n\r\n", VEIL_H1_E_STATUS);
    refuse_resp("HTTP/1.1\r\n\r\n", VEIL_H1_E_STATUS_LINE);
    refuse_resp("ICY 200 OK\r\n\r\n", VEIL_H1_E_STATUS_LINE);
    refuse_resp("HTTP/1.1 200 O\x01K\r\n\r\n", VEIL_H1_E_STATUS_LINE);
    refuse_resp("\r\nHTTP/1.1 200 OK\r\n\r\n", VEIL_H1_E_STATUS_LINE);
    refuse_resp("HTTP/2 200 OK\r\n\r\n", VEIL_H1_E_VERSION);
    refuse_resp("HTTP/1.1  200 OK\r\n\r\n", VEIL_H1_E_STATUS);
}

/* ---- refusals: field lines (RFC 9112 5, RFC 9110 5.5) ---- */

static void test_refuse_field_name(void **state)
{
    (void)state;
    refuse_req("GET / HTTP/1.1\r\nHost: a\r\nX(A): 1\r\n\r\n", VEIL_H1_E_FIELD_NAME);
    refuse_req("GET / HTTP/1.1\r\nHost: a\r\n: 1\r\n\r\n", VEIL_H1_E_FIELD_NAME);
    refuse_req("GET / HTTP/1.1\r\nHost: a\r\nX A: 1\r\n\r\n", VEIL_H1_E_FIELD_NAME);
    refuse_req("GET / HTTP/1.1\r\nHost: a\r\nX\xc3\xa9: 1\r\n\r\n", VEIL_H1_E_FIELD_NAME);
    refuse_req("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", VEIL_H1_E_FIELD_NO_COLON);
}

static void test_refuse_space_before_colon(void **state)
{
    (void)state;
    refuse_req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length : 5\r\n\r\n",
               VEIL_H1_E_FIELD_NAME_SPACE);
    refuse_req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding\t: chunked\r\n\r\n",
               VEIL_H1_E_FIELD_NAME_SPACE);
    refuse_resp("HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n", VEIL_H1_E_FIELD_NAME_SPACE);
}

static void test_refuse_field_value(void **state)
{
    (void)state;
    refuse_req("GET / HTTP/1.1\r\nHost: a\r\nX: a\x01z\r\n\r\n", VEIL_H1_E_FIELD_VALUE);
    refuse_req("GET / HTTP/1.1\r\nHost: a\r\nX: a\x7fz\r\n\r\n", VEIL_H1_E_FIELD_VALUE);
    refuse_req("GET / HTTP/1.1\r\nHost: a\r\nX: \x1b[31m\r\n\r\n", VEIL_H1_E_FIELD_VALUE);
    /* HTAB, SP and obs-text are field characters */
    struct veil_h1_head h;
    const char *s = "GET / HTTP/1.1\r\nHost: a\r\nX: a\tb c\xe9\r\n\r\n";
    assert_true(req(s, &h) > 0);
    assert_true(span_is(s, h.headers[1].value, "a\tb c\xe9"));
}

static void test_refuse_host(void **state)
{
    (void)state;
    refuse_req("GET / HTTP/1.1\r\n\r\n", VEIL_H1_E_HOST_MISSING);
    refuse_req("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", VEIL_H1_E_HOST_DUP);
    refuse_req("GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n", VEIL_H1_E_HOST_DUP);
    static const char *const values[] = {
        "a b", "a/b", "user@a", "a:", "a:65536", "a:x", "[zz]", "a%2"};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char s[128];
        snprintf(s, sizeof(s), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", values[i]);
        refuse_req(s, VEIL_H1_E_HOST_INVALID);
    }
    /* HTTP/1.0 may leave Host out */
    struct veil_h1_head h;
    assert_true(req("GET / HTTP/1.0\r\n\r\n", &h) > 0);
    assert_false(h.flags & VEIL_H1_F_HOST);
}

/* ---- refusals: chunked bodies (RFC 9112 7.1) ---- */

static void test_refuse_chunk_size(void **state)
{
    (void)state;
    refuse_chunked("\r\n", VEIL_H1_E_CHUNK_SIZE);
    refuse_chunked("x\r\n", VEIL_H1_E_CHUNK_SIZE);
    refuse_chunked("-1\r\n", VEIL_H1_E_CHUNK_SIZE);
    refuse_chunked("0x5\r\nhello\r\n", VEIL_H1_E_CHUNK_SIZE);
    refuse_chunked(" 5\r\nhello\r\n", VEIL_H1_E_CHUNK_SIZE);
    refuse_chunked("5 \r\nhello\r\n", VEIL_H1_E_CHUNK_SIZE);
    refuse_chunked("+5\r\nhello\r\n", VEIL_H1_E_CHUNK_SIZE);
    refuse_chunked("5g\r\nhello\r\n", VEIL_H1_E_CHUNK_SIZE);
    refuse_chunked("5\r\nhello\r\n;x\r\n", VEIL_H1_E_CHUNK_SIZE);
    refuse_chunked("5\n", VEIL_H1_E_BARE_LF);
    refuse_chunked("5\rhello", VEIL_H1_E_BARE_CR);
    refuse_chunked_n(LIT("5\0\r\n"), NULL, VEIL_H1_E_NUL);
}

static void test_refuse_chunk_overflow(void **state)
{
    (void)state;
    refuse_chunked("8000000000000000\r\n", VEIL_H1_E_CHUNK_TOO_LARGE);
    refuse_chunked("ffffffffffffffffff\r\n", VEIL_H1_E_CHUNK_TOO_LARGE);
    refuse_chunked("00000000000000001\r\nx\r\n0\r\n\r\n", VEIL_H1_E_CHUNK_TOO_LARGE);
    /* the largest size is accepted (and waits for its data) */
    struct veil_h1_chunked c;
    struct veil_h1_span d;
    veil_h1_chunked_init(&c, NULL);
    assert_int_equal(veil_h1_chunked_decode(&c, "7fffffffffffffff\r\nab", 20, &d), 20);
    assert_true(d.off == 18 && d.len == 2);
    assert_int_equal(veil_h1_chunked_error(&c), VEIL_H1_OK);
}

static void test_refuse_chunk_ext(void **state)
{
    (void)state;
    refuse_chunked("5;a=\x01\r\nhello\r\n0\r\n\r\n", VEIL_H1_E_CHUNK_EXT);
    refuse_chunked("5;a=\x7f\r\nhello\r\n0\r\n\r\n", VEIL_H1_E_CHUNK_EXT);
    refuse_chunked("5;a\nhello\r\n0\r\n\r\n", VEIL_H1_E_BARE_LF);
    refuse_chunked("5;a\rhello\r\n0\r\n\r\n", VEIL_H1_E_BARE_CR);
    refuse_chunked_n(LIT("5;\0\r\n"), NULL, VEIL_H1_E_NUL);
    refuse_chunked_n(LIT("0\r\nX: \0\r\n\r\n"), NULL, VEIL_H1_E_NUL);
}

static void test_refuse_chunk_line_too_long(void **state)
{
    (void)state;
    struct veil_h1_limits l = {.chunk_line_max = 16};
    /* 16 bytes with the CRLF pass, 17 do not */
    refuse_chunked_lim("1;aaaaaaaaaaaaa\r\nx\r\n0\r\n\r\n", &l, VEIL_H1_E_CHUNK_LINE_TOO_LONG);
    char out[16];
    enum veil_h1_error err;
    const char *ok = "1;aaaaaaaaaaaa\r\nx\r\n0;aaaaaaaaaaaaa\r\n\r\n";
    assert_int_equal(chunked_whole(ok, strlen(ok), &l, out, sizeof(out), &err), -E2BIG);
    const char *ok2 = "1;aaaaaaaaaaaa\r\nx\r\n0;aaaaaaaaaaaa\r\n\r\n";
    assert_int_equal(chunked_whole(ok2, strlen(ok2), &l, out, sizeof(out), &err), strlen(ok2));
    assert_string_equal(out, "x");
}

static void test_refuse_chunk_crlf(void **state)
{
    (void)state;
    refuse_chunked("3\r\nabcd\r\n0\r\n\r\n", VEIL_H1_E_CHUNK_CRLF);
    refuse_chunked("3\r\nabc\n0\r\n\r\n", VEIL_H1_E_CHUNK_CRLF);
    refuse_chunked("3\r\nabc\rX0\r\n\r\n", VEIL_H1_E_CHUNK_CRLF);
    refuse_chunked("3\r\nabcX\n0\r\n\r\n", VEIL_H1_E_CHUNK_CRLF);
    refuse_chunked("3\r\nab\r\n\r\n0\r\n\r\n", VEIL_H1_E_CHUNK_CRLF);
}

static void test_refuse_trailers(void **state)
{
    (void)state;
    refuse_chunked("0\r\nX: a\r\n b\r\n\r\n", VEIL_H1_E_OBS_FOLD);
    refuse_chunked("0\r\n X: a\r\n\r\n", VEIL_H1_E_OBS_FOLD);
    refuse_chunked("0\r\nX : a\r\n\r\n", VEIL_H1_E_FIELD_NAME_SPACE);
    refuse_chunked("0\r\nNoColon\r\n\r\n", VEIL_H1_E_FIELD_NO_COLON);
    refuse_chunked("0\r\n: a\r\n\r\n", VEIL_H1_E_FIELD_NAME);
    refuse_chunked("0\r\nX(: a\r\n\r\n", VEIL_H1_E_FIELD_NAME);
    refuse_chunked("0\r\nX: a\x01\r\n\r\n", VEIL_H1_E_FIELD_VALUE);
    refuse_chunked("0\r\nX: a\nY: b\r\n\r\n", VEIL_H1_E_BARE_LF);
    refuse_chunked("0\r\nX: a\rY: b\r\n\r\n", VEIL_H1_E_BARE_CR);
    refuse_chunked("0\r\n\rX", VEIL_H1_E_BARE_CR);
    refuse_chunked("0\r\n\n", VEIL_H1_E_BARE_LF);
    refuse_chunked("0\r\nContent-Length: 5\r\n\r\n", VEIL_H1_E_TRAILER_FRAMING);
    refuse_chunked("0\r\ntransfer-ENCODING: chunked\r\n\r\n", VEIL_H1_E_TRAILER_FRAMING);
    /* names that only start like a framing field are fine */
    char out[8];
    enum veil_h1_error err;
    const char *ok = "0\r\nContent-Lengthx: 5\r\nContent-Lengt: 5\r\n\r\n";
    assert_int_equal(chunked_bytewise(ok, strlen(ok), NULL, out, sizeof(out), &err), strlen(ok));
}

static void test_refuse_trailers_too_large(void **state)
{
    (void)state;
    struct veil_h1_limits l = {.trailer_bytes_max = 16, .trailer_fields_max = 2};
    /* 16 bytes of trailer section pass, 17 do not */
    char out[8];
    enum veil_h1_error err;
    const char *ok = "0\r\nA: 123456789\r\n\r\n";
    assert_int_equal(chunked_bytewise(ok, strlen(ok), &l, out, sizeof(out), &err), strlen(ok));
    refuse_chunked_lim("0\r\nA: 1234567890\r\n\r\n", &l, VEIL_H1_E_TRAILERS_TOO_LARGE);
    refuse_chunked_lim("0\r\nA:\r\nB:\r\nC:\r\n\r\n", &l, VEIL_H1_E_TRAILERS_TOO_LARGE);
    const char *two = "0\r\nA:\r\nB:\r\n\r\n";
    assert_int_equal(chunked_whole(two, strlen(two), &l, out, sizeof(out), &err), strlen(two));
}

static void test_refuse_truncated_body(void **state)
{
    (void)state;
    struct veil_h1_head h;
    struct veil_h1_body b;
    struct veil_h1_span d;
    assert_true(req("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\n", &h) > 0);
    veil_h1_body_init(&b, &h, NULL);
    assert_int_equal(veil_h1_body_read(&b, "abc", 3, &d), 3);
    assert_int_equal(veil_h1_body_eof(&b), -EINVAL);
    assert_int_equal(veil_h1_body_error(&b), VEIL_H1_E_TRUNCATED);
    assert_int_equal(veil_h1_body_read(&b, "d", 1, &d), -EINVAL);

    assert_true(req("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", &h) > 0);
    veil_h1_body_init(&b, &h, NULL);
    assert_int_equal(veil_h1_body_read(&b, "3\r\nabc\r\n0\r\n", 11, &d), 6);
    assert_int_equal(veil_h1_body_read(&b, "\r\n0\r\n", 5, &d), 5);
    assert_false(veil_h1_body_done(&b));
    assert_int_equal(veil_h1_body_eof(&b), -EINVAL);
    assert_int_equal(veil_h1_body_error(&b), VEIL_H1_E_TRUNCATED);

    /* a chunked error is the body's error */
    veil_h1_body_init(&b, &h, NULL);
    assert_int_equal(veil_h1_body_read(&b, "z\r\n", 3, &d), -EINVAL);
    assert_int_equal(veil_h1_body_error(&b), VEIL_H1_E_CHUNK_SIZE);
    /* and it sticks */
    assert_int_equal(veil_h1_body_read(&b, "0\r\n\r\n", 5, &d), -EINVAL);
    assert_int_equal(veil_h1_body_eof(&b), -EINVAL);
    assert_int_equal(veil_h1_body_error(&b), VEIL_H1_E_CHUNK_SIZE);
    struct veil_h1_chunked c;
    veil_h1_chunked_init(&c, NULL);
    assert_int_equal(veil_h1_chunked_decode(&c, "5x", 2, &d), -EINVAL);
    assert_int_equal(veil_h1_chunked_decode(&c, "0\r\n\r\n", 5, &d), -EINVAL);
    assert_true(veil_h1_chunked_error(&c) == VEIL_H1_E_CHUNK_SIZE && d.len == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_char_table),
        cmocka_unit_test(test_word_tests),
        cmocka_unit_test(test_scan_bad_byte_everywhere),
        cmocka_unit_test(test_field_value_ctl_everywhere),
        cmocka_unit_test(test_span_ieq),
        cmocka_unit_test(test_get_no_body),
        cmocka_unit_test(test_post_content_length),
        cmocka_unit_test(test_chunked_byte_by_byte),
        cmocka_unit_test(test_incremental_head),
        cmocka_unit_test(test_keep_alive_rules),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_response_no_body),
        cmocka_unit_test(test_upgrade_and_connect),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_errors_are_sticky_and_named),
        cmocka_unit_test(test_refuse_cl_and_te),
        cmocka_unit_test(test_refuse_cl_duplicate),
        cmocka_unit_test(test_refuse_cl_list),
        cmocka_unit_test(test_refuse_cl_invalid),
        cmocka_unit_test(test_refuse_cl_overflow),
        cmocka_unit_test(test_refuse_te_not_chunked),
        cmocka_unit_test(test_refuse_te_unknown_in_request),
        cmocka_unit_test(test_refuse_te_invalid),
        cmocka_unit_test(test_refuse_te_http10),
        cmocka_unit_test(test_refuse_obs_fold),
        cmocka_unit_test(test_refuse_bare_cr),
        cmocka_unit_test(test_refuse_bare_lf),
        cmocka_unit_test(test_refuse_nul),
        cmocka_unit_test(test_refuse_head_too_large),
        cmocka_unit_test(test_refuse_too_many_fields),
        cmocka_unit_test(test_refuse_request_target),
        cmocka_unit_test(test_refuse_request_line),
        cmocka_unit_test(test_refuse_status_line),
        cmocka_unit_test(test_refuse_field_name),
        cmocka_unit_test(test_refuse_space_before_colon),
        cmocka_unit_test(test_refuse_field_value),
        cmocka_unit_test(test_refuse_host),
        cmocka_unit_test(test_refuse_chunk_size),
        cmocka_unit_test(test_refuse_chunk_overflow),
        cmocka_unit_test(test_refuse_chunk_ext),
        cmocka_unit_test(test_refuse_chunk_line_too_long),
        cmocka_unit_test(test_refuse_chunk_crlf),
        cmocka_unit_test(test_refuse_trailers),
        cmocka_unit_test(test_refuse_trailers_too_large),
        cmocka_unit_test(test_refuse_truncated_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
