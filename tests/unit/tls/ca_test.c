#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "core/alloc.h"
#include "tls/ca.h"
#include "tls/spiffe.h"

#define WEB "spiffe://cluster.local/ns/default/sa/web"

/* ---- helpers ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static char *make_tmpdir(void)
{
    char tmpl[] = "/tmp/veil-ca-test-XXXXXX";
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    return strdup(dir);
}

static void remove_tmpdir(char *dir)
{
    assert_int_equal(nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS), 0);
    free(dir);
}

static void join(char *buf, size_t n, const char *dir, const char *name)
{
    assert_true((size_t)snprintf(buf, n, "%s/%s", dir, name) < n);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[512];
    join(path, sizeof(path), dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
}

/* The whole file, malloc'd and NUL-terminated. */
static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *buf = calloc(1, 1 << 20);
    assert_non_null(buf);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static unsigned mode_of(const char *dir, const char *name)
{
    char path[512];
    struct stat st;
    join(path, sizeof(path), dir, name);
    assert_int_equal(stat(path, &st), 0);
    return (unsigned)(st.st_mode & 0777);
}

static int exists(const char *dir, const char *name)
{
    char path[512];
    join(path, sizeof(path), dir, name);
    return access(path, F_OK) == 0;
}

/* Runs a shell command, collects its stdout and stderr into out; returns the exit status. */
__attribute__((format(printf, 3, 4))) static int run(char *out, size_t n, const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    cmd[0] = '(';
    assert_true((size_t)vsnprintf(cmd + 1, sizeof(cmd) - 16, fmt, ap) < sizeof(cmd) - 16);
    va_end(ap);
    strcat(cmd, ") 2>&1");
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t len = fread(out, 1, n - 1, p);
    out[len] = '\0';
    int status = pclose(p);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

static size_t count_of(const char *hay, const char *needle)
{
    size_t count = 0;
    for (const char *p = strstr(hay, needle); p != NULL; p = strstr(p + 1, needle))
        count++;
    return count;
}

static X509 *first_cert(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    assert_non_null(bio);
    X509 *x = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    BIO_free(bio);
    assert_non_null(x);
    return x;
}

static int cert_count(const char *pem)
{
    return (int)count_of(pem, "-----BEGIN CERTIFICATE-----");
}

static struct veil_ca *open_ca(const char *state_dir)
{
    struct veil_ca_opts opts = {.state_dir = state_dir};
    struct veil_ca *ca = NULL;
    char err[512] = "";
    int rc = veil_ca_open(&ca, &opts, err, sizeof(err));
    if (rc != 0)
        fail_msg("veil_ca_open: %d %s", rc, err);
    assert_non_null(ca);
    return ca;
}

static void issue(struct veil_ca *ca, const char *uri, long lifetime, char **key, char **cert)
{
    char err[512] = "";
    int rc = veil_ca_issue(ca, uri, lifetime, key, cert, err, sizeof(err));
    if (rc != 0)
        fail_msg("veil_ca_issue: %d %s", rc, err);
}

/* notAfter - notBefore, in seconds. */
static long lifetime_of(X509 *x)
{
    int days = 0, secs = 0;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)),
                     1);
    return days * 86400L + secs;
}

/* The SAN extension's names; asserts there is exactly one SAN extension. */
static GENERAL_NAMES *sans_of(X509 *x, int *critical)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, critical, NULL);
    assert_non_null(gens);
    return gens;
}

static int ext_critical(X509 *x, int nid)
{
    int i = X509_get_ext_by_NID(x, nid, -1);
    assert_true(i >= 0);
    assert_int_equal(X509_get_ext_by_NID(x, nid, i), -1); /* only once */
    return X509_EXTENSION_get_critical(X509_get_ext(x, i));
}

/* The leaf profile of docs/identity.md, checked field by field with the C API. */
static void check_leaf_profile(X509 *leaf, X509 *issuer, const char *uri)
{
    assert_int_equal(X509_get_version(leaf), X509_VERSION_3);
    assert_int_equal(X509_NAME_entry_count(X509_get_subject_name(leaf)), 0);
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(leaf), X509_get_subject_name(issuer)), 0);

    const ASN1_INTEGER *serial = X509_get0_serialNumber(leaf);
    assert_true(ASN1_STRING_length(serial) >= 8 && ASN1_STRING_length(serial) <= 17);
    assert_int_equal(ASN1_STRING_type(serial), V_ASN1_INTEGER); /* positive */

    int crit = 0;
    GENERAL_NAMES *gens = sans_of(leaf, &crit);
    assert_int_equal(crit, 1);
    assert_int_equal(sk_GENERAL_NAME_num(gens), 1);
    const GENERAL_NAME *gen = sk_GENERAL_NAME_value(gens, 0);
    assert_int_equal(gen->type, GEN_URI);
    const ASN1_IA5STRING *ia5 = gen->d.uniformResourceIdentifier;
    assert_int_equal(ASN1_STRING_length(ia5), strlen(uri));
    assert_memory_equal(ASN1_STRING_get0_data(ia5), uri, strlen(uri));
    GENERAL_NAMES_free(gens);

    char id[VEIL_SPIFFE_ID_MAX + 1];
    assert_int_equal(veil_spiffe_from_cert(leaf, id, sizeof(id)), 0);
    assert_string_equal(id, uri);

    uint32_t flags = X509_get_extension_flags(leaf);
    assert_true(flags & EXFLAG_BCONS);
    assert_false(flags & EXFLAG_CA);
    assert_int_equal(ext_critical(leaf, NID_basic_constraints), 1);
    assert_int_equal(X509_get_key_usage(leaf), KU_DIGITAL_SIGNATURE);
    assert_int_equal(ext_critical(leaf, NID_key_usage), 1);
    assert_int_equal(X509_get_extended_key_usage(leaf), XKU_SSL_SERVER | XKU_SSL_CLIENT);
    assert_int_equal(ext_critical(leaf, NID_ext_key_usage), 0);
    assert_non_null(X509_get0_subject_key_id(leaf));
    const ASN1_OCTET_STRING *akid = X509_get0_authority_key_id(leaf);
    assert_non_null(akid);
    assert_int_equal(ASN1_OCTET_STRING_cmp(akid, X509_get0_subject_key_id(issuer)), 0);
    assert_int_equal(X509_get_ext_count(leaf), 6);

    EVP_PKEY *pub = X509_get0_pubkey(leaf);
    assert_true(EVP_PKEY_is_a(pub, "EC"));
    assert_int_equal(EVP_PKEY_get_bits(pub), 256);
    assert_int_equal(X509_verify(leaf, X509_get0_pubkey(issuer)), 1);
}

