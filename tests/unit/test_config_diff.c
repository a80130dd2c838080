/* test_config_diff.c — config_diff (config.h): what a resumed run may change. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "io/config.h"

/* resolved config texts with one override each */
static char *text_with(const char *set)
{
    Config c;
    config_defaults(&c);
    if (set) assert_int_equal(config_set(&c, set, "test"), 0);
    return config_to_string(&c);
}

static void test_same_config(void **state)
{
    (void)state;
    char *a = text_with(NULL), *b = text_with(NULL), bad[256];
    assert_int_equal(config_diff(a, b, bad, sizeof bad), 0);
    assert_string_equal(bad, "");
    free(a);
    free(b);
}

static void test_changeable_keys(void **state)
{
    (void)state;
    static const char *sets[] = {"optim.lr=0.5", "train.epochs=3", "parallel.reduce=fast",
                                 "checkpoint.keep=7", "train.threads=2"};
    char *a = text_with(NULL), bad[256];
    for (size_t i = 0; i < sizeof sets / sizeof *sets; i++) {
        char *b = text_with(sets[i]);
        assert_int_equal(config_diff(a, b, bad, sizeof bad), 0);
        free(b);
    }
    free(a);
}

static void test_fixed_keys_refused(void **state)
{
    (void)state;
    struct { const char *set, *want; } cases[] = {
        {"model.layers=dense:10", "[model] layers: checkpoint has"},
        {"model.input=784", "[model] input: checkpoint has"},
        {"optim.name=adamw", "[optim] name: checkpoint has 'sgd', the config now has 'adamw'"},
    };
    char *a = text_with(NULL), bad[256];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char *b = text_with(cases[i].set);
        assert_int_equal(config_diff(a, b, bad, sizeof bad), 1);
        assert_non_null(strstr(bad, cases[i].want));
        free(b);
    }
    /* run.name is not optim.name: a "name" key elsewhere may change */
    char *b = text_with("run.name=other");
    assert_int_equal(config_diff(a, b, bad, sizeof bad), 0);
    free(b);
    free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_config),
        cmocka_unit_test(test_changeable_keys),
        cmocka_unit_test(test_fixed_keys_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
