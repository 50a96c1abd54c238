/* Internal to src/waypoint/: the engine's objects shared by its files. */
#ifndef VEIL_WAYPOINT_WP_INT_H
#define VEIL_WAYPOINT_WP_INT_H

#include "core/loop-t.h"
#include "hbone/hbone-t.h"
#include "http/h1-t.h"
#include "node/authz-t.h"
#include "waypoint/route-t.h"
#include "waypoint/waypoint-t.h"

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define LOG "waypoint"

/* Bytes read from one side and not yet passed on, at most (a request or
 * response head must fit, with some body behind it). */
#define WP_IN_MAX (VEIL_H1_HEAD_BYTES_MAX + 16 * 1024)
/* Bytes waiting to be written to one side, at most. */
#define WP_OUT_MAX (128 * 1024)
/* A request whose head and body fit in this many bytes can be retried
 * (the bytes are kept until the response head arrives). */
#define WP_REPLAY_MAX (64 * 1024)
/* The first bytes of a tunnel decide its protocol; a client that says
 * nothing for this long (a server-first protocol) is passed through. */
#define WP_DETECT_MS 500
/* Attempts of a request that failed before any response byte (connect
 * failure, reset, refused stream), as Istio's default retry policy. */
#define WP_CONNECT_RETRIES 2
/* A request answered by the waypoint itself (403, 404, ...) keeps its
 * connection if its body left to read is at most this (it is dropped). */
#define WP_DRAIN_MAX (64 * 1024)
/* Access-log lines are written in batches: at most this many bytes wait,
 * for at most WP_ALOG_FLUSH_MS (Envoy's file access log waits up to 1 s). */
#define WP_ALOG_BYTES    (16 * 1024)
#define WP_ALOG_FLUSH_MS 1000
/* With no connection left for this long, the engine gives memory back
 * (its buffer cache, the access-log buffer, free heap pages). */
#define WP_IDLE_TRIM_MS 2000
/* The labels of a request that vary within a connection, joined: longer
 * ones are looked up every time. */
#define WP_MKEY_MAX 768
/* RequestMirror: copies in flight per engine, at most; the longest a copy
 * lives (dial, send, the answer read and dropped). */
#define WP_MIRRORS_MAX 64
#define WP_MIRROR_MS   10000
/* RequestMirror filters acted on per request (rule and backendRef), at most. */
#define WP_REQ_MIRRORS 4
/* Header fields per message we look at. */
#define WP_HDRS_MAX VEIL_H1_HEAD_FIELDS_MAX

struct veil_l4_end;
struct veil_hbone_h2s;
struct veil_metrics_family;
struct veil_metrics_series;
struct veil_node_svc;
struct veil_node_ep;
struct veil_authz;
struct wp_backend;
struct veil_wp_bal_set;
struct veil_wp_bal_ep;

/* A bounded byte buffer: data is p[off, len). Allocated when first
 * needed, freed when it drains. */
struct wp_buf {
    char *p;
    uint32_t off, len, cap;
};

/* An intrusive doubly-linked list (a head is a link to itself). */
struct wp_link {
    struct wp_link *prev, *next;
};
static inline void wp__link_init(struct wp_link *l)
{
    l->prev = l->next = l;
}
static inline void wp__link_add(struct wp_link *head, struct wp_link *l)
{
    l->next = head;
    l->prev = head->prev;
    head->prev->next = l;
    head->prev = l;
}
static inline void wp__link_del(struct wp_link *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
    l->prev = l->next = l;
}

struct wp_metrics {
    struct veil_metrics_family *requests, *duration, *req_bytes, *resp_bytes;
    struct veil_metrics_family *tcp_opened, *tcp_closed;
    struct veil_metrics_family *mirrors; /* veil_waypoint_mirrors_total{result} */
};

struct veil_wp {
    struct veil_wp_env env;
    struct wp_link conns;
    size_t nconns;
    struct wp_metrics m;
    uint64_t rng;
    uint64_t next_id;
    uint64_t bad_requests, requests_total;
    bool draining; /* veil_wp_drain(): every HTTP/1.1 answer closes its connection */
    int alog_fd;   /* access log; -1: none */
    char *alog;    /* lines not written yet (WP_ALOG_BYTES), or NULL */
    size_t alog_len;
    long long alog_sec;              /* the second alog_ts shows */
    char alog_ts[24];                /* "YYYY-MM-DDTHH:MM:SS" */
    struct veil_timer alog_timer;    /* writes them */
    struct veil_timer idle_timer;    /* wp__idle_trim() once no connection is left */
    struct veil_authz *authz;        /* every AuthorizationPolicy; the waypoint-bound ones decide */
    struct veil_route_table *routes; /* HTTPRoute, GRPCRoute (route.h) */
    struct wp_backend *backends;     /* per backend service port: its balancer (stages.c) */
    struct wp_link mirrors;          /* RequestMirror copies in flight (mirror.c) */
    size_t nmirrors;
};

