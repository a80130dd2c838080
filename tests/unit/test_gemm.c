/* test_gemm.c — mpitrain's own GEMM: every element is an fma chain over k in order
 * (checked bit for bit against a scalar fmaf reference), the AVX-512, AVX2 and C kernels
 * give identical bits (each one the CPU has), accumulation adds the finished chain with
 * one rounding, cutting rows/columns into calls changes nothing, the tree of products
 * equals separate products summed along the canonical tree, every walk of the planner
 * (gemm_plan.h: forced one by one, and measured) gives those bits too, and the
 * transposes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/exec.h"
#include "core/gemm.h"
#include "core/gemm_plan.h"
#include "core/rng.h"
#include "core/tree.h"

static float *randv(size_t n, uint64_t salt)
{
    float *v = xaligned((n ? n : 1) * sizeof(float));
    uint64_t key = rng_key(7, RNG_TEST, salt);
    for (size_t i = 0; i < n; i++) v[i] = rng_normal(key, i);
    return v;
}

/* the definition, element by element */
static void ref_gemm(int m, int n, int k, const float *a, ptrdiff_t rsa, ptrdiff_t csa,
                     const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc, int acc)
{
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float s = 0.0f;
            for (int p = 0; p < k; p++) s = fmaf(a[i * rsa + p * csa], b[p * ldb + j], s);
            c[i * ldc + j] = acc ? c[i * ldc + j] + s : s;
        }
}

static const int SHAPES[][3] = {{1, 1, 1},   {12, 32, 7},  {13, 33, 5},  {25, 17, 40},
                                {7, 100, 64}, {40, 9, 129}, {3, 65, 300}, {30, 48, 0}};

static void check_isa(GemmIsa isa)
{
    for (size_t s = 0; s < sizeof SHAPES / sizeof SHAPES[0]; s++) {
        int m = SHAPES[s][0], n = SHAPES[s][1], k = SHAPES[s][2];
        for (int trans = 0; trans < 2; trans++)
            for (int acc = 0; acc < 2; acc++) {
                /* A as (m, k) row-major or read transposed from (k, m) */
                float *a = randv((size_t)m * k, 1 + s), *b = randv((size_t)k * (n + 3), 2 + s);
                float *c0 = randv((size_t)m * (n + 5), 3 + s);
                float *c1 = xaligned((size_t)m * (n + 5) * sizeof(float));
                memcpy(c1, c0, (size_t)m * (n + 5) * sizeof(float));
                ptrdiff_t rsa = trans ? 1 : k, csa = trans ? m : 1;
                assert_int_equal(gemm_force_isa(isa), 0);
                gemm_f32(m, n, k, a, rsa, csa, b, n + 3, c0, n + 5, acc);
                ref_gemm(m, n, k, a, rsa, csa, b, n + 3, c1, n + 5, acc);
                /* compared whole: the padding columns must be untouched too */
                assert_memory_equal(c0, c1, (size_t)m * (n + 5) * sizeof(float));
                free(a);
                free(b);
                free(c0);
                free(c1);
            }
    }
}

static void test_every_kernel_is_the_definition(void **state)
{
    (void)state;
    int tried = 0;
    for (GemmIsa isa = GEMM_ISA_C; isa <= GEMM_ISA_AVX512; isa++) {
        if (gemm_force_isa(isa) != 0) {
            print_message("note: this CPU has no %s kernel; not tested here\n",
                          isa == GEMM_ISA_AVX2 ? "AVX2" : "AVX-512");
            continue;
        }
        check_isa(isa);
        tried++;
    }
    assert_true(tried >= 1);
    assert_int_equal(gemm_force_isa(GEMM_ISA_AUTO), 0);
}

/* Splitting rows and columns into calls gives the same bits (what lets the layer-wise
 * executor cut a layer's work across threads freely). */
static void test_cutting_changes_nothing(void **state)
{
    (void)state;
    int m = 50, n = 77, k = 93;
    float *a = randv((size_t)m * k, 11), *b = randv((size_t)k * n, 12);
    float *c0 = xaligned((size_t)m * n * sizeof(float)), *c1 = xaligned((size_t)m * n * sizeof(float));
    gemm_f32(m, n, k, a, k, 1, b, n, c0, n, 0);
    for (int i0 = 0; i0 < m; i0 += 7)
        for (int j0 = 0; j0 < n; j0 += 19)
            gemm_f32(MT_MIN(7, m - i0), MT_MIN(19, n - j0), k, a + i0 * k, k, 1, b + j0, n,
                     c1 + i0 * n + j0, n, 0);
    assert_memory_equal(c0, c1, (size_t)m * n * sizeof(float));
    free(a);
    free(b);
    free(c0);
    free(c1);
}

/* dst[i] = T(lo, hi) of leaves v[q] with the executor's tree */
static void tree_ref(float **v, int lo, int hi, size_t n, float *dst)
{
    if (hi - lo == 1) {
        memcpy(dst, v[lo], n * sizeof(float));
        return;
    }
    int mid = tree_mid(lo, hi);
    float *l = xaligned(n * sizeof(float)), *r = xaligned(n * sizeof(float));
    tree_ref(v, lo, mid, n, l);
    tree_ref(v, mid, hi, n, r);
    for (size_t i = 0; i < n; i++) dst[i] = l[i] + r[i];
    free(l);
    free(r);
}

/* gemm_f32_tree of nleaf dW-like leaves (A^T read from (k, m) rows), called reps times,
 * equals the leaves' reference products summed along the tree, every time */
