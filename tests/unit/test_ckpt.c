/* test_ckpt.c — checkpoint files: bitwise round trip, latest/keep, corruption and
 * truncation detected, resume fallback, missing file, shape mismatch, disk full, async
 * equals sync, the CLI's exit codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/ckpt_fix.h"
#include "core/common.h"
#include "core/rng.h"
#include "cli/cli.h"
#include "io/ckpt.h"
#include "io/h5.h"

static int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

static void read_latest(const char *dir, char *out, size_t n)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/latest", dir);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    assert_non_null(fgets(out, (int)n, f));
    fclose(f);
}

static int count_files(const char *dir, const char *suffix)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "ls -1 %s | grep -c '%s$'", dir, suffix);
    FILE *p = popen(cmd, "r");
    int n = 0;
    if (fscanf(p, "%d", &n) != 1) n = -1;
    pclose(p);
    return n;
}

/* ------------------------------------------------------------------------------------ */

static void test_roundtrip_bitwise(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    Fix f;
    fix_init(&f, SPEC, IN_DIM, OPTIM_ADAMW, 0);
    CkptState s = fix_state(&f, 300);
    char path[1024], want[1024];
    assert_int_equal(ckpt_write(dir, &s, 3, path, sizeof path), 0);
    ckpath(want, sizeof want, dir, 300);
    assert_string_equal(path, want);

    float *p = xaligned(f.m.nparams * 4);
    float *st[2] = {xaligned(f.m.nparams * 4), xaligned(f.m.nparams * 4)};
    /* garbage in the padding must come back zero */
    memset(p, 0xff, f.m.nparams * 4);
    memset(st[0], 0xff, f.m.nparams * 4);
    CkptMeta meta;
    assert_int_equal(ckpt_read(path, &f.m, &f.oc, p, st, &meta), 0);
    assert_memory_equal(p, f.p, f.m.nparams * 4);
    assert_memory_equal(st[0], f.st[0], f.m.nparams * 4);
    assert_memory_equal(st[1], f.st[1], f.m.nparams * 4);
    assert_int_equal(meta.version, 1);
    assert_int_equal(meta.step, 300);
    assert_int_equal(meta.epoch, 30);
    assert_int_equal(meta.pos_in_epoch, 0);
    assert_int_equal(meta.seed, 7);
    assert_int_equal(meta.world_size, 4);
    assert_string_equal(meta.mode, "allreduce/deterministic/zero1");
    assert_string_equal(meta.optimizer, "adamw");
    assert_string_equal(meta.mpitrain_version, MPITRAIN_VERSION);
    assert_int_equal(meta.nparams, f.m.ntrainable);
    assert_int_equal(strlen(meta.created), 20);

    /* params only (eval): optimizer state not needed */
    memset(p, 0, f.m.nparams * 4);
    assert_int_equal(ckpt_read(path, &f.m, NULL, p, NULL, NULL), 0);
    assert_memory_equal(p, f.p, f.m.nparams * 4);

    char *text;
    assert_int_equal(ckpt_read_config(path, &text), 0);
    assert_string_equal(text, CONFIG_TEXT);
    free(text);
    assert_int_equal(ckpt_verify(path, NULL), 0);
    /* the raw bytes of /model/dense0/w are the little-endian floats in (out, in) order */
    const ParamDesc *pd = model_find_param(&f.m, "dense0/w", NULL);
    assert_non_null(pd);
    haddr_t off = data_offset(path, "/model/dense0/w");
    int fd = open(path, O_RDONLY);
    float *raw = xmalloc(pd->count * 4);
    assert_int_equal(pread(fd, raw, pd->count * 4, (off_t)off), (ssize_t)(pd->count * 4));
    close(fd);
    assert_memory_equal(raw, f.p + pd->off, pd->count * 4);
    free(raw);

    /* sgd with momentum: one state named "momentum" */
    Fix g;
    fix_init(&g, SPEC, IN_DIM, OPTIM_SGD, 5);
    assert_int_equal(g.ns, 1);
    CkptState sg = fix_state(&g, 301);
    assert_int_equal(ckpt_write(dir, &sg, 0, path, sizeof path), 0);
    memset(p, 0, f.m.nparams * 4);
    assert_int_equal(ckpt_read(path, &g.m, &g.oc, p, st, &meta), 0);
    assert_memory_equal(p, g.p, g.m.nparams * 4);
    assert_memory_equal(st[0], g.st[0], g.m.nparams * 4);
    assert_string_equal(meta.optimizer, "sgd");
    fix_free(&g);

    free(p);
    free(st[0]);
    free(st[1]);
    fix_free(&f);
    rm_tree(dir);
}

