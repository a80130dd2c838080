/* layer_dense.c — fully connected layer with a fused activation.
 *
 *   token:    dense:N (N from 1 to DENSE_MAX_WIDTH); a following relu/gelu/tanh token is
 *             fused into it (fuse hook) while it has no activation
 *   shapes:   any input shape, flattened: (in) -> (N); W (out, in), b (out)
 *   init:     W He or Xavier (layer_init_weight), b zero
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
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
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
MT_VEC static void act_grad_colsum_row(ActKind act, float *restrict d, const float *restrict y,
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
    case ACT_GELU: {
        float g[LAYER_CHUNK];
        for (int k0 = 0; k0 < n; k0 += LAYER_CHUNK) {
            const int m = MT_MIN(LAYER_CHUNK, n - k0);
            float *ds = d + k0, *dbs = db + k0;
            layer_act_gelu_grad(z + k0, g, m);
            LAYER_LOOP(j, m, {
                float v = ds[j] * g[j];
                ds[j] = v;
                dbs[j] += v;
            })
        }
        break;
    }
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

MT_VEC static void act_apply(ActKind act, float *v, int n)
{
    switch (act) {
    case ACT_NONE: break;
    case ACT_RELU: LAYER_LOOP(j, n, { v[j] = v[j] > 0.0f ? v[j] : 0.0f; }) break;
    case ACT_TANH: mathf_tanhf_n(v, v, (size_t)n); break;
    case ACT_GELU: layer_act_gelu(v, v, n); break;
    }
}

/* yt (n, rt): row o += b[o] */
MT_VEC static void add_bias_rows(float *yt, const float *b, int n, int rt)
{
    for (int o = 0; o < n; o++) {
        float *row = yt + (size_t)o * rt, bo = b[o];
        LAYER_LOOP(c, rt, { row[c] = row[c] + bo; })
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
    add_bias_rows(ytb, b + o0, n, rt); /* z = y + b */
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

/* ---------------------------------------------------------------- descriptor */

#define DENSE_MAX_WIDTH (1 << 24)

typedef struct {
    int width; /* N of dense:N: outputs per sample */
} DenseConf;

static LayerParse dense_parse(const char *tok, Layer *l, char *why, size_t n)
{
    if (strncmp(tok, "dense:", 6) != 0) return LAYER_PARSE_OTHER;
    const char *v = tok + 6;
    char *end;
    errno = 0;
    long w = strtol(v, &end, 10);
    if (!isdigit((unsigned char)*v) || *end || errno || w < 1 || w > DENSE_MAX_WIDTH) {
        snprintf(why, n, "the width of dense:N must be an integer from 1 to %d",
                 DENSE_MAX_WIDTH);
        return LAYER_PARSE_BAD;
    }
    DenseConf c = {.width = (int)w};
    layer_conf_put(l, &c, sizeof c);
    return LAYER_PARSE_OK;
}

static int dense_format(const Layer *l, char *buf, size_t n)
{
    DenseConf c;
    layer_conf_get(l, &c, sizeof c);
    return l->act == ACT_NONE ? snprintf(buf, n, "dense:%d", c.width)
                              : snprintf(buf, n, "dense:%d %s", c.width, act_name(l->act));
}

static int dense_fuse(Layer *l, const Layer *next)
{
    if (next->ops != &layer_act_ops || l->act != ACT_NONE) return 0;
    l->act = next->act;
    return 1;
}

static int dense_infer(Layer *l, char *why, size_t n)
{
    (void)why, (void)n;
    DenseConf c;
    layer_conf_get(l, &c, sizeof c);
    l->out_ndim = 1;
    l->out_shape[0] = c.width;
    return 0;
}

static void dense_setup(Layer *l)
{
    layer_param(&l->params[0], "w", 2, (const int[]){l->out, l->in}, l->in, l->out);
    layer_param(&l->params[1], "b", 1, (const int[]){l->out}, l->in, l->out);
    l->nparams = 2;
}

static void dense_init(const Layer *l, float *params, InitKind init, uint64_t seed)
{
    layer_init_weight(l, &l->params[0], params, init, seed); /* b stays zero */
}

static size_t dense_aux_floats(const Layer *l)
{
    return l->act == ACT_GELU ? (size_t)l->out : 0; /* the pre-activation */
}

static size_t dense_scratch_floats(const Layer *l, int B)
{
    return (size_t)B * (size_t)(l->in + l->out); /* x^T (in, B), y^T (out, B) */
}

static int dense_describe(const Layer *l, char *buf, size_t n)
{
    return l->act == ACT_NONE ? snprintf(buf, n, "dense%d", l->out)
                              : snprintf(buf, n, "dense%d+%s", l->out, act_name(l->act));
}

static const char *const dense_examples[] = {"dense:5", "dense:5 relu", "dense:5 gelu",
                                             "dense:5 tanh", "dense:1", NULL};

const LayerOps layer_dense_ops = {
    .kind_name = "dense",
    .forms = "dense:N (N an integer >= 1)",
    .examples = dense_examples,
    .parse = dense_parse,
    .format = dense_format,
    .fuse = dense_fuse,
    .infer = dense_infer,
    .setup = dense_setup,
    .init = dense_init,
    .aux_floats = dense_aux_floats,
    .scratch_floats = dense_scratch_floats,
    .describe = dense_describe,
    .forward = dense_forward,
    .backward = dense_backward,
    .layerwise = 1,
};
