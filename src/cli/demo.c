/*
 * veil demo: a local two-node cluster, four ordinary programs as pods, real
 * traffic between them, and what the mesh did with it, in plain words.
 *
 * Every step runs this very binary (/proc/self/exe) as a user would type
 * it (`veil cluster create`, `veil run`, `veil apply`, `veil exec`, `veil
 * status`), so the demo shows and exercises the real commands, and each
 * step's output lands in RUN_DIR/NAME/demo/steps.log. A failed step stops
 * the demo with what failed, the end of its output and the log to read;
 * the logs are copied out and the cluster is deleted (unless --keep).
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/opts.h"
#include "cluster/cluster.h"

#define DEMO_OUT_MAX (512 * 1024) /* a step's output kept in memory */
#define TD           "spiffe://cluster.local/ns/default/sa/"

/* Set by SIGINT / SIGTERM: the running step is stopped, then we clean up. */
static volatile sig_atomic_t demo_interrupted;

struct demo {
    const char *name;
    int keep_on_failure; /* --keep given */
    int cleanup;         /* --cleanup */
    int timeout_s;
    int created;         /* the cluster exists: failure deletes it */
    char self[PATH_MAX]; /* this binary */
    char dir[PATH_MAX];  /* RUN_DIR/NAME */
    char work[PATH_MAX]; /* RUN_DIR/NAME/demo: manifests, configs, steps.log */
    char ip[4][16];      /* web, frontend, redis, client */
    FILE *steps;         /* work/steps.log */
    char *out;           /* output of the last step (NUL-terminated) */
    size_t outlen;
};

enum { WEB, FRONTEND, REDIS, CLIENT, NPODS };

static const struct {
    const char *name, *node, *what;
} pods[NPODS] = {
    [WEB] = {"web", "node-1", "python3 -m http.server 8080"},
    [FRONTEND] = {"frontend", "node-2", "nginx on port 8081"},
    [REDIS] = {"redis", "node-2", "redis-server on port 6379"},
    [CLIENT] = {"client", "node-1", "sleep infinity (curl and redis-cli run in it)"},
};

