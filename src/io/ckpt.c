/* ckpt.c — checkpoint files: format, write, verify, read, resume fallback, prune.
 * See ckpt.h for the format and the contracts. */
#include "io/ckpt.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <hdf5.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/common.h"
#include "io/h5lock.h"

#define PIECE_BYTES ((size_t)8 << 20) /* bytes per HDF5 read/write call (lock hold bound) */
#define MAX_NDIM 4
#define HASH_ATTR "xxh3_64"

/* ------------------------------------------------------------------------------------
 * HDF5 under the global lock, with HDF5's automatic error printing off (we report). */

static int g_quiet_depth; /* guarded by h5_lock */
static H5E_auto2_t g_saved_func;
static void *g_saved_data;

static void hl_lock(void)
{
    h5_lock();
    if (g_quiet_depth++ == 0) {
        H5Eget_auto2(H5E_DEFAULT, &g_saved_func, &g_saved_data);
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    }
}

static void hl_unlock(void)
{
    if (--g_quiet_depth == 0) H5Eset_auto2(H5E_DEFAULT, g_saved_func, g_saved_data);
    h5_unlock();
}

typedef struct {
    char *buf;
    size_t n;
    int err_no;
} ErrWalk;

static herr_t errwalk_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    ErrWalk *w = data;
    const char *d = e->desc ? e->desc : "";
    const char *p = strstr(d, "errno = ");
    if (p && !w->err_no) w->err_no = atoi(p + 8);
    if (n == 0) snprintf(w->buf, w->n, "%.200s", d);
    return 0;
}

/* Why the last HDF5 call failed: errno text if the driver reported one, else HDF5's
 * innermost message.  Clears the error stack.  Call with the lock held. */
static const char *h5_why(char *buf, size_t n)
{
    ErrWalk w = {buf, n, 0};
    buf[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, errwalk_cb, &w);
    H5Eclear2(H5E_DEFAULT);
    if (w.err_no)
        snprintf(buf, n, "%s (errno %d)", strerror(w.err_no), w.err_no);
    else if (!buf[0])
        snprintf(buf, n, "HDF5 error");
    return buf;
}

/* ------------------------------------------------------------------------------------
 * Checksums: XXH3-64 of the little-endian bytes. */

static void hash_f32(XXH3_state_t *st, const float *p, size_t count)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    uint32_t tmp[1024];
    while (count) {
        size_t k = MT_MIN(count, (size_t)1024);
        memcpy(tmp, p, k * 4);
        for (size_t i = 0; i < k; i++) tmp[i] = __builtin_bswap32(tmp[i]);
        XXH3_64bits_update(st, tmp, k * 4);
        p += k;
        count -= k;
    }
#else
    XXH3_64bits_update(st, p, count * sizeof(float));
#endif
}

static XXH3_state_t *hash_new(void)
{
    XXH3_state_t *st = XXH3_createState();
    if (!st) fatal(MT_EX_OSERR, "out of memory allocating a hash state");
    XXH3_64bits_reset(st);
    return st;
}

/* ------------------------------------------------------------------------------------
 * Attribute helpers (lock held). */

static int attr_put(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *v)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, mtype, v);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return rc < 0 ? -1 : 0;
}

static int attr_put_u64(hid_t obj, const char *name, uint64_t v)
{
    return attr_put(obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v);
}

static int attr_put_i32(hid_t obj, const char *name, int v)
{
    return attr_put(obj, name, H5T_STD_I32LE, H5T_NATIVE_INT, &v);
}

static int attr_put_str(hid_t obj, const char *name, const char *s)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    const char *v = s ? s : "";
    int rc = attr_put(obj, name, t, t, &v);
    H5Tclose(t);
    return rc;
}

static int attr_get_u64(hid_t obj, const char *name, uint64_t *v)
{
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t sp = H5Aget_space(a);
    int ok = H5Sget_simple_extent_npoints(sp) == 1 && H5Aread(a, H5T_NATIVE_UINT64, v) >= 0;
    H5Sclose(sp);
    H5Aclose(a);
    return ok ? 0 : -1;
}

static int attr_get_int(hid_t obj, const char *name, int *v)
{
    uint64_t u;
    if (attr_get_u64(obj, name, &u) < 0 || u > INT32_MAX) return -1;
    *v = (int)u;
    return 0;
}

static int attr_get_str(hid_t obj, const char *name, char *buf, size_t n)
{
    buf[0] = 0;
    if (H5Aexists(obj, name) <= 0) return -1;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t ft = H5Aget_type(a);
    int rc = -1;
    if (H5Tget_class(ft) == H5T_STRING) {
        hid_t mt = H5Tcopy(H5T_C_S1);
        if (H5Tis_variable_str(ft) > 0) {
            char *s = NULL;
            H5Tset_size(mt, H5T_VARIABLE);
            H5Tset_cset(mt, H5Tget_cset(ft));
            if (H5Aread(a, mt, &s) >= 0 && s) {
                snprintf(buf, n, "%s", s);
                H5free_memory(s);
                rc = 0;
            }
        } else {
            size_t sz = H5Tget_size(ft);
            char *s = xcalloc(sz + 1, 1);
            H5Tset_size(mt, sz + 1);
            H5Tset_strpad(mt, H5T_STR_NULLTERM);
            H5Tset_cset(mt, H5Tget_cset(ft));
            if (H5Aread(a, mt, s) >= 0) {
                snprintf(buf, n, "%s", s);
                rc = 0;
            }
            free(s);
        }
        H5Tclose(mt);
    }
    H5Tclose(ft);
    H5Aclose(a);
    return rc;
}

/* ------------------------------------------------------------------------------------
 * Small file-system helpers. */

