/*
 * HTTP/2 with prior knowledge through the waypoint (h2-int.h): the client
 * side's session, each request stream's stages (authorization, route,
 * endpoint) and its answer, local or forwarded. The upstream sessions are
 * in h2up.c.
 */
#include "waypoint/h2-int.h"
#include "waypoint/h2.h"

#include "core/alloc.h"
#include "core/container.h"
#include "core/file.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/metrics.h"
#include "l4/pump.h"
#include "node/authz.h"
#include "node/config.h"
#include "waypoint/balance.h"
#include "waypoint/route.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

/* ---- header blocks ---- */

int wp__h2_hdrs_add(struct wp_h2_hdrs *b, const uint8_t *name, size_t nlen, const uint8_t *value,
                    size_t vlen)
{
    size_t need = 8 + nlen + vlen;
    if (b->weight + nlen + vlen + 32 > WP_H2_HEADERS_MAX)
        return -ENOBUFS;
    if (b->len + need > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + need)
            cap *= 2;
        char *p = veil_realloc(b->p, cap);
        if (p == NULL)
            return -ENOMEM;
        b->p = p;
        b->cap = (uint32_t)cap;
    }
    uint32_t l[2] = {(uint32_t)nlen, (uint32_t)vlen};
    memcpy(b->p + b->len, l, 8);
    memcpy(b->p + b->len + 8, name, nlen);
    memcpy(b->p + b->len + 8 + nlen, value, vlen);
    b->len += (uint32_t)need;
    b->weight += (uint32_t)(nlen + vlen + 32);
    b->n++;
    return 0;
}

void wp__h2_hdrs_free(struct wp_h2_hdrs *b)
{
    veil_free(b->p);
    memset(b, 0, sizeof(*b));
}

void wp__h2_hdrs_next(const struct wp_h2_hdrs *b, uint32_t *off, const char **name, size_t *nlen,
                      const char **value, size_t *vlen)
{
    uint32_t l[2];
    memcpy(l, b->p + *off, 8);
    *name = b->p + *off + 8;
    *nlen = l[0];
    *value = *name + l[0];
    *vlen = l[1];
    *off += 8 + l[0] + l[1];
}

const char *wp__h2_hdrs_get(const struct wp_h2_hdrs *b, const char *name, size_t *vlen)
{
    size_t want = strlen(name);
    uint32_t off = 0;
    for (uint32_t i = 0; i < b->n; i++) {
        const char *n, *v;
        size_t nl, vl;
        wp__h2_hdrs_next(b, &off, &n, &nl, &v, &vl);
        if (nl == want && memcmp(n, name, nl) == 0) {
            *vlen = vl;
            return v;
        }
    }
    *vlen = 0;
    return NULL;
}

/* Connection-specific fields (RFC 9113, 8.2.2) and the ones the waypoint
 * sets itself. */
static bool dropped(const char *n, size_t nl, const char *v, size_t vl, bool request)
{
    static const char *const names[] = {"connection",        "keep-alive", "proxy-connection",
                                        "transfer-encoding", "upgrade",    NULL};
    for (const char *const *p = names; *p != NULL; p++)
        if (strlen(*p) == nl && strncasecmp(n, *p, nl) == 0)
            return true;
    if (nl == 2 && strncasecmp(n, "te", 2) == 0)
        return !(vl == 8 && strncasecmp(v, "trailers", 8) == 0);
    return request && nl == 11 && strncasecmp(n, "traceparent", 11) == 0;
}

nghttp2_nv *wp__h2_hdrs_nv(const struct wp_h2_hdrs *b, size_t extra, bool request, size_t *n)
{
    nghttp2_nv *nv = veil_calloc(b->n + extra + 1, sizeof(*nv));
    if (nv == NULL)
        return NULL;
    size_t k = 0;
    uint32_t off = 0;
    for (uint32_t i = 0; i < b->n; i++) {
        const char *name, *v;
        size_t nl, vl;
        wp__h2_hdrs_next(b, &off, &name, &nl, &v, &vl);
        if (dropped(name, nl, v, vl, request))
            continue;
        nv[k++] = (nghttp2_nv){(uint8_t *)name, (uint8_t *)v, nl, vl, NGHTTP2_NV_FLAG_NONE};
    }
    *n = k;
    return nv;
}

static nghttp2_nv mknv(const char *name, const char *value)
{
    return (nghttp2_nv){(uint8_t *)name, (uint8_t *)value, strlen(name), strlen(value),
                        NGHTTP2_NV_FLAG_NONE};
}

/* ---- output ---- */

int wp__h2_send(nghttp2_session *ng, struct veil_l4_end *e, struct wp_buf *out)
{
    for (;;) {
        while (wp__buf_len(out) < WP_H2_OUT_HIGH) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(ng, &data);
            if (n < 0)
                return -EPROTO;
            if (n == 0)
                break;
            if (wp__buf_put(out, data, (size_t)n, WP_H2_OUT_MAX) != 0)
                return -ENOMEM;
        }
        while (wp__buf_len(out) > 0) {
            ssize_t n = e->ops->write(e, wp__buf_data(out), wp__buf_len(out));
            if (n == -EAGAIN)
                return 0;
            if (n < 0)
                return (int)n;
            wp__buf_used(out, (size_t)n);
        }
        if (!nghttp2_session_want_write(ng))
            return 0;
    }
}

/* ---- telemetry ---- */

