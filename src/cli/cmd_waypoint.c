/* veil waypoint run|add|remove|list: the L7 proxy as its own workload
 * (docs/waypoint.md). `run` is the node runtime in waypoint mode; the
 * others deploy it in the local cluster (docs/cluster.md). */
#include "cli/cli.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli/admin_client.h"
#include "cli/opts.h"
#include "cluster/cluster.h"
#include "core/file.h"
#include "node/node.h"

#define LABEL_GATEWAY   "gateway.networking.k8s.io/gateway-name"
#define LABEL_DATAPLANE "istio.io/dataplane-mode"
#define LABEL_USE       "istio.io/use-waypoint"
#define PORT_METRICS    15020
#define PORT_READY      15021
/* remove: how long node proxies get to stop sending new connections, and
 * open tunnels to finish, before the process is told to stop */
#define REMOVE_WAIT_MIN_MS 200
#define REMOVE_WAIT_MAX_MS 2000

static int usage_error(const char *sub, const char *fmt, const char *arg)
{
    fprintf(stderr, "veil waypoint %s: ", sub);
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "; see 'veil waypoint --help'\n");
    return VEIL_EXIT_USAGE;
}

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

static int check_label(const char *sub, const char *what, const char *v)
{
    if (dns_label(v))
        return 0;
    fprintf(stderr,
            "veil waypoint %s: '%s' is not a valid %s name: use 1 to 63 lower-case letters, "
            "digits and '-' (not at either end)\n",
            sub, v, what);
    return -1;
}

/* ---- run ---- */

static int drain_arg(const char *s, int *ms)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 1 || v > 3600) {
        fprintf(stderr, "veil waypoint run: --drain-seconds: expected 1-3600, got '%s'\n", s);
        return -1;
    }
    *ms = (int)v * 1000;
    return 0;
}

static int wp_run(int argc, char **argv)
{
    struct veil_node_opts o = {.metrics_port = -1, .ready_port = -1, .admin_port = -1};
    struct veil_cli_node_args a = {0};
    const char *drain = NULL;
    for (int i = 2; i < argc; i++) {
        int r = veil_cli_node_opt(argc, argv, &i, &o, &a);
        if (r == 0 && (r = veil_cli_opt(argc, argv, &i, "--namespace", &o.waypoint_ns)) == 0 &&
            (r = veil_cli_opt(argc, argv, &i, "--name", &o.waypoint_name)) == 0)
            r = veil_cli_opt(argc, argv, &i, "--drain-seconds", &drain);
        if (r < 0)
            return VEIL_EXIT_USAGE;
        if (r == 0)
            return usage_error("run", "unknown argument '%s'", argv[i]);
    }
    if (o.waypoint_ns == NULL || o.waypoint_name == NULL || o.state_dir == NULL ||
        o.control == NULL) {
        fprintf(stderr, "veil waypoint run: --namespace, --name, --state-dir and --control are "
                        "required\n");
        return VEIL_EXIT_USAGE;
    }
    if (check_label("run", "namespace", o.waypoint_ns) < 0 ||
        check_label("run", "waypoint", o.waypoint_name) < 0 ||
        (drain != NULL && drain_arg(drain, &o.drain_ms) < 0) ||
        veil_cli_node_finish("waypoint run", &a, &o) != 0)
        return VEIL_EXIT_USAGE;
    return veil_node_run(&o);
}

/* ---- the namespace label (istio.io/use-waypoint) ---- */

/*
 * The Namespace NS as the control plane holds it from `veil apply` and
 * earlier --enroll (its resources.json, read-only; docs/control.md), or a
 * new one. The admin socket has no "get": a Namespace that only the config
 * directory defines cannot be changed from here anyway (the apply is
 * refused and says so).
 */
static json_t *namespace_get(const char *cluster, const char *ns)
{
    char path[512];
    veil_cluster_path(path, sizeof(path), cluster, "control/resources.json");
    json_t *doc = json_load_file(path, 0, NULL), *res, *found = NULL;
    size_t i;
    json_array_foreach(json_object_get(doc, "resources"), i, res)
    {
        json_t *o = json_object_get(res, "object");
        const char *kind = json_string_value(json_object_get(o, "kind"));
        json_t *md = json_object_get(o, "metadata");
        const char *name = json_string_value(json_object_get(md, "name"));
        if (kind != NULL && name != NULL && strcmp(kind, "Namespace") == 0 &&
            strcmp(name, ns) == 0) {
            found = json_deep_copy(o);
            break;
        }
    }
    json_decref(doc);
    if (found == NULL)
        found = json_pack("{s:s, s:s, s:{s:s}}", "apiVersion", "v1", "kind", "Namespace",
                          "metadata", "name", ns);
    json_t *md = json_object_get(found, "metadata");
    if (md != NULL && !json_is_object(json_object_get(md, "labels")))
        json_object_set_new(md, "labels", json_object());
    return found;
}

