#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "core/alloc.h"

static void test_fail_after(void **state)
{
    (void)state;
    veil_alloc_fail_after(2);
    void *a = veil_malloc(8);
    char *b = veil_strdup("veil");
    errno = 0;
    void *c = veil_calloc(1, 8);
    assert_non_null(a);
    assert_string_equal(b, "veil");
    assert_null(c);
    assert_int_equal(errno, ENOMEM);
    assert_null(veil_realloc(a, 64)); /* a stays valid on failure */
    veil_alloc_fail_reset();
    void *d = veil_realloc(a, 64);
    assert_non_null(d);
    veil_free(d);
    veil_free(b);
    veil_free(NULL);
}

static void test_strndup_bounds(void **state)
{
    (void)state;
    char *s = veil_strndup("abcdef", 3);
    assert_string_equal(s, "abc");
    veil_free(s);
    s = veil_strndup("ab", 10);
    assert_string_equal(s, "ab");
    veil_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fail_after),
        cmocka_unit_test(test_strndup_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
