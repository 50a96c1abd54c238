/* Processes, files, namespaces: the system side of the local cluster. */
#include "cluster/cluster-int.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "capture/netns.h"
#include "core/alloc.h"
#include "core/file.h"

int cluster__fmt(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, len, fmt, ap);
    va_end(ap);
    return n;
}

static void child_stdio(int in, int out, int errfd)
{
    if (in >= 0)
        dup2(in, 0);
    if (out >= 0)
        dup2(out, 1);
    if (errfd >= 0)
        dup2(errfd, 2);
}

int cluster__run(const char *const argv[], const char *input, char *err, size_t errlen)
{
    int inp[2] = {-1, -1}, errp[2];
    if (pipe2(errp, O_CLOEXEC) != 0 || (input != NULL && pipe2(inp, O_CLOEXEC) != 0)) {
        snprintf(err, errlen, "%s: pipe: %s", argv[0], strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        child_stdio(input != NULL ? inp[0] : null, null, errp[1]);
        execvp(argv[0], (char *const *)argv);
        dprintf(2, "cannot run %s: %s", argv[0], strerror(errno));
        _exit(127);
    }
    close(errp[1]);
    if (input != NULL) {
        close(inp[0]);
        if (pid > 0)
            (void)veil_write_all(inp[1], input, strlen(input));
        close(inp[1]);
    }
    char msg[1024];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof(msg) - 1 && (r = read(errp[0], msg + n, sizeof(msg) - 1 - n)) != 0) {
        if (r < 0 && errno != EINTR)
            break;
        if (r > 0)
            n += (size_t)r;
    }
    close(errp[0]);
    msg[n] = '\0';
    while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
        msg[--n] = '\0';
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) < 0) {
        snprintf(err, errlen, "%s: %s", argv[0], strerror(errno));
        return -1;
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    char cmd[256] = "";
    for (int i = 0; i < 4 && argv[i] != NULL; i++)
        snprintf(cmd + strlen(cmd), sizeof(cmd) - strlen(cmd), "%s%s", i ? " " : "", argv[i]);
    snprintf(err, errlen, "'%s ...' failed: %s", cmd, n > 0 ? msg : "(no message)");
    return -1;
}

int cluster__ip_batch(const char *netns, const char *batch, char *err, size_t errlen)
{
    const char *argv[] = {"ip", "-n", netns, "-batch", "-", NULL};
    if (netns == NULL) {
        argv[1] = "-batch";
        argv[2] = "-";
        argv[3] = NULL;
    }
    return cluster__run(argv, batch, err, errlen);
}

int cluster__spawn(const char *netns, const char *const argv[], const char *log, pid_t *pid,
                   char *err, size_t errlen)
{
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", log, strerror(errno));
        return -1;
    }
    size_t n = 0;
    while (argv[n] != NULL)
        n++;
    const char **full = veil_calloc(n + 5, sizeof(char *));
    if (full == NULL) {
        close(fd);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    full[0] = "ip";
    full[1] = "netns";
    full[2] = "exec";
    full[3] = netns;
    memcpy(full + 4, argv, n * sizeof(char *));
    *pid = fork();
    if (*pid == 0) {
        setsid();
        int null = open("/dev/null", O_RDONLY);
        child_stdio(null, fd, fd);
        execvp("ip", (char *const *)full);
        dprintf(2, "cannot run ip: %s\n", strerror(errno));
        _exit(127);
    }
    int e = errno;
    veil_free(full);
    close(fd);
    if (*pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(e));
        return -1;
    }
    return 0;
}

int cluster__alive(pid_t pid)
{
    if (pid <= 0)
        return 0;
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid)
        return 0;
    return kill(pid, 0) == 0 || errno == EPERM;
}

static int ns_ino(const char *path, struct stat *st)
{
    return stat(path, st) == 0 ? 0 : -1;
}