static int fsync_path(const char *path, int is_dir)
{
    int fd = open(path, is_dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

typedef struct {
    const char *path;
    int rc, err;
} FsyncJob;

static void *fsync_main(void *arg)
{
    FsyncJob *j = arg;
    j->rc = fsync_path(j->path, 0);
    j->err = j->rc ? errno : 0;
    return NULL;
}

static void join_path(char *out, size_t n, const char *dir, const char *name)
{
    if (name[0] == '/')
        snprintf(out, n, "%s", name);
    else
        snprintf(out, n, "%s/%s", dir, name);
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* step number of "step-<digits>.h5" (tmp = 0) or "step-<digits>.h5.tmp" (tmp = 1) */
static int parse_ckpt_name(const char *name, int tmp, uint64_t *step)
{
    if (strncmp(name, "step-", 5) != 0 || !isdigit((unsigned char)name[5])) return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(name + 5, &end, 10);
    if (errno) return 0;
    if (strcmp(end, tmp ? ".h5.tmp" : ".h5") != 0) return 0;
    *step = v;
    return 1;
}

typedef struct {
    uint64_t step;
    char name[256];
} CkFile;

static int ckfile_cmp_desc(const void *a, const void *b)
{
    uint64_t x = ((const CkFile *)a)->step, y = ((const CkFile *)b)->step;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The checkpoint files (tmp = 0) or stale tmp files (tmp = 1) of dir, highest step
 * first.  Returns the count (*out malloc'd) or -1 with errno. */
static int list_ckpts(const char *dir, int tmp, CkFile **out)
{
    DIR *d = opendir(dir);
    *out = NULL;
    if (!d) return -1;
    int n = 0, cap = 0;
    CkFile *v = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        uint64_t step;
        if (!parse_ckpt_name(e->d_name, tmp, &step) || strlen(e->d_name) >= 256) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            CkFile *nv = realloc(v, cap * sizeof *v);
            if (!nv) fatal(MT_EX_OSERR, "out of memory listing %s", dir);
            v = nv;
        }
        v[n].step = step;
        snprintf(v[n].name, sizeof v[n].name, "%s", e->d_name);
        n++;
    }
    closedir(d);
    if (n > 1) qsort(v, n, sizeof *v, ckfile_cmp_desc);
    *out = v;
    return n;
}

/* ------------------------------------------------------------------------------------
 * The arrays of a model (and optimizer) in file order. */

typedef struct {
    char path[128];       /* "/model/dense0/w", "/optim/m/dense0/w" */
    const ParamDesc *pd;
    int state;            /* -1: parameter slab, else optimizer state index */
} CkArr;

static int arr_list(const Model *m, const OptimConf *o, int nstates, CkArr **out)
{
    int nparam = 0;
    for (int l = 0; l < m->nlayers; l++) nparam += m->layers[l].nparams;
    CkArr *v = xcalloc((size_t)nparam * (1 + nstates) + 1, sizeof *v);
    int k = 0;
    for (int s = -1; s < nstates; s++)
        for (int l = 0; l < m->nlayers; l++)
            for (int p = 0; p < m->layers[l].nparams; p++) {
                const Layer *L = &m->layers[l];
                if (s < 0)
                    snprintf(v[k].path, sizeof v[k].path, "/model/%s/%s", L->name,
                             L->params[p].name);
                else
                    snprintf(v[k].path, sizeof v[k].path, "/optim/%s/%s/%s",
                             optim_state_name(o, s), L->name, L->params[p].name);
                v[k].pd = &L->params[p];
                v[k].state = s;
                k++;
            }
    *out = v;
    return k;
}

static void shape_str(char *buf, size_t n, int ndim, const hsize_t *dims)
{
    size_t k = snprintf(buf, n, "(");
    for (int i = 0; i < ndim && k < n; i++)
        k += snprintf(buf + k, n - k, "%s%llu", i ? "," : "", (unsigned long long)dims[i]);
    if (k < n) snprintf(buf + k, n - k, ")");
}

static void pd_dims(const ParamDesc *pd, hsize_t *dims)
{
    for (int i = 0; i < pd->ndim; i++) dims[i] = (hsize_t)pd->shape[i];
}

/* ------------------------------------------------------------------------------------
 * The datasets of a file (a walk that does not depend on the HDF5 version's iterate
 * callback types). */

typedef struct {
    char path[160];
    H5T_class_t cls;
    size_t tsize;
    int ndim; /* -1: more than MAX_NDIM dimensions */
    hsize_t dims[MAX_NDIM];
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
    di->ndim = nd > MAX_NDIM ? -1 : nd;
    if (nd >= 0 && nd <= MAX_NDIM) H5Sget_simple_extent_dims(sp, di->dims, NULL);
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    di->count = np < 0 ? 0 : (uint64_t)np;
    di->has_hash = attr_get_u64(d, HASH_ATTR, &di->hash) == 0;
    di->offset = H5Dget_offset(d);
    H5Tclose(t);
    H5Sclose(sp);
}

/* Lock held.  Returns 0 or -1 (HDF5 failure while walking, e.g. corrupt metadata). */
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

/* ------------------------------------------------------------------------------------
 * Opening a checkpoint for reading. */

/* Open `path` read-only.  Returns the file id (lock NOT held on return) or -1 with
 * err_set (NOINPUT missing, DATAERR not HDF5 / truncated / damaged metadata). */
static hid_t ck_open(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return err_set(MT_EX_NOINPUT, "checkpoint %s: %s", path, strerror(errno)), -1;
    if (!S_ISREG(st.st_mode))
        return err_set(MT_EX_NOINPUT, "checkpoint %s is not a regular file", path), -1;
    int fd = open(path, O_RDONLY);
    if (fd < 0) return err_set(MT_EX_NOINPUT, "checkpoint %s: %s", path, strerror(errno)), -1;
    close(fd);
    hl_lock();
    char why[256];
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0) {
        h5_why(why, sizeof why);
        hl_unlock();
        return err_set(MT_EX_DATAERR,
                       "checkpoint %s is not an HDF5 file (%lld bytes): damaged or not a "
                       "checkpoint; resume from an earlier one",
                       path, (long long)st.st_size),
               -1;
    }
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (f < 0) h5_why(why, sizeof why); /* before any other call clears the stack */
    H5Pclose(fapl);
    if (f < 0) {
        hl_unlock();
        return err_set(MT_EX_DATAERR,
                       "checkpoint %s cannot be opened (%s): truncated or damaged; resume "
                       "from an earlier one",
                       path, why),
               -1;
    }
    hl_unlock();
    return f;
}

static void ck_close(hid_t f)
{
    hl_lock();
    H5Fclose(f);
    H5Eclear2(H5E_DEFAULT);
    hl_unlock();
}

/* Lock held. */
static int meta_read_locked(hid_t f, const char *path, CkptMeta *m)
{
    char fmt[64];
    memset(m, 0, sizeof *m);
    if (attr_get_str(f, "format", fmt, sizeof fmt) < 0 || strcmp(fmt, CKPT_FORMAT) != 0)
        return err_set(MT_EX_DATAERR,
                       "%s is an HDF5 file but not an mpitrain checkpoint (attribute format "
                       "is \"%s\", expected \"" CKPT_FORMAT "\")",
                       path, fmt);
    if (attr_get_int(f, "version", &m->version) < 0)
        return err_set(MT_EX_DATAERR, "checkpoint %s has no version attribute", path);
    if (m->version != CKPT_VERSION)
        return err_set(MT_EX_DATAERR,
                       "checkpoint %s has format version %d; this mpitrain " MPITRAIN_VERSION
                       " reads version %d",
                       path, m->version, CKPT_VERSION);
    static const char *const u64s[] = {"step", "epoch", "seed", "nparams"};
    uint64_t *dst[] = {&m->step, &m->epoch, &m->seed, &m->nparams};
    for (int i = 0; i < 4; i++)
        if (attr_get_u64(f, u64s[i], dst[i]) < 0)
            return err_set(MT_EX_DATAERR, "checkpoint %s: attribute %s missing or not an integer",
                           path, u64s[i]);
    if (attr_get_int(f, "world_size", &m->world_size) < 0)
        return err_set(MT_EX_DATAERR, "checkpoint %s: attribute world_size missing", path);
    if (attr_get_str(f, "mode", m->mode, sizeof m->mode) < 0 ||
        attr_get_str(f, "optimizer", m->optimizer, sizeof m->optimizer) < 0)
        return err_set(MT_EX_DATAERR, "checkpoint %s: attribute mode or optimizer missing", path);
    attr_get_str(f, "model", m->model, sizeof m->model);
    attr_get_str(f, "mpitrain_version", m->mpitrain_version, sizeof m->mpitrain_version);
    attr_get_str(f, "hdf5_version", m->hdf5_version, sizeof m->hdf5_version);
    attr_get_str(f, "created", m->created, sizeof m->created);
    if (H5Lexists(f, "state", H5P_DEFAULT) <= 0)
        return err_set(MT_EX_DATAERR, "checkpoint %s: group /state missing", path);
    hid_t g = H5Gopen2(f, "state", H5P_DEFAULT);
    if (g < 0) return err_set(MT_EX_DATAERR, "checkpoint %s: /state is not a group", path);
    uint64_t sstep = 0, sepoch = 0, sseed = 0;
    int bad = attr_get_u64(g, "step", &sstep) < 0 || attr_get_u64(g, "epoch", &sepoch) < 0 ||
              attr_get_u64(g, "pos_in_epoch", &m->pos_in_epoch) < 0 ||
              attr_get_u64(g, "seed", &sseed) < 0;
    H5Gclose(g);
    if (bad)
        return err_set(MT_EX_DATAERR,
                       "checkpoint %s: /state lacks step, epoch, pos_in_epoch or seed", path);
    if (sstep != m->step || sepoch != m->epoch || sseed != m->seed)
        return err_set(MT_EX_DATAERR,
                       "checkpoint %s: /state (step %llu epoch %llu seed %llu) disagrees with "
                       "the root attributes (step %llu epoch %llu seed %llu)",
                       path, (unsigned long long)sstep, (unsigned long long)sepoch,
                       (unsigned long long)sseed, (unsigned long long)m->step,
                       (unsigned long long)m->epoch, (unsigned long long)m->seed);
    return 0;
}

/* ------------------------------------------------------------------------------------
 * Reading and hashing one dataset in pieces (lock taken per piece). */

/* Read float dataset `d` described by di into dst (di->count floats) or, when dst is
 * NULL, piecewise into scratch (PIECE_BYTES) only to hash it.  *h = its xxh3_64.
 * Returns 0 or -1 with why. */
static int read_hash_f32(hid_t d, const DsInfo *di, float *dst, float *scratch, uint64_t *h,
                         char *why, size_t nwhy)
{
    XXH3_state_t *st = hash_new();
    int rc = 0;
    uint64_t rows = di->ndim > 0 ? di->dims[0] : 1;
    uint64_t row = rows ? di->count / rows : 0;
    uint64_t per = row ? MT_MAX((uint64_t)1, PIECE_BYTES / 4 / row) : 1;
    for (uint64_t r0 = 0; r0 < rows && row; r0 += per) {
        uint64_t nr = MT_MIN(per, rows - r0);
        float *buf = dst ? dst + r0 * row : scratch;
        hl_lock();
        herr_t e;
        if (di->ndim == 0 || (r0 == 0 && nr == rows)) {
            e = H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
        } else {
            hid_t fs = H5Dget_space(d);
            hsize_t start[MAX_NDIM] = {0}, cnt[MAX_NDIM];
            for (int i = 0; i < di->ndim; i++) cnt[i] = di->dims[i];
            start[0] = r0;
            cnt[0] = nr;
            hsize_t me = nr * row;
            hid_t ms = H5Screate_simple(1, &me, NULL);
            H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL);
            e = H5Dread(d, H5T_NATIVE_FLOAT, ms, fs, H5P_DEFAULT, buf);
            H5Sclose(ms);
            H5Sclose(fs);
        }
        if (e < 0) h5_why(why, nwhy);
        hl_unlock();
        if (e < 0) {
            rc = -1;
            break;
        }
        hash_f32(st, buf, nr * row);
    }
    *h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return rc;
}

/* Read the fixed-length string dataset /config (lock held).  Returns malloc'd text or
 * NULL with why. */
static char *read_config_locked(hid_t f, char *why, size_t nwhy, uint64_t *stored, int *has_hash)
{
    *has_hash = 0;
    if (H5Lexists(f, "config", H5P_DEFAULT) <= 0) {
        snprintf(why, nwhy, "dataset /config missing");
        return NULL;
    }
    hid_t d = H5Dopen2(f, "config", H5P_DEFAULT);
    if (d < 0) {
        h5_why(why, nwhy);
        return NULL;
    }
    hid_t ft = H5Dget_type(d);
    char *text = NULL;
    if (H5Tget_class(ft) != H5T_STRING || H5Tis_variable_str(ft) > 0) {
        snprintf(why, nwhy, "/config is not a fixed-length string");
    } else {
        size_t sz = H5Tget_size(ft);
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, sz + 1);
        H5Tset_strpad(mt, H5T_STR_NULLTERM);
        H5Tset_cset(mt, H5Tget_cset(ft));
        text = xcalloc(sz + 1, 1);
        if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, text) < 0) {
            h5_why(why, nwhy);
            free(text);
            text = NULL;
        }
        H5Tclose(mt);
        *has_hash = attr_get_u64(d, HASH_ATTR, stored) == 0;
    }
    H5Tclose(ft);
    H5Dclose(d);
    return text;
}

