/* exec_cpu.c — the CPU executor (exec.h, exec_cpu_ops): micro-batches on a thread pool,
 * the canonical tree sum of their gradients. */
#include "core/exec.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/gemm.h"
#include "core/loss.h"
#include "core/rng.h"

typedef struct {
    float **act;    /* act[l+1]: output of layer l (rows_cap, out_l); act[0] is the input */
    float **aux;    /* aux[l]: (rows_cap, aux_per_sample) or NULL */
    float *dbuf[2]; /* (rows_cap, max_width) ping-pong gradients of activations */
    float *scratch; /* layers' own scratch (layer_scratch_floats, the largest) */
    size_t scratch_n;
} ThreadBufs;

typedef enum { JOB_NONE, JOB_TRAIN, JOB_EVAL, JOB_RANGE, JOB_EXIT } JobKind;

/* The layer-wise path (models of dense layers only): the step's rt = nmb * R rows go
 * through each layer at once, the work of a layer split across the threads by output
 * rows or columns, a barrier between phases.  gemm.h makes this legal: an element's
 * bits do not depend on how rows and columns are cut into calls, so only the sums over
 * samples (dW, db) must keep the micro-batch boundaries and the tree, and they do
 * (gemm_f32_tree; the db tree below).  Each weight matrix is read once per step instead
 * of once per micro-batch, and dW is formed tile by tile without per-micro-batch slabs. */
typedef struct {
    float **t;      /* t[0] (in, rt): the input transposed; t[l+1] (out_l, rt): layer l's output transposed */
    float **act;    /* act[l+1] (rt, out_l); act[0] = the caller's input */
    float **aux;    /* aux[l] (rt, out_l) for gelu (pre-activation), else NULL */
    float *dy[2];   /* (rt, max_width) */
    float *dbm;     /* (nmb, max_width) per-micro-batch bias sums */
    float **dbl;    /* (nmb) dbm's rows: the leaves of their tree_sum */
    atomic_int *ctr;   /* (nphase) work items claimed, per phase of the step */
    _Atomic uint64_t *seg; /* (nlayers, threads) forward items of thread t's segment still
                              to take: front in the low 32 bits, back in the high */
    atomic_int *dx_done; /* (nlayers) dx items finished */
    int nphase;
    atomic_int bar_count;
    atomic_uint bar_gen;
} LayerWise;

#define LW_FW_ROWS 24  /* output rows per forward item */
#define LW_FW_UNIT 12  /* ... taken by another thread than the owner: half an item */
#define LW_DW_ROWS 24  /* dW rows per item */
#define LW_DX_COLS 64  /* dx columns per item, and activation-gradient columns per item */

struct Exec {
    ExecBase base;        /* exec_cpu_ops */
    Device *dev;          /* where the activations live (the host: "cpu") */
    const Model *m;
    ExecConf c;
    int rows_cap;
    int lw;               /* 1: the layer-wise path (see LayerWise) */
    int oversub;          /* more threads than CPUs this process may use: yield, not spin */
    int rt;               /* nmb * mb_rows */
    LayerWise w;
    ThreadBufs *tb;       /* (threads) */
    int pair;             /* 1: micro-batches 2u and 2u+1 share a gradient slab, the second
                             accumulated onto the first (gemm_f32 adds each finished element
                             with one rounding: the bits of a separate slab plus an add) */
    int nleaf;            /* gradient slabs summed by the tree: nmb, or nmb/2 with pairs */
    float **gbuf;         /* (nleaf) gradient slabs; NULL when nleaf == 1 (grads is used) */
    size_t *llo, *lhi;    /* (nlayers) parameter range of layer l ([0,0) if none) */
    pthread_t *th;        /* (threads - 1) */
    pthread_mutex_t mu;
    pthread_cond_t cv_start, cv_done;
    uint64_t gen;
    int nrunning;
    /* the current job */
    JobKind job;
    const float *params, *x; /* x: the step's input floats (xbuf when they come as bytes) */
    const uint8_t *x8;        /* the step's input as stored bytes (ExecInput), or NULL */
    const float *x8_table;
    float *xbuf;              /* (rt, in_dim) x8 normalised, row by row by the thread that
                                 first reads the row; allocated by the first byte input */
    const int32_t *y;
    uint64_t seed, step;
    int mb0;
    float grad_scale;
    float *grads;
    double *mb_loss;
    int64_t *mb_correct;  /* (max(nmb, chunks)) */
    int n_rows, chunk_rows, nchunks;
    double *chunk_loss;
    int64_t *chunk_correct;
    size_t chunk_cap;
    ExecRangeFn chunk_fn;     /* called on each final chunk of the summed gradient */
    void *chunk_arg;
    ExecRangeFn range_fn;     /* JOB_RANGE */
    void *range_arg;
    size_t range_n;
    atomic_int *layer_count;  /* (nlayers) micro-batches done with layer l's backward */
    atomic_int *layer_ready;  /* (nlayers) 1 when layer l's range is summed into grads */
    atomic_int *sum_open;     /* (nlayers) 1 once every micro-batch finished layer l */
    atomic_int *sum_next;     /* (nlayers) next chunk of layer l's tree sum to claim */
    atomic_int *sum_done;     /* (nlayers) chunks of layer l summed */
    int *sum_nchunks;         /* (nlayers) chunks of SUM_CHUNK floats in layer l's range */
    pthread_mutex_t sum_mu;   /* idle threads sleep on sum_cv until a layer opens */
    pthread_cond_t sum_cv;
    atomic_uint sum_gen;
};

