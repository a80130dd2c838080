/* MPI_NP: 1 2 3 4
 *
 * test_dp.c — the data-parallel engine (dp.h) on its own: the node-shared-memory path
 * against the MPI path and against a reference tree computed locally from every rank's
 * inputs (bitwise, with the fold for N not a power of two); the fused update hook's (shared
 * memory, and ZeRO-1 over messages where it rides the reduction)
 * coverage and timing; the shared parameter slab after dp_allgather_params; several
 * steps in a row; odd slab sizes (smaller than N, not multiples of the shard blocks). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/collref.h"
#include "common/mpitest.h"
#include "core/common.h"
#include "core/optim.h"
#include "parallel/comm.h"
#include "parallel/dp.h"

static Comm *g_comm;

/* The canonical sum over the N ranks' element i (each rank's input: gen_f32) */
static float ref_sum(uint64_t seed, size_t i, int N)
{
    float p[128];
    for (int r = 0; r < N; r++) p[r] = gen_f32(seed, r, i);
    return det_ref_f32(p, N);
}

typedef struct {
    Dp *dp;
    const float *grads;
    uint64_t seed;
    size_t n;
    int N;
    unsigned char *seen; /* (n) elements handed to the hook */
    float *params;       /* the hook "updates" them: params[i] = step * 100 + i % 97 */
    uint64_t step;
    size_t next_off;     /* compact state offset expected next within the piece */
    int bad;             /* hook saw an unfinished sum, an overlap or a wrong offset */
} HookCheck;

static void hook(void *arg, size_t lo, size_t hi, size_t off)
{
    HookCheck *h = arg;
    if (lo >= hi || hi > h->n) { h->bad = 1; return; }
    /* the piece holding lo: its state offset must match */
    int found = 0;
    for (int p = 0; p < dp_npieces(h->dp); p++) {
        size_t plo, phi, poff;
        dp_piece(h->dp, p, &plo, &phi, &poff);
        if (lo >= plo && hi <= phi) {
            found = 1;
            if (off != poff + (lo - plo)) h->bad = 1;
        }
    }
    if (!found) h->bad = 1;
    for (size_t i = lo; i < hi; i++) {
        if (h->seen[i]) h->bad = 1;
        h->seen[i] = 1;
        float want = ref_sum(h->seed, i, h->N);
        if (memcmp(&want, &h->grads[i], sizeof want)) h->bad = 1;
        h->params[i] = (float)(h->step * 100 + (uint64_t)i % 97);
    }
}

/* One configuration: n parameters, buckets of bucket_mb, `layers` layer boundaries that
 * become ready top-down; three steps.  shm = 1 must really use node-shared memory here
 * (every rank of the test is on this host). */
static int run_case(size_t n, double bucket_mb, int zero, int shm, int fused, int nlayers)
{
    int N = g_comm->size, me = g_comm->rank;
    DpConf c = {.reduce = DP_REDUCE_DETERMINISTIC, .bucket_mb = bucket_mb, .zero = zero,
                .shm = shm, .nparams = n};
    Dp *dp = dp_create(g_comm, &c);
    int ok = 1;
    if (N > 1 && dp_shm(dp) != shm) ok = 0;
    if (N == 1 && dp_shm(dp)) ok = 0; /* nothing to share */
    float *grads = dp_shm(dp) ? dp_shared_grads(dp) : xaligned(n * sizeof(float));
    float *params = dp_shm(dp) ? dp_shared_params(dp) : xaligned(n * sizeof(float));
    unsigned char *seen = xcalloc(n ? n : 1, 1);
    for (uint64_t step = 1; step <= 3; step++) { /* all steps on every rank, whatever ok says */
        uint64_t seed = step * 1000003 + n;
        HookCheck h = {.dp = dp, .grads = grads, .seed = seed, .n = n, .N = N, .seen = seen,
                       .params = params, .step = step};
        memset(seen, 0, n ? n : 1);
        /* fused: the hook is the optimizer (over messages the bucket's task then gathers
         * what it wrote); otherwise the "optimizer" below writes the pieces */
        int fuse = fused && dp_can_fuse_update(dp);
        if (fused && N > 1 && !fuse) ok = 0;
        if (dp_can_fuse_update(dp)) dp_set_update(dp, fuse ? hook : NULL, &h, params);
        dp_step_begin(dp, grads);
        for (size_t i = 0; i < n; i++) grads[i] = gen_f32(seed, me, i);
        /* layers ready from the top of the slab down, a poll between each */
        for (int l = nlayers - 1; l >= 0; l--) {
            size_t lo = n * (size_t)l / (size_t)nlayers, hi = n * (size_t)(l + 1) / (size_t)nlayers;
            dp_grad_ready(dp, lo, hi);
            dp_poll(dp);
        }
        dp_step_end(dp);
        /* this rank's pieces (or everything) hold the canonical sum */
        for (int p = 0; p < dp_npieces(dp); p++) {
            size_t lo, hi, off;
            dp_piece(dp, p, &lo, &hi, &off);
            for (size_t i = lo; i < hi; i++) {
                float want = ref_sum(seed, i, N);
                if (memcmp(&want, &grads[i], sizeof want)) ok = 0;
            }
        }
        if (fuse) {
            if (h.bad) ok = 0;
            for (int p = 0; p < dp_npieces(dp); p++) { /* the hook covered the pieces */
                size_t lo, hi, off;
                dp_piece(dp, p, &lo, &hi, &off);
                for (size_t i = lo; i < hi; i++) if (!seen[i]) ok = 0;
            }
        }
        /* "optimizer": each rank writes its pieces, then every rank has every piece */
        for (int p = 0; p < dp_npieces(dp) && !fuse; p++) {
            size_t lo, hi, off;
            dp_piece(dp, p, &lo, &hi, &off);
            for (size_t i = lo; i < hi; i++) params[i] = (float)(step * 100 + (uint64_t)i % 97);
        }
        dp_allgather_params(dp, params);
        if (dp_sharded(dp) || N == 1)
            for (size_t i = 0; i < n; i++)
                if (params[i] != (float)(step * 100 + (uint64_t)i % 97)) ok = 0;
        /* nobody may start the next step's gradients while a peer still reads them: the
         * allgather wait is that fence; exposed time is measured, non-negative */
        if (dp_exposed_s(dp) < 0 || dp_comm_s(dp) < dp_exposed_s(dp) - 1e-9) ok = 0;
    }
    if (!dp_shm(dp)) {
        free(grads);
        free(params);
    }
    free(seen);
    dp_destroy(dp);
    return mpitest_all(ok);
}

