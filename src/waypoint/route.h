/*
 * The waypoint's route table (docs/routes.md): Gateway API HTTPRoute and
 * GRPCRoute (v1) attached to Services, compiled once when the control plane
 * pushes them and matched per request. A pure library: no I/O, no clock,
 * no randomness (the caller passes random numbers in).
 *
 * Attachment: a route applies to requests for a Service through its
 * parentRefs of group "" and kind "Service" (namespace defaults to the
 * route's; an optional port, and an optional sectionName naming a port of
 * the Service, limit it to that service port). Other
 * parentRefs (Gateways, Services of another namespace) attach nothing here.
 *
 * Precedence (veil_route_find), over every rule of every route attached to
 * the service(:port) and of the request's kind (GRPCRoutes for a gRPC
 * request when at least one is attached, else HTTPRoutes; never merged):
 *   HTTPRoute: Exact path > PathPrefix (longer value first) >
 *     RegularExpression; then a method match; then more header matches; then
 *     more query-param matches;
 *   GRPCRoute: more characters of service; more characters of method; more
 *     header matches;
 *   then, both: the oldest route (first set in this table; an update keeps
 *   its place), then "namespace/name" alphabetically, then the first rule.
 * A rule without matches matches every request (PathPrefix "/").
 *
 * Regular expressions are POSIX extended (regcomp REG_EXTENDED), compiled
 * once, and must match the whole value (path without query, header value,
 * query value, gRPC service or method). Durations ("1h30m", "500ms", "10s",
 * GEP-2257) become milliseconds.
 *
 * Lifetime: everything a struct veil_route_match points to belongs to the
 * matched route version and stays valid until veil_route_release(), even
 * if the route is updated, removed or the table freed meanwhile.
 *
 * Threading: one thread (the waypoint loop); nothing is locked.
 */
#ifndef VEIL_WAYPOINT_ROUTE_H
#define VEIL_WAYPOINT_ROUTE_H

#include <jansson.h>

#include "waypoint/route-t.h"

/* An empty table. NULL with errno = ENOMEM. */
struct veil_route_table *veil_route_table_new(void);

/* Frees the table; matches still held keep their route alive. NULL: no-op. */
void veil_route_table_free(struct veil_route_table *t);

/*
 * Upserts route kind/ns/name ("HTTPRoute" or "GRPCRoute") from its `spec`
 * as the control plane pushes it (not kept: compiled into the route).
 * Returns:
 *   0        accepted, in force for the next veil_route_find();
 *   1        accepted with a note in `err` (e.g. no Service parentRef: it
 *            attaches to nothing here); show it in status;
 *   -EINVAL  refused, the reason in `err` ("spec.rules[0].matches[1].path.
 *            value: must start with '/'"); the previous version stays;
 *   -ENOMEM  nothing changed.
 * `err` (may be NULL when cap is 0) is "" on 0. A route keeps the creation
 * sequence number of its first set across updates (precedence).
 */
int veil_route_set(struct veil_route_table *t, const char *kind, const char *ns, const char *name,
                   const json_t *spec, char *err, size_t cap);

/* Forgets route kind/ns/name. 0, or -ENOENT if unknown. */
int veil_route_remove(struct veil_route_table *t, const char *kind, const char *ns,
                      const char *name);

/* Forgets every route (before a full snapshot). Sequence numbers go on. */
void veil_route_clear(struct veil_route_table *t);

/* Routes held. */
size_t veil_route_count(const struct veil_route_table *t);

/* Increases on every set, remove and clear that changed something. */
uint64_t veil_route_generation(const struct veil_route_table *t);

/*
 * Finds the rule for `req`, a request to Service svc_ns/svc_name on service
 * port `port`. Returns:
 *   VEIL_ROUTE_NONE       no route is attached to that service(:port): route
 *                         to the Service itself, as without a waypoint;
 *   VEIL_ROUTE_MATCHED    `out` is filled and holds a reference: call
 *                         veil_route_release(out) when the request is done;
 *   VEIL_ROUTE_NOT_FOUND  routes are attached but none matches: answer 404
 *                         (gRPC: grpc-status 12, UNIMPLEMENTED).
 * `out` is zeroed unless MATCHED. Never fails, never allocates.
 */
