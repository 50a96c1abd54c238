/*
 * The request stages between the parsed head and the upstream (wp-int.h):
 * L7 authorization, the route, the endpoint choice with its bookkeeping,
 * retries' budget and backoff.
 */
#include "waypoint/wp-int.h"

#include "core/alloc.h"
#include "core/fmt.h"
#include "core/log.h"
#include "core/loop.h"
#include "http/h1.h"
#include "node/authz.h"
#include "hbone/hbone.h"
#include "node/config.h"
#include "waypoint/balance.h"
#include "waypoint/route.h"

#include <arpa/inet.h>
#include <errno.h>

#include <stdio.h>
#include <string.h>

bool wp__authz_denied(struct wp_conn *c, int32_t stream, struct veil_authz_str method,
                      struct veil_authz_str path, struct veil_authz_str host,
                      const struct veil_authz_header *hdrs, size_t nh)
{
    struct veil_wp *wp = c->wp;
    if (wp->authz == NULL)
        return false;
    struct veil_authz_l7_req q = {
        .wp_ns = wp->env.ns,
        .wp_name = wp->env.name,
        .svc_ns = c->svc_ns,
        .svc_name = c->svc_name,
        .src_principal = c->src_principal[0] ? c->src_principal : NULL,
        .src_ip = {.family = AF_INET, .u.v4 = c->src_addr},
        .dst_ip = {.family = AF_INET, .u.v4 = c->vip.sin_addr},
        .dst_port = c->port,
        .http = true,
        .method = method,
        .path = path,
        .host = host,
        .headers = hdrs,
        .nheaders = nh,
    };
    struct veil_authz_decision d;
    if (veil_authz_decide_l7(wp->authz, &q, &d) != VEIL_AUTHZ_DENY)
        return false;
    char st[24] = "";
    if (stream > 0)
        snprintf(st, sizeof(st), "stream %d: ", (int)stream);
    VEIL_INFO(LOG, "conn %llu: %s%.*s %.*s to %s/%s from %s denied by policy %s",
              (unsigned long long)c->id, st, (int)method.len, method.ptr != NULL ? method.ptr : "",
              (int)path.len, path.ptr != NULL ? path.ptr : "", c->svc_ns, c->svc_name,
              c->src_principal[0] ? c->src_principal : "(no identity)",
              d.policy[0] ? d.policy : "(no ALLOW matched)");
    return true;
}

/* L7 AuthorizationPolicy (docs/policy.md, "At the waypoint"): a denied
 * request gets 403 and a short body, as Istio's waypoint answers. */
int wp__stage_authz(struct wp_conn *c, struct wp_req *r)
{
    struct veil_wp *wp = c->wp;
    if (wp->authz == NULL)
        return 0;
    struct veil_authz_header hdrs[WP_HDRS_MAX];
    const char *b = r->raw;
    const struct veil_h1_head *h = &r->head;
    for (size_t i = 0; i < h->nheaders; i++) {
        hdrs[i].name = (struct veil_authz_str){b + h->headers[i].name.off, h->headers[i].name.len};
        hdrs[i].value =
            (struct veil_authz_str){b + h->headers[i].value.off, h->headers[i].value.len};
    }
    struct veil_authz_str host = {(h->flags & VEIL_H1_F_HOST) ? b + h->host.off : NULL,
                                  h->host.len};
    if (!wp__authz_denied(c, 0, (struct veil_authz_str){b + h->method_span.off, h->method_span.len},
                          (struct veil_authz_str){b + h->target.off, h->target.len}, host, hdrs,
                          h->nheaders))
        return 0;
    wp__reply(c, 403, "RBAC: access denied\n", "RBAC", false);
    return -1;
}

