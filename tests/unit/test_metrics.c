/* test_metrics.c — metrics.jsonl writer: writes lines, parses them back with a small
 * JSON parser, checks values, escaping, NaN/Inf -> null, append/truncate, errors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "io/metrics.h"

static char g_dir[256];

/* ---- a minimal parser for flat JSON objects: {"key": string|number|true|false|null, ...} */

typedef enum { JV_STR, JV_NUM, JV_BOOL, JV_NULL } JType;
typedef struct {
    char key[64];
    JType type;
    char str[256];
    double num;
    char numtext[64];
    int b;
} JField;

static const char *parse_jstring(const char *p, char *out, size_t n)
{
    if (*p != '"') return NULL;
    p++;
    size_t len = 0;
    while (*p != '"') {
        unsigned char ch = (unsigned char)*p;
        if (!ch || ch < 0x20) return NULL; /* raw control characters are not JSON */
        if (ch == '\\') {
            p++;
            switch (*p) {
            case '"': ch = '"'; break;
            case '\\': ch = '\\'; break;
            case '/': ch = '/'; break;
            case 'n': ch = '\n'; break;
            case 'r': ch = '\r'; break;
            case 't': ch = '\t'; break;
            case 'b': ch = '\b'; break;
            case 'f': ch = '\f'; break;
            case 'u': {
                unsigned v;
                if (sscanf(p + 1, "%4x", &v) != 1 || v > 0x7f) return NULL;
                ch = (unsigned char)v;
                p += 4;
                break;
            }
            default: return NULL;
            }
        }
        if (len + 1 >= n) return NULL;
        out[len++] = (char)ch;
        p++;
    }
    out[len] = 0;
    return p + 1;
}

/* Parse one line; returns the number of fields, or -1 if it is not a flat JSON object
 * followed by exactly one '\n'. */
