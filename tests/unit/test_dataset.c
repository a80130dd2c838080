/* test_dataset.c — sharded HDF5 datasets: IDX (gzip'd, written here with zlib) and CSV
 * import, round trip of values (exact bits of the normalisation) and labels, info and
 * verify, open/verify/import errors with their codes and texts (huge index values, shard
 * names outside the directory), NaN/inf features refused by verify and by the reader
 * (cached and not), the whole-shard cache (on, off, partly) and the per-epoch
 * permutation (pinned values). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <hdf5.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/common.h"
#include "io/dataset.h"

static char g_tmp[256];

static int rm_cb(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)s, (void)f, (void)w;
    return remove(p);
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_tmp, sizeof g_tmp, "%s/mt-dataset-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_tmp)) return -1;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* the tests' own HDF5 calls stay quiet */
    err_clear();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    nftw(g_tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static const char *P(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_tmp, name);
    return buf[k];
}

/* ---------------------------------------------------------------- synthetic data */

/* sample i, value j (uint8 images) */
static uint8_t pix(int64_t i, int j) { return (uint8_t)((i * 7 + j * 13 + (i * j) % 11) % 256); }
static int32_t lab(int64_t i) { return (int32_t)((i * 5 + 1) % 3); }

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

/* gzip'd IDX file: magic 00 00 type ndim, dims big-endian, then payload. */
static void write_idx(const char *path, int type, int ndim, const uint32_t *dims,
                      const void *data, size_t bytes)
{
    gzFile g = gzopen(path, "wb");
    assert_non_null(g);
    unsigned char h[4 + 16] = {0, 0, (unsigned char)type, (unsigned char)ndim};
    for (int i = 0; i < ndim; i++) put_be32(h + 4 + 4 * i, dims[i]);
    assert_int_equal(gzwrite(g, h, (unsigned)(4 + 4 * ndim)), 4 + 4 * ndim);
    if (bytes) assert_int_equal(gzwrite(g, data, (unsigned)bytes), (int)bytes);
    gzclose(g);
}

/* images (n, rows, cols) and labels (n) as images.gz/labels.gz under the tmp dir. */
static void make_idx(int64_t n, int rows, int cols)
{
    int d = rows * cols;
    uint8_t *x = malloc((size_t)n * d), *y = malloc((size_t)n);
    for (int64_t i = 0; i < n; i++) {
        for (int j = 0; j < d; j++) x[i * d + j] = pix(i, j);
        y[i] = (uint8_t)lab(i);
    }
    uint32_t di[3] = {(uint32_t)n, (uint32_t)rows, (uint32_t)cols}, dl[1] = {(uint32_t)n};
    write_idx(P("images.gz"), 8, 3, di, x, (size_t)n * d);
    write_idx(P("labels.gz"), 8, 1, dl, y, (size_t)n);
    free(x);
    free(y);
}

static int import_idx(const char *out, int shards, int classes)
{
    ImportConf c = {.out_dir = out, .shards = shards, .num_classes = classes};
    err_clear();
    return dataset_import_idx(P("images.gz"), P("labels.gz"), &c);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void assert_msg_has(const char *needle)
{
    if (!strstr(err_msg(), needle)) fail_msg("message '%s' lacks '%s'", err_msg(), needle);
}

/* mean/std as import computes them (over x/255, double, rounded to float). */
static void ref_stats(int64_t n, int d, float *mean, float *std)
{
    double s1 = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++)
        for (int j = 0; j < d; j++) s1 += pix(i, j), s2 += (double)pix(i, j) * pix(i, j);
    double m = s1 / ((double)n * d), v = s2 / ((double)n * d) - m * m;
    *mean = (float)(m / 255.0);
    *std = (float)(sqrt(v) / 255.0);
}

/* ---------------------------------------------------------------- HDF5 tampering */

static int64_t read_shard_counts(const char *dir, int64_t *counts, int cap)
{
    char p[512];
    snprintf(p, sizeof p, "%s/index.h5", dir);
    hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t d = H5Dopen2(f, "shards", H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    assert_true(n <= cap);
    hid_t mt = H5Tcreate(H5T_COMPOUND, sizeof(int64_t));
    H5Tinsert(mt, "count", 0, H5T_NATIVE_INT64);
    assert_true(H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, counts) >= 0);
    H5Tclose(mt);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
    return n;
}

/* Replace dataset `name` of a shard by one of type `t` and the given dims, filled with
 * zeros (the written values do not matter: type/shape checks must catch it). */
static void rewrite_dataset(const char *shard, const char *name, hid_t t, int rank,
                            const hsize_t *dims)
{
    hid_t f = H5Fopen(shard, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    assert_true(H5Ldelete(f, name, H5P_DEFAULT) >= 0);
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(d >= 0);
    hsize_t n = 1;
    for (int i = 0; i < rank; i++) n *= dims[i];
    void *z = calloc(n, 8);
    assert_true(H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, z) >= 0);
    free(z);
    H5Dclose(d);
    H5Sclose(sp);
    H5Fclose(f);
}

