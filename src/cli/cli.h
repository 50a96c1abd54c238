/*
 * The veil command: one binary, many subcommands (DESIGN.md "Roles").
 *
 * A subcommand handler gets argv starting at its own name (argv[0] is the
 * subcommand) and returns the process exit status: 0 success, 1 failure,
 * 2 bad usage, 69 (EX_UNAVAILABLE) for a role this build does not have yet.
 */
#ifndef VEIL_CLI_CLI_H
#define VEIL_CLI_CLI_H

#include <stddef.h>

#define VEIL_EXIT_USAGE       2
#define VEIL_EXIT_UNAVAILABLE 69

struct veil_cli_cmd {
    const char *name;
    const char *summary; /* one line for `veil help` */
    const char *usage;   /* full text for `veil NAME --help` */
    int (*run)(const struct veil_cli_cmd *cmd, int argc, char **argv);
};

int veil_cli_demo(const struct veil_cli_cmd *cmd, int argc, char **argv);
int veil_cli_control(const struct veil_cli_cmd *cmd, int argc, char **argv);
int veil_cli_apply(const struct veil_cli_cmd *cmd, int argc, char **argv);
int veil_cli_delete(const struct veil_cli_cmd *cmd, int argc, char **argv);
int veil_cli_status(const struct veil_cli_cmd *cmd, int argc, char **argv);
int veil_cli_debug(const struct veil_cli_cmd *cmd, int argc, char **argv);
int veil_cli_ca(const struct veil_cli_cmd *cmd, int argc, char **argv);
int veil_cli_cluster(const struct veil_cli_cmd *cmd, int argc, char **argv);
int veil_cli_run(const struct veil_cli_cmd *cmd, int argc, char **argv);
int veil_cli_exec(const struct veil_cli_cmd *cmd, int argc, char **argv);
int veil_cli_logs(const struct veil_cli_cmd *cmd, int argc, char **argv);
int veil_cli_rm(const struct veil_cli_cmd *cmd, int argc, char **argv);
int veil_cli_node(const struct veil_cli_cmd *cmd, int argc, char **argv);
int veil_cli_waypoint(const struct veil_cli_cmd *cmd, int argc, char **argv);

/* ---- shared between subcommands ---- */

struct veil_node_opts;
struct veil_cluster_pod;
struct json_t;

/* The options `veil node` and `veil waypoint run` share (cmd_node.c):
 * --state-dir, --control, --token-file, --bind go straight into the opts;
 * the others are kept here as given until veil_cli_node_finish(). */
struct veil_cli_node_args {
    const char *metrics, *ready, *admin, *format, *level, *sched;
};
/* 1: argv[*i] was one of them (taken, *i advanced past its value); 0: not
 * one of them; -1: a usage error was printed. */
int veil_cli_node_opt(int argc, char **argv, int *i, struct veil_node_opts *o,
                      struct veil_cli_node_args *a);
/* Checks the ports, applies the log settings and the scheduling policy
 * (--sched, core/sched.h; before any thread starts): 0, or -1 after
 * printing why. */
int veil_cli_node_finish(const char *cmd, const struct veil_cli_node_args *a,
                         struct veil_node_opts *o);

/* The Pod of a local-cluster pod on the control plane (cmd_cluster.c): the
 * manifest (metadata name/namespace/labels, spec.nodeName = node_name,
 * spec.serviceAccountName, status.podIP) is written beside the pod's record
 * (pods/NS/NAME.pod.json) and applied through the admin socket. 0, or -1
 * with err. veil_cli_pod_unregister() deletes it (best effort). */
int veil_cli_pod_register(const struct veil_cluster_pod *p, struct json_t *labels,
                          const char *node_name, char *err, size_t errlen);
void veil_cli_pod_unregister(const struct veil_cluster_pod *p);

#endif
