#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/fmt.h"

static void test_u64(void **state)
{
    (void)state;
    const uint64_t vs[] = {0, 1, 9, 10, 99, 100, 503, 65535, 4294967296ull, UINT64_MAX};
    for (size_t i = 0; i < sizeof(vs) / sizeof(vs[0]); i++) {
        char got[VEIL_FMT_U64_MAX], want[32];
        int n = snprintf(want, sizeof(want), "%" PRIu64, vs[i]);
        assert_int_equal(veil_fmt_u64(got, vs[i]), n);
        assert_string_equal(got, want);
    }
}

/* Every shape of dotted quad, against inet_ntop() itself. */
static void test_ip4_as_inet_ntop(void **state)
{
    (void)state;
    const uint8_t parts[] = {0, 1, 9, 10, 42, 99, 100, 198, 255};
    size_t np = sizeof(parts);
    for (size_t i = 0; i < np * np * np * np; i++) {
        uint8_t q[4] = {parts[i % np], parts[i / np % np], parts[i / np / np % np],
                        parts[i / np / np / np]};
        struct in_addr a;
        memcpy(&a.s_addr, q, 4);
        char got[INET_ADDRSTRLEN], want[INET_ADDRSTRLEN];
        assert_non_null(inet_ntop(AF_INET, &a, want, sizeof(want)));
        assert_int_equal(veil_fmt_ip4(got, a), strlen(want));
        assert_string_equal(got, want);
    }
}

static void test_cat_and_cut_as_snprintf(void **state)
{
    (void)state;
    char b[8];
    assert_int_equal(veil_fmt_cat(b, sizeof(b), "ns", "/", "name"), 7);
    assert_string_equal(b, "ns/name");
    assert_int_equal(veil_fmt_cat(b, sizeof(b), "shop", "/", "cart"), 9); /* cut */
    assert_string_equal(b, "shop/ca");
    assert_int_equal(veil_fmt_cat(b, sizeof(b), ""), 0);
    assert_string_equal(b, "");
    assert_int_equal(veil_fmt_cat_list(b, sizeof(b), (const char *)NULL), 0);
    assert_string_equal(b, "");
    assert_int_equal(veil_fmt_cat(b, 1, "x", "y"), 2);
    assert_string_equal(b, "");
    char want[8];
    for (size_t cap = 1; cap <= sizeof(b); cap++) {
        memset(b, 'z', sizeof(b));
        size_t n = veil_fmt_cat(b, cap, "abc", "", "defgh");
        assert_int_equal(n, 8);
        memcpy(want, "abcdefgh", cap - 1); /* what snprintf() keeps of it */
        want[cap - 1] = '\0';
        assert_string_equal(b, want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_u64),
        cmocka_unit_test(test_ip4_as_inet_ntop),
        cmocka_unit_test(test_cat_and_cut_as_snprintf),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
