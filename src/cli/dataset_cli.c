/* dataset_cli.c — `mpitrain data import | info | verify` (cli.h). */
#include "io/dataset.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "core/common.h"

static const char USAGE[] =
    "usage: mpitrain data import --format idx --images FILE --labels FILE --out DIR [options]\n"
    "       mpitrain data import --format csv --csv FILE --out DIR [options]\n"
    "       mpitrain data info DIR      what index.h5 says (samples, shape, dtype, shards)\n"
    "       mpitrain data verify DIR    read every shard and check it (exit 65 on a problem)\n"
    "import options:\n"
    "  --format idx|csv   input format (default: from --images or --csv)\n"
    "  --images FILE      IDX images (MNIST/Fashion-MNIST ubyte, gzip'd or not)\n"
    "  --labels FILE      IDX labels\n"
    "  --csv FILE         CSV, one sample a line: label,feature,...  (header line optional)\n"
    "  --out DIR          output directory: new, empty, or a previous dataset (replaced)\n"
    "  --shards K         number of shard files (default 1)\n"
    "  --classes N        number of classes (default: max label + 1, or --stats-from's)\n"
    "  --stats-from DIR   copy normalisation (and classes) from this dataset, e.g. use the\n"
    "                     train split's when importing the test split\n";

static int usage_error(const char *fmt, const char *arg)
{
    char msg[512];
    snprintf(msg, sizeof msg, fmt, arg);
    fprintf(stderr, "error: %s\n(`mpitrain data --help` lists the commands and options)\n", msg);
    return MT_EX_USAGE;
}

static int parse_int(const char *opt, const char *s, int lo, int *v)
{
    char *end;
    errno = 0;
    long x = strtol(s, &end, 10);
    if (end == s || *end || errno || x < lo || x > INT_MAX) {
        fprintf(stderr, "error: %s %s: expected an integer >= %d\n", opt, s, lo);
        return MT_EX_USAGE;
    }
    *v = (int)x;
    return 0;
}

static int cmd_import(int argc, char **argv)
{
    const char *format = NULL, *images = NULL, *labels = NULL, *csv = NULL;
    ImportConf c = {.shards = 1};
    int rc;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        char key[64];
        const char *eq = strchr(a, '=');
        if (strncmp(a, "--", 2) != 0) return usage_error("data import: unexpected argument '%s'", a);
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(USAGE, stdout);
            return 0;
        }
        if (eq) {
            snprintf(key, sizeof key, "%.*s", (int)(eq - a), a);
            val = eq + 1;
        } else {
            snprintf(key, sizeof key, "%s", a);
            if (i + 1 >= argc) return usage_error("data import: %s needs a value", a);
            val = argv[++i];
        }
        if (strcmp(key, "--format") == 0) format = val;
        else if (strcmp(key, "--images") == 0) images = val;
        else if (strcmp(key, "--labels") == 0) labels = val;
        else if (strcmp(key, "--csv") == 0) csv = val;
        else if (strcmp(key, "--out") == 0) c.out_dir = val;
        else if (strcmp(key, "--stats-from") == 0) c.stats_from = val;
        else if (strcmp(key, "--shards") == 0) {
            if ((rc = parse_int(key, val, 1, &c.shards))) return rc;
        } else if (strcmp(key, "--classes") == 0) {
            if ((rc = parse_int(key, val, 1, &c.num_classes))) return rc;
        } else
            return usage_error("data import: unknown option %s", key);
    }
    if (!format) format = csv ? "csv" : "idx";
    if (!c.out_dir) return usage_error("data import: %s", "--out DIR is required");
    double t0 = now_s();
    if (strcmp(format, "idx") == 0) {
        if (csv) return usage_error("data import: --csv %s goes with --format csv", csv);
        if (!images || !labels)
            return usage_error("data import: %s", "--format idx needs --images FILE and --labels FILE");
        rc = dataset_import_idx(images, labels, &c);
    } else if (strcmp(format, "csv") == 0) {
        if (images || labels)
            return usage_error("data import: %s", "--images/--labels go with --format idx");
        if (!csv) return usage_error("data import: %s", "--format csv needs --csv FILE");
        rc = dataset_import_csv(csv, &c);
    } else {
        return usage_error("data import: --format %s: expected idx or csv", format);
    }
    if (rc) {
        log_error("%s", err_msg());
        return rc;
    }
    printf("imported into %s in %.2f s\n", c.out_dir, now_s() - t0);
    return dataset_print_info(c.out_dir, stdout);
}

static int cmd_dir(const char *cmd, int argc, char **argv)
{
    if (argc == 1 && (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0)) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (argc != 1) return usage_error("data %s: expected one dataset directory", cmd);
    if (strcmp(cmd, "verify") == 0) return dataset_verify(argv[0], stdout); /* prints FAILED */
    int rc = dataset_print_info(argv[0], stdout);
    if (rc) log_error("%s", err_msg());
    return rc;
}

int dataset_cli_main(int argc, char **argv)
{
    if (argc < 2) return usage_error("data: %s", "expected a subcommand: import, info or verify");
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(USAGE, stdout);
        return 0;
    }
    if (strcmp(cmd, "import") == 0) return cmd_import(argc - 2, argv + 2);
    if (strcmp(cmd, "info") == 0 || strcmp(cmd, "verify") == 0)
        return cmd_dir(cmd, argc - 2, argv + 2);
    return usage_error("data: unknown subcommand '%s' (import, info, verify)", cmd);
}
