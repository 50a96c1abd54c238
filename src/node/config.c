/* The node proxy's configuration tables (config.h). */
#include "node/config.h"

#include "core/alloc.h"
#include "core/file.h"
#include "core/fmt.h"
#include "tls/spiffe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- string -> item hash map ---- */

static uint64_t hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

static void idx_clear(struct veil_node_idx *x)
{
    for (size_t i = 0; i < x->cap; i++) {
        struct veil_node_idx_ent *e = x->b[i];
        while (e != NULL) {
            struct veil_node_idx_ent *next = e->next;
            veil_free(e->k);
            veil_free(e);
            e = next;
        }
    }
    veil_free(x->b);
    memset(x, 0, sizeof(*x));
}

static struct veil_node_idx_ent **idx_slot(const struct veil_node_idx *x, const char *k)
{
    if (x->cap == 0)
        return NULL;
    struct veil_node_idx_ent **p = &x->b[hash(k) & (x->cap - 1)];
    while (*p != NULL && strcmp((*p)->k, k) != 0)
        p = &(*p)->next;
    return p;
}

static struct veil_node_item *idx_get(const struct veil_node_idx *x, const char *k)
{
    struct veil_node_idx_ent **p = idx_slot(x, k);
    return p != NULL && *p != NULL ? (*p)->item : NULL;
}

static int idx_grow(struct veil_node_idx *x)
{
    size_t cap = x->cap != 0 ? x->cap * 2 : 16;
    struct veil_node_idx_ent **b = veil_calloc(cap, sizeof(*b));
    if (b == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < x->cap; i++) {
        struct veil_node_idx_ent *e = x->b[i];
        while (e != NULL) {
            struct veil_node_idx_ent *next = e->next;
            size_t h = hash(e->k) & (cap - 1);
            e->next = b[h];
            b[h] = e;
            e = next;
        }
    }
    veil_free(x->b);
    x->b = b;
    x->cap = cap;
    return 0;
}

/* Sets k -> item; *old gets the item it replaces (or NULL). */
static int idx_put(struct veil_node_idx *x, const char *k, struct veil_node_item *item,
                   struct veil_node_item **old)
{
    if (old != NULL)
        *old = NULL;
    struct veil_node_idx_ent **p = idx_slot(x, k);
    if (p != NULL && *p != NULL) {
        if (old != NULL)
            *old = (*p)->item;
        (*p)->item = item;
        return 0;
    }
    if (x->n + 1 > x->cap && idx_grow(x) != 0)
        return -ENOMEM;
    struct veil_node_idx_ent *e = veil_calloc(1, sizeof(*e));
    if (e == NULL || (e->k = veil_strdup(k)) == NULL) {
        veil_free(e);
        return -ENOMEM;
    }
    size_t h = hash(k) & (x->cap - 1);
    e->item = item;
    e->next = x->b[h];
    x->b[h] = e;
    x->n++;
    return 0;
}

static struct veil_node_item *idx_del(struct veil_node_idx *x, const char *k)
{
    struct veil_node_idx_ent **p = idx_slot(x, k);
    if (p == NULL || *p == NULL)
        return NULL;
    struct veil_node_idx_ent *e = *p;
    struct veil_node_item *item = e->item;
    *p = e->next;
    veil_free(e->k);
    veil_free(e);
    x->n--;
    return item;
}

/* ---- items ---- */

static void wl_free(struct veil_node_wl *w)
{
    if (w == NULL)
        return;
    veil_free(w->ns);
    veil_free(w->name);
    veil_free(w->node);
    veil_free(w->service_account);
    veil_free(w->identity);
    veil_free(w->waypoint);
    veil_free(w);
}

static void svc_free(struct veil_node_svc *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->nports; i++)
        veil_free(s->ports[i].name);
    veil_free(s->ports);
    for (size_t i = 0; i < s->neps; i++) {
        veil_free(s->eps[i].workload);
        veil_free(s->eps[i].identity);
        veil_free(s->eps[i].node);
        veil_free(s->eps[i].ports);
    }
    veil_free(s->eps);
    veil_free(s->waypoint.name);
    veil_free(s->waypoint.ns);
    veil_free(s->waypoint.identity);
    veil_free(s->waypoint.workload);
    veil_free(s->ns);
    veil_free(s->name);
    veil_free(s);
}

