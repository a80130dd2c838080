/* common.c — see common.h */
#include "core/common.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <errno.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static _Thread_local char err_buf[2048];
static _Thread_local int err_last;
static int g_rank = -1, g_world = 0;
static char g_host[64];
static AbortHook g_abort_hook;

int err_set(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof err_buf, fmt, ap);
    va_end(ap);
    err_last = code;
    return code;
}

const char *err_msg(void) { return err_buf; }
int err_code(void) { return err_last; }
void err_clear(void) { err_buf[0] = 0; err_last = 0; }

void log_set_rank(int rank, int world)
{
    g_rank = rank;
    g_world = world;
    if (gethostname(g_host, sizeof g_host) != 0) snprintf(g_host, sizeof g_host, "?");
    g_host[sizeof g_host - 1] = 0;
}

int log_rank(void) { return g_rank < 0 ? 0 : g_rank; }

static void vlog(FILE *f, const char *tag, const char *fmt, va_list ap)
{
    char line[4096];
    int n = 0;
    if (g_world > 1) n = snprintf(line, sizeof line, "[rank %d %s] ", g_rank, g_host);
    if (tag) n += snprintf(line + n, sizeof line - n, "%s", tag);
    vsnprintf(line + n, sizeof line - n, fmt, ap);
    fprintf(f, "%s\n", line);
    fflush(f);
}

void log_info(const char *fmt, ...)
{
    if (g_rank > 0) return;
    va_list ap;
    va_start(ap, fmt);
    vlog(stderr, NULL, fmt, ap);
    va_end(ap);
}

void log_all(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(stderr, NULL, fmt, ap);
    va_end(ap);
}

void log_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(stderr, "error: ", fmt, ap);
    va_end(ap);
}

void set_abort_hook(AbortHook hook) { g_abort_hook = hook; }

void fatal(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(stderr, "fatal: ", fmt, ap);
    va_end(ap);
    if (g_abort_hook) g_abort_hook(code);
    exit(code ? code : MT_EX_SOFTWARE);
}

void check_fail(const char *file, int line, const char *expr)
{
    fatal(MT_EX_SOFTWARE, "%s:%d: CHECK(%s) failed (a bug in mpitrain: please report it)", file,
          line, expr);
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) fatal(MT_EX_OSERR, "out of memory allocating %zu bytes", n);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) fatal(MT_EX_OSERR, "out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

/* 2 MiB pages for slabs of 1 MiB and more (THP in madvise mode) */
enum { HUGE_PAGE = 2 << 20, HUGE_MIN = 1 << 20 };

void *xaligned(size_t n)
{
    size_t sz = (n + 63) & ~(size_t)63;
    size_t align = sz >= HUGE_MIN ? HUGE_PAGE : 64;
    if (align == HUGE_PAGE) sz = (sz + HUGE_PAGE - 1) & ~(size_t)(HUGE_PAGE - 1);
    void *p = NULL;
    if (posix_memalign(&p, align, sz ? sz : 64) != 0 || !p)
        fatal(MT_EX_OSERR, "out of memory allocating %zu bytes", n);
    if (align == HUGE_PAGE) (void)madvise(p, sz, MADV_HUGEPAGE);
    memset(p, 0, sz);
    return p;
}

char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int mkdir_p(const char *dir)
{
    char p[4096];
    if (snprintf(p, sizeof p, "%s", dir) >= (int)sizeof p) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(p, 0777) != 0 && errno != EEXIST) return -1;
        *s = '/';
    }
    if (mkdir(p, 0777) != 0 && errno != EEXIST) return -1;
    struct stat st;
    if (stat(p, &st) != 0) return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}
