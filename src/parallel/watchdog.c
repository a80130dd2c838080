/* watchdog.c — see watchdog.h */
#include "parallel/watchdog.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "core/common.h"

static pthread_t g_th;
static int g_running;
static atomic_int g_stop;
static double g_timeout;
static int g_rank;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t g_step;
static const char *g_phase = "start";
static double g_since;

static void *watch(void *arg)
{
    (void)arg;
    while (!atomic_load(&g_stop)) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
        pthread_mutex_lock(&g_mu);
        double age = now_s() - g_since;
        uint64_t step = g_step;
        const char *phase = g_phase;
        pthread_mutex_unlock(&g_mu);
        if (age > g_timeout && !atomic_load(&g_stop))
            fatal(MT_EX_SOFTWARE,
                  "watchdog: step %llu has been in phase '%s' for %.0f s on rank %d "
                  "(run.step_timeout_s = %g): a rank is stuck or a peer died; aborting the job",
                  (unsigned long long)step, phase, age, g_rank, g_timeout);
    }
    return NULL;
}

void watchdog_start(double timeout_s, int rank)
{
    g_rank = rank;
    watchdog_step(0, "start");
    if (timeout_s <= 0 || g_running) return;
    g_timeout = timeout_s;
    atomic_store(&g_stop, 0);
    if (pthread_create(&g_th, NULL, watch, NULL) == 0) {
        g_running = 1;
        pthread_setname_np(g_th, "mt-watchdog");
    }
}

void watchdog_step(uint64_t step, const char *phase)
{
    pthread_mutex_lock(&g_mu);
    g_step = step;
    g_phase = phase;
    g_since = now_s();
    pthread_mutex_unlock(&g_mu);
}

void watchdog_stop(void)
{
    if (!g_running) return;
    atomic_store(&g_stop, 1);
    pthread_join(g_th, NULL);
    g_running = 0;
}
