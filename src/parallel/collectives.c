/* collectives.c — the deterministic collectives (coll.h): the plan of exchanges for the
 * canonical tree over the shard layout (shard.h), and a pipelined engine that moves each
 * exchange in segments through a small ring of persistent buffers, adding segment k
 * while later segments are in flight.  Runs on the MPI backend (comm_mpi.h). */
#include "parallel/coll.h"

#include <string.h>

#include "core/common.h"
#include "parallel/comm_mpi.h"
#include "parallel/shard.h"

/* ---- plan ---- */

/* tag steps: fold 0, reduce step s 1+s, gather step s 32+s, unfold 63 */
enum { STEP_FOLD = 0, STEP_REDUCE = 1, STEP_GATHER = 32, STEP_UNFOLD = 63 };

static CollSet set_whole(void) { return (CollSet){1, 0, 1}; }
static CollSet set_none(void) { return (CollSet){0, 1 << 30, 1}; }
static CollSet set_shards(int first, int stride) { return (CollSet){0, first, stride}; }

static void add_phase(CollDet *d, int peer, int step, CollSet send, CollSet recv, int add,
                      int mine_left, int paired)
{
    CHECK(d->nphase < COLL_MAX_PHASES && step < COLL_TAG_STEPS);
    d->ph[d->nphase++] = (CollPhase){peer, step, step, send, recv, add, mine_left, paired, 0,
                                     step >= STEP_GATHER};
}

void coll_det_plan(CollDet *d, const CommTask *task, MPI_Comm comm, int rank, int size,
                   int doubling, int tag0, char *ring, size_t segment_bytes, int window)
{
    CHECK(window >= 1 && window <= COLL_MAX_WINDOW);
    d->comm = comm;
    d->type = task->type;
    d->esz = comm_type_size(task->type);
    d->buf = task->buf;
    d->on_sum = task->on_sum;
    d->on_sum_arg = task->on_sum_arg;
    d->gbuf = task->on_sum && task->gather_buf ? task->gather_buf : task->buf;
    CHECK(!d->on_sum || (task->kind == COMM_ALLREDUCE && !doubling));
    d->lo = task->lo;
    d->hi = task->hi;
    d->P = shard_pow2_floor(size);
    d->tag0 = tag0;
    d->nphase = 0;
    d->cur = -1;
    d->ring = ring;
    d->window = window;
    d->seg_elems = segment_bytes / d->esz;
    CHECK(d->seg_elems >= 1);

    int P = d->P, E = size - P, k = 0;
    while ((1 << k) < P) k++;
    int v = shard_virt_rank(rank, size);
    int reduce = task->kind != COMM_ALLGATHER;
    int gather = task->kind != COMM_REDUCE_SCATTER;

    if (v < 0) { /* folded-away odd rank: hands its partial to rank-1, gets the result */
        if (reduce) add_phase(d, rank - 1, STEP_FOLD, set_whole(), set_none(), 0, 0, 0);
        if (gather) add_phase(d, rank - 1, STEP_UNFOLD, set_none(), set_whole(), 0, 0, 0);
        return;
    }
    int folds = rank < 2 * E; /* even rank that absorbs rank + 1 */
    if (reduce && folds) add_phase(d, rank + 1, STEP_FOLD, set_none(), set_whole(), 1, 1, 0);
    if (d->on_sum && k == 0 && d->hi > d->lo) d->on_sum(d->on_sum_arg, d->lo, d->hi); /* N = 1 */
    if (reduce && doubling && gather) {
        for (int s = 0; s < k; s++) {
            int pv = v ^ (1 << s);
            add_phase(d, shard_real_rank(pv, size), STEP_REDUCE + s, set_whole(), set_whole(), 1,
                      v < pv, 1);
        }
    } else {
        /* an allreduce fuses its last reduce step with the first gather step */
        int fuse = reduce && gather && k > 0;
        if (reduce)
            for (int s = 0; s < k; s++) {
                int pv = v ^ (1 << s), m = (1 << (s + 1)) - 1;
                add_phase(d, shard_real_rank(pv, size), STEP_REDUCE + s,
                          set_shards(pv & m, m + 1), set_shards(v & m, m + 1), 1, v < pv, 0);
            }
        if (fuse) {
            d->ph[d->nphase - 1].fused = 1;
            d->ph[d->nphase - 1].step_b = STEP_GATHER + k - 1;
        }
        if (gather)
            for (int s = k - 1 - fuse; s >= 0; s--) {
                int pv = v ^ (1 << s), m = (1 << (s + 1)) - 1;
                add_phase(d, shard_real_rank(pv, size), STEP_GATHER + s,
                          set_shards(v & m, m + 1), set_shards(pv & m, m + 1), 0, 0, 0);
            }
    }
    if (gather && folds) add_phase(d, rank + 1, STEP_UNFOLD, set_whole(), set_none(), 0, 0, 0);
}

/* ---- segment iteration over a set ---- */

