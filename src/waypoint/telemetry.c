/*
 * The waypoint's request telemetry (docs/waypoint.md, "Telemetry"): Istio's
 * request metrics with Istio's labels, a JSON access-log line per request
 * (stderr by default, written in batches), and W3C traceparent.
 */
#include "waypoint/wp-int.h"

#include "core/alloc.h"
#include "core/container.h"
#include "core/file.h"
#include "core/fmt.h"
#include "core/jsonw.h"
#include "core/loop.h"
#include "core/metrics.h"
#include "http/h1.h"

#include <errno.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *const req_labels[] = {
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
};
#define NREQ_LABELS (sizeof(req_labels) / sizeof(req_labels[0]))

static const char *const tcp_labels[] = {
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_principal",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_service",
    "connection_security_policy",
    "response_flags",
};
#define NTCP_LABELS (sizeof(tcp_labels) / sizeof(tcp_labels[0]))

int wp__metrics_setup(struct veil_wp *wp)
{
    struct veil_metrics *reg = wp->env.metrics;
    if (reg == NULL)
        return 0;
    static const double ms[] = {0.5, 1,    5,    10,   25,    50,    100,   250,
                                500, 1000, 2500, 5000, 10000, 30000, 60000, 300000};
    static const double bytes[] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};
    struct wp_metrics *m = &wp->m;
    m->requests = veil_metrics_counter(reg, "istio_requests_total", "Requests through the waypoint",
                                       NREQ_LABELS, req_labels);
    m->duration = veil_metrics_histogram(reg, "istio_request_duration_milliseconds",
                                         "Request duration, first byte in to last byte out",
                                         NREQ_LABELS, req_labels, sizeof(ms) / sizeof(ms[0]), ms);
    m->req_bytes =
        veil_metrics_histogram(reg, "istio_request_bytes", "Request sizes (head and body)",
                               NREQ_LABELS, req_labels, sizeof(bytes) / sizeof(bytes[0]), bytes);
    m->resp_bytes =
        veil_metrics_histogram(reg, "istio_response_bytes", "Response body sizes", NREQ_LABELS,
                               req_labels, sizeof(bytes) / sizeof(bytes[0]), bytes);
    m->tcp_opened = veil_metrics_counter(reg, "istio_tcp_connections_opened_total",
                                         "TCP connections opened", NTCP_LABELS, tcp_labels);
    m->tcp_closed = veil_metrics_counter(reg, "istio_tcp_connections_closed_total",
                                         "TCP connections closed", NTCP_LABELS, tcp_labels);
    static const char *const mirror_labels[] = {"result"};
    m->mirrors = veil_metrics_counter(reg, "veil_waypoint_mirrors_total",
                                      "RequestMirror copies: ok (sent, answered), error (dial, "
                                      "reset, timeout), dropped (not sent)",
                                      1, mirror_labels);
    if (m->requests == NULL || m->duration == NULL || m->req_bytes == NULL ||
        m->resp_bytes == NULL || m->tcp_opened == NULL || m->tcp_closed == NULL ||
        m->mirrors == NULL)
        return -errno;
    return 0;
}

static const char *or_unknown(const char *s)
{
    return s != NULL && s[0] != '\0' ? s : "unknown";
}

static void hex(struct veil_wp *wp, char *out, size_t nbytes)
{
    static const char digits[] = "0123456789abcdef";
    uint64_t bits = 0;
    for (size_t i = 0; i < nbytes; i++) {
        if (i % 8 == 0)
            bits = wp__rand(wp);
        unsigned v = (unsigned)(bits & 0xff);
        bits >>= 8;
        out[2 * i] = digits[v >> 4];
        out[2 * i + 1] = digits[v & 15];
    }
    out[2 * nbytes] = '\0';
}

static bool is_lower_hex(const char *s, size_t n)
{
    bool nonzero = false;
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
        nonzero |= s[i] != '0';
    }
    return nonzero;
}

/*
 * W3C trace context: a valid incoming "00-<trace-id>-<parent-id>-<flags>"
 * keeps its trace id and flags and gets a new parent id (the waypoint is a
 * hop); anything else starts a new trace, sampled.
 */
