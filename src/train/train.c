/* train.c — `mpitrain train`: set-up, the step loop, checkpoints, shutdown.
 *
 * Every set-up phase ends in an agreement (comm_agree) so that an error on one rank
 * (bad config, missing shard, out of memory) takes all ranks out together with one
 * message, never a hang.  The step loop is the step of docs/design.md. */
#include "train/train.h"

#include <errno.h>
#include <math.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/common.h"
#include "core/gemm.h"
#include "parallel/signals.h"
#include "parallel/watchdog.h"
#include "train/progress.h"
#include "train/train_impl.h"

/* ---- helpers -------------------------------------------------------------------- */

/* Per-step agreement: flags[k] summed over ranks (0 = nobody set it), and each rank's
 * status: returns the largest status and the lowest failing rank in *failed.  One small
 * allreduce of doubles (every status slot has one contributor, so the sum is exact). */
static int agree_flags(Trainer *t, int status, double *flags, int nflags, int *failed)
{
    int W = t->world;
    double *buf = t->agree_buf;
    memset(buf, 0, (size_t)(nflags + W) * sizeof(double));
    memcpy(buf, flags, nflags * sizeof(double));
    buf[nflags + t->rank] = status;
    comm_allreduce(t->comm, buf, (size_t)(nflags + W), COMM_F64);
    memcpy(flags, buf, nflags * sizeof(double));
    int code = 0;
    *failed = -1;
    for (int r = 0; r < W; r++) {
        int c = (int)buf[nflags + r];
        if (c && *failed < 0) *failed = r;
        if (c > code) code = c;
    }
    return code;
}

/* All ranks agree on `st`; the lowest failing rank prints its message.  Returns the
 * agreed code (0 when every rank succeeded). */
static int agree(Trainer *t, int st, const char *phase)
{
    int failed = -1;
    int code = comm_agree(t->comm, st, &failed);
    if (code && failed == t->rank) log_error("%s", err_msg());
    if (code && t->rank == 0 && failed != 0)
        log_error("%s failed on rank %d (see its message above); exiting with code %d", phase,
                  failed, code);
    return code;
}

/* dst = a + b (truncated to n - 1 bytes; paths here are far shorter). */
static void path_cat(char *dst, size_t n, const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > n - 1) la = n - 1;
    memcpy(dst, a, la);
    if (lb > n - 1 - la) lb = n - 1 - la;
    memcpy(dst + la, b, lb);
    dst[la + lb] = 0;
}

static int cores_available(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

typedef struct {
    const char *job;
    const char *resume; /* "none" | "auto" | path */
    const char *sets[64];
    int nsets;
} TrainArgs;

static int parse_args(int argc, char **argv, TrainArgs *a)
{
    memset(a, 0, sizeof *a);
    a->resume = "none";
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (!strcmp(s, "--set") || !strcmp(s, "-s")) {
            if (i + 1 >= argc) return err_set(MT_EX_USAGE, "--set needs sec.key=value");
            if (a->nsets == 64) return err_set(MT_EX_USAGE, "too many --set options (64 at most)");
            a->sets[a->nsets++] = argv[++i];
        } else if (!strncmp(s, "--set=", 6)) {
            if (a->nsets == 64) return err_set(MT_EX_USAGE, "too many --set options (64 at most)");
            a->sets[a->nsets++] = s + 6;
        } else if (!strcmp(s, "--resume")) {
            if (i + 1 >= argc) return err_set(MT_EX_USAGE, "--resume needs auto, none or a checkpoint path");
            a->resume = argv[++i];
        } else if (!strncmp(s, "--resume=", 9)) {
            a->resume = s + 9;
        } else if (s[0] == '-') {
            return err_set(MT_EX_USAGE, "train: unknown option '%s' (options: --set sec.key=value, --resume auto|none|PATH)", s);
        } else if (!a->job) {
            a->job = s;
        } else {
            return err_set(MT_EX_USAGE, "train: more than one job file ('%s' and '%s')", a->job, s);
        }
    }
    if (!a->job) return err_set(MT_EX_USAGE, "usage: mpitrain train JOB.ini [--set sec.key=value]... [--resume auto|none|PATH]");
    return 0;
}

static int load_config(Trainer *t, const TrainArgs *a)
{
    config_defaults(&t->cfg);
    int st = config_load(&t->cfg, a->job);
    for (int i = 0; !st && i < a->nsets; i++) st = config_set(&t->cfg, a->sets[i], "--set");
    if (!st) st = config_validate(&t->cfg);
    return st;
}