/* The request view the route table matches (route.h). */
static void route_view(const struct wp_conn *c, const struct wp_req *r, struct veil_route_hdr *hdrs,
                       struct veil_route_req *q)
{
    const char *b = r->raw;
    const struct veil_h1_head *h = &r->head;
    for (size_t i = 0; i < h->nheaders; i++)
        hdrs[i] = (struct veil_route_hdr){b + h->headers[i].name.off, h->headers[i].name.len,
                                          b + h->headers[i].value.off, h->headers[i].value.len};
    *q = (struct veil_route_req){
        .method = b + h->method_span.off,
        .method_len = h->method_span.len,
        .path = b + h->target.off,
        .path_len = h->target.len,
        .authority = (h->flags & VEIL_H1_F_HOST) ? b + h->host.off : c->svc_name,
        .authority_len = (h->flags & VEIL_H1_F_HOST) ? h->host.len : strlen(c->svc_name),
        .headers = hdrs,
        .nheaders = h->nheaders,
        .port = c->port,
        .port_name = wp__port_name(r->svc, c->port),
    };
}

const char *wp__port_name(const struct veil_node_svc *svc, uint16_t port)
{
    const struct veil_node_svc_port *p = svc != NULL ? veil_node_svc_port(svc, port) : NULL;
    return p != NULL ? p->name : NULL;
}

static int redirect(struct wp_conn *c, struct wp_req *r, const struct veil_route_req *q)
{
    const struct veil_route_redirect *rd = &r->match.rule->filters.redirect;
    char loc[2048];
    if (veil_route_redirect_location(&r->match, rd, q, loc, sizeof(loc)) < 0) {
        wp__reply(c, 500, "cannot build the redirect location\n", "-", false);
        return -1;
    }
    wp__reply_hdr(c, rd->status ? rd->status : 302, "", "-", false, "location", loc);
    return -1;
}

/* URLRewrite: the new target and Host, kept on the request. */
static int rewrite(struct wp_conn *c, struct wp_req *r, const struct veil_route_filters *f)
{
    if (!f->has_rewrite)
        return 0;
    const struct veil_route_rewrite *rw = &f->rewrite;
    if (rw->path.type != VEIL_ROUTE_PATH_KEEP) {
        char path[4096];
        int n = veil_route_path_rewrite(&r->match, &rw->path, r->raw + r->head.target.off,
                                        r->head.target.len, path, sizeof(path));
        if (n < 0) {
            wp__reply(c, 500, "cannot rewrite the path\n", "-", false);
            return -1;
        }
        veil_free(r->path_override);
        r->path_override = veil_strdup(path);
    }
    if (rw->hostname != NULL)
        r->host_override = rw->hostname;
    return 0;
}

void wp__mirrors_hit(struct veil_wp *wp, const struct veil_route_filters *f,
                     const struct veil_route_mirror **out, unsigned *n)
{
    for (size_t i = 0; f != NULL && i < f->nmirrors && *n < WP_REQ_MIRRORS; i++)
        if (veil_route_mirror_hit(&f->mirrors[i], wp__rand(wp)))
            out[(*n)++] = &f->mirrors[i];
}

int wp__stage_route(struct wp_conn *c, struct wp_req *r)
{
    struct veil_wp *wp = c->wp;
    /* r->svc: the service of c->vip, looked up by wp__request_begin() */
    r->svc_port = c->port;
    veil_fmt_cat(r->backend, sizeof(r->backend), c->svc_ns, "/", c->svc_name);
    if (wp->routes == NULL)
        return 0;
    struct veil_route_hdr hdrs[WP_HDRS_MAX];
    struct veil_route_req q;
    route_view(c, r, hdrs, &q);
    enum veil_route_verdict v =
        veil_route_find(wp->routes, c->svc_ns, c->svc_name, c->port, &q, &r->match);
    if (v == VEIL_ROUTE_NONE)
        return 0;
    if (v != VEIL_ROUTE_MATCHED) {
        wp__reply(c, 404, "route not found\n", "NR", false);
        return -1;
    }
    r->matched = true;
    const struct veil_route_rule *rule = r->match.rule;
    veil_fmt_cat(r->route, sizeof(r->route), r->match.route_ns, "/", r->match.route_name);
    if (rule->filters.has_redirect)
        return redirect(c, r, &q);
    const struct veil_route_backend *be = veil_route_pick(rule, wp__rand(wp));
    struct veil_node_svc *svc =
        be != NULL && be->valid ? veil_node_cfg_svc_by_name(wp->env.cfg, be->ns, be->name) : NULL;
    if (svc == NULL) {
        wp__reply(c, 500, "no valid backend for the route\n", "NR", false);
        return -1;
    }
    r->svc = svc;
    r->svc_port = be->port ? be->port : c->port;
    veil_fmt_cat(r->backend, sizeof(r->backend), be->ns, "/", be->name);
    r->be_filters = be->filters;
    r->timeout_ms = rule->request_timeout_ms;
    r->attempt_timeout_ms = rule->backend_timeout_ms;
    if (rule->retry.set) {
        r->retry_max = rule->retry.attempts;
        r->retry_codes = rule->retry.codes;
        r->nretry_codes = rule->retry.ncodes;
        r->backoff_ms = rule->retry.backoff_ms;
    }
    if (rewrite(c, r, &rule->filters) != 0 ||
        (be->filters != NULL && rewrite(c, r, be->filters) != 0))
        return -1;
    wp__mirrors_hit(wp, &rule->filters, r->mirrors, &r->nmirrors);
    wp__mirrors_hit(wp, be->filters, r->mirrors, &r->nmirrors);
    return 0;
}

