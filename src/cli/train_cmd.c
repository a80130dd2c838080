/* train_cmd.c — `mpitrain train JOB.ini [--set sec.key=value]... [--resume auto|none|PATH]`. */
#include <string.h>

#include "cli/cli.h"
#include "core/common.h"
#include "train/train.h"

#define MAX_SETS 64

int cli_train(int argc, char **argv)
{
    const char *sets[MAX_SETS];
    TrainOptions o = {.resume = "none", .sets = sets};
    int st = 0;
    for (int i = 1; i < argc && !st; i++) {
        const char *s = argv[i];
        const char *set = NULL;
        if (!strcmp(s, "--set") || !strcmp(s, "-s")) {
            if (i + 1 >= argc) st = err_set(MT_EX_USAGE, "--set needs sec.key=value");
            else set = argv[++i];
        } else if (!strncmp(s, "--set=", 6)) {
            set = s + 6;
        } else if (!strcmp(s, "--resume")) {
            if (i + 1 >= argc) st = err_set(MT_EX_USAGE, "--resume needs auto, none or a checkpoint path");
            else o.resume = argv[++i];
        } else if (!strncmp(s, "--resume=", 9)) {
            o.resume = s + 9;
        } else if (s[0] == '-') {
            st = err_set(MT_EX_USAGE, "train: unknown option '%s' (options: --set sec.key=value, --resume auto|none|PATH)", s);
        } else if (!o.job) {
            o.job = s;
        } else {
            st = err_set(MT_EX_USAGE, "train: more than one job file ('%s' and '%s')", o.job, s);
        }
        if (set) {
            if (o.nsets == MAX_SETS) st = err_set(MT_EX_USAGE, "too many --set options (64 at most)");
            else sets[o.nsets++] = set;
        }
    }
    if (!st && !o.job)
        st = err_set(MT_EX_USAGE, "usage: mpitrain train JOB.ini [--set sec.key=value]... [--resume auto|none|PATH]");
    if (st) {
        log_error("%s", err_msg());
        return st;
    }
    return train_run(&o);
}
