/*
 * HTTP/1.1 heads, framing and chunked bodies. docs/http1.md has the grammar
 * accepted and the reason for each refusal.
 */
#include "http/h1.h"

#include "core/bug.h"

#include <errno.h>
#include <string.h>

/* ---- limits and errors ---- */

static const char *const reasons[VEIL_H1_E_COUNT] = {
    [VEIL_H1_OK] = "ok",
    [VEIL_H1_E_NUL] = "NUL byte in message",
    [VEIL_H1_E_BARE_CR] = "bare CR",
    [VEIL_H1_E_BARE_LF] = "bare LF",
    [VEIL_H1_E_HEAD_TOO_LARGE] = "message head too large",
    [VEIL_H1_E_TOO_MANY_FIELDS] = "too many header fields",
    [VEIL_H1_E_METHOD] = "invalid method",
    [VEIL_H1_E_TARGET] = "missing or invalid request target",
    [VEIL_H1_E_VERSION] = "missing or unsupported HTTP version",
    [VEIL_H1_E_REQUEST_LINE] = "malformed request line",
    [VEIL_H1_E_STATUS_LINE] = "malformed status line",
    [VEIL_H1_E_STATUS] = "invalid status code",
    [VEIL_H1_E_OBS_FOLD] = "obsolete line folding",
    [VEIL_H1_E_FIELD_NAME] = "invalid header field name",
    [VEIL_H1_E_FIELD_NAME_SPACE] = "whitespace between header field name and colon",
    [VEIL_H1_E_FIELD_NO_COLON] = "header field line without colon",
    [VEIL_H1_E_FIELD_VALUE] = "control character in header field value",
    [VEIL_H1_E_HOST_MISSING] = "HTTP/1.1 request without Host",
    [VEIL_H1_E_HOST_DUP] = "duplicate Host",
    [VEIL_H1_E_HOST_INVALID] = "invalid Host",
    [VEIL_H1_E_CL_TE] = "conflicting Content-Length and Transfer-Encoding",
    [VEIL_H1_E_CL_DUP] = "duplicate Content-Length",
    [VEIL_H1_E_CL_INVALID] = "invalid Content-Length",
    [VEIL_H1_E_CL_TOO_LARGE] = "Content-Length too large",
    [VEIL_H1_E_TE_INVALID] = "invalid Transfer-Encoding",
    [VEIL_H1_E_TE_NOT_CHUNKED] = "Transfer-Encoding without chunked as final coding",
    [VEIL_H1_E_TE_UNKNOWN] = "transfer coding other than chunked in request",
    [VEIL_H1_E_TE_HTTP10] = "Transfer-Encoding in HTTP/1.0 message",
    [VEIL_H1_E_CHUNK_SIZE] = "invalid chunk size",
    [VEIL_H1_E_CHUNK_TOO_LARGE] = "chunk size too large",
    [VEIL_H1_E_CHUNK_EXT] = "invalid chunk extension",
    [VEIL_H1_E_CHUNK_LINE_TOO_LONG] = "chunk-size line too long",
    [VEIL_H1_E_CHUNK_CRLF] = "missing CRLF after chunk data",
    [VEIL_H1_E_TRAILERS_TOO_LARGE] = "trailer section too large",
    [VEIL_H1_E_TRAILER_FRAMING] = "framing field in trailer section",
    [VEIL_H1_E_TRUNCATED] = "message body truncated",
};

const char *veil_h1_strerror(enum veil_h1_error e)
{
    if ((unsigned)e >= VEIL_H1_E_COUNT || reasons[e] == NULL)
        return "unknown error";
    return reasons[e];
}

static int err_errno(enum veil_h1_error e)
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

void veil_h1_limits_default(struct veil_h1_limits *l)
{
    *l = (struct veil_h1_limits){
        .head_bytes_max = VEIL_H1_HEAD_BYTES_MAX,
        .head_fields_max = VEIL_H1_HEAD_FIELDS_MAX,
        .chunk_line_max = VEIL_H1_CHUNK_LINE_MAX,
        .trailer_bytes_max = VEIL_H1_TRAILER_BYTES_MAX,
        .trailer_fields_max = VEIL_H1_TRAILER_FIELDS_MAX,
    };
}

static void limits_fill(struct veil_h1_limits *out, const struct veil_h1_limits *in)
{
    veil_h1_limits_default(out);
    if (in == NULL)
        return;
    if (in->head_bytes_max != 0)
        out->head_bytes_max = in->head_bytes_max < UINT32_MAX ? in->head_bytes_max : UINT32_MAX;
    if (in->head_fields_max != 0)
        out->head_fields_max = in->head_fields_max;
    if (in->chunk_line_max != 0)
        out->chunk_line_max = in->chunk_line_max;
    if (in->trailer_bytes_max != 0)
        out->trailer_bytes_max = in->trailer_bytes_max;
    if (in->trailer_fields_max != 0)
        out->trailer_fields_max = in->trailer_fields_max;
}

