/*
 * src/capture against the real kernel: two network namespaces joined by a
 * veth pair, POD (198.18.250.2) with the capture installed and PEER
 * (198.18.250.1). Needs root; skips otherwise. Everything made here is
 * deleted in the group teardown (and at exit, should a test abort).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "capture/capture.h"
#include "capture/netns.h"

#define POD_IP  "198.18.250.2"
#define PEER_IP "198.18.250.1"

static char pod_ns[64], peer_ns[64], veth[16];
static int have_netns;
static int pod_fd = -1, peer_fd = -1;
static char out[16384];

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return system(cmd);
}

/* Runs a shell command and keeps its stdout in `out`. */
static int capture_out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int capture_out(const char *fmt, ...)
{
    char cmd[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    return pclose(p);
}

static void destroy(void)
{
    if (pod_fd >= 0)
        close(pod_fd);
    if (peer_fd >= 0)
        close(peer_fd);
    pod_fd = peer_fd = -1;
    if (pod_ns[0] != '\0') {
        sh("ip netns del %s 2>/dev/null", pod_ns);
        sh("ip netns del %s 2>/dev/null", peer_ns);
    }
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(pod_ns, sizeof(pod_ns), "veil-ct-pod-%d", (int)getpid());
    snprintf(peer_ns, sizeof(peer_ns), "veil-ct-peer-%d", (int)getpid());
    snprintf(veth, sizeof(veth), "vct%d", (int)getpid() % 100000);
    if (geteuid() != 0 || access("/proc/thread-self/ns/net", R_OK) != 0)
        return 0;
    atexit(destroy);
    if (sh("ip netns add %s && ip netns add %s", pod_ns, peer_ns) != 0 ||
        sh("ip link add %sa netns %s type veth peer name %sb netns %s", veth, pod_ns, veth,
           peer_ns) != 0 ||
        sh("ip -n %s addr add " POD_IP "/24 dev %sa && ip -n %s link set %sa up && "
           "ip -n %s link set lo up",
           pod_ns, veth, pod_ns, veth, pod_ns) != 0 ||
        sh("ip -n %s addr add " PEER_IP "/24 dev %sb && ip -n %s link set %sb up && "
           "ip -n %s link set lo up",
           peer_ns, veth, peer_ns, veth, peer_ns) != 0) {
        destroy();
        return 0;
    }
    pod_fd = veil_netns_open(pod_ns);
    peer_fd = veil_netns_open(peer_ns);
    have_netns = pod_fd >= 0 && peer_fd >= 0;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    destroy();
    return 0;
}

#define NEED_NETNS()                                                                               \
    do {                                                                                           \
        if (!have_netns)                                                                           \
            skip();                                                                                \
    } while (0)

static struct sockaddr_in sin4(const char *ip, int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    inet_pton(AF_INET, ip, &a.sin_addr);
    return a;
}

static int wait_fd(int fd, short ev)
{
    struct pollfd p = {.fd = fd, .events = ev};
    return poll(&p, 1, 3000) == 1 ? 0 : -1;
}

static int listener(int ns, int type, const char *ip, int port)
{
    int fd = veil_netns_socket(ns, AF_INET, type, 0);
    assert_true(fd >= 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = sin4(ip, port);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    if (type == SOCK_STREAM)
        assert_int_equal(listen(fd, 16), 0);
    return fd;
}

static void start_connect(int fd, const char *ip, int port)
{
    struct sockaddr_in a = sin4(ip, port);
    int rc = connect(fd, (struct sockaddr *)&a, sizeof(a));
    assert_true(rc == 0 || errno == EINPROGRESS);
}

static int accept_wait(int lfd, struct sockaddr_in *peer)
{
    assert_int_equal(wait_fd(lfd, POLLIN), 0);
    socklen_t len = sizeof(*peer);
    int fd = accept4(lfd, (struct sockaddr *)peer, &len, SOCK_CLOEXEC);
    assert_true(fd >= 0);
    return fd;
}

static void send_str(int fd, const char *s)
{
    assert_int_equal(wait_fd(fd, POLLOUT), 0);
    assert_int_equal(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
}

static void expect_str(int fd, const char *s)
{
    char buf[64] = {0};
    assert_int_equal(wait_fd(fd, POLLIN), 0);
    assert_int_equal(recv(fd, buf, sizeof(buf) - 1, 0), (ssize_t)strlen(s));
    assert_string_equal(buf, s);
}

static const char *ip_of(const struct sockaddr_in *a, char *buf)
{
    return inet_ntop(AF_INET, &a->sin_addr, buf, INET_ADDRSTRLEN);
}

static void install(void)
{
    char err[512];
    int rc = veil_capture_install(pod_fd, NULL, err, sizeof(err));
    if (rc != 0)
        fail_msg("install: %d %s", rc, err);
}

static void test_ruleset_text(void **state)
{
    (void)state;
    char buf[4096];
    uint16_t extra[] = {9090, 9091};
    struct veil_capture_opts o = {.no_dns = 1, .exclude_inbound = extra, .n_exclude_inbound = 2};
    assert_true(veil_capture_ruleset(&o, buf, sizeof(buf)) > 0);
    assert_non_null(strstr(buf, "15021, 9090, 9091 } return"));
    assert_null(strstr(buf, "dport 53"));
    assert_int_equal(veil_capture_ruleset(NULL, buf, 100), -E2BIG);
    o.n_exclude_inbound = 33;
    assert_int_equal(veil_capture_ruleset(&o, buf, sizeof(buf)), -EINVAL);
    assert_true(veil_capture_ruleset(NULL, buf, sizeof(buf)) > 0);
    assert_non_null(strstr(buf, "udp dport 53 redirect to :15053"));
}

static void test_netns_open_errors(void **state)
{
    (void)state;
    assert_int_equal(veil_netns_open(""), -EINVAL);
    assert_int_equal(veil_netns_open("veil-no-such-netns-x"), -ENOENT);
    assert_int_equal(veil_netns_open("/nonexistent/ns"), -ENOENT);
}

static void test_netns_socket(void **state)
{
    (void)state;
    NEED_NETNS();
    struct stat before, after;
    assert_int_equal(stat("/proc/thread-self/ns/net", &before), 0);
    int fd = veil_netns_socket(pod_fd, AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(stat("/proc/thread-self/ns/net", &after), 0);
    assert_true(before.st_ino == after.st_ino);
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_true(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    /* The pod's address exists only in the pod's netns. */
    struct sockaddr_in a = sin4(POD_IP, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    close(fd);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), -1);
    assert_int_equal(errno, EADDRNOTAVAIL);
    close(fd);
}

static void test_install_idempotent(void **state)
{
    (void)state;
    NEED_NETNS();
    install();
    install();
    assert_int_equal(capture_out("ip netns exec %s nft list table inet veil", pod_ns), 0);
    assert_non_null(strstr(out, "meta mark 0x00000539 return"));
    assert_non_null(strstr(out, "meta l4proto tcp redirect to :15001"));
    assert_non_null(strstr(out, "meta l4proto tcp redirect to :15006"));
    assert_non_null(strstr(out, "udp dport 53 redirect to :15053"));
    assert_non_null(strstr(out, "tcp dport 53 redirect to :15053"));
    assert_int_equal(capture_out("ip netns exec %s nft list tables | grep -c veil", pod_ns), 0);
    assert_string_equal(out, "1\n");
    assert_int_equal(capture_out("ip -n %s rule | grep -c 'fwmark 0x111 lookup 100'", pod_ns), 0);
    assert_string_equal(out, "1\n");
    assert_int_equal(capture_out("ip -n %s route show table 100", pod_ns), 0);
    assert_non_null(strstr(out, "local default dev lo"));
}

/* An app's connection to anywhere lands on 15001 with its destination
 * readable; the proxy's own marked socket goes straight out. */
static void test_outbound(void **state)
{
    (void)state;
    NEED_NETNS();
    install();
    int proxy = listener(pod_fd, SOCK_STREAM, "0.0.0.0", VEIL_PORT_OUTBOUND);
    int server = listener(peer_fd, SOCK_STREAM, PEER_IP, 9000);

    int app = veil_netns_socket(pod_fd, AF_INET, SOCK_STREAM, 0);
    start_connect(app, PEER_IP, 9000);
    struct sockaddr_in caller;
    int acc = accept_wait(proxy, &caller);
    struct sockaddr_storage od;
    assert_int_equal(veil_capture_original_dst(acc, &od), 0);
    char ip[INET_ADDRSTRLEN];
    assert_string_equal(ip_of((struct sockaddr_in *)&od, ip), PEER_IP);
    assert_int_equal(ntohs(((struct sockaddr_in *)&od)->sin_port), 9000);

    /* The proxy's upstream, marked: reaches the real server. */
    int up = veil_netns_socket(pod_fd, AF_INET, SOCK_STREAM, 0);
    assert_int_equal(veil_capture_mark(up), 0);
    start_connect(up, PEER_IP, 9000);
    struct sockaddr_in from;
    int srv = accept_wait(server, &from);
    assert_string_equal(ip_of(&from, ip), POD_IP);
    send_str(srv, "hello");
    expect_str(up, "hello");

    /* A socket that was not redirected has no original destination. */
    assert_true(veil_capture_original_dst(srv, &od) < 0);
    int fds[] = {proxy, server, app, acc, up, srv};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        close(fds[i]);
}

static void test_dns(void **state)
{
    (void)state;
    NEED_NETNS();
    install();
    int dns = listener(pod_fd, SOCK_DGRAM, "0.0.0.0", VEIL_PORT_DNS);
    int app = veil_netns_socket(pod_fd, AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = sin4(PEER_IP, 53);
    assert_int_equal(sendto(app, "q", 1, 0, (struct sockaddr *)&to, sizeof(to)), 1);
    assert_int_equal(wait_fd(dns, POLLIN), 0);
    char c;
    assert_int_equal(recv(dns, &c, 1, 0), 1);
    close(dns);
    close(app);
}

/* NOTES-netns.md "Inbound with the caller's address kept", end to end. */
static void test_inbound_transparent(void **state)
{
    (void)state;
    NEED_NETNS();
    install();
    int app_l = listener(pod_fd, SOCK_STREAM, "0.0.0.0", 8080);
    int proxy = listener(pod_fd, SOCK_STREAM, "0.0.0.0", VEIL_PORT_INBOUND);
    int client = veil_netns_socket(peer_fd, AF_INET, SOCK_STREAM, 0);
    start_connect(client, POD_IP, 8080);

    struct sockaddr_in caller, seen;
    int down = accept_wait(proxy, &caller);
    char ip[INET_ADDRSTRLEN];
    assert_string_equal(ip_of(&caller, ip), PEER_IP);
    struct sockaddr_storage od;
    assert_int_equal(veil_capture_original_dst(down, &od), 0);
    assert_string_equal(ip_of((struct sockaddr_in *)&od, ip), POD_IP);
    assert_int_equal(ntohs(((struct sockaddr_in *)&od)->sin_port), 8080);

    int up = veil_netns_socket(pod_fd, AF_INET, SOCK_STREAM, 0);
    assert_int_equal(veil_capture_transparent_prep(up, (struct sockaddr *)&caller, sizeof(caller)),
                     0);
    assert_int_equal(connect(up, (struct sockaddr *)&od, sizeof(struct sockaddr_in)) == 0 ||
                         errno == EINPROGRESS,
                     1);
    int app = accept_wait(app_l, &seen);
    assert_string_equal(ip_of(&seen, ip), PEER_IP); /* the caller's address, not the proxy's */

    /* Both directions through the proxy. */
    send_str(client, "ping");
    expect_str(down, "ping");
    send_str(up, "ping");
    expect_str(app, "ping");
    send_str(app, "pong"); /* routed back to the proxy by table 100 */
    expect_str(up, "pong");
    send_str(down, "pong");
    expect_str(client, "pong");
    int fds[] = {app_l, proxy, client, down, up, app};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        close(fds[i]);
}

static void test_remove(void **state)
{
    (void)state;
    NEED_NETNS();
    char err[512];
    install();
    assert_int_equal(veil_capture_remove(pod_fd, err, sizeof(err)), 0);
    assert_int_equal(veil_capture_remove(pod_fd, err, sizeof(err)), 0); /* idempotent */
    assert_int_not_equal(
        capture_out("ip netns exec %s nft list table inet veil 2>/dev/null", pod_ns), 0);
    assert_int_equal(capture_out("ip -n %s rule | grep -c 'fwmark 0x111' || true", pod_ns), 0);
    assert_string_equal(out, "0\n");
    assert_int_equal(capture_out("ip -n %s route show table 100 2>/dev/null", pod_ns), 0);
    assert_string_equal(out, "");
}

static void test_bad_netns_fd(void **state)
{
    (void)state;
    char err[256];
    int fd = open("/dev/null", O_RDONLY);
    assert_true(veil_capture_install(fd, NULL, err, sizeof(err)) < 0);
    assert_non_null(strstr(err, "network namespace"));
    assert_true(veil_netns_socket(fd, AF_INET, SOCK_STREAM, 0) < 0);
    close(fd);
    assert_int_equal(veil_capture_transparent_prep(0, NULL, 0), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ruleset_text),
        cmocka_unit_test(test_netns_open_errors),
        cmocka_unit_test(test_netns_socket),
        cmocka_unit_test(test_install_idempotent),
        cmocka_unit_test(test_outbound),
        cmocka_unit_test(test_dns),
        cmocka_unit_test(test_inbound_transparent),
        cmocka_unit_test(test_remove),
        cmocka_unit_test(test_bad_netns_fd),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
