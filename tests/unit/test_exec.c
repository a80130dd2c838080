/* test_exec.c — the micro-batch executor: bits independent of the thread count, the
 * canonical tree, rank splits that reproduce the single-rank gradient bit for bit, the
 * ready callbacks (backward order, ranges tiling the slab), eval chunks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/exec.h"
#include "core/rng.h"

#define IN 40
#define B 32
#define M 8
#define SPEC "dense:24 relu dropout:0.25 dense:16 gelu dense:5"

/* dense layers only (the layer-wise path), widths that leave ragged tiles and several
 * work items per layer */
#define SPEC_DENSE "dense:100 relu dense:70 gelu dense:27 tanh dense:5"

typedef struct {
    Model m;
    float *params, *x;
    int32_t *y;
    int per_mb; /* force the per-micro-batch path */
    const uint8_t *x8;    /* not NULL: the input goes in as these bytes and the table */
    const float *table;
} Fixture;

static void fixture_spec(Fixture *f, const char *spec)
{
    memset(f, 0, sizeof *f);
    assert_int_equal(model_build(&f->m, spec, IN, 5), 0);
    f->params = xaligned(f->m.nparams * sizeof(float));
    model_init_params(&f->m, f->params, INIT_HE, 11);
    f->x = xaligned((size_t)B * IN * sizeof(float));
    f->y = xcalloc(B, sizeof(int32_t));
    uint64_t key = rng_key(5, RNG_TEST, 0);
    for (int i = 0; i < B * IN; i++) f->x[i] = rng_normal(key, (uint64_t)i);
    for (int i = 0; i < B; i++) f->y[i] = (int32_t)(rng_u32(key, 100000 + (uint64_t)i) % 5);
}

static void fixture(Fixture *f) { fixture_spec(f, SPEC); }

static void fixture_free(Fixture *f)
{
    free(f->params);
    free(f->x);
    free(f->y);
    model_free(&f->m);
}

/* gradient of micro-batches [mb_lo, mb_hi) with `threads` threads */
static float *grad_of(Fixture *f, int mb_lo, int mb_hi, int threads, double *loss)
{
    int R = B / M, n = mb_hi - mb_lo;
    ExecConf c = {.threads = threads, .mb_rows = R, .nmb = n, .per_mb = f->per_mb};
    Exec *e = exec_create(&f->m, &c);
    int dense_only = 1;
    for (int l = 0; l < f->m.nlayers; l++) dense_only &= f->m.layers[l].ops->layerwise;
    assert_int_equal(exec_layerwise(e), !f->per_mb && dense_only);
    /* both paths are exercised: pairs accumulated into one slab (T <= n/2, n a power of
     * two) and one slab per micro-batch (T = 5 of 8) */
    if (n == M && threads == 1 && !exec_layerwise(e)) assert_int_equal(exec_pairs(e), 1);
    if (n == M && threads == 5) assert_int_equal(exec_pairs(e), 0);
    float *g = xaligned(f->m.nparams * sizeof(float));
    double mbl[M];
    int64_t corr = 0;
    ExecInput in = f->x8 ? (ExecInput){.x8 = f->x8, .x8_table = f->table} : (ExecInput){.x = f->x};
    exec_train(e, f->params, exec_input_rows(in, (size_t)mb_lo * R, IN), f->y + mb_lo * R, 3, 9, mb_lo,
               1.0f / B, g, mbl, &corr, NULL, NULL, NULL);
    if (loss) *loss = exec_tree_sum_f64(mbl, 0, n);
    exec_destroy(e);
    return g;
}

static void test_threads_same_bits(void **state)
{
    (void)state;
    Fixture f;
    fixture(&f);
    double l1, l2;
    float *g1 = grad_of(&f, 0, M, 1, &l1);
    for (int T = 2; T <= 5; T++) {
        float *gT = grad_of(&f, 0, M, T, &l2);
        assert_memory_equal(g1, gT, f.m.nparams * sizeof(float));
        assert_memory_equal(&l1, &l2, sizeof(double));
        free(gT);
    }
    free(g1);
    fixture_free(&f);
}

/* N ranks of M/N micro-batches each, summed along the tree over ranks, equal N = 1. */
static void test_rank_split_bits(void **state)
{
    (void)state;
    Fixture f;
    fixture(&f);
    size_t P = f.m.nparams;
    float *ref = grad_of(&f, 0, M, 2, NULL);
    for (int N = 2; N <= M; N *= 2) {
        float **part = xcalloc(N, sizeof(float *));
        for (int r = 0; r < N; r++) part[r] = grad_of(&f, r * M / N, (r + 1) * M / N, 1, NULL);
        /* tree over ranks, adjacent first */
        for (int w = 1; w < N; w *= 2)
            for (int r = 0; r < N; r += 2 * w)
                for (size_t i = 0; i < P; i++) part[r][i] = part[r][i] + part[r + w][i];
        assert_memory_equal(ref, part[0], P * sizeof(float));
        for (int r = 0; r < N; r++) free(part[r]);
        free(part);
    }
    /* and the tree is not the sequential sum: (((g0+g1)+g2)+g3)... differs somewhere */
    float *seq = xaligned(P * sizeof(float));
    for (int k = 0; k < M; k++) {
        float *gk = grad_of(&f, k, k + 1, 1, NULL);
        for (size_t i = 0; i < P; i++) seq[i] = k ? seq[i] + gk[i] : gk[i];
        free(gk);
    }
    assert_true(memcmp(seq, ref, P * sizeof(float)) != 0);
    free(seq);
    free(ref);
    fixture_free(&f);
}

