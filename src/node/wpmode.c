/* Waypoint mode of the node runtime (`veil waypoint run`, docs/waypoint.md):
 * the waypoint identity's certificate, the HBONE server on 15008 that hands
 * every CONNECT to the L7 engine (waypoint/waypoint.h), the engine's share
 * of the configuration (AuthorizationPolicy, HTTPRoute, GRPCRoute) and the
 * drain on SIGTERM. */
#include "node/node-int.h"

#include "capture/capture-t.h"
#include "control/reqsrv.h"
#include "core/alloc.h"
#include "core/container.h"
#include "core/log.h"
#include "core/loop.h"
#include "hbone/hbone.h"
#include "node/config.h"
#include "waypoint/waypoint.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define DRAIN_POLL_MS 100

struct veil_node_wp {
    struct veil_node *node;
    struct veil_node_ident *ident;
    struct veil_wp *engine;
    struct veil_hbone_server *srv;
    struct veil_io listen_io; /* 0.0.0.0:15008 */
    bool draining;
    uint64_t drain_end_ms;
    struct veil_timer drain_timer;
};

static void feed(struct veil_node_wp *wp, const char *kind, const char *key, const char *ns,
                 const char *name, const json_t *spec)
{
    char err[512] = "";
    int rc = veil_wp_config_item(wp->engine, kind, key, ns, name, spec, err, sizeof(err));
    if (rc < 0)
        VEIL_WARN(LOG, "waypoint: %s refused: %s", key != NULL ? key : "snapshot", err);
    else if (rc > 0 && err[0] != '\0')
        VEIL_INFO(LOG, "waypoint: %s: %s", key, err);
}

/* The kind of a key "Kind/ns/name" into buf; ns and name point into key. */
static int split_key(const char *key, char *kind, size_t kl, char *ns, size_t nl, const char **name)
{
    const char *a = strchr(key, '/'), *b = a != NULL ? strchr(a + 1, '/') : NULL;
    if (b == NULL || (size_t)(a - key) >= kl || (size_t)(b - a - 1) >= nl)
        return -EINVAL;
    snprintf(kind, kl, "%.*s", (int)(a - key), key);
    snprintf(ns, nl, "%.*s", (int)(b - a - 1), a + 1);
    *name = b + 1;
    return 0;
}

/* One item changed (it NULL: removed; key NULL: a full snapshot follows). */
static void item_changed(struct veil_node_wp *wp, const char *key, const struct veil_node_item *it)
{
    char kind[32], ns[256];
    const char *name;
    if (key == NULL)
        feed(wp, NULL, NULL, NULL, NULL, NULL);
    else if (it != NULL)
        feed(wp, json_string_value(json_object_get(it->json, "kind")), key, it->ns, it->name,
             json_object_get(it->json, "spec"));
    else if (split_key(key, kind, sizeof(kind), ns, sizeof(ns), &name) == 0)
        feed(wp, kind, key, ns, name, NULL);
}

static bool for_engine(const struct veil_node_item *it)
{
    return it->kind == VEIL_NODE_AUTHZ_POLICY || it->kind == VEIL_NODE_ROUTE;
}

static int replay_one(void *arg, const struct veil_node_item *it)
{
    if (for_engine(it))
        item_changed(arg, it->key, it);
    return 0;
}

/* The engine is new: it gets everything there is. */
static void replay(struct veil_node_wp *wp)
{
    feed(wp, NULL, NULL, NULL, NULL, NULL);
    veil_node_cfg_each(&wp->node->cfg, replay_one, wp);
}

void node__wp_policy(struct veil_node *n, const char *key, const struct veil_node_item *it)
{
    static const char prefix[] = "AuthorizationPolicy/";
    if (n->wp == NULL || n->wp->engine == NULL)
        return; /* the engine gets the whole state when it is made */
    if (key == NULL || strncmp(key, prefix, sizeof(prefix) - 1) == 0)
        item_changed(n->wp, key, it);
}

void node__wp_route(void *ctx, const char *key, const struct veil_node_item *it)
{
    struct veil_node *n = ctx;
    if (n->wp != NULL && n->wp->engine != NULL)
        item_changed(n->wp, key, it);
}

/* ---- HBONE on 15008 ---- */

static void on_connect(struct veil_hbone_h2s *h2s, const struct veil_hbone_connect_info *info,
                       void *arg)
{
    struct veil_node_wp *wp = arg;
    veil_wp_connect(wp->engine, h2s, info);
}

