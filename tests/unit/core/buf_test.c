#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/buf.h"

static void fill(char *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (char)('a' + (seed + i) % 26);
}

static void make_pipe(int fds[2], int nonblock)
{
    assert_int_equal(pipe2(fds, nonblock ? O_NONBLOCK : 0), 0);
}

static void test_init_allocates_nothing(void **state)
{
    (void)state;
    struct veil_buf b;
    veil_buf_init(&b, 100);
    assert_null(b._data);
    assert_null(veil_buf_data(&b));
    assert_int_equal(veil_buf_len(&b), 0);
    assert_int_equal(veil_buf_space(&b), 100);
    assert_int_equal(veil_buf_max(&b), 100);
    assert_true(veil_buf_is_empty(&b));
    assert_false(veil_buf_is_full(&b));
    veil_buf_free(&b);
}

static void test_append_past_max(void **state)
{
    (void)state;
    struct veil_buf b;
    char in[100];
    fill(in, sizeof(in), 0);
    veil_buf_init(&b, 64);

    assert_int_equal(veil_buf_append(&b, in, 40), 0);
    assert_int_equal(veil_buf_append(&b, in + 40, 25), -ENOBUFS);
    assert_int_equal(veil_buf_len(&b), 40);
    assert_memory_equal(veil_buf_data(&b), in, 40);

    assert_int_equal(veil_buf_append(&b, in + 40, 24), 0);
    assert_true(veil_buf_is_full(&b));
    assert_int_equal(veil_buf_space(&b), 0);
    assert_int_equal(veil_buf_append(&b, in, 1), -ENOBUFS);
    assert_int_equal(veil_buf_append(&b, in, 0), 0);
    assert_int_equal(veil_buf_len(&b), 64);
    assert_memory_equal(veil_buf_data(&b), in, 64);
    assert_true(b._cap <= 64);

    char *p;
    size_t avail;
    assert_int_equal(veil_buf_reserve(&b, 0, &p, &avail), -ENOBUFS);
    veil_buf_free(&b);
}

static void test_growth_doubles_up_to_max(void **state)
{
    (void)state;
    struct veil_buf b;
    char in[1000];
    fill(in, sizeof(in), 3);
    veil_buf_init(&b, 1000);

    assert_int_equal(veil_buf_append(&b, in, 10), 0);
    assert_int_equal(b._cap, VEIL_BUF_MIN_ALLOC);
    assert_int_equal(veil_buf_append(&b, in + 10, VEIL_BUF_MIN_ALLOC), 0);
    assert_int_equal(b._cap, 2 * VEIL_BUF_MIN_ALLOC);
    assert_int_equal(veil_buf_append(&b, in + 10 + VEIL_BUF_MIN_ALLOC, 600), 0);
    assert_int_equal(b._cap, 1000); /* 1024 would pass the bound */
    assert_int_equal(veil_buf_len(&b), 866);
    assert_memory_equal(veil_buf_data(&b), in, 866);
    veil_buf_free(&b);

    veil_buf_init(&b, 10); /* a bound below the first allocation */
    assert_int_equal(veil_buf_append(&b, in, 3), 0);
    assert_int_equal(b._cap, 10);
    veil_buf_free(&b);
}

static void test_reserve_commit_consume(void **state)
{
    (void)state;
    struct veil_buf b;
    char *p;
    size_t avail;
    veil_buf_init(&b, 512);

    assert_int_equal(veil_buf_reserve(&b, 5, &p, &avail), 0);
    assert_true(avail >= 5 && avail <= veil_buf_space(&b));
    memcpy(p, "hello", 5);
    assert_int_equal(veil_buf_len(&b), 0); /* not held before commit */
    veil_buf_commit(&b, 5);
    assert_int_equal(veil_buf_append(&b, " world", 6), 0);
    assert_memory_equal(veil_buf_data(&b), "hello world", 11);

    veil_buf_consume(&b, 6);
    assert_int_equal(veil_buf_len(&b), 5);
    assert_memory_equal(veil_buf_data(&b), "world", 5);
    assert_int_equal(veil_buf_space(&b), 507);

    veil_buf_consume(&b, 5);
    assert_true(veil_buf_is_empty(&b));
    assert_int_equal(b._off, 0); /* empty: back to the front */

    assert_int_equal(veil_buf_reserve(&b, 513, &p, &avail), -ENOBUFS);
    assert_int_equal(veil_buf_append(&b, "x", 1), 0);
    veil_buf_reset(&b);
    assert_true(veil_buf_is_empty(&b));
    assert_non_null(b._data); /* reset keeps the memory */
    veil_buf_free(&b);
    assert_null(b._data);
    assert_int_equal(veil_buf_max(&b), 512);
    assert_int_equal(veil_buf_append(&b, "again", 5), 0); /* usable after free */
    assert_memory_equal(veil_buf_data(&b), "again", 5);
    veil_buf_free(&b);
}

