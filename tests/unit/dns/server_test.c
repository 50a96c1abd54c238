#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/loop.h"
#include "dns/dns.h"

static int resolve(void *arg, const char *fqdn, struct in_addr *out)
{
    (void)arg;
    if (strcmp(fqdn, "web.default.svc.cluster.local") != 0)
        return -ENOENT;
    return inet_pton(AF_INET, "198.19.0.1", out) == 1 ? 0 : -ENOENT;
}

static const struct veil_dns_lookup lookup = {.resolve = resolve};

struct fixture {
    struct veil_loop *loop;
    struct veil_dns_server *srv;
    pthread_t thread;
    struct sockaddr_in addr_udp, addr_tcp;
};

static int bound(int type, struct sockaddr_in *sa)
{
    int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    socklen_t l = sizeof(*sa);
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)sa, sizeof(*sa)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)sa, &l), 0);
    if (type == SOCK_STREAM)
        assert_int_equal(listen(fd, 128), 0);
    return fd;
}

static void *run(void *arg)
{
    struct fixture *f = arg;
    veil_loop_run(f->loop);
    return NULL;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    f->loop = veil_loop_new("dns");
    assert_non_null(f->loop);
    int u = bound(SOCK_DGRAM, &f->addr_udp), t = bound(SOCK_STREAM, &f->addr_tcp);
    f->srv = veil_dns_server_new(f->loop, u, t, &lookup);
    assert_non_null(f->srv);
    *state = f;
    return 0;
}

static void start(struct fixture *f)
{
    assert_int_equal(pthread_create(&f->thread, NULL, run, f), 0);
}

/* Stops the loop thread and reads the counters on this thread. */
static void stop(struct fixture *f, struct veil_dns_stats *st)
{
    veil_loop_stop(f->loop);
    pthread_join(f->thread, NULL);
    if (st != NULL)
        veil_dns_server_stats(f->srv, st);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    veil_dns_server_free(f->srv);
    veil_loop_free(f->loop);
    free(f);
    return 0;
}

static void recv_timeout(int fd)
{
    struct timeval tv = {.tv_sec = 5};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
}

static enum veil_dns_rcode udp_ask(int fd, const struct sockaddr_in *to, uint16_t id,
                                   const char *name, uint16_t qtype, struct veil_dns_msg *m)
{
    static uint8_t r[512]; /* m->an[].rdata points into it */
    uint8_t q[512];
    ssize_t ql = veil_dns_build_query(q, sizeof(q), id, name, qtype);
    assert_int_equal(sendto(fd, q, (size_t)ql, 0, (const struct sockaddr *)to, sizeof(*to)), ql);
    ssize_t n = recv(fd, r, sizeof(r), 0);
    assert_true(n > 0);
    assert_int_equal(veil_dns_parse(r, (size_t)n, m), 0);
    assert_int_equal(m->hdr.id, id);
    return (enum veil_dns_rcode)VEIL_DNS_RCODE(m->hdr.flags);
}

static void test_udp(void **state)
{
    struct fixture *f = *state;
    struct veil_dns_msg m;
    struct veil_dns_stats st;
    start(f);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    recv_timeout(fd);
    assert_int_equal(
        udp_ask(fd, &f->addr_udp, 1, "web.default.svc.cluster.local", VEIL_DNS_T_A, &m),
        VEIL_DNS_NOERROR);
    assert_int_equal(m.nan, 1);
    assert_memory_equal(m.an[0].rdata, "\xc6\x13\x00\x01", 4);
    assert_int_equal(udp_ask(fd, &f->addr_udp, 2, "x.default.svc.cluster.local", VEIL_DNS_T_A, &m),
                     VEIL_DNS_NXDOMAIN);
    assert_int_equal(udp_ask(fd, &f->addr_udp, 3, "example.com", VEIL_DNS_T_A, &m),
                     VEIL_DNS_REFUSED);
    /* garbage: a 3-byte datagram is dropped, a header-only one gets FORMERR;
     * the server goes on */
    assert_int_equal(sendto(fd, "abc", 3, 0, (struct sockaddr *)&f->addr_udp, sizeof(f->addr_udp)),
                     3);
    static const uint8_t hdr_only[12] = {0, 9, 0, 0, 0, 1};
    assert_int_equal(
        sendto(fd, hdr_only, 12, 0, (struct sockaddr *)&f->addr_udp, sizeof(f->addr_udp)), 12);
    uint8_t r[512];
    ssize_t n = recv(fd, r, sizeof(r), 0);
    assert_int_equal(n, 12);
    assert_int_equal(r[1], 9);
    assert_int_equal(r[3] & 0xf, VEIL_DNS_FORMERR);
    assert_int_equal(
        udp_ask(fd, &f->addr_udp, 4, "web.default.svc.cluster.local", VEIL_DNS_T_AAAA, &m),
        VEIL_DNS_NOERROR);
    assert_int_equal(m.nan, 0);
    close(fd);
    stop(f, &st);
    assert_int_equal(st.queries, 6);
    assert_int_equal(st.answered, 2);
    assert_int_equal(st.nxdomain, 1);
    assert_int_equal(st.refused, 1);
    assert_int_equal(st.malformed, 2);
}