static void request_done(struct wp_h2s *s)
{
    if (s->done || !s->headers_done)
        return;
    s->done = true;
    struct wp_conn *c = s->h->c;
    struct wp_record rec = {
        .dst_wl = s->dst_wl,
        .dst_ns = s->dst_ns,
        .dst_principal = s->dst_principal,
        .grpc = s->grpc,
        .status = s->status,
        .grpc_status = s->grpc_status[0] ? s->grpc_status : NULL,
        .flags = s->flags,
        .req_bytes = s->q_bytes,
        .resp_bytes = s->p_bytes,
        .dur_ms = veil_loop_now(c->wp->env.loop) - s->start_ms,
        .method = s->method,
        .method_len = strlen(s->method),
        .path = s->path,
        .path_len = strlen(s->path),
        .authority = s->authority,
        .authority_len = strlen(s->authority),
        .http_version = "HTTP/2",
        .ep_addr = s->ep_addr,
        .ep_port = s->ep_port,
        .backend = s->backend,
        .traceparent = s->traceparent,
        .retried = s->attempts > 0,
    };
    wp__record(c, &rec);
}

/* ---- streams ---- */

/* The balancer's verdict on the attempt of s: the response status, 0 for a
 * failure without one, -1 for none (the client went away). */
static void ep_done(struct wp_h2s *s, int status)
{
    if (s->bal_ep == NULL)
        return;
    enum veil_wp_bal_outcome o = status < 0 ? VEIL_WP_BAL_CANCEL : veil_wp_bal_outcome_of(status);
    s->avoid = status >= 0 && o != VEIL_WP_BAL_OK ? s->bal_ep : NULL;
    veil_wp_bal_done(s->bal_set, s->bal_ep, o, veil_loop_now(s->h->c->wp->env.loop));
    s->bal_ep = NULL;
    if (s->retrying) {
        veil_wp_bal_retry_done(s->bal_set);
        s->retrying = false;
    }
}

void wp__h2_kick(struct wp_h2c *h);

static void stream_free(struct wp_h2s *s)
{
    struct wp_h2c *h = s->h;
    ep_done(s, -1);
    request_done(s);
    if (s->up != NULL)
        wp__h2up_detach(s, s->p_eof ? NGHTTP2_NO_ERROR : NGHTTP2_CANCEL);
    veil_timer_stop(&s->timer);
    veil_timer_stop(&s->try_timer);
    veil_route_release(&s->rm);
    wp__h2_hdrs_free(&s->qh);
    wp__h2_hdrs_free(&s->qt);
    wp__h2_hdrs_free(&s->ph);
    wp__buf_free(&s->qbody);
    wp__buf_free(&s->pbody);
    wp__buf_free(&s->qcopy);
    veil_free(s->qnv);
    wp__link_del(&s->link);
    h->nstreams--;
    veil_free(s);
}

/* The client's DATA for s was used or dropped: its window back. */
static void ds_consumed(struct wp_h2s *s, size_t n)
{
    if (n > 0 && !s->h->dead) {
        nghttp2_session_consume_stream(s->h->ng, s->ds_id, n);
        wp__h2_kick(s->h);
    }
}

/* Stops taking the request body: what waits and what comes is dropped. */
static void q_discard(struct wp_h2s *s)
{
    s->q_discard = true;
    ds_consumed(s, wp__buf_len(&s->qbody));
    wp__buf_free(&s->qbody);
}

static void ds_reset(struct wp_h2s *s, uint32_t code)
{
    nghttp2_submit_rst_stream(s->h->ng, NGHTTP2_FLAG_NONE, s->ds_id, code);
    wp__h2_kick(s->h);
}

