/*
 * Resources: parsing and validation of the kinds of docs/resources.md.
 */
#include "control/resource.h"

#include "control/resource-int.h"

#include "core/alloc.h"
#include "core/arena.h"
#include "core/conf.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DNS_LABEL_MAX     63
#define DNS_SUBDOMAIN_MAX 253

static const char *const kind_names[VEIL_RES_NKINDS] = {
    [VEIL_RES_NAMESPACE] = "Namespace",
    [VEIL_RES_SERVICE_ACCOUNT] = "ServiceAccount",
    [VEIL_RES_SERVICE] = "Service",
    [VEIL_RES_POD] = "Pod",
    [VEIL_RES_WORKLOAD_ENTRY] = "WorkloadEntry",
    [VEIL_RES_AUTHZ_POLICY] = "AuthorizationPolicy",
    [VEIL_RES_PEER_AUTHN] = "PeerAuthentication",
    [VEIL_RES_HTTP_ROUTE] = "HTTPRoute",
    [VEIL_RES_GRPC_ROUTE] = "GRPCRoute",
    [VEIL_RES_IGNORED] = "ignored",
};

/* The API group of each known kind and the versions accepted. */
static const struct {
    const char *group;
    const char *versions[4];
} kind_api[VEIL_RES_IGNORED] = {
    [VEIL_RES_NAMESPACE] = {"", {"v1"}},
    [VEIL_RES_SERVICE_ACCOUNT] = {"", {"v1"}},
    [VEIL_RES_SERVICE] = {"", {"v1"}},
    [VEIL_RES_POD] = {"", {"v1"}},
    [VEIL_RES_WORKLOAD_ENTRY] = {"networking.istio.io", {"v1", "v1beta1", "v1alpha3"}},
    [VEIL_RES_AUTHZ_POLICY] = {"security.istio.io", {"v1", "v1beta1"}},
    [VEIL_RES_PEER_AUTHN] = {"security.istio.io", {"v1", "v1beta1"}},
    [VEIL_RES_HTTP_ROUTE] = {"gateway.networking.k8s.io", {"v1", "v1beta1"}},
    [VEIL_RES_GRPC_ROUTE] = {"gateway.networking.k8s.io", {"v1", "v1alpha2"}},
};

const char *veil_res_kind_str(enum veil_res_kind kind)
{
    return (unsigned)kind < VEIL_RES_NKINDS ? kind_names[kind] : "?";
}

enum veil_res_kind veil_res_kind_parse(const char *name)
{
    for (int k = 0; k < VEIL_RES_IGNORED; k++)
        if (strcmp(kind_names[k], name) == 0)
            return (enum veil_res_kind)k;
    return VEIL_RES_IGNORED;
}

const char *veil_res_source_str(enum veil_res_source src)
{
    return src == VEIL_RES_SRC_DIR ? "dir" : "api";
}

const char *veil_res_action_str(enum veil_res_action a)
{
    static const char *const s[] = {"ALLOW", "DENY", "AUDIT"};
    return (unsigned)a < 3 ? s[a] : "?";
}

const char *veil_res_mtls_str(enum veil_res_mtls m)
{
    static const char *const s[] = {"UNSET", "DISABLE", "PERMISSIVE", "STRICT"};
    return (unsigned)m < 4 ? s[m] : "?";
}

bool veil_res_is_workload(const struct veil_res *r)
{
    return r->kind == VEIL_RES_POD || r->kind == VEIL_RES_WORKLOAD_ENTRY;
}

bool veil_res_is_policy(const struct veil_res *r)
{
    return r->kind == VEIL_RES_AUTHZ_POLICY || r->kind == VEIL_RES_PEER_AUTHN;
}

bool veil_res_is_route(const struct veil_res *r)
{
    return r->kind == VEIL_RES_HTTP_ROUTE || r->kind == VEIL_RES_GRPC_ROUTE;
}

int veil_res_id_format(char *buf, size_t n, enum veil_res_kind kind, const char *ns,
                       const char *name)
{
    if (ns == NULL || ns[0] == '\0')
        return snprintf(buf, n, "%s/%s", veil_res_kind_str(kind), name);
    return snprintf(buf, n, "%s/%s/%s", veil_res_kind_str(kind), ns, name);
}

void veil_res_free(struct veil_res *r)
{
    if (r == NULL)
        return;
    json_decref(r->raw);
    veil_arena_free(&r->_arena);
    veil_free(r);
}

/* ---- labels ------------------------------------------------------------- */

const char *veil_res_label_get(const struct veil_res_labels *l, const char *key)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(l->v[mid].key, key);
        if (c == 0)
            return l->v[mid].value;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

bool veil_res_selects(const struct veil_res_labels *sel, const struct veil_res_labels *labels)
{
    for (size_t i = 0; i < sel->n; i++) {
        const char *v = veil_res_label_get(labels, sel->v[i].key);
        if (v == NULL || strcmp(v, sel->v[i].value) != 0)
            return false;
    }
    return true;
}

/* ---- names -------------------------------------------------------------- */

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* RFC 1123 label: [a-z0-9]([-a-z0-9]*[a-z0-9])?, at most 63. */
bool veil_res__dns_label(const char *s, size_t len)
{
    if (len == 0 || len > DNS_LABEL_MAX)
        return false;
    if (!is_lower_alnum(s[0]) || !is_lower_alnum(s[len - 1]))
        return false;
    for (size_t i = 0; i < len; i++)
        if (!is_lower_alnum(s[i]) && s[i] != '-')
            return false;
    return true;
}

/* RFC 1123 subdomain: labels joined by '.', at most 253. */
bool veil_res__dns_subdomain(const char *s, size_t len)
{
    if (len == 0 || len > DNS_SUBDOMAIN_MAX)
        return false;
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || s[i] == '.') {
            if (!veil_res__dns_label(s + start, i - start))
                return false;
            start = i + 1;
        }
    }
    return true;
}

/* A label name or value: [A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?, <= 63. */
static bool label_name(const char *s, size_t len)
{
    if (len == 0 || len > DNS_LABEL_MAX)
        return false;
    if (!isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[len - 1]))
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (!isalnum(c) && c != '-' && c != '_' && c != '.')
            return false;
    }
    return true;
}

/* Kubernetes' qualified name: [prefix/]name, prefix a DNS subdomain. */
static bool label_key(const char *s)
{
    const char *slash = strchr(s, '/');
    if (slash == NULL)
        return label_name(s, strlen(s));
    return veil_res__dns_subdomain(s, (size_t)(slash - s)) &&
           label_name(slash + 1, strlen(slash + 1));
}

static bool label_value(const char *s)
{
    size_t len = strlen(s);
    return len == 0 || label_name(s, len);
}

