/* config.c — see config.h.
 *
 * One static table (KEYS) describes every key of Config: section, name, type, field,
 * bounds or allowed values, default (as text, parsed by the same code as a file value)
 * and a one-line help.  Loading, --set, writing, printing help and defaults all walk it.
 *
 * Parsing uses inih's ini_parse_stream with our own line reader, which
 *   - counts lines, so every error names file:line (Debian's libinih has no
 *     INI_HANDLER_LINENO);
 *   - strips leading whitespace, so an indented key is a key and never inih's
 *     "continuation of the previous value";
 *   - keeps the whole line, so values may be longer than inih's 200-byte line buffer
 *     and may be "quoted" (with \" and \\) to hold ';' or '#' or leading blanks.
 * inih still decides what is a section, a key line, a comment or a garbled line. */
#include "io/config.h"

#include "core/common.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef enum { KT_INT, KT_INT64, KT_DOUBLE, KT_BOOL, KT_STRING, KT_ENUM } KeyType;

typedef struct {
    const char *section;
    const char *key;
    KeyType type;
    size_t off;        /* offsetof(Config, field) */
    size_t size;       /* sizeof the field (strings: buffer size incl. NUL) */
    int64_t imin, imax; /* KT_INT, KT_INT64: closed bounds; KT_STRING: imin = min length */
    double dmin, dmax; /* KT_DOUBLE bounds */
    int dmin_open, dmax_open; /* KT_DOUBLE: 1 if the bound itself is excluded */
    const char *allowed; /* KT_ENUM: "a|b|c" (first match is stored as written here) */
    const char *def;   /* default, as text */
    const char *help;
} KeyDesc;

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

static const KeyDesc KEYS[] = {
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
          "ps mode: ranks [0, servers) are parameter servers"),
    K_ENUM("parallel", "consistency", parallel_consistency, "sync|async|ssp", "sync",
           "ps mode: sync (= allreduce bits), async, or ssp (bounded staleness)"),
    K_INT("parallel", "staleness", parallel_staleness, 0, 1000000, "2",
          "ssp: steps a worker may run ahead of the slowest"),

    K_STR("checkpoint", "dir", ckpt_dir, 0, "", "checkpoint directory; empty = <run dir>/checkpoints"),
    K_I64("checkpoint", "every_steps", ckpt_every_steps, 0, BIG, "0",
          "checkpoint every this many steps; 0 = off"),
    K_DBL("checkpoint", "every_minutes", ckpt_every_minutes, CLOSED, 0, 1e6, CLOSED, "0",
          "checkpoint every this many minutes; 0 = off"),
    K_INT("checkpoint", "keep", ckpt_keep, 1, 1000000, "3", "complete checkpoints kept"),
    K_BOOL("checkpoint", "async", ckpt_async, "false",
           "write checkpoints from a snapshot in the background"),

    K_STR("run", "name", run_name, 1, "default", "run name; the run directory is runs/<name>"),
    K_STR("run", "dir", run_dir, 0, "", "run directory; empty = runs/<name>"),
    K_DBL("run", "step_timeout_s", run_step_timeout_s, CLOSED, 0, 1e7, CLOSED, "300",
          "abort the job if one step takes longer; 0 = off"),
    K_BOOL("run", "trace", run_trace, "false", "write trace.json (Chrome trace format)"),
    K_ENUM("run", "progress", run_progress, "auto|tty|plain|off", "auto",
           "progress display on stderr: auto (tty if stderr is a terminal), tty, plain, off"),
};
#define NKEYS ((int)(sizeof KEYS / sizeof KEYS[0]))

static const char *const SECTIONS[] = {"model", "data", "train", "optim",
                                       "parallel", "checkpoint", "run"};
#define NSECTIONS ((int)(sizeof SECTIONS / sizeof SECTIONS[0]))

static const char *type_name(const KeyDesc *k)
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

static int is_section(const char *s)
{
    for (int i = 0; i < NSECTIONS; i++)
        if (strcmp(SECTIONS[i], s) == 0) return 1;
    return 0;
}

static int find_key(const char *section, const char *key)
{
    for (int i = 0; i < NKEYS; i++)
        if (strcmp(KEYS[i].section, section) == 0 && strcmp(KEYS[i].key, key) == 0) return i;
    return -1;
}

