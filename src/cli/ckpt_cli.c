/* ckpt_cli.c — `mpitrain ckpt info|verify` (cli.h). */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "core/common.h"
#include "io/ckpt.h"

static void cli_usage(FILE *f)
{
    fprintf(f,
            "usage: mpitrain ckpt info PATH [--config]   metadata and arrays of a checkpoint\n"
            "       mpitrain ckpt verify PATH...         check every checksum\n"
            "PATH is a checkpoint file or a checkpoint directory (info: the file named by\n"
            "DIR/latest; verify: every DIR/step-*.h5).\n"
            "exit: 0 ok, 64 usage, 65 corrupt or not a checkpoint, 66 missing\n");
}

static int is_ckpt_name(const char *n)
{
    if (strncmp(n, "step-", 5) != 0 || !isdigit((unsigned char)n[5])) return 0;
    const char *p = n + 5;
    while (isdigit((unsigned char)*p)) p++;
    return strcmp(p, ".h5") == 0;
}

static int name_cmp_desc(const void *a, const void *b)
{
    unsigned long long x = strtoull(*(char *const *)a + 5, NULL, 10);
    unsigned long long y = strtoull(*(char *const *)b + 5, NULL, 10);
    return x < y ? 1 : x > y ? -1 : 0;
}

/* step-*.h5 names of dir, highest step first; returns count (-1: cannot list). */
static int list_dir(const char *dir, char ***out)
{
    DIR *d = opendir(dir);
    *out = NULL;
    if (!d) return -1;
    int n = 0, cap = 0;
    char **v = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!is_ckpt_name(e->d_name)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            char **nv = realloc(v, cap * sizeof *v);
            if (!nv) fatal(MT_EX_OSERR, "out of memory listing %s", dir);
            v = nv;
        }
        v[n++] = xstrdup(e->d_name);
    }
    closedir(d);
    if (n > 1) qsort(v, n, sizeof *v, name_cmp_desc);
    *out = v;
    return n;
}

static void free_list(char **v, int n)
{
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

/* The file a directory's `latest` names (else its highest step-*.h5). */
static int resolve_dir(const char *dir, char *out, size_t n)
{
    char name[256] = "";
    ckpt_latest_name(dir, name, sizeof name);
    if (!name[0]) {
        char **v;
        int k = list_dir(dir, &v);
        if (k > 0) snprintf(name, sizeof name, "%s", v[0]);
        free_list(v, k);
    }
    if (!name[0]) return err_set(MT_EX_NOINPUT, "no checkpoint in %s (no latest, no step-*.h5)", dir);
    if (name[0] == '/')
        snprintf(out, n, "%s", name);
    else
        snprintf(out, n, "%s/%s", dir, name);
    return 0;
}

static int cli_info(int argc, char **argv)
{
    const char *path = NULL;
    int with_config = 0;
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0)
            with_config = 1;
        else if (argv[i][0] == '-' || path) {
            cli_usage(stderr);
            return MT_EX_USAGE;
        } else
            path = argv[i];
    }
    if (!path) {
        cli_usage(stderr);
        return MT_EX_USAGE;
    }
    char file[4096];
    struct stat st;
    if (stat(path, &st) != 0) {
        log_error("checkpoint %s: %s", path, strerror(errno));
        return MT_EX_NOINPUT;
    }
    if (S_ISDIR(st.st_mode)) {
        int rc = resolve_dir(path, file, sizeof file);
        if (rc) {
            log_error("%s", err_msg());
            return rc;
        }
    } else {
        snprintf(file, sizeof file, "%s", path);
    }
    int rc = ckpt_info(file, stdout);
    if (!rc && with_config) {
        char *text;
        rc = ckpt_read_config(file, &text);
        if (!rc) {
            printf("config:\n%s", text);
            if (text[0] && text[strlen(text) - 1] != '\n') printf("\n");
            free(text);
        }
    }
    if (rc) log_error("%s", err_msg());
    return rc;
}

static int cli_verify(int argc, char **argv)
{
    if (argc < 3) {
        cli_usage(stderr);
        return MT_EX_USAGE;
    }
    int worst = 0, nok = 0, nbad = 0;
    for (int i = 2; i < argc; i++) {
        const char *path = argv[i];
        struct stat st;
        if (stat(path, &st) != 0) {
            log_error("checkpoint %s: %s", path, strerror(errno));
            worst = MT_MAX(worst, (int)MT_EX_NOINPUT);
            continue;
        }
        if (!S_ISDIR(st.st_mode)) {
            int rc = ckpt_verify(path, stdout);
            if (rc) {
                log_error("%s", err_msg());
                nbad++;
            } else {
                nok++;
            }
            if (rc == MT_EX_NOINPUT) worst = MT_MAX(worst, (int)MT_EX_NOINPUT);
            else if (rc && worst != MT_EX_NOINPUT) worst = rc;
            continue;
        }
        char **v;
        int k = list_dir(path, &v);
        if (k <= 0) {
            log_error("no checkpoint in %s (no step-*.h5)", path);
            worst = MT_MAX(worst, (int)MT_EX_NOINPUT);
            free_list(v, k < 0 ? 0 : k);
            continue;
        }
        char latest[4096];
        if (resolve_dir(path, latest, sizeof latest) == 0) printf("%s/latest -> %s\n", path, latest);
        for (int j = 0; j < k; j++) {
            char file[4096];
            snprintf(file, sizeof file, "%s/%s", path, v[j]);
            int rc = ckpt_verify(file, stdout);
            if (rc) {
                log_error("%s", err_msg());
                nbad++;
                if (worst != MT_EX_NOINPUT) worst = rc;
            } else {
                nok++;
            }
        }
        free_list(v, k);
    }
    printf("%d checkpoint%s OK, %d bad\n", nok, nok == 1 ? "" : "s", nbad);
    return worst;
}

int ckpt_cli_main(int argc, char **argv)
{
    if (argc < 2) {
        cli_usage(stderr);
        return MT_EX_USAGE;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        cli_usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "info") == 0) return cli_info(argc, argv);
    if (strcmp(argv[1], "verify") == 0) return cli_verify(argc, argv);
    log_error("unknown ckpt command '%s'", argv[1]);
    cli_usage(stderr);
    return MT_EX_USAGE;
}
