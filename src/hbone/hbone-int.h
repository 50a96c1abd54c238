/* Internals shared by the HBONE server and pool (src/hbone/ only). */
#ifndef VEIL_HBONE_HBONE_INT_H
#define VEIL_HBONE_HBONE_INT_H

#include "core/buf-t.h"
#include "core/loop-t.h"
#include "hbone/hbone-t.h"
#include "l4/pump-t.h"
#include "tls/spiffe-t.h"
#include "tls/tls-t.h"

#include <netinet/in.h>
#include <stdatomic.h>

#include <nghttp2/nghttp2.h>

#define HBONE_MOD        "hbone"
#define HBONE_READ_CHUNK 16384
#define HBONE_ERR_MAX    160
/* A stream's buffer that drained is freed this long after (with those of
 * the other streams of its h2c that are empty then): a busy stream keeps
 * its buffers from one burst to the next, an idle one soon holds none.
 * The h2c's TLS record buffers go the same way (veil_tls_release()). */
#define HBONE_TRIM_MS 250

enum hbone_stat {
    HS_CONN_TOTAL,
    HS_CONN,
    HS_CONNECT_FAIL,
    HS_HANDSHAKE_FAIL,
    HS_IDENTITY,
    HS_PROTO,
    HS_STREAMS_TOTAL,
    HS_STREAMS,
    HS_STREAMS_OK,
    HS_REFUSED,
    HS_BAD_REQ,
    HS_RESET,
    HS_REUSE,
    HS_COUNT
};

enum h2c_state { H2C_CONNECTING, H2C_HANDSHAKE, H2C_READY, H2C_DEAD };

/* Where a stream is in its life, from the application's point of view. */
enum h2s_phase {
    H2S_NEW,      /* server: headers arriving; client: waiting for its h2c */
    H2S_CONNECT,  /* server: valid CONNECT, on_connect queued */
    H2S_WAIT_APP, /* server: given to on_connect, no answer yet */
    H2S_SENT,     /* client: CONNECT sent, no answer yet */
    H2S_ANSWERED, /* client: answer (or failure) known, cb queued */
    H2S_OPEN,     /* an L4 end */
    H2S_DONE,     /* answered with an error (server) or cb ran with an error */
};

struct hbone_h2c;

/*
 * One stream. Kept small: an open tunnel that is idle holds only this (and
 * nghttp2's own stream): `in` and `out` own memory only while bytes wait in
 * them, nghttp2 holds a DATA item for the stream only while there is
 * something to send, and a failed connect's reason is a static string or
 * allocated then.
 */
struct veil_hbone_h2s {
    struct veil_l4_end end;
    struct veil_loop *loop;
    struct hbone_h2c *h2c;              /* NULL once detached from the HTTP/2 stream */
    struct veil_hbone_h2s *prev, *next; /* in h2c->streams, or h2c->pending */
    /* Received, not read yet (at most limits.stream_window); written, not
     * yet taken by nghttp2 (at most limits.stream_out). Freed once drained
     * (HBONE_TRIM_MS later). */
    struct veil_buf in, out;
    /* Delivers `pending` or the phase change to the user; once the stream
     * is dead (released and detached), frees it instead. */
    struct veil_defer defer_d;
    char *authority; /* "ip:port", allocated */
    /* Extra request headers, packed "name\0value\0..." (xhdr_len bytes,
     * nxhdr pairs): the client's until its CONNECT is submitted, the
     * server's until on_connect returned. NULL: none. */
    char *xhdr;
    /* client */
    veil_hbone_connect_cb cb;
    void *cb_arg;
    const char *reason; /* why the connect failed; allocated if reason_owned */
    int32_t id;
    uint32_t hdr_bytes;     /* of the header block so far, as SETTINGS counts them */
    int16_t err;            /* -ECONNRESET / -EPIPE once the stream failed */
    uint16_t status;        /* client: the answer's :status */
    uint8_t phase;          /* enum h2s_phase */
    uint8_t pending;        /* VEIL_L4_* to deliver from defer_d */
    uint8_t nxhdr;          /* pairs in xhdr */
    uint16_t xhdr_len;      /* bytes of xhdr */
    bool app : 1;           /* the application holds the handle */
    bool attached : 1;      /* the nghttp2 stream is alive (in h2c->streams) */
    bool queued : 1;        /* client: in h2c->pending, not submitted yet */
    bool dead : 1;          /* to be freed by defer_d */
    bool in_eof : 1;        /* the peer's END_STREAM arrived */
    bool out_eof : 1;       /* shutdown_write: END_STREAM after out */
    bool data_item : 1;     /* nghttp2 holds a DATA item pulling from out */
    bool write_blocked : 1; /* write returned -EAGAIN: owe a VEIL_L4_WRITE */
    bool rst_sent : 1;
    bool bad : 1; /* server: request refused by hbone itself */
    bool reason_owned : 1;
    bool xhdr_dropped : 1; /* server: a header past the bounds was not kept */
    /* server: the request's headers */
    bool method_connect : 1, method_seen : 1, has_scheme_or_path : 1, authority_bad : 1;
};

