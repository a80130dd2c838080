/* MPI_NP: 1 2 3 4
 *
 * test_comm.c — the communicator (comm.h): creation and its fields, conf agreement,
 * barrier/bcast/allreduce/allgatherv, status agreement with failing ranks, the per-step
 * flag agreement, split (and that it goes through the table), point-to-point messages:
 * ring exchanges, any-source receives with probe and testany, tags kept apart from each
 * other and from the collectives' traffic, blocking waits that keep a reduction moving,
 * cancel, bad arguments. */
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

/* Split into even and odd ranks; collectives and a ring of messages on each part. */
static void test_split(void **state)
{
    (void)state;
    Comm *c = make(), *s = NULL;
    int r = c->rank, n = c->size, ok = 1;
    ok &= comm_split(c, r % 2, r, &s) == 0;
    ok &= s->size == (n + 1 - r % 2) / 2 && s->rank == r / 2 && s->ops == c->ops;
    int64_t v[1] = {r};
    ok &= coll_allreduce(s, COMM_DET, COMM_I64, v, 0, 1) == 0;
    int64_t want = 0;
    for (int k = r % 2; k < n; k += 2) want += k;
    ok &= v[0] == want;
    int failed;
    ok &= comm_agree(s, s->rank == 0 && r % 2 ? MT_EX_CONFIG : 0, &failed) ==
          (r % 2 ? MT_EX_CONFIG : 0);
    ok &= failed == (r % 2 ? 0 : -1);
    /* ring inside the part: ranks are the part's, the data the parent rank */
    CommP2p *set = NULL;
    ok &= comm_p2p_create(s, 2, &set) == 0;
    int64_t out = r, in = -1;
    CommStatus st;
    ok &= comm_irecv(s, set, 0, &in, 1, COMM_I64, (s->rank + s->size - 1) % s->size, 5) == 0;
    ok &= comm_isend(s, set, 1, &out, 1, COMM_I64, (s->rank + 1) % s->size, 5) == 0;
    ok &= comm_p2p_wait(s, set, 0, &st) == 0 && comm_p2p_wait(s, set, 1, NULL) == 0;
    int from = (s->rank + s->size - 1) % s->size; /* part rank -> parent rank */
    ok &= in == from * 2 + r % 2 && st.peer == from && st.tag == 5 && st.count == 1;
    comm_p2p_destroy(s, set);
    comm_destroy(s);
    comm_destroy(c);
    assert_true(mpitest_all(ok));
}

/* comm_split and comm_agree_flags reach the backend only through c->ops: a table whose
 * split and allreduce count their calls sees them. */
static const CommOps *g_real;
static int g_splits, g_allreduces;
static int spy_split(Comm *p, int color, int key, Comm **out)
{
    g_splits++;
    return g_real->split(p, color, key, out);
}
static int spy_allreduce(Comm *c, void *buf, size_t count, CommType t)
{
    g_allreduces++;
    return g_real->allreduce(c, buf, count, t);
}

static void test_split_through_table(void **state)
{
    (void)state;
    Comm *c = make(), *s = NULL;
    g_real = c->ops;
    CommOps spy = *c->ops;
    spy.split = spy_split;
    spy.allreduce = spy_allreduce;
    Comm view = *c; /* same backend state, another table */
    view.ops = &spy;
    g_splits = g_allreduces = 0;
    int ok = comm_split(&view, 0, -c->rank, &s) == 0; /* one part, reversed order */
    ok &= g_splits == 1 && s->size == c->size && s->rank == c->size - 1 - c->rank;
    double f[1] = {1};
    ok &= comm_agree_flags(&view, 0, f, 1, NULL) == 0 && f[0] == c->size && g_allreduces == 1;
    comm_destroy(s);
    comm_destroy(c);
    assert_true(mpitest_all(ok));
}

/* Flags summed over ranks; every rank's status; the worst status and the lowest failing
 * rank; no message recorded. */