ssize_t wp__h2_body_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         struct wp_buf *body, bool eof, const struct wp_h2_hdrs *trailers,
                         size_t *copied)
{
    size_t n = wp__buf_len(body);
    if (n > len)
        n = len;
    if (n > 0) {
        memcpy(buf, wp__buf_data(body), n);
        wp__buf_used(body, n);
    }
    *copied = n;
    if (wp__buf_len(body) > 0)
        return (ssize_t)n;
    if (!eof)
        return n > 0 ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (trailers != NULL) {
        size_t k;
        nghttp2_nv *nv = wp__h2_hdrs_nv(trailers, 0, false, &k);
        if (nv == NULL || nghttp2_submit_trailer(ng, id, nv, k) != 0) {
            veil_free(nv);
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        veil_free(nv);
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    }
    return (ssize_t)n;
}

/* The response body to the client. */
static ssize_t ds_read_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *user)
{
    (void)src, (void)user;
    struct wp_h2s *s = nghttp2_session_get_stream_user_data(ng, id);
    if (s == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    size_t n;
    ssize_t rv = wp__h2_body_read(ng, id, buf, len, flags, &s->pbody, s->p_eof,
                                  s->p_trailers ? &s->ph : NULL, &n);
    if (n > 0) {
        s->p_bytes += n;
        wp__h2up_consumed(s, n);
    }
    return rv;
}

static const char *grpc_name(int code)
{
    switch (code) {
    case 4:
        return "upstream request timeout";
    case 7:
        return "RBAC: access denied";
    case 12:
        return "no route";
    case 14:
        return "no healthy upstream";
    default:
        return "internal error";
    }
}

/*
 * Answers s from the waypoint: HTTP `status` with a text body, or for gRPC
 * a trailers-only response with grpc-status `grpc` and grpc-message `msg`.
 * Too late once the response started: the stream is reset instead.
 */
static void reply_hdr(struct wp_h2s *s, int status, int grpc, const char *msg, const char *flags,
                      const char *hname, const char *hvalue)
{
    s->flags = flags;
    veil_timer_stop(&s->timer);
    veil_timer_stop(&s->try_timer);
    if (s->up != NULL)
        wp__h2up_detach(s, NGHTTP2_CANCEL);
    if (!s->q_eof)
        q_discard(s);
    if (s->p_started) {
        ds_reset(s, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    s->p_started = s->local = true;
    wp__buf_free(&s->pbody);
    nghttp2_session *ng = s->h->ng;
    int rv;
    if (s->grpc) {
        char code[12];
        snprintf(code, sizeof(code), "%d", grpc);
        snprintf(s->grpc_status, sizeof(s->grpc_status), "%d", grpc);
        s->status = 200;
        const nghttp2_nv nv[] = {mknv(":status", "200"), mknv("content-type", "application/grpc"),
                                 mknv("grpc-status", code),
                                 mknv("grpc-message", msg != NULL ? msg : grpc_name(grpc))};
        s->p_eof = true;
        rv = nghttp2_submit_response(ng, s->ds_id, nv, 4, NULL);
    } else {
        char code[8], len[24], body[200];
        int bl = snprintf(body, sizeof(body), "%s\n", msg);
        snprintf(code, sizeof(code), "%d", status);
        snprintf(len, sizeof(len), "%d", bl);
        s->status = (uint16_t)status;
        const nghttp2_nv nv[] = {mknv(":status", code), mknv("content-type", "text/plain"),
                                 mknv("content-length", len),
                                 mknv(hname != NULL ? hname : "", hvalue != NULL ? hvalue : "")};
        wp__buf_put(&s->pbody, body, (size_t)bl, WP_H2_WINDOW);
        s->p_eof = true;
        const nghttp2_data_provider dp = {.read_callback = ds_read_body};
        rv = nghttp2_submit_response(ng, s->ds_id, nv, hname != NULL ? 4 : 3, &dp);
    }
    if (rv != 0)
        ds_reset(s, NGHTTP2_INTERNAL_ERROR);
    wp__h2_kick(s->h);
}

static void reply(struct wp_h2s *s, int status, int grpc, const char *msg, const char *flags)
{
    reply_hdr(s, status, grpc, msg, flags, NULL, NULL);
}

static void stream_timeout(struct veil_timer *t)
{
    struct wp_h2s *s = VEIL_CONTAINER_OF(t, struct wp_h2s, timer);
    ep_done(s, 0);
    if (!s->p_started) {
        reply(s, 504, 4, "upstream request timeout", "UT");
        return;
    }
    s->flags = "UT";
    if (s->up != NULL)
        wp__h2up_detach(s, NGHTTP2_CANCEL);
    ds_reset(s, NGHTTP2_CANCEL);
}

static bool retry(struct wp_h2s *s, int status, bool connect);

/* timeouts.backendRequest: the attempt is given up (retried if it may). */
static void attempt_timeout(struct veil_timer *t)
{
    struct wp_h2s *s = VEIL_CONTAINER_OF(t, struct wp_h2s, try_timer);
    ep_done(s, 0);
    if (s->p_started || !retry(s, 0, false))
        stream_timeout(&s->timer);
}

/* ---- the request's stages ---- */

static void copy_field(const struct wp_h2_hdrs *b, const char *name, char *out, size_t cap)
{
    size_t n;
    const char *v = wp__h2_hdrs_get(b, name, &n);
    snprintf(out, cap, "%.*s", v != NULL ? (int)n : 0, v != NULL ? v : "");
}

/* The regular fields of the request, for authorization and routes. */
static size_t plain_fields(const struct wp_h2_hdrs *b, struct veil_authz_header *ah,
                           struct veil_route_hdr *rh)
{
    size_t k = 0;
    uint32_t off = 0;
    for (uint32_t i = 0; i < b->n; i++) {
        const char *n, *v;
        size_t nl, vl;
        wp__h2_hdrs_next(b, &off, &n, &nl, &v, &vl);
        if (nl > 0 && n[0] == ':')
            continue;
        ah[k] = (struct veil_authz_header){{n, nl}, {v, vl}};
        rh[k] = (struct veil_route_hdr){n, nl, v, vl};
        k++;
    }
    return k;
}

static bool authorized(struct wp_h2s *s, const struct veil_authz_header *ah, size_t nh)
{
    size_t ml, pl, al;
    const char *m = wp__h2_hdrs_get(&s->qh, ":method", &ml);
    const char *p = wp__h2_hdrs_get(&s->qh, ":path", &pl);
    const char *a = wp__h2_hdrs_get(&s->qh, ":authority", &al);
    return !wp__authz_denied(s->h->c, s->ds_id, (struct veil_authz_str){m, ml},
                             (struct veil_authz_str){p, pl}, (struct veil_authz_str){a, al}, ah,
                             nh);
}

/* Whether the route of s (rule or backendRef) edits request or response
 * heads. */
static bool has_mods(const struct wp_h2s *s, bool response)
{
    const struct veil_route_filters *f[2] = {&s->rm.rule->filters, s->be_filters};
    for (int i = 0; i < 2; i++) {
        const struct veil_route_header_mod *m = f[i] == NULL ? NULL
                                                : response   ? &f[i]->response_headers
                                                             : &f[i]->request_headers;
        if (m != NULL && m->nset + m->nadd + m->nremove > 0)
            return true;
    }
    return false;
}

/*
 * `in` with the route's edits, in `out` (empty): pseudo-header fields first,
 * :path and :authority replaced by `path` and `authority` when given; then
 * the regular fields through the header modifiers of the rule and the
 * backendRef (request or response ones). 0, or -errno.
 */
static int hdrs_edited(const struct wp_h2s *s, const struct wp_h2_hdrs *in, bool response,
                       const char *path, const char *authority, struct wp_h2_hdrs *out)
{
    size_t cap = in->n + 64; /* two header modifiers add at most 2 x (16 set + 16 add) */
    struct veil_route_hdr *l = veil_calloc(3 * cap, sizeof(*l));
    if (l == NULL)
        return -ENOMEM;
    size_t n = 0;
    int rc = 0;
    uint32_t off = 0;
    for (uint32_t i = 0; i < in->n && rc == 0; i++) {
        const char *nm, *v;
        size_t nl, vl;
        wp__h2_hdrs_next(in, &off, &nm, &nl, &v, &vl);
        if (nl == 0 || nm[0] != ':') {
            l[n++] = (struct veil_route_hdr){nm, nl, v, vl};
            continue;
        }
        if (path != NULL && nl == 5 && memcmp(nm, ":path", 5) == 0)
            v = path, vl = strlen(path);
        else if (authority != NULL && nl == 10 && memcmp(nm, ":authority", 10) == 0)
            v = authority, vl = strlen(authority);
        rc = wp__h2_hdrs_add(out, (const uint8_t *)nm, nl, (const uint8_t *)v, vl);
    }
    const struct veil_route_filters *f[2] = {&s->rm.rule->filters, s->be_filters};
    int k = rc == 0 ? wp__header_mods(f, response, l, n, l + cap, l + 2 * cap, cap) : rc;
    for (int i = 0; i < k && rc == 0; i++)
        rc = wp__h2_hdrs_add(out, (const uint8_t *)l[cap + i].name, l[cap + i].name_len,
                             (const uint8_t *)l[cap + i].value, l[cap + i].value_len);
    veil_free(l);
    if (k < 0)
        rc = k;
    if (rc != 0)
        wp__h2_hdrs_free(out);
    return rc;
}

/* The request head of a matched s with the route's URLRewrite (rule's,
 * then the backendRef's) and request header modifiers: 0, or -1 after
 * answering. */
static int request_edits(struct wp_h2s *s, const char *path, size_t path_len)
{
    const struct veil_route_filters *f[2] = {&s->rm.rule->filters, s->be_filters};
    char newpath[4096];
    const char *p = NULL, *host = NULL;
    for (int i = 0; i < 2; i++) {
        if (f[i] == NULL || !f[i]->has_rewrite)
            continue;
        const struct veil_route_rewrite *rw = &f[i]->rewrite;
        if (rw->path.type != VEIL_ROUTE_PATH_KEEP) {
            if (veil_route_path_rewrite(&s->rm, &rw->path, path, path_len, newpath,
                                        sizeof(newpath)) < 0) {
                reply(s, 500, 13, "cannot rewrite the path", "-");
                return -1;
            }
            p = newpath;
        }
        if (rw->hostname != NULL)
            host = rw->hostname;
    }
    if (p == NULL && host == NULL && !has_mods(s, false))
        return 0;
    struct wp_h2_hdrs out = {0};
    int rc = hdrs_edited(s, &s->qh, false, p, host, &out);
    if (rc != 0) {
        reply(s, 500, 13,
              rc == -ENOMEM ? "out of memory" : "request head too big after the route's filters",
              "-");
        return -1;
    }
    wp__h2_hdrs_free(&s->qh);
    s->qh = out;
    return 0;
}

/* The backend service and port of s: 0, or -1 after answering. */
static int route(struct wp_h2s *s, const struct veil_route_hdr *rh, size_t nh,
                 struct veil_node_svc **svc, uint16_t *port)
{
    struct wp_conn *c = s->h->c;
    struct veil_wp *wp = c->wp;
    *svc = veil_node_cfg_svc_by_vip(wp->env.cfg, c->vip.sin_addr);
    *port = s->svc_port = c->port;
    s->svc_ns = c->svc_ns;
    s->svc_name = c->svc_name;
    snprintf(s->backend, sizeof(s->backend), "%s/%s", c->svc_ns, c->svc_name);
    if (*svc == NULL) {
        reply(s, 503, 14, "no such service", "NR");
        return -1;
    }
    if (wp->routes == NULL)
        return 0;
    size_t ml, pl, al;
    const char *m = wp__h2_hdrs_get(&s->qh, ":method", &ml);
    const char *p = wp__h2_hdrs_get(&s->qh, ":path", &pl);
    const char *a = wp__h2_hdrs_get(&s->qh, ":authority", &al);
    struct veil_route_req q = {.method = m,
                               .method_len = ml,
                               .path = p,
                               .path_len = pl,
                               .authority = a,
                               .authority_len = al,
                               .headers = rh,
                               .nheaders = nh,
                               .port = c->port,
                               .port_name = wp__port_name(*svc, c->port),
                               .grpc = s->grpc};
    enum veil_route_verdict v =
        veil_route_find(wp->routes, c->svc_ns, c->svc_name, c->port, &q, &s->rm);
    if (v == VEIL_ROUTE_NONE)
        return 0;
    if (v == VEIL_ROUTE_NOT_FOUND) {
        reply(s, 404, 12, "no route", "NR");
        return -1;
    }
    const struct veil_route_rule *rule = s->rm.rule;
    if (rule->filters.has_redirect) {
        const struct veil_route_redirect *rd = &rule->filters.redirect;
        char loc[2048];
        if (veil_route_redirect_location(&s->rm, rd, &q, loc, sizeof(loc)) < 0)
            reply(s, 500, 13, "cannot build the redirect location", "-");
        else
            reply_hdr(s, rd->status ? rd->status : 302, 13, "", "-", "location", loc);
        return -1;
    }
    const struct veil_route_backend *b = veil_route_pick(rule, wp__rand(wp));
    if (b == NULL) {
        reply(s, 500, 13, "no valid backend", "NR");
        return -1;
    }
    *svc = veil_node_cfg_svc_by_name(wp->env.cfg, b->ns, b->name);
    *port = s->svc_port = b->port ? b->port : c->port;
    s->svc_ns = b->ns;
    s->svc_name = b->name;
    snprintf(s->backend, sizeof(s->backend), "%s/%s", b->ns, b->name);
    if (*svc == NULL) {
        reply(s, 500, 13, "backend service not found", "NR");
        return -1;
    }
    s->be_filters = b->filters;
    if (request_edits(s, p, pl) != 0)
        return -1;
    wp__mirrors_hit(wp, &rule->filters, s->mirrors, &s->nmirrors);
    wp__mirrors_hit(wp, b->filters, s->mirrors, &s->nmirrors);
    s->attempt_timeout_ms = rule->backend_timeout_ms;
    if (rule->retry.set) {
        s->retry_max = rule->retry.attempts;
        s->retry_codes = rule->retry.codes;
        s->nretry_codes = rule->retry.ncodes;
        s->backoff_ms = rule->retry.backoff_ms;
    }
    if (rule->request_timeout_ms > 0)
        veil_timer_start(wp->env.loop, &s->timer, rule->request_timeout_ms, 0, stream_timeout);
    return 0;
}

/* The request head as it goes upstream, in s->qnv. 0 or -ENOMEM. */
static int upstream_head(struct wp_h2s *s)
{
    size_t k;
    veil_free(s->qnv); /* a retry's */
    s->qnv = wp__h2_hdrs_nv(&s->qh, 1, true, &k);
    if (s->qnv == NULL)
        return -ENOMEM;
    /* New on every request: not indexed, so it neither evicts the
     * headers that repeat from the HPACK tables nor is inserted on both
     * sides for nothing. */
    s->qnv[k] = mknv("traceparent", s->traceparent);
    s->qnv[k++].flags = NGHTTP2_NV_FLAG_NO_INDEX;
    s->nqnv = k;
    return 0;
}

static void endpoint(struct wp_h2s *s, struct veil_node_svc *svc, uint16_t port)
{
    struct wp_conn *c = s->h->c;
    struct wp_target t;
    if (wp__ep_pick(c, svc, port, s->avoid, &t) != 0) {
        reply(s, 503, 14, "no healthy upstream", "UH");
        return;
    }
    /* the attempt is the stream's, not the connection's (HTTP/1's) */
    s->bal_set = c->bal_set;
    s->bal_ep = c->bal_ep;
    c->bal_set = NULL;
    c->bal_ep = NULL;
    s->ep_addr = t.addr;
    s->ep_port = t.port;
    wp__names_from_key(t.workload, s->dst_ns, sizeof(s->dst_ns), s->dst_wl, sizeof(s->dst_wl));
    snprintf(s->dst_principal, sizeof(s->dst_principal), "%s",
             t.identity != NULL ? t.identity : "");
    struct wp_h2up *up = wp__h2up_get(s->h, t.addr, t.port, s->dst_principal);
    if (up == NULL) {
        reply(s, 503, 14, "upstream connect error", "UF");
        return;
    }
    if (upstream_head(s) != 0) {
        reply(s, 500, 13, "out of memory", "-");
        return;
    }
    if (s->attempt_timeout_ms > 0)
        veil_timer_start(c->wp->env.loop, &s->try_timer, s->attempt_timeout_ms, 0, attempt_timeout);
    wp__h2up_attach(up, s);
}

/* ---- retries (as HTTP/1.1's: docs/waypoint.md, "The request pipeline") ---- */

static bool retry_code(const struct wp_h2s *s, int status)
{
    for (size_t i = 0; i < s->nretry_codes; i++)
        if (s->retry_codes[i] == status)
            return true;
    return false;
}

static void try_again(struct veil_timer *t)
{
    struct wp_h2s *s = VEIL_CONTAINER_OF(t, struct wp_h2s, try_timer);
    struct veil_wp *wp = s->h->c->wp;
    struct veil_node_svc *svc = veil_node_cfg_svc_by_name(wp->env.cfg, s->svc_ns, s->svc_name);
    if (svc == NULL) {
        reply(s, 503, 14, "backend service not found", "UH");
        return;
    }
    wp__buf_free(&s->qbody); /* the whole body again, from the copy */
    if (wp__buf_put(&s->qbody, wp__buf_data(&s->qcopy), wp__buf_len(&s->qcopy), WP_H2_WINDOW + 1) !=
        0) {
        reply(s, 500, 13, "out of memory", "-");
        return;
    }
    s->q_sent = 0;
    endpoint(s, svc, s->svc_port);
    wp__h2_kick(s->h);
}

/*
 * The attempt of s failed before the response started: `status` its
 * response (a 5xx, say), 0 for none (reset, timeout), `connect` if it never
 * reached the endpoint. Retries it, after a backoff, when the request is
 * complete and kept whole and the route (or, for connect failures, the
 * default) allows one more; a status retry also needs the retry budget.
 * true if a retry is coming. The balancer's verdict (ep_done) comes first.
 */
static bool retry(struct wp_h2s *s, int status, bool connect)
{
    if (!s->q_eof || s->qcopy_over || s->q_trailers || s->h->dead)
        return false;
    if (status > 0) {
        if (s->attempts >= s->retry_max || !retry_code(s, status) || s->bal_set == NULL ||
            !veil_wp_bal_retry_start(s->bal_set))
            return false;
        s->retrying = true;
        s->flags = "URX";
    } else if (connect && s->connect_retries < WP_CONNECT_RETRIES) {
        s->connect_retries++;
    } else if (connect || s->attempts >= s->retry_max) {
        return false;
    }
    s->attempts++;
    if (s->up != NULL)
        wp__h2up_detach(s, NGHTTP2_CANCEL);
    wp__h2_hdrs_free(&s->ph);
    struct veil_wp *wp = s->h->c->wp;
    veil_timer_start(wp->env.loop, &s->try_timer, wp__backoff(wp, s->backoff_ms, s->attempts - 1),
                     0, try_again);
    return true;
}

/* The request head of s is complete: its stages, then the upstream. */
static void stream_begin(struct wp_h2s *s)
{
    struct wp_conn *c = s->h->c;
    struct veil_wp *wp = c->wp;
    s->start_ms = veil_loop_now(wp->env.loop);
    s->flags = "-";
    copy_field(&s->qh, ":method", s->method, sizeof(s->method));
    copy_field(&s->qh, ":path", s->path, sizeof(s->path));
    copy_field(&s->qh, ":authority", s->authority, sizeof(s->authority));
    size_t n;
    const char *ct = wp__h2_hdrs_get(&s->qh, "content-type", &n);
    s->grpc = ct != NULL && n >= 16 && strncasecmp(ct, "application/grpc", 16) == 0;
    const char *tp = wp__h2_hdrs_get(&s->qh, "traceparent", &n);
    wp__traceparent(wp, tp, n, s->traceparent);
    struct veil_authz_header *ah = veil_calloc(s->qh.n + 1, sizeof(*ah));
    struct veil_route_hdr *rh = veil_calloc(s->qh.n + 1, sizeof(*rh));
    struct veil_node_svc *svc;
    uint16_t port;
    if (ah == NULL || rh == NULL) {
        reply(s, 500, 13, "out of memory", "-");
    } else {
        size_t nh = plain_fields(&s->qh, ah, rh);
        if (!authorized(s, ah, nh))
            reply(s, 403, 7, "RBAC: access denied", "RBAC");
        else if (route(s, rh, nh, &svc, &port) == 0)
            endpoint(s, svc, port);
    }
    veil_free(ah);
    veil_free(rh);
}

/* ---- from the upstream (h2up.c) ---- */

static uint16_t status_of(const struct wp_h2_hdrs *b)
{
    char st[8];
    copy_field(b, ":status", st, sizeof(st));
    return (uint16_t)atoi(st);
}

void wp__h2s_up_headers(struct wp_h2s *s, bool end)
{
    nghttp2_session *ng = s->h->ng;
    copy_field(&s->ph, "grpc-status", s->grpc_status, sizeof(s->grpc_status));
    if (s->p_started) { /* trailers: they go after the body */
        s->p_trailers = s->p_eof = true;
        nghttp2_session_resume_data(ng, s->ds_id);
        wp__h2_kick(s->h);
        return;
    }
    uint16_t status = status_of(&s->ph);
    if (status >= 200 && retry_code(s, status)) {
        ep_done(s, status);
        if (retry(s, status, false)) {
            VEIL_DEBUG(LOG, "conn %llu: stream %d: retrying %s after %u",
                       (unsigned long long)s->h->c->id, (int)s->ds_id, s->backend, status);
            return;
        }
    }
    if (status >= 200) {
        veil_timer_stop(&s->try_timer);
        if (s->nmirrors == 0) { /* no retry from here on: the copy is not needed */
            wp__buf_free(&s->qcopy);
            s->qcopy_over = true;
        }
    }
    size_t k;
    nghttp2_nv *nv = wp__h2_hdrs_nv(&s->ph, 0, false, &k);
    int rv = -1;
    if (nv != NULL && status >= 100 && status < 200) {
        rv = status == 101
                 ? 0
                 : nghttp2_submit_headers(ng, NGHTTP2_FLAG_NONE, s->ds_id, NULL, nv, k, NULL);
    } else if (nv != NULL && s->rm.rule != NULL && has_mods(s, true)) {
        struct wp_h2_hdrs out = {0};
        veil_free(nv);
        nv = NULL;
        if (hdrs_edited(s, &s->ph, true, NULL, NULL, &out) == 0) {
            wp__h2_hdrs_free(&s->ph);
            s->ph = out;
            nv = wp__h2_hdrs_nv(&s->ph, 0, false, &k);
        }
    }
    if (nv != NULL && status >= 200) {
        s->status = status;
        s->p_started = true;
        ep_done(s, status);
        s->p_eof = end;
        veil_timer_stop(&s->timer);
        const nghttp2_data_provider dp = {.read_callback = ds_read_body};
        rv = nghttp2_submit_response(ng, s->ds_id, nv, k, end ? NULL : &dp);
    }
    veil_free(nv);
    wp__h2_hdrs_free(&s->ph);
    if (rv != 0)
        ds_reset(s, NGHTTP2_INTERNAL_ERROR);
    wp__h2_kick(s->h);
}

int wp__h2s_up_data(struct wp_h2s *s, const uint8_t *p, size_t n)
{
    if (s->local || wp__buf_put(&s->pbody, p, n, WP_H2_WINDOW + 1) != 0)
        return -1;
    nghttp2_session_resume_data(s->h->ng, s->ds_id);
    wp__h2_kick(s->h);
    return 0;
}

void wp__h2s_up_eof(struct wp_h2s *s)
{
    s->p_eof = true;
    nghttp2_session_resume_data(s->h->ng, s->ds_id);
    wp__h2_kick(s->h);
}

void wp__h2s_up_closed(struct wp_h2s *s, uint32_t code, bool connect, const char *why)
{
    if (s->local)
        return;
    if (code == NGHTTP2_NO_ERROR && s->p_eof) { /* a complete response */
        if (!s->q_eof)
            q_discard(s);
        return;
    }
    VEIL_INFO(LOG, "conn %llu: stream %d to %s: %s", (unsigned long long)s->h->c->id, (int)s->ds_id,
              s->backend, why);
    ep_done(s, 0);
    if (!s->p_started) {
        veil_timer_stop(&s->try_timer);
        if (retry(s, 0, connect))
            return;
        reply(s, 503, 14, connect ? "upstream connect error" : "upstream reset before headers",
              connect ? "UF" : "UR");
        return;
    }
    s->flags = "UR";
    ds_reset(s, code == NGHTTP2_NO_ERROR ? NGHTTP2_INTERNAL_ERROR : code);
}

/* ---- the client's session ---- */

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    struct wp_h2c *h = user;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (h->nstreams >= WP_H2_MAX_STREAMS) { /* before our SETTINGS were acknowledged */
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, f->hd.stream_id, NGHTTP2_REFUSED_STREAM);
        return 0;
    }
    struct wp_h2s *s = veil_calloc(1, sizeof(*s));
    if (s == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    s->h = h;
    s->ds_id = f->hd.stream_id;
    s->flags = "-";
    wp__link_init(&s->up_link);
    wp__link_add(&h->streams, &s->link);
    h->nstreams++;
    nghttp2_session_set_stream_user_data(ng, s->ds_id, s);
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
    (void)flags, (void)user;
    struct wp_h2s *s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (s == NULL || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    struct wp_h2_hdrs *b = s->headers_done ? &s->qt : &s->qh;
    if (wp__h2_hdrs_add(b, name, nlen, value, vlen) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

/* The request of s is complete: a copy to each mirror that hit, if its
 * body was kept whole and its head went upstream. */
static void mirror(struct wp_h2s *s)
{
    bool whole = !s->qcopy_over && !s->local && s->qnv != NULL;
    for (unsigned i = 0; i < s->nmirrors; i++)
        wp__mirror_h2(s->h->c, s->mirrors[i], s->qnv, s->nqnv, wp__buf_data(&s->qcopy),
                      wp__buf_len(&s->qcopy), whole);
    s->nmirrors = 0;
}

static void request_ended(struct wp_h2s *s)
{
    s->q_eof = true;
    if (s->up != NULL)
        wp__h2up_resume(s);
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    (void)user;
    struct wp_h2s *s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (s == NULL)
        return 0;
    bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (f->hd.type == NGHTTP2_HEADERS && !s->headers_done) {
        s->headers_done = true;
        s->q_eof = end;
        stream_begin(s);
    } else if (f->hd.type == NGHTTP2_HEADERS) {
        s->q_trailers = true;
        request_ended(s);
    } else if (f->hd.type == NGHTTP2_DATA && end) {
        request_ended(s);
    }
    if (s->q_eof && s->nmirrors > 0)
        mirror(s);
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    (void)flags, (void)user;
    nghttp2_session_consume_connection(ng, len);
    struct wp_h2s *s = nghttp2_session_get_stream_user_data(ng, id);
    if (s == NULL || s->q_discard) {
        nghttp2_session_consume_stream(ng, id, len);
        return 0;
    }
    if (!s->qcopy_over && wp__buf_put(&s->qcopy, data, len, WP_REPLAY_MAX) != 0) {
        s->qcopy_over = true;
        wp__buf_free(&s->qcopy);
    }
    if (wp__buf_put(&s->qbody, data, len, WP_H2_WINDOW + 1) != 0) {
        nghttp2_session_consume_stream(ng, id, len);
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, id, NGHTTP2_FLOW_CONTROL_ERROR);
        return 0;
    }
    if (s->up != NULL)
        wp__h2up_resume(s);
    return 0;
}

/* A complete response with the request still coming: stop it (RFC 9113,
 * 8.1). */
static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    (void)user;
    if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
        !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct wp_h2s *s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (s == NULL)
        return 0;
    s->p_sent = true;
    if (!s->q_eof)
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, s->ds_id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *user)
{
    (void)user;
    struct wp_h2s *s = nghttp2_session_get_stream_user_data(ng, id);
    if (s == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    if (!s->p_sent && strcmp(s->flags, "-") == 0)
        s->flags = "DC";
    (void)code;
    stream_free(s);
    return 0;
}

static nghttp2_session *session_new(struct wp_h2c *h)
{
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_option *opt = NULL;
    nghttp2_session *ng = NULL;
    if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opt) != 0)
        goto out;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_no_closed_streams(opt, 1);
    nghttp2_option_set_max_send_header_block_length(opt, WP_H2_HEADERS_MAX);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    if (nghttp2_session_server_new2(&ng, cbs, h, opt) != 0)
        ng = NULL;
out:
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    return ng;
}

int wp__h2_settings(nghttp2_session *ng, bool server)
{
    const nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, WP_H2_MAX_STREAMS},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, WP_H2_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, WP_H2_HEADERS_MAX},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    if (nghttp2_submit_settings(ng, NGHTTP2_FLAG_NONE, iv, server ? 3 : 4) != 0 ||
        nghttp2_session_set_local_window_size(ng, NGHTTP2_FLAG_NONE, 0, WP_H2_CONN_WINDOW) != 0)
        return -ENOMEM;
    return 0;
}

