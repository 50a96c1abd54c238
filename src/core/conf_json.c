#include "core/conf.h"

#include "core/alloc.h"
#include "core/bug.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>

/*
 * jansson keeps no positions, so a scanner of our own walks the text first
 * and records where every value and key starts, in document order; the tree
 * is then built from jansson's result in the same preorder, taking positions
 * from that list. Scanning first also enforces max_nodes and max_depth
 * before jansson allocates anything. The scanner only tracks structure: what
 * it cannot follow is left to jansson, which reports the syntax error.
 */
_Static_assert(JANSSON_VERSION_HEX >= 0x020800, "jansson >= 2.8 keeps object key order");

#define SCAN_SYNTAX 1 /* the scanner gave up; jansson will say why */

struct tok {
    uint32_t line, col;
    size_t start, end; /* bytes; a collection's token is its opening bracket */
};

struct jscan {
    struct veil_conf__build *b;
    const unsigned char *s;
    size_t len, i;
    uint32_t line, col;
    size_t depth;
    struct tok *tok;
    size_t ntok, captok;
    bool stopped; /* gave up at byte `stop`, line:col below */
    size_t stop;
    uint32_t stop_line, stop_col;
};

/* ---- the position scanner ------------------------------------------------ */

static int syntax(struct jscan *s)
{
    s->stopped = true;
    s->stop = s->i;
    s->stop_line = s->line;
    s->stop_col = s->col;
    return SCAN_SYNTAX;
}

static bool at(const struct jscan *s, char c)
{
    return s->i < s->len && s->s[s->i] == (unsigned char)c;
}

/* Columns count characters: UTF-8 continuation bytes do not move them. */
static void advance(struct jscan *s)
{
    unsigned char c = s->s[s->i++];
    if (c == '\n') {
        s->line++;
        s->col = 1;
    } else if ((c & 0xC0) != 0x80) {
        s->col++;
    }
}

