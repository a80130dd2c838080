/* comm.h — the communicator: a handle (Comm) and a table of functions (CommOps) that a
 * backend implements.  The MPI backend (comm.c + collectives.c) is the only one today;
 * a NCCL backend plugs in by filling the same table.
 *
 * Two kinds of operations:
 *   - small blocking collectives on plain buffers: barrier, bcast, allreduce (the
 *     library's own "fast" sum), allgatherv, and comm_agree (all ranks learn the worst
 *     status and the lowest failing rank);
 *   - range reductions on a slab, [lo, hi) of `buf`, started with comm_start() and
 *     driven with comm_test()/comm_wait(): allreduce, reduce-scatter and allgather, each
 *     either COMM_DET (the canonical tree of DESIGN.md §3, bitwise reproducible, see
 *     coll.h) or COMM_FAST (the library's MPI_Iallreduce & co).  coll.h has the
 *     convenience wrappers, shard.h the shard layout.
 *
 * Threads: MPI runs at MPI_THREAD_FUNNELED: only the thread that created the Comm calls
 * any function here.  Collective calls (every function taking a Comm except comm_test/
 * comm_wait and the accessors) must be made by all ranks in the same order with the same
 * sizes, types and ranges.
 *
 * Errors: a failing MPI call is a bug or a broken machine: it is reported as
 * "[rank r host] file:line MPI call failed: <MPI's text>" and the job aborts (MPI_Abort).
 * Bad arguments that all ranks see alike (unknown type, too many operations in flight)
 * return MT_EX_SOFTWARE after err_set(); nothing has been communicated then. */
#ifndef MPITRAIN_PARALLEL_COMM_H
#define MPITRAIN_PARALLEL_COMM_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    COMM_F32 = 0, /* float: gradients */
    COMM_F64 = 1, /* double: losses, norm partials, metrics */
    COMM_I64 = 2, /* int64_t: counts (sums wrap modulo 2^64) */
    COMM_BYTE = 3 /* raw bytes: bcast/allgatherv only, never summed */
} CommType;

typedef enum {
    COMM_ALLREDUCE = 0,      /* every rank ends with the sum of [lo, hi) */
    COMM_REDUCE_SCATTER = 1, /* each rank ends with the sum of its shard (shard_range);
                                the rest of [lo, hi) is left undefined */
    COMM_ALLGATHER = 2       /* each rank contributes its shard; all end with all shards */
} CommKind;

typedef enum {
    COMM_DET = 0, /* canonical tree, identical bits on every rank and run (coll.h) */
    COMM_FAST = 1 /* library collective (MPI_Iallreduce ...): rounding depends on N and
                     on the library's algorithm; differs from COMM_DET within
                     COMM_FAST_RTOL_F32/F64 * (N-1) * sum_r |x_r| per element */
} CommMode;

/* Stated bound of the fast path: |fast - det| <= RTOL * (N-1) * sum_r |x_r| per element,
 * RTOL = twice the unit roundoff (each of two sums of N terms errs by at most
 * (N-1) * u * sum|x|, u = 2^-24 for float, 2^-53 for double). */
#define COMM_FAST_RTOL_F32 1.1920928955078125e-07 /* 2^-23 */
#define COMM_FAST_RTOL_F64 2.220446049250313e-16  /* 2^-52 */

/* One range reduction: [lo, hi) elements of `buf` (element type `type`; not COMM_BYTE). */
typedef struct {
    CommKind kind;
    CommMode mode;
    CommType type;
    void *buf;     /* base of the slab; only [lo, hi) is read or written */
    size_t lo, hi; /* element indices, lo <= hi */
    /* Optional, COMM_DET allreduce only (ZeRO-1 in one pass): on_sum(on_sum_arg, a, b) is
     * called on the calling thread for each piece [a, b) of this rank's shard
     * (shard_range, shard.h) as soon as its sum is final in buf, and must fill [a, b) of
     * gather_buf (e.g. the optimizer's update of the parameters); the gather steps then
     * distribute gather_buf's shards instead of buf's, so every rank ends with all of
     * gather_buf's [lo, hi), and buf holds the sum on this rank's shard only.  on_sum
     * NULL: gather_buf is ignored. */
    void (*on_sum)(void *arg, size_t a, size_t b);
    void *on_sum_arg;
    void *gather_buf;
} CommTask;