/* `openssl x509 -ext subjectAltName` shows exactly the one URI and nothing else. */
static void check_san_cli(const char *dir, const char *cert_name, const char *uri)
{
    char out[4096], path[512], want[2200];
    join(path, sizeof(path), dir, cert_name);
    assert_int_equal(
        run(out, sizeof(out), "openssl x509 -noout -ext subjectAltName -in '%s'", path), 0);
    snprintf(want, sizeof(want), "URI:%s\n", uri);
    if (strstr(out, want) == NULL)
        fail_msg("no %s in: %s", uri, out);
    assert_int_equal(count_of(out, "URI:"), 1);
    assert_int_equal(count_of(out, "DNS:"), 0);
    assert_int_equal(count_of(out, "IP Address:"), 0);
    assert_int_equal(count_of(out, "email:"), 0);
    assert_non_null(strstr(out, "critical"));
}

/* openssl verify's exit status; `untrusted` may be NULL. */
static int verify_cli(const char *dir, const char *cafile, const char *untrusted, const char *cert,
                      const char *extra)
{
    char out[4096];
    int rc;
    if (untrusted != NULL)
        rc = run(out, sizeof(out), "cd '%s' && openssl verify %s -CAfile %s -untrusted %s %s", dir,
                 extra, cafile, untrusted, cert);
    else
        rc = run(out, sizeof(out), "cd '%s' && openssl verify %s -CAfile %s %s", dir, extra, cafile,
                 cert);
    if (rc == 0 && strstr(out, ": OK") == NULL)
        fail_msg("openssl verify said: %s", out);
    return rc;
}

/* A minimal openssl config for the CA certificates the tests bring themselves. */
static const char test_cnf[] = "[req]\n"
                               "distinguished_name = dn\n"
                               "[dn]\n"
                               "[v3_root]\n"
                               "basicConstraints = critical,CA:TRUE\n"
                               "keyUsage = critical,keyCertSign,cRLSign\n"
                               "subjectKeyIdentifier = hash\n"
                               "[v3_int]\n"
                               "basicConstraints = critical,CA:TRUE,pathlen:0\n"
                               "keyUsage = critical,keyCertSign,cRLSign\n"
                               "subjectKeyIdentifier = hash\n"
                               "authorityKeyIdentifier = keyid:always\n"
                               "[v3_leaf]\n"
                               "basicConstraints = critical,CA:FALSE\n"
                               "keyUsage = critical,digitalSignature\n"
                               "[v3_nokus]\n"
                               "basicConstraints = critical,CA:TRUE\n"
                               "keyUsage = critical,digitalSignature\n";

static void cli(const char *dir, const char *cmd)
{
    char out[8192];
    int rc = run(out, sizeof(out), "cd '%s' && %s", dir, cmd);
    if (rc != 0)
        fail_msg("%s: exit %d: %s", cmd, rc, out);
}

/* In dir: root.pem/root.key (self-signed), and <name>.pem/<name>.key signed by it with
 * extensions section <section>. */
static void cli_root(const char *dir)
{
    write_text(dir, "test.cnf", test_cnf);
    cli(dir, "openssl req -config test.cnf -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
             "-nodes -keyout root.key -out root.pem -days 30 -subj /CN=test-root "
             "-extensions v3_root");
}

static void cli_signed(const char *dir, const char *name, const char *section, int serial)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd),
             "openssl req -config test.cnf -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
             "-nodes -keyout %s.key -out %s.csr -subj /CN=test-%s && "
             "openssl x509 -req -in %s.csr -CA root.pem -CAkey root.key -set_serial %d "
             "-days 30 -extfile test.cnf -extensions %s -out %s.pem",
             name, name, name, name, serial, section, name);
    cli(dir, cmd);
}

/* PEM of a CSR with a chosen key, subject CN=evil, the given SANs and CA:TRUE asked for. */
static char *evil_csr(EVP_PKEY *key, const char *san)
{
    X509_REQ *req = X509_REQ_new();
    assert_non_null(req);
    assert_int_equal(X509_REQ_set_version(req, 0), 1);
    assert_int_equal(X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_UTF8,
                                                (const unsigned char *)"evil", -1, -1, 0),
                     1);
    assert_int_equal(X509_REQ_set_pubkey(req, key), 1);
    STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, NULL, NULL, req, NULL, 0);
    X509_EXTENSION *e1 = X509V3_EXT_nconf_nid(NULL, &v3, NID_subject_alt_name, san);
    X509_EXTENSION *e2 = X509V3_EXT_nconf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:TRUE");
    X509_EXTENSION *e3 = X509V3_EXT_nconf_nid(NULL, &v3, NID_key_usage, "keyCertSign");
    assert_non_null(e1);
    assert_non_null(e2);
    assert_non_null(e3);
    sk_X509_EXTENSION_push(exts, e1);
    sk_X509_EXTENSION_push(exts, e2);
    sk_X509_EXTENSION_push(exts, e3);
    assert_int_equal(X509_REQ_add_extensions(req, exts), 1);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    assert_true(X509_REQ_sign(req, key, EVP_sha256()) > 0);
    BIO *bio = BIO_new(BIO_s_mem());
    assert_int_equal(PEM_write_bio_X509_REQ(bio, req), 1);
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    char *pem = strndup(data, (size_t)n);
    BIO_free(bio);
    X509_REQ_free(req);
    return pem;
}

static char *csr_for_key(EVP_PKEY *key)
{
    return evil_csr(key, "URI:spiffe://cluster.local/ns/default/sa/web");
}

