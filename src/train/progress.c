/* progress.c — see progress.h */
#include "train/progress.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/common.h"

static int g_dirty;

void progress_init(Progress *p, const char *how, uint64_t total_steps, int active)
{
    memset(p, 0, sizeof *p);
    p->total = total_steps;
    p->t_start = p->t_last = now_s();
    if (!active || !strcmp(how, "off")) p->mode = 0;
    else if (!strcmp(how, "tty")) p->mode = 1;
    else if (!strcmp(how, "plain")) p->mode = 2;
    else p->mode = isatty(STDERR_FILENO) ? 1 : 2;
}

static void fmt_eta(double s, char *buf, size_t n)
{
    if (s < 0 || s > 1e7) { snprintf(buf, n, "?"); return; }
    int h = (int)(s / 3600), m = (int)(s / 60) % 60, sec = (int)s % 60;
    if (h) snprintf(buf, n, "%dh%02dm", h, m);
    else snprintf(buf, n, "%dm%02ds", m, sec);
}

void progress_update(Progress *p, uint64_t step, uint64_t epoch, double loss, double lr,
                     double sps)
{
    if (!p->mode) return;
    double t = now_s();
    int last = step == p->total;
    double every = p->mode == 1 ? 0.2 : 10.0;
    if (!last && t - p->t_last < every) return;
    p->t_last = t;
    double rate = step / (t - p->t_start + 1e-9);
    char eta[32];
    fmt_eta((p->total - step) / (rate + 1e-9), eta, sizeof eta);
    char line[256];
    snprintf(line, sizeof line, "step %llu/%llu (%.0f%%) epoch %llu  loss %.4f  lr %.3g  %.0f samples/s  ETA %s",
             (unsigned long long)step, (unsigned long long)p->total, 100.0 * step / p->total,
             (unsigned long long)epoch, loss, lr, sps, eta);
    if (p->mode == 1) {
        fprintf(stderr, "\r%-100s", line);
        g_dirty = 1;
    } else {
        fprintf(stderr, "%s\n", line);
    }
    fflush(stderr);
}

void progress_clear(void)
{
    if (g_dirty) {
        fputc('\n', stderr);
        g_dirty = 0;
    }
}

void progress_done(Progress *p)
{
    (void)p;
    progress_clear();
}