static int setup_optim(Trainer *t)
{
    const Config *c = &t->cfg;
    OptimConf *o = &t->oc;
    memset(o, 0, sizeof *o);
    o->kind = !strcmp(c->optim_name, "adamw") ? OPTIM_ADAMW : OPTIM_SGD;
    o->momentum = (float)c->optim_momentum;
    o->nesterov = c->optim_nesterov;
    o->beta1 = (float)c->optim_beta1;
    o->beta2 = (float)c->optim_beta2;
    o->eps = (float)c->optim_eps;
    o->weight_decay = (float)c->optim_weight_decay;
    if (o->nesterov && o->kind == OPTIM_SGD && o->momentum <= 0)
        return err_set(MT_EX_CONFIG, "optim.nesterov = true needs optim.momentum > 0");
    SchedConf *s = &t->sc;
    s->kind = !strcmp(c->optim_schedule, "cosine") ? SCHED_COSINE
              : !strcmp(c->optim_schedule, "step") ? SCHED_STEP : SCHED_CONSTANT;
    s->lr = (float)c->optim_lr;
    s->warmup = (uint64_t)c->optim_warmup_steps;
    s->step_size = (uint64_t)c->optim_step_size;
    s->gamma = (float)c->optim_gamma;
    s->min_lr = (float)c->optim_min_lr;
    t->nstates = optim_nstates(o);
    return 0;
}

/* Data-parallel split: micro-batches [mb_lo, mb_hi) of this rank. */
static int setup_split(Trainer *t)
{
    const Config *c = &t->cfg;
    t->B = c->train_batch;
    t->M = c->train_micro_batches;
    int N = t->world;
    if (t->B % t->M != 0)
        return err_set(MT_EX_CONFIG,
                       "train.batch = %d is not divisible by train.micro_batches = %d: the batch is "
                       "cut into micro-batches of equal size; choose a divisor of the batch",
                       t->B, t->M);
    if (N > t->M)
        return err_set(MT_EX_CONFIG,
                       "%d ranks but train.micro_batches = %d: every rank needs at least one "
                       "micro-batch; run with at most %d ranks or --set train.micro_batches=%d "
                       "(a multiple of the rank count that divides train.batch = %d)",
                       N, t->M, t->M, N, t->B);
    if (strcmp(c->parallel_mode, "allreduce") != 0)
        return err_set(MT_EX_CONFIG,
                       "parallel.mode = %s is not available in this build (allowed: allreduce)",
                       c->parallel_mode);
    t->mb_rows = t->B / t->M;
    t->mb_lo = (int)((int64_t)t->rank * t->M / N);
    t->mb_hi = (int)((int64_t)(t->rank + 1) * t->M / N);
    int pow2 = (N & (N - 1)) == 0;
    t->n_invariant = pow2 && t->M % N == 0 && !strcmp(c->parallel_reduce, "deterministic");
    return 0;
}

static int open_data(Trainer *t)
{
    const Config *c = &t->cfg;
    int st = dataset_open(c->data_train, c->data_cache_mb, &t->train_ds);
    if (st) return st;
    if (c->data_test[0]) {
        st = dataset_open(c->data_test, c->data_cache_mb, &t->test_ds);
        if (st) return st;
        const DatasetInfo *a = dataset_info(t->train_ds), *b = dataset_info(t->test_ds);
        if (a->sample_size != b->sample_size || a->num_classes != b->num_classes)
            return err_set(MT_EX_DATAERR,
                           "data.test %s (samples of %d values, %d classes) does not match "
                           "data.train %s (%d values, %d classes)",
                           c->data_test, b->sample_size, b->num_classes, c->data_train,
                           a->sample_size, a->num_classes);
    }
    const DatasetInfo *di = dataset_info(t->train_ds);
    if (c->model_input > 0 && c->model_input != di->sample_size)
        return err_set(MT_EX_DATAERR,
                       "data.train %s has samples of %d values (shape %s) but model.input = %d: "
                       "the dataset does not fit the model's input; fix model.input or data.train",
                       c->data_train, di->sample_size,
                       di->ndim == 1 ? "1-d" : di->ndim == 2 ? "2-d" : "3-d", c->model_input);
    if (di->num_samples < t->B)
        return err_set(MT_EX_DATAERR,
                       "data.train %s has %lld samples, fewer than one batch (train.batch = %d)",
                       c->data_train, (long long)di->num_samples, t->B);
    return 0;
}

