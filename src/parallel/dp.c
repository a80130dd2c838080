/* dp.c — see dp.h.  Buckets are fixed ranges of the slab, cut downward from its end at
 * multiples of SLAB_BLOCK (so every clip block lies in one bucket and, within a bucket,
 * in one rank's shard).  Layers become ready from the top of the slab down, so the
 * ready part is always [ready_lo, nparams): bucket b can start once ready_lo <= its lo. */
#include "parallel/dp.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/optim.h"
#include "core/slab.h"
#include "core/tree.h"
#include "parallel/coll.h"
#include "parallel/shard.h"

#define DP_MAX_INFLIGHT 4
#define SHM_BLK 2048    /* floats per block of the shared-memory tree sum */
#define SHM_CTL 4096    /* bytes of a rank's control area at the start of its segment */

/* This rank's shard of one bucket: its slab start and its optimizer-state offset (the
 * on_sum argument of the bucket's reduction, hence dp). */
typedef struct {
    struct Dp *dp;
    size_t lo, off;
} DpShard;

/* A rank's control area in its shared segment (written only by that rank). */
typedef struct {
    uint64_t ready; /* seq * (nb + 1) + number of buckets whose local gradient is final */
    char pad1[56];
    uint64_t done;  /* seq of the last step whose shard of the parameters is updated */
    int64_t pid;    /* the rank's process id (a peer checks that it is alive while waiting) */
    char pad2[48];
} ShmCtl;

struct Dp {
    Comm *comm;
    DpConf c;
    int nb;              /* buckets, in backward order: bucket 0 is the top of the slab */
    size_t *blo, *bhi;
    CommReq **req;       /* (nb) in-flight reductions */
    int next_start;      /* next bucket to start */
    int next_done;       /* oldest bucket not known finished */
    size_t ready_lo;
    float *grads;
    int npieces;         /* this rank's shard pieces, ascending */
    size_t *plo, *phi, *poff;
    size_t state_len;
    double t_exposed, t_comm;
    double *partial;     /* (clip_nblocks) scratch */
    int sharded;         /* the optimizer updates this rank's shard pieces only */
    /* shared-memory path (all ranks on one node, reduce = deterministic) */
    int shm;
    void *shm_handle;
    float **g;           /* (size) every rank's gradient slab */
    ShmCtl **ctl;        /* (size) every rank's control area */
    float *params;       /* the node's one parameter slab (rank 0's segment) */
    uint64_t seq;        /* steps begun */
    int published;       /* buckets announced ready this step */
    int red_next;        /* next bucket whose shard this rank reduces */
    int P, E;            /* virtual ranks of the canonical tree, folded pairs */
    float **scr;         /* (2P) tree-node scratch blocks of SHM_BLK floats */
    int yield;           /* more ranks than CPUs: waiting yields */
    DpShard *shard;      /* (nb) this rank's shard of bucket b (sharded only) */
    DpUpdateFn upd;      /* fused optimizer update, or NULL */
    void *upd_arg;
    float *upd_params;   /* message path: the slab the fused update writes and the
                            reduction's gather steps distribute */
};

static CommMode mode_of(const Dp *dp)
{
    return dp->c.reduce == DP_REDUCE_FAST ? COMM_FAST : COMM_DET;
}

/* ---- shared-memory path ------------------------------------------------------------
 * Every rank's gradient slab and the node's one parameter slab live in memory that all
 * ranks map.  A rank announces each bucket whose local gradient is final (ctl->ready);
 * the owner of a shard of that bucket sums it straight from the ranks' slabs along the
 * canonical tree of coll.h (same additions, same bits as the MPI path), into its own
 * slab.  The optimizer then updates the rank's shard of the shared parameters in place,
 * and "allgather" is a wait until every rank has updated its shard (ctl->done).  No
 * copies through MPI, and one parameter slab per node instead of one per rank.
 *
 * Why this is race-free: a rank reads the others' gradients only at its own shards and
 * only after they announced them; it writes parameters only after dp_step_end, when
 * every rank has announced every bucket (so no rank's backward still reads them); a rank
 * writes its gradient slab again only in the next step's backward, after the "allgather"
 * wait, when every owner has finished reading it. */

