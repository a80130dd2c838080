/* MPI_NP: 1 2 3 4
 *
 * test_strategy.c — every registered parallel strategy (strategy.h) through its table,
 * as the trainer drives it: plan, create, share_params, then steps of step_begin ->
 * the executor's hooks (ready / poll / chunk_done, simulated here) -> reduce_end ->
 * [clip partials] -> update, and the checkpoint gather/scatter of the optimizer state.
 * The "optimizer" is a fake with a state: p -= 0.5 * g * scale, state = g * scale, so
 * after each step (and strategy_gather_params) every rank must hold, bit for bit, the
 * parameters and (gathered) state computed here from the canonical sum of the computing
 * ranks' gradients (collref.h: worker w's input is gen_f32(seed, w, i)).  Each
 * strategy in every configuration that changes its path: zero, shm, clipping (no
 * fusion), hold (an async snapshot), the servers' placement (first or last ranks). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/collref.h"
#include "common/mpitest.h"
#include "core/common.h"
#include "core/optim.h"
#include "parallel/comm.h"
#include "parallel/strategy.h"

static Comm *g_comm;

typedef struct {
    float *params, *grads, *state;
    float scale;
    size_t state_len;
    int bad; /* an update outside the slab or its state */
} FakeOpt;

static void fake_update(void *arg, size_t lo, size_t hi, size_t off)
{
    FakeOpt *o = arg;
    if (off + (hi - lo) > o->state_len) { o->bad = 1; return; }
    for (size_t i = lo; i < hi; i++) {
        float g = o->grads[i] * o->scale;
        o->params[i] -= 0.5f * g;
        o->state[off + (i - lo)] = g;
    }
}

static void run_serial(void *runner, size_t n, StrategyRangeFn fn, void *arg)
{
    (void)runner;
    /* three parts, as threads would cut it */
    size_t a = n / 3, b = 2 * n / 3;
    fn(arg, 0, a);
    fn(arg, a, b);
    fn(arg, b, n);
}

static float canon(uint64_t seed, size_t i, int N)
{
    float p[128];
    for (int r = 0; r < N; r++) p[r] = gen_f32(seed, r, i);
    return det_ref_f32(p, N);
}

static int run_case(const StrategyOps *ops, const char *reduce, int zero, const char *shm,
                    int global, int hold, size_t n, const char *place)
{
    int N = g_comm->size, me = g_comm->rank, ok = 1; /* N ranks, W of them compute */
    StrategyConf sc = {.mode = ops->name, .reduce = reduce, .bucket_mb = 0.02, .zero = zero,
                       .shm = shm, .servers = 1, .consistency = "sync", .staleness = 0,
                       .server_ranks = place};
    int M = 4 * N;
    StrategySplit sp;
    /* a strategy may refuse this world (parameter servers need 2 ranks): then every rank
     * refuses alike, and the data-parallel strategy never does */
    int refused = ops->plan(&sc, me, N, M, &sp) != 0;
    if (refused) return mpitest_all(strcmp(ops->name, "allreduce") != 0);
    int W = sp.workers, who = sp.worker;
    /* the splits of all ranks tile [0, M) in rank order */
    int lo_all = 0;
    for (int r = 0; r < N; r++) {
        StrategySplit s2;
        ops->plan(&sc, r, N, M, &s2);
        if (!s2.computes) {
            if (s2.mb_hi != s2.mb_lo) ok = 0; /* a server computes nothing */
            continue;
        }
        if (s2.mb_lo != lo_all || s2.mb_hi < s2.mb_lo) ok = 0;
        lo_all = s2.mb_hi;
    }
    if (lo_all != M) ok = 0;
    if (sp.computes != (who >= 0) || W < 1 || W > N) ok = 0;
    Strategy *s = NULL;
    if (strategy_create(ops, g_comm, &sc, n, 1, &s) != 0) return mpitest_all(0);
    float *grads = strategy_shared_grads(s);
    int own_grads = !grads;
    if (own_grads) grads = xaligned(n * sizeof(float));
    float *params = xaligned(n * sizeof(float)), *mine = params;
    for (size_t i = 0; i < n; i++) params[i] = (float)(i % 13) - 6.0f;
    strategy_share_params(s, &params);
    if (params != mine) free(mine);
    size_t sl = strategy_state_len(s);
    float *state = xaligned((sl ? sl : 1) * sizeof(float));
    float *ref = xaligned(n * sizeof(float));
    for (size_t i = 0; i < n; i++) ref[i] = (float)(i % 13) - 6.0f;
    float *full = xaligned(n * sizeof(float));
    for (uint64_t step = 1; step <= 3; step++) {
        uint64_t seed = step * 7919 + n;
        FakeOpt fo = {.params = params, .grads = grads, .state = state, .scale = 1.0f,
                      .state_len = sl};
        StrategyStep st = {.update = fake_update, .update_arg = &fo, .global = global, .hold = hold};
        StrategyHooks h;
        strategy_step_begin(s, &st, params, grads, &h);
        if ((global || hold) && h.chunk_done) ok = 0; /* nothing may be fused then */
        /* the computing ranks' partials (worker w's: input w) */
        if (sp.computes) for (size_t i = 0; i < n; i++) grads[i] = gen_f32(seed, who, i);
        /* the executor: layers final from the top down, then (fused) the chunks */
        int L = 3;
        for (int l = L - 1; l >= 0; l--) {
            size_t a = n * (size_t)l / L, b = n * (size_t)(l + 1) / L;
            if (h.ready) h.ready(h.arg, a, b);
            if (h.poll) h.poll(h.arg);
        }
        if (h.chunk_done) {
            h.chunk_done(h.chunk_arg, 0, n / 2);
            h.chunk_done(h.chunk_arg, n / 2, n);
        }
        strategy_reduce_end(s);
        if (global) {
            double *part = xcalloc(clip_nblocks(n) + 1, sizeof(double));
            strategy_clip_partials(s, grads, part);
            double want = 0, got = 0;
            for (size_t i = 0; i < n; i++) {
                double g = canon(seed, i, W);
                want += g * g;
            }
            for (size_t j = 0; j < clip_nblocks(n); j++) got += part[j];
            if (fabs(got - want) > 1e-9 * want) ok = 0;
            free(part);
            fo.scale = 0.25f;
        }
        strategy_update(s, run_serial, NULL);
        if (fo.bad) ok = 0;
        /* before a checkpoint every rank's parameters are whole (collective) */
        strategy_gather_params(s, params);
        for (size_t i = 0; i < n; i++) {
            ref[i] -= 0.5f * (canon(seed, i, W) * fo.scale);
            if (memcmp(&ref[i], &params[i], sizeof(float))) ok = 0;
        }
        /* checkpoint: the gathered state is the scaled canonical sum everywhere */
        float *states[1] = {state}, *fulls[1] = {full};
        if (strategy_sharded(s)) strategy_gather_states(s, states, fulls, 1);
        else memcpy(full, state, n * sizeof(float));
        for (size_t i = 0; i < n; i++) {
            float want = canon(seed, i, W) * fo.scale;
            if (memcmp(&want, &full[i], sizeof want)) ok = 0;
        }
        /* and back: scattering it gives this rank's pieces again */
        float *back = xaligned((sl ? sl : 1) * sizeof(float));
        float *backs[1] = {back};
        strategy_scatter_states(s, fulls, backs, 1);
        if (sl && memcmp(back, state, sl * sizeof(float))) ok = 0;
        free(back);
        if (strategy_exposed_s(s) < 0 || strategy_comm_s(s) < strategy_exposed_s(s) - 1e-9) ok = 0;
    }
    char desc[256];
    strategy_describe(s, desc, sizeof desc);
    if (!desc[0] || !strategy_mode(s)[0]) ok = 0;
    if (!strategy_owns_params(s, params)) free(params);
    if (own_grads) free(grads);
    free(state);
    free(ref);
    free(full);
    strategy_destroy(s);
    return mpitest_all(ok);
}