void wp__traceparent(struct veil_wp *wp, const char *in, size_t n, char out[56])
{
    char span[17];
    hex(wp, span, 8);
    if (n == 55 && in[0] == '0' && in[1] == '0' && in[2] == '-' && in[35] == '-' && in[52] == '-' &&
        is_lower_hex(in + 3, 32) && is_lower_hex(in + 36, 16) &&
        (is_lower_hex(in + 53, 2) || (in[53] == '0' && in[54] == '0'))) {
        memcpy(out, in, 36); /* "00-" and the trace id and its '-' */
        memcpy(out + 36, span, 16);
        memcpy(out + 52, in + 52, 3); /* '-' and the flags */
        out[55] = '\0';
        return;
    }
    char trace[33];
    hex(wp, trace, 16);
    veil_fmt_cat(out, 56, "00-", trace, "-", span, "-01");
}

void wp__alog_flush(struct veil_wp *wp)
{
    veil_timer_stop(&wp->alog_timer);
    if (wp->alog != NULL && wp->alog_len > 0 && wp->alog_fd >= 0)
        (void)veil_write_all(wp->alog_fd, wp->alog, wp->alog_len);
    veil_free(wp->alog);
    wp->alog = NULL;
    wp->alog_len = 0;
}

static void alog_timer_cb(struct veil_timer *t)
{
    wp__alog_flush(VEIL_CONTAINER_OF(t, struct veil_wp, alog_timer));
}

/* "KEY" then a value; the keys are literals (their length from sizeof). */
static void kv_str_n(struct veil_jw *w, const char *key, size_t klen, const char *v, size_t n)
{
    veil_jw_raw(w, key, klen);
    veil_jw_str(w, v, n);
}

/* A NUL-terminated value; NULL reads "". */
static void kv_cstr_n(struct veil_jw *w, const char *key, size_t klen, const char *v)
{
    kv_str_n(w, key, klen, v != NULL ? v : "", v != NULL ? strlen(v) : 0);
}

static void kv_num_n(struct veil_jw *w, const char *key, size_t klen, uint64_t v)
{
    veil_jw_raw(w, key, klen);
    veil_jw_u64(w, v);
}

#define kv_str(w, key, v, n) kv_str_n((w), "" key, sizeof(key) - 1, (v), (n))
#define kv_cstr(w, key, v)   kv_cstr_n((w), "" key, sizeof(key) - 1, (v))
#define kv_num(w, key, v)    kv_num_n((w), "" key, sizeof(key) - 1, (v))

/* The line (Envoy's default JSON access-log fields, as Istio names them),
 * with its newline. */
static void alog_line(struct veil_jw *w, const struct wp_conn *c, const struct wp_record *rec,
                      const char *ts, const char *up)
{
    const char *flags = rec->flags != NULL ? rec->flags : "-";
    const char *sp = or_unknown(c->src_principal), *ds = or_unknown(c->svc_name);
    kv_cstr(w, "{\"start_time\":", ts);
    VEIL_JW_LIT(w, ",\"reporter\":\"waypoint\"");
    kv_str(w, ",\"method\":", rec->method, rec->method_len);
    kv_str(w, ",\"path\":", rec->path, rec->path_len);
    kv_str(w, ",\"authority\":", rec->authority, rec->authority_len);
    kv_cstr(w, ",\"protocol\":", rec->http_version);
    kv_num(w, ",\"response_code\":", rec->status);
    kv_cstr(w, ",\"response_flags\":", flags);
    kv_num(w, ",\"bytes_received\":", rec->req_bytes);
    kv_num(w, ",\"bytes_sent\":", rec->resp_bytes);
    kv_num(w, ",\"duration\":", rec->dur_ms);
    kv_cstr(w, ",\"upstream_host\":", up);
    kv_cstr(w, ",\"source_principal\":", sp);
    kv_cstr(w, ",\"destination_service\":", ds);
    kv_cstr(w, ",\"backend\":", rec->backend);
    kv_cstr(w, ",\"traceparent\":", rec->traceparent);
    if (rec->grpc) {
        const char *g = rec->grpc_status != NULL ? rec->grpc_status : "-";
        kv_cstr(w, ",\"grpc_status\":", g);
    } else {
        if (rec->retried)
            VEIL_JW_LIT(w, ",\"attempts\":\"retried\"");
        else
            VEIL_JW_LIT(w, ",\"attempts\":\"once\"");
    }
    VEIL_JW_LIT(w, "}\n");
}

