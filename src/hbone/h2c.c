/* What the HBONE server and pool share: the h2c's I/O with nghttp2 and the
 * h2s as an L4 end. */
#include "hbone/hbone-int.h"
#include "hbone/hbone.h"

#include "core/alloc.h"
#include "core/buf.h"
#include "core/container.h"
#include "core/log.h"
#include "core/loop.h"
#include "l4/pump.h"
#include "tls/h2.h"
#include "tls/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- counters, names, limits ---- */

void hbone__stat(_Atomic uint64_t *stats, enum hbone_stat s, int64_t n)
{
    atomic_fetch_add_explicit(&stats[s], (uint64_t)n, memory_order_relaxed);
}

void hbone__stats_read(_Atomic uint64_t *const stats, struct veil_hbone_stats *out)
{
    uint64_t v[HS_COUNT];
    for (int i = 0; i < HS_COUNT; i++)
        v[i] = atomic_load_explicit(&stats[i], memory_order_relaxed);
    *out = (struct veil_hbone_stats){
        .connections_total = v[HS_CONN_TOTAL],
        .connections = v[HS_CONN],
        .connect_failures = v[HS_CONNECT_FAIL],
        .handshake_failures = v[HS_HANDSHAKE_FAIL],
        .identity_mismatch = v[HS_IDENTITY],
        .protocol_errors = v[HS_PROTO],
        .streams_total = v[HS_STREAMS_TOTAL],
        .streams = v[HS_STREAMS],
        .streams_ok = v[HS_STREAMS_OK],
        .streams_refused = v[HS_REFUSED],
        .bad_requests = v[HS_BAD_REQ],
        .streams_reset = v[HS_RESET],
        .pool_reuses = v[HS_REUSE],
    };
}

void hbone__name(const struct sockaddr_storage *ss, char *buf, size_t n)
{
    if (veil_hbone_format_authority((const struct sockaddr *)ss, buf, n) != 0)
        snprintf(buf, n, "?");
}

void hbone__limits(struct veil_hbone_limits *l, const struct veil_hbone_limits *in)
{
    *l = in != NULL ? *in : (struct veil_hbone_limits){0};
    l->max_streams = l->max_streams ? l->max_streams : VEIL_HBONE_MAX_STREAMS;
    l->max_headers = l->max_headers ? l->max_headers : VEIL_HBONE_MAX_HEADERS;
    l->stream_window = l->stream_window ? l->stream_window : VEIL_HBONE_STREAM_WINDOW;
    l->conn_window = l->conn_window ? l->conn_window : VEIL_HBONE_CONN_WINDOW;
    l->stream_out = l->stream_out ? l->stream_out : VEIL_HBONE_STREAM_OUT;
    l->handshake_ms = l->handshake_ms ? l->handshake_ms : VEIL_HBONE_HANDSHAKE_MS;
    l->idle_ms = l->idle_ms ? l->idle_ms : VEIL_HBONE_IDLE_MS;
    if (l->conn_window < l->stream_window)
        l->conn_window = l->stream_window;
}

/* ---- connection I/O ---- */

static void h2c_free_mem(struct veil_defer *d)
{
    struct hbone_h2c *c = VEIL_CONTAINER_OF(d, struct hbone_h2c, free_d);
    veil_free(c->key);
    veil_free(c->server_id);
    veil_free(c);
}

static void h2c_trim(struct veil_timer *t);

void hbone__after(struct hbone_h2c *c)
{
    if (c->state != H2C_READY)
        return;
    if (veil_tls_h2_flush(&c->tls, c->ng) != 0) {
        hbone__close(c, "connection lost");
        return;
    }
    /* OpenSSL's record buffers are held while the connection is busy (the
     * context's hold_buffers); the next trim frees them */
    if (!veil_timer_is_active(&c->trim_t))
        (void)veil_timer_start(c->loop, &c->trim_t, HBONE_TRIM_MS, 0, h2c_trim);
    if (!nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng) &&
        veil_tls_out_len(&c->tls) == 0)
        hbone__close(c, "connection closed");
}