static void on_signal(int sig)
{
    (void)sig;
    demo_interrupted = 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- running one step ---- */

static void steps_log(struct demo *d, const char *const argv[], int rc)
{
    if (d->steps == NULL)
        return;
    fputs("$", d->steps);
    for (int i = 0; argv[i] != NULL; i++)
        fprintf(d->steps, " %s", argv[i]);
    fprintf(d->steps, "\n%s%s[exit status %d]\n\n", d->out,
            d->outlen > 0 && d->out[d->outlen - 1] != '\n' ? "\n" : "", rc);
    fflush(d->steps);
}

static int read_output(struct demo *d, FILE *f)
{
    rewind(f);
    d->outlen = fread(d->out, 1, DEMO_OUT_MAX - 1, f);
    d->out[d->outlen] = '\0';
    return 0;
}

/* Waits for pid up to timeout_s (or an interrupt); kills its group after. */
static int wait_child(pid_t pid, int timeout_s)
{
    double deadline = now_s() + timeout_s;
    int status, killed = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            break;
        if (r < 0 && errno != EINTR)
            return -1;
        if (!killed && (demo_interrupted || now_s() > deadline)) {
            kill(-pid, SIGTERM);
            killed = 1;
            deadline = now_s() + 5;
        } else if (killed == 1 && now_s() > deadline) {
            kill(-pid, SIGKILL);
            killed = 2;
        }
        usleep(20000);
    }
    if (killed)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/*
 * Runs argv (argv[0] a path) in its own process group, stdin /dev/null,
 * stdout and stderr into d->out. Returns its exit status, or -1 when it
 * could not start, was killed (timeout, interrupt) or died of a signal.
 */
static int run_argv(struct demo *d, int timeout_s, const char *const argv[])
{
    d->outlen = 0;
    d->out[0] = '\0';
    FILE *f = tmpfile();
    if (f == NULL) {
        d->outlen = (size_t)snprintf(d->out, DEMO_OUT_MAX, "tmpfile: %s\n", strerror(errno));
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        setpgid(0, 0);
        int null = open("/dev/null", O_RDONLY);
        if (null >= 0)
            dup2(null, 0);
        dup2(fileno(f), 1);
        dup2(fileno(f), 2);
        execv(argv[0], (char *const *)argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int rc = -1;
    if (pid > 0) {
        setpgid(pid, pid);
        rc = wait_child(pid, timeout_s);
        read_output(d, f);
    } else {
        d->outlen = (size_t)snprintf(d->out, DEMO_OUT_MAX, "fork: %s\n", strerror(errno));
    }
    fclose(f);
    steps_log(d, argv, rc);
    return rc;
}

/* veil ARGS... */
static int run_veil(struct demo *d, int timeout_s, const char *const args[])
{
    const char *argv[32] = {d->self};
    int n = 1;
    for (int i = 0; args[i] != NULL && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return run_argv(d, timeout_s, argv);
}

/* veil exec --cluster NAME POD -- CMD... */
static int run_in(struct demo *d, const char *pod, int timeout_s, const char *const cmd[])
{
    const char *argv[40] = {d->self, "exec", "--cluster", d->name, pod, "--"};
    int n = 6;
    for (int i = 0; cmd[i] != NULL && n < 39; i++)
        argv[n++] = cmd[i];
    argv[n] = NULL;
    return run_argv(d, timeout_s, argv);
}

#define VEIL(d, t, ...)    run_veil((d), (t), (const char *const[]){__VA_ARGS__, NULL})
#define IN(d, pod, t, ...) run_in((d), (pod), (t), (const char *const[]){__VA_ARGS__, NULL})
#define ARGV(d, t, ...)    run_argv((d), (t), (const char *const[]){__VA_ARGS__, NULL})

/* ---- failure: say what, keep the logs, clean up ---- */

static void copy_file(const char *from, const char *dir, const char *as)
{
    FILE *in = fopen(from, "r");
    if (in == NULL)
        return;
    char to[PATH_MAX * 2];
    snprintf(to, sizeof(to), "%s/%s", dir, as);
    FILE *out = fopen(to, "w");
    char buf[8192];
    size_t n;
    while (out != NULL && (n = fread(buf, 1, sizeof(buf), in)) > 0)
        fwrite(buf, 1, n, out);
    if (out != NULL)
        fclose(out);
    fclose(in);
}

/* Copies the cluster's logs to a new /tmp/veil-demo-XXXXXX; NULL if none. */
static const char *save_logs(struct demo *d, char *tmpl, size_t len)
{
    snprintf(tmpl, len, "/tmp/veil-demo-XXXXXX");
    if (mkdtemp(tmpl) == NULL)
        return NULL;
    static const char *logs[][2] = {
        {"control.log", "control.log"},          {"nodes/node-1.log", "node-1.log"},
        {"nodes/node-2.log", "node-2.log"},      {"demo/steps.log", "steps.log"},
        {"pods/default/web.log", "web.log"},     {"pods/default/frontend.log", "frontend.log"},
        {"pods/default/redis.log", "redis.log"}, {"pods/default/client.log", "client.log"},
    };
    if (d->steps != NULL)
        fflush(d->steps);
    for (size_t i = 0; i < sizeof(logs) / sizeof(logs[0]); i++) {
        char from[PATH_MAX * 2];
        snprintf(from, sizeof(from), "%s/%s", d->dir, logs[i][0]);
        copy_file(from, tmpl, logs[i][1]);
    }
    return tmpl;
}

static void print_tail(const char *text, size_t len, int lines)
{
    size_t start = len;
    for (int n = 0; start > 0; start--) {
        if (text[start - 1] == '\n' && start != len && ++n >= lines)
            break;
    }
    for (const char *p = text + start; *p != '\0';) {
        const char *nl = strchr(p, '\n');
        int n = nl != NULL ? (int)(nl - p) : (int)strlen(p);
        fprintf(stderr, "    | %.*s\n", n, p);
        p += n + (nl != NULL);
    }
}

/* Prints the last lines of RUN_DIR/NAME/rel, the log most likely to say why. */
static void print_log_tail(const struct demo *d, const char *rel)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof(path), "%s/%s", d->dir, rel);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    static char buf[16384];
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, size > (long)sizeof(buf) - 1 ? size - (long)sizeof(buf) + 1 : 0, SEEK_SET);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    if (n > 0) {
        fprintf(stderr, "  %s ends with:\n", path);
        print_tail(buf, n, 8);
    }
}

/*
 * The demo failed at `what`; `log` (relative to the cluster dir, may be
 * NULL) is where the cause most likely is. Returns the exit status.
 */
static int demo_fail(struct demo *d, const char *log, const char *fmt, ...)
{
    char what[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nveil demo: FAILED: %s%s\n", what, demo_interrupted ? " (interrupted)" : "");
    if (d->outlen > 0) {
        fprintf(stderr, "  its output ended with:\n");
        print_tail(d->out, d->outlen, 12);
    }
    if (!d->created)
        return 1;
    if (log != NULL)
        print_log_tail(d, log);
    char saved[64];
    if (d->keep_on_failure) {
        fprintf(stderr,
                "\nThe cluster '%s' is kept (--keep). Look at %s/%s\n"
                "and the other logs under %s; delete it with\n"
                "  veil cluster delete --name %s\n",
                d->name, d->dir, log != NULL ? log : "demo/steps.log", d->dir, d->name);
        return 1;
    }
    const char *dir = save_logs(d, saved, sizeof(saved));
    if (dir != NULL)
        fprintf(stderr, "\nThe logs are saved in %s; look first at %s.\n", dir,
                log != NULL ? strrchr(log, '/') != NULL ? strrchr(log, '/') + 1 : log
                            : "demo-steps.log");
    fprintf(stderr, "Deleting the cluster '%s' (keep it next time with --keep) ...\n", d->name);
    demo_interrupted = 0; /* a second Ctrl-C stops the deletion */
    if (VEIL(d, 60, "cluster", "delete", "--name", d->name) != 0) {
        fprintf(stderr,
                "veil demo: could not delete it either; run "
                "'veil cluster delete --name %s'\n",
                d->name);
        print_tail(d->out, d->outlen, 8);
    }
    return 1;
}

/* ---- the files the apps need ---- */

static int write_text(struct demo *d, const char *rel, const char *text)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof(path), "%s/%s", d->work, rel);
    FILE *f = fopen(path, "w");
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) {
        d->outlen = (size_t)snprintf(d->out, DEMO_OUT_MAX, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    chmod(path, 0644);
    return 0;
}

static const char services_yaml[] =
    "# The demo's Services: a name and a port for each app (veil apply -f).\n"
    "apiVersion: v1\n"
    "kind: Service\n"
    "metadata: {name: web, namespace: default}\n"
    "spec:\n"
    "  selector: {app: web}\n"
    "  ports: [{name: http, port: 80, targetPort: 8080}]\n"
    "---\n"
    "apiVersion: v1\n"
    "kind: Service\n"
    "metadata: {name: frontend, namespace: default}\n"
    "spec:\n"
    "  selector: {app: frontend}\n"
    "  ports: [{name: http, port: 80, targetPort: 8081}]\n"
    "---\n"
    "apiVersion: v1\n"
    "kind: Service\n"
    "metadata: {name: redis, namespace: default}\n"
    "spec:\n"
    "  selector: {app: redis}\n"
    "  ports: [{name: redis, port: 6379, targetPort: 6379}]\n";

static int write_files(struct demo *d)
{
    char path[PATH_MAX * 2];
    static const char *dirs[] = {"", "/web", "/www", "/nginx-tmp"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        snprintf(path, sizeof(path), "%s%s", d->work, dirs[i]);
        if (mkdir(path, 0755) < 0 && errno != EEXIST) {
            d->outlen = (size_t)snprintf(d->out, DEMO_OUT_MAX, "%s: %s\n", path, strerror(errno));
            return -1;
        }
    }
    char conf[12 * PATH_MAX];
    snprintf(conf, sizeof(conf),
             "# nginx for the veil demo: the 'frontend' pod. Nothing under /etc or /var.\n"
             "worker_processes 1;\n"
             "pid %1$s/nginx.pid;\n"
             "error_log stderr;\n"
             "events { worker_connections 256; }\n"
             "http {\n"
             "    access_log /dev/stdout;\n"
             "    client_body_temp_path %1$s/nginx-tmp/body;\n"
             "    proxy_temp_path %1$s/nginx-tmp/proxy;\n"
             "    fastcgi_temp_path %1$s/nginx-tmp/fastcgi;\n"
             "    uwsgi_temp_path %1$s/nginx-tmp/uwsgi;\n"
             "    scgi_temp_path %1$s/nginx-tmp/scgi;\n"
             "    # The pod's DNS is answered by the node proxy (port 53 is captured).\n"
             "    resolver 198.18.0.1 ipv6=off valid=10s;\n"
             "    server {\n"
             "        listen 8081;\n"
             "        root %1$s/www;\n"
             "        location /api/ {\n"
             "            set $web web.default.svc.cluster.local;\n"
             "            proxy_pass http://$web/;\n"
             "        }\n"
             "    }\n"
             "}\n",
             d->work);
    if (write_text(d, "nginx.conf", conf) < 0 ||
        write_text(d, "www/index.html",
                   "<h1>Hello from frontend</h1>\n"
                   "<p>nginx on node-2; /api/ is passed on to the web service.</p>\n") < 0 ||
        write_text(d, "web/index.html",
                   "<h1>Hello from web</h1>\n"
                   "<p>python3 -m http.server on node-1.</p>\n") < 0 ||
        write_text(d, "services.yaml", services_yaml) < 0)
        return -1;
    return 0;
}

/* ---- steps ---- */

static int read_ip(struct demo *d, int pod)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof(path), "%s/pods/default/%s.json", d->dir, pods[pod].name);
    json_t *j = json_load_file(path, 0, NULL);
    const char *ip = json_string_value(json_object_get(j, "address"));
    snprintf(d->ip[pod], sizeof(d->ip[pod]), "%s", ip != NULL ? ip : "?");
    json_decref(j);
    return 0;
}