enum wp_mode {
    WP_DETECT = 0, /* waiting for the first bytes */
    WP_H1,         /* HTTP/1.1 requests */
    WP_RAW,        /* bytes passed through (TCP, after an upgrade) */
    WP_H2,         /* HTTP/2 with prior knowledge (h2.c drives it) */
};

enum wp_rq { RQ_HEAD = 0, RQ_BODY, RQ_DONE };
enum wp_rs { RS_NONE = 0, RS_HEAD, RS_BODY, RS_DONE };

/* The request in flight on an HTTP/1 connection (one at a time). */
struct wp_req {
    uint64_t start_ms;
    char *raw; /* the request head as received (spans of head point here) */
    struct veil_h1_head head;
    enum wp_rq rq;
    struct veil_h1_body body;
    bool chunked_out; /* the body goes upstream chunked */
    bool keep_alive;  /* the client may send another request after this one */
    bool upgrade;     /* Upgrade requested */
    bool discard;     /* answered locally: the body is read and dropped */
    /* where it goes */
    struct veil_node_svc *svc; /* backend service */
    uint16_t svc_port;
    char backend[300]; /* "ns/name" of the backend service */
    char dst_wl[300], dst_ns[64], dst_principal[300];
    struct in_addr ep_addr;
    uint16_t ep_port;
    /* attempts */
    unsigned attempts, connect_retries;
    unsigned retry_max;          /* from the route */
    const uint16_t *retry_codes; /* from the route */
    size_t nretry_codes;
    uint64_t timeout_ms, attempt_timeout_ms;
    struct wp_buf replay; /* head + body sent so far, while it fits WP_REPLAY_MAX */
    bool replayable;
    /* the response */
    enum wp_rs rs;
    struct veil_h1_parser rp;
    struct veil_h1_head rhead;
    struct veil_h1_body rbody;
    bool rchunked_out; /* the body goes to the client chunked */
    bool close_after;  /* the client connection closes after this response */
    uint16_t status;
    const char *flags; /* Envoy response flags ("-", "UF", "UT", "URX", ...) */
    uint64_t req_bytes, resp_bytes;
    char traceparent[56];
    /* the route */
    bool matched;
    struct veil_route_match match; /* held while the request lives */
    const struct veil_route_filters *be_filters;
    char route[200];           /* "ns/name" of the route, or "" */
    char *path_override;       /* URLRewrite path */
    const char *host_override; /* URLRewrite hostname */
    uint64_t backoff_ms;       /* route's retry backoff; 0: default */
    struct wp_conn *conn;
    const struct veil_wp_bal_ep *avoid; /* the endpoint the last attempt failed on */
    bool retrying;                      /* this attempt is a retry the budget counts */
    /* RequestMirror filters that hit: a copy of the request goes to each
     * once it is complete (held by `match`) */
    const struct veil_route_mirror *mirrors[WP_REQ_MIRRORS];
    unsigned nmirrors;
    /* Not zeroed when the request is made (3 KiB, per request): only the
     * first head.nheaders and rhead.nheaders are ever read, written by the
     * parser first. Keep them last (conn.c checks). */
    struct veil_h1_header hdrs[WP_HDRS_MAX];
    struct veil_h1_header rhdrs[WP_HDRS_MAX];
};

/* One tunnel from a node proxy: one client TCP connection. */
struct wp_conn {
    struct wp_link link;
    struct veil_wp *wp;
    uint64_t id;
    struct veil_l4_end *down, *up;
    struct veil_hbone_h2s *dialing;
    enum wp_mode mode;
    struct sockaddr_in vip; /* the service address the client dialled */
    uint16_t port;
    struct veil_node_svc *svc; /* the service of vip (looked up again per request) */
    char svc_ns[64], svc_name[64];
    char src_principal[300], src_ns[64], src_wl[300];
    struct in_addr src_addr;
    struct wp_buf din, dout, uin, uout; /* from/to the client, from/to upstream */
    bool down_eof, up_eof, down_shut, up_shut;
    bool closing; /* close the client after dout drains */
    bool dead;
    bool up_reusable;
    struct in_addr up_addr; /* endpoint of the open upstream */
    uint16_t up_port;
    struct veil_h1_parser qp;
    struct wp_req *req;
    struct veil_timer detect_timer, req_timer, try_timer;
    struct veil_defer free_d;
    unsigned in_run;                   /* conn__run nesting */
    struct veil_hbone_header dial_hdr; /* x-veil-source-principal */
    struct veil_wp_bal_set *bal_set;   /* the attempt in flight: its balancer and endpoint */
    /* wp__record(): the request-metric series of the last request's
     * labels, which the next request of the connection mostly shares (the
     * source and service labels are the connection's own) */
    char mkey[WP_MKEY_MAX];
    size_t mkey_len;
    struct veil_metrics_series *ms[4];
    struct veil_wp_bal_ep *bal_ep;
    /* h2.c (the HTTP/2 engineer's): the state of a WP_H2 connection;
     * wp__conn_close() must call wp__h2_free(c) (h2.h) while it is set. */
    struct wp_h2c *h2;
};