static void set_label(const char *shard, hsize_t row, int32_t v)
{
    hid_t f = H5Fopen(shard, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t d = H5Dopen2(f, "y", H5P_DEFAULT), fs = H5Dget_space(d);
    hsize_t one = 1;
    hid_t ms = H5Screate_simple(1, &one, NULL);
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, &row, NULL, &one, NULL);
    assert_true(H5Dwrite(d, H5T_NATIVE_INT32, ms, fs, H5P_DEFAULT, &v) >= 0);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Dclose(d);
    H5Fclose(f);
}

static char *verify_output(const char *dir, int *rc)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    err_clear();
    *rc = dataset_verify(dir, f);
    fclose(f);
    return buf;
}

static void expect_verify_fail(const char *dir, int code, const char *needle)
{
    int rc;
    char *out = verify_output(dir, &rc);
    if (rc != code) fail_msg("verify returned %d, expected %d; output:\n%s", rc, code, out);
    if (!strstr(out, "FAILED: ") || !strstr(out, needle))
        fail_msg("verify output lacks FAILED and '%s':\n%s", needle, out);
    free(out);
}

static void expect_open_fail(const char *dir, int code, const char *needle)
{
    Dataset *ds = (Dataset *)1;
    err_clear();
    int rc = dataset_open(dir, 64, &ds);
    if (rc != code) fail_msg("open returned %d (%s), expected %d", rc, err_msg(), code);
    assert_null(ds);
    assert_msg_has(needle);
}

/* ---------------------------------------------------------------- import round trips */

static void test_import_idx_roundtrip(void **state)
{
    (void)state;
    const int64_t n = 103;
    make_idx(n, 5, 4);
    const char *dir = P("ds");
    assert_int_equal(import_idx(dir, 3, 0), 0);
    assert_int_equal(access(P("ds/index.h5.tmp"), F_OK), -1);
    int64_t counts[8];
    assert_int_equal(read_shard_counts(dir, counts, 8), 3);
    assert_int_equal(counts[0], 34);
    assert_int_equal(counts[1], 34);
    assert_int_equal(counts[2], 35);

    for (int cache = 0; cache <= 1; cache++) {
        Dataset *ds;
        assert_int_equal(dataset_open(dir, cache ? 16 : 0, &ds), 0);
        const DatasetInfo *in = dataset_info(ds);
        assert_string_equal(in->dir, dir);
        assert_int_equal(in->ndim, 2);
        assert_int_equal(in->shape[0], 5);
        assert_int_equal(in->shape[1], 4);
        assert_int_equal(in->sample_size, 20);
        assert_int_equal(in->dtype, DTYPE_UINT8);
        assert_int_equal(in->num_classes, 3);
        assert_int_equal(in->num_samples, n);
        assert_int_equal(in->nshards, 3);
        float mean, std;
        ref_stats(n, 20, &mean, &std);
        assert_true(in->scale == 1.0f / 255.0f);
        assert_true(in->mean == mean);
        assert_true(in->std == std);
        /* every sample, in a scrambled order (several shards per call) */
        int64_t idx[103];
        for (int64_t i = 0; i < n; i++) idx[i] = (i * 37) % n;
        float x[103 * 20];
        int32_t y[103];
        assert_int_equal(dataset_read(ds, idx, (int)n, x, y), 0);
        for (int64_t i = 0; i < n; i++) {
            assert_int_equal(y[i], lab(idx[i]));
            for (int j = 0; j < 20; j++) {
                float want = ((float)pix(idx[i], j) * in->scale - in->mean) / in->std;
                if (memcmp(&x[i * 20 + j], &want, 4) != 0)
                    fail_msg("sample %lld value %d: %a != %a", (long long)idx[i], j,
                             (double)x[i * 20 + j], (double)want);
            }
        }
        dataset_close(ds);
    }
}

static void test_import_csv_roundtrip(void **state)
{
    (void)state;
    write_text(P("d.csv"), "label,a,b,c\n"
                           "2, 0.5,-1.25e3,7\n"
                           "0,1e-7,3.14159274,-0\r\n"
                           "\n"
                           "1,16777217,0.1,2\n"
                           "4,-8,9,10\n"
                           "3,1,2,3\n");
    ImportConf c = {.out_dir = P("csvds"), .shards = 2};
    assert_int_equal(dataset_import_csv(P("d.csv"), &c), 0);
    Dataset *ds;
    assert_int_equal(dataset_open(P("csvds"), 0, &ds), 0);
    const DatasetInfo *in = dataset_info(ds);
    assert_int_equal(in->dtype, DTYPE_FLOAT32);
    assert_int_equal(in->ndim, 1);
    assert_int_equal(in->shape[0], 3);
    assert_int_equal(in->num_samples, 5);
    assert_int_equal(in->num_classes, 5);
    assert_int_equal(in->nshards, 2);
    assert_true(in->scale == 1.0f && in->mean == 0.0f && in->std == 1.0f);
    int64_t idx[5] = {4, 3, 2, 1, 0};
    float x[15];
    int32_t y[5];
    assert_int_equal(dataset_read(ds, idx, 5, x, y), 0);
    const float want[5][3] = {{0.5f, -1.25e3f, 7}, {1e-7f, 3.14159274f, -0.0f},
                              {16777217.0f, 0.1f, 2}, {-8, 9, 10}, {1, 2, 3}};
    const int32_t wy[5] = {2, 0, 1, 4, 3};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(y[i], wy[idx[i]]);
        assert_memory_equal(&x[i * 3], want[idx[i]], 12);
    }
    dataset_close(ds);
}

