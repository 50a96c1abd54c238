/*
 * libFuzzer target for the configuration parsers: every input is parsed as
 * YAML and as JSON; errors are formatted, trees are walked through the
 * accessors and the typed field helpers, and everything is freed.
 *
 *   make fuzz && ./build-fuzz/fuzz/conf_fuzz -max_total_time=600 <dir>
 */
#include "core/conf.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "conf_fuzz: check failed: %s\n", #cond);                               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static void walk(const struct veil_conf_node *n, const struct veil_conf_path *path, size_t depth);

static void try_fields(const struct veil_conf_node *map, const struct veil_conf_path *path,
                       const char *key)
{
    struct veil_conf_err err;
    char buf[2048];
    const char *s;
    int64_t i;
    bool b;
    double f;
    const struct veil_conf_node *n;
    if (veil_conf_get_str(map, path, key, &s, &err) < 0 ||
        veil_conf_get_int_range(map, path, key, 1, 65535, &i, &err) < 0 ||
        veil_conf_get_bool(map, path, key, &b, &err) < 0 ||
        veil_conf_get_float(map, path, key, &f, &err) < 0 ||
        veil_conf_req_seq(map, path, key, &n, &err) < 0) {
        CHECK(err.line > 0 && err.msg[0] != '\0');
        veil_conf_err_format(&err, buf, sizeof(buf));
    }
    (void)veil_conf_req_map(map, path, "no such key", &n, &err);
}

static void walk_map(const struct veil_conf_node *n, const struct veil_conf_path *path,
                     size_t depth)
{
    for (size_t i = 0; i < veil_conf_len(n); i++) {
        const struct veil_conf_node *k = veil_conf_map_key(n, i);
        const char *key = veil_conf_str(k);
        CHECK(key != NULL);
        CHECK(veil_conf_map_get(n, key) == veil_conf_map_value(n, i));
        walk(k, path, depth + 1);
        walk(veil_conf_map_value(n, i), VEIL_CONF_KEY(path, key), depth + 1);
        if (i < 8)
            try_fields(n, path, key);
    }
}

static void walk(const struct veil_conf_node *n, const struct veil_conf_path *path, size_t depth)
{
    CHECK(n != NULL);
    CHECK(n->pos.line > 0 && n->pos.col > 0 && n->pos.file != NULL);
    CHECK(depth <= VEIL_CONF_MAX_DEPTH); /* aliases expanded, too */
    switch (veil_conf_node_kind(n)) {
    case VEIL_CONF_MAP:
        walk_map(n, path, depth);
        break;
    case VEIL_CONF_SEQ:
        for (size_t i = 0; i < veil_conf_len(n); i++)
            walk(veil_conf_seq_at(n, i), VEIL_CONF_IDX(path, i), depth + 1);
        break;
    case VEIL_CONF_STR:
        CHECK(strlen(n->v.str.ptr) == n->v.str.len);
        break;
    case VEIL_CONF_NONE:
        CHECK(0);
        break;
    default:
        break;
    }
}

static void one(enum veil_conf_format fmt, const char *data, size_t size)
{
    static const struct veil_conf_limits lim = {.max_nodes = 200000};
    struct veil_conf *c;
    struct veil_conf_err err;
    char buf[2048];
    int rc = veil_conf_parse(&c, fmt, data, size, "fuzz", &lim, &err);
    if (rc < 0) {
        CHECK(c == NULL);
        CHECK(err.msg[0] != '\0');
        CHECK(strncmp(err.msg, "internal error", 14) != 0);
        veil_conf_err_format(&err, buf, sizeof(buf));
        return;
    }
    CHECK(fmt == VEIL_CONF_YAML || veil_conf_ndocs(c) == 1);
    for (size_t i = 0; i < veil_conf_ndocs(c); i++)
        walk(veil_conf_doc(c, i), NULL, 0);
    veil_conf_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    one(VEIL_CONF_YAML, (const char *)data, size);
    one(VEIL_CONF_JSON, (const char *)data, size);
    return 0;
}
