/* layer_dropout.c — inverted dropout.
 *
 * Training (ctx->train and p > 0): element (row r, column c) of the micro-batch is kept
 * iff rng_uniform(key, w) >= p, key = rng_key(seed, RNG_DROPOUT, step) and word index
 * w = (sample0 + r) * width + c; kept elements are scaled by 1/(1-p) (float).  The mask
 * thus depends only on the sample's global position in the step, not on the rank,
 * thread or how the rows are split into calls.  aux (B, width) keeps the multiplier of
 * each element (0 or 1/(1-p)) for backward.  Eval or p == 0: identity (aux unused).
 * x and y (dx and dy) must not overlap. */
#include <string.h>

#include "core/common.h"
#include "core/layer_impl.h"
#include "core/rng.h"

static int dropout_active(const Layer *l, const LayerCtx *ctx)
{
    return ctx && ctx->train && l->p > 0.0f;
}

/* rng_uniform(key, w) = (word >> 8) * 2^-24 >= p  <=>  (word >> 8) >= ceil(p * 2^24)
 * (p * 2^24 is exact in double), so the keep test is done on the integer words. */
static void mask_chunk(const uint32_t *restrict words, uint32_t thr, float scale,
                       const float *restrict x, float *restrict y, float *restrict mask, int n)
{
    LAYER_LOOP(j, n, {
        float m = (words[j] >> 8) >= thr ? scale : 0.0f;
        mask[j] = m;
        y[j] = x[j] * m;
    })
}

static void dropout_forward(const Layer *l, const float *params, const float *x, float *y,
                            float *aux, int B, const LayerCtx *ctx)
{
    (void)params;
    CHECK(B >= 1);
    const size_t total = (size_t)B * (size_t)l->out;
    if (!dropout_active(l, ctx)) {
        memcpy(y, x, total * sizeof *y);
        return;
    }
    const uint64_t key = rng_key(ctx->seed, RNG_DROPOUT, ctx->step);
    const uint64_t w0 = ctx->sample0 * (uint64_t)l->out;
    const uint32_t thr = (uint32_t)ceil((double)l->p * 16777216.0);
    const float scale = 1.0f / (1.0f - l->p);
    uint32_t words[LAYER_CHUNK];
    for (size_t k0 = 0; k0 < total; k0 += LAYER_CHUNK) {
        const int n = (int)MT_MIN((size_t)LAYER_CHUNK, total - k0);
        rng_fill_u32(key, w0 + k0, (size_t)n, words);
        mask_chunk(words, thr, scale, x + k0, y + k0, aux + k0, n);
    }
}

static void mul_chunk(const float *restrict a, const float *restrict b, float *restrict c,
                      int n)
{
    LAYER_LOOP(j, n, { c[j] = a[j] * b[j]; })
}

static void dropout_backward(const Layer *l, const float *params, const float *x,
                             const float *y, const float *aux, float *dy, float *dx,
                             float *grads, int B, const LayerCtx *ctx)
{
    (void)params, (void)x, (void)y, (void)grads;
    CHECK(B >= 1);
    if (!dx) return;
    const size_t total = (size_t)B * (size_t)l->out;
    if (!dropout_active(l, ctx)) {
        memcpy(dx, dy, total * sizeof *dx);
        return;
    }
    for (size_t k0 = 0; k0 < total; k0 += LAYER_CHUNK)
        mul_chunk(dy + k0, aux + k0, dx + k0, (int)MT_MIN((size_t)LAYER_CHUNK, total - k0));
}

const LayerOps layer_dropout_ops = {"dropout", dropout_forward, dropout_backward};
