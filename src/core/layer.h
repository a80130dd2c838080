/* layer.h — layers: each kind one descriptor (LayerOps), listed in the registry.
 *
 * Tensors are row-major float arrays; a layer maps x (B, in) to y (B, out) for a
 * micro-batch of B samples, where in and out are the flattened per-sample shapes
 * in_shape (in_ndim dims) and out_shape (out_ndim dims), at most LAYER_MAX_DIMS each.
 * Parameters and gradients live in the model's flat slabs: a layer knows only its
 * offsets (ParamDesc.off) into them.  Forward and backward are single-threaded
 * (gemm.h): the micro-batch is the unit of compute, so the bits do not depend on
 * threads or ranks (docs/determinism.md).
 *
 * A kind plugs in with one file (layer_<kind>.c defining `const LayerOps
 * layer_<kind>_ops`) and one line in layer_registry.c; model.c, layer.c and the
 * executor know kinds only through the descriptor.  A dense layer fuses a following
 * activation (dense:512 relu -> one Layer, act = relu): bias and activation are applied
 * in the pass that reads the GEMM output, and the activation's derivative in the pass
 * that computes the bias gradient. */
#ifndef MPITRAIN_CORE_LAYER_H
#define MPITRAIN_CORE_LAYER_H

#include <stddef.h>
#include <stdint.h>

typedef enum { ACT_NONE, ACT_RELU, ACT_GELU, ACT_TANH } ActKind;
#define ACT_COUNT 4

/* Weight initialisation (model_init_params, LayerOps.init). */
typedef enum { INIT_HE, INIT_XAVIER } InitKind;

#define LAYER_MAX_PARAMS 2
#define LAYER_MAX_DIMS 3   /* per-sample shape: (features), (h, w) or (c, h, w) */
#define LAYER_CONF_BYTES 64
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

/* What LayerOps.parse says about a token. */
typedef enum {
    LAYER_PARSE_OTHER, /* not this kind's token: the registry asks the next kind */
    LAYER_PARSE_OK,    /* this kind's: the Layer's settings are filled in */
    LAYER_PARSE_BAD,   /* this kind's form with a bad value: `why` says what is wrong */
} LayerParse;

/* A layer kind.  Hooks marked "may be NULL" have the default given; the others are
 * required.  The registry (layer_registry.c) holds one const instance per kind. */
typedef struct {
    const char *kind_name; /* "dense", "act", "dropout": unique in the registry; written as
                              the "kind" attribute of the layer's group in checkpoints */
    const char *forms;     /* the tokens it accepts, for "allowed forms are ..." in errors:
                              "dense:N (N an integer >= 1)" */
    const char *const *examples; /* NULL-terminated layer specs that each build one layer of
                              this kind (fused tokens included, e.g. "dense:5 gelu"); the
                              unit tests build and check every one */
    /* Token `tok` of model.layers -> the layer's settings (l->act, l->conf; *l is zeroed
     * and l->ops set by the caller).  On LAYER_PARSE_BAD writes the reason into why
     * (n bytes, e.g. "the width of dense:N must be an integer from 1 to 16777216"); the
     * registry adds the token, its position and the allowed forms. */
    LayerParse (*parse)(const char *tok, Layer *l, char *why, size_t n);
    /* Write the token(s) that parse back to l's settings ("dense:512 relu"): the
     * inverse of parse and fuse.  snprintf's contract (returns the length). */
    int (*format)(const Layer *l, char *buf, size_t n);
    /* Fold the next parsed layer into l (dense takes a following activation while it
     * has none): 1 if folded (next then is no layer of its own and l keeps its name),
     * 0 if not.  May be NULL: never folds. */
    int (*fuse)(Layer *l, const Layer *next);
    /* The name stem: layers are named stem + a counter per stem in model order
     * (dense0, dense1, relu0, dropout0); fuse must not change it.  May be NULL:
     * kind_name. */
    const char *(*stem)(const Layer *l);
    /* Shape inference: l->in_shape/in_ndim are set; write l->out_shape/out_ndim.  0, or
     * -1 with the reason in why (n bytes; the model names the layer and token).  May be
     * NULL: out_shape = in_shape (elementwise kinds). */
    int (*infer)(Layer *l, char *why, size_t n);
    /* Parameter set-up: fill l->params[0 .. l->nparams) (names, shapes, counts, fans;
     * offsets are assigned by the model, in this order) from the settings and shapes.
     * May be NULL: no parameters. */
    void (*setup)(Layer *l);
    /* Initialise this layer's parameters in the parameter slab (already zero) from the
     * stream rng_key(seed, RNG_INIT, l->index); same seed -> same bits.  May be NULL:
     * the parameters stay zero. */
    void (*init)(const Layer *l, float *params, InitKind init, uint64_t seed);
    /* Aux kept from forward to backward, in FLOATS per sample (the buffer is 64-byte
     * aligned per layer, (B, aux floats); a kind that keeps other types sizes them in
     * floats, rounded up).  May be NULL: none. */
    size_t (*aux_floats)(const Layer *l);
    /* LayerCtx scratch in floats for B rows (exec provides the largest over layers).
     * May be NULL: none. */
    size_t (*scratch_floats)(const Layer *l, int B);
    /* model_describe's piece for this layer: "dense512+relu", "dropout0.1" (snprintf's
     * contract). */
    int (*describe)(const Layer *l, char *buf, size_t n);
    /* y (B, out) = f(x (B, in)); aux (B, aux_per_sample) is scratch kept for backward
     * (pre-activation for gelu, mask for dropout).  params = the parameter slab.  Each
     * row's output depends on that row (and the ctx) only, with the same bits however
     * the rows are split between calls. */
    void (*forward)(const Layer *l, const float *params, const float *x, float *y,
                    float *aux, int B, const LayerCtx *ctx);
    /* Given x, y, aux of the forward and dy (B, out) (may be overwritten), write
     * dx (B, in) (dx == NULL: not needed, e.g. first layer) and this micro-batch's
     * parameter gradients into grads (the gradient slab, same offsets; overwritten,
     * or added when ctx->accumulate).  Nothing outside the layer's arrays is written. */
    void (*backward)(const Layer *l, const float *params, const float *x, const float *y,
                     const float *aux, float *dy, float *dx, float *grads, int B,
                     const LayerCtx *ctx);
    int layerwise; /* 1: the executor's layer-wise path can run it; a model runs
                      layer-wise only when every layer can.  That path calls dense_lw_*
                      (below) directly, so only dense says 1: a second such kind needs
                      those four as hooks of its own first */
    int nstate;    /* non-trainable state arrays (running statistics) that checkpoints must
                      save besides the parameters: 0 for every kind so far (no slab for
                      them exists yet; the first kind with state adds it) */
} LayerOps;

