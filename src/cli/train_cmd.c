/* train_cmd.c — `mpitrain train JOB.ini [--set sec.key=value]... [--resume auto|none|PATH]`,
 * and the --set option it shares with `check`. */
#include <string.h>

#include "cli/cli.h"
#include "core/common.h"
#include "train/train.h"

int cli_set_arg(int argc, char **argv, int *i, TrainOptions *o, const char **sets, int *st)
{
    const char *s = argv[*i], *set = NULL;
    if (!strcmp(s, "--set") || !strcmp(s, "-s")) {
        if (*i + 1 >= argc) {
            *st = err_set(MT_EX_USAGE, "--set needs sec.key=value");
            return 1;
        }
        set = argv[++*i];
    } else if (!strncmp(s, "--set=", 6)) {
        set = s + 6;
    } else {
        return 0;
    }
    if (o->nsets == CLI_MAX_SETS)
        *st = err_set(MT_EX_USAGE, "too many --set options (%d at most)", CLI_MAX_SETS);
    else
        sets[o->nsets++] = set;
    o->sets = sets;
    return 1;
}

int cli_train(int argc, char **argv)
{
    const char *sets[CLI_MAX_SETS];
    TrainOptions o = {.resume = "none", .sets = sets};
    int st = 0;
    for (int i = 1; i < argc && !st; i++) {
        const char *s = argv[i];
        if (cli_set_arg(argc, argv, &i, &o, sets, &st)) continue;
        if (!strcmp(s, "--resume")) {
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
    }
    if (!st && !o.job)
        st = err_set(MT_EX_USAGE, "usage: mpitrain train JOB.ini [--set sec.key=value]... [--resume auto|none|PATH]");
    if (st) {
        log_error("%s", err_msg());
        return st;
    }
    return train_run(&o);
}
