/*
 * DNS for the cluster's service names: an RFC 1035 message codec and a small
 * UDP + TCP server on the core loop.
 *
 * The codec is bounded and allocates nothing: names are read into fixed
 * buffers, compression pointers are followed only backwards and at most
 * VEIL_DNS_NAME_MAX / 2 times per name (a loop or a forward pointer is
 * malformed), every length is checked against the message.
 *
 * What veil_dns_answer() replies (the id, RD bit and question are echoed;
 * responses are authoritative, without recursion available):
 *
 * | query                                              | response            |
 * |----------------------------------------------------|---------------------|
 * | shorter than a header, or a response (QR set)      | none: -EINVAL       |
 * | opcode other than QUERY                            | NOTIMP              |
 * | QDCOUNT != 1, bad name, truncated question         | FORMERR             |
 * | class other than IN / ANY                          | REFUSED             |
 * | A or ANY of a name the lookup knows                | NOERROR, one A, TTL 30 |
 * | any other type of a name the lookup knows          | NOERROR, no answer  |
 * | unknown name, the domain itself or under it        | NXDOMAIN            |
 * | unknown name outside the domain                    | REFUSED (we do not forward) |
 *
 * Sections after the question (EDNS OPT, ...) are ignored; responses carry
 * no OPT record and always fit VEIL_DNS_UDP_MAX bytes.
 */
#ifndef VEIL_DNS_DNS_H
#define VEIL_DNS_DNS_H

#include <stdbool.h>
#include <sys/types.h>

#include "core/loop-t.h"
#include "dns/dns-t.h"

/* ---- codec ---- */

/* Reads the header. Returns 0, or -EINVAL if `len` < VEIL_DNS_HEADER_LEN. */
int veil_dns_parse_header(const uint8_t *msg, size_t len, struct veil_dns_header *h);

/* Writes the header to out[0..11]; `cap` must be >= VEIL_DNS_HEADER_LEN
 * (else -ENOBUFS). Returns 0. */
int veil_dns_write_header(uint8_t *out, size_t cap, const struct veil_dns_header *h);

/*
 * Reads the (possibly compressed) name at msg[*off] into `out` (text, case
 * kept, no trailing dot, "" for the root) and advances *off past the name as
 * it sits at *off. Returns 0; -EINVAL for a truncated name, a label longer
 * than 63, a name longer than 255 octets, a pointer loop or forward pointer,
 * the reserved label types (0x40, 0x80), or a label holding '.', '\\' or a
 * NUL byte (which text form could not say); -ENOBUFS if `cap` is too small.
 */
int veil_dns_read_name(const uint8_t *msg, size_t len, size_t *off, char *out, size_t cap);

/*
 * Writes `name` (text, a trailing dot allowed, "" or "." for the root)
 * uncompressed at out[*off] and advances *off. Returns 0, -EINVAL for an
 * empty label or one over 63, a name over 255 octets; -ENOBUFS when it does
 * not fit in `cap`.
 */
int veil_dns_write_name(uint8_t *out, size_t cap, size_t *off, const char *name);

/*
 * Parses a whole message into *m (see struct veil_dns_msg). Returns 0,
 * -EINVAL if it is malformed anywhere (header, a name, a record running
 * past the end, bytes left over after the last section). Answers past
 * VEIL_DNS_MAX_RR are checked but not kept.
 */
int veil_dns_parse(const uint8_t *msg, size_t len, struct veil_dns_msg *m);

/*
 * Builds a standard query (RD set, one question, no other section) for
 * `name` and `qtype` into out. Returns its length, or -EINVAL / -ENOBUFS as
 * veil_dns_write_name(). For tests, tools and fuzz seeds.
 */
ssize_t veil_dns_build_query(uint8_t *out, size_t cap, uint16_t id, const char *name,
                             uint16_t qtype);

