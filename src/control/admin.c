/* The control plane's admin socket (apply, delete, status) and its status
 * port (GET /metrics, /status, /healthz). Formats: docs/control.md. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "control/control-int.h"
#include "control/reqsrv.h"
#include "control/resource.h"
#include "control/store.h"
#include "control/view.h"
#include "core/alloc.h"
#include "core/conf.h"
#include "core/metrics.h"
#include "tls/spiffe.h"

#define ADMIN_MAX_REQUEST (64u << 20)
#define HTTP_MAX_REQUEST  8192

/* ---- status ---- */

struct node_walk {
    json_t *nodes;
    uint64_t version;
};

/* A node is up to date when it acknowledged the last version sent to it:
 * versions that change nothing on a node are never sent to it. */
static bool up_to_date(const struct veil_view_node_status *st)
{
    return st->subscribed && st->sent != 0 && st->acked >= st->sent;
}

static void add_node(void *ctx, const struct veil_view_node_status *st)
{
    struct node_walk *w = ctx;
    json_t *n = json_pack("{s:s, s:b, s:I, s:I, s:I, s:I, s:b}", "name", st->name, "connected",
                          st->subscribed, "workloads", (json_int_t)st->workloads, "sent",
                          (json_int_t)st->sent, "acked", (json_int_t)st->acked, "rejected",
                          (json_int_t)st->nacked, "upToDate", up_to_date(st));
    if (n != NULL && st->nack_reason != NULL && st->nacked > st->acked)
        json_object_set_new(n, "rejectReason", json_string(st->nack_reason));
    json_array_append_new(w->nodes, n);
}

static json_t *workload_json(struct veil_control *c, const struct veil_res *r)
{
    char id[512] = "";
    veil_spiffe_workload_id(id, sizeof(id), c->trust_domain, r->ns, r->u.wl.service_account);
    struct veil_view_node_status st;
    bool on_node = r->u.wl.node != NULL && veil_views_node_status(c->views, r->u.wl.node, &st) &&
                   st.subscribed;
    json_t *w = json_pack("{s:s, s:s, s:s, s:s, s:s?, s:s?, s:b}", "kind", r->kind_name,
                          "namespace", r->ns, "name", r->name, "identity", id, "address",
                          r->u.wl.address, "node", r->u.wl.node, "encrypted", on_node);
    if (w != NULL && !on_node)
        json_object_set_new(w, "why",
                            json_string(r->u.wl.node == NULL
                                            ? "it is not assigned to a node"
                                            : "no node proxy is connected on its node yet"));
    return w;
}

static json_t *policy_json(const struct veil_res *r)
{
    const char *what = r->kind == VEIL_RES_AUTHZ_POLICY ? veil_res_action_str(r->u.authz.action)
                                                        : veil_res_mtls_str(r->u.pa.mode);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:i}", "kind", r->kind_name, "namespace", r->ns,
                     "name", r->name, "effect", what, "file", r->file ? r->file : "", "line",
                     (int)r->line);
}

static void add_list(struct veil_control *c, json_t *st, enum veil_res_kind kind)
{
    const struct veil_res **v = NULL;
    size_t n = 0;
    if (veil_store_list(c->store, kind, &v, &n) != 0)
        return;
    const char *key = kind == VEIL_RES_POD || kind == VEIL_RES_WORKLOAD_ENTRY ? "workloads"
                      : kind == VEIL_RES_SERVICE                              ? "services"
                      : kind == VEIL_RES_IGNORED                              ? "ignored"
                                                                              : "policies";
    json_t *arr = json_object_get(st, key);
    for (size_t i = 0; i < n; i++) {
        const struct veil_res *r = v[i];
        json_t *item;
        if (kind == VEIL_RES_POD || kind == VEIL_RES_WORKLOAD_ENTRY)
            item = workload_json(c, r);
        else if (kind == VEIL_RES_SERVICE)
            item = json_pack("{s:s, s:s, s:s?}", "namespace", r->ns, "name", r->name, "clusterIP",
                             r->cluster_ip);
        else if (kind == VEIL_RES_IGNORED)
            item = json_pack("{s:s, s:s, s:i}", "id", r->id, "file", r->file ? r->file : "", "line",
                             (int)r->line);
        else
            item = policy_json(r);
        json_array_append_new(arr, item);
    }
    veil_free(v);
}