static int tcp_connect(const struct sockaddr_in *to)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, (const struct sockaddr *)to, sizeof(*to)), 0);
    recv_timeout(fd);
    return fd;
}

static void read_full(int fd, uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t r = recv(fd, p, n, 0);
        assert_true(r > 0);
        p += r;
        n -= (size_t)r;
    }
}

static enum veil_dns_rcode tcp_read_answer(int fd, uint16_t id, struct veil_dns_msg *m)
{
    static uint8_t r[600]; /* m->an[].rdata points into it */
    uint8_t len[2];
    read_full(fd, len, 2);
    size_t n = ((size_t)len[0] << 8) | len[1];
    assert_true(n <= sizeof(r));
    read_full(fd, r, n);
    assert_int_equal(veil_dns_parse(r, n, m), 0);
    assert_int_equal(m->hdr.id, id);
    return (enum veil_dns_rcode)VEIL_DNS_RCODE(m->hdr.flags);
}

static size_t framed(uint8_t *out, uint16_t id, const char *name, uint16_t qtype)
{
    ssize_t ql = veil_dns_build_query(out + 2, 510, id, name, qtype);
    assert_true(ql > 0);
    out[0] = (uint8_t)(ql >> 8);
    out[1] = (uint8_t)ql;
    return 2 + (size_t)ql;
}

/* The peer closed: recv returns 0 (or a reset). */
static void assert_closed(int fd)
{
    uint8_t b[16];
    ssize_t r = recv(fd, b, sizeof(b), 0);
    assert_true(r == 0 || (r < 0 && errno == ECONNRESET));
}

static void test_tcp(void **state)
{
    struct fixture *f = *state;
    struct veil_dns_msg m;
    struct veil_dns_stats st;
    uint8_t buf[2048];
    start(f);
    int fd = tcp_connect(&f->addr_tcp);
    /* two pipelined queries in one write, the third in single bytes */
    size_t n = framed(buf, 1, "web.default.svc.cluster.local", VEIL_DNS_T_A);
    n += framed(buf + n, 2, "nope.default.svc.cluster.local", VEIL_DNS_T_A);
    assert_int_equal(send(fd, buf, n, MSG_NOSIGNAL), (ssize_t)n);
    assert_int_equal(tcp_read_answer(fd, 1, &m), VEIL_DNS_NOERROR);
    assert_int_equal(m.nan, 1);
    assert_int_equal(tcp_read_answer(fd, 2, &m), VEIL_DNS_NXDOMAIN);
    n = framed(buf, 3, "example.com", VEIL_DNS_T_A);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(send(fd, buf + i, 1, MSG_NOSIGNAL), 1);
        usleep(1000);
    }
    assert_int_equal(tcp_read_answer(fd, 3, &m), VEIL_DNS_REFUSED);
    /* half-close after a query: the answer still comes, then EOF */
    n = framed(buf, 4, "web.default.svc.cluster.local", VEIL_DNS_T_AAAA);
    assert_int_equal(send(fd, buf, n, MSG_NOSIGNAL), (ssize_t)n);
    shutdown(fd, SHUT_WR);
    assert_int_equal(tcp_read_answer(fd, 4, &m), VEIL_DNS_NOERROR);
    assert_closed(fd);
    close(fd);

    /* an oversized length prefix closes the connection */
    fd = tcp_connect(&f->addr_tcp);
    assert_int_equal(send(fd, "\xff\xff", 2, MSG_NOSIGNAL), 2);
    assert_closed(fd);
    close(fd);
    /* a message that must be dropped (shorter than a header) closes it */
    fd = tcp_connect(&f->addr_tcp);
    assert_int_equal(send(fd,
                          "\x00\x03"
                          "abc",
                          5, MSG_NOSIGNAL),
                     5);
    assert_closed(fd);
    close(fd);
    /* a malformed query with a header gets FORMERR and the connection stays */
    fd = tcp_connect(&f->addr_tcp);
    static const uint8_t hdr_only[14] = {0, 12, 0, 7, 0, 0, 0, 2};
    assert_int_equal(send(fd, hdr_only, sizeof(hdr_only), MSG_NOSIGNAL), 14);
    assert_int_equal(tcp_read_answer(fd, 7, &m), VEIL_DNS_FORMERR);
    n = framed(buf, 8, "web.default.svc.cluster.local", VEIL_DNS_T_A);
    assert_int_equal(send(fd, buf, n, MSG_NOSIGNAL), (ssize_t)n);
    assert_int_equal(tcp_read_answer(fd, 8, &m), VEIL_DNS_NOERROR);
    close(fd);
    stop(f, &st);
    assert_int_equal(st.tcp_accepted, 4);
    assert_int_equal(st.queries, 8);
    assert_int_equal(st.answered, 3);
    assert_int_equal(st.nxdomain, 1);
    assert_int_equal(st.refused, 1);
    assert_int_equal(st.malformed, 3);
}

