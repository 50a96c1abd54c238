/*
 * Resources: Kubernetes-shaped configuration documents (src/core/conf trees)
 * turned into typed, validated objects. The kinds and fields accepted are in
 * docs/resources.md. Kinds veil does not know are kept as VEIL_RES_IGNORED
 * (listed in status, never dropped silently).
 *
 * Every error names the file, line, column, field and reason, e.g.
 * "svc.yaml:9:15: spec.ports[0].port: 70000 is not a valid port (1..65535)".
 *
 * Ownership: a struct veil_res owns its strings (one arena) and a reference
 * to its JSON form; it does not point into the conf tree it came from, so
 * the tree may be freed after parsing. Single-threaded like the control
 * plane's loop.
 */
#ifndef VEIL_CONTROL_RESOURCE_H
#define VEIL_CONTROL_RESOURCE_H

#include "control/resource-t.h"
#include "core/conf-t.h"

#include <stdbool.h>
#include <stddef.h>

/* The label/annotation naming the node of a WorkloadEntry. */
#define VEIL_RES_NODE_LABEL "veil.io/node"
/* A Service's or Namespace's waypoint ("none": a Service opts out). */
#define VEIL_RES_USE_WAYPOINT_LABEL "istio.io/use-waypoint"
/* The label of a waypoint's workload: its waypoint name (as Istio's pods). */
#define VEIL_RES_GATEWAY_NAME_LABEL "gateway.networking.k8s.io/gateway-name"
/* The API group of HTTPRoute and GRPCRoute. */
#define VEIL_RES_GATEWAY_GROUP "gateway.networking.k8s.io"

/*
 * Parses and validates one document (a map, typically a veil_conf_doc()).
 * Returns 0 with *out set; 0 with *out NULL for an empty document (a YAML
 * "---" alone); -EINVAL with `err` filled (file:line:col, field, reason);
 * -ENOMEM with `err` filled ("out of memory").
 */
int veil_res_parse(const struct veil_conf_node *doc, enum veil_res_source src,
                   struct veil_res **out, struct veil_conf_err *err);

/*
 * Like veil_res_parse() but reads only what names the resource (apiVersion,
 * kind, metadata), for `veil delete -f`: the resource's id and header are
 * set, its kind-specific fields are left empty.
 */
int veil_res_parse_ref(const struct veil_conf_node *doc, struct veil_res **out,
                       struct veil_conf_err *err);

/* Frees a resource. NULL is a no-op. */
void veil_res_free(struct veil_res *r);

/* "Service", "Pod", ... ("ignored" for VEIL_RES_IGNORED). */
const char *veil_res_kind_str(enum veil_res_kind kind);
/* The kind of a known kind name ("Service"), or VEIL_RES_IGNORED. */
enum veil_res_kind veil_res_kind_parse(const char *name);
/* "dir" or "api". */
const char *veil_res_source_str(enum veil_res_source src);
/* "ALLOW", ... / "STRICT", ... */
const char *veil_res_action_str(enum veil_res_action a);
const char *veil_res_mtls_str(enum veil_res_mtls m);

/* True for Pod and WorkloadEntry. */
bool veil_res_is_workload(const struct veil_res *r);
/* True for AuthorizationPolicy and PeerAuthentication. */
bool veil_res_is_policy(const struct veil_res *r);
/* True for HTTPRoute and GRPCRoute. */
bool veil_res_is_route(const struct veil_res *r);

/* The value of label `key`, or NULL. Binary search. */
const char *veil_res_label_get(const struct veil_res_labels *l, const char *key);
/* Kubernetes' matchLabels: every pair of `sel` is in `labels` (an empty
 * selector matches everything). */
bool veil_res_selects(const struct veil_res_labels *sel, const struct veil_res_labels *labels);

/*
 * The id of a resource of a known kind: "Kind/ns/name", or "Kind/name" for
 * Namespace. Returns what snprintf returns.
 */
int veil_res_id_format(char *buf, size_t n, enum veil_res_kind kind, const char *ns,
                       const char *name);

/*
 * Parses an IPv4 or IPv6 address and writes its canonical text into `out`
 * (at least 46 bytes). Returns 4 or 6, or -EINVAL.
 */
int veil_res_parse_ip(const char *s, char *out, size_t n);

/*
 * Parses "a.b.c.d/len" or "x::/len" (or a bare address: a host prefix) into
 * the network bytes (16, IPv4 in the first 4), family 4 or 6, and the prefix
 * length. Host bits must be zero only when `strict`. 0 or -EINVAL.
 */
int veil_res_parse_cidr(const char *s, bool strict, unsigned char addr[16], int *family,
                        int *prefix);

/* Store only: records the address in force for a Service. 0 or -ENOMEM. */
int veil_res__set_cluster_ip(struct veil_res *r, const char *ip);

/* A conf node as JSON (NULL on allocation failure). */
json_t *veil_res__conf_to_json(const struct veil_conf_node *n);

#endif
