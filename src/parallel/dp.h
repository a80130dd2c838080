/* dp.h — the data-parallel engine: gradient buckets, overlap, reduction modes, ZeRO-1.
 *
 * Knows ranges of slabs, not layers (DESIGN.md §1).  Per step:
 *   dp_step_begin(grads)            before the backward
 *   dp_grad_ready(lo, hi)           from the executor (driver thread) as each layer's
 *                                   local gradient [lo, hi) is final, in backward order;
 *                                   a bucket whose ranges are all ready starts reducing
 *   dp_poll()                       between layer computations: progress collectives
 *   dp_step_end()                   wait for what is still in flight
 * After dp_step_end the gradient of the whole global batch is in grads:
 *   zero = 0: everywhere;   zero = 1: in this rank's shard [shard_lo, shard_hi) only.
 * The optimizer then updates [shard_lo, shard_hi) (the whole slab when zero = 0) and,
 * with ZeRO-1, dp_allgather_params() distributes the updated parameters.
 *
 * deterministic: each bucket is reduce-scattered along the canonical tree (recursive
 *   halving, partners at distance 1, 2, 4, ...), then allgathered: with N a power of
 *   two dividing M the bits equal those of N = 1.
 * fast: MPI_Iallreduce per bucket (library order: not N-invariant). */
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

/* Exposed communication of the last step: seconds dp_step_end waited. */
double dp_exposed_s(const Dp *dp);
/* Total seconds spent in communication calls during the last step (overlapped or not). */
double dp_comm_s(const Dp *dp);

/* Global-norm clipping partials: fill partial[j] for all clip blocks of the slab
 * (exchanging shard partials with ZeRO-1). partial has clip_nblocks(nparams) entries. */
void dp_clip_partials(Dp *dp, const float *grads, double *partial);

/* ZeRO-1: after the optimizer updated [shard_lo, shard_hi), give every rank all
 * parameters.  No-op when zero = 0. */
void dp_allgather_params(Dp *dp, float *params);

/* Full optimizer state for a checkpoint: full[k] (nparams floats, every rank) is filled
 * from the ranks' compact states[k] (dp_state_len floats).  Collective. */
void dp_gather_states(Dp *dp, float *const *states, float *const *full, int nstates);
/* Resume: take this rank's pieces of full[k] (nparams floats) into states[k]. Local. */
void dp_scatter_states(const Dp *dp, float *const *full, float *const *states, int nstates);

#endif