static void test_tcp_limits(void **state)
{
    struct fixture *f = *state;
    struct veil_dns_stats st;
    struct veil_dns_msg m;
    uint8_t buf[600];
    veil_dns_server_set_tcp_limits(f->srv, 2, 100);
    start(f);
    int a = tcp_connect(&f->addr_tcp), b = tcp_connect(&f->addr_tcp);
    size_t n = framed(buf, 1, "web.default.svc.cluster.local", VEIL_DNS_T_A);
    /* both served (so both accepted before the third connects) */
    assert_int_equal(send(a, buf, n, MSG_NOSIGNAL), (ssize_t)n);
    assert_int_equal(tcp_read_answer(a, 1, &m), VEIL_DNS_NOERROR);
    assert_int_equal(send(b, buf, n, MSG_NOSIGNAL), (ssize_t)n);
    assert_int_equal(tcp_read_answer(b, 1, &m), VEIL_DNS_NOERROR);
    /* the third is over the cap: closed at once */
    int c = tcp_connect(&f->addr_tcp);
    assert_closed(c);
    close(c);
    /* idle ones are closed after 100 ms */
    assert_closed(a);
    assert_closed(b);
    close(a);
    close(b);
    stop(f, &st);
    assert_int_equal(st.tcp_accepted, 2);
    assert_int_equal(st.tcp_rejected, 1);
    assert_int_equal(st.tcp_timeouts, 2);
    assert_int_equal(veil_dns_server_tcp_conns(f->srv), 0);
}

/* Connections still open when the server is freed are closed with it. */
static void test_free_with_open_conns(void **state)
{
    struct fixture *f = *state;
    struct veil_dns_msg m;
    uint8_t buf[600];
    start(f);
    int a = tcp_connect(&f->addr_tcp);
    size_t n = framed(buf, 1, "web.default.svc.cluster.local", VEIL_DNS_T_A);
    assert_int_equal(send(a, buf, n, MSG_NOSIGNAL), (ssize_t)n);
    assert_int_equal(tcp_read_answer(a, 1, &m), VEIL_DNS_NOERROR);
    /* a partial message left in its buffer */
    assert_int_equal(send(a, buf, 5, MSG_NOSIGNAL), 5);
    usleep(20000);
    stop(f, NULL);
    assert_int_equal(veil_dns_server_tcp_conns(f->srv), 1);
    veil_dns_server_free(f->srv);
    f->srv = NULL;
    assert_closed(a);
    close(a);
}

static void test_new_failures(void **state)
{
    (void)state;
    struct veil_loop *loop = veil_loop_new("t");
    struct sockaddr_in sa;
    int u = bound(SOCK_DGRAM, &sa);
    struct veil_dns_lookup none = {0};
    assert_null(veil_dns_server_new(loop, u, -1, &none));
    assert_int_equal(errno, EINVAL);
    veil_alloc_fail_after(0);
    assert_null(veil_dns_server_new(loop, u, -1, &lookup));
    veil_alloc_fail_reset();
    assert_int_equal(errno, ENOMEM);
    /* a bad fd: the caller keeps its fds */
    assert_null(veil_dns_server_new(loop, u, 999, &lookup));
    struct veil_dns_server *s = veil_dns_server_new(loop, u, -1, &lookup);
    assert_non_null(s);
    veil_dns_server_free(s); /* closes u */
    assert_int_equal(close(u), -1);
    veil_dns_server_free(NULL);
    veil_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_udp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tcp_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_with_open_conns, setup, teardown),
        cmocka_unit_test(test_new_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