/* Tuning, identical on all ranks (comm_create checks and refuses a mismatch). */
typedef struct {
    size_t segment_bytes;      /* pipeline segment of COMM_DET (default 512 KiB; 4 KiB..64 MiB,
                                  a multiple of 8) */
    int window;                /* segments in flight per direction and op (default 4; 1..16) */
    int max_inflight;          /* range operations in flight at once (default 4; >= 1) */
    size_t doubling_max_bytes; /* COMM_DET allreduce of at most this many bytes uses
                                  recursive doubling (same tree, fewer messages); default 64 KiB */
    int install_abort_hook;    /* 1 (default): CHECK/fatal failures call MPI_Abort */
} CommConf;

typedef struct Comm Comm;
typedef struct CommReq CommReq; /* an operation in flight; owned by the Comm */

typedef struct CommOps {
    const char *name; /* "mpi" */
    void (*destroy)(Comm *c);
    int (*barrier)(Comm *c);
    int (*bcast)(Comm *c, void *buf, size_t count, CommType t, int root);
    int (*allreduce)(Comm *c, void *buf, size_t count, CommType t);
    int (*allgatherv)(Comm *c, const void *send, size_t send_count, void *recv,
                      const size_t *counts, CommType t);
    int (*agree)(Comm *c, int my_status, int *failed_rank);
    int (*reserve)(Comm *c, int max_inflight);
    int (*start)(Comm *c, const CommTask *task, CommReq **req);
    int (*test)(Comm *c, CommReq **req, int *done);
    int (*wait)(Comm *c, CommReq **req);
    int (*shm_alloc)(Comm *c, size_t bytes, void **bases, void **handle);
    void (*shm_free)(Comm *c, void *handle);
} CommOps;

struct Comm {
    const CommOps *ops;
    int rank, size;             /* in this communicator */
    int local_rank, local_size; /* among the ranks sharing this node's memory */
    char host[64];              /* this rank's host name */
    void *impl;                 /* backend state */
};

/* Defaults described in CommConf. */
void comm_conf_default(CommConf *conf);

/* Create the MPI communicator over MPI_COMM_WORLD (initialising MPI at
 * MPI_THREAD_FUNNELED if nobody has yet; comm_destroy of the last Comm then finalises
 * it).  Allocates all scratch now (max_inflight * window * segment_bytes); no operation
 * allocates afterwards.  Sets log_set_rank() and, unless conf says otherwise, installs
 * the abort hook (MPI_Abort).  conf may be NULL (defaults).  Collective.
 * Returns 0 and *out (free with comm_destroy), or MT_EX_CONFIG if ranks passed different
 * confs or a value is out of range, MT_EX_SOFTWARE if MPI lacks FUNNELED. */
int comm_create(Comm **out, const CommConf *conf);
/* A new Comm over the ranks of `parent` with the same color, ordered by (key, rank),
 * with parent's conf (MPI_Comm_split).  Collective over parent.  Returns 0 and *out. */
int comm_split(Comm *parent, int color, int key, Comm **out);
/* Free everything; no operation may be in flight (CHECKed).  NULL is a no-op.
 * Collective. */
void comm_destroy(Comm *c);

/* Grow the pool of in-flight range operations to at least `max_inflight` (allocates;
 * never shrinks; none may be in flight).  Collective (same value on all ranks). */
static inline int comm_reserve(Comm *c, int max_inflight) { return c->ops->reserve(c, max_inflight); }