static void item_free(struct veil_node_item *it)
{
    if (it == NULL)
        return;
    if (it->kind == VEIL_NODE_WORKLOAD)
        wl_free(it->u.wl);
    else if (it->kind == VEIL_NODE_SERVICE)
        svc_free(it->u.svc);
    json_decref(it->json);
    veil_free(it->key);
    veil_free(it->ns);
    veil_free(it->name);
    veil_free(it);
}

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
                                                      ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err != NULL && errlen > 0)
        vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -EINVAL;
}

static const char *jstr(json_t *o, const char *k)
{
    return json_string_value(json_object_get(o, k));
}

/* An optional string field: 0 (absent or a string, *out set), -EINVAL. */
static int opt_str(json_t *o, const char *k, const char **out)
{
    json_t *v = json_object_get(o, k);
    *out = NULL;
    if (v == NULL || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return -EINVAL;
    *out = json_string_value(v);
    return 0;
}

static char *dup_or_null(const char *s, int *rc)
{
    if (s == NULL)
        return NULL;
    char *d = veil_strdup(s);
    if (d == NULL)
        *rc = -ENOMEM;
    return d;
}

static int parse_ip(const char *s, struct in_addr *out)
{
    return s != NULL && inet_pton(AF_INET, s, out) == 1 ? 0 : -EINVAL;
}

static int parse_port(json_t *v, uint16_t *out)
{
    if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 65535)
        return -EINVAL;
    *out = (uint16_t)json_integer_value(v);
    return 0;
}

