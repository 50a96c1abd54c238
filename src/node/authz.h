/*
 * Istio's AuthorizationPolicy at L4 for the node proxy (as ztunnel enforces
 * it) and at L7 for the waypoint (as Envoy's RBAC filter in Istio's waypoint
 * does), and PeerAuthentication mode resolution. docs/policy.md describes the
 * semantics with examples.
 *
 * Policies are given as the control plane sends them: namespace, name and
 * the `spec` object (docs/resources.md, "Update messages"). Each is checked
 * completely when it is set; a refused spec leaves the previous version of
 * that policy in force. Accepted specs are kept (a deep copy) and evaluated
 * per connection: O(policies of the destination's namespace + root
 * namespace).
 *
 * One set holds every policy; which apply depends on who asks:
 *   - the node proxy (veil_authz_decide) applies the policies without
 *     targetRef(s): those of the destination's namespace whose selector
 *     matches its labels or that have no selector, and those of the root
 *     namespace likewise;
 *   - the waypoint (veil_authz_decide_l7) applies only policies with
 *     targetRef(s) (a non-empty targetRefs, or targetRef): {group:
 *     gateway.networking.k8s.io, kind: Gateway, name: <waypoint>} in the
 *     waypoint's namespace; {group: "" (or absent), kind: Service, name: <svc>}
 *     in the Service's namespace, for requests to that Service; {group:
 *     gateway.networking.k8s.io, kind: GatewayClass, name: istio-waypoint} in
 *     the root namespace, for every waypoint. A targetRef with another
 *     namespace than the policy's binds nothing (as in Istio).
 *
 * Decision (both), over the policies that apply:
 *   1. a matching DENY policy denies;
 *   2. else, no ALLOW policy applies: allow;
 *   3. else allow iff some ALLOW policy matches.
 * AUDIT policies never change the decision (the first matching one is
 * reported). A policy matches if one of its rules matches; a policy with no
 * rules matches nothing (spec {} is "allow nothing"), a rule {} matches
 * everything.
 *
 * Parts that cannot be evaluated where a decision is made are handled as
 * ztunnel and Istio's TCP filter do: in an ALLOW policy a rule that has any
 * never matches; in a DENY or AUDIT policy they are left out of the rule, so
 * it matches more (fail closed).
 *   - At L4 (and at the waypoint for a TCP connection) that is every L7
 *     part: methods, paths, hosts and their not-forms, requestPrincipals,
 *     conditions other than source.ip, source.namespace, source.principal,
 *     remote.ip, destination.ip, destination.port.
 *   - At the waypoint for an HTTP request: requestPrincipals and
 *     notRequestPrincipals (no JWT validation), paths with a template ({*},
 *     {**}), and condition keys other than the L4 ones and
 *     request.headers[NAME] (request.auth.*, connection.sni, experimental.*).
 * A policy with such parts is accepted with a note (return 1). A policy with
 * targetRef(s) always gets a note (it is not enforced by the node proxy; or
 * a part the waypoint cannot evaluate; or a targetRef binding nothing).
 * CUSTOM policies are ignored everywhere (note).
 *
 * L7 matching (veil_authz_decide_l7 with http true), as Istio generates it:
 *   - paths: the request target up to '?' or '#'; "*" any non-empty path,
 *     "*s" suffix, "p*" prefix, else exact; case-sensitive;
 *   - methods: "*" any, suffix, prefix, else exact; case-sensitive;
 *   - hosts: the Host / :authority as received, port included (write
 *     "example.com:*" to match any port); same forms, case-insensitive;
 *   - when request.headers[NAME]: the field lines named NAME (any case)
 *     joined with "," as Envoy does; "*" = present, suffix, prefix, else
 *     exact; case-sensitive values. With no such line, NAME ":authority" or
 *     "host" reads the host, ":method" the method, ":path" the whole target;
 *   - an absent attribute matches no value and every not-form;
 *   - principals, namespaces, ipBlocks, ports and the L4 conditions as at L4,
 *     from the original caller's identity and address; remoteIpBlocks and
 *     remote.ip from remote_ip when given.
 *
 * Threading: one thread; the structure is not locked.
 */
#ifndef VEIL_NODE_AUTHZ_H
#define VEIL_NODE_AUTHZ_H

#include <jansson.h>

#include "node/authz-t.h"

/* Creates an empty set. `root_ns` NULL = VEIL_AUTHZ_ROOT_NS (copied).
 * NULL with errno = ENOMEM on failure. */
struct veil_authz *veil_authz_new(const char *root_ns);

/* NULL is a no-op. */
void veil_authz_free(struct veil_authz *a);

