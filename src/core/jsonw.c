/* The bounded JSON text writer (jsonw.h). */
#include "core/jsonw.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

void veil_jw_raw(struct veil_jw *w, const char *s, size_t n)
{
    if (w->over || n > w->cap - w->pos) {
        w->over = true;
        return;
    }
    memcpy(w->buf + w->pos, s, n);
    w->pos += n;
}

/* The length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    size_t len;
    uint32_t cp;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        len = 2;
        cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        len = 3;
        cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        len = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0; /* overlong, out of range, or a surrogate */
    return len;
}

/* plain[c]: byte c goes into a JSON string as it is (printable ASCII but
 * '"' and '\\'). A table: this runs for every byte of every access-log
 * line. */
#define PLAIN(c)   ((c) >= 0x20 && (c) < 0x80 && (c) != '"' && (c) != '\\')
#define PLAIN4(c)  PLAIN(c), PLAIN((c) + 1), PLAIN((c) + 2), PLAIN((c) + 3)
#define PLAIN16(c) PLAIN4(c), PLAIN4((c) + 4), PLAIN4((c) + 8), PLAIN4((c) + 12)
#define PLAIN64(c) PLAIN16(c), PLAIN16((c) + 16), PLAIN16((c) + 32), PLAIN16((c) + 48)
static const bool plain[256] = {PLAIN64(0), PLAIN64(64), PLAIN64(128), PLAIN64(192)};

/* Whether one of the 8 bytes at p may need an escape: below 0x20, 0x80 or
 * above, '"' or '\\'. Never false when one does; may be true when none
 * does (the byte loop after it decides). (v - 0x0101..01 * k) & ~v has a
 * top bit set where a byte below k is, and only if there is one. */
static bool word_special(const char *p)
{
    const uint64_t ones = 0x0101010101010101ull, tops = ones * 0x80;
    uint64_t v, q, b;
    memcpy(&v, p, sizeof(v));
    q = v ^ (ones * '"');
    b = v ^ (ones * '\\');
    return ((v | ((v - ones * 0x20) & ~v) | ((q - ones) & ~q) | ((b - ones) & ~b)) & tops) != 0;
}

void veil_jw_esc(struct veil_jw *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n && !w->over) {
        size_t run = i; /* bytes that need no escape, copied in one piece */
        while (n - run >= 8 && !word_special(s + run))
            run += 8;
        while (run < n && plain[p[run]])
            run++;
        if (run > i) { /* any prefix of such a run is whole pieces: keep what fits */
            size_t k = run - i <= w->cap - w->pos ? run - i : w->cap - w->pos;
            veil_jw_raw(w, s + i, k);
            if (k < run - i)
                w->over = true;
            i = run;
            continue;
        }
        unsigned char c = p[i];
        if (c >= 0x80) {
            size_t len = utf8_len(p + i, n - i);
            if (len > 0)
                veil_jw_raw(w, s + i, len);
            else
                veil_jw_raw(w, "\\ufffd", 6);
            i += len > 0 ? len : 1;
            continue;
        }
        char e[6] = {'\\', (char)c};
        size_t elen = 2;
        switch (c) {
        case '"':
        case '\\':
            break;
        case '\n':
            e[1] = 'n';
            break;
        case '\r':
            e[1] = 'r';
            break;
        case '\t':
            e[1] = 't';
            break;
        default:
            memcpy(e, "\\u00", 4);
            e[4] = hex[c >> 4];
            e[5] = hex[c & 15];
            elen = 6;
        }
        veil_jw_raw(w, e, elen);
        i++;
    }
}

void veil_jw_str(struct veil_jw *w, const char *s, size_t n)
{
    veil_jw_raw(w, "\"", 1);
    veil_jw_esc(w, s, n);
    veil_jw_raw(w, "\"", 1);
}

void veil_jw_u64(struct veil_jw *w, uint64_t v)
{
    char tmp[20];
    size_t k = sizeof(tmp);
    do {
        tmp[--k] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    veil_jw_raw(w, tmp + k, sizeof(tmp) - k);
}