struct hbone_h2c {
    struct veil_tls_conn tls;
    struct veil_loop *loop;
    bool is_server;
    struct veil_hbone_server *srv;
    struct veil_hbone_pool *pool;
    const struct veil_hbone_limits *lim;
    _Atomic uint64_t *stats;
    struct hbone_h2c *prev, *next; /* in the owner's list */
    nghttp2_session *ng;
    struct veil_hbone_h2s *streams; /* attached */
    struct veil_hbone_h2s *pending; /* client: waiting for READY (FIFO, tail insert) */
    uint32_t nstreams, npending;
    enum h2c_state state;
    bool goaway;              /* no new streams */
    struct veil_timer timer;  /* handshake deadline, then idle */
    struct veil_timer trim_t; /* frees empty stream and TLS buffers (HBONE_TRIM_MS) */
    struct veil_defer kick_d, free_d;
    struct sockaddr_storage peer, local;
    socklen_t peer_len, local_len;
    char name[INET6_ADDRSTRLEN + 8];
    char peer_id[VEIL_SPIFFE_ID_MAX + 1];
    /* client */
    char *key;
    char *server_id;
    char err[HBONE_ERR_MAX];
};

/* ---- h2c.c ---- */
void hbone__stat(_Atomic uint64_t *stats, enum hbone_stat s, int64_t n);
void hbone__stats_read(_Atomic uint64_t *const stats, struct veil_hbone_stats *out);
void hbone__name(const struct sockaddr_storage *ss, char *buf, size_t n);
/* Queues a flush of the h2c at the end of the iteration. */
void hbone__kick(struct hbone_h2c *c);
/* Flushes now; closes the h2c if it failed or is finished. */
void hbone__after(struct hbone_h2c *c);
/* Reads and feeds nghttp2 until -EAGAIN; closes on failure. false if closed. */
bool hbone__read(struct hbone_h2c *c);
/* Closes the h2c now (not from an nghttp2 callback): streams are detached
 * and told; memory freed at the end of the iteration. */
void hbone__close(struct hbone_h2c *c, const char *reason);
/* The owner goes away: GOAWAY (best effort) then hbone__close(). */
void hbone__shutdown(struct hbone_h2c *c, const char *reason);
/* After the handshake: the nghttp2 session of c's side, our SETTINGS and
 * connection window queued, c READY and its deadline stopped. 0, or -1 with
 * c->err set. */
int hbone__session_start(struct hbone_h2c *c);
void hbone__limits(struct veil_hbone_limits *l, const struct veil_hbone_limits *in);
/* Starts or stops the idle timer depending on whether streams are open. */
void hbone__idle_check(struct hbone_h2c *c);
/* Starts the handshake deadline (limits.handshake_ms). */
void hbone__deadline(struct hbone_h2c *c);

/* Streams */
struct veil_hbone_h2s *hbone__h2s_new(struct veil_loop *loop, const struct veil_hbone_limits *lim);
void hbone__h2s_attach(struct hbone_h2c *c, struct veil_hbone_h2s *s, int32_t id);
/* Queues delivery of `ev` (or the phase change) to the stream's user. */
void hbone__h2s_queue(struct veil_hbone_h2s *s, uint32_t ev);
/* The application lets go of the handle. */
void hbone__h2s_release(struct veil_hbone_h2s *s);
void hbone__h2s_reset(struct veil_hbone_h2s *s, uint32_t code);
/* Server: the answer's HEADERS (200 leaves the stream open, others end it). */
int hbone__h2s_submit_response(struct veil_hbone_h2s *s, int status);
/* Client: the connect failed with `why` (copied unless `is_static`); the
 * callback is queued. */
void hbone__h2s_fail(struct veil_hbone_h2s *s, const char *why, bool is_static);
/* headers.c: the extra headers of a stream (xhdr). */
/* Client: copies n checked headers into s. 0, -EINVAL, -ENOMEM. */
int hbone__xhdr_set(struct veil_hbone_h2s *s, const struct veil_hbone_header *h, size_t n);
/* Server: keeps one received header if it fits the bounds (else marks
 * xhdr_dropped). 0 or -ENOMEM. */
int hbone__xhdr_add(struct veil_hbone_h2s *s, const uint8_t *name, size_t namelen,
                    const uint8_t *value, size_t valuelen);
/* Points out[] (VEIL_HBONE_HEADERS_MAX entries) at s's headers; the count. */
size_t hbone__xhdr_list(const struct veil_hbone_h2s *s, struct veil_hbone_header *out);
void hbone__xhdr_free(struct veil_hbone_h2s *s);
/* Set by server.c / pool.c: runs a stream's phase change from defer_d. */
void hbone__server_dispatch(struct veil_hbone_h2s *s);
void hbone__client_dispatch(struct veil_hbone_h2s *s);
/* Side-specific hooks called by h2c.c. */
void hbone__server_headers_done(struct veil_hbone_h2s *s);
void hbone__client_headers_done(struct veil_hbone_h2s *s);
void hbone__client_closed(struct hbone_h2c *c);
void hbone__server_closed(struct hbone_h2c *c);
extern const struct veil_l4_end_ops hbone__end_ops;

#endif
