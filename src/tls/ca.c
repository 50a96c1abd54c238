#include "tls/ca.h"

#include "core/alloc.h"
#include "core/file.h"
#include "core/log.h"
#include "tls/spiffe.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define MSG_MAX 512

typedef STACK_OF(X509) x509_list;
#define NOT_AN_ID                                                                                  \
    "not a veil SPIFFE ID (spiffe://<trust-domain>/ns/<namespace>/sa/<service-account> or "        \
    "spiffe://<trust-domain>/veil/node/<node>)"

struct veil_ca {
    char *_trust_domain;
    long _lifetime_s;
    X509 *_cert;       /* the signing CA certificate */
    EVP_PKEY *_key;    /* its private key */
    x509_list *_extra; /* intermediates above _cert, from the CA certificate file */
    x509_list *_roots; /* the trust bundle */
    char *_bundle_pem;
    char *_chain_pem; /* "" for a root CA */
    _Atomic uint64_t _issued;
    _Atomic uint64_t _refused;
};

/*
 * Writes the message into err; with `ssl`, appends OpenSSL's reason for the
 * most recent error in the queue. Empties the queue either way, so that no
 * stale error confuses a later SSL_get_error() on this thread.
 */
__attribute__((format(printf, 4, 5))) static void fail(char *err, size_t errlen, bool ssl,
                                                       const char *fmt, ...)
{
    unsigned long e = ssl ? ERR_peek_last_error() : 0;
    if (err != NULL && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        if (e != 0) {
            char buf[256];
            const char *reason = ERR_reason_error_string(e);
            if (reason == NULL) {
                ERR_error_string_n(e, buf, sizeof(buf));
                reason = buf;
            }
            size_t used = strlen(err);
            snprintf(err + used, errlen - used, ": %s", reason);
        }
    }
    ERR_clear_error();
}

static void copy_msg(char *err, size_t errlen, const char *msg)
{
    if (err != NULL && errlen > 0)
        snprintf(err, errlen, "%s", msg);
}

/* ---- files ---- */

static int read_file(const char *path, char **out, size_t *len, char *err, size_t errlen)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        fail(err, errlen, false, "%s: %s", path, strerror(e));
        return -e;
    }
    int rc = 0;
    struct stat st;
    char *buf = NULL;
    size_t n = 0;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        fail(err, errlen, false, "%s: %s", path, strerror(-rc));
    } else if (!S_ISREG(st.st_mode) || st.st_size > VEIL_CA_FILE_MAX) {
        rc = -EINVAL;
        fail(err, errlen, false, "%s: not a regular file of at most %d bytes", path,
             VEIL_CA_FILE_MAX);
    } else if ((buf = veil_malloc((size_t)st.st_size + 1)) == NULL) {
        rc = -ENOMEM;
        fail(err, errlen, false, "%s: out of memory", path);
    }
    while (rc == 0 && n < (size_t)st.st_size) {
        ssize_t r = read(fd, buf + n, (size_t)st.st_size - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            fail(err, errlen, false, "%s: %s", path, strerror(-rc));
        }
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (rc != 0) {
        veil_free(buf);
        return rc;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* veil_file_write_atomic(), with the failing step in err. */
static int write_file(const char *path, const char *data, size_t len, mode_t mode, char *err,
                      size_t errlen)
{
    const char *step = NULL;
    int rc = veil_file_write_atomic(path, data, len, mode, &step);
    if (rc != 0)
        fail(err, errlen, false, "%s: %s: %s", path, step, strerror(-rc));
    return rc;
}

static int file_exists(const char *path, bool *yes, char *err, size_t errlen)
{
    struct stat st;
    *yes = false;
    if (stat(path, &st) == 0) {
        *yes = true;
        return 0;
    }
    if (errno == ENOENT)
        return 0;
    int e = errno;
    fail(err, errlen, false, "%s: %s", path, strerror(e));
    return -e;
}

/* mkdir(path, 0700); an existing directory is kept as it is unless `private`. */
static int make_dir(const char *path, bool private, char *err, size_t errlen)
{
    if (mkdir(path, 0700) == 0)
        return 0;
    int e = errno;
    struct stat st;
    if (e != EEXIST || stat(path, &st) != 0) {
        e = e != EEXIST ? e : errno;
        fail(err, errlen, false, "%s: mkdir: %s", path, strerror(e));
        return -e;
    }
    if (!S_ISDIR(st.st_mode)) {
        fail(err, errlen, false, "%s: not a directory", path);
        return -ENOTDIR;
    }
    if (private && (st.st_mode & 077) != 0) {
        if (chmod(path, 0700) != 0) {
            e = errno;
            fail(err, errlen, false, "%s: chmod 0700: %s", path, strerror(e));
            return -e;
        }
        VEIL_WARN("ca", "%s: was mode %03o, set to 0700", path, (unsigned)(st.st_mode & 0777));
    }
    return 0;
}

/* ---- PEM ---- */

/* A veil_malloc'd, NUL-terminated copy of a memory BIO's contents. */
static char *bio_string(BIO *bio)
{
    char *data = NULL;
    long n = BIO_get_mem_data(bio, &data);
    if (n < 0)
        return NULL;
    char *s = veil_malloc((size_t)n + 1);
    if (s == NULL)
        return NULL;
    if (n > 0)
        memcpy(s, data, (size_t)n);
    s[n] = '\0';
    return s;
}

/* PEM of first (may be NULL) then of every certificate of rest (may be NULL). */
static char *certs_pem(X509 *first, const x509_list *rest)
{
    BIO *bio = BIO_new(BIO_s_mem());
    bool ok = bio != NULL && (first == NULL || PEM_write_bio_X509(bio, first) == 1);
    for (int i = 0; ok && i < sk_X509_num(rest); i++)
        ok = PEM_write_bio_X509(bio, sk_X509_value(rest, i)) == 1;
    char *s = ok ? bio_string(bio) : NULL;
    BIO_free(bio);
    return s;
}

static char *key_pem(EVP_PKEY *key)
{
    BIO *bio = BIO_new(BIO_s_mem());
    char *s = NULL;
    if (bio != NULL && PEM_write_bio_PrivateKey(bio, key, NULL, NULL, 0, NULL, NULL) == 1)
        s = bio_string(bio);
    BIO_free(bio);
    return s;
}

/* Every certificate of a PEM text, in order; NULL if there is none or one is bad. */
static x509_list *parse_certs(const char *pem, size_t len)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    x509_list *certs = sk_X509_new_null();
    X509 *x;
    if (bio == NULL || certs == NULL)
        goto fail;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (sk_X509_push(certs, x) <= 0) {
            X509_free(x);
            goto fail;
        }
    }
    unsigned long e = ERR_peek_last_error();
    if (sk_X509_num(certs) == 0 || ERR_GET_LIB(e) != ERR_LIB_PEM ||
        ERR_GET_REASON(e) != PEM_R_NO_START_LINE)
        goto fail;
    ERR_clear_error(); /* the end of the text */
    BIO_free(bio);
    return certs;
fail:
    BIO_free(bio);
    sk_X509_pop_free(certs, X509_free);
    return NULL;
}

