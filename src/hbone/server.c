/* The HBONE server: accepted connections, CONNECT requests; see hbone.h. */
#include "hbone/hbone-int.h"
#include "hbone/hbone.h"

#include "core/alloc.h"
#include "core/container.h"
#include "core/log.h"
#include "core/loop.h"
#include "tls/tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct veil_hbone_server {
    struct veil_loop *loop;
    struct veil_tls_ctx *tls;
    struct veil_hbone_server_cbs cbs;
    void *arg;
    struct veil_hbone_limits lim;
    char *name;
    struct hbone_h2c *conns;
    _Atomic uint64_t stats[HS_COUNT];
};

/* ---- requests ---- */

/* The request's headers are complete: a valid CONNECT goes to the
 * application, anything else is answered 400 here. */
void hbone__server_headers_done(struct veil_hbone_h2s *s)
{
    struct hbone_h2c *c = s->h2c;
    struct sockaddr_storage ss;
    socklen_t len;
    const char *why = NULL;
    if (!s->method_connect)
        why = "not a CONNECT";
    else if (s->has_scheme_or_path)
        why = "CONNECT with :scheme, :path or :protocol";
    else if (s->authority_bad || s->authority == NULL || s->authority[0] == '\0')
        why = "no or too long :authority";
    else if (veil_hbone_parse_authority(s->authority, strlen(s->authority), &ss, &len) != 0)
        why = "the :authority is not ip:port";
    if (why != NULL) {
        s->bad = true;
        hbone__stat(c->stats, HS_BAD_REQ, 1);
        VEIL_DEBUG(HBONE_MOD, "%s: stream %d: bad request: %s", c->name, (int)s->id, why);
        if (hbone__h2s_submit_response(s, 400) != 0)
            hbone__h2s_reset(s, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    s->phase = H2S_CONNECT;
    s->app = true;
    hbone__h2s_queue(s, 0);
}

/* From the stream's deferred function: hand the CONNECT to the application,
 * unless the stream died meanwhile. */
void hbone__server_dispatch(struct veil_hbone_h2s *s)
{
    struct hbone_h2c *c = s->h2c;
    if (c == NULL) {
        hbone__h2s_release(s);
        return;
    }
    struct veil_hbone_server *srv = c->srv;
    struct sockaddr_storage dst;
    socklen_t dst_len = 0;
    struct veil_hbone_header hdrs[VEIL_HBONE_HEADERS_MAX];
    size_t nhdrs = hbone__xhdr_list(s, hdrs);
    veil_hbone_parse_authority(s->authority, strlen(s->authority), &dst, &dst_len);
    const struct veil_hbone_connect_info info = {
        .authority = s->authority,
        .dst = (const struct sockaddr *)&dst,
        .dst_len = dst_len,
        .peer_id = c->peer_id,
        .peer = (const struct sockaddr *)&c->peer,
        .peer_len = c->peer_len,
        .local = (const struct sockaddr *)&c->local,
        .local_len = c->local_len,
        .headers = hdrs,
        .nheaders = nhdrs,
        .headers_dropped = s->xhdr_dropped,
    };
    s->phase = H2S_WAIT_APP;
    hbone__stat(c->stats, HS_STREAMS_TOTAL, 1);
    /* The headers are not needed after the call: free them now, the
     * stream may live long. on_connect may have released the stream
     * (respond() with an error): then it is freed from the loop, later. */
    char *xhdr = s->xhdr;
    s->xhdr = NULL;
    s->xhdr_len = 0;
    s->nxhdr = 0;
    srv->cbs.on_connect(s, &info, srv->arg);
    veil_free(xhdr);
}

int veil_hbone_h2s_respond(struct veil_hbone_h2s *s, int status)
{
    if (s->phase != H2S_WAIT_APP || !s->app)
        return -EINVAL;
    int rc = s->attached ? 0 : (s->err != 0 ? s->err : -ECONNRESET);
    if (rc == 0 && (status < 200 || status > 599))
        rc = -EINVAL;
    if (rc == 0)
        rc = hbone__h2s_submit_response(s, status);
    if (rc == 0 && status == 200) {
        hbone__stat(s->h2c->stats, HS_STREAMS_OK, 1);
        s->phase = H2S_OPEN;
        return 0;
    }
    if (rc == 0) {
        hbone__stat(s->h2c->stats, HS_REFUSED, 1);
        /* on_frame_send resets the client's side once the answer is out. */
    } else {
        hbone__h2s_reset(s, NGHTTP2_INTERNAL_ERROR);
    }
    hbone__h2s_release(s);
    return rc;
}

/* ---- connections ---- */

void hbone__server_closed(struct hbone_h2c *c)
{
    struct veil_hbone_server *srv = c->srv;
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
}

/* TLS is up: ALPN h2, a SPIFFE ID, then HTTP/2. 0 or -1. */
static int h2c_established(struct hbone_h2c *c)
{
    if (!veil_tls_alpn_is_h2(&c->tls)) {
        snprintf(c->err, sizeof(c->err), "no ALPN h2");
        return -1;
    }
    if (veil_tls_peer_id(&c->tls, c->peer_id, sizeof(c->peer_id)) != 0) {
        snprintf(c->err, sizeof(c->err), "the client certificate has no SPIFFE ID");
        return -1;
    }
    if (hbone__session_start(c) != 0)
        return -1;
    hbone__idle_check(c);
    VEIL_DEBUG(HBONE_MOD, "%s: connected as %s", c->name, c->peer_id);
    return 0;
}

static void h2c_io(struct veil_io *io, uint32_t events)
{
    (void)events;
    struct hbone_h2c *c = VEIL_CONTAINER_OF(io, struct hbone_h2c, tls.io);
    if (c->state == H2C_HANDSHAKE) {
        char err[256];
        int rc = veil_tls_handshake(&c->tls, err, sizeof(err));
        if (rc == -EAGAIN)
            return;
        if (rc != 0 || h2c_established(c) != 0) {
            if (rc != 0)
                snprintf(c->err, sizeof(c->err), "TLS handshake: %.140s", err);
            hbone__stat(c->stats, HS_HANDSHAKE_FAIL, 1);
            VEIL_DEBUG(HBONE_MOD, "%s: %s", c->name, c->err);
            hbone__close(c, c->err);
            return;
        }
    }
    if (hbone__read(c))
        hbone__after(c);
}

int veil_hbone_server_accept(struct veil_hbone_server *srv, int fd)
{
    struct hbone_h2c *c = veil_calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return -ENOMEM;
    }
    c->loop = srv->loop;
    c->is_server = true;
    c->srv = srv;
    c->lim = &srv->lim;
    c->stats = srv->stats;
    c->state = H2C_HANDSHAKE;
    c->peer_len = sizeof(c->peer);
    c->local_len = sizeof(c->local);
    if (getpeername(fd, (struct sockaddr *)&c->peer, &c->peer_len) != 0)
        c->peer_len = 0;
    if (getsockname(fd, (struct sockaddr *)&c->local, &c->local_len) != 0)
        c->local_len = 0;
    hbone__name(&c->peer, c->name, sizeof(c->name));
    int rc = veil_tls_conn_init(&c->tls, srv->tls, srv->loop, fd, h2c_io);
    if (rc != 0) {
        veil_free(c);
        return rc;
    }
    c->next = srv->conns;
    if (srv->conns != NULL)
        srv->conns->prev = c;
    srv->conns = c;
    hbone__stat(srv->stats, HS_CONN_TOTAL, 1);
    hbone__stat(srv->stats, HS_CONN, 1);
    hbone__deadline(c);
    return 0;
}

/* ---- the server ---- */

struct veil_hbone_server *veil_hbone_server_new(struct veil_loop *loop,
                                                const struct veil_hbone_server_opts *opts)
{
    if (opts == NULL || opts->tls == NULL || opts->cbs.on_connect == NULL) {
        errno = EINVAL;
        return NULL;
    }
    struct veil_hbone_server *srv = veil_calloc(1, sizeof(*srv));
    if (srv == NULL)
        return NULL;
    srv->name = veil_strdup(opts->name != NULL ? opts->name : "hbone");
    if (srv->name == NULL) {
        veil_free(srv);
        errno = ENOMEM;
        return NULL;
    }
    srv->loop = loop;
    srv->tls = opts->tls;
    srv->cbs = opts->cbs;
    srv->arg = opts->arg;
    hbone__limits(&srv->lim, &opts->limits);
    return srv;
}

void veil_hbone_server_set_tls(struct veil_hbone_server *srv, struct veil_tls_ctx *tls)
{
    srv->tls = tls;
}

void veil_hbone_server_stats(const struct veil_hbone_server *srv, struct veil_hbone_stats *out)
{
    hbone__stats_read((_Atomic uint64_t *)srv->stats, out);
}

void veil_hbone_server_free(struct veil_hbone_server *srv)
{
    if (srv == NULL)
        return;
    while (srv->conns != NULL)
        hbone__shutdown(srv->conns, "server closed");
    veil_free(srv->name);
    veil_free(srv);
}
