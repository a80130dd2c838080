/* h5lock.c — see h5lock.h */
#include "io/h5lock.h"

#include <pthread.h>

#include "core/common.h"

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t g_mutex;

static void h5lock_init(void)
{
    pthread_mutexattr_t a;
    CHECK(pthread_mutexattr_init(&a) == 0);
    CHECK(pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE) == 0);
    CHECK(pthread_mutex_init(&g_mutex, &a) == 0);
    pthread_mutexattr_destroy(&a);
}

void h5_lock(void)
{
    CHECK(pthread_once(&g_once, h5lock_init) == 0);
    CHECK(pthread_mutex_lock(&g_mutex) == 0);
}

void h5_unlock(void)
{
    CHECK(pthread_mutex_unlock(&g_mutex) == 0);
}
