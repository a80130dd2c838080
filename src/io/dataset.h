/* dataset.h — sharded HDF5 datasets (DESIGN.md §5) and their reader.
 *
 * DIR/index.h5    attributes: format="mpitrain-dataset", version=1, sample_shape (int32[k]),
 *                 dtype ("uint8"|"float32"), num_classes, num_samples, scale, mean, std;
 *                 dataset "shards": compound {file (string), count (int64)}
 * DIR/shard-00000.h5 ...   x (n, ...sample_shape) uint8|float32 chunked; y (n) int32
 * A sample's model input is x_float = (x * scale - mean) / std (scale 1/255 for uint8
 * images, 1 for float32).  Readable with h5py as it is (see README).
 *
 * Sample order for training is a permutation of [0, n) that is a pure function of
 * (seed, epoch).  Global batch t of an epoch is perm[t*B, (t+1)*B) (the last partial
 * batch is dropped); micro-batch k of it is rows [k*B/M, (k+1)*B/M). */
#ifndef MPITRAIN_IO_DATASET_H
#define MPITRAIN_IO_DATASET_H

#include <stdint.h>
#include <stdio.h>

typedef enum { DTYPE_UINT8, DTYPE_FLOAT32 } DType;

typedef struct {
    char dir[512];
    int ndim;            /* sample rank (1..3) */
    int shape[3];        /* sample shape, e.g. 28 28 or 784 */
    int sample_size;     /* product of shape */
    DType dtype;
    int num_classes;
    int64_t num_samples;
    int nshards;
    float scale, mean, std;
} DatasetInfo;

typedef struct Dataset Dataset;

/* Open DIR (reads index.h5 and checks every shard's header).  Errors name the file
 * and what is wrong (MT_EX_NOINPUT missing, MT_EX_DATAERR malformed). */
int dataset_open(const char *dir, int cache_mb, Dataset **out);
void dataset_close(Dataset *ds);
const DatasetInfo *dataset_info(const Dataset *ds);

/* Read samples idx[0..n) (global indices) into x (n, sample_size) as normalised floats
 * and y (n).  Thread-safe.  Whole shards are cached while they fit in cache_mb.
 * Errors (unreadable shard, label out of range) name the shard and index. */
int dataset_read(Dataset *ds, const int64_t *idx, int n, float *x, int32_t *y);

/* Fill perm[0..n) with the permutation of epoch `epoch` (Fisher–Yates with
 * rng stream (seed, RNG_SHUFFLE, epoch)). shuffle=0 gives the identity. */
void dataset_permutation(uint64_t seed, uint64_t epoch, int64_t n, int shuffle, int64_t *perm);

/* Import.  Writes DIR atomically enough: into DIR, index.h5 last. */
typedef struct {
    const char *out_dir;
    int shards;          /* number of shard files */
    int num_classes;     /* 0 = max label + 1 */
} ImportConf;
/* IDX files (optionally gzip'd), as MNIST/Fashion-MNIST ship them. */
int dataset_import_idx(const char *images, const char *labels, const ImportConf *c);
/* CSV: one sample per line, label first then features (a header line is skipped if
 * its first field is not a number); features stored as float32. */
int dataset_import_csv(const char *csv, const ImportConf *c);

/* Print counts, shapes, dtypes (info), or check everything (verify): every shard
 * readable, counts and shapes consistent, dtypes, labels in range.  Returns 0, or
 * MT_EX_DATAERR / MT_EX_NOINPUT after printing the shard and index of the first problem. */
int dataset_print_info(const char *dir, FILE *out);
int dataset_verify(const char *dir, FILE *out);

/* Batch loader with a background prefetch thread. */
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
    float *x;             /* (n, sample_size) normalised */
    int32_t *y;           /* (n) */
    double wait_s;        /* time the consumer waited for it */
} Batch;

typedef struct Loader Loader;
/* steps_per_epoch = num_samples / B. */
int loader_create(Dataset *ds, const LoaderConf *c, uint64_t first_step, Loader **out);
/* The batch for `step` (steps are consumed in increasing order from first_step).
 * Returns 0 or the read error (message names shard and index).  The batch stays
 * valid until loader_release(). */
int loader_next(Loader *ld, uint64_t step, Batch **out);
void loader_release(Loader *ld, Batch *b);
void loader_destroy(Loader *ld);
int64_t loader_steps_per_epoch(const Loader *ld);

#endif
