/* trace.h — a Chrome trace (trace event format, viewable in Perfetto or
 * chrome://tracing) of where each step's time goes: data wait, compute, exposed
 * communication, optimizer, eval, checkpoint.  One file per rank (rank 0 writes
 * trace.json, rank r > 0 trace.r.json; pid = rank), events buffered in memory and
 * written at close, so tracing costs no I/O during training. */
#ifndef MPITRAIN_IO_TRACE_H
#define MPITRAIN_IO_TRACE_H

#include <stdint.h>

typedef struct Trace Trace;

/* Open dir/trace.json (rank 0) or dir/trace.<rank>.json.  NULL + err_set on failure. */
Trace *trace_open(const char *dir, int rank);
/* A complete event: name (a string literal), start and end from now_s(), the step. */
void trace_event(Trace *t, const char *name, double t0, double t1, uint64_t step);
/* Write the file and free.  Returns 0 or MT_EX_IOERR.  NULL is a no-op. */
int trace_close(Trace *t);

#endif
