/*
 * Internal to src/waypoint/h2*.c: HTTP/2 with prior knowledge (h2c, gRPC
 * included) through the waypoint, per request (docs/waypoint.md, "HTTP/2
 * and gRPC").
 *
 * Levels: one struct wp_h2c per client connection (a struct wp_conn in
 * mode WP_H2, with a server-side nghttp2 session on c->down); one struct
 * wp_h2s per request stream; one struct wp_h2up per endpoint the
 * connection's requests went to (an HBONE tunnel carrying a client-side
 * nghttp2 session, many streams on it).
 *
 * Flow control: neither session gives window back by itself. A stream's
 * DATA waits in its own buffer (bounded by the stream window we advertise,
 * WP_H2_WINDOW) and its window is given back only as the other side's
 * session takes the bytes (its data provider), so a slow reader stops the
 * writer. Connection windows are given back as bytes arrive (a stream
 * nobody reads does not stop the others).
 *
 * Lifetime: a stream lives from its request HEADERS to the close of its
 * downstream stream; an upstream stream closing first only detaches it.
 * Nothing is freed from inside an nghttp2 callback except streams (the
 * sessions look them up by stream id, never by pointer); sessions and
 * upstreams are freed from the ends' notifications or the deferred kick.
 */
#ifndef VEIL_WAYPOINT_H2_INT_H
#define VEIL_WAYPOINT_H2_INT_H

#include "waypoint/route-t.h"
#include "waypoint/wp-int.h"

#include <nghttp2/nghttp2.h>

/* Concurrent streams a client may open (SETTINGS_MAX_CONCURRENT_STREAMS). */
#define WP_H2_MAX_STREAMS 100
/* Bytes of one header block (fields + 32 each, as HPACK counts), at most. */
#define WP_H2_HEADERS_MAX (64 * 1024)
/* The stream window both sessions advertise: a stream's bytes waiting in
 * the waypoint, per direction, at most. */
#define WP_H2_WINDOW 65535
/* The connection window both sessions advertise. */
#define WP_H2_CONN_WINDOW (1024 * 1024)
/* Upstream tunnels per client connection (distinct endpoints), at most. */
#define WP_H2_UPS_MAX 16
/* Bytes of frames waiting for a slow socket (either side), at most, before
 * the session stops being asked for more. */
#define WP_H2_OUT_HIGH (64 * 1024)
/* ... and with the frame that crossed that mark (a header block at most). */
#define WP_H2_OUT_MAX (WP_H2_OUT_HIGH + WP_H2_HEADERS_MAX + 16 * 1024)

/* One header block as received: entries [u32 nlen][u32 vlen][name][value]. */
struct wp_h2_hdrs {
    char *p;
    uint32_t len, cap, n, weight; /* weight: HPACK-counted size */
};

struct wp_h2up;

/* One request stream. */
struct wp_h2s {
    struct wp_h2c *h;
    struct wp_link link; /* in h->streams */
    int32_t ds_id;       /* the client's stream */
    struct wp_h2up *up;  /* the upstream carrying it or dialing for it; NULL */
    struct wp_link up_link;
    int32_t up_id;            /* its stream there; 0 = not submitted yet */
    struct wp_h2_hdrs qh, qt; /* the request head; its trailers */
    struct wp_h2_hdrs ph;     /* the response header block being received */
    nghttp2_nv *qnv;          /* the head as it goes upstream (points into qh) */
    size_t nqnv;
    struct wp_buf qbody, pbody;  /* DATA waiting: to upstream / to the client */
    bool q_eof, p_eof;           /* END_STREAM came from the client / the upstream */
    bool q_trailers, p_trailers; /* qh / ph hold trailers to send after the body */
    bool headers_done;           /* the request head was complete */
    bool p_started;              /* the final response HEADERS went to the client */
    bool p_sent;                 /* ... and its END_STREAM */
    bool local;                  /* answered by the waypoint */
    bool q_discard;              /* the rest of the request body is dropped */
    bool grpc, done;
    uint16_t status;
    char grpc_status[12];
    const char *flags; /* Envoy response flags */
    uint64_t start_ms, q_bytes, p_bytes;
    struct veil_timer timer; /* the route's request timeout */
    struct veil_route_match rm;
    const struct veil_route_filters *be_filters; /* the picked backendRef's, or NULL */
    /* RequestMirror filters that hit */
    const struct veil_route_mirror *mirrors[WP_REQ_MIRRORS];
    unsigned nmirrors;
    /* the request body kept for retries and mirrors, until the response
     * starts (at most WP_REPLAY_MAX; qcopy_over: it did not fit) */
    struct wp_buf qcopy;
    bool qcopy_over;
    /* attempts (as HTTP/1.1's, wp-int.h) */
    unsigned attempts, connect_retries, retry_max;
    const uint16_t *retry_codes; /* the route's */
    size_t nretry_codes;
    uint64_t backoff_ms, attempt_timeout_ms;
    const char *svc_ns,
        *svc_name;     /* the backend Service (the connection's, or the route's held by rm) */
    uint16_t svc_port; /* ... and its port */
    const struct veil_wp_bal_ep *avoid; /* the endpoint the last attempt failed on */
    bool retrying;                      /* this attempt is a retry the budget counts */
    struct veil_timer try_timer;        /* a retry's backoff, then the attempt's timeout */
    uint64_t q_sent, q_credited;        /* body bytes sent by this attempt; given back
                                           to the client (window) so far */
    /* for telemetry and the access log */
    char method[16], path[256], authority[256];
    char backend[300], dst_wl[300], dst_ns[64], dst_principal[300];
    char traceparent[56];
    struct in_addr ep_addr;
    uint16_t ep_port;
    struct veil_wp_bal_set *bal_set; /* the attempt in flight (wp__ep_pick) */
    struct veil_wp_bal_ep *bal_ep;
};

