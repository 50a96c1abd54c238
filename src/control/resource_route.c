/*
 * HTTPRoute and GRPCRoute (Gateway API): validation as the specification
 * defines it (field rules, limits and the CEL rules of its CRDs), with the
 * references kept for status. Fields are in docs/resources.md.
 */
#include "control/resource-int.h"
#include "control/resource.h"

#include "core/arena.h"
#include "core/conf.h"

#include <ctype.h>
#include <errno.h>
#include <regex.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define MAX_PARENTS      32
#define MAX_HOSTNAMES    16
#define MAX_RULES        16
#define MAX_MATCHES      64
#define MAX_ALL_MATCHES  128 /* across the rules of a route */
#define MAX_LIST         16  /* headers, queryParams, filters, backendRefs, set/add/remove */
#define MAX_VALUE        4096
#define MAX_PATH_VALUE   1024
#define MAX_NAME         253
#define MAX_HEADER_NAME  256
#define MAX_WEIGHT       1000000
#define GATEWAY_API_KIND "Gateway"

/* One route being parsed. */
struct rctx {
    struct veil_res__rp *p;
    bool grpc;
    struct veil_res_ref *parents, *backends;
    size_t nparents, nbackends, cap;
    size_t all_matches;
};

#define ERR(c, at, path, ...) veil_conf_errf((c)->p->err, (at), (path), __VA_ARGS__)

/* ---- scalars ---------------------------------------------------------------- */

/* "A, B or C" of a NULL-terminated list. */
static void alternatives(const char *const *v, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; v[i] != NULL && len < n; i++) {
        const char *sep = i == 0 ? "" : v[i + 1] == NULL ? " or " : ", ";
        len += (size_t)snprintf(buf + len, n - len, "%s%s", sep, v[i]);
    }
}

/* An optional string m[key], at most `max` characters, not empty. */
static int str_field(struct rctx *c, const struct veil_conf_node *m,
                     const struct veil_conf_path *path, const char *key, bool required, size_t max,
                     const char **out)
{
    int rc = required ? veil_conf_req_str(m, path, key, out, c->p->err)
                      : veil_conf_get_str(m, path, key, out, c->p->err);
    if (rc < 0)
        return -EINVAL;
    if (*out == NULL)
        return 0;
    const struct veil_conf_node *v = veil_conf_map_get(m, key);
    if ((*out)[0] == '\0')
        return ERR(c, v, VEIL_CONF_KEY(path, key), "must not be empty");
    if (strlen(*out) > max)
        return ERR(c, v, VEIL_CONF_KEY(path, key), "longer than %zu characters", max);
    return 0;
}

/* An optional m[key] that must be one of `allowed`; *out keeps its default. */
static int enum_field(struct rctx *c, const struct veil_conf_node *m,
                      const struct veil_conf_path *path, const char *key,
                      const char *const *allowed, const char *what, const char **out)
{
    if (veil_conf_get_str(m, path, key, out, c->p->err) < 0)
        return -EINVAL;
    for (size_t i = 0; allowed[i] != NULL; i++)
        if (strcmp(allowed[i], *out) == 0)
            return 0;
    char alt[256];
    alternatives(allowed, alt, sizeof(alt));
    return ERR(c, veil_conf_map_get(m, key), VEIL_CONF_KEY(path, key), "unknown %s \"%s\" (%s)",
               what, *out, alt);
}

/* An optional list m[key] of at most `max` items. */
static int seq_field(struct rctx *c, const struct veil_conf_node *m,
                     const struct veil_conf_path *path, const char *key, size_t max,
                     const struct veil_conf_node **out)
{
    *out = NULL;
    if (veil_conf_get_seq(m, path, key, out, c->p->err) < 0)
        return -EINVAL;
    if (veil_conf_len(*out) > max)
        return ERR(c, *out, VEIL_CONF_KEY(path, key), "at most %zu items, got %zu", max,
                   veil_conf_len(*out));
    return 0;
}

/* A map item of a list, with its fields checked against `known`. */
static int map_item(struct rctx *c, const struct veil_conf_node *m,
                    const struct veil_conf_path *path, const char *const *known)
{
    if (veil_conf_expect(m, path, VEIL_CONF_MAP, c->p->err) < 0 ||
        veil_res__known_fields(c->p, m, path, known) < 0)
        return -EINVAL;
    return 0;
}

/* Gateway API Duration: ^([0-9]{1,5}(h|m|s|ms)){1,4}$, in milliseconds. */
static bool duration_ms(const char *s, unsigned long long *ms)
{
    unsigned long long total = 0;
    int parts = 0;
    while (*s != '\0') {
        unsigned long long n = 0;
        int digits = 0;
        while (isdigit((unsigned char)*s) && digits < 6) {
            n = n * 10 + (unsigned)(*s++ - '0');
            digits++;
        }
        if (digits == 0 || digits > 5 || ++parts > 4)
            return false;
        if (s[0] == 'm' && s[1] == 's') {
            s += 2;
        } else if (*s == 'h' || *s == 'm' || *s == 's') {
            n *= *s == 'h' ? 3600000ull : *s == 'm' ? 60000ull : 1000ull;
            s++;
        } else {
            return false;
        }
        total += n;
    }
    *ms = total;
    return parts > 0;
}

static int duration_field(struct rctx *c, const struct veil_conf_node *m,
                          const struct veil_conf_path *path, const char *key, bool *has,
                          unsigned long long *ms)
{
    const char *s = NULL;
    *has = false;
    if (veil_conf_get_str(m, path, key, &s, c->p->err) < 0)
        return -EINVAL;
    if (s == NULL)
        return 0;
    if (!duration_ms(s, ms))
        return ERR(c, veil_conf_map_get(m, key), VEIL_CONF_KEY(path, key),
                   "\"%s\" is not a valid duration (1 to 4 parts of up to 5 digits and h, m, s "
                   "or ms, e.g. 1m30s)",
                   s);
    *has = true;
    return 0;
}

