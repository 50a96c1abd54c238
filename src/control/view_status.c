/*
 * The L7 parts of the status document: waypoints, route status and the
 * AuthorizationPolicies whose L7 parts no waypoint enforces (docs/control.md).
 * Computed on demand from the store and the views; nothing is cached.
 */
#include "control/resource.h"
#include "control/store.h"
#include "control/view.h"

#include "core/alloc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEXT_MAX      512
#define WORKLOADS_MAX 20 /* workloads named per policy; "count" has them all */

/* The resources of one kind, sorted by id; freed with list_free. */
struct list {
    const struct veil_res **v;
    size_t n;
};

static int list_get(const struct veil_store *s, enum veil_res_kind kind, struct list *out)
{
    out->v = NULL;
    out->n = 0;
    return veil_store_list(s, kind, &out->v, &out->n);
}

static void list_free(struct list *l)
{
    veil_free(l->v);
}

/* Appends a new reference; -ENOMEM when o is NULL or does not fit. */
static int append(json_t *arr, json_t *o)
{
    return o != NULL && json_array_append_new(arr, o) == 0 ? 0 : -ENOMEM;
}

static char *identity(const struct veil_views *v, const struct veil_res *w, char *buf, size_t n)
{
    snprintf(buf, n, "spiffe://%s/ns/%s/sa/%s", veil_views_trust_domain(v), w->ns,
             w->u.wl.service_account);
    return buf;
}

/* ---- waypoints ---------------------------------------------------------------- */

