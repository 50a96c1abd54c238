/* Types of the node proxy's configuration tables; see config.h. */
#ifndef VEIL_NODE_CONFIG_T_H
#define VEIL_NODE_CONFIG_T_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What the control plane sends a node (docs/resources.md, "Update
 * messages"): workloads, services with their endpoints, and policies. */
enum veil_node_item_kind {
    VEIL_NODE_WORKLOAD = 1,
    VEIL_NODE_SERVICE,
    VEIL_NODE_AUTHZ_POLICY,
    VEIL_NODE_PEER_AUTHN,
    VEIL_NODE_OTHER, /* a kind the node does not use: kept, not indexed */
    VEIL_NODE_ROUTE, /* HTTPRoute, GRPCRoute: kept, not indexed; given to the route hooks */
};

/* The label that makes a workload a waypoint (its value: the waypoint's
 * name), as on Istio's waypoint pods. */
#define VEIL_NODE_WAYPOINT_LABEL "gateway.networking.k8s.io/gateway-name"

struct veil_node_wl {
    char *ns, *name, *node, *service_account, *identity;
    bool has_addr;
    struct in_addr addr;
    char addr_str[INET_ADDRSTRLEN];
    /* The value of its label VEIL_NODE_WAYPOINT_LABEL: the workload is the
     * waypoint of that name (in its namespace). NULL: not a waypoint. */
    char *waypoint;
};

/* A service port -> the endpoint's target port. */
struct veil_node_ep_port {
    uint16_t port, target;
};

struct veil_node_ep {
    char *workload; /* key "Workload/ns/name" */
    char *identity;
    char *node; /* may be NULL */
    bool has_addr;
    struct in_addr addr;
    size_t nports;
    struct veil_node_ep_port *ports;
};

struct veil_node_svc_port {
    char *name;
    uint16_t port;
};

/* The waypoint a Service's traffic goes through (spec.waypoint,
 * docs/resources.md): its HBONE address (port 15008) and identity. */
struct veil_node_svc_wp {
    char *name, *ns;
    char *identity; /* the SPIFFE ID the waypoint's certificate carries */
    char *workload; /* "Workload/ns/name", NULL if not given */
    struct in_addr addr;
};

struct veil_node_svc {
    char *ns, *name;
    bool has_vip;
    struct in_addr vip;
    size_t nports;
    struct veil_node_svc_port *ports;
    size_t neps;
    struct veil_node_ep *eps;
    unsigned _rr;      /* round-robin cursor */
    bool has_waypoint; /* traffic to the VIP goes through `waypoint` */
    struct veil_node_svc_wp waypoint;
};

struct json_t;

/* One item of the tables, under its key "Kind/ns/name". */
struct veil_node_item {
    char *key;
    enum veil_node_item_kind kind;
    char *ns, *name;
    struct json_t *json; /* the whole item as received (owned) */
    union {
        struct veil_node_wl *wl;
        struct veil_node_svc *svc;
    } u;
};

/* A hash map: string -> item (separate chaining). Entries own their key
 * copy, never the item. */
struct veil_node_idx_ent {
    char *k;
    struct veil_node_item *item;
    struct veil_node_idx_ent *next;
};
struct veil_node_idx {
    size_t n, cap;
    struct veil_node_idx_ent **b;
};

/* Called for each policy that changes in an applied update (json NULL when
 * it is removed) and once with key NULL when the update is a full
 * snapshot (before the snapshot's policies: forget all). */
struct veil_node_cfg_hooks {
    void *ctx;
    /* Checks a policy item before anything is applied: 0, or -EINVAL with a
     * reason in err. NULL: accept. */
    int (*check_policy)(void *ctx, const struct veil_node_item *it, char *err, size_t errlen);
    void (*policy)(void *ctx, const char *key, const struct veil_node_item *it);
};

/* The same for routes (VEIL_NODE_ROUTE: HTTPRoute, GRPCRoute; set with
 * veil_node_cfg_set_route_hooks()): `check` before anything is applied
 * (NULL: accept), then `route` for each one that changes in an applied
 * update (it NULL: removed), and once with key NULL when the update is a
 * full snapshot (before its routes: forget all). NULL: not told. */
struct veil_node_cfg_route_hooks {
    void *ctx;
    int (*check)(void *ctx, const struct veil_node_item *it, char *err, size_t errlen);
    void (*route)(void *ctx, const char *key, const struct veil_node_item *it);
};

struct veil_node_cfg {
    uint64_t version;
    bool loaded;                /* a configuration was applied (from the control plane or disk) */
    struct veil_node_idx items; /* key -> item (the table owns the items) */
    struct veil_node_idx wl_by_ip;    /* "a.b.c.d" -> workload item */
    struct veil_node_idx svc_by_vip;  /* "a.b.c.d" -> service item */
    struct veil_node_idx svc_by_name; /* "ns/name" -> service item */
    struct veil_node_idx ep_by_ip;    /* endpoint "a.b.c.d" -> a service item listing it */
    struct veil_node_cfg_hooks hooks;
    struct veil_node_idx wp_by_id;    /* SPIFFE ID -> a waypoint workload item with it */
    struct veil_node_idx wpsvc_by_id; /* SPIFFE ID -> a Service item whose waypoint has it */
    struct veil_node_cfg_route_hooks route_hooks;
};

#endif
