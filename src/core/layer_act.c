/* layer_act.c — a standalone activation (one that does not directly follow a dense
 * layer, e.g. after dropout): y (B, n) = f(x (B, n)) elementwise, any shape.  Tokens
 * relu, gelu, tanh; the layer is named by its function (relu0, gelu0, counted per
 * function).  Backward reads x (relu, gelu) or y (tanh), so no aux is kept.  x and y
 * (dx and dy) must not overlap: backward needs the forward's x.  Also the GELU array
 * functions that dense's fused activation shares (layer_impl.h); tanh is mathf_tanhf. */
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "core/layer_impl.h"

/* ---------------------------------------------------------------- GELU (layer_impl.h) */

/* One chunk (m <= LAYER_CHUNK): zc = z (a copy, so that the output may equal z) and
 * t = tanh(u), u = k (z + c z^3) in float, tanh by mathf_tanhf_n (vectorised). */
static void gelu_tanh(const float *z, float *restrict zc, float *restrict t, int m)
{
    memcpy(zc, z, (size_t)m * sizeof *zc);
    LAYER_LOOP(j, m, {
        const float v = zc[j];
        t[j] = LAYER_GELU_K * (v + LAYER_GELU_C * v * v * v);
    })
    mathf_tanhf_n(t, t, (size_t)m);
}

void layer_act_gelu(const float *z, float *y, int n)
{
    float zc[LAYER_CHUNK], t[LAYER_CHUNK];
    for (int k0 = 0; k0 < n; k0 += LAYER_CHUNK) {
        const int m = MT_MIN(LAYER_CHUNK, n - k0);
        gelu_tanh(z + k0, zc, t, m);
        float *ys = y + k0;
        LAYER_LOOP(j, m, { ys[j] = 0.5f * zc[j] * (1.0f + t[j]); })
    }
}

void layer_act_gelu_grad(const float *z, float *g, int n)
{
    float zc[LAYER_CHUNK], t[LAYER_CHUNK];
    for (int k0 = 0; k0 < n; k0 += LAYER_CHUNK) {
        const int m = MT_MIN(LAYER_CHUNK, n - k0);
        gelu_tanh(z + k0, zc, t, m);
        float *gs = g + k0;
        LAYER_LOOP(j, m, {
            const float v = zc[j], tt = t[j];
            gs[j] = 0.5f * (1.0f + tt) +
                    0.5f * v * (1.0f - tt * tt) * LAYER_GELU_K * (1.0f + 3.0f * LAYER_GELU_C * v * v);
        })
    }
}

/* ---------------------------------------------------------------- the layer */

static void act_forward_rows(ActKind act, const float *restrict x, float *restrict y,
                             size_t n)
{
    for (size_t k0 = 0; k0 < n; k0 += LAYER_CHUNK) {
        const int m = (int)MT_MIN((size_t)LAYER_CHUNK, n - k0);
        const float *restrict xs = x + k0;
        float *restrict ys = y + k0;
        switch (act) {
        case ACT_RELU: LAYER_LOOP(j, m, { ys[j] = xs[j] > 0.0f ? xs[j] : 0.0f; }) break;
        case ACT_TANH: mathf_tanhf_n(xs, ys, (size_t)m); break;
        case ACT_GELU: layer_act_gelu(xs, ys, m); break;
        case ACT_NONE: CHECK(!"standalone activation 'none'");
        }
    }
}

static void act_forward(const Layer *l, const float *params, const float *x, float *y,
                        float *aux, int B, const LayerCtx *ctx)
{
    (void)params, (void)aux, (void)ctx;
    CHECK(B >= 1);
    act_forward_rows(l->act, x, y, (size_t)B * (size_t)l->out);
}

static void act_backward_rows(ActKind act, const float *restrict x, const float *restrict y,
                              const float *restrict dy, float *restrict dx, size_t n)
{
    for (size_t k0 = 0; k0 < n; k0 += LAYER_CHUNK) {
        const int m = (int)MT_MIN((size_t)LAYER_CHUNK, n - k0);
        const float *restrict xs = x + k0, *restrict ys = y + k0, *restrict ds = dy + k0;
        float *restrict gs = dx + k0;
        switch (act) {
        case ACT_RELU:
            LAYER_LOOP(j, m, {
                float d = ds[j];
                gs[j] = xs[j] > 0.0f ? d : 0.0f;
            })
            break;
        case ACT_TANH: LAYER_LOOP(j, m, { gs[j] = ds[j] * (1.0f - ys[j] * ys[j]); }) break;
        case ACT_GELU:
            layer_act_gelu_grad(xs, gs, m);
            LAYER_LOOP(j, m, { gs[j] = ds[j] * gs[j]; })
            break;
        case ACT_NONE: CHECK(!"standalone activation 'none'");
        }
    }
}

static void act_backward(const Layer *l, const float *params, const float *x, const float *y,
                         const float *aux, float *dy, float *dx, float *grads, int B,
                         const LayerCtx *ctx)
{
    (void)params, (void)aux, (void)grads, (void)ctx;
    CHECK(B >= 1);
    if (!dx) return; /* no parameters: nothing else to compute */
    act_backward_rows(l->act, x, y, dy, dx, (size_t)B * (size_t)l->out);
}

/* ---------------------------------------------------------------- descriptor */

static LayerParse act_parse(const char *tok, Layer *l, char *why, size_t n)
{
    (void)why, (void)n;
    for (int a = ACT_NONE + 1; a < ACT_COUNT; a++)
        if (strcmp(tok, act_name((ActKind)a)) == 0) {
            l->act = (ActKind)a;
            return LAYER_PARSE_OK;
        }
    return LAYER_PARSE_OTHER;
}

static int act_format(const Layer *l, char *buf, size_t n)
{
    return snprintf(buf, n, "%s", act_name(l->act));
}

static const char *act_stem(const Layer *l) { return act_name(l->act); }

static const char *const act_examples[] = {"relu", "gelu", "tanh", NULL};

const LayerOps layer_act_ops = {
    .kind_name = "act",
    .forms = "relu, gelu, tanh",
    .examples = act_examples,
    .parse = act_parse,
    .format = act_format,
    .stem = act_stem,
    .describe = act_format, /* the function's name */
    .forward = act_forward,
    .backward = act_backward,
};
