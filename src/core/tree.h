/* tree.h — the canonical reduction tree (docs/design.md, "canonical reduction").
 *
 * A sum over leaves [lo, hi) (micro-batches, or ranks holding subtrees of them) is the
 * balanced binary tree T(lo, hi) = T(lo, mid) + T(mid, hi), lower subtree on the left,
 * mid = tree_mid(lo, hi), and T(q, q + 1) = leaf q.  For power-of-two counts this is
 * adjacent pairs first: ((g0+g1)+(g2+g3))+((g4+g5)+(g6+g7)).  Any power of two N that
 * divides M cuts the tree over M leaves into N subtrees of M/N leaves, so a rank holding
 * one subtree and a cross-rank tree over the ranks give the same bits as one rank
 * summing all M leaves.  Every tree sum in the project splits its range here: the
 * executor's micro-batch sums (exec.c), the tree GEMM (gemm.c) and the data-parallel
 * engine's shared-memory sum over ranks (parallel/dp.c). */
#ifndef MPITRAIN_CORE_TREE_H
#define MPITRAIN_CORE_TREE_H

/* The split point of node [lo, hi), hi - lo >= 2: lo + (hi - lo) / 2. */
static inline int tree_mid(int lo, int hi) { return lo + (hi - lo) / 2; }

#endif
