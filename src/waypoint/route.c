/* The waypoint's route table; see route.h and docs/routes.md. */
#include "waypoint/route.h"

#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"
#include "core/arena.h"

#define PATH_LEN       192                /* of a spec path in an error */
#define ROUTE_BYTES    (4u * 1024 * 1024) /* cap on one compiled route */
#define MAX_RULES      16
#define MAX_MATCHES    64 /* per rule (GRPCRoute: 8) */
#define MAX_ALL_MATCH  128
#define MAX_LIST       16 /* headers, query params, filters, backendRefs, ... */
#define MAX_PARENTS    32
#define MAX_CODES      32
#define PATH_VALUE_MAX 1024
#define HDR_VALUE_MAX  4096
#define HDR_NAME_MAX   256
#define NKEY           5

/* ---- private types ---- */

/* A header or query-param match. */
struct smatch {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
    const regex_t *re; /* RegularExpression; NULL = Exact */
};

enum ptype { P_REGEX = 1, P_PREFIX = 2, P_EXACT = 3 }; /* values are precedence */

struct veil_route__match {
    /* HTTPRoute */
    enum ptype ptype;
    const char *path; /* PathPrefix: trailing '/' removed */
    size_t path_len;
    const regex_t *path_re;
    const char *method; /* NULL = any */
    size_t method_len;
    const struct smatch *query;
    size_t nquery;
    /* GRPCRoute; NULL = any */
    const char *service, *gmethod;
    size_t service_len, gmethod_len;
    const regex_t *service_re, *gmethod_re;
    /* both */
    const struct smatch *headers;
    size_t nheaders;
    int key[NKEY]; /* precedence, larger first */
};

struct parent {
    const char *ns, *name;
    uint16_t port;       /* 0 = every port */
    const char *section; /* sectionName: the Service port's name; NULL = every port */
};

struct re_node {
    regex_t re;
    struct re_node *next;
};

struct veil_route {
    unsigned refs;
    enum veil_route_kind kind;
    const char *ns, *name, *id; /* id: "ns/name" */
    uint64_t seq;
    const struct parent *parents;
    size_t nparents;
    const struct veil_route_rule *rules;
    size_t nrules;
    struct re_node *regs;
    struct veil_arena arena;
};

struct entry {
    struct entry *next;
    struct veil_route *r;
    uint64_t seq;
};

/* The age of a route dropped by the last clear, so that the same route in
 * the snapshot that follows keeps its place in precedence. */
struct ghost {
    struct ghost *next;
    enum veil_route_kind kind;
    uint64_t seq;
    char *name; /* after ns's NUL */
    char ns[];
};

struct veil_route_table {
    struct entry *head, **tail; /* in order of first set: the oldest first */
    size_t n;
    uint64_t next_seq, gen;
    struct ghost *ghosts;
};

/* Compile context. */
struct cc {
    struct veil_route *r;
    char *err;
    size_t cap;
    bool noted;
    size_t all_matches;
};

/* ---- errors and spec paths ---- */

static int bad(struct cc *c, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int bad(struct cc *c, const char *path, const char *fmt, ...)
{
    if (c->cap > 0) {
        int n = snprintf(c->err, c->cap, "%.*s: ", PATH_LEN, path);
        if (n >= 0 && (size_t)n < c->cap) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(c->err + n, c->cap - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return -EINVAL;
}

/* An accepted spec with a remark for status (the first one is kept). */
static void note(struct cc *c, const char *path, const char *msg)
{
    if (!c->noted)
        bad(c, path, "%s", msg);
    c->noted = true;
}

static int nomem(struct cc *c)
{
    if (errno == E2BIG)
        return bad(c, "spec", "too large (compiled route over %u bytes)", ROUTE_BYTES);
    if (c->cap > 0)
        snprintf(c->err, c->cap, "out of memory");
    return -ENOMEM;
}

/* A spec path into out (PATH_LEN bytes; may be one of the arguments). A
 * path cut short is still a fine error message. */
static void pathf(char *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void pathf(char *out, const char *fmt, ...)
{
    char tmp[PATH_LEN];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    strcpy(out, tmp);
}

static void sub(char *out, const char *path, const char *key)
{
    pathf(out, "%s.%s", path, key);
}

static void idx(char *out, const char *path, const char *key, size_t i)
{
    pathf(out, "%s.%s[%zu]", path, key, i);
}

/* ---- arena helpers ---- */

static void *zalloc(struct cc *c, size_t n)
{
    return veil_arena_zalloc(&c->r->arena, n);
}

static const char *dup(struct cc *c, const char *s)
{
    return veil_arena_strndup(&c->r->arena, s, strlen(s));
}

static char *dup_lower(struct cc *c, const char *s)
{
    char *d = veil_arena_strndup(&c->r->arena, s, strlen(s));
    for (char *p = d; p != NULL && *p != '\0'; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return d;
}

/* ---- JSON access ---- */

static int want_obj(struct cc *c, const json_t *j, const char *path)
{
    return json_is_object(j) ? 0 : bad(c, path, "must be an object");
}

/* Optional string field: NULL when absent or null. */
static int opt_str(struct cc *c, const json_t *o, const char *key, const char *path,
                   const char **out)
{
    const json_t *j = json_object_get(o, key);
    *out = NULL;
    if (j == NULL || json_is_null(j))
        return 0;
    if (!json_is_string(j)) {
        char p[PATH_LEN];
        sub(p, path, key);
        return bad(c, p, "must be a string");
    }
    *out = json_string_value(j);
    return 0;
}

static int req_str(struct cc *c, const json_t *o, const char *key, const char *path,
                   const char **out)
{
    int rc = opt_str(c, o, key, path, out);
    if (rc == 0 && *out == NULL) {
        char p[PATH_LEN];
        sub(p, path, key);
        return bad(c, p, "required field is missing");
    }
    return rc;
}

/* Optional integer in [min, max]; *set false when absent. */
static int opt_int(struct cc *c, const json_t *o, const char *key, const char *path, long long min,
                   long long max, long long *out, bool *set)
{
    const json_t *j = json_object_get(o, key);
    *set = false;
    if (j == NULL || json_is_null(j))
        return 0;
    char p[PATH_LEN];
    sub(p, path, key);
    if (!json_is_integer(j))
        return bad(c, p, "must be an integer");
    long long v = json_integer_value(j);
    if (v < min || v > max)
        return bad(c, p, "%lld is out of range (%lld..%lld)", v, min, max);
    *out = v;
    *set = true;
    return 0;
}

/* Optional array of at most max items: NULL when absent or null. */
static int opt_arr(struct cc *c, const json_t *o, const char *key, const char *path, size_t max,
                   const json_t **out)
{
    const json_t *j = json_object_get(o, key);
    *out = NULL;
    if (j == NULL || json_is_null(j))
        return 0;
    char p[PATH_LEN];
    sub(p, path, key);
    if (!json_is_array(j))
        return bad(c, p, "must be a list");
    if (json_array_size(j) > max)
        return bad(c, p, "more than %zu items", max);
    *out = json_array_size(j) > 0 ? j : NULL;
    return 0;
}

static int opt_duration(struct cc *c, const json_t *o, const char *key, const char *path,
                        uint64_t *ms)
{
    const char *s;
    int rc = opt_str(c, o, key, path, &s);
    *ms = 0;
    if (rc != 0 || s == NULL)
        return rc;
    if (veil_route_duration_ms(s, ms) == 0)
        return 0;
    char p[PATH_LEN];
    sub(p, path, key);
    return bad(c, p, "\"%.64s\" is not a duration (like 1h30m, 10s, 500ms)", s);
}

/* ---- values ---- */

int veil_route_duration_ms(const char *s, uint64_t *ms)
{
    uint64_t total = 0;
    int groups = 0;
    if (s == NULL || *s == '\0')
        return -EINVAL;
    while (*s != '\0') {
        uint64_t v = 0, mult;
        int digits = 0;
        for (; *s >= '0' && *s <= '9'; s++, digits++)
            v = v * 10 + (uint64_t)(*s - '0');
        if (digits == 0 || digits > 5 || ++groups > 4)
            return -EINVAL;
        if (s[0] == 'm' && s[1] == 's') {
            mult = 1;
            s += 2;
        } else if (*s == 'h' || *s == 'm' || *s == 's') {
            mult = *s == 'h' ? 3600000 : *s == 'm' ? 60000 : 1000;
            s++;
        } else {
            return -EINVAL;
        }
        total += v * mult;
    }
    *ms = total;
    return 0;
}

static bool is_tchar(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

static int check_hname(struct cc *c, const char *p, const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > HDR_NAME_MAX)
        return bad(c, p, "must be 1..%d characters", HDR_NAME_MAX);
    for (size_t i = 0; i < n; i++)
        if (!is_tchar((unsigned char)s[i]))
            return bad(c, p, "\"%.64s\" is not a valid header name", s);
    return 0;
}

/* Printable US-ASCII, single spaces or tabs inside, 1..max bytes. */
static int check_value(struct cc *c, const char *p, const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return bad(c, p, "must be 1..%zu characters", max);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch < 0x21 || ch > 0x7e) && ch != ' ' && ch != '\t')
            return bad(c, p, "control or non-ASCII character at byte %zu", i);
    }
    if (s[0] == ' ' || s[0] == '\t' || s[n - 1] == ' ' || s[n - 1] == '\t')
        return bad(c, p, "leading or trailing whitespace");
    return 0;
}

static bool hexd(char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/* The characters of an Exact/PathPrefix value or a replacement path. */
static int check_path_chars(struct cc *c, const char *p, const char *s)
{
    for (size_t i = 0; s[i] != '\0'; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '%') {
            if (!hexd(s[i + 1]) || !hexd(s[i + 2]))
                return bad(c, p, "'%%' not followed by two hex digits");
            i += 2;
        } else if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') ||
                     (ch >= 'A' && ch <= 'Z') || strchr("-/._~!$&'()*+,;=:@", ch) != NULL)) {
            return bad(c, p, "invalid character '%c' in a path",
                       ch >= 0x21 && ch < 0x7f ? ch : '?');
        }
    }
    return 0;
}

