/*
 * Registry and per-node views (docs/control.md, "registry / views"; the
 * update format is in docs/resources.md, "Update messages").
 *
 * From the store's resources the views derive the items pushed to nodes,
 * each keyed "Kind/namespace/name":
 *   Workload/ns/name             a Pod or WorkloadEntry (sent to its node only)
 *   Service/ns/name              a Service with its endpoints (sent to every node)
 *   AuthorizationPolicy/ns/name  sent to nodes with a workload in ns, and to
 *   PeerAuthentication/ns/name   every node when ns is the root namespace
 *   HTTPRoute/ns/name            the route's spec as written (sent to every node)
 *   GRPCRoute/ns/name
 *
 * A Service's item carries "waypoint" (docs/resources.md) when the Service's
 * label istio.io/use-waypoint (else its Namespace's; "none" opts out) names
 * a waypoint that exists: a workload of the Service's namespace labelled
 * gateway.networking.k8s.io/gateway-name: <name>, with an address. A change
 * of that Namespace label, of such a workload, or of the Service recomputes
 * the Services concerned.
 *
 * Per node the views keep what they last sent (key -> hash of the item's
 * canonical JSON; Services and routes, which every node gets, are recorded once for
 * all nodes, and per node only where it differs from the current item)
 * and a bounded delta log (version, key, previous hash), so
 * a node that reconnects at version V gets only what changed since V. The
 * record of a node outlives its streams (in memory only: after a control
 * plane restart every node gets a full snapshot).
 *
 * A store change costs, per subscribed node, the number of item keys it
 * affects, never the size of the configuration.
 *
 * Threading: single-threaded. Every function, and the store listener the
 * views install, runs on the control plane's loop thread; no locking.
 *
 * Returns: 0, or -ENOMEM (the views stay usable: they rebuild themselves
 * from the store and resynchronise subscribers on the next call), or
 * -ESTALE from veil_view_poll() for a stream superseded by a newer one of the
 * same node (close it).
 */
#ifndef VEIL_CONTROL_VIEW_H
#define VEIL_CONTROL_VIEW_H

#include "control/resource-t.h"
#include "control/store-t.h"
#include "control/view-t.h"

#include <jansson.h>

#include <stdbool.h>
#include <stdint.h>

#define VEIL_VIEWS_DEFAULT_TRUST_DOMAIN "cluster.local"
#define VEIL_VIEWS_DEFAULT_ROOT_NS      "istio-system"
#define VEIL_VIEWS_DEFAULT_NODE_LOG     10000

/*
 * Builds the views of `store` and installs them as its listener. The store
 * must outlive the views. NULL with errno set.
 */
struct veil_views *veil_views_new(struct veil_store *store, const struct veil_views_opts *opts);

/* Frees the views and every subscription still open (their pointers die). */
void veil_views_free(struct veil_views *v);

/*
 * Opens a stream for `node` that has `have_version` (0: nothing). *out is
 * the subscription; *update_json the first update to send (veil_malloc'd,
 * the caller frees it with veil_free) or NULL when the node is up to date.
 * A resumable version gives only the difference ("full": false); an unknown
 * node, version 0, a version older than the node's log or newer than what
 * was sent gives a snapshot ("full": true: replace everything).
 * A non-observer stream supersedes the node's previous one (whose poll then
 * returns -ESTALE). An `observer` (a debugging watcher) always starts with
 * a snapshot, has its own state, and its acks do not count for the node.
 */
int veil_view_subscribe(struct veil_views *v, const char *node, uint64_t have_version,
                        bool observer, struct veil_view_sub **out, char **update_json);

/*
 * After the store changed: the next update for this subscriber (everything
 * pending, as one update at the store's current version), or NULL.
 */
int veil_view_poll(struct veil_view_sub *s, char **update_json);

/* The node applied / rejected `version`. Recorded for status. */
void veil_view_ack(struct veil_view_sub *s, uint64_t version);
void veil_view_nack(struct veil_view_sub *s, uint64_t version, const char *reason);

/* Closes a stream; the node's record (what it was sent) stays. */
void veil_view_unsubscribe(struct veil_view_sub *s);

/*
 * May node `node` have the identity ns/sa? True iff a Pod or WorkloadEntry
 * registered on that node has that namespace and service account. The CA
 * asks this before signing a workload certificate.
 */
bool veil_view_node_may_have(struct veil_views *v, const char *node, const char *ns,
                             const char *sa);

/* Status of one node (false when unknown), and the number of known nodes. */
bool veil_views_node_status(struct veil_views *v, const char *node,
                            struct veil_view_node_status *out);
/* Calls fn for every known node. */
void veil_views_each_node(struct veil_views *v,
                          void (*fn)(void *ctx, const struct veil_view_node_status *st), void *ctx);

/*
 * The canonical JSON of the current item `key` ("Service/default/web"),
 * or NULL. Valid until the next store change. For status and tests.
 */
const char *veil_views_item(struct veil_views *v, const char *key);

/*
 * The waypoint of Service `svc` (a resource of the store): *name is the
 * waypoint it asks for (NULL: none); returns the workload of that waypoint,
 * or NULL when it asks for none or none exists (no such workload with an
 * address). Valid until the next store change.
 */
const struct veil_res *veil_views_service_waypoint(struct veil_views *v, const struct veil_res *svc,
                                                   const char **name);

/* The workload of waypoint ns/name (as for a Service), or NULL. */
const struct veil_res *veil_views_waypoint(struct veil_views *v, const char *ns, const char *name);

/* Is workload `w` an endpoint of a Service of its namespace that has a waypoint? */
bool veil_views_workload_has_waypoint(struct veil_views *v, const struct veil_res *w);

/* The store the views read, their root namespace and trust domain. */
const struct veil_store *veil_views_store(const struct veil_views *v);
const char *veil_views_root_ns(const struct veil_views *v);
const char *veil_views_trust_domain(const struct veil_views *v);

/*
 * view_status.c: adds the L7 parts of the status document (docs/control.md)
 * to the JSON object `st`: "waypoints", "routes" and "l7Policies". 0, or
 * -ENOMEM (st may then hold part of them).
 */
int veil_views_l7_status(struct veil_views *v, json_t *st);

#endif
