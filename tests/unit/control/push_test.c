#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "control/push.h"
#include "control/push_client.h"
#include "core/alloc.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/metrics.h"
#include "tls/ca.h"
#include "tls/spiffe.h"

#define TD          "cluster.local"
#define SECRET      "s3cr3t-join-token"
#define DEADLINE_MS 5000

/* ---- a small provider ---- */

struct tsub {
    struct tprov *p;
    uint64_t sent;
    char node[64];
    bool observer;
};

struct tprov {
    pthread_mutex_t mu;
    uint64_t version;
    bool big; /* updates larger than the server's max_pending */
    int subscribes, acks, nacks, unsubs;
    bool last_observer;
    uint64_t last_ack, last_nack;
    char nack_reason[128];
    char last_node[64];
};

#define MAX_PENDING (16 * 1024)

static char *update_for(struct tsub *s, uint64_t v)
{
    size_t pad = s->p->big ? 2 * MAX_PENDING : 0;
    char *buf = veil_malloc(256 + pad);
    assert_non_null(buf);
    int n = snprintf(buf, 256, "{\"type\":\"update\",\"version\":%llu,\"node\":\"%s\",\"pad\":\"",
                     (unsigned long long)v, s->node);
    memset(buf + n, 'x', pad);
    strcpy(buf + n + pad, "\"}");
    s->sent = v;
    return buf;
}

static int p_subscribe(void *ctx, const char *node, uint64_t version, bool observer, void **sub,
                       char **update_json)
{
    struct tprov *p = ctx;
    struct tsub *s = veil_calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->p = p;
    snprintf(s->node, sizeof(s->node), "%s", node);
    s->observer = observer;
    s->sent = version;
    pthread_mutex_lock(&p->mu);
    p->subscribes++;
    p->last_observer = observer;
    snprintf(p->last_node, sizeof(p->last_node), "%s", node);
    *update_json = version < p->version ? update_for(s, p->version) : NULL;
    pthread_mutex_unlock(&p->mu);
    *sub = s;
    return 0;
}

static int p_poll(void *sub, char **update_json)
{
    struct tsub *s = sub;
    pthread_mutex_lock(&s->p->mu);
    *update_json = s->sent < s->p->version ? update_for(s, s->p->version) : NULL;
    pthread_mutex_unlock(&s->p->mu);
    return 0;
}

static void p_ack(void *sub, uint64_t version)
{
    struct tsub *s = sub;
    pthread_mutex_lock(&s->p->mu);
    s->p->acks++;
    s->p->last_ack = version;
    pthread_mutex_unlock(&s->p->mu);
}

static void p_nack(void *sub, uint64_t version, const char *reason)
{
    struct tsub *s = sub;
    pthread_mutex_lock(&s->p->mu);
    s->p->nacks++;
    s->p->last_nack = version;
    snprintf(s->p->nack_reason, sizeof(s->p->nack_reason), "%s", reason);
    pthread_mutex_unlock(&s->p->mu);
}

static void p_unsubscribe(void *sub)
{
    struct tsub *s = sub;
    pthread_mutex_lock(&s->p->mu);
    s->p->unsubs++;
    pthread_mutex_unlock(&s->p->mu);
    veil_free(s);
}

static bool p_may_have(void *ctx, const char *node, const char *ns, const char *sa)
{
    (void)ctx;
    return strcmp(node, "node-1") == 0 && strcmp(ns, "default") == 0 && strcmp(sa, "web") == 0;
}

static int prov_get(struct tprov *p, const int *field)
{
    pthread_mutex_lock(&p->mu);
    int v = *field;
    pthread_mutex_unlock(&p->mu);
    return v;
}

/* ---- temp dirs, certificates ---- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static char *make_tmpdir(void)
{
    char tmpl[] = "/tmp/veil-push-test-XXXXXX";
    char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    return strdup(dir);
}

static void remove_tmpdir(char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(dir);
}

static void *read_pem(const char *dir, const char *name, bool key)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/ca/%s", dir, name);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    void *obj = key ? (void *)PEM_read_PrivateKey(f, NULL, NULL, NULL)
                    : (void *)PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(obj);
    return obj;
}

static char *bio_string(BIO *bio)
{
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    char *out = veil_strndup(data, (size_t)n);
    BIO_free(bio);
    return out;
}

/* A leaf for `uri` signed with the CA key of state dir `dir`, valid from
 * now + nb to now + na seconds: for certificates veil_ca_issue() will not
 * make (expired ones, the control plane's own if the CA refuses it). */
