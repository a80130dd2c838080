/* train_impl.h — the Trainer shared by the files of src/train (nobody else uses it).
 *
 *   train.c         train_run: the phases and the step loop (docs/design.md §4)
 *   train_setup.c   set-up and tear-down: config, split, data, model, strategy, slabs,
 *                   run directory, executor, loader
 *   train_step.c    one training step through the parallel strategy
 *   train_ckpt.c    checkpoint save and resume
 *   train_report.c  the banner, metrics lines, progress, eval lines
 *   evaluate.c      evaluation over a dataset split across ranks
 *   eval_run.c      `mpitrain eval`: the weights of a checkpoint on a dataset */
#ifndef MPITRAIN_TRAIN_TRAIN_IMPL_H
#define MPITRAIN_TRAIN_TRAIN_IMPL_H

#include <stdio.h>

#include "core/device.h"
#include "core/exec.h"
#include "core/model.h"
#include "core/optim.h"
#include "core/optstep.h"
#include "core/sched.h"
#include "io/ckpt.h"
#include "io/config.h"
#include "io/dataset.h"
#include "io/loader.h"
#include "io/metrics.h"
#include "io/trace.h"
#include "parallel/comm.h"
#include "parallel/strategy.h"
#include "train/progress.h"
#include "train/straggler.h"
#include "train/train.h"

#define EVAL_CHUNK 256 /* rows per eval chunk: fixed, so eval bits do not depend on N */

/* Metrics of the steps since the last train line (rank 0 prints them). */
typedef struct {
    double t0;          /* start of the window */
    double wait, compute, exposed, comm; /* seconds summed over its steps */
    uint64_t steps;
    /* the strategy's figures (StrategyStats) summed over the window's steps */
    int has_stats;
    double sent, recv, swait, busy, stale_sum, shares;
    int stale_min, stale_max, server;
} TrainWindow;

typedef struct {
    Config cfg;
    char *config_text;      /* resolved INI (owned) */
    Comm *comm;
    Device *dev;            /* where the slabs live (train.device; "cpu") */
    int rank, world;
    Model model;
    OptimConf oc;
    SchedConf sc;
    float *params;          /* (nparams) on dev, or the strategy's (strategy_owns_params) */
    float *grads;           /* (nparams) on dev, or the strategy's shared slab */
    float *states[2];       /* (strategy_state_len) each: this rank's optimizer-state pieces */
    int nstates;
    Dataset *train_ds, *test_ds;
    Loader *loader;
    Exec *exec;
    const StrategyOps *sops;
    StrategyConf sconf;     /* the [parallel] section (strings point into cfg) */
    Strategy *strategy;
    StrategySplit split;    /* this rank's micro-batches [split.mb_lo, split.mb_hi) */
    int *mb_rank;           /* (M) the rank that computes each micro-batch */
    Straggler slow;         /* run.slow */
    int B, M, mb_rows, threads;
    uint64_t steps_per_epoch, total_steps;
    uint64_t step;          /* steps completed */
    char run_dir[1024], ckpt_dir[1200];
    Metrics *metrics;       /* rank 0 */
    Trace *trace;           /* run.trace: every rank */
    CkptAsync *ckpt_async;  /* rank 0, when checkpoint.async */
    int ckpt_fence;         /* rank 0: a deferred snapshot is being copied */
    double ckpt_pause;      /* rank 0: training pause of that checkpoint so far */
    double t_last_ckpt;     /* when the last checkpoint was written (now_s) */
    double *mb_loss;        /* (M) disjoint contributions, allreduced */
    double *clip_partial;   /* (clip_nblocks) */
    Progress prog;
    TrainWindow win;
    /* agreements (train.c): every step for a lockstep strategy, else at boundaries */
    int agree_every;        /* 1, or train.log_every */
    int agree_now;          /* the step in progress ends in an agreement */
    int pend_code;          /* a failure of this rank since the last agreement, or 0 */
    int pend_data;          /* 1: it is a data error (reported before the step) */
    char pend_msg[1024];    /* its message */
    double last_loss;       /* the last agreed loss (the progress line between them) */
    /* eval */
    float *eval_x;
    int32_t *eval_y;
    double *eval_buf;       /* (2 * chunks) losses then correct counts */
    int eval_cap_rows;
} Trainer;

/* What a job needs, as `train` and `check` (train_check.c) both check it, without MPI.
 * train_setup.c.  The job's config: defaults, the file o->job, the --set overrides in
 * order, config_validate.  0 or MT_EX_NOINPUT / MT_EX_CONFIG (err_msg() names the file,
 * line and key). */
int train_config_load(Config *c, const TrainOptions *o);
/* The strategy of c (parallel.mode) and its split of train.micro_batches over `world`
 * ranks: *ops, *sconf (strings point into c), rank's *split, and when mb_rank is not
 * NULL the rank of each micro-batch (M ints).  0 or MT_EX_CONFIG naming the keys. */
int train_plan_split(const Config *c, int rank, int world, StrategyConf *sconf,
                     const StrategyOps **ops, StrategySplit *split, int *mb_rank);
