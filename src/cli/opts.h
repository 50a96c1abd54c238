/*
 * Small option parsing shared by the subcommands: "--name VALUE" and
 * "--name=VALUE". Each helper returns 1 when argv[*i] is that option (and
 * advances *i past its value), 0 when it is not, and -1 after printing a
 * usage error when the value is missing.
 */
#ifndef VEIL_CLI_OPTS_H
#define VEIL_CLI_OPTS_H

#include <stdio.h>
#include <string.h>

static inline int veil_cli_opt(int argc, char **argv, int *i, const char *name, const char **val)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return 0;
    if (argv[*i][n] == '=') {
        *val = argv[*i] + n + 1;
        return 1;
    }
    if (argv[*i][n] != '\0')
        return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "veil %s: %s needs a value\n", argv[0], name);
        return -1;
    }
    *val = argv[++*i];
    return 1;
}

#endif
