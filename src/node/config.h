/*
 * The node proxy's configuration tables: what the control plane pushes to a
 * node (docs/resources.md, "Update messages"), applied update by update,
 * indexed for the data path, and persisted so that the proxy serves with
 * its last good configuration when the control plane is away.
 *
 * Pure and single-threaded: no I/O except veil_node_cfg_save/load. Every
 * call runs on the node's loop thread.
 *
 * Returns follow docs/internals.md: 0 or -errno; validation failures are
 * -EINVAL with a reason for humans (and for the nack) in `err`.
 */
#ifndef VEIL_NODE_CONFIG_H
#define VEIL_NODE_CONFIG_H

#include "node/config-t.h"

/* An empty table set (version 0, not loaded). `hooks` may be NULL. */
void veil_node_cfg_init(struct veil_node_cfg *cfg, const struct veil_node_cfg_hooks *hooks);
void veil_node_cfg_free(struct veil_node_cfg *cfg);
/* Sets the route hooks (after init, before the first apply); NULL: none. */
void veil_node_cfg_set_route_hooks(struct veil_node_cfg *cfg,
                                   const struct veil_node_cfg_route_hooks *hooks);

/*
 * Applies one update line (len bytes of JSON, need not be NUL-terminated):
 * all or nothing. Every upsert is parsed and checked first (policies
 * through hooks->check_policy, routes through the route hooks' check); if one
 * is refused, nothing changes and -EINVAL is returned with the reason in
 * err. A non-full update must bring a version newer than the one held. On
 * success *version (if not NULL) is the update's version, the indexes are
 * rebuilt and the policy and route hooks have run. -ENOMEM leaves the
 * tables as they were.
 */
int veil_node_cfg_apply(struct veil_node_cfg *cfg, const char *json, size_t len, uint64_t *version,
                        char *err, size_t errlen);

/* The state as a document {"version":N,"items":[...]} (NUL-terminated,
 * veil_malloc'd, *out; length in *len). 0 or -ENOMEM. */
int veil_node_cfg_dump(const struct veil_node_cfg *cfg, char **out, size_t *len);

/* Saves the dump to `path` atomically (mode 0600). 0 or -errno. */
int veil_node_cfg_save(const struct veil_node_cfg *cfg, const char *path);

/* Loads a saved state as a full snapshot: 0; -ENOENT when there is none;
 * -EINVAL (reason in err) when the file is refused: the tables are then
 * unchanged. */
int veil_node_cfg_load(struct veil_node_cfg *cfg, const char *path, char *err, size_t errlen);

/* ---- lookups (results valid until the next apply) ---- */

const struct veil_node_item *veil_node_cfg_get(const struct veil_node_cfg *cfg, const char *key);
/* The workload whose address is `ip`, or NULL. */
const struct veil_node_wl *veil_node_cfg_wl_by_ip(const struct veil_node_cfg *cfg,
                                                  struct in_addr ip);
const struct veil_node_item *veil_node_cfg_wl_item_by_ip(const struct veil_node_cfg *cfg,
                                                         struct in_addr ip);
/* An endpoint (of any service) whose address is `ip`, or NULL: how the
 * node knows workloads of other nodes. */
const struct veil_node_ep *veil_node_cfg_ep_by_ip(const struct veil_node_cfg *cfg,
                                                  struct in_addr ip);
/* The service whose ClusterIP is `vip`, or NULL. */
struct veil_node_svc *veil_node_cfg_svc_by_vip(const struct veil_node_cfg *cfg, struct in_addr vip);
/* A waypoint workload (one with the label VEIL_NODE_WAYPOINT_LABEL) whose
 * identity is `id`, or NULL: whether a TLS peer is a waypoint. */
const struct veil_node_wl *veil_node_cfg_waypoint_by_id(const struct veil_node_cfg *cfg,
                                                        const char *id);
/* Whether SPIFFE ID `id` is a waypoint's: a waypoint workload's (above), or
 * the identity of the waypoint of a Service in the configuration. A node
 * has the workloads of its own node only, so the second is how it knows a
 * waypoint that runs elsewhere; both come from the control plane, which
 * names a Service's waypoint only from a workload with the label. */
bool veil_node_cfg_is_waypoint(const struct veil_node_cfg *cfg, const char *id);
/* The service ns/name, or NULL. */
struct veil_node_svc *veil_node_cfg_svc_by_name(const struct veil_node_cfg *cfg, const char *ns,
                                                const char *name);

/*
 * Picks the next endpoint of `svc` (round robin) that has an address and
 * maps service port `port`; *target gets the endpoint's target port.
 * NULL when none does (the service has no ready endpoint for that port).
 */
const struct veil_node_ep *veil_node_svc_pick(struct veil_node_svc *svc, uint16_t port,
                                              uint16_t *target);

/* The service's port `port`, or NULL. */
const struct veil_node_svc_port *veil_node_svc_port(const struct veil_node_svc *svc, uint16_t port);
/* Whether the service has `port`. */
bool veil_node_svc_has_port(const struct veil_node_svc *svc, uint16_t port);

/* Iterates the items: calls fn for each; stops early when fn returns
 * non-zero and returns that. */
int veil_node_cfg_each(const struct veil_node_cfg *cfg,
                       int (*fn)(void *arg, const struct veil_node_item *it), void *arg);

#endif
