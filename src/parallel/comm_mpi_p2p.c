/* comm_mpi_p2p.c — the MPI backend's point-to-point messages (contracts in comm.h):
 * a CommP2p is an array of MPI requests, MPI_REQUEST_NULL for a free slot, with a record
 * of what each slot holds.  A blocking call blocks inside MPI only while no range
 * operation is in flight on the Comm; otherwise it polls and drives those operations
 * (comm_mpi_drive), which advance only when their owner re-posts segments. */
#include <limits.h>
#include <stdlib.h>

#include "core/common.h"
#include "parallel/comm_mpi.h"

typedef struct {
    int send;     /* 1: a send, 0: a receive (meaningful while the slot is in flight) */
    CommType type;
    int peer, tag;
    size_t count; /* posted: sent, or the receive's capacity */
} Slot;

struct CommP2p {
    const Comm *comm;
    int n;
    MPI_Request *req; /* (n) MPI_REQUEST_NULL: free */
    Slot *slot;       /* (n) */
};

static int valid_type(CommType t)
{
    return t == COMM_F32 || t == COMM_F64 || t == COMM_I64 || t == COMM_BYTE;
}

/* Arguments of one message (peer: a rank, or COMM_ANY_SOURCE when any_ok). */
static int check_msg(const Comm *c, const char *what, const void *buf, size_t count,
                     CommType t, int peer, int any_ok, int tag)
{
    if (!valid_type(t)) return err_set(MT_EX_SOFTWARE, "%s: unknown CommType %d", what, (int)t);
    if (tag < 0 || tag > COMM_TAG_MAX)
        return err_set(MT_EX_SOFTWARE, "%s: tag %d outside the callers' range 0..%d", what, tag,
                       COMM_TAG_MAX);
    if (!(peer >= 0 && peer < c->size) && !(any_ok && peer == COMM_ANY_SOURCE))
        return err_set(MT_EX_SOFTWARE, "%s: rank %d is not a rank of this communicator (0..%d%s)",
                       what, peer, c->size - 1, any_ok ? " or COMM_ANY_SOURCE" : "");
    if (count > INT_MAX)
        return err_set(MT_EX_SOFTWARE,
                       "%s: %zu elements is more than one message can carry (limit %d); "
                       "split it", what, count, INT_MAX);
    if (count > 0 && !buf) return err_set(MT_EX_SOFTWARE, "%s: NULL buffer for %zu elements", what, count);
    return 0;
}

static int check_slot(const Comm *c, const CommP2p *set, int slot, const char *what)
{
    CHECK(set && set->comm == c);
    if (slot < 0 || slot >= set->n)
        return err_set(MT_EX_SOFTWARE, "%s: slot %d outside the set's 0..%d", what, slot,
                       set->n - 1);
    return 0;
}

static int check_free_slot(const Comm *c, const CommP2p *set, int slot, const char *what)
{
    int rc = check_slot(c, set, slot, what);
    if (rc) return rc;
    if (set->req[slot] != MPI_REQUEST_NULL)
        return err_set(MT_EX_SOFTWARE, "%s: slot %d still holds a %s in flight; test or wait "
                       "for it first", what, slot, set->slot[slot].send ? "send" : "receive");
    return 0;
}

/* Status of the request that slot held, from MPI's status of a receive. */
static void fill_status(const Slot *s, const MPI_Status *ms, CommStatus *st)
{
    if (!st) return;
    if (s->send) {
        *st = (CommStatus){s->peer, s->tag, s->count};
        return;
    }
    int n = 0;
    CHECK_MPI(MPI_Get_count(ms, comm_mpi_type(s->type), &n));
    CHECK(n != MPI_UNDEFINED);
    *st = (CommStatus){ms->MPI_SOURCE, ms->MPI_TAG, (size_t)n};
}

/* Complete one of req[0..n) (any) or req[0] (!any), keeping range operations moving;
 * *idx = the request completed (MPI_UNDEFINED: all were null). */
static void wait_req(Comm *c, int n, MPI_Request *req, int any, int *idx, MPI_Status *ms)
{
    for (;;) {
        int flag = 0;
        if (any) {
            CHECK_MPI(MPI_Testany(n, req, idx, &flag, ms));
        } else {
            CHECK_MPI(MPI_Test(req, &flag, ms));
            *idx = 0;
        }
        if (flag) return;
        if (comm_mpi_drive(c) == 0) break;
    }
    if (any) {
        CHECK_MPI(MPI_Waitany(n, req, idx, ms));
    } else {
        CHECK_MPI(MPI_Wait(req, ms));
        *idx = 0;
    }
}

int comm_mpi_p2p_create(Comm *c, int n, CommP2p **out)
{
    *out = NULL;
    if (n < 1) return err_set(MT_EX_SOFTWARE, "comm_p2p_create: %d slots (need >= 1)", n);
    CommP2p *set = xcalloc(1, sizeof *set);
    set->comm = c;
    set->n = n;
    set->req = xcalloc((size_t)n, sizeof *set->req);
    set->slot = xcalloc((size_t)n, sizeof *set->slot);
    for (int i = 0; i < n; i++) set->req[i] = MPI_REQUEST_NULL;
    *out = set;
    return 0;
}

void comm_mpi_p2p_destroy(Comm *c, CommP2p *set)
{
    CHECK(set->comm == c);
    for (int i = 0; i < set->n; i++) CHECK(set->req[i] == MPI_REQUEST_NULL);
    free(set->req);
    free(set->slot);
    free(set);
}

