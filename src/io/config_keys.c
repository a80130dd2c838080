/* config_keys.c — the key table of Config (section, name, type, field, bounds or allowed
 * values, default as text, one-line help) and how values are described and formatted.
 * Loading, --set, writing, help and defaults all walk this table (config_impl.h). */
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "io/config_impl.h"

#define FIELD(f) .off = offsetof(Config, f), .size = sizeof(((Config *)0)->f)
#define K_INT(sec, name, f, lo, hi, d, h) \
    { sec, name, KT_INT, FIELD(f), .imin = (lo), .imax = (hi), .def = d, .help = h }
#define K_I64(sec, name, f, lo, hi, d, h) \
    { sec, name, KT_INT64, FIELD(f), .imin = (lo), .imax = (hi), .def = d, .help = h }
#define K_DBL(sec, name, f, lo_open, lo, hi, hi_open, d, h) \
    { sec, name, KT_DOUBLE, FIELD(f), .dmin = (lo), .dmax = (hi), .dmin_open = (lo_open), \
      .dmax_open = (hi_open), .def = d, .help = h }
#define K_BOOL(sec, name, f, d, h) { sec, name, KT_BOOL, FIELD(f), .def = d, .help = h }
#define K_STR(sec, name, f, minlen, d, h) \
    { sec, name, KT_STRING, FIELD(f), .imin = (minlen), .def = d, .help = h }
#define K_ENUM(sec, name, f, allowed_, d, h) \
    { sec, name, KT_ENUM, FIELD(f), .allowed = allowed_, .def = d, .help = h }

#define BIG ((int64_t)1000000000000000) /* 1e15: "no practical limit" for counts */
#define OPEN 1
#define CLOSED 0