/* Levenshtein distance, case-insensitive, for "did you mean". */
static int edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return 1000;
    int row[65];
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int up = row[j];
            int cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            int best = diag + cost;
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

/* Append printf text to buf[n] at *len (truncating silently). */
__attribute__((format(printf, 4, 5)))
static void appendf(char *buf, size_t n, size_t *len, const char *fmt, ...)
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
static void format_double(double v, char *buf, size_t n)
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
static void describe_allowed(const KeyDesc *k, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = 0;
    switch (k->type) {
    case KT_INT:
    case KT_INT64:
        appendf(buf, n, &len, "[%" PRId64 ", %" PRId64 "]", k->imin, k->imax);
        break;
    case KT_DOUBLE: {
        char lo[32], hi[32];
        format_double(k->dmin, lo, sizeof lo);
        format_double(k->dmax, hi, sizeof hi);
        appendf(buf, n, &len, "%c%s, %s%c", k->dmin_open ? '(' : '[', lo, hi,
                k->dmax_open ? ')' : ']');
        break;
    }
    case KT_BOOL: appendf(buf, n, &len, "true|false"); break;
    case KT_STRING:
        appendf(buf, n, &len, "%s%zu characters", k->imin > 0 ? "1.." : "0..", k->size - 1);
        break;
    case KT_ENUM:
        for (const char *p = k->allowed; *p;) {
            int l = (int)strcspn(p, "|");
            appendf(buf, n, &len, "%s%.*s", p == k->allowed ? "" : ", ", l, p);
            p += l;
            if (*p == '|') p++;
        }
        break;
    }
}

/* A value for messages: as is, or cut to 60 characters. */
static void show_value(const char *v, char *buf, size_t n)
{
    size_t l = strlen(v);
    if (l <= 60 || n < 64) {
        snprintf(buf, n, "%s", v);
    } else {
        snprintf(buf, n, "%.57s...", v);
    }
}

/* ---------------------------------------------------------------- value parsing */

/* Parse `text` into the field of `k` in `c`.  On failure writes the reason (no prefix)
 * into why and returns -1. */
static int parse_value(const KeyDesc *k, Config *c, const char *text, char *why, size_t nwhy)
{
    char *field = (char *)c + k->off;
    char allowed[256];
    describe_allowed(k, allowed, sizeof allowed);
    switch (k->type) {
    case KT_INT:
    case KT_INT64: {
        const char *p = text;
        char *end;
        errno = 0;
        if (!*p || isspace((unsigned char)*p)) goto not_int;
        long long v = strtoll(p, &end, 10);
        if (end == p || *end) goto not_int;
        if (errno == ERANGE || v < k->imin || v > k->imax) {
            snprintf(why, nwhy, "out of range, must be in %s", allowed);
            return -1;
        }
        if (k->type == KT_INT) *(int *)field = (int)v;
        else *(int64_t *)field = (int64_t)v;
        return 0;
    not_int:
        snprintf(why, nwhy, "not an integer (must be in %s)", allowed);
        return -1;
    }
    case KT_DOUBLE: {
        const char *p = text;
        char *end;
        if (!*p || isspace((unsigned char)*p)) goto not_num;
        errno = 0;
        double v = strtod(p, &end);
        if (end == p || *end) goto not_num;
        if (!isfinite(v)) {
            snprintf(why, nwhy, "not a finite number (must be in %s)", allowed);
            return -1;
        }
        int below = k->dmin_open ? v <= k->dmin : v < k->dmin;
        int above = k->dmax_open ? v >= k->dmax : v > k->dmax;
        if (below || above) {
            snprintf(why, nwhy, "out of range, must be in %s", allowed);
            return -1;
        }
        *(double *)field = v;
        return 0;
    not_num:
        snprintf(why, nwhy, "not a number (must be in %s)", allowed);
        return -1;
    }
    case KT_BOOL: {
        static const char *const yes[] = {"true", "yes", "on", "1"};
        static const char *const no[] = {"false", "no", "off", "0"};
        for (int i = 0; i < 4; i++) {
            if (strcasecmp(text, yes[i]) == 0) { *(int *)field = 1; return 0; }
            if (strcasecmp(text, no[i]) == 0) { *(int *)field = 0; return 0; }
        }
        snprintf(why, nwhy, "not a boolean (use true/false, yes/no, on/off or 1/0)");
        return -1;
    }
    case KT_STRING: {
        size_t l = strlen(text);
        if ((int64_t)l < k->imin) {
            snprintf(why, nwhy, "must not be empty");
            return -1;
        }
        if (l >= k->size) {
            snprintf(why, nwhy, "too long (%zu characters, at most %zu)", l, k->size - 1);
            return -1;
        }
        for (const char *p = text; *p; p++) {
            if ((unsigned char)*p < 0x20 || *p == 0x7f) {
                snprintf(why, nwhy, "contains a control character (byte %d)", (unsigned char)*p);
                return -1;
            }
        }
        memset(field, 0, k->size);
        memcpy(field, text, l);
        return 0;
    }
    case KT_ENUM: {
        const char *p = k->allowed;
        while (*p) {
            size_t l = strcspn(p, "|");
            if (strlen(text) == l && strncasecmp(text, p, l) == 0) {
                CHECK(l < k->size);
                memset(field, 0, k->size);
                memcpy(field, p, l);
                return 0;
            }
            p += l;
            if (*p == '|') p++;
        }
        snprintf(why, nwhy, "not allowed, must be one of: %s", allowed);
        return -1;
    }
    }
    CHECK(!"unknown key type");
    return -1;
}