static bool is_ws(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static void skip_ws(struct jscan *s)
{
    while (s->i < s->len && is_ws(s->s[s->i]))
        advance(s);
}

static int tok_begin(struct jscan *s, size_t *idx)
{
    if (veil_conf__count(s->b, 1, s->line, s->col) < 0)
        return s->b->rc;
    if (s->ntok == s->captok) {
        size_t ncap = s->captok ? s->captok * 2 : 256;
        struct tok *t = veil_realloc(s->tok, ncap * sizeof(*t));
        if (t == NULL)
            return veil_conf__fail(s->b, -ENOMEM, 0, 0, "out of memory");
        s->tok = t;
        s->captok = ncap;
    }
    s->tok[s->ntok] = (struct tok){s->line, s->col, s->i, s->i};
    *idx = s->ntok++;
    return 0;
}

static int scan_string(struct jscan *s, size_t t)
{
    advance(s);
    while (s->i < s->len && !at(s, '"')) {
        if (at(s, '\\') && s->i + 1 < s->len)
            advance(s);
        advance(s);
    }
    bool closed = s->i < s->len;
    if (closed)
        advance(s);
    s->tok[t].end = s->i; /* an unterminated string ends at the end */
    return closed ? 0 : syntax(s);
}

/* Numbers, true, false, null: their exact form is jansson's business. */
static int scan_word(struct jscan *s, size_t t)
{
    static const char word[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.";
    while (s->i < s->len && s->s[s->i] != '\0' && strchr(word, s->s[s->i]) != NULL)
        advance(s);
    s->tok[t].end = s->i;
    return s->i > s->tok[t].start ? 0 : syntax(s);
}

static int scan_value(struct jscan *s);

static int enter(struct jscan *s, size_t t)
{
    if (++s->depth > s->b->lim.max_depth)
        return veil_conf__fail(s->b, -E2BIG, s->line, s->col, "nesting deeper than %zu levels",
                               s->b->lim.max_depth);
    advance(s);
    s->tok[t].end = s->i;
    skip_ws(s);
    return 0;
}

/* After an item: a ',' (more follow) or the closing bracket (*done). */
static int next_item(struct jscan *s, char close, bool *done)
{
    skip_ws(s);
    *done = at(s, close);
    if (!*done && !at(s, ','))
        return syntax(s);
    advance(s);
    if (*done)
        s->depth--;
    return 0;
}

static int scan_member(struct jscan *s)
{
    size_t k;
    int rc;
    skip_ws(s);
    if (!at(s, '"'))
        return syntax(s);
    if ((rc = tok_begin(s, &k)) != 0 || (rc = scan_string(s, k)) != 0)
        return rc;
    skip_ws(s);
    if (!at(s, ':'))
        return syntax(s);
    advance(s);
    return scan_value(s);
}

static int scan_object(struct jscan *s, size_t t)
{
    int rc = enter(s, t);
    if (rc != 0)
        return rc;
    bool done = at(s, '}');
    if (done)
        return next_item(s, '}', &done);
    while (!done)
        if ((rc = scan_member(s)) != 0 || (rc = next_item(s, '}', &done)) != 0)
            return rc;
    return 0;
}

static int scan_array(struct jscan *s, size_t t)
{
    int rc = enter(s, t);
    if (rc != 0)
        return rc;
    bool done = at(s, ']');
    if (done)
        return next_item(s, ']', &done);
    while (!done)
        if ((rc = scan_value(s)) != 0 || (rc = next_item(s, ']', &done)) != 0)
            return rc;
    return 0;
}

static int scan_value(struct jscan *s)
{
    size_t t;
    skip_ws(s);
    if (s->i >= s->len)
        return syntax(s);
    int rc = tok_begin(s, &t);
    if (rc != 0)
        return rc;
    switch (s->s[s->i]) {
    case '{':
        return scan_object(s, t);
    case '[':
        return scan_array(s, t);
    case '"':
        return scan_string(s, t);
    default:
        return scan_word(s, t);
    }
}

static int scan(struct jscan *s)
{
    int rc = scan_value(s);
    if (rc != 0)
        return rc;
    skip_ws(s);
    return s->i == s->len ? 0 : syntax(s);
}

/* ---- jansson's verdict --------------------------------------------------- */

/* The token jansson's error position (just past the token) points at. */
static const struct tok *tok_ending_at(const struct jscan *s, size_t end)
{
    size_t lo = 0, hi = s->ntok;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->tok[mid].end < end)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->ntok && s->tok[lo].end == end ? &s->tok[lo] : NULL;
}

/*
 * jansson places an error at the end of the offending token. Report its
 * start instead, as the YAML side does: the start of a token we recorded
 * that ends there, or else where the scanner gave up if that is before
 * jansson's place (then both stopped at the same token; had jansson stopped
 * earlier, its place would not be past the scanner's). An error "near end of
 * file" is placed just past the last character. Otherwise, jansson's place.
 */
static int json_error(struct jscan *s, const json_error_t *je)
{
    if (json_error_code(je) == json_error_out_of_memory)
        return veil_conf__fail(s->b, -ENOMEM, 0, 0, "out of memory");
    size_t pos = je->position > 0 ? (size_t)je->position : 0;
    bool at_eof = strstr(je->text, "near end of file") != NULL;
    const struct tok *t = at_eof ? NULL : tok_ending_at(s, pos);
    uint32_t line = (uint32_t)(je->line > 0 ? je->line : 1);
    uint32_t col = (uint32_t)(je->column > 0 ? je->column : 1);
    if (t != NULL) {
        line = t->line;
        col = t->col;
    } else if (s->stopped && (s->stop < pos || (at_eof && s->stop == s->len))) {
        line = s->stop_line;
        col = s->stop_col;
    }
    return veil_conf__fail(s->b, -EINVAL, line, col, "%s", je->text);
}

static int internal_error(struct jscan *s)
{
    VEIL_BUG_ON(1);
    return veil_conf__fail(s->b, -EINVAL, 0, 0,
                           "internal error: JSON positions do not match the parsed tree");
}

/* ---- building the tree ---------------------------------------------------- */

struct jbuild {
    struct jscan *s;
    size_t next; /* next token to use */
};

static struct veil_conf_node *build(struct jbuild *jb, json_t *v);

static struct veil_conf_node *node_at_next(struct jbuild *jb, enum veil_conf_kind kind)
{
    if (jb->next >= jb->s->ntok) {
        internal_error(jb->s);
        return NULL;
    }
    const struct tok *t = &jb->s->tok[jb->next++];
    return veil_conf__node(jb->s->b, kind, t->line, t->col);
}

static struct veil_conf_node *build_str(struct jbuild *jb, const char *str, size_t len)
{
    struct veil_conf_node *n = node_at_next(jb, VEIL_CONF_STR);
    if (n == NULL || (n->v.str.ptr = veil_conf__strdup(jb->s->b, str, len)) == NULL)
        return NULL;
    n->v.str.len = len;
    return n;
}

static struct veil_conf_node *build_object(struct jbuild *jb, json_t *obj)
{
    struct veil_conf_node *n = node_at_next(jb, VEIL_CONF_MAP);
    size_t np = json_object_size(obj), i = 0;
    struct veil_conf_pair *pairs = NULL;
    if (n == NULL || (np > 0 && (pairs = veil_conf__alloc(jb->s->b, np * sizeof(*pairs))) == NULL))
        return NULL;
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        struct veil_conf_node *k = build_str(jb, key, strlen(key));
        struct veil_conf_node *v = k ? build(jb, val) : NULL;
        if (v == NULL)
            return NULL;
        pairs[i++] = (struct veil_conf_pair){k, v};
    }
    n->v.map.pairs = pairs;
    n->v.map.n = i;
    return n;
}