/* One upstream: an HBONE tunnel to an endpoint, HTTP/2 on it. */
struct wp_h2up {
    struct wp_h2c *h;
    struct wp_link link; /* in h->ups */
    struct in_addr addr;
    uint16_t port;
    char identity[300];
    struct veil_hbone_h2s *dialing;
    struct veil_l4_end *end;
    nghttp2_session *ng;
    struct wp_buf out;
    struct wp_link streams; /* wp_h2s.up_link */
    size_t nstreams;
    bool eof, dead;
};

/* One client connection in mode WP_H2. */
struct wp_h2c {
    struct wp_conn *c;
    nghttp2_session *ng;
    struct wp_link streams, ups;
    size_t nstreams, nups;
    struct veil_defer kick_d, free_d;
    bool dead, in_run;
};

/* mirror.c: wp__mirror() for an HTTP/2 request: its head as it went
 * upstream (nv) and its body; whole false (the body was not kept) counts it
 * as dropped. */
void wp__mirror_h2(struct wp_conn *c, const struct veil_route_mirror *mi, const nghttp2_nv *nv,
                   size_t nnv, const void *body, size_t blen, bool whole);

/* h2.c */
void wp__h2_kick(struct wp_h2c *h);
/* The upstream stream of s closed (code: RST_STREAM error code, or
 * NGHTTP2_INTERNAL_ERROR when its tunnel was lost; connect: it never got
 * there). s is detached from its upstream. */
void wp__h2s_up_closed(struct wp_h2s *s, uint32_t code, bool connect, const char *why);
/* A response header block for s is complete in s->ph (end: END_STREAM). */
void wp__h2s_up_headers(struct wp_h2s *s, bool end);
/* Response DATA for s: bytes kept (0) or the stream was reset (-1). */
int wp__h2s_up_data(struct wp_h2s *s, const uint8_t *p, size_t n);
void wp__h2s_up_eof(struct wp_h2s *s);

/* header blocks */
int wp__h2_hdrs_add(struct wp_h2_hdrs *b, const uint8_t *name, size_t nlen, const uint8_t *value,
                    size_t vlen);
void wp__h2_hdrs_free(struct wp_h2_hdrs *b);
/* The i-th entry (i < b->n), walking from *off (start at 0). */
void wp__h2_hdrs_next(const struct wp_h2_hdrs *b, uint32_t *off, const char **name, size_t *nlen,
                      const char **value, size_t *vlen);
/* The first value of `name` (lower case), or NULL. */
const char *wp__h2_hdrs_get(const struct wp_h2_hdrs *b, const char *name, size_t *vlen);
/* Headers of b for forwarding (pseudo-headers first, connection-specific
 * ones left out) into a new array (veil_free it). NULL on ENOMEM. */
nghttp2_nv *wp__h2_hdrs_nv(const struct wp_h2_hdrs *b, size_t extra, bool request, size_t *n);
/* request: traceparent is left out too (the waypoint sets its own). */

/* nghttp2's data source over one direction of a stream: copies up to len
 * bytes of body into buf (*copied: how many), then, once body is empty and
 * eof set, ends the DATA with EOF, and with `trailers` (NULL: none) as a
 * trailer block. Returns what the read callback returns. */
ssize_t wp__h2_body_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         struct wp_buf *body, bool eof, const struct wp_h2_hdrs *trailers,
                         size_t *copied);

/* Moves frames from ng to `out` (up to WP_H2_OUT_HIGH) and `out` to e.
 * 0, or -errno (the end failed, bad session state). */
int wp__h2_send(nghttp2_session *ng, struct veil_l4_end *e, struct wp_buf *out);
/* Our SETTINGS and connection window. 0 or -ENOMEM. */
int wp__h2_settings(nghttp2_session *ng, bool server);

/* h2up.c */
/* The upstream for endpoint addr:port (identity) of h, made and dialed if
 * new. NULL with errno (EMFILE: too many, else the dial's). */
struct wp_h2up *wp__h2up_get(struct wp_h2c *h, struct in_addr addr, uint16_t port,
                             const char *identity);
/* Sends s's request on `up` now, or when its tunnel opens. */
void wp__h2up_attach(struct wp_h2up *up, struct wp_h2s *s);
/* s leaves its upstream: its stream there is reset with `code` if open. */
void wp__h2up_detach(struct wp_h2s *s, uint32_t code);
/* More request DATA (or its end) waits in s->qbody for the upstream. */
void wp__h2up_resume(struct wp_h2s *s);
/* The client took n response bytes of s: window back to the upstream. */
void wp__h2up_consumed(struct wp_h2s *s, size_t n);
/* Moves bytes between the upstream's tunnel and its session; frees it when
 * it is done. */
void wp__h2up_run(struct wp_h2up *up);
void wp__h2up_free(struct wp_h2up *up);

#endif
