/* h5.c — see h5.h */
#include "io/h5.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"

/* ---------------------------------------------------------------- the lock */

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t g_mutex;
static int g_auto_off; /* guarded by the lock: HDF5's error printing has been turned off */

static void mutex_make(void)
{
    pthread_mutexattr_t a;
    CHECK(pthread_mutexattr_init(&a) == 0);
    CHECK(pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE) == 0);
    CHECK(pthread_mutex_init(&g_mutex, &a) == 0);
    pthread_mutexattr_destroy(&a);
}

/* In a child made by fork() the lock is held by a thread that does not exist there:
 * start it afresh (h5_isolated forks while holding it, so HDF5 is between calls). */
static void lock_after_fork(void) { mutex_make(); }

static void lock_init(void)
{
    mutex_make();
    CHECK(pthread_atfork(NULL, NULL, lock_after_fork) == 0);
}

void h5_lock(void)
{
    CHECK(pthread_once(&g_once, lock_init) == 0);
    CHECK(pthread_mutex_lock(&g_mutex) == 0);
    if (!g_auto_off) {
        /* once for the process: HDF5 prints nothing, neither error stacks (HDF5-DIAG)
         * nor, at exit, "infinite loop closing library" (H5_term_library prints that
         * only while automatic error printing is on) */
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        g_auto_off = 1;
    }
}

void h5_unlock(void)
{
    CHECK(pthread_mutex_unlock(&g_mutex) == 0);
}

/* ---------------------------------------------------------------- quiet mode */

void h5_quiet_lock(void) { h5_lock(); }

void h5_quiet_unlock(void) { h5_unlock(); }

/* ---------------------------------------------------------------- error text */

typedef struct {
    char *buf;  /* innermost non-empty message */
    size_t n;
    int err_no; /* first "errno = N" from the innermost entry outwards */
} ErrWalk;

static herr_t errwalk_cb(unsigned n, const H5E_error2_t *e, void *data)
{
    (void)n;
    ErrWalk *w = data;
    const char *d = e->desc ? e->desc : "";
    const char *p = strstr(d, "errno = ");
    if (p && !w->err_no) w->err_no = atoi(p + 8);
    if (d[0] && !w->buf[0]) snprintf(w->buf, w->n, "%s", d); /* upward: innermost first */
    return 0;
}

/* Walk the error stack from the innermost entry; clear it if asked. */
static int errwalk(char *buf, size_t n, int clear)
{
    ErrWalk w = {buf, n, 0};
    buf[0] = 0;
    h5_lock();
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, errwalk_cb, &w);
    if (clear) H5Eclear2(H5E_DEFAULT);
    h5_unlock();
    return w.err_no;
}

const char *h5_why(char *buf, size_t n)
{
    char d[256];
    int e = errwalk(d, sizeof d, 1);
    if (e)
        snprintf(buf, n, "%s (errno %d)", strerror(e), e);
    else if (d[0])
        snprintf(buf, n, "%.200s", d);
    else
        snprintf(buf, n, "HDF5 error");
    return buf;
}

void h5_detail(char *buf, size_t n)
{
    if (n == 0) return;
    errwalk(buf, n, 0);
    if (!buf[0]) snprintf(buf, n, "no HDF5 detail");
}

void h5_type_name(hid_t type, char *buf, size_t n)
{
    h5_lock();
    H5T_class_t c = H5Tget_class(type);
    size_t size = H5Tget_size(type);
    switch (c) {
    case H5T_INTEGER:
        snprintf(buf, n, "%sint%zu", H5Tget_sign(type) == H5T_SGN_NONE ? "u" : "", size * 8);
        break;
    case H5T_FLOAT: snprintf(buf, n, "float%zu", size * 8); break;
    case H5T_STRING: snprintf(buf, n, "string"); break;
    case H5T_COMPOUND: snprintf(buf, n, "compound"); break;
    case H5T_ARRAY: snprintf(buf, n, "array"); break;
    case H5T_ENUM: snprintf(buf, n, "enum"); break;
    default: snprintf(buf, n, "HDF5 type class %d", (int)c); break;
    }
    h5_unlock();
}

/* ---------------------------------------------------------------- attribute writers */

int h5_attr_put(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *v,
                hsize_t n)
{
    h5_quiet_lock();
    hid_t sp = n ? H5Screate_simple(1, &n, NULL) : H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = a < 0 ? -1 : H5Awrite(a, mtype, v);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    h5_quiet_unlock();
    return e < 0 ? -1 : 0;
}

int h5_attr_put_u64(hid_t obj, const char *name, uint64_t v)
{
    return h5_attr_put(obj, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v, 0);
}

int h5_attr_put_i32(hid_t obj, const char *name, int v)
{
    return h5_attr_put(obj, name, H5T_STD_I32LE, H5T_NATIVE_INT, &v, 0);
}

