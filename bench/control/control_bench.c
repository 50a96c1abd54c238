/*
 * bench/control: how fast one workload change reaches every subscribed
 * proxy, and what the control plane costs meanwhile.
 *
 * It starts a real `veil control` (a separate process, so that its RSS and
 * CPU are its own), applies W workloads and S Services through the admin
 * socket, joins N nodes over the real protocol (/v1/join), subscribes them
 * all (/v1/watch over mutual TLS and HTTP/2, one connection each, all on one
 * event loop in this process) and acknowledges every version like a node
 * proxy does. Then it changes one workload's address C times, and for each
 * change measures, per node, the time from the start of the apply to the
 * arrival of the update. The baseline, measured in the same run, is the
 * same change with one subscribed node.
 *
 *   build/bench/control_bench [--veil build/veil] [--nodes 1000]
 *       [--workloads 10000] [--services 1000] [--changes 20]
 */
#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/admin_client.h"
#include "control/push_client.h"
#include "core/alloc.h"
#include "core/file.h"
#include "core/log.h"
#include "core/loop.h"

struct node {
    struct bench *b;
    char name[32];
    struct veil_push_join_result join;
    struct veil_push_client *pc;
    uint64_t version; /* last version received */
    bool synced;      /* the snapshot arrived */
    uint64_t got_ns;  /* when the awaited version arrived */
    uint64_t want;    /* the version being awaited (0: none) */
    bool failed;
};

struct bench {
    const char *veil;
    int nodes, workloads, services, changes;
    char dir[256];
    pid_t control;
    char addr[64];
    uint16_t push_port;
    struct veil_loop *loop;
    struct node *n;
    int active; /* nodes in use in this phase */
    atomic_int synced, arrived, failed;
    atomic_ullong want; /* version awaited by every node */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The control plane being measured, stopped by die() too. */
static pid_t g_control;

static void die(const char *what)
{
    fprintf(stderr, "control_bench: %s\n", what);
    if (g_control > 0) {
        kill(g_control, SIGTERM);
        waitpid(g_control, NULL, 0);
    }
    exit(1);
}

/* ---- the control plane process ---- */

static long proc_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    size_t fl = strlen(field);
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, field, fl) == 0 && line[fl] == ':')
            kb = strtol(line + fl + 1, NULL, 10);
    if (f != NULL)
        fclose(f);
    return kb;
}