static int parse_wl(struct veil_node_item *it, json_t *spec, char *err, size_t errlen)
{
    const char *addr, *node, *sa, *id;
    if (opt_str(spec, "address", &addr) || opt_str(spec, "node", &node) ||
        opt_str(spec, "serviceAccount", &sa) || opt_str(spec, "identity", &id))
        return fail(err, errlen, "%s: a field of spec is not a string", it->key);
    if (id == NULL)
        return fail(err, errlen, "%s: spec.identity is missing", it->key);
    struct veil_node_wl *w = veil_calloc(1, sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    it->u.wl = w;
    if (addr != NULL) {
        if (parse_ip(addr, &w->addr) != 0)
            return fail(err, errlen, "%s: spec.address: not an IPv4 address: \"%s\"", it->key,
                        addr);
        w->has_addr = true;
        inet_ntop(AF_INET, &w->addr, w->addr_str, sizeof(w->addr_str));
    }
    int rc = 0;
    w->ns = dup_or_null(it->ns, &rc);
    w->name = dup_or_null(it->name, &rc);
    w->node = dup_or_null(node, &rc);
    w->service_account = dup_or_null(sa != NULL ? sa : "default", &rc);
    w->identity = dup_or_null(id, &rc);
    /* Labels are the control plane's to check: a waypoint is a workload
     * with a non-empty string under the label. */
    const char *wp = jstr(json_object_get(spec, "labels"), VEIL_NODE_WAYPOINT_LABEL);
    if (wp != NULL && wp[0] != '\0')
        w->waypoint = dup_or_null(wp, &rc);
    return rc;
}

static int parse_ep(struct veil_node_ep *ep, json_t *e, const char *key, size_t i, char *err,
                    size_t errlen)
{
    const char *wl, *addr, *node, *id;
    if (!json_is_object(e) || opt_str(e, "workload", &wl) || opt_str(e, "address", &addr) ||
        opt_str(e, "node", &node) || opt_str(e, "identity", &id) || wl == NULL || id == NULL)
        return fail(err, errlen, "%s: spec.endpoints[%zu]: malformed", key, i);
    if (addr != NULL) {
        if (parse_ip(addr, &ep->addr) != 0)
            return fail(err, errlen, "%s: spec.endpoints[%zu].address: not an IPv4 address", key,
                        i);
        ep->has_addr = true;
    }
    int rc = 0;
    ep->workload = dup_or_null(wl, &rc);
    ep->identity = dup_or_null(id, &rc);
    ep->node = dup_or_null(node, &rc);
    if (rc != 0)
        return rc;
    json_t *ports = json_object_get(e, "ports"), *p;
    if (ports != NULL && !json_is_array(ports))
        return fail(err, errlen, "%s: spec.endpoints[%zu].ports: not a list", key, i);
    size_t n = json_array_size(ports), j;
    if (n > 0 && (ep->ports = veil_calloc(n, sizeof(*ep->ports))) == NULL)
        return -ENOMEM;
    json_array_foreach(ports, j, p)
    {
        if (!json_is_object(p) || parse_port(json_object_get(p, "port"), &ep->ports[j].port) ||
            parse_port(json_object_get(p, "targetPort"), &ep->ports[j].target))
            return fail(err, errlen, "%s: spec.endpoints[%zu].ports[%zu]: bad port", key, i, j);
        ep->nports++;
    }
    return 0;
}

/* spec.waypoint (CONTRACT A, docs/resources.md): absent or null, or all of
 * name, namespace, address (IPv4) and identity (a workload SPIFFE ID), and
 * optionally workload. */
static int parse_svc_wp(struct veil_node_item *it, json_t *spec, char *err, size_t errlen)
{
    json_t *o = json_object_get(spec, "waypoint");
    if (o == NULL || json_is_null(o))
        return 0;
    const char *name, *ns, *addr, *id, *wl;
    if (!json_is_object(o) || opt_str(o, "name", &name) || opt_str(o, "namespace", &ns) ||
        opt_str(o, "address", &addr) || opt_str(o, "identity", &id) || opt_str(o, "workload", &wl))
        return fail(err, errlen, "%s: spec.waypoint: not an object of strings", it->key);
    if (name == NULL || name[0] == '\0' || ns == NULL || ns[0] == '\0')
        return fail(err, errlen, "%s: spec.waypoint: name and namespace are required", it->key);
    struct veil_node_svc_wp *w = &it->u.svc->waypoint;
    if (parse_ip(addr, &w->addr) != 0)
        return fail(err, errlen, "%s: spec.waypoint.address: not an IPv4 address: \"%s\"", it->key,
                    addr != NULL ? addr : "");
    struct veil_spiffe_id sid;
    if (id == NULL || veil_spiffe_parse(id, &sid) != 0 || sid.kind != VEIL_SPIFFE_WORKLOAD)
        return fail(err, errlen, "%s: spec.waypoint.identity: not a workload SPIFFE ID: \"%s\"",
                    it->key, id != NULL ? id : "");
    int rc = 0;
    w->name = dup_or_null(name, &rc);
    w->ns = dup_or_null(ns, &rc);
    w->identity = dup_or_null(id, &rc);
    w->workload = dup_or_null(wl, &rc);
    it->u.svc->has_waypoint = rc == 0;
    return rc;
}

static int parse_svc(struct veil_node_item *it, json_t *spec, char *err, size_t errlen)
{
    const char *vip;
    if (opt_str(spec, "clusterIP", &vip))
        return fail(err, errlen, "%s: spec.clusterIP: not a string", it->key);
    struct veil_node_svc *s = veil_calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    it->u.svc = s;
    int rc = 0;
    s->ns = dup_or_null(it->ns, &rc);
    s->name = dup_or_null(it->name, &rc);
    if (rc != 0)
        return rc;
    if (vip != NULL && strcmp(vip, "None") != 0 && vip[0] != '\0') {
        if (parse_ip(vip, &s->vip) != 0)
            return fail(err, errlen, "%s: spec.clusterIP: not an IPv4 address: \"%s\"", it->key,
                        vip);
        s->has_vip = true;
    }
    json_t *ports = json_object_get(spec, "ports"), *eps = json_object_get(spec, "endpoints"), *p;
    if ((ports != NULL && !json_is_array(ports)) || (eps != NULL && !json_is_array(eps)))
        return fail(err, errlen, "%s: spec.ports and spec.endpoints must be lists", it->key);
    size_t n = json_array_size(ports), i;
    if (n > 0 && (s->ports = veil_calloc(n, sizeof(*s->ports))) == NULL)
        return -ENOMEM;
    json_array_foreach(ports, i, p)
    {
        const char *name;
        if (!json_is_object(p) || opt_str(p, "name", &name) ||
            parse_port(json_object_get(p, "port"), &s->ports[i].port))
            return fail(err, errlen, "%s: spec.ports[%zu]: bad port", it->key, i);
        s->ports[i].name = dup_or_null(name, &rc);
        s->nports++;
        if (rc != 0)
            return rc;
    }
    n = json_array_size(eps);
    if (n > 0 && (s->eps = veil_calloc(n, sizeof(*s->eps))) == NULL)
        return -ENOMEM;
    json_array_foreach(eps, i, p)
    {
        s->neps++;
        if ((rc = parse_ep(&s->eps[i], p, it->key, i, err, errlen)) != 0)
            return rc;
    }
    return parse_svc_wp(it, spec, err, errlen);
}

static enum veil_node_item_kind kind_of(const char *kind)
{
    if (strcmp(kind, "Workload") == 0)
        return VEIL_NODE_WORKLOAD;
    if (strcmp(kind, "Service") == 0)
        return VEIL_NODE_SERVICE;
    if (strcmp(kind, "AuthorizationPolicy") == 0)
        return VEIL_NODE_AUTHZ_POLICY;
    if (strcmp(kind, "PeerAuthentication") == 0)
        return VEIL_NODE_PEER_AUTHN;
    if (strcmp(kind, "HTTPRoute") == 0 || strcmp(kind, "GRPCRoute") == 0)
        return VEIL_NODE_ROUTE;
    return VEIL_NODE_OTHER;
}

/* Parses one upsert into a new item (*out), or fails with a reason. */
static int item_parse(const struct veil_node_cfg *cfg, json_t *obj, size_t i,
                      struct veil_node_item **out, char *err, size_t errlen)
{
    *out = NULL;
    const char *key = jstr(obj, "key"), *kind = jstr(obj, "kind"), *ns = jstr(obj, "namespace"),
               *name = jstr(obj, "name");
    json_t *spec = json_object_get(obj, "spec");
    if (!json_is_object(obj) || key == NULL || kind == NULL || ns == NULL || name == NULL)
        return fail(err, errlen, "upserts[%zu]: key, kind, namespace and name are required", i);
    if (!json_is_object(spec))
        return fail(err, errlen, "%s: spec is missing or not an object", key);
    struct veil_node_item *it = veil_calloc(1, sizeof(*it));
    if (it == NULL)
        return -ENOMEM;
    int rc = 0;
    it->kind = kind_of(kind);
    it->key = dup_or_null(key, &rc);
    it->ns = dup_or_null(ns, &rc);
    it->name = dup_or_null(name, &rc);
    it->json = json_incref(obj);
    if (rc == 0 && it->kind == VEIL_NODE_WORKLOAD)
        rc = parse_wl(it, spec, err, errlen);
    else if (rc == 0 && it->kind == VEIL_NODE_SERVICE)
        rc = parse_svc(it, spec, err, errlen);
    else if (rc == 0 && (it->kind == VEIL_NODE_AUTHZ_POLICY || it->kind == VEIL_NODE_PEER_AUTHN) &&
             cfg->hooks.check_policy != NULL)
        rc = cfg->hooks.check_policy(cfg->hooks.ctx, it, err, errlen);
    else if (rc == 0 && it->kind == VEIL_NODE_ROUTE && cfg->route_hooks.check != NULL)
        rc = cfg->route_hooks.check(cfg->route_hooks.ctx, it, err, errlen);
    if (rc != 0) {
        item_free(it);
        return rc;
    }
    *out = it;
    return 0;
}

/* ---- tables ---- */

void veil_node_cfg_init(struct veil_node_cfg *cfg, const struct veil_node_cfg_hooks *hooks)
{
    memset(cfg, 0, sizeof(*cfg));
    if (hooks != NULL)
        cfg->hooks = *hooks;
}

void veil_node_cfg_set_route_hooks(struct veil_node_cfg *cfg,
                                   const struct veil_node_cfg_route_hooks *hooks)
{
    cfg->route_hooks = hooks != NULL ? *hooks : (struct veil_node_cfg_route_hooks){0};
}

static void items_clear(struct veil_node_idx *items)
{
    for (size_t i = 0; i < items->cap; i++)
        for (struct veil_node_idx_ent *e = items->b[i]; e != NULL; e = e->next)
            item_free(e->item);
    idx_clear(items);
}

/* The indexes built from the items (reindex()). */
static void sec_clear(struct veil_node_cfg *cfg)
{
    idx_clear(&cfg->wl_by_ip);
    idx_clear(&cfg->svc_by_vip);
    idx_clear(&cfg->svc_by_name);
    idx_clear(&cfg->ep_by_ip);
    idx_clear(&cfg->wp_by_id);
    idx_clear(&cfg->wpsvc_by_id);
}

/* dst's indexes are replaced by src's (which dst then owns). */
static void sec_move(struct veil_node_cfg *dst, const struct veil_node_cfg *src)
{
    sec_clear(dst);
    dst->wl_by_ip = src->wl_by_ip;
    dst->svc_by_vip = src->svc_by_vip;
    dst->svc_by_name = src->svc_by_name;
    dst->ep_by_ip = src->ep_by_ip;
    dst->wp_by_id = src->wp_by_id;
    dst->wpsvc_by_id = src->wpsvc_by_id;
}

void veil_node_cfg_free(struct veil_node_cfg *cfg)
{
    items_clear(&cfg->items);
    sec_clear(cfg);
}

static int index_item(struct veil_node_cfg *cfg, struct veil_node_item *it)
{
    char k[512];
    if (it->kind == VEIL_NODE_WORKLOAD) {
        const struct veil_node_wl *w = it->u.wl;
        int rc = w->has_addr ? idx_put(&cfg->wl_by_ip, w->addr_str, it, NULL) : 0;
        if (rc == 0 && w->waypoint != NULL)
            rc = idx_put(&cfg->wp_by_id, w->identity, it, NULL);
        return rc;
    }
    if (it->kind != VEIL_NODE_SERVICE)
        return 0;
    snprintf(k, sizeof(k), "%s/%s", it->ns, it->name);
    int rc = idx_put(&cfg->svc_by_name, k, it, NULL);
    for (size_t i = 0; rc == 0 && i < it->u.svc->neps; i++)
        if (it->u.svc->eps[i].has_addr) {
            inet_ntop(AF_INET, &it->u.svc->eps[i].addr, k, sizeof(k));
            rc = idx_put(&cfg->ep_by_ip, k, it, NULL);
        }
    if (rc == 0 && it->u.svc->has_vip) {
        inet_ntop(AF_INET, &it->u.svc->vip, k, sizeof(k));
        rc = idx_put(&cfg->svc_by_vip, k, it, NULL);
    }
    if (rc == 0 && it->u.svc->has_waypoint && it->u.svc->waypoint.identity != NULL)
        rc = idx_put(&cfg->wpsvc_by_id, it->u.svc->waypoint.identity, it, NULL);
    return rc;
}

/* Rebuilds the secondary indexes into fresh maps, swapped in on success. */
static int reindex(struct veil_node_cfg *cfg)
{
    struct veil_node_cfg tmp = {.items = cfg->items};
    for (size_t i = 0; i < cfg->items.cap; i++)
        for (struct veil_node_idx_ent *e = cfg->items.b[i]; e != NULL; e = e->next)
            if (index_item(&tmp, e->item) != 0) {
                sec_clear(&tmp);
                return -ENOMEM;
            }
    sec_move(cfg, &tmp);
    return 0;
}

static bool is_policy(const struct veil_node_item *it)
{
    return it->kind == VEIL_NODE_AUTHZ_POLICY || it->kind == VEIL_NODE_PEER_AUTHN;
}

/* Tells the hook of `kind` (a policy or a route kind; key NULL: forget all
 * of that hook's items) that key changed to it (NULL: removed). */
static void notify(struct veil_node_cfg *cfg, enum veil_node_item_kind kind, const char *key,
                   const struct veil_node_item *it)
{
    if (kind == VEIL_NODE_ROUTE && cfg->route_hooks.route != NULL)
        cfg->route_hooks.route(cfg->route_hooks.ctx, key, it);
    else if (kind != VEIL_NODE_ROUTE && cfg->hooks.policy != NULL)
        cfg->hooks.policy(cfg->hooks.ctx, key, it);
}

static bool is_hooked(const struct veil_node_item *it)
{
    return is_policy(it) || it->kind == VEIL_NODE_ROUTE;
}

struct parsed {
    uint64_t version;
    bool full;
    size_t n;
    struct veil_node_item **items;
    json_t *removals;
};

static void parsed_free(struct parsed *p)
{
    for (size_t i = 0; i < p->n; i++)
        item_free(p->items[i]);
    veil_free(p->items);
    p->n = 0;
    p->items = NULL;
}

static int parse_update(const struct veil_node_cfg *cfg, json_t *u, struct parsed *p, char *err,
                        size_t errlen)
{
    json_t *v = json_object_get(u, "version"), *ups = json_object_get(u, "upserts"), *it;
    p->removals = json_object_get(u, "removals");
    if (!json_is_object(u) || !json_is_integer(v) || json_integer_value(v) < 0)
        return fail(err, errlen, "an update needs an integer version");
    const char *type = jstr(u, "type");
    if (type != NULL && strcmp(type, "update") != 0)
        return fail(err, errlen, "unknown message type \"%s\"", type);
    p->version = (uint64_t)json_integer_value(v);
    p->full = json_is_true(json_object_get(u, "full"));
    if ((ups != NULL && !json_is_array(ups)) ||
        (p->removals != NULL && !json_is_array(p->removals)))
        return fail(err, errlen, "upserts and removals must be lists");
    if (!p->full && p->version <= cfg->version && cfg->loaded)
        return fail(err, errlen, "version %llu is not newer than %llu",
                    (unsigned long long)p->version, (unsigned long long)cfg->version);
    size_t i, n = json_array_size(ups);
    if (n > 0 && (p->items = veil_calloc(n, sizeof(*p->items))) == NULL)
        return -ENOMEM;
    json_array_foreach(ups, i, it)
    {
        int rc = item_parse(cfg, it, i, &p->items[i], err, errlen);
        if (rc != 0)
            return rc;
        p->n++;
    }
    json_array_foreach(p->removals, i, it)
    {
        if (!json_is_string(it))
            return fail(err, errlen, "removals[%zu]: not a string", i);
    }
    return 0;
}

/* Commits a checked update. Only allocation can fail here: the map slots
 * are reserved first, so a failure leaves everything as it was. */
static int commit(struct veil_node_cfg *cfg, struct parsed *p)
{
    struct veil_node_idx next = {0};
    size_t i;
    json_t *r;
    /* Build the next key map without touching the current one. */
    if (!p->full)
        for (size_t b = 0; b < cfg->items.cap; b++)
            for (struct veil_node_idx_ent *e = cfg->items.b[b]; e != NULL; e = e->next)
                if (idx_put(&next, e->k, e->item, NULL) != 0)
                    goto nomem;
    json_array_foreach(p->removals, i, r)
    {
        idx_del(&next, json_string_value(r));
    }
    for (i = 0; i < p->n; i++)
        if (idx_put(&next, p->items[i]->key, p->items[i], NULL) != 0)
            goto nomem;
    struct veil_node_cfg tmp = {.items = next};
    if (reindex(&tmp) != 0)
        goto nomem;
    /* Point of no return: free what is gone, tell about policies. */
    if (p->full) {
        notify(cfg, VEIL_NODE_AUTHZ_POLICY, NULL, NULL);
        notify(cfg, VEIL_NODE_ROUTE, NULL, NULL);
    }
    for (size_t b = 0; b < cfg->items.cap; b++)
        for (struct veil_node_idx_ent *e = cfg->items.b[b]; e != NULL; e = e->next) {
            struct veil_node_item *now = idx_get(&next, e->k);
            if (now != e->item) {
                if (now == NULL && is_hooked(e->item) && !p->full)
                    notify(cfg, e->item->kind, e->k, NULL);
                item_free(e->item);
            }
        }
    for (i = 0; i < p->n; i++)
        if (idx_get(&next, p->items[i]->key) == p->items[i] && is_hooked(p->items[i]))
            notify(cfg, p->items[i]->kind, p->items[i]->key, p->items[i]);
    /* Upserts that a later upsert of the same key replaced. */
    for (i = 0; i < p->n; i++)
        if (idx_get(&next, p->items[i]->key) != p->items[i])
            item_free(p->items[i]);
    veil_free(p->items);
    p->items = NULL;
    p->n = 0;
    idx_clear(&cfg->items);
    cfg->items = next;
    sec_move(cfg, &tmp);
    return 0;
nomem:
    idx_clear(&next);
    return -ENOMEM;
}

static int apply_json(struct veil_node_cfg *cfg, json_t *u, uint64_t *version, char *err,
                      size_t errlen)
{
    struct parsed p = {0};
    int rc = parse_update(cfg, u, &p, err, errlen);
    if (rc == 0)
        rc = commit(cfg, &p);
    if (rc == -ENOMEM)
        fail(err, errlen, "out of memory");
    if (rc == 0) {
        cfg->version = p.version;
        cfg->loaded = true;
        if (version != NULL)
            *version = p.version;
    }
    parsed_free(&p);
    return rc;
}

int veil_node_cfg_apply(struct veil_node_cfg *cfg, const char *json, size_t len, uint64_t *version,
                        char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *u = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (u == NULL)
        return fail(err, errlen, "update is not JSON: %s (column %d)", jerr.text, jerr.column);
    int rc = apply_json(cfg, u, version, err, errlen);
    json_decref(u);
    return rc;
}

/* ---- persistence ---- */

static int key_cmp(const void *a, const void *b)
{
    return strcmp((*(struct veil_node_item *const *)a)->key,
                  (*(struct veil_node_item *const *)b)->key);
}

int veil_node_cfg_dump(const struct veil_node_cfg *cfg, char **out, size_t *len)
{
    struct veil_node_item **all = veil_calloc(cfg->items.n + 1, sizeof(*all));
    json_t *items = json_array();
    size_t n = 0;
    if (all == NULL || items == NULL) {
        veil_free(all);
        json_decref(items);
        return -ENOMEM;
    }
    for (size_t b = 0; b < cfg->items.cap; b++)
        for (struct veil_node_idx_ent *e = cfg->items.b[b]; e != NULL; e = e->next)
            all[n++] = e->item;
    qsort(all, n, sizeof(*all), key_cmp);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        rc = json_array_append(items, all[i]->json);
    veil_free(all);
    json_t *doc = rc == 0
                      ? json_pack("{s:I,s:o}", "version", (json_int_t)cfg->version, "items", items)
                      : NULL;
    if (doc == NULL && rc != 0)
        json_decref(items);
    char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(doc);
    if (text == NULL)
        return -ENOMEM;
    size_t l = strlen(text);
    *out = veil_malloc(l + 2);
    if (*out != NULL) {
        memcpy(*out, text, l);
        (*out)[l] = '\n';
        (*out)[l + 1] = '\0';
        *len = l + 1;
    }
    free(text);
    return *out != NULL ? 0 : -ENOMEM;
}

int veil_node_cfg_save(const struct veil_node_cfg *cfg, const char *path)
{
    char *text;
    size_t len;
    int rc = veil_node_cfg_dump(cfg, &text, &len);
    if (rc != 0)
        return rc;
    rc = veil_file_write_atomic(path, text, len, 0600, NULL);
    veil_free(text);
    return rc;
}

int veil_node_cfg_load(struct veil_node_cfg *cfg, const char *path, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        FILE *f = fopen(path, "r");
        if (f == NULL)
            return errno == ENOENT ? -ENOENT : fail(err, errlen, "%s: %s", path, strerror(errno));
        fclose(f);
        return fail(err, errlen, "%s: not JSON: %s (line %d)", path, jerr.text, jerr.line);
    }
    json_t *u = json_pack("{s:s,s:O,s:b,s:O,s:[]}", "type", "update", "version",
                          json_object_get(doc, "version"), "full", 1, "upserts",
                          json_object_get(doc, "items"), "removals");
    json_decref(doc);
    if (u == NULL)
        return fail(err, errlen, "%s: needs version and items", path);
    int rc = apply_json(cfg, u, NULL, err, errlen);
    json_decref(u);
    return rc;
}

