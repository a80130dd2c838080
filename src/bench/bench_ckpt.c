/* bench_ckpt.c — `mpitrain bench ckpt`: checkpoint write speed against its references.
 *
 * For a model of >= 50 M parameters with AdamW (params + m + v, ~600 MB) measured in one
 * run, median of --reps each:
 *   raw_write_fsync        write() of the same bytes + fsync (the reference)
 *   ckpt_write_sync        ckpt_write: HDF5 + xxh3 + fsync + re-read verify + rename +
 *                          latest (what training pays without async)
 *   h5_xxh3_write_fsync    the arrays as contiguous HDF5 datasets with an xxh3 attribute
 *   h5_fletcher32_write_fsync  the same arrays chunked (~1 MB) with HDF5's Fletcher32
 *   raw_read, h5_xxh3_read_verify, h5_fletcher32_read_verify   reading them back (page
 *                          cache warm) with the checksum checked
 *   xxh3_hash_memory       hashing the bytes in memory
 *   async_submit_pause     ckpt_async_submit (memcpy to the snapshot): the training pause
 *   memcpy                 memcpy of the same bytes: the floor of that pause
 *   async_write_total      submit to write finished
 * CSV on stdout: what,bytes,seconds,MBps,ratio.  ratio: for writes and the hash the
 * bandwidth relative to raw_write_fsync, for reads relative to raw_read, for the async
 * pause and memcpy the time relative to ckpt_write_sync (targets: ckpt_write_sync >=
 * 0.70, async_submit_pause <= 0.10). */
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "bench/bench.h"
#include "core/common.h"
#include "io/ckpt.h"
#include "io/h5.h"

#define BENCH_MAX_REPS 15

typedef struct {
    const Model *m;
    float *slab[3]; /* params, m, v: (m->nparams) each */
    int nslabs;
    size_t bytes;   /* real bytes: ntrainable * 4 * nslabs */
} BenchData;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void fill(float *p, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (float)(x >> 8) * (1.0f / 16777216.0f) - 0.5f;
    }
}

static int do_fsync(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static double raw_write(const char *path, const BenchData *d)
{
    double t0 = now_s();
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) fatal(MT_EX_CANTCREAT, "bench ckpt: cannot create %s: %s", path, strerror(errno));
    size_t per = d->bytes / d->nslabs;
    for (int s = 0; s < d->nslabs; s++) {
        const char *p = (const char *)d->slab[s];
        size_t left = per;
        while (left) {
            ssize_t k = write(fd, p, MT_MIN(left, (size_t)1 << 30));
            if (k <= 0) fatal(MT_EX_IOERR, "bench ckpt: write %s: %s", path, strerror(errno));
            p += k;
            left -= k;
        }
    }
    if (fsync(fd) != 0) fatal(MT_EX_IOERR, "bench ckpt: fsync %s: %s", path, strerror(errno));
    close(fd);
    return now_s() - t0;
}

static double raw_read(const char *path, const BenchData *d, float *buf, size_t bufbytes)
{
    double t0 = now_s();
    int fd = open(path, O_RDONLY);
    if (fd < 0) fatal(MT_EX_NOINPUT, "bench ckpt: cannot open %s: %s", path, strerror(errno));
    size_t left = d->bytes;
    while (left) {
        ssize_t k = read(fd, buf, MT_MIN(left, bufbytes));
        if (k <= 0) fatal(MT_EX_IOERR, "bench ckpt: read %s: %s", path, strerror(errno));
        left -= k;
    }
    close(fd);
    return now_s() - t0;
}

/* Each array of each slab as /s<k>/<layer>_<param>: contiguous + xxh3 attribute, or
 * chunked (~1 MB) + Fletcher32. */