static void test_latest_and_keep(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    Fix f;
    fix_init(&f, SPEC, IN_DIM, OPTIM_ADAMW, 0);
    char path[1024], latest[256], p[1024], want[64];
    /* a stale tmp from an interrupted write is cleaned up by the next write */
    snprintf(p, sizeof p, "%s/step-00000003.h5.tmp", dir);
    FILE *t = fopen(p, "w");
    fputs("partial", t);
    fclose(t);
    for (uint64_t step = 1; step <= 5; step++) {
        CkptState s = fix_state(&f, step);
        assert_int_equal(ckpt_write(dir, &s, 3, path, sizeof path), 0);
        read_latest(dir, latest, sizeof latest);
        snprintf(want, sizeof want, "step-%08llu.h5\n", (unsigned long long)step);
        assert_string_equal(latest, want);
        assert_int_equal(count_files(dir, ".tmp"), 0);
        assert_int_equal(count_files(dir, ".h5"), step < 3 ? (int)step : 3);
    }
    for (uint64_t step = 1; step <= 5; step++) {
        ckpath(p, sizeof p, dir, step);
        assert_int_equal(file_exists(p), step >= 3);
    }
    /* keep <= 0 keeps everything; keep 1 after that leaves only the newest */
    CkptState s6 = fix_state(&f, 6);
    assert_int_equal(ckpt_write(dir, &s6, 0, path, sizeof path), 0);
    assert_int_equal(count_files(dir, ".h5"), 4);
    CkptState s7 = fix_state(&f, 7);
    assert_int_equal(ckpt_write(dir, &s7, 1, path, sizeof path), 0);
    assert_int_equal(count_files(dir, ".h5"), 1);
    ckpath(p, sizeof p, dir, 7);
    assert_true(file_exists(p));
    /* the file just written is kept even when higher steps from an older run exist */
    CkptState s9 = fix_state(&f, 9);
    assert_int_equal(ckpt_write(dir, &s9, 0, path, sizeof path), 0);
    CkptState s8 = fix_state(&f, 8);
    assert_int_equal(ckpt_write(dir, &s8, 1, path, sizeof path), 0);
    ckpath(p, sizeof p, dir, 8);
    assert_true(file_exists(p));
    read_latest(dir, latest, sizeof latest);
    assert_string_equal(latest, "step-00000008.h5\n");
    fix_free(&f);
    rm_tree(dir);
}

static void test_truncated_detected(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    Fix f;
    fix_init(&f, SPEC, IN_DIM, OPTIM_ADAMW, 0);
    CkptState s = fix_state(&f, 10);
    char path[1024], copy[1024];
    assert_int_equal(ckpt_write(dir, &s, 0, path, sizeof path), 0);
    off_t sz = file_size(path);
    off_t cuts[] = {sz / 2, sz - 1, 100, 0};
    float *p = xaligned(f.m.nparams * 4);
    float *st[2] = {xaligned(f.m.nparams * 4), xaligned(f.m.nparams * 4)};
    for (int i = 0; i < 4; i++) {
        snprintf(copy, sizeof copy, "%s/cut%d.h5", dir, i);
        copy_file(path, copy);
        assert_int_equal(truncate(copy, cuts[i]), 0);
        assert_int_equal(ckpt_verify(copy, NULL), MT_EX_DATAERR);
        assert_non_null(strstr(err_msg(), copy));
        assert_int_equal(ckpt_read(copy, &f.m, &f.oc, p, st, NULL), MT_EX_DATAERR);
        assert_int_equal(ckpt_read_meta(copy, &(CkptMeta){0}), MT_EX_DATAERR);
    }
    free(p);
    free(st[0]);
    free(st[1]);
    fix_free(&f);
    rm_tree(dir);
}

