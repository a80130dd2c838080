/* layer_dense.c — fully connected layer with a fused activation.
 *
 *   forward:  y (B, out) = act(x (B, in) W^T + b), W (out, in) row-major, b (out):
 *             y^T (out, B) = W x^T (gemm.h, on x transposed into scratch); b added and
 *             act applied along y^T's rows, then transposed into y (gelu keeps the
 *             pre-activation z in aux (B, out)) — dense_lw_forward over all outputs
 *   backward: one pass over dy: dy *= act'(.) in place and db = column sums of dy
 *             (rows added in order 0..B-1), then dW (out, in) = dy^T x and
 *             dx (B, in) = dy W (overwritten, not accumulated).
 * relu' and tanh' are read from y (y > 0; 1 - y^2), gelu' from the kept z.
 * Products by gemm_f32 (gemm.h): every element a chain of fma in a fixed order, so the
 * bits are the same on every CPU; single-threaded (the micro-batch is the unit). */
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/gemm.h"
#include "core/layer_impl.h"

static void dense_forward(const Layer *l, const float *params, const float *x, float *y,
                          float *aux, int B, const LayerCtx *ctx)
{
    CHECK(B >= 1);
    const int in = l->in, out = l->out;
    size_t need = (size_t)B * (in + out);
    float *xt = ctx && ctx->scratch_n >= need ? ctx->scratch : xaligned(need * sizeof(float));
    gemm_transpose(B, in, x, in, xt, B); /* xt (in, B) */
    /* the layer-wise forward over all B rows and every output */
    dense_lw_forward(l, params, xt, xt + (size_t)B * in, y, aux, B, 0, out);
    if (!(ctx && xt == ctx->scratch)) free(xt);
}

/* d (n) *= act'(.) in place, db (n) += d. */
static void act_grad_colsum_row(ActKind act, float *restrict d, const float *restrict y,
                                const float *restrict z, float *restrict db, int n)
{
    switch (act) {
    case ACT_NONE: LAYER_LOOP(j, n, { db[j] += d[j]; }) break;
    case ACT_RELU:
        LAYER_LOOP(j, n, {
            float v = y[j] > 0.0f ? d[j] : 0.0f;
            d[j] = v;
            db[j] += v;
        })
        break;
    case ACT_TANH:
        LAYER_LOOP(j, n, {
            float v = d[j] * (1.0f - y[j] * y[j]);
            d[j] = v;
            db[j] += v;
        })
        break;
    case ACT_GELU:
        for (int j = 0; j < n; j++) {
            float v = d[j] * layer_gelu_grad(z[j]);
            d[j] = v;
            db[j] += v;
        }
        break;
    }
}

#define DENSE_DB_STACK 4096

static void dense_backward(const Layer *l, const float *params, const float *x,
                           const float *y, const float *aux, float *dy, float *dx,
                           float *grads, int B, const LayerCtx *ctx)
{
    CHECK(B >= 1);
    const int in = l->in, out = l->out;
    const float *w = params + l->params[0].off; /* (out, in) */
    float *dw = grads + l->params[0].off;       /* (out, in) */
    float *db = grads + l->params[1].off;       /* (out) */
    int acc = ctx && ctx->accumulate;
    /* this micro-batch's bias gradient, summed from zero in row order; accumulated into
     * db with one addition per element (so: the same bits as a separate sum + add) */
    float dbuf[DENSE_DB_STACK];
    float *s = acc ? (out <= DENSE_DB_STACK ? dbuf : xmalloc((size_t)out * sizeof *s)) : db;
    memset(s, 0, (size_t)out * sizeof *s);
    for (int r = 0; r < B; r++)
        act_grad_colsum_row(l->act, dy + (size_t)r * out, y + (size_t)r * out,
                            l->act == ACT_GELU ? aux + (size_t)r * out : NULL, s, out);
    if (acc) {
        for (int j = 0; j < out; j++) db[j] = db[j] + s[j];
        if (s != dbuf) free(s);
    }
    /* dw (out, in) = dy^T x (or dw + dy^T x, one rounding per element) */
    gemm_f32(out, in, B, dy, 1, out, x, in, dw, in, acc);
    if (dx) gemm_f32(B, in, out, dy, out, 1, w, in, dx, in, 0); /* dx (B, in) = dy W */
}

/* ---------------------------------------------------------------- layer-wise */

static void act_apply(ActKind act, float *v, int n)
{
    switch (act) {
    case ACT_NONE: break;
    case ACT_RELU: LAYER_LOOP(j, n, { v[j] = v[j] > 0.0f ? v[j] : 0.0f; }) break;
    case ACT_TANH: for (int j = 0; j < n; j++) v[j] = tanhf(v[j]); break;
    case ACT_GELU: for (int j = 0; j < n; j++) v[j] = layer_gelu(v[j]); break;
    }
}

void dense_lw_forward(const Layer *l, const float *params, const float *xt, float *yt,
                      float *y, float *aux, int rt, int o0, int o1)
{
    const int in = l->in, out = l->out, n = o1 - o0;
    const float *w = params + l->params[0].off; /* (out, in) */
    const float *b = params + l->params[1].off; /* (out) */
    float *ytb = yt + (size_t)o0 * rt;
    gemm_f32(n, rt, in, w + (size_t)o0 * in, in, 1, xt, rt, ytb, rt, 0);
    for (int o = 0; o < n; o++) { /* z = y + b */
        float *row = ytb + (size_t)o * rt, bo = b[o0 + o];
        LAYER_LOOP(c, rt, { row[c] = row[c] + bo; })
    }
    if (l->act == ACT_GELU) gemm_transpose(n, rt, ytb, rt, aux + o0, out); /* z, by rows */
    for (int o = 0; o < n; o++) act_apply(l->act, ytb + (size_t)o * rt, rt);
    gemm_transpose(n, rt, ytb, rt, y + o0, out);
}

void dense_lw_act_grad(const Layer *l, float *dy, const float *y, const float *aux, int rows,
                       int c0, int c1, float *sum)
{
    const int out = l->out, n = c1 - c0;
    memset(sum + c0, 0, (size_t)n * sizeof(float));
    for (int r = 0; r < rows; r++) {
        size_t o = (size_t)r * out + c0;
        act_grad_colsum_row(l->act, dy + o, y + o, l->act == ACT_GELU ? aux + o : NULL, sum + c0, n);
    }
}

void dense_lw_dw(const Layer *l, const float *dy, const float *x, float *grads, int R, int nmb,
                 int o0, int o1)
{
    const int in = l->in, out = l->out;
    float *dw = grads + l->params[0].off;
    /* leaf k: rows [o0, o1) of dy_k^T x_k, dy_k = dy + k R out, x_k = x + k R in */
    gemm_f32_tree(o1 - o0, in, R, nmb, dy + o0, 1, out, (ptrdiff_t)R * out, x, in,
                  (ptrdiff_t)R * in, dw + (size_t)o0 * in, in);
}

void dense_lw_dx(const Layer *l, const float *params, const float *dy, float *dx, int rt,
                 int c0, int c1)
{
    const int in = l->in, out = l->out;
    const float *w = params + l->params[0].off;
    gemm_f32(rt, c1 - c0, out, dy, out, 1, w + c0, in, dx + c0, in, 0);
}

const LayerOps layer_dense_ops = {"dense", dense_forward, dense_backward};