static double h5_write(const char *path, const BenchData *d, int fletcher)
{
    double t0 = now_s();
    h5_lock();
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) fatal(MT_EX_CANTCREAT, "bench ckpt: cannot create %s", path);
    for (int s = 0; s < d->nslabs; s++) {
        char gname[16];
        snprintf(gname, sizeof gname, "s%d", s);
        hid_t g = H5Gcreate2(f, gname, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        for (int l = 0; l < d->m->nlayers; l++)
            for (int q = 0; q < d->m->layers[l].nparams; q++) {
                const ParamDesc *pd = &d->m->layers[l].params[q];
                hsize_t dims[4], chunk[4];
                for (int i = 0; i < pd->ndim; i++) dims[i] = chunk[i] = pd->shape[i];
                size_t row = pd->count / pd->shape[0];
                chunk[0] = MT_MAX((size_t)1, MT_MIN((size_t)pd->shape[0], ((size_t)1 << 18) / row));
                hid_t sp = H5Screate_simple(pd->ndim, dims, NULL);
                hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
                if (fletcher) {
                    H5Pset_chunk(dcpl, pd->ndim, chunk);
                    H5Pset_fletcher32(dcpl);
                } else {
                    H5Pset_layout(dcpl, H5D_CONTIGUOUS);
                    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
                }
                char name[64];
                snprintf(name, sizeof name, "%s_%s", d->m->layers[l].name, pd->name);
                hid_t ds = H5Dcreate2(g, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
                const float *src = d->slab[s] + pd->off;
                if (ds < 0 || H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, src) < 0)
                    fatal(MT_EX_IOERR, "bench ckpt: writing %s in %s failed", name, path);
                if (!fletcher) {
                    uint64_t h = XXH3_64bits(src, pd->count * 4);
                    hid_t as = H5Screate(H5S_SCALAR);
                    hid_t a = H5Acreate2(ds, "xxh3_64", H5T_STD_U64LE, as, H5P_DEFAULT, H5P_DEFAULT);
                    H5Awrite(a, H5T_NATIVE_UINT64, &h);
                    H5Aclose(a);
                    H5Sclose(as);
                }
                H5Dclose(ds);
                H5Pclose(dcpl);
                H5Sclose(sp);
            }
        H5Gclose(g);
    }
    if (H5Fclose(f) < 0) fatal(MT_EX_IOERR, "bench ckpt: closing %s failed", path);
    h5_unlock();
    if (do_fsync(path) != 0) fatal(MT_EX_IOERR, "bench ckpt: fsync %s: %s", path, strerror(errno));
    return now_s() - t0;
}

static double h5_read_verify(const char *path, const BenchData *d, int fletcher, float *buf)
{
    double t0 = now_s();
    h5_lock();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) fatal(MT_EX_NOINPUT, "bench ckpt: cannot open %s", path);
    for (int s = 0; s < d->nslabs; s++)
        for (int l = 0; l < d->m->nlayers; l++)
            for (int q = 0; q < d->m->layers[l].nparams; q++) {
                const ParamDesc *pd = &d->m->layers[l].params[q];
                char name[80];
                snprintf(name, sizeof name, "s%d/%s_%s", s, d->m->layers[l].name, pd->name);
                hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
                if (ds < 0 || H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
                    fatal(MT_EX_DATAERR, "bench ckpt: reading %s in %s failed", name, path);
                if (!fletcher) {
                    uint64_t h, want = XXH3_64bits(buf, pd->count * 4);
                    hid_t a = H5Aopen(ds, "xxh3_64", H5P_DEFAULT);
                    H5Aread(a, H5T_NATIVE_UINT64, &h);
                    H5Aclose(a);
                    if (h != want) fatal(MT_EX_DATAERR, "bench ckpt: %s checksum mismatch", name);
                }
                H5Dclose(ds);
            }
    H5Fclose(f);
    h5_unlock();
    return now_s() - t0;
}

static void row(const char *what, size_t bytes, double s, double ratio)
{
    printf("%s,%zu,%.4f,%.1f,%.3f\n", what, bytes, s, bytes / 1e6 / s, ratio);
    fflush(stdout);
}

static void bench_usage(FILE *f)
{
    fprintf(f, "usage: mpitrain bench ckpt [--dir DIR] [--layers SPEC] [--in-dim N] [--reps R]\n"
               "  DIR     where to write (default /tmp; needs ~2 GB free)\n"
               "  SPEC    model layers (default: dense:4096 relu x3, dense:10; ~50 M params)\n"
               "  N       input width (default 4096);  R  repetitions, median (default 3)\n");
}

