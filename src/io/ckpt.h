/* ckpt.h — checkpoints: one HDF5 file per saved training state (docs/checkpoint-format.md).
 *
 * A checkpoint holds one training state, independent of the number of ranks and of
 * the parallel mode: full parameter and optimizer-state slabs are written array by
 * array under their layer names with their true shapes, so any world size, mode or
 * machine can read it (and h5py/numpy by name).  Layout of DIR/step-00000300.h5:
 *
 *   bytes 0..511      the seal (the HDF5 user block): "mpitrain checkpoint seal 1", the
 *                     file's length and XXH3-128 of the whole file (ckpt_impl.h), checked
 *                     before HDF5 parses the file: HDF5 trusts metadata, and a few damaged
 *                     bytes of it can make HDF5 loop for ever or crash
 *   /                 attributes: format="mpitrain-checkpoint", version=1 (int32),
 *                     step, epoch, seed (uint64), world_size (int32), mode (e.g.
 *                     "allreduce/deterministic/zero1"), optimizer ("sgd"|"adamw"),
 *                     model (model_describe text), nparams (uint64, real parameters),
 *                     checksum="xxh3_64", mpitrain_version, hdf5_version,
 *                     created (UTC, "2024-05-01T12:34:56Z"); strings are UTF-8,
 *                     fixed-length (no global heap; 0.1.0 wrote variable-length ones)
 *   /config           the resolved INI text (fixed-length string dataset)
 *   /model/<layer>/<param>            float32 (true shape), e.g. /model/dense0/w (512, 784)
 *   /optim/<state>/<layer>/<param>    float32, same shape; state = optim_state_name()
 *   /state            group; attributes step, epoch, pos_in_epoch, seed (uint64),
 *                     rng="philox4x32-10": the RNG is counter-based, every stream is a
 *                     pure function of (seed, purpose, step | epoch | sample index), so
 *                     the cursor (step, epoch, pos_in_epoch) and the seed are its state
 *
 * Every dataset (arrays and /config) carries the attribute xxh3_64 (uint64): XXH3 64-bit
 * (libxxhash, seed 0) of its little-endian bytes.  Arrays are stored contiguous, raw
 * IEEE float32 little-endian; file metadata is written in the HDF5 1.8 format, whose
 * object headers and superblock carry HDF5's own checksums.  (The stored hash was chosen
 * over HDF5's Fletcher32 filter by measurement: see docs/checkpoint-format.md and
 * `mpitrain bench ckpt`.)
 *
 * Directory: DIR/step-%08llu.h5 (step = steps completed), DIR/latest (one line naming the
 * newest complete checkpoint file, relative to DIR).  Writes go to NAME.tmp, which is
 * flushed, sealed, fsynced, re-opened and verified, then renamed; DIR is fsynced; `latest` is
 * replaced atomically (latest.tmp + rename).  A crash or a second SIGTERM at any moment
 * therefore leaves either the previous state or the new one, never a file that a read
 * accepts but is incomplete; stale *.tmp files are removed by the next write.
 *
 * Reading: a file with a seal that does not match is "damaged" (MT_EX_DATAERR, the
 * message names the file) and never reaches HDF5.  A file without a seal (0.1.0, or
 * rewritten by another program) is read under the bounded read lock (io/h5.h): if HDF5
 * loops or crashes on it the process ends with 65 naming the file, except in
 * ckpt_verify, which reads such a file in a child process and returns the failure.
 *
 * HDF5 calls are serialised with the HDF5 lock (io/h5.h) in pieces of at most 8 MB, so a
 * background write (ckpt_async_*) stalls other HDF5 users only briefly.  Error messages
 * go through err_set(); exit codes are sysexits values from core/common.h.
 *
 * Code: ckpt_format.c (the layout, both ways), ckpt_seal.c (the seal), ckpt_read.c
 * (open, read, verify, info), ckpt_write.c (tmp + seal + fsync + verify + rename),
 * ckpt_dir.c (names, latest, prune, resume), ckpt_async.c (background writer). */
#ifndef MPITRAIN_IO_CKPT_H
#define MPITRAIN_IO_CKPT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/model.h"
#include "core/optim.h"

/* MPITRAIN_VERSION (the file VERSION, passed by the Makefile) is written into every
 * checkpoint. */

