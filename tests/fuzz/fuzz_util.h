/* fuzz_util.h — what the libFuzzer harnesses (tests/fuzz/fuzz_*.c) share: a private
 * scratch directory in a tmpfs, writing the fuzz input (or a part of it) there as a
 * file, emptying the directory after each input, a sink for reports, and the check that
 * no HDF5 object is left open after a run (a leaked handle is a bug of the reader).
 * None of it needs MPI: the harnesses call the io functions directly.
 *
 * Failures of the harness itself (cannot create the scratch directory, a write fails)
 * abort with a message: libFuzzer then reports them, they are never taken for a
 * finding in the code under test by accident (the message says "fuzz harness"). */
#ifndef MPITRAIN_TESTS_FUZZ_UTIL_H
#define MPITRAIN_TESTS_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The scratch directory of this process, created on first use under $FUZZ_TMPDIR, else
 * /dev/shm when it is a writable directory, else $TMPDIR or /tmp; removed at exit.
 * Also makes HDF5 quiet (its automatic error printing off), sets the abort hook to
 * abort() and the log rank to 1 (log_info prints nothing, errors still print).  Never
 * NULL. */
const char *fuzz_dir(void);

/* "fuzz_dir()/name" into a static buffer (one of 4 rotating ones). */
const char *fuzz_path(const char *name);

/* Write n bytes to fuzz_path(name); returns that path. */
const char *fuzz_write(const char *name, const void *data, size_t n);

/* Remove everything inside fuzz_dir() (not the directory itself). */
void fuzz_clean(void);

/* A FILE that discards what is written (for the report arguments). */
FILE *fuzz_null(void);

/* Abort (a finding) if any HDF5 identifier of a file, dataset, group, datatype or
 * attribute is still open: `who` names the call that leaked it. */
void fuzz_check_no_h5_leak(const char *who);

/* The end of an import harness: rc is the import's result (`who` names it) and out_dir
 * what it wrote.  A dataset the import accepted must pass dataset_verify (else abort, a
 * finding); no HDF5 handle may stay open; the scratch directory is emptied and the error
 * cleared.  Returns 0 (libFuzzer's "keep going"). */
int fuzz_import_done(int rc, const char *who, const char *out_dir);
/* A little-endian integer of `bytes` (1..8) bytes from *p (advancing *p and shrinking
 * *n); 0 when the input is exhausted.  For harnesses that split one input into parts. */
uint64_t fuzz_take(const uint8_t **p, size_t *n, int bytes);

#endif
