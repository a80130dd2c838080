/* gemm_plan.h — which walk gemm.c takes through a product of a given shape, chosen by
 * measurement (FFTW-style), remembered per CPU model.
 *
 * Every walk gives the same bits (gemm.h: each element one fma chain over p in order), so
 * the choice changes time only, never a result: it can be left to measurement on the
 * machine the job landed on.  The first calls of a new shape (at least 2 M flops) try
 * each candidate walk in turn, GEMM_PLAN_ROUNDS times each, timed; from then on the
 * fastest is used.  Smaller products take the default walk.  The choices are kept in a
 * cache file keyed by CPU model, kernel and shape (gemm_plan_save), so the next run on
 * the same CPU model starts with them.
 *
 * Environment (read once, at the first product):
 *   MPITRAIN_PLAN        measure (default) | default (the default walk everywhere: no
 *                        measurement, no cache) | WALK[,TREE] (force these, e.g. "kc128",
 *                        "j,t36x128"; a walk a shape cannot take falls back to the default)
 *   MPITRAIN_PLAN_CACHE  the cache file (default $XDG_CACHE_HOME/mpitrain/gemm-plan, else
 *                        $HOME/.cache/mpitrain/gemm-plan) | off
 * Thread-safe.  Errors: none reach the caller; a cache that cannot be read, or lines of
 * it this version cannot parse, are ignored (such lines are dropped by the next save); a
 * cache that cannot be written is reported by gemm_plan_save's return value.  Concurrent
 * saves (jobs on one CPU model sharing a home directory) each rename a whole file: the
 * last one wins, nothing is torn, at worst a shape is measured again. */
#ifndef MPITRAIN_CORE_GEMM_PLAN_H
#define MPITRAIN_CORE_GEMM_PLAN_H

#include <stddef.h>

/* The walks of one product (gemm.c implements them):
 *   j       panels of B's columns outer, row tiles inner; prefetch decided by the strides
 *   j-pfa   j, prefetching only A's columns (never B's rows)
 *   j-nopf  j without software prefetch
 *   i       row tiles outer, panels of B inner
 *   kc128   j within blocks of 128 of p and of 8 row tiles (C not accumulated into)
 * and the blocks in which the tree of products (gemm_f32_tree) forms C:
 *   t24x64, t36x128, t12x256 (rows x columns); t36x128a: t36x128 with each block's rows
 *   of every leaf's A copied first into a contiguous panel (A read with a large stride,
 *   e.g. dy^T with rows 2 KB apart, maps to a few L1 sets; the copy does not). */
enum { GEMM_WALK_J, GEMM_WALK_J_PFA, GEMM_WALK_J_NOPF, GEMM_WALK_I, GEMM_WALK_KC128, GEMM_NWALK };
enum { GEMM_TREE_24X64, GEMM_TREE_36X128, GEMM_TREE_12X256, GEMM_TREE_36X128A, GEMM_NTREE };
enum { GEMM_PLAN_ROUNDS = 3 };

typedef enum { GEMM_KIND_PRODUCT = 0, GEMM_KIND_TREE = 1 } GemmKind;

/* A shape: everything that decides which walk is fastest. */
typedef struct {
    int kind; /* GemmKind */
    int m, n, k, nleaf, acc;
    ptrdiff_t rsa, csa, ldb, ldc;
} GemmShape;

/* The candidate to use for this call of shape s.  cand: bit v set when candidate v may be
 * used for s (candidate 0 always may).  *slot >= 0: time this call and hand the seconds
 * to gemm_plan_report(slot, variant, seconds); -1: nothing to report. */
int gemm_plan_choose(const GemmShape *s, unsigned cand, int *slot);
void gemm_plan_report(int slot, int variant, double seconds);

/* The name of candidate v of a kind ("j", "t24x64"); NULL when out of range. */
const char *gemm_plan_name(int kind, int v);

/* 0, or -1 with why[] saying what is wrong with MPITRAIN_PLAN (the trainer checks it at
 * start and exits 78; elsewhere a bad value means the default walk everywhere). */
int gemm_plan_check_env(char *why, size_t n);

/* One line for the log: the mode, the cache, and each planned shape this run used with
 * its walk, e.g. "measure (3 shapes measured in this run, 2 from the cache PATH):
 * 24x128x784 j, tree 24x784x32/4 t36x128" (MxNxK, "/LEAVES" for a tree, "+" where C is
 * accumulated into; ", some still being measured" before the ")" while a shape is
 * timed); "default"; or "forced WALK[,TREE]". */
void gemm_plan_describe(char *buf, size_t n);

/* Writes the decided shapes to the cache (kept: other CPU models' lines), atomically
 * (a temporary file renamed).  0, 1 when there is nothing to save or the cache is off,
 * -1 (errno set) when it could not be written. */
int gemm_plan_save(void);

/* Tests: forget every shape (the environment is read again at the next product). */
void gemm_plan_reset(void);

#endif
