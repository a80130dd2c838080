/* device_cpu.c — the host as a device (device.h): memory from xaligned, the optimizer
 * and the norm partials of optim.c, the finite check of finite.c. */
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/device.h"
#include "core/finite.h"

static void cpu_destroy(Device *d) { free(d); }
static void *cpu_alloc(Device *d, size_t bytes)
{
    (void)d;
    return xaligned(bytes);
}
static void cpu_free(Device *d, void *p)
{
    (void)d;
    free(p);
}
static void cpu_copy(Device *d, void *dst, const void *src, size_t bytes, DeviceCopy kind)
{
    (void)d;
    (void)kind;
    if (bytes && dst != src) memmove(dst, src, bytes);
}
static int cpu_optim_update(Device *d, const OptimConf *c, float lr, uint64_t t, float gs,
                            float *params, const float *grads, float *const *states, size_t lo,
                            size_t hi)
{
    (void)d;
    return optim_update(c, lr, t, gs, params, grads, states, lo, hi);
}
static void cpu_clip_sumsq(Device *d, const float *grads, size_t n, size_t lo, size_t hi,
                           double *partial)
{
    (void)d;
    clip_block_sumsq(grads, n, lo, hi, partial);
}
static size_t cpu_first_nonfinite(Device *d, const float *x, size_t n)
{
    (void)d;
    return finite_first_bad(x, n);
}

const DeviceOps device_cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .copy = cpu_copy,
    .optim_update = cpu_optim_update,
    .clip_sumsq = cpu_clip_sumsq,
    .first_nonfinite = cpu_first_nonfinite,
};
