/* Tests of the bounded JSON text writer (src/core/jsonw.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <jansson.h>
#include <string.h>

#include "core/jsonw.h"

static const char *str(const char *in, size_t n, char *buf, size_t cap, bool *over)
{
    struct veil_jw w;
    veil_jw_init(&w, buf, cap - 1);
    veil_jw_str(&w, in, n);
    buf[w.pos] = '\0';
    *over = w.over;
    return buf;
}

static void test_escapes(void **state)
{
    (void)state;
    char buf[128];
    bool over;
    static const char in[] = "a\"b\\c\nd\re\tf\x01g\x1f/";
    assert_string_equal(str(in, sizeof(in) - 1, buf, sizeof(buf), &over),
                        "\"a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u001f/\"");
    assert_false(over);
    /* a NUL inside the span is a character like any other */
    assert_string_equal(str("a\0b", 3, buf, sizeof(buf), &over), "\"a\\u0000b\"");
    /* and jansson reads the text back as the same string */
    json_t *j = json_loads(str(in, sizeof(in) - 1, buf, sizeof(buf), &over), JSON_DECODE_ANY, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(j), in);
    json_decref(j);
}

/* Every single byte: ASCII goes through jansson's reading unchanged (as
 * itself or escaped), any byte >= 0x80 alone is not UTF-8 and becomes
 * U+FFFD; only printable ASCII but '"' and '\\' is copied as it is. */
static void test_every_byte(void **state)
{
    (void)state;
    for (unsigned c = 0; c < 256; c++) {
        char in[1] = {(char)c}, buf[32];
        bool over;
        str(in, 1, buf, sizeof(buf), &over);
        assert_false(over);
        bool plain = c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
        if (plain) {
            assert_int_equal(strlen(buf), 3);
            assert_int_equal((unsigned char)buf[1], c);
        } else {
            assert_true(strlen(buf) == 4 || strlen(buf) == 8); /* \n or \u0001 */
            assert_int_equal(buf[1], '\\');
        }
        json_t *j = json_loads(buf, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
        assert_non_null(j);
        if (c < 0x80) {
            assert_int_equal(json_string_length(j), 1);
            assert_int_equal((unsigned char)json_string_value(j)[0], c);
        } else {
            assert_string_equal(json_string_value(j), "\xef\xbf\xbd");
        }
        json_decref(j);
    }
}

/* A byte to escape at every position of a long string, plain bytes on
 * both sides (the writer skips plain bytes 8 at a time): the same text as
 * escaping it alone between the two plain runs. */
static void test_escape_at_every_position(void **state)
{
    (void)state;
    static const unsigned char special[] = {'"', '\\', '\n', 0x01, 0x1f, 0x7f, 0xc3, 0xff};
    for (size_t k = 0; k < sizeof(special); k++) {
        for (size_t at = 0; at < 40; at++) {
            char in[41], buf[256], want[256], one[32];
            memset(in, 'a', sizeof(in));
            in[at] = (char)special[k];
            bool over;
            str(in + at, 1, one, sizeof(one), &over);
            one[strlen(one) - 1] = '\0'; /* without its quotes */
            snprintf(want, sizeof(want), "\"%.*s%s%.*s\"", (int)at, in, one + 1,
                     (int)(sizeof(in) - at - 1), in + at + 1);
            if (special[k] == 0x7f) /* DEL is printable ASCII for JSON: copied as it is */
                assert_string_equal(one + 1, "\x7f");
            assert_string_equal(str(in, sizeof(in), buf, sizeof(buf), &over), want);
            assert_false(over);
        }
    }
}

static void test_utf8(void **state)
{
    (void)state;
    char buf[128];
    bool over;
    /* valid sequences of 2, 3 and 4 bytes pass as they are */
    assert_string_equal(str("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9, buf, sizeof(buf), &over),
                        "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
    /* a lone continuation, a truncated sequence, an overlong form, a
     * surrogate and 0xff each become U+FFFD */
    assert_string_equal(str("\x80", 1, buf, sizeof(buf), &over), "\"\\ufffd\"");
    assert_string_equal(str("\xe2\x82", 2, buf, sizeof(buf), &over), "\"\\ufffd\\ufffd\"");
    assert_string_equal(str("\xc0\xaf", 2, buf, sizeof(buf), &over), "\"\\ufffd\\ufffd\"");
    assert_string_equal(str("\xed\xa0\x80", 3, buf, sizeof(buf), &over),
                        "\"\\ufffd\\ufffd\\ufffd\"");
    assert_string_equal(str("x\xffy", 3, buf, sizeof(buf), &over), "\"x\\ufffdy\"");
    json_t *j = json_loads(buf, JSON_DECODE_ANY, NULL);
    assert_non_null(j); /* valid JSON, always */
    json_decref(j);
}

/* Whatever the room, the text is whole pieces: never half an escape or
 * half a character, and `over` says something was left out. */
static void test_bounded(void **state)
{
    (void)state;
    static const char in[] = "ab\"\xc3\xa9\n";
    static const char full[] = "\"ab\\\"\xc3\xa9\\n\"";
    for (size_t cap = 0; cap <= sizeof(full); cap++) {
        char buf[64];
        struct veil_jw w;
        veil_jw_init(&w, buf, cap);
        veil_jw_str(&w, in, sizeof(in) - 1);
        assert_true(w.pos <= cap);
        assert_int_equal(memcmp(buf, full, w.pos), 0);
        assert_int_equal(w.over, cap < sizeof(full) - 1);
        /* the cut falls between pieces */
        static const size_t cuts[] = {0, 1, 2, 3, 5, 7, 9, 10};
        bool at_cut = false;
        for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++)
            at_cut |= w.pos == cuts[i];
        if (!at_cut)
            fail_msg("cap %zu: cut at %zu", cap, w.pos);
    }
}

static void test_numbers_and_raw(void **state)
{
    (void)state;
    char buf[64];
    struct veil_jw w;
    veil_jw_init(&w, buf, sizeof(buf) - 1);
    VEIL_JW_LIT(&w, "[");
    veil_jw_u64(&w, 0);
    VEIL_JW_LIT(&w, ",");
    veil_jw_u64(&w, 18446744073709551615ULL);
    VEIL_JW_LIT(&w, "]");
    buf[w.pos] = '\0';
    assert_string_equal(buf, "[0,18446744073709551615]");
    /* a raw piece that does not fit is left out whole */
    veil_jw_init(&w, buf, 3);
    VEIL_JW_LIT(&w, "ab");
    VEIL_JW_LIT(&w, "cd");
    VEIL_JW_LIT(&w, "e"); /* fits, but comes after a piece left out */
    assert_int_equal(w.pos, 2);
    assert_true(w.over);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_every_byte),
        cmocka_unit_test(test_escape_at_every_position),
        cmocka_unit_test(test_utf8),
        cmocka_unit_test(test_bounded),
        cmocka_unit_test(test_numbers_and_raw),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