static void make_cert(const char *dir, const char *uri, long nb, long na, char **key_pem,
                      char **cert_pem)
{
    X509 *ca = read_pem(dir, "ca.crt", false);
    EVP_PKEY *cakey = read_pem(dir, "ca.key", true);
    EVP_PKEY *key = EVP_EC_gen("P-256");
    assert_non_null(key);
    X509 *x = X509_new();
    X509_set_version(x, 2);
    unsigned char serial[16];
    RAND_bytes(serial, sizeof(serial));
    serial[0] &= 0x7f;
    BIGNUM *bn = BN_bin2bn(serial, sizeof(serial), NULL);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    X509_set_issuer_name(x, X509_get_subject_name(ca));
    X509_gmtime_adj(X509_getm_notBefore(x), nb);
    X509_gmtime_adj(X509_getm_notAfter(x), na);
    X509_set_pubkey(x, key);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, ca, x, NULL, NULL, 0);
    char san[512];
    snprintf(san, sizeof(san), "critical,URI:%s", uri);
    const struct {
        int nid;
        const char *value;
    } exts[] = {
        {NID_subject_alt_name, san},
        {NID_basic_constraints, "critical,CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature,keyEncipherment"},
        {NID_ext_key_usage, "serverAuth,clientAuth"},
    };
    for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, exts[i].nid, exts[i].value);
        assert_non_null(e);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    assert_true(X509_sign(x, cakey, EVP_sha256()) > 0);
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    *cert_pem = bio_string(b);
    b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
    *key_pem = bio_string(b);
    X509_free(x);
    X509_free(ca);
    EVP_PKEY_free(key);
    EVP_PKEY_free(cakey);
}

/* The SPIFFE ID of the first certificate of a PEM (via veil_spiffe_from_cert). */
static int pem_id(const char *pem, char *buf, size_t n)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(x);
    int rc = veil_spiffe_from_cert(x, buf, n);
    X509_free(x);
    return rc;
}

/* ---- the environment: a CA and a server on a loop in a thread ---- */

struct env {
    char *dir;
    struct veil_ca *ca;
    struct veil_loop *loop;
    struct veil_push_server *srv;
    struct veil_metrics *metrics;
    pthread_t thread;
    struct tprov prov;
    uint16_t port;
};

static void *run_loop(void *arg)
{
    veil_loop_run(arg);
    return NULL;
}

static int env_setup(void **state)
{
    struct env *e = calloc(1, sizeof(*e));
    assert_non_null(e);
    e->dir = make_tmpdir();
    pthread_mutex_init(&e->prov.mu, NULL);
    char err[512];
    struct veil_ca_opts co = {.state_dir = e->dir};
    assert_int_equal(veil_ca_open(&e->ca, &co, err, sizeof(err)), 0);
    e->loop = veil_loop_new("push-server");
    assert_non_null(e->loop);
    e->metrics = veil_metrics_new();
    assert_non_null(e->metrics);
    struct veil_push_server_opts so = {
        .bind = "127.0.0.1",
        .ca = e->ca,
        .join_token = SECRET,
        .provider = {.ctx = &e->prov,
                     .subscribe = p_subscribe,
                     .poll = p_poll,
                     .ack = p_ack,
                     .nack = p_nack,
                     .unsubscribe = p_unsubscribe,
                     .may_have = p_may_have},
        .limits = {.max_body = 64 * 1024, .max_pending = MAX_PENDING, .handshake_ms = 1000},
        .metrics = e->metrics,
    };
    e->srv = veil_push_server_new(e->loop, &so, err, sizeof(err));
    char *key = NULL, *cert = NULL;
    if (e->srv == NULL) {
        /* The CA may not (yet) issue spiffe://<td>/veil/control: give the
         * server a certificate made with the CA's key. */
        static bool said;
        if (!said)
            print_message("note: server certificate made by the test: %s\n", err);
        said = true;
        make_cert(e->dir, "spiffe://" TD "/veil/control", -60, 86400, &key, &cert);
        so.cert_pem = cert;
        so.key_pem = key;
        e->srv = veil_push_server_new(e->loop, &so, err, sizeof(err));
    }
    veil_free(key);
    veil_free(cert);
    if (e->srv == NULL)
        fail_msg("push server: %s", err);
    e->port = veil_push_server_port(e->srv);
    assert_true(e->port != 0);
    assert_int_equal(pthread_create(&e->thread, NULL, run_loop, e->loop), 0);
    *state = e;
    return 0;
}

