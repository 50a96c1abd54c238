/* veil cluster create|delete, run, exec, logs, rm: the local cluster. */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/admin_client.h"
#include "cli/opts.h"
#include "cluster/cluster.h"
#include "core/file.h"

static int parse_int(const char *cmd, const char *opt, const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 1 || v > 100000) {
        fprintf(stderr, "veil %s: %s: expected a positive number, got '%s'\n", cmd, opt, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int unknown(const char *cmd, const char *arg)
{
    fprintf(stderr, "veil %s: unknown argument '%s'; see 'veil %s --help'\n", cmd, arg, cmd);
    return VEIL_EXIT_USAGE;
}

static void print_guide(const char *name, int nodes, int proxies)
{
    int dflt = strcmp(name, VEIL_CLUSTER_DEFAULT) == 0;
    char c[64] = "", status[128] = "veil status";
    if (!dflt) {
        snprintf(c, sizeof(c), " --cluster %s", name);
        snprintf(status, sizeof(status), "veil status --state-dir %s/%s/control",
                 VEIL_CLUSTER_RUN_DIR, name);
    }
    printf("\nThe cluster '%s' is up: %d node(s), %s.\n"
           "Try:\n"
           "  veil run%s --node node-1 --name web -- python3 -m http.server 8080\n"
           "  veil run%s --node node-%d --name client -- sleep infinity\n"
           "  veil exec%s client -- curl -s http://198.18.1.10:8080/\n"
           "  veil logs%s web\n"
           "  %s\n"
           "  veil cluster delete%s%s\n",
           name, nodes, proxies ? "each with its node proxy" : "no node proxies (--no-proxies)", c,
           c, nodes, c, c, status, dflt ? "" : " --name ", dflt ? "" : name);
}

static int cluster_create(int argc, char **argv)
{
    struct veil_cluster_opts o = {.progress = stdout};
    const char *nodes = NULL, *timeout = NULL, *bin = NULL;
    for (int i = 2; i < argc; i++) {
        int r;
        if ((r = veil_cli_opt(argc, argv, &i, "--name", &o.name)) ||
            (r = veil_cli_opt(argc, argv, &i, "--nodes", &nodes)) ||
            (r = veil_cli_opt(argc, argv, &i, "--timeout", &timeout)) ||
            (r = veil_cli_opt(argc, argv, &i, "--veil", &bin))) {
            if (r < 0)
                return VEIL_EXIT_USAGE;
        } else if (strcmp(argv[i], "--no-proxies") == 0) {
            o.no_proxies = 1;
        } else {
            return unknown("cluster", argv[i]);
        }
    }
    if ((nodes != NULL && parse_int("cluster", "--nodes", nodes, &o.nodes) < 0) ||
        (timeout != NULL && parse_int("cluster", "--timeout", timeout, &o.timeout_s) < 0))
        return VEIL_EXIT_USAGE;
    o.veil_bin = bin;
    o.name = veil_cluster_name(o.name);
    char err[4096];
    if (veil_cluster_create(&o, err, sizeof(err)) < 0) {
        fprintf(stderr, "veil cluster create: %s\n", err);
        return 1;
    }
    print_guide(o.name, o.nodes > 0 ? o.nodes : 2, !o.no_proxies);
    return 0;
}

static int cluster_delete(int argc, char **argv)
{
    const char *name = NULL;
    for (int i = 2; i < argc; i++) {
        int r = veil_cli_opt(argc, argv, &i, "--name", &name);
        if (r < 0)
            return VEIL_EXIT_USAGE;
        if (r == 0)
            return unknown("cluster", argv[i]);
    }
    char err[1024];
    if (veil_cluster_delete(veil_cluster_name(name), stdout, err, sizeof(err)) < 0) {
        fprintf(stderr, "veil cluster delete: %s\n", err);
        return 1;
    }
    return 0;
}

int veil_cli_cluster(const struct veil_cli_cmd *cmd, int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "create") == 0)
        return cluster_create(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "delete") == 0)
        return cluster_delete(argc, argv);
    fputs(cmd->usage, stderr);
    return VEIL_EXIT_USAGE;
}

/* ---- veil run ---- */

struct run_args {
    struct veil_cluster_pod pod;
    json_t *labels;
    char **cmd;
};

static int add_label(json_t *labels, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (eq == NULL || eq == kv) {
        fprintf(stderr, "veil run: --label: expected key=value, got '%s'\n", kv);
        return -1;
    }
    char key[256];
    snprintf(key, sizeof(key), "%.*s", (int)(eq - kv), kv);
    return json_object_set_new(labels, key, json_string(eq + 1));
}

