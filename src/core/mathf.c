/* mathf.c — the array forms of mathf.h's float functions (baseline and AVX2 builds of
 * the same loops) and the scalar double helpers.  The polynomial coefficients are
 * near-minimax fits (Chebyshev interpolation in 50-digit arithmetic, rounded to
 * double); their error bounds are stated beside them and the resulting accuracy is
 * measured by tests/unit/test_mathf.c. */
/* The loops below are vectorised only without -ftrapping-math (gcc 12 will not if-convert
 * a select on a float comparison that may trap); that option concerns floating-point
 * traps and exception flags only, never a result's bits. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif
#include "core/mathf.h"

#include <pthread.h>

#include "core/common.h"

#if defined(__x86_64__) || defined(__i386__)
#define MATHF_X86 1
#else
#define MATHF_X86 0
#endif

/* ---------------------------------------------------------------- arrays */

/* Blocks of 16 with a fixed trip count (gcc -O2 vectorises them); the block is first
 * copied into a local buffer, so that y == x (in place) needs no alias check.  Each
 * element is the scalar function's operations, so the blocking changes no bits. */
#define MATHF_ARRAY_FN(name, f, attr)                                                     \
    attr static void name(const float *x, float *y, size_t n)                             \
    {                                                                                     \
        size_t i = 0;                                                                     \
        for (; i + 16 <= n; i += 16) {                                                    \
            float b[16];                                                                  \
            for (int k = 0; k < 16; k++) b[k] = x[i + k];                                 \
            for (int k = 0; k < 16; k++) y[i + k] = f(b[k]);                              \
        }                                                                                 \
        for (; i < n; i++) y[i] = f(x[i]);                                                \
    }

MATHF_ARRAY_FN(expf_base, mathf_expf, )
MATHF_ARRAY_FN(tanhf_base, mathf_tanhf, )
MATHF_ARRAY_FN(logf_base, mathf_logf, )
#if MATHF_X86
/* AVX2 without FMA: the same IEEE operations, four doubles a vector. */
#define MATHF_AVX2 __attribute__((target("avx2")))
MATHF_ARRAY_FN(expf_avx2, mathf_expf, MATHF_AVX2)
MATHF_ARRAY_FN(tanhf_avx2, mathf_tanhf, MATHF_AVX2)
MATHF_ARRAY_FN(logf_avx2, mathf_logf, MATHF_AVX2)
#endif

static int g_avx2;          /* the CPU has AVX2 (set once) */
static int g_force_base;    /* tests: use the baseline loops */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void path_init_once(void)
{
#if MATHF_X86
    __builtin_cpu_init();
    g_avx2 = __builtin_cpu_supports("avx2");
#endif
}

static int use_avx2(void)
{
    pthread_once(&g_once, path_init_once);
    return g_avx2 && !__atomic_load_n(&g_force_base, __ATOMIC_RELAXED);
}

const char *mathf_path_name(void) { return use_avx2() ? "avx2" : "baseline"; }

void mathf_force_baseline(int on) { __atomic_store_n(&g_force_base, on != 0, __ATOMIC_RELAXED); }

#if MATHF_X86
#define MATHF_DISPATCH(fn)                                                                \
    void mathf_##fn##_n(const float *x, float *y, size_t n)                               \
    {                                                                                     \
        if (use_avx2()) fn##_avx2(x, y, n);                                               \
        else fn##_base(x, y, n);                                                          \
    }
#else
#define MATHF_DISPATCH(fn)                                                                \
    void mathf_##fn##_n(const float *x, float *y, size_t n) { fn##_base(x, y, n); }
#endif

MATHF_DISPATCH(expf)
MATHF_DISPATCH(tanhf)
MATHF_DISPATCH(logf)

/* c[0] + u (c[1] + u (... c[n-1])), Horner */
static double poly(const double *c, int n, double u)
{
    double p = c[n - 1];
    for (int i = n - 2; i >= 0; i--) p = c[i] + u * p;
    return p;
}

/* ---------------------------------------------------------------- log (double) */

/* R(z) = z P(z) ~ 2 atanh(s)/s - 2, z = s^2 <= 0.02944: P of degree 7,
 * |z (P - p)| / 2 < 2^-60 (the analysis of the formula below, as in fdlibm's log,
 * needs 2^-58). */
static const double LOG_P[8] = {
    0x1.5555555555555p-1, 0x1.9999999999a38p-2, 0x1.2492492476ccbp-2, 0x1.c71c7201592afp-3,
    0x1.745cf90485b72p-3, 0x1.3b1c355c49df7p-3, 0x1.0fbe95a8ce3f7p-3, 0x1.0c039e2d97702p-3,
};

double mathf_log(double x)
{
    if (!(x > 0.0 && x < INFINITY)) {
        if (x == 0.0) return -INFINITY;
        if (x != x || x == INFINITY) return x + x;
        return NAN; /* x < 0 */
    }
    uint64_t ix = mathf_bits64(x);
    int k = 0;
    if (ix < 0x0010000000000000u) { /* subnormal: scale by 2^54, exactly */
        ix = mathf_bits64(x * 0x1p54);
        k = -54;
    }
    /* x = 2^k m, m in [sqrt(1/2), sqrt(2)) */
    const uint64_t tmp = ix - 0x3fe6a09e667f3bcdu;
    k += (int)((int64_t)tmp >> 52);
    const double m = mathf_from_bits64(ix - (tmp & 0xfff0000000000000u));
    const double f = m - 1.0; /* exact (Sterbenz) */
    const double s = f / (2.0 + f), z = s * s;
    const double R = z * poly(LOG_P, 8, z), hfsq = 0.5 * f * f, dk = (double)k;
    /* log(1+f) = f - hfsq + s (hfsq + R); k ln2 in two parts, the high one exact */
    return dk * MATHF_LN2_HI - ((hfsq - (s * (hfsq + R) + dk * MATHF_LN2_LO)) - f);
}

