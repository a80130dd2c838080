/* test_sched.c — learning-rate schedules at hand-computed steps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>

#include "core/sched.h"

#define NEAR(a, b) assert_true(fabs((double)(a) - (double)(b)) <= 1e-6 * fabs((double)(b)) + 1e-9)

static void test_constant(void **state)
{
    (void)state;
    SchedConf c = {.kind = SCHED_CONSTANT, .lr = 0.05f};
    assert_true(sched_lr(&c, 0, 100) == 0.05f);
    assert_true(sched_lr(&c, 99, 100) == 0.05f);
    assert_true(sched_lr(&c, 1000, 100) == 0.05f);
}

/* Linear warmup from lr/warmup (t = 0) to lr (t = warmup - 1), then the schedule. */
static void test_warmup(void **state)
{
    (void)state;
    SchedConf c = {.kind = SCHED_CONSTANT, .lr = 0.1f, .warmup = 4};
    NEAR(sched_lr(&c, 0, 100), 0.025);
    NEAR(sched_lr(&c, 1, 100), 0.05);
    NEAR(sched_lr(&c, 2, 100), 0.075);
    assert_true(sched_lr(&c, 3, 100) == 0.1f);
    assert_true(sched_lr(&c, 4, 100) == 0.1f);
}

/* Step: lr * gamma^floor((t - warmup) / step_size). */
static void test_step(void **state)
{
    (void)state;
    SchedConf c = {.kind = SCHED_STEP, .lr = 1.0f, .step_size = 10, .gamma = 0.5f};
    assert_true(sched_lr(&c, 0, 100) == 1.0f);
    assert_true(sched_lr(&c, 9, 100) == 1.0f);
    assert_true(sched_lr(&c, 10, 100) == 0.5f);
    assert_true(sched_lr(&c, 25, 100) == 0.25f);
    assert_true(sched_lr(&c, 30, 100) == 0.125f);
    c.warmup = 5; /* the decay counts from the end of the warmup */
    NEAR(sched_lr(&c, 0, 100), 0.2);
    assert_true(sched_lr(&c, 14, 100) == 1.0f);
    assert_true(sched_lr(&c, 15, 100) == 0.5f);
    c.warmup = 0;
    c.lr = 0.1f, c.gamma = 0.1f;
    NEAR(sched_lr(&c, 20, 100), 0.001);
}

/* Cosine: min_lr + (lr - min_lr) (1 + cos(pi (t - warmup) / (total - warmup))) / 2. */
static void test_cosine(void **state)
{
    (void)state;
    SchedConf c = {.kind = SCHED_COSINE, .lr = 1.0f, .min_lr = 0.0f};
    assert_true(sched_lr(&c, 0, 100) == 1.0f);
    NEAR(sched_lr(&c, 25, 100), 0.8535533905932737); /* (1 + cos(pi/4)) / 2 */
    NEAR(sched_lr(&c, 50, 100), 0.5);
    NEAR(sched_lr(&c, 75, 100), 0.14644660940672624);
    assert_true(sched_lr(&c, 100, 100) == 0.0f);
    assert_true(sched_lr(&c, 150, 100) == 0.0f); /* stays at the floor */
    c.min_lr = 0.1f;
    NEAR(sched_lr(&c, 50, 100), 0.55);
    NEAR(sched_lr(&c, 100, 100), 0.1);
    c.warmup = 10; /* cosine over the 100 steps after the warmup */
    NEAR(sched_lr(&c, 4, 110), 0.5);
    assert_true(sched_lr(&c, 10, 110) == 1.0f);
    NEAR(sched_lr(&c, 60, 110), 0.55);
    NEAR(sched_lr(&c, 110, 110), 0.1);
    /* total <= warmup: no decay phase */
    assert_true(sched_lr(&c, 20, 5) == 1.0f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_constant),
        cmocka_unit_test(test_warmup),
        cmocka_unit_test(test_step),
        cmocka_unit_test(test_cosine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
