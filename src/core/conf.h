/*
 * Configuration tree: YAML (libyaml) and JSON (jansson) documents loaded into
 * one tree in which every node, map keys included, knows its file, line and
 * column, so that whoever checks the configuration later can say where a
 * problem is: "svc.yaml:7:9: spec.ports[0].port: expected an integer, got a
 * string "eighty"".
 *
 * Ownership: a struct veil_conf owns everything of one load (one arena);
 * nodes, strings and position file names stay valid until veil_conf_free().
 * A loaded tree is immutable and may be read from several threads.
 *
 * Return convention of the loaders: 0 and *out set, or a negative errno with
 * *out = NULL and `err` filled (err may be NULL):
 *   -EINVAL  syntax error, duplicate key, bad scalar (e.g. an integer that
 *            does not fit in int64), unsupported YAML feature
 *   -E2BIG   a limit was passed (input size, nodes, depth, memory)
 *   -ENOMEM  out of memory
 *   other    the file could not be read (-ENOENT, -EACCES, -EISDIR, ...)
 *
 * YAML: several documents per file ("---"), scalars resolved with the YAML
 * 1.2 core schema (see docs/config.md), anchors and aliases (shared, not
 * copied; counted expanded against max_nodes), the standard tags !!str,
 * !!int, !!float, !!bool, !!null, !!map, !!seq and "!"; other tags, keys
 * that are sequences or maps, and recursive aliases are refused. Map keys
 * are always strings: `80: x` has the key "80". "<<" is an ordinary key (no
 * merging).
 * JSON: exactly one document; duplicate keys are refused.
 */
#ifndef VEIL_CORE_CONF_H
#define VEIL_CORE_CONF_H

#include "core/conf-t.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VEIL_CONF_MAX_INPUT_BYTES (16u << 20)
#define VEIL_CONF_MAX_ARENA_BYTES (256u << 20)
#define VEIL_CONF_MAX_NODES       1000000u
#define VEIL_CONF_MAX_DEPTH       256u

/* ---- loading ---------------------------------------------------------- */

/*
 * Reads and parses `path`: JSON when its name ends in ".json" (any case),
 * YAML otherwise. Default limits. Positions name the file as `path`.
 */
int veil_conf_load_file(struct veil_conf **out, const char *path, struct veil_conf_err *err);

/*
 * Parses `len` bytes of `data` (need not be NUL-terminated). `name` is used
 * as the file name of positions and errors (NULL: "<input>"). `lim` may be
 * NULL for the defaults.
 */
int veil_conf_parse(struct veil_conf **out, enum veil_conf_format format, const char *data,
                    size_t len, const char *name, const struct veil_conf_limits *lim,
                    struct veil_conf_err *err);
int veil_conf_parse_yaml(struct veil_conf **out, const char *data, size_t len, const char *name,
                         struct veil_conf_err *err);
int veil_conf_parse_json(struct veil_conf **out, const char *data, size_t len, const char *name,
                         struct veil_conf_err *err);

/* Whether a directory entry is a configuration file: *.yaml, *.yml or
 * *.json, not hidden. The config directory and `veil apply -f DIR` read
 * exactly these. */
bool veil_conf_is_file_name(const char *name);

/* Frees the tree and everything in it. NULL is a no-op. */
void veil_conf_free(struct veil_conf *conf);

/* The name given at load time. */
const char *veil_conf_name(const struct veil_conf *conf);

/*
 * Documents in file order. A YAML stream may hold 0 documents (empty file)
 * or empty ones ("---" alone: a VEIL_CONF_NULL root); JSON holds exactly 1.
 * veil_conf_doc() returns NULL when i is out of range.
 */
size_t veil_conf_ndocs(const struct veil_conf *conf);
const struct veil_conf_node *veil_conf_doc(const struct veil_conf *conf, size_t i);

/* ---- nodes ------------------------------------------------------------ */
/*
 * Every accessor accepts a NULL node and treats it as absent, so lookups can
 * be chained: veil_conf_map_get(veil_conf_map_get(doc, "metadata"), "name").
 */

