/* optim.c — optimizers and global-norm clipping over slab ranges (optim.h).
 *
 * Every element is updated by the same sequence of float operations, written out
 * below in the order C evaluates them (left to right, no FMA contraction: the build is
 * -std=c11, which implies -ffp-contract=off), and the per-step constants (lr*wd,
 * 1-b1, 1-b2, the bias corrections) are computed once per call from (lr, t) alone.
 * So an element's result depends only on its own values, and updating [lo, hi) in
 * pieces gives the same bits as updating it at once, vectorised or not.  Each loop also
 * ORs the exponent bits of what it writes (nf_bits), so the update says whether it wrote
 * a NaN or inf at the cost of two integer operations per value already in a register.
 *
 *   g   = grads[i] * grad_scale
 *   sgd, momentum == 0:  d = g
 *   sgd, momentum != 0:  buf = momentum * buf + g;  d = nesterov ? g + momentum * buf : buf
 *   sgd:    p = (p - lrwd * p) - lr * d                                   lrwd = lr * wd
 *   adamw:  m = b1 * m + omb1 * g;   v = b2 * v + (omb2 * g) * g        omb = 1 - beta
 *           mh = m / bc1;  vh = v / bc2;    bc = (float)(1 - beta^t) computed in double
 *           (beta^t by mathf_powi, core/mathf.h: binary powering, the same on every CPU)
 *           p = (p - lrwd * p) - (lr * mh) / (sqrtf(vh) + eps)
 */
#include "core/optim.h"

#include <math.h>
#include <string.h>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "core/common.h"
#include "core/mathf.h"

/* for (size_t i = 0; i < n; i++) BODY as blocks of 16 with a fixed trip count, which
 * gcc -O2 vectorises (its very-cheap cost model needs a known count), then the scalar
 * tail.  Same IEEE operations per element either way, so the same bits.  i##_l is the
 * element's lane (i % 16) in both loops, for per-lane accumulators. */
#define OPTIM_LOOP(i, n, ...)                                                              \
    for (size_t i##_blk = 0; i##_blk + 16 <= (n); i##_blk += 16)                           \
        for (int i##_l = 0; i##_l < 16; i##_l++) {                                         \
            size_t i = i##_blk + (size_t)i##_l;                                            \
            __VA_ARGS__                                                                    \
        }                                                                                  \
    for (size_t i = (n) & ~(size_t)15; i < (n); i++) {                                     \
        int i##_l = (int)(i & 15);                                                         \
        __VA_ARGS__                                                                        \
    }

/* The finite check of what an update writes, done on the values in registers: bit 31 of
 * (bits & exponent) + 2^23 is set exactly when the exponent is all ones (NaN, ±inf), so
 * OR-ing it over the outputs says whether any is non-finite (integer operations only:
 * the float results and their bits are untouched). */
#define NF_EXP 0x7f800000u
static inline uint32_t nf_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return (u & NF_EXP) + 0x00800000u;
}
static int nf_any(const uint32_t *acc)
{
    uint32_t a = 0;
    for (int k = 0; k < 16; k++) a |= acc[k];
    return (a >> 31) != 0;
}

int optim_nstates(const OptimConf *c)
{
    if (c->kind == OPTIM_ADAMW) return 2;
    return c->momentum != 0.0f ? 1 : 0;
}

const char *optim_state_name(const OptimConf *c, int i)
{
    CHECK(i >= 0 && i < optim_nstates(c));
    if (c->kind == OPTIM_ADAMW) return i == 0 ? "m" : "v";
    return "momentum";
}

MT_VEC static int sgd_plain(float lr, float lrwd, float gs, float *restrict p,
                     const float *restrict g, size_t n)
{
    uint32_t acc[16] = {0};
    OPTIM_LOOP(i, n, {
        float gi = g[i] * gs;
        float pi = (p[i] - lrwd * p[i]) - lr * gi;
        p[i] = pi;
        acc[i_l] |= nf_bits(pi);
    })
    return nf_any(acc);
}