/* A full buffer with a consumed front takes new bytes by moving the held
 * ones to the front, without allocating. */
static void test_compaction(void **state)
{
    (void)state;
    struct veil_buf b;
    char in[300];
    fill(in, sizeof(in), 7);
    veil_buf_init(&b, 200);

    assert_int_equal(veil_buf_append(&b, in, 200), 0);
    char *mem = b._data;
    veil_buf_consume(&b, 150);
    assert_int_equal(b._off, 150);

    veil_alloc_fail_after(0);
    assert_int_equal(veil_buf_append(&b, in + 200, 100), 0);
    veil_alloc_fail_reset();

    assert_ptr_equal(b._data, mem);
    assert_int_equal(b._off, 0);
    assert_int_equal(veil_buf_len(&b), 150);
    assert_memory_equal(veil_buf_data(&b), in + 150, 150);
    veil_buf_free(&b);
}

static void test_no_alloc_when_room(void **state)
{
    (void)state;
    struct veil_buf b;
    char in[300] = {0};
    char *p;
    size_t avail;
    veil_buf_init(&b, 4096);
    assert_int_equal(veil_buf_append(&b, "abc", 3), 0);
    veil_alloc_fail_after(0);
    assert_int_equal(veil_buf_append(&b, "def", 3), 0);
    assert_int_equal(veil_buf_reserve(&b, 100, &p, &avail), 0);
    assert_int_equal(veil_buf_append(&b, in, 300), -ENOMEM); /* needs to grow */
    veil_alloc_fail_reset();
    assert_memory_equal(veil_buf_data(&b), "abcdef", 6);
    veil_buf_free(&b);
}

/* trim frees only an empty buffer's memory; the buffer stays usable. */
static void test_trim(void **state)
{
    (void)state;
    struct veil_buf b;
    char in[1000];
    fill(in, sizeof(in), 2);
    veil_buf_init(&b, 64 * 1024);
    veil_buf_trim(&b); /* nothing allocated: a no-op */
    assert_int_equal(veil_buf_alloc_size(&b), 0);

    assert_int_equal(veil_buf_append(&b, in, 1000), 0);
    assert_int_equal(veil_buf_alloc_size(&b), 1024);
    veil_buf_consume(&b, 999);
    veil_buf_trim(&b); /* one byte held: kept */
    assert_int_equal(veil_buf_alloc_size(&b), 1024);
    assert_int_equal(veil_buf_len(&b), 1);
    assert_memory_equal(veil_buf_data(&b), in + 999, 1);

    /* Drained at the bound: consume keeps it (not over VEIL_BUF_KEEP_MAX),
     * trim frees it. */
    veil_buf_consume(&b, 1);
    for (int i = 0; i < 64; i++)
        assert_int_equal(veil_buf_append(&b, in, 1000), 0);
    veil_buf_consume(&b, veil_buf_len(&b));
    assert_int_equal(veil_buf_alloc_size(&b), 64 * 1024);
    veil_buf_trim(&b);
    assert_null(b._data);
    assert_int_equal(veil_buf_alloc_size(&b), 0);
    assert_int_equal(veil_buf_max(&b), 64 * 1024);

    assert_int_equal(veil_buf_append(&b, in, 10), 0);
    assert_memory_equal(veil_buf_data(&b), in, 10);
    veil_buf_free(&b);
}

static void test_enomem(void **state)
{
    (void)state;
    struct veil_buf b;
    char in[1000];
    char *p;
    size_t avail;
    fill(in, sizeof(in), 1);
    veil_buf_init(&b, 1000);

    veil_alloc_fail_after(0);
    assert_int_equal(veil_buf_append(&b, in, 10), -ENOMEM);
    assert_int_equal(veil_buf_reserve(&b, 1, &p, &avail), -ENOMEM);
    veil_alloc_fail_reset();
    assert_null(b._data);
    assert_int_equal(veil_buf_len(&b), 0);

    assert_int_equal(veil_buf_append(&b, in, 100), 0);
    veil_buf_consume(&b, 10);
    veil_alloc_fail_after(0);
    assert_int_equal(veil_buf_append(&b, in + 100, 800), -ENOMEM);
    veil_alloc_fail_reset();
    assert_int_equal(veil_buf_len(&b), 90);
    assert_memory_equal(veil_buf_data(&b), in + 10, 90);

    assert_int_equal(veil_buf_append(&b, in + 100, 800), 0);
    assert_int_equal(veil_buf_len(&b), 890);
    assert_memory_equal(veil_buf_data(&b), in + 10, 890);
    veil_buf_free(&b);
}

