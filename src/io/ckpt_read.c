/* ckpt_read.c — reading checkpoint files: open, list the datasets, read arrays into
 * the slabs (checksums verified), verify a whole file, print its table.  See ckpt.h for
 * the format and the contracts. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/common.h"
#include "io/ckpt_impl.h"

/* -------------------------------------------------------------- the datasets of a file */

typedef struct {
    char path[160];
    H5T_class_t cls;
    size_t tsize;
    int ndim; /* -1: more than CKPT_MAX_NDIM dimensions */
    hsize_t dims[CKPT_MAX_NDIM];
    uint64_t count;
    int has_hash;
    uint64_t hash;
    haddr_t offset; /* raw data address (HADDR_UNDEF if none) */
} DsInfo;

typedef struct {
    DsInfo *v;
    int n, cap;
} DsList;

static void ds_describe(hid_t d, DsInfo *di)
{
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    di->cls = H5Tget_class(t);
    di->tsize = H5Tget_size(t);
    int nd = H5Sget_simple_extent_ndims(sp);
    di->ndim = nd > CKPT_MAX_NDIM ? -1 : nd;
    if (nd >= 0 && nd <= CKPT_MAX_NDIM) H5Sget_simple_extent_dims(sp, di->dims, NULL);
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    di->count = np < 0 ? 0 : (uint64_t)np;
    di->has_hash = ckpt_attr_u64(d, CKPT_HASH_ATTR, &di->hash) == 0;
    di->offset = H5Dget_offset(d);
    H5Tclose(t);
    H5Sclose(sp);
}

/* Lock held.  Appends the datasets below g to out, by link name (a walk that does not
 * depend on the HDF5 version's iterate callback types).  Returns 0 or -1 (HDF5 failure
 * while walking, e.g. corrupt metadata). */
static int walk_group(hid_t g, const char *prefix, int depth, DsList *out)
{
    H5G_info_t gi;
    if (H5Gget_info(g, &gi) < 0) return -1;
    for (hsize_t i = 0; i < gi.nlinks; i++) {
        char name[128];
        ssize_t len = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name,
                                         sizeof name, H5P_DEFAULT);
        if (len < 0 || len >= (ssize_t)sizeof name) return -1;
        char path[160];
        snprintf(path, sizeof path, "%s/%s", prefix, name);
        hid_t o = H5Oopen(g, name, H5P_DEFAULT);
        if (o < 0) return -1;
        int rc = 0;
        H5I_type_t ty = H5Iget_type(o);
        if (ty == H5I_GROUP) {
            rc = depth < 6 ? walk_group(o, path, depth + 1, out) : -1;
        } else if (ty == H5I_DATASET) {
            if (out->n == out->cap) {
                out->cap = out->cap ? 2 * out->cap : 32;
                DsInfo *nv = realloc(out->v, out->cap * sizeof *nv);
                if (!nv) fatal(MT_EX_OSERR, "out of memory listing checkpoint arrays");
                out->v = nv;
            }
            DsInfo *di = &out->v[out->n++];
            memset(di, 0, sizeof *di);
            snprintf(di->path, sizeof di->path, "%s", path);
            ds_describe(o, di);
        }
        H5Oclose(o);
        if (rc < 0) return -1;
    }
    return 0;
}

static const DsInfo *ds_find(const DsList *l, const char *path)
{
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->v[i].path, path) == 0) return &l->v[i];
    return NULL;
}

/* ---------------------------------------------------- opening a checkpoint for reading */

void ckpt_rlock(const CkptIn *in) { h5_read_lock(in->path, in->sealed); }

void ckpt_runlock(void) { h5_read_unlock(); }

