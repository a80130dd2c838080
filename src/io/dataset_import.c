/* dataset_import.c — write a sharded HDF5 dataset from IDX (MNIST, Fashion-MNIST;
 * gzip'd or not) or CSV files.  See dataset.h for the schema and the guarantees.
 *
 * Order of work: read and check the whole input (IDX: into memory, it is N*D bytes;
 * CSV: a first pass), only then clear/create the output directory, write the shards
 * (each closed and fsync'd), write index.h5.tmp, fsync, rename to index.h5, fsync the
 * directory.  A reader only trusts a directory with index.h5, so an import that stops
 * half-way is never read as complete.
 *
 * Layout: x chunked with chunks of ~4 MiB of whole rows (measured on 60000x784 uint8:
 * whole-shard reads are fastest with 2-4 MiB chunks, and chunks above HDF5's 1 MiB
 * chunk cache let reads of a few rows go straight to the file instead of reading whole
 * chunks), no compression (random access); y contiguous int32. */
#include "io/dataset.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/common.h"
#include "io/dataset_impl.h"

#define CHUNK_BYTES (4u << 20)

/* ---------------------------------------------------------------- output dir */

static int is_our_file(const char *name)
{
    if (strcmp(name, DATASET_INDEX) == 0 || strcmp(name, DATASET_INDEX ".tmp") == 0) return 1;
    if (strncmp(name, "shard-", 6) != 0) return 0;
    const char *p = name + 6;
    int digits = 0;
    while (*p >= '0' && *p <= '9') p++, digits++;
    return digits >= 5 && strcmp(p, ".h5") == 0;
}

/* Create dir, or clear a previous mpitrain dataset in it (index.h5 first, so it stops
 * being a complete dataset before any shard goes).  Refuses any other content. */
static int prepare_out_dir(const char *dir)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (errno != ENOENT)
            return err_set(MT_EX_CANTCREAT, "output directory %s: %s", dir, strerror(errno));
        if (mkdir_p(dir) != 0)
            return err_set(MT_EX_CANTCREAT, "cannot create output directory %s: %s", dir,
                           strerror(errno));
        return 0;
    }
    if (!S_ISDIR(st.st_mode))
        return err_set(MT_EX_CANTCREAT, "output %s exists and is not a directory", dir);
    DIR *d = opendir(dir);
    if (!d) return err_set(MT_EX_CANTCREAT, "cannot read directory %s: %s", dir, strerror(errno));
    struct dirent *de;
    int ours = 0, rc = 0;
    while ((de = readdir(d)) && !rc) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) continue;
        if (is_our_file(de->d_name)) ours++;
        else
            rc = err_set(MT_EX_CANTCREAT, "output directory %s is not empty and holds %s, which "
                         "is not part of an mpitrain dataset; import into a new or empty "
                         "directory (a previous mpitrain dataset there would be replaced)", dir,
                         de->d_name);
    }
    closedir(d);
    if (rc || !ours) return rc;
    log_info("data import: replacing the previous dataset in %s", dir);
    char path[4096];
    for (int pass = 0; pass < 2 && !rc; pass++) {
        if (pass == 0) {
            if ((rc = dataset_join(path, sizeof path, dir, DATASET_INDEX))) return rc;
            if (unlink(path) != 0 && errno != ENOENT)
                return err_set(MT_EX_CANTCREAT, "cannot remove %s: %s", path, strerror(errno));
            continue;
        }
        if (!(d = opendir(dir)))
            return err_set(MT_EX_CANTCREAT, "cannot read directory %s: %s", dir, strerror(errno));
        while ((de = readdir(d)) && !rc) {
            if (!is_our_file(de->d_name)) continue;
            if ((rc = dataset_join(path, sizeof path, dir, de->d_name))) break;
            if (unlink(path) != 0 && errno != ENOENT)
                rc = err_set(MT_EX_CANTCREAT, "cannot remove %s: %s", path, strerror(errno));
        }
        closedir(d);
    }
    return rc;
}

