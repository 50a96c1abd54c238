/*
 * Configuration tree types. See conf.h for the contract.
 */
#ifndef VEIL_CORE_CONF_T_H
#define VEIL_CORE_CONF_T_H

#include "core/arena-t.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum veil_conf_kind {
    VEIL_CONF_NONE = 0, /* no node at all: only reported for a NULL node */
    VEIL_CONF_NULL,
    VEIL_CONF_BOOL,
    VEIL_CONF_INT,
    VEIL_CONF_FLOAT,
    VEIL_CONF_STR,
    VEIL_CONF_SEQ,
    VEIL_CONF_MAP,
};

enum veil_conf_format {
    VEIL_CONF_YAML,
    VEIL_CONF_JSON,
};

/*
 * Where a node starts in its source. `file` is the name the configuration
 * was loaded under and lives as long as the tree. line and col are 1-based;
 * col counts characters (Unicode code points), not bytes, so a tab or an
 * "é" is one column.
 */
struct veil_conf_pos {
    const char *file;
    uint32_t line;
    uint32_t col;
};

struct veil_conf_node;

/* One entry of a map; the key is always a VEIL_CONF_STR node. */
struct veil_conf_pair {
    const struct veil_conf_node *key;
    const struct veil_conf_node *value;
};

/*
 * A node of the tree. Read-only for users: the public members may be read
 * directly, or through the NULL-tolerant accessors of conf.h. `v` holds the
 * member that matches `kind`:
 *   BOOL  v.b     INT  v.i     FLOAT  v.f
 *   STR   v.str   (ptr is NUL-terminated; len excludes the NUL; no NUL inside)
 *   SEQ   v.seq   (n items)
 *   MAP   v.map   (n pairs in document order, keys unique)
 * A node reached through a YAML alias is the anchored node itself, shared,
 * so it reports the position of the anchor.
 */
struct veil_conf_node {
    enum veil_conf_kind kind;
    uint32_t _weight; /* node count with aliases expanded; 0 while being built */
    uint32_t _height; /* nesting below this node with aliases expanded */
    struct veil_conf_pos pos;
    union {
        bool b;
        int64_t i;
        double f;
        struct {
            const char *ptr;
            size_t len;
        } str;
        struct {
            const struct veil_conf_node *const *items;
            size_t n;
        } seq;
        struct {
            const struct veil_conf_pair *pairs;
            size_t n;
        } map;
    } v;
};

/*
 * A loaded configuration: every document of one file (or buffer), and the
 * arena that holds all of it. Private members: use conf.h.
 */
struct veil_conf {
    struct veil_arena _arena;
    const char *_name;
    const struct veil_conf_node *const *_docs;
    size_t _ndocs;
};

/*
 * Limits of one load. A member left 0 takes the default (VEIL_CONF_MAX_*
 * in conf.h).
 */
struct veil_conf_limits {
    size_t max_input_bytes; /* size of the file or buffer */
    size_t max_arena_bytes; /* memory of the tree */
    size_t max_nodes;       /* nodes, map keys included, YAML aliases expanded */
    size_t max_depth;       /* nesting of sequences and maps; at most 2048 */
};

/*
 * Where a value sits in a document, as a chain from the value up to the
 * document root, kept on the caller's stack (see VEIL_CONF_KEY and
 * VEIL_CONF_IDX in conf.h). A link names a map key (`key` != NULL) or a
 * sequence index. Rendered as "spec.ports[0].port".
 */
struct veil_conf_path {
    const struct veil_conf_path *parent;
    const char *key;
    size_t index;
};

#define VEIL_CONF_ERR_FILE_MAX 1024
#define VEIL_CONF_ERR_MSG_MAX  512

/*
 * A configuration error: the file, the 1-based line and column (0 when the
 * error has no place, e.g. a file that cannot be opened) and the reason,
 * which starts with the field path when one is known. Long strings are
 * truncated. Format it with veil_conf_err_format().
 */
struct veil_conf_err {
    char file[VEIL_CONF_ERR_FILE_MAX];
    int line;
    int col;
    char msg[VEIL_CONF_ERR_MSG_MAX];
};

/*
 * Internal to src/core/conf*.c: the state of one load while the tree is
 * built. Not for use outside the conf module.
 */
struct veil_conf__build {
    struct veil_conf *conf;
    struct veil_conf_limits lim;
    struct veil_conf_err *err;
    size_t nodes; /* expanded node count so far */
    int rc;       /* the first error recorded, 0 while none */
};

#endif
