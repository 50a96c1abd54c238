/* The push server; see push.h and docs/protocol.md. */
#include "control/push.h"
#include "control/reqsrv.h"

#include "core/alloc.h"
#include "core/buf.h"
#include "core/container.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/metrics.h"
#include "tls/ca.h"
#include "tls/spiffe.h"
#include "tls/h2.h"
#include "tls/tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <nghttp2/nghttp2.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define MOD          "push"
#define READ_CHUNK   16384
#define ACCEPT_BATCH 64

enum stat {
    ST_CONN_TOTAL,
    ST_CONN,
    ST_HANDSHAKE_FAIL,
    ST_SUBSCRIBERS,
    ST_UPDATES,
    ST_JOIN_OK,
    ST_JOIN_REFUSED,
    ST_CERT_OK,
    ST_CERT_REFUSED,
    ST_UNAUTHORIZED,
    ST_BAD_INPUT,
    ST_SLOW,
    ST_COUNT
};

static const struct {
    const char *name;
    const char *help;
    bool gauge;
} STAT_METRICS[ST_COUNT] = {
    {"veil_push_connections_total", "Connections accepted on the push port.", false},
    {"veil_push_connections", "Connections open on the push port.", true},
    {"veil_push_handshake_failures_total", "TLS handshakes refused on the push port.", false},
    {"veil_push_subscribers", "Watch streams subscribed.", true},
    {"veil_push_updates_total", "Updates queued to subscribers.", false},
    {"veil_push_joins_total", "Node certificates issued by /v1/join.", false},
    {"veil_push_joins_refused_total", "Joins refused.", false},
    {"veil_push_certificates_total", "Workload certificates issued.", false},
    {"veil_push_certificates_refused_total", "Workload certificate requests refused.", false},
    {"veil_push_unauthorized_total", "Requests refused for want of a node certificate.", false},
    {"veil_push_bad_input_total", "Bad HTTP/2, oversized bodies and malformed JSON refused.",
     false},
    {"veil_push_slow_disconnects_total", "Subscribers dropped for not keeping up.", false},
};

enum route { ROUTE_NONE, ROUTE_JOIN, ROUTE_CERTS, ROUTE_WATCH };

struct push_h2c;

/* One HTTP/2 stream (a request). */
struct push_h2s {
    struct push_h2c *h2c;
    struct push_h2s *prev, *next;
    int32_t id;
    enum route route;
    bool post;
    bool responded;       /* a response was submitted */
    bool eof;             /* resp holds the end of the response body */
    bool deferred;        /* the data provider is waiting (NGHTTP2_ERR_DEFERRED) */
    bool dead;            /* answered or reset: ignore what else arrives */
    bool req_done;        /* the client ended its side (END_STREAM) */
    struct veil_buf req;  /* request body, or the partial watch line */
    struct veil_buf resp; /* response body not yet taken by nghttp2 */
    /* An update line sent straight from the provider's text (a snapshot is
     * megabytes: not copied), before anything in resp: head[head_off ..
     * head_len), then the newline unless head_nl is false. */
    char *head;
    size_t head_off, head_len;
    bool head_nl;
    void *sub; /* the provider's subscriber, on a subscribed watch */
};

/* One client connection. */
struct push_h2c {
    struct veil_tls_conn tls;
    struct veil_push_server *srv;
    struct push_h2c *prev, *next;
    nghttp2_session *ng;
    struct push_h2s *streams;
    struct veil_timer timer; /* handshake deadline, then PING */
    struct veil_defer free_d;
    bool established;
    bool closed;
    bool ping_out; /* a PING is waiting for its ACK */
    bool is_node;
    char node[VEIL_SPIFFE_SUBDOMAIN_MAX + 1];
    char peer[VEIL_SPIFFE_ID_MAX + 1]; /* "" without a certificate */
    char remote[INET6_ADDRSTRLEN + 8];
};

struct veil_push_server {
    struct veil_loop *loop;
    struct veil_ca *ca;
    struct veil_push_provider prov;
    struct veil_push_limits lim;
    struct veil_tls_ctx *tls;
    struct veil_io lio;
    int lfd;
    uint16_t port;
    long lifetime_s;
    bool own_cert; /* issued by us: renewed by renew_timer */
    struct veil_timer renew_timer;
    uint64_t renew_ms; /* half the life left of our own certificate */
    char *secret;
    char *token; /* secret.pin */
    char identity[VEIL_SPIFFE_ID_MAX + 1];
    struct push_h2c *conns;
    _Atomic uint64_t stats[ST_COUNT];
    struct veil_metrics_series *series[ST_COUNT];
};

static void stat_add(struct veil_push_server *srv, enum stat s, int64_t n)
{
    atomic_fetch_add_explicit(&srv->stats[s], (uint64_t)n, memory_order_relaxed);
    if (srv->series[s] == NULL)
        return;
    if (STAT_METRICS[s].gauge)
        veil_metrics_gauge_add(srv->series[s], (double)n);
    else
        veil_metrics_counter_add(srv->series[s], (uint64_t)n);
}

/* ---- connection teardown ---- */

static void h2s_free(struct push_h2s *s)
{
    struct push_h2c *c = s->h2c;
    if (s->sub != NULL) {
        c->srv->prov.unsubscribe(s->sub);
        s->sub = NULL;
        stat_add(c->srv, ST_SUBSCRIBERS, -1);
    }
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        c->streams = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    veil_buf_free(&s->req);
    veil_buf_free(&s->resp);
    veil_free(s->head);
    veil_free(s);
}

