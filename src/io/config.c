/* config.c — see config.h.
 *
 * One static table (config_keys) describes every key of Config: section, name, type, field,
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
#include "io/config_impl.h"

#include "core/common.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <ini.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const SECTIONS[] = {"model", "data", "train", "optim",
                                       "parallel", "checkpoint", "run"};
#define NSECTIONS ((int)(sizeof SECTIONS / sizeof SECTIONS[0]))

static int is_section(const char *s)
{
    for (int i = 0; i < NSECTIONS; i++)
        if (strcmp(SECTIONS[i], s) == 0) return 1;
    return 0;
}

static int find_key(const char *section, const char *key)
{
    for (int i = 0; i < config_nkeys; i++)
        if (strcmp(config_keys[i].section, section) == 0 && strcmp(config_keys[i].key, key) == 0) return i;
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

/* The training code computes in float32: a value inside an open bound must stay inside
 * it as a float32 too (4e-324 for a positive lr rounds to 0; 0.999999999 for a beta
 * below 1 rounds to 1) and must not overflow to inf.  1 after writing the reason. */
static int float32_crosses_bound(const KeyDesc *k, double v, char *why, size_t nwhy)
{
    float f = (float)v;
    char allowed[256];
    config_describe_allowed(k, allowed, sizeof allowed);
    if (isinf(f)) {
        snprintf(why, nwhy, "overflows a float32 (largest %g), must be in %s", (double)FLT_MAX,
                 allowed);
        return 1;
    }
    int at_lo = k->dmin_open && (double)f <= k->dmin;
    int at_hi = k->dmax_open && (double)f >= k->dmax;
    if (!at_lo && !at_hi) return 0;
    char b[32];
    config_format_double(at_lo ? k->dmin : k->dmax, b, sizeof b);
    snprintf(why, nwhy, "rounds to %s as a float32 (what training computes with), must be in %s%s",
             b, allowed, at_lo && k->dmin == 0 ? "; the smallest positive float32 is 1.4e-45" : "");
    return 1;
}

/* Parse `text` into the field of `k` in `c`.  On failure writes the reason (no prefix)
 * into why and returns -1. */
static int parse_value(const KeyDesc *k, Config *c, const char *text, char *why, size_t nwhy)
{
    char *field = (char *)c + k->off;
    char allowed[256];
    config_describe_allowed(k, allowed, sizeof allowed);
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
        if (float32_crosses_bound(k, v, why, nwhy)) return -1;
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

/* ---------------------------------------------------------------- INI parsing */

typedef struct {
    const char *name;    /* file name or source for messages */
    const char *text;    /* whole input */
    const char *pos;     /* next unread byte */
    int lineno;          /* line last handed to inih (1-based) */
    char *raw;           /* that line, leading blanks and newline stripped (owned) */
    size_t raw_cap;
    int seen_line[CONFIG_MAX_KEYS]; /* line where each key was set; 0 = not yet */
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
    for (int i = 0; i < NSECTIONS; i++) config_appendf(buf, n, &len, "%s[%s]", i ? " " : "", SECTIONS[i]);
}

static void list_keys(const char *section, char *buf, size_t n)
{
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < config_nkeys; i++)
        if (strcmp(config_keys[i].section, section) == 0)
            config_appendf(buf, n, &len, "%s%s", len ? ", " : "", config_keys[i].key);
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
    for (int i = 0; i < config_nkeys; i++) {
        int d = 2 * edit_distance(key, config_keys[i].key) + (strcmp(config_keys[i].section, section) != 0);
        if (d < bestd) { bestd = d; best = i; }
    }
    char keys[512], sugg[128];
    list_keys(section, keys, sizeof keys);
    if (best < 0) { /* longer than edit_distance compares: no key is near */
        snprintf(buf, n, "unknown key ([%s] keys: %s)", section, keys);
        return;
    }
    if (strcmp(config_keys[best].section, section) == 0) snprintf(sugg, sizeof sugg, "'%s'", config_keys[best].key);
    else snprintf(sugg, sizeof sugg, "[%s] %s", config_keys[best].section, config_keys[best].key);
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
    if (parse_value(&config_keys[ki], x->cfg, v, why, sizeof why) != 0) {
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
    CHECK(config_nkeys <= CONFIG_MAX_KEYS);
    size_t end = 0; /* end of the fields seen, in offset order */
    for (;;) {
        int next = -1;
        for (int i = 0; i < config_nkeys; i++)
            if (config_keys[i].off >= end && (next < 0 || config_keys[i].off < config_keys[next].off)) next = i;
        size_t align = next < 0 ? _Alignof(Config)
                     : config_keys[next].type == KT_STRING || config_keys[next].type == KT_ENUM ? 1
                     : config_keys[next].size;
        size_t to = next < 0 ? sizeof(Config) : config_keys[next].off;
        if (to - end >= align)
            fatal(MT_EX_SOFTWARE, "config.c: bytes [%zu, %zu) of Config belong to no key of the "
                  "table: add the new field's key to config_keys", end, to);
        if (next < 0) break;
        end = config_keys[next].off + config_keys[next].size;
    }
    checked = 1;
}

void config_defaults(Config *c)
{
    check_table_covers_struct();
    memset(c, 0, sizeof *c);
    for (int i = 0; i < config_nkeys; i++) {
        char why[256];
        int r = parse_value(&config_keys[i], c, config_keys[i].def, why, sizeof why);
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
    int r = parse_value(&config_keys[ki], &tmp, v, why, sizeof why);
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
#define PROBLEM(...) do { config_appendf(msg, sizeof msg, &len, "%s", n++ ? "; " : ""); \
                          config_appendf(msg, sizeof msg, &len, __VA_ARGS__); } while (0)
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
    if (ps && !strcmp(c->parallel_consistency, "async") && c->optim_clip_norm > 0)
        PROBLEM("optim.clip_norm = %g with parallel.consistency = async: clipping needs the "
                "whole step's gradient, which async never forms (each push is applied on "
                "arrival); set optim.clip_norm = 0 or use consistency = ssp",
                c->optim_clip_norm);
    if (!ps && c->parallel_steal)
        PROBLEM("parallel.steal = true applies to parallel.mode = ps with consistency = delayed "
                "only (mode is %s)", c->parallel_mode);
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
