/* The node proxy's life: join, configuration from the control plane, the
 * local servers (node.sock, metrics, readiness, admin), signals. */
#include "node/node.h"
#include "node/node-int.h"

#include "capture/capture-t.h"
#include "control/push_client.h"
#include "control/reqsrv.h"
#include "core/alloc.h"
#include "core/container.h"
#include "core/file.h"
#include "core/log.h"
#include "core/loop.h"
#include "core/metrics.h"
#include "hbone/hbone.h"
#include "node/authz.h"
#include "node/config.h"
#include "node/strtab.h"
#include "tls/spiffe.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#define BACKOFF_MIN_MS   100
#define BACKOFF_MAX_MS   5000
#define SOCK_MAX_REQUEST 65536
#define HTTP_MAX_REQUEST 8192

static void path_of(const struct veil_node *n, const char *file, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", n->dir, file);
}

/* Reads a whole small file into a veil_malloc'd string; NULL with errno. */
static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0, r;
    char chunk[4096];
    while ((r = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        if (len + r + 1 > cap) {
            cap = (len + r + 1) * 2;
            char *nb = veil_realloc(buf, cap);
            if (nb == NULL || cap > (16u << 20)) {
                veil_free(nb != NULL ? nb : buf);
                fclose(f);
                errno = ENOMEM;
                return NULL;
            }
            buf = nb;
        }
        memcpy(buf + len, chunk, r);
        len += r;
    }
    fclose(f);
    if (buf == NULL)
        buf = veil_strdup("");
    else
        buf[len] = '\0';
    return buf;
}

/* ---- join and the node's own certificate ---- */

static int save_identity(struct veil_node *n)
{
    char p[600];
    int rc;
    path_of(n, "node.key", p, sizeof(p));
    if ((rc = veil_file_write_atomic(p, n->key_pem, strlen(n->key_pem), 0600, NULL)) != 0)
        return rc;
    path_of(n, "node.crt", p, sizeof(p));
    if ((rc = veil_file_write_atomic(p, n->cert_pem, strlen(n->cert_pem), 0644, NULL)) != 0)
        return rc;
    path_of(n, "bundle.pem", p, sizeof(p));
    if ((rc = veil_file_write_atomic(p, n->bundle_pem, strlen(n->bundle_pem), 0644, NULL)) != 0)
        return rc;
    path_of(n, "control-id", p, sizeof(p));
    char line[600];
    snprintf(line, sizeof(line), "%s\n", n->control_id);
    return veil_file_write_atomic(p, line, strlen(line), 0644, NULL);
}

static void free_identity(struct veil_node *n)
{
    veil_free(n->key_pem);
    veil_free(n->cert_pem);
    veil_free(n->bundle_pem);
    veil_free(n->control_id);
    n->key_pem = n->cert_pem = n->bundle_pem = n->control_id = NULL;
}

static int load_identity(struct veil_node *n)
{
    char p[600];
    path_of(n, "node.key", p, sizeof(p));
    n->key_pem = read_file(p);
    path_of(n, "node.crt", p, sizeof(p));
    n->cert_pem = read_file(p);
    path_of(n, "bundle.pem", p, sizeof(p));
    n->bundle_pem = read_file(p);
    path_of(n, "control-id", p, sizeof(p));
    n->control_id = read_file(p);
    if (n->key_pem == NULL || n->cert_pem == NULL || n->bundle_pem == NULL ||
        n->control_id == NULL) {
        free_identity(n);
        return -ENOENT;
    }
    n->control_id[strcspn(n->control_id, "\r\n")] = '\0';
    return node__cert_times(n->cert_pem, &n->node_not_before, &n->node_not_after);
}

static int trust_domain_of(struct veil_node *n)
{
    const char *p = n->control_id;
    if (strncmp(p, "spiffe://", 9) != 0)
        return -EINVAL;
    p += 9;
    size_t l = strcspn(p, "/");
    if (l == 0 || l >= sizeof(n->trust_domain) || strcmp(p + l, VEIL_PUSH_CONTROL_PATH) != 0)
        return -EINVAL;
    memcpy(n->trust_domain, p, l);
    n->trust_domain[l] = '\0';
    return veil_spiffe_valid_trust_domain(n->trust_domain) ? 0 : -EINVAL;
}

static bool stop_requested(void)
{
    sigset_t pend;
    return sigpending(&pend) == 0 && (sigismember(&pend, SIGTERM) || sigismember(&pend, SIGINT));
}