/* Only p is checked: a non-finite buf makes p non-finite too (lr * ±inf is ±inf for
 * lr > 0 and NaN for lr = 0; lr * NaN is NaN), so checking p covers both. */
MT_VEC static int sgd_momentum(float lr, float lrwd, float gs, float mu, int nesterov,
                        float *restrict p, const float *restrict g, float *restrict buf,
                        size_t n)
{
    uint32_t acc[16] = {0};
    if (nesterov) {
        OPTIM_LOOP(i, n, {
            float gi = g[i] * gs;
            float b = mu * buf[i] + gi;
            buf[i] = b;
            float d = gi + mu * b;
            float pi = (p[i] - lrwd * p[i]) - lr * d;
            p[i] = pi;
            acc[i_l] |= nf_bits(pi);
        })
    } else {
        OPTIM_LOOP(i, n, {
            float gi = g[i] * gs;
            float b = mu * buf[i] + gi;
            buf[i] = b;
            float pi = (p[i] - lrwd * p[i]) - lr * b;
            p[i] = pi;
            acc[i_l] |= nf_bits(pi);
        })
    }
    return nf_any(acc);
}

/* One AdamW element; the vector path below does the same operations lane by lane. */
static inline void adamw_one(float lr, float lrwd, float gs, float b1, float b2, float omb1,
                             float omb2, float bc1, float bc2, float eps, float *p,
                             const float *g, float *m, float *v)
{
    float gi = *g * gs;
    float mi = b1 * *m + omb1 * gi;
    float vi = b2 * *v + (omb2 * gi) * gi;
    *m = mi;
    *v = vi;
    float mh = mi / bc1;
    float vh = vi / bc2;
    *p = (*p - lrwd * *p) - (lr * mh) / (sqrtf(vh) + eps);
}

/* gcc vectorises no loop that calls sqrtf while errno is kept for sqrt of negatives
 * (the default -fmath-errno), so on x86 the loop is written with SSE: sqrtps, divps,
 * mulps, addps and subps round each lane exactly like the scalar instructions, so the
 * bits are those of adamw_one. */
static int adamw(float lr, float lrwd, float gs, float b1, float b2, float omb1, float omb2,
                 float bc1, float bc2, float eps, float *restrict p, const float *restrict g,
                 float *restrict m, float *restrict v, size_t n)
{
    size_t i = 0;
    uint32_t bad = 0;
#if defined(__SSE2__)
    /* the check here is a float sum of p and v: NaN or inf as soon as one value is (NaN
     * and inf propagate through additions), else finite unless finite values sum past
     * FLT_MAX (then the caller's scan finds nothing: a false alarm costs a rescan, a
     * non-finite value is never missed); two adds per four elements.  m needs no check:
     * a non-finite m makes p non-finite (m/bc1 feeds the step whatever v is), while v
     * can overflow alone (a finite g whose square does not fit) and leave p finite */
    __m128 vsum = _mm_setzero_ps();
    const __m128 vlr = _mm_set1_ps(lr), vlrwd = _mm_set1_ps(lrwd), vgs = _mm_set1_ps(gs);
    const __m128 vb1 = _mm_set1_ps(b1), vb2 = _mm_set1_ps(b2), vomb1 = _mm_set1_ps(omb1);
    const __m128 vomb2 = _mm_set1_ps(omb2), vbc1 = _mm_set1_ps(bc1), vbc2 = _mm_set1_ps(bc2);
    const __m128 veps = _mm_set1_ps(eps);
    for (; i + 4 <= n; i += 4) {
        __m128 gi = _mm_mul_ps(_mm_loadu_ps(g + i), vgs);
        __m128 mi = _mm_add_ps(_mm_mul_ps(vb1, _mm_loadu_ps(m + i)), _mm_mul_ps(vomb1, gi));
        __m128 vi = _mm_add_ps(_mm_mul_ps(vb2, _mm_loadu_ps(v + i)),
                               _mm_mul_ps(_mm_mul_ps(vomb2, gi), gi));
        _mm_storeu_ps(m + i, mi);
        _mm_storeu_ps(v + i, vi);
        __m128 mh = _mm_div_ps(mi, vbc1);
        __m128 vh = _mm_div_ps(vi, vbc2);
        __m128 pi = _mm_loadu_ps(p + i);
        __m128 step = _mm_div_ps(_mm_mul_ps(vlr, mh), _mm_add_ps(_mm_sqrt_ps(vh), veps));
        __m128 pn = _mm_sub_ps(_mm_sub_ps(pi, _mm_mul_ps(vlrwd, pi)), step);
        _mm_storeu_ps(p + i, pn);
        vsum = _mm_add_ps(vsum, _mm_add_ps(pn, vi));
    }
    float lanes[4];
    _mm_storeu_ps(lanes, vsum);
    for (int k = 0; k < 4; k++) bad |= nf_bits(lanes[k]);
#endif
    for (; i < n; i++) {
        adamw_one(lr, lrwd, gs, b1, b2, omb1, omb2, bc1, bc2, eps, p + i, g + i, m + i, v + i);
        bad |= nf_bits(p[i]) | nf_bits(v[i]);
    }
    return (bad >> 31) != 0;
}