/* The tree sum of a layer's range is cut into chunks that any idle thread may claim, so
 * the sum of the largest layer (usually the first, summed last) is not left to one. */
#define SUM_CHUNK 32768

typedef struct {
    Exec *e;
    int tid;
} WorkerArg;

/* Waiting between the jobs of a step: spin briefly before sleeping.  Waking a thread
 * that sleeps on a futex costs tens of microseconds on these virtual machines, several
 * times per step; the gaps between jobs are usually shorter than the spin. */
#define SPIN_S 200e-6

/* Tensor buffers (activations, gradients, scratch) come from the device */
static void *dalloc(Exec *e, size_t bytes) { return device_alloc(e->dev, bytes); }
static void dfree(Exec *e, void *p) { device_free(e->dev, p); }

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Spin until *p != v (a 64-bit or int counter read atomically) or the budget is spent. */
static void spin_while_u64(const uint64_t *p, uint64_t v)
{
    double t0 = now_s();
    for (int i = 0; __atomic_load_n(p, __ATOMIC_ACQUIRE) == v; i++) {
        cpu_relax();
        if ((i & 63) == 63 && now_s() - t0 > SPIN_S) return;
    }
}

static void spin_while_int_pos(const int *p)
{
    double t0 = now_s();
    for (int i = 0; __atomic_load_n(p, __ATOMIC_ACQUIRE) > 0; i++) {
        cpu_relax();
        if ((i & 63) == 63 && now_s() - t0 > SPIN_S) return;
    }
}

static float *grad_slab(Exec *e, int k)
{
    int leaf = e->pair ? k / 2 : k;
    return e->gbuf ? e->gbuf[leaf] : e->grads;
}

/* Rows [r0, r0 + n) of a byte input (ExecInput.x8) normalised into xbuf; nothing for
 * float input.  One table load per element: the bits of the loader's floats. */
static void input_rows(Exec *e, int r0, int n)
{
    if (!e->x8) return;
    const size_t d = (size_t)e->m->in_dim;
    const uint8_t *s = e->x8 + (size_t)r0 * d;
    float *o = e->xbuf + (size_t)r0 * d;
    const float *tab = e->x8_table;
    for (size_t i = 0; i < (size_t)n * d; i++) o[i] = tab[s[i]];
}

/* dst[i] = a[i] + b[i], i in [lo, hi) (dst may be a): 8 lanes at a time in gcc's vector
 * type (dst may alias a, so the loop is not left to the vectoriser, which left it scalar),
 * one IEEE addition per element either way */
typedef float v8f __attribute__((vector_size(32)));
MT_VEC static void add_range(float *dst, const float *a, const float *b, size_t lo, size_t hi)
{
    size_t i = lo;
    for (; i + 8 <= hi; i += 8) {
        v8f x, y;
        memcpy(&x, a + i, sizeof x);
        memcpy(&y, b + i, sizeof y);
        x = x + y;
        memcpy(dst + i, &x, sizeof x);
    }
    for (; i < hi; i++) dst[i] = a[i] + b[i];
}

/* dst[plo, phi) = T(lo, hi) over leaf[lo .. hi) (canonical tree; the leaves' [plo, phi)
 * are overwritten on the way): the micro-batch gradient slabs, or layer-wise the
 * per-micro-batch bias sums. */
static void tree_sum(float *const *leaf, int lo, int hi, size_t plo, size_t phi, float *dst)
{
    if (hi - lo == 1) {
        if (dst != leaf[lo]) memcpy(dst + plo, leaf[lo] + plo, (phi - plo) * sizeof(float));
        return;
    }
    int mid = tree_mid(lo, hi);
    tree_sum(leaf, lo, mid, plo, phi, leaf[lo]);
    tree_sum(leaf, mid, hi, plo, phi, leaf[mid]);
    add_range(dst, leaf[lo], leaf[mid], plo, phi);
}

static void forward_rows(Exec *e, ThreadBufs *tb, const float *x, int rows, int train,
                         uint64_t sample0)
{
    const Model *m = e->m;
    LayerCtx ctx = {.seed = e->seed, .step = e->step, .sample0 = sample0, .train = train,
                    .scratch = tb->scratch, .scratch_n = tb->scratch_n};
    tb->act[0] = (float *)x;
    for (int l = 0; l < m->nlayers; l++) {
        const Layer *L = &m->layers[l];
        L->ops->forward(L, e->params, tb->act[l], tb->act[l + 1], tb->aux[l], rows, &ctx);
    }
}

/* Driver: report newly summed layers in backward order, then let the caller poll. */
typedef struct {
    ExecReadyFn ready;
    ExecPollFn poll;
    void *arg;
    int next;  /* next layer to report (counts down) */
} Driver;