static int parse_run(int argc, char **argv, struct run_args *a, const char **cluster)
{
    const char *node = NULL, *name = NULL, *ns = "default", *sa = NULL, *label = NULL;
    a->pod.mesh = 1;
    int i = 1;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        int r;
        if ((r = veil_cli_opt(argc, argv, &i, "--node", &node)) ||
            (r = veil_cli_opt(argc, argv, &i, "--name", &name)) ||
            (r = veil_cli_opt(argc, argv, &i, "--namespace", &ns)) ||
            (r = veil_cli_opt(argc, argv, &i, "--service-account", &sa)) ||
            (r = veil_cli_opt(argc, argv, &i, "--cluster", cluster))) {
            if (r < 0)
                return -1;
        } else if ((r = veil_cli_opt(argc, argv, &i, "--label", &label)) != 0) {
            if (r < 0 || add_label(a->labels, label) < 0)
                return -1;
        } else if (strcmp(argv[i], "--no-mesh") == 0) {
            a->pod.mesh = 0;
        } else {
            unknown("run", argv[i]);
            return -1;
        }
    }
    if (node == NULL || name == NULL || i + 1 >= argc) {
        fprintf(stderr, "veil run: needs --node NODE, --name NAME and '-- CMD [ARGS...]'\n");
        return -1;
    }
    a->cmd = argv + i + 1;
    snprintf(a->pod.node, sizeof(a->pod.node), "%s", node);
    snprintf(a->pod.name, sizeof(a->pod.name), "%s", name);
    snprintf(a->pod.ns, sizeof(a->pod.ns), "%s", ns);
    snprintf(a->pod.sa, sizeof(a->pod.sa), "%s", sa != NULL ? sa : "");
    return 0;
}

/* Applies the Pod to the control plane; the manifest is kept beside the
 * pod's record (so errors name a real file). */
int veil_cli_pod_register(const struct veil_cluster_pod *p, json_t *labels, const char *node_name,
                          char *err, size_t errlen)
{
    char state[512], path[512];
    veil_cluster_path(state, sizeof(state), p->cluster, "control");
    snprintf(path, sizeof(path), "%s/%s/pods/%s/%s.pod.json", VEIL_CLUSTER_RUN_DIR, p->cluster,
             p->ns, p->name);
    json_t *m = json_pack("{s:s, s:s, s:{s:s, s:s, s:O}, s:{s:s, s:s}, s:{s:s}}", "apiVersion",
                          "v1", "kind", "Pod", "metadata", "name", p->name, "namespace", p->ns,
                          "labels", labels, "spec", "nodeName", node_name, "serviceAccountName",
                          p->sa, "status", "podIP", p->address);
    char *text = m != NULL ? json_dumps(m, JSON_INDENT(2)) : NULL;
    json_decref(m);
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
        snprintf(err, errlen, "the control plane refused the pod: %s",
                 json_string_value(json_object_get(resp, "error")));
        rc = -1;
    }
    json_decref(resp);
    return rc;
}

void veil_cli_pod_unregister(const struct veil_cluster_pod *p)
{
    char state[512], path[512], err[512];
    veil_cluster_path(state, sizeof(state), p->cluster, "control");
    snprintf(path, sizeof(path), "%s/%s/pods/%s/%s.pod.json", VEIL_CLUSTER_RUN_DIR, p->cluster,
             p->ns, p->name);
    json_t *files = json_array(), *resp = NULL;
    if (veil_cli_collect_files(path, files, err, sizeof(err)) == 0) {
        json_t *req = json_pack("{s:s, s:O}", "op", "delete", "files", files);
        if (veil_cli_admin_call(state, req, &resp, err, sizeof(err)) == 0)
            json_decref(resp);
        json_decref(req);
    }
    json_decref(files);
}

static int start_pod(struct run_args *a, char *err, size_t errlen)
{
    struct veil_cluster_pod *p = &a->pod;
    if (veil_cluster_pod_create(p, err, errlen) < 0)
        return -1;
    if (p->mesh && (veil_cli_pod_register(p, a->labels, p->node, err, errlen) < 0 ||
                    veil_cluster_pod_enrol(p, err, errlen) < 0))
        return -1;
    return veil_cluster_pod_start(p, a->cmd, err, errlen);
}

int veil_cli_run(const struct veil_cli_cmd *cmd, int argc, char **argv)
{
    (void)cmd;
    struct run_args a = {.labels = json_object()};
    const char *cluster = NULL;
    if (parse_run(argc, argv, &a, &cluster) < 0) {
        json_decref(a.labels);
        return VEIL_EXIT_USAGE;
    }
    snprintf(a.pod.cluster, sizeof(a.pod.cluster), "%s", veil_cluster_name(cluster));
    char err[2048], log[512];
    int rc = start_pod(&a, err, sizeof(err));
    if (rc < 0) {
        char err2[256];
        fprintf(stderr, "veil run: %s\n", err);
        if (a.pod.netns[0] != '\0') { /* it was made: undo */
            if (a.pod.mesh)
                veil_cli_pod_unregister(&a.pod);
            veil_cluster_pod_delete(&a.pod, err2, sizeof(err2));
        }
        json_decref(a.labels);
        return 1;
    }
    veil_cluster_pod_log(&a.pod, log, sizeof(log));
    printf("pod %s/%s runs on %s at %s (pid %d, netns %s)\n", a.pod.ns, a.pod.name, a.pod.node,
           a.pod.address, (int)a.pod.pid, a.pod.netns);
    if (a.pod.mesh)
        printf("in the mesh as service account %s: its traffic is captured by the node proxy\n",
               a.pod.sa);
    else
        printf("outside the mesh (--no-mesh): its traffic is plain\n");
    printf("its output: %s\n", log);
    json_decref(a.labels);
    return 0;
}