static json_t *labels_of(json_t *obj)
{
    return json_object_get(json_object_get(obj, "metadata"), "labels");
}

/* Applies `obj` through the admin socket, written first to `path`. */
static int apply_manifest(const char *cluster, const char *path, json_t *obj, char *err,
                          size_t errlen)
{
    char state[512];
    veil_cluster_path(state, sizeof(state), cluster, "control");
    char *text = obj != NULL ? json_dumps(obj, JSON_INDENT(2)) : NULL;
    if (text == NULL || veil_file_write_atomic(path, text, strlen(text), 0644, NULL) < 0) {
        snprintf(err, errlen, "cannot write %s", path);
        free(text);
        return -1;
    }
    json_t *req = json_pack("{s:s, s:[{s:s, s:s}]}", "op", "apply", "files", "path", path,
                            "content", text),
           *resp = NULL;
    free(text);
    int rc = veil_cli_admin_call(state, req, &resp, err, errlen);
    json_decref(req);
    if (rc == 0 && !json_is_true(json_object_get(resp, "ok"))) {
        const char *e = json_string_value(json_object_get(resp, "error"));
        snprintf(err, errlen, "the control plane refused it: %s", e != NULL ? e : "(no reason)");
        rc = -1;
    }
    json_decref(resp);
    return rc;
}

static int namespace_apply(const char *cluster, const char *ns, json_t *obj, char *err,
                           size_t errlen)
{
    char dir[512], path[600];
    veil_cluster_path(dir, sizeof(dir), cluster, "namespaces");
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: %s", dir, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof(path), "%s/%s.json", dir, ns);
    return apply_manifest(cluster, path, obj, err, errlen);
}