static void h2c_free_mem(struct veil_defer *d)
{
    veil_free(VEIL_CONTAINER_OF(d, struct push_h2c, free_d));
}

/* Tears the connection down now (never from inside an nghttp2 callback); the
 * memory goes at the end of the iteration. */
static void h2c_close(struct push_h2c *c)
{
    if (c->closed)
        return;
    struct veil_push_server *srv = c->srv;
    c->closed = true;
    veil_timer_stop(&c->timer);
    while (c->streams != NULL)
        h2s_free(c->streams);
    nghttp2_session_del(c->ng);
    c->ng = NULL;
    veil_tls_conn_close(&c->tls);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    stat_add(srv, ST_CONN, -1);
    veil_loop_defer(srv->loop, &c->free_d, h2c_free_mem);
}

/* Flushes and closes the connection if it failed or is finished. */
static void h2c_after(struct push_h2c *c)
{
    if (c->closed || !c->established)
        return;
    if (veil_tls_h2_flush(&c->tls, c->ng) != 0 ||
        (!nghttp2_session_want_read(c->ng) && !nghttp2_session_want_write(c->ng) &&
         veil_tls_out_len(&c->tls) == 0))
        h2c_close(c);
}

/* ---- responses ---- */

/* Bytes of the head line not yet taken by nghttp2. */
static size_t head_left(const struct push_h2s *s)
{
    return s->head != NULL ? s->head_len - s->head_off + s->head_nl : 0;
}

/* Copies up to `length` bytes of the head line; frees it once taken. */
static size_t head_read(struct push_h2s *s, uint8_t *buf, size_t length)
{
    size_t n = s->head_len - s->head_off;
    if (n > length)
        n = length;
    memcpy(buf, s->head + s->head_off, n);
    s->head_off += n;
    if (n < length && s->head_off == s->head_len && s->head_nl) {
        buf[n++] = '\n';
        s->head_nl = false;
    }
    if (s->head_off == s->head_len && !s->head_nl) {
        veil_free(s->head);
        s->head = NULL;
    }
    return n;
}

static ssize_t body_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t length,
                         uint32_t *flags, nghttp2_data_source *source, void *user)
{
    (void)ng;
    (void)id;
    (void)user;
    struct push_h2s *s = source->ptr;
    if (s->head != NULL)
        return (ssize_t)head_read(s, buf, length);
    size_t n = veil_buf_len(&s->resp);
    if (n > length)
        n = length;
    if (n > 0) {
        memcpy(buf, veil_buf_data(&s->resp), n);
        veil_buf_consume(&s->resp, n);
    }
    if (veil_buf_is_empty(&s->resp)) {
        if (s->eof) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
        } else if (n == 0) {
            s->deferred = true;
            return NGHTTP2_ERR_DEFERRED;
        }
    }
    return (ssize_t)n;
}

static int submit(struct push_h2s *s, int status)
{
    char code[4];
    snprintf(code, sizeof(code), "%d", status);
    const nghttp2_nv nva[] = {
        {(uint8_t *)":status", (uint8_t *)code, 7, strlen(code), NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-type",
         (uint8_t *)(s->route == ROUTE_WATCH && status == 200 ? "application/x-ndjson"
                                                              : "application/json"),
         12, s->route == ROUTE_WATCH && status == 200 ? 20 : 16, NGHTTP2_NV_FLAG_NONE},
    };
    nghttp2_data_provider dp = {.source.ptr = s, .read_callback = body_read};
    s->responded = true;
    return nghttp2_submit_response(s->h2c->ng, s->id, nva, 2, &dp) == 0 ? 0 : -EPROTO;
}

/* Responds with a JSON object (taken) as the whole body. */
static void respond_json(struct push_h2s *s, int status, json_t *obj)
{
    char *text = obj != NULL ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    veil_buf_free(&s->resp);
    veil_buf_init(&s->resp, VEIL_PUSH_BODY_MAX * 2);
    if (text == NULL || veil_buf_append(&s->resp, text, strlen(text)) != 0 ||
        veil_buf_append(&s->resp, "\n", 1) != 0) {
        veil_buf_reset(&s->resp);
        status = 500;
    }
    free(text);
    s->eof = true;
    if (submit(s, status) != 0)
        nghttp2_submit_rst_stream(s->h2c->ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_INTERNAL_ERROR);
}

static void respond_error(struct push_h2s *s, int status, const char *msg)
{
    respond_json(s, status, json_pack("{s:s}", "error", msg));
}

static void reset(struct push_h2s *s, uint32_t code)
{
    s->dead = true;
    nghttp2_submit_rst_stream(s->h2c->ng, NGHTTP2_FLAG_NONE, s->id, code);
}

/* ---- /v1/join ---- */

static bool token_ok(const struct veil_push_server *srv, const char *given)
{
    const char *dot = strchr(given, '.');
    size_t n = dot != NULL ? (size_t)(dot - given) : strlen(given);
    unsigned char a[32], b[32];
    if (EVP_Digest(given, n, a, NULL, EVP_sha256(), NULL) != 1 ||
        EVP_Digest(srv->secret, strlen(srv->secret), b, NULL, EVP_sha256(), NULL) != 1)
        return false;
    return CRYPTO_memcmp(a, b, sizeof(a)) == 0;
}