static void check_tree(int m, int n, int k, int nleaf, uint64_t salt, int reps)
{
    float *a = randv((size_t)nleaf * k * m, salt), *b = randv((size_t)nleaf * k * n, salt + 20);
    float **leaf = xcalloc(nleaf, sizeof(float *));
    for (int q = 0; q < nleaf; q++) {
        leaf[q] = xaligned((size_t)m * n * sizeof(float));
        ref_gemm(m, n, k, a + (size_t)q * k * m, 1, m, b + (size_t)q * k * n, n, leaf[q], n, 0);
    }
    float *want = xaligned((size_t)m * n * sizeof(float)), *got = xaligned((size_t)m * n * sizeof(float));
    tree_ref(leaf, 0, nleaf, (size_t)m * n, want);
    for (int rep = 0; rep < reps; rep++) {
        gemm_f32_tree(m, n, k, nleaf, a, 1, m, (ptrdiff_t)k * m, b, n, (ptrdiff_t)k * n, got, n);
        assert_memory_equal(want, got, (size_t)m * n * sizeof(float));
    }
    for (int q = 0; q < nleaf; q++) free(leaf[q]);
    free(leaf);
    free(a);
    free(b);
    free(want);
    free(got);
}

static void test_tree_of_products(void **state)
{
    (void)state;
    for (int nleaf = 1; nleaf <= 9; nleaf++) check_tree(30, 70, 9, nleaf, 20 + nleaf, 1);
}

/* every walk and tree block the planner can pick, forced one by one with every kernel, and
 * the measuring mode (which tries them all in turn), give the definition's bits */
static void check_plan(const char *plan)
{
    setenv("MPITRAIN_PLAN", plan, 1);
    setenv("MPITRAIN_PLAN_CACHE", "off", 1);
    gemm_plan_reset();
    /* large enough to be planned (>= 2 M flops), with row and column tails, k-blocks
     * with a tail (300 = 2 x 128 + 44) over several row blocks (101 rows: 48- and
     * 96-row blocks with tails), strided A both ways, and accumulation */
    const int m = 101, n = 150, k = 300;
    for (int trans = 0; trans < 2; trans++)
        for (int acc = 0; acc < 2; acc++) {
            float *a = randv((size_t)m * k, 70 + trans), *b = randv((size_t)k * n, 72);
            float *c = randv((size_t)m * n, 74), *want = xaligned((size_t)m * n * sizeof(float));
            float *got = xaligned((size_t)m * n * sizeof(float));
            ptrdiff_t rsa = trans ? 1 : k, csa = trans ? m : 1;
            memcpy(want, c, (size_t)m * n * sizeof(float));
            ref_gemm(m, n, k, a, rsa, csa, b, n, want, n, acc);
            for (int rep = 0; rep < GEMM_NWALK * GEMM_PLAN_ROUNDS + 2; rep++) {
                memcpy(got, c, (size_t)m * n * sizeof(float));
                gemm_f32(m, n, k, a, rsa, csa, b, n, got, n, acc);
                assert_memory_equal(got, want, (size_t)m * n * sizeof(float));
            }
            free(a);
            free(b);
            free(c);
            free(want);
            free(got);
        }
    /* trees: every block size, each tried GEMM_PLAN_ROUNDS times when measuring */
    for (int nleaf = 2; nleaf <= 5; nleaf++) check_tree(43, 300, 33, nleaf, 80 + nleaf, GEMM_NTREE * GEMM_PLAN_ROUNDS + 2);
}

static void test_every_plan_gives_the_same_bits(void **state)
{
    (void)state;
    for (GemmIsa isa = GEMM_ISA_C; isa <= GEMM_ISA_AVX512; isa++) {
        if (gemm_force_isa(isa) != 0) continue;
        check_plan("measure");
        check_plan("default");
        for (int v = 0; v < GEMM_NWALK; v++) check_plan(gemm_plan_name(GEMM_KIND_PRODUCT, v));
        for (int v = 0; v < GEMM_NTREE; v++) check_plan(gemm_plan_name(GEMM_KIND_TREE, v));
    }
    char why[512];
    setenv("MPITRAIN_PLAN", "j,bogus", 1);
    assert_int_equal(gemm_plan_check_env(why, sizeof why), -1);
    assert_non_null(strstr(why, "'bogus' is not a plan"));
    setenv("MPITRAIN_PLAN", "kc128,t36x128", 1);
    assert_int_equal(gemm_plan_check_env(why, sizeof why), 0);
    unsetenv("MPITRAIN_PLAN");
    gemm_plan_reset();
    assert_int_equal(gemm_force_isa(GEMM_ISA_AUTO), 0);
}

static void test_transpose(void **state)
{
    (void)state;
    for (GemmIsa isa = GEMM_ISA_C; isa <= GEMM_ISA_AVX512; isa++) {
        if (gemm_force_isa(isa) != 0) continue;
        for (int rows = 1; rows <= 40; rows += 13)
            for (int cols = 1; cols <= 70; cols += 23) {
                float *in = randv((size_t)rows * (cols + 2), 60), *out = xaligned((size_t)cols * (rows + 3) * sizeof(float));
                gemm_transpose(rows, cols, in, cols + 2, out, rows + 3);
                for (int i = 0; i < rows; i++)
                    for (int j = 0; j < cols; j++)
                        assert_memory_equal(&out[j * (rows + 3) + i], &in[i * (cols + 2) + j], sizeof(float));
                free(in);
                free(out);
            }
    }
    assert_int_equal(gemm_force_isa(GEMM_ISA_AUTO), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_kernel_is_the_definition),
        cmocka_unit_test(test_cutting_changes_nothing),
        cmocka_unit_test(test_every_plan_gives_the_same_bits),
        cmocka_unit_test(test_tree_of_products),
        cmocka_unit_test(test_transpose),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