static void test_agree_flags(void **state)
{
    (void)state;
    Comm *c = make();
    int r = c->rank, n = c->size, ok = 1, failed = 99;
    err_clear();
    double f[3] = {r, r == 0 ? 1 : 0, 0.5};
    ok &= comm_agree_flags(c, 0, f, 3, &failed) == 0 && failed == -1;
    ok &= f[0] == n * (n - 1) / 2.0 && f[1] == 1 && f[2] == 0.5 * n;
    ok &= err_code() == 0;
    /* the last rank fails with 65, rank 1 (3+ ranks) with 74 */
    int mine = r == n - 1 ? MT_EX_DATAERR : 0;
    if (n >= 3 && r == 1) mine = MT_EX_IOERR;
    double g[2] = {mine ? 1 : 0, 0};
    int code = comm_agree_flags(c, mine, g, 2, &failed);
    ok &= code == (n >= 3 ? MT_EX_IOERR : MT_EX_DATAERR);
    ok &= failed == (n >= 3 ? 1 : n - 1);
    ok &= g[0] == (n >= 3 ? 2 : 1) && g[1] == 0;
    ok &= err_code() == 0; /* nothing recorded on any rank */
    /* only rank 0 fails; no flags; failed_rank may be NULL */
    ok &= comm_agree_flags(c, r == 0 ? MT_EX_CONFIG : 0, NULL, 0, &failed) == MT_EX_CONFIG;
    ok &= failed == 0;
    ok &= comm_agree_flags(c, 0, NULL, 0, NULL) == 0;
    /* every rank fails with its own code: the largest wins, rank 0 is the lowest */
    ok &= comm_agree_flags(c, 64 + r, NULL, 0, &failed) == 64 + n - 1 && failed == 0;
    comm_destroy(c);
    assert_true(mpitest_all(ok));
}

/* ---- point-to-point ---- */

enum { TAG_A = 1, TAG_B = 2, TAG_PUSH = 3, TAG_LAST = COMM_TAG_MAX };

/* Ring: every rank sends to the next and receives from the previous, each type, and one
 * message of 4 MB (past any eager limit); testany serves whichever finishes. */