static void test_flipped_byte_detected(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    Fix f;
    fix_init(&f, SPEC, IN_DIM, OPTIM_ADAMW, 0);
    CkptState s = fix_state(&f, 10);
    char path[1024], copy[1024];
    assert_int_equal(ckpt_write(dir, &s, 0, path, sizeof path), 0);
    float *p = xaligned(f.m.nparams * 4);
    float *st[2] = {xaligned(f.m.nparams * 4), xaligned(f.m.nparams * 4)};
    static const char *const arrays[] = {"/model/dense0/w", "/model/dense1/b", "/optim/v/dense1/w"};
    for (int i = 0; i < 3; i++) {
        snprintf(copy, sizeof copy, "%s/flip%d.h5", dir, i);
        copy_file(path, copy);
        flip_byte(copy, (off_t)data_offset(copy, arrays[i]) + 5);
        /* the seal fails before HDF5 sees the file: the file is named as damaged */
        assert_int_equal(ckpt_verify(copy, NULL), MT_EX_DATAERR);
        assert_non_null(strstr(err_msg(), copy));
        assert_non_null(strstr(err_msg(), "damaged"));
        assert_int_equal(ckpt_read(copy, &f.m, &f.oc, p, st, NULL), MT_EX_DATAERR);
        assert_non_null(strstr(err_msg(), "damaged"));
        assert_non_null(strstr(err_msg(), copy));
        /* the report of `ckpt verify` also names the array (read in another process) */
        char *rep = verify_report(copy, MT_EX_DATAERR);
        assert_non_null(strstr(rep, arrays[i]));
        assert_non_null(strstr(rep, "checksum"));
        free(rep);
    }
    /* damaged metadata: the seal itself, the superblock after it */
    static const off_t meta[] = {20, CKPT_SEAL_BYTES_T + 20};
    for (int i = 0; i < 2; i++) {
        snprintf(copy, sizeof copy, "%s/flipsb%d.h5", dir, i);
        copy_file(path, copy);
        flip_byte(copy, meta[i]);
        assert_int_equal(ckpt_verify(copy, NULL), MT_EX_DATAERR);
        assert_non_null(strstr(err_msg(), "damaged"));
        assert_int_equal(ckpt_read_meta(copy, &(CkptMeta){0}), MT_EX_DATAERR);
    }
    /* the config text */
    snprintf(copy, sizeof copy, "%s/flipcfg.h5", dir);
    copy_file(path, copy);
    flip_byte(copy, (off_t)data_offset(copy, "/config") + 3);
    assert_int_equal(ckpt_verify(copy, NULL), MT_EX_DATAERR);
    char *rep = verify_report(copy, MT_EX_DATAERR);
    assert_non_null(strstr(rep, "/config"));
    free(rep);
    char *text;
    assert_int_equal(ckpt_read_config(copy, &text), MT_EX_DATAERR);
    assert_int_equal(ckpt_read(copy, &f.m, &f.oc, p, st, NULL), MT_EX_DATAERR);
    /* the original is untouched and fine */
    assert_int_equal(ckpt_verify(path, NULL), 0);
    free(p);
    free(st[0]);
    free(st[1]);
    fix_free(&f);
    rm_tree(dir);
}

