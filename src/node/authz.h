/*
 * L4 authorization (Istio's AuthorizationPolicy as ztunnel enforces it) and
 * PeerAuthentication mode resolution for the node proxy. docs/policy.md
 * describes the semantics with examples.
 *
 * Policies are given as the control plane sends them: namespace, name and
 * the `spec` object (docs/resources.md, "Update messages"). Each is checked
 * completely when it is set; a refused spec leaves the previous version of
 * that policy in force. Accepted specs are kept (a deep copy) and evaluated
 * per connection: O(policies of the destination's namespace + root
 * namespace).
 *
 * Decision (veil_authz_decide), over the policies that apply to the
 * destination workload (those of its namespace whose selector matches its
 * labels or that have no selector, and those of the root namespace likewise):
 *   1. a matching DENY policy denies;
 *   2. else, no ALLOW policy applies: allow;
 *   3. else allow iff some ALLOW policy matches.
 * AUDIT policies never change the decision (the first matching one is
 * reported). A policy matches if one of its rules matches; a policy with no
 * rules matches nothing (spec {} is "allow nothing"), a rule {} matches
 * everything.
 *
 * L7-only parts (methods, paths, hosts and their not-forms,
 * requestPrincipals, conditions other than source.ip, source.namespace,
 * source.principal, remote.ip, destination.ip, destination.port): in an
 * ALLOW policy a rule that has any never matches; in a DENY or AUDIT policy
 * they are left out of the rule, so it matches more (fail closed). Such a
 * policy is accepted with a note (return 1). Policies with targetRef(s)
 * attach to a waypoint and are not enforced here (note); CUSTOM policies
 * are ignored (note).
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
 * Returns:
 *   0        accepted;
 *   1        accepted, with a note in `err` (L7 parts handled at L4 as
 *            above, targetRef, CUSTOM ignored): surface it in status/logs;
 *   -EINVAL  refused, the reason in `err` ("spec.rules[0].from[0].source.
 *            ipBlocks[1]: \"300.0.0.0/8\" is not a valid IP address or
 *            CIDR"); the previous version stays;
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
