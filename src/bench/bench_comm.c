/* bench_comm.c — `mpitrain bench allreduce|p2p`: the deterministic allreduce against the
 * library's, next to the point-to-point bandwidth measured in the same run.
 *
 * Definitions (nccl-tests): algbw = bytes / time, busbw = algbw * 2(N-1)/N for an
 * allreduce; for point-to-point, busbw = algbw = bytes moved one way / time.  Time is
 * the slowest rank's, median over iterations. */
#include <limits.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "core/common.h"
#include "parallel/coll.h"
#include "parallel/comm.h"
#include "parallel/comm_mpi.h"

typedef struct {
    size_t min, max;
    int iters; /* 0: by size */
    const char *csv;
    const char *label;
    int mallopt_pass;
    CommConf conf;
} BenchArgs;

typedef enum {
    IMPL_DET,
    IMPL_FAST,
    IMPL_MPI,
    IMPL_FAST_RSAG,
    IMPL_DET_RS,
    IMPL_P2P_SENDRECV,
    IMPL_P2P_SEND,
    IMPL_MPI_MALLOPT,
} Impl;

static const char *IMPL_NAME[] = {"det", "fast_iallreduce", "mpi_allreduce", "fast_rs_ag",
                                  "det_rs", "p2p_sendrecv", "p2p_send", "mpi_allreduce_mallopt"};

static int parse_size(const char *s, size_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s) return -1;
    switch (*end) {
    case 'k': case 'K': v <<= 10; end++; break;
    case 'm': case 'M': v <<= 20; end++; break;
    case 'g': case 'G': v <<= 30; end++; break;
    default: break;
    }
    if (*end == 'B' || *end == 'b') end++;
    if (*end) return -1;
    *out = (size_t)v;
    return 0;
}

static void usage(void)
{
    log_info("usage: mpirun -np N mpitrain bench allreduce|p2p [--min 4K] [--max 256M] "
             "[--iters N] [--csv FILE] [--label TEXT] [--segment BYTES] [--window W] [--doubling-max BYTES] "
             "[--no-mallopt]");
}

static int parse_args(int argc, char **argv, BenchArgs *a)
{
    a->min = 4 << 10;
    a->max = 256 << 20;
    a->iters = 0;
    a->csv = NULL;
    a->label = NULL;
    a->mallopt_pass = 1;
    comm_conf_default(&a->conf);
    for (int i = 2; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        size_t sz;
        if (!strcmp(k, "--no-mallopt")) {
            a->mallopt_pass = 0;
            continue;
        }
        if (!v) return err_set(MT_EX_USAGE, "bench: %s needs a value", k);
        i++;
        if (!strcmp(k, "--min") && !parse_size(v, &sz)) a->min = sz;
        else if (!strcmp(k, "--max") && !parse_size(v, &sz)) a->max = sz;
        else if (!strcmp(k, "--segment") && !parse_size(v, &sz)) a->conf.segment_bytes = sz;
        else if (!strcmp(k, "--window")) a->conf.window = atoi(v);
        else if (!strcmp(k, "--doubling-max") && !parse_size(v, &sz)) a->conf.doubling_max_bytes = sz;
        else if (!strcmp(k, "--iters")) a->iters = atoi(v);
        else if (!strcmp(k, "--csv")) a->csv = v;
        else if (!strcmp(k, "--label")) a->label = v;
        else return err_set(MT_EX_USAGE, "bench: bad option or value: %s %s", k, v);
    }
    if (a->min < 4 || a->min > a->max || a->iters < 0)
        return err_set(MT_EX_USAGE, "bench: need 4 <= --min <= --max and --iters >= 0");
    return 0;
}