static int env_teardown(void **state)
{
    struct env *e = *state;
    veil_loop_stop(e->loop);
    pthread_join(e->thread, NULL);
    veil_push_server_free(e->srv);
    veil_loop_free(e->loop);
    veil_ca_free(e->ca);
    veil_metrics_free(e->metrics);
    remove_tmpdir(e->dir);
    pthread_mutex_destroy(&e->prov.mu);
    free(e);
    return 0;
}

static struct veil_push_stats stats(struct env *e)
{
    struct veil_push_stats s;
    veil_push_server_stats(e->srv, &s);
    return s;
}

/* Counters bumped on the server's thread after the client already saw the
 * outcome: wait (up to the deadline) for `field` to reach `want`. */
#define WAIT_STAT(e, field, want)                                                                  \
    do {                                                                                           \
        for (int i_ = 0; i_ < DEADLINE_MS / 10 && stats(e).field < (want); i_++)                   \
            usleep(10 * 1000);                                                                     \
        assert_int_equal(stats(e).field, (want));                                                  \
    } while (0)

static struct veil_push_client_opts client_opts(struct env *e, const char *cert, const char *key)
{
    struct veil_push_client_opts o = {
        .addr = "127.0.0.1",
        .port = e->port,
        .cert_pem = cert,
        .key_pem = key,
        .trust_bundle_pem = veil_ca_bundle_pem(e->ca),
        .server_id = veil_push_server_identity(e->srv),
        .timeout_ms = DEADLINE_MS,
    };
    return o;
}

/* A node certificate straight from the CA. */
static void node_cert(struct env *e, const char *node, char **key, char **cert)
{
    char id[256], err[512];
    assert_int_equal(veil_spiffe_node_id(id, sizeof(id), TD, node), 0);
    assert_int_equal(veil_ca_issue(e->ca, id, 0, key, cert, err, sizeof(err)), 0);
}

/* ---- join ---- */

static void test_join_ok(void **state)
{
    struct env *e = *state;
    const char *token = veil_push_server_join_token(e->srv);
    assert_non_null(token);
    assert_int_equal(strncmp(token, SECRET ".", strlen(SECRET) + 1), 0);

    struct veil_push_client_opts o = {.addr = "127.0.0.1", .port = e->port};
    struct veil_push_join_result r;
    char err[512], id[512];
    int rc = veil_push_join(&o, token, "node-1", &r, err, sizeof(err));
    if (rc != 0)
        fail_msg("join: %s", err);
    assert_int_equal(pem_id(r.cert_pem, id, sizeof(id)), 0);
    assert_string_equal(id, "spiffe://" TD "/veil/node/node-1");
    assert_string_equal(r.trust_bundle_pem, veil_ca_bundle_pem(e->ca));
    assert_string_equal(r.control_id, "spiffe://" TD "/veil/control");
    assert_non_null(strstr(r.key_pem, "PRIVATE KEY"));
    assert_int_equal(stats(e).joins_issued, 1);
    char *text;
    size_t len;
    assert_int_equal(veil_metrics_render(e->metrics, &text, &len), 0);
    assert_non_null(strstr(text, "\nveil_push_joins_total 1\n"));
    assert_non_null(strstr(text, "\nveil_push_connections_total "));
    veil_free(text);

    /* The joined node can use its certificate right away. */
    struct veil_push_client_opts co = client_opts(e, r.cert_pem, r.key_pem);
    char *key = NULL, *cert = NULL;
    rc = veil_push_request_certificate(&co, "default", "web", &key, &cert, NULL, err, sizeof(err));
    if (rc != 0)
        fail_msg("certificate: %s", err);
    veil_free(key);
    veil_free(cert);
    veil_push_join_result_free(&r);
}

static void test_join_bad_token(void **state)
{
    struct env *e = *state;
    const char *token = veil_push_server_join_token(e->srv);
    char bad[512], err[512];
    snprintf(bad, sizeof(bad), "wrong-secret%s", strchr(token, '.'));
    struct veil_push_client_opts o = {.addr = "127.0.0.1", .port = e->port};
    struct veil_push_join_result r;
    assert_int_equal(veil_push_join(&o, bad, "node-1", &r, err, sizeof(err)), -EACCES);
    assert_non_null(strstr(err, "403"));
    assert_null(r.cert_pem);
    assert_int_equal(stats(e).joins_refused, 1);

    /* A pin that is not the server's root: the client refuses the server. */
    snprintf(bad, sizeof(bad), SECRET ".%064d", 0);
    int rc = veil_push_join(&o, bad, "node-1", &r, err, sizeof(err));
    assert_true(rc < 0 && rc != -EACCES);
    assert_null(r.cert_pem);
    assert_int_equal(stats(e).joins_issued, 0);
}

