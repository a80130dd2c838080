/* strategy_ps_async.c — the parameter servers' stale consistencies (docs/design.md §6):
 *
 * ssp (parallel.consistency = ssp, bound s = parallel.staleness).  The servers work as
 * in sync: step t's update sums the W pushes of step t along the canonical tree.  A
 * worker at step t computes on the newest parameter version it has received whole, but
 * on at least version t - s (it waits for that one): so it starts step t only when every
 * worker has finished step t - s - 1, the slowest at most s steps behind.  The versions
 * live in the ring of s + 1 that delayed uses.  The staleness of a step is t - v.
 *
 * async (parallel.consistency = async).  A server applies each push as it arrives, from
 * whichever worker, and replies to that worker alone with the chunk's new parameters; a
 * worker waits only for its servers' replies, never for another worker.  One push is the
 * gradient of the worker's M/W micro-batches (divided by the batch B, as every partial
 * sum), so the server applies it as W times that (the push's estimate of the batch
 * gradient) with the learning rate divided by W: W pushes move the parameters as one
 * sync step does, for SGD with momentum, weight decay and AdamW alike, and the shipped
 * learning rate works for any W.  The server's step t (the step counter of the schedule,
 * Adam's bias correction and checkpoints) is the t-th group of W pushes of every chunk,
 * in arrival order.  The staleness of a push is the number of pushes other workers had
 * applied to its chunks between the worker's read of the parameters and the push's
 * application (0 with one worker; the worker's metric is the largest over its chunks).
 * Memory: a server receives each chunk straight into its gradient slab (one receive per
 * chunk, any source) and copies replies into PS_ASYNC_POOL * W chunk buffers; nothing is
 * held per worker and range.
 *
 * Neither is bitwise reproducible: which version a step computes on (ssp) and the order
 * pushes are applied (async) depend on timing. */
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "parallel/strategy_ps_impl.h"

int ps_async_create(PsStrategy *p)
{
    int n = p->nchunks, W = p->W;
    CHECK(PS_TAG_ASYNC + 2 * n + 1 < 32767); /* the tag bound every MPI guarantees */
    if (p->worker >= 0) {
        /* slot 2k: the push of chunk k, 2k + 1: its reply; 2n + s: server s's staleness */
        p->stale_in = xcalloc((size_t)p->S, sizeof(float));
        return 2 * n + p->S;
    }
    /* slot k: the receive of chunk k; n + i: reply buffer i; n + R + w: worker w's staleness */
    int R = PS_ASYNC_POOL * W;
    p->pool = xaligned((size_t)R * PS_CHUNK * sizeof(float));
    p->stale_out = xcalloc((size_t)W, sizeof(float));
    p->applied = xcalloc((size_t)MT_MAX(n, 1), sizeof(uint64_t));
    p->seen = xcalloc((size_t)W * (size_t)MT_MAX(n, 1), sizeof(uint64_t));
    p->got = xcalloc((size_t)W, sizeof(int));
    p->smax = xcalloc((size_t)W, sizeof(int));
    return n + R + W;
}

void ps_async_free(PsStrategy *p)
{
    free(p->stale_in);
    free(p->pool);
    free(p->stale_out);
    free(p->applied);
    free(p->seen);
    free(p->got);
    free(p->smax);
}

/* ---- ssp ---------------------------------------------------------------------- */

uint64_t ps_ssp_version(PsStrategy *p, uint64_t t)
{
    uint64_t s = (uint64_t)p->stale, ns = s + 1;
    uint64_t v = t >= p->t0 + s ? t - s : p->t0; /* waited for by the caller */
    /* version u + 1 arrives in the receives of step u's slot group; take it when every
     * chunk of it is in, oldest first (a chunk's versions complete in order) */
    for (uint64_t u = v; u < t; u++) {
        int base = 2 * p->nchunks * (int)(u % ns);
        for (int k = 0; k < p->nchunks; k++)
            if (!ps_slots_done(p, base + 2 * k + 1, base + 2 * k + 2)) return v;
        v = u + 1;
    }
    return v;
}

/* ---- async -------------------------------------------------------------------- */

