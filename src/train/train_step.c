/* train_step.c — one training step (docs/design.md §4) through the parallel strategy:
 * the executor computes the rank's micro-batches and reports each finished gradient
 * range to the strategy, which reduces it while the backward goes on; then the loss, the
 * optional clipping, and the strategy's update; then the agreement on the step's outcome
 * (its loss, and whether any rank's update wrote a NaN or inf: train_report.c) when the
 * step is one the ranks agree on (train.c; otherwise each rank checks its own).  Which
 * strategy runs, and whether the optimizer is fused into the backward or the reduction,
 * is the strategy's business. */
#include <math.h>
#include <string.h>

#include "core/common.h"
#include "core/optstep.h"
#include "parallel/watchdog.h"
#include "train/train_impl.h"

/* StrategyRunFn over the executor's threads */
static void run_on_exec(void *exec, size_t n, StrategyRangeFn fn, void *arg)
{
    exec_parallel_range(exec, n, fn, arg);
}

/* The step's optimizer and its learning rate (StrategyStep.scale) */
typedef struct {
    OptStep os; /* first: update_arg points to it */
    float lr;
} StepOpt;

static void scale_step(void *arg, float lr_factor, float grad_factor)
{
    StepOpt *o = arg;
    o->os.lr = o->lr * lr_factor;
    o->os.grad_scale = grad_factor;
}

/* The rank's mb_hi - mb_lo micro-batches from lo on into grads (their losses into
 * mb_loss[lo ...], right answers added to *correct); no batch b (a data error kept for
 * the next agreement, train.c): zeros, which the rank pushes. */
static void compute_mbs(Trainer *t, const StrategyHooks *h, Batch *b, uint64_t step, int lo,
                        float *grads, int64_t *correct)
{
    if (!b) {
        memset(grads, 0, t->model.nparams * sizeof(float));
        return;
    }
    /* the batch's rows begin at the loader's first micro-batch (stealing: 0) */
    int first = t->split.steal ? 0 : t->split.mb_lo;
    size_t row = (size_t)(lo - first) * (size_t)t->mb_rows;
    int64_t right = 0;
    exec_set_chunk_hook(t->exec, h->chunk_done, h->chunk_arg);
    ExecInput in = {b->x, b->x8, b->x8_table};
    exec_train(t->exec, h->params ? h->params : t->params, exec_input_rows(in, row, t->model.in_dim),
               b->y + row, (uint64_t)t->cfg.train_seed, step, lo, 1.0f / (float)t->B, grads,
               t->mb_loss + lo, &right, h->ready, h->poll, h->arg);
    exec_set_chunk_hook(t->exec, NULL, NULL);
    *correct += right;
}

int train_step(Trainer *t, uint64_t step, Batch *b, double *loss_out, double *norm_out)
{
    const Config *c = &t->cfg;
    double t0 = now_s();
    if (b) trace_event(t->trace, "data", t0 - b->wait_s, t0, step);

    StepOpt so = {.lr = sched_lr(&t->sc, step, t->total_steps)};
    OptStep *os = &so.os;
    optstep_begin(os, t->dev, &t->oc, so.lr, step + 1, t->params, t->grads, t->states,
                  t->nstates);
    StrategyStep ss = {.step = step, .update = optstep_update, .update_arg = os,
                       .global = c->optim_clip_norm > 0, .hold = t->ckpt_fence,
                       .scale = scale_step};
    StrategyHooks h;
    strategy_step_begin(t->strategy, &ss, t->params, t->grads, &h);
    float *grads = h.grads ? h.grads : t->grads; /* where this step's gradient goes */

    watchdog_step(step, "compute");
    int64_t correct = 0;
    memset(t->mb_loss, 0, t->M * sizeof(double));
    if (!h.claim) straggler_step(&t->slow, t->rank, step); /* run.slow: off by default */
    if (t->split.computes && h.claim) {
        /* work stealing: the shares the strategy hands out, n micro-batches each (run.slow
         * sleeps once per share) */
        int k, n = t->split.mb_hi - t->split.mb_lo;
        float *g;
        while (h.claim(h.arg, &k, &g)) {
            straggler_step(&t->slow, t->rank, step);
            compute_mbs(t, &h, b, step, k * n, g, &correct);
        }
    } else if (t->split.computes) { /* this rank's micro-batches */
        compute_mbs(t, &h, b, step, t->split.mb_lo, grads, &correct);
    }
    double tc = now_s();
    trace_event(t->trace, "forward+backward", t0, tc, step);
    watchdog_step(step, "allreduce");
    strategy_reduce_end(t->strategy);
    trace_event(t->trace, "comm (exposed)", tc, now_s(), step);
    if (b) {
        t->win.wait += b->wait_s;
        loader_release(t->loader, b);
    }

    train_ckpt_fence(t, step); /* the async snapshot must be taken before the update */
    double norm = NAN;
    if (ss.global) {
        strategy_clip_partials(t->strategy, t->grads, t->clip_partial);
        optstep_clip(os, t->clip_partial, clip_nblocks(t->model.nparams),
                     (float)c->optim_clip_norm, &norm);
    }
    strategy_update(t->strategy, run_on_exec, t->exec);
    /* the loss (canonical tree) and every rank's finite check of its update, agreed */
    double loss = NAN;
    int st = 0;
    if (t->agree_now) st = train_report_outcome(t, step, os, &loss);
    else train_report_local(t, step, os); /* kept for the next agreement (train.c) */
    if (st) return st;
    t->step = step + 1;
    double t1 = now_s();
    double exposed = strategy_exposed_s(t->strategy);
    trace_event(t->trace, "loss+optimizer", tc + exposed, t1, step);
    t->win.compute += t1 - t0;
    t->win.exposed += exposed;
    t->win.comm += strategy_comm_s(t->strategy);
    t->win.steps++;
    train_report_stats(t);
    *loss_out = loss;
    *norm_out = norm;
    return 0;
}