/* IANA service name (a named port): <= 15, [a-z0-9-], a letter, no "--". */
static bool port_name(const char *s)
{
    size_t len = strlen(s);
    bool letter = false;
    if (len == 0 || len > 15 || s[0] == '-' || s[len - 1] == '-' || strstr(s, "--") != NULL)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (s[i] >= 'a' && s[i] <= 'z')
            letter = true;
        else if (!(s[i] >= '0' && s[i] <= '9') && s[i] != '-')
            return false;
    }
    return letter;
}

/* ---- addresses ---------------------------------------------------------- */

int veil_res_parse_ip(const char *s, char *out, size_t n)
{
    unsigned char a[16];
    if (inet_pton(AF_INET, s, a) == 1)
        return inet_ntop(AF_INET, a, out, (socklen_t)n) != NULL ? 4 : -EINVAL;
    if (inet_pton(AF_INET6, s, a) == 1)
        return inet_ntop(AF_INET6, a, out, (socklen_t)n) != NULL ? 6 : -EINVAL;
    return -EINVAL;
}

int veil_res_parse_cidr(const char *s, bool strict, unsigned char addr[16], int *family,
                        int *prefix)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t alen = slash != NULL ? (size_t)(slash - s) : strlen(s);
    if (alen == 0 || alen >= sizeof(buf))
        return -EINVAL;
    memcpy(buf, s, alen);
    buf[alen] = '\0';
    memset(addr, 0, 16);
    int fam, max;
    if (inet_pton(AF_INET, buf, addr) == 1) {
        fam = 4;
        max = 32;
    } else if (inet_pton(AF_INET6, buf, addr) == 1) {
        fam = 6;
        max = 128;
    } else {
        return -EINVAL;
    }
    long len = max;
    if (slash != NULL) {
        const char *p = slash + 1;
        char *end;
        if (!isdigit((unsigned char)*p) || strlen(p) > 3)
            return -EINVAL;
        len = strtol(p, &end, 10);
        if (*end != '\0' || len < 0 || len > max)
            return -EINVAL;
    }
    if (strict) {
        for (int bit = (int)len; bit < max; bit++)
            if (addr[bit / 8] & (0x80u >> (bit % 8)))
                return -EINVAL;
    }
    *family = fam;
    *prefix = (int)len;
    return 0;
}

/* ---- JSON form ---------------------------------------------------------- */

json_t *veil_res__conf_to_json(const struct veil_conf_node *n)
{
    if (n == NULL)
        return json_null();
    switch (n->kind) {
    case VEIL_CONF_BOOL:
        return json_boolean(n->v.b);
    case VEIL_CONF_INT:
        return json_integer((json_int_t)n->v.i);
    case VEIL_CONF_FLOAT:
        return json_real(n->v.f);
    case VEIL_CONF_STR:
        return json_stringn(n->v.str.ptr, n->v.str.len);
    case VEIL_CONF_SEQ: {
        json_t *a = json_array();
        for (size_t i = 0; a != NULL && i < n->v.seq.n; i++) {
            json_t *v = veil_res__conf_to_json(n->v.seq.items[i]);
            if (v == NULL || json_array_append_new(a, v) < 0) {
                json_decref(a);
                a = NULL;
            }
        }
        return a;
    }
    case VEIL_CONF_MAP: {
        json_t *o = json_object();
        for (size_t i = 0; o != NULL && i < n->v.map.n; i++) {
            json_t *v = veil_res__conf_to_json(n->v.map.pairs[i].value);
            if (v == NULL || json_object_set_new(o, n->v.map.pairs[i].key->v.str.ptr, v) < 0) {
                json_decref(o);
                o = NULL;
            }
        }
        return o;
    }
    default:
        return json_null();
    }
}

/* ---- parse helpers ------------------------------------------------------ */

int veil_res__oom(struct veil_res__rp *p)
{
    veil_conf_errf(p->err, p->doc, NULL, "out of memory");
    return -ENOMEM;
}

static const char *dup(struct veil_res__rp *p, const char *s)
{
    return veil_arena_strndup(&p->r->_arena, s, strlen(s));
}

/* Copies a string into the resource, or reports out of memory. */
int veil_res__dup_to(struct veil_res__rp *p, const char *s, const char **out)
{
    *out = dup(p, s);
    return *out != NULL ? 0 : veil_res__oom(p);
}

static int label_cmp(const void *a, const void *b)
{
    return strcmp(((const struct veil_res_label *)a)->key, ((const struct veil_res_label *)b)->key);
}

/*
 * A map of string to string (labels, annotations, matchLabels) at `path`.
 * `strict` checks keys and values as Kubernetes label syntax; otherwise only
 * keys are checked (annotations).
 */
static int parse_labels(struct veil_res__rp *p, const struct veil_conf_node *m,
                        const struct veil_conf_path *path, bool values_too,
                        struct veil_res_labels *out)
{
    out->v = NULL;
    out->n = 0;
    if (m == NULL || m->kind == VEIL_CONF_NULL)
        return 0;
    if (veil_conf_expect(m, path, VEIL_CONF_MAP, p->err) < 0)
        return -EINVAL;
    size_t n = veil_conf_len(m);
    if (n == 0)
        return 0;
    struct veil_res_label *v = veil_arena_alloc(&p->r->_arena, n * sizeof(*v));
    if (v == NULL)
        return veil_res__oom(p);
    for (size_t i = 0; i < n; i++) {
        const struct veil_conf_node *k = veil_conf_map_key(m, i);
        const char *key = veil_conf_str(k), *val;
        const struct veil_conf_path *kp = VEIL_CONF_KEY(path, key);
        if (!label_key(key))
            return veil_conf_errf(p->err, k, kp, "\"%s\" is not a valid label key", key);
        if (veil_conf_req_str(m, path, key, &val, p->err) < 0)
            return -EINVAL;
        if (values_too && !label_value(val))
            return veil_conf_errf(p->err, veil_conf_map_value(m, i), kp,
                                  "\"%s\" is not a valid label value", val);
        v[i].key = dup(p, key);
        v[i].value = dup(p, val);
        if (v[i].key == NULL || v[i].value == NULL)
            return veil_res__oom(p);
    }
    qsort(v, n, sizeof(*v), label_cmp);
    out->v = v;
    out->n = n;
    return 0;
}