static inline int comm_barrier(Comm *c) { return c->ops->barrier(c); }
/* buf[count] of `t` from `root` to everyone. */
static inline int comm_bcast(Comm *c, void *buf, size_t count, CommType t, int root)
{
    return c->ops->bcast(c, buf, count, t, root);
}
/* In-place sum of buf[count] with the library's allreduce (MPI_Allreduce): fast, not
 * bitwise N-invariant.  For small values (a loss, a count); use coll_allreduce on slabs. */
static inline int comm_allreduce(Comm *c, void *buf, size_t count, CommType t)
{
    return c->ops->allreduce(c, buf, count, t);
}
/* recv = concatenation over ranks of each rank's send[counts[rank]] (send_count must be
 * counts[rank]); counts[size] on every rank.  send and recv must not overlap. */
static inline int comm_allgatherv(Comm *c, const void *send, size_t send_count, void *recv,
                                  const size_t *counts, CommType t)
{
    return c->ops->allgatherv(c, send, send_count, recv, counts, t);
}
/* Status agreement: returns the largest my_status over all ranks (0 = all fine) and sets
 * *failed_rank (may be NULL) to the lowest rank with a non-zero status, or -1.  When
 * some rank failed, every rank that did not fail gets err_set(max, "rank R (host) failed
 * with exit code C: <that rank's err_msg()>"), so any rank can report it.  One small
 * allreduce when all is fine.  Collective. */
static inline int comm_agree(Comm *c, int my_status, int *failed_rank)
{
    return c->ops->agree(c, my_status, failed_rank);
}

/* Start a range operation (see CommTask); *req is valid until comm_test reports done or
 * comm_wait returns.  The buffer [lo, hi) must not be touched meanwhile.  Several
 * operations may be in flight (up to max_inflight); they may be driven in any order,
 * but must be started in the same order on all ranks.  Returns 0, or MT_EX_SOFTWARE with
 * err_set() for a bad task or a full pool (nothing started, *req = NULL). */
static inline int comm_start(Comm *c, const CommTask *task, CommReq **req)
{
    return c->ops->start(c, task, req);
}
/* Progress *req without blocking; *done = 1 when finished, and then *req is released and
 * set to NULL.  *req == NULL: *done = 1.  Returns 0. */
static inline int comm_test(Comm *c, CommReq **req, int *done) { return c->ops->test(c, req, done); }
/* Block until *req is finished; releases it and sets *req = NULL (NULL: no-op). */
static inline int comm_wait(Comm *c, CommReq **req) { return c->ops->wait(c, req); }
/* Node-shared memory, for ranks that can address each other's memory directly (the
 * data-parallel engine's intranode path).  When every rank of c shares this node's
 * memory (local_size == size) and the backend supports it: each rank contributes a
 * segment of `bytes` (may differ per rank, may be 0), bases[r] (size entries) is rank
 * r's segment mapped in this process, page-aligned, zero-filled; *handle frees it.
 * Otherwise returns 1 (ranks on several nodes, or no shared memory in this backend),
 * sets nothing and allocates nothing: the caller uses range operations instead.  The
 * outcome is the same on every rank.  Collective; comm_shm_free is collective too.
 * Ordering between ranks is the caller's (C11 atomics in the segments). */
static inline int comm_shm_alloc(Comm *c, size_t bytes, void **bases, void **handle)
{
    return c->ops->shm_alloc ? c->ops->shm_alloc(c, bytes, bases, handle) : 1;
}
static inline void comm_shm_free(Comm *c, void *handle)
{
    if (handle) c->ops->shm_free(c, handle);
}

/* comm_start + comm_wait. */
int comm_run(Comm *c, const CommTask *task);

/* Bytes of one element of t. */
size_t comm_type_size(CommType t);

/* `mpitrain bench allreduce|p2p [--min 4K] [--max 256M] [--iters N] [--csv FILE]`
 * (argv[0] = "bench", argv[1] = the subcommand).  Run under mpirun; rank 0 prints a
 * table and writes the CSV (size_bytes,impl,nranks,time_us,algbw_GBps,busbw_GBps).
 * Returns an exit code (MT_EX_USAGE for a bad command line). */
int bench_comm_main(int argc, char **argv);

#endif