/* ---- characters (RFC 9110 5.6.2, 5.5; RFC 3986) ---- */

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static bool is_alpha(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int hex_value(unsigned char c)
{
    if (is_digit(c))
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * The character classes, one bit each in a table the compiler fills from
 * the predicates below (no initialisation at run time). h1_test.c checks
 * every byte against the definitions written the plain way.
 */
enum {
    CC_TCHAR = 1 << 0,  /* token character (RFC 9110 5.6.2) */
    CC_FIELD = 1 << 1,  /* field-vchar, SP or HTAB: anything but the CTLs other than HTAB */
    CC_REG = 1 << 2,    /* unreserved / sub-delims (RFC 3986 2.2, 2.3); '%' is checked apart */
    CC_TARGET = 1 << 3, /* request target: visible ASCII but '#' (RFC 9112 3.2: no fragment) */
    CC_PLAIN = 1 << 4,  /* anything but NUL, CR and LF: what scan() steps over */
};

#define CC_ALPHA_P(c) (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z'))
#define CC_DIGIT_P(c) ((c) >= '0' && (c) <= '9')
#define CC_TCHAR_P(c)                                                                              \
    (CC_ALPHA_P(c) || CC_DIGIT_P(c) || (c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' ||     \
     (c) == '&' || (c) == '\'' || (c) == '*' || (c) == '+' || (c) == '-' || (c) == '.' ||          \
     (c) == '^' || (c) == '_' || (c) == '`' || (c) == '|' || (c) == '~')
#define CC_FIELD_P(c) ((c) == '\t' || ((c) >= 0x20 && (c) != 0x7f))
#define CC_REG_P(c)                                                                                \
    (CC_ALPHA_P(c) || CC_DIGIT_P(c) || (c) == '-' || (c) == '.' || (c) == '_' || (c) == '~' ||     \
     (c) == '!' || (c) == '$' || (c) == '&' || (c) == '\'' || (c) == '(' || (c) == ')' ||          \
     (c) == '*' || (c) == '+' || (c) == ',' || (c) == ';' || (c) == '=')
#define CC_TARGET_P(c) ((c) > 0x20 && (c) < 0x7f && (c) != '#')
#define CC_PLAIN_P(c)  ((c) != '\0' && (c) != '\r' && (c) != '\n')
#define CC(c)                                                                                      \
    (uint8_t)((CC_TCHAR_P(c) ? CC_TCHAR : 0) | (CC_FIELD_P(c) ? CC_FIELD : 0) |                    \
              (CC_REG_P(c) ? CC_REG : 0) | (CC_TARGET_P(c) ? CC_TARGET : 0) |                      \
              (CC_PLAIN_P(c) ? CC_PLAIN : 0))
#define CC_LOWER(c) (uint8_t)((c) >= 'A' && (c) <= 'Z' ? (c) + ('a' - 'A') : (c))

#define CC_R4(f, b)  f(b), f(b + 1), f(b + 2), f(b + 3)
#define CC_R16(f, b) CC_R4(f, b), CC_R4(f, b + 4), CC_R4(f, b + 8), CC_R4(f, b + 12)
#define CC_R64(f, b) CC_R16(f, b), CC_R16(f, b + 16), CC_R16(f, b + 32), CC_R16(f, b + 48)
#define CC_R256(f)   CC_R64(f, 0), CC_R64(f, 64), CC_R64(f, 128), CC_R64(f, 192)

static const uint8_t char_class[256] = {CC_R256(CC)};
static const uint8_t lower_of[256] = {CC_R256(CC_LOWER)};

static bool is_tchar(unsigned char c)
{
    return char_class[c] & CC_TCHAR;
}

static bool is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

static bool is_field_char(unsigned char c)
{
    return char_class[c] & CC_FIELD;
}

static bool is_reg_name_char(unsigned char c)
{
    return char_class[c] & CC_REG;
}

static unsigned char lower(unsigned char c)
{
    return lower_of[c];
}

/* p[0..n) equals the lowercase literal lit[0..n) ignoring the case of p. */
static bool ieq_n(const char *p, const char *lit, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)p[i]) != (unsigned char)lit[i])
            return false;
    return true;
}

/* The lowercase literal's length is known where it is written ("" lit:
 * only a literal compiles). */
#define IEQ_LIT(p, n, lit) ((n) == sizeof("" lit) - 1 && ieq_n(p, lit, sizeof(lit) - 1))

static bool all_tchar(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)p[i]))
            return false;
    return n > 0;
}

static struct veil_h1_span span(size_t off, size_t len)
{
    return (struct veil_h1_span){.off = (uint32_t)off, .len = (uint32_t)len};
}

/*
 * Word-at-a-time tests on 8 bytes. In v - 0x0101..01 * n a borrow only
 * starts at a byte below n, so the lowest byte flagged is exactly the first
 * such byte (the flags above it may be wrong).
 */
#define BYTES8(b) (0x0101010101010101ull * (b))