static json_t *parse_body(struct push_h2s *s)
{
    json_error_t jerr;
    json_t *root =
        json_loadb(veil_buf_data(&s->req), veil_buf_len(&s->req), JSON_REJECT_DUPLICATES, &jerr);
    if (root != NULL && !json_is_object(root)) {
        json_decref(root);
        root = NULL;
    }
    return root;
}

static void bad_request(struct push_h2s *s, const char *msg)
{
    stat_add(s->h2c->srv, ST_BAD_INPUT, 1);
    VEIL_DEBUG(MOD, "%s: bad request: %s", s->h2c->remote, msg);
    respond_error(s, 400, msg);
}

static void handle_join(struct push_h2s *s)
{
    struct veil_push_server *srv = s->h2c->srv;
    json_t *req = parse_body(s);
    const char *token, *node, *csr;
    if (req == NULL ||
        json_unpack(req, "{s:s, s:s, s:s}", "token", &token, "node", &node, "csr", &csr) != 0) {
        json_decref(req);
        bad_request(s, "expected {\"token\": string, \"node\": string, \"csr\": string}");
        return;
    }
    char id[VEIL_SPIFFE_ID_MAX + 1], err[512];
    char *cert = NULL;
    if (srv->secret == NULL || !token_ok(srv, token)) {
        stat_add(srv, ST_JOIN_REFUSED, 1);
        VEIL_WARN(MOD, "%s: join as node %.253s refused: invalid join token", s->h2c->remote, node);
        respond_error(s, 403, "invalid join token");
    } else if (veil_spiffe_node_id(id, sizeof(id), veil_ca_trust_domain(srv->ca), node) != 0) {
        stat_add(srv, ST_JOIN_REFUSED, 1);
        bad_request(s, "invalid node name (a DNS-1123 subdomain)");
    } else if (veil_ca_sign_csr(srv->ca, csr, strlen(csr), id, srv->lifetime_s, &cert, err,
                                sizeof(err)) != 0) {
        stat_add(srv, ST_JOIN_REFUSED, 1);
        bad_request(s, err);
    } else {
        stat_add(srv, ST_JOIN_OK, 1);
        VEIL_INFO(MOD, "%s: node %s joined", s->h2c->remote, node);
        respond_json(s, 200,
                     json_pack("{s:s, s:s, s:s}", "certificate", cert, "trustBundle",
                               veil_ca_bundle_pem(srv->ca), "controlIdentity", srv->identity));
    }
    veil_free(cert);
    json_decref(req);
}

/* ---- /v1/certificates ---- */

static void handle_certs(struct push_h2s *s)
{
    struct push_h2c *c = s->h2c;
    struct veil_push_server *srv = c->srv;
    json_t *req = parse_body(s);
    const char *ns, *sa, *csr;
    if (req == NULL || json_unpack(req, "{s:s, s:s, s:s}", "namespace", &ns, "serviceAccount", &sa,
                                   "csr", &csr) != 0) {
        json_decref(req);
        bad_request(s, "expected {\"namespace\": string, \"serviceAccount\": string, "
                       "\"csr\": string}");
        return;
    }
    char id[VEIL_SPIFFE_ID_MAX + 1], err[512];
    char *cert = NULL;
    if (veil_spiffe_workload_id(id, sizeof(id), veil_ca_trust_domain(srv->ca), ns, sa) != 0) {
        stat_add(srv, ST_CERT_REFUSED, 1);
        bad_request(s, "invalid namespace or service account name");
    } else if (srv->prov.may_have == NULL || !srv->prov.may_have(srv->prov.ctx, c->node, ns, sa)) {
        stat_add(srv, ST_CERT_REFUSED, 1);
        snprintf(err, sizeof(err), "node %s runs no workload with identity %s/%s", c->node, ns, sa);
        VEIL_WARN(MOD, "%s: certificate refused: %s", c->remote, err);
        respond_error(s, 403, err);
    } else if (veil_ca_sign_csr(srv->ca, csr, strlen(csr), id, srv->lifetime_s, &cert, err,
                                sizeof(err)) != 0) {
        stat_add(srv, ST_CERT_REFUSED, 1);
        bad_request(s, err);
    } else {
        stat_add(srv, ST_CERT_OK, 1);
        VEIL_DEBUG(MOD, "%s: node %s: issued %s", c->remote, c->node, id);
        respond_json(s, 200,
                     json_pack("{s:s, s:s}", "certificate", cert, "trustBundle",
                               veil_ca_bundle_pem(srv->ca)));
    }
    veil_free(cert);
    json_decref(req);
}

/* ---- /v1/watch ---- */

/* Queues one update line; false if the subscriber cannot keep up. */
static bool queue_update(struct push_h2s *s, char *json)
{
    size_t n = strlen(json);
    bool ok = veil_buf_space(&s->resp) >= head_left(s) + n + 1;
    if (ok)
        stat_add(s->h2c->srv, ST_UPDATES, 1);
    if (ok && s->head == NULL && veil_buf_is_empty(&s->resp)) {
        s->head = json;
        s->head_off = 0;
        s->head_len = n;
        s->head_nl = true;
        return true;
    }
    if (ok)
        ok = veil_buf_append(&s->resp, json, n) == 0 && veil_buf_append(&s->resp, "\n", 1) == 0;
    veil_free(json);
    return ok;
}

