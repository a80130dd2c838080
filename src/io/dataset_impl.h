/* dataset_impl.h — what src/io/dataset*.c share and nobody else uses: reading and
 * checking index.h5 and shard headers, and typed HDF5 attribute access with the
 * dataset's error messages.  The HDF5 lock, quiet mode and error text are in io/h5.h.
 *
 * Every function here that calls HDF5 takes the process-wide HDF5 lock (io/h5.h)
 * itself; callers may already hold it (the lock is recursive). */
#ifndef MPITRAIN_IO_DATASET_IMPL_H
#define MPITRAIN_IO_DATASET_IMPL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "io/dataset.h"
#include "io/h5.h"

#define DATASET_FORMAT "mpitrain-dataset"
#define DATASET_VERSION 1
#define DATASET_INDEX "index.h5"
#define DATASET_NAME_MAX 256   /* longest shard file name read from "shards" */
#define DATASET_FILE_LEN 64    /* fixed string length of "file" as import writes it */
#define DATASET_SHARDS_MAX (1 << 20) /* most shards a dataset may list (the table is read
                                      * whole: at most ~280 MB for this many entries) */

typedef struct {
    char file[DATASET_NAME_MAX]; /* a plain file name in the dataset directory */
    int64_t count;               /* samples in this shard */
} DatasetShardEntry;

typedef struct {
    hid_t fid, xid, yid;         /* file, x (n, ...shape), y (n); -1 when closed */
    int64_t chunk_rows;          /* rows per chunk of x (count when contiguous) */
} DatasetShardHandles;

/* "dir/file" into out (n bytes); 0 or MT_EX_USAGE if it does not fit. */
int dataset_join(char *out, size_t n, const char *dir, const char *file);

/* Typed attribute readers for obj (file or dataset) named `what` in messages.
 * Strings may be fixed-length or variable-length (h5py's default), scalar or one
 * element; numbers any integer (float too for _f64) type, converted by HDF5.
 * 0, or MT_EX_DATAERR naming `what`, the attribute and what was found. */
int dataset_attr_str(hid_t obj, const char *what, const char *name, char *buf, size_t n);
int dataset_attr_i64(hid_t obj, const char *what, const char *name, int64_t *v);
int dataset_attr_f64(hid_t obj, const char *what, const char *name, double *v);
/* 1-D integer attribute with 1..cap elements (or a scalar = one element). */
int dataset_attr_i64s(hid_t obj, const char *what, const char *name, int64_t *v, int cap,
                      int *count);

/* Read DIR/index.h5: fills *info (dir included) and *shards (malloc'd, info->nshards
 * entries, caller frees).  Checks format, version, attribute types and values, and
 * that the shard counts sum to num_samples.  MT_EX_NOINPUT when DIR or index.h5 is
 * missing, MT_EX_DATAERR when malformed; on error *shards is NULL. */
int dataset_index_read(const char *dir, DatasetInfo *info, DatasetShardEntry **shards);

/* Open shard `k` (entry e) of the dataset described by info and check its header: x
 * with shape (count, ...sample_shape) and dtype info->dtype, y (count) of an integer
 * type.  On success h holds open handles (close with dataset_shard_close).  Errors:
 * MT_EX_NOINPUT (file missing), MT_EX_DATAERR (unreadable, wrong shape/dtype), each
 * naming the shard file.  On error h is all -1. */
int dataset_shard_open(const DatasetInfo *info, const DatasetShardEntry *e, int k,
                       DatasetShardHandles *h);
void dataset_shard_close(DatasetShardHandles *h);

/* Read rows [lo, lo+n) of an open shard: x raw (n * sample_size elements of
 * info->dtype) and/or y (n) as int32 (either pointer may be NULL).  Reads in pieces of
 * at most a few MB, taking the HDF5 lock per piece.  0 or MT_EX_DATAERR naming the
 * shard file (path) and the first row of the failed piece. */
int dataset_shard_read_rows(const DatasetInfo *info, const DatasetShardHandles *h,
                            const char *path, int64_t lo, int64_t n, void *x, int32_t *y);

/* Shard names are plain file names inside the dataset directory: 0, or MT_EX_DATAERR
 * naming index_path, the entry i and the name when it holds a '/' (an absolute path,
 * a subdirectory, "../elsewhere/x.h5") or is "." or "..".  dataset_verify.c */
int dataset_check_shard_name(const char *index_path, int64_t i, const char *name);

/* The finite check of rows [lo, lo + m) of shard `path` as read (x raw, m *
 * sample_size elements of info->dtype; `first` = the global index of the shard's row 0):
 * 0 when every value is finite (always for uint8), else MT_EX_DATAERR naming the
 * dataset, the shard, the row, the global sample and the element.  One vectorised read
 * of the rows (core/finite.h).  dataset_verify.c */
int dataset_check_finite(const DatasetInfo *info, const char *path, int64_t first, int64_t lo,
                         const void *x, int64_t m);

/* Bytes of one element of dtype. */
size_t dataset_dtype_size(DType t);
const char *dataset_dtype_name(DType t);

#endif