static int sign(struct veil_ca *ca, const char *csr, const char *uri, long lifetime, char **cert,
                char *err, size_t errlen)
{
    return veil_ca_sign_csr(ca, csr, strlen(csr), uri, lifetime, cert, err, errlen);
}

/* Each test gets a fresh temporary directory in *state, removed even when it fails. */
static int tmp_setup(void **state)
{
    *state = make_tmpdir();
    return 0;
}

static int tmp_teardown(void **state)
{
    remove_tmpdir(*state);
    return 0;
}

/* ---- tests ---- */

static void test_first_start_creates_root(void **state)
{
    const char *dir = *state;
    char cadir[512], path[512];
    join(cadir, sizeof(cadir), dir, "ca");

    struct veil_ca *ca = open_ca(dir);
    assert_int_equal(mode_of(dir, "ca"), 0700);
    assert_int_equal(mode_of(cadir, "ca.key"), 0600);
    assert_int_equal(mode_of(cadir, "ca.crt"), 0644);
    assert_int_equal(mode_of(cadir, "bundle.pem"), 0644);
    assert_string_equal(veil_ca_trust_domain(ca), "cluster.local");
    assert_string_equal(veil_ca_chain_pem(ca), "");

    join(path, sizeof(path), cadir, "bundle.pem");
    char *bundle_file = read_text(path);
    assert_string_equal(veil_ca_bundle_pem(ca), bundle_file);
    assert_int_equal(cert_count(bundle_file), 1);
    join(path, sizeof(path), cadir, "ca.crt");
    char *crt_file = read_text(path);
    assert_string_equal(crt_file, bundle_file);

    /* The root's profile. */
    X509 *root = first_cert(bundle_file);
    char name[256];
    X509_NAME_oneline(X509_get_subject_name(root), name, sizeof(name));
    assert_string_equal(name, "/O=veil/CN=veil root CA cluster.local");
    assert_int_equal(X509_self_signed(root, 1), 1);
    uint32_t flags = X509_get_extension_flags(root);
    assert_true(flags & EXFLAG_CA);
    assert_int_equal(ext_critical(root, NID_basic_constraints), 1);
    assert_int_equal(X509_get_key_usage(root), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    assert_int_equal(ext_critical(root, NID_key_usage), 1);
    assert_non_null(X509_get0_subject_key_id(root));
    EVP_PKEY *pub = X509_get0_pubkey(root);
    assert_true(EVP_PKEY_is_a(pub, "EC"));
    char group[64];
    size_t glen;
    assert_int_equal(EVP_PKEY_get_group_name(pub, group, sizeof(group), &glen), 1);
    assert_string_equal(group, "prime256v1");
    long life = lifetime_of(root);
    assert_int_equal(life, 3650L * 86400L + 60);
    assert_true(ASN1_STRING_length(X509_get0_serialNumber(root)) >= 15);

    /* The key file holds the root's key. */
    join(path, sizeof(path), cadir, "ca.key");
    char *key_file = read_text(path);
    BIO *bio = BIO_new_mem_buf(key_file, -1);
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    assert_non_null(key);
    assert_int_equal(X509_check_private_key(root, key), 1);
    EVP_PKEY_free(key);
    BIO_free(bio);
    veil_ca_free(ca);

    /* Second start: the same CA, files untouched. */
    ca = open_ca(dir);
    assert_string_equal(veil_ca_bundle_pem(ca), bundle_file);
    join(path, sizeof(path), cadir, "ca.crt");
    char *crt_again = read_text(path);
    assert_string_equal(crt_again, crt_file);
    join(path, sizeof(path), cadir, "ca.key");
    char *key_again = read_text(path);
    assert_string_equal(key_again, key_file);
    veil_ca_free(ca);

    /* A third start in another dir makes a different root. */
    char *dir2 = make_tmpdir();
    ca = open_ca(dir2);
    assert_string_not_equal(veil_ca_bundle_pem(ca), bundle_file);
    veil_ca_free(ca);
    remove_tmpdir(dir2);

    X509_free(root);
    free(bundle_file);
    free(crt_file);
    free(crt_again);
    free(key_file);
    free(key_again);
}

static void test_issue_verifies_with_openssl(void **state)
{
    const char *dir = *state;
    struct veil_ca *ca = open_ca(dir);
    char *key = NULL, *cert = NULL;
    issue(ca, WEB, 0, &key, &cert);
    assert_int_equal(cert_count(cert), 1); /* a root CA sends no chain */

    write_text(dir, "bundle.pem", veil_ca_bundle_pem(ca));
    write_text(dir, "cert.pem", cert);
    write_text(dir, "key.pem", key);
    assert_int_equal(verify_cli(dir, "bundle.pem", NULL, "cert.pem", ""), 0);
    assert_int_equal(verify_cli(dir, "bundle.pem", NULL, "cert.pem", "-x509_strict"), 0);
    assert_int_equal(verify_cli(dir, "bundle.pem", NULL, "cert.pem", "-purpose sslserver"), 0);
    assert_int_equal(verify_cli(dir, "bundle.pem", NULL, "cert.pem", "-purpose sslclient"), 0);
    check_san_cli(dir, "cert.pem", WEB);

    char out[4096];
    assert_int_equal(
        run(out, sizeof(out), "cd '%s' && openssl x509 -noout -subject -in cert.pem", dir), 0);
    assert_string_equal(out, "subject=\n");
    /* The key goes with the certificate. */
    assert_int_equal(run(out, sizeof(out),
                         "cd '%s' && test \"$(openssl x509 -noout -pubkey -in cert.pem)\" = "
                         "\"$(openssl pkey -pubout -in key.pem)\"",
                         dir),
                     0);

    X509 *leaf = first_cert(cert);
    X509 *root = first_cert(veil_ca_bundle_pem(ca));
    check_leaf_profile(leaf, root, WEB);
    X509_free(leaf);
    X509_free(root);

    /* A node identity is issued the same way. */
    char *nkey = NULL, *ncert = NULL;
    issue(ca, "spiffe://cluster.local/veil/node/worker-1", 0, &nkey, &ncert);
    write_text(dir, "node.pem", ncert);
    assert_int_equal(verify_cli(dir, "bundle.pem", NULL, "node.pem", "-x509_strict"), 0);
    check_san_cli(dir, "node.pem", "spiffe://cluster.local/veil/node/worker-1");

    struct veil_ca_stats st;
    veil_ca_stats(ca, &st);
    assert_int_equal(st.issued, 2);
    assert_int_equal(st.refused, 0);

    veil_free(key);
    veil_free(cert);
    veil_free(nkey);
    veil_free(ncert);
    veil_ca_free(ca);
}

static void test_csr_asks_are_ignored(void **state)
{
    const char *dir = *state;
    struct veil_ca *ca = open_ca(dir);
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    assert_non_null(key);
    char *csr = evil_csr(key, "DNS:evil.example,IP:10.1.2.3,email:a@b.example,"
                              "URI:spiffe://cluster.local/ns/kube-system/sa/admin,"
                              "URI:spiffe://other.example/ns/a/sa/b");
    char *cert = NULL;
    char err[512] = "";
    int rc = sign(ca, csr, WEB, 0, &cert, err, sizeof(err));
    if (rc != 0)
        fail_msg("%s", err);

    X509 *leaf = first_cert(cert);
    X509 *root = first_cert(veil_ca_bundle_pem(ca));
    check_leaf_profile(leaf, root, WEB);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(leaf), key), 1);

    write_text(dir, "bundle.pem", veil_ca_bundle_pem(ca));
    write_text(dir, "cert.pem", cert);
    assert_int_equal(verify_cli(dir, "bundle.pem", NULL, "cert.pem", "-x509_strict"), 0);
    check_san_cli(dir, "cert.pem", WEB);

    X509_free(leaf);
    X509_free(root);
    veil_free(cert);
    free(csr);
    EVP_PKEY_free(key);
    veil_ca_free(ca);
}

