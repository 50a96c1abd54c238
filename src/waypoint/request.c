/*
 * An HTTP/1.1 request's stages (wp-int.h): service, authorization, route,
 * filters, the upstream head; then the response: retries, its head and its
 * body back to the client.
 */
#include "waypoint/wp-int.h"

#include "core/alloc.h"
#include "core/container.h"
#include "core/fmt.h"
#include "core/log.h"
#include "core/loop.h"
#include "http/h1.h"
#include "node/config.h"
#include "waypoint/route.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- upstream bytes ---- */

/* Queues request bytes for the upstream, and keeps them for a retry while
 * they fit in WP_REPLAY_MAX. */
void wp__up_put(struct wp_conn *c, struct wp_req *r, const void *p, size_t n)
{
    if (wp__buf_put(&c->uout, p, n, WP_OUT_MAX + WP_IN_MAX) != 0) {
        wp__conn_close(c, true);
        return;
    }
    if (r->replayable && wp__buf_put(&r->replay, p, n, WP_REPLAY_MAX) != 0) {
        r->replayable = false; /* too big to keep (or no memory): no retry */
        wp__buf_free(&r->replay);
    }
}

void wp__up_printf(struct wp_conn *c, struct wp_req *r, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0 && (size_t)n < sizeof(tmp))
        wp__up_put(c, r, tmp, (size_t)n);
}

/* ---- heads ---- */

/* The name is `lit` (lower case, n bytes), in any case. */
static bool name_is(const char *buf, struct veil_h1_span name, const char *lit, size_t n)
{
    return name.len == n && strncasecmp(buf + name.off, lit, n) == 0;
}

enum { HOP_NO, HOP_YES, HOP_TRACEPARENT };

/* Whether a field stops at this hop (ours to write again, or not to pass
 * on): by length first, then by name. traceparent is one of them for the
 * request (we write ours), not for the response. */
static int hop_by_hop(const char *buf, struct veil_h1_span name)
{
    switch (name.len) {
    case 2:
        return name_is(buf, name, "te", 2) ? HOP_YES : HOP_NO;
    case 7:
        return name_is(buf, name, "upgrade", 7) ? HOP_YES : HOP_NO;
    case 10:
        return name_is(buf, name, "connection", 10) || name_is(buf, name, "keep-alive", 10)
                   ? HOP_YES
                   : HOP_NO;
    case 11:
        return name_is(buf, name, "traceparent", 11) ? HOP_TRACEPARENT : HOP_NO;
    case 14:
        return name_is(buf, name, "content-length", 14) ? HOP_YES : HOP_NO;
    case 16:
        return name_is(buf, name, "proxy-connection", 16) ? HOP_YES : HOP_NO;
    case 17:
        return name_is(buf, name, "transfer-encoding", 17) ? HOP_YES : HOP_NO;
    default:
        return HOP_NO;
    }
}

static struct veil_h1_span hval(const struct veil_h1_head *h, const char *buf, const char *name)
{
    const struct veil_h1_header *f = veil_h1_header_find(h, buf, name, NULL);
    struct veil_h1_span none = {0, 0};
    return f != NULL ? f->value : none;
}

static void put_span(struct wp_conn *c, struct wp_req *r, const char *buf, struct veil_h1_span s)
{
    wp__up_put(c, r, buf + s.off, s.len);
}

/* "NAME: VALUE\r\n" upstream; `name` ends in ": ". (No printf on the
 * per-request path: core/fmt.h.) */
static void put_field(struct wp_conn *c, struct wp_req *r, const char *name, const char *value)
{
    wp__up_put(c, r, name, strlen(name));
    wp__up_put(c, r, value, strlen(value));
    wp__up_put(c, r, "\r\n", 2);
}

/* The request head as it goes upstream: hop-by-hop fields out, the
 * route's filters applied, our framing, traceparent. */
