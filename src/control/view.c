/*
 * Registry and per-node views: derived items, per-node sent state, deltas
 * and resume.
 */
#include "control/view.h"

#include "control/resource.h"
#include "control/store.h"
#include "core/alloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY_MAX    600
#define REASON_MAX 512

#define MAP_EACH(m, s)                                                                             \
    for (struct veil_store__slot *s = (m)->_slots; s < (m)->_slots + (m)->_cap; s++)               \
        if (s->key != NULL)

#define H(s) veil_store__hash(s)

/*
 * An interned item key, shared by items, sent maps, dirty sets and logs.
 * A Service key is `shared`: every node is sent every Service, so rather
 * than a per-node entry each, the key holds `base`, the hash every node's
 * sent state has for it unless that state records an exception (see struct
 * sent). A non-zero base holds a reference and puts the key in v->shared.
 */
struct vkey {
    uint64_t h;
    uint64_t base; /* shared keys: the hash of the current item, 0: none */
    size_t refs;
    bool shared;
    char s[];
};

enum item_kind { IT_WORKLOAD, IT_SERVICE, IT_ROUTE, IT_POLICY };

struct item {
    struct vkey *key;
    enum item_kind kind;
    char *ns;
    char *node; /* IT_WORKLOAD: its node, or NULL */
    char *text; /* the upsert object, canonical JSON */
    size_t len;
    uint64_t hash; /* never 0 */
};

struct dent {
    uint64_t version;
    struct vkey *key;
    uint64_t prev; /* hash the node had before, 0: absent */
};

/*
 * What one stream (or node) was sent: key -> hash, and how it got there.
 * The hash of a key is its entry in `map` if any, else the key's base (0 for
 * a non-shared key). So the map holds the node's own keys (workloads,
 * policies) and, for shared keys, only where the node differs from the
 * current item (not polled yet, or offline): an entry with hash 0 says
 * "absent". Once synchronised, a node's map holds a few entries, not a
 * thousand Services.
 */
struct sent {
    struct veil_store__map map; /* vkey->s -> vkey (p, ref), hash (u) */
    struct dent *log;
    size_t log_head, log_n, log_cap, log_max; /* a ring of log_cap, grown up to log_max */
    uint64_t floor;                           /* states at versions >= floor can be rebuilt */
    uint64_t version;                         /* last sent */
    bool valid;
};

struct cnt {
    size_t n;
    char key[];
};

struct node {
    char *name;
    struct veil_store__map ns_count; /* ns -> struct cnt */
    struct veil_store__map sa_count; /* "ns/sa" -> struct cnt */
    struct veil_store__map wls;      /* Workload key -> vkey (ref) */
    struct sent st;
    struct veil_view_sub *primary;
    uint64_t acked, nacked;
    char *nack_reason;
};

/* Per namespace: its services, workloads and policies. */
struct nsidx {
    struct veil_store__map svcs;     /* res id -> every Service */
    struct veil_store__map sel_all;  /* res id -> Service with an empty selector */
    struct veil_store__map svc_by_1; /* "k=v" of a selector's first pair -> struct post */
    struct veil_store__map wl_by_kv; /* "k=v" of each workload label -> struct post */
    struct veil_store__map wls;      /* res id -> res */
    struct veil_store__map pols;     /* item key -> vkey (ref) */
    char name[];
};

struct veil_view_sub {
    struct veil_views *v;
    struct node *node;
    bool observer, stale, resync;
    struct sent own;
    struct sent *st;
    struct veil_store__map dirty; /* vkey->s -> vkey (ref) */
    size_t idx;                   /* in v->subs */
};

struct veil_views {
    struct veil_store *store;
    char *trust_domain, *root_ns;
    size_t node_log_max;
    struct veil_store__map keys;         /* intern table: s -> vkey */
    struct veil_store__map items;        /* key -> item */
    struct veil_store__map global_items; /* the items every node gets: Services, routes */
    struct veil_store__map shared;       /* shared keys with a non-zero base -> vkey (ref) */
    struct veil_store__map nodes;        /* name -> node */
    struct veil_store__map ns;           /* name -> nsidx */
    struct veil_view_sub **subs;
    size_t nsubs, subs_cap;
    bool broken; /* an update failed half-way: rebuild before use */
};

/* ---- keys ------------------------------------------------------------------ */

/* Items every node gets: Services and routes. Their keys are shared. */
static bool key_is_global(const char *s)
{
    return strncmp(s, "Service/", 8) == 0 || strncmp(s, "HTTPRoute/", 10) == 0 ||
           strncmp(s, "GRPCRoute/", 10) == 0;
}

static struct vkey *key_get(struct veil_views *v, const char *s)
{
    uint64_t h = H(s);
    struct veil_store__slot *sl = veil_store__map_find(&v->keys, s, h);
    if (sl != NULL) {
        struct vkey *k = sl->p;
        k->refs++;
        return k;
    }
    size_t n = strlen(s) + 1;
    struct vkey *k = veil_malloc(sizeof(*k) + n);
    if (k == NULL)
        return NULL;
    k->h = h;
    k->base = 0;
    k->refs = 1;
    k->shared = key_is_global(s);
    memcpy(k->s, s, n);
    if (veil_store__map_put(&v->keys, k->s, h, k, 0) < 0) {
        veil_free(k);
        return NULL;
    }
    return k;
}

static void key_ref(struct vkey *k)
{
    k->refs++;
}

static void key_unref(struct veil_views *v, struct vkey *k)
{
    if (k == NULL || --k->refs > 0)
        return;
    veil_store__map_del(&v->keys, k->s, k->h);
    veil_free(k);
}

/* A set of keys (dirty sets, per-node workloads); holds a reference each. */
static int set_add(struct veil_views *v, struct veil_store__map *m, struct vkey *k)
{
    (void)v;
    if (veil_store__map_find(m, k->s, k->h) != NULL)
        return 0;
    if (veil_store__map_put(m, k->s, k->h, k, 0) < 0)
        return -ENOMEM;
    key_ref(k);
    return 0;
}

static void set_del(struct veil_views *v, struct veil_store__map *m, struct vkey *k)
{
    if (veil_store__map_del(m, k->s, k->h))
        key_unref(v, k);
}

static void set_clear(struct veil_views *v, struct veil_store__map *m)
{
    MAP_EACH(m, sl)
    key_unref(v, sl->p);
    veil_store__map_free(m);
}

/* ---- sent state ------------------------------------------------------------ */

static void sent_clear(struct veil_views *v, struct sent *st)
{
    set_clear(v, &st->map);
    for (size_t i = 0; i < st->log_n; i++)
        key_unref(v, st->log[(st->log_head + i) % st->log_cap].key);
    st->log_head = st->log_n = 0;
    st->valid = false;
}

static void sent_free(struct veil_views *v, struct sent *st)
{
    sent_clear(v, st);
    veil_free(st->log);
    st->log = NULL;
}

/* The hash a sent state has for `k` when it records nothing of its own. */
static uint64_t implicit_hash(const struct vkey *k)
{
    return k->shared ? k->base : 0;
}

static uint64_t sent_hash(const struct sent *st, const struct vkey *k)
{
    struct veil_store__slot *sl = veil_store__map_find(&st->map, k->s, k->h);
    return sl != NULL ? sl->u : implicit_hash(k);
}

/* Sets k's hash in map m (a sent map) to `hash`; never allocates when an
 * entry is added, provided room was reserved. */
static void own_put(struct veil_views *v, struct veil_store__map *m, struct vkey *k, uint64_t hash)
{
    struct veil_store__slot *sl = veil_store__map_find(m, k->s, k->h);
    if (hash == implicit_hash(k)) {
        if (sl != NULL)
            set_del(v, m, k);
    } else if (sl != NULL) {
        sl->u = hash;
    } else {
        veil_store__map_put(m, k->s, k->h, k, hash);
        key_ref(k);
    }
}

/* Does setting k to `hash` add an entry to map m? */
static bool own_adds(const struct veil_store__map *m, const struct vkey *k, uint64_t hash)
{
    return hash != implicit_hash(k) && veil_store__map_find(m, k->s, k->h) == NULL;
}

/* Makes room for `n` more entries: the ring doubles until log_max (a
 * node's history costs what it holds, not its limit). 0 or -ENOMEM. */
