/* train_report.c — what a training run tells its user: the start-up banner, the
 * progress line, the metrics lines (metrics.jsonl, docs/design.md §7), the eval lines,
 * and the outcome of each step: the divergence messages (a non-finite loss, or a NaN or
 * inf the update wrote, named by layer from the model's table) and the finite check of
 * the state a checkpoint is about to store. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "core/finite.h"
#include "core/gemm.h"
#include "core/gemm_plan.h"
#include "train/train_impl.h"

void train_report_banner(Trainer *t, int cores)
{
    const Config *c = &t->cfg;
    const DatasetInfo *di = dataset_info(t->train_ds);
    int local = t->comm->local_size;
    char desc[512], sdesc[256];
    model_describe(&t->model, desc, sizeof desc);
    strategy_describe(t->strategy, sdesc, sizeof sdesc);
    log_info("mpitrain %s: %s", MPITRAIN_VERSION, desc);
    log_info("data: %s (%lld samples, %d classes), test: %s; %llu steps/epoch, %llu steps",
             c->data_train, (long long)di->num_samples, di->num_classes,
             c->data_test[0] ? c->data_test : "none", (unsigned long long)t->steps_per_epoch,
             (unsigned long long)t->total_steps);
    log_info("parallel: %d rank%s x %d thread%s (%d cores here, %d rank%s on "
             "this node), batch %d = %d micro-batches of %d, %s",
             t->world, t->world > 1 ? "s" : "", t->threads, t->threads > 1 ? "s" : "", cores,
             local, local > 1 ? "s" : "", t->B, t->M, t->mb_rows, sdesc);
    if (cores == 1 && local == 1 && sysconf(_SC_NPROCESSORS_ONLN) > 1)
        log_info("warning: this rank may use only 1 of the node's %ld cores: mpirun binds each "
                 "rank to a core by default (np <= 2); run mpirun with --bind-to none (or "
                 "--map-by slot:PE=N) to let its threads use the cores",
                 sysconf(_SC_NPROCESSORS_ONLN));
    if (!t->split.n_invariant)
        log_info("note: with %d ranks, micro_batches = %d and reduce = %s the result is "
                 "deterministic for this rank count but NOT bitwise equal to other rank counts "
                 "(that needs reduce = deterministic and a power-of-two rank count dividing "
                 "train.micro_batches)", t->world, t->M, c->parallel_reduce);
    log_info("compute: mpitrain gemm, %s kernels (fma chains in a fixed order: the same "
             "bits on every CPU); %s", gemm_isa_name(),
             exec_layerwise(t->exec) ? "layer-wise: all local rows through a layer at once, "
                                       "dW formed along the micro-batch tree"
             : exec_pairs(t->exec)   ? "per micro-batch, pairs accumulated into one gradient slab"
                                     : "per micro-batch, one gradient slab each");
    log_info("run directory: %s", t->run_dir);
}

void train_report_stats(Trainer *t)
{
    StrategyStats st;
    TrainWindow *w = &t->win;
    if (!strategy_stats(t->strategy, &st)) return;
    if (!w->has_stats) {
        w->stale_min = st.staleness;
        w->stale_max = st.staleness;
    }
    w->has_stats = 1;
    w->server = st.server;
    w->sent += st.bytes_sent;
    w->recv += st.bytes_recv;
    w->swait += st.wait_s;
    w->busy += st.busy_s;
    w->stale_sum += st.staleness;
    w->shares += st.shares;
    w->stale_min = MT_MIN(w->stale_min, st.staleness);
    w->stale_max = MT_MAX(w->stale_max, st.staleness);
}

#define NSTAT 9
/* The strategy's figures of every rank for the window (collective; strategies with
 * stats only), summarised per role into rank 0's metrics line:
 *   ps_push_bytes / ps_pull_bytes   per worker and step (mean over workers)
 *   ps_server_bytes_max             received by the busiest server per step
 *   ps_server_busy                  servers' busy fraction of the window (mean)
 *   ps_pull_wait_s                  a worker's wait for parameters per step (mean)
 *   staleness_min/mean/max          steps between the parameters computed on and the
 *                                   newest version, over the workers' steps
 *   ps_shares_min / ps_shares_max   (parallel.steal) the least and the most shares per
 *                                   step a worker computed (each step has W) */
