/* test_config.c — config table, INI parsing, errors (exact texts), --set, validation,
 * write/load round trip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "io/config.h"

static char g_dir[256];

/* Write text to <tmpdir>/name and return the path (static buffer, one at a time). */
static const char *write_file(const char *name, const char *text)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Load text as file "x.ini"; expect failure with `code` and exactly `msg`
 * (msg given without the "<dir>/" prefix). The Config must be left unchanged. */
static void expect_load_error(const char *text, int code, const char *msg)
{
    Config c, before;
    config_defaults(&c);
    before = c;
    const char *path = write_file("x.ini", text);
    err_clear();
    int r = config_load(&c, path);
    char want[2048];
    snprintf(want, sizeof want, "%s/%s", g_dir, msg);
    if (r != code || strcmp(err_msg(), want) != 0)
        fprintf(stderr, "input:\n%s\ngot  (%d): %s\nwant (%d): %s\n", text, r, err_msg(), code, want);
    assert_int_equal(r, code);
    assert_string_equal(err_msg(), want);
    assert_memory_equal(&c, &before, sizeof c);
}

static void expect_set_error(const char *assignment, const char *msg)
{
    Config c, before;
    config_defaults(&c);
    before = c;
    err_clear();
    int r = config_set(&c, assignment, "--set");
    if (r != MT_EX_CONFIG || strcmp(err_msg(), msg) != 0)
        fprintf(stderr, "got (%d): %s\nwant: %s\n", r, err_msg(), msg);
    assert_int_equal(r, MT_EX_CONFIG);
    assert_string_equal(err_msg(), msg);
    assert_memory_equal(&c, &before, sizeof c);
}

static void test_defaults(void **state)
{
    (void)state;
    Config c;
    config_defaults(&c);
    assert_string_equal(c.model_layers, "dense:512 relu dense:512 relu dense:10");
    assert_string_equal(c.model_init, "he");
    assert_int_equal(c.model_input, 0);
    assert_string_equal(c.data_train, "data/fmnist/train");
    assert_string_equal(c.data_test, "data/fmnist/test");
    assert_int_equal(c.data_cache_mb, 1024);
    assert_int_equal(c.data_prefetch, 4);
    assert_int_equal(c.data_shuffle, 1);
    assert_int_equal(c.train_epochs, 10);
    assert_int_equal(c.train_steps, 0);
    assert_int_equal(c.train_batch, 128);
    assert_int_equal(c.train_micro_batches, 4);
    assert_int_equal(c.train_threads, 0);
    assert_int_equal(c.train_seed, 42);
    assert_int_equal(c.train_eval_every, 0);
    assert_int_equal(c.train_log_every, 50);
    assert_string_equal(c.optim_name, "sgd");
    assert_true(c.optim_lr == 0.05);
    assert_true(c.optim_momentum == 0.9);
    assert_int_equal(c.optim_nesterov, 0);
    assert_true(c.optim_beta1 == 0.9);
    assert_true(c.optim_beta2 == 0.999);
    assert_true(c.optim_eps == 1e-8);
    assert_true(c.optim_weight_decay == 0.0);
    assert_string_equal(c.optim_schedule, "constant");
    assert_int_equal(c.optim_warmup_steps, 0);
    assert_int_equal(c.optim_step_size, 1000);
    assert_true(c.optim_gamma == 0.1);
    assert_true(c.optim_min_lr == 0.0);
    assert_true(c.optim_clip_norm == 0.0);
    assert_string_equal(c.parallel_mode, "allreduce");
    assert_string_equal(c.parallel_reduce, "deterministic");
    assert_true(c.parallel_bucket_mb == 4.0);
    assert_int_equal(c.parallel_zero, 0);
    assert_string_equal(c.parallel_shm, "auto");
    assert_int_equal(c.parallel_servers, 1);
    assert_string_equal(c.parallel_consistency, "sync");
    assert_int_equal(c.parallel_staleness, 2);
    assert_string_equal(c.ckpt_dir, "");
    assert_int_equal(c.ckpt_every_steps, 0);
    assert_true(c.ckpt_every_minutes == 0.0);
    assert_int_equal(c.ckpt_keep, 3);
    assert_int_equal(c.ckpt_async, 0);
    assert_string_equal(c.run_name, "default");
    assert_string_equal(c.run_dir, "");
    assert_true(c.run_step_timeout_s == 300.0);
    assert_int_equal(c.run_trace, 0);
    assert_string_equal(c.run_progress, "auto");
    assert_int_equal(config_validate(&c), 0);
}

