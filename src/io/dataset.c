/* dataset.c — open a sharded HDF5 dataset, read samples (with a whole-shard cache),
 * and the per-epoch sample permutation.  See dataset.h for the schema.
 *
 * Reading.  A shard is read whole into memory (raw uint8/float32, as stored: 4x less
 * memory than floats for uint8 images) the first time one of its samples is asked
 * for, if it fits in what is left of cache_mb; cached shards stay until close.  Samples
 * of shards that did not fit are read from the file: the requested rows are sorted,
 * consecutive rows coalesced into runs, and each run read with one simple hyperslab
 * (measured: ~15x faster than one H5Dread of a union of row hyperslabs).  Import
 * writes chunks larger than HDF5's 1 MiB chunk cache, so such partial reads go
 * straight to the file instead of reading (and caching) whole chunks.  Float32 rows
 * are checked for NaN and inf where they are read from the file (rows_finite), so a
 * cached shard is checked once.
 *
 * Threads.  Dataset.mu guards the shard table (cache state, open handles, scratch);
 * HDF5 calls additionally hold the process-wide HDF5 lock (io/h5.h), always taken
 * after Dataset.mu.  Rows of cached shards are copied without holding either lock
 * (a cached buffer is immutable until dataset_close). */
#include "io/dataset.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/common.h"
#include "core/rng.h"
#include "io/dataset_impl.h"
#include "io/h5.h"

#define PIECE_BYTES (4u << 20) /* largest single H5Dread while holding the HDF5 lock */
#define MAX_OPEN 64            /* shard files kept open at once by one Dataset */

/* ---------------------------------------------------------------- small helpers */

int dataset_join(char *out, size_t n, const char *dir, const char *file)
{
    int k = snprintf(out, n, "%s/%s", dir, file);
    if (k < 0 || (size_t)k >= n)
        return err_set(MT_EX_USAGE, "path %s/%s is too long (%zu bytes at most)", dir, file,
                       n - 1);
    return 0;
}

size_t dataset_dtype_size(DType t) { return t == DTYPE_UINT8 ? 1 : 4; }
const char *dataset_dtype_name(DType t) { return t == DTYPE_UINT8 ? "uint8" : "float32"; }

static void fmt_dims(char *buf, size_t n, const hsize_t *d, int rank)
{
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < rank && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%llu", i ? ", " : "", (unsigned long long)d[i]);
}

/* ---------------------------------------------------------------- attributes */

/* The message for a failed h5_attr_get_*: `want` is what the attribute must be ("a
 * string", "an integer", "a number"), `read` what a failed read calls it. */
static int attr_error(H5AttrStatus st, const H5AttrFail *f, const char *what, const char *name,
                      const char *want, const char *read)
{
    switch (st) {
    case H5_ATTR_OK: return 0;
    case H5_ATTR_MISSING:
        return err_set(MT_EX_DATAERR, "%s: attribute '%s' is missing (see the dataset schema "
                       "in docs/dataset-format.md)", what, name);
    case H5_ATTR_UNREADABLE:
        return err_set(MT_EX_DATAERR, "%s: cannot read attribute '%s'", what, name);
    case H5_ATTR_NOT_ONE:
        return err_set(MT_EX_DATAERR, "%s: attribute '%s' must hold one value (it holds %lld)",
                       what, name, f->count);
    case H5_ATTR_WRONG_TYPE:
        return err_set(MT_EX_DATAERR, "%s: attribute '%s' must be %s, not %s", what, name, want,
                       f->type);
    case H5_ATTR_READ_FAILED: break;
    }
    return err_set(MT_EX_DATAERR, "%s: cannot read %s '%s'", what, read, name);
}

int dataset_attr_str(hid_t obj, const char *what, const char *name, char *buf, size_t n)
{
    H5AttrFail f;
    H5AttrStatus st = h5_attr_get_str(obj, name, buf, n, &f);
    return attr_error(st, &f, what, name, "a string", "string attribute");
}

int dataset_attr_i64(hid_t obj, const char *what, const char *name, int64_t *v)
{
    H5AttrFail f;
    H5AttrStatus st = h5_attr_get_num(obj, name, H5T_NATIVE_INT64, 0, v, &f);
    return attr_error(st, &f, what, name, "an integer", "attribute");
}

int dataset_attr_f64(hid_t obj, const char *what, const char *name, double *v)
{
    H5AttrFail f;
    H5AttrStatus st = h5_attr_get_num(obj, name, H5T_NATIVE_DOUBLE, 1, v, &f);
    return attr_error(st, &f, what, name, "a number", "attribute");
}