static void test_find_resume_fallback(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    Fix f;
    fix_init(&f, SPEC, IN_DIM, OPTIM_ADAMW, 0);
    char path[1024], p10[1024], p20[1024], p30[1024];
    write_steps(dir, &f, 10, 30, 10);
    ckpath(p10, sizeof p10, dir, 10);
    ckpath(p20, sizeof p20, dir, 20);
    ckpath(p30, sizeof p30, dir, 30);
    assert_int_equal(ckpt_find_resume(dir, path, sizeof path), 0);
    assert_string_equal(path, p30);

    /* newest corrupt: falls back to step 20 and says which it skipped and why */
    flip_byte(p30, (off_t)data_offset(p30, "/model/dense0/w") + 1);
    Capture c;
    capture_begin(&c);
    int rc = ckpt_find_resume(dir, path, sizeof path);
    char *log = capture_end(&c);
    assert_int_equal(rc, 0);
    assert_string_equal(path, p20);
    assert_non_null(strstr(log, "skipping"));
    assert_non_null(strstr(log, p30));
    assert_non_null(strstr(log, "damaged"));
    free(log);

    /* step 20 truncated too, and latest names a file that is gone: step 10 */
    assert_int_equal(truncate(p20, file_size(p20) / 2), 0);
    assert_int_equal(ckpt_find_resume(dir, path, sizeof path), 0);
    assert_string_equal(path, p10);
    char lp[1024];
    snprintf(lp, sizeof lp, "%s/latest", dir);
    unlink(p30);
    assert_int_equal(ckpt_find_resume(dir, path, sizeof path), 0);
    assert_string_equal(path, p10);
    /* without latest: scans */
    unlink(lp);
    assert_int_equal(ckpt_find_resume(dir, path, sizeof path), 0);
    assert_string_equal(path, p10);
    /* a file given directly is only verified */
    assert_int_equal(ckpt_find_resume(p10, path, sizeof path), 0);
    assert_string_equal(path, p10);
    assert_int_equal(ckpt_find_resume(p20, path, sizeof path), MT_EX_DATAERR);
    /* none valid */
    flip_byte(p10, (off_t)data_offset(p10, "/optim/m/dense0/b") + 2);
    assert_int_equal(ckpt_find_resume(dir, path, sizeof path), MT_EX_NOINPUT);
    assert_non_null(strstr(err_msg(), "no valid checkpoint"));
    assert_non_null(strstr(err_msg(), "step-00000010.h5"));
    fix_free(&f);
    rm_tree(dir);
}

static void test_missing(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    Fix f;
    fix_init(&f, SPEC, IN_DIM, OPTIM_ADAMW, 0);
    char p[1024], path[1024];
    snprintf(p, sizeof p, "%s/nope.h5", dir);
    float *st[2] = {f.st[0], f.st[1]};
    assert_int_equal(ckpt_read(p, &f.m, &f.oc, f.p, st, NULL), MT_EX_NOINPUT);
    assert_non_null(strstr(err_msg(), p));
    assert_int_equal(ckpt_verify(p, NULL), MT_EX_NOINPUT);
    char *text;
    assert_int_equal(ckpt_read_config(p, &text), MT_EX_NOINPUT);
    snprintf(p, sizeof p, "%s/nodir", dir);
    assert_int_equal(ckpt_find_resume(p, path, sizeof path), MT_EX_NOINPUT);
    assert_non_null(strstr(err_msg(), p));
    /* empty directory */
    assert_int_equal(ckpt_find_resume(dir, path, sizeof path), MT_EX_NOINPUT);
    /* not HDF5 / HDF5 but not a checkpoint */
    snprintf(p, sizeof p, "%s/step-00000001.h5", dir);
    FILE *t = fopen(p, "w");
    fputs("hello, not hdf5\n", t);
    fclose(t);
    assert_int_equal(ckpt_verify(p, NULL), MT_EX_DATAERR);
    assert_int_equal(ckpt_find_resume(dir, path, sizeof path), MT_EX_NOINPUT);
    h5_lock();
    hid_t h = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    H5Fclose(h);
    h5_unlock();
    assert_int_equal(ckpt_read(p, &f.m, &f.oc, f.p, st, NULL), MT_EX_DATAERR);
    assert_non_null(strstr(err_msg(), "not an mpitrain checkpoint"));
    fix_free(&f);
    rm_tree(dir);
}

