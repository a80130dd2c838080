/* strategy.h — the parallel strategy: how the ranks share a training step.
 *
 * The trainer drives every strategy through the same table (StrategyOps) and does not
 * know which one runs (docs/design.md §4, §6).  Data parallel ("allreduce",
 * strategy_dp.c over the engine in dp.c) is the first implementation; the
 * parameter-server mode plugs in as a second: one new file and one line in the registry
 * (strategy.c).  A strategy knows ranges of the flat slabs, not layers.
 *
 * Life of a strategy:
 *   ops = strategy_find(conf.mode)                    before anything is allocated
 *   ops->plan(conf, rank, world, M, &split)           validate; this rank's micro-batches
 *   strategy_create(ops, comm, conf, nparams, nstates) collective
 *   strategy_share_params(s, &params)                 after init / resume: the slab to train
 * Per step (the protocol of docs/design.md §4):
 *   strategy_step_begin(s, &step, params, grads, &hooks)   the step's optimizer, hooks for
 *                                                          the executor's backward
 *   ... executor forward/backward, calling hooks.ready / hooks.poll / hooks.chunk_done
 *   strategy_reduce_end(s)        the gradient of the global batch is in `grads` (on the
 *                                 rank's optimizer pieces at least)
 *   strategy_clip_partials(...)   only when StrategyStep.global (clipping)
 *   strategy_update(s, run, runner)  the optimizer on the rank's pieces (unless it was
 *                                 fused into the reduction) and every rank gets the new
 *                                 parameters
 * Checkpoints: strategy_gather_states / strategy_scatter_states move the optimizer state
 * between the rank's compact arrays (strategy_state_len floats) and whole slabs.
 *
 * Threads: every call is made on the thread that created the Comm (MPI_THREAD_FUNNELED);
 * the update function and StrategyRunFn may spread work over threads.
 * Errors: plan returns MT_EX_CONFIG with err_set() naming the keys and a fix (the same
 * verdict on every rank, nothing allocated); create returns 0 or an error code after
 * err_set() (collective: the same outcome on every rank); communication failures abort
 * the job (comm.h); the step functions cannot fail. */
#ifndef MPITRAIN_PARALLEL_STRATEGY_H
#define MPITRAIN_PARALLEL_STRATEGY_H

#include <stddef.h>
#include <stdint.h>

#include "parallel/comm.h"

/* The [parallel] section of the resolved config (strings owned by the caller). */
typedef struct {
    const char *mode;        /* "allreduce" | "ps": selects the StrategyOps */
    const char *reduce;      /* "deterministic" | "fast" */
    double bucket_mb;        /* gradient bucket size, MB of float32 */
    int zero;                /* 1: ZeRO-1 (optimizer sharded over the ranks) */
    const char *shm;         /* "auto" | "true" | "false": node-shared memory */
    int servers;             /* ps: server ranks */
    const char *consistency; /* ps: "sync" | "async" | "ssp" */
    int staleness;           /* ps */
    double lookahead;        /* ps delayed, ssp: parallel.lookahead (0: none) */
    const char *server_ranks; /* ps: "last" | "first" | "spread": which ranks serve */
    int steal;               /* ps delayed: parallel.steal (work stealing between workers) */
} StrategyConf;

/* This rank's share of the step, decided before any slab exists. */
typedef struct {
    int mb_lo, mb_hi;  /* local micro-batches [mb_lo, mb_hi) of the step's M */
    int computes;      /* 1: this rank runs forward/backward (0: a parameter server) */
    int worker;        /* this rank's index among the computing ranks (-1: none) */
    int workers;       /* how many ranks compute (eval is split over them) */
    int n_invariant;   /* 1: the bits equal those of one rank (docs/determinism.md) */
    int staleness;     /* steps a step's parameters may lag its updates (ps delayed, ssp:
                          parallel.staleness; otherwise 0) */
    int steal;         /* 1: work stealing (ps delayed): the rank computes whichever shares
                          of [0, M) hooks.claim hands it, each of mb_hi - mb_lo micro-batches,
                          so it reads the whole batch */
} StrategySplit;

/* The optimizer as a strategy calls it: update slab range [lo, hi), its optimizer state
 * at [off, off + hi - lo) of the rank's compact state arrays (core/optstep.h). */
typedef void (*StrategyUpdateFn)(void *arg, size_t lo, size_t hi, size_t off);
/* fn(arg, lo, hi) over [0, n) cut in parts across threads (the executor's
 * exec_parallel_range); returns when all parts are done. */
typedef void (*StrategyRangeFn)(void *arg, size_t lo, size_t hi);
typedef void (*StrategyRunFn)(void *runner, size_t n, StrategyRangeFn fn, void *arg);