static void test_p2p_ring(void **state)
{
    (void)state;
    Comm *c = make();
    int r = c->rank, n = c->size, ok = 1;
    int next = (r + 1) % n, prev = (r + n - 1) % n;
    const size_t big = (size_t)1 << 20;
    float *bs = xaligned(big * sizeof(float)), *br = xaligned(big * sizeof(float));
    for (size_t i = 0; i < big; i++) bs[i] = (float)(r * 7 + (int)(i % 1000)), br[i] = -1;
    float fs[3] = {r + 0.5f, -1.0f * r, 3}, fr[3] = {0};
    double ds[2] = {1e300 * r, -r}, dr[2] = {0};
    int64_t qs[1] = {INT64_MIN + r}, qr[1] = {0};
    char ss[24], sr[24] = "", want[24];
    snprintf(ss, sizeof ss, "from %d", r);
    snprintf(want, sizeof want, "from %d", prev);
    CommP2p *set = NULL;
    ok &= comm_p2p_create(c, 10, &set) == 0;
    ok &= comm_irecv(c, set, 0, fr, 3, COMM_F32, prev, TAG_A) == 0;
    ok &= comm_irecv(c, set, 1, dr, 2, COMM_F64, prev, TAG_A) == 0;
    ok &= comm_irecv(c, set, 2, qr, 1, COMM_I64, prev, TAG_A) == 0;
    ok &= comm_irecv(c, set, 3, sr, sizeof sr, COMM_BYTE, prev, TAG_A) == 0; /* room to spare */
    ok &= comm_irecv(c, set, 4, br, big, COMM_F32, prev, TAG_LAST) == 0;
    ok &= comm_isend(c, set, 5, fs, 3, COMM_F32, next, TAG_A) == 0;
    ok &= comm_isend(c, set, 6, ds, 2, COMM_F64, next, TAG_A) == 0;
    ok &= comm_isend(c, set, 7, qs, 1, COMM_I64, next, TAG_A) == 0;
    ok &= comm_isend(c, set, 8, ss, strlen(ss) + 1, COMM_BYTE, next, TAG_A) == 0;
    ok &= comm_isend(c, set, 9, bs, big, COMM_F32, next, TAG_LAST) == 0;
    int seen = 0, slot;
    CommStatus st;
    for (;;) {
        ok &= comm_p2p_waitany(c, set, &slot, &st) == 0;
        if (slot < 0) break;
        ok &= !(seen >> slot & 1);
        seen |= 1 << slot;
        const size_t counts[10] = {3, 2, 1, strlen(ss) + 1, big, 3, 2, 1, strlen(ss) + 1, big};
        if (slot == 3) { /* the sender's string length, not the buffer's */
            ok &= st.count == strlen(want) + 1;
        } else {
            ok &= st.count == counts[slot];
        }
        ok &= st.peer == (slot < 5 ? prev : next) && st.tag == (slot % 5 == 4 ? TAG_LAST : TAG_A);
    }
    ok &= seen == (1 << 10) - 1;
    ok &= fr[0] == prev + 0.5f && fr[1] == -1.0f * prev && fr[2] == 3;
    ok &= dr[0] == 1e300 * prev && dr[1] == -prev && qr[0] == INT64_MIN + prev;
    ok &= !strcmp(sr, want);
    for (size_t i = 0; i < big; i++) ok &= br[i] == (float)(prev * 7 + (int)(i % 1000));
    /* blocking conveniences: to the next and back from the previous (even ranks send
     * first; one rank sends to itself without blocking) */
    int64_t x = 100 + r, y = -1;
    if (n == 1) {
        ok &= comm_isend(c, set, 0, &x, 1, COMM_I64, 0, TAG_B) == 0;
        ok &= comm_recv(c, &y, 1, COMM_I64, 0, TAG_B, &st) == 0;
        ok &= comm_p2p_wait(c, set, 0, NULL) == 0;
    } else if (r % 2 == 0) {
        ok &= comm_send(c, &x, 1, COMM_I64, next, TAG_B) == 0;
        ok &= comm_recv(c, &y, 1, COMM_I64, prev, TAG_B, &st) == 0;
    } else {
        ok &= comm_recv(c, &y, 1, COMM_I64, prev, TAG_B, &st) == 0;
        ok &= comm_send(c, &x, 1, COMM_I64, next, TAG_B) == 0;
    }
    ok &= y == 100 + prev && st.peer == prev && st.tag == TAG_B && st.count == 1;
    comm_p2p_destroy(c, set);
    free(bs);
    free(br);
    comm_destroy(c);
    assert_true(mpitest_all(ok));
}

/* Every rank (rank 0 too, to itself) pushes K messages of different lengths to rank 0,
 * which receives from any source: first by probing (peer and length unknown; each
 * sender's messages come in the order sent), then by serving a set of any-source
 * receives with testany (each message exactly once; which finished receive testany
 * reports first is not ordered). */
#define K_PUSH 5
static size_t push_len(int rank, int k) { return 2 + (size_t)(rank * 3 + k * 5) % 11; }

static int serve_pushes(Comm *c, int round, int *got_k)
{
    int n = c->size, ok = 1;
    double buf[4][16];
    CommStatus st;
    if (round == 0) {
        for (int m = 0; m < n * K_PUSH; m++) {
            ok &= comm_probe_wait(c, COMM_ANY_SOURCE, TAG_PUSH, COMM_F64, &st) == 0;
            int q = st.peer, k = 0;
            while (k < K_PUSH && got_k[q] >> k & 1) k++; /* the next one in order */
            ok &= q >= 0 && q < n && k < K_PUSH && st.tag == TAG_PUSH && st.count == push_len(q, k);
            CommStatus rs;
            ok &= comm_recv(c, buf[0], 16, COMM_F64, q, TAG_PUSH, &rs) == 0;
            ok &= rs.peer == q && rs.count == st.count;
            ok &= buf[0][0] == q && buf[0][1] == k + 100 * round;
            got_k[q] |= 1 << k;
        }
        return ok;
    }
    CommP2p *set = NULL;
    ok &= comm_p2p_create(c, 4, &set) == 0;
    for (int i = 0; i < 4; i++)
        ok &= comm_irecv(c, set, i, buf[i], 16, COMM_F64, COMM_ANY_SOURCE, TAG_PUSH) == 0;
    int got = 0, slot;
    while (got < n * K_PUSH) {
        ok &= comm_p2p_testany(c, set, &slot, &st) == 0;
        if (slot < 0) continue; /* never blocks on one peer */
        int q = st.peer, k = (int)buf[slot][1] - 100 * round;
        ok &= q >= 0 && q < n && buf[slot][0] == q && k >= 0 && k < K_PUSH &&
              !(got_k[q] >> k & 1) && st.count == push_len(q, k);
        got_k[q] |= 1 << k;
        got++;
        ok &= comm_irecv(c, set, slot, buf[slot], 16, COMM_F64, COMM_ANY_SOURCE, TAG_PUSH) == 0;
    }
    /* four receives are still posted, with nothing to receive: cancel them */
    for (int i = 0; i < 4; i++) ok &= comm_p2p_cancel(c, set, i) == 0;
    comm_p2p_destroy(c, set);
    return ok;
}