/* The header lists of a request or response after the route's filters
 * (rule's, then the backend's). Returns the count, or -ENOBUFS. */
int wp__headers_filtered(const struct wp_req *r, bool response, const struct veil_route_hdr *in,
                         size_t nin, struct veil_route_hdr *out, size_t cap)
{
    if (!r->matched) {
        if (nin > cap)
            return -ENOBUFS;
        memcpy(out, in, nin * sizeof(in[0]));
        return (int)nin;
    }
    const struct veil_route_filters *f[2] = {&r->match.rule->filters, r->be_filters};
    struct veil_route_hdr tmp[WP_HDRS_MAX + 32];
    return wp__header_mods(f, response, in, nin, out, tmp,
                           cap < sizeof(tmp) / sizeof(tmp[0]) ? cap : sizeof(tmp) / sizeof(tmp[0]));
}

int wp__header_mods(const struct veil_route_filters *const f[2], bool response,
                    const struct veil_route_hdr *in, size_t nin, struct veil_route_hdr *out,
                    struct veil_route_hdr *tmp, size_t cap)
{
    const struct veil_route_hdr *cur = in;
    int n = (int)nin;
    for (int i = 0; i < 2; i++) {
        if (f[i] == NULL)
            continue;
        const struct veil_route_header_mod *mod =
            response ? &f[i]->response_headers : &f[i]->request_headers;
        struct veil_route_hdr *dst = cur == out ? tmp : out;
        n = veil_route_headers_apply(mod, cur, (size_t)n, dst, cap);
        if (n < 0)
            return n;
        cur = dst;
    }
    if (cur != out) {
        if ((size_t)n > cap)
            return -ENOBUFS;
        memcpy(out, cur, (size_t)n * sizeof(out[0]));
    }
    return n;
}

/* ---- endpoints: least request, outlier detection, retry budget ---- */

/* The balancer of one backend service port, made when first used. */
struct wp_backend {
    struct wp_backend *next;
    char key[160]; /* "ns/name:port" */
    uint64_t cfg_version;
    bool loaded;
    struct veil_wp_bal_set *set;
};

