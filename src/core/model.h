/* model.h — a model built from the config's layer list, over flat slabs.
 *
 * Layer list syntax (model.layers):   dense:512 relu dropout:0.1 dense:10
 * Each token is parsed by the layer kinds of the registry (layer.h); today:
 *   dense:N      fully connected to N outputs (W (N, in), b (N)); a following
 *                relu/gelu/tanh is fused into it
 *   relu|gelu|tanh   activation
 *   dropout:P    inverted dropout with drop probability P in [0, 1)
 * The last layer's outputs are the class logits (softmax cross-entropy loss).
 *
 * Slabs: params, grads and each optimizer state are one float array of
 * model->nparams elements each; parameter arrays sit at 64-byte aligned offsets;
 * the padding between them is zero and stays zero. */
#ifndef MPITRAIN_CORE_MODEL_H
#define MPITRAIN_CORE_MODEL_H

#include "core/layer.h"

typedef struct {
    int nlayers;
    Layer *layers;       /* owned */
    int in_dim;          /* features per input sample (the product of in_shape) */
    int in_ndim;         /* dims of an input sample (1 to LAYER_MAX_DIMS) */
    int in_shape[LAYER_MAX_DIMS]; /* per-sample input shape, e.g. (784) or (1, 28, 28) */
    int num_classes;     /* outputs of the last layer */
    size_t nparams;      /* slab length in floats (with alignment padding) */
    size_t ntrainable;   /* real parameters (without padding) */
    size_t max_width;    /* widest activation (floats per sample) */
} Model;

/* Parse `spec` for per-sample input shape in_shape (in_ndim dims, 1 to LAYER_MAX_DIMS)
 * and build the model; m->layers is owned by m (model_free).  Returns 0, or
 * MT_EX_CONFIG with err_msg() naming the bad token and the allowed forms (also when
 * no layer has parameters, and when the last layer's width != num_classes, if
 * num_classes > 0); *m is then zeroed. */
int model_build_shape(Model *m, const char *spec, const int *in_shape, int in_ndim,
                      int num_classes);
/* model_build_shape for 1-d samples of in_dim features. */
int model_build(Model *m, const char *spec, int in_dim, int num_classes);
void model_free(Model *m);

/* Initialise the parameter slab: zero, then each layer's LayerOps.init (dense: weights
 * He (normal, std sqrt(2/fan_in)) or Xavier (uniform ±sqrt(6/(fan_in+fan_out))) from
 * rng stream (seed, RNG_INIT, layer index), biases zero); padding zero.  Same seed ->
 * same bits on any machine. */
void model_init_params(const Model *m, float *params, InitKind init, uint64_t seed);

/* A one-line description, e.g. "784-dense512+relu-dense512+relu-dense10 (669706 params)"
 * (the input shape, then each layer's LayerOps.describe); truncated to n bytes, always
 * terminated. */
void model_describe(const Model *m, char *buf, size_t n);

/* Find a parameter by "layer/param" name (e.g. "dense0/w"); NULL if none. */
const ParamDesc *model_find_param(const Model *m, const char *name, const Layer **layer);

#endif