/* The 8 bytes at p, any alignment, byte i in bits 8i..8i+7. */
static uint64_t load8(const char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

/* The first byte below 0x0e, as NUL, LF and CR are (HTAB and a few other
 * CTLs too), has its top bit set; 0 if there is none. */
static uint64_t low_bytes(uint64_t v)
{
    return (v - BYTES8(0x0e)) & ~v & BYTES8(0x80);
}

/* One of the bytes at p is a CTL: below 0x20 (HTAB too) or DEL. */
static bool word_has_ctl(const char *p)
{
    uint64_t v = load8(p), del = v ^ BYTES8(0x7f);
    return ((((v - BYTES8(0x20)) & ~v) | ((del - BYTES8(0x01)) & ~del)) & BYTES8(0x80)) != 0;
}

/* All of p[0..n) are field characters. Words first (the last one overlaps
 * the one before); if one holds a CTL, HTAB perhaps, byte by byte. */
static bool all_field_chars(const char *p, size_t n)
{
    if (n >= 8) {
        size_t i = 0;
        while (i + 8 < n && !word_has_ctl(p + i))
            i += 8;
        if (i + 8 >= n && !word_has_ctl(p + n - 8))
            return true;
    }
    for (size_t i = 0; i < n; i++)
        if (!is_field_char((unsigned char)p[i]))
            return false;
    return true;
}

/* ---- scanning for the end of a head ---- */

static void parser_restart(struct veil_h1_parser *p)
{
    struct veil_h1_limits lim = p->_lim;
    memset(p, 0, sizeof(*p));
    p->_lim = lim;
}

void veil_h1_parser_init(struct veil_h1_parser *p, const struct veil_h1_limits *lim)
{
    memset(p, 0, sizeof(*p));
    limits_fill(&p->_lim, lim);
}

enum veil_h1_error veil_h1_parser_error(const struct veil_h1_parser *p)
{
    return p->_err;
}

static ssize_t parser_fail(struct veil_h1_parser *p, enum veil_h1_error e)
{
    p->_err = e;
    return err_errno(e);
}

/* A line ended with the CRLF at `i`. Returns 1 when it was the blank line
 * ending the head, 0 to go on, or sets *err. */
static int line_end(struct veil_h1_parser *p, size_t i, bool request, size_t fields_max,
                    enum veil_h1_error *err)
{
    bool empty = i == p->_line;
    p->_line = (uint32_t)(i + 2);
    if (!p->_started) {
        if (!empty)
            p->_started = true;
        else if (request)
            p->_start = p->_line; /* RFC 9112 2.2: empty lines before a request */
        else
            *err = VEIL_H1_E_STATUS_LINE;
        return 0;
    }
    if (empty)
        return 1;
    if (++p->_fields > fields_max)
        *err = VEIL_H1_E_TOO_MANY_FIELDS;
    return 0;
}

/*
 * Checks buf[_scanned, min(len, head_bytes_max)) for NUL and bare CR or LF
 * and counts lines. Sets *head_len when the blank line is found (0 if not
 * yet). A CR at the end of the input is looked at again with the next call;
 * every other byte once.
 */
static enum veil_h1_error scan(struct veil_h1_parser *p, const char *buf, size_t len, bool request,
                               size_t fields_max, size_t *head_len)
{
    size_t max = p->_lim.head_bytes_max;
    size_t end = len < max ? len : max;
    size_t i = p->_scanned;
    enum veil_h1_error err = VEIL_H1_OK;

    *head_len = 0;
    while (i < end) {
        /* Bytes that are none of NUL, CR and LF are stepped over: a word
         * at a time up to the first that could be one. */
        if (end - i >= 8) {
            uint64_t m = low_bytes(load8(buf + i));
            if (m == 0) {
                i += 8;
                continue;
            }
            i += (size_t)__builtin_ctzll(m) / 8;
        }
        unsigned char c = (unsigned char)buf[i];
        if (char_class[c] & CC_PLAIN) {
            i++;
            continue;
        }
        if (c == '\0')
            return VEIL_H1_E_NUL;
        if (c == '\n')
            return VEIL_H1_E_BARE_LF;
        /* a CR */
        if (i + 1 == end)
            break; /* the LF, if any, is not here yet */
        if (buf[i + 1] != '\n')
            return VEIL_H1_E_BARE_CR;
        int done = line_end(p, i, request, fields_max, &err);
        i += 2;
        if (err != VEIL_H1_OK)
            return err;
        if (done) {
            p->_scanned = (uint32_t)i;
            *head_len = i;
            return VEIL_H1_OK;
        }
    }
    p->_scanned = (uint32_t)i;
    return end == max ? VEIL_H1_E_HEAD_TOO_LARGE : VEIL_H1_OK;
}

/* ---- start lines ---- */

static enum veil_h1_method method_of(const char *m, size_t n)
{
    static const struct {
        const char *name;
        enum veil_h1_method m;
    } known[] = {
        {"GET", VEIL_H1_M_GET},         {"HEAD", VEIL_H1_M_HEAD},
        {"POST", VEIL_H1_M_POST},       {"PUT", VEIL_H1_M_PUT},
        {"DELETE", VEIL_H1_M_DELETE},   {"CONNECT", VEIL_H1_M_CONNECT},
        {"OPTIONS", VEIL_H1_M_OPTIONS}, {"TRACE", VEIL_H1_M_TRACE},
        {"PATCH", VEIL_H1_M_PATCH},
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strlen(known[i].name) == n && memcmp(known[i].name, m, n) == 0)
            return known[i].m;
    return VEIL_H1_M_OTHER;
}

static enum veil_h1_error version(const char *v, size_t n, uint8_t *minor)
{
    if (n != 8 || memcmp(v, "HTTP/1.", 7) != 0 || (v[7] != '0' && v[7] != '1'))
        return VEIL_H1_E_VERSION;
    *minor = (uint8_t)(v[7] - '0');
    return VEIL_H1_OK;
}

/* host [":" port] (RFC 9110 7.2, RFC 3986 3.2.2): a reg-name or an IP
 * literal in brackets; no userinfo; a port of 1 to 5 digits up to 65535. */
static bool authority_ok(const char *p, size_t n, bool port_required)
{
    size_t i = 0;
    if (n > 0 && p[0] == '[') {
        for (i = 1; i < n && p[i] != ']'; i++)
            if (hex_value((unsigned char)p[i]) < 0 && p[i] != ':' && p[i] != '.')
                return false;
        if (i == n || i == 1)
            return false;
        i++;
    } else {
        while (i < n) {
            if (is_reg_name_char((unsigned char)p[i])) {
                i++; /* neither ':' nor '%' is one */
            } else if (p[i] == ':') {
                break;
            } else if (p[i] == '%') {
                if (n - i < 3 || hex_value((unsigned char)p[i + 1]) < 0 ||
                    hex_value((unsigned char)p[i + 2]) < 0)
                    return false;
                i += 3;
            } else {
                return false;
            }
        }
        if (i == 0)
            return false;
    }
    if (i == n)
        return !port_required;
    if (p[i] != ':' || n - i - 1 < 1 || n - i - 1 > 5)
        return false;
    unsigned port = 0;
    for (i++; i < n; i++) {
        if (!is_digit((unsigned char)p[i]))
            return false;
        port = port * 10 + (unsigned)(p[i] - '0');
    }
    return port <= 65535;
}

/* absolute-form for http and https-like schemes: scheme "://" authority,
 * then anything that is a target character. */
static bool absolute_ok(const char *p, size_t n)
{
    size_t i = 0;
    if (n == 0 || !is_alpha((unsigned char)p[0]))
        return false;
    while (i < n && (is_alpha((unsigned char)p[i]) || is_digit((unsigned char)p[i]) ||
                     p[i] == '+' || p[i] == '-' || p[i] == '.'))
        i++;
    if (n - i < 3 || memcmp(p + i, "://", 3) != 0)
        return false;
    i += 3;
    size_t a = i;
    while (i < n && p[i] != '/' && p[i] != '?')
        i++;
    return authority_ok(p + a, i - a, false);
}

static bool target_chars_ok(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(char_class[(unsigned char)p[i]] & CC_TARGET))
            return false;
    return true;
}