static void test_shape_mismatch(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    Fix f, g;
    fix_init(&f, SPEC, IN_DIM, OPTIM_ADAMW, 0);
    CkptState s = fix_state(&f, 10);
    char path[1024];
    assert_int_equal(ckpt_write(dir, &s, 0, path, sizeof path), 0);

    fix_init(&g, "dense:16 relu dropout:0.1 dense:10", IN_DIM, OPTIM_ADAMW, 0);
    assert_int_equal(ckpt_read(path, &g.m, &g.oc, g.p, g.st, NULL), MT_EX_CONFIG);
    assert_non_null(strstr(err_msg(), "/model/dense0/w"));
    assert_non_null(strstr(err_msg(), "(32,20)"));
    assert_non_null(strstr(err_msg(), "(16,20)"));
    fix_free(&g);

    fix_init(&g, SPEC, IN_DIM + 1, OPTIM_ADAMW, 0);
    assert_int_equal(ckpt_read(path, &g.m, &g.oc, g.p, g.st, NULL), MT_EX_CONFIG);
    assert_non_null(strstr(err_msg(), "(32,21)"));
    fix_free(&g);

    /* one layer more: the array is missing */
    fix_init(&g, "dense:32 relu dropout:0.1 dense:10 dense:10", IN_DIM, OPTIM_ADAMW, 0);
    assert_int_equal(ckpt_read(path, &g.m, &g.oc, g.p, g.st, NULL), MT_EX_CONFIG);
    assert_non_null(strstr(err_msg(), "/model/dense2/w"));
    fix_free(&g);
    /* one layer fewer: the checkpoint has an array the model lacks */
    fix_init(&g, "dense:32", IN_DIM, OPTIM_ADAMW, 0);
    assert_int_equal(ckpt_read(path, &g.m, &g.oc, g.p, g.st, NULL), MT_EX_CONFIG);
    assert_non_null(strstr(err_msg(), "/model/dense1/"));
    fix_free(&g);
    /* optimizer state the checkpoint lacks */
    fix_init(&g, SPEC, IN_DIM, OPTIM_SGD, 0);
    assert_int_equal(ckpt_read(path, &g.m, &g.oc, g.p, g.st, NULL), MT_EX_CONFIG);
    assert_non_null(strstr(err_msg(), "/optim/momentum/dense0/w"));
    assert_non_null(strstr(err_msg(), "adamw"));
    fix_free(&g);
    fix_free(&f);
    rm_tree(dir);
}

/* After a failed write: the error names the file, nothing half-written is left, and
 * the previous checkpoint and latest are as they were. */
static void check_failed_write(const char *dir, int rc, const char *errtext, uint64_t prev)
{
    assert_int_equal(rc, MT_EX_IOERR);
    assert_non_null(strstr(err_msg(), "step-00000002.h5"));
    assert_non_null(strstr(err_msg(), errtext));
    assert_int_equal(count_files(dir, ".tmp"), 0);
    char p[1024], latest[256], want[64];
    snprintf(p, sizeof p, "%s/step-00000002.h5", dir);
    assert_false(file_exists(p));
    read_latest(dir, latest, sizeof latest);
    snprintf(want, sizeof want, "step-%08llu.h5\n", (unsigned long long)prev);
    assert_string_equal(latest, want);
    ckpath(p, sizeof p, dir, prev);
    assert_int_equal(ckpt_verify(p, NULL), 0);
    char path[1024];
    assert_int_equal(ckpt_find_resume(dir, path, sizeof path), 0);
    assert_string_equal(path, p);
}

/* Leave `want` bytes free on the filesystem of dir by (re)writing dir/filler. */
static void leave_free(const char *dir, size_t want)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/filler", dir);
    unlink(p);
    struct statvfs vf;
    assert_int_equal(statvfs(dir, &vf), 0);
    size_t avail = (size_t)vf.f_bavail * vf.f_frsize;
    assert_true(avail >= want);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    if (avail > want) assert_int_equal(fallocate(fd, 0, 0, (off_t)(avail - want)), 0);
    close(fd);
}