static int load_certs(const char *path, x509_list **out, char *err, size_t errlen)
{
    char *pem;
    size_t len;
    int rc = read_file(path, &pem, &len, err, errlen);
    if (rc != 0)
        return rc;
    *out = parse_certs(pem, len);
    veil_free(pem);
    if (*out == NULL) {
        fail(err, errlen, true, "%s: no readable PEM certificate", path);
        return -EINVAL;
    }
    return 0;
}

/* A passphrase callback that refuses: an encrypted key fails, never prompts. */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static int load_key(const char *path, EVP_PKEY **out, char *err, size_t errlen)
{
    char *pem;
    size_t len;
    int rc = read_file(path, &pem, &len, err, errlen);
    if (rc != 0)
        return rc;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    *out = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL) : NULL;
    BIO_free(bio);
    OPENSSL_cleanse(pem, len);
    veil_free(pem);
    if (*out == NULL) {
        fail(err, errlen, true, "%s: no readable private key (PEM, unencrypted)", path);
        return -EINVAL;
    }
    return 0;
}

/* ---- certificate building ---- */

/* 128 random bits, positive and non-zero (RFC 5280 4.1.2.2). */
static int set_serial(X509 *x)
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1)
        return -1;
    BIGNUM *bn = BN_bin2bn(b, sizeof(b), NULL);
    bool ok = bn != NULL && (!BN_is_zero(bn) || BN_set_word(bn, 1) == 1) &&
              BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok ? 0 : -1;
}

static int set_validity(X509 *x, time_t now, long before_s, long after_s)
{
    bool ok = X509_time_adj_ex(X509_getm_notBefore(x), 0, -before_s, &now) != NULL &&
              X509_time_adj_ex(X509_getm_notAfter(x), (int)(after_s / 86400), after_s % 86400,
                               &now) != NULL;
    return ok ? 0 : -1;
}

static int add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
    X509_EXTENSION *ext = X509V3_EXT_nconf_nid(NULL, v3, nid, value);
    bool ok = ext != NULL && X509_add_ext(x, ext, -1) == 1;
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* A GENERAL_NAMES holding the one URI; built by hand, so no config syntax applies to it. */
static GENERAL_NAMES *uri_names(const char *uri)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    GENERAL_NAME *gen = GENERAL_NAME_new();
    ASN1_IA5STRING *ia5 = ASN1_IA5STRING_new();
    if (gens == NULL || gen == NULL || ia5 == NULL || ASN1_STRING_set(ia5, uri, -1) != 1)
        goto fail;
    GENERAL_NAME_set0_value(gen, GEN_URI, ia5);
    ia5 = NULL;
    if (sk_GENERAL_NAME_push(gens, gen) <= 0)
        goto fail;
    return gens;
fail:
    ASN1_IA5STRING_free(ia5);
    GENERAL_NAME_free(gen);
    GENERAL_NAMES_free(gens);
    return NULL;
}