static int build_model(Trainer *t)
{
    const DatasetInfo *di = dataset_info(t->train_ds);
    int st = model_build(&t->model, t->cfg.model_layers, di->sample_size, di->num_classes);
    if (st) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", err_msg());
        return err_set(st, "model.layers: %s", msg);
    }
    size_t P = t->model.nparams;
    t->params = xaligned(P * sizeof(float)); /* the gradient slab comes with dp_create */
    t->mb_loss = xcalloc(t->M, sizeof(double));
    t->clip_partial = xcalloc(clip_nblocks(P), sizeof(double));
    return 0;
}

/* Lines of a that differ from b ("key = value" INI lines), logged; returns 1 if a key
 * that cannot change on resume (model.layers, model.input, optim.name) differs. */
static int config_diff(const char *saved, const char *now, char *bad, size_t nbad)
{
    static const char *fixed[] = {"layers", "input", "name"};
    int refuse = 0;
    char sec[1200] = "";
    const char *p = now;
    bad[0] = 0;
    while (*p) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char line[1200];
        snprintf(line, sizeof line, "%.*s", (int)MT_MIN(n, sizeof line - 1), p);
        p += n + (e ? 1 : 0);
        if (line[0] == '[') { snprintf(sec, sizeof sec, "%s", line); continue; }
        char *eq = strstr(line, " = ");
        if (line[0] == ';' || !eq) continue;
        /* find the same key in the same section of `saved` */
        const char *s = strstr(saved, sec);
        if (!s) continue;
        char key[128];
        snprintf(key, sizeof key, "\n%.*s = ", (int)(eq - line), line);
        const char *k = strstr(s, key);
        const char *nextsec = strstr(s + 1, "\n[");
        if (!k || (nextsec && k > nextsec)) continue;
        k += strlen(key);
        const char *ke = strchr(k, '\n');
        size_t kn = ke ? (size_t)(ke - k) : strlen(k);
        if (strlen(eq + 3) == kn && !strncmp(eq + 3, k, kn)) continue;
        char keyname[128];
        snprintf(keyname, sizeof keyname, "%.*s", (int)(eq - line), line);
        int is_fixed = 0;
        for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
            if (!strcmp(keyname, fixed[i]) &&
                (!strcmp(sec, "[model]") || (!strcmp(sec, "[optim]") && !strcmp(keyname, "name"))))
                is_fixed = 1;
        if (is_fixed) {
            refuse = 1;
            snprintf(bad, nbad, "%s %s: checkpoint has '%.*s', the config now has '%s'", sec,
                     keyname, (int)kn, k, eq + 3);
        } else {
            log_info("resume: %s %s changed from '%.*s' to '%s' (applied)", sec, keyname, (int)kn, k,
                     eq + 3);
        }
    }
    return refuse;
}

/* Resume: find the checkpoint, check the config, load params and optimizer state. */
static int resume(Trainer *t, const char *how, int *resumed)
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
    for (int k = 0; k < t->nstates; k++) full[k] = xaligned(t->model.nparams * sizeof(float));
    st = ckpt_read(path, &t->model, &t->oc, t->params, full, &meta);
    if (!st) dp_scatter_states(t->dp, full, t->states, t->nstates);
    for (int k = 0; k < t->nstates; k++) free(full[k]);
    if (st) return st;
    t->step = meta.step;
    *resumed = 1;
    log_info("resumed from %s: step %llu, epoch %llu (saved by %d ranks, mode %s); now %d ranks",
             path, (unsigned long long)meta.step, (unsigned long long)meta.epoch, meta.world_size,
             meta.mode, t->world);
    return 0;
}

/* ---- checkpoint ---------------------------------------------------------------- */

/* rank 0: a metrics line per checkpoint with the training pause it caused */
static void ckpt_metrics(Trainer *t, double pause, int async)
{
    if (!t->metrics) return;
    metrics_begin(t->metrics, "checkpoint");
    metrics_int(t->metrics, "step", (int64_t)t->step);
    metrics_bool(t->metrics, "async", async);
    metrics_num(t->metrics, "pause_s", pause);
    metrics_end(t->metrics);
}

