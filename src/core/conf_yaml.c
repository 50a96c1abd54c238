#include "core/conf.h"

#include "core/alloc.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#define SMALL_MAP 8
#define STD_TAG   "tag:yaml.org,2002:"

struct frame {
    struct veil_conf_node *node;
    size_t first; /* index in the stack of the node's first child */
};

struct anchor {
    const char *name; /* NULL: free slot */
    struct veil_conf_node *node;
};

/*
 * The nodes of every open collection sit on `stack` after the collection
 * itself until it closes; document roots stay at the bottom.
 */
struct yctx {
    struct veil_conf__build *b;
    const char *data;
    size_t len;
    yaml_parser_t parser;
    struct veil_conf_node **stack;
    size_t nstack, capstack;
    struct frame *frames;
    size_t nframes, capframes;
    struct anchor *anchors; /* open addressing; capacity a power of two */
    size_t nanchors, capanchors;
};

enum tag {
    TAG_NONE,
    TAG_OTHER,
    TAG_BANG,
    TAG_STR,
    TAG_INT,
    TAG_FLOAT,
    TAG_BOOL,
    TAG_NULL,
    TAG_MAP,
    TAG_SEQ
};

/* ---- small helpers ------------------------------------------------------ */

static int oom(struct yctx *y)
{
    return veil_conf__fail(y->b, -ENOMEM, 0, 0, "out of memory");
}

/* Makes room for `need` elements; NULL (err set, `p` still valid) on failure. */
static void *grow(struct yctx *y, void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return p;
    size_t ncap = *cap ? *cap * 2 : 64;
    while (ncap < need)
        ncap *= 2;
    void *np = veil_realloc(p, ncap * elem);
    if (np == NULL) {
        oom(y);
        return NULL;
    }
    *cap = ncap;
    return np;
}

static uint32_t line_of(yaml_mark_t m)
{
    return (uint32_t)m.line + 1;
}

static uint32_t col_of(yaml_mark_t m)
{
    return (uint32_t)m.column + 1;
}

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 14695981039346656037u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211u;
    return h;
}

static int push(struct yctx *y, struct veil_conf_node *n)
{
    struct veil_conf_node **st = grow(y, y->stack, &y->capstack, y->nstack + 1, sizeof(*st));
    if (st == NULL)
        return y->b->rc;
    y->stack = st;
    y->stack[y->nstack++] = n;
    return 0;
}

static bool in_key_slot(const struct yctx *y)
{
    if (y->nframes == 0)
        return false;
    const struct frame *f = &y->frames[y->nframes - 1];
    return f->node->kind == VEIL_CONF_MAP && (y->nstack - f->first) % 2 == 0;
}

static enum tag tag_of(const yaml_char_t *t)
{
    static const struct {
        const char *name;
        enum tag tag;
    } known[] = {
        {"!", TAG_BANG},           {YAML_STR_TAG, TAG_STR},
        {YAML_INT_TAG, TAG_INT},   {YAML_FLOAT_TAG, TAG_FLOAT},
        {YAML_BOOL_TAG, TAG_BOOL}, {YAML_NULL_TAG, TAG_NULL},
        {YAML_MAP_TAG, TAG_MAP},   {YAML_SEQ_TAG, TAG_SEQ},
    };
    if (t == NULL)
        return TAG_NONE;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp((const char *)t, known[i].name) == 0)
            return known[i].tag;
    return TAG_OTHER;
}

/* Standard tags are shown short: "!!int". Used as "%s%s", tag_pfx, tag_rest. */
static const char *tag_pfx(const yaml_char_t *t)
{
    return strncmp((const char *)t, STD_TAG, strlen(STD_TAG)) == 0 ? "!!" : "";
}

static const char *tag_rest(const yaml_char_t *t)
{
    return (const char *)t + (tag_pfx(t)[0] ? strlen(STD_TAG) : 0);
}

/* ---- anchors ------------------------------------------------------------ */

static struct anchor *anchor_slot(struct anchor *tab, size_t cap, const char *name)
{
    size_t len = strlen(name);
    size_t i = hash_bytes(name, len) & (cap - 1);
    while (tab[i].name != NULL && strcmp(tab[i].name, name) != 0)
        i = (i + 1) & (cap - 1);
    return &tab[i];
}

