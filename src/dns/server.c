/* The DNS server: UDP and TCP on one loop; see dns.h. */
#include "dns/dns.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/container.h"
#include "core/log.h"
#include "core/loop.h"

#define BATCH 64 /* datagrams / accepts per wake-up */

struct dns_conn {
    struct veil_dns_server *srv;
    struct dns_conn *prev, *next;
    struct veil_io io;
    struct veil_timer idle;
    struct veil_defer free_d;
    bool eof;
    size_t in_len;
    size_t out_len, out_off;
    uint8_t in[2 + VEIL_DNS_TCP_MSG_MAX];
    uint8_t out[2 + VEIL_DNS_UDP_MAX];
};

struct veil_dns_server {
    struct veil_loop *loop;
    struct veil_dns_lookup lk;
    int udp_fd, tcp_fd;
    struct veil_io udp_io, tcp_io;
    struct dns_conn *conns;
    size_t nconns;
    unsigned max_conns;
    uint64_t idle_ms;
    struct veil_dns_stats st;
};

static void count_rcode(struct veil_dns_server *s, enum veil_dns_rcode rc)
{
    switch (rc) {
    case VEIL_DNS_NOERROR:
        s->st.answered++;
        break;
    case VEIL_DNS_NXDOMAIN:
        s->st.nxdomain++;
        break;
    case VEIL_DNS_FORMERR:
        s->st.malformed++;
        break;
    default:
        s->st.refused++;
        break;
    }
}

/* Answers one message; counts it. Returns the response length or < 0 (drop). */
static ssize_t serve_one(struct veil_dns_server *s, const uint8_t *q, size_t qlen, uint8_t *out,
                         size_t cap)
{
    enum veil_dns_rcode rc;
    s->st.queries++;
    ssize_t n = veil_dns_answer_rcode(q, qlen, out, cap, &s->lk, &rc);
    if (n < 0)
        s->st.malformed++;
    else
        count_rcode(s, rc);
    return n;
}

/* ---- UDP ---- */

static void on_udp(struct veil_io *io, uint32_t events)
{
    struct veil_dns_server *s = VEIL_CONTAINER_OF(io, struct veil_dns_server, udp_io);
    uint8_t q[VEIL_DNS_TCP_MSG_MAX], out[VEIL_DNS_UDP_MAX];
    (void)events;
    for (int i = 0; i < BATCH; i++) {
        struct sockaddr_storage from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(s->udp_fd, q, sizeof(q), 0, (struct sockaddr *)&from, &fl);
        if (n < 0)
            return; /* EAGAIN, or an ICMP error of an earlier send: nothing to do */
        ssize_t r = serve_one(s, q, (size_t)n, out, sizeof(out));
        if (r > 0 &&
            sendto(s->udp_fd, out, (size_t)r, MSG_NOSIGNAL, (struct sockaddr *)&from, fl) != r)
            s->st.send_errors++;
    }
}

/* ---- TCP ---- */

static void conn_free(struct veil_defer *d)
{
    veil_free(VEIL_CONTAINER_OF(d, struct dns_conn, free_d));
}

static void conn_unlink(struct dns_conn *c)
{
    struct veil_dns_server *s = c->srv;
    veil_io_stop(&c->io);
    veil_timer_stop(&c->idle);
    close(veil_io_fd(&c->io));
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    s->nconns--;
}

static void conn_close(struct dns_conn *c)
{
    conn_unlink(c);
    veil_loop_defer(c->srv->loop, &c->free_d, conn_free);
}

/* Sends what is pending. Returns 0 (maybe partly sent) or -1 (closed). */
static int conn_flush(struct dns_conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n =
            send(veil_io_fd(&c->io), c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        if (n <= 0) {
            c->srv->st.send_errors++;
            conn_close(c);
            return -1;
        }
        c->out_off += (size_t)n;
    }
    c->out_len = c->out_off = 0;
    return 0;
}

/* Answers the complete messages in `in` while nothing waits to be sent.
 * Returns 0 or -1 (closed). */
static int conn_process(struct dns_conn *c)
{
    struct veil_dns_server *s = c->srv;
    while (c->out_len == 0 && c->in_len >= 2) {
        size_t mlen = ((size_t)c->in[0] << 8) | c->in[1];
        if (mlen > VEIL_DNS_TCP_MSG_MAX) {
            s->st.queries++;
            s->st.malformed++;
            conn_close(c);
            return -1;
        }
        if (c->in_len < 2 + mlen)
            break;
        ssize_t r = serve_one(s, c->in + 2, mlen, c->out + 2, sizeof(c->out) - 2);
        c->in_len -= 2 + mlen;
        memmove(c->in, c->in + 2 + mlen, c->in_len);
        if (r < 0) {
            conn_close(c);
            return -1;
        }
        c->out[0] = (uint8_t)(r >> 8);
        c->out[1] = (uint8_t)r;
        c->out_len = 2 + (size_t)r;
        c->out_off = 0;
        if (conn_flush(c) < 0)
            return -1;
    }
    if (c->eof && c->out_len == 0) {
        conn_close(c);
        return -1;
    }
    return 0;
}

static void conn_watch(struct dns_conn *c)
{
    uint32_t ev = c->out_len > 0 ? VEIL_IO_WRITE : (c->eof ? 0 : VEIL_IO_READ);
    if (veil_io_modify(&c->io, ev) < 0)
        conn_close(c);
}

