/* h5_guard.c — bounded reads of files that may be damaged (h5.h): the watchdog thread
 * behind h5_read_lock, the crash handler, and h5_isolated (a read in a child process).
 *
 * Why: HDF5 trusts a file's metadata.  A few damaged bytes can make a call loop for ever
 * (a global-heap object of size 0 in H5HG, found by flipping bytes of a checkpoint) or
 * crash, and an HDF5 call can be neither interrupted nor cancelled.  So the thread that
 * holds a read lock is watched, and when it is stuck the process says so, naming the
 * file, and ends: _exit(), because exit() would run HDF5's own cleanup while a thread
 * is still inside the library. */
#include "io/h5.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/common.h"

#define GUARD_BUSY_SHARE 0.10 /* CPU share of a stuck call that means "looping", not waiting */
#define GUARD_IO_FACTOR 12    /* a call waiting for the storage gets this many bounds */

/* ---------------------------------------------------------------- the bound */

static pthread_once_t g_bound_once = PTHREAD_ONCE_INIT;
static double g_bound = 5.0;

static void bound_init(void)
{
    const char *s = getenv("MPITRAIN_HDF5_TIMEOUT");
    if (!s || !s[0]) return;
    char *end;
    double v = strtod(s, &end);
    if (*end || !(v >= 0) || v > 1e6)
        log_error("MPITRAIN_HDF5_TIMEOUT=%s is not a number of seconds (0 = no bound): using "
                  "%g s", s, g_bound);
    else
        g_bound = v;
}

double h5_read_bound_s(void)
{
    CHECK(pthread_once(&g_bound_once, bound_init) == 0);
    return g_bound;
}

/* ---------------------------------------------------------------- reporting */

static int g_child_fd = -1; /* in an h5_isolated child: the pipe to the parent */

/* Write "error: reading PATH: WHAT" (or, in an isolated child, "CODE\nreading ...") and
 * end the process with code.  Called from the watchdog thread and from the crash
 * handler: no locks, no allocation, no stdio. */
static void die(int code, const char *path, const char *what)
{
    char line[1536];
    if (g_child_fd >= 0) {
        int k = snprintf(line, sizeof line, "%d\nreading %s: %s", code, path, what);
        if (k > 0 && write(g_child_fd, line, MT_MIN((size_t)k, sizeof line - 1)) < 0) _exit(code);
    } else {
        int r = log_rank();
        int k = r > 0 ? snprintf(line, sizeof line, "[rank %d] error: reading %s: %s\n", r, path, what)
                      : snprintf(line, sizeof line, "error: reading %s: %s\n", path, what);
        if (k > 0 && write(2, line, MT_MIN((size_t)k, sizeof line - 1)) < 0) _exit(code);
    }
    _exit(code);
}