/* RFC 9112 3.2: origin-form, absolute-form, authority-form only for
 * CONNECT, asterisk-form only for OPTIONS. */
static enum veil_h1_error target_ok(const char *p, size_t n, enum veil_h1_method m)
{
    bool ok;
    if (!target_chars_ok(p, n))
        return VEIL_H1_E_TARGET;
    if (m == VEIL_H1_M_CONNECT)
        ok = authority_ok(p, n, true);
    else if (p[0] == '/')
        ok = true;
    else if (n == 1 && p[0] == '*')
        ok = m == VEIL_H1_M_OPTIONS;
    else
        ok = absolute_ok(p, n);
    return ok ? VEIL_H1_OK : VEIL_H1_E_TARGET;
}

/* method SP request-target SP HTTP-version, in buf[s, e). */
static enum veil_h1_error request_line(const char *buf, size_t s, size_t e, struct veil_h1_head *h)
{
    size_t i = s;
    while (i < e && is_tchar((unsigned char)buf[i]))
        i++;
    if (i == s || (i < e && buf[i] != ' '))
        return VEIL_H1_E_METHOD;
    if (i == e)
        return VEIL_H1_E_REQUEST_LINE;
    h->method_span = span(s, i - s);
    h->method = method_of(buf + s, i - s);

    size_t t = i + 1;
    const char *sp = memchr(buf + t, ' ', e - t);
    if (sp == NULL) {
        /* one SP: either the target or the version is missing */
        bool looks_version = e - t >= 5 && memcmp(buf + t, "HTTP/", 5) == 0;
        return t == e || looks_version ? VEIL_H1_E_TARGET : VEIL_H1_E_VERSION;
    }
    size_t j = (size_t)(sp - buf);
    if (j == t)
        return VEIL_H1_E_TARGET;
    h->target = span(t, j - t);
    enum veil_h1_error err = target_ok(buf + t, j - t, h->method);
    if (err != VEIL_H1_OK)
        return err;
    err = version(buf + j + 1, e - j - 1, &h->version_minor);
    if (err != VEIL_H1_OK && memchr(buf + j + 1, ' ', e - j - 1) != NULL)
        return VEIL_H1_E_REQUEST_LINE;
    return err;
}

/* HTTP-version SP 3DIGIT [SP reason-phrase], in buf[s, e). The SP before an
 * empty reason may be missing. */
static enum veil_h1_error status_line(const char *buf, size_t s, size_t e, struct veil_h1_head *h)
{
    const char *sp = memchr(buf + s, ' ', e - s);
    size_t v = sp != NULL ? (size_t)(sp - buf) : e;
    if (v - s < 5 || memcmp(buf + s, "HTTP/", 5) != 0)
        return VEIL_H1_E_STATUS_LINE;
    enum veil_h1_error err = version(buf + s, v - s, &h->version_minor);
    if (err != VEIL_H1_OK)
        return err;
    if (sp == NULL)
        return VEIL_H1_E_STATUS_LINE;

    size_t c = v + 1;
    if (e - c < 3)
        return VEIL_H1_E_STATUS;
    unsigned status = 0;
    for (size_t i = c; i < c + 3; i++) {
        if (!is_digit((unsigned char)buf[i]))
            return VEIL_H1_E_STATUS;
        status = status * 10 + (unsigned)(buf[i] - '0');
    }
    if (status < 100 || status > 599)
        return VEIL_H1_E_STATUS;
    h->status = (uint16_t)status;
    c += 3;
    if (c < e && buf[c] != ' ')
        return VEIL_H1_E_STATUS;
    if (c < e)
        c++;
    if (!all_field_chars(buf + c, e - c))
        return VEIL_H1_E_STATUS_LINE;
    h->reason = span(c, e - c);
    return VEIL_H1_OK;
}

/* ---- field lines ---- */

/* What the fields said about framing and the connection. */
struct seen {
    unsigned cl, te, host, upgrade;
    unsigned te_chunked, te_other;
    bool te_last_chunked;
    uint64_t cl_value;
};

/* One element of a comma-separated list (RFC 9110 5.6.1), OWS trimmed. */
struct list_it {
    const char *p;
    size_t n, pos;
};

static bool list_next(struct list_it *it, const char **elem, size_t *elen)
{
    if (it->pos > it->n)
        return false;
    const char *s = it->p + it->pos;
    const char *comma = memchr(s, ',', it->n - it->pos);
    size_t len = comma != NULL ? (size_t)(comma - s) : it->n - it->pos;
    it->pos += len + 1;
    while (len > 0 && is_ows((unsigned char)s[0])) {
        s++;
        len--;
    }
    while (len > 0 && is_ows((unsigned char)s[len - 1]))
        len--;
    *elem = s;
    *elen = len;
    return true;
}

/* field-name ":" OWS field-value OWS, in buf[s, e) (RFC 9112 5). */
static enum veil_h1_error field_line(const char *buf, size_t s, size_t e, struct veil_h1_header *f)
{
    if (is_ows((unsigned char)buf[s]))
        return VEIL_H1_E_OBS_FOLD;
    size_t i = s;
    while (i < e && is_tchar((unsigned char)buf[i]))
        i++;
    size_t c = i; /* the first ':' when it ends the token (no tchar is a ':') */
    if (i == e || buf[i] != ':') {
        const char *colon = memchr(buf + s, ':', e - s);
        if (colon == NULL)
            return VEIL_H1_E_FIELD_NO_COLON;
        c = (size_t)(colon - buf);
    }
    if (i == s)
        return VEIL_H1_E_FIELD_NAME;
    if (i < c) {
        size_t j = i;
        while (j < c && is_ows((unsigned char)buf[j]))
            j++;
        return j == c ? VEIL_H1_E_FIELD_NAME_SPACE : VEIL_H1_E_FIELD_NAME;
    }
    size_t v = c + 1, w = e;
    while (v < w && is_ows((unsigned char)buf[v]))
        v++;
    while (w > v && is_ows((unsigned char)buf[w - 1]))
        w--;
    if (!all_field_chars(buf + v, w - v))
        return VEIL_H1_E_FIELD_VALUE;
    f->name = span(s, c - s);
    f->value = span(v, w - v);
    return VEIL_H1_OK;
}

