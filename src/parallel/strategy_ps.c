/* strategy_ps.c — parameter servers (parallel.mode = ps) as a parallel strategy.
 *
 * Roles.  parallel.servers = S ranks serve, the other W = N - S are workers
 * (parallel.server_ranks: `last`, the default, puts the servers on the last S ranks, so
 * rank 0 is a worker; `first` on ranks 0..S-1).  Worker w computes micro-batches
 * [w*M/W, (w+1)*M/W) exactly as data-parallel rank w of W would.
 *
 * Sharding.  The slab [0, nparams) is cut into S contiguous ranges at SLAB_BLOCK
 * boundaries, balanced by bytes (server s: blocks [s*nb/S, (s+1)*nb/S) of the nb blocks;
 * max/mean <= 1 + S*SLAB_BLOCK/nparams, logged).  Server s owns the parameters and the
 * optimizer state of its range and applies the updates; it needs no per-worker copy of
 * its range: gradients arrive in chunks of PS_CHUNK floats into W * PS_WINDOW chunk
 * buffers.
 *
 * A step (consistency = sync).  A worker computes its micro-batches; as the executor
 * reports each layer's local gradient final (backward order, top of the slab first), the
 * chunks above the lowest ready offset are pushed to their servers (tag PS_TAG_GRAD), and
 * a receive for the chunk's updated parameters is posted into the parameter slab (safe:
 * the backward no longer reads parameters above that offset).  A server receives chunk c
 * from every worker, sums the W partials along the canonical tree (the rule of COMM_DET:
 * pairs (2i, 2i+1) folded first when W is not a power of two, then the balanced tree,
 * lower + upper), applies the optimizer to the chunk at once (or, with clipping, after the
 * global norm of the whole step is known) and sends the new parameters to every worker
 * (PS_TAG_PARAM).  With W a power of two dividing M each worker's sum is a subtree of the
 * canonical tree, so the parameters after every step equal those of allreduce with
 * reduce = deterministic at any rank count, bit for bit (tests/e2e/test_ps.sh).
 * A server progresses every worker with non-blocking receives (testany over one request
 * set), never waiting on one of them.
 *
 * Delayed (consistency = delayed, staleness s): worker step t computes on version t - s
 * (the parameters after step t - s; the first s steps of a run on its first version),
 * kept in a ring of s + 1 versions; the servers work as in sync.  With lookahead f > 0
 * (parallel.lookahead, default 1) the step computes on w + f (w - w'), w version t - s
 * and w' version t - s - 1 (kept too: a ring of s + 2), elementwise in that order of
 * operations — a guess of where the parameters have moved meanwhile that is a function
 * of the versions alone.  Reproducible and independent of S and W; s = 0 is sync.
 * ssp does the same with its version v whenever v < t.  docs/design.md §6 says what it does not do yet.
 *
 * ssp and async: strategy_ps_async.c (what a step is there, and the update rule).
 * delayed, ssp and async are not lockstep (ps_lockstep): the trainer agrees with the
 * other ranks only at its boundary steps.
 * Not built yet (plan refuses it with a message): server_ranks = spread. */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/cpuinfo.h"
#include "core/optim.h"
#include "core/slab.h"
#include "parallel/coll.h"
#include "parallel/strategy_ps_impl.h"

static PsStrategy *pss(Strategy *s) { return (PsStrategy *)s; }
static const PsStrategy *cpss(const Strategy *s) { return (const PsStrategy *)s; }

/* ---- roles and ranges -------------------------------------------------------- */

static int role_of(const StrategyConf *c, int rank, int world, int *server, int *worker)
{
    int S = c->servers, W = world - S;
    int first = !strcmp(c->server_ranks, "first");
    int is_server = first ? rank < S : rank >= W;
    *server = is_server ? (first ? rank : rank - W) : -1;
    *worker = is_server ? -1 : (first ? rank - S : rank);
    return is_server;
}

int ps_server_rank(const PsStrategy *p, int s) { return p->first ? s : p->W + s; }
int ps_worker_rank(const PsStrategy *p, int w) { return p->first ? p->S + w : w; }

