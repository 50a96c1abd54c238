#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "core/alloc.h"
#include "core/arena.h"

#include <errno.h>
#include <stdalign.h>
#include <string.h>

static void test_alloc_is_aligned_and_writable(void **state)
{
    (void)state;
    struct veil_arena a;
    veil_arena_init(&a, 256, SIZE_MAX);
    for (size_t n = 0; n < 300; n++) {
        unsigned char *p = veil_arena_alloc(&a, n % 37);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % alignof(max_align_t), 0);
        memset(p, 0xAB, n % 37);
    }
    veil_arena_free(&a);
}

static void test_blocks_do_not_overlap(void **state)
{
    (void)state;
    struct veil_arena a;
    veil_arena_init(&a, 128, SIZE_MAX);
    unsigned char *p[64];
    for (int i = 0; i < 64; i++) {
        p[i] = veil_arena_alloc(&a, 24);
        assert_non_null(p[i]);
        memset(p[i], i, 24);
    }
    for (int i = 0; i < 64; i++)
        for (int j = 0; j < 24; j++)
            assert_int_equal(p[i][j], i);
    veil_arena_free(&a);
}

static void test_big_block_gets_its_own_chunk(void **state)
{
    (void)state;
    struct veil_arena a;
    veil_arena_init(&a, 1024, SIZE_MAX);
    char *small = veil_arena_alloc(&a, 16);
    size_t used = veil_arena_used(&a);
    char *big = veil_arena_alloc(&a, 100000);
    assert_non_null(big);
    memset(big, 1, 100000);
    assert_true(veil_arena_used(&a) >= used + 100000);
    /* the current chunk is still used for small blocks */
    char *small2 = veil_arena_alloc(&a, 16);
    assert_ptr_equal(small2, small + 16);
    veil_arena_free(&a);
}

static void test_strndup_and_memdup(void **state)
{
    (void)state;
    struct veil_arena a;
    veil_arena_init(&a, 0, SIZE_MAX);
    char *s = veil_arena_strndup(&a, "hello world", 5);
    assert_string_equal(s, "hello");
    char *t = veil_arena_strndup(&a, "hi", 100);
    assert_string_equal(t, "hi");
    char *m = veil_arena_memdup(&a, "a\0b", 3);
    assert_memory_equal(m, "a\0b", 4);
    char *e = veil_arena_memdup(&a, NULL, 0);
    assert_string_equal(e, "");
    veil_arena_free(&a);
}

static void test_cap_is_hard(void **state)
{
    (void)state;
    struct veil_arena a;
    veil_arena_init(&a, 1000, 4096);
    size_t total = 0;
    void *p;
    while ((p = veil_arena_alloc(&a, 100)) != NULL)
        total += 100;
    assert_int_equal(errno, E2BIG);
    assert_true(veil_arena_used(&a) <= 4096);
    assert_true(total >= 2400);
    assert_null(veil_arena_alloc(&a, 5000));
    assert_int_equal(errno, E2BIG);
    veil_arena_free(&a);
    assert_int_equal(veil_arena_used(&a), 0);
    /* usable again after free, with the same cap */
    assert_non_null(veil_arena_alloc(&a, 100));
    assert_null(veil_arena_alloc(&a, 8192));
    veil_arena_free(&a);
}

static void test_huge_request_fails_cleanly(void **state)
{
    (void)state;
    struct veil_arena a;
    veil_arena_init(&a, 0, SIZE_MAX);
    assert_null(veil_arena_alloc(&a, SIZE_MAX - 8));
    assert_null(veil_arena_memdup(&a, "x", SIZE_MAX));
    assert_non_null(veil_arena_alloc(&a, 8));
    veil_arena_free(&a);
}

static void test_allocation_failure(void **state)
{
    (void)state;
    struct veil_arena a;
    veil_arena_init(&a, 64, SIZE_MAX);
    assert_non_null(veil_arena_alloc(&a, 8));
    veil_alloc_fail_after(0);
    assert_non_null(veil_arena_alloc(&a, 8)); /* fits in the current chunk */
    assert_null(veil_arena_alloc(&a, 64));
    assert_int_equal(errno, ENOMEM);
    veil_alloc_fail_reset();
    assert_non_null(veil_arena_alloc(&a, 64));
    veil_arena_free(&a);
}

static void test_free_of_empty_arena(void **state)
{
    (void)state;
    struct veil_arena a;
    veil_arena_init(&a, 0, 0);
    assert_null(veil_arena_alloc(&a, 1));
    assert_int_equal(errno, E2BIG);
    veil_arena_free(&a);
    veil_arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_is_aligned_and_writable),
        cmocka_unit_test(test_blocks_do_not_overlap),
        cmocka_unit_test(test_big_block_gets_its_own_chunk),
        cmocka_unit_test(test_strndup_and_memdup),
        cmocka_unit_test(test_cap_is_hard),
        cmocka_unit_test(test_huge_request_fails_cleanly),
        cmocka_unit_test(test_allocation_failure),
        cmocka_unit_test(test_free_of_empty_arena),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
