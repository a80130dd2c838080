/* main.c — the command line: parse the subcommand, dispatch (thin). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/common.h"
#include "io/config.h"

static void usage(FILE *f)
{
    fprintf(f,
            "mpitrain %s — data-parallel training over MPI, bit-for-bit reproducible\n"
            "\n"
            "usage:\n"
            "  mpirun -np N mpitrain train JOB.ini [--set sec.key=value]... [--resume auto|none|PATH]\n"
            "  mpitrain check JOB.ini [--set sec.key=value]... [--ranks N]  validate, do not train\n"
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

/* The end of `data` and `ckpt`: a command that found a file damaged (65) ends without
 * HDF5's clean-up at exit.  HDF5 reading damaged metadata of a file nobody checked (a
 * dataset written by h5py) can damage its own heap blocks without any call failing at
 * once; the clean-up then walks them and crashes (SIGSEGV, or glibc's abort) after the
 * command has reported the file (found by tests/fuzz/guarded.sh).  Every file is closed
 * by then.  Other codes return normally. */
static int end_file_command(int rc)
{
    if (rc != MT_EX_DATAERR) return rc;
    fflush(NULL);
    _exit(rc);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return MT_EX_USAGE;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "train")) return cli_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "check")) return cli_check(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cli_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "data")) return end_file_command(dataset_cli_main(argc - 1, argv + 1));
    if (!strcmp(cmd, "ckpt")) return end_file_command(ckpt_cli_main(argc - 1, argv + 1));
    if (!strcmp(cmd, "bench")) return cli_bench(argc - 1, argv + 1);
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
