/* dataset.h — sharded HDF5 datasets (docs/dataset-format.md) and their reader.
 *
 * DIR/index.h5    attributes: format="mpitrain-dataset", version=1, sample_shape (int32[k]),
 *                 dtype ("uint8"|"float32"), num_classes, num_samples, scale, mean, std;
 *                 dataset "shards": compound {file (string), count (int64)}
 * DIR/shard-00000.h5 ...   x (n, ...sample_shape) uint8|float32 chunked; y (n) int32
 * A sample's model input is x_float = (x * scale - mean) / std (scale 1/255 for uint8
 * images, 1 for float32).  Readable with h5py as it is (docs/dataset-format.md).
 *
 * Sample order for training is a permutation of [0, n) that is a pure function of
 * (seed, epoch).  Global batch t of an epoch is perm[t*B, (t+1)*B) (the last partial
 * batch is dropped); micro-batch k of it is rows [k*B/M, (k+1)*B/M).  The batch loader
 * that reads them step by step is in loader.h. */
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
 * and what is wrong (MT_EX_NOINPUT missing, MT_EX_DATAERR malformed).  cache_mb: whole
 * shards are kept in memory as stored (uint8/float32) from their first use while the
 * total fits (0 = no cache).  Close with dataset_close (NULL is fine). */
int dataset_open(const char *dir, int cache_mb, Dataset **out);
void dataset_close(Dataset *ds);
const DatasetInfo *dataset_info(const Dataset *ds);

/* Read samples idx[0..n) (global indices; outside [0, num_samples) is a bug: CHECK;
 * any order, repeats allowed) into x (n, sample_size) as normalised floats and y (n).
 * Thread-safe.  Whole shards are cached while they fit in cache_mb.  Errors
 * (unreadable shard MT_EX_DATAERR, label out of range MT_EX_DATAERR) name the shard and
 * row; x and y are then partly written. */
int dataset_read(Dataset *ds, const int64_t *idx, int n, float *x, int32_t *y);

/* uint8 datasets: the same rows as dataset_read, but x8 (n, sample_size) gets the stored
 * bytes; the model input of byte v is table[v] (dataset_u8_table), so a consumer that
 * looks the bytes up gets dataset_read's floats bit for bit, having moved a quarter of
 * the bytes (the loader hands them to the executor, which normalises on its threads).
 * Same errors as dataset_read; a float32 dataset is a bug (CHECK). */
int dataset_read_u8(Dataset *ds, const int64_t *idx, int n, uint8_t *x8, int32_t *y);
/* The 256 normalised values of a uint8 dataset's bytes ((v * scale - mean) / std, each
 * operation rounded once), owned by ds; NULL for a float32 dataset. */
const float *dataset_u8_table(const Dataset *ds);

/* Fill perm[0..n) with the permutation of epoch `epoch` (Fisher–Yates with
 * rng stream (seed, RNG_SHUFFLE, epoch)). shuffle=0 gives the identity. */
void dataset_permutation(uint64_t seed, uint64_t epoch, int64_t n, int shuffle, int64_t *perm);

/* Import.  Writes DIR atomically enough: into DIR, index.h5 last (written as
 * index.h5.tmp, fsync'd, renamed), so a half-written import is never read as complete.
 * DIR is created if missing; an existing DIR must be empty or hold only a previous
 * mpitrain dataset (index.h5, index.h5.tmp, shard-NNNNN.h5), which is replaced; any
 * other file there makes the import refuse (MT_EX_CANTCREAT) and touch nothing.
 * Inputs are checked completely before DIR is touched.  Errors: MT_EX_NOINPUT (input
 * missing), MT_EX_DATAERR (bad IDX header/dims, count mismatch, bad CSV line, label out
 * of range: each naming file and line or sample), MT_EX_CANTCREAT / MT_EX_IOERR (out). */
typedef struct {
    const char *out_dir;
    int shards;          /* number of shard files (1..num_samples), near-equal, in file order */
    int num_classes;     /* 0 = max label + 1 (or stats_from's num_classes) */
    const char *stats_from; /* NULL, or a dataset dir whose scale/mean/std (and num_classes
                              when num_classes = 0) are copied, e.g. the train split when
                              importing the test split, so both are normalised alike */
} ImportConf;
/* IDX files (optionally gzip'd), as MNIST/Fashion-MNIST ship them. */
int dataset_import_idx(const char *images, const char *labels, const ImportConf *c);
/* CSV: one sample per line, label first then features (a header line is skipped if
 * its first field is not a number); features stored as float32. */
int dataset_import_csv(const char *csv, const ImportConf *c);

/* Print counts, shapes, dtypes (info: index.h5 only; an error is left in err_msg()),
 * or check everything (verify): every shard readable, counts and shapes consistent,
 * dtypes, labels in range, float32 values finite.  Returns 0, or MT_EX_DATAERR /
 * MT_EX_NOINPUT after printing (verify: "FAILED: ..." to out) the shard and index of
 * the first problem. */
int dataset_print_info(const char *dir, FILE *out);
int dataset_verify(const char *dir, FILE *out);


#endif
