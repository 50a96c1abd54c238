#include "core/metrics.h"

#include "core/alloc.h"
#include "core/bug.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(ATOMIC_LONG_LOCK_FREE == 2 && ATOMIC_LLONG_LOCK_FREE == 2,
               "the hot path needs lock-free 64-bit atomics");
_Static_assert(ATOMIC_POINTER_LOCK_FREE == 2, "series lookup needs lock-free pointers");

#define TABLE_MIN_SLOTS 8

struct veil_metrics_series {
    enum veil_metrics_type type;
    const struct veil_metrics_family *family;
    uint64_t hash;
    struct veil_metrics_series *next; /* creation order; under the family lock */
    char **values;
    _Atomic uint64_t value;     /* counter: count; gauge: double bits; histogram: sum bits */
    _Atomic uint64_t buckets[]; /* histogram only: per bucket, not cumulative; last is +Inf */
};

/*
 * Open addressing, linear probing, load <= 1/2, no deletion. Readers probe
 * without the lock; a full table is replaced, not resized, and the old one
 * stays allocated (chained through `retired`) until the family is freed, so
 * a reader still probing it is safe and at worst misses a new series.
 */
struct series_table {
    struct series_table *retired;
    size_t mask;
    _Atomic(struct veil_metrics_series *) slots[];
};

struct veil_metrics_family {
    enum veil_metrics_type type;
    char *name;
    char *help;
    size_t nlabels;
    char **label_names;
    size_t nbounds;
    double *bounds;
    pthread_mutex_t lock;
    _Atomic(struct series_table *) table;
    /* The rest is under `lock`. */
    size_t nseries; /* counted against the cap; the overflow series is not */
    size_t nslots_used;
    size_t cap;
    struct veil_metrics_series *first, *last;
    struct veil_metrics_series *overflow;
    _Atomic uint64_t dropped;
};

struct veil_metrics {
    pthread_mutex_t lock;
    struct veil_metrics_family **families;
    size_t nfamilies, capfamilies;
};

struct family_spec {
    enum veil_metrics_type type;
    const char *name;
    const char *help;
    size_t nlabels;
    const char *const *label_names;
    size_t nbounds;
    const double *bounds;
};

/* ---- validation ---- */

static bool is_alpha_(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool valid_ident(const char *s, bool colons)
{
    if (s == NULL || !(is_alpha_(*s) || (colons && *s == ':')))
        return false;
    for (s++; *s != '\0'; s++)
        if (!(is_alpha_(*s) || is_digit(*s) || (colons && *s == ':')))
            return false;
    return true;
}

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Length of the UTF-8 sequence at p, or 0 if invalid (overlong, surrogate, > U+10FFFF). */
static size_t utf8_seq_len(const unsigned char *p)
{
    if (p[0] < 0x80)
        return 1;
    size_t n = p[0] >= 0xf0 ? 4 : p[0] >= 0xe0 ? 3 : p[0] >= 0xc2 ? 2 : 0;
    if (n == 0 || p[0] > 0xf4)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
            return 0;
    if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] > 0x9f) ||
        (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] > 0x8f))
        return 0;
    return n;
}

static bool valid_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p != '\0') {
        size_t n = utf8_seq_len(p);
        if (n == 0)
            return false;
        p += n;
    }
    return true;
}

static bool valid_family_name(const char *name, enum veil_metrics_type type)
{
    if (!valid_ident(name, true))
        return false;
    if (has_suffix(name, "_bucket") || has_suffix(name, "_sum") || has_suffix(name, "_count"))
        return false;
    return has_suffix(name, "_total") == (type == VEIL_METRICS_COUNTER);
}

static bool valid_label_name(const char *name)
{
    return valid_ident(name, false) && strncmp(name, "__", 2) != 0 && strcmp(name, "le") != 0 &&
           strcmp(name, "quantile") != 0;
}

