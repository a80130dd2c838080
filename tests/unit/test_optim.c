/* test_optim.c — optimizer steps against hand-computed values, shard invariance (bits),
 * clipping partials. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/optim.h"
#include "core/rng.h"

static void test_nstates_and_names(void **state)
{
    (void)state;
    OptimConf sgd = {.kind = OPTIM_SGD}, mom = {.kind = OPTIM_SGD, .momentum = 0.9f};
    OptimConf adam = {.kind = OPTIM_ADAMW, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    assert_int_equal(optim_nstates(&sgd), 0);
    assert_int_equal(optim_nstates(&mom), 1);
    assert_int_equal(optim_nstates(&adam), 2);
    assert_string_equal(optim_state_name(&mom, 0), "momentum");
    assert_string_equal(optim_state_name(&adam, 0), "m");
    assert_string_equal(optim_state_name(&adam, 1), "v");
}

/* One element; values chosen so that float arithmetic is exact (powers of two). */
static void test_sgd_values(void **state)
{
    (void)state;
    OptimConf c = {.kind = OPTIM_SGD};
    float p = 1.0f, g = 0.5f;
    optim_update(&c, 0.125f, 1, 1.0f, &p, &g, NULL, 0, 1);
    assert_true(p == 0.9375f); /* 1 - 0.125*0.5 */
    p = 1.0f;
    optim_update(&c, 0.125f, 1, 0.5f, &p, &g, NULL, 0, 1);
    assert_true(p == 0.96875f); /* grad_scale: 1 - 0.125*0.25 */
    c.weight_decay = 0.5f;
    p = 1.0f;
    optim_update(&c, 0.125f, 1, 1.0f, &p, &g, NULL, 0, 1);
    assert_true(p == 0.875f); /* 1 - 0.125*0.5*1 - 0.125*0.5 */
}

static void test_sgd_momentum_values(void **state)
{
    (void)state;
    OptimConf c = {.kind = OPTIM_SGD, .momentum = 0.5f};
    float p = 1.0f, g = 0.5f, buf = 0.0f;
    float *st[1] = {&buf};
    optim_update(&c, 0.125f, 1, 1.0f, &p, &g, st, 0, 1);
    assert_true(buf == 0.5f && p == 0.9375f); /* buf = g; p = 1 - 0.125*0.5 */
    optim_update(&c, 0.125f, 2, 1.0f, &p, &g, st, 0, 1);
    assert_true(buf == 0.75f && p == 0.84375f); /* buf = 0.25+0.5; p -= 0.125*0.75 */

    c.nesterov = 1;
    p = 1.0f, buf = 0.0f;
    optim_update(&c, 0.125f, 1, 1.0f, &p, &g, st, 0, 1);
    assert_true(buf == 0.5f && p == 0.90625f); /* d = 0.5 + 0.5*0.5; p = 1 - 0.125*0.75 */
    optim_update(&c, 0.125f, 2, 1.0f, &p, &g, st, 0, 1);
    assert_true(buf == 0.75f && p == 0.796875f); /* d = 0.5 + 0.375; p -= 0.125*0.875 */

    c.weight_decay = 0.25f; /* decoupled: on p, not through the momentum buffer */
    c.nesterov = 0;
    p = 2.0f, buf = 0.0f;
    optim_update(&c, 0.5f, 1, 1.0f, &p, &g, st, 0, 1);
    assert_true(buf == 0.5f && p == 1.5f); /* 2 - 0.5*0.25*2 - 0.5*0.5 */
}

/* AdamW b1 0.9, b2 0.999, eps 1e-8, lr 1e-3, wd 0.01, p0 = 1, gradients 0.5, -0.25, 2
 * (the last given as 4 with grad_scale 0.5).  Hand computation (double):
 *  t=1: m=0.05 v=2.5e-4; mh=0.5 vh=0.25; p = 1 - 1e-5 - 1e-3*0.5/(0.5+1e-8) = 0.99899000002
 *  t=2: m=0.02 v=3.1225e-4; mh=0.02/0.19 vh=3.1225e-4/0.001999 -> p = 0.99871367309
 *  t=3: m=0.218 v=0.00431193775 -> p = 0.99803303831
 * In float, 1 - 0.999f = 0.00099998713 (0.999f is not 0.999), so v is within 2e-5
 * relative of the hand values; p and m within a few float ulps. */