static const EVP_MD *sign_md(EVP_PKEY *key)
{
    if (EVP_PKEY_is_a(key, "ED25519") || EVP_PKEY_is_a(key, "ED448"))
        return NULL; /* pure EdDSA: no separate digest */
    return EVP_sha256();
}

static EVP_PKEY *new_p256(void)
{
    return EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
}

/* The common name of a self-made root; X.520 allows at most 64 characters. */
static void root_cn(char *buf, size_t n, const char *td)
{
    if ((size_t)snprintf(buf, n, "veil root CA %s", td) > 64)
        snprintf(buf, n, "veil root CA");
}

static int make_root(struct veil_ca *ca, char *err, size_t errlen)
{
    char cn[128];
    root_cn(cn, sizeof(cn), ca->_trust_domain);
    EVP_PKEY *key = new_p256();
    X509 *x = X509_new();
    X509V3_CTX v3;
    bool ok = key != NULL && x != NULL && X509_set_version(x, X509_VERSION_3) == 1 &&
              set_serial(x) == 0 &&
              X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "O", MBSTRING_UTF8,
                                         (const unsigned char *)"veil", -1, -1, 0) == 1 &&
              X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_UTF8,
                                         (const unsigned char *)cn, -1, -1, 0) == 1 &&
              X509_set_issuer_name(x, X509_get_subject_name(x)) == 1 &&
              set_validity(x, time(NULL), VEIL_CA_CLOCK_SKEW, VEIL_CA_ROOT_DAYS * 86400L) == 0 &&
              X509_set_pubkey(x, key) == 1;
    if (ok) {
        X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
        ok = add_ext(x, &v3, NID_basic_constraints, "critical,CA:TRUE") == 0 &&
             add_ext(x, &v3, NID_key_usage, "critical,keyCertSign,cRLSign") == 0 &&
             add_ext(x, &v3, NID_subject_key_identifier, "hash") == 0 &&
             X509_sign(x, key, EVP_sha256()) > 0;
    }
    ca->_roots = ok ? sk_X509_new_null() : NULL;
    ok = ca->_roots != NULL && X509_up_ref(x) == 1;
    if (ok && sk_X509_push(ca->_roots, x) <= 0) {
        X509_free(x);
        ok = false;
    }
    if (!ok) {
        fail(err, errlen, true, "cannot create the root CA");
        X509_free(x);
        EVP_PKEY_free(key);
        return -ENOMEM;
    }
    ca->_cert = x;
    ca->_key = key;
    return 0;
}

/* ---- loading a CA ---- */

static int check_ca_cert(X509 *cert, EVP_PKEY *key, const char *cert_path, const char *key_path,
                         char *err, size_t errlen)
{
    uint32_t flags = X509_get_extension_flags(cert);
    if (flags & EXFLAG_INVALID) {
        fail(err, errlen, false, "%s: the certificate has invalid extensions", cert_path);
        return -EINVAL;
    }
    if (!(flags & EXFLAG_CA)) {
        fail(err, errlen, false, "%s: not a CA certificate (needs basicConstraints CA:TRUE)",
             cert_path);
        return -EINVAL;
    }
    if (!(flags & EXFLAG_KUSAGE) || !(X509_get_key_usage(cert) & KU_KEY_CERT_SIGN)) {
        fail(err, errlen, false, "%s: the CA certificate lacks keyUsage keyCertSign", cert_path);
        return -EINVAL;
    }
    if (X509_check_private_key(cert, key) != 1) {
        fail(err, errlen, true, "%s: the private key does not match the certificate %s", key_path,
             cert_path);
        return -EINVAL;
    }
    return 0;
}

/* The CA certificate (with its intermediates) must chain to the roots and be valid now. */
static int check_chain(const struct veil_ca *ca, const char *cert_path, const char *roots_path,
                       char *err, size_t errlen)
{
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    bool ok = store != NULL && ctx != NULL;
    for (int i = 0; ok && i < sk_X509_num(ca->_roots); i++)
        ok = X509_STORE_add_cert(store, sk_X509_value(ca->_roots, i)) == 1;
    if (!ok || X509_STORE_CTX_init(ctx, store, ca->_cert, ca->_extra) != 1) {
        fail(err, errlen, true, "%s: cannot set up chain verification", cert_path);
        X509_STORE_CTX_free(ctx);
        X509_STORE_free(store);
        return -ENOMEM;
    }
    int rc = 0;
    if (X509_verify_cert(ctx) != 1) {
        fail(err, errlen, false, "%s: does not verify against the roots of %s: %s", cert_path,
             roots_path, X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx)));
        rc = -EINVAL;
    }
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    return rc;
}