static void test_join_malformed(void **state)
{
    struct env *e = *state;
    struct veil_push_client_opts o = client_opts(e, NULL, NULL);
    int status = 0;
    char *body = NULL, err[512];
    assert_int_equal(
        veil_push_call(&o, "/v1/join", "{\"token\": 1", &status, &body, err, sizeof(err)), 0);
    assert_int_equal(status, 400);
    veil_free(body);
    /* Over limits.max_body (64 KiB in these tests). */
    size_t n = 100 * 1024;
    char *big = malloc(n + 1);
    memset(big, 'x', n);
    big[n] = '\0';
    assert_int_equal(veil_push_call(&o, "/v1/join", big, &status, &body, err, sizeof(err)), 0);
    assert_int_equal(status, 413);
    veil_free(body);
    free(big);
    assert_true(stats(e).bad_input >= 2);
    assert_int_equal(stats(e).joins_issued, 0);
}

/* ---- certificates ---- */

static void test_certificate_allowed_and_refused(void **state)
{
    struct env *e = *state;
    char *nkey, *ncert, *key = NULL, *cert = NULL, *bundle = NULL, err[512], id[512];
    node_cert(e, "node-1", &nkey, &ncert);
    struct veil_push_client_opts o = client_opts(e, ncert, nkey);

    int rc =
        veil_push_request_certificate(&o, "default", "web", &key, &cert, &bundle, err, sizeof(err));
    if (rc != 0)
        fail_msg("certificate: %s", err);
    assert_int_equal(pem_id(cert, id, sizeof(id)), 0);
    assert_string_equal(id, "spiffe://" TD "/ns/default/sa/web");
    assert_string_equal(bundle, veil_ca_bundle_pem(e->ca));
    veil_free(key);
    veil_free(cert);
    veil_free(bundle);
    assert_int_equal(stats(e).certs_issued, 1);

    rc = veil_push_request_certificate(&o, "default", "db", &key, &cert, NULL, err, sizeof(err));
    assert_int_equal(rc, -EACCES);
    assert_null(cert);
    assert_non_null(strstr(err, "node node-1 runs no workload with identity default/db"));
    assert_int_equal(stats(e).certs_refused, 1);

    /* The node name comes from the certificate, never from the body. */
    char *k2, *c2;
    node_cert(e, "node-2", &k2, &c2);
    struct veil_push_client_opts o2 = client_opts(e, c2, k2);
    rc = veil_push_request_certificate(&o2, "default", "web", &key, &cert, NULL, err, sizeof(err));
    assert_int_equal(rc, -EACCES);
    assert_non_null(strstr(err, "node node-2"));
    assert_int_equal(stats(e).certs_refused, 2);
    veil_free(k2);
    veil_free(c2);
    veil_free(nkey);
    veil_free(ncert);
}

/* ---- watch ---- */

struct wclient {
    struct veil_push_client *pc;
    int updates;
    uint64_t last_version;
    char last[256];
    bool connected;
    bool ended;
    int end_status;
    char end_err[256];
};

static void w_update(struct veil_push_client *pc, const char *json, size_t len, void *arg)
{
    (void)pc;
    struct wclient *w = arg;
    w->updates++;
    snprintf(w->last, sizeof(w->last), "%.*s", (int)len, json);
    const char *v = strstr(json, "\"version\":");
    w->last_version = v != NULL ? strtoull(v + 10, NULL, 10) : 0;
}

static void w_end(struct veil_push_client *pc, int status, const char *err, void *arg)
{
    (void)pc;
    struct wclient *w = arg;
    w->ended = true;
    w->end_status = status;
    snprintf(w->end_err, sizeof(w->end_err), "%s", err);
}

static void w_connected(struct veil_push_client *pc, const char *err, void *arg)
{
    (void)pc;
    struct wclient *w = arg;
    if (err == NULL)
        w->connected = true;
    else
        snprintf(w->end_err, sizeof(w->end_err), "%s", err);
}

struct waiter {
    struct veil_loop *loop;
    struct veil_timer tick;
    bool (*pred)(void *arg);
    void *arg;
    uint64_t deadline;
    bool ok;
};

static void w_tick(struct veil_timer *t)
{
    struct waiter *w = (struct waiter *)((char *)t - offsetof(struct waiter, tick));
    if (w->pred(w->arg)) {
        w->ok = true;
        veil_loop_stop(w->loop);
    } else if (veil_now_ms() > w->deadline) {
        veil_loop_stop(w->loop);
    }
}