static bool valid_label_names(size_t n, const char *const *names)
{
    if (n > 0 && names == NULL)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!valid_label_name(names[i]))
            return false;
        for (size_t j = 0; j < i; j++)
            if (strcmp(names[i], names[j]) == 0)
                return false;
    }
    return true;
}

static bool valid_bounds(size_t n, const double *b)
{
    if (n > 0 && b == NULL)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(b[i]) || (i > 0 && !(b[i - 1] < b[i])))
            return false;
    return true;
}

static bool valid_spec(const struct family_spec *sp)
{
    return valid_family_name(sp->name, sp->type) && sp->help != NULL && sp->help[0] != '\0' &&
           valid_utf8(sp->help) && valid_label_names(sp->nlabels, sp->label_names) &&
           valid_bounds(sp->nbounds, sp->bounds);
}

/* ---- families ---- */

static struct series_table *table_new(size_t nslots)
{
    struct series_table *t =
        veil_malloc(sizeof(*t) + nslots * sizeof(_Atomic(struct veil_metrics_series *)));
    if (t == NULL)
        return NULL;
    t->retired = NULL;
    t->mask = nslots - 1;
    for (size_t i = 0; i < nslots; i++)
        atomic_init(&t->slots[i], NULL);
    return t;
}

static void family_free(struct veil_metrics_family *f)
{
    if (f == NULL)
        return;
    for (struct veil_metrics_series *s = f->first, *next; s != NULL; s = next) {
        next = s->next;
        veil_free(s);
    }
    for (struct series_table *t = atomic_load(&f->table), *old; t != NULL; t = old) {
        old = t->retired;
        veil_free(t);
    }
    for (size_t i = 0; f->label_names != NULL && i < f->nlabels; i++)
        veil_free(f->label_names[i]);
    veil_free(f->label_names);
    veil_free(f->bounds);
    veil_free(f->help);
    veil_free(f->name);
    pthread_mutex_destroy(&f->lock);
    veil_free(f);
}

static int family_copy_labels(struct veil_metrics_family *f, const struct family_spec *sp)
{
    if (sp->nlabels == 0)
        return 0;
    f->label_names = veil_calloc(sp->nlabels, sizeof(char *));
    if (f->label_names == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < sp->nlabels; i++) {
        f->label_names[i] = veil_strdup(sp->label_names[i]);
        if (f->label_names[i] == NULL)
            return -ENOMEM;
    }
    return 0;
}

static int family_copy_bounds(struct veil_metrics_family *f, const struct family_spec *sp)
{
    if (sp->nbounds == 0)
        return 0;
    f->bounds = veil_malloc(sp->nbounds * sizeof(double));
    if (f->bounds == NULL)
        return -ENOMEM;
    memcpy(f->bounds, sp->bounds, sp->nbounds * sizeof(double));
    return 0;
}

static int family_fill(struct veil_metrics_family *f, const struct family_spec *sp)
{
    f->name = veil_strdup(sp->name);
    f->help = veil_strdup(sp->help);
    if (f->name == NULL || f->help == NULL)
        return -ENOMEM;
    int rc = family_copy_labels(f, sp);
    if (rc == 0)
        rc = family_copy_bounds(f, sp);
    if (rc != 0)
        return rc;
    struct series_table *t = table_new(TABLE_MIN_SLOTS);
    atomic_store_explicit(&f->table, t, memory_order_relaxed);
    return t == NULL ? -ENOMEM : 0;
}

static struct veil_metrics_family *family_new(const struct family_spec *sp)
{
    struct veil_metrics_family *f = veil_calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    if (pthread_mutex_init(&f->lock, NULL) != 0) {
        veil_free(f);
        errno = ENOMEM;
        return NULL;
    }
    f->type = sp->type;
    f->nlabels = sp->nlabels;
    f->nbounds = sp->nbounds;
    f->cap = VEIL_METRICS_DEFAULT_SERIES_CAP;
    atomic_init(&f->table, NULL);
    atomic_init(&f->dropped, 0);
    if (family_fill(f, sp) != 0) {
        family_free(f);
        errno = ENOMEM;
        return NULL;
    }
    return f;
}

