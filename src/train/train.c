/* train.c — `mpitrain train`: the phases of a run and the step loop.
 *
 * Every set-up phase ends in an agreement (train_agree) so that an error on one rank
 * (bad config, missing shard, out of memory) takes all ranks out together with one
 * message, never a hang.  Each iteration of the loop is docs/design.md §4: the data of
 * the step and the agreement on it, one step through the parallel strategy, then the
 * reports, the eval and the checkpoint that fall due.
 *
 * A strategy that is not lockstep (strategy_lockstep: the stale parameter-server modes)
 * lets ranks be at different steps, so the agreements before and after a step are made
 * only at boundary steps (every train.log_every-th, an eval or checkpoint step, the
 * last): between them a rank keeps a failure of its own (t->pend_*), carries on without
 * computing (its pushes are zeros) and reports it at the next boundary, where every rank
 * exits with its code. */
#include <string.h>

#include "core/common.h"
#include "parallel/signals.h"
#include "parallel/watchdog.h"
#include "train/train_impl.h"

/* What the ranks agree on before each step (comm_agree_flags). */
enum { FLAG_STOP, FLAG_CKPT_TIME, FLAG_DATA, NFLAGS };

/* 1 when the ranks agree before and after step `step` (see the top of this file). */
static int agree_at(const Trainer *t, uint64_t step)
{
    const Config *c = &t->cfg;
    uint64_t done = step + 1, every = (uint64_t)t->agree_every;
    if (every <= 1 || done % every == 0 || done >= t->total_steps) return 1;
    if (c->train_eval_every > 0 ? done % (uint64_t)c->train_eval_every == 0
                                : done % t->steps_per_epoch == 0)
        return 1;
    return c->ckpt_every_steps > 0 && done % (uint64_t)c->ckpt_every_steps == 0;
}

/* Agree on the step's data and on stopping or checkpointing before it.  Returns 0 to
 * go on with *b, or the code to leave the loop with (after the signal's checkpoint). */
static int step_gate(Trainer *t, uint64_t step, Batch **b)
{
    const Config *c = &t->cfg;
    watchdog_step(step, "data");
    int st = 0;
    if (t->loader && !t->pend_data) st = loader_next(t->loader, step, b); /* servers: none */
    if (!t->agree_now) {
        if (st) { /* kept for the next boundary; the rank computes nothing until then */
            train_pend(t, st, 1, "%s", err_msg());
            if (*b) loader_release(t->loader, *b);
            *b = NULL;
        }
        return 0;
    }
    if (!st && t->pend_data) st = t->pend_code;
    double flags[NFLAGS];
    flags[FLAG_STOP] = signals_pending() ? 1 : 0;
    flags[FLAG_CKPT_TIME] = (t->rank == 0 && c->ckpt_every_minutes > 0 &&
                             now_s() - t->t_last_ckpt >= c->ckpt_every_minutes * 60)
                                ? 1 : 0;
    flags[FLAG_DATA] = st ? 1 : 0;
    int fail_rank = -1;
    int code = comm_agree_flags(t->comm, st, flags, NFLAGS, &fail_rank);
    if (code) {
        /* the loader's message names the step, the shard and the row */
        if (fail_rank == t->rank) log_error("%s", t->pend_data ? t->pend_msg : err_msg());
        if (t->rank == 0 && fail_rank != 0)
            log_error("step %llu: rank %d could not read its data (message above); stopping",
                      (unsigned long long)step, fail_rank);
        if (*b) loader_release(t->loader, *b);
        return code;
    }
    if (flags[FLAG_STOP] > 0) {
        if (*b) loader_release(t->loader, *b);
        progress_clear();
        log_info("signal received: writing a checkpoint at step %llu and exiting with code 75 "
                 "(resume with --resume auto)", (unsigned long long)step);
        int cst = train_ckpt_save(t, 1);
        return cst ? cst : MT_EX_TEMPFAIL;
    }
    if (flags[FLAG_CKPT_TIME] > 0) {
        int cst = train_ckpt_save(t, 0);
        if (cst) {
            if (*b) loader_release(t->loader, *b);
            return cst;
        }
    }
    return 0;
}