int comm_mpi_isend(Comm *c, CommP2p *set, int slot, const void *buf, size_t count, CommType t,
                   int dest, int tag)
{
    int rc = check_free_slot(c, set, slot, "comm_isend");
    if (!rc) rc = check_msg(c, "comm_isend", buf, count, t, dest, 0, tag);
    if (rc) return rc;
    CHECK_MPI(MPI_Isend(buf, (int)count, comm_mpi_type(t), dest, tag, comm_mpi_comm(c),
                        &set->req[slot]));
    set->slot[slot] = (Slot){1, t, dest, tag, count};
    return 0;
}

int comm_mpi_irecv(Comm *c, CommP2p *set, int slot, void *buf, size_t count, CommType t,
                   int source, int tag)
{
    int rc = check_free_slot(c, set, slot, "comm_irecv");
    if (!rc) rc = check_msg(c, "comm_irecv", buf, count, t, source, 1, tag);
    if (rc) return rc;
    int src = source == COMM_ANY_SOURCE ? MPI_ANY_SOURCE : source;
    CHECK_MPI(MPI_Irecv(buf, (int)count, comm_mpi_type(t), src, tag, comm_mpi_comm(c),
                        &set->req[slot]));
    set->slot[slot] = (Slot){0, t, source, tag, count};
    return 0;
}

int comm_mpi_p2p_test(Comm *c, CommP2p *set, int slot, int block, int *done, CommStatus *st)
{
    *done = 0;
    int rc = check_slot(c, set, slot, block ? "comm_p2p_wait" : "comm_p2p_test");
    if (rc) return rc;
    if (set->req[slot] == MPI_REQUEST_NULL) {
        *done = 1;
        if (st) *st = (CommStatus){COMM_ANY_SOURCE, -1, 0};
        return 0;
    }
    MPI_Status ms;
    if (block) {
        int idx;
        wait_req(c, 1, &set->req[slot], 0, &idx, &ms);
        *done = 1;
    } else {
        CHECK_MPI(MPI_Test(&set->req[slot], done, &ms));
    }
    if (*done) fill_status(&set->slot[slot], &ms, st);
    return 0;
}

int comm_mpi_p2p_testany(Comm *c, CommP2p *set, int block, int *slot, CommStatus *st)
{
    CHECK(set && set->comm == c);
    *slot = -1;
    MPI_Status ms;
    int idx = MPI_UNDEFINED, flag = 0;
    if (block)
        wait_req(c, set->n, set->req, 1, &idx, &ms);
    else
        CHECK_MPI(MPI_Testany(set->n, set->req, &idx, &flag, &ms));
    if (idx == MPI_UNDEFINED) return 0; /* nothing finished, or nothing in flight */
    *slot = idx;
    fill_status(&set->slot[idx], &ms, st);
    return 0;
}

int comm_mpi_p2p_cancel(Comm *c, CommP2p *set, int slot)
{
    int rc = check_slot(c, set, slot, "comm_p2p_cancel");
    if (rc) return rc;
    if (set->req[slot] == MPI_REQUEST_NULL) return 0;
    if (set->slot[slot].send)
        return err_set(MT_EX_SOFTWARE, "comm_p2p_cancel: slot %d holds a send, which cannot be "
                       "cancelled; wait for it", slot);
    CHECK_MPI(MPI_Cancel(&set->req[slot]));
    MPI_Status ms;
    CHECK_MPI(MPI_Wait(&set->req[slot], &ms)); /* completes at once once cancelled */
    int cancelled = 0;
    CHECK_MPI(MPI_Test_cancelled(&ms, &cancelled));
    return cancelled ? 0 : 1;
}

int comm_mpi_probe(Comm *c, int source, int tag, CommType t, int block, int *found,
                   CommStatus *st)
{
    *found = 0;
    int rc = check_msg(c, block ? "comm_probe_wait" : "comm_probe", NULL, 0, t, source, 1, tag);
    if (rc) return rc;
    int src = source == COMM_ANY_SOURCE ? MPI_ANY_SOURCE : source;
    MPI_Comm mc = comm_mpi_comm(c);
    MPI_Status ms;
    for (;;) {
        CHECK_MPI(MPI_Iprobe(src, tag, mc, found, &ms));
        if (*found || !block) break;
        if (comm_mpi_drive(c) == 0) {
            CHECK_MPI(MPI_Probe(src, tag, mc, &ms));
            *found = 1;
            break;
        }
    }
    if (*found) fill_status(&(Slot){0, t, source, tag, 0}, &ms, st);
    return 0;
}

int comm_mpi_send(Comm *c, const void *buf, size_t count, CommType t, int dest, int tag)
{
    int rc = check_msg(c, "comm_send", buf, count, t, dest, 0, tag);
    if (rc) return rc;
    MPI_Request r;
    CHECK_MPI(MPI_Isend(buf, (int)count, comm_mpi_type(t), dest, tag, comm_mpi_comm(c), &r));
    int idx;
    wait_req(c, 1, &r, 0, &idx, MPI_STATUS_IGNORE);
    return 0;
}

int comm_mpi_recv(Comm *c, void *buf, size_t count, CommType t, int source, int tag,
                  CommStatus *st)
{
    int rc = check_msg(c, "comm_recv", buf, count, t, source, 1, tag);
    if (rc) return rc;
    int src = source == COMM_ANY_SOURCE ? MPI_ANY_SOURCE : source;
    MPI_Request r;
    CHECK_MPI(MPI_Irecv(buf, (int)count, comm_mpi_type(t), src, tag, comm_mpi_comm(c), &r));
    MPI_Status ms;
    int idx;
    wait_req(c, 1, &r, 0, &idx, &ms);
    fill_status(&(Slot){0, t, source, tag, count}, &ms, st);
    return 0;
}