static int log_reserve(struct sent *st, size_t n)
{
    size_t need = st->log_n + n < st->log_max ? st->log_n + n : st->log_max;
    if (need <= st->log_cap)
        return 0;
    size_t cap = st->log_cap != 0 ? st->log_cap : 16;
    while (cap < need)
        cap *= 2;
    if (cap > st->log_max)
        cap = st->log_max;
    struct dent *log = veil_calloc(cap, sizeof(*log));
    if (log == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < st->log_n; i++)
        log[i] = st->log[(st->log_head + i) % st->log_cap];
    veil_free(st->log);
    st->log = log;
    st->log_cap = cap;
    st->log_head = 0;
    return 0;
}

static void log_append(struct veil_views *v, struct sent *st, uint64_t version, struct vkey *k,
                       uint64_t prev)
{
    if (st->log_n == st->log_max) {
        struct dent *old = &st->log[st->log_head];
        st->floor = old->version;
        key_unref(v, old->key);
        st->log_head = (st->log_head + 1) % st->log_cap;
        st->log_n--;
    }
    key_ref(k);
    st->log[(st->log_head + st->log_n) % st->log_cap] = (struct dent){version, k, prev};
    st->log_n++;
}

/* Records that `k` now has `hash` (0: removed) at `version`. */
static int sent_set(struct veil_views *v, struct sent *st, uint64_t version, struct vkey *k,
                    uint64_t hash)
{
    uint64_t prev = sent_hash(st, k);
    if ((own_adds(&st->map, k, hash) && veil_store__map_reserve(&st->map, 1) < 0) ||
        log_reserve(st, 1) < 0)
        return -ENOMEM;
    log_append(v, st, version, k, prev);
    own_put(v, &st->map, k, hash);
    return 0;
}

static int sent_init(struct sent *st, size_t log_max)
{
    *st = (struct sent){.log_max = log_max > 0 ? log_max : 1};
    return 0;
}

/*
 * Every key the state has now, key -> vkey (p), hash (u), no references:
 * its own entries and the shared keys it has at their base.
 */
static int sent_expand(const struct veil_views *v, const struct sent *st,
                       struct veil_store__map *out)
{
    *out = (struct veil_store__map){0};
    if (veil_store__map_reserve(out, st->map._n + v->shared._n) < 0)
        return -ENOMEM;
    MAP_EACH(&v->shared, sl)
    if (veil_store__map_find(&st->map, sl->key, sl->h) == NULL)
        veil_store__map_put(out, sl->key, sl->h, sl->p, ((struct vkey *)sl->p)->base);
    MAP_EACH(&st->map, sl)
    if (sl->u != 0)
        veil_store__map_put(out, sl->key, sl->h, sl->p, sl->u);
    return 0;
}

/*
 * The state as it was at `version` (no references held): the current one
 * with the log's later entries undone, newest first.
 */
static int sent_at(const struct veil_views *v, const struct sent *st, uint64_t version,
                   struct veil_store__map *out)
{
    if (sent_expand(v, st, out) < 0)
        return -ENOMEM;
    for (size_t i = st->log_n; i-- > 0;) {
        const struct dent *d = &st->log[(st->log_head + i) % st->log_cap];
        if (d->version <= version)
            break;
        if (d->prev == 0)
            veil_store__map_del(out, d->key->s, d->key->h);
        else if (veil_store__map_put(out, d->key->s, d->key->h, d->key, d->prev) < 0)
            return -ENOMEM;
    }
    return 0;
}

/* Forgets the log entries after `version` (the node never applied them). */
static void sent_truncate(struct veil_views *v, struct sent *st, uint64_t version)
{
    while (st->log_n > 0) {
        struct dent *d = &st->log[(st->log_head + st->log_n - 1) % st->log_cap];
        if (d->version <= version)
            break;
        key_unref(v, d->key);
        st->log_n--;
    }
}

/* ---- counters ----------------------------------------------------------------- */

/* Adds delta to m[key]; returns the new count, or -1 on allocation failure. */
static long cnt_add(struct veil_store__map *m, const char *key, int delta)
{
    uint64_t h = H(key);
    struct veil_store__slot *sl = veil_store__map_find(m, key, h);
    if (sl == NULL) {
        if (delta < 0)
            return 0;
        size_t n = strlen(key) + 1;
        struct cnt *c = veil_malloc(sizeof(*c) + n);
        if (c == NULL)
            return -1;
        c->n = 0;
        memcpy(c->key, key, n);
        if (veil_store__map_put(m, c->key, h, c, 0) < 0) {
            veil_free(c);
            return -1;
        }
        sl = veil_store__map_find(m, key, h);
    }
    struct cnt *c = sl->p;
    c->n = delta < 0 && c->n == 0 ? 0 : c->n + (size_t)(long)delta;
    long n = (long)c->n;
    if (n == 0) {
        veil_store__map_del(m, key, h);
        veil_free(c);
    }
    return n;
}

static size_t cnt_get(const struct veil_store__map *m, const char *key)
{
    struct veil_store__slot *sl = veil_store__map_find(m, key, H(key));
    return sl != NULL ? ((struct cnt *)sl->p)->n : 0;
}

static void cnt_clear(struct veil_store__map *m)
{
    MAP_EACH(m, sl)
    veil_free(sl->p);
    veil_store__map_free(m);
}

/* ---- nodes and namespaces ---------------------------------------------------- */

static struct node *node_get(struct veil_views *v, const char *name, bool create)
{
    struct veil_store__slot *sl = veil_store__map_find(&v->nodes, name, H(name));
    if (sl != NULL || !create)
        return sl != NULL ? sl->p : NULL;
    struct node *n = veil_calloc(1, sizeof(*n));
    if (n == NULL)
        return NULL;
    n->name = veil_strdup(name);
    if (n->name == NULL || sent_init(&n->st, v->node_log_max) < 0 ||
        veil_store__map_put(&v->nodes, n->name, H(name), n, 0) < 0) {
        veil_free(n->st.log);
        veil_free(n->name);
        veil_free(n);
        return NULL;
    }
    return n;
}

static void node_clear_registry(struct veil_views *v, struct node *n)
{
    cnt_clear(&n->ns_count);
    cnt_clear(&n->sa_count);
    set_clear(v, &n->wls);
}

static void node_free(struct veil_views *v, struct node *n)
{
    node_clear_registry(v, n);
    sent_free(v, &n->st);
    veil_free(n->nack_reason);
    veil_free(n->name);
    veil_free(n);
}

static struct nsidx *ns_get(struct veil_views *v, const char *name)
{
    struct veil_store__slot *sl = veil_store__map_find(&v->ns, name, H(name));
    if (sl != NULL)
        return sl->p;
    size_t len = strlen(name) + 1;
    struct nsidx *x = veil_calloc(1, sizeof(*x) + len);
    if (x == NULL)
        return NULL;
    memcpy(x->name, name, len);
    if (veil_store__map_put(&v->ns, x->name, H(name), x, 0) < 0) {
        veil_free(x);
        return NULL;
    }
    return x;
}

/* A posting list of the label index: resources (by id) with one "k=v". */
struct post {
    struct veil_store__map m;
    char kv[];
};

static void kv_format(char *buf, size_t n, const struct veil_res_label *l)
{
    snprintf(buf, n, "%s=%s", l->key, l->value);
}

static const struct veil_store__map *post_get(const struct veil_store__map *idx,
                                              const struct veil_res_label *l)
{
    char kv[KEY_MAX];
    kv_format(kv, sizeof(kv), l);
    struct veil_store__slot *sl = veil_store__map_find(idx, kv, H(kv));
    return sl != NULL ? &((struct post *)sl->p)->m : NULL;
}

static int post_add(struct veil_store__map *idx, const struct veil_res_label *l,
                    const struct veil_res *r)
{
    char kv[KEY_MAX];
    kv_format(kv, sizeof(kv), l);
    uint64_t h = H(kv);
    struct veil_store__slot *sl = veil_store__map_find(idx, kv, h);
    struct post *p = sl != NULL ? sl->p : NULL;
    if (p == NULL) {
        size_t n = strlen(kv) + 1;
        if ((p = veil_calloc(1, sizeof(*p) + n)) == NULL)
            return -ENOMEM;
        memcpy(p->kv, kv, n);
        if (veil_store__map_put(idx, p->kv, h, p, 0) < 0) {
            veil_free(p);
            return -ENOMEM;
        }
    }
    return veil_store__map_put(&p->m, r->id, H(r->id), (void *)r, 0);
}