/* RFC 9112 6.3 (5): exactly one Content-Length, 1*DIGIT. */
static enum veil_h1_error content_length(const char *v, size_t n, struct seen *s)
{
    if (s->cl++ > 0 || memchr(v, ',', n) != NULL)
        return VEIL_H1_E_CL_DUP;
    if (n == 0)
        return VEIL_H1_E_CL_INVALID;
    for (size_t i = 0; i < n; i++)
        if (!is_digit((unsigned char)v[i]))
            return VEIL_H1_E_CL_INVALID;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)(v[i] - '0');
        if (x > (VEIL_H1_LENGTH_MAX - d) / 10)
            return VEIL_H1_E_CL_TOO_LARGE;
        x = x * 10 + d;
    }
    s->cl_value = x;
    return VEIL_H1_OK;
}

/* Transfer-Encoding: codings in order over all the field lines. */
static enum veil_h1_error transfer_encoding(const char *v, size_t n, struct seen *s)
{
    struct list_it it = {.p = v, .n = n};
    const char *el;
    size_t len;
    s->te++;
    while (list_next(&it, &el, &len)) {
        if (!all_tchar(el, len))
            return VEIL_H1_E_TE_INVALID;
        s->te_last_chunked = IEQ_LIT(el, len, "chunked");
        if (s->te_last_chunked)
            s->te_chunked++;
        else
            s->te_other++;
    }
    return VEIL_H1_OK;
}

static void connection(const char *v, size_t n, struct veil_h1_head *h)
{
    struct list_it it = {.p = v, .n = n};
    const char *el;
    size_t len;
    while (list_next(&it, &el, &len)) {
        if (IEQ_LIT(el, len, "close"))
            h->flags |= VEIL_H1_F_CONN_CLOSE;
        else if (IEQ_LIT(el, len, "keep-alive"))
            h->flags |= VEIL_H1_F_CONN_KEEP_ALIVE;
        else if (IEQ_LIT(el, len, "upgrade"))
            h->flags |= VEIL_H1_F_CONN_UPGRADE;
    }
}

/* Acts on the fields that decide framing, routing and the connection. */
static enum veil_h1_error field_meaning(const char *buf, const struct veil_h1_header *f,
                                        struct seen *s, struct veil_h1_head *h)
{
    const char *name = buf + f->name.off, *v = buf + f->value.off;
    size_t n = f->value.len;
    switch (f->name.len) {
    case 4:
        if (IEQ_LIT(name, 4, "host") && s->host++ == 0)
            h->host = f->value;
        break;
    case 7:
        if (IEQ_LIT(name, 7, "upgrade") && s->upgrade++ == 0)
            h->upgrade = f->value;
        break;
    case 10:
        if (IEQ_LIT(name, 10, "connection"))
            connection(v, n, h);
        break;
    case 14:
        if (IEQ_LIT(name, 14, "content-length"))
            return content_length(v, n, s);
        break;
    case 17:
        if (IEQ_LIT(name, 17, "transfer-encoding"))
            return transfer_encoding(v, n, s);
        break;
    default:
        break;
    }
    return VEIL_H1_OK;
}

/* ---- framing (RFC 9112 6.1, 6.3) ---- */

static enum veil_h1_error framing_fields(const struct seen *s, const struct veil_h1_head *h,
                                         bool request)
{
    if (s->cl > 0 && s->te > 0)
        return VEIL_H1_E_CL_TE;
    if (s->te == 0)
        return VEIL_H1_OK;
    if (h->version_minor == 0)
        return VEIL_H1_E_TE_HTTP10;
    if (s->te_chunked > 1)
        return VEIL_H1_E_TE_INVALID;
    if (!s->te_last_chunked)
        return VEIL_H1_E_TE_NOT_CHUNKED;
    if (request && s->te_other > 0)
        return VEIL_H1_E_TE_UNKNOWN;
    return VEIL_H1_OK;
}

static bool keep_alive(const struct veil_h1_head *h)
{
    if (h->flags & VEIL_H1_F_CONN_CLOSE)
        return false;
    return h->version_minor == 1 || (h->flags & VEIL_H1_F_CONN_KEEP_ALIVE);
}

static void body_from_fields(const struct seen *s, struct veil_h1_head *h)
{
    if (s->te > 0) {
        h->framing = VEIL_H1_BODY_CHUNKED;
    } else if (s->cl > 0) {
        h->framing = VEIL_H1_BODY_LENGTH;
        h->content_length = s->cl_value;
    }
}

static enum veil_h1_error frame_request(const char *buf, const struct seen *s,
                                        struct veil_h1_head *h)
{
    enum veil_h1_error err = framing_fields(s, h, true);
    if (err != VEIL_H1_OK)
        return err;
    if (s->host > 1)
        return VEIL_H1_E_HOST_DUP;
    if (s->host == 0 && h->version_minor == 1)
        return VEIL_H1_E_HOST_MISSING;
    if (s->host == 1 && h->host.len > 0 && !authority_ok(buf + h->host.off, h->host.len, false))
        return VEIL_H1_E_HOST_INVALID;
    if (s->host == 1)
        h->flags |= VEIL_H1_F_HOST;

    body_from_fields(s, h);
    if (h->method == VEIL_H1_M_CONNECT)
        h->flags |= VEIL_H1_F_CONNECT;
    /* RFC 9110 7.8: Upgrade is ignored in HTTP/1.0 and needs Connection */
    if (s->upgrade > 0 && h->upgrade.len > 0 && h->version_minor == 1 &&
        (h->flags & VEIL_H1_F_CONN_UPGRADE))
        h->flags |= VEIL_H1_F_UPGRADE;
    else
        h->upgrade = span(0, 0);
    if (keep_alive(h))
        h->flags |= VEIL_H1_F_KEEP_ALIVE;
    return VEIL_H1_OK;
}