/* --enroll: the namespace's traffic goes through waypoint `name`. */
static int enroll(const char *cluster, const char *ns, const char *name, char *err, size_t errlen)
{
    json_t *obj = namespace_get(cluster, ns);
    if (obj == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    json_object_set_new(labels_of(obj), LABEL_USE, json_string(name));
    int rc = namespace_apply(cluster, ns, obj, err, errlen);
    json_decref(obj);
    return rc;
}

/* Takes the namespace's label off if it names this waypoint: 1 done, 0 it
 * did not, -1 failed. */
static int unenroll(const char *cluster, const char *ns, const char *name, char *err, size_t errlen)
{
    json_t *obj = namespace_get(cluster, ns);
    const char *use = json_string_value(json_object_get(labels_of(obj), LABEL_USE));
    int rc = 0;
    if (use != NULL && strcmp(use, name) == 0) {
        json_object_del(labels_of(obj), LABEL_USE);
        rc = namespace_apply(cluster, ns, obj, err, errlen) == 0 ? 1 : -1;
    }
    json_decref(obj);
    return rc;
}

/* ---- add ---- */

struct wp_args {
    const char *sub;
    const char *cluster, *ns, *name, *node, *timeout;
    int enroll;
};

static int parse_args(int argc, char **argv, struct wp_args *a, int add)
{
    a->name = "waypoint";
    a->node = "node-1";
    for (int i = 2; i < argc; i++) {
        int r;
        if ((r = veil_cli_opt(argc, argv, &i, "--namespace", &a->ns)) ||
            (r = veil_cli_opt(argc, argv, &i, "-n", &a->ns)) ||
            (r = veil_cli_opt(argc, argv, &i, "--name", &a->name)) ||
            (r = veil_cli_opt(argc, argv, &i, "--cluster", &a->cluster)) ||
            (add && (r = veil_cli_opt(argc, argv, &i, "--node", &a->node))) ||
            (add && (r = veil_cli_opt(argc, argv, &i, "--timeout", &a->timeout)))) {
            if (r < 0)
                return -1;
        } else if (add && strcmp(argv[i], "--enroll") == 0) {
            a->enroll = 1;
        } else {
            usage_error(a->sub, "unknown argument '%s'", argv[i]);
            return -1;
        }
    }
    if (a->ns == NULL) {
        fprintf(stderr, "veil waypoint %s: --namespace NS is required\n", a->sub);
        return -1;
    }
    a->cluster = veil_cluster_name(a->cluster);
    char err[256];
    if (veil_cluster_check_name(a->cluster, err, sizeof(err)) < 0) {
        fprintf(stderr, "veil waypoint %s: %s\n", a->sub, err);
        return -1;
    }
    return check_label(a->sub, "namespace", a->ns) < 0 || check_label(a->sub, "waypoint", a->name)
               ? -1
               : 0;
}

static int refuse_existing(const struct wp_args *a)
{
    struct veil_cluster_pod p;
    char err[512];
    if (veil_cluster_pod_find(a->cluster, a->ns, a->name, &p, err, sizeof(err)) < 0)
        return 0;
    if (p.waypoint)
        fprintf(stderr,
                "veil waypoint add: the waypoint %s/%s already exists (on %s at %s); remove it "
                "first with 'veil waypoint remove --namespace %s --name %s'\n",
                a->ns, a->name, p.node, p.address, a->ns, a->name);
    else
        fprintf(stderr,
                "veil waypoint add: there is already a pod %s/%s (not a waypoint) in the "
                "cluster '%s'; choose another --name\n",
                a->ns, a->name, a->cluster);
    return -1;
}

static int self_exe(char *buf, size_t len)
{
    ssize_t n = readlink("/proc/self/exe", buf, len - 1);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

/* Starts `veil waypoint run` in the pod and waits for its readiness. */
static int start_waypoint(struct veil_cluster_pod *p, int timeout_s, char *err, size_t errlen)
{
    char exe[512], state[512], token[512];
    if (self_exe(exe, sizeof(exe)) < 0) {
        snprintf(err, errlen, "cannot find the veil binary: /proc/self/exe: %s", strerror(errno));
        return -1;
    }
    veil_cluster_pod_state_dir(p, state, sizeof(state));
    veil_cluster_path(token, sizeof(token), p->cluster, "control/join-token");
    char *argv[] = {exe,
                    "waypoint",
                    "run",
                    "--namespace",
                    p->ns,
                    "--name",
                    p->name,
                    "--state-dir",
                    state,
                    "--control",
                    VEIL_CLUSTER_CONTROL,
                    "--token-file",
                    token,
                    NULL};
    if (veil_cluster_pod_start(p, argv, err, errlen) < 0)
        return -1;
    return veil_cluster_pod_wait_http(p, PORT_READY, "/healthz/ready", timeout_s, err, errlen);
}

static int make_waypoint(const struct wp_args *a, struct veil_cluster_pod *p, int timeout_s,
                         char *err, size_t errlen)
{
    char node_name[300];
    snprintf(node_name, sizeof(node_name), "wp.%s.%s", a->ns, a->name);
    if (veil_cluster_pod_create(p, err, errlen) < 0)
        return -1;
    json_t *labels = json_pack("{s:s, s:s}", LABEL_GATEWAY, a->name, LABEL_DATAPLANE, "none");
    int rc = labels != NULL ? veil_cli_pod_register(p, labels, node_name, err, errlen) : -1;
    json_decref(labels);
    if (rc == 0)
        rc = start_waypoint(p, timeout_s, err, errlen);
    return rc;
}

static int wp_add(int argc, char **argv)
{
    struct wp_args a = {.sub = "add"};
    int timeout_s = 30;
    if (parse_args(argc, argv, &a, 1) < 0)
        return VEIL_EXIT_USAGE;
    if (a.timeout != NULL && ((timeout_s = atoi(a.timeout)) < 1 || timeout_s > 3600))
        return usage_error("add", "--timeout: expected 1-3600 seconds, got '%s'", a.timeout);
    if (refuse_existing(&a) < 0)
        return 1;
    struct veil_cluster_pod p = {.mesh = 0, .waypoint = 1};
    snprintf(p.cluster, sizeof(p.cluster), "%s", a.cluster);
    snprintf(p.ns, sizeof(p.ns), "%s", a.ns);
    snprintf(p.name, sizeof(p.name), "%s", a.name);
    snprintf(p.sa, sizeof(p.sa), "%s", a.name);
    snprintf(p.node, sizeof(p.node), "%s", a.node);
    char err[4096], err2[256], log[512];
    if (make_waypoint(&a, &p, timeout_s, err, sizeof(err)) < 0 ||
        (a.enroll && enroll(a.cluster, a.ns, a.name, err, sizeof(err)) < 0)) {
        fprintf(stderr, "veil waypoint add: %s\n", err);
        if (p.netns[0] != '\0') { /* it was made: undo */
            veil_cli_pod_unregister(&p);
            veil_cluster_pod_delete(&p, err2, sizeof(err2));
        }
        return 1;
    }
    char td_path[512], td[256];
    veil_cluster_path(td_path, sizeof(td_path), a.cluster, "control/trust-domain");
    if (veil_file_read_line(td_path, td, sizeof(td)) != 0)
        snprintf(td, sizeof(td), "cluster.local");
    veil_cluster_pod_log(&p, log, sizeof(log));
    printf("waypoint %s/%s runs on %s at %s (pid %d, netns %s)\n", a.ns, a.name, p.node, p.address,
           (int)p.pid, p.netns);
    printf("identity spiffe://%s/ns/%s/sa/%s; it joined the control plane as the pseudo-node "
           "wp.%s.%s and serves HBONE on %s:15008 (ready)\n",
           td, a.ns, a.name, a.ns, a.name, p.address);
    printf("Pod %s/%s labelled %s=%s, %s=none (not captured by the node proxy)\n", a.ns, a.name,
           LABEL_GATEWAY, a.name, LABEL_DATAPLANE);
    if (a.enroll)
        printf("namespace %s labelled %s=%s: its services' traffic now goes through the "
               "waypoint\n",
               a.ns, LABEL_USE, a.name);
    else
        printf("nothing uses it yet: label a namespace or a Service %s=%s (or add --enroll)\n",
               LABEL_USE, a.name);
    printf("its output: %s\n", log);
    return 0;
}

/* ---- remove ---- */

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

/* The waypoint's veil_waypoint_open_tunnels gauge; -1 if unknown. */
static long open_tunnels(const struct veil_cluster_pod *p)
{
    static char body[1 << 20];
    if (veil_cluster_pod_http_get(p, PORT_METRICS, "/metrics", body, sizeof(body)) != 200)
        return -1;
    const char *m = strstr(body, "\nveil_waypoint_open_tunnels ");
    return m != NULL ? atol(m + strlen("\nveil_waypoint_open_tunnels ")) : -1;
}

/* After the Pod is gone: node proxies stop sending new connections; wait
 * until the tunnels already open are done, at most REMOVE_WAIT_MAX_MS. */
static long wait_quiet(const struct veil_cluster_pod *p)
{
    double start = now_ms();
    long open = -1;
    for (;;) {
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
        open = open_tunnels(p);
        double waited = now_ms() - start;
        if ((open <= 0 && waited >= REMOVE_WAIT_MIN_MS) || waited >= REMOVE_WAIT_MAX_MS)
            return open;
    }
}

static int find_waypoint(const struct wp_args *a, struct veil_cluster_pod *p)
{
    char err[1024];
    if (veil_cluster_pod_find(a->cluster, a->ns, a->name, p, err, sizeof(err)) < 0 ||
        !p->waypoint) {
        fprintf(stderr,
                "veil waypoint %s: there is no waypoint %s/%s in the local cluster '%s' "
                "('veil waypoint list%s%s' shows them)\n",
                a->sub, a->ns, a->name, a->cluster,
                strcmp(a->cluster, VEIL_CLUSTER_DEFAULT) ? " --cluster " : "",
                strcmp(a->cluster, VEIL_CLUSTER_DEFAULT) ? a->cluster : "");
        return -1;
    }
    return 0;
}

/* Whether every connected node proxy (waypoints aside) has acknowledged
 * the last version the control plane sent it ("upToDate"; a version that
 * changes nothing on a node is never sent to it, so its "acked" may stay
 * below the control plane's version). The control plane sends once the
 * change's callback returns, before it answers the next request. */
static bool nodes_synced(const char *state)
{
    json_t *req = json_pack("{s:s}", "op", "status"), *resp = NULL;
    char err[256];
    bool synced = false;
    if (req != NULL && veil_cli_admin_call(state, req, &resp, err, sizeof(err)) == 0) {
        const json_t *nodes = json_object_get(json_object_get(resp, "status"), "nodes");
        synced = true;
        for (size_t i = 0; i < json_array_size(nodes); i++) {
            const json_t *n = json_array_get(nodes, i);
            const char *name = json_string_value(json_object_get(n, "name"));
            if (!json_is_true(json_object_get(n, "connected")) || name == NULL ||
                strncmp(name, "wp.", 3) == 0)
                continue;
            if (!json_is_true(json_object_get(n, "upToDate")))
                synced = false;
        }
    }
    json_decref(req);
    json_decref(resp);
    return synced;
}

/* After the Pod is deleted: waits (at most 5 s) until the node proxies have
 * applied that change, so that none sends the waypoint a new connection
 * after it stops listening. */
static void wait_nodes_synced(const char *cluster)
{
    char state[512];
    veil_cluster_path(state, sizeof(state), cluster, "control");
    for (int i = 0; i < 100 && !nodes_synced(state); i++) {
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static int wp_remove(int argc, char **argv)
{
    struct wp_args a = {.sub = "remove"};
    struct veil_cluster_pod p;
    if (parse_args(argc, argv, &a, 0) < 0)
        return VEIL_EXIT_USAGE;
    if (find_waypoint(&a, &p) < 0)
        return 1;
    char err[1024];
    int un = unenroll(a.cluster, a.ns, a.name, err, sizeof(err));
    if (un < 0)
        fprintf(stderr, "veil waypoint remove: could not take the label off namespace %s: %s\n",
                a.ns, err);
    else if (un > 0)
        printf("namespace %s no longer uses the waypoint (label %s removed)\n", a.ns, LABEL_USE);
    veil_cli_pod_unregister(&p);
    printf("Pod %s/%s deleted from the control plane: node proxies stop sending it new "
           "connections\n",
           a.ns, a.name);
    wait_nodes_synced(a.cluster);
    long open = wait_quiet(&p);
    if (open > 0)
        printf("%ld tunnel(s) still open: the waypoint drains them for up to %d s\n", open,
               VEIL_NODE_WP_DRAIN_MS / 1000);
    veil_cluster_pod_stop(&p, VEIL_NODE_WP_DRAIN_MS + 2000);
    veil_cluster_pod_delete(&p, err, sizeof(err));
    printf("waypoint %s/%s stopped; its netns %s and records are gone\n", a.ns, a.name, p.netns);
    return 0;
}

/* ---- list ---- */

static int list_one(void *arg, const struct veil_cluster_pod *p)
{
    int *n = arg;
    if (!p->waypoint)
        return 0;
    if ((*n)++ == 0)
        printf("%-16s %-16s %-9s %-14s %-6s %s\n", "NAMESPACE", "NAME", "NODE", "ADDRESS", "READY",
               "PSEUDO-NODE");
    int ready = veil_cluster_pod_http_get(p, PORT_READY, "/healthz/ready", NULL, 0) == 200;
    char pseudo[300];
    snprintf(pseudo, sizeof(pseudo), "wp.%s.%s", p->ns, p->name);
    printf("%-16s %-16s %-9s %-14s %-6s %s\n", p->ns, p->name, p->node, p->address,
           ready ? "yes" : "no", pseudo);
    return 0;
}

static int wp_list(int argc, char **argv)
{
    const char *cluster = NULL;
    for (int i = 2; i < argc; i++) {
        int r = veil_cli_opt(argc, argv, &i, "--cluster", &cluster);
        if (r < 0)
            return VEIL_EXIT_USAGE;
        if (r == 0)
            return usage_error("list", "unknown argument '%s'", argv[i]);
    }
    cluster = veil_cluster_name(cluster);
    char err[512];
    int nodes = 0, n = 0;
    if (veil_cluster_check_name(cluster, err, sizeof(err)) < 0 ||
        veil_cluster_nodes(cluster, &nodes, NULL, err, sizeof(err)) < 0) {
        fprintf(stderr, "veil waypoint list: %s\n", err);
        return 1;
    }
    veil_cluster_pods_each(cluster, list_one, &n);
    if (n == 0)
        printf("no waypoint in the cluster '%s' (add one with 'veil waypoint add')\n", cluster);
    return 0;
}

int veil_cli_waypoint(const struct veil_cli_cmd *cmd, int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int argc, char **argv);
    } subs[] = {{"run", wp_run}, {"add", wp_add}, {"remove", wp_remove}, {"list", wp_list}};
    for (size_t i = 0; argc >= 2 && i < sizeof(subs) / sizeof(subs[0]); i++) {
        if (strcmp(argv[1], subs[i].name) == 0)
            return subs[i].fn(argc, argv);
    }
    if (argc >= 2)
        fprintf(stderr, "veil waypoint: unknown subcommand '%s' (run, add, remove, list)\n",
                argv[1]);
    fputs(cmd->usage, stderr);
    return VEIL_EXIT_USAGE;
}
