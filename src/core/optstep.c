/* optstep.c — one optimizer step over slab ranges (optstep.h). */
#include "core/optstep.h"

#include <math.h>
#include <string.h>

void optstep_begin(OptStep *o, Device *dev, const OptimConf *oc, float lr, uint64_t t,
                   float *params, const float *grads, float *const *states, int nstates)
{
    memset(o, 0, sizeof *o);
    o->dev = dev;
    o->oc = oc;
    o->lr = lr;
    o->t = t;
    o->grad_scale = 1.0f;
    o->params = params;
    o->grads = grads;
    for (int k = 0; k < nstates && k < 2; k++) o->states[k] = states[k];
}

float optstep_clip(OptStep *o, const double *partial, size_t nblocks, float max_norm,
                   double *norm)
{
    if (max_norm <= 0) {
        *norm = NAN;
        return o->grad_scale = 1.0f;
    }
    return o->grad_scale = clip_scale(partial, nblocks, max_norm, norm);
}

void optstep_update(void *arg, size_t lo, size_t hi, size_t off)
{
    const OptStep *o = arg;
    float *st[2] = {o->states[0] ? o->states[0] + off : NULL,
                    o->states[1] ? o->states[1] + off : NULL};
    device_optim_update(o->dev, o->oc, o->lr, o->t, o->grad_scale, o->params + lo,
                        o->grads + lo, st, 0, hi - lo);
}