static bool family_matches(const struct veil_metrics_family *f, const struct family_spec *sp)
{
    if (f->type != sp->type || strcmp(f->help, sp->help) != 0 || f->nlabels != sp->nlabels ||
        f->nbounds != sp->nbounds)
        return false;
    for (size_t i = 0; i < f->nlabels; i++)
        if (strcmp(f->label_names[i], sp->label_names[i]) != 0)
            return false;
    return f->nbounds == 0 || memcmp(f->bounds, sp->bounds, f->nbounds * sizeof(double)) == 0;
}

/* ---- registry ---- */

struct veil_metrics *veil_metrics_new(void)
{
    struct veil_metrics *reg = veil_calloc(1, sizeof(*reg));
    if (reg == NULL)
        return NULL;
    if (pthread_mutex_init(&reg->lock, NULL) != 0) {
        veil_free(reg);
        errno = ENOMEM;
        return NULL;
    }
    return reg;
}

void veil_metrics_free(struct veil_metrics *reg)
{
    if (reg == NULL)
        return;
    for (size_t i = 0; i < reg->nfamilies; i++)
        family_free(reg->families[i]);
    veil_free(reg->families);
    pthread_mutex_destroy(&reg->lock);
    veil_free(reg);
}

static struct veil_metrics_family *registry_find(const struct veil_metrics *reg, const char *name)
{
    for (size_t i = 0; i < reg->nfamilies; i++)
        if (strcmp(reg->families[i]->name, name) == 0)
            return reg->families[i];
    return NULL;
}

static int registry_push(struct veil_metrics *reg, struct veil_metrics_family *f)
{
    if (reg->nfamilies == reg->capfamilies) {
        size_t cap = reg->capfamilies ? 2 * reg->capfamilies : 16;
        struct veil_metrics_family **a = veil_realloc(reg->families, cap * sizeof(*a));
        if (a == NULL)
            return -ENOMEM;
        reg->families = a;
        reg->capfamilies = cap;
    }
    reg->families[reg->nfamilies++] = f;
    return 0;
}

/* Under reg->lock. Sets errno when returning NULL. */
static struct veil_metrics_family *registry_add_locked(struct veil_metrics *reg,
                                                       const struct family_spec *sp)
{
    struct veil_metrics_family *f = registry_find(reg, sp->name);
    if (f != NULL) {
        if (family_matches(f, sp))
            return f;
        errno = EEXIST;
        return NULL;
    }
    f = family_new(sp);
    if (f != NULL && registry_push(reg, f) != 0) {
        family_free(f);
        errno = ENOMEM;
        f = NULL;
    }
    return f;
}

static struct veil_metrics_family *registry_add(struct veil_metrics *reg,
                                                const struct family_spec *sp)
{
    if (reg == NULL || !valid_spec(sp)) {
        errno = EINVAL;
        return NULL;
    }
    pthread_mutex_lock(&reg->lock);
    struct veil_metrics_family *f = registry_add_locked(reg, sp);
    int err = errno;
    pthread_mutex_unlock(&reg->lock);
    errno = err;
    return f;
}

struct veil_metrics_family *veil_metrics_counter(struct veil_metrics *reg, const char *name,
                                                 const char *help, size_t nlabels,
                                                 const char *const *label_names)
{
    struct family_spec sp = {VEIL_METRICS_COUNTER, name, help, nlabels, label_names, 0, NULL};
    return registry_add(reg, &sp);
}

struct veil_metrics_family *veil_metrics_gauge(struct veil_metrics *reg, const char *name,
                                               const char *help, size_t nlabels,
                                               const char *const *label_names)
{
    struct family_spec sp = {VEIL_METRICS_GAUGE, name, help, nlabels, label_names, 0, NULL};
    return registry_add(reg, &sp);
}

