/*
 * libFuzzer target for the HTTP/1 parser (src/http/h1.c). Every input is
 * read three ways: as a stream of pipelined requests, as a stream of
 * responses (to request methods drawn from the input's hash), and as a bare
 * chunked body. Each way runs twice: in one piece, and in pseudo-random
 * splits seeded from the input, each piece in its own exact-size copy so
 * ASan sees a read past what was passed (and the buffer moves between
 * calls). The two runs must agree on every head, every data byte, where
 * they stop and why. Half the inputs run with tiny limits taken from their
 * first bytes.
 *
 * Invariants checked: a head is at most the limit and ends in CRLF CRLF
 * without bare CR, bare LF or NUL; every span lies inside the head; names
 * are tokens, values hold no CTL but HTAB and no edge whitespace; framing
 * agrees with the fields; a call never consumes more than it was given and
 * always makes progress when given bytes; body data spans end where the
 * call stopped and add up to the body's total (the Content-Length when one
 * was given).
 *
 *   make B=build-fuzz FUZZ=1 fuzz-bins
 *   ./build-fuzz/fuzz/h1_fuzz -max_total_time=600 tests/fuzz/corpus/h1
 */
#include "http/h1.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "h1_fuzz: check failed: %s (line %d)\n", #cond, __LINE__);             \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MAX_MESSAGES 32
#define HDRS_CAP     VEIL_H1_HEAD_FIELDS_MAX

/* xorshift64*: the split sizes; NULL means "one piece". */
struct rng {
    uint64_t s;
};

