/* rng.h — counter-based random numbers (Philox4x32-10, Salmon et al. SC'11).
 *
 * Every random number in mpitrain is a pure function of (key, counter): the same
 * seed gives the same bits on any machine, any number of ranks or threads, and
 * after any number of stops and resumes.  Streams are separated by the key:
 * key = rng_key(seed, purpose, a) with a purpose tag (init, dropout, shuffle, ...). */
#ifndef MPITRAIN_CORE_RNG_H
#define MPITRAIN_CORE_RNG_H

#include <stddef.h>
#include <stdint.h>

enum { RNG_INIT = 1, RNG_DROPOUT = 2, RNG_SHUFFLE = 3, RNG_TEST = 99 };

/* Philox4x32-10: one block of four 32-bit outputs for a 128-bit counter and 64-bit key.
 * Known-answer vectors of Random123 hold (tests/unit/test_rng.c). */
void rng_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* A 64-bit key for one stream: mixes seed, purpose tag and one extra word. */
uint64_t rng_key(uint64_t seed, uint32_t purpose, uint64_t extra);

/* The i-th 32-bit word of stream `key` (counter = i/4, word i%4). */
uint32_t rng_u32(uint64_t key, uint64_t i);
/* out[k] = rng_u32(key, i0 + k) for k in [0, n): the same words, computed several blocks
 * at a time (dropout masks).  out is caller-owned; never fails. */
void rng_fill_u32(uint64_t key, uint64_t i0, size_t n, uint32_t *out);
/* Uniform float in [0, 1) with 24 random bits, from word i of stream key. */
float rng_uniform(uint64_t key, uint64_t i);
/* Standard normal (Box–Muller on words 2i, 2i+1 of the stream), computed in double
 * with mathf_log, sqrt (IEEE, exact rounding) and mathf_cospi (core/mathf.h), rounded
 * to float: the same bits on every CPU. */
float rng_normal(uint64_t key, uint64_t i);
/* Uniform integer in [0, n) without modulo bias (rejection on 64 bits), drawing words
 * from *i onward and advancing *i. */
uint64_t rng_below(uint64_t key, uint64_t *i, uint64_t n);

#endif
