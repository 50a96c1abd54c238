/* Types of the TLS module; see tls.h for the contract. */
#ifndef VEIL_TLS_TLS_T_H
#define VEIL_TLS_TLS_T_H

#include "core/buf-t.h"
#include "core/loop-t.h"

#include <stdbool.h>
#include <stdint.h>

#include <openssl/types.h>

/* Bytes of TLS output a connection holds while the socket cannot take them. */
#define VEIL_TLS_OUT_MAX (1024 * 1024)
/* Plaintext shorter than this is gathered and sealed with what follows (one
 * record for a burst of small HTTP/2 frames); longer is sealed at once. */
#define VEIL_TLS_GATHER 4096
/* What one socket read asks for (OpenSSL reads ahead: several records per
 * read; the buffer is released while the connection is idle). */
#define VEIL_TLS_READ_BUF (64 * 1024)
/* Length of a root pin: SHA-256 of the root certificate's DER, in hex. */
#define VEIL_TLS_PIN_HEX_LEN 64

enum veil_tls_role {
    VEIL_TLS_SERVER = 1,
    VEIL_TLS_CLIENT = 2,
};

/* Options of veil_tls_ctx_new(). The strings are read during the call only. */
struct veil_tls_ctx_opts {
    enum veil_tls_role role;
    /* Our certificate: the leaf then its chain (PEM), and its private key.
     * Required for a server; optional for a client (no client certificate). */
    const char *cert_pem;
    const char *key_pem;
    /* The roots the peer's chain must verify against (PEM). A client needs
     * this or root_pin; a server without it accepts no client certificate. */
    const char *trust_bundle_pem;
    /* Client only, used when trust_bundle_pem is NULL: 64 hex digits, the
     * SHA-256 of the DER of the root the server's chain must end in. The
     * server must send that root in its chain (extra_chain_pem). */
    const char *root_pin;
    /* Server only: more certificates to send after cert_pem's chain (the
     * trust bundle's roots, so that pinning clients can find theirs). */
    const char *extra_chain_pem;
    /* Server only: refuse a handshake without a client certificate. When
     * false a client certificate is asked for but optional (one that is sent
     * must still verify). */
    bool require_client_cert;
    /* Keep OpenSSL's record buffers (about 34 KiB) between reads and
     * writes instead of freeing them after each (SSL_MODE_RELEASE_BUFFERS,
     * the default): saves an allocation and a free per record on a busy
     * connection; the owner calls veil_tls_release() once it is idle. */
    bool hold_buffers;
};

/* An SSL_CTX with veil's settings: TLS 1.3 only, ALPN "h2". */
struct veil_tls_ctx {
    SSL_CTX *_ssl_ctx;
    enum veil_tls_role _role;
    bool _pinned;
    unsigned char _pin[32];
};

/*
 * One TLS connection on a non-blocking socket watched by a veil_io. The
 * owner embeds it, sets it up with veil_tls_conn_init() and gets the io
 * callbacks (find the owner with VEIL_CONTAINER_OF(io, ..., tls.io)).
 */
struct veil_tls_conn {
    struct veil_io io; /* the owner's callback runs on it (through ours) */
    veil_io_cb _cb;    /* the owner's callback */
    SSL *_ssl;
    int _fd;
    bool _open; /* set up by veil_tls_conn_init(), not yet closed */
    bool _established;
    bool _failed;
    bool _rd_empty;        /* the socket had no more bytes since the io last fired */
    uint32_t _events;      /* VEIL_IO_* the io watches */
    const char *_reason;   /* why it failed (OpenSSL's static string), or NULL */
    struct veil_buf _out;  /* plaintext waiting to be sealed (small, or before the handshake) */
    struct veil_buf _wire; /* sealed records waiting for the socket */
};

#endif