static void test_read_fd_until_full(void **state)
{
    (void)state;
    int fds[2];
    char in[10000];
    struct veil_buf b;
    fill(in, sizeof(in), 5);
    make_pipe(fds, 1);
    assert_int_equal(write(fds[1], in, sizeof(in)), sizeof(in));
    veil_buf_init(&b, 6000);

    ssize_t n, total = 0;
    while ((n = veil_buf_read_fd(&b, fds[0])) > 0)
        total += n;
    assert_int_equal(n, -ENOBUFS);
    assert_int_equal(total, 6000);
    assert_true(veil_buf_is_full(&b));
    assert_memory_equal(veil_buf_data(&b), in, 6000);

    veil_buf_consume(&b, 6000);
    while ((n = veil_buf_read_fd(&b, fds[0])) > 0)
        total += n;
    assert_int_equal(n, -EAGAIN);
    assert_int_equal(total, 10000);
    assert_memory_equal(veil_buf_data(&b), in + 6000, 4000);

    close(fds[1]);
    veil_buf_reset(&b);
    assert_int_equal(veil_buf_read_fd(&b, fds[0]), 0); /* EOF */
    close(fds[0]);
    assert_int_equal(veil_buf_read_fd(&b, fds[0]), -EBADF);
    veil_buf_free(&b);
}

static void test_write_fd(void **state)
{
    (void)state;
    int fds[2];
    char in[3000], out[3000];
    struct veil_buf b;
    fill(in, sizeof(in), 9);
    make_pipe(fds, 1);
    veil_buf_init(&b, 4000);

    assert_int_equal(veil_buf_write_fd(&b, fds[1]), 0); /* empty */
    assert_int_equal(veil_buf_append(&b, in, sizeof(in)), 0);
    veil_buf_consume(&b, 1000);
    assert_int_equal(veil_buf_write_fd(&b, fds[1]), 2000);
    assert_true(veil_buf_is_empty(&b));
    assert_int_equal(read(fds[0], out, sizeof(out)), 2000);
    assert_memory_equal(out, in + 1000, 2000);

    /* A full pipe: -EAGAIN, and the held bytes stay. */
    char chunk[4096] = {0};
    while (write(fds[1], chunk, sizeof(chunk)) > 0)
        ;
    while (write(fds[1], chunk, 1) > 0)
        ;
    assert_int_equal(veil_buf_append(&b, in, 10), 0);
    assert_int_equal(veil_buf_write_fd(&b, fds[1]), -EAGAIN);
    assert_int_equal(veil_buf_len(&b), 10);
    assert_memory_equal(veil_buf_data(&b), in, 10);

    close(fds[0]);
    close(fds[1]);
    assert_int_equal(veil_buf_write_fd(&b, fds[1]), -EBADF);
    assert_int_equal(veil_buf_len(&b), 10);
    veil_buf_free(&b);
}

/* Pumps a stream through a small buffer: what comes out equals what went in. */
static void test_pump_pipe_to_pipe(void **state)
{
    (void)state;
    int a[2], z[2];
    char in[50000], out[50000];
    struct veil_buf b;
    size_t sent = 0, got = 0;
    fill(in, sizeof(in), 11);
    make_pipe(a, 1);
    make_pipe(z, 1);
    veil_buf_init(&b, 1500);

    while (got < sizeof(in)) {
        if (sent < sizeof(in)) {
            ssize_t w = write(a[1], in + sent, sizeof(in) - sent);
            if (w > 0)
                sent += (size_t)w;
            if (sent == sizeof(in))
                close(a[1]);
        }
        ssize_t r = veil_buf_read_fd(&b, a[0]);
        assert_true(r >= 0 || r == -EAGAIN || r == -ENOBUFS);
        assert_true(veil_buf_len(&b) <= 1500);
        ssize_t w = veil_buf_write_fd(&b, z[1]);
        assert_true(w >= 0 || w == -EAGAIN);
        ssize_t n = read(z[0], out + got, sizeof(out) - got);
        if (n > 0)
            got += (size_t)n;
    }
    assert_memory_equal(in, out, sizeof(in));
    assert_true(b._cap <= 1500);
    close(a[0]);
    close(z[0]);
    close(z[1]);
    veil_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_allocates_nothing),
        cmocka_unit_test(test_append_past_max),
        cmocka_unit_test(test_growth_doubles_up_to_max),
        cmocka_unit_test(test_reserve_commit_consume),
        cmocka_unit_test(test_compaction),
        cmocka_unit_test(test_no_alloc_when_room),
        cmocka_unit_test(test_enomem),
        cmocka_unit_test(test_trim),
        cmocka_unit_test(test_read_fd_until_full),
        cmocka_unit_test(test_write_fd),
        cmocka_unit_test(test_pump_pipe_to_pipe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
