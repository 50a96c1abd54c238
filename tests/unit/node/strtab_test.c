/* Tests of src/node/strtab.c: interned, reference-counted strings. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "node/strtab.h"

#include <stdio.h>
#include <string.h>

static void one_copy_per_string(void **state)
{
    (void)state;
    struct veil_node_strtab t;
    veil_node_strtab_init(&t);
    char buf[64];
    snprintf(buf, sizeof(buf), "spiffe://cluster.local/ns/default/sa/web");
    const char *a = veil_node_strtab_get(&t, buf, strlen(buf));
    const char *b = veil_node_strtab_get(&t, "spiffe://cluster.local/ns/default/sa/web", 40);
    assert_non_null(a);
    assert_ptr_equal(a, b);
    assert_ptr_not_equal(a, buf);
    assert_string_equal(a, buf);
    assert_int_equal(veil_node_strtab_count(&t), 1);
    /* A prefix is another string, NUL-terminated. */
    const char *c = veil_node_strtab_get(&t, "spiffe://cluster.local/ns/default", 33);
    assert_string_equal(c, "spiffe://cluster.local/ns/default");
    assert_ptr_not_equal(a, c);
    const char *e = veil_node_strtab_get(&t, "x", 0);
    assert_string_equal(e, "");
    assert_int_equal(veil_node_strtab_count(&t), 3);
    veil_node_strtab_put(&t, a);
    assert_int_equal(veil_node_strtab_count(&t), 3); /* b still holds it */
    assert_string_equal(b, "spiffe://cluster.local/ns/default/sa/web");
    veil_node_strtab_put(&t, b);
    veil_node_strtab_put(&t, c);
    veil_node_strtab_put(&t, e);
    veil_node_strtab_put(&t, NULL);
    assert_int_equal(veil_node_strtab_count(&t), 0);
    veil_node_strtab_free(&t);
}

/* Many distinct strings (passthrough addresses): the table grows, finds
 * each, and shrinks again when they go. */
static void grows_and_shrinks(void **state)
{
    (void)state;
    enum { N = 5000 };
    static const char *held[N];
    struct veil_node_strtab t;
    veil_node_strtab_init(&t);
    char buf[32];
    for (int i = 0; i < N; i++) {
        int l = snprintf(buf, sizeof(buf), "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        held[i] = veil_node_strtab_get(&t, buf, (size_t)l);
        assert_non_null(held[i]);
    }
    assert_int_equal(veil_node_strtab_count(&t), N);
    assert_true(t._nslots >= N);
    for (int i = 0; i < N; i++) {
        int l = snprintf(buf, sizeof(buf), "10.%d.%d.%d", i >> 16, (i >> 8) & 255, i & 255);
        assert_ptr_equal(veil_node_strtab_get(&t, buf, (size_t)l), held[i]);
        veil_node_strtab_put(&t, held[i]);
    }
    for (int i = 0; i < N; i++) {
        assert_string_equal(held[i], held[i]); /* still alive: ASan checks */
        veil_node_strtab_put(&t, held[i]);
    }
    assert_int_equal(veil_node_strtab_count(&t), 0);
    assert_true(t._nslots <= 128);
    veil_node_strtab_free(&t);
}

/* Every allocation may fail: get returns NULL, what was held stays. */
static void allocation_failures(void **state)
{
    (void)state;
    struct veil_node_strtab t;
    veil_node_strtab_init(&t);
    veil_alloc_fail_after(0);
    assert_null(veil_node_strtab_get(&t, "a", 1));
    veil_alloc_fail_reset();
    const char *a = veil_node_strtab_get(&t, "a", 1);
    assert_non_null(a);
    char buf[16];
    const char *held[200];
    size_t n = 0;
    for (long k = 0; k < 200; k++) {
        veil_alloc_fail_after(k % 2);
        int l = snprintf(buf, sizeof(buf), "s%ld", k);
        const char *s = veil_node_strtab_get(&t, buf, (size_t)l);
        veil_alloc_fail_reset();
        if (s != NULL)
            held[n++] = s;
    }
    assert_true(n > 0);
    assert_int_equal(veil_node_strtab_count(&t), n + 1);
    assert_ptr_equal(veil_node_strtab_get(&t, "a", 1), a);
    veil_node_strtab_put(&t, a);
    veil_node_strtab_put(&t, a);
    for (size_t i = 0; i < n; i++)
        veil_node_strtab_put(&t, held[i]);
    assert_int_equal(veil_node_strtab_count(&t), 0);
    veil_node_strtab_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(one_copy_per_string),
        cmocka_unit_test(grows_and_shrinks),
        cmocka_unit_test(allocation_failures),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