static enum veil_h1_error frame_response(const struct seen *s, struct veil_h1_head *h)
{
    enum veil_h1_error err = framing_fields(s, h, false);
    if (err != VEIL_H1_OK)
        return err;
    bool keep = keep_alive(h);
    unsigned st = h->status;
    if (st == 101) {
        h->flags |= VEIL_H1_F_UPGRADE | VEIL_H1_F_TUNNEL;
    } else if (st / 100 == 1) {
        h->flags |= VEIL_H1_F_INTERIM;
    } else if (h->req_method == VEIL_H1_M_CONNECT && st / 100 == 2) {
        h->flags |= VEIL_H1_F_TUNNEL;
    } else if (h->req_method == VEIL_H1_M_HEAD || st == 204 || st == 304) {
        /* no body, whatever the fields say (RFC 9112 6.3 (1)) */
    } else {
        body_from_fields(s, h);
        if (h->framing == VEIL_H1_BODY_NONE) {
            h->framing = VEIL_H1_BODY_CLOSE;
            keep = false;
        }
    }
    if (s->upgrade == 0)
        h->upgrade = span(0, 0);
    if (keep && !(h->flags & VEIL_H1_F_TUNNEL))
        h->flags |= VEIL_H1_F_KEEP_ALIVE;
    return VEIL_H1_OK;
}

/* ---- heads ---- */

/* Parses the complete head buf[0, head_len) whose start line begins at
 * p->_start; scan() has checked the bytes and the field count. */
static enum veil_h1_error parse_lines(const struct veil_h1_parser *p, const char *buf,
                                      size_t head_len, bool request, struct veil_h1_head *h)
{
    size_t end = head_len - 2; /* the blank line */
    size_t s = p->_start;
    const char *cr = memchr(buf + s, '\r', end - s);
    VEIL_BUG_ON(cr == NULL);
    size_t e = (size_t)(cr - buf);
    enum veil_h1_error err = request ? request_line(buf, s, e, h) : status_line(buf, s, e, h);
    if (err != VEIL_H1_OK)
        return err;

    struct seen seen = {0};
    for (s = e + 2; s < end; s = e + 2) {
        cr = memchr(buf + s, '\r', end - s);
        VEIL_BUG_ON(cr == NULL || h->nheaders >= p->_fields);
        e = (size_t)(cr - buf);
        struct veil_h1_header *f = &h->headers[h->nheaders++];
        err = field_line(buf, s, e, f);
        if (err == VEIL_H1_OK)
            err = field_meaning(buf, f, &seen, h);
        if (err != VEIL_H1_OK)
            return err;
    }
    return request ? frame_request(buf, &seen, h) : frame_response(&seen, h);
}

static ssize_t parse_head(struct veil_h1_parser *p, const char *buf, size_t len, bool request,
                          enum veil_h1_method req_method, struct veil_h1_head *h,
                          struct veil_h1_header *hdrs, size_t cap)
{
    size_t fields_max = p->_lim.head_fields_max < cap ? p->_lim.head_fields_max : cap;
    size_t head_len;

    if (p->_err != VEIL_H1_OK)
        return err_errno(p->_err);
    VEIL_BUG_ON(len < p->_scanned);
    if (len < p->_scanned)
        parser_restart(p);
    enum veil_h1_error err = scan(p, buf, len, request, fields_max, &head_len);
    if (err != VEIL_H1_OK)
        return parser_fail(p, err);
    if (head_len == 0)
        return -EAGAIN;

    memset(h, 0, sizeof(*h));
    h->headers = hdrs;
    h->req_method = req_method;
    err = parse_lines(p, buf, head_len, request, h);
    if (err != VEIL_H1_OK)
        return parser_fail(p, err);
    h->head_len = (uint32_t)head_len;
    parser_restart(p);
    return (ssize_t)head_len;
}

ssize_t veil_h1_parse_request(struct veil_h1_parser *p, const char *buf, size_t len,
                              struct veil_h1_head *h, struct veil_h1_header *hdrs, size_t cap)
{
    return parse_head(p, buf, len, true, VEIL_H1_M_OTHER, h, hdrs, cap);
}

ssize_t veil_h1_parse_response(struct veil_h1_parser *p, const char *buf, size_t len,
                               enum veil_h1_method req_method, struct veil_h1_head *h,
                               struct veil_h1_header *hdrs, size_t cap)
{
    return parse_head(p, buf, len, false, req_method, h, hdrs, cap);
}

/* ---- spans and fields ---- */

bool veil_h1_span_eq(const char *buf, struct veil_h1_span sp, const char *s)
{
    return strlen(s) == sp.len && memcmp(buf + sp.off, s, sp.len) == 0;
}

/* No strlen(s): stops at the first byte that differs, or at the end of s
 * before the end of the span. */
bool veil_h1_span_ieq(const char *buf, struct veil_h1_span sp, const char *s)
{
    const char *p = buf + sp.off;
    for (size_t i = 0; i < sp.len; i++)
        if (s[i] == '\0' || lower((unsigned char)p[i]) != lower((unsigned char)s[i]))
            return false;
    return s[sp.len] == '\0';
}

const struct veil_h1_header *veil_h1_header_find(const struct veil_h1_head *h, const char *buf,
                                                 const char *name,
                                                 const struct veil_h1_header *prev)
{
    size_t i = prev != NULL ? (size_t)(prev - h->headers) + 1 : 0;
    for (; i < h->nheaders; i++)
        if (veil_h1_span_ieq(buf, h->headers[i].name, name))
            return &h->headers[i];
    return NULL;
}

/* ---- chunked bodies (RFC 9112 7.1) ---- */

