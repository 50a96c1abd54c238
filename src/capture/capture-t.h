/*
 * Types and constants of traffic capture (src/capture/capture.h).
 */
#ifndef VEIL_CAPTURE_CAPTURE_T_H
#define VEIL_CAPTURE_CAPTURE_T_H

#include <stdint.h>

/* The node proxy's socket mark: packets carrying it are never captured. */
#define VEIL_CAPTURE_MARK 0x539
/* Connection mark (and packet mark) of the transparent inbound upstream
 * connections: their replies are routed to the proxy by table 100. */
#define VEIL_CAPTURE_TPROXY_MARK  0x111
#define VEIL_CAPTURE_TPROXY_TABLE 100

/* Ports (Istio's numbers). The first four live in each pod's netns, the
 * last three in the node proxy's own (node) netns. */
#define VEIL_PORT_OUTBOUND  15001 /* redirected outbound TCP of the apps */
#define VEIL_PORT_INBOUND   15006 /* redirected inbound plaintext TCP */
#define VEIL_PORT_HBONE     15008 /* HBONE (mTLS + HTTP/2 CONNECT), never redirected */
#define VEIL_PORT_DNS       15053 /* redirected DNS, UDP and TCP */
#define VEIL_PORT_ADMIN     15000 /* node admin, localhost */
#define VEIL_PORT_METRICS   15020
#define VEIL_PORT_READINESS 15021

/*
 * What veil_capture_install() sets up in a pod's netns. A zeroed struct (or
 * NULL) means every default: the ports above, DNS captured, IPv4 and IPv6.
 */
struct veil_capture_opts {
    uint16_t outbound_port; /* 0: VEIL_PORT_OUTBOUND */
    uint16_t inbound_port;  /* 0: VEIL_PORT_INBOUND */
    uint16_t hbone_port;    /* 0: VEIL_PORT_HBONE (excluded from inbound capture) */
    uint16_t dns_port;      /* 0: VEIL_PORT_DNS */
    int no_dns;             /* non-zero: leave port 53 alone */
    /* Extra inbound TCP ports to leave alone (besides the proxy's own
     * ports, which are always excluded). */
    const uint16_t *exclude_inbound;
    unsigned n_exclude_inbound; /* at most 32 */
};

#endif