static void shm_setup(Dp *dp)
{
    Comm *comm = dp->comm;
    int N = comm->size;
    size_t gbytes = (dp->c.nparams * sizeof(float) + 4095) / 4096 * 4096;
    size_t bytes = SHM_CTL + gbytes + (comm->rank == 0 ? dp->c.nparams * sizeof(float) : 0);
    void **bases = xcalloc((size_t)N, sizeof(void *));
    if (comm_shm_alloc(comm, bytes, bases, &dp->shm_handle) != 0) {
        free(bases);
        return;
    }
    dp->shm = 1;
    dp->g = xcalloc((size_t)N, sizeof(float *));
    dp->ctl = xcalloc((size_t)N, sizeof(ShmCtl *));
    for (int r = 0; r < N; r++) {
        CHECK(bases[r]);
        dp->ctl[r] = bases[r];
        dp->g[r] = (float *)((char *)bases[r] + SHM_CTL);
    }
    dp->params = (float *)((char *)bases[0] + SHM_CTL + gbytes);
    free(bases);
    dp->ctl[comm->rank]->pid = (int64_t)getpid();
    comm_barrier(comm); /* every pid written before anyone waits */
    dp->P = shard_pow2_floor(N);
    dp->E = N - dp->P;
    dp->scr = xcalloc(2 * (size_t)dp->P, sizeof(float *));
    for (int i = 0; i < 2 * dp->P; i++) dp->scr[i] = xaligned(SHM_BLK * sizeof(float));
    cpu_set_t cs;
    dp->yield = comm->local_size >
                (sched_getaffinity(0, sizeof cs, &cs) == 0 ? CPU_COUNT(&cs) : 1);
}

/* Sum of virtual leaves [v0, v1) over elements [off, off + n): a pointer to n floats
 * (straight into a slab for a single unfolded leaf, else tree-node scratch `node`, or
 * `dst` at the root).  Lower subtree + upper subtree, as coll.h defines the tree. */
static const float *vsum(Dp *dp, int v0, int v1, size_t off, size_t n, int node, float *dst)
{
    if (v1 - v0 == 1) {
        if (v0 >= dp->E) return dp->g[v0 + dp->E] + off;
        float *d = dst ? dst : dp->scr[node];
        coll_add_f32(d, dp->g[2 * v0] + off, dp->g[2 * v0 + 1] + off, n);
        return d;
    }
    int mid = tree_mid(v0, v1);
    const float *a = vsum(dp, v0, mid, off, n, 2 * node, NULL);
    const float *b = vsum(dp, mid, v1, off, n, 2 * node + 1, NULL);
    float *d = dst ? dst : dp->scr[node];
    coll_add_f32(d, a, b, n);
    return d;
}

/* Wait until rank q's counter *p reaches v.  A rank that died (killed, crashed) would
 * leave this one spinning until mpirun or the step watchdog ends the job: check every
 * second that q's process still exists, and abort the job naming it if not. */
static void shm_wait(const Dp *dp, int q, const uint64_t *p, uint64_t v)
{
    double t_check = 0;
    for (int i = 0; __atomic_load_n(p, __ATOMIC_ACQUIRE) < v; i++) {
        if (dp->yield || i > 4096) sched_yield();
#if defined(__x86_64__) || defined(__i386__)
        else __builtin_ia32_pause();
#endif
        if ((i & 1023) == 1023) {
            double t = now_s();
            if (t_check == 0) t_check = t;
            if (t - t_check < 1.0) continue;
            t_check = t;
            pid_t pid = (pid_t)dp->ctl[q]->pid;
            if (kill(pid, 0) != 0 && errno == ESRCH)
                fatal(MT_EX_SOFTWARE, "data-parallel: rank %d (pid %ld on this node) exited while "
                      "this rank waited for it in step %llu of the shared-memory reduction; "
                      "its log says why", q, (long)pid, (unsigned long long)dp->seq);
        }
    }
}

static void shm_publish(Dp *dp)
{
    int count = dp->published;
    while (count < dp->nb && dp->blo[count] >= dp->ready_lo) count++;
    if (count == dp->published) return;
    dp->published = count;
    __atomic_store_n(&dp->ctl[dp->comm->rank]->ready, dp->seq * (uint64_t)(dp->nb + 1) + (uint64_t)count,
                     __ATOMIC_RELEASE);
}

