/*
 * Istio's TCP metric labels and the per-connection access log of the node
 * proxy (docs/node.md). Pure helpers, testable without a proxy.
 */
#ifndef VEIL_NODE_TELEMETRY_H
#define VEIL_NODE_TELEMETRY_H

#include <stddef.h>
#include <stdint.h>

/* Label names of istio_tcp_*, in this order. */
#define VEIL_NODE_TCP_LABELS                                                                       \
    "reporter", "source_workload", "source_workload_namespace", "source_principal",                \
        "destination_workload", "destination_workload_namespace", "destination_principal",         \
        "destination_service", "connection_security_policy", "response_flags"
#define VEIL_NODE_TCP_NLABELS 10

/* What one proxied connection was, for its labels and its access-log line.
 * Strings may be NULL (rendered "unknown", or "-" for response_flags). */
struct veil_node_conn_info {
    const char *reporter; /* "source" (outbound) or "destination" (inbound) */
    const char *src_workload, *src_ns, *src_principal;
    const char *dst_workload, *dst_ns, *dst_principal;
    const char *dst_service;         /* "name.ns.svc.cluster.local", or the address */
    const char *security;            /* "mutual_tls" or "none" */
    const char *flags;               /* "-" ok; "UF", "DENY", "NR", ... */
    const char *src_addr, *dst_addr; /* "ip:port" */
    const char *reason;              /* why it ended, NULL: clean */
    const char *direction;           /* "outbound", "inbound", "inbound_plaintext", "passthrough" */
    uint64_t start_ms;               /* wall clock, ms since the epoch */
    uint64_t duration_ms;
    uint64_t sent, received; /* bytes to / from the destination */
    const char *via;         /* the waypoint the connection came through; NULL: none */
};

/* Fills vals[VEIL_NODE_TCP_NLABELS] (pointers into info or static strings). */
void veil_node_tcp_label_values(const struct veil_node_conn_info *info, const char **vals);

/* The access-log JSON line (with '\n') into buf; returns its length or
 * -ENOBUFS / -ENOMEM. */
int veil_node_access_log_line(const struct veil_node_conn_info *info, char *buf, size_t n);

#endif