int h5_attr_put_str(hid_t obj, const char *name, const char *s)
{
    h5_quiet_lock();
    hid_t t = H5Tcopy(H5T_C_S1);
    int rc = H5Tset_size(t, H5T_VARIABLE) < 0 || H5Tset_cset(t, H5T_CSET_UTF8) < 0 ? -1 : 0;
    const char *v = s ? s : "";
    if (!rc) rc = h5_attr_put(obj, name, t, t, &v, 0);
    H5Tclose(t);
    h5_quiet_unlock();
    return rc;
}

int h5_attr_put_fstr(hid_t obj, const char *name, const char *s)
{
    const char *v = s ? s : "";
    size_t len = strlen(v);
    h5_quiet_lock();
    hid_t t = H5Tcopy(H5T_C_S1);
    int rc = H5Tset_size(t, len ? len : 1) < 0 || H5Tset_strpad(t, H5T_STR_NULLPAD) < 0 ||
                     H5Tset_cset(t, H5T_CSET_UTF8) < 0
                 ? -1
                 : 0;
    char *buf = xcalloc(len + 1, 1);
    memcpy(buf, v, len);
    if (!rc) rc = h5_attr_put(obj, name, t, t, buf, 0);
    free(buf);
    H5Tclose(t);
    h5_quiet_unlock();
    return rc;
}

/* ---------------------------------------------------------------- attribute readers */

/* Open attribute `name` of obj holding one element: *a and *t (its type) open, or a
 * status with both -1.  Quiet lock held. */
static H5AttrStatus attr_open1(hid_t obj, const char *name, hid_t *a, hid_t *t,
                               H5AttrFail *fail)
{
    *a = *t = -1;
    if (H5Aexists(obj, name) <= 0) return H5_ATTR_MISSING;
    *a = H5Aopen(obj, name, H5P_DEFAULT);
    if (*a < 0) return H5_ATTR_UNREADABLE;
    *t = H5Aget_type(*a);
    hid_t sp = H5Aget_space(*a);
    hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    if (sp >= 0) H5Sclose(sp);
    if (*t < 0 || np != 1) {
        if (*t >= 0) H5Tclose(*t);
        H5Aclose(*a);
        *a = *t = -1;
        if (fail) fail->count = (long long)np;
        return H5_ATTR_NOT_ONE;
    }
    return H5_ATTR_OK;
}

H5AttrStatus h5_attr_get_str(hid_t obj, const char *name, char *buf, size_t n,
                             H5AttrFail *fail)
{
    hid_t a, t;
    if (n) buf[0] = 0;
    h5_quiet_lock();
    H5AttrStatus st = attr_open1(obj, name, &a, &t, fail);
    if (st) goto out;
    if (H5Tget_class(t) != H5T_STRING) {
        if (fail) h5_type_name(t, fail->type, sizeof fail->type);
        st = H5_ATTR_WRONG_TYPE;
    } else {
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_cset(mt, H5Tget_cset(t));
        st = H5_ATTR_READ_FAILED;
        if (H5Tis_variable_str(t) > 0) {
            char *s = NULL;
            H5Tset_size(mt, H5T_VARIABLE);
            if (H5Aread(a, mt, &s) >= 0 && s) {
                snprintf(buf, n, "%s", s);
                H5free_memory(s);
                st = H5_ATTR_OK;
            }
        } else {
            size_t sz = H5Tget_size(t);
            char *s = xcalloc(sz + 1, 1);
            H5Tset_size(mt, sz + 1);
            H5Tset_strpad(mt, H5T_STR_NULLTERM);
            if (H5Aread(a, mt, s) >= 0) {
                while (sz > 0 && (s[sz - 1] == ' ' || s[sz - 1] == 0)) s[--sz] = 0;
                snprintf(buf, n, "%s", s);
                st = H5_ATTR_OK;
            }
            free(s);
        }
        H5Tclose(mt);
    }
    H5Tclose(t);
    H5Aclose(a);
out:
    h5_quiet_unlock();
    return st;
}

H5AttrStatus h5_attr_get_num(hid_t obj, const char *name, hid_t mtype, int allow_float,
                             void *v, H5AttrFail *fail)
{
    hid_t a, t;
    h5_quiet_lock();
    H5AttrStatus st = attr_open1(obj, name, &a, &t, fail);
    if (st) goto out;
    H5T_class_t c = H5Tget_class(t);
    if (!(c == H5T_INTEGER || (allow_float && c == H5T_FLOAT))) {
        if (fail) h5_type_name(t, fail->type, sizeof fail->type);
        st = H5_ATTR_WRONG_TYPE;
    } else if (H5Aread(a, mtype, v) < 0) {
        st = H5_ATTR_READ_FAILED;
    }
    H5Tclose(t);
    H5Aclose(a);
out:
    h5_quiet_unlock();
    return st;
}
