/* Pods of the local cluster: netns, veth, address, record, enrolment. */
#include "cluster/cluster.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cluster/cluster-int.h"
#include "core/file.h"

#define FIRST_HOST 10
#define LAST_HOST  250

static int dns_label(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (!islower((unsigned char)s[i]) && !isdigit((unsigned char)s[i]) && s[i] != '-')
            return 0;
    }
    return 1;
}

static void pod_file(const struct veil_cluster_pod *p, const char *ext, char *buf, size_t len)
{
    cluster__fmt(buf, len, "%s/%s/pods/%s/%s%s", VEIL_CLUSTER_RUN_DIR, p->cluster, p->ns, p->name,
                 ext);
}

int veil_cluster_pod_state_dir(const struct veil_cluster_pod *p, char *buf, size_t len)
{
    pod_file(p, ".state", buf, len);
    return 0;
}

int veil_cluster_pod_log(const struct veil_cluster_pod *p, char *buf, size_t len)
{
    pod_file(p, ".log", buf, len);
    return 0;
}

static int save(const struct veil_cluster_pod *p, char *err, size_t errlen)
{
    char path[CLUSTER_PATH_MAX];
    pod_file(p, ".json", path, sizeof(path));
    json_t *j =
        json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:s, s:s, s:b, s:i, s:b}", "namespace", p->ns,
                  "name", p->name, "serviceAccount", p->sa, "node", p->node, "nodeIndex",
                  p->node_index, "host", p->host, "address", p->address, "netns", p->netns, "mesh",
                  p->mesh, "pid", (int)p->pid, "waypoint", p->waypoint);
    char *text = j != NULL ? json_dumps(j, JSON_INDENT(2)) : NULL;
    json_decref(j);
    int rc = text != NULL ? veil_file_write_atomic(path, text, strlen(text), 0644, NULL) : -ENOMEM;
    free(text);
    if (rc < 0)
        cluster__fmt(err, errlen, "%s: %s", path, strerror(-rc));
    return rc < 0 ? -1 : 0;
}

static void copy(char *dst, size_t len, json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    cluster__fmt(dst, len, "%s", s != NULL ? s : "");
}

static int load(const char *path, struct veil_cluster_pod *p)
{
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    if (j == NULL)
        return -1;
    copy(p->ns, sizeof(p->ns), j, "namespace");
    copy(p->name, sizeof(p->name), j, "name");
    copy(p->sa, sizeof(p->sa), j, "serviceAccount");
    copy(p->node, sizeof(p->node), j, "node");
    copy(p->address, sizeof(p->address), j, "address");
    copy(p->netns, sizeof(p->netns), j, "netns");
    p->node_index = (int)json_integer_value(json_object_get(j, "nodeIndex"));
    p->host = (int)json_integer_value(json_object_get(j, "host"));
    p->mesh = json_is_true(json_object_get(j, "mesh"));
    p->waypoint = json_is_true(json_object_get(j, "waypoint"));
    p->pid = (pid_t)json_integer_value(json_object_get(j, "pid"));
    json_decref(j);
    return 0;
}

int veil_cluster_pod_find(const char *cluster, const char *ns, const char *name,
                          struct veil_cluster_pod *p, char *err, size_t errlen)
{
    memset(p, 0, sizeof(*p));
    cluster__fmt(p->cluster, sizeof(p->cluster), "%s", cluster);
    cluster__fmt(p->ns, sizeof(p->ns), "%s", ns);
    cluster__fmt(p->name, sizeof(p->name), "%s", name);
    char path[CLUSTER_PATH_MAX];
    pod_file(p, ".json", path, sizeof(path));
    if (!dns_label(ns) || !dns_label(name) || load(path, p) < 0) {
        cluster__fmt(err, errlen, "there is no pod %s/%s in the local cluster '%s' (%s)", ns, name,
                     cluster, path);
        return -1;
    }
    return 0;
}

