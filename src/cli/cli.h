/*
 * The veil command: one binary, many subcommands (DESIGN.md "Roles").
 *
 * A subcommand handler gets argv starting at its own name (argv[0] is the
 * subcommand) and returns the process exit status: 0 success, 1 failure,
 * 2 bad usage, 69 (EX_UNAVAILABLE) for a role this build does not have yet.
 */
#ifndef VEIL_CLI_CLI_H
#define VEIL_CLI_CLI_H

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

#endif