static void h2c_kick_fn(struct veil_defer *d)
{
    hbone__after(VEIL_CONTAINER_OF(d, struct hbone_h2c, kick_d));
}

void hbone__kick(struct hbone_h2c *c)
{
    if (c->state == H2C_READY)
        veil_loop_defer(c->loop, &c->kick_d, h2c_kick_fn);
}

bool hbone__read(struct hbone_h2c *c)
{
    uint8_t buf[HBONE_READ_CHUNK];
    for (;;) {
        ssize_t n = veil_tls_read(&c->tls, buf, sizeof(buf));
        if (n == -EAGAIN)
            return true;
        if (n <= 0) {
            hbone__close(c, n == 0 ? "the peer closed the connection" : "connection lost");
            return false;
        }
        ssize_t rv = nghttp2_session_mem_recv(c->ng, buf, (size_t)n);
        if (rv < 0) {
            hbone__stat(c->stats, HS_PROTO, 1);
            VEIL_DEBUG(HBONE_MOD, "%s: bad HTTP/2: %s", c->name, nghttp2_strerror((int)rv));
            hbone__close(c, "bad HTTP/2");
            return false;
        }
        if (c->state != H2C_READY)
            return false;
    }
}

static void h2s_detach(struct veil_hbone_h2s *s, int err, const char *reason, bool reason_static);

void hbone__close(struct hbone_h2c *c, const char *reason)
{
    if (c->state == H2C_DEAD)
        return;
    if (c->err[0] == '\0')
        snprintf(c->err, sizeof(c->err), "%s", reason);
    VEIL_DEBUG(HBONE_MOD, "%s: closing: %s", c->name, c->err);
    c->state = H2C_DEAD;
    veil_timer_stop(&c->timer);
    veil_timer_stop(&c->trim_t);
    while (c->streams != NULL)
        h2s_detach(c->streams, -ECONNRESET, c->err, false);
    if (c->is_server)
        hbone__server_closed(c);
    else
        hbone__client_closed(c);
    nghttp2_session_del(c->ng);
    c->ng = NULL;
    veil_tls_conn_close(&c->tls);
    hbone__stat(c->stats, HS_CONN, -1);
    veil_loop_defer(c->loop, &c->free_d, h2c_free_mem);
}

void hbone__shutdown(struct hbone_h2c *c, const char *reason)
{
    if (c->state == H2C_READY && nghttp2_session_terminate_session(c->ng, NGHTTP2_NO_ERROR) == 0)
        veil_tls_h2_flush(&c->tls, c->ng);
    hbone__close(c, reason);
}

static void h2c_idle(struct veil_timer *t)
{
    struct hbone_h2c *c = VEIL_CONTAINER_OF(t, struct hbone_h2c, timer);
    if (c->state != H2C_READY) {
        bool tcp = c->state == H2C_CONNECTING;
        hbone__stat(c->stats, tcp ? HS_CONNECT_FAIL : HS_HANDSHAKE_FAIL, 1);
        hbone__close(c, tcp ? "connect timed out" : "TLS handshake timed out");
        return;
    }
    if (c->nstreams > 0 || c->npending > 0)
        return;
    VEIL_DEBUG(HBONE_MOD, "%s: idle; closing", c->name);
    hbone__shutdown(c, "idle");
}

void hbone__idle_check(struct hbone_h2c *c)
{
    if (c->state != H2C_READY)
        return;
    if (c->nstreams == 0 && c->npending == 0) {
        if (!veil_timer_is_active(&c->timer))
            veil_timer_start(c->loop, &c->timer, c->lim->idle_ms, 0, h2c_idle);
    } else {
        veil_timer_stop(&c->timer);
    }
}