/* Marks the hosts of node i's subnet that pods hold (all namespaces). */
static void used_hosts(const char *cluster, int node, unsigned char *used)
{
    char dir[CLUSTER_PATH_MAX];
    cluster__fmt(dir, sizeof(dir), "%s/%s/pods", VEIL_CLUSTER_RUN_DIR, cluster);
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char sub[CLUSTER_PATH_MAX];
        cluster__fmt(sub, sizeof(sub), "%s/%s", dir, e->d_name);
        DIR *d2 = opendir(sub);
        struct dirent *e2;
        while (d2 != NULL && (e2 = readdir(d2)) != NULL) {
            size_t n = strlen(e2->d_name);
            if (n < 6 || strcmp(e2->d_name + n - 5, ".json") != 0)
                continue;
            char path[CLUSTER_PATH_MAX];
            struct veil_cluster_pod p = {0};
            cluster__fmt(path, sizeof(path), "%s/%s", sub, e2->d_name);
            if (load(path, &p) == 0 && p.node_index == node && p.host > 0 && p.host < 256)
                used[p.host] = 1;
        }
        if (d2 != NULL)
            closedir(d2);
    }
    if (d != NULL)
        closedir(d);
}

static int check_pod(struct veil_cluster_pod *p, char *err, size_t errlen)
{
    int nodes = 0;
    if (veil_cluster_check_name(p->cluster, err, errlen) < 0 ||
        veil_cluster_nodes(p->cluster, &nodes, NULL, err, errlen) < 0)
        return -1;
    if (!dns_label(p->ns) || !dns_label(p->name)) {
        cluster__fmt(err, errlen,
                     "'%s/%s': a namespace and a pod name are 1 to 63 lower-case letters, digits "
                     "and '-'",
                     p->ns, p->name);
        return -1;
    }
    char *end;
    long i = strncmp(p->node, "node-", 5) == 0 ? strtol(p->node + 5, &end, 10) : 0;
    if (i < 1 || i > nodes || *end != '\0') {
        cluster__fmt(err, errlen,
                     "no node '%s' in the cluster '%s': its nodes are node-1 to node-%d", p->node,
                     p->cluster, nodes);
        return -1;
    }
    p->node_index = (int)i;
    if (p->sa[0] == '\0')
        cluster__fmt(p->sa, sizeof(p->sa), "%s", p->name);
    return 0;
}

static int pick_address(struct veil_cluster_pod *p, char *err, size_t errlen)
{
    unsigned char used[256] = {0};
    used_hosts(p->cluster, p->node_index, used);
    for (int j = FIRST_HOST; j <= LAST_HOST; j++) {
        char netns[64];
        cluster__fmt(netns, sizeof(netns), "veil-%s-pod-%d-%d", p->cluster, p->node_index, j);
        if (used[j] || cluster__netns_exists(netns))
            continue;
        p->host = j;
        cluster__fmt(p->netns, sizeof(p->netns), "%s", netns);
        cluster__fmt(p->address, sizeof(p->address), "198.18.%d.%d", p->node_index, j);
        return 0;
    }
    cluster__fmt(err, errlen, "%s is full (%d pods)", p->node, LAST_HOST - FIRST_HOST + 1);
    return -1;
}

static int resolv_conf(const struct veil_cluster_pod *p, char *err, size_t errlen)
{
    char dir[CLUSTER_PATH_MAX], path[CLUSTER_PATH_MAX], text[512];
    cluster__fmt(dir, sizeof(dir), "/etc/netns/%s", p->netns);
    cluster__fmt(path, sizeof(path), "%s/resolv.conf", dir);
    int n = cluster__fmt(text, sizeof(text),
                         "# veil local cluster '%s': DNS is answered by the node proxy\n"
                         "nameserver 198.18.0.1\n"
                         "search %s.svc.cluster.local svc.cluster.local cluster.local\n"
                         "options ndots:5\n",
                         p->cluster, p->ns);
    int rc = cluster__mkdirs(dir, 0755);
    if (rc == 0)
        rc = veil_file_write_atomic(path, text, (size_t)n, 0644, NULL);
    if (rc < 0)
        cluster__fmt(err, errlen, "%s: %s", path, strerror(-rc));
    return rc < 0 ? -1 : 0;
}