int dataset_attr_i64s(hid_t obj, const char *what, const char *name, int64_t *v, int cap,
                      int *count)
{
    int rc = 0;
    hid_t a = -1, t = -1, sp = -1;
    *count = 0;
    h5_quiet_lock();
    if (H5Aexists(obj, name) <= 0) {
        rc = attr_error(H5_ATTR_MISSING, NULL, what, name, "", "");
        goto out;
    }
    a = H5Aopen(obj, name, H5P_DEFAULT);
    t = a >= 0 ? H5Aget_type(a) : -1;
    sp = a >= 0 ? H5Aget_space(a) : -1;
    if (a < 0 || t < 0 || sp < 0) {
        rc = err_set(MT_EX_DATAERR, "%s: cannot read attribute '%s'", what, name);
        goto out;
    }
    int rank = H5Sget_simple_extent_ndims(sp);
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    if (H5Tget_class(t) != H5T_INTEGER || rank > 1 || np < 1 || np > cap) {
        char tn[32];
        h5_type_name(t, tn, sizeof tn);
        rc = err_set(MT_EX_DATAERR, "%s: attribute '%s' must be 1 to %d integers (it holds %lld "
                     "of type %s)", what, name, cap, (long long)np, tn);
        goto out;
    }
    if (H5Aread(a, H5T_NATIVE_INT64, v) < 0) {
        rc = err_set(MT_EX_DATAERR, "%s: cannot read attribute '%s'", what, name);
        goto out;
    }
    *count = (int)np;
out:
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    if (a >= 0) H5Aclose(a);
    h5_quiet_unlock();
    return rc;
}

/* ---------------------------------------------------------------- index.h5 */

typedef struct {
    char file[DATASET_NAME_MAX];
    int64_t count;
} FixedEntry;
typedef struct {
    char *file;
    int64_t count;
} VarEntry;

static int read_shard_table(hid_t fid, const char *path, int64_t *n_out,
                            DatasetShardEntry **out)
{
    int rc = 0;
    hid_t d = -1, ft = -1, fmem = -1, cmem = -1, sp = -1, mt = -1, st = -1;
    void *buf = NULL;
    *out = NULL;
    if (H5Lexists(fid, "shards", H5P_DEFAULT) <= 0 ||
        (d = H5Dopen2(fid, "shards", H5P_DEFAULT)) < 0)
        return err_set(MT_EX_DATAERR, "%s: dataset 'shards' is missing (see the dataset schema "
                       "in docs/dataset-format.md)", path);
    ft = H5Dget_type(d);
    sp = H5Dget_space(d);
    int fi = H5Tget_class(ft) == H5T_COMPOUND ? H5Tget_member_index(ft, "file") : -1;
    int ci = H5Tget_class(ft) == H5T_COMPOUND ? H5Tget_member_index(ft, "count") : -1;
    if (fi >= 0) fmem = H5Tget_member_type(ft, (unsigned)fi);
    if (ci >= 0) cmem = H5Tget_member_type(ft, (unsigned)ci);
    if (fi < 0 || ci < 0 || H5Tget_class(fmem) != H5T_STRING ||
        H5Tget_class(cmem) != H5T_INTEGER || H5Tget_size(cmem) > 8 ||
        H5Sget_simple_extent_ndims(sp) != 1) {
        rc = err_set(MT_EX_DATAERR, "%s: dataset 'shards' must be a 1-D compound of "
                     "{file: string, count: integer of at most 64 bits}", path);
        goto out;
    }
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    if (n < 1) {
        rc = err_set(MT_EX_DATAERR, "%s: dataset 'shards' lists no shard", path);
        goto out;
    }
    if (n > DATASET_SHARDS_MAX) { /* before allocating n entries for a count it claims */
        rc = err_set(MT_EX_DATAERR, "%s: dataset 'shards' lists %lld shards; at most %d are "
                     "allowed", path, (long long)n, DATASET_SHARDS_MAX);
        goto out;
    }
    int vlen = H5Tis_variable_str(fmem) > 0;
    st = H5Tcopy(H5T_C_S1);
    H5Tset_cset(st, H5Tget_cset(fmem));
    if (vlen) {
        H5Tset_size(st, H5T_VARIABLE);
        mt = H5Tcreate(H5T_COMPOUND, sizeof(VarEntry));
        H5Tinsert(mt, "file", offsetof(VarEntry, file), st);
        H5Tinsert(mt, "count", offsetof(VarEntry, count), H5T_NATIVE_INT64);
        buf = xcalloc((size_t)n, sizeof(VarEntry));
    } else {
        H5Tset_size(st, DATASET_NAME_MAX);
        H5Tset_strpad(st, H5T_STR_NULLTERM);
        mt = H5Tcreate(H5T_COMPOUND, sizeof(FixedEntry));
        H5Tinsert(mt, "file", offsetof(FixedEntry, file), st);
        H5Tinsert(mt, "count", offsetof(FixedEntry, count), H5T_NATIVE_INT64);
        buf = xcalloc((size_t)n, sizeof(FixedEntry));
    }
    if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
        char det[256];
        h5_detail(det, sizeof det);
        rc = err_set(MT_EX_DATAERR, "%s: cannot read dataset 'shards' (%s)", path, det);
        goto out;
    }
    DatasetShardEntry *e = xcalloc((size_t)n, sizeof *e);
    for (hssize_t i = 0; i < n && !rc; i++) {
        const char *name = vlen ? ((VarEntry *)buf)[i].file : ((FixedEntry *)buf)[i].file;
        e[i].count = vlen ? ((VarEntry *)buf)[i].count : ((FixedEntry *)buf)[i].count;
        if (!name || !name[0] || strlen(name) >= DATASET_NAME_MAX - 1)
            rc = err_set(MT_EX_DATAERR, "%s: shards[%lld] has an empty or too long file name",
                         path, (long long)i);
        else if (e[i].count < 0)
            rc = err_set(MT_EX_DATAERR, "%s: shards[%lld] (%s) has a negative count %lld", path,
                         (long long)i, name, (long long)e[i].count);
        else if (!(rc = dataset_check_shard_name(path, i, name)))
            snprintf(e[i].file, sizeof e[i].file, "%s", name);
    }
    if (vlen) H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, buf);
    if (rc) {
        free(e);
        goto out;
    }
    *out = e;
    *n_out = n;