/* ---- veil exec, logs, rm ---- */

/* [--cluster C] [--namespace NS] NAME; *rest is the index after NAME. */
static int parse_pod_ref(const char *name, int argc, char **argv, struct veil_cluster_pod *p,
                         int *rest)
{
    const char *cluster = NULL, *ns = "default", *pod = NULL;
    int i = 1;
    for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
        int r;
        if ((r = veil_cli_opt(argc, argv, &i, "--cluster", &cluster)) ||
            (r = veil_cli_opt(argc, argv, &i, "--namespace", &ns)) ||
            (r = veil_cli_opt(argc, argv, &i, "-n", &ns))) {
            if (r < 0)
                return VEIL_EXIT_USAGE;
        } else if (argv[i][0] != '-' && pod == NULL) {
            pod = argv[i];
        } else {
            return unknown(name, argv[i]);
        }
    }
    if (pod == NULL) {
        fprintf(stderr, "veil %s: which pod? see 'veil %s --help'\n", name, name);
        return VEIL_EXIT_USAGE;
    }
    *rest = i;
    char err[1024];
    if (veil_cluster_pod_find(veil_cluster_name(cluster), ns, pod, p, err, sizeof(err)) < 0) {
        fprintf(stderr, "veil %s: %s\n", name, err);
        return 1;
    }
    return 0;
}

int veil_cli_exec(const struct veil_cli_cmd *cmd, int argc, char **argv)
{
    (void)cmd;
    struct veil_cluster_pod p;
    int rest = 0, rc = parse_pod_ref("exec", argc, argv, &p, &rest);
    if (rc != 0)
        return rc;
    if (rest + 1 >= argc) {
        fprintf(stderr,
                "veil exec: give the command after '--': veil exec NAME -- CMD [ARGS...]\n");
        return VEIL_EXIT_USAGE;
    }
    /* ip netns exec: the pod's netns, and its resolv.conf over /etc's. */
    int n = argc - rest - 1;
    char **full = calloc((size_t)n + 5, sizeof(char *));
    if (full == NULL)
        return 1;
    full[0] = "ip";
    full[1] = "netns";
    full[2] = "exec";
    full[3] = p.netns;
    memcpy(full + 4, argv + rest + 1, (size_t)n * sizeof(char *));
    fflush(NULL);
    execvp("ip", full);
    fprintf(stderr, "veil exec: cannot run ip (iproute2): %s\n", strerror(errno));
    free(full);
    return 1;
}

int veil_cli_logs(const struct veil_cli_cmd *cmd, int argc, char **argv)
{
    (void)cmd;
    struct veil_cluster_pod p;
    int rest = 0, rc = parse_pod_ref("logs", argc, argv, &p, &rest);
    if (rc != 0)
        return rc;
    if (rest < argc)
        return unknown("logs", argv[rest]);
    char path[512], buf[65536];
    veil_cluster_pod_log(&p, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "veil logs: %s: %s\n", path, strerror(errno));
        return 1;
    }
    ssize_t r;
    while ((r = read(fd, buf, sizeof(buf))) > 0) {
        if (veil_write_all(1, buf, (size_t)r) != 0)
            break;
    }
    close(fd);
    return 0;
}

int veil_cli_rm(const struct veil_cli_cmd *cmd, int argc, char **argv)
{
    (void)cmd;
    struct veil_cluster_pod p;
    int rest = 0, rc = parse_pod_ref("rm", argc, argv, &p, &rest);
    if (rc != 0)
        return rc;
    if (rest < argc)
        return unknown("rm", argv[rest]);
    if (p.waypoint) {
        fprintf(stderr,
                "veil rm: %s/%s is a waypoint: remove it with 'veil waypoint remove --namespace %s "
                "--name %s'\n",
                p.ns, p.name, p.ns, p.name);
        return 1;
    }
    char err[512];
    if (p.mesh)
        veil_cli_pod_unregister(&p);
    if (veil_cluster_pod_delete(&p, err, sizeof(err)) < 0) {
        fprintf(stderr, "veil rm: %s\n", err);
        return 1;
    }
    printf("pod %s/%s deleted\n", p.ns, p.name);
    return 0;
}
