#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "core/conf.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

static struct veil_conf *yaml_ok(const char *text)
{
    struct veil_conf *c = NULL;
    struct veil_conf_err err;
    int rc = veil_conf_parse_yaml(&c, text, strlen(text), "t.yaml", &err);
    if (rc != 0)
        fail_msg("unexpected error %d: %s:%d:%d: %s", rc, err.file, err.line, err.col, err.msg);
    return c;
}

static struct veil_conf *json_ok(const char *text)
{
    struct veil_conf *c = NULL;
    struct veil_conf_err err;
    int rc = veil_conf_parse_json(&c, text, strlen(text), "t.json", &err);
    if (rc != 0)
        fail_msg("unexpected error %d: %s:%d:%d: %s", rc, err.file, err.line, err.col, err.msg);
    return c;
}

/* Parses text that must fail with `want_rc`; the formatted error is in buf. */
static void parse_fails(enum veil_conf_format fmt, const char *text, size_t len,
                        const struct veil_conf_limits *lim, int want_rc, char *buf, size_t n)
{
    struct veil_conf *c = (struct veil_conf *)1;
    struct veil_conf_err err;
    const char *name = fmt == VEIL_CONF_JSON ? "t.json" : "t.yaml";
    int rc = veil_conf_parse(&c, fmt, text, len, name, lim, &err);
    veil_conf_err_format(&err, buf, n);
    if (rc != want_rc)
        fail_msg("rc %d, want %d (%s)", rc, want_rc, buf);
    assert_null(c);
}

static void yaml_fails(const char *text, int want_rc, const char *want_err)
{
    char buf[1024];
    parse_fails(VEIL_CONF_YAML, text, strlen(text), NULL, want_rc, buf, sizeof(buf));
    assert_string_equal(buf, want_err);
}

static void json_fails(const char *text, int want_rc, const char *want_err)
{
    char buf[1024];
    parse_fails(VEIL_CONF_JSON, text, strlen(text), NULL, want_rc, buf, sizeof(buf));
    assert_string_equal(buf, want_err);
}

static void assert_pos(const struct veil_conf_node *n, unsigned line, unsigned col)
{
    assert_non_null(n);
    if (n->pos.line != line || n->pos.col != col)
        fail_msg("node at %u:%u, want %u:%u", n->pos.line, n->pos.col, line, col);
}

/* The key node of `key` in `map`. */
static const struct veil_conf_node *key_of(const struct veil_conf_node *map, const char *key)
{
    for (size_t i = 0; i < veil_conf_len(map); i++)
        if (strcmp(veil_conf_str(veil_conf_map_key(map, i)), key) == 0)
            return veil_conf_map_key(map, i);
    fail_msg("no key %s", key);
    return NULL;
}

static const struct veil_conf_node *get(const struct veil_conf_node *map, const char *key)
{
    const struct veil_conf_node *v = veil_conf_map_get(map, key);
    if (v == NULL)
        fail_msg("no key %s", key);
    return v;
}

static char *repeat(const char *s, size_t times, const char *tail)
{
    size_t len = strlen(s), tlen = strlen(tail);
    char *out = malloc(len * times + tlen + 1);
    assert_non_null(out);
    for (size_t i = 0; i < times; i++)
        memcpy(out + i * len, s, len);
    memcpy(out + len * times, tail, tlen + 1);
    return out;
}

struct tmp {
    char dir[64];
    char path[8][128];
    int n;
};

static const char *tmp_file(struct tmp *t, const char *name, const char *content)
{
    if (t->dir[0] == '\0') {
        strcpy(t->dir, "/tmp/veil-conf-test-XXXXXX");
        assert_non_null(mkdtemp(t->dir));
    }
    char *p = t->path[t->n++];
    char full[sizeof(t->path[0])];
    snprintf(full, sizeof(full), "%s/%s", t->dir, name);
    memcpy(p, full, sizeof(full));
    if (content != NULL) {
        FILE *f = fopen(p, "w");
        assert_non_null(f);
        fputs(content, f);
        fclose(f);
    }
    return p;
}

static void tmp_clean(struct tmp *t)
{
    for (int i = 0; i < t->n; i++)
        unlink(t->path[i]);
    if (t->dir[0] != '\0')
        rmdir(t->dir);
}

/* ---- YAML: positions and documents ---------------------------------------- */

static const char service_yaml[] = "apiVersion: v1\n"                /* 1 */
                                   "kind: Service\n"                 /* 2 */
                                   "metadata:\n"                     /* 3 */
                                   "  name: svc-b\n"                 /* 4 */
                                   "  labels:\n"                     /* 5 */
                                   "    app: b\n"                    /* 6 */
                                   "spec:\n"                         /* 7 */
                                   "  ports:\n"                      /* 8 */
                                   "  - name: http\n"                /* 9 */
                                   "    port: 80\n"                  /* 10 */
                                   "  - {name: grpc, port: 9090}\n"; /* 11 */

static void test_yaml_positions(void **state)
{
    (void)state;
    struct veil_conf *c = yaml_ok(service_yaml);
    assert_int_equal(veil_conf_ndocs(c), 1);
    const struct veil_conf_node *doc = veil_conf_doc(c, 0);
    assert_pos(doc, 1, 1);
    assert_string_equal(doc->pos.file, "t.yaml");
    assert_pos(key_of(doc, "kind"), 2, 1);
    assert_pos(get(doc, "kind"), 2, 7);
    const struct veil_conf_node *meta = get(doc, "metadata");
    assert_pos(meta, 4, 3);
    assert_pos(key_of(meta, "name"), 4, 3);
    assert_pos(get(meta, "name"), 4, 9);
    assert_pos(key_of(get(meta, "labels"), "app"), 6, 5);
    assert_pos(get(get(meta, "labels"), "app"), 6, 10);
    const struct veil_conf_node *ports = get(get(doc, "spec"), "ports");
    assert_int_equal(veil_conf_node_kind(ports), VEIL_CONF_SEQ);
    assert_pos(ports, 9, 3);
    assert_int_equal(veil_conf_len(ports), 2);
    const struct veil_conf_node *p0 = veil_conf_seq_at(ports, 0);
    assert_pos(p0, 9, 5);
    assert_pos(key_of(p0, "port"), 10, 5);
    assert_pos(get(p0, "port"), 10, 11);
    const struct veil_conf_node *p1 = veil_conf_seq_at(ports, 1);
    assert_pos(p1, 11, 5);
    assert_pos(key_of(p1, "name"), 11, 6);
    assert_pos(get(p1, "name"), 11, 12);
    assert_pos(key_of(p1, "port"), 11, 18);
    assert_pos(get(p1, "port"), 11, 24);
    assert_int_equal(get(p1, "port")->v.i, 9090);
    veil_conf_free(c);
}

/* Columns count characters; CRLF ends a line like LF. */
static void test_yaml_positions_utf8_crlf(void **state)
{
    (void)state;
    struct veil_conf *c = yaml_ok("\xc3\xa9t\xc3\xa9: \xc3\xbc\r\nx: [\xc3\xa9, \xc3\xbc]\r\n");
    const struct veil_conf_node *doc = veil_conf_doc(c, 0);
    assert_pos(get(doc, "\xc3\xa9t\xc3\xa9"), 1, 6);
    assert_pos(key_of(doc, "x"), 2, 1);
    assert_pos(veil_conf_seq_at(get(doc, "x"), 0), 2, 5);
    assert_pos(veil_conf_seq_at(get(doc, "x"), 1), 2, 8);
    veil_conf_free(c);
}