static void post_del(struct veil_store__map *idx, const struct veil_res_label *l,
                     const struct veil_res *r)
{
    char kv[KEY_MAX];
    kv_format(kv, sizeof(kv), l);
    uint64_t h = H(kv);
    struct veil_store__slot *sl = veil_store__map_find(idx, kv, h);
    if (sl == NULL)
        return;
    struct post *p = sl->p;
    veil_store__map_del(&p->m, r->id, H(r->id));
    if (p->m._n == 0) {
        veil_store__map_del(idx, kv, h);
        veil_store__map_free(&p->m);
        veil_free(p);
    }
}

static void post_clear(struct veil_store__map *idx)
{
    MAP_EACH(idx, sl)
    {
        struct post *p = sl->p;
        veil_store__map_free(&p->m);
        veil_free(p);
    }
    veil_store__map_free(idx);
}

/* Indexes (add) or unindexes a Service: in the namespace and by its selector. */
static int svc_index(struct nsidx *x, const struct veil_res *s, bool add)
{
    const struct veil_res_labels *sel = &s->u.svc.selector;
    if (!add)
        veil_store__map_del(&x->svcs, s->id, H(s->id));
    else if (veil_store__map_put(&x->svcs, s->id, H(s->id), (void *)s, 0) < 0)
        return -ENOMEM;
    if (!s->u.svc.has_selector)
        return 0;
    if (sel->n == 0 && add)
        return veil_store__map_put(&x->sel_all, s->id, H(s->id), (void *)s, 0);
    if (sel->n == 0) {
        veil_store__map_del(&x->sel_all, s->id, H(s->id));
        return 0;
    }
    if (add)
        return post_add(&x->svc_by_1, &sel->v[0], s);
    post_del(&x->svc_by_1, &sel->v[0], s);
    return 0;
}

/* Indexes (add) or unindexes a workload: in the namespace and by each label. */
static int wl_index(struct nsidx *x, const struct veil_res *w, bool add)
{
    if (!add) {
        veil_store__map_del(&x->wls, w->id, H(w->id));
        for (size_t i = 0; i < w->labels.n; i++)
            post_del(&x->wl_by_kv, &w->labels.v[i], w);
        return 0;
    }
    if (veil_store__map_put(&x->wls, w->id, H(w->id), (void *)w, 0) < 0)
        return -ENOMEM;
    for (size_t i = 0; i < w->labels.n; i++)
        if (post_add(&x->wl_by_kv, &w->labels.v[i], w) < 0)
            return -ENOMEM;
    return 0;
}

static void ns_free(struct veil_views *v, struct nsidx *x)
{
    veil_store__map_free(&x->svcs);
    veil_store__map_free(&x->sel_all);
    post_clear(&x->svc_by_1);
    post_clear(&x->wl_by_kv);
    veil_store__map_free(&x->wls);
    set_clear(v, &x->pols);
    veil_free(x);
}

/* ---- items --------------------------------------------------------------------- */

static void item_free(struct veil_views *v, struct item *it)
{
    if (it == NULL)
        return;
    key_unref(v, it->key);
    veil_free(it->ns);
    veil_free(it->node);
    free(it->text); /* from json_dumps */
    veil_free(it);
}

static uint64_t fnv(const char *s, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h ? h : 1;
}

static json_t *labels_json(const struct veil_res_labels *l)
{
    json_t *o = json_object();
    for (size_t i = 0; o != NULL && i < l->n; i++)
        if (json_object_set_new(o, l->v[i].key, json_string(l->v[i].value)) < 0) {
            json_decref(o);
            return NULL;
        }
    return o;
}

static char *identity(const struct veil_views *v, const struct veil_res *w, char *buf, size_t n)
{
    snprintf(buf, n, "spiffe://%s/ns/%s/sa/%s", v->trust_domain, w->ns, w->u.wl.service_account);
    return buf;
}

static json_t *workload_spec(const struct veil_views *v, const struct veil_res *w)
{
    char id[KEY_MAX];
    json_t *ports = json_object();
    for (size_t i = 0; ports != NULL && i < w->u.wl.nports; i++)
        json_object_set_new(ports, w->u.wl.ports[i].name, json_integer(w->u.wl.ports[i].port));
    return json_pack("{s:s,s:s?,s:s?,s:s,s:s,s:o?,s:o?}", "source", w->kind_name, "address",
                     w->u.wl.address, "node", w->u.wl.node, "serviceAccount",
                     w->u.wl.service_account, "identity", identity(v, w, id, sizeof(id)), "labels",
                     labels_json(&w->labels), "ports", ports);
}

/* The target port of `p` on workload `w`, or 0 when a named one is unknown. */
static uint16_t target_port(const struct veil_res_svc_port *p, const struct veil_res *w)
{
    if (p->target_name == NULL)
        return p->target_port;
    for (size_t i = 0; i < w->u.wl.nports; i++)
        if (strcmp(w->u.wl.ports[i].name, p->target_name) == 0)
            return w->u.wl.ports[i].port;
    return 0;
}

static int ep_cmp(const void *a, const void *b)
{
    return strcmp((*(const struct veil_res *const *)a)->name,
                  (*(const struct veil_res *const *)b)->name);
}

static json_t *endpoint(const struct veil_views *v, const struct veil_res *svc,
                        const struct veil_res *w)
{
    char id[KEY_MAX], key[KEY_MAX];
    json_t *ports = json_array();
    for (size_t i = 0; ports != NULL && i < svc->u.svc.nports; i++) {
        const struct veil_res_svc_port *p = &svc->u.svc.ports[i];
        uint16_t tp = target_port(p, w);
        if (tp != 0)
            json_array_append_new(ports, json_pack("{s:i,s:i}", "port", p->port, "targetPort", tp));
    }
    if (ports != NULL && json_array_size(ports) == 0) {
        json_decref(ports);
        return json_null(); /* no port resolves on this workload: no endpoint */
    }
    snprintf(key, sizeof(key), "Workload/%s/%s", w->ns, w->name);
    return json_pack("{s:s,s:s,s:s?,s:s,s:o?}", "workload", key, "address", w->u.wl.address, "node",
                     w->u.wl.node, "identity", identity(v, w, id, sizeof(id)), "ports", ports);
}

/* ---- waypoints ------------------------------------------------------------------ */

/*
 * The waypoint name Service svc asks for: its label istio.io/use-waypoint,
 * else its namespace's; "none" (or "") is none. NULL: none.
 */
static const char *waypoint_name(const struct veil_views *v, const struct veil_res *svc)
{
    const char *w = veil_res_label_get(&svc->labels, VEIL_RES_USE_WAYPOINT_LABEL);
    if (w == NULL) {
        char id[KEY_MAX];
        veil_res_id_format(id, sizeof(id), VEIL_RES_NAMESPACE, "", svc->ns);
        const struct veil_res *ns = veil_store_get(v->store, id);
        w = ns != NULL ? veil_res_label_get(&ns->labels, VEIL_RES_USE_WAYPOINT_LABEL) : NULL;
    }
    return w != NULL && w[0] != '\0' && strcmp(w, "none") != 0 ? w : NULL;
}

/* The workload of waypoint ns/name: labelled with its name, with an
 * address; the first by name when there are several. NULL: none. */
static const struct veil_res *waypoint_find(const struct veil_views *v, const char *ns,
                                            const char *name)
{
    struct veil_store__slot *sl = veil_store__map_find(&v->ns, ns, H(ns));
    const struct veil_res_label l = {VEIL_RES_GATEWAY_NAME_LABEL, name};
    const struct veil_store__map *m =
        sl != NULL ? post_get(&((struct nsidx *)sl->p)->wl_by_kv, &l) : NULL;
    const struct veil_res *best = NULL;
    if (m == NULL)
        return NULL;
    MAP_EACH(m, ws)
    {
        const struct veil_res *w = ws->p;
        if (w->u.wl.address != NULL && (best == NULL || strcmp(w->name, best->name) < 0))
            best = w;
    }
    return best;
}