/* teardown: unmount and remove even when an assertion failed half-way */
static int tmpfs_teardown(void **state)
{
    char *dir = *state;
    if (dir) {
        umount2(dir, MNT_DETACH);
        rm_tree(dir);
        *state = NULL;
    }
    return 0;
}

static void test_disk_full_tmpfs(void **state)
{
    char *dir = make_tmpdir();
    *state = dir;
    if (mount("tmpfs", dir, "tmpfs", 0, "size=2m") != 0) {
        print_message("SKIP disk-full test on tmpfs: mount failed (%s); needs root\n",
                      strerror(errno));
        skip();
    }
    /* ~680 KB of arrays per checkpoint */
    Fix f;
    fix_init(&f, "dense:700 relu dense:10", 70, OPTIM_ADAMW, 0);
    size_t data = f.m.ntrainable * 4 * 3;
    char path[1024], p2[1024], lp[1024];
    ckpath(p2, sizeof p2, dir, 2);
    snprintf(lp, sizeof lp, "%s/latest", dir);
    CkptState s1 = fix_state(&f, 1);
    assert_int_equal(ckpt_write(dir, &s1, 0, path, sizeof path), 0);
    CkptState s2 = fix_state(&f, 2);

    /* refused up front: not enough free space for the whole file */
    leave_free(dir, data);
    int rc = ckpt_write(dir, &s2, 0, path, sizeof path);
    check_failed_write(dir, rc, "No space left on device", 1);
    assert_non_null(strstr(err_msg(), "free"));

    /* the check skipped (as on a filesystem that misreports its free space): the disk
     * runs full while writing, at every point from the first array to the metadata.
     * Each attempt fails cleanly or succeeds; HDF5 never keeps the file open (it would
     * crash this process at exit) */
    setenv("MPITRAIN_CKPT_NO_SPACE_CHECK", "1", 1);
    int nfail = 0, nok = 0;
    for (size_t k = 0; k <= 40; k += 2) {
        leave_free(dir, data / 2 + k * 16384);
        rc = ckpt_write(dir, &s2, 0, path, sizeof path);
        h5_lock();
        assert_int_equal(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL), 0);
        h5_unlock();
        if (rc) {
            check_failed_write(dir, rc, "No space left on device", 1);
            nfail++;
        } else {
            assert_int_equal(ckpt_verify(p2, NULL), 0);
            assert_int_equal(unlink(p2), 0); /* back to step 1 for the next round */
            FILE *t = fopen(lp, "w");
            fputs("step-00000001.h5\n", t);
            fclose(t);
            nok++;
        }
    }
    unsetenv("MPITRAIN_CKPT_NO_SPACE_CHECK");
    assert_true(nfail > 0);
    assert_true(nok > 0);
    fix_free(&f);
}

static void test_file_too_large(void **state)
{
    (void)state;
    /* a file size limit (ulimit -f) below the checkpoint's size is refused up front */
    char *dir = make_tmpdir();
    Fix f;
    fix_init(&f, "dense:700 relu dense:10", 70, OPTIM_ADAMW, 0);
    char path[1024];
    CkptState s1 = fix_state(&f, 1);
    assert_int_equal(ckpt_write(dir, &s1, 1, path, sizeof path), 0);
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 200000;
    if (old.rlim_max != RLIM_INFINITY && old.rlim_max < lim.rlim_cur) lim.rlim_cur = old.rlim_max;
    void (*oldsig)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    CkptState s2 = fix_state(&f, 2);
    int rc = ckpt_write(dir, &s2, 1, path, sizeof path);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, oldsig);
    check_failed_write(dir, rc, "File too large", 1);
    assert_non_null(strstr(err_msg(), "ulimit -f"));
    fix_free(&f);
    rm_tree(dir);
}

