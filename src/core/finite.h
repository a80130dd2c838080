/* finite.h — the check that no NaN or ±inf has entered an array of floats: data as it is
 * read (io/dataset.c), the parameters and optimizer state each step writes (optstep.c),
 * the state a checkpoint is about to store (src/train).
 *
 * The scan looks at the exponent bits only (all ones = NaN or ±inf), in blocks of 64
 * floats with a fixed trip count that gcc -O2 vectorises (integer and/add/or: no float
 * operation, so no flag or rounding mode matters), and stops at the first block holding
 * a non-finite value.  Its cost is one read of the array: about 16 floats per cycle from
 * L1/L2 with SSE2 (docs/design.md, "Errors across ranks", has the measured figures). */
#ifndef MPITRAIN_CORE_FINITE_H
#define MPITRAIN_CORE_FINITE_H

#include <stddef.h>

/* The index of the first element of x[0, n) that is NaN or ±inf, or n when every element
 * is finite (n = 0: 0).  Host memory; x may be unaligned; cannot fail. */
size_t finite_first_bad(const float *x, size_t n);

/* "NaN", "inf" or "-inf" for a non-finite v ("finite" otherwise): for messages. */
const char *finite_kind(float v);

#endif