/* Adds "waypoint" to a Service's spec when it has one (CONTRACT A); consumes spec. */
static json_t *service_waypoint(const struct veil_views *v, const struct veil_res *svc,
                                json_t *spec)
{
    const char *name = waypoint_name(v, svc);
    const struct veil_res *w = name != NULL ? waypoint_find(v, svc->ns, name) : NULL;
    if (w == NULL)
        return spec;
    char id[KEY_MAX], key[KEY_MAX];
    snprintf(key, sizeof(key), "Workload/%s/%s", w->ns, w->name);
    json_t *wp =
        json_pack("{s:s,s:s,s:s,s:s,s:s}", "name", name, "namespace", w->ns, "address",
                  w->u.wl.address, "identity", identity(v, w, id, sizeof(id)), "workload", key);
    if (wp == NULL || json_object_set_new(spec, "waypoint", wp) < 0) {
        json_decref(spec);
        return NULL;
    }
    return spec;
}

static json_t *service_spec(struct veil_views *v, const struct veil_res *svc)
{
    json_t *ports = json_array(), *eps = json_array();
    for (size_t i = 0; ports != NULL && i < svc->u.svc.nports; i++) {
        const struct veil_res_svc_port *p = &svc->u.svc.ports[i];
        json_t *tp = p->target_name ? json_string(p->target_name) : json_integer(p->target_port);
        json_array_append_new(ports, json_pack("{s:s,s:i,s:o?,s:s,s:s?}", "name", p->name, "port",
                                               p->port, "targetPort", tp, "protocol", p->protocol,
                                               "appProtocol", p->app_protocol));
    }
    struct veil_store__slot *sl = veil_store__map_find(&v->ns, svc->ns, H(svc->ns));
    const struct nsidx *x = sl != NULL ? sl->p : NULL;
    /* Candidates: the workloads with the selector's first label, or all. */
    const struct veil_store__map *cand = NULL;
    if (svc->u.svc.has_selector && x != NULL)
        cand = svc->u.svc.selector.n == 0 ? &x->wls
                                          : post_get(&x->wl_by_kv, &svc->u.svc.selector.v[0]);
    if (cand != NULL && eps != NULL) {
        const struct veil_res **sel = veil_malloc((cand->_n + 1) * sizeof(*sel));
        size_t n = 0;
        if (sel == NULL) {
            json_decref(ports);
            json_decref(eps);
            return NULL;
        }
        MAP_EACH(cand, ws)
        {
            const struct veil_res *w = ws->p;
            if (w->u.wl.address != NULL && veil_res_selects(&svc->u.svc.selector, &w->labels))
                sel[n++] = w;
        }
        qsort(sel, n, sizeof(*sel), ep_cmp);
        for (size_t i = 0; i < n; i++) {
            json_t *e = endpoint(v, svc, sel[i]);
            if (e == NULL || (!json_is_null(e) && json_array_append(eps, e) < 0)) {
                json_decref(e);
                json_decref(eps);
                eps = NULL;
                break;
            }
            json_decref(e);
        }
        veil_free(sel);
    }
    if (ports == NULL || eps == NULL) {
        json_decref(ports);
        json_decref(eps);
        return NULL;
    }
    json_t *spec =
        json_pack("{s:s?,s:o,s:o}", "clusterIP", svc->cluster_ip, "ports", ports, "endpoints", eps);
    return spec != NULL ? service_waypoint(v, svc, spec) : NULL;
}

static json_t *policy_spec(const struct veil_res *r)
{
    json_t *spec = json_object_get(r->raw, "spec");
    json_t *c = json_is_object(spec) ? json_deep_copy(spec) : json_object();
    if (c == NULL)
        return NULL;
    if (r->kind == VEIL_RES_AUTHZ_POLICY &&
        json_object_set_new(c, "action", json_string(veil_res_action_str(r->u.authz.action))) < 0) {
        json_decref(c);
        return NULL;
    }
    return c;
}

/* A fresh item for the current resource `r` of key `k`, or NULL. */
static struct item *item_make(struct veil_views *v, struct vkey *k, const struct veil_res *r)
{
    json_t *spec;
    const char *kind;
    enum item_kind ik;
    if (veil_res_is_workload(r)) {
        spec = workload_spec(v, r);
        kind = "Workload";
        ik = IT_WORKLOAD;
    } else if (r->kind == VEIL_RES_SERVICE) {
        spec = service_spec(v, r);
        kind = "Service";
        ik = IT_SERVICE;
    } else if (veil_res_is_route(r)) {
        spec = policy_spec(r); /* the spec as written */
        kind = r->kind_name;
        ik = IT_ROUTE;
    } else {
        spec = policy_spec(r);
        kind = r->kind_name;
        ik = IT_POLICY;
    }
    json_t *obj = json_pack("{s:s,s:s,s:s,s:s,s:o}", "key", k->s, "kind", kind, "namespace", r->ns,
                            "name", r->name, "spec", spec);
    char *text = obj != NULL ? json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(obj);
    struct item *it = text != NULL ? veil_calloc(1, sizeof(*it)) : NULL;
    if (it == NULL) {
        free(text);
        return NULL;
    }
    it->key = k;
    key_ref(k);
    it->kind = ik;
    it->text = text;
    it->len = strlen(text);
    it->hash = fnv(text, it->len);
    it->ns = veil_strdup(r->ns);
    if (ik == IT_WORKLOAD && r->u.wl.node != NULL)
        it->node = veil_strdup(r->u.wl.node);
    if (it->ns == NULL || (ik == IT_WORKLOAD && r->u.wl.node != NULL && it->node == NULL)) {
        item_free(v, it);
        return NULL;
    }
    return it;
}

/* The resource behind item key "Kind/ns/name" in the final state, or NULL. */
static const struct veil_res *item_source(struct veil_views *v, const char *key)
{
    char id[KEY_MAX];
    const char *rest = strchr(key, '/');
    if (rest == NULL)
        return NULL;
    if (strncmp(key, "Workload/", 9) == 0) {
        snprintf(id, sizeof(id), "Pod%s", rest);
        const struct veil_res *r = veil_store_get(v->store, id);
        if (r == NULL) {
            snprintf(id, sizeof(id), "WorkloadEntry%s", rest);
            r = veil_store_get(v->store, id);
        }
        return r;
    }
    return veil_store_get(v->store, key);
}

/* Calls fn for every sent state in use: the nodes' and the observers'. */
#define SENT_EACH(v, st, body)                                                                     \
    do {                                                                                           \
        MAP_EACH(&(v)->nodes, ns_)                                                                 \
        {                                                                                          \
            struct sent *st = &((struct node *)ns_->p)->st;                                        \
            if (st->valid) {                                                                       \
                body                                                                               \
            }                                                                                      \
        }                                                                                          \
        for (size_t i_ = 0; i_ < (v)->nsubs; i_++) {                                               \
            struct sent *st = &(v)->subs[i_]->own;                                                 \
            if ((v)->subs[i_]->observer && st->valid) {                                            \
                body                                                                               \
            }                                                                                      \
        }                                                                                          \
    } while (0)

/*
 * The base of shared key `k` becomes `hash`: every sent state that had the
 * old base (0: absent) keeps it as an entry of its own. 0 or -ENOMEM (nothing changed).
 */
static int base_set(struct veil_views *v, struct vkey *k, uint64_t hash)
{
    uint64_t old = k->base;
    if (old == hash)
        return 0;
    int rc = old == 0 ? veil_store__map_reserve(&v->shared, 1) : 0;
    SENT_EACH(v, st, {
        if (rc == 0 && veil_store__map_find(&st->map, k->s, k->h) == NULL)
            rc = veil_store__map_reserve(&st->map, 1);
    });
    if (rc < 0)
        return -ENOMEM;
    key_ref(k); /* the last reference may go below */
    SENT_EACH(v, st, {
        struct veil_store__slot *sl = veil_store__map_find(&st->map, k->s, k->h);
        if (sl == NULL) {
            veil_store__map_put(&st->map, k->s, k->h, k, old);
            key_ref(k);
        } else if (sl != NULL && sl->u == hash) {
            set_del(v, &st->map, k);
        }
    });
    k->base = hash;
    if (old == 0) {
        veil_store__map_put(&v->shared, k->s, k->h, k, 0);
        key_ref(k);
    } else if (hash == 0) {
        set_del(v, &v->shared, k);
    }
    key_unref(v, k);
    return 0;
}