/* roots_path NULL: the CA certificate must be a self-signed root, its own bundle. */
static int load_ca(struct veil_ca *ca, const char *cert_path, const char *key_path,
                   const char *roots_path, char *err, size_t errlen)
{
    int rc = load_certs(cert_path, &ca->_extra, err, errlen);
    if (rc != 0)
        return rc;
    ca->_cert = sk_X509_shift(ca->_extra);
    rc = load_key(key_path, &ca->_key, err, errlen);
    if (rc == 0)
        rc = check_ca_cert(ca->_cert, ca->_key, cert_path, key_path, err, errlen);
    if (rc != 0)
        return rc;
    if (roots_path != NULL) {
        rc = load_certs(roots_path, &ca->_roots, err, errlen);
        return rc != 0 ? rc : check_chain(ca, cert_path, roots_path, err, errlen);
    }
    if (X509_self_signed(ca->_cert, 1) != 1) {
        fail(err, errlen, false,
             "%s: not a self-signed root, so the roots it chains to are needed "
             "(root bundle)",
             cert_path);
        return -EINVAL;
    }
    ca->_roots = sk_X509_new_null();
    if (ca->_roots == NULL || X509_up_ref(ca->_cert) != 1) {
        fail(err, errlen, false, "out of memory");
        return -ENOMEM;
    }
    if (sk_X509_push(ca->_roots, ca->_cert) <= 0) {
        X509_free(ca->_cert);
        fail(err, errlen, false, "out of memory");
        return -ENOMEM;
    }
    return check_chain(ca, cert_path, cert_path, err, errlen);
}

static bool is_root(const struct veil_ca *ca)
{
    for (int i = 0; i < sk_X509_num(ca->_roots); i++)
        if (X509_cmp(sk_X509_value(ca->_roots, i), ca->_cert) == 0)
            return true;
    return false;
}

static int make_pems(struct veil_ca *ca, char *err, size_t errlen)
{
    ca->_bundle_pem = certs_pem(NULL, ca->_roots);
    ca->_chain_pem = is_root(ca) ? veil_strdup("") : certs_pem(ca->_cert, ca->_extra);
    if (ca->_bundle_pem == NULL || ca->_chain_pem == NULL) {
        fail(err, errlen, true, "out of memory");
        return -ENOMEM;
    }
    return 0;
}

/* Key first and ca.crt last: ca.crt is what makes a state dir hold a CA. */
static int save_ca(const struct veil_ca *ca, const char *crt, const char *key, const char *bundle,
                   char *err, size_t errlen)
{
    char *key_text = key_pem(ca->_key);
    char *crt_text = certs_pem(ca->_cert, ca->_extra);
    int rc = 0;
    if (key_text == NULL || crt_text == NULL) {
        fail(err, errlen, true, "out of memory");
        rc = -ENOMEM;
    }
    if (rc == 0)
        rc = write_file(key, key_text, strlen(key_text), 0600, err, errlen);
    if (rc == 0)
        rc = write_file(bundle, ca->_bundle_pem, strlen(ca->_bundle_pem), 0644, err, errlen);
    if (rc == 0)
        rc = write_file(crt, crt_text, strlen(crt_text), 0644, err, errlen);
    if (key_text != NULL)
        OPENSSL_cleanse(key_text, strlen(key_text));
    veil_free(key_text);
    veil_free(crt_text);
    return rc;
}

static void warn_key_mode(const char *path)
{
    struct stat st;
    if (stat(path, &st) == 0 && (st.st_mode & 077) != 0)
        VEIL_WARN("ca", "%s: mode %03o lets others read the CA key; it should be 0600", path,
                  (unsigned)(st.st_mode & 0777));
}

static void warn_expiry(const struct veil_ca *ca)
{
    time_t soon = time(NULL) + 30 * 86400;
    if (X509_cmp_time(X509_get0_notAfter(ca->_cert), &soon) < 0)
        VEIL_WARN("ca", "the CA certificate expires within 30 days; rotate it");
}

static int check_opts(const struct veil_ca_opts *opts, char *err, size_t errlen)
{
    if (opts == NULL || opts->state_dir == NULL || opts->state_dir[0] == '\0') {
        fail(err, errlen, false, "the CA needs a state directory");
        return -EINVAL;
    }
    if (opts->trust_domain != NULL && !veil_spiffe_valid_trust_domain(opts->trust_domain)) {
        fail(err, errlen, false,
             "invalid trust domain \"%.300s\": 1 to 255 characters of [a-z0-9._-]",
             opts->trust_domain);
        return -EINVAL;
    }
    if ((opts->ca_cert_path == NULL) != (opts->ca_key_path == NULL)) {
        fail(err, errlen, false, "a CA certificate and its key go together: give both or neither");
        return -EINVAL;
    }
    if (opts->root_bundle_path != NULL && opts->ca_cert_path == NULL) {
        fail(err, errlen, false, "a root bundle is only used with a given CA certificate");
        return -EINVAL;
    }
    if (opts->leaf_lifetime_s < 0 || opts->leaf_lifetime_s > VEIL_CA_LIFETIME_MAX) {
        fail(err, errlen, false, "leaf lifetime %ld s is out of range (1 to %ld s)",
             opts->leaf_lifetime_s, VEIL_CA_LIFETIME_MAX);
        return -EINVAL;
    }
    return 0;
}

static int path_join(char *buf, const char *dir, const char *name, char *err, size_t errlen)
{
    if ((size_t)snprintf(buf, PATH_MAX, "%s/%s", dir, name) >= PATH_MAX) {
        fail(err, errlen, false, "%s/%s: path too long", dir, name);
        return -ENAMETOOLONG;
    }
    return 0;
}