static void driver_check(Exec *e, Driver *d)
{
    while (d->next >= 0) {
        int l = d->next;
        if (e->llo[l] == e->lhi[l]) { d->next--; continue; }
        if (!atomic_load_explicit(&e->layer_ready[l], memory_order_acquire)) break;
        if (d->ready) d->ready(d->arg, e->llo[l], e->lhi[l]);
        d->next--;
    }
    if (d->poll) d->poll(d->arg);
}

/* Claim and sum chunks of layer l's range until none is left. */
static void help_sum(Exec *e, int l, Driver *d)
{
    for (;;) {
        int j = atomic_fetch_add_explicit(&e->sum_next[l], 1, memory_order_acq_rel);
        if (j >= e->sum_nchunks[l]) return;
        size_t lo = e->llo[l] + (size_t)j * SUM_CHUNK;
        size_t hi = MT_MIN(lo + SUM_CHUNK, e->lhi[l]);
        if (e->gbuf) tree_sum(e->gbuf, 0, e->nleaf, lo, hi, e->grads);
        if (e->chunk_fn) e->chunk_fn(e->chunk_arg, lo, hi);
        int done = atomic_fetch_add_explicit(&e->sum_done[l], 1, memory_order_acq_rel) + 1;
        if (done == e->sum_nchunks[l]) atomic_store_explicit(&e->layer_ready[l], 1, memory_order_release);
        if (d) driver_check(e, d);
    }
}

/* After its micro-batches: help with the tree sums until every layer's sum is claimed. */
static void help_all(Exec *e, Driver *d)
{
    const Model *m = e->m;
    for (;;) {
        unsigned gen = atomic_load_explicit(&e->sum_gen, memory_order_acquire);
        int pending = 0, helped = 0;
        for (int l = m->nlayers - 1; l >= 0; l--) {
            if (e->llo[l] == e->lhi[l]) continue;
            if (atomic_load_explicit(&e->sum_next[l], memory_order_acquire) >= e->sum_nchunks[l]) continue;
            if (!atomic_load_explicit(&e->sum_open[l], memory_order_acquire)) {
                pending = 1;
                continue;
            }
            help_sum(e, l, d);
            helped = 1;
        }
        if (!pending) return;
        if (helped) continue;
        if (d && (d->ready || d->poll)) {
            /* the driver keeps communication progressing while it waits */
            driver_check(e, d);
            sched_yield();
        } else {
            double t0 = now_s();
            for (int i = 0; atomic_load_explicit(&e->sum_gen, memory_order_acquire) == gen; i++) {
                cpu_relax();
                if ((i & 63) == 63 && now_s() - t0 > SPIN_S) break;
            }
            pthread_mutex_lock(&e->sum_mu);
            while (atomic_load_explicit(&e->sum_gen, memory_order_acquire) == gen)
                pthread_cond_wait(&e->sum_cv, &e->sum_mu);
            pthread_mutex_unlock(&e->sum_mu);
        }
    }
}

static void train_mb(Exec *e, ThreadBufs *tb, int k, Driver *d)
{
    const Model *m = e->m;
    const int R = e->c.mb_rows;
    input_rows(e, k * R, R);
    const float *x = e->x + (size_t)k * R * m->in_dim;
    const int32_t *y = e->y + (size_t)k * R;
    uint64_t sample0 = (uint64_t)(e->mb0 + k) * (uint64_t)R;
    forward_rows(e, tb, x, R, 1, sample0);
    if (d) driver_check(e, d);

    int L = m->nlayers;
    float *dy = tb->dbuf[0], *dx = tb->dbuf[1];
    int64_t corr = 0;
    e->mb_loss[k] = loss_softmax_xent(tb->act[L], y, R, m->num_classes, e->grad_scale, dy, &corr);
    e->mb_correct[k] = corr;
    LayerCtx ctx = {.seed = e->seed, .step = e->step, .sample0 = sample0, .train = 1,
                    .accumulate = e->pair && (k & 1), .scratch = tb->scratch,
                    .scratch_n = tb->scratch_n};
    float *g = grad_slab(e, k);
    for (int l = L - 1; l >= 0; l--) {
        const Layer *ly = &m->layers[l];
        float *dxl = l > 0 ? dx : NULL;
        ly->ops->backward(ly, e->params, tb->act[l], tb->act[l + 1], tb->aux[l], dy, dxl, g, R,
                          &ctx);
        if (e->llo[l] != e->lhi[l]) {
            int done = atomic_fetch_add_explicit(&e->layer_count[l], 1, memory_order_acq_rel) + 1;
            if (done == e->c.nmb) {
                if (e->gbuf || e->chunk_fn) {
                    atomic_store_explicit(&e->sum_open[l], 1, memory_order_release);
                    pthread_mutex_lock(&e->sum_mu);
                    atomic_fetch_add_explicit(&e->sum_gen, 1, memory_order_acq_rel);
                    pthread_cond_broadcast(&e->sum_cv);
                    pthread_mutex_unlock(&e->sum_mu);
                    help_sum(e, l, d);
                } else {
                    atomic_store_explicit(&e->layer_ready[l], 1, memory_order_release);
                }
            }
        }
        if (d) driver_check(e, d);
        float *t = dy; dy = dx; dx = t;
    }
}

