/* comm.c — the MPI backend of CommOps (comm.h): creation and split, small collectives,
 * status agreement, node-shared memory, and the pool of persistent request slots that
 * range operations run in (library MPI_I* calls for COMM_FAST, the engine of
 * collectives.c for COMM_DET).  Point-to-point messages are comm_mpi_p2p.c. */
#include "parallel/comm.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "core/common.h"
#include "parallel/comm_mpi.h"
#include "parallel/shard.h"

#define LIB_MAX 16                        /* library requests per operation */
#define LIB_CHUNK ((size_t)1 << 30)       /* elements per library call (int counts) */

struct CommReq {
    int busy;
    int det;          /* 1: CollDet engine, 0: library requests */
    int done;         /* det: the engine has finished */
    CollDet d;
    MPI_Request lib[LIB_MAX];
    int nlib;
    /* fast reduce-scatter: move the in-place result from lo to the shard */
    char *move_buf;
    size_t move_dst, move_src, move_bytes;
    int *counts, *displs; /* [size], library v-collectives */
};

typedef struct {
    MPI_Comm comm;
    CommConf conf;
    char *scratch;    /* nslots * window * segment_bytes */
    CommReq *slots;
    int nslots, inflight;
    int *icounts, *idispls; /* [size], blocking allgatherv */
    uint64_t seq;
    int seq_mod;      /* tag sequence numbers in flight before wrapping */
} MpiImpl;

static int g_ncomms;  /* live Comms */
static int g_own_mpi; /* we called MPI_Init_thread */

static MpiImpl *impl_of(const Comm *c)
{
    CHECK(c && c->impl);
    return c->impl;
}

/* ---- helpers shared through comm_mpi.h ---- */

void comm_mpi_fail(const char *file, int line, const char *call, int rc)
{
    char s[MPI_MAX_ERROR_STRING];
    int n = 0;
    if (MPI_Error_string(rc, s, &n) != MPI_SUCCESS) snprintf(s, sizeof s, "MPI error %d", rc);
    fatal(MT_EX_SOFTWARE, "%s:%d: MPI call failed: %s: %s", file, line, call, s);
}

MPI_Comm comm_mpi_comm(const Comm *c) { return impl_of(c)->comm; }

MPI_Datatype comm_mpi_type(CommType t)
{
    switch (t) {
    case COMM_F32: return MPI_FLOAT;
    case COMM_F64: return MPI_DOUBLE;
    case COMM_I64: return MPI_INT64_T;
    case COMM_BYTE: return MPI_BYTE;
    }
    CHECK(!"unknown CommType");
    return MPI_DATATYPE_NULL;
}

size_t comm_type_size(CommType t)
{
    switch (t) {
    case COMM_F32: return 4;
    case COMM_F64: return 8;
    case COMM_I64: return 8;
    case COMM_BYTE: return 1;
    }
    CHECK(!"unknown CommType");
    return 0;
}

static void abort_hook(int code)
{
    int init = 0, fin = 0;
    MPI_Initialized(&init);
    MPI_Finalized(&fin);
    if (init && !fin) MPI_Abort(MPI_COMM_WORLD, code ? code : MT_EX_SOFTWARE);
    _exit(code ? code : MT_EX_SOFTWARE);
}

void comm_conf_default(CommConf *conf)
{
    conf->segment_bytes = (size_t)512 << 10;
    conf->window = 4;
    conf->max_inflight = 4;
    conf->doubling_max_bytes = (size_t)64 << 10;
    conf->install_abort_hook = 1;
}

/* ---- pool ---- */

static size_t slot_scratch(const MpiImpl *m) { return (size_t)m->conf.window * m->conf.segment_bytes; }

static void pool_free(MpiImpl *m)
{
    for (int i = 0; i < m->nslots; i++) {
        free(m->slots[i].counts);
        free(m->slots[i].displs);
    }
    free(m->slots);
    free(m->scratch);
    m->slots = NULL;
    m->scratch = NULL;
    m->nslots = 0;
}

static void pool_alloc(MpiImpl *m, int nslots, int size)
{
    m->slots = xcalloc((size_t)nslots, sizeof *m->slots);
    m->scratch = xaligned((size_t)nslots * slot_scratch(m));
    for (int i = 0; i < nslots; i++) {
        m->slots[i].counts = xcalloc((size_t)size, sizeof(int));
        m->slots[i].displs = xcalloc((size_t)size, sizeof(int));
    }
    m->nslots = nslots;
}