static void write_request_head(struct wp_conn *c, struct wp_req *r)
{
    const char *b = r->raw;
    const struct veil_h1_head *h = &r->head;
    struct veil_route_hdr in[WP_HDRS_MAX], out[WP_HDRS_MAX + 32];
    size_t nin = 0;
    for (size_t i = 0; i < h->nheaders; i++) {
        if (hop_by_hop(b, h->headers[i].name) != HOP_NO)
            continue;
        if (r->host_override != NULL && name_is(b, h->headers[i].name, "host", 4))
            continue;
        in[nin++] = (struct veil_route_hdr){b + h->headers[i].name.off, h->headers[i].name.len,
                                            b + h->headers[i].value.off, h->headers[i].value.len};
    }
    int n = wp__headers_filtered(r, false, in, nin, out, sizeof(out) / sizeof(out[0]));
    if (n < 0) {
        wp__reply(c, 500, "too many header fields after the route's filters\n", "-", false);
        return;
    }
    put_span(c, r, b, h->method_span);
    wp__up_put(c, r, " ", 1);
    if (r->path_override != NULL)
        wp__up_put(c, r, r->path_override, strlen(r->path_override));
    else
        put_span(c, r, b, h->target);
    wp__up_put(c, r, " HTTP/1.1\r\n", 11);
    for (int i = 0; i < n; i++) {
        wp__up_put(c, r, out[i].name, out[i].name_len);
        wp__up_put(c, r, ": ", 2);
        wp__up_put(c, r, out[i].value, out[i].value_len);
        wp__up_put(c, r, "\r\n", 2);
    }
    if (r->host_override != NULL)
        put_field(c, r, "host: ", r->host_override);
    else if (!(h->flags & VEIL_H1_F_HOST)) /* HTTP/1.0 without Host */
        put_field(c, r, "host: ", c->svc_name);
    put_field(c, r, "traceparent: ", r->traceparent);
    if (r->upgrade) {
        wp__up_put(c, r, "connection: upgrade\r\nupgrade: ", 30);
        put_span(c, r, b, h->upgrade);
        wp__up_put(c, r, "\r\n", 2);
    }
    char num[VEIL_FMT_U64_MAX];
    if (h->framing == VEIL_H1_BODY_LENGTH) {
        veil_fmt_u64(num, h->content_length);
        put_field(c, r, "content-length: ", num);
    } else if (h->framing == VEIL_H1_BODY_CHUNKED)
        wp__up_put(c, r, "transfer-encoding: chunked\r\n", 28);
    wp__up_put(c, r, "\r\n", 2);
}

/* `pre`, v in decimal, `post` */
static int put_num(struct wp_buf *o, size_t max, const char *pre, uint64_t v, const char *post)
{
    char num[VEIL_FMT_U64_MAX];
    size_t n = veil_fmt_u64(num, v);
    int rc = wp__buf_put(o, pre, strlen(pre), max);
    rc |= wp__buf_put(o, num, n, max);
    return rc | wp__buf_put(o, post, strlen(post), max);
}

static int put_hdrs(struct wp_buf *o, size_t max, const struct veil_route_hdr *h, size_t n)
{
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc |= wp__buf_put(o, h[i].name, h[i].name_len, max);
        rc |= wp__buf_put(o, ": ", 2, max);
        rc |= wp__buf_put(o, h[i].value, h[i].value_len, max);
        rc |= wp__buf_put(o, "\r\n", 2, max);
    }
    return rc;
}

/* The response head as it goes to the client. */
static int write_response_head(struct wp_conn *c, struct wp_req *r)
{
    const char *b = wp__buf_data(&c->uin);
    const struct veil_h1_head *h = &r->rhead;
    struct wp_buf *o = &c->dout;
    size_t max = WP_OUT_MAX + WP_IN_MAX;
    struct veil_route_hdr in[WP_HDRS_MAX], out[WP_HDRS_MAX + 32];
    size_t nin = 0;
    for (size_t i = 0; i < h->nheaders; i++) {
        if (hop_by_hop(b, h->headers[i].name) == HOP_YES)
            continue;
        in[nin++] = (struct veil_route_hdr){b + h->headers[i].name.off, h->headers[i].name.len,
                                            b + h->headers[i].value.off, h->headers[i].value.len};
    }
    int n = wp__headers_filtered(r, true, in, nin, out, sizeof(out) / sizeof(out[0]));
    if (n < 0)
        return n;
    int rc = put_num(o, max, "HTTP/1.1 ", h->status, " ");
    rc |= wp__buf_put(o, b + h->reason.off, h->reason.len, max);
    rc |= wp__buf_put(o, "\r\n", 2, max);
    rc |= put_hdrs(o, max, out, (size_t)n);
    if (h->flags & VEIL_H1_F_TUNNEL) {
        struct veil_h1_span up = hval(h, b, "upgrade");
        rc |= wp__buf_printf(o, max, "connection: upgrade\r\nupgrade: %.*s\r\n", (int)up.len,
                             b + up.off);
    } else if (h->framing == VEIL_H1_BODY_LENGTH) {
        rc |= put_num(o, max, "content-length: ", h->content_length, "\r\n");
    } else if (h->framing == VEIL_H1_BODY_CHUNKED ||
               (h->framing == VEIL_H1_BODY_CLOSE && r->head.version_minor == 1)) {
        r->rchunked_out = true;
        rc |= wp__buf_put(o, "transfer-encoding: chunked\r\n", 28, max);
    } else if (h->framing == VEIL_H1_BODY_CLOSE) {
        r->close_after = true;
    }
    if (r->close_after || !r->keep_alive)
        rc |= wp__buf_put(o, "connection: close\r\n", 19, max);
    rc |= wp__buf_put(o, "\r\n", 2, max);
    return rc;
}

