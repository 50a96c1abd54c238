/*
 * RequestMirror (docs/waypoint.md, "Mirrors"): a copy of a complete request
 * goes to one endpoint of the mirror's Service on an HBONE stream of its
 * own; the answer is read and dropped, and nothing of it reaches the client
 * or holds up its request. Fire and forget, and bounded: a copy is at most
 * WP_REPLAY_MAX bytes (a bigger request is not mirrored), at most
 * WP_MIRRORS_MAX copies are in flight per engine, and each lives at most
 * WP_MIRROR_MS.
 *
 * HTTP/1.1: the copy is the request's bytes exactly as they went to the
 * backend (the route's filters applied), sent and then half-closed, so the
 * mirror's server sees one request and the end of the connection; the
 * stream ends at the server's close. HTTP/2: the copy is the request head
 * as it went upstream and its body, sent as one stream of a client session
 * of our own on the mirror's stream; the mirror ends when that stream
 * closes.
 */
#include "waypoint/h2-int.h"

#include "core/alloc.h"
#include "core/container.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/metrics.h"
#include "hbone/hbone.h"
#include "l4/pump.h"
#include "node/config.h"

#include <nghttp2/nghttp2.h>

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

struct wp_mirror {
    struct wp_link link; /* in wp->mirrors */
    struct veil_wp *wp;
    uint64_t conn_id;
    struct veil_hbone_h2s *dialing;
    struct veil_l4_end *end;
    struct wp_buf out;   /* bytes not yet accepted by the stream */
    bool shut;           /* HTTP/1.1: the stream was half-closed after the copy */
    nghttp2_session *ng; /* HTTP/2: the client session on the stream */
    struct wp_buf body;  /* ... the request body it has still to send */
    bool h2_closed;      /* ... its stream closed */
    int32_t h2_id;
    struct veil_timer timer;
    struct veil_defer free_d;
    struct veil_hbone_header hdr; /* x-veil-source-principal: the caller's */
    char principal[300];
    char svc[200]; /* "ns/name:port", for logs */
};

static void count(struct veil_wp *wp, const char *result)
{
    const char *v[] = {result};
    veil_metrics_counter_add(veil_metrics_series(wp->m.mirrors, v), 1);
}

static void free_d(struct veil_defer *d)
{
    struct wp_mirror *m = VEIL_CONTAINER_OF(d, struct wp_mirror, free_d);
    veil_free(m);
}

/* The mirror is over: result "ok" (the server answered and closed) or
 * "error" (dial, reset, timeout). */
static void finish(struct wp_mirror *m, const char *result, const char *why)
{
    struct veil_wp *wp = m->wp;
    if (why != NULL)
        VEIL_DEBUG(LOG, "conn %llu: mirror to %s: %s", (unsigned long long)m->conn_id, m->svc, why);
    veil_timer_stop(&m->timer);
    if (m->dialing != NULL)
        veil_hbone_h2s_cancel(m->dialing);
    if (m->end != NULL)
        m->end->ops->close(m->end, why != NULL);
    m->dialing = NULL;
    m->end = NULL;
    nghttp2_session_del(m->ng);
    m->ng = NULL;
    wp__buf_free(&m->out);
    wp__buf_free(&m->body);
    wp__link_del(&m->link);
    wp->nmirrors--;
    count(wp, result);
    veil_loop_defer(wp->env.loop, &m->free_d, free_d);
}

/* HTTP/2: frames the session has to send, into m->out. 0 or -1. */
static int h2_pull(struct wp_mirror *m)
{
    while (wp__buf_len(&m->out) < 16 * 1024 && nghttp2_session_want_write(m->ng)) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(m->ng, &p);
        if (n == 0)
            break;
        if (n < 0 || wp__buf_put(&m->out, p, (size_t)n, WP_REPLAY_MAX + 80 * 1024) != 0)
            return -1;
    }
    return 0;
}

static void notify(struct veil_l4_end *e, uint32_t events, void *arg)
{
    (void)events;
    struct wp_mirror *m = arg;
    bool moved = true;
    while (moved) {
        moved = false;
        if (m->ng != NULL && h2_pull(m) != 0) {
            finish(m, "error", "HTTP/2 session failed");
            return;
        }
        while (wp__buf_len(&m->out) > 0) {
            ssize_t n = e->ops->write(e, wp__buf_data(&m->out), wp__buf_len(&m->out));
            if (n == -EAGAIN)
                break;
            if (n < 0) {
                finish(m, "error", "write failed");
                return;
            }
            wp__buf_used(&m->out, (size_t)n);
            moved = true;
        }
        if (m->ng == NULL && wp__buf_len(&m->out) == 0 && !m->shut) {
            wp__buf_free(&m->out);
            e->ops->shutdown_write(e);
            m->shut = true;
        }
        char in[4096];
        ssize_t n = e->ops->read(e, in, sizeof(in));
        if (n > 0) {
            moved = true;
            if (m->ng != NULL &&
                nghttp2_session_mem_recv(m->ng, (const uint8_t *)in, (size_t)n) < 0) {
                finish(m, "error", "bad HTTP/2 from the mirror");
                return;
            }
        } else if (n == 0 || m->h2_closed) {
            bool ok = m->ng != NULL ? m->h2_closed : m->shut;
            finish(m, ok ? "ok" : "error", ok ? NULL : "closed before the copy was answered");
            return;
        } else if (n != -EAGAIN) {
            finish(m, "error", "reset");
            return;
        }
        if (m->h2_closed) {
            finish(m, "ok", NULL);
            return;
        }
    }
    e->ops->set_interest(
        e, VEIL_L4_READ |
               (wp__buf_len(&m->out) > 0 || (m->ng == NULL && !m->shut) ? VEIL_L4_WRITE : 0));
}