/* A POSIX extended regular expression that regcomp() accepts. */
static int regex_check(struct rctx *c, const struct veil_conf_node *at,
                       const struct veil_conf_path *path, const char *s)
{
    regex_t re;
    int rc = regcomp(&re, s, REG_EXTENDED | REG_NOSUB);
    if (rc == 0) {
        regfree(&re);
        return 0;
    }
    char why[128];
    regerror(rc, &re, why, sizeof(why));
    return ERR(c, at, path, "\"%s\" is not a valid regular expression (POSIX extended): %s", s,
               why);
}

/* An HTTP header name (an RFC 7230 token). */
static bool header_name(const char *s)
{
    if (s[0] == '\0' || strlen(s) > MAX_HEADER_NAME)
        return false;
    for (; *s != '\0'; s++)
        if (!isalnum((unsigned char)*s) && strchr("!#$%&'*+-.^_`|~", *s) == NULL)
            return false;
    return true;
}

static int header_name_field(struct rctx *c, const struct veil_conf_node *m,
                             const struct veil_conf_path *path, const char *key, const char **out)
{
    if (veil_conf_req_str(m, path, key, out, c->p->err) < 0)
        return -EINVAL;
    if (!header_name(*out))
        return ERR(c, veil_conf_map_get(m, key), VEIL_CONF_KEY(path, key),
                   "\"%s\" is not a valid header name", *out);
    return 0;
}

/* A hostname: a DNS subdomain, with a leading "*." when `wildcard`; no IP. */
static int hostname_check(struct rctx *c, const struct veil_conf_node *at,
                          const struct veil_conf_path *path, const char *s, bool wildcard)
{
    char ip[64];
    const char *h = wildcard && strncmp(s, "*.", 2) == 0 ? s + 2 : s;
    if (veil_res_parse_ip(s, ip, sizeof(ip)) > 0)
        return ERR(c, at, path, "\"%s\": an IP address is not allowed as a hostname", s);
    if (!veil_res__dns_subdomain(h, strlen(h)))
        return ERR(c, at, path, "\"%s\" is not a valid hostname%s", s,
                   wildcard ? " (lowercase DNS name, may start with \"*.\")" : "");
    return 0;
}

static int hostname_field(struct rctx *c, const struct veil_conf_node *m,
                          const struct veil_conf_path *path, const char *key)
{
    const char *s = NULL;
    if (veil_conf_get_str(m, path, key, &s, c->p->err) < 0)
        return -EINVAL;
    return s != NULL
               ? hostname_check(c, veil_conf_map_get(m, key), VEIL_CONF_KEY(path, key), s, false)
               : 0;
}

/* ---- references ------------------------------------------------------------- */

static bool kind_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || !isalpha((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '-')
            return false;
    return true;
}

/* group, kind, namespace, name, port of a parentRef or a backendRef. */
static int ref_common(struct rctx *c, const struct veil_conf_node *m,
                      const struct veil_conf_path *path, bool parent, struct veil_res_ref *out)
{
    const char *group = parent ? VEIL_RES_GATEWAY_GROUP : "";
    const char *kind = parent ? GATEWAY_API_KIND : "Service", *ns = NULL, *name;
    const struct veil_conf_node *pn = veil_conf_map_get(m, "port");
    if (veil_conf_get_str(m, path, "group", &group, c->p->err) < 0 ||
        veil_conf_get_str(m, path, "kind", &kind, c->p->err) < 0 ||
        veil_conf_get_str(m, path, "namespace", &ns, c->p->err) < 0 ||
        str_field(c, m, path, "name", true, MAX_NAME, &name) < 0)
        return -EINVAL;
    if (group[0] != '\0' && !veil_res__dns_subdomain(group, strlen(group)))
        return ERR(c, veil_conf_map_get(m, "group"), VEIL_CONF_KEY(path, "group"),
                   "\"%s\" is not a valid API group", group);
    if (!kind_name(kind))
        return ERR(c, veil_conf_map_get(m, "kind"), VEIL_CONF_KEY(path, "kind"),
                   "\"%s\" is not a valid kind", kind);
    if (ns != NULL && !veil_res__dns_label(ns, strlen(ns)))
        return ERR(c, veil_conf_map_get(m, "namespace"), VEIL_CONF_KEY(path, "namespace"),
                   "\"%s\" is not a valid namespace", ns);
    out->port = 0;
    if (pn != NULL && pn->kind != VEIL_CONF_NULL &&
        veil_res__port_value(c->p, pn, VEIL_CONF_KEY(path, "port"), false, &out->port) < 0)
        return -EINVAL;
    if (veil_res__dup_to(c->p, group, &out->group) < 0 ||
        veil_res__dup_to(c->p, kind, &out->kind) < 0 ||
        veil_res__dup_to(c->p, ns != NULL ? ns : c->p->r->ns, &out->ns) < 0 ||
        veil_res__dup_to(c->p, name, &out->name) < 0)
        return -ENOMEM;
    return 0;
}

static bool ref_same(const struct veil_res_ref *a, const struct veil_res_ref *b)
{
    const char *sa = a->section_name ? a->section_name : "";
    const char *sb = b->section_name ? b->section_name : "";
    return strcmp(a->group, b->group) == 0 && strcmp(a->kind, b->kind) == 0 &&
           strcmp(a->ns, b->ns) == 0 && strcmp(a->name, b->name) == 0 && a->port == b->port &&
           strcmp(sa, sb) == 0;
}