static void drop_slow(struct push_h2s *s)
{
    stat_add(s->h2c->srv, ST_SLOW, 1);
    VEIL_WARN(MOD, "%s: node %s: subscriber cannot keep up (over %zu bytes queued); disconnected",
              s->h2c->remote, s->h2c->node, veil_buf_max(&s->resp));
    reset(s, NGHTTP2_ENHANCE_YOUR_CALM);
}

/* Drains the provider for `s` into its queue and wakes its data provider.
 * Resets the stream if it overflows. */
static void pump_updates(struct push_h2s *s)
{
    struct veil_push_server *srv = s->h2c->srv;
    char *json = NULL;
    while (srv->prov.poll(s->sub, &json) == 0 && json != NULL) {
        if (!queue_update(s, json)) {
            drop_slow(s);
            return;
        }
        json = NULL;
    }
    if (s->deferred && (s->head != NULL || !veil_buf_is_empty(&s->resp))) {
        s->deferred = false;
        nghttp2_session_resume_data(s->h2c->ng, s->id);
    }
}

static void watch_subscribe(struct push_h2s *s, json_t *msg)
{
    struct veil_push_server *srv = s->h2c->srv;
    json_int_t version = 0;
    int observer = 0;
    if (json_unpack(msg, "{s?I, s?b}", "version", &version, "observer", &observer) != 0 ||
        version < 0) {
        bad_request(s, "bad subscribe message");
        return;
    }
    void *sub = NULL;
    char *json = NULL;
    int rc = srv->prov.subscribe(srv->prov.ctx, s->h2c->node, (uint64_t)version, observer != 0,
                                 &sub, &json);
    if (rc != 0) {
        veil_free(json);
        VEIL_WARN(MOD, "%s: node %s: subscription refused: %s", s->h2c->remote, s->h2c->node,
                  strerror(-rc));
        respond_error(s, 503, "subscription refused");
        return;
    }
    s->sub = sub;
    stat_add(srv, ST_SUBSCRIBERS, 1);
    veil_buf_free(&s->resp);
    veil_buf_init(&s->resp, srv->lim.max_pending);
    if (json != NULL && !queue_update(s, json)) {
        drop_slow(s);
        return;
    }
    if (submit(s, 200) != 0) {
        reset(s, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    VEIL_INFO(MOD, "%s: node %s subscribed from version %llu%s", s->h2c->remote, s->h2c->node,
              (unsigned long long)version, observer ? " (observer)" : "");
    pump_updates(s);
}

static void watch_line(struct push_h2s *s, const char *line, size_t n)
{
    struct veil_push_server *srv = s->h2c->srv;
    if (n == 0)
        return;
    json_error_t jerr;
    json_t *msg = json_loadb(line, n, JSON_REJECT_DUPLICATES, &jerr);
    const char *type = NULL;
    json_int_t version = -1;
    const char *reason = "";
    if (msg == NULL || json_unpack(msg, "{s:s, s?I, s?s}", "type", &type, "version", &version,
                                   "reason", &reason) != 0) {
        stat_add(srv, ST_BAD_INPUT, 1);
        VEIL_DEBUG(MOD, "%s: malformed watch message", s->h2c->remote);
        reset(s, NGHTTP2_PROTOCOL_ERROR);
    } else if (strcmp(type, "subscribe") == 0 && s->sub == NULL && !s->responded) {
        watch_subscribe(s, msg);
    } else if (s->sub != NULL && version >= 0 && strcmp(type, "ack") == 0) {
        srv->prov.ack(s->sub, (uint64_t)version);
    } else if (s->sub != NULL && version >= 0 && strcmp(type, "nack") == 0) {
        VEIL_WARN(MOD, "%s: node %s rejected version %lld: %s", s->h2c->remote, s->h2c->node,
                  (long long)version, reason);
        srv->prov.nack(s->sub, (uint64_t)version, reason);
    } else {
        stat_add(srv, ST_BAD_INPUT, 1);
        VEIL_DEBUG(MOD, "%s: unexpected watch message \"%s\"", s->h2c->remote, type);
        reset(s, NGHTTP2_PROTOCOL_ERROR);
    }
    json_decref(msg);
}

static void watch_data(struct push_h2s *s)
{
    while (!s->dead && !veil_buf_is_empty(&s->req)) {
        const char *data = veil_buf_data(&s->req);
        const char *nl = memchr(data, '\n', veil_buf_len(&s->req));
        if (nl == NULL)
            return;
        size_t n = (size_t)(nl - data);
        watch_line(s, data, n);
        veil_buf_consume(&s->req, n + 1);
    }
}

/* ---- nghttp2 callbacks ---- */

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    struct push_h2c *c = user;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct push_h2s *s = veil_calloc(1, sizeof(*s));
    if (s == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    s->h2c = c;
    s->id = f->hd.stream_id;
    veil_buf_init(&s->req, c->srv->lim.max_body);
    veil_buf_init(&s->resp, VEIL_PUSH_BODY_MAX * 2);
    if (nghttp2_session_set_stream_user_data(ng, s->id, s) != 0) {
        veil_free(s);
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    s->next = c->streams;
    if (c->streams != NULL)
        c->streams->prev = s;
    c->streams = s;
    return 0;
}

static bool is(const uint8_t *p, size_t n, const char *lit)
{
    return n == strlen(lit) && memcmp(p, lit, n) == 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    (void)flags;
    (void)user;
    struct push_h2s *s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (s == NULL || f->hd.type != NGHTTP2_HEADERS)
        return 0;
    if (is(name, namelen, ":method")) {
        s->post = is(value, valuelen, "POST");
    } else if (is(name, namelen, ":path")) {
        s->route = is(value, valuelen, "/v1/join")           ? ROUTE_JOIN
                   : is(value, valuelen, "/v1/certificates") ? ROUTE_CERTS
                   : is(value, valuelen, "/v1/watch")        ? ROUTE_WATCH
                                                             : ROUTE_NONE;
    }
    return 0;
}

/* The request's headers are complete: route and authorize. */
static void headers_done(struct push_h2s *s)
{
    struct push_h2c *c = s->h2c;
    struct veil_push_server *srv = c->srv;
    if (s->route == ROUTE_NONE) {
        respond_error(s, 404, "no such path (POST /v1/join, /v1/certificates or /v1/watch)");
        s->dead = true;
    } else if (!s->post) {
        respond_error(s, 405, "use POST");
        s->dead = true;
    } else if (s->route != ROUTE_JOIN && !c->is_node) {
        stat_add(srv, ST_UNAUTHORIZED, 1);
        VEIL_WARN(MOD, "%s: refused %s: %s%s", c->remote,
                  s->route == ROUTE_WATCH ? "/v1/watch" : "/v1/certificates",
                  c->peer[0] != '\0' ? "not a node identity: " : "no client certificate", c->peer);
        respond_error(s, 401, "a node certificate is required");
        s->dead = true;
    } else if (s->route == ROUTE_WATCH) {
        veil_buf_init(&s->req, srv->lim.max_line);
    }
}

static void request_done(struct push_h2s *s)
{
    if (s->responded || s->dead)
        return;
    if (s->route == ROUTE_JOIN)
        handle_join(s);
    else if (s->route == ROUTE_CERTS)
        handle_certs(s);
    else if (s->route == ROUTE_WATCH)
        respond_error(s, 400, "the watch stream ended before a subscribe message");
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    struct push_h2c *c = user;
    if (f->hd.type == NGHTTP2_PING && (f->hd.flags & NGHTTP2_FLAG_ACK)) {
        c->ping_out = false;
        return 0;
    }
    if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
        return 0;
    struct push_h2s *s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (s == NULL)
        return 0;
    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST)
        headers_done(s);
    if (f->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        s->req_done = true;
        request_done(s);
    }
    return 0;
}

/* After an early answer (401, 413, ...) has gone out whole, ask the client
 * to stop sending the rest of its request (RFC 9113, 8.1). */
static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *user)
{
    (void)user;
    if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) ||
        !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct push_h2s *s = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);
    if (s != NULL && s->dead && !s->req_done)
        nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, s->id, NGHTTP2_NO_ERROR);
    return 0;
}

