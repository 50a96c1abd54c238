/*
 * Transparent capture of a pod's traffic, in the pod's network namespace
 * (DESIGN.md "Capture"; docs/cluster.md lists the rules and why each one).
 *
 * The node proxy serves every pod of its node from its own process: for each
 * pod it opens listeners *inside* the pod's netns (src/capture/netns.h) and
 * installs there, with veil_capture_install(), an nftables table
 * `inet veil` that
 *   - redirects the apps' outbound TCP to OUTBOUND (15001), except packets
 *     carrying VEIL_CAPTURE_MARK (the proxy's own sockets) and loopback
 *     destinations;
 *   - redirects DNS (UDP and TCP port 53) to DNS (15053);
 *   - redirects inbound TCP to INBOUND (15006), except HBONE (15008) and the
 *     proxy's own ports;
 *   - marks the proxy's transparent inbound upstream connections so the
 *     app's replies come back to the proxy (policy routing: fwmark 0x111 ->
 *     table 100 -> `local 0.0.0.0/0 dev lo`, set with rtnetlink).
 *
 * The proxy's listeners must therefore be bound to the wildcard address (or
 * to 127.0.0.1 for OUTBOUND and DNS: REDIRECT in the output hook rewrites
 * the destination to loopback) inside the pod's netns.
 *
 * Return convention (docs/internals.md): 0 or -errno. Install and remove
 * also write a sentence into `err` (always NUL-terminated when errlen > 0).
 * None of these functions keeps global state; install/remove switch the
 * calling thread's netns for the duration of the call (veil_netns_run).
 */
#ifndef VEIL_CAPTURE_CAPTURE_H
#define VEIL_CAPTURE_CAPTURE_H

#include "capture/capture-t.h"

#include <stddef.h>
#include <sys/socket.h>

/*
 * Installs the capture in the netns `netns_fd` (from veil_netns_open()).
 * Idempotent: an existing `table inet veil` is replaced atomically and an
 * existing policy rule / route is kept. `o` may be NULL (defaults).
 * Also brings `lo` up in that netns. Needs CAP_NET_ADMIN and CAP_SYS_ADMIN.
 */
int veil_capture_install(int netns_fd, const struct veil_capture_opts *o, char *err, size_t errlen);

/* Removes what veil_capture_install() made; missing pieces are not errors. */
int veil_capture_remove(int netns_fd, char *err, size_t errlen);

/*
 * Writes the nftables ruleset text veil_capture_install() loads (a whole
 * `table inet veil { ... }`, preceded by the delete of an older one) into
 * buf. Returns its length, or -E2BIG / -EINVAL. For logs, docs and tests.
 */
int veil_capture_ruleset(const struct veil_capture_opts *o, char *buf, size_t len);

/*
 * The destination the app asked for, of an accepted redirected connection
 * (SO_ORIGINAL_DST, or IP6T_SO_ORIGINAL_DST for an IPv6 socket). 0 or
 * -errno (-ENOENT: the connection was not redirected).
 */
int veil_capture_original_dst(int fd, struct sockaddr_storage *out);

/* Sets SO_MARK VEIL_CAPTURE_MARK on `fd`: its packets bypass the capture.
 * Every socket the proxy opens inside a pod's netns needs it. */
int veil_capture_mark(int fd);

/*
 * Prepares the proxy's upstream socket of an inbound connection so that the
 * app sees the original caller's address: SO_MARK VEIL_CAPTURE_MARK,
 * IP_TRANSPARENT (IPV6_TRANSPARENT), SO_REUSEADDR, bind to `caller`'s
 * address with port 0. Then connect() to the original destination. `fd`
 * must have been created in the pod's netns with the caller's family.
 */
int veil_capture_transparent_prep(int fd, const struct sockaddr *caller, socklen_t len);

#endif
