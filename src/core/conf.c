#include "core/conf.h"

#include "core/alloc.h"
#include "core/arena.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* Keeps the expanded node counts of conf-t.h within their uint32_t. */
#define NODES_CEILING (1u << 31)
/* The JSON scanner and tree builder recurse; jansson stops at 2048 too. */
#define DEPTH_CEILING 2048
#define STR_PREVIEW   40

/* ---- errors ------------------------------------------------------------- */

static void err_vset(struct veil_conf_err *err, const char *file, uint32_t line, uint32_t col,
                     const char *fmt, va_list ap)
{
    if (err == NULL)
        return;
    snprintf(err->file, sizeof(err->file), "%s", file ? file : "");
    err->line = (int)line;
    err->col = line ? (int)(col ? col : 1) : 0;
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
}

__attribute__((format(printf, 5, 6))) static void err_set(struct veil_conf_err *err,
                                                          const char *file, uint32_t line,
                                                          uint32_t col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    err_vset(err, file, line, col, fmt, ap);
    va_end(ap);
}

int veil_conf_err_format(const struct veil_conf_err *err, char *buf, size_t n)
{
    if (err->file[0] == '\0')
        return snprintf(buf, n, "%s", err->msg);
    if (err->line <= 0)
        return snprintf(buf, n, "%s: %s", err->file, err->msg);
    return snprintf(buf, n, "%s:%d:%d: %s", err->file, err->line, err->col, err->msg);
}

/* ---- field paths -------------------------------------------------------- */

struct sbuf {
    char *buf;
    size_t n;
    size_t len; /* untruncated */
};

static void sb_put(struct sbuf *sb, const char *s, size_t slen)
{
    if (sb->len + 1 < sb->n) {
        size_t room = sb->n - 1 - sb->len;
        size_t k = slen < room ? slen : room;
        memcpy(sb->buf + sb->len, s, k);
        sb->buf[sb->len + k] = '\0';
    }
    sb->len += slen;
}

static void sb_puts(struct sbuf *sb, const char *s)
{
    sb_put(sb, s, strlen(s));
}

static bool key_needs_brackets(const char *key)
{
    return key[0] == '\0' || key[strcspn(key, ".[] \t\n")] != '\0';
}

static void path_render(const struct veil_conf_path *p, struct sbuf *sb)
{
    if (p->parent != NULL)
        path_render(p->parent, sb);
    if (p->key == NULL) {
        char idx[32];
        snprintf(idx, sizeof(idx), "[%zu]", p->index);
        sb_puts(sb, idx);
    } else if (key_needs_brackets(p->key)) {
        sb_puts(sb, "[");
        sb_puts(sb, p->key);
        sb_puts(sb, "]");
    } else {
        if (sb->len > 0)
            sb_puts(sb, ".");
        sb_puts(sb, p->key);
    }
}

size_t veil_conf_path_format(const struct veil_conf_path *path, char *buf, size_t n)
{
    struct sbuf sb = {buf, n, 0};
    if (n > 0)
        buf[0] = '\0';
    if (path != NULL)
        path_render(path, &sb);
    return sb.len;
}

static int errv_at(struct veil_conf_err *err, const struct veil_conf_node *at,
                   const struct veil_conf_path *path, const char *fmt, va_list ap)
{
    if (err == NULL)
        return -EINVAL;
    char msg[VEIL_CONF_ERR_MSG_MAX];
    size_t off = 0;
    if (path != NULL) {
        off = veil_conf_path_format(path, msg, sizeof(msg));
        off = off < sizeof(msg) - 1 ? off : sizeof(msg) - 1;
        off += (size_t)snprintf(msg + off, sizeof(msg) - off, ": ");
        off = off < sizeof(msg) - 1 ? off : sizeof(msg) - 1;
    }
    vsnprintf(msg + off, sizeof(msg) - off, fmt, ap);
    if (at != NULL)
        err_set(err, at->pos.file, at->pos.line, at->pos.col, "%s", msg);
    else
        err_set(err, NULL, 0, 0, "%s", msg);
    return -EINVAL;
}