static int anchors_grow(struct yctx *y)
{
    size_t ncap = y->capanchors ? y->capanchors * 2 : 16;
    struct anchor *tab = veil_calloc(ncap, sizeof(*tab));
    if (tab == NULL)
        return oom(y);
    for (size_t i = 0; i < y->capanchors; i++)
        if (y->anchors[i].name != NULL)
            *anchor_slot(tab, ncap, y->anchors[i].name) = y->anchors[i];
    veil_free(y->anchors);
    y->anchors = tab;
    y->capanchors = ncap;
    return 0;
}

/* A later anchor of the same name replaces the earlier one, as YAML says. */
static int anchor_set(struct yctx *y, const yaml_char_t *name, struct veil_conf_node *n)
{
    if (name == NULL)
        return 0;
    if (2 * (y->nanchors + 1) > y->capanchors && anchors_grow(y) < 0)
        return y->b->rc;
    struct anchor *a = anchor_slot(y->anchors, y->capanchors, (const char *)name);
    if (a->name == NULL) {
        a->name = veil_conf__strdup(y->b, (const char *)name, strlen((const char *)name));
        if (a->name == NULL)
            return y->b->rc;
        y->nanchors++;
    }
    a->node = n;
    return 0;
}

static struct veil_conf_node *anchor_get(struct yctx *y, const yaml_char_t *name)
{
    if (y->capanchors == 0)
        return NULL;
    return anchor_slot(y->anchors, y->capanchors, (const char *)name)->node;
}

/*
 * Anchors do not cross documents. A big table is dropped rather than
 * cleared, so that many small documents after a big one stay cheap.
 */
static void anchors_reset(struct yctx *y)
{
    if (y->capanchors > 64) {
        veil_free(y->anchors);
        y->anchors = NULL;
        y->capanchors = 0;
    } else if (y->nanchors > 0) {
        memset(y->anchors, 0, y->capanchors * sizeof(*y->anchors));
    }
    y->nanchors = 0;
}

/* ---- scalars (YAML 1.2 core schema) --------------------------------------- */

static bool is_one_of(const char *s, size_t len, const char *const *words)
{
    for (; *words != NULL; words++)
        if (strlen(*words) == len && memcmp(*words, s, len) == 0)
            return true;
    return false;
}

static bool is_null(const char *s, size_t len)
{
    static const char *const w[] = {"~", "null", "Null", "NULL", NULL};
    return len == 0 || is_one_of(s, len, w);
}

static int parse_bool(const char *s, size_t len, bool *out)
{
    static const char *const t[] = {"true", "True", "TRUE", NULL};
    static const char *const f[] = {"false", "False", "FALSE", NULL};
    *out = is_one_of(s, len, t);
    return *out || is_one_of(s, len, f);
}

static int digit_of(char c, unsigned base)
{
    int d = c >= '0' && c <= '9'   ? c - '0'
            : c >= 'a' && c <= 'f' ? c - 'a' + 10
            : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                   : 99;
    return d < (int)base ? d : -1;
}

/* 1: an int64 in *out; 0: not an integer; -ERANGE: an integer out of range. */
static int parse_int(const char *s, size_t len, int64_t *out)
{
    size_t i = 0;
    unsigned base = 10;
    bool neg = false;
    if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
        base = s[1] == 'x' ? 16 : 8;
        i = 2;
    } else if (len > 0 && (s[0] == '-' || s[0] == '+')) {
        neg = s[0] == '-';
        i = 1;
    }
    if (i == len)
        return 0;
    uint64_t v = 0;
    bool fits = true;
    for (; i < len; i++) {
        int d = digit_of(s[i], base);
        if (d < 0)
            return 0;
        if (v > (UINT64_MAX - (uint64_t)d) / base)
            fits = false;
        else
            v = v * base + (uint64_t)d;
    }
    uint64_t lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    if (!fits || v > lim)
        return -ERANGE;
    *out = !neg ? (int64_t)v : v == lim ? INT64_MIN : -(int64_t)v;
    return 1;
}

static size_t skip_digits(const char *s, size_t len, size_t *i)
{
    size_t start = *i;
    while (*i < len && s[*i] >= '0' && s[*i] <= '9')
        (*i)++;
    return *i - start;
}