#define CKPT_FORMAT "mpitrain-checkpoint"
#define CKPT_VERSION 1

/* One training state to save.  Borrowed pointers: nothing is copied or freed. */
typedef struct {
    uint64_t step;          /* steps completed */
    uint64_t epoch;         /* epoch of the next step */
    uint64_t pos_in_epoch;  /* samples of that epoch already consumed */
    uint64_t seed;          /* run seed */
    int world_size;         /* ranks at save time (informational) */
    const char *mode;       /* "allreduce/deterministic/zero1" etc. (NULL = "") */
    const char *config_text;/* resolved INI (NULL = "") */
    const Model *model;     /* names, shapes, slab offsets */
    const OptimConf *optim; /* NULL: no optimizer state */
    const float *params;    /* (model->nparams) full slab (rank 0 gathered it) */
    const float *const *states; /* nstates slabs of (model->nparams) */
    int nstates;            /* optim_nstates(optim) (0 when optim is NULL) */
} CkptState;

/* What a checkpoint file says about itself (root and /state attributes). */
typedef struct {
    int version;
    uint64_t step, epoch, pos_in_epoch, seed;
    uint64_t nparams;        /* real parameters */
    int world_size;
    char mode[64];
    char optimizer[16];
    char model[256];         /* model_describe() text at save time */
    char mpitrain_version[32];
    char hdf5_version[32];
    char created[32];
} CkptMeta;

/* Write state `s` as DIR/step-%08llu.h5 (DIR is created if missing), verify it, update
 * DIR/latest, then delete all but the newest `keep` checkpoints (keep <= 0: keep all;
 * the file just written is always kept).  On success returns 0 and copies the file's
 * path to path_out (if non-NULL, n bytes).  Errors, with err_msg() naming the path,
 * the bytes and the errno text; the .tmp is removed and the previous checkpoints and
 * `latest` are left as they were:
 *   MT_EX_CANTCREAT  DIR or the file cannot be created (permissions, not a directory)
 *   MT_EX_IOERR      write/fsync/rename failure, disk full (ENOSPC), file size limit
 *                    (EFBIG, ulimit -f), or the re-read does not match what was written.
 *                    Disk space is checked up front (statvfs; the environment variable
 *                    MPITRAIN_CKPT_NO_SPACE_CHECK=1 skips that check for filesystems that
 *                    misreport free space) and the file's blocks are reserved
 *                    (fallocate) before HDF5 writes anything, so a full disk fails
 *                    cleanly instead of inside HDF5's close.
 * Not thread-safe against another ckpt_write into the same DIR. */
int ckpt_write(const char *dir, const CkptState *s, int keep, char *path_out, size_t n);

/* Read checkpoint `path` into params (model->nparams floats) and, when optim and states
 * are non-NULL, states[0 .. optim_nstates(optim)) (each model->nparams floats); slab
 * padding is zeroed.  meta may be NULL.  Every array's checksum is verified.  Caller
 * owns all buffers.  Errors (err_msg names the file and array):
 *   MT_EX_NOINPUT  file missing or unreadable
 *   MT_EX_DATAERR  damaged (the seal does not match), not an mpitrain checkpoint, newer
 *                  format version, truncated, or an array fails its checksum (the
 *                  buffers are then partly overwritten)
 *   MT_EX_IOERR    reading the file for its seal failed
 *   MT_EX_CONFIG   the current model/optimizer does not match: an array is missing,
 *                  extra, or has another shape (both shapes named); checked before any
 *                  data is read. */
int ckpt_read(const char *path, const Model *model, const OptimConf *optim, float *params,
              float *const *states, CkptMeta *meta);

/* Read only the metadata (attributes; no array data, no per-array checksums; the seal
 * is checked).  Errors as ckpt_read. */
int ckpt_read_meta(const char *path, CkptMeta *meta);

/* The resolved config text saved in the checkpoint (checksum verified), so the caller
 * can compare configs before building the model.  *config_text is malloc'd: the caller
 * frees it.  Errors: MT_EX_NOINPUT, MT_EX_DATAERR. */
int ckpt_read_config(const char *path, char **config_text);

/* The file name DIR/latest holds (trailing blanks removed; "" when the file is empty):
 * returns 0, or -1 with errno set (ENOENT: no `latest`). */
int ckpt_latest_name(const char *dir, char *name, size_t n);