static int on_data_chunk(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *user)
{
    (void)flags;
    (void)user;
    struct push_h2s *s = nghttp2_session_get_stream_user_data(ng, id);
    if (s == NULL || s->dead || (s->responded && s->route != ROUTE_WATCH))
        return 0;
    if (veil_buf_append(&s->req, data, len) != 0) {
        stat_add(s->h2c->srv, ST_BAD_INPUT, 1);
        VEIL_DEBUG(MOD, "%s: request body over the limit", s->h2c->remote);
        if (s->responded)
            reset(s, NGHTTP2_ENHANCE_YOUR_CALM);
        else
            respond_error(s, 413, "request body too large");
        s->dead = true;
        return 0;
    }
    if (s->route == ROUTE_WATCH)
        watch_data(s);
    return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *user)
{
    (void)code;
    (void)user;
    struct push_h2s *s = nghttp2_session_get_stream_user_data(ng, id);
    if (s != NULL) {
        nghttp2_session_set_stream_user_data(ng, id, NULL);
        h2s_free(s);
    }
    return 0;
}

static int on_invalid_frame(nghttp2_session *ng, const nghttp2_frame *f, int code, void *user)
{
    (void)ng;
    (void)f;
    struct push_h2c *c = user;
    stat_add(c->srv, ST_BAD_INPUT, 1);
    VEIL_DEBUG(MOD, "%s: invalid HTTP/2 frame: %s", c->remote, nghttp2_strerror(code));
    return 0;
}

static nghttp2_session_callbacks *make_callbacks(void)
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

/* ---- connection life ---- */

static void h2c_timer(struct veil_timer *t)
{
    struct push_h2c *c = VEIL_CONTAINER_OF(t, struct push_h2c, timer);
    if (!c->established) {
        stat_add(c->srv, ST_HANDSHAKE_FAIL, 1);
        VEIL_DEBUG(MOD, "%s: TLS handshake timed out", c->remote);
        h2c_close(c);
        return;
    }
    if (c->ping_out) {
        VEIL_WARN(MOD, "%s: %s%sno answer to PING; closing", c->remote, c->node,
                  c->node[0] != '\0' ? ": " : "");
        h2c_close(c);
        return;
    }
    c->ping_out = nghttp2_submit_ping(c->ng, NGHTTP2_FLAG_NONE, NULL) == 0;
    h2c_after(c);
}

