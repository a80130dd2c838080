/* loader.c — batches for consecutive steps, prepared by one background thread.
 *
 * Step t belongs to epoch t / steps_per_epoch at position p = t % steps_per_epoch; its
 * global batch is perm_epoch[p*B, (p+1)*B) and this rank's rows are the micro-batches
 * [mb_lo, mb_hi) of it: global-batch rows [mb_lo*B/M, mb_hi*B/M).  So what a rank reads
 * for a step depends only on (seed, step, B, M, mb range), never on timing, prefetch
 * depth or how many ranks share the batch.
 *
 * Ring: prefetch + 1 preallocated slots, so the thread keeps `prefetch` batches ready
 * while the consumer holds one.  Slot of step t = (t - first_step) % slots; the thread
 * fills it once the batch of step t - slots was released.  No allocation per step. */
#include "io/loader.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"

enum { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_HELD };

typedef struct {
    Batch b;                 /* first member: loader_release finds the slot from it */
    int state;               /* SLOT_* */
    int rc;                  /* read error of this step (0 = ok) */
    char msg[1024];          /* its message */
} Slot;

struct Loader {
    Dataset *ds;             /* not owned */
    LoaderConf c;
    int64_t num_samples, spe;
    int n;                   /* rows per batch on this rank */
    int64_t row_off;         /* first row of this rank within the global batch */
    int sample_size;
    int nslots;
    Slot *slots;             /* (nslots) */
    uint64_t first, next_take, next_fill;
    int stop;
    pthread_mutex_t mu;      /* guards slot states, next_*, stop */
    pthread_cond_t cv;       /* any state change */
    pthread_t thread;
    int64_t *perm;           /* (num_samples) permutation of perm_epoch; thread only */
    int64_t perm_epoch;      /* -1 = none yet */
    int64_t *idx;            /* (n) scratch; thread only */
};

int64_t loader_steps_per_epoch(const Loader *ld) { return ld->spe; }

static void fill(Loader *ld, uint64_t step, Slot *sl)
{
    int64_t epoch = (int64_t)(step / (uint64_t)ld->spe), pos = (int64_t)(step % (uint64_t)ld->spe);
    if (epoch != ld->perm_epoch) {
        dataset_permutation(ld->c.seed, (uint64_t)epoch, ld->num_samples, ld->c.shuffle, ld->perm);
        ld->perm_epoch = epoch;
    }
    const int64_t *p = ld->perm + pos * ld->c.batch + ld->row_off;
    memcpy(ld->idx, p, (size_t)ld->n * sizeof(int64_t));
    err_clear();
    sl->b.step = step;
    sl->rc = sl->b.x8 ? dataset_read_u8(ld->ds, ld->idx, ld->n, sl->b.x8, sl->b.y)
                      : dataset_read(ld->ds, ld->idx, ld->n, sl->b.x, sl->b.y);
    if (sl->rc)
        snprintf(sl->msg, sizeof sl->msg, "step %llu (epoch %lld): %s", (unsigned long long)step,
                 (long long)epoch, err_msg());
}

static void *prefetch_main(void *arg)
{
    Loader *ld = arg;
    CHECK(pthread_mutex_lock(&ld->mu) == 0);
    for (;;) {
        uint64_t step = ld->next_fill;
        Slot *sl = &ld->slots[(step - ld->first) % (uint64_t)ld->nslots];
        while (!ld->stop && sl->state != SLOT_FREE) CHECK(pthread_cond_wait(&ld->cv, &ld->mu) == 0);
        if (ld->stop) break;
        sl->state = SLOT_FILLING;
        CHECK(pthread_mutex_unlock(&ld->mu) == 0);
        fill(ld, step, sl);
        CHECK(pthread_mutex_lock(&ld->mu) == 0);
        sl->state = SLOT_READY;
        ld->next_fill++;
        CHECK(pthread_cond_broadcast(&ld->cv) == 0);
    }
    CHECK(pthread_mutex_unlock(&ld->mu) == 0);
    return NULL;
}

