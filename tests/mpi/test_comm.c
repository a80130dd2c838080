/* MPI_NP: 1 2 3 4
 *
 * test_comm.c — the communicator (comm.h): creation and its fields, conf agreement,
 * barrier/bcast/allreduce/allgatherv, status agreement with failing ranks, split. */
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/mpitest.h"
#include "core/common.h"
#include "parallel/coll.h"
#include "parallel/comm.h"

static Comm *make(void)
{
    Comm *c = NULL;
    int rc = comm_create(&c, NULL);
    if (rc) fprintf(stderr, "comm_create: %s\n", err_msg());
    assert_int_equal(rc, 0);
    return c;
}

static void test_create_fields(void **state)
{
    (void)state;
    Comm *c = make();
    int r, n;
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    MPI_Comm_size(MPI_COMM_WORLD, &n);
    assert_int_equal(c->rank, r);
    assert_int_equal(c->size, n);
    assert_string_equal(c->ops->name, "mpi");
    /* tests run on one host: everyone shares memory */
    assert_int_equal(c->local_size, n);
    assert_int_equal(c->local_rank, r);
    char host[64];
    gethostname(host, sizeof host);
    host[63] = 0;
    assert_string_equal(c->host, host);
    assert_int_equal(log_rank(), r);
    comm_destroy(c);
    comm_destroy(NULL);
}

static void test_conf_checked(void **state)
{
    (void)state;
    CommConf f;
    Comm *c = (Comm *)1;
    comm_conf_default(&f);
    f.window = 0;
    err_clear();
    assert_int_equal(comm_create(&c, &f), MT_EX_CONFIG);
    assert_null(c);
    assert_non_null(strstr(err_msg(), "window 0 out of range"));
    comm_conf_default(&f);
    f.segment_bytes = 1000;
    assert_int_equal(comm_create(&c, &f), MT_EX_CONFIG);
    assert_non_null(strstr(err_msg(), "segment_bytes 1000"));
    if (mpitest_size() > 1) { /* ranks disagree: every rank refuses */
        comm_conf_default(&f);
        f.segment_bytes = (size_t)(mpitest_rank() == 1 ? 2 : 1) << 20;
        assert_int_equal(comm_create(&c, &f), MT_EX_CONFIG);
        assert_non_null(strstr(err_msg(), "different CommConf"));
    }
    c = make(); /* still usable afterwards */
    comm_destroy(c);
}

static void test_bcast_allreduce_allgatherv(void **state)
{
    (void)state;
    Comm *c = make();
    int r = c->rank, n = c->size, ok = 1;
    assert_int_equal(comm_barrier(c), 0);
    /* bcast from the last rank, every type */
    float f[3] = {0};
    double d[2] = {0};
    int64_t q[2] = {0};
    char s[24] = "";
    if (r == n - 1) {
        f[0] = 1.5f, f[2] = -2.0f;
        d[1] = 1e-300;
        q[0] = INT64_MIN, q[1] = 7;
        snprintf(s, sizeof s, "from %d", n - 1);
    }
    ok &= comm_bcast(c, f, 3, COMM_F32, n - 1) == 0;
    ok &= comm_bcast(c, d, 2, COMM_F64, n - 1) == 0;
    ok &= comm_bcast(c, q, 2, COMM_I64, n - 1) == 0;
    ok &= comm_bcast(c, s, sizeof s, COMM_BYTE, n - 1) == 0;
    char want[24];
    snprintf(want, sizeof want, "from %d", n - 1);
    ok &= f[0] == 1.5f && f[1] == 0 && f[2] == -2.0f && d[1] == 1e-300 && q[0] == INT64_MIN &&
          q[1] == 7 && !strcmp(s, want);
    /* library allreduce: exact cases */
    double ds[2] = {r + 1.0, 0.25};
    int64_t qs[2] = {(int64_t)1 << 50, -r};
    float fs[1] = {2.0f};
    ok &= comm_allreduce(c, ds, 2, COMM_F64) == 0;
    ok &= comm_allreduce(c, qs, 2, COMM_I64) == 0;
    ok &= comm_allreduce(c, fs, 1, COMM_F32) == 0;
    ok &= ds[0] == n * (n + 1) / 2.0 && ds[1] == 0.25 * n && qs[0] == (int64_t)n << 50 &&
          qs[1] == -(int64_t)n * (n - 1) / 2 && fs[0] == 2.0f * n;
    /* allgatherv: rank k contributes k values k*100 + j (rank 0 contributes none) */
    size_t counts[64], total = 0;
    for (int k = 0; k < n; k++) total += counts[k] = (size_t)k;
    int64_t mine[64], all[64 * 64];
    for (int j = 0; j < r; j++) mine[j] = r * 100 + j;
    ok &= comm_allgatherv(c, mine, (size_t)r, all, counts, COMM_I64) == 0;
    size_t at = 0;
    for (int k = 0; k < n; k++)
        for (int j = 0; j < k; j++) ok &= all[at++] == k * 100 + j;
    ok &= at == total;
    /* host names of everyone */
    char hosts[64 * 64];
    size_t hc[64];
    for (int k = 0; k < n; k++) hc[k] = 64;
    ok &= comm_allgatherv(c, c->host, 64, hosts, hc, COMM_BYTE) == 0;
    ok &= !strcmp(hosts + 64 * (n - 1), c->host);
    comm_destroy(c);
    assert_true(mpitest_all(ok));
}

