/* ckpt_dir.c — the checkpoint directory: file names, listing, `latest`, pruning to
 * checkpoint.keep, and which checkpoint to resume from (with fallback to older ones).
 * See ckpt.h for the layout and the contracts. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/common.h"
#include "io/ckpt_impl.h"

/* ---------------------------------------------------------------- names and listing */

void ckpt_file_name(char *buf, size_t n, uint64_t step)
{
    snprintf(buf, n, "step-%08llu.h5", (unsigned long long)step);
}

void ckpt_join(char *out, size_t n, const char *dir, const char *name)
{
    if (name[0] == '/')
        snprintf(out, n, "%s", name);
    else
        snprintf(out, n, "%s/%s", dir, name);
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* step number of "step-<digits>.h5" (tmp = 0) or "step-<digits>.h5.tmp" (tmp = 1) */
static int parse_ckpt_name(const char *name, int tmp, uint64_t *step)
{
    if (strncmp(name, "step-", 5) != 0 || !isdigit((unsigned char)name[5])) return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(name + 5, &end, 10);
    if (errno) return 0;
    if (strcmp(end, tmp ? ".h5.tmp" : ".h5") != 0) return 0;
    *step = v;
    return 1;
}

static int ckfile_cmp_desc(const void *a, const void *b)
{
    uint64_t x = ((const CkptFile *)a)->step, y = ((const CkptFile *)b)->step;
    return x < y ? 1 : x > y ? -1 : 0;
}

int ckpt_list(const char *dir, int tmp, CkptFile **out)
{
    DIR *d = opendir(dir);
    *out = NULL;
    if (!d) return -1;
    int n = 0, cap = 0;
    CkptFile *v = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        uint64_t step;
        if (!parse_ckpt_name(e->d_name, tmp, &step) || strlen(e->d_name) >= 256) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            CkptFile *nv = realloc(v, cap * sizeof *v);
            if (!nv) fatal(MT_EX_OSERR, "out of memory listing %s", dir);
            v = nv;
        }
        v[n].step = step;
        snprintf(v[n].name, sizeof v[n].name, "%s", e->d_name);
        n++;
    }
    closedir(d);
    if (n > 1) qsort(v, n, sizeof *v, ckfile_cmp_desc);
    *out = v;
    return n;
}

/* ---------------------------------------------------------------- fsync, `latest` */

int ckpt_fsync_path(const char *path, int is_dir)
{
    int fd = open(path, is_dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    errno = e;
    return rc;
}

int ckpt_latest_write(const char *dir, const char *name)
{
    char tmp[4096], fin[4096];
    snprintf(tmp, sizeof tmp, "%s/latest.tmp", dir);
    snprintf(fin, sizeof fin, "%s/latest", dir);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0)
        return err_set(MT_EX_CANTCREAT, "cannot create %s: %s", tmp, strerror(errno));
    char line[300];
    int len = snprintf(line, sizeof line, "%s\n", name);
    ssize_t wr = write(fd, line, len);
    int e = wr == len ? 0 : wr < 0 ? errno : ENOSPC;
    if (!e && fsync(fd) != 0) e = errno;
    close(fd);
    if (!e && rename(tmp, fin) != 0) e = errno;
    if (e) {
        unlink(tmp);
        return err_set(MT_EX_IOERR, "cannot update %s to name %s: %s (the checkpoint itself "
                       "is complete; `latest` still names the previous one)", fin, name,
                       strerror(e));
    }
    if (ckpt_fsync_path(dir, 1) != 0)
        return err_set(MT_EX_IOERR, "cannot fsync directory %s: %s", dir, strerror(errno));
    return 0;
}

/* ---------------------------------------------------------------- prune, latest, resume */