static struct wp_backend *backend_get(struct veil_wp *wp, const struct veil_node_svc *svc,
                                      uint16_t port)
{
    char key[160], pnum[VEIL_FMT_U64_MAX];
    veil_fmt_u64(pnum, port);
    veil_fmt_cat(key, sizeof(key), svc->ns, "/", svc->name, ":", pnum);
    struct wp_backend *b;
    for (b = wp->backends; b != NULL; b = b->next)
        if (strcmp(b->key, key) == 0)
            break;
    if (b == NULL) {
        b = veil_calloc(1, sizeof(*b));
        if (b == NULL)
            return NULL;
        struct veil_wp_bal_cfg cfg;
        veil_wp_bal_cfg_default(&cfg);
        b->set = veil_wp_bal_new(&cfg);
        if (b->set == NULL) {
            veil_free(b);
            return NULL;
        }
        snprintf(b->key, sizeof(b->key), "%s", key);
        b->next = wp->backends;
        wp->backends = b;
    }
    if (!b->loaded || b->cfg_version != wp->env.cfg->version) {
        struct veil_wp_bal_ep_in in[256];
        size_t n = 0;
        for (size_t i = 0; i < svc->neps && n < sizeof(in) / sizeof(in[0]); i++) {
            const struct veil_node_ep *ep = &svc->eps[i];
            for (size_t j = 0; ep->has_addr && j < ep->nports; j++)
                if (ep->ports[j].port == port) {
                    in[n++] = (struct veil_wp_bal_ep_in){ep->addr, ep->ports[j].target,
                                                         ep->identity, ep->workload};
                    break;
                }
        }
        if (veil_wp_bal_update(b->set, in, n) != 0)
            return NULL;
        b->loaded = true;
        b->cfg_version = wp->env.cfg->version;
    }
    return b;
}

void wp__backends_free(struct veil_wp *wp)
{
    while (wp->backends != NULL) {
        struct wp_backend *b = wp->backends;
        wp->backends = b->next;
        veil_wp_bal_free(b->set);
        veil_free(b);
    }
}

/* The balancer's choice among the endpoints of svc:port (least request
 * among the healthy ones, not `avoid`), into t; NULL if none. */
static struct veil_wp_bal_ep *choose(struct veil_wp *wp, struct veil_node_svc *svc, uint16_t port,
                                     const struct veil_wp_bal_ep *avoid,
                                     struct veil_wp_bal_set **set, struct wp_target *t)
{
    struct wp_backend *b = backend_get(wp, svc, port);
    struct veil_wp_bal_ep *ep = b != NULL ? veil_wp_bal_pick(b->set, veil_loop_now(wp->env.loop),
                                                             wp__rand(wp), wp__rand(wp), avoid)
                                          : NULL;
    if (ep != NULL) {
        *set = b->set;
        *t = (struct wp_target){ep->addr, ep->port, ep->identity, ep->workload};
    }
    return ep;
}

/* Picks the endpoint of an attempt (not the one a retry just failed on)
 * and starts the attempt on it. */
int wp__ep_pick(struct wp_conn *c, struct veil_node_svc *svc, uint16_t port,
                const struct veil_wp_bal_ep *avoid, struct wp_target *t)
{
    struct veil_wp_bal_set *set;
    struct veil_wp_bal_ep *ep = choose(c->wp, svc, port, avoid, &set, t);
    if (ep == NULL)
        return -ENOENT;
    veil_wp_bal_start(set, ep);
    c->bal_set = set;
    c->bal_ep = ep;
    return 0;
}

int wp__ep_peek(struct veil_wp *wp, struct veil_node_svc *svc, uint16_t port, struct wp_target *t)
{
    struct veil_wp_bal_set *set;
    return choose(wp, svc, port, NULL, &set, t) != NULL ? 0 : -ENOENT;
}

/* The HBONE dial to an endpoint as the waypoint makes it: the pool key
 * "wp|ip|identity" (one mTLS connection per endpoint identity), authority
 * ip:port, the endpoint's identity required. */
struct veil_hbone_dial *wp__dial_init(struct wp_dial *w, struct veil_wp *wp, struct in_addr addr,
                                      uint16_t port, const char *identity)
{
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &addr, ip, sizeof(ip));
    w->dst = (struct sockaddr_in){
        .sin_family = AF_INET,
        .sin_addr = addr,
        .sin_port = htons(wp->env.upstream_port ? wp->env.upstream_port : VEIL_HBONE_PORT)};
    snprintf(w->key, sizeof(w->key), "wp|%s|%s", ip, identity != NULL ? identity : "");
    snprintf(w->authority, sizeof(w->authority), "%s:%u", ip, port);
    w->d = (struct veil_hbone_dial){
        .key = w->key,
        .tls = wp->env.client_tls,
        .dst = (const struct sockaddr *)&w->dst,
        .dst_len = sizeof(w->dst),
        .authority = w->authority,
        .server_id = identity,
    };
    return &w->d;
}

