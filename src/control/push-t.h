/* Types of the control plane's push protocol; see push.h, push_client.h and
 * docs/protocol.md. */
#ifndef VEIL_CONTROL_PUSH_T_H
#define VEIL_CONTROL_PUSH_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VEIL_PUSH_PORT             15012
#define VEIL_PUSH_BODY_MAX         (1024 * 1024)      /* join / certificates request body */
#define VEIL_PUSH_LINE_MAX         (64 * 1024)        /* one watch message from a client */
#define VEIL_PUSH_PENDING_MAX      (64 * 1024 * 1024) /* updates queued per subscriber */
#define VEIL_PUSH_PING_MS          15000
#define VEIL_PUSH_HANDSHAKE_MS     10000
#define VEIL_PUSH_MAX_CONNECTIONS  4096
#define VEIL_PUSH_MAX_STREAMS      100
#define VEIL_PUSH_CONTROL_PATH     "/veil/control" /* the server's SPIFFE ID path */
#define VEIL_PUSH_TOKEN_SECRET_MAX 256

/*
 * What the push server serves, implemented by the control plane's views.
 * All functions run on the server's loop thread.
 *
 * subscribe: a node (or an observer) subscribes from `version` (0: it has
 *   nothing). Returns 0 and sets *sub (the provider's handle for this
 *   subscriber) and *update_json (the first update: a JSON object without a
 *   trailing newline, allocated with veil_malloc and freed by the server, or
 *   NULL if nothing is due), or -errno to refuse the subscription.
 * poll: the next update due to `sub` (veil_malloc'd, freed by the server) or
 *   NULL when it is up to date. Called after veil_push_server_notify() and
 *   after subscribe until it returns NULL.
 * ack / nack: the subscriber applied (refused, with its reason) `version`.
 * unsubscribe: the stream is gone; `sub` is not used again.
 * may_have: whether `node` runs a workload with identity ns/sa (the
 *   certificate policy). NULL refuses every workload certificate.
 */
struct veil_push_provider {
    void *ctx;
    int (*subscribe)(void *ctx, const char *node, uint64_t version, bool observer, void **sub,
                     char **update_json);
    int (*poll)(void *sub, char **update_json);
    void (*ack)(void *sub, uint64_t version);
    void (*nack)(void *sub, uint64_t version, const char *reason);
    void (*unsubscribe)(void *sub);
    bool (*may_have)(void *ctx, const char *node, const char *ns, const char *sa);
};

/* Limits of the server; 0 takes the default named in the comment. */
struct veil_push_limits {
    size_t max_body;        /* VEIL_PUSH_BODY_MAX */
    size_t max_line;        /* VEIL_PUSH_LINE_MAX */
    size_t max_pending;     /* VEIL_PUSH_PENDING_MAX */
    uint64_t ping_ms;       /* VEIL_PUSH_PING_MS */
    uint64_t handshake_ms;  /* VEIL_PUSH_HANDSHAKE_MS */
    size_t max_connections; /* VEIL_PUSH_MAX_CONNECTIONS */
    uint32_t max_streams;   /* VEIL_PUSH_MAX_STREAMS, per connection */
};

struct veil_ca;
struct veil_metrics;

struct veil_push_server_opts {
    const char *bind;   /* numeric IPv4 or IPv6 address; NULL: "0.0.0.0" */
    uint16_t port;      /* 0: an ephemeral port (see veil_push_server_port()) */
    struct veil_ca *ca; /* required; signs node and workload certificates */
    /* The join secret (1 to VEIL_PUSH_TOKEN_SECRET_MAX bytes, no '.'); NULL
     * turns /v1/join off. The token people type is
     * veil_push_server_join_token(). */
    const char *join_token;
    struct veil_push_provider provider; /* subscribe, poll, unsubscribe required */
    struct veil_push_limits limits;
    /* The server's own certificate (leaf + chain) and key, PEM. NULL (both):
     * the server issues itself spiffe://<td>/veil/control from `ca` and
     * renews it at half-life. */
    const char *cert_pem;
    const char *key_pem;
    long cert_lifetime_s; /* issued node and workload certificates; 0: the CA's default */
    /* If set, the server registers its counters there (veil_push_*). The
     * registry must outlive the server. */
    struct veil_metrics *metrics;
};

/* Counters since veil_push_server_new(); read with veil_push_server_stats(). */
struct veil_push_stats {
    uint64_t connections_total;  /* accepted TCP connections */
    uint64_t connections;        /* open now */
    uint64_t handshake_failures; /* TLS refused: garbage, bad or expired certificate, ALPN */
    uint64_t subscribers;        /* watch streams subscribed now */
    uint64_t updates_pushed;     /* update lines queued to subscribers */
    uint64_t joins_issued;
    uint64_t joins_refused;
    uint64_t certs_issued;
    uint64_t certs_refused;
    uint64_t unauthorized;     /* requests refused with 401 (no node certificate) */
    uint64_t bad_input;        /* bad HTTP/2, oversized bodies, malformed JSON */
    uint64_t slow_disconnects; /* subscribers dropped for exceeding max_pending */
};

/* ---- client ---- */

struct veil_push_client; /* opaque */

struct veil_push_client_opts {
    const char *addr; /* numeric IPv4 or IPv6 address */
    uint16_t port;    /* 0: VEIL_PUSH_PORT */
    /* Our certificate (leaf + chain) and key, PEM; NULL for join. */
    const char *cert_pem;
    const char *key_pem;
    /* How the server is verified: its chain against trust_bundle_pem, or,
     * with no bundle (joining), against the root whose certificate DER has
     * SHA-256 root_pin (64 hex digits). */
    const char *trust_bundle_pem;
    const char *root_pin;
    /* The server's expected URI SAN; NULL accepts any
     * spiffe://<td>/veil/control. */
    const char *server_id;
    uint64_t ping_ms;    /* 0: VEIL_PUSH_PING_MS; the client pings too */
    uint64_t timeout_ms; /* connect + handshake, and the blocking calls; 0: 10 s */
};

#endif
