/* ckpt_impl.h — what the checkpoint files (ckpt_format.c, ckpt_read.c, ckpt_write.c,
 * ckpt_dir.c) share and nobody else uses.  The format itself and the public contracts
 * are in ckpt.h.
 *
 * "Lock held" below means: the caller holds the HDF5 lock (io/h5.h): h5_quiet_lock()
 * when writing, ckpt_rlock() (a bounded read lock) when reading.  Functions that say
 * "lock not held" take it themselves, piece by piece. */
#ifndef MPITRAIN_IO_CKPT_IMPL_H
#define MPITRAIN_IO_CKPT_IMPL_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>
#include <xxhash.h>

#include "io/ckpt.h"
#include "io/h5.h"

#define CKPT_PIECE_BYTES ((size_t)8 << 20) /* bytes per HDF5 read/write call (lock hold bound) */
#define CKPT_MAX_NDIM 4
#define CKPT_HASH_ATTR "xxh3_64"

/* ---- format (ckpt_format.c): checksums, array names, the header ---- */

/* Add the little-endian bytes of p[0..count) to the XXH3-64 state st. */
void ckpt_hash_f32(XXH3_state_t *st, const float *p, size_t count);
/* A fresh XXH3-64 state (seed 0); the caller frees it (XXH3_freeState).  Out of memory
 * is fatal. */
XXH3_state_t *ckpt_hash_new(void);
/* XXH3-64 of n bytes (the /config text). */
uint64_t ckpt_hash_bytes(const void *p, size_t n);

/* One array of a checkpoint: where it lives in the file and in the slabs. */
typedef struct {
    char path[128];       /* "/model/dense0/w", "/optim/m/dense0/w" */
    const ParamDesc *pd;  /* borrowed from the model: name, shape, slab offset */
    int state;            /* -1: parameter slab, else optimizer state index */
} CkptArray;

/* The arrays of model m and of nstates optimizer states of o, in file order (/model
 * first, then each state).  Returns the count; *out is malloc'd (the caller frees it). */
int ckpt_arrays(const Model *m, const OptimConf *o, int nstates, CkptArray **out);
/* "(512,784)" into buf. */
void ckpt_shape_str(char *buf, size_t n, int ndim, const hsize_t *dims);
/* pd's shape as HDF5 dimensions (pd->ndim of them). */
void ckpt_pd_dims(const ParamDesc *pd, hsize_t *dims);
/* Lock held.  Select rows [r0, r0 + nr) (of `row` elements each) of the file space fs
 * of an array of shape (ndim, dims), and return a 1-D memory space of those nr * row
 * elements (the caller closes it).  Arrays are read and written in such pieces of at
 * most CKPT_PIECE_BYTES, each under the lock. */
hid_t ckpt_rows_select(hid_t fs, int ndim, const hsize_t *dims, uint64_t r0, uint64_t nr,
                       uint64_t row);

/* Attribute readers with the checkpoint's tolerance: a number of any integer or float
 * type converted by HDF5 (_int: at most INT32_MAX), a string of any kind (h5.h).
 * 0, or -1 when missing or of another kind (nothing is reported). */
int ckpt_attr_u64(hid_t obj, const char *name, uint64_t *v);
int ckpt_attr_int(hid_t obj, const char *name, int *v);
int ckpt_attr_str(hid_t obj, const char *name, char *buf, size_t n);

/* Lock held.  Read and check the root and /state attributes of open file f (named
 * path in messages) into *m.  0, or MT_EX_DATAERR (not a checkpoint, other version,
 * attribute missing, /state disagrees) with err_set. */
int ckpt_meta_read(hid_t f, const char *path, CkptMeta *m);
/* Lock held.  The fixed-length string dataset /config as malloc'd text (the caller
 * frees it) with its stored checksum in *stored (*has_hash = 0 when it has none), or
 * NULL with why (nwhy bytes).  The checksum is not checked here. */
char *ckpt_config_read(hid_t f, char *why, size_t nwhy, uint64_t *stored, int *has_hash);
/* Lock held.  Write the root attributes, /config (with its checksum), the /model/<layer>
 * groups with their attributes and /state of a new file f.  0, or -1 (h5_why tells
 * why). */
int ckpt_header_write(hid_t f, const CkptState *s);

