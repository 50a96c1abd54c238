#include "core/fmt.h"

#include <stdarg.h>
#include <string.h>

size_t veil_fmt_u64(char *out, uint64_t v)
{
    char tmp[VEIL_FMT_U64_MAX];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    return n;
}

size_t veil_fmt_ip4(char *out, struct in_addr a)
{
    const unsigned char *b = (const unsigned char *)&a.s_addr;
    size_t n = 0;
    for (int i = 0; i < 4; i++) {
        if (i > 0)
            out[n++] = '.';
        n += veil_fmt_u64(out + n, b[i]);
    }
    return n;
}

size_t veil_fmt_cat_list(char *dst, size_t cap, ...)
{
    va_list ap;
    va_start(ap, cap);
    size_t len = 0;
    for (const char *s; (s = va_arg(ap, const char *)) != NULL;) {
        size_t n = strlen(s);
        if (len < cap - 1) {
            size_t k = n < cap - 1 - len ? n : cap - 1 - len;
            memcpy(dst + len, s, k);
        }
        len += n;
    }
    va_end(ap);
    dst[len < cap - 1 ? len : cap - 1] = '\0';
    return len;
}