/* Runs `loop` until pred(arg) holds or DEADLINE_MS pass. */
static bool run_until(struct veil_loop *loop, bool (*pred)(void *), void *arg)
{
    struct waiter w = {.loop = loop, .pred = pred, .arg = arg};
    w.deadline = veil_now_ms() + DEADLINE_MS;
    veil_timer_start(loop, &w.tick, 0, 5, w_tick);
    veil_loop_run(loop);
    veil_timer_stop(&w.tick);
    return w.ok;
}

static struct wclient *g_w;
static int g_want;

static bool both_have(void *arg)
{
    (void)arg;
    return g_w[0].updates >= g_want && g_w[1].updates >= g_want;
}

static bool acks_in(void *arg)
{
    struct tprov *p = arg;
    return prov_get(p, &p->acks) >= 1 && prov_get(p, &p->nacks) >= 1;
}

static bool time_passed(void *arg)
{
    return veil_now_ms() >= *(const uint64_t *)arg;
}

static bool unsubs_2(void *arg)
{
    struct tprov *p = arg;
    return prov_get(p, &p->unsubs) >= 2;
}

static void post_notify(void *arg)
{
    veil_push_server_notify(arg);
}

static void test_watch_two_clients(void **state)
{
    struct env *e = *state;
    pthread_mutex_lock(&e->prov.mu);
    e->prov.version = 1;
    pthread_mutex_unlock(&e->prov.mu);

    struct veil_loop *loop = veil_loop_new("push-clients");
    assert_non_null(loop);
    struct wclient w[2];
    memset(w, 0, sizeof(w));
    char *keys[2], *certs[2], err[512];
    const char *names[2] = {"node-1", "node-2"};
    for (int i = 0; i < 2; i++) {
        node_cert(e, names[i], &keys[i], &certs[i]);
        struct veil_push_client_opts o = client_opts(e, certs[i], keys[i]);
        o.ping_ms = 100; /* exercise PING both ways */
        w[i].pc = veil_push_client_connect(loop, &o, w_connected, &w[i], err, sizeof(err));
        assert_non_null(w[i].pc);
        assert_int_equal(veil_push_client_watch(w[i].pc, 0, false, w_update, w_end, &w[i]), 0);
    }
    g_w = w;
    g_want = 1;
    assert_true(run_until(loop, both_have, NULL));
    assert_true(w[0].connected && w[1].connected);
    assert_int_equal(w[0].last_version, 1);
    assert_non_null(strstr(w[1].last, "\"node\":\"node-2\""));
    assert_int_equal(stats(e).subscribers, 2);

    /* The store changes: both receive the update after notify. */
    pthread_mutex_lock(&e->prov.mu);
    e->prov.version = 2;
    pthread_mutex_unlock(&e->prov.mu);
    assert_int_equal(veil_loop_post(e->loop, post_notify, e->srv), 0);
    g_want = 2;
    assert_true(run_until(loop, both_have, NULL));
    assert_int_equal(w[0].last_version, 2);
    assert_int_equal(w[1].last_version, 2);
    assert_true(stats(e).updates_pushed >= 4);

    /* ack and nack reach the provider. */
    assert_int_equal(veil_push_client_ack(w[0].pc, 2), 0);
    assert_int_equal(veil_push_client_nack(w[1].pc, 2, "route table invalid"), 0);
    assert_true(run_until(loop, acks_in, &e->prov));
    pthread_mutex_lock(&e->prov.mu);
    assert_int_equal(e->prov.last_ack, 2);
    assert_int_equal(e->prov.last_nack, 2);
    assert_string_equal(e->prov.nack_reason, "route table invalid");
    pthread_mutex_unlock(&e->prov.mu);

    /* Let a few PINGs go by (every 100 ms from the clients); the streams
     * stay up. */
    uint64_t until = veil_now_ms() + 400;
    assert_true(run_until(loop, time_passed, &until));
    assert_false(w[0].ended || w[1].ended);

    for (int i = 0; i < 2; i++) {
        veil_push_client_free(w[i].pc);
        veil_free(keys[i]);
        veil_free(certs[i]);
    }
    assert_true(run_until(loop, unsubs_2, &e->prov));
    veil_loop_free(loop);
    for (int i = 0; i < 50 && stats(e).subscribers != 0; i++)
        usleep(10 * 1000);
    assert_int_equal(stats(e).subscribers, 0);
}

static bool ended(void *arg)
{
    return ((struct wclient *)arg)->ended;
}