static void eval_chunk(Exec *e, ThreadBufs *tb, int j)
{
    const Model *m = e->m;
    int r0 = j * e->chunk_rows;
    int rows = MT_MIN(e->chunk_rows, e->n_rows - r0);
    forward_rows(e, tb, e->x + (size_t)r0 * m->in_dim, rows, 0, (uint64_t)r0);
    int64_t corr = 0;
    e->chunk_loss[j] = loss_softmax_xent_eval(tb->act[m->nlayers], e->y + r0, rows,
                                              m->num_classes, &corr);
    e->chunk_correct[j] = corr;
}

/* ---------------------------------------------------------------- layer-wise path */

/* All threads of the job meet here; thread 0 keeps driving communication meanwhile. */
static void lw_barrier(Exec *e, Driver *d)
{
    int T = e->c.threads;
    if (T == 1) {
        if (d) driver_check(e, d);
        return;
    }
    unsigned gen = atomic_load_explicit(&e->w.bar_gen, memory_order_acquire);
    if (atomic_fetch_add_explicit(&e->w.bar_count, 1, memory_order_acq_rel) + 1 == T) {
        atomic_store_explicit(&e->w.bar_count, 0, memory_order_relaxed);
        atomic_fetch_add_explicit(&e->w.bar_gen, 1, memory_order_acq_rel);
        if (d) driver_check(e, d);
        return;
    }
    double t0 = now_s();
    for (int i = 0; atomic_load_explicit(&e->w.bar_gen, memory_order_acquire) == gen; i++) {
        cpu_relax();
        if ((i & 255) == 255) {
            if (d) driver_check(e, d);
            /* a waiting thread may hold the core of the one being waited for */
            if (e->oversub || now_s() - t0 > SPIN_S) sched_yield();
        }
    }
}

/* Claim the next work item of phase ph (items are handed out in order). */
static int lw_claim(Exec *e, int ph) { return atomic_fetch_add_explicit(&e->w.ctr[ph], 1, memory_order_acq_rel); }

/* Forward work of layer l for thread tid: the first of *n units of LW_FW_UNIT output rows,
 * or -1 when none is left.  The units are cut into one contiguous segment per thread,
 * taken front to back by their owner two at a time (items of LW_FW_ROWS rows); a thread
 * whose segment is empty takes the last unit of another's, one at a time, so the
 * threads finish the layer at most half an item apart.  Neighbouring items — whose
 * transposed outputs share cache lines (24 floats are 1.5 lines) — mostly go to the
 * same thread, where handing items out in order gave every other item to the other
 * thread. */
static int lw_claim_fw(Exec *e, int l, int tid, int *n)
{
    const int T = e->c.threads;
    for (int k = 0; k < T; k++) {
        int t = (tid + k) % T;
        _Atomic uint64_t *q = &e->w.seg[(size_t)l * T + t];
        uint64_t v = atomic_load_explicit(q, memory_order_acquire);
        for (;;) {
            uint32_t f = (uint32_t)v, b = (uint32_t)(v >> 32);
            if (f >= b) break;
            uint32_t take = k == 0 && b - f >= 2 ? 2 : 1;
            uint64_t nv = k == 0 ? ((uint64_t)b << 32) | (f + take) : ((uint64_t)(b - 1) << 32) | f;
            if (atomic_compare_exchange_weak_explicit(q, &v, nv, memory_order_acq_rel,
                                                      memory_order_acquire)) {
                *n = (int)take;
                return k == 0 ? (int)f : (int)(b - 1);
            }
        }
    }
    return -1;
}

/* Columns [c0, c1) of layer l's output gradient dy (rt, out): dy *= act'(y); the bias
 * gradient of each micro-batch (rows in order), then their tree into grads. */
static void lw_act_grad_cols(Exec *e, int l, float *dy, int c0, int c1)
{
    const Layer *ly = &e->m->layers[l];
    const int out = ly->out, R = e->c.mb_rows, nmb = e->c.nmb;
    LayerWise *w = &e->w;
    for (int k = 0; k < nmb; k++) {
        size_t o = (size_t)k * R * out;
        dense_lw_act_grad(ly, dy + o, w->act[l + 1] + o, w->aux[l] ? w->aux[l] + o : NULL, R, c0,
                          c1, w->dbl[k]);
    }
    tree_sum(w->dbl, 0, nmb, (size_t)c0, (size_t)c1, e->grads + ly->params[1].off);
}

