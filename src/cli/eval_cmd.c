/* eval_cmd.c — `mpitrain eval RUN_DIR|CHECKPOINT [--data DIR] [--threads T]`. */
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/common.h"
#include "train/train.h"

int cli_eval(int argc, char **argv)
{
    const char *target = NULL, *data = NULL;
    int threads = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--data") && i + 1 < argc) data = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (argv[i][0] == '-') {
            log_error("eval: unknown option %s (usage: mpitrain eval RUN_DIR|CHECKPOINT [--data DIR] [--threads T])", argv[i]);
            return MT_EX_USAGE;
        } else target = argv[i];
    }
    if (!target) {
        log_error("usage: mpitrain eval RUN_DIR|CHECKPOINT [--data DIR] [--threads T]");
        return MT_EX_USAGE;
    }
    return train_eval(target, data, threads);
}