static int save_checkpoint(Trainer *t, int sync)
{
    float *full[2] = {NULL, NULL};
    int zero = dp_sharded(t->dp);
    for (int k = 0; k < t->nstates; k++)
        full[k] = zero ? xaligned(t->model.nparams * sizeof(float)) : t->states[k];
    dp_gather_states(t->dp, t->states, full, t->nstates);
    int st = 0;
    if (t->rank == 0) {
        CkptState s = {
            .step = t->step,
            .epoch = t->step / t->steps_per_epoch,
            .pos_in_epoch = (t->step % t->steps_per_epoch) * (uint64_t)t->B,
            .seed = (uint64_t)t->cfg.train_seed,
            .world_size = t->world,
            .mode = t->mode_desc,
            .config_text = t->config_text,
            .model = &t->model,
            .optim = &t->oc,
            .params = t->params,
            .states = (const float *const *)full,
            .nstates = t->nstates,
        };
        double t0 = now_s();
        char path[1024] = "";
        if (t->ckpt_async && !sync) {
            /* whole slabs (no ZeRO gather buffers): the writer copies them while the next
             * forward/backward runs; the optimizer waits for the copy (ckpt_async_fence) */
            if (!zero) {
                st = ckpt_async_submit_deferred(t->ckpt_async, &s, t->ckpt_dir, t->cfg.ckpt_keep);
                if (!st) {
                    t->ckpt_fence = 1;
                    t->ckpt_pause = now_s() - t0;
                }
            } else {
                st = ckpt_async_submit(t->ckpt_async, &s, t->ckpt_dir, t->cfg.ckpt_keep);
                if (!st) ckpt_metrics(t, now_s() - t0, 1);
            }
        } else {
            if (t->ckpt_async) st = ckpt_async_wait(t->ckpt_async, NULL, 0);
            if (!st) st = ckpt_write(t->ckpt_dir, &s, t->cfg.ckpt_keep, path, sizeof path);
            if (!st) ckpt_metrics(t, now_s() - t0, 0);
        }
    }
    if (zero)
        for (int k = 0; k < t->nstates; k++) free(full[k]);
    return agree(t, st, "checkpoint");
}

/* ---- the loop ------------------------------------------------------------------ */

typedef struct {
    Trainer *t;
    float lr, gscale;
    uint64_t step1;
    size_t lo, off; /* the piece being updated */
} OptimJob;

/* The optimizer on slab range [lo, hi), its state at [off, off + hi - lo) of the state
 * arrays.  As a DpUpdateFn: a piece of this rank's shard, fused into the reduction. */
static void optim_block(void *arg, size_t lo, size_t hi, size_t off)
{
    OptimJob *j = arg;
    Trainer *t = j->t;
    float *st_local[2] = {t->states[0] ? t->states[0] + off : NULL,
                          t->states[1] ? t->states[1] + off : NULL};
    optim_update(&t->oc, j->lr, j->step1, j->gscale, t->params + lo, t->grads + lo, st_local, 0,
                 hi - lo);
}

/* ExecRangeFn: [a, b) absolute slab range, whole-slab state (one rank) */
static void optim_chunk(void *arg, size_t a, size_t b) { optim_block(arg, a, b, a); }

/* ExecRangeFn: [a, b) relative to the piece j->lo, state at j->off */
static void optim_range(void *arg, size_t a, size_t b)
{
    const OptimJob *j = arg;
    optim_block(arg, j->lo + a, j->lo + b, j->off + a);
}

static float clip_and_scale(Trainer *t, double *norm)
{
    if (t->cfg.optim_clip_norm <= 0) { *norm = NAN; return 1.0f; }
    dp_clip_partials(t->dp, t->grads, t->clip_partial);
    return clip_scale(t->clip_partial, clip_nblocks(t->model.nparams),
                      (float)t->cfg.optim_clip_norm, norm);
}

static int run_eval(Trainer *t, uint64_t epoch)
{
    if (!t->test_ds) return 0;
    double loss = 0, acc = 0;
    int st = trainer_evaluate(t, t->test_ds, &loss, &acc);
    if (st) return st;
    if (t->rank == 0) {
        progress_clear();
        log_info("eval step %llu epoch %llu: test loss %.4f accuracy %.4f",
                 (unsigned long long)t->step, (unsigned long long)epoch, loss, acc);
        if (t->metrics) {
            metrics_begin(t->metrics, "eval");
            metrics_int(t->metrics, "step", (int64_t)t->step);
            metrics_int(t->metrics, "epoch", (int64_t)epoch);
            metrics_str(t->metrics, "split", "test");
            metrics_num(t->metrics, "loss", loss);
            metrics_num(t->metrics, "accuracy", acc);
            metrics_end(t->metrics);
        }
    }
    return 0;
}