/* Pids of processes in any of the namespaces (st_dev/st_ino pairs). */
static size_t netns_pids(const struct stat *ns, size_t nns, pid_t *out, size_t max)
{
    DIR *d = opendir("/proc");
    size_t k = 0;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL && k < max) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end != '\0' || pid <= 0 || pid == getpid())
            continue;
        char path[64];
        struct stat st;
        snprintf(path, sizeof(path), "/proc/%ld/ns/net", pid);
        if (ns_ino(path, &st) != 0)
            continue;
        for (size_t i = 0; i < nns; i++) {
            if (st.st_ino == ns[i].st_ino && st.st_dev == ns[i].st_dev) {
                out[k++] = (pid_t)pid;
                break;
            }
        }
    }
    if (d != NULL)
        closedir(d);
    return k;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void cluster__kill_netns(char *const names[], size_t n, int grace_ms)
{
    struct stat *ns = veil_calloc(n + 1, sizeof(*ns));
    pid_t pids[4096];
    size_t k = 0;
    if (ns == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        char path[CLUSTER_PATH_MAX];
        snprintf(path, sizeof(path), "/run/netns/%s", names[i]);
        if (ns_ino(path, &ns[k]) == 0)
            k++;
    }
    for (int round = 0; k > 0; round++) {
        size_t np = netns_pids(ns, k, pids, sizeof(pids) / sizeof(pids[0]));
        if (np == 0)
            break;
        int sig = round == 0 ? SIGTERM : round * 50 >= grace_ms ? SIGKILL : 0;
        for (size_t i = 0; sig != 0 && i < np; i++)
            kill(pids[i], sig);
        for (size_t i = 0; i < np; i++)
            (void)cluster__alive(pids[i]); /* reap our own children */
        if (round * 50 > grace_ms + 2000)
            break;
        sleep_ms(50);
    }
    veil_free(ns);
}

/* Running: exists and is not a zombie (a zombie has let go of everything). */
static int running(pid_t pid)
{
    char path[64], buf[256];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    const char *paren = strrchr(buf, ')');
    return paren == NULL || (paren[1] == ' ' && paren[2] != 'Z' && paren[2] != 'X');
}

void cluster__wait_gone(const pid_t *pids, size_t n, int ms)
{
    for (int t = 0; t < ms; t += 50) {
        size_t left = 0;
        for (size_t i = 0; i < n; i++) {
            (void)cluster__alive(pids[i]);
            left += pids[i] > 0 && running(pids[i]);
        }
        if (left == 0)
            return;
        sleep_ms(50);
    }
}

int cluster__netns_exists(const char *name)
{
    char path[CLUSTER_PATH_MAX];
    snprintf(path, sizeof(path), "/run/netns/%s", name);
    return access(path, F_OK) == 0;
}

void cluster__netns_del(const char *name)
{
    if (!cluster__netns_exists(name))
        return;
    const char *argv[] = {"ip", "netns", "del", name, NULL};
    char err[256];
    (void)cluster__run(argv, NULL, err, sizeof(err));
}

int cluster__record_netns(const char *dir, const char *netns)
{
    char path[CLUSTER_PATH_MAX];
    snprintf(path, sizeof(path), "%s/netns", dir);
    FILE *f = fopen(path, "ae");
    if (f == NULL)
        return -errno;
    fprintf(f, "%s\n", netns);
    return fclose(f) == 0 ? 0 : -errno;
}

static int wait_io(int fd, short ev, int ms)
{
    struct pollfd p = {.fd = fd, .events = ev};
    int r;
    while ((r = poll(&p, 1, ms)) < 0 && errno == EINTR)
        ;
    return r == 1 ? 0 : -1;
}