/* ---- the stages ---- */

static void req_timeout(struct veil_timer *t)
{
    struct wp_conn *c = VEIL_CONTAINER_OF(t, struct wp_conn, req_timer);
    if (c->req != NULL) {
        wp__reply(c, 504, "upstream request timeout\n", "UT", false);
        wp__buf_free(&c->uout);
        wp__conn_run(c);
    }
}

static void copy_str(char *dst, size_t cap, const char *s)
{
    veil_fmt_cat(dst, cap, s != NULL ? s : "");
}

void wp__request_begin(struct wp_conn *c, struct wp_req *r)
{
    struct veil_wp *wp = c->wp;
    const struct veil_h1_head *h = &r->head;
    r->start_ms = veil_loop_now(wp->env.loop);
    r->keep_alive = (h->flags & VEIL_H1_F_KEEP_ALIVE) != 0;
    r->upgrade = (h->flags & VEIL_H1_F_UPGRADE) != 0;
    r->flags = "-";
    r->replayable = true;
    r->close_after = wp->draining;
    struct veil_h1_span tp = hval(h, r->raw, "traceparent");
    wp__traceparent(wp, r->raw + tp.off, tp.len, r->traceparent);
    veil_h1_body_init(&r->body, h, NULL);
    veil_h1_parser_init(&r->rp, NULL);
    r->rq = h->framing == VEIL_H1_BODY_NONE ? RQ_DONE : RQ_BODY;
    r->chunked_out = h->framing == VEIL_H1_BODY_CHUNKED;
    if (h->flags & VEIL_H1_F_CONNECT) {
        wp__reply(c, 405, "CONNECT is not proxied by the waypoint\n", "-", true);
        return;
    }
    struct veil_node_svc *svc = veil_node_cfg_svc_by_vip(wp->env.cfg, c->vip.sin_addr);
    if (svc == NULL) {
        wp__reply(c, 503, "no such service\n", "NR", false);
        return;
    }
    r->svc = svc;
    copy_str(c->svc_ns, sizeof(c->svc_ns), svc->ns);
    copy_str(c->svc_name, sizeof(c->svc_name), svc->name);
    if (wp__stage_authz(c, r) != 0 || wp__stage_route(c, r) != 0)
        return;
    wp__up_start(c);
    if (c->dead || c->req != r || r->rs == RS_DONE)
        return;
    write_request_head(c, r);
    if (r->timeout_ms > 0)
        veil_timer_start(wp->env.loop, &c->req_timer, r->timeout_ms, 0, req_timeout);
}

/* ---- retries ---- */

static void try_again(struct veil_timer *t)
{
    struct wp_conn *c = VEIL_CONTAINER_OF(t, struct wp_conn, try_timer);
    struct wp_req *r = c->req;
    if (r == NULL)
        return;
    wp__up_start(c);
    if (!c->dead && c->req == r && r->rs != RS_DONE &&
        wp__buf_put(&c->uout, wp__buf_data(&r->replay), wp__buf_len(&r->replay),
                    WP_OUT_MAX + WP_IN_MAX) != 0)
        wp__conn_close(c, true);
    wp__conn_run(c);
}

static void retry(struct wp_conn *c, struct wp_req *r)
{
    r->attempts++;
    wp__up_close(c, true);
    wp__buf_free(&c->uout);
    veil_h1_parser_init(&r->rp, NULL);
    r->rs = RS_NONE;
    uint64_t backoff = wp__backoff_ms(c->wp, r);
    veil_timer_start(c->wp->env.loop, &c->try_timer, backoff, 0, try_again);
}

/* An attempt failed before its response head: retry it, or answer. */
void wp__attempt_failed(struct wp_conn *c, struct wp_req *r, bool connect, const char *why)
{
    bool again = r->replayable && !c->closing &&
                 ((connect && r->connect_retries < WP_CONNECT_RETRIES) ||
                  (!connect && r->attempts < r->retry_max));
    if (again) {
        if (connect)
            r->connect_retries++;
        VEIL_DEBUG(LOG, "conn %llu: retrying %s: %s", (unsigned long long)c->id, c->svc_name, why);
        retry(c, r);
        return;
    }
    char body[200];
    snprintf(body, sizeof(body), "upstream connect error or disconnect/reset before headers: %s\n",
             why);
    wp__reply(c, 503, body, connect ? "UF" : "UC", false);
    wp__buf_free(&c->uout);
}

