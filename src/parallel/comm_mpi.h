/* comm_mpi.h — what the files of the MPI backend share: the MPI communicator behind a
 * Comm, CHECK_MPI, the point-to-point entries of the table (comm_mpi_p2p.c) and the
 * engine of the deterministic collectives (collectives.c) that the backend (comm.c)
 * runs.  Private to the MPI backend: everything else goes through CommOps (comm.h). */
#ifndef MPITRAIN_PARALLEL_COMM_MPI_H
#define MPITRAIN_PARALLEL_COMM_MPI_H

#include <mpi.h>

#include "parallel/comm.h"

/* Abort the job naming rank, host, file:line and MPI's error text (docs/design.md). */
#define CHECK_MPI(call)                                                                \
    do {                                                                               \
        int mpi_rc_ = (call);                                                          \
        if (mpi_rc_ != MPI_SUCCESS) comm_mpi_fail(__FILE__, __LINE__, #call, mpi_rc_); \
    } while (0)
void comm_mpi_fail(const char *file, int line, const char *call, int rc) __attribute__((noreturn));

/* The (private, duplicated) MPI communicator of an MPI-backend Comm. */
MPI_Comm comm_mpi_comm(const Comm *c);
MPI_Datatype comm_mpi_type(CommType t);
/* Drive every deterministic range operation in flight on c one non-blocking round;
 * returns the number of range operations in flight (0: a caller may block inside MPI
 * without stalling any). */
int comm_mpi_drive(Comm *c);

/* The point-to-point entries of the MPI table (comm_mpi_p2p.c; contracts in comm.h). */
int comm_mpi_p2p_create(Comm *c, int n, CommP2p **out);
void comm_mpi_p2p_destroy(Comm *c, CommP2p *set);
int comm_mpi_isend(Comm *c, CommP2p *set, int slot, const void *buf, size_t count, CommType t,
                   int dest, int tag);
int comm_mpi_irecv(Comm *c, CommP2p *set, int slot, void *buf, size_t count, CommType t,
                   int source, int tag);
int comm_mpi_p2p_test(Comm *c, CommP2p *set, int slot, int block, int *done, CommStatus *st);
int comm_mpi_p2p_testany(Comm *c, CommP2p *set, int block, int *slot, CommStatus *st);
int comm_mpi_p2p_cancel(Comm *c, CommP2p *set, int slot);
int comm_mpi_probe(Comm *c, int source, int tag, CommType t, int block, int *found,
                   CommStatus *st);
int comm_mpi_send(Comm *c, const void *buf, size_t count, CommType t, int dest, int tag);
int comm_mpi_recv(Comm *c, void *buf, size_t count, CommType t, int source, int tag,
                  CommStatus *st);

/* Tags at or above this are the deterministic collectives' (the callers' point-to-point
 * tags are 0..COMM_TAG_MAX). */
#define COLL_TAG_BASE (COMM_TAG_MAX + 1)
#define COLL_TAG_STEPS 64 /* tag = COLL_TAG_BASE + seq * COLL_TAG_STEPS + step */
#define COLL_MAX_WINDOW 16
#define COLL_MAX_PHASES 66

/* A set of element ranges of the current operation: all of [lo, hi) or the shards
 * first, first + stride, ... (< P) of the layout. */
typedef struct {
    int whole;
    int first, stride; /* first >= P: empty */
} CollSet;

/* One exchange with one peer.  Stream A: send the `send` set raw, receive the `recv` set
 * (added into buf, or received in place).  Fused phases (the last reduce step of an
 * allreduce merged with the first gather step, same partner) add stream B: each summed
 * segment of `recv` goes straight back to the peer, and the peer's summed segments of
 * `send` come back in place, while later segments are still being reduced. */
typedef struct {
    int peer;       /* real rank exchanged with */
    int step_a;     /* tag steps (< COLL_TAG_STEPS) */
    int step_b;
    CollSet send, recv;
    int add;        /* stream A's received data is added into buf (else received in place) */
    int mine_left;  /* in the addition, this rank's value is the left operand */
    int paired;     /* send set == recv set: add a segment only once its send is done */
    int fused;      /* stream B active */
    int gath;       /* a gather step: moves the gather buffer */
} CollPhase;

typedef struct {
    int shard;       /* current shard (sets of shards), -1 when done */
    size_t off, end; /* element range left in the current piece */
} CollIter;

/* A stream of segments through a window of slots; segment g uses slot g % window and is
 * processed in order. */
typedef struct {
    CollIter it;
    long posted, finished;
    int state[COLL_MAX_WINDOW]; /* 0 free, 1 in flight, 2 completed, not yet processed */
    size_t off[COLL_MAX_WINDOW], cnt[COLL_MAX_WINDOW];
} CollStream;

enum { CS_SEND_A, CS_RECV_A, CS_SEND_B, CS_RECV_B, CS_N };

/* State of one deterministic operation in flight (embedded in a request slot; the ring
 * is the slot's share of the scratch allocated by comm_create). */
typedef struct {
    MPI_Comm comm;
    char *buf;
    char *gbuf;                    /* what gather steps and stream B move (buf or gather_buf) */
    void (*on_sum)(void *arg, size_t a, size_t b);
    void *on_sum_arg;
    size_t esz;
    CommType type;
    size_t lo, hi;
    int P;                         /* virtual ranks (largest power of two <= size) */
    int tag0;
    int nphase, cur;
    CollPhase ph[COLL_MAX_PHASES];
    int window;
    size_t seg_elems;
    char *ring;                    /* window * segment bytes: stream A's receive buffers */
    CollStream st[CS_N];
    MPI_Request req[CS_N * COLL_MAX_WINDOW]; /* stream s slot i: req[s * window + i] */
    int idx[CS_N * COLL_MAX_WINDOW];
} CollDet;

/* Plan a deterministic task for `rank` of `size` (task already validated).  doubling:
 * allreduce by recursive doubling instead of halving + allgather. */
void coll_det_plan(CollDet *d, const CommTask *task, MPI_Comm comm, int rank, int size,
                   int doubling, int tag0, char *ring, size_t segment_bytes, int window);
/* Advance; block = 1 waits for progress.  Returns 1 when the operation is complete. */
int coll_det_progress(CollDet *d, int block);

#endif
