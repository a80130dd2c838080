/* train.h — the training loop and its run directory (orchestration only), the pre-flight
 * check of a job, and the evaluation of a run's weights.  The command lines are in
 * src/cli. */
#ifndef MPITRAIN_TRAIN_TRAIN_H
#define MPITRAIN_TRAIN_TRAIN_H

#include <stdio.h>

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

/* `mpitrain check`: everything `train` checks before its first step, by the same code,
 * without MPI and without training: the job file and o's --set overrides, the split of
 * train.micro_batches for `ranks` ranks (>= 1), both datasets' index.h5 and every shard
 * header, the datasets against each other and the model, the model.  Prints a summary
 * to `out` when all is well.  Returns the exit code `train` would exit with for the same
 * problem (0 when none), after printing the error (stderr). */
int train_check(const TrainOptions *o, int ranks, FILE *out);

/* Evaluate the weights of `target` (a run directory: its newest valid checkpoint, or a
 * checkpoint file) on the dataset `data` (NULL: the run's data.test) with `threads`
 * worker threads per rank (<= 0: the cores per rank).  Rank 0 prints one JSON line
 * {"checkpoint","data","samples","loss","accuracy"}.  Initialises MPI.  Returns the exit
 * code. */
int train_eval(const char *target, const char *data, int threads);

#endif