int cluster__http_get(const char *netns, int port, const char *path, char *body, size_t len)
{
    int nsfd = veil_netns_open(netns);
    if (nsfd < 0)
        return -1;
    int fd = veil_netns_socket(nsfd, AF_INET, SOCK_STREAM, 0);
    close(nsfd);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char req[256];
    size_t cap = len + 4096, got = 0;
    char *buf = veil_malloc(cap);
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", path);
    ssize_t r = 0;
    if (buf != NULL &&
        (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 || errno == EINPROGRESS) &&
        wait_io(fd, POLLOUT, 1000) == 0 && send(fd, req, (size_t)n, MSG_NOSIGNAL) == n) {
        /* HTTP/1.0: the server closes after the answer. */
        while (got < cap - 1 && wait_io(fd, POLLIN, 1000) == 0 &&
               (r = recv(fd, buf + got, cap - 1 - got, 0)) > 0)
            got += (size_t)r;
    }
    close(fd);
    int status = -1;
    if (buf != NULL) {
        buf[got] = '\0';
        if (got >= 12 && strncmp(buf, "HTTP/1.", 7) == 0)
            status = atoi(buf + 9);
        const char *b = strstr(buf, "\r\n\r\n");
        if (status > 0 && body != NULL && len > 0)
            snprintf(body, len, "%s", b != NULL ? b + 4 : "");
    }
    veil_free(buf);
    return status;
}

int cluster__http_ok(const char *netns, int port, const char *path)
{
    return cluster__http_get(netns, port, path, NULL, 0) == 200;
}

int cluster__unix_call(const char *path, json_t *req, json_t **resp, int timeout_ms, char *err,
                       size_t errlen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        snprintf(err, errlen, "%s: path too long", path);
        return -1;
    }
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        snprintf(err, errlen, "cannot reach %s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    char *text = json_dumps(req, JSON_COMPACT);
    size_t len = text != NULL ? strlen(text) : 0;
    int rc = -1;
    if (text == NULL || veil_write_all(fd, text, len) != 0 || veil_write_all(fd, "\n", 1) != 0) {
        snprintf(err, errlen, "cannot write to %s: %s", path, strerror(errno));
        goto out;
    }
    char buf[8192] = "";
    size_t n = 0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (n < sizeof(buf) - 1 && memchr(buf, '\n', n) == NULL) {
        clock_gettime(CLOCK_MONOTONIC, &t);
        long left =
            timeout_ms - ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
        if (left <= 0 || wait_io(fd, POLLIN, (int)left) != 0) {
            snprintf(err, errlen, "%s did not answer within %d s", path, timeout_ms / 1000);
            goto out;
        }
        ssize_t r = read(fd, buf + n, sizeof(buf) - 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        n += (size_t)r;
    }
    json_error_t jerr;
    if (n == 0) {
        snprintf(err, errlen, "%s closed the connection without an answer", path);
    } else if ((*resp = json_loadb(buf, n, JSON_DISABLE_EOF_CHECK, &jerr)) == NULL) {
        snprintf(err, errlen, "%s answered something that is not JSON: %s", path, jerr.text);
    } else {
        rc = 0;
    }
out:
    free(text);
    close(fd);
    return rc;
}

int cluster__lock(const char *dir, char *err, size_t errlen)
{
    char path[CLUSTER_PATH_MAX];
    snprintf(path, sizeof(path), "%s/lock", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || flock(fd, LOCK_EX) != 0) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    return fd;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

void cluster__rm_rf(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

int cluster__mkdirs(const char *path, mode_t mode)
{
    char tmp[CLUSTER_PATH_MAX];
    if (strlen(path) >= sizeof(tmp))
        return -ENAMETOOLONG;
    strcpy(tmp, path);
    for (char *p = tmp + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, mode) != 0 && errno != EEXIST)
        return -errno;
    return 0;
}

void cluster__log_tail(const char *path, int lines, char *buf, size_t len)
{
    buf[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    off_t size = lseek(fd, 0, SEEK_END);
    off_t from = size > (off_t)len - 1 ? size - (off_t)len + 1 : 0;
    ssize_t n = pread(fd, buf, len - 1, from);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    while (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    char *start = buf + n;
    for (int k = 0; start > buf; start--) {
        if (start[-1] == '\n' && ++k == lines)
            break;
    }
    memmove(buf, start, strlen(start) + 1);
}