static int start_pods(struct demo *d)
{
    char nginx_conf[PATH_MAX * 2], webdir[PATH_MAX * 2];
    snprintf(nginx_conf, sizeof(nginx_conf), "%s/nginx.conf", d->work);
    snprintf(webdir, sizeof(webdir), "%s/web", d->work);
    for (int p = 0; p < NPODS; p++) {
        const char *name = pods[p].name, *node = pods[p].node;
        char label[64];
        snprintf(label, sizeof(label), "app=%s", name);
        int rc = -1;
        switch (p) {
        case WEB:
            rc = VEIL(d, 60, "run", "--cluster", d->name, "--node", node, "--name", name, "--label",
                      label, "--", "python3", "-m", "http.server", "8080", "--directory", webdir);
            break;
        case FRONTEND:
            rc = VEIL(d, 60, "run", "--cluster", d->name, "--node", node, "--name", name, "--label",
                      label, "--", "/usr/sbin/nginx", "-c", nginx_conf, "-g", "daemon off;");
            break;
        case REDIS:
            rc = VEIL(d, 60, "run", "--cluster", d->name, "--node", node, "--name", name, "--label",
                      label, "--", "redis-server", "--port", "6379", "--save", "", "--appendonly",
                      "no", "--protected-mode", "no");
            break;
        default:
            rc = VEIL(d, 60, "run", "--cluster", d->name, "--node", node, "--name", name, "--",
                      "sleep", "infinity");
            break;
        }
        if (rc != 0)
            return demo_fail(d, "demo/steps.log", "veil run %s (on %s)", name, node);
        read_ip(d, p);
        printf("     %-9s %-46s on %s, %s\n", name, pods[p].what, node, d->ip[p]);
    }
    return 0;
}