/* The handshake deadline (the same timer later counts idleness). */
void hbone__deadline(struct hbone_h2c *c)
{
    veil_timer_start(c->loop, &c->timer, c->lim->handshake_ms, 0, h2c_idle);
}

/* ---- streams ---- */

static void h2s_free_mem(struct veil_hbone_h2s *s)
{
    veil_buf_free(&s->in);
    veil_buf_free(&s->out);
    veil_free(s->authority);
    hbone__xhdr_free(s);
    if (s->reason_owned)
        veil_free((char *)s->reason);
    veil_free(s);
}

static void h2s_deferred(struct veil_defer *d)
{
    struct veil_hbone_h2s *s = VEIL_CONTAINER_OF(d, struct veil_hbone_h2s, defer_d);
    if (s->dead) {
        h2s_free_mem(s);
        return;
    }
    if (!s->app)
        return;
    if (s->phase == H2S_CONNECT) {
        hbone__server_dispatch(s);
    } else if (s->phase == H2S_ANSWERED) {
        hbone__client_dispatch(s);
    } else if (s->phase == H2S_OPEN && s->pending != 0) {
        uint32_t ev = s->pending;
        s->pending = 0;
        veil_l4_end_notify(&s->end, ev);
    }
}

static void h2s_maybe_free(struct veil_hbone_h2s *s)
{
    if (!s->app && !s->attached && !s->queued) {
        s->dead = true; /* if defer_d is queued already, it frees */
        veil_loop_defer(s->loop, &s->defer_d, h2s_deferred);
    }
}

void hbone__h2s_queue(struct veil_hbone_h2s *s, uint32_t ev)
{
    if (!s->app)
        return;
    s->pending |= (uint8_t)ev;
    veil_loop_defer(s->loop, &s->defer_d, h2s_deferred);
}

struct veil_hbone_h2s *hbone__h2s_new(struct veil_loop *loop, const struct veil_hbone_limits *lim)
{
    struct veil_hbone_h2s *s = veil_calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->end.ops = &hbone__end_ops;
    s->loop = loop;
    veil_buf_init(&s->in, lim->stream_window);
    veil_buf_init(&s->out, lim->stream_out);
    return s;
}

void hbone__h2s_attach(struct hbone_h2c *c, struct veil_hbone_h2s *s, int32_t id)
{
    s->h2c = c;
    s->id = id;
    s->attached = true;
    s->prev = NULL;
    s->next = c->streams;
    if (c->streams != NULL)
        c->streams->prev = s;
    c->streams = s;
    c->nstreams++;
    hbone__stat(c->stats, HS_STREAMS, 1);
    hbone__idle_check(c);
}

static void h2c_trim(struct veil_timer *t)
{
    struct hbone_h2c *c = VEIL_CONTAINER_OF(t, struct hbone_h2c, trim_t);
    if (c->state == H2C_READY)
        veil_tls_release(&c->tls);
    for (struct veil_hbone_h2s *s = c->streams; s != NULL; s = s->next) {
        if (veil_buf_is_empty(&s->in))
            veil_buf_free(&s->in);
        if (veil_buf_is_empty(&s->out))
            veil_buf_free(&s->out);
    }
}

/* b, one of s's buffers, drained: its memory goes at the next trim of the
 * h2c (now, if s has no h2c any more or no timer could be had). */
static void h2s_drained(struct veil_hbone_h2s *s, struct veil_buf *b)
{
    struct hbone_h2c *c = s->attached ? s->h2c : NULL;
    if (c == NULL || (!veil_timer_is_active(&c->trim_t) &&
                      veil_timer_start(c->loop, &c->trim_t, HBONE_TRIM_MS, 0, h2c_trim) != 0))
        veil_buf_free(b);
}