/* [-+]? ( \.[0-9]+ | [0-9]+ ( \.[0-9]* )? ) ( [eE][-+]?[0-9]+ )? */
static bool is_float_syntax(const char *s, size_t len)
{
    size_t i = 0;
    if (i < len && (s[i] == '-' || s[i] == '+'))
        i++;
    size_t whole = skip_digits(s, len, &i);
    size_t frac = 0;
    if (i < len && s[i] == '.') {
        i++;
        frac = skip_digits(s, len, &i);
    }
    if (whole == 0 && frac == 0)
        return false;
    if (i < len && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < len && (s[i] == '-' || s[i] == '+'))
            i++;
        if (skip_digits(s, len, &i) == 0)
            return false;
    }
    return i == len;
}

/* 1: a double in *out; 0: not a float; -ERANGE: too large. s is NUL-terminated. */
static int parse_float(const char *s, size_t len, double *out)
{
    static const char *const inf[] = {".inf", ".Inf", ".INF", NULL};
    static const char *const nan[] = {".nan", ".NaN", ".NAN", NULL};
    size_t sign = len > 0 && (s[0] == '-' || s[0] == '+');
    if (is_one_of(s + sign, len - sign, inf)) {
        *out = s[0] == '-' ? -INFINITY : INFINITY;
        return 1;
    }
    if (is_one_of(s, len, nan)) {
        *out = NAN;
        return 1;
    }
    if (!is_float_syntax(s, len))
        return 0;
    errno = 0;
    *out = strtod(s, NULL);
    return errno == ERANGE && isinf(*out) ? -ERANGE : 1;
}

static void set_str(struct veil_conf_node *n, const char *text, size_t len)
{
    n->kind = VEIL_CONF_STR;
    n->v.str.ptr = text;
    n->v.str.len = len;
}

/*
 * Types a plain scalar; `n` holds the text as a string until the end (the
 * value union overlaps it), so results go through locals.
 */
static int resolve_plain(struct yctx *y, struct veil_conf_node *n)
{
    const char *s = n->v.str.ptr;
    size_t len = n->v.str.len;
    bool b;
    int64_t i;
    double f;
    int rc;
    if (is_null(s, len)) {
        n->kind = VEIL_CONF_NULL;
    } else if (parse_bool(s, len, &b)) {
        n->kind = VEIL_CONF_BOOL;
        n->v.b = b;
    } else if ((rc = parse_int(s, len, &i)) != 0) {
        if (rc < 0)
            return veil_conf__fail(y->b, -EINVAL, n->pos.line, n->pos.col,
                                   "integer %s does not fit in 64 bits", s);
        n->kind = VEIL_CONF_INT;
        n->v.i = i;
    } else if ((rc = parse_float(s, len, &f)) != 0) {
        if (rc < 0)
            return veil_conf__fail(y->b, -EINVAL, n->pos.line, n->pos.col,
                                   "number %s is out of range", s);
        n->kind = VEIL_CONF_FLOAT;
        n->v.f = f;
    }
    return 0;
}

/* !!int "8080" and the like: the text must resolve to the tag's kind. */
static int resolve_tagged(struct yctx *y, struct veil_conf_node *n, enum tag tag,
                          const yaml_char_t *t)
{
    static const enum veil_conf_kind kind_of[] = {
        [TAG_INT] = VEIL_CONF_INT,
        [TAG_FLOAT] = VEIL_CONF_FLOAT,
        [TAG_BOOL] = VEIL_CONF_BOOL,
        [TAG_NULL] = VEIL_CONF_NULL,
    };
    const char *text = n->v.str.ptr;
    if (resolve_plain(y, n) < 0)
        return y->b->rc;
    if (tag == TAG_FLOAT && n->kind == VEIL_CONF_INT) {
        n->kind = VEIL_CONF_FLOAT;
        n->v.f = (double)n->v.i;
    }
    if (n->kind != kind_of[tag])
        return veil_conf__fail(y->b, -EINVAL, n->pos.line, n->pos.col, "\"%s\" is not a valid %s%s",
                               text, tag_pfx(t), tag_rest(t));
    return 0;
}