static void test_load_good(void **state)
{
    (void)state;
    Config c;
    config_defaults(&c);
    const char *path = write_file("good.ini",
        "\xEF\xBB\xBF; a comment\n"
        "# another comment\n"
        "\n"
        "[model]\n"
        "layers = dense:256 relu dropout:0.1 dense:10   ; inline comment\n"
        "init = XAVIER\n"
        "input = 784\n"
        "[optim]\n"
        "  name = adamw\r\n"
        "  lr=0.001\r\n"
        "  weight_decay: 0.05\n"
        "\tnesterov = off\n"
        "[ train ]\n"
        "batch = 256\n"
        "micro_batches = 8\n"
        "steps = 123456789012\n"
        "seed = -0\n"
        "[data]\n"
        "shuffle = No\n"
        "test =\n"
        "train = \"my data; with # signs\"   ; and a comment\n"
        "[run]\n"
        "name = \"q\\\"uote\\\\d\"\n"
        "trace = 1\n"
        "[checkpoint]\n"
        "[optim]\n"
        "momentum = 0\n");
    err_clear();
    int r = config_load(&c, path);
    if (r) fprintf(stderr, "%s\n", err_msg());
    assert_int_equal(r, 0);
    assert_string_equal(c.model_layers, "dense:256 relu dropout:0.1 dense:10");
    assert_string_equal(c.model_init, "xavier");
    assert_int_equal(c.model_input, 784);
    assert_string_equal(c.optim_name, "adamw");
    assert_true(c.optim_lr == 0.001);
    assert_true(c.optim_weight_decay == 0.05);
    assert_true(c.optim_momentum == 0.0);
    assert_int_equal(c.optim_nesterov, 0);
    assert_int_equal(c.train_batch, 256);
    assert_int_equal(c.train_micro_batches, 8);
    assert_true(c.train_steps == INT64_C(123456789012));
    assert_int_equal(c.train_seed, 0);
    assert_int_equal(c.data_shuffle, 0);
    assert_string_equal(c.data_test, "");
    assert_string_equal(c.data_train, "my data; with # signs");
    assert_string_equal(c.run_name, "q\"uote\\d");
    assert_int_equal(c.run_trace, 1);
    /* untouched keys keep their values */
    assert_int_equal(c.train_epochs, 10);
    assert_string_equal(c.parallel_mode, "allreduce");
}

static void test_load_missing(void **state)
{
    (void)state;
    Config c;
    config_defaults(&c);
    char path[512];
    snprintf(path, sizeof path, "%s/does-not-exist.ini", g_dir);
    err_clear();
    assert_int_equal(config_load(&c, path), MT_EX_NOINPUT);
    char want[1024];
    snprintf(want, sizeof want, "cannot open config file '%s': No such file or directory", path);
    assert_string_equal(err_msg(), want);
    /* a directory is not a config file */
    assert_int_equal(config_load(&c, g_dir), MT_EX_NOINPUT);
    assert_non_null(strstr(err_msg(), g_dir));
}

