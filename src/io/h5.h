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
 * already hold it.  None of them calls err_set(): they return a status and the caller
 * words the message (a checkpoint and a dataset say different things). */
#ifndef MPITRAIN_IO_H5_H
#define MPITRAIN_IO_H5_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

void h5_lock(void);
void h5_unlock(void);

/* The lock, and HDF5's automatic error printing off until the matching unlock (nested
 * calls allowed; the outermost unlock restores what was set before).  Expected failures
 * (a missing attribute, a truncated file) are then reported by our own messages. */
void h5_quiet_lock(void);
void h5_quiet_unlock(void);

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
/* Scalar variable-length UTF-8 string attribute (s = NULL writes ""). */
int h5_attr_put_str(hid_t obj, const char *name, const char *s);

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