static int join(struct veil_node *n)
{
    char token[1024], err[512];
    if (n->opts.token_file == NULL) {
        VEIL_ERROR(LOG, "no node key in %s and no --token-file to join with", n->dir);
        return -EINVAL;
    }
    int rc = veil_file_read_line(n->opts.token_file, token, sizeof(token));
    if (rc != 0) {
        VEIL_ERROR(LOG, "cannot read the join token %s: %s", n->opts.token_file, strerror(-rc));
        return rc;
    }
    struct veil_push_client_opts po = {.addr = n->ctl_addr, .port = n->ctl_port};
    struct veil_push_join_result r = {0};
    uint64_t wait_ms = BACKOFF_MIN_MS;
    for (int attempt = 0;; attempt++) {
        rc = veil_push_join(&po, token, n->opts.name, &r, err, sizeof(err));
        if (rc == 0 || rc == -EACCES || attempt >= 60 || stop_requested())
            break;
        VEIL_WARN(LOG, "join %s:%u failed (%s); retrying", n->ctl_addr, n->ctl_port, err);
        usleep((useconds_t)(wait_ms * 1000));
        wait_ms = wait_ms * 2 > 2000 ? 2000 : wait_ms * 2;
    }
    if (rc != 0) {
        VEIL_ERROR(LOG, "join %s:%u as %s: %s", n->ctl_addr, n->ctl_port, n->opts.name, err);
        return rc;
    }
    free_identity(n);
    n->key_pem = r.key_pem;
    n->cert_pem = r.cert_pem;
    n->bundle_pem = r.trust_bundle_pem;
    n->control_id = r.control_id;
    memset(&r, 0, sizeof(r));
    if ((rc = save_identity(n)) != 0) {
        VEIL_ERROR(LOG, "cannot store the node identity in %s: %s", n->dir, strerror(-rc));
        return rc;
    }
    VEIL_INFO(LOG, "joined the control plane %s:%u as node %s", n->ctl_addr, n->ctl_port,
              n->opts.name);
    rc = node__cert_times(n->cert_pem, &n->node_not_before, &n->node_not_after);
    n->node_renew_at = node__renew_at(time(NULL), n->node_not_after);
    return rc;
}

/* Joins unless DIR holds a node identity that is still in its first half of
 * life (or a token is unavailable to renew it). */
static int ensure_identity(struct veil_node *n)
{
    int rc = load_identity(n);
    time_t now = time(NULL);
    /* A stored certificate: renewed at half of its whole life. */
    n->node_renew_at = n->node_not_before + (n->node_not_after - n->node_not_before) / 2;
    if (rc == 0 && now < n->node_renew_at)
        return 0;
    if (rc == 0 && now < n->node_not_after &&
        (n->opts.token_file == NULL || access(n->opts.token_file, R_OK) != 0))
        return 0;
    if (rc == 0)
        VEIL_INFO(LOG, "the node certificate is past half of its life: joining again");
    return join(n);
}

/* ---- renewal of the node certificate while running ---- */

/* A join runs blocking (veil_push_join has its own loop) on a helper
 * thread, then hands its result to the node's loop. */
struct veil_node_rejoin {
    struct veil_node *n;
    pthread_t th;
    bool joined;
    int rc;
    char addr[64], token[1024], name[256], err[256];
    uint16_t port;
    struct veil_push_join_result r;
};

static void renew_cb(struct veil_timer *t);

static void schedule_renewal(struct veil_node *n, uint64_t min_ms)
{
    time_t now = time(NULL);
    uint64_t ms = n->node_renew_at > now ? (uint64_t)(n->node_renew_at - now) * 1000 : 0;
    veil_timer_start(n->loop, &n->renew_node, ms > min_ms ? ms : min_ms, 0, renew_cb);
}

static void rejoin_done(void *arg)
{
    struct veil_node_rejoin *j = arg;
    struct veil_node *n = j->n;
    if (!j->joined)
        pthread_join(j->th, NULL);
    n->rejoin = NULL;
    if (j->rc == 0 && !n->stopping) {
        time_t nb, na;
        if (node__cert_times(j->r.cert_pem, &nb, &na) == 0) {
            free_identity(n);
            n->key_pem = j->r.key_pem;
            n->cert_pem = j->r.cert_pem;
            n->bundle_pem = j->r.trust_bundle_pem;
            n->control_id = j->r.control_id;
            memset(&j->r, 0, sizeof(j->r));
            n->node_not_before = nb;
            n->node_not_after = na;
            n->node_renew_at = node__renew_at(time(NULL), na);
            if (save_identity(n) != 0)
                VEIL_WARN(LOG, "cannot store the renewed node identity in %s", n->dir);
            VEIL_INFO(LOG, "node certificate renewed; the next connection to the control "
                           "plane uses it");
        }
    } else if (!n->stopping) {
        VEIL_WARN(LOG, "renewing the node certificate: %s; retrying in a minute", j->err);
    }
    if (!n->stopping)
        schedule_renewal(n, 60000);
    veil_push_join_result_free(&j->r);
    veil_free(j);
}