struct Layer {
    const LayerOps *ops; /* the layer's kind */
    char name[32];      /* "dense0", "relu0", "dropout0" (counted per stem): names arrays in checkpoints */
    int index;          /* position in the model */
    int in_ndim, out_ndim;
    int in_shape[LAYER_MAX_DIMS], out_shape[LAYER_MAX_DIMS]; /* per sample */
    int in, out;        /* features per sample: the products of in_shape, out_shape */
    ActKind act;        /* the activation it applies (dense: fused; act: its function),
                           ACT_NONE for other kinds; written to checkpoints */
    unsigned char conf[LAYER_CONF_BYTES]; /* the kind's own settings (dense: width,
                           dropout: p), a struct of that kind's file, copied in and out
                           with layer_conf_get/put */
    size_t aux_per_sample; /* floats of scratch per sample kept from forward to backward */
    int nparams;
    ParamDesc params[LAYER_MAX_PARAMS];
};

/* ------------------------------------------------------------------ registry */

/* The kinds, in the order of the "allowed forms" text (layer_registry.c). */
extern const LayerOps *const layer_registry[];
extern const int layer_registry_count;

/* The kind named kind_name, or NULL. */
const LayerOps *layer_kind(const char *kind_name);

/* Parse token `tok` (position pos, from 1) of model.layers into *l (zeroed, ops and
 * settings set).  0, or MT_EX_CONFIG with err_msg() naming the token, its position and
 * the allowed forms. */
int layer_parse(const char *tok, int pos, Layer *l);

/* "allowed forms are dense:N (...), relu, gelu, tanh, dropout:P (...), separated by
 * spaces, e.g. ..." into buf (n bytes, always terminated). */
void layer_allowed_forms(char *buf, size_t n);

/* ------------------------------------------------------------------ one layer */

/* Shape inference and set-up of a parsed layer on per-sample input shape (ndim dims):
 * fills the shapes, in, out, params (offsets 0: the model assigns them) and
 * aux_per_sample.  0, or MT_EX_CONFIG naming the layer (l->name) and token pos. */
int layer_shape(Layer *l, const int *in_shape, int ndim, int pos);

/* Fill params (shapes, counts; offsets are assigned by the model) and aux_per_sample
 * for a layer whose ops, settings, in_shape and out_shape (and in, out) are set. */
void layer_setup(Layer *l);

/* Copy a kind's settings struct (n bytes <= LAYER_CONF_BYTES) into / out of l->conf. */
void layer_conf_put(Layer *l, const void *conf, size_t n);
void layer_conf_get(const Layer *l, void *conf, size_t n);

/* Fill a parameter description (offset 0). */
void layer_param(ParamDesc *p, const char *name, int ndim, const int *shape, int fan_in,
                 int fan_out);

/* Initialise weight array w in params: He: (float)(sqrt(2/fan_in) * rng_normal(key, i))
 * in double; Xavier: (float)(a * (2 u - 1)), a = sqrt(6/(fan_in+fan_out)),
 * u = rng_uniform(key, i), so in [-a, a); key = rng_key(seed, RNG_INIT, l->index). */
void layer_init_weight(const Layer *l, const ParamDesc *w, float *params, InitKind init,
                       uint64_t seed);

const char *act_name(ActKind a);

/* Floats of LayerCtx scratch a layer uses for B rows (exec provides the maximum). */
size_t layer_scratch_floats(const Layer *l, int B);

/* ------------------------------------------------------------------ dense */

extern const LayerOps layer_dense_ops; /* layer_dense.c */

/* Dense layers, layer-wise (exec.c's path for models whose layers all have
 * LayerOps.layerwise: the step's rt = nmb * R rows at once, work split by output rows or
 * columns across threads).  Every element gets the same operations as in
 * forward/backward above, per micro-batch, so the bits are those of the
 * per-micro-batch path:
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

#endif
