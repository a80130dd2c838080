/* layer_dense.c — fully connected layer with a fused activation.
 *
 *   forward:  y (B, out) = act(x (B, in) W^T + b), W (out, in) row-major, b (out):
 *             one sgemm (beta = 0), then one pass over y, still in cache, that adds b
 *             and applies act (gelu keeps the pre-activation z in aux (B, out))
 *   backward: one pass over dy: dy *= act'(.) in place and db = column sums of dy
 *             (rows added in order 0..B-1), then dW (out, in) = dy^T x and
 *             dx (B, in) = dy W (sgemm, beta = 0: overwritten, not accumulated).
 * relu' and tanh' are read from y (y > 0; 1 - y^2), gelu' from the kept z.
 * BLAS runs with the caller's thread setting; the executor sets one thread. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/layer_impl.h"

static void bias_act_row(ActKind act, float *restrict y, const float *restrict b,
                         float *restrict z, int n)
{
    switch (act) {
    case ACT_NONE: LAYER_LOOP(j, n, { y[j] += b[j]; }) break;
    case ACT_RELU:
        LAYER_LOOP(j, n, {
            float v = y[j] + b[j];
            y[j] = v > 0.0f ? v : 0.0f;
        })
        break;
    case ACT_TANH:
        for (int j = 0; j < n; j++) y[j] = tanhf(y[j] + b[j]);
        break;
    case ACT_GELU:
        for (int j = 0; j < n; j++) {
            float v = y[j] + b[j];
            z[j] = v;
            y[j] = layer_gelu(v);
        }
        break;
    }
}

static void dense_forward(const Layer *l, const float *params, const float *x, float *y,
                          float *aux, int B, const LayerCtx *ctx)
{
    (void)ctx;
    CHECK(B >= 1);
    const int in = l->in, out = l->out;
    const float *w = params + l->params[0].off; /* (out, in) */
    const float *b = params + l->params[1].off; /* (out) */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, out, in, 1.0f, x, in, w, in,
                0.0f, y, out);
    for (int r = 0; r < B; r++)
        bias_act_row(l->act, y + (size_t)r * out, b,
                     l->act == ACT_GELU ? aux + (size_t)r * out : NULL, out);
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
    (void)ctx;
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
    /* beta = 1 adds the product to dw; exec.c uses it only after checking on these
     * shapes that OpenBLAS then gives the same bits as beta = 0 plus an addition */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, B, 1.0f, dy, out, x, in,
                acc ? 1.0f : 0.0f, dw, in);
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, in, out, 1.0f, dy, out, w,
                    in, 0.0f, dx, in);
}

const LayerOps layer_dense_ops = {"dense", dense_forward, dense_backward};
