/*
 * HTTP/2 through the waypoint, the upstream side (h2-int.h): per client
 * connection, one HBONE tunnel per endpoint with a client-side nghttp2
 * session on it, carrying that connection's requests to the endpoint.
 */
#include "waypoint/h2-int.h"

#include "core/alloc.h"
#include "core/container.h"
#include "core/log.h"
#include "core/loop.h"
#include "hbone/hbone.h"
#include "l4/pump.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static struct wp_h2s *of_link(struct wp_link *l)
{
    return VEIL_CONTAINER_OF(l, struct wp_h2s, up_link);
}

/* ---- streams on the upstream ---- */

/* Takes s off its upstream (no reset): its stream id is forgotten. */
static void unhook(struct wp_h2s *s)
{
    struct wp_h2up *up = s->up;
    if (s->up_id > 0 && up->ng != NULL)
        nghttp2_session_set_stream_user_data(up->ng, s->up_id, NULL);
    wp__link_del(&s->up_link);
    up->nstreams--;
    s->up = NULL;
    s->up_id = 0;
}

void wp__h2up_detach(struct wp_h2s *s, uint32_t code)
{
    struct wp_h2up *up = s->up;
    if (up == NULL)
        return;
    int32_t id = s->up_id;
    unhook(s);
    if (id > 0 && up->ng != NULL) {
        nghttp2_submit_rst_stream(up->ng, NGHTTP2_FLAG_NONE, id, code);
        wp__h2_kick(up->h);
    }
}