static void test_every_strategy(void **state)
{
    (void)state;
    static const size_t sizes[] = {5, 3 * 4096 + 7, 40000};
    for (int k = 0; k < strategy_count(); k++) {
        const StrategyOps *ops = strategy_at(k);
        /* the keys each strategy reads: zero and shm (allreduce), the placement (ps) */
        int dp = !strcmp(ops->name, "allreduce");
        for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++)
            for (int zero = 0; zero <= dp; zero++)
                for (int shm = 0; shm <= dp; shm++)
                    for (int global = 0; global <= 1; global++)
                        for (int hold = 0; hold <= 1; hold++)
                            for (int first = 0; first <= !dp; first++)
                                assert_true(run_case(ops, "deterministic", zero,
                                                     shm ? "true" : "false", global, hold,
                                                     sizes[si], first ? "first" : "last"));
    }
}

/* plan refuses an impossible split (more ranks than micro-batches) on every rank */
static void test_plan_refuses(void **state)
{
    (void)state;
    StrategyConf sc = {.mode = "allreduce", .reduce = "deterministic", .bucket_mb = 4, .shm = "auto"};
    StrategySplit sp;
    const StrategyOps *ops = strategy_find("allreduce");
    assert_non_null(ops);
    assert_int_equal(ops->plan(&sc, 0, 4, 2, &sp), MT_EX_CONFIG);
    assert_non_null(strstr(err_msg(), "train.micro_batches = 2"));
    assert_null(strategy_find("nosuch"));
    assert_non_null(strstr(err_msg(), "parallel.mode = nosuch"));
    assert_int_equal(ops->plan(&sc, 1, 2, 4, &sp), 0);
    assert_int_equal(sp.mb_lo, 2);
    assert_int_equal(sp.mb_hi, 4);
    assert_true(sp.n_invariant);
    sc.reduce = "fast";
    assert_int_equal(ops->plan(&sc, 0, 2, 4, &sp), 0);
    assert_false(sp.n_invariant);
    assert_int_equal(ops->plan(&sc, 0, 3, 4, &sp), 0);
    assert_false(sp.n_invariant);
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
        cmocka_unit_test_setup_teardown(test_every_strategy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_plan_refuses, setup, teardown),
    };
    return MPITEST_RUN(tests);
}
