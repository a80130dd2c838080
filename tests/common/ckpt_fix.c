/* ckpt_fix.c — see ckpt_fix.h */
#include "common/ckpt_fix.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/common.h"
#include "core/rng.h"
#include "io/h5.h"

/* Fill the real parameter ranges of a slab (padding stays zero) from rng stream k. */

void fill_slab(const Model *m, float *slab, uint64_t k)
{
    memset(slab, 0, m->nparams * sizeof(float));
    for (int l = 0; l < m->nlayers; l++)
        for (int q = 0; q < m->layers[l].nparams; q++) {
            const ParamDesc *pd = &m->layers[l].params[q];
            for (size_t i = 0; i < pd->count; i++)
                slab[pd->off + i] = rng_normal(rng_key(k, RNG_TEST, 0), pd->off + i);
        }
}

void fix_init(Fix *f, const char *spec, int in_dim, OptimKind kind, uint64_t salt)
{
    memset(f, 0, sizeof *f);
    assert_int_equal(model_build(&f->m, spec, in_dim, 0), 0);
    f->oc.kind = kind;
    f->oc.momentum = kind == OPTIM_SGD ? 0.9f : 0.0f;
    f->oc.beta1 = 0.9f;
    f->oc.beta2 = 0.999f;
    f->oc.eps = 1e-8f;
    f->ns = optim_nstates(&f->oc);
    f->p = xaligned(f->m.nparams * sizeof(float));
    fill_slab(&f->m, f->p, 100 + salt);
    for (int i = 0; i < f->ns; i++) {
        f->st[i] = xaligned(f->m.nparams * sizeof(float));
        fill_slab(&f->m, f->st[i], 200 + salt + i);
    }
}

void fix_free(Fix *f)
{
    free(f->p);
    for (int i = 0; i < f->ns; i++) free(f->st[i]);
    model_free(&f->m);
}

CkptState fix_state(const Fix *f, uint64_t step)
{
    CkptState s = {.step = step, .epoch = step / 10, .pos_in_epoch = (step % 10) * 64,
                   .seed = 7, .world_size = 4, .mode = "allreduce/deterministic/zero1",
                   .config_text = CONFIG_TEXT, .model = &f->m, .optim = &f->oc,
                   .params = f->p, .states = (const float *const *)f->st, .nstates = f->ns};
    return s;
}

void write_steps(const char *dir, const Fix *f, uint64_t first, uint64_t last, uint64_t by)
{
    char path[1024];
    for (uint64_t step = first; step <= last; step += by) {
        CkptState s = fix_state(f, step);
        assert_int_equal(ckpt_write(dir, &s, 0, path, sizeof path), 0);
    }
}

void case_open(Case *c, uint64_t first, uint64_t last)
{
    c->dir = make_tmpdir();
    fix_init(&c->f, SPEC, IN_DIM, OPTIM_ADAMW, 0);
    write_steps(c->dir, &c->f, first, last, 10);
    ckpath(c->path, sizeof c->path, c->dir, last);
}

void case_close(Case *c)
{
    fix_free(&c->f);
    rm_tree(c->dir);
}

static int rm_cb(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

char *make_tmpdir(void)
{
    const char *t = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof tmpl, "%s/test_ckpt.XXXXXX", t && *t ? t : "/tmp");
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return xstrdup(d);
}

void rm_tree(char *d)
{
    nftw(d, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(d);
}

void ckpath(char *out, size_t n, const char *dir, uint64_t step)
{
    int k = snprintf(out, n, "%s/step-%08llu.h5", dir, (unsigned long long)step);
    assert_true(k > 0 && (size_t)k < n);
}

void copy_file(const char *src, const char *dst)
{
    FILE *a = fopen(src, "rb"), *b = fopen(dst, "wb");
    assert_non_null(a);
    assert_non_null(b);
    char buf[65536];
    size_t k;
    while ((k = fread(buf, 1, sizeof buf, a)) > 0) assert_int_equal(fwrite(buf, 1, k, b), k);
    fclose(a);
    fclose(b);
}

off_t file_size(const char *p)
{
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    return st.st_size;
}

/* File offset of a contiguous dataset's raw data. */
haddr_t data_offset(const char *file, const char *dset)
{
    h5_lock();
    hid_t f = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t d = H5Dopen2(f, dset, H5P_DEFAULT);
    assert_true(d >= 0);
    haddr_t off = H5Dget_offset(d);
    H5Dclose(d);
    H5Fclose(f);
    h5_unlock();
    assert_true(off != HADDR_UNDEF);
    return off;
}

void flip_byte(const char *file, off_t off)
{
    int fd = open(file, O_RDWR);
    assert_true(fd >= 0);
    unsigned char c;
    assert_int_equal(pread(fd, &c, 1, off), 1);
    c ^= 0x40;
    assert_int_equal(pwrite(fd, &c, 1, off), 1);
    close(fd);
}


void capture_begin(Capture *c)
{
    snprintf(c->path, sizeof c->path, "/tmp/test_ckpt_stderr.%d", (int)getpid());
    fflush(stderr);
    c->saved = dup(2);
    int fd = open(c->path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    dup2(fd, 2);
    close(fd);
}

char *capture_end(Capture *c)
{
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    FILE *f = fopen(c->path, "r");
    char *buf = xcalloc(65536, 1);
    size_t k = fread(buf, 1, 65535, f);
    buf[k] = 0;
    fclose(f);
    unlink(c->path);
    return buf;
}

/* ckpt_verify's report for `path` (malloc'd), checking the status. */
char *verify_report(const char *path, int want)
{
    FILE *r = tmpfile();
    assert_non_null(r);
    assert_int_equal(ckpt_verify(path, r), want);
    fflush(r);
    long n = ftell(r);
    char *buf = xcalloc((size_t)n + 1, 1);
    rewind(r);
    assert_int_equal(fread(buf, 1, (size_t)n, r), (size_t)n);
    fclose(r);
    return buf;
}