static void test_csr_new_round_trip(void **state)
{
    const char *dir = *state;
    struct veil_ca *ca = open_ca(dir);
    char *key_pem = NULL, *csr_pem = NULL, *cert = NULL;
    char err[512] = "";
    assert_int_equal(veil_csr_new(WEB, &key_pem, &csr_pem, err, sizeof(err)), 0);
    assert_non_null(strstr(key_pem, "-----BEGIN PRIVATE KEY-----"));
    assert_non_null(strstr(csr_pem, "-----BEGIN CERTIFICATE REQUEST-----"));
    write_text(dir, "req.csr", csr_pem);
    char out[4096];
    assert_int_equal(
        run(out, sizeof(out), "cd '%s' && openssl req -verify -noout -text -in req.csr", dir), 0);
    assert_non_null(strstr(out, "URI:" WEB));

    assert_int_equal(sign(ca, csr_pem, WEB, 0, &cert, err, sizeof(err)), 0);
    X509 *leaf = first_cert(cert);
    BIO *bio = BIO_new_mem_buf(key_pem, -1);
    EVP_PKEY *key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
    assert_non_null(key);
    assert_int_equal(X509_check_private_key(leaf, key), 1);
    veil_free(csr_pem);
    veil_free(key_pem);

    assert_int_equal(veil_csr_new("spiffe://td/ns/a/sa/b?x", &key_pem, &csr_pem, err, sizeof(err)),
                     -EINVAL);
    assert_null(key_pem);
    assert_null(csr_pem);
    assert_non_null(strstr(err, "not a veil SPIFFE ID"));

    EVP_PKEY_free(key);
    BIO_free(bio);
    X509_free(leaf);
    veil_free(cert);
    veil_ca_free(ca);
}

static void test_lifetime(void **state)
{
    const char *dir = *state;
    struct veil_ca *ca = open_ca(dir);
    char *key = NULL, *cert = NULL;
    char err[512];

    issue(ca, WEB, 0, &key, &cert);
    X509 *leaf = first_cert(cert);
    assert_int_equal(lifetime_of(leaf), 86400 + 60);
    time_t now = time(NULL);
    int days, secs;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(leaf), NULL), 1);
    assert_true(days == 0 && secs >= 60 && secs <= 65); /* notBefore = now - 60 s */
    assert_true(X509_cmp_time(X509_get0_notAfter(leaf), &now) > 0);
    X509_free(leaf);
    veil_free(key);
    veil_free(cert);

    issue(ca, WEB, 600, &key, &cert);
    leaf = first_cert(cert);
    assert_int_equal(lifetime_of(leaf), 600 + 60);
    X509_free(leaf);
    veil_free(key);
    veil_free(cert);

    assert_int_equal(veil_ca_issue(ca, WEB, -1, &key, &cert, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "lifetime"));
    assert_int_equal(
        veil_ca_issue(ca, WEB, VEIL_CA_LIFETIME_MAX + 1, &key, &cert, err, sizeof(err)), -EINVAL);
    assert_null(key);
    assert_null(cert);
    veil_ca_free(ca);

    /* The default is configurable. */
    struct veil_ca_opts opts = {.state_dir = dir, .leaf_lifetime_s = 3600};
    assert_int_equal(veil_ca_open(&ca, &opts, err, sizeof(err)), 0);
    issue(ca, WEB, 0, &key, &cert);
    leaf = first_cert(cert);
    assert_int_equal(lifetime_of(leaf), 3600 + 60);
    X509_free(leaf);
    veil_free(key);
    veil_free(cert);

    /* A leaf never outlives its CA (10 years): asked for 10 years, it ends with the root. */
    issue(ca, WEB, VEIL_CA_LIFETIME_MAX, &key, &cert);
    leaf = first_cert(cert);
    X509 *root = first_cert(veil_ca_bundle_pem(ca));
    assert_true(ASN1_TIME_compare(X509_get0_notAfter(leaf), X509_get0_notAfter(root)) <= 0);
    X509_free(root);
    X509_free(leaf);
    veil_free(key);
    veil_free(cert);
    veil_ca_free(ca);
}