static void test_info_verify_good(void **state)
{
    (void)state;
    make_idx(50, 3, 3);
    assert_int_equal(import_idx(P("ds"), 2, 0), 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_int_equal(dataset_print_info(P("ds"), f), 0);
    fclose(f);
    assert_non_null(strstr(buf, "samples    50 in 2 shards"));
    assert_non_null(strstr(buf, "sample     uint8 3x3 (9 values)"));
    assert_non_null(strstr(buf, "classes    3"));
    assert_non_null(strstr(buf, "shard-00001.h5"));
    free(buf);
    int rc;
    buf = verify_output(P("ds"), &rc);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(buf, "verified   50 samples in 2 shards"));
    assert_non_null(strstr(buf, "labels     0:17 1:17 2:16"));
    assert_null(strstr(buf, "FAILED"));
    free(buf);
}

/* The test split normalised with the train split's statistics. */
static void test_import_stats_from(void **state)
{
    (void)state;
    make_idx(60, 4, 4);
    assert_int_equal(import_idx(P("train"), 1, 5), 0);
    make_idx(20, 4, 4);
    char train[512], test[512];
    snprintf(train, sizeof train, "%s", P("train"));
    snprintf(test, sizeof test, "%s", P("test"));
    ImportConf c = {.out_dir = test, .shards = 1, .stats_from = train};
    assert_int_equal(dataset_import_idx(P("images.gz"), P("labels.gz"), &c), 0);
    Dataset *a, *b;
    assert_int_equal(dataset_open(train, 0, &a), 0);
    assert_int_equal(dataset_open(test, 0, &b), 0);
    const DatasetInfo *ia = dataset_info(a), *ib = dataset_info(b);
    assert_true(ia->mean == ib->mean && ia->std == ib->std && ia->scale == ib->scale);
    assert_int_equal(ib->num_classes, 5);
    float m20, s20;
    ref_stats(20, 16, &m20, &s20);
    assert_true(ib->mean != m20); /* not its own statistics */
    dataset_close(a);
    dataset_close(b);
    /* another sample shape is refused */
    make_idx(20, 2, 8);
    err_clear();
    assert_int_equal(dataset_import_idx(P("images.gz"), P("labels.gz"), &c), MT_EX_DATAERR);
    assert_msg_has("--stats-from");
    assert_msg_has("uint8 samples of shape 4x4 but this input has uint8 samples of shape 2x8");
}

static void test_out_dir_policy(void **state)
{
    (void)state;
    make_idx(30, 2, 2);
    /* a previous dataset is replaced, stale shards included */
    assert_int_equal(import_idx(P("ds"), 3, 0), 0);
    assert_int_equal(access(P("ds/shard-00002.h5"), F_OK), 0);
    assert_int_equal(import_idx(P("ds"), 2, 0), 0);
    assert_int_equal(access(P("ds/shard-00002.h5"), F_OK), -1);
    Dataset *ds;
    assert_int_equal(dataset_open(P("ds"), 0, &ds), 0);
    assert_int_equal(dataset_info(ds)->nshards, 2);
    dataset_close(ds);
    /* a directory with anything else is refused and left alone */
    assert_int_equal(mkdir(P("other"), 0777), 0);
    write_text(P("other/notes.txt"), "keep me");
    assert_int_equal(import_idx(P("other"), 1, 0), MT_EX_CANTCREAT);
    assert_msg_has("notes.txt");
    assert_int_equal(access(P("other/notes.txt"), F_OK), 0);
    assert_int_equal(access(P("other/index.h5"), F_OK), -1);
    /* nested new directories are created */
    assert_int_equal(import_idx(P("a/b/c"), 1, 0), 0);
    assert_int_equal(access(P("a/b/c/index.h5"), F_OK), 0);
}

/* ---------------------------------------------------------------- import errors */