/* Reduce this rank's shard of the buckets every rank has announced; block = 1: all. */
static void shm_reduce(Dp *dp, int block)
{
    int N = dp->comm->size, me = dp->comm->rank;
    while (dp->red_next < dp->nb) {
        int b = dp->red_next;
        uint64_t need = dp->seq * (uint64_t)(dp->nb + 1) + (uint64_t)b + 1;
        for (int q = 0; q < N; q++) {
            if (__atomic_load_n(&dp->ctl[q]->ready, __ATOMIC_ACQUIRE) >= need) continue;
            if (!block) return;
            shm_wait(dp, q, &dp->ctl[q]->ready, need);
        }
        size_t lo, hi;
        shard_range(dp->blo[b], dp->bhi[b], N, me, &lo, &hi);
        for (size_t off = lo; off < hi; off += SHM_BLK) {
            size_t n = MT_MIN((size_t)SHM_BLK, hi - off);
            vsum(dp, 0, dp->P, off, n, 1, dp->g[me] + off);
            /* the block's sum is still in L1: update its parameters now */
            if (dp->upd) dp->upd(dp->upd_arg, off, off + n, dp->shard[b].off + (off - lo));
        }
        dp->red_next++;
    }
}

Dp *dp_create(Comm *comm, const DpConf *c)
{
    Dp *dp = xcalloc(1, sizeof *dp);
    dp->comm = comm;
    dp->c = *c;
    size_t n = c->nparams;
    size_t S = (size_t)(c->bucket_mb * 1024.0 * 1024.0 / sizeof(float));
    S = MT_MAX((size_t)SLAB_BLOCK, S / SLAB_BLOCK * SLAB_BLOCK);
    int cap = (int)(n / S + 2);
    dp->blo = xcalloc(cap, sizeof(size_t));
    dp->bhi = xcalloc(cap, sizeof(size_t));
    size_t hi = n;
    while (hi > 0) {
        size_t lo = hi > S ? (hi - S) / SLAB_BLOCK * SLAB_BLOCK : 0;
        /* do not leave a sliver of less than half a bucket at the bottom */
        if (lo > 0 && lo < S / 2) lo = 0;
        CHECK(dp->nb < cap);
        dp->blo[dp->nb] = lo;
        dp->bhi[dp->nb] = hi;
        dp->nb++;
        hi = lo;
    }
    dp->req = xcalloc(dp->nb ? dp->nb : 1, sizeof(CommReq *));
    if (comm->size > 1 && c->shm && c->reduce == DP_REDUCE_DETERMINISTIC) shm_setup(dp);
    dp->sharded = comm->size > 1 && (c->zero || dp->shm);
    if (dp->sharded) dp->shard = xcalloc((size_t)(dp->nb ? dp->nb : 1), sizeof *dp->shard);
    /* shard pieces */
    if (dp->sharded) {
        dp->plo = xcalloc(dp->nb, sizeof(size_t));
        dp->phi = xcalloc(dp->nb, sizeof(size_t));
        dp->poff = xcalloc(dp->nb, sizeof(size_t));
        for (int b = dp->nb - 1; b >= 0; b--) { /* ascending offsets */
            size_t lo, hi2;
            shard_range(dp->blo[b], dp->bhi[b], comm->size, comm->rank, &lo, &hi2);
            if (hi2 <= lo) continue;
            dp->plo[dp->npieces] = lo;
            dp->phi[dp->npieces] = hi2;
            dp->poff[dp->npieces] = dp->state_len;
            dp->shard[b] = (DpShard){dp, lo, dp->state_len};
            dp->state_len += hi2 - lo;
            dp->npieces++;
        }
    } else {
        dp->npieces = 1;
        dp->plo = xcalloc(1, sizeof(size_t));
        dp->phi = xcalloc(1, sizeof(size_t));
        dp->poff = xcalloc(1, sizeof(size_t));
        dp->phi[0] = n;
        dp->state_len = n;
    }
    dp->partial = xcalloc(clip_nblocks(n) + 1, sizeof(double));
    return dp;
}

void dp_destroy(Dp *dp)
{
    if (!dp) return;
    for (int b = 0; b < dp->nb; b++)
        if (dp->req[b]) coll_wait(dp->comm, &dp->req[b]);
    free(dp->blo);
    free(dp->bhi);
    free(dp->req);
    free(dp->plo);
    free(dp->phi);
    free(dp->poff);
    free(dp->partial);
    free(dp->shard);
    if (dp->shm) {
        comm_shm_free(dp->comm, dp->shm_handle);
        for (int i = 0; i < 2 * dp->P; i++) free(dp->scr[i]);
        free(dp->scr);
        free(dp->g);
        free(dp->ctl);
    }
    free(dp);
}