static int mpi_reserve(Comm *c, int max_inflight)
{
    MpiImpl *m = impl_of(c);
    CHECK(m->inflight == 0);
    if (max_inflight <= m->nslots) return 0;
    pool_free(m);
    m->conf.max_inflight = max_inflight;
    pool_alloc(m, max_inflight, c->size);
    return 0;
}

/* ---- small collectives ---- */

static int mpi_barrier(Comm *c)
{
    CHECK_MPI(MPI_Barrier(impl_of(c)->comm));
    return 0;
}

static int mpi_bcast(Comm *c, void *buf, size_t count, CommType t, int root)
{
    MpiImpl *m = impl_of(c);
    CHECK(root >= 0 && root < c->size);
    size_t esz = comm_type_size(t);
    for (size_t o = 0; o < count; o += LIB_CHUNK) {
        size_t n = MT_MIN(LIB_CHUNK, count - o);
        CHECK_MPI(MPI_Bcast((char *)buf + o * esz, (int)n, comm_mpi_type(t), root, m->comm));
    }
    return 0;
}

static int check_sum_type(CommType t, const char *what)
{
    if (t == COMM_F32 || t == COMM_F64 || t == COMM_I64) return 0;
    return err_set(MT_EX_SOFTWARE,
                   "%s: cannot sum CommType %d (use COMM_F32, COMM_F64 or COMM_I64)", what, (int)t);
}

static int mpi_allreduce(Comm *c, void *buf, size_t count, CommType t)
{
    MpiImpl *m = impl_of(c);
    int rc = check_sum_type(t, "comm_allreduce");
    if (rc) return rc;
    size_t esz = comm_type_size(t);
    for (size_t o = 0; o < count; o += LIB_CHUNK) {
        size_t n = MT_MIN(LIB_CHUNK, count - o);
        CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, (char *)buf + o * esz, (int)n, comm_mpi_type(t),
                                MPI_SUM, m->comm));
    }
    return 0;
}

static int mpi_allgatherv(Comm *c, const void *send, size_t send_count, void *recv,
                          const size_t *counts, CommType t)
{
    MpiImpl *m = impl_of(c);
    size_t total = 0;
    for (int r = 0; r < c->size; r++) {
        if (counts[r] > INT_MAX || total + counts[r] > INT_MAX)
            return err_set(MT_EX_SOFTWARE,
                           "comm_allgatherv: %zu elements in all is more than one call can move "
                           "(limit %d); split the gather", total + counts[r], INT_MAX);
        m->icounts[r] = (int)counts[r];
        m->idispls[r] = (int)total;
        total += counts[r];
    }
    CHECK(send_count == counts[c->rank]);
    CHECK_MPI(MPI_Allgatherv(send, (int)send_count, comm_mpi_type(t), recv, m->icounts,
                             m->idispls, comm_mpi_type(t), m->comm));
    return 0;
}

static int mpi_agree(Comm *c, int my_status, int *failed_rank)
{
    MpiImpl *m = impl_of(c);
    CHECK(my_status >= 0);
    int a[2] = {my_status, my_status ? -c->rank : INT_MIN};
    CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, a, 2, MPI_INT, MPI_MAX, m->comm));
    if (a[0] == 0) {
        if (failed_rank) *failed_rank = -1;
        return 0;
    }
    int failed = -a[1];
    if (failed_rank) *failed_rank = failed;
    char msg[1536];
    if (c->rank == failed)
        snprintf(msg, sizeof msg, "rank %d (%s) failed with exit code %d: %s", failed, c->host,
                 my_status, err_msg()[0] ? err_msg() : "(no message)");
    CHECK_MPI(MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, failed, m->comm));
    msg[sizeof msg - 1] = 0;
    if (my_status == 0) err_set(a[0], "%s", msg);
    return a[0];
}

/* ---- range operations ---- */

