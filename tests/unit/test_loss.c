/* test_loss.c — softmax cross-entropy: known values, stability, gradient by finite
 * differences, in-place use, accuracy counting, eval == train loss bits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "core/loss.h"
#include "core/rng.h"

static void test_known_values(void **state)
{
    (void)state;
    /* two equal logits: loss ln 2, gradient (0.5 - 1, 0.5) * scale */
    float z[2] = {0.0f, 0.0f}, d[2];
    int32_t y = 0;
    int64_t ok = 0;
    double L = loss_softmax_xent(z, &y, 1, 2, 0.5f, d, &ok);
    assert_true(fabs(L - log(2.0)) < 1e-12);
    assert_true(d[0] == -0.25f && d[1] == 0.25f);
    assert_int_equal(ok, 1); /* tie: first max wins, and it is the label */
    y = 1;
    ok = 0;
    loss_softmax_xent(z, &y, 1, 2, 1.0f, d, &ok);
    assert_int_equal(ok, 0);
    /* logits (1, 2, 3), label 2: loss = log(e^-2 + e^-1 + 1) */
    float z3[3] = {1, 2, 3}, d3[3];
    y = 2;
    L = loss_softmax_xent(z3, &y, 1, 3, 1.0f, d3, NULL);
    double s = exp(-2.0) + exp(-1.0) + 1.0;
    assert_true(fabs(L - log(s)) < 1e-7);
    assert_true(fabs(d3[0] - exp(-2.0) / s) < 1e-7);
    assert_true(fabs(d3[1] - exp(-1.0) / s) < 1e-7);
    assert_true(fabs(d3[2] - (1.0 / s - 1.0)) < 1e-7);
}

/* Huge logits: max-subtraction keeps everything finite and exact-ish. */
static void test_stability(void **state)
{
    (void)state;
    float z[3] = {1000.0f, 1001.0f, -1000.0f}, d[3];
    int32_t y = 0;
    double L = loss_softmax_xent(z, &y, 1, 3, 1.0f, d, NULL);
    assert_true(isfinite(L));
    assert_true(fabs(L - (1.0 + log(1.0 + exp(-1.0)))) < 1e-6);
    for (int j = 0; j < 3; j++) assert_true(isfinite(d[j]));
    assert_true(d[2] == 0.0f);
    float w[2] = {-1e30f, 1e30f};
    y = 1;
    L = loss_softmax_xent(w, &y, 1, 2, 1.0f, d, NULL);
    assert_true(L == 0.0);
}

/* d(grad_scale * sum loss)/dz by central differences == dlogits. */
static void test_gradient_fd(void **state)
{
    (void)state;
    enum { B = 4, C = 7 };
    float z[B * C], d[B * C], zz[B * C];
    int32_t y[B] = {3, 0, 6, 2};
    const uint64_t key = rng_key(1, RNG_TEST, 0);
    for (int i = 0; i < B * C; i++) z[i] = 4.0f * rng_uniform(key, (uint64_t)i) - 2.0f;
    const float gs = 0.25f;
    loss_softmax_xent(z, y, B, C, gs, d, NULL);
    double scale = 0;
    for (int i = 0; i < B * C; i++) scale = fmax(scale, fabs(d[i]));
    for (int i = 0; i < B * C; i++) {
        memcpy(zz, z, sizeof z);
        zz[i] = z[i] + 1e-2f;
        double tp = zz[i], Lp = gs * loss_softmax_xent_eval(zz, y, B, C, NULL);
        zz[i] = z[i] - 1e-2f;
        double tm = zz[i], Lm = gs * loss_softmax_xent_eval(zz, y, B, C, NULL);
        double num = (Lp - Lm) / (tp - tm);
        assert_true(fabs(num - d[i]) <= 1e-4 * scale + 5e-4 * fabs(num));
    }
}

/* dlogits == logits (in place) gives the same bits; eval gives the same loss bits. */
static void test_in_place_and_eval(void **state)
{
    (void)state;
    enum { B = 5, C = 10 };
    float z[B * C], d[B * C], w[B * C];
    int32_t y[B] = {9, 1, 1, 0, 4};
    const uint64_t key = rng_key(2, RNG_TEST, 0);
    for (int i = 0; i < B * C; i++) z[i] = 10.0f * rng_uniform(key, (uint64_t)i) - 5.0f;
    memcpy(w, z, sizeof z);
    int64_t c1 = 0, c2 = 0, c3 = 0;
    double L1 = loss_softmax_xent(z, y, B, C, 0.125f, d, &c1);
    double L2 = loss_softmax_xent(w, y, B, C, 0.125f, w, &c2);
    double L3 = loss_softmax_xent_eval(z, y, B, C, &c3);
    assert_memory_equal(d, w, sizeof d);
    assert_true(L1 == L2 && L1 == L3);
    assert_true(c1 == c2 && c1 == c3);
    /* correct count = rows whose (first) argmax is the label */
    int64_t want = 0;
    for (int r = 0; r < B; r++) {
        int a = 0;
        for (int j = 1; j < C; j++)
            if (z[r * C + j] > z[r * C + a]) a = j;
        want += a == y[r];
    }
    assert_int_equal(c1, want);
    /* *correct accumulates */
    loss_softmax_xent_eval(z, y, B, C, &c3);
    assert_int_equal(c3, 2 * want);
    /* the loss is the sum of the per-sample losses, in sample order */
    double sum = 0;
    for (int r = 0; r < B; r++) sum += loss_softmax_xent_eval(z + r * C, y + r, 1, C, NULL);
    assert_true(sum == L1);
    /* each dlogits row sums to ~0 */
    for (int r = 0; r < B; r++) {
        double s = 0;
        for (int j = 0; j < C; j++) s += d[r * C + j];
        assert_true(fabs(s) < 1e-7);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_values),
        cmocka_unit_test(test_stability),
        cmocka_unit_test(test_gradient_fd),
        cmocka_unit_test(test_in_place_and_eval),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