/* Runs a check in the client until it succeeds (the apps take a moment). */
static int until_ok(struct demo *d, const char *const cmd[])
{
    double deadline = now_s() + d->timeout_s;
    for (;;) {
        int rc = run_in(d, "client", 10, cmd);
        if (rc == 0 || demo_interrupted || now_s() > deadline)
            return rc;
        usleep(300000);
    }
}

static void first_line_of(const char *text, char *buf, size_t len)
{
    size_t n = strcspn(text, "\r\n");
    snprintf(buf, len, "%.*s", (int)(n < len ? n : len - 1), text);
}

static int traffic_web(struct demo *d)
{
    static const struct {
        const char *url, *pod_log, *expect, *says;
    } gets[] = {
        {"http://web/", "pods/default/web.log", "Hello from web",
         "the web service by its short name"},
        {"http://web.default.svc.cluster.local/", "pods/default/web.log", "Hello from web",
         "the same by its full name"},
        {"http://frontend/", "pods/default/frontend.log", "Hello from frontend",
         "the nginx frontend"},
        {"http://frontend/api/", "pods/default/frontend.log", "Hello from web",
         "nginx passes /api/ on to web"},
    };
    for (size_t i = 0; i < sizeof(gets) / sizeof(gets[0]); i++) {
        const char *const cmd[] = {"curl", "-fsS", "-m", "5", gets[i].url, NULL};
        if (until_ok(d, cmd) != 0 || strstr(d->out, gets[i].expect) == NULL)
            return demo_fail(d, gets[i].pod_log, "client: curl %s (expected \"%s\")", gets[i].url,
                             gets[i].expect);
        char line[80];
        first_line_of(d->out, line, sizeof(line));
        printf("     client$ curl %-38s %s\n", gets[i].url, line);
        printf("             (%s)\n", gets[i].says);
    }
    return 0;
}

