/* The node proxy's data path (docs/node.md, "Data path"): outbound from a
 * pod (15001) over HBONE or passed through, inbound HBONE (15008) and
 * inbound plaintext (15006) to the pod, with L4 policy, metrics and one
 * access-log line per connection. */
#include "node/node-int.h"
#include "node/telemetry.h"

#include "capture/capture.h"
#include "capture/netns.h"
#include "core/alloc.h"
#include "core/container.h"
#include "core/file.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/metrics.h"
#include "hbone/hbone.h"
#include "l4/pump.h"
#include "node/authz.h"
#include "node/config.h"
#include "node/strtab.h"
#include "tls/spiffe.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define CERT_WAIT_MS       10000
#define CONNECT_TIMEOUT_MS 10000
#define NAME_MAX_          512
/* After this many connections closed (and at least half of the peak), the
 * freed memory goes back to the system once the burst is over, and again
 * once the HBONE connections that carried them closed for idleness. */
#define TRIM_MIN_DROP    1000
#define TRIM_DELAY_MS    2000
#define TRIM_FOLLOWUP_MS (VEIL_HBONE_IDLE_MS + 5000)

enum conn_kind { OUT_MESH, OUT_PASS, IN_HBONE, IN_PLAIN };
enum conn_state { ST_WAIT_CERT, ST_DIALING, ST_CONNECTING, ST_PUMPING, ST_DONE };

struct veil_node_conn {
    struct veil_node_link link;      /* pod->conns */
    struct veil_node_link wait_link; /* ident->waiters while ST_WAIT_CERT */
    struct veil_node *node;
    struct veil_node_pod *pod;
    enum conn_kind kind;
    enum conn_state state;
    int app_fd;                 /* accepted socket, until handed to a pump */
    int up_fd;                  /* upstream TCP socket while connecting */
    struct veil_hbone_h2s *h2s; /* dial in flight (outbound) or CONNECT to answer (inbound) */
    struct veil_io up_io;
    struct veil_timer timer;
    struct veil_l4_pump *pump;
    struct veil_defer free_d;
    struct sockaddr_in src, dst; /* client and the address actually dialled */
    uint16_t dst_port;           /* the destination port the policy sees */
    bool oom;                    /* a name could not be interned */
    /* Outbound through a service's waypoint: the tunnel goes to wp_addr
     * (port 15008) with :authority dst, the service VIP and port. */
    bool via_wp;
    struct in_addr wp_addr;
    /* Names for the access log and the metric labels, interned in the
     * node's string table (set_name()); NULL: none ("unknown"). */
    const char *src_wl, *src_ns, *src_principal;
    const char *dst_wl, *dst_ns, *dst_principal, *dst_service;
    const char *via;            /* inbound from a waypoint: its identity */
    const char *flags, *reason; /* static strings */
    uint64_t start_wall_ms, start_mono_ms;
};

/* ---- helpers ---- */

static uint64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000 + (uint64_t)tv.tv_usec / 1000;
}

static void fmt_addr(const struct sockaddr_in *a, char *buf, size_t n)
{
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
    snprintf(buf, n, "%s:%u", ip, ntohs(a->sin_port));
}

static const char *str(const char *s)
{
    return s != NULL ? s : "";
}

/* Sets one of c's names to the `len` bytes at `s` (NULL or empty: none). */
static void set_name(struct veil_node_conn *c, const char **name, const char *s, size_t len)
{
    struct veil_node_strtab *t = &c->node->strs;
    veil_node_strtab_put(t, *name);
    *name = NULL;
    if (s != NULL && len > 0 && (*name = veil_node_strtab_get(t, s, len)) == NULL)
        c->oom = true;
}

static void set_str(struct veil_node_conn *c, const char **name, const char *s)
{
    set_name(c, name, s, s != NULL ? strlen(s) : 0);
}

/* "Workload/ns/name" -> ns, name. */
static void set_from_key(struct veil_node_conn *c, const char **ns, const char **name,
                         const char *key)
{
    const char *a = key != NULL ? strchr(key, '/') : NULL;
    const char *b = a != NULL ? strchr(a + 1, '/') : NULL;
    if (b == NULL)
        return;
    set_name(c, ns, a + 1, (size_t)(b - a - 1));
    set_str(c, name, b + 1);
}

static void names_put(struct veil_node_conn *c)
{
    const char **names[] = {&c->src_wl, &c->src_ns,        &c->src_principal, &c->dst_wl,
                            &c->dst_ns, &c->dst_principal, &c->dst_service,   &c->via};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        set_name(c, names[i], NULL, 0);
}

