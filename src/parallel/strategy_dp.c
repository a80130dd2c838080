/* strategy_dp.c — data parallel (parallel.mode = allreduce) as a parallel strategy: the
 * engine of dp.c (buckets, overlap, deterministic or library reduction, ZeRO-1,
 * node-shared memory) behind StrategyOps, with the policy that belongs to it: which
 * micro-batches a rank computes, when the optimizer can be fused into the reduction,
 * when node-shared memory pays. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "parallel/dp.h"
#include "parallel/strategy.h"

typedef struct {
    Strategy base;
    Comm *comm;
    Dp *dp;
    size_t nparams;
    int zero;
    char reduce[16];
    char mode[64];
    /* the step in progress */
    StrategyStep step;
    float *params;
    int fused; /* the update was fused into the executor or the reduction */
} DpStrategy;

/* A piece of the rank's shard handed to the executor's threads. */
typedef struct {
    const StrategyStep *step;
    size_t lo, off;
} PieceJob;

static DpStrategy *dps(Strategy *s) { return (DpStrategy *)s; }
static const DpStrategy *cdps(const Strategy *s) { return (const DpStrategy *)s; }

/* Rank r of N computes micro-batches [r*M/N, (r+1)*M/N): with N a power of two dividing
 * M its local sum is a subtree of the canonical tree (docs/determinism.md). */
static int dp_plan(const StrategyConf *c, int rank, int world, int M, StrategySplit *out)
{
    if (world > M)
        return err_set(MT_EX_CONFIG,
                       "%d ranks but train.micro_batches = %d: every rank needs at least one "
                       "micro-batch; run with at most %d ranks or --set train.micro_batches=%d "
                       "(a multiple of the rank count that divides train.batch)",
                       world, M, M, world);
    out->mb_lo = (int)((int64_t)rank * M / world);
    out->mb_hi = (int)((int64_t)(rank + 1) * M / world);
    out->computes = 1;
    out->worker = rank;
    out->workers = world;
    int pow2 = (world & (world - 1)) == 0;
    out->n_invariant = pow2 && M % world == 0 && !strcmp(c->reduce, "deterministic");
    return 0;
}

static int dp_screate(Comm *comm, const StrategyConf *c, size_t nparams, int nstates,
                      Strategy **out)
{
    (void)nstates;
    DpStrategy *s = xcalloc(1, sizeof *s);
    s->base.ops = &strategy_dp_ops;
    s->comm = comm;
    s->nparams = nparams;
    s->zero = c->zero;
    snprintf(s->reduce, sizeof s->reduce, "%s", c->reduce);
    snprintf(s->mode, sizeof s->mode, "allreduce/%s%s", c->reduce, c->zero ? "/zero1" : "");
    DpConf dc = {
        .reduce = !strcmp(c->reduce, "fast") ? DP_REDUCE_FAST : DP_REDUCE_DETERMINISTIC,
        .bucket_mb = c->bucket_mb,
        .zero = c->zero,
        /* auto: shared memory from 3 ranks per node on.  Measured on the 2-vCPU VM
         * (results/train-throughput.csv): 4 ranks +22 % over messages, 2 ranks -6 %
         * (with two ranks the message path moves the same bytes, in bulk kernel copies,
         * and each rank keeps its parameters in its own cache) */
        .shm = !strcmp(c->shm, "true") || (!strcmp(c->shm, "auto") && comm->local_size >= 3),
        .nparams = nparams,
    };
    s->dp = dp_create(comm, &dc);
    *out = &s->base;
    return 0;
}

static void dp_sdestroy(Strategy *s)
{
    dp_destroy(dps(s)->dp);
    free(s);
}

static void dp_describe(const Strategy *s, char *buf, size_t n)
{
    const DpStrategy *d = cdps(s);
    snprintf(buf, n, "reduce = %s%s", d->reduce,
             dp_shm(d->dp) ? " through node-shared memory (one parameter slab per node, "
                             "optimizer sharded)"
             : d->zero && d->comm->size > 1 ? ", ZeRO-1" : "");
}

static const char *dp_mode(const Strategy *s) { return cdps(s)->mode; }

static float *dp_sgrads(Strategy *s) { return dp_shared_grads(dps(s)->dp); }