static int traffic_redis(struct demo *d)
{
    const char *const ping[] = {"redis-cli", "-h", "redis", "PING", NULL};
    if (until_ok(d, ping) != 0 || strstr(d->out, "PONG") == NULL)
        return demo_fail(d, "pods/default/redis.log", "client: redis-cli -h redis PING");
    printf("     client$ redis-cli -h redis PING %23s PONG\n", "");
    if (IN(d, "client", 10, "redis-cli", "-h", "redis", "SET", "greeting",
           "hello through the mesh") != 0 ||
        IN(d, "client", 10, "redis-cli", "-h", "redis", "GET", "greeting") != 0 ||
        strstr(d->out, "hello through the mesh") == NULL)
        return demo_fail(d, "pods/default/redis.log", "client: redis-cli SET/GET greeting");
    printf("     client$ redis-cli -h redis SET greeting / GET greeting  \"hello through the "
           "mesh\"\n");
    if (IN(d, "client", 60, "redis-benchmark", "-h", "redis.default.svc.cluster.local", "-q", "-n",
           "2000", "-c", "10", "-t", "set,get") != 0 ||
        strstr(d->out, "requests per second") == NULL)
        return demo_fail(d, "pods/default/redis.log", "client: redis-benchmark against redis");
    /* -q rewrites its line with \r; keep the final "SET: N requests per second". */
    for (char *s = strtok(d->out, "\r\n"); s != NULL; s = strtok(NULL, "\r\n")) {
        char *r = strstr(s, " requests per second");
        if (r != NULL && strstr(s, "rps=") == NULL) {
            while (*s == ' ')
                s++;
            printf("     client$ redis-benchmark -h redis ... %-17s %.*s requests/s\n",
                   strncmp(s, "SET", 3) == 0 ? "(2,000 SETs)" : "(2,000 GETs)", (int)(r - s), s);
        }
    }
    return 0;
}

/* ---- what the node proxies counted ---- */

static void label(const char *line, const char *key, char *buf, size_t len)
{
    char pat[64];
    snprintf(pat, sizeof(pat), "%s=\"", key);
    const char *p = strstr(line, pat);
    buf[0] = '\0';
    if (p == NULL)
        return;
    p += strlen(pat);
    size_t n = strcspn(p, "\"");
    snprintf(buf, len, "%.*s", (int)(n < len ? n : len - 1), p);
}

/* One source -> destination pair, summed over the proxies' series. */
struct edge {
    char src[64], dst[64], svc[128], src_id[256], dst_id[256];
    long ok, failed, plain; /* response_flags "-" / other; not mutual TLS */
    char flags[32];         /* the last failure's flags */
};

static struct edge *edge_of(struct edge *e, int *n, int max, const char *src, const char *dst)
{
    for (int i = 0; i < *n; i++)
        if (strcmp(e[i].src, src) == 0 && strcmp(e[i].dst, dst) == 0)
            return &e[i];
    if (*n >= max)
        return NULL;
    struct edge *x = &e[(*n)++];
    memset(x, 0, sizeof(*x));
    snprintf(x->src, sizeof(x->src), "%s", src);
    snprintf(x->dst, sizeof(x->dst), "%s", dst);
    return x;
}

