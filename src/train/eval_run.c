/* eval_run.c — train_eval (train.h): the weights of a run's checkpoint on a dataset. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/common.h"
#include "core/cpuinfo.h"
#include "train/train.h"
#include "train/train_impl.h"

static int eval_run(Trainer *t, const char *target, const char *data, int threads)
{
    char path[1024];
    struct stat sb;
    if (stat(target, &sb) != 0)
        return err_set(MT_EX_NOINPUT, "eval: %s does not exist (give a run directory or a checkpoint file)", target);
    int st;
    if (S_ISDIR(sb.st_mode)) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/checkpoints", target);
        if (stat(dir, &sb) != 0) snprintf(dir, sizeof dir, "%s", target);
        st = ckpt_find_resume(dir, path, sizeof path);
        if (st) return st;
    } else {
        snprintf(path, sizeof path, "%s", target);
    }
    char *text = NULL;
    st = ckpt_read_config(path, &text);
    if (st) return st;
    config_defaults(&t->cfg);
    st = config_load_string(&t->cfg, text, path);
    free(text);
    if (st) return st;
    const char *dpath = data ? data : t->cfg.data_test;
    if (!dpath[0]) return err_set(MT_EX_USAGE, "eval: the run has no data.test; give --data DIR");
    st = dataset_open(dpath, t->cfg.data_cache_mb, &t->test_ds);
    if (st) return st;
    const DatasetInfo *di = dataset_info(t->test_ds);
    st = model_build(&t->model, t->cfg.model_layers, di->sample_size, di->num_classes);
    if (st) {
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", err_msg());
        return err_set(st, "eval: dataset %s does not fit the run's model: %s", dpath, msg);
    }
    t->params = device_alloc(t->dev, t->model.nparams * sizeof(float));
    st = ckpt_read(path, &t->model, NULL, t->params, NULL, NULL);
    if (st) return st;
    ExecConf ec = {.threads = threads, .mb_rows = EVAL_CHUNK, .nmb = 1, .dev = t->dev};
    t->exec = exec_create(&t->model, &ec);
    double loss, acc;
    st = trainer_evaluate(t, t->test_ds, &loss, &acc);
    if (st) return st;
    if (t->rank == 0) {
        printf("{\"checkpoint\":\"%s\",\"data\":\"%s\",\"samples\":%lld,\"loss\":%.6f,\"accuracy\":%.6f}\n",
               path, dpath, (long long)di->num_samples, loss, acc);
        fflush(stdout);
    }
    return 0;
}

int train_eval(const char *target, const char *data, int threads)
{
    static Trainer T;
    Trainer *t = &T;
    int st = train_start(t);
    if (st) return st;
    /* every rank evaluates a share of the chunks */
    t->split = (StrategySplit){.computes = 1, .worker = t->rank, .workers = t->world};
    if (threads <= 0) threads = MT_MAX(1, cpu_cores_online() / MT_MAX(1, t->comm->local_size));
    st = device_create("cpu", t->comm->local_rank, &t->dev);
    if (!st) st = eval_run(t, target, data, threads);
    int failed = -1;
    int code = comm_agree(t->comm, st, &failed);
    if (code && failed == t->rank) log_error("%s", err_msg());
    train_teardown(t);
    return code;
}
