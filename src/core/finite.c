/* finite.c — the finite check of float arrays (finite.h). */
#include "core/finite.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define FINITE_BLOCK 64         /* floats per block: a fixed trip count gcc vectorises */
#define FINITE_EXP 0x7f800000u  /* the exponent bits of a float */

size_t finite_first_bad(const float *x, size_t n)
{
    size_t i = 0;
    for (; i + FINITE_BLOCK <= n; i += FINITE_BLOCK) {
        /* (u & EXP) + 2^23 reaches bit 31 exactly when the exponent is all ones */
        uint32_t acc = 0;
        for (int k = 0; k < FINITE_BLOCK; k++) {
            uint32_t u;
            memcpy(&u, x + i + (size_t)k, sizeof u);
            acc |= (u & FINITE_EXP) + 0x00800000u;
        }
        if (acc & 0x80000000u) break; /* the element is in this block: find it below */
    }
    for (; i < n; i++)
        if (!isfinite(x[i])) return i;
    return n;
}

const char *finite_kind(float v)
{
    if (isnan(v)) return "NaN";
    if (isinf(v)) return v > 0 ? "inf" : "-inf";
    return "finite";
}