static void test_yaml_multi_doc(void **state)
{
    (void)state;
    struct veil_conf *c = yaml_ok("# a comment\n"
                                  "---\n"
                                  "kind: Namespace\n"
                                  "metadata: {name: demo}\n"
                                  "---\n"
                                  "kind: ServiceAccount\n"
                                  "---\n"
                                  "---\n"
                                  "- 1\n"
                                  "- 2\n"
                                  "...\n");
    assert_int_equal(veil_conf_ndocs(c), 4);
    assert_string_equal(veil_conf_str(get(veil_conf_doc(c, 0), "kind")), "Namespace");
    assert_pos(veil_conf_doc(c, 0), 3, 1);
    assert_string_equal(veil_conf_str(get(veil_conf_doc(c, 1), "kind")), "ServiceAccount");
    assert_pos(get(veil_conf_doc(c, 1), "kind"), 6, 7);
    assert_int_equal(veil_conf_node_kind(veil_conf_doc(c, 2)), VEIL_CONF_NULL);
    assert_int_equal(veil_conf_len(veil_conf_doc(c, 3)), 2);
    assert_pos(veil_conf_doc(c, 3), 9, 1);
    assert_null(veil_conf_doc(c, 4));
    veil_conf_free(c);

    c = yaml_ok("");
    assert_int_equal(veil_conf_ndocs(c), 0);
    veil_conf_free(c);
    c = yaml_ok("# nothing but a comment\n");
    assert_int_equal(veil_conf_ndocs(c), 0);
    veil_conf_free(c);
    assert_int_equal(veil_conf_parse(&c, VEIL_CONF_YAML, NULL, 0, NULL, NULL, NULL), 0);
    assert_string_equal(veil_conf_name(c), "<input>");
    veil_conf_free(c);

    /* many documents after one with many anchors */
    size_t size = 200 * 16 + 3000 * 16, len = 0;
    char *text = malloc(size);
    for (int i = 0; i < 200; i++)
        len += (size_t)snprintf(text + len, size - len, "a%d: &a%d %d\n", i, i, i);
    for (int i = 0; i < 3000; i++)
        len += (size_t)snprintf(text + len, size - len, "---\n&b [*b]\n");
    char buf[256];
    parse_fails(VEIL_CONF_YAML, text, len, NULL, -EINVAL, buf, sizeof(buf));
    assert_string_equal(buf, "t.yaml:202:5: alias *b is inside its own anchor");
    len = 0;
    for (int i = 0; i < 200; i++)
        len += (size_t)snprintf(text + len, size - len, "a%d: &a%d %d\n", i, i, i);
    for (int i = 0; i < 3000; i++)
        len += (size_t)snprintf(text + len, size - len, "--- &b x%d\n", i);
    c = yaml_ok(text);
    assert_int_equal(veil_conf_ndocs(c), 3001);
    veil_conf_free(c);
    free(text);
}

/* ---- YAML: scalars ------------------------------------------------------ */

struct scalar_case {
    const char *text;
    enum veil_conf_kind kind;
    int64_t i;
    double f;
    const char *s;
};