/* Server s of S: blocks [s*nb/S, (s+1)*nb/S) of the slab's nb SLAB_BLOCK blocks. */
static void server_range(size_t n, int S, int s, size_t *lo, size_t *hi)
{
    size_t nb = (n + SLAB_BLOCK - 1) / SLAB_BLOCK;
    size_t b0 = nb * (size_t)s / (size_t)S, b1 = nb * (size_t)(s + 1) / (size_t)S;
    *lo = MT_MIN(n, b0 * SLAB_BLOCK);
    *hi = MT_MIN(n, b1 * SLAB_BLOCK);
}

/* PS_SYNC ... PS_ASYNC for parallel.consistency, or -1 */
static int ps_consistency(const char *name)
{
    static const char *const names[] = {"sync", "delayed", "ssp", "async"};
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, names[i])) return i;
    return -1;
}

static int ps_plan(const StrategyConf *c, int rank, int world, int M, StrategySplit *out)
{
    int S = c->servers, W = world - S;
    if (S < 1)
        return err_set(MT_EX_CONFIG, "parallel.mode = ps needs parallel.servers >= 1 (it is %d)", S);
    if (W < 1)
        return err_set(MT_EX_CONFIG,
                       "parallel.mode = ps with parallel.servers = %d on %d ranks leaves no "
                       "worker: run at least %d ranks (servers + workers) or lower "
                       "parallel.servers", S, world, S + 1);
    if (W > M)
        return err_set(MT_EX_CONFIG,
                       "%d workers (%d ranks - parallel.servers = %d) but train.micro_batches = %d: "
                       "every worker needs at least one micro-batch; run with at most %d "
                       "workers or --set train.micro_batches=%d",
                       W, world, S, M, M, W);
    if (ps_consistency(c->consistency) < 0)
        return err_set(MT_EX_CONFIG,
                       "parallel.consistency = %s is not a consistency of ps mode (allowed: "
                       "sync, delayed, ssp, async)", c->consistency);
    int ring = !strcmp(c->consistency, "delayed") || !strcmp(c->consistency, "ssp");
    if (ring && c->staleness > 64)
        return err_set(MT_EX_CONFIG,
                       "parallel.staleness = %d with consistency = %s keeps that many "
                       "parameter versions on every worker: at most 64", c->staleness,
                       c->consistency);
    if (strcmp(c->server_ranks, "first") != 0 && strcmp(c->server_ranks, "last") != 0)
        return err_set(MT_EX_CONFIG,
                       "parallel.server_ranks = %s is not available in this build yet (allowed "
                       "now: first, last)", c->server_ranks);
    if (c->steal && (strcmp(c->consistency, "delayed") != 0 || c->staleness < 1))
        return err_set(MT_EX_CONFIG,
                       "parallel.steal = true needs parallel.consistency = delayed with "
                       "parallel.staleness >= 1 (it is %s with staleness %d): a step's shares "
                       "can only move to a worker that is ahead; set those or "
                       "parallel.steal = false", c->consistency, c->staleness);
    if (c->steal && (M % W != 0 || W > 64))
        return err_set(MT_EX_CONFIG,
                       "parallel.steal = true needs the %d workers to divide "
                       "train.micro_batches = %d (equal shares) and at most 64 workers; "
                       "change the number of ranks or train.micro_batches", W, M);
    if (c->steal && PS_TAG_UNIT + (c->staleness + 2) * W - 1 > COMM_TAG_MAX)
        return err_set(MT_EX_CONFIG,
                       "parallel.steal = true with parallel.staleness = %d and %d workers "
                       "needs (staleness + 2) * workers <= %d message tags; lower "
                       "parallel.staleness", c->staleness, W, COMM_TAG_MAX + 1 - PS_TAG_UNIT);
    int server, worker;
    int is_server = role_of(c, rank, world, &server, &worker);
    out->computes = !is_server;
    out->worker = worker;
    out->workers = W;
    out->mb_lo = is_server ? 0 : (int)((int64_t)worker * M / W);
    out->mb_hi = is_server ? 0 : (int)((int64_t)(worker + 1) * M / W);
    out->n_invariant = (W & (W - 1)) == 0 && M % W == 0;
    out->staleness = ring ? c->staleness : 0;
    out->steal = c->steal && !is_server;
    return 0;
}