static bool ends_with(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && memcmp(s + n - m, suf, m) == 0;
}

static int check_match_path(struct cc *c, const char *p, const char *s)
{
    static const char *const banned[] = {"//", "/./", "/../", "%2f", "%2F", "#", NULL};
    if (strlen(s) > PATH_VALUE_MAX)
        return bad(c, p, "longer than %d characters", PATH_VALUE_MAX);
    if (s[0] != '/')
        return bad(c, p, "must start with '/'");
    for (int i = 0; banned[i] != NULL; i++)
        if (strstr(s, banned[i]) != NULL)
            return bad(c, p, "must not contain '%s'", banned[i]);
    if (ends_with(s, "/..") || ends_with(s, "/."))
        return bad(c, p, "must not end with '/.' or '/..'");
    return check_path_chars(c, p, s);
}

/* RFC 1123 host name, lower case, no wildcard (PreciseHostname). */
static int check_hostname(struct cc *c, const char *p, const char *s)
{
    size_t n = strlen(s), label = 0;
    if (n == 0 || n > 253)
        return bad(c, p, "must be 1..253 characters");
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
        if (ch == '.') {
            if (label == 0 || s[i - 1] == '-')
                return bad(c, p, "\"%.64s\" is not a valid host name", s);
            label = 0;
        } else if (alnum || (ch == '-' && label > 0)) {
            if (++label > 63)
                return bad(c, p, "label longer than 63 characters");
        } else {
            return bad(c, p, "\"%.64s\" is not a valid host name", s);
        }
    }
    if (label == 0 || s[n - 1] == '-')
        return bad(c, p, "\"%.64s\" is not a valid host name", s);
    return 0;
}

static int compile_re(struct cc *c, const char *p, const char *pat, const regex_t **out)
{
    struct re_node *node = zalloc(c, sizeof(*node));
    if (node == NULL)
        return nomem(c);
    int rc = regcomp(&node->re, pat, REG_EXTENDED);
    if (rc == REG_ESPACE) {
        errno = ENOMEM;
        return nomem(c);
    }
    if (rc != 0) {
        char msg[128];
        regerror(rc, &node->re, msg, sizeof(msg));
        return bad(c, p, "invalid regular expression \"%.64s\": %s", pat, msg);
    }
    node->next = c->r->regs;
    c->r->regs = node;
    *out = &node->re;
    return 0;
}

/* "Exact" (default) or "RegularExpression" in field "type". */
static int match_type(struct cc *c, const json_t *o, const char *path, bool *regex)
{
    const char *t;
    int rc = opt_str(c, o, "type", path, &t);
    *regex = false;
    if (rc != 0 || t == NULL || strcmp(t, "Exact") == 0)
        return rc;
    if (strcmp(t, "RegularExpression") == 0) {
        *regex = true;
        return 0;
    }
    char p[PATH_LEN];
    sub(p, path, "type");
    return bad(c, p, "unknown type \"%.64s\" (Exact or RegularExpression)", t);
}

/* ---- matches ---- */

static bool names_eq(const char *a, size_t an, const char *b, size_t bn, bool nocase)
{
    return an == bn && (nocase ? strncasecmp(a, b, an) == 0 : memcmp(a, b, an) == 0);
}

/* headers[] or queryParams[]: later entries with an equivalent name are
 * ignored, as the spec says. */
static int compile_smatches(struct cc *c, const json_t *m, const char *path, const char *key,
                            bool header, const struct smatch **out, size_t *n)
{
    const json_t *arr;
    int rc = opt_arr(c, m, key, path, MAX_LIST, &arr);
    *out = NULL;
    *n = 0;
    if (rc != 0 || arr == NULL)
        return rc;
    struct smatch *sm = zalloc(c, json_array_size(arr) * sizeof(*sm));
    if (sm == NULL)
        return nomem(c);
    size_t i;
    const json_t *e;
    json_array_foreach(arr, i, e)
    {
        char p[PATH_LEN], pn[PATH_LEN], pv[PATH_LEN];
        const char *name, *value;
        bool regex;
        idx(p, path, key, i);
        sub(pn, p, "name");
        sub(pv, p, "value");
        if ((rc = want_obj(c, e, p)) != 0 || (rc = match_type(c, e, p, &regex)) != 0 ||
            (rc = req_str(c, e, "name", p, &name)) != 0 ||
            (rc = req_str(c, e, "value", p, &value)) != 0 || (rc = check_hname(c, pn, name)) != 0)
            return rc;
        if (regex) {
            if (strlen(value) > HDR_VALUE_MAX)
                return bad(c, pv, "longer than %d characters", HDR_VALUE_MAX);
        } else if ((rc = check_value(c, pv, value, header ? HDR_VALUE_MAX : 1024)) != 0) {
            return rc;
        }
        bool seen = false;
        for (size_t k = 0; k < *n; k++)
            seen = seen || names_eq(sm[k].name, sm[k].name_len, name, strlen(name), header);
        if (seen)
            continue;
        struct smatch *s = &sm[(*n)++];
        s->name = header ? dup_lower(c, name) : dup(c, name);
        s->name_len = strlen(name);
        s->value = dup(c, value);
        s->value_len = strlen(value);
        if (s->name == NULL || s->value == NULL)
            return nomem(c);
        if (regex && (rc = compile_re(c, pv, value, &s->re)) != 0)
            return rc;
    }
    *out = sm;
    return 0;
}

static int compile_path(struct cc *c, const json_t *m, const char *path,
                        struct veil_route__match *out)
{
    const json_t *j = json_object_get(m, "path");
    char p[PATH_LEN], pv[PATH_LEN];
    const char *type, *value;
    int rc;
    out->ptype = P_PREFIX;
    out->path = "";
    out->key[1] = 1; /* "/" */
    if (j == NULL || json_is_null(j))
        return 0;
    sub(p, path, "path");
    sub(pv, p, "value");
    if ((rc = want_obj(c, j, p)) != 0 || (rc = opt_str(c, j, "type", p, &type)) != 0 ||
        (rc = opt_str(c, j, "value", p, &value)) != 0)
        return rc;
    if (value == NULL)
        value = "/";
    if (type == NULL || strcmp(type, "PathPrefix") == 0) {
        out->ptype = P_PREFIX;
    } else if (strcmp(type, "Exact") == 0) {
        out->ptype = P_EXACT;
    } else if (strcmp(type, "RegularExpression") == 0) {
        out->ptype = P_REGEX;
        if (strlen(value) > PATH_VALUE_MAX)
            return bad(c, pv, "longer than %d characters", PATH_VALUE_MAX);
        out->key[1] = 0;
        return compile_re(c, pv, value, &out->path_re);
    } else {
        sub(p, p, "type");
        return bad(c, p, "unknown type \"%.64s\" (Exact, PathPrefix or RegularExpression)", type);
    }
    if ((rc = check_match_path(c, pv, value)) != 0)
        return rc;
    size_t n = strlen(value);
    out->key[1] = (int)n;
    if (out->ptype == P_PREFIX)
        while (n > 0 && value[n - 1] == '/')
            n--;
    out->path = veil_arena_strndup(&c->r->arena, value, n);
    out->path_len = n;
    return out->path == NULL ? nomem(c) : 0;
}