static void test_yaml_scalar_types(void **state)
{
    (void)state;
    static const struct scalar_case cases[] = {
        {"~", VEIL_CONF_NULL, 0, 0, NULL},
        {"null", VEIL_CONF_NULL, 0, 0, NULL},
        {"Null", VEIL_CONF_NULL, 0, 0, NULL},
        {"NULL", VEIL_CONF_NULL, 0, 0, NULL},
        {"", VEIL_CONF_NULL, 0, 0, NULL},
        {"true", VEIL_CONF_BOOL, 1, 0, NULL},
        {"True", VEIL_CONF_BOOL, 1, 0, NULL},
        {"TRUE", VEIL_CONF_BOOL, 1, 0, NULL},
        {"false", VEIL_CONF_BOOL, 0, 0, NULL},
        {"FALSE", VEIL_CONF_BOOL, 0, 0, NULL},
        {"0", VEIL_CONF_INT, 0, 0, NULL},
        {"-42", VEIL_CONF_INT, -42, 0, NULL},
        {"+7", VEIL_CONF_INT, 7, 0, NULL},
        {"007", VEIL_CONF_INT, 7, 0, NULL},
        {"0x1F", VEIL_CONF_INT, 31, 0, NULL},
        {"0o17", VEIL_CONF_INT, 15, 0, NULL},
        {"9223372036854775807", VEIL_CONF_INT, INT64_MAX, 0, NULL},
        {"-9223372036854775808", VEIL_CONF_INT, INT64_MIN, 0, NULL},
        {"0x7FFFFFFFFFFFFFFF", VEIL_CONF_INT, INT64_MAX, 0, NULL},
        {"1.5", VEIL_CONF_FLOAT, 0, 1.5, NULL},
        {"-1.5e3", VEIL_CONF_FLOAT, 0, -1500, NULL},
        {".5", VEIL_CONF_FLOAT, 0, 0.5, NULL},
        {"5.", VEIL_CONF_FLOAT, 0, 5, NULL},
        {"1e3", VEIL_CONF_FLOAT, 0, 1000, NULL},
        {"1E-2", VEIL_CONF_FLOAT, 0, 0.01, NULL},
        {".inf", VEIL_CONF_FLOAT, 0, INFINITY, NULL},
        {"-.Inf", VEIL_CONF_FLOAT, 0, -INFINITY, NULL},
        {"+.INF", VEIL_CONF_FLOAT, 0, INFINITY, NULL},
        {"yes", VEIL_CONF_STR, 0, 0, "yes"},
        {"on", VEIL_CONF_STR, 0, 0, "on"},
        {"n", VEIL_CONF_STR, 0, 0, "n"},
        {"0x", VEIL_CONF_STR, 0, 0, "0x"},
        {"0o8", VEIL_CONF_STR, 0, 0, "0o8"},
        {"-0x1", VEIL_CONF_STR, 0, 0, "-0x1"},
        {"1_000", VEIL_CONF_STR, 0, 0, "1_000"},
        {"1.2.3", VEIL_CONF_STR, 0, 0, "1.2.3"},
        {"e3", VEIL_CONF_STR, 0, 0, "e3"},
        {".", VEIL_CONF_STR, 0, 0, "."},
        {"10.0.0.1", VEIL_CONF_STR, 0, 0, "10.0.0.1"},
        {"'80'", VEIL_CONF_STR, 0, 0, "80"},
        {"\"true\"", VEIL_CONF_STR, 0, 0, "true"},
        {"\"~\"", VEIL_CONF_STR, 0, 0, "~"},
        {"''", VEIL_CONF_STR, 0, 0, ""},
        {"|\n  line\n", VEIL_CONF_STR, 0, 0, "line\n"},
        {"\"tab\\there\"", VEIL_CONF_STR, 0, 0, "tab\there"},
        {"!!str 80", VEIL_CONF_STR, 0, 0, "80"},
        {"! 42", VEIL_CONF_STR, 0, 0, "42"},
        {"!!int \"42\"", VEIL_CONF_INT, 42, 0, NULL},
        {"!!float 1", VEIL_CONF_FLOAT, 0, 1, NULL},
        {"!!bool 'true'", VEIL_CONF_BOOL, 1, 0, NULL},
        {"!!null ''", VEIL_CONF_NULL, 0, 0, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct scalar_case *k = &cases[i];
        char doc[128];
        snprintf(doc, sizeof(doc), "v: %s", k->text);
        struct veil_conf *c = yaml_ok(doc);
        const struct veil_conf_node *v = get(veil_conf_doc(c, 0), "v");
        if (v->kind != k->kind)
            fail_msg("%s: kind %s", k->text, veil_conf_kind_name(v->kind));
        bool b;
        int64_t iv;
        double f;
        const char *s;
        switch (k->kind) {
        case VEIL_CONF_BOOL:
            assert_int_equal(veil_conf_as_bool(v, &b), 0);
            assert_int_equal(b, k->i);
            break;
        case VEIL_CONF_INT:
            assert_int_equal(veil_conf_as_int(v, &iv), 0);
            assert_true(iv == k->i);
            break;
        case VEIL_CONF_FLOAT:
            assert_int_equal(veil_conf_as_float(v, &f), 0);
            assert_true(f == k->f);
            break;
        case VEIL_CONF_STR:
            assert_int_equal(veil_conf_as_str(v, &s, NULL), 0);
            assert_string_equal(s, k->s);
            break;
        default:
            break;
        }
        veil_conf_free(c);
    }
    struct veil_conf *c = yaml_ok("v: .NaN");
    assert_true(isnan(get(veil_conf_doc(c, 0), "v")->v.f));
    veil_conf_free(c);
}

static void test_yaml_bad_scalars(void **state)
{
    (void)state;
    yaml_fails("a: 1\nv: 9223372036854775808\n", -EINVAL,
               "t.yaml:2:4: integer 9223372036854775808 does not fit in 64 bits");
    yaml_fails("v: -9223372036854775809", -EINVAL,
               "t.yaml:1:4: integer -9223372036854775809 does not fit in 64 bits");
    yaml_fails("v: 0xFFFFFFFFFFFFFFFF", -EINVAL,
               "t.yaml:1:4: integer 0xFFFFFFFFFFFFFFFF does not fit in 64 bits");
    yaml_fails("v: 1e400", -EINVAL, "t.yaml:1:4: number 1e400 is out of range");
    yaml_fails("v: !!int abc", -EINVAL, "t.yaml:1:4: \"abc\" is not a valid !!int");
    yaml_fails("v: !!bool yes", -EINVAL, "t.yaml:1:4: \"yes\" is not a valid !!bool");
    yaml_fails("v: !foo bar", -EINVAL, "t.yaml:1:4: unsupported tag \"!foo\" on a scalar");
    yaml_fails("v: !!map x", -EINVAL, "t.yaml:1:4: unsupported tag \"!!map\" on a scalar");
    yaml_fails("v: !!seq {a: 1}", -EINVAL, "t.yaml:1:4: unsupported tag \"!!seq\" on a map");
    yaml_fails("v: !!set {a: 1}", -EINVAL, "t.yaml:1:4: unsupported tag \"!!set\" on a map");
    yaml_fails("a:\n  v: \"x\\0y\"", -EINVAL, "t.yaml:2:6: a string may not contain a NUL");
}

/* Keys are strings whatever they look like, as in Kubernetes. */
static void test_yaml_keys_are_strings(void **state)
{
    (void)state;
    struct veil_conf *c = yaml_ok("80: http\ntrue: x\n~: y\n1.5: z\n<<: merge-is-a-plain-key\n");
    const struct veil_conf_node *doc = veil_conf_doc(c, 0);
    assert_string_equal(veil_conf_str(get(doc, "80")), "http");
    assert_string_equal(veil_conf_str(get(doc, "true")), "x");
    assert_string_equal(veil_conf_str(get(doc, "~")), "y");
    assert_string_equal(veil_conf_str(get(doc, "1.5")), "z");
    assert_non_null(get(doc, "<<"));
    for (size_t i = 0; i < veil_conf_len(doc); i++)
        assert_int_equal(veil_conf_node_kind(veil_conf_map_key(doc, i)), VEIL_CONF_STR);
    veil_conf_free(c);

    yaml_fails("? [a, b]\n: c\n", -EINVAL, "t.yaml:1:3: map key must be a string, not a sequence");
    yaml_fails("x: {{a: 1}: 2}", -EINVAL, "t.yaml:1:5: map key must be a string, not a map");
    yaml_fails("!!int 5: x", -EINVAL, "t.yaml:1:1: map key must be a string, not tagged \"!!int\"");
}

static void test_yaml_duplicate_keys(void **state)
{
    (void)state;
    yaml_fails("a: 1\nb: 2\na: 3\n", -EINVAL, "t.yaml:3:1: duplicate key \"a\" (first at 1:1)");
    yaml_fails("m: {x: 1, y: 2, x: 3}", -EINVAL, "t.yaml:1:17: duplicate key \"x\" (first at 1:5)");
    yaml_fails("1: a\n\"1\": b\n", -EINVAL, "t.yaml:2:1: duplicate key \"1\" (first at 1:1)");
    /* a big map takes the hashed path */
    char big[4096] = "";
    for (int i = 0; i < 40; i++)
        snprintf(big + strlen(big), sizeof(big) - strlen(big), "k%d: %d\n", i, i);
    strcat(big, "k17: again\n");
    yaml_fails(big, -EINVAL, "t.yaml:41:1: duplicate key \"k17\" (first at 18:1)");
    big[strlen(big) - strlen("k17: again\n")] = '\0';
    struct veil_conf *c = yaml_ok(big);
    assert_int_equal(veil_conf_len(veil_conf_doc(c, 0)), 40);
    veil_conf_free(c);
    /* the same key in two maps is fine */
    c = yaml_ok("a: {x: 1}\nb: {x: 2}\n");
    veil_conf_free(c);
}

/* ---- YAML: anchors, aliases, limits ---------------------------------------- */

static void test_yaml_alias_is_shared(void **state)
{
    (void)state;
    struct veil_conf *c = yaml_ok("base: &b {cpu: 1, mem: 2}\n"
                                  "x: *b\n"
                                  "y: [*b, *b]\n"
                                  "name: &n hello\n"
                                  "*n : world\n"
                                  "---\n"
                                  "b: &b other\n"
                                  "c: *b\n");
    const struct veil_conf_node *doc = veil_conf_doc(c, 0);
    const struct veil_conf_node *base = get(doc, "base");
    assert_ptr_equal(get(doc, "x"), base);
    assert_ptr_equal(veil_conf_seq_at(get(doc, "y"), 1), base);
    assert_pos(get(doc, "x"), 1, 7); /* an alias reports its anchor's place */
    assert_string_equal(veil_conf_str(get(doc, "hello")), "world");
    /* anchors are per document and may be redefined */
    assert_string_equal(veil_conf_str(get(veil_conf_doc(c, 1), "c")), "other");
    veil_conf_free(c);
}

static void test_yaml_alias_errors(void **state)
{
    (void)state;
    yaml_fails("a: *x", -EINVAL, "t.yaml:1:4: undefined alias *x");
    yaml_fails("a: &x 1\n---\nb: *x\n", -EINVAL, "t.yaml:3:4: undefined alias *x");
    yaml_fails("a: &x [1, *x]", -EINVAL, "t.yaml:1:11: alias *x is inside its own anchor");
    yaml_fails("a: &m {k: v}\n? *m\n: 1\n", -EINVAL,
               "t.yaml:2:3: map key must be a string, not a map");
    yaml_fails("a: &x 1\n*x : 2\n", -EINVAL,
               "t.yaml:2:1: map key must be a string, not an integer");
}

static void test_yaml_billion_laughs(void **state)
{
    (void)state;
    const char *lol =
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
        "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
        "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
        "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n"
        "e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n"
        "f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n"
        "g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n"
        "h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n"
        "i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n";
    /* f holds 597871 nodes, a to f 672615 with their keys: *f passes 1,000,000 */
    yaml_fails(lol, -E2BIG, "t.yaml:7:8: more than 1000000 nodes (YAML aliases counted expanded)");

    char buf[512];
    struct veil_conf_limits lim = {.max_nodes = 500};
    parse_fails(VEIL_CONF_YAML, lol, strlen(lol), &lim, -E2BIG, buf, sizeof(buf));
    assert_string_equal(buf, "t.yaml:3:20: more than 500 nodes (YAML aliases counted expanded)");

    /* under the cap, aliases are fine */
    struct veil_conf *c = yaml_ok("a: &a [1, 2, 3]\nb: &b [*a, *a, *a]\nc: [*b, *b, *b]\n");
    const struct veil_conf_node *cc = get(veil_conf_doc(c, 0), "c");
    assert_int_equal(veil_conf_len(veil_conf_seq_at(veil_conf_seq_at(cc, 2), 2)), 3);
    veil_conf_free(c);
}

static void test_yaml_depth_cap(void **state)
{
    (void)state;
    char *ok = repeat("[", 256, "");
    char *ok_full = malloc(1024);
    snprintf(ok_full, 1024, "%s", ok);
    free(ok);
    char *closers = repeat("]", 256, "");
    char *doc = malloc(strlen(ok_full) + strlen(closers) + 1);
    strcpy(doc, ok_full);
    strcat(doc, closers);
    struct veil_conf *c = yaml_ok(doc);
    veil_conf_free(c);
    free(doc);
    free(ok_full);
    free(closers);

    char *deep = repeat("[", 257, "]");
    yaml_fails(deep, -E2BIG, "t.yaml:1:257: nesting deeper than 256 levels");
    free(deep);

    /* block style */
    size_t size = 300 * 304, len = 0;
    char *block = malloc(size);
    for (int i = 0; i < 300; i++)
        len += (size_t)snprintf(block + len, size - len, "%*sa:\n", i, "");
    yaml_fails(block, -E2BIG, "t.yaml:257:257: nesting deeper than 256 levels");
    free(block);

    /* an alias nests its anchor's depth where it is used */
    char *anchored = repeat("[", 200, "");
    char *inner = repeat("]", 200, "");
    char *user = repeat("[", 100, "*x");
    char *tail = repeat("]", 100, "\n");
    size_t n = 8 + strlen(anchored) * 2 + strlen(user) * 2 + 32;
    char *text = malloc(n);
    snprintf(text, n, "a: &x %s%s\nb: %s%s", anchored, inner, user, tail);
    yaml_fails(text, -E2BIG, "t.yaml:2:104: nesting deeper than 256 levels (alias *x expanded)");
    free(anchored);
    free(inner);
    free(user);
    free(tail);
    free(text);
}

static void test_yaml_syntax_errors(void **state)
{
    (void)state;
    yaml_fails("a: 1\n  b: 2\n", -EINVAL,
               "t.yaml:2:4: mapping values are not allowed in this context");
    yaml_fails("a: 1\nb: [1, 2\nc: 3\n", -EINVAL,
               "t.yaml:3:2: did not find expected ',' or ']' (while parsing a flow sequence at "
               "2:4)");
    yaml_fails("a: \"abc\n", -EINVAL,
               "t.yaml:2:1: found unexpected end of stream (while scanning a quoted scalar at "
               "1:4)");
    yaml_fails("a:\n\t- b\n", -EINVAL,
               "t.yaml:2:1: found character that cannot start any token (while scanning for the "
               "next token at 2:1)");
    yaml_fails("a: \xff\n", -EINVAL, "t.yaml:1:4: invalid leading UTF-8 octet (byte 0xff)");
    yaml_fails("- a\nb: c\n", -EINVAL,
               "t.yaml:2:1: did not find expected '-' indicator (while parsing a block "
               "collection at 1:1)");
}

/* ---- JSON ----------------------------------------------------------------- */

static const char service_json[] =
    "{\n"
    "  \"kind\": \"Service\",\n"
    "  \"metadata\": {\"name\": \"a\\\"}{[]\", \"labels\": {\"\xc3\xa9\": \"\xc3\xbc\", \"k\": "
    "\"\\u00e9x\"}},\n"
    "  \"spec\": {\"ports\": [{\"port\": 80}, {\"port\": 8080, \"x\": [true, false, null, 1.5, "
    "-2]}]}\n"
    "}\n";

static void test_json_positions(void **state)
{
    (void)state;
    struct veil_conf *c = json_ok(service_json);
    assert_int_equal(veil_conf_ndocs(c), 1);
    const struct veil_conf_node *doc = veil_conf_doc(c, 0);
    assert_pos(doc, 1, 1);
    assert_pos(key_of(doc, "kind"), 2, 3);
    assert_pos(get(doc, "kind"), 2, 11);
    const struct veil_conf_node *meta = get(doc, "metadata");
    assert_pos(key_of(doc, "metadata"), 3, 3);
    assert_pos(meta, 3, 15);
    assert_pos(key_of(meta, "name"), 3, 16);
    assert_pos(get(meta, "name"), 3, 24);
    assert_string_equal(veil_conf_str(get(meta, "name")), "a\"}{[]");
    const struct veil_conf_node *labels = get(meta, "labels");
    assert_pos(key_of(meta, "labels"), 3, 35);
    assert_pos(labels, 3, 45);
    assert_pos(key_of(labels, "\xc3\xa9"), 3, 46);
    assert_pos(get(labels, "\xc3\xa9"), 3, 51);
    assert_pos(key_of(labels, "k"), 3, 56);
    assert_pos(get(labels, "k"), 3, 61);
    assert_string_equal(veil_conf_str(get(labels, "k")), "\xc3\xa9x");
    const struct veil_conf_node *ports = get(get(doc, "spec"), "ports");
    assert_pos(ports, 4, 21);
    assert_pos(veil_conf_seq_at(ports, 0), 4, 22);
    assert_pos(key_of(veil_conf_seq_at(ports, 0), "port"), 4, 23);
    assert_pos(get(veil_conf_seq_at(ports, 0), "port"), 4, 31);
    const struct veil_conf_node *p1 = veil_conf_seq_at(ports, 1);
    assert_pos(p1, 4, 36);
    assert_pos(get(p1, "port"), 4, 45);
    assert_int_equal(get(p1, "port")->v.i, 8080);
    assert_pos(key_of(p1, "x"), 4, 51);
    const struct veil_conf_node *x = get(p1, "x");
    assert_pos(x, 4, 56);
    static const unsigned cols[] = {57, 63, 70, 76, 81};
    static const enum veil_conf_kind kinds[] = {VEIL_CONF_BOOL, VEIL_CONF_BOOL, VEIL_CONF_NULL,
                                                VEIL_CONF_FLOAT, VEIL_CONF_INT};
    for (size_t i = 0; i < 5; i++) {
        assert_pos(veil_conf_seq_at(x, i), 4, cols[i]);
        assert_int_equal(veil_conf_node_kind(veil_conf_seq_at(x, i)), kinds[i]);
    }
    assert_int_equal(veil_conf_seq_at(x, 4)->v.i, -2);
    veil_conf_free(c);
}

/* Key order is the file's, not sorted, so positions pair up with keys. */
static void test_json_order_and_layout(void **state)
{
    (void)state;
    struct veil_conf *c = json_ok("{\"z\": 1, \"a\": {\"y\": [], \"b\": {}},\r\n"
                                  "\t\"m\": \"multi\\nline \\\\ \\\"q\\\" \\/ \\ud83d\\ude00\",\n"
                                  "  \"e\": [[], [[1]], {\"k\": [2]}]}");
    const struct veil_conf_node *doc = veil_conf_doc(c, 0);
    static const char *const keys[] = {"z", "a", "m", "e"};
    for (size_t i = 0; i < 4; i++)
        assert_string_equal(veil_conf_str(veil_conf_map_key(doc, i)), keys[i]);
    assert_pos(key_of(doc, "z"), 1, 2);
    assert_pos(get(doc, "a"), 1, 15);
    assert_pos(get(get(doc, "a"), "y"), 1, 21);
    assert_pos(get(get(doc, "a"), "b"), 1, 30);
    assert_pos(key_of(doc, "m"), 2, 2);
    assert_pos(get(doc, "m"), 2, 7);
    assert_string_equal(veil_conf_str(get(doc, "m")), "multi\nline \\ \"q\" / \xf0\x9f\x98\x80");
    const struct veil_conf_node *e = get(doc, "e");
    assert_pos(e, 3, 8);
    assert_pos(veil_conf_seq_at(e, 0), 3, 9);
    assert_pos(veil_conf_seq_at(veil_conf_seq_at(veil_conf_seq_at(e, 1), 0), 0), 3, 15);
    assert_pos(key_of(veil_conf_seq_at(e, 2), "k"), 3, 21);
    assert_pos(get(veil_conf_seq_at(e, 2), "k"), 3, 26);
    assert_pos(veil_conf_seq_at(get(veil_conf_seq_at(e, 2), "k"), 0), 3, 27);
    veil_conf_free(c);

    c = json_ok("  \n 42 ");
    assert_int_equal(veil_conf_doc(c, 0)->v.i, 42);
    assert_pos(veil_conf_doc(c, 0), 2, 2);
    veil_conf_free(c);
}

static void test_json_errors(void **state)
{
    (void)state;
    json_fails("{\"a\": 1,\n \"b\": 2,\n  \"a\": 3}", -EINVAL,
               "t.json:3:3: duplicate object key near '\"a\"'");
    json_fails("[1,\n 99999999999999999999]", -EINVAL,
               "t.json:2:2: too big integer near '99999999999999999999'");
    json_fails("[1,\n -99999999999999999999]", -EINVAL, "t.json:2:2: too big negative integer");
    json_fails("[1e400]", -EINVAL, "t.json:1:2: real number overflow near '1e400'");
    json_fails("{\"a\": 1,\n}", -EINVAL, "t.json:2:1: string or '}' expected near '}'");
    json_fails("{\n  \"kind\": \"Service\"\n  \"spec\": {}\n}\n", -EINVAL,
               "t.json:3:3: '}' expected near '\"spec\"'");
    json_fails("{\"a\":\n tru}", -EINVAL, "t.json:2:2: invalid token near 'tru'");
    json_fails("{\"a\": 1", -EINVAL, "t.json:1:8: '}' expected near end of file");
    json_fails("{\"a\": 1,\n  ", -EINVAL, "t.json:2:3: string or '}' expected near end of file");
    json_fails("[1, tru", -EINVAL, "t.json:1:5: invalid token near 'tru'");
    json_fails("[\"abc", -EINVAL, "t.json:1:2: premature end of input near '\"abc'");
    json_fails("", -EINVAL, "t.json:1:1: unexpected token near end of file");
    json_fails("[\"\\u0000\"]", -EINVAL,
               "t.json:1:2: \\u0000 is not allowed without JSON_ALLOW_NUL near '\"\\u0000\"'");
    json_fails("[1] [2]", -EINVAL, "t.json:1:5: end of file expected near '['");
    json_fails("[\"\xff\"]", -EINVAL, "t.json:1:2: unable to decode byte 0xff near '\"'");
    char buf[256];
    parse_fails(VEIL_CONF_JSON, "[1,\n 2\0]", 8, NULL, -EINVAL, buf, sizeof(buf));
    assert_string_equal(buf, "t.json:2:3: NUL byte in JSON text");
}

static void test_json_limits(void **state)
{
    (void)state;
    char *ok = repeat("[", 256, "");
    char *close = repeat("]", 256, "");
    char *doc = malloc(600);
    snprintf(doc, 600, "%s%s", ok, close);
    struct veil_conf *c = json_ok(doc);
    veil_conf_free(c);
    free(ok);
    free(close);
    free(doc);

    char *deep = repeat("[", 257, "]");
    json_fails(deep, -E2BIG, "t.json:1:257: nesting deeper than 256 levels");
    free(deep);
    deep = repeat("{\"a\":", 300, "1}");
    json_fails(deep, -E2BIG, "t.json:1:1281: nesting deeper than 256 levels");
    free(deep);

    char buf[512];
    const char *many = "[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]";
    struct veil_conf_limits lim = {.max_nodes = 8};
    parse_fails(VEIL_CONF_JSON, many, strlen(many), &lim, -E2BIG, buf, sizeof(buf));
    assert_string_equal(buf, "t.json:1:23: more than 8 nodes (YAML aliases counted expanded)");
    lim.max_nodes = 11;
    assert_int_equal(veil_conf_parse(&c, VEIL_CONF_JSON, many, strlen(many), "t", &lim, NULL), 0);
    veil_conf_free(c);
}

/* ---- limits shared by both ------------------------------------------------- */

static void test_input_and_memory_limits(void **state)
{
    (void)state;
    char buf[512];
    struct veil_conf_limits lim = {.max_input_bytes = 10};
    parse_fails(VEIL_CONF_YAML, "a: 12345678", 11, &lim, -E2BIG, buf, sizeof(buf));
    assert_string_equal(buf, "t.yaml: input of 11 bytes is larger than the limit of 10 bytes");

    char *big = repeat("x", 20000, "");
    char *text = malloc(20100);
    snprintf(text, 20100, "a: %s\n", big);
    struct veil_conf_limits small = {.max_arena_bytes = 16384};
    parse_fails(VEIL_CONF_YAML, text, strlen(text), &small, -E2BIG, buf, sizeof(buf));
    assert_string_equal(buf, "t.yaml: configuration needs more than 16384 bytes of memory");
    snprintf(text, 20100, "{\"a\": \"%s\"}", big);
    parse_fails(VEIL_CONF_JSON, text, strlen(text), &small, -E2BIG, buf, sizeof(buf));
    assert_string_equal(buf, "t.json: configuration needs more than 16384 bytes of memory");
    free(big);
    free(text);
}

/* ---- files ---------------------------------------------------------------- */

/* The requirement: a broken file is reported with path, line, reason. */
static void test_broken_yaml_file_is_reported(void **state)
{
    (void)state;
    struct tmp t = {0};
    const char *path = tmp_file(&t, "svc.yaml",
                                "apiVersion: v1\n"
                                "kind: Service\n"
                                "metadata:\n"
                                "  name: svc-b\n"
                                "   namespace: demo\n");
    struct veil_conf *c = (struct veil_conf *)1;
    struct veil_conf_err err;
    assert_int_equal(veil_conf_load_file(&c, path, &err), -EINVAL);
    assert_null(c);
    char want[256], got[1024];
    snprintf(want, sizeof(want), "%s:5:", path);
    veil_conf_err_format(&err, got, sizeof(got));
    assert_string_equal(err.file, path);
    assert_int_equal(err.line, 5);
    assert_true(strncmp(got, want, strlen(want)) == 0);
    const char *reason = strstr(got + strlen(want), ": ");
    assert_non_null(reason);
    assert_true(strlen(reason + 2) > 0);
    snprintf(want, sizeof(want), "%s:5:13: mapping values are not allowed in this context", path);
    assert_string_equal(got, want);
    tmp_clean(&t);
}

static void test_broken_json_file_is_reported(void **state)
{
    (void)state;
    struct tmp t = {0};
    const char *path = tmp_file(&t, "svc.json",
                                "{\n"
                                "  \"apiVersion\": \"v1\",\n"
                                "  \"kind\": \"Service\",\n"
                                "  \"metadata\": {\"name\": \"svc-b\",}\n"
                                "}\n");
    struct veil_conf *c = (struct veil_conf *)1;
    struct veil_conf_err err;
    assert_int_equal(veil_conf_load_file(&c, path, &err), -EINVAL);
    assert_null(c);
    char want[256], got[1024];
    snprintf(want, sizeof(want), "%s:4:", path);
    veil_conf_err_format(&err, got, sizeof(got));
    assert_int_equal(err.line, 4);
    assert_true(strncmp(got, want, strlen(want)) == 0);
    assert_true(strlen(err.msg) > 0);
    snprintf(want, sizeof(want), "%s:4:32: string or '}' expected near '}'", path);
    assert_string_equal(got, want);
    tmp_clean(&t);
}

static void test_load_file_ok_and_by_extension(void **state)
{
    (void)state;
    struct tmp t = {0};
    struct veil_conf *c;
    struct veil_conf_err err;
    const char *y = tmp_file(&t, "svc.yaml", service_yaml);
    assert_int_equal(veil_conf_load_file(&c, y, &err), 0);
    assert_string_equal(veil_conf_name(c), y);
    assert_string_equal(veil_conf_doc(c, 0)->pos.file, y);
    assert_int_equal(
        get(get(get(veil_conf_doc(c, 0), "spec"), "ports")->v.seq.items[0], "port")->v.i, 80);
    veil_conf_free(c);
    /* YAML in a .json file is parsed as JSON, and refused */
    const char *j = tmp_file(&t, "x.JSON", "a: 1\n");
    assert_int_equal(veil_conf_load_file(&c, j, &err), -EINVAL);
    assert_int_equal(err.line, 1);
    const char *j2 = tmp_file(&t, "svc.json", service_json);
    assert_int_equal(veil_conf_load_file(&c, j2, &err), 0);
    assert_pos(get(veil_conf_doc(c, 0), "kind"), 2, 11);
    veil_conf_free(c);
    const char *empty = tmp_file(&t, "empty.yaml", "");
    assert_int_equal(veil_conf_load_file(&c, empty, &err), 0);
    assert_int_equal(veil_conf_ndocs(c), 0);
    veil_conf_free(c);
    tmp_clean(&t);
}

static void test_unreadable_files(void **state)
{
    (void)state;
    struct tmp t = {0};
    struct veil_conf *c = (struct veil_conf *)1;
    struct veil_conf_err err;
    char want[256], got[1024];
    const char *missing = tmp_file(&t, "missing.yaml", NULL);
    assert_int_equal(veil_conf_load_file(&c, missing, &err), -ENOENT);
    assert_null(c);
    veil_conf_err_format(&err, got, sizeof(got));
    snprintf(want, sizeof(want), "%s: No such file or directory", missing);
    assert_string_equal(got, want);
    assert_int_equal(err.line, 0);

    assert_int_equal(veil_conf_load_file(&c, t.dir, &err), -EISDIR);
    veil_conf_err_format(&err, got, sizeof(got));
    snprintf(want, sizeof(want), "%s: Is a directory", t.dir);
    assert_string_equal(got, want);

    /* a sparse 17 MiB file: refused before it is read */
    const char *big = tmp_file(&t, "big.yaml", "");
    int fd = open(big, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 17 << 20), 0);
    close(fd);
    assert_int_equal(veil_conf_load_file(&c, big, &err), -E2BIG);
    veil_conf_err_format(&err, got, sizeof(got));
    snprintf(want, sizeof(want), "%s: file is larger than the limit of 16777216 bytes", big);
    assert_string_equal(got, want);
    tmp_clean(&t);
}