/* The chunks of servers [s0, s1) in push order (descending offsets). */
static int make_chunks(const PsStrategy *p, int s0, int s1, PsChunk **out)
{
    int n = 0;
    for (int s = s0; s < s1; s++) n += (int)((p->rhi[s] - p->rlo[s] + PS_CHUNK - 1) / PS_CHUNK);
    PsChunk *c = xcalloc((size_t)MT_MAX(n, 1), sizeof *c);
    int k = 0;
    for (int s = s1 - 1; s >= s0; s--) {
        size_t lo = p->rlo[s], hi = p->rhi[s];
        int m = (int)((hi - lo + PS_CHUNK - 1) / PS_CHUNK);
        for (int j = m - 1; j >= 0; j--, k++) {
            c[k].lo = lo + (size_t)j * PS_CHUNK;
            c[k].hi = MT_MIN(hi, c[k].lo + PS_CHUNK);
            c[k].server = s;
            c[k].idx = m - 1 - j;
        }
    }
    *out = c;
    return n;
}

static int ps_create(Comm *comm, const StrategyConf *c, size_t nparams, int nstates,
                     Strategy **out)
{
    (void)nstates;
    PsStrategy *p = xcalloc(1, sizeof *p);
    p->base.ops = &strategy_ps_ops;
    p->comm = comm;
    p->nparams = nparams;
    p->S = c->servers;
    p->W = comm->size - c->servers;
    p->first = !strcmp(c->server_ranks, "first");
    role_of(c, comm->rank, comm->size, &p->server, &p->worker);
    p->rlo = xcalloc((size_t)p->S, sizeof(size_t));
    p->rhi = xcalloc((size_t)p->S, sizeof(size_t));
    for (int s = 0; s < p->S; s++) server_range(nparams, p->S, s, &p->rlo[s], &p->rhi[s]);
    snprintf(p->mode, sizeof p->mode, "ps/%s/%ds", c->consistency, p->S);
    p->cons = ps_consistency(c->consistency);
    p->stale = p->cons == PS_DELAYED || p->cons == PS_SSP ? c->staleness : 0;
    p->steal = c->steal && p->cons == PS_DELAYED && p->stale > 0;
    p->U = 1; /* gradient slabs per step group (stealing: ps_steal_create) */
    int slots;
    if (p->cons == PS_ASYNC) {
        p->nchunks = p->worker >= 0 ? make_chunks(p, 0, p->S, &p->chunks)
                                    : make_chunks(p, p->server, p->server + 1, &p->chunks);
        slots = ps_async_create(p);
    } else if (p->worker >= 0) {
        /* step t's requests in group t % (s + 1): slot 2k the push of chunk k, 2k + 1 the
         * receive of its new parameters (version t + 1) */
        p->nchunks = make_chunks(p, 0, p->S, &p->chunks);
        p->G = 2 * p->nchunks;
        if (p->steal) ps_steal_create(p, 0); /* sets U and G */
        slots = p->G * (p->stale + 1);
        if (p->stale > 0) {
            p->look = (float)c->lookahead; /* delayed and ssp */
            p->nring = p->stale + 1 + (p->look > 0.0f);
            p->ring = xcalloc((size_t)p->nring, sizeof(float *));
            p->ngring = (p->stale + 1) * p->U;
            p->gring = xcalloc((size_t)p->ngring, sizeof(float *));
            for (int v = 0; v < p->nring; v++) p->ring[v] = xaligned(nparams * sizeof(float));
            for (int v = 0; v < p->ngring; v++) p->gring[v] = xaligned(nparams * sizeof(float));
            if (p->look > 0.0f) p->pred = xaligned(nparams * sizeof(float));
        }
    } else {
        /* slot i*W + w: window i's receive from worker w; then W sends per chunk */
        p->nchunks = make_chunks(p, p->server, p->server + 1, &p->chunks);
        slots = p->W * PS_WINDOW + p->W * p->nchunks;
        if (p->steal) slots += ps_steal_create(p, slots);
        p->rbuf = xaligned((size_t)PS_WINDOW * (size_t)p->W * PS_CHUNK * sizeof(float));
    }
    CHECK(comm_p2p_create(comm, MT_MAX(slots, 1), &p->set) == 0);
    p->nslots = MT_MAX(slots, 1);
    p->busy = xcalloc((size_t)p->nslots, 1);
    p->yield = comm->local_size > cpu_cores_available();
    *out = &p->base;
    return 0;
}