static void *rejoin_main(void *arg)
{
    struct veil_node_rejoin *j = arg;
    struct veil_push_client_opts po = {.addr = j->addr, .port = j->port};
    j->rc = veil_push_join(&po, j->token, j->name, &j->r, j->err, sizeof(j->err));
    if (veil_loop_post(j->n->loop, rejoin_done, j) != 0)
        VEIL_ERROR(LOG, "cannot hand the renewed node certificate to the loop");
    return NULL;
}

static void renew_cb(struct veil_timer *t)
{
    struct veil_node *n = VEIL_CONTAINER_OF(t, struct veil_node, renew_node);
    struct veil_node_rejoin *j = veil_calloc(1, sizeof(*j));
    if (n->rejoin != NULL || n->opts.token_file == NULL || j == NULL ||
        veil_file_read_line(n->opts.token_file, j->token, sizeof(j->token)) != 0) {
        VEIL_WARN(LOG,
                  "cannot renew the node certificate (no readable --token-file); it "
                  "expires at %ld",
                  (long)n->node_not_after);
        veil_free(j);
        return;
    }
    j->n = n;
    j->port = n->ctl_port;
    snprintf(j->addr, sizeof(j->addr), "%s", n->ctl_addr);
    snprintf(j->name, sizeof(j->name), "%s", n->opts.name);
    if (pthread_create(&j->th, NULL, rejoin_main, j) != 0) {
        veil_free(j);
        schedule_renewal(n, 60000);
        return;
    }
    n->rejoin = j;
}

/* ---- the push connection and configuration ---- */

static void connect_control(struct veil_node *n);

static void reconnect_cb(struct veil_timer *t)
{
    connect_control(VEIL_CONTAINER_OF(t, struct veil_node, reconnect));
}

static void schedule_reconnect(struct veil_node *n)
{
    if (n->stopping)
        return;
    veil_timer_start(n->loop, &n->reconnect, n->backoff_ms, 0, reconnect_cb);
    n->backoff_ms = n->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : n->backoff_ms * 2;
}

static void drop_control(struct veil_node *n)
{
    veil_push_client_free(n->pc);
    n->pc = NULL;
    n->pc_up = n->watching = false;
    veil_metrics_gauge_set(n->m.connected, 0);
    node__ident_kick(n); /* requests in flight are gone: retried later */
}

static void save_config(struct veil_node *n)
{
    char p[600];
    path_of(n, "config.json", p, sizeof(p));
    int rc = veil_node_cfg_save(&n->cfg, p);
    if (rc != 0)
        VEIL_WARN(LOG, "cannot save %s: %s", p, strerror(-rc));
}

static void on_update(struct veil_push_client *pc, const char *json, size_t len, void *arg)
{
    struct veil_node *n = arg;
    char err[512];
    uint64_t version = 0;
    int rc = veil_node_cfg_apply(&n->cfg, json, len, &version, err, sizeof(err));
    if (rc != 0) {
        json_t *u = json_loadb(json, len, 0, NULL);
        version = (uint64_t)json_integer_value(json_object_get(u, "version"));
        json_decref(u);
        VEIL_WARN(LOG, "refused configuration version %llu: %s", (unsigned long long)version, err);
        veil_metrics_counter_add(n->m.cfg_rejected, 1);
        veil_push_client_nack(pc, version, err);
        return;
    }
    n->backoff_ms = BACKOFF_MIN_MS;
    veil_metrics_counter_add(n->m.cfg_applied, 1);
    veil_metrics_gauge_set(n->m.cfg_version, (double)version);
    VEIL_INFO(LOG, "applied configuration version %llu (%zu items)", (unsigned long long)version,
              n->cfg.items.n);
    veil_push_client_ack(pc, version);
    save_config(n);
    if (veil_authz_generation(n->authz) != n->authz_gen) {
        n->authz_gen = veil_authz_generation(n->authz);
        node__conns_recheck(n);
    }
}

static void on_end(struct veil_push_client *pc, int status, const char *err, void *arg)
{
    struct veil_node *n = arg;
    (void)pc;
    VEIL_WARN(LOG, "lost the control plane's watch (%d %s); serving with version %llu", status,
              err != NULL ? err : "", (unsigned long long)n->cfg.version);
    drop_control(n);
    schedule_reconnect(n);
}

