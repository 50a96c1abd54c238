/*
 * bench/l4: the load generator and echo server of bench/l4/run (see
 * bench/l4/RESULTS.md). Plain TCP, no veil code: the same binary measures
 * direct TCP, the mesh and stunnel.
 *
 *   rr_bench serve [--port 7000]
 *       epoll echo server on 0.0.0.0:PORT (any number of connections).
 *   rr_bench rr --to IP:PORT [--rate 1000] [--seconds 10] [--size 1024] [--warmup 1]
 *       one kept connection, TCP_NODELAY; a request of SIZE bytes is sent at
 *       each tick of a fixed schedule (RATE per second; a late request goes
 *       at once, the schedule is not shifted), the whole echo is read, and
 *       the time from the write to the last byte is recorded. Prints
 *       "rr n=N rate=R p50_us=.. p90_us=.. p99_us=.. p999_us=.. max_us=.. late=L
 *       over_10ms=S" (late: requests sent after their tick).
 *   rr_bench cps --to IP:PORT [--seconds 5] [--workers 4] [--size 1024]
 *       each worker: connect, write SIZE, read SIZE, close, as fast as it
 *       can. Prints "cps n=N errors=E seconds=S cps=C".
 *   rr_bench hold --to IP:PORT [--conns 10000] [--seconds 0]
 *       opens CONNS connections, one byte each way on every one (so the
 *       tunnel is really up), prints "held N" and keeps them idle until
 *       SIGTERM/SIGINT (or SECONDS).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char *opt_to;
static int opt_port = 7000, opt_rate = 1000, opt_seconds = -1, opt_size = 1024;
static int opt_warmup = 1, opt_workers = 4, opt_conns = 10000;
static struct sockaddr_in dst;
static volatile sig_atomic_t stop;

static void die(const char *what)
{
    fprintf(stderr, "rr_bench: %s: %s\n", what, strerror(errno));
    exit(1);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void parse_to(void)
{
    char host[64];
    int port;
    if (opt_to == NULL || sscanf(opt_to, "%63[^:]:%d", host, &port) != 2 || port <= 0 ||
        port > 65535 || inet_pton(AF_INET, host, &dst.sin_addr) != 1) {
        fprintf(stderr, "rr_bench: --to IPv4:PORT is needed\n");
        exit(2);
    }
    dst.sin_family = AF_INET;
    dst.sin_port = htons((uint16_t)port);
}

static void nodelay(int fd)
{
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    nodelay(fd);
    if (connect(fd, (struct sockaddr *)&dst, sizeof(dst)) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_all(int fd, char *p, size_t n)
{
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* ---- serve ---- */

static int serve(void)
{
    signal(SIGPIPE, SIG_IGN);
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0)
        die("socket");
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt_port)};
    if (bind(ls, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(ls, 4096) != 0)
        die("bind/listen");
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = ls};
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev) != 0)
        die("epoll");
    fprintf(stderr, "rr_bench: echo on :%d\n", opt_port);
    static char buf[65536];
    struct epoll_event evs[256];
    while (!stop) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            die("epoll_wait");
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int c;
                while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    nodelay(c);
                    struct epoll_event ce = {.events = EPOLLIN, .data.fd = c};
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &ce) != 0)
                        close(c);
                }
                continue;
            }
            /* Echo what is there. A write that would block is finished
             * blocking: requests here are small, and the client reads. */
            ssize_t r = read(fd, buf, sizeof(buf));
            if (r < 0 && errno == EAGAIN)
                continue;
            if (r <= 0) {
                close(fd);
                continue;
            }
            size_t off = 0;
            while (off < (size_t)r) {
                ssize_t w = write(fd, buf + off, (size_t)r - off);
                if (w < 0 && errno == EAGAIN) {
                    struct timespec ts = {0, 100000};
                    nanosleep(&ts, NULL);
                    continue;
                }
                if (w <= 0)
                    break;
                off += (size_t)w;
            }
            if (off < (size_t)r)
                close(fd);
        }
    }
    return 0;
}

/* ---- rr ---- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t pct(const uint64_t *v, size_t n, double p)
{
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

static void sleep_until(uint64_t t)
{
    struct timespec ts = {(time_t)(t / 1000000000ull), (long)(t % 1000000000ull)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static int rr(void)
{
    if (opt_seconds < 0)
        opt_seconds = 10;
    int fd = dial();
    if (fd < 0)
        die("connect");
    char *req = malloc((size_t)opt_size), *resp = malloc((size_t)opt_size);
    if (req == NULL || resp == NULL)
        die("malloc");
    memset(req, 'r', (size_t)opt_size);
    size_t total = (size_t)opt_rate * (size_t)(opt_seconds + opt_warmup);
    size_t skip = (size_t)opt_rate * (size_t)opt_warmup;
    uint64_t *lat = malloc(total * sizeof(*lat));
    if (lat == NULL)
        die("malloc");
    uint64_t period = 1000000000ull / (uint64_t)opt_rate, t0 = now_ns() + period;
    size_t late = 0, n = 0;
    for (size_t i = 0; i < total; i++) {
        uint64_t due = t0 + i * period;
        if (now_ns() < due)
            sleep_until(due);
        else if (i >= skip)
            late++;
        uint64_t s = now_ns();
        if (write_all(fd, req, (size_t)opt_size) != 0 || read_all(fd, resp, (size_t)opt_size) != 0)
            die("request");
        if (i >= skip)
            lat[n++] = now_ns() - s;
    }
    uint64_t elapsed = now_ns() - (t0 + skip * period);
    close(fd);
    qsort(lat, n, sizeof(*lat), cmp_u64);
    size_t slow = 0; /* over 10 ms: a 40 ms delayed ACK shows here */
    for (size_t i = 0; i < n; i++)
        slow += lat[i] > 10000000ull;
    printf("rr n=%zu rate=%.0f p50_us=%.1f p90_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f "
           "late=%zu over_10ms=%zu\n",
           n, (double)n * 1e9 / (double)elapsed, (double)pct(lat, n, 0.50) / 1e3,
           (double)pct(lat, n, 0.90) / 1e3, (double)pct(lat, n, 0.99) / 1e3,
           (double)pct(lat, n, 0.999) / 1e3, (double)lat[n - 1] / 1e3, late, slow);
    free(lat);
    free(req);
    free(resp);
    return 0;
}