static void ps_destroy(Strategy *s)
{
    PsStrategy *p = pss(s);
    /* nothing may be left in flight: receives still posted (delayed: versions nobody
     * will use) are cancelled, sends waited for */
    for (int i = 0; p->set && i < p->nslots; i++)
        if (p->busy[i] && comm_p2p_cancel(p->comm, p->set, i) == MT_EX_SOFTWARE) {
            err_clear();
            CHECK(comm_p2p_wait(p->comm, p->set, i, NULL) == 0);
        }
    comm_p2p_destroy(p->comm, p->set);
    ps_async_free(p);
    for (int v = 0; p->ring && v < p->nring; v++) free(p->ring[v]);
    for (int v = 0; v < p->ngring; v++) free(p->gring[v]);
    ps_steal_free(p);
    free(p->pred);
    free(p->ring);
    free(p->gring);
    free(p->busy);
    free(p->rbuf);
    free(p->chunks);
    free(p->rlo);
    free(p->rhi);
    free(p);
}

static void ps_describe(const Strategy *s, char *buf, size_t n)
{
    const PsStrategy *p = cpss(s);
    size_t mx = 0;
    for (int i = 0; i < p->S; i++) mx = MT_MAX(mx, p->rhi[i] - p->rlo[i]);
    double mean = (double)p->nparams / p->S;
    char cons[256];
    if (p->steal)
        snprintf(cons, sizeof cons, "delayed (step t computes on version t - %d%s; work "
                 "stealing: server 0 hands each step's %d shares out by the workers' speed, "
                 "at most %d per worker)", p->stale,
                 p->look > 0.0f ? " moved on by the lookahead" : "", p->W, p->U);
    else if (p->cons == PS_DELAYED && p->stale > 0 && p->look > 0.0f)
        snprintf(cons, sizeof cons, "delayed (step t computes on version t - %d moved on by "
                 "lookahead %g x its last step)", p->stale, (double)p->look);
    else if (p->cons == PS_DELAYED && p->stale > 0)
        snprintf(cons, sizeof cons, "delayed (step t computes on version t - %d)", p->stale);
    else if (p->cons == PS_DELAYED)
        snprintf(cons, sizeof cons, "delayed (s = 0: sync)");
    else if (p->cons == PS_SSP)
        snprintf(cons, sizeof cons, "ssp (step t computes on the newest version v >= t - %d%s; "
                 "not bitwise reproducible)", p->stale,
                 p->look > 0.0f ? ", moved on by the lookahead when v < t" : "");
    else if (p->cons == PS_ASYNC)
        snprintf(cons, sizeof cons, "async (each push applied on arrival; not bitwise "
                 "reproducible)");
    else snprintf(cons, sizeof cons, "sync");
    snprintf(buf, n, "parameter servers: %d server%s on ranks %d-%d, %d worker%s, consistency "
             "%s; parameters per server max/mean %.4f",
             p->S, p->S > 1 ? "s" : "", ps_server_rank(p, 0), ps_server_rank(p, p->S - 1), p->W,
             p->W > 1 ? "s" : "", cons, mean > 0 ? (double)mx / mean : 1.0);
}

static const char *ps_mode(const Strategy *s) { return cpss(s)->mode; }
static float *ps_shared_grads(Strategy *s) { (void)s; return NULL; }
static void ps_share_params(Strategy *s, float **params) { (void)s; (void)params; }
static int ps_owns_params(const Strategy *s, const float *p) { (void)s; (void)p; return 0; }
static int ps_sharded(const Strategy *s) { (void)s; return 1; }

static size_t ps_state_len(const Strategy *s)
{
    const PsStrategy *p = cpss(s);
    return p->server >= 0 ? p->rhi[p->server] - p->rlo[p->server] : 0;
}

/* ---- requests ----------------------------------------------------------------- */

void ps_post_send(PsStrategy *p, int slot, const float *buf, size_t n, int dest, int tag)
{
    CHECK(comm_isend(p->comm, p->set, slot, buf, n, COMM_F32, dest, tag) == 0);
    p->st.bytes_sent += (double)n * sizeof(float);
    p->busy[slot] = 1;
    p->inflight++;
}

void ps_post_recv(PsStrategy *p, int slot, float *buf, size_t n, int source, int tag)
{
    CHECK(comm_irecv(p->comm, p->set, slot, buf, n, COMM_F32, source, tag) == 0);
    p->st.bytes_recv += (double)n * sizeof(float);
    p->busy[slot] = 1;
    p->inflight++;
}

