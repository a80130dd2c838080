/* ckpt_fix.h — what the checkpoint tests share (tests/unit/test_ckpt*.c): a model with
 * optimizer state filled from the RNG, scratch directories, byte surgery on files, and
 * stderr capture.  Every helper fails the running cmocka test on error. */
#ifndef MPITRAIN_TESTS_CKPT_FIX_H
#define MPITRAIN_TESTS_CKPT_FIX_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <hdf5.h>
#include <sys/types.h>

#include "core/model.h"
#include "core/optim.h"
#include "io/ckpt.h"

#define SPEC "dense:32 relu dropout:0.1 dense:10"
#define IN_DIM 20
#define CONFIG_TEXT "[model]\nlayers = dense:32 relu dropout:0.1 dense:10\n[train]\nseed = 7\n"
#define CKPT_SEAL_BYTES_T 512 /* the seal (docs/checkpoint-format.md) */

/* A model and its slabs; fix_free frees them. */
typedef struct {
    Model m;
    OptimConf oc;
    int ns;
    float *p;      /* (m.nparams) */
    float *st[2];  /* (m.nparams) each */
} Fix;

/* Fill the real parameter ranges of a slab (padding stays zero) from rng stream k. */
void fill_slab(const Model *m, float *slab, uint64_t k);
/* Build model spec (input in_dim) and fill its parameter and kind's state slabs from RNG
 * streams offset by salt (the padding stays zero). */
void fix_init(Fix *f, const char *spec, int in_dim, OptimKind kind, uint64_t salt);
void fix_free(Fix *f);
/* The training state of f at `step` (borrows f's slabs). */
CkptState fix_state(const Fix *f, uint64_t step);

/* ckpt_write of f's state at steps first, first + by, ..., last into dir (keep all). */
void write_steps(const char *dir, const Fix *f, uint64_t first, uint64_t last, uint64_t by);

/* A test's scratch: a directory, an AdamW fixture of SPEC on IN_DIM inputs, and its
 * checkpoints at steps first, first + 10, ..., last (path: the last one). */
typedef struct {
    char *dir;
    Fix f;
    char path[1024];
} Case;
void case_open(Case *c, uint64_t first, uint64_t last);
void case_close(Case *c);

/* A fresh directory under $TMPDIR (malloc'd path); rm_tree removes it and frees the path. */
char *make_tmpdir(void);
void rm_tree(char *d);
/* DIR/step-%08llu.h5 into out. */
void ckpath(char *out, size_t n, const char *dir, uint64_t step);
void copy_file(const char *src, const char *dst);
off_t file_size(const char *p);
/* File offset of a contiguous dataset's raw data (opened with HDF5 directly). */
haddr_t data_offset(const char *file, const char *dset);
/* XOR the byte at off with 0x40. */
void flip_byte(const char *file, off_t off);

/* stderr (log_info goes there) into a file while a call runs; capture_end returns what
 * was written (malloc'd). */
typedef struct {
    int saved;
    char path[256];
} Capture;
void capture_begin(Capture *c);
char *capture_end(Capture *c);

/* ckpt_verify's report for `path` (malloc'd), asserting its status is `want`. */
char *verify_report(const char *path, int want);

#endif