int veil_conf_errf(struct veil_conf_err *err, const struct veil_conf_node *at,
                   const struct veil_conf_path *path, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = errv_at(err, at, path, fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- the build state shared with conf_yaml.c and conf_json.c -------------- */

int veil_conf__fail(struct veil_conf__build *b, int rc, uint32_t line, uint32_t col,
                    const char *fmt, ...)
{
    if (b->rc != 0)
        return b->rc;
    b->rc = rc;
    va_list ap;
    va_start(ap, fmt);
    err_vset(b->err, b->conf->_name, line, col, fmt, ap);
    va_end(ap);
    return rc;
}

static void *alloc_failed(struct veil_conf__build *b)
{
    if (errno == E2BIG)
        veil_conf__fail(b, -E2BIG, 0, 0, "configuration needs more than %zu bytes of memory",
                        b->lim.max_arena_bytes);
    else
        veil_conf__fail(b, -ENOMEM, 0, 0, "out of memory");
    return NULL;
}

void *veil_conf__alloc(struct veil_conf__build *b, size_t n)
{
    void *p = veil_arena_alloc(&b->conf->_arena, n);
    return p ? p : alloc_failed(b);
}

char *veil_conf__strdup(struct veil_conf__build *b, const char *s, size_t len)
{
    char *p = veil_arena_memdup(&b->conf->_arena, s, len);
    return p ? p : alloc_failed(b);
}

int veil_conf__count(struct veil_conf__build *b, size_t n, uint32_t line, uint32_t col)
{
    if (n > b->lim.max_nodes - b->nodes)
        return veil_conf__fail(b, -E2BIG, line, col,
                               "more than %zu nodes (YAML aliases counted expanded)",
                               b->lim.max_nodes);
    b->nodes += n;
    return 0;
}

struct veil_conf_node *veil_conf__node(struct veil_conf__build *b, enum veil_conf_kind kind,
                                       uint32_t line, uint32_t col)
{
    if (veil_conf__count(b, 1, line, col) < 0)
        return NULL;
    struct veil_conf_node *n = veil_conf__alloc(b, sizeof(*n));
    if (n == NULL)
        return NULL;
    memset(n, 0, sizeof(*n));
    n->kind = kind;
    n->_weight = 1;
    n->pos.file = b->conf->_name;
    n->pos.line = line;
    n->pos.col = col;
    return n;
}

int veil_conf__set_docs(struct veil_conf__build *b, struct veil_conf_node *const *docs, size_t n)
{
    const struct veil_conf_node **d = veil_conf__alloc(b, (n ? n : 1) * sizeof(*d));
    if (d == NULL)
        return b->rc;
    for (size_t i = 0; i < n; i++)
        d[i] = docs[i];
    b->conf->_docs = d;
    b->conf->_ndocs = n;
    return 0;
}

/* ---- loading ------------------------------------------------------------ */

static size_t or_default(size_t v, size_t def)
{
    return v ? v : def;
}

static void limits_resolve(struct veil_conf_limits *out, const struct veil_conf_limits *in)
{
    static const struct veil_conf_limits none;
    if (in == NULL)
        in = &none;
    out->max_input_bytes = or_default(in->max_input_bytes, VEIL_CONF_MAX_INPUT_BYTES);
    out->max_arena_bytes = or_default(in->max_arena_bytes, VEIL_CONF_MAX_ARENA_BYTES);
    out->max_nodes = or_default(in->max_nodes, VEIL_CONF_MAX_NODES);
    if (out->max_nodes > NODES_CEILING)
        out->max_nodes = NODES_CEILING;
    out->max_depth = or_default(in->max_depth, VEIL_CONF_MAX_DEPTH);
    if (out->max_depth > DEPTH_CEILING)
        out->max_depth = DEPTH_CEILING;
}

static void err_clear(struct veil_conf_err *err)
{
    if (err != NULL)
        memset(err, 0, sizeof(*err));
}

/* Small inputs get small chunks; a chunk never takes more than half the cap. */
static size_t chunk_size_for(size_t len, size_t max_arena)
{
    size_t chunk = len <= 1024 ? 4096 : 65536;
    return chunk < max_arena / 2 ? chunk : max_arena / 2;
}

/* NULL with errno ENOMEM or E2BIG. */
static struct veil_conf *conf_new(const char *name, const struct veil_conf_limits *lim, size_t len)
{
    struct veil_conf *c = veil_calloc(1, sizeof(*c));
    if (c == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    veil_arena_init(&c->_arena, chunk_size_for(len, lim->max_arena_bytes), lim->max_arena_bytes);
    c->_name = veil_arena_strndup(&c->_arena, name, strlen(name));
    if (c->_name == NULL) {
        int e = errno;
        veil_conf_free(c);
        errno = e;
        return NULL;
    }
    return c;
}

int veil_conf_parse(struct veil_conf **out, enum veil_conf_format format, const char *data,
                    size_t len, const char *name, const struct veil_conf_limits *lim,
                    struct veil_conf_err *err)
{
    struct veil_conf__build b = {.err = err};
    *out = NULL;
    err_clear(err);
    limits_resolve(&b.lim, lim);
    name = name ? name : "<input>";
    data = len > 0 ? data : "";
    if (len > b.lim.max_input_bytes) {
        err_set(err, name, 0, 0, "input of %zu bytes is larger than the limit of %zu bytes", len,
                b.lim.max_input_bytes);
        return -E2BIG;
    }
    b.conf = conf_new(name, &b.lim, len);
    if (b.conf == NULL && errno == E2BIG) {
        err_set(err, name, 0, 0, "configuration needs more than %zu bytes of memory",
                b.lim.max_arena_bytes);
        return -E2BIG;
    }
    if (b.conf == NULL) {
        err_set(err, name, 0, 0, "out of memory");
        return -ENOMEM;
    }
    int rc =
        format == VEIL_CONF_JSON ? veil_conf__json(&b, data, len) : veil_conf__yaml(&b, data, len);
    if (rc < 0) {
        veil_conf_free(b.conf);
        return rc;
    }
    *out = b.conf;
    return 0;
}

int veil_conf_parse_yaml(struct veil_conf **out, const char *data, size_t len, const char *name,
                         struct veil_conf_err *err)
{
    return veil_conf_parse(out, VEIL_CONF_YAML, data, len, name, NULL, err);
}

int veil_conf_parse_json(struct veil_conf **out, const char *data, size_t len, const char *name,
                         struct veil_conf_err *err)
{
    return veil_conf_parse(out, VEIL_CONF_JSON, data, len, name, NULL, err);
}

static int read_fail(const char *path, int rc, struct veil_conf_err *err)
{
    err_set(err, path, 0, 0, "%s", strerror(-rc));
    return rc;
}

static int read_all(int fd, char *buf, size_t cap, size_t *len)
{
    size_t got = 0;
    while (got < cap) {
        ssize_t r = read(fd, buf + got, cap - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            break;
        got += (size_t)r;
    }
    *len = got;
    return 0;
}

/*
 * Reads to EOF into a buffer that grows up to max + 1 bytes, so that a file
 * larger than max (or one that grew after fstat) is caught.
 */
static int read_grow(int fd, size_t hint, size_t max, char **out, size_t *len)
{
    size_t cap = hint < 4096 ? 4096 : hint < max ? hint + 1 : max + 1;
    size_t got = 0;
    char *buf = NULL;
    for (;;) {
        char *nb = veil_realloc(buf, cap);
        if (nb == NULL) {
            veil_free(buf);
            return -ENOMEM;
        }
        buf = nb;
        size_t n = 0;
        int rc = read_all(fd, buf + got, cap - got, &n);
        if (rc < 0) {
            veil_free(buf);
            return rc;
        }
        got += n;
        if (got < cap || cap > max)
            break;
        cap = cap > max / 2 ? max + 1 : cap * 2;
    }
    *out = buf;
    *len = got;
    return 0;
}

static int read_fd(int fd, const char *path, char **out, size_t *len, struct veil_conf_err *err)
{
    const size_t max = VEIL_CONF_MAX_INPUT_BYTES;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return read_fail(path, -errno, err);
    if (S_ISDIR(st.st_mode))
        return read_fail(path, -EISDIR, err);
    if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max)
        goto too_big;
    int rc = read_grow(fd, S_ISREG(st.st_mode) ? (size_t)st.st_size : 0, max, out, len);
    if (rc < 0)
        return read_fail(path, rc, err);
    if (*len <= max)
        return 0;
    veil_free(*out);
    *out = NULL;
too_big:
    err_set(err, path, 0, 0, "file is larger than the limit of %zu bytes", max);
    return -E2BIG;
}

static bool is_json_name(const char *path)
{
    const char *dot = strrchr(path, '.');
    return dot != NULL && strchr(dot, '/') == NULL && strcasecmp(dot, ".json") == 0;
}

int veil_conf_load_file(struct veil_conf **out, const char *path, struct veil_conf_err *err)
{
    *out = NULL;
    err_clear(err);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return read_fail(path, -errno, err);
    char *buf = NULL;
    size_t len = 0;
    int rc = read_fd(fd, path, &buf, &len, err);
    close(fd);
    if (rc < 0)
        return rc;
    rc = veil_conf_parse(out, is_json_name(path) ? VEIL_CONF_JSON : VEIL_CONF_YAML, buf, len, path,
                         NULL, err);
    veil_free(buf);
    return rc;
}

void veil_conf_free(struct veil_conf *conf)
{
    if (conf == NULL)
        return;
    veil_arena_free(&conf->_arena);
    veil_free(conf);
}

const char *veil_conf_name(const struct veil_conf *conf)
{
    return conf->_name;
}

size_t veil_conf_ndocs(const struct veil_conf *conf)
{
    return conf->_ndocs;
}

const struct veil_conf_node *veil_conf_doc(const struct veil_conf *conf, size_t i)
{
    return i < conf->_ndocs ? conf->_docs[i] : NULL;
}

/* ---- nodes -------------------------------------------------------------- */

enum veil_conf_kind veil_conf_node_kind(const struct veil_conf_node *n)
{
    return n ? n->kind : VEIL_CONF_NONE;
}

const char *veil_conf_kind_name(enum veil_conf_kind kind)
{
    switch (kind) {
    case VEIL_CONF_NULL:
        return "null";
    case VEIL_CONF_BOOL:
        return "a boolean";
    case VEIL_CONF_INT:
        return "an integer";
    case VEIL_CONF_FLOAT:
        return "a number";
    case VEIL_CONF_STR:
        return "a string";
    case VEIL_CONF_SEQ:
        return "a sequence";
    case VEIL_CONF_MAP:
        return "a map";
    case VEIL_CONF_NONE:
        break;
    }
    return "nothing";
}

size_t veil_conf_len(const struct veil_conf_node *n)
{
    if (n == NULL)
        return 0;
    if (n->kind == VEIL_CONF_SEQ)
        return n->v.seq.n;
    return n->kind == VEIL_CONF_MAP ? n->v.map.n : 0;
}

const struct veil_conf_node *veil_conf_seq_at(const struct veil_conf_node *seq, size_t i)
{
    if (veil_conf_node_kind(seq) != VEIL_CONF_SEQ || i >= seq->v.seq.n)
        return NULL;
    return seq->v.seq.items[i];
}

const struct veil_conf_node *veil_conf_map_key(const struct veil_conf_node *map, size_t i)
{
    if (veil_conf_node_kind(map) != VEIL_CONF_MAP || i >= map->v.map.n)
        return NULL;
    return map->v.map.pairs[i].key;
}

const struct veil_conf_node *veil_conf_map_value(const struct veil_conf_node *map, size_t i)
{
    if (veil_conf_node_kind(map) != VEIL_CONF_MAP || i >= map->v.map.n)
        return NULL;
    return map->v.map.pairs[i].value;
}

const struct veil_conf_node *veil_conf_map_get(const struct veil_conf_node *map, const char *key)
{
    if (veil_conf_node_kind(map) != VEIL_CONF_MAP)
        return NULL;
    size_t klen = strlen(key);
    for (size_t i = 0; i < map->v.map.n; i++) {
        const struct veil_conf_node *k = map->v.map.pairs[i].key;
        if (k->v.str.len == klen && memcmp(k->v.str.ptr, key, klen) == 0)
            return map->v.map.pairs[i].value;
    }
    return NULL;
}

int veil_conf_as_bool(const struct veil_conf_node *n, bool *out)
{
    if (veil_conf_node_kind(n) != VEIL_CONF_BOOL)
        return -EINVAL;
    *out = n->v.b;
    return 0;
}

int veil_conf_as_int(const struct veil_conf_node *n, int64_t *out)
{
    if (veil_conf_node_kind(n) != VEIL_CONF_INT)
        return -EINVAL;
    *out = n->v.i;
    return 0;
}

int veil_conf_as_float(const struct veil_conf_node *n, double *out)
{
    if (veil_conf_node_kind(n) == VEIL_CONF_INT) {
        *out = (double)n->v.i;
        return 0;
    }
    if (veil_conf_node_kind(n) != VEIL_CONF_FLOAT)
        return -EINVAL;
    *out = n->v.f;
    return 0;
}

int veil_conf_as_str(const struct veil_conf_node *n, const char **out, size_t *len)
{
    if (veil_conf_node_kind(n) != VEIL_CONF_STR)
        return -EINVAL;
    *out = n->v.str.ptr;
    if (len != NULL)
        *len = n->v.str.len;
    return 0;
}

const char *veil_conf_str(const struct veil_conf_node *n)
{
    return veil_conf_node_kind(n) == VEIL_CONF_STR ? n->v.str.ptr : NULL;
}

/* ---- typed fields ------------------------------------------------------- */

/* A quoted, escaped, shortened copy of a string for messages. */
static void str_preview(const struct veil_conf_node *n, char *buf, size_t size)
{
    struct sbuf sb = {buf, size, 0};
    size_t len = n->v.str.len < STR_PREVIEW ? n->v.str.len : STR_PREVIEW;
    const unsigned char *s = (const unsigned char *)n->v.str.ptr;
    while (len < n->v.str.len && len > 0 && (s[len] & 0xC0) == 0x80)
        len--;
    sb_puts(&sb, "\"");
    for (size_t i = 0; i < len; i++) {
        char esc[8];
        if (s[i] < 0x20 || s[i] == 0x7F || s[i] == '"' || s[i] == '\\') {
            snprintf(esc, sizeof(esc), s[i] == '"' || s[i] == '\\' ? "\\%c" : "\\x%02x", s[i]);
            sb_puts(&sb, esc);
        } else {
            sb_put(&sb, (const char *)s + i, 1);
        }
    }
    sb_puts(&sb, len < n->v.str.len ? "\"..." : "\"");
}

/* "a string \"eighty\"", "an integer 80", "a map", ... */
static void describe(const struct veil_conf_node *n, char *buf, size_t size)
{
    char val[STR_PREVIEW * 4 + 8];
    val[0] = '\0';
    switch (veil_conf_node_kind(n)) {
    case VEIL_CONF_BOOL:
        snprintf(val, sizeof(val), "%s", n->v.b ? "true" : "false");
        break;
    case VEIL_CONF_INT:
        snprintf(val, sizeof(val), "%" PRId64, n->v.i);
        break;
    case VEIL_CONF_FLOAT:
        snprintf(val, sizeof(val), "%g", n->v.f);
        break;
    case VEIL_CONF_STR:
        str_preview(n, val, sizeof(val));
        break;
    default:
        break;
    }
    snprintf(buf, size, "%s%s%s", veil_conf_kind_name(veil_conf_node_kind(n)), val[0] ? " " : "",
             val);
}

static bool kind_fits(const struct veil_conf_node *n, enum veil_conf_kind want)
{
    enum veil_conf_kind k = veil_conf_node_kind(n);
    return k == want || (want == VEIL_CONF_FLOAT && k == VEIL_CONF_INT);
}

int veil_conf_expect(const struct veil_conf_node *n, const struct veil_conf_path *path,
                     enum veil_conf_kind kind, struct veil_conf_err *err)
{
    if (kind_fits(n, kind))
        return 0;
    char got[STR_PREVIEW * 4 + 32];
    describe(n, got, sizeof(got));
    return veil_conf_errf(err, n, path, "expected %s, got %s", veil_conf_kind_name(kind), got);
}

/*
 * The common part of the get/req helpers: 1 and *val set, 0 when absent
 * (never when `required`), -EINVAL with err set.
 */
static int field(const struct veil_conf_node *map, const struct veil_conf_path *path,
                 const char *key, bool required, enum veil_conf_kind want,
                 const struct veil_conf_node **val, struct veil_conf_err *err)
{
    if (map == NULL && !required)
        return 0;
    if (map == NULL)
        return veil_conf_errf(err, NULL, VEIL_CONF_KEY(path, key), "required field is missing");
    if (veil_conf_expect(map, path, VEIL_CONF_MAP, err) < 0)
        return -EINVAL;
    const struct veil_conf_node *v = veil_conf_map_get(map, key);
    if (v == NULL && required)
        return veil_conf_errf(err, map, VEIL_CONF_KEY(path, key), "required field is missing");
    if (v == NULL || (v->kind == VEIL_CONF_NULL && !required))
        return 0;
    if (veil_conf_expect(v, VEIL_CONF_KEY(path, key), want, err) < 0)
        return -EINVAL;
    *val = v;
    return 1;
}

/* Turns field()'s result into the get (1/0/-EINVAL) or req (0/-EINVAL) one. */
static int field_rc(int rc, bool required)
{
    return required && rc == 1 ? 0 : rc;
}

static int str_field(const struct veil_conf_node *map, const struct veil_conf_path *path,
                     const char *key, bool req, const char **out, struct veil_conf_err *err)
{
    const struct veil_conf_node *v = NULL;
    int rc = field(map, path, key, req, VEIL_CONF_STR, &v, err);
    if (rc == 1)
        *out = v->v.str.ptr;
    return field_rc(rc, req);
}

static int int_field(const struct veil_conf_node *map, const struct veil_conf_path *path,
                     const char *key, bool req, int64_t min, int64_t max, int64_t *out,
                     struct veil_conf_err *err)
{
    const struct veil_conf_node *v = NULL;
    int rc = field(map, path, key, req, VEIL_CONF_INT, &v, err);
    if (rc == 1 && (v->v.i < min || v->v.i > max))
        return veil_conf_errf(err, v, VEIL_CONF_KEY(path, key),
                              "%" PRId64 " is out of range %" PRId64 "..%" PRId64, v->v.i, min,
                              max);
    if (rc == 1)
        *out = v->v.i;
    return field_rc(rc, req);
}

static int bool_field(const struct veil_conf_node *map, const struct veil_conf_path *path,
                      const char *key, bool req, bool *out, struct veil_conf_err *err)
{
    const struct veil_conf_node *v = NULL;
    int rc = field(map, path, key, req, VEIL_CONF_BOOL, &v, err);
    if (rc == 1)
        *out = v->v.b;
    return field_rc(rc, req);
}

static int float_field(const struct veil_conf_node *map, const struct veil_conf_path *path,
                       const char *key, bool req, double *out, struct veil_conf_err *err)
{
    const struct veil_conf_node *v = NULL;
    int rc = field(map, path, key, req, VEIL_CONF_FLOAT, &v, err);
    if (rc == 1)
        veil_conf_as_float(v, out);
    return field_rc(rc, req);
}

static int node_field(const struct veil_conf_node *map, const struct veil_conf_path *path,
                      const char *key, bool req, enum veil_conf_kind want,
                      const struct veil_conf_node **out, struct veil_conf_err *err)
{
    const struct veil_conf_node *v = NULL;
    int rc = field(map, path, key, req, want, &v, err);
    if (rc == 1)
        *out = v;
    return field_rc(rc, req);
}

int veil_conf_get_str(const struct veil_conf_node *map, const struct veil_conf_path *path,
                      const char *key, const char **out, struct veil_conf_err *err)
{
    return str_field(map, path, key, false, out, err);
}

int veil_conf_req_str(const struct veil_conf_node *map, const struct veil_conf_path *path,
                      const char *key, const char **out, struct veil_conf_err *err)
{
    return str_field(map, path, key, true, out, err);
}

int veil_conf_get_int(const struct veil_conf_node *map, const struct veil_conf_path *path,
                      const char *key, int64_t *out, struct veil_conf_err *err)
{
    return int_field(map, path, key, false, INT64_MIN, INT64_MAX, out, err);
}

int veil_conf_req_int(const struct veil_conf_node *map, const struct veil_conf_path *path,
                      const char *key, int64_t *out, struct veil_conf_err *err)
{
    return int_field(map, path, key, true, INT64_MIN, INT64_MAX, out, err);
}

int veil_conf_get_int_range(const struct veil_conf_node *map, const struct veil_conf_path *path,
                            const char *key, int64_t min, int64_t max, int64_t *out,
                            struct veil_conf_err *err)
{
    return int_field(map, path, key, false, min, max, out, err);
}

int veil_conf_req_int_range(const struct veil_conf_node *map, const struct veil_conf_path *path,
                            const char *key, int64_t min, int64_t max, int64_t *out,
                            struct veil_conf_err *err)
{
    return int_field(map, path, key, true, min, max, out, err);
}

int veil_conf_get_bool(const struct veil_conf_node *map, const struct veil_conf_path *path,
                       const char *key, bool *out, struct veil_conf_err *err)
{
    return bool_field(map, path, key, false, out, err);
}

int veil_conf_req_bool(const struct veil_conf_node *map, const struct veil_conf_path *path,
                       const char *key, bool *out, struct veil_conf_err *err)
{
    return bool_field(map, path, key, true, out, err);
}

int veil_conf_get_float(const struct veil_conf_node *map, const struct veil_conf_path *path,
                        const char *key, double *out, struct veil_conf_err *err)
{
    return float_field(map, path, key, false, out, err);
}

int veil_conf_req_float(const struct veil_conf_node *map, const struct veil_conf_path *path,
                        const char *key, double *out, struct veil_conf_err *err)
{
    return float_field(map, path, key, true, out, err);
}

int veil_conf_get_map(const struct veil_conf_node *map, const struct veil_conf_path *path,
                      const char *key, const struct veil_conf_node **out, struct veil_conf_err *err)
{
    return node_field(map, path, key, false, VEIL_CONF_MAP, out, err);
}

int veil_conf_req_map(const struct veil_conf_node *map, const struct veil_conf_path *path,
                      const char *key, const struct veil_conf_node **out, struct veil_conf_err *err)
{
    return node_field(map, path, key, true, VEIL_CONF_MAP, out, err);
}

int veil_conf_get_seq(const struct veil_conf_node *map, const struct veil_conf_path *path,
                      const char *key, const struct veil_conf_node **out, struct veil_conf_err *err)
{
    return node_field(map, path, key, false, VEIL_CONF_SEQ, out, err);
}

int veil_conf_req_seq(const struct veil_conf_node *map, const struct veil_conf_path *path,
                      const char *key, const struct veil_conf_node **out, struct veil_conf_err *err)
{
    return node_field(map, path, key, true, VEIL_CONF_SEQ, out, err);
}

bool veil_conf_is_file_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    return name[0] != '.' && dot != NULL &&
           (strcmp(dot, ".yaml") == 0 || strcmp(dot, ".yml") == 0 || strcmp(dot, ".json") == 0);
}