void ps_relax(const PsStrategy *p, int spins)
{
    if (p->yield || spins > 1000) sched_yield();
}

/* Waits without blocking inside MPI, so a rank sharing its CPU with others
 * (oversubscribed) yields it while it waits; whichever request finishes first is
 * returned. */
int ps_next_done(PsStrategy *p, int block, CommStatus *st)
{
    for (int spins = 0;; spins++) {
        if (p->inflight == 0) return -1;
        int slot = -1;
        comm_p2p_testany(p->comm, p->set, &slot, st);
        if (slot >= 0) {
            p->busy[slot] = 0;
            p->inflight--;
            return slot;
        }
        if (!block) return -1;
        ps_relax(p, spins);
    }
}

int ps_slots_done(PsStrategy *p, int a, int b)
{
    for (int i = a; i < b; i++) {
        if (!p->busy[i]) continue;
        int done = 0;
        comm_p2p_test(p->comm, p->set, i, &done, NULL);
        if (!done) return 0;
        p->busy[i] = 0;
        p->inflight--;
    }
    return 1;
}

void ps_wait_slots(PsStrategy *p, int a, int b)
{
    for (int spins = 0; !ps_slots_done(p, a, b); spins++) ps_relax(p, spins);
}

/* ---- worker ------------------------------------------------------------------- */

/* Push every chunk at or above ready_lo not pushed yet (push order), and post the
 * receive of its new parameters. */
void ps_worker_push(PsStrategy *p)
{
    while (p->next < p->nchunks && p->chunks[p->next].lo >= p->ready_lo) {
        const PsChunk *c = &p->chunks[p->next];
        int sr = ps_server_rank(p, c->server);
        int base = p->G * (int)(p->cur % (uint64_t)(p->stale + 1));
        if (p->steal) { /* share ishare of this step; version t + 1 was posted at begin */
            int u = p->ishare - 1, n = p->nchunks;
            int slot = u == 0 ? base + 2 * p->next : base + 2 * n + (u - 1) * n + p->next;
            ps_post_send(p, slot, p->grads + c->lo, c->hi - c->lo, sr,
                         ps_steal_tag(p, p->cur, p->share[u]));
            if (u == p->nshare - 1) ps_steal_post_param(p, base, p->next);
            p->next++;
            continue;
        }
        int async = p->cons == PS_ASYNC; /* async: a tag per chunk (any-source receives) */
        ps_post_send(p, base + 2 * p->next, p->grads + c->lo, c->hi - c->lo, sr,
                     async ? PS_TAG_ASYNC + 2 * c->idx : PS_TAG_GRAD);
        ps_post_recv(p, base + 2 * p->next + 1, p->recv_into + c->lo, c->hi - c->lo, sr,
                     async ? PS_TAG_ASYNC + 2 * c->idx + 1 : PS_TAG_PARAM);
        p->next++;
    }
}

static void worker_ready(void *arg, size_t lo, size_t hi)
{
    PsStrategy *p = arg;
    (void)hi;
    double t0 = now_s();
    if (lo < p->ready_lo) p->ready_lo = lo;
    ps_worker_push(p);
    p->t_comm += now_s() - t0;
}

static void worker_poll(void *arg)
{
    PsStrategy *p = arg;
    double t0 = now_s();
    while (ps_next_done(p, 0, NULL) >= 0) {
    }
    p->t_comm += now_s() - t0;
}

/* ---- server ------------------------------------------------------------------- */

static void server_post(PsStrategy *p, int k)
{
    const PsChunk *c = &p->chunks[k];
    int i = k % PS_WINDOW;
    for (int w = 0; w < p->W; w++) /* stealing: partial w is share w, from its computer */
        ps_post_recv(p, i * p->W + w, p->rbuf + ((size_t)i * p->W + (size_t)w) * PS_CHUNK,
                     c->hi - c->lo, p->steal ? COMM_ANY_SOURCE : ps_worker_rank(p, w),
                     p->steal ? ps_steal_tag(p, p->step.step, w) : PS_TAG_GRAD);
    p->arrived[i] = 0;
}

