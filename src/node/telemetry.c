/* The node proxy's metric families (docs/node.md, "Metrics"). */
#include "node/node-int.h"
#include "node/telemetry.h"

#include "core/container.h"
#include "core/metrics.h"
#include "hbone/hbone.h"

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
    static const char *const side[] = {"side"};
    m->hb_handshake = veil_metrics_counter(
        r, "veil_node_hbone_handshake_failures_total",
        "HBONE TLS handshakes refused (not TLS, bad or foreign certificate, no h2)", 1, side);
    m->hb_proto = veil_metrics_counter(r, "veil_node_hbone_protocol_errors_total",
                                       "HBONE connections closed for bad HTTP/2", 1, side);
    m->hb_bad_req = veil_metrics_counter(r, "veil_node_hbone_bad_requests_total",
                                         "Malformed CONNECT requests answered 400", 1, side);
    m->hb_conns =
        veil_metrics_counter(r, "veil_node_hbone_connections_total",
                             "HBONE connections accepted (server) or dialled (pool)", 1, side);
    m->hb_mismatch = veil_metrics_counter(
        r, "veil_node_hbone_identity_mismatch_total",
        "HBONE servers whose certificate was not the expected identity", 1, side);
    if (node__is_waypoint(n)) {
        f = veil_metrics_gauge(r, "veil_waypoint_open_tunnels",
                               "HBONE tunnels open on the waypoint's port 15008", 0, NULL);
        m->wp_tunnels = veil_metrics_series(f, NULL);
    }
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
    if (o != NULL && info->via != NULL &&
        json_object_set_new(o, "via", json_string(info->via)) != 0) {
        json_decref(o);
        o = NULL;
    }
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

static void add(struct veil_node *n, const struct veil_hbone_stats *st, uint64_t base_hs,
                uint64_t base_proto, uint64_t base_bad, uint64_t base_conns, int i)
{
    static const char *const sides[2][1] = {{"server"}, {"client"}};
    struct veil_node_hbone_totals now = {
        base_hs + st->handshake_failures, base_proto + st->protocol_errors,
        base_bad + st->bad_requests, base_conns + st->connections_total, st->identity_mismatch};
    struct veil_node_hbone_totals *last = &n->hb_reported[i];
    struct veil_node_metrics *m = &n->m;
#define BUMP(fam, f)                                                                               \
    if (now.f > last->f)                                                                           \
        veil_metrics_counter_add(veil_metrics_series(m->fam, sides[i]), now.f - last->f);
    BUMP(hb_handshake, handshake)
    BUMP(hb_proto, proto)
    BUMP(hb_bad_req, bad_req)
    BUMP(hb_conns, conns)
    BUMP(hb_mismatch, mismatch)
#undef BUMP
    *last = now;
}

void node__metrics_keep_hbone(struct veil_node *n, const struct veil_node_pod *p)
{
    struct veil_hbone_stats st;
    if (p->hbone == NULL)
        return;
    veil_hbone_server_stats(p->hbone, &st);
    n->hb_gone.handshake += st.handshake_failures;
    n->hb_gone.proto += st.protocol_errors;
    n->hb_gone.bad_req += st.bad_requests;
    n->hb_gone.conns += st.connections_total;
}

void node__metrics_sync(struct veil_node *n)
{
    struct veil_hbone_stats sum = {0}, st;
    for (struct veil_node_link *l = n->pods.next; l != &n->pods; l = l->next) {
        const struct veil_node_pod *p = VEIL_CONTAINER_OF(l, struct veil_node_pod, link);
        if (p->hbone == NULL)
            continue;
        veil_hbone_server_stats(p->hbone, &st);
        sum.handshake_failures += st.handshake_failures;
        sum.protocol_errors += st.protocol_errors;
        sum.bad_requests += st.bad_requests;
        sum.connections_total += st.connections_total;
    }
    node__wp_stats(n, &st);
    sum.handshake_failures += st.handshake_failures;
    sum.protocol_errors += st.protocol_errors;
    sum.bad_requests += st.bad_requests;
    sum.connections_total += st.connections_total;
    if (n->m.wp_tunnels != NULL)
        veil_metrics_gauge_set(n->m.wp_tunnels, (double)st.streams);
    add(n, &sum, n->hb_gone.handshake, n->hb_gone.proto, n->hb_gone.bad_req, n->hb_gone.conns, 0);
    if (n->pool != NULL) {
        veil_hbone_pool_stats(n->pool, &st);
        add(n, &st, 0, 0, 0, 0, 1);
    }
}