static void test_bad_csr_refused(void **state)
{
    const char *dir = *state;
    struct veil_ca *ca = open_ca(dir);
    char err[512];
    char *cert = (char *)"sentinel";

    /* A valid CSR whose signature's last byte is flipped. */
    EVP_PKEY *key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    char *good = csr_for_key(key);
    BIO *bio = BIO_new_mem_buf(good, -1);
    X509_REQ *req = PEM_read_bio_X509_REQ(bio, NULL, NULL, NULL);
    assert_non_null(req);
    BIO_free(bio);
    unsigned char *der = NULL;
    int der_len = i2d_X509_REQ(req, &der);
    assert_true(der_len > 0);
    der[der_len - 1] ^= 0x01;
    bio = BIO_new(BIO_s_mem());
    assert_true(PEM_write_bio(bio, "CERTIFICATE REQUEST", "", der, der_len) > 0);
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    char *broken = strndup(data, (size_t)n);
    BIO_free(bio);
    OPENSSL_free(der);
    X509_REQ_free(req);

    assert_int_equal(sign(ca, broken, WEB, 0, &cert, err, sizeof(err)), -EINVAL);
    assert_null(cert);
    if (strstr(err, "CSR signature does not verify") == NULL)
        fail_msg("unclear error: %s", err);
    /* ... while the unbroken one is signed (the control that the test can pass). */
    assert_int_equal(sign(ca, good, WEB, 0, &cert, err, sizeof(err)), 0);
    veil_free(cert);

    /* Not a CSR at all, empty, or too big. */
    assert_int_equal(sign(ca, "hello", WEB, 0, &cert, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "cannot read the CSR"));
    assert_int_equal(veil_ca_sign_csr(ca, good, 0, WEB, 0, &cert, err, sizeof(err)), -EINVAL);
    assert_int_equal(
        veil_ca_sign_csr(ca, good, VEIL_CA_CSR_MAX + 1, WEB, 0, &cert, err, sizeof(err)), -EINVAL);
    /* A PEM cut in the middle. */
    assert_int_equal(veil_ca_sign_csr(ca, good, strlen(good) / 2, WEB, 0, &cert, err, sizeof(err)),
                     -EINVAL);

    /* Keys that are not accepted: EC P-384, RSA 1024. RSA 2048 is. */
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    char *csr384 = csr_for_key(p384);
    assert_int_equal(sign(ca, csr384, WEB, 0, &cert, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "P-256"));
    EVP_PKEY *rsa1k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    char *csr1k = csr_for_key(rsa1k);
    assert_int_equal(sign(ca, csr1k, WEB, 0, &cert, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "RSA of 1024 bits"));
    EVP_PKEY *rsa2k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
    char *csr2k = csr_for_key(rsa2k);
    assert_int_equal(sign(ca, csr2k, WEB, 0, &cert, err, sizeof(err)), 0);
    X509 *leaf = first_cert(cert);
    assert_int_equal(X509_get_key_usage(leaf), KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT);
    X509_free(leaf);
    write_text(dir, "bundle.pem", veil_ca_bundle_pem(ca));
    write_text(dir, "rsa.pem", cert);
    assert_int_equal(verify_cli(dir, "bundle.pem", NULL, "rsa.pem", "-x509_strict"), 0);
    veil_free(cert);

    struct veil_ca_stats st;
    veil_ca_stats(ca, &st);
    assert_int_equal(st.issued, 2);
    assert_int_equal(st.refused, 7);
    assert_int_equal(ERR_peek_error(), 0);

    free(csr2k);
    free(csr1k);
    free(csr384);
    EVP_PKEY_free(rsa2k);
    EVP_PKEY_free(rsa1k);
    EVP_PKEY_free(p384);
    free(broken);
    free(good);
    EVP_PKEY_free(key);
    veil_ca_free(ca);
}

static void test_bad_san_refused(void **state)
{
    const char *dir = *state;
    struct veil_ca *ca = open_ca(dir);
    char *key = NULL, *cert = NULL;
    char err[512];
    static const char *const bad[] = {
        "spiffe://other.example/ns/default/sa/web", /* another trust domain */
        "spiffe://cluster.local/ns/default/sa/web?x",
        "spiffe://cluster.local/ns/default/sa/web,DNS:evil.example",
        "spiffe://cluster.local/other",
        "https://cluster.local/ns/default/sa/web",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(veil_ca_issue(ca, bad[i], 0, &key, &cert, err, sizeof(err)), -EINVAL);
        assert_null(key);
        assert_null(cert);
    }
    assert_int_equal(veil_ca_issue(ca, NULL, 0, &key, &cert, err, sizeof(err)), -EINVAL);
    assert_int_equal(veil_ca_issue(ca, bad[0], 0, &key, &cert, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "trust domain other.example is not this CA's (cluster.local)"));
    /* err may be absent. */
    assert_int_equal(veil_ca_issue(ca, bad[1], 0, &key, &cert, NULL, 0), -EINVAL);
    struct veil_ca_stats st;
    veil_ca_stats(ca, &st);
    assert_int_equal(st.refused, 9);
    assert_int_equal(st.issued, 0);
    veil_ca_free(ca);
}

static void test_other_ca_fails_verify(void **state)
{
    const char *dir = *state;
    char *dir2 = make_tmpdir();
    struct veil_ca *ours = open_ca(dir);
    struct veil_ca *theirs = open_ca(dir2);
    char *key = NULL, *cert = NULL;
    issue(theirs, WEB, 0, &key, &cert); /* same trust domain, same SPIFFE ID */
    write_text(dir, "ours.pem", veil_ca_bundle_pem(ours));
    write_text(dir, "theirs.pem", veil_ca_bundle_pem(theirs));
    write_text(dir, "cert.pem", cert);
    assert_int_equal(verify_cli(dir, "theirs.pem", NULL, "cert.pem", ""), 0);
    assert_int_not_equal(verify_cli(dir, "ours.pem", NULL, "cert.pem", ""), 0);
    veil_free(key);
    veil_free(cert);
    veil_ca_free(ours);
    veil_ca_free(theirs);
    remove_tmpdir(dir2);
}

