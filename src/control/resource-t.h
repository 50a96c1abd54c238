/*
 * Typed configuration resources. See resource.h for the contract.
 */
#ifndef VEIL_CONTROL_RESOURCE_T_H
#define VEIL_CONTROL_RESOURCE_T_H

#include "core/arena-t.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum veil_res_kind {
    VEIL_RES_NAMESPACE,
    VEIL_RES_SERVICE_ACCOUNT,
    VEIL_RES_SERVICE,
    VEIL_RES_POD,
    VEIL_RES_WORKLOAD_ENTRY,
    VEIL_RES_AUTHZ_POLICY,
    VEIL_RES_PEER_AUTHN,
    VEIL_RES_HTTP_ROUTE, /* gateway.networking.k8s.io HTTPRoute */
    VEIL_RES_GRPC_ROUTE, /* gateway.networking.k8s.io GRPCRoute */
    VEIL_RES_IGNORED,    /* a kind veil does not know (yet): kept and listed */
    VEIL_RES_NKINDS,
};

/* Where a resource came from: the watched directory or `veil apply`. */
enum veil_res_source {
    VEIL_RES_SRC_DIR,
    VEIL_RES_SRC_API,
    VEIL_RES_NSOURCES,
};

struct veil_res_label {
    const char *key;
    const char *value;
};

/* Labels, annotations or a selector, sorted by key, keys unique. */
struct veil_res_labels {
    const struct veil_res_label *v;
    size_t n;
};

struct veil_res_svc_port {
    const char *name;         /* "" when not given (allowed for a single port) */
    const char *protocol;     /* "TCP" (default), "UDP", "SCTP" */
    const char *app_protocol; /* NULL when not given */
    uint16_t port;
    uint16_t target_port;    /* 0 when target_name is set */
    const char *target_name; /* a named targetPort, or NULL */
};

struct veil_res_service {
    bool has_selector; /* false: no endpoints (Kubernetes' selector-less Service) */
    struct veil_res_labels selector;
    const struct veil_res_svc_port *ports;
    size_t nports;
    const char *cluster_ip; /* as written: NULL (allocate), "None" (headless) or canonical IP */
};

/* A named port of a workload: Pod containers[].ports[], WorkloadEntry ports. */
struct veil_res_named_port {
    const char *name;
    uint16_t port;
};

/* Pod and WorkloadEntry. */
struct veil_res_workload {
    const char *address;         /* canonical IP, or NULL (a Pod not yet running) */
    const char *node;            /* node name, or NULL */
    const char *service_account; /* never NULL ("default") */
    const struct veil_res_named_port *ports;
    size_t nports;
};

enum veil_res_action {
    VEIL_RES_ALLOW,
    VEIL_RES_DENY,
    VEIL_RES_AUDIT,
};

struct veil_res_authz {
    bool has_selector;
    struct veil_res_labels selector;
    enum veil_res_action action;
    size_t nrules;
    bool has_target_refs; /* targetRef(s): attaches to a waypoint, not to workloads */
    const char *l7_field; /* the first field only a waypoint can check, e.g.
                             "spec.rules[0].to[0].operation.methods"; NULL: none */
};

enum veil_res_mtls {
    VEIL_RES_MTLS_UNSET,
    VEIL_RES_MTLS_DISABLE,
    VEIL_RES_MTLS_PERMISSIVE,
    VEIL_RES_MTLS_STRICT,
};

struct veil_res_port_mtls {
    uint16_t port;
    enum veil_res_mtls mode;
};

struct veil_res_peer_authn {
    bool has_selector;
    struct veil_res_labels selector;
    enum veil_res_mtls mode;
    const struct veil_res_port_mtls *ports;
    size_t nports;
};

/*
 * A Gateway API reference: a parentRef, a backendRef or a RequestMirror's
 * backendRef, with the spec's defaults filled in.
 */
struct veil_res_ref {
    const char *group; /* parentRef: default "gateway.networking.k8s.io"; backendRef: "" */
    const char *kind;  /* parentRef: default "Gateway"; backendRef: "Service" */
    const char *ns;    /* default: the route's namespace */
    const char *name;
    uint16_t port;            /* 0: not given */
    const char *section_name; /* parentRef only; NULL: not given */
};

/* HTTPRoute and GRPCRoute. */
struct veil_res_route {
    const struct veil_res_ref *parents;
    size_t nparents;
    const struct veil_res_ref *backends; /* backendRefs and RequestMirror backendRefs, in order */
    size_t nbackends;
    size_t nrules;
};

/*
 * One validated resource. Immutable once handed to the store; every string
 * lives in the resource's own arena. `u` holds the member of `kind`
 * (workload for both POD and WORKLOAD_ENTRY).
 */
struct veil_res {
    enum veil_res_kind kind;
    const char *kind_name;   /* as written: "Service", "HTTPRoute", ... */
    const char *api_version; /* as written */
    const char *ns;          /* "" for cluster-scoped kinds (Namespace) */
    const char *name;
    const char *id; /* "Kind/ns/name", "Kind/name" when cluster-scoped; ignored kinds
                       with a group: "Kind.group/ns/name" */
    struct veil_res_labels labels;
    struct veil_res_labels annotations;
    enum veil_res_source source;
    const char *file; /* where it was written */
    uint32_t line;
    uint64_t version;       /* the store version of its last change; 0 before the store */
    const char *cluster_ip; /* Service: the address in force (set by the store), or NULL */
    json_t *raw;            /* the document as JSON (owned reference) */
    union {
        struct veil_res_service svc;
        struct veil_res_workload wl;
        struct veil_res_authz authz;
        struct veil_res_peer_authn pa;
        struct veil_res_route route;
    } u;
    struct veil_arena _arena;
};

#endif
