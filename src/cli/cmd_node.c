/* veil node: the node proxy (src/node/, docs/node.md). */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/opts.h"
#include "core/log.h"
#include "core/sched.h"
#include "node/node.h"

static int port_arg(const char *cmd, const char *opt, const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0 || v > 65535) {
        fprintf(stderr, "veil %s: %s: expected a port number 0-65535, got '%s'\n", cmd, opt, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int veil_cli_node_opt(int argc, char **argv, int *i, struct veil_node_opts *o,
                      struct veil_cli_node_args *a)
{
    int r;
    if ((r = veil_cli_opt(argc, argv, i, "--state-dir", &o->state_dir)) ||
        (r = veil_cli_opt(argc, argv, i, "--control", &o->control)) ||
        (r = veil_cli_opt(argc, argv, i, "--token-file", &o->token_file)) ||
        (r = veil_cli_opt(argc, argv, i, "--metrics-port", &a->metrics)) ||
        (r = veil_cli_opt(argc, argv, i, "--ready-port", &a->ready)) ||
        (r = veil_cli_opt(argc, argv, i, "--admin-port", &a->admin)) ||
        (r = veil_cli_opt(argc, argv, i, "--bind", &o->bind)) ||
        (r = veil_cli_opt(argc, argv, i, "--log-format", &a->format)) ||
        (r = veil_cli_opt(argc, argv, i, "--log-level", &a->level)) ||
        (r = veil_cli_opt(argc, argv, i, "--sched", &a->sched)))
        return r;
    return 0;
}

int veil_cli_node_finish(const char *cmd, const struct veil_cli_node_args *a,
                         struct veil_node_opts *o)
{
    if ((a->metrics != NULL && port_arg(cmd, "--metrics-port", a->metrics, &o->metrics_port)) ||
        (a->ready != NULL && port_arg(cmd, "--ready-port", a->ready, &o->ready_port)) ||
        (a->admin != NULL && port_arg(cmd, "--admin-port", a->admin, &o->admin_port)))
        return -1;
    if (a->format != NULL) {
        if (strcmp(a->format, "json") != 0 && strcmp(a->format, "text") != 0) {
            fprintf(stderr, "veil %s: --log-format: expected text or json, got '%s'\n", cmd,
                    a->format);
            return -1;
        }
        veil_log_set_format(strcmp(a->format, "json") == 0 ? VEIL_LOG_JSON : VEIL_LOG_TEXT);
    }
    if (a->level != NULL) {
        enum veil_log_level lv;
        if (veil_log_parse_level(a->level, &lv) != 0) {
            fprintf(stderr, "veil %s: --log-level: expected debug, info, warn or error\n", cmd);
            return -1;
        }
        veil_log_set_level(lv);
    }
    enum veil_sched sp = VEIL_SCHED_BATCH;
    if (a->sched != NULL && veil_sched_parse(a->sched, &sp) != 0) {
        fprintf(stderr, "veil %s: --sched: expected batch or inherit, got '%s'\n", cmd, a->sched);
        return -1;
    }
    int err = veil_sched_apply(sp);
    if (err != 0) /* a proxy that cannot change its policy still works */
        VEIL_WARN("node",
                  "--sched batch: sched_setscheduler: %s; running with the policy it was "
                  "started with",
                  strerror(-err));
    return 0;
}

int veil_cli_node(const struct veil_cli_cmd *cmd, int argc, char **argv)
{
    (void)cmd;
    struct veil_node_opts o = {.metrics_port = -1, .ready_port = -1, .admin_port = -1};
    struct veil_cli_node_args a = {0};
    for (int i = 1; i < argc; i++) {
        int r = veil_cli_node_opt(argc, argv, &i, &o, &a);
        if (r == 0)
            r = veil_cli_opt(argc, argv, &i, "--name", &o.name);
        if (r < 0)
            return VEIL_EXIT_USAGE;
        if (r > 0)
            continue;
        fprintf(stderr, "veil node: unknown argument '%s'; see 'veil node --help'\n", argv[i]);
        return VEIL_EXIT_USAGE;
    }
    if (o.name == NULL || o.state_dir == NULL || o.control == NULL) {
        fprintf(stderr, "veil node: --name, --state-dir and --control are required\n");
        return VEIL_EXIT_USAGE;
    }
    if (veil_cli_node_finish("node", &a, &o) != 0)
        return VEIL_EXIT_USAGE;
    return veil_node_run(&o);
}