int dp_can_fuse_update(const Dp *dp)
{
    return dp->shm || (dp->sharded && dp->c.reduce == DP_REDUCE_DETERMINISTIC);
}

void dp_set_update(Dp *dp, DpUpdateFn fn, void *arg, float *params)
{
    CHECK(!fn || dp_can_fuse_update(dp));
    CHECK(!fn || dp->shm || params);
    dp->upd = fn;
    dp->upd_arg = arg;
    dp->upd_params = params;
}

/* on_sum of a bucket's reduction (message path): [a, b) of this rank's shard of the
 * bucket is summed; update it now (the parameters are then gathered by the same task) */
static void bucket_summed(void *arg, size_t a, size_t b)
{
    const DpShard *sh = arg;
    sh->dp->upd(sh->dp->upd_arg, a, b, sh->off + (a - sh->lo));
}

int dp_shm(const Dp *dp) { return dp->shm; }
int dp_sharded(const Dp *dp) { return dp->sharded; }
float *dp_shared_grads(const Dp *dp) { return dp->shm ? dp->g[dp->comm->rank] : NULL; }
float *dp_shared_params(const Dp *dp) { return dp->shm ? dp->params : NULL; }

int dp_npieces(const Dp *dp) { return dp->npieces; }

void dp_piece(const Dp *dp, int i, size_t *lo, size_t *hi, size_t *off)
{
    CHECK(i >= 0 && i < dp->npieces);
    *lo = dp->plo[i];
    *hi = dp->phi[i];
    *off = dp->poff[i];
}

size_t dp_state_len(const Dp *dp) { return dp->state_len; }

void dp_step_begin(Dp *dp, float *grads)
{
    dp->grads = grads;
    dp->next_start = 0;
    dp->next_done = 0;
    dp->ready_lo = dp->c.nparams;
    dp->t_exposed = 0;
    dp->t_comm = 0;
    if (dp->shm) {
        CHECK(grads == dp->g[dp->comm->rank]);
        dp->seq++;
        dp->published = 0;
        dp->red_next = 0;
    }
}

/* Finish the oldest in-flight bucket (blocking). */
static void wait_oldest(Dp *dp)
{
    int b = dp->next_done;
    if (dp->req[b]) coll_wait(dp->comm, &dp->req[b]);
    dp->next_done++;
}

static void progress(Dp *dp)
{
    while (dp->next_done < dp->next_start) {
        int b = dp->next_done;
        if (dp->req[b] && !coll_progress(dp->comm, &dp->req[b])) break;
        dp->next_done++;
    }
}

static void start_ready(Dp *dp)
{
    if (dp->comm->size == 1) {
        while (dp->next_start < dp->nb && dp->blo[dp->next_start] >= dp->ready_lo) dp->next_start++;
        dp->next_done = dp->next_start;
        return;
    }
    while (dp->next_start < dp->nb && dp->blo[dp->next_start] >= dp->ready_lo) {
        if (dp->next_start - dp->next_done >= DP_MAX_INFLIGHT) wait_oldest(dp);
        int b = dp->next_start;
        CommKind kind = dp->c.zero ? COMM_REDUCE_SCATTER : COMM_ALLREDUCE;
        CommTask task = {kind, mode_of(dp), COMM_F32, dp->grads, dp->blo[b], dp->bhi[b],
                         NULL, NULL, NULL};
        if (dp->upd) { /* ZeRO-1 in one pass: reduce-scatter, update, allgather */
            task.kind = COMM_ALLREDUCE;
            task.on_sum = bucket_summed;
            task.on_sum_arg = &dp->shard[b];
            task.gather_buf = dp->upd_params;
        }
        int st = comm_start(dp->comm, &task, &dp->req[b]);
        if (st) fatal(st, "data-parallel: cannot start the reduction of bucket %d: %s", b, err_msg());
        dp->next_start++;
    }
}