/* ---- the connection ---- */

static void h2c_free_d(struct veil_defer *d)
{
    veil_free(VEIL_CONTAINER_OF(d, struct wp_h2c, free_d));
}

void wp__h2_free(struct wp_conn *c)
{
    struct wp_h2c *h = c->h2;
    if (h == NULL)
        return;
    c->h2 = NULL;
    while (h->streams.next != &h->streams)
        stream_free(VEIL_CONTAINER_OF(h->streams.next, struct wp_h2s, link));
    h->dead = true;
    while (h->ups.next != &h->ups)
        wp__h2up_free(VEIL_CONTAINER_OF(h->ups.next, struct wp_h2up, link));
    nghttp2_session_del(h->ng);
    h->ng = NULL;
    veil_loop_defer(c->wp->env.loop, &h->free_d, h2c_free_d);
}

static void h2_close(struct wp_h2c *h, bool abort)
{
    struct wp_conn *c = h->c;
    wp__h2_free(c);
    wp__conn_close(c, abort);
}

/* Passes bytes to the session: 0, or -1 (the connection is to close). */
static int feed(struct wp_h2c *h, const char *p, size_t n)
{
    ssize_t rv = nghttp2_session_mem_recv(h->ng, (const uint8_t *)p, n);
    if (rv >= 0)
        return 0;
    VEIL_DEBUG(LOG, "conn %llu: bad HTTP/2: %s", (unsigned long long)h->c->id,
               nghttp2_strerror((int)rv));
    return -1;
}