enum {
    CH_SIZE,      /* hex digits of the chunk size */
    CH_BWS,       /* whitespace after the size: a ';' must follow */
    CH_EXT,       /* chunk extensions, up to the CR */
    CH_SIZE_LF,   /* the LF ending the chunk-size line */
    CH_DATA,      /* chunk data */
    CH_DATA_CR,   /* the CRLF after the data */
    CH_DATA_LF,   /* its LF */
    CH_TRAILER,   /* start of a trailer line, or the final CRLF */
    CH_TNAME,     /* trailer field name */
    CH_TVALUE,    /* trailer field value, up to the CR */
    CH_TVALUE_LF, /* the LF ending a trailer line */
    CH_FINAL_LF,  /* the LF ending the body */
    CH_DONE,
};

/* Framing field names a trailer must not carry (RFC 9110 6.5.1). */
static const char *const trailer_forbidden[] = {"content-length", "transfer-encoding"};

void veil_h1_chunked_init(struct veil_h1_chunked *c, const struct veil_h1_limits *lim)
{
    struct veil_h1_limits l;
    limits_fill(&l, lim);
    memset(c, 0, sizeof(*c));
    c->_line_max = l.chunk_line_max;
    c->_trailer_bytes_max = l.trailer_bytes_max;
    c->_trailer_fields_max = l.trailer_fields_max;
    c->_state = CH_SIZE;
}

bool veil_h1_chunked_done(const struct veil_h1_chunked *c)
{
    return c->_state == CH_DONE;
}

uint64_t veil_h1_chunked_total(const struct veil_h1_chunked *c)
{
    return c->_total;
}

enum veil_h1_error veil_h1_chunked_error(const struct veil_h1_chunked *c)
{
    return c->_err;
}

/* The error for an unexpected byte on a line: NUL and LF have their own. */
static enum veil_h1_error line_byte_error(unsigned char b, enum veil_h1_error otherwise)
{
    if (b == '\0')
        return VEIL_H1_E_NUL;
    if (b == '\n')
        return VEIL_H1_E_BARE_LF;
    return otherwise;
}

static enum veil_h1_error ch_size(struct veil_h1_chunked *c, unsigned char b)
{
    int d = hex_value(b);
    if (d >= 0) {
        if (++c->_digits > VEIL_H1_CHUNK_DIGITS_MAX || c->_left > (VEIL_H1_LENGTH_MAX >> 4))
            return VEIL_H1_E_CHUNK_TOO_LARGE;
        c->_left = c->_left << 4 | (uint64_t)d;
        return VEIL_H1_OK;
    }
    if (c->_digits == 0)
        return line_byte_error(b, VEIL_H1_E_CHUNK_SIZE);
    if (b == ';')
        c->_state = CH_EXT;
    else if (is_ows(b))
        c->_state = CH_BWS;
    else if (b == '\r')
        c->_state = CH_SIZE_LF;
    else
        return line_byte_error(b, VEIL_H1_E_CHUNK_SIZE);
    return VEIL_H1_OK;
}

static enum veil_h1_error ch_bws(struct veil_h1_chunked *c, unsigned char b)
{
    if (b == ';')
        c->_state = CH_EXT;
    else if (!is_ows(b))
        return line_byte_error(b, VEIL_H1_E_CHUNK_SIZE);
    return VEIL_H1_OK;
}

/* Extensions are not interpreted: any field character up to the CR. */
static enum veil_h1_error ch_ext(struct veil_h1_chunked *c, unsigned char b)
{
    if (b == '\r')
        c->_state = CH_SIZE_LF;
    else if (!is_field_char(b))
        return line_byte_error(b, VEIL_H1_E_CHUNK_EXT);
    return VEIL_H1_OK;
}

static enum veil_h1_error ch_size_lf(struct veil_h1_chunked *c, unsigned char b)
{
    if (b != '\n')
        return VEIL_H1_E_BARE_CR;
    c->_state = c->_left > 0 ? CH_DATA : CH_TRAILER;
    return VEIL_H1_OK;
}

static enum veil_h1_error ch_data_crlf(struct veil_h1_chunked *c, unsigned char b)
{
    if (c->_state == CH_DATA_CR) {
        if (b != '\r')
            return VEIL_H1_E_CHUNK_CRLF;
        c->_state = CH_DATA_LF;
        return VEIL_H1_OK;
    }
    if (b != '\n')
        return VEIL_H1_E_CHUNK_CRLF;
    c->_state = CH_SIZE;
    c->_digits = 0;
    c->_line = 0;
    return VEIL_H1_OK;
}

static void tname_byte(struct veil_h1_chunked *c, unsigned char b)
{
    for (size_t k = 0; k < sizeof(trailer_forbidden) / sizeof(trailer_forbidden[0]); k++) {
        const char *n = trailer_forbidden[k];
        if ((c->_match & (1u << k)) && (c->_name_len >= strlen(n) || lower(b) != n[c->_name_len]))
            c->_match &= (uint8_t) ~(1u << k);
    }
    if (c->_name_len < UINT32_MAX)
        c->_name_len++;
}

static enum veil_h1_error ch_trailer(struct veil_h1_chunked *c, unsigned char b)
{
    if (b == '\r') {
        c->_state = CH_FINAL_LF;
        return VEIL_H1_OK;
    }
    if (is_ows(b))
        return VEIL_H1_E_OBS_FOLD;
    if (!is_tchar(b))
        return line_byte_error(b, VEIL_H1_E_FIELD_NAME);
    if (++c->_trailer_fields > c->_trailer_fields_max)
        return VEIL_H1_E_TRAILERS_TOO_LARGE;
    c->_state = CH_TNAME;
    c->_match = (1u << 0) | (1u << 1);
    c->_name_len = 0;
    tname_byte(c, b);
    return VEIL_H1_OK;
}

static enum veil_h1_error ch_tname(struct veil_h1_chunked *c, unsigned char b)
{
    if (is_tchar(b)) {
        tname_byte(c, b);
        return VEIL_H1_OK;
    }
    if (b == ':') {
        for (size_t k = 0; k < sizeof(trailer_forbidden) / sizeof(trailer_forbidden[0]); k++)
            if ((c->_match & (1u << k)) && c->_name_len == strlen(trailer_forbidden[k]))
                return VEIL_H1_E_TRAILER_FRAMING;
        c->_state = CH_TVALUE;
        return VEIL_H1_OK;
    }
    if (is_ows(b))
        return VEIL_H1_E_FIELD_NAME_SPACE;
    if (b == '\r')
        return VEIL_H1_E_FIELD_NO_COLON;
    return line_byte_error(b, VEIL_H1_E_FIELD_NAME);
}