static int parse_parent(struct rctx *c, const struct veil_conf_node *m,
                        const struct veil_conf_path *path)
{
    static const char *const known[] = {"group", "kind",        "namespace", "name",
                                        "port",  "sectionName", NULL};
    struct veil_res_ref *out = &c->parents[c->nparents];
    const char *section = NULL;
    if (map_item(c, m, path, known) < 0 || ref_common(c, m, path, true, out) < 0 ||
        str_field(c, m, path, "sectionName", false, MAX_NAME, &section) < 0)
        return -EINVAL;
    if (section != NULL && !veil_res__dns_subdomain(section, strlen(section)))
        return ERR(c, veil_conf_map_get(m, "sectionName"), VEIL_CONF_KEY(path, "sectionName"),
                   "\"%s\" is not a valid section name", section);
    out->section_name = NULL;
    if (section != NULL && veil_res__dup_to(c->p, section, &out->section_name) < 0)
        return -ENOMEM;
    for (size_t i = 0; i < c->nparents; i++)
        if (ref_same(&c->parents[i], out))
            return ERR(c, m, path, "duplicate parentRef (same as parentRefs[%zu])", i);
    c->nparents++;
    return 0;
}

/* A backend: `extra` adds weight and filters (HTTPBackendRef, GRPCBackendRef). */
static int parse_backend(struct rctx *c, const struct veil_conf_node *m,
                         const struct veil_conf_path *path, bool extra)
{
    static const char *const known[] = {"group", "kind", "namespace", "name", "port", NULL};
    static const char *const known_x[] = {"group", "kind",   "namespace", "name",
                                          "port",  "weight", "filters",   NULL};
    if (c->nbackends == c->cap)
        return ERR(c, m, path, "too many backends in one route");
    struct veil_res_ref *out = &c->backends[c->nbackends];
    int64_t weight = 1;
    if (map_item(c, m, path, extra ? known_x : known) < 0 ||
        ref_common(c, m, path, false, out) < 0 ||
        veil_conf_get_int_range(m, path, "weight", 0, MAX_WEIGHT, &weight, c->p->err) < 0)
        return -EINVAL;
    out->section_name = NULL;
    if (out->group[0] == '\0' && strcmp(out->kind, "Service") == 0 && out->port == 0)
        return ERR(c, m, VEIL_CONF_KEY(path, "port"), "required for a Service backend");
    c->nbackends++;
    return 0;
}

/* ---- filters ------------------------------------------------------------------ */

/* set / add: [{name, value}], names unique (case-insensitive). */
static int header_values(struct rctx *c, const struct veil_conf_node *m,
                         const struct veil_conf_path *path, const char *key)
{
    static const char *const known[] = {"name", "value", NULL};
    const struct veil_conf_node *seq;
    const struct veil_conf_path *lp = VEIL_CONF_KEY(path, key);
    if (seq_field(c, m, path, key, MAX_LIST, &seq) < 0)
        return -EINVAL;
    for (size_t i = 0; i < veil_conf_len(seq); i++) {
        const struct veil_conf_node *h = veil_conf_seq_at(seq, i);
        const struct veil_conf_path *ip = VEIL_CONF_IDX(lp, i);
        const char *name, *value;
        if (map_item(c, h, ip, known) < 0 || header_name_field(c, h, ip, "name", &name) < 0 ||
            str_field(c, h, ip, "value", true, MAX_VALUE, &value) < 0)
            return -EINVAL;
        for (size_t j = 0; j < i; j++) {
            const char *o = veil_conf_str(veil_conf_map_get(veil_conf_seq_at(seq, j), "name"));
            if (strcasecmp(o, name) == 0)
                return ERR(c, veil_conf_map_get(h, "name"), VEIL_CONF_KEY(ip, "name"),
                           "duplicate header name \"%s\"", name);
        }
    }
    return 0;
}

static int header_modifier(struct rctx *c, const struct veil_conf_node *m,
                           const struct veil_conf_path *path)
{
    static const char *const known[] = {"set", "add", "remove", NULL};
    const struct veil_conf_node *rm;
    const struct veil_conf_path *rp = VEIL_CONF_KEY(path, "remove");
    if (veil_res__known_fields(c->p, m, path, known) < 0 || header_values(c, m, path, "set") < 0 ||
        header_values(c, m, path, "add") < 0 || seq_field(c, m, path, "remove", MAX_LIST, &rm) < 0)
        return -EINVAL;
    for (size_t i = 0; i < veil_conf_len(rm); i++) {
        const struct veil_conf_node *it = veil_conf_seq_at(rm, i);
        const struct veil_conf_path *ip = VEIL_CONF_IDX(rp, i);
        if (veil_conf_expect(it, ip, VEIL_CONF_STR, c->p->err) < 0)
            return -EINVAL;
        if (!header_name(it->v.str.ptr))
            return ERR(c, it, ip, "\"%s\" is not a valid header name", it->v.str.ptr);
        for (size_t j = 0; j < i; j++)
            if (strcasecmp(veil_conf_str(veil_conf_seq_at(rm, j)), it->v.str.ptr) == 0)
                return ERR(c, it, ip, "duplicate header name \"%s\"", it->v.str.ptr);
    }
    return 0;
}

