/* train_ckpt.c — checkpoint save and resume of a training run.  The checkpoint holds
 * whole arrays whatever the strategy: the ranks' optimizer-state pieces are gathered
 * before rank 0 writes, and scattered again on resume, so any rank count and mode can
 * load it (docs/checkpoint-format.md). */
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "train/train_impl.h"

int train_resume(Trainer *t, const char *how, int *resumed)
{
    *resumed = 0;
    if (!strcmp(how, "none")) return 0;
    char path[1024];
    int st;
    if (!strcmp(how, "auto")) {
        st = ckpt_find_resume(t->ckpt_dir, path, sizeof path);
        if (st == MT_EX_NOINPUT) {
            log_info("resume auto: no valid checkpoint in %s, starting from step 0", t->ckpt_dir);
            err_clear();
            return 0;
        }
        if (st) return st;
    } else {
        snprintf(path, sizeof path, "%s", how);
        st = ckpt_verify(path, NULL);
        if (st) return st;
    }
    char *saved = NULL;
    st = ckpt_read_config(path, &saved);
    if (st) return st;
    char bad[512];
    int refuse = config_diff(saved, t->config_text, bad, sizeof bad);
    free(saved);
    if (refuse)
        return err_set(MT_EX_CONFIG,
                       "cannot resume from %s: %s; the model and optimizer must stay the same "
                       "(start a new run with another run.name, or --resume none)",
                       path, bad);
    CkptMeta meta;
    float *full[2] = {NULL, NULL};
    size_t bytes = t->model.nparams * sizeof(float);
    for (int k = 0; k < t->nstates; k++) full[k] = device_alloc(t->dev, bytes);
    st = ckpt_read(path, &t->model, &t->oc, t->params, full, &meta);
    if (!st) strategy_scatter_states(t->strategy, full, t->states, t->nstates);
    for (int k = 0; k < t->nstates; k++) device_free(t->dev, full[k]);
    if (st) return st;
    t->step = meta.step;
    *resumed = 1;
    log_info("resumed from %s: step %llu, epoch %llu (saved by %d ranks, mode %s); now %d ranks",
             path, (unsigned long long)meta.step, (unsigned long long)meta.epoch, meta.world_size,
             meta.mode, t->world);
    return 0;
}

/* rank 0: write (or hand to the async writer) the state in s */
static int write_rank0(Trainer *t, const CkptState *s, int sync, int sharded)
{
    double t0 = now_s();
    char path[1024] = "";
    int st = 0;
    if (t->ckpt_async && !sync) {
        /* whole slabs (no gather buffers): the writer copies them while the next
         * forward/backward runs; the optimizer waits for the copy (train_ckpt_fence) */
        if (!sharded) {
            st = ckpt_async_submit_deferred(t->ckpt_async, s, t->ckpt_dir, t->cfg.ckpt_keep);
            if (!st) {
                t->ckpt_fence = 1;
                t->ckpt_pause = now_s() - t0;
            }
        } else {
            st = ckpt_async_submit(t->ckpt_async, s, t->ckpt_dir, t->cfg.ckpt_keep);
            if (!st) train_report_ckpt(t, now_s() - t0, 1);
        }
    } else {
        if (t->ckpt_async) st = ckpt_async_wait(t->ckpt_async, NULL, 0);
        if (!st) st = ckpt_write(t->ckpt_dir, s, t->cfg.ckpt_keep, path, sizeof path);
        if (!st) train_report_ckpt(t, now_s() - t0, 0);
    }
    return st;
}

int train_ckpt_save(Trainer *t, int sync)
{
    float *full[2] = {NULL, NULL};
    int sharded = strategy_sharded(t->strategy);
    size_t bytes = t->model.nparams * sizeof(float);
    for (int k = 0; k < t->nstates; k++)
        full[k] = sharded ? device_alloc(t->dev, bytes) : t->states[k];
    strategy_gather_params(t->strategy, t->params);
    strategy_gather_states(t->strategy, t->states, full, t->nstates);
    int st = 0;
    if (t->rank == 0) {
        CkptState s = {
            .step = t->step,
            .epoch = t->step / t->steps_per_epoch,
            .pos_in_epoch = (t->step % t->steps_per_epoch) * (uint64_t)t->B,
            .seed = (uint64_t)t->cfg.train_seed,
            .world_size = t->world,
            .mode = strategy_mode(t->strategy),
            .config_text = t->config_text,
            .model = &t->model,
            .optim = &t->oc,
            .params = t->params,
            .states = (const float *const *)full,
            .nstates = t->nstates,
        };
        /* the last line of defence: never store a NaN or inf (train_report.c) */
        st = train_report_check_state(t, full);
        if (!st) st = write_rank0(t, &s, sync, sharded);
    }
    if (sharded)
        for (int k = 0; k < t->nstates; k++) device_free(t->dev, full[k]);
    st = train_agree(t, st, "checkpoint");
    if (!st) t->t_last_ckpt = now_s();
    return st;
}

void train_ckpt_fence(Trainer *t, uint64_t step)
{
    if (!t->ckpt_fence) return;
    double w = ckpt_async_fence(t->ckpt_async);
    t->ckpt_pause += w;
    t->ckpt_fence = 0;
    train_report_ckpt(t, t->ckpt_pause, 1);
    log_info("checkpoint of step %llu: snapshot taken in the background; training "
             "paused %.4f s", (unsigned long long)step, t->ckpt_pause);
}
