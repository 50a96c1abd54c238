/* Types of the waypoint's route table; see route.h for the contract. */
#ifndef VEIL_WAYPOINT_ROUTE_T_H
#define VEIL_WAYPOINT_ROUTE_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Bytes of "namespace/name" of a route. */
#define VEIL_ROUTE_NAME_MAX 320

/* The table: every HTTPRoute and GRPCRoute the waypoint knows. Opaque;
 * one thread (the waypoint's loop). */
struct veil_route_table;

/* One accepted version of one route (compiled). Opaque, reference counted:
 * a struct veil_route_match holds a reference (route.h). */
struct veil_route;

enum veil_route_kind {
    VEIL_ROUTE_HTTP = 0, /* HTTPRoute */
    VEIL_ROUTE_GRPC = 1, /* GRPCRoute */
};

/* A header as the engine sees it: length-delimited, not NUL-terminated. */
struct veil_route_hdr {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/*
 * One request, protocol-neutral: the engine fills it from an HTTP/1.1 head
 * or an HTTP/2 HEADERS frame. Borrowed for the duration of the call that
 * takes it.
 *
 * Growth rule: always initialise it with a designated initialiser (or zero
 * it). Fields are only ever appended, and a zero field means "not known",
 * so code written against this version keeps compiling and behaving the
 * same when later stages (LLM, MCP, ...) add theirs.
 */
struct veil_route_req {
    const char *method; /* "GET"; case-sensitive */
    size_t method_len;
    const char *path; /* origin form with the query: "/a/b?x=1" (HTTP/2 :path) */
    size_t path_len;
    const char *authority; /* Host or :authority, port included or not */
    size_t authority_len;
    const struct veil_route_hdr *headers; /* every field; pseudo-headers left out */
    size_t nheaders;
    const char *scheme;    /* "http" or "https"; NULL = "http" (redirects only) */
    uint16_t port;         /* the service port dialled (redirects only); 0 = unknown */
    const char *port_name; /* its name in the Service (a parentRef's sectionName
                              matches it); NULL or "" = none */
    bool grpc;             /* content-type application/grpc*: GRPCRoutes apply */
};

/* A header to set or add (filter data: NUL-terminated; names lower case). */
struct veil_route_kv {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};

/* RequestHeaderModifier / ResponseHeaderModifier. Empty = nothing to do. */
struct veil_route_header_mod {
    const struct veil_route_kv *set;
    size_t nset;
    const struct veil_route_kv *add;
    size_t nadd;
    const struct veil_route_kv *remove; /* names only (value NULL) */
    size_t nremove;
};

enum veil_route_path_mod {
    VEIL_ROUTE_PATH_KEEP = 0, /* path unchanged */
    VEIL_ROUTE_PATH_FULL,     /* ReplaceFullPath */
    VEIL_ROUTE_PATH_PREFIX,   /* ReplacePrefixMatch */
};

/* The path part of URLRewrite and RequestRedirect. */
struct veil_route_path {
    enum veil_route_path_mod type;
    const char *value; /* the replacement ("" allowed for PREFIX); NULL with KEEP */
};

/* URLRewrite. */
struct veil_route_rewrite {
    const char *hostname; /* new Host / :authority; NULL = unchanged */
    struct veil_route_path path;
};

/* RequestRedirect: answer `status` with a Location
 * (veil_route_redirect_location()). */
struct veil_route_redirect {
    const char *scheme;   /* "http", "https"; NULL = the request's */
    const char *hostname; /* NULL = the request's host */
    uint16_t port;        /* 0 = derived (route.h) */
    struct veil_route_path path;
    int status; /* 301, 302 (default), 303, 307, 308 */
};

/* RequestMirror: send a copy to a Service, ignore its answer. */
struct veil_route_mirror {
    const char *ns, *name; /* the Service */
    uint16_t port;         /* 0 = not given: the request's port */
    uint32_t numerator;    /* mirror numerator/denominator of requests */
    uint32_t denominator;  /* > 0; percent p is p/100; absent = 100/100 */
};

/* The filters of a rule or of one backendRef. Present ones have their
 * has_* flag set (header mods: their counts are non-zero). */
struct veil_route_filters {
    struct veil_route_header_mod request_headers;
    struct veil_route_header_mod response_headers;
    bool has_rewrite;
    struct veil_route_rewrite rewrite;
    bool has_redirect;
    struct veil_route_redirect redirect;
    const struct veil_route_mirror *mirrors;
    size_t nmirrors;
};

/* One backendRef. */
struct veil_route_backend {
    const char *ns, *name;                    /* the Service (namespace defaults to the route's) */
    uint16_t port;                            /* 0 = not given: the port the request came on */
    uint32_t weight;                          /* default 1; 0 = never picked */
    bool valid;                               /* false: not a Service (kind/group); answer 500 */
    const struct veil_route_filters *filters; /* backendRef filters, or NULL */
};

/* retry (HTTPRoute only). */
struct veil_route_retry {
    bool set;              /* the rule has a retry stanza */
    uint32_t attempts;     /* retries after the first try (default 2, as Istio) */
    const uint16_t *codes; /* statuses to retry on; may be empty (route.h) */
    size_t ncodes;
    uint64_t backoff_ms; /* 0 = not given: the engine's default */
};

struct veil_route__match; /* private */

/* One rule of an accepted route. Owned by its route; valid while a match
 * holding that route is held. */
struct veil_route_rule {
    const char *name; /* the rule's name, or NULL */
    size_t index;     /* its position in spec.rules */
    struct veil_route_filters filters;
    const struct veil_route_backend *backends;
    size_t nbackends;
    uint64_t request_timeout_ms; /* timeouts.request; 0 = none */
    uint64_t backend_timeout_ms; /* timeouts.backendRequest; 0 = none */
    struct veil_route_retry retry;

    const struct veil_route__match *_matches; /* at least one (the default) */
    size_t _nmatches;
    uint64_t _total_weight;
};

/* What veil_route_find() decided. */
enum veil_route_verdict {
    VEIL_ROUTE_NONE = 0,  /* no route attached to the service(:port): use the Service */
    VEIL_ROUTE_MATCHED,   /* `rule` applies */
    VEIL_ROUTE_NOT_FOUND, /* routes are attached, no rule matched: answer 404 */
};

/*
 * The result of a match. With VEIL_ROUTE_MATCHED it holds a reference to
 * the route, so `rule` and every string it points to stay valid through
 * later route updates until veil_route_release().
 */
struct veil_route_match {
    const struct veil_route_rule *rule;
    enum veil_route_kind kind;
    const char *route_ns, *route_name; /* the route the rule belongs to */
    const char *prefix; /* the PathPrefix that matched, trailing '/' removed ("" for "/");
                           NULL if the match was not a PathPrefix one */
    size_t prefix_len;

    struct veil_route *_route; /* the reference */
};

#endif