static int type_value(struct yctx *y, struct veil_conf_node *n, const yaml_event_t *ev)
{
    const yaml_char_t *t = ev->data.scalar.tag;
    enum tag tag = tag_of(t);
    switch (tag) {
    case TAG_NONE:
        return ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? resolve_plain(y, n) : 0;
    case TAG_BANG:
    case TAG_STR:
        return 0;
    case TAG_INT:
    case TAG_FLOAT:
    case TAG_BOOL:
    case TAG_NULL:
        return resolve_tagged(y, n, tag, t);
    default:
        return veil_conf__fail(y->b, -EINVAL, n->pos.line, n->pos.col,
                               "unsupported tag \"%s%s\" on a scalar", tag_pfx(t), tag_rest(t));
    }
}

static int type_key(struct yctx *y, struct veil_conf_node *n, const yaml_event_t *ev)
{
    enum tag tag = tag_of(ev->data.scalar.tag);
    if (tag == TAG_NONE || tag == TAG_BANG || tag == TAG_STR)
        return 0;
    return veil_conf__fail(y->b, -EINVAL, n->pos.line, n->pos.col,
                           "map key must be a string, not tagged \"%s%s\"",
                           tag_pfx(ev->data.scalar.tag), tag_rest(ev->data.scalar.tag));
}

static int on_scalar(struct yctx *y, const yaml_event_t *ev)
{
    uint32_t line = line_of(ev->start_mark), col = col_of(ev->start_mark);
    const char *text = (const char *)ev->data.scalar.value;
    size_t len = ev->data.scalar.length;
    if (memchr(text, '\0', len) != NULL)
        return veil_conf__fail(y->b, -EINVAL, line, col, "a string may not contain a NUL");
    struct veil_conf_node *n = veil_conf__node(y->b, VEIL_CONF_STR, line, col);
    char *copy = n ? veil_conf__strdup(y->b, text, len) : NULL;
    if (copy == NULL)
        return y->b->rc;
    set_str(n, copy, len);
    int rc = in_key_slot(y) ? type_key(y, n, ev) : type_value(y, n, ev);
    if (rc < 0 || anchor_set(y, ev->data.scalar.anchor, n) < 0)
        return y->b->rc;
    return push(y, n);
}

/* ---- collections -------------------------------------------------------- */

static int check_collection_tag(struct yctx *y, const yaml_char_t *t, enum veil_conf_kind kind,
                                uint32_t line, uint32_t col)
{
    enum tag tag = tag_of(t);
    if (tag == TAG_NONE || tag == TAG_BANG || (tag == TAG_MAP && kind == VEIL_CONF_MAP) ||
        (tag == TAG_SEQ && kind == VEIL_CONF_SEQ))
        return 0;
    return veil_conf__fail(y->b, -EINVAL, line, col, "unsupported tag \"%s%s\" on %s", tag_pfx(t),
                           tag_rest(t), veil_conf_kind_name(kind));
}

static int on_start(struct yctx *y, const yaml_event_t *ev, enum veil_conf_kind kind)
{
    uint32_t line = line_of(ev->start_mark), col = col_of(ev->start_mark);
    bool is_map = kind == VEIL_CONF_MAP;
    if (in_key_slot(y))
        return veil_conf__fail(y->b, -EINVAL, line, col, "map key must be a string, not %s",
                               veil_conf_kind_name(kind));
    if (y->nframes >= y->b->lim.max_depth)
        return veil_conf__fail(y->b, -E2BIG, line, col, "nesting deeper than %zu levels",
                               y->b->lim.max_depth);
    const yaml_char_t *tag = is_map ? ev->data.mapping_start.tag : ev->data.sequence_start.tag;
    const yaml_char_t *anchor =
        is_map ? ev->data.mapping_start.anchor : ev->data.sequence_start.anchor;
    if (check_collection_tag(y, tag, kind, line, col) < 0)
        return y->b->rc;
    struct veil_conf_node *n = veil_conf__node(y->b, kind, line, col);
    if (n == NULL)
        return y->b->rc;
    n->_weight = 0;
    if (anchor_set(y, anchor, n) < 0 || push(y, n) < 0)
        return y->b->rc;
    struct frame *fr = grow(y, y->frames, &y->capframes, y->nframes + 1, sizeof(*fr));
    if (fr == NULL)
        return y->b->rc;
    y->frames = fr;
    y->frames[y->nframes++] = (struct frame){n, y->nstack};
    return 0;
}