static void iter_settle(const CollDet *d, const CollSet *s, CollIter *it)
{
    /* move past empty pieces */
    while (it->shard >= 0 && it->off >= it->end) {
        if (s->whole) { it->shard = -1; break; }
        it->shard += s->stride;
        if (it->shard >= d->P) { it->shard = -1; break; }
        shard_virt_range(d->lo, d->hi, d->P, it->shard, &it->off, &it->end);
    }
}

static void iter_begin(const CollDet *d, const CollSet *s, CollIter *it)
{
    if (s->whole) {
        *it = (CollIter){0, d->lo, d->hi};
    } else if (s->first >= d->P) {
        *it = (CollIter){-1, 0, 0};
        return;
    } else {
        it->shard = s->first;
        shard_virt_range(d->lo, d->hi, d->P, s->first, &it->off, &it->end);
    }
    iter_settle(d, s, it);
}

/* Next segment (element offset, count); 0 when the set is exhausted. */
static int iter_next(const CollDet *d, const CollSet *s, CollIter *it, size_t *off, size_t *cnt)
{
    if (it->shard < 0) return 0;
    size_t n = MT_MIN(d->seg_elems, it->end - it->off);
    *off = it->off;
    *cnt = n;
    it->off += n;
    iter_settle(d, s, it);
    return 1;
}

/* ---- the addition: dst = left + right with this rank's value on its side ----
 * Explicit vectors (GCC/Clang vector extensions; -O2 does not vectorise these loops),
 * compiled for AVX-512, AVX2 and the baseline and picked at load time: the data is often
 * still in cache, where the width matters.  An element-wise vector add rounds exactly as
 * the scalar one, so every version gives the same bits. */

typedef float V16F __attribute__((vector_size(64)));
typedef double V8D __attribute__((vector_size(64)));

#define LOADV(v, p) memcpy(&(v), (p), sizeof(v))
/* dst[i] = a[i] + b[i]; dst may be a or b (each element is loaded before it is stored) */
#define DEFINE_ADD3(NAME, LINKAGE, T, V, L)                                            \
    __attribute__((target_clones("avx512f", "avx2", "default"))) LINKAGE void NAME(   \
        T *dst, const T *a, const T *b, size_t n)                                      \
    {                                                                                  \
        size_t i = 0;                                                                  \
        for (; i + 2 * (L) <= n; i += 2 * (L)) {                                       \
            V a0, a1, b0, b1;                                                          \
            LOADV(a0, a + i), LOADV(a1, a + i + (L));                                  \
            LOADV(b0, b + i), LOADV(b1, b + i + (L));                                  \
            a0 = a0 + b0, a1 = a1 + b1;                                                \
            memcpy(dst + i, &a0, sizeof a0), memcpy(dst + i + (L), &a1, sizeof a1);    \
        }                                                                              \
        for (; i < n; i++) dst[i] = a[i] + b[i];                                       \
    }

DEFINE_ADD3(coll_add_f32, , float, V16F, 16)
DEFINE_ADD3(add_f64, static, double, V8D, 8)

static void add_seg(CommType t, void *dst, const void *src, size_t n, int mine_left)
{
    switch (t) {
    case COMM_F32: mine_left ? coll_add_f32(dst, dst, src, n) : coll_add_f32(dst, src, dst, n); break;
    case COMM_F64: mine_left ? add_f64(dst, dst, src, n) : add_f64(dst, src, dst, n); break;
    case COMM_I64: { /* modular: no signed overflow */
        uint64_t *restrict d = dst;
        const uint64_t *restrict s = src;
        for (size_t i = 0; i < n; i++) d[i] += s[i];
        break;
    }
    default:
        CHECK(!"summing COMM_BYTE");
    }
}

/* ---- engine ---- */

static const CollSet *stream_set(const CollPhase *p, int s)
{
    static const CollSet none = {0, 1 << 30, 1};
    switch (s) {
    case CS_SEND_A: return &p->send;
    case CS_RECV_A: return &p->recv;
    case CS_SEND_B: return p->fused ? &p->recv : &none;
    default: return p->fused ? &p->send : &none;
    }
}

static void phase_begin(CollDet *d)
{
    const CollPhase *p = &d->ph[d->cur];
    for (int s = 0; s < CS_N; s++) {
        CollStream *t = &d->st[s];
        iter_begin(d, stream_set(p, s), &t->it);
        t->posted = t->finished = 0;
        for (int i = 0; i < d->window; i++) t->state[i] = 0;
    }
    for (int i = 0; i < CS_N * d->window; i++) d->req[i] = MPI_REQUEST_NULL;
}

static char *slot_ring(const CollDet *d, int i) { return d->ring + (size_t)i * d->seg_elems * d->esz; }