void hbone__h2s_fail(struct veil_hbone_h2s *s, const char *why, bool is_static)
{
    if (s->reason_owned)
        veil_free((char *)s->reason);
    s->reason = is_static ? why : veil_strdup(why);
    s->reason_owned = s->reason != NULL && !is_static;
    if (s->reason == NULL)
        s->reason = "connection failed";
    s->status = 0;
    s->phase = H2S_ANSWERED;
    hbone__h2s_queue(s, 0);
}

/* The HTTP/2 stream is gone (closed, reset, or its h2c died with reason
 * c->err: then reason_static is false). */
static void h2s_detach(struct veil_hbone_h2s *s, int err, const char *reason, bool reason_static)
{
    struct hbone_h2c *c = s->h2c;
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        c->streams = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    c->nstreams--;
    hbone__stat(c->stats, HS_STREAMS, -1);
    s->attached = false;
    s->data_item = false;
    s->h2c = NULL;
    if (err != 0 && s->err == 0)
        s->err = (int16_t)err;
    if (!c->is_server && (s->phase == H2S_NEW || s->phase == H2S_SENT))
        hbone__h2s_fail(s, reason, reason_static);
    else if (s->phase == H2S_OPEN || (s->phase == H2S_ANSWERED && s->status == 200))
        hbone__h2s_queue(s, VEIL_L4_READ | VEIL_L4_WRITE);
    hbone__idle_check(c);
    h2s_maybe_free(s);
}

void hbone__h2s_release(struct veil_hbone_h2s *s)
{
    s->app = false;
    s->phase = H2S_DONE;
    s->end._notify = NULL;
    h2s_maybe_free(s);
}

void hbone__h2s_reset(struct veil_hbone_h2s *s, uint32_t code)
{
    if (!s->attached || s->rst_sent)
        return;
    s->rst_sent = true;
    nghttp2_submit_rst_stream(s->h2c->ng, NGHTTP2_FLAG_NONE, s->id, code);
    hbone__kick(s->h2c);
}

/* nghttp2 takes the bytes of `out` for DATA frames. When they run out the
 * DATA item ends (without END_STREAM unless our side is done), so that an
 * idle stream holds none: the next write submits a new one. */
static ssize_t provider_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                             uint32_t *flags, nghttp2_data_source *source, void *user)
{
    (void)ng;
    (void)id;
    (void)user;
    struct veil_hbone_h2s *s = source->ptr;
    size_t n = veil_buf_len(&s->out);
    if (n > length)
        n = length;
    if (n > 0) {
        memcpy(buf, veil_buf_data(&s->out), n);
        veil_buf_consume(&s->out, n);
        if (s->write_blocked) {
            s->write_blocked = false;
            hbone__h2s_queue(s, VEIL_L4_WRITE);
        }
    }
    if (veil_buf_is_empty(&s->out)) {
        h2s_drained(s, &s->out);
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (!s->out_eof)
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        s->data_item = false;
    }
    return (ssize_t)n;
}

/* Has nghttp2 pull from `out` (and END_STREAM after it once out_eof), unless
 * a DATA item already does. 0 or -errno. */
static int h2s_send(struct veil_hbone_h2s *s)
{
    if (s->data_item)
        return 0;
    const nghttp2_data_provider dp = {.source.ptr = s, .read_callback = provider_read};
    int rv = nghttp2_submit_data(s->h2c->ng, NGHTTP2_FLAG_END_STREAM, s->id, &dp);
    if (rv != 0)
        return rv == NGHTTP2_ERR_NOMEM ? -ENOMEM : -EPIPE;
    s->data_item = true;
    return 0;
}

int hbone__h2s_submit_response(struct veil_hbone_h2s *s, int status)
{
    char code[4];
    snprintf(code, sizeof(code), "%d", status);
    const nghttp2_nv nv = {(uint8_t *)":status", (uint8_t *)code, 7, strlen(code),
                           NGHTTP2_NV_FLAG_NONE};
    nghttp2_session *ng = s->h2c->ng;
    int rc;
    if (status == 200) /* HEADERS only: DATA goes out as the tunnel is written */
        rc = nghttp2_submit_headers(ng, NGHTTP2_FLAG_NONE, s->id, NULL, &nv, 1, NULL);
    else
        rc = nghttp2_submit_response(ng, s->id, &nv, 1, NULL);
    hbone__kick(s->h2c);
    return rc == 0 ? 0 : (rc == NGHTTP2_ERR_NOMEM ? -ENOMEM : -ECONNRESET);
}