static int open_ca(struct veil_ca *ca, const struct veil_ca_opts *opts, char *err, size_t errlen)
{
    char dir[PATH_MAX], crt[PATH_MAX], key[PATH_MAX], bundle[PATH_MAX];
    bool have_crt, have_key, have_bundle;
    int rc = path_join(dir, opts->state_dir, "ca", err, errlen);
    if (rc == 0)
        rc = path_join(crt, dir, "ca.crt", err, errlen);
    if (rc == 0)
        rc = path_join(key, dir, "ca.key", err, errlen);
    if (rc == 0)
        rc = path_join(bundle, dir, "bundle.pem", err, errlen);
    if (rc == 0)
        rc = make_dir(opts->state_dir, false, err, errlen);
    if (rc == 0)
        rc = make_dir(dir, true, err, errlen);
    if (rc == 0)
        rc = file_exists(crt, &have_crt, err, errlen);
    if (rc == 0)
        rc = file_exists(key, &have_key, err, errlen);
    if (rc == 0)
        rc = file_exists(bundle, &have_bundle, err, errlen);
    if (rc != 0)
        return rc;

    if (have_crt && have_key) {
        rc = load_ca(ca, crt, key, have_bundle ? bundle : NULL, err, errlen);
        if (rc == 0)
            rc = make_pems(ca, err, errlen);
        if (rc == 0) {
            warn_key_mode(key);
            VEIL_INFO("ca", "loaded the CA of %s", dir);
            if (opts->ca_cert_path != NULL)
                VEIL_WARN("ca", "%s already holds a CA: %s is not used", dir, opts->ca_cert_path);
        }
    } else if (have_crt || have_key) {
        fail(err, errlen, false,
             "%s: holds %s but not %s; restore it, or remove both to make a new CA", dir,
             have_crt ? "ca.crt" : "ca.key", have_crt ? "ca.key" : "ca.crt");
        return -EINVAL;
    } else {
        if (opts->ca_cert_path != NULL)
            rc = load_ca(ca, opts->ca_cert_path, opts->ca_key_path, opts->root_bundle_path, err,
                         errlen);
        else
            rc = make_root(ca, err, errlen);
        if (rc == 0)
            rc = make_pems(ca, err, errlen);
        if (rc == 0)
            rc = save_ca(ca, crt, key, bundle, err, errlen);
        if (rc == 0 && opts->ca_cert_path != NULL)
            VEIL_INFO("ca", "copied the CA of %s into %s", opts->ca_cert_path, dir);
        else if (rc == 0)
            VEIL_INFO("ca", "created a root CA for %s in %s", ca->_trust_domain, dir);
    }
    if (rc == 0)
        warn_expiry(ca);
    return rc;
}

int veil_ca_open(struct veil_ca **out, const struct veil_ca_opts *opts, char *err, size_t errlen)
{
    char msg[MSG_MAX] = "";
    *out = NULL;
    int rc = check_opts(opts, msg, sizeof(msg));
    struct veil_ca *ca = NULL;
    if (rc == 0 && (ca = veil_calloc(1, sizeof(*ca))) == NULL) {
        fail(msg, sizeof(msg), false, "out of memory");
        rc = -ENOMEM;
    }
    if (rc == 0) {
        ca->_lifetime_s = opts->leaf_lifetime_s ? opts->leaf_lifetime_s : VEIL_CA_LIFETIME_DEFAULT;
        ca->_trust_domain =
            veil_strdup(opts->trust_domain ? opts->trust_domain : VEIL_CA_TRUST_DOMAIN_DEFAULT);
        if (ca->_trust_domain == NULL) {
            fail(msg, sizeof(msg), false, "out of memory");
            rc = -ENOMEM;
        }
    }
    if (rc == 0)
        rc = open_ca(ca, opts, msg, sizeof(msg));
    if (rc != 0) {
        veil_ca_free(ca);
        copy_msg(err, errlen, msg);
        return rc;
    }
    *out = ca;
    return 0;
}

void veil_ca_free(struct veil_ca *ca)
{
    if (ca == NULL)
        return;
    X509_free(ca->_cert);
    EVP_PKEY_free(ca->_key);
    sk_X509_pop_free(ca->_extra, X509_free);
    sk_X509_pop_free(ca->_roots, X509_free);
    veil_free(ca->_bundle_pem);
    veil_free(ca->_chain_pem);
    veil_free(ca->_trust_domain);
    veil_free(ca);
}

const char *veil_ca_trust_domain(const struct veil_ca *ca)
{
    return ca->_trust_domain;
}

const char *veil_ca_bundle_pem(const struct veil_ca *ca)
{
    return ca->_bundle_pem;
}

const char *veil_ca_chain_pem(const struct veil_ca *ca)
{
    return ca->_chain_pem;
}