static void train_lw(Exec *e, int tid, Driver *d)
{
    const Model *m = e->m;
    const int L = m->nlayers, R = e->c.mb_rows, nmb = e->c.nmb, rt = e->rt;
    const int T = e->c.threads;
    LayerWise *w = &e->w;
    int ph = 0;
    w->act[0] = (float *)e->x;
    /* the input, transposed: blocks of 16 rows */
    for (int r0 = 16 * tid; r0 < rt; r0 += 16 * T) {
        input_rows(e, r0, MT_MIN(16, rt - r0));
        gemm_transpose(MT_MIN(16, rt - r0), m->in_dim, e->x + (size_t)r0 * m->in_dim, m->in_dim,
                       w->t[0] + r0, rt);
    }
    lw_barrier(e, d);
    for (int l = 0; l < L; l++, ph++) {
        const Layer *ly = &m->layers[l];
        for (int i, n; (i = lw_claim_fw(e, l, tid, &n)) >= 0;) {
            int o0 = i * LW_FW_UNIT, o1 = MT_MIN(ly->out, o0 + n * LW_FW_UNIT);
            dense_lw_forward(ly, e->params, w->t[l], w->t[l + 1], w->act[l + 1], w->aux[l], rt, o0, o1);
            if (d) driver_check(e, d);
        }
        lw_barrier(e, d);
    }
    /* the loss, per micro-batch */
    const int C = m->num_classes;
    for (int k = tid; k < nmb; k += T) {
        int64_t corr = 0;
        e->mb_loss[k] = loss_softmax_xent(w->act[L] + (size_t)k * R * C, e->y + (size_t)k * R, R, C,
                                          e->grad_scale, w->dy[0] + (size_t)k * R * C, &corr);
        e->mb_correct[k] = corr;
    }
    lw_barrier(e, d);
    float *dy = w->dy[0], *dx = w->dy[1];
    for (int l = L - 1; l >= 0; l--) {
        const Layer *ly = &m->layers[l];
        const int out = ly->out, in = ly->in;
        /* A (the top layer only; below, each dx strip does it for its columns): dy *=
         * act', the bias gradient per micro-batch, then its tree */
        if (l == L - 1) {
            int na = (out + LW_DX_COLS - 1) / LW_DX_COLS;
            for (int i; (i = lw_claim(e, ph)) < na;) {
                int c0 = i * LW_DX_COLS, c1 = MT_MIN(out, c0 + LW_DX_COLS);
                lw_act_grad_cols(e, l, dy, c0, c1);
            }
            ph++;
            lw_barrier(e, d);
        }
        /* B: dx column strips first, then dW row tiles (tree over micro-batches).  A dW
         * tile's optimizer update (chunk hook) waits until every dx strip, which reads W,
         * is finished. */
        int ndx = l > 0 ? (in + LW_DX_COLS - 1) / LW_DX_COLS : 0;
        int ndw = (out + LW_DW_ROWS - 1) / LW_DW_ROWS;
        size_t woff = ly->params[0].off;
        for (int i; (i = lw_claim(e, ph)) < ndx + ndw;) {
            if (i < ndx) {
                int c0 = i * LW_DX_COLS, c1 = MT_MIN(in, c0 + LW_DX_COLS);
                dense_lw_dx(ly, e->params, dy, dx, rt, c0, c1);
                atomic_fetch_add_explicit(&w->dx_done[l], 1, memory_order_acq_rel);
                lw_act_grad_cols(e, l - 1, dx, c0, c1); /* the layer below's step A */
            } else {
                int o0 = (i - ndx) * LW_DW_ROWS, o1 = MT_MIN(out, o0 + LW_DW_ROWS);
                dense_lw_dw(ly, dy, w->act[l], e->grads, R, nmb, o0, o1);
                if (e->chunk_fn) {
                    while (atomic_load_explicit(&w->dx_done[l], memory_order_acquire) < ndx) {
                        if (e->oversub) sched_yield();
                        else cpu_relax();
                    }
                    e->chunk_fn(e->chunk_arg, woff + (size_t)o0 * in, woff + (size_t)o1 * in);
                }
            }
            if (d) driver_check(e, d);
        }
        ph++;
        lw_barrier(e, d);
        if (tid == 0) {
            /* the rest of the layer's range: bias and padding */
            if (e->chunk_fn) {
                size_t wend = woff + (size_t)out * in;
                if (e->llo[l] < woff) e->chunk_fn(e->chunk_arg, e->llo[l], woff);
                if (wend < e->lhi[l]) e->chunk_fn(e->chunk_arg, wend, e->lhi[l]);
            }
            atomic_store_explicit(&e->layer_ready[l], 1, memory_order_release);
            if (d) driver_check(e, d);
        }
        float *t = dy;
        dy = dx;
        dx = t;
    }
    CHECK(ph <= w->nphase);
}

static void run_job(Exec *e, int tid, Driver *d)
{
    int T = e->c.threads;
    if (e->job == JOB_TRAIN && e->lw) {
        train_lw(e, tid, d);
    } else if (e->job == JOB_TRAIN) {
        if (e->pair) {
            /* unit u = micro-batches 2u, 2u+1 on one thread, in that order */
            for (int u = tid; 2 * u < e->c.nmb; u += T) {
                train_mb(e, &e->tb[tid], 2 * u, d);
                train_mb(e, &e->tb[tid], 2 * u + 1, d);
            }
        } else {
            for (int k = tid; k < e->c.nmb; k += T) train_mb(e, &e->tb[tid], k, d);
        }
        if (e->gbuf || e->chunk_fn) help_all(e, d);
    } else if (e->job == JOB_RANGE) {
        /* contiguous parts, cut at multiples of 64 elements (cache lines) */
        size_t n = e->range_n, per = (n / T + 63) / 64 * 64;
        size_t lo = MT_MIN(n, (size_t)tid * per), hi = MT_MIN(n, lo + per);
        if (hi > lo) e->range_fn(e->range_arg, lo, hi);
    } else if (e->job == JOB_EVAL) {
        for (int j = tid; j < e->nchunks; j += T) eval_chunk(e, &e->tb[tid], j);
    }
}