/* Format a field's current value as INI text (strings quoted and escaped if `quote`). */
static void format_value(const KeyDesc *k, const Config *c, int quote, char *buf, size_t n)
{
    const char *field = (const char *)c + k->off;
    size_t len = 0;
    buf[0] = 0;
    switch (k->type) {
    case KT_INT: appendf(buf, n, &len, "%d", *(const int *)field); break;
    case KT_INT64: appendf(buf, n, &len, "%" PRId64, *(const int64_t *)field); break;
    case KT_DOUBLE: {
        char tmp[64];
        format_double(*(const double *)field, tmp, sizeof tmp);
        appendf(buf, n, &len, "%s", tmp);
        break;
    }
    case KT_BOOL: appendf(buf, n, &len, "%s", *(const int *)field ? "true" : "false"); break;
    case KT_ENUM: appendf(buf, n, &len, "%s", field); break;
    case KT_STRING:
        if (!quote) {
            appendf(buf, n, &len, "%s", field);
            break;
        }
        appendf(buf, n, &len, "\"");
        for (const char *p = field; *p; p++) {
            if (*p == '"' || *p == '\\') appendf(buf, n, &len, "\\%c", *p);
            else appendf(buf, n, &len, "%c", *p);
        }
        appendf(buf, n, &len, "\"");
        break;
    }
}

/* ---------------------------------------------------------------- INI parsing */

typedef struct {
    const char *name;    /* file name or source for messages */
    const char *text;    /* whole input */
    const char *pos;     /* next unread byte */
    int lineno;          /* line last handed to inih (1-based) */
    char *raw;           /* that line, leading blanks and newline stripped (owned) */
    size_t raw_cap;
    int seen_line[sizeof KEYS / sizeof KEYS[0]]; /* line where each key was set; 0 = not yet */
    Config *cfg;
    int err;             /* first error recorded (0 = none) */
    int err_line;
} ParseCtx;

__attribute__((format(printf, 3, 4)))
static int ctx_error(ParseCtx *x, int line, const char *fmt, ...)
{
    if (x->err) return 0;
    char msg[1600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    err_set(MT_EX_CONFIG, "%s:%d: %s", x->name, line, msg);
    x->err = MT_EX_CONFIG;
    x->err_line = line;
    return 0;
}

static void list_sections(char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < NSECTIONS; i++) appendf(buf, n, &len, "%s[%s]", i ? " " : "", SECTIONS[i]);
}

static void list_keys(const char *section, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < NKEYS; i++)
        if (strcmp(KEYS[i].section, section) == 0)
            appendf(buf, n, &len, "%s%s", len ? ", " : "", KEYS[i].key);
}