static void on_connect(struct veil_push_client *pc, const char *err, void *arg)
{
    struct veil_node *n = arg;
    if (err != NULL) {
        VEIL_WARN(LOG, "control plane %s:%u: %s", n->ctl_addr, n->ctl_port, err);
        drop_control(n);
        schedule_reconnect(n);
        return;
    }
    int rc = veil_push_client_watch(pc, n->cfg.version, false, on_update, on_end, n);
    if (rc != 0) {
        VEIL_WARN(LOG, "cannot subscribe: %s", strerror(-rc));
        drop_control(n);
        schedule_reconnect(n);
        return;
    }
    VEIL_INFO(LOG, "connected to the control plane, subscribed from version %llu",
              (unsigned long long)n->cfg.version);
    n->pc_up = n->watching = true;
    veil_metrics_gauge_set(n->m.connected, 1);
    node__ident_kick(n);
}

static void connect_control(struct veil_node *n)
{
    struct veil_push_client_opts po = {
        .addr = n->ctl_addr,
        .port = n->ctl_port,
        .cert_pem = n->cert_pem,
        .key_pem = n->key_pem,
        .trust_bundle_pem = n->bundle_pem,
        .server_id = n->control_id,
    };
    char err[256] = "";
    n->pc = veil_push_client_connect(n->loop, &po, on_connect, n, err, sizeof(err));
    if (n->pc == NULL) {
        VEIL_WARN(LOG, "cannot connect to the control plane: %s", err[0] ? err : strerror(errno));
        schedule_reconnect(n);
    }
}

/* ---- policies: the config tables feed authz ---- */

static int check_policy(void *ctx, const struct veil_node_item *it, char *err, size_t errlen)
{
    (void)ctx;
    struct veil_authz *scratch = veil_authz_new(NULL);
    if (scratch == NULL)
        return -ENOMEM;
    json_t *spec = json_object_get(it->json, "spec");
    int rc = it->kind == VEIL_NODE_AUTHZ_POLICY
                 ? veil_authz_set(scratch, it->ns, it->name, spec, err, errlen)
                 : veil_authz_peer_set(scratch, it->ns, it->name, spec, err, errlen);
    veil_authz_free(scratch);
    if (rc == -EINVAL) {
        char reason[512];
        snprintf(reason, sizeof(reason), "%s", err);
        snprintf(err, errlen, "%s: %s", it->key, reason);
    }
    return rc < 0 ? rc : 0;
}

static void policy_changed(void *ctx, const char *key, const struct veil_node_item *it)
{
    struct veil_node *n = ctx;
    char note[512] = "";
    node__wp_policy(n, key, it);
    if (key == NULL) {
        veil_authz_clear(n->authz);
        return;
    }
    if (it == NULL) {
        const char *kind_end = strchr(key, '/'), *ns = kind_end ? kind_end + 1 : key;
        const char *slash = strchr(ns, '/');
        if (slash == NULL)
            return;
        char nsbuf[256];
        snprintf(nsbuf, sizeof(nsbuf), "%.*s", (int)(slash - ns), ns);
        if (strncmp(key, "PeerAuthentication/", 19) == 0)
            veil_authz_peer_remove(n->authz, nsbuf, slash + 1);
        else
            veil_authz_remove(n->authz, nsbuf, slash + 1);
        return;
    }
    json_t *spec = json_object_get(it->json, "spec");
    int rc = it->kind == VEIL_NODE_AUTHZ_POLICY
                 ? veil_authz_set(n->authz, it->ns, it->name, spec, note, sizeof(note))
                 : veil_authz_peer_set(n->authz, it->ns, it->name, spec, note, sizeof(note));
    if (rc != 0)
        VEIL_WARN(LOG, "%s: %s", it->key, note);
}

/* ---- node.sock: enrolment ---- */

static size_t line_complete(const char *data, size_t len, int eof)
{
    const char *nl = memchr(data, '\n', len);
    if (nl != NULL)
        return (size_t)(nl - data) + 1;
    return eof ? len : 0;
}

static int reply_json(json_t *ans, char **resp, size_t *resp_len)
{
    char *text = ans != NULL ? json_dumps(ans, JSON_COMPACT) : NULL;
    json_decref(ans);
    if (text == NULL)
        return -ENOMEM;
    size_t l = strlen(text);
    *resp = veil_malloc(l + 1);
    if (*resp != NULL) {
        memcpy(*resp, text, l);
        (*resp)[l] = '\n';
        *resp_len = l + 1;
    }
    free(text);
    return *resp != NULL ? 0 : -ENOMEM;
}