static struct veil_conf_node *build_array(struct jbuild *jb, json_t *arr)
{
    struct veil_conf_node *n = node_at_next(jb, VEIL_CONF_SEQ);
    size_t ni = json_array_size(arr);
    const struct veil_conf_node **items = NULL;
    if (n == NULL || (ni > 0 && (items = veil_conf__alloc(jb->s->b, ni * sizeof(*items))) == NULL))
        return NULL;
    for (size_t i = 0; i < ni; i++)
        if ((items[i] = build(jb, json_array_get(arr, i))) == NULL)
            return NULL;
    n->v.seq.items = items;
    n->v.seq.n = ni;
    return n;
}

static struct veil_conf_node *build_scalar(struct jbuild *jb, json_t *v)
{
    static const enum veil_conf_kind kind_of[] = {
        [JSON_INTEGER] = VEIL_CONF_INT, [JSON_REAL] = VEIL_CONF_FLOAT, [JSON_TRUE] = VEIL_CONF_BOOL,
        [JSON_FALSE] = VEIL_CONF_BOOL,  [JSON_NULL] = VEIL_CONF_NULL,
    };
    struct veil_conf_node *n = node_at_next(jb, kind_of[json_typeof(v)]);
    if (n == NULL)
        return NULL;
    if (json_is_integer(v))
        n->v.i = json_integer_value(v);
    else if (json_is_real(v))
        n->v.f = json_real_value(v);
    else
        n->v.b = json_is_true(v);
    return n;
}

static struct veil_conf_node *build(struct jbuild *jb, json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return build_object(jb, v);
    case JSON_ARRAY:
        return build_array(jb, v);
    case JSON_STRING:
        return build_str(jb, json_string_value(v), json_string_length(v));
    default:
        return build_scalar(jb, v);
    }
}

static int build_doc(struct jscan *s, json_t *root)
{
    struct jbuild jb = {s, 0};
    s->b->nodes = 0; /* the scan counted them; the build counts them again */
    struct veil_conf_node *doc = build(&jb, root);
    if (doc == NULL)
        return s->b->rc;
    if (jb.next != s->ntok)
        return internal_error(s);
    return veil_conf__set_docs(s->b, &doc, 1);
}

/*
 * JSON text never holds a NUL byte, and jansson skips one after a number
 * ("[1\0]" loads), which would put the scanner and jansson out of step.
 */
static int refuse_nul(struct jscan *s)
{
    const unsigned char *z = memchr(s->s, '\0', s->len);
    if (z == NULL)
        return 0;
    while (s->s + s->i < z)
        advance(s);
    return veil_conf__fail(s->b, -EINVAL, s->line, s->col, "NUL byte in JSON text");
}

int veil_conf__json(struct veil_conf__build *b, const char *data, size_t len)
{
    struct jscan s = {.b = b, .s = (const unsigned char *)data, .len = len, .line = 1, .col = 1};
    if (refuse_nul(&s) < 0)
        return b->rc;
    int rc = scan(&s);
    if (rc < 0) {
        veil_free(s.tok);
        return rc;
    }
    json_error_t je;
    json_t *root = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (root == NULL)
        rc = json_error(&s, &je);
    else if (rc == SCAN_SYNTAX)
        rc = internal_error(&s);
    else
        rc = build_doc(&s, root);
    json_decref(root);
    veil_free(s.tok);
    return rc;
}
