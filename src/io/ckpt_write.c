/* ckpt_write.c — writing one checkpoint file: size and space checks, NAME.tmp written
 * array by array (checksums hashed on a helper thread meanwhile), sealed and fsync'd
 * while it is re-read and verified, renamed, then `latest` and pruning (ckpt_dir.c).
 * See ckpt.h for the format and the contracts. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "core/common.h"
#include "io/ckpt_impl.h"

/* ---------------------------------------------------------------- writing the file */

/* The seal and the fsync, on a thread of their own while the main one re-reads and
 * verifies the arrays (HDF5 reads nothing of the user block the seal goes into). */
typedef struct {
    const char *path;
    int seal_rc;    /* 0, or -1 with why */
    char why[256];
    double seal_s;  /* seconds spent sealing (hashing the file) */
    int rc, err;    /* the fsync's */
} SealSyncJob;

static void *seal_sync_main(void *arg)
{
    SealSyncJob *j = arg;
    double t0 = now_s();
    j->seal_rc = ckpt_seal_write(j->path, j->why, sizeof j->why);
    j->seal_s = now_s() - t0;
    j->rc = ckpt_fsync_path(j->path, 0);
    j->err = j->rc ? errno : 0;
    return NULL;
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
 * CKPT_PIECE_BYTES, each under the lock.  Returns 0 or -1 with w->why. */
static int write_array(hid_t f, const CkptArray *a, const float *src, WriteCtx *w)
{
    const ParamDesc *pd = a->pd;
    hsize_t dims[CKPT_MAX_NDIM];
    ckpt_pd_dims(pd, dims);
    uint64_t rows = dims[0], row = pd->count / rows;
    uint64_t per = MT_MAX((uint64_t)1, CKPT_PIECE_BYTES / 4 / row);
    h5_quiet_lock();
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
        h5_quiet_unlock();
        return -1;
    }
    h5_quiet_unlock();
    rc = 0;
    for (uint64_t r0 = 0; r0 < rows; r0 += per) {
        uint64_t nr = MT_MIN(per, rows - r0);
        const float *p = src + r0 * row;
        h5_quiet_lock();
        herr_t e;
        if (r0 == 0 && nr == rows) {
            e = H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, p);
        } else {
            hid_t ms = ckpt_rows_select(sp, pd->ndim, dims, r0, nr, row);
            e = H5Dwrite(d, H5T_NATIVE_FLOAT, ms, sp, H5P_DEFAULT, p);
            H5Sclose(ms);
        }
        if (e < 0) h5_why(w->why, sizeof w->why);
        h5_quiet_unlock();
        if (e < 0) {
            rc = -1;
            break;
        }
        w->written += nr * row * 4;
    }
    h5_quiet_lock();
    H5Dclose(d);
    H5Sclose(sp);
    h5_quiet_unlock();
    return rc;
}

/* The arrays' checksums, computed on a helper thread while the main one writes (both
 * only read the slabs). */
typedef struct {
    const CkptState *s;
    const CkptArray *arr;
    int narr;
    uint64_t *h; /* (narr) */
} HashJob;

static void *hash_main(void *arg)
{
    HashJob *j = arg;
    XXH3_state_t *st = ckpt_hash_new();
    for (int i = 0; i < j->narr; i++) {
        const float *slab = j->arr[i].state < 0 ? j->s->params : j->s->states[j->arr[i].state];
        XXH3_64bits_reset(st);
        ckpt_hash_f32(st, slab + j->arr[i].pd->off, j->arr[i].pd->count);
        j->h[i] = XXH3_64bits_digest(st);
    }
    XXH3_freeState(st);
    return NULL;
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
    h5_quiet_lock();
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_V18);
    H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_userblock(fcpl, CKPT_SEAL_BYTES); /* room for the seal, written after the close */
    hid_t f = H5Fcreate(w->tmp, H5F_ACC_TRUNC, fcpl, fapl);
    H5Pclose(fcpl);
    if (f < 0) h5_why(w->why, sizeof w->why);
    int *h5fd = NULL; /* HDF5's file descriptor (sec2 driver), see discard_writes() */
    if (f >= 0 && H5Fget_vfd_handle(f, fapl, (void **)&h5fd) < 0) h5fd = NULL;
    H5Pclose(fapl);
    if (f < 0) {
        h5_quiet_unlock();
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
        h5_quiet_unlock();
        return err_set(MT_EX_IOERR,
                       "cannot write checkpoint %s: reserving %zu bytes failed: %s (previous "
                       "checkpoints are untouched)", w->tmp, w->total, strerror(e));
    }
    int bad = ckpt_header_write(f, s) < 0;
    if (bad) h5_why(w->why, sizeof w->why);
    h5_quiet_unlock();
    CkptArray *arr = NULL;
    int narr = bad ? 0 : ckpt_arrays(s->model, s->optim, s->nstates, &arr);
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
    h5_quiet_lock();
    for (int i = 0; i < narr && !bad; i++) {
        hid_t d = H5Dopen2(f, arr[i].path, H5P_DEFAULT);
        bad = d < 0 || h5_attr_put_u64(d, CKPT_HASH_ATTR, hj.h[i]) < 0;
        if (bad) h5_why(w->why, sizeof w->why);
        if (d >= 0) H5Dclose(d);
    }
    h5_quiet_unlock();
    free(hj.h);
    free(arr);
    h5_quiet_lock();
    if (bad) discard_writes(h5fd, w->tmp);
    if (H5Fclose(f) < 0) {
        char why[256];
        h5_why(why, sizeof why);
        if (!bad) snprintf(w->why, sizeof w->why, "%s", why);
        if (bad) log_error("HDF5 could not close the failed checkpoint %s (%s)", w->tmp, why);
        bad = 1;
    }
    H5Eclear2(H5E_DEFAULT);
    h5_quiet_unlock();
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