static json_t *pods_json(struct veil_node *n)
{
    json_t *a = json_array();
    for (struct veil_node_link *l = n->pods.next; a != NULL && l != &n->pods; l = l->next) {
        struct veil_node_pod *p = VEIL_CONTAINER_OF(l, struct veil_node_pod, link);
        json_array_append_new(
            a, json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:b}", "namespace", p->ns, "name", p->name,
                         "netns", p->netns, "address", p->addr_str, "serviceAccount", p->sa,
                         "identity", p->ident->id, "certificate", p->ident->server_ctx != NULL));
    }
    return a;
}

static int sock_handle(void *ctx, const char *req, size_t len, char **resp, size_t *resp_len)
{
    struct veil_node *n = ctx;
    json_t *r = json_loadb(req, len, 0, NULL);
    const char *op = json_string_value(json_object_get(r, "op"));
    const char *ns = json_string_value(json_object_get(r, "namespace"));
    const char *name = json_string_value(json_object_get(r, "name"));
    char err[512] = "";
    int rc = -EINVAL;
    json_t *extra = NULL;
    if (r == NULL || op == NULL) {
        snprintf(err, sizeof(err), "the request is not a JSON object with an \"op\"");
    } else if (strcmp(op, "add") == 0) {
        const char *netns = json_string_value(json_object_get(r, "netns"));
        const char *addr = json_string_value(json_object_get(r, "address"));
        const char *sa = json_string_value(json_object_get(r, "serviceAccount"));
        if (ns == NULL || name == NULL || netns == NULL || addr == NULL)
            snprintf(err, sizeof(err), "add needs namespace, name, netns and address");
        else
            rc = node__pod_add(n, ns, name, netns, addr, sa != NULL ? sa : "default", true, err,
                               sizeof(err));
    } else if (strcmp(op, "del") == 0) {
        if (ns == NULL || name == NULL)
            snprintf(err, sizeof(err), "del needs namespace and name");
        else
            rc = node__pod_del(n, ns, name, err, sizeof(err));
    } else if (strcmp(op, "list") == 0) {
        extra = pods_json(n);
        rc = 0;
    } else {
        snprintf(err, sizeof(err), "unknown op \"%s\" (add, del, list)", op);
    }
    json_decref(r);
    json_t *ans;
    if (rc == 0) {
        ans = json_pack("{s:b}", "ok", 1);
        if (extra != NULL)
            json_object_set_new(ans, "pods", extra);
    } else {
        json_decref(extra);
        node__refused(n, "enrolment");
        VEIL_WARN(LOG, "node.sock: refused: %s", err);
        ans = json_pack("{s:b,s:s}", "ok", 0, "error", err);
    }
    return reply_json(ans, resp, resp_len);
}

/* ---- pods.json ---- */

int node__save_pods(struct veil_node *n)
{
    char p[600];
    json_t *a = pods_json(n);
    char *text = a != NULL ? json_dumps(a, JSON_COMPACT) : NULL;
    json_decref(a);
    if (text == NULL)
        return -ENOMEM;
    path_of(n, "pods.json", p, sizeof(p));
    int rc = veil_file_write_atomic(p, text, strlen(text), 0600, NULL);
    free(text);
    if (rc != 0)
        VEIL_WARN(LOG, "cannot save %s: %s", p, strerror(-rc));
    return rc;
}

static void load_pods(struct veil_node *n)
{
    char p[600];
    path_of(n, "pods.json", p, sizeof(p));
    json_t *a = json_load_file(p, 0, NULL), *it;
    size_t i;
    json_array_foreach(a, i, it)
    {
        const char *ns = json_string_value(json_object_get(it, "namespace"));
        const char *name = json_string_value(json_object_get(it, "name"));
        const char *netns = json_string_value(json_object_get(it, "netns"));
        const char *addr = json_string_value(json_object_get(it, "address"));
        const char *sa = json_string_value(json_object_get(it, "serviceAccount"));
        char err[512];
        if (ns == NULL || name == NULL || netns == NULL || addr == NULL)
            continue;
        if (node__pod_add(n, ns, name, netns, addr, sa != NULL ? sa : "default", false, err,
                          sizeof(err)) != 0)
            VEIL_WARN(LOG, "pod %s/%s not re-enrolled: %s", ns, name, err);
        else
            VEIL_INFO(LOG, "pod %s/%s re-enrolled from %s", ns, name, p);
    }
    json_decref(a);
    node__save_pods(n);
}

/* ---- HTTP: metrics, readiness, admin ---- */

/* 200 once a configuration is there (and, for a waypoint, once 15008
 * listens and it is not draining). */