/* ---- typed accessors --------------------------------------------------------- */

static const char svc_bad[] = "apiVersion: v1\n"                /* 1 */
                              "kind: Service\n"                 /* 2 */
                              "metadata:\n"                     /* 3 */
                              "  name: svc-b\n"                 /* 4 */
                              "  labels:\n"                     /* 5 */
                              "    app.kubernetes.io/name: b\n" /* 6 */
                              "spec:\n"                         /* 7 */
                              "  selector: ~\n"                 /* 8 */
                              "  ports:\n"                      /* 9 */
                              "  - name: http\n"                /* 10 */
                              "    port: eighty\n"              /* 11 */
                              "  - port: 70000\n"               /* 12 */
                              "    weight: 1\n"                 /* 13 */
                              "    enabled: \"yes\"\n"          /* 14 */
                              "  - 8080\n";                     /* 15 */

static void err_is(const struct veil_conf_err *err, const char *want)
{
    char got[1024];
    veil_conf_err_format(err, got, sizeof(got));
    assert_string_equal(got, want);
}

static void test_typed_fields(void **state)
{
    (void)state;
    struct veil_conf *c;
    struct veil_conf_err err;
    assert_int_equal(veil_conf_parse_yaml(&c, svc_bad, strlen(svc_bad), "svc.yaml", &err), 0);
    const struct veil_conf_node *doc = veil_conf_doc(c, 0), *meta, *spec, *ports, *sel, *labels;
    const char *s = "unset";
    int64_t i = -1;
    bool b = false;
    double f = 0;

    assert_int_equal(veil_conf_req_str(doc, NULL, "kind", &s, &err), 0);
    assert_string_equal(s, "Service");
    assert_int_equal(veil_conf_req_map(doc, NULL, "metadata", &meta, &err), 0);
    const struct veil_conf_path *pmeta = VEIL_CONF_KEY(NULL, "metadata");
    assert_int_equal(veil_conf_get_str(meta, pmeta, "name", &s, &err), 1);
    assert_string_equal(s, "svc-b");
    s = "default";
    assert_int_equal(veil_conf_get_str(meta, pmeta, "namespace", &s, &err), 0);
    assert_string_equal(s, "default");
    assert_int_equal(veil_conf_req_str(meta, pmeta, "uid", &s, &err), -EINVAL);
    err_is(&err, "svc.yaml:4:3: metadata.uid: required field is missing");
    assert_int_equal(veil_conf_req_str(doc, NULL, "nope", &s, &err), -EINVAL);
    err_is(&err, "svc.yaml:1:1: nope: required field is missing");

    assert_int_equal(veil_conf_get_map(meta, pmeta, "labels", &labels, &err), 1);
    const struct veil_conf_path *plabels = VEIL_CONF_KEY(pmeta, "labels");
    assert_int_equal(veil_conf_req_int(labels, plabels, "app.kubernetes.io/name", &i, &err),
                     -EINVAL);
    err_is(&err, "svc.yaml:6:29: metadata.labels[app.kubernetes.io/name]: expected an integer, "
                 "got a string \"b\"");

    assert_int_equal(veil_conf_req_map(doc, NULL, "spec", &spec, &err), 0);
    const struct veil_conf_path *pspec = VEIL_CONF_KEY(NULL, "spec");
    sel = (const struct veil_conf_node *)1;
    assert_int_equal(veil_conf_get_map(spec, pspec, "selector", &sel, &err), 0);
    assert_ptr_equal(sel, (const struct veil_conf_node *)1);
    assert_int_equal(veil_conf_req_map(spec, pspec, "selector", &sel, &err), -EINVAL);
    err_is(&err, "svc.yaml:8:13: spec.selector: expected a map, got null");

    assert_int_equal(veil_conf_req_seq(spec, pspec, "ports", &ports, &err), 0);
    const struct veil_conf_path *pports = VEIL_CONF_KEY(pspec, "ports");
    const struct veil_conf_node *p0 = veil_conf_seq_at(ports, 0);
    const struct veil_conf_node *p1 = veil_conf_seq_at(ports, 1);
    assert_int_equal(veil_conf_req_int(p0, VEIL_CONF_IDX(pports, 0), "port", &i, &err), -EINVAL);
    err_is(&err, "svc.yaml:11:11: spec.ports[0].port: expected an integer, got a string "
                 "\"eighty\"");
    assert_int_equal(i, -1);
    assert_int_equal(veil_conf_get_int(p1, VEIL_CONF_IDX(pports, 1), "port", &i, &err), 1);
    assert_int_equal(i, 70000);
    assert_int_equal(
        veil_conf_req_int_range(p1, VEIL_CONF_IDX(pports, 1), "port", 1, 65535, &i, &err), -EINVAL);
    err_is(&err, "svc.yaml:12:11: spec.ports[1].port: 70000 is out of range 1..65535");
    assert_int_equal(
        veil_conf_get_int_range(p1, VEIL_CONF_IDX(pports, 1), "weight", 0, 100, &i, &err), 1);
    assert_int_equal(i, 1);
    assert_int_equal(veil_conf_get_float(p1, VEIL_CONF_IDX(pports, 1), "weight", &f, &err), 1);
    assert_true(f == 1.0);
    assert_int_equal(veil_conf_get_bool(p1, VEIL_CONF_IDX(pports, 1), "enabled", &b, &err),
                     -EINVAL);
    err_is(&err, "svc.yaml:14:14: spec.ports[1].enabled: expected a boolean, got a string \"yes\"");
    assert_int_equal(veil_conf_req_float(p1, VEIL_CONF_IDX(pports, 1), "enabled", &f, &err),
                     -EINVAL);
    err_is(&err, "svc.yaml:14:14: spec.ports[1].enabled: expected a number, got a string \"yes\"");

    /* the item itself is not a map */
    const struct veil_conf_node *p2 = veil_conf_seq_at(ports, 2);
    assert_int_equal(veil_conf_get_int(p2, VEIL_CONF_IDX(pports, 2), "port", &i, &err), -EINVAL);
    err_is(&err, "svc.yaml:15:5: spec.ports[2]: expected a map, got an integer 8080");
    assert_int_equal(veil_conf_expect(p2, VEIL_CONF_IDX(pports, 2), VEIL_CONF_MAP, &err), -EINVAL);
    assert_int_equal(veil_conf_expect(p2, NULL, VEIL_CONF_INT, &err), 0);
    assert_int_equal(veil_conf_get_str(ports, pports, "x", &s, &err), -EINVAL);
    err_is(&err, "svc.yaml:10:3: spec.ports: expected a map, got a sequence");
    assert_int_equal(veil_conf_req_seq(p1, VEIL_CONF_IDX(pports, 1), "port", &sel, &err), -EINVAL);
    err_is(&err, "svc.yaml:12:11: spec.ports[1].port: expected a sequence, got an integer 70000");

    /* the caller's own checks, in the same format */
    assert_int_equal(veil_conf_errf(&err, veil_conf_map_get(p0, "name"),
                                    VEIL_CONF_KEY(VEIL_CONF_IDX(pports, 0), "name"),
                                    "unknown port name \"%s\"", "http"),
                     -EINVAL);
    err_is(&err, "svc.yaml:10:11: spec.ports[0].name: unknown port name \"http\"");

    /* absent parents are absent, not a crash */
    assert_int_equal(veil_conf_get_str(NULL, NULL, "x", &s, &err), 0);
    assert_int_equal(veil_conf_req_str(NULL, pspec, "x", &s, &err), -EINVAL);
    err_is(&err, "spec.x: required field is missing");
    veil_conf_free(c);
}

