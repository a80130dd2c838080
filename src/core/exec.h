/* exec.h — the micro-batch executor: forward and backward of a rank's micro-batches
 * on a pool of worker threads, and the canonical tree sum of their gradients.
 *
 * The micro-batch is the unit of compute (docs/determinism.md).  Each micro-batch's
 * forward and backward gives the bits of single-threaded products (gemm.h: every
 * element one fma chain in a fixed order) whatever the number of threads or ranks; the
 * rank's gradient is the sum of its micro-batch gradients along the canonical tree
 * (core/tree.h), so it is a subtree of the global tree and the bits depend on nothing
 * but (params, data).
 *
 * Two paths with the same bits (tests/unit/test_exec.c checks it):
 *  - layer-wise (models of dense layers only; exec_layerwise): every local row goes
 *    through a layer at once, the layer's work cut across the threads by output rows or
 *    columns, dW formed along the micro-batch tree without per-micro-batch slabs;
 *  - per micro-batch (any model): micro-batch k runs on thread k % threads, each into its
 *    own gradient slab (or a pair's shared slab), tree-summed per layer.
 *
 * Threads: `threads` workers including the calling thread.  As soon as the rank's
 * gradient of a layer is final (per micro-batch: once every local micro-batch has
 * finished the layer's backward, its range is tree-summed), it is reported through
 * `ready` — always on the calling thread (the
 * "driver"), in backward order, so that src/parallel can start reducing a bucket while
 * earlier layers still compute (MPI_THREAD_FUNNELED is enough).  `poll` is called on the
 * driver between its own layer computations, so non-blocking collectives progress. */
#ifndef MPITRAIN_CORE_EXEC_H
#define MPITRAIN_CORE_EXEC_H

#include "core/device.h"
#include "core/model.h"
#include "core/tree.h"

typedef struct Exec Exec;

/* Called on the driver thread when the local gradient of params [lo, hi) (one layer's
 * parameter range, padding included up to the next layer) is final. */
typedef void (*ExecReadyFn)(void *arg, size_t lo, size_t hi);
/* Called on the driver thread between its layer computations (may be NULL). */
typedef void (*ExecPollFn)(void *arg);
/* fn(arg, lo, hi) on a part [lo, hi) of a range (exec_parallel_range, chunk hooks). */
typedef void (*ExecRangeFn)(void *arg, size_t lo, size_t hi);

/* A step's input rows: normalised floats x (nmb*mb_rows, in_dim), or (x8 not NULL) the
 * stored bytes of a uint8 dataset, x8 (nmb*mb_rows, in_dim), whose model input is
 * table[byte] (256 floats).  The executor then normalises each row on the thread that
 * first reads it (the layer-wise path: while it transposes the input), so the bits are
 * those of the floats table[x8[i]].  Both borrowed for the call. */
typedef struct {
    const float *x;
    const uint8_t *x8;
    const float *x8_table;
} ExecInput;

/* the input's rows from row r on (r * in_dim elements further) */
static inline ExecInput exec_input_rows(ExecInput in, size_t r, int in_dim)
{
    size_t o = r * (size_t)in_dim;
    return (ExecInput){in.x ? in.x + o : NULL, in.x8 ? in.x8 + o : NULL, in.x8_table};
}

typedef struct {
    int threads;   /* worker threads including the caller (>= 1) */
    int mb_rows;   /* rows per micro-batch (B / M) */
    int nmb;       /* micro-batches of this rank per step (M / N) */
    int per_mb;    /* 1: always the per-micro-batch path (tests compare the two paths) */
    Device *dev;   /* where activations and gradients live, which selects the executor
                      (NULL: the host, "cpu"); borrowed, must outlive the Exec */
} ExecConf;

/* An executor backend: the functions below, as one table.  "cpu" (exec_cpu.c, a thread
 * pool over host memory) is the only one today; a backend is chosen by the name of the
 * device in ExecConf.dev (exec.c's registry).  Each handle starts with an ExecBase. */
typedef struct ExecOps {
    const char *name; /* the device it runs on: "cpu" */
    Exec *(*create)(const Model *m, const ExecConf *c, Device *dev);
    void (*destroy)(Exec *e);
    void (*train)(Exec *e, const float *params, ExecInput x, const int32_t *y,
                  uint64_t seed, uint64_t step, int mb0, float grad_scale, float *grads,
                  double *mb_loss, int64_t *correct, ExecReadyFn ready, ExecPollFn poll,
                  void *arg);
    void (*eval)(Exec *e, const float *params, const float *x, const int32_t *y, int n,
                 int chunk_rows, double *chunk_loss, int64_t *chunk_correct);
    void (*parallel_range)(Exec *e, size_t n, ExecRangeFn fn, void *arg);
    void (*set_chunk_hook)(Exec *e, ExecRangeFn fn, void *arg);
    int (*pairs)(const Exec *e);
    int (*layerwise)(const Exec *e);
} ExecOps;