static enum veil_h1_error ch_tvalue(struct veil_h1_chunked *c, unsigned char b)
{
    if (b == '\r')
        c->_state = CH_TVALUE_LF;
    else if (!is_field_char(b))
        return line_byte_error(b, VEIL_H1_E_FIELD_VALUE);
    return VEIL_H1_OK;
}

static enum veil_h1_error ch_lf(struct veil_h1_chunked *c, unsigned char b)
{
    if (b != '\n')
        return VEIL_H1_E_BARE_CR;
    c->_state = c->_state == CH_TVALUE_LF ? CH_TRAILER : CH_DONE;
    return VEIL_H1_OK;
}

/* One byte outside chunk data. The states up to CH_SIZE_LF make the
 * chunk-size line, those from CH_TRAILER on the trailer section: each is
 * bounded. */
static enum veil_h1_error ch_step(struct veil_h1_chunked *c, unsigned char b)
{
    if (c->_state <= CH_SIZE_LF && ++c->_line > c->_line_max)
        return VEIL_H1_E_CHUNK_LINE_TOO_LONG;
    if (c->_state >= CH_TRAILER && ++c->_trailer_bytes > c->_trailer_bytes_max)
        return VEIL_H1_E_TRAILERS_TOO_LARGE;
    switch (c->_state) {
    case CH_SIZE:
        return ch_size(c, b);
    case CH_BWS:
        return ch_bws(c, b);
    case CH_EXT:
        return ch_ext(c, b);
    case CH_SIZE_LF:
        return ch_size_lf(c, b);
    case CH_DATA_CR:
    case CH_DATA_LF:
        return ch_data_crlf(c, b);
    case CH_TRAILER:
        return ch_trailer(c, b);
    case CH_TNAME:
        return ch_tname(c, b);
    case CH_TVALUE:
        return ch_tvalue(c, b);
    case CH_TVALUE_LF:
    case CH_FINAL_LF:
        return ch_lf(c, b);
    default:
        VEIL_BUG_ON(1);
        return VEIL_H1_E_CHUNK_SIZE;
    }
}

ssize_t veil_h1_chunked_decode(struct veil_h1_chunked *c, const char *in, size_t len,
                               struct veil_h1_span *data)
{
    size_t i = 0;

    *data = span(0, 0);
    if (c->_err != VEIL_H1_OK)
        return err_errno(c->_err);
    if (len > UINT32_MAX)
        len = UINT32_MAX; /* spans are 32-bit; the caller comes back for the rest */
    while (i < len && c->_state != CH_DONE) {
        if (c->_state == CH_DATA) {
            size_t n = len - i < c->_left ? len - i : (size_t)c->_left;
            *data = span(i, n);
            c->_left -= n;
            c->_total += n;
            if (c->_left == 0)
                c->_state = CH_DATA_CR;
            return (ssize_t)(i + n);
        }
        enum veil_h1_error err = ch_step(c, (unsigned char)in[i]);
        if (err != VEIL_H1_OK) {
            c->_err = err;
            return err_errno(err);
        }
        i++;
    }
    return (ssize_t)i;
}

/* ---- bodies of any framing ---- */

void veil_h1_body_init(struct veil_h1_body *b, const struct veil_h1_head *h,
                       const struct veil_h1_limits *lim)
{
    memset(b, 0, sizeof(*b));
    b->_framing = h->framing;
    switch (h->framing) {
    case VEIL_H1_BODY_NONE:
        b->_done = true;
        break;
    case VEIL_H1_BODY_LENGTH:
        b->_left = h->content_length;
        b->_done = b->_left == 0;
        break;
    case VEIL_H1_BODY_CHUNKED:
        veil_h1_chunked_init(&b->_chunked, lim);
        break;
    case VEIL_H1_BODY_CLOSE:
        break;
    }
}

ssize_t veil_h1_body_read(struct veil_h1_body *b, const char *in, size_t len,
                          struct veil_h1_span *data)
{
    ssize_t n;

    *data = span(0, 0);
    if (b->_err != VEIL_H1_OK)
        return err_errno(b->_err);
    if (b->_done)
        return 0;
    if (len > UINT32_MAX)
        len = UINT32_MAX;
    switch (b->_framing) {
    case VEIL_H1_BODY_LENGTH:
        n = (ssize_t)(len < b->_left ? len : b->_left);
        b->_left -= (uint64_t)n;
        b->_done = b->_left == 0;
        *data = span(0, (size_t)n);
        break;
    case VEIL_H1_BODY_CHUNKED:
        n = veil_h1_chunked_decode(&b->_chunked, in, len, data);
        if (n < 0) {
            b->_err = b->_chunked._err;
            return n;
        }
        b->_done = veil_h1_chunked_done(&b->_chunked);
        break;
    case VEIL_H1_BODY_CLOSE:
        n = (ssize_t)len;
        *data = span(0, len);
        break;
    default:
        return 0;
    }
    b->_total += data->len;
    return n;
}

bool veil_h1_body_done(const struct veil_h1_body *b)
{
    return b->_done;
}

int veil_h1_body_eof(struct veil_h1_body *b)
{
    if (b->_err != VEIL_H1_OK)
        return err_errno(b->_err);
    if (b->_done || b->_framing == VEIL_H1_BODY_CLOSE) {
        b->_done = true;
        return 0;
    }
    b->_err = VEIL_H1_E_TRUNCATED;
    return -EINVAL;
}

uint64_t veil_h1_body_total(const struct veil_h1_body *b)
{
    return b->_total;
}

enum veil_h1_error veil_h1_body_error(const struct veil_h1_body *b)
{
    return b->_err;
}
