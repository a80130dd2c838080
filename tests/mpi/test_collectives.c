/* MPI_NP: 1 2 3 4
 *
 * test_collectives.c — the deterministic collectives (coll.h) against references computed
 * locally from every rank's inputs: bitwise for COMM_DET (canonical tree, with the fold
 * for N not a power of two), within the stated tolerance for COMM_FAST;
 * N-invariance over micro-batches; non-blocking progress; bad arguments.  The shard
 * layout itself is tests/unit/test_shard.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/collref.h"
#include "common/mpitest.h"
#include "core/common.h"
#include "parallel/coll.h"
#include "parallel/comm.h"
#include "parallel/shard.h"

/* ---- inputs ---- */

static double gen_f64(uint64_t seed, int who, size_t i)
{
    uint64_t h = mix(seed ^ mix((uint64_t)who * 0x51ed + i));
    double m = 1.0 + (double)(h >> 11) / 9007199254740992.0;
    return ((h & 1) ? -1.0 : 1.0) * ldexp(m, (int)((h >> 3) % 41) - 20);
}

static int64_t gen_i64(uint64_t seed, int who, size_t i)
{
    return (int64_t)(mix(seed ^ mix((uint64_t)who * 77 + i)) >> 20) - ((int64_t)1 << 43);
}

/* ---- reference trees ---- */

static double tree_f64(const double *v, int n)
{
    if (n == 1) return v[0];
    return tree_f64(v, n / 2) + tree_f64(v + n / 2, n / 2);
}

static double det_ref_f64(const double *p, int N)
{
    int P = pow2_floor(N), E = N - P;
    double v[64];
    for (int i = 0; i < P; i++) v[i] = i < E ? p[2 * i] + p[2 * i + 1] : p[i + E];
    return tree_f64(v, P);
}

