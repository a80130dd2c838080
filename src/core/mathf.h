/* mathf.h — mpitrain's own elementary functions, so that the bits of training do not
 * depend on which libm (or which of glibc's CPU-specific variants) the job runs with,
 * and so that another backend (a GPU) can compute the same functions.
 *
 * Float functions (exp, log, tanh of a float): each is evaluated in double precision —
 * a Cody–Waite range reduction with fixed constants, one fixed polynomial (coefficients
 * below, near-minimax fits by Chebyshev interpolation, rounded to double), Horner order
 * — and rounded to float once at the end.  The double result is within about 2^-42 of
 * the true value, so the float result is within 0.5 + 2^-17 ulp: at most 1 ulp from a
 * double-precision reference over the whole float range (tests/unit/test_mathf.c sweeps
 * it, with the figures measured in docs/determinism.md).
 *
 * Same bits everywhere: only IEEE double additions, multiplications, divisions,
 * comparisons, integer operations on the bits and the final rounding to float.  No fused
 * multiply-add (the build is C11 mode, where gcc does not contract a*b+c; a build with
 * -ffast-math or -ffp-contract=fast would change bits); no table, no branch on the
 * value: every special case is a select, so a loop of these calls can be vectorised by
 * the compiler (SSE2, AVX2) with each element computed by the same operations as the
 * scalar call.  The float functions are inline here; their array forms (the _n
 * functions, mathf.c) are the vectorised ones, on AVX2 where the CPU has it: callers
 * with arrays use those.
 *
 * Double helpers (log, cos(pi x), integer powers) are scalar, for the few per-sample or
 * per-step scalars of training that libm computed before: the loss's log, the
 * learning-rate schedule's cosine, Adam's bias correction, the Box–Muller transform of
 * the weight init.  Nothing here sets errno or raises traps on purpose. */
#ifndef MPITRAIN_CORE_MATHF_H
#define MPITRAIN_CORE_MATHF_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* ---------------------------------------------------------------- bits */