enum veil_route_verdict veil_route_find(struct veil_route_table *t, const char *svc_ns,
                                        const char *svc_name, uint16_t port,
                                        const struct veil_route_req *req,
                                        struct veil_route_match *out);

/* Drops the reference of a MATCHED result and zeroes it. A zeroed match
 * (not MATCHED) is a no-op, so release is always safe once. */
void veil_route_release(struct veil_route_match *m);

/*
 * Weighted choice of a backend: `rnd` is a uniform random 64-bit number.
 * Backend i is picked with probability weight_i / sum(weights); a weight-0
 * backend never. NULL: answer 500 (no backendRefs, every weight 0, or the
 * picked backendRef is not valid, which the spec answers with 500 for its
 * share). A rule with a RequestRedirect answers that instead of picking.
 */
const struct veil_route_backend *veil_route_pick(const struct veil_route_rule *rule, uint64_t rnd);

/* Whether to mirror this request (numerator/denominator of them); rnd as
 * above. */
bool veil_route_mirror_hit(const struct veil_route_mirror *mi, uint64_t rnd);

/*
 * Applies a header modifier to a header list: the edited list goes to
 * `out` (cap entries), in order: headers kept in place (a `set` name takes
 * the place of its first occurrence, its other occurrences go), then `set`
 * names that were absent, then `add` entries (as extra field lines, which
 * HTTP treats as appending to the values), with `remove` names dropped.
 * Names compare case-insensitively. Entries point into `in` or into the
 * filter (valid while the match is held). Returns the count, or -ENOBUFS
 * if cap is too small (out then holds garbage). `in` and `out` must not
 * overlap. A NULL or empty `mod` copies `in`.
 */
int veil_route_headers_apply(const struct veil_route_header_mod *mod,
                             const struct veil_route_hdr *in, size_t nin,
                             struct veil_route_hdr *out, size_t cap);

/*
 * The request path after a path modifier (URLRewrite.path or
 * RequestRedirect.path) for the request path `path` (query included, kept
 * as is). ReplacePrefixMatch replaces m->prefix at a '/' boundary, as the
 * spec's table says ("/foo/bar", prefix "/foo", "/xyz" -> "/xyz/bar";
 * "/foo", "" -> "/"). Writes a NUL-terminated path to out. Returns its
 * length, -ENOBUFS if it does not fit, -EINVAL for ReplacePrefixMatch when
 * the match was not a PathPrefix one or the path does not start with it.
 */
int veil_route_path_rewrite(const struct veil_route_match *m, const struct veil_route_path *mod,
                            const char *path, size_t path_len, char *out, size_t cap);

/*
 * The Location of a RequestRedirect `rd` for `req`:
 * scheme://host[:port]path. scheme: rd's, else the request's, else "http".
 * host: rd's hostname, else the request authority without its port. port:
 * rd's; else 80/443 if rd sets a scheme; else the request's port. The port
 * is left out for http:80 and https:443 (and when unknown). path: per
 * rd->path (veil_route_path_rewrite), else the request's (query kept).
 * Returns the length written (NUL-terminated), or -ENOBUFS / -EINVAL.
 */
int veil_route_redirect_location(const struct veil_route_match *m,
                                 const struct veil_route_redirect *rd,
                                 const struct veil_route_req *req, char *out, size_t cap);

/* A Gateway API duration (GEP-2257: 1 to 4 of <1-5 digits><h|m|s|ms>,
 * e.g. "1h30m", "500ms", "0s") in milliseconds. 0, or -EINVAL. */
int veil_route_duration_ms(const char *s, uint64_t *ms);

/* "HTTPRoute" / "GRPCRoute". */
const char *veil_route_kind_str(enum veil_route_kind k);

#endif