static double proc_cpu_s(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL || fgets(buf, sizeof(buf), f) == NULL) {
        if (f != NULL)
            fclose(f);
        return -1;
    }
    fclose(f);
    const char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    /* fields after ')': state(3) ... utime(14) stime(15) */
    if (p == NULL ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static void control_start(struct bench *b)
{
    char log[320], ports[320], sock[320], state[300];
    snprintf(state, sizeof(state), "%s/state", b->dir);
    snprintf(log, sizeof(log), "%s/control.log", b->dir);
    snprintf(ports, sizeof(ports), "%s/ports", state);
    snprintf(sock, sizeof(sock), "%s/control.sock", state);
    mkdir(state, 0700);
    b->control = fork();
    if (b->control < 0)
        die("fork");
    if (b->control > 0)
        g_control = b->control;
    if (b->control == 0) {
        FILE *f = freopen(log, "w", stderr);
        (void)f;
        dup2(2, 1);
        execl(b->veil, "veil", "control", "--state-dir", state, "--listen", "127.0.0.1",
              "--push-port", "0", "--status-port", "0", (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 300; i++) {
        char line[128];
        if (access(sock, F_OK) == 0 && veil_file_read_line(ports, line, sizeof(line)) == 0) {
            FILE *f = fopen(ports, "r");
            char k[32];
            unsigned p;
            while (f != NULL && fscanf(f, "%31s %u", k, &p) == 2)
                if (strcmp(k, "push") == 0)
                    b->push_port = (uint16_t)p;
            if (f != NULL)
                fclose(f);
            if (b->push_port != 0)
                return;
        }
        usleep(100000);
    }
    die("the control plane did not start (see its log in the bench dir)");
}

static void control_stop(struct bench *b)
{
    kill(b->control, SIGTERM);
    waitpid(b->control, NULL, 0);
}

/* ---- configuration ---- */

static void pod_yaml(FILE *f, const struct bench *b, int i, int gen)
{
    int svc = i % b->services;
    /* Addresses in 198.18.0.0/15, never used on a wire here. */
    unsigned a = (unsigned)i + (unsigned)gen * 20000u;
    fprintf(f,
            "apiVersion: v1\nkind: Pod\nmetadata: {name: w-%d, namespace: ns-%d, labels: {app: "
            "s-%d}}\nspec: {nodeName: node-%d, serviceAccountName: sa-%d}\nstatus: {podIP: "
            "198.%u.%u.%u}\n---\n",
            i, svc % 10, svc, i % b->nodes, svc, 18 + (a >> 16), (a >> 8) & 255, a & 255);
}

static int admin_apply(struct bench *b, const char *path)
{
    char err[1024], state[300];
    snprintf(state, sizeof(state), "%s/state", b->dir);
    size_t len;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    fseek(f, 0, SEEK_END);
    len = (size_t)ftell(f);
    rewind(f);
    char *text = malloc(len + 1);
    if (text == NULL || fread(text, 1, len, f) != len) {
        fclose(f);
        free(text);
        return -1;
    }
    fclose(f);
    text[len] = 0;
    json_t *req =
        json_pack("{s:s,s:[{s:s,s:s}]}", "op", "apply", "files", "path", path, "content", text);
    free(text);
    json_t *resp = NULL;
    int rc = veil_cli_admin_call(state, req, &resp, err, sizeof(err));
    json_decref(req);
    if (rc == 0 && !json_is_true(json_object_get(resp, "ok"))) {
        fprintf(stderr, "apply: %s\n", json_string_value(json_object_get(resp, "error")));
        rc = -1;
    } else if (rc != 0) {
        fprintf(stderr, "apply: %s\n", err);
    }
    json_decref(resp);
    return rc;
}

static void apply_all(struct bench *b)
{
    char path[320];
    snprintf(path, sizeof(path), "%s/all.yaml", b->dir);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        die("cannot write the manifests");
    for (int s = 0; s < b->services; s++)
        fprintf(f,
                "apiVersion: v1\nkind: Service\nmetadata: {name: s-%d, namespace: ns-%d}\n"
                "spec:\n  selector: {app: s-%d}\n  ports: [{name: http, port: 80, targetPort: "
                "8080}]\n---\n",
                s, s % 10, s);
    for (int i = 0; i < b->workloads; i++)
        pod_yaml(f, b, i, 0);
    fclose(f);
    if (admin_apply(b, path) != 0)
        die("the initial apply failed");
}

static void apply_change(struct bench *b, int gen)
{
    char path[320];
    snprintf(path, sizeof(path), "%s/change.yaml", b->dir);
    FILE *f = fopen(path, "w");
    if (f == NULL)
        die("cannot write the change");
    pod_yaml(f, b, 0, gen);
    fclose(f);
    if (admin_apply(b, path) != 0)
        die("a change failed");
}

/* ---- subscribers (on the loop thread) ---- */

static uint64_t line_version(const char *json)
{
    const char *p = strstr(json, "\"version\":");
    return p != NULL ? strtoull(p + 10, NULL, 10) : 0;
}

static void on_update(struct veil_push_client *pc, const char *json, size_t len, void *arg)
{
    (void)len;
    struct node *n = arg;
    uint64_t v = line_version(json);
    n->version = v;
    veil_push_client_ack(pc, v);
    if (!n->synced) {
        n->synced = true;
        atomic_fetch_add(&n->b->synced, 1);
    }
    uint64_t want = atomic_load(&n->b->want);
    if (want != 0 && v >= want && n->want != want) {
        n->want = want;
        n->got_ns = now_ns();
        atomic_fetch_add(&n->b->arrived, 1);
    }
}

static void on_end(struct veil_push_client *pc, int status, const char *err, void *arg)
{
    (void)pc;
    struct node *n = arg;
    fprintf(stderr, "%s: watch ended: %d %s\n", n->name, status, err ? err : "");
    n->failed = true;
    atomic_fetch_add(&n->b->failed, 1);
}

static void on_connect(struct veil_push_client *pc, const char *err, void *arg)
{
    struct node *n = arg;
    if (err != NULL) {
        fprintf(stderr, "%s: connect: %s\n", n->name, err);
        n->failed = true;
        atomic_fetch_add(&n->b->failed, 1);
        return;
    }
    if (veil_push_client_watch(pc, 0, false, on_update, on_end, n) != 0) {
        n->failed = true;
        atomic_fetch_add(&n->b->failed, 1);
    }
}

struct range {
    struct bench *b;
    int from, to;
    bool close;
};

static void subscribe_range(void *arg)
{
    struct range *r = arg;
    struct bench *b = r->b;
    for (int i = r->from; i < r->to; i++) {
        struct node *n = &b->n[i];
        if (r->close) {
            veil_push_client_free(n->pc);
            n->pc = NULL;
            continue;
        }
        char err[256];
        struct veil_push_client_opts o = {
            .addr = b->addr,
            .port = b->push_port,
            .cert_pem = n->join.cert_pem,
            .key_pem = n->join.key_pem,
            .trust_bundle_pem = n->join.trust_bundle_pem,
            .server_id = n->join.control_id,
            .timeout_ms = 120000,
        };
        n->pc = veil_push_client_connect(b->loop, &o, on_connect, n, err, sizeof(err));
        if (n->pc == NULL) {
            fprintf(stderr, "%s: %s\n", n->name, err);
            n->failed = true;
            atomic_fetch_add(&b->failed, 1);
        }
    }
    free(r);
}

static void *loop_thread(void *arg)
{
    veil_loop_run(arg);
    return NULL;
}

static void post_range(struct bench *b, int from, int to, bool close)
{
    struct range *r = malloc(sizeof(*r));
    if (r == NULL)
        die("out of memory");
    *r = (struct range){b, from, to, close};
    if (veil_loop_post(b->loop, subscribe_range, r) != 0)
        die("loop post");
}

static void wait_for(atomic_int *counter, int target, struct bench *b, int timeout_s)
{
    uint64_t end = now_ns() + (uint64_t)timeout_s * 1000000000ull;
    while (atomic_load(counter) < target) {
        int st;
        if (waitpid(b->control, &st, WNOHANG) == b->control) {
            fprintf(stderr, "control_bench: the control plane exited: %s %d (log: %s)\n",
                    WIFSIGNALED(st) ? "signal" : "status",
                    WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st), b->dir);
            g_control = 0;
            exit(1);
        }
        if (atomic_load(&b->failed) > 0)
            die("a subscriber failed (see above)");
        if (now_ns() > end)
            die("timed out waiting for the subscribers");
        usleep(1000);
    }
}

/* ---- measurement ---- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_ms(uint64_t *v, size_t n, double p)
{
    qsort(v, n, sizeof(*v), cmp_u64);
    size_t i = (size_t)(p * (double)(n - 1) + 0.5);
    return (double)v[i] / 1e6;
}

struct result {
    double p50, p99, all_p50, all_p99; /* ms: per node; time to all */
    double cpu_s;                      /* control plane CPU over the changes */
};

/* Makes `changes` changes with `active` nodes subscribed. */
static struct result run_changes(struct bench *b, int *gen)
{
    size_t ns = (size_t)b->active * (size_t)b->changes;
    uint64_t *per = malloc(ns * sizeof(*per));
    uint64_t *all = malloc((size_t)b->changes * sizeof(*all));
    if (per == NULL || all == NULL)
        die("out of memory");
    double cpu0 = proc_cpu_s(b->control);
    size_t k = 0;
    for (int c = 0; c < b->changes; c++) {
        /* The version the change will make: one past what everyone has. */
        uint64_t v = 0;
        for (int i = 0; i < b->active; i++)
            if (b->n[i].version > v)
                v = b->n[i].version;
        atomic_store(&b->arrived, 0);
        atomic_store(&b->want, v + 1);
        uint64_t t0 = now_ns();
        apply_change(b, ++*gen);
        wait_for(&b->arrived, b->active, b, 60);
        uint64_t last = 0;
        for (int i = 0; i < b->active; i++) {
            uint64_t d = b->n[i].got_ns - t0;
            per[k++] = d;
            if (d > last)
                last = d;
        }
        all[c] = last;
        atomic_store(&b->want, 0);
        usleep(50000); /* let the acks land before the next change */
    }
    struct result r = {
        .p50 = pct_ms(per, k, 0.50),
        .p99 = pct_ms(per, k, 0.99),
        .all_p50 = pct_ms(all, (size_t)b->changes, 0.50),
        .all_p99 = pct_ms(all, (size_t)b->changes, 0.99),
        .cpu_s = proc_cpu_s(b->control) - cpu0,
    };
    free(per);
    free(all);
    return r;
}

static int int_arg(const char *s, const char *name)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*end != 0 || v <= 0 || v > 1000000) {
        fprintf(stderr, "control_bench: %s: not a positive number: %s\n", name, s);
        exit(2);
    }
    return (int)v;
}