static int plumb(const struct veil_cluster_pod *p, char *err, size_t errlen)
{
    char node[64], veth[16], batch[512], dir[CLUSTER_PATH_MAX];
    cluster__fmt(node, sizeof(node), "veil-%s-node-%d", p->cluster, p->node_index);
    cluster__fmt(veth, sizeof(veth), "p%d", p->host);
    cluster__fmt(dir, sizeof(dir), "%s/%s", VEIL_CLUSTER_RUN_DIR, p->cluster);
    if (cluster__record_netns(dir, p->netns) < 0) {
        cluster__fmt(err, errlen, "%s/netns: %s", dir, strerror(errno));
        return -1;
    }
    const char *add[] = {"ip", "netns", "add", p->netns, NULL};
    const char *link[] = {"ip",   "-n",   node,   "link", "add",   veth,     "type",
                          "veth", "peer", "name", "eth0", "netns", p->netns, NULL};
    if (cluster__run(add, NULL, err, errlen) < 0 || cluster__run(link, NULL, err, errlen) < 0)
        return -1;
    cluster__fmt(batch, sizeof(batch), "link set %s master br0\nlink set %s up\n", veth, veth);
    if (cluster__ip_batch(node, batch, err, errlen) < 0)
        return -1;
    /* The MAC follows from the address (02:00:c6:12:<node>:<host>, as
     * Docker derives it): a pod that gets a freed address gets the same MAC,
     * so the neighbour caches of the other pods stay right (a new MAC would
     * leave them sending to the old one until their entry expires). */
    cluster__fmt(batch, sizeof(batch),
                 "link set lo up\n"
                 "link set eth0 address 02:00:c6:12:%02x:%02x\n"
                 "addr add %s/24 dev eth0\n"
                 "link set eth0 up\n"
                 "route add default via 198.18.%d.1\n",
                 p->node_index, p->host, p->address, p->node_index);
    if (cluster__ip_batch(p->netns, batch, err, errlen) < 0)
        return -1;
    return resolv_conf(p, err, errlen);
}

int veil_cluster_pod_create(struct veil_cluster_pod *p, char *err, size_t errlen)
{
    if (check_pod(p, err, errlen) < 0)
        return -1;
    char dir[CLUSTER_PATH_MAX], path[CLUSTER_PATH_MAX];
    cluster__fmt(dir, sizeof(dir), "%s/%s", VEIL_CLUSTER_RUN_DIR, p->cluster);
    int lock = cluster__lock(dir, err, errlen);
    if (lock < 0)
        return -1;
    int rc = -1;
    pod_file(p, ".json", path, sizeof(path));
    cluster__fmt(dir, sizeof(dir), "%s/%s/pods/%s", VEIL_CLUSTER_RUN_DIR, p->cluster, p->ns);
    if (access(path, F_OK) == 0) {
        cluster__fmt(err, errlen, "there is already a pod %s/%s in the cluster '%s'", p->ns,
                     p->name, p->cluster);
    } else if (cluster__mkdirs(dir, 0755) < 0) {
        cluster__fmt(err, errlen, "%s: %s", dir, strerror(errno));
    } else if (pick_address(p, err, errlen) == 0 && save(p, err, errlen) == 0) {
        rc = plumb(p, err, errlen);
    }
    close(lock);
    return rc;
}

int veil_cluster_pod_enrol(const struct veil_cluster_pod *p, char *err, size_t errlen)
{
    char sock[CLUSTER_PATH_MAX], netns[CLUSTER_PATH_MAX];
    cluster__fmt(sock, sizeof(sock), "%s/%s/nodes/%s/node.sock", VEIL_CLUSTER_RUN_DIR, p->cluster,
                 p->node);
    cluster__fmt(netns, sizeof(netns), "/run/netns/%s", p->netns);
    json_t *req =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "op", "add", "namespace", p->ns, "name",
                  p->name, "netns", netns, "address", p->address, "serviceAccount", p->sa);
    json_t *resp = NULL;
    char why[512];
    int rc = cluster__unix_call(sock, req, &resp, 30000, why, sizeof(why));
    json_decref(req);
    if (rc < 0) {
        cluster__fmt(err, errlen, "the node proxy of %s could not enrol the pod: %s", p->node, why);
        return -1;
    }
    if (!json_is_true(json_object_get(resp, "ok"))) {
        const char *e = json_string_value(json_object_get(resp, "error"));
        cluster__fmt(err, errlen, "the node proxy of %s refused the pod: %s", p->node,
                     e != NULL ? e : "(no reason given)");
        rc = -1;
    }
    json_decref(resp);
    return rc;
}

int veil_cluster_pod_start(struct veil_cluster_pod *p, char *const argv[], char *err, size_t errlen)
{
    char log[CLUSTER_PATH_MAX];
    pod_file(p, ".log", log, sizeof(log));
    if (cluster__spawn(p->netns, (const char *const *)argv, log, &p->pid, err, errlen) < 0)
        return -1;
    return save(p, err, errlen);
}