/* A port number 1..65535, from an integer or (`str_ok`) a decimal string. */
int veil_res__port_value(struct veil_res__rp *p, const struct veil_conf_node *n,
                         const struct veil_conf_path *path, bool str_ok, uint16_t *out)
{
    int64_t v;
    if (str_ok && n != NULL && n->kind == VEIL_CONF_STR) {
        const char *s = n->v.str.ptr;
        char *end;
        if (!isdigit((unsigned char)s[0]) || strlen(s) > 5)
            return veil_conf_errf(p->err, n, path, "\"%s\" is not a valid port (1..65535)", s);
        v = strtol(s, &end, 10);
        if (*end != '\0')
            return veil_conf_errf(p->err, n, path, "\"%s\" is not a valid port (1..65535)", s);
    } else {
        if (veil_conf_expect(n, path, VEIL_CONF_INT, p->err) < 0)
            return -EINVAL;
        v = n->v.i;
    }
    if (v < 1 || v > 65535)
        return veil_conf_errf(p->err, n, path, "%lld is not a valid port (1..65535)", (long long)v);
    *out = (uint16_t)v;
    return 0;
}

static int req_port(struct veil_res__rp *p, const struct veil_conf_node *m,
                    const struct veil_conf_path *path, const char *key, uint16_t *out)
{
    const struct veil_conf_node *v = veil_conf_map_get(m, key);
    if (v == NULL || v->kind == VEIL_CONF_NULL)
        return veil_conf_errf(p->err, m, VEIL_CONF_KEY(path, key), "required field is missing");
    return veil_res__port_value(p, v, VEIL_CONF_KEY(path, key), false, out);
}

/* An optional IP address field, canonicalised into the resource. */
static int ip_field(struct veil_res__rp *p, const struct veil_conf_node *m,
                    const struct veil_conf_path *path, const char *key, bool required,
                    const char **out)
{
    const char *s = NULL;
    int rc = required ? veil_conf_req_str(m, path, key, &s, p->err)
                      : veil_conf_get_str(m, path, key, &s, p->err);
    if (rc < 0)
        return -EINVAL;
    if (s == NULL) {
        *out = NULL;
        return 0;
    }
    char buf[INET6_ADDRSTRLEN];
    if (veil_res_parse_ip(s, buf, sizeof(buf)) < 0)
        return veil_conf_errf(p->err, veil_conf_map_get(m, key), VEIL_CONF_KEY(path, key),
                              "\"%s\" is not a valid IP address", s);
    return veil_res__dup_to(p, buf, out);
}

/* A map's keys must all be in `known` (NULL-terminated). */
int veil_res__known_fields(struct veil_res__rp *p, const struct veil_conf_node *m,
                           const struct veil_conf_path *path, const char *const *known)
{
    for (size_t i = 0; i < veil_conf_len(m); i++) {
        const struct veil_conf_node *k = veil_conf_map_key(m, i);
        const char *key = veil_conf_str(k);
        size_t j = 0;
        while (known[j] != NULL && strcmp(known[j], key) != 0)
            j++;
        if (known[j] == NULL)
            return veil_conf_errf(p->err, k, VEIL_CONF_KEY(path, key), "unknown field");
    }
    return 0;
}

/*
 * An optional list of strings at m[key]; each is handed to `check` (may be
 * NULL), which returns an error message or NULL.
 */
static int str_list(struct veil_res__rp *p, const struct veil_conf_node *m,
                    const struct veil_conf_path *path, const char *key,
                    const char *(*check)(const char *s))
{
    const struct veil_conf_node *seq = NULL;
    if (veil_conf_get_seq(m, path, key, &seq, p->err) < 0)
        return -EINVAL;
    const struct veil_conf_path *lp = VEIL_CONF_KEY(path, key);
    for (size_t i = 0; i < veil_conf_len(seq); i++) {
        const struct veil_conf_node *it = veil_conf_seq_at(seq, i);
        const struct veil_conf_path *ip = VEIL_CONF_IDX(lp, i);
        if (veil_conf_expect(it, ip, VEIL_CONF_STR, p->err) < 0)
            return -EINVAL;
        const char *why = check != NULL ? check(it->v.str.ptr) : NULL;
        if (why != NULL)
            return veil_conf_errf(p->err, it, ip, "\"%s\" %s", it->v.str.ptr, why);
    }
    return 0;
}

/* A list of ports written as strings (Istio) or integers. */
static int port_list(struct veil_res__rp *p, const struct veil_conf_node *m,
                     const struct veil_conf_path *path, const char *key)
{
    const struct veil_conf_node *seq = NULL;
    if (veil_conf_get_seq(m, path, key, &seq, p->err) < 0)
        return -EINVAL;
    const struct veil_conf_path *lp = VEIL_CONF_KEY(path, key);
    for (size_t i = 0; i < veil_conf_len(seq); i++) {
        uint16_t port;
        if (veil_res__port_value(p, veil_conf_seq_at(seq, i), VEIL_CONF_IDX(lp, i), true, &port) <
            0)
            return -EINVAL;
    }
    return 0;
}

static const char *check_cidr(const char *s)
{
    unsigned char a[16];
    int fam, len;
    return veil_res_parse_cidr(s, false, a, &fam, &len) == 0 ? NULL
                                                             : "is not a valid IP address or CIDR";
}

static const char *check_namespace(const char *s)
{
    if (strcmp(s, "*") == 0 || (s[0] == '*' && s[1] != '\0') ||
        (s[0] != '\0' && s[strlen(s) - 1] == '*'))
        return NULL; /* Istio's prefix/suffix match */
    return veil_res__dns_label(s, strlen(s)) ? NULL : "is not a valid namespace name";
}

static const char *check_nonempty(const char *s)
{
    return s[0] != '\0' ? NULL : "must not be empty";
}

/* ---- metadata ----------------------------------------------------------- */

static bool cluster_scoped(enum veil_res_kind k)
{
    return k == VEIL_RES_NAMESPACE;
}

/* The group of "group/version", or "" for a core "v1". */
static void split_api_version(const char *av, char *group, size_t n, const char **version)
{
    const char *slash = strrchr(av, '/');
    if (slash == NULL) {
        group[0] = '\0';
        *version = av;
        return;
    }
    snprintf(group, n, "%.*s", (int)(slash - av), av);
    *version = slash + 1;
}