out:
    free(buf);
    if (st >= 0) H5Tclose(st);
    if (mt >= 0) H5Tclose(mt);
    if (fmem >= 0) H5Tclose(fmem);
    if (cmem >= 0) H5Tclose(cmem);
    if (sp >= 0) H5Sclose(sp);
    if (ft >= 0) H5Tclose(ft);
    H5Dclose(d);
    return rc;
}

int dataset_index_read(const char *dir, DatasetInfo *info, DatasetShardEntry **shards)
{
    char path[4096];
    struct stat st;
    int rc;
    memset(info, 0, sizeof *info);
    *shards = NULL;
    if (strlen(dir) >= sizeof info->dir)
        return err_set(MT_EX_USAGE, "dataset directory name %s is too long (%zu bytes at most)",
                       dir, sizeof info->dir - 1);
    snprintf(info->dir, sizeof info->dir, "%s", dir);
    if (stat(dir, &st) != 0)
        return err_set(MT_EX_NOINPUT, "dataset directory %s: %s (create one with `mpitrain data "
                       "import`)", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return err_set(MT_EX_NOINPUT, "%s is not a directory (a dataset is a directory holding "
                       "index.h5 and its shard files)", dir);
    if ((rc = dataset_join(path, sizeof path, dir, DATASET_INDEX))) return rc;
    if (access(path, R_OK) != 0)
        return err_set(MT_EX_NOINPUT, "%s: %s (not a complete dataset: an import that did not "
                       "finish leaves no index.h5; re-run `mpitrain data import`)", path,
                       strerror(errno));

    h5_read_lock(path, 0); /* bounded: io/h5.h */
    hid_t fid = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (fid < 0) {
        char det[256];
        h5_detail(det, sizeof det);
        rc = err_set(MT_EX_DATAERR, "cannot open %s as HDF5 (%s): the file is damaged; "
                     "re-import the dataset", path, det);
        goto out;
    }
    char s[64];
    int64_t v, shape[3];
    double f;
    int k;
    if ((rc = dataset_attr_str(fid, path, "format", s, sizeof s))) goto out;
    if (strcmp(s, DATASET_FORMAT) != 0) {
        rc = err_set(MT_EX_DATAERR, "%s: attribute format is '%s', not '%s': not an mpitrain "
                     "dataset", path, s, DATASET_FORMAT);
        goto out;
    }
    if ((rc = dataset_attr_i64(fid, path, "version", &v))) goto out;
    if (v != DATASET_VERSION) {
        rc = err_set(MT_EX_DATAERR, "%s: dataset format version %lld; this mpitrain reads "
                     "version %d%s", path, (long long)v, DATASET_VERSION,
                     v > DATASET_VERSION ? " (written by a newer mpitrain: upgrade)" : "");
        goto out;
    }
    if ((rc = dataset_attr_i64s(fid, path, "sample_shape", shape, 3, &k))) goto out;
    info->ndim = k;
    int64_t size = 1;
    for (int i = 0; i < k; i++) {
        if (shape[i] < 1 || shape[i] > INT_MAX / size) {
            rc = err_set(MT_EX_DATAERR, "%s: sample_shape[%d] = %lld is not a positive size",
                         path, i, (long long)shape[i]);
            goto out;
        }
        info->shape[i] = (int)shape[i];
        size *= shape[i];
    }
    info->sample_size = (int)size;
    if ((rc = dataset_attr_str(fid, path, "dtype", s, sizeof s))) goto out;
    if (strcmp(s, "uint8") == 0) {
        info->dtype = DTYPE_UINT8;
    } else if (strcmp(s, "float32") == 0) {
        info->dtype = DTYPE_FLOAT32;
    } else {
        rc = err_set(MT_EX_DATAERR, "%s: attribute dtype is '%s'; it must be 'uint8' or "
                     "'float32'", path, s);
        goto out;
    }
    if ((rc = dataset_attr_i64(fid, path, "num_classes", &v))) goto out;
    if (v < 1 || v > INT32_MAX) {
        rc = err_set(MT_EX_DATAERR, "%s: num_classes = %lld must be in [1, %d]", path,
                     (long long)v, INT32_MAX);
        goto out;
    }
    info->num_classes = (int)v;
    if ((rc = dataset_attr_i64(fid, path, "num_samples", &v))) goto out;
    if (v < 1) {
        rc = err_set(MT_EX_DATAERR, "%s: num_samples = %lld must be at least 1", path,
                     (long long)v);
        goto out;
    }
    info->num_samples = v;
    static const char *const fnames[3] = {"scale", "mean", "std"};
    float *fv[3] = {&info->scale, &info->mean, &info->std};
    for (int i = 0; i < 3; i++) {
        if ((rc = dataset_attr_f64(fid, path, fnames[i], &f))) goto out;
        if (!isfinite(f) || (i != 1 && !(f > 0))) {
            rc = err_set(MT_EX_DATAERR, "%s: attribute %s = %g must be a finite%s number", path,
                         fnames[i], f, i != 1 ? " positive" : "");
            goto out;
        }
        *fv[i] = (float)f;
    }
    int64_t nshards = 0;
    if ((rc = read_shard_table(fid, path, &nshards, shards))) goto out;
    if (nshards > INT_MAX) {
        rc = err_set(MT_EX_DATAERR, "%s: too many shards (%lld)", path, (long long)nshards);
        goto out;
    }
    info->nshards = (int)nshards;
    int64_t sum = 0;
    for (int i = 0; i < info->nshards && !rc; i++)
        if (__builtin_add_overflow(sum, (*shards)[i].count, &sum))
            rc = err_set(MT_EX_DATAERR, "%s: the shard counts sum to more than %lld (at "
                         "shards[%d]) but num_samples is %lld", path, (long long)INT64_MAX, i,
                         (long long)info->num_samples);
    if (!rc && sum != info->num_samples)
        rc = err_set(MT_EX_DATAERR, "%s: the shard counts sum to %lld but num_samples is %lld",
                     path, (long long)sum, (long long)info->num_samples);
out:
    if (fid >= 0) H5Fclose(fid);
    h5_read_unlock();
    if (rc) {
        free(*shards);
        *shards = NULL;
    }
    return rc;
}

/* ---------------------------------------------------------------- shards */

void dataset_shard_close(DatasetShardHandles *h)
{
    h5_quiet_lock();
    if (h->yid >= 0) H5Dclose(h->yid);
    if (h->xid >= 0) H5Dclose(h->xid);
    if (h->fid >= 0) H5Fclose(h->fid);
    h5_quiet_unlock();
    h->fid = h->xid = h->yid = -1;
}

int dataset_shard_open(const DatasetInfo *info, const DatasetShardEntry *e, int k,
                       DatasetShardHandles *h)
{
    char path[4096], det[256], tn[32], got[128], want[128];
    hid_t t = -1, sp = -1, pl = -1;
    hsize_t d[4], expect[4];
    int rc;
    h->fid = h->xid = h->yid = -1;
    h->chunk_rows = e->count;
    if ((rc = dataset_join(path, sizeof path, info->dir, e->file))) return rc;
    if (access(path, F_OK) != 0)
        return err_set(MT_EX_NOINPUT, "shard %d (%s) of dataset %s is missing: %s; restore it "
                       "or re-import the dataset", k, path, info->dir, strerror(errno));
    h5_read_lock(path, 0);
    h->fid = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (h->fid < 0) {
        h5_detail(det, sizeof det);
        rc = err_set(MT_EX_DATAERR, "cannot open shard %s as HDF5 (%s): the file is damaged or "
                     "truncated; re-import the dataset", path, det);
        goto out;
    }
    if (H5Lexists(h->fid, "x", H5P_DEFAULT) <= 0 ||
        (h->xid = H5Dopen2(h->fid, "x", H5P_DEFAULT)) < 0) {
        rc = err_set(MT_EX_DATAERR, "shard %s has no dataset 'x'", path);
        goto out;
    }
    t = H5Dget_type(h->xid);
    int ok = info->dtype == DTYPE_UINT8
                 ? H5Tget_class(t) == H5T_INTEGER && H5Tget_size(t) == 1 &&
                       H5Tget_sign(t) == H5T_SGN_NONE
                 : H5Tget_class(t) == H5T_FLOAT && H5Tget_size(t) == 4;
    if (!ok) {
        h5_type_name(t, tn, sizeof tn);
        rc = err_set(MT_EX_DATAERR, "shard %s: x has dtype %s but index.h5 says %s; rewrite x "
                     "as %s", path, tn, dataset_dtype_name(info->dtype),
                     dataset_dtype_name(info->dtype));
        goto out;
    }
    sp = H5Dget_space(h->xid);
    int rank = H5Sget_simple_extent_ndims(sp);
    expect[0] = (hsize_t)e->count;
    for (int i = 0; i < info->ndim; i++) expect[i + 1] = (hsize_t)info->shape[i];
    ok = rank == info->ndim + 1;
    if (rank >= 1 && rank <= 4) H5Sget_simple_extent_dims(sp, d, NULL);
    for (int i = 0; ok && i < rank; i++) ok = d[i] == expect[i];
    if (!ok) {
        if (rank >= 1 && rank <= 4) fmt_dims(got, sizeof got, d, rank);
        else snprintf(got, sizeof got, "rank %d", rank);
        fmt_dims(want, sizeof want, expect, info->ndim + 1);
        rc = err_set(MT_EX_DATAERR, "shard %s: x has shape (%s) but index.h5 says (%s) "
                     "(count, ...sample_shape)", path, got, want);
        goto out;
    }
    pl = H5Dget_create_plist(h->xid);
    if (pl >= 0 && H5Pget_layout(pl) == H5D_CHUNKED && H5Pget_chunk(pl, rank, d) == rank)
        h->chunk_rows = (int64_t)d[0];
    H5Sclose(sp);
    sp = -1;
    H5Tclose(t);
    t = -1;
    if (H5Lexists(h->fid, "y", H5P_DEFAULT) <= 0 ||
        (h->yid = H5Dopen2(h->fid, "y", H5P_DEFAULT)) < 0) {
        rc = err_set(MT_EX_DATAERR, "shard %s has no dataset 'y'", path);
        goto out;
    }
    t = H5Dget_type(h->yid);
    if (H5Tget_class(t) != H5T_INTEGER || H5Tget_size(t) > 8) { /* read as int32 */
        h5_type_name(t, tn, sizeof tn);
        rc = err_set(MT_EX_DATAERR, "shard %s: y has dtype %s; labels must be int32", path, tn);
        goto out;
    }
    sp = H5Dget_space(h->yid);
    rank = H5Sget_simple_extent_ndims(sp);
    if (rank != 1 || (H5Sget_simple_extent_dims(sp, d, NULL), d[0] != (hsize_t)e->count)) {
        if (rank >= 1 && rank <= 4) fmt_dims(got, sizeof got, d, rank);
        else snprintf(got, sizeof got, "rank %d", rank);
        rc = err_set(MT_EX_DATAERR, "shard %s: y has shape (%s) but index.h5 says (%lld)", path,
                     got, (long long)e->count);
        goto out;
    }
out:
    if (pl >= 0) H5Pclose(pl);
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    if (rc) dataset_shard_close(h);
    h5_read_unlock();
    return rc;
}

/* The memory space has the shape of the selection: with a different rank HDF5 walks
 * the selection element by element (measured: 10x slower reads). */
static int read_piece(hid_t did, hid_t mem, int rank, const hsize_t *start,
                      const hsize_t *count, void *buf)
{
    hid_t fs = H5Dget_space(did);
    hid_t ms = H5Screate_simple(rank, count, NULL);
    herr_t e = fs < 0 || ms < 0 ? -1 : 0;
    if (!e) e = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    if (!e) e = H5Dread(did, mem, ms, fs, H5P_DEFAULT, buf);
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    return e < 0 ? -1 : 0;
}

int dataset_shard_read_rows(const DatasetInfo *info, const DatasetShardHandles *h,
                            const char *path, int64_t lo, int64_t n, void *x, int32_t *y)
{
    size_t row = (size_t)info->sample_size * dataset_dtype_size(info->dtype);
    int64_t piece = MT_MAX((int64_t)1, (int64_t)(PIECE_BYTES / row));
    if (h->chunk_rows > 0 && h->chunk_rows <= piece) piece = piece / h->chunk_rows * h->chunk_rows;
    hid_t xmem = info->dtype == DTYPE_UINT8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT;
    for (int64_t p = lo; p < lo + n; p += piece) {
        int64_t m = MT_MIN(piece, lo + n - p);
        hsize_t start[4] = {(hsize_t)p, 0, 0, 0}, count[4] = {(hsize_t)m, 0, 0, 0};
        for (int i = 0; i < info->ndim; i++) count[i + 1] = (hsize_t)info->shape[i];
        int e = 0;
        h5_read_lock(path, 0);
        if (x)
            e = read_piece(h->xid, xmem, info->ndim + 1, start, count,
                           (char *)x + (size_t)(p - lo) * row);
        if (!e && y) e = read_piece(h->yid, H5T_NATIVE_INT32, 1, start, count, y + (p - lo));
        char det[256];
        if (e) h5_detail(det, sizeof det);
        h5_read_unlock();
        if (e)
            return err_set(MT_EX_DATAERR, "cannot read rows %lld..%lld of %s from shard %s (%s): "
                           "the file is damaged; run `mpitrain data verify %s`", (long long)p,
                           (long long)(p + m - 1), x ? "x" : "y", path, det, info->dir);
    }
    return 0;
}

/* ---------------------------------------------------------------- Dataset */

enum { CACHE_UNTRIED, CACHE_HELD, CACHE_NO };

typedef struct {
    DatasetShardEntry e;
    char *path;              /* dir/file */
    int64_t first;           /* global index of row 0 */
    DatasetShardHandles h;   /* open handles or -1 (at most MAX_OPEN open) */
    uint64_t last_use;       /* for closing the least recently used */
    int cache;               /* CACHE_* */
    void *x;                 /* (count, sample_size) raw dtype, when CACHE_HELD */
    int32_t *y;              /* (count) labels, when CACHE_HELD */
} Shard;

typedef struct {             /* one requested row of an uncached shard */
    int shard;
    int64_t row;             /* within the shard */
    int pos;                 /* output row */
} Req;

struct Dataset {
    DatasetInfo info;
    Shard *sh;               /* (nshards) */
    pthread_mutex_t mu;      /* guards everything below and Shard state */
    size_t row_bytes;        /* bytes of one stored sample */
    size_t cache_budget, cache_used;
    int nopen;
    uint64_t clock;
    Req *req;                /* scratch of the uncached path */
    size_t req_cap;
    void *raw;               /* (raw_rows, sample_size) raw */
    int32_t *rawy;           /* (raw_rows) */
    int64_t raw_rows;
    float lut[256];          /* uint8 datasets: lut[v] = (v * scale - mean) / std */
};

const DatasetInfo *dataset_info(const Dataset *ds) { return &ds->info; }

static int shard_of(const Dataset *ds, int64_t g)
{
    int lo = 0, hi = ds->info.nshards - 1;
    while (lo < hi) { /* last shard with first <= g */
        int mid = (lo + hi + 1) / 2;
        if (ds->sh[mid].first <= g) lo = mid;
        else hi = mid - 1;
    }
    return lo;
}

/* Make sure shard s has open handles, closing the least recently used if too many. */
static int ensure_open(Dataset *ds, int s)
{
    Shard *sh = &ds->sh[s];
    sh->last_use = ++ds->clock;
    if (sh->h.fid >= 0) return 0;
    if (ds->nopen >= MAX_OPEN) {
        int victim = -1;
        for (int i = 0; i < ds->info.nshards; i++)
            if (ds->sh[i].h.fid >= 0 && (victim < 0 || ds->sh[i].last_use < ds->sh[victim].last_use))
                victim = i;
        dataset_shard_close(&ds->sh[victim].h);
        ds->nopen--;
    }
    int rc = dataset_shard_open(&ds->info, &sh->e, s, &sh->h);
    if (!rc) ds->nopen++;
    return rc;
}

/* The finite check of rows [lo, lo + m) of shard s as they come from the file (x raw):
 * float32 rows are checked once, where they are read (a whole shard when it is cached,
 * each run of rows on the uncached path), never again when copied from the cache; uint8
 * rows need none. */
static int rows_finite(const Dataset *ds, int s, int64_t lo, const void *x, int64_t m)
{
    return dataset_check_finite(&ds->info, ds->sh[s].path, ds->sh[s].first, lo, x, m);
}

/* Called with mu held, on the first touch of shard s: cache it whole if it fits. */
static int try_cache(Dataset *ds, int s)
{
    Shard *sh = &ds->sh[s];
    size_t per_row = ds->row_bytes + sizeof(int32_t);
    /* count * per_row may overflow size_t for a count index.h5 merely claims: compare
     * the count with the rows that fit instead */
    if (sh->e.count == 0 || (uint64_t)sh->e.count > (ds->cache_budget - ds->cache_used) / per_row) {
        sh->cache = CACHE_NO;
        return 0;
    }
    size_t bytes = (size_t)sh->e.count * per_row;
    int rc = ensure_open(ds, s);
    if (rc) return rc;
    /* xaligned: on huge pages where the kernel allows (madvise), since the rows are read
     * in a random order: one TLB entry per 2 MB instead of a page walk per row */
    void *x = xaligned((size_t)sh->e.count * ds->row_bytes);
    int32_t *y = xmalloc((size_t)sh->e.count * sizeof(int32_t));
    rc = dataset_shard_read_rows(&ds->info, &sh->h, sh->path, 0, sh->e.count, x, y);
    if (!rc) rc = rows_finite(ds, s, 0, x, sh->e.count);
    if (rc) {
        free(x);
        free(y);
        return rc;
    }
    dataset_shard_close(&sh->h); /* no longer needed */
    ds->nopen--;
    sh->x = x;
    sh->y = y;
    sh->cache = CACHE_HELD;
    ds->cache_used += bytes;
    return 0;
}

/* uint8 datasets: a stored byte has 256 values, so its normalised value is looked up
 * (lut, filled once by dataset_open with the expression below, one rounding per
 * operation: no contraction under -std=c11); float32 datasets compute it per element. */
static float norm_u8(const DatasetInfo *in, int v) { return ((float)v * in->scale - in->mean) / in->std; }

static void convert_row(const Dataset *ds, const void *raw, float *out)
{
    int n = ds->info.sample_size;
    if (ds->info.dtype == DTYPE_UINT8) {
        const uint8_t *r = raw;
        for (int j = 0; j < n; j++) out[j] = ds->lut[r[j]];
    } else {
        const float *r = raw;
        float scale = ds->info.scale, mean = ds->info.mean, std = ds->info.std;
        for (int j = 0; j < n; j++) out[j] = (r[j] * scale - mean) / std;
    }
}

/* row i of the output: normalised into x, or (x NULL) copied as stored into raw */
static void put_row(const Dataset *ds, const void *src, int i, float *x, void *raw)
{
    if (x) convert_row(ds, src, x + (size_t)i * ds->info.sample_size);
    else memcpy((char *)raw + (size_t)i * ds->row_bytes, src, ds->row_bytes);
}

static int check_label(const Dataset *ds, int s, int64_t row, int32_t v)
{
    if (v >= 0 && v < ds->info.num_classes) return 0;
    return err_set(MT_EX_DATAERR, "label %d out of range [0, %d) in shard %s row %lld (sample "
                   "%lld); fix the labels or num_classes in index.h5 (`mpitrain data verify %s` "
                   "checks them all)", (int)v, ds->info.num_classes, ds->sh[s].path,
                   (long long)row, (long long)(ds->sh[s].first + row), ds->info.dir);
}

static int cmp_req(const void *a, const void *b)
{
    const Req *p = a, *q = b;
    if (p->shard != q->shard) return p->shard < q->shard ? -1 : 1;
    if (p->row != q->row) return p->row < q->row ? -1 : 1;
    return p->pos < q->pos ? -1 : p->pos > q->pos;
}

/* The uncached path (mu held): rows of shards that are not cached. */
static int read_uncached(Dataset *ds, const int64_t *idx, int n, float *x, void *rawx, int32_t *y)
{
    size_t nreq = 0;
    if (ds->req_cap < (size_t)n) {
        free(ds->req);
        ds->req_cap = (size_t)n;
        ds->req = xmalloc(ds->req_cap * sizeof(Req));
    }
    for (int i = 0; i < n; i++) {
        int s = shard_of(ds, idx[i]);
        Shard *sh = &ds->sh[s];
        int64_t row = idx[i] - sh->first;
        if (sh->cache == CACHE_HELD) {
            put_row(ds, (const char *)sh->x + (size_t)row * ds->row_bytes, i, x, rawx);
            y[i] = sh->y[row];
            int rc = check_label(ds, s, row, y[i]);
            if (rc) return rc;
        } else {
            ds->req[nreq++] = (Req){s, row, i};
        }
    }
    qsort(ds->req, nreq, sizeof(Req), cmp_req);
    if (!ds->raw) {
        ds->raw_rows = MT_MAX((int64_t)1, (int64_t)(PIECE_BYTES / ds->row_bytes));
        ds->raw = xmalloc((size_t)ds->raw_rows * ds->row_bytes);
        ds->rawy = xmalloc((size_t)ds->raw_rows * sizeof(int32_t));
    }
    for (size_t a = 0; a < nreq;) {
        /* run: consecutive rows of one shard (repeats of a row included) */
        size_t b = a + 1;
        while (b < nreq && ds->req[b].shard == ds->req[a].shard &&
               ds->req[b].row - ds->req[a].row < ds->raw_rows &&
               (ds->req[b].row == ds->req[b - 1].row || ds->req[b].row == ds->req[b - 1].row + 1))
            b++;
        int s = ds->req[a].shard;
        int64_t lo = ds->req[a].row, m = ds->req[b - 1].row - lo + 1;
        int rc = ensure_open(ds, s);
        if (!rc) rc = dataset_shard_read_rows(&ds->info, &ds->sh[s].h, ds->sh[s].path, lo, m,
                                              ds->raw, ds->rawy);
        if (!rc) rc = rows_finite(ds, s, lo, ds->raw, m);
        if (rc) return rc;
        for (size_t r = a; r < b; r++) {
            int64_t k = ds->req[r].row - lo;
            int pos = ds->req[r].pos;
            put_row(ds, (const char *)ds->raw + (size_t)k * ds->row_bytes, pos, x, rawx);
            y[pos] = ds->rawy[k];
            if ((rc = check_label(ds, s, ds->req[r].row, y[pos]))) return rc;
        }
        a = b;
    }
    return 0;
}

static int read_rows(Dataset *ds, const int64_t *idx, int n, float *x, void *rawx, int32_t *y)
{
    if (n <= 0) return 0;
    int all_cached = 1, rc = 0;
    CHECK(pthread_mutex_lock(&ds->mu) == 0);
    for (int i = 0; i < n && !rc; i++) {
        CHECK(idx[i] >= 0 && idx[i] < ds->info.num_samples);
        int s = shard_of(ds, idx[i]);
        if (ds->sh[s].cache == CACHE_UNTRIED) rc = try_cache(ds, s);
        if (ds->sh[s].cache != CACHE_HELD) all_cached = 0;
    }
    if (!rc && !all_cached) rc = read_uncached(ds, idx, n, x, rawx, y);
    CHECK(pthread_mutex_unlock(&ds->mu) == 0);
    if (rc || !all_cached) return rc;
    /* every row is in an immutable cached buffer: copy without locks */
    for (int i = 0; i < n; i++) {
        int s = shard_of(ds, idx[i]);
        const Shard *sh = &ds->sh[s];
        int64_t row = idx[i] - sh->first;
        put_row(ds, (const char *)sh->x + (size_t)row * ds->row_bytes, i, x, rawx);
        y[i] = sh->y[row];
        if ((rc = check_label(ds, s, row, y[i]))) return rc;
    }
    return 0;
}

int dataset_read(Dataset *ds, const int64_t *idx, int n, float *x, int32_t *y)
{
    return read_rows(ds, idx, n, x, NULL, y);
}

int dataset_read_u8(Dataset *ds, const int64_t *idx, int n, uint8_t *x8, int32_t *y)
{
    CHECK(ds->info.dtype == DTYPE_UINT8);
    return read_rows(ds, idx, n, NULL, x8, y);
}

const float *dataset_u8_table(const Dataset *ds)
{
    return ds->info.dtype == DTYPE_UINT8 ? ds->lut : NULL;
}

int dataset_open(const char *dir, int cache_mb, Dataset **out)
{
    DatasetInfo info;
    DatasetShardEntry *e;
    *out = NULL;
    int rc = dataset_index_read(dir, &info, &e);
    if (rc) return rc;
    Dataset *ds = xcalloc(1, sizeof *ds);
    ds->info = info;
    ds->sh = xcalloc((size_t)info.nshards, sizeof(Shard));
    ds->row_bytes = (size_t)info.sample_size * dataset_dtype_size(info.dtype);
    ds->cache_budget = cache_mb > 0 ? (size_t)cache_mb << 20 : 0;
    for (int v = 0; v < 256; v++) ds->lut[v] = norm_u8(&info, v);
    CHECK(pthread_mutex_init(&ds->mu, NULL) == 0);
    int64_t first = 0;
    char path[4096];
    for (int k = 0; k < info.nshards; k++) {
        Shard *sh = &ds->sh[k];
        sh->e = e[k];
        sh->first = first;
        first += e[k].count;
        sh->h.fid = sh->h.xid = sh->h.yid = -1;
        if (!rc) rc = dataset_join(path, sizeof path, dir, e[k].file);
        sh->path = xstrdup(rc ? e[k].file : path);
        if (!rc) rc = dataset_shard_open(&info, &e[k], k, &sh->h);
        if (!rc && k >= MAX_OPEN) dataset_shard_close(&sh->h);
        else if (!rc) ds->nopen++;
    }
    free(e);
    if (rc) {
        dataset_close(ds);
        return rc;
    }
    *out = ds;
    return 0;
}

void dataset_close(Dataset *ds)
{
    if (!ds) return;
    for (int k = 0; k < ds->info.nshards; k++) {
        Shard *sh = &ds->sh[k];
        if (sh->h.fid >= 0) dataset_shard_close(&sh->h);
        free(sh->x);
        free(sh->y);
        free(sh->path);
    }
    free(ds->sh);
    free(ds->req);
    free(ds->raw);
    free(ds->rawy);
    pthread_mutex_destroy(&ds->mu);
    free(ds);
}

/* ---------------------------------------------------------------- permutation */

void dataset_permutation(uint64_t seed, uint64_t epoch, int64_t n, int shuffle, int64_t *perm)
{
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    if (!shuffle) return;
    uint64_t key = rng_key(seed, RNG_SHUFFLE, epoch), w = 0;
    for (int64_t i = n - 1; i > 0; i--) { /* Durstenfeld: swap i with j uniform in [0, i] */
        int64_t j = (int64_t)rng_below(key, &w, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}