json_t *veil_control__status_json(struct veil_control *c)
{
    uint64_t version = veil_store_version(c->store);
    json_t *st = json_pack("{s:I, s:s, s:[], s:[], s:[], s:[], s:[], s:[]}", "version",
                           (json_int_t)version, "trustDomain", c->trust_domain, "nodes",
                           "workloads", "services", "policies", "ignored", "refused");
    if (st == NULL)
        return NULL;
    struct node_walk w = {json_object_get(st, "nodes"), version};
    veil_views_each_node(c->views, add_node, &w);
    add_list(c, st, VEIL_RES_POD);
    add_list(c, st, VEIL_RES_WORKLOAD_ENTRY);
    add_list(c, st, VEIL_RES_SERVICE);
    add_list(c, st, VEIL_RES_AUTHZ_POLICY);
    add_list(c, st, VEIL_RES_PEER_AUTHN);
    add_list(c, st, VEIL_RES_IGNORED);
    if (veil_views_l7_status(c->views, st) < 0) {
        json_decref(st);
        return NULL;
    }
    for (int s = 0; s < VEIL_RES_NSOURCES; s++) {
        if (!c->has_refused[s])
            continue;
        char msg[1200];
        veil_conf_err_format(&c->refused[s], msg, sizeof(msg));
        json_array_append_new(json_object_get(st, "refused"),
                              json_pack("{s:s, s:s}", "source",
                                        s == VEIL_RES_SRC_DIR ? "config directory" : "veil apply",
                                        "error", msg));
    }
    return st;
}

/* ---- admin socket: one JSON object per line ---- */

static size_t line_complete(const char *data, size_t len, int eof)
{
    const char *nl = memchr(data, '\n', len);
    if (nl != NULL)
        return (size_t)(nl - data) + 1;
    return eof ? len : 0;
}

static json_t *answer_error(const char *msg)
{
    return json_pack("{s:b, s:s}", "ok", 0, "error", msg);
}

static bool is_json_name(const char *path)
{
    const char *dot = strrchr(path, '.');
    return dot != NULL && strcmp(dot, ".json") == 0;
}

/* Parses the request's files; on error fills err and returns -1. */
static int parse_files(json_t *files, struct veil_conf ***out, size_t *n, struct veil_conf_err *err)
{
    size_t count = json_array_size(files);
    struct veil_conf **confs = veil_calloc(count + 1, sizeof(*confs));
    if (confs == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < count; i++) {
        json_t *f = json_array_get(files, i);
        const char *path = json_string_value(json_object_get(f, "path"));
        json_t *content = json_object_get(f, "content");
        if (path == NULL || !json_is_string(content)) {
            snprintf(err->msg, sizeof(err->msg), "request: files[%zu] needs path and content", i);
            err->file[0] = '\0';
            err->line = 0;
            *out = confs;
            *n = i;
            return -EINVAL;
        }
        int rc = veil_conf_parse(&confs[i], is_json_name(path) ? VEIL_CONF_JSON : VEIL_CONF_YAML,
                                 json_string_value(content), json_string_length(content), path,
                                 NULL, err);
        if (rc != 0) {
            *out = confs;
            *n = i;
            return rc;
        }
    }
    *out = confs;
    *n = count;
    return 0;
}

static json_t *report_json(const struct veil_store_report *rep)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < rep->n; i++)
        json_array_append_new(arr, json_pack("{s:s, s:s, s:b}", "id", rep->v[i].id, "outcome",
                                             veil_store_outcome_str(rep->v[i].what), "ignored",
                                             rep->v[i].ignored));
    return arr;
}

