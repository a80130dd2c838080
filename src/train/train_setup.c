/* train_setup.c — set-up and tear-down of a training run: the phases train_run goes
 * through before the first step, each ending in an agreement of all ranks. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/cpuinfo.h"
#include "core/gemm_plan.h"
#include "parallel/signals.h"
#include "parallel/watchdog.h"
#include "train/train_impl.h"

int train_agree(Trainer *t, int st, const char *phase)
{
    int failed = -1;
    int code = comm_agree(t->comm, st, &failed);
    if (code && failed == t->rank) log_error("%s", err_msg());
    if (code && t->rank == 0 && failed != 0)
        log_error("%s failed on rank %d (see its message above); exiting with code %d", phase,
                  failed, code);
    return code;
}

int train_start(Trainer *t)
{
    memset(t, 0, sizeof *t);
    int st = comm_create(&t->comm, NULL);
    if (st) {
        log_error("%s", err_msg());
        return st;
    }
    t->rank = t->comm->rank;
    t->world = t->comm->size;
    return 0;
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

int train_config_load(Config *c, const TrainOptions *o)
{
    config_defaults(c);
    int st = config_load(c, o->job);
    for (int i = 0; !st && i < o->nsets; i++) st = config_set(c, o->sets[i], "--set");
    if (!st) st = config_validate(c);
    return st;
}

/* [optim] -> the optimizer and the learning-rate schedule */
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
    char why[512];
    if (gemm_plan_check_env(why, sizeof why) != 0) return err_set(MT_EX_CONFIG, "%s", why);
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

int train_plan_split(const Config *c, int rank, int world, StrategyConf *sconf,
                     const StrategyOps **ops, StrategySplit *split, int *mb_rank)
{
    int B = c->train_batch, M = c->train_micro_batches;
    if (B % M != 0)
        return err_set(MT_EX_CONFIG,
                       "train.batch = %d is not divisible by train.micro_batches = %d: the batch is "
                       "cut into micro-batches of equal size; choose a divisor of the batch",
                       B, M);
    *sconf = (StrategyConf){
        .mode = c->parallel_mode,
        .reduce = c->parallel_reduce,
        .bucket_mb = c->parallel_bucket_mb,
        .zero = c->parallel_zero,
        .shm = c->parallel_shm,
        .servers = c->parallel_servers,
        .consistency = c->parallel_consistency,
        .staleness = c->parallel_staleness,
        .lookahead = c->parallel_lookahead,
        .server_ranks = c->parallel_server_ranks,
        .steal = c->parallel_steal,
    };
    if (!(*ops = strategy_find(c->parallel_mode))) return err_code();
    int st = (*ops)->plan(sconf, rank, world, M, split);
    if (st || !mb_rank) return st;
    for (int r = 0; r < world; r++) {
        StrategySplit s;
        (*ops)->plan(sconf, r, world, M, &s);
        for (int k = s.mb_lo; k < s.mb_hi; k++) mb_rank[k] = r;
    }
    return 0;
}

/* The batch in micro-batches, and the strategy's split of them over the ranks (with the
 * rank of every micro-batch, for messages that name it). */
static int setup_split(Trainer *t)
{
    const Config *c = &t->cfg;
    t->B = c->train_batch;
    t->M = c->train_micro_batches;
    t->mb_rows = t->B / t->M;
    t->mb_rank = xcalloc((size_t)t->M, sizeof(int));
    return train_plan_split(c, t->rank, t->world, &t->sconf, &t->sops, &t->split, t->mb_rank);
}

int train_setup_config(Trainer *t, const TrainOptions *o)
{
    int st = train_config_load(&t->cfg, o);
    if (!st) st = setup_optim(t);
    if (!st) st = setup_split(t);
    if (!st) st = straggler_parse(t->cfg.run_slow, t->world, &t->slow);
    if (!st) st = device_create("cpu", t->comm->local_rank, &t->dev);
    if (!st) st = signals_install(t->cfg.run_stop_signals);
    if ((st = train_agree(t, st, "configuration"))) return st;
    t->config_text = config_to_string(&t->cfg);
    const Config *c = &t->cfg;
    t->threads = cpu_threads_per_rank(c->train_threads, t->comm->local_size,
                                      t->split.mb_hi - t->split.mb_lo);
    if (c->run_dir[0]) snprintf(t->run_dir, sizeof t->run_dir, "%s", c->run_dir);
    else snprintf(t->run_dir, sizeof t->run_dir, "runs/%s", c->run_name);
    if (c->ckpt_dir[0]) snprintf(t->ckpt_dir, sizeof t->ckpt_dir, "%s", c->ckpt_dir);
    else path_cat(t->ckpt_dir, sizeof t->ckpt_dir, t->run_dir, "/checkpoints");
    return 0;
}

