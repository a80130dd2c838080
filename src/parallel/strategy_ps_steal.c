/* strategy_ps_steal.c — work stealing for delayed parameter servers (parallel.steal).
 *
 * Without it worker w computes share w of every step (micro-batches [w n, (w + 1) n),
 * n = M / W), so a worker that is twice as slow sets the pace of every mode: delayed
 * mode absorbs a transient straggler within its s steps, not a persistent one.
 *
 * With it the W shares of a step go to whichever workers will be done with them first.
 * Server 0 schedules: it keeps each worker's seconds per share (cost, a moving average
 * of the timing message every worker sends after a step in which it computed) and a
 * virtual finish time of the work handed out to it (vfin), and gives share k of a step
 * to the worker with the smallest vfin + cost (its owner k on a tie, at most U shares
 * per worker), adding the cost to that worker's vfin.  Over the steps a worker twice
 * as slow gets a third of the shares of two workers.  The decision for step t + s + 1
 * is sent (one int64 mask per worker, PS_TAG_ASSIGN) when server 0 has served step t,
 * so it travels with version t + 1, which the worker waits for before step t + s + 1
 * anyway: there is no request, no round trip and nothing any rank waits on that the
 * others do not already wait on (server 0 answers nobody: no deadlock against the
 * trainer's collectives).  Until a worker has the masks (the first s + 1 steps of a
 * run, before any timing is known) every worker computes its own share.
 *
 * The bits do not move: share k's partial is computed from the same rows, dropout
 * streams (seeded by micro-batch) and version whoever computes it, is pushed with the
 * tag of (t mod (s + 2), k) — only its computer sends that tag until every server has
 * served step t, because a worker at step t + s + 2 waits for version t + 2 — and every
 * server sums the W partials in share order exactly as without stealing.  A worker
 * reads the whole batch (the loader's range is [0, M)) since any share may be its own.
 *
 * Worker slots per step group (s + 1 groups, p->G each): 2k the push of share 1's chunk k,
 * 2k + 1 the receive of chunk k of version t + 1 (posted after the step's last share
 * pushed chunk k), 2n + (u - 1) n + k the push of share u >= 2's chunk k, G - 2 the mask
 * receive, G - 1 the timing send.
 *
 * At the end of a run server 0 has sent the masks of s + 1 steps nobody runs, and the
 * workers their last timings (16 bytes: eager sends, complete without a receive); the
 * receives left posted are cancelled in ps_destroy. */
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "parallel/strategy_ps_impl.h"

#define COST_KEEP 0.75 /* the moving average keeps 3/4 of the old cost per message */

int ps_steal_tag(const PsStrategy *p, uint64_t t, int k)
{
    return PS_TAG_UNIT + (int)(t % (uint64_t)(p->stale + 2)) * p->W + k;
}

int ps_steal_create(PsStrategy *p, int first)
{
    int W = p->W;
    p->U = MT_MIN(W, PS_STEAL_UNITS);
    if (p->worker >= 0) { /* the step group's slots: see the top of this file */
        p->G = 2 * p->nchunks + (p->U - 1) * p->nchunks + 2;
        p->amsg = xcalloc((size_t)p->stale + 1, sizeof(int64_t));
        p->tmsg = xcalloc(2 * ((size_t)p->stale + 1), sizeof(double));
        return 0;
    }
    if (p->server != 0) return 0;
    p->amsg = xcalloc((size_t)W, sizeof(int64_t));
    p->tmsg = xcalloc(2 * (size_t)W, sizeof(double));
    p->cost = xcalloc((size_t)W, sizeof(double));
    p->vfin = xcalloc((size_t)W, sizeof(double));
    p->tslot = first;
    return 2 * W;
}

/* server 0: the timing receive from worker w (slot tslot + w) */
static void post_timing(PsStrategy *p, int w)
{
    CHECK(comm_irecv(p->comm, p->set, p->tslot + w, &p->tmsg[2 * w], 2, COMM_F64,
                     ps_worker_rank(p, w), PS_TAG_TIME) == 0);
    p->busy[p->tslot + w] = 1;
    p->inflight++;
}

void ps_steal_free(PsStrategy *p)
{
    free(p->amsg);
    free(p->tmsg);
    free(p->cost);
    free(p->vfin);
}

int ps_steal_persistent(const PsStrategy *p)
{
    if (!p->steal || p->server != 0) return 0;
    int n = 0;
    for (int w = 0; w < p->W; w++) n += p->busy[p->tslot + w];
    return n;
}

/* ---- worker ------------------------------------------------------------------- */

/* StrategyHooks.claim: the previous share's pushes, then the next share */
static int steal_claim(void *arg, int *share, float **grads)
{
    PsStrategy *p = arg;
    double now = now_s();
    if (p->ishare > 0) {
        p->t_units += now - p->t_unit;
        p->ready_lo = 0; /* the executor has reported every range of that share */
        ps_worker_push(p);
    }
    if (p->ishare == p->nshare) return 0;
    int u = p->ishare++;
    uint64_t ns = (uint64_t)p->stale + 1;
    p->grads = p->gring[(size_t)(p->cur % ns) * (size_t)p->U + (size_t)u];
    p->next = 0;
    p->ready_lo = p->nparams;
    *share = p->share[u];
    *grads = p->grads;
    p->t_unit = now_s();
    return 1;
}

