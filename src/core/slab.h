/* slab.h — the block of the slab layout.
 *
 * A slab (the parameters, the gradients, each optimizer state) is one flat float array.
 * It is cut into blocks of SLAB_BLOCK elements at the multiples of SLAB_BLOCK counted
 * from index 0 (the last block may be shorter).  Work that is divided among threads,
 * buckets or ranks, and whose bits must not depend on how it is divided, is divided at
 * block boundaries:
 *  - global-norm clipping sums g^2 per block (optim.h: clip_block_sumsq), and the norm
 *    is the sum of those per-block partials in block order;
 *  - the data-parallel buckets and the ranks' shards of a range start and end at block
 *    boundaries or at the ends of the range (parallel/dp.c, parallel/shard.h), so every
 *    block lies in one bucket and, within a bucket, in one rank's shard. */
#ifndef MPITRAIN_CORE_SLAB_H
#define MPITRAIN_CORE_SLAB_H

/* Elements (floats) per block of a slab. */
#define SLAB_BLOCK 4096

#endif