static const size_t SIZES[] = {1, 3, 4095, 4097, 3 * 4096 + 5, 40000};

static void test_shm_matches_tree(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof SIZES / sizeof *SIZES; s++)
        for (int zero = 0; zero <= 1; zero++) {
            assert_true(run_case(SIZES[s], 0.02, zero, 1, 0, 3));   /* several buckets */
            assert_true(run_case(SIZES[s], 4, zero, 1, 0, 1));      /* one bucket */
        }
}

static void test_mpi_path_matches_tree(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof SIZES / sizeof *SIZES; s++)
        for (int zero = 0; zero <= 1; zero++) assert_true(run_case(SIZES[s], 0.02, zero, 0, 0, 3));
}

static void test_shm_fused_update(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof SIZES / sizeof *SIZES; s++) {
        assert_true(run_case(SIZES[s], 0.02, 0, 1, 1, 3));
        assert_true(run_case(SIZES[s], 4, 1, 1, 1, 2));
    }
}

/* ZeRO-1 over messages with the update fused: each bucket is one task (reduce-scatter,
 * the hook on this rank's shard, allgather of what the hook wrote) */
static void test_mpi_fused_update(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof SIZES / sizeof *SIZES; s++) {
        assert_true(run_case(SIZES[s], 0.02, 1, 0, 1, 3));
        assert_true(run_case(SIZES[s], 4, 1, 0, 1, 2));
    }
}

static void test_shm_state_layout(void **state)
{
    (void)state;
    /* shared memory shards the optimizer like ZeRO-1: state per rank ~ n / N, the pieces
     * of all ranks tile the slab */
    size_t n = 100000;
    int N = g_comm->size;
    DpConf c = {.reduce = DP_REDUCE_DETERMINISTIC, .bucket_mb = 0.1, .zero = 0, .shm = 1, .nparams = n};
    Dp *dp = dp_create(g_comm, &c);
    long long mine = (long long)dp_state_len(dp), total = mine;
    comm_allreduce(g_comm, &total, 1, COMM_I64);
    int ok = total == (long long)n && (N == 1 || dp_sharded(dp));
    if (N > 1 && N == pow2_floor(N)) ok = ok && mine <= (long long)(n / (size_t)N + 2 * CLIP_BLOCK * 3);
    dp_destroy(dp);
    assert_true(mpitest_all(ok));
}

static int setup(void **state)
{
    (void)state;
    CommConf cc;
    comm_conf_default(&cc);
    cc.install_abort_hook = 0;
    return comm_create(&g_comm, &cc);
}

static int teardown(void **state)
{
    (void)state;
    comm_destroy(g_comm);
    g_comm = NULL;
    return 0;
}

int main(int argc, char **argv)
{
    mpitest_init(&argc, &argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_shm_matches_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mpi_path_matches_tree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shm_fused_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mpi_fused_update, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shm_state_layout, setup, teardown),
    };
    return MPITEST_RUN(tests);
}
