/*
 * The local multi-node cluster (docs/cluster.md): network namespaces on one
 * Linux host standing in for nodes and pods, one control plane and one
 * `veil node` process per node, all recorded under RUN_DIR/NAME so that
 * `veil cluster delete` can undo everything, also after a crash.
 *
 * This is tooling (the CNI and kubelet role): it runs `ip` (iproute2) for
 * the plumbing and starts processes with `ip netns exec`. Needs root.
 *
 * Every function returns 0, or -1 with a sentence in `err` saying what went
 * wrong and, where there is one, what to do. The writes to RUN_DIR/NAME are
 * serialised by a lock file, so several `veil run` may race.
 */
#ifndef VEIL_CLUSTER_CLUSTER_H
#define VEIL_CLUSTER_CLUSTER_H

#include "cluster/cluster-t.h"

#include <stddef.h>

/* The cluster to use: `flag` if given, else $VEIL_CLUSTER, else "veil". */
const char *veil_cluster_name(const char *flag);

/* 0 if `name` is a valid cluster name ([a-z0-9]{1,16}), else -1 with err. */
int veil_cluster_check_name(const char *name, char *err, size_t errlen);

/* RUN_DIR/NAME/SUB (SUB may be NULL) into buf. */
int veil_cluster_path(char *buf, size_t len, const char *name, const char *sub);

/*
 * Builds the cluster and waits (each wait bounded by o->timeout_s) until
 * the control plane listens and every node proxy is ready. On failure
 * everything made so far is deleted again and `err` says why (with the end
 * of the failing process's log).
 */
int veil_cluster_create(const struct veil_cluster_opts *o, char *err, size_t errlen);

/*
 * Deletes everything the cluster made: pods (a {"op":"del"} to each live
 * node proxy first), processes (SIGTERM, then SIGKILL after a grace time),
 * network namespaces (with their veths and bridges), /etc/netns entries and
 * RUN_DIR/NAME. Works on a half-made cluster; a cluster that does not exist
 * is an error only when nothing of it was found.
 */
int veil_cluster_delete(const char *name, FILE *progress, char *err, size_t errlen);

/* Reads the cluster's node count (0 if no cluster). */
int veil_cluster_nodes(const char *name, int *nodes, int *proxies, char *err, size_t errlen);

/*
 * Pods. veil_cluster_pod_create() makes the pod's netns, its veth to the
 * node's bridge, its address (the next free one in 198.18.i.0/24), routes
 * and /etc/netns/<netns>/resolv.conf, and records it; `p` carries cluster,
 * ns, name, sa, node and mesh in, and gets the rest filled. Then the caller
 * (the CLI) registers a meshed pod with the control plane, and calls
 * veil_cluster_pod_enrol() and veil_cluster_pod_start(). On any failure it
 * calls veil_cluster_pod_delete().
 */
int veil_cluster_pod_create(struct veil_cluster_pod *p, char *err, size_t errlen);

/* Asks the node proxy (RUN_DIR/C/nodes/NODE/node.sock) to capture the pod:
 * {"op":"add",...} -> {"ok":true}. Waits up to 30 s for the answer. */
int veil_cluster_pod_enrol(const struct veil_cluster_pod *p, char *err, size_t errlen);

/* Starts argv inside the pod's netns, in the background (its own session),
 * output to the pod's log file; records the pid. */
int veil_cluster_pod_start(struct veil_cluster_pod *p, char *const argv[], char *err,
                           size_t errlen);

/* Reads the record of NS/NAME. -1 with err when there is no such pod. */
int veil_cluster_pod_find(const char *cluster, const char *ns, const char *name,
                          struct veil_cluster_pod *p, char *err, size_t errlen);

/* Stops the pod's processes, tells its node proxy (if enrolled and alive),
 * deletes its netns, resolv.conf dir and record. */
int veil_cluster_pod_delete(const struct veil_cluster_pod *p, char *err, size_t errlen);

/* Stops the pod's processes: SIGTERM, then SIGKILL to what is left after
 * grace_ms. The netns and the records stay (veil_cluster_pod_delete). */
void veil_cluster_pod_stop(const struct veil_cluster_pod *p, int grace_ms);

/* GET http://127.0.0.1:PORT/PATH inside the pod's netns: the HTTP status,
 * or -1 (no answer within a second); the body's start into body (len may
 * be 0). */
int veil_cluster_pod_http_get(const struct veil_cluster_pod *p, int port, const char *path,
                              char *body, size_t len);

/* Polls that GET until it answers 200 (0), for at most timeout_s (0: 30);
 * fails at once when the pod's process p->pid has exited. The error quotes
 * the end of the pod's log. */
int veil_cluster_pod_wait_http(const struct veil_cluster_pod *p, int port, const char *path,
                               int timeout_s, char *err, size_t errlen);

/* Calls fn for each pod record of the cluster (in no order) until it
 * returns non-zero, and returns that (0 when none did). */
int veil_cluster_pods_each(const char *cluster,
                           int (*fn)(void *arg, const struct veil_cluster_pod *p), void *arg);

/* RUN_DIR/C/pods/NS/NAME.state: a directory for the pod's own state (a
 * waypoint's, as its node runtime's --state-dir); removed with the pod. */
int veil_cluster_pod_state_dir(const struct veil_cluster_pod *p, char *buf, size_t len);

/* RUN_DIR/C/pods/NS/NAME.log */
int veil_cluster_pod_log(const struct veil_cluster_pod *p, char *buf, size_t len);

#endif
