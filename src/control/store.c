/*
 * The versioned store: all-or-nothing operations over a copy of the state,
 * the change log, ClusterIP allocation and the state file.
 */
#include "control/store.h"

#include "control/resource.h"
#include "core/alloc.h"
#include "core/file.h"
#include "core/arena.h"
#include "core/conf.h"
#include "core/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define POOL_MAX_BITS 20
#define ID_MAX        600

/* ---- the string map ------------------------------------------------------ */

uint64_t veil_store__hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h;
}

struct veil_store__slot *veil_store__map_find(const struct veil_store__map *m, const char *key,
                                              uint64_t h)
{
    if (m->_cap == 0)
        return NULL;
    size_t mask = m->_cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        struct veil_store__slot *s = &m->_slots[i];
        if (s->key == NULL)
            return NULL;
        if (s->h == h && strcmp(s->key, key) == 0)
            return s;
    }
}

static void slot_insert(struct veil_store__slot *slots, size_t cap,
                        const struct veil_store__slot *in)
{
    size_t mask = cap - 1;
    size_t i = in->h & mask;
    while (slots[i].key != NULL)
        i = (i + 1) & mask;
    slots[i] = *in;
}

static int map_grow(struct veil_store__map *m, size_t want)
{
    size_t cap = m->_cap ? m->_cap : 8;
    while (cap * 3 < want * 4) /* load <= 3/4: linear probing stays short */
        cap *= 2;
    if (cap == m->_cap)
        return 0;
    struct veil_store__slot *s = veil_calloc(cap, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < m->_cap; i++)
        if (m->_slots[i].key != NULL)
            slot_insert(s, cap, &m->_slots[i]);
    veil_free(m->_slots);
    m->_slots = s;
    m->_cap = cap;
    return 0;
}

int veil_store__map_reserve(struct veil_store__map *m, size_t extra)
{
    return map_grow(m, m->_n + extra);
}

int veil_store__map_put(struct veil_store__map *m, const char *key, uint64_t h, void *p, uint64_t u)
{
    struct veil_store__slot *s = veil_store__map_find(m, key, h);
    if (s != NULL) {
        s->key = key;
        s->p = p;
        s->u = u;
        return 0;
    }
    if (map_grow(m, m->_n + 1) < 0)
        return -ENOMEM;
    slot_insert(m->_slots, m->_cap, &(struct veil_store__slot){key, h, p, u});
    m->_n++;
    return 0;
}

bool veil_store__map_del(struct veil_store__map *m, const char *key, uint64_t h)
{
    struct veil_store__slot *s = veil_store__map_find(m, key, h);
    if (s == NULL)
        return false;
    size_t mask = m->_cap - 1, i = (size_t)(s - m->_slots);
    /* Backward-shift deletion keeps probe chains intact without tombstones. */
    for (size_t j = (i + 1) & mask; m->_slots[j].key != NULL; j = (j + 1) & mask) {
        size_t home = m->_slots[j].h & mask;
        bool between = i <= j ? (i < home && home <= j) : (i < home || home <= j);
        if (!between) {
            m->_slots[i] = m->_slots[j];
            i = j;
        }
    }
    m->_slots[i].key = NULL;
    m->_n--;
    return true;
}

int veil_store__map_copy(struct veil_store__map *dst, const struct veil_store__map *src)
{
    *dst = (struct veil_store__map){0};
    if (src->_cap == 0)
        return 0;
    dst->_slots = veil_malloc(src->_cap * sizeof(*dst->_slots));
    if (dst->_slots == NULL)
        return -ENOMEM;
    memcpy(dst->_slots, src->_slots, src->_cap * sizeof(*dst->_slots));
    dst->_cap = src->_cap;
    dst->_n = src->_n;
    return 0;
}

void veil_store__map_free(struct veil_store__map *m)
{
    veil_free(m->_slots);
    *m = (struct veil_store__map){0};
}

#define MAP_EACH(m, s)                                                                             \
    for (struct veil_store__slot *s = (m)->_slots; s < (m)->_slots + (m)->_cap; s++)               \
        if (s->key != NULL)

/* ---- ClusterIP pool ------------------------------------------------------ */

struct ipent {
    int64_t off; /* offset in the pool, or -1 */
    char ip[INET6_ADDRSTRLEN];
    char svc[]; /* "ns/name" */
};

static void ip_from_off(const struct veil_store *s, uint32_t off, char *out, size_t n)
{
    unsigned char a[16];
    memcpy(a, s->_net, 16);
    int len = s->_family == 4 ? 4 : 16;
    uint64_t carry = off;
    for (int i = len - 1; i >= 0 && carry; i--) {
        carry += a[i];
        a[i] = (unsigned char)(carry & 0xff);
        carry >>= 8;
    }
    inet_ntop(s->_family == 4 ? AF_INET : AF_INET6, a, out, (socklen_t)n);
}