/*
 * Answers one query (the table above). Returns the response length (> 0),
 * or -EINVAL when the message must be dropped without a response, or
 * -ENOBUFS if `cap` is smaller than VEIL_DNS_UDP_MAX and the response does
 * not fit. `rcode_out` (may be NULL) gets the response's rcode. `lk->resolve`
 * is called at most once.
 */
ssize_t veil_dns_answer(const uint8_t *q, size_t qlen, uint8_t *out, size_t cap,
                        const struct veil_dns_lookup *lk);
ssize_t veil_dns_answer_rcode(const uint8_t *q, size_t qlen, uint8_t *out, size_t cap,
                              const struct veil_dns_lookup *lk, enum veil_dns_rcode *rcode_out);

/*
 * Maps a query name (any case, a trailing dot allowed) to a Service's name
 * and namespace, for the node proxy's resolve callback. The forms, with
 * `domain` NULL meaning VEIL_DNS_CLUSTER_DOMAIN:
 *
 *   <svc>.<ns>.svc.<domain>   <svc>.<ns>.svc   <svc>.<ns>   <svc> (ns = pod_ns)
 *
 * svc and ns are written lower-cased. Returns 0, -ENOENT if the name has
 * none of these forms (more labels, a label that is not a DNS-1123 label,
 * `<svc>` with pod_ns NULL, e.g. "example.com" is read as svc "example", ns
 * "com" and is the caller's to not find), -ENOBUFS if a buffer is too small.
 */
int veil_dns_service_name(const char *qname, const char *pod_ns, char *svc, size_t svc_cap,
                          char *ns, size_t ns_cap);
int veil_dns_service_name_in(const char *qname, const char *domain, const char *pod_ns, char *svc,
                             size_t svc_cap, char *ns, size_t ns_cap);

/* True if `name` (lower-case, no trailing dot) is `domain` or under it. */
bool veil_dns_in_domain(const char *name, const char *domain);

/* ---- server ---- */

/*
 * Serves DNS on `udp_fd` (a bound UDP socket) and `tcp_fd` (a listening TCP
 * socket); either may be -1. Both are made non-blocking. On success the
 * server owns the fds and closes them in veil_dns_server_free(); on failure
 * (NULL, errno set) the caller still owns them. `lk` is copied; its `arg`
 * and `domain` must outlive the server.
 *
 * UDP: each datagram gets its answer sent back to its source; up to 64
 * datagrams are handled per loop wake-up. TCP: messages framed with a
 * 2-byte length (RFC 1035 4.2.2), pipelined queries answered in order; a
 * message over VEIL_DNS_TCP_MSG_MAX, a query that must be dropped, or a
 * peer that does not read its answers closes the connection. At most
 * VEIL_DNS_TCP_MAX_CONNS connections (more are accepted and closed at once);
 * one idle for VEIL_DNS_TCP_IDLE_MS is closed. Nothing a client sends stops
 * the server; it is counted (struct veil_dns_stats).
 */
struct veil_dns_server *veil_dns_server_new(struct veil_loop *loop, int udp_fd, int tcp_fd,
                                            const struct veil_dns_lookup *lk);

/* Changes the TCP limits (0 keeps a value); applies to new connections and
 * timers restarted after the call. */
void veil_dns_server_set_tcp_limits(struct veil_dns_server *s, unsigned max_conns,
                                    uint64_t idle_ms);

/* Copies the counters. Loop thread. */
void veil_dns_server_stats(const struct veil_dns_server *s, struct veil_dns_stats *out);

/* Open TCP connections. */
size_t veil_dns_server_tcp_conns(const struct veil_dns_server *s);

/*
 * Stops the server, closes its connections and its two fds, frees it. Loop
 * thread (or any thread when the loop is not running), before the loop is
 * freed (connections closed earlier are freed by the loop's deferred
 * queue); must not be called from the server's own resolve callback. NULL
 * is a no-op.
 */
void veil_dns_server_free(struct veil_dns_server *s);

#endif