/* ---- lookups ---- */

const struct veil_node_item *veil_node_cfg_get(const struct veil_node_cfg *cfg, const char *key)
{
    return idx_get(&cfg->items, key);
}

const struct veil_node_item *veil_node_cfg_wl_item_by_ip(const struct veil_node_cfg *cfg,
                                                         struct in_addr ip)
{
    char k[INET_ADDRSTRLEN];
    veil_fmt_ip4(k, ip);
    return idx_get(&cfg->wl_by_ip, k);
}

const struct veil_node_wl *veil_node_cfg_wl_by_ip(const struct veil_node_cfg *cfg,
                                                  struct in_addr ip)
{
    const struct veil_node_item *it = veil_node_cfg_wl_item_by_ip(cfg, ip);
    return it != NULL ? it->u.wl : NULL;
}

const struct veil_node_ep *veil_node_cfg_ep_by_ip(const struct veil_node_cfg *cfg,
                                                  struct in_addr ip)
{
    char k[INET_ADDRSTRLEN];
    veil_fmt_ip4(k, ip);
    const struct veil_node_item *it = idx_get(&cfg->ep_by_ip, k);
    for (size_t i = 0; it != NULL && i < it->u.svc->neps; i++)
        if (it->u.svc->eps[i].has_addr && it->u.svc->eps[i].addr.s_addr == ip.s_addr)
            return &it->u.svc->eps[i];
    return NULL;
}