static void test_p2p_any_source(void **state)
{
    (void)state;
    Comm *c = make();
    int r = c->rank, n = c->size, ok = 1;
    for (int round = 0; round < 2; round++) {
        double msg[K_PUSH][16];
        CommP2p *set = NULL;
        ok &= comm_p2p_create(c, K_PUSH, &set) == 0;
        for (int k = 0; k < K_PUSH; k++) {
            for (int j = 0; j < 16; j++) msg[k][j] = j == 0 ? r : j == 1 ? k + 100 * round : -j;
            ok &= comm_isend(c, set, k, msg[k], push_len(r, k), COMM_F64, 0, TAG_PUSH) == 0;
        }
        if (r == 0) {
            int got_k[64] = {0};
            ok &= serve_pushes(c, round, got_k);
            for (int q = 0; q < n; q++) ok &= got_k[q] == (1 << K_PUSH) - 1;
        }
        for (int k = 0; k < K_PUSH; k++) ok &= comm_p2p_wait(c, set, k, NULL) == 0;
        comm_p2p_destroy(c, set);
        ok &= comm_barrier(c) == 0;
    }
    comm_destroy(c);
    assert_true(mpitest_all(ok));
}

/* Two messages to one peer with tags A then B, received B first: each receive takes its
 * own tag; a probe for a tag finds only that tag's messages. */
static void test_p2p_tags_apart(void **state)
{
    (void)state;
    Comm *c = make();
    int r = c->rank, n = c->size, ok = 1;
    int next = (r + 1) % n, prev = (r + n - 1) % n;
    int64_t a = 1000 + r, b = 2000 + r, ra = 0, rb = 0;
    CommP2p *set = NULL;
    ok &= comm_p2p_create(c, 2, &set) == 0;
    ok &= comm_isend(c, set, 0, &a, 1, COMM_I64, next, TAG_A) == 0;
    ok &= comm_isend(c, set, 1, &b, 1, COMM_I64, next, TAG_B) == 0;
    CommStatus st;
    ok &= comm_probe_wait(c, prev, TAG_B, COMM_I64, &st) == 0 && st.tag == TAG_B;
    ok &= comm_recv(c, &rb, 1, COMM_I64, prev, TAG_B, &st) == 0 && st.tag == TAG_B;
    int found = -1;
    ok &= comm_probe(c, COMM_ANY_SOURCE, TAG_B, COMM_I64, &found, &st) == 0 && found == 0;
    ok &= comm_recv(c, &ra, 1, COMM_I64, COMM_ANY_SOURCE, TAG_A, &st) == 0;
    ok &= ra == 1000 + prev && rb == 2000 + prev && st.peer == prev && st.tag == TAG_A;
    ok &= comm_p2p_wait(c, set, 0, NULL) == 0 && comm_p2p_wait(c, set, 1, NULL) == 0;
    comm_p2p_destroy(c, set);
    ok &= comm_barrier(c) == 0;
    ok &= comm_probe(c, COMM_ANY_SOURCE, TAG_A, COMM_I64, &found, NULL) == 0 && found == 0;
    comm_destroy(c);
    assert_true(mpitest_all(ok));
}