/* Recomputes item `k` from the store; removes it when its resource is gone. */
static int item_refresh(struct veil_views *v, struct vkey *k)
{
    const struct veil_res *r = item_source(v, k->s);
    struct item *it = NULL;
    if (r != NULL && (it = item_make(v, k, r)) == NULL)
        return -ENOMEM;
    bool global = it != NULL && (it->kind == IT_SERVICE || it->kind == IT_ROUTE);
    if (it != NULL && (veil_store__map_reserve(&v->items, 1) < 0 ||
                       (global && veil_store__map_reserve(&v->global_items, 1) < 0))) {
        item_free(v, it);
        return -ENOMEM;
    }
    if (k->shared && base_set(v, k, it != NULL ? it->hash : 0) < 0) {
        item_free(v, it);
        return -ENOMEM;
    }
    struct veil_store__slot *old = veil_store__map_find(&v->items, k->s, k->h);
    struct item *prev = old != NULL ? old->p : NULL;
    if (prev != NULL) {
        veil_store__map_del(&v->items, k->s, k->h);
        veil_store__map_del(&v->global_items, k->s, k->h);
        item_free(v, prev);
    }
    if (it != NULL) {
        veil_store__map_put(&v->items, it->key->s, k->h, it, 0);
        if (global)
            veil_store__map_put(&v->global_items, it->key->s, k->h, it, 0);
    }
    return 0;
}

static struct item *item_get(struct veil_views *v, const struct vkey *k)
{
    struct veil_store__slot *sl = veil_store__map_find(&v->items, k->s, k->h);
    return sl != NULL ? sl->p : NULL;
}

/* ---- applying changes to the registry ------------------------------------------ */

/* One commit's worth of work: keys to refresh and to offer to subscribers. */
struct batch {
    struct veil_store__map all;      /* keys to refresh; non-workload ones go to everyone */
    struct veil_store__map per_node; /* node name -> struct veil_store__map * of keys */
};

static int batch_add(struct veil_views *v, struct batch *b, const char *key)
{
    struct vkey *k = key_get(v, key);
    if (k == NULL)
        return -ENOMEM;
    int rc = set_add(v, &b->all, k);
    key_unref(v, k);
    return rc;
}

static struct veil_store__map *batch_node(struct batch *b, const char *node)
{
    struct veil_store__slot *sl = veil_store__map_find(&b->per_node, node, H(node));
    if (sl != NULL)
        return sl->p;
    struct veil_store__map *m = veil_calloc(1, sizeof(*m));
    if (m == NULL || veil_store__map_put(&b->per_node, node, H(node), m, 0) < 0) {
        veil_free(m);
        return NULL;
    }
    return m;
}

/* Key `k` is to be offered to the subscribers of `node` only. */
static int batch_add_node(struct veil_views *v, struct batch *b, const char *node, struct vkey *k)
{
    struct veil_store__map *m = batch_node(b, node);
    return m != NULL ? set_add(v, m, k) : -ENOMEM;
}

static void batch_free(struct veil_views *v, struct batch *b)
{
    set_clear(v, &b->all);
    MAP_EACH(&b->per_node, sl)
    {
        set_clear(v, sl->p);
        veil_free(sl->p);
    }
    veil_store__map_free(&b->per_node);
}

/* The services of ns whose selector matches `labels`. */
static int mark_selecting(struct veil_views *v, struct batch *b, struct nsidx *x,
                          const struct veil_res_labels *labels)
{
    MAP_EACH(&x->sel_all, sl)
    if (batch_add(v, b, ((const struct veil_res *)sl->p)->id) < 0)
        return -ENOMEM;
    /* A Service is indexed under its first selector pair only: found once. */
    for (size_t i = 0; i < labels->n; i++) {
        const struct veil_store__map *p = post_get(&x->svc_by_1, &labels->v[i]);
        if (p == NULL)
            continue;
        MAP_EACH(p, sl)
        {
            const struct veil_res *s = sl->p;
            if (veil_res_selects(&s->u.svc.selector, labels) && batch_add(v, b, s->id) < 0)
                return -ENOMEM;
        }
    }
    return 0;
}

/* A workload joins (delta 1) or leaves (-1) its node's counters. */
static int node_account(struct veil_views *v, struct batch *b, const struct veil_res *w, int delta,
                        struct vkey *wk)
{
    if (w->u.wl.node == NULL)
        return 0;
    struct node *n = node_get(v, w->u.wl.node, true);
    if (n == NULL)
        return -ENOMEM;
    char sa[KEY_MAX];
    snprintf(sa, sizeof(sa), "%s/%s", w->ns, w->u.wl.service_account);
    long c = cnt_add(&n->ns_count, w->ns, delta);
    if (c < 0 || cnt_add(&n->sa_count, sa, delta) < 0)
        return -ENOMEM;
    if (delta > 0 && set_add(v, &n->wls, wk) < 0)
        return -ENOMEM;
    if (delta < 0)
        set_del(v, &n->wls, wk);
    if (batch_add_node(v, b, n->name, wk) < 0)
        return -ENOMEM;
    if ((delta > 0 && c == 1) || (delta < 0 && c == 0)) {
        /* The node's namespace set changed: that namespace's policies. */
        struct nsidx *x = ns_get(v, w->ns);
        if (x == NULL)
            return -ENOMEM;
        MAP_EACH(&x->pols, sl)
        if (batch_add_node(v, b, n->name, sl->p) < 0)
            return -ENOMEM;
    }
    return 0;
}

/* The Services of namespace x that ask for waypoint `name` (NULL: all of them). */
static int mark_waypoint_users(struct veil_views *v, struct batch *b, struct nsidx *x,
                               const char *name)
{
    MAP_EACH(&x->svcs, sl)
    {
        const struct veil_res *s = sl->p;
        const char *w = name != NULL ? waypoint_name(v, s) : NULL;
        if ((name == NULL || (w != NULL && strcmp(w, name) == 0)) && batch_add(v, b, s->id) < 0)
            return -ENOMEM;
    }
    return 0;
}

/* A waypoint's workload changed: the Services that use (or would use) it. */
static int mark_waypoint(struct veil_views *v, struct batch *b, struct nsidx *x,
                         const struct veil_res *w)
{
    const char *name =
        w != NULL ? veil_res_label_get(&w->labels, VEIL_RES_GATEWAY_NAME_LABEL) : NULL;
    return name != NULL ? mark_waypoint_users(v, b, x, name) : 0;
}

/* A Namespace whose use-waypoint label changed: all its Services. */
static int change_namespace(struct veil_views *v, struct batch *b, const struct veil_res *before,
                            const struct veil_res *after)
{
    const struct veil_res *r = after ? after : before;
    const char *wb =
        before ? veil_res_label_get(&before->labels, VEIL_RES_USE_WAYPOINT_LABEL) : NULL;
    const char *wa = after ? veil_res_label_get(&after->labels, VEIL_RES_USE_WAYPOINT_LABEL) : NULL;
    if ((wb == NULL && wa == NULL) || (wb != NULL && wa != NULL && strcmp(wb, wa) == 0))
        return 0;
    struct nsidx *x = ns_get(v, r->name);
    return x != NULL ? mark_waypoint_users(v, b, x, NULL) : -ENOMEM;
}

static int change_workload(struct veil_views *v, struct batch *b, const struct veil_res *before,
                           const struct veil_res *after)
{
    const struct veil_res *r = after ? after : before;
    if (r == NULL)
        return 0;
    char key[KEY_MAX];
    snprintf(key, sizeof(key), "Workload/%s/%s", r->ns, r->name);
    struct nsidx *x = ns_get(v, r->ns);
    struct vkey *k = key_get(v, key);
    int rc = x != NULL && k != NULL ? set_add(v, &b->all, k) : -ENOMEM;
    if (rc == 0 && before != NULL) {
        wl_index(x, before, false);
        rc = node_account(v, b, before, -1, k);
        if (rc == 0)
            rc = mark_selecting(v, b, x, &before->labels);
    }
    if (rc == 0 && after != NULL) {
        rc = wl_index(x, after, true);
        if (rc == 0)
            rc = node_account(v, b, after, 1, k);
        if (rc == 0)
            rc = mark_selecting(v, b, x, &after->labels);
    }
    if (rc == 0)
        rc = mark_waypoint(v, b, x, before);
    if (rc == 0)
        rc = mark_waypoint(v, b, x, after);
    if (k != NULL)
        key_unref(v, k);
    return rc < 0 ? -ENOMEM : 0;
}

