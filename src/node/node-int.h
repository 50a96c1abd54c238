/* Internal to src/node/: the node proxy's state shared by its files. */
#ifndef VEIL_NODE_NODE_INT_H
#define VEIL_NODE_NODE_INT_H

#include "core/loop-t.h"
#include "node/config-t.h"
#include "node/node.h"
#include "node/strtab-t.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#define LOG "node"

struct veil_metrics;
struct veil_metrics_family;
struct veil_metrics_series;
struct veil_reqsrv;
struct veil_push_client;
struct veil_tls_ctx;
struct veil_authz;
struct veil_dns_server;
struct veil_hbone_server;
struct veil_hbone_pool;
struct veil_node_conn;
struct veil_node_wp;
struct veil_hbone_stats;

/* An intrusive doubly-linked list. */
struct veil_node_link {
    struct veil_node_link *prev, *next;
};
static inline void node__list_init(struct veil_node_link *h)
{
    h->prev = h->next = h;
}
static inline void node__list_add(struct veil_node_link *h, struct veil_node_link *l)
{
    l->next = h;
    l->prev = h->prev;
    h->prev->next = l;
    h->prev = l;
}
static inline void node__list_del(struct veil_node_link *l)
{
    if (l->next != NULL) {
        l->prev->next = l->next;
        l->next->prev = l->prev;
    }
    l->prev = l->next = NULL;
}
static inline bool node__list_empty(const struct veil_node_link *h)
{
    return h->next == h;
}

/* A workload identity served on this node (ns/sa): its key and certificate,
 * made here and signed by the control plane. */
struct veil_node_ident {
    struct veil_node_link link;
    struct veil_node *node;
    char *ns, *sa;
    char id[300];
    char *key_pem, *cert_pem;
    time_t not_before, not_after;
    time_t renew_at;                              /* half of the life left when it arrived */
    struct veil_tls_ctx *server_ctx, *client_ctx; /* NULL until the cert is there */
    struct veil_tls_ctx **retired;                /* replaced contexts, freed at exit */
    size_t nretired;
    bool requesting;
    char *pending_key;       /* the key of the CSR in flight */
    struct veil_timer timer; /* renewal, or retry after a failure */
    uint64_t retry_ms;
    struct veil_node_link waiters; /* conns waiting for the certificate */
};

/* An enrolled pod: its netns and the listeners open in it. */
struct veil_node_pod {
    struct veil_node_link link;
    struct veil_node *node;
    char *ns, *name, *netns, *sa;
    struct in_addr addr;
    char addr_str[INET_ADDRSTRLEN];
    int netns_fd;
    struct veil_node_ident *ident;
    struct veil_io out_io, in_io;    /* 15001, 15006 listeners */
    int hbone_fd;                    /* 15008 listener, until the server takes it */
    struct veil_io hbone_io;         /* accepts 15008 while no server exists */
    struct veil_hbone_server *hbone; /* 15008 */
    struct veil_dns_server *dns;     /* 15053 UDP + TCP */
    struct veil_node_link conns;     /* its live connections (either direction) */
};

/* Metric families (docs/node.md). */
struct veil_node_metrics {
    struct veil_metrics_family *opened, *closed, *sent, *received;
    struct veil_metrics_family *refused; /* veil_node_refused_total{reason} */
    /* veil_node_hbone_*_total{side}: the HBONE servers' and pool's counters */
    struct veil_metrics_family *hb_handshake, *hb_proto, *hb_bad_req, *hb_conns, *hb_mismatch;
    struct veil_metrics_series *cfg_applied, *cfg_rejected, *pods, *enrol_errors, *certs,
        *cert_errors, *cfg_version, *connected;
    struct veil_metrics_series *wp_tunnels; /* waypoint mode: tunnels open on 15008 */
};