static int iters_for(const BenchArgs *a, size_t bytes)
{
    if (a->iters > 0) return a->iters;
    size_t it = ((size_t)1 << 30) / bytes; /* about 1 GB moved per impl and size */
    return (int)MT_MAX((size_t)5, MT_MIN((size_t)100, it));
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static void fill(float *buf, size_t n)
{
    for (size_t i = 0; i < n; i++) buf[i] = 1.0f + (float)(i & 7) * 0.125f;
}

/* One operation of `impl` on n floats. */
static void run_once(Comm *c, Impl impl, float *buf, float *rbuf, size_t n)
{
    MPI_Comm mc = comm_mpi_comm(c);
    int peer = c->rank ^ 1;
    switch (impl) {
    case IMPL_DET:
        CHECK(coll_allreduce(c, COMM_DET, COMM_F32, buf, 0, n) == 0);
        break;
    case IMPL_DET_RS:
        CHECK(coll_reduce_scatter(c, COMM_DET, COMM_F32, buf, 0, n) == 0);
        break;
    case IMPL_FAST:
        CHECK(coll_allreduce(c, COMM_FAST, COMM_F32, buf, 0, n) == 0);
        break;
    case IMPL_FAST_RSAG:
        CHECK(coll_reduce_scatter(c, COMM_FAST, COMM_F32, buf, 0, n) == 0);
        CHECK(coll_allgather(c, COMM_FAST, COMM_F32, buf, 0, n) == 0);
        break;
    case IMPL_MPI:
    case IMPL_MPI_MALLOPT:
        CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, mc));
        break;
    case IMPL_P2P_SENDRECV:
        if (peer < c->size)
            CHECK_MPI(MPI_Sendrecv(buf, (int)n, MPI_FLOAT, peer, 1, rbuf, (int)n, MPI_FLOAT, peer,
                                   1, mc, MPI_STATUS_IGNORE));
        break;
    case IMPL_P2P_SEND:
        if (peer < c->size) {
            if (c->rank % 2 == 0)
                CHECK_MPI(MPI_Send(buf, (int)n, MPI_FLOAT, peer, 2, mc));
            else
                CHECK_MPI(MPI_Recv(rbuf, (int)n, MPI_FLOAT, peer, 2, mc, MPI_STATUS_IGNORE));
        }
        break;
    }
}

typedef struct {
    double time_us, algbw, busbw;
} Result;

static Result result_of(const Comm *c, Impl impl, size_t bytes, double t)
{
    Result r;
    r.time_us = t * 1e6;
    r.algbw = (double)bytes / t / 1e9;
    int N = c->size;
    if (impl == IMPL_P2P_SENDRECV || impl == IMPL_P2P_SEND)
        r.busbw = r.algbw;
    else if (impl == IMPL_DET_RS)
        r.busbw = r.algbw * (N - 1) / N; /* reduce-scatter: (N-1)/N */
    else
        r.busbw = r.algbw * 2.0 * (N - 1) / N;
    return r;
}

/* Time `nimpl` implementations on `bytes`, interleaved (iteration i of every impl runs
 * before iteration i+1 of any), so that a machine whose load changes over time treats
 * them alike.  times: nimpl * iters scratch. */
static void measure(Comm *c, const BenchArgs *a, const Impl *impls, int nimpl, float *buf,
                    float *rbuf, size_t bytes, double *times, Result *out)
{
    size_t n = bytes / 4;
    int iters = iters_for(a, bytes);
    fill(buf, n);
    for (int k = 0; k < nimpl; k++) run_once(c, impls[k], buf, rbuf, n); /* warm-up */
    for (int i = 0; i < iters; i++)
        for (int k = 0; k < nimpl; k++) {
            if (i % 16 == 0 && k == 0) fill(buf, n); /* keep values finite and normal */
            comm_barrier(c);
            double t0 = now_s();
            run_once(c, impls[k], buf, rbuf, n);
            times[k * iters + i] = now_s() - t0;
        }
    CHECK_MPI(MPI_Allreduce(MPI_IN_PLACE, times, nimpl * iters, MPI_DOUBLE, MPI_MAX,
                            comm_mpi_comm(c)));
    for (int k = 0; k < nimpl; k++) {
        double *t = times + k * iters;
        qsort(t, (size_t)iters, sizeof *t, cmp_double);
        double med = iters % 2 ? t[iters / 2] : 0.5 * (t[iters / 2 - 1] + t[iters / 2]);
        out[k] = result_of(c, impls[k], bytes, med);
    }
}

static void csv_row(FILE *csv, const BenchArgs *a, const Comm *c, Impl impl, size_t bytes,
                    const Result *r)
{
    if (!csv) return;
    fprintf(csv, "%zu,%s%s%s%s,%d,%.2f,%.4f,%.4f\n", bytes, IMPL_NAME[impl], a->label ? "[" : "",
            a->label ? a->label : "", a->label ? "]" : "", c->size, r->time_us, r->algbw,
            r->busbw);
}

static void fmt_size(size_t b, char *s, size_t cap)
{
    if (b >= (1u << 20)) snprintf(s, cap, "%zuM", b >> 20);
    else if (b >= (1u << 10)) snprintf(s, cap, "%zuK", b >> 10);
    else snprintf(s, cap, "%zu", b);
}

