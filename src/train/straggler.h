/* straggler.h — straggler injection for experiments (run.slow = RANK:MS[:EVERY]): one
 * rank sleeps MS milliseconds in its step every EVERY-th step, so anyone can reproduce a
 * slow-worker experiment.  Off (the default) costs nothing. */
#ifndef MPITRAIN_TRAIN_STRAGGLER_H
#define MPITRAIN_TRAIN_STRAGGLER_H

#include <stdint.h>

typedef struct {
    int rank;       /* -1: off */
    double ms;
    uint64_t every; /* >= 1 */
} Straggler;

/* Parse run.slow ("" = off) for a job of `world` ranks.  0, or MT_EX_CONFIG naming the
 * key, the value and the form. */
int straggler_parse(const char *spec, int world, Straggler *out);
/* On rank `rank` at step `step`: sleep if this is the slow rank's step. */
void straggler_step(const Straggler *s, int rank, uint64_t step);

#endif
