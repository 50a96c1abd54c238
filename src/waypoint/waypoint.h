/*
 * The waypoint's L7 engine (docs/waypoint.md): takes the HBONE CONNECTs that
 * node proxies send to a waypoint (":authority" = the service VIP:port the
 * client dialled), detects the protocol of each tunnel (HTTP/1.1, HTTP/2
 * with prior knowledge, else TCP), runs each request through its stages
 * (L7 authorization, route match, filters, backend choice, retries and
 * timeouts, telemetry) and tunnels it on over HBONE to the chosen pod.
 *
 * The host process (the node runtime in waypoint mode, `veil waypoint run`)
 * owns the loop, the configuration tables, the HBONE server and pool and the
 * waypoint's identity; the engine borrows them through struct veil_wp_env.
 *
 * Everything runs on the loop thread.
 */
#ifndef VEIL_WAYPOINT_WAYPOINT_H
#define VEIL_WAYPOINT_WAYPOINT_H

#include "waypoint/waypoint-t.h"

#include <stddef.h>

struct veil_hbone_h2s;
struct veil_hbone_connect_info;
struct json_t;

/* Makes the engine. env is copied (its pointers are borrowed and must
 * outlive the engine). NULL with errno set (EINVAL, ENOMEM). */
struct veil_wp *veil_wp_new(const struct veil_wp_env *env);

/* Closes every tunnel and request and frees the engine. NULL is a no-op. */
void veil_wp_free(struct veil_wp *wp);

/*
 * A route or policy item changed in the configuration (it = NULL: removed;
 * key NULL: a full snapshot follows, forget every route and policy). Kinds:
 * "HTTPRoute", "GRPCRoute", "AuthorizationPolicy". Returns 0, 1 (accepted
 * with a note in err) or -EINVAL (refused, reason in err; the previous
 * version stays in force).
 */
int veil_wp_config_item(struct veil_wp *wp, const char *kind, const char *key, const char *ns,
                        const char *name, const struct json_t *spec, char *err, size_t errlen);

/* A CONNECT arrived at the waypoint's HBONE server: the engine answers it
 * (veil_hbone_h2s_respond) and owns the tunnel from then on. */
void veil_wp_connect(struct veil_wp *wp, struct veil_hbone_h2s *h2s,
                     const struct veil_hbone_connect_info *info);

/* The waypoint is going away (drain): HTTP/1.1 connections close once
 * their request in flight (if any) is answered, with "connection: close";
 * idle keep-alive connections close now. Tunnels passed through are left
 * to end by themselves. */
void veil_wp_drain(struct veil_wp *wp);

/* The client TLS context changed (certificate renewal): new upstream
 * connections use it. */
void veil_wp_set_client_tls(struct veil_wp *wp, struct veil_tls_ctx *tls);

#endif