static int parse_line(const char *line, JField *f, int maxf)
{
    const char *p = line;
    if (*p++ != '{') return -1;
    int n = 0;
    for (;;) {
        if (n == maxf) return -1;
        p = parse_jstring(p, f[n].key, sizeof f[n].key);
        if (!p || *p++ != ':') return -1;
        if (*p == '"') {
            f[n].type = JV_STR;
            p = parse_jstring(p, f[n].str, sizeof f[n].str);
            if (!p) return -1;
        } else if (strncmp(p, "null", 4) == 0) {
            f[n].type = JV_NULL;
            p += 4;
        } else if (strncmp(p, "true", 4) == 0 || strncmp(p, "false", 5) == 0) {
            f[n].type = JV_BOOL;
            f[n].b = *p == 't';
            p += f[n].b ? 4 : 5;
        } else {
            /* JSON number grammar: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
            const char *s = p;
            if (*p == '-') p++;
            if (*p == '0') p++;
            else if (*p >= '1' && *p <= '9') while (*p >= '0' && *p <= '9') p++;
            else return -1;
            if (*p == '.') {
                p++;
                if (!(*p >= '0' && *p <= '9')) return -1;
                while (*p >= '0' && *p <= '9') p++;
            }
            if (*p == 'e' || *p == 'E') {
                p++;
                if (*p == '+' || *p == '-') p++;
                if (!(*p >= '0' && *p <= '9')) return -1;
                while (*p >= '0' && *p <= '9') p++;
            }
            f[n].type = JV_NUM;
            snprintf(f[n].numtext, sizeof f[n].numtext, "%.*s", (int)(p - s), s);
            f[n].num = strtod(f[n].numtext, NULL);
        }
        n++;
        if (*p == ',') { p++; continue; }
        if (*p++ != '}') return -1;
        break;
    }
    return (p[0] == '\n' && p[1] == 0) ? n : -1;
}

/* Read the whole file into lines[] (each with its '\n'); returns the count. */
static int read_lines(const char *path, char lines[][1024], int max)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    int n = 0;
    while (n < max && fgets(lines[n], 1024, f)) n++;
    fclose(f);
    return n;
}

static const char *path_of(const char *name)
{
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", g_dir, name);
    return p;
}

static void test_write_and_parse(void **state)
{
    (void)state;
    const char *path = path_of("m.jsonl");
    Metrics *m = metrics_open(path, 0);
    assert_non_null(m);

    metrics_begin(m, "train");
    metrics_int(m, "step", 120);
    metrics_int(m, "epoch", 0);
    metrics_num(m, "loss", 0.4213);
    metrics_num(m, "lr", 0.001);
    metrics_num(m, "samples_per_s", 61234.5);
    metrics_num(m, "f32", (double)0.1f);
    metrics_int(m, "big", INT64_MIN);
    metrics_int(m, "max", INT64_MAX);
    assert_int_equal(metrics_end(m), 0);

    metrics_begin(m, "eval");
    metrics_str(m, "split", "test");
    metrics_num(m, "nan", NAN);
    metrics_num(m, "inf", INFINITY);
    metrics_num(m, "ninf", -INFINITY);
    metrics_num(m, "tiny", 1e-300);
    metrics_num(m, "negzero", -0.0);
    metrics_bool(m, "ok", 1);
    metrics_bool(m, "bad", 0);
    metrics_str(m, "none", NULL);
    metrics_str(m, "esc", "q\"b\\s/n\nr\rt\tc\x01\x1f\x7f-\xc3\xa9");
    assert_int_equal(metrics_end(m), 0);

    metrics_begin(m, "we\"ird");
    assert_int_equal(metrics_end(m), 0);
    assert_int_equal(metrics_close(m), 0);

    char lines[8][1024];
    assert_int_equal(read_lines(path, lines, 8), 3);
    assert_string_equal(lines[0], "{\"kind\":\"train\",\"step\":120,\"epoch\":0,\"loss\":0.4213,"
                                  "\"lr\":0.001,\"samples_per_s\":61234.5,\"f32\":0.100000001,"
                                  "\"big\":-9223372036854775808,\"max\":9223372036854775807}\n");

    JField f[16];
    int n = parse_line(lines[0], f, 16);
    assert_int_equal(n, 9);
    assert_string_equal(f[0].key, "kind");
    assert_int_equal(f[0].type, JV_STR);
    assert_string_equal(f[0].str, "train");
    assert_string_equal(f[1].key, "step");
    assert_true(f[1].type == JV_NUM && f[1].num == 120);
    assert_true(f[3].type == JV_NUM && f[3].num == 0.4213);
    /* %.9g keeps every float bit pattern */
    assert_true((float)f[6].num == 0.1f);
    assert_string_equal(f[7].numtext, "-9223372036854775808");

    n = parse_line(lines[1], f, 16);
    assert_int_equal(n, 11);
    assert_string_equal(f[0].str, "eval");
    assert_true(f[1].type == JV_STR && strcmp(f[1].str, "test") == 0);
    assert_int_equal(f[2].type, JV_NULL);
    assert_int_equal(f[3].type, JV_NULL);
    assert_int_equal(f[4].type, JV_NULL);
    assert_true(f[5].type == JV_NUM && f[5].num == 1e-300);
    assert_true(f[6].type == JV_NUM && f[6].num == 0.0 && signbit(f[6].num));
    assert_true(f[7].type == JV_BOOL && f[7].b == 1);
    assert_true(f[8].type == JV_BOOL && f[8].b == 0);
    assert_int_equal(f[9].type, JV_NULL);
    assert_string_equal(f[10].key, "esc");
    assert_string_equal(f[10].str, "q\"b\\s/n\nr\rt\tc\x01\x1f\x7f-\xc3\xa9");

    n = parse_line(lines[2], f, 16);
    assert_int_equal(n, 1);
    assert_string_equal(f[0].str, "we\"ird");
}

static void test_append_truncate(void **state)
{
    (void)state;
    const char *path = path_of("a.jsonl");
    for (int round = 0; round < 3; round++) {
        Metrics *m = metrics_open(path, round > 0); /* truncate once, then append */
        assert_non_null(m);
        metrics_begin(m, "train");
        metrics_int(m, "round", round);
        assert_int_equal(metrics_end(m), 0);
        /* flushed at metrics_end: visible before close */
        char lines[8][1024];
        assert_int_equal(read_lines(path, lines, 8), round + 1);
        assert_int_equal(metrics_close(m), 0);
    }
    Metrics *m = metrics_open(path, 0);
    assert_non_null(m);
    assert_int_equal(metrics_close(m), 0);
    char lines[8][1024];
    assert_int_equal(read_lines(path, lines, 8), 0);
}

static void test_null_handle_and_errors(void **state)
{
    (void)state;
    /* NULL handle: everything is a no-op */
    metrics_begin(NULL, "train");
    metrics_int(NULL, "a", 1);
    metrics_num(NULL, "b", 1.0);
    metrics_str(NULL, "c", "x");
    metrics_bool(NULL, "d", 1);
    assert_int_equal(metrics_end(NULL), 0);
    assert_int_equal(metrics_close(NULL), 0);

    err_clear();
    const char *bad = path_of("no-such-dir/metrics.jsonl");
    assert_null(metrics_open(bad, 1));
    assert_int_equal(err_code(), MT_EX_CANTCREAT);
    char want[1024];
    snprintf(want, sizeof want, "cannot open metrics file '%s': No such file or directory", bad);
    assert_string_equal(err_msg(), want);

    /* a full disk is reported by metrics_end */
    Metrics *m = metrics_open("/dev/full", 1);
    if (m) {
        err_clear();
        metrics_begin(m, "train");
        metrics_int(m, "step", 1);
        assert_int_equal(metrics_end(m), MT_EX_IOERR);
        assert_string_equal(err_msg(), "cannot write metrics file '/dev/full': No space left on device");
        /* the handle stays usable */
        metrics_begin(m, "train");
        assert_int_equal(metrics_end(m), MT_EX_IOERR);
        assert_int_equal(metrics_close(m), 0);
    }
}

static int setup(void **state)
{
    (void)state;
    const char *t = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/test_metrics.XXXXXX", t && *t ? t : "/tmp");
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
        cmocka_unit_test(test_write_and_parse),
        cmocka_unit_test(test_append_truncate),
        cmocka_unit_test(test_null_handle_and_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