/* Reads istio_tcp_connections_opened_total{reporter="source"} of both nodes. */
static int read_edges(struct demo *d, struct edge *e, int max)
{
    int n = 0;
    for (int node = 1; node <= 2; node++) {
        char netns[64];
        snprintf(netns, sizeof(netns), "veil-%s-node-%d", d->name, node);
        if (ARGV(d, 10, "/usr/sbin/ip", "netns", "exec", netns, "curl", "-fsS", "-m", "3",
                 "http://127.0.0.1:15020/metrics") != 0)
            return -1;
        for (char *s = strtok(d->out, "\n"); s != NULL; s = strtok(NULL, "\n")) {
            if (strncmp(s, "istio_tcp_connections_opened_total{", 35) != 0 ||
                strstr(s, "reporter=\"source\"") == NULL)
                continue;
            char src[64], dst[64], security[32], flags[32];
            label(s, "source_workload", src, sizeof(src));
            label(s, "destination_workload", dst, sizeof(dst));
            label(s, "connection_security_policy", security, sizeof(security));
            label(s, "response_flags", flags, sizeof(flags));
            struct edge *x = edge_of(e, &n, max, src, dst);
            if (x == NULL)
                break;
            label(s, "destination_service", x->svc, sizeof(x->svc));
            label(s, "source_principal", x->src_id, sizeof(x->src_id));
            label(s, "destination_principal", x->dst_id, sizeof(x->dst_id));
            const char *v = strrchr(s, ' ');
            long count = v != NULL ? strtol(v + 1, NULL, 10) : 0;
            if (strcmp(security, "mutual_tls") != 0)
                x->plain += count;
            if (strcmp(flags, "-") == 0) {
                x->ok += count;
            } else {
                x->failed += count;
                snprintf(x->flags, sizeof(x->flags), "%s", flags);
            }
        }
    }
    return n;
}

static int has_edge(const struct edge *e, int n, const char *src, const char *dst)
{
    for (int i = 0; i < n; i++)
        if (strcmp(e[i].src, src) == 0 && strcmp(e[i].dst, dst) == 0 && e[i].ok > 0)
            return 1;
    return 0;
}

static int show_metrics(struct demo *d)
{
    static const char *want[][2] = {
        {"client", "web"}, {"client", "frontend"}, {"frontend", "web"}, {"client", "redis"}};
    struct edge e[64];
    int n = 0, all = 0;
    double deadline = now_s() + 10; /* counted when a connection ends */
    while (!all && !demo_interrupted && now_s() < deadline) {
        if ((n = read_edges(d, e, 64)) < 0)
            return demo_fail(d, "nodes/node-1.log", "reading the node proxies' metrics (15020)");
        all = 1;
        for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
            all = all && has_edge(e, n, want[i][0], want[i][1]);
        if (!all)
            usleep(300000);
    }
    if (!all)
        return demo_fail(d, "nodes/node-1.log",
                         "the node proxies did not count the connections "
                         "client->web, client->frontend, frontend->web, client->redis");
    long plain = 0;
    for (int i = 0; i < n; i++) {
        printf("     %-8s -> %-8s %4ld connection(s), %s", e[i].src, e[i].dst, e[i].ok,
               e[i].plain == 0 ? "all mutual TLS" : "NOT ALL ENCRYPTED");
        if (e[i].failed > 0)
            printf(" (and %ld that failed, flag %s: the app was not listening yet)", e[i].failed,
                   e[i].flags);
        printf("\n         from %s\n         to   %s\n", e[i].src_id, e[i].dst_id);
        plain += e[i].plain;
    }
    if (plain > 0)
        return demo_fail(d, "nodes/node-1.log", "%ld connection(s) were not mutual TLS", plain);
    return 0;
}

/* The web server's own log: it saw the callers' real addresses. */
static int show_seen(struct demo *d)
{
    if (VEIL(d, 10, "logs", "--cluster", d->name, "web") != 0)
        return demo_fail(d, "pods/default/web.log", "veil logs web");
    printf("\n6. veil logs --cluster %s web (python's own log: who called it)\n", d->name);
    for (char *s = strtok(d->out, "\n"); s != NULL; s = strtok(NULL, "\n")) {
        if (strncmp(s, d->ip[CLIENT], strlen(d->ip[CLIENT])) == 0 &&
            s[strlen(d->ip[CLIENT])] == ' ')
            printf("     %s      <- client\n", s);
        else if (strncmp(s, d->ip[FRONTEND], strlen(d->ip[FRONTEND])) == 0 &&
                 s[strlen(d->ip[FRONTEND])] == ' ')
            printf("     %s      <- frontend (nginx)\n", s);
    }
    return 0;
}

static void print_indented(const char *text)
{
    for (const char *p = text; *p != '\0';) {
        const char *nl = strchr(p, '\n');
        int n = nl != NULL ? (int)(nl - p) : (int)strlen(p);
        printf("     %.*s\n", n, p);
        p += n + (nl != NULL);
    }
}