static int compile_method(struct cc *c, const json_t *m, const char *path,
                          struct veil_route__match *out)
{
    static const char *const methods[] = {"GET",     "HEAD",    "POST",  "PUT",   "DELETE",
                                          "CONNECT", "OPTIONS", "TRACE", "PATCH", NULL};
    const char *s;
    int rc = opt_str(c, m, "method", path, &s);
    if (rc != 0 || s == NULL)
        return rc;
    for (int i = 0; methods[i] != NULL; i++) {
        if (strcmp(s, methods[i]) == 0) {
            out->method = methods[i];
            out->method_len = strlen(s);
            out->key[2] = 1;
            return 0;
        }
    }
    char p[PATH_LEN];
    sub(p, path, "method");
    return bad(c, p, "unknown method \"%.32s\"", s);
}

static int compile_http_match(struct cc *c, const json_t *m, const char *path,
                              struct veil_route__match *out)
{
    int rc;
    if ((rc = want_obj(c, m, path)) != 0 || (rc = compile_path(c, m, path, out)) != 0 ||
        (rc = compile_method(c, m, path, out)) != 0 ||
        (rc = compile_smatches(c, m, path, "headers", true, &out->headers, &out->nheaders)) != 0 ||
        (rc = compile_smatches(c, m, path, "queryParams", false, &out->query, &out->nquery)) != 0)
        return rc;
    out->key[0] = (int)out->ptype;
    out->key[3] = (int)out->nheaders;
    out->key[4] = (int)out->nquery;
    return 0;
}

static bool grpc_ident(const char *s, bool dots)
{
    bool start = true;
    if (dots && *s == '.')
        s++;
    for (; *s != '\0'; s++) {
        char ch = *s;
        bool alpha = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
        if (ch == '.' && dots && !start) {
            start = true;
            continue;
        }
        if (!alpha && (start || ch < '0' || ch > '9'))
            return false;
        start = false;
    }
    return !start;
}

static int grpc_part(struct cc *c, const json_t *j, const char *p, const char *key, bool regex,
                     const char **s, size_t *len, const regex_t **re)
{
    char pk[PATH_LEN];
    int rc = opt_str(c, j, key, p, s);
    if (rc != 0 || *s == NULL || **s == '\0') {
        *s = NULL;
        return rc;
    }
    sub(pk, p, key);
    if (strlen(*s) > 1024)
        return bad(c, pk, "longer than 1024 characters");
    *len = strlen(*s);
    if (regex)
        rc = compile_re(c, pk, *s, re);
    else if (!grpc_ident(*s, strcmp(key, "service") == 0))
        return bad(c, pk, "\"%.64s\" is not a valid gRPC %s name", *s, key);
    if (rc == 0 && (*s = dup(c, *s)) == NULL)
        return nomem(c);
    return rc;
}

static int compile_grpc_match(struct cc *c, const json_t *m, const char *path,
                              struct veil_route__match *out)
{
    int rc;
    if ((rc = want_obj(c, m, path)) != 0 ||
        (rc = compile_smatches(c, m, path, "headers", true, &out->headers, &out->nheaders)) != 0)
        return rc;
    const json_t *j = json_object_get(m, "method");
    if (j != NULL && !json_is_null(j)) {
        char p[PATH_LEN];
        bool regex;
        sub(p, path, "method");
        if ((rc = want_obj(c, j, p)) != 0 || (rc = match_type(c, j, p, &regex)) != 0 ||
            (rc = grpc_part(c, j, p, "service", regex, &out->service, &out->service_len,
                            &out->service_re)) != 0 ||
            (rc = grpc_part(c, j, p, "method", regex, &out->gmethod, &out->gmethod_len,
                            &out->gmethod_re)) != 0)
            return rc;
        if (out->service == NULL && out->gmethod == NULL)
            return bad(c, p, "one or both of service and method must be given");
    }
    /* characters of an Exact service or method; a regular expression has none */
    out->key[0] = out->service_re != NULL ? 0 : (int)out->service_len;
    out->key[1] = out->gmethod_re != NULL ? 0 : (int)out->gmethod_len;
    out->key[2] = (int)out->nheaders;
    return 0;
}

static int compile_matches(struct cc *c, const json_t *rule, const char *path,
                           struct veil_route_rule *out)
{
    bool grpc = c->r->kind == VEIL_ROUTE_GRPC;
    const json_t *arr;
    int rc = opt_arr(c, rule, "matches", path, grpc ? 8 : MAX_MATCHES, &arr);
    if (rc != 0)
        return rc;
    size_t n = arr != NULL ? json_array_size(arr) : 1;
    struct veil_route__match *ms = zalloc(c, n * sizeof(*ms));
    if (ms == NULL)
        return nomem(c);
    if ((c->all_matches += n) > MAX_ALL_MATCH)
        return bad(c, "spec.rules", "more than %d matches in all", MAX_ALL_MATCH);
    if (arr == NULL) { /* the default: PathPrefix "/" (HTTP), every call (gRPC) */
        ms->ptype = P_PREFIX;
        ms->path = "";
        ms->key[0] = grpc ? 0 : P_PREFIX;
        ms->key[1] = grpc ? 0 : 1;
    }
    size_t i;
    const json_t *m;
    json_array_foreach(arr, i, m)
    {
        char p[PATH_LEN];
        idx(p, path, "matches", i);
        rc = grpc ? compile_grpc_match(c, m, p, &ms[i]) : compile_http_match(c, m, p, &ms[i]);
        if (rc != 0)
            return rc;
    }
    out->_matches = ms;
    out->_nmatches = n;
    return 0;
}

/* ---- filters ---- */

static int compile_kvs(struct cc *c, const json_t *o, const char *path, const char *key,
                       const struct veil_route_kv **out, size_t *n)
{
    const json_t *arr;
    int rc = opt_arr(c, o, key, path, MAX_LIST, &arr);
    *n = 0;
    if (rc != 0 || arr == NULL)
        return rc;
    struct veil_route_kv *kv = zalloc(c, json_array_size(arr) * sizeof(*kv));
    if (kv == NULL)
        return nomem(c);
    size_t i;
    const json_t *e;
    json_array_foreach(arr, i, e)
    {
        char p[PATH_LEN], pn[PATH_LEN], pv[PATH_LEN];
        const char *name, *value = NULL;
        idx(p, path, key, i);
        sub(pn, p, "name");
        sub(pv, p, "value");
        if (strcmp(key, "remove") == 0) {
            if (!json_is_string(e))
                return bad(c, p, "must be a string");
            name = json_string_value(e);
            strcpy(pn, p);
        } else if ((rc = want_obj(c, e, p)) != 0 || (rc = req_str(c, e, "name", p, &name)) != 0 ||
                   (rc = req_str(c, e, "value", p, &value)) != 0 ||
                   (rc = check_value(c, pv, value, HDR_VALUE_MAX)) != 0) {
            return rc;
        }
        if ((rc = check_hname(c, pn, name)) != 0)
            return rc;
        kv[i].name = dup_lower(c, name);
        kv[i].name_len = strlen(name);
        if (value != NULL) {
            kv[i].value = dup(c, value);
            kv[i].value_len = strlen(value);
        }
        if (kv[i].name == NULL || (value != NULL && kv[i].value == NULL))
            return nomem(c);
    }
    *out = kv;
    *n = i;
    return 0;
}

/* One action per header name across set, add and remove. */
static int check_hmod_names(struct cc *c, const char *path, const struct veil_route_header_mod *m)
{
    const struct veil_route_kv *lists[3] = {m->set, m->add, m->remove};
    size_t ns[3] = {m->nset, m->nadd, m->nremove};
    for (int a = 0; a < 3; a++)
        for (size_t i = 0; i < ns[a]; i++)
            for (int b = a; b < 3; b++)
                for (size_t k = (b == a ? i + 1 : 0); k < ns[b]; k++)
                    if (strcmp(lists[a][i].name, lists[b][k].name) == 0)
                        return bad(c, path, "header \"%.64s\" has more than one action",
                                   lists[a][i].name);
    return 0;
}

static int compile_hmod(struct cc *c, const json_t *o, const char *path,
                        struct veil_route_header_mod *m)
{
    int rc;
    if ((rc = want_obj(c, o, path)) != 0 ||
        (rc = compile_kvs(c, o, path, "set", &m->set, &m->nset)) != 0 ||
        (rc = compile_kvs(c, o, path, "add", &m->add, &m->nadd)) != 0 ||
        (rc = compile_kvs(c, o, path, "remove", &m->remove, &m->nremove)) != 0)
        return rc;
    return check_hmod_names(c, path, m);
}

