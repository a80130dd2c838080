/* fuzz_util.c — see fuzz_util.h. */
#include "fuzz_util.h"

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/common.h"
#include "io/dataset.h"

static char g_dir[512];

static void die(const char *what)
{
    fprintf(stderr, "fuzz harness: %s: %s\n", what, strerror(errno));
    abort();
}

static int rm_cb(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)s, (void)f;
    if (w->level > 0) remove(p);
    return 0;
}

static void remove_dir(void)
{
    if (!g_dir[0]) return;
    nftw(g_dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    rmdir(g_dir);
}

static void abort_hook(int code)
{
    (void)code;
    abort();
}

const char *fuzz_dir(void)
{
    if (g_dir[0]) return g_dir;
    const char *base = getenv("FUZZ_TMPDIR");
    struct stat st;
    if (!base || !*base)
        base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0
                   ? "/dev/shm"
                   : getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/mpitrain-fuzz.XXXXXX", base);
    if (!mkdtemp(g_dir)) die("cannot create the scratch directory");
    atexit(remove_dir);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    /* HDF5 keeps the blocks it frees for reuse, without its size limits: otherwise every
     * file open maps fresh pages for its ~1 MB of buffers (ASan returns large blocks to
     * the system at once), and faulting them in was most of an input's time */
    H5set_free_list_limits(-1, -1, -1, -1, -1, -1);
    set_abort_hook(abort_hook);
    log_set_rank(1, 2); /* log_info prints on rank 0 only: progress lines stay quiet */
    return g_dir;
}

const char *fuzz_path(const char *name)
{
    static char buf[4][640];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", fuzz_dir(), name);
    return buf[k];
}

const char *fuzz_write(const char *name, const void *data, size_t n)
{
    const char *p = fuzz_path(name);
    FILE *f = fopen(p, "wb");
    if (!f) die(p);
    if (n && fwrite(data, 1, n, f) != n) die(p);
    if (fclose(f) != 0) die(p);
    return p;
}

void fuzz_clean(void)
{
    nftw(fuzz_dir(), rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

FILE *fuzz_null(void)
{
    static FILE *f;
    if (!f && !(f = fopen("/dev/null", "w"))) die("/dev/null");
    return f;
}

void fuzz_check_no_h5_leak(const char *who)
{
    ssize_t n = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (n > 0) {
        fprintf(stderr, "fuzz harness: %s left %zd HDF5 object(s) open (a leaked handle)\n",
                who, n);
        abort();
    }
}

uint64_t fuzz_take(const uint8_t **p, size_t *n, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes && *n; i++, (*p)++, (*n)--) v |= (uint64_t)**p << (8 * i);
    return v;
}

int fuzz_import_done(int rc, const char *who, const char *out_dir)
{
    fuzz_check_no_h5_leak(who);
    if (rc == 0 && dataset_verify(out_dir, fuzz_null()) != 0) {
        fprintf(stderr, "an imported dataset fails verify: %s\n", err_msg());
        abort();
    }
    fuzz_check_no_h5_leak("dataset_verify");
    fuzz_clean();
    err_clear();
    return 0;
}