static void test_agree_all_fine(void **state)
{
    (void)state;
    Comm *c = make();
    int failed = 123;
    assert_int_equal(comm_agree(c, 0, &failed), 0);
    assert_int_equal(failed, -1);
    assert_int_equal(comm_agree(c, 0, NULL), 0);
    comm_destroy(c);
}

/* The last rank fails with 65; with 3+ ranks rank 1 fails too, with 74: every rank learns
 * max 74 and the lowest failing rank 1, and the ranks that were fine get rank 1's
 * message. */
static void test_agree_with_failures(void **state)
{
    (void)state;
    Comm *c = make();
    int r = c->rank, n = c->size, mine = 0;
    err_clear();
    if (r == n - 1) mine = err_set(MT_EX_DATAERR, "shard-00003.h5: bad checksum in /x");
    if (n >= 3 && r == 1) mine = err_set(MT_EX_IOERR, "cannot write runs/a/ckpt.tmp: disk full");
    int failed = -7;
    int got = comm_agree(c, mine, &failed);
    int want_code = n >= 3 ? MT_EX_IOERR : MT_EX_DATAERR;
    int want_rank = n >= 3 ? 1 : n - 1;
    int ok = got == want_code && failed == want_rank;
    if (mine) {
        /* a failing rank keeps its own message */
        ok &= err_code() == mine && strstr(err_msg(), "rank ") == NULL;
    } else {
        char want[256];
        snprintf(want, sizeof want, "rank %d (%s) failed with exit code %d: %s", want_rank,
                 c->host, want_code,
                 n >= 3 ? "cannot write runs/a/ckpt.tmp: disk full"
                        : "shard-00003.h5: bad checksum in /x");
        ok &= err_code() == want_code && !strcmp(err_msg(), want);
        if (!ok) fprintf(stderr, "rank %d: got '%s'\n", r, err_msg());
    }
    comm_destroy(c);
    assert_true(mpitest_all(ok));
}

/* Split into even and odd ranks; collectives on each part. */
static void test_split(void **state)
{
    (void)state;
    Comm *c = make(), *s = NULL;
    int r = c->rank, n = c->size, ok = 1;
    ok &= comm_split(c, r % 2, r, &s) == 0;
    ok &= s->size == (n + 1 - r % 2) / 2 && s->rank == r / 2;
    int64_t v[1] = {r};
    ok &= coll_allreduce(s, COMM_DET, COMM_I64, v, 0, 1) == 0;
    int64_t want = 0;
    for (int k = r % 2; k < n; k += 2) want += k;
    ok &= v[0] == want;
    int failed;
    ok &= comm_agree(s, s->rank == 0 && r % 2 ? MT_EX_CONFIG : 0, &failed) ==
          (r % 2 ? MT_EX_CONFIG : 0);
    ok &= failed == (r % 2 ? 0 : -1);
    comm_destroy(s);
    comm_destroy(c);
    assert_true(mpitest_all(ok));
}

int main(int argc, char **argv)
{
    mpitest_init(&argc, &argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_fields),
        cmocka_unit_test(test_conf_checked),
        cmocka_unit_test(test_bcast_allreduce_allgatherv),
        cmocka_unit_test(test_agree_all_fine),
        cmocka_unit_test(test_agree_with_failures),
        cmocka_unit_test(test_split),
    };
    return MPITEST_RUN(tests);
}