const KeyDesc config_keys[] = {
    K_STR("model", "layers", model_layers, 1, "dense:512 relu dense:512 relu dense:10",
          "layer list: dense:N, relu|gelu|tanh, dropout:P; the last dense is the classes"),
    K_ENUM("model", "init", model_init, "he|xavier", "he",
           "weight init: he (normal, std sqrt(2/fan_in)) or xavier (uniform)"),
    K_INT("model", "input", model_input, 0, 16777216, "0",
          "features per input sample; 0 = take it from the dataset"),

    K_STR("data", "train", data_train, 1, "data/fmnist/train", "training dataset directory"),
    K_STR("data", "test", data_test, 0, "data/fmnist/test",
          "evaluation dataset directory (empty = no evaluation)"),
    K_INT("data", "cache_mb", data_cache_mb, 0, 1048576, "1024",
          "cache whole shards in memory up to this many MB per rank"),
    K_INT("data", "prefetch", data_prefetch, 1, 64, "4",
          "batches prepared ahead by the prefetch thread"),
    K_BOOL("data", "shuffle", data_shuffle, "true",
           "shuffle the sample order every epoch (order = f(seed, epoch))"),

    K_INT("train", "epochs", train_epochs, 0, 1000000, "10", "epochs to train (if steps = 0)"),
    K_I64("train", "steps", train_steps, 0, BIG, "0",
          "total optimizer steps; 0 = epochs * steps per epoch"),
    K_INT("train", "batch", train_batch, 1, 1048576, "128", "global batch size B (all ranks)"),
    K_INT("train", "micro_batches", train_micro_batches, 1, 65536, "4",
          "micro-batches M per global batch; the rank count must divide it"),
    K_INT("train", "threads", train_threads, 0, 1024, "0",
          "compute threads per rank; 0 = cores / ranks on the node"),
    K_I64("train", "seed", train_seed, 0, INT64_MAX, "42",
          "seed for init, shuffling and dropout"),
    K_INT("train", "eval_every", train_eval_every, 0, INT_MAX, "0",
          "steps between evaluations; 0 = at the end of every epoch"),
    K_INT("train", "log_every", train_log_every, 1, INT_MAX, "50",
          "steps between train lines in metrics.jsonl and the log"),

    K_ENUM("optim", "name", optim_name, "sgd|adamw", "sgd", "optimizer"),
    K_DBL("optim", "lr", optim_lr, OPEN, 0, 10, CLOSED, "0.05", "base learning rate"),
    K_DBL("optim", "momentum", optim_momentum, CLOSED, 0, 1, OPEN, "0.9",
          "sgd momentum; 0 = plain sgd"),
    K_BOOL("optim", "nesterov", optim_nesterov, "false", "sgd: Nesterov momentum"),
    K_DBL("optim", "beta1", optim_beta1, CLOSED, 0, 1, OPEN, "0.9", "adamw: first-moment decay"),
    K_DBL("optim", "beta2", optim_beta2, CLOSED, 0, 1, OPEN, "0.999",
          "adamw: second-moment decay"),
    K_DBL("optim", "eps", optim_eps, OPEN, 0, 1, CLOSED, "1e-8", "adamw: denominator epsilon"),
    K_DBL("optim", "weight_decay", optim_weight_decay, CLOSED, 0, 1, CLOSED, "0",
          "decoupled weight decay (p -= lr * wd * p), both optimizers"),
    K_ENUM("optim", "schedule", optim_schedule, "constant|step|cosine", "constant",
           "learning-rate schedule after warmup"),
    K_I64("optim", "warmup_steps", optim_warmup_steps, 0, BIG, "0",
          "linear warmup steps (all schedules)"),
    K_I64("optim", "step_size", optim_step_size, 1, BIG, "1000",
          "step schedule: multiply lr by gamma every step_size steps"),
    K_DBL("optim", "gamma", optim_gamma, OPEN, 0, 1, CLOSED, "0.1", "step schedule: factor"),
    K_DBL("optim", "min_lr", optim_min_lr, CLOSED, 0, 10, CLOSED, "0",
          "cosine schedule: lr reached at the last step"),
    K_DBL("optim", "clip_norm", optim_clip_norm, CLOSED, 0, 1e9, CLOSED, "0",
          "clip the global gradient norm to this; 0 = no clipping"),

    K_ENUM("parallel", "mode", parallel_mode, "allreduce|ps", "allreduce",
           "data parallel: allreduce, or ps (parameter servers)"),
    K_ENUM("parallel", "reduce", parallel_reduce, "deterministic|fast", "deterministic",
           "deterministic = same bits for any rank count; fast = library allreduce"),
    K_DBL("parallel", "bucket_mb", parallel_bucket_mb, OPEN, 0, 4096, CLOSED, "4",
          "gradient bucket size for overlapping communication with backward"),
    K_INT("parallel", "zero", parallel_zero, 0, 1, "0",
          "1 = ZeRO-1: shard optimizer state across ranks (allreduce mode)"),
    K_ENUM("parallel", "shm", parallel_shm, "auto|true|false", "auto",
           "deterministic reduce, every rank on one node: reduce through node-shared memory "
           "(one parameter slab per node, optimizer sharded and fused, same bits); auto = "
           "when 3 or more ranks share the node"),
    K_INT("parallel", "servers", parallel_servers, 1, 65536, "1",
          "ps mode: how many ranks are parameter servers (parallel.server_ranks says which)"),
    K_ENUM("parallel", "consistency", parallel_consistency, "sync|delayed|async|ssp", "sync",
           "ps mode: sync (the bits of allreduce with reduce = deterministic), delayed (step t "
           "computes on the parameters after step t - staleness: reproducible), ssp (on the "
           "newest parameters, at most staleness steps old), async (each push applied on "
           "arrival); ssp and async are not bitwise reproducible"),
    K_INT("parallel", "staleness", parallel_staleness, 0, 1000000, "2",
          "delayed: the fixed delay s in steps (0 = sync); ssp: steps a worker may run ahead "
          "of the slowest"),
    K_ENUM("parallel", "staleness_rule", parallel_staleness_rule, "momentum|none", "momentum",
           "delayed and ssp with staleness s > 0: momentum = the optimizer's momentum m (sgd; "
           "adamw: beta1) becomes max(0, m (1 + s) - s), so that it and the momentum a delay "
           "of s steps adds stay m; none = as configured (the bits of earlier versions)"),
    K_DBL("parallel", "lookahead", parallel_lookahead, CLOSED, 0, 64, CLOSED, "1",
          "delayed and ssp with staleness s > 0: a step t that computes on version v < t "
          "(delayed: v = t - s) computes on w + lookahead * (w - w') instead, w version v and "
          "w' version v - 1 (its last step's move, extrapolated; deterministic, so delayed "
          "stays reproducible); 0 = on w itself (the bits of earlier versions)"),
    K_BOOL("parallel", "steal", parallel_steal, "false",
           "ps mode, consistency = delayed with staleness >= 1: server 0 hands each step's "
           "shares (M / W micro-batches each) to the workers by their measured seconds per "
           "share, so a slow worker computes fewer; the bits of delayed without it (each "
           "share is summed in its place); every worker reads the whole batch"),
    K_ENUM("parallel", "server_ranks", parallel_server_ranks, "last|first|spread", "last",
           "ps mode: the servers are the last parallel.servers ranks (rank 0 a worker), the "
           "first ones, or spread (one per node; planned, refused at start)"),

    K_STR("checkpoint", "dir", ckpt_dir, 0, "", "checkpoint directory; empty = <run dir>/checkpoints"),
    K_I64("checkpoint", "every_steps", ckpt_every_steps, 0, BIG, "0",
          "checkpoint every this many steps; 0 = off"),
    K_DBL("checkpoint", "every_minutes", ckpt_every_minutes, CLOSED, 0, 1e6, CLOSED, "0",
          "checkpoint every this many minutes; 0 = off"),
    K_INT("checkpoint", "keep", ckpt_keep, 0, 1000000, "3",
          "complete checkpoints kept (the newest); 0 = keep all"),
    K_BOOL("checkpoint", "async", ckpt_async, "false",
           "write checkpoints from a snapshot in the background"),

    K_STR("run", "name", run_name, 1, "default", "run name; the run directory is runs/<name>"),
    K_STR("run", "dir", run_dir, 0, "", "run directory; empty = runs/<name>"),
    K_DBL("run", "step_timeout_s", run_step_timeout_s, CLOSED, 0, 1e7, CLOSED, "300",
          "abort the job if one step takes longer; 0 = off"),
    K_BOOL("run", "trace", run_trace, "false", "write trace.json (Chrome trace format)"),
    K_ENUM("run", "progress", run_progress, "auto|tty|plain|off", "auto",
           "progress display on stderr: auto (tty if stderr is a terminal), tty, plain, off"),
    K_STR("run", "slow", run_slow, 0, "",
          "straggler injection for experiments: RANK:MS[:EVERY] sleeps MS ms in that rank's "
          "step every EVERY-th step (default every step; with parallel.steal once per share "
          "it computes in that step); empty = off"),
    K_STR("run", "stop_signals", run_stop_signals, 1, "TERM USR1",
          "signals on which every rank checkpoints at the next step and exits 75: any of "
          "TERM INT HUP USR1 USR2, space-separated (others keep their default action)"),
};
const int config_nkeys = (int)(sizeof config_keys / sizeof config_keys[0]);