static int compile_pathmod(struct cc *c, const json_t *o, const char *path,
                           struct veil_route_path *out, bool *prefix_used)
{
    const json_t *j = json_object_get(o, "path");
    if (j == NULL || json_is_null(j))
        return 0;
    char p[PATH_LEN], pt[PATH_LEN];
    const char *type, *full, *prefix;
    int rc;
    sub(p, path, "path");
    sub(pt, p, "type");
    if ((rc = want_obj(c, j, p)) != 0 || (rc = req_str(c, j, "type", p, &type)) != 0 ||
        (rc = opt_str(c, j, "replaceFullPath", p, &full)) != 0 ||
        (rc = opt_str(c, j, "replacePrefixMatch", p, &prefix)) != 0)
        return rc;
    const char *v;
    if (strcmp(type, "ReplaceFullPath") == 0) {
        if (full == NULL || prefix != NULL)
            return bad(c, p, "ReplaceFullPath takes replaceFullPath (only)");
        sub(p, p, "replaceFullPath");
        if (full[0] != '/')
            return bad(c, p, "must start with '/'");
        out->type = VEIL_ROUTE_PATH_FULL;
        v = full;
    } else if (strcmp(type, "ReplacePrefixMatch") == 0) {
        if (prefix == NULL || full != NULL)
            return bad(c, p, "ReplacePrefixMatch takes replacePrefixMatch (only)");
        sub(p, p, "replacePrefixMatch");
        if (prefix[0] != '\0' && prefix[0] != '/')
            return bad(c, p, "must be empty or start with '/'");
        out->type = VEIL_ROUTE_PATH_PREFIX;
        *prefix_used = true;
        v = prefix;
    } else {
        return bad(c, pt, "unknown type \"%.64s\" (ReplaceFullPath or ReplacePrefixMatch)", type);
    }
    if (strlen(v) > PATH_VALUE_MAX)
        return bad(c, p, "longer than %d characters", PATH_VALUE_MAX);
    if ((rc = check_path_chars(c, p, v)) != 0)
        return rc;
    out->value = dup(c, v);
    return out->value == NULL ? nomem(c) : 0;
}

static int opt_hostname(struct cc *c, const json_t *o, const char *path, const char **out)
{
    int rc = opt_str(c, o, "hostname", path, out);
    if (rc != 0 || *out == NULL)
        return rc;
    char p[PATH_LEN];
    sub(p, path, "hostname");
    if ((rc = check_hostname(c, p, *out)) != 0)
        return rc;
    *out = dup(c, *out);
    return *out == NULL ? nomem(c) : 0;
}

static int compile_rewrite(struct cc *c, const json_t *o, const char *path,
                           struct veil_route_rewrite *rw, bool *prefix_used)
{
    int rc;
    if ((rc = want_obj(c, o, path)) != 0 || (rc = opt_hostname(c, o, path, &rw->hostname)) != 0)
        return rc;
    return compile_pathmod(c, o, path, &rw->path, prefix_used);
}

static int compile_redirect(struct cc *c, const json_t *o, const char *path,
                            struct veil_route_redirect *rd, bool *prefix_used)
{
    const char *scheme;
    long long port = 0, status = 302;
    bool set;
    int rc;
    if ((rc = want_obj(c, o, path)) != 0 || (rc = opt_str(c, o, "scheme", path, &scheme)) != 0 ||
        (rc = opt_hostname(c, o, path, &rd->hostname)) != 0 ||
        (rc = opt_int(c, o, "port", path, 1, 65535, &port, &set)) != 0 ||
        (rc = opt_int(c, o, "statusCode", path, 301, 308, &status, &set)) != 0 ||
        (rc = compile_pathmod(c, o, path, &rd->path, prefix_used)) != 0)
        return rc;
    char p[PATH_LEN];
    if (scheme != NULL) {
        if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
            sub(p, path, "scheme");
            return bad(c, p, "unknown scheme \"%.32s\" (http or https)", scheme);
        }
        rd->scheme = strcmp(scheme, "http") == 0 ? "http" : "https";
    }
    if (status != 301 && status != 302 && status != 303 && status != 307 && status != 308) {
        sub(p, path, "statusCode");
        return bad(c, p, "%lld is not a redirect status (301, 302, 303, 307, 308)", status);
    }
    rd->port = (uint16_t)port;
    rd->status = (int)status;
    return 0;
}

/* A BackendObjectReference: group "" and kind Service are valid. */
static int compile_ref(struct cc *c, const json_t *o, const char *path, const char **ns,
                       const char **name, uint16_t *port, bool *valid)
{
    const char *group, *kind, *n, *s;
    long long v = 0;
    bool set;
    int rc;
    if ((rc = want_obj(c, o, path)) != 0 || (rc = opt_str(c, o, "group", path, &group)) != 0 ||
        (rc = opt_str(c, o, "kind", path, &kind)) != 0 ||
        (rc = req_str(c, o, "name", path, &n)) != 0 ||
        (rc = opt_str(c, o, "namespace", path, &s)) != 0 ||
        (rc = opt_int(c, o, "port", path, 1, 65535, &v, &set)) != 0)
        return rc;
    *valid = (group == NULL || *group == '\0') && (kind == NULL || strcmp(kind, "Service") == 0);
    *ns = s != NULL ? dup(c, s) : c->r->ns;
    *name = dup(c, n);
    *port = (uint16_t)v;
    return *ns == NULL || *name == NULL ? nomem(c) : 0;
}

static int compile_mirror(struct cc *c, const json_t *o, const char *path,
                          struct veil_route_mirror *mi)
{
    char p[PATH_LEN];
    long long pct = 0, num = 0, den = 100;
    bool has_pct, has_num, has_den, valid;
    int rc;
    sub(p, path, "backendRef");
    if ((rc = want_obj(c, o, path)) != 0 ||
        (rc = compile_ref(c, json_object_get(o, "backendRef"), p, &mi->ns, &mi->name, &mi->port,
                          &valid)) != 0 ||
        (rc = opt_int(c, o, "percent", path, 0, 100, &pct, &has_pct)) != 0)
        return rc;
    if (!valid)
        return bad(c, p, "only a Service (group \"\", kind Service) can be mirrored to");
    const json_t *f = json_object_get(o, "fraction");
    mi->numerator = has_pct ? (uint32_t)pct : 100;
    mi->denominator = 100;
    if (f == NULL || json_is_null(f))
        return 0;
    sub(p, path, "fraction");
    if (has_pct)
        return bad(c, path, "only one of percent and fraction may be given");
    if ((rc = want_obj(c, f, p)) != 0 ||
        (rc = opt_int(c, f, "numerator", p, 0, UINT32_MAX, &num, &has_num)) != 0 ||
        (rc = opt_int(c, f, "denominator", p, 1, UINT32_MAX, &den, &has_den)) != 0)
        return rc;
    if (!has_num)
        return bad(c, p, "numerator: required field is missing");
    if (num > den)
        return bad(c, p, "numerator is larger than denominator");
    mi->numerator = (uint32_t)num;
    mi->denominator = (uint32_t)den;
    return 0;
}

enum ftype {
    F_REQ_HDR,
    F_RESP_HDR,
    F_REWRITE,
    F_REDIRECT,
    F_MIRROR,
    F_NTYPES,
};

static const char *const ftype_name[F_NTYPES] = {"RequestHeaderModifier", "ResponseHeaderModifier",
                                                 "URLRewrite", "RequestRedirect", "RequestMirror"};
static const char *const ftype_field[F_NTYPES] = {"requestHeaderModifier", "responseHeaderModifier",
                                                  "urlRewrite", "requestRedirect", "requestMirror"};

static int filter_type(struct cc *c, const json_t *f, const char *p, enum ftype *out)
{
    static const char *const unsupported[] = {"ExtensionRef", "CORS", "ExternalAuth", NULL};
    const char *t;
    char pt[PATH_LEN];
    int rc = req_str(c, f, "type", p, &t);
    if (rc != 0)
        return rc;
    sub(pt, p, "type");
    for (int i = 0; i < F_NTYPES; i++) {
        if (strcmp(t, ftype_name[i]) != 0)
            continue;
        bool http_only = i == F_REWRITE || i == F_REDIRECT;
        if (http_only && c->r->kind == VEIL_ROUTE_GRPC)
            return bad(c, pt, "filter %s is not allowed in a GRPCRoute", t);
        for (int k = 0; k < F_NTYPES; k++) {
            const json_t *other = json_object_get(f, ftype_field[k]);
            if (k != i && other != NULL && !json_is_null(other))
                return bad(c, p, "%s must not be set with type %s", ftype_field[k], t);
        }
        *out = (enum ftype)i;
        return 0;
    }
    for (int i = 0; unsupported[i] != NULL; i++)
        if (strcmp(t, unsupported[i]) == 0)
            return bad(c, pt, "filter type %s is not supported", t);
    return bad(c, pt, "unknown filter type \"%.64s\"", t);
}