int optim_update(const OptimConf *c, float lr, uint64_t t, float grad_scale, float *params,
                 const float *grads, float *const *states, size_t lo, size_t hi)
{
    CHECK(lo <= hi);
    if (lo == hi) return 0;
    const size_t n = hi - lo;
    const float lrwd = lr * c->weight_decay;
    if (c->kind == OPTIM_ADAMW) {
        CHECK(t >= 1);
        const float bc1 = (float)(1.0 - mathf_powi((double)c->beta1, t));
        const float bc2 = (float)(1.0 - mathf_powi((double)c->beta2, t));
        return adamw(lr, lrwd, grad_scale, c->beta1, c->beta2, 1.0f - c->beta1,
                     1.0f - c->beta2, bc1, bc2, c->eps, params + lo, grads + lo,
                     states[0] + lo, states[1] + lo, n);
    }
    if (c->momentum != 0.0f)
        return sgd_momentum(lr, lrwd, grad_scale, c->momentum, c->nesterov, params + lo,
                            grads + lo, states[0] + lo, n);
    return sgd_plain(lr, lrwd, grad_scale, params + lo, grads + lo, n);
}

size_t clip_nblocks(size_t n) { return (n + CLIP_BLOCK - 1) / CLIP_BLOCK; }

/* partial[] is indexed by the global block number: blocks lo/CLIP_BLOCK .. of [lo, hi). */
void clip_block_sumsq(const float *grads, size_t n, size_t lo, size_t hi, double *partial)
{
    CHECK(lo <= hi && hi <= n);
    CHECK(lo % CLIP_BLOCK == 0 && (hi % CLIP_BLOCK == 0 || hi == n));
    for (size_t j = lo / CLIP_BLOCK; j * CLIP_BLOCK < hi; j++) {
        const size_t a = j * CLIP_BLOCK, b = MT_MIN(a + CLIP_BLOCK, n);
        double s = 0.0;
        for (size_t i = a; i < b; i++) s += (double)grads[i] * (double)grads[i];
        partial[j] = s;
    }
}

float clip_scale(const double *partial, size_t nblocks, float max_norm, double *norm_out)
{
    double s = 0.0;
    for (size_t j = 0; j < nblocks; j++) s += partial[j];
    const double norm = sqrt(s);
    if (norm_out) *norm_out = norm;
    if (max_norm <= 0.0f) return 1.0f;
    const double scale = (double)max_norm / (norm + 1e-6);
    return scale < 1.0 ? (float)scale : 1.0f;
}