static int fsync_path(const char *path, int dir)
{
    int fd = open(path, dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) return err_set(MT_EX_IOERR, "cannot open %s to sync it: %s", path, strerror(errno));
    int e = fsync(fd) != 0 && errno != EINVAL ? errno : 0;
    close(fd);
    if (e) return err_set(MT_EX_IOERR, "fsync %s: %s (disk full or failing?)", path, strerror(e));
    return 0;
}

/* ---------------------------------------------------------------- HDF5 writing */

typedef struct {
    const ImportConf *c;
    DatasetInfo info;        /* what index.h5 will say */
    const char *source;      /* for the "source" attribute */
    int k;                   /* current shard */
    int64_t lo, n, filled;   /* its global first row, rows, rows written */
    hid_t fid, xid, yid;
    char path[4096];
} Writer;

static int64_t shard_lo(const Writer *w, int k)
{
    return (int64_t)((__int128)w->info.num_samples * k / w->info.nshards);
}

/* The shard that sample i of n goes to when cut into k near-equal shards. */
static int shard_of_row(int64_t n, int k, int64_t i)
{
    int s = (int)((__int128)i * k / n);
    while (s + 1 < k && (int64_t)((__int128)n * (s + 1) / k) <= i) s++;
    while (s > 0 && (int64_t)((__int128)n * s / k) > i) s--;
    return s;
}

static void shard_name(char *buf, size_t n, int k) { snprintf(buf, n, "shard-%05d.h5", k); }

static int import_fail(int code, const char *what, const char *path)
{
    char det[256];
    h5_detail(det, sizeof det);
    return err_set(code, "cannot %s %s (%s)%s", what, path, det,
                   code == MT_EX_IOERR ? ": disk full or not writable?" : "");
}

