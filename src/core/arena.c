#include "core/arena.h"

#include "core/alloc.h"

#include <errno.h>
#include <stdalign.h>
#include <stdint.h>
#include <string.h>

#define ARENA_ALIGN alignof(max_align_t)

/* The alignment pads the header so that the payload after it is aligned. */
struct veil_arena_chunk {
    alignas(max_align_t) struct veil_arena_chunk *next;
};

#define CHUNK_HDR sizeof(struct veil_arena_chunk)

void veil_arena_init(struct veil_arena *a, size_t chunk_size, size_t max_bytes)
{
    a->_chunks = NULL;
    a->_cur = NULL;
    a->_end = NULL;
    a->_chunk_size = chunk_size ? chunk_size : VEIL_ARENA_CHUNK_DEFAULT;
    a->_max_bytes = max_bytes;
    a->_used = 0;
}

static struct veil_arena_chunk *chunk_new(struct veil_arena *a, size_t payload)
{
    if (payload > SIZE_MAX - CHUNK_HDR || payload + CHUNK_HDR > a->_max_bytes - a->_used) {
        errno = E2BIG;
        return NULL;
    }
    struct veil_arena_chunk *c = veil_malloc(CHUNK_HDR + payload);
    if (c == NULL) {
        errno = ENOMEM;
        return NULL;
    }
    a->_used += CHUNK_HDR + payload;
    c->next = a->_chunks;
    a->_chunks = c;
    return c;
}

/* A block too big for a chunk of its own gets a dedicated one. */
static void *alloc_dedicated(struct veil_arena *a, size_t n)
{
    struct veil_arena_chunk *c = chunk_new(a, n);
    return c ? (char *)(c + 1) : NULL;
}

static void *alloc_new_chunk(struct veil_arena *a, size_t n)
{
    struct veil_arena_chunk *c = chunk_new(a, a->_chunk_size);
    if (c == NULL)
        return NULL;
    a->_cur = (char *)(c + 1) + n;
    a->_end = (char *)(c + 1) + a->_chunk_size;
    return c + 1;
}

static void *arena_bump(struct veil_arena *a, size_t n, size_t align)
{
    if (n == 0)
        n = 1;
    size_t pad = a->_cur ? (size_t)(-(uintptr_t)a->_cur & (align - 1)) : 0;
    if (a->_cur && pad <= (size_t)(a->_end - a->_cur) && n <= (size_t)(a->_end - a->_cur) - pad) {
        void *p = a->_cur + pad;
        a->_cur += pad + n;
        return p;
    }
    if (n > a->_chunk_size / 4)
        return alloc_dedicated(a, n);
    return alloc_new_chunk(a, n);
}

void *veil_arena_alloc(struct veil_arena *a, size_t n)
{
    return arena_bump(a, n, ARENA_ALIGN);
}

void *veil_arena_zalloc(struct veil_arena *a, size_t n)
{
    void *p = veil_arena_alloc(a, n);
    if (p != NULL)
        memset(p, 0, n);
    return p;
}

char *veil_arena_memdup(struct veil_arena *a, const void *p, size_t n)
{
    if (n == SIZE_MAX) {
        errno = E2BIG;
        return NULL;
    }
    char *d = arena_bump(a, n + 1, 1);
    if (d == NULL)
        return NULL;
    if (n > 0)
        memcpy(d, p, n);
    d[n] = '\0';
    return d;
}

char *veil_arena_strndup(struct veil_arena *a, const char *s, size_t n)
{
    return veil_arena_memdup(a, s, strnlen(s, n));
}

size_t veil_arena_used(const struct veil_arena *a)
{
    return a->_used;
}

void veil_arena_free(struct veil_arena *a)
{
    struct veil_arena_chunk *c = a->_chunks;
    while (c != NULL) {
        struct veil_arena_chunk *next = c->next;
        veil_free(c);
        c = next;
    }
    veil_arena_init(a, a->_chunk_size, a->_max_bytes);
}