static int change_other(struct veil_views *v, struct batch *b, const struct veil_res *before,
                        const struct veil_res *after)
{
    const struct veil_res *r = after ? after : before;
    if (r == NULL)
        return 0;
    struct nsidx *x = ns_get(v, r->ns);
    if (x == NULL || batch_add(v, b, r->id) < 0)
        return -ENOMEM;
    if (r->kind == VEIL_RES_SERVICE) {
        if (before != NULL)
            svc_index(x, before, false);
        return after != NULL ? svc_index(x, after, true) : 0;
    }
    struct vkey *k = key_get(v, r->id);
    if (k == NULL)
        return -ENOMEM;
    int rc = 0;
    if (after != NULL)
        rc = set_add(v, &x->pols, k);
    else
        set_del(v, &x->pols, k);
    key_unref(v, k);
    return rc;
}

static int apply_change(struct veil_views *v, struct batch *b, const struct veil_res *before,
                        const struct veil_res *after)
{
    const struct veil_res *r = after ? after : before;
    if (r == NULL)
        return 0;
    if (veil_res_is_workload(r))
        return change_workload(v, b, before, after);
    if (r->kind == VEIL_RES_SERVICE || veil_res_is_policy(r))
        return change_other(v, b, before, after);
    if (veil_res_is_route(r))
        return batch_add(v, b, r->id);
    if (r->kind == VEIL_RES_NAMESPACE)
        return change_namespace(v, b, before, after);
    return 0;
}

/* Refreshes the items of the batch and hands their keys to the subscribers. */
static int batch_finish(struct veil_views *v, struct batch *b)
{
    MAP_EACH(&b->all, sl)
    if (item_refresh(v, sl->p) < 0)
        return -ENOMEM;
    for (size_t i = 0; i < v->nsubs; i++) {
        struct veil_view_sub *s = v->subs[i];
        if (s->stale || s->resync)
            continue;
        MAP_EACH(&b->all, sl)
        {
            struct vkey *k = sl->p;
            if (strncmp(k->s, "Workload/", 9) == 0)
                continue; /* offered through per_node below */
            if (set_add(v, &s->dirty, k) < 0)
                return -ENOMEM;
        }
        struct veil_store__slot *pn =
            veil_store__map_find(&b->per_node, s->node->name, H(s->node->name));
        if (pn == NULL)
            continue;
        MAP_EACH((struct veil_store__map *)pn->p, sl)
        if (set_add(v, &s->dirty, sl->p) < 0)
            return -ENOMEM;
    }
    return 0;
}

/* Drops the whole registry (items, indexes, counters); keeps sent state. */
static void registry_clear(struct veil_views *v)
{
    MAP_EACH(&v->items, sl)
    item_free(v, sl->p);
    veil_store__map_free(&v->items);
    veil_store__map_free(&v->global_items);
    MAP_EACH(&v->ns, sl)
    ns_free(v, sl->p);
    veil_store__map_free(&v->ns);
    MAP_EACH(&v->nodes, sl)
    node_clear_registry(v, sl->p);
}

struct rebuild {
    struct veil_views *v;
    struct batch *b;
    int rc;
};

static void rebuild_one(void *ctx, const struct veil_res *r)
{
    struct rebuild *rb = ctx;
    if (rb->rc == 0)
        rb->rc = apply_change(rb->v, rb->b, NULL, r);
}

/* Recomputes everything from the store; subscribers resynchronise. */
static int rebuild(struct veil_views *v)
{
    registry_clear(v);
    struct batch b = {0};
    struct rebuild rb = {v, &b, 0};
    /* Shared keys whose resource is gone get their base cleared. */
    MAP_EACH(&v->shared, sl)
    if (rb.rc == 0)
        rb.rc = set_add(v, &b.all, sl->p);
    if (rb.rc == 0)
        veil_store_each(v->store, rebuild_one, &rb);
    MAP_EACH(&b.all, sl)
    if (rb.rc == 0 && item_refresh(v, sl->p) < 0)
        rb.rc = -ENOMEM;
    batch_free(v, &b);
    v->broken = rb.rc < 0;
    for (size_t i = 0; i < v->nsubs; i++)
        v->subs[i]->resync = true;
    return rb.rc;
}

static void on_changes(void *ctx, const struct veil_store_change *ch, size_t n)
{
    struct veil_views *v = ctx;
    if (v->broken)
        return; /* rebuilt from the store on next use */
    struct batch b = {0};
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = apply_change(v, &b, ch[i].before, ch[i].after);
    if (rc == 0)
        rc = batch_finish(v, &b);
    batch_free(v, &b);
    if (rc < 0)
        v->broken = true;
}

static int ensure_built(struct veil_views *v)
{
    return v->broken ? rebuild(v) : 0;
}

/* ---- the node's view ------------------------------------------------------------ */

static bool wants(struct veil_views *v, const struct node *n, const struct item *it)
{
    switch (it->kind) {
    case IT_WORKLOAD:
        return it->node != NULL && strcmp(it->node, n->name) == 0;
    case IT_SERVICE:
    case IT_ROUTE:
        return true;
    default:
        return strcmp(it->ns, v->root_ns) == 0 || cnt_get(&n->ns_count, it->ns) > 0;
    }
}

/* The hash node n should have for key k now, 0 for none. */
static uint64_t want_hash(struct veil_views *v, const struct node *n, const struct vkey *k)
{
    const struct item *it = item_get(v, k);
    return it != NULL && wants(v, n, it) ? it->hash : 0;
}

/* Everything node n should have: key -> item (p), hash (u). No references. */
static int full_view(struct veil_views *v, const struct node *n, struct veil_store__map *out)
{
    *out = (struct veil_store__map){0};
    MAP_EACH(&v->global_items, sl)
    if (veil_store__map_put(out, sl->key, sl->h, sl->p, ((struct item *)sl->p)->hash) < 0)
        return -ENOMEM;
    MAP_EACH(&n->wls, sl)
    {
        struct item *it = item_get(v, sl->p);
        if (it != NULL && wants(v, n, it) &&
            veil_store__map_put(out, sl->key, sl->h, it, it->hash) < 0)
            return -ENOMEM;
    }
    MAP_EACH(&v->ns, sl)
    {
        struct nsidx *x = sl->p;
        if (strcmp(x->name, v->root_ns) != 0 && cnt_get(&n->ns_count, x->name) == 0)
            continue;
        MAP_EACH(&x->pols, ps)
        {
            struct item *it = item_get(v, ps->p);
            if (it != NULL && veil_store__map_put(out, ps->key, ps->h, it, it->hash) < 0)
                return -ENOMEM;
        }
    }
    return 0;
}

/* ---- update messages --------------------------------------------------------------- */

struct msg {
    char *p;
    size_t len, cap;
    bool failed;
    size_t nup, nrm;
};

/* Grows the buffer to hold `n` more bytes at once (no doubling copies). */
static void msg_reserve(struct msg *m, size_t n)
{
    if (m->failed || m->len + n + 1 <= m->cap)
        return;
    char *p = veil_realloc(m->p, m->len + n + 1);
    if (p == NULL) {
        m->failed = true;
        return;
    }
    m->p = p;
    m->cap = m->len + n + 1;
}

static void msg_put(struct msg *m, const char *s, size_t n)
{
    if (m->failed)
        return;
    if (m->len + n + 1 > m->cap) {
        size_t cap = m->cap ? m->cap : 256;
        while (cap < m->len + n + 1)
            cap *= 2;
        char *p = veil_realloc(m->p, cap);
        if (p == NULL) {
            m->failed = true;
            return;
        }
        m->p = p;
        m->cap = cap;
    }
    memcpy(m->p + m->len, s, n);
    m->len += n;
    m->p[m->len] = '\0';
}