void veil_ca_stats(const struct veil_ca *ca, struct veil_ca_stats *out)
{
    out->issued = atomic_load_explicit(&ca->_issued, memory_order_relaxed);
    out->refused = atomic_load_explicit(&ca->_refused, memory_order_relaxed);
}

/* ---- signing ---- */

/* The SPIFFE ID must be a veil ID of this CA's trust domain; the lifetime in range. */
static int check_request(const struct veil_ca *ca, const char *uri_san, long lifetime_s, char *err,
                         size_t errlen)
{
    struct veil_spiffe_id id;
    if (veil_spiffe_parse(uri_san, &id) != 0) {
        fail(err, errlen, false, NOT_AN_ID);
        return -EINVAL;
    }
    if (strcmp(id.trust_domain, ca->_trust_domain) != 0) {
        fail(err, errlen, false, "trust domain %s is not this CA's (%s)", id.trust_domain,
             ca->_trust_domain);
        return -EINVAL;
    }
    if (lifetime_s < 0 || lifetime_s > VEIL_CA_LIFETIME_MAX) {
        fail(err, errlen, false, "lifetime %ld s is out of range (0 to %ld s)", lifetime_s,
             VEIL_CA_LIFETIME_MAX);
        return -EINVAL;
    }
    return 0;
}

/* A leaf never outlives the certificates above it. */
static int clamp_not_after(const struct veil_ca *ca, X509 *x)
{
    const ASN1_TIME *end = X509_get0_notAfter(ca->_cert);
    for (int i = 0; i < sk_X509_num(ca->_extra); i++) {
        const ASN1_TIME *t = X509_get0_notAfter(sk_X509_value(ca->_extra, i));
        if (ASN1_TIME_compare(t, end) < 0)
            end = t;
    }
    if (ASN1_TIME_compare(X509_get0_notAfter(x), end) > 0)
        return X509_set1_notAfter(x, end) == 1 ? 0 : -1;
    return 0;
}

static int add_leaf_exts(const struct veil_ca *ca, X509 *x, EVP_PKEY *pub, const char *uri)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, ca->_cert, x, NULL, NULL, 0);
    GENERAL_NAMES *gens = uri_names(uri);
    /* The subject is empty, so the SAN is critical (RFC 5280 4.2.1.6, X.509-SVID spec). */
    bool ok = gens != NULL &&
              X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 1, X509V3_ADD_DEFAULT) == 1;
    GENERAL_NAMES_free(gens);
    const char *ku = EVP_PKEY_is_a(pub, "RSA") ? "critical,digitalSignature,keyEncipherment"
                                               : "critical,digitalSignature";
    ok = ok && add_ext(x, &v3, NID_basic_constraints, "critical,CA:FALSE") == 0 &&
         add_ext(x, &v3, NID_key_usage, ku) == 0 &&
         add_ext(x, &v3, NID_ext_key_usage, "serverAuth,clientAuth") == 0 &&
         add_ext(x, &v3, NID_subject_key_identifier, "hash") == 0 &&
         add_ext(x, &v3, NID_authority_key_identifier, "keyid,issuer") == 0;
    return ok ? 0 : -1;
}

static void log_issued(X509 *x, const char *uri)
{
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
    char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;
    BIO *bio = BIO_new(BIO_s_mem());
    char until[64] = "?";
    if (bio != NULL && ASN1_TIME_print(bio, X509_get0_notAfter(x)) == 1) {
        int n = BIO_read(bio, until, sizeof(until) - 1);
        until[n > 0 ? n : 0] = '\0';
    }
    VEIL_INFO("ca", "issued %s, serial %s, valid until %s", uri, hex ? hex : "?", until);
    BIO_free(bio);
    OPENSSL_free(hex);
    BN_free(bn);
    ERR_clear_error();
}

/* Signs pub as the leaf of uri (already checked with check_request()). */
static int sign_key(struct veil_ca *ca, EVP_PKEY *pub, const char *uri, long lifetime_s,
                    char **cert_pem_out, char *err, size_t errlen)
{
    long life = lifetime_s ? lifetime_s : ca->_lifetime_s;
    X509 *x = X509_new();
    bool ok = x != NULL && X509_set_version(x, X509_VERSION_3) == 1 && set_serial(x) == 0 &&
              X509_set_issuer_name(x, X509_get_subject_name(ca->_cert)) == 1 &&
              set_validity(x, time(NULL), VEIL_CA_CLOCK_SKEW, life) == 0 &&
              clamp_not_after(ca, x) == 0 && X509_set_pubkey(x, pub) == 1 &&
              add_leaf_exts(ca, x, pub, uri) == 0 && X509_sign(x, ca->_key, sign_md(ca->_key)) > 0;
    char *leaf = ok ? certs_pem(x, NULL) : NULL;
    size_t leaf_len = leaf != NULL ? strlen(leaf) : 0;
    size_t chain_len = strlen(ca->_chain_pem);
    char *pem = leaf != NULL ? veil_malloc(leaf_len + chain_len + 1) : NULL;
    if (pem == NULL) {
        fail(err, errlen, true, "cannot build the certificate");
        veil_free(leaf);
        X509_free(x);
        return -ENOMEM;
    }
    memcpy(pem, leaf, leaf_len);
    memcpy(pem + leaf_len, ca->_chain_pem, chain_len + 1);
    log_issued(x, uri);
    veil_free(leaf);
    X509_free(x);
    *cert_pem_out = pem;
    return 0;
}