struct veil_metrics_family *veil_metrics_histogram(struct veil_metrics *reg, const char *name,
                                                   const char *help, size_t nlabels,
                                                   const char *const *label_names, size_t nbounds,
                                                   const double *bounds)
{
    struct family_spec sp = {
        VEIL_METRICS_HISTOGRAM, name, help, nlabels, label_names, nbounds, bounds};
    return registry_add(reg, &sp);
}

void veil_metrics_set_series_cap(struct veil_metrics_family *fam, size_t cap)
{
    if (fam == NULL)
        return;
    pthread_mutex_lock(&fam->lock);
    fam->cap = cap;
    pthread_mutex_unlock(&fam->lock);
}

uint64_t veil_metrics_family_dropped(const struct veil_metrics_family *fam)
{
    return fam == NULL ? 0 : atomic_load_explicit(&fam->dropped, memory_order_relaxed);
}

/* ---- series lookup and creation ---- */

/* FNV-1a; 0xff (never in UTF-8) ends each value so ("ab","") and ("a","b") differ. */
static uint64_t hash_values(const char *const *v, size_t n)
{
    uint64_t h = 14695981039346656037u;
    for (size_t i = 0; i < n; i++) {
        for (const unsigned char *p = (const unsigned char *)v[i]; *p != '\0'; p++)
            h = (h ^ *p) * 1099511628211u;
        h = (h ^ 0xff) * 1099511628211u;
    }
    return h;
}

static bool values_equal(const struct veil_metrics_series *s, const char *const *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(s->values[i], v[i]) != 0)
            return false;
    return true;
}

static struct veil_metrics_series *table_find(const struct series_table *t, uint64_t h,
                                              const char *const *v, size_t n)
{
    for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
        struct veil_metrics_series *s = atomic_load_explicit(&t->slots[i], memory_order_acquire);
        if (s == NULL || (s->hash == h && values_equal(s, v, n)))
            return s;
    }
}

static void table_insert(struct series_table *t, struct veil_metrics_series *s)
{
    size_t i = s->hash & t->mask;
    while (atomic_load_explicit(&t->slots[i], memory_order_relaxed) != NULL)
        i = (i + 1) & t->mask;
    atomic_store_explicit(&t->slots[i], s, memory_order_release);
}

/* Under f->lock: makes room for one more entry. */
static int table_reserve(struct veil_metrics_family *f)
{
    struct series_table *old = atomic_load_explicit(&f->table, memory_order_relaxed);
    if ((f->nslots_used + 1) * 2 <= old->mask + 1)
        return 0;
    struct series_table *t = table_new(2 * (old->mask + 1));
    if (t == NULL)
        return -ENOMEM;
    for (size_t i = 0; i <= old->mask; i++) {
        struct veil_metrics_series *s = atomic_load_explicit(&old->slots[i], memory_order_relaxed);
        if (s != NULL)
            table_insert(t, s);
    }
    t->retired = old;
    atomic_store_explicit(&f->table, t, memory_order_release);
    return 0;
}

static struct veil_metrics_series *series_alloc(const struct veil_metrics_family *f,
                                                const char *const *v, uint64_t h)
{
    size_t nb = f->type == VEIL_METRICS_HISTOGRAM ? f->nbounds + 1 : 0;
    size_t head = sizeof(struct veil_metrics_series) + nb * sizeof(_Atomic uint64_t);
    size_t size = head + f->nlabels * sizeof(char *);
    for (size_t i = 0; i < f->nlabels; i++)
        size += strlen(v[i]) + 1;
    struct veil_metrics_series *s = veil_malloc(size);
    if (s == NULL)
        return NULL;
    s->type = f->type;
    s->family = f;
    s->hash = h;
    s->next = NULL;
    atomic_init(&s->value, 0); /* also 0.0 as double bits */
    for (size_t i = 0; i < nb; i++)
        atomic_init(&s->buckets[i], 0);
    s->values = (char **)((char *)s + head);
    char *p = (char *)(s->values + f->nlabels);
    for (size_t i = 0; i < f->nlabels; i++) {
        size_t len = strlen(v[i]) + 1;
        s->values[i] = memcpy(p, v[i], len);
        p += len;
    }
    return s;
}

