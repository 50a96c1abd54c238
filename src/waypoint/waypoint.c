/* The waypoint's L7 engine (waypoint.h): the engine object, CONNECTs and
 * configuration items. The tunnels are in conn.c. */
#include "waypoint/waypoint.h"
#include "waypoint/wp-int.h"

#include "core/alloc.h"
#include "core/container.h"
#include "core/log.h"
#include "core/loop.h"
#include "hbone/hbone.h"
#include "node/authz.h"
#include "node/config.h"

#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* xorshift64*: request ids, trace ids, weighted picks; not for secrets. */
uint64_t wp__rand(struct veil_wp *wp)
{
    uint64_t x = wp->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    wp->rng = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* No connection for WP_IDLE_TRIM_MS: memory kept for the next burst goes
 * back (the buffer cache, the access-log buffer, free heap pages; glibc
 * keeps freed pages in the middle of its heap otherwise). */
static void idle_timer_cb(struct veil_timer *t)
{
    struct veil_wp *wp = VEIL_CONTAINER_OF(t, struct veil_wp, idle_timer);
    if (wp->nconns > 0)
        return;
    wp__alog_flush(wp);
    wp__buf_cache_trim();
#ifdef __GLIBC__
    malloc_trim(0);
#endif
}

void wp__conn_unlink(struct wp_conn *c)
{
    if (c->link.next == NULL)
        return;
    wp__link_del(&c->link);
    c->link.prev = c->link.next = NULL;
    struct veil_wp *wp = c->wp;
    if (--wp->nconns == 0)
        veil_timer_start(wp->env.loop, &wp->idle_timer, WP_IDLE_TRIM_MS, 0, idle_timer_cb);
}

struct veil_wp *veil_wp_new(const struct veil_wp_env *env)
{
    if (env == NULL || env->loop == NULL || env->cfg == NULL || env->pool == NULL) {
        errno = EINVAL;
        return NULL;
    }
    struct veil_wp *wp = veil_calloc(1, sizeof(*wp));
    if (wp == NULL)
        return NULL;
    wp->env = *env;
    wp->alog_fd = env->access_log_fd == 0 ? STDERR_FILENO : env->access_log_fd;
    wp__link_init(&wp->conns);
    wp__link_init(&wp->mirrors);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    wp->rng = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)wp;
    if (wp->rng == 0)
        wp->rng = 1;
    wp->authz = veil_authz_new(NULL);
    if (wp->authz == NULL || wp__metrics_setup(wp) != 0 || wp__routes_init(wp) != 0) {
        veil_authz_free(wp->authz);
        wp__routes_free(wp);
        veil_free(wp);
        errno = ENOMEM;
        return NULL;
    }
    return wp;
}

void veil_wp_free(struct veil_wp *wp)
{
    if (wp == NULL)
        return;
    while (wp->conns.next != &wp->conns) {
        struct wp_conn *c = VEIL_CONTAINER_OF(wp->conns.next, struct wp_conn, link);
        wp__conn_close(c, true);
    }
    wp__mirrors_free(wp);
    veil_timer_stop(&wp->idle_timer);
    wp__alog_flush(wp);
    wp__buf_cache_trim();
    veil_authz_free(wp->authz);
    wp__routes_free(wp);
    wp__backends_free(wp);
    veil_free(wp);
}

int veil_wp_config_item(struct veil_wp *wp, const char *kind, const char *key, const char *ns,
                        const char *name, const struct json_t *spec, char *err, size_t errlen)
{
    if (errlen > 0)
        err[0] = '\0';
    if (key == NULL) { /* a full snapshot follows */
        veil_authz_clear(wp->authz);
        wp__routes_clear(wp);
        return 0;
    }
    if (strcmp(kind, "AuthorizationPolicy") == 0) {
        if (spec == NULL) {
            veil_authz_remove(wp->authz, ns, name);
            return 0;
        }
        return veil_authz_set(wp->authz, ns, name, spec, err, errlen);
    }
    if (strcmp(kind, "HTTPRoute") == 0 || strcmp(kind, "GRPCRoute") == 0)
        return wp__routes_item(wp, kind, ns, name, spec, err, errlen);
    return 0;
}

static void source_names(struct wp_conn *c, const struct veil_hbone_connect_info *info)
{
    snprintf(c->src_principal, sizeof(c->src_principal), "%s",
             info->peer_id != NULL ? info->peer_id : "");
    const char *p = strstr(c->src_principal, "/ns/");
    if (p != NULL) {
        const char *e = strchr(p + 4, '/');
        snprintf(c->src_ns, sizeof(c->src_ns), "%.*s", (int)(e != NULL ? e - p - 4 : 63), p + 4);
    }
    if (info->peer != NULL && info->peer->sa_family == AF_INET) {
        c->src_addr = ((const struct sockaddr_in *)info->peer)->sin_addr;
        const struct veil_node_ep *ep = veil_node_cfg_ep_by_ip(c->wp->env.cfg, c->src_addr);
        if (ep != NULL) {
            char ns[64];
            wp__names_from_key(ep->workload, ns, sizeof(ns), c->src_wl, sizeof(c->src_wl));
        }
    }
}

void veil_wp_connect(struct veil_wp *wp, struct veil_hbone_h2s *h2s,
                     const struct veil_hbone_connect_info *info)
{
    if (info->dst->sa_family != AF_INET) {
        veil_hbone_h2s_respond(h2s, 400);
        return;
    }
    const struct sockaddr_in *vip = (const struct sockaddr_in *)info->dst;
    struct veil_node_svc *svc = veil_node_cfg_svc_by_vip(wp->env.cfg, vip->sin_addr);
    if (svc == NULL || !veil_node_svc_has_port(svc, ntohs(vip->sin_port))) {
        VEIL_INFO(LOG, "refused CONNECT %s from %s: not a service port this waypoint serves",
                  info->authority, info->peer_id);
        veil_hbone_h2s_respond(h2s, 404);
        return;
    }
    struct wp_conn *c = wp__conn_new(wp);
    if (c == NULL) {
        veil_hbone_h2s_respond(h2s, 503);
        return;
    }
    c->vip = *vip;
    c->port = ntohs(vip->sin_port);
    c->svc = svc;
    snprintf(c->svc_ns, sizeof(c->svc_ns), "%s", svc->ns);
    snprintf(c->svc_name, sizeof(c->svc_name), "%s", svc->name);
    source_names(c, info);
    if (veil_hbone_h2s_respond(h2s, 200) != 0) {
        veil_free(c);
        return;
    }
    wp__link_add(&wp->conns, &c->link);
    wp->nconns++;
    wp__conn_start(c, veil_hbone_h2s_end(h2s));
}

void veil_wp_set_client_tls(struct veil_wp *wp, struct veil_tls_ctx *tls)
{
    wp->env.client_tls = tls;
}

void veil_wp_drain(struct veil_wp *wp)
{
    wp->draining = true;
    wp__alog_flush(wp);
    struct wp_link *l = wp->conns.next;
    while (l != &wp->conns) {
        struct wp_conn *c = VEIL_CONTAINER_OF(l, struct wp_conn, link);
        l = l->next; /* c may go */
        if (c->mode != WP_H1)
            continue;
        if (c->req != NULL)
            c->req->close_after = true;
        c->closing = true;
        wp__conn_run(c);
    }
}
