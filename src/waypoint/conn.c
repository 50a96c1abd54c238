/*
 * One tunnel from a node proxy (wp-int.h): protocol detection, then either
 * HTTP/1.1 requests, one at a time, through the request stages, or bytes
 * passed through. Every step is driven by wp__conn_run(), which moves what
 * it can between the four bounded buffers and sets the ends' interest.
 */
#include "waypoint/wp-int.h"

#include "core/alloc.h"
#include "core/container.h"
#include "core/log.h"
#include "core/loop.h"
#include "http/h1.h"
#include "l4/pump.h"
#include "waypoint/h2.h"
#include "waypoint/route.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* ---- ends ---- */

static void end_notify(struct veil_l4_end *e, uint32_t events, void *arg)
{
    (void)e, (void)events;
    wp__conn_run(arg);
}

/* Reads from `e` into b: true if bytes, EOF or an error came. */
static bool read_into(struct wp_conn *c, struct veil_l4_end *e, struct wp_buf *b, bool *eof)
{
    if (e == NULL || *eof || wp__buf_room(b, 4096, WP_IN_MAX) != 0)
        return false;
    size_t room = b->cap - b->len;
    if (room > 64 * 1024)
        room = 64 * 1024;
    ssize_t n = e->ops->read(e, b->p + b->len, room);
    if (n > 0) {
        b->len += (uint32_t)n;
        return true;
    }
    if (wp__buf_len(b) == 0)
        wp__buf_free(b);
    if (n == -EAGAIN)
        return false;
    *eof = true;
    if (n < 0 && e == c->down)
        c->closing = true;
    return true;
}

/* Writes b to `e`: true if bytes went. -1 (and the conn closed) on error. */
static int write_from(struct wp_conn *c, struct veil_l4_end *e, struct wp_buf *b)
{
    bool moved = false;
    while (e != NULL && wp__buf_len(b) > 0) {
        ssize_t n = e->ops->write(e, wp__buf_data(b), wp__buf_len(b));
        if (n == -EAGAIN)
            break;
        if (n < 0) {
            if (e == c->up && c->mode == WP_H1) {
                wp__up_close(c, true);
                return 1;
            }
            wp__conn_close(c, true);
            return -1;
        }
        wp__buf_used(b, (size_t)n);
        moved = true;
    }
    return moved ? 1 : 0;
}

static void set_interest(struct wp_conn *c)
{
    if (c->down != NULL) {
        uint32_t ev = 0;
        if (!c->down_eof && wp__buf_len(&c->din) < WP_IN_MAX)
            ev |= VEIL_L4_READ;
        if (wp__buf_len(&c->dout) > 0 || (c->mode == WP_RAW && wp__buf_len(&c->uin) > 0))
            ev |= VEIL_L4_WRITE;
        c->down->ops->set_interest(c->down, ev);
    }
    if (c->up != NULL) {
        uint32_t ev = 0;
        if (!c->up_eof && wp__buf_len(&c->uin) < WP_IN_MAX)
            ev |= VEIL_L4_READ;
        if (wp__buf_len(&c->uout) > 0 || (c->mode == WP_RAW && wp__buf_len(&c->din) > 0))
            ev |= VEIL_L4_WRITE;
        c->up->ops->set_interest(c->up, ev);
    }
}

/* ---- local answers ---- */

static const char *reason_phrase(int status)
{
    switch (status) {
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 303:
        return "See Other";
    case 307:
        return "Temporary Redirect";
    case 308:
        return "Permanent Redirect";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Error";
    }
}

/* Answers the request in flight (or a request that could not be parsed)
 * with `status` and a short body. close: the client connection closes
 * after it (always when the request body was not read to its end). */
