/* optstep.h — one optimizer step over ranges of the slabs, as the parallel strategies
 * call it: the step's learning rate, step number and gradient scale (global-norm
 * clipping) bound to the rank's slabs and its compact optimizer-state arrays.
 *
 *   OptStep os;
 *   optstep_begin(&os, dev, &oc, lr, t, params, grads, states);   grad scale 1
 *   optstep_clip(&os, partial, nblocks, max_norm, &norm);         optional: set the scale
 *   optstep_update(&os, lo, hi, off);    a StrategyUpdateFn: params/grads [lo, hi), state
 *                                        at [off, off + hi - lo) of the compact arrays
 * Each element's result depends only on that element (optim.h), so any cut of the slab
 * into ranges, on any number of threads, gives the same bits.  The caller owns every
 * array; the OptStep holds pointers only and needs no freeing. */
#ifndef MPITRAIN_CORE_OPTSTEP_H
#define MPITRAIN_CORE_OPTSTEP_H

#include <stddef.h>
#include <stdint.h>

#include "core/device.h"
#include "core/optim.h"

typedef struct {
    Device *dev;
    const OptimConf *oc;
    float lr;
    uint64_t t;             /* 1-based step number (Adam's bias correction) */
    float grad_scale;       /* 1, or the clipping scale */
    float *params;          /* (nparams) the slab the update writes */
    const float *grads;     /* (nparams) */
    float *states[2];       /* (state_len) compact state arrays, NULL past optim_nstates */
} OptStep;

void optstep_begin(OptStep *o, Device *dev, const OptimConf *oc, float lr, uint64_t t,
                   float *params, const float *grads, float *const *states, int nstates);
/* Global-norm clipping: sets the gradient scale from the partials of all nblocks clip
 * blocks (in block order) and returns it; *norm = the global gradient norm.  max_norm
 * <= 0: scale 1 and *norm = NaN. */
float optstep_clip(OptStep *o, const double *partial, size_t nblocks, float max_norm,
                   double *norm);
/* The update of [lo, hi) with its state at off (arg = the OptStep). */
void optstep_update(void *arg, size_t lo, size_t hi, size_t off);

#endif