static int parse_header(struct veil_res__rp *p, const struct veil_conf_node *doc, char *group,
                        size_t gn)
{
    struct veil_res *r = p->r;
    const char *av, *kind, *version;
    if (veil_conf_req_str(doc, NULL, "apiVersion", &av, p->err) < 0 ||
        veil_conf_req_str(doc, NULL, "kind", &kind, p->err) < 0)
        return -EINVAL;
    if (av[0] == '\0')
        return veil_conf_errf(p->err, veil_conf_map_get(doc, "apiVersion"),
                              VEIL_CONF_KEY(NULL, "apiVersion"), "must not be empty");
    if (kind[0] == '\0')
        return veil_conf_errf(p->err, veil_conf_map_get(doc, "kind"), VEIL_CONF_KEY(NULL, "kind"),
                              "must not be empty");
    split_api_version(av, group, gn, &version);
    r->kind = veil_res_kind_parse(kind);
    if (r->kind != VEIL_RES_IGNORED && strcmp(kind_api[r->kind].group, group) != 0)
        r->kind = VEIL_RES_IGNORED; /* same name, another API group (a Knative Service) */
    if (r->kind != VEIL_RES_IGNORED) {
        bool ok = false;
        for (int i = 0; i < 4 && kind_api[r->kind].versions[i] != NULL; i++)
            ok = ok || strcmp(kind_api[r->kind].versions[i], version) == 0;
        if (!ok)
            return veil_conf_errf(p->err, veil_conf_map_get(doc, "apiVersion"),
                                  VEIL_CONF_KEY(NULL, "apiVersion"),
                                  "unsupported apiVersion \"%s\" for kind %s", av, kind);
    }
    if (veil_res__dup_to(p, av, &r->api_version) < 0 ||
        veil_res__dup_to(p, kind, &r->kind_name) < 0)
        return -ENOMEM;
    return 0;
}

static bool name_ok(enum veil_res_kind k, const char *name)
{
    size_t len = strlen(name);
    switch (k) {
    case VEIL_RES_NAMESPACE:
        return veil_res__dns_label(name, len);
    case VEIL_RES_SERVICE: /* RFC 1035: starts with a letter */
        return veil_res__dns_label(name, len) && name[0] >= 'a' && name[0] <= 'z';
    case VEIL_RES_IGNORED:
        return len > 0 && len <= DNS_SUBDOMAIN_MAX && strchr(name, '/') == NULL;
    default:
        return veil_res__dns_subdomain(name, len);
    }
}

static int parse_metadata(struct veil_res__rp *p, const struct veil_conf_node *doc,
                          const char *group)
{
    struct veil_res *r = p->r;
    const struct veil_conf_path *mp = VEIL_CONF_KEY(NULL, "metadata");
    const struct veil_conf_node *md;
    const char *name, *ns = NULL;
    if (veil_conf_req_map(doc, NULL, "metadata", &md, p->err) < 0 ||
        veil_conf_req_str(md, mp, "name", &name, p->err) < 0 ||
        veil_conf_get_str(md, mp, "namespace", &ns, p->err) < 0)
        return -EINVAL;
    if (!name_ok(r->kind, name))
        return veil_conf_errf(p->err, veil_conf_map_get(md, "name"), VEIL_CONF_KEY(mp, "name"),
                              "\"%s\" is not a valid name (%s)", name,
                              r->kind == VEIL_RES_NAMESPACE || r->kind == VEIL_RES_SERVICE
                                  ? "lowercase letters, digits and '-', at most 63"
                                  : "lowercase letters, digits, '-' and '.', at most 253");
    if (ns != NULL && !veil_res__dns_label(ns, strlen(ns)))
        return veil_conf_errf(p->err, veil_conf_map_get(md, "namespace"),
                              VEIL_CONF_KEY(mp, "namespace"), "\"%s\" is not a valid namespace",
                              ns);
    if (cluster_scoped(r->kind))
        ns = "";
    else if (ns == NULL)
        ns = r->kind == VEIL_RES_IGNORED ? "" : "default";
    if (veil_res__dup_to(p, name, &r->name) < 0 || veil_res__dup_to(p, ns, &r->ns) < 0)
        return -ENOMEM;
    if (parse_labels(p, veil_conf_map_get(md, "labels"), VEIL_CONF_KEY(mp, "labels"), true,
                     &r->labels) < 0 ||
        parse_labels(p, veil_conf_map_get(md, "annotations"), VEIL_CONF_KEY(mp, "annotations"),
                     false, &r->annotations) < 0)
        return -EINVAL;
    char id[600];
    if (r->kind != VEIL_RES_IGNORED)
        veil_res_id_format(id, sizeof(id), r->kind, ns, name);
    else
        snprintf(id, sizeof(id), "%s%s%s/%s%s%s", r->kind_name, group[0] ? "." : "", group, ns,
                 ns[0] ? "/" : "", name);
    return veil_res__dup_to(p, id, &r->id);
}

/* ---- kinds -------------------------------------------------------------- */

static int parse_selector_map(struct veil_res__rp *p, const struct veil_conf_node *m,
                              const struct veil_conf_path *path, const char *key, bool *has,
                              struct veil_res_labels *out)
{
    const struct veil_conf_node *sel = veil_conf_map_get(m, key);
    *has = sel != NULL && sel->kind != VEIL_CONF_NULL;
    return parse_labels(p, sel, VEIL_CONF_KEY(path, key), true, out);
}

static int parse_svc_port(struct veil_res__rp *p, const struct veil_conf_node *m,
                          const struct veil_conf_path *path, struct veil_res_svc_port *out)
{
    const char *name = "", *proto = "TCP", *app = NULL;
    if (veil_conf_expect(m, path, VEIL_CONF_MAP, p->err) < 0 ||
        veil_conf_get_str(m, path, "name", &name, p->err) < 0 ||
        veil_conf_get_str(m, path, "protocol", &proto, p->err) < 0 ||
        veil_conf_get_str(m, path, "appProtocol", &app, p->err) < 0 ||
        req_port(p, m, path, "port", &out->port) < 0)
        return -EINVAL;
    if (name[0] != '\0' && !port_name(name))
        return veil_conf_errf(p->err, veil_conf_map_get(m, "name"), VEIL_CONF_KEY(path, "name"),
                              "\"%s\" is not a valid port name", name);
    if (strcmp(proto, "TCP") != 0 && strcmp(proto, "UDP") != 0 && strcmp(proto, "SCTP") != 0)
        return veil_conf_errf(p->err, veil_conf_map_get(m, "protocol"),
                              VEIL_CONF_KEY(path, "protocol"),
                              "unknown protocol \"%s\" (TCP, UDP or SCTP)", proto);
    const struct veil_conf_node *tp = veil_conf_map_get(m, "targetPort");
    const struct veil_conf_path *tpp = VEIL_CONF_KEY(path, "targetPort");
    out->target_port = out->port;
    out->target_name = NULL;
    if (tp != NULL && tp->kind == VEIL_CONF_STR && !isdigit((unsigned char)tp->v.str.ptr[0])) {
        if (!port_name(tp->v.str.ptr))
            return veil_conf_errf(p->err, tp, tpp, "\"%s\" is not a valid port name",
                                  tp->v.str.ptr);
        out->target_port = 0;
        if (veil_res__dup_to(p, tp->v.str.ptr, &out->target_name) < 0)
            return -ENOMEM;
    } else if (tp != NULL && tp->kind != VEIL_CONF_NULL) {
        if (veil_res__port_value(p, tp, tpp, true, &out->target_port) < 0)
            return -EINVAL;
    }
    if (veil_res__dup_to(p, name, &out->name) < 0 || veil_res__dup_to(p, proto, &out->protocol) < 0)
        return -ENOMEM;
    out->app_protocol = NULL;
    return app != NULL ? veil_res__dup_to(p, app, &out->app_protocol) : 0;
}