/* HTTPPathModifier; *prefix is set for ReplacePrefixMatch. */
static int path_modifier(struct rctx *c, const struct veil_conf_node *m,
                         const struct veil_conf_path *path, bool *prefix)
{
    static const char *const known[] = {"type", "replaceFullPath", "replacePrefixMatch", NULL};
    static const char *const types[] = {"ReplaceFullPath", "ReplacePrefixMatch", NULL};
    const char *type = NULL, *v = NULL;
    if (veil_res__known_fields(c->p, m, path, known) < 0 ||
        veil_conf_req_str(m, path, "type", &type, c->p->err) < 0 ||
        enum_field(c, m, path, "type", types, "path modifier type", &type) < 0)
        return -EINVAL;
    *prefix = strcmp(type, "ReplacePrefixMatch") == 0;
    const char *want = *prefix ? "replacePrefixMatch" : "replaceFullPath";
    const char *other = *prefix ? "replaceFullPath" : "replacePrefixMatch";
    if (veil_conf_map_get(m, other) != NULL)
        return ERR(c, veil_conf_map_get(m, other), VEIL_CONF_KEY(path, other),
                   "must not be set when type is %s", type);
    if (veil_conf_req_str(m, path, want, &v, c->p->err) < 0)
        return -EINVAL;
    if (strlen(v) > MAX_PATH_VALUE)
        return ERR(c, veil_conf_map_get(m, want), VEIL_CONF_KEY(path, want),
                   "longer than %d characters", MAX_PATH_VALUE);
    return 0;
}

static int url_rewrite(struct rctx *c, const struct veil_conf_node *m,
                       const struct veil_conf_path *path, bool *prefix)
{
    static const char *const known[] = {"hostname", "path", NULL};
    const struct veil_conf_node *pm = NULL;
    if (veil_res__known_fields(c->p, m, path, known) < 0 ||
        hostname_field(c, m, path, "hostname") < 0 ||
        veil_conf_get_map(m, path, "path", &pm, c->p->err) < 0)
        return -EINVAL;
    return pm != NULL ? path_modifier(c, pm, VEIL_CONF_KEY(path, "path"), prefix) : 0;
}

static int request_redirect(struct rctx *c, const struct veil_conf_node *m,
                            const struct veil_conf_path *path, bool *prefix)
{
    static const char *const known[] = {"scheme", "hostname", "path", "port", "statusCode", NULL};
    static const char *const schemes[] = {"http", "https", NULL};
    const char *scheme = "http";
    const struct veil_conf_node *pm = NULL, *pn = veil_conf_map_get(m, "port");
    int64_t code = 302;
    uint16_t port;
    if (veil_res__known_fields(c->p, m, path, known) < 0 ||
        enum_field(c, m, path, "scheme", schemes, "scheme", &scheme) < 0 ||
        hostname_field(c, m, path, "hostname") < 0 ||
        veil_conf_get_map(m, path, "path", &pm, c->p->err) < 0 ||
        veil_conf_get_int(m, path, "statusCode", &code, c->p->err) < 0)
        return -EINVAL;
    if (pn != NULL && pn->kind != VEIL_CONF_NULL &&
        veil_res__port_value(c->p, pn, VEIL_CONF_KEY(path, "port"), false, &port) < 0)
        return -EINVAL;
    if (code != 301 && code != 302 && code != 303 && code != 307 && code != 308)
        return ERR(c, veil_conf_map_get(m, "statusCode"), VEIL_CONF_KEY(path, "statusCode"),
                   "%lld is not a redirect status (301, 302, 303, 307 or 308)", (long long)code);
    return pm != NULL ? path_modifier(c, pm, VEIL_CONF_KEY(path, "path"), prefix) : 0;
}

static int request_mirror(struct rctx *c, const struct veil_conf_node *m,
                          const struct veil_conf_path *path)
{
    static const char *const known[] = {"backendRef", "percent", "fraction", NULL};
    static const char *const fknown[] = {"numerator", "denominator", NULL};
    const struct veil_conf_node *br, *fr = NULL;
    const struct veil_conf_path *fp = VEIL_CONF_KEY(path, "fraction");
    int64_t pct, num, den = 100;
    if (veil_res__known_fields(c->p, m, path, known) < 0 ||
        veil_conf_req_map(m, path, "backendRef", &br, c->p->err) < 0 ||
        parse_backend(c, br, VEIL_CONF_KEY(path, "backendRef"), false) < 0 ||
        veil_conf_get_int_range(m, path, "percent", 0, 100, &pct, c->p->err) < 0 ||
        veil_conf_get_map(m, path, "fraction", &fr, c->p->err) < 0)
        return -EINVAL;
    if (fr == NULL)
        return 0;
    if (veil_conf_map_get(m, "percent") != NULL)
        return ERR(c, fr, fp, "percent and fraction must not both be set");
    if (veil_res__known_fields(c->p, fr, fp, fknown) < 0 ||
        veil_conf_req_int_range(fr, fp, "numerator", 0, INT32_MAX, &num, c->p->err) < 0 ||
        veil_conf_get_int_range(fr, fp, "denominator", 1, INT32_MAX, &den, c->p->err) < 0)
        return -EINVAL;
    if (num > den)
        return ERR(c, veil_conf_map_get(fr, "numerator"), VEIL_CONF_KEY(fp, "numerator"),
                   "must not be greater than the denominator (%lld)", (long long)den);
    return 0;
}

/* What one list of filters holds, for the rules' CEL checks. */
struct filter_seen {
    unsigned types;      /* bit per filter type seen */
    bool prefix_rewrite; /* a ReplacePrefixMatch in URLRewrite or RequestRedirect */
    const struct veil_conf_node *prefix_at;
};

enum { F_REQ_HDR, F_RESP_HDR, F_MIRROR, F_REDIRECT, F_REWRITE, F_EXT, F_NTYPES };