/* What a step asks of the strategy. */
typedef struct {
    uint64_t step;           /* the step being computed (steps completed before it) */
    StrategyUpdateFn update; /* the step's optimizer (lr, step number and grad scale live */
    void *update_arg;        /* in update_arg: core/optstep.h) */
    int global;              /* 1: the update needs the whole step's gradient first
                                (global-norm clipping): nothing may be fused */
    int hold;                /* 1: the slabs must not change during the backward (an async
                                checkpoint snapshot is copied from them until the trainer's
                                fence): no update fused into the executor */
    /* update calls after scale(update_arg, f, g) use the step's learning rate times f and
     * the gradient times g (an async parameter server applies one worker's push) */
    void (*scale)(void *update_arg, float lr_factor, float grad_factor);
} StrategyStep;

/* What the executor calls during the backward (core/exec.h's ExecReadyFn, ExecPollFn
 * and ExecRangeFn have these signatures).  Filled by strategy_step_begin. */
typedef struct {
    void (*ready)(void *arg, size_t lo, size_t hi); /* local gradient of [lo, hi) final */
    void (*poll)(void *arg);                        /* progress communication */
    void *arg;                                      /* NULL ready/poll: nothing to report */
    void (*chunk_done)(void *arg, size_t lo, size_t hi); /* summed gradient of a chunk */
    void *chunk_arg;                                /* final: update it now (may be NULL) */
    const float *params;     /* the parameters to compute this step on (nparams floats),
                                or NULL: the caller's slab (a delayed parameter server
                                computes on an older version) */
    float *grads;            /* the slab to compute this step's gradient into (nparams
                                floats, the strategy's), or NULL: the caller's (a delayed
                                or ssp worker keeps s + 1 so that its pushes may still be
                                in flight while it runs ahead) */
    /* Work stealing (StrategySplit.steal), else NULL: the next share of this step to
     * compute; the caller calls it until it returns 0 (the last call pushes the last
     * share).  1 with *share its index k (micro-batches [k n, (k + 1) n), n = mb_hi -
     * mb_lo) and *grads the slab to compute its gradient into (the strategy's).  The
     * executor's ready/poll calls in between belong to that share.  Never fails (a lost
     * peer ends the job). */
    int (*claim)(void *arg, int *share, float **grads);
} StrategyHooks;

/* What a rank did in the last step, for the metrics (strategies that have it). */
typedef struct {
    double bytes_sent, bytes_recv; /* point-to-point payload bytes */
    double wait_s;                 /* worker: waiting for parameters; server: for pushes */
    double busy_s;                 /* server: summing, updating and sending */
    int server;                    /* 1: a server's figures, 0: a worker's */
    int staleness;                 /* worker: steps between the parameters computed on and
                                      the newest version (sync: 0) */
    int shares;                    /* worker: shares of the step it computed (1; with
                                      work stealing 0..2) */
} StrategyStats;

typedef struct Strategy Strategy;

typedef struct StrategyOps {
    const char *name; /* parallel.mode: "allreduce" */
    /* Check conf for `world` ranks and M micro-batches per step; fill this rank's split.
     * Pure: every rank gets the same verdict.  0 or MT_EX_CONFIG. */
    int (*plan)(const StrategyConf *conf, int rank, int world, int M, StrategySplit *out);
    /* Plan buckets/shards for slabs of nparams floats with nstates optimizer states and
     * allocate persistent buffers.  Collective.  0 and *out, or an error code. */
    int (*create)(Comm *comm, const StrategyConf *conf, size_t nparams, int nstates,
                  Strategy **out);
    void (*destroy)(Strategy *s); /* after the slabs it may own are no longer used */
    /* A one-line description for the log (ranks, reduction, sharding, memory path). */
    void (*describe)(const Strategy *s, char *buf, size_t n);
    /* The mode recorded in checkpoints, e.g. "allreduce/deterministic/zero1". */
    const char *(*mode)(const Strategy *s);

    /* Slabs.  The gradient slab to compute into: the strategy's own (node-shared
     * memory) or NULL (the caller allocates nparams floats on its device). */
    float *(*shared_grads)(Strategy *s);
    /* After the parameters are initialised or resumed in *params (nparams floats, the
     * caller's): the slab the job trains from now on.  A strategy that keeps one slab per
     * node copies them there, frees nothing, and sets *params to it.  Collective. */
    void (*share_params)(Strategy *s, float **params);
    /* 1 when *params is the strategy's (the caller must not free it). */
    int (*owns_params)(const Strategy *s, const float *params);
    /* Floats of each of the rank's compact optimizer-state arrays. */
    size_t (*state_len)(const Strategy *s);
    /* 1: the rank's state arrays hold only its pieces (not the whole slab). */
    int (*sharded)(const Strategy *s);

    /* The step (see the top of this file). */
    void (*step_begin)(Strategy *s, const StrategyStep *step, float *params, float *grads,
                       StrategyHooks *hooks);
    void (*reduce_end)(Strategy *s);
    /* Global-norm clipping partials for all clip blocks of the slab (every rank). */
    void (*clip_partials)(Strategy *s, const float *grads, double *partial);
    void (*update)(Strategy *s, StrategyRunFn run, void *runner);
    /* Exposed communication of the last step (seconds nothing overlapped), and all
     * seconds spent in communication. */
    double (*exposed_s)(const Strategy *s);
    double (*comm_s)(const Strategy *s);

    /* Checkpoints: full[k] (nparams floats, every rank) from the ranks' compact
     * states[k] (collective); and back: the rank's pieces of full[k] (local). */
    void (*gather_states)(Strategy *s, float *const *states, float *const *full, int nstates);
    void (*scatter_states)(const Strategy *s, float *const *full, float *const *states,
                           int nstates);
    /* Before a checkpoint: make params (nparams floats) whole and current on every rank
     * (a parameter server holds only its range up to date).  Collective.  NULL: every
     * rank's params are whole already. */
    void (*gather_params)(Strategy *s, float *params);
    /* The last step's figures of this rank (NULL: none beyond exposed_s/comm_s). */
    void (*stats)(const Strategy *s, StrategyStats *out);
    /* 1 (or NULL): every step moves all ranks together, so the trainer agrees on every
     * step (its data, signals, loss and finite checks).  0: ranks may be at different
     * steps (a stale parameter-server mode): the trainer agrees only at its boundaries
     * (log, eval, checkpoint and last steps), docs/design.md §6. */
    int (*lockstep)(const Strategy *s);
} StrategyOps;