static int parse_service(struct veil_res__rp *p, const struct veil_conf_node *doc)
{
    struct veil_res_service *s = &p->r->u.svc;
    const struct veil_conf_path *sp = VEIL_CONF_KEY(NULL, "spec");
    const struct veil_conf_node *spec, *ports;
    const char *cip = NULL;
    if (veil_conf_req_map(doc, NULL, "spec", &spec, p->err) < 0 ||
        parse_selector_map(p, spec, sp, "selector", &s->has_selector, &s->selector) < 0 ||
        veil_conf_get_str(spec, sp, "clusterIP", &cip, p->err) < 0 ||
        veil_conf_req_seq(spec, sp, "ports", &ports, p->err) < 0)
        return -EINVAL;
    if (cip != NULL && cip[0] != '\0' && strcmp(cip, "None") != 0) {
        if (ip_field(p, spec, sp, "clusterIP", false, &s->cluster_ip) < 0)
            return -EINVAL;
    } else if (cip != NULL && strcmp(cip, "None") == 0) {
        s->cluster_ip = "None";
    }
    const struct veil_conf_path *pp = VEIL_CONF_KEY(sp, "ports");
    s->nports = veil_conf_len(ports);
    if (s->nports == 0)
        return veil_conf_errf(p->err, ports, pp, "a Service needs at least one port");
    struct veil_res_svc_port *v = veil_arena_zalloc(&p->r->_arena, s->nports * sizeof(*v));
    if (v == NULL)
        return veil_res__oom(p);
    s->ports = v;
    for (size_t i = 0; i < s->nports; i++) {
        const struct veil_conf_path *ip = VEIL_CONF_IDX(pp, i);
        const struct veil_conf_node *pn = veil_conf_seq_at(ports, i);
        int rc = parse_svc_port(p, pn, ip, &v[i]);
        if (rc < 0)
            return rc;
        if (s->nports > 1 && v[i].name[0] == '\0')
            return veil_conf_errf(p->err, pn, VEIL_CONF_KEY(ip, "name"),
                                  "required when a Service has more than one port");
        for (size_t j = 0; j < i; j++) {
            if (v[j].port == v[i].port && strcmp(v[j].protocol, v[i].protocol) == 0)
                return veil_conf_errf(p->err, veil_conf_map_get(pn, "port"),
                                      VEIL_CONF_KEY(ip, "port"), "duplicate port %u",
                                      (unsigned)v[i].port);
            if (v[i].name[0] != '\0' && strcmp(v[j].name, v[i].name) == 0)
                return veil_conf_errf(p->err, veil_conf_map_get(pn, "name"),
                                      VEIL_CONF_KEY(ip, "name"), "duplicate port name \"%s\"",
                                      v[i].name);
        }
    }
    return 0;
}

/* Appends the named ports of one container's ports list. */
static int parse_container_ports(struct veil_res__rp *p, const struct veil_conf_node *ports,
                                 const struct veil_conf_path *path, struct veil_res_named_port *v,
                                 size_t *n)
{
    for (size_t i = 0; i < veil_conf_len(ports); i++) {
        const struct veil_conf_node *m = veil_conf_seq_at(ports, i);
        const struct veil_conf_path *ip = VEIL_CONF_IDX(path, i);
        const char *name = NULL;
        uint16_t port;
        if (veil_conf_expect(m, ip, VEIL_CONF_MAP, p->err) < 0 ||
            veil_conf_get_str(m, ip, "name", &name, p->err) < 0 ||
            req_port(p, m, ip, "containerPort", &port) < 0)
            return -EINVAL;
        if (name == NULL)
            continue;
        if (!port_name(name))
            return veil_conf_errf(p->err, veil_conf_map_get(m, "name"), VEIL_CONF_KEY(ip, "name"),
                                  "\"%s\" is not a valid port name", name);
        v[*n].port = port;
        if (veil_res__dup_to(p, name, &v[*n].name) < 0)
            return -ENOMEM;
        (*n)++;
    }
    return 0;
}

static int parse_pod(struct veil_res__rp *p, const struct veil_conf_node *doc)
{
    struct veil_res_workload *w = &p->r->u.wl;
    const struct veil_conf_path *sp = VEIL_CONF_KEY(NULL, "spec");
    const struct veil_conf_path *stp = VEIL_CONF_KEY(NULL, "status");
    const struct veil_conf_node *spec, *status = NULL, *containers = NULL;
    const char *sa = "default", *node = NULL;
    if (veil_conf_req_map(doc, NULL, "spec", &spec, p->err) < 0 ||
        veil_conf_get_str(spec, sp, "serviceAccountName", &sa, p->err) < 0 ||
        veil_conf_get_str(spec, sp, "nodeName", &node, p->err) < 0 ||
        veil_conf_get_seq(spec, sp, "containers", &containers, p->err) < 0 ||
        veil_conf_get_map(doc, NULL, "status", &status, p->err) < 0 ||
        ip_field(p, status, stp, "podIP", false, &w->address) < 0)
        return -EINVAL;
    if (!veil_res__dns_subdomain(sa, strlen(sa)))
        return veil_conf_errf(p->err, veil_conf_map_get(spec, "serviceAccountName"),
                              VEIL_CONF_KEY(sp, "serviceAccountName"),
                              "\"%s\" is not a valid service account name", sa);
    if (node != NULL && !veil_res__dns_subdomain(node, strlen(node)))
        return veil_conf_errf(p->err, veil_conf_map_get(spec, "nodeName"),
                              VEIL_CONF_KEY(sp, "nodeName"), "\"%s\" is not a valid node name",
                              node);
    size_t total = 0;
    const struct veil_conf_path *cp = VEIL_CONF_KEY(sp, "containers");
    for (size_t i = 0; i < veil_conf_len(containers); i++) {
        const struct veil_conf_node *c = veil_conf_seq_at(containers, i), *ports = NULL;
        if (veil_conf_expect(c, VEIL_CONF_IDX(cp, i), VEIL_CONF_MAP, p->err) < 0 ||
            veil_conf_get_seq(c, VEIL_CONF_IDX(cp, i), "ports", &ports, p->err) < 0)
            return -EINVAL;
        total += veil_conf_len(ports);
    }
    struct veil_res_named_port *v = NULL;
    if (total > 0 && (v = veil_arena_zalloc(&p->r->_arena, total * sizeof(*v))) == NULL)
        return veil_res__oom(p);
    w->ports = v;
    w->nports = 0;
    for (size_t i = 0; i < veil_conf_len(containers); i++) {
        const struct veil_conf_node *c = veil_conf_seq_at(containers, i);
        const struct veil_conf_path *ip = VEIL_CONF_IDX(cp, i);
        if (parse_container_ports(p, veil_conf_map_get(c, "ports"), VEIL_CONF_KEY(ip, "ports"), v,
                                  &w->nports) < 0)
            return -EINVAL;
    }
    if (veil_res__dup_to(p, sa, &w->service_account) < 0)
        return -ENOMEM;
    return node != NULL ? veil_res__dup_to(p, node, &w->node) : 0;
}

