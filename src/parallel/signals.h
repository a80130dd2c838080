/* signals.h — SIGTERM and SIGUSR1 (what Slurm's --signal, `scancel` and cloud VMs'
 * shutdown send) set a flag; the training loop checks it at every step boundary, all
 * ranks agree, write a checkpoint and exit 75.  A second signal while the checkpoint is
 * written changes nothing (the write protocol is tmp + fsync + verify + rename); a
 * third SIGTERM/SIGINT within the same stop restores the default action. */
#ifndef MPITRAIN_PARALLEL_SIGNALS_H
#define MPITRAIN_PARALLEL_SIGNALS_H

void signals_install(void);
/* Non-zero once SIGTERM or SIGUSR1 arrived (the signal number). */
int signals_pending(void);

#endif