static void test_idx_errors(void **state)
{
    (void)state;
    ImportConf c = {.out_dir = P("out"), .shards = 1};
    /* missing file: NOINPUT naming it */
    err_clear();
    assert_int_equal(dataset_import_idx(P("nope.gz"), P("nope2.gz"), &c), MT_EX_NOINPUT);
    assert_msg_has("nope.gz");
    /* bad magic */
    write_text(P("junk"), "this is not an IDX file");
    make_idx(10, 2, 2);
    assert_int_equal(dataset_import_idx(P("junk"), P("labels.gz"), &c), MT_EX_DATAERR);
    assert_msg_has("bad IDX magic");
    assert_msg_has("junk");
    /* labels given as images and images as labels */
    assert_int_equal(dataset_import_idx(P("labels.gz"), P("images.gz"), &c), MT_EX_DATAERR);
    assert_msg_has("at least 2 dimensions");
    /* count mismatch */
    uint8_t y9[9] = {0};
    uint32_t d9 = 9;
    write_idx(P("labels9.gz"), 8, 1, &d9, y9, 9);
    assert_int_equal(dataset_import_idx(P("images.gz"), P("labels9.gz"), &c), MT_EX_DATAERR);
    assert_msg_has("has 10 images but");
    assert_msg_has("has 9 labels");
    /* truncated payload: header says 10 images, data for 7 */
    uint8_t x[40] = {0};
    uint32_t di[3] = {10, 2, 2};
    write_idx(P("short.gz"), 8, 3, di, x, 28);
    assert_int_equal(dataset_import_idx(P("short.gz"), P("labels.gz"), &c), MT_EX_DATAERR);
    assert_msg_has("ends after 7 of the 10 samples");
    /* more data than the dims say */
    uint32_t dl[1] = {10};
    uint8_t y11[11] = {0};
    write_idx(P("long.gz"), 8, 1, dl, y11, 11);
    assert_int_equal(dataset_import_idx(P("images.gz"), P("long.gz"), &c), MT_EX_DATAERR);
    assert_msg_has("bad IDX dims");
    /* unsupported element type (0x0D float) */
    write_idx(P("float.gz"), 0x0D, 3, di, x, 40);
    assert_int_equal(dataset_import_idx(P("float.gz"), P("labels.gz"), &c), MT_EX_DATAERR);
    assert_msg_has("element type 0x0d");
    /* label out of range of --classes: names file, sample and shard */
    c.num_classes = 2;
    c.shards = 2;
    assert_int_equal(dataset_import_idx(P("images.gz"), P("labels.gz"), &c), MT_EX_DATAERR);
    assert_msg_has("label 2 of sample 2 (would go to shard 0) is out of range [0, 2)");
    /* more shards than samples */
    c.num_classes = 0;
    c.shards = 11;
    assert_int_equal(dataset_import_idx(P("images.gz"), P("labels.gz"), &c), MT_EX_USAGE);
    /* nothing was written by any of these */
    assert_int_equal(access(P("out"), F_OK), -1);
}

static void expect_csv_error(const char *text, int classes, const char *needle)
{
    write_text(P("bad.csv"), text);
    ImportConf c = {.out_dir = P("csvout"), .shards = 1, .num_classes = classes};
    err_clear();
    assert_int_equal(dataset_import_csv(P("bad.csv"), &c), MT_EX_DATAERR);
    assert_msg_has(needle);
    assert_int_equal(access(P("csvout"), F_OK), -1);
}

static void test_csv_errors(void **state)
{
    (void)state;
    char want[600];
    snprintf(want, sizeof want, "%s:4: 3 fields, but line 2 has 4", P("bad.csv"));
    expect_csv_error("y,a,b,c\n1,2,3,4\n0,1,1,1\n2,5,5\n", 0, want);
    snprintf(want, sizeof want, "%s:2: field 3 'x7' is not a finite number", P("bad.csv"));
    expect_csv_error("1,2,3\n0,1,x7\n", 0, want);
    expect_csv_error("1,2,3\n0,1,nan\n", 0, "field 3 'nan' is not a finite number");
    snprintf(want, sizeof want, "%s:3: label '-1' is not a non-negative integer", P("bad.csv"));
    expect_csv_error("1,2,3\n0,1,2\n-1,1,2\n", 0, want);
    expect_csv_error("1,2,3\n1.5,1,2\n", 0, "label '1.5'");
    snprintf(want, sizeof want, "%s:2: label 3 is out of range [0, 3)", P("bad.csv"));
    expect_csv_error("1,2,3\n3,1,2\n", 3, want);
    expect_csv_error("label,a\n", 0, "no samples");
    expect_csv_error("5\n", 0, "needs a label and at least one feature");
    ImportConf c = {.out_dir = P("csvout"), .shards = 1};
    err_clear();
    assert_int_equal(dataset_import_csv(P("missing.csv"), &c), MT_EX_NOINPUT);
    assert_msg_has("missing.csv");
}

/* ---------------------------------------------------------------- open/verify errors */

