/* HBONE authorities: "a.b.c.d:port" and "[v6]:port"; see hbone.h. */
#include "hbone/hbone.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

/* A decimal port 1-65535 without sign, spaces or leading zeros. */
static int parse_port(const char *s, size_t n, uint16_t *out)
{
    if (n == 0 || n > 5 || (s[0] == '0'))
        return -EINVAL;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v == 0 || v > 65535)
        return -EINVAL;
    *out = (uint16_t)v;
    return 0;
}

int veil_hbone_parse_authority(const char *s, size_t n, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[INET6_ADDRSTRLEN];
    const char *colon;
    size_t hlen;
    bool v6 = n > 0 && s[0] == '[';
    if (v6) {
        const char *close = memchr(s, ']', n);
        if (close == NULL || close + 1 >= s + n || close[1] != ':')
            return -EINVAL;
        hlen = (size_t)(close - s - 1);
        colon = close + 1;
        s++;
    } else {
        colon = memrchr(s, ':', n);
        if (colon == NULL)
            return -EINVAL;
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= sizeof(host))
        return -EINVAL;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    const char *end = (v6 ? s - 1 : s) + n;
    uint16_t port;
    if (parse_port(colon + 1, (size_t)(end - colon - 1), &port) != 0)
        return -EINVAL;
    memset(ss, 0, sizeof(*ss));
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
            return -EINVAL;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        *len = sizeof(*a);
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
            return -EINVAL;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        *len = sizeof(*a);
    }
    return 0;
}

int veil_hbone_format_authority(const struct sockaddr *sa, char *buf, size_t n)
{
    char host[INET6_ADDRSTRLEN];
    int w;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
        w = snprintf(buf, n, "%s:%u", host, ntohs(a->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
        w = snprintf(buf, n, "[%s]:%u", host, ntohs(a->sin6_port));
    } else {
        return -EINVAL;
    }
    return w < 0 || (size_t)w >= n ? -ENOBUFS : 0;
}
