/* ckpt_format.c — the layout of a checkpoint file, both ways: the checksum, the names
 * and order of the arrays, the header (root attributes, /config, /model groups,
 * /state) as written and as read back.  See ckpt.h for the format; the file-level
 * mechanics are in ckpt_write.c and ckpt_read.c. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/common.h"
#include "io/ckpt_impl.h"

/* --------------------------------------- checksums: XXH3-64 of the little-endian bytes */

void ckpt_hash_f32(XXH3_state_t *st, const float *p, size_t count)
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

XXH3_state_t *ckpt_hash_new(void)
{
    XXH3_state_t *st = XXH3_createState();
    if (!st) fatal(MT_EX_OSERR, "out of memory allocating a hash state");
    XXH3_64bits_reset(st);
    return st;
}

uint64_t ckpt_hash_bytes(const void *p, size_t n) { return XXH3_64bits(p, n); }

/* --------------------------------- the arrays of a model (and optimizer) in file order */

int ckpt_arrays(const Model *m, const OptimConf *o, int nstates, CkptArray **out)
{
    int nparam = 0;
    for (int l = 0; l < m->nlayers; l++) nparam += m->layers[l].nparams;
    CkptArray *v = xcalloc((size_t)nparam * (1 + nstates) + 1, sizeof *v);
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

void ckpt_shape_str(char *buf, size_t n, int ndim, const hsize_t *dims)
{
    size_t k = snprintf(buf, n, "(");
    for (int i = 0; i < ndim && k < n; i++)
        k += snprintf(buf + k, n - k, "%s%llu", i ? "," : "", (unsigned long long)dims[i]);
    if (k < n) snprintf(buf + k, n - k, ")");
}

void ckpt_pd_dims(const ParamDesc *pd, hsize_t *dims)
{
    for (int i = 0; i < pd->ndim; i++) dims[i] = (hsize_t)pd->shape[i];
}

hid_t ckpt_rows_select(hid_t fs, int ndim, const hsize_t *dims, uint64_t r0, uint64_t nr,
                       uint64_t row)
{
    hsize_t start[CKPT_MAX_NDIM] = {0}, cnt[CKPT_MAX_NDIM];
    for (int i = 0; i < ndim; i++) cnt[i] = dims[i];
    start[0] = r0;
    cnt[0] = nr;
    hsize_t me = nr * row;
    hid_t ms = H5Screate_simple(1, &me, NULL);
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, cnt, NULL);
    return ms;
}

/* ----------------------------------------------- attributes as a checkpoint reads them */

int ckpt_attr_u64(hid_t obj, const char *name, uint64_t *v)
{
    return h5_attr_get_num(obj, name, H5T_NATIVE_UINT64, 1, v, NULL) ? -1 : 0;
}

int ckpt_attr_int(hid_t obj, const char *name, int *v)
{
    uint64_t u;
    if (ckpt_attr_u64(obj, name, &u) < 0 || u > INT32_MAX) return -1;
    *v = (int)u;
    return 0;
}

int ckpt_attr_str(hid_t obj, const char *name, char *buf, size_t n)
{
    return h5_attr_get_str(obj, name, buf, n, NULL) ? -1 : 0;
}

/* ---------------------------------------------------------------- the header read back */