static void test_missing_dir_and_index(void **state)
{
    (void)state;
    expect_open_fail(P("nothing"), MT_EX_NOINPUT, P("nothing"));
    expect_verify_fail(P("nothing"), MT_EX_NOINPUT, P("nothing"));
    make_idx(20, 2, 2);
    assert_int_equal(import_idx(P("ds"), 2, 0), 0);
    assert_int_equal(unlink(P("ds/index.h5")), 0);
    expect_open_fail(P("ds"), MT_EX_NOINPUT, "index.h5");
    /* an index that is not a dataset index */
    hid_t f = H5Fcreate(P("ds/index.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(f);
    expect_open_fail(P("ds"), MT_EX_DATAERR, "attribute 'format' is missing");
}

static void test_missing_shard(void **state)
{
    (void)state;
    make_idx(20, 2, 2);
    assert_int_equal(import_idx(P("ds"), 3, 0), 0);
    assert_int_equal(unlink(P("ds/shard-00001.h5")), 0);
    expect_open_fail(P("ds"), MT_EX_NOINPUT, "shard 1 (");
    assert_msg_has("shard-00001.h5) of dataset");
    expect_verify_fail(P("ds"), MT_EX_NOINPUT, "shard-00001.h5");
}

static void test_truncated_shard(void **state)
{
    (void)state;
    make_idx(200, 8, 8);
    assert_int_equal(import_idx(P("ds"), 2, 0), 0);
    struct stat st;
    assert_int_equal(stat(P("ds/shard-00001.h5"), &st), 0);
    assert_int_equal(truncate(P("ds/shard-00001.h5"), st.st_size / 2), 0);
    expect_open_fail(P("ds"), MT_EX_DATAERR, "shard-00001.h5");
    assert_msg_has("truncated");
    expect_verify_fail(P("ds"), MT_EX_DATAERR, "cannot open shard");
}

static void test_wrong_dtype(void **state)
{
    (void)state;
    make_idx(20, 2, 3);
    assert_int_equal(import_idx(P("ds"), 2, 0), 0);
    hsize_t dims[3] = {10, 2, 3};
    rewrite_dataset(P("ds/shard-00000.h5"), "x", H5T_IEEE_F64LE, 3, dims);
    expect_open_fail(P("ds"), MT_EX_DATAERR, "x has dtype float64 but index.h5 says uint8");
    assert_msg_has("shard-00000.h5");
    expect_verify_fail(P("ds"), MT_EX_DATAERR, "x has dtype float64");
    rewrite_dataset(P("ds/shard-00000.h5"), "x", H5T_STD_I8LE, 3, dims);
    expect_open_fail(P("ds"), MT_EX_DATAERR, "x has dtype int8");
    rewrite_dataset(P("ds/shard-00000.h5"), "x", H5T_STD_U8LE, 3, dims);
    rewrite_dataset(P("ds/shard-00000.h5"), "y", H5T_IEEE_F32LE, 1, dims);
    expect_open_fail(P("ds"), MT_EX_DATAERR, "y has dtype float32");
    /* y as int64 (numpy's default integer) is accepted */
    rewrite_dataset(P("ds/shard-00000.h5"), "y", H5T_STD_I64LE, 1, dims);
    int rc;
    char *out = verify_output(P("ds"), &rc);
    assert_int_equal(rc, 0);
    free(out);
}

static void test_wrong_shape(void **state)
{
    (void)state;
    make_idx(20, 2, 3);
    assert_int_equal(import_idx(P("ds"), 2, 0), 0);
    /* same number of values, other sample shape */
    hsize_t t[3] = {10, 3, 2};
    rewrite_dataset(P("ds/shard-00001.h5"), "x", H5T_STD_U8LE, 3, t);
    expect_open_fail(P("ds"), MT_EX_DATAERR, "x has shape (10, 3, 2) but index.h5 says (10, 2, 3)");
    expect_verify_fail(P("ds"), MT_EX_DATAERR, "shard-00001.h5: x has shape (10, 3, 2)");
    hsize_t flat[2] = {10, 6};
    rewrite_dataset(P("ds/shard-00001.h5"), "x", H5T_STD_U8LE, 2, flat);
    expect_open_fail(P("ds"), MT_EX_DATAERR, "x has shape (10, 6)");
    /* row count differs from the index */
    hsize_t rows[3] = {9, 2, 3};
    rewrite_dataset(P("ds/shard-00001.h5"), "x", H5T_STD_U8LE, 3, rows);
    expect_open_fail(P("ds"), MT_EX_DATAERR, "x has shape (9, 2, 3) but index.h5 says (10, 2, 3)");
    hsize_t ok[3] = {10, 2, 3}, y9 = 9;
    rewrite_dataset(P("ds/shard-00001.h5"), "x", H5T_STD_U8LE, 3, ok);
    rewrite_dataset(P("ds/shard-00001.h5"), "y", H5T_STD_I32LE, 1, &y9);
    expect_open_fail(P("ds"), MT_EX_DATAERR, "y has shape (9) but index.h5 says (10)");
}

static void test_label_out_of_range(void **state)
{
    (void)state;
    make_idx(30, 2, 2);
    assert_int_equal(import_idx(P("ds"), 3, 0), 0); /* 10 per shard, classes 3 */
    const int32_t bad_values[2] = {3, -2};
    char want[600];
    for (int v = 0; v < 2; v++) {
        int32_t bad = bad_values[v];
        set_label(P("ds/shard-00001.h5"), 5, bad);
        snprintf(want, sizeof want, "shard %s sample 5 (global sample 15): label %d out of range "
                 "[0, 3)", P("ds/shard-00001.h5"), (int)bad);
        expect_verify_fail(P("ds"), MT_EX_DATAERR, want);
        for (int cache = 0; cache <= 1; cache++) {
            Dataset *ds;
            assert_int_equal(dataset_open(P("ds"), cache, &ds), 0); /* headers are fine */
            float x[8];
            int32_t y[2];
            int64_t good[2] = {14, 16}, badidx[2] = {3, 15};
            assert_int_equal(dataset_read(ds, good, 2, x, y), 0);
            err_clear();
            assert_int_equal(dataset_read(ds, badidx, 2, x, y), MT_EX_DATAERR);
            snprintf(want, sizeof want, "label %d out of range [0, 3) in shard %s row 5 (sample "
                     "15)", (int)bad, P("ds/shard-00001.h5"));
            assert_msg_has(want);
            dataset_close(ds);
        }
    }
}

static void test_float_nan_verify(void **state)
{
    (void)state;
    write_text(P("d.csv"), "0,1,2\n1,3,4\n");
    ImportConf c = {.out_dir = P("ds"), .shards = 1};
    assert_int_equal(dataset_import_csv(P("d.csv"), &c), 0);
    hid_t f = H5Fopen(P("ds/shard-00000.h5"), H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "x", H5P_DEFAULT);
    float v[4] = {1, 2, 3, NAN};
    assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) >= 0);
    H5Dclose(d);
    H5Fclose(f);
    expect_verify_fail(P("ds"), MT_EX_DATAERR, "row 1 (global sample 1): x[1] is NaN");
}

