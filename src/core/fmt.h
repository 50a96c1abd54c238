/*
 * Small formatters for the per-request path, where snprintf() and
 * inet_ntop() cost more than the work they do (each parses its format at
 * every call; docs/benchmarks.md, "What the waypoint's time goes to").
 * Each writes a NUL-terminated string and returns its length.
 */
#ifndef VEIL_CORE_FMT_H
#define VEIL_CORE_FMT_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#define VEIL_FMT_U64_MAX 21 /* "18446744073709551615" and its NUL */

/* v in decimal into out[VEIL_FMT_U64_MAX]. */
size_t veil_fmt_u64(char *out, uint64_t v);

/* a as a dotted quad, as inet_ntop() writes it, into out[INET_ADDRSTRLEN]. */
size_t veil_fmt_ip4(char *out, struct in_addr a);

/*
 * The strings given, one after the other, into dst[cap] (cap > 0), cut at
 * cap - 1 bytes as snprintf() cuts. Returns the length of the whole, which
 * is >= cap when it was cut (snprintf()'s convention). The macro ends the
 * list: veil_fmt_cat(buf, sizeof(buf), ns, "/", name).
 */
#define veil_fmt_cat(dst, cap, ...) veil_fmt_cat_list((dst), (cap), __VA_ARGS__, (const char *)NULL)
size_t veil_fmt_cat_list(char *dst, size_t cap, ...);

#endif
