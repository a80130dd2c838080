/* gen_seeds.c — writes the seed corpora of the fuzz harnesses with the project's own
 * writers: `gen_seeds OUT` (OUT = tests/fuzz; `make fuzz-seeds` runs it, then
 * gen_seeds_h5py.py adds the h5py-written variants).  Files written:
 *   OUT/import_idx/seed-*     IDX images + labels in the fuzz_import_idx layout
 *   OUT/import_csv/seed-*.csv CSV files
 *   OUT/dataset/seed-*        index.h5 + shard in the fuzz_dataset layout, made by
 *                             dataset_import_idx / dataset_import_csv
 *   OUT/ckpt/seed-*.h5        checkpoints of FUZZ_CKPT_SPEC by ckpt_write (sgd with
 *                             momentum, adamw)
 * Small on purpose (a few KB each): the corpus stays far below 2 MB.  The config seeds
 * (OUT/config/) are plain job files, kept by hand.  Exit 0, or 1 with a message. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/common.h"
#include "fuzz_seeds.h"
#include "io/ckpt.h"
#include "io/dataset.h"

static char g_tmp[512];

static void die(const char *what)
{
    fprintf(stderr, "gen_seeds: %s: %s (%s)\n", what, err_msg(), strerror(errno));
    exit(1);
}

static void *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) die(path);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    void *b = xmalloc((size_t)len + 1);
    if (fread(b, 1, (size_t)len, f) != (size_t)len) die(path);
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* Write the parts one after the other into out/name. */
static void put(const char *out, const char *name, int nparts, const void *const *parts,
                const size_t *lens)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", out, name);
    FILE *f = fopen(path, "wb");
    if (!f) die(path);
    for (int i = 0; i < nparts; i++)
        if (lens[i] && fwrite(parts[i], 1, lens[i], f) != lens[i]) die(path);
    if (fclose(f) != 0) die(path);
}

static const char *T(const char *name)
{
    static char buf[4][640];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_tmp, name);
    return buf[k];
}

/* An IDX file: magic 00 00 08 ndim, big-endian dims, then bytes. */
static size_t idx_bytes(uint8_t *buf, int ndim, const uint32_t *dims, const uint8_t *v,
                        size_t n)
{
    size_t k = 0;
    buf[k++] = 0, buf[k++] = 0, buf[k++] = 8, buf[k++] = (uint8_t)ndim;
    for (int i = 0; i < ndim; i++)
        for (int b = 3; b >= 0; b--) buf[k++] = (uint8_t)(dims[i] >> (8 * b));
    memcpy(buf + k, v, n);
    return k + n;
}

static void gzip_file(const char *path, const void *data, size_t n)
{
    gzFile g = gzopen(path, "wb9");
    if (!g || gzwrite(g, data, (unsigned)n) != (int)n || gzclose(g) != Z_OK) die(path);
}

/* import_idx seeds and an IDX dataset (6 samples of 4x4 uint8, 3 classes). */
static void idx_seeds(const char *out)
{
    enum { N = 6, H = 4, W = 4 };
    uint8_t px[N * H * W], lb[N], img[16 + sizeof px], lab[8 + N];
    for (int i = 0; i < N * H * W; i++) px[i] = (uint8_t)(i * 37 % 256);
    for (int i = 0; i < N; i++) lb[i] = (uint8_t)(i % 3);
    uint32_t di[3] = {N, H, W}, dl[1] = {N};
    size_t ni = idx_bytes(img, 3, di, px, sizeof px), nl = idx_bytes(lab, 1, dl, lb, N);

    char dir[600];
    snprintf(dir, sizeof dir, "%s/import_idx", out);
    mkdir(dir, 0777);
    uint8_t hdr[4] = {1, 0, (uint8_t)ni, (uint8_t)(ni >> 8)}; /* 2 shards, classes auto */
    const void *parts[3] = {hdr, img, lab};
    size_t lens[3] = {4, ni, nl};
    put(dir, "seed-plain", 3, parts, lens);
    /* gzip'd, as MNIST ships: read back from files zlib wrote */
    gzip_file(T("img.gz"), img, ni);
    gzip_file(T("lab.gz"), lab, nl);
    size_t gi, gl;
    void *zi = slurp(T("img.gz"), &gi), *zl = slurp(T("lab.gz"), &gl);
    uint8_t hdr2[4] = {0, 5, (uint8_t)gi, (uint8_t)(gi >> 8)}; /* 1 shard, 5 classes */
    const void *zparts[3] = {hdr2, zi, zl};
    size_t zlens[3] = {4, gi, gl};
    put(dir, "seed-gzip", 3, zparts, zlens);
    free(zi);
    free(zl);

    /* the dataset seed: this input imported into one shard */
    FILE *f = fopen(T("img.idx"), "wb");
    if (!f || fwrite(img, 1, ni, f) != ni || fclose(f)) die("img.idx");
    f = fopen(T("lab.idx"), "wb");
    if (!f || fwrite(lab, 1, nl, f) != nl || fclose(f)) die("lab.idx");
    ImportConf c = {.out_dir = T("ds-idx"), .shards = 1};
    if (dataset_import_idx(T("img.idx"), T("lab.idx"), &c) != 0) die("dataset_import_idx");
}

