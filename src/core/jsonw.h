/*
 * A bounded JSON text writer for lines we format ourselves on hot paths
 * (log records, the waypoint's access log), where building a jansson tree
 * per line would cost more than the line.
 *
 * It appends to buf[0, cap). Each piece (a raw run, one escape, one UTF-8
 * sequence, a number) is written whole or not at all, except that a string's
 * run of plain ASCII keeps the part that fits: once something does not fit,
 * `over` is set and everything later is dropped, so the text is always a
 * prefix that never ends in half an escape or half a character. Strings are escaped as RFC
 * 8259 requires; bytes that are not valid UTF-8 become U+FFFD, so the line
 * is always valid JSON text once closed.
 */
#ifndef VEIL_CORE_JSONW_H
#define VEIL_CORE_JSONW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct veil_jw {
    char *buf;
    size_t pos, cap;
    bool over; /* a piece did not fit */
};

static inline void veil_jw_init(struct veil_jw *w, char *buf, size_t cap)
{
    w->buf = buf;
    w->pos = 0;
    w->cap = cap;
    w->over = false;
}

/* n bytes as they are (punctuation, keys known to need no escape). */
void veil_jw_raw(struct veil_jw *w, const char *s, size_t n);
/* The contents of a string, escaped, without the quotes. */
void veil_jw_esc(struct veil_jw *w, const char *s, size_t n);
/* A string literal as it is. */
#define VEIL_JW_LIT(w, lit) veil_jw_raw((w), "" lit, sizeof(lit) - 1)
/* A quoted, escaped string. */
void veil_jw_str(struct veil_jw *w, const char *s, size_t n);
/* A decimal number. */
void veil_jw_u64(struct veil_jw *w, uint64_t v);

/* Bytes that escaping n input bytes can take, at most. */
static inline size_t veil_jw_esc_max(size_t n)
{
    return 6 * n;
}

#endif
