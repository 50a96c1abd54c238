/* Workload certificates: a key and CSR made here per identity served on
 * this node, signed by the control plane over the push connection, renewed
 * at half-life (docs/node.md, "Certificates"). */
#include "node/node-int.h"

#include "control/push_client.h"
#include "core/alloc.h"
#include "core/container.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/metrics.h"
#include "tls/ca.h"
#include "tls/spiffe.h"
#include "tls/tls.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#define RETRY_MIN_MS 200
#define RETRY_MAX_MS 10000

int node__cert_times(const char *pem, time_t *not_before, time_t *not_after)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    BIO_free(b);
    if (x == NULL)
        return -EINVAL;
    struct tm nb, na;
    int ok = ASN1_TIME_to_tm(X509_get0_notBefore(x), &nb) == 1 &&
             ASN1_TIME_to_tm(X509_get0_notAfter(x), &na) == 1;
    X509_free(x);
    if (!ok)
        return -EINVAL;
    *not_before = timegm(&nb);
    *not_after = timegm(&na);
    return 0;
}

static void request(struct veil_node_ident *id);

/* When a certificate that arrived `now` should be replaced: at half of the
 * life it has left (its notBefore may be backdated for clock skew). */
time_t node__renew_at(time_t now, time_t not_after)
{
    return not_after > now + 2 ? now + (not_after - now) / 2 : now + 1;
}

static bool needs_cert(const struct veil_node_ident *id)
{
    return id->cert_pem == NULL || time(NULL) >= id->renew_at;
}

static void timer_cb(struct veil_timer *t)
{
    struct veil_node_ident *id = VEIL_CONTAINER_OF(t, struct veil_node_ident, timer);
    if (id->node->pc_up && !id->requesting && needs_cert(id))
        request(id);
}

static void retry_later(struct veil_node_ident *id)
{
    veil_timer_start(id->node->loop, &id->timer, id->retry_ms, 0, timer_cb);
    id->retry_ms = id->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : id->retry_ms * 2;
}

