/* h5.h — what every HDF5 user in io shares: the process-wide HDF5 lock, a quiet mode in
 * which HDF5 prints nothing (we report), the text of HDF5's last error, the name of a
 * datatype, and scalar attribute writers and readers.  Used by the checkpoint files
 * (ckpt_*.c) and the dataset files (dataset*.c, loader.c through them).
 *
 * The lock.  The HDF5 library we link (Debian's hdf5-openmpi) is not built thread-safe:
 * no two threads may be inside HDF5 at the same time, whatever files they touch.  Every
 * module that calls HDF5 from more than one thread (checkpoint writer thread, dataset
 * prefetch thread, main thread) brackets its HDF5 calls with h5_lock()/h5_unlock() or
 * h5_quiet_lock()/h5_quiet_unlock().  Hold it for short stretches (one metadata
 * operation or one bounded read/write of at most a few MB), so that a background
 * checkpoint write never stalls the data reader for long.  The lock is recursive: a
 * thread that holds it may take it again (each lock needs its unlock).  Locking never
 * fails (a pthread error is a bug: CHECK).
 *
 * Every other function here that calls HDF5 takes the quiet lock itself; callers may
 * already hold it (a read lock too).  None of them calls err_set(): they return a status and the caller
 * words the message (a checkpoint and a dataset say different things). */
#ifndef MPITRAIN_IO_H5_H
#define MPITRAIN_IO_H5_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

void h5_lock(void);
void h5_unlock(void);

/* The same lock, named for sections that expect failures (a missing attribute, a
 * truncated file), which our own messages then report.  HDF5 prints nothing in this
 * process in any case: its automatic error printing is turned off at the first lock,
 * so neither error stacks ("HDF5-DIAG") nor the "infinite loop closing library" it
 * prints at exit after a damaged file reach the user. */
void h5_quiet_lock(void);
void h5_quiet_unlock(void);

/* ---- bounded reads (h5_guard.c)
 * HDF5 trusts a file's metadata: a few damaged bytes can make a call loop for ever or
 * crash, and an HDF5 call cannot be interrupted.  Every read of a file (open, metadata,
 * data) therefore holds h5_read_lock, under which a watchdog thread watches the holder.
 * The bound B is MPITRAIN_HDF5_TIMEOUT in seconds (default 5; 0 = no bound, no watchdog,
 * no crash handler, h5_isolated runs in the process).  While the outermost read lock is
 * held, if the holder's current HDF5 section
 *   - has run for B seconds with the CPU busy (>= 10 % of that time): HDF5 is looping on
 *     damaged metadata -> "error: reading PATH: ..." and _exit(65) (70 when intact);
 *   - has waited for the storage for 12 B seconds -> the same, _exit(74);
 *   - crashes (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT in that thread) -> _exit(65)
 *     (70 when intact).
 * _exit, because exit() would run HDF5's cleanup with a thread still inside HDF5.  The
 * bound applies per lock section: each holds one metadata operation or one read of at
 * most a few MB, so a healthy file never comes near it. */

/* B in seconds (read once from the environment; a bad value is reported and ignored). */
double h5_read_bound_s(void);

/* The lock (nested calls allowed, as h5_quiet_lock) for reading the file `path`, which is
 * borrowed until the matching h5_read_unlock and named in the messages.  intact = 1:
 * the file's bytes were verified before HDF5 saw them (a sealed checkpoint), so a stuck
 * call is the storage or an HDF5 bug, not damage. */
void h5_read_lock(const char *path, int intact);
void h5_read_unlock(void);

/* Run fn(arg) in a child process (fork) and return its status, with its err_msg() in
 * msg (n bytes; "" on success), so that a read that loops or crashes ends only the
 * child: then *stopped = 1, the status is 65, 70 or 74 and msg the watchdog's "reading
 * PATH: ..." (a child killed otherwise: 65, "killed by signal N").  What fn writes to a
 * FILE is flushed by the child; fn's other effects stay in the child.  Call without
 * holding the lock.  With no bound (B = 0), or if fork fails, fn runs in this process. */
int h5_isolated(int (*fn)(void *arg), void *arg, char *msg, size_t n, int *stopped);

/* Why the last HDF5 call failed, for I/O errors: the errno text if the file driver
 * reported one ("No space left on device (errno 28)"), else the innermost message of
 * the error stack (at most 200 characters), else "HDF5 error".  Clears the error stack.
 * Returns buf (n > 0 bytes). */
const char *h5_why(char *buf, size_t n);

/* The innermost message of the error stack ("no HDF5 detail" if there is none), e.g.
 * "truncated file: eof = 1000, ...", for data errors.  Leaves the stack as it is.  Call
 * right after the failing HDF5 call.  n = 0: does nothing. */
void h5_detail(char *buf, size_t n);

/* Human name of an HDF5 datatype ("uint8", "float64", "string", ...) into buf. */
void h5_type_name(hid_t type, char *buf, size_t n);

/* ---- attribute writers: 0, or -1 when HDF5 fails (h5_why / h5_detail tell why) */

/* Attribute `name` of obj with file type ftype, written from v in memory type mtype:
 * a scalar (n = 0) or a 1-D array of n elements. */
int h5_attr_put(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *v,
                hsize_t n);
/* Scalar uint64 (little-endian in the file) and int32 attributes. */
int h5_attr_put_u64(hid_t obj, const char *name, uint64_t v);
int h5_attr_put_i32(hid_t obj, const char *name, int v);
/* Scalar variable-length UTF-8 string attribute (s = NULL writes ""); h5py writes its
 * strings so.  The text lives in the file's global heap, which a reader must parse. */
int h5_attr_put_str(hid_t obj, const char *name, const char *s);
/* Scalar fixed-length UTF-8 string attribute of exactly strlen(s) bytes (at least 1),
 * NUL-padded: the text is in the attribute itself, no global heap (h5py reads it as
 * bytes). */
int h5_attr_put_fstr(hid_t obj, const char *name, const char *s);

/* ---- attribute readers: one element (a scalar or a 1-element array) */

typedef enum {
    H5_ATTR_OK = 0,
    H5_ATTR_MISSING,     /* obj has no attribute `name` */
    H5_ATTR_UNREADABLE,  /* it exists but cannot be opened */
    H5_ATTR_NOT_ONE,     /* it holds no element or more than one (H5AttrFail.count) */
    H5_ATTR_WRONG_TYPE,  /* not a string / not a number (H5AttrFail.type names it) */
    H5_ATTR_READ_FAILED, /* H5Aread failed */
} H5AttrStatus;

/* Details of a failed read, for the caller's message (may be passed as NULL). */
typedef struct {
    long long count; /* H5_ATTR_NOT_ONE: elements found (-1 when unknown) */
    char type[32];   /* H5_ATTR_WRONG_TYPE: h5_type_name() of the attribute's type */
} H5AttrFail;

/* A string attribute, fixed-length (any padding; trailing blanks are dropped) or
 * variable-length (h5py's default; as stored), into buf (n bytes; truncated to fit).
 * buf is "" unless H5_ATTR_OK. */
H5AttrStatus h5_attr_get_str(hid_t obj, const char *name, char *buf, size_t n,
                             H5AttrFail *fail);

/* A number attribute of an integer type (or, allow_float, a floating-point type too),
 * converted by HDF5 into *v of memory type mtype (e.g. H5T_NATIVE_INT64). */
H5AttrStatus h5_attr_get_num(hid_t obj, const char *name, hid_t mtype, int allow_float,
                             void *v, H5AttrFail *fail);

#endif