static uint32_t bits_f32(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static uint64_t bits_f64(double f)
{
    uint64_t u;
    memcpy(&u, &f, 8);
    return u;
}

/* ---- comms under test ---- */

static Comm *make_comm(size_t segment, int window, size_t doubling_max)
{
    CommConf f;
    comm_conf_default(&f);
    if (segment) f.segment_bytes = segment;
    if (window) f.window = window;
    f.doubling_max_bytes = doubling_max;
    Comm *c = NULL;
    int rc = comm_create(&c, &f);
    if (rc) fprintf(stderr, "comm_create: %s\n", err_msg());
    assert_int_equal(rc, 0);
    return c;
}

/* default; tiny segments and window 2 (many segments through a reused ring) with
 * halving everywhere; doubling for every size */
static const struct {
    size_t segment;
    int window;
    size_t doubling_max;
} CONFS[] = {{0, 0, (size_t)64 << 10}, {4096, 2, 0}, {8192, 3, (size_t)1 << 40}};
#define NCONF (sizeof CONFS / sizeof CONFS[0])

static const size_t SIZES[] = {0, 1, 5, 1000, 4095, 4096, 4097, 3 * 4096 + 5, 10 * 4096 + 123, 70001};
static const size_t OFFS[] = {0, 3, 2 * 4096 + 1};
#define PAD 37
#define SENTINEL 0x7fc0dead

/* ---- tests ---- */

/* Fill buf[0, hi+PAD) with sentinels outside [lo, hi) and this rank's input inside. */
static float *input_f32(uint64_t seed, size_t lo, size_t hi, int rank)
{
    float *buf = xmalloc((hi + PAD) * sizeof(float));
    uint32_t s = SENTINEL;
    for (size_t i = 0; i < hi + PAD; i++) memcpy(&buf[i], &s, 4);
    for (size_t i = lo; i < hi; i++) buf[i] = gen_f32(seed, rank, i);
    return buf;
}

static int sentinels_ok(const float *buf, size_t lo, size_t hi)
{
    for (size_t i = 0; i < hi + PAD; i++)
        if ((i < lo || i >= hi) && bits_f32(buf[i]) != SENTINEL) return 0;
    return 1;
}

static float ref_at(uint64_t seed, int N, size_t i)
{
    float p[64];
    for (int r = 0; r < N; r++) p[r] = gen_f32(seed, r, i);
    return det_ref_f32(p, N);
}

static void check_det_f32(CommKind kind)
{
    int ok = 1, rank = mpitest_rank(), N = mpitest_size();
    for (size_t ci = 0; ci < NCONF; ci++) {
        Comm *c = make_comm(CONFS[ci].segment, CONFS[ci].window, CONFS[ci].doubling_max);
        for (size_t si = 0; si < sizeof SIZES / sizeof *SIZES; si++)
            for (size_t oi = 0; oi < sizeof OFFS / sizeof *OFFS; oi++) {
                size_t lo = OFFS[oi], hi = lo + SIZES[si];
                uint64_t seed = 1000 * ci + 10 * si + oi;
                float *buf = input_f32(seed, lo, hi, rank);
                size_t s0, s1;
                shard_range(lo, hi, N, rank, &s0, &s1);
                if (kind == COMM_ALLGATHER) /* own shard = its sum; others garbage */
                    for (size_t i = lo; i < hi; i++)
                        buf[i] = i >= s0 && i < s1 ? ref_at(seed, N, i) : NAN;
                int rc = 0;
                if (kind == COMM_ALLREDUCE)
                    rc = coll_allreduce(c, COMM_DET, COMM_F32, buf, lo, hi);
                else if (kind == COMM_REDUCE_SCATTER)
                    rc = coll_reduce_scatter(c, COMM_DET, COMM_F32, buf, lo, hi);
                else
                    rc = coll_allgather(c, COMM_DET, COMM_F32, buf, lo, hi);
                ok &= rc == 0;
                size_t a = kind == COMM_REDUCE_SCATTER ? s0 : lo;
                size_t b = kind == COMM_REDUCE_SCATTER ? s1 : hi;
                size_t bad = 0;
                for (size_t i = a; i < b; i++)
                    if (bits_f32(buf[i]) != bits_f32(ref_at(seed, N, i))) bad++;
                if (bad || !sentinels_ok(buf, lo, hi)) {
                    fprintf(stderr, "rank %d kind %d conf %zu [%zu,%zu): %zu wrong, sentinels %s\n",
                            rank, (int)kind, ci, lo, hi, bad,
                            sentinels_ok(buf, lo, hi) ? "ok" : "overwritten");
                    ok = 0;
                }
                free(buf);
            }
        comm_destroy(c);
    }
    assert_true(mpitest_all(ok));
}

static void test_det_allreduce_f32(void **state)
{
    (void)state;
    check_det_f32(COMM_ALLREDUCE);
}

static void test_det_reduce_scatter_f32(void **state)
{
    (void)state;
    check_det_f32(COMM_REDUCE_SCATTER);
}

static void test_det_allgather_f32(void **state)
{
    (void)state;
    check_det_f32(COMM_ALLGATHER);
}

/* float64 (losses, norm partials) and int64 (counts), small and multi-block sizes, both
 * algorithms. */
static void test_det_f64_i64(void **state)
{
    (void)state;
    int ok = 1, rank = mpitest_rank(), N = mpitest_size();
    const size_t ns[] = {1, 2, 3, 17, 5000, 20000};
    for (size_t ci = 0; ci < NCONF; ci++) {
        Comm *c = make_comm(CONFS[ci].segment, CONFS[ci].window, CONFS[ci].doubling_max);
        for (size_t k = 0; k < sizeof ns / sizeof *ns; k++) {
            size_t n = ns[k];
            double *d = xmalloc(n * sizeof *d);
            int64_t *q = xmalloc(n * sizeof *q);
            for (size_t i = 0; i < n; i++) {
                d[i] = gen_f64(k, rank, i);
                q[i] = gen_i64(k, rank, i);
            }
            ok &= coll_allreduce(c, COMM_DET, COMM_F64, d, 0, n) == 0;
            ok &= coll_allreduce(c, COMM_DET, COMM_I64, q, 0, n) == 0;
            for (size_t i = 0; i < n; i++) {
                double p[64];
                int64_t s = 0;
                for (int r = 0; r < N; r++) {
                    p[r] = gen_f64(k, r, i);
                    s += gen_i64(k, r, i);
                }
                if (bits_f64(d[i]) != bits_f64(det_ref_f64(p, N)) || q[i] != s) {
                    if (ok)
                        fprintf(stderr, "rank %d n %zu i %zu: f64 %.17g vs %.17g, i64 %lld vs %lld\n",
                                rank, n, i, d[i], det_ref_f64(p, N), (long long)q[i], (long long)s);
                    ok = 0;
                }
            }
            /* reduce-scatter of float64: own shard */
            for (size_t i = 0; i < n; i++) d[i] = gen_f64(k + 7, rank, i);
            ok &= coll_reduce_scatter(c, COMM_DET, COMM_F64, d, 0, n) == 0;
            size_t s0, s1;
            shard_range(0, n, N, rank, &s0, &s1);
            for (size_t i = s0; i < s1; i++) {
                double p[64];
                for (int r = 0; r < N; r++) p[r] = gen_f64(k + 7, r, i);
                ok &= bits_f64(d[i]) == bits_f64(det_ref_f64(p, N));
            }
            free(d);
            free(q);
        }
        comm_destroy(c);
    }
    assert_true(mpitest_all(ok));
}

/* docs/determinism.md: rank r sums its micro-batches [r*M/N, (r+1)*M/N) along their
 * subtree; the collective completes the tree: equal, bit for bit, to one rank's tree
 * over all M. */
static void test_microbatch_invariance(void **state)
{
    (void)state;
    enum { M = 8 };
    int rank = mpitest_rank(), N = mpitest_size();
    if (N != pow2_floor(N) || M % N) {
        if (rank == 0) printf("      (N=%d does not divide M=%d as a power of two: not N-invariant by design)\n", N, M);
        return;
    }
    const size_t n = 5 * 4096 + 77;
    int ok = 1;
    for (int algo = 0; algo < 2; algo++) {
        Comm *c = make_comm(0, 0, algo ? (size_t)1 << 40 : 0);
        for (int kind = 0; kind < 2; kind++) {
            float *g = xmalloc(n * sizeof *g);
            int per = M / N;
            for (size_t i = 0; i < n; i++) {
                float leaf[M];
                for (int m = 0; m < per; m++) leaf[m] = gen_f32(42, rank * per + m, i);
                g[i] = tree_f32(leaf, per);
            }
            if (kind == 0)
                ok &= coll_allreduce(c, COMM_DET, COMM_F32, g, 0, n) == 0;
            else
                ok &= coll_reduce_scatter(c, COMM_DET, COMM_F32, g, 0, n) == 0;
            size_t s0 = 0, s1 = n;
            if (kind == 1) shard_range(0, n, N, rank, &s0, &s1);
            for (size_t i = s0; i < s1; i++) {
                float leaf[M];
                for (int m = 0; m < M; m++) leaf[m] = gen_f32(42, m, i);
                if (bits_f32(g[i]) != bits_f32(tree_f32(leaf, M))) ok = 0;
            }
            free(g);
        }
        comm_destroy(c);
    }
    assert_true(mpitest_all(ok));
}

/* NaN inputs: NaN exactly where some rank's input is NaN (payload bits unspecified),
 * all other elements bitwise canonical. */
static void test_nan_inputs(void **state)
{
    (void)state;
    int rank = mpitest_rank(), N = mpitest_size(), ok = 1;
    const size_t n = 9000;
    for (int algo = 0; algo < 2; algo++) {
        Comm *c = make_comm(0, 0, algo ? (size_t)1 << 40 : 0);
        float *buf = xmalloc(n * sizeof *buf);
        for (size_t i = 0; i < n; i++)
            buf[i] = (int)(i % 7) == rank ? NAN : gen_f32(5, rank, i);
        ok &= coll_allreduce(c, COMM_DET, COMM_F32, buf, 0, n) == 0;
        for (size_t i = 0; i < n; i++) {
            if ((int)(i % 7) < N)
                ok &= isnan(buf[i]);
            else
                ok &= bits_f32(buf[i]) == bits_f32(ref_at(5, N, i));
        }
        free(buf);
        comm_destroy(c);
    }
    assert_true(mpitest_all(ok));
}

/* COMM_FAST: within COMM_FAST_RTOL*(N-1)*sum|x_r| of the canonical result; fast
 * reduce-scatter leaves the same shard; fast allgather copies exactly. */
static void test_fast_within_tolerance(void **state)
{
    (void)state;
    int rank = mpitest_rank(), N = mpitest_size(), ok = 1;
    Comm *c = make_comm(0, 0, (size_t)64 << 10);
    const size_t lo = 5, n = 6 * 4096 + 3, hi = lo + n;
    float *buf = input_f32(77, lo, hi, rank);
    ok &= coll_allreduce(c, COMM_FAST, COMM_F32, buf, lo, hi) == 0;
    double worst = 0;
    for (size_t i = lo; i < hi; i++) {
        double mag = 0;
        for (int r = 0; r < N; r++) mag += fabs(gen_f32(77, r, i));
        double err = fabs((double)buf[i] - (double)ref_at(77, N, i));
        if (err > COMM_FAST_RTOL_F32 * (N - 1) * mag) ok = 0;
        if (mag > 0) worst = MT_MAX(worst, err / mag);
    }
    ok &= sentinels_ok(buf, lo, hi);
    free(buf);
    /* fast reduce-scatter: same shard layout */
    buf = input_f32(78, lo, hi, rank);
    ok &= coll_reduce_scatter(c, COMM_FAST, COMM_F32, buf, lo, hi) == 0;
    size_t s0, s1;
    shard_range(lo, hi, N, rank, &s0, &s1);
    for (size_t i = s0; i < s1; i++) {
        double mag = 0;
        for (int r = 0; r < N; r++) mag += fabs(gen_f32(78, r, i));
        if (fabs((double)buf[i] - (double)ref_at(78, N, i)) > COMM_FAST_RTOL_F32 * (N - 1) * mag)
            ok = 0;
    }
    ok &= sentinels_ok(buf, lo, hi);
    /* fast allgather: exact */
    for (size_t i = s0; i < s1; i++) buf[i] = (float)i;
    ok &= coll_allgather(c, COMM_FAST, COMM_F32, buf, lo, hi) == 0;
    for (size_t i = lo; i < hi; i++) ok &= buf[i] == (float)i;
    ok &= sentinels_ok(buf, lo, hi);
    free(buf);
    /* float64 and int64 fast allreduce */
    double d[3] = {0.5 * rank, 1e300, -1.0};
    int64_t q[2] = {(int64_t)rank << 40, 1};
    ok &= coll_allreduce(c, COMM_FAST, COMM_F64, d, 0, 3) == 0;
    ok &= coll_allreduce(c, COMM_FAST, COMM_I64, q, 0, 2) == 0;
    ok &= d[0] == 0.25 * N * (N - 1) && d[2] == -N && q[0] == ((int64_t)N * (N - 1) / 2) << 40 &&
          q[1] == N;
    comm_destroy(c);
    if (rank == 0) printf("      fast vs det: worst |err|/sum|x| = %.3g (bound %.3g)\n", worst,
                          COMM_FAST_RTOL_F32 * (N - 1));
    assert_true(mpitest_all(ok));
}

/* Several operations in flight, started in the same order, driven in a rank-dependent
 * order with "computation" in between. */
static void test_nonblocking_progress(void **state)
{
    (void)state;
    int rank = mpitest_rank(), N = mpitest_size(), ok = 1;
    Comm *c = make_comm(8192, 2, 0);
    const size_t n = 9 * 4096 + 11;
    float *a = input_f32(301, 0, n, rank), *b = input_f32(302, 0, n, rank);
    float *f = input_f32(303, 0, n, rank);
    CommReq *ra = NULL, *rb = NULL, *rf = NULL;
    ok &= coll_start(c, COMM_ALLREDUCE, COMM_DET, COMM_F32, a, 0, n, &ra) == 0;
    ok &= coll_start(c, COMM_REDUCE_SCATTER, COMM_DET, COMM_F32, b, 0, n, &rb) == 0;
    ok &= coll_start(c, COMM_ALLREDUCE, COMM_FAST, COMM_F32, f, 0, n, &rf) == 0;
    volatile double sink = 0;
    long polls = 0;
    CommReq **order[3] = {&ra, &rb, &rf};
    if (rank % 2) {
        order[0] = &rf;
        order[2] = &ra;
    }
    for (int k = 0; k < 3; k++) {
        while (!coll_progress(c, order[k])) {
            for (int j = 0; j < 1000; j++) sink += j * 0.5; /* a layer's backward */
            polls++;
        }
        ok &= *order[k] == NULL;
    }
    ok &= coll_wait(c, &ra) == 0; /* NULL: no-op */
    size_t s0, s1;
    shard_range(0, n, N, rank, &s0, &s1);
    for (size_t i = 0; i < n; i++) {
        ok &= bits_f32(a[i]) == bits_f32(ref_at(301, N, i));
        if (i >= s0 && i < s1) ok &= bits_f32(b[i]) == bits_f32(ref_at(302, N, i));
        double mag = 0;
        for (int r = 0; r < N; r++) mag += fabs(gen_f32(303, r, i));
        ok &= fabs((double)f[i] - ref_at(303, N, i)) <= COMM_FAST_RTOL_F32 * (N - 1) * mag;
    }
    free(a);
    free(b);
    free(f);
    comm_destroy(c);
    assert_true(mpitest_all(ok));
}

/* The pool: more operations than max_inflight is an error, not an allocation. */
static void test_pool_and_bad_tasks(void **state)
{
    (void)state;
    CommConf f;
    comm_conf_default(&f);
    f.max_inflight = 2;
    Comm *c = NULL;
    assert_int_equal(comm_create(&c, &f), 0);
    float x[3][8] = {{1}, {2}, {3}};
    CommReq *r[3] = {NULL, NULL, NULL};
    assert_int_equal(coll_start(c, COMM_ALLREDUCE, COMM_DET, COMM_F32, x[0], 0, 8, &r[0]), 0);
    assert_int_equal(coll_start(c, COMM_ALLREDUCE, COMM_DET, COMM_F32, x[1], 0, 8, &r[1]), 0);
    err_clear();
    assert_int_equal(coll_start(c, COMM_ALLREDUCE, COMM_DET, COMM_F32, x[2], 0, 8, &r[2]),
                     MT_EX_SOFTWARE);
    assert_null(r[2]);
    assert_non_null(strstr(err_msg(), "2 range operations already in flight"));
    assert_int_equal(coll_wait(c, &r[1]), 0);
    assert_int_equal(coll_wait(c, &r[0]), 0);
    assert_int_equal(comm_reserve(c, 3), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(coll_start(c, COMM_ALLREDUCE, COMM_DET, COMM_F32, x[i], 0, 8, &r[i]), 0);
    for (int i = 2; i >= 0; i--) assert_int_equal(coll_wait(c, &r[i]), 0);
    float N = (float)mpitest_size(); /* x[0], x[1] were reduced twice */
    assert_true(x[0][0] == 1 * N * N && x[1][0] == 2 * N * N && x[2][0] == 3 * N);

    /* bad tasks: refused before any communication */
    CommReq *q = (CommReq *)1;
    assert_int_equal(coll_start(c, COMM_ALLREDUCE, COMM_DET, COMM_BYTE, x[0], 0, 8, &q),
                     MT_EX_SOFTWARE);
    assert_null(q);
    assert_non_null(strstr(err_msg(), "cannot sum CommType 3"));
    assert_int_equal(coll_start(c, COMM_ALLREDUCE, COMM_DET, COMM_F32, x[0], 8, 4, &q),
                     MT_EX_SOFTWARE);
    assert_non_null(strstr(err_msg(), "lo 8 > hi 4"));
    assert_int_equal(coll_start(c, COMM_ALLREDUCE, COMM_DET, COMM_F32, NULL, 0, 4, &q),
                     MT_EX_SOFTWARE);
    assert_non_null(strstr(err_msg(), "NULL buffer"));
    assert_int_equal(coll_start(c, (CommKind)9, COMM_DET, COMM_F32, x[0], 0, 4, &q),
                     MT_EX_SOFTWARE);
    assert_non_null(strstr(err_msg(), "unknown CommKind 9"));
    assert_int_equal(comm_allreduce(c, x[0], 8, COMM_BYTE), MT_EX_SOFTWARE);
    /* empty ranges are fine in every mode */
    for (int mode = 0; mode < 2; mode++)
        for (int kind = 0; kind < 3; kind++)
            assert_int_equal(coll_start(c, (CommKind)kind, (CommMode)mode, COMM_F32, NULL, 4, 4, &q), 0),
                assert_int_equal(coll_wait(c, &q), 0);
    comm_destroy(c);
}

int main(int argc, char **argv)
{
    mpitest_init(&argc, &argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_det_allreduce_f32),
        cmocka_unit_test(test_det_reduce_scatter_f32),
        cmocka_unit_test(test_det_allgather_f32),
        cmocka_unit_test(test_det_f64_i64),
        cmocka_unit_test(test_microbatch_invariance),
        cmocka_unit_test(test_nan_inputs),
        cmocka_unit_test(test_fast_within_tolerance),
        cmocka_unit_test(test_nonblocking_progress),
        cmocka_unit_test(test_pool_and_bad_tasks),
    };
    return MPITEST_RUN(tests);
}