/* "unknown section" text (no prefix). */
static void unknown_section_msg(const char *section, char *buf, size_t n)
{
    int best = -1, bestd = 1000;
    for (int i = 0; i < NSECTIONS; i++) {
        int d = edit_distance(section, SECTIONS[i]);
        if (d < bestd) { bestd = d; best = i; }
    }
    char secs[256];
    list_sections(secs, sizeof secs);
    snprintf(buf, n, "unknown section [%s]; did you mean [%s]? (sections: %s)", section,
             SECTIONS[best], secs);
}

/* "unknown key" text (no prefix): closest key, preferring the same section; a key of
 * that exact name in another section is named with its section. */
static void unknown_key_msg(const char *section, const char *key, char *buf, size_t n)
{
    int best = -1, bestd = 1000;
    for (int i = 0; i < NKEYS; i++) {
        int d = 2 * edit_distance(key, KEYS[i].key) + (strcmp(KEYS[i].section, section) != 0);
        if (d < bestd) { bestd = d; best = i; }
    }
    char keys[512], sugg[128];
    list_keys(section, keys, sizeof keys);
    if (strcmp(KEYS[best].section, section) == 0) snprintf(sugg, sizeof sugg, "'%s'", KEYS[best].key);
    else snprintf(sugg, sizeof sugg, "[%s] %s", KEYS[best].section, KEYS[best].key);
    snprintf(buf, n, "unknown key; did you mean %s? ([%s] keys: %s)", sugg, section, keys);
}

/* Line reader for ini_parse_stream: see the file comment. */
static char *ctx_reader(char *str, int num, void *stream)
{
    ParseCtx *x = stream;
    if (x->err || !*x->pos) return NULL;
    const char *nl = strchr(x->pos, '\n');
    size_t len = nl ? (size_t)(nl - x->pos) : strlen(x->pos);
    if (len + 1 > x->raw_cap) {
        x->raw_cap = len + 1;
        free(x->raw);
        x->raw = xmalloc(x->raw_cap);
    }
    memcpy(x->raw, x->pos, len);
    x->raw[len] = 0;
    x->pos += len + (nl ? 1 : 0);
    x->lineno++;
    /* strip a UTF-8 BOM on line 1, trailing CR, leading blanks */
    char *s = x->raw;
    if (x->lineno == 1 && (unsigned char)s[0] == 0xEF && (unsigned char)s[1] == 0xBB &&
        (unsigned char)s[2] == 0xBF)
        s += 3;
    while (*s == ' ' || *s == '\t') s++;
    memmove(x->raw, s, strlen(s) + 1);
    size_t l = strlen(x->raw);
    while (l && (x->raw[l - 1] == '\r' || x->raw[l - 1] == ' ' || x->raw[l - 1] == '\t')) x->raw[--l] = 0;

    /* check section names here, so that an empty unknown section is reported too */
    if (x->raw[0] == '[') {
        const char *close = strchr(x->raw, ']');
        if (close) {
            char name[64];
            size_t nl2 = (size_t)(close - x->raw - 1);
            const char *b = x->raw + 1;
            while (nl2 && isspace((unsigned char)*b)) { b++; nl2--; }
            while (nl2 && isspace((unsigned char)b[nl2 - 1])) nl2--;
            if (nl2 >= sizeof name) nl2 = sizeof name - 1;
            memcpy(name, b, nl2);
            name[nl2] = 0;
            if (!is_section(name)) {
                char msg[512];
                unknown_section_msg(name, msg, sizeof msg);
                ctx_error(x, x->lineno, "%s", msg);
                return NULL;
            }
            const char *rest = close + 1;
            while (*rest == ' ' || *rest == '\t') rest++;
            if (*rest && *rest != ';' && *rest != '#') {
                ctx_error(x, x->lineno, "[%s]: text after ']': '%s'", name, rest);
                return NULL;
            }
            /* hand inih the name without blanks: "[ train ]" is [train] */
            snprintf(x->raw, x->raw_cap, "[%s]", name);
        }
    }
    l = strlen(x->raw);

    if (l + 2 <= (size_t)num) {
        memcpy(str, x->raw, l);
        str[l] = '\n';
        str[l + 1] = 0;
        return str;
    }
    /* Longer than inih's buffer: hand it the key part only (the handler takes the value
     * from x->raw), a comment marker, or a line inih rejects as garbled. */
    size_t d = strcspn(x->raw, "=:");
    if (x->raw[0] == ';' || x->raw[0] == '#') {
        snprintf(str, (size_t)num, ";\n");
    } else if (x->raw[0] != '[' && x->raw[d] && d + 3 <= (size_t)num) {
        memcpy(str, x->raw, d);
        memcpy(str + d, "=\n", 3);
    } else {
        snprintf(str, (size_t)num, "[\n");
    }
    return str;
}