static int run_eval(Trainer *t, uint64_t step, uint64_t epoch)
{
    if (!t->test_ds) return 0;
    watchdog_step(step, "eval");
    strategy_gather_params(t->strategy, t->params); /* whole and current on every rank */
    double te = now_s(), loss = 0, acc = 0;
    int st = trainer_evaluate(t, t->test_ds, &loss, &acc);
    trace_event(t->trace, "eval", te, now_s(), step);
    if (!st) train_report_eval(t, epoch, loss, acc);
    return st;
}

/* parallel.staleness_rule = momentum: with parameters s steps stale the optimizer's
 * momentum m becomes max(0, m (1 + s) - s) (docs/design.md §6). */
static void stale_rule(Trainer *t)
{
    int s = t->split.staleness;
    if (s <= 0 || strcmp(t->cfg.parallel_staleness_rule, "momentum") != 0) return;
    float *m = !strcmp(t->cfg.optim_name, "sgd") ? &t->oc.momentum : &t->oc.beta1;
    float was = *m;
    *m = MT_MAX(0.0f, was * (1.0f + (float)s) - (float)s);
    log_info("staleness %d: momentum %g -> %g (parallel.staleness_rule = momentum; none keeps "
             "it)", s, was, *m);
}

static int train_loop(Trainer *t)
{
    const Config *c = &t->cfg;
    progress_init(&t->prog, c->run_progress, t->total_steps, t->rank == 0);
    t->t_last_ckpt = now_s();
    memset(&t->win, 0, sizeof t->win);
    t->win.t0 = now_s();
    t->agree_every = strategy_lockstep(t->strategy) ? 1 : MT_MAX(1, c->train_log_every);
    while (t->step < t->total_steps) {
        uint64_t step = t->step;
        Batch *b = NULL;
        t->agree_now = agree_at(t, step);
        int st = step_gate(t, step, &b);
        if (st) return st;
        double loss, norm;
        float lr = sched_lr(&t->sc, step, t->total_steps);
        st = train_step(t, step, b, &loss, &norm);
        if (st) return st;
        uint64_t epoch = step / t->steps_per_epoch;
        train_report_step(t, epoch, loss, lr, norm);
        int eval_now = c->train_eval_every > 0 ? t->step % (uint64_t)c->train_eval_every == 0
                                               : t->step % t->steps_per_epoch == 0;
        if (eval_now || t->step == t->total_steps) {
            st = run_eval(t, step, epoch);
            if (st) return st;
        }
        if (c->ckpt_every_steps > 0 && t->step % (uint64_t)c->ckpt_every_steps == 0 &&
            t->step < t->total_steps) {
            st = train_ckpt_save(t, 0);
            if (st) return st;
        }
    }
    progress_done(&t->prog);
    return 0;
}

int train_run(const TrainOptions *o)
{
    static Trainer T;
    Trainer *t = &T;
    int st = train_start(t);
    if (st) return st;
    signals_install(NULL); /* the default set until the config names its own */

    int resumed = 0;
    if ((st = train_setup_config(t, o))) goto out;
    if ((st = train_setup_model(t))) goto out;
    st = train_resume(t, o->resume, &resumed);
    if ((st = train_agree(t, st, "resume"))) goto out;
    if ((st = train_setup_run(t, resumed))) goto out;
    stale_rule(t);

    watchdog_start(t->cfg.run_step_timeout_s, t->rank);
    st = train_loop(t);
    if (t->split.computes) train_report_plan(t);
    /* the final state is always checkpointed: resume, eval and bitwise comparisons use it */
    if (st == 0) st = train_ckpt_save(t, 1);
    if (t->rank == 0 && t->ckpt_async) {
        int ast = ckpt_async_wait(t->ckpt_async, NULL, 0);
        if (ast && !st) { log_error("%s", err_msg()); st = ast; }
    }
    if (t->rank == 0 && st == 0) {
        printf("run directory: %s\n", t->run_dir);
        fflush(stdout);
    }
out:
    train_teardown(t);
    return st;
}