static void accept_cb(struct veil_io *io, uint32_t ev)
{
    struct veil_node_wp *wp = VEIL_CONTAINER_OF(io, struct veil_node_wp, listen_io);
    (void)ev;
    for (int i = 0; i < 64; i++) {
        int fd = accept4(veil_io_fd(io), NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        if (veil_hbone_server_accept(wp->srv, fd) != 0)
            node__refused(wp->node, "hbone_setup");
    }
}

static void close_listener(struct veil_node_wp *wp)
{
    if (veil_io_is_active(&wp->listen_io)) {
        int fd = veil_io_fd(&wp->listen_io);
        veil_io_stop(&wp->listen_io);
        close(fd);
    }
}

static int serve(struct veil_node_wp *wp)
{
    struct veil_node *n = wp->node;
    struct veil_hbone_server_opts o = {
        .tls = wp->ident->server_ctx,
        .cbs = {.on_connect = on_connect},
        .arg = wp,
        .name = n->opts.name,
    };
    if ((wp->srv = veil_hbone_server_new(n->loop, &o)) == NULL)
        return -errno;
    int fd = veil_listen_tcp("0.0.0.0", VEIL_PORT_HBONE, NULL);
    int rc = fd < 0 ? fd : veil_io_start(n->loop, &wp->listen_io, fd, VEIL_IO_READ, accept_cb);
    if (rc != 0) {
        if (fd >= 0)
            close(fd);
        veil_hbone_server_free(wp->srv);
        wp->srv = NULL;
        return rc;
    }
    return 0;
}

static int make_engine(struct veil_node_wp *wp)
{
    struct veil_node *n = wp->node;
    struct veil_wp_env env = {
        .loop = n->loop,
        .cfg = &n->cfg,
        .pool = n->pool,
        .client_tls = wp->ident->client_ctx,
        .ns = n->opts.waypoint_ns,
        .name = n->opts.waypoint_name,
        .identity = wp->ident->id,
        .metrics = n->metrics,
    };
    if ((wp->engine = veil_wp_new(&env)) == NULL)
        return -errno;
    replay(wp);
    return 0;
}

void node__wp_ident_ready(struct veil_node *n, struct veil_node_ident *id)
{
    struct veil_node_wp *wp = n->wp;
    if (wp == NULL || id != wp->ident || wp->draining)
        return;
    if (wp->engine != NULL) { /* renewal */
        veil_wp_set_client_tls(wp->engine, id->client_ctx);
        if (wp->srv != NULL)
            veil_hbone_server_set_tls(wp->srv, id->server_ctx);
        return;
    }
    int rc = make_engine(wp);
    if (rc == 0 && (rc = serve(wp)) != 0) {
        veil_wp_free(wp->engine);
        wp->engine = NULL;
    }
    if (rc != 0) {
        VEIL_ERROR(LOG, "waypoint %s/%s: cannot serve HBONE on 0.0.0.0:%d: %s", n->opts.waypoint_ns,
                   n->opts.waypoint_name, VEIL_PORT_HBONE, strerror(-rc));
        return;
    }
    VEIL_INFO(LOG, "waypoint %s/%s: serving HBONE on 0.0.0.0:%d as %s", n->opts.waypoint_ns,
              n->opts.waypoint_name, VEIL_PORT_HBONE, id->id);
}

int node__wp_start(struct veil_node *n)
{
    struct veil_node_wp *wp = veil_calloc(1, sizeof(*wp));
    if (wp == NULL)
        return -ENOMEM;
    wp->node = n;
    n->wp = wp;
    wp->ident = node__ident_get(n, n->opts.waypoint_ns, n->opts.waypoint_name);
    if (wp->ident == NULL) {
        VEIL_ERROR(LOG, "waypoint %s/%s: not a valid identity", n->opts.waypoint_ns,
                   n->opts.waypoint_name);
        return -EINVAL;
    }
    return 0;
}

/* Ready: 15008 listens and a configuration is in force (a CONNECT before
 * the first snapshot would find no service: `veil waypoint add --enroll`
 * labels the namespace only once this is true). */
bool node__wp_ready(const struct veil_node *n)
{
    const struct veil_node_wp *wp = n->wp;
    return wp != NULL && !wp->draining && n->cfg.loaded && veil_io_is_active(&wp->listen_io);
}

void node__wp_stats(const struct veil_node *n, struct veil_hbone_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (n->wp != NULL && n->wp->srv != NULL)
        veil_hbone_server_stats(n->wp->srv, out);
}

/* ---- drain ---- */

static void drain_cb(struct veil_timer *t)
{
    struct veil_node_wp *wp = VEIL_CONTAINER_OF(t, struct veil_node_wp, drain_timer);
    struct veil_hbone_stats st;
    node__wp_stats(wp->node, &st);
    if (st.streams == 0 || veil_now_ms() >= wp->drain_end_ms) {
        VEIL_INFO(LOG, "waypoint: drained (%llu tunnel(s) still open): stopping",
                  (unsigned long long)st.streams);
        veil_loop_stop(wp->node->loop);
        return;
    }
    veil_timer_start(wp->node->loop, t, DRAIN_POLL_MS, 0, drain_cb);
}

bool node__wp_drain(struct veil_node *n)
{
    struct veil_node_wp *wp = n->wp;
    if (wp == NULL || wp->draining)
        return false;
    int ms = n->opts.drain_ms > 0 ? n->opts.drain_ms : VEIL_NODE_WP_DRAIN_MS;
    wp->draining = true;
    wp->drain_end_ms = veil_now_ms() + (uint64_t)ms;
    close_listener(wp);
    if (wp->engine != NULL)
        veil_wp_drain(wp->engine);
    VEIL_INFO(LOG, "waypoint: draining: no new connections on %d, open tunnels get up to %d ms",
              VEIL_PORT_HBONE, ms);
    veil_timer_start(n->loop, &wp->drain_timer, 0, 0, drain_cb);
    return true;
}

void node__wp_free(struct veil_node *n)
{
    struct veil_node_wp *wp = n->wp;
    if (wp == NULL)
        return;
    veil_timer_stop(&wp->drain_timer);
    close_listener(wp);
    veil_wp_free(wp->engine);
    veil_hbone_server_free(wp->srv);
    veil_free(wp);
    n->wp = NULL;
}
