/* comm.h — the communicator: a handle (Comm) and a table of functions (CommOps) that a
 * backend implements.  The MPI backend (comm.c, comm_mpi_p2p.c, collectives.c) is the
 * only one today; a NCCL backend plugs in by filling the same table.
 *
 * Three kinds of operations:
 *   - small blocking collectives: barrier, bcast, allreduce (the library's own "fast"
 *     sum), allgatherv, comm_agree (all ranks learn the worst status and the lowest
 *     failing rank), comm_agree_flags (the same plus summed flags, once per training
 *     step) and comm_split;
 *   - range reductions on a slab, [lo, hi) of `buf`, started with comm_start() and
 *     driven with comm_test()/comm_wait(): allreduce, reduce-scatter and allgather, each
 *     either COMM_DET (the canonical tree of docs/determinism.md, bitwise reproducible, see
 *     coll.h) or COMM_FAST (the library's MPI_Iallreduce & co).  coll.h has the
 *     convenience wrappers, shard.h the shard layout;
 *   - point-to-point messages between two ranks (comm_isend/comm_irecv into a set of
 *     request slots, comm_p2p_test/testany/wait/waitany, comm_probe, and the blocking
 *     comm_send/comm_recv), for the parameter server: see "point-to-point" below.
 * Everything goes through the table: outside the MPI backend (comm.c, comm_mpi_p2p.c,
 * collectives.c) only the communication benchmark, which measures MPI itself, calls MPI.
 *
 * Threads: MPI runs at MPI_THREAD_FUNNELED: only the thread that created the Comm calls
 * any function here.  Collective calls (every function taking a Comm except comm_test/
 * comm_wait, the point-to-point functions and the accessors) must be made by all ranks
 * in the same order with the same sizes, types and ranges.
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

/* ---- point-to-point ----
 * A message is count elements of one CommType from one rank of a Comm to another (or to
 * itself), with a tag.  Messages from one rank with one tag arrive in the order they
 * were sent; nothing else is ordered.
 *
 * Tags: the caller owns 0..COMM_TAG_MAX; give each message kind its own tag (a
 * receive takes only messages of its tag).  The backend's own traffic on the same
 * communicator (the deterministic collectives) uses tags above COMM_TAG_MAX, so the two
 * never match each other; for that reason there is no any-tag receive.  A receive may
 * take any source (COMM_ANY_SOURCE), and comm_probe finds a waiting message without
 * receiving it (a server learning which worker pushed, and how much).
 *
 * Requests live in a CommP2p, a set of n slots made once by comm_p2p_create (nothing is
 * allocated per message): a slot is free or holds one send or receive in flight, posted
 * with comm_isend/comm_irecv and finished by comm_p2p_test/wait on that slot or
 * comm_p2p_testany/waitany over the whole set (a server posts one receive per worker
 * and serves whichever arrives first, never blocking on one peer).  A finished slot is
 * free again.  While a send is in flight its buffer must not be written, while a
 * receive is in flight its buffer must not be touched.
 *
 * Blocking calls (comm_p2p_wait/waitany, comm_probe_wait, comm_send, comm_recv) keep the
 * range operations in flight on the same Comm moving while they wait, so a rank may
 * wait for a message while its reductions are still running.
 *
 * Errors: bad arguments (tag outside 0..COMM_TAG_MAX, peer not a rank, unknown type,
 * slot out of range or busy, more than INT_MAX elements in one message: split it)
 * return MT_EX_SOFTWARE after err_set(), and nothing is posted.  A message longer than
 * the receive's buffer is a bug and aborts the job (truncation is an MPI error). */
#define COMM_TAG_MAX 4095
#define COMM_ANY_SOURCE (-1)

/* What one finished message was.  peer: the rank it came from (receive) or went to
 * (send); tag: its tag; count: elements of the request's type received (receive) or sent
 * (send).  For a probe, count is in elements of the type passed to the probe. */
typedef struct {
    int peer;
    int tag;
    size_t count;
} CommStatus;

typedef struct CommP2p CommP2p; /* a set of request slots; owned by the caller */

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
    int (*split)(Comm *parent, int color, int key, Comm **out);
    /* point-to-point (see the wrappers below) */
    int (*p2p_create)(Comm *c, int n, CommP2p **out);
    void (*p2p_destroy)(Comm *c, CommP2p *set);
    int (*isend)(Comm *c, CommP2p *set, int slot, const void *buf, size_t count, CommType t,
                 int dest, int tag);
    int (*irecv)(Comm *c, CommP2p *set, int slot, void *buf, size_t count, CommType t,
                 int source, int tag);
    int (*p2p_test)(Comm *c, CommP2p *set, int slot, int block, int *done, CommStatus *st);
    int (*p2p_testany)(Comm *c, CommP2p *set, int block, int *slot, CommStatus *st);
    int (*p2p_cancel)(Comm *c, CommP2p *set, int slot);
    int (*probe)(Comm *c, int source, int tag, CommType t, int block, int *found,
                 CommStatus *st);
    int (*send)(Comm *c, const void *buf, size_t count, CommType t, int dest, int tag);
    int (*recv)(Comm *c, void *buf, size_t count, CommType t, int source, int tag,
                CommStatus *st);
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
 * with parent's conf and backend (MPI: MPI_Comm_split); free it with comm_destroy
 * (before or after parent).  color >= 0.  Collective over parent.  Returns 0 and *out. */