int loader_create(Dataset *ds, const LoaderConf *c, uint64_t first_step, Loader **out)
{
    const DatasetInfo *in = dataset_info(ds);
    *out = NULL;
    if (c->batch < 1 || c->micro_batches < 1 || c->batch % c->micro_batches != 0)
        return err_set(MT_EX_CONFIG, "loader: the batch %d must be a positive multiple of the "
                       "number of micro-batches %d", c->batch, c->micro_batches);
    if (c->mb_lo < 0 || c->mb_hi <= c->mb_lo || c->mb_hi > c->micro_batches)
        return err_set(MT_EX_CONFIG, "loader: micro-batch range [%d, %d) is not a non-empty part "
                       "of [0, %d)", c->mb_lo, c->mb_hi, c->micro_batches);
    if (c->prefetch < 1)
        return err_set(MT_EX_CONFIG, "loader: prefetch %d must be at least 1", c->prefetch);
    if (in->num_samples < c->batch)
        return err_set(MT_EX_CONFIG, "dataset %s has %lld samples, fewer than one batch of %d; "
                       "use a smaller train.batch", in->dir, (long long)in->num_samples, c->batch);
    Loader *ld = xcalloc(1, sizeof *ld);
    ld->ds = ds;
    ld->c = *c;
    ld->num_samples = in->num_samples;
    ld->spe = in->num_samples / c->batch;
    int per_mb = c->batch / c->micro_batches;
    ld->n = (c->mb_hi - c->mb_lo) * per_mb;
    ld->row_off = (int64_t)c->mb_lo * per_mb;
    ld->sample_size = in->sample_size;
    ld->nslots = c->prefetch + 1;
    ld->slots = xcalloc((size_t)ld->nslots, sizeof(Slot));
    for (int i = 0; i < ld->nslots; i++) {
        Slot *sl = &ld->slots[i];
        sl->b.n = ld->n;
        /* uint8 rows travel as stored: the executor normalises them (a quarter of the
         * bytes through this thread, and no conversion on a core the compute needs) */
        sl->b.x8_table = dataset_u8_table(ds);
        if (sl->b.x8_table) sl->b.x8 = xaligned((size_t)ld->n * (size_t)in->sample_size);
        else sl->b.x = xaligned((size_t)ld->n * (size_t)in->sample_size * sizeof(float));
        sl->b.y = xaligned((size_t)ld->n * sizeof(int32_t));
        sl->state = SLOT_FREE;
    }
    ld->first = ld->next_take = ld->next_fill = first_step;
    ld->perm = xmalloc((size_t)in->num_samples * sizeof(int64_t));
    ld->perm_epoch = -1;
    ld->idx = xmalloc((size_t)ld->n * sizeof(int64_t));
    CHECK(pthread_mutex_init(&ld->mu, NULL) == 0);
    CHECK(pthread_cond_init(&ld->cv, NULL) == 0);
    /* the thread blocks the job-control signals so that they reach the main thread */
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int e = pthread_create(&ld->thread, NULL, prefetch_main, ld);
    if (!e) pthread_setname_np(ld->thread, "mt-prefetch"); /* named for top/perf/gdb */
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (e != 0) {
        ld->stop = 1;
        int rc = err_set(MT_EX_OSERR, "loader: cannot start the prefetch thread: %s", strerror(e));
        pthread_cond_destroy(&ld->cv);
        pthread_mutex_destroy(&ld->mu);
        for (int i = 0; i < ld->nslots; i++)
            free(ld->slots[i].b.x), free(ld->slots[i].b.x8), free(ld->slots[i].b.y);
        free(ld->slots);
        free(ld->perm);
        free(ld->idx);
        free(ld);
        return rc;
    }
    *out = ld;
    return 0;
}

static Slot *slot_of(Loader *ld, uint64_t step)
{
    return &ld->slots[(step - ld->first) % (uint64_t)ld->nslots];
}

/* Wait (mu held) until the slot of `step` holds its finished batch. */
static Slot *wait_ready(Loader *ld, uint64_t step)
{
    Slot *sl = slot_of(ld, step);
    for (;;) {
        if (sl->state == SLOT_READY && sl->b.step == step) return sl;
        /* a slot still held by the consumer can never be refilled: a caller bug */
        CHECK(sl->state != SLOT_HELD);
        CHECK(pthread_cond_wait(&ld->cv, &ld->mu) == 0);
    }
}

int loader_next(Loader *ld, uint64_t step, Batch **out)
{
    *out = NULL;
    CHECK(pthread_mutex_lock(&ld->mu) == 0);
    CHECK(step >= ld->next_take); /* steps are consumed in increasing order */
    double t0 = now_s();
    while (ld->next_take < step) { /* skipped steps: drop their batches */
        Slot *sl = wait_ready(ld, ld->next_take);
        sl->state = SLOT_FREE;
        ld->next_take++;
        CHECK(pthread_cond_broadcast(&ld->cv) == 0);
    }
    Slot *sl = wait_ready(ld, step);
    ld->next_take = step + 1;
    int rc = sl->rc;
    if (rc) {
        err_set(rc, "%s", sl->msg);
        sl->state = SLOT_FREE;
        CHECK(pthread_cond_broadcast(&ld->cv) == 0);
    } else {
        sl->state = SLOT_HELD;
        sl->b.wait_s = now_s() - t0;
        *out = &sl->b;
    }
    CHECK(pthread_mutex_unlock(&ld->mu) == 0);
    return rc;
}

void loader_release(Loader *ld, Batch *b)
{
    if (!b) return;
    Slot *sl = (Slot *)b;
    CHECK(sl >= ld->slots && sl < ld->slots + ld->nslots);
    CHECK(pthread_mutex_lock(&ld->mu) == 0);
    CHECK(sl->state == SLOT_HELD);
    sl->state = SLOT_FREE;
    CHECK(pthread_cond_broadcast(&ld->cv) == 0);
    CHECK(pthread_mutex_unlock(&ld->mu) == 0);
}

void loader_destroy(Loader *ld)
{
    if (!ld) return;
    CHECK(pthread_mutex_lock(&ld->mu) == 0);
    ld->stop = 1;
    CHECK(pthread_cond_broadcast(&ld->cv) == 0);
    CHECK(pthread_mutex_unlock(&ld->mu) == 0);
    CHECK(pthread_join(ld->thread, NULL) == 0);
    pthread_cond_destroy(&ld->cv);
    pthread_mutex_destroy(&ld->mu);
    for (int i = 0; i < ld->nslots; i++) {
        free(ld->slots[i].b.x);
        free(ld->slots[i].b.x8);
        free(ld->slots[i].b.y);
    }
    free(ld->slots);
    free(ld->perm);
    free(ld->idx);
    free(ld);
}