static int train_loop(Trainer *t)
{
    const Config *c = &t->cfg;
    Progress prog;
    progress_init(&prog, c->run_progress, t->total_steps, t->rank == 0);
    double t_last_ckpt = now_s();
    double win_t0 = now_s(), win_wait = 0, win_compute = 0, win_exposed = 0, win_comm = 0;
    uint64_t win_steps = 0;
    double flags[3];

    while (t->step < t->total_steps) {
        uint64_t step = t->step;
        watchdog_step(step, "data");
        Batch *b = NULL;
        int st = loader_next(t->loader, step, &b);
        /* agreement: data status, stop signal, time-based checkpoint */
        flags[0] = signals_pending() ? 1 : 0;
        flags[1] = (t->rank == 0 && c->ckpt_every_minutes > 0 &&
                    now_s() - t_last_ckpt >= c->ckpt_every_minutes * 60)
                       ? 1 : 0;
        flags[2] = st ? 1 : 0;
        int fail_rank = -1;
        int code = agree_flags(t, st, flags, 3, &fail_rank);
        if (code) {
            if (fail_rank == t->rank) log_error("step %llu: %s", (unsigned long long)step, err_msg());
            if (t->rank == 0 && fail_rank != 0)
                log_error("step %llu: rank %d could not read its data (message above); stopping",
                          (unsigned long long)step, fail_rank);
            if (b) loader_release(t->loader, b);
            return code;
        }
        if (flags[0] > 0) {
            if (b) loader_release(t->loader, b);
            progress_clear();
            log_info("signal received: writing a checkpoint at step %llu and exiting with code 75 "
                     "(resume with --resume auto)", (unsigned long long)step);
            int cst = save_checkpoint(t, 1);
            return cst ? cst : MT_EX_TEMPFAIL;
        }
        if (flags[1] > 0) {
            int cst = save_checkpoint(t, 0);
            if (cst) { loader_release(t->loader, b); return cst; }
            t_last_ckpt = now_s();
        }

        double t0 = now_s();
        trace_event(t->trace, "data", t0 - b->wait_s, t0, step);
        /* one rank and no clipping: nothing needs the whole gradient before the update, so
         * the optimizer runs on each chunk as soon as its gradient is final (fused with the
         * last tree sum, spread over the worker threads) */
        float lr = sched_lr(&t->sc, step, t->total_steps);
        int fused = t->world == 1 && c->optim_clip_norm <= 0 && !t->ckpt_fence;
        OptimJob fj = {.t = t, .lr = lr, .gscale = 1.0f, .step1 = step + 1, .lo = 0, .off = 0};
        exec_set_chunk_hook(t->exec, fused ? optim_chunk : NULL, &fj);
        /* sharded deterministic reduction (node-shared memory, or ZeRO-1 over messages)
         * and no clipping: each piece of the rank's shard is updated as soon as its sum
         * over the ranks is formed */
        int fused_dp = dp_can_fuse_update(t->dp) && c->optim_clip_norm <= 0;
        if (dp_can_fuse_update(t->dp))
            dp_set_update(t->dp, fused_dp ? optim_block : NULL, &fj, t->params);
        watchdog_step(step, "compute");
        int64_t correct = 0;
        memset(t->mb_loss, 0, t->M * sizeof(double));
        dp_step_begin(t->dp, t->grads);
        exec_train(t->exec, t->params, b->x, b->y, (uint64_t)c->train_seed, step, t->mb_lo,
                   1.0f / (float)t->B, t->grads, t->mb_loss + t->mb_lo, &correct,
                   t->world > 1 ? dp_grad_ready : NULL, t->world > 1 ? dp_poll : NULL, t->dp);
        exec_set_chunk_hook(t->exec, NULL, NULL);
        double tc = now_s();
        trace_event(t->trace, "forward+backward", t0, tc, step);
        watchdog_step(step, "allreduce");
        dp_step_end(t->dp);
        trace_event(t->trace, "comm (exposed)", tc, now_s(), step);
        win_wait += b->wait_s;
        loader_release(t->loader, b);

        /* loss: disjoint contributions -> exact sum; then the canonical tree */
        comm_allreduce(t->comm, t->mb_loss, (size_t)t->M, COMM_F64);
        double loss = exec_tree_sum_f64(t->mb_loss, 0, t->M) / t->B;
        if (!isfinite(loss)) {
            int bad = 0;
            while (bad < t->M && isfinite(t->mb_loss[bad])) bad++;
            int bad_rank = (int)(((int64_t)bad * t->world + t->world - 1) / t->M);
            for (int r = 0; r < t->world; r++)
                if (bad >= (int)((int64_t)r * t->M / t->world) &&
                    bad < (int)((int64_t)(r + 1) * t->M / t->world))
                    bad_rank = r;
            progress_clear();
            log_info("step %llu: loss is %g (micro-batch %d, computed on rank %d): training "
                     "diverged; lower optim.lr or set optim.clip_norm",
                     (unsigned long long)step, loss, bad, bad_rank);
            return MT_EX_SOFTWARE;
        }
        if (t->ckpt_fence) { /* the async snapshot must be taken before the update */
            double w = ckpt_async_fence(t->ckpt_async);
            t->ckpt_pause += w;
            t->ckpt_fence = 0;
            ckpt_metrics(t, t->ckpt_pause, 1);
            log_info("checkpoint of step %llu: snapshot taken in the background; training "
                     "paused %.4f s", (unsigned long long)step, t->ckpt_pause);
        }
        double norm = NAN;
        float gscale = clip_and_scale(t, &norm);
        for (int i = 0; i < dp_npieces(t->dp) && !fused && !fused_dp; i++) {
            size_t hi;
            OptimJob oj = {.t = t, .lr = lr, .gscale = gscale, .step1 = step + 1};
            dp_piece(t->dp, i, &oj.lo, &hi, &oj.off);
            exec_parallel_range(t->exec, hi - oj.lo, optim_range, &oj);
        }
        dp_allgather_params(t->dp, t->params);
        t->step = step + 1;
        double t1 = now_s();
        trace_event(t->trace, "loss+optimizer", tc + dp_exposed_s(t->dp), t1, step);
        win_compute += t1 - t0;
        win_exposed += dp_exposed_s(t->dp);
        win_comm += dp_comm_s(t->dp);
        win_steps++;

        uint64_t epoch = step / t->steps_per_epoch;
        int end_of_epoch = t->step % t->steps_per_epoch == 0;
        int log_now = t->step % (uint64_t)c->train_log_every == 0 || t->step == t->total_steps;
        if (t->rank == 0) {
            double sps = win_steps * (double)t->B / (t1 - win_t0);
            progress_update(&prog, t->step, epoch, loss, lr, sps);
            if (log_now && t->metrics) {
                metrics_begin(t->metrics, "train");
                metrics_int(t->metrics, "step", (int64_t)t->step);
                metrics_int(t->metrics, "epoch", (int64_t)epoch);
                metrics_num(t->metrics, "loss", loss);
                metrics_num(t->metrics, "lr", lr);
                metrics_num(t->metrics, "samples_per_s", sps);
                metrics_num(t->metrics, "data_wait_s", win_wait / win_steps);
                metrics_num(t->metrics, "compute_s", win_compute / win_steps);
                metrics_num(t->metrics, "comm_exposed_s", win_exposed / win_steps);
                metrics_num(t->metrics, "comm_s", win_comm / win_steps);
                if (!isnan(norm)) metrics_num(t->metrics, "grad_norm", norm);
                metrics_int(t->metrics, "ranks", t->world);
                metrics_end(t->metrics);
            }
        }
        if (log_now) {
            win_t0 = now_s();
            win_wait = win_compute = win_exposed = win_comm = 0;
            win_steps = 0;
        }
        int eval_now = c->train_eval_every > 0 ? t->step % (uint64_t)c->train_eval_every == 0
                                               : end_of_epoch;
        if (eval_now || t->step == t->total_steps) {
            watchdog_step(step, "eval");
            double te = now_s();
            st = run_eval(t, epoch);
            trace_event(t->trace, "eval", te, now_s(), step);
            if (st) return st;
        }
        if (c->ckpt_every_steps > 0 && t->step % (uint64_t)c->ckpt_every_steps == 0 &&
            t->step < t->total_steps) {
            st = save_checkpoint(t, 0);
            if (st) return st;
            t_last_ckpt = now_s();
        }
    }
    progress_done(&prog);
    return 0;
}