/* The entry of waypoint ns/name in `by` (key "ns/name"), created when new. */
static json_t *waypoint_entry(struct veil_views *v, json_t *by, const char *ns, const char *name)
{
    char key[TEXT_MAX], id[TEXT_MAX], wl[TEXT_MAX];
    snprintf(key, sizeof(key), "%s/%s", ns, name);
    json_t *e = json_object_get(by, key);
    if (e != NULL)
        return e;
    const struct veil_res *w = veil_views_waypoint(v, ns, name);
    if (w != NULL) {
        snprintf(wl, sizeof(wl), "Workload/%s/%s", w->ns, w->name);
        e = json_pack("{s:s,s:s,s:s,s:s,s:s,s:[]}", "namespace", ns, "name", name, "address",
                      w->u.wl.address, "identity", identity(v, w, id, sizeof(id)), "workload", wl,
                      "services");
    } else {
        snprintf(id, sizeof(id), "no workload labelled %s: %s has an address yet",
                 VEIL_RES_GATEWAY_NAME_LABEL, name);
        e = json_pack("{s:s,s:s,s:[],s:s}", "namespace", ns, "name", name, "services", "why", id);
    }
    return e != NULL && json_object_set_new(by, key, e) == 0 ? e : NULL;
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The entries of `by` into `arr`, sorted by "ns/name". */
static int sorted_values(json_t *by, json_t *arr)
{
    size_t n = json_object_size(by), i = 0;
    const char **keys = veil_calloc(n + 1, sizeof(*keys));
    const char *k;
    json_t *val;
    if (keys == NULL)
        return -ENOMEM;
    json_object_foreach(by, k, val)
    {
        keys[i++] = k;
    }
    qsort(keys, n, sizeof(*keys), key_cmp);
    int rc = 0;
    for (i = 0; rc == 0 && i < n; i++)
        rc = json_array_append(arr, json_object_get(by, keys[i])) == 0 ? 0 : -ENOMEM;
    veil_free(keys);
    return rc;
}

static int add_waypoints(struct veil_views *v, const struct list *wls, const struct list *svcs,
                         json_t *arr)
{
    json_t *by = json_object();
    int rc = by != NULL ? 0 : -ENOMEM;
    for (size_t i = 0; rc == 0 && i < wls->n; i++) {
        const char *name = veil_res_label_get(&wls->v[i]->labels, VEIL_RES_GATEWAY_NAME_LABEL);
        if (name != NULL && waypoint_entry(v, by, wls->v[i]->ns, name) == NULL)
            rc = -ENOMEM;
    }
    for (size_t i = 0; rc == 0 && i < svcs->n; i++) {
        const struct veil_res *s = svcs->v[i];
        const char *name;
        char ref[TEXT_MAX];
        veil_views_service_waypoint(v, s, &name);
        if (name == NULL)
            continue;
        json_t *e = waypoint_entry(v, by, s->ns, name);
        snprintf(ref, sizeof(ref), "%s/%s", s->ns, s->name);
        if (e == NULL || append(json_object_get(e, "services"), json_string(ref)) < 0)
            rc = -ENOMEM;
    }
    if (rc == 0)
        rc = sorted_values(by, arr);
    json_decref(by);
    return rc;
}

/* ---- routes ----------------------------------------------------------------------- */

/* "Service shop/web:8080", then " (sectionName http)" when one is given */
static void ref_text(const struct veil_res_ref *r, char *buf, size_t n)
{
    char port[8] = "";
    if (r->port != 0)
        snprintf(port, sizeof(port), ":%u", (unsigned)r->port);
    snprintf(buf, n, "%s %s/%s%s%s%s%s", r->kind, r->ns, r->name, port,
             r->section_name != NULL ? " (sectionName " : "",
             r->section_name != NULL ? r->section_name : "", r->section_name != NULL ? ")" : "");
}

static bool is_service_ref(const struct veil_res_ref *r)
{
    return r->group[0] == '\0' && strcmp(r->kind, "Service") == 0;
}

static bool has_port(const struct veil_res *svc, uint16_t port)
{
    for (size_t i = 0; i < svc->u.svc.nports; i++)
        if (svc->u.svc.ports[i].port == port)
            return true;
    return port == 0;
}

/* The port of svc that parentRef p's sectionName names (and p's port,
 * when both are given, numbers): true when there is one, or no sectionName. */
static bool has_section(const struct veil_res *svc, const struct veil_res_ref *p)
{
    if (p->section_name == NULL)
        return true;
    for (size_t i = 0; i < svc->u.svc.nports; i++)
        if (strcmp(svc->u.svc.ports[i].name, p->section_name) == 0 &&
            (p->port == 0 || svc->u.svc.ports[i].port == p->port))
            return true;
    return false;
}

static const struct veil_res *service_of(const struct veil_store *s, const struct veil_res_ref *r)
{
    char id[TEXT_MAX];
    veil_res_id_format(id, sizeof(id), VEIL_RES_SERVICE, r->ns, r->name);
    return veil_store_get(s, id);
}

/* Whether Service svc has a waypoint to apply a route: *why or *wp. */
static void waypoint_check(struct veil_views *v, const struct veil_res *svc, char *why, size_t n,
                           char *wp, size_t wn)
{
    const char *name;
    const struct veil_res *w = veil_views_service_waypoint(v, svc, &name);
    if (name == NULL)
        snprintf(why, n,
                 "Service %s/%s has no waypoint: the route has no effect until one is added "
                 "(veil waypoint add)",
                 svc->ns, svc->name);
    else if (w == NULL)
        snprintf(why, n,
                 "Service %s/%s uses waypoint %s, which is not running: the route has no "
                 "effect until it is (veil waypoint add)",
                 svc->ns, svc->name, name);
    else
        snprintf(wp, wn, "%s/%s", svc->ns, name);
}

/* Why parentRef p of route `rt` does not take effect ("" when it does);
 * *wp receives "ns/name" of the waypoint that applies it. */
static void parent_check(struct veil_views *v, const struct veil_store *st,
                         const struct veil_res *rt, const struct veil_res_ref *p, char *why,
                         size_t n, char *wp, size_t wn)
{
    const struct veil_res *svc = is_service_ref(p) ? service_of(st, p) : NULL;
    why[0] = wp[0] = '\0';
    if (strcmp(p->kind, "Service") == 0 && !is_service_ref(p))
        snprintf(why, n, "parentRef kind Service of group %s is not supported (write group: \"\")",
                 p->group);
    else if (!is_service_ref(p))
        snprintf(why, n, "parentRef kind %s is not supported", p->kind);
    else if (strcmp(p->ns, rt->ns) != 0)
        snprintf(why, n,
                 "Service %s/%s is in another namespace: routes for another namespace's "
                 "Service are not supported",
                 p->ns, p->name);
    else if (svc == NULL)
        snprintf(why, n, "Service %s/%s not found", p->ns, p->name);
    else if (!has_port(svc, p->port))
        snprintf(why, n, "Service %s/%s has no port %u", p->ns, p->name, (unsigned)p->port);
    else if (!has_section(svc, p)) /* "%.0u": no digit for port 0 (not given) */
        snprintf(why, n, "Service %s/%s has no port%s%.0u named %s (sectionName)", p->ns, p->name,
                 p->port != 0 ? " " : "", (unsigned)p->port, p->section_name);
    else
        waypoint_check(v, svc, why, n, wp, wn);
}

static json_t *route_parents(struct veil_views *v, const struct veil_store *st,
                             const struct veil_res *rt)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < rt->u.route.nparents; i++) {
        const struct veil_res_ref *p = &rt->u.route.parents[i];
        char ref[TEXT_MAX], why[TEXT_MAX], wp[TEXT_MAX];
        ref_text(p, ref, sizeof(ref));
        parent_check(v, st, rt, p, why, sizeof(why), wp, sizeof(wp));
        json_t *o = why[0] != '\0'
                        ? json_pack("{s:s,s:b,s:s}", "ref", ref, "accepted", 0, "reason", why)
                        : json_pack("{s:s,s:b,s:s}", "ref", ref, "accepted", 1, "waypoint", wp);
        if (append(arr, o) < 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

/* The backendRefs that do not resolve, with why. */
static json_t *route_backends(const struct veil_store *st, const struct veil_res *rt)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr != NULL && i < rt->u.route.nbackends; i++) {
        const struct veil_res_ref *b = &rt->u.route.backends[i];
        const struct veil_res *svc = is_service_ref(b) ? service_of(st, b) : NULL;
        char ref[TEXT_MAX], why[TEXT_MAX];
        ref_text(b, ref, sizeof(ref));
        if (!is_service_ref(b))
            snprintf(why, sizeof(why), "backendRef kind %s is not supported", b->kind);
        else if (svc == NULL)
            snprintf(why, sizeof(why), "backendRef Service %s/%s not found", b->ns, b->name);
        else if (!has_port(svc, b->port))
            snprintf(why, sizeof(why), "backendRef Service %s/%s has no port %u", b->ns, b->name,
                     (unsigned)b->port);
        else
            continue;
        if (append(arr, json_pack("{s:s,s:s}", "ref", ref, "reason", why)) < 0) {
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static int add_routes(struct veil_views *v, const struct veil_store *st, enum veil_res_kind kind,
                      json_t *arr)
{
    struct list l;
    int rc = list_get(st, kind, &l);
    for (size_t i = 0; rc == 0 && i < l.n; i++) {
        const struct veil_res *r = l.v[i];
        rc = append(arr,
                    json_pack("{s:s,s:s,s:s,s:s,s:i,s:o?,s:o?}", "kind", r->kind_name, "namespace",
                              r->ns, "name", r->name, "file", r->file != NULL ? r->file : "",
                              "line", (int)r->line, "parents", route_parents(v, st, r),
                              "unresolvedBackends", route_backends(st, r)));
    }
    list_free(&l);
    return rc;
}

/* ---- AuthorizationPolicies with L7 parts and no waypoint ------------------------------- */

static const char *enforced_text(enum veil_res_action a)
{
    switch (a) {
    case VEIL_RES_ALLOW:
        return "an ALLOW with L7 parts denies the requests those rules would allow";
    case VEIL_RES_DENY:
        return "a DENY applies without its L7 parts";
    default:
        return "an AUDIT applies without its L7 parts";
    }
}

/* Does policy p bind workload w (by selector or namespace-wide)? */
static bool binds(struct veil_views *v, const struct veil_res *p, const struct veil_res *w)
{
    if (strcmp(p->ns, w->ns) != 0 && strcmp(p->ns, veil_views_root_ns(v)) != 0)
        return false;
    return !p->u.authz.has_selector || veil_res_selects(&p->u.authz.selector, &w->labels);
}

/* The workloads policy p binds that have no waypoint: names (at most
 * WORKLOADS_MAX) into `names`, all of them counted. */
static int unwaypointed(struct veil_views *v, const struct veil_res *p, const struct list *wls,
                        json_t *names, size_t *count)
{
    *count = 0;
    for (size_t i = 0; i < wls->n; i++) {
        const struct veil_res *w = wls->v[i];
        char ref[TEXT_MAX];
        if (!binds(v, p, w) || veil_res_label_get(&w->labels, VEIL_RES_GATEWAY_NAME_LABEL) ||
            veil_views_workload_has_waypoint(v, w))
            continue;
        snprintf(ref, sizeof(ref), "%s/%s", w->ns, w->name);
        if (++*count <= WORKLOADS_MAX && append(names, json_string(ref)) < 0)
            return -ENOMEM;
    }
    return 0;
}

static int add_l7_policies(struct veil_views *v, const struct veil_store *st,
                           const struct list *wls, json_t *arr)
{
    struct list l;
    int rc = list_get(st, VEIL_RES_AUTHZ_POLICY, &l);
    for (size_t i = 0; rc == 0 && i < l.n; i++) {
        const struct veil_res *p = l.v[i];
        size_t count;
        if (p->u.authz.l7_field == NULL || p->u.authz.has_target_refs)
            continue; /* targetRefs: attached to a waypoint, not to workloads */
        json_t *names = json_array();
        rc = names != NULL ? unwaypointed(v, p, wls, names, &count) : -ENOMEM;
        if (rc == 0 && count > 0)
            rc = append(arr,
                        json_pack("{s:s,s:s,s:s,s:s,s:O,s:I,s:s}", "namespace", p->ns, "name",
                                  p->name, "action", veil_res_action_str(p->u.authz.action),
                                  "field", p->u.authz.l7_field, "workloads", names, "count",
                                  (json_int_t)count, "enforced", enforced_text(p->u.authz.action)));
        json_decref(names);
    }
    list_free(&l);
    return rc;
}

/* ---- the whole --------------------------------------------------------------------- */

/* Pods and WorkloadEntries, in one list. */
static int workloads(const struct veil_store *st, struct list *out)
{
    struct list pods, wes;
    int rc = list_get(st, VEIL_RES_POD, &pods);
    if (rc == 0)
        rc = list_get(st, VEIL_RES_WORKLOAD_ENTRY, &wes);
    else
        wes = (struct list){0};
    out->n = pods.n + wes.n;
    out->v = rc == 0 ? veil_calloc(out->n + 1, sizeof(*out->v)) : NULL;
    if (out->v != NULL) {
        memcpy(out->v, pods.v, pods.n * sizeof(*out->v));
        memcpy(out->v + pods.n, wes.v, wes.n * sizeof(*out->v));
    }
    list_free(&pods);
    list_free(&wes);
    return out->v != NULL ? 0 : -ENOMEM;
}

int veil_views_l7_status(struct veil_views *v, json_t *st)
{
    const struct veil_store *s = veil_views_store(v);
    json_t *wps = json_array(), *routes = json_array(), *pols = json_array();
    struct list wls = {0}, svcs = {0};
    int rc = wps != NULL && routes != NULL && pols != NULL ? 0 : -ENOMEM;
    if (json_object_set_new(st, "waypoints", wps) < 0 ||
        json_object_set_new(st, "routes", routes) < 0 ||
        json_object_set_new(st, "l7Policies", pols) < 0)
        rc = -ENOMEM;
    if (rc == 0)
        rc = workloads(s, &wls);
    if (rc == 0)
        rc = list_get(s, VEIL_RES_SERVICE, &svcs);
    if (rc == 0)
        rc = add_waypoints(v, &wls, &svcs, wps);
    if (rc == 0)
        rc = add_routes(v, s, VEIL_RES_HTTP_ROUTE, routes);
    if (rc == 0)
        rc = add_routes(v, s, VEIL_RES_GRPC_ROUTE, routes);
    if (rc == 0)
        rc = add_l7_policies(v, s, &wls, pols);
    list_free(&wls);
    list_free(&svcs);
    return rc;
}
