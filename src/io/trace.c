/* trace.c — see trace.h */
#include "io/trace.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"

typedef struct {
    const char *name;
    double t0, t1;
    uint64_t step;
} TraceEvent;

struct Trace {
    char path[1100];
    int rank;
    double origin;
    TraceEvent *ev;
    size_t n, cap;
};

#define TRACE_MAX_EVENTS (4u << 20) /* ~128 MB of events at most; later ones are dropped */

Trace *trace_open(const char *dir, int rank)
{
    Trace *t = xcalloc(1, sizeof *t);
    if (rank == 0) snprintf(t->path, sizeof t->path, "%.1000s/trace.json", dir);
    else snprintf(t->path, sizeof t->path, "%.1000s/trace.%d.json", dir, rank);
    FILE *f = fopen(t->path, "w");
    if (!f) {
        err_set(MT_EX_CANTCREAT, "cannot create %s: %s (set run.trace = false)", t->path, strerror(errno));
        free(t);
        return NULL;
    }
    fclose(f);
    t->rank = rank;
    t->origin = now_s();
    return t;
}

void trace_event(Trace *t, const char *name, double t0, double t1, uint64_t step)
{
    if (!t || t->n >= TRACE_MAX_EVENTS) return;
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 4096;
        TraceEvent *ev = realloc(t->ev, t->cap * sizeof *ev);
        if (!ev) return;
        t->ev = ev;
    }
    t->ev[t->n++] = (TraceEvent){name, t0, t1, step};
}

int trace_close(Trace *t)
{
    if (!t) return 0;
    int st = 0;
    FILE *f = fopen(t->path, "w");
    if (!f) {
        st = err_set(MT_EX_IOERR, "cannot write %s: %s", t->path, strerror(errno));
    } else {
        fprintf(f, "{\"traceEvents\":[\n");
        fprintf(f, "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"args\":{\"name\":\"rank %d\"}}",
                t->rank, t->rank);
        for (size_t i = 0; i < t->n; i++) {
            const TraceEvent *e = &t->ev[i];
            fprintf(f, ",\n{\"name\":\"%s\",\"ph\":\"X\",\"pid\":%d,\"tid\":0,\"ts\":%.3f,\"dur\":%.3f,"
                       "\"args\":{\"step\":%llu}}",
                    e->name, t->rank, (e->t0 - t->origin) * 1e6, (e->t1 - e->t0) * 1e6,
                    (unsigned long long)e->step);
        }
        fprintf(f, "\n],\"displayTimeUnit\":\"ms\"}\n");
        if (fclose(f) != 0) st = err_set(MT_EX_IOERR, "cannot write %s: %s", t->path, strerror(errno));
    }
    free(t->ev);
    free(t);
    return st;
}
