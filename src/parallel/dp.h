/* dp.h — the data-parallel engine: gradient buckets, overlap, reduction modes, ZeRO-1.
 *
 * Knows ranges of slabs, not layers (docs/design.md).  Per step:
 *   dp_step_begin(grads)            before the backward
 *   dp_grad_ready(lo, hi)           from the executor (driver thread) as each layer's
 *                                   local gradient [lo, hi) is final, in backward order;
 *                                   a bucket whose ranges are all ready starts reducing
 *   dp_poll()                       between layer computations: progress collectives
 *   dp_step_end()                   wait for what is still in flight
 * After dp_step_end the gradient of the whole global batch is in grads:
 *   not dp_sharded: everywhere;   dp_sharded: in this rank's pieces (dp_piece) only.
 * The optimizer then updates the pieces (the whole slab when not sharded) and
 * dp_allgather_params() gives every rank the updated parameters — unless the update is
 * fused into the reduction (dp_set_update), in which case dp_step_end returns with the
 * parameters already updated and gathered.
 *
 * deterministic: each bucket is reduce-scattered along the canonical tree (recursive
 *   halving, partners at distance 1, 2, 4, ...), then allgathered: with N a power of
 *   two dividing M the bits equal those of N = 1.
 * fast: MPI_Iallreduce per bucket (library order: not N-invariant).
 *
 * Shared memory (DpConf.shm, reduce = deterministic, every rank on one node): the
 * gradient slabs and the node's one parameter slab live in memory all ranks map
 * (dp_shared_grads / dp_shared_params: the caller must compute into and train those).
 * Each shard owner sums its shard straight from the ranks' slabs along the same tree
 * (same bits as the MPI path), the optimizer is always sharded (dp_sharded), and
 * dp_allgather_params only waits until every rank has updated its shard. */
#ifndef MPITRAIN_PARALLEL_DP_H
#define MPITRAIN_PARALLEL_DP_H

#include <stddef.h>
#include <stdint.h>

#include "parallel/comm.h"

typedef enum { DP_REDUCE_DETERMINISTIC, DP_REDUCE_FAST } DpReduce;

typedef struct {
    DpReduce reduce;
    double bucket_mb;   /* bucket size (MB of float32 gradients) */
    int zero;           /* 0 | 1 */
    int shm;            /* 1: node-shared slabs when all ranks share one node (deterministic) */
    size_t nparams;     /* slab length */
} DpConf;

typedef struct Dp Dp;

/* Plan buckets over [0, nparams) (boundaries at multiples of CLIP_BLOCK floats) and the
 * ZeRO shards; allocate persistent buffers.  Never fails (allocation aborts). */
Dp *dp_create(Comm *comm, const DpConf *c);
void dp_destroy(Dp *dp);

/* This rank's optimizer shard: `n` pieces [lo, hi) of the slab (ascending, disjoint).
 * zero = 0: one piece [0, nparams).  zero = 1: the rank's reduce-scatter shard of every
 * bucket.  Piece i's optimizer state lives at [off, off + hi - lo) of the rank's compact
 * state arrays of dp_state_len() floats (off = 0 and length nparams when zero = 0). */
int dp_npieces(const Dp *dp);
void dp_piece(const Dp *dp, int i, size_t *lo, size_t *hi, size_t *off);
size_t dp_state_len(const Dp *dp);

void dp_step_begin(Dp *dp, float *grads);
/* ExecReadyFn / ExecPollFn compatible (arg = Dp*). */
void dp_grad_ready(void *dp, size_t lo, size_t hi);
void dp_poll(void *dp);
void dp_step_end(Dp *dp);

/* 1: the shared-memory path is in use (decided collectively by dp_create). */
int dp_shm(const Dp *dp);
/* 1: each rank's optimizer updates only its pieces (zero = 1, or the shared-memory path)
 * and its state arrays hold only those pieces. */
int dp_sharded(const Dp *dp);
/* Shared-memory path: this rank's gradient slab, and the node's parameter slab (the same
 * memory on every rank: write it on one rank then comm_barrier, except through the
 * sharded optimizer).  NULL otherwise. */
float *dp_shared_grads(const Dp *dp);
float *dp_shared_params(const Dp *dp);

/* Fuse the optimizer into the reduction (when dp_can_fuse_update: the shared-memory
 * path, or ZeRO-1 with reduce = deterministic over messages).  fn(arg, lo, hi, off) is
 * called for each piece of this rank's shard as soon as its sum is formed (while it is
 * in cache): slab range [lo, hi), optimizer state at [off, off + hi - lo) of the compact
 * state arrays.  Every rank has finished its backward through that range by then (the
 * executor reports a layer after its dx), so the parameters may be written.  Over
 * messages each bucket then runs as one task, reduce-scatter -> update -> allgather of
 * `params` segment by segment (CommTask.on_sum), and dp_allgather_params has nothing
 * left to do; in shared memory `params` is ignored (dp_shared_params).  The caller skips
 * its own update of the pieces; only for updates that need nothing global (no
 * clipping).  fn NULL: off.  Set it before the step's first dp_grad_ready. */
typedef void (*DpUpdateFn)(void *arg, size_t lo, size_t hi, size_t off);
int dp_can_fuse_update(const Dp *dp);
void dp_set_update(Dp *dp, DpUpdateFn fn, void *arg, float *params);

/* Exposed communication of the last step: seconds dp_step_end and dp_allgather_params
 * waited (communication nothing overlapped). */
double dp_exposed_s(const Dp *dp);
/* Total seconds spent in communication calls during the last step (overlapped or not). */
double dp_comm_s(const Dp *dp);

/* Global-norm clipping partials: fill partial[j] for all clip blocks of the slab
 * (exchanging shard partials with ZeRO-1). partial has clip_nblocks(nparams) entries. */
void dp_clip_partials(Dp *dp, const float *grads, double *partial);

/* After the optimizer updated this rank's pieces, give every rank all parameters
 * (ZeRO-1: allgather; shared memory: wait for the other ranks' updates).  No-op unless
 * dp_sharded. */
void dp_allgather_params(Dp *dp, float *params);

/* Full optimizer state for a checkpoint: full[k] (nparams floats, every rank) is filled
 * from the ranks' compact states[k] (dp_state_len floats).  Collective. */
void dp_gather_states(Dp *dp, float *const *states, float *const *full, int nstates);
/* Resume: take this rank's pieces of full[k] (nparams floats) into states[k]. Local. */
void dp_scatter_states(const Dp *dp, float *const *full, float *const *states, int nstates);

#endif