static void dp_share_params(Strategy *s, float **params)
{
    DpStrategy *d = dps(s);
    if (!dp_shm(d->dp)) return;
    /* from now on the node trains one parameter slab */
    float *sp = dp_shared_params(d->dp);
    if (d->comm->local_rank == 0) memcpy(sp, *params, d->nparams * sizeof(float));
    comm_barrier(d->comm);
    *params = sp;
}

static int dp_owns_params(const Strategy *s, const float *p)
{
    return p && p == dp_shared_params(cdps(s)->dp);
}

static size_t dp_sstate_len(const Strategy *s) { return dp_state_len(cdps(s)->dp); }
static int dp_ssharded(const Strategy *s) { return dp_sharded(cdps(s)->dp); }

/* one rank: the executor's chunk of the whole slab is final; its state is at the same
 * offset (one rank holds the whole state) */
static void chunk_done(void *arg, size_t a, size_t b)
{
    const StrategyStep *st = arg;
    st->update(st->update_arg, a, b, a);
}

static void dp_step_begin_s(Strategy *s, const StrategyStep *step, float *params, float *grads,
                            StrategyHooks *h)
{
    DpStrategy *d = dps(s);
    d->step = *step;
    d->params = params;
    /* one rank and no clipping: nothing needs the whole gradient before the update, so
     * the optimizer runs on each chunk as soon as its gradient is final (fused with the
     * executor's last tree sum, spread over its threads) */
    int fused_exec = d->comm->size == 1 && !step->global && !step->hold;
    /* sharded deterministic reduction (node-shared memory, or ZeRO-1 over messages)
     * and no clipping: each piece of the rank's shard is updated as soon as its sum
     * over the ranks is formed */
    int can = dp_can_fuse_update(d->dp);
    int fused_dp = can && !step->global;
    if (can) dp_set_update(d->dp, fused_dp ? step->update : NULL, step->update_arg, params);
    d->fused = fused_exec || fused_dp;
    memset(h, 0, sizeof *h);
    h->chunk_done = fused_exec ? chunk_done : NULL;
    h->chunk_arg = fused_exec ? &d->step : NULL;
    dp_step_begin(d->dp, grads);
    if (d->comm->size > 1) {
        h->ready = dp_grad_ready;
        h->poll = dp_poll;
        h->arg = d->dp;
    }
}

static void dp_reduce_end(Strategy *s) { dp_step_end(dps(s)->dp); }

static void dp_sclip(Strategy *s, const float *grads, double *partial)
{
    dp_clip_partials(dps(s)->dp, grads, partial);
}

/* StrategyRangeFn: [a, b) relative to the piece j->lo, state at j->off */
static void piece_range(void *arg, size_t a, size_t b)
{
    const PieceJob *j = arg;
    j->step->update(j->step->update_arg, j->lo + a, j->lo + b, j->off + a);
}

static void dp_update(Strategy *s, StrategyRunFn run, void *runner)
{
    DpStrategy *d = dps(s);
    for (int i = 0; i < dp_npieces(d->dp) && !d->fused; i++) {
        size_t hi;
        PieceJob j = {.step = &d->step};
        dp_piece(d->dp, i, &j.lo, &hi, &j.off);
        run(runner, hi - j.lo, piece_range, &j);
    }
    dp_allgather_params(d->dp, d->params);
}

static double dp_sexposed(const Strategy *s) { return dp_exposed_s(cdps(s)->dp); }
static double dp_scomm(const Strategy *s) { return dp_comm_s(cdps(s)->dp); }

static void dp_sgather(Strategy *s, float *const *states, float *const *full, int n)
{
    dp_gather_states(dps(s)->dp, states, full, n);
}

static void dp_sscatter(const Strategy *s, float *const *full, float *const *states, int n)
{
    dp_scatter_states(cdps(s)->dp, full, states, n);
}

const StrategyOps strategy_dp_ops = {
    .name = "allreduce",
    .plan = dp_plan,
    .create = dp_screate,
    .destroy = dp_sdestroy,
    .describe = dp_describe,
    .mode = dp_mode,
    .shared_grads = dp_sgrads,
    .share_params = dp_share_params,
    .owns_params = dp_owns_params,
    .state_len = dp_sstate_len,
    .sharded = dp_ssharded,
    .step_begin = dp_step_begin_s,
    .reduce_end = dp_reduce_end,
    .clip_partials = dp_sclip,
    .update = dp_update,
    .exposed_s = dp_sexposed,
    .comm_s = dp_scomm,
    .gather_states = dp_sgather,
    .scatter_states = dp_sscatter,
};
