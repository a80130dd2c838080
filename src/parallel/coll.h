/* coll.h — range reductions on slabs: the deterministic (canonical-tree) allreduce,
 * reduce-scatter and allgather, and the non-blocking interface the data-parallel engine
 * drives between layer computations.  Their shard layout is shard.h.
 *
 * Canonical tree (docs/determinism.md).  Each rank r holds a partial p_r of the whole range.
 * With N = 2^k ranks the result of COMM_DET is, bit for bit on every rank,
 *     ((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7))   (N = 8)
 * the balanced binary tree over ranks, adjacent pairs first: recursive halving with
 * partners at distance 1, 2, 4, ... then an allgather (or, for allreduces of at most
 * CommConf.doubling_max_bytes, recursive doubling: same tree, same bits).  Each
 * addition is written lower subtree + upper subtree.  (C does not specify which NaN's
 * payload a sum of two NaNs keeps: a NaN input gives NaN, with unspecified payload bits.)
 * If rank r holds the subtree sum of micro-batches
 * [r*M/N, (r+1)*M/N) the result equals the single-rank tree over all M micro-batches:
 * the result is N-invariant for every power of two N dividing M.
 *
 * Other N (N = P + E, P the largest power of two <= N): ranks 2i and 2i+1 for i < E are
 * folded first (p_2i + p_2i+1 on rank 2i), then the P remaining "virtual" ranks
 * (shard.h) run the power-of-two tree and rank 2i finally sends the result to 2i+1.
 * N = 3 gives (p0 + p1) + p2; N = 6 gives ((p0+p1) + (p2+p3)) + (p4 + p5).  Deterministic
 * and fixed for that N, but not equal to the result at another N.
 *
 * Shards: after a reduce-scatter rank r holds shard_range(lo, hi, N, r) (shard.h), and
 * contributes that shard to an allgather; COMM_FAST uses the same layout. */
#ifndef MPITRAIN_PARALLEL_COLL_H
#define MPITRAIN_PARALLEL_COLL_H

#include <stddef.h>

#include "parallel/comm.h"

/* Start a range operation on [lo, hi) of buf (see CommTask in comm.h).  Returns 0 and
 * *req, or MT_EX_SOFTWARE (bad arguments, pool full; nothing started). */
int coll_start(Comm *c, CommKind kind, CommMode mode, CommType type, void *buf, size_t lo,
               size_t hi, CommReq **req);
/* Advance without blocking; returns 1 when *req is finished (then released, *req = NULL),
 * 0 while it is still running.  Call between layer computations. */
int coll_progress(Comm *c, CommReq **req);
/* Block until finished; releases *req. */
int coll_wait(Comm *c, CommReq **req);

/* dst[i] = a[i] + b[i] for i < n, vectorised for the CPU (same bits as the scalar sum);
 * dst may be a or b.  The addition of every deterministic float reduction. */
void coll_add_f32(float *dst, const float *a, const float *b, size_t n);

/* Blocking conveniences (start + wait). */
int coll_allreduce(Comm *c, CommMode mode, CommType type, void *buf, size_t lo, size_t hi);
int coll_reduce_scatter(Comm *c, CommMode mode, CommType type, void *buf, size_t lo, size_t hi);
int coll_allgather(Comm *c, CommMode mode, CommType type, void *buf, size_t lo, size_t hi);

#endif
