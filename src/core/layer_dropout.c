/* layer_dropout.c — inverted dropout.
 *
 * Training (ctx->train and p > 0): element (row r, column c) of the micro-batch is kept
 * iff rng_uniform(key, w) >= p, key = rng_key(seed, RNG_DROPOUT, step) and word index
 * w = (sample0 + r) * width + c; kept elements are scaled by 1/(1-p) (float).  The mask
 * thus depends only on the sample's global position in the step, not on the rank,
 * thread or how the rows are split into calls.  aux (B, width) keeps the multiplier of
 * each element (0 or 1/(1-p)) for backward.  Eval or p == 0: identity (aux unused).
 * x and y (dx and dy) must not overlap.  Token dropout:P, 0 <= P < 1; any shape. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/layer_impl.h"
#include "core/rng.h"

typedef struct {
    float p; /* drop probability, in [0, 1) */
} DropoutConf;

static float dropout_p(const Layer *l)
{
    DropoutConf c;
    layer_conf_get(l, &c, sizeof c);
    return c.p;
}

static int dropout_active(const Layer *l, const LayerCtx *ctx)
{
    return ctx && ctx->train && dropout_p(l) > 0.0f;
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
    const float p = dropout_p(l);
    const uint32_t thr = (uint32_t)ceil((double)p * 16777216.0);
    const float scale = 1.0f / (1.0f - p);
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

/* ---------------------------------------------------------------- descriptor */

static LayerParse dropout_parse(const char *tok, Layer *l, char *why, size_t n)
{
    if (strncmp(tok, "dropout:", 8) != 0) return LAYER_PARSE_OTHER;
    const char *v = tok + 8;
    char *end;
    errno = 0;
    double p = strtod(v, &end);
    if (!*v || isspace((unsigned char)*v) || *end || errno || !(p >= 0.0 && p < 1.0)) {
        snprintf(why, n, "the drop probability of dropout:P must be a number with 0 <= P < 1");
        return LAYER_PARSE_BAD;
    }
    DropoutConf c = {.p = (float)p};
    if (c.p >= 1.0f) c.p = nextafterf(1.0f, 0.0f); /* p just below 1 rounded up */
    layer_conf_put(l, &c, sizeof c);
    return LAYER_PARSE_OK;
}

static int dropout_format(const Layer *l, char *buf, size_t n)
{
    return snprintf(buf, n, "dropout:%.9g", (double)dropout_p(l)); /* exact for a float */
}

static size_t dropout_aux_floats(const Layer *l)
{
    return (size_t)l->out; /* per element: 0 or 1/(1-p) */
}

static int dropout_describe(const Layer *l, char *buf, size_t n)
{
    return snprintf(buf, n, "dropout%g", (double)dropout_p(l));
}

static const char *const dropout_examples[] = {"dropout:0.4", "dropout:0", NULL};

const LayerOps layer_dropout_ops = {
    .kind_name = "dropout",
    .forms = "dropout:P (0 <= P < 1)",
    .examples = dropout_examples,
    .parse = dropout_parse,
    .format = dropout_format,
    .aux_floats = dropout_aux_floats,
    .describe = dropout_describe,
    .forward = dropout_forward,
    .backward = dropout_backward,
};