static const struct {
    const char *type, *field;
    bool grpc, repeat;
} filter_types[F_NTYPES] = {
    [F_REQ_HDR] = {"RequestHeaderModifier", "requestHeaderModifier", true, false},
    [F_RESP_HDR] = {"ResponseHeaderModifier", "responseHeaderModifier", true, false},
    [F_MIRROR] = {"RequestMirror", "requestMirror", true, true},
    [F_REDIRECT] = {"RequestRedirect", "requestRedirect", false, false},
    [F_REWRITE] = {"URLRewrite", "urlRewrite", false, false},
    [F_EXT] = {"ExtensionRef", "extensionRef", true, true},
};

static int filter_type(struct rctx *c, const struct veil_conf_node *m,
                       const struct veil_conf_path *path, int *out)
{
    const char *allowed[F_NTYPES + 1], *type;
    size_t n = 0;
    for (int t = 0; t < F_NTYPES; t++)
        if (!c->grpc || filter_types[t].grpc)
            allowed[n++] = filter_types[t].type;
    allowed[n] = NULL;
    if (veil_conf_req_str(m, path, "type", &type, c->p->err) < 0 ||
        enum_field(c, m, path, "type", allowed, "filter type", &type) < 0)
        return -EINVAL;
    for (int t = 0; t < F_NTYPES; t++)
        if (strcmp(filter_types[t].type, type) == 0)
            *out = t;
    if (*out == F_EXT)
        return ERR(c, veil_conf_map_get(m, "type"), VEIL_CONF_KEY(path, "type"),
                   "filter type ExtensionRef is not supported");
    return 0;
}

static int parse_filter(struct rctx *c, const struct veil_conf_node *m,
                        const struct veil_conf_path *path, struct filter_seen *seen)
{
    const char *known[F_NTYPES + 2];
    size_t n = 0;
    int t = 0;
    known[n++] = "type";
    for (int i = 0; i < F_NTYPES; i++)
        if (!c->grpc || filter_types[i].grpc)
            known[n++] = filter_types[i].field;
    known[n] = NULL;
    if (veil_conf_expect(m, path, VEIL_CONF_MAP, c->p->err) < 0 ||
        filter_type(c, m, path, &t) < 0 || veil_res__known_fields(c->p, m, path, known) < 0)
        return -EINVAL;
    for (size_t i = 1; i < n; i++)
        if (strcmp(known[i], filter_types[t].field) != 0 && veil_conf_map_get(m, known[i]))
            return ERR(c, veil_conf_map_get(m, known[i]), VEIL_CONF_KEY(path, known[i]),
                       "must not be set when type is %s", filter_types[t].type);
    const char *field = filter_types[t].field;
    const struct veil_conf_path *cp = VEIL_CONF_KEY(path, field);
    const struct veil_conf_node *cfg;
    if (veil_conf_map_get(m, field) == NULL)
        return ERR(c, m, cp, "required when type is %s", filter_types[t].type);
    if (veil_conf_req_map(m, path, field, &cfg, c->p->err) < 0)
        return -EINVAL;
    if ((seen->types & (1u << t)) && !filter_types[t].repeat)
        return ERR(c, m, VEIL_CONF_KEY(path, "type"), "only one %s filter is allowed in a list",
                   filter_types[t].type);
    seen->types |= 1u << t;
    bool prefix = false;
    int rc;
    switch (t) {
    case F_REQ_HDR:
    case F_RESP_HDR:
        rc = header_modifier(c, cfg, cp);
        break;
    case F_MIRROR:
        rc = request_mirror(c, cfg, cp);
        break;
    case F_REDIRECT:
        rc = request_redirect(c, cfg, cp, &prefix);
        break;
    default:
        rc = url_rewrite(c, cfg, cp, &prefix);
        break;
    }
    if (rc == 0 && prefix && !seen->prefix_rewrite) {
        seen->prefix_rewrite = true;
        seen->prefix_at = m;
    }
    if (rc == 0 && (seen->types & (1u << F_REDIRECT)) && (seen->types & (1u << F_REWRITE)))
        return ERR(c, m, path, "RequestRedirect and URLRewrite must not both be used");
    return rc;
}

static int parse_filters(struct rctx *c, const struct veil_conf_node *m,
                         const struct veil_conf_path *path, struct filter_seen *seen)
{
    const struct veil_conf_node *seq;
    const struct veil_conf_path *lp = VEIL_CONF_KEY(path, "filters");
    *seen = (struct filter_seen){0};
    if (seq_field(c, m, path, "filters", MAX_LIST, &seq) < 0)
        return -EINVAL;
    for (size_t i = 0; i < veil_conf_len(seq); i++)
        if (parse_filter(c, veil_conf_seq_at(seq, i), VEIL_CONF_IDX(lp, i), seen) < 0)
            return -EINVAL;
    return 0;
}

/* ---- matches ------------------------------------------------------------------- */

/* headers[] / queryParams[]: {type Exact|RegularExpression, name, value}. */
static int value_matches(struct rctx *c, const struct veil_conf_node *m,
                         const struct veil_conf_path *path, const char *key, size_t max_value)
{
    static const char *const known[] = {"type", "name", "value", NULL};
    static const char *const types[] = {"Exact", "RegularExpression", NULL};
    const struct veil_conf_node *seq;
    const struct veil_conf_path *lp = VEIL_CONF_KEY(path, key);
    if (seq_field(c, m, path, key, MAX_LIST, &seq) < 0)
        return -EINVAL;
    for (size_t i = 0; i < veil_conf_len(seq); i++) {
        const struct veil_conf_node *h = veil_conf_seq_at(seq, i);
        const struct veil_conf_path *ip = VEIL_CONF_IDX(lp, i);
        const char *type = "Exact", *name, *value;
        if (map_item(c, h, ip, known) < 0 ||
            enum_field(c, h, ip, "type", types, "match type", &type) < 0 ||
            header_name_field(c, h, ip, "name", &name) < 0 ||
            str_field(c, h, ip, "value", true, max_value, &value) < 0)
            return -EINVAL;
        if (strcmp(type, "RegularExpression") == 0 &&
            regex_check(c, veil_conf_map_get(h, "value"), VEIL_CONF_KEY(ip, "value"), value) < 0)
            return -EINVAL;
    }
    return 0;
}

