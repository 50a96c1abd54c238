/* The HBONE client: a pool of h2c keyed by the caller; see hbone.h. */
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
#include <sys/socket.h>
#include <unistd.h>

struct veil_hbone_pool {
    struct veil_loop *loop;
    struct veil_hbone_limits lim;
    struct hbone_h2c *conns;
    _Atomic uint64_t stats[HS_COUNT];
};

/* ---- streams ---- */

static void submit(struct hbone_h2c *c, struct veil_hbone_h2s *s)
{
    nghttp2_nv nva[2 + VEIL_HBONE_HEADERS_MAX] = {
        {(uint8_t *)":method", (uint8_t *)"CONNECT", 7, 7, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)":authority", (uint8_t *)s->authority, 10, strlen(s->authority),
         NGHTTP2_NV_FLAG_NONE},
    };
    struct veil_hbone_header h[VEIL_HBONE_HEADERS_MAX];
    size_t n = hbone__xhdr_list(s, h);
    for (size_t i = 0; i < n; i++)
        nva[2 + i] = (nghttp2_nv){(uint8_t *)h[i].name, (uint8_t *)h[i].value, strlen(h[i].name),
                                  strlen(h[i].value), NGHTTP2_NV_FLAG_NONE};
    /* HEADERS only: DATA goes out as the tunnel is written (h2c.c).
     * nghttp2 copies the header block: the stream's copy goes. */
    int32_t id = nghttp2_submit_headers(c->ng, NGHTTP2_FLAG_NONE, -1, NULL, nva, 2 + n, s);
    hbone__xhdr_free(s);
    if (id < 0) {
        hbone__h2s_fail(s, nghttp2_strerror(id), true);
        return;
    }
    hbone__h2s_attach(c, s, id);
    s->phase = H2S_SENT;
    hbone__stat(c->stats, HS_STREAMS_TOTAL, 1);
    hbone__kick(c);
}

static void unqueue(struct hbone_h2c *c, struct veil_hbone_h2s *s)
{
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        c->pending = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
    s->queued = false;
    c->npending--;
}

static void enqueue(struct hbone_h2c *c, struct veil_hbone_h2s *s)
{
    struct veil_hbone_h2s **pp = &c->pending, *prev = NULL;
    while (*pp != NULL) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    *pp = s;
    s->prev = prev;
    s->next = NULL;
    s->queued = true;
    s->h2c = c;
    c->npending++;
}

void hbone__client_headers_done(struct veil_hbone_h2s *s)
{
    if (s->phase != H2S_SENT || (s->status >= 100 && s->status < 200))
        return;
    struct hbone_h2c *c = s->h2c;
    hbone__stat(c->stats, s->status == 200 ? HS_STREAMS_OK : HS_REFUSED, 1);
    s->phase = H2S_ANSWERED;
    hbone__h2s_queue(s, 0);
}

/* From the stream's deferred function: tell the caller how its connect
 * went. */
void hbone__client_dispatch(struct veil_hbone_h2s *s)
{
    veil_hbone_connect_cb cb = s->cb;
    s->cb = NULL;
    if (s->status == 200) {
        s->phase = H2S_OPEN;
        s->pending = 0;
        cb(s, 200, NULL, s->cb_arg);
        return;
    }
    char http[16];
    const char *err = s->reason;
    if (s->status != 0) {
        snprintf(http, sizeof(http), "HTTP %d", s->status);
        err = http;
    }
    hbone__h2s_reset(s, NGHTTP2_CANCEL);
    hbone__h2s_release(s); /* freed after this function: the reason stays valid */
    cb(NULL, s->status, err, s->cb_arg);
}

void veil_hbone_h2s_cancel(struct veil_hbone_h2s *s)
{
    if (s->queued) {
        struct hbone_h2c *c = s->h2c;
        unqueue(c, s);
        s->h2c = NULL;
        hbone__idle_check(c);
    }
    s->cb = NULL;
    hbone__h2s_reset(s, NGHTTP2_CANCEL);
    hbone__h2s_release(s);
}

/* ---- connections ---- */