static int compile_filters(struct cc *c, const json_t *o, const char *path,
                           struct veil_route_filters *out, bool *prefix_used)
{
    const json_t *arr;
    int rc = opt_arr(c, o, "filters", path, MAX_LIST, &arr);
    if (rc != 0 || arr == NULL)
        return rc;
    struct veil_route_mirror *mirrors = zalloc(c, json_array_size(arr) * sizeof(*mirrors));
    if (mirrors == NULL)
        return nomem(c);
    bool seen[F_NTYPES] = {false};
    size_t i;
    const json_t *f;
    json_array_foreach(arr, i, f)
    {
        char p[PATH_LEN], pf[PATH_LEN];
        enum ftype t = F_REQ_HDR;
        idx(p, path, "filters", i);
        if ((rc = want_obj(c, f, p)) != 0 || (rc = filter_type(c, f, p, &t)) != 0)
            return rc;
        if (seen[t] && t != F_MIRROR)
            return bad(c, p, "filter %s cannot be repeated", ftype_name[t]);
        seen[t] = true;
        const json_t *body = json_object_get(f, ftype_field[t]);
        sub(pf, p, ftype_field[t]);
        if (body == NULL || json_is_null(body))
            return bad(c, pf, "required for type %s", ftype_name[t]);
        switch (t) {
        case F_REQ_HDR:
            rc = compile_hmod(c, body, pf, &out->request_headers);
            break;
        case F_RESP_HDR:
            rc = compile_hmod(c, body, pf, &out->response_headers);
            break;
        case F_REWRITE:
            out->has_rewrite = true;
            rc = compile_rewrite(c, body, pf, &out->rewrite, prefix_used);
            break;
        case F_REDIRECT:
            out->has_redirect = true;
            rc = compile_redirect(c, body, pf, &out->redirect, prefix_used);
            break;
        default:
            rc = compile_mirror(c, body, pf, &mirrors[out->nmirrors++]);
            break;
        }
        if (rc != 0)
            return rc;
    }
    out->mirrors = mirrors;
    if (out->has_rewrite && out->has_redirect) {
        char p[PATH_LEN];
        sub(p, path, "filters");
        return bad(c, p, "RequestRedirect and URLRewrite cannot be combined");
    }
    return 0;
}

/* ---- rules ---- */

static int compile_backend(struct cc *c, const json_t *o, const char *path,
                           struct veil_route_backend *b, bool *prefix_used)
{
    long long w = 1;
    bool set;
    int rc;
    if ((rc = compile_ref(c, o, path, &b->ns, &b->name, &b->port, &b->valid)) != 0 ||
        (rc = opt_int(c, o, "weight", path, 0, 1000000, &w, &set)) != 0)
        return rc;
    b->weight = (uint32_t)w;
    const json_t *arr = json_object_get(o, "filters");
    if (arr == NULL || json_is_null(arr) || json_array_size(arr) == 0)
        return 0;
    struct veil_route_filters *f = zalloc(c, sizeof(*f));
    if (f == NULL)
        return nomem(c);
    b->filters = f;
    return compile_filters(c, o, path, f, prefix_used);
}

static int compile_backends(struct cc *c, const json_t *rule, const char *path,
                            struct veil_route_rule *out, bool *prefix_used)
{
    const json_t *arr;
    int rc = opt_arr(c, rule, "backendRefs", path, MAX_LIST, &arr);
    if (rc != 0 || arr == NULL)
        return rc;
    struct veil_route_backend *bs = zalloc(c, json_array_size(arr) * sizeof(*bs));
    if (bs == NULL)
        return nomem(c);
    size_t i;
    const json_t *b;
    json_array_foreach(arr, i, b)
    {
        char p[PATH_LEN];
        idx(p, path, "backendRefs", i);
        if ((rc = compile_backend(c, b, p, &bs[i], prefix_used)) != 0)
            return rc;
        out->_total_weight += bs[i].weight;
    }
    out->backends = bs;
    out->nbackends = i;
    return 0;
}

static int compile_timeouts(struct cc *c, const json_t *rule, const char *path,
                            struct veil_route_rule *out)
{
    const json_t *t = json_object_get(rule, "timeouts");
    char p[PATH_LEN];
    int rc;
    if (t == NULL || json_is_null(t))
        return 0;
    sub(p, path, "timeouts");
    if ((rc = want_obj(c, t, p)) != 0 ||
        (rc = opt_duration(c, t, "request", p, &out->request_timeout_ms)) != 0 ||
        (rc = opt_duration(c, t, "backendRequest", p, &out->backend_timeout_ms)) != 0)
        return rc;
    if (out->request_timeout_ms != 0 && out->backend_timeout_ms > out->request_timeout_ms)
        return bad(c, p, "backendRequest timeout cannot be longer than request timeout");
    return 0;
}

static int compile_retry(struct cc *c, const json_t *rule, const char *path,
                         struct veil_route_retry *out)
{
    const json_t *r = json_object_get(rule, "retry"), *codes;
    char p[PATH_LEN];
    long long attempts = 2;
    bool set;
    int rc;
    if (r == NULL || json_is_null(r))
        return 0;
    sub(p, path, "retry");
    if ((rc = want_obj(c, r, p)) != 0 ||
        (rc = opt_int(c, r, "attempts", p, 0, 1000, &attempts, &set)) != 0 ||
        (rc = opt_duration(c, r, "backoff", p, &out->backoff_ms)) != 0 ||
        (rc = opt_arr(c, r, "codes", p, MAX_CODES, &codes)) != 0)
        return rc;
    out->set = true;
    out->attempts = (uint32_t)attempts;
    if (codes == NULL)
        return 0;
    uint16_t *cs = zalloc(c, json_array_size(codes) * sizeof(*cs));
    if (cs == NULL)
        return nomem(c);
    size_t i;
    const json_t *e;
    json_array_foreach(codes, i, e)
    {
        char pc[PATH_LEN];
        idx(pc, p, "codes", i);
        if (!json_is_integer(e) || json_integer_value(e) < 400 || json_integer_value(e) > 599)
            return bad(c, pc, "must be a status code 400..599");
        cs[i] = (uint16_t)json_integer_value(e);
    }
    out->codes = cs;
    out->ncodes = i;
    return 0;
}

/* ReplacePrefixMatch needs exactly one match, a PathPrefix one. */
static int check_prefix_use(struct cc *c, const char *path, const struct veil_route_rule *r)
{
    if (r->_nmatches == 1 && r->_matches[0].ptype == P_PREFIX)
        return 0;
    return bad(c, path,
               "ReplacePrefixMatch needs exactly one match, and that a PathPrefix path match");
}

static int compile_rule(struct cc *c, const json_t *rule, const char *path,
                        struct veil_route_rule *out)
{
    bool prefix_used = false;
    const char *name;
    int rc;
    if ((rc = want_obj(c, rule, path)) != 0 || (rc = opt_str(c, rule, "name", path, &name)) != 0 ||
        (rc = compile_matches(c, rule, path, out)) != 0 ||
        (rc = compile_filters(c, rule, path, &out->filters, &prefix_used)) != 0 ||
        (rc = compile_backends(c, rule, path, out, &prefix_used)) != 0)
        return rc;
    if (c->r->kind == VEIL_ROUTE_HTTP && ((rc = compile_timeouts(c, rule, path, out)) != 0 ||
                                          (rc = compile_retry(c, rule, path, &out->retry)) != 0))
        return rc;
    if (name != NULL && (out->name = dup(c, name)) == NULL)
        return nomem(c);
    if (prefix_used && (rc = check_prefix_use(c, path, out)) != 0)
        return rc;
    if (out->filters.has_redirect && out->nbackends > 0)
        return bad(c, path, "RequestRedirect filter must not be used together with backendRefs");
    return 0;
}

