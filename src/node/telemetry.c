/* The node proxy's metric families (docs/node.md, "Metrics"). */
#include "node/node-int.h"
#include "node/telemetry.h"

#include "core/metrics.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const tcp_labels[] = {VEIL_NODE_TCP_LABELS};

int node__metrics_setup(struct veil_node *n)
{
    struct veil_metrics *r = n->metrics = veil_metrics_new();
    if (r == NULL)
        return -ENOMEM;
    const size_t nl = sizeof(tcp_labels) / sizeof(tcp_labels[0]);
    static const char *const reason[] = {"reason"};
    struct veil_node_metrics *m = &n->m;
    m->opened = veil_metrics_counter(r, "istio_tcp_connections_opened_total",
                                     "TCP connections opened", nl, tcp_labels);
    m->closed = veil_metrics_counter(r, "istio_tcp_connections_closed_total",
                                     "TCP connections closed", nl, tcp_labels);
    m->sent = veil_metrics_counter(r, "istio_tcp_sent_bytes_total",
                                   "Bytes sent to the destination (request side)", nl, tcp_labels);
    m->received =
        veil_metrics_counter(r, "istio_tcp_received_bytes_total",
                             "Bytes received from the destination (response side)", nl, tcp_labels);
    m->refused = veil_metrics_counter(r, "veil_node_refused_total",
                                      "Connections and requests refused, by reason", 1, reason);
    struct veil_metrics_family *f;
    f = veil_metrics_counter(r, "veil_node_config_updates_applied_total",
                             "Configuration updates applied", 0, NULL);
    m->cfg_applied = veil_metrics_series(f, NULL);
    f = veil_metrics_counter(r, "veil_node_config_updates_rejected_total",
                             "Configuration updates refused (nacked)", 0, NULL);
    m->cfg_rejected = veil_metrics_series(f, NULL);
    f = veil_metrics_gauge(r, "veil_node_config_version", "Configuration version in force", 0,
                           NULL);
    m->cfg_version = veil_metrics_series(f, NULL);
    f = veil_metrics_gauge(r, "veil_node_control_plane_connected",
                           "1 while the watch stream to the control plane is up", 0, NULL);
    m->connected = veil_metrics_series(f, NULL);
    f = veil_metrics_gauge(r, "veil_node_pods", "Pods enrolled on this node", 0, NULL);
    m->pods = veil_metrics_series(f, NULL);
    f = veil_metrics_counter(r, "veil_node_enrolment_errors_total", "Pod enrolments that failed", 0,
                             NULL);
    m->enrol_errors = veil_metrics_series(f, NULL);
    f = veil_metrics_counter(r, "veil_node_certificates_issued_total",
                             "Workload certificates obtained from the control plane", 0, NULL);
    m->certs = veil_metrics_series(f, NULL);
    f = veil_metrics_counter(r, "veil_node_certificate_errors_total",
                             "Workload certificate requests that failed", 0, NULL);
    m->cert_errors = veil_metrics_series(f, NULL);
    if (m->opened == NULL || m->closed == NULL || m->sent == NULL || m->received == NULL ||
        m->refused == NULL)
        return -ENOMEM;
    return 0;
}

static const char *or_unknown(const char *s)
{
    return s != NULL && s[0] != '\0' ? s : "unknown";
}

void veil_node_tcp_label_values(const struct veil_node_conn_info *info, const char **vals)
{
    vals[0] = or_unknown(info->reporter);
    vals[1] = or_unknown(info->src_workload);
    vals[2] = or_unknown(info->src_ns);
    vals[3] = or_unknown(info->src_principal);
    vals[4] = or_unknown(info->dst_workload);
    vals[5] = or_unknown(info->dst_ns);
    vals[6] = or_unknown(info->dst_principal);
    vals[7] = or_unknown(info->dst_service);
    vals[8] = info->security != NULL ? info->security : "none";
    vals[9] = info->flags != NULL && info->flags[0] != '\0' ? info->flags : "-";
}

int veil_node_access_log_line(const struct veil_node_conn_info *info, char *buf, size_t n)
{
    const char *v[VEIL_NODE_TCP_NLABELS];
    veil_node_tcp_label_values(info, v);
    time_t secs = (time_t)(info->start_ms / 1000);
    struct tm tm;
    char ts[64];
    gmtime_r(&secs, &tm);
    size_t tl = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts + tl, sizeof(ts) - tl, ".%03uZ", (unsigned)(info->start_ms % 1000));
    json_t *o = json_pack(
        "{s:s,s:s,s:s,s:I,s:s?,s:s?,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:s,s:s,s:s?}", "start", ts,
        "type", "access", "direction", info->direction != NULL ? info->direction : "",
        "duration_ms", (json_int_t)info->duration_ms, "src", info->src_addr, "dst", info->dst_addr,
        "src_workload", v[1], "src_namespace", v[2], "src_principal", v[3], "dst_workload", v[4],
        "dst_namespace", v[5], "dst_principal", v[6], "dst_service", v[7], "bytes_sent",
        (json_int_t)info->sent, "bytes_received", (json_int_t)info->received, "security", v[8],
        "response_flags", v[9], "reason", info->reason);
    char *text = o != NULL ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (text == NULL)
        return -ENOMEM;
    size_t l = strlen(text);
    if (l + 2 > n) {
        free(text);
        return -ENOBUFS;
    }
    memcpy(buf, text, l);
    buf[l] = '\n';
    buf[l + 1] = '\0';
    free(text);
    return (int)(l + 1);
}