/* ---------------------------------------------------------------- ckpt_write */

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
    ckpt_file_name(name, sizeof name, s->step);
    ckpt_join(fin, sizeof fin, dir, name);
    snprintf(tmp, sizeof tmp, "%s.tmp", fin);

    WriteCtx w = {.tmp = tmp};
    /* an upper bound of the file size: data, config, metadata (~1 KB per array) */
    size_t narrays = 0;
    for (int l = 0; l < s->model->nlayers; l++) narrays += s->model->layers[l].nparams;
    w.total = s->model->ntrainable * 4 * (size_t)(1 + s->nstates) +
              (s->config_text ? strlen(s->config_text) : 0) + ((size_t)64 << 10) + CKPT_SEAL_BYTES +
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
    double t1 = now_s(), t2 = t1, seal_s = 0;
    if (!rc) {
        /* the seal (the whole file's hash into the user block: readers check it before
         * HDF5 parses the file) and then the fsync (disk-bound) run while the re-read
         * verification (from the page cache) checks every array; the rename waits for
         * both */
        SealSyncJob fj = {.path = tmp};
        pthread_t th;
        int threaded = pthread_create(&th, NULL, seal_sync_main, &fj) == 0;
        if (!threaded) seal_sync_main(&fj);
        CkptIn in;
        rc = ckpt_open_h5(tmp, 1, &in);
        if (!rc) rc = ckpt_verify_open(&in, NULL, NULL);
        ckpt_close_file(&in);
        if (rc) {
            char first[2048];
            snprintf(first, sizeof first, "%s", err_msg());
            rc = err_set(MT_EX_IOERR, "checkpoint %s does not read back as written: %s (disk "
                         "or memory fault?)", tmp, first);
        }
        t2 = now_s();
        if (threaded) pthread_join(th, NULL);
        seal_s = fj.seal_s;
        if (!rc && fj.seal_rc != 0)
            rc = err_set(MT_EX_IOERR, "writing checkpoint %s failed: %s", tmp, fj.why);
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
    if (ckpt_fsync_path(dir, 1) != 0)
        return err_set(MT_EX_IOERR, "cannot fsync directory %s after writing %s: %s", dir, fin,
                       strerror(errno));
    rc = ckpt_latest_write(dir, name);
    if (rc) return rc;
    if (path_out && n) snprintf(path_out, n, "%s", fin);

    CkptFile *v;
    int nf = ckpt_list(dir, 0, &v);
    for (int i = 0; i < nf; i++)
        if (v[i].step > s->step)
            log_info("checkpoint: warning: %s/%s has a higher step than the %s just written "
                     "(left from an earlier run?); it counts towards checkpoint.keep",
                     dir, v[i].name, name);
    free(v);
    ckpt_prune(dir, keep, name);
    double t4 = now_s();
    log_info("checkpoint: wrote %s (%.1f MB) in %.2f s: write %.2f, verify %.2f (meanwhile "
             "seal %.3f, then fsync), fsync done %.2f s later (%.0f MB/s)", fin,
             w.written / 1e6, t4 - t0, t1 - t0, t2 - t1, seal_s, t3 - t2,
             w.written / 1e6 / (t4 - t0));
    return 0;
}