static void stats_line(Trainer *t, Metrics *m, double wall)
{
    const TrainWindow *w = &t->win;
    double mine[NSTAT] = {w->server, w->sent, w->recv, w->swait, w->busy, w->stale_min,
                          w->stale_max, w->stale_sum, w->shares};
    double *all = xcalloc((size_t)t->world * NSTAT, sizeof(double));
    size_t *counts = xcalloc((size_t)t->world, sizeof(size_t));
    for (int r = 0; r < t->world; r++) counts[r] = NSTAT;
    comm_allgatherv(t->comm, mine, NSTAT, all, counts, COMM_F64);
    if (m) {
        double n = (double)MT_MAX(1, w->steps), push = 0, pull = 0, wait = 0, busy = 0;
        double smax_bytes = 0, ssum = 0, smin = 1e300, smax = -1, shmin = 1e300, shmax = -1;
        int nw = 0, ns = 0;
        for (int r = 0; r < t->world; r++) {
            const double *a = all + (size_t)r * NSTAT;
            if (a[0] > 0) {
                ns++;
                busy += a[4];
                smax_bytes = MT_MAX(smax_bytes, a[2] / n);
            } else {
                nw++;
                push += a[1];
                pull += a[2];
                wait += a[3];
                smin = MT_MIN(smin, a[5]);
                smax = MT_MAX(smax, a[6]);
                ssum += a[7];
                shmin = MT_MIN(shmin, a[8] / n);
                shmax = MT_MAX(shmax, a[8] / n);
            }
        }
        if (nw) {
            metrics_num(m, "ps_push_bytes", push / nw / n);
            metrics_num(m, "ps_pull_bytes", pull / nw / n);
            metrics_num(m, "ps_pull_wait_s", wait / nw / n);
            metrics_int(m, "staleness_min", (int64_t)smin);
            metrics_num(m, "staleness_mean", ssum / nw / n);
            metrics_int(m, "staleness_max", (int64_t)smax);
            if (t->cfg.parallel_steal) { /* every rank: rank 0 may be a server */
                metrics_num(m, "ps_shares_min", shmin);
                metrics_num(m, "ps_shares_max", shmax);
            }
        }
        if (ns) {
            metrics_num(m, "ps_server_bytes_max", smax_bytes);
            metrics_num(m, "ps_server_busy", wall > 0 ? busy / ns / wall : 0);
        }
    }
    free(counts);
    free(all);
}

static void train_line(Trainer *t, uint64_t epoch, double loss, float lr, double norm, double sps)
{
    Metrics *m = t->metrics;
    const TrainWindow *w = &t->win;
    metrics_begin(m, "train");
    metrics_int(m, "step", (int64_t)t->step);
    metrics_int(m, "epoch", (int64_t)epoch);
    metrics_num(m, "loss", loss);
    metrics_num(m, "lr", lr);
    metrics_num(m, "samples_per_s", sps);
    metrics_num(m, "data_wait_s", w->wait / w->steps);
    metrics_num(m, "compute_s", w->compute / w->steps);
    metrics_num(m, "comm_exposed_s", w->exposed / w->steps);
    metrics_num(m, "comm_s", w->comm / w->steps);
    if (!isnan(norm)) metrics_num(m, "grad_norm", norm);
    metrics_int(m, "ranks", t->world);
}

void train_report_step(Trainer *t, uint64_t epoch, double loss, float lr, double norm)
{
    int log_now = t->step % (uint64_t)t->cfg.train_log_every == 0 || t->step == t->total_steps;
    double wall = now_s() - t->win.t0;
    int line = log_now && t->rank == 0 && t->metrics;
    if (isnan(loss)) loss = t->last_loss; /* a step without agreement: the last agreed */
    else t->last_loss = loss;
    if (t->rank == 0) {
        double sps = t->win.steps * (double)t->B / wall;
        progress_update(&t->prog, t->step, epoch, loss, lr, sps);
        if (line) train_line(t, epoch, loss, lr, norm, sps);
    }
    /* every rank: the window's strategy figures (a collective when the strategy has them) */
    if (log_now && t->win.has_stats) stats_line(t, line ? t->metrics : NULL, wall);
    if (line && metrics_end(t->metrics)) log_error("%s", err_msg());
    if (log_now) {
        memset(&t->win, 0, sizeof t->win);
        t->win.t0 = now_s();
    }
}