/* Messages next to a deterministic allreduce in flight on the same Comm: neither takes
 * the other's data.  Rank 0 then blocks in comm_recv for a message that rank 1 sends only
 * after its own allreduce has finished, which needs rank 0 to keep driving it: the
 * blocking receive must do so (else this hangs). */
static void test_p2p_beside_reduction(void **state)
{
    (void)state;
    Comm *c = make();
    int r = c->rank, n = c->size, ok = 1;
    const size_t len = (size_t)2 << 20; /* 8 MB: many segments beyond the window */
    float *g = xaligned(len * sizeof(float));
    for (size_t i = 0; i < len; i++) g[i] = (float)(r + 1 + (int)(i % 3));
    CommReq *q = NULL;
    CommTask t = {COMM_ALLREDUCE, COMM_DET, COMM_F32, g, 0, len, NULL, NULL, NULL};
    ok &= comm_start(c, &t, &q) == 0;
    /* a ring exchange with tag 0 while the reduction runs */
    int next = (r + 1) % n, prev = (r + n - 1) % n;
    float out[64], in[64];
    for (int i = 0; i < 64; i++) out[i] = -(float)(r * 64 + i), in[i] = 0;
    CommP2p *set = NULL;
    ok &= comm_p2p_create(c, 2, &set) == 0;
    ok &= comm_irecv(c, set, 0, in, 64, COMM_F32, prev, 0) == 0;
    ok &= comm_isend(c, set, 1, out, 64, COMM_F32, next, 0) == 0;
    int slot;
    for (int k = 0; k < 2; k++) ok &= comm_p2p_waitany(c, set, &slot, NULL) == 0 && slot >= 0;
    for (int i = 0; i < 64; i++) ok &= in[i] == -(float)(prev * 64 + i);
    int64_t token = 42;
    if (n >= 2 && r == 0) {
        ok &= comm_recv(c, &token, 1, COMM_I64, 1, TAG_A, NULL) == 0 && token == 7;
        ok &= comm_wait(c, &q) == 0;
    } else {
        ok &= comm_wait(c, &q) == 0;
        token = 7;
        if (n >= 2 && r == 1) ok &= comm_send(c, &token, 1, COMM_I64, 0, TAG_A) == 0;
    }
    /* exact sums (small integers) */
    for (size_t i = 0; i < len; i++) ok &= g[i] == (float)(n * (n + 1) / 2 + n * (int)(i % 3));
    comm_p2p_destroy(c, set);
    free(g);
    comm_destroy(c);
    assert_true(mpitest_all(ok));
}