static void *worker_main(void *p)
{
    WorkerArg *wa = p;
    Exec *e = wa->e;
    int tid = wa->tid;
    free(wa);
    uint64_t seen = 0;
    for (;;) {
        spin_while_u64(&e->gen, seen);
        pthread_mutex_lock(&e->mu);
        while (e->gen == seen) pthread_cond_wait(&e->cv_start, &e->mu);
        seen = e->gen;
        JobKind job = e->job;
        pthread_mutex_unlock(&e->mu);
        if (job == JOB_EXIT) return NULL;
        run_job(e, tid, NULL);
        pthread_mutex_lock(&e->mu);
        if (__atomic_sub_fetch(&e->nrunning, 1, __ATOMIC_ACQ_REL) == 0)
            pthread_cond_broadcast(&e->cv_done);
        pthread_mutex_unlock(&e->mu);
    }
}

static void alloc_thread_bufs(Exec *e, ThreadBufs *tb)
{
    const Model *m = e->m;
    tb->act = xcalloc(m->nlayers + 1, sizeof(float *));
    tb->aux = xcalloc(m->nlayers, sizeof(float *));
    for (int l = 0; l < m->nlayers; l++) {
        const Layer *L = &m->layers[l];
        tb->act[l + 1] = dalloc(e, (size_t)e->rows_cap * L->out * sizeof(float));
        if (L->aux_per_sample)
            tb->aux[l] = dalloc(e, (size_t)e->rows_cap * L->aux_per_sample * sizeof(float));
    }
    size_t w = MT_MAX(m->max_width, (size_t)m->in_dim);
    for (int i = 0; i < 2; i++) tb->dbuf[i] = dalloc(e, (size_t)e->rows_cap * w * sizeof(float));
    tb->scratch_n = 0;
    for (int l = 0; l < m->nlayers; l++)
        tb->scratch_n = MT_MAX(tb->scratch_n, layer_scratch_floats(&m->layers[l], e->rows_cap));
    tb->scratch = tb->scratch_n ? dalloc(e, tb->scratch_n * sizeof(float)) : NULL;
}

static int cpu_pairs(const Exec *e) { return e->pair; }

static int cpu_layerwise(const Exec *e) { return e->lw; }