int main(int argc, char **argv)
{
    struct bench *b = calloc(1, sizeof(*b));
    if (b == NULL)
        return 1;
    b->veil = "build/veil";
    b->nodes = 1000;
    b->workloads = 10000;
    b->services = 1000;
    b->changes = 20;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--veil") == 0)
            b->veil = argv[i + 1];
        else if (strcmp(argv[i], "--nodes") == 0)
            b->nodes = int_arg(argv[i + 1], "--nodes");
        else if (strcmp(argv[i], "--workloads") == 0)
            b->workloads = int_arg(argv[i + 1], "--workloads");
        else if (strcmp(argv[i], "--services") == 0)
            b->services = int_arg(argv[i + 1], "--services");
        else if (strcmp(argv[i], "--changes") == 0)
            b->changes = int_arg(argv[i + 1], "--changes");
        else {
            fprintf(stderr, "control_bench: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    veil_raise_fd_limit();
    veil_log_set_level(VEIL_LOG_WARN);
    snprintf(b->dir, sizeof(b->dir), "/tmp/veil-bench-control.XXXXXX");
    if (mkdtemp(b->dir) == NULL)
        die("mkdtemp");
    snprintf(b->addr, sizeof(b->addr), "127.0.0.1");

    control_start(b);
    double t = (double)now_ns();
    apply_all(b);
    double apply_s = ((double)now_ns() - t) / 1e9;
    long rss_config = proc_kb(b->control, "VmRSS");

    /* Join every node (the real /v1/join: CSR, token, pinned root). */
    char token[512], err[512], path[320];
    snprintf(path, sizeof(path), "%s/state/join-token", b->dir);
    if (veil_file_read_line(path, token, sizeof(token)) != 0)
        die("no join token");
    b->n = calloc((size_t)b->nodes, sizeof(*b->n));
    if (b->n == NULL)
        die("out of memory");
    struct veil_push_client_opts jo = {.addr = b->addr, .port = b->push_port};
    t = (double)now_ns();
    for (int i = 0; i < b->nodes; i++) {
        b->n[i].b = b;
        snprintf(b->n[i].name, sizeof(b->n[i].name), "node-%d", i);
        if (veil_push_join(&jo, token, b->n[i].name, &b->n[i].join, err, sizeof(err)) != 0)
            die(err);
    }
    double join_s = ((double)now_ns() - t) / 1e9;

    b->loop = veil_loop_new("bench");
    pthread_t th;
    if (b->loop == NULL || pthread_create(&th, NULL, loop_thread, b->loop) != 0)
        die("loop");
    int gen = 0;

    /* Baseline: one subscribed node. */
    b->active = 1;
    post_range(b, 0, 1, false);
    wait_for(&b->synced, 1, b, 60);
    struct result base = run_changes(b, &gen);
    post_range(b, 0, 1, true);
    usleep(200000);
    long rss_one = proc_kb(b->control, "VmRSS");

    /* Every node subscribed. */
    for (int i = 0; i < b->nodes; i++)
        b->n[i].synced = false;
    atomic_store(&b->synced, 0);
    b->active = b->nodes;
    t = (double)now_ns();
    /* In batches, as proxies that start over minutes would: a thousand
     * simultaneous handshakes behind a thousand 2 MB snapshots would hit
     * the handshake timeout (real proxies retry with backoff). */
    for (int i = 0; i < b->nodes; i += 50) {
        int to = i + 50 < b->nodes ? i + 50 : b->nodes;
        post_range(b, i, to, false);
        wait_for(&b->synced, to, b, 600);
    }
    double sync_s = ((double)now_ns() - t) / 1e9;
    long rss_all = proc_kb(b->control, "VmRSS");
    struct result full = run_changes(b, &gen);
    long rss_after = proc_kb(b->control, "VmRSS");
    long hwm = proc_kb(b->control, "VmHWM");
    double cpu_total = proc_cpu_s(b->control);

    post_range(b, 0, b->nodes, true);
    usleep(200000);
    veil_loop_stop(b->loop);
    pthread_join(th, NULL);
    veil_loop_free(b->loop);
    control_stop(b);

    printf("# bench/control: %d nodes subscribed, %d workloads, %d services, %d changes\n",
           b->nodes, b->workloads, b->services, b->changes);
    printf("setup: apply %.2f s, %d joins %.2f s, %d snapshots %.2f s\n", apply_s, b->nodes, join_s,
           b->nodes, sync_s);
    printf("%-34s %12s %12s %8s\n", "one change reaches", "1 node", "all nodes", "ratio");
    printf("%-34s %10.2fms %10.2fms %7.1fx\n", "p50 per node", base.p50, full.p50,
           full.p50 / base.p50);
    printf("%-34s %10.2fms %10.2fms %7.1fx\n", "p99 per node", base.p99, full.p99,
           full.p99 / base.p99);
    printf("%-34s %10.2fms %10.2fms %7.1fx\n", "p50 time to all", base.all_p50, full.all_p50,
           full.all_p50 / base.all_p50);
    printf("%-34s %10.2fms %10.2fms %7.1fx\n", "p99 time to all", base.all_p99, full.all_p99,
           full.all_p99 / base.all_p99);
    printf("%-34s %10.3fs %10.3fs %7.1fx\n", "control CPU per change", base.cpu_s / b->changes,
           full.cpu_s / b->changes, full.cpu_s / (base.cpu_s > 0 ? base.cpu_s : 1e-9));
    printf("control RSS: config only %.1f MB, 1 node %.1f MB, %d nodes %.1f MB (%.1fx), "
           "after changes %.1f MB, peak %.1f MB\n",
           rss_config / 1024.0, rss_one / 1024.0, b->nodes, rss_all / 1024.0,
           (double)rss_all / (double)rss_config, rss_after / 1024.0, hwm / 1024.0);
    printf("control CPU total: %.2f s\n", cpu_total);
    /* The RSS target is for the steady state: every proxy subscribed, after
     * the changes; the peak (the initial burst of snapshots) is reported. */
    double steady = (double)(rss_after > rss_all ? rss_after : rss_all) / 1024.0;
    printf("targets: p99 time to all < 1000 ms: %s (%.2f of target); steady RSS < 200 MB: %s "
           "(%.2f of target); peak during the initial snapshots %.2f of it\n",
           full.all_p99 < 1000 ? "met" : "MISSED", full.all_p99 / 1000,
           steady < 200 ? "met" : "MISSED", steady / 200, hwm / 1024.0 / 200);
    for (int i = 0; i < b->nodes; i++)
        veil_push_join_result_free(&b->n[i].join);
    free(b->n);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", b->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", b->dir);
    free(b);
    return full.all_p99 < 1000 && steady < 200 ? 0 : 1;
}