static void test_unwritable_dir(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    Fix f;
    fix_init(&f, SPEC, IN_DIM, OPTIM_ADAMW, 0);
    char p[1024], path[1024];
    snprintf(p, sizeof p, "%s/afile", dir);
    FILE *t = fopen(p, "w");
    fclose(t);
    snprintf(p, sizeof p, "%s/afile/sub", dir);
    CkptState s = fix_state(&f, 1);
    assert_int_equal(ckpt_write(p, &s, 1, path, sizeof path), MT_EX_CANTCREAT);
    assert_non_null(strstr(err_msg(), p));
    fix_free(&f);
    rm_tree(dir);
}

static void test_async_equals_sync(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    char da[1024], db[1024], pa[1024], pb[1024];
    snprintf(da, sizeof da, "%s/sync", dir);
    snprintf(db, sizeof db, "%s/async", dir);
    Fix f;
    fix_init(&f, SPEC, IN_DIM, OPTIM_ADAMW, 0);
    CkptState s = fix_state(&f, 42);
    assert_int_equal(ckpt_write(da, &s, 2, pa, sizeof pa), 0);

    CkptAsync *a = ckpt_async_create();
    ckpt_async_reserve(a, f.m.nparams, f.ns);
    assert_int_equal(ckpt_async_submit(a, &s, db, 2), 0);
    /* training goes on and changes the slabs at once: the snapshot must not see it */
    Fix orig;
    fix_init(&orig, SPEC, IN_DIM, OPTIM_ADAMW, 0);
    fill_slab(&f.m, f.p, 999);
    fill_slab(&f.m, f.st[1], 998);
    assert_int_equal(ckpt_async_wait(a, pb, sizeof pb), 0);
    ckpath(pa, sizeof pa, db, 42);
    assert_string_equal(pb, pa);
    ckpath(pa, sizeof pa, da, 42);

    float *x = xaligned(f.m.nparams * 4), *y = xaligned(f.m.nparams * 4);
    float *xs[2] = {xaligned(f.m.nparams * 4), xaligned(f.m.nparams * 4)};
    float *ys[2] = {xaligned(f.m.nparams * 4), xaligned(f.m.nparams * 4)};
    CkptMeta ma, mb;
    assert_int_equal(ckpt_read(pa, &f.m, &f.oc, x, xs, &ma), 0);
    assert_int_equal(ckpt_read(pb, &f.m, &f.oc, y, ys, &mb), 0);
    assert_memory_equal(x, y, f.m.nparams * 4);
    assert_memory_equal(xs[0], ys[0], f.m.nparams * 4);
    assert_memory_equal(xs[1], ys[1], f.m.nparams * 4);
    assert_memory_equal(y, orig.p, f.m.nparams * 4);
    assert_memory_equal(ys[1], orig.st[1], f.m.nparams * 4);
    assert_int_equal(mb.step, 42);
    assert_string_equal(mb.mode, ma.mode);

    /* several in a row: at most one in flight; keep applies */
    for (uint64_t step = 43; step <= 46; step++) {
        CkptState sn = fix_state(&f, step);
        assert_int_equal(ckpt_async_submit(a, &sn, db, 2), 0);
    }
    assert_int_equal(ckpt_async_wait(a, pb, sizeof pb), 0);
    ckpath(pa, sizeof pa, db, 46);
    assert_string_equal(pb, pa);
    assert_int_equal(count_files(db, ".h5"), 2);
    assert_int_equal(ckpt_read(pb, &f.m, &f.oc, y, ys, NULL), 0);
    assert_memory_equal(y, f.p, f.m.nparams * 4);

    /* a failing write is reported by the next submit (which then does not queue) */
    snprintf(pa, sizeof pa, "%s/sync/latest/sub", dir); /* under a regular file */
    assert_int_equal(ckpt_async_submit(a, &s, pa, 2), 0);
    assert_int_equal(ckpt_async_submit(a, &s, db, 2), MT_EX_CANTCREAT);
    assert_non_null(strstr(err_msg(), pa));
    assert_int_equal(ckpt_async_wait(a, pb, sizeof pb), 0);
    ckpath(pa, sizeof pa, db, 46); /* the last successful write */
    assert_string_equal(pb, pa);
    snprintf(pa, sizeof pa, "%s/sync/latest/sub", dir);
    assert_int_equal(ckpt_async_submit(a, &s, pa, 2), 0);
    assert_int_equal(ckpt_async_wait(a, NULL, 0), MT_EX_CANTCREAT);
    assert_int_equal(ckpt_async_wait(a, NULL, 0), 0);
    ckpt_async_destroy(a);
    ckpt_async_destroy(NULL);

    free(x);
    free(y);
    for (int i = 0; i < 2; i++) free(xs[i]), free(ys[i]);
    fix_free(&orig);
    fix_free(&f);
    rm_tree(dir);
}

