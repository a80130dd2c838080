/* shard.c — the shard layout (shard.h). */
#include "parallel/shard.h"

#include "core/common.h"
#include "core/slab.h"

int shard_virt_rank(int rank, int size)
{
    int e = size - shard_pow2_floor(size);
    if (rank < 2 * e) return rank % 2 ? -1 : rank / 2;
    return rank - e;
}

int shard_real_rank(int v, int size)
{
    int e = size - shard_pow2_floor(size);
    return v < e ? 2 * v : v + e;
}

/* Blocks of [lo, hi): cut at lo, at multiples of SLAB_BLOCK inside, and at hi. */
static size_t nblocks(size_t lo, size_t hi)
{
    if (hi <= lo) return 0;
    return 1 + (hi - 1) / SLAB_BLOCK - lo / SLAB_BLOCK;
}

/* Start of block i of the nb blocks of [lo, hi) (hi for i >= nb). */
static size_t block_bound(size_t lo, size_t hi, size_t nb, size_t i)
{
    if (i == 0) return lo;
    if (i >= nb) return hi;
    return (lo / SLAB_BLOCK + i) * SLAB_BLOCK;
}

void shard_virt_range(size_t lo, size_t hi, int P, int v, size_t *a, size_t *b)
{
    size_t nb = nblocks(lo, hi);
    size_t b0 = ((size_t)v * nb + (size_t)P - 1) / (size_t)P;
    size_t b1 = ((size_t)(v + 1) * nb + (size_t)P - 1) / (size_t)P;
    *a = block_bound(lo, hi, nb, b0);
    *b = block_bound(lo, hi, nb, b1);
}

void shard_range(size_t lo, size_t hi, int size, int rank, size_t *shard_lo,
                 size_t *shard_hi)
{
    CHECK(size >= 1 && rank >= 0 && rank < size && lo <= hi);
    int P = shard_pow2_floor(size);
    int v = shard_virt_rank(rank, size);
    if (v < 0) {
        /* folded away: an empty shard at the end of its partner's */
        size_t a, b;
        shard_virt_range(lo, hi, P, shard_virt_rank(rank - 1, size), &a, &b);
        *shard_lo = *shard_hi = b;
        return;
    }
    shard_virt_range(lo, hi, P, v, shard_lo, shard_hi);
}