static void test_load_errors(void **state)
{
    (void)state;
    expect_load_error("[optim]\n\n; c\n\n\n\n\n\n\n\n\nlr = -1\n", MT_EX_CONFIG,
                      "x.ini:12: [optim] lr = -1: out of range, must be in (0, 10]");
    expect_load_error("[optim]\nlr = 0\n", MT_EX_CONFIG,
                      "x.ini:2: [optim] lr = 0: out of range, must be in (0, 10]");
    expect_load_error("[optim]\nmomentum = 1\n", MT_EX_CONFIG,
                      "x.ini:2: [optim] momentum = 1: out of range, must be in [0, 1)");
    expect_load_error("[optim]\nlr = abc\n", MT_EX_CONFIG,
                      "x.ini:2: [optim] lr = abc: not a number (must be in (0, 10])");
    expect_load_error("[optim]\nlr = 0.1x\n", MT_EX_CONFIG,
                      "x.ini:2: [optim] lr = 0.1x: not a number (must be in (0, 10])");
    expect_load_error("[optim]\nlr = nan\n", MT_EX_CONFIG,
                      "x.ini:2: [optim] lr = nan: not a finite number (must be in (0, 10])");
    expect_load_error("[optim]\nlr =\n", MT_EX_CONFIG,
                      "x.ini:2: [optim] lr = : not a number (must be in (0, 10])");
    expect_load_error("[train]\nbatch = 1.5\n", MT_EX_CONFIG,
                      "x.ini:2: [train] batch = 1.5: not an integer (must be in [1, 1048576])");
    expect_load_error("[train]\nbatch = abc\n", MT_EX_CONFIG,
                      "x.ini:2: [train] batch = abc: not an integer (must be in [1, 1048576])");
    expect_load_error("[train]\nbatch = 12x\n", MT_EX_CONFIG,
                      "x.ini:2: [train] batch = 12x: not an integer (must be in [1, 1048576])");
    expect_load_error("[train]\nbatch = 0\n", MT_EX_CONFIG,
                      "x.ini:2: [train] batch = 0: out of range, must be in [1, 1048576]");
    expect_load_error("[train]\nseed = 99999999999999999999\n", MT_EX_CONFIG,
                      "x.ini:2: [train] seed = 99999999999999999999: out of range, must be in "
                      "[0, 9223372036854775807]");
    expect_load_error("[data]\nshuffle = maybe\n", MT_EX_CONFIG,
                      "x.ini:2: [data] shuffle = maybe: not a boolean (use true/false, yes/no, "
                      "on/off or 1/0)");
    expect_load_error("[optim]\nname = rmsprop\n", MT_EX_CONFIG,
                      "x.ini:2: [optim] name = rmsprop: not allowed, must be one of: sgd, adamw");
    expect_load_error("[run]\nname =\n", MT_EX_CONFIG, "x.ini:2: [run] name = : must not be empty");
    expect_load_error("[model]\ninput = -1\n", MT_EX_CONFIG,
                      "x.ini:2: [model] input = -1: out of range, must be in [0, 16777216]");
    expect_load_error("[model]\nlayer = dense:10\n", MT_EX_CONFIG,
                      "x.ini:2: [model] layer: unknown key; did you mean 'layers'? ([model] keys: "
                      "layers, init, input)");
    expect_load_error("[optimizer]\nlr = 0.1\n", MT_EX_CONFIG,
                      "x.ini:1: unknown section [optimizer]; did you mean [optim]? (sections: "
                      "[model] [data] [train] [optim] [parallel] [checkpoint] [run])");
    expect_load_error("[model]\n[trian]\n", MT_EX_CONFIG,
                      "x.ini:2: unknown section [trian]; did you mean [train]? (sections: "
                      "[model] [data] [train] [optim] [parallel] [checkpoint] [run])");
    expect_load_error("[optim]\nlr = 0.1\nmomentun = 0.5\n", MT_EX_CONFIG,
                      "x.ini:3: [optim] momentun: unknown key; did you mean 'momentum'? ([optim] "
                      "keys: name, lr, momentum, nesterov, beta1, beta2, eps, weight_decay, "
                      "schedule, warmup_steps, step_size, gamma, min_lr, clip_norm)");
    expect_load_error("[train]\nlr = 0.1\n", MT_EX_CONFIG,
                      "x.ini:2: [train] lr: unknown key; did you mean [optim] lr? ([train] keys: "
                      "epochs, steps, batch, micro_batches, threads, seed, eval_every, log_every)");
    expect_load_error("[optim]\nlr = 0.1\n\nlr = 0.2\n", MT_EX_CONFIG,
                      "x.ini:4: [optim] lr: duplicate key (first set on line 2)");
    expect_load_error("[optim]\nlr = 0.1\n[train]\n[optim]\nlr = 0.2\n", MT_EX_CONFIG,
                      "x.ini:5: [optim] lr: duplicate key (first set on line 2)");
    expect_load_error("[optim\nlr = 0.1\n", MT_EX_CONFIG,
                      "x.ini:1: cannot parse '[optim': expected [section], key = value, or a ; "
                      "comment");
    expect_load_error("[optim]\nlr = 0.1\n  just some words\n", MT_EX_CONFIG,
                      "x.ini:3: cannot parse 'just some words': expected [section], key = value, "
                      "or a ; comment");
    expect_load_error("[optim] lr = 0.1\n", MT_EX_CONFIG,
                      "x.ini:1: [optim]: text after ']': 'lr = 0.1'");
    expect_load_error("lr = 0.1\n", MT_EX_CONFIG,
                      "x.ini:1: lr: key before any [section]; put it under one of the sections");
    expect_load_error("[run]\nname = \"abc\n", MT_EX_CONFIG,
                      "x.ini:2: [run] name: unterminated quoted string (no closing \")");
    expect_load_error("[run]\nname = \"abc\" def\n", MT_EX_CONFIG,
                      "x.ini:2: [run] name: text after the closing quote: 'def'");
    /* the first error wins, whatever its kind */
    expect_load_error("[optim]\nlr = 2\nbad line\nlr = 3\n", MT_EX_CONFIG,
                      "x.ini:3: cannot parse 'bad line': expected [section], key = value, or a ; "
                      "comment");
    expect_load_error("[optim]\nlr = 20\nbad line\n", MT_EX_CONFIG,
                      "x.ini:2: [optim] lr = 20: out of range, must be in (0, 10]");

    /* line numbers stay right after lines longer than inih's 200-byte buffer */
    char big[4096];
    size_t n = 0;
    n += (size_t)snprintf(big + n, sizeof big - n, "[model]\n; %0300d\nlayers = ", 0);
    for (int i = 0; i < 60; i++) n += (size_t)snprintf(big + n, sizeof big - n, "dense:64 relu ");
    n += (size_t)snprintf(big + n, sizeof big - n, "dense:10\n[optim]\nlr = -5\n");
    expect_load_error(big, MT_EX_CONFIG,
                      "x.ini:5: [optim] lr = -5: out of range, must be in (0, 10]");

    /* a string longer than its field */
    char lng[2048];
    n = (size_t)snprintf(lng, sizeof lng, "[run]\nname = ");
    for (int i = 0; i < 130; i++) lng[n++] = 'a';
    lng[n] = 0;
    strcat(lng, "\n");
    expect_load_error(lng, MT_EX_CONFIG,
                      "x.ini:2: [run] name = aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa..."
                      ": too long (130 characters, at most 127)");
}