static uint64_t hash_bytes(const void *p, size_t n) { return XXH3_64bits(p, n); }

/* ------------------------------------------------------------------------------------
 * Verification of a whole file. */

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

/* Full verification of an open file (lock not held).  Returns 0 or MT_EX_DATAERR. */
static int verify_open(hid_t f, const char *path, FILE *report, CkptMeta *meta_out)
{
    CkptMeta meta;
    char why[256];
    hl_lock();
    int rc = meta_read_locked(f, path, &meta);
    DsList dl = {0};
    int wrc = rc ? 0 : walk_group(f, "", 0, &dl);
    if (wrc < 0) h5_why(why, sizeof why);
    hl_unlock();
    if (rc) {
        free(dl.v);
        return rc;
    }
    if (wrc < 0) {
        free(dl.v);
        return err_set(MT_EX_DATAERR, "checkpoint %s: cannot list its arrays (%s): damaged",
                       path, why);
    }
    if (meta_out) *meta_out = meta;
    if (report)
        fprintf(report, "checkpoint %s: step %llu, epoch %llu, %s, %d datasets\n", path,
                (unsigned long long)meta.step, (unsigned long long)meta.epoch, meta.model,
                dl.n);
    Bad bad = {0};
    float *scratch = xaligned(PIECE_BYTES);
    int nmodel = 0, have_config = 0;
    for (int i = 0; i < dl.n; i++) {
        const DsInfo *di = &dl.v[i];
        char shp[96];
        shape_str(shp, sizeof shp, di->ndim < 0 ? 0 : di->ndim, di->dims);
        if (strcmp(di->path, "/config") == 0) {
            have_config = 1;
            uint64_t stored = 0;
            int has = 0;
            hl_lock();
            char *text = read_config_locked(f, why, sizeof why, &stored, &has);
            hl_unlock();
            if (!text)
                bad_add(&bad, report, "/config unreadable (%s) in %s", why, path);
            else if (!has)
                bad_add(&bad, report, "/config has no " HASH_ATTR " checksum in %s", path);
            else if (hash_bytes(text, strlen(text)) != stored)
                bad_add(&bad, report, "/config fails its checksum in %s (stored %016llx, "
                        "computed %016llx)", path, (unsigned long long)stored,
                        (unsigned long long)hash_bytes(text, strlen(text)));
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
            bad_add(&bad, report, "%s %s has no " HASH_ATTR " checksum in %s", di->path, shp,
                    path);
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
        hl_lock();
        hid_t d = H5Dopen2(f, di->path, H5P_DEFAULT);
        if (d < 0) h5_why(why, sizeof why);
        hl_unlock();
        if (d < 0) {
            bad_add(&bad, report, "%s %s cannot be opened in %s (%s)", di->path, shp, path, why);
            continue;
        }
        uint64_t h;
        int r = read_hash_f32(d, di, NULL, scratch, &h, why, sizeof why);
        hl_lock();
        H5Dclose(d);
        hl_unlock();
        if (r < 0)
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

int ckpt_verify(const char *path, FILE *report)
{
    hid_t f = ck_open(path);
    if (f < 0) {
        if (report) fprintf(report, "BAD  %s\n", err_msg());
        return err_code();
    }
    int rc = verify_open(f, path, report, NULL);
    ck_close(f);
    return rc;
}

int ckpt_read_meta(const char *path, CkptMeta *meta)
{
    hid_t f = ck_open(path);
    if (f < 0) return err_code();
    hl_lock();
    int rc = meta_read_locked(f, path, meta);
    hl_unlock();
    ck_close(f);
    return rc;
}

int ckpt_read_config(const char *path, char **config_text)
{
    *config_text = NULL;
    hid_t f = ck_open(path);
    if (f < 0) return err_code();
    char why[256];
    CkptMeta meta;
    uint64_t stored = 0;
    int has = 0;
    char *text = NULL;
    hl_lock();
    int rc = meta_read_locked(f, path, &meta);
    if (!rc) text = read_config_locked(f, why, sizeof why, &stored, &has);
    hl_unlock();
    ck_close(f);
    if (rc) return rc;
    if (!text) return err_set(MT_EX_DATAERR, "checkpoint %s: /config unreadable (%s)", path, why);
    if (!has || hash_bytes(text, strlen(text)) != stored) {
        free(text);
        return err_set(MT_EX_DATAERR, "checkpoint %s: /config %s", path,
                       has ? "fails its checksum: the file is corrupt" : "has no checksum");
    }
    *config_text = text;
    return 0;
}

/* Open a checkpoint, read its metadata and list its datasets (and, if cks is non-NULL,
 * the root "checksum" attribute).  Returns the open file with *rc = 0, or with *rc set to
 * the error when the metadata or the listing failed (the caller closes the file); or -1
 * with *rc set when it cannot be opened. */
static hid_t open_listed(const char *path, CkptMeta *m, DsList *dl, char *cks, size_t ncks,
                         int *rc)
{
    hid_t f = ck_open(path);
    if (f < 0) {
        *rc = err_code();
        return -1;
    }
    char why[256];
    hl_lock();
    *rc = meta_read_locked(f, path, m);
    int wrc = *rc ? 0 : walk_group(f, "", 0, dl);
    if (wrc < 0) h5_why(why, sizeof why);
    if (cks) attr_get_str(f, "checksum", cks, ncks);
    hl_unlock();
    if (!*rc && wrc < 0)
        *rc = err_set(MT_EX_DATAERR, "checkpoint %s: cannot list its arrays (%s): damaged", path,
                      why);
    return f;
}

int ckpt_info(const char *path, FILE *out)
{
    CkptMeta m;
    DsList dl = {0};
    char cks[32] = "";
    int rc;
    hid_t f = open_listed(path, &m, &dl, cks, sizeof cks, &rc);
    if (f < 0) return rc;
    ck_close(f);
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
        shape_str(shp, sizeof shp, di->ndim < 0 ? 0 : di->ndim, di->dims);
        const char *ty = di->cls == H5T_FLOAT && di->tsize == 4 ? "float32"
                         : di->cls == H5T_STRING                ? "string"
                                                                : "other";
        char h[24] = "none";
        if (di->has_hash) snprintf(h, sizeof h, "%016llx", (unsigned long long)di->hash);
        fprintf(out, "  %-36s %-8s %-16s %12llu bytes  " HASH_ATTR " %s\n", di->path, ty, shp,
                (unsigned long long)(di->count * di->tsize), h);
        total += di->count * di->tsize;
    }
    fprintf(out, "total:            %llu bytes in %d datasets\n", (unsigned long long)total, dl.n);
    free(dl.v);
    return 0;
}

/* ------------------------------------------------------------------------------------
 * Reading into the slabs. */

int ckpt_read(const char *path, const Model *model, const OptimConf *optim, float *params,
              float *const *states, CkptMeta *meta)
{
    CHECK(model && params);
    int nst = optim && states ? optim_nstates(optim) : 0;
    CkptMeta m;
    DsList dl = {0};
    int rc;
    hid_t f = open_listed(path, &m, &dl, NULL, 0, &rc);
    if (f < 0) return rc;
    char why[256];
    CkArr *arr = NULL;
    int narr = rc ? 0 : arr_list(model, optim, nst, &arr);
    /* 1. shapes: every array the model needs, none it lacks (before reading any data) */
    for (int i = 0; i < narr && !rc; i++) {
        const DsInfo *di = ds_find(&dl, arr[i].path);
        hsize_t want[MAX_NDIM];
        char ws[96], hs[96];
        pd_dims(arr[i].pd, want);
        shape_str(ws, sizeof ws, arr[i].pd->ndim, want);
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
            shape_str(hs, sizeof hs, di->ndim < 0 ? 0 : di->ndim, di->dims);
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
            rc = err_set(MT_EX_DATAERR, "array %s in checkpoint %s has no " HASH_ATTR
                         " checksum: damaged or not written by mpitrain", arr[i].path, path);
            break;
        }
        hl_lock();
        hid_t d = H5Dopen2(f, arr[i].path, H5P_DEFAULT);
        if (d < 0) h5_why(why, sizeof why);
        hl_unlock();
        if (d < 0) {
            rc = err_set(MT_EX_DATAERR, "array %s in checkpoint %s cannot be opened (%s)",
                         arr[i].path, path, why);
            break;
        }
        uint64_t h;
        int r = read_hash_f32(d, di, dst, NULL, &h, why, sizeof why);
        hl_lock();
        H5Dclose(d);
        hl_unlock();
        if (r < 0)
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
        hl_lock();
        char *text = read_config_locked(f, why, sizeof why, &stored, &has);
        hl_unlock();
        if (!text || !has || hash_bytes(text, strlen(text)) != stored)
            rc = err_set(MT_EX_DATAERR, "checkpoint %s: /config %s", path,
                         !text ? why : !has ? "has no checksum" : "fails its checksum");
        free(text);
    }
    free(arr);
    free(dl.v);
    ck_close(f);
    if (!rc && meta) *meta = m;
    return rc;
}

/* ------------------------------------------------------------------------------------
 * Writing. */

static void utc_now(char *buf, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Lock held.  Creates the groups of a path "/a/b/c" (the last component excluded). */
static int make_groups(hid_t f, const char *path)
{
    char p[160];
    snprintf(p, sizeof p, "%s", path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (H5Lexists(f, p, H5P_DEFAULT) <= 0) {
            hid_t g = H5Gcreate2(f, p, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            if (g < 0) return -1;
            H5Gclose(g);
        }
        *s = '/';
    }
    return 0;
}

typedef struct {
    const char *tmp;
    size_t total;   /* estimated bytes */
    size_t written; /* array bytes handed to HDF5 so far */
    char why[256];
} WriteCtx;

/* Write one array's data (lock NOT held on entry or exit), in pieces of at most
 * PIECE_BYTES, each under the lock.  Returns 0 or -1 with w->why. */
static int write_array(hid_t f, const CkArr *a, const float *src, WriteCtx *w)
{
    const ParamDesc *pd = a->pd;
    hsize_t dims[MAX_NDIM];
    pd_dims(pd, dims);
    uint64_t rows = dims[0], row = pd->count / rows;
    uint64_t per = MT_MAX((uint64_t)1, PIECE_BYTES / 4 / row);
    hl_lock();
    int rc = make_groups(f, a->path);
    hid_t sp = H5Screate_simple(pd->ndim, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_layout(dcpl, H5D_CONTIGUOUS);
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    hid_t d = rc < 0 ? -1
                     : H5Dcreate2(f, a->path, H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (d < 0) h5_why(w->why, sizeof w->why);
    H5Pclose(dcpl);
    if (d < 0) {
        H5Sclose(sp);
        hl_unlock();
        return -1;
    }
    hl_unlock();
    rc = 0;
    for (uint64_t r0 = 0; r0 < rows; r0 += per) {
        uint64_t nr = MT_MIN(per, rows - r0);
        const float *p = src + r0 * row;
        hl_lock();
        herr_t e;
        if (r0 == 0 && nr == rows) {
            e = H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, p);
        } else {
            hsize_t start[MAX_NDIM] = {0}, cnt[MAX_NDIM];
            memcpy(cnt, dims, sizeof cnt);
            start[0] = r0;
            cnt[0] = nr;
            hsize_t me = nr * row;
            hid_t ms = H5Screate_simple(1, &me, NULL);
            H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, NULL, cnt, NULL);
            e = H5Dwrite(d, H5T_NATIVE_FLOAT, ms, sp, H5P_DEFAULT, p);
            H5Sclose(ms);
        }
        if (e < 0) h5_why(w->why, sizeof w->why);
        hl_unlock();
        if (e < 0) {
            rc = -1;
            break;
        }
        w->written += nr * row * 4;
    }
    hl_lock();
    H5Dclose(d);
    H5Sclose(sp);
    hl_unlock();
    return rc;
}

/* The arrays' checksums, computed on a helper thread while the main one writes (both
 * only read the slabs). */
typedef struct {
    const CkptState *s;
    const CkArr *arr;
    int narr;
    uint64_t *h; /* (narr) */
} HashJob;

static void *hash_main(void *arg)
{
    HashJob *j = arg;
    XXH3_state_t *st = hash_new();
    for (int i = 0; i < j->narr; i++) {
        const float *slab = j->arr[i].state < 0 ? j->s->params : j->s->states[j->arr[i].state];
        XXH3_64bits_reset(st);
        hash_f32(st, slab + j->arr[i].pd->off, j->arr[i].pd->count);
        j->h[i] = XXH3_64bits_digest(st);
    }
    XXH3_freeState(st);
    return NULL;
}

/* Lock held. */
static int write_header(hid_t f, const CkptState *s)
{
    char created[32], h5v[32], desc[256];
    unsigned maj, min, rel;
    H5get_libversion(&maj, &min, &rel);
    snprintf(h5v, sizeof h5v, "%u.%u.%u", maj, min, rel);
    utc_now(created, sizeof created);
    model_describe(s->model, desc, sizeof desc);
    const char *opt = !s->optim ? "none" : s->optim->kind == OPTIM_ADAMW ? "adamw" : "sgd";
    int bad = 0;
    bad |= attr_put_str(f, "format", CKPT_FORMAT);
    bad |= attr_put_i32(f, "version", CKPT_VERSION);
    bad |= attr_put_u64(f, "step", s->step);
    bad |= attr_put_u64(f, "epoch", s->epoch);
    bad |= attr_put_u64(f, "seed", s->seed);
    bad |= attr_put_i32(f, "world_size", s->world_size);
    bad |= attr_put_str(f, "mode", s->mode);
    bad |= attr_put_str(f, "optimizer", opt);
    bad |= attr_put_str(f, "model", desc);
    bad |= attr_put_u64(f, "nparams", s->model->ntrainable);
    bad |= attr_put_str(f, "checksum", HASH_ATTR);
    bad |= attr_put_str(f, "mpitrain_version", MPITRAIN_VERSION);
    bad |= attr_put_str(f, "hdf5_version", h5v);
    bad |= attr_put_str(f, "created", created);
    if (bad) return -1;

    /* /config: fixed-length string, its checksum over the text bytes */
    const char *text = s->config_text ? s->config_text : "";
    size_t len = strlen(text);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, len ? len : 1);
    H5Tset_strpad(t, H5T_STR_NULLPAD);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t d = H5Dcreate2(f, "config", t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = d < 0 ? -1 : 0;
    if (!rc) {
        char *buf = xcalloc(len + 1, 1);
        memcpy(buf, text, len);
        rc = H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0 ? -1 : 0;
        free(buf);
        if (!rc) rc = attr_put_u64(d, HASH_ATTR, hash_bytes(text, len));
        H5Dclose(d);
    }
    H5Sclose(sp);
    H5Tclose(t);
    if (rc) return -1;

    /* /model/<layer> groups with a description of the layer */
    hid_t gm = H5Gcreate2(f, "model", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (gm < 0) return -1;
    for (int l = 0; l < s->model->nlayers && !bad; l++) {
        const Layer *L = &s->model->layers[l];
        if (L->nparams == 0) continue;
        hid_t g = H5Gcreate2(gm, L->name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0) {
            bad = 1;
            break;
        }
        bad |= attr_put_str(g, "kind", L->ops && L->ops->kind_name ? L->ops->kind_name : "");
        bad |= attr_put_str(g, "activation", act_name(L->act));
        bad |= attr_put_i32(g, "index", L->index);
        bad |= attr_put_i32(g, "in", L->in);
        bad |= attr_put_i32(g, "out", L->out);
        H5Gclose(g);
    }
    H5Gclose(gm);
    if (bad) return -1;

    hid_t gs = H5Gcreate2(f, "state", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (gs < 0) return -1;
    bad |= attr_put_u64(gs, "step", s->step);
    bad |= attr_put_u64(gs, "epoch", s->epoch);
    bad |= attr_put_u64(gs, "pos_in_epoch", s->pos_in_epoch);
    bad |= attr_put_u64(gs, "seed", s->seed);
    bad |= attr_put_str(gs, "rng", "philox4x32-10");
    bad |= attr_put_str(gs, "rng_state",
                        "counter-based: every stream is a pure function of (seed, purpose, "
                        "step | epoch | sample index); (seed, step, epoch, pos_in_epoch) is "
                        "the whole state");
    H5Gclose(gs);
    return bad ? -1 : 0;
}

/* After a failed write (disk full, I/O error) HDF5 still has to close the file, and its
 * close flushes metadata and sets the file length.  If that flush fails too, HDF5 1.10.8
 * keeps a half-destroyed file id ("slist already enabled?") that crashes the process at
 * exit or MPI_Finalize.  So the remaining writes are sent to an anonymous in-memory file
 * instead: HDF5's descriptor is replaced (dup2) by a memfd before the close, which then
 * succeeds; the caller removes the real .tmp.  This must happen before HDF5 has tried
 * and failed to flush metadata (hence the up-front reservation).  Lock held. */
static void discard_writes(int *h5fd, const char *tmp)
{
    if (!h5fd || *h5fd < 0) return;
    int m = memfd_create("mpitrain-ckpt-discard", MFD_CLOEXEC);
    if (m < 0) m = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (m < 0 || dup2(m, *h5fd) < 0)
        log_error("cannot detach HDF5 from the failed checkpoint %s: %s", tmp, strerror(errno));
    if (m >= 0) close(m);
}

/* Write the whole file `tmp`.  Returns 0 or an error code with err_set. */
static int write_file(const CkptState *s, WriteCtx *w)
{
    hl_lock();
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18);
    H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
    hid_t f = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (f < 0) h5_why(w->why, sizeof w->why);
    int *h5fd = NULL; /* HDF5's file descriptor (sec2 driver), see discard_writes() */
    if (f >= 0 && H5Fget_vfd_handle(f, fapl, (void **)&h5fd) < 0) h5fd = NULL;
    H5Pclose(fapl);
    if (f < 0) {
        hl_unlock();
        return err_set(MT_EX_CANTCREAT, "cannot create checkpoint file %s: %s", w->tmp, w->why);
    }
    /* Reserve the whole file's blocks before HDF5 writes anything: a full disk then fails
     * here, cleanly, and not in HDF5's metadata flush at close, after which HDF5 1.10
     * cannot close the file any more.  The unused tail is trimmed after the close. */
    if (h5fd && *h5fd >= 0 && fallocate(*h5fd, FALLOC_FL_KEEP_SIZE, 0, (off_t)w->total) != 0 &&
        errno != EOPNOTSUPP && errno != ENOSYS && errno != EINVAL) {
        int e = errno;
        discard_writes(h5fd, w->tmp);
        H5Fclose(f);
        H5Eclear2(H5E_DEFAULT);
        hl_unlock();
        return err_set(MT_EX_IOERR,
                       "cannot write checkpoint %s: reserving %zu bytes failed: %s (previous "
                       "checkpoints are untouched)", w->tmp, w->total, strerror(e));
    }
    int bad = write_header(f, s) < 0;
    if (bad) h5_why(w->why, sizeof w->why);
    hl_unlock();
    CkArr *arr = NULL;
    int narr = bad ? 0 : arr_list(s->model, s->optim, s->nstates, &arr);
    HashJob hj = {s, arr, narr, xcalloc(narr + 1, sizeof(uint64_t))};
    pthread_t th;
    int threaded = narr > 0 && pthread_create(&th, NULL, hash_main, &hj) == 0;
    for (int i = 0; i < narr && !bad; i++) {
        const float *slab = arr[i].state < 0 ? s->params : s->states[arr[i].state];
        bad = write_array(f, &arr[i], slab + arr[i].pd->off, w) < 0;
    }
    if (threaded)
        pthread_join(th, NULL);
    else if (!bad)
        hash_main(&hj);
    hl_lock();
    for (int i = 0; i < narr && !bad; i++) {
        hid_t d = H5Dopen2(f, arr[i].path, H5P_DEFAULT);
        bad = d < 0 || attr_put_u64(d, HASH_ATTR, hj.h[i]) < 0;
        if (bad) h5_why(w->why, sizeof w->why);
        if (d >= 0) H5Dclose(d);
    }
    hl_unlock();
    free(hj.h);
    free(arr);
    hl_lock();
    if (bad) discard_writes(h5fd, w->tmp);
    if (H5Fclose(f) < 0) {
        char why[256];
        h5_why(why, sizeof why);
        if (!bad) snprintf(w->why, sizeof w->why, "%s", why);
        if (bad) log_error("HDF5 could not close the failed checkpoint %s (%s)", w->tmp, why);
        bad = 1;
    }
    H5Eclear2(H5E_DEFAULT);
    hl_unlock();
    if (bad)
        return err_set(MT_EX_IOERR,
                       "writing checkpoint %s failed after %zu of about %zu bytes: %s",
                       w->tmp, w->written, w->total, w->why);
    /* give back the reserved blocks beyond the end of the file */
    int fd = open(w->tmp, O_WRONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || ftruncate(fd, st.st_size) != 0)
        log_info("checkpoint: cannot trim the reserved space of %s: %s", w->tmp, strerror(errno));
    if (fd >= 0) close(fd);
    return 0;
}

static void remove_tmp(const char *tmp)
{
    /* truncate first: should anything still hold the file open, its blocks are freed
     * anyway (matters when the disk is full) */
    if (truncate(tmp, 0) != 0 && errno != ENOENT)
        log_error("cannot truncate %s: %s", tmp, strerror(errno));
    if (unlink(tmp) != 0 && errno != ENOENT)
        log_error("cannot remove %s: %s", tmp, strerror(errno));
}

static int write_latest(const char *dir, const char *name)
{
    char tmp[4096], fin[4096];
    snprintf(tmp, sizeof tmp, "%s/latest.tmp", dir);
    snprintf(fin, sizeof fin, "%s/latest", dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0)
        return err_set(MT_EX_CANTCREAT, "cannot create %s: %s", tmp, strerror(errno));
    char line[300];
    int len = snprintf(line, sizeof line, "%s\n", name);
    ssize_t wr = write(fd, line, len);
    int e = wr == len ? 0 : wr < 0 ? errno : ENOSPC;
    if (!e && fsync(fd) != 0) e = errno;
    close(fd);
    if (!e && rename(tmp, fin) != 0) e = errno;
    if (e) {
        unlink(tmp);
        return err_set(MT_EX_IOERR, "cannot update %s to name %s: %s (the checkpoint itself "
                       "is complete; `latest` still names the previous one)", fin, name,
                       strerror(e));
    }
    if (fsync_path(dir, 1) != 0)
        return err_set(MT_EX_IOERR, "cannot fsync directory %s: %s", dir, strerror(errno));
    return 0;
}

int ckpt_prune(const char *dir, int keep, const char *protect)
{
    const char *pb = protect ? base_name(protect) : NULL;
    int removed = 0;
    char p[4096];
    CkFile *v;
    int n = list_ckpts(dir, 1, &v); /* stale tmp files: no writer is active in dir */
    for (int i = 0; i < n; i++) {
        join_path(p, sizeof p, dir, v[i].name);
        if (unlink(p) == 0) {
            log_info("checkpoint: removed stale %s (left by an interrupted write)", p);
            removed++;
        }
    }
    free(v);
    if (keep <= 0) return removed;
    n = list_ckpts(dir, 0, &v);
    int kept = 0;
    for (int i = 0; i < n; i++) {
        int prot = pb && strcmp(v[i].name, pb) == 0;
        if (prot || kept < keep) {
            kept++;
            continue;
        }
        join_path(p, sizeof p, dir, v[i].name);
        if (unlink(p) == 0)
            removed++;
        else
            log_error("cannot remove old checkpoint %s: %s", p, strerror(errno));
    }
    /* the protected file may have been counted past keep: nothing else to do, it is kept */
    free(v);
    return removed;
}

int ckpt_write(const char *dir, const CkptState *s, int keep, char *path_out, size_t n)
{
    CHECK(dir && s && s->model && s->params);
    CHECK(s->nstates >= 0 && (s->nstates == 0 || s->states));
    CHECK(s->optim ? s->nstates == optim_nstates(s->optim) : s->nstates == 0);
    if (path_out && n) path_out[0] = 0;
    double t0 = now_s();
    if (mkdir_p(dir) != 0)
        return err_set(MT_EX_CANTCREAT, "cannot create checkpoint directory %s: %s", dir,
                       strerror(errno));
    char name[64], fin[4096], tmp[4200];
    snprintf(name, sizeof name, "step-%08llu.h5", (unsigned long long)s->step);
    join_path(fin, sizeof fin, dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", fin);

    WriteCtx w = {.tmp = tmp};
    /* an upper bound of the file size: data, config, metadata (~1 KB per array) */
    size_t narrays = 0;
    for (int l = 0; l < s->model->nlayers; l++) narrays += s->model->layers[l].nparams;
    w.total = s->model->ntrainable * 4 * (size_t)(1 + s->nstates) +
              (s->config_text ? strlen(s->config_text) : 0) + ((size_t)64 << 10) +
              narrays * (1 + s->nstates) * 2048;
    struct rlimit rl;
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (unsigned long long)rl.rlim_cur < w.total)
        return err_set(MT_EX_IOERR,
                       "cannot write checkpoint %s: %s: the file size limit (ulimit -f) is "
                       "%llu bytes, the checkpoint needs about %zu; raise the limit (previous "
                       "checkpoints are untouched)",
                       fin, strerror(EFBIG), (unsigned long long)rl.rlim_cur, w.total);
    struct statvfs vf;
    const char *nocheck = getenv("MPITRAIN_CKPT_NO_SPACE_CHECK");
    if ((!nocheck || strcmp(nocheck, "1") != 0) && statvfs(dir, &vf) == 0) {
        unsigned long long avail = (unsigned long long)vf.f_bavail * vf.f_frsize;
        if (avail < w.total)
            return err_set(MT_EX_IOERR,
                           "cannot write checkpoint %s: disk full (%s): needs about %zu bytes, "
                           "%llu free on that filesystem; free space, lower checkpoint.keep or "
                           "set checkpoint.dir elsewhere (previous checkpoints are untouched; "
                           "MPITRAIN_CKPT_NO_SPACE_CHECK=1 skips this check where the "
                           "filesystem misreports its free space)",
                           fin, strerror(ENOSPC), w.total, avail);
    }

    int rc = write_file(s, &w);
    double t1 = now_s(), t2 = t1;
    if (!rc) {
        /* the fsync (disk-bound) runs while the re-read verification (CPU-bound, from the
         * page cache) checks every array; the rename waits for both */
        FsyncJob fj = {.path = tmp};
        pthread_t th;
        int threaded = pthread_create(&th, NULL, fsync_main, &fj) == 0;
        if (!threaded) fsync_main(&fj);
        hid_t f = ck_open(tmp);
        rc = f < 0 ? err_code() : verify_open(f, tmp, NULL, NULL);
        if (f >= 0) ck_close(f);
        if (rc) {
            char first[2048];
            snprintf(first, sizeof first, "%s", err_msg());
            rc = err_set(MT_EX_IOERR, "checkpoint %s does not read back as written: %s (disk "
                         "or memory fault?)", tmp, first);
        }
        t2 = now_s();
        if (threaded) pthread_join(th, NULL);
        if (!rc && fj.rc != 0)
            rc = err_set(MT_EX_IOERR, "fsync of checkpoint %s (%zu bytes) failed: %s", tmp,
                         w.written, strerror(fj.err));
    }
    double t3 = now_s();
    if (!rc && rename(tmp, fin) != 0)
        rc = err_set(MT_EX_IOERR, "cannot rename %s to %s: %s", tmp, fin, strerror(errno));
    if (rc) {
        remove_tmp(tmp);
        log_error("%s", err_msg());
        return rc;
    }
    if (fsync_path(dir, 1) != 0)
        return err_set(MT_EX_IOERR, "cannot fsync directory %s after writing %s: %s", dir, fin,
                       strerror(errno));
    rc = write_latest(dir, name);
    if (rc) return rc;
    if (path_out && n) snprintf(path_out, n, "%s", fin);

    CkFile *v;
    int nf = list_ckpts(dir, 0, &v);
    for (int i = 0; i < nf; i++)
        if (v[i].step > s->step)
            log_info("checkpoint: warning: %s/%s has a higher step than the %s just written "
                     "(left from an earlier run?); it counts towards checkpoint.keep",
                     dir, v[i].name, name);
    free(v);
    ckpt_prune(dir, keep, name);
    double t4 = now_s();
    log_info("checkpoint: wrote %s (%.1f MB) in %.2f s: write %.2f, verify %.2f, fsync done "
             "%.2f s later (%.0f MB/s)", fin, w.written / 1e6, t4 - t0, t1 - t0, t2 - t1,
             t3 - t2, w.written / 1e6 / (t4 - t0));
    return 0;
}

/* ------------------------------------------------------------------------------------
 * Resume. */

int ckpt_latest_name(const char *dir, char *name, size_t n)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/latest", dir);
    name[0] = 0;
    FILE *f = fopen(p, "r");
    if (!f) return -1;
    if (!fgets(name, (int)n, f)) name[0] = 0;
    fclose(f);
    size_t L = strlen(name);
    while (L && isspace((unsigned char)name[L - 1])) name[--L] = 0;
    return 0;
}

int ckpt_find_resume(const char *dir, char *path_out, size_t n)
{
    struct stat st;
    if (path_out && n) path_out[0] = 0;
    if (stat(dir, &st) != 0)
        return err_set(MT_EX_NOINPUT, "checkpoint directory %s: %s (nothing to resume from)",
                       dir, strerror(errno));
    if (S_ISREG(st.st_mode)) {
        int rc = ckpt_verify(dir, NULL);
        if (rc == 0 && path_out) snprintf(path_out, n, "%s", dir);
        return rc;
    }
    char tried[2048] = "";
    size_t tl = 0;
    char latest_name[256] = "";
    char p[4096];
    snprintf(p, sizeof p, "%s/latest", dir);
    if (ckpt_latest_name(dir, latest_name, sizeof latest_name) == 0) {
        if (latest_name[0]) {
            join_path(p, sizeof p, dir, latest_name);
            if (ckpt_verify(p, NULL) == 0) {
                if (path_out) snprintf(path_out, n, "%s", p);
                return 0;
            }
            log_info("checkpoint: skipping %s (named by %s/latest): %s", p, dir, err_msg());
            tl += snprintf(tried + tl, sizeof tried - MT_MIN(tl, sizeof tried), "%s", p);
        } else {
            log_info("checkpoint: %s/latest is empty; scanning %s", dir, dir);
        }
    } else if (errno != ENOENT) {
        log_info("checkpoint: cannot read %s: %s; scanning %s", p, strerror(errno), dir);
    }
    CkFile *v;
    int nf = list_ckpts(dir, 0, &v);
    if (nf < 0)
        return err_set(MT_EX_NOINPUT, "cannot list checkpoint directory %s: %s", dir,
                       strerror(errno));
    for (int i = 0; i < nf; i++) {
        if (latest_name[0] && strcmp(v[i].name, base_name(latest_name)) == 0) continue;
        join_path(p, sizeof p, dir, v[i].name);
        if (ckpt_verify(p, NULL) == 0) {
            if (latest_name[0])
                log_info("checkpoint: resuming from %s instead of %s (the newest valid one)", p,
                         latest_name);
            if (path_out) snprintf(path_out, n, "%s", p);
            free(v);
            return 0;
        }
        log_info("checkpoint: skipping %s: %s", p, err_msg());
        if (tl < sizeof tried)
            tl += snprintf(tried + tl, sizeof tried - tl, "%s%s", tl ? ", " : "", v[i].name);
    }
    free(v);
    if (tl)
        return err_set(MT_EX_NOINPUT, "no valid checkpoint in %s (failed verification: %s)", dir,
                       tried);
    return err_set(MT_EX_NOINPUT, "no checkpoint in %s (no latest, no step-*.h5)", dir);
}