static void test_intermediate(void **state)
{
    const char *dir = *state;
    char state_dir[512], int_pem[512], int_key[512], root_pem[512], err[512];
    join(state_dir, sizeof(state_dir), dir, "state");
    join(int_pem, sizeof(int_pem), dir, "int.pem");
    join(int_key, sizeof(int_key), dir, "int.key");
    join(root_pem, sizeof(root_pem), dir, "root.pem");
    cli_root(dir);
    cli_signed(dir, "int", "v3_int", 2);

    /* An intermediate without its root is refused, and nothing is written. */
    struct veil_ca *ca = NULL;
    struct veil_ca_opts opts = {
        .state_dir = state_dir, .ca_cert_path = int_pem, .ca_key_path = int_key};
    assert_int_equal(veil_ca_open(&ca, &opts, err, sizeof(err)), -EINVAL);
    assert_null(ca);
    assert_non_null(strstr(err, int_pem));
    assert_non_null(strstr(err, "not a self-signed root"));
    assert_false(exists(state_dir, "ca/ca.crt"));
    assert_false(exists(state_dir, "ca/ca.key"));

    /* With a root bundle it does not chain to: refused, naming both files. */
    char *other = make_tmpdir();
    struct veil_ca *other_ca = open_ca(other);
    write_text(dir, "wrong-root.pem", veil_ca_bundle_pem(other_ca));
    veil_ca_free(other_ca);
    remove_tmpdir(other);
    char wrong[512];
    join(wrong, sizeof(wrong), dir, "wrong-root.pem");
    opts.root_bundle_path = wrong;
    assert_int_equal(veil_ca_open(&ca, &opts, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, int_pem));
    assert_non_null(strstr(err, wrong));
    assert_non_null(strstr(err, "unable to get local issuer certificate"));

    /* With its root. */
    opts.root_bundle_path = root_pem;
    int rc = veil_ca_open(&ca, &opts, err, sizeof(err));
    if (rc != 0)
        fail_msg("%s", err);
    char *root_text = read_text(root_pem);
    char *int_text = read_text(int_pem);
    X509 *root = first_cert(root_text);
    X509 *bundle_root = first_cert(veil_ca_bundle_pem(ca));
    assert_int_equal(X509_cmp(root, bundle_root), 0);
    assert_int_equal(cert_count(veil_ca_bundle_pem(ca)), 1);
    X509 *inter = first_cert(int_text);
    X509 *chain0 = first_cert(veil_ca_chain_pem(ca));
    assert_int_equal(X509_cmp(inter, chain0), 0);
    assert_int_equal(cert_count(veil_ca_chain_pem(ca)), 1);

    char *key = NULL, *cert = NULL;
    issue(ca, WEB, 0, &key, &cert);
    assert_int_equal(cert_count(cert), 2); /* leaf, then the intermediate */
    X509 *leaf = first_cert(cert);
    check_leaf_profile(leaf, inter, WEB);
    X509_free(leaf);
    write_text(dir, "cert.pem", cert);
    write_text(dir, "chain.pem", veil_ca_chain_pem(ca));
    assert_int_equal(verify_cli(dir, "root.pem", "chain.pem", "cert.pem", ""), 0);
    assert_int_equal(verify_cli(dir, "root.pem", "chain.pem", "cert.pem", "-x509_strict"), 0);
    assert_int_equal(verify_cli(dir, "root.pem", "cert.pem", "cert.pem", ""), 0);
    /* Without the chain, the root alone does not verify the leaf. */
    assert_int_not_equal(verify_cli(dir, "root.pem", NULL, "cert.pem", ""), 0);
    check_san_cli(dir, "cert.pem", WEB);
    veil_free(key);
    veil_free(cert);
    veil_ca_free(ca);

    /* Copied into the state dir, with the key's mode; a restart needs no paths. */
    char cadir[512];
    join(cadir, sizeof(cadir), state_dir, "ca");
    assert_int_equal(mode_of(cadir, "ca.key"), 0600);
    assert_int_equal(mode_of(state_dir, "ca"), 0700);
    ca = open_ca(state_dir);
    X509 *again = first_cert(veil_ca_chain_pem(ca));
    assert_int_equal(X509_cmp(inter, again), 0);
    X509_free(again);
    issue(ca, "spiffe://cluster.local/ns/prod/sa/api", 0, &key, &cert);
    write_text(dir, "cert2.pem", cert);
    assert_int_equal(verify_cli(dir, "root.pem", "chain.pem", "cert2.pem", "-x509_strict"), 0);
    veil_free(key);
    veil_free(cert);
    veil_ca_free(ca);

    X509_free(chain0);
    X509_free(inter);
    X509_free(bundle_root);
    X509_free(root);
    free(int_text);
    free(root_text);
}

static void test_given_root(void **state)
{
    const char *dir = *state;
    char state_dir[512], root_pem[512], root_key[512], err[512];
    join(state_dir, sizeof(state_dir), dir, "state");
    join(root_pem, sizeof(root_pem), dir, "root.pem");
    join(root_key, sizeof(root_key), dir, "root.key");
    cli_root(dir);
    struct veil_ca_opts opts = {
        .state_dir = state_dir, .ca_cert_path = root_pem, .ca_key_path = root_key};
    struct veil_ca *ca = NULL;
    int rc = veil_ca_open(&ca, &opts, err, sizeof(err));
    if (rc != 0)
        fail_msg("%s", err);
    assert_string_equal(veil_ca_chain_pem(ca), "");
    char *root_text = read_text(root_pem);
    X509 *root = first_cert(root_text);
    X509 *bundle_root = first_cert(veil_ca_bundle_pem(ca));
    assert_int_equal(X509_cmp(root, bundle_root), 0);
    char *key = NULL, *cert = NULL;
    issue(ca, WEB, 0, &key, &cert);
    write_text(dir, "cert.pem", cert);
    assert_int_equal(verify_cli(dir, "root.pem", NULL, "cert.pem", "-x509_strict"), 0);
    veil_free(key);
    veil_free(cert);
    veil_ca_free(ca);
    X509_free(root);
    X509_free(bundle_root);
    free(root_text);
}

