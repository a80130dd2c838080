/* ckpt_seal.c — the seal of a checkpoint file: a whole-file XXH3-128 hash in the HDF5
 * user block (the first CKPT_SEAL_BYTES bytes, which HDF5 reserves and never reads),
 * written after HDF5 has closed the file and checked by every reader before HDF5 sees
 * a byte of it.  The format is in ckpt_impl.h and docs/checkpoint-format.md. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/common.h"
#include "io/ckpt_impl.h"

#define SEAL_MAGIC "mpitrain checkpoint seal 1\n"
#define SEAL_BYTES_AT 27   /* "bytes " + 20 digits + "\n" */
#define SEAL_HASH_AT 54    /* "xxh3-128 " + 32 hex digits + "\n" */
#define SEAL_HEX_AT (SEAL_HASH_AT + 9)
#define SEAL_END 96        /* NUL from here to CKPT_SEAL_BYTES */
#define SEAL_READ_BYTES ((size_t)1 << 20) /* stays in L2 between the read and the hash */

static const unsigned char HDF5_SIGNATURE[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};

/* ---------------------------------------------------------------- hashing the file */

/* XXH3-128 of the file: hdr (the seal with its hash digits as '0') then the bytes from
 * CKPT_SEAL_BYTES to `size`.  0, or -1 with errno (EIO also for a short file). */
static int hash_file(int fd, uint64_t size, const char *hdr, char hex[33])
{
    XXH3_state_t *st = XXH3_createState();
    if (!st) fatal(MT_EX_OSERR, "out of memory allocating a hash state");
    XXH3_128bits_reset(st);
    XXH3_128bits_update(st, hdr, CKPT_SEAL_BYTES);
    char *buf = xmalloc(SEAL_READ_BYTES);
    int rc = 0;
    for (uint64_t off = CKPT_SEAL_BYTES; off < size;) {
        size_t want = (size_t)MT_MIN((uint64_t)SEAL_READ_BYTES, size - off);
        ssize_t r = pread(fd, buf, want, (off_t)off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            if (r == 0) errno = EIO;
            rc = -1;
            break;
        }
        XXH3_128bits_update(st, buf, (size_t)r);
        off += (uint64_t)r;
    }
    free(buf);
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
    XXH3_freeState(st);
    for (int i = 0; i < 16; i++) snprintf(hex + 2 * i, 3, "%02x", c.digest[i]);
    return rc;
}

/* The seal of a file of `size` bytes, its hash digits '0' (hex = NULL) or hex. */
static void seal_text(char hdr[CKPT_SEAL_BYTES], uint64_t size, const char *hex)
{
    memset(hdr, 0, CKPT_SEAL_BYTES);
    snprintf(hdr, CKPT_SEAL_BYTES, SEAL_MAGIC "bytes %020" PRIu64 "\nxxh3-128 %s\n", size,
             hex ? hex : "00000000000000000000000000000000");
}

/* ---------------------------------------------------------------- files seen intact */

/* Files this process has found intact, by identity: a checkpoint read three times in a
 * row (verify, config, arrays) is hashed once.  Any change to the file changes its
 * mtime or ctime, but in ticks of the kernel's coarse clock (milliseconds): a file
 * changed less than SEEN_AGE_S before it was checked is not remembered. */
#define SEEN_AGE_S 2
typedef struct {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
} FileId;

static pthread_mutex_t g_seen_mu = PTHREAD_MUTEX_INITIALIZER;
static FileId g_seen[8];
static int g_nseen, g_next;

static FileId file_id(const struct stat *st)
{
    FileId f = {st->st_dev, st->st_ino, st->st_size, st->st_mtim, st->st_ctim};
    return f;
}

static int id_eq(const FileId *a, const FileId *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
           a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

static int seen_intact(const struct stat *st)
{
    FileId f = file_id(st);
    int hit = 0;
    pthread_mutex_lock(&g_seen_mu);
    for (int i = 0; i < g_nseen && !hit; i++) hit = id_eq(&g_seen[i], &f);
    pthread_mutex_unlock(&g_seen_mu);
    return hit;
}

static void seen_add(const struct stat *st)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (now.tv_sec - st->st_ctim.tv_sec < SEEN_AGE_S || now.tv_sec - st->st_mtim.tv_sec < SEEN_AGE_S)
        return;
    pthread_mutex_lock(&g_seen_mu);
    g_seen[g_next] = file_id(st);
    g_next = (g_next + 1) % 8;
    if (g_nseen < 8) g_nseen++;
    pthread_mutex_unlock(&g_seen_mu);
}

/* ---------------------------------------------------------------- writing */