static const char CSV_HEADER[] = "label,a,b,c\n0,0.5,-1.25,3\n1,1e-3,2,0\n2,7,8,9\n1,-0,0.25,1e5\n";
static const char CSV_PLAIN[] = "3,1,2\r\n0,4,5\r\n\r\n2,-6.5,7\r\n";

static void csv_seeds(const char *out)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/import_csv", out);
    mkdir(dir, 0777);
    const void *p1[1] = {CSV_HEADER}, *p2[1] = {CSV_PLAIN};
    size_t l1[1] = {sizeof CSV_HEADER - 1}, l2[1] = {sizeof CSV_PLAIN - 1};
    put(dir, "seed-header.csv", 1, p1, l1);
    put(dir, "seed-crlf.csv", 1, p2, l2);
    FILE *f = fopen(T("in.csv"), "wb");
    if (!f || fwrite(CSV_HEADER, 1, l1[0], f) != l1[0] || fclose(f)) die("in.csv");
    ImportConf c = {.out_dir = T("ds-csv"), .shards = 1};
    if (dataset_import_csv(T("in.csv"), &c) != 0) die("dataset_import_csv");
}

/* A dataset directory as one fuzz_dataset input: flags, length of index.h5, index, shard. */
static void dataset_seed(const char *out, const char *name, const char *ds, int flags)
{
    char dir[600], a[700], b[700];
    snprintf(dir, sizeof dir, "%s/dataset", out);
    mkdir(dir, 0777);
    snprintf(a, sizeof a, "%s/index.h5", ds);
    snprintf(b, sizeof b, "%s/shard-00000.h5", ds);
    size_t na, nb;
    void *ia = slurp(a, &na), *ib = slurp(b, &nb);
    uint8_t hdr[5] = {(uint8_t)flags, (uint8_t)na, (uint8_t)(na >> 8), (uint8_t)(na >> 16),
                      (uint8_t)(na >> 24)};
    const void *parts[3] = {hdr, ia, ib};
    size_t lens[3] = {5, na, nb};
    put(dir, name, 3, parts, lens);
    free(ia);
    free(ib);
}

static void ckpt_seed(const char *out, const char *name, OptimKind kind)
{
    Model m;
    if (model_build(&m, FUZZ_CKPT_SPEC, FUZZ_CKPT_IN, 0) != 0) die("model_build");
    OptimConf oc = {.kind = kind, .momentum = kind == OPTIM_SGD ? 0.9f : 0.0f, .beta1 = 0.9f,
                    .beta2 = 0.999f, .eps = 1e-8f};
    int ns = optim_nstates(&oc);
    float *p = xaligned(m.nparams * sizeof(float)), *st[2] = {NULL, NULL};
    model_init_params(&m, p, INIT_HE, 7);
    for (int i = 0; i < ns; i++) {
        st[i] = xaligned(m.nparams * sizeof(float));
        for (size_t j = 0; j < m.nparams; j++) st[i][j] = p[j] * 0.5f;
    }
    CkptState s = {.step = 1, .epoch = 0, .pos_in_epoch = 64, .seed = 7, .world_size = 1,
                   .mode = "allreduce/deterministic", .config_text =
                   "[model]\nlayers = " FUZZ_CKPT_SPEC "\n[train]\nseed = 7\n", .model = &m,
                   .optim = &oc, .params = p, .states = (const float *const *)st,
                   .nstates = ns};
    char path[700];
    if (ckpt_write(T(name), &s, 0, path, sizeof path) != 0) die("ckpt_write");
    size_t n;
    void *b = slurp(path, &n);
    char dir[600], file[64];
    snprintf(dir, sizeof dir, "%s/ckpt", out);
    mkdir(dir, 0777);
    snprintf(file, sizeof file, "seed-%s.h5", name);
    const void *parts[1] = {b};
    put(dir, file, 1, parts, &n);
    free(b);
    free(p);
    for (int i = 0; i < ns; i++) free(st[i]);
    model_free(&m);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_seeds OUT_DIR (tests/fuzz)\n");
        return 2;
    }
    const char *t = getenv("TMPDIR");
    snprintf(g_tmp, sizeof g_tmp, "%s/gen_seeds.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(g_tmp)) die("mkdtemp");
    idx_seeds(argv[1]);
    csv_seeds(argv[1]);
    dataset_seed(argv[1], "seed-idx-cached", T("ds-idx"), 1);
    dataset_seed(argv[1], "seed-csv", T("ds-csv"), 0);
    ckpt_seed(argv[1], "sgd", OPTIM_SGD);
    ckpt_seed(argv[1], "adamw", OPTIM_ADAMW);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    return system(cmd) == 0 ? 0 : 1;
}