/* The value of the current key line, from the raw line: after the first '=' or ':',
 * blanks trimmed; "quoted" with \" and \\ escapes, or bare up to a " ;" or " #"
 * comment.  Returns 0, or -1 after recording an error. */
static int raw_value(ParseCtx *x, const char *section, const char *name, char *out, size_t n)
{
    const char *p = x->raw + strcspn(x->raw, "=:");
    if (*p) p++;
    while (*p == ' ' || *p == '\t') p++;
    size_t len = 0;
    if (*p == '"') {
        p++;
        for (;;) {
            if (!*p) {
                ctx_error(x, x->lineno, "[%s] %s: unterminated quoted string (no closing \")",
                          section, name);
                return -1;
            }
            if (*p == '"') break;
            if (*p == '\\' && (p[1] == '"' || p[1] == '\\')) p++;
            CHECK(len + 1 < n);
            out[len++] = *p;
            p++;
        }
        p++;
        while (*p == ' ' || *p == '\t') p++;
        if (*p && *p != ';' && *p != '#') {
            ctx_error(x, x->lineno, "[%s] %s: text after the closing quote: '%s'", section, name, p);
            return -1;
        }
        out[len] = 0;
        return 0;
    }
    const char *end = p;
    for (const char *q = p; *q; q++) {
        if ((*q == ';' || *q == '#') && q > p && (q[-1] == ' ' || q[-1] == '\t')) break;
        end = q + 1;
    }
    while (end > p && (end[-1] == ' ' || end[-1] == '\t')) end--;
    len = (size_t)(end - p);
    CHECK(len + 1 <= n);
    memcpy(out, p, len);
    out[len] = 0;
    return 0;
}

static int ctx_handler(void *user, const char *section, const char *name, const char *value)
{
    (void)value; /* taken from the raw line instead (quotes, long lines) */
    ParseCtx *x = user;
    if (x->err) return 0;
    int line = x->lineno;
    if (!*section)
        return ctx_error(x, line, "%s: key before any [section]; put it under one of the sections", name);
    if (!is_section(section)) {
        char msg[512];
        unknown_section_msg(section, msg, sizeof msg);
        return ctx_error(x, line, "%s", msg);
    }
    if (!*name) return ctx_error(x, line, "[%s] missing key name before '='", section);
    int ki = find_key(section, name);
    if (ki < 0) {
        char msg[1024];
        unknown_key_msg(section, name, msg, sizeof msg);
        return ctx_error(x, line, "[%s] %s: %s", section, name, msg);
    }
    if (x->seen_line[ki])
        return ctx_error(x, line, "[%s] %s: duplicate key (first set on line %d)", section, name,
                         x->seen_line[ki]);
    x->seen_line[ki] = line;
    size_t cap = strlen(x->raw) + 1;
    char *v = xmalloc(cap);
    if (raw_value(x, section, name, v, cap) != 0) {
        free(v);
        return 0;
    }
    char why[512], shown[80];
    if (parse_value(&KEYS[ki], x->cfg, v, why, sizeof why) != 0) {
        show_value(v, shown, sizeof shown);
        free(v);
        return ctx_error(x, line, "[%s] %s = %s: %s", section, name, shown, why);
    }
    free(v);
    return 1;
}

