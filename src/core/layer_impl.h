/* layer_impl.h — what the layer files share and nobody else uses: the loop helpers,
 * the activation functions (fused into dense, or standalone) and the standalone
 * activation's descriptor, which dense's fuse hook recognises. */
#ifndef MPITRAIN_CORE_LAYER_IMPL_H
#define MPITRAIN_CORE_LAYER_IMPL_H

#include <math.h>

#include "core/layer.h"

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
 * Computed in float with libm's tanhf. */
#define LAYER_GELU_K 0.7978845608028654f
#define LAYER_GELU_C 0.044715f

static inline float layer_gelu(float z)
{
    float t = tanhf(LAYER_GELU_K * (z + LAYER_GELU_C * z * z * z));
    return 0.5f * z * (1.0f + t);
}

static inline float layer_gelu_grad(float z)
{
    float t = tanhf(LAYER_GELU_K * (z + LAYER_GELU_C * z * z * z));
    return 0.5f * (1.0f + t) +
           0.5f * z * (1.0f - t * t) * LAYER_GELU_K * (1.0f + 3.0f * LAYER_GELU_C * z * z);
}

#endif