int ckpt_open_h5(const char *path, int sealed, CkptIn *in)
{
    in->f = -1;
    in->path = path;
    in->sealed = sealed;
    char why[256];
    ckpt_rlock(in);
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0) {
        h5_why(why, sizeof why);
        ckpt_runlock();
        return err_set(MT_EX_DATAERR,
                       "checkpoint %s is not an HDF5 file: damaged or not a checkpoint; resume "
                       "from an earlier one", path);
    }
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
    in->f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (in->f < 0) h5_why(why, sizeof why); /* before any other call clears the stack */
    H5Pclose(fapl);
    ckpt_runlock();
    if (in->f < 0)
        return err_set(MT_EX_DATAERR,
                       "checkpoint %s cannot be opened (%s): truncated or damaged; resume "
                       "from an earlier one", path, why);
    return 0;
}

/* An unsealed file (written before the seal existed, or rewritten by another tool) has
 * bytes nobody checked: it is verified in a child process (ckpt_verify) before this
 * process lets HDF5 parse it, so a file that makes HDF5 loop, crash, or damage the heap
 * (a later free() aborting, e.g. in HDF5's cleanup at exit) fails there, never here.
 * The last file that passed is remembered by path, inode, size and mtime, so reading its
 * metadata, config and arrays verifies it once. */
static int unsealed_verified(const char *path)
{
    static char last[4096];
    static struct stat last_st;
    struct stat st;
    if (stat(path, &st) == 0 && !strcmp(last, path) && st.st_ino == last_st.st_ino &&
        st.st_size == last_st.st_size && st.st_mtime == last_st.st_mtime)
        return 0;
    int rc = ckpt_verify(path, NULL);
    if (rc == 0 && strlen(path) < sizeof last) {
        snprintf(last, sizeof last, "%s", path);
        last_st = st;
    }
    return rc;
}

int ckpt_open_file(const char *path, CkptIn *in)
{
    int sealed;
    in->f = -1;
    in->path = path;
    int rc = ckpt_seal_check(path, &sealed);
    if (!rc && !sealed) rc = unsealed_verified(path);
    return rc ? rc : ckpt_open_h5(path, sealed, in);
}

void ckpt_close_file(CkptIn *in)
{
    if (in->f < 0) return;
    ckpt_rlock(in);
    H5Fclose(in->f);
    H5Eclear2(H5E_DEFAULT);
    ckpt_runlock();
    in->f = -1;
}

/* -------------------- reading and hashing one dataset in pieces (lock taken per piece) */

/* Read float dataset `d` described by di into dst (di->count floats) or, when dst is
 * NULL, piecewise into scratch (CKPT_PIECE_BYTES) only to hash it; a row larger than
 * scratch is read into a buffer of one row.  A hash-only read first checks that the file
 * holds the array's bytes (arrays are stored contiguous and raw), so neither the time
 * nor the memory it takes can be set by a shape the file merely claims.  *h = its
 * xxh3_64.  Returns 0 or -1 with why. */
static int read_hash_f32(const CkptIn *in, hid_t d, const DsInfo *di, float *dst,
                         float *scratch, uint64_t *h, char *why, size_t nwhy)
{
    uint64_t rows = di->ndim > 0 ? di->dims[0] : 1;
    uint64_t row = rows ? di->count / rows : 0;
    uint64_t per = row ? MT_MAX((uint64_t)1, CKPT_PIECE_BYTES / 4 / row) : 1;
    float *big = NULL;
    if (!dst) {
        ckpt_rlock(in);
        hsize_t stored = H5Dget_storage_size(d);
        ckpt_runlock();
        if (stored < di->count * 4) {
            snprintf(why, nwhy, "%llu of its %llu bytes are stored", (unsigned long long)stored,
                     (unsigned long long)(di->count * 4));
            return -1;
        }
        if (row > CKPT_PIECE_BYTES / 4) big = xmalloc(row * 4);
    }
    XXH3_state_t *st = ckpt_hash_new();
    int rc = 0;
    for (uint64_t r0 = 0; r0 < rows && row; r0 += per) {
        uint64_t nr = MT_MIN(per, rows - r0);
        float *buf = dst ? dst + r0 * row : big ? big : scratch;
        ckpt_rlock(in);
        herr_t e;
        if (di->ndim == 0 || (r0 == 0 && nr == rows)) {
            e = H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
        } else {
            hid_t fs = H5Dget_space(d);
            hid_t ms = ckpt_rows_select(fs, di->ndim, di->dims, r0, nr, row);
            e = H5Dread(d, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, buf);
            H5Sclose(ms);
            H5Sclose(fs);
        }
        if (e < 0) h5_why(why, nwhy);
        ckpt_runlock();
        if (e < 0) {
            rc = -1;
            break;
        }
        ckpt_hash_f32(st, buf, nr * row);
    }
    *h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    free(big);
    return rc;
}

