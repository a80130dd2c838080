/* layer_impl.h — what the layer files share and nobody else uses: the loop helpers,
 * the activation functions (fused into dense, or standalone) and the standalone
 * activation's descriptor, which dense's fuse hook recognises. */
#ifndef MPITRAIN_CORE_LAYER_IMPL_H
#define MPITRAIN_CORE_LAYER_IMPL_H

#include "core/layer.h"
#include "core/mathf.h"

extern const LayerOps layer_act_ops; /* layer_act.c */

/* for (int j = 0; j < n; j++) BODY, written as blocks of 16 with a fixed trip count so
 * that gcc -O2 (very-cheap vectoriser cost model) vectorises it, then the scalar tail.
 * Each element's result is computed by the same IEEE operations either way (C11 mode:
 * no FMA contraction), so blocking does not change bits.  The body must not depend on
 * the order of j. */
#define LAYER_LOOP(j, n, ...)                                                             \
    for (int j##_blk = 0; j##_blk + 16 <= (n); j##_blk += 16)                             \
        for (int j##_k = 0; j##_k < 16; j##_k++) {                                        \
            int j = j##_blk + j##_k;                                                      \
            __VA_ARGS__                                                                   \
        }                                                                                 \
    for (int j = (n) & ~15; j < (n); j++) __VA_ARGS__

/* Elementwise layers walk their (B, n) arrays in chunks of this many floats (int loop
 * bounds for LAYER_LOOP; a chunk of dropout words fits in L1). */
#define LAYER_CHUNK 1024

/* GELU, tanh approximation (Hendrycks & Gimpel; PyTorch approximate="tanh"):
 *   gelu(z)  = 0.5 z (1 + t),  t = tanh(k (z + 0.044715 z^3)),  k = sqrt(2/pi)
 *   gelu'(z) = 0.5 (1 + t) + 0.5 z (1 - t^2) k (1 + 3*0.044715 z^2)
 * Computed in float, left to right as written, with mathf_tanhf (core/mathf.h) over
 * arrays (layer_act.c): y (n) = gelu(z (n)), g (n) = gelu'(z (n)); y or g may equal z. */
#define LAYER_GELU_K 0.7978845608028654f
#define LAYER_GELU_C 0.044715f

void layer_act_gelu(const float *z, float *y, int n);
void layer_act_gelu_grad(const float *z, float *g, int n);

#endif