static int compile_rules(struct cc *c, const json_t *spec)
{
    const json_t *arr;
    int rc = opt_arr(c, spec, "rules", "spec", MAX_RULES, &arr);
    if (rc != 0)
        return rc;
    size_t n = arr != NULL ? json_array_size(arr) : 1;
    struct veil_route_rule *rules = zalloc(c, n * sizeof(*rules));
    if (rules == NULL)
        return nomem(c);
    if (arr == NULL) { /* the default: one rule, every request, no backend */
        json_t *empty = json_object();
        rc = empty != NULL ? compile_rule(c, empty, "spec.rules[0]", rules) : -ENOMEM;
        json_decref(empty);
        if (rc == -ENOMEM)
            return nomem(c);
    }
    size_t i;
    const json_t *r;
    json_array_foreach(arr, i, r)
    {
        char p[PATH_LEN];
        pathf(p, "spec.rules[%zu]", i);
        rules[i].index = i;
        if ((rc = compile_rule(c, r, p, &rules[i])) != 0)
            return rc;
    }
    c->r->rules = rules;
    c->r->nrules = n;
    return rc;
}

static int compile_parents(struct cc *c, const json_t *spec)
{
    const json_t *arr;
    int rc = opt_arr(c, spec, "parentRefs", "spec", MAX_PARENTS, &arr);
    if (rc != 0)
        return rc;
    struct parent *ps = zalloc(c, (arr != NULL ? json_array_size(arr) : 1) * sizeof(*ps));
    if (ps == NULL)
        return nomem(c);
    size_t i, n = 0;
    const json_t *e;
    json_array_foreach(arr, i, e)
    {
        char p[PATH_LEN];
        const char *group, *kind, *name, *ns;
        long long port = 0;
        bool set;
        idx(p, "spec", "parentRefs", i);
        if ((rc = want_obj(c, e, p)) != 0 || (rc = opt_str(c, e, "group", p, &group)) != 0 ||
            (rc = opt_str(c, e, "kind", p, &kind)) != 0 ||
            (rc = req_str(c, e, "name", p, &name)) != 0 ||
            (rc = opt_str(c, e, "namespace", p, &ns)) != 0 ||
            (rc = opt_int(c, e, "port", p, 1, 65535, &port, &set)) != 0)
            return rc;
        if (group == NULL || *group != '\0' || kind == NULL || strcmp(kind, "Service") != 0)
            continue; /* a Gateway (or other) parent: not ours */
        const char *section;
        if ((rc = opt_str(c, e, "sectionName", p, &section)) != 0)
            return rc;
        if (ns != NULL && strcmp(ns, c->r->ns) != 0) {
            note(c, p, "a Service of another namespace (consumer route) is not supported: ignored");
            continue;
        }
        ps[n].ns = c->r->ns;
        ps[n].name = dup(c, name);
        ps[n].port = (uint16_t)port;
        ps[n].section = section != NULL ? dup(c, section) : NULL;
        if (ps[n].name == NULL || (section != NULL && ps[n].section == NULL))
            return nomem(c);
        n++;
    }
    if (n == 0)
        note(c, "spec.parentRefs", "no Service parentRef: the route applies to no request here");
    c->r->parents = ps;
    c->r->nparents = n;
    return 0;
}

static int compile_hostnames(struct cc *c, const json_t *spec)
{
    const json_t *arr;
    int rc = opt_arr(c, spec, "hostnames", "spec", MAX_LIST, &arr);
    if (rc != 0 || arr == NULL)
        return rc;
    size_t i;
    const json_t *e;
    json_array_foreach(arr, i, e)
    {
        char p[PATH_LEN];
        idx(p, "spec", "hostnames", i);
        if (!json_is_string(e) || json_string_length(e) == 0 || json_string_length(e) > 253)
            return bad(c, p, "must be a host name");
    }
    note(c, "spec.hostnames", "not used to match: the parent Service selects the requests");
    return 0;
}

static int compile_route(struct cc *c, const json_t *spec)
{
    int rc;
    if ((rc = want_obj(c, spec, "spec")) != 0 || (rc = compile_parents(c, spec)) != 0 ||
        (rc = compile_hostnames(c, spec)) != 0)
        return rc;
    return compile_rules(c, spec);
}

/* ---- routes ---- */

static void route_unref(struct veil_route *r)
{
    if (r == NULL || --r->refs > 0)
        return;
    for (struct re_node *n = r->regs; n != NULL; n = n->next)
        regfree(&n->re);
    veil_arena_free(&r->arena);
    veil_free(r);
}

static struct veil_route *route_new(enum veil_route_kind kind, const char *ns, const char *name)
{
    struct veil_route *r = veil_calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->refs = 1;
    r->kind = kind;
    veil_arena_init(&r->arena, 4096, ROUTE_BYTES);
    size_t nl = strlen(ns), ml = strlen(name);
    char *id = veil_arena_alloc(&r->arena, nl + ml + 2);
    r->ns = veil_arena_strndup(&r->arena, ns, nl);
    r->name = veil_arena_strndup(&r->arena, name, ml);
    if (id == NULL || r->ns == NULL || r->name == NULL) {
        route_unref(r);
        return NULL;
    }
    memcpy(id, ns, nl);
    id[nl] = '/';
    memcpy(id + nl + 1, name, ml + 1);
    r->id = id;
    return r;
}

const char *veil_route_kind_str(enum veil_route_kind k)
{
    return k == VEIL_ROUTE_GRPC ? "GRPCRoute" : "HTTPRoute";
}

static int kind_of(const char *s, enum veil_route_kind *k)
{
    if (s != NULL && strcmp(s, "HTTPRoute") == 0)
        *k = VEIL_ROUTE_HTTP;
    else if (s != NULL && strcmp(s, "GRPCRoute") == 0)
        *k = VEIL_ROUTE_GRPC;
    else
        return -EINVAL;
    return 0;
}

/* ---- the table ---- */

struct veil_route_table *veil_route_table_new(void)
{
    struct veil_route_table *t = veil_calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->tail = &t->head;
    t->next_seq = 1;
    return t;
}

static void ghosts_free(struct ghost *g)
{
    while (g != NULL) {
        struct ghost *next = g->next;
        veil_free(g);
        g = next;
    }
}

/* Remembers r's age (best effort: without memory it is forgotten). */
static struct ghost *ghost_new(const struct veil_route *r, struct ghost *next)
{
    size_t nl = strlen(r->ns), ml = strlen(r->name);
    struct ghost *g = veil_malloc(sizeof(*g) + nl + ml + 2);
    if (g == NULL)
        return next;
    g->next = next;
    g->kind = r->kind;
    g->seq = r->seq;
    memcpy(g->ns, r->ns, nl + 1);
    g->name = g->ns + nl + 1;
    memcpy(g->name, r->name, ml + 1);
    return g;
}

/* The age a route had before the last clear, or a new one. */
static uint64_t seq_for(struct veil_route_table *t, const struct veil_route *r)
{
    for (struct ghost **pg = &t->ghosts; *pg != NULL; pg = &(*pg)->next) {
        struct ghost *g = *pg;
        if (g->kind == r->kind && strcmp(g->ns, r->ns) == 0 && strcmp(g->name, r->name) == 0) {
            uint64_t seq = g->seq;
            *pg = g->next;
            veil_free(g);
            return seq;
        }
    }
    return t->next_seq++;
}

void veil_route_clear(struct veil_route_table *t)
{
    struct entry *e = t->head;
    struct ghost *ghosts = NULL;
    if (e != NULL)
        t->gen++;
    while (e != NULL) {
        struct entry *next = e->next;
        ghosts = ghost_new(e->r, ghosts);
        route_unref(e->r);
        veil_free(e);
        e = next;
    }
    ghosts_free(t->ghosts);
    t->ghosts = ghosts;
    t->head = NULL;
    t->tail = &t->head;
    t->n = 0;
}

void veil_route_table_free(struct veil_route_table *t)
{
    if (t == NULL)
        return;
    veil_route_clear(t);
    ghosts_free(t->ghosts);
    veil_free(t);
}

static struct entry **find_entry(struct veil_route_table *t, enum veil_route_kind k, const char *ns,
                                 const char *name)
{
    struct entry **pe = &t->head;
    for (; *pe != NULL; pe = &(*pe)->next) {
        const struct veil_route *r = (*pe)->r;
        if (r->kind == k && strcmp(r->ns, ns) == 0 && strcmp(r->name, name) == 0)
            break;
    }
    return pe;
}