static void print_summary(const struct demo *d)
{
    printf("\nIn plain words:\n"
           "  - Four ordinary programs ran unchanged; none of them knows about veil.\n"
           "  - client called web, frontend and redis by name, and frontend (nginx)\n"
           "    called web. The node proxy of the caller's node answered the names.\n"
           "  - Every one of these connections went from node proxy to node proxy over\n"
           "    mutual TLS 1.3 (HBONE, port 15008), also between pods of one node. Both\n"
           "    ends proved who they are with a certificate for their identity:\n"
           "      client   " TD "client\n"
           "      web      " TD "web\n"
           "      frontend " TD "frontend\n"
           "      redis    " TD "redis\n"
           "  - The apps still saw each caller's own address (%s for client).\n"
           "\n"
           "Where to look next:\n"
           "  veil status --state-dir %s/control\n"
           "      nodes, workloads and their identities\n"
           "  veil logs --cluster %s frontend\n"
           "      an app's own output (also web, redis, client)\n"
           "  veil exec --cluster %s client -- curl -s http://frontend/api/\n"
           "      run your own commands in a pod\n"
           "  ip netns exec veil-%s-node-1 curl -s http://127.0.0.1:15020/metrics\n"
           "      the node proxy's metrics (Istio's names; node-2 likewise)\n"
           "  %s/nodes/node-1.log\n"
           "      the node proxy's log: one JSON line per connection\n"
           "  %s/demo/\n"
           "      the demo's Services (services.yaml), nginx.conf and steps.log\n"
           "  docs/cluster.md, docs/node.md: how it works\n",
           d->ip[CLIENT], d->dir, d->name, d->name, d->name, d->dir, d->dir);
}

/* ---- the demo ---- */

static int parse_args(struct demo *d, const char *usage, int argc, char **argv)
{
    const char *timeout = NULL;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = veil_cli_opt(argc, argv, &i, "--name", &d->name)) ||
            (r = veil_cli_opt(argc, argv, &i, "--timeout", &timeout))) {
            if (r < 0)
                return -1;
        } else if (strcmp(argv[i], "--keep") == 0) {
            d->keep_on_failure = 1;
        } else if (strcmp(argv[i], "--cleanup") == 0) {
            d->cleanup = 1;
        } else {
            fprintf(stderr, "veil demo: unknown argument '%s'\n\n%s", argv[i], usage);
            return -1;
        }
    }
    if (d->keep_on_failure && d->cleanup) {
        fprintf(stderr, "veil demo: --keep and --cleanup contradict each other\n");
        return -1;
    }
    if (timeout != NULL) {
        char *end;
        long v = strtol(timeout, &end, 10);
        if (*timeout == '\0' || *end != '\0' || v < 1 || v > 3600) {
            fprintf(stderr, "veil demo: --timeout: expected seconds (1-3600), got '%s'\n", timeout);
            return -1;
        }
        d->timeout_s = (int)v;
    }
    char err[256];
    if (veil_cluster_check_name(d->name, err, sizeof(err)) < 0) {
        fprintf(stderr, "veil demo: --name: %s\n", err);
        return -1;
    }
    return 0;
}

static int preflight(struct demo *d)
{
    if (geteuid() != 0) {
        fprintf(stderr, "veil demo: needs root (it makes network namespaces); "
                        "try 'sudo veil demo'\n");
        return -1;
    }
    static const char *progs[] = {"/usr/sbin/ip",       "/usr/bin/python3",
                                  "/usr/sbin/nginx",    "/usr/bin/redis-server",
                                  "/usr/bin/redis-cli", "/usr/bin/redis-benchmark",
                                  "/usr/bin/curl"};
    for (size_t i = 0; i < sizeof(progs) / sizeof(progs[0]); i++) {
        if (access(progs[i], X_OK) != 0) {
            fprintf(stderr,
                    "veil demo: %s is missing; 'scripts/setup' (or 'make demo') installs "
                    "what the demo needs\n",
                    progs[i]);
            return -1;
        }
    }
    ssize_t n = readlink("/proc/self/exe", d->self, sizeof(d->self) - 1);
    if (n <= 0) {
        fprintf(stderr, "veil demo: /proc/self/exe: %s\n", strerror(errno));
        return -1;
    }
    d->self[n] = '\0';
    veil_cluster_path(d->dir, sizeof(d->dir), d->name, NULL);
    veil_cluster_path(d->work, sizeof(d->work), d->name, "demo");
    return 0;
}

