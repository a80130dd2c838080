/* optstep.h — one optimizer step over ranges of the slabs, as the parallel strategies
 * call it: the step's learning rate, step number and gradient scale (global-norm
 * clipping) bound to the rank's slabs and its compact optimizer-state arrays.
 *
 *   OptStep os;
 *   optstep_begin(&os, dev, &oc, lr, t, params, grads, states);   grad scale 1
 *   optstep_clip(&os, partial, nblocks, max_norm, &norm);         optional: set the scale
 *   optstep_update(&os, lo, hi, off);    a StrategyUpdateFn: params/grads [lo, hi), state
 *                                        at [off, off + hi - lo) of the compact arrays
 *   optstep_nonfinite(&os, &index, &array)   after the step: did an update write NaN/inf?
 * Each element's result depends only on that element (optim.h), so any cut of the slab
 * into ranges, on any number of threads, gives the same bits.  The caller owns every
 * array; the OptStep holds pointers only and needs no freeing.
 *
 * The finite check: the optimizer reports whether any value it wrote (parameters,
 * state) is NaN or inf, from the values in its registers (optim.h); only then does
 * optstep_update scan the range (device_first_nonfinite) for the first bad element.  A
 * non-finite gradient always shows there (sgd: p - lr*NaN, p - lr*inf; adamw: inf/inf),
 * and so does a finite one whose square or step overflows.  The first bad element
 * (lowest slab index) is kept, whatever the threads' order. */
#ifndef MPITRAIN_CORE_OPTSTEP_H
#define MPITRAIN_CORE_OPTSTEP_H

#include <stdatomic.h>
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
    _Atomic uint64_t bad;   /* first non-finite value written: (slab index * 4 + array
                               (0 params, 1 + k state k)) * 4 + kind (0 NaN, 1 inf,
                               2 -inf); UINT64_MAX = none yet */
} OptStep;

void optstep_begin(OptStep *o, Device *dev, const OptimConf *oc, float lr, uint64_t t,
                   float *params, const float *grads, float *const *states, int nstates);
/* Global-norm clipping: sets the gradient scale from the partials of all nblocks clip
 * blocks (in block order) and returns it; *norm = the global gradient norm.  max_norm
 * <= 0: scale 1 and *norm = NaN. */
float optstep_clip(OptStep *o, const double *partial, size_t nblocks, float max_norm,
                   double *norm);
/* The update of [lo, hi) with its state at off (arg = the OptStep), and the finite check
 * of what it wrote.  Safe to call from several threads at once on disjoint ranges. */
void optstep_update(void *arg, size_t lo, size_t hi, size_t off);
/* After every update of the step has returned: 0 when all values the updates wrote are
 * finite; else 1 with *index = the slab index of the first non-finite one, *array =
 * 0 (parameters) or 1 + k (optimizer state k, optim_state_name) and *value = what it
 * is (NaN, inf or -inf). */
int optstep_nonfinite(const OptStep *o, size_t *index, int *array, float *value);

#endif
