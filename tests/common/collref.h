/* collref.h — what the MPI tests of the deterministic reductions share: reproducible
 * per-rank inputs and the reference canonical tree of coll.h, computed locally. */
#ifndef MPITRAIN_TESTS_COLLREF_H
#define MPITRAIN_TESTS_COLLREF_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

static inline uint64_t mix(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* Input `who`'s element i: a float with a random sign, mantissa and exponent in
 * [2^-8, 2^8), so sums round. */
static inline float gen_f32(uint64_t seed, int who, size_t i)
{
    uint64_t h = mix(seed * 0x100000001b3ull ^ mix((uint64_t)who * 0x9e37 + i));
    float m = 1.0f + (float)(h & 0xffffff) / 16777216.0f;
    int e = (int)((h >> 24) % 17) - 8;
    return ((h >> 40) & 1 ? -1.0f : 1.0f) * ldexpf(m, e);
}

static inline int pow2_floor(int n)
{
    int p = 1;
    while (p * 2 <= n) p *= 2;
    return p;
}

/* Balanced tree over v[0..n), n a power of two, left + right. */
static inline float tree_f32(const float *v, int n)
{
    if (n == 1) return v[0];
    return tree_f32(v, n / 2) + tree_f32(v + n / 2, n / 2);
}

/* What COMM_DET computes from leaves p[0..N), N <= 128: fold pairs (2i, 2i+1) for
 * i < N-P, then the balanced tree over the P virtual leaves. */
static inline float det_ref_f32(const float *p, int N)
{
    int P = pow2_floor(N), E = N - P;
    float v[64];
    for (int i = 0; i < P; i++) v[i] = i < E ? p[2 * i] + p[2 * i + 1] : p[i + E];
    return tree_f32(v, P);
}

#endif