/* The datasets fit the job: test (NULL: none) like train (sample size, classes),
 * model.input, at least one batch of samples.  0 or MT_EX_DATAERR naming the keys. */
int train_check_data(const Config *c, const DatasetInfo *train, const DatasetInfo *test);
/* model.layers for the dataset's samples and classes into *m (model_free).  0 or
 * MT_EX_CONFIG ("model.layers: " and the model's message). */
int train_build_model(Model *m, const Config *c, const DatasetInfo *di);
/* train.steps, or train.epochs * steps_per_epoch when it is 0. */
uint64_t train_total_steps(const Config *c, uint64_t steps_per_epoch);

/* All ranks agree on `st`; the lowest failing rank prints its message, rank 0 names it
 * and the phase.  Returns the agreed code (0 when every rank succeeded).  train_setup.c */
int train_agree(Trainer *t, int st, const char *phase);

/* Zero *t, create the communicator (initialises MPI), set rank and world.  Returns 0 or
 * the error code (printed).  train_setup.c */
int train_start(Trainer *t);

/* train_setup.c: every phase ends in train_agree, so an error on one rank takes all
 * ranks out together.  Each returns the agreed code. */
int train_setup_config(Trainer *t, const TrainOptions *o);  /* config, optimizer, split */
int train_setup_model(Trainer *t);   /* data, model, strategy, slabs (not the values) */
int train_setup_run(Trainer *t, int resumed);  /* run directory, metrics, trace, executor, loader */
/* Free everything the Trainer owns, the communicator last (any phase, train_start
 * included, may have failed). */
void train_teardown(Trainer *t);

/* train_ckpt.c.  Resume per --resume (none | auto | PATH): *resumed = 1 when the
 * parameters and optimizer state came from a checkpoint.  Not agreed (the caller does). */
int train_resume(Trainer *t, const char *how, int *resumed);
/* Save the current state (rank 0 writes; sync = 1: wait for the file).  Agreed. */
int train_ckpt_save(Trainer *t, int sync);
/* Before the step's update: wait for an async snapshot being copied from the slabs. */
void train_ckpt_fence(Trainer *t, uint64_t step);

/* train_step.c: one step on batch b (NULL on a rank that does not compute, or that
 * keeps a data error for the next agreement: it computes nothing and pushes zeros):
 * forward/backward, reduction, update.  *loss = the global batch's mean loss (NaN when
 * the step ends in no agreement, t->agree_now = 0), *norm = the gradient norm (NaN
 * without clipping).  Returns 0 or MT_EX_SOFTWARE when the loss is not finite or an
 * update wrote a NaN or inf (every rank returns it, reported by train_report_outcome). */
int train_step(Trainer *t, uint64_t step, Batch *b, double *loss, double *norm);

/* train_report.c */
/* Keep this rank's first failure since the last agreement (later ones are dropped). */
void train_pend(Trainer *t, int code, int data, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* After a step that ends in no agreement: this rank's finite checks (the loss of its
 * micro-batches, its update), kept with train_pend for the next agreement. */
void train_report_local(Trainer *t, uint64_t step, const OptStep *os);
void train_report_banner(Trainer *t, int cores);
/* After step t->step (completed): the progress line, and a metrics line every
 * train.log_every steps (rank 0); starts a new window after a line. */
void train_report_step(Trainer *t, uint64_t epoch, double loss, float lr, double norm);
void train_report_eval(Trainer *t, uint64_t epoch, double loss, double acc);
void train_report_ckpt(Trainer *t, double pause, int async);
/* After each step: add the strategy's figures of the step to the window. */
void train_report_stats(Trainer *t);
/* logs the gemm plan (core/gemm_plan.h; rank 0's, when rank 0 computes) and saves it to
 * the plan cache; called by the ranks that compute */
void train_report_plan(Trainer *t);
/* The loss of step `step` is not finite: name the first bad micro-batch and its rank. */
void train_report_diverged(Trainer *t, uint64_t step, double loss);
/* After the step's update (os: the step's optimizer, whose finite check saw every range
 * this rank updated): one agreement of all ranks (comm_agree_flags) that sums the
 * micro-batch losses t->mb_loss and collects each rank's verdict (a failure kept by
 * train_pend counts, and its message is printed).  *loss = the global batch's mean loss
 * (canonical tree).  Returns 0, or MT_EX_SOFTWARE on every rank when
 * the loss is not finite (train_report_diverged) or some rank's update wrote a NaN or
 * inf: the lowest such rank names the step, itself, the layer/parameter and element. */
int train_report_outcome(Trainer *t, uint64_t step, const OptStep *os, double *loss);
/* Before a checkpoint is written (rank 0): 0 when the parameters and the whole optimizer
 * state arrays full[0, t->nstates) (nparams floats each) are finite, else MT_EX_SOFTWARE
 * with err_set() naming the step, the array, the layer and element (write nothing). */
int train_report_check_state(Trainer *t, float *const *full);

/* evaluate.c: evaluate params on ds (rows split in EVAL_CHUNK chunks over ranks). Every
 * rank gets the same loss (mean) and accuracy.  Returns 0 or a read error (agreed). */
int trainer_evaluate(Trainer *t, Dataset *ds, double *loss, double *accuracy);

#endif
