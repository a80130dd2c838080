/* shard.h — the shard layout: which part of a slab range [lo, hi) each rank of `size`
 * holds after a reduce-scatter and contributes to an allgather.  Pure arithmetic (no
 * MPI); the deterministic and the library collectives (coll.h) and the data-parallel
 * engine use this one layout.
 *
 * Virtual ranks.  The canonical tree over N ranks (coll.h) runs on P virtual ranks, P
 * the largest power of two <= N.  With E = N - P, real ranks 2i and 2i+1 for i < E are
 * folded into virtual rank i (2i+1 holds nothing after the fold), and real rank r >= 2E
 * is virtual rank r - E.
 *
 * Shards.  [lo, hi) is cut into blocks at the multiples of SLAB_BLOCK (core/slab.h)
 * measured from the start of the slab (index 0), plus lo and hi.  The P virtual ranks get
 * consecutive runs of blocks in rank order, as equal in block count as possible (earlier
 * ranks get the extra blocks): virtual rank j gets blocks [ceil(j*nb/P), ceil((j+1)*nb/P))
 * of the nb blocks.  A rank may get an empty shard (few blocks, or a rank folded away
 * when N is not a power of two: its empty shard sits at the end of its partner's). */
#ifndef MPITRAIN_PARALLEL_SHARD_H
#define MPITRAIN_PARALLEL_SHARD_H

#include <stddef.h>

/* P of the canonical tree: the largest power of two <= n (n >= 1). */
static inline int shard_pow2_floor(int n)
{
    int p = 1;
    while (p * 2 <= n) p *= 2;
    return p;
}

/* Virtual rank of real rank `rank` of `size`, or -1 for an odd rank folded into
 * rank - 1. */
int shard_virt_rank(int rank, int size);
/* Real rank of virtual rank v (0 <= v < shard_pow2_floor(size)) of `size`. */
int shard_real_rank(int v, int size);

/* The shard of [lo, hi) of virtual rank v of P (a power of two): [*a, *b), possibly
 * empty.  lo <= hi. */
void shard_virt_range(size_t lo, size_t hi, int P, int v, size_t *a, size_t *b);

/* The shard of [lo, hi) that real rank `rank` of `size` holds: [*shard_lo, *shard_hi),
 * possibly empty (*shard_lo == *shard_hi).  Shards of ranks 0..size-1 are disjoint, in
 * rank order and cover [lo, hi).  Arguments out of range (size < 1, rank outside
 * [0, size), lo > hi) are a bug: CHECK fails. */
void shard_range(size_t lo, size_t hi, int size, int rank, size_t *shard_lo,
                 size_t *shard_hi);

#endif
