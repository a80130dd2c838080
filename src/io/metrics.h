/* metrics.h — metrics.jsonl writer: one JSON object per line (docs/design.md).
 *
 *   Metrics *m = metrics_open("runs/x/metrics.jsonl", 1);
 *   metrics_begin(m, "train");            // {"kind":"train"
 *   metrics_int(m, "step", 120);          //  ,"step":120
 *   metrics_num(m, "loss", 0.4213);       //  ,"loss":0.4213
 *   metrics_str(m, "split", "test");      //  ,"split":"test"
 *   metrics_end(m);                       //  }\n  written with one write(2)
 *   metrics_close(m);
 *
 * Numbers are printed with %.9g (enough for every float bit pattern); NaN and ±Inf
 * are written as null (JSON has no such numbers).  Strings and keys are JSON-escaped.
 * A line is assembled in memory and written by a single write() on an O_APPEND
 * descriptor, so a reader (tail -f, a plotting script) never sees half a line and a
 * crash loses at most the line being built.  Every function accepts m == NULL and
 * then does nothing, so ranks that do not log can share the calling code.
 * A Metrics is not thread-safe: one line at a time, from one thread. */
#ifndef MPITRAIN_IO_METRICS_H
#define MPITRAIN_IO_METRICS_H

#include <stdint.h>

typedef struct Metrics Metrics;

/* Open `path` for writing (append = 1: keep existing lines, e.g. on resume; 0: truncate).
 * Returns a handle the caller frees with metrics_close, or NULL after
 * err_set(MT_EX_CANTCREAT, ...) naming the path and the reason. */
Metrics *metrics_open(const char *path, int append);

/* Start a line {"kind":"<kind>" ...  A line must not already be open (CHECKed). */
void metrics_begin(Metrics *m, const char *kind);
/* Add a field to the open line (CHECKed: a line is open).  The key is not checked
 * for duplicates: keep keys unique within a line. */
void metrics_int(Metrics *m, const char *key, int64_t v);
void metrics_num(Metrics *m, const char *key, double v);   /* %.9g; NaN/Inf -> null */
void metrics_str(Metrics *m, const char *key, const char *v); /* NULL -> null */
void metrics_bool(Metrics *m, const char *key, int v);
/* Close the line and write it.  0, or MT_EX_IOERR after err_set naming the path
 * (disk full, ...); the line is dropped either way and the next begin may follow. */
int metrics_end(Metrics *m);
/* Close the file (an open line is dropped).  0, or MT_EX_IOERR after err_set. */
int metrics_close(Metrics *m);

#endif
