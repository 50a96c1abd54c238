/* The extra request headers of a CONNECT (hbone.h, docs/hbone.md):
 * checked when dialled, kept packed in the stream until used. */
#include "hbone/hbone-int.h"
#include "hbone/hbone.h"

#include "core/alloc.h"

#include <errno.h>
#include <string.h>

/* RFC 9110 tchar, lower case only (HTTP/2 field names are lower case). */
static bool name_char(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || strchr("!#$%&'*+-.^_`|~", ch);
}

/* Connection-specific fields (RFC 9113, 8.2.2) and host, which :authority
 * replaces: nghttp2 refuses a request that carries them. */
static bool name_forbidden(const char *name)
{
    static const char *const bad[] = {
        "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
        "te",         "host"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (strcmp(name, bad[i]) == 0)
            return true;
    return false;
}

static bool name_ok(const char *name)
{
    if (name == NULL || name[0] == '\0')
        return false;
    for (const char *p = name; *p != '\0'; p++)
        if (!name_char((unsigned char)*p))
            return false;
    return !name_forbidden(name);
}

/* Visible characters, SP, HTAB and obs-text; no blank at either end. */
static bool value_ok(const char *v)
{
    if (v == NULL)
        return false;
    size_t n = strlen(v);
    if (n > 0 && (v[0] == ' ' || v[0] == '\t' || v[n - 1] == ' ' || v[n - 1] == '\t'))
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)v[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
            return false;
    }
    return true;
}

int veil_hbone_headers_check(const struct veil_hbone_header *h, size_t n)
{
    if (n == 0)
        return 0;
    if (h == NULL || n > VEIL_HBONE_HEADERS_MAX)
        return -EINVAL;
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        if (!name_ok(h[i].name) || !value_ok(h[i].value))
            return -EINVAL;
        bytes += strlen(h[i].name) + strlen(h[i].value);
        if (bytes > VEIL_HBONE_HEADERS_BYTES)
            return -EINVAL;
    }
    return 0;
}

/* Appends "name\0value\0" to s->xhdr. 0 or -ENOMEM. */
static int append(struct veil_hbone_h2s *s, const void *name, size_t namelen, const void *value,
                  size_t valuelen)
{
    size_t len = s->xhdr_len + namelen + valuelen + 2;
    char *p = veil_realloc(s->xhdr, len);
    if (p == NULL)
        return -ENOMEM;
    char *at = p + s->xhdr_len;
    memcpy(at, name, namelen);
    at[namelen] = '\0';
    memcpy(at + namelen + 1, value, valuelen);
    at[namelen + 1 + valuelen] = '\0';
    s->xhdr = p;
    s->xhdr_len = (uint16_t)len;
    s->nxhdr++;
    return 0;
}

int hbone__xhdr_set(struct veil_hbone_h2s *s, const struct veil_hbone_header *h, size_t n)
{
    if (veil_hbone_headers_check(h, n) != 0)
        return -EINVAL;
    for (size_t i = 0; i < n; i++)
        if (append(s, h[i].name, strlen(h[i].name), h[i].value, strlen(h[i].value)) != 0) {
            hbone__xhdr_free(s);
            return -ENOMEM;
        }
    return 0;
}

int hbone__xhdr_add(struct veil_hbone_h2s *s, const uint8_t *name, size_t namelen,
                    const uint8_t *value, size_t valuelen)
{
    /* What is kept so far, without the NULs: within the byte bound. */
    size_t kept = (size_t)s->xhdr_len - 2u * s->nxhdr;
    if (s->nxhdr >= VEIL_HBONE_HEADERS_MAX ||
        kept + namelen + valuelen > VEIL_HBONE_HEADERS_BYTES ||
        memchr(value, '\0', valuelen) != NULL) {
        s->xhdr_dropped = true;
        return 0;
    }
    return append(s, name, namelen, value, valuelen);
}

size_t hbone__xhdr_list(const struct veil_hbone_h2s *s, struct veil_hbone_header *out)
{
    const char *p = s->xhdr, *end = s->xhdr + s->xhdr_len;
    size_t n = 0;
    while (p != NULL && p < end && n < s->nxhdr && n < VEIL_HBONE_HEADERS_MAX) {
        out[n].name = p;
        p += strlen(p) + 1;
        out[n].value = p;
        p += strlen(p) + 1;
        n++;
    }
    return n;
}

void hbone__xhdr_free(struct veil_hbone_h2s *s)
{
    veil_free(s->xhdr);
    s->xhdr = NULL;
    s->xhdr_len = 0;
    s->nxhdr = 0;
}

const char *veil_hbone_connect_header(const struct veil_hbone_connect_info *info, const char *name)
{
    for (size_t i = 0; info != NULL && name != NULL && i < info->nheaders; i++)
        if (strcmp(info->headers[i].name, name) == 0)
            return info->headers[i].value;
    return NULL;
}
