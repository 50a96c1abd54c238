/* Types of L4 authorization and peer authentication; see authz.h. */
#ifndef VEIL_NODE_AUTHZ_T_H
#define VEIL_NODE_AUTHZ_T_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The root namespace by default: its policies apply mesh-wide. */
#define VEIL_AUTHZ_ROOT_NS "istio-system"

/* "namespace/name" of a policy, as written into the name outputs. */
#define VEIL_AUTHZ_NAME_MAX 320

/* The AuthorizationPolicy and PeerAuthentication sets of one node. Opaque;
 * single-threaded (the node proxy's config thread owns it). */
struct veil_authz;

enum veil_authz_verdict {
    VEIL_AUTHZ_ALLOW = 0,
    VEIL_AUTHZ_DENY = 1,
};

/* Why a verdict was reached (struct veil_authz_decision). */
enum veil_authz_reason {
    VEIL_AUTHZ_NO_POLICY = 0,    /* allow: no ALLOW policy applies to the workload */
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

/* The whole decision of veil_authz_decide(). */
struct veil_authz_decision {
    enum veil_authz_verdict verdict;
    enum veil_authz_reason reason;
    char policy[VEIL_AUTHZ_NAME_MAX]; /* "ns/name" deciding, or "" */
    char audit[VEIL_AUTHZ_NAME_MAX];  /* first AUDIT policy that matched, or "" */
};

#endif
