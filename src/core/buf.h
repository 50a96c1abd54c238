/*
 * Bounded byte buffers.
 *
 * Every buffer gets a hard upper bound at init and never holds more: an
 * append that does not fit returns -ENOBUFS and changes nothing, so a slow
 * reader makes the writer wait instead of growing memory without bound.
 *
 * Memory: nothing is allocated until the first write. The allocation then
 * starts at VEIL_BUF_MIN_ALLOC bytes (or what the write needs) and doubles,
 * never past the bound. Before growing, the held bytes are moved to the
 * front of the allocation if that makes enough room. When the buffer already
 * has room for a write, nothing is allocated. Allocation failure returns
 * -ENOMEM and leaves the content unchanged.
 *
 * Returns follow docs/internals.md: 0 or a byte count on success, -errno on
 * failure. A buffer is used by one thread at a time; it is not locked.
 */
#ifndef VEIL_CORE_BUF_H
#define VEIL_CORE_BUF_H

#include "core/buf-t.h"

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define VEIL_BUF_MIN_ALLOC 256
/* veil_buf_read_fd() asks for this much contiguous room (or all the space
 * left, if less) before reading. */
#define VEIL_BUF_READ_MIN 4096
/* A buffer that drains to empty frees an allocation larger than this. */
#define VEIL_BUF_KEEP_MAX (64 * 1024)

/* Makes `b` an empty buffer that will never hold more than `max` bytes.
 * Allocates nothing. */
void veil_buf_init(struct veil_buf *b, size_t max);

/* Releases the memory. `b` stays a valid empty buffer with the same bound
 * and can be used again. */
void veil_buf_free(struct veil_buf *b);

/* The readable bytes: veil_buf_len(b) of them (NULL when nothing was ever
 * allocated). Valid until the next call that writes to or frees `b`. */
static inline char *veil_buf_data(const struct veil_buf *b)
{
    return b->_data != NULL ? b->_data + b->_off : NULL;
}

static inline size_t veil_buf_len(const struct veil_buf *b)
{
    return b->_len;
}

static inline size_t veil_buf_max(const struct veil_buf *b)
{
    return b->_max;
}

/* Bytes allocated now (0 when the buffer holds no memory). */
static inline size_t veil_buf_alloc_size(const struct veil_buf *b)
{
    return b->_cap;
}

/* How many more bytes the buffer may hold: max - len. */
static inline size_t veil_buf_space(const struct veil_buf *b)
{
    return b->_max - b->_len;
}

static inline bool veil_buf_is_full(const struct veil_buf *b)
{
    return b->_len == b->_max;
}

static inline bool veil_buf_is_empty(const struct veil_buf *b)
{
    return b->_len == 0;
}

/*
 * Appends `n` bytes, all or nothing. Returns 0; -ENOBUFS if they do not fit
 * under the bound; -ENOMEM if memory could not be had. On failure the
 * content is unchanged.
 */
int veil_buf_append(struct veil_buf *b, const void *p, size_t n);

/*
 * For writing straight into the buffer (e.g. read(2) into it): makes at
 * least `min` contiguous writable bytes (1 if `min` is 0) and returns where
 * they start in `*ptr` and how many there are in `*avail` (>= min, never
 * more than veil_buf_space()). Nothing counts as held until
 * veil_buf_commit(). Returns 0, -ENOBUFS if `min` exceeds veil_buf_space(),
 * or -ENOMEM. `*ptr` is valid until the next call that changes `b`.
 */
int veil_buf_reserve(struct veil_buf *b, size_t min, char **ptr, size_t *avail);

/* Marks `n` bytes written after veil_buf_reserve() as held. `n` must not
 * exceed the `*avail` that reserve returned. */
void veil_buf_commit(struct veil_buf *b, size_t n);

/* Drops `n` bytes (n <= veil_buf_len()) from the front. When that empties
 * the buffer and its allocation is over VEIL_BUF_KEEP_MAX, the allocation is
 * freed (pointers from veil_buf_data() die; the next write allocates). */
void veil_buf_consume(struct veil_buf *b, size_t n);

/* Drops all bytes; keeps the memory. */
void veil_buf_reset(struct veil_buf *b);

/* Frees the allocation of an empty buffer (its owner is idle and wants to
 * hold no memory); does nothing to a buffer that holds bytes. For a busy
 * owner, call it once per batch of work (e.g. when a turn of the L4 pump
 * ends), not after every consume: the next write allocates again. */
void veil_buf_trim(struct veil_buf *b);

/*
 * One read(2) from `fd` into the buffer (retried on EINTR). Returns the
 * number of bytes read (> 0); 0 at end of file; -ENOBUFS if the buffer is
 * full (nothing is read); -EAGAIN if a non-blocking fd has nothing; -ENOMEM;
 * or another -errno.
 */
ssize_t veil_buf_read_fd(struct veil_buf *b, int fd);

/*
 * One write(2) of the held bytes to `fd` (retried on EINTR); the bytes
 * written are consumed. Returns the number written (0 if the buffer is
 * empty), -EAGAIN if a non-blocking fd cannot take any, or another -errno
 * (the content is then unchanged). Writing to a pipe or socket whose reader
 * is gone raises SIGPIPE unless the process ignores it.
 */
ssize_t veil_buf_write_fd(struct veil_buf *b, int fd);

#endif