/* TLS is up: check ALPN, learn the peer, start HTTP/2. 0 or -1. */
static int h2c_established(struct push_h2c *c)
{
    struct veil_push_server *srv = c->srv;
    if (!veil_tls_alpn_is_h2(&c->tls)) {
        stat_add(srv, ST_HANDSHAKE_FAIL, 1);
        VEIL_DEBUG(MOD, "%s: no ALPN h2", c->remote);
        return -1;
    }
    c->established = true;
    struct veil_spiffe_id id;
    if (veil_tls_peer_id(&c->tls, c->peer, sizeof(c->peer)) == 0 &&
        veil_spiffe_parse(c->peer, &id) == 0 && id.kind == VEIL_SPIFFE_NODE &&
        strcmp(id.trust_domain, veil_ca_trust_domain(srv->ca)) == 0) {
        c->is_node = true;
        memcpy(c->node, id.node, sizeof(c->node));
    } else if (c->peer[0] == '\0') {
        veil_tls_peer_uri(&c->tls, c->peer, sizeof(c->peer));
    }
    nghttp2_session_callbacks *cbs = make_callbacks();
    if (cbs == NULL)
        return -1;
    nghttp2_option *opt = NULL;
    if (nghttp2_option_new(&opt) != 0) {
        nghttp2_session_callbacks_del(cbs);
        return -1;
    }
    nghttp2_option_set_max_send_header_block_length(opt, 16384);
    nghttp2_option_set_max_outbound_ack(opt, 1000);
    int rv = nghttp2_session_server_new2(&c->ng, cbs, c, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    if (rv != 0)
        return -1;
    const nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, srv->lim.max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1024 * 1024},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 16384},
    };
    if (nghttp2_submit_settings(c->ng, NGHTTP2_FLAG_NONE, iv, 3) != 0)
        return -1;
    veil_timer_start(srv->loop, &c->timer, srv->lim.ping_ms, srv->lim.ping_ms, h2c_timer);
    VEIL_DEBUG(MOD, "%s: connected as %s", c->remote, c->peer[0] ? c->peer : "(no certificate)");
    return 0;
}

static void h2c_io(struct veil_io *io, uint32_t events)
{
    (void)events;
    struct push_h2c *c = VEIL_CONTAINER_OF(io, struct push_h2c, tls.io);
    if (!c->established) {
        char err[256];
        int rc = veil_tls_handshake(&c->tls, err, sizeof(err));
        if (rc == -EAGAIN)
            return;
        if (rc != 0) {
            stat_add(c->srv, ST_HANDSHAKE_FAIL, 1);
            VEIL_DEBUG(MOD, "%s: %s", c->remote, err);
            h2c_close(c);
            return;
        }
        if (h2c_established(c) != 0) {
            h2c_close(c);
            return;
        }
    }
    uint8_t buf[READ_CHUNK];
    for (;;) {
        ssize_t n = veil_tls_read(&c->tls, buf, sizeof(buf));
        if (n == -EAGAIN)
            break;
        if (n <= 0) {
            h2c_close(c);
            return;
        }
        ssize_t rv = nghttp2_session_mem_recv(c->ng, buf, (size_t)n);
        if (rv < 0) {
            stat_add(c->srv, ST_BAD_INPUT, 1);
            VEIL_DEBUG(MOD, "%s: bad HTTP/2: %s", c->remote, nghttp2_strerror((int)rv));
            h2c_close(c);
            return;
        }
    }
    h2c_after(c);
}

static void accept_one(struct veil_push_server *srv, int fd, const struct sockaddr_storage *ss)
{
    stat_add(srv, ST_CONN_TOTAL, 1);
    if (atomic_load_explicit(&srv->stats[ST_CONN], memory_order_relaxed) >=
        srv->lim.max_connections) {
        VEIL_WARN(MOD, "too many connections (%zu); refusing one", srv->lim.max_connections);
        close(fd);
        return;
    }
    struct push_h2c *c = veil_calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return;
    }
    c->srv = srv;
    char host[INET6_ADDRSTRLEN] = "?";
    uint16_t port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        port = ntohs(a->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        port = ntohs(a->sin6_port);
    }
    snprintf(c->remote, sizeof(c->remote), "%s:%u", host, port);
    if (veil_tls_conn_init(&c->tls, srv->tls, srv->loop, fd, h2c_io) != 0) {
        veil_free(c);
        return;
    }
    c->next = srv->conns;
    if (srv->conns != NULL)
        srv->conns->prev = c;
    srv->conns = c;
    stat_add(srv, ST_CONN, 1);
    veil_timer_start(srv->loop, &c->timer, srv->lim.handshake_ms, 0, h2c_timer);
}

static void on_accept(struct veil_io *io, uint32_t events)
{
    (void)events;
    struct veil_push_server *srv = VEIL_CONTAINER_OF(io, struct veil_push_server, lio);
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        int fd = accept4(srv->lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                VEIL_WARN(MOD, "accept: %s", strerror(errno));
            return;
        }
        accept_one(srv, fd, &ss);
    }
}

/* ---- the server ---- */

static struct veil_tls_ctx *make_tls(struct veil_push_server *srv, const char *cert,
                                     const char *key, char *err, size_t errlen)
{
    const char *bundle = veil_ca_bundle_pem(srv->ca);
    struct veil_tls_ctx_opts o = {
        .role = VEIL_TLS_SERVER,
        .cert_pem = cert,
        .key_pem = key,
        .trust_bundle_pem = bundle,
        .extra_chain_pem = bundle,
    };
    return veil_tls_ctx_new(&o, err, errlen);
}