/*
 * Upserts AuthorizationPolicy ns/name with `spec` (not kept: copied).
 * Both the node proxy and the waypoint feed every AuthorizationPolicy item
 * they receive here. Returns:
 *   0        accepted;
 *   1        accepted, with a note in `err` (L7 parts handled at L4 as
 *            above, targetRef(s), CUSTOM ignored): surface it in status/logs;
 *   -EINVAL  refused, the reason in `err` ("spec.rules[0].from[0].source.
 *            ipBlocks[1]: \"300.0.0.0/8\" is not a valid IP address or
 *            CIDR"; also a targetRef that is not {group, kind, name,
 *            namespace} strings with kind and name, targetRef together with
 *            targetRefs, or a selector with either); the previous version
 *            stays;
 *   -ENOMEM  nothing changed.
 * `err` (may be NULL when cap is 0) is "" on 0. An identical spec changes
 * nothing and keeps the generation.
 */
int veil_authz_set(struct veil_authz *a, const char *ns, const char *name, const json_t *spec,
                   char *err, size_t cap);

/* Forgets AuthorizationPolicy ns/name. Returns 0, or -ENOENT if unknown. */
int veil_authz_remove(struct veil_authz *a, const char *ns, const char *name);

/* Same for PeerAuthentication ns/name: spec.selector.matchLabels,
 * spec.mtls.mode (STRICT, PERMISSIVE, DISABLE, UNSET or absent),
 * spec.portLevelMtls {"<port>": {mode}}; portLevelMtls without a selector is
 * accepted and ignored, with a note (return 1), as Istio does. */
int veil_authz_peer_set(struct veil_authz *a, const char *ns, const char *name, const json_t *spec,
                        char *err, size_t cap);
int veil_authz_peer_remove(struct veil_authz *a, const char *ns, const char *name);

/* Drops every policy of both kinds (before a full snapshot is applied). */
void veil_authz_clear(struct veil_authz *a);

/*
 * Counts changes of either set: it increases on every set that changed a
 * policy, every successful remove and every clear that dropped something.
 * When it moved, the node proxy re-checks its live connections (and
 * plaintext ones against veil_authz_peer_mode()).
 */
uint64_t veil_authz_generation(const struct veil_authz *a);

/* Policies held (AuthorizationPolicy, PeerAuthentication). */
size_t veil_authz_count(const struct veil_authz *a);
size_t veil_authz_peer_count(const struct veil_authz *a);

/* The decision for `req` (see above). `out` may be NULL. Never fails. */
enum veil_authz_verdict veil_authz_decide(const struct veil_authz *a,
                                          const struct veil_authz_req *req,
                                          struct veil_authz_decision *out);

/*
 * The waypoint's decision for one request (or, http false, one TCP
 * connection), over the policies bound to req->wp_* / req->svc_* (see
 * above); same order and the same outputs as veil_authz_decide(). A DENY
 * verdict is the 403 of an HTTP request. `out` may be NULL. Never fails and
 * never allocates; O(policies held + headers x header conditions).
 */
enum veil_authz_verdict veil_authz_decide_l7(const struct veil_authz *a,
                                             const struct veil_authz_l7_req *req,
                                             struct veil_authz_decision *out);

/* veil_authz_decide() with only the deciding policy's "ns/name" ("" when no
 * policy decided, or when none matched) copied to `policy` (may be NULL). */
enum veil_authz_verdict veil_authz_check(const struct veil_authz *a,
                                         const struct veil_authz_req *req, char *policy,
                                         size_t cap);

/*
 * The mTLS mode for a workload of `ns` with `labels` reached on `port`
 * (0 = no port-level setting). Precedence: a PeerAuthentication of `ns`
 * whose selector matches (the oldest set first, port-level mode first) >
 * one of `ns` without selector > one of the root namespace without selector
 * > PERMISSIVE. UNSET at a level falls through to the next.
 */
enum veil_mtls_mode veil_authz_peer_mode(const struct veil_authz *a, const char *ns,
                                         const struct veil_authz_labels *labels, uint16_t port);

/*
 * What an AuthorizationPolicy spec asks for, without checking it (any JSON
 * is fine; a malformed part counts as absent), for the control plane and
 * status:
 *   has_l7: a rule has an L7 part (methods, paths, hosts, their not-forms,
 *           requestPrincipals or its not-form, a condition key other than
 *           the L4 ones above);
 *   targeted: it has targetRef(s), i.e. binds to a waypoint or a Service's
 *           waypoint rather than to workloads.
 * A policy that is has_l7 and not targeted is enforced at L4 as above: the
 * one to report when its workloads have no waypoint.
 */
bool veil_authz_spec_has_l7(const json_t *spec);
bool veil_authz_spec_targeted(const json_t *spec);

/* Label accessor over a jansson object of string values (arg: json_t *). */
const char *veil_authz_json_label(const void *arg, const char *key);

/* "ALLOW" / "DENY"; "STRICT" / "PERMISSIVE" / "DISABLE". */
const char *veil_authz_verdict_str(enum veil_authz_verdict v);
const char *veil_mtls_mode_str(enum veil_mtls_mode m);

/* Namespace of a SPIFFE ID "spiffe://td/ns/X/sa/Y" (or without the
 * scheme) into out. Returns 0, or -EINVAL if it has no /ns/X/ part,
 * -ENOBUFS if X does not fit. */
int veil_authz_principal_ns(const char *principal, char *out, size_t cap);

#endif
