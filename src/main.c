/* main.c — the command line: parse the subcommand, dispatch (thin). */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"
#include "io/ckpt.h"
#include "io/config.h"
#include "io/dataset.h"
#include "parallel/comm.h"
#include "train/train.h"

static void usage(FILE *f)
{
    fprintf(f,
            "mpitrain %s — data-parallel training over MPI, bit-for-bit reproducible\n"
            "\n"
            "usage:\n"
            "  mpirun -np N mpitrain train JOB.ini [--set sec.key=value]... [--resume auto|none|PATH]\n"
            "  mpitrain eval RUN_DIR|CHECKPOINT [--data DIR] [--threads T]\n"
            "  mpitrain data import --format idx --images F --labels F --shards K --out DIR\n"
            "  mpitrain data import --format csv --csv F --shards K --out DIR\n"
            "  mpitrain data info DIR | data verify DIR\n"
            "  mpitrain ckpt info PATH | ckpt verify PATH...\n"
            "  mpirun -np N mpitrain bench allreduce [--min 4K --max 256M --csv FILE] | bench p2p\n"
            "  mpitrain bench ckpt [--dir D]\n"
            "  mpitrain bench gemm [--layers SPEC --in-dim N --batch B --micro-batches M --threads T]\n"
            "  mpitrain help config [--markdown]  every configuration key: type, default, bounds, help\n"
            "  mpitrain version\n"
            "\n"
            "exit codes: 0 done, 64 usage, 65 bad data, 66 missing input, 70 internal/diverged,\n"
            "71 out of memory, 73 cannot create, 74 I/O error, 75 stopped by a signal after a\n"
            "clean checkpoint (requeue with --resume auto), 78 bad configuration\n",
            MPITRAIN_VERSION);
}

/* OpenBLAS is only the reference of `mpitrain bench gemm` (training uses gemm.h).
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

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "bench") && !strcmp(argv[2], "gemm")) blas_pick_kernels(argv);
    if (argc < 2) {
        usage(stderr);
        return MT_EX_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "train")) return train_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return eval_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "data")) return dataset_cli_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "ckpt")) return ckpt_cli_main(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) {
        if (argc >= 3 && !strcmp(argv[2], "ckpt")) return bench_ckpt_main(argc - 2, argv + 2);
        if (argc >= 3 && !strcmp(argv[2], "gemm")) return bench_gemm_main(argc - 2, argv + 2);
        return bench_comm_main(argc - 1, argv + 1);
    }
    if (!strcmp(cmd, "help")) {
        if (argc >= 3 && !strcmp(argv[2], "config")) {
            if (argc >= 4 && !strcmp(argv[3], "--markdown")) config_print_markdown(stdout);
            else config_print_help(stdout);
            return 0;
        }
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "version") || !strcmp(cmd, "--version")) {
        printf("mpitrain %s\n", MPITRAIN_VERSION);
        return 0;
    }
    fprintf(stderr, "mpitrain: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return MT_EX_USAGE;
}
