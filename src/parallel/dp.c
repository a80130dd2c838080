/* dp.c — see dp.h.  Buckets are fixed ranges of the slab, cut downward from its end at
 * multiples of CLIP_BLOCK (so every clip block lies in one bucket and, within a bucket,
 * in one rank's shard).  Layers become ready from the top of the slab down, so the
 * ready part is always [ready_lo, nparams): bucket b can start once ready_lo <= its lo. */
#include "parallel/dp.h"

#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/optim.h"
#include "parallel/coll.h"

#define DP_MAX_INFLIGHT 4

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
};

static CommMode mode_of(const Dp *dp)
{
    return dp->c.reduce == DP_REDUCE_FAST ? COMM_FAST : COMM_DET;
}

Dp *dp_create(Comm *comm, const DpConf *c)
{
    Dp *dp = xcalloc(1, sizeof *dp);
    dp->comm = comm;
    dp->c = *c;
    size_t n = c->nparams;
    size_t S = (size_t)(c->bucket_mb * 1024.0 * 1024.0 / sizeof(float));
    S = MT_MAX((size_t)CLIP_BLOCK, S / CLIP_BLOCK * CLIP_BLOCK);
    int cap = (int)(n / S + 2);
    dp->blo = xcalloc(cap, sizeof(size_t));
    dp->bhi = xcalloc(cap, sizeof(size_t));
    size_t hi = n;
    while (hi > 0) {
        size_t lo = hi > S ? (hi - S) / CLIP_BLOCK * CLIP_BLOCK : 0;
        /* do not leave a sliver of less than half a bucket at the bottom */
        if (lo > 0 && lo < S / 2) lo = 0;
        CHECK(dp->nb < cap);
        dp->blo[dp->nb] = lo;
        dp->bhi[dp->nb] = hi;
        dp->nb++;
        hi = lo;
    }
    dp->req = xcalloc(dp->nb ? dp->nb : 1, sizeof(CommReq *));
    /* shard pieces */
    if (c->zero && comm->size > 1) {
        dp->plo = xcalloc(dp->nb, sizeof(size_t));
        dp->phi = xcalloc(dp->nb, sizeof(size_t));
        dp->poff = xcalloc(dp->nb, sizeof(size_t));
        for (int b = dp->nb - 1; b >= 0; b--) { /* ascending offsets */
            size_t lo, hi2;
            coll_shard_range(dp->blo[b], dp->bhi[b], comm->size, comm->rank, &lo, &hi2);
            if (hi2 <= lo) continue;
            dp->plo[dp->npieces] = lo;
            dp->phi[dp->npieces] = hi2;
            dp->poff[dp->npieces] = dp->state_len;
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
    free(dp);
}

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
        int st = coll_start(dp->comm, kind, mode_of(dp), COMM_F32, dp->grads, dp->blo[b],
                            dp->bhi[b], &dp->req[b]);
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
    start_ready(dp);
    progress(dp);
    dp->t_comm += now_s() - t0;
}

void dp_poll(void *arg)
{
    Dp *dp = arg;
    if (dp->next_done == dp->next_start) return;
    double t0 = now_s();
    progress(dp);
    dp->t_comm += now_s() - t0;
}

void dp_step_end(Dp *dp)
{
    double t0 = now_s();
    dp->ready_lo = 0;
    start_ready(dp);
    while (dp->next_done < dp->next_start) wait_oldest(dp);
    double dt = now_s() - t0;
    dp->t_exposed = dt;
    dp->t_comm += dt;
}

double dp_exposed_s(const Dp *dp) { return dp->t_exposed; }
double dp_comm_s(const Dp *dp) { return dp->t_comm; }

void dp_clip_partials(Dp *dp, const float *grads, double *partial)
{
    size_t n = dp->c.nparams, nb = clip_nblocks(n);
    if (!dp->c.zero || dp->comm->size == 1) {
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
    if (!dp->c.zero || dp->comm->size == 1) return;
    allgather_slab(dp, params);
}

void dp_gather_states(Dp *dp, float *const *states, float *const *full, int nstates)
{
    for (int k = 0; k < nstates; k++) {
        if (!dp->c.zero || dp->comm->size == 1) {
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
