/* veil node: the node proxy (src/node/, docs/node.md). */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/opts.h"
#include "core/log.h"
#include "node/node.h"

static int port_arg(const char *opt, const char *s, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0 || v > 65535) {
        fprintf(stderr, "veil node: %s: expected a port number 0-65535, got '%s'\n", opt, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int veil_cli_node(const struct veil_cli_cmd *cmd, int argc, char **argv)
{
    (void)cmd;
    struct veil_node_opts o = {.metrics_port = -1, .ready_port = -1, .admin_port = -1};
    const char *metrics = NULL, *ready = NULL, *admin = NULL, *format = NULL, *level = NULL;
    for (int i = 1; i < argc; i++) {
        int r;
        if ((r = veil_cli_opt(argc, argv, &i, "--name", &o.name)) ||
            (r = veil_cli_opt(argc, argv, &i, "--state-dir", &o.state_dir)) ||
            (r = veil_cli_opt(argc, argv, &i, "--control", &o.control)) ||
            (r = veil_cli_opt(argc, argv, &i, "--token-file", &o.token_file)) ||
            (r = veil_cli_opt(argc, argv, &i, "--metrics-port", &metrics)) ||
            (r = veil_cli_opt(argc, argv, &i, "--ready-port", &ready)) ||
            (r = veil_cli_opt(argc, argv, &i, "--admin-port", &admin)) ||
            (r = veil_cli_opt(argc, argv, &i, "--bind", &o.bind)) ||
            (r = veil_cli_opt(argc, argv, &i, "--log-format", &format)) ||
            (r = veil_cli_opt(argc, argv, &i, "--log-level", &level))) {
            if (r < 0)
                return VEIL_EXIT_USAGE;
            continue;
        }
        fprintf(stderr, "veil node: unknown argument '%s'; see 'veil node --help'\n", argv[i]);
        return VEIL_EXIT_USAGE;
    }
    if (o.name == NULL || o.state_dir == NULL || o.control == NULL) {
        fprintf(stderr, "veil node: --name, --state-dir and --control are required\n");
        return VEIL_EXIT_USAGE;
    }
    if ((metrics != NULL && port_arg("--metrics-port", metrics, &o.metrics_port) != 0) ||
        (ready != NULL && port_arg("--ready-port", ready, &o.ready_port) != 0) ||
        (admin != NULL && port_arg("--admin-port", admin, &o.admin_port) != 0))
        return VEIL_EXIT_USAGE;
    if (format != NULL) {
        if (strcmp(format, "json") != 0 && strcmp(format, "text") != 0) {
            fprintf(stderr, "veil node: --log-format: expected text or json, got '%s'\n", format);
            return VEIL_EXIT_USAGE;
        }
        veil_log_set_format(strcmp(format, "json") == 0 ? VEIL_LOG_JSON : VEIL_LOG_TEXT);
    }
    if (level != NULL) {
        enum veil_log_level lv;
        if (veil_log_parse_level(level, &lv) != 0) {
            fprintf(stderr, "veil node: --log-level: expected debug, info, warn or error\n");
            return VEIL_EXIT_USAGE;
        }
        veil_log_set_level(lv);
    }
    return veil_node_run(&o);
}
