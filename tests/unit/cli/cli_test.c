/* Runs the built ./veil binary (the one beside this build's tests). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char veil_bin[PATH_MAX];
static char out[65536];

/* Runs `veil ARGS` with stderr folded into stdout; returns the exit status. */
static int run(const char *args)
{
    char cmd[PATH_MAX + 512];
    snprintf(cmd, sizeof(cmd), "%s %s 2>&1", veil_bin, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, sizeof(out) - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    assert_true(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void test_version(void **state)
{
    (void)state;
    assert_int_equal(run("--version"), 0);
    assert_string_equal(out, "veil " VEIL_VERSION "\n");
    assert_int_equal(run("version"), 0);
    assert_string_equal(out, "veil " VEIL_VERSION "\n");
}

static const char *const subcommands[] = {
    "demo", "control", "node", "waypoint", "status", "apply",   "delete", "cluster",
    "run",  "exec",    "logs", "ca",       "debug",  "version", "help",
};

static void test_help_lists_every_command(void **state)
{
    (void)state;
    assert_int_equal(run("help"), 0);
    for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++) {
        char needle[64];
        snprintf(needle, sizeof(needle), "\n  %s ", subcommands[i]);
        assert_non_null(strstr(out, needle));
    }
}

static void test_each_command_has_help(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++) {
        char args[64];
        snprintf(args, sizeof(args), "%s --help", subcommands[i]);
        assert_int_equal(run(args), 0);
        assert_true(strncmp(out, "usage: veil ", 12) == 0);
        assert_non_null(strstr(out, subcommands[i]));
    }
}

static void test_bad_usage_is_named(void **state)
{
    (void)state;
    assert_int_equal(run("frobnicate"), 2);
    assert_non_null(strstr(out, "unknown command 'frobnicate'"));
    assert_int_equal(run("--log-level loud version"), 2);
    assert_non_null(strstr(out, "unknown level 'loud'"));
    assert_int_equal(run("--log-format xml version"), 2);
    assert_non_null(strstr(out, "'xml'"));
    assert_int_equal(run("help frobnicate"), 2);
}

static void test_roles_not_built_say_so(void **state)
{
    (void)state;
    assert_int_equal(run("waypoint"), 69);
    assert_non_null(strstr(out, "does not have this role yet"));
}

static void test_demo_runs(void **state)
{
    (void)state;
    assert_int_equal(run("demo"), 0);
    assert_non_null(strstr(out, "veil demo"));
}

int main(int argc, char **argv)
{
    (void)argc;
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (n <= 0)
        return 1;
    self[n] = '\0';
    /* BUILD/tests/unit/cli/cli_test -> BUILD/veil */
    char *d = self;
    for (int i = 0; i < 4; i++)
        d = dirname(d);
    snprintf(veil_bin, sizeof(veil_bin), "%s/veil", d);
    (void)argv;

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_help_lists_every_command),
        cmocka_unit_test(test_each_command_has_help),
        cmocka_unit_test(test_bad_usage_is_named),
        cmocka_unit_test(test_roles_not_built_say_so),
        cmocka_unit_test(test_demo_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