typedef struct {
    size_t lo[16], hi[16];
    int n, polls;
} Seen;

static void on_ready(void *arg, size_t lo, size_t hi)
{
    Seen *s = arg;
    assert_true(s->n < 16);
    s->lo[s->n] = lo;
    s->hi[s->n] = hi;
    s->n++;
}
static void on_poll(void *arg) { ((Seen *)arg)->polls++; }

static void test_ready_order(void **state)
{
    (void)state;
    Fixture f;
    fixture(&f);
    for (int T = 1; T <= 3; T++) {
        ExecConf c = {.threads = T, .mb_rows = B / M, .nmb = M};
        Exec *e = exec_create(&f.m, &c);
        float *g = xaligned(f.m.nparams * sizeof(float));
        double mbl[M];
        Seen s = {0};
        exec_train(e, f.params, (ExecInput){.x = f.x}, f.y, 3, 9, 0, 1.0f / B, g, mbl, NULL, on_ready, on_poll, &s);
        assert_int_equal(s.n, 3); /* three dense layers */
        assert_true(s.hi[0] == f.m.nparams);
        for (int i = 1; i < s.n; i++) assert_true(s.hi[i] == s.lo[i - 1]);
        assert_true(s.lo[s.n - 1] == 0);
        assert_true(s.polls > 0);
        free(g);
        exec_destroy(e);
    }
    fixture_free(&f);
}

static void test_eval_chunks(void **state)
{
    (void)state;
    Fixture f;
    fixture(&f);
    double l1[8], l2[8];
    int64_t c1[8], c2[8];
    for (int T = 1; T <= 3; T += 2) {
        ExecConf c = {.threads = T, .mb_rows = 4, .nmb = 1};
        Exec *e = exec_create(&f.m, &c);
        exec_eval(e, f.params, f.x, f.y, 30, 7, T == 1 ? l1 : l2, T == 1 ? c1 : c2);
        exec_destroy(e);
    }
    assert_memory_equal(l1, l2, 5 * sizeof(double)); /* ceil(30/7) = 5 chunks */
    assert_memory_equal(c1, c2, 5 * sizeof(int64_t));
    int64_t tot = 0;
    for (int j = 0; j < 5; j++) {
        assert_true(c1[j] >= 0 && c1[j] <= 7);
        tot += c1[j];
    }
    assert_true(tot <= 30);
    fixture_free(&f);
}

/* The layer-wise path (dense-only models) gives the per-micro-batch path's bits: the
 * gradient and the losses, for any thread count and number of micro-batches (1 .. 8,
 * odd ones included), and rank splits still reproduce the one-rank gradient. */
static void test_layerwise_same_bits(void **state)
{
    (void)state;
    Fixture f;
    fixture_spec(&f, SPEC_DENSE);
    size_t P = f.m.nparams;
    for (int n = 1; n <= M; n++) {
        if (M % n) continue;
        f.per_mb = 1;
        double lref, l;
        float *ref = grad_of(&f, 0, n, 1, &lref);
        f.per_mb = 0;
        for (int T = 1; T <= 3; T++) {
            float *g = grad_of(&f, 0, n, T, &l);
            assert_memory_equal(ref, g, P * sizeof(float));
            assert_memory_equal(&lref, &l, sizeof(double));
            free(g);
        }
        free(ref);
    }
    /* 3 micro-batches (not a power of two) */
    f.per_mb = 1;
    float *ref = grad_of(&f, 0, 3, 2, NULL);
    f.per_mb = 0;
    float *g = grad_of(&f, 0, 3, 2, NULL);
    assert_memory_equal(ref, g, P * sizeof(float));
    free(ref);
    free(g);
    /* two ranks of M/2 micro-batches, summed, equal one rank of M */
    ref = grad_of(&f, 0, M, 2, NULL);
    float *g0 = grad_of(&f, 0, M / 2, 2, NULL), *g1 = grad_of(&f, M / 2, M, 1, NULL);
    for (size_t i = 0; i < P; i++) g0[i] = g0[i] + g1[i];
    assert_memory_equal(ref, g0, P * sizeof(float));
    free(ref);
    free(g0);
    free(g1);
    fixture_free(&f);
}