static inline uint64_t mathf_bits64(double x)
{
    uint64_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline double mathf_from_bits64(uint64_t u)
{
    double x;
    memcpy(&x, &u, sizeof x);
    return x;
}

static inline uint32_t mathf_bits32(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline float mathf_from_bits32(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* ---------------------------------------------------------------- exp core */

/* y = k ln2 + r, |r| <= ln2/2 (k = nearest integer to y/ln2, ties to even, by adding
 * 1.5 * 2^52); ln2 = LN2_HI + LN2_LO with LN2_HI's low 32 bits zero, so k * LN2_HI is
 * exact for |k| < 2^21 and y - k * LN2_HI is exact (Sterbenz). */
#define MATHF_INV_LN2 0x1.71547652b82fep0
#define MATHF_LN2_HI 0x1.62e42feep-1 /* 6.93147180369123816490e-01 */
#define MATHF_LN2_LO 0x1.a39ef35793c76p-33
#define MATHF_SHIFT 0x1.8p52

/* expm1(r) ~ r + r^2 G(r), |r| <= ln2/2: G of degree 7, |r (G - g)| < 2^-42.5 where
 * g(r) = (expm1(r) - r) / r^2 (relative error of expm1(r) below 2^-42). */
#define MATHF_E0 0x1.fffffffffe069p-2
#define MATHF_E1 0x1.5555555554f97p-3
#define MATHF_E2 0x1.55555565c55a0p-5
#define MATHF_E3 0x1.111111170ad56p-7
#define MATHF_E4 0x1.6c166be75a7fdp-10
#define MATHF_E5 0x1.a019c3721fafcp-13
#define MATHF_E6 0x1.a136b06bb5658p-16
#define MATHF_E7 0x1.72ad3ae3f46b7p-19

/* For y in [-151 ln2, 151 ln2] (callers clamp; NaN passes through as NaN): returns
 * p ~ expm1(r) and sets *scale = 2^k, so that exp(y) = scale + scale * p and
 * expm1(y) = (scale - 1) + scale * p. */
static inline double mathf_exp_reduce(double y, double *scale)
{
    double kd = y * MATHF_INV_LN2 + MATHF_SHIFT;
    const uint64_t ki = mathf_bits64(kd); /* low bits: k in two's complement */
    kd = kd - MATHF_SHIFT;
    const double r = (y - kd * MATHF_LN2_HI) - kd * MATHF_LN2_LO;
    const double g =
        MATHF_E0 +
        r * (MATHF_E1 +
             r * (MATHF_E2 +
                  r * (MATHF_E3 + r * (MATHF_E4 + r * (MATHF_E5 + r * (MATHF_E6 + r * MATHF_E7))))));
    *scale = mathf_from_bits64((ki + 1023u) << 52); /* 2^k: k in [-150, 128] here */
    return r + r * r * g;
}

/* ---------------------------------------------------------------- float functions */

/* e^x.  Overflow: finite up to x = 0x1.62e42ep+6 (88.7228317), +inf from the next float
 * (88.7228394) on; underflow: subnormal results rounded once (not flushed), the smallest
 * (2^-149) at x = -0x1.9fe368p+6 (-103.972076), +0 below (e^x under half of it);
 * exp(+-0) = 1, exp(+inf) = +inf, exp(-inf) = +0, exp(NaN) = NaN. */
static inline float mathf_expf(float x)
{
    double y = x;
    y = y < -104.0 ? -104.0 : y; /* e^-104 < 2^-150: rounds to +0; NaN compares false */
    y = y > 89.0 ? 89.0 : y;     /* e^89 > FLT_MAX: rounds to +inf */
    double s;
    const double p = mathf_exp_reduce(y, &s);
    return (float)(s + s * p);
}

/* tanh(x), odd by construction (computed on |x|, sign copied back): with a = |x|,
 * em = expm1(2a), tanh = em / (em + 2) in double.  tanh(+-0) = +-0; |x| below
 * 0x1.713746p-12 (subnormals included) gives x; |x| from 0x1.205968p+3 (9.01091385) on
 * gives +-1 (|x| is clamped to 10, where tanh rounds to 1); tanh(+-inf) = +-1,
 * tanh(NaN) = NaN. */
static inline float mathf_tanhf(float x)
{
    double a = fabs((double)x);
    a = a > 10.0 ? 10.0 : a; /* NaN compares false */
    double s;
    const double p = mathf_exp_reduce(a + a, &s);
    const double em = (s - 1.0) + s * p; /* s - 1 exact: s = 2^k, 0 <= k <= 29 */
    return copysignf((float)(em / (em + 2.0)), x);
}

/* log(1+f) = 2 atanh(s), s = f / (2 + f), |s| <= 0.1716, z = s^2 <= 0.02944:
 * 2s + 2s z H(z), H of degree 4, |z (H - h)| < 2^-43 where
 * h(z) = (atanh(s)/s - 1) / z. */
#define MATHF_L0 0x1.5555555564e97p-2
#define MATHF_L1 0x1.999998cafbbb9p-3
#define MATHF_L2 0x1.249323e503e1dp-3
#define MATHF_L3 0x1.c67ad9ebb7127p-4
#define MATHF_L4 0x1.8c8c138c5880bp-4

/* Natural log.  x = 2^e m with m in [sqrt(1/2), sqrt(2)) (read from the bits;
 * subnormals are first scaled by 2^23, exactly), log = e ln2 + log(m) in double.
 * log(+-0) = -inf, log(x < 0) = NaN, log(1) = +0, log(+inf) = +inf, log(NaN) = NaN. */
static inline float mathf_logf(float x)
{
    const uint32_t ix0 = mathf_bits32(x);
    const int sub = ix0 < 0x00800000u; /* +0 and positive subnormals */
    const uint32_t ix = mathf_bits32(sub ? x * 0x1p23f : x) - (sub ? 23u << 23 : 0u);
    const uint32_t tmp = ix - 0x3f3504f3u; /* bits of sqrt(1/2), rounded down */
    const int32_t e = (int32_t)tmp >> 23;  /* arithmetic shift (gcc, clang) */
    const double m = mathf_from_bits32(ix - (tmp & 0xff800000u));
    const double f = m - 1.0, s = f / (2.0 + f), z = s * s;
    const double h = MATHF_L0 + z * (MATHF_L1 + z * (MATHF_L2 + z * (MATHF_L3 + z * MATHF_L4)));
    const double r = (double)e * 0x1.62e42fefa39efp-1 + (s + s + (s + s) * (z * h));
    const float ok = (float)r;
    /* specials: x <= 0, +inf, NaN (ix0 >= 0x7f800000 also holds every negative x) */
    const float special = x == 0.0f ? -INFINITY : x == INFINITY ? INFINITY : x != x ? x + x : NAN;
    return (x > 0.0f && x < INFINITY) ? ok : special;
}

/* ---------------------------------------------------------------- arrays */

/* y[i] = f(x[i]) for i < n, bit for bit the scalar function above; y may equal x (in
 * place), otherwise the arrays must not overlap.  Run on AVX2 where the CPU has it
 * (same bits), else on SSE2 / the target's baseline. */
void mathf_expf_n(const float *x, float *y, size_t n);
void mathf_tanhf_n(const float *x, float *y, size_t n);
void mathf_logf_n(const float *x, float *y, size_t n);

/* The array path in use: "avx2" or "baseline".  mathf_force_baseline(1) makes the _n
 * functions use the baseline path (tests compare both); 0 restores the CPU's best. */
const char *mathf_path_name(void);
void mathf_force_baseline(int on);

/* ---------------------------------------------------------------- double helpers */

/* Natural log of a double, within 1 ulp (tests/unit/test_mathf.c): x = 2^k (1 + f),
 * log = k ln2 + f - f^2/2 + s (f^2/2 + R(s^2)), s = f / (2 + f), R of degree 8.
 * log(+-0) = -inf, log(x < 0) = NaN, log(+inf) = +inf, log(NaN) = NaN. */
double mathf_log(double x);

/* cos(pi x) for any double x: the reduction x -> t in [-1/4, 1/4] is exact (pi never
 * multiplies an unreduced argument), then a fixed polynomial for cos(pi t) or sin(pi t).
 * cospi(+-inf) and cospi(NaN) = NaN; |x| >= 2^53 (even integers) gives 1. */
double mathf_cospi(double x);

/* b^n for |b| <= 1 (a larger |b| is a bug: CHECK), by binary powering in double-double
 * arithmetic (Dekker's exact products, no FMA), rounded once at the end: within 1 ulp
 * while b^n is above 2^-960 (tests/unit/test_mathf.c).  b^0 = 1, also for b = 0 or NaN. */
double mathf_powi(double b, uint64_t n);

#endif
