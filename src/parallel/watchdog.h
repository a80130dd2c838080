/* watchdog.h — bounds every step (run.step_timeout_s).  A thread checks once a second
 * how long the current step has been in its current phase; past the limit it prints the
 * step, the phase (data, compute, allreduce, eval, checkpoint) and the rank, and aborts
 * the whole job (MPI_Abort through the abort hook), so a stuck collective or a hung
 * rank never hangs the job. */
#ifndef MPITRAIN_PARALLEL_WATCHDOG_H
#define MPITRAIN_PARALLEL_WATCHDOG_H

#include <stdint.h>

/* timeout_s <= 0: no watchdog. */
void watchdog_start(double timeout_s, int rank);
/* Mark progress: the step and what it is doing now (a string literal). */
void watchdog_step(uint64_t step, const char *phase);
void watchdog_stop(void);

#endif