void dp_grad_ready(void *arg, size_t lo, size_t hi)
{
    Dp *dp = arg;
    (void)hi;
    double t0 = now_s();
    if (lo < dp->ready_lo) dp->ready_lo = lo;
    if (dp->shm) {
        shm_publish(dp);
        shm_reduce(dp, 0);
    } else {
        start_ready(dp);
        progress(dp);
    }
    dp->t_comm += now_s() - t0;
}

void dp_poll(void *arg)
{
    Dp *dp = arg;
    if (dp->shm) {
        if (dp->red_next == dp->published) return;
        double t0 = now_s();
        shm_reduce(dp, 0);
        dp->t_comm += now_s() - t0;
        return;
    }
    if (dp->next_done == dp->next_start) return;
    double t0 = now_s();
    progress(dp);
    dp->t_comm += now_s() - t0;
}

void dp_step_end(Dp *dp)
{
    double t0 = now_s();
    dp->ready_lo = 0;
    if (dp->shm) {
        shm_publish(dp);
        shm_reduce(dp, 1);
    } else {
        start_ready(dp);
        while (dp->next_done < dp->next_start) wait_oldest(dp);
    }
    double dt = now_s() - t0;
    dp->t_exposed = dt;
    dp->t_comm += dt;
}

double dp_exposed_s(const Dp *dp) { return dp->t_exposed; }
double dp_comm_s(const Dp *dp) { return dp->t_comm; }

void dp_clip_partials(Dp *dp, const float *grads, double *partial)
{
    size_t n = dp->c.nparams, nb = clip_nblocks(n);
    if (!dp->sharded) {
        clip_block_sumsq(grads, n, 0, n, partial);
        return;
    }
    memset(partial, 0, nb * sizeof(double));
    for (int i = 0; i < dp->npieces; i++) clip_block_sumsq(grads, n, dp->plo[i], dp->phi[i], partial);
    /* every block has exactly one owner: the sum is exact */
    comm_allreduce(dp->comm, partial, nb, COMM_F64);
}

static void allgather_slab(Dp *dp, float *slab)
{
    for (int b = 0; b < dp->nb; b++) {
        int st = coll_start(dp->comm, COMM_ALLGATHER, COMM_DET, COMM_F32, slab, dp->blo[b],
                            dp->bhi[b], &dp->req[b]);
        if (st) fatal(st, "data-parallel: cannot start the allgather of bucket %d: %s", b, err_msg());
        if (b >= DP_MAX_INFLIGHT - 1) coll_wait(dp->comm, &dp->req[b - (DP_MAX_INFLIGHT - 1)]);
    }
    for (int b = 0; b < dp->nb; b++)
        if (dp->req[b]) coll_wait(dp->comm, &dp->req[b]);
}

void dp_allgather_params(Dp *dp, float *params)
{
    if (!dp->sharded) return;
    if (!dp->shm && dp->upd) { /* done by the step's reductions */
        CHECK(params == dp->upd_params);
        return;
    }
    double t0 = now_s();
    if (dp->shm) {
        CHECK(params == dp->params);
        __atomic_store_n(&dp->ctl[dp->comm->rank]->done, dp->seq, __ATOMIC_RELEASE);
        for (int q = 0; q < dp->comm->size; q++) shm_wait(dp, q, &dp->ctl[q]->done, dp->seq);
    } else {
        allgather_slab(dp, params);
    }
    double dt = now_s() - t0;
    dp->t_exposed += dt;
    dp->t_comm += dt;
}

void dp_gather_states(Dp *dp, float *const *states, float *const *full, int nstates)
{
    for (int k = 0; k < nstates; k++) {
        if (!dp->sharded) {
            if (full[k] != states[k]) memcpy(full[k], states[k], dp->c.nparams * sizeof(float));
            continue;
        }
        for (int i = 0; i < dp->npieces; i++)
            memcpy(full[k] + dp->plo[i], states[k] + dp->poff[i],
                   (dp->phi[i] - dp->plo[i]) * sizeof(float));
        allgather_slab(dp, full[k]);
    }
}

void dp_scatter_states(const Dp *dp, float *const *full, float *const *states, int nstates)
{
    for (int k = 0; k < nstates; k++)
        for (int i = 0; i < dp->npieces; i++)
            if (states[k] + dp->poff[i] != full[k] + dp->plo[i])
                memcpy(states[k] + dp->poff[i], full[k] + dp->plo[i],
                       (dp->phi[i] - dp->plo[i]) * sizeof(float));
}
