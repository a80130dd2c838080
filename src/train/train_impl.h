/* train_impl.h — the Trainer shared by the files of src/train. */
#ifndef MPITRAIN_TRAIN_TRAIN_IMPL_H
#define MPITRAIN_TRAIN_TRAIN_IMPL_H

#include <stdio.h>

#include "core/exec.h"
#include "core/model.h"
#include "core/optim.h"
#include "core/sched.h"
#include "io/ckpt.h"
#include "io/config.h"
#include "io/dataset.h"
#include "io/loader.h"
#include "io/metrics.h"
#include "io/trace.h"
#include "parallel/comm.h"
#include "parallel/dp.h"

#define EVAL_CHUNK 256 /* rows per eval chunk: fixed, so eval bits do not depend on N */

typedef struct {
    Config cfg;
    char *config_text;      /* resolved INI */
    Comm *comm;
    int rank, world;
    Model model;
    OptimConf oc;
    SchedConf sc;
    float *params;          /* (nparams); node-shared memory when dp_shm (owned by dp) */
    float *grads;           /* (nparams); node-shared memory when dp_shm (owned by dp) */
    float *states[2];       /* (dp_state_len) each: this rank's optimizer-state pieces */
    int nstates;
    Dataset *train_ds, *test_ds;
    Loader *loader;
    Exec *exec;
    Dp *dp;
    int B, M, mb_rows, mb_lo, mb_hi, threads;
    int n_invariant;        /* 1 when the bits equal those of N = 1 */
    uint64_t steps_per_epoch, total_steps;
    uint64_t step;          /* steps completed */
    char run_dir[1024], ckpt_dir[1200];
    Metrics *metrics;       /* rank 0 */
    Trace *trace;           /* run.trace: every rank */
    CkptAsync *ckpt_async;  /* rank 0, when checkpoint.async */
    int ckpt_fence;         /* rank 0: a deferred snapshot is being copied */
    double ckpt_pause;      /* rank 0: training pause of that checkpoint so far */
    double *agree_buf;      /* (3 + world) per-step agreement */
    double *mb_loss;        /* (M) disjoint contributions, allreduced */
    double *clip_partial;   /* (clip_nblocks) */
    /* eval */
    float *eval_x;
    int32_t *eval_y;
    double *eval_buf;       /* (2 * chunks) losses then correct counts */
    int eval_cap_rows;
    char mode_desc[64];
} Trainer;

/* evaluate.c: evaluate params on ds (rows split in EVAL_CHUNK chunks over ranks). Every
 * rank gets the same loss (mean) and accuracy.  Returns 0 or a read error (agreed). */
int trainer_evaluate(Trainer *t, Dataset *ds, double *loss, double *accuracy);

#endif
