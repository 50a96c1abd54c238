/*
 * The node proxy, `veil node` (Istio's ztunnel role; docs/node.md): one
 * process per node that joins the control plane, keeps the node's
 * configuration, enrols pods over DIR/node.sock and carries their traffic
 * over HBONE.
 *
 * veil_node_run() is the whole life of the process: it returns when the
 * process receives SIGTERM or SIGINT (0) or when start-up fails (1, with the
 * reason logged). Everything it allocated is freed before it returns.
 */
#ifndef VEIL_NODE_NODE_H
#define VEIL_NODE_NODE_H

#include <stdint.h>

struct veil_node_opts {
    const char *name;       /* the node's name (DNS-1123 subdomain); required */
    const char *state_dir;  /* required; created 0700 if missing */
    const char *control;    /* "ADDR:PORT" of the control plane's push port */
    const char *token_file; /* join token "<secret>.<pin>", needed for the first join */
    int metrics_port;       /* -1: VEIL_PORT_METRICS (15020); 0: ephemeral */
    int ready_port;         /* -1: VEIL_PORT_READINESS (15021); 0: ephemeral */
    int admin_port;         /* -1: VEIL_PORT_ADMIN (15000, 127.0.0.1); 0: ephemeral */
    const char *bind;       /* address of metrics and readiness; NULL: 0.0.0.0 */
    /* Waypoint mode (`veil waypoint run`, docs/waypoint.md) when both are
     * set: the process runs in the waypoint pod's netns, joins as the
     * pseudo-node "wp.<ns>.<name>" (name may then be NULL), enrols no pods
     * (no node.sock, no capture), gets the certificate of
     * spiffe://<td>/ns/<waypoint_ns>/sa/<waypoint_name> and serves HBONE on
     * 0.0.0.0:15008, handing each CONNECT to the L7 engine
     * (waypoint/waypoint.h). Readiness is 200 once 15008 listens. SIGTERM
     * drains: 15008 stops accepting, readiness turns 503, and the process
     * exits once no tunnel is open or after drain_ms. */
    const char *waypoint_ns, *waypoint_name;
    int drain_ms; /* waypoint mode; 0: VEIL_NODE_WP_DRAIN_MS */
};

#define VEIL_NODE_WP_DRAIN_MS 2000

int veil_node_run(const struct veil_node_opts *opts);

#endif