static void expect_refused(const struct veil_ca_opts *opts, int want_rc, const char *want1,
                           const char *want2)
{
    struct veil_ca *ca = (struct veil_ca *)1;
    char err[512] = "";
    int rc = veil_ca_open(&ca, opts, err, sizeof(err));
    assert_null(ca);
    if (rc != want_rc || strstr(err, want1) == NULL || (want2 && strstr(err, want2) == NULL))
        fail_msg("rc %d, err \"%s\"; wanted %d, \"%s\", \"%s\"", rc, err, want_rc, want1,
                 want2 ? want2 : "");
}

static void test_given_ca_refused(void **state)
{
    const char *dir = *state;
    char state_dir[512], p[6][512];
    join(state_dir, sizeof(state_dir), dir, "state");
    cli_root(dir);
    cli_signed(dir, "leaf", "v3_leaf", 3);
    cli_signed(dir, "nokus", "v3_nokus", 4);
    cli_signed(dir, "int", "v3_int", 5);
    join(p[0], sizeof(p[0]), dir, "leaf.pem");
    join(p[1], sizeof(p[1]), dir, "leaf.key");
    join(p[2], sizeof(p[2]), dir, "nokus.pem");
    join(p[3], sizeof(p[3]), dir, "nokus.key");
    join(p[4], sizeof(p[4]), dir, "int.pem");
    join(p[5], sizeof(p[5]), dir, "root.key");
    char root_pem[512], missing[512], garbage[512];
    join(root_pem, sizeof(root_pem), dir, "root.pem");
    join(missing, sizeof(missing), dir, "missing.pem");
    join(garbage, sizeof(garbage), dir, "garbage.pem");
    write_text(dir, "garbage.pem",
               "-----BEGIN CERTIFICATE-----\nnot base64!\n"
               "-----END CERTIFICATE-----\n");

    struct veil_ca_opts opts = {.state_dir = state_dir, .root_bundle_path = root_pem};
    /* Not a CA. */
    opts.ca_cert_path = p[0];
    opts.ca_key_path = p[1];
    expect_refused(&opts, -EINVAL, p[0], "not a CA certificate");
    /* A CA without keyCertSign. */
    opts.ca_cert_path = p[2];
    opts.ca_key_path = p[3];
    expect_refused(&opts, -EINVAL, p[2], "keyCertSign");
    /* A CA with somebody else's key: names both files. */
    opts.ca_cert_path = p[4];
    opts.ca_key_path = p[5];
    expect_refused(&opts, -EINVAL, p[5], p[4]);
    expect_refused(&opts, -EINVAL, "does not match", NULL);
    /* A CA whose key is a certificate. */
    opts.ca_key_path = p[4];
    expect_refused(&opts, -EINVAL, p[4], "no readable private key");
    /* Files that are missing or not PEM. */
    opts.ca_cert_path = missing;
    expect_refused(&opts, -ENOENT, missing, "No such file");
    opts.ca_cert_path = garbage;
    expect_refused(&opts, -EINVAL, garbage, "no readable PEM certificate");
    opts.ca_cert_path = p[4];
    opts.ca_key_path = p[5];
    opts.root_bundle_path = garbage;
    expect_refused(&opts, -EINVAL, p[5], NULL); /* the key is checked before the bundle */
    /* Nothing of it reached the state dir. */
    assert_false(exists(state_dir, "ca/ca.crt"));
    assert_false(exists(state_dir, "ca/ca.key"));
    assert_false(exists(state_dir, "ca/bundle.pem"));
}

static void test_bad_opts(void **state)
{
    const char *dir = *state;
    struct veil_ca_opts opts = {0};
    expect_refused(NULL, -EINVAL, "state directory", NULL);
    expect_refused(&opts, -EINVAL, "state directory", NULL);
    opts.state_dir = dir;
    opts.trust_domain = "Example.COM";
    expect_refused(&opts, -EINVAL, "invalid trust domain", NULL);
    opts.trust_domain = NULL;
    opts.ca_cert_path = "/x";
    expect_refused(&opts, -EINVAL, "give both or neither", NULL);
    opts.ca_cert_path = NULL;
    opts.root_bundle_path = "/x";
    expect_refused(&opts, -EINVAL, "root bundle", NULL);
    opts.root_bundle_path = NULL;
    opts.leaf_lifetime_s = -5;
    expect_refused(&opts, -EINVAL, "lifetime", NULL);
    assert_false(exists(dir, "ca"));
}

static void test_partial_state_refused(void **state)
{
    const char *dir = *state;
    char cadir[512], crt[512], key[512];
    join(cadir, sizeof(cadir), dir, "ca");
    join(crt, sizeof(crt), cadir, "ca.crt");
    join(key, sizeof(key), cadir, "ca.key");
    veil_ca_free(open_ca(dir));
    char *key_text = read_text(key);
    assert_int_equal(unlink(crt), 0);
    struct veil_ca_opts opts = {.state_dir = dir};
    expect_refused(&opts, -EINVAL, "holds ca.key but not ca.crt", cadir);
    char *key_after = read_text(key);
    assert_string_equal(key_text, key_after); /* never overwritten */
    free(key_text);
    free(key_after);
}

static void test_trust_domain(void **state)
{
    const char *dir = *state;
    struct veil_ca_opts opts = {.state_dir = dir, .trust_domain = "example.org"};
    struct veil_ca *ca = NULL;
    char err[512];
    assert_int_equal(veil_ca_open(&ca, &opts, err, sizeof(err)), 0);
    assert_string_equal(veil_ca_trust_domain(ca), "example.org");
    X509 *root = first_cert(veil_ca_bundle_pem(ca));
    char name[256];
    X509_NAME_oneline(X509_get_subject_name(root), name, sizeof(name));
    assert_string_equal(name, "/O=veil/CN=veil root CA example.org");
    X509_free(root);
    char *key = NULL, *cert = NULL;
    assert_int_equal(veil_ca_issue(ca, WEB, 0, &key, &cert, err, sizeof(err)), -EINVAL);
    issue(ca, "spiffe://example.org/ns/default/sa/web", 0, &key, &cert);
    veil_free(key);
    veil_free(cert);
    veil_ca_free(ca);

    /* A trust domain too long for a common name still makes a root. */
    char *dir2 = make_tmpdir();
    char td[200];
    memset(td, 'a', sizeof(td));
    td[199] = '\0';
    opts.state_dir = dir2;
    opts.trust_domain = td;
    assert_int_equal(veil_ca_open(&ca, &opts, err, sizeof(err)), 0);
    root = first_cert(veil_ca_bundle_pem(ca));
    X509_NAME_oneline(X509_get_subject_name(root), name, sizeof(name));
    assert_string_equal(name, "/O=veil/CN=veil root CA");
    X509_free(root);
    veil_ca_free(ca);
    remove_tmpdir(dir2);
}

