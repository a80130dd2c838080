/* cli.h — the subcommands of `mpitrain` (src/main.c dispatches).  Each takes argv with
 * argv[0] = its own name, parses its options, calls the modules, and returns the
 * process exit code (0 done, 64-78 as in sysexits.h; 75 after a clean checkpoint on a
 * stop signal).  Errors are printed before returning. */
#ifndef MPITRAIN_CLI_CLI_H
#define MPITRAIN_CLI_CLI_H

/* `train JOB.ini [--set sec.key=value]... [--resume auto|none|PATH]` (train_cmd.c).
 * Initialises MPI (every rank runs it). */
int cli_train(int argc, char **argv);

/* `eval RUN_DIR|CHECKPOINT [--data DIR] [--threads T]` (eval_cmd.c): evaluate the weights
 * of a run (its newest valid checkpoint) on a dataset (default: the run's data.test). */
int cli_eval(int argc, char **argv);

/* `data import|info|verify ...` (dataset_cli.c; `mpitrain data --help` lists options). */
int dataset_cli_main(int argc, char **argv);

/* `ckpt info PATH [--config]` and `ckpt verify PATH...` (ckpt_cli.c).  PATH may be a
 * checkpoint directory (info: the file `latest` names; verify: every step-*.h5 in it).
 * 0, 64 usage, 65 corrupt, 66 missing. */
int ckpt_cli_main(int argc, char **argv);

/* `bench ...` (bench_cmd.c): runs build/mpitrain-bench (beside this binary) with the
 * same arguments; 69-style failure (MT_EX_SOFTWARE) if it is not there. */
int cli_bench(int argc, char **argv);

#endif
