/* signals.h — the stop signals (run.stop_signals; default SIGTERM and SIGUSR1: what
 * Slurm's --signal, `scancel`, a time limit and a cloud VM's shutdown send) set a flag;
 * the training loop checks it at every step boundary, all ranks agree, write a
 * checkpoint and exit 75.  A second signal while the checkpoint is written changes
 * nothing (the write protocol is tmp + fsync + verify + rename); a third SIGTERM or
 * SIGINT within the same stop restores the default action (HUP, USR1 and USR2 never do:
 * wrappers resend them). */
#ifndef MPITRAIN_PARALLEL_SIGNALS_H
#define MPITRAIN_PARALLEL_SIGNALS_H

/* The set when run.stop_signals is not given. */
#define SIGNALS_DEFAULT "TERM USR1"

/* Handle the signals named in `names` (separated by spaces or commas, each one of TERM
 * INT HUP USR1 USR2, case-insensitive, "SIG" prefix optional; NULL or "" =
 * SIGNALS_DEFAULT) and give the others of that set that an earlier call handled back
 * their default action.  Returns 0, or MT_EX_CONFIG with err_msg() naming the bad name
 * and the allowed ones (nothing changed then).  Call it from the main thread. */
int signals_install(const char *names);
/* Non-zero once one of the handled signals arrived (the first one's number). */
int signals_pending(void);

#endif