static void test_watch_slow_subscriber(void **state)
{
    struct env *e = *state;
    pthread_mutex_lock(&e->prov.mu);
    e->prov.version = 1;
    e->prov.big = true;
    pthread_mutex_unlock(&e->prov.mu);
    struct veil_loop *loop = veil_loop_new("push-clients");
    struct wclient w = {0};
    char *key, *cert, err[512];
    node_cert(e, "node-1", &key, &cert);
    struct veil_push_client_opts o = client_opts(e, cert, key);
    w.pc = veil_push_client_connect(loop, &o, w_connected, &w, err, sizeof(err));
    assert_non_null(w.pc);
    assert_int_equal(veil_push_client_watch(w.pc, 0, false, w_update, w_end, &w), 0);
    assert_true(run_until(loop, ended, &w));
    assert_int_equal(w.updates, 0);
    assert_non_null(strstr(w.end_err, "ENHANCE_YOUR_CALM"));
    WAIT_STAT(e, slow_disconnects, 1);
    for (int i = 0; i < 500 && prov_get(&e->prov, &e->prov.unsubs) < 1; i++)
        usleep(10 * 1000);
    assert_int_equal(prov_get(&e->prov, &e->prov.unsubs), 1);
    veil_push_client_free(w.pc);
    veil_loop_free(loop);
    veil_free(key);
    veil_free(cert);
}

static bool subscribed(void *arg)
{
    struct tprov *p = arg;
    return prov_get(p, &p->subscribes) >= 1;
}

/* An observer subscribing at the current version: the flag reaches the
 * provider, nothing is due, the stream stays open. */
static void test_watch_observer_up_to_date(void **state)
{
    struct env *e = *state;
    pthread_mutex_lock(&e->prov.mu);
    e->prov.version = 5;
    pthread_mutex_unlock(&e->prov.mu);
    struct veil_loop *loop = veil_loop_new("push-clients");
    struct wclient w = {0};
    char *key, *cert, err[512];
    node_cert(e, "node-3", &key, &cert);
    struct veil_push_client_opts o = client_opts(e, cert, key);
    w.pc = veil_push_client_connect(loop, &o, w_connected, &w, err, sizeof(err));
    assert_non_null(w.pc);
    assert_int_equal(veil_push_client_watch(w.pc, 5, true, w_update, w_end, &w), 0);
    assert_true(run_until(loop, subscribed, &e->prov));
    pthread_mutex_lock(&e->prov.mu);
    assert_true(e->prov.last_observer);
    assert_string_equal(e->prov.last_node, "node-3");
    pthread_mutex_unlock(&e->prov.mu);
    assert_int_equal(w.updates, 0);
    assert_false(w.ended);
    veil_push_client_free(w.pc);
    veil_loop_free(loop);
    veil_free(key);
    veil_free(cert);
}

/* Malformed watch messages reset the stream and are counted. */
static void test_watch_bad_messages(void **state)
{
    struct env *e = *state;
    char *key, *cert, *body = NULL, err[512];
    node_cert(e, "node-1", &key, &cert);
    struct veil_push_client_opts o = client_opts(e, cert, key);
    int status = 0;
    const char *bad[] = {
        "this is not json\n",
        "{\"type\":\"ack\",\"version\":1}\n",           /* before subscribing */
        "{\"type\":\"subscribe\",\"version\":\"x\"}\n", /* mistyped */
        "{\"type\":\"launch\"}\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int rc = veil_push_call(&o, "/v1/watch", bad[i], &status, &body, err, sizeof(err));
        assert_true(rc != 0 || status == 400);
        veil_free(body);
        body = NULL;
        WAIT_STAT(e, bad_input, (uint64_t)i + 1);
    }
    /* A line longer than the limit (64 KiB). */
    size_t n = 100 * 1024;
    char *big = malloc(n + 1);
    memset(big, ' ', n);
    big[n] = '\0';
    int rc = veil_push_call(&o, "/v1/watch", big, &status, &body, err, sizeof(err));
    assert_true(rc != 0 || status == 413);
    veil_free(body);
    free(big);
    WAIT_STAT(e, bad_input, 5);
    assert_int_equal(prov_get(&e->prov, &e->prov.subscribes), 0);
    veil_free(key);
    veil_free(cert);
}

/* ---- refusals on /v1/watch ---- */

#define SUBSCRIBE "{\"type\":\"subscribe\",\"version\":0}\n"

