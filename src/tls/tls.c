/* TLS contexts and non-blocking connections; see tls.h. */
#include "tls/tls.h"

#include "core/alloc.h"
#include "core/buf.h"
#include "core/container.h"
#include "core/loop.h"
#include "core/sock.h"
#include "tls/spiffe.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

static const unsigned char ALPN_H2[] = {2, 'h', '2'};

/* Writes fmt and OpenSSL's last reason (if any) into err; empties the queue. */
__attribute__((format(printf, 3, 4))) static void fail(char *err, size_t errlen, const char *fmt,
                                                       ...)
{
    unsigned long e = ERR_peek_last_error();
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        if (e != 0 && n >= 0 && (size_t)n < errlen) {
            const char *reason = ERR_reason_error_string(e);
            snprintf(err + n, errlen - (size_t)n, ": %s", reason != NULL ? reason : "TLS error");
        }
    }
    ERR_clear_error();
}

/* ---- contexts ---- */

static int load_chain(SSL_CTX *sc, const char *pem, bool first_is_leaf)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    if (bio == NULL)
        return -ENOMEM;
    int rc = 0, count = 0;
    X509 *x;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        int ok = (first_is_leaf && count == 0) ? SSL_CTX_use_certificate(sc, x)
                                               : SSL_CTX_add1_chain_cert(sc, x);
        X509_free(x);
        if (ok != 1) {
            rc = -EINVAL;
            break;
        }
        count++;
    }
    BIO_free(bio);
    if (rc == 0 && count == 0)
        rc = -EINVAL;
    ERR_clear_error(); /* the end of the PEM leaves a "no start line" error */
    return rc;
}

static int load_key(SSL_CTX *sc, const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    if (bio == NULL)
        return -ENOMEM;
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    BIO_free(bio);
    int rc =
        key != NULL && SSL_CTX_use_PrivateKey(sc, key) == 1 && SSL_CTX_check_private_key(sc) == 1
            ? 0
            : -EINVAL;
    EVP_PKEY_free(key);
    return rc;
}

static int load_bundle(SSL_CTX *sc, const char *pem)
{
    X509_STORE *store = SSL_CTX_get_cert_store(sc);
    BIO *bio = BIO_new_mem_buf(pem, -1);
    if (bio == NULL)
        return -ENOMEM;
    int count = 0, rc = 0;
    X509 *x;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (X509_STORE_add_cert(store, x) != 1)
            rc = -EINVAL;
        X509_free(x);
        count++;
    }
    BIO_free(bio);
    ERR_clear_error();
    return rc == 0 && count > 0 ? 0 : -EINVAL;
}

static int hex_to_bin(const char *hex, unsigned char *out, size_t n)
{
    if (hex == NULL || strlen(hex) != n * 2)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        for (int k = 0; k < 2; k++) {
            char ch = hex[i * 2 + (size_t)k];
            int d = ch >= '0' && ch <= '9'   ? ch - '0'
                    : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
                    : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
                                             : -1;
            if (d < 0)
                return -EINVAL;
            v = v * 16 + (unsigned)d;
        }
        out[i] = (unsigned char)v;
    }
    return 0;
}

static bool cert_matches_pin(X509 *x, const unsigned char pin[32])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    return X509_digest(x, EVP_sha256(), md, &len) == 1 && len == 32 &&
           CRYPTO_memcmp(md, pin, 32) == 0;
}

/* Verification for a client without a bundle: the pinned root must be among
 * the certificates the server sent, self-signed, and the chain must verify
 * against it alone. */