static int check_task(const Comm *c, const CommTask *t)
{
    (void)c;
    int rc = check_sum_type(t->type, "comm_start");
    if (rc) return rc;
    if (t->kind != COMM_ALLREDUCE && t->kind != COMM_REDUCE_SCATTER && t->kind != COMM_ALLGATHER)
        return err_set(MT_EX_SOFTWARE, "comm_start: unknown CommKind %d", (int)t->kind);
    if (t->mode != COMM_DET && t->mode != COMM_FAST)
        return err_set(MT_EX_SOFTWARE, "comm_start: unknown CommMode %d", (int)t->mode);
    if (t->on_sum && (t->mode != COMM_DET || t->kind != COMM_ALLREDUCE))
        return err_set(MT_EX_SOFTWARE, "comm_start: on_sum needs a COMM_DET allreduce");
    if (t->lo > t->hi)
        return err_set(MT_EX_SOFTWARE, "comm_start: empty range reversed: lo %zu > hi %zu",
                       t->lo, t->hi);
    if (t->hi > t->lo && !t->buf)
        return err_set(MT_EX_SOFTWARE, "comm_start: NULL buffer for range [%zu, %zu)", t->lo,
                       t->hi);
    return 0;
}

static void start_fast(Comm *c, MpiImpl *m, CommReq *q, const CommTask *t)
{
    size_t esz = comm_type_size(t->type);
    char *base = (char *)t->buf + t->lo * esz;
    size_t n = t->hi - t->lo;
    MPI_Datatype dt = comm_mpi_type(t->type);
    q->det = 0;
    q->nlib = 0;
    q->move_bytes = 0;
    if (t->kind == COMM_ALLREDUCE) {
        for (size_t o = 0; o < n; o += LIB_CHUNK) {
            CHECK(q->nlib < LIB_MAX);
            CHECK_MPI(MPI_Iallreduce(MPI_IN_PLACE, base + o * esz, (int)MT_MIN(LIB_CHUNK, n - o),
                                     dt, MPI_SUM, m->comm, &q->lib[q->nlib++]));
        }
        return;
    }
    for (int r = 0; r < c->size; r++) {
        size_t a, b;
        shard_range(t->lo, t->hi, c->size, r, &a, &b);
        q->counts[r] = (int)(b - a);
        q->displs[r] = (int)(a - t->lo);
    }
    if (t->kind == COMM_REDUCE_SCATTER) {
        /* in place: the library leaves this rank's block at the start of the range */
        CHECK_MPI(MPI_Ireduce_scatter(MPI_IN_PLACE, base, q->counts, dt, MPI_SUM, m->comm,
                                      &q->lib[q->nlib++]));
        q->move_buf = base;
        q->move_dst = (size_t)q->displs[c->rank] * esz;
        q->move_src = 0;
        q->move_bytes = (size_t)q->counts[c->rank] * esz;
    } else {
        CHECK_MPI(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, base, q->counts, q->displs,
                                  dt, m->comm, &q->lib[q->nlib++]));
    }
}

static int mpi_start(Comm *c, const CommTask *t, CommReq **req)
{
    MpiImpl *m = impl_of(c);
    *req = NULL;
    int rc = check_task(c, t);
    if (rc) return rc;
    if (t->mode == COMM_FAST && t->kind != COMM_ALLREDUCE && t->hi - t->lo > INT_MAX)
        return err_set(MT_EX_SOFTWARE,
                       "comm_start: range [%zu, %zu) is too long for the library's "
                       "reduce-scatter/allgather (limit %d elements); use COMM_DET",
                       t->lo, t->hi, INT_MAX);
    if (t->mode == COMM_FAST && t->hi - t->lo > LIB_CHUNK * LIB_MAX)
        return err_set(MT_EX_SOFTWARE, "comm_start: range [%zu, %zu) is too long for COMM_FAST",
                       t->lo, t->hi);
    CommReq *q = NULL;
    int si = 0;
    for (; si < m->nslots; si++)
        if (!m->slots[si].busy) {
            q = &m->slots[si];
            break;
        }
    if (!q)
        return err_set(MT_EX_SOFTWARE,
                       "comm_start: %d range operations already in flight (max_inflight %d): "
                       "wait for one first or call comm_reserve", m->inflight, m->nslots);
    if (t->mode == COMM_FAST) {
        start_fast(c, m, q, t);
    } else {
        size_t bytes = (t->hi - t->lo) * comm_type_size(t->type);
        int doubling = t->kind == COMM_ALLREDUCE && bytes <= m->conf.doubling_max_bytes &&
                       !t->on_sum;
        int tag0 = COLL_TAG_BASE + (int)(m->seq % (uint64_t)m->seq_mod) * COLL_TAG_STEPS;
        m->seq++;
        q->det = 1;
        q->done = 0;
        coll_det_plan(&q->d, t, m->comm, c->rank, c->size, doubling, tag0,
                      m->scratch + (size_t)si * slot_scratch(m), m->conf.segment_bytes,
                      m->conf.window);
    }
    q->busy = 1;
    m->inflight++;
    *req = q;
    return 0;
}