static void test_issue_files(void **state)
{
    const char *dir = *state;
    char out[512], msg[4096], err[512];
    join(out, sizeof(out), dir, "out");
    struct veil_ca *ca = open_ca(dir);
    int rc = veil_ca_issue_files(ca, WEB, 0, out, err, sizeof(err));
    if (rc != 0)
        fail_msg("%s", err);
    assert_int_equal(mode_of(dir, "out"), 0700);
    assert_int_equal(mode_of(out, "key.pem"), 0600);
    assert_int_equal(mode_of(out, "cert-chain.pem"), 0644);
    assert_int_equal(mode_of(out, "root-cert.pem"), 0644);
    assert_int_equal(verify_cli(out, "root-cert.pem", NULL, "cert-chain.pem", "-x509_strict"), 0);
    check_san_cli(out, "cert-chain.pem", WEB);
    assert_int_equal(run(msg, sizeof(msg),
                         "cd '%s' && test \"$(openssl x509 -noout -pubkey -in cert-chain.pem)\" = "
                         "\"$(openssl pkey -pubout -in key.pem)\"",
                         out),
                     0);
    /* Again into the same directory: replaced, no temporary files left. */
    assert_int_equal(veil_ca_issue_files(ca, WEB, 0, out, err, sizeof(err)), 0);
    assert_int_equal(run(msg, sizeof(msg), "ls '%s' | tr '\\n' ' '", out), 0);
    assert_string_equal(msg, "cert-chain.pem key.pem root-cert.pem ");
    assert_int_equal(veil_ca_issue_files(ca, WEB, 0, "/proc/veil-no-such-dir", err, sizeof(err)),
                     -ENOENT);
    assert_non_null(strstr(err, "/proc/veil-no-such-dir"));
    assert_int_equal(veil_ca_issue_files(ca, WEB, 0, NULL, err, sizeof(err)), -EINVAL);
    struct veil_ca_stats st;
    veil_ca_stats(ca, &st);
    assert_int_equal(st.issued, 3); /* the NULL directory was refused before issuing */
    veil_ca_free(ca);
}

/* Every veil allocation failing in turn: a clean -ENOMEM, no leak, then success. */
static void test_alloc_failures(void **state)
{
    const char *dir = *state;
    char err[512];
    struct veil_ca_opts opts = {.state_dir = dir};
    struct veil_ca *ca = NULL;
    int rc = -ENOMEM;
    long n;
    for (n = 0; rc != 0 && n < 1000; n++) {
        veil_alloc_fail_after(n);
        rc = veil_ca_open(&ca, &opts, err, sizeof(err));
        veil_alloc_fail_reset();
        if (rc != 0) {
            assert_int_equal(rc, -ENOMEM);
            assert_null(ca);
            assert_false(exists(dir, "ca/ca.crt"));
            assert_false(exists(dir, "ca/ca.key"));
        }
    }
    assert_int_equal(rc, 0);
    assert_true(n > 3);
    veil_ca_free(ca);

    rc = -ENOMEM;
    for (n = 0; rc != 0 && n < 1000; n++) {
        veil_alloc_fail_after(n);
        rc = veil_ca_open(&ca, &opts, err, sizeof(err)); /* the reopen path */
        veil_alloc_fail_reset();
        if (rc != 0)
            assert_int_equal(rc, -ENOMEM);
    }
    assert_int_equal(rc, 0);

    char *key_pem = NULL, *csr = NULL, *cert = NULL;
    assert_int_equal(veil_csr_new(WEB, &key_pem, &csr, err, sizeof(err)), 0);
    rc = -ENOMEM;
    for (n = 0; rc != 0 && n < 1000; n++) {
        veil_alloc_fail_after(n);
        rc = sign(ca, csr, WEB, 0, &cert, err, sizeof(err));
        veil_alloc_fail_reset();
        if (rc != 0) {
            assert_int_equal(rc, -ENOMEM);
            assert_null(cert);
        }
    }
    assert_int_equal(rc, 0);
    veil_free(cert);
    veil_free(csr);
    veil_free(key_pem);

    rc = -ENOMEM;
    for (n = 0; rc != 0 && n < 1000; n++) {
        veil_alloc_fail_after(n);
        rc = veil_ca_issue(ca, WEB, 0, &key_pem, &cert, err, sizeof(err));
        veil_alloc_fail_reset();
        if (rc != 0) {
            assert_int_equal(rc, -ENOMEM);
            assert_null(cert);
            assert_null(key_pem);
        }
    }
    assert_int_equal(rc, 0);
    veil_free(cert);
    veil_free(key_pem);

    rc = -ENOMEM;
    for (n = 0; rc != 0 && n < 1000; n++) {
        veil_alloc_fail_after(n);
        rc = veil_csr_new(WEB, &key_pem, &csr, err, sizeof(err));
        veil_alloc_fail_reset();
        if (rc != 0) {
            assert_int_equal(rc, -ENOMEM);
            assert_null(csr);
            assert_null(key_pem);
        }
    }
    assert_int_equal(rc, 0);
    veil_free(csr);
    veil_free(key_pem);
    veil_ca_free(ca);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_start_creates_root, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_issue_verifies_with_openssl, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_csr_asks_are_ignored, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_csr_new_round_trip, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_lifetime, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_bad_csr_refused, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_bad_san_refused, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_other_ca_fails_verify, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_intermediate, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_given_root, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_given_ca_refused, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_bad_opts, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_partial_state_refused, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_trust_domain, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_issue_files, tmp_setup, tmp_teardown),
        cmocka_unit_test_setup_teardown(test_alloc_failures, tmp_setup, tmp_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