static Exec *cpu_create(const Model *m, const ExecConf *c, Device *dev)
{
    CHECK(c->threads >= 1 && c->mb_rows >= 1 && c->nmb >= 1);
    Exec *e = xcalloc(1, sizeof *e);
    static Device host = {.ops = &device_cpu_ops}; /* ExecConf.dev NULL: the host */
    e->base.ops = &exec_cpu_ops;
    e->dev = dev ? dev : &host;
    e->m = m;
    e->c = *c;
    e->rows_cap = MT_MAX(c->mb_rows, 256);
    e->tb = xcalloc(c->threads, sizeof(ThreadBufs));
    for (int t = 0; t < c->threads; t++) alloc_thread_bufs(e, &e->tb[t]);
    e->lw = !c->per_mb && m->nlayers > 0;
    for (int l = 0; l < m->nlayers; l++)
        if (!m->layers[l].ops->layerwise) e->lw = 0;
    /* per micro-batch: pairs need a power-of-two count (so every leaf pair (2u, 2u+1) is
     * a subtree of the canonical tree) and enough pairs for the threads; the layer-wise
     * path has no per-micro-batch slabs */
    int pow2 = (c->nmb & (c->nmb - 1)) == 0;
    e->pair = !e->lw && c->nmb >= 2 && pow2 && c->nmb / 2 >= c->threads;
    e->nleaf = e->lw ? 1 : e->pair ? c->nmb / 2 : c->nmb;
    if (e->nleaf > 1) {
        e->gbuf = xcalloc(e->nleaf, sizeof(float *));
        for (int k = 0; k < e->nleaf; k++) e->gbuf[k] = dalloc(e, m->nparams * sizeof(float));
    }
    e->llo = xcalloc(m->nlayers, sizeof(size_t));
    e->lhi = xcalloc(m->nlayers, sizeof(size_t));
    /* A layer's range runs from its first parameter to the next parametrised layer's
     * first parameter (or the slab's end): ranges tile the slab, padding included. */
    int prev = -1;
    for (int l = 0; l < m->nlayers; l++) {
        if (m->layers[l].nparams == 0) continue;
        e->llo[l] = m->layers[l].params[0].off;
        if (prev >= 0) e->lhi[prev] = e->llo[l];
        else e->llo[l] = 0;
        prev = l;
    }
    if (prev >= 0) e->lhi[prev] = m->nparams;
    cpu_set_t cs;
    e->oversub = sched_getaffinity(0, sizeof cs, &cs) == 0 && c->threads > CPU_COUNT(&cs);
    e->rt = c->nmb * c->mb_rows;
    if (e->lw) {
        LayerWise *w = &e->w;
        int L = m->nlayers;
        w->t = xcalloc(L + 1, sizeof(float *));
        w->act = xcalloc(L + 1, sizeof(float *));
        w->aux = xcalloc(L, sizeof(float *));
        w->t[0] = dalloc(e, (size_t)e->rt * m->in_dim * sizeof(float));
        for (int l = 0; l < L; l++) {
            size_t n = (size_t)e->rt * m->layers[l].out;
            w->t[l + 1] = dalloc(e, n * sizeof(float));
            w->act[l + 1] = dalloc(e, n * sizeof(float));
            if (m->layers[l].act == ACT_GELU) w->aux[l] = dalloc(e, n * sizeof(float));
        }
        size_t wd = MT_MAX(m->max_width, (size_t)m->in_dim);
        for (int i = 0; i < 2; i++) w->dy[i] = dalloc(e, (size_t)e->rt * wd * sizeof(float));
        w->dbm = dalloc(e, (size_t)c->nmb * wd * sizeof(float));
        w->nphase = 2 * L + 2;
        w->ctr = xcalloc(w->nphase, sizeof(atomic_int));
        w->seg = xcalloc((size_t)L * c->threads, sizeof(*w->seg));
        w->dx_done = xcalloc(L, sizeof(atomic_int));
        w->dbl = xcalloc(c->nmb, sizeof(float *));
        for (int k = 0; k < c->nmb; k++) w->dbl[k] = w->dbm + (size_t)k * wd;
    }
    e->layer_count = xcalloc(m->nlayers, sizeof(atomic_int));
    e->layer_ready = xcalloc(m->nlayers, sizeof(atomic_int));
    e->sum_open = xcalloc(m->nlayers, sizeof(atomic_int));
    e->sum_next = xcalloc(m->nlayers, sizeof(atomic_int));
    e->sum_done = xcalloc(m->nlayers, sizeof(atomic_int));
    e->sum_nchunks = xcalloc(m->nlayers, sizeof(int));
    for (int l = 0; l < m->nlayers; l++)
        e->sum_nchunks[l] = (int)((e->lhi[l] - e->llo[l] + SUM_CHUNK - 1) / SUM_CHUNK);
    e->mb_correct = xcalloc(c->nmb, sizeof(int64_t));
    pthread_mutex_init(&e->mu, NULL);
    pthread_mutex_init(&e->sum_mu, NULL);
    pthread_cond_init(&e->sum_cv, NULL);
    pthread_cond_init(&e->cv_start, NULL);
    pthread_cond_init(&e->cv_done, NULL);
    if (c->threads > 1) {
        e->th = xcalloc(c->threads - 1, sizeof(pthread_t));
        for (int t = 1; t < c->threads; t++) {
            WorkerArg *wa = xmalloc(sizeof *wa);
            wa->e = e;
            wa->tid = t;
            if (pthread_create(&e->th[t - 1], NULL, worker_main, wa) != 0)
                fatal(MT_EX_OSERR, "cannot start worker thread %d of %d", t, c->threads);
            char name[32];
            snprintf(name, sizeof name, "mt-compute%d", t % 100000);
            name[15] = 0;
            pthread_setname_np(e->th[t - 1], name); /* named for top/perf/gdb */
        }
    }
    return e;
}

/* Run the current job on all threads; the caller is thread 0 (the driver). */
static void run_all(Exec *e, Driver *d)
{
    if (e->c.threads > 1) {
        pthread_mutex_lock(&e->mu);
        __atomic_store_n(&e->nrunning, e->c.threads - 1, __ATOMIC_RELEASE);
        __atomic_store_n(&e->gen, e->gen + 1, __ATOMIC_RELEASE);
        pthread_cond_broadcast(&e->cv_start);
        pthread_mutex_unlock(&e->mu);
    }
    run_job(e, 0, d);
    if (e->c.threads > 1) {
        if (d && (d->ready || d->poll)) {
            /* keep reporting finished layers and progressing communication */
            for (;;) {
                driver_check(e, d);
                pthread_mutex_lock(&e->mu);
                int left = e->nrunning;
                pthread_mutex_unlock(&e->mu);
                if (left == 0) break;
                sched_yield();
            }
        } else {
            spin_while_int_pos(&e->nrunning);
            pthread_mutex_lock(&e->mu);
            while (e->nrunning > 0) pthread_cond_wait(&e->cv_done, &e->mu);
            pthread_mutex_unlock(&e->mu);
        }
    }
    if (d) driver_check(e, d);
}

