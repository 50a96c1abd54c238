#include "control/reqsrv.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/container.h"
#include "core/log.h"
#include "core/loop.h"

struct reqconn {
    struct veil_reqsrv *srv;
    struct veil_io io;
    struct veil_timer timer;
    struct veil_defer defer;
    struct veil_buf in;
    char *out;
    size_t out_len, out_off;
    int eof;
    struct reqconn *next, *prev;
};

struct veil_reqsrv {
    struct veil_loop *loop;
    struct veil_io listen;
    struct veil_reqsrv_opts opts;
    struct reqconn *conns;
    uint64_t refused;
};

static void conn_free(struct veil_defer *d)
{
    struct reqconn *c = VEIL_CONTAINER_OF(d, struct reqconn, defer);
    veil_buf_free(&c->in);
    veil_free(c->out);
    veil_free(c);
}

static void conn_close(struct reqconn *c)
{
    if (veil_defer_is_queued(&c->defer))
        return;
    int fd = veil_io_fd(&c->io);
    veil_io_stop(&c->io);
    veil_timer_stop(&c->timer);
    close(fd);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        c->srv->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    veil_loop_defer(c->srv->loop, &c->defer, conn_free);
}

static void conn_refuse(struct reqconn *c, const char *why)
{
    c->srv->refused++;
    VEIL_DEBUG("reqsrv", "request refused: %s", why);
    conn_close(c);
}

static void conn_write(struct reqconn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n =
            send(veil_io_fd(&c->io), c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n <= 0) {
            conn_close(c);
            return;
        }
        c->out_off += (size_t)n;
    }
    conn_close(c);
}

static void conn_respond(struct reqconn *c, size_t req_len)
{
    struct veil_reqsrv *srv = c->srv;
    char *resp = NULL;
    size_t resp_len = 0;
    int rc = srv->opts.handle(srv->opts.ctx, veil_buf_data(&c->in), req_len, &resp, &resp_len);
    if (rc < 0 || resp == NULL) {
        veil_free(resp);
        conn_close(c);
        return;
    }
    c->out = resp;
    c->out_len = resp_len;
    veil_io_modify(&c->io, VEIL_IO_WRITE);
    conn_write(c);
}

static void conn_read(struct reqconn *c)
{
    ssize_t n = veil_buf_read_fd(&c->in, veil_io_fd(&c->io));
    if (n == -EAGAIN)
        return;
    if (n == -ENOBUFS) {
        conn_refuse(c, "request too large");
        return;
    }
    if (n < 0) {
        conn_refuse(c, "read failed");
        return;
    }
    if (n == 0)
        c->eof = 1;
    size_t len = c->srv->opts.complete(veil_buf_data(&c->in), veil_buf_len(&c->in), c->eof);
    if (len > 0)
        conn_respond(c, len);
    else if (c->eof)
        conn_refuse(c, "incomplete request");
}

static void conn_cb(struct veil_io *io, uint32_t events)
{
    struct reqconn *c = VEIL_CONTAINER_OF(io, struct reqconn, io);
    if (c->out != NULL) {
        if (events & (VEIL_IO_WRITE | VEIL_IO_ERROR))
            conn_write(c);
        return;
    }
    if (events & (VEIL_IO_READ | VEIL_IO_ERROR))
        conn_read(c);
}

static void conn_timeout(struct veil_timer *t)
{
    conn_refuse(VEIL_CONTAINER_OF(t, struct reqconn, timer), "timed out");
}

static void accept_cb(struct veil_io *io, uint32_t events)
{
    struct veil_reqsrv *srv = VEIL_CONTAINER_OF(io, struct veil_reqsrv, listen);
    (void)events;
    int fd = accept4(veil_io_fd(io), NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    struct reqconn *c = veil_calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        srv->refused++;
        return;
    }
    c->srv = srv;
    veil_buf_init(&c->in, srv->opts.max_request);
    if (veil_io_start(srv->loop, &c->io, fd, VEIL_IO_READ, conn_cb) != 0 ||
        veil_timer_start(srv->loop, &c->timer, srv->opts.timeout_ms, 0, conn_timeout) != 0) {
        veil_io_stop(&c->io);
        close(fd);
        veil_free(c);
        srv->refused++;
        return;
    }
    c->next = srv->conns;
    if (c->next != NULL)
        c->next->prev = c;
    srv->conns = c;
}

struct veil_reqsrv *veil_reqsrv_new(struct veil_loop *loop, int listen_fd,
                                    const struct veil_reqsrv_opts *opts)
{
    struct veil_reqsrv *srv = veil_calloc(1, sizeof(*srv));
    if (srv == NULL)
        return NULL;
    srv->loop = loop;
    srv->opts = *opts;
    int rc = veil_io_start(loop, &srv->listen, listen_fd, VEIL_IO_READ, accept_cb);
    if (rc != 0) {
        veil_free(srv);
        errno = -rc;
        return NULL;
    }
    return srv;
}

void veil_reqsrv_free(struct veil_reqsrv *srv)
{
    if (srv == NULL)
        return;
    while (srv->conns != NULL)
        conn_close(srv->conns);
    int fd = veil_io_fd(&srv->listen);
    veil_io_stop(&srv->listen);
    close(fd);
    veil_free(srv);
}

uint64_t veil_reqsrv_refused(const struct veil_reqsrv *srv)
{
    return srv->refused;
}

int veil_listen_tcp(const char *addr, uint16_t port, uint16_t *bound_port)
{
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_PASSIVE, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    char portstr[8];
    snprintf(portstr, sizeof(portstr), "%u", port);
    if (getaddrinfo(addr, portstr, &hints, &ai) != 0 || ai == NULL)
        return -EINVAL;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1, rc = 0;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 512) != 0)
        rc = -errno;
    freeaddrinfo(ai);
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (rc == 0 && getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        rc = -errno;
    if (rc != 0) {
        if (fd >= 0)
            close(fd);
        return rc;
    }
    if (bound_port != NULL)
        *bound_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                     : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

int veil_listen_unix(const char *path, unsigned mode)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return -ENAMETOOLONG;
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    unlink(path);
    /* Create the socket with no access for anyone, then open it up to `mode`,
     * so there is no moment at which others could connect. */
    mode_t old = umask(0777);
    int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (rc != 0 || chmod(path, mode) != 0 || listen(fd, 64) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

size_t veil_reqsrv_http_complete(const char *data, size_t len, int eof)
{
    (void)eof;
    const char *end = memmem(data, len, "\r\n\r\n", 4);
    return end != NULL ? (size_t)(end - data) + 4 : 0;
}

int veil_reqsrv_http_reply(int code, const char *reason, const char *type, const char *body,
                           size_t body_len, char **resp, size_t *resp_len)
{
    char head[256];
    int h = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     code, reason, type, body_len);
    *resp = veil_malloc((size_t)h + body_len + 1);
    if (*resp == NULL)
        return -ENOMEM;
    memcpy(*resp, head, (size_t)h);
    if (body_len > 0)
        memcpy(*resp + h, body, body_len);
    *resp_len = (size_t)h + body_len;
    return 0;
}