void ps_steal_post_param(PsStrategy *p, int base, int k)
{
    const PsChunk *c = &p->chunks[k];
    ps_post_recv(p, base + 2 * k + 1, p->recv_into + c->lo, c->hi - c->lo,
                 ps_server_rank(p, c->server), PS_TAG_PARAM);
}

static void steal_post_all(PsStrategy *p, int base)
{
    for (int k = 0; k < p->nchunks; k++) ps_steal_post_param(p, base, k);
}

void ps_steal_worker_begin(PsStrategy *p, StrategyHooks *h)
{
    uint64_t t = p->cur, ns = (uint64_t)p->stale + 1;
    int g = (int)(t % ns), base = p->G * g;
    /* this step's shares: the mask that came with version t - s (its receive was posted
     * in step t - s - 1, in this group, and waited for), or the own share */
    uint64_t mask = t >= p->t0 + ns ? (uint64_t)p->amsg[g] : (uint64_t)1 << p->worker;
    p->nshare = 0;
    for (int k = 0; k < p->W; k++)
        if (mask >> k & 1) p->share[p->nshare++] = k;
    /* version t + 1 goes where this step's shares may read (recv_into is h->params when
     * lookahead = 0): chunk k's receive is posted when the last share has pushed chunk k
     * (ps_worker_push), as without stealing; with no share at once */
    if (p->nshare == 0) steal_post_all(p, base);
    CHECK(p->nshare <= p->U);
    p->st.shares = p->nshare;
    /* the mask of step t + s + 1 */
    CHECK(comm_irecv(p->comm, p->set, base + p->G - 2, &p->amsg[g], 1, COMM_I64,
                     ps_server_rank(p, 0), PS_TAG_ASSIGN) == 0);
    p->busy[base + p->G - 2] = 1;
    p->inflight++;
    p->ishare = 0;
    p->t_units = 0;
    p->ready_lo = p->nparams;
    p->next = p->nchunks; /* nothing to push before the first share */
    h->claim = steal_claim;
}

void ps_steal_worker_end(PsStrategy *p)
{
    /* the trainer claims until claim returns 0, which pushed the last share */
    CHECK(p->ishare == p->nshare && (p->ishare == 0 || p->next == p->nchunks));
    if (p->ishare == 0) return;
    uint64_t ns = (uint64_t)p->stale + 1;
    int g = (int)(p->cur % ns), slot = p->G * g + p->G - 1;
    double *m = &p->tmsg[2 * g];
    m[0] = (double)p->cur;
    m[1] = p->t_units / p->ishare;
    CHECK(comm_isend(p->comm, p->set, slot, m, 2, COMM_F64, ps_server_rank(p, 0),
                     PS_TAG_TIME) == 0);
    p->busy[slot] = 1;
    p->inflight++;
}

/* ---- server 0 ------------------------------------------------------------------ */

int ps_steal_server_done(PsStrategy *p, int slot)
{
    if (!p->steal || p->server != 0 || slot < p->tslot || slot >= p->tslot + 2 * p->W)
        return 0;
    int w = slot - p->tslot;
    if (w < p->W) {
        double x = p->tmsg[2 * w + 1];
        if (x > 0) p->cost[w] = p->cost[w] > 0 ? COST_KEEP * p->cost[w] + (1 - COST_KEEP) * x : x;
        post_timing(p, w);
    }
    return 1;
}

/* mask[w]: the shares worker w computes in the next step handed out */
static void schedule(PsStrategy *p, int64_t *mask)
{
    int W = p->W, cnt[64] = {0}, known = 1;
    for (int w = 0; w < W; w++) {
        mask[w] = 0; /* bit k set: share k (as uint64_t: W may be 64) */
        known = known && p->cost[w] > 0;
    }
    if (!known) { /* before every worker has reported: each its own share */
        for (int w = 0; w < W; w++) mask[w] = (int64_t)((uint64_t)1 << w);
        return;
    }
    for (int k = 0; k < W; k++) {
        int best = k; /* the owner first: others must finish strictly earlier */
        double bf = p->vfin[k] + p->cost[k];
        for (int w = 0; w < W; w++) {
            if (cnt[w] >= p->U) continue;
            double f = p->vfin[w] + p->cost[w];
            if (cnt[best] >= p->U || f < bf) best = w, bf = f;
        }
        mask[best] = (int64_t)((uint64_t)mask[best] | (uint64_t)1 << k);
        cnt[best]++;
        p->vfin[best] = bf;
    }
    double lo = p->vfin[0];
    for (int w = 1; w < W; w++) lo = MT_MIN(lo, p->vfin[w]);
    for (int w = 0; w < W; w++) p->vfin[w] -= lo;
}

void ps_steal_server_assign(PsStrategy *p)
{
    if (!p->steal || p->server != 0) return;
    int W = p->W, s0 = p->tslot + W;
    ps_wait_slots(p, s0, s0 + W); /* last step's masks (sent long ago) */
    if (!p->started) { /* the first step served: start listening for timings */
        p->started = 1;
        for (int w = 0; w < W; w++) post_timing(p, w);
    }
    schedule(p, p->amsg);
    for (int w = 0; w < W; w++) {
        CHECK(comm_isend(p->comm, p->set, s0 + w, &p->amsg[w], 1, COMM_I64,
                         ps_worker_rank(p, w), PS_TAG_ASSIGN) == 0);
        p->busy[s0 + w] = 1;
        p->inflight++;
    }
}