/* Weight and height of a collection from its children, aliases expanded. */
static void measure(struct veil_conf_node *n, struct veil_conf_node *const *kids, size_t nkids)
{
    uint64_t w = 1;
    uint32_t h = 0;
    for (size_t i = 0; i < nkids; i++) {
        w += kids[i]->_weight;
        h = kids[i]->_height > h ? kids[i]->_height : h;
    }
    n->_weight = w > UINT32_MAX ? UINT32_MAX : (uint32_t)w;
    n->_height = h + 1;
}

static bool key_eq(const struct veil_conf_node *a, const struct veil_conf_node *b)
{
    return a->v.str.len == b->v.str.len && memcmp(a->v.str.ptr, b->v.str.ptr, a->v.str.len) == 0;
}

static int dup_key(struct yctx *y, const struct veil_conf_node *first,
                   const struct veil_conf_node *again)
{
    return veil_conf__fail(y->b, -EINVAL, again->pos.line, again->pos.col,
                           "duplicate key \"%s\" (first at %u:%u)", again->v.str.ptr,
                           first->pos.line, first->pos.col);
}

static int dup_check_small(struct yctx *y, const struct veil_conf_pair *p, size_t n)
{
    for (size_t i = 1; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (key_eq(p[j].key, p[i].key))
                return dup_key(y, p[j].key, p[i].key);
    return 0;
}

static int dup_check_hash(struct yctx *y, const struct veil_conf_pair *p, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap *= 2;
    uint32_t *slot = veil_calloc(cap, sizeof(*slot));
    if (slot == NULL)
        return oom(y);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const struct veil_conf_node *k = p[i].key;
        size_t h = hash_bytes(k->v.str.ptr, k->v.str.len) & (cap - 1);
        while (slot[h] != 0 && !key_eq(p[slot[h] - 1].key, k))
            h = (h + 1) & (cap - 1);
        if (slot[h] != 0)
            rc = dup_key(y, p[slot[h] - 1].key, k);
        slot[h] = (uint32_t)i + 1;
    }
    veil_free(slot);
    return rc;
}

static int close_map(struct yctx *y, struct veil_conf_node *n, struct veil_conf_node *const *kids,
                     size_t nkids)
{
    if (nkids % 2 != 0)
        return veil_conf__fail(y->b, -EINVAL, n->pos.line, n->pos.col,
                               "internal error: map with a key and no value");
    size_t np = nkids / 2;
    struct veil_conf_pair *pairs = NULL;
    if (np > 0 && (pairs = veil_conf__alloc(y->b, np * sizeof(*pairs))) == NULL)
        return y->b->rc;
    for (size_t i = 0; i < np; i++)
        pairs[i] = (struct veil_conf_pair){kids[2 * i], kids[2 * i + 1]};
    n->v.map.pairs = pairs;
    n->v.map.n = np;
    measure(n, kids, nkids);
    return np <= SMALL_MAP ? dup_check_small(y, pairs, np) : dup_check_hash(y, pairs, np);
}

static int close_seq(struct yctx *y, struct veil_conf_node *n, struct veil_conf_node *const *kids,
                     size_t nkids)
{
    const struct veil_conf_node **items = NULL;
    if (nkids > 0 && (items = veil_conf__alloc(y->b, nkids * sizeof(*items))) == NULL)
        return y->b->rc;
    for (size_t i = 0; i < nkids; i++)
        items[i] = kids[i];
    n->v.seq.items = items;
    n->v.seq.n = nkids;
    measure(n, kids, nkids);
    return 0;
}

static int on_end(struct yctx *y)
{
    if (y->nframes == 0)
        return veil_conf__fail(y->b, -EINVAL, 0, 0, "internal error: unbalanced YAML events");
    struct frame f = y->frames[--y->nframes];
    struct veil_conf_node *const *kids = y->stack + f.first;
    size_t nkids = y->nstack - f.first;
    int rc = f.node->kind == VEIL_CONF_MAP ? close_map(y, f.node, kids, nkids)
                                           : close_seq(y, f.node, kids, nkids);
    y->nstack = f.first;
    return rc;
}

/*
 * An alias shares the anchored node. It counts as that node's whole subtree
 * against max_nodes and max_depth, which is what stops "billion laughs".
 */