static void test_typed_fields_json(void **state)
{
    (void)state;
    const char *text = "{\"spec\": {\"ports\": [\n  {\"port\": \"eighty\"}]}}";
    struct veil_conf *c;
    struct veil_conf_err err;
    assert_int_equal(veil_conf_parse_json(&c, text, strlen(text), "svc.json", &err), 0);
    const struct veil_conf_node *ports = get(get(veil_conf_doc(c, 0), "spec"), "ports");
    const struct veil_conf_path *pports = VEIL_CONF_KEY(VEIL_CONF_KEY(NULL, "spec"), "ports");
    int64_t i;
    assert_int_equal(
        veil_conf_req_int(veil_conf_seq_at(ports, 0), VEIL_CONF_IDX(pports, 0), "port", &i, &err),
        -EINVAL);
    err_is(&err, "svc.json:2:12: spec.ports[0].port: expected an integer, got a string \"eighty\"");
    veil_conf_free(c);
}

static void test_value_preview(void **state)
{
    (void)state;
    struct veil_conf *c = yaml_ok("a: \"quote\\\" back\\\\ tab\\t\"\n"
                                  "b: \"0123456789012345678901234567890123456789xyz\"\n"
                                  "c: 1.5\n"
                                  "d: true\n"
                                  "e: [1]\n");
    const struct veil_conf_node *doc = veil_conf_doc(c, 0);
    struct veil_conf_err err;
    int64_t i;
    veil_conf_req_int(doc, NULL, "a", &i, &err);
    assert_string_equal(err.msg, "a: expected an integer, got a string \"quote\\\" back\\\\ "
                                 "tab\\x09\"");
    veil_conf_req_int(doc, NULL, "b", &i, &err);
    assert_string_equal(err.msg, "b: expected an integer, got a string "
                                 "\"0123456789012345678901234567890123456789\"...");
    veil_conf_req_int(doc, NULL, "c", &i, &err);
    assert_string_equal(err.msg, "c: expected an integer, got a number 1.5");
    veil_conf_req_int(doc, NULL, "d", &i, &err);
    assert_string_equal(err.msg, "d: expected an integer, got a boolean true");
    veil_conf_req_int(doc, NULL, "e", &i, &err);
    assert_string_equal(err.msg, "e: expected an integer, got a sequence");
    veil_conf_free(c);
}