static void test_adamw_values(void **state)
{
    (void)state;
    OptimConf c = {.kind = OPTIM_ADAMW, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f,
                   .weight_decay = 0.01f};
    float p = 1.0f, m = 0.0f, v = 0.0f, g;
    float *st[2] = {&m, &v};
    g = 0.5f;
    optim_update(&c, 1e-3f, 1, 1.0f, &p, &g, st, 0, 1);
    assert_true(fabs(m - 0.05) < 1e-6 * 0.05 && fabs(v - 2.5e-4) < 2e-5 * 2.5e-4);
    assert_true(fabs(p - 0.99899000002) < 2e-7);
    g = -0.25f;
    optim_update(&c, 1e-3f, 2, 1.0f, &p, &g, st, 0, 1);
    assert_true(fabs(m - 0.02) < 1e-6 * 0.02 && fabs(v - 3.1225e-4) < 2e-5 * 3.1225e-4);
    assert_true(fabs(p - 0.9987136730870783) < 3e-7);
    g = 4.0f;
    optim_update(&c, 1e-3f, 3, 0.5f, &p, &g, st, 0, 1);
    assert_true(fabs(m - 0.218) < 1e-6 * 0.218 && fabs(v - 0.00431193775) < 2e-5 * 0.00431193775);
    assert_true(fabs(p - 0.9980330383085605) < 4e-7);
}

/* Updating [lo, hi) in pieces gives the same bits as at once, for every optimizer. */
static void test_shards_bitwise(void **state)
{
    (void)state;
    const size_t n = 1003;
    const uint64_t key = rng_key(9, RNG_TEST, 0);
    OptimConf confs[] = {
        {.kind = OPTIM_SGD, .weight_decay = 0.01f},
        {.kind = OPTIM_SGD, .momentum = 0.9f, .weight_decay = 0.01f},
        {.kind = OPTIM_SGD, .momentum = 0.9f, .nesterov = 1},
        {.kind = OPTIM_ADAMW, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.1f},
    };
    const size_t cuts[][4] = {{0, 1003, 1003, 1003}, {0, 1, 17, 1003}, {0, 333, 334, 1003},
                              {0, 500, 1002, 1003}};
    for (size_t ci = 0; ci < sizeof confs / sizeof confs[0]; ci++) {
        float *ref[3] = {0}, *got[3] = {0};
        for (int s = 0; s < 3; s++) ref[s] = xmalloc(n * sizeof(float));
        for (size_t cut = 0; cut < sizeof cuts / sizeof cuts[0]; cut++) {
            float *p = xmalloc(n * 4), *g = xmalloc(n * 4), *s0 = xmalloc(n * 4),
                  *s1 = xmalloc(n * 4);
            for (size_t i = 0; i < n; i++) {
                p[i] = rng_normal(key, i);
                g[i] = rng_normal(key, n + i);
                s0[i] = 0.1f * rng_normal(key, 2 * n + i);
                s1[i] = fabsf(0.01f * rng_normal(key, 3 * n + i));
            }
            float *st[2] = {s0, s1};
            for (uint64_t t = 1; t <= 3; t++)
                for (int k = 0; k < 3; k++)
                    optim_update(&confs[ci], 0.01f, t, 0.7f, p, g, st, cuts[cut][k],
                                 cuts[cut][k + 1]);
            got[0] = p, got[1] = s0, got[2] = s1;
            for (int s = 0; s < 3; s++) {
                if (cut == 0) memcpy(ref[s], got[s], n * sizeof(float));
                else assert_memory_equal(ref[s], got[s], n * sizeof(float));
            }
            free(p), free(g), free(s0), free(s1);
        }
        for (int s = 0; s < 3; s++) free(ref[s]);
    }
}

/* The vectorised body and the scalar tail agree: element i's result is the same
 * whatever its position (same inputs at every position -> same outputs). */
