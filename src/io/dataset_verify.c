/* dataset_verify.c — `mpitrain data info` (what index.h5 says, cheap) and
 * `mpitrain data verify` (read every byte of every shard and check it), and the finite
 * check of float32 rows that verify and the reader (dataset.c) share. */
#include "io/dataset.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/common.h"
#include "core/finite.h"
#include "io/dataset_impl.h"

#define VERIFY_PIECE_BYTES (4u << 20)
#define VERIFY_HIST_MAX 65536 /* classes counted and listed (index.h5 may claim 2^31-1) */

int dataset_check_shard_name(const char *index_path, int64_t i, const char *name)
{
    if (!strchr(name, '/') && strcmp(name, ".") != 0 && strcmp(name, "..") != 0) return 0;
    return err_set(MT_EX_DATAERR, "%s: shards[%lld] names the file '%s': a shard must be a plain "
                   "file name in the dataset directory (no '/', not '.' or '..'; "
                   "docs/dataset-format.md); move the file there and list its name only",
                   index_path, (long long)i, name);
}

int dataset_check_finite(const DatasetInfo *in, const char *path, int64_t first, int64_t lo,
                         const void *x, int64_t m)
{
    if (in->dtype != DTYPE_FLOAT32) return 0;
    const float *f = x;
    size_t n = (size_t)m * (size_t)in->sample_size;
    size_t j = finite_first_bad(f, n);
    if (j == n) return 0;
    int64_t r = lo + (int64_t)(j / (size_t)in->sample_size);
    return err_set(MT_EX_DATAERR, "dataset %s: shard %s row %lld (global sample %lld): x[%zu] is "
                   "%s; training data must be finite: fix or drop that sample (`mpitrain data "
                   "verify %s` finds the first one)", in->dir, path, (long long)r,
                   (long long)(first + r), j % (size_t)in->sample_size, finite_kind(f[j]),
                   in->dir);
}

static void print_header(const DatasetInfo *in, FILE *out)
{
    char shape[64];
    int k = 0;
    for (int i = 0; i < in->ndim; i++)
        k += snprintf(shape + k, sizeof shape - (size_t)k, "%s%d", i ? "x" : "", in->shape[i]);
    fprintf(out, "dataset    %s\n", in->dir);
    fprintf(out, "format     %s version %d\n", DATASET_FORMAT, DATASET_VERSION);
    fprintf(out, "samples    %lld in %d shard%s\n", (long long)in->num_samples, in->nshards,
            in->nshards == 1 ? "" : "s");
    fprintf(out, "sample     %s %s (%d values)\n", dataset_dtype_name(in->dtype), shape,
            in->sample_size);
    fprintf(out, "classes    %d\n", in->num_classes);
    fprintf(out, "normalise  x_float = (x * %.9g - %.9g) / %.9g\n", (double)in->scale,
            (double)in->mean, (double)in->std);
}

int dataset_print_info(const char *dir, FILE *out)
{
    DatasetInfo in;
    DatasetShardEntry *e;
    int rc = dataset_index_read(dir, &in, &e);
    if (rc) return rc;
    print_header(&in, out);
    char path[4096], src[1024] = "";
    if (!dataset_join(path, sizeof path, dir, DATASET_INDEX)) {
        h5_read_lock(path, 0);
        hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
        if (f >= 0 && H5Aexists(f, "source") > 0 &&
            dataset_attr_str(f, path, "source", src, sizeof src) != 0)
            src[0] = 0;
        if (f >= 0) H5Fclose(f);
        h5_read_unlock();
        err_clear();
    }
    if (src[0]) fprintf(out, "source     %s\n", src);
    fprintf(out, "shards\n");
    for (int k = 0; k < in.nshards; k++) {
        struct stat st;
        int have = !dataset_join(path, sizeof path, dir, e[k].file) && stat(path, &st) == 0;
        if (have)
            fprintf(out, "  %-24s %10lld samples %10.1f MB\n", e[k].file, (long long)e[k].count,
                    (double)st.st_size / 1e6);
        else
            fprintf(out, "  %-24s %10lld samples    MISSING\n", e[k].file, (long long)e[k].count);
    }
    free(e);
    return 0;
}