static int make_cluster(struct demo *d)
{
    struct stat st;
    if (stat(d->dir, &st) == 0) {
        printf("   (a cluster '%s' from an earlier run exists: deleting it first)\n", d->name);
        if (VEIL(d, 90, "cluster", "delete", "--name", d->name) != 0)
            return demo_fail(d, NULL, "veil cluster delete --name %s (the earlier one)", d->name);
    }
    double t0 = now_s();
    char timeout[16];
    snprintf(timeout, sizeof(timeout), "%d", d->timeout_s);
    if (VEIL(d, d->timeout_s * 4 + 30, "cluster", "create", "--name", d->name, "--nodes", "2",
             "--timeout", timeout) != 0)
        return demo_fail(d, NULL,
                         "veil cluster create --name %s --nodes 2 (it cleaned up after "
                         "itself)",
                         d->name);
    d->created = 1;
    if (write_files(d) < 0)
        return demo_fail(d, NULL, "writing the demo's files in %s", d->work);
    char path[PATH_MAX * 2];
    snprintf(path, sizeof(path), "%s/steps.log", d->work);
    d->steps = fopen(path, "a");
    printf("     control plane at 198.18.0.1; node-1 and node-2, each with its node proxy "
           "(%.1f s)\n",
           now_s() - t0);
    return 0;
}

static int demo_run(struct demo *d)
{
    printf("veil demo: a two-node mesh on this machine, made of network namespaces.\n\n"
           "1. A local cluster '%s'\n",
           d->name);
    if (make_cluster(d) != 0)
        return 1;

    char manifest[PATH_MAX * 2], st[PATH_MAX + 16];
    snprintf(manifest, sizeof(manifest), "%s/services.yaml", d->work);
    snprintf(st, sizeof(st), "%s/control", d->dir);
    printf("\n2. Four ordinary programs as pods (veil run):\n");
    if (start_pods(d) != 0)
        return 1;
    printf("   and Services web, frontend and redis for three of them: a name and a port\n"
           "   (veil apply -f %s)\n",
           manifest);
    if (VEIL(d, 30, "apply", "--state-dir", st, "-f", manifest) != 0)
        return demo_fail(d, "control.log", "veil apply -f %s", manifest);

    printf("\n3. Traffic, from inside the client pod (veil exec):\n");
    if (traffic_web(d) != 0 || traffic_redis(d) != 0)
        return 1;

    printf("\n4. What the node proxies counted (istio_tcp_connections_opened_total on "
           "port 15020):\n");
    if (show_metrics(d) != 0)
        return 1;

    printf("\n5. veil status --state-dir %s\n", st);
    for (double end = now_s() + 5;; usleep(200000)) {
        if (VEIL(d, 30, "status", "--state-dir", st) != 0)
            return demo_fail(d, "control.log", "veil status");
        if (strstr(d->out, "catching up") == NULL || now_s() > end)
            break;
    }
    print_indented(d->out);
    if (show_seen(d) != 0)
        return 1;

    print_summary(d);
    if (d->cleanup) {
        printf("\nDeleting the cluster (--cleanup) ...\n");
        if (VEIL(d, 90, "cluster", "delete", "--name", d->name) != 0) {
            print_tail(d->out, d->outlen, 8);
            fprintf(stderr, "veil demo: 'veil cluster delete --name %s' failed\n", d->name);
            return 1;
        }
        printf("Done: nothing of the demo is left.\n");
    } else {
        printf("\nThe cluster '%s' keeps running. When you are done:\n"
               "  veil cluster delete --name %s\n",
               d->name, d->name);
    }
    return 0;
}

int veil_cli_demo(const struct veil_cli_cmd *cmd, int argc, char **argv)
{
    struct demo d = {.name = "demo", .timeout_s = 30};
    if (parse_args(&d, cmd->usage, argc, argv) < 0)
        return VEIL_EXIT_USAGE;
    if (preflight(&d) < 0)
        return 1;
    d.out = malloc(DEMO_OUT_MAX);
    if (d.out == NULL)
        return 1;
    d.out[0] = '\0';
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    setvbuf(stdout, NULL, _IOLBF, 0);

    int rc = demo_run(&d);
    if (d.steps != NULL)
        fclose(d.steps);
    free(d.out);
    return rc;
}