static void msg_str(struct msg *m, const char *s)
{
    msg_put(m, s, strlen(s));
}

/* Upserts and removals are written into two messages and joined at the end. */
struct delta {
    struct msg up, rm;
};

static void delta_upsert(struct delta *d, const struct item *it)
{
    if (d->up.nup++ > 0)
        msg_str(&d->up, ",");
    msg_put(&d->up, it->text, it->len);
}

static void delta_remove(struct delta *d, const struct vkey *k)
{
    if (d->rm.nrm++ > 0)
        msg_str(&d->rm, ",");
    msg_str(&d->rm, "\"");
    msg_str(&d->rm, k->s); /* keys are names, '/' and '.': nothing to escape */
    msg_str(&d->rm, "\"");
}

/* Starts a message: the header goes first, upserts follow it in place. */
static void delta_init(struct delta *d, uint64_t version, bool full)
{
    char head[96];
    snprintf(head, sizeof(head), "{\"type\":\"update\",\"version\":%llu,\"full\":%s,\"upserts\":[",
             (unsigned long long)version, full ? "true" : "false");
    msg_str(&d->up, head);
}

/* The message text (veil_malloc'd) or NULL on allocation failure; frees d. */
static char *delta_finish(struct delta *d)
{
    msg_reserve(&d->up, d->rm.len + 32);
    msg_str(&d->up, "],\"removals\":[");
    if (d->rm.len)
        msg_put(&d->up, d->rm.p, d->rm.len);
    msg_str(&d->up, "]}");
    veil_free(d->rm.p);
    if (d->up.failed || d->rm.failed) {
        veil_free(d->up.p);
        return NULL;
    }
    return d->up.p;
}

/* ---- subscriptions --------------------------------------------------------------- */

static int subs_add(struct veil_views *v, struct veil_view_sub *s)
{
    if (v->nsubs == v->subs_cap) {
        size_t cap = v->subs_cap ? v->subs_cap * 2 : 16;
        struct veil_view_sub **a = veil_realloc(v->subs, cap * sizeof(*a));
        if (a == NULL)
            return -ENOMEM;
        v->subs = a;
        v->subs_cap = cap;
    }
    s->idx = v->nsubs;
    v->subs[v->nsubs++] = s;
    return 0;
}

static void subs_del(struct veil_views *v, struct veil_view_sub *s)
{
    v->subs[s->idx] = v->subs[--v->nsubs];
    v->subs[s->idx]->idx = s->idx;
}

/*
 * The sent map of a state that is exactly `cur` (key -> item): the entries
 * where it differs from the keys' bases, each holding a reference.
 */
static int own_build(struct veil_views *v, const struct veil_store__map *cur,
                     struct veil_store__map *nm)
{
    size_t n = 0;
    *nm = (struct veil_store__map){0};
    MAP_EACH(cur, sl)
    {
        const struct item *it = sl->p;
        n += it->hash != implicit_hash(it->key);
    }
    MAP_EACH(&v->shared, sl)
    n += veil_store__map_find(cur, sl->key, sl->h) == NULL;
    if (n > 0 && veil_store__map_reserve(nm, n) < 0)
        return -ENOMEM;
    MAP_EACH(cur, sl)
    {
        struct item *it = sl->p;
        own_put(v, nm, it->key, it->hash);
    }
    MAP_EACH(&v->shared, sl)
    if (veil_store__map_find(cur, sl->key, sl->h) == NULL)
        own_put(v, nm, sl->p, 0);
    return 0;
}

/* A snapshot of `cur`; st starts over at `version`. */
static int send_full(struct veil_views *v, struct sent *st, const struct veil_store__map *cur,
                     uint64_t version, char **json)
{
    struct delta d = {0};
    delta_init(&d, version, true);
    sent_clear(v, st);
    st->floor = st->version = version;
    if (own_build(v, cur, &st->map) < 0)
        goto fail;
    st->valid = true;
    size_t total = 0;
    MAP_EACH(cur, sl)
    total += ((const struct item *)sl->p)->len + 1;
    msg_reserve(&d.up, total);
    MAP_EACH(cur, sl)
    delta_upsert(&d, sl->p);
    *json = delta_finish(&d);
    if (*json == NULL)
        goto fail_done;
    return 0;
fail:
    veil_free(delta_finish(&d));
fail_done:
    sent_clear(v, st);
    return -ENOMEM;
}

/* From the state at `have` to `cur`: the difference only. */
static int send_resume(struct veil_views *v, struct sent *st, const struct veil_store__map *cur,
                       uint64_t have, uint64_t version, char **json)
{
    struct veil_store__map atv = {0}, nm = {0};
    struct delta d = {0};
    size_t changes = 0;
    *json = NULL;
    delta_init(&d, version, false);
    if (sent_at(v, st, have, &atv) < 0 || own_build(v, cur, &nm) < 0) {
        veil_store__map_free(&atv);
        veil_free(delta_finish(&d));
        return -ENOMEM;
    }
    MAP_EACH(cur, sl)
    {
        const struct item *it = sl->p;
        const struct veil_store__slot *a = veil_store__map_find(&atv, sl->key, sl->h);
        if (a == NULL || a->u != it->hash) {
            delta_upsert(&d, it);
            changes++;
        }
    }
    MAP_EACH(&atv, sl)
    {
        if (veil_store__map_find(cur, sl->key, sl->h) == NULL) {
            delta_remove(&d, sl->p);
            changes++;
            key_ref(sl->p); /* may be held only by log entries dropped below */
        }
    }
    char *text = delta_finish(&d);
    if (text != NULL && log_reserve(st, changes) < 0) {
        veil_free(text);
        text = NULL;
    }
    if (text == NULL) {
        MAP_EACH(&atv, sl)
        if (veil_store__map_find(cur, sl->key, sl->h) == NULL)
            key_unref(v, sl->p);
        veil_store__map_free(&atv);
        set_clear(v, &nm);
        return -ENOMEM;
    }
    /* Nothing below allocates. The node never applied what came after `have`. */
    sent_truncate(v, st, have);
    MAP_EACH(cur, sl)
    {
        struct item *it = sl->p;
        const struct veil_store__slot *a = veil_store__map_find(&atv, sl->key, sl->h);
        if (a == NULL || a->u != it->hash)
            log_append(v, st, version, it->key, a != NULL ? a->u : 0);
    }
    MAP_EACH(&atv, sl)
    {
        if (veil_store__map_find(cur, sl->key, sl->h) == NULL) {
            log_append(v, st, version, sl->p, sl->u);
            key_unref(v, sl->p);
        }
    }
    veil_store__map_free(&atv);
    set_clear(v, &st->map);
    st->map = nm;
    st->version = changes > 0 ? version : have;
    if (changes > 0)
        *json = text;
    else
        veil_free(text);
    return 0;
}

int veil_view_subscribe(struct veil_views *v, const char *node, uint64_t have_version,
                        bool observer, struct veil_view_sub **out, char **update_json)
{
    *out = NULL;
    *update_json = NULL;
    if (ensure_built(v) < 0)
        return -ENOMEM;
    struct node *n = node_get(v, node, true);
    struct veil_view_sub *s = n != NULL ? veil_calloc(1, sizeof(*s)) : NULL;
    if (s == NULL)
        return -ENOMEM;
    s->v = v;
    s->node = n;
    s->observer = observer;
    s->st = &n->st;
    if (observer && sent_init(&s->own, v->node_log_max) < 0) {
        veil_free(s);
        return -ENOMEM;
    }
    if (observer)
        s->st = &s->own;
    struct veil_store__map cur;
    uint64_t version = veil_store_version(v->store);
    int rc = subs_add(v, s);
    if (rc == 0)
        rc = full_view(v, n, &cur);
    else
        cur = (struct veil_store__map){0};
    struct sent *st = s->st;
    bool resumable = !observer && st->valid && have_version > 0 && have_version >= st->floor &&
                     have_version <= st->version;
    if (rc == 0 && resumable)
        rc = send_resume(v, st, &cur, have_version, version, update_json);
    else if (rc == 0)
        rc = send_full(v, st, &cur, version, update_json);
    veil_store__map_free(&cur);
    if (rc < 0) {
        if (!observer && n->primary != NULL)
            n->primary->resync = true; /* the node's sent state may be gone */
        veil_view_unsubscribe(s);
        return -ENOMEM;
    }
    if (!observer) {
        if (n->primary != NULL)
            n->primary->stale = true;
        n->primary = s;
    }
    *out = s;
    return 0;
}