/* ---- the h2s as an L4 end ---- */

static struct veil_hbone_h2s *of_end(struct veil_l4_end *e)
{
    return VEIL_CONTAINER_OF(e, struct veil_hbone_h2s, end);
}

static ssize_t end_read(struct veil_l4_end *e, void *buf, size_t n)
{
    struct veil_hbone_h2s *s = of_end(e);
    size_t len = veil_buf_len(&s->in);
    if (len > 0) {
        size_t m = len < n ? len : n;
        memcpy(buf, veil_buf_data(&s->in), m);
        veil_buf_consume(&s->in, m);
        if (veil_buf_is_empty(&s->in))
            h2s_drained(s, &s->in);
        if (s->attached) {
            nghttp2_session_consume_stream(s->h2c->ng, s->id, m);
            hbone__kick(s->h2c);
        }
        return (ssize_t)m;
    }
    if (s->in_eof)
        return 0;
    if (!s->attached)
        return s->err != 0 ? s->err : -ECONNRESET;
    return -EAGAIN;
}

static ssize_t end_write(struct veil_l4_end *e, const void *buf, size_t n)
{
    struct veil_hbone_h2s *s = of_end(e);
    if (!s->attached || s->out_eof)
        return s->err != 0 ? s->err : -EPIPE;
    size_t space = veil_buf_space(&s->out);
    if (space == 0) {
        s->write_blocked = true;
        return -EAGAIN;
    }
    size_t m = space < n ? space : n;
    if (veil_buf_append(&s->out, buf, m) != 0)
        return -ENOMEM;
    int rc = h2s_send(s);
    hbone__kick(s->h2c);
    return rc != 0 ? rc : (ssize_t)m;
}

static int end_shutdown_write(struct veil_l4_end *e)
{
    struct veil_hbone_h2s *s = of_end(e);
    if (s->out_eof)
        return 0;
    if (!s->attached)
        return s->err != 0 ? s->err : -EPIPE;
    s->out_eof = true;
    int rc = h2s_send(s);
    hbone__kick(s->h2c);
    return rc;
}

/* Notifications come whenever reading or writing may have changed: the
 * user's interest does not matter (spurious ones are allowed). */
static void end_set_interest(struct veil_l4_end *e, uint32_t events)
{
    (void)e;
    (void)events;
}

static void end_close(struct veil_l4_end *e, bool abort)
{
    struct veil_hbone_h2s *s = of_end(e);
    if (s->attached) {
        if (abort || s->err != 0) {
            hbone__h2s_reset(s, NGHTTP2_CANCEL);
        } else {
            /* Let what was accepted go out, then END_STREAM; what the peer
             * still sends is dropped (and its window given back), and
             * on_frame_send resets the stream once our side has ended. */
            size_t unread = veil_buf_len(&s->in);
            if (unread > 0)
                nghttp2_session_consume_stream(s->h2c->ng, s->id, unread);
            if (!s->out_eof && end_shutdown_write(e) != 0)
                hbone__h2s_reset(s, NGHTTP2_INTERNAL_ERROR);
            hbone__kick(s->h2c);
        }
    }
    veil_buf_free(&s->in);
    hbone__h2s_release(s);
}

const struct veil_l4_end_ops hbone__end_ops = {
    .name = "hbone",
    .read = end_read,
    .write = end_write,
    .shutdown_write = end_shutdown_write,
    .set_interest = end_set_interest,
    .close = end_close,
};