int train_check_data(const Config *c, const DatasetInfo *a, const DatasetInfo *b)
{
    if (b && (a->sample_size != b->sample_size || a->num_classes != b->num_classes))
        return err_set(MT_EX_DATAERR,
                       "data.test %s (samples of %d values, %d classes) does not match "
                       "data.train %s (%d values, %d classes)",
                       c->data_test, b->sample_size, b->num_classes, c->data_train,
                       a->sample_size, a->num_classes);
    if (c->model_input > 0 && c->model_input != a->sample_size)
        return err_set(MT_EX_DATAERR,
                       "data.train %s has samples of %d values (shape %s) but model.input = %d: "
                       "the dataset does not fit the model's input; fix model.input or data.train",
                       c->data_train, a->sample_size,
                       a->ndim == 1 ? "1-d" : a->ndim == 2 ? "2-d" : "3-d", c->model_input);
    if (a->num_samples < c->train_batch)
        return err_set(MT_EX_DATAERR,
                       "data.train %s has %lld samples, fewer than one batch (train.batch = %d)",
                       c->data_train, (long long)a->num_samples, c->train_batch);
    return 0;
}

int train_build_model(Model *m, const Config *c, const DatasetInfo *di)
{
    int st = model_build(m, c->model_layers, di->sample_size, di->num_classes);
    if (st) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", err_msg());
        return err_set(st, "model.layers: %s", msg);
    }
    return 0;
}

uint64_t train_total_steps(const Config *c, uint64_t steps_per_epoch)
{
    return c->train_steps > 0 ? (uint64_t)c->train_steps
                              : (uint64_t)c->train_epochs * steps_per_epoch;
}

static int open_data(Trainer *t)
{
    const Config *c = &t->cfg;
    int st = dataset_open(c->data_train, c->data_cache_mb, &t->train_ds);
    if (st) return st;
    if (c->data_test[0] && (st = dataset_open(c->data_test, c->data_cache_mb, &t->test_ds)))
        return st;
    return train_check_data(c, dataset_info(t->train_ds),
                            t->test_ds ? dataset_info(t->test_ds) : NULL);
}

static int build_model(Trainer *t)
{
    int st = train_build_model(&t->model, &t->cfg, dataset_info(t->train_ds));
    if (st) return st;
    t->params = device_alloc(t->dev, t->model.nparams * sizeof(float));
    t->mb_loss = xcalloc(t->M, sizeof(double));
    t->clip_partial = xcalloc(clip_nblocks(t->model.nparams), sizeof(double));
    return 0;
}

int train_setup_model(Trainer *t)
{
    const Config *c = &t->cfg;
    int st = open_data(t);
    if (!st) st = build_model(t);
    if ((st = train_agree(t, st, "opening the data and building the model"))) return st;
    const DatasetInfo *di = dataset_info(t->train_ds);
    t->steps_per_epoch = (uint64_t)(di->num_samples / t->B);
    t->total_steps = train_total_steps(c, t->steps_per_epoch);
    model_init_params(&t->model, t->params, !strcmp(c->model_init, "xavier") ? INIT_XAVIER : INIT_HE,
                      (uint64_t)c->train_seed);
    st = strategy_create(t->sops, t->comm, &t->sconf, t->model.nparams, t->nstates, &t->strategy);
    if ((st = train_agree(t, st, "starting the parallel strategy"))) return st;
    /* the strategy may own the gradient slab (node-shared memory) */
    t->grads = strategy_shared_grads(t->strategy);
    if (!t->grads) t->grads = device_alloc(t->dev, t->model.nparams * sizeof(float));
    for (int k = 0; k < t->nstates; k++)
        t->states[k] = device_alloc(t->dev, strategy_state_len(t->strategy) * sizeof(float));
    return 0;
}