/* Half the time the certificate has left, in ms (a minute if unreadable). */
static uint64_t half_life_ms(const char *cert_pem)
{
    BIO *bio = BIO_new_mem_buf(cert_pem, -1);
    X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    int days = 0, secs = 0;
    long left = 0;
    if (x != NULL && ASN1_TIME_diff(&days, &secs, NULL, X509_get0_notAfter(x)) == 1)
        left = days * 86400L + secs;
    X509_free(x);
    ERR_clear_error();
    return left > 120 ? (uint64_t)left * 500 : 60000;
}

/* Issues the server's own certificate and makes a context with it; sets
 * srv->renew_ms. */
static struct veil_tls_ctx *issue_tls(struct veil_push_server *srv, char *err, size_t errlen)
{
    char *key = NULL, *cert = NULL;
    struct veil_tls_ctx *ctx = NULL;
    int rc = veil_ca_issue(srv->ca, srv->identity, 0, &key, &cert, err, errlen);
    if (rc == 0) {
        ctx = make_tls(srv, cert, key, err, errlen);
        srv->renew_ms = half_life_ms(cert);
    } else {
        errno = -rc;
    }
    if (key != NULL) {
        OPENSSL_cleanse(key, strlen(key));
        veil_free(key);
    }
    veil_free(cert);
    return ctx;
}

static void renew(struct veil_timer *t)
{
    struct veil_push_server *srv = VEIL_CONTAINER_OF(t, struct veil_push_server, renew_timer);
    char err[512];
    struct veil_tls_ctx *ctx = issue_tls(srv, err, sizeof(err));
    if (ctx == NULL) {
        VEIL_ERROR(MOD, "cannot renew the server certificate: %s; retrying in a minute", err);
        veil_timer_start(srv->loop, &srv->renew_timer, 60000, 0, renew);
        return;
    }
    veil_tls_ctx_free(srv->tls); /* open connections keep a reference to the old SSL_CTX */
    srv->tls = ctx;
    veil_timer_start(srv->loop, &srv->renew_timer, srv->renew_ms, 0, renew);
    VEIL_INFO(MOD, "renewed the server certificate %s", srv->identity);
}

static int listen_on(struct veil_push_server *srv, const char *addr, uint16_t port, char *err,
                     size_t errlen)
{
    int fd = veil_listen_tcp(addr, port, &srv->port);
    if (fd == -EINVAL) {
        snprintf(err, errlen, "bad bind address %s (a numeric IP address)", addr);
        return fd;
    }
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on %s port %u: %s", addr, port, strerror(-fd));
        return fd;
    }
    int rc = veil_io_start(srv->loop, &srv->lio, fd, VEIL_IO_READ, on_accept);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    srv->lfd = fd;
    return 0;
}

static int check_opts(const struct veil_push_server_opts *o, char *err, size_t errlen)
{
    const struct veil_push_provider *p = &o->provider;
    if (o->ca == NULL || p->subscribe == NULL || p->poll == NULL || p->unsubscribe == NULL ||
        p->ack == NULL || p->nack == NULL) {
        snprintf(err, errlen, "push server: a CA and a provider are required");
        return -EINVAL;
    }
    if (o->join_token != NULL &&
        (o->join_token[0] == '\0' || strlen(o->join_token) > VEIL_PUSH_TOKEN_SECRET_MAX ||
         strchr(o->join_token, '.') != NULL)) {
        snprintf(err, errlen, "push server: the join secret must be 1 to %d bytes without '.'",
                 VEIL_PUSH_TOKEN_SECRET_MAX);
        return -EINVAL;
    }
    if ((o->cert_pem == NULL) != (o->key_pem == NULL)) {
        snprintf(err, errlen, "push server: certificate and key go together");
        return -EINVAL;
    }
    return 0;
}

static void set_limits(struct veil_push_limits *l, const struct veil_push_limits *in)
{
    *l = *in;
    l->max_body = l->max_body ? l->max_body : VEIL_PUSH_BODY_MAX;
    l->max_line = l->max_line ? l->max_line : VEIL_PUSH_LINE_MAX;
    l->max_pending = l->max_pending ? l->max_pending : VEIL_PUSH_PENDING_MAX;
    l->ping_ms = l->ping_ms ? l->ping_ms : VEIL_PUSH_PING_MS;
    l->handshake_ms = l->handshake_ms ? l->handshake_ms : VEIL_PUSH_HANDSHAKE_MS;
    l->max_connections = l->max_connections ? l->max_connections : VEIL_PUSH_MAX_CONNECTIONS;
    l->max_streams = l->max_streams ? l->max_streams : VEIL_PUSH_MAX_STREAMS;
}

static void register_metrics(struct veil_push_server *srv, struct veil_metrics *reg)
{
    for (int i = 0; reg != NULL && i < ST_COUNT; i++) {
        struct veil_metrics_family *f =
            STAT_METRICS[i].gauge
                ? veil_metrics_gauge(reg, STAT_METRICS[i].name, STAT_METRICS[i].help, 0, NULL)
                : veil_metrics_counter(reg, STAT_METRICS[i].name, STAT_METRICS[i].help, 0, NULL);
        srv->series[i] = f != NULL ? veil_metrics_series(f, NULL) : NULL;
    }
}

