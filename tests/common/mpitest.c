/* mpitest.c — see mpitest.h */
#include "common/mpitest.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"

static int g_rank, g_size = 1;
static char g_name[128] = "mpitest";

void mpitest_init(int *argc, char ***argv)
{
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "mpitest: MPI_Init_thread failed\n");
        exit(1);
    }
    if (provided < MPI_THREAD_FUNNELED) {
        fprintf(stderr, "mpitest: MPI gives thread level %d < MPI_THREAD_FUNNELED\n", provided);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    if (argv && *argv && (*argv)[0]) {
        const char *slash = strrchr((*argv)[0], '/');
        snprintf(g_name, sizeof g_name, "%s", slash ? slash + 1 : (*argv)[0]);
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    log_set_rank(g_rank, g_size);
    if (g_rank > 0 && !freopen("/dev/null", "w", stdout)) {
        fprintf(stderr, "mpitest: rank %d cannot silence stdout\n", g_rank);
    }
}

int mpitest_rank(void) { return g_rank; }
int mpitest_size(void) { return g_size; }

int mpitest_all(int ok)
{
    int v = ok ? 1 : 0;
    MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    return v;
}

int mpitest_run(const char *name, const struct CMUnitTest *tests, size_t n)
{
    int nfail = 0;
    if (!name) name = g_name;
    int *flags = calloc((size_t)g_size, sizeof(int));
    if (g_rank == 0) printf("mpitest: %s: %zu tests on %d ranks\n", name, n, g_size);
    for (size_t i = 0; i < n; i++) {
        int failed = _cmocka_run_group_tests(tests[i].name, &tests[i], 1, NULL, NULL) != 0;
        fflush(stdout);
        fflush(stderr);
        MPI_Gather(&failed, 1, MPI_INT, flags, 1, MPI_INT, 0, MPI_COMM_WORLD);
        int any = 0;
        if (g_rank == 0) {
            char ranks[512] = "";
            size_t len = 0;
            for (int r = 0; r < g_size; r++)
                if (flags[r]) {
                    any = 1;
                    len += (size_t)snprintf(ranks + len, len < sizeof ranks ? sizeof ranks - len : 0,
                                            " %d", r);
                }
            if (any) {
                printf("mpitest: FAIL %s (ranks%s)\n", tests[i].name, ranks);
                fprintf(stderr, "mpitest: FAIL %s (ranks%s)\n", tests[i].name, ranks);
            }
        }
        MPI_Bcast(&any, 1, MPI_INT, 0, MPI_COMM_WORLD);
        nfail += any;
    }
    if (g_rank == 0) {
        printf("mpitest: %s: %zu tests, %d failed on some rank (np=%d)\n", name, n, nfail, g_size);
        fflush(stdout);
    }
    free(flags);
    MPI_Finalize();
    return nfail ? 1 : 0;
}
