/* metrics.c — see metrics.h. */
#include "io/metrics.h"

#include "core/common.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct Metrics {
    int fd;
    char *path;     /* owned, for messages */
    char *line;     /* line being built (owned) */
    size_t len, cap;
    int open;       /* a line has been begun */
};

static void grow(Metrics *m, size_t extra)
{
    if (m->len + extra + 1 <= m->cap) return;
    size_t cap = m->cap ? m->cap : 256;
    while (m->len + extra + 1 > cap) cap *= 2;
    char *p = realloc(m->line, cap);
    if (!p) fatal(MT_EX_OSERR, "metrics: out of memory (%zu bytes)", cap);
    m->line = p;
    m->cap = cap;
}

static void put(Metrics *m, const char *s, size_t n)
{
    grow(m, n);
    memcpy(m->line + m->len, s, n);
    m->len += n;
    m->line[m->len] = 0;
}

__attribute__((format(printf, 2, 3)))
static void putf(Metrics *m, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    CHECK(n >= 0 && (size_t)n < sizeof tmp);
    put(m, tmp, (size_t)n);
}

/* A JSON string literal: quotes, backslash and control characters escaped; bytes
 * >= 0x80 are passed through (UTF-8 stays UTF-8). */
static void put_string(Metrics *m, const char *s)
{
    put(m, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': put(m, "\\\"", 2); break;
        case '\\': put(m, "\\\\", 2); break;
        case '\n': put(m, "\\n", 2); break;
        case '\r': put(m, "\\r", 2); break;
        case '\t': put(m, "\\t", 2); break;
        case '\b': put(m, "\\b", 2); break;
        case '\f': put(m, "\\f", 2); break;
        default:
            if (*p < 0x20 || *p == 0x7f) putf(m, "\\u%04x", *p);
            else put(m, (const char *)p, 1);
        }
    }
    put(m, "\"", 1);
}

static void put_key(Metrics *m, const char *key)
{
    CHECK(m->open);
    put(m, ",", 1);
    put_string(m, key);
    put(m, ":", 1);
}

Metrics *metrics_open(const char *path, int append)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (append ? 0 : O_TRUNC), 0644);
    if (fd < 0) {
        err_set(MT_EX_CANTCREAT, "cannot open metrics file '%s': %s", path, strerror(errno));
        return NULL;
    }
    Metrics *m = xcalloc(1, sizeof *m);
    m->fd = fd;
    m->path = xstrdup(path);
    return m;
}

void metrics_begin(Metrics *m, const char *kind)
{
    if (!m) return;
    CHECK(!m->open);
    m->len = 0;
    m->open = 1;
    put(m, "{\"kind\":", 8);
    put_string(m, kind);
}

void metrics_int(Metrics *m, const char *key, int64_t v)
{
    if (!m) return;
    put_key(m, key);
    putf(m, "%" PRId64, v);
}

void metrics_num(Metrics *m, const char *key, double v)
{
    if (!m) return;
    put_key(m, key);
    if (!isfinite(v)) put(m, "null", 4);
    else putf(m, "%.9g", v);
}

void metrics_str(Metrics *m, const char *key, const char *v)
{
    if (!m) return;
    put_key(m, key);
    if (!v) put(m, "null", 4);
    else put_string(m, v);
}

void metrics_bool(Metrics *m, const char *key, int v)
{
    if (!m) return;
    put_key(m, key);
    if (v) put(m, "true", 4);
    else put(m, "false", 5);
}

int metrics_end(Metrics *m)
{
    if (!m) return 0;
    CHECK(m->open);
    put(m, "}\n", 2);
    m->open = 0;
    size_t done = 0;
    while (done < m->len) {
        ssize_t w = write(m->fd, m->line + done, m->len - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0)
            return err_set(MT_EX_IOERR, "cannot write metrics file '%s': %s", m->path,
                           w < 0 ? strerror(errno) : "no progress");
        done += (size_t)w;
    }
    return 0;
}

int metrics_close(Metrics *m)
{
    if (!m) return 0;
    int rc = 0;
    if (close(m->fd) != 0)
        rc = err_set(MT_EX_IOERR, "cannot close metrics file '%s': %s", m->path, strerror(errno));
    free(m->path);
    free(m->line);
    free(m);
    return rc;
}