static void reply_full(struct wp_conn *c, int status, const char *body, const char *flags,
                       bool close, const char *hname, const char *hvalue)
{
    struct wp_req *r = c->req;
    if (r != NULL && r->rs == RS_BODY) { /* the response is under way: too late */
        wp__conn_close(c, true);
        return;
    }
    if (r != NULL) {
        /* a request body still coming is read and dropped when it is small
         * enough, so the connection can go on; else the connection closes */
        bool drain = r->rq == RQ_BODY && !close && !c->down_eof &&
                     (r->head.framing == VEIL_H1_BODY_CHUNKED ||
                      r->head.content_length - veil_h1_body_total(&r->body) <= WP_DRAIN_MAX);
        if (drain) {
            r->discard = true;
        } else {
            if (r->rq != RQ_DONE)
                close = true;
            r->rq = RQ_DONE;
        }
        r->rs = RS_DONE;
        r->status = (uint16_t)status;
        r->flags = flags;
        r->close_after = r->close_after || close;
        close = r->close_after;
        veil_timer_stop(&c->try_timer);
        veil_timer_stop(&c->req_timer);
        wp__up_close(c, true);
    } else {
        c->closing = true;
        close = true;
    }
    size_t blen = strlen(body);
    wp__buf_printf(&c->dout, WP_OUT_MAX, "HTTP/1.1 %d %s\r\ncontent-length: %zu\r\n", status,
                   reason_phrase(status), blen);
    if (hname != NULL) {
        wp__buf_printf(&c->dout, WP_OUT_MAX, "%s: ", hname);
        wp__buf_put(&c->dout, hvalue, strlen(hvalue), WP_OUT_MAX);
        wp__buf_put(&c->dout, "\r\n", 2, WP_OUT_MAX);
    }
    wp__buf_printf(&c->dout, WP_OUT_MAX, "%s%s\r\n%s",
                   blen > 0 ? "content-type: text/plain\r\n" : "",
                   close ? "connection: close\r\n" : "", body);
    if (r != NULL)
        r->resp_bytes += blen;
}

static void reply(struct wp_conn *c, int status, const char *body, const char *flags, bool close)
{
    reply_full(c, status, body, flags, close, NULL, NULL);
}

void wp__reply(struct wp_conn *c, int status, const char *body, const char *flags, bool close)
{
    reply_full(c, status, body, flags, close, NULL, NULL);
}

void wp__reply_hdr(struct wp_conn *c, int status, const char *body, const char *flags, bool close,
                   const char *name, const char *value)
{
    reply_full(c, status, body, flags, close, name, value);
}

/* ---- detection ---- */