/* Parse `text` (named `name` in messages) over *c; *c is unchanged on error. */
static int parse_text(Config *c, const char *text, const char *name)
{
    Config tmp = *c;
    ParseCtx x;
    memset(&x, 0, sizeof x);
    x.name = name;
    x.text = text;
    x.pos = text;
    x.cfg = &tmp;
    int r = ini_parse_stream(ctx_reader, &x, ctx_handler, &x);
    free(x.raw);
    if (r != 0 && (!x.err || r < x.err_line)) {
        /* inih's own parse error at line r: quote that line */
        const char *p = text;
        for (int i = 1; i < r && p; i++) {
            p = strchr(p, '\n');
            if (p) p++;
        }
        char shown[80] = "";
        if (p) {
            size_t l = strcspn(p, "\r\n");
            char *line = xmalloc(l + 1);
            memcpy(line, p, l);
            line[l] = 0;
            const char *s = line;
            while (*s == ' ' || *s == '\t') s++;
            show_value(s, shown, sizeof shown);
            free(line);
        }
        return err_set(MT_EX_CONFIG,
                       "%s:%d: cannot parse '%s': expected [section], key = value, or a ; comment",
                       name, r, shown);
    }
    if (x.err) return x.err;
    *c = tmp;
    return 0;
}

/* ---------------------------------------------------------------- public API */

/* Every byte of Config belongs to a key of the table or is padding: a field added to
 * the struct without a key here stops every program at its first config_defaults. */
static void check_table_covers_struct(void)
{
    static int checked;
    if (checked) return;
    size_t end = 0; /* end of the fields seen, in offset order */
    for (;;) {
        int next = -1;
        for (int i = 0; i < NKEYS; i++)
            if (KEYS[i].off >= end && (next < 0 || KEYS[i].off < KEYS[next].off)) next = i;
        size_t align = next < 0 ? _Alignof(Config)
                     : KEYS[next].type == KT_STRING || KEYS[next].type == KT_ENUM ? 1
                     : KEYS[next].size;
        size_t to = next < 0 ? sizeof(Config) : KEYS[next].off;
        if (to - end >= align)
            fatal(MT_EX_SOFTWARE, "config.c: bytes [%zu, %zu) of Config belong to no key of the "
                  "table: add the new field's key to KEYS", end, to);
        if (next < 0) break;
        end = KEYS[next].off + KEYS[next].size;
    }
    checked = 1;
}

void config_defaults(Config *c)
{
    check_table_covers_struct();
    memset(c, 0, sizeof *c);
    for (int i = 0; i < NKEYS; i++) {
        char why[256];
        int r = parse_value(&KEYS[i], c, KEYS[i].def, why, sizeof why);
        CHECK(r == 0);
    }
}

int config_load(Config *c, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return err_set(MT_EX_NOINPUT, "cannot open config file '%s': %s", path, strerror(errno));
    size_t cap = 4096, len = 0;
    char *text = xmalloc(cap);
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            char *t = realloc(text, cap);
            if (!t) fatal(MT_EX_OSERR, "out of memory reading config file '%s'", path);
            text = t;
        }
        size_t got = fread(text + len, 1, cap - 1 - len, f);
        len += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    int saved = errno;
    fclose(f);
    if (bad) {
        free(text);
        return err_set(MT_EX_NOINPUT, "cannot read config file '%s': %s", path, strerror(saved));
    }
    text[len] = 0;
    if (memchr(text, 0, len)) {
        free(text);
        return err_set(MT_EX_CONFIG, "%s: contains a NUL byte: not a text INI file", path);
    }
    int r = parse_text(c, text, path);
    free(text);
    return r;
}

int config_load_string(Config *c, const char *text, const char *name)
{
    return parse_text(c, text, name ? name : "<string>");
}