/* ---------------------------------------------------------------- cospi (double) */

/* |t| <= 1/4, u = t^2 <= 1/16:
 *   cos(pi t) = 1 - u C(u),  C of degree 6, |u (C - c)| < 2^-55.6 (C[0] = pi^2/2 rounded)
 *   sin(pi t) = t S(u),      S of degree 6, |S - s| / pi < 2^-54.5 */
static const double COSPI_C[7] = {
    0x1.3bd3cc9be45dep+2, -0x1.03c1f081b5ac0p+2, 0x1.55d3c7e3cb241p+0, -0x1.e1f5068688d5bp-3,
    0x1.a6d1eef479be1p-6, -0x1.f9ce245cada0bp-10, 0x1.b2f3eb054afcdp-14,
};
static const double SINPI_S[7] = {
    0x1.921fb54442d18p+1, /* pi rounded (PI_HI); pi - PI_HI = 0x1.1a62633145c07p-53 */
    -0x1.4abbce625be41p+2, 0x1.466bc677587f8p+1, -0x1.32d2cce2e5b19p-1,
    0x1.50782fda12d96p-4, -0x1.e30071afc3e59p-8, 0x1.e3f38399551bfp-12,
};


/* Veltkamp's split: a = hi + lo exactly, hi with at most 26 significant bits (|a| <
 * 2^995); Dekker's product: a b = p + e exactly (round to nearest, no FMA). */
static void split26(double a, double *hi, double *lo)
{
    const double c = 0x1.0000002p27 * a; /* (2^27 + 1) a */
    *hi = c - (c - a);
    *lo = a - *hi;
}

static void two_prod(double a, double b, double *p, double *e)
{
    double ah, al, bh, bl;
    split26(a, &ah, &al);
    split26(b, &bh, &bl);
    *p = a * b;
    *e = ((ah * bh - *p) + ah * bl + al * bh) + al * bl;
}


/* cos(pi t) = 1 - C0 t^2 - t^4 C'(t^2), with t^2 = u + ue and C0 t^2 = a + ae exactly,
 * C0 = pi^2/2 = C[0] + 0x1.692b71366cc04p-52, and w = 1 - a with its rounding error
 * recovered exactly (Fast2Sum): the one large rounding is the final sum's. */
static double cospi_small(double t)
{
    double u, ue, a, ae;
    two_prod(t, t, &u, &ue);
    two_prod(COSPI_C[0], u, &a, &ae);
    const double w = 1.0 - a, werr = (1.0 - w) - a;
    const double rest = (ae + COSPI_C[0] * ue + 0x1.692b71366cc04p-52 * u) +
                        (u * u) * poly(COSPI_C + 1, 6, u);
    return w + (werr - rest);
}

/* sin(pi t) = t PI_HI + (t PI_LO + t u S'(u)), with t PI_HI = p + e exactly: the one
 * large rounding is the final sum's. */
static double sinpi_small(double t)
{
    const double u = t * t;
    double p, e;
    two_prod(t, SINPI_S[0], &p, &e);
    const double tail = t * (0x1.1a62633145c07p-53 + u * poly(SINPI_S + 1, 6, u));
    return p + (e + tail);
}

double mathf_cospi(double x)
{
    const double a = fabs(x);
    if (!(a < INFINITY)) return x - x; /* +-inf, NaN: NaN */
    if (a >= 0x1p53) return 1.0;        /* every such double is an even integer */
    /* r = |a - 2 rint(a / 2)| in [0, 1], exact; cos(pi x) = cos(pi r) */
    const double n2 = 2.0 * ((0.5 * a + 0x1p52) - 0x1p52);
    const double r = fabs(a - n2);
    if (r <= 0.25) return cospi_small(r);
    if (r <= 0.75) return sinpi_small(0.5 - r); /* 0.5 - r exact */
    return -cospi_small(1.0 - r);               /* 1 - r exact */
}

/* ---------------------------------------------------------------- powi (double) */

/* (xh + xl) (yh + yl) as a renormalised double-double (zh = the rounded sum). */
static void dd_mul(double xh, double xl, double yh, double yl, double *zh, double *zl)
{
    double p, e;
    two_prod(xh, yh, &p, &e);
    e += xh * yl + xl * yh;
    const double s = p + e;
    *zl = e - (s - p);
    *zh = s;
}

double mathf_powi(double b, uint64_t n)
{
    CHECK(!(fabs(b) > 1.0));
    double rh = 1.0, rl = 0.0, bh = b, bl = 0.0;
    while (n) {
        if (n & 1u) dd_mul(rh, rl, bh, bl, &rh, &rl);
        n >>= 1;
        if (n) dd_mul(bh, bl, bh, bl, &bh, &bl);
    }
    return rh;
}
