/* veil debug watch: prints the configuration stream a node receives. */
#include "cli/cli.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/admin_client.h"
#include "cli/opts.h"
#include "control/push_client.h"
#include "core/alloc.h"
#include "core/file.h"
#include "core/loop.h"

struct watch {
    struct veil_loop *loop;
    struct veil_push_client *pc;
    const char *node;
    const char *nack_reason; /* reject every update with it (testing status) */
    int as_node;             /* acknowledge like the node would, instead of observing */
    uint64_t version;
    long count, seen;
    int status;
};

static void on_update(struct veil_push_client *pc, const char *json, size_t len, void *arg)
{
    struct watch *w = arg;
    (void)len;
    printf("%s\n", json);
    fflush(stdout);
    json_t *u = json_loads(json, 0, NULL);
    uint64_t version = (uint64_t)json_integer_value(json_object_get(u, "version"));
    json_decref(u);
    if (w->nack_reason != NULL)
        veil_push_client_nack(pc, version, w->nack_reason);
    else if (w->as_node)
        veil_push_client_ack(pc, version);
    if (w->count > 0 && ++w->seen >= w->count) {
        w->status = 0;
        veil_loop_stop(w->loop);
    }
}

static void on_end(struct veil_push_client *pc, int status, const char *err, void *arg)
{
    struct watch *w = arg;
    (void)pc;
    fprintf(stderr, "veil debug watch: the stream ended (status %d): %s\n", status,
            err != NULL ? err : "closed");
    veil_loop_stop(w->loop);
}

static void on_connect(struct veil_push_client *pc, const char *err, void *arg)
{
    struct watch *w = arg;
    if (err != NULL) {
        fprintf(stderr, "veil debug watch: cannot connect: %s\n", err);
        veil_loop_stop(w->loop);
        return;
    }
    veil_push_client_watch(pc, w->version, !w->as_node && w->nack_reason == NULL, on_update, on_end,
                           w);
}

static int read_port(const char *state_dir, const char *which)
{
    char path[4200], key[32];
    int port = 0, p;
    snprintf(path, sizeof(path), "%s/ports", state_dir);
    FILE *f = fopen(path, "r");
    while (f != NULL && fscanf(f, "%31s %d", key, &p) == 2) {
        if (strcmp(key, which) == 0)
            port = p;
    }
    if (f != NULL)
        fclose(f);
    return port;
}

static char *read_token(const char *state_dir)
{
    char path[4200], tok[512];
    snprintf(path, sizeof(path), "%s/join-token", state_dir);
    return veil_file_read_line(path, tok, sizeof(tok)) == 0 ? veil_strdup(tok) : NULL;
}

static int watch_run(struct watch *w, const char *state_dir, const char *addr)
{
    int port = read_port(state_dir, "push");
    char *token = read_token(state_dir);
    if (port == 0 || token == NULL) {
        fprintf(stderr,
                "veil debug watch: no running control plane found in %s (ports, join-token)\n",
                state_dir);
        veil_free(token);
        return 1;
    }
    char err[1024];
    struct veil_push_client_opts o = {.addr = addr, .port = (uint16_t)port};
    struct veil_push_join_result jr = {0};
    int rc = veil_push_join(&o, token, w->node, &jr, err, sizeof(err));
    veil_free(token);
    if (rc != 0) {
        fprintf(stderr, "veil debug watch: join as %s failed: %s\n", w->node, err);
        return 1;
    }
    o.cert_pem = jr.cert_pem;
    o.key_pem = jr.key_pem;
    o.trust_bundle_pem = jr.trust_bundle_pem;
    w->loop = veil_loop_new("watch");
    w->status = 1;
    w->pc = w->loop != NULL ? veil_push_client_connect(w->loop, &o, on_connect, w, err, sizeof(err))
                            : NULL;
    if (w->pc != NULL)
        veil_loop_run(w->loop);
    else
        fprintf(stderr, "veil debug watch: %s\n", err);
    veil_push_client_free(w->pc);
    veil_loop_free(w->loop);
    veil_push_join_result_free(&jr);
    return w->status;
}

int veil_cli_debug(const struct veil_cli_cmd *cmd, int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "watch") != 0) {
        fputs(cmd->usage, stderr);
        return VEIL_EXIT_USAGE;
    }
    struct watch w = {.status = 1};
    const char *state = NULL, *addr = "127.0.0.1", *version = NULL, *count = NULL;
    for (int i = 2; i < argc; i++) {
        int r;
        if ((r = veil_cli_opt(argc, argv, &i, "--node", &w.node)) ||
            (r = veil_cli_opt(argc, argv, &i, "--state-dir", &state)) ||
            (r = veil_cli_opt(argc, argv, &i, "--addr", &addr)) ||
            (r = veil_cli_opt(argc, argv, &i, "--version", &version)) ||
            (r = veil_cli_opt(argc, argv, &i, "--count", &count)) ||
            (r = veil_cli_opt(argc, argv, &i, "--nack", &w.nack_reason))) {
            if (r < 0)
                return VEIL_EXIT_USAGE;
            continue;
        }
        if (strcmp(argv[i], "--ack") == 0) {
            w.as_node = 1;
            continue;
        }
        fprintf(stderr, "veil debug watch: unknown argument '%s'\n", argv[i]);
        return VEIL_EXIT_USAGE;
    }
    if (w.node == NULL) {
        fprintf(stderr, "veil debug watch: --node NODE is needed\n");
        return VEIL_EXIT_USAGE;
    }
    w.version = version != NULL ? strtoull(version, NULL, 10) : 0;
    w.count = count != NULL ? strtol(count, NULL, 10) : 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    return watch_run(&w, veil_cli_state_dir(state), addr);
}