int config_set(Config *c, const char *assignment, const char *source)
{
    if (!source) source = "--set";
    const char *eq = strchr(assignment, '=');
    const char *dot = strchr(assignment, '.');
    if (!eq || !dot || dot > eq)
        return err_set(MT_EX_CONFIG, "%s %s: expected section.key=value (e.g. optim.lr=0.1)",
                       source, assignment);
    char section[64], key[64];
    const char *s0 = assignment, *s1 = dot, *k0 = dot + 1, *k1 = eq;
    while (s0 < s1 && isspace((unsigned char)*s0)) s0++;
    while (s1 > s0 && isspace((unsigned char)s1[-1])) s1--;
    while (k0 < k1 && isspace((unsigned char)*k0)) k0++;
    while (k1 > k0 && isspace((unsigned char)k1[-1])) k1--;
    if ((size_t)(s1 - s0) >= sizeof section || (size_t)(k1 - k0) >= sizeof key)
        return err_set(MT_EX_CONFIG, "%s %s: no such key", source, assignment);
    memcpy(section, s0, (size_t)(s1 - s0));
    section[s1 - s0] = 0;
    memcpy(key, k0, (size_t)(k1 - k0));
    key[k1 - k0] = 0;
    if (!is_section(section)) {
        char msg[512];
        unknown_section_msg(section, msg, sizeof msg);
        return err_set(MT_EX_CONFIG, "%s %s: %s", source, assignment, msg);
    }
    int ki = find_key(section, key);
    if (ki < 0) {
        char msg[1024];
        unknown_key_msg(section, key, msg, sizeof msg);
        return err_set(MT_EX_CONFIG, "%s %s: %s", source, assignment, msg);
    }
    /* value: trimmed; one pair of surrounding double quotes removed */
    const char *v0 = eq + 1;
    while (isspace((unsigned char)*v0)) v0++;
    size_t vl = strlen(v0);
    while (vl && isspace((unsigned char)v0[vl - 1])) vl--;
    if (vl >= 2 && v0[0] == '"' && v0[vl - 1] == '"') {
        v0++;
        vl -= 2;
    }
    char *v = xmalloc(vl + 1);
    memcpy(v, v0, vl);
    v[vl] = 0;
    char why[512];
    Config tmp = *c;
    int r = parse_value(&KEYS[ki], &tmp, v, why, sizeof why);
    free(v);
    if (r != 0) return err_set(MT_EX_CONFIG, "%s %s: %s", source, assignment, why);
    *c = tmp;
    return 0;
}

int config_validate(const Config *c)
{
    char msg[1800];
    size_t len = 0;
    int n = 0;
#define PROBLEM(...) do { appendf(msg, sizeof msg, &len, "%s", n++ ? "; " : ""); \
                          appendf(msg, sizeof msg, &len, __VA_ARGS__); } while (0)
    msg[0] = 0;
    if (c->train_micro_batches > c->train_batch)
        PROBLEM("train.micro_batches = %d exceeds train.batch = %d (a micro-batch needs at "
                "least one sample)", c->train_micro_batches, c->train_batch);
    else if (c->train_batch % c->train_micro_batches != 0)
        PROBLEM("train.batch = %d is not a multiple of train.micro_batches = %d",
                c->train_batch, c->train_micro_batches);
    if (c->train_epochs == 0 && c->train_steps == 0)
        PROBLEM("train.epochs = 0 and train.steps = 0: set one of them to train");
    if (!c->data_train[0]) PROBLEM("data.train is empty: name the training dataset directory");
    if (!c->model_layers[0]) PROBLEM("model.layers is empty");
    int ps = strcmp(c->parallel_mode, "ps") == 0;
    if (ps && c->parallel_servers < 1)
        PROBLEM("parallel.mode = ps needs parallel.servers >= 1 (it is %d)", c->parallel_servers);
    if (!ps && strcmp(c->parallel_consistency, "sync") != 0)
        PROBLEM("parallel.consistency = %s applies to parallel.mode = ps only (mode is %s)",
                c->parallel_consistency, c->parallel_mode);
    if (ps && c->parallel_zero)
        PROBLEM("parallel.zero = 1 applies to parallel.mode = allreduce only (mode is ps)");
    if (c->optim_nesterov && c->optim_momentum == 0.0)
        PROBLEM("optim.nesterov = true needs optim.momentum > 0");
    if (c->optim_nesterov && strcmp(c->optim_name, "sgd") != 0)
        PROBLEM("optim.nesterov = true applies to optim.name = sgd only (name is %s)",
                c->optim_name);
    if (c->optim_min_lr > c->optim_lr)
        PROBLEM("optim.min_lr = %g exceeds optim.lr = %g", c->optim_min_lr, c->optim_lr);
    if (strcmp(c->run_name, ".") == 0 || strcmp(c->run_name, "..") == 0 || strchr(c->run_name, '/'))
        PROBLEM("run.name = '%s' must be a plain name (no '/'; use run.dir for a path)",
                c->run_name);
#undef PROBLEM
    if (n) return err_set(MT_EX_CONFIG, "config: %s", msg);
    return 0;
}

