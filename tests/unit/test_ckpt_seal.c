/* test_ckpt_seal.c — integrity before parsing and bounded reads: the seal's layout and
 * hash, every damaged byte of the seal and a sample of the rest refused before HDF5
 * sees the file; unsealed (version-1, variable-length string) checkpoints still read;
 * one whose global heap makes HDF5 loop is refused within the bound, in-process and
 * isolated, and resume falls back past it; random damage to an unsealed file's metadata
 * never hangs or crashes; the watchdog and crash handler of io/h5_guard.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include "common/ckpt_fix.h"
#include "core/common.h"
#include "io/ckpt.h"
#include "io/h5.h"

#define BOUND_S "0.5" /* MPITRAIN_HDF5_TIMEOUT for this test */

static unsigned char *slurp(const char *path, size_t *n)
{
    *n = (size_t)file_size(path);
    unsigned char *b = xmalloc(*n + 1);
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    assert_int_equal(pread(fd, b, *n, 0), (ssize_t)*n);
    close(fd);
    return b;
}

static void spill(const char *path, const void *b, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, b, n), (ssize_t)n);
    close(fd);
}

/* out = the checkpoint `sealed` (out may be the same path) as mpitrain 0.1.0 wrote it:
 * no seal, string attributes variable-length (in the global heap).  hang: that heap's
 * free-space object gets size 0, on which HDF5 loops for ever when it reads any string
 * attribute. */
static void make_legacy(const char *sealed, const char *out, int hang)
{
    size_t n;
    unsigned char *b = slurp(sealed, &n);
    spill(out, b + 512, n - 512);
    free(b);
    static const char *const root[] = {"format", "mode", "optimizer", "model", "checksum",
                                        "mpitrain_version", "hdf5_version", "created"};
    h5_lock();
    hid_t f = H5Fopen(out, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    for (size_t i = 0; i < sizeof root / sizeof root[0]; i++) {
        char v[512];
        assert_int_equal(h5_attr_get_str(f, root[i], v, sizeof v, NULL), H5_ATTR_OK);
        assert_true(H5Adelete(f, root[i]) >= 0);
        assert_int_equal(h5_attr_put_str(f, root[i], v), 0);
    }
    H5Fclose(f);
    h5_unlock();
    if (!hang) return;
    b = slurp(out, &n);
    unsigned char *g = memmem(b, n, "GCOL", 4);
    assert_non_null(g);
    uint64_t size;
    memcpy(&size, g + 8, 8);
    unsigned char *p = g + 16, *end = g + size;
    int done = 0;
    while (p + 16 <= end && !done) {
        uint16_t idx;
        uint64_t osz;
        memcpy(&idx, p, 2);
        memcpy(&osz, p + 8, 8);
        if (idx == 0) {
            memset(p + 8, 0, 8);
            done = 1;
        }
        p += 16 + (osz + 7) / 8 * 8;
    }
    assert_true(done);
    spill(out, b, n);
    free(b);
}

/* ------------------------------------------------------------------------------------ */

static void test_seal_layout(void **state)
{
    (void)state;
    Case k;
    case_open(&k, 10, 10);
    size_t n;
    unsigned char *b = slurp(k.path, &n);
    char want[128];
    snprintf(want, sizeof want, "mpitrain checkpoint seal 1\nbytes %020zu\nxxh3-128 ", n);
    assert_memory_equal(b, want, strlen(want));
    assert_int_equal(strlen(want), 63);
    assert_int_equal(b[95], '\n');
    for (int i = 96; i < 512; i++) assert_int_equal(b[i], 0);
    assert_memory_equal(b + 512, "\x89HDF\r\n\x1a\n", 8);
    /* XXH3-128 of the whole file with its 32 hex digits as '0' */
    char stored[33];
    memcpy(stored, b + 63, 32);
    stored[32] = 0;
    memset(b + 63, '0', 32);
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits(b, n));
    char hex[33];
    for (int i = 0; i < 16; i++) snprintf(hex + 2 * i, 3, "%02x", c.digest[i]);
    assert_string_equal(hex, stored);
    free(b);
    /* string attributes are fixed-length: no global heap in the file */
    b = slurp(k.path, &n);
    assert_null(memmem(b, n, "GCOL", 4));
    free(b);
    case_close(&k);
}

