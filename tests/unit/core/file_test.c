#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/file.h"

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d != NULL && (e = readdir(d)) != NULL;)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void test_atomic_write_and_read_line(void **state)
{
    (void)state;
    char dir[] = "/tmp/veil-file-XXXXXX", path[64], line[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/key", dir);

    mode_t old = umask(0);
    assert_int_equal(veil_file_write_atomic(path, "first\nsecond\n", 13, 0600, NULL), 0);
    umask(old);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(veil_file_read_line(path, line, sizeof(line)), 0);
    assert_string_equal(line, "first");

    /* Replacing keeps one file, with the new content and mode. */
    assert_int_equal(veil_file_write_atomic(path, "again", 5, 0644, NULL), 0);
    assert_int_equal(veil_file_read_line(path, line, sizeof(line)), 0);
    assert_string_equal(line, "again");
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    assert_int_equal(count_entries(dir), 1);

    unlink(path);
    rmdir(dir);
}

static void test_errors_name_the_step(void **state)
{
    (void)state;
    char line[16];
    const char *step = NULL;
    assert_int_equal(veil_file_write_atomic("/nonexistent/veil/x", "a", 1, 0600, &step), -ENOENT);
    assert_string_equal(step, "create");
    assert_int_equal(veil_file_read_line("/nonexistent/veil/x", line, sizeof(line)), -ENOENT);

    char dir[] = "/tmp/veil-file-XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/empty", dir);
    assert_int_equal(veil_file_write_atomic(path, "", 0, 0600, NULL), 0);
    assert_int_equal(veil_file_read_line(path, line, sizeof(line)), -EIO);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_atomic_write_and_read_line),
        cmocka_unit_test(test_errors_name_the_step),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