static void finish(MpiImpl *m, CommReq **req)
{
    CommReq *q = *req;
    if (!q->det && q->move_bytes && q->move_dst != q->move_src)
        memmove(q->move_buf + q->move_dst, q->move_buf + q->move_src, q->move_bytes);
    q->busy = 0;
    m->inflight--;
    *req = NULL;
}

/* Drive every deterministic operation in flight one non-blocking round: an operation
 * advances only when its owner re-posts segments, so waiting on one while another waits
 * for this rank would deadlock if ranks drove them in different orders. */
static void progress_all(MpiImpl *m)
{
    for (int i = 0; i < m->nslots; i++) {
        CommReq *q = &m->slots[i];
        if (q->busy && q->det && !q->done) q->done = coll_det_progress(&q->d, 0);
    }
}

int comm_mpi_drive(Comm *c)
{
    MpiImpl *m = impl_of(c);
    if (m->inflight) progress_all(m);
    return m->inflight;
}

static int mpi_test(Comm *c, CommReq **req, int *done)
{
    MpiImpl *m = impl_of(c);
    *done = 1;
    if (!*req) return 0;
    CommReq *q = *req;
    CHECK(q->busy);
    int fin;
    progress_all(m);
    if (q->det) {
        fin = q->done;
    } else {
        CHECK_MPI(MPI_Testall(q->nlib, q->lib, &fin, MPI_STATUSES_IGNORE));
    }
    if (fin) finish(m, req);
    *done = fin;
    return 0;
}

static int mpi_wait(Comm *c, CommReq **req)
{
    MpiImpl *m = impl_of(c);
    if (!*req) return 0;
    CommReq *q = *req;
    CHECK(q->busy);
    if (m->inflight == 1) { /* alone: block inside MPI */
        if (q->det)
            CHECK(q->done || coll_det_progress(&q->d, 1));
        else
            CHECK_MPI(MPI_Waitall(q->nlib, q->lib, MPI_STATUSES_IGNORE));
    } else { /* poll everything until this one is done */
        for (;;) {
            progress_all(m);
            int fin = q->done;
            if (!q->det) CHECK_MPI(MPI_Testall(q->nlib, q->lib, &fin, MPI_STATUSES_IGNORE));
            if (fin) break;
        }
    }
    finish(m, req);
    return 0;
}

int comm_run(Comm *c, const CommTask *task)
{
    CommReq *q = NULL;
    int rc = comm_start(c, task, &q);
    if (rc) return rc;
    return comm_wait(c, &q);
}

/* ---- node-shared memory ---- */

#define SHM_PAGE 4096