/* ---------------------------------------------------------------- the watchdog */

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int started;        /* the thread runs (0 again in a forked child) */
    int idle;           /* it waits for an arm (signal it) */
    int armed;          /* a read lock is held */
    uint64_t gen;       /* +1 per outermost read lock */
    pthread_t holder;   /* its thread */
    const char *path;   /* borrowed from the holder for as long as armed */
    int intact;
} W = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int g_depth;                            /* read-lock nesting (under the HDF5 lock) */
static _Thread_local volatile sig_atomic_t t_reading; /* this thread holds a read lock */
static _Thread_local int t_altstack;           /* a signal stack is set for this thread */

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double thread_cpu(pthread_t th)
{
    clockid_t c;
    struct timespec ts;
    if (pthread_getcpuclockid(th, &c) != 0 || clock_gettime(c, &ts) != 0) return 0;
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fire(double el, double busy)
{
    char what[1024];
    if (busy >= GUARD_BUSY_SHARE * el)
        snprintf(what, sizeof what,
                 "an HDF5 call has been running for %.0f s (%.0f s of CPU) without returning: "
                 "%s (the bound is MPITRAIN_HDF5_TIMEOUT = %g s)",
                 el, busy,
                 W.intact ? "HDF5 is looping on a file whose bytes passed their integrity check "
                            "(an HDF5 bug)"
                          : "it is looping on damaged metadata; the file is damaged (a checkpoint: "
                            "resume from an earlier one; a dataset: re-import it)",
                 g_bound);
    else
        snprintf(what, sizeof what,
                 "an HDF5 call has been waiting for the storage for %.0f s: the filesystem does "
                 "not answer (the bound is %d x MPITRAIN_HDF5_TIMEOUT = %g s)",
                 el, GUARD_IO_FACTOR, GUARD_IO_FACTOR * g_bound);
    die(busy >= GUARD_BUSY_SHARE * el ? (W.intact ? MT_EX_SOFTWARE : MT_EX_DATAERR) : MT_EX_IOERR,
        W.path, what);
}

static void *wd_main(void *unused)
{
    (void)unused;
    uint64_t seen = 0;
    double t0 = 0, c0 = 0, poll = MT_MIN(0.25, g_bound / 4);
    pthread_mutex_lock(&W.mu);
    for (;;) {
        if (!W.armed) {
            W.idle = 1;
            pthread_cond_wait(&W.cv, &W.mu);
            W.idle = 0;
            continue;
        }
        double now = mono_now(), cpu = thread_cpu(W.holder);
        if (W.gen != seen) { /* a new read lock: measure it from here */
            seen = W.gen;
            t0 = now;
            c0 = cpu;
        } else {
            double el = now - t0, busy = cpu - c0;
            if ((el >= g_bound && busy >= GUARD_BUSY_SHARE * el) || el >= GUARD_IO_FACTOR * g_bound)
                fire(el, busy); /* does not return */
        }
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        long ns = ts.tv_nsec + (long)(poll * 1e9);
        ts.tv_sec += ns / 1000000000L;
        ts.tv_nsec = ns % 1000000000L;
        pthread_cond_timedwait(&W.cv, &W.mu, &ts);
    }
    return NULL;
}

/* ---------------------------------------------------------------- the crash handler */

static const int g_sigs[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
static struct sigaction g_old[sizeof g_sigs / sizeof g_sigs[0]];

static void on_crash(int sig, siginfo_t *si, void *uc)
{
    (void)uc;
    if (t_reading) {
        const char *name = sig == SIGSEGV ? "SIGSEGV" : sig == SIGBUS ? "SIGBUS"
                           : sig == SIGFPE ? "SIGFPE" : sig == SIGILL ? "SIGILL" : "SIGABRT";
        char what[256];
        snprintf(what, sizeof what, "HDF5 crashed (%s) on %s", name,
                 W.intact ? "a file whose bytes passed their integrity check (an HDF5 bug)"
                          : "the file's metadata: the file is damaged");
        die(W.intact ? MT_EX_SOFTWARE : MT_EX_DATAERR, W.path, what);
    }
    /* not ours: the previous disposition handles it */
    for (size_t i = 0; i < sizeof g_sigs / sizeof g_sigs[0]; i++)
        if (g_sigs[i] == sig) sigaction(sig, &g_old[i], NULL);
    if (sig == SIGABRT || !si || si->si_code <= 0) raise(sig); /* sent, not a fault */
}

static void install_crash_handler(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_crash;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof g_sigs / sizeof g_sigs[0]; i++) {
        struct sigaction old;
        sigaction(g_sigs[i], &sa, &old);
        if (!((old.sa_flags & SA_SIGINFO) && old.sa_sigaction == on_crash))
            g_old[i] = old; /* (installed again: keep what was there before us) */
    }
}

/* A signal stack for this thread, so that a stack overflow inside HDF5 (deep recursion on
 * cyclic metadata) still reaches the handler.  Never freed: one per reading thread. */
static void altstack_once(void)
{
    if (t_altstack) return;
    t_altstack = 1;
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE)) return; /* has one */
    stack_t ss = {.ss_sp = malloc(1 << 16), .ss_size = 1 << 16, .ss_flags = 0};
    if (ss.ss_sp && sigaltstack(&ss, NULL) != 0) free(ss.ss_sp);
}

