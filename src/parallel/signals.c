/* signals.c — see signals.h */
#include "parallel/signals.h"

#include <signal.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t g_sig;
static volatile sig_atomic_t g_count;

static void on_signal(int sig)
{
    g_count++;
    if (!g_sig) g_sig = sig;
    if (g_count == 1) {
        static const char msg[] = "mpitrain: stop signal received; checkpointing at the next step boundary\n";
        ssize_t r = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)r;
    }
    if (g_count >= 3 && sig != SIGUSR1) {
        /* the user insists: default action */
        signal(sig, SIG_DFL);
        raise(sig);
    }
}

void signals_install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

int signals_pending(void) { return g_sig; }