enum veil_conf_kind veil_conf_node_kind(const struct veil_conf_node *n);

/* "null", "a boolean", "an integer", ... as used in error messages. */
const char *veil_conf_kind_name(enum veil_conf_kind kind);

/* Items of a sequence or pairs of a map; 0 for anything else. */
size_t veil_conf_len(const struct veil_conf_node *n);

/* The i-th item of a sequence / key or value of a map, or NULL. */
const struct veil_conf_node *veil_conf_seq_at(const struct veil_conf_node *seq, size_t i);
const struct veil_conf_node *veil_conf_map_key(const struct veil_conf_node *map, size_t i);
const struct veil_conf_node *veil_conf_map_value(const struct veil_conf_node *map, size_t i);

/* The value under `key`, or NULL (also when `map` is not a map). Linear. */
const struct veil_conf_node *veil_conf_map_get(const struct veil_conf_node *map, const char *key);

/*
 * Scalar values: 0 and *out set, or -EINVAL when the node is NULL or of
 * another kind. veil_conf_as_float() also takes an integer. `len` of
 * veil_conf_as_str() may be NULL.
 */
int veil_conf_as_bool(const struct veil_conf_node *n, bool *out);
int veil_conf_as_int(const struct veil_conf_node *n, int64_t *out);
int veil_conf_as_float(const struct veil_conf_node *n, double *out);
int veil_conf_as_str(const struct veil_conf_node *n, const char **out, size_t *len);

/* The string of a VEIL_CONF_STR node, or NULL. */
const char *veil_conf_str(const struct veil_conf_node *n);

/* ---- typed fields with errors ------------------------------------------ */
/*
 * Field paths are built on the stack, from the document root down:
 *
 *     const struct veil_conf_path *spec = VEIL_CONF_KEY(NULL, "spec");
 *     const struct veil_conf_path *ports = VEIL_CONF_KEY(spec, "ports");
 *     ... VEIL_CONF_IDX(ports, i) ...
 *
 * The compound literals live until the end of the enclosing block. A NULL
 * path is the document root.
 */
#define VEIL_CONF_KEY(parent_, key_) (&(const struct veil_conf_path){(parent_), (key_), 0})
#define VEIL_CONF_IDX(parent_, i_)   (&(const struct veil_conf_path){(parent_), NULL, (i_)})

/*
 * Read field `key` of `map`, which sits at `path`, with its type checked.
 *
 * veil_conf_get_*: 1 when the field is present and *out is set; 0 when it is
 * absent or null, or `map` is NULL (*out untouched, so preset a default);
 * -EINVAL when it has another type or `map` is not a map (err filled).
 *
 * veil_conf_req_*: 0 and *out set, or -EINVAL with err filled when the field
 * is absent, null or of another type. A missing field is reported at the
 * map's position: "svc.yaml:4:3: metadata.name: required field is missing".
 *
 * A mismatch is reported at the value: "svc.yaml:7:9: spec.ports[0].port:
 * expected an integer, got a string "eighty"". Strings point into the tree.
 * _float accepts integers. _int_range also checks min <= value <= max.
 */
int veil_conf_get_str(const struct veil_conf_node *map, const struct veil_conf_path *path,
                      const char *key, const char **out, struct veil_conf_err *err);
int veil_conf_get_int(const struct veil_conf_node *map, const struct veil_conf_path *path,
                      const char *key, int64_t *out, struct veil_conf_err *err);
int veil_conf_get_int_range(const struct veil_conf_node *map, const struct veil_conf_path *path,
                            const char *key, int64_t min, int64_t max, int64_t *out,
                            struct veil_conf_err *err);
int veil_conf_get_bool(const struct veil_conf_node *map, const struct veil_conf_path *path,
                       const char *key, bool *out, struct veil_conf_err *err);
int veil_conf_get_float(const struct veil_conf_node *map, const struct veil_conf_path *path,
                        const char *key, double *out, struct veil_conf_err *err);
int veil_conf_get_map(const struct veil_conf_node *map, const struct veil_conf_path *path,
                      const char *key, const struct veil_conf_node **out,
                      struct veil_conf_err *err);