/* leaves v[0..n) of m floats each: v[lo] = T(lo, hi), lower + upper (n a power of two) */
static void tree_in_place(float *const *v, int lo, int hi, size_t m)
{
    if (hi - lo < 2) return;
    int mid = lo + (hi - lo) / 2;
    tree_in_place(v, lo, mid, m);
    tree_in_place(v, mid, hi, m);
    coll_add_f32(v[lo], v[lo], v[mid], m);
}

/* grads[c] = the canonical sum of the W partials of window i (the rule of COMM_DET) */
static void server_sum(PsStrategy *p, int k)
{
    const PsChunk *c = &p->chunks[k];
    size_t m = c->hi - c->lo;
    int i = k % PS_WINDOW, W = p->W;
    float *leaf[64], *part[128];
    CHECK(W <= 128);
    for (int w = 0; w < W; w++) part[w] = p->rbuf + ((size_t)i * W + (size_t)w) * PS_CHUNK;
    int P = 1;
    while (P * 2 <= W) P *= 2;
    int E = W - P;
    for (int j = 0; j < P; j++) {
        if (j < E) {
            coll_add_f32(part[2 * j], part[2 * j], part[2 * j + 1], m);
            leaf[j] = part[2 * j];
        } else {
            leaf[j] = part[j + E];
        }
    }
    tree_in_place(leaf, 0, P, m);
    memcpy(p->grads + c->lo, leaf[0], m * sizeof(float));
}

/* send chunk k's parameters to every worker */
static void server_send(PsStrategy *p, int k)
{
    const PsChunk *c = &p->chunks[k];
    for (int w = 0; w < p->W; w++)
        ps_post_send(p, p->W * PS_WINDOW + k * p->W + w, p->params + c->lo, c->hi - c->lo,
                  ps_worker_rank(p, w), PS_TAG_PARAM);
    p->sent++;
}

/* the update of chunk k (its state at its offset in the server's range) */
static void server_update_chunk(PsStrategy *p, int k)
{
    const PsChunk *c = &p->chunks[k];
    p->step.update(p->step.update_arg, c->lo, c->hi, c->lo - p->rlo[p->server]);
}

/* Receive, sum and (fused) update and send every chunk of the step, in push order;
 * whichever worker's message arrives first is taken first. */
static void server_serve(PsStrategy *p)
{
    while (p->done < p->nchunks) {
        double w0 = now_s();
        int slot = ps_next_done(p, 1, NULL);
        CHECK(slot >= 0); /* the receives of the next chunk are posted */
        double b0 = now_s();
        p->st.wait_s += b0 - w0;
        if (ps_steal_server_done(p, slot)) continue;
        if (slot < p->W * PS_WINDOW) p->arrived[slot / p->W]++;
        while (p->done < p->nchunks && p->arrived[p->done % PS_WINDOW] == p->W) {
            int k = p->done;
            server_sum(p, k);
            if (p->fused) {
                server_update_chunk(p, k);
                server_send(p, k);
            }
            p->done++;
            if (p->posted < p->nchunks) server_post(p, p->posted++);
            else p->arrived[k % PS_WINDOW] = -1;
        }
        p->st.busy_s += now_s() - b0;
    }
}

/* ---- the step ----------------------------------------------------------------- */

/* out = w + f (w - w0), elementwise in this order (no contraction: the same bits on
 * every CPU and with either copy) */
MT_VEC static void lookahead(float *restrict out, const float *restrict w,
                             const float *restrict w0, float f, size_t n)
{
    size_t i = 0;
    for (; i + 16 <= n; i += 16) /* a known trip count: gcc -O2 vectorises it */
        for (int j = 0; j < 16; j++) out[i + j] = w[i + j] + f * (w[i + j] - w0[i + j]);
    for (; i < n; i++) out[i] = w[i] + f * (w[i] - w0[i]);
}