/* Overwrite x[row][col] of a float32 shard with v. */
static void set_x(const char *shard, hsize_t row, hsize_t col, float v)
{
    hid_t f = H5Fopen(shard, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t d = H5Dopen2(f, "x", H5P_DEFAULT), fs = H5Dget_space(d);
    hsize_t start[2] = {row, col}, one[2] = {1, 1};
    hid_t ms = H5Screate_simple(2, one, NULL);
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, one, NULL);
    assert_true(H5Dwrite(d, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, &v) >= 0);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Dclose(d);
    H5Fclose(f);
}

/* A NaN or inf feature is refused where the reader reads it: the whole shard when it is
 * cached (on its first touch, any row), the requested rows otherwise; the message names
 * the dataset, the shard, the row, the global sample and the element.  A shard without
 * one reads as before. */
static void test_float_nonfinite_read(void **state)
{
    (void)state;
    char csv[4096];
    size_t len = 0;
    for (int i = 0; i < 40; i++)
        len += (size_t)snprintf(csv + len, sizeof csv - len, "%d,%d.5,%d,-%d\n", i % 3, i, i * 2, i);
    write_text(P("d.csv"), csv);
    ImportConf c = {.out_dir = P("ds"), .shards = 2}; /* 20 rows each, 3 features */
    assert_int_equal(dataset_import_csv(P("d.csv"), &c), 0);
    const float bad_values[3] = {NAN, INFINITY, -INFINITY};
    const char *names[3] = {"NaN", "inf", "-inf"};
    char want[1200];
    for (int b = 0; b < 3; b++) {
        set_x(P("ds/shard-00001.h5"), 7, 2, bad_values[b]);
        snprintf(want, sizeof want, "dataset %s: shard %s row 7 (global sample 27): x[2] is %s",
                 P("ds"), P("ds/shard-00001.h5"), names[b]);
        expect_verify_fail(P("ds"), MT_EX_DATAERR, want);
        for (int cache = 0; cache <= 1; cache++) {
            Dataset *ds;
            assert_int_equal(dataset_open(P("ds"), cache, &ds), 0); /* headers are fine */
            float x[9];
            int32_t y[3];
            int64_t good[3] = {3, 19, 26}, bad[3] = {5, 27, 28};
            err_clear();
            int rc = dataset_read(ds, good, 3, x, y);
            if (cache) { /* row 26 is in the cached shard 1: refused as a whole */
                assert_int_equal(rc, MT_EX_DATAERR);
                assert_msg_has(want);
            } else {
                assert_int_equal(rc, 0);
                assert_true(x[0] == 3.5f && y[2] == 26 % 3);
            }
            err_clear();
            assert_int_equal(dataset_read(ds, bad, 3, x, y), MT_EX_DATAERR);
            assert_msg_has(want);
            int64_t first[2] = {0, 19}; /* shard 0 alone is fine either way */
            assert_int_equal(dataset_read(ds, first, 2, x, y), 0);
            dataset_close(ds);
        }
    }
}

/* Replace the "shards" table of DIR/index.h5 by n entries (fixed strings, as import). */
static void write_shard_table(const char *dir, const char *const *files, const int64_t *counts,
                              int n)
{
    char p[512];
    snprintf(p, sizeof p, "%s/index.h5", dir);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    assert_true(H5Ldelete(f, "shards", H5P_DEFAULT) >= 0);
    typedef struct { char file[64]; int64_t count; } Row;
    Row rows[8];
    assert_true(n <= 8);
    memset(rows, 0, sizeof rows);
    for (int i = 0; i < n; i++) {
        snprintf(rows[i].file, sizeof rows[i].file, "%s", files[i]);
        rows[i].count = counts[i];
    }
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, 64);
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(Row));
    H5Tinsert(t, "file", offsetof(Row, file), st);
    H5Tinsert(t, "count", offsetof(Row, count), H5T_NATIVE_INT64);
    hsize_t dim = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &dim, NULL);
    hid_t d = H5Dcreate2(f, "shards", t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(d >= 0 && H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows) >= 0);
    H5Dclose(d);
    H5Sclose(sp);
    H5Tclose(t);
    H5Tclose(st);
    H5Fclose(f);
}

/* Set integer attribute `name` of DIR/index.h5 (any existing one replaced). */
static void set_index_attr(const char *dir, const char *name, int64_t v)
{
    char p[512];
    snprintf(p, sizeof p, "%s/index.h5", dir);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    if (H5Aexists(f, name) > 0) H5Adelete(f, name);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, H5T_NATIVE_INT64, sp, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Fclose(f);
}