int bench_comm_main(int argc, char **argv)
{
    BenchArgs a;
    if (argc < 2 || (strcmp(argv[1], "allreduce") && strcmp(argv[1], "p2p"))) {
        usage();
        return MT_EX_USAGE;
    }
    int rc = parse_args(argc, argv, &a);
    if (rc) {
        log_error("%s", err_msg());
        usage();
        return rc;
    }
    int p2p_only = !strcmp(argv[1], "p2p");
    Comm *c = NULL;
    rc = comm_create(&c, &a.conf);
    if (rc) {
        log_error("%s", err_msg());
        return rc;
    }
    size_t maxn = a.max / 4;
    if (maxn > INT_MAX) {
        log_error("bench: --max %zu is over the 8 GB a single MPI call can move here", a.max);
        comm_destroy(c);
        return MT_EX_USAGE;
    }
    float *buf = xaligned(maxn * 4), *rbuf = xaligned(maxn * 4);
    double *times = xmalloc(8 * (100 + (size_t)a.iters) * sizeof(double));
    FILE *csv = NULL;
    if (c->rank == 0 && a.csv) {
        csv = fopen(a.csv, "a");
        if (!csv) {
            log_error("bench: cannot open %s for appending", a.csv);
        } else {
            fseek(csv, 0, SEEK_END);
            if (ftell(csv) == 0) fprintf(csv, "size_bytes,impl,nranks,time_us,algbw_GBps,busbw_GBps\n");
        }
    }
    Impl impls_ar[] = {IMPL_P2P_SENDRECV, IMPL_DET, IMPL_FAST, IMPL_MPI, IMPL_FAST_RSAG, IMPL_DET_RS};
    Impl impls_p2p[] = {IMPL_P2P_SENDRECV, IMPL_P2P_SEND};
    Impl *impls = p2p_only ? impls_p2p : impls_ar;
    int nimpl = p2p_only ? 2 : (int)(sizeof impls_ar / sizeof *impls_ar);
    log_info("bench %s: %d ranks, segment %zu B, window %d%s%s; busbw GB/s (nccl-tests "
             "definitions), median of the slowest rank, impls interleaved", argv[1], c->size, a.conf.segment_bytes,
             a.conf.window, a.label ? ", " : "", a.label ? a.label : "");
    if (c->rank == 0) {
        printf("%8s", "size");
        for (int i = 0; i < nimpl; i++) printf(" %15s", IMPL_NAME[impls[i]]);
        if (!p2p_only) printf(" %9s %9s", "det/mpi", "det/p2p");
        printf("\n");
    }
    for (size_t bytes = a.min; bytes <= a.max; bytes *= 4) {
        Result res[8];
        measure(c, &a, impls, nimpl, buf, rbuf, bytes / 4 * 4, times, res);
        for (int i = 0; i < nimpl; i++) csv_row(csv, &a, c, impls[i], bytes, &res[i]);
        if (c->rank == 0) {
            char s[32];
            fmt_size(bytes, s, sizeof s);
            printf("%8s", s);
            for (int i = 0; i < nimpl; i++) printf(" %15.3f", res[i].busbw);
            if (!p2p_only) printf(" %9.2f %9.2f", res[1].busbw / res[3].busbw, res[1].busbw / res[0].busbw);
            printf("\n");
            fflush(stdout);
        }
        if (bytes > SIZE_MAX / 4) break;
    }
    if (!p2p_only && a.mallopt_pass) {
        /* What MPI_Allreduce loses to its temporary buffer per call: glibc serves large
         * requests with mmap and gives them back with munmap, so every call page-faults
         * its buffer in again.  With mmap off and trimming off, freed memory stays in the
         * heap and the next call reuses it (M_MMAP_THRESHOLD cannot go above 32 MiB). */
        int ok1 = mallopt(M_MMAP_MAX, 0);
        int ok2 = mallopt(M_TRIM_THRESHOLD, INT_MAX);
        log_info("mallopt pass: M_MMAP_MAX=0 %s, M_TRIM_THRESHOLD=INT_MAX %s",
                 ok1 ? "set" : "refused", ok2 ? "set" : "refused");
        if (c->rank == 0) printf("%8s %15s\n", "size", IMPL_NAME[IMPL_MPI_MALLOPT]);
        for (size_t bytes = a.min; bytes <= a.max; bytes *= 4) {
            Impl im = IMPL_MPI_MALLOPT;
            Result r;
            measure(c, &a, &im, 1, buf, rbuf, bytes / 4 * 4, times, &r);
            csv_row(csv, &a, c, im, bytes, &r);
            if (c->rank == 0) {
                char s[32];
                fmt_size(bytes, s, sizeof s);
                printf("%8s %15.3f\n", s, r.busbw);
                fflush(stdout);
            }
        }
    }
    if (csv) fclose(csv);
    free(times);
    free(buf);
    free(rbuf);
    comm_destroy(c);
    return 0;
}
