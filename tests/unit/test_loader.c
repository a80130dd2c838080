/* test_loader.c — the prefetching batch loader: rows of a step follow the contract
 * (perm of the epoch, global batch, micro-batch range), do not depend on how the
 * micro-batches are split over ranks, on the prefetch depth or on the cache; read errors
 * reach the consumer of that step; destroy works at any time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "io/dataset.h"
#include "io/loader.h"

enum { N = 1200, D = 300 };  /* 3 shards of 400 x 300 float32 = 480 KB */

static char g_tmp[256], g_dir[512];

static int rm_cb(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)s, (void)f, (void)w;
    return remove(p);
}

/* feature 0 of sample i is i itself, so a row names its sample */
static float feat(int i, int j) { return j == 0 ? (float)i : (float)((i * j) % 1000) * 0.25f; }

static int setup_group(void **state)
{
    (void)state;
    snprintf(g_tmp, sizeof g_tmp, "%s/mt-loader-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(g_tmp)) return -1;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    char csv[512];
    snprintf(csv, sizeof csv, "%s/d.csv", g_tmp);
    snprintf(g_dir, sizeof g_dir, "%s/ds", g_tmp);
    FILE *f = fopen(csv, "w");
    if (!f) return -1;
    for (int i = 0; i < N; i++) {
        fprintf(f, "%d", i % 7);
        for (int j = 0; j < D; j++) fprintf(f, ",%g", (double)feat(i, j));
        fputc('\n', f);
    }
    fclose(f);
    ImportConf c = {.out_dir = g_dir, .shards = 3};
    return dataset_import_csv(csv, &c) == 0 ? 0 : -1;
}

static int teardown_group(void **state)
{
    (void)state;
    nftw(g_tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static LoaderConf conf(int B, int M, int lo, int hi, int prefetch)
{
    return (LoaderConf){.seed = 9, .shuffle = 1, .batch = B, .micro_batches = M, .mb_lo = lo,
                        .mb_hi = hi, .prefetch = prefetch};
}

/* The contract: rows [lo*B/M, hi*B/M) of perm_epoch[pos*B ...]. */
static int expected_idx(const LoaderConf *c, uint64_t step, int64_t *out)
{
    static int64_t perm[N];
    int64_t spe = N / c->batch;
    dataset_permutation(c->seed, step / (uint64_t)spe, N, c->shuffle, perm);
    int64_t pos = (int64_t)(step % (uint64_t)spe);
    int r0 = c->mb_lo * c->batch / c->micro_batches, r1 = c->mb_hi * c->batch / c->micro_batches;
    for (int r = r0; r < r1; r++) out[r - r0] = perm[pos * c->batch + r];
    return r1 - r0;
}

static void test_matches_contract(void **state)
{
    (void)state;
    Dataset *ds, *ref;
    assert_int_equal(dataset_open(g_dir, 64, &ds), 0);
    assert_int_equal(dataset_open(g_dir, 0, &ref), 0);
    LoaderConf c = conf(16, 4, 1, 3, 2);
    Loader *ld;
    assert_int_equal(loader_create(ds, &c, 70, &ld), 0);
    assert_int_equal(loader_steps_per_epoch(ld), 75);
    int64_t idx[16];
    float x[16 * D];
    int32_t y[16];
    for (uint64_t s = 70; s < 160; s++) { /* crosses the epoch boundaries at 75 and 150 */
        Batch *b;
        assert_int_equal(loader_next(ld, s, &b), 0);
        assert_int_equal(b->step, s);
        assert_int_equal(b->n, 8);
        assert_true(b->wait_s >= 0);
        int n = expected_idx(&c, s, idx);
        assert_int_equal(n, 8);
        assert_int_equal(dataset_read(ref, idx, n, x, y), 0);
        assert_memory_equal(b->x, x, sizeof(float) * n * D);
        assert_memory_equal(b->y, y, sizeof(int32_t) * n);
        for (int i = 0; i < n; i++) assert_true(b->x[(size_t)i * D] == (float)idx[i]);
        loader_release(ld, b);
    }
    loader_destroy(ld);
    /* shuffle off: step 0 is samples 0..B-1 in order */
    c = conf(16, 4, 0, 4, 1);
    c.shuffle = 0;
    assert_int_equal(loader_create(ds, &c, 0, &ld), 0);
    Batch *b;
    assert_int_equal(loader_next(ld, 0, &b), 0);
    for (int i = 0; i < 16; i++) {
        assert_true(b->x[(size_t)i * D] == (float)i);
        assert_int_equal(b->y[i], i % 7);
    }
    loader_release(ld, b);
    loader_destroy(ld);
    dataset_close(ds);
    dataset_close(ref);
}

/* rank 0's rows followed by rank 1's are the single rank's rows, for any prefetch depth
 * and any cache (off, partial: 1 MB holds 2 of the 3 shards, all). */
static void test_split_prefetch_cache_invariant(void **state)
{
    (void)state;
    const int cache[3] = {0, 1, 64}, pf[3] = {1, 3, 6};
    const int B = 32, M = 8;
    const uint64_t first = 30, steps = 20;
    float *all = malloc(sizeof(float) * steps * B * D);
    int32_t *ally = malloc(sizeof(int32_t) * steps * B);
    for (int v = 0; v < 3; v++) {
        Dataset *ds;
        assert_int_equal(dataset_open(g_dir, cache[v], &ds), 0);
        /* split at micro-batch 3 (uneven halves), rank loaders running side by side */
        LoaderConf c0 = conf(B, M, 0, 3, pf[v]), c1 = conf(B, M, 3, 8, pf[(v + 1) % 3]);
        LoaderConf call = conf(B, M, 0, 8, pf[(v + 2) % 3]);
        Loader *l0, *l1, *la;
        assert_int_equal(loader_create(ds, &c0, first, &l0), 0);
        assert_int_equal(loader_create(ds, &c1, first, &l1), 0);
        assert_int_equal(loader_create(ds, &call, first, &la), 0);
        for (uint64_t s = first; s < first + steps; s++) {
            Batch *b0, *b1, *ba;
            assert_int_equal(loader_next(l0, s, &b0), 0);
            assert_int_equal(loader_next(l1, s, &b1), 0);
            assert_int_equal(loader_next(la, s, &ba), 0);
            assert_int_equal(b0->n, 12);
            assert_int_equal(b1->n, 20);
            assert_int_equal(ba->n, 32);
            assert_memory_equal(ba->x, b0->x, sizeof(float) * 12 * D);
            assert_memory_equal(ba->x + 12 * D, b1->x, sizeof(float) * 20 * D);
            assert_memory_equal(ba->y, b0->y, sizeof(int32_t) * 12);
            assert_memory_equal(ba->y + 12, b1->y, sizeof(int32_t) * 20);
            size_t o = (size_t)(s - first) * B;
            if (v == 0) {
                memcpy(all + o * D, ba->x, sizeof(float) * B * D);
                memcpy(ally + o, ba->y, sizeof(int32_t) * B);
            } else {
                assert_memory_equal(all + o * D, ba->x, sizeof(float) * B * D);
                assert_memory_equal(ally + o, ba->y, sizeof(int32_t) * B);
            }
            loader_release(l0, b0);
            loader_release(l1, b1);
            loader_release(la, ba);
        }
        loader_destroy(l0);
        loader_destroy(l1);
        loader_destroy(la);
        dataset_close(ds);
    }
    free(all);
    free(ally);
}

/* Holding batches, skipping steps, stopping early. */
static void test_hold_skip_stop(void **state)
{
    (void)state;
    Dataset *ds, *ref;
    assert_int_equal(dataset_open(g_dir, 0, &ds), 0);
    assert_int_equal(dataset_open(g_dir, 0, &ref), 0);
    LoaderConf c = conf(8, 2, 0, 2, 2);
    Loader *ld;
    /* destroy right after create, and after a batch was taken and is still held */
    assert_int_equal(loader_create(ds, &c, 0, &ld), 0);
    loader_destroy(ld);
    assert_int_equal(loader_create(ds, &c, 5, &ld), 0);
    Batch *a, *b, *d;
    assert_int_equal(loader_next(ld, 5, &a), 0);
    assert_int_equal(loader_next(ld, 6, &b), 0); /* two held at once (prefetch 2) */
    assert_int_equal(a->step, 5);
    assert_int_equal(b->step, 6);
    loader_release(ld, a);
    loader_release(ld, b);
    /* skip 7..9: step 10 still has its own rows */
    assert_int_equal(loader_next(ld, 10, &d), 0);
    int64_t idx[8];
    float x[8 * D];
    int32_t y[8];
    expected_idx(&c, 10, idx);
    assert_int_equal(dataset_read(ref, idx, 8, x, y), 0);
    assert_memory_equal(d->x, x, sizeof x);
    assert_memory_equal(d->y, y, sizeof y);
    loader_destroy(ld); /* d still held, thread waiting for a free slot */
    dataset_close(ds);
    dataset_close(ref);
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

static void test_read_error_reaches_consumer(void **state)
{
    (void)state;
    char shard[600];
    snprintf(shard, sizeof shard, "%s/shard-00000.h5", g_dir);
    /* label 99 at global sample 20 (shard 0 row 20); restored at the end */
    set_label(shard, 20, 99);

    for (int cache = 0; cache <= 1; cache++) {
        Dataset *ds;
        assert_int_equal(dataset_open(g_dir, cache ? 64 : 0, &ds), 0);
        LoaderConf c = conf(16, 1, 0, 1, 3);
        c.shuffle = 0;
        Loader *ld;
        assert_int_equal(loader_create(ds, &c, 0, &ld), 0);
        Batch *b = NULL;
        assert_int_equal(loader_next(ld, 0, &b), 0);
        loader_release(ld, b);
        err_clear();
        assert_int_equal(loader_next(ld, 1, &b), MT_EX_DATAERR); /* rows 16..31 */
        assert_null(b);
        char want[800];
        snprintf(want, sizeof want, "step 1 (epoch 0): label 99 out of range [0, 7) in shard %s "
                 "row 20 (sample 20)", shard);
        if (!strstr(err_msg(), want)) fail_msg("message '%s' lacks '%s'", err_msg(), want);
        assert_int_equal(loader_next(ld, 2, &b), 0); /* later steps still come */
        assert_int_equal(b->step, 2);
        loader_release(ld, b);
        loader_destroy(ld);
        dataset_close(ds);
    }
    set_label(shard, 20, 20 % 7);
}

static void test_config_errors(void **state)
{
    (void)state;
    Dataset *ds;
    assert_int_equal(dataset_open(g_dir, 0, &ds), 0);
    Loader *ld = (Loader *)1;
    LoaderConf c = conf(10, 4, 0, 4, 1);
    assert_int_equal(loader_create(ds, &c, 0, &ld), MT_EX_CONFIG);
    assert_null(ld);
    assert_non_null(strstr(err_msg(), "batch 10 must be a positive multiple of the number of "
                           "micro-batches 4"));
    c = conf(16, 4, 2, 2, 1);
    assert_int_equal(loader_create(ds, &c, 0, &ld), MT_EX_CONFIG);
    assert_non_null(strstr(err_msg(), "micro-batch range [2, 2)"));
    c = conf(16, 4, 0, 5, 1);
    assert_int_equal(loader_create(ds, &c, 0, &ld), MT_EX_CONFIG);
    c = conf(16, 4, 0, 4, 0);
    assert_int_equal(loader_create(ds, &c, 0, &ld), MT_EX_CONFIG);
    assert_non_null(strstr(err_msg(), "prefetch 0"));
    c = conf(2048, 4, 0, 4, 1);
    assert_int_equal(loader_create(ds, &c, 0, &ld), MT_EX_CONFIG);
    assert_non_null(strstr(err_msg(), "has 1200 samples, fewer than one batch of 2048"));
    dataset_close(ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_contract),
        cmocka_unit_test(test_split_prefetch_cache_invariant),
        cmocka_unit_test(test_hold_skip_stop),
        cmocka_unit_test(test_read_error_reaches_consumer),
        cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests(tests, setup_group, teardown_group);
}
