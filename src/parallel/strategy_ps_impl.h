/* strategy_ps_impl.h — the parameter-server strategy's handle and the helpers its files
 * share (nobody else includes it):
 *   strategy_ps.c        roles, ranges, chunks, sync and delayed, checkpoints, the table
 *   strategy_ps_async.c  ssp (the newest version within the bound) and async (each push
 *                        applied on arrival)
 *   strategy_ps_steal.c  delayed with work stealing: server 0 hands the shares of each
 *                        step to the workers by their measured speed
 * docs/design.md §6 describes the protocol of every consistency. */
#ifndef MPITRAIN_PARALLEL_STRATEGY_PS_IMPL_H
#define MPITRAIN_PARALLEL_STRATEGY_PS_IMPL_H

#include <stddef.h>
#include <stdint.h>

#include "parallel/strategy.h"

#define PS_CHUNK (64 * 1024) /* floats per message (256 KB) */
#define PS_WINDOW 4          /* chunks a server receives at once */
#define PS_TAG_GRAD 1
#define PS_TAG_PARAM 2
#define PS_TAG_STALE 3       /* async: a server tells a worker the staleness of its push */
#define PS_TAG_ASYNC 16      /* async: chunk i of a server's range is pushed with tag
                                PS_TAG_ASYNC + 2i, its parameters return with + 2i + 1 */
#define PS_ASYNC_POOL 2      /* async: reply buffers per worker on a server */
#define PS_TAG_ASSIGN 4      /* steal: server 0 tells a worker its shares of a step */
#define PS_TAG_TIME 5        /* steal: a worker tells server 0 its seconds per share */
#define PS_TAG_UNIT 64       /* steal: share k of step t is pushed with tag
                                PS_TAG_UNIT + (t % (s + 2)) * W + k (ps_steal_tag) */
#define PS_STEAL_UNITS 2     /* steal: at most this many shares per worker and step */

enum { PS_SYNC, PS_DELAYED, PS_SSP, PS_ASYNC };

typedef struct {
    size_t lo, hi; /* slab range */
    int server;    /* its server's index */
    int idx;       /* its index among its server's chunks (async tags) */
} PsChunk;

typedef struct {
    Strategy base;
    Comm *comm;
    size_t nparams;
    int S, W;
    int first;           /* servers are ranks 0..S-1 (else the last S) */
    int server;          /* this rank's server index, or -1 (a worker) */
    int worker;          /* this rank's worker index, or -1 (a server) */
    size_t *rlo, *rhi;   /* (S) the servers' ranges */
    char mode[64];
    /* the chunks: of the whole slab (worker) or of this server's range (server), in the
     * order workers push them: descending offsets */
    PsChunk *chunks;
    int nchunks;
    CommP2p *set;
    unsigned char *busy; /* (slots) 1 while the slot's request is in flight */
    int nslots;
    int inflight;        /* requests posted and not yet seen finished */
    int yield;           /* more ranks on this node than CPUs: waiting yields the CPU */
    /* the step */
    StrategyStep step;
    float *params, *grads;
    int fused;           /* server: the update is applied chunk by chunk as summed */
    double t_exposed, t_comm;
    StrategyStats st;    /* the step's figures */
    /* worker */
    int cons;            /* PS_SYNC, PS_DELAYED, PS_SSP or PS_ASYNC */
    int stale;           /* delayed, ssp: parallel.staleness s (sync, async: 0) */
    float **ring;        /* (nring) parameter versions: version v in ring[v % nring]; s = 0: NULL */
    int nring;           /* s + 1, or s + 2 with lookahead (version t - s - 1 kept too) */
    float look;          /* delayed, ssp: parallel.lookahead (0: off) */
    float *pred;         /* (nparams) with lookahead: the parameters step t computes on */
    float **gring;       /* (ngring) gradient slabs: share u of step t in
                            gring[(t % (s + 1)) * U + u]; s = 0: NULL */
    int ngring;          /* (s + 1) U, or 0 */
    uint64_t t0;         /* the first step of this run (after a resume: its step) */
    int started;
    uint64_t cur;        /* the step in progress */
    float *recv_into;    /* where this step's new parameters go (version cur + 1) */
    size_t ready_lo;     /* every offset >= ready_lo has its final local gradient */
    int next;            /* next chunk to push */
    /* server: window buffer i holds the partials of chunk (k % PS_WINDOW == i) */
    float *rbuf;         /* (PS_WINDOW, W, PS_CHUNK) */
    int arrived[PS_WINDOW];
    int posted;          /* chunks whose receives have been posted */
    int done;            /* chunks summed (and, when fused, updated and sent) */
    int sent;            /* chunks whose parameters have been sent */
    /* async (strategy_ps_async.c) */
    float *stale_in;     /* worker: (S) each server's staleness of this step's push */
    float *pool;         /* server: (PS_ASYNC_POOL * W, PS_CHUNK) reply buffers */
    float *stale_out;    /* server: (W) the staleness message to each worker */
    uint64_t *applied;   /* server: (nchunks) pushes applied to each chunk */
    uint64_t *seen;      /* server: (W, nchunks) applied[k] when worker w last got chunk k */
    int *got;            /* server: (W) pushes received from each worker */
    int *smax;           /* server: (W) largest staleness of the worker's pushes this step */
    int consumed;        /* server: pushes applied in this step (W * nchunks make a step) */
    int listening;       /* server: the chunk receives are posted */
    /* work stealing (strategy_ps_steal.c; delayed with parallel.steal) */
    int steal;
    int U;               /* shares a worker may compute per step: 1; stealing
                            min(W, PS_STEAL_UNITS) */
    int G;               /* worker: request slots per step group (3 n + 2 with stealing) */
    int64_t *amsg;       /* worker: (s + 1) received share masks; server 0: (W) to send */
    double *tmsg;        /* worker: (s + 1, 2) timing messages; server 0: (W, 2) received */
    int share[64];       /* worker: this step's shares, in order */
    int nshare, ishare;  /* worker: how many, and how many handed to the executor */
    double t_unit, t_units; /* worker: when the current share began; seconds in shares */
    double *cost;        /* server 0: (W) seconds per share of each worker (0: unknown) */
    double *vfin;        /* server 0: (W) virtual finish time of the work handed out */
    int tslot;           /* server 0: the first of W timing receives (W assignment sends
                            follow) */
} PsStrategy;


