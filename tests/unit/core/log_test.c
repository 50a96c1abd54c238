#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

/* Captures what the logger writes through a pipe. */
struct capture {
    int fds[2];
    char text[VEIL_LOG_MAX * 2];
};

static int setup(void **state)
{
    struct capture *c = calloc(1, sizeof(*c));
    if (c == NULL || pipe(c->fds) != 0)
        return -1;
    veil_log_set_fd(c->fds[1]);
    veil_log_set_level(VEIL_LOG_INFO);
    veil_log_set_format(VEIL_LOG_TEXT);
    *state = c;
    return 0;
}

static int teardown(void **state)
{
    struct capture *c = *state;
    veil_log_set_fd(STDERR_FILENO);
    veil_log_set_format(VEIL_LOG_TEXT);
    close(c->fds[0]);
    close(c->fds[1]);
    free(c);
    return 0;
}

/* Reads what was logged so far (the pipe holds it; writes are small). */
static const char *drain(struct capture *c)
{
    close(c->fds[1]);
    ssize_t n = read(c->fds[0], c->text, sizeof(c->text) - 1);
    c->text[n > 0 ? n : 0] = '\0';
    assert_int_equal(pipe(c->fds) == 0 ? 0 : -1, 0);
    veil_log_set_fd(c->fds[1]);
    return c->text;
}

static void test_text_line(void **state)
{
    struct capture *c = *state;
    veil_log(VEIL_LOG_WARN, "loop", "slow by %d ms", 42);
    const char *out = drain(c);
    assert_non_null(strstr(out, " WARN  loop: slow by 42 ms\n"));
    assert_int_equal(out[4], '-');  /* 2026-... */
    assert_int_equal(out[23], 'Z'); /* millisecond UTC timestamp */
    assert_int_equal(strchr(out, '\n') - out + 1, (long)strlen(out));
}

static void test_level_filter(void **state)
{
    struct capture *c = *state;
    veil_log_set_level(VEIL_LOG_WARN);
    VEIL_INFO("conf", "hidden");
    VEIL_DEBUG("conf", "hidden too");
    VEIL_ERROR("conf", "shown");
    const char *out = drain(c);
    assert_null(strstr(out, "hidden"));
    assert_non_null(strstr(out, "ERROR conf: shown"));

    veil_log_set_level(VEIL_LOG_OFF);
    VEIL_ERROR("conf", "nothing at all");
    assert_string_equal(drain(c), "");
}

static void test_json_line_parses(void **state)
{
    struct capture *c = *state;
    veil_log_set_format(VEIL_LOG_JSON);
    veil_log(VEIL_LOG_ERROR, "node", "quote \" backslash \\ newline \n tab \t ctl \x01 end");
    const char *out = drain(c);
    size_t len = strlen(out);
    assert_true(len > 0 && out[len - 1] == '\n');

    json_error_t jerr;
    json_t *j = json_loads(out, JSON_DISABLE_EOF_CHECK, &jerr);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "level")), "error");
    assert_string_equal(json_string_value(json_object_get(j, "module")), "node");
    assert_string_equal(json_string_value(json_object_get(j, "msg")),
                        "quote \" backslash \\ newline \n tab \t ctl \x01 end");
    assert_non_null(json_string_value(json_object_get(j, "ts")));
    json_decref(j);
}

static void test_long_message_truncated_but_whole(void **state)
{
    struct capture *c = *state;
    char big[VEIL_LOG_MAX * 2];
    memset(big, '"', sizeof(big) - 1); /* every char doubles when escaped */
    big[sizeof(big) - 1] = '\0';
    veil_log_set_format(VEIL_LOG_JSON);
    veil_log(VEIL_LOG_INFO, "t", "%s", big);
    const char *out = drain(c);
    size_t len = strlen(out);
    assert_true(len > 100 && out[len - 1] == '\n');
    assert_true(len - 2 >= 1 && out[len - 2] == '}');

    veil_log_set_format(VEIL_LOG_TEXT);
    veil_log(VEIL_LOG_INFO, "t", "%s", big);
    out = drain(c);
    len = strlen(out);
    assert_true(len < VEIL_LOG_MAX + 256);
    assert_non_null(strstr(out, "...\n"));
}

static void test_parse_level(void **state)
{
    (void)state;
    enum veil_log_level l;
    assert_int_equal(veil_log_parse_level("debug", &l), 0);
    assert_int_equal(l, VEIL_LOG_DEBUG);
    assert_int_equal(veil_log_parse_level("warning", &l), 0);
    assert_int_equal(l, VEIL_LOG_WARN);
    assert_int_equal(veil_log_parse_level("loud", &l), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_text_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_filter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_json_line_parses, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_message_truncated_but_whole, setup, teardown),
        cmocka_unit_test(test_parse_level),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