/* Post the next segments of stream s that the window and the gates allow. */
static void stream_fill(CollDet *d, int s)
{
    const CollPhase *p = &d->ph[d->cur];
    CollStream *t = &d->st[s];
    const CollSet *set = stream_set(p, s);
    int W = d->window;
    int tag = d->tag0 + (s >= CS_SEND_B ? p->step_b : p->step_a);
    for (;;) {
        int i = (int)(t->posted % W);
        if (t->it.shard < 0 || t->state[i] != 0) return;
        /* return a segment only once it is summed; receive the peer's sum of a segment
         * only once our raw send of it is complete */
        if (s == CS_SEND_B && d->st[CS_RECV_A].finished <= t->posted) return;
        if (s == CS_RECV_B && d->st[CS_SEND_A].finished <= t->posted) return;
        size_t off, cnt;
        CHECK(iter_next(d, set, &t->it, &off, &cnt));
        t->off[i] = off;
        t->cnt[i] = cnt;
        int bytes = (int)(cnt * d->esz);
        MPI_Request *r = &d->req[s * W + i];
        char *at = (p->gath || s >= CS_SEND_B ? d->gbuf : d->buf) + off * d->esz;
        if (s == CS_SEND_A || s == CS_SEND_B)
            CHECK_MPI(MPI_Isend(at, bytes, MPI_BYTE, p->peer, tag, d->comm, r));
        else
            CHECK_MPI(MPI_Irecv(s == CS_RECV_A && p->add ? slot_ring(d, i) : at, bytes, MPI_BYTE,
                                p->peer, tag, d->comm, r));
        t->state[i] = 1;
        t->posted++;
    }
}

/* Process completed segments of stream s in order (adds for stream A's receives). */
static int stream_process(CollDet *d, int s)
{
    const CollPhase *p = &d->ph[d->cur];
    CollStream *t = &d->st[s];
    int n = 0;
    for (;;) {
        int i = (int)(t->finished % d->window);
        if (t->finished >= t->posted || t->state[i] != 2) return n;
        if (s == CS_RECV_A) {
            if (p->paired && d->st[CS_SEND_A].finished <= t->finished) return n;
            if (p->add)
                add_seg(d->type, d->buf + t->off[i] * d->esz, slot_ring(d, i), t->cnt[i],
                        p->mine_left);
            /* the last reduce step's sums are final: they are this rank's shard */
            if (p->fused && d->on_sum) d->on_sum(d->on_sum_arg, t->off[i], t->off[i] + t->cnt[i]);
        }
        t->state[i] = 0;
        t->finished++;
        n++;
    }
}

static int phase_idle(const CollDet *d)
{
    for (int s = 0; s < CS_N; s++)
        if (d->st[s].it.shard >= 0 || d->st[s].finished < d->st[s].posted) return 0;
    return 1;
}

int coll_det_progress(CollDet *d, int block)
{
    int W = d->window;
    if (d->cur < 0) {
        d->cur = 0;
        if (d->nphase > 0) phase_begin(d);
    }
    for (;;) {
        if (d->cur >= d->nphase) return 1;
        for (int s = 0; s < CS_N; s++) stream_fill(d, s);
        if (phase_idle(d)) {
            if (++d->cur < d->nphase) phase_begin(d);
            continue;
        }
        int nout = 0;
        if (block)
            CHECK_MPI(MPI_Waitsome(CS_N * W, d->req, &nout, d->idx, MPI_STATUSES_IGNORE));
        else
            CHECK_MPI(MPI_Testsome(CS_N * W, d->req, &nout, d->idx, MPI_STATUSES_IGNORE));
        CHECK(nout != MPI_UNDEFINED); /* not idle means something is in flight */
        if (nout == 0) return 0;
        for (int j = 0; j < nout; j++) d->st[d->idx[j] / W].state[d->idx[j] % W] = 2;
        /* in order per stream; a send finishing opens the gate of a paired add or of a
         * stream-B receive, so repeat until nothing moves */
        int more;
        do {
            more = 0;
            for (int s = 0; s < CS_N; s++) more += stream_process(d, s);
        } while (more);
    }
}

/* ---- public wrappers ---- */

int coll_start(Comm *c, CommKind kind, CommMode mode, CommType type, void *buf, size_t lo,
               size_t hi, CommReq **req)
{
    CommTask t = {kind, mode, type, buf, lo, hi, NULL, NULL, NULL};
    return comm_start(c, &t, req);
}

int coll_progress(Comm *c, CommReq **req)
{
    int done = 0;
    CHECK(comm_test(c, req, &done) == 0);
    return done;
}

int coll_wait(Comm *c, CommReq **req) { return comm_wait(c, req); }

static int run(Comm *c, CommKind kind, CommMode mode, CommType type, void *buf, size_t lo,
               size_t hi)
{
    CommTask t = {kind, mode, type, buf, lo, hi, NULL, NULL, NULL};
    return comm_run(c, &t);
}

int coll_allreduce(Comm *c, CommMode mode, CommType type, void *buf, size_t lo, size_t hi)
{
    return run(c, COMM_ALLREDUCE, mode, type, buf, lo, hi);
}

int coll_reduce_scatter(Comm *c, CommMode mode, CommType type, void *buf, size_t lo, size_t hi)
{
    return run(c, COMM_REDUCE_SCATTER, mode, type, buf, lo, hi);
}

int coll_allgather(Comm *c, CommMode mode, CommType type, void *buf, size_t lo, size_t hi)
{
    return run(c, COMM_ALLGATHER, mode, type, buf, lo, hi);
}
