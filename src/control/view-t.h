/*
 * Per-node views types. See view.h for the contract.
 */
#ifndef VEIL_CONTROL_VIEW_T_H
#define VEIL_CONTROL_VIEW_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct veil_views;
struct veil_view_sub;

struct veil_views_opts {
    const char *trust_domain; /* NULL: "cluster.local" */
    const char *root_ns;      /* NULL: "istio-system" */
    size_t node_log_max;      /* per-node delta log entries; 0: 10000 */
};

/* What status shows of one node. Strings valid until the next call into the views. */
struct veil_view_node_status {
    const char *name;
    bool subscribed;         /* a (non-observer) stream is open */
    size_t workloads;        /* workloads registered on the node */
    uint64_t sent;           /* version of the last update sent (0: none) */
    uint64_t acked;          /* last version acknowledged (0: none) */
    uint64_t nacked;         /* last version rejected (0: none) */
    const char *nack_reason; /* reason of that rejection, or NULL */
};

#endif
