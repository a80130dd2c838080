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
    atomic_init(&o->bad, UINT64_MAX);
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

/* Keep element i of array a, value v, if it comes before the one recorded (rare: a
 * failing step). */
static void record_bad(OptStep *o, size_t i, int a, float v)
{
    uint64_t kind = isnan(v) ? 0 : v > 0 ? 1 : 2;
    uint64_t code = ((uint64_t)i * 4 + (uint64_t)a) * 4 + kind;
    uint64_t cur = atomic_load_explicit(&o->bad, memory_order_relaxed);
    while (code < cur &&
           !atomic_compare_exchange_weak_explicit(&o->bad, &cur, code, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
}

/* The update of [lo, lo + n) wrote a NaN or inf (the optimizer's verdict): find the
 * first one of each array (the rare path of a failing step). */
static void locate_bad(OptStep *o, size_t lo, size_t n, size_t off)
{
    size_t i = device_first_nonfinite(o->dev, o->params + lo, n);
    if (i < n) record_bad(o, lo + i, 0, o->params[lo + i]);
    for (int k = 0; k < 2 && o->states[k]; k++) {
        size_t j = device_first_nonfinite(o->dev, o->states[k] + off, n);
        if (j < n) record_bad(o, lo + j, 1 + k, o->states[k][off + j]);
    }
}

void optstep_update(void *arg, size_t lo, size_t hi, size_t off)
{
    OptStep *o = arg;
    float *st[2] = {o->states[0] ? o->states[0] + off : NULL,
                    o->states[1] ? o->states[1] + off : NULL};
    if (device_optim_update(o->dev, o->oc, o->lr, o->t, o->grad_scale, o->params + lo,
                            o->grads + lo, st, 0, hi - lo))
        locate_bad(o, lo, hi - lo, off);
}

int optstep_nonfinite(const OptStep *o, size_t *index, int *array, float *value)
{
    uint64_t b = atomic_load_explicit(&o->bad, memory_order_relaxed);
    if (b == UINT64_MAX) return 0;
    static const float kinds[3] = {NAN, INFINITY, -INFINITY};
    *value = kinds[b % 4];
    *array = (int)(b / 4 % 4);
    *index = (size_t)(b / 16);
    return 1;
}
