/* Types of the HBONE transport; see hbone.h for the contract. */
#ifndef VEIL_HBONE_HBONE_T_H
#define VEIL_HBONE_HBONE_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define VEIL_HBONE_PORT 15008

/* Defaults of struct veil_hbone_limits (a zero field takes its default). */
#define VEIL_HBONE_MAX_STREAMS   100               /* concurrent streams per h2c */
#define VEIL_HBONE_MAX_HEADERS   16384             /* bytes of a header block */
#define VEIL_HBONE_STREAM_WINDOW (256 * 1024)      /* per-stream receive buffer/window */
#define VEIL_HBONE_CONN_WINDOW   (4 * 1024 * 1024) /* connection receive window */
#define VEIL_HBONE_STREAM_OUT    (64 * 1024)       /* per-stream send buffer */
#define VEIL_HBONE_HANDSHAKE_MS  10000             /* TCP connect + TLS handshake */
#define VEIL_HBONE_IDLE_MS       60000             /* an h2c with no stream closes */
#define VEIL_HBONE_AUTHORITY_MAX 64                /* "[v6]:port" fits */
/* Extra (non-pseudo) request headers of a CONNECT: at most this many, with
 * names and values together at most this many bytes. A dial over either
 * bound is refused; a server keeps the first ones that fit (docs/hbone.md). */
#define VEIL_HBONE_HEADERS_MAX   8
#define VEIL_HBONE_HEADERS_BYTES 2048
/* The header a waypoint's CONNECT carries to the destination: the original
 * caller's SPIFFE ID. Trusted only from a waypoint (docs/hbone.md). */
#define VEIL_HBONE_SOURCE_PRINCIPAL "x-veil-source-principal"

/* Limits of a server or a pool. */
struct veil_hbone_limits {
    uint32_t max_streams;   /* SETTINGS_MAX_CONCURRENT_STREAMS we announce (server) or
                             * use per h2c at most (pool) */
    uint32_t max_headers;   /* SETTINGS_MAX_HEADER_LIST_SIZE */
    uint32_t stream_window; /* SETTINGS_INITIAL_WINDOW_SIZE, and the per-stream
                             * receive buffer: at most this many bytes wait in a stream */
    uint32_t conn_window;   /* the connection-level receive window */
    uint32_t stream_out;    /* bytes a stream holds for sending */
    uint64_t handshake_ms;  /* deadline for TCP connect (pool) and TLS handshake */
    uint64_t idle_ms;       /* an h2c without streams for this long is closed */
};

/*
 * Counters of a server or a pool (veil_hbone_server_stats(),
 * veil_hbone_pool_stats()). "Total" counters only grow; the others are
 * gauges. A field that does not apply to a side stays 0.
 */
struct veil_hbone_stats {
    uint64_t connections_total;  /* h2c accepted (server) or dialled (pool) */
    uint64_t connections;        /* h2c open now */
    uint64_t connect_failures;   /* pool: TCP connect failed or timed out */
    uint64_t handshake_failures; /* TLS refused, timed out, no ALPN h2, no SPIFFE ID */
    uint64_t identity_mismatch;  /* pool: server certificate not the expected SPIFFE ID */
    uint64_t protocol_errors;    /* bad HTTP/2: connection closed */
    uint64_t streams_total;      /* server: CONNECTs passed to on_connect; pool:
                                  * CONNECTs sent */
    uint64_t streams;            /* streams open now */
    uint64_t streams_ok;         /* answered 200 */
    uint64_t streams_refused;    /* answered non-200 by the application (server) or
                                  * the server (pool) */
    uint64_t bad_requests;       /* server: malformed CONNECT answered 400 by hbone */
    uint64_t streams_reset;      /* streams reset by the peer before their end */
    uint64_t pool_reuses;        /* pool: streams put on an h2c already open */
};

/* An HBONE server: the h2c accepted on one listener (one identity). Opaque. */
struct veil_hbone_server;

/* One HTTP/2 stream (a tunnel), client or server side. Opaque. */
struct veil_hbone_h2s;

/* A client connection pool. Opaque. */
struct veil_hbone_pool;

/* One extra request header of a CONNECT: a lower-case token name (not a
 * pseudo-header, not a connection-specific one: connection, keep-alive,
 * proxy-connection, transfer-encoding, upgrade, te, host) and a value
 * without CR, LF, NUL or other control characters (HTAB allowed) and
 * without leading or trailing blanks. */
