/* cli.h — the subcommands of `mpitrain` (src/main.c dispatches).  Each takes argv with
 * argv[0] = its own name, parses its options, calls the modules, and returns the
 * process exit code (0 done, 64-78 as in sysexits.h; 75 after a clean checkpoint on a
 * stop signal).  Errors are printed before returning. */
#ifndef MPITRAIN_CLI_CLI_H
#define MPITRAIN_CLI_CLI_H

#include "train/train.h"

/* `train JOB.ini [--set sec.key=value]... [--resume auto|none|PATH]` (train_cmd.c).
 * Initialises MPI (every rank runs it). */
int cli_train(int argc, char **argv);

/* `check JOB.ini [--set sec.key=value]... [--ranks N]` (check_cmd.c): what `train` checks
 * before its first step, for N ranks (default 1), without MPI; exit codes as `train`. */
int cli_check(int argc, char **argv);

/* The --set option of train and check at argv[*i] (`--set sec.key=value`, `-s ...`,
 * `--set=sec.key=value`): appended to o->sets (sets: room for CLI_MAX_SETS, the array
 * o->sets then points to).  Returns 1 when argv[*i] is such an option (*i advanced past
 * its value; a missing value or too many: *st = MT_EX_USAGE after err_set()), 0 when it
 * is another argument (train_cmd.c). */
#define CLI_MAX_SETS 64
int cli_set_arg(int argc, char **argv, int *i, TrainOptions *o, const char **sets, int *st);

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
