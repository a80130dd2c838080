/* train.h — the training loop and its run directory (orchestration only). */
#ifndef MPITRAIN_TRAIN_TRAIN_H
#define MPITRAIN_TRAIN_TRAIN_H

/* `mpitrain train JOB.ini [--set sec.key=value]... [--resume auto|none|PATH]`
 * (argv[0] = "train").  Initialises MPI.  Returns the process exit code (0, 64-78, 75
 * after a clean checkpoint on SIGTERM/SIGUSR1). */
int train_main(int argc, char **argv);

/* `mpitrain eval RUN_DIR|CHECKPOINT [--data DIR] [--set ...]`: evaluate the weights of a
 * run (its newest valid checkpoint) on a dataset (default: the run's data.test). */
int eval_main(int argc, char **argv);

/* `mpitrain bench gemm ...` (argv[0] = "gemm"): SGEMM rate of a model's shapes. */
int bench_gemm_main(int argc, char **argv);

#endif