void train_report_eval(Trainer *t, uint64_t epoch, double loss, double acc)
{
    if (t->rank != 0) return;
    progress_clear();
    log_info("eval step %llu epoch %llu: test loss %.4f accuracy %.4f",
             (unsigned long long)t->step, (unsigned long long)epoch, loss, acc);
    if (!t->metrics) return;
    metrics_begin(t->metrics, "eval");
    metrics_int(t->metrics, "step", (int64_t)t->step);
    metrics_int(t->metrics, "epoch", (int64_t)epoch);
    metrics_str(t->metrics, "split", "test");
    metrics_num(t->metrics, "loss", loss);
    metrics_num(t->metrics, "accuracy", acc);
    if (metrics_end(t->metrics)) log_error("%s", err_msg());
}

void train_report_ckpt(Trainer *t, double pause, int async)
{
    if (!t->metrics) return;
    metrics_begin(t->metrics, "checkpoint");
    metrics_int(t->metrics, "step", (int64_t)t->step);
    metrics_bool(t->metrics, "async", async);
    metrics_num(t->metrics, "pause_s", pause);
    if (metrics_end(t->metrics)) log_error("%s", err_msg());
}

void train_report_diverged(Trainer *t, uint64_t step, double loss)
{
    int bad = 0;
    while (bad < t->M && isfinite(t->mb_loss[bad])) bad++;
    progress_clear();
    if (bad == t->M) { /* every micro-batch finite: their sum overflowed */
        log_info("step %llu: loss is %g (the sum of finite micro-batch losses overflowed): "
                 "training diverged; lower optim.lr or set optim.clip_norm",
                 (unsigned long long)step, loss);
        return;
    }
    int bad_rank = t->mb_rank[bad];
    log_info("step %llu: loss is %g (micro-batch %d, computed on rank %d%s): training "
             "diverged; lower optim.lr or set optim.clip_norm",
             (unsigned long long)step, loss, bad, bad_rank,
             t->split.steal ? " or, stolen, on another worker" : "");
}

/* "layer dense1 parameter w[12, 345]" for slab index i (the model's layer table), or
 * "the padding at slab index i" (zero by construction: reaching it is a bug). */
static void slab_name(const Model *m, size_t i, char *buf, size_t n)
{
    for (int l = 0; l < m->nlayers; l++) {
        const Layer *L = &m->layers[l];
        for (int k = 0; k < L->nparams; k++) {
            const ParamDesc *p = &L->params[k];
            if (i < p->off || i >= p->off + p->count) continue;
            size_t e = i - p->off, len = 0;
            char idx[96];
            idx[0] = 0;
            for (int d = 0; d < p->ndim; d++) {
                size_t stride = 1;
                for (int j = d + 1; j < p->ndim; j++) stride *= (size_t)p->shape[j];
                len += (size_t)snprintf(idx + len, sizeof idx - len, "%s%zu", d ? ", " : "",
                                        e / stride);
                e %= stride;
            }
            snprintf(buf, n, "layer %s parameter %s[%s]", L->name, p->name, idx);
            return;
        }
    }
    snprintf(buf, n, "the padding at slab index %zu", i);
}

/* "the parameter" or "the optimizer state 'm' of": what array a (0 params, 1 + k state
 * k) of slab index i is, for messages. */
static void array_name(const Trainer *t, int a, size_t i, char *buf, size_t n)
{
    char where[200];
    slab_name(&t->model, i, where, sizeof where);
    if (a == 0) snprintf(buf, n, "%s", where);
    else snprintf(buf, n, "optimizer state '%s' of %s", optim_state_name(&t->oc, a - 1), where);
}

void train_pend(Trainer *t, int code, int data, const char *fmt, ...)
{
    if (t->pend_code) return;
    t->pend_code = code;
    t->pend_data = data;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->pend_msg, sizeof t->pend_msg, fmt, ap);
    va_end(ap);
}