/* A watch call that must be refused: a failed handshake or a 401. */
static void expect_refused(struct env *e, const char *cert, const char *key, bool want_401)
{
    struct veil_push_client_opts o = client_opts(e, cert, key);
    int status = 0;
    char *body = NULL, err[512];
    int rc = veil_push_call(&o, "/v1/watch", SUBSCRIBE, &status, &body, err, sizeof(err));
    if (want_401) {
        assert_int_equal(rc, 0);
        assert_int_equal(status, 401);
    } else {
        assert_true(rc != 0);
    }
    veil_free(body);
    assert_int_equal(prov_get(&e->prov, &e->prov.subscribes), 0);
}

static void test_watch_refusals(void **state)
{
    struct env *e = *state;
    char *key, *cert;

    /* Expired, signed by the right CA. */
    make_cert(e->dir, "spiffe://" TD "/veil/node/node-1", -7200, -3600, &key, &cert);
    expect_refused(e, cert, key, false);
    veil_free(key);
    veil_free(cert);
    WAIT_STAT(e, handshake_failures, 1);

    /* From another CA. */
    char *dir2 = make_tmpdir(), err[512];
    struct veil_ca *ca2;
    struct veil_ca_opts co = {.state_dir = dir2};
    assert_int_equal(veil_ca_open(&ca2, &co, err, sizeof(err)), 0);
    assert_int_equal(
        veil_ca_issue(ca2, "spiffe://" TD "/veil/node/node-1", 0, &key, &cert, err, sizeof(err)),
        0);
    expect_refused(e, cert, key, false);
    veil_free(key);
    veil_free(cert);
    veil_ca_free(ca2);
    remove_tmpdir(dir2);
    WAIT_STAT(e, handshake_failures, 2);

    /* None. */
    expect_refused(e, NULL, NULL, true);
    assert_int_equal(stats(e).unauthorized, 1);

    /* A workload certificate is not a node certificate. */
    assert_int_equal(
        veil_ca_issue(e->ca, "spiffe://" TD "/ns/default/sa/web", 0, &key, &cert, err, sizeof(err)),
        0);
    expect_refused(e, cert, key, true);
    assert_int_equal(stats(e).unauthorized, 2);
    /* ... nor may it ask for certificates. */
    struct veil_push_client_opts o = client_opts(e, cert, key);
    char *k2 = NULL, *c2 = NULL;
    assert_int_equal(
        veil_push_request_certificate(&o, "default", "web", &k2, &c2, NULL, err, sizeof(err)),
        -EACCES);
    veil_free(key);
    veil_free(cert);
}

/* ---- garbage ---- */

static int tcp_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    struct timeval tv = {.tv_sec = DEADLINE_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

/* Reads until the server closes; false on timeout. */
static bool closed_by_server(int fd)
{
    char buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return true;
        if (n < 0)
            return false;
    }
}