static void dial_cb(struct veil_hbone_h2s *h2s, int status, const char *err, void *arg)
{
    struct wp_mirror *m = arg;
    m->dialing = NULL;
    if (status != 200) {
        finish(m, "error", err != NULL ? err : "refused");
        return;
    }
    m->end = veil_hbone_h2s_end(h2s);
    veil_l4_end_bind(m->end, notify, m);
    notify(m->end, VEIL_L4_WRITE, m);
}

static void timeout(struct veil_timer *t)
{
    struct wp_mirror *m = VEIL_CONTAINER_OF(t, struct wp_mirror, timer);
    finish(m, "error", "timed out");
}

/* A mirror of this request to mi, dialing; NULL (counted as dropped) when
 * it cannot go: `whole` false (the request was not kept), too many in
 * flight, no such Service or endpoint. */
static struct wp_mirror *mirror_new(struct wp_conn *c, const struct veil_route_mirror *mi,
                                    bool whole)
{
    struct veil_wp *wp = c->wp;
    uint16_t port = mi->port ? mi->port : c->port;
    struct veil_node_svc *svc = veil_node_cfg_svc_by_name(wp->env.cfg, mi->ns, mi->name);
    struct wp_target t;
    const char *why =
        !whole ? "the request was not kept whole (over 64 KiB, an upgrade, answered here)"
        : wp->nmirrors >= WP_MIRRORS_MAX      ? "too many mirrors in flight"
        : svc == NULL                         ? "no such service"
        : wp__ep_peek(wp, svc, port, &t) != 0 ? "no endpoint"
                                              : NULL;
    struct wp_mirror *m = why == NULL ? veil_calloc(1, sizeof(*m)) : NULL;
    if (m == NULL) {
        VEIL_DEBUG(LOG, "conn %llu: not mirrored to %s/%s:%u: %s", (unsigned long long)c->id,
                   mi->ns, mi->name, port, why != NULL ? why : "out of memory");
        count(wp, "dropped");
        return NULL;
    }
    m->wp = wp;
    m->conn_id = c->id;
    snprintf(m->svc, sizeof(m->svc), "%s/%s:%u", mi->ns, mi->name, port);
    snprintf(m->principal, sizeof(m->principal), "%s", c->src_principal);
    wp__link_add(&wp->mirrors, &m->link);
    wp->nmirrors++;
    struct wp_dial w;
    struct veil_hbone_dial *d = wp__dial_init(&w, wp, t.addr, t.port, t.identity);
    if (m->principal[0] != '\0') {
        m->hdr = (struct veil_hbone_header){VEIL_HBONE_SOURCE_PRINCIPAL, m->principal};
        d->headers = &m->hdr;
        d->nheaders = 1;
    }
    veil_timer_start(wp->env.loop, &m->timer, WP_MIRROR_MS, 0, timeout);
    m->dialing = veil_hbone_pool_connect(wp->env.pool, d, dial_cb, m);
    if (m->dialing == NULL) {
        finish(m, "error", strerror(errno));
        return NULL;
    }
    return m;
}

void wp__mirror(struct wp_conn *c, const struct veil_route_mirror *mi, const void *bytes, size_t n)
{
    bool whole = bytes != NULL && n > 0 && n <= WP_REPLAY_MAX;
    struct wp_mirror *m = mirror_new(c, mi, whole);
    if (m != NULL && wp__buf_put(&m->out, bytes, n, WP_REPLAY_MAX) != 0)
        finish(m, "error", "out of memory");
}

static ssize_t h2_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                       nghttp2_data_source *src, void *user)
{
    (void)ng, (void)id, (void)src;
    struct wp_mirror *m = user;
    size_t n = wp__buf_len(&m->body) < len ? wp__buf_len(&m->body) : len;
    memcpy(buf, wp__buf_data(&m->body), n);
    wp__buf_used(&m->body, n);
    if (wp__buf_len(&m->body) == 0)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int h2_closed(nghttp2_session *ng, int32_t id, uint32_t code, void *user)
{
    (void)ng, (void)code;
    struct wp_mirror *m = user;
    if (id == m->h2_id)
        m->h2_closed = true;
    return 0;
}

void wp__mirror_h2(struct wp_conn *c, const struct veil_route_mirror *mi, const nghttp2_nv *nv,
                   size_t nnv, const void *body, size_t blen, bool whole)
{
    struct wp_mirror *m = mirror_new(c, mi, whole && nv != NULL && blen <= WP_REPLAY_MAX);
    if (m == NULL)
        return;
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0) {
        finish(m, "error", "out of memory");
        return;
    }
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2_closed);
    int rv = nghttp2_session_client_new(&m->ng, cb, m);
    nghttp2_session_callbacks_del(cb);
    const nghttp2_data_provider dp = {.read_callback = h2_body};
    if (rv != 0 || (blen > 0 && wp__buf_put(&m->body, body, blen, WP_REPLAY_MAX) != 0) ||
        nghttp2_submit_settings(m->ng, NGHTTP2_FLAG_NONE, NULL, 0) != 0 ||
        (m->h2_id = nghttp2_submit_request(m->ng, NULL, nv, nnv, blen > 0 ? &dp : NULL, m)) < 0)
        finish(m, "error", "cannot make the HTTP/2 request");
}

void wp__mirrors_free(struct veil_wp *wp)
{
    while (wp->mirrors.next != &wp->mirrors) {
        struct wp_mirror *m = VEIL_CONTAINER_OF(wp->mirrors.next, struct wp_mirror, link);
        finish(m, "error", "waypoint stopping");
    }
}
