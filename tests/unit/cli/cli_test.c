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

static void test_waypoint_usage(void **state)
{
    (void)state;
    assert_int_equal(run("waypoint"), 2);
    assert_non_null(strstr(out, "usage: veil waypoint add"));
    assert_int_equal(run("waypoint frob"), 2);
    assert_non_null(strstr(out, "unknown subcommand 'frob'"));
    assert_int_equal(run("waypoint add"), 2);
    assert_non_null(strstr(out, "--namespace NS is required"));
    assert_int_equal(run("waypoint remove --name x"), 2);
    assert_non_null(strstr(out, "--namespace NS is required"));
    assert_int_equal(run("waypoint add --namespace shop --bogus"), 2);
    assert_non_null(strstr(out, "unknown argument '--bogus'"));
    assert_int_equal(run("waypoint remove --namespace shop --enroll"), 2); /* add only */
    assert_non_null(strstr(out, "unknown argument '--enroll'"));
    assert_int_equal(run("waypoint add --namespace"), 2);
    assert_non_null(strstr(out, "--namespace needs a value"));
}

static void test_waypoint_names_are_checked(void **state)
{
    (void)state;
    assert_int_equal(run("waypoint add --namespace Shop_1"), 2);
    assert_non_null(strstr(out, "'Shop_1' is not a valid namespace name"));
    assert_int_equal(run("waypoint add --namespace shop --name wp."), 2);
    assert_non_null(strstr(out, "'wp.' is not a valid waypoint name"));
    assert_int_equal(run("waypoint add --namespace shop --name -wp"), 2);
    assert_int_equal(run("waypoint add --namespace shop --cluster Bad-Name"), 2);
    assert_non_null(strstr(out, "not a valid cluster name"));
    assert_int_equal(run("waypoint add --namespace shop --timeout 0 --cluster zzcli0"), 2);
    assert_non_null(strstr(out, "--timeout"));
    /* a cluster that does not exist: said so, nothing made */
    assert_int_equal(run("waypoint add --namespace shop --cluster zzcli0"), 1);
    assert_non_null(strstr(out, "no local cluster 'zzcli0'"));
    assert_int_equal(run("waypoint remove --namespace shop --cluster zzcli0"), 1);
    assert_non_null(strstr(out, "no waypoint shop/waypoint"));
    assert_int_equal(run("waypoint list --cluster zzcli0"), 1);
    assert_non_null(strstr(out, "no local cluster 'zzcli0'"));
}

static void test_waypoint_run_arguments(void **state)
{
    (void)state;
    assert_int_equal(run("waypoint run --namespace shop"), 2);
    assert_non_null(strstr(out, "--namespace, --name, --state-dir and --control are required"));
    assert_int_equal(run("waypoint run --namespace shop --name wp --state-dir /nonexistent/x "
                         "--control 127.0.0.1:1 --drain-seconds 0"),
                     2);
    assert_non_null(strstr(out, "--drain-seconds: expected 1-3600"));
    assert_int_equal(run("waypoint run --namespace shop --name wp --state-dir /nonexistent/x "
                         "--control 127.0.0.1:1 --metrics-port 70000"),
                     2);
    assert_non_null(strstr(out, "veil waypoint run: --metrics-port"));
    assert_int_equal(run("waypoint run --namespace Shop --name wp --state-dir /nonexistent/x "
                         "--control 127.0.0.1:1"),
                     2);
    assert_non_null(strstr(out, "'Shop' is not a valid namespace name"));
    assert_int_equal(run("waypoint run --namespace shop --name wp --state-dir /nonexistent/x "
                         "--control 127.0.0.1:1 --log-format xml"),
                     2);
    assert_int_equal(run("waypoint run --namespace shop --name wp --frob"), 2);
    assert_non_null(strstr(out, "unknown argument '--frob'"));
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
    /* CLI_TEST_FILTER=test_waypoint* runs only those (test_demo_runs builds
     * a whole cluster). */
    if (getenv("CLI_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("CLI_TEST_FILTER"));

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_help_lists_every_command),
        cmocka_unit_test(test_each_command_has_help),
        cmocka_unit_test(test_bad_usage_is_named),
        cmocka_unit_test(test_waypoint_usage),
        cmocka_unit_test(test_waypoint_names_are_checked),
        cmocka_unit_test(test_waypoint_run_arguments),
        cmocka_unit_test(test_demo_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