static void test_seal_detects_every_byte(void **state)
{
    (void)state;
    Case k;
    case_open(&k, 10, 10);
    char copy[1024];
    snprintf(copy, sizeof copy, "%s/copy.h5", k.dir);
    size_t n;
    unsigned char *b = slurp(k.path, &n);
    spill(copy, b, n);
    int checked = 0;
    /* every byte of the seal and of the first 1.5 KB of HDF5 metadata after it, and
     * every 97th byte of the rest (flipped in place, and back) */
    for (size_t off = 0; off < n; off += off < 2048 ? 1 : 97) {
        flip_byte(copy, (off_t)off);
        assert_int_equal(ckpt_verify(copy, NULL), MT_EX_DATAERR);
        assert_non_null(strstr(err_msg(), "damaged"));
        flip_byte(copy, (off_t)off);
        checked++;
    }
    assert_true(checked > 2048);
    /* appended bytes */
    unsigned char *b2 = xmalloc(n + 1);
    memcpy(b2, b, n);
    b2[n] = 0;
    spill(copy, b2, n + 1);
    assert_int_equal(ckpt_verify(copy, NULL), MT_EX_DATAERR);
    assert_non_null(strstr(err_msg(), "appended"));
    /* and the untouched copy verifies */
    spill(copy, b, n);
    assert_int_equal(ckpt_verify(copy, NULL), 0);
    free(b2);
    free(b);
    case_close(&k);
}

static void test_unsealed_still_read(void **state)
{
    (void)state;
    Case k;
    case_open(&k, 10, 20);
    char path[1024];
    const char *p20 = k.path;
    const Fix *f = &k.f;
    make_legacy(p20, p20, 0);
    assert_int_equal(ckpt_verify(p20, NULL), 0);
    float *p = xaligned(f->m.nparams * 4);
    float *st[2] = {xaligned(f->m.nparams * 4), xaligned(f->m.nparams * 4)};
    CkptMeta meta;
    assert_int_equal(ckpt_read(p20, &f->m, &f->oc, p, st, &meta), 0);
    assert_memory_equal(p, f->p, f->m.nparams * 4);
    assert_memory_equal(st[1], f->st[1], f->m.nparams * 4);
    assert_int_equal(meta.step, 20);
    assert_string_equal(meta.optimizer, "adamw");
    char *text;
    assert_int_equal(ckpt_read_config(p20, &text), 0);
    assert_string_equal(text, CONFIG_TEXT);
    free(text);
    assert_int_equal(ckpt_find_resume(k.dir, path, sizeof path), 0);
    assert_string_equal(path, p20);
    free(p);
    free(st[0]);
    free(st[1]);
    case_close(&k);
}