/* index.h5 values beyond int32/int64: the messages say what is allowed (no overflow). */
static void test_index_huge_values(void **state)
{
    (void)state;
    make_idx(20, 2, 2);
    assert_int_equal(import_idx(P("ds"), 2, 0), 0);
    set_index_attr(P("ds"), "num_classes", INT64_C(1) << 40);
    expect_open_fail(P("ds"), MT_EX_DATAERR, "num_classes = 1099511627776 must be in [1, 2147483647]");
    set_index_attr(P("ds"), "num_classes", 3);
    const char *files[3] = {"shard-00000.h5", "shard-00001.h5", "shard-00001.h5"};
    const int64_t counts[3] = {INT64_C(1) << 62, INT64_C(1) << 62, (INT64_C(1) << 62) - 599};
    write_shard_table(P("ds"), files, counts, 3);
    expect_open_fail(P("ds"), MT_EX_DATAERR, "the shard counts sum to more than "
                     "9223372036854775807 (at shards[1]) but num_samples is 20");
    expect_verify_fail(P("ds"), MT_EX_DATAERR, "sum to more than 9223372036854775807");
}

/* Shard names are plain file names in the dataset directory: a path that leads out of
 * it (.., absolute) or into a subdirectory is refused by open, verify and info. */
static void test_shard_names_plain(void **state)
{
    (void)state;
    make_idx(20, 2, 2);
    assert_int_equal(import_idx(P("ds"), 2, 0), 0);
    const char *bad[4] = {"../elsewhere/shard.h5", "/etc/passwd", "sub/shard-00001.h5", ".."};
    char want[600];
    for (int i = 0; i < 4; i++) {
        const char *files[2] = {"shard-00000.h5", bad[i]};
        const int64_t counts[2] = {10, 10};
        write_shard_table(P("ds"), files, counts, 2);
        snprintf(want, sizeof want, "%s/index.h5: shards[1] names the file '%s': a shard must be "
                 "a plain file name in the dataset directory", P("ds"), bad[i]);
        expect_open_fail(P("ds"), MT_EX_DATAERR, want);
        expect_verify_fail(P("ds"), MT_EX_DATAERR, want);
        char *out = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&out, &len);
        err_clear();
        assert_int_equal(dataset_print_info(P("ds"), f), MT_EX_DATAERR);
        fclose(f);
        free(out);
        assert_msg_has(want);
    }
}

/* ---------------------------------------------------------------- cache */

/* 1800 samples of 40x25 bytes in 3 shards of 600 KB: cache_mb = 1 holds one shard, so
 * a read mixes cached and uncached shards.  Every mode must give the same bits. */
static void test_cache_modes_identical(void **state)
{
    (void)state;
    const int n = 1800, d = 1000, k = 500;
    make_idx(n, 40, 25);
    assert_int_equal(import_idx(P("ds"), 3, 0), 0);
    Dataset *ds[3];
    const int mb[3] = {0, 1, 64};
    int64_t *idx = malloc(sizeof(int64_t) * k);
    for (int i = 0; i < k; i++) idx[i] = ((int64_t)i * 1237 + (i % 7 == 0 ? 0 : 11)) % n;
    idx[3] = idx[4] = 77; /* a repeated row */
    idx[5] = 78;          /* and a run */
    float *x[3];
    int32_t *y[3];
    for (int m = 0; m < 3; m++) {
        assert_int_equal(dataset_open(P("ds"), mb[m], &ds[m]), 0);
        x[m] = malloc(sizeof(float) * k * d);
        y[m] = malloc(sizeof(int32_t) * k);
        /* twice: the second read of the partly cached dataset takes the mixed path */
        assert_int_equal(dataset_read(ds[m], idx, k, x[m], y[m]), 0);
        assert_int_equal(dataset_read(ds[m], idx, k, x[m], y[m]), 0);
    }
    for (int m = 1; m < 3; m++) {
        assert_memory_equal(x[0], x[m], sizeof(float) * k * d);
        assert_memory_equal(y[0], y[m], sizeof(int32_t) * k);
    }
    for (int i = 0; i < k; i++) assert_int_equal(y[0][i], lab(idx[i]));
    /* the stored bytes (what the loader hands to the executor): the same rows and labels
     * in every cache mode, and the table maps them to dataset_read's floats bit for bit */
    uint8_t *x8 = malloc((size_t)k * d);
    int32_t *y8 = malloc(sizeof(int32_t) * k);
    for (int m = 0; m < 3; m++) {
        const float *tab = dataset_u8_table(ds[m]);
        assert_non_null(tab);
        const DatasetInfo *in = dataset_info(ds[m]);
        for (int v = 0; v < 256; v++) {
            float want = ((float)v * in->scale - in->mean) / in->std;
            assert_memory_equal(&tab[v], &want, sizeof want);
        }
        memset(x8, 0, (size_t)k * d);
        assert_int_equal(dataset_read_u8(ds[m], idx, k, x8, y8), 0);
        assert_int_equal(dataset_read_u8(ds[m], idx, k, x8, y8), 0);
        assert_memory_equal(y8, y[0], sizeof(int32_t) * k);
        for (int i = 0; i < k; i++)
            for (int j = 0; j < d; j++) {
                assert_int_equal(x8[(size_t)i * d + j], pix(idx[i], j));
                assert_memory_equal(&tab[x8[(size_t)i * d + j]], &x[0][(size_t)i * d + j], sizeof(float));
            }
    }
    free(x8);
    free(y8);
    for (int m = 0; m < 3; m++) {
        dataset_close(ds[m]);
        free(x[m]);
        free(y[m]);
    }
    free(idx);
}

