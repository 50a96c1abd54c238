/* The engine's bounded byte buffers (wp-int.h). */
#include "waypoint/wp-int.h"

#include "core/alloc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define WP_BUF_FIRST (16 * 1024)
/* Freed first-size buffers kept for the next one, at most (per thread:
 * the engine runs on its loop thread). Without it every read or write
 * turn costs a 16 KiB malloc and free (the buffers are freed when they
 * drain, so that an idle connection holds none). */
#define WP_BUF_CACHE 16

static _Thread_local struct {
    char *p[WP_BUF_CACHE];
    unsigned n;
} cache;

void wp__buf_cache_trim(void)
{
    while (cache.n > 0)
        veil_free(cache.p[--cache.n]);
}

/* Makes room for `want` more bytes (total at most max): 0, -ENOBUFS or
 * -ENOMEM. Moves the data to the front first when that is enough. */
int wp__buf_room(struct wp_buf *b, size_t want, size_t max)
{
    size_t len = wp__buf_len(b);
    if (len + want > max)
        return -ENOBUFS;
    if (b->p != NULL && b->len + want <= b->cap)
        return 0;
    if (b->p != NULL && b->off > 0) {
        memmove(b->p, b->p + b->off, len);
        b->off = 0;
        b->len = (uint32_t)len;
        if (len + want <= b->cap)
            return 0;
    }
    size_t cap = b->cap ? b->cap : WP_BUF_FIRST;
    if (b->p == NULL && len + want <= cap && cache.n > 0) {
        b->p = cache.p[--cache.n];
        b->cap = WP_BUF_FIRST;
        return 0;
    }
    while (cap < len + want)
        cap *= 2;
    if (cap > max)
        cap = max;
    char *p = veil_realloc(b->p, cap);
    if (p == NULL)
        return -ENOMEM;
    b->p = p;
    b->cap = (uint32_t)cap;
    return 0;
}

int wp__buf_put_slow(struct wp_buf *b, const void *p, size_t n, size_t max)
{
    int rc = wp__buf_room(b, n, max);
    if (rc != 0)
        return rc;
    memcpy(b->p + b->len, p, n);
    b->len += (uint32_t)n;
    return 0;
}

int wp__buf_printf(struct wp_buf *b, size_t max, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return -ENOBUFS;
    return wp__buf_put(b, tmp, (size_t)n, max);
}

/* The first n bytes were passed on. An emptied buffer is freed. */
void wp__buf_used(struct wp_buf *b, size_t n)
{
    b->off += (uint32_t)n;
    if (b->off >= b->len)
        wp__buf_free(b);
}

void wp__buf_free(struct wp_buf *b)
{
    if (b->p != NULL && b->cap == WP_BUF_FIRST && cache.n < WP_BUF_CACHE)
        cache.p[cache.n++] = b->p;
    else
        veil_free(b->p);
    b->p = NULL;
    b->off = b->len = b->cap = 0;
}