int veil_conf_get_seq(const struct veil_conf_node *map, const struct veil_conf_path *path,
                      const char *key, const struct veil_conf_node **out,
                      struct veil_conf_err *err);

int veil_conf_req_str(const struct veil_conf_node *map, const struct veil_conf_path *path,
                      const char *key, const char **out, struct veil_conf_err *err);
int veil_conf_req_int(const struct veil_conf_node *map, const struct veil_conf_path *path,
                      const char *key, int64_t *out, struct veil_conf_err *err);
int veil_conf_req_int_range(const struct veil_conf_node *map, const struct veil_conf_path *path,
                            const char *key, int64_t min, int64_t max, int64_t *out,
                            struct veil_conf_err *err);
int veil_conf_req_bool(const struct veil_conf_node *map, const struct veil_conf_path *path,
                       const char *key, bool *out, struct veil_conf_err *err);
int veil_conf_req_float(const struct veil_conf_node *map, const struct veil_conf_path *path,
                        const char *key, double *out, struct veil_conf_err *err);
int veil_conf_req_map(const struct veil_conf_node *map, const struct veil_conf_path *path,
                      const char *key, const struct veil_conf_node **out,
                      struct veil_conf_err *err);
int veil_conf_req_seq(const struct veil_conf_node *map, const struct veil_conf_path *path,
                      const char *key, const struct veil_conf_node **out,
                      struct veil_conf_err *err);

/*
 * Checks the kind of a node reached otherwise (a sequence item, a document
 * root): 0, or -EINVAL with "path: expected <kind>, got ..." in err.
 */
int veil_conf_expect(const struct veil_conf_node *n, const struct veil_conf_path *path,
                     enum veil_conf_kind kind, struct veil_conf_err *err);

/* ---- errors ------------------------------------------------------------ */

/*
 * Fills `err` (if not NULL) with the position of `at` (none if NULL) and the
 * message "path: <fmt...>" ("<fmt...>" when path is NULL), for checks the
 * caller makes itself: veil_conf_errf(err, v, p, "unknown protocol \"%s\"",
 * s). Returns -EINVAL, to be returned in turn.
 */
int veil_conf_errf(struct veil_conf_err *err, const struct veil_conf_node *at,
                   const struct veil_conf_path *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Formats "file:line:col: msg", "file: msg" when there is no line, or
 * "msg" when there is no file. Returns what snprintf() returns.
 */
int veil_conf_err_format(const struct veil_conf_err *err, char *buf, size_t n);

/* Renders `path` as "spec.ports[0].port" (keys with '.', '[', ']', spaces
 * or empty ones as "[key]"). Returns the untruncated length, as snprintf. */
size_t veil_conf_path_format(const struct veil_conf_path *path, char *buf, size_t n);

/* ---- internal to src/core/conf*.c -------------------------------------- */

int veil_conf__yaml(struct veil_conf__build *b, const char *data, size_t len);
int veil_conf__json(struct veil_conf__build *b, const char *data, size_t len);

/* A node counted against max_nodes, at line:col; NULL with err, b->rc set. */
struct veil_conf_node *veil_conf__node(struct veil_conf__build *b, enum veil_conf_kind kind,
                                       uint32_t line, uint32_t col);
/* Counts `n` more expanded nodes: 0, or -E2BIG with err, b->rc set. */
int veil_conf__count(struct veil_conf__build *b, size_t n, uint32_t line, uint32_t col);
/* Arena memory; NULL with err and b->rc set (-E2BIG or -ENOMEM). */
void *veil_conf__alloc(struct veil_conf__build *b, size_t n);
char *veil_conf__strdup(struct veil_conf__build *b, const char *s, size_t len);
/* Unless an error is already recorded, sets err at line:col (0: no
 * position) and b->rc. Returns b->rc. */
int veil_conf__fail(struct veil_conf__build *b, int rc, uint32_t line, uint32_t col,
                    const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Sets the documents (copied into the arena). 0 or a negative errno. */
int veil_conf__set_docs(struct veil_conf__build *b, struct veil_conf_node *const *docs, size_t n);

#endif