/* Under f->lock. */
static struct veil_metrics_series *series_add(struct veil_metrics_family *f, const char *const *v,
                                              uint64_t h)
{
    if (table_reserve(f) != 0)
        return NULL;
    struct veil_metrics_series *s = series_alloc(f, v, h);
    if (s == NULL)
        return NULL;
    table_insert(atomic_load_explicit(&f->table, memory_order_relaxed), s);
    f->nslots_used++;
    if (f->last != NULL)
        f->last->next = s;
    else
        f->first = s;
    f->last = s;
    return s;
}

/* Under f->lock. */
static struct veil_metrics_series *series_overflow(struct veil_metrics_family *f)
{
    atomic_fetch_add_explicit(&f->dropped, 1, memory_order_relaxed);
    if (f->overflow != NULL)
        return f->overflow;
    const char **v = veil_malloc(f->nlabels * sizeof(char *) + 1);
    if (v == NULL)
        return NULL;
    for (size_t i = 0; i < f->nlabels; i++)
        v[i] = VEIL_METRICS_OVERFLOW_VALUE;
    uint64_t h = hash_values(v, f->nlabels);
    const struct series_table *t = atomic_load_explicit(&f->table, memory_order_relaxed);
    struct veil_metrics_series *s = table_find(t, h, v, f->nlabels);
    if (s == NULL)
        s = series_add(f, v, h);
    veil_free(v);
    f->overflow = s;
    return s;
}

/* Under f->lock. */
static struct veil_metrics_series *series_get_locked(struct veil_metrics_family *f,
                                                     const char *const *v, uint64_t h)
{
    const struct series_table *t = atomic_load_explicit(&f->table, memory_order_relaxed);
    struct veil_metrics_series *s = table_find(t, h, v, f->nlabels);
    if (s != NULL)
        return s;
    if (f->nseries >= f->cap)
        return series_overflow(f);
    s = series_add(f, v, h);
    if (s != NULL)
        f->nseries++;
    return s;
}

static bool values_valid(const struct veil_metrics_family *f, const char *const *v)
{
    if (f->nlabels > 0 && v == NULL)
        return false;
    for (size_t i = 0; i < f->nlabels; i++)
        if (v[i] == NULL)
            return false;
    return true;
}

static bool values_utf8(const struct veil_metrics_family *f, const char *const *v)
{
    for (size_t i = 0; i < f->nlabels; i++)
        if (!valid_utf8(v[i]))
            return false;
    return true;
}

struct veil_metrics_series *veil_metrics_series(struct veil_metrics_family *fam,
                                                const char *const *label_values)
{
    if (fam == NULL || !values_valid(fam, label_values)) {
        errno = EINVAL;
        return NULL;
    }
    uint64_t h = hash_values(label_values, fam->nlabels);
    const struct series_table *t = atomic_load_explicit(&fam->table, memory_order_acquire);
    struct veil_metrics_series *s = table_find(t, h, label_values, fam->nlabels);
    if (s != NULL)
        return s;
    if (!values_utf8(fam, label_values)) {
        errno = EINVAL;
        return NULL;
    }
    pthread_mutex_lock(&fam->lock);
    s = series_get_locked(fam, label_values, h);
    int err = errno;
    pthread_mutex_unlock(&fam->lock);
    errno = err;
    return s;
}

/* ---- hot path ---- */

static bool series_is(const struct veil_metrics_series *s, enum veil_metrics_type type)
{
    if (s == NULL)
        return false;
    VEIL_BUG_ON(s->type != type);
    return s->type == type;
}

static uint64_t double_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

