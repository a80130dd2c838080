/* train.h — the training loop and its run directory (orchestration only), and the
 * evaluation of a run's weights.  The command lines are in src/cli. */
#ifndef MPITRAIN_TRAIN_TRAIN_H
#define MPITRAIN_TRAIN_TRAIN_H

/* What `mpitrain train` was asked (the strings are the caller's). */
typedef struct {
    const char *job;                /* the INI job file */
    const char *resume;             /* "none" | "auto" | a checkpoint path */
    const char *const *sets;        /* nsets "sec.key=value" overrides, applied in order */
    int nsets;
} TrainOptions;

/* Train a job.  Initialises MPI (every rank calls it).  Returns the process exit code:
 * 0, 64-78 (sysexits.h) after printing the error on the rank that had it, 75 after a
 * clean checkpoint on one of run.stop_signals (default SIGTERM, SIGUSR1). */
int train_run(const TrainOptions *o);

/* Evaluate the weights of `target` (a run directory: its newest valid checkpoint, or a
 * checkpoint file) on the dataset `data` (NULL: the run's data.test) with `threads`
 * worker threads per rank (<= 0: the cores per rank).  Rank 0 prints one JSON line
 * {"checkpoint","data","samples","loss","accuracy"}.  Initialises MPI.  Returns the exit
 * code. */
int train_eval(const char *target, const char *data, int threads);

#endif