static void test_set(void **state)
{
    (void)state;
    Config c;
    config_defaults(&c);
    assert_int_equal(config_set(&c, "optim.lr=0.125", "--set"), 0);
    assert_true(c.optim_lr == 0.125);
    assert_int_equal(config_set(&c, " train.batch = 64 ", "--set"), 0);
    assert_int_equal(c.train_batch, 64);
    assert_int_equal(config_set(&c, "model.layers=\"dense:10\"", "--set"), 0);
    assert_string_equal(c.model_layers, "dense:10");
    assert_int_equal(config_set(&c, "data.test=", "--set"), 0);
    assert_string_equal(c.data_test, "");
    assert_int_equal(config_set(&c, "parallel.mode=ps", "--set"), 0);
    assert_string_equal(c.parallel_mode, "ps");
    assert_int_equal(config_set(&c, "run.trace=yes", "--set"), 0);
    assert_int_equal(c.run_trace, 1);

    expect_set_error("optim.lr=abc", "--set optim.lr=abc: not a number (must be in (0, 10])");
    expect_set_error("optim.lr=-1", "--set optim.lr=-1: out of range, must be in (0, 10]");
    expect_set_error("optim.lr", "--set optim.lr: expected section.key=value (e.g. optim.lr=0.1)");
    expect_set_error("lr=0.1", "--set lr=0.1: expected section.key=value (e.g. optim.lr=0.1)");
    expect_set_error("optim.lrr=0.1",
                     "--set optim.lrr=0.1: unknown key; did you mean 'lr'? ([optim] keys: name, "
                     "lr, momentum, nesterov, beta1, beta2, eps, weight_decay, schedule, "
                     "warmup_steps, step_size, gamma, min_lr, clip_norm)");
    expect_set_error("optimizer.lr=0.1",
                     "--set optimizer.lr=0.1: unknown section [optimizer]; did you mean [optim]? "
                     "(sections: [model] [data] [train] [optim] [parallel] [checkpoint] [run])");
    expect_set_error("parallel.mode=ring",
                     "--set parallel.mode=ring: not allowed, must be one of: allreduce, ps");
    assert_int_equal(config_set(&c, "parallel.shm=false", "--set"), 0);
    assert_string_equal(c.parallel_shm, "false");
    expect_set_error("parallel.shm=yes",
                     "--set parallel.shm=yes: not allowed, must be one of: auto, true, false");
    expect_set_error("run.name=a\tb", "--set run.name=a\tb: contains a control character (byte 9)");

    err_clear();
    assert_int_equal(config_set(&c, "train.epochs=x", "job.ini [env]"), MT_EX_CONFIG);
    assert_string_equal(err_msg(),
                        "job.ini [env] train.epochs=x: not an integer (must be in [0, 1000000])");
}

