/* sched.h — learning-rate schedules. */
#ifndef MPITRAIN_CORE_SCHED_H
#define MPITRAIN_CORE_SCHED_H

#include <stdint.h>

typedef enum { SCHED_CONSTANT, SCHED_STEP, SCHED_COSINE } SchedKind;

typedef struct {
    SchedKind kind;
    float lr;            /* base learning rate */
    uint64_t warmup;     /* linear warmup steps from lr/warmup to lr (all kinds) */
    uint64_t step_size;  /* SCHED_STEP: multiply by gamma every step_size steps */
    float gamma;
    float min_lr;        /* SCHED_COSINE: floor reached at total_steps */
} SchedConf;

/* lr for 0-based step t of total_steps. Pure function. */
float sched_lr(const SchedConf *c, uint64_t t, uint64_t total_steps);

#endif