/* One JSON line per request, added to the lines that wait; written when
 * they would overflow WP_ALOG_BYTES or WP_ALOG_FLUSH_MS after the first. */
static void access_log(struct wp_conn *c, const struct wp_record *rec)
{
    struct veil_wp *wp = c->wp;
    if (wp->alog_fd < 0)
        return;
    char ts[40];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (now.tv_sec != wp->alog_sec) { /* the date and time change once a second */
        struct tm tm;
        gmtime_r(&now.tv_sec, &tm);
        strftime(wp->alog_ts, sizeof(wp->alog_ts), "%Y-%m-%dT%H:%M:%S", &tm);
        wp->alog_sec = now.tv_sec;
    }
    unsigned ms = (unsigned)(now.tv_nsec / 1000000);
    char frac[6] = {
        '.', (char)('0' + ms / 100), (char)('0' + ms / 10 % 10), (char)('0' + ms % 10), 'Z', '\0'};
    veil_fmt_cat(ts, sizeof(ts), wp->alog_ts, frac);
    char up[40] = "-";
    if (rec->ep_port != 0) {
        size_t n = veil_fmt_ip4(up, rec->ep_addr);
        up[n++] = ':';
        veil_fmt_u64(up + n, rec->ep_port);
    }
    if (wp->alog == NULL && (wp->alog = veil_malloc(WP_ALOG_BYTES)) == NULL)
        return;
    struct veil_jw w;
    veil_jw_init(&w, wp->alog + wp->alog_len, WP_ALOG_BYTES - wp->alog_len);
    alog_line(&w, c, rec, ts, up);
    if (w.over && wp->alog_len > 0) { /* no room left: write what waits, then again */
        (void)veil_write_all(wp->alog_fd, wp->alog, wp->alog_len);
        wp->alog_len = 0;
        veil_jw_init(&w, wp->alog, WP_ALOG_BYTES);
        alog_line(&w, c, rec, ts, up);
    }
    if (w.over) { /* one line longer than the buffer (a huge path): on its own */
        size_t max = 1024 + veil_jw_esc_max(rec->method_len + rec->path_len + rec->authority_len +
                                            (rec->backend != NULL ? strlen(rec->backend) : 0));
        char *big = veil_malloc(max);
        if (big == NULL)
            return;
        veil_jw_init(&w, big, max);
        alog_line(&w, c, rec, ts, up);
        if (!w.over)
            (void)veil_write_all(wp->alog_fd, big, w.pos);
        veil_free(big);
        return;
    }
    if (wp->alog_len == 0)
        veil_timer_start(wp->env.loop, &wp->alog_timer, WP_ALOG_FLUSH_MS, 0, alog_timer_cb);
    wp->alog_len += w.pos;
}

/* Appends s and a separator to the key; false if it does not fit. */
static bool key_add(char *key, size_t *len, const char *s)
{
    size_t n = strlen(s);
    if (*len + n + 1 > WP_MKEY_MAX)
        return false;
    memcpy(key + *len, s, n);
    key[*len + n] = '\x1f';
    *len += n + 1;
    return true;
}

/* The four request series of rec's labels: the connection's cached ones
 * when the varying labels are those of its last request. */