static int on_alias(struct yctx *y, const yaml_event_t *ev)
{
    uint32_t line = line_of(ev->start_mark), col = col_of(ev->start_mark);
    const char *name = (const char *)ev->data.alias.anchor;
    struct veil_conf_node *t = anchor_get(y, ev->data.alias.anchor);
    if (t == NULL)
        return veil_conf__fail(y->b, -EINVAL, line, col, "undefined alias *%s", name);
    if (t->_weight == 0)
        return veil_conf__fail(y->b, -EINVAL, line, col, "alias *%s is inside its own anchor",
                               name);
    if (in_key_slot(y) && t->kind != VEIL_CONF_STR)
        return veil_conf__fail(y->b, -EINVAL, line, col, "map key must be a string, not %s",
                               veil_conf_kind_name(t->kind));
    if (y->nframes + t->_height > y->b->lim.max_depth)
        return veil_conf__fail(y->b, -E2BIG, line, col,
                               "nesting deeper than %zu levels (alias *%s expanded)",
                               y->b->lim.max_depth, name);
    if (veil_conf__count(y->b, t->_weight, line, col) < 0)
        return y->b->rc;
    return push(y, t);
}

/* ---- events and errors -------------------------------------------------- */

static int on_event(struct yctx *y, const yaml_event_t *ev)
{
    switch (ev->type) {
    case YAML_DOCUMENT_START_EVENT:
        anchors_reset(y);
        return 0;
    case YAML_SCALAR_EVENT:
        return on_scalar(y, ev);
    case YAML_SEQUENCE_START_EVENT:
        return on_start(y, ev, VEIL_CONF_SEQ);
    case YAML_MAPPING_START_EVENT:
        return on_start(y, ev, VEIL_CONF_MAP);
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT:
        return on_end(y);
    case YAML_ALIAS_EVENT:
        return on_alias(y, ev);
    case YAML_STREAM_END_EVENT:
        return veil_conf__set_docs(y->b, y->stack, y->nstack);
    default:
        return 0;
    }
}

/* Reader errors (bad encoding) carry a byte offset, not a mark. */
static int reader_error(struct yctx *y)
{
    const yaml_parser_t *p = &y->parser;
    size_t end = p->problem_offset < y->len ? p->problem_offset : y->len;
    uint32_t line = 1, col = 1;
    for (size_t i = 0; i < end; i++) {
        unsigned char c = (unsigned char)y->data[i];
        if (c == '\n') {
            line++;
            col = 1;
        } else if ((c & 0xC0) != 0x80) {
            col++;
        }
    }
    if (p->problem_value != -1)
        return veil_conf__fail(y->b, -EINVAL, line, col, "%s (byte 0x%02x)", p->problem,
                               (unsigned)p->problem_value & 0xFF);
    return veil_conf__fail(y->b, -EINVAL, line, col, "%s", p->problem);
}

static int syntax_error(struct yctx *y)
{
    const yaml_parser_t *p = &y->parser;
    if (p->error == YAML_MEMORY_ERROR)
        return oom(y);
    if (p->problem == NULL)
        return veil_conf__fail(y->b, -EINVAL, 0, 0, "YAML syntax error");
    if (p->error == YAML_READER_ERROR)
        return reader_error(y);
    uint32_t line = line_of(p->problem_mark), col = col_of(p->problem_mark);
    if (p->context == NULL)
        return veil_conf__fail(y->b, -EINVAL, line, col, "%s", p->problem);
    return veil_conf__fail(y->b, -EINVAL, line, col, "%s (%s at %u:%u)", p->problem, p->context,
                           line_of(p->context_mark), col_of(p->context_mark));
}

static int run(struct yctx *y)
{
    for (;;) {
        yaml_event_t ev;
        if (!yaml_parser_parse(&y->parser, &ev))
            return syntax_error(y);
        int rc = on_event(y, &ev);
        bool end = ev.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&ev);
        if (rc < 0 || end)
            return rc < 0 ? rc : 0;
    }
}

int veil_conf__yaml(struct veil_conf__build *b, const char *data, size_t len)
{
    struct yctx y = {.b = b, .data = data, .len = len};
    if (!yaml_parser_initialize(&y.parser))
        return oom(&y);
    yaml_parser_set_input_string(&y.parser, (const unsigned char *)data, len);
    int rc = run(&y);
    yaml_parser_delete(&y.parser);
    veil_free(y.stack);
    veil_free(y.frames);
    veil_free(y.anchors);
    return rc;
}
