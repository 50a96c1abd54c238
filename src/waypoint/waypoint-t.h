/* Types of the waypoint's L7 engine; see waypoint.h for the contract. */
#ifndef VEIL_WAYPOINT_WAYPOINT_T_H
#define VEIL_WAYPOINT_WAYPOINT_T_H

#include <stdint.h>

struct veil_loop;
struct veil_hbone_pool;
struct veil_tls_ctx;
struct veil_node_cfg;
struct veil_metrics;

/* The engine. Opaque. */
struct veil_wp;

/* What the host gives the engine (borrowed). */
struct veil_wp_env {
    struct veil_loop *loop;
    const struct veil_node_cfg *cfg; /* services, endpoints, workloads */
    struct veil_hbone_pool *pool;    /* upstream HBONE connections */
    struct veil_tls_ctx *client_tls; /* the waypoint identity's client context */
    const char *ns, *name;           /* the waypoint (Gateway) namespace and name */
    const char *identity;            /* its SPIFFE ID */
    struct veil_metrics *metrics;    /* the host's registry (istio_requests_total, ...) */
    uint16_t upstream_port;          /* HBONE port of the pods; 0: 15008 (tests change it) */
    int access_log_fd;               /* JSON access-log lines; 0: stderr, -1: none */
};

#endif