static bool is_proxy_port(uint16_t port)
{
    return port == VEIL_PORT_OUTBOUND || port == VEIL_PORT_INBOUND || port == VEIL_PORT_HBONE ||
           port == VEIL_PORT_DNS || port == VEIL_PORT_ADMIN || port == VEIL_PORT_METRICS ||
           port == VEIL_PORT_READINESS;
}

static struct veil_node_conn *conn_new(struct veil_node_pod *p, enum conn_kind kind)
{
    struct veil_node_conn *c = veil_calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->node = p->node;
    c->pod = p;
    c->kind = kind;
    c->app_fd = c->up_fd = -1;
    c->start_wall_ms = wall_ms();
    c->start_mono_ms = veil_now_ms();
    node__list_add(&p->conns, &c->link);
    struct veil_node *n = p->node;
    if (++n->nconns > n->conns_peak)
        n->conns_peak = n->nconns;
    return c;
}

static void trim_cb(struct veil_timer *t)
{
    struct veil_node *n = VEIL_CONTAINER_OF(t, struct veil_node, trim_timer);
    malloc_trim(0);
    n->conns_peak = n->nconns;
    /* The HBONE connections that carried them close once idle: once more
     * after that. */
    if (!n->trim_followup) {
        n->trim_followup = true;
        veil_timer_start(n->loop, t, TRIM_FOLLOWUP_MS, 0, trim_cb);
    }
}

/* malloc keeps what many closed connections freed: once a large part of
 * them is gone, give it back to the system, from a timer (not per close). */
static void conns_dropped(struct veil_node *n)
{
    n->nconns--;
    if (n->conns_peak - n->nconns < TRIM_MIN_DROP || n->nconns > n->conns_peak / 2 ||
        (veil_timer_is_active(&n->trim_timer) && !n->trim_followup))
        return;
    n->trim_followup = false;
    veil_timer_stop(&n->trim_timer);
    veil_timer_start(n->loop, &n->trim_timer, TRIM_DELAY_MS, 0, trim_cb);
}

static void conn_free_d(struct veil_defer *d)
{
    veil_free(VEIL_CONTAINER_OF(d, struct veil_node_conn, free_d));
}

static const char *direction(const struct veil_node_conn *c)
{
    static const char *const names[] = {"outbound", "passthrough", "inbound", "inbound_plaintext"};
    return names[c->kind];
}

/* Records the connection (metrics, access log) and frees it. a_to_b is the
 * request direction (client to server), b_to_a the response direction. */
static void conn_finish(struct veil_node_conn *c, uint64_t request_bytes, uint64_t response_bytes)
{
    struct veil_node *n = c->node;
    char src[64], dst[64];
    fmt_addr(&c->src, src, sizeof(src));
    fmt_addr(&c->dst, dst, sizeof(dst));
    struct veil_node_conn_info info = {
        .reporter = c->kind == OUT_MESH || c->kind == OUT_PASS ? "source" : "destination",
        .src_workload = c->src_wl,
        .src_ns = c->src_ns,
        .src_principal = c->src_principal,
        .dst_workload = c->dst_wl,
        .dst_ns = c->dst_ns,
        .dst_principal = c->dst_principal,
        .dst_service = c->dst_service,
        .via = c->via,
        .security = c->kind == OUT_MESH || c->kind == IN_HBONE ? "mutual_tls" : "none",
        .flags = c->flags,
        .src_addr = src,
        .dst_addr = dst,
        .reason = c->reason,
        .direction = direction(c),
        .start_ms = c->start_wall_ms,
        .duration_ms = veil_now_ms() - c->start_mono_ms,
        .sent = response_bytes,
        .received = request_bytes,
    };
    const char *v[VEIL_NODE_TCP_NLABELS];
    veil_node_tcp_label_values(&info, v);
    veil_metrics_counter_add(veil_metrics_series(n->m.opened, v), 1);
    veil_metrics_counter_add(veil_metrics_series(n->m.closed, v), 1);
    veil_metrics_counter_add(veil_metrics_series(n->m.received, v), request_bytes);
    veil_metrics_counter_add(veil_metrics_series(n->m.sent, v), response_bytes);
    char line[4096];
    int l = veil_node_access_log_line(&info, line, sizeof(line));
    if (l > 0)
        veil_write_all(STDERR_FILENO, line, (size_t)l);
    names_put(c);
    node__list_del(&c->link);
    node__list_del(&c->wait_link);
    veil_timer_stop(&c->timer);
    c->state = ST_DONE;
    conns_dropped(n);
    veil_loop_defer(n->loop, &c->free_d, conn_free_d);
}