static int ready_reply(struct veil_node *n, char **resp, size_t *resp_len)
{
    const char *why = !n->cfg.loaded                               ? "no configuration yet\n"
                      : node__is_waypoint(n) && !node__wp_ready(n) ? "not serving 15008\n"
                                                                   : NULL;
    if (why == NULL)
        return veil_reqsrv_http_reply(200, "OK", "text/plain", "ready\n", 6, resp, resp_len);
    return veil_reqsrv_http_reply(503, "Service Unavailable", "text/plain", why, strlen(why), resp,
                                  resp_len);
}

static int http_handle(struct veil_node *n, const char *req, bool admin, char **resp,
                       size_t *resp_len)
{
    char path[256] = "";
    if (sscanf(req, "GET %255s HTTP/1.", path) != 1) {
        node__refused(n, "bad_http");
        return veil_reqsrv_http_reply(400, "Bad Request", "text/plain", "GET only\n", 9, resp,
                                      resp_len);
    }
    if (strcmp(path, "/metrics") == 0 || strcmp(path, "/stats/prometheus") == 0) {
        char *text = NULL;
        size_t len = 0;
        node__metrics_sync(n);
        if (veil_metrics_render(n->metrics, &text, &len) != 0)
            return -ENOMEM;
        int rc = veil_reqsrv_http_reply(200, "OK", "text/plain; version=0.0.4", text, len, resp,
                                        resp_len);
        veil_free(text);
        return rc;
    }
    if (strcmp(path, "/healthz/ready") == 0)
        return ready_reply(n, resp, resp_len);
    if (admin && strcmp(path, "/config_dump") == 0) {
        char *cfg = NULL;
        size_t len = 0;
        if (veil_node_cfg_dump(&n->cfg, &cfg, &len) != 0)
            return -ENOMEM;
        json_t *c = json_loads(cfg, 0, NULL);
        veil_free(cfg);
        json_t *doc = json_pack("{s:s,s:o,s:o,s:b}", "node", n->opts.name, "config",
                                c != NULL ? c : json_null(), "pods", pods_json(n),
                                "controlPlaneConnected", n->watching);
        char *text = doc != NULL ? json_dumps(doc, JSON_INDENT(2)) : NULL;
        json_decref(doc);
        if (text == NULL)
            return -ENOMEM;
        int rc = veil_reqsrv_http_reply(200, "OK", "application/json", text, strlen(text), resp,
                                        resp_len);
        free(text);
        return rc;
    }
    return veil_reqsrv_http_reply(404, "Not Found", "text/plain", "not found\n", 10, resp,
                                  resp_len);
}

static int http_handle_pub(void *ctx, const char *req, size_t len, char **resp, size_t *resp_len)
{
    (void)len;
    return http_handle(ctx, req, false, resp, resp_len);
}

static int http_handle_admin(void *ctx, const char *req, size_t len, char **resp, size_t *resp_len)
{
    (void)len;
    return http_handle(ctx, req, true, resp, resp_len);
}

static int serve_http(struct veil_node *n, const char *addr, int port, uint16_t def, bool admin,
                      struct veil_reqsrv **out, uint16_t *bound)
{
    int fd = veil_listen_tcp(addr, port < 0 ? def : (uint16_t)port, bound);
    if (fd < 0) {
        VEIL_ERROR(LOG, "cannot listen on %s:%d: %s", addr, port < 0 ? def : port, strerror(-fd));
        return fd;
    }
    struct veil_reqsrv_opts o = {veil_reqsrv_http_complete,
                                 admin ? http_handle_admin : http_handle_pub, n, HTTP_MAX_REQUEST,
                                 10000};
    *out = veil_reqsrv_new(n->loop, fd, &o);
    if (*out == NULL) {
        close(fd);
        return -ENOMEM;
    }
    return 0;
}

/* ---- signals ---- */

static void signal_cb(struct veil_io *io, uint32_t events)
{
    struct veil_node *n = VEIL_CONTAINER_OF(io, struct veil_node, sig_io);
    struct signalfd_siginfo si;
    (void)events;
    while (read(veil_io_fd(io), &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (node__wp_drain(n))
            continue; /* the drain stops the loop; a second signal stops at once */
        VEIL_INFO(LOG, "signal %u: stopping", si.ssi_signo);
        n->stopping = true;
        veil_loop_stop(n->loop);
    }
}

static int setup_signals(struct veil_node *n)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0)
        return -errno;
    signal(SIGPIPE, SIG_IGN);
    /* Two sockets per proxied connection, and listeners per pod. */
    long fds = veil_raise_fd_limit();
    if (fds > 0 && fds < 65536)
        VEIL_WARN(LOG, "open files limited to %ld: about %ld connections at most", fds, fds / 2);
    int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = veil_io_start(n->loop, &n->sig_io, fd, VEIL_IO_READ, signal_cb);
    if (rc != 0)
        close(fd);
    return rc;
}