struct veil_hbone_header {
    const char *name, *value;
};

/* What on_connect learns about one CONNECT. Valid during the call only. */
struct veil_hbone_connect_info {
    const char *authority;      /* "ip:port" as sent, validated */
    const struct sockaddr *dst; /* the authority parsed (sockaddr_in or _in6) */
    socklen_t dst_len;
    const char *peer_id;         /* the client certificate's SPIFFE ID */
    const struct sockaddr *peer; /* the TCP peer of the h2c */
    socklen_t peer_len;
    const struct sockaddr *local; /* our address of the h2c (getsockname) */
    socklen_t local_len;
    /* The request's other headers, in the order received: at most
     * VEIL_HBONE_HEADERS_MAX of them, VEIL_HBONE_HEADERS_BYTES together
     * (names and values); those past the bounds are not kept and
     * headers_dropped says so. Look one up with veil_hbone_connect_header(). */
    const struct veil_hbone_header *headers;
    size_t nheaders;
    bool headers_dropped;
};

/* Callbacks of a server. */
struct veil_hbone_server_cbs {
    /* A valid CONNECT arrived on `h2s`; answer it with veil_hbone_h2s_respond(),
     * now or later. Required. */
    void (*on_connect)(struct veil_hbone_h2s *h2s, const struct veil_hbone_connect_info *info,
                       void *arg);
};

/* Options of veil_hbone_server_new(). */
struct veil_hbone_server_opts {
    /* A server context (role VEIL_TLS_SERVER, require_client_cert = true,
     * the workload's certificate, the trust bundle). Borrowed: it must
     * outlive the server or be replaced with veil_hbone_server_set_tls(). */
    struct veil_tls_ctx *tls;
    struct veil_hbone_server_cbs cbs;
    void *arg;
    struct veil_hbone_limits limits;
    const char *name; /* for logs, e.g. the pod; copied; NULL: "hbone" */
};

/* Options of veil_hbone_pool_new(). */
struct veil_hbone_pool_opts {
    struct veil_hbone_limits limits;
};

/*
 * Where and how to dial one stream (veil_hbone_pool_connect()). The strings
 * are copied; `tls` is borrowed and must live until every h2c made with it
 * is closed (pool free, or idle). Everything but `authority` must be the
 * same for every dial with the same `key`.
 */
struct veil_hbone_dial {
    /* The pool key: dials with equal keys share h2c. The caller's choice,
     * e.g. "<source identity>|<source pod>|<dst ip>:15008". */
    const char *key;
    struct veil_tls_ctx *tls;   /* client context: source workload cert + trust bundle */
    const struct sockaddr *dst; /* the HBONE peer: pod or waypoint address, port 15008 */
    socklen_t dst_len;
    const char *authority; /* the tunnel's destination, "ip:port" (":authority") */
    const char *server_id; /* the SPIFFE ID the server's certificate must carry */
    /* Extra request headers of this stream's CONNECT (copied; may differ
     * from one dial of a key to the next): at most VEIL_HBONE_HEADERS_MAX,
     * VEIL_HBONE_HEADERS_BYTES together, each valid (struct
     * veil_hbone_header), else the dial fails with EINVAL. */
    const struct veil_hbone_header *headers;
    size_t nheaders;
    /* Makes a non-blocking TCP socket of dst's family (e.g. inside a pod's
     * network namespace, with a mark): an fd, or -errno. NULL: socket(). */
    int (*make_socket)(int family, void *arg);
    void *make_socket_arg;
};

/*
 * The answer to a dial, once: on 200, h2s is the open tunnel (take its end
 * with veil_hbone_h2s_end()), status 200 and err NULL. Otherwise h2s is NULL
 * and either status is the server's non-200 answer (401, 403, 503, ...; err
 * names it, e.g. "HTTP 503") or status is 0 and err says what failed
 * ("connect: Connection refused", "TLS handshake: ...", "wrong server
 * identity", "stream reset", "pool closed", ...). err is a static string or
 * one valid during the call only.
 */
typedef void (*veil_hbone_connect_cb)(struct veil_hbone_h2s *h2s, int status, const char *err,
                                      void *arg);

#endif