const char *config_type_name(const KeyDesc *k)
{
    switch (k->type) {
    case KT_INT:
    case KT_INT64: return "int";
    case KT_DOUBLE: return "float";
    case KT_BOOL: return "bool";
    case KT_STRING: return "string";
    case KT_ENUM: return "enum";
    }
    return "?";
}

/* ---------------------------------------------------------------- small helpers */

/* Append printf text to buf[n] at *len (truncating silently). */
__attribute__((format(printf, 4, 5)))
void config_appendf(char *buf, size_t n, size_t *len, const char *fmt, ...)
{
    if (*len >= n) return;
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(buf + *len, n - *len, fmt, ap);
    va_end(ap);
    if (w > 0) *len = MT_MIN(n - 1, *len + (size_t)w);
}

/* The shortest text that reads back as the same double: whole numbers below 1e15
 * without an exponent (300, not 3e+02). */
void config_format_double(double v, char *buf, size_t n)
{
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(buf, n, "%.0f", v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

/* "[0, 1)", "(0, 10]", "[1, 1048576]", or "one of: a, b" into buf. */
void config_describe_allowed(const KeyDesc *k, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = 0;
    switch (k->type) {
    case KT_INT:
    case KT_INT64:
        config_appendf(buf, n, &len, "[%" PRId64 ", %" PRId64 "]", k->imin, k->imax);
        break;
    case KT_DOUBLE: {
        char lo[32], hi[32];
        config_format_double(k->dmin, lo, sizeof lo);
        config_format_double(k->dmax, hi, sizeof hi);
        config_appendf(buf, n, &len, "%c%s, %s%c", k->dmin_open ? '(' : '[', lo, hi,
                k->dmax_open ? ')' : ']');
        break;
    }
    case KT_BOOL: config_appendf(buf, n, &len, "true|false"); break;
    case KT_STRING:
        config_appendf(buf, n, &len, "%s%zu characters", k->imin > 0 ? "1.." : "0..", k->size - 1);
        break;
    case KT_ENUM:
        for (const char *p = k->allowed; *p;) {
            int l = (int)strcspn(p, "|");
            config_appendf(buf, n, &len, "%s%.*s", p == k->allowed ? "" : ", ", l, p);
            p += l;
            if (*p == '|') p++;
        }
        break;
    }
}

/* Format a field's current value as INI text (strings quoted and escaped if `quote`). */
void config_format_value(const KeyDesc *k, const Config *c, int quote, char *buf, size_t n)
{
    const char *field = (const char *)c + k->off;
    size_t len = 0;
    buf[0] = 0;
    switch (k->type) {
    case KT_INT: config_appendf(buf, n, &len, "%d", *(const int *)field); break;
    case KT_INT64: config_appendf(buf, n, &len, "%" PRId64, *(const int64_t *)field); break;
    case KT_DOUBLE: {
        char tmp[64];
        config_format_double(*(const double *)field, tmp, sizeof tmp);
        config_appendf(buf, n, &len, "%s", tmp);
        break;
    }
    case KT_BOOL: config_appendf(buf, n, &len, "%s", *(const int *)field ? "true" : "false"); break;
    case KT_ENUM: config_appendf(buf, n, &len, "%s", field); break;
    case KT_STRING:
        if (!quote) {
            config_appendf(buf, n, &len, "%s", field);
            break;
        }
        config_appendf(buf, n, &len, "\"");
        for (const char *p = field; *p; p++) {
            if (*p == '"' || *p == '\\') config_appendf(buf, n, &len, "\\%c", *p);
            else config_appendf(buf, n, &len, "%c", *p);
        }
        config_appendf(buf, n, &len, "\"");
        break;
    }
}