typedef struct {
    Dataset *ds;
    const int64_t *idx;
    int n, reps;
    float *x;
    int32_t *y;
    int rc;
} ReadJob;

static void *read_thread(void *arg)
{
    ReadJob *j = arg;
    for (int r = 0; r < j->reps && !j->rc; r++) j->rc = dataset_read(j->ds, j->idx, j->n, j->x, j->y);
    return NULL;
}

/* Two threads reading one Dataset at once (partly cached) get what one thread gets. */
static void test_concurrent_reads(void **state)
{
    (void)state;
    const int n = 1800, d = 1000, k = 64;
    make_idx(n, 40, 25);
    assert_int_equal(import_idx(P("ds"), 3, 0), 0);
    Dataset *ds, *ref;
    assert_int_equal(dataset_open(P("ds"), 1, &ds), 0);
    assert_int_equal(dataset_open(P("ds"), 0, &ref), 0);
    int64_t idx[2][64];
    for (int i = 0; i < k; i++) idx[0][i] = (i * 331) % n, idx[1][i] = (i * 997 + 5) % n;
    ReadJob j[2];
    pthread_t th[2];
    for (int t = 0; t < 2; t++) {
        j[t] = (ReadJob){ds, idx[t], k, 20, malloc(sizeof(float) * k * d), malloc(4 * k), 0};
        assert_int_equal(pthread_create(&th[t], NULL, read_thread, &j[t]), 0);
    }
    float *x = malloc(sizeof(float) * k * d);
    int32_t y[64];
    for (int t = 0; t < 2; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(j[t].rc, 0);
        assert_int_equal(dataset_read(ref, idx[t], k, x, y), 0);
        assert_memory_equal(x, j[t].x, sizeof(float) * k * d);
        assert_memory_equal(y, j[t].y, sizeof(int32_t) * k);
        free(j[t].x);
        free(j[t].y);
    }
    free(x);
    dataset_close(ds);
    dataset_close(ref);
}

/* ---------------------------------------------------------------- permutation */

static void test_permutation(void **state)
{
    (void)state;
    enum { N = 1000 };
    int64_t *a = malloc(sizeof(int64_t) * N), *b = malloc(sizeof(int64_t) * N);
    char *seen = calloc(N, 1);
    dataset_permutation(42, 3, N, 1, a);
    for (int i = 0; i < N; i++) {
        assert_true(a[i] >= 0 && a[i] < N);
        assert_false(seen[a[i]]);
        seen[a[i]] = 1;
    }
    dataset_permutation(42, 3, N, 1, b);
    assert_memory_equal(a, b, sizeof(int64_t) * N);
    dataset_permutation(42, 4, N, 1, b);
    assert_memory_not_equal(a, b, sizeof(int64_t) * N);
    dataset_permutation(43, 3, N, 1, b);
    assert_memory_not_equal(a, b, sizeof(int64_t) * N);
    dataset_permutation(42, 3, N, 0, b);
    for (int i = 0; i < N; i++) assert_int_equal(b[i], i);
    /* pinned (also computed by an independent Python Philox): Fisher-Yates from the top, j = rng_below(rng_key(seed, RNG_SHUFFLE, epoch),
     * &w, i + 1) with w counting from 0 */
    int64_t p[10];
    dataset_permutation(42, 0, 10, 1, p);
    const int64_t want0[10] = {5, 0, 7, 3, 9, 1, 8, 6, 2, 4};
    assert_memory_equal(p, want0, sizeof p);
    dataset_permutation(42, 1, 10, 1, p);
    const int64_t want1[10] = {0, 3, 6, 4, 1, 5, 9, 8, 2, 7};
    assert_memory_equal(p, want1, sizeof p);
    dataset_permutation(7, 0, N, 1, a);
    const int64_t want_big[5] = {495, 124, 978, 506, 172};
    assert_memory_equal(a, want_big, sizeof want_big);
    dataset_permutation(7, 0, 1, 1, p);
    assert_int_equal(p[0], 0);
    free(a);
    free(b);
    free(seen);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_import_idx_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_import_csv_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_info_verify_good, setup, teardown),
        cmocka_unit_test_setup_teardown(test_import_stats_from, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_dir_policy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idx_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_csv_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_dir_and_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_shard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_shard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_dtype, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_label_out_of_range, setup, teardown),
        cmocka_unit_test_setup_teardown(test_float_nan_verify, setup, teardown),
        cmocka_unit_test_setup_teardown(test_float_nonfinite_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_index_huge_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shard_names_plain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_modes_identical, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_permutation, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