static int run_cli(int argc, const char **argv)
{
    /* the CLI prints to stdout/stderr: keep the test log readable */
    fflush(stdout);
    int saved = dup(1);
    int fd = open("/dev/null", O_WRONLY);
    dup2(fd, 1);
    close(fd);
    int rc = ckpt_cli_main(argc, (char **)argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    return rc;
}

static void test_cli(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    Fix f;
    fix_init(&f, SPEC, IN_DIM, OPTIM_ADAMW, 0);
    char path[1024], bad[1024], missing[1024];
    CkptState s = fix_state(&f, 10);
    assert_int_equal(ckpt_write(dir, &s, 0, path, sizeof path), 0);
    assert_int_equal(run_cli(3, (const char *[]){"ckpt", "info", path}), 0);
    assert_int_equal(run_cli(4, (const char *[]){"ckpt", "info", dir, "--config"}), 0);
    assert_int_equal(run_cli(3, (const char *[]){"ckpt", "verify", path}), 0);
    assert_int_equal(run_cli(3, (const char *[]){"ckpt", "verify", dir}), 0);
    snprintf(missing, sizeof missing, "%s/none.h5", dir);
    assert_int_equal(run_cli(3, (const char *[]){"ckpt", "verify", missing}), MT_EX_NOINPUT);
    assert_int_equal(run_cli(3, (const char *[]){"ckpt", "info", missing}), MT_EX_NOINPUT);
    assert_int_equal(run_cli(2, (const char *[]){"ckpt", "verify"}), MT_EX_USAGE);
    assert_int_equal(run_cli(1, (const char *[]){"ckpt"}), MT_EX_USAGE);
    assert_int_equal(run_cli(2, (const char *[]){"ckpt", "frobnicate"}), MT_EX_USAGE);
    assert_int_equal(run_cli(2, (const char *[]){"ckpt", "--help"}), 0);
    CkptState s2 = fix_state(&f, 20);
    assert_int_equal(ckpt_write(dir, &s2, 0, bad, sizeof bad), 0);
    flip_byte(bad, (off_t)data_offset(bad, "/model/dense1/w") + 7);
    assert_int_equal(run_cli(3, (const char *[]){"ckpt", "verify", bad}), MT_EX_DATAERR);
    assert_int_equal(run_cli(3, (const char *[]){"ckpt", "verify", dir}), MT_EX_DATAERR);
    /* info reads no data, but a file whose seal fails is not handed to HDF5 at all */
    assert_int_equal(run_cli(3, (const char *[]){"ckpt", "info", bad}), MT_EX_DATAERR);
    fix_free(&f);
    rm_tree(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_bitwise),
        cmocka_unit_test(test_latest_and_keep),
        cmocka_unit_test(test_truncated_detected),
        cmocka_unit_test(test_flipped_byte_detected),
        cmocka_unit_test(test_find_resume_fallback),
        cmocka_unit_test(test_missing),
        cmocka_unit_test(test_shape_mismatch),
        cmocka_unit_test_teardown(test_disk_full_tmpfs, tmpfs_teardown),
        cmocka_unit_test(test_file_too_large),
        cmocka_unit_test(test_unwritable_dir),
        cmocka_unit_test(test_async_equals_sync),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
