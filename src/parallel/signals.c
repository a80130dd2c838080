/* signals.c — see signals.h */
#include "parallel/signals.h"

#include <ctype.h>
#include <signal.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/common.h"

static const struct {
    const char *name;
    int sig;
    const char *msg; /* written by the handler (write() is async-signal-safe) */
} k_sigs[] = {
#define S(n) { #n, SIG##n, "mpitrain: SIG" #n " received; checkpointing at the next step boundary, then exit 75\n" }
    S(TERM), S(INT), S(HUP), S(USR1), S(USR2),
#undef S
};
enum { NSIGS = sizeof k_sigs / sizeof k_sigs[0] };

static volatile sig_atomic_t g_sig;
static volatile sig_atomic_t g_count;
static int g_handled[NSIGS]; /* 1 = our handler is installed for k_sigs[i] */

static void on_signal(int sig)
{
    g_count++;
    if (!g_sig) g_sig = sig;
    if (g_count == 1) {
        for (int i = 0; i < NSIGS; i++)
            if (k_sigs[i].sig == sig) {
                ssize_t r = write(STDERR_FILENO, k_sigs[i].msg, strlen(k_sigs[i].msg));
                (void)r;
            }
    }
    if (g_count >= 3 && (sig == SIGTERM || sig == SIGINT)) {
        /* the user insists: default action */
        signal(sig, SIG_DFL);
        raise(sig);
    }
}

/* k_sigs index of the name s[0..n), or -1 */
static int sig_index(const char *s, size_t n)
{
    if (n > 3 && strncasecmp(s, "SIG", 3) == 0) s += 3, n -= 3;
    for (int i = 0; i < NSIGS; i++)
        if (strlen(k_sigs[i].name) == n && strncasecmp(s, k_sigs[i].name, n) == 0) return i;
    return -1;
}

int signals_install(const char *names)
{
    if (!names || !*names) names = SIGNALS_DEFAULT;
    int want[NSIGS] = {0}, any = 0;
    for (const char *p = names; *p;) {
        while (*p == ',' || isspace((unsigned char)*p)) p++;
        size_t n = 0;
        while (p[n] && p[n] != ',' && !isspace((unsigned char)p[n])) n++;
        if (!n) break;
        int i = sig_index(p, n);
        if (i < 0)
            return err_set(MT_EX_CONFIG,
                           "run.stop_signals: unknown signal '%.*s' in '%s' (allowed: TERM INT "
                           "HUP USR1 USR2, separated by spaces or commas)", (int)n, p, names);
        want[i] = 1, any = 1;
        p += n;
    }
    if (!any)
        return err_set(MT_EX_CONFIG, "run.stop_signals: no signal named in '%s' (allowed: TERM "
                       "INT HUP USR1 USR2)", names);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (int i = 0; i < NSIGS; i++) {
        if (want[i]) sigaction(k_sigs[i].sig, &sa, NULL);
        else if (g_handled[i]) signal(k_sigs[i].sig, SIG_DFL);
        g_handled[i] = want[i];
    }
    return 0;
}

int signals_pending(void) { return g_sig; }
