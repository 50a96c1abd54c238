/*
 * Internal to src/control/resource*.c: the state of one parse and the
 * checks the kinds share. Error convention as resource.h: -EINVAL with the
 * parse's err filled (file:line:col, field path, reason), -ENOMEM ("out of
 * memory").
 */
#ifndef VEIL_CONTROL_RESOURCE_INT_H
#define VEIL_CONTROL_RESOURCE_INT_H

#include "control/resource-t.h"
#include "core/conf-t.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The state of one parse: the resource being built and where errors go. */
struct veil_res__rp {
    struct veil_res *r;
    struct veil_conf_err *err;
    const struct veil_conf_node *doc;
};

/* Reports "out of memory"; returns -ENOMEM. */
int veil_res__oom(struct veil_res__rp *p);
/* Copies s into the resource's arena: 0 or -ENOMEM. */
int veil_res__dup_to(struct veil_res__rp *p, const char *s, const char **out);
/* Every key of map m is in `known` (NULL-terminated), else "unknown field". */
int veil_res__known_fields(struct veil_res__rp *p, const struct veil_conf_node *m,
                           const struct veil_conf_path *path, const char *const *known);
/* A port 1..65535 from an integer or (`str_ok`) a decimal string. */
int veil_res__port_value(struct veil_res__rp *p, const struct veil_conf_node *n,
                         const struct veil_conf_path *path, bool str_ok, uint16_t *out);
/* RFC 1123 label (at most 63) and subdomain (at most 253). */
bool veil_res__dns_label(const char *s, size_t len);
bool veil_res__dns_subdomain(const char *s, size_t len);

/* resource_route.c: spec of an HTTPRoute / GRPCRoute into r->u.route. */
int veil_res__parse_route(struct veil_res__rp *p, const struct veil_conf_node *doc, bool grpc);

#endif
