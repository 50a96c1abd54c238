/*
 * libFuzzer target for the DNS codec: every input is answered as a query
 * (the response, if any, must parse back and echo the id), parsed as a
 * whole message, its names read from every offset, and mapped as a
 * service name.
 *
 *   make fuzz && ./build-fuzz/fuzz/dns_fuzz -max_total_time=600 tests/fuzz/corpus/dns
 */
#include "dns/dns.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "dns_fuzz: check failed: %s\n", #cond);                                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static int resolve(void *arg, const char *fqdn, struct in_addr *out)
{
    char svc[64], ns[64];
    (void)arg;
    CHECK(strlen(fqdn) <= VEIL_DNS_NAME_MAX);
    if (veil_dns_service_name(fqdn, "default", svc, sizeof(svc), ns, sizeof(ns)) < 0 ||
        strcmp(svc, "web") != 0)
        return -ENOENT;
    out->s_addr = 0x010013c6;
    return 0;
}

static void answer(const uint8_t *data, size_t size)
{
    static const struct veil_dns_lookup lk = {.resolve = resolve};
    uint8_t out[VEIL_DNS_UDP_MAX];
    struct veil_dns_msg m;
    enum veil_dns_rcode rc;
    ssize_t n = veil_dns_answer_rcode(data, size, out, sizeof(out), &lk, &rc);
    if (n < 0) {
        CHECK(n == -EINVAL);
        return;
    }
    CHECK(n >= VEIL_DNS_HEADER_LEN && (size_t)n <= sizeof(out));
    CHECK(veil_dns_parse(out, (size_t)n, &m) == 0);
    CHECK(m.hdr.id == ((data[0] << 8) | data[1]));
    CHECK(m.hdr.flags & VEIL_DNS_F_QR);
    CHECK(VEIL_DNS_RCODE(m.hdr.flags) == rc);
    CHECK(m.hdr.ancount <= 1 && (m.hdr.ancount == 0 || rc == VEIL_DNS_NOERROR));
}

static void names(const uint8_t *data, size_t size)
{
    char txt[VEIL_DNS_NAME_MAX + 1];
    uint8_t wire[VEIL_DNS_NAME_MAX + 8];
    for (size_t i = 0; i < size && i < 64; i++) {
        size_t off = i, woff = 0, roff = 0;
        if (veil_dns_read_name(data, size, &off, txt, sizeof(txt)) < 0)
            continue;
        CHECK(off > i && off <= size);
        /* what was read writes back and reads the same */
        CHECK(veil_dns_write_name(wire, sizeof(wire), &woff, txt) == 0);
        CHECK(veil_dns_read_name(wire, woff, &roff, txt + 0, sizeof(txt)) == 0);
        CHECK(roff == woff);
    }
}

static void service_name(const uint8_t *data, size_t size)
{
    char q[300], svc[64], ns[64];
    size_t n = size < sizeof(q) - 1 ? size : sizeof(q) - 1;
    memcpy(q, data, n);
    q[n] = '\0';
    if (veil_dns_service_name(q, "default", svc, sizeof(svc), ns, sizeof(ns)) == 0)
        CHECK(svc[0] != '\0' && ns[0] != '\0' && strchr(svc, '.') == NULL &&
              strchr(ns, '.') == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct veil_dns_msg m;
    answer(data, size);
    (void)veil_dns_parse(data, size, &m);
    names(data, size);
    service_name(data, size);
    return 0;
}