static int parse_workload_entry(struct veil_res__rp *p, const struct veil_conf_node *doc)
{
    struct veil_res *r = p->r;
    struct veil_res_workload *w = &r->u.wl;
    const struct veil_conf_path *sp = VEIL_CONF_KEY(NULL, "spec");
    const struct veil_conf_node *spec, *ports = NULL;
    const char *sa = "default";
    struct veil_res_labels labels;
    bool has;
    if (veil_conf_req_map(doc, NULL, "spec", &spec, p->err) < 0 ||
        ip_field(p, spec, sp, "address", true, &w->address) < 0 ||
        veil_conf_get_str(spec, sp, "serviceAccount", &sa, p->err) < 0 ||
        veil_conf_get_map(spec, sp, "ports", &ports, p->err) < 0 ||
        parse_selector_map(p, spec, sp, "labels", &has, &labels) < 0)
        return -EINVAL;
    if (!veil_res__dns_subdomain(sa, strlen(sa)))
        return veil_conf_errf(p->err, veil_conf_map_get(spec, "serviceAccount"),
                              VEIL_CONF_KEY(sp, "serviceAccount"),
                              "\"%s\" is not a valid service account name", sa);
    /* Istio selects WorkloadEntries by spec.labels; merge with metadata.labels. */
    if (labels.n > 0) {
        size_t n = r->labels.n + labels.n, k = 0;
        struct veil_res_label *v = veil_arena_alloc(&r->_arena, n * sizeof(*v));
        if (v == NULL)
            return veil_res__oom(p);
        for (size_t i = 0; i < labels.n; i++)
            v[k++] = labels.v[i];
        for (size_t i = 0; i < r->labels.n; i++)
            if (veil_res_label_get(&labels, r->labels.v[i].key) == NULL)
                v[k++] = r->labels.v[i];
        qsort(v, k, sizeof(*v), label_cmp);
        r->labels.v = v;
        r->labels.n = k;
    }
    const struct veil_conf_path *pp = VEIL_CONF_KEY(sp, "ports");
    size_t np = veil_conf_len(ports);
    struct veil_res_named_port *v = NULL;
    if (np > 0 && (v = veil_arena_zalloc(&r->_arena, np * sizeof(*v))) == NULL)
        return veil_res__oom(p);
    for (size_t i = 0; i < np; i++) {
        const char *name = veil_conf_str(veil_conf_map_key(ports, i));
        if (!port_name(name))
            return veil_conf_errf(p->err, veil_conf_map_key(ports, i), VEIL_CONF_KEY(pp, name),
                                  "\"%s\" is not a valid port name", name);
        if (veil_res__port_value(p, veil_conf_map_value(ports, i), VEIL_CONF_KEY(pp, name), false,
                                 &v[i].port) < 0)
            return -EINVAL;
        if (veil_res__dup_to(p, name, &v[i].name) < 0)
            return -ENOMEM;
    }
    w->ports = v;
    w->nports = np;
    const char *node = veil_res_label_get(&r->labels, VEIL_RES_NODE_LABEL);
    if (node == NULL)
        node = veil_res_label_get(&r->annotations, VEIL_RES_NODE_LABEL);
    if (node != NULL && !veil_res__dns_subdomain(node, strlen(node)))
        return veil_conf_errf(p->err, doc, VEIL_CONF_KEY(NULL, "metadata"),
                              "%s: \"%s\" is not a valid node name", VEIL_RES_NODE_LABEL, node);
    w->node = node;
    return veil_res__dup_to(p, sa, &w->service_account);
}

/* One rules[i].from[j].source or rules[i].to[j].operation. */
static int parse_source(struct veil_res__rp *p, const struct veil_conf_node *m,
                        const struct veil_conf_path *path)
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
    if (veil_conf_expect(m, path, VEIL_CONF_MAP, p->err) < 0 ||
        veil_res__known_fields(p, m, path, known) < 0 ||
        str_list(p, m, path, "principals", check_nonempty) < 0 ||
        str_list(p, m, path, "notPrincipals", check_nonempty) < 0 ||
        str_list(p, m, path, "requestPrincipals", check_nonempty) < 0 ||
        str_list(p, m, path, "notRequestPrincipals", check_nonempty) < 0 ||
        str_list(p, m, path, "namespaces", check_namespace) < 0 ||
        str_list(p, m, path, "notNamespaces", check_namespace) < 0 ||
        str_list(p, m, path, "ipBlocks", check_cidr) < 0 ||
        str_list(p, m, path, "notIpBlocks", check_cidr) < 0 ||
        str_list(p, m, path, "remoteIpBlocks", check_cidr) < 0 ||
        str_list(p, m, path, "notRemoteIpBlocks", check_cidr) < 0)
        return -EINVAL;
    return 0;
}

static int parse_operation(struct veil_res__rp *p, const struct veil_conf_node *m,
                           const struct veil_conf_path *path)
{
    static const char *const known[] = {"ports",      "notPorts", "hosts",    "notHosts", "methods",
                                        "notMethods", "paths",    "notPaths", NULL};
    if (veil_conf_expect(m, path, VEIL_CONF_MAP, p->err) < 0 ||
        veil_res__known_fields(p, m, path, known) < 0 || port_list(p, m, path, "ports") < 0 ||
        port_list(p, m, path, "notPorts") < 0 || str_list(p, m, path, "hosts", NULL) < 0 ||
        str_list(p, m, path, "notHosts", NULL) < 0 || str_list(p, m, path, "methods", NULL) < 0 ||
        str_list(p, m, path, "notMethods", NULL) < 0 || str_list(p, m, path, "paths", NULL) < 0 ||
        str_list(p, m, path, "notPaths", NULL) < 0)
        return -EINVAL;
    return 0;
}