/* The attempt on the picked endpoint ended: status is the response's, 0
 * for a failure without one (connect, reset, timeout), -1 for no verdict. */
void wp__ep_done(struct wp_conn *c, int status)
{
    if (c->bal_ep == NULL)
        return;
    enum veil_wp_bal_outcome o = status < 0 ? VEIL_WP_BAL_CANCEL : veil_wp_bal_outcome_of(status);
    struct wp_req *r = c->req;
    if (r != NULL)
        r->avoid = status >= 0 && o != VEIL_WP_BAL_OK ? c->bal_ep : NULL;
    veil_wp_bal_done(c->bal_set, c->bal_ep, o, veil_loop_now(c->wp->env.loop));
    if (r != NULL && r->retrying) {
        veil_wp_bal_retry_done(c->bal_set);
        r->retrying = false;
    }
    c->bal_ep = NULL;
}

/* The retry budget of the backend (20% of the requests in flight, at least
 * 3 at once): true and counted, or false. */
bool wp__retry_budget(struct veil_wp *wp, struct wp_req *r)
{
    (void)wp;
    struct wp_conn *c = r->conn;
    if (c == NULL || c->bal_set == NULL)
        return true;
    if (!veil_wp_bal_retry_start(c->bal_set))
        return false;
    r->retrying = true;
    return true;
}

/* Exponential backoff with jitter, as Envoy: base 25 ms (or the route's),
 * doubling per retry, at most 10x the base, a random point below that. */
uint64_t wp__backoff_ms(struct veil_wp *wp, struct wp_req *r)
{
    return wp__backoff(wp, r->backoff_ms, r->attempts);
}

uint64_t wp__backoff(struct veil_wp *wp, uint64_t base_ms, unsigned attempts)
{
    uint64_t base = base_ms ? base_ms : 25;
    uint64_t cap = base << (attempts < 4 ? attempts : 4);
    if (cap > 10 * base)
        cap = 10 * base;
    return 1 + wp__rand(wp) % cap;
}

/* CONTRACT with the destination node (docs/hbone.md): the original
 * caller's identity rides on the CONNECT; the node trusts it only because
 * the TLS peer is a waypoint. */
void wp__dial_headers(struct wp_conn *c, struct veil_hbone_dial *d)
{
    if (c->src_principal[0] == '\0')
        return;
    c->dial_hdr.name = VEIL_HBONE_SOURCE_PRINCIPAL;
    c->dial_hdr.value = c->src_principal;
    d->headers = &c->dial_hdr;
    d->nheaders = 1;
}

/* "Workload/ns/name" -> ns, name. */
void wp__names_from_key(const char *key, char *ns, size_t nscap, char *name, size_t namecap)
{
    ns[0] = name[0] = '\0';
    if (key == NULL)
        return;
    const char *a = strchr(key, '/');
    const char *b = a != NULL ? strchr(a + 1, '/') : NULL;
    if (b == NULL)
        return;
    size_t n = (size_t)(b - a - 1) < nscap ? (size_t)(b - a - 1) : nscap - 1;
    memcpy(ns, a + 1, n);
    ns[n] = '\0';
    veil_fmt_cat(name, namecap, b + 1);
}

/* ---- the route table ---- */

int wp__routes_init(struct veil_wp *wp)
{
    wp->routes = veil_route_table_new();
    return wp->routes != NULL ? 0 : -ENOMEM;
}

void wp__routes_free(struct veil_wp *wp)
{
    veil_route_table_free(wp->routes);
    wp->routes = NULL;
}

void wp__routes_clear(struct veil_wp *wp)
{
    veil_route_clear(wp->routes);
}

int wp__routes_item(struct veil_wp *wp, const char *kind, const char *ns, const char *name,
                    const struct json_t *spec, char *err, size_t errlen)
{
    if (spec == NULL) {
        veil_route_remove(wp->routes, kind, ns, name);
        return 0;
    }
    int rc = veil_route_set(wp->routes, kind, ns, name, spec, err, errlen);
    if (rc < 0)
        VEIL_WARN(LOG, "%s %s/%s refused: %s", kind, ns, name, err);
    return rc;
}