/* Implementations embed this first in their handle. */
struct Strategy {
    const StrategyOps *ops;
};

/* The registry (strategy.c): the StrategyOps named `mode`, or NULL (then err_set() with
 * MT_EX_CONFIG lists the modes this build has). */
const StrategyOps *strategy_find(const char *mode);
/* The names of the registered strategies, "allreduce, ..." (static storage). */
const char *strategy_names(void);
/* The registered strategies one by one, i in [0, strategy_count()) (tests run every one). */
int strategy_count(void);
const StrategyOps *strategy_at(int i);

extern const StrategyOps strategy_dp_ops; /* strategy_dp.c: parallel.mode = allreduce */
extern const StrategyOps strategy_ps_ops; /* strategy_ps.c: parallel.mode = ps */

static inline int strategy_create(const StrategyOps *ops, Comm *comm, const StrategyConf *conf,
                                  size_t nparams, int nstates, Strategy **out)
{
    return ops->create(comm, conf, nparams, nstates, out);
}
static inline void strategy_destroy(Strategy *s) { if (s) s->ops->destroy(s); }
static inline void strategy_describe(const Strategy *s, char *buf, size_t n) { s->ops->describe(s, buf, n); }
static inline const char *strategy_mode(const Strategy *s) { return s->ops->mode(s); }
static inline float *strategy_shared_grads(Strategy *s) { return s->ops->shared_grads(s); }
static inline void strategy_share_params(Strategy *s, float **params) { s->ops->share_params(s, params); }
static inline int strategy_owns_params(const Strategy *s, const float *p) { return s->ops->owns_params(s, p); }
static inline size_t strategy_state_len(const Strategy *s) { return s->ops->state_len(s); }
static inline int strategy_sharded(const Strategy *s) { return s->ops->sharded(s); }
static inline void strategy_step_begin(Strategy *s, const StrategyStep *step, float *params,
                                       float *grads, StrategyHooks *hooks)
{
    s->ops->step_begin(s, step, params, grads, hooks);
}
static inline void strategy_reduce_end(Strategy *s) { s->ops->reduce_end(s); }
static inline void strategy_clip_partials(Strategy *s, const float *grads, double *partial)
{
    s->ops->clip_partials(s, grads, partial);
}
static inline void strategy_update(Strategy *s, StrategyRunFn run, void *runner) { s->ops->update(s, run, runner); }
static inline double strategy_exposed_s(const Strategy *s) { return s->ops->exposed_s(s); }
static inline double strategy_comm_s(const Strategy *s) { return s->ops->comm_s(s); }
static inline void strategy_gather_states(Strategy *s, float *const *states, float *const *full, int n)
{
    s->ops->gather_states(s, states, full, n);
}
/* 0 when the strategy has no stats (then *out is zeroed). */
static inline int strategy_stats(const Strategy *s, StrategyStats *out)
{
    *out = (StrategyStats){0};
    if (!s->ops->stats) return 0;
    s->ops->stats(s, out);
    return 1;
}
static inline int strategy_lockstep(const Strategy *s)
{
    return !s->ops->lockstep || s->ops->lockstep(s);
}
static inline void strategy_gather_params(Strategy *s, float *params)
{
    if (s->ops->gather_params) s->ops->gather_params(s, params);
}
static inline void strategy_scatter_states(const Strategy *s, float *const *full, float *const *states, int n)
{
    s->ops->scatter_states(s, full, states, n);
}

#endif