/* Ends a connection that never reached the pump. */
static void conn_fail(struct veil_node_conn *c, const char *flags, const char *reason)
{
    c->flags = flags;
    c->reason = reason;
    if (c->h2s != NULL) {
        if (c->kind == OUT_MESH)
            veil_hbone_h2s_cancel(c->h2s);
        else
            veil_hbone_h2s_respond(c->h2s, strcmp(flags, "DENY") == 0 ? 401 : 503);
        c->h2s = NULL;
    }
    if (veil_io_is_active(&c->up_io))
        veil_io_stop(&c->up_io);
    if (c->up_fd >= 0)
        close(c->up_fd);
    if (c->app_fd >= 0) {
        struct linger lg = {1, 0}; /* reset: the client sees the failure at once */
        setsockopt(c->app_fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(c->app_fd);
    }
    c->up_fd = c->app_fd = -1;
    conn_finish(c, 0, 0);
}

static void pump_done(struct veil_l4_pump *p, const char *err, const struct veil_l4_pump_stats *st,
                      void *arg)
{
    struct veil_node_conn *c = arg;
    (void)p;
    c->pump = NULL;
    if (err != NULL && c->reason == NULL)
        c->reason = err;
    conn_finish(c, st->a_to_b, st->b_to_a);
}

/* Pumps between a (the client side) and b (the server side). */
static void conn_pump(struct veil_node_conn *c, struct veil_l4_end *a, struct veil_l4_end *b)
{
    c->state = ST_PUMPING;
    c->pump = veil_l4_pump_start(c->node->loop, a, b, pump_done, c);
    if (c->pump == NULL) {
        c->flags = "-";
        c->reason = "out of memory";
        conn_finish(c, 0, 0);
    }
}

/* ---- policy ---- */

static const json_t *wl_labels(const struct veil_node *n, struct in_addr ip)
{
    const struct veil_node_item *it = veil_node_cfg_wl_item_by_ip(&n->cfg, ip);
    return it != NULL ? json_object_get(json_object_get(it->json, "spec"), "labels") : NULL;
}

static enum veil_authz_verdict authorize(struct veil_node_conn *c, char *policy, size_t cap)
{
    struct veil_node_pod *p = c->pod;
    const json_t *labels = wl_labels(c->node, p->addr);
    struct veil_authz_req req = {
        .dst_ns = p->ns,
        .dst_labels = {labels != NULL ? veil_authz_json_label : NULL, labels},
        .dst_port = c->dst_port,
        .dst_ip = {.family = AF_INET, .u.v4 = p->addr},
        .src_principal = c->kind == IN_HBONE ? str(c->src_principal) : NULL,
        .src_ip = {.family = AF_INET, .u.v4 = c->src.sin_addr},
    };
    return veil_authz_check(c->node->authz, &req, policy, cap);
}

static bool plaintext_refused(struct veil_node_conn *c)
{
    const json_t *labels = wl_labels(c->node, c->pod->addr);
    struct veil_authz_labels l = {labels != NULL ? veil_authz_json_label : NULL, labels};
    return veil_authz_peer_mode(c->node->authz, c->pod->ns, &l, c->dst_port) == VEIL_MTLS_STRICT;
}

void node__conns_recheck(struct veil_node *n)
{
    for (struct veil_node_link *pl = n->pods.next; pl != &n->pods; pl = pl->next) {
        struct veil_node_pod *p = VEIL_CONTAINER_OF(pl, struct veil_node_pod, link);
        struct veil_node_link *l = p->conns.next;
        while (l != &p->conns) {
            struct veil_node_conn *c = VEIL_CONTAINER_OF(l, struct veil_node_conn, link);
            l = l->next; /* abort unlinks c */
            if (c->state != ST_PUMPING || (c->kind != IN_HBONE && c->kind != IN_PLAIN))
                continue;
            char policy[VEIL_AUTHZ_NAME_MAX] = "";
            bool strict = c->kind == IN_PLAIN && plaintext_refused(c);
            if (strict || authorize(c, policy, sizeof(policy)) == VEIL_AUTHZ_DENY) {
                VEIL_INFO(LOG, "pod %s/%s: closing a connection the policy now denies (%s)", p->ns,
                          p->name, strict ? "STRICT mTLS" : policy);
                node__refused(n, strict ? "strict_mtls" : "authz_denied");
                c->flags = "DENY";
                c->reason = "policy revoked";
                veil_l4_pump_abort(c->pump, "policy revoked");
            }
        }
    }
}

void node__conns_close_pod(struct veil_node_pod *p)
{
    while (!node__list_empty(&p->conns)) {
        struct veil_node_conn *c = VEIL_CONTAINER_OF(p->conns.next, struct veil_node_conn, link);
        if (c->state == ST_PUMPING)
            veil_l4_pump_abort(c->pump, "pod removed");
        else
            conn_fail(c, "-", "pod removed");
    }
}

/* ---- upstream TCP (passthrough and inbound) ---- */

static void up_timeout(struct veil_timer *t)
{
    struct veil_node_conn *c = VEIL_CONTAINER_OF(t, struct veil_node_conn, timer);
    conn_fail(c, "UF", "upstream connect timeout");
}

static void up_connected(struct veil_node_conn *c)
{
    struct veil_node *n = c->node;
    veil_timer_stop(&c->timer);
    int fd = c->up_fd;
    c->up_fd = -1;
    struct veil_l4_end *up = veil_l4_tcp_new(n->loop, fd);
    struct veil_l4_end *client = NULL;
    if (up != NULL && c->kind == IN_HBONE) {
        struct veil_hbone_h2s *h2s = c->h2s;
        c->h2s = NULL;
        if (veil_hbone_h2s_respond(h2s, 200) != 0) {
            up->ops->close(up, true);
            c->reason = "client left";
            c->flags = "-";
            conn_finish(c, 0, 0);
            return;
        }
        client = veil_hbone_h2s_end(h2s);
    } else if (up != NULL) {
        client = veil_l4_tcp_new(n->loop, c->app_fd);
        c->app_fd = -1;
        if (client == NULL) {
            up->ops->close(up, true);
            conn_fail(c, "-", "out of memory");
            return;
        }
    }
    if (up == NULL) {
        conn_fail(c, "-", "out of memory");
        return;
    }
    c->flags = "-";
    conn_pump(c, client, up);
}

static void up_io_cb(struct veil_io *io, uint32_t ev)
{
    struct veil_node_conn *c = VEIL_CONTAINER_OF(io, struct veil_node_conn, up_io);
    (void)ev;
    int soerr = 0;
    socklen_t len = sizeof(soerr);
    veil_io_stop(io);
    if (getsockopt(c->up_fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
        soerr = errno;
    if (soerr != 0) {
        VEIL_DEBUG(LOG, "upstream connect: %s", strerror(soerr));
        conn_fail(c, "UF", "upstream connect failed");
        return;
    }
    up_connected(c);
}

/* Connects c->dst from a socket in the pod's netns: transparent (bound to
 * the caller's address) for inbound, marked for passthrough. */
static void up_connect(struct veil_node_conn *c, bool transparent)
{
    struct veil_node *n = c->node;
    int fd = veil_netns_socket(c->pod->netns_fd, AF_INET, SOCK_STREAM, 0);
    int rc = fd;
    if (fd >= 0) {
        c->up_fd = fd;
        struct sockaddr_in caller = c->src;
        rc = transparent
                 ? veil_capture_transparent_prep(fd, (struct sockaddr *)&caller, sizeof(caller))
                 : veil_capture_mark(fd);
    }
    if (rc >= 0 && connect(fd, (struct sockaddr *)&c->dst, sizeof(c->dst)) != 0 &&
        errno != EINPROGRESS)
        rc = -errno;
    if (rc < 0) {
        VEIL_DEBUG(LOG, "upstream socket: %s", strerror(-rc));
        conn_fail(c, "UF", "upstream connect failed");
        return;
    }
    c->state = ST_CONNECTING;
    if (veil_io_start(n->loop, &c->up_io, fd, VEIL_IO_WRITE, up_io_cb) != 0 ||
        veil_timer_start(n->loop, &c->timer, CONNECT_TIMEOUT_MS, 0, up_timeout) != 0)
        conn_fail(c, "-", "out of memory");
}

/* ---- outbound ---- */

static int make_socket(int family, void *arg)
{
    struct veil_node_pod *p = arg;
    int fd = veil_netns_socket(p->netns_fd, family, SOCK_STREAM, 0);
    if (fd < 0)
        return fd;
    int rc = veil_capture_mark(fd);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

static void dial_cb(struct veil_hbone_h2s *h2s, int status, const char *err, void *arg)
{
    struct veil_node_conn *c = arg;
    c->h2s = NULL;
    if (status != 200) {
        char dst[64];
        fmt_addr(&c->dst, dst, sizeof(dst));
        VEIL_DEBUG(LOG, "HBONE to %s for %s: %d %s", dst, str(c->src_principal), status,
                   err != NULL ? err : "");
        conn_fail(c, status == 401 || status == 403 ? "DENY" : "UF",
                  status == 401 || status == 403 ? "denied by the destination"
                  : status != 0                  ? "refused by the destination"
                                                 : "HBONE connect failed");
        return;
    }
    struct veil_l4_end *tunnel = veil_hbone_h2s_end(h2s);
    struct veil_l4_end *app = veil_l4_tcp_new(c->node->loop, c->app_fd);
    c->app_fd = -1;
    if (app == NULL) {
        tunnel->ops->close(tunnel, true);
        conn_fail(c, "-", "out of memory");
        return;
    }
    c->flags = "-";
    conn_pump(c, app, tunnel);
}

static void dial(struct veil_node_conn *c)
{
    struct veil_node_pod *p = c->pod;
    char key[600], authority[VEIL_HBONE_AUTHORITY_MAX];
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &c->dst.sin_addr, ip, sizeof(ip));
    struct sockaddr_in hb = c->dst;
    hb.sin_port = htons(VEIL_PORT_HBONE);
    if (c->via_wp) {
        hb.sin_addr = c->wp_addr;
        inet_ntop(AF_INET, &c->wp_addr, ip, sizeof(ip));
    }
    /* The pod's address in the key: one pod's h2c never carries another's;
     * tunnels to a waypoint never share an h2c with direct ones. */
    snprintf(key, sizeof(key), "%s|%s|%p|%s%s", p->ident->id, p->addr_str, (void *)p,
             c->via_wp ? "wp:" : "", ip);
    veil_hbone_format_authority((struct sockaddr *)&c->dst, authority, sizeof(authority));
    struct veil_hbone_dial d = {
        .key = key,
        .tls = p->ident->client_ctx,
        .dst = (struct sockaddr *)&hb,
        .dst_len = sizeof(hb),
        .authority = authority,
        .server_id = str(c->dst_principal),
        .make_socket = make_socket,
        .make_socket_arg = p,
    };
    c->state = ST_DIALING;
    c->h2s = veil_hbone_pool_connect(c->node->pool, &d, dial_cb, c);
    if (c->h2s == NULL)
        conn_fail(c, "UF", "HBONE connect failed");
}

static void cert_timeout(struct veil_timer *t)
{
    struct veil_node_conn *c = VEIL_CONTAINER_OF(t, struct veil_node_conn, timer);
    conn_fail(c, "UF", "no workload certificate yet");
}

void node__ident_waiters_run(struct veil_node_ident *id, const char *err)
{
    while (id->waiters.next != NULL && !node__list_empty(&id->waiters)) {
        struct veil_node_conn *c =
            VEIL_CONTAINER_OF(id->waiters.next, struct veil_node_conn, wait_link);
        node__list_del(&c->wait_link);
        veil_timer_stop(&c->timer);
        if (err != NULL)
            conn_fail(c, "UF", err);
        else
            dial(c);
    }
}

/* Whether the source pod is the service's waypoint (or any waypoint):
 * its traffic never goes to a waypoint again. */
static bool from_waypoint(const struct veil_node_conn *c, const struct veil_node_svc *svc)
{
    const struct veil_node_wl *wl = veil_node_cfg_wl_by_ip(&c->node->cfg, c->pod->addr);
    return c->pod->addr.s_addr == svc->waypoint.addr.s_addr || (wl != NULL && wl->waypoint != NULL);
}

/* To the service's waypoint: the tunnel goes to its address, :authority
 * stays the VIP and port dialled (c->dst). As ztunnel reports it, the
 * destination workload and principal are the waypoint's, the destination
 * service the service's. -1 when the service has no such port. */
static int route_waypoint(struct veil_node_conn *c, const struct veil_node_svc *svc, uint16_t port)
{
    const struct veil_node_svc_wp *wp = &svc->waypoint;
    if (!veil_node_svc_has_port(svc, port))
        return -1;
    c->via_wp = true;
    c->wp_addr = wp->addr;
    c->dst_port = port;
    set_str(c, &c->dst_principal, wp->identity);
    if (wp->workload != NULL) {
        set_from_key(c, &c->dst_ns, &c->dst_wl, wp->workload);
    } else {
        set_str(c, &c->dst_ns, wp->ns);
        set_str(c, &c->dst_wl, wp->name);
    }
    return OUT_MESH;
}

/* Where an outbound connection goes: fills dst and the destination's
 * names. Returns the kind (OUT_MESH or OUT_PASS), or -1
 * when a service has no endpoint for the port. Only traffic to a VIP goes
 * through the service's waypoint; to a pod address it goes direct. */
static int route(struct veil_node_conn *c, const struct sockaddr_in *orig)
{
    struct veil_node *n = c->node;
    uint16_t port = ntohs(orig->sin_port), target = port;
    struct veil_node_svc *svc = veil_node_cfg_svc_by_vip(&n->cfg, orig->sin_addr);
    char name[NAME_MAX_];
    c->dst = *orig;
    if (svc != NULL) {
        snprintf(name, sizeof(name), "%s.%s.svc.cluster.local", svc->name, svc->ns);
        set_str(c, &c->dst_service, name);
        if (svc->has_waypoint && !from_waypoint(c, svc))
            return route_waypoint(c, svc, port);
        const struct veil_node_ep *ep = veil_node_svc_pick(svc, port, &target);
        if (ep == NULL)
            return -1;
        c->dst.sin_addr = ep->addr;
        c->dst.sin_port = htons(target);
        set_str(c, &c->dst_principal, ep->identity);
        set_from_key(c, &c->dst_ns, &c->dst_wl, ep->workload);
    } else {
        const struct veil_node_wl *wl = veil_node_cfg_wl_by_ip(&n->cfg, orig->sin_addr);
        const struct veil_node_ep *ep =
            wl == NULL ? veil_node_cfg_ep_by_ip(&n->cfg, orig->sin_addr) : NULL;
        inet_ntop(AF_INET, &orig->sin_addr, name, sizeof(name));
        set_str(c, &c->dst_service, name);
        if (wl != NULL) {
            set_str(c, &c->dst_principal, wl->identity);
            set_str(c, &c->dst_ns, wl->ns);
            set_str(c, &c->dst_wl, wl->name);
        } else if (ep != NULL) {
            set_str(c, &c->dst_principal, ep->identity);
            set_from_key(c, &c->dst_ns, &c->dst_wl, ep->workload);
        } else {
            return OUT_PASS;
        }
    }
    c->dst_port = ntohs(c->dst.sin_port);
    return OUT_MESH;
}

void node__outbound_accept(struct veil_node_pod *p, int fd)
{
    struct veil_node *n = p->node;
    struct sockaddr_storage orig;
    socklen_t sl = sizeof(struct sockaddr_in);
    struct veil_node_conn *c = conn_new(p, OUT_MESH);
    if (c == NULL) {
        close(fd);
        return;
    }
    c->app_fd = fd;
    getpeername(fd, (struct sockaddr *)&c->src, &sl);
    set_str(c, &c->src_wl, p->name);
    set_str(c, &c->src_ns, p->ns);
    set_str(c, &c->src_principal, p->ident->id);
    if (veil_capture_original_dst(fd, &orig) != 0 || orig.ss_family != AF_INET) {
        node__refused(n, "no_original_destination");
        conn_fail(c, "NR", "no original destination");
        return;
    }
    int kind = route(c, (struct sockaddr_in *)&orig);
    if (kind < 0) {
        conn_fail(c, "UH", "no endpoint for the service port");
        return;
    }
    if (c->oom) {
        conn_fail(c, "-", "out of memory");
        return;
    }
    c->kind = (enum conn_kind)kind;
    if (c->kind == OUT_PASS) {
        up_connect(c, false);
        return;
    }
    if (p->ident->client_ctx != NULL) {
        dial(c);
        return;
    }
    c->state = ST_WAIT_CERT;
    node__list_add(&p->ident->waiters, &c->wait_link);
    veil_timer_start(n->loop, &c->timer, CERT_WAIT_MS, 0, cert_timeout);
}

/* ---- inbound ---- */

/* The source workload of an inbound connection, from its address. */
static void inbound_source(struct veil_node_conn *c)
{
    const struct veil_node_wl *wl = veil_node_cfg_wl_by_ip(&c->node->cfg, c->src.sin_addr);
    const struct veil_node_ep *ep =
        wl == NULL ? veil_node_cfg_ep_by_ip(&c->node->cfg, c->src.sin_addr) : NULL;
    char ns[NAME_MAX_];
    if (wl != NULL) {
        set_str(c, &c->src_wl, wl->name);
        set_str(c, &c->src_ns, wl->ns);
    } else if (ep != NULL &&
               (c->kind == IN_PLAIN || strcmp(ep->identity, str(c->src_principal)) == 0)) {
        set_from_key(c, &c->src_ns, &c->src_wl, ep->workload);
    } else if (c->src_principal != NULL &&
               veil_authz_principal_ns(c->src_principal, ns, sizeof(ns)) == 0) {
        set_str(c, &c->src_ns, ns);
    }
}

static int svc_of_target(void *arg, const struct veil_node_item *it)
{
    struct veil_node_conn *c = arg;
    if (it->kind != VEIL_NODE_SERVICE)
        return 0;
    const struct veil_node_svc *s = it->u.svc;
    for (size_t i = 0; i < s->neps; i++)
        for (size_t j = 0; s->eps[i].has_addr && s->eps[i].addr.s_addr == c->pod->addr.s_addr &&
                           j < s->eps[i].nports;
             j++)
            if (s->eps[i].ports[j].target == c->dst_port) {
                char name[NAME_MAX_];
                snprintf(name, sizeof(name), "%s.%s.svc.cluster.local", s->name, s->ns);
                set_str(c, &c->dst_service, name);
                return 1;
            }
    return 0;
}

static void inbound_destination(struct veil_node_conn *c)
{
    struct veil_node_pod *p = c->pod;
    set_str(c, &c->dst_wl, p->name);
    set_str(c, &c->dst_ns, p->ns);
    set_str(c, &c->dst_principal, p->ident->id);
    if (veil_node_cfg_each(&c->node->cfg, svc_of_target, c) == 0) {
        char addr[64];
        fmt_addr(&c->dst, addr, sizeof(addr));
        set_str(c, &c->dst_service, addr);
    }
}

/*
 * CONTRACT C (docs/hbone.md): a waypoint's CONNECT names the original
 * caller in VEIL_HBONE_SOURCE_PRINCIPAL. From a peer whose identity is a
 * waypoint's, a workload SPIFFE ID of our trust domain there becomes the
 * source (principal, namespace; the workload is not knowable from it) and
 * the waypoint is kept as `via`; from anyone else the header is ignored
 * (counted, warned). Returns false when a waypoint sent a bad value: the
 * CONNECT is then refused, never run as the waypoint itself.
 */
static bool inbound_principal(struct veil_node_conn *c, const struct veil_hbone_connect_info *info)
{
    struct veil_node *n = c->node;
    struct veil_node_pod *p = c->pod;
    const char *v = veil_hbone_connect_header(info, VEIL_HBONE_SOURCE_PRINCIPAL);
    set_str(c, &c->src_principal, info->peer_id);
    if (v == NULL)
        return true;
    if (!veil_node_cfg_is_waypoint(&n->cfg, info->peer_id)) {
        node__refused(n, "untrusted_source_principal");
        VEIL_WARN(LOG, "pod %s/%s: ignored " VEIL_HBONE_SOURCE_PRINCIPAL " from %s: not a waypoint",
                  p->ns, p->name, info->peer_id);
        return true;
    }
    struct veil_spiffe_id id;
    if (veil_spiffe_parse(v, &id) != 0 || id.kind != VEIL_SPIFFE_WORKLOAD ||
        strcmp(id.trust_domain, n->trust_domain) != 0) {
        node__refused(n, "bad_source_principal");
        VEIL_WARN(LOG, "pod %s/%s: waypoint %s sent a bad " VEIL_HBONE_SOURCE_PRINCIPAL, p->ns,
                  p->name, info->peer_id);
        return false;
    }
    set_str(c, &c->via, info->peer_id);
    set_str(c, &c->src_principal, v);
    set_str(c, &c->src_ns, id.ns);
    return true;
}

static void on_connect(struct veil_hbone_h2s *h2s, const struct veil_hbone_connect_info *info,
                       void *arg)
{
    struct veil_node_pod *p = arg;
    struct veil_node *n = p->node;
    struct veil_node_conn *c = conn_new(p, IN_HBONE);
    if (c == NULL) {
        veil_hbone_h2s_respond(h2s, 503);
        return;
    }
    c->h2s = h2s;
    if (info->peer != NULL && info->peer->sa_family == AF_INET)
        memcpy(&c->src, info->peer, sizeof(c->src));
    if (info->dst->sa_family == AF_INET)
        memcpy(&c->dst, info->dst, sizeof(c->dst));
    c->dst_port = ntohs(c->dst.sin_port);
    bool principal_ok = inbound_principal(c, info);
    if (c->via == NULL) /* through a waypoint, the TCP peer is the waypoint */
        inbound_source(c);
    inbound_destination(c);
    if (c->oom) {
        conn_fail(c, "-", "out of memory");
        return;
    }
    if (!principal_ok) {
        c->reason = "bad " VEIL_HBONE_SOURCE_PRINCIPAL " from a waypoint";
        c->flags = "NR";
        veil_hbone_h2s_respond(c->h2s, 400);
        c->h2s = NULL;
        conn_finish(c, 0, 0);
        return;
    }
    if (info->dst->sa_family != AF_INET || c->dst.sin_addr.s_addr != p->addr.s_addr ||
        is_proxy_port(c->dst_port)) {
        node__refused(n, "bad_destination");
        VEIL_WARN(LOG, "pod %s/%s: refused CONNECT %s from %s: not this pod's application port",
                  p->ns, p->name, info->authority, str(c->src_principal));
        c->reason = "destination is not this pod's application port";
        c->flags = "NR";
        veil_hbone_h2s_respond(c->h2s, 400);
        c->h2s = NULL;
        conn_finish(c, 0, 0);
        return;
    }
    char policy[VEIL_AUTHZ_NAME_MAX] = "";
    if (authorize(c, policy, sizeof(policy)) == VEIL_AUTHZ_DENY) {
        node__refused(n, "authz_denied");
        VEIL_INFO(LOG, "pod %s/%s: %s -> port %u denied%s%s", p->ns, p->name, str(c->src_principal),
                  c->dst_port, policy[0] ? " by " : "", policy);
        conn_fail(c, "DENY", "denied by policy");
        return;
    }
    if (info->peer == NULL || info->peer->sa_family != AF_INET) {
        conn_fail(c, "UF", "no caller address");
        return;
    }
    up_connect(c, true);
}

void node__inbound_accept(struct veil_node_pod *p, int fd)
{
    struct veil_node *n = p->node;
    struct sockaddr_storage orig;
    socklen_t sl = sizeof(struct sockaddr_in);
    struct veil_node_conn *c = conn_new(p, IN_PLAIN);
    if (c == NULL) {
        close(fd);
        return;
    }
    c->app_fd = fd;
    getpeername(fd, (struct sockaddr *)&c->src, &sl);
    if (veil_capture_original_dst(fd, &orig) != 0 || orig.ss_family != AF_INET) {
        node__refused(n, "no_original_destination");
        conn_fail(c, "NR", "no original destination");
        return;
    }
    memcpy(&c->dst, &orig, sizeof(c->dst));
    c->dst_port = ntohs(c->dst.sin_port);
    inbound_source(c);
    inbound_destination(c);
    if (c->oom) {
        conn_fail(c, "-", "out of memory");
        return;
    }
    if (c->dst.sin_addr.s_addr != p->addr.s_addr || is_proxy_port(c->dst_port)) {
        node__refused(n, "bad_destination");
        conn_fail(c, "NR", "destination is not this pod's application port");
        return;
    }
    if (plaintext_refused(c)) {
        node__refused(n, "strict_mtls");
        VEIL_INFO(LOG, "pod %s/%s: plaintext from %s to port %u refused: mTLS is STRICT", p->ns,
                  p->name, inet_ntoa(c->src.sin_addr), c->dst_port);
        conn_fail(c, "DENY", "plaintext refused: STRICT mTLS");
        return;
    }
    char policy[VEIL_AUTHZ_NAME_MAX] = "";
    if (authorize(c, policy, sizeof(policy)) == VEIL_AUTHZ_DENY) {
        node__refused(n, "authz_denied");
        conn_fail(c, "DENY", "denied by policy");
        return;
    }
    up_connect(c, true);
}

/* ---- the pod's HBONE server ---- */

static void hbone_accept_cb(struct veil_io *io, uint32_t ev)
{
    struct veil_node_pod *p = VEIL_CONTAINER_OF(io, struct veil_node_pod, hbone_io);
    (void)ev;
    for (int i = 0; i < 64; i++) {
        int fd = accept4(veil_io_fd(io), NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (veil_hbone_server_accept(p->hbone, fd) != 0)
            node__refused(p->node, "hbone_setup");
    }
}

int node__pod_hbone_start(struct veil_node_pod *p)
{
    struct veil_node *n = p->node;
    if (p->ident->server_ctx == NULL || p->hbone_fd < 0)
        return -EAGAIN;
    if (p->hbone != NULL) {
        veil_hbone_server_set_tls(p->hbone, p->ident->server_ctx);
        return 0;
    }
    char name[600];
    snprintf(name, sizeof(name), "%s/%s", p->ns, p->name);
    struct veil_hbone_server_opts o = {
        .tls = p->ident->server_ctx,
        .cbs = {.on_connect = on_connect},
        .arg = p,
        .name = name,
    };
    p->hbone = veil_hbone_server_new(n->loop, &o);
    if (p->hbone == NULL)
        return -errno;
    int rc = veil_io_start(n->loop, &p->hbone_io, p->hbone_fd, VEIL_IO_READ, hbone_accept_cb);
    if (rc != 0) {
        veil_hbone_server_free(p->hbone);
        p->hbone = NULL;
    }
    return rc;
}

void node__pod_hbone_stop(struct veil_node_pod *p)
{
    if (veil_io_is_active(&p->hbone_io))
        veil_io_stop(&p->hbone_io);
    if (p->hbone_fd >= 0)
        close(p->hbone_fd);
    p->hbone_fd = -1;
    node__metrics_keep_hbone(p->node, p);
    veil_hbone_server_free(p->hbone);
    p->hbone = NULL;
}
