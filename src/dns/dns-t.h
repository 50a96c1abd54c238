/* Types of the DNS message codec and server; see dns.h for the contract. */
#ifndef VEIL_DNS_DNS_T_H
#define VEIL_DNS_DNS_T_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

/* Longest name in text form without the trailing dot (RFC 1035: 255 octets
 * on the wire, which is at most 253 characters of text). */
#define VEIL_DNS_NAME_MAX 253
/* Largest label (RFC 1035 2.3.4). */
#define VEIL_DNS_LABEL_MAX 63
/* Size of the fixed header. */
#define VEIL_DNS_HEADER_LEN 12
/* Our responses always fit a classic UDP payload. */
#define VEIL_DNS_UDP_MAX 512
/* Largest query accepted over TCP (the 2-byte length prefix excluded). */
#define VEIL_DNS_TCP_MSG_MAX 4096
/* Records kept by veil_dns_parse() per section (the rest are skipped). */
#define VEIL_DNS_MAX_RR 8
/* TTL of the A records we answer, in seconds. */
#define VEIL_DNS_TTL 30
/* Defaults of the server's TCP side. */
#define VEIL_DNS_TCP_MAX_CONNS 64
#define VEIL_DNS_TCP_IDLE_MS   10000
/* The cluster domain when struct veil_dns_lookup leaves it NULL. */
#define VEIL_DNS_CLUSTER_DOMAIN "cluster.local"

enum veil_dns_type {
    VEIL_DNS_T_A = 1,
    VEIL_DNS_T_NS = 2,
    VEIL_DNS_T_CNAME = 5,
    VEIL_DNS_T_SOA = 6,
    VEIL_DNS_T_PTR = 12,
    VEIL_DNS_T_MX = 15,
    VEIL_DNS_T_TXT = 16,
    VEIL_DNS_T_AAAA = 28,
    VEIL_DNS_T_SRV = 33,
    VEIL_DNS_T_OPT = 41,
    VEIL_DNS_T_ANY = 255,
};

enum veil_dns_class {
    VEIL_DNS_C_IN = 1,
    VEIL_DNS_C_ANY = 255,
};

enum veil_dns_rcode {
    VEIL_DNS_NOERROR = 0,
    VEIL_DNS_FORMERR = 1,
    VEIL_DNS_SERVFAIL = 2,
    VEIL_DNS_NXDOMAIN = 3,
    VEIL_DNS_NOTIMP = 4,
    VEIL_DNS_REFUSED = 5,
};

/* Header flag bits (the 16-bit word after the id). */
enum {
    VEIL_DNS_F_QR = 0x8000, /* response */
    VEIL_DNS_F_AA = 0x0400, /* authoritative answer */
    VEIL_DNS_F_TC = 0x0200, /* truncated */
    VEIL_DNS_F_RD = 0x0100, /* recursion desired */
    VEIL_DNS_F_RA = 0x0080, /* recursion available */
};
#define VEIL_DNS_OPCODE(flags) (((flags) >> 11) & 0xf)
#define VEIL_DNS_RCODE(flags)  ((flags)&0xf)

/* The fixed header, host byte order. */
struct veil_dns_header {
    uint16_t id;
    uint16_t flags; /* VEIL_DNS_F_*, opcode, rcode */
    uint16_t qdcount;
    uint16_t ancount;
    uint16_t nscount;
    uint16_t arcount;
};

/* One question; `name` is in text form, case kept, no trailing dot ("" for
 * the root). */
struct veil_dns_question {
    char name[VEIL_DNS_NAME_MAX + 1];
    uint16_t qtype;
    uint16_t qclass;
};

/* One resource record; `rdata` points into the parsed message. */
struct veil_dns_rr {
    char name[VEIL_DNS_NAME_MAX + 1];
    uint16_t type;
    uint16_t rclass;
    uint32_t ttl;
    uint16_t rdlen;
    const uint8_t *rdata;
};

/* A whole parsed message: the header, the first question and the first
 * VEIL_DNS_MAX_RR answers (the other sections are walked and checked, not
 * kept). */
struct veil_dns_msg {
    struct veil_dns_header hdr;
    struct veil_dns_question q; /* valid if hdr.qdcount > 0 */
    struct veil_dns_rr an[VEIL_DNS_MAX_RR];
    size_t nan; /* answers kept */
};

/*
 * How the server finds a name. `resolve` gets the query name lower-cased,
 * without the trailing dot (e.g. "web.default.svc.cluster.local", "web.default"
 * or "web": the three forms veil_dns_service_name() maps), and returns 0 with
 * *out filled if it knows the name, -ENOENT if not. It is called on the
 * server's loop thread and must not block or free the server.
 */
struct veil_dns_lookup {
    int (*resolve)(void *arg, const char *fqdn, struct in_addr *out);
    void *arg;
    /* The cluster domain: unknown names under it are NXDOMAIN, unknown names
     * outside it REFUSED. NULL = VEIL_DNS_CLUSTER_DOMAIN. Not copied: must
     * outlive the server. */
    const char *domain;
};

/* Counters of one server. Plain integers, read on the loop thread. */
struct veil_dns_stats {
    uint64_t queries;      /* messages received (UDP datagrams, TCP messages) */
    uint64_t answered;     /* NOERROR responses (with or without an answer) */
    uint64_t nxdomain;     /* NXDOMAIN responses */
    uint64_t refused;      /* REFUSED (outside the cluster domain) and NOTIMP */
    uint64_t malformed;    /* FORMERR responses and dropped garbage */
    uint64_t send_errors;  /* responses that could not be sent (UDP EAGAIN, ...) */
    uint64_t tcp_accepted; /* TCP connections served */
    uint64_t tcp_rejected; /* TCP connections closed at once: connection cap */
    uint64_t tcp_timeouts; /* TCP connections closed for idleness */
};

/* A UDP + TCP DNS server on one loop. Opaque. */
struct veil_dns_server;

#endif