static int writer_begin(Writer *w, int k)
{
    char name[64];
    int rc;
    w->k = k;
    w->lo = shard_lo(w, k);
    w->n = shard_lo(w, k + 1) - w->lo;
    w->filled = 0;
    w->fid = w->xid = w->yid = -1;
    shard_name(name, sizeof name, k);
    if ((rc = dataset_join(w->path, sizeof w->path, w->c->out_dir, name))) return rc;
    const DatasetInfo *in = &w->info;
    size_t row = (size_t)in->sample_size * dataset_dtype_size(in->dtype);
    hsize_t dims[4] = {(hsize_t)w->n}, chunk[4];
    chunk[0] = (hsize_t)MT_MIN(w->n, MT_MAX((int64_t)1, (int64_t)(CHUNK_BYTES / row)));
    for (int i = 0; i < in->ndim; i++) dims[i + 1] = chunk[i + 1] = (hsize_t)in->shape[i];
    hid_t sp = -1, pl = -1;
    h5_quiet_lock();
    w->fid = H5Fcreate(w->path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (w->fid < 0) {
        rc = import_fail(MT_EX_CANTCREAT, "create", w->path);
        goto out;
    }
    sp = H5Screate_simple(in->ndim + 1, dims, NULL);
    pl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(pl, in->ndim + 1, chunk);
    H5Pset_fill_time(pl, H5D_FILL_TIME_NEVER);
    w->xid = H5Dcreate2(w->fid, "x", in->dtype == DTYPE_UINT8 ? H5T_STD_U8LE : H5T_IEEE_F32LE, sp,
                        H5P_DEFAULT, pl, H5P_DEFAULT);
    H5Sclose(sp);
    sp = H5Screate_simple(1, dims, NULL);
    w->yid = w->xid < 0 ? -1
                        : H5Dcreate2(w->fid, "y", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT,
                                     H5P_DEFAULT);
    float norm[3] = {in->scale, in->mean, in->std};
    static const char *const nn[3] = {"scale", "mean", "std"};
    herr_t e = w->yid < 0 ? -1 : 0;
    for (int i = 0; i < 3 && !e; i++)
        e = h5_attr_put(w->xid, nn[i], H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, &norm[i], 0);
    if (!e) e = h5_attr_put(w->fid, "first_sample", H5T_STD_I64LE, H5T_NATIVE_INT64, &w->lo, 0);
    if (e) rc = import_fail(MT_EX_IOERR, "write", w->path);
out:
    if (pl >= 0) H5Pclose(pl);
    if (sp >= 0) H5Sclose(sp);
    h5_quiet_unlock();
    return rc;
}

/* Append m rows: x (m, sample_size) raw dtype, y (m). */
static int writer_append(Writer *w, const void *x, const int32_t *y, int64_t m)
{
    CHECK(w->filled + m <= w->n);
    const DatasetInfo *in = &w->info;
    hsize_t start[4] = {(hsize_t)w->filled}, count[4] = {(hsize_t)m};
    for (int i = 0; i < in->ndim; i++) count[i + 1] = (hsize_t)in->shape[i];
    h5_quiet_lock(); /* memory space of the selection's shape: see read_piece */
    hid_t fs = H5Dget_space(w->xid), ms = H5Screate_simple(in->ndim + 1, count, NULL);
    herr_t e = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    if (!e) e = H5Dwrite(w->xid, in->dtype == DTYPE_UINT8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_FLOAT,
                         ms, fs, H5P_DEFAULT, x);
    H5Sclose(fs);
    H5Sclose(ms);
    fs = H5Dget_space(w->yid);
    ms = H5Screate_simple(1, count, NULL);
    if (!e) e = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    if (!e) e = H5Dwrite(w->yid, H5T_NATIVE_INT32, ms, fs, H5P_DEFAULT, y);
    H5Sclose(fs);
    H5Sclose(ms);
    int rc = e < 0 ? import_fail(MT_EX_IOERR, "write", w->path) : 0;
    h5_quiet_unlock();
    w->filled += m;
    return rc;
}

static int writer_end(Writer *w)
{
    herr_t e = 0;
    h5_quiet_lock();
    if (w->yid >= 0) e |= H5Dclose(w->yid);
    if (w->xid >= 0) e |= H5Dclose(w->xid);
    if (w->fid >= 0) e |= H5Fclose(w->fid);
    int rc = e < 0 ? import_fail(MT_EX_IOERR, "write", w->path) : 0;
    h5_quiet_unlock();
    w->fid = w->xid = w->yid = -1;
    if (!rc) rc = fsync_path(w->path, 0);
    return rc;
}

typedef struct {
    char file[DATASET_FILE_LEN];
    int64_t count;
} IndexEntry;

static int write_index(Writer *w)
{
    char tmp[4096], final[4096];
    int rc;
    if ((rc = dataset_join(final, sizeof final, w->c->out_dir, DATASET_INDEX))) return rc;
    if ((rc = dataset_join(tmp, sizeof tmp, w->c->out_dir, DATASET_INDEX ".tmp"))) return rc;
    const DatasetInfo *in = &w->info;
    IndexEntry *ent = xcalloc((size_t)in->nshards, sizeof *ent);
    for (int k = 0; k < in->nshards; k++) {
        shard_name(ent[k].file, sizeof ent[k].file, k);
        ent[k].count = shard_lo(w, k + 1) - shard_lo(w, k);
    }
    int32_t shape[3], version = DATASET_VERSION, classes = in->num_classes;
    for (int i = 0; i < in->ndim; i++) shape[i] = in->shape[i];
    float norm[3] = {in->scale, in->mean, in->std};
    static const char *const nn[3] = {"scale", "mean", "std"};
    hid_t fid, st = -1, mt = -1, ft = -1, sp = -1, d = -1;
    h5_quiet_lock();
    fid = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (fid < 0) {
        rc = import_fail(MT_EX_CANTCREAT, "create", tmp);
        goto out;
    }
    herr_t e = h5_attr_put_str(fid, "format", DATASET_FORMAT);
    if (!e) e = h5_attr_put(fid, "version", H5T_STD_I32LE, H5T_NATIVE_INT32, &version, 0);
    if (!e) e = h5_attr_put(fid, "sample_shape", H5T_STD_I32LE, H5T_NATIVE_INT32, shape,
                        (hsize_t)in->ndim);
    if (!e) e = h5_attr_put_str(fid, "dtype", dataset_dtype_name(in->dtype));
    if (!e) e = h5_attr_put(fid, "num_classes", H5T_STD_I32LE, H5T_NATIVE_INT32, &classes, 0);
    if (!e)
        e = h5_attr_put(fid, "num_samples", H5T_STD_I64LE, H5T_NATIVE_INT64, &in->num_samples, 0);
    for (int i = 0; i < 3 && !e; i++)
        e = h5_attr_put(fid, nn[i], H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, &norm[i], 0);
    if (!e) e = h5_attr_put_str(fid, "source", w->source);
    if (!e) e = h5_attr_put_str(fid, "created_by", "mpitrain data import");
    if (!e) {
        st = H5Tcopy(H5T_C_S1);
        H5Tset_size(st, DATASET_FILE_LEN);
        H5Tset_strpad(st, H5T_STR_NULLTERM);
        mt = H5Tcreate(H5T_COMPOUND, sizeof(IndexEntry));
        H5Tinsert(mt, "file", offsetof(IndexEntry, file), st);
        H5Tinsert(mt, "count", offsetof(IndexEntry, count), H5T_NATIVE_INT64);
        ft = H5Tcreate(H5T_COMPOUND, DATASET_FILE_LEN + 8);
        H5Tinsert(ft, "file", 0, st);
        H5Tinsert(ft, "count", DATASET_FILE_LEN, H5T_STD_I64LE);
        hsize_t n = (hsize_t)in->nshards;
        sp = H5Screate_simple(1, &n, NULL);
        d = H5Dcreate2(fid, "shards", ft, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        e = d < 0 ? -1 : H5Dwrite(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, ent);
    }
    if (d >= 0 && H5Dclose(d) < 0) e = -1;
    if (H5Fclose(fid) < 0) e = -1;
    if (e < 0) rc = import_fail(MT_EX_IOERR, "write", tmp);
out:
    if (sp >= 0) H5Sclose(sp);
    if (ft >= 0) H5Tclose(ft);
    if (mt >= 0) H5Tclose(mt);
    if (st >= 0) H5Tclose(st);
    h5_quiet_unlock();
    free(ent);
    if (!rc) rc = fsync_path(tmp, 0);
    if (!rc && rename(tmp, final) != 0)
        rc = err_set(MT_EX_IOERR, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
    if (!rc) rc = fsync_path(w->c->out_dir, 1);
    return rc;
}

/* ---------------------------------------------------------------- common checks */

static int check_conf(const ImportConf *c)
{
    if (!c->out_dir || !c->out_dir[0])
        return err_set(MT_EX_USAGE, "data import: no output directory given (--out DIR)");
    if (c->shards < 1 || c->shards > DATASET_SHARDS_MAX)
        return err_set(MT_EX_USAGE, "data import: --shards %d must be in [1, %d]", c->shards,
                       DATASET_SHARDS_MAX);
    if (c->num_classes < 0)
        return err_set(MT_EX_USAGE, "data import: --classes %d must be positive (or 0 = max "
                       "label + 1)", c->num_classes);
    return 0;
}

/* Fill info's num_classes, nshards and (when stats_from is set) scale/mean/std. */
static int resolve_classes(const ImportConf *c, DatasetInfo *info, int32_t max_label,
                           int from_classes)
{
    if (!c->num_classes && !from_classes && max_label == INT32_MAX)
        return err_set(MT_EX_DATAERR, "data import: label %d is too large: the number of "
                       "classes (max label + 1) must be at most %d", max_label, INT32_MAX);
    info->num_classes = c->num_classes ? c->num_classes
                                       : from_classes ? from_classes : max_label + 1;
    if (c->shards > info->num_samples)
        return err_set(MT_EX_USAGE, "data import: %d shards for %lld samples; use at most one "
                       "shard per sample", c->shards, (long long)info->num_samples);
    info->nshards = c->shards;
    return 0;
}

static void shape_str(char *buf, size_t n, const DatasetInfo *in)
{
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < in->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%d", i ? "x" : "", in->shape[i]);
}

static int load_stats_from(const ImportConf *c, const DatasetInfo *info, DatasetInfo *from)
{
    DatasetShardEntry *e;
    int rc = dataset_index_read(c->stats_from, from, &e);
    if (rc) return rc;
    free(e);
    int same = from->dtype == info->dtype && from->ndim == info->ndim;
    for (int i = 0; same && i < info->ndim; i++) same = from->shape[i] == info->shape[i];
    if (!same) {
        char a[64], b[64];
        shape_str(a, sizeof a, from);
        shape_str(b, sizeof b, info);
        return err_set(MT_EX_DATAERR, "data import: --stats-from %s holds %s samples of shape %s "
                       "but this input has %s samples of shape %s", c->stats_from,
                       dataset_dtype_name(from->dtype), a, dataset_dtype_name(info->dtype), b);
    }
    return 0;
}

/* ---------------------------------------------------------------- IDX */

typedef struct {
    gzFile g;
    int ndim;
    int64_t dims[4];
} Idx;

static int idx_open(const char *path, const char *what, Idx *f)
{
    memset(f, 0, sizeof *f);
    if (!path || !path[0])
        return err_set(MT_EX_USAGE, "data import: no %s file given (--%s FILE)", what, what);
    if (access(path, R_OK) != 0)
        return err_set(MT_EX_NOINPUT, "%s file %s: %s", what, path, strerror(errno));
    f->g = gzopen(path, "rb");
    if (!f->g) return err_set(MT_EX_NOINPUT, "cannot open %s file %s: %s", what, path, strerror(errno));
    gzbuffer(f->g, 1 << 17);
    unsigned char h[16];
    if (gzread(f->g, h, 4) != 4)
        return err_set(MT_EX_DATAERR, "%s: not an IDX file (shorter than the 4-byte magic)", path);
    if (h[0] != 0 || h[1] != 0 || h[3] < 1 || h[3] > 4)
        return err_set(MT_EX_DATAERR, "%s: bad IDX magic %02x %02x %02x %02x (expected 00 00 08 "
                       "<dims>): not an IDX file", path, h[0], h[1], h[2], h[3]);
    if (h[2] != 0x08)
        return err_set(MT_EX_DATAERR, "%s: IDX element type 0x%02x is not supported (only 0x08, "
                       "unsigned byte)", path, h[2]);
    f->ndim = h[3];
    if (gzread(f->g, h, (unsigned)(4 * f->ndim)) != 4 * f->ndim)
        return err_set(MT_EX_DATAERR, "%s: IDX header ends early (truncated file)", path);
    for (int i = 0; i < f->ndim; i++) {
        f->dims[i] = (int64_t)h[4 * i] << 24 | h[4 * i + 1] << 16 | h[4 * i + 2] << 8 | h[4 * i + 3];
        if (f->dims[i] < 1)
            return err_set(MT_EX_DATAERR, "%s: IDX dimension %d is 0", path, i);
    }
    return 0;
}

/* Read exactly rows * row bytes of the payload into *out (malloc'd, the caller frees it;
 * NULL on error) and check nothing follows.  The buffer grows with the data read, so a
 * header that claims more than the file holds costs no more memory than the file. */
static int idx_read_all(Idx *f, const char *path, uint8_t **out, int64_t rows, size_t row)
{
    size_t total = (size_t)rows * row, got = 0, cap = 0;
    uint8_t *buf = NULL;
    int rc = 0;
    *out = NULL;
    while (got < total && !rc) {
        if (got == cap) {
            cap = MT_MIN(total, MT_MAX(2 * cap, (size_t)1 << 20));
            uint8_t *nb = realloc(buf, cap);
            if (!nb) fatal(MT_EX_OSERR, "out of memory reading %s (%zu bytes)", path, cap);
            buf = nb;
        }
        unsigned want = (unsigned)MT_MIN(cap - got, (size_t)1 << 30);
        int r = gzread(f->g, buf + got, want);
        if (r < 0) {
            int zerr;
            const char *m = gzerror(f->g, &zerr);
            rc = err_set(MT_EX_DATAERR, "%s: read error after %zu bytes: %s", path, got, m);
        } else if (r == 0) {
            rc = err_set(MT_EX_DATAERR, "%s: file ends after %lld of the %lld samples its "
                         "header announces (truncated file?)", path, (long long)(got / row),
                         (long long)rows);
        }
        got += r > 0 ? (size_t)r : 0;
    }
    unsigned char extra;
    if (!rc && gzread(f->g, &extra, 1) == 1)
        rc = err_set(MT_EX_DATAERR, "%s: holds more data than its header's dimensions say "
                     "(%lld samples of %zu bytes): bad IDX dims", path, (long long)rows, row);
    if (rc) free(buf);
    else *out = buf;
    return rc;
}

int dataset_import_idx(const char *images, const char *labels, const ImportConf *c)
{
    Idx fi = {0}, fl = {0};
    uint8_t *x = NULL, *yb = NULL;
    int32_t *y = NULL;
    DatasetInfo info = {0}, from = {0};
    char source[1200];
    int rc = check_conf(c);
    if (!rc) rc = idx_open(images, "images", &fi);
    if (!rc) rc = idx_open(labels, "labels", &fl);
    if (rc) goto out;
    if (fi.ndim < 2) {
        rc = err_set(MT_EX_DATAERR, "%s: IDX images need at least 2 dimensions (count, ...), not "
                     "%d: is this a labels file?", images, fi.ndim);
        goto out;
    }
    if (fl.ndim != 1) {
        rc = err_set(MT_EX_DATAERR, "%s: IDX labels must have 1 dimension (count), not %d: is "
                     "this an images file?", labels, fl.ndim);
        goto out;
    }
    if (fi.dims[0] != fl.dims[0]) {
        rc = err_set(MT_EX_DATAERR, "%s has %lld images but %s has %lld labels; give matching "
                     "files", images, (long long)fi.dims[0], labels, (long long)fl.dims[0]);
        goto out;
    }
    info.num_samples = fi.dims[0];
    info.dtype = DTYPE_UINT8;
    info.ndim = fi.ndim - 1;
    int64_t size = 1; /* stops past INT_MAX: dims < 2^32, so the product cannot overflow */
    for (int i = 0; i < info.ndim && size <= INT_MAX; i++) {
        info.shape[i] = (int)fi.dims[i + 1];
        size *= fi.dims[i + 1];
    }
    if (size > INT_MAX) {
        rc = err_set(MT_EX_DATAERR, "%s: samples of %lld or more values are too large", images,
                     (long long)size);
        goto out;
    }
    info.sample_size = (int)size;
    if ((rc = idx_read_all(&fl, labels, &yb, info.num_samples, 1))) goto out;
    y = xmalloc((size_t)info.num_samples * sizeof(int32_t)); /* 4x the labels read */
    if ((rc = idx_read_all(&fi, images, &x, info.num_samples, (size_t)size))) goto out;
    int32_t maxl = 0;
    for (int64_t i = 0; i < info.num_samples; i++) maxl = MT_MAX(maxl, (int32_t)(y[i] = yb[i]));
    if (c->stats_from && (rc = load_stats_from(c, &info, &from))) goto out;
    if ((rc = resolve_classes(c, &info, maxl, c->stats_from ? from.num_classes : 0))) goto out;
    for (int64_t i = 0; i < info.num_samples; i++)
        if (y[i] >= info.num_classes) {
            rc = err_set(MT_EX_DATAERR, "%s: label %d of sample %lld (would go to shard %lld) is "
                         "out of range [0, %d); give --classes N", labels, (int)y[i], (long long)i,
                         (long long)shard_of_row(info.num_samples, info.nshards, i),
                         info.num_classes);
            goto out;
        }
    if (c->stats_from) {
        info.scale = from.scale, info.mean = from.mean, info.std = from.std;
    } else { /* mean/std of x*scale over all values, in double, stored as float */
        uint64_t s1 = 0, s2 = 0;
        size_t total = (size_t)info.num_samples * (size_t)size;
        for (size_t i = 0; i < total; i++) s1 += x[i], s2 += (uint64_t)x[i] * x[i];
        double scale = 1.0 / 255.0, m = (double)s1 / (double)total;
        double var = (double)s2 / (double)total - m * m;
        info.scale = 1.0f / 255.0f;
        info.mean = (float)(m * scale);
        info.std = var > 0 ? (float)(sqrt(var) * scale) : 1.0f;
    }
    if ((rc = prepare_out_dir(c->out_dir))) goto out;
    snprintf(source, sizeof source, "idx: %s, %s", images, labels);
    Writer w = {.c = c, .info = info, .source = source};
    for (int k = 0; k < info.nshards && !rc; k++) {
        rc = writer_begin(&w, k);
        if (!rc) rc = writer_append(&w, x + (size_t)w.lo * (size_t)size, y + w.lo, w.n);
        int rc2 = writer_end(&w);
        if (!rc) rc = rc2;
    }
    if (!rc) rc = write_index(&w);
out:
    if (fi.g) gzclose(fi.g);
    if (fl.g) gzclose(fl.g);
    free(x);
    free(yb);
    free(y);
    return rc;
}

/* ---------------------------------------------------------------- CSV */

static int count_fields(const char *s)
{
    int n = 1;
    for (; *s; s++) n += *s == ',';
    return n;
}

static int is_blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n') return 0;
    return 1;
}

/* Is the first field a number (else the line is a header)? */
static int first_is_number(const char *s)
{
    char *end;
    strtod(s, &end);
    if (end == s) return 0;
    while (*end == ' ' || *end == '\t') end++;
    return *end == ',' || *end == 0 || *end == '\r' || *end == '\n';
}

/* Parse one data line: label then nf-1 features into feat.  Errors name file:line. */
static int parse_csv_line(char *s, const char *path, int64_t line, int nf, int32_t *label,
                          float *feat)
{
    for (int f = 0; f < nf; f++) {
        char *end, *start = s;
        errno = 0;
        if (f == 0) {
            long v = strtol(s, &end, 10);
            while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n') end++;
            if (end == start || (*end != ',' && *end) || v < 0 || v > INT32_MAX || errno) {
                int len = (int)strcspn(start, ",\r\n");
                return err_set(MT_EX_DATAERR, "%s:%lld: label '%.*s' is not a non-negative "
                               "integer (the first field of a line is the class label)", path,
                               (long long)line, MT_MIN(len, 40), start);
            }
            *label = (int32_t)v;
        } else {
            float v = strtof(s, &end);
            while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n') end++;
            if (end == start || (*end != ',' && *end) || !isfinite(v)) {
                int len = (int)strcspn(start, ",\r\n");
                return err_set(MT_EX_DATAERR, "%s:%lld: field %d '%.*s' is not a finite number",
                               path, (long long)line, f + 1, MT_MIN(len, 40), start);
            }
            feat[f - 1] = v;
        }
        s = *end == ',' ? end + 1 : end;
    }
    return 0;
}

typedef struct {
    FILE *f;
    char *line;
    size_t cap;
    int64_t lineno;
    int header_done;
} CsvReader;

/* Next data line (blank lines and a leading header skipped) into r->line; 1, 0 at EOF. */
static int csv_next(CsvReader *r)
{
    for (;;) {
        if (getline(&r->line, &r->cap, r->f) < 0) return 0;
        r->lineno++;
        if (is_blank(r->line)) continue;
        if (!r->header_done) {
            r->header_done = 1;
            if (!first_is_number(r->line)) continue;
        }
        return 1;
    }
}

static int csv_open(const char *path, CsvReader *r)
{
    memset(r, 0, sizeof *r);
    if (!path || !path[0])
        return err_set(MT_EX_USAGE, "data import: no CSV file given (--csv FILE)");
    r->f = fopen(path, "r");
    if (!r->f) return err_set(MT_EX_NOINPUT, "CSV file %s: %s", path, strerror(errno));
    return 0;
}

static void csv_close(CsvReader *r)
{
    if (r->f) fclose(r->f);
    free(r->line);
    r->f = NULL;
    r->line = NULL;
}

int dataset_import_csv(const char *csv, const ImportConf *c)
{
    CsvReader r;
    DatasetInfo info = {0}, from = {0};
    float *buf = NULL;
    int32_t *ybuf = NULL;
    int nf = 0, rc = check_conf(c);
    int64_t first_line = 0;
    int32_t maxl = 0, label;
    if (rc) return rc;
    if ((rc = csv_open(csv, &r))) return rc;
    /* pass 1: count and check every line */
    while (csv_next(&r)) {
        int n = count_fields(r.line);
        if (!nf) {
            nf = n;
            first_line = r.lineno;
            if (nf < 2) {
                rc = err_set(MT_EX_DATAERR, "%s:%lld: a line needs a label and at least one "
                             "feature, separated by commas", csv, (long long)r.lineno);
                break;
            }
            buf = xmalloc((size_t)(nf - 1) * sizeof(float));
        } else if (n != nf) {
            rc = err_set(MT_EX_DATAERR, "%s:%lld: %d fields, but line %lld has %d (label + %d "
                         "features); every line must have the same number", csv,
                         (long long)r.lineno, n, (long long)first_line, nf, nf - 1);
            break;
        }
        if ((rc = parse_csv_line(r.line, csv, r.lineno, nf, &label, buf))) break;
        if (c->num_classes && label >= c->num_classes) {
            rc = err_set(MT_EX_DATAERR, "%s:%lld: label %d is out of range [0, %d) (sample %lld)",
                         csv, (long long)r.lineno, (int)label, c->num_classes,
                         (long long)info.num_samples);
            break;
        }
        maxl = MT_MAX(maxl, label);
        info.num_samples++;
    }
    csv_close(&r);
    free(buf);
    buf = NULL;
    if (rc) return rc;
    if (info.num_samples == 0) return err_set(MT_EX_DATAERR, "%s: no samples in the file", csv);
    info.dtype = DTYPE_FLOAT32;
    info.ndim = 1;
    info.shape[0] = info.sample_size = nf - 1;
    info.scale = 1, info.mean = 0, info.std = 1;
    if (c->stats_from) {
        if ((rc = load_stats_from(c, &info, &from))) return rc;
        info.scale = from.scale, info.mean = from.mean, info.std = from.std;
    }
    if ((rc = resolve_classes(c, &info, maxl, c->stats_from ? from.num_classes : 0))) return rc;
    if (maxl >= info.num_classes)
        return err_set(MT_EX_DATAERR, "%s: label %d is out of range [0, %d) of --stats-from %s; "
                       "give --classes N", csv, (int)maxl, info.num_classes, c->stats_from);
    if ((rc = prepare_out_dir(c->out_dir))) return rc;

    /* pass 2: write, a chunk of rows at a time */
    char source[1100];
    snprintf(source, sizeof source, "csv: %s", csv);
    Writer w = {.c = c, .info = info, .source = source};
    int64_t rows = MT_MAX((int64_t)1, (int64_t)(CHUNK_BYTES / ((size_t)info.sample_size * 4)));
    buf = xmalloc((size_t)rows * (size_t)info.sample_size * sizeof(float));
    ybuf = xmalloc((size_t)rows * sizeof(int32_t));
    if ((rc = csv_open(csv, &r))) goto out;
    for (int k = 0; k < info.nshards && !rc; k++) {
        rc = writer_begin(&w, k);
        while (!rc && w.filled < w.n) {
            int64_t m = MT_MIN(rows, w.n - w.filled);
            for (int64_t i = 0; i < m && !rc; i++) {
                if (!csv_next(&r)) {
                    rc = err_set(MT_EX_IOERR, "%s: the file changed while it was imported", csv);
                    break;
                }
                rc = parse_csv_line(r.line, csv, r.lineno, nf, &ybuf[i],
                                    buf + (size_t)i * (size_t)info.sample_size);
            }
            if (!rc) rc = writer_append(&w, buf, ybuf, m);
        }
        int rc2 = writer_end(&w);
        if (!rc) rc = rc2;
    }
    csv_close(&r);
    if (!rc) rc = write_index(&w);
out:
    free(buf);
    free(ybuf);
    return rc;
}
