/* Authorization (L4 at the node proxy, L7 at the waypoint) and peer
 * authentication; see authz.h and docs/policy.md. */
#include "node/authz.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/alloc.h"

#define SPIFFE       "spiffe://"
#define PATH_MAX_LEN 192
#define GW_GROUP     "gateway.networking.k8s.io"
#define HDR_KEY      "request.headers["

enum action { ACT_ALLOW, ACT_DENY, ACT_AUDIT, ACT_IGNORED };

/* PeerAuthentication modes as written; UNSET inherits. */
enum pmode { PM_UNSET, PM_PERMISSIVE, PM_STRICT, PM_DISABLE };

struct pol {
    struct pol *next;
    char *ns, *name;
    json_t *spec;         /* our deep copy, checked */
    const json_t *labels; /* spec.selector.matchLabels, or NULL */
    bool has_selector;
    /* spec.targetRefs (a list) or spec.targetRef (a map), non-empty: the
     * policy is the waypoint's, not the node proxy's. */
    const json_t *targets;
    enum action action;
    enum pmode mode; /* PeerAuthentication only */
};

struct veil_authz {
    char *root_ns;
    struct pol *authz, *peer; /* in order of first set: the oldest first */
    size_t nauthz, npeer;
    uint64_t gen;
};

/* A CIDR, parsed. */
struct cidr {
    int family;
    uint8_t addr[16];
    unsigned bits;
};

/* Set-time checking context. */
struct vctx {
    char *err;
    size_t cap;
    const char *ns, *root_ns; /* the policy's namespace; the root namespace */
    bool l7;                  /* saw an L7-only field */
    char l7_at[PATH_MAX_LEN];
    bool wp_unsup; /* saw a field the waypoint does not support either */
    char wp_at[PATH_MAX_LEN];
    bool dead_target; /* a targetRef that binds nothing */
    char target_at[PATH_MAX_LEN];
};