static void cpu_train(Exec *e, const float *params, ExecInput x, const int32_t *y,
                uint64_t seed, uint64_t step, int mb0, float grad_scale, float *grads,
                double *mb_loss, int64_t *correct, ExecReadyFn ready, ExecPollFn poll,
                void *arg)
{
    const Model *m = e->m;
    e->job = JOB_TRAIN;
    e->params = params;
    e->x8 = x.x8;
    e->x8_table = x.x8_table;
    if (x.x8 && !e->xbuf) e->xbuf = dalloc(e, (size_t)e->rt * m->in_dim * sizeof(float));
    e->x = x.x8 ? e->xbuf : x.x;
    CHECK(e->x && (!x.x8 || x.x8_table));
    e->y = y;
    e->seed = seed;
    e->step = step;
    e->mb0 = mb0;
    e->grad_scale = grad_scale;
    e->grads = grads;
    e->mb_loss = mb_loss;
    for (int l = 0; l < m->nlayers; l++) {
        atomic_store(&e->layer_count[l], 0);
        atomic_store(&e->layer_ready[l], 0);
        atomic_store(&e->sum_open[l], 0);
        atomic_store(&e->sum_next[l], 0);
        atomic_store(&e->sum_done[l], 0);
        if (e->lw) atomic_store(&e->w.dx_done[l], 0);
    }
    for (int p = 0; e->lw && p < e->w.nphase; p++) atomic_store(&e->w.ctr[p], 0);
    for (int l = 0; e->lw && l < m->nlayers; l++) {
        const int T = e->c.threads, n = (m->layers[l].out + LW_FW_UNIT - 1) / LW_FW_UNIT;
        for (int t = 0; t < T; t++) {
            uint64_t lo = (uint64_t)n * t / T, hi = (uint64_t)n * (t + 1) / T;
            atomic_store(&e->w.seg[(size_t)l * T + t], (hi << 32) | lo);
        }
    }
    Driver d = {.ready = ready, .poll = poll, .arg = arg, .next = m->nlayers - 1};
    run_all(e, &d);
    CHECK(d.next < 0);
    if (correct) {
        int64_t s = 0;
        for (int k = 0; k < e->c.nmb; k++) s += e->mb_correct[k];
        *correct = s;
    }
}

static void cpu_set_chunk_hook(Exec *e, ExecRangeFn fn, void *arg)
{
    e->chunk_fn = fn;
    e->chunk_arg = arg;
}

static void cpu_parallel_range(Exec *e, size_t n, ExecRangeFn fn, void *arg)
{
    if (e->c.threads == 1 || n < 4096) {
        if (n) fn(arg, 0, n);
        return;
    }
    e->job = JOB_RANGE;
    e->range_fn = fn;
    e->range_arg = arg;
    e->range_n = n;
    run_all(e, NULL);
}

static void cpu_eval(Exec *e, const float *params, const float *x, const int32_t *y, int n,
               int chunk_rows, double *chunk_loss, int64_t *chunk_correct)
{
    CHECK(chunk_rows >= 1 && chunk_rows <= e->rows_cap);
    e->job = JOB_EVAL;
    e->params = params;
    e->x8 = NULL;
    e->x = x;
    e->y = y;
    e->n_rows = n;
    e->chunk_rows = chunk_rows;
    e->nchunks = (n + chunk_rows - 1) / chunk_rows;
    e->chunk_loss = chunk_loss;
    e->chunk_correct = chunk_correct;
    run_all(e, NULL);
}

static void cpu_destroy(Exec *e)
{
    if (!e) return;
    if (e->c.threads > 1) {
        pthread_mutex_lock(&e->mu);
        e->job = JOB_EXIT;
        __atomic_store_n(&e->gen, e->gen + 1, __ATOMIC_RELEASE);
        pthread_cond_broadcast(&e->cv_start);
        pthread_mutex_unlock(&e->mu);
        for (int t = 1; t < e->c.threads; t++) pthread_join(e->th[t - 1], NULL);
        free(e->th);
    }
    const Model *m = e->m;
    for (int t = 0; t < e->c.threads; t++) {
        ThreadBufs *tb = &e->tb[t];
        for (int l = 0; l < m->nlayers; l++) {
            dfree(e, tb->act[l + 1]);
            dfree(e, tb->aux[l]);
        }
        free(tb->act);
        free(tb->aux);
        dfree(e, tb->dbuf[0]);
        dfree(e, tb->dbuf[1]);
        dfree(e, tb->scratch);
    }
    free(e->tb);
    if (e->gbuf) {
        for (int k = 0; k < e->nleaf; k++) dfree(e, e->gbuf[k]);
        free(e->gbuf);
    }
    pthread_mutex_destroy(&e->sum_mu);
    pthread_cond_destroy(&e->sum_cv);
    if (e->lw) {
        LayerWise *w = &e->w;
        for (int l = 0; l <= m->nlayers; l++) dfree(e, w->t[l]);
        for (int l = 0; l < m->nlayers; l++) {
            dfree(e, w->act[l + 1]);
            dfree(e, w->aux[l]);
        }
        free(w->t);
        free(w->act);
        free(w->aux);
        dfree(e, w->dy[0]);
        dfree(e, w->dy[1]);
        dfree(e, w->dbm);
        free(w->dbl);
        free(w->ctr);
        free(w->seg);
        free(w->dx_done);
    }
    dfree(e, e->xbuf);
    free(e->llo);
    free(e->lhi);
    free(e->layer_count);
    free(e->layer_ready);
    free(e->sum_open);
    free(e->sum_next);
    free(e->sum_done);
    free(e->sum_nchunks);
    free(e->mb_correct);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv_start);
    pthread_cond_destroy(&e->cv_done);
    free(e);
}

const ExecOps exec_cpu_ops = {
    .name = "cpu",
    .create = cpu_create,
    .destroy = cpu_destroy,
    .train = cpu_train,
    .eval = cpu_eval,
    .parallel_range = cpu_parallel_range,
    .set_chunk_hook = cpu_set_chunk_hook,
    .pairs = cpu_pairs,
    .layerwise = cpu_layerwise,
};