/* Layer-wise: ready callbacks in backward order, tiling the slab; the chunk hook sees
 * every element exactly once, after the gradient is final. */
static void count_chunk(void *arg, size_t lo, size_t hi)
{
    int *cnt = arg;
    for (size_t i = lo; i < hi; i++) __atomic_add_fetch(&cnt[i], 1, __ATOMIC_RELAXED);
}

static void test_layerwise_ready_and_hook(void **state)
{
    (void)state;
    Fixture f;
    fixture_spec(&f, SPEC_DENSE);
    for (int T = 1; T <= 3; T++) {
        ExecConf c = {.threads = T, .mb_rows = B / M, .nmb = M};
        Exec *e = exec_create(&f.m, &c);
        assert_true(exec_layerwise(e));
        float *g = xaligned(f.m.nparams * sizeof(float));
        double mbl[M];
        Seen s = {0};
        exec_train(e, f.params, (ExecInput){.x = f.x}, f.y, 3, 9, 0, 1.0f / B, g, mbl, NULL, on_ready, on_poll, &s);
        assert_int_equal(s.n, 4);
        assert_true(s.hi[0] == f.m.nparams);
        for (int i = 1; i < s.n; i++) assert_true(s.hi[i] == s.lo[i - 1]);
        assert_true(s.lo[s.n - 1] == 0);
        int *cnt = xcalloc(f.m.nparams, sizeof(int));
        exec_set_chunk_hook(e, count_chunk, cnt);
        exec_train(e, f.params, (ExecInput){.x = f.x}, f.y, 3, 9, 0, 1.0f / B, g, mbl, NULL, NULL, NULL, NULL);
        for (size_t i = 0; i < f.m.nparams; i++) assert_int_equal(cnt[i], 1);
        free(cnt);
        free(g);
        exec_destroy(e);
    }
    fixture_free(&f);
}

/* A uint8 dataset's rows go in as bytes and the table that normalises them (the
 * loader's way, ExecInput.x8): the gradients and losses are those of the floats
 * table[byte] given as floats, on both paths, with 1 and 3 threads, from any first
 * micro-batch (the rows are offset like a rank's). */
static void test_byte_input_same_bits(void **state)
{
    (void)state;
    float table[256];
    for (int v = 0; v < 256; v++) table[v] = ((float)v * (1.0f / 255.0f) - 0.286f) / 0.353f;
    uint8_t *x8 = xaligned((size_t)B * IN);
    uint64_t key = rng_key(6, RNG_TEST, 0);
    const char *specs[2] = {SPEC_DENSE, SPEC};
    for (int sp = 0; sp < 2; sp++)
        for (int per_mb = 0; per_mb < 2; per_mb++) {
            Fixture f;
            fixture_spec(&f, specs[sp]);
            f.per_mb = per_mb;
            for (int i = 0; i < B * IN; i++) {
                x8[i] = (uint8_t)(rng_u32(key, (uint64_t)i) & 255u);
                f.x[i] = table[x8[i]];
            }
            const int T[2] = {1, 3}, lo[2] = {0, 2};
            for (int a = 0; a < 2; a++) {
                double lf, lb;
                f.x8 = NULL;
                float *gf = grad_of(&f, lo[a], M, T[a], &lf);
                f.x8 = x8;
                f.table = table;
                float *gb = grad_of(&f, lo[a], M, T[a], &lb);
                assert_memory_equal(gf, gb, f.m.nparams * sizeof(float));
                assert_memory_equal(&lf, &lb, sizeof(double));
                /* and the bytes were really read: another table gives other gradients */
                float t2[256];
                for (int v = 0; v < 256; v++) t2[v] = table[255 - v];
                f.table = t2;
                float *g2 = grad_of(&f, lo[a], M, T[a], NULL);
                assert_true(memcmp(gf, g2, f.m.nparams * sizeof(float)) != 0);
                f.x8 = NULL;
                free(gf), free(gb), free(g2);
            }
            fixture_free(&f);
        }
    free(x8);
}

static void test_tree_sum_f64(void **state)
{
    (void)state;
    double v[5] = {1e16, 1.0, -1e16, 1.0, 3.0};
    /* T(0,5) = T(0,2) + T(2,5) = (1e16+1) + (-1e16 + (1+3)) */
    double want = (v[0] + v[1]) + (v[2] + (v[3] + v[4]));
    double got = exec_tree_sum_f64(v, 0, 5);
    assert_memory_equal(&want, &got, sizeof(double));
    assert_true(exec_tree_sum_f64(v, 0, 0) == 0.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads_same_bits),
        cmocka_unit_test(test_rank_split_bits),
        cmocka_unit_test(test_ready_order),
        cmocka_unit_test(test_eval_chunks),
        cmocka_unit_test(test_layerwise_same_bits),
        cmocka_unit_test(test_layerwise_ready_and_hook),
        cmocka_unit_test(test_byte_input_same_bits),
        cmocka_unit_test(test_tree_sum_f64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