int bench_ckpt_main(int argc, char **argv)
{
    const char *dir = "/tmp";
    const char *spec = "dense:4096 relu dense:4096 relu dense:4096 relu dense:10";
    int in_dim = 4096, reps = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            bench_usage(stdout);
            return 0;
        }
        if (!v) {
            bench_usage(stderr);
            return MT_EX_USAGE;
        }
        if (!strcmp(a, "--dir")) dir = v;
        else if (!strcmp(a, "--layers")) spec = v;
        else if (!strcmp(a, "--in-dim")) in_dim = atoi(v);
        else if (!strcmp(a, "--reps")) reps = atoi(v);
        else {
            bench_usage(stderr);
            return MT_EX_USAGE;
        }
        i++;
    }
    if (reps < 1 || reps > BENCH_MAX_REPS) {
        log_error("bench ckpt: --reps must be 1..%d", BENCH_MAX_REPS);
        return MT_EX_USAGE;
    }
    Model m;
    if (model_build(&m, spec, in_dim, 0)) {
        log_error("%s", err_msg());
        return MT_EX_CONFIG;
    }
    OptimConf oc = {.kind = OPTIM_ADAMW, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
    BenchData d = {.m = &m, .nslabs = 1 + optim_nstates(&oc)};
    for (int s = 0; s < d.nslabs; s++) {
        d.slab[s] = xaligned(m.nparams * sizeof(float));
        for (int l = 0; l < m.nlayers; l++)
            for (int q = 0; q < m.layers[l].nparams; q++) {
                const ParamDesc *pd = &m.layers[l].params[q];
                fill(d.slab[s] + pd->off, pd->count, 1000 * s + 10 * l + q);
            }
    }
    d.bytes = m.ntrainable * 4 * d.nslabs;
    size_t maxarr = 0;
    for (int l = 0; l < m.nlayers; l++)
        for (int q = 0; q < m.layers[l].nparams; q++) maxarr = MT_MAX(maxarr, m.layers[l].params[q].count);
    float *buf = xaligned(maxarr * 4);

    char work[4096], ckdir[4200], rawp[4200], h5a[4200], h5b[4200];
    snprintf(work, sizeof work, "%s/mpitrain-bench-ckpt.%d", dir, (int)getpid());
    if (mkdir(work, 0777) != 0) {
        log_error("bench ckpt: cannot create %s: %s", work, strerror(errno));
        return MT_EX_CANTCREAT;
    }
    snprintf(ckdir, sizeof ckdir, "%s/ckpt", work);
    snprintf(rawp, sizeof rawp, "%s/raw.bin", work);
    snprintf(h5a, sizeof h5a, "%s/xxh3.h5", work);
    snprintf(h5b, sizeof h5b, "%s/fletcher32.h5", work);
    char desc[256];
    model_describe(&m, desc, sizeof desc);
    log_info("bench ckpt: model %s, adamw, %.1f MB per checkpoint, dir %s, %d reps", desc,
             d.bytes / 1e6, work, reps);

    CkptState st = {.step = 1, .seed = 1, .world_size = 1, .mode = "bench", .config_text = "",
                    .model = &m, .optim = &oc, .params = d.slab[0],
                    .states = (const float *const *)&d.slab[1], .nstates = d.nslabs - 1};
    double t_raw[BENCH_MAX_REPS], t_ck[BENCH_MAX_REPS], t_hx[BENCH_MAX_REPS], t_hf[BENCH_MAX_REPS];
    double r_raw[BENCH_MAX_REPS], r_hx[BENCH_MAX_REPS], r_hf[BENCH_MAX_REPS], t_hash[BENCH_MAX_REPS];
    int rc = 0;
    for (int r = 0; r < reps && !rc; r++) {
        t_raw[r] = raw_write(rawp, &d);
        r_raw[r] = raw_read(rawp, &d, buf, maxarr * 4);
        unlink(rawp);
        double t0 = now_s();
        st.step = r + 1;
        rc = ckpt_write(ckdir, &st, 1, NULL, 0);
        t_ck[r] = now_s() - t0;
        t_hx[r] = h5_write(h5a, &d, 0);
        r_hx[r] = h5_read_verify(h5a, &d, 0, buf);
        unlink(h5a);
        t_hf[r] = h5_write(h5b, &d, 1);
        r_hf[r] = h5_read_verify(h5b, &d, 1, buf);
        unlink(h5b);
        t0 = now_s();
        uint64_t h = 0;
        for (int s = 0; s < d.nslabs; s++) h ^= XXH3_64bits(d.slab[s], m.ntrainable * 4);
        t_hash[r] = now_s() - t0 + (h == 42) * 1e-12; /* keep h used */
    }
    if (rc) {
        log_error("%s", err_msg());
        return rc;
    }
    double raw = median(t_raw, reps), ck = median(t_ck, reps);
    double rraw = median(r_raw, reps);
    printf("what,bytes,seconds,MBps,ratio\n");
    row("raw_write_fsync", d.bytes, raw, 1.0);
    row("ckpt_write_sync", d.bytes, ck, raw / ck);
    double hx = median(t_hx, reps), hf = median(t_hf, reps);
    row("h5_xxh3_write_fsync", d.bytes, hx, raw / hx);
    row("h5_fletcher32_write_fsync", d.bytes, hf, raw / hf);
    row("raw_read", d.bytes, rraw, 1.0);
    double rhx = median(r_hx, reps), rhf = median(r_hf, reps);
    row("h5_xxh3_read_verify", d.bytes, rhx, rraw / rhx);
    row("h5_fletcher32_read_verify", d.bytes, rhf, rraw / rhf);
    double hs = median(t_hash, reps);
    row("xxh3_hash_memory", d.bytes, hs, raw / hs);

    /* async: the pause is the submit (memcpy); reserve touched the snapshot pages */
    CkptAsync *a = ckpt_async_create();
    ckpt_async_reserve(a, m.nparams, d.nslabs - 1);
    double pause[BENCH_MAX_REPS], total[BENCH_MAX_REPS];
    for (int r = 0; r < reps && !rc; r++) {
        st.step = 100 + r;
        double t0 = now_s();
        rc = ckpt_async_submit(a, &st, ckdir, 1);
        pause[r] = now_s() - t0;
        if (!rc) rc = ckpt_async_wait(a, NULL, 0);
        total[r] = now_s() - t0;
    }
    ckpt_async_destroy(a);
    if (rc) {
        log_error("%s", err_msg());
        return rc;
    }
    double pz = median(pause, reps);
    row("async_submit_pause", d.bytes, pz, pz / ck);
    /* the floor of that pause: memcpy of the same bytes into touched memory */
    float *dst = xaligned(m.nparams * sizeof(float));
    double t_mc[BENCH_MAX_REPS];
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        for (int s = 0; s < d.nslabs; s++) memcpy(dst, d.slab[s], m.ntrainable * 4);
        t_mc[r] = now_s() - t0;
    }
    free(dst);
    double mc = median(t_mc, reps);
    row("memcpy", d.bytes, mc, mc / ck);
    row("async_write_total", d.bytes, median(total, reps), raw / median(total, reps));

    ckpt_prune(ckdir, 0, NULL);
    char p[4300];
    snprintf(p, sizeof p, "%s/step-%08d.h5", ckdir, 100 + reps - 1);
    unlink(p);
    snprintf(p, sizeof p, "%s/latest", ckdir);
    unlink(p);
    rmdir(ckdir);
    rmdir(work);
    for (int s = 0; s < d.nslabs; s++) free(d.slab[s]);
    free(buf);
    model_free(&m);
    log_info("bench ckpt: ckpt_write_sync at %.0f%% of raw write+fsync (target >= 70%%); "
             "async pause %.1f%% of the sync write (target <= 10%%)",
             100.0 * raw / ck, 100.0 * pz / ck);
    return 0;
}