int ckpt_meta_read(hid_t f, const char *path, CkptMeta *m)
{
    char fmt[64];
    memset(m, 0, sizeof *m);
    if (ckpt_attr_str(f, "format", fmt, sizeof fmt) < 0 || strcmp(fmt, CKPT_FORMAT) != 0)
        return err_set(MT_EX_DATAERR,
                       "%s is an HDF5 file but not an mpitrain checkpoint (attribute format "
                       "is \"%s\", expected \"" CKPT_FORMAT "\")",
                       path, fmt);
    if (ckpt_attr_int(f, "version", &m->version) < 0)
        return err_set(MT_EX_DATAERR, "checkpoint %s has no version attribute", path);
    if (m->version != CKPT_VERSION)
        return err_set(MT_EX_DATAERR,
                       "checkpoint %s has format version %d; this mpitrain " MPITRAIN_VERSION
                       " reads version %d",
                       path, m->version, CKPT_VERSION);
    static const char *const u64s[] = {"step", "epoch", "seed", "nparams"};
    uint64_t *dst[] = {&m->step, &m->epoch, &m->seed, &m->nparams};
    for (int i = 0; i < 4; i++)
        if (ckpt_attr_u64(f, u64s[i], dst[i]) < 0)
            return err_set(MT_EX_DATAERR, "checkpoint %s: attribute %s missing or not an integer",
                           path, u64s[i]);
    if (ckpt_attr_int(f, "world_size", &m->world_size) < 0)
        return err_set(MT_EX_DATAERR, "checkpoint %s: attribute world_size missing", path);
    if (ckpt_attr_str(f, "mode", m->mode, sizeof m->mode) < 0 ||
        ckpt_attr_str(f, "optimizer", m->optimizer, sizeof m->optimizer) < 0)
        return err_set(MT_EX_DATAERR, "checkpoint %s: attribute mode or optimizer missing", path);
    ckpt_attr_str(f, "model", m->model, sizeof m->model);
    ckpt_attr_str(f, "mpitrain_version", m->mpitrain_version, sizeof m->mpitrain_version);
    ckpt_attr_str(f, "hdf5_version", m->hdf5_version, sizeof m->hdf5_version);
    ckpt_attr_str(f, "created", m->created, sizeof m->created);
    if (H5Lexists(f, "state", H5P_DEFAULT) <= 0)
        return err_set(MT_EX_DATAERR, "checkpoint %s: group /state missing", path);
    hid_t g = H5Gopen2(f, "state", H5P_DEFAULT);
    if (g < 0) return err_set(MT_EX_DATAERR, "checkpoint %s: /state is not a group", path);
    uint64_t sstep = 0, sepoch = 0, sseed = 0;
    int bad = ckpt_attr_u64(g, "step", &sstep) < 0 || ckpt_attr_u64(g, "epoch", &sepoch) < 0 ||
              ckpt_attr_u64(g, "pos_in_epoch", &m->pos_in_epoch) < 0 ||
              ckpt_attr_u64(g, "seed", &sseed) < 0;
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

char *ckpt_config_read(hid_t f, char *why, size_t nwhy, uint64_t *stored, int *has_hash)
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
    } else if (H5Dget_storage_size(d) < H5Tget_size(ft)) { /* a size the type merely claims */
        snprintf(why, nwhy, "it holds %llu of the %zu bytes its type says",
                 (unsigned long long)H5Dget_storage_size(d), H5Tget_size(ft));
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
        *has_hash = ckpt_attr_u64(d, CKPT_HASH_ATTR, stored) == 0;
    }
    H5Tclose(ft);
    H5Dclose(d);
    return text;
}

/* ---------------------------------------------------------------- the header written */

static void utc_now(char *buf, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

int ckpt_header_write(hid_t f, const CkptState *s)
{
    char created[32], h5v[32], desc[256];
    unsigned maj, min, rel;
    H5get_libversion(&maj, &min, &rel);
    snprintf(h5v, sizeof h5v, "%u.%u.%u", maj, min, rel);
    utc_now(created, sizeof created);
    model_describe(s->model, desc, sizeof desc);
    const char *opt = !s->optim ? "none" : s->optim->kind == OPTIM_ADAMW ? "adamw" : "sgd";
    int bad = 0;
    bad |= h5_attr_put_fstr(f, "format", CKPT_FORMAT);
    bad |= h5_attr_put_i32(f, "version", CKPT_VERSION);
    bad |= h5_attr_put_u64(f, "step", s->step);
    bad |= h5_attr_put_u64(f, "epoch", s->epoch);
    bad |= h5_attr_put_u64(f, "seed", s->seed);
    bad |= h5_attr_put_i32(f, "world_size", s->world_size);
    bad |= h5_attr_put_fstr(f, "mode", s->mode);
    bad |= h5_attr_put_fstr(f, "optimizer", opt);
    bad |= h5_attr_put_fstr(f, "model", desc);
    bad |= h5_attr_put_u64(f, "nparams", s->model->ntrainable);
    bad |= h5_attr_put_fstr(f, "checksum", CKPT_HASH_ATTR);
    bad |= h5_attr_put_fstr(f, "mpitrain_version", MPITRAIN_VERSION);
    bad |= h5_attr_put_fstr(f, "hdf5_version", h5v);
    bad |= h5_attr_put_fstr(f, "created", created);
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
        if (!rc) rc = h5_attr_put_u64(d, CKPT_HASH_ATTR, ckpt_hash_bytes(text, len));
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
        bad |= h5_attr_put_fstr(g, "kind", L->ops && L->ops->kind_name ? L->ops->kind_name : "");
        bad |= h5_attr_put_fstr(g, "activation", act_name(L->act));
        bad |= h5_attr_put_i32(g, "index", L->index);
        bad |= h5_attr_put_i32(g, "in", L->in);
        bad |= h5_attr_put_i32(g, "out", L->out);
        H5Gclose(g);
    }
    H5Gclose(gm);
    if (bad) return -1;

    hid_t gs = H5Gcreate2(f, "state", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (gs < 0) return -1;
    bad |= h5_attr_put_u64(gs, "step", s->step);
    bad |= h5_attr_put_u64(gs, "epoch", s->epoch);
    bad |= h5_attr_put_u64(gs, "pos_in_epoch", s->pos_in_epoch);
    bad |= h5_attr_put_u64(gs, "seed", s->seed);
    bad |= h5_attr_put_fstr(gs, "rng", "philox4x32-10");
    bad |= h5_attr_put_fstr(gs, "rng_state",
                        "counter-based: every stream is a pure function of (seed, purpose, "
                        "step | epoch | sample index); (seed, step, epoch, pos_in_epoch) is "
                        "the whole state");
    H5Gclose(gs);
    return bad ? -1 : 0;
}