static inline int comm_split(Comm *parent, int color, int key, Comm **out)
{
    return parent->ops->split(parent, color, key, out);
}
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
/* The per-step agreement, in one small allreduce: flags[0..nflags) (in/out) become their
 * sums over all ranks (e.g. 1 = "this rank saw a signal": > 0 afterwards when any rank
 * did), and every rank learns every rank's status (an exit code, >= 0, 0 = fine).
 * Returns the largest status (0 when all are fine) and sets *failed_rank (may be NULL)
 * to the lowest rank with a non-zero status, or -1.  Unlike comm_agree it records no
 * message: each rank reports its own failure.  Flags are summed with the library's
 * allreduce in double: exact for counts; other values round as comm_allreduce does.
 * Allocates (nflags + size) doubles for the call.  Collective (same nflags). */
int comm_agree_flags(Comm *c, int status, double *flags, int nflags, int *failed_rank);

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

/* ---- point-to-point (see the section above CommStatus) ---- */

/* A set of n >= 1 free request slots for messages on c (allocates).  Returns 0 and
 * *out, or MT_EX_SOFTWARE (n < 1). */
static inline int comm_p2p_create(Comm *c, int n, CommP2p **out)
{
    return c->ops->p2p_create(c, n, out);
}
/* Free a set; every slot must be free (CHECKed: wait for or cancel what is in flight).
 * NULL is a no-op.  Destroy a Comm's sets before the Comm. */
static inline void comm_p2p_destroy(Comm *c, CommP2p *set)
{
    if (set) c->ops->p2p_destroy(c, set);
}
/* Start sending buf[count] of t to rank dest with tag (0..COMM_TAG_MAX) in the free
 * slot `slot` of set.  Returns 0, or MT_EX_SOFTWARE (bad argument; nothing posted). */
static inline int comm_isend(Comm *c, CommP2p *set, int slot, const void *buf, size_t count,
                             CommType t, int dest, int tag)
{
    return c->ops->isend(c, set, slot, buf, count, t, dest, tag);
}
/* Start receiving at most count elements of t from rank source (or COMM_ANY_SOURCE) with
 * tag into buf, in the free slot `slot` of set.  Returns 0 or MT_EX_SOFTWARE (as
 * comm_isend). */
static inline int comm_irecv(Comm *c, CommP2p *set, int slot, void *buf, size_t count,
                             CommType t, int source, int tag)
{
    return c->ops->irecv(c, set, slot, buf, count, t, source, tag);
}
/* Whether the request in `slot` has finished, without blocking: *done = 1 and *st (may
 * be NULL) filled when it has (the slot is free again), *done = 0 while it runs.  A free
 * slot reports *done = 1 with st = {COMM_ANY_SOURCE, -1, 0}.  Returns 0, or
 * MT_EX_SOFTWARE for a slot out of range. */
static inline int comm_p2p_test(Comm *c, CommP2p *set, int slot, int *done, CommStatus *st)
{
    return c->ops->p2p_test(c, set, slot, 0, done, st);
}
/* comm_p2p_test, blocking until the request has finished. */
static inline int comm_p2p_wait(Comm *c, CommP2p *set, int slot, CommStatus *st)
{
    int done = 0;
    return c->ops->p2p_test(c, set, slot, 1, &done, st);
}
/* Whether any request in the set has finished, without blocking: *slot = one finished
 * slot (now free) and *st (may be NULL) its status, or *slot = -1 when none has
 * finished yet or none is in flight.  Returns 0. */
static inline int comm_p2p_testany(Comm *c, CommP2p *set, int *slot, CommStatus *st)
{
    return c->ops->p2p_testany(c, set, 0, slot, st);
}
/* comm_p2p_testany, blocking until one request has finished; *slot = -1 at once when
 * none is in flight. */
static inline int comm_p2p_waitany(Comm *c, CommP2p *set, int *slot, CommStatus *st)
{
    return c->ops->p2p_testany(c, set, 1, slot, st);
}
/* Cancel the receive in `slot` and free the slot.  Returns 0 when it was cancelled (or
 * the slot was free), 1 when the message had already arrived (it is in the buffer), or
 * MT_EX_SOFTWARE for a slot out of range or holding a send (a send cannot be cancelled:
 * wait for it). */
static inline int comm_p2p_cancel(Comm *c, CommP2p *set, int slot)
{
    return c->ops->p2p_cancel(c, set, slot);
}
/* Whether a message from source (or COMM_ANY_SOURCE) with tag is waiting to be
 * received, without receiving it or blocking: *found = 1 and *st (peer, tag, count in
 * elements of t) when one is.  The message found is the one that a receive from
 * (st->peer, st->tag) gets next, unless a receive posted earlier takes it first.
 * Returns 0, or MT_EX_SOFTWARE (bad argument). */
static inline int comm_probe(Comm *c, int source, int tag, CommType t, int *found,
                             CommStatus *st)
{
    return c->ops->probe(c, source, tag, t, 0, found, st);
}
/* comm_probe, blocking until such a message is waiting. */
static inline int comm_probe_wait(Comm *c, int source, int tag, CommType t, CommStatus *st)
{
    int found = 0;
    return c->ops->probe(c, source, tag, t, 1, &found, st);
}
/* Blocking conveniences: comm_isend/comm_irecv and a wait, without a set.  comm_send
 * returns once buf may be reused (the message may still be on its way; it may also wait
 * until dest posts the matching receive, so two ranks that send to each other post
 * with comm_isend); comm_recv returns once the message is in buf (*st may be NULL).
 * Return 0 or MT_EX_SOFTWARE (as comm_isend). */
static inline int comm_send(Comm *c, const void *buf, size_t count, CommType t, int dest,
                            int tag)
{
    return c->ops->send(c, buf, count, t, dest, tag);
}
static inline int comm_recv(Comm *c, void *buf, size_t count, CommType t, int source,
                            int tag, CommStatus *st)
{
    return c->ops->recv(c, buf, count, t, source, tag, st);
}

/* Bytes of one element of t. */
size_t comm_type_size(CommType t);


#endif