static int pin_verify(X509_STORE_CTX *xs, void *arg)
{
    const struct veil_tls_ctx *ctx = arg;
    STACK_OF(X509) *sent = X509_STORE_CTX_get0_untrusted(xs);
    X509 *root = NULL;
    for (int i = 0; sent != NULL && i < sk_X509_num(sent) && root == NULL; i++) {
        X509 *x = sk_X509_value(sent, i);
        if (cert_matches_pin(x, ctx->_pin) && X509_check_issued(x, x) == X509_V_OK)
            root = x;
    }
    if (root == NULL) {
        X509_STORE_CTX_set_error(xs, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
        return 0;
    }
    STACK_OF(X509) *trusted = sk_X509_new_null();
    if (trusted == NULL || sk_X509_push(trusted, root) <= 0) {
        sk_X509_free(trusted);
        X509_STORE_CTX_set_error(xs, X509_V_ERR_OUT_OF_MEM);
        return 0;
    }
    X509_STORE_CTX_set0_trusted_stack(xs, trusted);
    int ok = X509_verify_cert(xs);
    X509_STORE_CTX_set0_trusted_stack(xs, NULL);
    sk_X509_free(trusted);
    return ok == 1 ? 1 : 0;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    for (unsigned int i = 0; i < inlen;) {
        unsigned int n = in[i];
        if (i + 1 + n > inlen)
            break;
        if (n == 2 && memcmp(in + i + 1, "h2", 2) == 0) {
            *out = in + i + 1;
            *outlen = 2;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static int ctx_setup(struct veil_tls_ctx *ctx, const struct veil_tls_ctx_opts *o, char *err,
                     size_t errlen)
{
    SSL_CTX *sc = ctx->_ssl_ctx;
    bool server = o->role == VEIL_TLS_SERVER;
    if (SSL_CTX_set_min_proto_version(sc, TLS1_3_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(sc, TLS1_3_VERSION) != 1) {
        fail(err, errlen, "cannot restrict to TLS 1.3");
        return -EINVAL;
    }
    /* RELEASE_BUFFERS: an idle connection gives back its 34 KiB of record
     * buffers (thousands of idle proxies on the push port). Contexts that
     * hold them (HBONE) free them with veil_tls_release() when idle. */
    if (!o->hold_buffers)
        SSL_CTX_set_mode(sc, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_read_ahead(sc, 1);
    SSL_CTX_set_default_read_buffer_len(sc, VEIL_TLS_READ_BUF);
    SSL_CTX_set_options(sc, SSL_OP_NO_RENEGOTIATION);
    if (o->cert_pem != NULL || o->key_pem != NULL) {
        if (o->cert_pem == NULL || o->key_pem == NULL) {
            fail(err, errlen, "certificate and key go together");
            return -EINVAL;
        }
        if (load_chain(sc, o->cert_pem, true) != 0) {
            fail(err, errlen, "bad certificate PEM");
            return -EINVAL;
        }
        if (load_key(sc, o->key_pem) != 0) {
            fail(err, errlen, "bad private key, or it does not match the certificate");
            return -EINVAL;
        }
    } else if (server) {
        fail(err, errlen, "a server needs a certificate and key");
        return -EINVAL;
    }
    if (server && o->extra_chain_pem != NULL && load_chain(sc, o->extra_chain_pem, false) != 0) {
        fail(err, errlen, "bad extra chain PEM");
        return -EINVAL;
    }
    if (o->trust_bundle_pem != NULL && load_bundle(sc, o->trust_bundle_pem) != 0) {
        fail(err, errlen, "bad trust bundle PEM");
        return -EINVAL;
    }
    if (server) {
        SSL_CTX_set_alpn_select_cb(sc, alpn_select, NULL);
        SSL_CTX_set_num_tickets(sc, 0);
        SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_OFF);
        int mode = SSL_VERIFY_NONE;
        if (o->trust_bundle_pem != NULL)
            mode = SSL_VERIFY_PEER | (o->require_client_cert ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0);
        SSL_CTX_set_verify(sc, mode, NULL);
        return 0;
    }
    if (SSL_CTX_set_alpn_protos(sc, ALPN_H2, sizeof(ALPN_H2)) != 0) {
        fail(err, errlen, "cannot set ALPN");
        return -ENOMEM;
    }
    if (o->trust_bundle_pem == NULL) {
        if (hex_to_bin(o->root_pin, ctx->_pin, sizeof(ctx->_pin)) != 0) {
            fail(err, errlen, "a client needs a trust bundle or a root pin of 64 hex digits");
            return -EINVAL;
        }
        ctx->_pinned = true;
        SSL_CTX_set_cert_verify_callback(sc, pin_verify, ctx);
    }
    SSL_CTX_set_verify(sc, SSL_VERIFY_PEER, NULL);
    return 0;
}

struct veil_tls_ctx *veil_tls_ctx_new(const struct veil_tls_ctx_opts *opts, char *err,
                                      size_t errlen)
{
    if (opts == NULL || (opts->role != VEIL_TLS_SERVER && opts->role != VEIL_TLS_CLIENT)) {
        fail(err, errlen, "bad TLS options");
        errno = EINVAL;
        return NULL;
    }
    struct veil_tls_ctx *ctx = veil_calloc(1, sizeof(*ctx));
    if (ctx == NULL) {
        fail(err, errlen, "out of memory");
        return NULL;
    }
    ctx->_role = opts->role;
    ctx->_ssl_ctx =
        SSL_CTX_new(opts->role == VEIL_TLS_SERVER ? TLS_server_method() : TLS_client_method());
    if (ctx->_ssl_ctx == NULL) {
        fail(err, errlen, "SSL_CTX_new failed");
        veil_free(ctx);
        errno = ENOMEM;
        return NULL;
    }
    int rc = ctx_setup(ctx, opts, err, errlen);
    if (rc != 0) {
        veil_tls_ctx_free(ctx);
        errno = -rc;
        return NULL;
    }
    return ctx;
}

void veil_tls_ctx_free(struct veil_tls_ctx *ctx)
{
    if (ctx == NULL)
        return;
    SSL_CTX_free(ctx->_ssl_ctx);
    veil_free(ctx);
}

int veil_tls_cert_pin(const char *pem, char *hex, size_t hexlen)
{
    if (pem == NULL || hexlen < VEIL_TLS_PIN_HEX_LEN + 1)
        return -EINVAL;
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    int rc = x != NULL && X509_digest(x, EVP_sha256(), md, &len) == 1 && len == 32 ? 0 : -EINVAL;
    X509_free(x);
    ERR_clear_error();
    if (rc == 0)
        for (unsigned int i = 0; i < len; i++)
            snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return rc;
}

/* ---- connections ---- */

/*
 * The socket under OpenSSL is our own BIO: reads go to the socket (OpenSSL
 * reads ahead, so one recv brings several records), and a short read or
 * EAGAIN marks the socket empty until the io fires again, so that no read
 * is tried just to learn that nothing is there. Writes never block: sealed
 * records gather in _wire and go out in one send per flush.
 */

static BIO_METHOD *wire_method;
static pthread_once_t wire_once = PTHREAD_ONCE_INIT;

static int wire_read(BIO *b, char *buf, size_t n, size_t *got)
{
    struct veil_tls_conn *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    *got = 0;
    for (;;) {
        ssize_t r = recv(c->_fd, buf, n, 0);
        if (r > 0) {
            if ((size_t)r < n)
                c->_rd_empty = true;
            *got = (size_t)r;
            return 1;
        }
        if (r == 0) {
            BIO_set_flags(b, BIO_FLAGS_IN_EOF);
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->_rd_empty = true;
            BIO_set_retry_read(b);
        }
        return 0;
    }
}

static int wire_write(BIO *b, const char *data, size_t n, size_t *put)
{
    struct veil_tls_conn *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    *put = 0;
    if (veil_buf_append(&c->_wire, data, n) != 0)
        return 0;
    *put = n;
    return 1;
}

static long wire_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_EOF:
        return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
    case BIO_CTRL_WPENDING: {
        const struct veil_tls_conn *c = BIO_get_data(b);
        return (long)veil_buf_len(&c->_wire);
    }
    default:
        return 0;
    }
}

static int wire_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void wire_method_make(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "veil socket");
    if (m != NULL &&
        (BIO_meth_set_read_ex(m, wire_read) != 1 || BIO_meth_set_write_ex(m, wire_write) != 1 ||
         BIO_meth_set_ctrl(m, wire_ctrl) != 1 || BIO_meth_set_create(m, wire_create) != 1)) {
        BIO_meth_free(m);
        m = NULL;
    }
    wire_method = m;
}

/* Sends what _wire holds until it is empty or the socket is full. */
static int wire_push(struct veil_tls_conn *c)
{
    while (!veil_buf_is_empty(&c->_wire)) {
        size_t n = veil_buf_len(&c->_wire);
        ssize_t r = send(c->_fd, veil_buf_data(&c->_wire), n, MSG_NOSIGNAL);
        if (r > 0) {
            veil_buf_consume(&c->_wire, (size_t)r);
            if ((size_t)r < n)
                break; /* full: the io says when it can take more */
            continue;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        c->_failed = true;
        c->_reason = "connection reset";
        return -ECONNRESET;
    }
    return 0;
}

static void update_events(struct veil_tls_conn *c)
{
    if (!veil_io_is_active(&c->io))
        return;
    uint32_t ev = VEIL_IO_READ;
    if (!veil_buf_is_empty(&c->_wire))
        ev |= VEIL_IO_WRITE;
    if (ev != c->_events && veil_io_modify(&c->io, ev) == 0)
        c->_events = ev;
}

static void tls_io(struct veil_io *io, uint32_t events)
{
    struct veil_tls_conn *c = VEIL_CONTAINER_OF(io, struct veil_tls_conn, io);
    if (events & (VEIL_IO_READ | VEIL_IO_ERROR))
        c->_rd_empty = false;
    c->_cb(io, events);
}

int veil_tls_conn_init(struct veil_tls_conn *c, struct veil_tls_ctx *ctx, struct veil_loop *loop,
                       int fd, veil_io_cb cb)
{
    c->_fd = -1;
    c->_open = false;
    c->_cb = cb;
    veil_sock_nodelay(fd);
    veil_buf_init(&c->_out, VEIL_TLS_OUT_MAX);
    veil_buf_init(&c->_wire, 2 * VEIL_TLS_OUT_MAX);
    pthread_once(&wire_once, wire_method_make);
    BIO *bio = wire_method != NULL ? BIO_new(wire_method) : NULL;
    c->_ssl = bio != NULL ? SSL_new(ctx->_ssl_ctx) : NULL;
    if (c->_ssl == NULL) {
        ERR_clear_error();
        BIO_free(bio);
        close(fd);
        return -ENOMEM;
    }
    BIO_set_data(bio, c);
    SSL_set_bio(c->_ssl, bio, bio);
    if (ctx->_role == VEIL_TLS_SERVER)
        SSL_set_accept_state(c->_ssl);
    else
        SSL_set_connect_state(c->_ssl);
    c->_fd = fd;
    c->_open = true;
    c->_events = VEIL_IO_READ | VEIL_IO_WRITE;
    int rc = veil_io_start(loop, &c->io, fd, VEIL_IO_READ | VEIL_IO_WRITE, tls_io);
    if (rc != 0) {
        veil_tls_conn_close(c);
        return rc;
    }
    return 0;
}

void veil_tls_conn_close(struct veil_tls_conn *c)
{
    veil_io_stop(&c->io);
    if (!c->_open)
        return;
    c->_open = false;
    if (c->_ssl != NULL) {
        SSL_free(c->_ssl);
        c->_ssl = NULL;
    }
    if (c->_fd >= 0) {
        close(c->_fd);
        c->_fd = -1;
    }
    veil_buf_free(&c->_out);
    veil_buf_free(&c->_wire);
}

/*
 * SSL_get_error() needs the thread's error queue empty before the call.
 * Every path of ours that leaves errors clears them, so the queue is
 * cleared only when something else left one: peeking costs a fraction of
 * ERR_clear_error(), which was 4.5% of the waypoint's instructions per
 * request when called before every SSL_read() and SSL_write() (callgrind).
 */
static void err_ready(void)
{
    if (ERR_peek_error() != 0)
        ERR_clear_error();
}

/* Maps an SSL_get_error() result. */
static int ssl_result(struct veil_tls_conn *c, int ret)
{
    int e = SSL_get_error(c->_ssl, ret);
    switch (e) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        return -EAGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        c->_failed = true;
        c->_reason = "connection reset";
        return -ECONNRESET;
    default:
        c->_failed = true;
        c->_reason = ERR_reason_error_string(ERR_peek_last_error());
        if (c->_reason == NULL)
            c->_reason = "TLS error";
        return -EPROTO;
    }
}

/* Seals `n` bytes into records in _wire (the BIO takes everything). */
static int seal(struct veil_tls_conn *c, const void *data, size_t n)
{
    while (n > 0) {
        int chunk = n > INT_MAX ? INT_MAX : (int)n;
        err_ready();
        int ret = SSL_write(c->_ssl, data, chunk);
        if (ret <= 0) {
            int rc = ssl_result(c, ret);
            ERR_clear_error();
            if (!c->_failed) {
                c->_failed = true;
                c->_reason = "TLS write failed";
            }
            return rc == -ECONNRESET ? rc : -EPROTO;
        }
        data = (const char *)data + ret;
        n -= (size_t)ret;
    }
    return 0;
}

/* Seals the gathered plaintext, once the handshake is done. */
static int seal_out(struct veil_tls_conn *c)
{
    if (!c->_established || veil_buf_is_empty(&c->_out))
        return 0;
    int rc = seal(c, veil_buf_data(&c->_out), veil_buf_len(&c->_out));
    veil_buf_consume(&c->_out, veil_buf_len(&c->_out));
    return rc;
}

int veil_tls_handshake(struct veil_tls_conn *c, char *err, size_t errlen)
{
    if (c->_established)
        return 0;
    if (c->_ssl == NULL || c->_failed) {
        fail(err, errlen, "connection failed");
        return -EPROTO;
    }
    err_ready();
    int ret = SSL_do_handshake(c->_ssl);
    if (ret == 1) {
        c->_established = true;
        int rc = seal_out(c);
        if (rc == 0)
            rc = wire_push(c);
        update_events(c);
        if (rc != 0)
            fail(err, errlen, "connection lost after the TLS handshake");
        return rc;
    }
    int rc = ssl_result(c, ret);
    if (rc == -EAGAIN) {
        rc = wire_push(c);
        update_events(c);
        if (rc != 0)
            fail(err, errlen, "TLS handshake failed: connection reset");
        return rc != 0 ? rc : -EAGAIN;
    }
    long vr = SSL_get_verify_result(c->_ssl);
    if (vr != X509_V_OK)
        fail(err, errlen, "TLS handshake failed: peer certificate: %s",
             X509_verify_cert_error_string(vr));
    else
        fail(err, errlen, "TLS handshake failed");
    /* Our alert, if OpenSSL made one, is worth a try. */
    wire_push(c);
    return rc == 0 ? -ECONNRESET : rc;
}

ssize_t veil_tls_read(struct veil_tls_conn *c, void *buf, size_t n)
{
    if (c->_ssl == NULL || c->_failed)
        return -EPROTO;
    if (c->_rd_empty && !SSL_has_pending(c->_ssl))
        return -EAGAIN;
    err_ready();
    int ret = SSL_read(c->_ssl, buf, n > INT_MAX ? INT_MAX : (int)n);
    /* Reading may have produced records of ours (alerts, key updates). */
    if (!veil_buf_is_empty(&c->_wire) && wire_push(c) != 0)
        return -ECONNRESET;
    if (ret > 0)
        return ret;
    int rc = ssl_result(c, ret);
    err_ready();
    update_events(c);
    return rc;
}

int veil_tls_send(struct veil_tls_conn *c, const void *data, size_t n)
{
    if (veil_tls_out_len(c) + n > VEIL_TLS_OUT_MAX)
        return -ENOBUFS;
    if (!c->_established || n < VEIL_TLS_GATHER)
        return veil_buf_append(&c->_out, data, n);
    int rc = seal_out(c);
    return rc != 0 ? rc : seal(c, data, n);
}

void veil_tls_trim(struct veil_tls_conn *c)
{
    /* A small allocation stays: a connection that carries one request at
     * a time would otherwise allocate both buffers again for each. */
    if (veil_buf_alloc_size(&c->_out) > VEIL_TLS_GATHER)
        veil_buf_trim(&c->_out);
    if (veil_buf_alloc_size(&c->_wire) > VEIL_TLS_GATHER)
        veil_buf_trim(&c->_wire);
}

void veil_tls_release(struct veil_tls_conn *c)
{
    veil_tls_trim(c);
    if (c->_ssl != NULL)
        (void)SSL_free_buffers(c->_ssl); /* 0: a record is pending, kept */
}

size_t veil_tls_out_len(const struct veil_tls_conn *c)
{
    return veil_buf_len(&c->_out) + veil_buf_len(&c->_wire);
}

int veil_tls_flush(struct veil_tls_conn *c)
{
    if (c->_ssl == NULL || c->_failed)
        return -EPROTO;
    int rc = seal_out(c);
    if (rc == 0)
        rc = wire_push(c);
    update_events(c);
    return c->_failed ? (rc != 0 ? rc : -ECONNRESET) : 0;
}

const char *veil_tls_error(const struct veil_tls_conn *c)
{
    return c->_reason != NULL ? c->_reason : "connection failed";
}

bool veil_tls_alpn_is_h2(const struct veil_tls_conn *c)
{
    const unsigned char *p = NULL;
    unsigned int n = 0;
    if (c->_ssl == NULL)
        return false;
    SSL_get0_alpn_selected(c->_ssl, &p, &n);
    return n == 2 && memcmp(p, "h2", 2) == 0;
}

int veil_tls_peer_id(const struct veil_tls_conn *c, char *buf, size_t n)
{
    if (n > 0)
        buf[0] = '\0';
    X509 *peer = c->_ssl != NULL ? SSL_get0_peer_certificate(c->_ssl) : NULL;
    if (peer == NULL)
        return -ENOENT;
    return veil_spiffe_from_cert(peer, buf, n);
}

int veil_tls_peer_uri(const struct veil_tls_conn *c, char *buf, size_t n)
{
    if (n > 0)
        buf[0] = '\0';
    X509 *peer = c->_ssl != NULL ? SSL_get0_peer_certificate(c->_ssl) : NULL;
    if (peer == NULL)
        return -ENOENT;
    ERR_set_mark();
    GENERAL_NAMES *gens = X509_get_ext_d2i(peer, NID_subject_alt_name, NULL, NULL);
    ERR_pop_to_mark();
    if (gens == NULL)
        return -EINVAL;
    int rc = -EINVAL;
    const ASN1_IA5STRING *uri = NULL;
    int count = 0;
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type == GEN_URI) {
            uri = g->d.uniformResourceIdentifier;
            count++;
        }
    }
    if (count == 1) {
        int len = ASN1_STRING_length(uri);
        const unsigned char *data = ASN1_STRING_get0_data(uri);
        if (len > 0 && memchr(data, '\0', (size_t)len) == NULL) {
            if ((size_t)len < n) {
                memcpy(buf, data, (size_t)len);
                buf[len] = '\0';
                rc = 0;
            } else {
                rc = -ENOBUFS;
            }
        }
    }
    GENERAL_NAMES_free(gens);
    return rc;
}