static void test_accessors_tolerate_null(void **state)
{
    (void)state;
    assert_int_equal(veil_conf_node_kind(NULL), VEIL_CONF_NONE);
    assert_int_equal(veil_conf_len(NULL), 0);
    assert_null(veil_conf_map_get(NULL, "a"));
    assert_null(veil_conf_seq_at(NULL, 0));
    assert_null(veil_conf_map_key(NULL, 0));
    assert_null(veil_conf_map_value(NULL, 0));
    assert_null(veil_conf_str(NULL));
    int64_t i;
    assert_int_equal(veil_conf_as_int(NULL, &i), -EINVAL);
    struct veil_conf *c = yaml_ok("a: {b: c}\nl: [x]\n");
    const struct veil_conf_node *doc = veil_conf_doc(c, 0);
    assert_string_equal(veil_conf_str(veil_conf_map_get(veil_conf_map_get(doc, "a"), "b")), "c");
    assert_null(veil_conf_map_get(veil_conf_map_get(doc, "zz"), "b"));
    assert_null(veil_conf_map_get(get(doc, "l"), "x"));
    assert_null(veil_conf_seq_at(get(doc, "l"), 1));
    assert_string_equal(veil_conf_str(veil_conf_map_value(doc, 1)->v.seq.items[0]), "x");
    assert_int_equal(veil_conf_as_int(get(doc, "l"), &i), -EINVAL);
    veil_conf_free(c);
    veil_conf_free(NULL);
}

