#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "control/dirwatch.h"
#include "core/loop.h"

struct ctx {
    struct veil_loop *loop;
    int calls;
};

static void changed(void *arg)
{
    struct ctx *c = arg;
    c->calls++;
    veil_loop_stop(c->loop);
}

static struct veil_timer guard;

static void guard_cb(struct veil_timer *t)
{
    veil_loop_stop(veil_timer_loop(t));
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_burst_gives_one_reload(void **state)
{
    (void)state;
    char dir[] = "/tmp/veil-dirwatch-XXXXXX", a[64], b[64];
    assert_non_null(mkdtemp(dir));
    snprintf(a, sizeof(a), "%s/a.yaml", dir);
    snprintf(b, sizeof(b), "%s/b.yaml", dir);
    struct ctx c = {veil_loop_new("t"), 0};
    struct veil_dirwatch *w = veil_dirwatch_new(c.loop, dir, 50, changed, &c);
    assert_non_null(w);

    write_file(a, "x: 1\n");
    write_file(b, "y: 2\n");
    rename(b, a);
    veil_timer_start(c.loop, &guard, 5000, 0, guard_cb);
    veil_loop_run(c.loop);
    assert_int_equal(c.calls, 1);

    unlink(a);
    veil_loop_run(c.loop);
    assert_int_equal(c.calls, 2);

    veil_timer_stop(&guard);
    veil_dirwatch_free(w);
    veil_loop_free(c.loop);
    rmdir(dir);
}

static void test_missing_dir(void **state)
{
    (void)state;
    struct veil_loop *loop = veil_loop_new("t");
    errno = 0;
    assert_null(veil_dirwatch_new(loop, "/nonexistent/veil", 50, changed, NULL));
    assert_int_equal(errno, ENOENT);
    veil_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_gives_one_reload),
        cmocka_unit_test(test_missing_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