/* Open dataset di->path of f, read it (into dst, or through scratch only to hash it:
 * see read_hash_f32) and close it.  Returns 0, -1 when it cannot be opened or -2 when
 * it cannot be read, with why. */
static int read_array(const CkptIn *in, const DsInfo *di, float *dst, float *scratch,
                      uint64_t *h, char *why, size_t nwhy)
{
    ckpt_rlock(in);
    hid_t d = H5Dopen2(in->f, di->path, H5P_DEFAULT);
    if (d < 0) h5_why(why, nwhy);
    ckpt_runlock();
    if (d < 0) return -1;
    int r = read_hash_f32(in, d, di, dst, scratch, h, why, nwhy);
    ckpt_rlock(in);
    H5Dclose(d);
    ckpt_runlock();
    return r < 0 ? -2 : 0;
}

/* -------------------------------------------------------- verification of a whole file */

typedef struct {
    int nbad;
    char first[1024];
} Bad;

static void bad_add(Bad *b, FILE *report, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void bad_add(Bad *b, FILE *report, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (b->nbad++ == 0) snprintf(b->first, sizeof b->first, "%s", line);
    if (report) fprintf(report, "BAD  %s\n", line);
}

int ckpt_verify_open(const CkptIn *in, FILE *report, CkptMeta *meta_out)
{
    CkptMeta meta;
    char why[256];
    hid_t f = in->f;
    const char *path = in->path;
    ckpt_rlock(in);
    int rc = ckpt_meta_read(f, path, &meta);
    DsList dl = {0};
    int wrc = rc ? 0 : walk_group(f, "", 0, &dl);
    if (wrc < 0) h5_why(why, sizeof why);
    ckpt_runlock();
    if (!rc && wrc < 0)
        rc = err_set(MT_EX_DATAERR, "checkpoint %s: cannot list its arrays (%s): damaged", path,
                     why);
    if (rc) {
        if (report) fprintf(report, "BAD  %s\n", err_msg());
        free(dl.v);
        return rc;
    }
    if (meta_out) *meta_out = meta;
    if (report)
        fprintf(report, "checkpoint %s: step %llu, epoch %llu, %s, %d datasets\n", path,
                (unsigned long long)meta.step, (unsigned long long)meta.epoch, meta.model,
                dl.n);
    Bad bad = {0};
    /* scratch: the largest piece read_hash_f32 will read, at most CKPT_PIECE_BYTES (a small
     * checkpoint needs a few KB, not 8 MB to allocate and fault in for every verify) */
    size_t need = 64;
    for (int i = 0; i < dl.n; i++) {
        uint64_t c = dl.v[i].count;
        need = MT_MAX(need, c > CKPT_PIECE_BYTES / 4 ? (size_t)CKPT_PIECE_BYTES : (size_t)c * 4);
    }
    float *scratch = xmalloc(need);
    int nmodel = 0, have_config = 0;
    for (int i = 0; i < dl.n; i++) {
        const DsInfo *di = &dl.v[i];
        char shp[96];
        ckpt_shape_str(shp, sizeof shp, di->ndim < 0 ? 0 : di->ndim, di->dims);
        if (strcmp(di->path, "/config") == 0) {
            have_config = 1;
            uint64_t stored = 0;
            int has = 0;
            ckpt_rlock(in);
            char *text = ckpt_config_read(f, why, sizeof why, &stored, &has);
            ckpt_runlock();
            if (!text)
                bad_add(&bad, report, "/config unreadable (%s) in %s", why, path);
            else if (!has)
                bad_add(&bad, report, "/config has no " CKPT_HASH_ATTR " checksum in %s", path);
            else if (ckpt_hash_bytes(text, strlen(text)) != stored)
                bad_add(&bad, report, "/config fails its checksum in %s (stored %016llx, "
                        "computed %016llx)", path, (unsigned long long)stored,
                        (unsigned long long)ckpt_hash_bytes(text, strlen(text)));
            else if (report)
                fprintf(report, "ok   /config (%zu bytes) xxh3 %016llx\n", strlen(text),
                        (unsigned long long)stored);
            free(text);
            continue;
        }
        int is_model = strncmp(di->path, "/model/", 7) == 0;
        int is_optim = strncmp(di->path, "/optim/", 7) == 0;
        if (!is_model && !is_optim) {
            bad_add(&bad, report, "%s: unexpected dataset in %s", di->path, path);
            continue;
        }
        nmodel += is_model;
        if (di->cls != H5T_FLOAT || di->tsize != 4 || di->ndim < 1) {
            bad_add(&bad, report, "%s %s: not a float32 array in %s", di->path, shp, path);
            continue;
        }
        if (!di->has_hash) {
            bad_add(&bad, report, "%s %s has no " CKPT_HASH_ATTR " checksum in %s", di->path,
                    shp, path);
            continue;
        }
        if (is_optim) { /* /optim/<state>/<layer>/<param> needs /model/<layer>/<param> */
            const char *p = strchr(di->path + 7, '/');
            char peer[192];
            snprintf(peer, sizeof peer, "/model%s", p ? p : "");
            const DsInfo *m = p ? ds_find(&dl, peer) : NULL;
            if (!m || m->ndim != di->ndim || memcmp(m->dims, di->dims, di->ndim * sizeof(hsize_t))) {
                bad_add(&bad, report, "%s %s has no parameter array %s of the same shape in %s",
                        di->path, shp, peer, path);
                continue;
            }
        }
        uint64_t h;
        int r = read_array(in, di, NULL, scratch, &h, why, sizeof why);
        if (r == -1)
            bad_add(&bad, report, "%s %s cannot be opened in %s (%s)", di->path, shp, path, why);
        else if (r == -2)
            bad_add(&bad, report, "%s %s cannot be read in %s (%s): truncated or damaged",
                    di->path, shp, path, why);
        else if (h != di->hash)
            bad_add(&bad, report, "%s %s fails its checksum in %s (stored %016llx, computed "
                    "%016llx): the file is corrupt", di->path, shp, path,
                    (unsigned long long)di->hash, (unsigned long long)h);
        else if (report)
            fprintf(report, "ok   %s %s xxh3 %016llx\n", di->path, shp, (unsigned long long)h);
    }
    free(scratch);
    if (!have_config) bad_add(&bad, report, "/config missing in %s", path);
    if (nmodel == 0) bad_add(&bad, report, "no /model arrays in %s", path);
    free(dl.v);
    if (report)
        fprintf(report, "%s: %s (%d problem%s)\n", path, bad.nbad ? "CORRUPT" : "OK", bad.nbad,
                bad.nbad == 1 ? "" : "s");
    if (bad.nbad)
        return err_set(MT_EX_DATAERR, "%s%s; resume from an earlier checkpoint", bad.first,
                       bad.nbad > 1 ? " (and more problems: run `mpitrain ckpt verify`)" : "");
    return 0;
}

/* What a verification in another process does (h5_isolated). */
typedef struct {
    const char *path;
    int sealed;
    FILE *report;
} VerifyJob;

static int verify_job(void *arg)
{
    const VerifyJob *j = arg;
    CkptIn in;
    int rc = ckpt_open_h5(j->path, j->sealed, &in);
    if (rc) {
        if (j->report) fprintf(j->report, "BAD  %s\n", err_msg());
        return rc;
    }
    rc = ckpt_verify_open(&in, j->report, NULL);
    ckpt_close_file(&in);
    return rc;
}

/* After a seal failed: what HDF5 still reads of the damaged file, in a child process
 * (bounded; a crash or a loop ends only the child), for the report. */
static void diagnose(const char *path, FILE *report)
{
    char seal[2048], msg[1024];
    snprintf(seal, sizeof seal, "%s", err_msg());
    int code = err_code();
    fprintf(report, "     reading the damaged file anyway, in a separate process:\n");
    VerifyJob j = {path, 0, report};
    int stopped = 0;
    h5_isolated(verify_job, &j, msg, sizeof msg, &stopped);
    if (stopped) fprintf(report, "BAD  %s\n", msg);
    err_set(code, "%s", seal);
}

int ckpt_verify(const char *path, FILE *report)
{
    int sealed = 0;
    int rc = ckpt_seal_check(path, &sealed);
    if (rc) {
        if (report) fprintf(report, "BAD  %s\n", err_msg());
        if (report && rc == MT_EX_DATAERR) diagnose(path, report);
        return rc;
    }
    VerifyJob j = {path, sealed, report};
    if (sealed) return verify_job(&j);
    /* no seal: HDF5 parses bytes nobody has checked, which may make it loop or crash;
     * in a child process that only ends the child, and the caller can fall back */
    char msg[2048];
    int stopped = 0;
    rc = h5_isolated(verify_job, &j, msg, sizeof msg, &stopped);
    if (rc) err_set(rc, "%s", msg);
    if (rc && stopped && report) fprintf(report, "BAD  %s\n", msg);
    return rc;
}

/* --------------------------- metadata, config, table of arrays, reading into the slabs */

int ckpt_read_meta(const char *path, CkptMeta *meta)
{
    CkptIn in;
    int rc = ckpt_open_file(path, &in);
    if (rc) return rc;
    ckpt_rlock(&in);
    rc = ckpt_meta_read(in.f, path, meta);
    ckpt_runlock();
    ckpt_close_file(&in);
    return rc;
}

int ckpt_read_config(const char *path, char **config_text)
{
    *config_text = NULL;
    CkptIn in;
    int rc = ckpt_open_file(path, &in);
    if (rc) return rc;
    char why[256];
    CkptMeta meta;
    uint64_t stored = 0;
    int has = 0;
    char *text = NULL;
    ckpt_rlock(&in);
    rc = ckpt_meta_read(in.f, path, &meta);
    if (!rc) text = ckpt_config_read(in.f, why, sizeof why, &stored, &has);
    ckpt_runlock();
    ckpt_close_file(&in);
    if (rc) return rc;
    if (!text) return err_set(MT_EX_DATAERR, "checkpoint %s: /config unreadable (%s)", path, why);
    if (!has || ckpt_hash_bytes(text, strlen(text)) != stored) {
        free(text);
        return err_set(MT_EX_DATAERR, "checkpoint %s: /config %s", path,
                       has ? "fails its checksum: the file is corrupt" : "has no checksum");
    }
    *config_text = text;
    return 0;
}

/* Open a checkpoint into *in, read its metadata and list its datasets (and, if cks is
 * non-NULL, the root "checksum" attribute).  Returns 0, or the error (in->f is then
 * open when only the metadata or the listing failed: the caller closes it either way). */
static int open_listed(const char *path, CkptIn *in, CkptMeta *m, DsList *dl, char *cks,
                       size_t ncks)
{
    int rc = ckpt_open_file(path, in);
    if (rc) return rc;
    char why[256];
    ckpt_rlock(in);
    rc = ckpt_meta_read(in->f, path, m);
    int wrc = rc ? 0 : walk_group(in->f, "", 0, dl);
    if (wrc < 0) h5_why(why, sizeof why);
    if (cks) ckpt_attr_str(in->f, "checksum", cks, ncks);
    ckpt_runlock();
    if (!rc && wrc < 0)
        rc = err_set(MT_EX_DATAERR, "checkpoint %s: cannot list its arrays (%s): damaged", path,
                     why);
    return rc;
}

/* What ckpt_info prints, in this process or another (h5_isolated). */
typedef struct {
    const char *path;
    FILE *out;
} InfoJob;

static int info_job(void *arg)
{
    const InfoJob *j = arg;
    const char *path = j->path;
    FILE *out = j->out;
    CkptMeta m;
    DsList dl = {0};
    char cks[32] = "";
    CkptIn in;
    int rc = open_listed(path, &in, &m, &dl, cks, sizeof cks);
    ckpt_close_file(&in);
    if (rc) {
        free(dl.v);
        return rc;
    }
    fprintf(out,
            "file:             %s\nformat:           " CKPT_FORMAT " version %d\n"
            "step:             %llu\nepoch:            %llu\npos_in_epoch:     %llu\n"
            "seed:             %llu\nworld_size:       %d\nmode:             %s\n"
            "optimizer:        %s\nmodel:            %s\nnparams:          %llu\n"
            "checksum:         %s\nmpitrain_version: %s\nhdf5_version:     %s\n"
            "created:          %s\narrays:\n",
            path, m.version, (unsigned long long)m.step, (unsigned long long)m.epoch,
            (unsigned long long)m.pos_in_epoch, (unsigned long long)m.seed, m.world_size,
            m.mode, m.optimizer, m.model, (unsigned long long)m.nparams, cks,
            m.mpitrain_version, m.hdf5_version, m.created);
    uint64_t total = 0;
    for (int i = 0; i < dl.n; i++) {
        const DsInfo *di = &dl.v[i];
        char shp[96];
        ckpt_shape_str(shp, sizeof shp, di->ndim < 0 ? 0 : di->ndim, di->dims);
        const char *ty = di->cls == H5T_FLOAT && di->tsize == 4 ? "float32"
                         : di->cls == H5T_STRING                ? "string"
                                                                : "other";
        char h[24] = "none";
        if (di->has_hash) snprintf(h, sizeof h, "%016llx", (unsigned long long)di->hash);
        fprintf(out, "  %-36s %-8s %-16s %12llu bytes  " CKPT_HASH_ATTR " %s\n", di->path, ty, shp,
                (unsigned long long)(di->count * di->tsize), h);
        total += di->count * di->tsize;
    }
    fprintf(out, "total:            %llu bytes in %d datasets\n", (unsigned long long)total, dl.n);
    free(dl.v);
    return 0;
}

int ckpt_info(const char *path, FILE *out)
{
    int sealed = 0;
    int rc = ckpt_seal_check(path, &sealed);
    if (rc) return rc;
    InfoJob j = {path, out};
    if (sealed) return info_job(&j);
    /* no seal, as in ckpt_verify: HDF5 parses bytes nobody has checked, and may loop,
     * crash, or damage the heap so that a later free() aborts (seen at HDF5's exit-time
     * cleanup after a fuzzed global heap); in a child process all of that ends the child */
    char msg[2048];
    int stopped = 0;
    rc = h5_isolated(info_job, &j, msg, sizeof msg, &stopped);
    if (rc) err_set(rc, "%s", msg);
    return rc;
}

int ckpt_read(const char *path, const Model *model, const OptimConf *optim, float *params,
              float *const *states, CkptMeta *meta)
{
    CHECK(model && params);
    int nst = optim && states ? optim_nstates(optim) : 0;
    CkptMeta m;
    DsList dl = {0};
    CkptIn in;
    int rc = open_listed(path, &in, &m, &dl, NULL, 0);
    if (rc && in.f < 0) {
        free(dl.v);
        return rc;
    }
    char why[256];
    CkptArray *arr = NULL;
    int narr = rc ? 0 : ckpt_arrays(model, optim, nst, &arr);
    /* 1. shapes: every array the model needs, none it lacks (before reading any data) */
    for (int i = 0; i < narr && !rc; i++) {
        const DsInfo *di = ds_find(&dl, arr[i].path);
        hsize_t want[CKPT_MAX_NDIM];
        char ws[96], hs[96];
        ckpt_pd_dims(arr[i].pd, want);
        ckpt_shape_str(ws, sizeof ws, arr[i].pd->ndim, want);
        if (!di && arr[i].state >= 0)
            rc = err_set(MT_EX_CONFIG,
                         "checkpoint %s has no optimizer state %s %s: it was saved with "
                         "optimizer %s; the config's optimizer needs it (use the saved "
                         "optimizer settings, or start without --resume)",
                         path, arr[i].path, ws, m.optimizer);
        else if (!di)
            rc = err_set(MT_EX_CONFIG,
                         "checkpoint %s has no array %s %s that the model needs: it was saved "
                         "for model %s (see `mpitrain ckpt info %s`)",
                         path, arr[i].path, ws, m.model, path);
        else if (di->cls != H5T_FLOAT || di->tsize != 4 || di->ndim != arr[i].pd->ndim ||
                 memcmp(di->dims, want, arr[i].pd->ndim * sizeof(hsize_t)) != 0) {
            ckpt_shape_str(hs, sizeof hs, di->ndim < 0 ? 0 : di->ndim, di->dims);
            rc = err_set(MT_EX_CONFIG,
                         "array %s has shape %s%s in checkpoint %s but %s in the current "
                         "model: the model config differs from the one saved (model %s)",
                         arr[i].path, hs, di->cls == H5T_FLOAT && di->tsize == 4 ? "" : " (not float32)",
                         path, ws, m.model);
        }
    }
    for (int i = 0; i < dl.n && !rc; i++) {
        if (strncmp(dl.v[i].path, "/model/", 7) != 0) continue;
        int found = 0;
        for (int k = 0; k < narr && !found; k++) found = strcmp(arr[k].path, dl.v[i].path) == 0;
        if (!found)
            rc = err_set(MT_EX_CONFIG,
                         "checkpoint %s has array %s that the current model (%d layers) lacks: "
                         "it was saved for model %s",
                         path, dl.v[i].path, model->nlayers, m.model);
    }
    /* 2. data, verified */
    if (!rc) {
        memset(params, 0, model->nparams * sizeof(float));
        for (int s = 0; s < nst; s++) memset(states[s], 0, model->nparams * sizeof(float));
    }
    for (int i = 0; i < narr && !rc; i++) {
        const DsInfo *di = ds_find(&dl, arr[i].path);
        float *dst = (arr[i].state < 0 ? params : states[arr[i].state]) + arr[i].pd->off;
        if (!di->has_hash) {
            rc = err_set(MT_EX_DATAERR, "array %s in checkpoint %s has no " CKPT_HASH_ATTR
                         " checksum: damaged or not written by mpitrain", arr[i].path, path);
            break;
        }
        uint64_t h;
        int r = read_array(&in, di, dst, NULL, &h, why, sizeof why);
        if (r == -1) {
            rc = err_set(MT_EX_DATAERR, "array %s in checkpoint %s cannot be opened (%s)",
                         arr[i].path, path, why);
            break;
        }
        if (r == -2)
            rc = err_set(MT_EX_DATAERR, "array %s in checkpoint %s cannot be read (%s): "
                         "truncated or damaged; resume from an earlier checkpoint",
                         arr[i].path, path, why);
        else if (h != di->hash)
            rc = err_set(MT_EX_DATAERR, "array %s in checkpoint %s fails its checksum (stored "
                         "%016llx, computed %016llx): the file is corrupt; resume from an "
                         "earlier checkpoint", arr[i].path, path,
                         (unsigned long long)di->hash, (unsigned long long)h);
    }
    /* 3. the config text's checksum too: a resumed run trusts it */
    if (!rc) {
        uint64_t stored = 0;
        int has = 0;
        ckpt_rlock(&in);
        char *text = ckpt_config_read(in.f, why, sizeof why, &stored, &has);
        ckpt_runlock();
        if (!text || !has || ckpt_hash_bytes(text, strlen(text)) != stored)
            rc = err_set(MT_EX_DATAERR, "checkpoint %s: /config %s", path,
                         !text ? why : !has ? "has no checksum" : "fails its checksum");
        free(text);
    }
    free(arr);
    free(dl.v);
    ckpt_close_file(&in);
    if (!rc && meta) *meta = m;
    return rc;
}
