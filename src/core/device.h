/* device.h — where slabs and activations live and how the optimizer and the elementwise
 * passes run: a handle (Device) and a table of functions (DeviceOps) that a backend
 * implements.  "cpu" (device_cpu.c) is the only backend today; CUDA plugs in by filling
 * the same table (docs/design.md, "Module interfaces").
 *
 * Memory: device_alloc gives `bytes` of zeroed device memory, 64-byte aligned (CPU:
 * buffers of 1 MiB or more on 2 MiB boundaries with transparent huge pages, as
 * xaligned); it never returns NULL (the job aborts naming the size).  Free with
 * device_free on the same device.  device_copy moves bytes between host and device
 * memory (DEVICE_H2D, DEVICE_D2H, DEVICE_D2D); on the CPU every kind is a memcpy.
 *
 * Bits, per backend (tests/unit/test_device.c runs every backend against the plain C
 * reference of optim.h on the same inputs):
 *   cpu   optimizer and squared-norm partials: the bits of optim_update and
 *         clip_block_sumsq (the reference itself), optim_update's finite verdict; the
 *         finite scan is finite.h's; memory is host memory.
 * A backend that cannot give the same bits for an operation must say so here and in
 * docs/determinism.md, and the test must state the tolerance it allows. */
#ifndef MPITRAIN_CORE_DEVICE_H
#define MPITRAIN_CORE_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "core/optim.h"

typedef enum { DEVICE_H2D, DEVICE_D2H, DEVICE_D2D } DeviceCopy;

typedef struct Device Device;

typedef struct DeviceOps {
    const char *name; /* "cpu" */
    void (*destroy)(Device *d);
    void *(*alloc)(Device *d, size_t bytes);
    void (*free)(Device *d, void *p);
    void (*copy)(Device *d, void *dst, const void *src, size_t bytes, DeviceCopy kind);
    /* The optimizer step on [lo, hi) of device slabs (optim.h's contract and bits); 1 when
     * it wrote a NaN or inf (optim_update's check), else 0. */
    int (*optim_update)(Device *d, const OptimConf *c, float lr, uint64_t t, float grad_scale,
                        float *params, const float *grads, float *const *states, size_t lo,
                        size_t hi);
    /* Squared-norm partials of the clip blocks in [lo, hi) of a device gradient slab of
     * n floats into host partial[] (optim.h's clip_block_sumsq contract and bits). */
    void (*clip_sumsq)(Device *d, const float *grads, size_t n, size_t lo, size_t hi,
                       double *partial);
    /* The index of the first NaN or ±inf in x[0, n) of device memory, or n when all are
     * finite (core/finite.h's finite_first_bad). */
    size_t (*first_nonfinite)(Device *d, const float *x, size_t n);
} DeviceOps;

struct Device {
    const DeviceOps *ops;
    int index;  /* device number on the node (cpu: 0) */
    void *impl; /* backend state */
};

/* The device named `name` ("cpu"), index `index` on the node.  Returns 0 and *out (free
 * with device_destroy), or MT_EX_CONFIG with err_set() naming the devices this build
 * has. */
int device_create(const char *name, int index, Device **out);
/* The backends of this build, i in [0, device_count()) (tests run every one). */
int device_count(void);
const char *device_name(int i);
static inline void device_destroy(Device *d) { if (d) d->ops->destroy(d); }

static inline void *device_alloc(Device *d, size_t bytes) { return d->ops->alloc(d, bytes); }
/* NULL is a no-op. */
static inline void device_free(Device *d, void *p) { if (p) d->ops->free(d, p); }
static inline void device_copy(Device *d, void *dst, const void *src, size_t bytes, DeviceCopy k)
{
    d->ops->copy(d, dst, src, bytes, k);
}
static inline int device_optim_update(Device *d, const OptimConf *c, float lr, uint64_t t,
                                      float grad_scale, float *params, const float *grads,
                                      float *const *states, size_t lo, size_t hi)
{
    return d->ops->optim_update(d, c, lr, t, grad_scale, params, grads, states, lo, hi);
}
static inline void device_clip_sumsq(Device *d, const float *grads, size_t n, size_t lo,
                                     size_t hi, double *partial)
{
    d->ops->clip_sumsq(d, grads, n, lo, hi, partial);
}

static inline size_t device_first_nonfinite(Device *d, const float *x, size_t n)
{
    return d->ops->first_nonfinite(d, x, n);
}

extern const DeviceOps device_cpu_ops; /* device_cpu.c */

#endif