static void ps_step_begin(Strategy *s, const StrategyStep *step, float *params, float *grads,
                          StrategyHooks *h)
{
    PsStrategy *p = pss(s);
    p->step = *step;
    p->params = params;
    p->grads = grads;
    p->t_exposed = p->t_comm = 0;
    memset(&p->st, 0, sizeof p->st);
    p->st.server = p->server >= 0;
    p->st.shares = p->worker >= 0;
    memset(h, 0, sizeof *h);
    if (p->worker >= 0) {
        uint64_t t = step->step, ns = (uint64_t)p->stale + 1;
        if (!p->started) { /* the run's first step: its parameters are version t0 */
            p->started = 1;
            p->t0 = t;
            if (p->ring) memcpy(p->ring[t % (uint64_t)p->nring], params, p->nparams * sizeof(float));
        }
        p->cur = t;
        if (p->ring) {
            /* delayed: compute on version max(t0, t - s), which arrived during step
             * t - s - 1, whose requests share this step's slot group */
            int base = p->G * (int)(t % ns);
            double w0 = now_s();
            ps_wait_slots(p, base, base + p->G);
            p->t_exposed += now_s() - w0;
            p->t_comm += now_s() - w0;
            uint64_t v = t >= p->t0 + (uint64_t)p->stale ? t - (uint64_t)p->stale : p->t0;
            if (p->cons == PS_SSP) v = ps_ssp_version(p, t); /* newer when it has come */
            uint64_t nr = (uint64_t)p->nring;
            h->params = p->ring[v % nr];
            if (p->pred && v >= p->t0 + 1 && v < t) {
                /* version v - 1 was waited for at step t - 1; its slot is where version
                 * t + 1 will arrive, whose receives this step posts later */
                lookahead(p->pred, p->ring[v % nr], p->ring[(v - 1) % nr], p->look, p->nparams);
                h->params = p->pred;
            }
            p->st.wait_s += now_s() - w0;
            p->st.staleness = (int)(t - v);
            p->recv_into = p->ring[(t + 1) % nr];
            /* the pushes of step t - s - 1 from this slab are done (waited above) */
            h->grads = p->grads = p->gring[(t % ns) * (uint64_t)p->U];
        } else {
            p->recv_into = params;
        }
        p->ready_lo = p->nparams;
        p->next = 0;
        if (p->steal) ps_steal_worker_begin(p, h); /* h->claim hands out the grads */
        h->ready = worker_ready;
        h->poll = worker_poll;
        h->arg = p;
        if (p->cons == PS_ASYNC) ps_async_step_begin(p, h);
    } else if (p->cons == PS_ASYNC) {
        ps_async_step_begin(p, h);
    } else {
        /* without clipping each chunk is updated as soon as its sum is formed */
        p->fused = !step->global;
        p->done = p->sent = 0;
        p->posted = 0;
        while (p->posted < MT_MIN(PS_WINDOW, p->nchunks)) server_post(p, p->posted++);
    }
}

static void ps_reduce_end(Strategy *s)
{
    PsStrategy *p = pss(s);
    double t0 = now_s();
    if (p->worker >= 0 && p->steal) {
        ps_steal_worker_end(p);
    } else if (p->worker >= 0) {
        p->ready_lo = 0; /* the executor has reported every range */
        ps_worker_push(p);
    } else if (p->cons == PS_ASYNC) {
        ps_async_reduce_end(p);
    } else {
        server_serve(p);
    }
    double dt = now_s() - t0;
    p->t_exposed += dt;
    p->t_comm += dt;
}

static void ps_clip_partials(Strategy *s, const float *grads, double *partial)
{
    PsStrategy *p = pss(s);
    size_t nb = clip_nblocks(p->nparams);
    memset(partial, 0, nb * sizeof(double));
    if (p->server >= 0)
        clip_block_sumsq(grads, p->nparams, p->rlo[p->server], p->rhi[p->server], partial);
    /* every block has one contributor (the ranges are block-aligned): the sum is exact */
    comm_allreduce(p->comm, partial, nb, COMM_F64);
}

/* StrategyRangeFn over a server's range */
typedef struct {
    PsStrategy *p;
} RangeJob;

static void range_update(void *arg, size_t a, size_t b)
{
    PsStrategy *p = ((RangeJob *)arg)->p;
    size_t lo = p->rlo[p->server];
    p->step.update(p->step.update_arg, lo + a, lo + b, a);
}