static int verr(struct vctx *v, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int verr(struct vctx *v, const char *path, const char *fmt, ...)
{
    if (v->cap > 0) {
        int n = snprintf(v->err, v->cap, "%.*s: ", PATH_MAX_LEN, path);
        if (n >= 0 && (size_t)n < v->cap) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(v->err + n, v->cap - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return -EINVAL;
}

/* An accepted spec with a note for status: the note goes to err, returns 1. */
static int note(struct vctx *v, const char *path, const char *msg)
{
    verr(v, path, "%s", msg);
    return 1;
}

/* snprintf for paths: a path cut short is still a fine error message. */
static void pathf(char *out, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void pathf(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, cap, fmt, ap);
    va_end(ap);
}

static void saw_l7(struct vctx *v, const char *path)
{
    if (!v->l7)
        pathf(v->l7_at, sizeof(v->l7_at), "%s", path);
    v->l7 = true;
}

static void saw_wp_unsup(struct vctx *v, const char *path)
{
    if (!v->wp_unsup)
        pathf(v->wp_at, sizeof(v->wp_at), "%s", path);
    v->wp_unsup = true;
}

/* ---- values ---- */

static int parse_cidr(const char *s, struct cidr *c)
{
    char buf[INET6_ADDRSTRLEN + 8];
    const char *slash = strchr(s, '/');
    size_t n = slash != NULL ? (size_t)(slash - s) : strlen(s);
    if (n == 0 || n >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, s, n);
    buf[n] = '\0';
    memset(c, 0, sizeof(*c));
    if (inet_pton(AF_INET, buf, c->addr) == 1) {
        c->family = AF_INET;
        c->bits = 32;
    } else if (inet_pton(AF_INET6, buf, c->addr) == 1) {
        c->family = AF_INET6;
        c->bits = 128;
    } else {
        return -EINVAL;
    }
    if (slash != NULL) {
        char *end;
        const char *d = slash + 1;
        if (*d < '0' || *d > '9' || strlen(d) > 3)
            return -EINVAL;
        unsigned long b = strtoul(d, &end, 10);
        if (*end != '\0' || b > c->bits)
            return -EINVAL;
        c->bits = (unsigned)b;
    }
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (c->family == AF_INET6 && c->bits >= 96 && memcmp(c->addr, mapped, 12) == 0) {
        memmove(c->addr, c->addr + 12, 4);
        c->family = AF_INET;
        c->bits -= 96;
    }
    return 0;
}

/* The request's address in the same form as a parsed CIDR (mapped v6 -> v4). */
static bool ip_bytes(const struct veil_authz_ip *ip, int *family, uint8_t out[16])
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (ip->family == AF_INET) {
        memcpy(out, &ip->u.v4, 4);
        *family = AF_INET;
        return true;
    }
    if (ip->family == AF_INET6) {
        if (memcmp(ip->u.v6.s6_addr, mapped, 12) == 0) {
            memcpy(out, ip->u.v6.s6_addr + 12, 4);
            *family = AF_INET;
        } else {
            memcpy(out, ip->u.v6.s6_addr, 16);
            *family = AF_INET6;
        }
        return true;
    }
    return false;
}

static bool cidr_contains(const struct cidr *c, const struct veil_authz_ip *ip)
{
    uint8_t a[16];
    int fam;
    if (!ip_bytes(ip, &fam, a) || fam != c->family)
        return false;
    unsigned full = c->bits / 8, rest = c->bits % 8;
    if (memcmp(a, c->addr, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[full] & mask) == (c->addr[full] & mask);
}

static int port_str(const char *s)
{
    if (s == NULL || *s < '0' || *s > '9' || strlen(s) > 5)
        return -1;
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    return *end == '\0' && v >= 1 && v <= 65535 ? (int)v : -1;
}

/* A port as Istio writes it: a decimal string or an integer, 1..65535. */
static int port_of(const json_t *j)
{
    if (json_is_integer(j)) {
        json_int_t v = json_integer_value(j);
        return v >= 1 && v <= 65535 ? (int)v : -1;
    }
    return port_str(json_string_value(j));
}

/* Istio's string match: "*" any present value, "p*" prefix, "*s" suffix,
 * else exact. NULL (unauthenticated) matches nothing. */
static bool str_match(const char *pat, const char *v)
{
    if (v == NULL)
        return false;
    size_t pl = strlen(pat), vl = strlen(v);
    if (strcmp(pat, "*") == 0)
        return true;
    if (pl > 0 && pat[pl - 1] == '*')
        return strncmp(pat, v, pl - 1) == 0;
    if (pat[0] == '*')
        return vl >= pl - 1 && strcmp(v + vl - (pl - 1), pat + 1) == 0;
    return strcmp(pat, v) == 0;
}

/* "request.headers[NAME]": 0 and NAME into *name (may be NULL), else -EINVAL. */
static int header_key(const char *key, struct veil_authz_str *name)
{
    size_t kl = strlen(HDR_KEY), n;
    if (key == NULL || strncmp(key, HDR_KEY, kl) != 0)
        return -EINVAL;
    n = strcspn(key + kl, "[]");
    if (n == 0 || strcmp(key + kl + n, "]") != 0)
        return -EINVAL;
    if (name != NULL)
        *name = (struct veil_authz_str){key + kl, n};
    return 0;
}

/* Istio's path templates ({*}, {**}), which veil does not evaluate. */
static bool has_template(const json_t *list)
{
    const json_t *e;
    size_t i;
    json_array_foreach(list, i, e)
    {
        const char *s = json_string_value(e);
        if (s != NULL && (strstr(s, "{*}") != NULL || strstr(s, "{**}") != NULL))
            return true;
    }
    return false;
}

static const char *strip_spiffe(const char *p)
{
    if (p != NULL && strncmp(p, SPIFFE, strlen(SPIFFE)) == 0)
        return p + strlen(SPIFFE);
    return p;
}

int veil_authz_principal_ns(const char *principal, char *out, size_t cap)
{
    const char *p = strip_spiffe(principal);
    const char *ns = p != NULL ? strstr(p, "/ns/") : NULL;
    if (ns == NULL)
        return -EINVAL;
    ns += 4;
    size_t n = strcspn(ns, "/");
    if (n == 0 || ns[n] != '/')
        return -EINVAL;
    if (n + 1 > cap)
        return -ENOBUFS;
    memcpy(out, ns, n);
    out[n] = '\0';
    return 0;
}

/* ---- checking a spec ---- */

static bool in_list(const char *k, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(k, *list) == 0)
            return true;
    return false;
}

static int known_fields(struct vctx *v, const json_t *obj, const char *path,
                        const char *const *known)
{
    const char *k;
    const json_t *val;
    json_object_foreach((json_t *)obj, k, val)
    {
        (void)val;
        if (!in_list(k, known)) {
            char p[PATH_MAX_LEN];
            pathf(p, sizeof(p), "%s.%s", path, k);
            return verr(v, p, "unknown field");
        }
    }
    return 0;
}

enum vkind { V_STR, V_NONEMPTY, V_CIDR, V_PORT };

/* obj[key], if present, must be a list of `kind` values. */
static int check_list(struct vctx *v, const json_t *obj, const char *path, const char *key,
                      enum vkind kind)
{
    const json_t *l = json_object_get(obj, key), *e;
    char p[PATH_MAX_LEN];
    size_t i;
    if (l == NULL || json_is_null(l))
        return 0;
    pathf(p, sizeof(p), "%s.%s", path, key);
    if (!json_is_array(l))
        return verr(v, p, "expected a list");
    json_array_foreach(l, i, e)
    {
        char ep[PATH_MAX_LEN + 16];
        struct cidr c;
        pathf(ep, sizeof(ep), "%s[%zu]", p, i);
        if (kind == V_PORT) {
            if (port_of(e) < 0)
                return verr(v, ep, "not a valid port (1..65535)");
            continue;
        }
        const char *s = json_string_value(e);
        if (s == NULL)
            return verr(v, ep, "expected a string");
        if (kind == V_NONEMPTY && *s == '\0')
            return verr(v, ep, "must not be empty");
        if (kind == V_CIDR && parse_cidr(s, &c) < 0)
            return verr(v, ep, "\"%s\" is not a valid IP address or CIDR", s);
    }
    return 0;
}

static bool has_items(const json_t *obj, const char *key)
{
    const json_t *l = json_object_get(obj, key);
    return json_is_array(l) && json_array_size(l) > 0;
}

static const char *const source_l7[] = {"requestPrincipals", "notRequestPrincipals", NULL};
static const char *const op_l7[] = {"hosts", "notHosts", "methods", "notMethods",
                                    "paths", "notPaths", NULL};

static int check_source(struct vctx *v, const json_t *s, const char *path)
{
    static const char *const known[] = {"principals",
                                        "notPrincipals",
                                        "requestPrincipals",
                                        "notRequestPrincipals",
                                        "namespaces",
                                        "notNamespaces",
                                        "ipBlocks",
                                        "notIpBlocks",
                                        "remoteIpBlocks",
                                        "notRemoteIpBlocks",
                                        NULL};
    if (!json_is_object(s))
        return verr(v, path, "expected a map");
    if (known_fields(v, s, path, known) < 0 ||
        check_list(v, s, path, "principals", V_NONEMPTY) < 0 ||
        check_list(v, s, path, "notPrincipals", V_NONEMPTY) < 0 ||
        check_list(v, s, path, "requestPrincipals", V_NONEMPTY) < 0 ||
        check_list(v, s, path, "notRequestPrincipals", V_NONEMPTY) < 0 ||
        check_list(v, s, path, "namespaces", V_NONEMPTY) < 0 ||
        check_list(v, s, path, "notNamespaces", V_NONEMPTY) < 0 ||
        check_list(v, s, path, "ipBlocks", V_CIDR) < 0 ||
        check_list(v, s, path, "notIpBlocks", V_CIDR) < 0 ||
        check_list(v, s, path, "remoteIpBlocks", V_CIDR) < 0 ||
        check_list(v, s, path, "notRemoteIpBlocks", V_CIDR) < 0)
        return -EINVAL;
    for (const char *const *k = source_l7; *k; k++)
        if (has_items(s, *k)) {
            char p[PATH_MAX_LEN + 32];
            pathf(p, sizeof(p), "%s.%s", path, *k);
            saw_l7(v, p);
            saw_wp_unsup(v, p); /* JWTs: no RequestAuthentication here */
        }
    return 0;
}

static int check_operation(struct vctx *v, const json_t *o, const char *path)
{
    static const char *const known[] = {"ports",      "notPorts", "hosts",    "notHosts", "methods",
                                        "notMethods", "paths",    "notPaths", NULL};
    if (!json_is_object(o))
        return verr(v, path, "expected a map");
    if (known_fields(v, o, path, known) < 0 || check_list(v, o, path, "ports", V_PORT) < 0 ||
        check_list(v, o, path, "notPorts", V_PORT) < 0)
        return -EINVAL;
    for (const char *const *k = op_l7; *k; k++) {
        char p[PATH_MAX_LEN + 32];
        pathf(p, sizeof(p), "%s.%s", path, *k);
        if (check_list(v, o, path, *k, V_STR) < 0)
            return -EINVAL;
        if (has_items(o, *k))
            saw_l7(v, p);
        if ((strcmp(*k, "paths") == 0 || strcmp(*k, "notPaths") == 0) &&
            has_template(json_object_get(o, *k)))
            saw_wp_unsup(v, p);
    }
    return 0;
}

/* The kind of values a condition key takes at L4; V_STR for a key L4 does
 * not know (L7). */
static enum vkind cond_kind(const char *key, bool *l4)
{
    *l4 = true;
    if (key == NULL)
        return V_STR;
    if (strcmp(key, "source.ip") == 0 || strcmp(key, "remote.ip") == 0 ||
        strcmp(key, "destination.ip") == 0)
        return V_CIDR;
    if (strcmp(key, "destination.port") == 0)
        return V_PORT;
    if (strcmp(key, "source.namespace") == 0 || strcmp(key, "source.principal") == 0)
        return V_NONEMPTY;
    *l4 = false;
    return V_STR;
}

static int check_condition(struct vctx *v, const json_t *c, const char *path)
{
    static const char *const known[] = {"key", "values", "notValues", NULL};
    char p[PATH_MAX_LEN + 8];
    bool l4;
    if (!json_is_object(c))
        return verr(v, path, "expected a map");
    if (known_fields(v, c, path, known) < 0)
        return -EINVAL;
    const char *key = json_string_value(json_object_get(c, "key"));
    pathf(p, sizeof(p), "%s.key", path);
    if (key == NULL || *key == '\0')
        return verr(v, p, "required field is missing");
    enum vkind kind = cond_kind(key, &l4);
    if (check_list(v, c, path, "values", kind) < 0 || check_list(v, c, path, "notValues", kind) < 0)
        return -EINVAL;
    if (!has_items(c, "values") && !has_items(c, "notValues"))
        return verr(v, path, "values or notValues required");
    if (!l4)
        saw_l7(v, p);
    if (!l4 && header_key(key, NULL) < 0)
        saw_wp_unsup(v, p);
    return 0;
}

/* rule.from / rule.to: a list of {inner: ...}. */
static int check_clauses(struct vctx *v, const json_t *rule, const char *path, const char *key,
                         const char *inner, int (*one)(struct vctx *, const json_t *, const char *))
{
    const json_t *l = json_object_get(rule, key), *e;
    char p[PATH_MAX_LEN];
    size_t i;
    pathf(p, sizeof(p), "%s.%s", path, key);
    if (l == NULL || json_is_null(l))
        return 0;
    if (!json_is_array(l))
        return verr(v, p, "expected a list");
    json_array_foreach(l, i, e)
    {
        char ep[PATH_MAX_LEN + 16], ip[PATH_MAX_LEN + 48];
        const char *const known[] = {inner, NULL};
        pathf(ep, sizeof(ep), "%s[%zu]", p, i);
        pathf(ip, sizeof(ip), "%s.%s", ep, inner);
        if (!json_is_object(e))
            return verr(v, ep, "expected a map");
        if (known_fields(v, e, ep, known) < 0)
            return -EINVAL;
        const json_t *in = json_object_get(e, inner);
        if (in == NULL)
            return verr(v, ip, "required field is missing");
        if (one(v, in, ip) < 0)
            return -EINVAL;
    }
    return 0;
}

static int check_rule(struct vctx *v, const json_t *rule, const char *path)
{
    static const char *const known[] = {"from", "to", "when", NULL};
    char p[PATH_MAX_LEN];
    const json_t *when, *c;
    size_t i;
    if (!json_is_object(rule))
        return verr(v, path, "expected a map");
    if (known_fields(v, rule, path, known) < 0 ||
        check_clauses(v, rule, path, "from", "source", check_source) < 0 ||
        check_clauses(v, rule, path, "to", "operation", check_operation) < 0)
        return -EINVAL;
    when = json_object_get(rule, "when");
    pathf(p, sizeof(p), "%s.when", path);
    if (when == NULL || json_is_null(when))
        return 0;
    if (!json_is_array(when))
        return verr(v, p, "expected a list");
    json_array_foreach(when, i, c)
    {
        char cp[PATH_MAX_LEN + 16];
        pathf(cp, sizeof(cp), "%s[%zu]", p, i);
        if (check_condition(v, c, cp) < 0)
            return -EINVAL;
    }
    return 0;
}

/* spec.selector: {matchLabels: {k: "v"}}. */
static int check_selector(struct vctx *v, const json_t *spec, bool *has, const json_t **labels)
{
    static const char *const known[] = {"matchLabels", NULL};
    const json_t *sel = json_object_get(spec, "selector"), *val;
    const char *k;
    *has = false;
    *labels = NULL;
    if (sel == NULL || json_is_null(sel))
        return 0;
    if (!json_is_object(sel))
        return verr(v, "spec.selector", "expected a map");
    if (known_fields(v, sel, "spec.selector", known) < 0)
        return -EINVAL;
    *has = true;
    const json_t *ml = json_object_get(sel, "matchLabels");
    if (ml == NULL || json_is_null(ml))
        return 0;
    if (!json_is_object(ml))
        return verr(v, "spec.selector.matchLabels", "expected a map");
    json_object_foreach((json_t *)ml, k, val)
    {
        if (!json_is_string(val)) {
            char p[PATH_MAX_LEN];
            pathf(p, sizeof(p), "spec.selector.matchLabels.%s", k);
            return verr(v, p, "expected a string");
        }
    }
    *labels = ml;
    return 0;
}

/* A targetRef string field: absent is "", else a string. */
static int target_str(struct vctx *v, const json_t *t, const char *path, const char *key,
                      const char **out)
{
    const json_t *j = json_object_get(t, key);
    char p[PATH_MAX_LEN + 16];
    *out = "";
    if (j == NULL || json_is_null(j))
        return 0;
    pathf(p, sizeof(p), "%s.%s", path, key);
    if ((*out = json_string_value(j)) == NULL)
        return verr(v, p, "expected a string");
    return 0;
}

/* What a targetRef binds to (see binds()). */
enum tkind { TK_NONE, TK_GATEWAY, TK_SERVICE, TK_CLASS };

static enum tkind target_kind(const char *group, const char *kind, const char *name)
{
    if (strcmp(group, GW_GROUP) == 0 && strcmp(kind, "Gateway") == 0)
        return TK_GATEWAY;
    if ((group[0] == '\0' || strcmp(group, "core") == 0) && strcmp(kind, "Service") == 0)
        return TK_SERVICE;
    if (strcmp(group, GW_GROUP) == 0 && strcmp(kind, "GatewayClass") == 0 &&
        strcmp(name, VEIL_AUTHZ_WAYPOINT_CLASS) == 0)
        return TK_CLASS;
    return TK_NONE;
}

/* One PolicyTargetReference: {group, kind, name, namespace}. */
static int check_target(struct vctx *v, const json_t *t, const char *path)
{
    static const char *const known[] = {"group", "kind", "name", "namespace", NULL};
    const char *group, *kind, *name, *ns;
    char p[PATH_MAX_LEN + 16];
    if (!json_is_object(t))
        return verr(v, path, "expected a map");
    if (known_fields(v, t, path, known) < 0 || target_str(v, t, path, "group", &group) < 0 ||
        target_str(v, t, path, "kind", &kind) < 0 || target_str(v, t, path, "name", &name) < 0 ||
        target_str(v, t, path, "namespace", &ns) < 0)
        return -EINVAL;
    if (*kind == '\0' || *name == '\0') {
        pathf(p, sizeof(p), "%s.%s", path, *kind == '\0' ? "kind" : "name");
        return verr(v, p, "required field is missing");
    }
    /* Cross-namespace references bind nothing, as in Istio. */
    enum tkind tk = target_kind(group, kind, name);
    bool dead = tk == TK_NONE || (tk != TK_CLASS && *ns != '\0' && strcmp(ns, v->ns) != 0) ||
                (tk == TK_CLASS && strcmp(v->ns, v->root_ns) != 0);
    if (dead && !v->dead_target) {
        pathf(v->target_at, sizeof(v->target_at), "%s", path);
        v->dead_target = true;
    }
    return 0;
}

/* spec.targetRef / spec.targetRefs; sets p->targets when there are some. */
static int check_targets(struct vctx *v, const json_t *spec, struct pol *p)
{
    const json_t *one = json_object_get(spec, "targetRef"),
                 *many = json_object_get(spec, "targetRefs");
    const json_t *e;
    size_t i;
    p->targets = NULL;
    if (one != NULL && json_is_null(one))
        one = NULL;
    if (many != NULL && json_is_null(many))
        many = NULL;
    if (one != NULL && many != NULL)
        return verr(v, "spec.targetRef", "only one of targetRef and targetRefs may be set");
    if (one != NULL) {
        if (check_target(v, one, "spec.targetRef") < 0)
            return -EINVAL;
        p->targets = one;
    } else if (many != NULL) {
        if (!json_is_array(many))
            return verr(v, "spec.targetRefs", "expected a list");
        json_array_foreach(many, i, e)
        {
            char tp[PATH_MAX_LEN];
            pathf(tp, sizeof(tp), "spec.targetRefs[%zu]", i);
            if (check_target(v, e, tp) < 0)
                return -EINVAL;
        }
        p->targets = json_array_size(many) > 0 ? many : NULL; /* [] = not set */
    }
    if (p->targets != NULL && p->has_selector)
        return verr(v, one != NULL ? "spec.targetRef" : "spec.targetRefs",
                    "only one of selector and targetRef(s) may be set");
    return 0;
}

/* The note of an accepted waypoint policy, most important first. */
static int waypoint_note(struct vctx *v)
{
    if (v->dead_target)
        return note(
            v, v->target_at,
            "binds nothing: a waypoint policy targets a Gateway (group " GW_GROUP
            ") or a Service of its own namespace, or the GatewayClass " VEIL_AUTHZ_WAYPOINT_CLASS
            " from the root namespace; policy attaches to a waypoint");
    if (v->wp_unsup)
        return note(v, v->wp_at,
                    "not supported by the waypoint (JWT claims, path templates, this condition "
                    "key): ALLOW rules with it match nothing, DENY rules apply without it; policy "
                    "attaches to a waypoint");
    return note(v, "spec.targetRefs",
                "policy attaches to a waypoint; not enforced by the node proxy");
}

/* Checks an AuthorizationPolicy spec; fills p's action, selector and
 * targets. Returns 0, 1 (a note in v->err), -EINVAL. */
static int check_authz(struct vctx *v, const json_t *spec, struct pol *p)
{
    static const char *const known[] = {"selector", "targetRef", "targetRefs", "action",
                                        "provider", "rules",     NULL};
    const json_t *rules, *r;
    size_t i;
    if (!json_is_object(spec))
        return verr(v, "spec", "expected a map");
    if (known_fields(v, spec, "spec", known) < 0 ||
        check_selector(v, spec, &p->has_selector, &p->labels) < 0 || check_targets(v, spec, p) < 0)
        return -EINVAL;
    const json_t *aj = json_object_get(spec, "action");
    const char *action = aj == NULL || json_is_null(aj) ? "ALLOW" : json_string_value(aj);
    if (action == NULL)
        return verr(v, "spec.action", "expected a string");
    if (strcmp(action, "ALLOW") == 0)
        p->action = ACT_ALLOW;
    else if (strcmp(action, "DENY") == 0)
        p->action = ACT_DENY;
    else if (strcmp(action, "AUDIT") == 0)
        p->action = ACT_AUDIT;
    else if (strcmp(action, "CUSTOM") == 0)
        p->action = ACT_IGNORED;
    else
        return verr(v, "spec.action", "unknown action \"%s\" (ALLOW, DENY or AUDIT)", action);
    rules = json_object_get(spec, "rules");
    if (rules != NULL && !json_is_null(rules) && !json_is_array(rules))
        return verr(v, "spec.rules", "expected a list");
    json_array_foreach(rules, i, r)
    {
        char rp[PATH_MAX_LEN];
        pathf(rp, sizeof(rp), "spec.rules[%zu]", i);
        if (check_rule(v, r, rp) < 0)
            return -EINVAL;
    }
    /* Notes, most important first; the spec is accepted. */
    if (p->action == ACT_IGNORED)
        return verr(v, "spec.action",
                    "action CUSTOM (external authorization) is not supported; policy ignored"),
               1;
    if (p->targets != NULL)
        return waypoint_note(v);
    if (v->l7 && p->action == ACT_ALLOW)
        return note(v, v->l7_at,
                    "L7 field in an ALLOW policy: enforced at L4, the rules with L7 fields "
                    "match nothing (use a waypoint)");
    if (v->l7)
        return note(v, v->l7_at,
                    "L7 field: enforced at L4 without its L7 parts, so it applies to more "
                    "traffic (use a waypoint)");
    return 0;
}

static int mode_of(struct vctx *v, const json_t *m, const char *path, enum pmode *out)
{
    static const char *const known[] = {"mode", NULL};
    char p[PATH_MAX_LEN];
    *out = PM_UNSET;
    if (m == NULL || json_is_null(m))
        return 0;
    if (!json_is_object(m))
        return verr(v, path, "expected a map");
    if (known_fields(v, m, path, known) < 0)
        return -EINVAL;
    const json_t *mj = json_object_get(m, "mode");
    if (mj == NULL || json_is_null(mj))
        return 0;
    const char *s = json_string_value(mj);
    pathf(p, sizeof(p), "%s.mode", path);
    if (s == NULL)
        return verr(v, p, "expected a string");
    static const char *const names[] = {"UNSET", "PERMISSIVE", "STRICT", "DISABLE"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0) {
            *out = (enum pmode)i;
            return 0;
        }
    return verr(v, p, "unknown mode \"%s\" (STRICT, PERMISSIVE, DISABLE or UNSET)", s);
}

static int check_peer(struct vctx *v, const json_t *spec, struct pol *p)
{
    static const char *const known[] = {"selector", "mtls", "portLevelMtls", NULL};
    const json_t *plm, *val;
    const char *k;
    if (!json_is_object(spec))
        return verr(v, "spec", "expected a map");
    if (known_fields(v, spec, "spec", known) < 0 ||
        check_selector(v, spec, &p->has_selector, &p->labels) < 0 ||
        mode_of(v, json_object_get(spec, "mtls"), "spec.mtls", &p->mode) < 0)
        return -EINVAL;
    plm = json_object_get(spec, "portLevelMtls");
    if (plm == NULL || json_is_null(plm))
        return 0;
    if (!json_is_object(plm))
        return verr(v, "spec.portLevelMtls", "expected a map");
    json_object_foreach((json_t *)plm, k, val)
    {
        char pp[PATH_MAX_LEN];
        enum pmode m;
        int port = port_str(k);
        pathf(pp, sizeof(pp), "spec.portLevelMtls.%s", k);
        if (port < 0)
            return verr(v, pp, "not a valid port (1..65535)");
        if (mode_of(v, val, pp, &m) < 0)
            return -EINVAL;
    }
    if (!p->has_selector && json_object_size(plm) > 0)
        return note(v, "spec.portLevelMtls", "ignored: port-level modes need a selector");
    return 0;
}

/* ---- the sets ---- */

struct veil_authz *veil_authz_new(const char *root_ns)
{
    struct veil_authz *a = veil_calloc(1, sizeof(*a));
    if (a == NULL)
        return NULL;
    a->root_ns = veil_strdup(root_ns != NULL ? root_ns : VEIL_AUTHZ_ROOT_NS);
    if (a->root_ns == NULL) {
        veil_free(a);
        return NULL;
    }
    return a;
}

static void pol_free(struct pol *p)
{
    json_decref(p->spec);
    veil_free(p->ns);
    veil_free(p->name);
    veil_free(p);
}

static size_t list_clear(struct pol **head)
{
    size_t n = 0;
    while (*head != NULL) {
        struct pol *p = *head;
        *head = p->next;
        pol_free(p);
        n++;
    }
    return n;
}

void veil_authz_clear(struct veil_authz *a)
{
    size_t n = list_clear(&a->authz) + list_clear(&a->peer);
    a->nauthz = a->npeer = 0;
    if (n > 0)
        a->gen++;
}

void veil_authz_free(struct veil_authz *a)
{
    if (a == NULL)
        return;
    list_clear(&a->authz);
    list_clear(&a->peer);
    veil_free(a->root_ns);
    veil_free(a);
}

static struct pol **find(struct pol **head, const char *ns, const char *name)
{
    for (; *head != NULL; head = &(*head)->next)
        if (strcmp((*head)->ns, ns) == 0 && strcmp((*head)->name, name) == 0)
            return head;
    return NULL;
}

static int upsert(struct veil_authz *a, bool peer, const char *ns, const char *name,
                  const json_t *spec, char *err, size_t cap)
{
    struct pol **head = peer ? &a->peer : &a->authz, **at = find(head, ns, name), tmp;
    struct vctx v = {.err = err, .cap = cap, .ns = ns, .root_ns = a->root_ns};
    json_t *empty = NULL;
    if (cap > 0)
        err[0] = '\0';
    if (spec == NULL || json_is_null(spec))
        spec = empty = json_object(); /* no spec: {} */
    if (spec == NULL)
        return -ENOMEM;
    memset(&tmp, 0, sizeof(tmp));
    int rc = peer ? check_peer(&v, spec, &tmp) : check_authz(&v, spec, &tmp);
    if (rc < 0 || (at != NULL && json_equal((*at)->spec, (json_t *)spec))) {
        json_decref(empty);
        return rc;
    }
    json_t *copy = json_deep_copy(spec);
    json_decref(empty);
    struct pol *p = at != NULL ? *at : veil_calloc(1, sizeof(*p));
    if (copy == NULL || p == NULL)
        goto oom;
    if (at == NULL && ((p->ns = veil_strdup(ns)) == NULL || (p->name = veil_strdup(name)) == NULL))
        goto oom;
    /* Point into our copy, not the caller's spec. */
    struct vctx quiet = {.ns = ns, .root_ns = a->root_ns};
    if (peer)
        check_peer(&quiet, copy, &tmp);
    else
        check_authz(&quiet, copy, &tmp);
    json_decref(p->spec);
    tmp.next = p->next;
    tmp.ns = p->ns;
    tmp.name = p->name;
    tmp.spec = copy;
    *p = tmp;
    if (at == NULL) {
        while (*head != NULL)
            head = &(*head)->next;
        *head = p;
        if (peer)
            a->npeer++;
        else
            a->nauthz++;
    }
    a->gen++;
    return rc;
oom:
    json_decref(copy);
    if (at == NULL && p != NULL) {
        veil_free(p->ns);
        veil_free(p->name);
        veil_free(p);
    }
    if (cap > 0)
        err[0] = '\0';
    return -ENOMEM;
}

static int drop(struct veil_authz *a, bool peer, const char *ns, const char *name)
{
    struct pol **at = find(peer ? &a->peer : &a->authz, ns, name);
    if (at == NULL)
        return -ENOENT;
    struct pol *p = *at;
    *at = p->next;
    pol_free(p);
    if (peer)
        a->npeer--;
    else
        a->nauthz--;
    a->gen++;
    return 0;
}

int veil_authz_set(struct veil_authz *a, const char *ns, const char *name, const json_t *spec,
                   char *err, size_t cap)
{
    return upsert(a, false, ns, name, spec, err, cap);
}

int veil_authz_remove(struct veil_authz *a, const char *ns, const char *name)
{
    return drop(a, false, ns, name);
}

int veil_authz_peer_set(struct veil_authz *a, const char *ns, const char *name, const json_t *spec,
                        char *err, size_t cap)
{
    return upsert(a, true, ns, name, spec, err, cap);
}

int veil_authz_peer_remove(struct veil_authz *a, const char *ns, const char *name)
{
    return drop(a, true, ns, name);
}

uint64_t veil_authz_generation(const struct veil_authz *a)
{
    return a->gen;
}

size_t veil_authz_count(const struct veil_authz *a)
{
    return a->nauthz;
}

size_t veil_authz_peer_count(const struct veil_authz *a)
{
    return a->npeer;
}

/* ---- evaluation ---- */

/* What a rule is evaluated against, derived once per check. */
struct ctx {
    const char *principal; /* without spiffe:// ; NULL unauthenticated */
    const char *ns;        /* source namespace or NULL */
    const struct veil_authz_ip *src_ip, *remote_ip, *dst_ip;
    uint16_t dst_port;
    const struct veil_authz_l7_req *l7; /* an HTTP request; NULL at L4 and for TCP */
};

static bool selector_matches(const struct pol *p, const struct veil_authz_labels *l)
{
    const char *k;
    const json_t *val;
    if (!p->has_selector || p->labels == NULL)
        return true;
    json_object_foreach((json_t *)p->labels, k, val)
    {
        const char *have = l != NULL && l->get != NULL ? l->get(l->arg, k) : NULL;
        if (have == NULL || strcmp(have, json_string_value(val)) != 0)
            return false;
    }
    return true;
}

static bool bytes_eq(const char *a, const char *b, size_t n, bool nocase)
{
    return nocase ? strncasecmp(a, b, n) == 0 : memcmp(a, b, n) == 0;
}

/* Istio's match of an L7 value, checked in its order: "*" = present, "*s"
 * suffix, "p*" prefix, else exact. An absent value matches nothing. */
static bool l7_match(const char *pat, struct veil_authz_str v, bool nocase)
{
    size_t pl = strlen(pat);
    if (v.ptr == NULL)
        return false;
    if (strcmp(pat, "*") == 0)
        return true;
    if (pat[0] == '*')
        return v.len >= pl - 1 && bytes_eq(v.ptr + v.len - (pl - 1), pat + 1, pl - 1, nocase);
    if (pl > 0 && pat[pl - 1] == '*')
        return v.len >= pl - 1 && bytes_eq(v.ptr, pat, pl - 1, nocase);
    return v.len == pl && bytes_eq(v.ptr, pat, pl, nocase);
}

/* The path for `paths`: the target without its query (Envoy's url_path). */
static struct veil_authz_str url_path(struct veil_authz_str t)
{
    for (size_t i = 0; t.ptr != NULL && i < t.len; i++)
        if (t.ptr[i] == '?' || t.ptr[i] == '#')
            return (struct veil_authz_str){t.ptr, i};
    return t;
}

static bool name_is(const struct veil_authz_header *h, struct veil_authz_str name)
{
    return h->name.len == name.len && name.len > 0 &&
           strncasecmp(h->name.ptr, name.ptr, name.len) == 0;
}

/* A header absent from the list that Envoy knows as a pseudo-header. */
static struct veil_authz_str pseudo(const struct veil_authz_l7_req *r, struct veil_authz_str name)
{
    static const struct veil_authz_str none = {NULL, 0};
    if (name.len == 10 && strncasecmp(name.ptr, ":authority", 10) == 0)
        return r->host;
    if (name.len == 4 && strncasecmp(name.ptr, "host", 4) == 0)
        return r->host;
    if (name.len == 7 && strncmp(name.ptr, ":method", 7) == 0)
        return r->method;
    if (name.len == 5 && strncmp(name.ptr, ":path", 5) == 0)
        return r->path;
    return none;
}

/* Compares the `n` bytes of `pat` with the field lines `name` joined with
 * "," (as Envoy joins them) from byte `off` on, without copying. */
static bool joined_eq(const struct veil_authz_l7_req *r, struct veil_authz_str name, size_t off,
                      const char *pat, size_t n)
{
    size_t pos = 0;
    bool first = true;
    for (size_t i = 0; i < r->nheaders && n > 0; i++) {
        const struct veil_authz_header *h = &r->headers[i];
        struct veil_authz_str segs[2] = {{",", first ? 0 : 1}, h->value};
        if (!name_is(h, name))
            continue;
        first = false;
        for (int s = 0; s < 2; s++) {
            if (off < pos + segs[s].len && n > 0) {
                size_t start = off - pos, k = segs[s].len - start < n ? segs[s].len - start : n;
                if (memcmp(segs[s].ptr + start, pat, k) != 0)
                    return false;
                pat += k;
                n -= k;
                off += k;
            }
            pos += segs[s].len;
        }
    }
    return n == 0;
}

/* request.headers[name] against one value pattern (case-sensitive). */
static bool header_matches(const struct veil_authz_l7_req *r, struct veil_authz_str name,
                           const char *pat)
{
    struct veil_authz_str one = {NULL, 0};
    size_t count = 0, total = 0, pl = strlen(pat);
    for (size_t i = 0; i < r->nheaders; i++)
        if (name_is(&r->headers[i], name)) {
            total += (count++ > 0 ? 1 : 0) + r->headers[i].value.len;
            one = r->headers[i].value;
        }
    if (count == 0)
        one = pseudo(r, name);
    if (count <= 1)
        return l7_match(pat, one, false);
    if (strcmp(pat, "*") == 0)
        return true;
    if (pat[0] == '*')
        return total >= pl - 1 && joined_eq(r, name, total - (pl - 1), pat + 1, pl - 1);
    if (pl > 0 && pat[pl - 1] == '*')
        return total >= pl - 1 && joined_eq(r, name, 0, pat, pl - 1);
    return total == pl && joined_eq(r, name, 0, pat, pl);
}

enum vtype { T_PRINCIPAL, T_NS, T_SRC_IP, T_REMOTE_IP, T_DST_IP, T_PORT, T_HOST, T_METHOD, T_PATH };

static bool ip_matches(const json_t *val, const struct veil_authz_ip *ip)
{
    struct cidr cidr;
    return parse_cidr(json_string_value(val), &cidr) == 0 && cidr_contains(&cidr, ip);
}

static bool value_matches(const struct ctx *c, enum vtype t, const json_t *val)
{
    const char *s = json_string_value(val);
    switch (t) {
    case T_PRINCIPAL:
        return str_match(strip_spiffe(s), c->principal);
    case T_NS:
        return str_match(s, c->ns);
    case T_SRC_IP:
        return ip_matches(val, c->src_ip);
    case T_REMOTE_IP:
        return ip_matches(val, c->remote_ip);
    case T_DST_IP:
        return ip_matches(val, c->dst_ip);
    case T_PORT:
        return port_of(val) == (int)c->dst_port;
    case T_HOST:
        return l7_match(s, c->l7->host, true);
    case T_METHOD:
        return l7_match(s, c->l7->method, false);
    case T_PATH: {
        struct veil_authz_str p = url_path(c->l7->path);
        /* "*" is ".+" for paths */
        return l7_match(s, p, false) && (strcmp(s, "*") != 0 || p.len > 0);
    }
    }
    return false;
}

static bool any_matches(const struct ctx *c, enum vtype t, const json_t *list)
{
    const json_t *e;
    size_t i;
    json_array_foreach(list, i, e) if (value_matches(c, t, e)) return true;
    return false;
}

/* A positive field (absent or empty = no constraint) and its not-form. */
static bool field_ok(const struct ctx *c, enum vtype t, const json_t *obj, const char *pos,
                     const char *neg)
{
    const json_t *p = json_object_get(obj, pos), *n = json_object_get(obj, neg);
    if (json_array_size(p) > 0 && !any_matches(c, t, p))
        return false;
    return !(json_array_size(n) > 0 && any_matches(c, t, n));
}

/* requestPrincipals (JWT) are never evaluated: an ALLOW rule with them
 * never gets here (rule_unsupported), a DENY rule leaves them out. */
static bool source_matches(const struct ctx *c, const json_t *s)
{
    return field_ok(c, T_PRINCIPAL, s, "principals", "notPrincipals") &&
           field_ok(c, T_NS, s, "namespaces", "notNamespaces") &&
           field_ok(c, T_SRC_IP, s, "ipBlocks", "notIpBlocks") &&
           field_ok(c, T_REMOTE_IP, s, "remoteIpBlocks", "notRemoteIpBlocks");
}

/* Without a request (L4, TCP) the L7 fields are left out; a path template
 * is left out too. */
static bool operation_matches(const struct ctx *c, const json_t *o)
{
    if (!field_ok(c, T_PORT, o, "ports", "notPorts"))
        return false;
    if (c->l7 == NULL)
        return true;
    return field_ok(c, T_HOST, o, "hosts", "notHosts") &&
           field_ok(c, T_METHOD, o, "methods", "notMethods") &&
           (has_template(json_object_get(o, "paths")) ||
            has_template(json_object_get(o, "notPaths")) ||
            field_ok(c, T_PATH, o, "paths", "notPaths"));
}

/* values / notValues of a request.headers[name] condition. */
static bool header_cond_ok(const struct ctx *c, struct veil_authz_str name, const json_t *cond)
{
    const json_t *pos = json_object_get(cond, "values"), *neg = json_object_get(cond, "notValues");
    const json_t *e;
    size_t i;
    bool any = false;
    json_array_foreach(pos, i, e) any = any || header_matches(c->l7, name, json_string_value(e));
    if (json_array_size(pos) > 0 && !any)
        return false;
    json_array_foreach(neg, i,
                       e) if (header_matches(c->l7, name, json_string_value(e))) return false;
    return true;
}

/* Conditions of keys that cannot be evaluated here are dropped (true); an
 * ALLOW rule that has one never reaches this (rule_unsupported). */
static bool condition_matches(const struct ctx *c, const json_t *cond)
{
    const char *key = json_string_value(json_object_get(cond, "key"));
    struct veil_authz_str hname;
    enum vtype t;
    if (strcmp(key, "source.ip") == 0)
        t = T_SRC_IP;
    else if (strcmp(key, "remote.ip") == 0)
        t = T_REMOTE_IP;
    else if (strcmp(key, "destination.ip") == 0)
        t = T_DST_IP;
    else if (strcmp(key, "destination.port") == 0)
        t = T_PORT;
    else if (strcmp(key, "source.namespace") == 0)
        t = T_NS;
    else if (strcmp(key, "source.principal") == 0)
        t = T_PRINCIPAL;
    else if (c->l7 != NULL && header_key(key, &hname) == 0)
        return header_cond_ok(c, hname, cond);
    else
        return true;
    return field_ok(c, t, cond, "values", "notValues");
}

static bool clause_has(const json_t *list, const char *inner, const char *const *keys)
{
    const json_t *e;
    size_t i;
    json_array_foreach(list, i, e)
    {
        const json_t *in = json_object_get(e, inner);
        for (const char *const *k = keys; *k; k++)
            if (has_items(in, *k))
                return true;
    }
    return false;
}

static bool rule_has_l7(const json_t *rule)
{
    const json_t *e;
    size_t i;
    bool l4;
    if (clause_has(json_object_get(rule, "from"), "source", source_l7) ||
        clause_has(json_object_get(rule, "to"), "operation", op_l7))
        return true;
    json_array_foreach(json_object_get(rule, "when"), i, e)
    {
        cond_kind(json_string_value(json_object_get(e, "key")), &l4);
        if (!l4)
            return true;
    }
    return false;
}

/* A field of the rule the waypoint cannot evaluate on an HTTP request. */
static bool rule_has_wp_unsup(const json_t *rule)
{
    const json_t *e;
    size_t i;
    bool l4;
    if (clause_has(json_object_get(rule, "from"), "source", source_l7))
        return true;
    json_array_foreach(json_object_get(rule, "to"), i, e)
    {
        const json_t *o = json_object_get(e, "operation");
        if (has_template(json_object_get(o, "paths")) ||
            has_template(json_object_get(o, "notPaths")))
            return true;
    }
    json_array_foreach(json_object_get(rule, "when"), i, e)
    {
        const char *key = json_string_value(json_object_get(e, "key"));
        cond_kind(key, &l4);
        if (!l4 && header_key(key, NULL) < 0)
            return true;
    }
    return false;
}

static bool rule_unsupported(const struct ctx *c, const json_t *rule)
{
    return c->l7 != NULL ? rule_has_wp_unsup(rule) : rule_has_l7(rule);
}

/* from[] / to[]: absent or empty = any; else one clause must match. */
static bool clauses_match(const struct ctx *c, const json_t *list, const char *inner,
                          bool (*one)(const struct ctx *, const json_t *))
{
    const json_t *e;
    size_t i;
    if (json_array_size(list) == 0)
        return true;
    json_array_foreach(list, i, e) if (one(c, json_object_get(e, inner))) return true;
    return false;
}

static bool rule_matches(const struct ctx *c, const json_t *rule, enum action act)
{
    const json_t *e;
    size_t i;
    if (act == ACT_ALLOW && rule_unsupported(c, rule))
        return false;
    if (!clauses_match(c, json_object_get(rule, "from"), "source", source_matches) ||
        !clauses_match(c, json_object_get(rule, "to"), "operation", operation_matches))
        return false;
    json_array_foreach(json_object_get(rule, "when"), i,
                       e) if (!condition_matches(c, e)) return false;
    return true;
}

static bool policy_matches(const struct ctx *c, const struct pol *p)
{
    const json_t *rule;
    size_t i;
    json_array_foreach(json_object_get(p->spec, "rules"), i,
                       rule) if (rule_matches(c, rule, p->action)) return true;
    return false;
}

/* The node proxy's policies: selector-bound or namespace-wide. */
static bool applies(const struct veil_authz *a, const struct pol *p, const void *arg)
{
    const struct veil_authz_req *r = arg;
    if (p->action == ACT_IGNORED || p->targets != NULL || r->dst_ns == NULL)
        return false;
    if (strcmp(p->ns, r->dst_ns) != 0 && strcmp(p->ns, a->root_ns) != 0)
        return false;
    return selector_matches(p, &r->dst_labels);
}

static bool str_eq(const char *a, const char *b)
{
    return a != NULL && b != NULL && strcmp(a, b) == 0;
}

static const char *target_field(const json_t *t, const char *key)
{
    const char *s = json_string_value(json_object_get(t, key));
    return s != NULL ? s : "";
}

/* Does targetRef `t` of policy `p` bind to the request's waypoint or
 * Service? (Cross-namespace references bind nothing.) */
static bool target_binds(const struct veil_authz *a, const struct pol *p, const json_t *t,
                         const struct veil_authz_l7_req *r)
{
    const char *name = target_field(t, "name"), *ns = target_field(t, "namespace");
    enum tkind tk = target_kind(target_field(t, "group"), target_field(t, "kind"), name);
    if (tk != TK_CLASS && *ns != '\0' && strcmp(ns, p->ns) != 0)
        return false;
    switch (tk) {
    case TK_GATEWAY:
        return str_eq(p->ns, r->wp_ns) && str_eq(name, r->wp_name);
    case TK_SERVICE:
        return str_eq(p->ns, r->svc_ns) && str_eq(name, r->svc_name);
    case TK_CLASS:
        return strcmp(p->ns, a->root_ns) == 0 && r->wp_name != NULL;
    case TK_NONE:
        break;
    }
    return false;
}

/* The waypoint's policies: targetRef'd to its Gateway, its GatewayClass or
 * the destination Service. */
static bool binds(const struct veil_authz *a, const struct pol *p, const void *arg)
{
    const struct veil_authz_l7_req *r = arg;
    if (p->action == ACT_IGNORED || p->targets == NULL)
        return false;
    if (!json_is_array(p->targets))
        return target_binds(a, p, p->targets, r);
    const json_t *t;
    size_t i;
    json_array_foreach(p->targets, i, t) if (target_binds(a, p, t, r)) return true;
    return false;
}

static void name_to(char *out, size_t cap, const struct pol *p)
{
    if (out != NULL && cap > 0)
        snprintf(out, cap, "%s/%s", p->ns, p->name);
}

/* Istio's order over the policies that `pick` selects: DENY, then ALLOW
 * (AUDIT only reported). */
static enum veil_authz_verdict decide(const struct veil_authz *a, const struct ctx *c,
                                      bool (*pick)(const struct veil_authz *, const struct pol *,
                                                   const void *),
                                      const void *req, struct veil_authz_decision *out)
{
    const struct pol *allow = NULL;
    bool any_allow = false;
    memset(out, 0, sizeof(*out));
    for (const struct pol *p = a->authz; p != NULL; p = p->next) {
        if (!pick(a, p, req))
            continue;
        if (p->action == ACT_ALLOW) {
            any_allow = true;
            if (allow == NULL && policy_matches(c, p))
                allow = p;
        } else if (p->action == ACT_AUDIT) {
            if (out->audit[0] == '\0' && policy_matches(c, p))
                name_to(out->audit, sizeof(out->audit), p);
        } else if (policy_matches(c, p)) {
            out->verdict = VEIL_AUTHZ_DENY;
            out->reason = VEIL_AUTHZ_DENY_MATCHED;
            name_to(out->policy, sizeof(out->policy), p);
            return out->verdict;
        }
    }
    if (!any_allow) {
        out->verdict = VEIL_AUTHZ_ALLOW;
        out->reason = VEIL_AUTHZ_NO_POLICY;
    } else if (allow != NULL) {
        out->verdict = VEIL_AUTHZ_ALLOW;
        out->reason = VEIL_AUTHZ_ALLOW_MATCHED;
        name_to(out->policy, sizeof(out->policy), allow);
    } else {
        out->verdict = VEIL_AUTHZ_DENY;
        out->reason = VEIL_AUTHZ_NO_ALLOW_MATCHED;
    }
    return out->verdict;
}

/* The source namespace: given, or from the principal into buf. */
static const char *source_ns(const char *given, const char *principal, char *buf, size_t cap)
{
    if (given != NULL)
        return given;
    if (principal != NULL && veil_authz_principal_ns(principal, buf, cap) == 0)
        return buf;
    return NULL;
}

enum veil_authz_verdict veil_authz_decide(const struct veil_authz *a,
                                          const struct veil_authz_req *req,
                                          struct veil_authz_decision *out)
{
    struct veil_authz_decision tmp;
    char nsbuf[256];
    struct ctx c = {
        .principal = strip_spiffe(req->src_principal),
        .ns = source_ns(req->src_ns, req->src_principal, nsbuf, sizeof(nsbuf)),
        .src_ip = &req->src_ip,
        .remote_ip = &req->src_ip,
        .dst_ip = &req->dst_ip,
        .dst_port = req->dst_port,
    };
    return decide(a, &c, applies, req, out != NULL ? out : &tmp);
}

enum veil_authz_verdict veil_authz_decide_l7(const struct veil_authz *a,
                                             const struct veil_authz_l7_req *req,
                                             struct veil_authz_decision *out)
{
    struct veil_authz_decision tmp;
    char nsbuf[256];
    struct ctx c = {
        .principal = strip_spiffe(req->src_principal),
        .ns = source_ns(req->src_ns, req->src_principal, nsbuf, sizeof(nsbuf)),
        .src_ip = &req->src_ip,
        .remote_ip = req->remote_ip.family != 0 ? &req->remote_ip : &req->src_ip,
        .dst_ip = &req->dst_ip,
        .dst_port = req->dst_port,
        .l7 = req->http ? req : NULL,
    };
    return decide(a, &c, binds, req, out != NULL ? out : &tmp);
}

enum veil_authz_verdict veil_authz_check(const struct veil_authz *a,
                                         const struct veil_authz_req *req, char *policy, size_t cap)
{
    struct veil_authz_decision d;
    veil_authz_decide(a, req, &d);
    if (policy != NULL && cap > 0)
        snprintf(policy, cap, "%s", d.policy);
    return d.verdict;
}

/* ---- what a spec asks for (no checking) ---- */

bool veil_authz_spec_has_l7(const json_t *spec)
{
    const json_t *rule;
    size_t i;
    json_array_foreach(json_object_get(spec, "rules"), i, rule) if (rule_has_l7(rule)) return true;
    return false;
}

bool veil_authz_spec_targeted(const json_t *spec)
{
    const json_t *one = json_object_get(spec, "targetRef");
    return json_is_object(one) || json_array_size(json_object_get(spec, "targetRefs")) > 0;
}

/* ---- peer authentication ---- */

static enum pmode port_mode(const struct pol *p, uint16_t port)
{
    char key[8];
    enum pmode m;
    struct vctx quiet = {0};
    const json_t *plm = json_object_get(p->spec, "portLevelMtls");
    if (port == 0 || plm == NULL)
        return PM_UNSET;
    snprintf(key, sizeof(key), "%u", port);
    const json_t *e = json_object_get(plm, key);
    return e != NULL && mode_of(&quiet, e, "", &m) == 0 ? m : PM_UNSET;
}

static enum veil_mtls_mode to_mode(enum pmode m)
{
    return m == PM_STRICT ? VEIL_MTLS_STRICT
                          : (m == PM_DISABLE ? VEIL_MTLS_DISABLE : VEIL_MTLS_PERMISSIVE);
}

/* The first policy of `ns` without selector that sets a mode. */
static enum pmode ns_mode(const struct veil_authz *a, const char *ns)
{
    for (const struct pol *p = a->peer; p != NULL; p = p->next)
        if (!p->has_selector && strcmp(p->ns, ns) == 0 && p->mode != PM_UNSET)
            return p->mode;
    return PM_UNSET;
}

enum veil_mtls_mode veil_authz_peer_mode(const struct veil_authz *a, const char *ns,
                                         const struct veil_authz_labels *labels, uint16_t port)
{
    enum pmode m = PM_UNSET;
    if (ns == NULL)
        ns = "";
    /* The oldest workload policy that selects it decides, if it says anything. */
    for (const struct pol *p = a->peer; p != NULL; p = p->next) {
        if (!p->has_selector || strcmp(p->ns, ns) != 0 || !selector_matches(p, labels))
            continue;
        m = port_mode(p, port);
        if (m == PM_UNSET)
            m = p->mode;
        break;
    }
    if (m == PM_UNSET)
        m = ns_mode(a, ns);
    if (m == PM_UNSET)
        m = ns_mode(a, a->root_ns);
    return to_mode(m);
}

/* ---- helpers ---- */

const char *veil_authz_json_label(const void *arg, const char *key)
{
    return json_string_value(json_object_get((const json_t *)arg, key));
}

const char *veil_authz_verdict_str(enum veil_authz_verdict v)
{
    return v == VEIL_AUTHZ_ALLOW ? "ALLOW" : "DENY";
}

const char *veil_mtls_mode_str(enum veil_mtls_mode m)
{
    switch (m) {
    case VEIL_MTLS_STRICT:
        return "STRICT";
    case VEIL_MTLS_DISABLE:
        return "DISABLE";
    default:
        return "PERMISSIVE";
    }
}