/* The pool offset of a canonical address, or -1 when outside the pool. */
static int64_t off_from_ip(const struct veil_store *s, const char *ip)
{
    unsigned char a[16] = {0};
    int len = s->_family == 4 ? 4 : 16;
    if (inet_pton(s->_family == 4 ? AF_INET : AF_INET6, ip, a) != 1)
        return -1;
    uint64_t diff = 0;
    for (int i = 0; i < len; i++) {
        int d = (int)a[i] - (int)s->_net[i];
        if (i < len - 4 && d != 0)
            return -1;
        if (i >= len - 4)
            diff = (diff << 8) + (uint64_t)a[i];
    }
    uint64_t base = 0;
    for (int i = len - 4; i < len; i++)
        base = (base << 8) + s->_net[i];
    if (diff < base || diff - base >= s->_pool)
        return -1;
    return (int64_t)(diff - base);
}

static bool bit_get(const uint8_t *b, uint32_t i)
{
    return (b[i / 8] >> (i % 8)) & 1;
}

static void bit_set(uint8_t *b, uint32_t i, bool v)
{
    if (v)
        b[i / 8] |= (uint8_t)(1u << (i % 8));
    else
        b[i / 8] &= (uint8_t) ~(1u << (i % 8));
}

static void ipstate_free_shell(struct veil_store__ipstate *st)
{
    veil_store__map_free(&st->by_svc);
    veil_store__map_free(&st->by_ip);
    veil_free(st->used);
    st->used = NULL;
}

/* Frees the entries of `st` that `keep` does not hold, then st itself. */
static void ipstate_drop(struct veil_store__ipstate *st, const struct veil_store__ipstate *keep)
{
    MAP_EACH(&st->by_svc, sl)
    {
        struct veil_store__slot *k =
            keep ? veil_store__map_find(&keep->by_svc, sl->key, sl->h) : NULL;
        if (k == NULL || k->p != sl->p)
            veil_free(sl->p);
    }
    ipstate_free_shell(st);
}

static int ipstate_copy(const struct veil_store *s, struct veil_store__ipstate *dst,
                        const struct veil_store__ipstate *src)
{
    *dst = (struct veil_store__ipstate){.next = src->next};
    size_t bytes = (s->_pool + 7) / 8;
    dst->used = veil_malloc(bytes);
    if (dst->used == NULL || veil_store__map_copy(&dst->by_svc, &src->by_svc) < 0 ||
        veil_store__map_copy(&dst->by_ip, &src->by_ip) < 0) {
        ipstate_free_shell(dst);
        return -ENOMEM;
    }
    memcpy(dst->used, src->used, bytes);
    return 0;
}

static void ip_release(struct veil_store__ipstate *st, struct ipent *e)
{
    veil_store__map_del(&st->by_svc, e->svc, veil_store__hash(e->svc));
    veil_store__map_del(&st->by_ip, e->ip, veil_store__hash(e->ip));
    if (e->off >= 0)
        bit_set(st->used, (uint32_t)e->off, false);
}

/* Records svc -> ip in st (the entry is new; the caller checked conflicts). */
static int ip_assign(const struct veil_store *s, struct veil_store__ipstate *st, const char *svc,
                     const char *ip)
{
    size_t n = strlen(svc) + 1;
    struct ipent *e = veil_malloc(sizeof(*e) + n);
    if (e == NULL)
        return -ENOMEM;
    memcpy(e->svc, svc, n);
    snprintf(e->ip, sizeof(e->ip), "%s", ip);
    e->off = off_from_ip(s, ip);
    if (veil_store__map_reserve(&st->by_svc, 1) < 0 || veil_store__map_reserve(&st->by_ip, 1) < 0) {
        veil_free(e);
        return -ENOMEM;
    }
    struct veil_store__slot *old = veil_store__map_find(&st->by_svc, svc, veil_store__hash(svc));
    if (old != NULL)
        ip_release(st, old->p); /* still owned by the other state, or freed at drop */
    veil_store__map_put(&st->by_svc, e->svc, veil_store__hash(e->svc), e, 0);
    veil_store__map_put(&st->by_ip, e->ip, veil_store__hash(e->ip), e, 0);
    if (e->off >= 0)
        bit_set(st->used, (uint32_t)e->off, true);
    return 0;
}

/* Next free address of the pool (offsets 0 and pool-1 are never used). */
static int ip_alloc(const struct veil_store *s, struct veil_store__ipstate *st, char *out, size_t n)
{
    for (uint32_t k = 0; k < s->_pool; k++) {
        uint32_t off = (st->next + k) % s->_pool;
        if (off == 0 || off == s->_pool - 1 || bit_get(st->used, off))
            continue;
        ip_from_off(s, off, out, n);
        if (veil_store__map_find(&st->by_ip, out, veil_store__hash(out)) != NULL)
            continue;
        st->next = off + 1;
        return 0;
    }
    return -ENOSPC;
}