typedef struct {
    const ExecOps *ops;
} ExecBase;

static inline const ExecOps *exec_ops(const Exec *e) { return ((const ExecBase *)(const void *)e)->ops; }

extern const ExecOps exec_cpu_ops; /* exec_cpu.c */

/* Allocate per-thread activation buffers and per-micro-batch gradient buffers; start
 * threads-1 worker threads.  Never fails (allocation
 * failure aborts with the size). The model must outlive the Exec. */
Exec *exec_create(const Model *m, const ExecConf *c);
static inline void exec_destroy(Exec *e) { if (e) exec_ops(e)->destroy(e); }

/* One training step of the local micro-batches.
 *   x (ExecInput: nmb*mb_rows rows of in_dim), y (nmb*mb_rows): the rank's rows, micro-batch k at rows
 *   [k*mb_rows, (k+1)*mb_rows).  mb0: global index of the first local micro-batch in the
 *   step (dropout masks depend on the global sample position).  grad_scale = 1/B.
 * Writes: grads[every parameter range] = tree sum of the micro-batch gradients (the
 * padding between arrays is left as is); mb_loss[k] = loss sum of local micro-batch k;
 * *correct = correctly classified rows (argmax). */
static inline void exec_train(Exec *e, const float *params, ExecInput x, const int32_t *y,
                              uint64_t seed, uint64_t step, int mb0, float grad_scale,
                              float *grads, double *mb_loss, int64_t *correct, ExecReadyFn ready,
                              ExecPollFn poll, void *arg)
{
    exec_ops(e)->train(e, params, x, y, seed, step, mb0, grad_scale, grads, mb_loss, correct,
                       ready, poll, arg);
}

/* Forward only (eval, no dropout) of n rows in chunks of chunk_rows (the last chunk
 * may be shorter), chunks spread over the threads.  chunk_loss[j] = loss sum of chunk j,
 * chunk_correct[j] its correct count.  Chunks are independent units, so the bits do
 * not depend on the thread count. */
static inline void exec_eval(Exec *e, const float *params, const float *x, const int32_t *y,
                             int n, int chunk_rows, double *chunk_loss, int64_t *chunk_correct)
{
    exec_ops(e)->eval(e, params, x, y, n, chunk_rows, chunk_loss, chunk_correct);
}

/* Run fn(arg, lo, hi) over [0, n) split in contiguous parts across the executor's
 * threads (the caller is one of them); returns when all parts are done.  For
 * element-wise passes (the optimizer), whose bits do not depend on the split. */
static inline void exec_parallel_range(Exec *e, size_t n, ExecRangeFn fn, void *arg)
{
    exec_ops(e)->parallel_range(e, n, fn, arg);
}

/* Optional: fn(arg, lo, hi) is called once for every chunk [lo, hi) of the slab as soon
 * as the rank's summed gradient of that chunk is final in grads (from whichever worker
 * thread finished it, while other threads may still compute).  The chunks of a step
 * tile [0, nparams).  Used to fuse the optimizer into the last pass over the gradients
 * when nothing else must see them first (one rank, no clipping).  NULL turns it off. */
static inline void exec_set_chunk_hook(Exec *e, ExecRangeFn fn, void *arg)
{
    exec_ops(e)->set_chunk_hook(e, fn, arg);
}

/* 1 when the executor accumulates micro-batch pairs (see exec.c): micro-batches 2u and
 * 2u+1 share one gradient slab, the second's product added element by element as it is
 * finished (gemm.h: the bits of a separate product plus an addition), which saves a
 * pass over the slab per pair.  Needs a power-of-two count of micro-batches and at
 * least one pair per thread; otherwise every micro-batch has its own slab. */
static inline int exec_pairs(const Exec *e) { return exec_ops(e)->pairs(e); }

/* 1 when training steps take the layer-wise path: a model of dense layers only (with
 * fused activations).  All rows of the step pass through a layer at once, split across
 * the threads by output rows or columns; the bits are those of the per-micro-batch path
 * (gemm.h: no element depends on how the work is cut; sums over samples keep the
 * micro-batches and the tree).  Models with dropout or standalone activations run one
 * micro-batch per thread at a time. */
static inline int exec_layerwise(const Exec *e) { return exec_ops(e)->layerwise(e); }

/* Tree sum of doubles v[lo, hi) along the canonical tree of core/tree.h (losses, norms,
 * eval metrics). */
double exec_tree_sum_f64(const double *v, int lo, int hi);

#endif
