/* sched.c — learning-rate schedules (sched.h).  Computed in double, rounded once; the
 * power and the cosine are mathf_powi and mathf_cospi (core/mathf.h), not libm.
 *
 *   warmup (all kinds), t < warmup:  lr * (t + 1) / warmup
 *   then, with s = t - warmup (the schedule proper starts after the warmup):
 *   constant: lr
 *   step:     lr * gamma^floor(s / step_size)          (step_size 0: no decay)
 *   cosine:   min_lr + (lr - min_lr) * (1 + cos(pi * min(1, s / (total - warmup)))) / 2
 *             (= lr at s = 0, min_lr from t = total_steps on; total <= warmup: lr) */
#include "core/sched.h"

#include "core/mathf.h"

float sched_lr(const SchedConf *c, uint64_t t, uint64_t total_steps)
{
    const double lr = c->lr;
    if (c->warmup > 0 && t < c->warmup) return (float)(lr * (double)(t + 1) / (double)c->warmup);
    const uint64_t s = t - c->warmup;
    switch (c->kind) {
    case SCHED_CONSTANT: return c->lr;
    case SCHED_STEP:
        if (c->step_size == 0) return c->lr;
        return (float)(lr * mathf_powi((double)c->gamma, s / c->step_size));
    case SCHED_COSINE: {
        if (total_steps <= c->warmup) return c->lr;
        double f = (double)s / (double)(total_steps - c->warmup);
        if (f > 1.0) f = 1.0;
        const double lo = c->min_lr;
        return (float)(lo + (lr - lo) * 0.5 * (1.0 + mathf_cospi(f)));
    }
    }
    return c->lr;
}