static json_t *admin_change(struct veil_control *c, json_t *req, bool del)
{
    struct veil_conf **confs = NULL;
    size_t n = 0;
    struct veil_conf_err err = {0};
    struct veil_store_report rep = {0};
    int rc = parse_files(json_object_get(req, "files"), &confs, &n, &err);
    if (rc == 0)
        rc = del ? veil_store_delete_docs(c->store, confs, n, &rep, &err)
                 : veil_store_apply(c->store, confs, n, &rep, &err);
    for (size_t i = 0; i < n; i++)
        veil_conf_free(confs[i]);
    veil_free(confs);
    json_t *ans;
    if (rc == 0) {
        veil_control__accepted(c, VEIL_RES_SRC_API);
        veil_control__committed(c);
        ans = json_pack("{s:b, s:I, s:o}", "ok", 1, "version",
                        (json_int_t)veil_store_version(c->store), "results", report_json(&rep));
    } else if (rc == -ENOMEM) {
        ans = answer_error("the control plane is out of memory; nothing was changed");
    } else {
        char msg[1200];
        veil_control__refused(c, VEIL_RES_SRC_API, &err);
        veil_conf_err_format(&err, msg, sizeof(msg));
        ans = answer_error(msg);
    }
    veil_store_report_free(&rep);
    return ans;
}

static int admin_handle(void *ctx, const char *req, size_t len, char **resp, size_t *resp_len)
{
    struct veil_control *c = ctx;
    json_error_t jerr;
    json_t *r = json_loadb(req, len, 0, &jerr), *ans;
    const char *op = json_string_value(json_object_get(r, "op"));
    if (r == NULL)
        ans = answer_error("request is not JSON");
    else if (op != NULL && strcmp(op, "apply") == 0)
        ans = admin_change(c, r, false);
    else if (op != NULL && strcmp(op, "delete") == 0)
        ans = admin_change(c, r, true);
    else if (op != NULL && strcmp(op, "status") == 0)
        ans = json_pack("{s:b, s:o}", "ok", 1, "status", veil_control__status_json(c));
    else
        ans = answer_error("unknown op (apply, delete, status)");
    json_decref(r);
    char *text = ans != NULL ? json_dumps(ans, JSON_COMPACT) : NULL;
    json_decref(ans);
    if (text == NULL)
        return -ENOMEM;
    size_t n = strlen(text);
    *resp = veil_malloc(n + 1);
    if (*resp != NULL) {
        memcpy(*resp, text, n);
        (*resp)[n] = '\n';
        *resp_len = n + 1;
    }
    free(text);
    return *resp != NULL ? 0 : -ENOMEM;
}

struct veil_reqsrv *veil_control__admin_server(struct veil_control *c, int fd)
{
    struct veil_reqsrv_opts o = {line_complete, admin_handle, c, ADMIN_MAX_REQUEST, 30000};
    return veil_reqsrv_new(c->loop, fd, &o);
}

/* ---- status port: HTTP/1.1 GET ---- */

static int http_handle(void *ctx, const char *req, size_t len, char **resp, size_t *resp_len)
{
    struct veil_control *c = ctx;
    (void)len;
    char path[256] = "";
    if (sscanf(req, "GET %255s HTTP/1.", path) != 1)
        return veil_reqsrv_http_reply(400, "Bad Request", "text/plain", "GET only\n", 9, resp,
                                      resp_len);
    if (strcmp(path, "/metrics") == 0) {
        char *text = NULL;
        size_t n = 0;
        veil_control__sync_metrics(c);
        if (veil_metrics_render(c->metrics, &text, &n) != 0)
            return -ENOMEM;
        int rc =
            veil_reqsrv_http_reply(200, "OK", "text/plain; version=0.0.4", text, n, resp, resp_len);
        veil_free(text);
        return rc;
    }
    if (strcmp(path, "/status") == 0) {
        json_t *st = veil_control__status_json(c);
        char *text = st != NULL ? json_dumps(st, JSON_INDENT(2)) : NULL;
        json_decref(st);
        if (text == NULL)
            return -ENOMEM;
        int rc = veil_reqsrv_http_reply(200, "OK", "application/json", text, strlen(text), resp,
                                        resp_len);
        free(text);
        return rc;
    }
    if (strcmp(path, "/healthz") == 0)
        return veil_reqsrv_http_reply(200, "OK", "text/plain", "ok\n", 3, resp, resp_len);
    return veil_reqsrv_http_reply(404, "Not Found", "text/plain", "not found\n", 10, resp,
                                  resp_len);
}

struct veil_reqsrv *veil_control__status_server(struct veil_control *c, int fd)
{
    struct veil_reqsrv_opts o = {veil_reqsrv_http_complete, http_handle, c, HTTP_MAX_REQUEST,
                                 10000};
    return veil_reqsrv_new(c->loop, fd, &o);
}
