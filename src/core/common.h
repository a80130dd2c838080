/* common.h — error codes, error messages, logging and CHECK for every module.
 *
 * Expected failures (bad config, bad data, bad checkpoint) are returned as an exit
 * code from sysexits.h after err_set() has recorded a message that names the file,
 * key, rank or step and says what to do.  Bugs are CHECK()ed: the check stays in
 * release builds and aborts the whole job through the hook that src/parallel
 * installs (MPI_Abort), so no peer waits forever. */
#ifndef MPITRAIN_CORE_COMMON_H
#define MPITRAIN_CORE_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* exit codes (sysexits.h values, spelled out so core needs no system header) */
enum {
    MT_OK = 0,
    MT_EX_USAGE = 64,     /* bad command line */
    MT_EX_DATAERR = 65,   /* bad input data (dataset contents, checkpoint contents) */
    MT_EX_NOINPUT = 66,   /* input file missing or unreadable */
    MT_EX_SOFTWARE = 70,  /* internal error, NaN loss, watchdog */
    MT_EX_OSERR = 71,     /* out of memory, thread creation */
    MT_EX_CANTCREAT = 73, /* cannot create an output file */
    MT_EX_IOERR = 74,     /* read/write failure, disk full */
    MT_EX_TEMPFAIL = 75,  /* stopped on a signal after a clean checkpoint: requeue */
    MT_EX_CONFIG = 78,    /* bad configuration */
};

/* Record an error message (printf format) for this thread and return `code`.
 * The message should name the file/key/rank/step and say what to do. */
int err_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The last message recorded by err_set on this thread ("" if none). */
const char *err_msg(void);
/* The last code recorded by err_set on this thread (0 if none). */
int err_code(void);
void err_clear(void);

/* Logging.  Messages go to stderr prefixed with "[rank r host]" once a rank is set.
 * log_info prints only on rank 0 (or before MPI is up); log_all on every rank. */
void log_set_rank(int rank, int world);
int log_rank(void);
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_all(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Abort hook: called by CHECK failures and fatal errors; defaults to abort().
 * src/parallel installs one that calls MPI_Abort so the whole job goes down. */
typedef void (*AbortHook)(int code);
void set_abort_hook(AbortHook hook);
void fatal(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
void check_fail(const char *file, int line, const char *expr) __attribute__((noreturn));

#define CHECK(cond) do { if (!(cond)) check_fail(__FILE__, __LINE__, #cond); } while (0)

/* Allocation that never returns NULL: on failure the job aborts naming the size. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
/* 64-byte aligned, zeroed; free with free(). */
void *xaligned(size_t n);
char *xstrdup(const char *s);

/* mkdir -p: create dir and its parents (mode 0777 & umask).  Returns 0, or -1 with errno
 * set (ENOTDIR when dir exists as something else, ENAMETOOLONG past 4095 bytes); the
 * caller words the message. */
int mkdir_p(const char *dir);

/* Monotonic clock in seconds. */
double now_s(void);

#define MT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MT_MAX(a, b) ((a) > (b) ? (a) : (b))

/* MT_VEC: an elementwise loop compiled twice, for AVX2 and for the x86-64 baseline
 * (SSE2), the copy picked once at load time by the CPU (target_clones: a glibc ifunc).
 * Each vector lane performs the scalar code's IEEE operations in its order (no
 * contraction: the build has -ffp-contract=off), so both copies give the same bits.  No
 * AVX-512 copy: these loops are bound by memory, and forcing MPITRAIN_GEMM_ISA=avx2 on
 * an AVX-512 CPU then runs what an AVX2-only CPU runs.  MT_NO_VEC_CLONES turns it off. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(MT_NO_VEC_CLONES)
#define MT_VEC __attribute__((target_clones("avx2", "default")))
#else
#define MT_VEC
#endif

#endif
