/*
 * Arena: a bump allocator for data that lives and dies together (a parsed
 * configuration file, a request). Memory comes from veil_malloc in chunks of
 * `chunk_size` bytes; a request larger than a quarter of a chunk gets a chunk
 * of its own, so big blocks do not waste the rest of the current chunk.
 *
 * The arena never takes more than `max_bytes` from the allocator, chunk
 * headers included: a request that would pass the cap fails, and so does
 * every later one that does not fit in what is left. Nothing is freed
 * piecemeal; veil_arena_free() returns everything at once.
 *
 * Not thread-safe: one arena belongs to one thread at a time.
 */
#ifndef VEIL_CORE_ARENA_H
#define VEIL_CORE_ARENA_H

#include "core/arena-t.h"

#include <stddef.h>

/* Used when veil_arena_init() is given a chunk_size of 0. */
#define VEIL_ARENA_CHUNK_DEFAULT 16384

/*
 * Prepares an empty arena; allocates nothing. A chunk_size of 0 picks
 * VEIL_ARENA_CHUNK_DEFAULT. max_bytes is the hard cap (SIZE_MAX: no cap).
 */
void veil_arena_init(struct veil_arena *a, size_t chunk_size, size_t max_bytes);

/*
 * Returns `n` bytes aligned for any type (max_align_t), uninitialised, valid
 * until veil_arena_free(). n == 0 is treated as 1. Returns NULL and sets
 * errno to E2BIG when the cap would be passed, or to ENOMEM when the
 * allocator fails; the arena stays usable either way.
 */
void *veil_arena_alloc(struct veil_arena *a, size_t n);

/* Like veil_arena_alloc(), zero-filled. */
void *veil_arena_zalloc(struct veil_arena *a, size_t n);

/*
 * Copies at most `n` bytes of the string `s` (stopping at its NUL, like
 * strndup) into the arena and NUL-terminates the copy. NULL as
 * veil_arena_alloc().
 */
char *veil_arena_strndup(struct veil_arena *a, const char *s, size_t n);

/*
 * Copies exactly `n` bytes (which may include NULs) and appends a NUL, so a
 * length-delimited string can also be read as a C string. NULL as
 * veil_arena_alloc().
 */
char *veil_arena_memdup(struct veil_arena *a, const void *p, size_t n);

/* Bytes taken from the allocator so far, chunk headers included. */
size_t veil_arena_used(const struct veil_arena *a);

/*
 * Frees every chunk. Everything allocated from the arena becomes invalid.
 * The arena is left empty with the same chunk size and cap, ready for reuse.
 */
void veil_arena_free(struct veil_arena *a);

#endif