static uint64_t rnd(struct rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545f4914f6cdd1dull;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* How one run ended. Two runs over the same input must be equal. */
struct run {
    size_t consumed;
    ssize_t rc; /* 0, or the failing call's return */
    enum veil_h1_error err;
    unsigned messages;
    uint64_t hash; /* heads' shapes and data bytes */
};

/* What a run reads with. */
struct ctx {
    bool response;
    struct veil_h1_limits lim; /* as the parser sees them (defaults filled in) */
    struct veil_h1_limits given;
    uint64_t seed;
    struct veil_h1_header hdrs[HDRS_CAP];
};

static bool is_tchar(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool in_head(struct veil_h1_span s, size_t n)
{
    return (size_t)s.off + s.len <= n;
}

static void check_bytes(const char *buf, size_t n)
{
    CHECK(n >= 4 && memcmp(buf + n - 4, "\r\n\r\n", 4) == 0);
    for (size_t i = 0; i < n; i++) {
        CHECK(buf[i] != '\0');
        if (buf[i] == '\r')
            CHECK(i + 1 < n && buf[i + 1] == '\n');
        if (buf[i] == '\n')
            CHECK(i > 0 && buf[i - 1] == '\r');
    }
}

static unsigned count_named(const char *buf, const struct veil_h1_head *h, const char *name)
{
    unsigned k = 0;
    for (const struct veil_h1_header *f = veil_h1_header_find(h, buf, name, NULL); f != NULL;
         f = veil_h1_header_find(h, buf, name, f))
        k++;
    return k;
}

static void check_fields(const char *buf, size_t n, const struct veil_h1_head *h,
                         const struct ctx *c)
{
    size_t max = c->lim.head_fields_max < HDRS_CAP ? c->lim.head_fields_max : HDRS_CAP;
    CHECK(h->headers == c->hdrs && h->nheaders <= max);
    for (size_t i = 0; i < h->nheaders; i++) {
        const struct veil_h1_header *f = &h->headers[i];
        CHECK(in_head(f->name, n) && in_head(f->value, n) && f->name.len > 0);
        for (size_t k = 0; k < f->name.len; k++)
            CHECK(is_tchar((unsigned char)buf[f->name.off + k]));
        CHECK(buf[f->name.off + f->name.len] == ':');
        for (size_t k = 0; k < f->value.len; k++) {
            unsigned char b = (unsigned char)buf[f->value.off + k];
            CHECK(b == '\t' || (b >= 0x20 && b != 0x7f));
        }
        if (f->value.len > 0) {
            CHECK(buf[f->value.off] != ' ' && buf[f->value.off] != '\t');
            char last = buf[f->value.off + f->value.len - 1];
            CHECK(last != ' ' && last != '\t');
        }
    }
}

static void check_framing(const char *buf, const struct veil_h1_head *h, const struct ctx *c)
{
    unsigned cl = count_named(buf, h, "content-length");
    unsigned te = count_named(buf, h, "transfer-encoding");
    CHECK(cl == 0 || te == 0);
    CHECK(cl <= 1);
    if (te > 0)
        CHECK(h->version_minor == 1);
    switch (h->framing) {
    case VEIL_H1_BODY_LENGTH: {
        const struct veil_h1_header *f = veil_h1_header_find(h, buf, "content-length", NULL);
        CHECK(f != NULL && f->value.len > 0);
        uint64_t v = 0;
        for (size_t k = 0; k < f->value.len; k++)
            v = v * 10 + (uint64_t)(buf[f->value.off + k] - '0');
        CHECK(v == h->content_length && v <= VEIL_H1_LENGTH_MAX);
        break;
    }
    case VEIL_H1_BODY_CHUNKED:
        CHECK(te > 0);
        break;
    case VEIL_H1_BODY_CLOSE:
        CHECK(c->response && !(h->flags & VEIL_H1_F_KEEP_ALIVE) && cl == 0 && te == 0);
        break;
    case VEIL_H1_BODY_NONE:
        if (!c->response)
            CHECK(cl == 0 && te == 0);
        break;
    default:
        CHECK(0);
    }
}

static void check_head(const char *buf, size_t n, const struct veil_h1_head *h, const struct ctx *c)
{
    CHECK(n <= c->lim.head_bytes_max && h->head_len == n);
    CHECK(h->version_minor <= 1);
    check_bytes(buf, n);
    check_fields(buf, n, h, c);
    check_framing(buf, h, c);
    if (c->response) {
        CHECK(h->status >= 100 && h->status <= 599 && in_head(h->reason, n));
        CHECK(!(h->flags & (VEIL_H1_F_CONNECT | VEIL_H1_F_HOST)));
        if (h->flags & VEIL_H1_F_TUNNEL)
            CHECK(h->framing == VEIL_H1_BODY_NONE && !(h->flags & VEIL_H1_F_KEEP_ALIVE));
        return;
    }
    CHECK(h->method_span.len > 0 && in_head(h->method_span, n));
    for (size_t k = 0; k < h->method_span.len; k++)
        CHECK(is_tchar((unsigned char)buf[h->method_span.off + k]));
    CHECK((h->method == VEIL_H1_M_GET) == veil_h1_span_eq(buf, h->method_span, "GET"));
    CHECK((h->method == VEIL_H1_M_CONNECT) == !!(h->flags & VEIL_H1_F_CONNECT));
    CHECK(h->target.len > 0 && in_head(h->target, n));
    for (size_t k = 0; k < h->target.len; k++) {
        unsigned char b = (unsigned char)buf[h->target.off + k];
        CHECK(b > 0x20 && b < 0x7f && b != '#');
    }
    CHECK(h->method_span.off + h->method_span.len + 1 == h->target.off);
    unsigned hosts = count_named(buf, h, "host");
    CHECK(hosts <= 1 && (hosts == 1) == !!(h->flags & VEIL_H1_F_HOST));
    if (h->version_minor == 1)
        CHECK(hosts == 1);
    if (h->flags & VEIL_H1_F_HOST)
        CHECK(in_head(h->host, n));
    if (h->flags & VEIL_H1_F_UPGRADE)
        CHECK(h->version_minor == 1 && h->upgrade.len > 0 && in_head(h->upgrade, n) &&
              (h->flags & VEIL_H1_F_CONN_UPGRADE));
    CHECK(!(h->flags & (VEIL_H1_F_TUNNEL | VEIL_H1_F_INTERIM)));
}

static uint64_t hash_head(uint64_t x, const struct veil_h1_head *h)
{
    x = fnv(x, &h->head_len, sizeof(h->head_len));
    x = fnv(x, &h->flags, sizeof(h->flags));
    x = fnv(x, &h->framing, sizeof(h->framing));
    x = fnv(x, &h->content_length, sizeof(h->content_length));
    x = fnv(x, &h->status, sizeof(h->status));
    x = fnv(x, &h->target, sizeof(h->target));
    x = fnv(x, &h->nheaders, sizeof(h->nheaders));
    return fnv(x, h->headers, h->nheaders * sizeof(h->headers[0]));
}

/* The next piece size: everything left without an rng, else 1..64 mostly,
 * sometimes up to 4 KiB. */
static size_t piece(struct rng *r, size_t left)
{
    size_t n = left;
    if (r != NULL) {
        uint64_t x = rnd(r);
        n = 1 + (x & 0x400 ? (x >> 16) % 4096 : (x >> 16) % 64);
    }
    return n < left ? n : left;
}

static ssize_t parse(struct ctx *c, struct veil_h1_parser *p, const char *buf, size_t len,
                     enum veil_h1_method req, struct veil_h1_head *h)
{
    if (c->response)
        return veil_h1_parse_response(p, buf, len, req, h, c->hdrs, HDRS_CAP);
    return veil_h1_parse_request(p, buf, len, h, c->hdrs, HDRS_CAP);
}

/* One head from buf[0..len), fed in pieces, each call on a fresh copy of
 * the prefix. Checks a parsed head while its copy is alive. */
static ssize_t read_head(struct ctx *c, struct veil_h1_parser *p, const uint8_t *buf, size_t len,
                         enum veil_h1_method req, struct veil_h1_head *h, struct rng *r)
{
    size_t fed = 0;
    ssize_t n;
    do {
        fed += piece(r, len - fed);
        char *copy = malloc(fed > 0 ? fed : 1);
        CHECK(copy != NULL);
        memcpy(copy, buf, fed);
        n = parse(c, p, copy, fed, req, h);
        if (n > 0) {
            CHECK((size_t)n <= fed);
            check_head(copy, (size_t)n, h, c);
        } else {
            CHECK(n == -EAGAIN || n == -EINVAL || n == -E2BIG);
            CHECK((n == -EAGAIN) == (veil_h1_parser_error(p) == VEIL_H1_OK));
        }
        free(copy);
    } while (n == -EAGAIN && fed < len);
    return n;
}

/* A body from buf[0..len) in pieces. Returns the bytes consumed or the
 * error; data bytes go into *hash. */
static ssize_t read_body(struct veil_h1_body *b, const struct veil_h1_head *h, const uint8_t *buf,
                         size_t len, struct rng *r, uint64_t *hash)
{
    size_t used = 0;
    uint64_t sum = 0;
    while (used < len && !veil_h1_body_done(b)) {
        size_t step = piece(r, len - used);
        struct veil_h1_span d;
        char *copy = malloc(step);
        CHECK(copy != NULL);
        memcpy(copy, buf + used, step);
        ssize_t n = veil_h1_body_read(b, copy, step, &d);
        if (n < 0) {
            free(copy);
            CHECK(n == -EINVAL || n == -E2BIG);
            CHECK(veil_h1_body_error(b) != VEIL_H1_OK);
            return n;
        }
        CHECK(n > 0 && (size_t)n <= step);
        CHECK(d.len == 0 || (size_t)d.off + d.len == (size_t)n);
        CHECK((size_t)n == step || veil_h1_body_done(b) || d.len > 0);
        *hash = fnv(*hash, copy + d.off, d.len);
        sum += d.len;
        free(copy);
        used += (size_t)n;
    }
    CHECK(veil_h1_body_total(b) == sum);
    if (h->framing == VEIL_H1_BODY_LENGTH)
        CHECK(sum <= h->content_length && (sum == h->content_length) == veil_h1_body_done(b));
    return (ssize_t)used;
}

static enum veil_h1_method pick_method(uint64_t seed, unsigned m)
{
    static const enum veil_h1_method ms[] = {VEIL_H1_M_GET, VEIL_H1_M_HEAD, VEIL_H1_M_CONNECT,
                                             VEIL_H1_M_POST};
    return ms[(seed >> ((m % 16) * 4)) % 4];
}

/* Reads a stream of messages (heads and bodies) until an error, the end of
 * the input, or a tunnel. */
static void read_stream(struct ctx *c, const uint8_t *data, size_t size, struct rng *r,
                        struct run *out)
{
    struct veil_h1_parser p;
    size_t pos = 0;
    memset(out, 0, sizeof(*out));
    out->hash = 0xcbf29ce484222325ull;
    veil_h1_parser_init(&p, &c->given);
    for (unsigned m = 0; m < MAX_MESSAGES && pos < size; m++) {
        struct veil_h1_head h;
        enum veil_h1_method req = pick_method(c->seed, m);
        ssize_t n = read_head(c, &p, data + pos, size - pos, req, &h, r);
        if (n < 0) {
            out->rc = n;
            out->err = veil_h1_parser_error(&p);
            break;
        }
        out->messages++;
        out->hash = hash_head(out->hash, &h);
        pos += (size_t)n;
        if (h.flags & VEIL_H1_F_TUNNEL)
            break;

        struct veil_h1_body b;
        veil_h1_body_init(&b, &h, &c->given);
        n = read_body(&b, &h, data + pos, size - pos, r, &out->hash);
        if (n < 0) {
            out->rc = n;
            out->err = veil_h1_body_error(&b);
            break;
        }
        pos += (size_t)n;
        if (!veil_h1_body_done(&b)) {
            CHECK(pos == size);
            int e = veil_h1_body_eof(&b);
            CHECK((e == 0) == (h.framing == VEIL_H1_BODY_CLOSE));
            CHECK(e == 0 || veil_h1_body_error(&b) == VEIL_H1_E_TRUNCATED);
            break;
        }
    }
    CHECK(pos <= size);
    out->consumed = pos;
}

/* The input as one chunked body. */
static void read_chunked(const struct ctx *c, const uint8_t *data, size_t size, struct rng *r,
                         struct run *out)
{
    struct veil_h1_chunked ch;
    size_t used = 0;
    memset(out, 0, sizeof(*out));
    out->hash = 0xcbf29ce484222325ull;
    veil_h1_chunked_init(&ch, &c->given);
    while (used < size && !veil_h1_chunked_done(&ch)) {
        size_t step = piece(r, size - used);
        struct veil_h1_span d;
        char *copy = malloc(step);
        CHECK(copy != NULL);
        memcpy(copy, data + used, step);
        ssize_t n = veil_h1_chunked_decode(&ch, copy, step, &d);
        if (n < 0) {
            free(copy);
            CHECK(veil_h1_chunked_error(&ch) != VEIL_H1_OK);
            out->rc = n;
            out->err = veil_h1_chunked_error(&ch);
            used = 0; /* a failing call reports nothing consumed: not comparable */
            break;
        }
        CHECK(n > 0 && (size_t)n <= step);
        CHECK(d.len == 0 || (size_t)d.off + d.len == (size_t)n);
        out->hash = fnv(out->hash, copy + d.off, d.len);
        free(copy);
        used += (size_t)n;
    }
    out->consumed = used;
    out->messages = veil_h1_chunked_done(&ch);
    out->hash = fnv(out->hash, &(uint64_t){veil_h1_chunked_total(&ch)}, sizeof(uint64_t));
}

static void same(const char *what, const struct run *a, const struct run *b)
{
    if (a->consumed != b->consumed || a->rc != b->rc || a->err != b->err ||
        a->messages != b->messages || a->hash != b->hash)
        fprintf(stderr,
                "h1_fuzz: %s: whole: consumed %zu rc %zd \"%s\" messages %u; "
                "split: consumed %zu rc %zd \"%s\" messages %u\n",
                what, a->consumed, a->rc, veil_h1_strerror(a->err), a->messages, b->consumed, b->rc,
                veil_h1_strerror(b->err), b->messages);
    CHECK(a->consumed == b->consumed);
    CHECK(a->rc == b->rc);
    CHECK(a->err == b->err);
    CHECK(a->messages == b->messages);
    CHECK(a->hash == b->hash);
    CHECK(veil_h1_strerror(a->err) != NULL);
}

/* Tiny limits from the first bytes for odd hashes, the defaults otherwise. */
static void limits(struct ctx *c, const uint8_t *data, size_t size)
{
    memset(&c->given, 0, sizeof(c->given));
    if ((c->seed & 1) && size >= 5) {
        c->given.head_bytes_max = 8 + data[0] * 2u;
        c->given.head_fields_max = 1 + data[1] % 8u;
        c->given.chunk_line_max = 1 + data[2] % 32u;
        c->given.trailer_bytes_max = 1 + data[3] % 64u;
        c->given.trailer_fields_max = 1 + data[4] % 4u;
    }
    veil_h1_limits_default(&c->lim);
    if (c->given.head_bytes_max != 0) {
        c->lim.head_bytes_max = c->given.head_bytes_max;
        c->lim.head_fields_max = c->given.head_fields_max;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ctx c;
    struct run whole, split;
    c.seed = fnv(0xcbf29ce484222325ull, data, size);
    limits(&c, data, size);

    for (int response = 0; response <= 1; response++) {
        struct rng r = {c.seed | 1};
        c.response = response;
        read_stream(&c, data, size, NULL, &whole);
        read_stream(&c, data, size, &r, &split);
        same(response ? "response stream" : "request stream", &whole, &split);
    }
    struct rng r = {c.seed | 1};
    read_chunked(&c, data, size, NULL, &whole);
    read_chunked(&c, data, size, &r, &split);
    same("chunked body", &whole, &split);
    return 0;
}