static double bits_double(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

static void atomic_add_double(_Atomic uint64_t *p, double v)
{
    uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(p, &old, double_bits(bits_double(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

void veil_metrics_counter_add(struct veil_metrics_series *s, uint64_t n)
{
    if (series_is(s, VEIL_METRICS_COUNTER))
        atomic_fetch_add_explicit(&s->value, n, memory_order_relaxed);
}

void veil_metrics_gauge_set(struct veil_metrics_series *s, double v)
{
    if (series_is(s, VEIL_METRICS_GAUGE))
        atomic_store_explicit(&s->value, double_bits(v), memory_order_relaxed);
}

void veil_metrics_gauge_add(struct veil_metrics_series *s, double v)
{
    if (series_is(s, VEIL_METRICS_GAUGE))
        atomic_add_double(&s->value, v);
}

/* Index of the first bound >= v; nbounds (the +Inf bucket) if none, or for NaN. */
static size_t bucket_index(const struct veil_metrics_family *f, double v)
{
    size_t lo = 0, hi = f->nbounds;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v <= f->bounds[mid])
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

void veil_metrics_histogram_observe(struct veil_metrics_series *s, double v)
{
    if (!series_is(s, VEIL_METRICS_HISTOGRAM))
        return;
    atomic_fetch_add_explicit(&s->buckets[bucket_index(s->family, v)], 1, memory_order_relaxed);
    atomic_add_double(&s->value, v);
}

uint64_t veil_metrics_counter_get(const struct veil_metrics_series *s)
{
    if (s == NULL || s->type != VEIL_METRICS_COUNTER)
        return 0;
    return atomic_load_explicit(&s->value, memory_order_relaxed);
}

double veil_metrics_gauge_get(const struct veil_metrics_series *s)
{
    if (s == NULL || s->type != VEIL_METRICS_GAUGE)
        return 0;
    return bits_double(atomic_load_explicit(&s->value, memory_order_relaxed));
}

/* ---- rendering ---- */

/* Growable output; the first failure sticks in `err` and later appends do nothing. */
struct out {
    char *p;
    size_t len, cap;
    int err;
};

static bool out_reserve(struct out *o, size_t n)
{
    if (o->err != 0)
        return false;
    if (n <= o->cap - o->len)
        return true;
    if (n > VEIL_METRICS_RENDER_MAX - o->len) {
        o->err = -ENOBUFS;
        return false;
    }
    size_t cap = o->cap ? o->cap : 4096;
    while (cap - o->len < n)
        cap *= 2;
    if (cap > VEIL_METRICS_RENDER_MAX)
        cap = VEIL_METRICS_RENDER_MAX;
    char *p = veil_realloc(o->p, cap);
    if (p == NULL) {
        o->err = -ENOMEM;
        return false;
    }
    o->p = p;
    o->cap = cap;
    return true;
}

static void out_mem(struct out *o, const char *s, size_t n)
{
    if (out_reserve(o, n)) {
        memcpy(o->p + o->len, s, n);
        o->len += n;
    }
}

static void out_str(struct out *o, const char *s)
{
    out_mem(o, s, strlen(s));
}

/* Help text escapes \ and newline; label values also ". */
static void out_escaped(struct out *o, const char *s, bool label_value)
{
    const char *run = s;
    for (; *s != '\0'; s++) {
        const char *esc = *s == '\\'                 ? "\\\\"
                          : *s == '\n'               ? "\\n"
                          : *s == '"' && label_value ? "\\\""
                                                     : NULL;
        if (esc == NULL)
            continue;
        out_mem(o, run, (size_t)(s - run));
        out_str(o, esc);
        run = s + 1;
    }
    out_mem(o, run, (size_t)(s - run));
}

/* Shortest text that parses back to d; integers up to 2^53 without exponent. */
static void format_double(char buf[32], double d)
{
    if (isnan(d)) {
        strcpy(buf, "NaN");
    } else if (isinf(d)) {
        strcpy(buf, d > 0 ? "+Inf" : "-Inf");
    } else if (d == trunc(d) && fabs(d) <= 9007199254740992.0) {
        snprintf(buf, 32, "%.0f", d);
    } else {
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(buf, 32, "%.*g", prec, d);
            if (strtod(buf, NULL) == d)
                break;
        }
    }
}

static void out_labels(struct out *o, const struct veil_metrics_family *f,
                       const struct veil_metrics_series *s, const char *le)
{
    if (f->nlabels == 0 && le == NULL)
        return;
    out_str(o, "{");
    for (size_t i = 0; i < f->nlabels; i++) {
        out_str(o, i > 0 ? "," : "");
        out_str(o, f->label_names[i]);
        out_str(o, "=\"");
        out_escaped(o, s->values[i], true);
        out_str(o, "\"");
    }
    if (le != NULL) {
        out_str(o, f->nlabels > 0 ? ",le=\"" : "le=\"");
        out_str(o, le);
        out_str(o, "\"");
    }
    out_str(o, "}");
}

static void out_sample(struct out *o, const struct veil_metrics_series *s, const char *suffix,
                       const char *le, const char *value)
{
    out_str(o, s->family->name);
    out_str(o, suffix);
    out_labels(o, s->family, s, le);
    out_str(o, " ");
    out_str(o, value);
    out_str(o, "\n");
}

static void out_histogram(struct out *o, const struct veil_metrics_series *s)
{
    const struct veil_metrics_family *f = s->family;
    char le[32], value[32];
    uint64_t cum = 0;
    for (size_t i = 0; i <= f->nbounds; i++) {
        cum += atomic_load_explicit(&s->buckets[i], memory_order_relaxed);
        snprintf(value, sizeof(value), "%llu", (unsigned long long)cum);
        if (i < f->nbounds)
            format_double(le, f->bounds[i]);
        out_sample(o, s, "_bucket", i < f->nbounds ? le : "+Inf", value);
    }
    format_double(value, bits_double(atomic_load_explicit(&s->value, memory_order_relaxed)));
    out_sample(o, s, "_sum", NULL, value);
    snprintf(value, sizeof(value), "%llu", (unsigned long long)cum);
    out_sample(o, s, "_count", NULL, value);
}

static void out_series(struct out *o, const struct veil_metrics_series *s)
{
    char value[32];
    uint64_t bits = atomic_load_explicit(&s->value, memory_order_relaxed);
    switch (s->type) {
    case VEIL_METRICS_COUNTER:
        snprintf(value, sizeof(value), "%llu", (unsigned long long)bits);
        out_sample(o, s, "", NULL, value);
        break;
    case VEIL_METRICS_GAUGE:
        format_double(value, bits_double(bits));
        out_sample(o, s, "", NULL, value);
        break;
    case VEIL_METRICS_HISTOGRAM:
        out_histogram(o, s);
        break;
    }
}

static const char *const type_names[] = {
    [VEIL_METRICS_COUNTER] = "counter",
    [VEIL_METRICS_GAUGE] = "gauge",
    [VEIL_METRICS_HISTOGRAM] = "histogram",
};

static void out_family(struct out *o, struct veil_metrics_family *f)
{
    out_str(o, "# HELP ");
    out_str(o, f->name);
    out_str(o, " ");
    out_escaped(o, f->help, false);
    out_str(o, "\n# TYPE ");
    out_str(o, f->name);
    out_str(o, " ");
    out_str(o, type_names[f->type]);
    out_str(o, "\n");
    pthread_mutex_lock(&f->lock);
    for (const struct veil_metrics_series *s = f->first; s != NULL && o->err == 0; s = s->next)
        out_series(o, s);
    pthread_mutex_unlock(&f->lock);
}

int veil_metrics_render(struct veil_metrics *reg, char **out, size_t *len)
{
    if (reg == NULL || out == NULL || len == NULL)
        return -EINVAL;
    struct out o = {0};
    pthread_mutex_lock(&reg->lock);
    for (size_t i = 0; i < reg->nfamilies && o.err == 0; i++)
        out_family(&o, reg->families[i]);
    pthread_mutex_unlock(&reg->lock);
    out_mem(&o, "", 1);
    if (o.err != 0) {
        veil_free(o.p);
        return o.err;
    }
    *out = o.p;
    *len = o.len - 1;
    return 0;
}