/* ---- the seal (ckpt_seal.c) ----
 * The first CKPT_SEAL_BYTES of a checkpoint are the HDF5 user block (HDF5 reserves them
 * and starts its superblock after them), and hold the seal, text with fixed offsets:
 *   "mpitrain checkpoint seal 1\n"          bytes 0..26
 *   "bytes %020llu\n"                       bytes 27..53: the file's length
 *   "xxh3-128 %032x\n"                      bytes 54..95: the hash, 32 hex digits
 *   NUL                                     bytes 96..511
 * The hash is XXH3-128 (seed 0, canonical big-endian hex) of the whole file with its 32
 * hex digits taken as '0'.  A file that starts with the HDF5 signature instead has no
 * seal (written by mpitrain 0.1.0 before seals, or by another program). */
#define CKPT_SEAL_BYTES 512

/* Seal the file `path`, which HDF5 has written (with a CKPT_SEAL_BYTES user block) and
 * closed: hash it, write the seal, read the seal back.  0, or -1 with why (n bytes). */
int ckpt_seal_write(const char *path, char *why, size_t n);
/* Check the seal of `path` before HDF5 opens it (reads the whole file once; a file this
 * process found intact before, unchanged since and last changed at least 2 s before
 * that check, is not read again).  Returns 0 with
 * *sealed = 1 (the seal matches: the bytes are as written) or 0 (no seal: HDF5
 * signature at byte 0), or with err_set (the message names the file and what to do):
 *   MT_EX_NOINPUT  missing, unreadable, not a regular file
 *   MT_EX_DATAERR  damaged: no seal and no HDF5 signature, garbled seal, another length
 *                  than sealed (truncated), or another hash
 *   MT_EX_IOERR    a read failed */
int ckpt_seal_check(const char *path, int *sealed);

/* ---- reading (ckpt_read.c) ---- */

/* A checkpoint open for reading. */
typedef struct {
    hid_t f;
    const char *path; /* borrowed (messages, the read lock) */
    int sealed;       /* the seal was checked: HDF5 reads verified bytes */
} CkptIn;

/* The read lock (h5_read_lock) for file in: every HDF5 call on it is made under it. */
void ckpt_rlock(const CkptIn *in);
void ckpt_runlock(void);
/* Check the seal of `path` (ckpt_seal_check), then open it read-only with HDF5.  0, or an
 * error code with err_set: those of ckpt_seal_check, or MT_EX_DATAERR not HDF5 /
 * truncated / damaged metadata.  Close with ckpt_close_file. */
int ckpt_open_file(const char *path, CkptIn *in);
/* Open `path` read-only with HDF5 without checking its seal: for the writer's re-read
 * of the file it has just sealed (the seal was computed from those very bytes), and for
 * a diagnosis of a damaged file in a child process.  sealed: as CkptIn.sealed.  Errors
 * as ckpt_open_file after its seal check. */
int ckpt_open_h5(const char *path, int sealed, CkptIn *in);
void ckpt_close_file(CkptIn *in);
/* Full verification (ckpt_verify) of open file in (lock not held).  report and meta_out
 * may be NULL.  0 or MT_EX_DATAERR with err_set. */
int ckpt_verify_open(const CkptIn *in, FILE *report, CkptMeta *meta_out);

/* ---- directory (ckpt_dir.c) ---- */

/* A checkpoint file of a directory. */
typedef struct {
    uint64_t step;
    char name[256];       /* "step-00000300.h5" (or "...h5.tmp") */
} CkptFile;

/* The file name of the checkpoint after `step` steps: "step-%08llu.h5". */
void ckpt_file_name(char *buf, size_t n, uint64_t step);
/* The checkpoint files (tmp = 0) or stale tmp files (tmp = 1) of dir, highest step
 * first.  Returns the count (*out malloc'd, the caller frees it) or -1 with errno. */
int ckpt_list(const char *dir, int tmp, CkptFile **out);
/* name if it is absolute, else "dir/name", into out (n bytes). */
void ckpt_join(char *out, size_t n, const char *dir, const char *name);
/* fsync the file or directory (is_dir) `path`: 0, or -1 with errno. */
int ckpt_fsync_path(const char *path, int is_dir);
/* Make DIR/latest name `name` (latest.tmp, fsync, rename, fsync DIR).  0, or
 * MT_EX_CANTCREAT / MT_EX_IOERR with err_set: `latest` is then unchanged, except when
 * only the final fsync of DIR failed. */
int ckpt_latest_write(const char *dir, const char *name);

#endif