/* An Exact or PathPrefix value: absolute, no "//", "/./", "/../", "%2f", "#". */
static const char *path_value_problem(const char *v)
{
    static const char *const bad[] = {"//", "/./", "/../", "%2f", "%2F", "#", NULL};
    size_t n = strlen(v);
    if (v[0] != '/')
        return "must start with \"/\"";
    for (size_t i = 0; bad[i] != NULL; i++)
        if (strstr(v, bad[i]) != NULL)
            return "must not contain \"//\", \"/./\", \"/../\", \"%2f\" or \"#\"";
    if ((n >= 2 && strcmp(v + n - 2, "/.") == 0) || (n >= 3 && strcmp(v + n - 3, "/..") == 0))
        return "must not end with \"/.\" or \"/..\"";
    return NULL;
}

static int path_match(struct rctx *c, const struct veil_conf_node *m,
                      const struct veil_conf_path *path, bool *prefix)
{
    static const char *const known[] = {"type", "value", NULL};
    static const char *const types[] = {"Exact", "PathPrefix", "RegularExpression", NULL};
    const char *type = "PathPrefix", *value = "/";
    const struct veil_conf_path *vp = VEIL_CONF_KEY(path, "value");
    if (veil_res__known_fields(c->p, m, path, known) < 0 ||
        enum_field(c, m, path, "type", types, "path match type", &type) < 0 ||
        veil_conf_get_str(m, path, "value", &value, c->p->err) < 0)
        return -EINVAL;
    const struct veil_conf_node *vn = veil_conf_map_get(m, "value");
    *prefix = strcmp(type, "PathPrefix") == 0;
    if (strlen(value) > MAX_PATH_VALUE)
        return ERR(c, vn, vp, "longer than %d characters", MAX_PATH_VALUE);
    if (strcmp(type, "RegularExpression") == 0)
        return regex_check(c, vn, vp, value);
    const char *why = path_value_problem(value);
    return why != NULL ? ERR(c, vn, vp, "\"%s\" %s for type %s", value, why, type) : 0;
}

static int http_match(struct rctx *c, const struct veil_conf_node *m,
                      const struct veil_conf_path *path, bool *prefix)
{
    static const char *const known[] = {"path", "headers", "queryParams", "method", NULL};
    static const char *const methods[] = {"GET",     "HEAD",    "POST",  "PUT",   "DELETE",
                                          "CONNECT", "OPTIONS", "TRACE", "PATCH", NULL};
    const struct veil_conf_node *pm = NULL;
    const char *method = "GET";
    *prefix = true; /* the default path match is PathPrefix "/" */
    if (map_item(c, m, path, known) < 0 || veil_conf_get_map(m, path, "path", &pm, c->p->err) < 0 ||
        (pm != NULL && path_match(c, pm, VEIL_CONF_KEY(path, "path"), prefix) < 0) ||
        value_matches(c, m, path, "headers", MAX_VALUE) < 0 ||
        value_matches(c, m, path, "queryParams", MAX_PATH_VALUE) < 0 ||
        enum_field(c, m, path, "method", methods, "method", &method) < 0)
        return -EINVAL;
    return 0;
}

/* GRPCMethodMatch: service and/or method, Exact (names) or RegularExpression. */
static bool grpc_name(const char *s, bool dotted)
{
    if (dotted && *s == '.')
        s++;
    bool start = true;
    for (; *s != '\0'; s++) {
        char ch = (char)tolower((unsigned char)*s);
        if (dotted && ch == '.' && !start) {
            start = true;
            continue;
        }
        if (!(ch == '_' || (ch >= 'a' && ch <= 'z') || (!start && ch >= '0' && ch <= '9')))
            return false;
        start = false;
    }
    return !start;
}

static int grpc_method(struct rctx *c, const struct veil_conf_node *m,
                       const struct veil_conf_path *path)
{
    static const char *const known[] = {"type", "service", "method", NULL};
    static const char *const types[] = {"Exact", "RegularExpression", NULL};
    static const char *const keys[] = {"service", "method"};
    const char *type = "Exact", *v[2] = {NULL, NULL};
    if (veil_res__known_fields(c->p, m, path, known) < 0 ||
        enum_field(c, m, path, "type", types, "method match type", &type) < 0 ||
        str_field(c, m, path, "service", false, MAX_PATH_VALUE, &v[0]) < 0 ||
        str_field(c, m, path, "method", false, MAX_PATH_VALUE, &v[1]) < 0)
        return -EINVAL;
    if (v[0] == NULL && v[1] == NULL)
        return ERR(c, m, path, "one or both of service and method must be given");
    bool regex = strcmp(type, "RegularExpression") == 0;
    for (int i = 0; i < 2; i++) {
        const struct veil_conf_node *at = veil_conf_map_get(m, keys[i]);
        const struct veil_conf_path *kp = VEIL_CONF_KEY(path, keys[i]);
        if (v[i] == NULL)
            continue;
        if (regex && regex_check(c, at, kp, v[i]) < 0)
            return -EINVAL;
        if (!regex && !grpc_name(v[i], i == 0))
            return ERR(c, at, kp, "\"%s\" is not a valid gRPC %s name", v[i], keys[i]);
    }
    return 0;
}