int veil_route_set(struct veil_route_table *t, const char *kind, const char *ns, const char *name,
                   const json_t *spec, char *err, size_t cap)
{
    struct cc c = {.err = err, .cap = cap};
    enum veil_route_kind k;
    if (cap > 0)
        err[0] = '\0';
    if (kind_of(kind, &k) != 0)
        return bad(&c, "kind", "\"%.64s\" is not HTTPRoute or GRPCRoute", kind ? kind : "");
    if (ns == NULL || name == NULL || *ns == '\0' || *name == '\0')
        return bad(&c, "metadata", "namespace and name are required");
    if ((c.r = route_new(k, ns, name)) == NULL)
        return nomem(&c);
    int rc = compile_route(&c, spec);
    if (rc != 0) {
        route_unref(c.r);
        return rc;
    }
    struct entry **pe = find_entry(t, k, ns, name);
    if (*pe != NULL) {
        c.r->seq = (*pe)->seq;
        route_unref((*pe)->r);
        (*pe)->r = c.r;
    } else {
        struct entry *e = veil_calloc(1, sizeof(*e));
        if (e == NULL) {
            route_unref(c.r);
            return nomem(&c);
        }
        e->r = c.r;
        e->seq = c.r->seq = seq_for(t, c.r);
        *t->tail = e;
        t->tail = &e->next;
        t->n++;
    }
    t->gen++;
    return c.noted ? 1 : 0;
}

int veil_route_remove(struct veil_route_table *t, const char *kind, const char *ns,
                      const char *name)
{
    enum veil_route_kind k;
    if (kind_of(kind, &k) != 0)
        return -ENOENT;
    struct entry **pe = find_entry(t, k, ns, name), *e = *pe;
    if (e == NULL)
        return -ENOENT;
    *pe = e->next;
    if (t->tail == &e->next)
        t->tail = pe;
    route_unref(e->r);
    veil_free(e);
    t->n--;
    t->gen++;
    return 0;
}

size_t veil_route_count(const struct veil_route_table *t)
{
    return t->n;
}

uint64_t veil_route_generation(const struct veil_route_table *t)
{
    return t->gen;
}

/* ---- matching ---- */

/* The request, split once. */
struct rv {
    const struct veil_route_req *req;
    const char *path, *query; /* query: after '?', or NULL */
    size_t path_len, query_len;
    const char *service, *method; /* gRPC, or NULL when the path is not /S/M */
    size_t service_len, method_len;
};

static void rv_init(struct rv *v, const struct veil_route_req *req)
{
    const char *p = req->path != NULL ? req->path : "";
    size_t n = req->path != NULL ? req->path_len : 0;
    const char *q = memchr(p, '?', n);
    memset(v, 0, sizeof(*v));
    v->req = req;
    v->path = p;
    v->path_len = q != NULL ? (size_t)(q - p) : n;
    if (q != NULL) {
        v->query = q + 1;
        v->query_len = n - v->path_len - 1;
    }
    const char *slash = v->path_len > 1 ? memchr(p + 1, '/', v->path_len - 1) : NULL;
    if (p[0] == '/' && slash != NULL && slash > p + 1 && slash < p + v->path_len - 1 &&
        memchr(slash + 1, '/', (size_t)(p + v->path_len - slash - 1)) == NULL) {
        v->service = p + 1;
        v->service_len = (size_t)(slash - p - 1);
        v->method = slash + 1;
        v->method_len = (size_t)(p + v->path_len - slash - 1);
    }
}

/* The whole of s[0..n) matches (POSIX leftmost-longest: a whole match, if
 * one exists, is the one found). */
static bool re_full(const regex_t *re, const char *s, size_t n)
{
    regmatch_t m[1];
    m[0].rm_so = 0;
    m[0].rm_eo = (regoff_t)n;
    if (regexec(re, s != NULL ? s : "", 1, m, REG_STARTEND) != 0)
        return false;
    return m[0].rm_so == 0 && (size_t)m[0].rm_eo == n;
}

static bool value_ok(const struct smatch *sm, const char *v, size_t n)
{
    if (sm->re != NULL)
        return re_full(sm->re, v, n);
    return n == sm->value_len && memcmp(v, sm->value, n) == 0;
}

static bool headers_ok(const struct veil_route__match *m, const struct veil_route_req *req)
{
    for (size_t i = 0; i < m->nheaders; i++) {
        const struct smatch *sm = &m->headers[i];
        const struct veil_route_hdr *h = NULL;
        for (size_t k = 0; k < req->nheaders && h == NULL; k++)
            if (names_eq(req->headers[k].name, req->headers[k].name_len, sm->name, sm->name_len,
                         true))
                h = &req->headers[k];
        if (h == NULL || !value_ok(sm, h->value, h->value_len))
            return false;
    }
    return true;
}

/* The raw value of the first `name` parameter of the query. */
static bool query_get(const struct rv *v, const struct smatch *sm, const char **val, size_t *n)
{
    const char *p = v->query, *end = v->query + v->query_len;
    while (p != NULL && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp != NULL ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *nend = eq != NULL ? eq : stop;
        if (names_eq(p, (size_t)(nend - p), sm->name, sm->name_len, false)) {
            *val = eq != NULL ? eq + 1 : stop;
            *n = (size_t)(stop - *val);
            return true;
        }
        p = amp != NULL ? amp + 1 : NULL;
    }
    return false;
}

static bool path_ok(const struct veil_route__match *m, const struct rv *v)
{
    switch (m->ptype) {
    case P_EXACT:
        return v->path_len == m->path_len && memcmp(v->path, m->path, m->path_len) == 0;
    case P_PREFIX:
        return v->path_len >= m->path_len && memcmp(v->path, m->path, m->path_len) == 0 &&
               (v->path_len == m->path_len || v->path[m->path_len] == '/' || m->path_len == 0);
    default:
        return re_full(m->path_re, v->path, v->path_len);
    }
}

static bool http_ok(const struct veil_route__match *m, const struct rv *v)
{
    const struct veil_route_req *req = v->req;
    if (!path_ok(m, v))
        return false;
    if (m->method != NULL && !names_eq(req->method, req->method != NULL ? req->method_len : 0,
                                       m->method, m->method_len, false))
        return false;
    for (size_t i = 0; i < m->nquery; i++) {
        const char *val;
        size_t n;
        if (!query_get(v, &m->query[i], &val, &n) || !value_ok(&m->query[i], val, n))
            return false;
    }
    return headers_ok(m, req);
}

static bool part_ok(const char *want, size_t wn, const regex_t *re, const char *s, size_t n)
{
    if (want == NULL)
        return true;
    if (s == NULL)
        return false;
    return re != NULL ? re_full(re, s, n) : (n == wn && memcmp(s, want, n) == 0);
}

static bool grpc_ok(const struct veil_route__match *m, const struct rv *v)
{
    return part_ok(m->service, m->service_len, m->service_re, v->service, v->service_len) &&
           part_ok(m->gmethod, m->gmethod_len, m->gmethod_re, v->method, v->method_len) &&
           headers_ok(m, v->req);
}

struct cand {
    const struct veil_route *r;
    const struct veil_route_rule *rule;
    const struct veil_route__match *m;
};

static bool beats(const struct cand *a, const struct cand *b)
{
    if (b->m == NULL)
        return true;
    for (int i = 0; i < NKEY; i++)
        if (a->m->key[i] != b->m->key[i])
            return a->m->key[i] > b->m->key[i];
    if (a->r->seq != b->r->seq)
        return a->r->seq < b->r->seq;
    int cmp = strcmp(a->r->id, b->r->id);
    if (cmp != 0)
        return cmp < 0;
    return a->rule->index < b->rule->index;
}

/* Whether r attaches to Service ns/name on the port dialled: a parentRef's
 * port and sectionName (the port's name), when given, must both match. */
static bool attached(const struct veil_route *r, const char *ns, const char *name, uint16_t port,
                     const char *port_name)
{
    for (size_t i = 0; i < r->nparents; i++) {
        const struct parent *p = &r->parents[i];
        if ((p->port == 0 || p->port == port) &&
            (p->section == NULL || (port_name != NULL && strcmp(p->section, port_name) == 0)) &&
            strcmp(p->name, name) == 0 && strcmp(p->ns, ns) == 0)
            return true;
    }
    return false;
}

static void consider(const struct veil_route *r, const struct rv *v, struct cand *best)
{
    for (size_t i = 0; i < r->nrules; i++) {
        const struct veil_route_rule *rule = &r->rules[i];
        for (size_t k = 0; k < rule->_nmatches; k++) {
            struct cand c = {r, rule, &rule->_matches[k]};
            bool ok = r->kind == VEIL_ROUTE_GRPC ? grpc_ok(c.m, v) : http_ok(c.m, v);
            if (ok && beats(&c, best))
                *best = c;
        }
    }
}