static void test_position_independent(void **state)
{
    (void)state;
    enum { N = 37 };
    OptimConf c = {.kind = OPTIM_ADAMW, .beta1 = 0.9f, .beta2 = 0.99f, .eps = 1e-6f,
                   .weight_decay = 0.05f};
    float p[N], g[N], m[N], v[N];
    for (int i = 0; i < N; i++) p[i] = 0.3f, g[i] = -1.7f, m[i] = 0.2f, v[i] = 0.03f;
    float *st[2] = {m, v};
    optim_update(&c, 0.01f, 7, 0.9f, p, g, st, 0, N);
    for (int i = 1; i < N; i++) assert_true(p[i] == p[0] && m[i] == m[0] && v[i] == v[0]);
    /* only [lo, hi) is touched */
    float q[N], qm[N], qv[N];
    memcpy(q, p, sizeof q), memcpy(qm, m, sizeof qm), memcpy(qv, v, sizeof qv);
    optim_update(&c, 0.01f, 8, 0.9f, p, g, st, 5, 22);
    for (int i = 0; i < N; i++) {
        const int in = i >= 5 && i < 22;
        assert_true((p[i] != q[i]) == in && (m[i] != qm[i]) == in && (v[i] != qv[i]) == in);
    }
    OptimConf s = {.kind = OPTIM_SGD};
    memcpy(q, p, sizeof q);
    optim_update(&s, 0.01f, 1, 1.0f, p, g, NULL, 30, 30); /* empty range */
    optim_update(&s, 0.01f, 1, 1.0f, p, g, NULL, 0, 3);
    for (int i = 0; i < N; i++) assert_true((p[i] != q[i]) == (i < 3));
}

static void test_clip(void **state)
{
    (void)state;
    assert_int_equal(clip_nblocks(0), 0);
    assert_int_equal(clip_nblocks(1), 1);
    assert_int_equal(clip_nblocks(CLIP_BLOCK), 1);
    assert_int_equal(clip_nblocks(CLIP_BLOCK + 1), 2);
    const size_t n = 3 * CLIP_BLOCK + 100;
    const size_t nb = clip_nblocks(n);
    float *g = xmalloc(n * sizeof(float));
    const uint64_t key = rng_key(10, RNG_TEST, 0);
    for (size_t i = 0; i < n; i++) g[i] = rng_normal(key, i);
    double whole[4], parts[4];
    clip_block_sumsq(g, n, 0, n, whole);
    /* in element order, in double, block by block */
    for (size_t j = 0; j < nb; j++) {
        double s = 0;
        for (size_t i = j * CLIP_BLOCK; i < MT_MIN((j + 1) * CLIP_BLOCK, n); i++)
            s += (double)g[i] * (double)g[i];
        assert_true(s == whole[j]);
    }
    /* shards on block boundaries: same bits */
    clip_block_sumsq(g, n, 0, CLIP_BLOCK, parts);
    clip_block_sumsq(g, n, CLIP_BLOCK, 3 * CLIP_BLOCK, parts);
    clip_block_sumsq(g, n, 3 * CLIP_BLOCK, n, parts);
    assert_memory_equal(whole, parts, sizeof whole);
    double norm, want = sqrt(((whole[0] + whole[1]) + whole[2]) + whole[3]);
    float s = clip_scale(whole, nb, 0.0f, &norm);
    assert_true(s == 1.0f && norm == want);
    s = clip_scale(whole, nb, 1e6f, &norm);
    assert_true(s == 1.0f);
    s = clip_scale(whole, nb, 1.0f, NULL);
    assert_true(s == (float)(1.0 / (want + 1e-6)));
    /* a known norm: 3-4-5 */
    float h[2] = {3.0f, 4.0f};
    double p1;
    clip_block_sumsq(h, 2, 0, 2, &p1);
    assert_true(p1 == 25.0);
    s = clip_scale(&p1, 1, 2.5f, &norm);
    assert_true(norm == 5.0 && fabsf(s - 0.5f) < 1e-6f);
    free(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nstates_and_names),
        cmocka_unit_test(test_sgd_values),
        cmocka_unit_test(test_sgd_momentum_values),
        cmocka_unit_test(test_adamw_values),
        cmocka_unit_test(test_shards_bitwise),
        cmocka_unit_test(test_position_independent),
        cmocka_unit_test(test_clip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
