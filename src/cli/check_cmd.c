/* check_cmd.c — `mpitrain check JOB.ini [--set sec.key=value]... [--ranks N]`: the
 * pre-flight of a job (train_check), e.g. before submitting it to a batch queue. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/common.h"
#include "train/train.h"

#define USAGE "usage: mpitrain check JOB.ini [--set sec.key=value]... [--ranks N]"

/* N of --ranks: 1..65536 (what `mpirun -np N` will be). */
static int parse_ranks(const char *v, int *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (!*v || *end || errno || n < 1 || n > 65536)
        return err_set(MT_EX_USAGE, "check: --ranks %s: expected the number of ranks, 1 to 65536",
                       v);
    *out = (int)n;
    return 0;
}

int cli_check(int argc, char **argv)
{
    const char *sets[CLI_MAX_SETS];
    TrainOptions o = {.resume = "none", .sets = sets};
    int st = 0, ranks = 1;
    for (int i = 1; i < argc && !st; i++) {
        const char *s = argv[i];
        if (cli_set_arg(argc, argv, &i, &o, sets, &st)) continue;
        if (!strcmp(s, "--ranks")) {
            if (i + 1 >= argc) st = err_set(MT_EX_USAGE, "--ranks needs a number");
            else st = parse_ranks(argv[++i], &ranks);
        } else if (!strncmp(s, "--ranks=", 8)) {
            st = parse_ranks(s + 8, &ranks);
        } else if (s[0] == '-') {
            st = err_set(MT_EX_USAGE, "check: unknown option '%s' (%s)", s, USAGE);
        } else if (!o.job) {
            o.job = s;
        } else {
            st = err_set(MT_EX_USAGE, "check: more than one job file ('%s' and '%s')", o.job, s);
        }
    }
    if (!st && !o.job) st = err_set(MT_EX_USAGE, USAGE);
    if (st) {
        log_error("%s", err_msg());
        return st;
    }
    return train_check(&o, ranks, stdout);
}