static int mpi_shm_alloc(Comm *c, size_t bytes, void **bases, void **handle)
{
    MpiImpl *m = impl_of(c);
    *handle = NULL;
    if (c->local_size != c->size) return 1;
    /* every segment a whole number of pages, each placed by the rank that owns it */
    size_t sz = (bytes + SHM_PAGE - 1) / SHM_PAGE * SHM_PAGE;
    /* Open MPI backs the window with a file in a tmpfs; a tmpfs too small for it (a
     * container's 64 MB /dev/shm) would not fail the allocation but kill the first write
     * with SIGBUS.  Check the free space first, the same verdict on every rank. */
    const char *dir = getenv("OMPI_MCA_osc_sm_backing_directory");
    if (!dir || !*dir) dir = "/dev/shm";
    unsigned long long need = sz, total = 0;
    CHECK_MPI(MPI_Allreduce(&need, &total, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, m->comm));
    struct statvfs vfs;
    unsigned long long avail = statvfs(dir, &vfs) == 0 ? (unsigned long long)vfs.f_bavail * vfs.f_frsize : 0;
    int fits = avail >= total + (16ull << 20), all_fit = 0;
    CHECK_MPI(MPI_Allreduce(&fits, &all_fit, 1, MPI_INT, MPI_MIN, m->comm));
    if (!all_fit) {
        if (c->rank == 0)
            log_info("node-shared memory: %s has %llu MB free, the shared slabs need %llu MB: "
                     "reducing over MPI messages instead (enlarge it, e.g. docker run "
                     "--shm-size, or set parallel.shm = false)", dir, avail >> 20, total >> 20);
        return 1;
    }
    MPI_Info info;
    CHECK_MPI(MPI_Info_create(&info));
    CHECK_MPI(MPI_Info_set(info, "alloc_shared_noncontig", "true"));
    MPI_Win *win = xcalloc(1, sizeof *win);
    void *mine = NULL;
    int rc = MPI_Win_allocate_shared((MPI_Aint)sz, 1, info, m->comm, &mine, win);
    CHECK_MPI(MPI_Info_free(&info));
    /* the outcome must be the same everywhere: agree before anyone uses the memory */
    int ok = rc == MPI_SUCCESS, all = 0;
    CHECK_MPI(MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, m->comm));
    if (!all) {
        if (ok) CHECK_MPI(MPI_Win_free(win));
        free(win);
        return 1;
    }
    for (int r = 0; r < c->size; r++) {
        MPI_Aint rsz = 0;
        int disp = 0;
        CHECK_MPI(MPI_Win_shared_query(*win, r, &rsz, &disp, &bases[r]));
        if (rsz == 0) bases[r] = NULL;
    }
    memset(mine, 0, sz);
    CHECK_MPI(MPI_Barrier(m->comm));
    *handle = win;
    return 0;
}

static void mpi_shm_free(Comm *c, void *handle)
{
    MPI_Win *win = handle;
    CHECK_MPI(MPI_Barrier(impl_of(c)->comm)); /* nobody still reads a peer's segment */
    CHECK_MPI(MPI_Win_free(win));
    free(win);
}

/* ---- the table and creation ---- */

static void mpi_destroy(Comm *c);
static int mpi_split(Comm *parent, int color, int key, Comm **out);

static const CommOps MPI_OPS = {
    .name = "mpi",
    .destroy = mpi_destroy,
    .barrier = mpi_barrier,
    .bcast = mpi_bcast,
    .allreduce = mpi_allreduce,
    .allgatherv = mpi_allgatherv,
    .agree = mpi_agree,
    .reserve = mpi_reserve,
    .start = mpi_start,
    .test = mpi_test,
    .wait = mpi_wait,
    .shm_alloc = mpi_shm_alloc,
    .shm_free = mpi_shm_free,
    .split = mpi_split,
    .p2p_create = comm_mpi_p2p_create,
    .p2p_destroy = comm_mpi_p2p_destroy,
    .isend = comm_mpi_isend,
    .irecv = comm_mpi_irecv,
    .p2p_test = comm_mpi_p2p_test,
    .p2p_testany = comm_mpi_p2p_testany,
    .p2p_cancel = comm_mpi_p2p_cancel,
    .probe = comm_mpi_probe,
    .send = comm_mpi_send,
    .recv = comm_mpi_recv,
};

static int conf_check(const CommConf *f)
{
    if (f->segment_bytes < 4096 || f->segment_bytes > ((size_t)64 << 20) ||
        f->segment_bytes % 8)
        return err_set(MT_EX_CONFIG,
                       "comm: segment_bytes %zu out of range (a multiple of 8 in 4 KiB..64 MiB)",
                       f->segment_bytes);
    if (f->window < 1 || f->window > COLL_MAX_WINDOW)
        return err_set(MT_EX_CONFIG, "comm: window %d out of range (1..%d)", f->window,
                       COLL_MAX_WINDOW);
    if (f->max_inflight < 1 || f->max_inflight > 4096)
        return err_set(MT_EX_CONFIG, "comm: max_inflight %d out of range (1..4096)",
                       f->max_inflight);
    return 0;
}