#define EXPECT_SOFT(call, text)                                                        \
    do {                                                                               \
        err_clear();                                                                   \
        int rc_ = (call);                                                              \
        ok &= rc_ == MT_EX_SOFTWARE && strstr(err_msg(), (text)) != NULL;              \
        if (rc_ != MT_EX_SOFTWARE || !strstr(err_msg(), (text)))                       \
            fprintf(stderr, "%s: rc %d '%s' (wanted '%s')\n", #call, rc_, err_msg(), text); \
    } while (0)

/* Bad arguments are refused with a message and post nothing; free slots; cancel. */
static void test_p2p_bad_args(void **state)
{
    (void)state;
    Comm *c = make();
    int r = c->rank, n = c->size, ok = 1;
    CommP2p *set = NULL;
    float f[4] = {0};
    EXPECT_SOFT(comm_p2p_create(c, 0, &set), "0 slots");
    ok &= set == NULL;
    ok &= comm_p2p_create(c, 2, &set) == 0;
    EXPECT_SOFT(comm_isend(c, set, 0, f, 1, COMM_F32, r, -1), "tag -1 outside");
    EXPECT_SOFT(comm_isend(c, set, 0, f, 1, COMM_F32, r, COMM_TAG_MAX + 1), "tag 4096 outside");
    EXPECT_SOFT(comm_isend(c, set, 0, f, 1, COMM_F32, n, 0), "is not a rank");
    EXPECT_SOFT(comm_isend(c, set, 0, f, 1, COMM_F32, COMM_ANY_SOURCE, 0), "is not a rank");
    EXPECT_SOFT(comm_irecv(c, set, 0, f, 1, COMM_F32, -2, 0), "is not a rank");
    EXPECT_SOFT(comm_isend(c, set, 2, f, 1, COMM_F32, r, 0), "slot 2 outside");
    EXPECT_SOFT(comm_irecv(c, set, -1, f, 1, COMM_F32, r, 0), "slot -1 outside");
    EXPECT_SOFT(comm_isend(c, set, 0, f, (size_t)INT_MAX + 1, COMM_F32, r, 0), "split it");
    EXPECT_SOFT(comm_isend(c, set, 0, f, 1, (CommType)9, r, 0), "unknown CommType 9");
    EXPECT_SOFT(comm_irecv(c, set, 0, NULL, 3, COMM_F32, r, 0), "NULL buffer");
    EXPECT_SOFT(comm_send(c, f, 1, COMM_F32, r, 99999), "tag 99999");
    EXPECT_SOFT(comm_recv(c, f, 1, COMM_F32, n + 3, 0, NULL), "is not a rank");
    int found = 1;
    EXPECT_SOFT(comm_probe(c, COMM_ANY_SOURCE, -5, COMM_F32, &found, NULL), "tag -5");
    ok &= found == 0;
    /* free slots: done at once, empty status; testany over nothing in flight */
    int done = 0, slot = 7;
    CommStatus st = {1, 1, 1};
    ok &= comm_p2p_test(c, set, 1, &done, &st) == 0 && done == 1 && st.peer == COMM_ANY_SOURCE &&
          st.tag == -1 && st.count == 0;
    ok &= comm_p2p_testany(c, set, &slot, NULL) == 0 && slot == -1;
    slot = 7;
    ok &= comm_p2p_waitany(c, set, &slot, NULL) == 0 && slot == -1;
    EXPECT_SOFT(comm_p2p_test(c, set, 5, &done, NULL), "slot 5 outside");
    /* a receive nobody answers: pending, busy, then cancelled */
    ok &= comm_irecv(c, set, 0, f, 4, COMM_F32, COMM_ANY_SOURCE, TAG_LAST) == 0;
    ok &= comm_p2p_test(c, set, 0, &done, NULL) == 0 && done == 0;
    ok &= comm_p2p_testany(c, set, &slot, NULL) == 0 && slot == -1;
    EXPECT_SOFT(comm_irecv(c, set, 0, f, 4, COMM_F32, r, 1), "still holds a receive");
    ok &= comm_p2p_cancel(c, set, 0) == 0;
    ok &= comm_p2p_cancel(c, set, 0) == 0; /* free now */
    /* a send to itself cannot be cancelled; its message then arrives whole */
    float x[2] = {1.5f, 2.5f};
    ok &= comm_isend(c, set, 1, x, 2, COMM_F32, r, TAG_LAST) == 0;
    EXPECT_SOFT(comm_isend(c, set, 1, x, 2, COMM_F32, r, TAG_LAST), "still holds a send");
    EXPECT_SOFT(comm_p2p_cancel(c, set, 1), "cannot be cancelled");
    /* a receive posted when its message is already there is matched at once: cancel
     * reports 1 and the data is in place */
    ok &= comm_probe_wait(c, r, TAG_LAST, COMM_F32, &st) == 0 && st.peer == r && st.count == 2;
    ok &= comm_irecv(c, set, 0, f, 4, COMM_F32, r, TAG_LAST) == 0;
    ok &= comm_p2p_cancel(c, set, 0) == 1 && f[0] == 1.5f && f[1] == 2.5f;
    ok &= comm_p2p_wait(c, set, 1, &st) == 0 && st.peer == r && st.count == 2 && st.tag == TAG_LAST;
    comm_p2p_destroy(c, set);
    comm_p2p_destroy(c, NULL);
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
        cmocka_unit_test(test_split_through_table),
        cmocka_unit_test(test_agree_flags),
        cmocka_unit_test(test_p2p_ring),
        cmocka_unit_test(test_p2p_any_source),
        cmocka_unit_test(test_p2p_tags_apart),
        cmocka_unit_test(test_p2p_beside_reduction),
        cmocka_unit_test(test_p2p_bad_args),
    };
    return MPITEST_RUN(tests);
}
