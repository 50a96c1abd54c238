#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

/* The .c under test, to reach the precedence comparator. */
#include "waypoint/route.c"

/* ---- helpers ---- */

static char last_err[512];

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
    if (j == NULL)
        fail_msg("bad test JSON: %s: %s", e.text, text);
    return j;
}

static int setk(struct veil_route_table *t, const char *kind, const char *name, const char *spec)
{
    json_t *j = J(spec);
    int rc = veil_route_set(t, kind, "shop", name, j, last_err, sizeof(last_err));
    json_decref(j);
    return rc;
}

static int set(struct veil_route_table *t, const char *name, const char *spec)
{
    return setk(t, "HTTPRoute", name, spec);
}

/* An HTTPRoute on Service shop/web with the given rules JSON. */
#define WEB         "\"parentRefs\":[{\"group\":\"\",\"kind\":\"Service\",\"name\":\"web\"}]"
#define ROUTE(...)  "{" WEB ",\"rules\":[" __VA_ARGS__ "]}"
#define TO(svc)     "\"backendRefs\":[{\"name\":\"" svc "\",\"port\":80}]"
#define PATH(t, v)  "{\"path\":{\"type\":\"" t "\",\"value\":\"" v "\"}}"
#define RULE(m, be) "{\"matches\":[" m "]," TO(be) "}"

/* The end of mkreq's header pairs (a typed null pointer, as varargs want). */
#define END ((const char *)0)

struct rq {
    struct veil_route_req req;
    struct veil_route_hdr h[8];
};

/* A request: method, path, then header name/value pairs, END-ed. */
static struct veil_route_req *mkreq(struct rq *r, const char *method, const char *path, ...)
{
    va_list ap;
    size_t n = 0;
    memset(r, 0, sizeof(*r));
    va_start(ap, path);
    for (const char *name; n < 8 && (name = va_arg(ap, const char *)) != NULL; n++) {
        const char *value = va_arg(ap, const char *);
        r->h[n] = (struct veil_route_hdr){name, strlen(name), value, strlen(value)};
    }
    va_end(ap);
    r->req = (struct veil_route_req){
        .method = method,
        .method_len = strlen(method),
        .path = path,
        .path_len = strlen(path),
        .authority = "web.shop.svc.cluster.local:8080",
        .authority_len = strlen("web.shop.svc.cluster.local:8080"),
        .headers = r->h,
        .nheaders = n,
        .port = 8080,
    };
    return &r->req;
}

/* The name of the first backend of the rule matched for req to shop/web:80,
 * "404" or "none". */
static char found[64];

static const char *route_for(struct veil_route_table *t, const struct veil_route_req *req)
{
    struct veil_route_match m;
    enum veil_route_verdict v = veil_route_find(t, "shop", "web", 80, req, &m);
    if (v == VEIL_ROUTE_NONE)
        return "none";
    if (v == VEIL_ROUTE_NOT_FOUND)
        return "404";
    const struct veil_route_rule *r = m.rule;
    snprintf(found, sizeof(found), "%s", r->nbackends > 0 ? r->backends[0].name : "(no backend)");
    veil_route_release(&m);
    return found;
}

static const char *get(struct veil_route_table *t, const char *path)
{
    struct rq r;
    return route_for(t, mkreq(&r, "GET", path, END));
}

/* ---- durations ---- */

