/*
 * Upstreams (wp-int.h): the endpoint a request or a passed-through tunnel
 * goes to, and its HBONE stream from the waypoint's pool. An HTTP/1.1
 * upstream stays open for the next request of the same client connection
 * when that request goes to the same endpoint; the HBONE connections under
 * the streams are pooled per endpoint by the pool.
 */
#include "waypoint/wp-int.h"

#include "core/alloc.h"
#include "core/container.h"
#include "core/fmt.h"
#include "core/log.h"
#include "core/loop.h"
#include "hbone/hbone.h"
#include "l4/pump.h"
#include "node/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* Closes the upstream stream (or gives up its dial); the attempt's
 * bookkeeping is the caller's. */
static void up_drop(struct wp_conn *c, bool abort)
{
    if (c->dialing != NULL) {
        veil_hbone_h2s_cancel(c->dialing);
        c->dialing = NULL;
    }
    if (c->up != NULL) {
        c->up->ops->close(c->up, abort);
        c->up = NULL;
    }
    c->up_eof = c->up_shut = c->up_reusable = false;
    wp__buf_free(&c->uin);
}

void wp__up_close(struct wp_conn *c, bool abort)
{
    if (c->bal_ep != NULL)
        wp__ep_done(c, -1); /* no verdict on an attempt given up */
    up_drop(c, abort);
}

static void up_attempt_timeout(struct veil_timer *t)
{
    struct wp_conn *c = VEIL_CONTAINER_OF(t, struct wp_conn, try_timer);
    struct wp_req *r = c->req;
    if (r == NULL || r->rs != RS_HEAD)
        return;
    r->flags = "UT";
    wp__ep_done(c, 0);
    if (r->attempts < r->retry_max && r->replayable) {
        wp__attempt_failed(c, r, false, "backend request timeout");
    } else {
        wp__reply(c, 504, "upstream request timeout\n", "UT", false);
        wp__buf_free(&c->uout);
    }
    wp__conn_run(c);
}

static void dial_cb(struct veil_hbone_h2s *h2s, int status, const char *err, void *arg)
{
    struct wp_conn *c = arg;
    c->dialing = NULL;
    if (c->dead) { /* cannot happen: a close cancels the dial */
        return;
    }
    if (status == 200) {
        c->up = veil_hbone_h2s_end(h2s);
        wp__end_bind(c, c->up);
        wp__conn_run(c);
        return;
    }
    VEIL_INFO(LOG, "conn %llu: upstream %s:%u: %s", (unsigned long long)c->id,
              inet_ntoa(c->up_addr), c->up_port, err != NULL ? err : "refused");
    if (c->mode != WP_H1 || c->req == NULL) {
        wp__conn_close(c, true);
        return;
    }
    wp__ep_done(c, 0);
    wp__attempt_failed(c, c->req, true, err != NULL ? err : "refused");
    wp__conn_run(c);
}

/* The endpoint for the request in flight (or the tunnel): 0, or -1 after
 * answering 503 (no endpoint). */
static int pick(struct wp_conn *c, struct wp_req *r, struct wp_target *t)
{
    struct veil_node_svc *svc = r != NULL ? r->svc : c->svc;
    uint16_t port = r != NULL ? r->svc_port : c->port;
    if (svc != NULL && wp__ep_pick(c, svc, port, r != NULL ? r->avoid : NULL, t) == 0)
        return 0;
    if (r != NULL) {
        wp__reply(c, 503, "no healthy upstream\n", "UH", false);
        wp__buf_free(&c->uout);
    } else {
        wp__conn_close(c, true);
    }
    return -1;
}

void wp__up_start(struct wp_conn *c)
{
    struct wp_req *r = c->req;
    struct wp_target t;
    if (c->bal_ep != NULL)
        wp__ep_done(c, -1);
    if (pick(c, r, &t) != 0)
        return;
    const struct wp_target *ep = &t;
    uint16_t target = t.port;
    if (r != NULL) {
        r->rs = RS_HEAD;
        r->ep_addr = ep->addr;
        r->ep_port = target;
        wp__names_from_key(ep->workload, r->dst_ns, sizeof(r->dst_ns), r->dst_wl,
                           sizeof(r->dst_wl));
        veil_fmt_cat(r->dst_principal, sizeof(r->dst_principal),
                     ep->identity != NULL ? ep->identity : "");
        if (r->attempt_timeout_ms > 0)
            veil_timer_start(c->wp->env.loop, &c->try_timer, r->attempt_timeout_ms, 0,
                             up_attempt_timeout);
    }
    if (c->up != NULL && c->up_reusable && c->up_addr.s_addr == ep->addr.s_addr &&
        c->up_port == target) {
        c->up_reusable = false;
        return;
    }
    up_drop(c, false);
    c->up_addr = ep->addr;
    c->up_port = target;
    struct wp_dial w;
    struct veil_hbone_dial *d = wp__dial_init(&w, c->wp, ep->addr, target, ep->identity);
    wp__dial_headers(c, d);
    c->dialing = veil_hbone_pool_connect(c->wp->env.pool, d, dial_cb, c);
    if (c->dialing == NULL) {
        int e = errno;
        VEIL_WARN(LOG, "conn %llu: cannot dial %s: %s", (unsigned long long)c->id, w.authority,
                  strerror(e));
        if (r == NULL) {
            wp__conn_close(c, true);
            return;
        }
        wp__reply(c, 503, "upstream connect error\n", "UF", false);
        wp__buf_free(&c->uout);
    }
}