/* Run fn(arg) in a child with stderr in a file: its exit status, its stderr (malloc'd). */
static int in_child(void (*fn)(const void *), const void *arg, char **err, double *secs)
{
    char ep[256];
    snprintf(ep, sizeof ep, "/tmp/test_ckpt_seal.err.%d", (int)getpid());
    fflush(NULL);
    double t0 = now_s();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(ep, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 2);
        fn(arg);
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    *secs = now_s() - t0;
    size_t n;
    *err = (char *)slurp(ep, &n);
    (*err)[n] = 0;
    unlink(ep);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* ckpt_read_meta; on failure "error: MESSAGE" on stderr and its code as the exit status */
static void read_meta_of(const void *path)
{
    CkptMeta m;
    int rc = ckpt_read_meta(path, &m);
    if (rc) {
        fprintf(stderr, "error: %s\n", err_msg());
        fflush(stderr);
        _exit(rc);
    }
}

static void test_unsealed_hang_bounded(void **state)
{
    (void)state;
    Case k;
    case_open(&k, 10, 20);
    char path[1024], p10[1024];
    const char *p20 = k.path;
    ckpath(p10, sizeof p10, k.dir, 10);
    make_legacy(p20, p20, 1);
    /* verify: in a child process, ended by the bound; this process goes on */
    double t0 = now_s();
    assert_int_equal(ckpt_verify(p20, NULL), MT_EX_DATAERR);
    double dt = now_s() - t0;
    assert_non_null(strstr(err_msg(), p20));
    assert_non_null(strstr(err_msg(), "looping on damaged metadata"));
    assert_true(dt < 10);
    /* resume skips it (latest names it) and falls back to step 10 */
    Capture c;
    capture_begin(&c);
    int rc = ckpt_find_resume(k.dir, path, sizeof path);
    char *log = capture_end(&c);
    assert_int_equal(rc, 0);
    assert_string_equal(path, p10);
    assert_non_null(strstr(log, "skipping"));
    assert_non_null(strstr(log, p20));
    free(log);
    /* read in this process (info, eval): an unsealed file is verified in a child first,
     * which the bound ends: the read returns 65 with the watchdog's message and this
     * process never lets HDF5 parse the file */
    char *err;
    double secs;
    assert_int_equal(in_child(read_meta_of, p20, &err, &secs), MT_EX_DATAERR);
    assert_non_null(strstr(err, "error: reading "));
    assert_non_null(strstr(err, p20));
    assert_null(strstr(err, "HDF5-DIAG"));
    assert_null(strstr(err, "infinite loop"));
    assert_true(secs < 10);
    free(err);
    case_close(&k);
}

static void test_unsealed_random_damage(void **state)
{
    (void)state;
    Case k;
    case_open(&k, 10, 10);
    char leg[1024], copy[1024];
    snprintf(leg, sizeof leg, "%s/legacy.h5", k.dir);
    snprintf(copy, sizeof copy, "%s/copy.h5", k.dir);
    make_legacy(k.path, leg, 0);
    size_t n;
    unsigned char *b = slurp(leg, &n);
    unsigned char *d = xmalloc(n);
    uint64_t x = 12345; /* xorshift: the trials are the same on every run */
    int nok = 0, nbad = 0;
    for (int trial = 0; trial < 40; trial++) {
        memcpy(d, b, n);
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        int flips = 1 + (int)(x % 16);
        for (int k = 0; k < flips; k++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            d[(x >> 8) % MT_MIN(n, (size_t)16384)] ^= (unsigned char)(1 + (x % 255));
        }
        spill(copy, d, n);
        double t0 = now_s();
        int rc = ckpt_verify(copy, NULL);
        assert_true(now_s() - t0 < 15);
        assert_true(rc == 0 || rc == MT_EX_DATAERR);
        if (rc) assert_non_null(strstr(err_msg(), copy));
        rc ? nbad++ : nok++;
    }
    print_message("unsealed, 40 trials of 1-16 flipped bytes in the first 16 KB: %d refused, "
                  "%d still verify\n", nbad, nok);
    assert_true(nbad > 20);
    free(d);
    free(b);
    case_close(&k);
}

/* ---------------------------------------------------------------- io/h5_guard.c */

static int spin(void *arg)
{
    h5_read_lock("spin/file.h5", *(int *)arg);
    for (volatile uint64_t i = 0;; i++) {}
    return 0;
}

static int crash(void *arg)
{
    (void)arg;
    h5_read_lock("crash/file.h5", 0);
    raise(SIGSEGV);
    return 0;
}

static int fail66(void *arg)
{
    (void)arg;
    h5_read_lock("x", 0);
    h5_read_unlock();
    printf("from the child\n");
    return err_set(MT_EX_NOINPUT, "child says %d", 66);
}

static void spin_here(const void *arg)
{
    int intact = 0;
    (void)arg;
    spin(&intact);
}

static void test_guard(void **state)
{
    (void)state;
    char msg[1024];
    int stopped, intact = 0;
    assert_true(h5_read_bound_s() == 0.5);
    assert_int_equal(h5_isolated(spin, &intact, msg, sizeof msg, &stopped), MT_EX_DATAERR);
    assert_true(stopped);
    assert_non_null(strstr(msg, "reading spin/file.h5: an HDF5 call has been running"));
    intact = 1;
    assert_int_equal(h5_isolated(spin, &intact, msg, sizeof msg, &stopped), MT_EX_SOFTWARE);
    assert_non_null(strstr(msg, "integrity check"));
    assert_int_equal(h5_isolated(crash, NULL, msg, sizeof msg, &stopped), MT_EX_DATAERR);
    assert_true(stopped);
    assert_non_null(strstr(msg, "reading crash/file.h5: HDF5 crashed (SIGSEGV)"));
    assert_int_equal(h5_isolated(fail66, NULL, msg, sizeof msg, &stopped), MT_EX_NOINPUT);
    assert_false(stopped);
    assert_string_equal(msg, "child says 66");
    /* in this process: the watchdog ends it */
    char *err;
    double secs;
    assert_int_equal(in_child(spin_here, NULL, &err, &secs), MT_EX_DATAERR);
    assert_non_null(strstr(err, "error: reading spin/file.h5:"));
    assert_true(secs < 5);
    free(err);
    /* a short read lock is not disturbed */
    h5_read_lock("short", 0);
    h5_read_unlock();
}

int main(void)
{
    setenv("MPITRAIN_HDF5_TIMEOUT", BOUND_S, 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seal_layout),
        cmocka_unit_test(test_seal_detects_every_byte),
        cmocka_unit_test(test_unsealed_still_read),
        cmocka_unit_test(test_unsealed_hang_bounded),
        cmocka_unit_test(test_unsealed_random_damage),
        cmocka_unit_test(test_guard),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