static void listen_chunk(PsStrategy *p, int k)
{
    const PsChunk *c = &p->chunks[k];
    ps_post_recv(p, k, p->grads + c->lo, c->hi - c->lo, COMM_ANY_SOURCE,
                 PS_TAG_ASYNC + 2 * c->idx);
}

void ps_async_step_begin(PsStrategy *p, StrategyHooks *h)
{
    (void)h;
    if (p->worker >= 0) {
        /* the pushes and replies are posted by worker_push; each server's staleness */
        for (int s = 0; s < p->S; s++)
            ps_post_recv(p, 2 * p->nchunks + s, &p->stale_in[s], 1, ps_server_rank(p, s),
                         PS_TAG_STALE);
        return;
    }
    if (!p->listening) { /* the receives stay posted from step to step */
        for (int k = 0; k < p->nchunks; k++) listen_chunk(p, k);
        p->listening = 1;
    }
    p->consumed = 0;
}

/* A free reply buffer (its index), waiting for a reply to finish when all are in flight. */
static int free_reply(PsStrategy *p)
{
    int R = PS_ASYNC_POOL * p->W, base = p->nchunks;
    for (int spins = 0;; spins++) {
        for (int i = 0; i < R; i++)
            if (ps_slots_done(p, base + i, base + i + 1)) return i;
        ps_relax(p, spins);
    }
}

/* Apply the push of chunk k that rank `rank` sent (it is in grads), reply with the new
 * parameters, listen for the chunk's next push. */
static void apply_push(PsStrategy *p, int k, int rank)
{
    const PsChunk *c = &p->chunks[k];
    size_t n = c->hi - c->lo;
    int w = p->first ? rank - p->S : rank, W = p->W;
    CHECK(w >= 0 && w < W);
    uint64_t *seen = &p->seen[(size_t)w * (size_t)p->nchunks + (size_t)k];
    int stale = (int)(p->applied[k] - *seen);
    p->smax[w] = MT_MAX(p->smax[w], stale);
    /* the push is 1/W of the batch: W times it, at lr / W (the file's comment) */
    if (p->step.scale) p->step.scale(p->step.update_arg, 1.0f / (float)W, (float)W);
    p->step.update(p->step.update_arg, c->lo, c->hi, c->lo - p->rlo[p->server]);
    *seen = ++p->applied[k];
    int i = free_reply(p);
    float *buf = p->pool + (size_t)i * PS_CHUNK;
    memcpy(buf, p->params + c->lo, n * sizeof(float));
    ps_post_send(p, p->nchunks + i, buf, n, rank, PS_TAG_ASYNC + 2 * c->idx + 1);
    listen_chunk(p, k);
    if (++p->got[w] % p->nchunks == 0) { /* the worker's step is in: its staleness */
        int slot = p->nchunks + PS_ASYNC_POOL * W + w;
        ps_wait_slots(p, slot, slot + 1);
        p->stale_out[w] = (float)p->smax[w];
        ps_post_send(p, slot, &p->stale_out[w], 1, rank, PS_TAG_STALE);
        p->smax[w] = 0;
    }
    p->consumed++;
}

void ps_async_reduce_end(PsStrategy *p)
{
    /* a server's step: the next W pushes of each of its chunks' worth, in arrival order */
    while (p->consumed < p->W * p->nchunks) {
        double w0 = now_s();
        CommStatus st;
        int slot = ps_next_done(p, 1, &st);
        CHECK(slot >= 0); /* the chunk receives are always posted */
        double b0 = now_s();
        p->st.wait_s += b0 - w0;
        if (slot < p->nchunks) apply_push(p, slot, st.peer);
        p->st.busy_s += now_s() - b0;
    }
}

void ps_async_update(PsStrategy *p)
{
    if (p->worker < 0) return; /* every push was applied as it came */
    /* the worker's pushes, its replies and the servers' staleness figures */
    while (ps_next_done(p, 1, NULL) >= 0) {
    }
    int stale = 0;
    for (int s = 0; s < p->S; s++) stale = MT_MAX(stale, (int)p->stale_in[s]);
    p->st.staleness = stale;
}