static void ps_update(Strategy *s, StrategyRunFn run, void *runner)
{
    PsStrategy *p = pss(s);
    double t0 = now_s();
    if (p->cons == PS_ASYNC) {
        ps_async_update(p); /* applied on arrival: what is left are the worker's waits */
    } else if (p->server >= 0 && !p->fused) {
        RangeJob j = {p};
        run(runner, p->rhi[p->server] - p->rlo[p->server], range_update, &j);
        for (int k = 0; k < p->nchunks; k++) server_send(p, k);
        p->st.busy_s += now_s() - t0;
    }
    if (p->cons == PS_ASYNC) {
    } else if (p->worker >= 0 && p->ring) {
        /* delayed, ssp: the new parameters may arrive later (they are used up to s steps
         * on), and so may the pushes finish: the next s steps compute into other gradient
         * slabs, so a worker runs ahead of a slow one until it needs version t - s */
    } else {
        /* every request of the step: pushes, parameter receives (worker), sends (server);
         * server 0 with stealing: the masks of step t + s + 1 too, and not its timing
         * receives, which stay posted */
        ps_steal_server_assign(p);
        while (p->inflight > ps_steal_persistent(p)) {
            int slot = ps_next_done(p, 1, NULL);
            if (slot >= 0) ps_steal_server_done(p, slot);
        }
    }
    double dt = now_s() - t0;
    p->t_exposed += dt;
    p->t_comm += dt;
    if (p->worker >= 0) p->st.wait_s += dt;
}

/* Lockstep: only sync moves every rank through every step together; the trainer may
 * agree less often with the others (docs/design.md §6). */
static int ps_lockstep(const Strategy *s) { return cpss(s)->cons == PS_SYNC; }

static void ps_stats(const Strategy *s, StrategyStats *out) { *out = cpss(s)->st; }

static double ps_exposed(const Strategy *s) { return cpss(s)->t_exposed; }
static double ps_comm(const Strategy *s) { return cpss(s)->t_comm; }

/* ---- checkpoints -------------------------------------------------------------- */

/* counts[r] (floats) of rank r's contribution: its server range, 0 for a worker */
static void range_counts(const PsStrategy *p, size_t *counts)
{
    for (int r = 0; r < p->comm->size; r++) counts[r] = 0;
    for (int s = 0; s < p->S; s++) counts[ps_server_rank(p, s)] = p->rhi[s] - p->rlo[s];
}

static void ps_gather_states(Strategy *s, float *const *states, float *const *full, int n)
{
    PsStrategy *p = pss(s);
    size_t *counts = xcalloc((size_t)p->comm->size, sizeof(size_t));
    range_counts(p, counts);
    size_t mine = counts[p->comm->rank];
    /* the servers' ranges tile the slab in rank order (first or last placement) */
    for (int k = 0; k < n; k++)
        comm_allgatherv(p->comm, states[k], mine, full[k], counts, COMM_F32);
    free(counts);
}

static void ps_scatter_states(const Strategy *s, float *const *full, float *const *states, int n)
{
    const PsStrategy *p = cpss(s);
    if (p->server < 0) return;
    size_t lo = p->rlo[p->server], len = p->rhi[p->server] - lo;
    for (int k = 0; k < n; k++) memcpy(states[k], full[k] + lo, len * sizeof(float));
}

/* A server holds only its own range up to date: before a checkpoint every rank gets
 * the whole slab (an allgather of the ranges). */
static void ps_gather_params(Strategy *s, float *params)
{
    PsStrategy *p = pss(s);
    size_t *counts = xcalloc((size_t)p->comm->size, sizeof(size_t));
    range_counts(p, counts);
    size_t mine = counts[p->comm->rank];
    float *tmp = xaligned(p->nparams * sizeof(float));
    comm_allgatherv(p->comm, p->server >= 0 ? params + p->rlo[p->server] : params, mine, tmp,
                    counts, COMM_F32);
    memcpy(params, tmp, p->nparams * sizeof(float));
    free(tmp);
    free(counts);
}

const StrategyOps strategy_ps_ops = {
    .name = "ps",
    .plan = ps_plan,
    .create = ps_create,
    .destroy = ps_destroy,
    .describe = ps_describe,
    .mode = ps_mode,
    .shared_grads = ps_shared_grads,
    .share_params = ps_share_params,
    .owns_params = ps_owns_params,
    .state_len = ps_state_len,
    .sharded = ps_sharded,
    .step_begin = ps_step_begin,
    .reduce_end = ps_reduce_end,
    .clip_partials = ps_clip_partials,
    .update = ps_update,
    .exposed_s = ps_exposed,
    .comm_s = ps_comm,
    .gather_states = ps_gather_states,
    .scatter_states = ps_scatter_states,
    .gather_params = ps_gather_params,
    .stats = ps_stats,
    .lockstep = ps_lockstep,
};