/* EC P-256, or RSA of 2048 to 8192 bits. */
static int check_leaf_key(EVP_PKEY *pub, char *err, size_t errlen)
{
    if (EVP_PKEY_is_a(pub, "EC")) {
        char group[80] = "";
        size_t len = 0;
        int nid = NID_undef;
        if (EVP_PKEY_get_group_name(pub, group, sizeof(group), &len) == 1) {
            nid = OBJ_sn2nid(group);
            if (nid == NID_undef)
                nid = EC_curve_nist2nid(group);
        }
        if (nid != NID_X9_62_prime256v1) {
            fail(err, errlen, false, "CSR key is EC on curve \"%s\"; only P-256 is accepted",
                 group);
            return -EINVAL;
        }
        return 0;
    }
    if (EVP_PKEY_is_a(pub, "RSA")) {
        int bits = EVP_PKEY_get_bits(pub);
        if (bits < 2048 || bits > 8192) {
            fail(err, errlen, false, "CSR key is RSA of %d bits; 2048 to 8192 are accepted", bits);
            return -EINVAL;
        }
        return 0;
    }
    const char *type = EVP_PKEY_get0_type_name(pub);
    fail(err, errlen, false, "CSR key type %s is not accepted (EC P-256 or RSA)",
         type ? type : "unknown");
    return -EINVAL;
}

static int sign_csr(struct veil_ca *ca, const char *csr_pem, size_t csr_len, const char *uri_san,
                    long lifetime_s, char **cert_pem_out, char *err, size_t errlen)
{
    int rc = check_request(ca, uri_san, lifetime_s, err, errlen);
    if (rc != 0)
        return rc;
    if (csr_pem == NULL || csr_len == 0 || csr_len > VEIL_CA_CSR_MAX) {
        fail(err, errlen, false, "the CSR is empty or larger than %d bytes", VEIL_CA_CSR_MAX);
        return -EINVAL;
    }
    BIO *bio = BIO_new_mem_buf(csr_pem, (int)csr_len);
    X509_REQ *req = bio != NULL ? PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    EVP_PKEY *pub = req != NULL ? X509_REQ_get0_pubkey(req) : NULL;
    if (pub == NULL) {
        fail(err, errlen, true, "cannot read the CSR (PEM CERTIFICATE REQUEST)");
        rc = -EINVAL;
    } else if (X509_REQ_verify(req, pub) != 1) {
        fail(err, errlen, false, "the CSR signature does not verify with its key");
        rc = -EINVAL;
    } else {
        rc = check_leaf_key(pub, err, errlen);
    }
    if (rc == 0)
        rc = sign_key(ca, pub, uri_san, lifetime_s, cert_pem_out, err, errlen);
    X509_REQ_free(req);
    return rc;
}

static const char *printable(const char *uri)
{
    return uri == NULL ? "(null)" : uri[0] == '\0' ? "(empty)" : uri;
}

/* Counts the call; a refusal is logged, and its message, prefixed with the SPIFFE ID, returned. */
static void count(struct veil_ca *ca, int rc, const char *uri, const char *msg, char *err,
                  size_t errlen)
{
    if (rc == 0) {
        atomic_fetch_add_explicit(&ca->_issued, 1, memory_order_relaxed);
        return;
    }
    char full[MSG_MAX + 320];
    snprintf(full, sizeof(full), "%.300s: %s", printable(uri), msg);
    atomic_fetch_add_explicit(&ca->_refused, 1, memory_order_relaxed);
    VEIL_WARN("ca", "refused %s", full);
    copy_msg(err, errlen, full);
}

int veil_ca_sign_csr(struct veil_ca *ca, const char *csr_pem, size_t csr_len, const char *uri_san,
                     long lifetime_s, char **cert_pem_out, char *err, size_t errlen)
{
    char msg[MSG_MAX] = "";
    *cert_pem_out = NULL;
    int rc = sign_csr(ca, csr_pem, csr_len, uri_san, lifetime_s, cert_pem_out, msg, sizeof(msg));
    count(ca, rc, uri_san, msg, err, errlen);
    return rc;
}

static int issue(struct veil_ca *ca, const char *uri_san, long lifetime_s, char **key_pem_out,
                 char **cert_pem_out, char *err, size_t errlen)
{
    int rc = check_request(ca, uri_san, lifetime_s, err, errlen);
    if (rc != 0)
        return rc;
    EVP_PKEY *key = new_p256();
    char *kp = key != NULL ? key_pem(key) : NULL;
    if (kp == NULL) {
        fail(err, errlen, true, "cannot make a key");
        EVP_PKEY_free(key);
        return -ENOMEM;
    }
    rc = sign_key(ca, key, uri_san, lifetime_s, cert_pem_out, err, errlen);
    EVP_PKEY_free(key);
    if (rc != 0) {
        OPENSSL_cleanse(kp, strlen(kp));
        veil_free(kp);
        return rc;
    }
    *key_pem_out = kp;
    return 0;
}

