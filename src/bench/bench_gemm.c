/* bench_gemm.c — `mpitrain bench gemm`: the SGEMM rate of a model's training shapes, the
 * reference that training throughput is compared with (results/train-throughput.csv).
 *
 *   mpitrain bench gemm [--layers SPEC] [--in-dim N] [--batch B] [--micro-batches M]
 *                       [--threads T] [--seconds S]
 * For every dense layer (in -> out) and R rows: forward X·Wᵀ (R,in)x(in,out), dW = dYᵀ·X,
 * dX = dY·W (not for the first layer): 2·R·in·out FLOP each.  Three settings, all on T
 * cores, printed as CSV (setting,rows,threads,gflops):
 *   mpitrain   : T threads, each running mpitrain's gemm (gemm.h) on R = B/T rows, the
 *                products as the dense layer forms them (forward as W·Xᵀ)
 *   microbatch : T threads, each running 1-thread OpenBLAS sgemm on R = B/M rows
 *   openblas   : one caller, OpenBLAS with T threads on R = B rows (how PyTorch computes;
 *                the reference "single-process SGEMM rate of the same shapes") */
#include <cblas.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "core/common.h"
#include "core/gemm.h"
#include "core/model.h"

typedef struct {
    const Model *m;
    int rows;
    int own;        /* 1: gemm.h, 0: OpenBLAS */
    double seconds;
    double flop;    /* out: FLOP done */
    double elapsed; /* out */
} GemmJob;

static double model_gemm_flop(const Model *m, int rows)
{
    double f = 0;
    int first = 1;
    for (int l = 0; l < m->nlayers; l++) {
        const Layer *L = &m->layers[l];
        if (L->ops != &layer_dense_ops) continue;
        double one = 2.0 * rows * L->in * L->out;
        f += one * (first ? 2 : 3);
        first = 0;
    }
    return f;
}

static void run_gemms(const Model *m, int rows, int own, float **x, float **w, float **y, float **dw)
{
    int first = 1;
    for (int l = 0; l < m->nlayers; l++) {
        const Layer *L = &m->layers[l];
        if (L->ops != &layer_dense_ops) continue;
        if (own) {
            /* yᵀ (out, R) = W xᵀ; dW = dyᵀ x; dx = dy W (x doubles as xᵀ: same size) */
            gemm_f32(L->out, rows, L->in, w[l], L->in, 1, x[l], rows, y[l], rows, 0);
            gemm_f32(L->out, L->in, rows, y[l], 1, L->out, x[l], L->in, dw[l], L->in, 0);
            if (!first) gemm_f32(rows, L->in, L->out, y[l], L->out, 1, w[l], L->in, x[l], L->in, 0);
            first = 0;
            continue;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, L->out, L->in, 1.0f, x[l], L->in,
                    w[l], L->in, 0.0f, y[l], L->out);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, L->out, L->in, rows, 1.0f, y[l], L->out,
                    x[l], L->in, 0.0f, dw[l], L->in);
        if (!first)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, L->in, L->out, 1.0f, y[l],
                        L->out, w[l], L->in, 0.0f, x[l], L->in);
        first = 0;
    }
}