enum veil_route_verdict veil_route_find(struct veil_route_table *t, const char *svc_ns,
                                        const char *svc_name, uint16_t port,
                                        const struct veil_route_req *req,
                                        struct veil_route_match *out)
{
    struct cand best[2] = {{0}};
    bool any[2] = {false, false};
    struct rv v;
    memset(out, 0, sizeof(*out));
    rv_init(&v, req);
    for (const struct entry *e = t->head; e != NULL; e = e->next) {
        if (!attached(e->r, svc_ns, svc_name, port, req->port_name))
            continue;
        any[e->r->kind] = true;
        if (e->r->kind == VEIL_ROUTE_HTTP || req->grpc)
            consider(e->r, &v, &best[e->r->kind]);
    }
    if (!any[VEIL_ROUTE_HTTP] && !any[VEIL_ROUTE_GRPC])
        return VEIL_ROUTE_NONE;
    const struct cand *c = &best[req->grpc && any[VEIL_ROUTE_GRPC] ? VEIL_ROUTE_GRPC : 0];
    if (c->m == NULL)
        return VEIL_ROUTE_NOT_FOUND;
    struct veil_route *r = (struct veil_route *)c->r;
    r->refs++;
    out->_route = r;
    out->rule = c->rule;
    out->kind = r->kind;
    out->route_ns = r->ns;
    out->route_name = r->name;
    if (r->kind == VEIL_ROUTE_HTTP && c->m->ptype == P_PREFIX) {
        out->prefix = c->m->path;
        out->prefix_len = c->m->path_len;
    }
    return VEIL_ROUTE_MATCHED;
}

void veil_route_release(struct veil_route_match *m)
{
    if (m == NULL)
        return;
    route_unref(m->_route);
    memset(m, 0, sizeof(*m));
}

/* ---- backends and mirrors ---- */

const struct veil_route_backend *veil_route_pick(const struct veil_route_rule *rule, uint64_t rnd)
{
    if (rule == NULL || rule->_total_weight == 0)
        return NULL;
    uint64_t x = rnd % rule->_total_weight;
    for (size_t i = 0; i < rule->nbackends; i++) {
        const struct veil_route_backend *b = &rule->backends[i];
        if (x < b->weight)
            return b->valid ? b : NULL;
        x -= b->weight;
    }
    return NULL;
}

bool veil_route_mirror_hit(const struct veil_route_mirror *mi, uint64_t rnd)
{
    if (mi == NULL || mi->denominator == 0 || mi->numerator == 0)
        return false;
    return rnd % mi->denominator < mi->numerator;
}

/* ---- header edits ---- */

static bool kv_has(const struct veil_route_kv *kv, size_t n, const struct veil_route_hdr *h,
                   size_t *at)
{
    for (size_t i = 0; i < n; i++) {
        if (names_eq(kv[i].name, kv[i].name_len, h->name, h->name_len, true)) {
            *at = i;
            return true;
        }
    }
    return false;
}

static int put(struct veil_route_hdr *out, size_t cap, size_t *n, const char *name, size_t name_len,
               const char *value, size_t value_len)
{
    if (*n >= cap)
        return -ENOBUFS;
    out[*n] = (struct veil_route_hdr){name, name_len, value, value_len};
    (*n)++;
    return 0;
}

int veil_route_headers_apply(const struct veil_route_header_mod *mod,
                             const struct veil_route_hdr *in, size_t nin,
                             struct veil_route_hdr *out, size_t cap)
{
    static const struct veil_route_header_mod none;
    uint64_t done = 0; /* set entries written */
    size_t n = 0, at;
    if (mod == NULL)
        mod = &none;
    if (mod->nset > 64)
        return -EINVAL;
    for (size_t i = 0; i < nin; i++) {
        const struct veil_route_hdr *h = &in[i];
        int rc = 0;
        if (kv_has(mod->remove, mod->nremove, h, &at))
            continue;
        if (!kv_has(mod->set, mod->nset, h, &at)) {
            rc = put(out, cap, &n, h->name, h->name_len, h->value, h->value_len);
        } else if (!(done & (1ull << at))) {
            const struct veil_route_kv *s = &mod->set[at];
            done |= 1ull << at;
            rc = put(out, cap, &n, s->name, s->name_len, s->value, s->value_len);
        }
        if (rc != 0)
            return rc;
    }
    for (size_t i = 0; i < mod->nset; i++) {
        const struct veil_route_kv *s = &mod->set[i];
        if (!(done & (1ull << i)) &&
            put(out, cap, &n, s->name, s->name_len, s->value, s->value_len) != 0)
            return -ENOBUFS;
    }
    for (size_t i = 0; i < mod->nadd; i++) {
        const struct veil_route_kv *a = &mod->add[i];
        if (put(out, cap, &n, a->name, a->name_len, a->value, a->value_len) != 0)
            return -ENOBUFS;
    }
    return (int)n;
}

/* ---- paths and redirects ---- */

/* A bounded string being written. */
struct sb {
    char *p;
    size_t cap, len;
    bool over;
};

static void sb_add(struct sb *b, const char *s, size_t n)
{
    if (b->over || b->len + n >= b->cap) {
        b->over = true;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(struct sb *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static int sb_end(struct sb *b)
{
    if (b->over || b->len > (size_t)INT32_MAX)
        return -ENOBUFS;
    return (int)b->len;
}

static int path_into(struct sb *b, const struct veil_route_match *m,
                     const struct veil_route_path *mod, const char *path, size_t path_len)
{
    const char *q = memchr(path, '?', path_len);
    size_t plen = q != NULL ? (size_t)(q - path) : path_len;
    size_t qlen = path_len - plen;
    if (mod == NULL || mod->type == VEIL_ROUTE_PATH_KEEP) {
        sb_add(b, path, path_len);
        return 0;
    }
    if (mod->type == VEIL_ROUTE_PATH_FULL) {
        sb_str(b, mod->value);
        sb_add(b, path + plen, qlen);
        return 0;
    }
    size_t pl = m != NULL ? m->prefix_len : 0;
    if (m == NULL || m->prefix == NULL || plen < pl || memcmp(path, m->prefix, pl) != 0 ||
        (plen > pl && path[pl] != '/'))
        return -EINVAL;
    size_t rl = strlen(mod->value);
    while (rl > 0 && mod->value[rl - 1] == '/')
        rl--;
    size_t start = b->len;
    sb_add(b, mod->value, rl);
    sb_add(b, path + pl, plen - pl);
    if (b->len == start)
        sb_str(b, "/");
    sb_add(b, path + plen, qlen);
    return 0;
}

int veil_route_path_rewrite(const struct veil_route_match *m, const struct veil_route_path *mod,
                            const char *path, size_t path_len, char *out, size_t cap)
{
    struct sb b = {out, cap, 0, cap == 0};
    if (cap > 0)
        out[0] = '\0';
    int rc = path_into(&b, m, mod, path, path_len);
    return rc != 0 ? rc : sb_end(&b);
}

/* The host part of an authority: "[v6]" kept whole, ":port" dropped. */
static size_t host_len(const char *a, size_t n)
{
    if (n > 0 && a[0] == '[') {
        const char *end = memchr(a, ']', n);
        return end != NULL ? (size_t)(end - a) + 1 : n;
    }
    const char *colon = memchr(a, ':', n);
    return colon != NULL ? (size_t)(colon - a) : n;
}

static bool clean(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return true;
}

int veil_route_redirect_location(const struct veil_route_match *m,
                                 const struct veil_route_redirect *rd,
                                 const struct veil_route_req *req, char *out, size_t cap)
{
    struct sb b = {out, cap, 0, cap == 0};
    const char *scheme = rd->scheme;
    unsigned port = rd->port;
    if (cap > 0)
        out[0] = '\0';
    if (scheme == NULL)
        scheme = req->scheme != NULL ? req->scheme : "http";
    if (port == 0)
        port = rd->scheme == NULL ? req->port : strcmp(scheme, "https") == 0 ? 443 : 80;
    sb_str(&b, scheme);
    sb_str(&b, "://");
    if (rd->hostname != NULL)
        sb_str(&b, rd->hostname);
    else if (req->authority != NULL)
        sb_add(&b, req->authority, host_len(req->authority, req->authority_len));
    bool dflt = (port == 80 && strcmp(scheme, "http") == 0) ||
                (port == 443 && strcmp(scheme, "https") == 0);
    if (port != 0 && !dflt) {
        char num[8];
        snprintf(num, sizeof(num), ":%u", port);
        sb_str(&b, num);
    }
    size_t path_at = b.len;
    int rc = path_into(&b, m, &rd->path, req->path != NULL ? req->path : "/",
                       req->path != NULL ? req->path_len : 1);
    if (rc != 0)
        return rc;
    if (!b.over && b.len == path_at)
        sb_str(&b, "/");
    if (!b.over && !clean(out, b.len))
        return -EINVAL;
    return sb_end(&b);
}