/* ---- start and stop ---- */

void node__refused(struct veil_node *n, const char *reason)
{
    const char *v[] = {reason};
    veil_metrics_counter_add(veil_metrics_series(n->m.refused, v), 1);
}

static int parse_control(struct veil_node *n)
{
    const char *c = n->opts.control;
    const char *colon = c != NULL ? strrchr(c, ':') : NULL;
    if (colon == NULL || (size_t)(colon - c) >= sizeof(n->ctl_addr) || colon == c)
        return -EINVAL;
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 1 || port > 65535)
        return -EINVAL;
    const char *a = c;
    size_t l = (size_t)(colon - c);
    if (a[0] == '[' && l >= 2 && a[l - 1] == ']') {
        a++;
        l -= 2;
    }
    memcpy(n->ctl_addr, a, l);
    n->ctl_addr[l] = '\0';
    n->ctl_port = (uint16_t)port;
    return 0;
}

static void write_ports(struct veil_node *n)
{
    char p[600], text[128];
    path_of(n, "ports", p, sizeof(p));
    snprintf(text, sizeof(text), "metrics %u\nready %u\nadmin %u\n", n->metrics_port, n->ready_port,
             n->admin_port);
    veil_file_write_atomic(p, text, strlen(text), 0644, NULL);
}

/* DIR/node.sock, the enrolment socket (its path into p). */
static int serve_sock(struct veil_node *n, char *p, size_t len)
{
    path_of(n, "node.sock", p, len);
    int fd = veil_listen_unix(p, 0600);
    if (fd < 0) {
        VEIL_ERROR(LOG, "cannot listen on %s: %s", p, strerror(-fd));
        return fd;
    }
    struct veil_reqsrv_opts so = {line_complete, sock_handle, n, SOCK_MAX_REQUEST, 30000};
    if ((n->sock_srv = veil_reqsrv_new(n->loop, fd, &so)) == NULL) {
        close(fd);
        return -ENOMEM;
    }
    return 0;
}

static int start(struct veil_node *n)
{
    char p[600], err[512];
    int rc;
    if (mkdir(n->dir, 0700) != 0 && errno != EEXIST) {
        VEIL_ERROR(LOG, "cannot create %s: %s", n->dir, strerror(errno));
        return -errno;
    }
    if ((rc = setup_signals(n)) != 0 || (rc = node__metrics_setup(n)) != 0)
        return rc;
    if ((rc = ensure_identity(n)) != 0)
        return rc;
    if (trust_domain_of(n) != 0) {
        VEIL_ERROR(LOG, "the control plane's identity \"%s\" is not a veil control identity",
                   n->control_id);
        return -EINVAL;
    }
    path_of(n, "config.json", p, sizeof(p));
    rc = veil_node_cfg_load(&n->cfg, p, err, sizeof(err));
    if (rc == 0)
        VEIL_INFO(LOG, "serving configuration version %llu from %s until the control plane answers",
                  (unsigned long long)n->cfg.version, p);
    else if (rc != -ENOENT)
        VEIL_WARN(LOG, "ignoring the saved configuration: %s", err);
    n->authz_gen = veil_authz_generation(n->authz);
    veil_metrics_gauge_set(n->m.cfg_version, (double)n->cfg.version);
    const char *bind = n->opts.bind != NULL ? n->opts.bind : "0.0.0.0";
    if ((rc = serve_http(n, bind, n->opts.metrics_port, VEIL_PORT_METRICS, false, &n->metrics_srv,
                         &n->metrics_port)) != 0 ||
        (rc = serve_http(n, bind, n->opts.ready_port, VEIL_PORT_READINESS, false, &n->ready_srv,
                         &n->ready_port)) != 0)
        return rc;
    if (serve_http(n, "127.0.0.1", n->opts.admin_port, VEIL_PORT_ADMIN, true, &n->admin_srv,
                   &n->admin_port) != 0)
        VEIL_WARN(LOG, "no admin port: continuing without /config_dump");
    if ((n->pool = veil_hbone_pool_new(n->loop, NULL)) == NULL)
        return -ENOMEM;
    if (node__is_waypoint(n)) {
        if ((rc = node__wp_start(n)) != 0)
            return rc;
        p[0] = '\0';
    } else if ((rc = serve_sock(n, p, sizeof(p))) != 0) {
        return rc;
    }
    write_ports(n);
    schedule_renewal(n, 1000);
    if (!node__is_waypoint(n))
        load_pods(n);
    connect_control(n);
    if (node__is_waypoint(n))
        VEIL_INFO(LOG, "waypoint %s/%s (node %s): metrics on %s:%u, readiness on %s:%u",
                  n->opts.waypoint_ns, n->opts.waypoint_name, n->opts.name, bind, n->metrics_port,
                  bind, n->ready_port);
    else
        VEIL_INFO(LOG, "node %s: metrics on %s:%u, readiness on %s:%u, enrolment on %s",
                  n->opts.name, bind, n->metrics_port, bind, n->ready_port, p);
    return 0;
}