static int pool_init(struct veil_store *s, const char *cidr, struct veil_conf_err *err)
{
    int prefix;
    if (veil_res_parse_cidr(cidr, true, s->_net, &s->_family, &prefix) < 0)
        return veil_conf_errf(err, NULL, NULL, "service CIDR \"%s\" is not a valid CIDR", cidr);
    int host = (s->_family == 4 ? 32 : 128) - prefix;
    if (host < 2)
        return veil_conf_errf(err, NULL, NULL, "service CIDR \"%s\" is too small", cidr);
    s->_pool = 1u << (host > POOL_MAX_BITS ? POOL_MAX_BITS : host);
    s->_ip.used = veil_calloc((s->_pool + 7) / 8, 1);
    s->_ip.next = 1;
    if (s->_ip.used == NULL) {
        veil_conf_errf(err, NULL, NULL, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

/* ---- transactions ------------------------------------------------------- */

struct op {
    const char *id;
    struct veil_res *nr;  /* new resource (owned until commit), NULL: delete */
    struct veil_res *old; /* the resource it replaces or deletes, or NULL */
    const struct veil_conf_node *at;
    enum veil_store_outcome what;
    uint64_t version; /* of its change, set by txn_build */
};

struct txn {
    struct veil_store *s;
    enum veil_res_source src;
    struct op *ops;
    size_t n, cap;
    struct veil_store__map byid; /* id -> op index + 1, for duplicates */
    struct veil_store__map res;  /* the resulting resource map */
    struct veil_store__ipstate ip;
    bool ip_copied;
    uint64_t version;
    struct veil_conf_err *err;
    struct veil_store_change *changes;
    size_t nchanges;
};

static int txn_oom(struct txn *t)
{
    veil_conf_errf(t->err, NULL, NULL, "out of memory");
    return -ENOMEM;
}

static int txn_push(struct txn *t, const struct op *o)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        struct op *v = veil_realloc(t->ops, cap * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        t->ops = v;
        t->cap = cap;
    }
    t->ops[t->n++] = *o;
    return 0;
}

static void txn_free(struct txn *t, bool committed)
{
    for (size_t i = 0; i < t->n; i++)
        if (!committed || t->ops[i].what == VEIL_STORE_UNCHANGED)
            veil_res_free(t->ops[i].nr);
    veil_free(t->ops);
    veil_store__map_free(&t->byid);
    veil_store__map_free(&t->res);
    if (t->ip_copied && !committed)
        ipstate_drop(&t->ip, &t->s->_ip);
    veil_free(t->changes);
}

/* The metadata.name node of a document, for errors about the resource as a whole. */
static const struct veil_conf_node *name_node(const struct veil_conf_node *doc)
{
    const struct veil_conf_node *n = veil_conf_map_get(veil_conf_map_get(doc, "metadata"), "name");
    return n != NULL ? n : doc;
}

static void pos_of(const struct veil_res *r, char *buf, size_t n)
{
    snprintf(buf, n, "%s:%u", r->file, (unsigned)r->line);
}

/* Adds an upsert of `r` (taken over: freed with the transaction). */
static int txn_upsert(struct txn *t, struct veil_res *r, const struct veil_conf_node *at)
{
    uint64_t h = veil_store__hash(r->id);
    struct veil_store__slot *dupl = veil_store__map_find(&t->byid, r->id, h);
    if (dupl != NULL) {
        char where[VEIL_CONF_ERR_FILE_MAX + 16];
        pos_of(t->ops[dupl->u - 1].nr, where, sizeof(where));
        int rc = veil_conf_errf(t->err, name_node(at),
                                VEIL_CONF_KEY(VEIL_CONF_KEY(NULL, "metadata"), "name"),
                                "duplicate: %s is already defined at %s", r->id, where);
        veil_res_free(r);
        return rc;
    }
    if (txn_push(t, &(struct op){.id = r->id, .nr = r, .at = at}) < 0) {
        veil_res_free(r);
        return txn_oom(t);
    }
    if (veil_store__map_put(&t->byid, r->id, h, NULL, t->n) < 0)
        return txn_oom(t);
    return 0;
}

/* Parses every document of confs into upserts. */
static int txn_parse(struct txn *t, struct veil_conf *const *confs, size_t n)
{
    for (size_t c = 0; c < n; c++) {
        for (size_t d = 0; d < veil_conf_ndocs(confs[c]); d++) {
            const struct veil_conf_node *doc = veil_conf_doc(confs[c], d);
            struct veil_res *r;
            int rc = veil_res_parse(doc, t->src, &r, t->err);
            if (rc < 0)
                return rc;
            if (r != NULL && (rc = txn_upsert(t, r, doc)) < 0)
                return rc;
        }
    }
    return 0;
}

/* Sets old/what of every op and checks that the ids belong to the source. */
static int txn_resolve(struct txn *t)
{
    for (size_t i = 0; i < t->n; i++) {
        struct op *o = &t->ops[i];
        struct veil_store__slot *sl =
            veil_store__map_find(&t->s->_res, o->id, veil_store__hash(o->id));
        o->old = sl != NULL ? sl->p : NULL;
        if (o->old != NULL && o->old->source != t->src) {
            char where[VEIL_CONF_ERR_FILE_MAX + 16];
            pos_of(o->old, where, sizeof(where));
            return veil_conf_errf(t->err, o->at, NULL,
                                  "%s is defined by the %s source (%s); change it there", o->id,
                                  veil_res_source_str(o->old->source), where);
        }
        if (o->nr == NULL && o->old == NULL) {
            veil_conf_errf(t->err, o->at, NULL, "%s not found", o->id);
            return -ENOENT;
        }
        if (o->nr == NULL)
            o->what = VEIL_STORE_DELETED;
        else if (o->old == NULL)
            o->what = VEIL_STORE_CREATED;
        else if (json_equal(o->old->raw, o->nr->raw))
            o->what = VEIL_STORE_UNCHANGED;
        else
            o->what = VEIL_STORE_CONFIGURED;
    }
    return 0;
}

/* The dir source's resources that are not in the new set are deleted. */
static int txn_add_dir_deletes(struct txn *t)
{
    MAP_EACH(&t->s->_res, sl)
    {
        struct veil_res *r = sl->p;
        if (r->source != VEIL_RES_SRC_DIR || veil_store__map_find(&t->byid, r->id, sl->h) != NULL)
            continue;
        if (txn_push(t, &(struct op){.id = r->id}) < 0)
            return txn_oom(t);
    }
    return 0;
}

/* Builds the resulting map and gives each change its version. */
static int txn_build(struct txn *t)
{
    if (veil_store__map_copy(&t->res, &t->s->_res) < 0 ||
        veil_store__map_reserve(&t->res, t->n) < 0)
        return txn_oom(t);
    t->version = t->s->_version;
    for (size_t i = 0; i < t->n; i++) {
        struct op *o = &t->ops[i];
        uint64_t h = veil_store__hash(o->id);
        if (o->what == VEIL_STORE_UNCHANGED)
            continue;
        o->version = ++t->version;
        if (o->nr != NULL) {
            o->nr->version = t->version;
            veil_store__map_put(&t->res, o->nr->id, h, o->nr, 0);
        } else {
            veil_store__map_del(&t->res, o->id, h);
        }
    }
    return 0;
}

static const struct veil_res *result_get(const struct txn *t, const char *id)
{
    struct veil_store__slot *sl = veil_store__map_find(&t->res, id, veil_store__hash(id));
    return sl != NULL ? sl->p : NULL;
}

/* A Pod and a WorkloadEntry with the same namespace/name would be one Workload. */
static int txn_check_workloads(struct txn *t)
{
    for (size_t i = 0; i < t->n; i++) {
        const struct veil_res *r = t->ops[i].nr;
        if (r == NULL || !veil_res_is_workload(r))
            continue;
        char other[ID_MAX];
        veil_res_id_format(other, sizeof(other),
                           r->kind == VEIL_RES_POD ? VEIL_RES_WORKLOAD_ENTRY : VEIL_RES_POD, r->ns,
                           r->name);
        const struct veil_res *o = result_get(t, other);
        if (o != NULL) {
            char where[VEIL_CONF_ERR_FILE_MAX + 16];
            pos_of(o, where, sizeof(where));
            return veil_conf_errf(t->err, name_node(t->ops[i].at),
                                  VEIL_CONF_KEY(VEIL_CONF_KEY(NULL, "metadata"), "name"),
                                  "%s has the same namespace and name as %s (%s): a Pod and "
                                  "a WorkloadEntry may not share a name",
                                  r->id, other, where);
        }
    }
    return 0;
}

static void svc_key(const struct veil_res *r, char *buf, size_t n)
{
    snprintf(buf, n, "%s/%s", r->ns, r->name);
}

/* Assigns the ClusterIP of one new Service resource in t->ip. */
static int txn_service_ip(struct txn *t, struct op *o)
{
    struct veil_store *s = t->s;
    struct veil_res *r = o->nr;
    char key[ID_MAX], ip[INET6_ADDRSTRLEN];
    svc_key(r, key, sizeof(key));
    uint64_t h = veil_store__hash(key);
    struct veil_store__slot *cur = veil_store__map_find(&t->ip.by_svc, key, h);
    const char *want = r->u.svc.cluster_ip;
    if (want != NULL && strcmp(want, "None") == 0) {
        if (cur != NULL)
            ip_release(&t->ip, cur->p);
        return veil_res__set_cluster_ip(r, "None") < 0 ? txn_oom(t) : 0;
    }
    if (want == NULL && cur != NULL)
        return veil_res__set_cluster_ip(r, ((struct ipent *)cur->p)->ip) < 0 ? txn_oom(t) : 0;
    if (want != NULL) {
        if (cur != NULL && strcmp(((struct ipent *)cur->p)->ip, want) == 0)
            return veil_res__set_cluster_ip(r, want) < 0 ? txn_oom(t) : 0;
        struct veil_store__slot *own =
            veil_store__map_find(&t->ip.by_ip, want, veil_store__hash(want));
        if (own != NULL) {
            const struct veil_conf_node *spec = veil_conf_map_get(o->at, "spec");
            return veil_conf_errf(t->err, veil_conf_map_get(spec, "clusterIP"),
                                  VEIL_CONF_KEY(VEIL_CONF_KEY(NULL, "spec"), "clusterIP"),
                                  "%s is already allocated to Service %s", want,
                                  ((struct ipent *)own->p)->svc);
        }
        snprintf(ip, sizeof(ip), "%s", want);
    } else if (ip_alloc(s, &t->ip, ip, sizeof(ip)) < 0) {
        veil_conf_errf(t->err, o->at, NULL, "%s: no free ClusterIP left in the service range",
                       r->id);
        return -ENOSPC;
    }
    if (ip_assign(s, &t->ip, key, ip) < 0 || veil_res__set_cluster_ip(r, ip) < 0)
        return txn_oom(t);
    return 0;
}

static int txn_ips(struct txn *t)
{
    if (ipstate_copy(t->s, &t->ip, &t->s->_ip) < 0)
        return txn_oom(t);
    t->ip_copied = true;
    /* Releases first, so an address freed by this operation can be reused. */
    for (size_t i = 0; i < t->n; i++) {
        struct op *o = &t->ops[i];
        if (o->nr == NULL && o->old != NULL && o->old->kind == VEIL_RES_SERVICE) {
            char key[ID_MAX];
            svc_key(o->old, key, sizeof(key));
            struct veil_store__slot *sl =
                veil_store__map_find(&t->ip.by_svc, key, veil_store__hash(key));
            if (sl != NULL)
                ip_release(&t->ip, sl->p);
        }
    }
    for (size_t i = 0; i < t->n; i++) {
        struct op *o = &t->ops[i];
        if (o->what == VEIL_STORE_UNCHANGED || o->nr == NULL || o->nr->kind != VEIL_RES_SERVICE)
            continue;
        int rc = txn_service_ip(t, o);
        if (rc < 0)
            return rc;
    }
    if (t->src == VEIL_RES_SRC_DIR) {
        /* Reservations kept from before a restart for Services now gone. */
        MAP_EACH(&t->s->_ip.by_svc, sl)
        {
            char id[ID_MAX];
            snprintf(id, sizeof(id), "Service/%s", sl->key);
            if (result_get(t, id) == NULL &&
                veil_store__map_find(&t->ip.by_svc, sl->key, sl->h) != NULL)
                ip_release(&t->ip, sl->p);
        }
    }
    return 0;
}

/* ---- the state file ----------------------------------------------------- */

static json_t *state_json(const struct veil_store__map *res, const struct veil_store__ipstate *ip,
                          uint64_t version)
{
    json_t *root = json_object(), *ips = json_object(), *list = json_array();
    if (root == NULL || ips == NULL || list == NULL)
        goto fail;
    json_object_set_new(root, "format", json_integer(1));
    json_object_set_new(root, "version", json_integer((json_int_t)version));
    json_object_set(root, "clusterIPs", ips);
    json_object_set(root, "resources", list);
    MAP_EACH(&ip->by_svc, sl)
    {
        const struct ipent *e = sl->p;
        if (json_object_set_new(ips, e->svc, json_string(e->ip)) < 0)
            goto fail;
    }
    MAP_EACH(res, sl)
    {
        const struct veil_res *r = sl->p;
        if (r->source != VEIL_RES_SRC_API)
            continue;
        json_t *e = json_pack("{s:I,s:s,s:I,s:O}", "version", (json_int_t)r->version, "file",
                              r->file, "line", (json_int_t)r->line, "object", r->raw);
        if (e == NULL || json_array_append_new(list, e) < 0)
            goto fail;
    }
    json_decref(ips);
    json_decref(list);
    return root;
fail:
    json_decref(root);
    json_decref(ips);
    json_decref(list);
    return NULL;
}

/* Writes the state atomically: temp file, fsync, rename, fsync of the dir. */
static int state_write(struct veil_store *s, const struct veil_store__map *res,
                       const struct veil_store__ipstate *ip, uint64_t version,
                       struct veil_conf_err *err)
{
    if (s->_path == NULL)
        return 0;
    json_t *root = state_json(res, ip, version);
    char *text = root != NULL ? json_dumps(root, JSON_INDENT(1) | JSON_SORT_KEYS) : NULL;
    json_decref(root);
    if (text == NULL) {
        veil_conf_errf(err, NULL, NULL, "out of memory");
        return -ENOMEM;
    }
    /* The text and its closing newline, in one buffer for one atomic write. */
    size_t n = strlen(text);
    char *whole = realloc(text, n + 2);
    if (whole == NULL) {
        free(text);
        veil_conf_errf(err, NULL, NULL, "out of memory");
        return -ENOMEM;
    }
    memcpy(whole + n, "\n", 2);
    const char *step = NULL;
    int rc = veil_file_write_atomic(s->_path, whole, n + 1, 0600, &step);
    free(whole);
    if (rc < 0) {
        veil_conf_errf(err, NULL, NULL, "cannot write %s: %s: %s", s->_path, step, strerror(-rc));
        return rc;
    }
    return 0;
}

/* ---- commit ------------------------------------------------------------- */

static void log_push(struct veil_store *s, const struct veil_store_change *c)
{
    if (s->_log_max == 0) {
        veil_res_free(c->before);
        s->_log_floor = c->version;
        return;
    }
    if (s->_log_n == s->_log_max) {
        struct veil_store_change *old = &s->_log[s->_log_head];
        s->_log_floor = old->version;
        veil_res_free(old->before);
        s->_log_head = (s->_log_head + 1) % s->_log_max;
        s->_log_n--;
    }
    s->_log[(s->_log_head + s->_log_n) % s->_log_max] = *c;
    s->_log_n++;
}

static int txn_report(struct txn *t, struct veil_store_report *rep)
{
    if (rep == NULL)
        return 0;
    rep->v = veil_calloc(t->n ? t->n : 1, sizeof(*rep->v));
    if (rep->v == NULL)
        return txn_oom(t);
    for (size_t i = 0; i < t->n; i++) {
        const struct op *o = &t->ops[i];
        rep->v[i].what = o->what;
        rep->v[i].ignored = (o->nr ? o->nr : o->old)->kind == VEIL_RES_IGNORED;
        rep->v[i].id = veil_strdup(o->id);
        rep->n++;
        if (rep->v[i].id == NULL) {
            veil_store_report_free(rep);
            return txn_oom(t);
        }
    }
    return 0;
}

/* Nothing below allocates: the store takes the new state in one step. */
static void txn_commit(struct txn *t)
{
    struct veil_store *s = t->s;
    size_t k = 0;
    for (size_t i = 0; i < t->n; i++) {
        struct op *o = &t->ops[i];
        if (o->what == VEIL_STORE_UNCHANGED)
            continue;
        t->changes[k++] = (struct veil_store_change){o->version, o->old, o->nr};
    }
    t->nchanges = k;
    veil_store__map_free(&s->_res);
    s->_res = t->res;
    t->res = (struct veil_store__map){0};
    ipstate_drop(&s->_ip, &t->ip);
    s->_ip = t->ip;
    t->ip_copied = false;
    s->_version = t->version;
    s->_has_err[t->src] = false;
    if (s->_listener != NULL && k > 0)
        s->_listener(s->_listener_ctx, t->changes, k);
    for (size_t i = 0; i < k; i++)
        log_push(s, &t->changes[i]);
}

static int log_reserve(struct veil_store *s)
{
    if (s->_log != NULL || s->_log_max == 0)
        return 0;
    s->_log = veil_calloc(s->_log_max, sizeof(*s->_log));
    return s->_log != NULL ? 0 : -ENOMEM;
}

static int txn_finish(struct txn *t, int rc, struct veil_store_report *rep)
{
    struct veil_store *s = t->s;
    if (rc == 0)
        rc = txn_build(t);
    if (rc == 0)
        rc = txn_check_workloads(t);
    if (rc == 0)
        rc = txn_ips(t);
    if (rc == 0 && (log_reserve(s) < 0 ||
                    (t->changes = veil_calloc(t->n ? t->n : 1, sizeof(*t->changes))) == NULL))
        rc = txn_oom(t);
    if (rc == 0)
        rc = txn_report(t, rep);
    if (rc == 0 && t->version != s->_version)
        rc = state_write(s, &t->res, &t->ip, t->version, t->err);
    if (rc < 0) {
        if (rep != NULL)
            veil_store_report_free(rep);
        if (t->err != NULL) {
            s->_err[t->src] = *t->err;
            s->_has_err[t->src] = true;
        }
        txn_free(t, false);
        return rc;
    }
    txn_commit(t);
    txn_free(t, true);
    return 0;
}

static void txn_init(struct txn *t, struct veil_store *s, enum veil_res_source src,
                     struct veil_store_report *rep, struct veil_conf_err *err)
{
    *t = (struct txn){.s = s, .src = src, .err = err};
    if (rep != NULL)
        *rep = (struct veil_store_report){0};
}

int veil_store_apply(struct veil_store *s, struct veil_conf *const *confs, size_t n,
                     struct veil_store_report *rep, struct veil_conf_err *err)
{
    struct veil_conf_err tmp = {0};
    struct txn t;
    txn_init(&t, s, VEIL_RES_SRC_API, rep, err ? err : &tmp);
    int rc = txn_parse(&t, confs, n);
    if (rc == 0)
        rc = txn_resolve(&t);
    return txn_finish(&t, rc, rep);
}

int veil_store_replace_dir(struct veil_store *s, struct veil_conf *const *confs, size_t n,
                           struct veil_store_report *rep, struct veil_conf_err *err)
{
    struct veil_conf_err tmp = {0};
    struct txn t;
    txn_init(&t, s, VEIL_RES_SRC_DIR, rep, err ? err : &tmp);
    int rc = txn_parse(&t, confs, n);
    if (rc == 0)
        rc = txn_add_dir_deletes(&t);
    if (rc == 0)
        rc = txn_resolve(&t);
    return txn_finish(&t, rc, rep);
}

static int txn_delete_id(struct txn *t, const char *id, const struct veil_conf_node *at)
{
    uint64_t h = veil_store__hash(id);
    if (veil_store__map_find(&t->byid, id, h) != NULL)
        return 0; /* named twice: deleted once */
    struct veil_store__slot *sl = veil_store__map_find(&t->s->_res, id, h);
    if (sl == NULL) {
        veil_conf_errf(t->err, at, NULL, "%s not found", id);
        return -ENOENT;
    }
    const char *key = ((struct veil_res *)sl->p)->id;
    if (txn_push(t, &(struct op){.id = key, .at = at}) < 0 ||
        veil_store__map_put(&t->byid, key, h, NULL, t->n) < 0)
        return txn_oom(t);
    return 0;
}

int veil_store_delete(struct veil_store *s, const char *const *ids, size_t n,
                      struct veil_store_report *rep, struct veil_conf_err *err)
{
    struct veil_conf_err tmp = {0};
    struct txn t;
    txn_init(&t, s, VEIL_RES_SRC_API, rep, err ? err : &tmp);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = txn_delete_id(&t, ids[i], NULL);
    if (rc == 0)
        rc = txn_resolve(&t);
    return txn_finish(&t, rc, rep);
}

int veil_store_delete_docs(struct veil_store *s, struct veil_conf *const *confs, size_t n,
                           struct veil_store_report *rep, struct veil_conf_err *err)
{
    struct veil_conf_err tmp = {0};
    struct txn t;
    txn_init(&t, s, VEIL_RES_SRC_API, rep, err ? err : &tmp);
    int rc = 0;
    for (size_t c = 0; rc == 0 && c < n; c++) {
        for (size_t d = 0; rc == 0 && d < veil_conf_ndocs(confs[c]); d++) {
            const struct veil_conf_node *doc = veil_conf_doc(confs[c], d);
            struct veil_res *r;
            rc = veil_res_parse_ref(doc, &r, t.err);
            if (rc == 0 && r != NULL)
                rc = txn_delete_id(&t, r->id, doc);
            veil_res_free(r);
        }
    }
    if (rc == 0)
        rc = txn_resolve(&t);
    return txn_finish(&t, rc, rep);
}

void veil_store_report_free(struct veil_store_report *rep)
{
    if (rep == NULL)
        return;
    for (size_t i = 0; i < rep->n; i++)
        veil_free(rep->v[i].id);
    veil_free(rep->v);
    *rep = (struct veil_store_report){0};
}

const char *veil_store_outcome_str(enum veil_store_outcome o)
{
    static const char *const s[] = {"created", "configured", "unchanged", "deleted"};
    return (unsigned)o < 4 ? s[o] : "?";
}

/* ---- open / load -------------------------------------------------------- */

static int load_ips(struct veil_store *s, const struct veil_conf_node *ips,
                    struct veil_conf_err *err)
{
    const struct veil_conf_path *ip_path = VEIL_CONF_KEY(NULL, "clusterIPs");
    for (size_t i = 0; i < veil_conf_len(ips); i++) {
        const char *svc = veil_conf_str(veil_conf_map_key(ips, i)), *ip;
        char canon[INET6_ADDRSTRLEN];
        if (veil_conf_req_str(ips, ip_path, svc, &ip, err) < 0)
            return -EINVAL;
        if (veil_res_parse_ip(ip, canon, sizeof(canon)) < 0 ||
            veil_store__map_find(&s->_ip.by_ip, canon, veil_store__hash(canon)) != NULL)
            return veil_conf_errf(err, veil_conf_map_value(ips, i), VEIL_CONF_KEY(ip_path, svc),
                                  "invalid or duplicate address \"%s\"", ip);
        if (ip_assign(s, &s->_ip, svc, canon) < 0) {
            veil_conf_errf(err, NULL, NULL, "out of memory");
            return -ENOMEM;
        }
    }
    return 0;
}

static int load_resource(struct veil_store *s, const struct veil_conf_node *e,
                         const struct veil_conf_path *path, struct veil_conf_err *err)
{
    const struct veil_conf_node *obj;
    const char *file;
    int64_t version, line;
    struct veil_res *r;
    if (veil_conf_req_int(e, path, "version", &version, err) < 0 ||
        veil_conf_req_str(e, path, "file", &file, err) < 0 ||
        veil_conf_req_int(e, path, "line", &line, err) < 0 ||
        veil_conf_req_map(e, path, "object", &obj, err) < 0)
        return -EINVAL;
    int rc = veil_res_parse(obj, VEIL_RES_SRC_API, &r, err);
    if (rc < 0)
        return rc;
    uint64_t h = veil_store__hash(r->id);
    char key[ID_MAX];
    svc_key(r, key, sizeof(key));
    struct veil_store__slot *ip = veil_store__map_find(&s->_ip.by_svc, key, veil_store__hash(key));
    const char *cip = r->u.svc.cluster_ip;
    char fresh[INET6_ADDRSTRLEN];
    if (r->kind == VEIL_RES_SERVICE)
        cip = cip != NULL ? cip : ip != NULL ? ((struct ipent *)ip->p)->ip : NULL;
    if (r->kind == VEIL_RES_SERVICE && cip == NULL &&
        ip_alloc(s, &s->_ip, fresh, sizeof(fresh)) == 0 && ip_assign(s, &s->_ip, key, fresh) == 0)
        cip = fresh;
    r->file = veil_arena_strndup(&r->_arena, file, strlen(file));
    r->line = (uint32_t)line;
    r->version = (uint64_t)version;
    if (r->file == NULL || (cip != NULL && veil_res__set_cluster_ip(r, cip) < 0) ||
        veil_store__map_put(&s->_res, r->id, h, r, 0) < 0) {
        veil_res_free(r);
        veil_conf_errf(err, NULL, NULL, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

static int load_state(struct veil_store *s, struct veil_conf_err *err)
{
    if (access(s->_path, F_OK) < 0 && errno == ENOENT)
        return 0;
    struct veil_conf *c;
    int rc = veil_conf_load_file(&c, s->_path, err);
    if (rc < 0)
        return rc;
    const struct veil_conf_node *root = veil_conf_doc(c, 0), *ips = NULL, *list = NULL;
    int64_t version;
    rc = -EINVAL;
    if (veil_conf_expect(root, NULL, VEIL_CONF_MAP, err) == 0 &&
        veil_conf_req_int(root, NULL, "version", &version, err) == 0 &&
        veil_conf_get_map(root, NULL, "clusterIPs", &ips, err) >= 0 &&
        veil_conf_get_seq(root, NULL, "resources", &list, err) >= 0)
        rc = load_ips(s, ips, err);
    const struct veil_conf_path *lp = VEIL_CONF_KEY(NULL, "resources");
    for (size_t i = 0; rc == 0 && i < veil_conf_len(list); i++)
        rc = load_resource(s, veil_conf_seq_at(list, i), VEIL_CONF_IDX(lp, i), err);
    if (rc == 0) {
        s->_version = (uint64_t)version;
        s->_log_floor = s->_version;
    }
    veil_conf_free(c);
    return rc;
}

int veil_store_open(struct veil_store **out, const struct veil_store_opts *opts,
                    struct veil_conf_err *err)
{
    struct veil_conf_err tmp = {0};
    err = err ? err : &tmp;
    *out = NULL;
    struct veil_store *s = veil_calloc(1, sizeof(*s));
    if (s == NULL) {
        veil_conf_errf(err, NULL, NULL, "out of memory");
        return -ENOMEM;
    }
    s->_log_max = opts != NULL && opts->log_max ? opts->log_max : VEIL_STORE_DEFAULT_LOG_MAX;
    const char *cidr =
        opts != NULL && opts->service_cidr ? opts->service_cidr : VEIL_STORE_DEFAULT_CIDR;
    int rc = pool_init(s, cidr, err);
    if (rc == 0 && opts != NULL && opts->state_dir != NULL) {
        size_t n = strlen(opts->state_dir) + sizeof(VEIL_STORE_STATE_FILE) + 8;
        s->_path = veil_malloc(n);
        if (s->_path == NULL) {
            veil_conf_errf(err, NULL, NULL, "out of memory");
            rc = -ENOMEM;
        } else {
            snprintf(s->_path, n, "%s/%s", opts->state_dir, VEIL_STORE_STATE_FILE);
            rc = load_state(s, err);
        }
    }
    if (rc < 0) {
        veil_store_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void veil_store_free(struct veil_store *s)
{
    if (s == NULL)
        return;
    MAP_EACH(&s->_res, sl)
    veil_res_free(sl->p);
    veil_store__map_free(&s->_res);
    for (size_t i = 0; i < s->_log_n; i++)
        veil_res_free(s->_log[(s->_log_head + i) % s->_log_max].before);
    veil_free(s->_log);
    ipstate_drop(&s->_ip, NULL);
    veil_free(s->_path);
    veil_free(s);
}

/* ---- queries ------------------------------------------------------------ */

uint64_t veil_store_version(const struct veil_store *s)
{
    return s->_version;
}

void veil_store_set_listener(struct veil_store *s, veil_store_listener_fn *fn, void *ctx)
{
    s->_listener = fn;
    s->_listener_ctx = ctx;
}

const struct veil_res *veil_store_get(const struct veil_store *s, const char *id)
{
    struct veil_store__slot *sl = veil_store__map_find(&s->_res, id, veil_store__hash(id));
    return sl != NULL ? sl->p : NULL;
}

size_t veil_store_count(const struct veil_store *s, enum veil_res_kind kind)
{
    if (kind == VEIL_RES_NKINDS)
        return s->_res._n;
    size_t n = 0;
    MAP_EACH(&s->_res, sl)
    n += ((const struct veil_res *)sl->p)->kind == kind;
    return n;
}

static int res_cmp(const void *a, const void *b)
{
    return strcmp((*(const struct veil_res *const *)a)->id,
                  (*(const struct veil_res *const *)b)->id);
}

int veil_store_list(const struct veil_store *s, enum veil_res_kind kind,
                    const struct veil_res ***out, size_t *n)
{
    size_t k = 0, total = veil_store_count(s, kind);
    const struct veil_res **v = veil_malloc((total ? total : 1) * sizeof(*v));
    *out = NULL;
    *n = 0;
    if (v == NULL)
        return -ENOMEM;
    MAP_EACH(&s->_res, sl)
    {
        const struct veil_res *r = sl->p;
        if (kind == VEIL_RES_NKINDS || r->kind == kind)
            v[k++] = r;
    }
    qsort(v, k, sizeof(*v), res_cmp);
    *out = v;
    *n = k;
    return 0;
}

void veil_store_each(const struct veil_store *s, void (*fn)(void *ctx, const struct veil_res *r),
                     void *ctx)
{
    MAP_EACH(&s->_res, sl)
    fn(ctx, sl->p);
}

int veil_store_changes_since(const struct veil_store *s, uint64_t since,
                             void (*fn)(void *ctx, const struct veil_store_change *c), void *ctx)
{
    if (since < s->_log_floor)
        return -ERANGE;
    for (size_t i = 0; i < s->_log_n; i++) {
        const struct veil_store_change *c = &s->_log[(s->_log_head + i) % s->_log_max];
        if (c->version > since)
            fn(ctx, c);
    }
    return 0;
}

const struct veil_conf_err *veil_store_last_error(const struct veil_store *s,
                                                  enum veil_res_source src)
{
    return s->_has_err[src] ? &s->_err[src] : NULL;
}

const char *veil_store_cluster_ip(const struct veil_store *s, const char *ns, const char *name)
{
    char key[ID_MAX];
    snprintf(key, sizeof(key), "%s/%s", ns, name);
    struct veil_store__slot *sl = veil_store__map_find(&s->_ip.by_svc, key, veil_store__hash(key));
    return sl != NULL ? ((const struct ipent *)sl->p)->ip : NULL;
}
