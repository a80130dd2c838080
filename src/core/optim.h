/* optim.h — optimizers over ranges of the flat slabs.
 *
 * An update works on [lo, hi) of the slabs so that ZeRO-1 and parameter servers can
 * update a shard; the result for an element depends only on that element (and on
 * the step's lr and grad_scale), so updating shards gives the same bits as updating
 * the whole slab.  Weight decay is decoupled (AdamW-style for both: p -= lr*wd*p)
 * and applies to every parameter. */
#ifndef MPITRAIN_CORE_OPTIM_H
#define MPITRAIN_CORE_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "core/slab.h"

typedef enum { OPTIM_SGD, OPTIM_ADAMW } OptimKind;

typedef struct {
    OptimKind kind;
    float momentum;     /* sgd; 0 = plain sgd */
    int nesterov;       /* sgd with momentum */
    float beta1, beta2, eps; /* adamw */
    float weight_decay; /* decoupled */
} OptimConf;

/* Number of state slabs: sgd 0 (1 with momentum), adamw 2 ("m", "v"). */
int optim_nstates(const OptimConf *c);
/* Name of state slab i ("momentum", "m", "v"): checkpoint array names. */
const char *optim_state_name(const OptimConf *c, int i);

/* One step t (1-based, for Adam's bias correction) on [lo, hi):
 *   g = grads[i] * grad_scale   (grad_scale carries global-norm clipping)
 *   sgd:   buf = momentum*buf + g;  d = nesterov ? g + momentum*buf : buf (or g)
 *          p = p - lr*wd*p - lr*d
 *   adamw: m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g
 *          p = p - lr*wd*p - lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps)
 * states[k] are the state slabs (full length; only [lo, hi) is touched).  Returns 1 when
 * a value it wrote (a parameter or a state element of [lo, hi)) is NaN or ±inf, else 0:
 * a check made on the values in registers, which costs next to nothing (optim.c). */
int optim_update(const OptimConf *c, float lr, uint64_t t, float grad_scale, float *params,
                 const float *grads, float *const *states, size_t lo, size_t hi);

/* Global-norm clipping works on the slab's blocks (slab.h) so that the norm's bits do
 * not depend on how the slab is sharded: partial[j] = sum of g^2 (double, in element
 * order) over block j = [j*CLIP_BLOCK, (j+1)*CLIP_BLOCK) ∩ [0, n).  Shard boundaries
 * used with clipping must be multiples of CLIP_BLOCK. */
#define CLIP_BLOCK SLAB_BLOCK /* clipping's name for the slab block */
size_t clip_nblocks(size_t n);
/* Fill partial[] for the blocks in [lo, hi) (lo, hi multiples of CLIP_BLOCK, or hi = n). */
void clip_block_sumsq(const float *grads, size_t n, size_t lo, size_t hi, double *partial);
/* norm = sqrt(sum of partial[0..nblocks) in order); returns the grad scale
 * min(1, max_norm / (norm + 1e-6)) (1 when max_norm <= 0) and writes *norm_out. */
float clip_scale(const double *partial, size_t nblocks, float max_norm, double *norm_out);

#endif