/* Open bounds hold in float32 too (the optimizer computes in float32); keep = 0 is
 * "keep all". */
static void test_float32_bounds_and_keep(void **state)
{
    (void)state;
    expect_set_error("optim.lr=4e-324",
                     "--set optim.lr=4e-324: rounds to 0 as a float32 (what training computes "
                     "with), must be in (0, 10]; the smallest positive float32 is 1.4e-45");
    expect_set_error("optim.eps=1e-50",
                     "--set optim.eps=1e-50: rounds to 0 as a float32 (what training computes "
                     "with), must be in (0, 1]; the smallest positive float32 is 1.4e-45");
    expect_set_error("optim.beta1=0.99999999999",
                     "--set optim.beta1=0.99999999999: rounds to 1 as a float32 (what training "
                     "computes with), must be in [0, 1)");
    expect_load_error("[optim]\nmomentum = 0.9999999999\n", MT_EX_CONFIG,
                      "x.ini:2: [optim] momentum = 0.9999999999: rounds to 1 as a float32 (what "
                      "training computes with), must be in [0, 1)");
    Config c;
    config_defaults(&c);
    assert_int_equal(config_set(&c, "optim.lr=1e-45", "--set"), 0); /* a float32 denormal */
    assert_true((float)c.optim_lr > 0);
    assert_int_equal(config_set(&c, "optim.beta2=0.9999999", "--set"), 0);
    assert_true((float)c.optim_beta2 < 1);
    assert_int_equal(config_set(&c, "optim.min_lr=1e-300", "--set"), 0); /* closed at 0 */
    assert_int_equal(c.ckpt_keep, 3);
    assert_int_equal(config_set(&c, "checkpoint.keep=0", "--set"), 0);
    assert_int_equal(c.ckpt_keep, 0);
    expect_set_error("checkpoint.keep=-1",
                     "--set checkpoint.keep=-1: out of range, must be in [0, 1000000]");
}

static void expect_invalid(Config *c, const char *msg)
{
    err_clear();
    int r = config_validate(c);
    if (r != MT_EX_CONFIG || strcmp(err_msg(), msg) != 0) fprintf(stderr, "got: %s\n", err_msg());
    assert_int_equal(r, MT_EX_CONFIG);
    assert_string_equal(err_msg(), msg);
    config_defaults(c);
}

