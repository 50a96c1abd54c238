#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>

#include "core/sched.h"

static void test_parse(void **state)
{
    (void)state;
    enum veil_sched p = VEIL_SCHED_INHERIT;
    assert_int_equal(veil_sched_parse("batch", &p), 0);
    assert_int_equal(p, VEIL_SCHED_BATCH);
    assert_int_equal(veil_sched_parse("inherit", &p), 0);
    assert_int_equal(p, VEIL_SCHED_INHERIT);
    assert_int_equal(veil_sched_parse("Batch", &p), -EINVAL);
    assert_int_equal(veil_sched_parse("", &p), -EINVAL);
    assert_int_equal(veil_sched_parse("fifo", &p), -EINVAL);
    assert_int_equal(p, VEIL_SCHED_INHERIT);
}

static void *policy_of_thread(void *arg)
{
    *(int *)arg = sched_getscheduler(0);
    return NULL;
}

/* Run in a thread of its own, so the test process keeps its policy. */
static void *apply_then_spawn(void *arg)
{
    int *out = arg;
    out[0] = sched_getscheduler(0);
    out[1] = veil_sched_apply(VEIL_SCHED_INHERIT);
    out[2] = sched_getscheduler(0);
    out[3] = veil_sched_apply(VEIL_SCHED_BATCH);
    out[4] = sched_getscheduler(0);
    pthread_t th;
    out[5] = -1;
    if (pthread_create(&th, NULL, policy_of_thread, &out[5]) == 0)
        pthread_join(th, NULL);
    return NULL;
}

static void test_apply_batch_and_inherited_by_new_threads(void **state)
{
    (void)state;
    int out[6];
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, apply_then_spawn, out), 0);
    assert_int_equal(pthread_join(th, NULL), 0);
    int before = sched_getscheduler(0);
    assert_int_equal(out[0], before);
    assert_int_equal(out[1], 0);
    assert_int_equal(out[2], before); /* inherit: untouched */
    assert_int_equal(out[3], 0);
    assert_int_equal(out[4], SCHED_BATCH);
    assert_int_equal(out[5], SCHED_BATCH);           /* a thread started afterwards */
    assert_int_equal(sched_getscheduler(0), before); /* per thread */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_apply_batch_and_inherited_by_new_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