static void *gemm_thread(void *arg)
{
    GemmJob *j = arg;
    const Model *m = j->m;
    float **x = xcalloc(m->nlayers, sizeof(float *)), **w = xcalloc(m->nlayers, sizeof(float *));
    float **y = xcalloc(m->nlayers, sizeof(float *)), **dw = xcalloc(m->nlayers, sizeof(float *));
    for (int l = 0; l < m->nlayers; l++) {
        const Layer *L = &m->layers[l];
        if (L->ops != &layer_dense_ops) continue;
        x[l] = xaligned((size_t)j->rows * L->in * sizeof(float));
        y[l] = xaligned((size_t)j->rows * L->out * sizeof(float));
        w[l] = xaligned((size_t)L->in * L->out * sizeof(float));
        dw[l] = xaligned((size_t)L->in * L->out * sizeof(float));
        for (size_t i = 0; i < (size_t)L->in * L->out; i++) w[l][i] = 0.01f * (float)((i * 7) % 13);
        for (size_t i = 0; i < (size_t)j->rows * L->in; i++) x[l][i] = 0.1f * (float)((i * 3) % 11);
    }
    run_gemms(m, j->rows, j->own, x, w, y, dw); /* warm-up */
    double per = model_gemm_flop(m, j->rows);
    double t0 = now_s(), t;
    long it = 0;
    do {
        run_gemms(m, j->rows, j->own, x, w, y, dw);
        it++;
        t = now_s();
    } while (t - t0 < j->seconds);
    j->flop = per * it;
    j->elapsed = t - t0;
    for (int l = 0; l < m->nlayers; l++) {
        free(x[l]);
        free(y[l]);
        free(w[l]);
        free(dw[l]);
    }
    free(x);
    free(w);
    free(y);
    free(dw);
    return NULL;
}

int bench_gemm_main(int argc, char **argv)
{
    const char *spec = "dense:512 relu dense:512 relu dense:10";
    int in_dim = 784, B = 128, M = 4, T = 2;
    double secs = 2.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) { log_error("bench gemm: %s needs a value", a); return MT_EX_USAGE; }
        if (!strcmp(a, "--layers")) spec = v;
        else if (!strcmp(a, "--in-dim")) in_dim = atoi(v);
        else if (!strcmp(a, "--batch")) B = atoi(v);
        else if (!strcmp(a, "--micro-batches")) M = atoi(v);
        else if (!strcmp(a, "--threads")) T = atoi(v);
        else if (!strcmp(a, "--seconds")) secs = atof(v);
        else { log_error("bench gemm: unknown option %s", a); return MT_EX_USAGE; }
        i++;
    }
    if (in_dim < 1 || B < 1 || M < 1 || B % M || T < 1 || secs <= 0) {
        log_error("bench gemm: need --in-dim >= 1, --batch divisible by --micro-batches, --threads >= 1");
        return MT_EX_USAGE;
    }
    Model m;
    if (model_build(&m, spec, in_dim, 0)) { log_error("bench gemm: %s", err_msg()); return MT_EX_USAGE; }
    printf("setting,rows,threads,gflops\n");
    /* T threads x one-thread products: mpitrain's gemm on B/T rows each (the layer-wise
     * executor splits a step's rows' work across its threads), OpenBLAS on micro-batches */
    openblas_set_num_threads(1);
    GemmJob *jobs = xcalloc(T, sizeof(GemmJob));
    pthread_t *th = xcalloc(T, sizeof(pthread_t));
    for (int own = 1; own >= 0; own--) {
        int rows = own ? MT_MAX(1, B / T) : B / M;
        for (int t = 0; t < T; t++) {
            jobs[t] = (GemmJob){.m = &m, .rows = rows, .own = own, .seconds = secs};
            if (pthread_create(&th[t], NULL, gemm_thread, &jobs[t]) != 0) fatal(MT_EX_OSERR, "pthread_create");
        }
        double flop = 0, el = 0;
        for (int t = 0; t < T; t++) {
            pthread_join(th[t], NULL);
            flop += jobs[t].flop;
            el = MT_MAX(el, jobs[t].elapsed);
        }
        printf("%s,%d,%d,%.1f\n", own ? "mpitrain" : "microbatch", rows, T, flop / el * 1e-9);
    }
    /* PyTorch's way: one caller, OpenBLAS threads on the whole batch */
    openblas_set_num_threads(T);
    GemmJob one = {.m = &m, .rows = B, .seconds = secs};
    gemm_thread(&one);
    printf("openblas,%d,%d,%.1f\n", B, T, one.flop / one.elapsed * 1e-9);
    openblas_set_num_threads(1);
    free(jobs);
    free(th);
    model_free(&m);
    return 0;
}