static ssize_t up_read_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len,
                            uint32_t *flags, nghttp2_data_source *src, void *user)
{
    (void)src, (void)user;
    struct wp_h2s *s = nghttp2_session_get_stream_user_data(ng, id);
    if (s == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    size_t n;
    ssize_t rv = wp__h2_body_read(ng, id, buf, len, flags, &s->qbody, s->q_eof,
                                  s->q_trailers ? &s->qt : NULL, &n);
    s->q_sent += n;
    if (s->q_sent > s->q_credited) { /* a retry sends again what was given back */
        size_t d = s->q_sent - s->q_credited;
        s->q_credited = s->q_sent;
        s->q_bytes += d;
        nghttp2_session_consume_stream(s->h->ng, s->ds_id, d);
        wp__h2_kick(s->h);
    }
    return rv;
}

static void submit(struct wp_h2up *up, struct wp_h2s *s)
{
    const nghttp2_data_provider dp = {.read_callback = up_read_body};
    bool body = !s->q_eof || s->q_trailers || wp__buf_len(&s->qbody) > 0;
    /* s->qnv stays (nghttp2 copied it): a mirror copies it at the request's end */
    int32_t id = nghttp2_submit_request(up->ng, NULL, s->qnv, s->nqnv, body ? &dp : NULL, s);
    if (id < 0) {
        unhook(s);
        wp__h2s_up_closed(s, NGHTTP2_INTERNAL_ERROR, true, nghttp2_strerror(id));
        return;
    }
    s->up_id = id;
    wp__h2_kick(up->h);
}

void wp__h2up_attach(struct wp_h2up *up, struct wp_h2s *s)
{
    s->up = up;
    s->up_id = 0;
    wp__link_add(&up->streams, &s->up_link);
    up->nstreams++;
    if (up->ng != NULL)
        submit(up, s);
}

void wp__h2up_resume(struct wp_h2s *s)
{
    if (s->up != NULL && s->up_id > 0 && s->up->ng != NULL) {
        nghttp2_session_resume_data(s->up->ng, s->up_id);
        wp__h2_kick(s->h);
    }
}

void wp__h2up_consumed(struct wp_h2s *s, size_t n)
{
    if (s->up != NULL && s->up_id > 0 && s->up->ng != NULL) {
        nghttp2_session_consume_stream(s->up->ng, s->up_id, n);
        wp__h2_kick(s->h);
    }
}

/* ---- the session ---- */

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nlen,
                     const uint8_t *value, size_t vlen, uint8_t flags, void *user)
{
    (void)flags, (void)user;
    struct wp_h2s *s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (s == NULL || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (wp__h2_hdrs_add(&s->ph, name, nlen, value, vlen) != 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    (void)user;
    struct wp_h2s *s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (s == NULL)
        return 0;
    bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;
    if (f->hd.type == NGHTTP2_HEADERS)
        wp__h2s_up_headers(s, end);
    else if (f->hd.type == NGHTTP2_DATA && end)
        wp__h2s_up_eof(s);
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    (void)flags, (void)user;
    nghttp2_session_consume_connection(ng, len);
    struct wp_h2s *s = nghttp2_session_get_stream_user_data(ng, id);
    if (s == NULL) {
        nghttp2_session_consume_stream(ng, id, len);
        return 0;
    }
    if (wp__h2s_up_data(s, data, len) != 0) {
        nghttp2_session_consume_stream(ng, id, len);
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *user)
{
    (void)user;
    struct wp_h2s *s = nghttp2_session_get_stream_user_data(ng, id);
    if (s == NULL)
        return 0;
    unhook(s);
    wp__h2s_up_closed(s, code, false,
                      code == NGHTTP2_NO_ERROR ? "stream closed" : nghttp2_http2_strerror(code));
    return 0;
}

static nghttp2_session *session_new(struct wp_h2up *up)
{
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_option *opt = NULL;
    nghttp2_session *ng = NULL;
    if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opt) != 0)
        goto out;
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_no_closed_streams(opt, 1);
    nghttp2_option_set_max_send_header_block_length(opt, WP_H2_HEADERS_MAX);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    if (nghttp2_session_client_new2(&ng, cbs, up, opt) != 0)
        ng = NULL;
    else if (wp__h2_settings(ng, false) != 0) {
        nghttp2_session_del(ng);
        ng = NULL;
    }
out:
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    return ng;
}

/* The tunnel failed or ended: its streams get their answer, it goes. */
static void up_fail(struct wp_h2up *up, bool connect, const char *why)
{
    VEIL_DEBUG(LOG, "conn %llu: upstream %s:%u: %s", (unsigned long long)up->h->c->id,
               inet_ntoa(up->addr), up->port, why);
    while (up->streams.next != &up->streams) {
        struct wp_h2s *s = of_link(up->streams.next);
        bool never = connect || s->up_id == 0;
        unhook(s);
        wp__h2s_up_closed(s, NGHTTP2_INTERNAL_ERROR, never, why);
    }
    wp__h2up_free(up);
}

void wp__h2up_run(struct wp_h2up *up)
{
    if (up->end == NULL || up->h->dead)
        return;
    char buf[16384];
    while (!up->eof && wp__buf_len(&up->out) < WP_H2_OUT_HIGH) {
        ssize_t n = up->end->ops->read(up->end, buf, sizeof(buf));
        if (n == -EAGAIN)
            break;
        if (n <= 0) {
            up_fail(up, false, n == 0 ? "upstream closed" : "upstream connection lost");
            return;
        }
        ssize_t rv = nghttp2_session_mem_recv(up->ng, (const uint8_t *)buf, (size_t)n);
        if (rv < 0) {
            up_fail(up, false, "bad HTTP/2 from upstream");
            return;
        }
    }
    if (wp__h2_send(up->ng, up->end, &up->out) != 0) {
        up_fail(up, false, "upstream connection lost");
        return;
    }
    if (!nghttp2_session_want_read(up->ng) && !nghttp2_session_want_write(up->ng) &&
        wp__buf_len(&up->out) == 0) {
        up_fail(up, false, "upstream went away");
        return;
    }
    uint32_t ev = 0;
    if (wp__buf_len(&up->out) < WP_H2_OUT_HIGH)
        ev |= VEIL_L4_READ;
    if (wp__buf_len(&up->out) > 0)
        ev |= VEIL_L4_WRITE;
    up->end->ops->set_interest(up->end, ev);
}

static void up_notify(struct veil_l4_end *e, uint32_t events, void *arg)
{
    (void)e, (void)events;
    struct wp_h2up *up = arg;
    struct wp_h2c *h = up->h;
    wp__h2up_run(up);
    wp__h2_kick(h); /* the client's session has frames to send */
}

static void dial_cb(struct veil_hbone_h2s *h2s, int status, const char *err, void *arg)
{
    struct wp_h2up *up = arg;
    up->dialing = NULL;
    if (status != 200) {
        VEIL_INFO(LOG, "conn %llu: upstream %s:%u: %s", (unsigned long long)up->h->c->id,
                  inet_ntoa(up->addr), up->port, err != NULL ? err : "refused");
        struct wp_h2c *h = up->h;
        up_fail(up, true, err != NULL ? err : "refused");
        wp__h2_kick(h);
        return;
    }
    up->end = veil_hbone_h2s_end(h2s);
    veil_l4_end_bind(up->end, up_notify, up);
    up->ng = session_new(up);
    if (up->ng == NULL) {
        struct wp_h2c *h = up->h;
        up_fail(up, true, "out of memory");
        wp__h2_kick(h);
        return;
    }
    for (struct wp_link *l = up->streams.next, *next; l != &up->streams; l = next) {
        next = l->next;
        submit(up, of_link(l));
    }
    wp__h2_kick(up->h);
}

static int dial(struct wp_h2up *up)
{
    struct wp_conn *c = up->h->c;
    struct wp_dial w;
    struct veil_hbone_dial *d = wp__dial_init(&w, c->wp, up->addr, up->port, up->identity);
    wp__dial_headers(c, d);
    up->dialing = veil_hbone_pool_connect(c->wp->env.pool, d, dial_cb, up);
    return up->dialing != NULL ? 0 : -errno;
}

/* Room for one more upstream: an idle one goes. false if all are busy. */
static bool make_room(struct wp_h2c *h)
{
    if (h->nups < WP_H2_UPS_MAX)
        return true;
    for (struct wp_link *l = h->ups.next; l != &h->ups; l = l->next) {
        struct wp_h2up *up = VEIL_CONTAINER_OF(l, struct wp_h2up, link);
        if (up->nstreams == 0) {
            wp__h2up_free(up);
            return true;
        }
    }
    return false;
}

struct wp_h2up *wp__h2up_get(struct wp_h2c *h, struct in_addr addr, uint16_t port,
                             const char *identity)
{
    for (struct wp_link *l = h->ups.next; l != &h->ups; l = l->next) {
        struct wp_h2up *up = VEIL_CONTAINER_OF(l, struct wp_h2up, link);
        if (up->addr.s_addr == addr.s_addr && up->port == port &&
            strcmp(up->identity, identity) == 0)
            return up;
    }
    if (!make_room(h)) {
        errno = EMFILE;
        return NULL;
    }
    struct wp_h2up *up = veil_calloc(1, sizeof(*up));
    if (up == NULL)
        return NULL;
    up->h = h;
    up->addr = addr;
    up->port = port;
    snprintf(up->identity, sizeof(up->identity), "%s", identity);
    wp__link_init(&up->streams);
    wp__link_add(&h->ups, &up->link);
    h->nups++;
    int rc = dial(up);
    if (rc != 0) {
        VEIL_WARN(LOG, "conn %llu: cannot dial %s:%u: %s", (unsigned long long)h->c->id,
                  inet_ntoa(addr), port, strerror(-rc));
        wp__h2up_free(up);
        errno = -rc;
        return NULL;
    }
    return up;
}

/* Streams still on it are detached without an answer (the caller answers
 * them or is closing the connection). */
void wp__h2up_free(struct wp_h2up *up)
{
    while (up->streams.next != &up->streams)
        unhook(of_link(up->streams.next));
    if (up->dialing != NULL)
        veil_hbone_h2s_cancel(up->dialing);
    if (up->end != NULL)
        up->end->ops->close(up->end, up->h->dead || !up->eof);
    nghttp2_session_del(up->ng);
    wp__buf_free(&up->out);
    wp__link_del(&up->link);
    up->h->nups--;
    veil_free(up);
}
