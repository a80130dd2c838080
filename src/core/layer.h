/* layer.h — layers behind a table of functions.
 *
 * Tensors are row-major float arrays; a layer maps x (B, in) to y (B, out) for a
 * micro-batch of B samples.  Parameters and gradients live in the model's flat slabs:
 * a layer knows only its offsets (ParamDesc.off) into them.  Forward and backward are
 * single-threaded (gemm.h): the micro-batch is the unit of compute, so the
 * bits do not depend on threads or ranks (docs/determinism.md).
 *
 * A dense layer may carry a fused activation (dense:512 relu -> one Layer, act = relu):
 * bias and activation are applied in the pass that reads the GEMM output, and the
 * activation's derivative in the pass that computes the bias gradient. */
#ifndef MPITRAIN_CORE_LAYER_H
#define MPITRAIN_CORE_LAYER_H

#include <stddef.h>
#include <stdint.h>

typedef enum { LAYER_DENSE, LAYER_ACT, LAYER_DROPOUT } LayerKind;
typedef enum { ACT_NONE, ACT_RELU, ACT_GELU, ACT_TANH } ActKind;

#define LAYER_MAX_PARAMS 2
#define PARAM_ALIGN 16 /* floats: every parameter array starts on a 64-byte boundary */

typedef struct {
    char name[16];   /* "w", "b" */
    size_t off;      /* offset in floats into the parameter (and gradient, state) slabs */
    size_t count;    /* number of floats */
    int ndim;
    int shape[4];    /* true shape, e.g. w: (out, in), b: (out) */
    int fan_in, fan_out; /* for initialisation */
} ParamDesc;

/* Per-call context: what makes dropout reproducible.  Sample `sample0 + i` of the
 * micro-batch is its index in the epoch's global order (not a rank-local index). */
typedef struct {
    uint64_t seed;    /* run seed */
    uint64_t step;    /* global step */
    uint64_t sample0; /* global position of row 0 of this micro-batch within the step */
    int train;        /* 1: training (dropout active), 0: eval */
    int accumulate;   /* backward: add this micro-batch's parameter gradients to grads
                         (each element: grads = grads + g, one rounding: the same bits as
                         computing g alone and adding) instead of overwriting them */
    float *scratch;   /* per-thread scratch for the layer's own use (64-byte aligned), or */
    size_t scratch_n; /* NULL: floats in it; layers allocate what is missing */
} LayerCtx;


typedef struct Layer Layer;

typedef struct {
    const char *kind_name;
    /* y (B, out) = f(x (B, in)); aux (B, aux_per_sample) is scratch kept for backward
     * (pre-activation for gelu, mask for dropout).  params = the parameter slab. */
    void (*forward)(const Layer *l, const float *params, const float *x, float *y,
                    float *aux, int B, const LayerCtx *ctx);
    /* Given x, y, aux of the forward and dy (B, out) (may be overwritten), write
     * dx (B, in) (dx == NULL: not needed, e.g. first layer) and this micro-batch's
     * parameter gradients into grads (the gradient slab, same offsets; overwritten,
     * or added when ctx->accumulate). */
    void (*backward)(const Layer *l, const float *params, const float *x, const float *y,
                     const float *aux, float *dy, float *dx, float *grads, int B,
                     const LayerCtx *ctx);
} LayerOps;

struct Layer {
    LayerKind kind;
    const LayerOps *ops;
    char name[32];      /* "dense0", "relu0", "dropout0" (counted per kind): names arrays in checkpoints */
    int index;          /* position in the model */
    int in, out;        /* features per sample */
    ActKind act;        /* LAYER_DENSE: fused activation; LAYER_ACT: the activation */
    float p;            /* LAYER_DROPOUT: drop probability */
    size_t aux_per_sample; /* floats of scratch per sample kept from forward to backward */
    int nparams;
    ParamDesc params[LAYER_MAX_PARAMS];
};

/* Fill l->ops, aux_per_sample and params (shapes, counts; offsets are assigned by the
 * model) for a layer whose kind, in, out, act, p are set. */
void layer_setup(Layer *l);

const char *act_name(ActKind a);

/* Dense layers, layer-wise (exec.c's path for models of dense layers only: the step's
 * rt = nmb * R rows at once, work split by output rows or columns across threads).
 * Every element gets the same operations as in forward/backward above, per micro-batch,
 * so the bits are those of the per-micro-batch path:
 *   dense_lw_forward:  rows [o0, o1) of yt (out, rt) = act(W xt + b), xt (in, rt) the
 *                      input transposed; the same rows as columns of y (rt, out) (and of
 *                      aux (rt, out), the pre-activation, for gelu)
 *   dense_lw_act_grad: columns [c0, c1) of dy (rows, out) *= act'(y); sum[c] = the
 *                      column sums over these rows in order (one micro-batch)
 *   dense_lw_dw:       rows [o0, o1) of dW = tree over the nmb micro-batches of
 *                      dy_k^T x_k (gemm_f32_tree), written into grads
 *   dense_lw_dx:       columns [c0, c1) of dx (rt, in) = dy W */
void dense_lw_forward(const Layer *l, const float *params, const float *xt, float *yt,
                      float *y, float *aux, int rt, int o0, int o1);
void dense_lw_act_grad(const Layer *l, float *dy, const float *y, const float *aux, int rows,
                       int c0, int c1, float *sum);
void dense_lw_dw(const Layer *l, const float *dy, const float *x, float *grads, int R, int nmb,
                 int o0, int o1);
void dense_lw_dx(const Layer *l, const float *params, const float *dy, float *dx, int rt,
                 int c0, int c1);

/* Floats of LayerCtx scratch a layer uses for B rows (exec provides the maximum). */
size_t layer_scratch_floats(const Layer *l, int B);

#endif
