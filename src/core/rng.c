/* rng.c — Philox4x32-10 and the streams built on it (see rng.h).
 *
 * Philox4x32-10 as in Random123 (Salmon, Moraes, Dror, Shaw, SC'11): ten rounds of
 * two 32x32->64 multiplications on a 128-bit counter, with a Weyl-sequence bump of
 * the 64-bit key between rounds.  Word i of a stream is word i%4 of the block with
 * counter (i/4 low 32 bits, i/4 high 32 bits, 0, 0). */
#include "core/rng.h"

#include <math.h>

#include "core/common.h"
#include "core/mathf.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void rng_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0, c1 = n1, c2 = n2, c3 = n3;
    }
    out[0] = c0, out[1] = c1, out[2] = c2, out[3] = c3;
}

/* The key is one Philox block: counter (purpose, extra low, extra high, "mtk\0") under
 * key (seed low, seed high); words 0 and 1 of the output form the 64-bit key. */
uint64_t rng_key(uint64_t seed, uint32_t purpose, uint64_t extra)
{
    const uint32_t ctr[4] = {purpose, (uint32_t)extra, (uint32_t)(extra >> 32), 0x6d746b00u};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t out[4];
    rng_philox4x32(ctr, key, out);
    return (uint64_t)out[0] | (uint64_t)out[1] << 32;
}

static void block(uint64_t key, uint64_t c, uint32_t out[4])
{
    const uint32_t ctr[4] = {(uint32_t)c, (uint32_t)(c >> 32), 0, 0};
    const uint32_t k[2] = {(uint32_t)key, (uint32_t)(key >> 32)};
    rng_philox4x32(ctr, k, out);
}

uint32_t rng_u32(uint64_t key, uint64_t i)
{
    uint32_t out[4];
    block(key, i / 4, out);
    return out[i % 4];
}

#define LANES 8

/* LANES consecutive blocks c0 .. c0+LANES-1 at once, lane-parallel so the compiler
 * can vectorise the rounds; out[4*l + w] = word w of block c0 + l. */
static void blocks_lanes(uint64_t key, uint64_t c0, uint32_t *out)
{
    uint32_t a[LANES], b[LANES], c[LANES], d[LANES];
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int l = 0; l < LANES; l++) {
        uint64_t ctr = c0 + (uint64_t)l;
        a[l] = (uint32_t)ctr, b[l] = (uint32_t)(ctr >> 32), c[l] = 0, d[l] = 0;
    }
    for (int r = 0; r < 10; r++) {
        if (r > 0) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        for (int l = 0; l < LANES; l++) {
            uint64_t p0 = (uint64_t)PHILOX_M0 * a[l];
            uint64_t p1 = (uint64_t)PHILOX_M1 * c[l];
            uint32_t n0 = (uint32_t)(p1 >> 32) ^ b[l] ^ k0;
            uint32_t n2 = (uint32_t)(p0 >> 32) ^ d[l] ^ k1;
            b[l] = (uint32_t)p1;
            d[l] = (uint32_t)p0;
            a[l] = n0;
            c[l] = n2;
        }
    }
    for (int l = 0; l < LANES; l++) {
        out[4 * l + 0] = a[l];
        out[4 * l + 1] = b[l];
        out[4 * l + 2] = c[l];
        out[4 * l + 3] = d[l];
    }
}

void rng_fill_u32(uint64_t key, uint64_t i0, size_t n, uint32_t *out)
{
    uint64_t i = i0, end = i0 + n;
    uint32_t buf[4 * LANES];
    while (i < end && (i % 4 != 0 || end - i < 4 * LANES)) { /* head, or a short run */
        block(key, i / 4, buf);
        for (uint64_t w = i % 4; w < 4 && i < end; w++) *out++ = buf[w], i++;
    }
    while (end - i >= 4 * LANES) { /* i % 4 == 0 here */
        blocks_lanes(key, i / 4, out);
        out += 4 * LANES, i += 4 * LANES;
    }
    while (i < end) { /* tail */
        block(key, i / 4, buf);
        for (uint64_t w = 0; w < 4 && i < end; w++) *out++ = buf[w], i++;
    }
}

float rng_uniform(uint64_t key, uint64_t i)
{
    return (float)(rng_u32(key, i) >> 8) * 0x1p-24f;
}

/* Box–Muller: u1 = (w0 + 1) / 2^32 in (0, 1] (never log(0)), u2 = w1 / 2^32 in [0, 1);
 * z = sqrt(-2 ln u1) cos(2 pi u2), all in double (mathf_log, mathf_cospi: core/mathf.h),
 * rounded once to float.  Words 2i and
 * 2i+1 are in the same Philox block. */
float rng_normal(uint64_t key, uint64_t i)
{
    uint32_t out[4];
    block(key, i / 2, out);
    uint32_t w0 = out[(i % 2) * 2], w1 = out[(i % 2) * 2 + 1];
    double u1 = ((double)w0 + 1.0) * 0x1p-32;
    double u2 = (double)w1 * 0x1p-32;
    return (float)(sqrt(-2.0 * mathf_log(u1)) * mathf_cospi(2.0 * u2));
}

/* Each draw is the 64-bit value (word *i) | (word *i+1) << 32; draws at or above the
 * largest multiple of n are rejected (probability < n / 2^64). */
uint64_t rng_below(uint64_t key, uint64_t *i, uint64_t n)
{
    CHECK(n > 0);
    uint64_t rem = (0 - n) % n;          /* 2^64 mod n */
    uint64_t limit = 0 - rem;            /* 2^64 - rem (0 means 2^64: accept all) */
    for (;;) {
        uint64_t lo = rng_u32(key, *i), hi = rng_u32(key, *i + 1);
        *i += 2;
        uint64_t x = lo | hi << 32;
        if (rem == 0 || x < limit) return x % n;
    }
}