void config_write(const Config *c, FILE *f, int with_help)
{
    const char *cur = NULL;
    char val[1200], allowed[256];
    for (int i = 0; i < NKEYS; i++) {
        const KeyDesc *k = &KEYS[i];
        if (!cur || strcmp(cur, k->section) != 0) {
            fprintf(f, "%s[%s]\n", cur ? "\n" : "", k->section);
            cur = k->section;
        }
        if (with_help) {
            describe_allowed(k, allowed, sizeof allowed);
            const char *q = k->type == KT_STRING ? "\"" : "";
            fprintf(f, "; %s (%s %s, default %s%s%s)\n", k->help, type_name(k), allowed, q,
                    k->def, q);
        }
        format_value(k, c, 1, val, sizeof val);
        fprintf(f, "%s = %s\n", k->key, val);
    }
}

char *config_to_string(const Config *c)
{
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    if (!f) fatal(MT_EX_OSERR, "config_to_string: open_memstream failed: %s", strerror(errno));
    config_write(c, f, 0);
    if (fclose(f) != 0) fatal(MT_EX_OSERR, "config_to_string: out of memory");
    return buf;
}

void config_print_help(FILE *f)
{
    char name[64], allowed[256], def[64];
    fprintf(f, "%-26s %-6s %-16s %-28s %s\n", "key", "type", "default", "allowed", "help");
    for (int i = 0; i < NKEYS; i++) {
        const KeyDesc *k = &KEYS[i];
        snprintf(name, sizeof name, "%s.%s", k->section, k->key);
        describe_allowed(k, allowed, sizeof allowed);
        if (k->type == KT_STRING && !k->def[0]) snprintf(def, sizeof def, "\"\"");
        else if (strlen(k->def) > 16) snprintf(def, sizeof def, "(below)");
        else snprintf(def, sizeof def, "%s", k->def);
        fprintf(f, "%-26s %-6s %-16s %-28s %s\n", name, type_name(k), def, allowed, k->help);
    }
    for (int i = 0; i < NKEYS; i++)
        if (strlen(KEYS[i].def) > 16)
            fprintf(f, "default %s.%s = %s\n", KEYS[i].section, KEYS[i].key, KEYS[i].def);
}

/* Markdown cell text: '|' escaped (GitHub tables), everything else as is. */
static void md_cell(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '|') fputc('\\', f);
        fputc(*s, f);
    }
}

void config_print_markdown(FILE *f)
{
    char allowed[256];
    fprintf(f, "# Configuration keys\n\n"
               "<!-- Generated by `mpitrain help config --markdown` (`make docs`) from the key "
               "table in src/io/config.c: edit that table, not this file. -->\n\n"
               "A job is one INI file with the sections");
    for (int i = 0; i < NKEYS; i++)
        if (i == 0 || strcmp(KEYS[i].section, KEYS[i - 1].section) != 0)
            fprintf(f, " `[%s]`", KEYS[i].section);
    fprintf(f, ".  A key the file does not set keeps its default; `--set section.key=value` "
               "changes one key after the file is read, with the same checks.  The resolved "
               "configuration (every key, with its help) is saved as `config.ini` in the run "
               "directory and stored in every checkpoint.  `mpitrain help config` prints this "
               "table as text.  In bounds, `(a, b]` excludes `a` and "
               "includes `b`.\n\n"
               "How values are written, the error messages, the checks between keys, the layer "
               "list, the learning-rate schedules and the shipped jobs: [jobs.md](jobs.md).\n");
    for (int i = 0; i < NKEYS; i++) {
        const KeyDesc *k = &KEYS[i];
        if (i == 0 || strcmp(k->section, KEYS[i - 1].section) != 0)
            fprintf(f, "\n## [%s]\n\n| key | type | default | allowed | meaning |\n"
                       "|---|---|---|---|---|\n", k->section);
        describe_allowed(k, allowed, sizeof allowed);
        fprintf(f, "| `%s.%s` | %s | `", k->section, k->key, type_name(k));
        if (k->type == KT_STRING && !k->def[0]) fputs("\"\"", f);
        else md_cell(f, k->def);
        fputs("` | ", f);
        md_cell(f, allowed);
        fputs(" | ", f);
        md_cell(f, k->help);
        fputs(" |\n", f);
    }
}
