/* veil cluster create / delete: the topology of docs/cluster.md. */
#include "cluster/cluster.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "capture/capture-t.h"
#include "capture/netns.h"
#include "cluster/cluster-int.h"
#include "core/alloc.h"
#include "core/file.h"

#define CONTROL_ADDR "198.18.0.1"
#define PUSH_PORT    15012

const char *veil_cluster_name(const char *flag)
{
    if (flag != NULL)
        return flag;
    const char *env = getenv("VEIL_CLUSTER");
    return env != NULL && env[0] != '\0' ? env : VEIL_CLUSTER_DEFAULT;
}

int veil_cluster_check_name(const char *name, char *err, size_t errlen)
{
    size_t n = strlen(name);
    int ok = n > 0 && n <= VEIL_CLUSTER_NAME_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = islower((unsigned char)name[i]) || isdigit((unsigned char)name[i]);
    if (!ok)
        cluster__fmt(err, errlen,
                     "'%s' is not a valid cluster name: use 1 to %d lower-case letters and digits",
                     name, VEIL_CLUSTER_NAME_MAX);
    return ok ? 0 : -1;
}

int veil_cluster_path(char *buf, size_t len, const char *name, const char *sub)
{
    int n = cluster__fmt(buf, len, "%s/%s%s%s", VEIL_CLUSTER_RUN_DIR, name, sub ? "/" : "",
                         sub ? sub : "");
    return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

static void say(FILE *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(FILE *f, const char *fmt, ...)
{
    if (f == NULL)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(f, fmt, ap);
    va_end(ap);
    fflush(f);
}

int veil_cluster_nodes(const char *name, int *nodes, int *proxies, char *err, size_t errlen)
{
    char path[CLUSTER_PATH_MAX];
    veil_cluster_path(path, sizeof(path), name, "cluster.json");
    json_error_t jerr;
    json_t *c = json_load_file(path, 0, &jerr);
    if (c == NULL) {
        cluster__fmt(err, errlen,
                     "there is no local cluster '%s' (%s); make one with 'veil cluster create%s%s'",
                     name, path, strcmp(name, VEIL_CLUSTER_DEFAULT) ? " --name " : "",
                     strcmp(name, VEIL_CLUSTER_DEFAULT) ? name : "");
        return -1;
    }
    *nodes = (int)json_integer_value(json_object_get(c, "nodes"));
    if (proxies != NULL)
        *proxies = json_is_true(json_object_get(c, "proxies"));
    json_decref(c);
    return 0;
}

/* ---- create ---- */

struct build {
    const struct veil_cluster_opts *o;
    const char *name;
    char dir[CLUSTER_PATH_MAX];
    char hub[64];
    char veil[CLUSTER_PATH_MAX];
    char *err;
    size_t errlen;
};

static int mk_netns(struct build *b, const char *netns)
{
    if (cluster__record_netns(b->dir, netns) < 0) {
        cluster__fmt(b->err, b->errlen, "%s/netns: %s", b->dir, strerror(errno));
        return -1;
    }
    const char *argv[] = {"ip", "netns", "add", netns, NULL};
    return cluster__run(argv, NULL, b->err, b->errlen);
}

static int write_sysctl(void *arg)
{
    int fd = open((const char *)arg, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = veil_write_all(fd, "1\n", 2);
    close(fd);
    return rc;
}

static int ip_forward(struct build *b, const char *netns)
{
    int fd = veil_netns_open(netns);
    int rc = fd < 0 ? fd : veil_netns_run(fd, write_sysctl, "/proc/sys/net/ipv4/ip_forward");
    if (fd >= 0)
        close(fd);
    if (rc < 0)
        cluster__fmt(b->err, b->errlen, "cannot turn on forwarding in %s: %s", netns,
                     strerror(-rc));
    return rc < 0 ? -1 : 0;
}

/* Locally administered, 02:00 then 198.18 (c6:12), then the subnet's
 * third octet and .1: the gateway's address. */
#define HUB_BRIDGE_MAC  "02:00:c6:12:00:01"
#define NODE_BRIDGE_MAC "02:00:c6:12:%02x:01"

static int make_hub(struct build *b)
{
    if (mk_netns(b, b->hub) < 0)
        return -1;
    return cluster__ip_batch(b->hub,
                             "link set lo up\n"
                             "link add br0 address " HUB_BRIDGE_MAC " type bridge\n"
                             "addr add " CONTROL_ADDR "/24 dev br0\n"
                             "link set br0 up\n",
                             b->err, b->errlen);
}

/* Node i: eth0 198.18.0.(10+i) on the hub's bridge, br0 198.18.i.1/24 for
 * its pods, a route to every other node's pod subnet. Each bridge has a
 * fixed MAC address: a bridge without one takes its lowest port's, so
 * adding or deleting a pod's veth would change the gateway's MAC under
 * the other pods, whose neighbour entries then point nowhere for up to
 * half a minute (packets to other nodes lost, tunnels stalled). */
static int make_node(struct build *b, int i, int k)
{
    char netns[64], peer[16], batch[16384];
    cluster__fmt(netns, sizeof(netns), "veil-%s-node-%d", b->name, i);
    cluster__fmt(peer, sizeof(peer), "n%d", i);
    if (mk_netns(b, netns) < 0)
        return -1;
    const char *veth[] = {"ip",   "-n",   netns,  "link", "add",   "eth0", "type",
                          "veth", "peer", "name", peer,   "netns", b->hub, NULL};
    if (cluster__run(veth, NULL, b->err, b->errlen) < 0)
        return -1;
    cluster__fmt(
        batch, sizeof(batch),
        "link set %s master br0\nlink set %s up\nroute add 198.18.%d.0/24 via 198.18.0.%d\n", peer,
        peer, i, 10 + i);
    if (cluster__ip_batch(b->hub, batch, b->err, b->errlen) < 0)
        return -1;
    int n = cluster__fmt(batch, sizeof(batch),
                         "link set lo up\n"
                         "addr add 198.18.0.%d/24 dev eth0\n"
                         "link set eth0 up\n"
                         "link add br0 address " NODE_BRIDGE_MAC " type bridge\n"
                         "addr add 198.18.%d.1/24 dev br0\n"
                         "link set br0 up\n",
                         10 + i, i, i);
    for (int j = 1; j <= k; j++) {
        if (j != i)
            n += cluster__fmt(batch + n, sizeof(batch) - (size_t)n,
                              "route add 198.18.%d.0/24 via 198.18.0.%d\n", j, 10 + j);
    }
    if (cluster__ip_batch(netns, batch, b->err, b->errlen) < 0)
        return -1;
    return ip_forward(b, netns);
}

static int write_pid(struct build *b, const char *file, pid_t pid)
{
    char path[CLUSTER_PATH_MAX], text[32];
    cluster__fmt(path, sizeof(path), "%s/%s", b->dir, file);
    int n = cluster__fmt(text, sizeof(text), "%d\n", (int)pid);
    int rc = veil_file_write_atomic(path, text, (size_t)n, 0644, NULL);
    if (rc < 0)
        cluster__fmt(b->err, b->errlen, "%s: %s", path, strerror(-rc));
    return rc < 0 ? -1 : 0;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Polls `ready` until true, the process exits, or the timeout. */
static int wait_for(struct build *b, pid_t pid, const char *what, const char *log,
                    int (*ready)(struct build *, const void *), const void *arg)
{
    int timeout = b->o->timeout_s > 0 ? b->o->timeout_s : 30;
    double end = now_s() + timeout;
    char tail[2048];
    while (!ready(b, arg)) {
        int alive = cluster__alive(pid);
        if (!alive || now_s() > end) {
            cluster__log_tail(log, 12, tail, sizeof(tail));
            cluster__fmt(b->err, b->errlen, "%s %s; the end of its log (%s):\n%s", what,
                         alive ? "did not become ready in time" : "exited at start", log,
                         tail[0] ? tail : "(empty)");
            return -1;
        }
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return 0;
}

static int file_exists(const char *dir, const char *name)
{
    char path[CLUSTER_PATH_MAX];
    cluster__fmt(path, sizeof(path), "%s/%s", dir, name);
    return access(path, F_OK) == 0;
}

static int control_ready(struct build *b, const void *arg)
{
    (void)arg;
    char dir[CLUSTER_PATH_MAX];
    cluster__fmt(dir, sizeof(dir), "%s/control", b->dir);
    return file_exists(dir, "control.sock") && file_exists(dir, "ports") &&
           file_exists(dir, "join-token");
}

static int start_control(struct build *b)
{
    char state[CLUSTER_PATH_MAX], log[CLUSTER_PATH_MAX];
    cluster__fmt(state, sizeof(state), "%s/control", b->dir);
    cluster__fmt(log, sizeof(log), "%s/control.log", b->dir);
    const char *argv[] = {b->veil, "control", "--state-dir", state, "--listen", CONTROL_ADDR, NULL};
    pid_t pid;
    if (cluster__spawn(b->hub, argv, log, &pid, b->err, b->errlen) < 0 ||
        write_pid(b, "control.pid", pid) < 0)
        return -1;
    say(b->o->progress, "  control plane: pid %d, %s:15012 (push), :15014 (status), log %s\n",
        (int)pid, CONTROL_ADDR, log);
    return wait_for(b, pid, "the control plane", log, control_ready, NULL);
}

static int node_ready(struct build *b, const void *arg)
{
    int i = *(const int *)arg;
    char netns[64], sock[CLUSTER_PATH_MAX];
    cluster__fmt(netns, sizeof(netns), "veil-%s-node-%d", b->name, i);
    cluster__fmt(sock, sizeof(sock), "%s/nodes/node-%d/node.sock", b->dir, i);
    return access(sock, F_OK) == 0 &&
           cluster__http_ok(netns, VEIL_PORT_READINESS, "/healthz/ready");
}

static int start_node(struct build *b, int i, pid_t *pid)
{
    char netns[64], node[32], state[CLUSTER_PATH_MAX], log[CLUSTER_PATH_MAX],
        token[CLUSTER_PATH_MAX], pidfile[64];
    cluster__fmt(netns, sizeof(netns), "veil-%s-node-%d", b->name, i);
    cluster__fmt(node, sizeof(node), "node-%d", i);
    cluster__fmt(state, sizeof(state), "%s/nodes/%s", b->dir, node);
    cluster__fmt(log, sizeof(log), "%s/nodes/%s.log", b->dir, node);
    cluster__fmt(token, sizeof(token), "%s/control/join-token", b->dir);
    cluster__fmt(pidfile, sizeof(pidfile), "nodes/%s.pid", node);
    const char *argv[] = {b->veil,        "node", "--name",    node,
                          "--state-dir",  state,  "--control", CONTROL_ADDR ":15012",
                          "--token-file", token,  NULL};
    if (cluster__spawn(netns, argv, log, pid, b->err, b->errlen) < 0 ||
        write_pid(b, pidfile, *pid) < 0)
        return -1;
    say(b->o->progress, "  %s: node proxy pid %d, log %s\n", node, (int)*pid, log);
    return 0;
}

static int start_nodes(struct build *b, int k)
{
    pid_t *pids = veil_calloc((size_t)k + 1, sizeof(pid_t));
    if (pids == NULL) {
        cluster__fmt(b->err, b->errlen, "out of memory");
        return -1;
    }
    int rc = 0;
    for (int i = 1; rc == 0 && i <= k; i++)
        rc = start_node(b, i, &pids[i]);
    for (int i = 1; rc == 0 && i <= k; i++) {
        char what[64], log[CLUSTER_PATH_MAX];
        cluster__fmt(what, sizeof(what), "the node proxy of node-%d", i);
        cluster__fmt(log, sizeof(log), "%s/nodes/node-%d.log", b->dir, i);
        rc = wait_for(b, pids[i], what, log, node_ready, &i);
    }
    veil_free(pids);
    return rc;
}

static int write_meta(struct build *b, int k)
{
    char path[CLUSTER_PATH_MAX];
    cluster__fmt(path, sizeof(path), "%s/cluster.json", b->dir);
    json_t *c = json_pack("{s:s, s:i, s:b, s:s, s:s}", "name", b->name, "nodes", k, "proxies",
                          !b->o->no_proxies, "hub", b->hub, "control", CONTROL_ADDR);
    char *text = c != NULL ? json_dumps(c, JSON_INDENT(2)) : NULL;
    json_decref(c);
    int rc = text != NULL ? veil_file_write_atomic(path, text, strlen(text), 0644, NULL) : -ENOMEM;
    free(text);
    if (rc < 0)
        cluster__fmt(b->err, b->errlen, "%s: %s", path, strerror(-rc));
    return rc < 0 ? -1 : 0;
}

static int make_dirs(struct build *b)
{
    static const char *subs[] = {"", "/control", "/nodes", "/pods"};
    for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
        char path[CLUSTER_PATH_MAX];
        cluster__fmt(path, sizeof(path), "%s%s", b->dir, subs[i]);
        int rc = cluster__mkdirs(path, i == 1 ? 0700 : 0755);
        if (rc < 0) {
            cluster__fmt(b->err, b->errlen, "%s: %s", path, strerror(-rc));
            return -1;
        }
    }
    return 0;
}

static int build(struct build *b, int k)
{
    if (make_dirs(b) < 0 || write_meta(b, k) < 0)
        return -1;
    say(b->o->progress, "Creating the local cluster '%s' with %d node(s):\n", b->name, k);
    if (make_hub(b) < 0)
        return -1;
    say(b->o->progress, "  network: netns %s, bridge br0, %s/24\n", b->hub, CONTROL_ADDR);
    for (int i = 1; i <= k; i++) {
        if (make_node(b, i, k) < 0)
            return -1;
        say(b->o->progress,
            "  node-%d: netns veil-%s-node-%d, 198.18.0.%d, pods in 198.18.%d.0/24\n", i, b->name,
            i, 10 + i, i);
    }
    if (start_control(b) < 0)
        return -1;
    return b->o->no_proxies ? 0 : start_nodes(b, k);
}

static int self_exe(char *buf, size_t len)
{
    ssize_t n = readlink("/proc/self/exe", buf, len - 1);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

static int preflight(struct build *b)
{
    if (geteuid() != 0) {
        cluster__fmt(
            b->err, b->errlen,
            "the local cluster needs root (it makes network namespaces); run it with sudo");
        return -1;
    }
    if (access(b->dir, F_OK) == 0 || cluster__netns_exists(b->hub)) {
        cluster__fmt(b->err, b->errlen,
                     "a cluster named '%s' already exists (%s); delete it first with "
                     "'veil cluster delete --name %s'",
                     b->name, b->dir, b->name);
        return -1;
    }
    if (b->o->veil_bin != NULL)
        cluster__fmt(b->veil, sizeof(b->veil), "%s", b->o->veil_bin);
    else if (self_exe(b->veil, sizeof(b->veil)) < 0) {
        cluster__fmt(b->err, b->errlen, "cannot find the veil binary: /proc/self/exe: %s",
                     strerror(errno));
        return -1;
    }
    return 0;
}

int veil_cluster_create(const struct veil_cluster_opts *o, char *err, size_t errlen)
{
    struct build b = {
        .o = o, .name = o->name ? o->name : VEIL_CLUSTER_DEFAULT, .err = err, .errlen = errlen};
    int k = o->nodes > 0 ? o->nodes : 2;
    if (veil_cluster_check_name(b.name, err, errlen) < 0)
        return -1;
    if (k > VEIL_CLUSTER_MAX_NODES) {
        cluster__fmt(err, errlen, "--nodes %d: at most %d nodes", k, VEIL_CLUSTER_MAX_NODES);
        return -1;
    }
    veil_cluster_path(b.dir, sizeof(b.dir), b.name, NULL);
    cluster__fmt(b.hub, sizeof(b.hub), "veil-%s", b.name);
    if (preflight(&b) < 0)
        return -1;
    if (build(&b, k) == 0)
        return 0;
    say(o->progress, "Failed; removing what was made.\n");
    char err2[512];
    (void)veil_cluster_delete(b.name, NULL, err2, sizeof(err2));
    return -1;
}

/* ---- delete ---- */

struct names {
    char **v;
    size_t n, cap;
};

static int names_add(struct names *s, const char *name)
{
    for (size_t i = 0; i < s->n; i++) {
        if (strcmp(s->v[i], name) == 0)
            return 0;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        char **v = veil_realloc(s->v, cap * sizeof(char *));
        if (v == NULL)
            return -ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    if ((s->v[s->n] = veil_strdup(name)) == NULL)
        return -ENOMEM;
    s->n++;
    return 0;
}

static void names_free(struct names *s)
{
    for (size_t i = 0; i < s->n; i++)
        veil_free(s->v[i]);
    veil_free(s->v);
}

/* Every netns of the cluster: the recorded ones, and any left by the
 * naming rule (veil-C, veil-C-*; C has no '-', so no other cluster's). */
static void collect_netns(const char *name, const char *dir, struct names *all)
{
    char path[CLUSTER_PATH_MAX], line[256], hub[64], prefix[64];
    cluster__fmt(path, sizeof(path), "%s/netns", dir);
    FILE *f = fopen(path, "re");
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (line[0] != '\0')
            (void)names_add(all, line);
    }
    if (f != NULL)
        fclose(f);
    cluster__fmt(hub, sizeof(hub), "veil-%s", name);
    cluster__fmt(prefix, sizeof(prefix), "veil-%s-", name);
    DIR *d = opendir("/run/netns");
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, hub) == 0 || strncmp(e->d_name, prefix, strlen(prefix)) == 0)
            (void)names_add(all, e->d_name);
    }
    if (d != NULL)
        closedir(d);
}

/* Tells each live node proxy its pods are going (best effort). */
static void unenrol_pods(const char *dir)
{
    char path[CLUSTER_PATH_MAX];
    cluster__fmt(path, sizeof(path), "%s/pods", dir);
    DIR *d = opendir(path);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char sub[CLUSTER_PATH_MAX + 256];
        cluster__fmt(sub, sizeof(sub), "%s/%s", path, e->d_name);
        DIR *d2 = opendir(sub);
        struct dirent *e2;
        while (d2 != NULL && (e2 = readdir(d2)) != NULL) {
            size_t n = strlen(e2->d_name);
            if (n < 6 || strcmp(e2->d_name + n - 5, ".json") != 0 ||
                (n > 9 && strcmp(e2->d_name + n - 9, ".pod.json") == 0))
                continue;
            char pname[256], err[256];
            cluster__fmt(pname, sizeof(pname), "%.*s", (int)(n - 5), e2->d_name);
            struct veil_cluster_pod p;
            const char *cl = strrchr(dir, '/') + 1;
            if (veil_cluster_pod_find(cl, e->d_name, pname, &p, err, sizeof(err)) == 0 && p.mesh)
                (void)veil_cluster_pod_delete(&p, err, sizeof(err));
        }
        if (d2 != NULL)
            closedir(d2);
    }
    if (d != NULL)
        closedir(d);
}

/* A dying process leaves its netns before it is gone: wait for the
 * recorded control plane and node proxies to have really exited. */
static void wait_recorded(const char *dir)
{
    pid_t pids[VEIL_CLUSTER_MAX_NODES + 1];
    size_t n = 0;
    char path[CLUSTER_PATH_MAX], line[32];
    cluster__fmt(path, sizeof(path), "%s/control.pid", dir);
    if (veil_file_read_line(path, line, sizeof(line)) == 0)
        pids[n++] = (pid_t)atoi(line);
    for (int i = 1; i <= VEIL_CLUSTER_MAX_NODES; i++) {
        cluster__fmt(path, sizeof(path), "%s/nodes/node-%d.pid", dir, i);
        if (veil_file_read_line(path, line, sizeof(line)) == 0)
            pids[n++] = (pid_t)atoi(line);
        else if (access(path, F_OK) != 0)
            break;
    }
    cluster__wait_gone(pids, n, 5000);
}

int veil_cluster_delete(const char *name, FILE *progress, char *err, size_t errlen)
{
    char dir[CLUSTER_PATH_MAX];
    if (veil_cluster_check_name(name, err, errlen) < 0)
        return -1;
    if (geteuid() != 0) {
        cluster__fmt(err, errlen, "deleting the local cluster needs root; run it with sudo");
        return -1;
    }
    veil_cluster_path(dir, sizeof(dir), name, NULL);
    struct names all = {0};
    collect_netns(name, dir, &all);
    int had_dir = access(dir, F_OK) == 0;
    if (!had_dir && all.n == 0) {
        cluster__fmt(err, errlen,
                     "there is no local cluster '%s' (nothing in %s, no netns veil-%s)", name, dir,
                     name);
        names_free(&all);
        return -1;
    }
    say(progress, "Deleting the local cluster '%s':\n", name);
    if (had_dir)
        unenrol_pods(dir);
    /* Pods first, then the node proxies and the control plane. */
    struct names pods = {0}, rest = {0};
    for (size_t i = 0; i < all.n; i++)
        (void)names_add(strstr(all.v[i], "-pod-") ? &pods : &rest, all.v[i]);
    cluster__kill_netns(pods.v, pods.n, 3000);
    cluster__kill_netns(rest.v, rest.n, 5000);
    wait_recorded(dir);
    say(progress, "  stopped every process of the cluster\n");
    for (size_t i = 0; i < all.n; i++) {
        char etc[CLUSTER_PATH_MAX];
        cluster__netns_del(all.v[i]);
        cluster__fmt(etc, sizeof(etc), "/etc/netns/%s", all.v[i]);
        cluster__rm_rf(etc);
    }
    say(progress, "  deleted %zu network namespace(s) with their links\n", all.n);
    cluster__rm_rf(dir);
    rmdir(VEIL_CLUSTER_RUN_DIR); /* these two only when empty */
    rmdir("/etc/netns");
    say(progress, "  removed %s\n", dir);
    names_free(&pods);
    names_free(&rest);
    names_free(&all);
    return 0;
}
