/* test_mathf.c — mpitrain's own elementary functions (core/mathf.h):
 * - expf, tanhf, logf within 1 ulp of libm's double-precision functions over a sweep of
 *   the float bit patterns (every 41st of the 2^32 by default, 1.05e8 points each;
 *   MATHF_STRIDE=1 sweeps all of them, MATHF_PART=i/n one n-th of the sweep), every
 *   subnormal input, the documented special values and overflow/underflow thresholds;
 * - the array functions equal the scalar functions bit for bit, on each path the CPU has
 *   (AVX2, baseline), in place and not, at every length mod 16;
 * - the double helpers within 1 ulp: log against logl, cospi against cosl/sinl of the
 *   exactly reduced argument, powi against powl.
 * Prints the largest error found and where (the figures in docs/determinism.md). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/mathf.h"
#include "core/rng.h"

/* ---------------------------------------------------------------- error measures */

/* Float ulp at the true value w: 2^(e-24) for |w| in [2^(e-1), 2^e), 2^-149 below
 * 2^-126; above FLT_MAX, 2^104 (an infinite result counts as 2^128). */
static double ulp_f(double w)
{
    const double a = fabs(w);
    if (a < 0x1p-126) return 0x1p-149;
    if (a >= 0x1p128) return 0x1p104;
    int e;
    frexp(a, &e);
    return ldexp(1.0, e - 24);
}

/* |got - want| in float ulps of want; NaN where exactly one of them is NaN. */
static double err_f(float got, double want)
{
    if (isnan(want) || isnan(got)) return isnan(want) && isnan(got) ? 0.0 : NAN;
    double g = isinf(got) ? copysign(0x1p128, got) : got;
    double w = fabs(want) >= 0x1p128 ? copysign(0x1p128, want) : want;
    return fabs(g - w) / ulp_f(w);
}

static long double ulp_d(long double w)
{
    const long double a = fabsl(w);
    if (a < 0x1p-1022L) return 0x1p-1074L;
    int e;
    frexpl(a, &e);
    return ldexpl(1.0L, e - 53);
}

