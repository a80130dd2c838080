/* main.c of mpitrain-bench — dispatch `mpitrain-bench allreduce|p2p|ckpt|gemm ...`
 * (what `mpitrain bench ...` runs). */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/bench.h"
#include "core/common.h"

/* OpenBLAS is only the reference of `bench gemm` (training uses core/gemm.h).
 * OpenBLAS 0.3.21 does not recognise some current CPU models (virtualised Xeons report a
 * model it lacks) and falls back to its generic "Prescott" SSE3 kernels, 3-7x slower.
 * When OPENBLAS_CORETYPE is unset and the library chose Prescott, re-execute with the
 * kernels the CPU supports: SkylakeX (AVX-512) on an Intel CPU with AVX-512 F/BW/DQ/VL,
 * else Haswell (AVX2 + FMA; the setting these machines' environment uses).
 * MPITRAIN_BLAS_CORETYPE=keep disables this.  Must run before MPI is initialised: the
 * process is replaced, pid and environment kept. */
static void blas_pick_kernels(char **argv)
{
    const char *keep = getenv("MPITRAIN_BLAS_CORETYPE");
    if (getenv("OPENBLAS_CORETYPE") || (keep && !strcmp(keep, "keep"))) return;
    const char *core = openblas_get_corename();
    if (!core || strcasecmp(core, "prescott") != 0) return;
    const char *pick = NULL;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    if (__builtin_cpu_is("intel") && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512vl"))
        pick = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        pick = "Haswell";
#endif
    if (!pick) return;
    setenv("OPENBLAS_CORETYPE", pick, 1);
    setenv("MPITRAIN_BLAS_CORETYPE", "auto", 1);
    execv("/proc/self/exe", argv);
    /* exec failed: go on with the slow kernels */
}

static const char USAGE[] =
    "usage: mpitrain bench allreduce|p2p [--min 4K --max 256M --csv FILE]  (under mpirun)\n"
    "       mpitrain bench ckpt [--dir D]\n"
    "       mpitrain bench gemm [--layers SPEC --in-dim N --batch B --micro-batches M --threads T]\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs(USAGE, stderr);
        return MT_EX_USAGE;
    }
    const char *what = argv[1];
    if (!strcmp(what, "gemm")) {
        blas_pick_kernels(argv);
        return bench_gemm_main(argc - 1, argv + 1);
    }
    if (!strcmp(what, "ckpt")) return bench_ckpt_main(argc - 1, argv + 1);
    if (!strcmp(what, "allreduce") || !strcmp(what, "p2p")) return bench_comm_main(argc, argv);
    if (!strcmp(what, "-h") || !strcmp(what, "--help")) {
        fputs(USAGE, stdout);
        return 0;
    }
    fprintf(stderr, "mpitrain bench: unknown benchmark '%s'\n%s", what, USAGE);
    return MT_EX_USAGE;
}
