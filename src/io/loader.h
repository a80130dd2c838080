/* loader.h — batches for consecutive training steps, read from a Dataset (dataset.h) by
 * a background prefetch thread.
 *
 * Step t is position p = t % steps_per_epoch of epoch t / steps_per_epoch; its global
 * batch is rows [p*B, (p+1)*B) of that epoch's permutation (dataset_permutation), and a
 * rank reads micro-batches [mb_lo, mb_hi) of it.  What a rank gets for a step is a pure
 * function of (seed, step, B, M, micro-batch range): never of timing or prefetch depth. */
#ifndef MPITRAIN_IO_LOADER_H
#define MPITRAIN_IO_LOADER_H

#include <stdint.h>

#include "io/dataset.h"

typedef struct {
    uint64_t seed;
    int shuffle;
    int batch;            /* global batch B */
    int micro_batches;    /* M */
    int mb_lo, mb_hi;     /* this rank's micro-batches [mb_lo, mb_hi) */
    int prefetch;         /* batches ahead (>= 1) */
} LoaderConf;

typedef struct {
    uint64_t step;        /* global step this batch is for */
    int n;                /* rows = (mb_hi - mb_lo) * B / M */
    float *x;             /* (n, sample_size) normalised; NULL for a uint8 dataset, whose
                             rows come as stored in x8 */
    uint8_t *x8;          /* (n, sample_size) stored bytes of a uint8 dataset, else NULL */
    const float *x8_table; /* (256) the model input of each byte (dataset_u8_table) */
    int32_t *y;           /* (n) */
    double wait_s;        /* time the consumer waited for it */
} Batch;

typedef struct Loader Loader;

/* Start a loader over ds (borrowed: it must outlive the loader) whose first batch is
 * for step first_step; steps_per_epoch = num_samples / B.  All batch memory is
 * allocated here (prefetch + 1 slots).  Returns 0 and *out, or (with *out = NULL)
 * MT_EX_CONFIG for a bad batch / micro-batch range / prefetch or a dataset smaller than
 * one batch, MT_EX_OSERR when the thread cannot start; err_msg() says which. */
int loader_create(Dataset *ds, const LoaderConf *c, uint64_t first_step, Loader **out);
/* The batch for `step` (steps are consumed in increasing order from first_step; a
 * skipped step's batch is dropped).  Returns 0 or the read error of that step (message
 * names step, shard and index; *out is then NULL and there is nothing to release).
 * The batch is owned by the loader and stays valid until loader_release(); asking for a
 * step while holding more than `prefetch` batches is a bug (CHECK: their slots could
 * never be refilled). */
int loader_next(Loader *ld, uint64_t step, Batch **out);
/* Give batch b (from loader_next) back for refilling; NULL is a no-op. */
void loader_release(Loader *ld, Batch *b);
/* Stops and joins the prefetch thread (it finishes the read in progress), frees the
 * batches; fine at any point, also with batches still held or steps not consumed.
 * NULL is a no-op. */
void loader_destroy(Loader *ld);
int64_t loader_steps_per_epoch(const Loader *ld);

#endif
