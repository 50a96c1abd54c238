#include "core/buf.h"

#include "core/alloc.h"
#include "core/bug.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

void veil_buf_init(struct veil_buf *b, size_t max)
{
    *b = (struct veil_buf){._max = max};
}

void veil_buf_free(struct veil_buf *b)
{
    veil_free(b->_data);
    veil_buf_init(b, b->_max);
}

static size_t buf_tail_room(const struct veil_buf *b)
{
    return b->_cap - b->_off - b->_len;
}

static void buf_compact(struct veil_buf *b)
{
    if (b->_off == 0)
        return;
    memmove(b->_data, b->_data + b->_off, b->_len);
    b->_off = 0;
}

/* The doubled capacity that holds `need` bytes (need <= _max). */
static size_t buf_next_cap(const struct veil_buf *b, size_t need)
{
    size_t cap = b->_cap != 0 ? b->_cap : VEIL_BUF_MIN_ALLOC;
    while (cap < need && cap <= b->_max / 2)
        cap *= 2;
    if (cap < need || cap > b->_max)
        cap = b->_max;
    return cap;
}

static int buf_grow(struct veil_buf *b, size_t need)
{
    size_t cap = buf_next_cap(b, need);
    buf_compact(b);
    char *data = veil_realloc(b->_data, cap);
    if (data == NULL)
        return -ENOMEM;
    b->_data = data;
    b->_cap = cap;
    return 0;
}

/* Makes `min` contiguous bytes at the tail; min <= veil_buf_space(b). */
static int buf_make_room(struct veil_buf *b, size_t min)
{
    if (buf_tail_room(b) >= min)
        return 0;
    if (b->_cap - b->_len >= min) {
        buf_compact(b);
        return 0;
    }
    return buf_grow(b, b->_len + min);
}

int veil_buf_reserve(struct veil_buf *b, size_t min, char **ptr, size_t *avail)
{
    if (min == 0)
        min = 1;
    if (min > veil_buf_space(b))
        return -ENOBUFS;
    int err = buf_make_room(b, min);
    if (err != 0)
        return err;
    *ptr = b->_data + b->_off + b->_len;
    *avail = buf_tail_room(b);
    return 0;
}

void veil_buf_commit(struct veil_buf *b, size_t n)
{
    VEIL_BUG_ON(n > buf_tail_room(b));
    b->_len += n;
}

void veil_buf_consume(struct veil_buf *b, size_t n)
{
    VEIL_BUG_ON(n > b->_len);
    b->_off += n;
    b->_len -= n;
    if (b->_len == 0) {
        b->_off = 0;
        /* A drained buffer keeps no large block: an idle connection that
         * once carried a big message must not hold its memory for ever. */
        if (b->_cap > VEIL_BUF_KEEP_MAX) {
            veil_free(b->_data);
            b->_data = NULL;
            b->_cap = 0;
        }
    }
}

void veil_buf_reset(struct veil_buf *b)
{
    b->_off = 0;
    b->_len = 0;
}

void veil_buf_trim(struct veil_buf *b)
{
    if (b->_len == 0 && b->_data != NULL)
        veil_buf_free(b);
}

int veil_buf_append(struct veil_buf *b, const void *p, size_t n)
{
    char *dst;
    size_t avail;
    if (n == 0)
        return 0;
    int err = veil_buf_reserve(b, n, &dst, &avail);
    if (err != 0)
        return err;
    memcpy(dst, p, n);
    veil_buf_commit(b, n);
    return 0;
}

ssize_t veil_buf_read_fd(struct veil_buf *b, int fd)
{
    size_t want = veil_buf_space(b);
    if (want == 0)
        return -ENOBUFS;
    if (want > VEIL_BUF_READ_MIN)
        want = VEIL_BUF_READ_MIN;
    char *dst;
    size_t avail;
    int err = veil_buf_reserve(b, want, &dst, &avail);
    if (err != 0)
        return err;
    ssize_t n;
    do
        n = read(fd, dst, avail);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    veil_buf_commit(b, (size_t)n);
    return n;
}

ssize_t veil_buf_write_fd(struct veil_buf *b, int fd)
{
    if (b->_len == 0)
        return 0;
    ssize_t n;
    do
        n = write(fd, b->_data + b->_off, b->_len);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    veil_buf_consume(b, (size_t)n);
    return n;
}