static bool retry_status(const struct wp_req *r, uint16_t status)
{
    if (r->attempts >= r->retry_max || !r->replayable || r->rq != RQ_DONE)
        return false;
    for (size_t i = 0; i < r->nretry_codes; i++)
        if (r->retry_codes[i] == status)
            return true;
    return false;
}

/* ---- the response ---- */

static bool resp_head(struct wp_conn *c, struct wp_req *r)
{
    size_t n = wp__buf_len(&c->uin);
    if (n == 0 && !c->up_eof)
        return false;
    ssize_t rc = veil_h1_parse_response(&r->rp, wp__buf_data(&c->uin), n, r->head.method, &r->rhead,
                                        r->rhdrs, WP_HDRS_MAX);
    if (rc == -EAGAIN) {
        if (c->up_eof) {
            wp__ep_done(c, 0);
            wp__attempt_failed(c, r, n == 0 && r->connect_retries < WP_CONNECT_RETRIES,
                               "upstream closed");
            return true;
        }
        return false;
    }
    if (rc < 0) {
        VEIL_INFO(LOG, "conn %llu: bad response from %s: %s", (unsigned long long)c->id, r->backend,
                  veil_h1_strerror(veil_h1_parser_error(&r->rp)));
        wp__reply(c, 502, "bad response from upstream\n", "UPE", true);
        return true;
    }
    if (r->rhead.flags & VEIL_H1_F_INTERIM) {
        if (wp__buf_put(&c->dout, wp__buf_data(&c->uin), (size_t)rc, WP_OUT_MAX + WP_IN_MAX) != 0)
            return false;
        wp__buf_used(&c->uin, (size_t)rc);
        veil_h1_parser_init(&r->rp, NULL);
        return true;
    }
    r->status = r->rhead.status;
    wp__ep_done(c, r->status);
    if (retry_status(r, r->status) && wp__retry_budget(c->wp, r)) {
        r->flags = "URX";
        retry(c, r);
        return true;
    }
    if (write_response_head(c, r) != 0) {
        wp__conn_close(c, true);
        return false;
    }
    r->resp_bytes += 0;
    wp__buf_used(&c->uin, (size_t)rc);
    veil_timer_stop(&c->req_timer);
    if ((r->rhead.flags & VEIL_H1_F_TUNNEL) && r->upgrade) {
        r->rs = RS_DONE;
        r->rq = RQ_DONE;
        wp__request_done(c, r);
        wp__req_free(r);
        c->req = NULL;
        c->mode = WP_RAW;
        return true;
    }
    veil_h1_body_init(&r->rbody, &r->rhead, NULL);
    r->rs = veil_h1_body_done(&r->rbody) ? RS_DONE : RS_BODY;
    return true;
}

static bool resp_body(struct wp_conn *c, struct wp_req *r)
{
    bool moved = false;
    while (r->rs == RS_BODY) {
        size_t have = wp__buf_len(&c->uin);
        size_t used = wp__buf_len(&c->dout);
        if (used + 32 >= WP_OUT_MAX)
            break;
        size_t room = WP_OUT_MAX - used - 32;
        struct veil_h1_span data = {0, 0};
        ssize_t n = 0;
        if (have > 0) {
            n = veil_h1_body_read(&r->rbody, wp__buf_data(&c->uin), have < room ? have : room,
                                  &data);
            if (n < 0) {
                wp__conn_close(c, true);
                return false;
            }
        } else if (c->up_eof) {
            if (veil_h1_body_eof(&r->rbody) != 0) {
                wp__conn_close(c, true);
                return false;
            }
        }
        if (data.len > 0) {
            if (r->rchunked_out)
                wp__buf_printf(&c->dout, WP_OUT_MAX, "%x\r\n", data.len);
            wp__buf_put(&c->dout, wp__buf_data(&c->uin) + data.off, data.len, WP_OUT_MAX);
            if (r->rchunked_out)
                wp__buf_put(&c->dout, "\r\n", 2, WP_OUT_MAX);
            r->resp_bytes += data.len;
        }
        if (n > 0) {
            wp__buf_used(&c->uin, (size_t)n);
            moved = true;
        }
        if (veil_h1_body_done(&r->rbody)) {
            if (r->rchunked_out)
                wp__buf_put(&c->dout, "0\r\n\r\n", 5, WP_OUT_MAX);
            r->rs = RS_DONE;
            return true;
        }
        if (n <= 0)
            break;
    }
    return moved;
}

bool wp__resp_process(struct wp_conn *c, struct wp_req *r)
{
    switch (r->rs) {
    case RS_HEAD:
        if (c->up == NULL)
            return false;
        return resp_head(c, r);
    case RS_BODY:
        return resp_body(c, r);
    default:
        return false;
    }
}