int veil_ca_issue(struct veil_ca *ca, const char *uri_san, long lifetime_s, char **key_pem_out,
                  char **cert_pem_out, char *err, size_t errlen)
{
    char msg[MSG_MAX] = "";
    *key_pem_out = NULL;
    *cert_pem_out = NULL;
    int rc = issue(ca, uri_san, lifetime_s, key_pem_out, cert_pem_out, msg, sizeof(msg));
    count(ca, rc, uri_san, msg, err, errlen);
    return rc;
}

static int write_identity(const struct veil_ca *ca, const char *dir, const char *key_pem,
                          const char *cert_pem, char *err, size_t errlen)
{
    char key[PATH_MAX], crt[PATH_MAX], root[PATH_MAX];
    int rc = path_join(key, dir, "key.pem", err, errlen);
    if (rc == 0)
        rc = path_join(crt, dir, "cert-chain.pem", err, errlen);
    if (rc == 0)
        rc = path_join(root, dir, "root-cert.pem", err, errlen);
    if (rc == 0)
        rc = make_dir(dir, false, err, errlen);
    if (rc == 0)
        rc = write_file(key, key_pem, strlen(key_pem), 0600, err, errlen);
    if (rc == 0)
        rc = write_file(crt, cert_pem, strlen(cert_pem), 0644, err, errlen);
    if (rc == 0)
        rc = write_file(root, ca->_bundle_pem, strlen(ca->_bundle_pem), 0644, err, errlen);
    return rc;
}

int veil_ca_issue_files(struct veil_ca *ca, const char *uri_san, long lifetime_s,
                        const char *out_dir, char *err, size_t errlen)
{
    char msg[MSG_MAX] = "";
    char *key_pem = NULL, *cert_pem = NULL;
    if (out_dir == NULL || out_dir[0] == '\0') {
        copy_msg(err, errlen, "no output directory");
        return -EINVAL;
    }
    int rc = veil_ca_issue(ca, uri_san, lifetime_s, &key_pem, &cert_pem, msg, sizeof(msg));
    if (rc == 0)
        rc = write_identity(ca, out_dir, key_pem, cert_pem, msg, sizeof(msg));
    if (key_pem != NULL)
        OPENSSL_cleanse(key_pem, strlen(key_pem));
    veil_free(key_pem);
    veil_free(cert_pem);
    copy_msg(err, errlen, msg);
    return rc;
}

/* ---- the requesting side ---- */

static int add_req_san(X509_REQ *req, const char *uri)
{
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    GENERAL_NAMES *gens = uri_names(uri);
    X509_EXTENSION *ext = gens != NULL ? X509V3_EXT_i2d(NID_subject_alt_name, 1, gens) : NULL;
    bool ok = exts != NULL && ext != NULL && sk_X509_EXTENSION_push(exts, ext) > 0;
    if (ok)
        ext = NULL;
    ok = ok && X509_REQ_add_extensions(req, exts) == 1;
    X509_EXTENSION_free(ext);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    GENERAL_NAMES_free(gens);
    return ok ? 0 : -1;
}

static int csr_new(const char *uri_san, char **key_pem_out, char **csr_pem_out, char *err,
                   size_t errlen)
{
    struct veil_spiffe_id id;
    if (veil_spiffe_parse(uri_san, &id) != 0) {
        fail(err, errlen, false, NOT_AN_ID);
        return -EINVAL;
    }
    EVP_PKEY *key = new_p256();
    X509_REQ *req = X509_REQ_new();
    BIO *bio = BIO_new(BIO_s_mem());
    bool ok = key != NULL && req != NULL && bio != NULL && X509_REQ_set_version(req, 0) == 1 &&
              X509_REQ_set_pubkey(req, key) == 1 && add_req_san(req, uri_san) == 0 &&
              X509_REQ_sign(req, key, EVP_sha256()) > 0 && PEM_write_bio_X509_REQ(bio, req) == 1;
    char *csr = ok ? bio_string(bio) : NULL;
    char *kp = csr != NULL ? key_pem(key) : NULL;
    BIO_free(bio);
    X509_REQ_free(req);
    EVP_PKEY_free(key);
    if (kp == NULL) {
        fail(err, errlen, true, "cannot make a key and CSR");
        veil_free(csr);
        return -ENOMEM;
    }
    *key_pem_out = kp;
    *csr_pem_out = csr;
    return 0;
}

int veil_csr_new(const char *uri_san, char **key_pem_out, char **csr_pem_out, char *err,
                 size_t errlen)
{
    char msg[MSG_MAX] = "";
    *key_pem_out = NULL;
    *csr_pem_out = NULL;
    int rc = csr_new(uri_san, key_pem_out, csr_pem_out, msg, sizeof(msg));
    if (rc != 0 && err != NULL && errlen > 0)
        snprintf(err, errlen, "%.300s: %s", printable(uri_san), msg);
    return rc;
}