/* In a forked child the watchdog thread does not exist and the mutex may be held by a
 * thread that does not exist either. */
static void wd_after_fork(void)
{
    pthread_mutex_init(&W.mu, NULL);
    W.started = W.idle = W.armed = 0;
    g_depth = 0;
}

static void wd_start_locked(void)
{
    static int once;
    if (!once) {
        once = 1;
        install_crash_handler();
        CHECK(pthread_atfork(NULL, NULL, wd_after_fork) == 0);
    }
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&W.cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_t th;
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &a, wd_main, NULL) == 0) W.started = 1;
    pthread_attr_destroy(&a);
}

/* ---------------------------------------------------------------- read locks */

void h5_read_lock(const char *path, int intact)
{
    h5_quiet_lock();
    if (g_depth++ > 0 || h5_read_bound_s() <= 0) return;
    altstack_once();
    pthread_mutex_lock(&W.mu);
    if (!W.started) wd_start_locked();
    W.gen++;
    W.armed = 1;
    W.holder = pthread_self();
    W.path = path ? path : "?";
    W.intact = intact;
    if (W.idle) pthread_cond_signal(&W.cv);
    pthread_mutex_unlock(&W.mu);
    t_reading = 1;
}

void h5_read_unlock(void)
{
    CHECK(g_depth > 0);
    if (--g_depth == 0 && g_bound > 0) {
        t_reading = 0;
        pthread_mutex_lock(&W.mu);
        W.armed = 0;
        pthread_mutex_unlock(&W.mu);
    }
    h5_quiet_unlock();
}

/* ---------------------------------------------------------------- isolated runs */

static int run_here(int (*fn)(void *), void *arg, char *msg, size_t n)
{
    int rc = fn(arg);
    if (n) snprintf(msg, n, "%s", rc ? err_msg() : "");
    return rc;
}

int h5_isolated(int (*fn)(void *arg), void *arg, char *msg, size_t n, int *stopped)
{
    if (n) msg[0] = 0;
    *stopped = 0;
    int p[2];
    if (h5_read_bound_s() <= 0 || pipe2(p, O_CLOEXEC) != 0) return run_here(fn, arg, msg, n);
    fflush(NULL);
    h5_lock(); /* no other thread is inside HDF5 while the child's copy is made */
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        g_child_fd = p[1];
        install_crash_handler(); /* ours, even if the parent's were replaced since */
        int rc = fn(arg);
        fflush(NULL);
        char line[2100];
        int k = snprintf(line, sizeof line, "%d\n%s", rc, rc ? err_msg() : "");
        if (k > 0 && write(p[1], line, MT_MIN((size_t)k, sizeof line - 1)) < 0) _exit(MT_EX_IOERR);
        _exit(0); /* no atexit handlers: they belong to the parent (HDF5, MPI) */
    }
    h5_unlock();
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        return run_here(fn, arg, msg, n);
    }
    char buf[2200];
    size_t got = 0;
    for (;;) {
        ssize_t r = read(p[0], buf + got, sizeof buf - 1 - got);
        if (r > 0 && (got += (size_t)r) < sizeof buf - 1) continue;
        if (r < 0 && errno == EINTR) continue;
        break;
    }
    close(p[0]);
    buf[got] = 0;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    char *nl = strchr(buf, '\n');
    if (nl) { /* "CODE\nmessage" from the child (its result, or the watchdog's verdict) */
        if (n) snprintf(msg, n, "%s", nl + 1);
        *stopped = !WIFEXITED(status) || WEXITSTATUS(status) != 0;
        return atoi(buf);
    }
    *stopped = 1;
    if (WIFSIGNALED(status)) {
        snprintf(msg, n, "the reading process was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
        return MT_EX_DATAERR;
    }
    snprintf(msg, n, "the reading process ended with exit %d and no report",
             WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return MT_EX_SOFTWARE;
}