static void test_validate(void **state)
{
    (void)state;
    Config c;
    config_defaults(&c);
    c.train_batch = 100;
    c.train_micro_batches = 8;
    expect_invalid(&c, "config: train.batch = 100 is not a multiple of train.micro_batches = 8");
    c.train_batch = 4;
    c.train_micro_batches = 8;
    expect_invalid(&c, "config: train.micro_batches = 8 exceeds train.batch = 4 (a micro-batch "
                       "needs at least one sample)");
    c.data_train[0] = 0;
    expect_invalid(&c, "config: data.train is empty: name the training dataset directory");
    c.train_epochs = 0;
    expect_invalid(&c, "config: train.epochs = 0 and train.steps = 0: set one of them to train");
    c.train_epochs = 0;
    c.train_steps = 10;
    assert_int_equal(config_validate(&c), 0);
    snprintf(c.parallel_mode, sizeof c.parallel_mode, "ps");
    c.parallel_servers = 0;
    expect_invalid(&c, "config: parallel.mode = ps needs parallel.servers >= 1 (it is 0)");
    snprintf(c.parallel_consistency, sizeof c.parallel_consistency, "ssp");
    expect_invalid(&c, "config: parallel.consistency = ssp applies to parallel.mode = ps only "
                       "(mode is allreduce)");
    snprintf(c.parallel_mode, sizeof c.parallel_mode, "ps");
    snprintf(c.parallel_consistency, sizeof c.parallel_consistency, "ssp");
    assert_int_equal(config_validate(&c), 0);
    c.parallel_zero = 1;
    expect_invalid(&c, "config: parallel.zero = 1 applies to parallel.mode = allreduce only "
                       "(mode is ps)");
    c.optim_nesterov = 1;
    c.optim_momentum = 0;
    expect_invalid(&c, "config: optim.nesterov = true needs optim.momentum > 0");
    c.optim_min_lr = 0.5;
    expect_invalid(&c, "config: optim.min_lr = 0.5 exceeds optim.lr = 0.05");
    snprintf(c.run_name, sizeof c.run_name, "a/b");
    expect_invalid(&c, "config: run.name = 'a/b' must be a plain name (no '/'; use run.dir for a "
                       "path)");
    /* several problems are all reported */
    c.train_batch = 10;
    c.data_train[0] = 0;
    expect_invalid(&c, "config: train.batch = 10 is not a multiple of train.micro_batches = 4; "
                       "data.train is empty: name the training dataset directory");
}

/* Set a string field with the bytes after the NUL zeroed, as the parser leaves them. */
#define SETS(field, ...) do { memset(field, 0, sizeof field); \
                              snprintf(field, sizeof field, __VA_ARGS__); } while (0)

/* Field-by-field equality through the public text form and the raw bytes. */
static void assert_same_config(const Config *a, const Config *b)
{
    char *sa = config_to_string(a), *sb = config_to_string(b);
    assert_string_equal(sa, sb);
    free(sa);
    free(sb);
    assert_memory_equal(a, b, sizeof *a);
}

