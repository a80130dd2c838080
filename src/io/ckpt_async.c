/* ckpt_async.c — background checkpoint writer (see ckpt.h).
 *
 * Training pauses for ckpt_async_submit: wait for the previous write (if one is still
 * running), then memcpy the slabs into a snapshot owned here.  The writer thread runs
 * ckpt_write on the snapshot; HDF5 calls inside are serialised with h5_lock in bounded
 * pieces, so the data reader keeps going.  One write at most is in flight, so there is
 * one snapshot. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "io/ckpt.h"

#define ASYNC_MAX_STATES 4

struct CkptAsync {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int pending;  /* a job is queued, not yet taken by the thread */
    int busy;     /* a job is queued or running */
    int quit;
    int status;   /* status of the last finished write, until collected */
    int copied;   /* the snapshot of the queued/running job holds its data */
    const float *src_params;                 /* deferred copy: the caller's slabs */
    const float *src_states[ASYNC_MAX_STATES];
    char errmsg[2048];
    char last_path[4096];
    /* the snapshot (owned) */
    float *params;              /* (cap) */
    float *states[ASYNC_MAX_STATES]; /* (cap) each, ncap_states of them */
    size_t cap;
    int ncap_states;
    char *mode, *config;
    OptimConf optim;
    CkptState st;
    char dir[4096];
    int keep;
};

static void *async_main(void *arg)
{
    CkptAsync *a = arg;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (!a->pending && !a->quit) pthread_cond_wait(&a->cv, &a->mu);
        if (!a->pending && a->quit) break;
        a->pending = 0;
        int copy = !a->copied;
        pthread_mutex_unlock(&a->mu);
        if (copy) {
            /* deferred submit: take the snapshot here, while training reads the same slabs */
            size_t n = a->st.model->nparams;
            memcpy(a->params, a->src_params, n * sizeof(float));
            for (int i = 0; i < a->st.nstates; i++) memcpy(a->states[i], a->src_states[i], n * sizeof(float));
            pthread_mutex_lock(&a->mu);
            a->copied = 1;
            pthread_cond_broadcast(&a->cv);
            pthread_mutex_unlock(&a->mu);
        }
        char path[4096] = "";
        int rc = ckpt_write(a->dir, &a->st, a->keep, path, sizeof path);
        pthread_mutex_lock(&a->mu);
        a->status = rc;
        if (rc)
            snprintf(a->errmsg, sizeof a->errmsg, "%s", err_msg());
        else
            snprintf(a->last_path, sizeof a->last_path, "%s", path);
        a->busy = 0;
        pthread_cond_broadcast(&a->cv);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

CkptAsync *ckpt_async_create(void)
{
    CkptAsync *a = xcalloc(1, sizeof *a);
    CHECK(pthread_mutex_init(&a->mu, NULL) == 0);
    CHECK(pthread_cond_init(&a->cv, NULL) == 0);
    if (pthread_create(&a->thread, NULL, async_main, a) != 0)
        fatal(MT_EX_OSERR, "cannot start the checkpoint writer thread");
    return a;
}

/* Caller holds no job in flight (busy == 0). */
static void snapshot_reserve(CkptAsync *a, size_t nparams, int nstates)
{
    CHECK(nstates >= 0 && nstates <= ASYNC_MAX_STATES);
    if (nparams > a->cap) {
        free(a->params);
        for (int i = 0; i < a->ncap_states; i++) free(a->states[i]);
        a->ncap_states = 0;
        a->params = xaligned(nparams * sizeof(float)); /* zeroed: pages touched now */
        a->cap = nparams;
    }
    while (a->ncap_states < nstates) a->states[a->ncap_states++] = xaligned(a->cap * sizeof(float));
}

void ckpt_async_reserve(CkptAsync *a, size_t nparams, int nstates)
{
    pthread_mutex_lock(&a->mu);
    while (a->busy) pthread_cond_wait(&a->cv, &a->mu);
    snapshot_reserve(a, nparams, nstates);
    pthread_mutex_unlock(&a->mu);
}

static int submit(CkptAsync *a, const CkptState *s, const char *dir, int keep, int deferred)
{
    CHECK(a && s && s->model && s->params && dir);
    CHECK(s->nstates >= 0 && s->nstates <= ASYNC_MAX_STATES);
    pthread_mutex_lock(&a->mu);
    while (a->busy) pthread_cond_wait(&a->cv, &a->mu);
    if (a->status) {
        int rc = a->status;
        a->status = 0;
        err_set(rc, "%s", a->errmsg);
        pthread_mutex_unlock(&a->mu);
        return rc;
    }
    /* the thread is idle: the snapshot is ours until pending is set */
    size_t n = s->model->nparams;
    snapshot_reserve(a, n, s->nstates);
    if (deferred) {
        a->src_params = s->params;
        for (int i = 0; i < s->nstates; i++) a->src_states[i] = s->states[i];
        a->copied = 0;
    } else {
        memcpy(a->params, s->params, n * sizeof(float));
        for (int i = 0; i < s->nstates; i++) memcpy(a->states[i], s->states[i], n * sizeof(float));
        a->copied = 1;
    }
    free(a->mode);
    free(a->config);
    a->mode = xstrdup(s->mode ? s->mode : "");
    a->config = xstrdup(s->config_text ? s->config_text : "");
    a->st = *s;
    a->st.mode = a->mode;
    a->st.config_text = a->config;
    a->st.params = a->params;
    a->st.states = (const float *const *)a->states;
    if (s->optim) {
        a->optim = *s->optim;
        a->st.optim = &a->optim;
    }
    snprintf(a->dir, sizeof a->dir, "%s", dir);
    a->keep = keep;
    a->pending = 1;
    a->busy = 1;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    return 0;
}

int ckpt_async_submit(CkptAsync *a, const CkptState *s, const char *dir, int keep)
{
    return submit(a, s, dir, keep, 0);
}

int ckpt_async_submit_deferred(CkptAsync *a, const CkptState *s, const char *dir, int keep)
{
    return submit(a, s, dir, keep, 1);
}

double ckpt_async_fence(CkptAsync *a)
{
    double t0 = now_s();
    pthread_mutex_lock(&a->mu);
    while (a->busy && !a->copied) pthread_cond_wait(&a->cv, &a->mu);
    pthread_mutex_unlock(&a->mu);
    return now_s() - t0;
}

int ckpt_async_wait(CkptAsync *a, char *path_out, size_t n)
{
    pthread_mutex_lock(&a->mu);
    while (a->busy) pthread_cond_wait(&a->cv, &a->mu);
    int rc = a->status;
    a->status = 0;
    if (rc) err_set(rc, "%s", a->errmsg);
    if (path_out && n) snprintf(path_out, n, "%s", rc ? "" : a->last_path);
    pthread_mutex_unlock(&a->mu);
    return rc;
}

void ckpt_async_destroy(CkptAsync *a)
{
    if (!a) return;
    pthread_mutex_lock(&a->mu);
    while (a->busy) pthread_cond_wait(&a->cv, &a->mu);
    a->quit = 1;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
    pthread_join(a->thread, NULL);
    if (a->status) log_error("checkpoint write failed (not collected): %s", a->errmsg);
    free(a->params);
    for (int i = 0; i < a->ncap_states; i++) free(a->states[i]);
    free(a->mode);
    free(a->config);
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    free(a);
}
