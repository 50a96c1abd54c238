/* The TCP end; see pump.h. */
#include "l4/pump.h"

#include "core/alloc.h"
#include "core/container.h"
#include "core/loop.h"
#include "core/sock.h"

#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

struct l4_tcp {
    struct veil_l4_end end;
    struct veil_io io;
    struct veil_defer free_d;
    int fd;
    int err;       /* -errno seen on the socket (SO_ERROR), returned by read and write */
    bool hup;      /* both directions are down: io stopped, reads drain what is left */
    bool rd_empty; /* a read came back short: nothing to read until the io fires */
    bool wr_full;  /* a write was taken in part: no room until the io fires */
    uint32_t want; /* VEIL_L4_* */
};

static uint32_t io_events(const struct l4_tcp *t)
{
    return ((t->want & VEIL_L4_READ) ? VEIL_IO_READ : 0) |
           ((t->want & VEIL_L4_WRITE) ? VEIL_IO_WRITE : 0);
}

static void tcp_io(struct veil_io *io, uint32_t events)
{
    struct l4_tcp *t = VEIL_CONTAINER_OF(io, struct l4_tcp, io);
    if (events & VEIL_IO_ERROR) {
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        if (getsockopt(t->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr != 0)
            t->err = -soerr;
        /* Error and hang-up are reported whatever we ask for: stop watching so
         * that a user who wants nothing now is not called in a loop. */
        t->hup = true;
        t->rd_empty = t->wr_full = false;
        veil_io_stop(&t->io);
        veil_l4_end_notify(&t->end, VEIL_L4_READ | VEIL_L4_WRITE);
        return;
    }
    /* Level-triggered: the io fires while the socket is readable (writable)
     * and we watch it, so the notes below are forgotten only here. */
    if (events & VEIL_IO_READ)
        t->rd_empty = false;
    if (events & VEIL_IO_WRITE)
        t->wr_full = false;
    uint32_t ev = ((events & VEIL_IO_READ) ? VEIL_L4_READ : 0) |
                  ((events & VEIL_IO_WRITE) ? VEIL_L4_WRITE : 0);
    if (ev != 0)
        veil_l4_end_notify(&t->end, ev);
}

static ssize_t tcp_read(struct veil_l4_end *e, void *buf, size_t n)
{
    struct l4_tcp *t = VEIL_CONTAINER_OF(e, struct l4_tcp, end);
    if (t->err != 0)
        return t->err;
    if (t->rd_empty)
        return -EAGAIN; /* the last read found the socket drained */
    for (;;) {
        ssize_t r = recv(t->fd, buf, n, 0);
        if (r > 0 && (size_t)r < n && !t->hup) /* after hup the io is stopped */
            t->rd_empty = true;
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno == EWOULDBLOCK) {
            t->rd_empty = !t->hup;
            return -EAGAIN;
        }
        t->err = -errno;
        return t->err;
    }
}

static ssize_t tcp_write(struct veil_l4_end *e, const void *buf, size_t n)
{
    struct l4_tcp *t = VEIL_CONTAINER_OF(e, struct l4_tcp, end);
    if (t->err != 0)
        return t->err;
    if (t->wr_full)
        return -EAGAIN; /* the last write filled the socket */
    for (;;) {
        ssize_t r = send(t->fd, buf, n, MSG_NOSIGNAL);
        if (r > 0 && (size_t)r < n && !t->hup)
            t->wr_full = true;
        if (r >= 0)
            return r;
        if (errno == EINTR)
            continue;
        if (errno == EWOULDBLOCK) {
            if (t->hup)
                return -EPIPE;
            t->wr_full = true;
            return -EAGAIN;
        }
        t->err = -errno;
        return t->err;
    }
}

static int tcp_shutdown_write(struct veil_l4_end *e)
{
    struct l4_tcp *t = VEIL_CONTAINER_OF(e, struct l4_tcp, end);
    if (t->err != 0)
        return t->err;
    if (shutdown(t->fd, SHUT_WR) != 0 && errno != ENOTCONN)
        return -errno;
    return 0;
}

static void tcp_set_interest(struct veil_l4_end *e, uint32_t events)
{
    struct l4_tcp *t = VEIL_CONTAINER_OF(e, struct l4_tcp, end);
    if (t->want == events)
        return;
    t->want = events;
    if (veil_io_is_active(&t->io) && veil_io_modify(&t->io, io_events(t)) != 0 && t->err == 0)
        t->err = -EIO;
}

static void tcp_free(struct veil_defer *d)
{
    veil_free(VEIL_CONTAINER_OF(d, struct l4_tcp, free_d));
}

static void tcp_close(struct veil_l4_end *e, bool abort)
{
    struct l4_tcp *t = VEIL_CONTAINER_OF(e, struct l4_tcp, end);
    struct veil_loop *loop = veil_io_loop(&t->io);
    veil_io_stop(&t->io);
    if (abort) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        setsockopt(t->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    close(t->fd);
    t->fd = -1;
    t->end._notify = NULL;
    veil_loop_defer(loop, &t->free_d, tcp_free);
}

static const struct veil_l4_end_ops TCP_OPS = {
    .name = "tcp",
    .read = tcp_read,
    .write = tcp_write,
    .shutdown_write = tcp_shutdown_write,
    .set_interest = tcp_set_interest,
    .close = tcp_close,
};

struct veil_l4_end *veil_l4_tcp_new(struct veil_loop *loop, int fd)
{
    struct l4_tcp *t = veil_calloc(1, sizeof(*t));
    if (t == NULL) {
        close(fd);
        errno = ENOMEM;
        return NULL;
    }
    t->end.ops = &TCP_OPS;
    t->fd = fd;
    veil_sock_nodelay(fd);
    int rc = veil_io_start(loop, &t->io, fd, 0, tcp_io);
    if (rc != 0) {
        close(fd);
        veil_free(t);
        errno = -rc;
        return NULL;
    }
    return &t->end;
}

int veil_l4_tcp_fd(const struct veil_l4_end *e)
{
    return VEIL_CONTAINER_OF(e, const struct l4_tcp, end)->fd;
}