/* The message of a non-finite value the update of `step` wrote on this rank. */
static void update_msg(Trainer *t, uint64_t step, int bad_a, size_t bad_i, float bad_v,
                       char *buf, size_t n)
{
    char what[320];
    array_name(t, bad_a, bad_i, what, sizeof what);
    snprintf(buf, n, "step %llu: the optimizer update on rank %d made %s %s (slab index %zu): "
             "training diverged; lower optim.lr or set optim.clip_norm (no checkpoint of "
             "this state is written)", (unsigned long long)step, t->rank, what,
             finite_kind(bad_v), bad_i);
}

void train_report_local(Trainer *t, uint64_t step, const OptStep *os)
{
    if (t->pend_code) return;
    size_t bad_i = 0;
    int bad_a = 0;
    float bad_v = 0;
    if (optstep_nonfinite(os, &bad_i, &bad_a, &bad_v)) {
        char msg[1024];
        update_msg(t, step, bad_a, bad_i, bad_v, msg, sizeof msg);
        train_pend(t, MT_EX_SOFTWARE, 0, "%s", msg);
        return;
    }
    /* the micro-batches this rank did not compute are 0 (train_step; with stealing any
     * of them may be its own) */
    for (int k = 0; k < t->M; k++)
        if (!isfinite(t->mb_loss[k])) {
            train_pend(t, MT_EX_SOFTWARE, 0, "step %llu: loss is %g (micro-batch %d, computed "
                       "on rank %d): training diverged; lower optim.lr or set "
                       "optim.clip_norm", (unsigned long long)step, t->mb_loss[k], k, t->rank);
            return;
        }
}

int train_report_outcome(Trainer *t, uint64_t step, const OptStep *os, double *loss)
{
    size_t bad_i = 0;
    int bad_a = 0, failed = -1;
    float bad_v = 0;
    int bad = optstep_nonfinite(os, &bad_i, &bad_a, &bad_v);
    int mine = t->pend_code ? t->pend_code : bad ? MT_EX_SOFTWARE : 0;
    /* one allreduce: the loss contributions are disjoint (an exact sum), and each rank's
     * status says whether its update wrote a non-finite value */
    int code = comm_agree_flags(t->comm, mine, t->mb_loss, t->M, &failed);
    *loss = exec_tree_sum_f64(t->mb_loss, 0, t->M) / t->B;
    int loss_bad = !isfinite(*loss);
    if (!loss_bad && !code) return 0;
    if (loss_bad) train_report_diverged(t, step, *loss);
    if (code) {
        progress_clear();
        if (failed == t->rank) {
            char msg[1024];
            if (!t->pend_code) update_msg(t, step, bad_a, bad_i, bad_v, msg, sizeof msg);
            log_error("%s", t->pend_code ? t->pend_msg : msg);
        }
        if (t->rank == 0 && failed != 0 && t->agree_every <= 1)
            log_error("step %llu: rank %d's update wrote a non-finite value (message above); "
                      "stopping", (unsigned long long)step, failed);
        else if (t->rank == 0 && failed != 0) /* the failure may be of an earlier step */
            log_error("step %llu: rank %d met a non-finite loss or update (message above); "
                      "stopping", (unsigned long long)step, failed);
    }
    return MT_EX_SOFTWARE;
}

int train_report_check_state(Trainer *t, float *const *full)
{
    size_t n = t->model.nparams;
    for (int a = 0; a <= t->nstates; a++) {
        const float *x = a == 0 ? t->params : full[a - 1];
        size_t i = device_first_nonfinite(t->dev, x, n);
        if (i == n) continue;
        char what[320];
        array_name(t, a, i, what, sizeof what);
        return err_set(MT_EX_SOFTWARE, "refusing to write the checkpoint of step %llu: %s is "
                       "%s; a checkpoint never holds non-finite state (the last valid one "
                       "stays in %s)", (unsigned long long)t->step, what,
                       finite_kind(x[i]), t->ckpt_dir);
    }
    return 0;
}

void train_report_plan(Trainer *t)
{
    char buf[4096];
    gemm_plan_describe(buf, sizeof buf);
    log_info("gemm plan: %s", buf);
    /* every rank that computes keeps its plan for the next run on this CPU model (one
     * atomic rename each; the last one's file stays, merged with what was there) */
    (void)t;
    if (gemm_plan_save() < 0)
        log_all("note: the gemm plan cache could not be written (%s); the next run on this "
                "CPU measures again (MPITRAIN_PLAN_CACHE=off silences this)", strerror(errno));
}
