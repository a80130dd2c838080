/* gemm.h — mpitrain's own single-precision matrix product, with bits fixed by definition.
 *
 *   C (m, n) = A (m, k) B (k, n)        or, accumulating,   C = C + A B
 *
 * Every element is computed the same way on every machine: a chain of fused
 * multiply-adds over p = 0, 1, ..., k-1 in that order, starting from +0,
 *
 *   s = 0;  for p in 0..k-1: s = fma(A(i,p), B(p,j), s);   C(i,j) = s   (or C(i,j) + s)
 *
 * so the AVX-512, AVX2 and portable C kernels give identical bits (fma rounds once, as
 * IEEE 754 defines it), whatever the CPU, the number of threads or how a caller cuts the
 * rows and columns into calls.  OpenBLAS gives none of this: its bits change with the
 * kernel family it picks for the CPU (docs/determinism.md).  Accumulating adds the finished
 * chain to C with one rounding: the same bits as computing A B alone and adding.
 *
 * A is read through strides, A(i,p) = a[i*rsa + p*csa], so one routine serves A and A^T
 * without copies; B and C are row-major with leading dimensions ldb and ldc.  Nothing is
 * packed: the shapes of a micro-batch (k or n = 32 .. 256) fit in the caches as they are.
 * How a product is walked (tile order, k-blocks, prefetch; the tree's block size) is
 * chosen by measurement per shape (gemm_plan.h) and never changes a bit.
 * Single-threaded (thread-safe); callers split the work (the micro-batch is the unit of
 * compute). */
#ifndef MPITRAIN_CORE_GEMM_H
#define MPITRAIN_CORE_GEMM_H

#include <stddef.h>

void gemm_f32(int m, int n, int k, const float *a, ptrdiff_t rsa, ptrdiff_t csa,
              const float *b, ptrdiff_t ldb, float *c, ptrdiff_t ldc, int accumulate);

/* C (m, n) = T(0, nleaf), the canonical tree sum (docs/determinism.md; core/tree.h) of
 * nleaf products A_q B_q, q = 0 .. nleaf-1, each computed as gemm_f32 computes it (fma
 * chains over k from +0):  T(lo, hi) = A_lo B_lo when hi = lo + 1, else
 * T(lo, mid) + T(mid, hi) with mid = tree_mid(lo, hi), one rounding per addition.
 * A_q = a + q * a_leaf (same strides), B_q = b + q * b_leaf.  The bits are those of nleaf
 * separate products summed along the tree, without their (m, n) slabs: the tree is
 * formed block by block in a small scratch. */
void gemm_f32_tree(int m, int n, int k, int nleaf, const float *a, ptrdiff_t rsa,
                   ptrdiff_t csa, ptrdiff_t a_leaf, const float *b, ptrdiff_t ldb,
                   ptrdiff_t b_leaf, float *c, ptrdiff_t ldc);

/* out (cols, rows) = in (rows, cols)^T, row-major, leading dimensions given. */
void gemm_transpose(int rows, int cols, const float *in, ptrdiff_t ldi, float *out,
                    ptrdiff_t ldo);

typedef enum { GEMM_ISA_AUTO = 0, GEMM_ISA_C, GEMM_ISA_AVX2, GEMM_ISA_AVX512 } GemmIsa;

/* The kernel in use ("avx512", "avx2", "c"); the CPU's best unless MPITRAIN_GEMM_ISA
 * (avx512|avx2|c) or gemm_force_isa asks for a lower one. */
const char *gemm_isa_name(void);
/* Use this kernel from now on (tests: every kernel must give the same bits).  Returns 0,
 * or -1 when the CPU lacks it (nothing changes). */
int gemm_force_isa(GemmIsa isa);

#endif