/* Attributes scale/mean/std on a shard's x are optional; when present they must agree
 * with index.h5. */
static int check_shard_norm(const DatasetInfo *in, const DatasetShardHandles *h,
                            const char *path)
{
    static const char *const names[3] = {"scale", "mean", "std"};
    const float want[3] = {in->scale, in->mean, in->std};
    int rc = 0;
    h5_read_lock(path, 0);
    for (int i = 0; i < 3 && !rc; i++) {
        double v;
        if (H5Aexists(h->xid, names[i]) <= 0) continue;
        char what[4200];
        snprintf(what, sizeof what, "shard %s x", path);
        if ((rc = dataset_attr_f64(h->xid, what, names[i], &v))) break;
        if ((float)v != want[i])
            rc = err_set(MT_EX_DATAERR, "shard %s: x attribute %s = %.9g but index.h5 says %.9g",
                         path, names[i], v, (double)want[i]);
    }
    h5_read_unlock();
    return rc;
}

int dataset_verify(const char *dir, FILE *out)
{
    DatasetInfo in;
    DatasetShardEntry *e = NULL;
    DatasetShardHandles h = {-1, -1, -1, 0};
    void *x = NULL;
    int32_t *y = NULL;
    int64_t *hist = NULL;
    double t0 = now_s();
    int rc = dataset_index_read(dir, &in, &e);
    if (rc) goto fail;
    print_header(&in, out);
    size_t row = (size_t)in.sample_size * dataset_dtype_size(in.dtype);
    int64_t piece = MT_MAX((int64_t)1, (int64_t)(VERIFY_PIECE_BYTES / row));
    x = xmalloc((size_t)piece * row);
    y = xmalloc((size_t)piece * sizeof(int32_t));
    int nhist = MT_MIN(in.num_classes, VERIFY_HIST_MAX);
    hist = xcalloc((size_t)nhist, sizeof(int64_t));
    int64_t first = 0;
    char path[4096];
    for (int k = 0; k < in.nshards; k++) {
        if ((rc = dataset_join(path, sizeof path, dir, e[k].file))) goto fail;
        if ((rc = dataset_shard_open(&in, &e[k], k, &h))) goto fail;
        if ((rc = check_shard_norm(&in, &h, path))) goto fail;
        for (int64_t lo = 0; lo < e[k].count; lo += piece) {
            int64_t m = MT_MIN(piece, e[k].count - lo);
            if ((rc = dataset_shard_read_rows(&in, &h, path, lo, m, x, y))) goto fail;
            for (int64_t i = 0; i < m; i++) {
                if (y[i] < 0 || y[i] >= in.num_classes) {
                    rc = err_set(MT_EX_DATAERR, "shard %s sample %lld (global sample %lld): label "
                                 "%d out of range [0, %d)", path, (long long)(lo + i),
                                 (long long)(first + lo + i), (int)y[i], in.num_classes);
                    goto fail;
                }
                if (y[i] < nhist) hist[y[i]]++;
            }
            if ((rc = dataset_check_finite(&in, path, first, lo, x, m))) goto fail;
        }
        dataset_shard_close(&h);
        first += e[k].count;
        fprintf(out, "  ok %-24s %10lld samples\n", e[k].file, (long long)e[k].count);
    }
    fprintf(out, "labels     ");
    for (int c = 0; c < nhist; c++)
        fprintf(out, "%s%d:%lld", c ? " " : "", c, (long long)hist[c]);
    if (nhist < in.num_classes) fprintf(out, " (classes %d and above not listed)", nhist);
    fprintf(out, "\nverified   %lld samples in %d shards in %.2f s: all readable, shapes and "
            "dtypes consistent, labels in [0, %d)%s\n", (long long)in.num_samples, in.nshards,
            now_s() - t0, in.num_classes, in.dtype == DTYPE_FLOAT32 ? ", values finite" : "");
    goto done;
fail:
    fprintf(out, "FAILED: %s\n", err_msg());
done:
    if (h.fid >= 0) dataset_shard_close(&h);
    free(e);
    free(x);
    free(y);
    free(hist);
    return rc;
}