/* ---- cps ---- */

static atomic_ullong cps_done, cps_err;
static atomic_bool cps_stop;

static void *cps_worker(void *arg)
{
    (void)arg;
    char *req = malloc((size_t)opt_size), *resp = malloc((size_t)opt_size);
    if (req == NULL || resp == NULL)
        return NULL;
    memset(req, 'c', (size_t)opt_size);
    while (!atomic_load(&cps_stop)) {
        int fd = dial();
        if (fd < 0) {
            atomic_fetch_add(&cps_err, 1);
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
            continue;
        }
        if (write_all(fd, req, (size_t)opt_size) != 0 || read_all(fd, resp, (size_t)opt_size) != 0)
            atomic_fetch_add(&cps_err, 1);
        else
            atomic_fetch_add(&cps_done, 1);
        close(fd);
    }
    free(req);
    free(resp);
    return NULL;
}

static int cps(void)
{
    if (opt_seconds < 0)
        opt_seconds = 5;
    pthread_t th[64];
    if (opt_workers < 1 || opt_workers > 64) {
        fprintf(stderr, "rr_bench: --workers 1..64\n");
        return 2;
    }
    uint64_t t0 = now_ns();
    for (int i = 0; i < opt_workers; i++)
        if (pthread_create(&th[i], NULL, cps_worker, NULL) != 0)
            die("pthread_create");
    sleep_until(t0 + (uint64_t)opt_seconds * 1000000000ull);
    unsigned long long done = atomic_load(&cps_done), err = atomic_load(&cps_err);
    double secs = (double)(now_ns() - t0) / 1e9;
    atomic_store(&cps_stop, true);
    for (int i = 0; i < opt_workers; i++)
        pthread_join(th[i], NULL);
    printf("cps n=%llu errors=%llu seconds=%.2f cps=%.0f\n", done, err, secs, (double)done / secs);
    return 0;
}

/* ---- hold ---- */

static int hold(void)
{
    int *fds = calloc((size_t)opt_conns, sizeof(int));
    if (fds == NULL)
        die("calloc");
    int held = 0;
    for (int i = 0; i < opt_conns && !stop; i++) {
        int fd = dial();
        char c = 'h';
        if (fd < 0) {
            fprintf(stderr, "rr_bench: connection %d: %s\n", i, strerror(errno));
            break;
        }
        if (write_all(fd, &c, 1) != 0 || read_all(fd, &c, 1) != 0) {
            fprintf(stderr, "rr_bench: connection %d: no echo\n", i);
            close(fd);
            break;
        }
        fds[held++] = fd;
    }
    printf("held %d\n", held);
    fflush(stdout);
    uint64_t end = opt_seconds > 0 ? now_ns() + (uint64_t)opt_seconds * 1000000000ull : 0;
    while (!stop && (end == 0 || now_ns() < end))
        pause();
    for (int i = 0; i < held; i++)
        close(fds[i]);
    free(fds);
    return held == opt_conns ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: rr_bench serve|rr|cps|hold [options] (see the source)\n");
        return 2;
    }
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int *ip = strcmp(o, "--port") == 0      ? &opt_port
                  : strcmp(o, "--rate") == 0    ? &opt_rate
                  : strcmp(o, "--seconds") == 0 ? &opt_seconds
                  : strcmp(o, "--size") == 0    ? &opt_size
                  : strcmp(o, "--warmup") == 0  ? &opt_warmup
                  : strcmp(o, "--workers") == 0 ? &opt_workers
                  : strcmp(o, "--conns") == 0   ? &opt_conns
                                                : NULL;
        if (v == NULL || (ip == NULL && strcmp(o, "--to") != 0)) {
            fprintf(stderr, "rr_bench: bad argument '%s'\n", o);
            return 2;
        }
        if (ip != NULL)
            *ip = atoi(v);
        else
            opt_to = v;
        i++;
    }
    if (opt_size < 1 || opt_rate < 1 || opt_conns < 1 || opt_warmup < 0) {
        fprintf(stderr, "rr_bench: sizes, rates and counts must be positive\n");
        return 2;
    }
    raise_nofile();
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    const char *cmd = argv[1];
    if (strcmp(cmd, "serve") == 0)
        return serve();
    parse_to();
    if (strcmp(cmd, "rr") == 0)
        return rr();
    if (strcmp(cmd, "cps") == 0)
        return cps();
    if (strcmp(cmd, "hold") == 0)
        return hold();
    fprintf(stderr, "rr_bench: unknown command '%s'\n", cmd);
    return 2;
}