/* ---- set-up and tear-down ------------------------------------------------------- */

static void trainer_free(Trainer *t)
{
    watchdog_stop();
    if (t->ckpt_async) ckpt_async_destroy(t->ckpt_async);
    loader_destroy(t->loader);
    exec_destroy(t->exec);
    if (t->train_ds) dataset_close(t->train_ds);
    if (t->test_ds) dataset_close(t->test_ds);
    if (t->metrics) metrics_close(t->metrics);
    if (t->trace && trace_close(t->trace)) log_error("%s", err_msg());
    if (!t->dp || t->params != dp_shared_params(t->dp)) free(t->params);
    if (!t->dp || t->grads != dp_shared_grads(t->dp)) free(t->grads);
    for (int i = 0; i < 2; i++) free(t->states[i]);
    free(t->mb_loss);
    free(t->clip_partial);
    if (t->dp) dp_destroy(t->dp); /* after the slabs it may own are no longer used */
    free(t->eval_x);
    free(t->eval_y);
    free(t->eval_buf);
    free(t->config_text);
    if (t->model.layers) model_free(&t->model);
}

int train_main(int argc, char **argv)
{
    static Trainer T;
    Trainer *t = &T;
    memset(t, 0, sizeof *t);
    int st = comm_create(&t->comm, NULL);
    if (st) { log_error("%s", err_msg()); return st; }
    t->rank = t->comm->rank;
    t->world = t->comm->size;
    t->agree_buf = xcalloc(8 + (size_t)t->world, sizeof(double));
    signals_install();

    TrainArgs a;
    st = parse_args(argc, argv, &a);
    if (!st) st = load_config(t, &a);
    if (!st) st = setup_optim(t);
    if (!st) st = setup_split(t);
    if ((st = agree(t, st, "configuration"))) goto out;
    t->config_text = config_to_string(&t->cfg);
    const Config *c = &t->cfg;

    /* threads per rank: cores of this process / ranks per node unless set */
    int local = t->comm->local_size;
    int cores = cores_available();
    t->threads = c->train_threads > 0 ? c->train_threads : MT_MAX(1, cores / MT_MAX(1, local));
    int nmb = t->mb_hi - t->mb_lo;
    t->threads = MT_MIN(t->threads, nmb);

    if (c->run_dir[0]) snprintf(t->run_dir, sizeof t->run_dir, "%s", c->run_dir);
    else snprintf(t->run_dir, sizeof t->run_dir, "runs/%s", c->run_name);
    if (c->ckpt_dir[0]) snprintf(t->ckpt_dir, sizeof t->ckpt_dir, "%s", c->ckpt_dir);
    else path_cat(t->ckpt_dir, sizeof t->ckpt_dir, t->run_dir, "/checkpoints");

    st = open_data(t);
    if (!st) st = build_model(t);
    if ((st = agree(t, st, "opening the data and building the model"))) goto out;

    const DatasetInfo *di = dataset_info(t->train_ds);
    t->steps_per_epoch = (uint64_t)(di->num_samples / t->B);
    t->total_steps = c->train_steps > 0 ? (uint64_t)c->train_steps
                                        : (uint64_t)c->train_epochs * t->steps_per_epoch;
    snprintf(t->mode_desc, sizeof t->mode_desc, "allreduce/%s%s", c->parallel_reduce,
             c->parallel_zero ? "/zero1" : "");

    model_init_params(&t->model, t->params, !strcmp(c->model_init, "xavier") ? INIT_XAVIER : INIT_HE,
                      (uint64_t)c->train_seed);
    DpConf dc = {
        .reduce = !strcmp(c->parallel_reduce, "fast") ? DP_REDUCE_FAST : DP_REDUCE_DETERMINISTIC,
        .bucket_mb = c->parallel_bucket_mb,
        .zero = c->parallel_zero,
        /* auto: shared memory from 3 ranks per node on.  Measured on the 2-vCPU VM
         * (results/train-throughput.csv): 4 ranks +22 % over messages, 2 ranks -6 %
         * (with two ranks the message path moves the same bytes, in bulk kernel copies,
         * and each rank keeps its parameters in its own cache) */
        .shm = !strcmp(c->parallel_shm, "true") ||
               (!strcmp(c->parallel_shm, "auto") && t->comm->local_size >= 3),
        .nparams = t->model.nparams,
    };
    t->dp = dp_create(t->comm, &dc);
    /* shared memory: the gradient slab every rank reads its shards from */
    t->grads = dp_shm(t->dp) ? dp_shared_grads(t->dp)
                             : xaligned(t->model.nparams * sizeof(float));
    for (int k = 0; k < t->nstates; k++)
        t->states[k] = xaligned(dp_state_len(t->dp) * sizeof(float));
    int resumed = 0;
    st = resume(t, a.resume, &resumed);
    if ((st = agree(t, st, "resume"))) goto out;
    if (dp_shm(t->dp)) { /* from now on the node trains one parameter slab */
        float *sp = dp_shared_params(t->dp);
        if (t->comm->local_rank == 0) memcpy(sp, t->params, t->model.nparams * sizeof(float));
        comm_barrier(t->comm);
        free(t->params);
        t->params = sp;
    }

    /* run directory, resolved config, metrics (rank 0) */
    if (t->rank == 0) {
        if (mkdir_p(t->run_dir) != 0)
            st = err_set(MT_EX_CANTCREAT, "cannot create the run directory %s: %s (set run.dir "
                         "or run.name)", t->run_dir, strerror(errno));
        if (!st) {
            char p[4096];
            snprintf(p, sizeof p, "%s/config.ini", t->run_dir);
            FILE *f = fopen(p, "w");
            if (!f) st = err_set(MT_EX_CANTCREAT, "cannot write %s: %s", p, strerror(errno));
            else {
                config_write(c, f, 1);
                if (fclose(f) != 0) st = err_set(MT_EX_IOERR, "cannot write %s: %s", p, strerror(errno));
            }
            snprintf(p, sizeof p, "%s/metrics.jsonl", t->run_dir);
            if (!st && !(t->metrics = metrics_open(p, resumed))) st = err_code() ? err_code() : MT_EX_CANTCREAT;
        }
        if (!st && c->ckpt_async) {
            t->ckpt_async = ckpt_async_create();
            ckpt_async_reserve(t->ckpt_async, t->model.nparams, t->nstates);
        }
    }
    if (!st && c->run_trace) {
        /* every rank writes its own trace file into the run directory rank 0 created */
        comm_barrier(t->comm);
        if (!(t->trace = trace_open(t->run_dir, t->rank))) st = err_code();
    } else if (c->run_trace) {
        comm_barrier(t->comm);
    }
    if ((st = agree(t, st, "creating the run directory"))) goto out;

    /* MPITRAIN_EXEC=per-mb: the per-micro-batch path even for dense-only models (a
     * diagnostic; both paths give the same bits, tests/e2e/test_determinism_threads.sh) */
    const char *ex = getenv("MPITRAIN_EXEC");
    ExecConf ec = {.threads = t->threads, .mb_rows = t->mb_rows, .nmb = nmb,
                   .per_mb = ex && !strcmp(ex, "per-mb")};
    t->exec = exec_create(&t->model, &ec);
    LoaderConf lc = {
        .seed = (uint64_t)c->train_seed,
        .shuffle = c->data_shuffle,
        .batch = t->B,
        .micro_batches = t->M,
        .mb_lo = t->mb_lo,
        .mb_hi = t->mb_hi,
        .prefetch = c->data_prefetch,
    };
    st = loader_create(t->train_ds, &lc, t->step, &t->loader);
    if ((st = agree(t, st, "starting the data loader"))) goto out;

    char desc[512];
    model_describe(&t->model, desc, sizeof desc);
    log_info("mpitrain %s: %s", MPITRAIN_VERSION, desc);
    log_info("data: %s (%lld samples, %d classes), test: %s; %llu steps/epoch, %llu steps",
             c->data_train, (long long)di->num_samples, di->num_classes,
             c->data_test[0] ? c->data_test : "none", (unsigned long long)t->steps_per_epoch,
             (unsigned long long)t->total_steps);
    log_info("parallel: %d rank%s x %d thread%s (%d cores here, %d rank%s on "
             "this node), batch %d = %d micro-batches of %d, reduce = %s%s",
             t->world, t->world > 1 ? "s" : "", t->threads, t->threads > 1 ? "s" : "", cores,
             local, local > 1 ? "s" : "", t->B, t->M, t->mb_rows, c->parallel_reduce,
             dp_shm(t->dp) ? " through node-shared memory (one parameter slab per node, "
                             "optimizer sharded)"
             : c->parallel_zero && t->world > 1 ? ", ZeRO-1" : "");
    if (cores == 1 && local == 1 && sysconf(_SC_NPROCESSORS_ONLN) > 1)
        log_info("warning: this rank may use only 1 of the node's %ld cores: mpirun binds each "
                 "rank to a core by default (np <= 2); run mpirun with --bind-to none (or "
                 "--map-by slot:PE=N) to let its threads use the cores",
                 sysconf(_SC_NPROCESSORS_ONLN));
    if (!t->n_invariant)
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

    watchdog_start(c->run_step_timeout_s, t->rank);
    st = train_loop(t);
    if (st == 0 || st == MT_EX_TEMPFAIL) {
        /* the final state is always checkpointed: resume, eval and bitwise comparisons use it */
        if (st == 0) st = save_checkpoint(t, 1);
    }
    if (t->rank == 0 && t->ckpt_async) {
        int ast = ckpt_async_wait(t->ckpt_async, NULL, 0);
        if (ast && !st) { log_error("%s", err_msg()); st = ast; }
    }
    if (t->rank == 0 && st == 0) {
        printf("run directory: %s\n", t->run_dir);
        fflush(stdout);
    }
out:
    trainer_free(t);
    free(t->agree_buf);
    comm_destroy(t->comm);
    return st;
}