static void series_of(struct wp_conn *c, const struct wp_record *rec,
                      struct veil_metrics_series *out[4])
{
    struct veil_wp *wp = c->wp;
    char code[VEIL_FMT_U64_MAX], key[WP_MKEY_MAX];
    veil_fmt_u64(code, rec->status);
    size_t len = 0;
    bool keyed = key_add(key, &len, or_unknown(rec->dst_wl)) &&
                 key_add(key, &len, or_unknown(rec->dst_ns)) &&
                 key_add(key, &len, or_unknown(rec->dst_principal)) &&
                 key_add(key, &len, rec->grpc ? "grpc" : "http") && key_add(key, &len, code) &&
                 key_add(key, &len, rec->grpc_status != NULL ? rec->grpc_status : "-") &&
                 key_add(key, &len, rec->flags != NULL ? rec->flags : "-");
    if (keyed && len == c->mkey_len && memcmp(key, c->mkey, len) == 0) {
        memcpy(out, c->ms, sizeof(c->ms));
        return;
    }
    char svc[200];
    snprintf(svc, sizeof(svc), "%s.%s.svc.cluster.local", c->svc_name, c->svc_ns);
    const char *v[NREQ_LABELS] = {"waypoint",
                                  or_unknown(c->src_wl),
                                  or_unknown(c->src_ns),
                                  or_unknown(c->src_principal),
                                  or_unknown(rec->dst_wl),
                                  or_unknown(rec->dst_ns),
                                  or_unknown(rec->dst_principal),
                                  svc,
                                  or_unknown(c->svc_name),
                                  or_unknown(c->svc_ns),
                                  rec->grpc ? "grpc" : "http",
                                  code,
                                  rec->grpc_status != NULL ? rec->grpc_status : "-",
                                  rec->flags != NULL ? rec->flags : "-",
                                  "mutual_tls"};
    out[0] = veil_metrics_series(wp->m.requests, v);
    out[1] = veil_metrics_series(wp->m.duration, v);
    out[2] = veil_metrics_series(wp->m.req_bytes, v);
    out[3] = veil_metrics_series(wp->m.resp_bytes, v);
    c->mkey_len = 0; /* series are never freed while the registry lives: keep them */
    if (keyed && out[0] != NULL && out[1] != NULL && out[2] != NULL && out[3] != NULL) {
        memcpy(c->mkey, key, len);
        c->mkey_len = len;
        memcpy(c->ms, out, sizeof(c->ms));
    }
}

/* One request of either protocol: Istio's request metrics and the
 * access-log line. */
void wp__record(struct wp_conn *c, const struct wp_record *rec)
{
    struct veil_wp *wp = c->wp;
    if (wp->m.requests != NULL) {
        struct veil_metrics_series *s[4];
        series_of(c, rec, s);
        veil_metrics_counter_add(s[0], 1);
        veil_metrics_histogram_observe(s[1], (double)rec->dur_ms);
        veil_metrics_histogram_observe(s[2], (double)rec->req_bytes);
        veil_metrics_histogram_observe(s[3], (double)rec->resp_bytes);
    }
    wp->requests_total++;
    access_log(c, rec);
}

void wp__request_done(struct wp_conn *c, struct wp_req *r)
{
    const struct veil_h1_head *h = &r->head;
    bool host = (h->flags & VEIL_H1_F_HOST) != 0;
    struct wp_record rec = {
        .dst_wl = r->dst_wl,
        .dst_ns = r->dst_ns,
        .dst_principal = r->dst_principal,
        .status = r->status,
        .flags = r->flags,
        .req_bytes = r->req_bytes,
        .resp_bytes = r->resp_bytes,
        .dur_ms = veil_loop_now(c->wp->env.loop) - r->start_ms,
        .method = r->raw + h->method_span.off,
        .method_len = h->method_span.len,
        .path = r->raw + h->target.off,
        .path_len = h->target.len,
        .authority = host ? r->raw + h->host.off : "",
        .authority_len = host ? h->host.len : 0,
        .http_version = h->version_minor ? "HTTP/1.1" : "HTTP/1.0",
        .ep_addr = r->ep_addr,
        .ep_port = r->ep_port,
        .backend = r->backend,
        .traceparent = r->traceparent,
        .retried = r->attempts > 0,
    };
    wp__record(c, &rec);
}

void wp__tcp_done(struct wp_conn *c)
{
    struct veil_wp *wp = c->wp;
    if (wp->m.tcp_opened == NULL)
        return;
    char svc[200];
    snprintf(svc, sizeof(svc), "%s.%s.svc.cluster.local", c->svc_name, c->svc_ns);
    const char *v[NTCP_LABELS] = {"waypoint",
                                  or_unknown(c->src_wl),
                                  or_unknown(c->src_ns),
                                  or_unknown(c->src_principal),
                                  "unknown",
                                  "unknown",
                                  "unknown",
                                  svc,
                                  "mutual_tls",
                                  "-"};
    veil_metrics_counter_add(veil_metrics_series(wp->m.tcp_opened, v), 1);
    veil_metrics_counter_add(veil_metrics_series(wp->m.tcp_closed, v), 1);
}