/* waypoint.c */
uint64_t wp__rand(struct veil_wp *wp);
void wp__conn_unlink(struct wp_conn *c);

/* conn.c */
struct wp_conn *wp__conn_new(struct veil_wp *wp);
void wp__conn_start(struct wp_conn *c, struct veil_l4_end *down);
void wp__conn_run(struct wp_conn *c);
void wp__conn_close(struct wp_conn *c, bool abort);

/* buf */
int wp__buf_room(struct wp_buf *b, size_t want, size_t max);
int wp__buf_put_slow(struct wp_buf *b, const void *p, size_t n, size_t max);
int wp__buf_printf(struct wp_buf *b, size_t max, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void wp__buf_used(struct wp_buf *b, size_t n);
void wp__buf_free(struct wp_buf *b);
/* Frees the buffers kept for reuse (the engine's idle timer, and when it
 * is freed). */
void wp__buf_cache_trim(void);
static inline size_t wp__buf_len(const struct wp_buf *b)
{
    return b->len - b->off;
}
static inline const char *wp__buf_data(const struct wp_buf *b)
{
    return b->p + b->off;
}
/* Appends n bytes if the total stays within max: 0, -ENOBUFS, -ENOMEM.
 * Inline for the common case, room already there (a head is written in
 * some fifty small puts). */
static inline int wp__buf_put(struct wp_buf *b, const void *p, size_t n, size_t max)
{
    if (b->p != NULL && n <= b->cap - b->len && wp__buf_len(b) + n <= max) {
        memcpy(b->p + b->len, p, n);
        b->len += (uint32_t)n;
        return 0;
    }
    return wp__buf_put_slow(b, p, n, max);
}

/* conn.c */
void wp__reply(struct wp_conn *c, int status, const char *body, const char *flags, bool close);
/* The same with one more header field (e.g. location). */
void wp__reply_hdr(struct wp_conn *c, int status, const char *body, const char *flags, bool close,
                   const char *name, const char *value);
void wp__req_free(struct wp_req *r);
void wp__end_bind(struct wp_conn *c, struct veil_l4_end *e);

/* request.c */
void wp__request_begin(struct wp_conn *c, struct wp_req *r);
bool wp__resp_process(struct wp_conn *c, struct wp_req *r);
void wp__attempt_failed(struct wp_conn *c, struct wp_req *r, bool connect, const char *why);
void wp__up_put(struct wp_conn *c, struct wp_req *r, const void *p, size_t n);
void wp__up_printf(struct wp_conn *c, struct wp_req *r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* h2.c: takes a connection whose first bytes are the HTTP/2 preface
 * (still in c->din): 0, or -errno to pass it through instead. */
int wp__h2_start(struct wp_conn *c);

/* mirror.c: sends a copy of a request (n bytes, as they went upstream) to
 * an endpoint of the mirror's Service; its answer is dropped. Never fails
 * the request: a copy that cannot go is counted as dropped, as is one with
 * bytes NULL (the request was not kept whole). */
void wp__mirror(struct wp_conn *c, const struct veil_route_mirror *mi, const void *bytes, size_t n);
/* The RequestMirror filters of f that hit this time (their fraction drawn),
 * appended to out[*n] (at most WP_REQ_MIRRORS in all). */
void wp__mirrors_hit(struct veil_wp *wp, const struct veil_route_filters *f,
                     const struct veil_route_mirror **out, unsigned *n);
/* Ends every copy in flight (the engine stops). */
void wp__mirrors_free(struct veil_wp *wp);

/* upstream.c */
void wp__up_start(struct wp_conn *c);
void wp__up_close(struct wp_conn *c, bool abort);

/* stages.c */
struct veil_hbone_dial;
int wp__stage_authz(struct wp_conn *c, struct wp_req *r);
/* L7 AuthorizationPolicy for one request of c, of either protocol (stream:
 * its HTTP/2 stream id, 0 for HTTP/1.1): true, and logged, if denied. */
bool wp__authz_denied(struct wp_conn *c, int32_t stream, struct veil_authz_str method,
                      struct veil_authz_str path, struct veil_authz_str host,
                      const struct veil_authz_header *hdrs, size_t nh);
int wp__stage_route(struct wp_conn *c, struct wp_req *r);
/* The name of svc's port `port` (a route parentRef's sectionName), or NULL. */
const char *wp__port_name(const struct veil_node_svc *svc, uint16_t port);
/* Where an attempt goes (strings owned by the balancer; valid while the
 * attempt runs). */
struct wp_target {
    struct in_addr addr;
    uint16_t port;
    const char *identity, *workload;
};
int wp__ep_pick(struct wp_conn *c, struct veil_node_svc *svc, uint16_t port,
                const struct veil_wp_bal_ep *avoid, struct wp_target *t);
/* The endpoint an attempt would go to now, without starting one (a
 * mirror's): 0, -ENOENT (none), -ENOMEM. Strings valid until the next
 * configuration update. */
int wp__ep_peek(struct veil_wp *wp, struct veil_node_svc *svc, uint16_t port, struct wp_target *t);
void wp__backends_free(struct veil_wp *wp);
void wp__ep_done(struct wp_conn *c, int status);
bool wp__retry_budget(struct veil_wp *wp, struct wp_req *r);
uint64_t wp__backoff_ms(struct veil_wp *wp, struct wp_req *r);
/* The delay before retry number attempts + 1 (Envoy's: base 25 ms or the
 * route's, doubling, at most 10x, a random point below). */
uint64_t wp__backoff(struct veil_wp *wp, uint64_t base_ms, unsigned attempts);
void wp__dial_headers(struct wp_conn *c, struct veil_hbone_dial *d);
/* An HBONE dial to the endpoint addr:port (identity: the server's), with
 * its strings in w: returns &w->d. */
struct wp_dial {
    struct sockaddr_in dst;
    char key[400], authority[VEIL_HBONE_AUTHORITY_MAX];
    struct veil_hbone_dial d;
};
struct veil_hbone_dial *wp__dial_init(struct wp_dial *w, struct veil_wp *wp, struct in_addr addr,
                                      uint16_t port, const char *identity);
int wp__headers_filtered(const struct wp_req *r, bool response, const struct veil_route_hdr *in,
                         size_t nin, struct veil_route_hdr *out, size_t cap);
/* The same for any protocol: the header modifiers of f[0] then f[1] (either
 * may be NULL) on `in`; the result in `out`, `tmp` a scratch list, both of
 * `cap` entries. The count, or -ENOBUFS. */
int wp__header_mods(const struct veil_route_filters *const f[2], bool response,
                    const struct veil_route_hdr *in, size_t nin, struct veil_route_hdr *out,
                    struct veil_route_hdr *tmp, size_t cap);
void wp__names_from_key(const char *key, char *ns, size_t nscap, char *name, size_t namecap);

/* stages.c: the route table */
struct json_t;
int wp__routes_init(struct veil_wp *wp);
void wp__routes_free(struct veil_wp *wp);
void wp__routes_clear(struct veil_wp *wp);
int wp__routes_item(struct veil_wp *wp, const char *kind, const char *ns, const char *name,
                    const struct json_t *spec, char *err, size_t errlen);

/* telemetry.c: what one request was, whatever its protocol (strings
 * borrowed for the call; NULL reads "unknown", or "-" for flags). */
struct wp_record {
    const char *dst_wl, *dst_ns, *dst_principal;
    bool grpc;               /* request_protocol "grpc" (else "http") */
    uint16_t status;         /* 0: no response */
    const char *grpc_status; /* NULL: "-" */
    const char *flags;
    uint64_t req_bytes, resp_bytes, dur_ms;
    const char *method, *path, *authority;
    size_t method_len, path_len, authority_len;
    const char *http_version; /* "HTTP/1.1", "HTTP/2" */
    struct in_addr ep_addr;
    uint16_t ep_port; /* 0: no upstream */
    const char *backend, *traceparent;
    bool retried;
};
void wp__record(struct wp_conn *c, const struct wp_record *rec);

/* telemetry.c */
int wp__metrics_setup(struct veil_wp *wp);
void wp__request_done(struct wp_conn *c, struct wp_req *r);
void wp__tcp_done(struct wp_conn *c);
void wp__traceparent(struct veil_wp *wp, const char *in, size_t n, char out[56]);
/* Writes the access-log lines that wait (and frees their buffer). */
void wp__alog_flush(struct veil_wp *wp);

#endif