/* After a rebuild: diff the whole view against what was sent. */
static int poll_resync(struct veil_view_sub *s, char **json)
{
    struct veil_views *v = s->v;
    struct veil_store__map cur;
    int rc = full_view(v, s->node, &cur);
    if (rc == 0 && s->st->valid)
        rc = send_resume(v, s->st, &cur, s->st->version, veil_store_version(v->store), json);
    else if (rc == 0)
        rc = send_full(v, s->st, &cur, veil_store_version(v->store), json);
    veil_store__map_free(&cur);
    if (rc == 0) {
        s->resync = false;
        set_clear(v, &s->dirty);
    }
    return rc;
}

int veil_view_poll(struct veil_view_sub *s, char **update_json)
{
    struct veil_views *v = s->v;
    *update_json = NULL;
    if (s->stale)
        return -ESTALE;
    if (ensure_built(v) < 0)
        return -ENOMEM;
    if (s->resync)
        return poll_resync(s, update_json);
    if (s->dirty._n == 0)
        return 0;
    uint64_t version = veil_store_version(v->store);
    struct delta d = {0};
    delta_init(&d, version, false);
    size_t changes = 0;
    MAP_EACH(&s->dirty, sl)
    {
        struct vkey *k = sl->p;
        uint64_t want = want_hash(v, s->node, k), had = sent_hash(s->st, k);
        if (want == had)
            continue;
        changes++;
        if (want != 0)
            delta_upsert(&d, item_get(v, k));
        else
            delta_remove(&d, k);
    }
    if (changes == 0) {
        veil_free(delta_finish(&d));
        set_clear(v, &s->dirty);
        return 0;
    }
    char *json = delta_finish(&d);
    if (json == NULL)
        return -ENOMEM;
    MAP_EACH(&s->dirty, sl)
    {
        struct vkey *k = sl->p;
        uint64_t want = want_hash(v, s->node, k);
        if (want != sent_hash(s->st, k) && sent_set(v, s->st, version, k, want) < 0) {
            veil_free(json);
            s->resync = true; /* what was recorded is partial: diff it all next time */
            return -ENOMEM;
        }
    }
    s->st->version = version;
    set_clear(v, &s->dirty);
    *update_json = json;
    return 0;
}

void veil_view_ack(struct veil_view_sub *s, uint64_t version)
{
    if (!s->observer && !s->stale && version > s->node->acked)
        s->node->acked = version;
}

void veil_view_nack(struct veil_view_sub *s, uint64_t version, const char *reason)
{
    if (s->observer || s->stale)
        return;
    struct node *n = s->node;
    n->nacked = version;
    veil_free(n->nack_reason);
    n->nack_reason = veil_strndup(reason != NULL ? reason : "", REASON_MAX);
}

void veil_view_unsubscribe(struct veil_view_sub *s)
{
    if (s == NULL)
        return;
    struct veil_views *v = s->v;
    if (v->nsubs > s->idx && v->subs[s->idx] == s)
        subs_del(v, s);
    if (s->node->primary == s)
        s->node->primary = NULL;
    set_clear(v, &s->dirty);
    if (s->observer)
        sent_free(v, &s->own);
    veil_free(s);
}

/* ---- queries ---------------------------------------------------------------------- */

bool veil_view_node_may_have(struct veil_views *v, const char *node, const char *ns, const char *sa)
{
    if (ensure_built(v) < 0)
        return false;
    const struct node *n = node_get(v, node, false);
    char key[KEY_MAX];
    snprintf(key, sizeof(key), "%s/%s", ns, sa);
    return n != NULL && cnt_get(&n->sa_count, key) > 0;
}

static void node_status(const struct node *n, struct veil_view_node_status *out)
{
    *out = (struct veil_view_node_status){
        .name = n->name,
        .subscribed = n->primary != NULL,
        .workloads = n->wls._n,
        .sent = n->st.valid ? n->st.version : 0,
        .acked = n->acked,
        .nacked = n->nacked,
        .nack_reason = n->nack_reason,
    };
}

bool veil_views_node_status(struct veil_views *v, const char *node,
                            struct veil_view_node_status *out)
{
    const struct node *n = node_get(v, node, false);
    if (n != NULL)
        node_status(n, out);
    return n != NULL;
}

void veil_views_each_node(struct veil_views *v,
                          void (*fn)(void *ctx, const struct veil_view_node_status *st), void *ctx)
{
    MAP_EACH(&v->nodes, sl)
    {
        struct veil_view_node_status st;
        node_status(sl->p, &st);
        fn(ctx, &st);
    }
}

const char *veil_views_item(struct veil_views *v, const char *key)
{
    if (ensure_built(v) < 0)
        return NULL;
    struct veil_store__slot *sl = veil_store__map_find(&v->items, key, H(key));
    return sl != NULL ? ((struct item *)sl->p)->text : NULL;
}

const struct veil_res *veil_views_service_waypoint(struct veil_views *v, const struct veil_res *svc,
                                                   const char **name)
{
    *name = NULL;
    if (ensure_built(v) < 0)
        return NULL;
    *name = waypoint_name(v, svc);
    return *name != NULL ? waypoint_find(v, svc->ns, *name) : NULL;
}

const struct veil_res *veil_views_waypoint(struct veil_views *v, const char *ns, const char *name)
{
    return ensure_built(v) == 0 ? waypoint_find(v, ns, name) : NULL;
}

bool veil_views_workload_has_waypoint(struct veil_views *v, const struct veil_res *w)
{
    if (ensure_built(v) < 0)
        return false;
    struct veil_store__slot *sl = veil_store__map_find(&v->ns, w->ns, H(w->ns));
    if (sl == NULL || w->u.wl.address == NULL)
        return false;
    MAP_EACH(&((struct nsidx *)sl->p)->svcs, ss)
    {
        const struct veil_res *s = ss->p;
        const char *name;
        if (s->u.svc.has_selector && veil_res_selects(&s->u.svc.selector, &w->labels) &&
            (name = waypoint_name(v, s)) != NULL && waypoint_find(v, s->ns, name) != NULL)
            return true;
    }
    return false;
}

const struct veil_store *veil_views_store(const struct veil_views *v)
{
    return v->store;
}

const char *veil_views_root_ns(const struct veil_views *v)
{
    return v->root_ns;
}

const char *veil_views_trust_domain(const struct veil_views *v)
{
    return v->trust_domain;
}

/* ---- life -------------------------------------------------------------------------- */

struct veil_views *veil_views_new(struct veil_store *store, const struct veil_views_opts *opts)
{
    struct veil_views *v = veil_calloc(1, sizeof(*v));
    if (v == NULL)
        return NULL;
    v->store = store;
    v->trust_domain = veil_strdup(opts && opts->trust_domain ? opts->trust_domain
                                                             : VEIL_VIEWS_DEFAULT_TRUST_DOMAIN);
    v->root_ns = veil_strdup(opts && opts->root_ns ? opts->root_ns : VEIL_VIEWS_DEFAULT_ROOT_NS);
    v->node_log_max = opts && opts->node_log_max ? opts->node_log_max : VEIL_VIEWS_DEFAULT_NODE_LOG;
    if (v->trust_domain == NULL || v->root_ns == NULL || rebuild(v) < 0) {
        veil_views_free(v);
        errno = ENOMEM;
        return NULL;
    }
    veil_store_set_listener(store, on_changes, v);
    return v;
}

void veil_views_free(struct veil_views *v)
{
    if (v == NULL)
        return;
    if (v->store != NULL)
        veil_store_set_listener(v->store, NULL, NULL);
    while (v->nsubs > 0)
        veil_view_unsubscribe(v->subs[v->nsubs - 1]);
    veil_free(v->subs);
    registry_clear(v);
    MAP_EACH(&v->nodes, sl)
    node_free(v, sl->p);
    veil_store__map_free(&v->nodes);
    set_clear(v, &v->shared);
    veil_store__map_free(&v->keys);
    veil_free(v->trust_domain);
    veil_free(v->root_ns);
    veil_free(v);
}