/* rules[i].from or rules[i].to: a list of {source: ...} / {operation: ...}. */
static int parse_clauses(struct veil_res__rp *p, const struct veil_conf_node *rule,
                         const struct veil_conf_path *path, const char *key, const char *inner,
                         int (*one)(struct veil_res__rp *, const struct veil_conf_node *,
                                    const struct veil_conf_path *))
{
    const struct veil_conf_node *seq = NULL;
    if (veil_conf_get_seq(rule, path, key, &seq, p->err) < 0)
        return -EINVAL;
    const struct veil_conf_path *lp = VEIL_CONF_KEY(path, key);
    for (size_t i = 0; i < veil_conf_len(seq); i++) {
        const struct veil_conf_node *c = veil_conf_seq_at(seq, i), *m;
        const struct veil_conf_path *cp = VEIL_CONF_IDX(lp, i);
        const char *const known[] = {inner, NULL};
        if (veil_conf_expect(c, cp, VEIL_CONF_MAP, p->err) < 0 ||
            veil_res__known_fields(p, c, cp, known) < 0 ||
            veil_conf_req_map(c, cp, inner, &m, p->err) < 0 ||
            one(p, m, VEIL_CONF_KEY(cp, inner)) < 0)
            return -EINVAL;
    }
    return 0;
}

static int parse_conditions(struct veil_res__rp *p, const struct veil_conf_node *rule,
                            const struct veil_conf_path *path)
{
    static const char *const known[] = {"key", "values", "notValues", NULL};
    const struct veil_conf_node *seq = NULL;
    if (veil_conf_get_seq(rule, path, "when", &seq, p->err) < 0)
        return -EINVAL;
    const struct veil_conf_path *lp = VEIL_CONF_KEY(path, "when");
    for (size_t i = 0; i < veil_conf_len(seq); i++) {
        const struct veil_conf_node *c = veil_conf_seq_at(seq, i);
        const struct veil_conf_path *cp = VEIL_CONF_IDX(lp, i);
        const char *key;
        if (veil_conf_expect(c, cp, VEIL_CONF_MAP, p->err) < 0 ||
            veil_res__known_fields(p, c, cp, known) < 0 ||
            veil_conf_req_str(c, cp, "key", &key, p->err) < 0 ||
            str_list(p, c, cp, "values", NULL) < 0 || str_list(p, c, cp, "notValues", NULL) < 0)
            return -EINVAL;
    }
    return 0;
}

/* Does condition key `key` name something only a waypoint sees? */
static bool l7_condition(const char *key)
{
    static const char *const l4[] = {
        "source.ip",        "remote.ip", "destination.ip", "destination.port", "source.namespace",
        "source.principal", NULL};
    for (size_t i = 0; l4[i] != NULL; i++)
        if (strcmp(key, l4[i]) == 0)
            return false;
    return true;
}

/* The first non-empty list of `keys` in rule[key][j][inner]: writes its path. */
static bool clause_l7(const struct veil_conf_node *rule, const char *key, const char *inner,
                      const char *const *keys, size_t ri, char *at, size_t n)
{
    const struct veil_conf_node *seq = veil_conf_map_get(rule, key);
    for (size_t j = 0; j < veil_conf_len(seq); j++) {
        const struct veil_conf_node *m = veil_conf_map_get(veil_conf_seq_at(seq, j), inner);
        for (size_t k = 0; keys[k] != NULL; k++) {
            if (veil_conf_len(veil_conf_map_get(m, keys[k])) > 0) {
                snprintf(at, n, "spec.rules[%zu].%s[%zu].%s.%s", ri, key, j, inner, keys[k]);
                return true;
            }
        }
    }
    return false;
}

/* Records the first field of the policy that only a waypoint can check. */
static int authz_l7(struct veil_res__rp *p, const struct veil_conf_node *rules)
{
    static const char *const src_l7[] = {"requestPrincipals", "notRequestPrincipals", NULL};
    static const char *const op_l7[] = {"hosts", "notHosts", "methods", "notMethods",
                                        "paths", "notPaths", NULL};
    char at[128];
    for (size_t i = 0; i < veil_conf_len(rules); i++) {
        const struct veil_conf_node *rule = veil_conf_seq_at(rules, i);
        const struct veil_conf_node *when = veil_conf_map_get(rule, "when");
        bool found = clause_l7(rule, "from", "source", src_l7, i, at, sizeof(at)) ||
                     clause_l7(rule, "to", "operation", op_l7, i, at, sizeof(at));
        for (size_t j = 0; !found && j < veil_conf_len(when); j++) {
            const char *key = veil_conf_str(veil_conf_map_get(veil_conf_seq_at(when, j), "key"));
            if (key != NULL && l7_condition(key)) {
                snprintf(at, sizeof(at), "spec.rules[%zu].when[%zu]", i, j);
                found = true;
            }
        }
        if (found)
            return veil_res__dup_to(p, at, &p->r->u.authz.l7_field);
    }
    return 0;
}

static int parse_authz(struct veil_res__rp *p, const struct veil_conf_node *doc)
{
    static const char *const known[] = {"selector", "targetRef", "targetRefs", "action",
                                        "provider", "rules",     NULL};
    static const char *const rule_known[] = {"from", "to", "when", NULL};
    struct veil_res_authz *a = &p->r->u.authz;
    const struct veil_conf_path *sp = VEIL_CONF_KEY(NULL, "spec");
    const struct veil_conf_path *selp = VEIL_CONF_KEY(sp, "selector");
    const struct veil_conf_node *spec = NULL, *sel = NULL, *rules = NULL;
    const char *action = "ALLOW";
    if (veil_conf_get_map(doc, NULL, "spec", &spec, p->err) < 0 ||
        veil_res__known_fields(p, spec, sp, known) < 0 ||
        veil_conf_get_map(spec, sp, "selector", &sel, p->err) < 0 ||
        parse_selector_map(p, sel, selp, "matchLabels", &a->has_selector, &a->selector) < 0 ||
        veil_conf_get_str(spec, sp, "action", &action, p->err) < 0 ||
        veil_conf_get_seq(spec, sp, "rules", &rules, p->err) < 0)
        return -EINVAL;
    a->has_selector = sel != NULL;
    if (strcmp(action, "ALLOW") == 0)
        a->action = VEIL_RES_ALLOW;
    else if (strcmp(action, "DENY") == 0)
        a->action = VEIL_RES_DENY;
    else if (strcmp(action, "AUDIT") == 0)
        a->action = VEIL_RES_AUDIT;
    else if (strcmp(action, "CUSTOM") == 0)
        return veil_conf_errf(p->err, veil_conf_map_get(spec, "action"),
                              VEIL_CONF_KEY(sp, "action"),
                              "action CUSTOM (external authorization) is not supported");
    else
        return veil_conf_errf(p->err, veil_conf_map_get(spec, "action"),
                              VEIL_CONF_KEY(sp, "action"),
                              "unknown action \"%s\" (ALLOW, DENY or AUDIT)", action);
    const struct veil_conf_path *rp = VEIL_CONF_KEY(sp, "rules");
    a->nrules = veil_conf_len(rules);
    for (size_t i = 0; i < a->nrules; i++) {
        const struct veil_conf_node *rule = veil_conf_seq_at(rules, i);
        const struct veil_conf_path *ip = VEIL_CONF_IDX(rp, i);
        if (veil_conf_expect(rule, ip, VEIL_CONF_MAP, p->err) < 0 ||
            veil_res__known_fields(p, rule, ip, rule_known) < 0 ||
            parse_clauses(p, rule, ip, "from", "source", parse_source) < 0 ||
            parse_clauses(p, rule, ip, "to", "operation", parse_operation) < 0 ||
            parse_conditions(p, rule, ip) < 0)
            return -EINVAL;
    }
    a->has_target_refs = veil_conf_map_get(spec, "targetRef") != NULL ||
                         veil_conf_map_get(spec, "targetRefs") != NULL;
    return authz_l7(p, rules);
}