int ckpt_seal_write(const char *path, char *why, size_t n)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(why, n, "%s", strerror(errno));
        if (fd >= 0) close(fd);
        return -1;
    }
    char hdr[CKPT_SEAL_BYTES], back[CKPT_SEAL_BYTES], hex[33];
    seal_text(hdr, (uint64_t)st.st_size, NULL);
    int rc = st.st_size < CKPT_SEAL_BYTES ? (errno = EIO, -1) : 0;
    if (!rc) rc = hash_file(fd, (uint64_t)st.st_size, hdr, hex);
    if (!rc) {
        seal_text(hdr, (uint64_t)st.st_size, hex);
        rc = pwrite(fd, hdr, CKPT_SEAL_BYTES, 0) == CKPT_SEAL_BYTES ? 0 : -1;
        if (rc && errno == 0) errno = ENOSPC;
    }
    if (!rc && (pread(fd, back, CKPT_SEAL_BYTES, 0) != CKPT_SEAL_BYTES ||
                memcmp(back, hdr, CKPT_SEAL_BYTES) != 0))
        rc = -1, errno = EIO;
    if (rc) snprintf(why, n, "sealing it failed: %s", strerror(errno));
    close(fd);
    return rc;
}

/* ---------------------------------------------------------------- checking */

static int damaged(const char *path, const char *what)
{
    return err_set(MT_EX_DATAERR,
                   "checkpoint %s is damaged: %s; resume from an earlier checkpoint "
                   "(`mpitrain ckpt verify DIR` lists the intact ones)",
                   path, what);
}

/* The seal's fields, or -1 when it is not one (any byte out of place). */
static int seal_parse(const char *h, uint64_t *bytes, char hex[33])
{
    if (memcmp(h, SEAL_MAGIC, SEAL_BYTES_AT) != 0 || memcmp(h + SEAL_BYTES_AT, "bytes ", 6) ||
        h[SEAL_HASH_AT - 1] != '\n' || memcmp(h + SEAL_HASH_AT, "xxh3-128 ", 9) ||
        h[SEAL_END - 1] != '\n')
        return -1;
    *bytes = 0;
    for (int i = SEAL_BYTES_AT + 6; i < SEAL_HASH_AT - 1; i++) {
        if (h[i] < '0' || h[i] > '9') return -1;
        *bytes = *bytes * 10 + (uint64_t)(h[i] - '0');
    }
    for (int i = 0; i < 32; i++) {
        char c = h[SEAL_HEX_AT + i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return -1;
        hex[i] = c;
    }
    hex[32] = 0;
    for (int i = SEAL_END; i < CKPT_SEAL_BYTES; i++)
        if (h[i]) return -1;
    return 0;
}

int ckpt_seal_check(const char *path, int *sealed)
{
    *sealed = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        return err_set(MT_EX_NOINPUT, "checkpoint %s: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return err_set(MT_EX_NOINPUT, "checkpoint %s is not a regular file", path);
    }
    if (seen_intact(&st)) {
        close(fd);
        *sealed = 1;
        return 0;
    }
    char h[CKPT_SEAL_BYTES];
    ssize_t got = pread(fd, h, sizeof h, 0);
    int rc = 0;
    uint64_t bytes = 0;
    char stored[33], hex[33], what[256];
    if (got < 0) {
        rc = err_set(MT_EX_IOERR, "cannot read checkpoint %s: %s", path, strerror(errno));
    } else if (got >= 8 && memcmp(h, HDF5_SIGNATURE, 8) == 0) {
        rc = 0; /* no seal: written before seals existed (or not by mpitrain) */
    } else if (got < (ssize_t)sizeof h || memcmp(h, SEAL_MAGIC, 16) != 0) {
        snprintf(what, sizeof what, "it starts with neither a checkpoint seal nor the HDF5 "
                 "signature (%lld bytes; not a checkpoint, or its first bytes are overwritten)",
                 (long long)st.st_size);
        rc = damaged(path, what);
    } else if (seal_parse(h, &bytes, stored) < 0) {
        rc = damaged(path, "its seal (the first 512 bytes, which hold its hash) is garbled");
    } else if (bytes != (uint64_t)st.st_size) {
        snprintf(what, sizeof what, "it has %lld bytes but was sealed with %llu (%s)",
                 (long long)st.st_size, (unsigned long long)bytes,
                 (uint64_t)st.st_size < bytes ? "truncated" : "bytes were appended");
        rc = damaged(path, what);
    } else {
        memset(h + SEAL_HEX_AT, '0', 32);
        if (hash_file(fd, bytes, h, hex) != 0) {
            rc = err_set(MT_EX_IOERR, "cannot read checkpoint %s: %s", path, strerror(errno));
        } else if (strcmp(hex, stored) != 0) {
            snprintf(what, sizeof what, "its bytes do not match the XXH3-128 it was sealed with "
                     "(stored %s, computed %s): it changed after it was written", stored, hex);
            rc = damaged(path, what);
        } else {
            *sealed = 1;
            seen_add(&st);
        }
    }
    close(fd);
    return rc;
}