static void unenrol(const struct veil_cluster_pod *p)
{
    char sock[CLUSTER_PATH_MAX], why[256];
    cluster__fmt(sock, sizeof(sock), "%s/%s/nodes/%s/node.sock", VEIL_CLUSTER_RUN_DIR, p->cluster,
                 p->node);
    if (access(sock, F_OK) != 0)
        return;
    json_t *req = json_pack("{s:s, s:s, s:s}", "op", "del", "namespace", p->ns, "name", p->name);
    json_t *resp = NULL;
    if (cluster__unix_call(sock, req, &resp, 3000, why, sizeof(why)) == 0)
        json_decref(resp);
    json_decref(req);
}

int veil_cluster_pod_delete(const struct veil_cluster_pod *p, char *err, size_t errlen)
{
    (void)err;
    (void)errlen;
    char path[CLUSTER_PATH_MAX];
    char *names[] = {(char *)p->netns};
    if (p->mesh)
        unenrol(p);
    if (p->netns[0] != '\0') {
        cluster__kill_netns(names, 1, 3000);
        cluster__netns_del(p->netns);
        cluster__fmt(path, sizeof(path), "/etc/netns/%s", p->netns);
        cluster__rm_rf(path);
    }
    veil_cluster_pod_state_dir(p, path, sizeof(path));
    cluster__rm_rf(path);
    static const char *exts[] = {".json", ".log", ".pod.json"};
    for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++) {
        pod_file(p, exts[i], path, sizeof(path));
        unlink(path);
    }
    return 0;
}

void veil_cluster_pod_stop(const struct veil_cluster_pod *p, int grace_ms)
{
    char *names[] = {(char *)p->netns};
    if (p->netns[0] != '\0')
        cluster__kill_netns(names, 1, grace_ms);
}

int veil_cluster_pod_http_get(const struct veil_cluster_pod *p, int port, const char *path,
                              char *body, size_t len)
{
    return cluster__http_get(p->netns, port, path, body, len);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int veil_cluster_pod_wait_http(const struct veil_cluster_pod *p, int port, const char *path,
                               int timeout_s, char *err, size_t errlen)
{
    double end = now_s() + (timeout_s > 0 ? timeout_s : 30);
    while (!cluster__http_ok(p->netns, port, path)) {
        int alive = p->pid > 0 && cluster__alive(p->pid);
        if (!alive || now_s() > end) {
            char log[CLUSTER_PATH_MAX], tail[2048];
            pod_file(p, ".log", log, sizeof(log));
            cluster__log_tail(log, 12, tail, sizeof(tail));
            cluster__fmt(err, errlen,
                         "%s/%s %s (GET 127.0.0.1:%d%s in %s); the end of its log (%s):\n%s", p->ns,
                         p->name, alive ? "did not become ready in time" : "exited at start", port,
                         path, p->netns, log, tail[0] ? tail : "(empty)");
            return -1;
        }
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return 0;
}

int veil_cluster_pods_each(const char *cluster,
                           int (*fn)(void *arg, const struct veil_cluster_pod *p), void *arg)
{
    char dir[CLUSTER_PATH_MAX];
    cluster__fmt(dir, sizeof(dir), "%s/%s/pods", VEIL_CLUSTER_RUN_DIR, cluster);
    DIR *d = opendir(dir);
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && d != NULL && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char sub[CLUSTER_PATH_MAX];
        cluster__fmt(sub, sizeof(sub), "%s/%s", dir, e->d_name);
        DIR *d2 = opendir(sub);
        struct dirent *e2;
        while (rc == 0 && d2 != NULL && (e2 = readdir(d2)) != NULL) {
            size_t n = strlen(e2->d_name);
            if (n < 6 || strcmp(e2->d_name + n - 5, ".json") != 0 ||
                (n > 9 && strcmp(e2->d_name + n - 9, ".pod.json") == 0))
                continue;
            char path[CLUSTER_PATH_MAX];
            struct veil_cluster_pod p = {0};
            cluster__fmt(path, sizeof(path), "%s/%s", sub, e2->d_name);
            cluster__fmt(p.cluster, sizeof(p.cluster), "%s", cluster);
            if (load(path, &p) == 0)
                rc = fn(arg, &p);
        }
        if (d2 != NULL)
            closedir(d2);
    }
    if (d != NULL)
        closedir(d);
    return rc;
}