static void on_idle(struct veil_timer *t)
{
    struct dns_conn *c = VEIL_CONTAINER_OF(t, struct dns_conn, idle);
    c->srv->st.tcp_timeouts++;
    conn_close(c);
}

static int conn_read(struct dns_conn *c)
{
    while (c->in_len < sizeof(c->in)) {
        ssize_t n = recv(veil_io_fd(&c->io), c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n <= 0) {
            c->eof = true;
            break;
        }
        c->in_len += (size_t)n;
        if (c->in_len >= 2 && c->in_len >= 2 + (((size_t)c->in[0] << 8) | c->in[1]))
            break; /* one complete message is enough to go on */
    }
    return 0;
}

static void on_conn(struct veil_io *io, uint32_t events)
{
    struct dns_conn *c = VEIL_CONTAINER_OF(io, struct dns_conn, io);
    if ((events & (VEIL_IO_WRITE | VEIL_IO_ERROR)) && c->out_len > 0) {
        if (conn_flush(c) < 0)
            return;
        if (c->out_len > 0 && (events & VEIL_IO_ERROR)) {
            /* Hung up (or half-closed) and not reading: epoll would report
             * it every round while we wait; give up on the answer. */
            c->srv->st.send_errors++;
            conn_close(c);
            return;
        }
    }
    if ((events & (VEIL_IO_READ | VEIL_IO_ERROR)) && c->out_len == 0) {
        conn_read(c);
        if (veil_timer_start(c->srv->loop, &c->idle, c->srv->idle_ms, 0, on_idle) < 0) {
            conn_close(c);
            return;
        }
    }
    if (conn_process(c) < 0)
        return;
    conn_watch(c);
}

static void on_accept(struct veil_io *io, uint32_t events)
{
    struct veil_dns_server *s = VEIL_CONTAINER_OF(io, struct veil_dns_server, tcp_io);
    (void)events;
    for (int i = 0; i < BATCH; i++) {
        int fd = accept4(s->tcp_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
                VEIL_WARN("dns", "accept: %s", strerror(errno));
            return;
        }
        struct dns_conn *c = s->nconns < s->max_conns ? veil_malloc(sizeof(*c)) : NULL;
        if (c == NULL) {
            s->st.tcp_rejected++;
            close(fd);
            continue;
        }
        memset(c, 0, offsetof(struct dns_conn, in));
        c->srv = s;
        if (veil_io_start(s->loop, &c->io, fd, VEIL_IO_READ, on_conn) < 0 ||
            veil_timer_start(s->loop, &c->idle, s->idle_ms, 0, on_idle) < 0) {
            veil_io_stop(&c->io);
            veil_free(c);
            s->st.tcp_rejected++;
            close(fd);
            continue;
        }
        c->next = s->conns;
        if (s->conns != NULL)
            s->conns->prev = c;
        s->conns = c;
        s->nconns++;
        s->st.tcp_accepted++;
    }
}

/* ---- server ---- */

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

struct veil_dns_server *veil_dns_server_new(struct veil_loop *loop, int udp_fd, int tcp_fd,
                                            const struct veil_dns_lookup *lk)
{
    if (lk == NULL || lk->resolve == NULL) {
        errno = EINVAL;
        return NULL;
    }
    struct veil_dns_server *s = veil_calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    s->loop = loop;
    s->lk = *lk;
    s->udp_fd = udp_fd;
    s->tcp_fd = tcp_fd;
    s->max_conns = VEIL_DNS_TCP_MAX_CONNS;
    s->idle_ms = VEIL_DNS_TCP_IDLE_MS;
    int rc = 0;
    if (udp_fd >= 0 && ((rc = set_nonblock(udp_fd)) < 0 ||
                        (rc = veil_io_start(loop, &s->udp_io, udp_fd, VEIL_IO_READ, on_udp)) < 0))
        goto fail;
    if (tcp_fd >= 0 &&
        ((rc = set_nonblock(tcp_fd)) < 0 ||
         (rc = veil_io_start(loop, &s->tcp_io, tcp_fd, VEIL_IO_READ, on_accept)) < 0))
        goto fail;
    return s;
fail:
    veil_io_stop(&s->udp_io);
    veil_io_stop(&s->tcp_io);
    veil_free(s);
    errno = -rc;
    return NULL;
}

void veil_dns_server_set_tcp_limits(struct veil_dns_server *s, unsigned max_conns, uint64_t idle_ms)
{
    if (max_conns > 0)
        s->max_conns = max_conns;
    if (idle_ms > 0)
        s->idle_ms = idle_ms;
}

void veil_dns_server_stats(const struct veil_dns_server *s, struct veil_dns_stats *out)
{
    *out = s->st;
}

size_t veil_dns_server_tcp_conns(const struct veil_dns_server *s)
{
    return s->nconns;
}

void veil_dns_server_free(struct veil_dns_server *s)
{
    if (s == NULL)
        return;
    while (s->conns != NULL) {
        struct dns_conn *c = s->conns;
        conn_unlink(c);
        veil_free(c);
    }
    veil_io_stop(&s->udp_io);
    veil_io_stop(&s->tcp_io);
    if (s->udp_fd >= 0)
        close(s->udp_fd);
    if (s->tcp_fd >= 0)
        close(s->tcp_fd);
    veil_free(s);
}