/* strategy_ps.c */
int ps_server_rank(const PsStrategy *p, int s);
int ps_worker_rank(const PsStrategy *p, int w);
/* Post a send / a receive of n floats in request slot `slot` (counted in the stats). */
void ps_post_send(PsStrategy *p, int slot, const float *buf, size_t n, int dest, int tag);
void ps_post_recv(PsStrategy *p, int slot, float *buf, size_t n, int source, int tag);
/* One finished request's slot (block: wait for one), or -1 when none; *st its status. */
int ps_next_done(PsStrategy *p, int block, CommStatus *st);
/* Wait until every request in slots [a, b) has finished. */
void ps_wait_slots(PsStrategy *p, int a, int b);
/* 1 when every request in slots [a, b) has finished (does not wait). */
int ps_slots_done(PsStrategy *p, int a, int b);
/* Worker: push every chunk at or above ready_lo not pushed yet (push order) and, without
 * stealing, post the receive of its new parameters. */
void ps_worker_push(PsStrategy *p);
/* Waiting: yield the CPU when ranks outnumber the cores or after many spins. */
void ps_relax(const PsStrategy *p, int spins);

/* strategy_ps_async.c.  Request slots and buffers the async mode needs (the number of
 * slots; allocates its buffers) and their release. */
int ps_async_create(PsStrategy *p);
void ps_async_free(PsStrategy *p);
/* ssp: the newest complete parameter version for worker step t, at least t - s (the
 * caller has waited for t - s); first: the run's first version t0. */
uint64_t ps_ssp_version(PsStrategy *p, uint64_t t);
/* async: the step through the strategy table (worker and server). */
void ps_async_step_begin(PsStrategy *p, StrategyHooks *h);
void ps_async_reduce_end(PsStrategy *p);
void ps_async_update(PsStrategy *p);

/* strategy_ps_steal.c (p->steal).  Request slots it adds, from slot `first` on (server
 * 0: 2 W; other servers: 0; a worker's are inside its step groups, p->G of them); sets
 * p->U; allocates buffers. */
int ps_steal_create(PsStrategy *p, int first);
void ps_steal_free(PsStrategy *p);
/* The tag of share k's pushes in step t. */
int ps_steal_tag(const PsStrategy *p, uint64_t t, int k);
/* Worker, step begin (after the wait for version t - s): post the receives of version
 * t + 1 and of the share mask of step t + s + 1, pick this step's shares, set h->claim. */
void ps_steal_worker_begin(PsStrategy *p, StrategyHooks *h);
/* Worker: post the receive of chunk k of version t + 1 (slot base + 2k + 1). */
void ps_steal_post_param(PsStrategy *p, int base, int k);
/* Worker, reduce_end: the step's timing message (every share was claimed and pushed). */
void ps_steal_worker_end(PsStrategy *p);
/* Server 0: 1 when `slot` was one of its timing receives (handled, reposted). */
int ps_steal_server_done(PsStrategy *p, int slot);
/* Server 0, after serving step t: send every worker its shares of step t + s + 1. */
void ps_steal_server_assign(PsStrategy *p);
/* Requests that stay posted across steps (server 0's timing receives). */
int ps_steal_persistent(const PsStrategy *p);

#endif