static bool is_tchar(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* WP_H1 / WP_RAW once the first bytes say, or WP_DETECT while they could
 * still be either. */
static enum wp_mode sniff(const char *p, size_t n)
{
    size_t pn = sizeof(h2_preface) - 1;
    if (memcmp(p, h2_preface, n < pn ? n : pn) == 0)
        return n < pn ? WP_DETECT : WP_RAW; /* h2c: h2.c takes it (detect()) */
    size_t i = 0;
    while (i < n && i < 24 && is_tchar((unsigned char)p[i]))
        i++;
    if (i < n && i > 0 && p[i] == ' ')
        return WP_H1;
    if (i == n && i < 24)
        return WP_DETECT;
    return WP_RAW;
}

static void start_raw(struct wp_conn *c)
{
    c->mode = WP_RAW;
    veil_timer_stop(&c->detect_timer);
    wp__up_start(c);
}

static bool detect(struct wp_conn *c)
{
    size_t n = wp__buf_len(&c->din);
    if (n == 0) {
        if (c->down_eof)
            wp__conn_close(c, false);
        return false;
    }
    enum wp_mode m = sniff(wp__buf_data(&c->din), n);
    if (m == WP_DETECT && !c->down_eof)
        return false;
    if (m == WP_H1) {
        c->mode = WP_H1;
        veil_timer_stop(&c->detect_timer);
        veil_h1_parser_init(&c->qp, NULL);
    } else if (m == WP_RAW && n >= sizeof(h2_preface) - 1 &&
               memcmp(wp__buf_data(&c->din), h2_preface, sizeof(h2_preface) - 1) == 0 &&
               wp__h2_start(c) == 0) {
        veil_timer_stop(&c->detect_timer); /* h2.c has the connection now */
    } else {
        start_raw(c);
    }
    return true;
}

static void detect_timeout(struct veil_timer *t)
{
    struct wp_conn *c = VEIL_CONTAINER_OF(t, struct wp_conn, detect_timer);
    if (c->mode == WP_DETECT) {
        start_raw(c);
        wp__conn_run(c);
    }
}

/* ---- HTTP/1 ---- */

void wp__req_free(struct wp_req *r)
{
    if (r == NULL)
        return;
    if (r->matched)
        veil_route_release(&r->match);
    veil_free(r->path_override);
    veil_free(r->raw);
    wp__buf_free(&r->replay);
    veil_free(r);
}

static bool h1_head(struct wp_conn *c)
{
    size_t n = wp__buf_len(&c->din);
    if (n == 0) {
        if (c->down_eof)
            c->closing = true;
        return false;
    }
    struct veil_h1_head h;
    struct veil_h1_header hdrs[WP_HDRS_MAX];
    ssize_t rc = veil_h1_parse_request(&c->qp, wp__buf_data(&c->din), n, &h, hdrs, WP_HDRS_MAX);
    if (rc == -EAGAIN) {
        if (c->down_eof)
            c->closing = true;
        return false;
    }
    if (rc < 0) {
        const char *why = veil_h1_strerror(veil_h1_parser_error(&c->qp));
        VEIL_INFO(LOG, "conn %llu: refused a request: %s", (unsigned long long)c->id, why);
        char body[128];
        snprintf(body, sizeof(body), "bad request: %s\n", why);
        reply(c, 400, body, "DPE", true);
        c->wp->bad_requests++;
        return true;
    }
    _Static_assert(offsetof(struct wp_req, rhdrs) - offsetof(struct wp_req, hdrs) ==
                           sizeof(struct veil_h1_header) * WP_HDRS_MAX &&
                       sizeof(struct wp_req) - offsetof(struct wp_req, rhdrs) <
                           sizeof(struct veil_h1_header) * WP_HDRS_MAX + _Alignof(struct wp_req),
                   "struct wp_req: the header arrays are last");
    struct wp_req *r = veil_malloc(sizeof(*r));
    if (r != NULL) /* all but the header arrays, which the parser fills */
        memset(r, 0, offsetof(struct wp_req, hdrs));
    char *raw = veil_malloc((size_t)rc);
    if (r == NULL || raw == NULL) {
        veil_free(r);
        veil_free(raw);
        wp__conn_close(c, true);
        return false;
    }
    memcpy(raw, wp__buf_data(&c->din), (size_t)rc);
    wp__buf_used(&c->din, (size_t)rc);
    r->raw = raw;
    r->head = h;
    memcpy(r->hdrs, hdrs, h.nheaders * sizeof(hdrs[0]));
    r->head.headers = r->hdrs;
    r->req_bytes = (uint64_t)rc;
    r->conn = c;
    c->req = r;
    veil_h1_parser_init(&c->qp, NULL);
    wp__request_begin(c, r);
    return true;
}

/* Passes request body bytes from din to uout, re-framed. */
static bool h1_req_body(struct wp_conn *c, struct wp_req *r)
{
    bool moved = false;
    while (r->rq == RQ_BODY && !c->dead) {
        size_t have = wp__buf_len(&c->din);
        size_t room = WP_OUT_MAX - wp__buf_len(&c->uout);
        if (room <= 32)
            break;
        room -= 32;
        struct veil_h1_span data = {0, 0};
        ssize_t n = 0;
        if (have > 0 || veil_h1_body_done(&r->body)) {
            n = veil_h1_body_read(&r->body, wp__buf_data(&c->din), have < room ? have : room,
                                  &data);
            if (n < 0 && r->discard) {
                r->rq = RQ_DONE;
                r->close_after = true;
                return true;
            }
            if (n < 0) {
                reply(c, 400, "bad request body\n", "DPE", true);
                return true;
            }
        }
        if (r->discard && veil_h1_body_total(&r->body) > WP_DRAIN_MAX) {
            r->rq = RQ_DONE; /* the answer is out already: just close after it */
            r->close_after = true;
            return true;
        }
        if (data.len > 0 && !r->discard) {
            const char *p = wp__buf_data(&c->din) + data.off;
            if (r->chunked_out)
                wp__up_printf(c, r, "%x\r\n", data.len);
            wp__up_put(c, r, p, data.len);
            if (r->chunked_out)
                wp__up_put(c, r, "\r\n", 2);
            r->req_bytes += data.len;
        }
        if (n > 0) {
            wp__buf_used(&c->din, (size_t)n);
            moved = true;
        }
        if (veil_h1_body_done(&r->body)) {
            if (r->chunked_out && !r->discard)
                wp__up_put(c, r, "0\r\n\r\n", 5);
            r->rq = RQ_DONE;
            return true;
        }
        if (n <= 0) {
            if (c->down_eof && wp__buf_len(&c->din) == 0) { /* truncated */
                wp__conn_close(c, true);
                return false;
            }
            break;
        }
    }
    return moved;
}

static bool h1_finish(struct wp_conn *c, struct wp_req *r)
{
    wp__request_done(c, r);
    veil_timer_stop(&c->req_timer);
    veil_timer_stop(&c->try_timer);
    bool reuse = c->up != NULL && (r->rhead.flags & VEIL_H1_F_KEEP_ALIVE) &&
                 r->rhead.framing != VEIL_H1_BODY_CLOSE && r->rs == RS_DONE && r->status != 0 &&
                 wp__buf_len(&c->uout) == 0 && wp__buf_len(&c->uin) == 0 && !c->up_eof;
    if (reuse)
        c->up_reusable = true;
    else
        wp__up_close(c, false);
    if (r->close_after || !r->keep_alive)
        c->closing = true;
    c->req = NULL;
    wp__req_free(r);
    return true;
}

/* The request is complete: a copy to each mirror that hit, if it was kept
 * whole (WP_REPLAY_MAX) and went upstream. */
static void mirror(struct wp_conn *c, struct wp_req *r)
{
    bool whole = r->replayable && !r->discard && !r->upgrade && wp__buf_len(&r->replay) > 0;
    for (unsigned i = 0; i < r->nmirrors; i++)
        wp__mirror(c, r->mirrors[i], whole ? wp__buf_data(&r->replay) : NULL,
                   wp__buf_len(&r->replay));
    r->nmirrors = 0;
}

static bool h1_process(struct wp_conn *c)
{
    bool moved = false;
    if (c->req == NULL) {
        if (c->closing)
            return false;
        moved |= h1_head(c);
    }
    struct wp_req *r = c->req;
    if (r == NULL || c->dead)
        return moved;
    moved |= h1_req_body(c, r);
    if (c->dead || c->req != r)
        return moved;
    if (r->nmirrors > 0 && r->rq == RQ_DONE)
        mirror(c, r);
    moved |= wp__resp_process(c, r);
    if (c->dead || c->req != r || c->mode != WP_H1)
        return moved;
    if (r->rq == RQ_DONE && r->rs == RS_DONE && wp__buf_len(&c->dout) < WP_OUT_MAX)
        moved |= h1_finish(c, r);
    return moved;
}

/* ---- the driver ---- */

static bool raw_eofs(struct wp_conn *c)
{
    bool moved = false;
    if (c->down_eof && !c->up_shut && c->up != NULL && wp__buf_len(&c->din) == 0 &&
        wp__buf_len(&c->uout) == 0) {
        c->up->ops->shutdown_write(c->up);
        c->up_shut = moved = true;
    }
    if (c->up_eof && !c->down_shut && wp__buf_len(&c->uin) == 0 && wp__buf_len(&c->dout) == 0) {
        c->down->ops->shutdown_write(c->down);
        c->down_shut = moved = true;
    }
    if (c->down_shut && c->up_shut && c->up_eof && c->down_eof)
        wp__conn_close(c, false);
    return moved;
}

static bool step(struct wp_conn *c)
{
    bool moved = read_into(c, c->down, &c->din, &c->down_eof);

    int w;
    switch (c->mode) {
    case WP_DETECT:
        moved |= detect(c);
        break;
    case WP_H1:
        moved |= h1_process(c);
        break;
    case WP_H2:
        return false; /* not reached: h2.c drives its connections */
    case WP_RAW:
        if (c->up == NULL && c->dialing == NULL && c->up_eof && !c->down_shut) {
            wp__conn_close(c, true); /* the upstream could not be reached */
            return false;
        }
        break;
    }
    if (c->dead)
        return false;
    w = write_from(c, c->up, &c->uout);
    if (w == 0 && c->mode == WP_RAW && wp__buf_len(&c->uout) == 0)
        w = write_from(c, c->up, &c->din);
    if (w < 0)
        return false;
    moved |= w > 0;
    moved |= read_into(c, c->up, &c->uin, &c->up_eof);
    if (c->mode == WP_H1 && c->req != NULL) {
        moved |= wp__resp_process(c, c->req);
        if (c->dead)
            return false;
    } else if (c->mode == WP_H1 && c->up != NULL && c->up_eof) {
        wp__up_close(c, false); /* an idle upstream went away */
    }
    w = write_from(c, c->down, &c->dout);
    if (w == 0 && c->mode == WP_RAW && wp__buf_len(&c->dout) == 0)
        w = write_from(c, c->down, &c->uin);
    if (w < 0)
        return false;
    moved |= w > 0;
    if (c->mode == WP_RAW)
        moved |= raw_eofs(c);
    return moved;
}

void wp__conn_run(struct wp_conn *c)
{
    if (c->dead || c->in_run)
        return;
    c->in_run = 1;
    for (int round = 0; round < 64 && !c->dead; round++)
        if (!step(c))
            break;
    c->in_run = 0;
    if (c->dead)
        return;
    if (c->closing && c->req == NULL && wp__buf_len(&c->dout) == 0) {
        wp__conn_close(c, false);
        return;
    }
    set_interest(c);
}

/* ---- life ---- */

struct wp_conn *wp__conn_new(struct veil_wp *wp)
{
    struct wp_conn *c = veil_calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->wp = wp;
    c->id = ++wp->next_id;
    return c;
}

void wp__conn_start(struct wp_conn *c, struct veil_l4_end *down)
{
    c->down = down;
    veil_l4_end_bind(down, end_notify, c);
    veil_timer_start(c->wp->env.loop, &c->detect_timer, WP_DETECT_MS, 0, detect_timeout);
    wp__conn_run(c);
}

void wp__end_bind(struct wp_conn *c, struct veil_l4_end *e)
{
    veil_l4_end_bind(e, end_notify, c);
}

static void conn_free_d(struct veil_defer *d)
{
    struct wp_conn *c = VEIL_CONTAINER_OF(d, struct wp_conn, free_d);
    veil_free(c);
}

void wp__conn_close(struct wp_conn *c, bool abort)
{
    if (c->dead)
        return;
    c->dead = true;
    wp__h2_free(c); /* no-op unless h2.c has the connection */
    if (c->req != NULL) {
        if (c->req->status == 0) {
            c->req->status = 0;
            c->req->flags = abort ? "DC" : "-";
        }
        wp__request_done(c, c->req);
        wp__req_free(c->req);
        c->req = NULL;
    }
    if (c->mode == WP_RAW)
        wp__tcp_done(c);
    veil_timer_stop(&c->detect_timer);
    veil_timer_stop(&c->req_timer);
    veil_timer_stop(&c->try_timer);
    wp__up_close(c, abort);
    if (c->down != NULL)
        c->down->ops->close(c->down, abort);
    c->down = NULL;
    wp__buf_free(&c->din);
    wp__buf_free(&c->dout);
    wp__buf_free(&c->uin);
    wp__buf_free(&c->uout);
    wp__conn_unlink(c);
    veil_loop_defer(c->wp->env.loop, &c->free_d, conn_free_d);
}