static void test_garbage(void **state)
{
    struct env *e = *state;

    /* Silence: the handshake deadline (1 s here) closes the connection. */
    int quiet = tcp_connect(e->port);
    assert_true(closed_by_server(quiet));
    close(quiet);
    WAIT_STAT(e, handshake_failures, 1);

    /* Not TLS at all. */
    int fd = tcp_connect(e->port);
    const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n\x16\x03\x01\xff\xff garbage";
    assert_int_equal(write(fd, junk, sizeof(junk)), (ssize_t)sizeof(junk));
    assert_true(closed_by_server(fd));
    close(fd);

    /* TLS with a good certificate, then garbage instead of HTTP/2. */
    char *key, *cert;
    node_cert(e, "node-1", &key, &cert);
    SSL_CTX *sc = SSL_CTX_new(TLS_client_method());
    BIO *b = BIO_new_mem_buf(cert, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    b = BIO_new_mem_buf(key, -1);
    EVP_PKEY *pk = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_int_equal(SSL_CTX_use_certificate(sc, x), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(sc, pk), 1);
    static const unsigned char alpn[] = {2, 'h', '2'};
    SSL_CTX_set_alpn_protos(sc, alpn, sizeof(alpn));
    fd = tcp_connect(e->port);
    SSL *ssl = SSL_new(sc);
    SSL_set_fd(ssl, fd);
    assert_int_equal(SSL_connect(ssl), 1);
    const char bad[] = "PRI * HTTP/1.1\r\n\r\nnot the rest of the preface, and not frames";
    assert_true(SSL_write(ssl, bad, sizeof(bad)) > 0);
    char buf[4096];
    int n;
    while ((n = SSL_read(ssl, buf, sizeof(buf))) > 0)
        ;
    assert_true(n <= 0);
    SSL_free(ssl);
    close(fd);
    SSL_CTX_free(sc);
    X509_free(x);
    EVP_PKEY_free(pk);
    ERR_clear_error();

    WAIT_STAT(e, handshake_failures, 2);
    WAIT_STAT(e, bad_input, 1);

    /* A good client still works. */
    struct veil_push_client_opts o = client_opts(e, cert, key);
    char *k2 = NULL, *c2 = NULL, err[512];
    int rc = veil_push_request_certificate(&o, "default", "web", &k2, &c2, NULL, err, sizeof(err));
    if (rc != 0)
        fail_msg("certificate after garbage: %s", err);
    veil_free(k2);
    veil_free(c2);
    veil_free(key);
    veil_free(cert);
}

/* ---- other paths, and the server's identity ---- */

static void test_unknown_path_and_identity(void **state)
{
    struct env *e = *state;
    struct veil_push_client_opts o = client_opts(e, NULL, NULL);
    int status = 0;
    char *body = NULL, err[512];
    assert_int_equal(veil_push_call(&o, "/v1/nothing", "{}", &status, &body, err, sizeof(err)), 0);
    assert_int_equal(status, 404);
    veil_free(body);

    /* A client that expects another server identity refuses this one. */
    o.server_id = "spiffe://" TD "/ns/default/sa/web";
    assert_true(veil_push_call(&o, "/v1/join", "{}", &status, &body, err, sizeof(err)) != 0);
    assert_non_null(strstr(err, "unexpected server identity"));
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* Interoperability: OpenSSL's own client completes the handshake with
 * ALPN h2 and verifies the server against the bundle. */
static void test_openssl_s_client(void **state)
{
    struct env *e = *state;
    if (system("command -v openssl >/dev/null 2>&1") != 0)
        skip();
    char *key, *cert;
    node_cert(e, "node-1", &key, &cert);
    write_file(e->dir, "n.key", key);
    write_file(e->dir, "n.crt", cert);
    write_file(e->dir, "bundle.pem", veil_ca_bundle_pem(e->ca));
    veil_free(key);
    veil_free(cert);
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "timeout 10 openssl s_client -connect 127.0.0.1:%u -alpn h2 "
             "-cert %s/n.crt -key %s/n.key -CAfile %s/bundle.pem -verify_return_error "
             "</dev/null 2>&1",
             e->port, e->dir, e->dir, e->dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char out[8192];
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    pclose(p);
    if (strstr(out, "ALPN protocol: h2") == NULL || strstr(out, "TLSv1.3") == NULL ||
        strstr(out, "Verify return code: 0 (ok)") == NULL)
        fail_msg("openssl s_client:\n%s", out);
}

/* Every allocation failure of veil_push_server_new() is clean. */
static void test_server_new_alloc_failures(void **state)
{
    struct env *e = *state;
    char *key, *cert, err[512];
    make_cert(e->dir, "spiffe://" TD "/veil/control", -60, 86400, &key, &cert);
    struct veil_push_server_opts so = {
        .bind = "127.0.0.1",
        .ca = e->ca,
        .join_token = SECRET,
        .provider = {.ctx = &e->prov,
                     .subscribe = p_subscribe,
                     .poll = p_poll,
                     .ack = p_ack,
                     .nack = p_nack,
                     .unsubscribe = p_unsubscribe},
        .cert_pem = cert,
        .key_pem = key,
    };
    struct veil_loop *loop = veil_loop_new("alloc");
    struct veil_push_server *srv = NULL;
    for (long n = 0; srv == NULL && n < 1000; n++) {
        veil_alloc_fail_after(n);
        srv = veil_push_server_new(loop, &so, err, sizeof(err));
        veil_alloc_fail_reset();
        if (srv == NULL)
            assert_int_equal(errno, ENOMEM);
    }
    assert_non_null(srv);
    veil_push_server_free(srv);
    veil_loop_free(loop);
    veil_free(key);
    veil_free(cert);
}

static int group_setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    veil_log_set_level(getenv("PUSH_TEST_DEBUG") != NULL ? VEIL_LOG_DEBUG : VEIL_LOG_ERROR);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_join_ok, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_join_bad_token, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_join_malformed, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_certificate_allowed_and_refused, env_setup,
                                        env_teardown),
        cmocka_unit_test_setup_teardown(test_watch_two_clients, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_watch_slow_subscriber, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_watch_observer_up_to_date, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_watch_bad_messages, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_watch_refusals, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_openssl_s_client, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_garbage, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_path_and_identity, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_server_new_alloc_failures, env_setup, env_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