int ckpt_prune(const char *dir, int keep, const char *protect)
{
    const char *pb = protect ? base_name(protect) : NULL;
    int removed = 0;
    char p[4096];
    CkptFile *v;
    int n = ckpt_list(dir, 1, &v); /* stale tmp files: no writer is active in dir */
    for (int i = 0; i < n; i++) {
        ckpt_join(p, sizeof p, dir, v[i].name);
        if (unlink(p) == 0) {
            log_info("checkpoint: removed stale %s (left by an interrupted write)", p);
            removed++;
        }
    }
    free(v);
    if (keep <= 0) return removed;
    n = ckpt_list(dir, 0, &v);
    int kept = 0;
    for (int i = 0; i < n; i++) {
        int prot = pb && strcmp(v[i].name, pb) == 0;
        if (prot || kept < keep) {
            kept++;
            continue;
        }
        ckpt_join(p, sizeof p, dir, v[i].name);
        if (unlink(p) == 0)
            removed++;
        else
            log_error("cannot remove old checkpoint %s: %s", p, strerror(errno));
    }
    /* the protected file may have been counted past keep: nothing else to do, it is kept */
    free(v);
    return removed;
}

int ckpt_latest_name(const char *dir, char *name, size_t n)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/latest", dir);
    name[0] = 0;
    FILE *f = fopen(p, "r");
    if (!f) return -1;
    if (!fgets(name, (int)n, f)) name[0] = 0;
    fclose(f);
    size_t L = strlen(name);
    while (L && isspace((unsigned char)name[L - 1])) name[--L] = 0;
    return 0;
}

int ckpt_find_resume(const char *dir, char *path_out, size_t n)
{
    struct stat st;
    if (path_out && n) path_out[0] = 0;
    if (stat(dir, &st) != 0)
        return err_set(MT_EX_NOINPUT, "checkpoint directory %s: %s (nothing to resume from)",
                       dir, strerror(errno));
    if (S_ISREG(st.st_mode)) {
        int rc = ckpt_verify(dir, NULL);
        if (rc == 0 && path_out) snprintf(path_out, n, "%s", dir);
        return rc;
    }
    char tried[2048] = "";
    size_t tl = 0;
    char latest_name[256] = "";
    char p[4096];
    snprintf(p, sizeof p, "%s/latest", dir);
    if (ckpt_latest_name(dir, latest_name, sizeof latest_name) == 0) {
        if (latest_name[0]) {
            ckpt_join(p, sizeof p, dir, latest_name);
            if (ckpt_verify(p, NULL) == 0) {
                if (path_out) snprintf(path_out, n, "%s", p);
                return 0;
            }
            log_info("checkpoint: skipping %s (named by %s/latest): %s", p, dir, err_msg());
            tl += snprintf(tried + tl, sizeof tried - MT_MIN(tl, sizeof tried), "%s", p);
        } else {
            log_info("checkpoint: %s/latest is empty; scanning %s", dir, dir);
        }
    } else if (errno != ENOENT) {
        log_info("checkpoint: cannot read %s: %s; scanning %s", p, strerror(errno), dir);
    }
    CkptFile *v;
    int nf = ckpt_list(dir, 0, &v);
    if (nf < 0)
        return err_set(MT_EX_NOINPUT, "cannot list checkpoint directory %s: %s", dir,
                       strerror(errno));
    for (int i = 0; i < nf; i++) {
        if (latest_name[0] && strcmp(v[i].name, base_name(latest_name)) == 0) continue;
        ckpt_join(p, sizeof p, dir, v[i].name);
        if (ckpt_verify(p, NULL) == 0) {
            if (latest_name[0])
                log_info("checkpoint: resuming from %s instead of %s (the newest valid one)", p,
                         latest_name);
            if (path_out) snprintf(path_out, n, "%s", p);
            free(v);
            return 0;
        }
        log_info("checkpoint: skipping %s: %s", p, err_msg());
        if (tl < sizeof tried)
            tl += snprintf(tried + tl, sizeof tried - tl, "%s%s", tl ? ", " : "", v[i].name);
    }
    free(v);
    if (tl)
        return err_set(MT_EX_NOINPUT, "no valid checkpoint in %s (failed verification: %s)", dir,
                       tried);
    return err_set(MT_EX_NOINPUT, "no checkpoint in %s (no latest, no step-*.h5)", dir);
}
