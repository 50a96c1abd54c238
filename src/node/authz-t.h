/* Types of authorization (L4 at the node proxy, L7 at the waypoint) and peer
 * authentication; see authz.h. */
#ifndef VEIL_NODE_AUTHZ_T_H
#define VEIL_NODE_AUTHZ_T_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The root namespace by default: its policies apply mesh-wide. */
#define VEIL_AUTHZ_ROOT_NS "istio-system"

/* The GatewayClass of waypoints: a root-namespace policy whose targetRef is
 * this class binds to every waypoint. */
#define VEIL_AUTHZ_WAYPOINT_CLASS "istio-waypoint"

/* "namespace/name" of a policy, as written into the name outputs. */
#define VEIL_AUTHZ_NAME_MAX 320

/* The AuthorizationPolicy and PeerAuthentication sets of one node (or one
 * waypoint). Opaque; single-threaded (the config thread owns it). */
struct veil_authz;

enum veil_authz_verdict {
    VEIL_AUTHZ_ALLOW = 0,
    VEIL_AUTHZ_DENY = 1,
};

/* Why a verdict was reached (struct veil_authz_decision). */
enum veil_authz_reason {
    VEIL_AUTHZ_NO_POLICY = 0,    /* allow: no ALLOW policy applies to the workload/request */
    VEIL_AUTHZ_ALLOW_MATCHED,    /* allow: `policy` is the ALLOW policy that matched */
    VEIL_AUTHZ_DENY_MATCHED,     /* deny: `policy` is the DENY policy that matched */
    VEIL_AUTHZ_NO_ALLOW_MATCHED, /* deny: ALLOW policies apply, none matched */
};

enum veil_mtls_mode {
    VEIL_MTLS_PERMISSIVE = 0, /* the default: mTLS and plaintext accepted */
    VEIL_MTLS_STRICT,         /* only mTLS (HBONE) accepted */
    VEIL_MTLS_DISABLE,        /* plaintext; HBONE still terminated (ambient) */
};

/*
 * Label accessor of a workload: get(arg, key) returns the value of label
 * `key` or NULL. veil_authz_json_label() reads a jansson object of strings
 * (the "labels" of a Workload item).
 */
struct veil_authz_labels {
    const char *(*get)(const void *arg, const char *key);
    const void *arg;
};

/* An IPv4 or IPv6 address; family 0 = unknown (matches no IP rule, and every
 * notIpBlocks rule). IPv4-mapped IPv6 addresses are compared as IPv4. */
struct veil_authz_ip {
    int family; /* 0, AF_INET or AF_INET6 */
    union {
        struct in_addr v4;
        struct in6_addr v6;
    } u;
};

/* One connection to authorize (inbound, at the destination's node). */
struct veil_authz_req {
    const char *dst_ns;                  /* destination workload's namespace */
    struct veil_authz_labels dst_labels; /* its labels; get NULL = no labels */
    uint16_t dst_port;                   /* the port the workload is reached on */
    struct veil_authz_ip dst_ip;         /* for destination.ip conditions; may be unknown */
    /* The peer's verified SPIFFE ID "spiffe://td/ns/X/sa/Y"; NULL for
     * plaintext (unauthenticated: principals/namespaces never match it). */
    const char *src_principal;
    /* NULL = derived from src_principal (its /ns/X/ part). */
    const char *src_ns;
    struct veil_authz_ip src_ip;
};

/* A byte string that need not end in NUL (a span of a parser's buffer).
 * ptr NULL = absent; ptr non-NULL with len 0 = present and empty. */
struct veil_authz_str {
    const char *ptr;
    size_t len;
};

/* One request field line; names compare case-insensitively. */
struct veil_authz_header {
    struct veil_authz_str name;
    struct veil_authz_str value;
};

/*
 * One request (or one opaque TCP connection) at a waypoint; see
 * veil_authz_decide_l7(). Everything is borrowed for the call only.
 */
struct veil_authz_l7_req {
    /* Binding: which targetRef'd policies apply. */
    const char *wp_ns, *wp_name;   /* the waypoint (its Gateway); NULL = none */
    const char *svc_ns, *svc_name; /* the destination Service; NULL = not a Service */

    /* L4 attributes, as in struct veil_authz_req. */
    const char *src_principal; /* the original caller's SPIFFE ID; NULL = plaintext */
    const char *src_ns;        /* NULL = derived from src_principal */
    struct veil_authz_ip src_ip;
    /* remote.ip / remoteIpBlocks (the client address from X-Forwarded-For,
     * if the waypoint trusts it); family 0 = src_ip. */
    struct veil_authz_ip remote_ip;
    struct veil_authz_ip dst_ip; /* the address the client dialled (the VIP) */
    uint16_t dst_port;           /* the port the client dialled (the service port) */

    /* L7 attributes. http false: an opaque TCP connection, the L7 fields of
     * the policies are handled as the node proxy handles them. */
    bool http;
    struct veil_authz_str method; /* "GET" */
    /* The request target in origin form, query included ("/a/b?x=1"): paths
     * match the part before '?' (or '#'); :path in conditions is all of it. */
    struct veil_authz_str path;
    struct veil_authz_str host; /* Host / :authority as received (port kept) */
    const struct veil_authz_header *headers;
    size_t nheaders;
};

/* The whole decision of veil_authz_decide() / veil_authz_decide_l7(). */
struct veil_authz_decision {
    enum veil_authz_verdict verdict;
    enum veil_authz_reason reason;
    char policy[VEIL_AUTHZ_NAME_MAX]; /* "ns/name" deciding, or "" */
    char audit[VEIL_AUTHZ_NAME_MAX];  /* first AUDIT policy that matched, or "" */
};

#endif