struct veil_node {
    struct veil_loop *loop;
    struct veil_node_opts opts;
    char dir[512];
    char ctl_addr[64];
    uint16_t ctl_port;
    char trust_domain[256];
    /* the node's own identity (from the join) */
    char *key_pem, *cert_pem, *bundle_pem, *control_id;
    time_t node_not_after, node_not_before;
    time_t node_renew_at;
    struct veil_node_cfg cfg;
    struct veil_authz *authz;
    uint64_t authz_gen;
    struct veil_metrics *metrics;
    struct veil_node_metrics m;
    struct veil_reqsrv *sock_srv, *metrics_srv, *ready_srv, *admin_srv;
    uint16_t metrics_port, ready_port, admin_port;
    struct veil_io sig_io;
    /* the push connection */
    struct veil_push_client *pc;
    bool pc_up, watching;
    uint64_t backoff_ms;
    struct veil_timer reconnect;
    struct veil_timer renew_node;
    struct veil_node_rejoin *rejoin; /* a renewal join running on its own thread */
    /* pods, identities, connections */
    struct veil_node_link pods, idents;
    struct veil_hbone_pool *pool;
    struct veil_node_hbone_totals {
        uint64_t handshake, proto, bad_req, conns, mismatch;
    } hb_gone, hb_reported[2]; /* servers freed; reported so far (server, pool) */
    /* connections (proxy.c): their names, how many live, the most since
     * the last malloc_trim; the trim after many closed (then a follow-up,
     * once their HBONE connections closed for idleness) */
    struct veil_node_strtab strs;
    size_t nconns, conns_peak;
    struct veil_timer trim_timer;
    bool trim_followup;
    bool stopping;
    /* waypoint mode (wpmode.c): NULL for a node proxy */
    struct veil_node_wp *wp;
    char wp_node_name[300]; /* "wp.<ns>.<name>" */
};

/* node.c */
int node__save_pods(struct veil_node *n);
void node__refused(struct veil_node *n, const char *reason);

/* pod.c */
int node__pod_add(struct veil_node *n, const char *ns, const char *name, const char *netns,
                  const char *addr, const char *sa, bool persist, char *err, size_t errlen);
int node__pod_del(struct veil_node *n, const char *ns, const char *name, char *err, size_t errlen);
void node__pod_free(struct veil_node_pod *p, bool remove_rules);
struct veil_node_pod *node__pod_by_addr(struct veil_node *n, struct in_addr a);

/* certs.c */
struct veil_node_ident *node__ident_get(struct veil_node *n, const char *ns, const char *sa);
void node__ident_kick(struct veil_node *n); /* the push connection is up: send requests */
void node__idents_free(struct veil_node *n);
int node__cert_times(const char *pem, time_t *not_before, time_t *not_after);
time_t node__renew_at(time_t now, time_t not_after);
/* The identity's certificate is there (or replaced): pods serve 15008 with it. */
void node__pod_ident_ready(struct veil_node *n, struct veil_node_ident *id);

/* proxy.c */
void node__outbound_accept(struct veil_node_pod *p, int fd);
void node__inbound_accept(struct veil_node_pod *p, int fd);
int node__pod_hbone_start(struct veil_node_pod *p);
void node__pod_hbone_stop(struct veil_node_pod *p);
void node__conns_recheck(struct veil_node *n);
void node__conns_close_pod(struct veil_node_pod *p);
void node__ident_waiters_run(struct veil_node_ident *id, const char *err);

/* wpmode.c: waypoint mode (veil_node_opts.waypoint_ns/name; docs/waypoint.md).
 * Every function is a no-op when n->wp is NULL. */
static inline bool node__is_waypoint(const struct veil_node *n)
{
    return n->opts.waypoint_ns != NULL && n->opts.waypoint_name != NULL;
}
/* At start, after the join: asks for the waypoint identity's certificate. */
int node__wp_start(struct veil_node *n);
/* The identity's certificate is there (or renewed): listens on 15008, makes
 * the engine on the first one; swaps the TLS contexts on renewal. */
void node__wp_ident_ready(struct veil_node *n, struct veil_node_ident *id);
/* From the config tables' policy hook and, as the route hook (ctx: the
 * node), for HTTPRoute/GRPCRoute: the engine's items (AuthorizationPolicy,
 * routes) go to veil_wp_config_item() (key NULL: a full snapshot). */
void node__wp_policy(struct veil_node *n, const char *key, const struct veil_node_item *it);
void node__wp_route(void *ctx, const char *key, const struct veil_node_item *it);
/* 15008 listens and the process is not draining. */
bool node__wp_ready(const struct veil_node *n);
/* SIGTERM: stop accepting; the loop stops once no tunnel is open, or after
 * the drain time. Returns false when already draining (stop now). */
bool node__wp_drain(struct veil_node *n);
/* The HBONE server's counters (zero before it exists). */
void node__wp_stats(const struct veil_node *n, struct veil_hbone_stats *out);
void node__wp_free(struct veil_node *n);

/* telemetry.c */
int node__metrics_setup(struct veil_node *n);
/* Brings the HBONE counters up to date (before a render). */
void node__metrics_sync(struct veil_node *n);
/* A pod's HBONE server is about to be freed: keep its counts. */
void node__metrics_keep_hbone(struct veil_node *n, const struct veil_node_pod *p);

#endif