static int grpc_match(struct rctx *c, const struct veil_conf_node *m,
                      const struct veil_conf_path *path)
{
    static const char *const known[] = {"method", "headers", NULL};
    const struct veil_conf_node *mm = NULL;
    if (map_item(c, m, path, known) < 0 ||
        veil_conf_get_map(m, path, "method", &mm, c->p->err) < 0 ||
        (mm != NULL && grpc_method(c, mm, VEIL_CONF_KEY(path, "method")) < 0) ||
        value_matches(c, m, path, "headers", MAX_VALUE) < 0)
        return -EINVAL;
    return 0;
}

/* ---- rules ---------------------------------------------------------------------- */

static int parse_matches(struct rctx *c, const struct veil_conf_node *rule,
                         const struct veil_conf_path *path, bool *one_prefix)
{
    const struct veil_conf_node *seq;
    const struct veil_conf_path *lp = VEIL_CONF_KEY(path, "matches");
    bool prefix = true;
    if (seq_field(c, rule, path, "matches", MAX_MATCHES, &seq) < 0)
        return -EINVAL;
    size_t n = veil_conf_len(seq);
    c->all_matches += n;
    if (c->all_matches > MAX_ALL_MATCHES)
        return ERR(c, seq, lp, "a route may have at most %d matches in all its rules",
                   MAX_ALL_MATCHES);
    for (size_t i = 0; i < n; i++) {
        const struct veil_conf_node *m = veil_conf_seq_at(seq, i);
        int rc = c->grpc ? grpc_match(c, m, VEIL_CONF_IDX(lp, i))
                         : http_match(c, m, VEIL_CONF_IDX(lp, i), &prefix);
        if (rc < 0)
            return rc;
    }
    *one_prefix = n == 0 || (n == 1 && prefix);
    return 0;
}

static int parse_backends(struct rctx *c, const struct veil_conf_node *rule,
                          const struct veil_conf_path *path)
{
    const struct veil_conf_node *seq;
    const struct veil_conf_path *lp = VEIL_CONF_KEY(path, "backendRefs");
    if (seq_field(c, rule, path, "backendRefs", MAX_LIST, &seq) < 0)
        return -EINVAL;
    for (size_t i = 0; i < veil_conf_len(seq); i++) {
        const struct veil_conf_node *b = veil_conf_seq_at(seq, i);
        const struct veil_conf_path *ip = VEIL_CONF_IDX(lp, i);
        struct filter_seen seen;
        if (parse_backend(c, b, ip, true) < 0 || parse_filters(c, b, ip, &seen) < 0)
            return -EINVAL;
    }
    return 0;
}

static int parse_timeouts(struct rctx *c, const struct veil_conf_node *rule,
                          const struct veil_conf_path *path)
{
    static const char *const known[] = {"request", "backendRequest", NULL};
    const struct veil_conf_node *t = NULL;
    const struct veil_conf_path *tp = VEIL_CONF_KEY(path, "timeouts");
    unsigned long long req = 0, back = 0;
    bool has_req, has_back;
    if (veil_conf_get_map(rule, path, "timeouts", &t, c->p->err) < 0)
        return -EINVAL;
    if (t == NULL)
        return 0;
    if (veil_res__known_fields(c->p, t, tp, known) < 0 ||
        duration_field(c, t, tp, "request", &has_req, &req) < 0 ||
        duration_field(c, t, tp, "backendRequest", &has_back, &back) < 0)
        return -EINVAL;
    if (has_req && has_back && req != 0 && back > req)
        return ERR(c, veil_conf_map_get(t, "backendRequest"), VEIL_CONF_KEY(tp, "backendRequest"),
                   "must not be longer than request (%s)",
                   veil_conf_str(veil_conf_map_get(t, "request")));
    return 0;
}

static int parse_retry(struct rctx *c, const struct veil_conf_node *rule,
                       const struct veil_conf_path *path)
{
    static const char *const known[] = {"codes", "attempts", "backoff", NULL};
    const struct veil_conf_node *r = NULL, *codes;
    const struct veil_conf_path *rp = VEIL_CONF_KEY(path, "retry");
    int64_t attempts;
    unsigned long long backoff;
    bool has;
    if (veil_conf_get_map(rule, path, "retry", &r, c->p->err) < 0)
        return -EINVAL;
    if (r == NULL)
        return 0;
    if (veil_res__known_fields(c->p, r, rp, known) < 0 ||
        veil_conf_get_int_range(r, rp, "attempts", 0, INT32_MAX, &attempts, c->p->err) < 0 ||
        duration_field(c, r, rp, "backoff", &has, &backoff) < 0 ||
        seq_field(c, r, rp, "codes", 200, &codes) < 0)
        return -EINVAL;
    const struct veil_conf_path *cp = VEIL_CONF_KEY(rp, "codes");
    for (size_t i = 0; i < veil_conf_len(codes); i++) {
        const struct veil_conf_node *it = veil_conf_seq_at(codes, i);
        if (veil_conf_expect(it, VEIL_CONF_IDX(cp, i), VEIL_CONF_INT, c->p->err) < 0)
            return -EINVAL;
        if (it->v.i < 400 || it->v.i > 599)
            return ERR(c, it, VEIL_CONF_IDX(cp, i), "%lld is not a retryable status (400..599)",
                       (long long)it->v.i);
    }
    return 0;
}