struct veil_node_svc *veil_node_cfg_svc_by_vip(const struct veil_node_cfg *cfg, struct in_addr vip)
{
    char k[INET_ADDRSTRLEN];
    veil_fmt_ip4(k, vip);
    struct veil_node_item *it = idx_get(&cfg->svc_by_vip, k);
    return it != NULL ? it->u.svc : NULL;
}

const struct veil_node_wl *veil_node_cfg_waypoint_by_id(const struct veil_node_cfg *cfg,
                                                        const char *id)
{
    const struct veil_node_item *it = id != NULL ? idx_get(&cfg->wp_by_id, id) : NULL;
    return it != NULL ? it->u.wl : NULL;
}

bool veil_node_cfg_is_waypoint(const struct veil_node_cfg *cfg, const char *id)
{
    return id != NULL &&
           (idx_get(&cfg->wp_by_id, id) != NULL || idx_get(&cfg->wpsvc_by_id, id) != NULL);
}

struct veil_node_svc *veil_node_cfg_svc_by_name(const struct veil_node_cfg *cfg, const char *ns,
                                                const char *name)
{
    char k[512];
    if ((size_t)snprintf(k, sizeof(k), "%s/%s", ns, name) >= sizeof(k))
        return NULL;
    struct veil_node_item *it = idx_get(&cfg->svc_by_name, k);
    return it != NULL ? it->u.svc : NULL;
}