struct veil_l4_end *veil_hbone_h2s_end(struct veil_hbone_h2s *h2s)
{
    return &h2s->end;
}

const char *veil_hbone_h2s_authority(const struct veil_hbone_h2s *h2s)
{
    return h2s->authority != NULL ? h2s->authority : "";
}

/* ---- nghttp2 callbacks both sides share ---- */

static bool is(const uint8_t *p, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(p, lit, n) == 0;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    struct hbone_h2c *c = user;
    if (!c->is_server || f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct veil_hbone_h2s *s = hbone__h2s_new(c->loop, c->lim);
    if (s == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    if (nghttp2_session_set_stream_user_data(ng, f->hd.stream_id, s) != 0) {
        veil_free(s);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    hbone__h2s_attach(c, s, f->hd.stream_id);
    return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    (void)flags;
    struct hbone_h2c *c = user;
    struct veil_hbone_h2s *s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (s == NULL || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    /* SETTINGS_MAX_HEADER_LIST_SIZE counts 32 bytes more per field. */
    s->hdr_bytes += (uint32_t)(namelen + valuelen + 32);
    if (s->hdr_bytes > c->lim->max_headers) {
        if (c->is_server)
            hbone__stat(c->stats, HS_BAD_REQ, 1);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
    }
    if (!c->is_server) {
        if (f->headers.cat == NGHTTP2_HCAT_RESPONSE && is(name, namelen, ":status")) {
            unsigned st = 0;
            for (size_t i = 0; i < valuelen && i < 3 && value[i] >= '0' && value[i] <= '9'; i++)
                st = st * 10 + (unsigned)(value[i] - '0');
            s->status = (uint16_t)(valuelen == 3 && st >= 100 ? st : 0);
        }
        return 0;
    }
    if (is(name, namelen, ":method")) {
        s->method_seen = true;
        s->method_connect = is(value, valuelen, "CONNECT");
    } else if (is(name, namelen, ":authority") && s->authority == NULL) {
        if (valuelen >= VEIL_HBONE_AUTHORITY_MAX)
            s->authority_bad = true;
        else if ((s->authority = veil_strndup((const char *)value, valuelen)) == NULL)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
    } else if (is(name, namelen, ":scheme") || is(name, namelen, ":path") ||
               is(name, namelen, ":protocol")) {
        s->has_scheme_or_path = true;
    } else if (namelen > 0 && name[0] != ':' &&
               hbone__xhdr_add(s, name, namelen, value, valuelen) != 0) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* resets the stream */
    }
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    struct hbone_h2c *c = user;
    if (f->hd.type == NGHTTP2_GOAWAY) {
        c->goaway = true;
        return 0;
    }
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
        return 0;
    struct veil_hbone_h2s *s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (s == NULL)
        return 0;
    if (f->hd.type == NGHTTP2_HEADERS) {
        if (c->is_server && f->headers.cat == NGHTTP2_HCAT_REQUEST)
            hbone__server_headers_done(s);
        else if (!c->is_server && f->headers.cat == NGHTTP2_HCAT_RESPONSE)
            hbone__client_headers_done(s);
    }
    if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        s->in_eof = true;
        hbone__h2s_queue(s, VEIL_L4_READ);
    }
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    (void)flags;
    struct hbone_h2c *c = user;
    struct veil_hbone_h2s *s = nghttp2_session_get_stream_user_data(ng, id);
    bool keep = s != NULL && s->app && !s->bad && (c->is_server || s->status == 200);
    if (!keep) {
        nghttp2_session_consume(ng, id, len);
        return 0;
    }
    /* The connection's window is given back at once: the stream's buffer
     * (bounded by its own window) holds the bytes, and a stream whose
     * reader is slow must not hold up the others. */
    nghttp2_session_consume_connection(ng, len);
    if (veil_buf_append(&s->in, data, len) != 0) {
        nghttp2_session_consume_stream(ng, id, len);
        hbone__h2s_reset(s, NGHTTP2_FLOW_CONTROL_ERROR);
        return 0;
    }
    hbone__h2s_queue(s, VEIL_L4_READ);
    return 0;
}

/* Once our side of a stream nobody reads any more has ended, stop the
 * peer's side too (RFC 9113, 8.1). */
static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    (void)user;
    if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
        !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct veil_hbone_h2s *s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (s != NULL && !s->app && !s->in_eof && !s->rst_sent) {
        s->rst_sent = true;
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *user)
{
    struct hbone_h2c *c = user;
    struct veil_hbone_h2s *s = nghttp2_session_get_stream_user_data(ng, id);
    if (s == NULL)
        return 0;
    nghttp2_session_set_stream_user_data(ng, id, NULL);
    if (code != NGHTTP2_NO_ERROR && !s->rst_sent)
        hbone__stat(c->stats, HS_RESET, 1);
    const char *why = code == NGHTTP2_REFUSED_STREAM ? "stream refused by the server"
                      : code == NGHTTP2_NO_ERROR     ? "stream closed"
                                                     : "stream reset";
    h2s_detach(s, code == NGHTTP2_NO_ERROR ? 0 : -ECONNRESET, why, true);
    return 0;
}

static int on_invalid_frame(nghttp2_session *ng, const nghttp2_frame *f, int code, void *user)
{
    (void)ng;
    struct hbone_h2c *c = user;
    if (c->is_server && f->hd.type == NGHTTP2_HEADERS) {
        hbone__stat(c->stats, HS_BAD_REQ, 1);
        VEIL_DEBUG(HBONE_MOD, "%s: stream %d: invalid request: %s", c->name, (int)f->hd.stream_id,
                   nghttp2_strerror(code));
    }
    return 0;
}

static nghttp2_session_callbacks *session_callbacks(void)
{
    nghttp2_session_callbacks *cbs;
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        return NULL;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, on_invalid_frame);
    return cbs;
}

static nghttp2_option *session_options(const struct veil_hbone_limits *lim)
{
    nghttp2_option *opt = NULL;
    if (nghttp2_option_new(&opt) != 0)
        return NULL;
    nghttp2_option_set_no_auto_window_update(opt, 1);
    /* No priorities in HBONE: closed streams need not be kept for the
     * priority tree (by default a server keeps up to max_streams of them). */
    nghttp2_option_set_no_closed_streams(opt, 1);
    nghttp2_option_set_max_send_header_block_length(opt, lim->max_headers);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    nghttp2_option_set_peer_max_concurrent_streams(opt, lim->max_streams);
    return opt;
}

static int session_settings(struct hbone_h2c *c)
{
    const nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, c->lim->max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, c->lim->stream_window},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, c->lim->max_headers},
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
    };
    /* ENABLE_PUSH is a client's setting only. */
    if (nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, c->is_server ? 3 : 4) != 0)
        return -ENOMEM;
    if (nghttp2_session_set_local_window_size(c->ng, NGHTTP2_FLAG_NONE, 0,
                                              (int32_t)c->lim->conn_window) != 0)
        return -ENOMEM;
    return 0;
}

int hbone__session_start(struct hbone_h2c *c)
{
    nghttp2_session_callbacks *cbs = session_callbacks();
    nghttp2_option *opt = session_options(c->lim);
    int rv = -1;
    if (cbs != NULL && opt != NULL)
        rv = c->is_server ? nghttp2_session_server_new2(&c->ng, cbs, c, opt)
                          : nghttp2_session_client_new2(&c->ng, cbs, c, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0) {
        c->ng = NULL;
        snprintf(c->err, sizeof(c->err), "out of memory");
        return -1;
    }
    c->state = H2C_READY;
    veil_timer_stop(&c->timer);
    if (session_settings(c) != 0) {
        snprintf(c->err, sizeof(c->err), "out of memory");
        return -1;
    }
    return 0;
}