/* Which checkpoint to resume from.  `dir` is a checkpoint directory (or a checkpoint
 * file, which is then only verified).  Tries the file named by DIR/latest first, then
 * every DIR/step-*.h5 from the highest step down, verifying each candidate fully
 * (ckpt_verify); each skipped candidate is reported with log_info (path and why).
 * Returns 0 and the chosen path in path_out (n bytes), or MT_EX_NOINPUT when the
 * directory is missing or holds no valid checkpoint (err_msg lists what was tried). */
int ckpt_find_resume(const char *dir, char *path_out, size_t n);

/* Verify a checkpoint file completely: the seal, then as HDF5 the format/version
 * attributes, structure (/config, /state, every /optim array has a /model peer of the
 * same shape) and every dataset's xxh3_64 checksum.  An unsealed file is verified in a
 * child process (io/h5.h h5_isolated), so that HDF5 looping or crashing on it is
 * returned as MT_EX_DATAERR instead of ending this process.  When report is non-NULL
 * writes one line per array ("ok"/"BAD" path shape) and a summary; for a file whose seal
 * fails, also what HDF5 still reads of it (in a child process).  Returns 0,
 * MT_EX_NOINPUT (missing file), MT_EX_DATAERR (err_msg names the file, and for a sealed
 * file that passed its seal the first bad array and the count) or MT_EX_IOERR. */
int ckpt_verify(const char *path, FILE *report);

/* Print the metadata and the table of arrays (path, shape, dtype, stored checksum) of a
 * checkpoint without reading the array data (the seal is checked: the whole file is
 * read once).  Errors as ckpt_read_meta. */
int ckpt_info(const char *path, FILE *out);

/* Delete DIR/step-*.h5 beyond the newest `keep` (by step; keep <= 0: none), never the
 * file named `protect` (a path or file name, may be NULL), and stale step-*.h5.tmp
 * files.  Failures to delete are logged, not returned.  Returns the number removed. */
int ckpt_prune(const char *dir, int keep, const char *protect);

/* ---- background writer (ckpt_async.c) ----
 * Training pauses only for a memcpy of the slabs into a host snapshot owned by the
 * CkptAsync; a background thread then runs ckpt_write on the snapshot.  At most one
 * write is in flight. */
typedef struct CkptAsync CkptAsync;

/* Start the writer thread.  Never returns NULL (thread-creation failure aborts). */
CkptAsync *ckpt_async_create(void);
/* Optional: allocate (and touch) the snapshot for slabs of nparams floats and nstates
 * states now, so the first submit does not pay for page faults. */
void ckpt_async_reserve(CkptAsync *a, size_t nparams, int nstates);
/* Wait for the previous write, then copy s->params, s->states, mode and config text
 * into the snapshot and queue ckpt_write(dir, snapshot, keep) and return.  s->model and
 * s->optim are borrowed: they must stay valid until the write is done (ckpt_async_wait
 * or destroy).  Returns 0 when queued.  If the previous write failed, returns its error
 * code (err_msg names that checkpoint) and does NOT queue this one: the failure is
 * consumed, the caller decides whether to go on. */
int ckpt_async_submit(CkptAsync *a, const CkptState *s, const char *dir, int keep);
/* Like ckpt_async_submit, but the snapshot is copied by the writer thread, so training
 * pauses only for the hand-over.  The caller may go on READING s->params and s->states
 * (forward and backward do) but must not modify them until ckpt_async_fence() returns;
 * everything else as ckpt_async_submit. */
int ckpt_async_submit_deferred(CkptAsync *a, const CkptState *s, const char *dir, int keep);
/* Wait until the snapshot of the last submit is taken (returns at once after a plain
 * submit, or when nothing is in flight).  Returns the seconds waited. */
double ckpt_async_fence(CkptAsync *a);
/* Wait until no write is in flight; returns the last write's status (0, or its error
 * code with err_msg set on the calling thread) and clears it; path_out (may be NULL)
 * receives the last written path ("" if none). */
int ckpt_async_wait(CkptAsync *a, char *path_out, size_t n);
/* Wait for an in-flight write, stop the thread, free the snapshot.  NULL is a no-op.
 * A failure of the last write is logged if nobody collected it. */
void ckpt_async_destroy(CkptAsync *a);

#endif