/* Build a Comm over `dup` (owned from now on). */
static int create_on(MPI_Comm dup, const CommConf *conf, Comm **out)
{
    *out = NULL;
    CHECK_MPI(MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN));
    Comm *c = xcalloc(1, sizeof *c);
    MpiImpl *m = xcalloc(1, sizeof *m);
    c->ops = &MPI_OPS;
    c->impl = m;
    m->comm = dup;
    m->conf = *conf;
    CHECK_MPI(MPI_Comm_rank(dup, &c->rank));
    CHECK_MPI(MPI_Comm_size(dup, &c->size));
    if (gethostname(c->host, sizeof c->host) != 0) snprintf(c->host, sizeof c->host, "?");
    c->host[sizeof c->host - 1] = 0;
    MPI_Comm local;
    CHECK_MPI(MPI_Comm_split_type(dup, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &local));
    CHECK_MPI(MPI_Comm_rank(local, &c->local_rank));
    CHECK_MPI(MPI_Comm_size(local, &c->local_size));
    CHECK_MPI(MPI_Comm_free(&local));

    /* same conf everywhere: min and max of each value must agree */
    long long v[8] = {(long long)conf->segment_bytes, conf->window, conf->max_inflight,
                      (long long)conf->doubling_max_bytes};
    for (int i = 0; i < 4; i++) v[4 + i] = -v[i];
    CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, v, 8, MPI_LONG_LONG, MPI_MAX, dup));
    int rc = 0;
    for (int i = 0; i < 4 && !rc; i++)
        if (v[i] != -v[4 + i])
            rc = err_set(MT_EX_CONFIG,
                         "comm_create: ranks passed different CommConf values (field %d: %lld "
                         "vs %lld); every rank must use the same settings", i, -v[4 + i], v[i]);
    if (!rc) rc = conf_check(conf);
    if (rc) {
        CHECK_MPI(MPI_Comm_free(&m->comm));
        free(m);
        free(c);
        return rc;
    }

    void *ub = NULL;
    int flag = 0;
    CHECK_MPI(MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &ub, &flag));
    long tag_ub = flag ? *(int *)ub : 32767;
    m->seq_mod = (int)MT_MIN((tag_ub - COLL_TAG_BASE) / COLL_TAG_STEPS, 1L << 20);
    CHECK(m->seq_mod >= 64);
    m->icounts = xcalloc((size_t)c->size, sizeof(int));
    m->idispls = xcalloc((size_t)c->size, sizeof(int));
    pool_alloc(m, conf->max_inflight, c->size);
    g_ncomms++;
    *out = c;
    return 0;
}

int comm_create(Comm **out, const CommConf *conf)
{
    CommConf def;
    if (!conf) {
        comm_conf_default(&def);
        conf = &def;
    }
    *out = NULL;
    int init = 0, provided = 0;
    MPI_Initialized(&init);
    if (!init) {
        if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            return err_set(MT_EX_SOFTWARE, "comm_create: MPI_Init_thread failed; is this run "
                                           "under mpirun/srun with a working MPI?");
        g_own_mpi = 1;
    } else {
        MPI_Query_thread(&provided);
    }
    if (provided < MPI_THREAD_FUNNELED)
        return err_set(MT_EX_SOFTWARE,
                       "comm_create: MPI provides thread level %d, mpitrain needs "
                       "MPI_THREAD_FUNNELED; use an MPI built with thread support", provided);
    MPI_Comm dup;
    CHECK_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &dup));
    int rc = create_on(dup, conf, out);
    if (rc) return rc;
    log_set_rank((*out)->rank, (*out)->size);
    if (conf->install_abort_hook) set_abort_hook(abort_hook);
    return 0;
}

static int mpi_split(Comm *parent, int color, int key, Comm **out)
{
    MpiImpl *pm = impl_of(parent);
    CHECK(color >= 0);
    MPI_Comm sub;
    CHECK_MPI(MPI_Comm_split(pm->comm, color, key, &sub));
    return create_on(sub, &pm->conf, out);
}

static void mpi_destroy(Comm *c)
{
    MpiImpl *m = impl_of(c);
    CHECK(m->inflight == 0);
    CHECK_MPI(MPI_Comm_free(&m->comm));
    pool_free(m);
    free(m->icounts);
    free(m->idispls);
    free(m);
    free(c);
    if (--g_ncomms == 0 && g_own_mpi) {
        MPI_Finalize();
        g_own_mpi = 0;
    }
}

void comm_destroy(Comm *c)
{
    if (c) c->ops->destroy(c);
}
