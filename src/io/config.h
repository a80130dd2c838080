/* config.h — the typed job configuration (INI, parsed with inih).
 *
 * Every key is in one table (config.c: section, key, type, bounds or allowed values,
 * default, one-line help).  An unknown section or key, a value of the wrong type, out
 * of bounds or not among the allowed values, a missing or unreadable file: each is an
 * error naming the file, line, key and what is allowed (MT_EX_CONFIG, or MT_EX_NOINPUT
 * for a missing file).  `--set sec.key=value` overrides a key after the file is read. */
#ifndef MPITRAIN_IO_CONFIG_H
#define MPITRAIN_IO_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#define CFG_STR 256

typedef struct {
    /* [model] */
    char model_layers[1024];   /* "dense:512 relu dense:512 relu dense:10" */
    char model_init[16];       /* he | xavier */
    int model_input;           /* features per input sample; 0 = take it from the dataset */
    /* [data] */
    char data_train[CFG_STR];  /* dataset directory (docs/dataset-format.md) */
    char data_test[CFG_STR];   /* dataset directory for eval ("" = none) */
    int data_cache_mb;         /* cache whole shards up to this many MB per rank */
    int data_prefetch;         /* batches prepared ahead by the prefetch thread */
    int data_shuffle;          /* bool */
    /* [train] */
    int train_epochs;
    int64_t train_steps;       /* 0 = epochs * steps_per_epoch */
    int train_batch;           /* global batch B */
    int train_micro_batches;   /* M: unit of compute; N ranks must divide it */
    int train_threads;         /* worker threads per rank; 0 = cores / ranks per node */
    int64_t train_seed;
    int train_eval_every;      /* steps between evals; 0 = once per epoch */
    int train_log_every;       /* steps between metrics lines */
    /* [optim] */
    char optim_name[16];       /* sgd | adamw */
    double optim_lr;
    double optim_momentum;
    int optim_nesterov;        /* bool */
    double optim_beta1, optim_beta2, optim_eps;
    double optim_weight_decay;
    char optim_schedule[16];   /* constant | step | cosine */
    int64_t optim_warmup_steps;
    int64_t optim_step_size;
    double optim_gamma;
    double optim_min_lr;
    double optim_clip_norm;    /* 0 = no clipping */
    /* [parallel] */
    char parallel_mode[16];    /* allreduce | ps */
    char parallel_reduce[16];  /* deterministic | fast */
    double parallel_bucket_mb;
    int parallel_zero;         /* 0 | 1 */
    char parallel_shm[16];     /* auto | true | false */
    int parallel_servers;      /* ps mode */
    char parallel_consistency[16]; /* sync | async | ssp */
    int parallel_staleness;
    char parallel_staleness_rule[16]; /* momentum | none */
    double parallel_lookahead;        /* delayed, ssp: extrapolation of the stale parameters */
    char parallel_server_ranks[16]; /* last | first | spread */
    int parallel_steal;             /* bool: ps delayed, work stealing between workers */
    /* [checkpoint] */
    char ckpt_dir[CFG_STR];    /* "" = <run dir>/checkpoints */
    int64_t ckpt_every_steps;  /* 0 = off */
    double ckpt_every_minutes; /* 0 = off */
    int ckpt_keep;
    int ckpt_async;            /* bool */
    /* [run] */
    char run_name[128];
    char run_dir[CFG_STR];     /* "" = runs/<name> */
    double run_step_timeout_s; /* watchdog; 0 = off */
    int run_trace;             /* bool: write trace.json */
    char run_progress[16];     /* auto | tty | plain | off */
    char run_slow[64];         /* straggler injection "RANK:MS[:EVERY]" ("" = off) */
    char run_stop_signals[64]; /* "TERM USR1": checkpoint and exit 75 (parallel/signals.h) */
} Config;

/* Defaults for every key. */
void config_defaults(Config *c);
/* Read an INI file over the current values.  0 or an error code with err_msg(). */
int config_load(Config *c, const char *path);
/* Apply one "section.key=value" override (source names it in errors, e.g. "--set"). */
int config_set(Config *c, const char *assignment, const char *source);
/* Cross-key checks (e.g. batch % micro_batches == 0). 0 or MT_EX_CONFIG. */
int config_validate(const Config *c);
/* Write the resolved config as INI (every key, with its help as a comment if verbose). */
void config_write(const Config *c, FILE *f, int with_help);
/* Resolved config as a malloc'd INI string (for checkpoints). */
char *config_to_string(const Config *c);
/* Load from an INI string (checkpoint), name used in errors. */
int config_load_string(Config *c, const char *text, const char *name);
/* Print the table of keys: section.key, type, default, allowed values/bounds, help. */
void config_print_help(FILE *f);
/* The same table as Markdown (docs/config.md is this output: `make docs` regenerates it,
 * tests/e2e/test_docs.sh fails when they differ): a short introduction, then one table
 * per section (key, type, default, allowed values or bounds, meaning), '|' escaped. */
void config_print_markdown(FILE *f);

/* Compare two resolved configs (config_to_string texts): `saved` (a checkpoint's) and
 * `now`.  Every key whose value changed is logged ("resume: [sec] key changed from 'a'
 * to 'b' (applied)"), except those that cannot change on resume (model.layers,
 * model.input, optim.name): then returns 1 and bad[nbad] says which ("[model] layers:
 * checkpoint has 'x', the config now has 'y'"; the last such key).  Keys present in only
 * one of the texts are ignored.  Returns 0 when the run may resume.  config_diff.c */
int config_diff(const char *saved, const char *now, char *bad, size_t nbad);

#endif