static void stop(struct veil_node *n)
{
    n->stopping = true;
    while (!node__list_empty(&n->pods)) {
        struct veil_node_pod *p = VEIL_CONTAINER_OF(n->pods.next, struct veil_node_pod, link);
        node__pod_free(p, false); /* rules stay: a restarted proxy picks the pods up */
    }
    veil_reqsrv_free(n->sock_srv);
    veil_reqsrv_free(n->metrics_srv);
    veil_reqsrv_free(n->ready_srv);
    veil_reqsrv_free(n->admin_srv);
    n->sock_srv = n->metrics_srv = n->ready_srv = n->admin_srv = NULL;
    node__wp_free(n); /* the engine borrows the pool */
    veil_hbone_pool_free(n->pool);
    n->pool = NULL;
    veil_push_client_free(n->pc);
    n->pc = NULL;
    veil_timer_stop(&n->reconnect);
    veil_timer_stop(&n->renew_node);
    veil_timer_stop(&n->trim_timer);
    if (n->rejoin != NULL) { /* its result is dropped when the loop is freed */
        pthread_join(n->rejoin->th, NULL);
        n->rejoin->joined = true;
    }
    if (veil_io_is_active(&n->sig_io)) {
        int fd = veil_io_fd(&n->sig_io);
        veil_io_stop(&n->sig_io);
        close(fd);
    }
}

/* Waypoint mode: the namespace and name are DNS labels; the node name is
 * "wp.<ns>.<name>" unless one was given. */
static int waypoint_name(struct veil_node *n)
{
    const char *ns = n->opts.waypoint_ns, *name = n->opts.waypoint_name;
    if (ns == NULL && name == NULL)
        return 0;
    if (ns == NULL || name == NULL || !veil_spiffe_valid_label(ns) ||
        !veil_spiffe_valid_label(name)) {
        VEIL_ERROR(LOG, "a waypoint needs a namespace and a name, each a DNS-1123 label");
        return -EINVAL;
    }
    if (n->opts.name == NULL) {
        snprintf(n->wp_node_name, sizeof(n->wp_node_name), "wp.%s.%s", ns, name);
        n->opts.name = n->wp_node_name;
    }
    return 0;
}

int veil_node_run(const struct veil_node_opts *opts)
{
    struct veil_node *n = veil_calloc(1, sizeof(*n));
    if (n == NULL)
        return 1;
    n->opts = *opts;
    n->backoff_ms = BACKOFF_MIN_MS;
    node__list_init(&n->pods);
    node__list_init(&n->idents);
    snprintf(n->dir, sizeof(n->dir), "%s", opts->state_dir);
    int status = 1;
    struct veil_node_cfg_hooks hooks = {n, check_policy, policy_changed};
    veil_node_cfg_init(&n->cfg, &hooks);
    if (node__is_waypoint(n)) {
        struct veil_node_cfg_route_hooks rh = {.ctx = n, .route = node__wp_route};
        veil_node_cfg_set_route_hooks(&n->cfg, &rh);
    }
    if (parse_control(n) != 0) {
        VEIL_ERROR(LOG, "--control: expected ADDR:PORT, got \"%s\"",
                   opts->control != NULL ? opts->control : "");
        goto out;
    }
    if (waypoint_name(n) != 0)
        goto out;
    if (n->opts.name == NULL || !veil_spiffe_valid_subdomain(n->opts.name)) {
        VEIL_ERROR(LOG, "--name: a node name is a DNS-1123 subdomain");
        goto out;
    }
    n->loop = veil_loop_new("node");
    n->authz = veil_authz_new(NULL);
    if (n->loop == NULL || n->authz == NULL)
        goto out;
    if (start(n) == 0) {
        int rc = veil_loop_run(n->loop);
        status = rc == 0 ? 0 : 1;
    }
    stop(n);
out:
    node__idents_free(n);
    veil_node_cfg_free(&n->cfg);
    veil_authz_free(n->authz);
    veil_loop_free(n->loop);
    veil_node_strtab_free(&n->strs); /* after the loop: the last connections end in stop() */
    veil_metrics_free(n->metrics);
    free_identity(n);
    veil_free(n);
    return status;
}