/* Reads what the client sent: 0, or -1 to close at once. */
static int h2_read(struct wp_h2c *h)
{
    struct wp_conn *c = h->c;
    if (wp__buf_len(&c->din) > 0) { /* the preface, and what conn.c read after it */
        int rc = feed(h, wp__buf_data(&c->din), wp__buf_len(&c->din));
        wp__buf_free(&c->din);
        if (rc != 0)
            return -1;
    }
    char buf[16384];
    while (!c->down_eof && wp__buf_len(&c->dout) < WP_H2_OUT_HIGH) {
        ssize_t n = c->down->ops->read(c->down, buf, sizeof(buf));
        if (n == -EAGAIN)
            break;
        if (n < 0)
            return -1;
        if (n == 0) {
            c->down_eof = true;
            break;
        }
        if (feed(h, buf, (size_t)n) != 0)
            return -1;
    }
    return 0;
}

static void h2_run(struct wp_h2c *h)
{
    struct wp_conn *c = h->c;
    if (h->dead || c->dead)
        return;
    if (h2_read(h) != 0) {
        h2_close(h, true);
        return;
    }
    for (struct wp_link *l = h->ups.next, *next; l != &h->ups; l = next) {
        next = l->next;
        wp__h2up_run(VEIL_CONTAINER_OF(l, struct wp_h2up, link));
    }
    if (wp__h2_send(h->ng, c->down, &c->dout) != 0) {
        h2_close(h, true);
        return;
    }
    bool idle = wp__buf_len(&c->dout) == 0;
    if (idle && ((!nghttp2_session_want_read(h->ng) && !nghttp2_session_want_write(h->ng)) ||
                 (c->down_eof && h->nstreams == 0))) {
        h2_close(h, false);
        return;
    }
    uint32_t ev = 0;
    if (!c->down_eof && wp__buf_len(&c->dout) < WP_H2_OUT_HIGH)
        ev |= VEIL_L4_READ;
    if (!idle)
        ev |= VEIL_L4_WRITE;
    c->down->ops->set_interest(c->down, ev);
}

static void kick_fn(struct veil_defer *d)
{
    h2_run(VEIL_CONTAINER_OF(d, struct wp_h2c, kick_d));
}

void wp__h2_kick(struct wp_h2c *h)
{
    if (!h->dead)
        veil_loop_defer(h->c->wp->env.loop, &h->kick_d, kick_fn);
}

static void down_notify(struct veil_l4_end *e, uint32_t events, void *arg)
{
    (void)e, (void)events;
    h2_run(arg);
}

int wp__h2_start(struct wp_conn *c)
{
    struct wp_h2c *h = veil_calloc(1, sizeof(*h));
    if (h == NULL)
        return -ENOMEM;
    h->c = c;
    wp__link_init(&h->streams);
    wp__link_init(&h->ups);
    h->ng = session_new(h);
    if (h->ng == NULL || wp__h2_settings(h->ng, true) != 0) {
        nghttp2_session_del(h->ng);
        veil_free(h);
        return -ENOMEM;
    }
    c->h2 = h;
    c->mode = WP_H2;
    veil_l4_end_bind(c->down, down_notify, h);
    /* conn.c finishes its turn first (it may read more into c->din) */
    wp__h2_kick(h);
    return 0;
}