static int install(struct veil_node_ident *id, char *key, const char *cert, char *err,
                   size_t errlen)
{
    struct veil_node *n = id->node;
    time_t nb, na;
    if (node__cert_times(cert, &nb, &na) != 0) {
        snprintf(err, errlen, "the certificate does not parse");
        return -EINVAL;
    }
    struct veil_tls_ctx_opts so = {.role = VEIL_TLS_SERVER,
                                   .cert_pem = cert,
                                   .key_pem = key,
                                   .trust_bundle_pem = n->bundle_pem,
                                   .require_client_cert = true,
                                   .hold_buffers = true};
    struct veil_tls_ctx_opts co = {.role = VEIL_TLS_CLIENT,
                                   .cert_pem = cert,
                                   .key_pem = key,
                                   .trust_bundle_pem = n->bundle_pem,
                                   .hold_buffers = true};
    struct veil_tls_ctx *sc = veil_tls_ctx_new(&so, err, errlen);
    struct veil_tls_ctx *cc = sc != NULL ? veil_tls_ctx_new(&co, err, errlen) : NULL;
    char *cert_copy = veil_strdup(cert);
    struct veil_tls_ctx **r = veil_realloc(id->retired, (id->nretired + 2) * sizeof(*r));
    if (r != NULL)
        id->retired = r;
    if (sc == NULL || cc == NULL || cert_copy == NULL || r == NULL) {
        veil_tls_ctx_free(sc);
        veil_tls_ctx_free(cc);
        veil_free(cert_copy);
        if (err[0] == '\0')
            snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    /* Old contexts may still be borrowed by live connections: kept. */
    if (id->server_ctx != NULL)
        id->retired[id->nretired++] = id->server_ctx;
    if (id->client_ctx != NULL)
        id->retired[id->nretired++] = id->client_ctx;
    id->server_ctx = sc;
    id->client_ctx = cc;
    veil_free(id->key_pem);
    veil_free(id->cert_pem);
    id->key_pem = key;
    id->cert_pem = cert_copy;
    id->not_before = nb;
    id->not_after = na;
    id->renew_at = node__renew_at(time(NULL), na);
    return 0;
}

static void on_response(struct veil_push_client *pc, int status, const char *body, size_t len,
                        const char *err, void *arg)
{
    struct veil_node_ident *id = arg;
    struct veil_node *n = id->node;
    (void)pc;
    id->requesting = false;
    char *key = id->pending_key;
    id->pending_key = NULL;
    char why[512] = "";
    json_t *r = status == 200 ? json_loadb(body, len, 0, NULL) : NULL;
    const char *cert = json_string_value(json_object_get(r, "certificate"));
    if (status == 200 && cert != NULL && install(id, key, cert, why, sizeof(why)) == 0) {
        key = NULL;
        id->retry_ms = RETRY_MIN_MS;
        time_t wait = id->renew_at - time(NULL);
        veil_timer_start(n->loop, &id->timer, wait > 0 ? (uint64_t)wait * 1000 : 1000, 0, timer_cb);
        veil_metrics_counter_add(n->m.certs, 1);
        VEIL_INFO(LOG, "certificate for %s until %ld (renewal in %lds)", id->id,
                  (long)id->not_after, (long)(wait > 0 ? wait : 0));
        node__pod_ident_ready(n, id);
        node__wp_ident_ready(n, id);
        node__ident_waiters_run(id, NULL);
    } else {
        const char *e = json_string_value(json_object_get(r, "error"));
        if (why[0] == '\0')
            snprintf(why, sizeof(why), "%s",
                     err != NULL    ? err
                     : e != NULL    ? e
                     : body != NULL ? body
                                    : "no certificate");
        VEIL_WARN(LOG, "certificate for %s: %d %s; retrying", id->id, status, why);
        veil_metrics_counter_add(n->m.cert_errors, 1);
        retry_later(id);
    }
    json_decref(r);
    veil_free(key);
}

static void request(struct veil_node_ident *id)
{
    struct veil_node *n = id->node;
    char *key = NULL, *csr = NULL, err[256];
    if (veil_csr_new(id->id, &key, &csr, err, sizeof(err)) != 0) {
        VEIL_WARN(LOG, "cannot make a key for %s: %s", id->id, err);
        retry_later(id);
        return;
    }
    json_t *b =
        json_pack("{s:s,s:s,s:s}", "namespace", id->ns, "serviceAccount", id->sa, "csr", csr);
    char *body = b != NULL ? json_dumps(b, JSON_COMPACT) : NULL;
    json_decref(b);
    veil_free(csr);
    if (body == NULL || veil_push_client_post(n->pc, "/v1/certificates", body, strlen(body),
                                              on_response, id) != 0) {
        free(body);
        veil_free(key);
        retry_later(id);
        return;
    }
    free(body);
    veil_free(id->pending_key);
    id->pending_key = key;
    id->requesting = true;
}

struct veil_node_ident *node__ident_get(struct veil_node *n, const char *ns, const char *sa)
{
    for (struct veil_node_link *l = n->idents.next; l != &n->idents; l = l->next) {
        struct veil_node_ident *id = VEIL_CONTAINER_OF(l, struct veil_node_ident, link);
        if (strcmp(id->ns, ns) == 0 && strcmp(id->sa, sa) == 0)
            return id;
    }
    struct veil_node_ident *id = veil_calloc(1, sizeof(*id));
    if (id == NULL)
        return NULL;
    id->node = n;
    id->ns = veil_strdup(ns);
    id->sa = veil_strdup(sa);
    id->retry_ms = RETRY_MIN_MS;
    node__list_init(&id->waiters);
    if (id->ns == NULL || id->sa == NULL ||
        veil_spiffe_workload_id(id->id, sizeof(id->id), n->trust_domain, ns, sa) != 0) {
        veil_free(id->ns);
        veil_free(id->sa);
        veil_free(id);
        errno = EINVAL;
        return NULL;
    }
    node__list_add(&n->idents, &id->link);
    if (n->pc_up)
        request(id);
    return id;
}

void node__ident_kick(struct veil_node *n)
{
    for (struct veil_node_link *l = n->idents.next; l != &n->idents; l = l->next) {
        struct veil_node_ident *id = VEIL_CONTAINER_OF(l, struct veil_node_ident, link);
        if (!n->pc_up) {
            id->requesting = false; /* the connection and its callbacks are gone */
            veil_free(id->pending_key);
            id->pending_key = NULL;
        } else if (!id->requesting && needs_cert(id)) {
            id->retry_ms = RETRY_MIN_MS;
            request(id);
        }
    }
}

void node__idents_free(struct veil_node *n)
{
    while (n->idents.next != NULL && !node__list_empty(&n->idents)) {
        struct veil_node_ident *id =
            VEIL_CONTAINER_OF(n->idents.next, struct veil_node_ident, link);
        node__ident_waiters_run(id, "shutting down");
        node__list_del(&id->link);
        veil_timer_stop(&id->timer);
        veil_tls_ctx_free(id->server_ctx);
        veil_tls_ctx_free(id->client_ctx);
        for (size_t i = 0; i < id->nretired; i++)
            veil_tls_ctx_free(id->retired[i]);
        veil_free(id->retired);
        veil_free(id->pending_key);
        veil_free(id->key_pem);
        veil_free(id->cert_pem);
        veil_free(id->ns);
        veil_free(id->sa);
        veil_free(id);
    }
}
