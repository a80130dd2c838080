/* train_check.c — `mpitrain check`: the pre-flight of a job.  Everything `train` checks
 * before its first step, by the same functions (train_setup.c) and in the same order, so
 * the verdict and the exit code are those `train` would give: the config, the split for
 * a rank count, the datasets (index.h5 and every shard header), the datasets against
 * each other and the model, the model.  No MPI, no run directory, no sample read. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "train/train_impl.h"

static void shape_text(const DatasetInfo *d, char *buf, size_t n)
{
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < d->ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, "%s%d", i ? "x" : "", d->shape[i]);
}

static void print_data(FILE *out, const char *what, const DatasetInfo *d)
{
    char shape[64];
    shape_text(d, shape, sizeof shape);
    fprintf(out, "%-10s %s: %lld samples of %s %s, %d classes, %d shard%s\n", what, d->dir,
            (long long)d->num_samples, d->dtype == DTYPE_UINT8 ? "uint8" : "float32", shape, d->num_classes,
            d->nshards, d->nshards == 1 ? "" : "s");
}

/* The summary of a job that passed every check. */
static void print_summary(FILE *out, const TrainOptions *o, const Config *c, const Model *m,
                          const DatasetInfo *tr, const DatasetInfo *te, int ranks,
                          const int *mb_rank, int n_invariant)
{
    char desc[512];
    model_describe(m, desc, sizeof desc);
    uint64_t spe = (uint64_t)(tr->num_samples / c->train_batch);
    uint64_t steps = train_total_steps(c, spe);
    int M = c->train_micro_batches;
    fprintf(out, "job        %s%s: valid\n", o->job,
            o->nsets ? " with its --set overrides" : "");
    fprintf(out, "model      %s\n", desc);
    print_data(out, "data", tr);
    if (te) print_data(out, "test", te);
    else fprintf(out, "test       none (data.test is empty: no evaluation)\n");
    if (c->train_steps > 0)
        fprintf(out, "steps      %llu (train.steps; %llu steps per epoch)\n",
                (unsigned long long)steps, (unsigned long long)spe);
    else
        fprintf(out, "steps      %llu = %d epochs x %llu steps\n", (unsigned long long)steps,
                c->train_epochs, (unsigned long long)spe);
    fprintf(out, "batch      %d = %d micro-batches of %d\n", c->train_batch, M,
            c->train_batch / M);
    int lo = M, hi = 0; /* micro-batches per rank, fewest and most */
    for (int r = 0, k = 0; r < ranks; r++) {
        int n = 0;
        while (k < M && mb_rank[k] == r) k++, n++;
        lo = n < lo ? n : lo;
        hi = n > hi ? n : hi;
    }
    char per[32];
    if (lo == hi) snprintf(per, sizeof per, "%d", lo);
    else snprintf(per, sizeof per, "%d to %d", lo, hi);
    fprintf(out, "ranks      %d (--ranks): %s micro-batch%s per rank, %s\n", ranks, per,
            hi == 1 ? "" : "es",
            n_invariant ? "the same bits as 1 rank"
                        : "deterministic, but NOT bitwise equal to other rank counts");
    fprintf(out, "optimizer  %s, lr %g, schedule %s%s\n", c->optim_name, c->optim_lr,
            c->optim_schedule, c->optim_clip_norm > 0 ? ", clipping" : "");
    if (c->run_dir[0]) fprintf(out, "run        %s\n", c->run_dir);
    else fprintf(out, "run        runs/%s\n", c->run_name);
    fprintf(out, "(not read: the samples themselves; `mpitrain data verify DIR` reads them all)\n");
}

int train_check(const TrainOptions *o, int ranks, FILE *out)
{
    Config c;
    StrategyConf sconf;
    const StrategyOps *ops = NULL;
    StrategySplit split;
    Dataset *tr = NULL, *te = NULL;
    Model m;
    memset(&m, 0, sizeof m);
    int *mb_rank = NULL;
    int st = train_config_load(&c, o);
    if (!st) {
        mb_rank = xcalloc((size_t)c.train_micro_batches, sizeof(int));
        st = train_plan_split(&c, 0, ranks, &sconf, &ops, &split, mb_rank);
    }
    if (!st) st = dataset_open(c.data_train, 0, &tr);
    if (!st && c.data_test[0]) st = dataset_open(c.data_test, 0, &te);
    if (!st) st = train_check_data(&c, dataset_info(tr), te ? dataset_info(te) : NULL);
    if (!st) st = train_build_model(&m, &c, dataset_info(tr));
    if (st) log_error("%s", err_msg());
    else print_summary(out, o, &c, &m, dataset_info(tr), te ? dataset_info(te) : NULL, ranks,
                       mb_rank, split.n_invariant);
    free(mb_rank);
    if (m.layers) model_free(&m);
    dataset_close(tr);
    dataset_close(te);
    return st;
}