void hbone__client_closed(struct hbone_h2c *c)
{
    struct veil_hbone_pool *pool = c->pool;
    while (c->pending != NULL) {
        struct veil_hbone_h2s *s = c->pending;
        unqueue(c, s);
        s->h2c = NULL;
        hbone__h2s_fail(s, c->err, false);
        if (!s->app)
            hbone__h2s_release(s);
    }
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        pool->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
}

static uint32_t h2c_cap(const struct hbone_h2c *c)
{
    uint32_t cap = c->lim->max_streams;
    if (c->ng != NULL) {
        uint32_t remote =
            nghttp2_session_get_remote_settings(c->ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
        if (remote < cap)
            cap = remote;
    }
    return cap;
}

static struct hbone_h2c *find(struct veil_hbone_pool *pool, const char *key)
{
    for (struct hbone_h2c *c = pool->conns; c != NULL; c = c->next)
        if (c->state != H2C_DEAD && !c->goaway && c->nstreams + c->npending < h2c_cap(c) &&
            strcmp(c->key, key) == 0)
            return c;
    return NULL;
}

static int h2c_ready(struct hbone_h2c *c)
{
    if (!veil_tls_alpn_is_h2(&c->tls)) {
        hbone__stat(c->stats, HS_HANDSHAKE_FAIL, 1);
        snprintf(c->err, sizeof(c->err), "the server did not agree to ALPN h2");
        return -1;
    }
    if (veil_tls_peer_uri(&c->tls, c->peer_id, sizeof(c->peer_id)) != 0 ||
        strcmp(c->peer_id, c->server_id) != 0) {
        hbone__stat(c->stats, HS_IDENTITY, 1);
        snprintf(c->err, sizeof(c->err), "wrong server identity \"%.60s\" (want %.60s)", c->peer_id,
                 c->server_id);
        return -1;
    }
    if (hbone__session_start(c) != 0)
        return -1;
    while (c->pending != NULL) {
        struct veil_hbone_h2s *s = c->pending;
        unqueue(c, s);
        submit(c, s);
    }
    hbone__idle_check(c);
    VEIL_DEBUG(HBONE_MOD, "%s: connected to %s", c->name, c->peer_id);
    return 0;
}

/* Connect and handshake; 0 when ready, -EAGAIN, or -1 (closed). */
static int h2c_establish(struct hbone_h2c *c, uint32_t events)
{
    if (c->state == H2C_CONNECTING) {
        if (!(events & (VEIL_IO_WRITE | VEIL_IO_ERROR)))
            return -EAGAIN;
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        if (getsockopt(veil_io_fd(&c->tls.io), SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
            soerr = errno;
        if (soerr != 0) {
            hbone__stat(c->stats, HS_CONNECT_FAIL, 1);
            snprintf(c->err, sizeof(c->err), "connect: %s", strerror(soerr));
            hbone__close(c, c->err);
            return -1;
        }
        c->state = H2C_HANDSHAKE;
    }
    char err[256];
    int rc = veil_tls_handshake(&c->tls, err, sizeof(err));
    if (rc == -EAGAIN)
        return rc;
    if (rc != 0) {
        hbone__stat(c->stats, HS_HANDSHAKE_FAIL, 1);
        snprintf(c->err, sizeof(c->err), "TLS handshake: %.140s", err);
    }
    if (rc != 0 || h2c_ready(c) != 0) {
        VEIL_DEBUG(HBONE_MOD, "%s: %s", c->name, c->err);
        hbone__close(c, c->err);
        return -1;
    }
    return 0;
}

static void h2c_io(struct veil_io *io, uint32_t events)
{
    struct hbone_h2c *c = VEIL_CONTAINER_OF(io, struct hbone_h2c, tls.io);
    if (c->state != H2C_READY && h2c_establish(c, events) != 0)
        return;
    if (hbone__read(c))
        hbone__after(c);
}

static int open_socket(const struct veil_hbone_dial *d)
{
    int fd = d->make_socket != NULL
                 ? d->make_socket(d->dst->sa_family, d->make_socket_arg)
                 : socket(d->dst->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return d->make_socket != NULL ? fd : -errno;
    if (connect(fd, d->dst, d->dst_len) != 0 && errno != EINPROGRESS) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

static struct hbone_h2c *dial(struct veil_hbone_pool *pool, const struct veil_hbone_dial *d)
{
    struct hbone_h2c *c = veil_calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->loop = pool->loop;
    c->pool = pool;
    c->lim = &pool->lim;
    c->stats = pool->stats;
    c->state = H2C_CONNECTING;
    c->key = veil_strdup(d->key);
    c->server_id = veil_strdup(d->server_id);
    if (c->key == NULL || c->server_id == NULL) {
        veil_free(c->key);
        veil_free(c->server_id);
        veil_free(c);
        errno = ENOMEM;
        return NULL;
    }
    if (d->dst_len <= sizeof(c->peer)) {
        memcpy(&c->peer, d->dst, d->dst_len);
        c->peer_len = d->dst_len;
    }
    hbone__name(&c->peer, c->name, sizeof(c->name));
    int fd = open_socket(d);
    int rc = fd < 0 ? fd : veil_tls_conn_init(&c->tls, d->tls, pool->loop, fd, h2c_io);
    if (rc < 0) {
        veil_free(c->key);
        veil_free(c->server_id);
        veil_free(c);
        errno = -rc;
        return NULL;
    }
    c->next = pool->conns;
    if (pool->conns != NULL)
        pool->conns->prev = c;
    pool->conns = c;
    hbone__stat(pool->stats, HS_CONN_TOTAL, 1);
    hbone__stat(pool->stats, HS_CONN, 1);
    hbone__deadline(c);
    return c;
}

static bool dial_ok(const struct veil_hbone_dial *d)
{
    return d != NULL && d->key != NULL && d->tls != NULL && d->dst != NULL && d->dst_len > 0 &&
           d->authority != NULL && d->authority[0] != '\0' &&
           strlen(d->authority) < VEIL_HBONE_AUTHORITY_MAX && d->server_id != NULL &&
           veil_hbone_headers_check(d->headers, d->nheaders) == 0;
}

struct veil_hbone_h2s *veil_hbone_pool_connect(struct veil_hbone_pool *pool,
                                               const struct veil_hbone_dial *d,
                                               veil_hbone_connect_cb cb, void *arg)
{
    if (!dial_ok(d) || cb == NULL) {
        errno = EINVAL;
        return NULL;
    }
    struct veil_hbone_h2s *s = hbone__h2s_new(pool->loop, &pool->lim);
    if (s == NULL)
        return NULL;
    s->app = true;
    s->cb = cb;
    s->cb_arg = arg;
    s->authority = veil_strdup(d->authority);
    bool ok = s->authority != NULL && hbone__xhdr_set(s, d->headers, d->nheaders) == 0;
    struct hbone_h2c *c = ok ? find(pool, d->key) : NULL;
    if (c != NULL) {
        hbone__stat(pool->stats, HS_REUSE, 1);
    } else if (!ok || (c = dial(pool, d)) == NULL) {
        int e = !ok ? ENOMEM : errno;
        hbone__xhdr_free(s);
        veil_free(s->authority);
        veil_free(s); /* its buffers never held anything */
        errno = e;
        return NULL;
    }
    if (c->state == H2C_READY) {
        submit(c, s);
    } else {
        enqueue(c, s);
        hbone__idle_check(c);
    }
    return s;
}

/* ---- the pool ---- */

struct veil_hbone_pool *veil_hbone_pool_new(struct veil_loop *loop,
                                            const struct veil_hbone_pool_opts *opts)
{
    struct veil_hbone_pool *pool = veil_calloc(1, sizeof(*pool));
    if (pool == NULL)
        return NULL;
    pool->loop = loop;
    hbone__limits(&pool->lim, opts != NULL ? &opts->limits : NULL);
    return pool;
}

void veil_hbone_pool_stats(const struct veil_hbone_pool *pool, struct veil_hbone_stats *out)
{
    hbone__stats_read((_Atomic uint64_t *)pool->stats, out);
}

void veil_hbone_pool_free(struct veil_hbone_pool *pool)
{
    if (pool == NULL)
        return;
    while (pool->conns != NULL)
        hbone__shutdown(pool->conns, "pool closed");
    veil_free(pool);
}