/* rank 0: the run directory, the resolved config in it, metrics.jsonl, the async writer */
static int create_run_dir(Trainer *t, int resumed)
{
    const Config *c = &t->cfg;
    if (mkdir_p(t->run_dir) != 0)
        return err_set(MT_EX_CANTCREAT, "cannot create the run directory %s: %s (set run.dir "
                       "or run.name)", t->run_dir, strerror(errno));
    char p[4096];
    snprintf(p, sizeof p, "%s/config.ini", t->run_dir);
    FILE *f = fopen(p, "w");
    if (!f) return err_set(MT_EX_CANTCREAT, "cannot write %s: %s", p, strerror(errno));
    config_write(c, f, 1);
    if (fclose(f) != 0) return err_set(MT_EX_IOERR, "cannot write %s: %s", p, strerror(errno));
    snprintf(p, sizeof p, "%s/metrics.jsonl", t->run_dir);
    if (!(t->metrics = metrics_open(p, resumed))) return err_code() ? err_code() : MT_EX_CANTCREAT;
    if (c->ckpt_async) {
        t->ckpt_async = ckpt_async_create();
        ckpt_async_reserve(t->ckpt_async, t->model.nparams, t->nstates);
    }
    return 0;
}

int train_setup_run(Trainer *t, int resumed)
{
    const Config *c = &t->cfg;
    /* from now on the job trains the slab the strategy says (one per node in shared memory) */
    float *own = t->params;
    strategy_share_params(t->strategy, &t->params);
    if (t->params != own) device_free(t->dev, own);
    int st = 0;
    if (t->rank == 0) st = create_run_dir(t, resumed);
    if (c->run_trace) {
        /* every rank writes its own trace file into the run directory rank 0 created */
        comm_barrier(t->comm);
        if (!st && !(t->trace = trace_open(t->run_dir, t->rank))) st = err_code();
    }
    if ((st = train_agree(t, st, "creating the run directory"))) return st;

    /* MPITRAIN_EXEC=per-mb: the per-micro-batch path even for dense-only models (a
     * diagnostic; both paths give the same bits, tests/e2e/test_determinism_threads.sh) */
    const char *ex = getenv("MPITRAIN_EXEC");
    ExecConf ec = {.threads = t->threads, .mb_rows = t->mb_rows,
                   .nmb = MT_MAX(1, t->split.mb_hi - t->split.mb_lo), /* a server: 1, unused */
                   .per_mb = ex && !strcmp(ex, "per-mb"), .dev = t->dev};
    t->exec = exec_create(&t->model, &ec);
    LoaderConf lc = {
        .seed = (uint64_t)c->train_seed,
        .shuffle = c->data_shuffle,
        .batch = t->B,
        .micro_batches = t->M,
        .mb_lo = t->split.steal ? 0 : t->split.mb_lo, /* stealing: any share may be ours */
        .mb_hi = t->split.steal ? t->M : t->split.mb_hi,
        .prefetch = c->data_prefetch,
    };
    /* only ranks that compute read training data (a parameter server does not) */
    if (t->split.computes) st = loader_create(t->train_ds, &lc, t->step, &t->loader);
    if ((st = train_agree(t, st, "starting the data loader"))) return st;
    train_report_banner(t, cpu_cores_available());
    return 0;
}

void train_teardown(Trainer *t)
{
    watchdog_stop();
    if (t->ckpt_async) ckpt_async_destroy(t->ckpt_async);
    loader_destroy(t->loader);
    exec_destroy(t->exec);
    if (t->train_ds) dataset_close(t->train_ds);
    if (t->test_ds) dataset_close(t->test_ds);
    if (t->metrics && metrics_close(t->metrics)) log_error("%s", err_msg());
    if (t->trace && trace_close(t->trace)) log_error("%s", err_msg());
    if (t->dev) {
        if (!t->strategy || !strategy_owns_params(t->strategy, t->params))
            device_free(t->dev, t->params);
        if (!t->strategy || t->grads != strategy_shared_grads(t->strategy))
            device_free(t->dev, t->grads);
        for (int i = 0; i < 2; i++) device_free(t->dev, t->states[i]);
    }
    free(t->mb_loss);
    free(t->clip_partial);
    free(t->mb_rank);
    strategy_destroy(t->strategy); /* after the slabs it may own are no longer used */
    free(t->eval_x);
    free(t->eval_y);
    free(t->eval_buf);
    free(t->config_text);
    if (t->model.layers) model_free(&t->model);
    device_destroy(t->dev);
    comm_destroy(t->comm);
    memset(t, 0, sizeof *t);
}