static int mtls_mode(struct veil_res__rp *p, const struct veil_conf_node *m,
                     const struct veil_conf_path *path, enum veil_res_mtls *out)
{
    const char *mode = "UNSET";
    *out = VEIL_RES_MTLS_UNSET;
    if (veil_conf_get_str(m, path, "mode", &mode, p->err) < 0)
        return -EINVAL;
    for (int i = 0; i < 4; i++) {
        if (strcmp(mode, veil_res_mtls_str((enum veil_res_mtls)i)) == 0) {
            *out = (enum veil_res_mtls)i;
            return 0;
        }
    }
    return veil_conf_errf(p->err, veil_conf_map_get(m, "mode"), VEIL_CONF_KEY(path, "mode"),
                          "unknown mode \"%s\" (STRICT, PERMISSIVE, DISABLE or UNSET)", mode);
}

static int parse_peer_authn(struct veil_res__rp *p, const struct veil_conf_node *doc)
{
    struct veil_res_peer_authn *a = &p->r->u.pa;
    const struct veil_conf_path *sp = VEIL_CONF_KEY(NULL, "spec");
    const struct veil_conf_node *spec = NULL, *sel = NULL, *mtls = NULL, *plm = NULL;
    if (veil_conf_get_map(doc, NULL, "spec", &spec, p->err) < 0 ||
        veil_conf_get_map(spec, sp, "selector", &sel, p->err) < 0 ||
        parse_selector_map(p, sel, VEIL_CONF_KEY(sp, "selector"), "matchLabels", &a->has_selector,
                           &a->selector) < 0 ||
        veil_conf_get_map(spec, sp, "mtls", &mtls, p->err) < 0 ||
        mtls_mode(p, mtls, VEIL_CONF_KEY(sp, "mtls"), &a->mode) < 0 ||
        veil_conf_get_map(spec, sp, "portLevelMtls", &plm, p->err) < 0)
        return -EINVAL;
    a->has_selector = sel != NULL;
    const struct veil_conf_path *pp = VEIL_CONF_KEY(sp, "portLevelMtls");
    a->nports = veil_conf_len(plm);
    struct veil_res_port_mtls *v = NULL;
    if (a->nports > 0 && (v = veil_arena_zalloc(&p->r->_arena, a->nports * sizeof(*v))) == NULL)
        return veil_res__oom(p);
    for (size_t i = 0; i < a->nports; i++) {
        const struct veil_conf_node *k = veil_conf_map_key(plm, i);
        const struct veil_conf_node *m = veil_conf_map_value(plm, i);
        const struct veil_conf_path *kp = VEIL_CONF_KEY(pp, k->v.str.ptr);
        if (veil_res__port_value(p, k, kp, true, &v[i].port) < 0 ||
            veil_conf_expect(m, kp, VEIL_CONF_MAP, p->err) < 0 ||
            mtls_mode(p, m, kp, &v[i].mode) < 0)
            return -EINVAL;
    }
    a->ports = v;
    return 0;
}

static int parse_kind(struct veil_res__rp *p, const struct veil_conf_node *doc)
{
    switch (p->r->kind) {
    case VEIL_RES_SERVICE:
        return parse_service(p, doc);
    case VEIL_RES_POD:
        return parse_pod(p, doc);
    case VEIL_RES_WORKLOAD_ENTRY:
        return parse_workload_entry(p, doc);
    case VEIL_RES_AUTHZ_POLICY:
        return parse_authz(p, doc);
    case VEIL_RES_PEER_AUTHN:
        return parse_peer_authn(p, doc);
    case VEIL_RES_HTTP_ROUTE:
    case VEIL_RES_GRPC_ROUTE:
        return veil_res__parse_route(p, doc, p->r->kind == VEIL_RES_GRPC_ROUTE);
    default:
        return 0;
    }
}

static int parse_doc(const struct veil_conf_node *doc, enum veil_res_source src, bool full,
                     struct veil_res **out, struct veil_conf_err *err)
{
    *out = NULL;
    if (doc == NULL || doc->kind == VEIL_CONF_NULL)
        return 0;
    if (veil_conf_expect(doc, NULL, VEIL_CONF_MAP, err) < 0)
        return -EINVAL;
    struct veil_res *r = veil_calloc(1, sizeof(*r));
    if (r == NULL) {
        veil_conf_errf(err, doc, NULL, "out of memory");
        return -ENOMEM;
    }
    veil_arena_init(&r->_arena, 1024, SIZE_MAX);
    r->source = src;
    r->line = doc->pos.line;
    struct veil_res__rp p = {r, err, doc};
    char group[256];
    int rc = parse_header(&p, doc, group, sizeof(group));
    if (rc == 0)
        rc = parse_metadata(&p, doc, group);
    if (rc == 0 && full)
        rc = parse_kind(&p, doc);
    if (rc == 0)
        rc = veil_res__dup_to(&p, doc->pos.file != NULL ? doc->pos.file : "", &r->file);
    if (rc == 0 && (r->raw = veil_res__conf_to_json(doc)) == NULL)
        rc = veil_res__oom(&p);
    if (rc < 0) {
        veil_res_free(r);
        return rc == -ENOMEM ? -ENOMEM : -EINVAL;
    }
    *out = r;
    return 0;
}

int veil_res_parse(const struct veil_conf_node *doc, enum veil_res_source src,
                   struct veil_res **out, struct veil_conf_err *err)
{
    return parse_doc(doc, src, true, out, err);
}

int veil_res_parse_ref(const struct veil_conf_node *doc, struct veil_res **out,
                       struct veil_conf_err *err)
{
    return parse_doc(doc, VEIL_RES_SRC_API, false, out, err);
}

int veil_res__set_cluster_ip(struct veil_res *r, const char *ip)
{
    r->cluster_ip = veil_arena_strndup(&r->_arena, ip, strlen(ip));
    return r->cluster_ip != NULL ? 0 : -ENOMEM;
}