static bool ep_target(const struct veil_node_ep *ep, uint16_t port, uint16_t *target)
{
    if (!ep->has_addr)
        return false;
    for (size_t i = 0; i < ep->nports; i++)
        if (ep->ports[i].port == port) {
            *target = ep->ports[i].target;
            return true;
        }
    return false;
}

const struct veil_node_ep *veil_node_svc_pick(struct veil_node_svc *svc, uint16_t port,
                                              uint16_t *target)
{
    for (size_t i = 0; i < svc->neps; i++) {
        const struct veil_node_ep *ep = &svc->eps[svc->_rr++ % svc->neps];
        if (ep_target(ep, port, target))
            return ep;
    }
    return NULL;
}

const struct veil_node_svc_port *veil_node_svc_port(const struct veil_node_svc *svc, uint16_t port)
{
    for (size_t i = 0; i < svc->nports; i++)
        if (svc->ports[i].port == port)
            return &svc->ports[i];
    return NULL;
}

bool veil_node_svc_has_port(const struct veil_node_svc *svc, uint16_t port)
{
    return veil_node_svc_port(svc, port) != NULL;
}

int veil_node_cfg_each(const struct veil_node_cfg *cfg,
                       int (*fn)(void *arg, const struct veil_node_item *it), void *arg)
{
    for (size_t b = 0; b < cfg->items.cap; b++)
        for (struct veil_node_idx_ent *e = cfg->items.b[b]; e != NULL; e = e->next) {
            int rc = fn(arg, e->item);
            if (rc != 0)
                return rc;
        }
    return 0;
}