static void test_err_and_path_format(void **state)
{
    (void)state;
    struct veil_conf_err err = {.file = "a.yaml", .line = 3, .col = 7, .msg = "bad"};
    char buf[64];
    assert_int_equal(veil_conf_err_format(&err, buf, sizeof(buf)), 15);
    assert_string_equal(buf, "a.yaml:3:7: bad");
    assert_int_equal(veil_conf_err_format(&err, buf, 5), 15);
    assert_string_equal(buf, "a.ya");
    err.line = 0;
    veil_conf_err_format(&err, buf, sizeof(buf));
    assert_string_equal(buf, "a.yaml: bad");
    err.file[0] = '\0';
    veil_conf_err_format(&err, buf, sizeof(buf));
    assert_string_equal(buf, "bad");

    const struct veil_conf_path *p =
        VEIL_CONF_KEY(VEIL_CONF_IDX(VEIL_CONF_KEY(VEIL_CONF_IDX(NULL, 2), "rules"), 0), "");
    assert_int_equal(veil_conf_path_format(p, buf, sizeof(buf)), 14);
    assert_string_equal(buf, "[2].rules[0][]");
    assert_int_equal(veil_conf_path_format(VEIL_CONF_KEY(NULL, "a b"), buf, sizeof(buf)), 5);
    assert_string_equal(buf, "[a b]");
    assert_int_equal(veil_conf_path_format(NULL, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "");
    assert_int_equal(veil_conf_path_format(VEIL_CONF_KEY(NULL, "abcdef"), buf, 4), 6);
    assert_string_equal(buf, "abc");

    /* errf with no node and no path: just the message */
    assert_int_equal(veil_conf_errf(&err, NULL, NULL, "plain %d", 1), -EINVAL);
    veil_conf_err_format(&err, buf, sizeof(buf));
    assert_string_equal(buf, "plain 1");
    assert_int_equal(veil_conf_errf(NULL, NULL, NULL, "ignored"), -EINVAL);
}

/* ---- allocation failure -------------------------------------------------- */

static const char alloc_yaml[] = "a: &a {x: 1, y: [1, 2, 3]}\n"
                                 "b: [*a, *a, 'str', 1.5, true, ~]\n"
                                 "c: {k0: 0, k1: 1, k2: 2, k3: 3, k4: 4, k5: 5, k6: 6, k7: 7,"
                                 " k8: 8, k9: 9, k10: 10}\n"
                                 "---\n"
                                 "- &s [1, [2, [3]]]\n"
                                 "- *s\n";

static void alloc_fail_loop(enum veil_conf_format fmt, const char *text)
{
    long n;
    for (n = 0; n < 100000; n++) {
        struct veil_conf *c = (struct veil_conf *)1;
        struct veil_conf_err err;
        veil_alloc_fail_after(n);
        int rc = veil_conf_parse(&c, fmt, text, strlen(text), "t", NULL, &err);
        veil_alloc_fail_reset();
        if (rc == 0) {
            assert_non_null(c);
            assert_true(veil_conf_ndocs(c) >= 1);
            veil_conf_free(c);
            break;
        }
        assert_int_equal(rc, -ENOMEM);
        assert_null(c);
        assert_string_equal(err.msg, "out of memory");
    }
    assert_true(n > 2); /* some allocations were made, and failed */
    assert_true(n < 100000);
}

static void test_alloc_failure_yaml(void **state)
{
    (void)state;
    alloc_fail_loop(VEIL_CONF_YAML, alloc_yaml);
}

static void test_alloc_failure_json(void **state)
{
    (void)state;
    alloc_fail_loop(VEIL_CONF_JSON, service_json);
}

static void test_alloc_failure_load_file(void **state)
{
    (void)state;
    struct tmp t = {0};
    const char *path = tmp_file(&t, "svc.yaml", service_yaml);
    long n;
    for (n = 0; n < 10000; n++) {
        struct veil_conf *c;
        struct veil_conf_err err;
        veil_alloc_fail_after(n);
        int rc = veil_conf_load_file(&c, path, &err);
        veil_alloc_fail_reset();
        if (rc == 0) {
            veil_conf_free(c);
            break;
        }
        assert_int_equal(rc, -ENOMEM);
        assert_string_equal(err.file, path);
    }
    assert_true(n > 0 && n < 10000);
    tmp_clean(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_yaml_positions),
        cmocka_unit_test(test_yaml_positions_utf8_crlf),
        cmocka_unit_test(test_yaml_multi_doc),
        cmocka_unit_test(test_yaml_scalar_types),
        cmocka_unit_test(test_yaml_bad_scalars),
        cmocka_unit_test(test_yaml_keys_are_strings),
        cmocka_unit_test(test_yaml_duplicate_keys),
        cmocka_unit_test(test_yaml_alias_is_shared),
        cmocka_unit_test(test_yaml_alias_errors),
        cmocka_unit_test(test_yaml_billion_laughs),
        cmocka_unit_test(test_yaml_depth_cap),
        cmocka_unit_test(test_yaml_syntax_errors),
        cmocka_unit_test(test_json_positions),
        cmocka_unit_test(test_json_order_and_layout),
        cmocka_unit_test(test_json_errors),
        cmocka_unit_test(test_json_limits),
        cmocka_unit_test(test_input_and_memory_limits),
        cmocka_unit_test(test_broken_yaml_file_is_reported),
        cmocka_unit_test(test_broken_json_file_is_reported),
        cmocka_unit_test(test_load_file_ok_and_by_extension),
        cmocka_unit_test(test_unreadable_files),
        cmocka_unit_test(test_typed_fields),
        cmocka_unit_test(test_typed_fields_json),
        cmocka_unit_test(test_value_preview),
        cmocka_unit_test(test_accessors_tolerate_null),
        cmocka_unit_test(test_err_and_path_format),
        cmocka_unit_test(test_alloc_failure_yaml),
        cmocka_unit_test(test_alloc_failure_json),
        cmocka_unit_test(test_alloc_failure_load_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