static double err_d(double got, long double want)
{
    if (isnan(want) || isnan(got)) return isnan(want) && isnan(got) ? 0.0 : NAN;
    return (double)(fabsl((long double)got - want) / ulp_d(want));
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---------------------------------------------------------------- the functions */

typedef struct {
    const char *name;
    float (*scalar)(float);            /* the inline scalar function, not vectorised */
    void (*array)(const float *, float *, size_t);
    double (*ref)(double);             /* libm, double precision */
    int (*in_domain)(float);           /* inputs whose error is measured */
} Fn;

/* called through pointers, so each is one scalar evaluation */
static float s_expf(float x) { return mathf_expf(x); }
static float s_tanhf(float x) { return mathf_tanhf(x); }
static float s_logf(float x) { return mathf_logf(x); }
static int all_inputs(float x) { return !isnan(x); }
static int positive(float x) { return x > 0.0f && x < INFINITY; }

static const Fn FN_EXP = {"expf", s_expf, mathf_expf_n, exp, all_inputs};
static const Fn FN_TANH = {"tanhf", s_tanhf, mathf_tanhf_n, tanh, all_inputs};
static const Fn FN_LOG = {"logf", s_logf, mathf_logf_n, log, positive};

static int same_bits(float a, float b) { return mathf_bits32(a) == mathf_bits32(b); }

typedef struct {
    uint64_t n;         /* points measured */
    uint64_t over_half; /* results not correctly rounded (error > 0.5 ulp) */
    double max_err;
    float worst;
} Stats;

enum { BLK = 4096 };

/* Checks the inputs in[0..n): array (each path) == scalar bit for bit, error <= 1 ulp. */
static void check_block(const Fn *f, const float *in, size_t n, Stats *st)
{
    static float out[BLK], out_base[BLK];
    mathf_force_baseline(0);
    f->array(in, out, n);
    mathf_force_baseline(1);
    f->array(in, out_base, n);
    mathf_force_baseline(0);
    for (size_t i = 0; i < n; i++) {
        const float x = in[i], s = f->scalar(x);
        if (!same_bits(s, out[i]) || !same_bits(s, out_base[i])) {
            fprintf(stderr, "%s(%a): scalar %a, array %a, baseline array %a\n", f->name, x, s,
                    out[i], out_base[i]);
            fail();
        }
        if (!f->in_domain(x)) continue;
        const double e = err_f(s, f->ref((double)x));
        if (!(e <= 1.0)) {
            fprintf(stderr, "%s(%a) = %a, reference %a: error %g ulp\n", f->name, x, s,
                    f->ref((double)x), e);
            fail();
        }
        st->n++;
        st->over_half += e > 0.5 + 1e-9;
        if (e > st->max_err) st->max_err = e, st->worst = x;
    }
}

/* Every stride-th bit pattern from part*stride/nparts on (NaN patterns included: they
 * check array == scalar). */
static void sweep(const Fn *f)
{
    const char *se = getenv("MATHF_STRIDE"), *pe = getenv("MATHF_PART");
    uint64_t stride = se ? strtoull(se, NULL, 10) : 41;
    unsigned part = 0, nparts = 1;
    if (pe) sscanf(pe, "%u/%u", &part, &nparts);
    if (stride < 1) stride = 1;
    if (nparts < 1 || part >= nparts) part = 0, nparts = 1;
    const uint64_t lo = (0x100000000ull * part / nparts), hi = (0x100000000ull * (part + 1) / nparts);
    static float in[BLK];
    Stats st = {0, 0, 0.0, 0.0f};
    const double t0 = now_s();
    size_t k = 0;
    for (uint64_t u = lo + (stride - lo % stride) % stride; u < hi; u += stride) {
        in[k++] = mathf_from_bits32((uint32_t)u);
        if (k == BLK) check_block(f, in, k, &st), k = 0;
    }
    if (k) check_block(f, in, k, &st);
    printf("%s: %llu points (stride %llu, part %u/%u), max error %.6f ulp at %a, "
           "%llu not correctly rounded, %.1f s (array path %s)\n",
           f->name, (unsigned long long)st.n, (unsigned long long)stride, part, nparts,
           st.max_err, st.worst, (unsigned long long)st.over_half, now_s() - t0,
           mathf_path_name());
    assert_true(st.max_err <= 1.0);
}

static void test_expf_sweep(void **state) { (void)state; sweep(&FN_EXP); }
static void test_tanhf_sweep(void **state) { (void)state; sweep(&FN_TANH); }
static void test_logf_sweep(void **state) { (void)state; sweep(&FN_LOG); }

/* All 2^23 subnormals and +-0 of each sign, each function. */
static void test_subnormal_inputs(void **state)
{
    (void)state;
    const Fn *fns[] = {&FN_EXP, &FN_TANH, &FN_LOG};
    static float in[BLK];
    for (int fi = 0; fi < 3; fi++) {
        Stats st = {0, 0, 0.0, 0.0f};
        for (uint32_t sign = 0; sign < 2; sign++) {
            size_t k = 0;
            for (uint32_t m = 0; m < 0x800000u; m++) {
                in[k++] = mathf_from_bits32(sign << 31 | m);
                if (k == BLK) check_block(fns[fi], in, k, &st), k = 0;
            }
            if (k) check_block(fns[fi], in, k, &st);
        }
        printf("%s, subnormal inputs: max error %.6f ulp\n", fns[fi]->name, st.max_err);
    }
    /* tanh of a subnormal is itself (odd, |tanh x - x| < x^3/3); exp is 1 */
    for (uint32_t m = 1; m < 0x800000u; m += 97) {
        const float x = mathf_from_bits32(m);
        assert_true(same_bits(mathf_tanhf(x), x));
        assert_true(same_bits(mathf_tanhf(-x), -x));
        assert_true(mathf_expf(x) == 1.0f && mathf_expf(-x) == 1.0f);
    }
}

/* Around the thresholds every result is the correctly rounded one. */
static void near(const Fn *f, float x0, int ulps)
{
    float x = x0;
    for (int i = 0; i < ulps; i++) x = nextafterf(x, -INFINITY);
    for (int i = 0; i < 2 * ulps; i++, x = nextafterf(x, INFINITY)) {
        const float got = f->scalar(x), want = (float)f->ref((double)x);
        if (!same_bits(got, want)) {
            fprintf(stderr, "%s(%a) = %a, correctly rounded %a\n", f->name, x, got, want);
            fail();
        }
    }
}

static void test_special_values(void **state)
{
    (void)state;
    const float inf = INFINITY, nan = NAN;
    /* exp */
    assert_true(mathf_expf(0.0f) == 1.0f && mathf_expf(-0.0f) == 1.0f);
    assert_true(mathf_expf(inf) == inf);
    assert_true(same_bits(mathf_expf(-inf), 0.0f));
    assert_true(isnan(mathf_expf(nan)) && isnan(mathf_expf(-nan)));
    assert_true(mathf_expf(1.0f) == 0x1.5bf0a8p+1f);
    /* overflow: e^x rounds to FLT_MAX at most up to 0x1.62e42ep+6 (88.7228317), to +inf
     * from the next float on; underflow: subnormal results down to 2^-149 at
     * 0x1.9fe368p+6 (-103.972076); +0 below */
    assert_true(mathf_expf(0x1.62e42ep+6f) < inf);
    assert_true(mathf_expf(0x1.62e430p+6f) == inf);
    assert_true(mathf_expf(FLT_MAX) == inf);
    assert_true(mathf_expf(-0x1.9fe368p+6f) == 0x1p-149f);
    assert_true(same_bits(mathf_expf(-0x1.9fe36ap+6f), 0.0f));
    assert_true(same_bits(mathf_expf(-FLT_MAX), 0.0f));
    near(&FN_EXP, 0x1.62e42ep+6f, 4000);   /* overflow */
    near(&FN_EXP, -0x1.5d58ap+6f, 4000);   /* results near FLT_MIN */
    near(&FN_EXP, -0x1.9fe368p+6f, 4000);  /* the last subnormal */
    /* tanh */
    assert_true(same_bits(mathf_tanhf(0.0f), 0.0f) && same_bits(mathf_tanhf(-0.0f), -0.0f));
    assert_true(mathf_tanhf(inf) == 1.0f && mathf_tanhf(-inf) == -1.0f);
    assert_true(isnan(mathf_tanhf(nan)));
    assert_true(mathf_tanhf(FLT_MAX) == 1.0f && mathf_tanhf(-FLT_MAX) == -1.0f);
    /* +-1 from |x| = 0x1.205968p+3 (9.01091385) on (tanh within half an ulp below 1) */
    assert_true(mathf_tanhf(0x1.205966p+3f) < 1.0f);
    assert_true(mathf_tanhf(0x1.205968p+3f) == 1.0f && mathf_tanhf(-0x1.205968p+3f) == -1.0f);
    assert_true(mathf_tanhf(10.0f) == 1.0f && mathf_tanhf(1e30f) == 1.0f);
    near(&FN_TANH, 0x1.205968p+3f, 4000);
    near(&FN_TANH, 0x1.713746p-12f, 4000); /* where tanh x stops being x */
    for (float x = 1e-30f; x < 0x1.713746p-12f; x *= 1.7f) assert_true(mathf_tanhf(x) == x);
    /* log */
    assert_true(same_bits(mathf_logf(1.0f), 0.0f));
    assert_true(mathf_logf(0.0f) == -inf && mathf_logf(-0.0f) == -inf);
    assert_true(isnan(mathf_logf(-1.0f)) && isnan(mathf_logf(-inf)) && isnan(mathf_logf(-0x1p-149f)));
    assert_true(mathf_logf(inf) == inf);
    assert_true(isnan(mathf_logf(nan)));
    assert_true(mathf_logf(0x1p-149f) == (float)log(0x1p-149));
    for (int k = -149; k < 128; k++) { /* powers of two: k ln2, correctly rounded */
        const float x = ldexpf(1.0f, k);
        assert_true(mathf_logf(x) == (float)log((double)x));
    }
    near(&FN_LOG, 1.0f, 4000);
    near(&FN_LOG, FLT_MAX, 4000);
}

/* Odd symmetry of tanh, bit for bit, over a sweep. */
static void test_tanh_odd(void **state)
{
    (void)state;
    for (uint32_t u = 0; u < 0x7f800000u; u += 4093) {
        const float x = mathf_from_bits32(u);
        assert_true(same_bits(mathf_tanhf(-x), -mathf_tanhf(x)));
    }
}

/* Arrays: every length 0..100 and offsets, in place and not, on each path. */
static void test_arrays(void **state)
{
    (void)state;
    const Fn *fns[] = {&FN_EXP, &FN_TANH, &FN_LOG};
    enum { N = 131 };
    float x[N + 3], y[N + 3], z[N + 3];
    const uint64_t key = rng_key(3, RNG_TEST, 0);
    for (int i = 0; i < N + 3; i++) x[i] = 40.0f * rng_uniform(key, (uint64_t)i) - 20.0f;
    x[5] = NAN, x[6] = INFINITY, x[7] = -0.0f, x[40] = 0x1p-140f, x[41] = 0.0f;
    for (int base = 0; base < 2; base++) {
        mathf_force_baseline(base);
        for (int fi = 0; fi < 3; fi++)
            for (int off = 0; off < 3; off++)
                for (int n = 0; n <= N; n++) {
                    memset(y, 0x55, sizeof y);
                    fns[fi]->array(x + off, y + off, (size_t)n);
                    memcpy(z, x, sizeof z);
                    fns[fi]->array(z + off, z + off, (size_t)n); /* in place */
                    for (int i = 0; i < n; i++) {
                        const float s = fns[fi]->scalar(x[off + i]);
                        assert_true(same_bits(s, y[off + i]) && same_bits(s, z[off + i]));
                    }
                    assert_true(mathf_bits32(y[off + n]) == 0x55555555u); /* no overrun */
                }
    }
    mathf_force_baseline(0);
    printf("array path on this CPU: %s\n", mathf_path_name());
}

/* ---------------------------------------------------------------- double helpers */

static uint64_t draw64(uint64_t key, uint64_t i)
{
    return (uint64_t)rng_u32(key, 2 * i) | (uint64_t)rng_u32(key, 2 * i + 1) << 32;
}

static void test_log_double(void **state)
{
    (void)state;
    const uint64_t key = rng_key(4, RNG_TEST, 0);
    double worst = 0.0, at = 0.0;
    enum { N = 2000000 };
    for (uint64_t i = 0; i < N; i++) {
        double x;
        if (i % 2) x = mathf_from_bits64(draw64(key, i) & 0x7fffffffffffffffu); /* any */
        else x = 1.0 + 63.0 * (double)(draw64(key, i) >> 11) * 0x1p-53;      /* [1, 64) */
        if (!(x < INFINITY) || isnan(x)) continue;
        const double e = err_d(mathf_log(x), logl((long double)x));
        if (!(e <= 1.0)) {
            fprintf(stderr, "mathf_log(%a) = %a, logl %La: %g ulp\n", x, mathf_log(x),
                    logl((long double)x), e);
            fail();
        }
        if (e > worst) worst = e, at = x;
    }
    printf("log (double): %d points, max error %.4f ulp at %a\n", N, worst, at);
    assert_true(mathf_log(1.0) == 0.0 && !signbit(mathf_log(1.0)));
    assert_true(mathf_log(0.0) == -INFINITY && mathf_log(-0.0) == -INFINITY);
    assert_true(isnan(mathf_log(-1.0)) && isnan(mathf_log(NAN)) && isnan(mathf_log(-INFINITY)));
    assert_true(mathf_log(INFINITY) == INFINITY);
    assert_true(err_d(mathf_log(0x1p-1074), logl(0x1p-1074L)) <= 1.0);
    assert_true(err_d(mathf_log(DBL_MAX), logl((long double)DBL_MAX)) <= 1.0);
    assert_true(err_d(mathf_log(2.0), logl(2.0L)) <= 0.5);
}

/* cos(pi x) reference: the same exact reduction, then long double cosl / sinl. */
static long double ref_cospi(double x)
{
    const double a = fabs(x);
    const double r = fabs(a - 2.0 * nearbyint(0.5 * a));
    const long double pi = 3.141592653589793238462643383279502884L;
    if (r <= 0.25) return cosl(pi * r);
    if (r <= 0.75) return sinl(pi * (0.5L - r));
    return -cosl(pi * (1.0L - r));
}

static void test_cospi(void **state)
{
    (void)state;
    const uint64_t key = rng_key(5, RNG_TEST, 0);
    double worst = 0.0, at = 0.0;
    enum { N = 2000000 };
    for (uint64_t i = 0; i < N; i++) {
        const double u = (double)(draw64(key, i) >> 11) * 0x1p-53; /* [0, 1) */
        const double x = i % 4 == 0 ? u : i % 4 == 1 ? 2.0 * u : i % 4 == 2 ? -3.0 * u : 1e6 * u;
        const double e = err_d(mathf_cospi(x), ref_cospi(x));
        if (e > worst) worst = e, at = x;
    }
    printf("cospi (double): %d points, max error %.4f ulp at %a\n", N, worst, at);
    assert_true(worst <= 1.0);
    assert_true(mathf_cospi(0.0) == 1.0 && mathf_cospi(1.0) == -1.0 && mathf_cospi(2.0) == 1.0);
    assert_true(mathf_cospi(0.5) == 0.0 && mathf_cospi(-0.5) == 0.0 && mathf_cospi(1.5) == 0.0);
    assert_true(mathf_cospi(-1.0) == -1.0 && mathf_cospi(0x1p60) == 1.0);
    assert_true(mathf_cospi(0x1p52 + 1.0) == -1.0); /* odd integer */
    assert_true(isnan(mathf_cospi(INFINITY)) && isnan(mathf_cospi(-INFINITY)) && isnan(mathf_cospi(NAN)));
    for (int i = 0; i < 1000; i++) { /* even */
        const double x = (double)i / 997.0;
        assert_true(mathf_cospi(x) == mathf_cospi(-x));
    }
}

static void test_powi(void **state)
{
    (void)state;
    const double bases[] = {0.9, 0.999, 0.99, 0.5, 0.9999999, -0.75, 0.3, 1.0, -1.0, 0.1};
    double worst = 0.0;
    for (size_t b = 0; b < sizeof bases / sizeof *bases; b++)
        for (uint64_t n = 0; n < 100000000; n = n < 300 ? n + 1 : n + n / 7 + 1) {
            const long double want = powl((long double)bases[b], (long double)n);
            if (fabsl(want) < 0x1p-960L) break; /* the double-double's low part underflows */
            const double e = err_d(mathf_powi(bases[b], n), want);
            if (!(e <= 1.0)) {
                fprintf(stderr, "mathf_powi(%a, %llu) = %a, powl %La: %g ulp\n", bases[b],
                        (unsigned long long)n, mathf_powi(bases[b], n), want, e);
                fail();
            }
            if (e > worst) worst = e;
        }
    printf("powi (double): max error %.4f ulp\n", worst);
    assert_true(mathf_powi(0.0, 0) == 1.0 && mathf_powi(NAN, 0) == 1.0 && mathf_powi(0.0, 5) == 0.0);
    assert_true(mathf_powi(0.5, 1074) == 0x1p-1074 && mathf_powi(0.5, 1075) == 0.0);
    assert_true(mathf_powi(-0.5, 3) == -0.125 && mathf_powi(1.0, UINT64_MAX) == 1.0);
    assert_true(mathf_powi(0.999, 1) == 0.999);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_special_values),  cmocka_unit_test(test_arrays),
        cmocka_unit_test(test_tanh_odd),        cmocka_unit_test(test_subnormal_inputs),
        cmocka_unit_test(test_log_double),      cmocka_unit_test(test_cospi),
        cmocka_unit_test(test_powi),            cmocka_unit_test(test_expf_sweep),
        cmocka_unit_test(test_tanhf_sweep),     cmocka_unit_test(test_logf_sweep),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
