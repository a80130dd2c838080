/* bench_cmd.c — `mpitrain bench ...`: the benchmarks live in their own binary,
 * mpitrain-bench (the only one linked with OpenBLAS); run it from beside this one. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/common.h"

int cli_bench(int argc, char **argv)
{
    char self[PATH_MAX], path[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        log_error("bench: cannot find this program's own path (/proc/self/exe): %s",
                  strerror(errno));
        return MT_EX_SOFTWARE;
    }
    self[n] = 0;
    char *slash = strrchr(self, '/');
    if (slash) *slash = 0;
    snprintf(path, sizeof path, "%s/mpitrain-bench", self);
    argv[0] = path; /* argv[0] = "bench" becomes the benchmark binary; argv[argc] is NULL */
    (void)argc;
    execv(path, argv);
    log_error("bench: cannot run %s: %s (it is built by `make` beside mpitrain and installed "
              "by `make install`)", path, strerror(errno));
    return MT_EX_SOFTWARE;
}