static int parse_rule(struct rctx *c, const struct veil_conf_node *rule,
                      const struct veil_conf_path *path)
{
    static const char *const known_http[] = {
        "name", "matches", "filters", "backendRefs", "timeouts", "retry", "sessionPersistence",
        NULL};
    static const char *const known_grpc[] = {
        "name", "matches", "filters", "backendRefs", "sessionPersistence", NULL};
    const char *name = NULL;
    bool one_prefix = true;
    struct filter_seen seen;
    if (map_item(c, rule, path, c->grpc ? known_grpc : known_http) < 0)
        return -EINVAL;
    if (veil_conf_map_get(rule, "sessionPersistence") != NULL)
        return ERR(c, veil_conf_map_get(rule, "sessionPersistence"),
                   VEIL_CONF_KEY(path, "sessionPersistence"),
                   "session persistence is not supported");
    if (str_field(c, rule, path, "name", false, MAX_NAME, &name) < 0)
        return -EINVAL;
    if (name != NULL && !veil_res__dns_subdomain(name, strlen(name)))
        return ERR(c, veil_conf_map_get(rule, "name"), VEIL_CONF_KEY(path, "name"),
                   "\"%s\" is not a valid rule name", name);
    if (parse_matches(c, rule, path, &one_prefix) < 0 || parse_filters(c, rule, path, &seen) < 0 ||
        parse_backends(c, rule, path) < 0)
        return -EINVAL;
    if (seen.prefix_rewrite && !one_prefix)
        return ERR(c, seen.prefix_at, VEIL_CONF_KEY(path, "filters"),
                   "ReplacePrefixMatch needs exactly one match, of path type PathPrefix");
    if (!c->grpc && (parse_timeouts(c, rule, path) < 0 || parse_retry(c, rule, path) < 0))
        return -EINVAL;
    return 0;
}

/* ---- the spec ------------------------------------------------------------------- */

static int parse_hostnames(struct rctx *c, const struct veil_conf_node *spec,
                           const struct veil_conf_path *path)
{
    const struct veil_conf_node *seq;
    const struct veil_conf_path *lp = VEIL_CONF_KEY(path, "hostnames");
    if (seq_field(c, spec, path, "hostnames", MAX_HOSTNAMES, &seq) < 0)
        return -EINVAL;
    for (size_t i = 0; i < veil_conf_len(seq); i++) {
        const struct veil_conf_node *h = veil_conf_seq_at(seq, i);
        if (veil_conf_expect(h, VEIL_CONF_IDX(lp, i), VEIL_CONF_STR, c->p->err) < 0 ||
            hostname_check(c, h, VEIL_CONF_IDX(lp, i), h->v.str.ptr, true) < 0)
            return -EINVAL;
    }
    return 0;
}

/* Every backendRef and RequestMirror of the spec: room for the references. */
static size_t count_backends(const struct veil_conf_node *rules)
{
    size_t n = 0;
    for (size_t i = 0; i < veil_conf_len(rules); i++) {
        const struct veil_conf_node *r = veil_conf_seq_at(rules, i);
        const struct veil_conf_node *b = veil_conf_map_get(r, "backendRefs");
        n += veil_conf_len(b) + veil_conf_len(veil_conf_map_get(r, "filters"));
        for (size_t j = 0; j < veil_conf_len(b); j++)
            n += veil_conf_len(veil_conf_map_get(veil_conf_seq_at(b, j), "filters"));
    }
    return n;
}

static int route_alloc(struct rctx *c, const struct veil_conf_node *parents,
                       const struct veil_conf_node *rules)
{
    struct veil_arena *a = &c->p->r->_arena;
    size_t np = veil_conf_len(parents);
    c->cap = count_backends(rules);
    if (np > 0 && (c->parents = veil_arena_zalloc(a, np * sizeof(*c->parents))) == NULL)
        return veil_res__oom(c->p);
    if (c->cap > 0 && (c->backends = veil_arena_zalloc(a, c->cap * sizeof(*c->backends))) == NULL)
        return veil_res__oom(c->p);
    return 0;
}

int veil_res__parse_route(struct veil_res__rp *p, const struct veil_conf_node *doc, bool grpc)
{
    static const char *const known[] = {"parentRefs", "hostnames", "rules", NULL};
    struct rctx c = {.p = p, .grpc = grpc};
    const struct veil_conf_path *sp = VEIL_CONF_KEY(NULL, "spec");
    const struct veil_conf_node *spec, *parents, *rules;
    if (veil_conf_req_map(doc, NULL, "spec", &spec, p->err) < 0 ||
        veil_res__known_fields(p, spec, sp, known) < 0 ||
        seq_field(&c, spec, sp, "parentRefs", MAX_PARENTS, &parents) < 0 ||
        seq_field(&c, spec, sp, "rules", MAX_RULES, &rules) < 0)
        return -EINVAL;
    int rc = route_alloc(&c, parents, rules);
    if (rc < 0)
        return rc;
    const struct veil_conf_path *pp = VEIL_CONF_KEY(sp, "parentRefs");
    for (size_t i = 0; i < veil_conf_len(parents); i++)
        if ((rc = parse_parent(&c, veil_conf_seq_at(parents, i), VEIL_CONF_IDX(pp, i))) < 0)
            return rc;
    if ((rc = parse_hostnames(&c, spec, sp)) < 0)
        return rc;
    const struct veil_conf_path *rp = VEIL_CONF_KEY(sp, "rules");
    for (size_t i = 0; i < veil_conf_len(rules); i++)
        if ((rc = parse_rule(&c, veil_conf_seq_at(rules, i), VEIL_CONF_IDX(rp, i))) < 0)
            return rc;
    struct veil_res_route *r = &p->r->u.route;
    r->parents = c.parents;
    r->nparents = c.nparents;
    r->backends = c.backends;
    r->nbackends = c.nbackends;
    r->nrules = veil_conf_len(rules);
    return 0;
}