static void test_round_trip(void **state)
{
    (void)state;
    Config a, b;
    config_defaults(&a);
    /* every key away from its default, awkward strings and doubles included */
    char layers[1000];
    size_t n = 0;
    for (int i = 0; i < 70; i++) n += (size_t)snprintf(layers + n, sizeof layers - n, "dense:32 gelu ");
    snprintf(layers + n, sizeof layers - n, "dropout:0.25 dense:10");
    memset(a.model_layers, 0, sizeof a.model_layers);
    SETS(a.model_layers, "%s", layers);
    SETS(a.model_init, "xavier");
    a.model_input = 784;
    SETS(a.data_train, " lead space; semi # hash \"q\" back\\slash ");
    memset(a.data_test, 0, sizeof a.data_test);
    a.data_cache_mb = 7;
    a.data_prefetch = 9;
    a.data_shuffle = 0;
    a.train_epochs = 3;
    a.train_steps = INT64_C(1000000000000);
    a.train_batch = 96;
    a.train_micro_batches = 3;
    a.train_threads = 2;
    a.train_seed = INT64_MAX;
    a.train_eval_every = 17;
    a.train_log_every = 1;
    SETS(a.optim_name, "adamw");
    a.optim_lr = 0.1 + 0.2; /* 0.30000000000000004 */
    a.optim_momentum = 1.0 / 3.0;
    a.optim_nesterov = 1;
    a.optim_beta1 = 0.85;
    a.optim_beta2 = 0.99999;
    a.optim_eps = 1.25e-40; /* a float32 denormal: the smallest values allowed */
    a.optim_weight_decay = 5e-4;
    SETS(a.optim_schedule, "cosine");
    a.optim_warmup_steps = 500;
    a.optim_step_size = 3;
    a.optim_gamma = 0.5;
    a.optim_min_lr = 1e-6;
    a.optim_clip_norm = 1.5;
    SETS(a.parallel_mode, "ps");
    SETS(a.parallel_reduce, "fast");
    a.parallel_bucket_mb = 0.25;
    a.parallel_zero = 1;
    a.parallel_servers = 2;
    SETS(a.parallel_consistency, "async");
    a.parallel_staleness = 0;
    SETS(a.ckpt_dir, "/scratch/ckpt dir");
    a.ckpt_every_steps = 100;
    a.ckpt_every_minutes = 7.5;
    a.ckpt_keep = 1;
    a.ckpt_async = 1;
    SETS(a.run_name, "round-trip");
    SETS(a.run_dir, "runs/x");
    a.run_step_timeout_s = 0;
    a.run_trace = 1;
    SETS(a.run_progress, "plain");

    for (int with_help = 0; with_help <= 1; with_help++) {
        char path[512];
        snprintf(path, sizeof path, "%s/rt%d.ini", g_dir, with_help);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        config_write(&a, f, with_help);
        fclose(f);
        config_defaults(&b);
        int r = config_load(&b, path);
        if (r) fprintf(stderr, "%s\n", err_msg());
        assert_int_equal(r, 0);
        assert_same_config(&a, &b);
    }

    /* through the checkpoint string form */
    char *s = config_to_string(&a);
    assert_non_null(strstr(s, "[optim]\nname = adamw\nlr = 0.30000000000000004\n"));
    config_defaults(&b);
    assert_int_equal(config_load_string(&b, s, "ckpt:/config"), 0);
    assert_same_config(&a, &b);
    free(s);

    /* defaults round-trip too, and the defaults' text is what docs/config.md shows */
    config_defaults(&a);
    s = config_to_string(&a);
    assert_non_null(strstr(s, "[model]\nlayers = \"dense:512 relu dense:512 relu dense:10\"\n"
                              "init = he\ninput = 0\n\n[data]\n"));
    assert_non_null(strstr(s, "eps = 1e-08\n"));
    memset(&b, 0x5a, sizeof b);
    config_defaults(&b);
    b.train_batch = 1;
    assert_int_equal(config_load_string(&b, s, "defaults"), 0);
    assert_same_config(&a, &b);
    free(s);

    /* string errors name the source given */
    err_clear();
    assert_int_equal(config_load_string(&b, "[train]\nbatch = x\n", "ckpt-00100.h5:/config"),
                     MT_EX_CONFIG);
    assert_string_equal(err_msg(), "ckpt-00100.h5:/config:2: [train] batch = x: not an integer "
                                   "(must be in [1, 1048576])");
}

static void test_print_help(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    config_print_help(f);
    fclose(f);
    const char *keys[] = {"model.layers", "model.init", "model.input", "data.cache_mb", "train.micro_batches",
                          "optim.lr", "optim.clip_norm", "parallel.consistency",
                          "checkpoint.every_minutes", "run.progress"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) assert_non_null(strstr(buf, keys[i]));
    assert_non_null(strstr(buf, "(0, 10]"));
    assert_non_null(strstr(buf, "sgd, adamw"));
    assert_non_null(strstr(buf, "default model.layers = dense:512 relu dense:512 relu dense:10"));
    free(buf);
}

/* The shipped job files load and validate (tests run from the repository root). */
static void test_job_files(void **state)
{
    (void)state;
    const char *jobs[] = {"jobs/fmnist-mlp.ini", "jobs/fmnist-mlp-adamw.ini"};
    for (size_t i = 0; i < sizeof jobs / sizeof jobs[0]; i++) {
        Config c;
        config_defaults(&c);
        int r = config_load(&c, jobs[i]);
        if (!r) r = config_validate(&c);
        if (r) fprintf(stderr, "%s\n", err_msg());
        assert_int_equal(r, 0);
        assert_string_equal(c.data_train, "data/fmnist/train");
        assert_string_equal(c.data_test, "data/fmnist/test");
        assert_string_equal(c.optim_schedule, "cosine");
    }
}

static int setup(void **state)
{
    (void)state;
    const char *t = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/test_config.XXXXXX", t && *t ? t : "/tmp");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),  cmocka_unit_test(test_load_good),
        cmocka_unit_test(test_load_missing), cmocka_unit_test(test_load_errors),
        cmocka_unit_test(test_set),       cmocka_unit_test(test_validate),
        cmocka_unit_test(test_round_trip), cmocka_unit_test(test_print_help),
        cmocka_unit_test(test_job_files), cmocka_unit_test(test_float32_bounds_and_keep),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