static void test_duration(void **state)
{
    (void)state;
    uint64_t ms;
    assert_int_equal(veil_route_duration_ms("1h30m", &ms), 0);
    assert_int_equal(ms, 5400000);
    assert_int_equal(veil_route_duration_ms("500ms", &ms), 0);
    assert_int_equal(ms, 500);
    assert_int_equal(veil_route_duration_ms("10s", &ms), 0);
    assert_int_equal(ms, 10000);
    assert_int_equal(veil_route_duration_ms("0s", &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(veil_route_duration_ms("1m1s1ms", &ms), 0);
    assert_int_equal(ms, 61001);
    assert_int_equal(veil_route_duration_ms("99999h", &ms), 0);
    assert_int_equal(ms, 99999ull * 3600000);
    const char *badd[] = {"", "10", "s", "1.5s", "100000s", "1d", "1h1h1h1h1h", "-1s", "1 s"};
    for (size_t i = 0; i < sizeof(badd) / sizeof(badd[0]); i++)
        assert_int_equal(veil_route_duration_ms(badd[i], &ms), -EINVAL);
}

/* ---- match types ---- */

static void test_path_exact(void **state)
{
    (void)state;
    struct veil_route_table *t = veil_route_table_new();
    assert_int_equal(set(t, "r", ROUTE(RULE(PATH("Exact", "/abc"), "exact"))), 0);
    assert_string_equal(get(t, "/abc"), "exact");
    assert_string_equal(get(t, "/abc?x=1"), "exact");
    assert_string_equal(get(t, "/abc/"), "404");
    assert_string_equal(get(t, "/Abc"), "404");
    assert_string_equal(get(t, "/abcd"), "404");
    veil_route_table_free(t);
}

static void test_path_prefix_boundary(void **state)
{
    (void)state;
    struct veil_route_table *t = veil_route_table_new();
    assert_int_equal(set(t, "r", ROUTE(RULE(PATH("PathPrefix", "/api"), "api"))), 0);
    assert_string_equal(get(t, "/api/x"), "api");
    assert_string_equal(get(t, "/api"), "api");
    assert_string_equal(get(t, "/api/"), "api");
    assert_string_equal(get(t, "/api?q=1"), "api");
    assert_string_equal(get(t, "/apix"), "404");
    assert_string_equal(get(t, "/ap"), "404");
    assert_string_equal(get(t, "/"), "404");
    /* a trailing '/' in the prefix is ignored */
    assert_int_equal(set(t, "r", ROUTE(RULE(PATH("PathPrefix", "/api/"), "api"))), 0);
    assert_string_equal(get(t, "/api"), "api");
    assert_string_equal(get(t, "/api/v1"), "api");
    assert_string_equal(get(t, "/apix"), "404");
    veil_route_table_free(t);
}

static void test_default_match(void **state)
{
    (void)state;
    struct veil_route_table *t = veil_route_table_new();
    /* a rule without matches, and a match without a path: PathPrefix "/" */
    assert_int_equal(set(t, "a", ROUTE("{" TO("all") "}")), 0);
    assert_string_equal(get(t, "/"), "all");
    assert_string_equal(get(t, "/anything/at/all?x"), "all");
    assert_int_equal(set(t, "a", ROUTE(RULE("{\"method\":\"GET\"}", "get"))), 0);
    assert_string_equal(get(t, "/x"), "get");
    veil_route_table_free(t);
}

static void test_path_regex_anchored(void **state)
{
    (void)state;
    struct veil_route_table *t = veil_route_table_new();
    assert_int_equal(set(t, "r", ROUTE(RULE(PATH("RegularExpression", "/v[0-9]+/items"), "re"))),
                     0);
    assert_string_equal(get(t, "/v1/items"), "re");
    assert_string_equal(get(t, "/v12/items?x=1"), "re"); /* the query is not part of the path */
    assert_string_equal(get(t, "/v1/items/3"), "404");   /* no match at the end */
    assert_string_equal(get(t, "/x/v1/items"), "404");   /* nor at the start */
    assert_string_equal(get(t, "/vx/items"), "404");
    /* alternation: the whole value must match either branch */
    assert_int_equal(set(t, "r", ROUTE(RULE(PATH("RegularExpression", "/a|/ab"), "alt"))), 0);
    assert_string_equal(get(t, "/ab"), "alt");
    assert_string_equal(get(t, "/a"), "alt");
    assert_string_equal(get(t, "/abc"), "404");
    veil_route_table_free(t);
}

static void test_header_match(void **state)
{
    (void)state;
    struct veil_route_table *t = veil_route_table_new();
    struct rq r;
    assert_int_equal(
        set(t, "r",
            ROUTE(RULE("{\"headers\":[{\"name\":\"X-Version\",\"value\":\"v2\"},"
                       "{\"type\":\"RegularExpression\",\"name\":\"user\",\"value\":\"a.*z\"}]}",
                       "v2"))),
        0);
    assert_string_equal(route_for(t, mkreq(&r, "GET", "/", "x-version", "v2", "USER", "abcz", END)),
                        "v2");
    /* values are case-sensitive, names are not */
    assert_string_equal(route_for(t, mkreq(&r, "GET", "/", "x-version", "V2", "user", "az", END)),
                        "404");
    /* regex anchored */
    assert_string_equal(route_for(t, mkreq(&r, "GET", "/", "x-version", "v2", "user", "xaz", END)),
                        "404");
    /* a missing header */
    assert_string_equal(route_for(t, mkreq(&r, "GET", "/", "x-version", "v2", END)), "404");
    /* the first occurrence counts */
    assert_string_equal(route_for(t, mkreq(&r, "GET", "/", "x-version", "v1", "x-version", "v2",
                                           "user", "az", END)),
                        "404");
    veil_route_table_free(t);
}

static void test_query_match(void **state)
{
    (void)state;
    struct veil_route_table *t = veil_route_table_new();
    assert_int_equal(
        set(t, "r",
            ROUTE(RULE("{\"queryParams\":[{\"name\":\"v\",\"value\":\"2\"},"
                       "{\"type\":\"RegularExpression\",\"name\":\"id\",\"value\":\"[0-9]+\"}]}",
                       "q"))),
        0);
    assert_string_equal(get(t, "/x?v=2&id=42"), "q");
    assert_string_equal(get(t, "/x?id=42&v=2&v=3"), "q");
    assert_string_equal(get(t, "/x?v=3&v=2&id=42"), "404"); /* the first v */
    assert_string_equal(get(t, "/x?v=2&id=4a"), "404");
    assert_string_equal(get(t, "/x?v=2"), "404");
    assert_string_equal(get(t, "/x?V=2&id=1"), "404"); /* names are exact */
    assert_string_equal(get(t, "/x"), "404");
    /* values are taken as they are, not percent-decoded */
    assert_int_equal(
        set(t, "r", ROUTE(RULE("{\"queryParams\":[{\"name\":\"q\",\"value\":\"a%20b\"}]}", "raw"))),
        0);
    assert_string_equal(get(t, "/?q=a%20b"), "raw");
    assert_string_equal(get(t, "/?q=a b"), "404");
    veil_route_table_free(t);
}

static void test_method_match(void **state)
{
    (void)state;
    struct veil_route_table *t = veil_route_table_new();
    struct rq r;
    assert_int_equal(set(t, "r", ROUTE(RULE("{\"method\":\"POST\"}", "post"))), 0);
    assert_string_equal(route_for(t, mkreq(&r, "POST", "/x", END)), "post");
    assert_string_equal(route_for(t, mkreq(&r, "GET", "/x", END)), "404");
    assert_string_equal(route_for(t, mkreq(&r, "post", "/x", END)), "404");
    veil_route_table_free(t);
}

/* ---- precedence ---- */

static void test_prec_exact_over_prefix(void **state)
{
    (void)state;
    struct veil_route_table *t = veil_route_table_new();
    assert_int_equal(set(t, "r",
                         ROUTE(RULE(PATH("PathPrefix", "/a/b"),
                                    "prefix") "," RULE(PATH("Exact", "/a/b"), "exact"))),
                     0);
    assert_string_equal(get(t, "/a/b"), "exact");
    assert_string_equal(get(t, "/a/b/c"), "prefix");
    veil_route_table_free(t);
}

static void test_prec_longer_prefix(void **state)
{
    (void)state;
    struct veil_route_table *t = veil_route_table_new();
    assert_int_equal(set(t, "a", ROUTE(RULE(PATH("PathPrefix", "/"), "root"))), 0);
    assert_int_equal(set(t, "b",
                         ROUTE(RULE(PATH("PathPrefix", "/api"),
                                    "api") "," RULE(PATH("PathPrefix", "/api/v2"), "v2"))),
                     0);
    assert_string_equal(get(t, "/api/v2/x"), "v2");
    assert_string_equal(get(t, "/api/v3"), "api");
    assert_string_equal(get(t, "/other"), "root");
    veil_route_table_free(t);
}

static void test_prec_prefix_over_regex(void **state)
{
    (void)state;
    struct veil_route_table *t = veil_route_table_new();
    assert_int_equal(set(t, "r",
                         ROUTE(RULE(PATH("RegularExpression", "/a/.*"),
                                    "re") "," RULE(PATH("PathPrefix", "/"), "prefix"))),
                     0);
    assert_string_equal(get(t, "/a/b"), "prefix");
    veil_route_table_free(t);
}

static void test_prec_method(void **state)
{
    (void)state;
    struct veil_route_table *t = veil_route_table_new();
    assert_int_equal(set(t, "r",
                         ROUTE(RULE("{\"headers\":[{\"name\":\"a\",\"value\":\"1\"},{\"name\":"
                                    "\"b\",\"value\":\"2\"}]}",
                                    "headers") "," RULE("{\"method\":\"GET\"}", "method"))),
                     0);
    struct rq r;
    assert_string_equal(route_for(t, mkreq(&r, "GET", "/", "a", "1", "b", "2", END)), "method");
    assert_string_equal(route_for(t, mkreq(&r, "PUT", "/", "a", "1", "b", "2", END)), "headers");
    veil_route_table_free(t);
}

static void test_prec_header_count(void **state)
{
    (void)state;
    struct veil_route_table *t = veil_route_table_new();
    assert_int_equal(
        set(t, "r",
            ROUTE(RULE("{\"headers\":[{\"name\":\"a\",\"value\":\"1\"}],"
                       "\"queryParams\":[{\"name\":\"q\",\"value\":\"1\"},"
                       "{\"name\":\"p\",\"value\":\"1\"}]}",
                       "one") "," RULE("{\"headers\":[{\"name\":\"a\",\"value\":\"1\"},"
                                       "{\"name\":\"b\",\"value\":\"2\"}]}",
                                       "two"))),
        0);
    struct rq r;
    assert_string_equal(route_for(t, mkreq(&r, "GET", "/?q=1&p=1", "a", "1", "b", "2", END)),
                        "two");
    assert_string_equal(route_for(t, mkreq(&r, "GET", "/?q=1&p=1", "a", "1", END)), "one");
    veil_route_table_free(t);
}

static void test_prec_query_count(void **state)
{
    (void)state;
    struct veil_route_table *t = veil_route_table_new();
    assert_int_equal(set(t, "r",
                         ROUTE(RULE("{\"queryParams\":[{\"name\":\"q\",\"value\":\"1\"}]}",
                                    "one") "," RULE("{\"queryParams\":[{\"name\":\"q\",\"value\":"
                                                    "\"1\"},{\"name\":\"p\",\"value\":\"1\"}]}",
                                                    "two"))),
                     0);
    assert_string_equal(get(t, "/?q=1&p=1"), "two");
    assert_string_equal(get(t, "/?q=1"), "one");
    veil_route_table_free(t);
}

static void test_prec_oldest_route(void **state)
{
    (void)state;
    struct veil_route_table *t = veil_route_table_new();
    assert_int_equal(set(t, "zz-old", ROUTE(RULE(PATH("PathPrefix", "/"), "old"))), 0);
    assert_int_equal(set(t, "aa-new", ROUTE(RULE(PATH("PathPrefix", "/"), "new"))), 0);
    assert_string_equal(get(t, "/"), "old");
    /* an update keeps the route's age */
    assert_int_equal(set(t, "zz-old", ROUTE(RULE(PATH("PathPrefix", "/"), "old2"))), 0);
    assert_string_equal(get(t, "/"), "old2");
    /* so does a full snapshot (clear, then set again in any order) */
    veil_route_clear(t);
    assert_int_equal(set(t, "aa-new", ROUTE(RULE(PATH("PathPrefix", "/"), "new"))), 0);
    assert_int_equal(set(t, "zz-old", ROUTE(RULE(PATH("PathPrefix", "/"), "old3"))), 0);
    assert_string_equal(get(t, "/"), "old3");
    /* removed and created again: it is new */
    assert_int_equal(veil_route_remove(t, "HTTPRoute", "shop", "zz-old"), 0);
    assert_int_equal(set(t, "zz-old", ROUTE(RULE(PATH("PathPrefix", "/"), "old4"))), 0);
    assert_string_equal(get(t, "/"), "new");
    veil_route_table_free(t);
}

static void test_prec_alphabetical(void **state)
{
    (void)state;
    /* Same age (the table never gives two routes one, so the comparator is
     * checked directly): "ns/name" alphabetically, then the first rule. */
    struct veil_route_rule rules[2] = {{.index = 0}, {.index = 1}};
    struct veil_route__match m = {.key = {2, 1, 0, 0, 0}};
    struct veil_route a = {.seq = 7, .id = "shop/a"}, b = {.seq = 7, .id = "shop/b"};
    struct cand ca = {&a, &rules[0], &m}, cb = {&b, &rules[0], &m}, cb1 = {&b, &rules[1], &m};
    assert_true(beats(&ca, &cb));
    assert_false(beats(&cb, &ca));
    assert_true(beats(&cb, &cb1));
    assert_false(beats(&cb1, &cb));
    struct veil_route old = {.seq = 3, .id = "shop/z"};
    struct cand co = {&old, &rules[1], &m};
    assert_true(beats(&co, &ca)); /* age before name */
}

static void test_prec_rule_order(void **state)
{
    (void)state;
    struct veil_route_table *t = veil_route_table_new();
    assert_int_equal(set(t, "r",
                         ROUTE(RULE(PATH("PathPrefix", "/a"),
                                    "first") "," RULE(PATH("PathPrefix", "/a"), "second"))),
                     0);
    assert_string_equal(get(t, "/a"), "first");
    veil_route_table_free(t);
}

/* ---- GRPCRoute ---- */

#define GROUTE(...) "{" WEB ",\"rules\":[" __VA_ARGS__ "]}"
#define GM(t, s, m) "{\"method\":{\"type\":\"" t "\"" s m "}}"

static const char *grpc(struct veil_route_table *t, const char *path)
{
    struct rq r;
    mkreq(&r, "POST", path, "content-type", "application/grpc", END);
    r.req.grpc = true;
    return route_for(t, &r.req);
}

static void test_grpc_match(void **state)
{
    (void)state;
    struct veil_route_table *t = veil_route_table_new();
    assert_int_equal(
        setk(t, "GRPCRoute", "g",
             GROUTE(
                 RULE(GM("Exact", ",\"service\":\"pkg.Echo\"", ",\"method\":\"Say\""),
                      "both") "," RULE(GM("Exact", ",\"service\":\"pkg.Echo\"", ""),
                                       "svc") "," RULE(GM("Exact", "", ",\"method\":\"Ping\""),
                                                       "meth") "," RULE(GM("RegularExpression",
                                                                           ",\"service\":\"pkg\\\\."
                                                                           "[A-Z][a-z]+\"",
                                                                           ""),
                                                                        "re"))),
        0);
    assert_string_equal(grpc(t, "/pkg.Echo/Say"), "both");
    assert_string_equal(grpc(t, "/pkg.Echo/Other"), "svc");
    assert_string_equal(grpc(t, "/x.Y/Ping"), "meth");
    assert_string_equal(grpc(t, "/pkg.Hello/X"), "re");
    assert_string_equal(grpc(t, "/pkg.HelloX/X"), "404");
    assert_string_equal(grpc(t, "/other.Svc/Call"), "404");
    assert_string_equal(grpc(t, "/pkg.Echo"), "404"); /* not /S/M */
    /* a non-gRPC request to a service with only GRPCRoutes matches none */
    assert_string_equal(get(t, "/pkg.Echo/Say"), "404");
    veil_route_table_free(t);
}

static void test_grpc_precedence(void **state)
{
    (void)state;
    struct veil_route_table *t = veil_route_table_new();
    assert_int_equal(
        setk(
            t, "GRPCRoute", "g",
            GROUTE("{\"matches\":[{\"headers\":[{\"name\":\"a\",\"value\":\"1\"},{\"name\":"
                   "\"b\",\"value\":\"1\"}]}]," TO("headers") "}," RULE(
                       GM("Exact", "", ",\"method\":\"Say\""),
                       "method") "," RULE(GM("Exact",
                                             ",\"service\":"
                                             "\"p.E\"",
                                             ""),
                                          "short-svc") "," RULE(GM("Exact",
                                                                   ",\"service\":\"pkg.Echo\"", ""),
                                                                "long-svc"))),
        0);
    struct rq r;
    mkreq(&r, "POST", "/pkg.Echo/Say", "a", "1", "b", "1", END);
    r.req.grpc = true;
    assert_string_equal(route_for(t, &r.req), "long-svc"); /* service chars first */
    mkreq(&r, "POST", "/p.E/Say", "a", "1", "b", "1", END);
    r.req.grpc = true;
    assert_string_equal(route_for(t, &r.req), "short-svc");
    mkreq(&r, "POST", "/q.F/Say", "a", "1", "b", "1", END);
    r.req.grpc = true;
    assert_string_equal(route_for(t, &r.req), "method"); /* then method chars */
    mkreq(&r, "POST", "/q.F/Other", "a", "1", "b", "1", END);
    r.req.grpc = true;
    assert_string_equal(route_for(t, &r.req), "headers");
    veil_route_table_free(t);
}

static void test_grpc_and_http_not_merged(void **state)
{
    (void)state;
    struct veil_route_table *t = veil_route_table_new();
    assert_int_equal(set(t, "h", ROUTE(RULE(PATH("PathPrefix", "/"), "http"))), 0);
    /* only HTTPRoutes: a gRPC request uses them */
    assert_string_equal(grpc(t, "/pkg.Echo/Say"), "http");
    assert_int_equal(setk(t, "GRPCRoute", "g",
                          GROUTE(RULE(GM("Exact", ",\"service\":\"pkg.Echo\"", ""), "grpc"))),
                     0);
    assert_string_equal(grpc(t, "/pkg.Echo/Say"), "grpc");
    assert_string_equal(grpc(t, "/pkg.Other/Say"), "404");
    assert_string_equal(get(t, "/pkg.Echo/Say"), "http");
    veil_route_table_free(t);
}

/* ---- attachment ---- */

static void test_attachment(void **state)
{
    (void)state;
    struct veil_route_table *t = veil_route_table_new();
    struct rq r;
    struct veil_route_match m;
    mkreq(&r, "GET", "/", END);
    assert_int_equal(veil_route_find(t, "shop", "web", 80, &r.req, &m), VEIL_ROUTE_NONE);
    assert_int_equal(
        set(t, "p",
            "{\"parentRefs\":[{\"group\":\"\",\"kind\":\"Service\",\"name\":\"web\",\"port\":8080},"
            "{\"group\":\"\",\"kind\":\"Service\",\"name\":\"api\",\"namespace\":\"shop\"}],"
            "\"rules\":[{" TO("p") "}]}"),
        0);
    assert_int_equal(veil_route_find(t, "shop", "web", 8080, &r.req, &m), VEIL_ROUTE_MATCHED);
    assert_string_equal(m.route_ns, "shop");
    assert_string_equal(m.route_name, "p");
    assert_int_equal(m.kind, VEIL_ROUTE_HTTP);
    veil_route_release(&m);
    assert_null(m.rule);
    veil_route_release(&m); /* released twice: a no-op */
    assert_int_equal(veil_route_find(t, "shop", "web", 80, &r.req, &m), VEIL_ROUTE_NONE);
    assert_null(m.rule);
    assert_int_equal(veil_route_find(t, "shop", "api", 9999, &r.req, &m), VEIL_ROUTE_MATCHED);
    veil_route_release(&m);
    assert_int_equal(veil_route_find(t, "other", "api", 9999, &r.req, &m), VEIL_ROUTE_NONE);

    /* sectionName: the Service port's name; with a port, both must match */
    assert_int_equal(
        set(t, "s",
            "{\"parentRefs\":[{\"group\":\"\",\"kind\":\"Service\",\"name\":\"db\","
            "\"sectionName\":\"http\"},{\"group\":\"\",\"kind\":\"Service\",\"name\":"
            "\"db\",\"port\":90,\"sectionName\":\"admin\"}],\"rules\":[{" TO("s") "}]}"),
        0);
    r.req.port_name = "http";
    assert_int_equal(veil_route_find(t, "shop", "db", 80, &r.req, &m), VEIL_ROUTE_MATCHED);
    veil_route_release(&m);
    r.req.port_name = "grpc";
    assert_int_equal(veil_route_find(t, "shop", "db", 80, &r.req, &m), VEIL_ROUTE_NONE);
    r.req.port_name = NULL; /* a port without a name */
    assert_int_equal(veil_route_find(t, "shop", "db", 80, &r.req, &m), VEIL_ROUTE_NONE);
    r.req.port_name = "admin";
    assert_int_equal(veil_route_find(t, "shop", "db", 91, &r.req, &m), VEIL_ROUTE_NONE);
    assert_int_equal(veil_route_find(t, "shop", "db", 90, &r.req, &m), VEIL_ROUTE_MATCHED);
    veil_route_release(&m);
    r.req.port_name = NULL;

    /* a Gateway parent and a Service of another namespace attach nothing: a note */
    assert_int_equal(
        set(t, "gw",
            "{\"parentRefs\":[{\"name\":\"waypoint\"},{\"group\":\"\",\"kind\":\"Service\","
            "\"name\":\"web\",\"namespace\":\"other\"}],\"rules\":[{" TO("gw") "}]}"),
        1);
    assert_non_null(strstr(last_err, "spec.parentRefs[1]: a Service of another namespace"));
    assert_int_equal(veil_route_find(t, "other", "web", 80, &r.req, &m), VEIL_ROUTE_NONE);
    assert_int_equal(set(t, "gw2", "{\"parentRefs\":[{\"name\":\"waypoint\"}]}"), 1);
    assert_string_equal(
        last_err, "spec.parentRefs: no Service parentRef: the route applies to no request here");
    /* routes attached, none matching: 404 */
    assert_int_equal(set(t, "q", ROUTE(RULE(PATH("Exact", "/only"), "q"))), 0);
    assert_int_equal(veil_route_find(t, "shop", "web", 80, &r.req, &m), VEIL_ROUTE_NOT_FOUND);
    assert_null(m.rule);
    veil_route_table_free(t);
}

/* ---- backends ---- */

static void test_weighted_pick(void **state)
{
    (void)state;
    struct veil_route_table *t = veil_route_table_new();
    assert_int_equal(set(t, "w",
                         ROUTE("{\"backendRefs\":[{\"name\":\"v1\",\"port\":80,\"weight\":90},"
                               "{\"name\":\"v0\",\"port\":80,\"weight\":0},"
                               "{\"name\":\"v2\",\"port\":80,\"weight\":10}]}")),
                     0);
    struct rq r;
    struct veil_route_match m;
    assert_int_equal(veil_route_find(t, "shop", "web", 80, mkreq(&r, "GET", "/", END), &m),
                     VEIL_ROUTE_MATCHED);
    int n1 = 0, n2 = 0;
    for (uint64_t x = 0; x < 1000; x++) {
        const struct veil_route_backend *b = veil_route_pick(m.rule, x * 7919 + 3);
        assert_non_null(b);
        assert_string_not_equal(b->name, "v0");
        n1 += strcmp(b->name, "v1") == 0;
        n2 += strcmp(b->name, "v2") == 0;
    }
    assert_int_equal(n1, 900);
    assert_int_equal(n2, 100);
    assert_string_equal(veil_route_pick(m.rule, 89)->name, "v1");
    assert_string_equal(veil_route_pick(m.rule, 90)->name, "v2");
    assert_string_equal(veil_route_pick(m.rule, UINT64_MAX)->name, "v1"); /* % 100 = 15 */
    assert_string_equal(m.rule->backends[0].ns, "shop");
    assert_int_equal(m.rule->backends[0].port, 80);
    veil_route_release(&m);

    /* every weight 0, no backendRefs, or a backend not a Service: 500 (NULL) */
    assert_int_equal(
        set(t, "w", ROUTE("{\"backendRefs\":[{\"name\":\"v1\",\"port\":80,\"weight\":0}]}")), 0);
    assert_int_equal(veil_route_find(t, "shop", "web", 80, &r.req, &m), VEIL_ROUTE_MATCHED);
    assert_null(veil_route_pick(m.rule, 0));
    veil_route_release(&m);
    assert_int_equal(set(t, "w", ROUTE("{}")), 0);
    assert_int_equal(veil_route_find(t, "shop", "web", 80, &r.req, &m), VEIL_ROUTE_MATCHED);
    assert_null(veil_route_pick(m.rule, 0));
    veil_route_release(&m);
    assert_int_equal(set(t, "w",
                         ROUTE("{\"backendRefs\":[{\"name\":\"a\",\"port\":80},"
                               "{\"group\":\"x.io\",\"kind\":\"Thing\",\"name\":\"b\"}]}")),
                     0);
    assert_int_equal(veil_route_find(t, "shop", "web", 80, &r.req, &m), VEIL_ROUTE_MATCHED);
    assert_string_equal(veil_route_pick(m.rule, 0)->name, "a");
    assert_null(veil_route_pick(m.rule, 1));
    veil_route_release(&m);
    veil_route_table_free(t);
}

/* ---- filters ---- */

/* Matches shop/web:80 GET path and keeps the result in *m. */
static void find_ok(struct veil_route_table *t, const char *path, struct rq *r,
                    struct veil_route_match *m)
{
    assert_int_equal(veil_route_find(t, "shop", "web", 80, mkreq(r, "GET", path, END), m),
                     VEIL_ROUTE_MATCHED);
}

static void test_header_filters(void **state)
{
    (void)state;
    struct veil_route_table *t = veil_route_table_new();
    assert_int_equal(
        set(t, "h",
            ROUTE("{\"filters\":[{\"type\":\"RequestHeaderModifier\",\"requestHeaderModifier\":{"
                  "\"set\":[{\"name\":\"X-Set\",\"value\":\"new\"},{\"name\":\"x-fresh\",\"value\":"
                  "\"f\"}],\"add\":[{\"name\":\"x-add\",\"value\":\"b,c\"}],\"remove\":[\"X-Gone\"]"
                  "}},"
                  "{\"type\":\"ResponseHeaderModifier\",\"responseHeaderModifier\":{\"add\":[{"
                  "\"name\":\"x-resp\",\"value\":\"1\"}]}}]," TO("h") "}")),
        0);
    struct rq r;
    struct veil_route_match m;
    find_ok(t, "/", &r, &m);
    struct veil_route_hdr in[] = {
        {"Host", 4, "web", 3},  {"x-set", 5, "old1", 4}, {"x-gone", 6, "g", 1},
        {"x-add", 5, "a", 1},   {"X-SET", 5, "old2", 4}, {"accept", 6, "*/*", 3},
        {"X-Gone", 6, "g2", 2},
    };
    struct veil_route_hdr out[16];
    int n = veil_route_headers_apply(&m.rule->filters.request_headers, in, 7, out, 16);
    assert_int_equal(n, 6);
    const char *want[][2] = {{"Host", "web"},   {"x-set", "new"}, {"x-add", "a"},
                             {"accept", "*/*"}, {"x-fresh", "f"}, {"x-add", "b,c"}};
    for (int i = 0; i < n; i++) {
        assert_int_equal(out[i].name_len, strlen(want[i][0]));
        assert_memory_equal(out[i].name, want[i][0], out[i].name_len);
        assert_int_equal(out[i].value_len, strlen(want[i][1]));
        assert_memory_equal(out[i].value, want[i][1], out[i].value_len);
    }
    assert_int_equal(veil_route_headers_apply(&m.rule->filters.request_headers, in, 7, out, 5),
                     -ENOBUFS);
    assert_int_equal(veil_route_headers_apply(NULL, in, 7, out, 16), 7);
    assert_int_equal(veil_route_headers_apply(&m.rule->filters.response_headers, in, 0, out, 16),
                     1);
    assert_string_equal(out[0].name, "x-resp");
    veil_route_release(&m);
    veil_route_table_free(t);
}

#define REWRITE(body) "{\"type\":\"URLRewrite\",\"urlRewrite\":" body "}"

static void check_rewrite(const char *prefix, const char *repl, const char *path, const char *want)
{
    char spec[512], out[256];
    snprintf(spec, sizeof(spec),
             ROUTE("{\"matches\":[" PATH("PathPrefix", "%s") "],\"filters\":[" REWRITE(
                 "{\"hostname\":\"api.example.com\",\"path\":{\"type\":\"ReplacePrefixMatch\","
                 "\"replacePrefixMatch\":\"%s\"}}") "]," TO("b") "}"),
             prefix, repl);
    struct veil_route_table *t = veil_route_table_new();
    assert_int_equal(set(t, "rw", spec), 0);
    struct rq r;
    struct veil_route_match m;
    find_ok(t, path, &r, &m);
    const struct veil_route_filters *f = &m.rule->filters;
    assert_true(f->has_rewrite);
    assert_string_equal(f->rewrite.hostname, "api.example.com");
    int n = veil_route_path_rewrite(&m, &f->rewrite.path, path, strlen(path), out, sizeof(out));
    if (n < 0)
        fail_msg("%s %s %s: %d", prefix, repl, path, n);
    assert_int_equal(n, strlen(want));
    assert_string_equal(out, want);
    veil_route_release(&m);
    veil_route_table_free(t);
}

static void test_rewrite_prefix(void **state)
{
    (void)state;
    /* the specification's table */
    check_rewrite("/foo", "/xyz", "/foo/bar", "/xyz/bar");
    check_rewrite("/foo", "/xyz/", "/foo/bar", "/xyz/bar");
    check_rewrite("/foo/", "/xyz", "/foo/bar", "/xyz/bar");
    check_rewrite("/foo/", "/xyz/", "/foo/bar", "/xyz/bar");
    check_rewrite("/foo", "/xyz", "/foo", "/xyz");
    check_rewrite("/foo", "/xyz", "/foo/", "/xyz/");
    check_rewrite("/foo", "", "/foo/bar", "/bar");
    check_rewrite("/foo", "", "/foo/", "/");
    check_rewrite("/foo", "", "/foo", "/");
    check_rewrite("/foo", "/", "/foo/", "/");
    check_rewrite("/foo", "/", "/foo", "/");
    /* more */
    check_rewrite("/api", "/v2", "/api/x?q=1", "/v2/x?q=1");
    check_rewrite("/api", "/v2", "/api?q=1", "/v2?q=1");
    check_rewrite("/", "/app", "/x/y", "/app/x/y");
    check_rewrite("/", "/", "/x", "/x");

    /* the rewrite needs the prefix to be there */
    struct veil_route_match m = {.prefix = "/api", .prefix_len = 4};
    struct veil_route_path mod = {VEIL_ROUTE_PATH_PREFIX, "/v2"};
    char out[64];
    assert_int_equal(veil_route_path_rewrite(&m, &mod, "/apix", 5, out, sizeof(out)), -EINVAL);
    assert_int_equal(veil_route_path_rewrite(&m, &mod, "/ap", 3, out, sizeof(out)), -EINVAL);
    assert_int_equal(veil_route_path_rewrite(&m, &mod, "/api/abcdef", 11, out, 8), -ENOBUFS);
    m.prefix = NULL;
    assert_int_equal(veil_route_path_rewrite(&m, &mod, "/api", 4, out, sizeof(out)), -EINVAL);
}

static void test_rewrite_full(void **state)
{
    (void)state;
    struct veil_route_table *t = veil_route_table_new();
    assert_int_equal(set(t, "rw",
                         ROUTE("{\"matches\":[" PATH("Exact", "/old") "],\"filters\":[" REWRITE(
                             "{\"path\":{\"type\":\"ReplaceFullPath\",\"replaceFullPath\":\"/new/"
                             "place\"}}") "]," TO("b") "}")),
                     0);
    struct rq r;
    struct veil_route_match m;
    char out[64];
    find_ok(t, "/old?x=1", &r, &m);
    assert_null(m.rule->filters.rewrite.hostname);
    assert_int_equal(
        veil_route_path_rewrite(&m, &m.rule->filters.rewrite.path, "/old?x=1", 8, out, sizeof(out)),
        strlen("/new/place?x=1"));
    assert_string_equal(out, "/new/place?x=1");
    struct veil_route_path keep = {0};
    assert_int_equal(veil_route_path_rewrite(&m, &keep, "/old?x=1", 8, out, sizeof(out)), 8);
    assert_string_equal(out, "/old?x=1");
    veil_route_release(&m);
    veil_route_table_free(t);
}

#define REDIRECT(body)                                                                             \
    ROUTE("{\"matches\":[" PATH("PathPrefix",                                                      \
                                "/old") "],\"filters\":[{\"type\":"                                \
                                        "\"RequestRedirect\",\"requestRedirect\":" body "}]}")

static const char *location(const char *spec, const char *path, const char *scheme, int *status)
{
    static char out[256];
    struct veil_route_table *t = veil_route_table_new();
    assert_int_equal(set(t, "rd", spec), 0);
    struct rq r;
    struct veil_route_match m;
    find_ok(t, path, &r, &m);
    r.req.scheme = scheme;
    const struct veil_route_redirect *rd = &m.rule->filters.redirect;
    assert_true(m.rule->filters.has_redirect);
    *status = rd->status;
    int n = veil_route_redirect_location(&m, rd, &r.req, out, sizeof(out));
    if (n < 0)
        snprintf(out, sizeof(out), "error %d", n);
    veil_route_release(&m);
    veil_route_table_free(t);
    return out;
}

static void test_redirect_location(void **state)
{
    (void)state;
    int st;
    /* nothing set: same scheme, host and port (the service port), same path */
    assert_string_equal(location(REDIRECT("{}"), "/old/x?q=1", NULL, &st),
                        "http://web.shop.svc.cluster.local:8080/old/x?q=1");
    assert_int_equal(st, 302);
    /* scheme https: port 443, left out */
    assert_string_equal(
        location(REDIRECT("{\"scheme\":\"https\",\"statusCode\":301}"), "/old", NULL, &st),
        "https://web.shop.svc.cluster.local/old");
    assert_int_equal(st, 301);
    /* scheme http: port 80, left out */
    assert_string_equal(location(REDIRECT("{\"scheme\":\"http\"}"), "/old", "https", &st),
                        "http://web.shop.svc.cluster.local/old");
    /* explicit host and port */
    assert_string_equal(location(REDIRECT("{\"hostname\":\"example.com\",\"port\":8443,"
                                          "\"scheme\":\"https\"}"),
                                 "/old", NULL, &st),
                        "https://example.com:8443/old");
    assert_string_equal(
        location(REDIRECT("{\"hostname\":\"example.com\",\"port\":80}"), "/old", NULL, &st),
        "http://example.com/old");
    /* path modifiers */
    assert_string_equal(location(REDIRECT("{\"path\":{\"type\":\"ReplacePrefixMatch\","
                                          "\"replacePrefixMatch\":\"/new\"},\"statusCode\":308}"),
                                 "/old/a/b?z", NULL, &st),
                        "http://web.shop.svc.cluster.local:8080/new/a/b?z");
    assert_int_equal(st, 308);
    assert_string_equal(location(REDIRECT("{\"path\":{\"type\":\"ReplaceFullPath\","
                                          "\"replaceFullPath\":\"/moved\"}}"),
                                 "/old/a", NULL, &st),
                        "http://web.shop.svc.cluster.local:8080/moved");

    /* the request's host without its port; IPv6 kept in brackets; no port known */
    struct veil_route_redirect rd = {.status = 302};
    struct veil_route_req req = {
        .path = "/p", .path_len = 2, .authority = "[fd00::1]:8080", .authority_len = 14};
    char out[64];
    assert_int_equal(veil_route_redirect_location(NULL, &rd, &req, out, sizeof(out)),
                     strlen("http://[fd00::1]/p"));
    assert_string_equal(out, "http://[fd00::1]/p");
    assert_int_equal(veil_route_redirect_location(NULL, &rd, &req, out, 10), -ENOBUFS);
    /* no header injection through the request's authority */
    req.authority = "evil\r\nx: y";
    req.authority_len = strlen(req.authority);
    assert_int_equal(veil_route_redirect_location(NULL, &rd, &req, out, sizeof(out)), -EINVAL);
}

static void test_mirror_timeouts_retry(void **state)
{
    (void)state;
    struct veil_route_table *t = veil_route_table_new();
    assert_int_equal(
        set(t, "m",
            ROUTE("{\"filters\":[{\"type\":\"RequestMirror\",\"requestMirror\":{\"backendRef\":{"
                  "\"name\":\"shadow\",\"port\":8080},\"percent\":25}},{\"type\":\"RequestMirror\","
                  "\"requestMirror\":{\"backendRef\":{\"name\":\"audit\",\"namespace\":\"sec\"},"
                  "\"fraction\":{\"numerator\":1,\"denominator\":1000}}}],"
                  "\"timeouts\":{\"request\":\"10s\",\"backendRequest\":\"500ms\"},"
                  "\"retry\":{\"attempts\":3,\"codes\":[503,504],\"backoff\":\"100ms\"}," TO(
                      "b") "},"
                           "{\"matches\":[" PATH("Exact", "/r") "],\"retry\":{}," TO("c") "}")),
        0);
    struct rq r;
    struct veil_route_match m;
    find_ok(t, "/", &r, &m);
    const struct veil_route_rule *rule = m.rule;
    assert_int_equal(rule->filters.nmirrors, 2);
    const struct veil_route_mirror *mi = &rule->filters.mirrors[0];
    assert_string_equal(mi->ns, "shop");
    assert_string_equal(mi->name, "shadow");
    assert_int_equal(mi->port, 8080);
    int hits = 0;
    for (uint64_t x = 0; x < 400; x++)
        hits += veil_route_mirror_hit(mi, x);
    assert_int_equal(hits, 100);
    mi = &rule->filters.mirrors[1];
    assert_string_equal(mi->ns, "sec");
    assert_int_equal(mi->port, 0);
    assert_int_equal(mi->numerator, 1);
    assert_int_equal(mi->denominator, 1000);
    assert_true(veil_route_mirror_hit(mi, 2000));
    assert_false(veil_route_mirror_hit(mi, 2001));
    assert_int_equal(rule->request_timeout_ms, 10000);
    assert_int_equal(rule->backend_timeout_ms, 500);
    assert_true(rule->retry.set);
    assert_int_equal(rule->retry.attempts, 3);
    assert_int_equal(rule->retry.ncodes, 2);
    assert_int_equal(rule->retry.codes[1], 504);
    assert_int_equal(rule->retry.backoff_ms, 100);
    veil_route_release(&m);
    /* an empty retry stanza: 2 attempts (Istio's default), no codes */
    find_ok(t, "/r", &r, &m);
    assert_true(m.rule->retry.set);
    assert_int_equal(m.rule->retry.attempts, 2);
    assert_int_equal(m.rule->retry.ncodes, 0);
    assert_int_equal(m.rule->request_timeout_ms, 0);
    assert_int_equal(m.rule->filters.nmirrors, 0);
    veil_route_release(&m);
    veil_route_table_free(t);
}

static void test_backend_filters(void **state)
{
    (void)state;
    struct veil_route_table *t = veil_route_table_new();
    assert_int_equal(
        set(t, "bf",
            ROUTE("{\"backendRefs\":[{\"name\":\"a\",\"port\":80,\"filters\":[{\"type\":"
                  "\"RequestHeaderModifier\",\"requestHeaderModifier\":{\"set\":[{\"name\":"
                  "\"x-be\",\"value\":\"a\"}]}}]},{\"name\":\"b\",\"port\":80}]}")),
        0);
    struct rq r;
    struct veil_route_match m;
    find_ok(t, "/", &r, &m);
    const struct veil_route_backend *b = veil_route_pick(m.rule, 0);
    assert_non_null(b->filters);
    assert_int_equal(b->filters->request_headers.nset, 1);
    assert_null(veil_route_pick(m.rule, 1)->filters);
    veil_route_release(&m);
    veil_route_table_free(t);
}

/* ---- refused specs ---- */

struct badcase {
    const char *spec;
    const char *err; /* the start of the message */
};

static void test_bad_specs(void **state)
{
    (void)state;
    static const struct badcase cases[] = {
        {"[]", "spec: must be an object"},
        {ROUTE("{\"matches\":[" PATH("PathPrefix", "/") ",{\"path\":{\"value\":\"x\"}}]}"),
         "spec.rules[0].matches[1].path.value: must start with '/'"},
        {ROUTE("{\"matches\":[" PATH("Exact", "/a//b") "]}"),
         "spec.rules[0].matches[0].path.value: must not contain '//'"},
        {ROUTE("{\"matches\":[" PATH("Exact", "/a b") "]}"),
         "spec.rules[0].matches[0].path.value: invalid character"},
        {ROUTE("{\"matches\":[" PATH("Glob", "/a") "]}"),
         "spec.rules[0].matches[0].path.type: unknown type \"Glob\""},
        {ROUTE("{\"matches\":[" PATH("RegularExpression", "/a(") "]}"),
         "spec.rules[0].matches[0].path.value: invalid regular expression"},
        {ROUTE("{\"matches\":[{\"method\":\"FETCH\"}]}"),
         "spec.rules[0].matches[0].method: unknown method"},
        {ROUTE("{\"matches\":[{\"headers\":[{\"name\":\"a b\",\"value\":\"1\"}]}]}"),
         "spec.rules[0].matches[0].headers[0].name: \"a b\" is not a valid header name"},
        {ROUTE("{\"matches\":[{\"headers\":[{\"name\":\"a\"}]}]}"),
         "spec.rules[0].matches[0].headers[0].value: required field is missing"},
        {ROUTE("{\"matches\":[{\"queryParams\":[{\"type\":\"RegularExpression\",\"name\":\"a\","
               "\"value\":\"[\"}]}]}"),
         "spec.rules[0].matches[0].queryParams[0].value: invalid regular expression"},
        {ROUTE("{\"timeouts\":{\"request\":\"1x\"}}"),
         "spec.rules[0].timeouts.request: \"1x\" is not a duration"},
        {ROUTE("{\"timeouts\":{\"request\":\"1s\",\"backendRequest\":\"2s\"}}"),
         "spec.rules[0].timeouts: backendRequest timeout cannot be longer"},
        {ROUTE("{\"retry\":{\"codes\":[200]}}"),
         "spec.rules[0].retry.codes[0]: must be a status code 400..599"},
        {ROUTE("{\"filters\":[{\"type\":\"CORS\",\"cors\":{}}]}"),
         "spec.rules[0].filters[0].type: filter type CORS is not supported"},
        {ROUTE("{\"filters\":[{\"type\":\"Bogus\"}]}"),
         "spec.rules[0].filters[0].type: unknown filter type \"Bogus\""},
        {ROUTE("{\"filters\":[{\"type\":\"RequestHeaderModifier\"}]}"),
         "spec.rules[0].filters[0].requestHeaderModifier: required for type"},
        {ROUTE("{\"filters\":[{\"type\":\"RequestHeaderModifier\",\"requestHeaderModifier\":{"
               "\"set\":[{\"name\":\"X-A\",\"value\":\"1\"}],\"remove\":[\"x-a\"]}}]}"),
         "spec.rules[0].filters[0].requestHeaderModifier: header \"x-a\" has more than one"},
        {ROUTE("{\"filters\":[{\"type\":\"RequestHeaderModifier\",\"requestHeaderModifier\":{"
               "\"set\":[{\"name\":\"x\",\"value\":\"a\\r\\nb\"}]}}]}"),
         "spec.rules[0].filters[0].requestHeaderModifier.set[0].value: control"},
        {ROUTE("{\"filters\":[{\"type\":\"RequestRedirect\",\"requestRedirect\":{}}]," TO("b") "}"),
         "spec.rules[0]: RequestRedirect filter must not be used together with backendRefs"},
        {ROUTE("{\"filters\":[{\"type\":\"RequestRedirect\",\"requestRedirect\":{\"statusCode\":"
               "304}}]}"),
         "spec.rules[0].filters[0].requestRedirect.statusCode: 304 is not a redirect status"},
        {ROUTE("{\"filters\":[{\"type\":\"RequestRedirect\",\"requestRedirect\":{\"scheme\":"
               "\"ftp\"}}]}"),
         "spec.rules[0].filters[0].requestRedirect.scheme: unknown scheme"},
        {ROUTE("{\"filters\":[{\"type\":\"RequestRedirect\",\"requestRedirect\":{\"hostname\":"
               "\"Bad_Host\"}}]}"),
         "spec.rules[0].filters[0].requestRedirect.hostname: \"Bad_Host\" is not a valid host"},
        {ROUTE("{\"filters\":[{\"type\":\"RequestRedirect\",\"requestRedirect\":{}},"
               "{\"type\":\"URLRewrite\",\"urlRewrite\":{}}]}"),
         "spec.rules[0].filters: RequestRedirect and URLRewrite cannot be combined"},
        {ROUTE("{\"filters\":[" REWRITE("{}") "," REWRITE("{}") "]}"),
         "spec.rules[0].filters[1]: filter URLRewrite cannot be repeated"},
        {ROUTE("{\"matches\":[" PATH("Exact", "/a") "],\"filters\":[" REWRITE(
             "{\"path\":{\"type\":\"ReplacePrefixMatch\",\"replacePrefixMatch\":\"/b\"}}") "]}"),
         "spec.rules[0]: ReplacePrefixMatch needs exactly one match"},
        {ROUTE("{\"filters\":[" REWRITE(
             "{\"path\":{\"type\":\"ReplaceFullPath\",\"replacePrefixMatch\":\"/b\"}}") "]}"),
         "spec.rules[0].filters[0].urlRewrite.path: ReplaceFullPath takes replaceFullPath"},
        {ROUTE("{\"filters\":[{\"type\":\"RequestMirror\",\"requestMirror\":{\"backendRef\":{"
               "\"name\":\"s\"},\"percent\":101}}]}"),
         "spec.rules[0].filters[0].requestMirror.percent: 101 is out of range"},
        {ROUTE("{\"filters\":[{\"type\":\"RequestMirror\",\"requestMirror\":{\"backendRef\":{"
               "\"name\":\"s\"},\"percent\":1,\"fraction\":{\"numerator\":1}}}]}"),
         "spec.rules[0].filters[0].requestMirror: only one of percent and fraction"},
        {ROUTE("{\"backendRefs\":[{\"port\":80}]}"),
         "spec.rules[0].backendRefs[0].name: required field is missing"},
        {ROUTE("{\"backendRefs\":[{\"name\":\"a\",\"port\":70000}]}"),
         "spec.rules[0].backendRefs[0].port: 70000 is out of range"},
        {ROUTE("{\"backendRefs\":[{\"name\":\"a\",\"weight\":-1}]}"),
         "spec.rules[0].backendRefs[0].weight: -1 is out of range"},
        {"{\"parentRefs\":[{\"kind\":\"Service\"}]}", "spec.parentRefs[0].name: required"},
        {"{\"rules\":{}}", "spec.rules: must be a list"},
    };
    struct veil_route_table *t = veil_route_table_new();
    assert_int_equal(set(t, "r", ROUTE(RULE(PATH("PathPrefix", "/"), "good"))), 0);
    uint64_t gen = veil_route_generation(t);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = set(t, "r", cases[i].spec);
        if (rc != -EINVAL || strncmp(last_err, cases[i].err, strlen(cases[i].err)) != 0)
            fail_msg("case %zu: rc %d, err \"%s\", want \"%s\"", i, rc, last_err, cases[i].err);
        /* the old version stays in force */
        assert_string_equal(get(t, "/x"), "good");
    }
    assert_int_equal(veil_route_generation(t), gen);
    assert_int_equal(veil_route_count(t), 1);

    /* GRPCRoute specifics */
    assert_int_equal(setk(t, "GRPCRoute", "g", GROUTE("{\"matches\":[{\"method\":{}}]}")), -EINVAL);
    assert_string_equal(last_err,
                        "spec.rules[0].matches[0].method: one or both of service and method must "
                        "be given");
    assert_int_equal(
        setk(t, "GRPCRoute", "g", GROUTE("{\"matches\":[{\"method\":{\"service\":\"a/b\"}}]}")),
        -EINVAL);
    assert_string_equal(last_err, "spec.rules[0].matches[0].method.service: \"a/b\" is not a valid "
                                  "gRPC service name");
    assert_int_equal(setk(t, "GRPCRoute", "g", GROUTE("{\"filters\":[" REWRITE("{}") "]}")),
                     -EINVAL);
    assert_string_equal(last_err,
                        "spec.rules[0].filters[0].type: filter URLRewrite is not allowed in a "
                        "GRPCRoute");
    assert_int_equal(setk(t, "TCPRoute", "x", "{}"), -EINVAL);
    assert_string_equal(last_err, "kind: \"TCPRoute\" is not HTTPRoute or GRPCRoute");
    veil_route_table_free(t);
}

/* ---- the table ---- */

static void test_update_remove_clear(void **state)
{
    (void)state;
    struct veil_route_table *t = veil_route_table_new();
    assert_int_equal(veil_route_count(t), 0);
    assert_int_equal(set(t, "a", ROUTE(RULE(PATH("PathPrefix", "/"), "a1"))), 0);
    assert_string_equal(last_err, "");
    assert_int_equal(setk(t, "GRPCRoute", "a", GROUTE("{" TO("g") "}")), 0);
    assert_int_equal(veil_route_count(t), 2); /* same name, other kind */
    uint64_t g = veil_route_generation(t);

    /* a match held across an update keeps the old version alive */
    struct rq r;
    struct veil_route_match m;
    find_ok(t, "/", &r, &m);
    assert_int_equal(set(t, "a", ROUTE(RULE(PATH("PathPrefix", "/"), "a2"))), 0);
    assert_true(veil_route_generation(t) > g);
    assert_string_equal(get(t, "/"), "a2");
    assert_string_equal(m.rule->backends[0].name, "a1");
    veil_route_release(&m);

    /* ... and across a remove and the table's end */
    find_ok(t, "/", &r, &m);
    assert_int_equal(veil_route_remove(t, "HTTPRoute", "shop", "a"), 0);
    assert_int_equal(veil_route_remove(t, "HTTPRoute", "shop", "a"), -ENOENT);
    assert_int_equal(veil_route_remove(t, "Nope", "shop", "a"), -ENOENT);
    assert_int_equal(veil_route_count(t), 1);
    assert_string_equal(get(t, "/"), "404"); /* the GRPCRoute is still attached */
    assert_int_equal(veil_route_remove(t, "GRPCRoute", "shop", "a"), 0);
    assert_string_equal(get(t, "/"), "none");

    assert_int_equal(set(t, "b", ROUTE(RULE(PATH("PathPrefix", "/"), "b"))), 0);
    assert_int_equal(set(t, "c", ROUTE(RULE(PATH("PathPrefix", "/"), "c"))), 0);
    g = veil_route_generation(t);
    veil_route_clear(t);
    assert_true(veil_route_generation(t) > g);
    assert_int_equal(veil_route_count(t), 0);
    assert_string_equal(get(t, "/"), "none");
    assert_int_equal(set(t, "b", ROUTE(RULE(PATH("PathPrefix", "/"), "b"))), 0);
    veil_route_table_free(t);
    assert_string_equal(m.rule->backends[0].name, "a2");
    veil_route_release(&m);
}

static void test_alloc_failures(void **state)
{
    (void)state;
    const char *spec = ROUTE("{\"matches\":[" PATH(
        "PathPrefix",
        "/api") "],\"filters\":[{\"type\":"
                "\"RequestHeaderModifier\",\"requestHeaderModifier\":{\"set\":[{\"name\":\"a\","
                "\"value\":"
                "\"b\"}]}}," REWRITE(
                    "{\"path\":{\"type\":\"ReplacePrefixMatch\",\"replacePrefixMatch\":"
                    "\"/\"}}") "]," TO("b") "}");
    for (long n = 0;; n++) {
        struct veil_route_table *t = veil_route_table_new();
        assert_non_null(t);
        assert_int_equal(set(t, "old", ROUTE(RULE(PATH("PathPrefix", "/"), "old"))), 0);
        veil_route_clear(t); /* a ghost */
        assert_int_equal(set(t, "old", ROUTE(RULE(PATH("PathPrefix", "/"), "old"))), 0);
        veil_alloc_fail_after(n);
        int rc = set(t, "r", spec);
        veil_alloc_fail_reset();
        if (rc == 0) {
            assert_string_equal(get(t, "/api/x"), "b");
            veil_route_table_free(t);
            break;
        }
        assert_int_equal(rc, -ENOMEM);
        assert_string_equal(last_err, "out of memory");
        assert_int_equal(veil_route_count(t), 1);
        veil_route_table_free(t);
        assert_true(n < 1000);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_duration),
        cmocka_unit_test(test_path_exact),
        cmocka_unit_test(test_path_prefix_boundary),
        cmocka_unit_test(test_default_match),
        cmocka_unit_test(test_path_regex_anchored),
        cmocka_unit_test(test_header_match),
        cmocka_unit_test(test_query_match),
        cmocka_unit_test(test_method_match),
        cmocka_unit_test(test_prec_exact_over_prefix),
        cmocka_unit_test(test_prec_longer_prefix),
        cmocka_unit_test(test_prec_prefix_over_regex),
        cmocka_unit_test(test_prec_method),
        cmocka_unit_test(test_prec_header_count),
        cmocka_unit_test(test_prec_query_count),
        cmocka_unit_test(test_prec_oldest_route),
        cmocka_unit_test(test_prec_alphabetical),
        cmocka_unit_test(test_prec_rule_order),
        cmocka_unit_test(test_grpc_match),
        cmocka_unit_test(test_grpc_precedence),
        cmocka_unit_test(test_grpc_and_http_not_merged),
        cmocka_unit_test(test_attachment),
        cmocka_unit_test(test_weighted_pick),
        cmocka_unit_test(test_header_filters),
        cmocka_unit_test(test_rewrite_prefix),
        cmocka_unit_test(test_rewrite_full),
        cmocka_unit_test(test_redirect_location),
        cmocka_unit_test(test_mirror_timeouts_retry),
        cmocka_unit_test(test_backend_filters),
        cmocka_unit_test(test_bad_specs),
        cmocka_unit_test(test_update_remove_clear),
        cmocka_unit_test(test_alloc_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