static int setup(struct veil_push_server *srv, const struct veil_push_server_opts *o, char *err,
                 size_t errlen)
{
    snprintf(srv->identity, sizeof(srv->identity), "spiffe://%s" VEIL_PUSH_CONTROL_PATH,
             veil_ca_trust_domain(srv->ca));
    if (o->cert_pem != NULL) {
        srv->tls = make_tls(srv, o->cert_pem, o->key_pem, err, errlen);
    } else {
        srv->tls = issue_tls(srv, err, errlen);
        srv->own_cert = true;
    }
    if (srv->tls == NULL)
        return errno == ENOMEM ? -ENOMEM : -EINVAL;
    if (o->join_token != NULL) {
        char pin[VEIL_TLS_PIN_HEX_LEN + 1];
        srv->secret = veil_strdup(o->join_token);
        srv->token = veil_malloc(strlen(o->join_token) + sizeof(pin) + 1);
        if (srv->secret == NULL || srv->token == NULL)
            return -ENOMEM;
        if (veil_tls_cert_pin(veil_ca_bundle_pem(srv->ca), pin, sizeof(pin)) != 0) {
            snprintf(err, errlen, "push server: cannot read the trust bundle's root");
            return -EINVAL;
        }
        sprintf(srv->token, "%s.%s", o->join_token, pin);
    }
    int rc = listen_on(srv, o->bind != NULL ? o->bind : "0.0.0.0", o->port, err, errlen);
    if (rc != 0)
        return rc;
    long life = srv->lifetime_s > 0 ? srv->lifetime_s : VEIL_CA_LIFETIME_DEFAULT;
    if (srv->own_cert)
        veil_timer_start(srv->loop, &srv->renew_timer, (uint64_t)life * 500, (uint64_t)life * 500,
                         renew);
    return 0;
}

struct veil_push_server *veil_push_server_new(struct veil_loop *loop,
                                              const struct veil_push_server_opts *opts, char *err,
                                              size_t errlen)
{
    if (err != NULL && errlen > 0)
        err[0] = '\0';
    int rc = check_opts(opts, err, errlen);
    if (rc != 0) {
        errno = -rc;
        return NULL;
    }
    struct veil_push_server *srv = veil_calloc(1, sizeof(*srv));
    if (srv == NULL)
        return NULL;
    srv->loop = loop;
    srv->ca = opts->ca;
    srv->prov = opts->provider;
    srv->lfd = -1;
    srv->lifetime_s = opts->cert_lifetime_s;
    set_limits(&srv->lim, &opts->limits);
    register_metrics(srv, opts->metrics);
    rc = setup(srv, opts, err, errlen);
    if (rc != 0) {
        veil_push_server_free(srv);
        errno = -rc;
        return NULL;
    }
    VEIL_INFO(MOD, "listening on port %u as %s", srv->port, srv->identity);
    return srv;
}

void veil_push_server_free(struct veil_push_server *srv)
{
    if (srv == NULL)
        return;
    while (srv->conns != NULL)
        h2c_close(srv->conns);
    veil_io_stop(&srv->lio);
    veil_timer_stop(&srv->renew_timer);
    if (srv->lfd >= 0)
        close(srv->lfd);
    veil_tls_ctx_free(srv->tls);
    if (srv->secret != NULL)
        OPENSSL_cleanse(srv->secret, strlen(srv->secret));
    veil_free(srv->secret);
    veil_free(srv->token);
    veil_free(srv);
}

uint16_t veil_push_server_port(const struct veil_push_server *srv)
{
    return srv->port;
}

const char *veil_push_server_identity(const struct veil_push_server *srv)
{
    return srv->identity;
}

const char *veil_push_server_join_token(const struct veil_push_server *srv)
{
    return srv->token;
}

void veil_push_server_notify(struct veil_push_server *srv)
{
    struct push_h2c *next;
    for (struct push_h2c *c = srv->conns; c != NULL; c = c->next)
        for (struct push_h2s *s = c->streams; s != NULL; s = s->next)
            if (s->sub != NULL && !s->dead)
                pump_updates(s);
    for (struct push_h2c *c = srv->conns; c != NULL; c = next) {
        next = c->next;
        h2c_after(c);
    }
}

void veil_push_server_stats(const struct veil_push_server *srv, struct veil_push_stats *out)
{
    uint64_t v[ST_COUNT];
    for (int i = 0; i < ST_COUNT; i++)
        v[i] = atomic_load_explicit(&srv->stats[i], memory_order_relaxed);
    *out = (struct veil_push_stats){
        .connections_total = v[ST_CONN_TOTAL],
        .connections = v[ST_CONN],
        .handshake_failures = v[ST_HANDSHAKE_FAIL],
        .subscribers = v[ST_SUBSCRIBERS],
        .updates_pushed = v[ST_UPDATES],
        .joins_issued = v[ST_JOIN_OK],
        .joins_refused = v[ST_JOIN_REFUSED],
        .certs_issued = v[ST_CERT_OK],
        .certs_refused = v[ST_CERT_REFUSED],
        .unauthorized = v[ST_UNAUTHORIZED],
        .bad_input = v[ST_BAD_INPUT],
        .slow_disconnects = v[ST_SLOW],
    };
}
