/*
 * Arena types. See arena.h for the contract.
 */
#ifndef VEIL_CORE_ARENA_T_H
#define VEIL_CORE_ARENA_T_H

#include <stddef.h>

struct veil_arena_chunk;

/*
 * A bump allocator over a list of chunks, with a hard cap on the bytes it
 * may take from the allocator. All members are private: use arena.h.
 */
struct veil_arena {
    struct veil_arena_chunk *_chunks; /* every chunk, for veil_arena_free() */
    char *_cur;                       /* next free byte of the chunk being filled */
    char *_end;                       /* end of the chunk being filled */
    size_t _chunk_size;               /* payload bytes of an ordinary chunk */
    size_t _max_bytes;                /* cap on _used */
    size_t _used;                     /* bytes taken from veil_malloc, headers included */
};

#endif
