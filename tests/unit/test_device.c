/* test_device.c — every device backend (device.h) against the host reference, the way
 * ggml's test-backend-ops runs every op of every backend: memory (zeroed, aligned,
 * copies both ways), the optimizer step and the clip partials on device slabs (bits
 * equal to optim.h's functions on host copies), and OptStep (optstep.h): any cut of the
 * slab into ranges with compact state offsets gives the bits of one whole update. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/device.h"
#include "core/optim.h"
#include "core/optstep.h"
#include "core/rng.h"

#define N 10007 /* not a multiple of anything */

static void fill(float *v, size_t n, uint64_t seed, float scale)
{
    uint64_t key = rng_key(seed, 7, 1);
    for (size_t i = 0; i < n; i++) v[i] = (float)(scale * rng_normal(key, i));
}

static const OptimConf CONFS[] = {
    {.kind = OPTIM_SGD, .weight_decay = 0.01f},
    {.kind = OPTIM_SGD, .momentum = 0.9f, .nesterov = 1, .weight_decay = 0.001f},
    {.kind = OPTIM_ADAMW, .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.05f},
};

/* host buffers -> device, three steps on the device, back; the same on the host */
static void check_backend_optim(Device *d, const OptimConf *c)
{
    size_t bytes = N * sizeof(float);
    int ns = optim_nstates(c);
    float *hp = xaligned(bytes), *hg = xaligned(bytes), *hs[2] = {xaligned(bytes), xaligned(bytes)};
    float *rp = xaligned(bytes), *rs[2] = {xaligned(bytes), xaligned(bytes)};
    fill(hp, N, 1, 1.0f);
    memcpy(rp, hp, bytes);
    float *dp = device_alloc(d, bytes), *dg = device_alloc(d, bytes);
    float *ds[2] = {device_alloc(d, bytes), device_alloc(d, bytes)};
    device_copy(d, dp, hp, bytes, DEVICE_H2D);
    for (uint64_t t = 1; t <= 3; t++) {
        fill(hg, N, 10 + t, 0.1f);
        device_copy(d, dg, hg, bytes, DEVICE_H2D);
        float lr = 0.01f * (float)t, gs = t == 2 ? 0.5f : 1.0f;
        device_optim_update(d, c, lr, t, gs, dp, dg, ns ? ds : NULL, 0, N);
        optim_update(c, lr, t, gs, rp, hg, ns ? rs : NULL, 0, N);
    }
    device_copy(d, hp, dp, bytes, DEVICE_D2H);
    assert_memory_equal(hp, rp, bytes);
    for (int k = 0; k < ns; k++) {
        device_copy(d, hs[k], ds[k], bytes, DEVICE_D2H);
        assert_memory_equal(hs[k], rs[k], bytes);
    }
    /* clip partials of the device gradient equal the host's */
    size_t nb = clip_nblocks(N);
    double *pd = xcalloc(nb, sizeof(double)), *ph = xcalloc(nb, sizeof(double));
    device_clip_sumsq(d, dg, N, 0, N, pd);
    clip_block_sumsq(hg, N, 0, N, ph);
    assert_memory_equal(pd, ph, nb * sizeof(double));
    free(pd);
    free(ph);
    device_free(d, dp);
    device_free(d, dg);
    for (int k = 0; k < 2; k++) {
        device_free(d, ds[k]);
        free(hs[k]);
        free(rs[k]);
    }
    free(hp);
    free(hg);
    free(rp);
}

static void test_every_backend(void **state)
{
    (void)state;
    assert_true(device_count() >= 1);
    for (int i = 0; i < device_count(); i++) {
        Device *d = NULL;
        assert_int_equal(device_create(device_name(i), 0, &d), 0);
        assert_string_equal(d->ops->name, device_name(i));
        /* memory: zeroed and 64-byte aligned, small and large */
        size_t sizes[] = {4, 4096, 3u << 20};
        for (size_t s = 0; s < 3; s++) {
            unsigned char *p = device_alloc(d, sizes[s]), *h = xcalloc(sizes[s], 1);
            assert_true(((uintptr_t)p & 63) == 0);
            device_copy(d, h, p, sizes[s], DEVICE_D2H);
            for (size_t j = 0; j < sizes[s]; j++) assert_int_equal(h[j], 0);
            device_free(d, p);
            free(h);
        }
        device_free(d, NULL); /* no-op */
        for (size_t c = 0; c < sizeof CONFS / sizeof *CONFS; c++) check_backend_optim(d, &CONFS[c]);
        device_destroy(d);
    }
}

static void test_unknown_device(void **state)
{
    (void)state;
    Device *d = (Device *)1;
    assert_int_equal(device_create("tpu", 0, &d), MT_EX_CONFIG);
    assert_null(d);
    assert_non_null(strstr(err_msg(), "device 'tpu'"));
    assert_non_null(strstr(err_msg(), "cpu"));
}

/* OptStep over pieces [lo, hi) with compact state at off: the bits of one update */
static void test_optstep_pieces(void **state)
{
    (void)state;
    Device *d;
    assert_int_equal(device_create("cpu", 0, &d), 0);
    const OptimConf *c = &CONFS[2];
    size_t bytes = N * sizeof(float);
    float *p1 = xaligned(bytes), *p2 = xaligned(bytes), *g = xaligned(bytes);
    float *s1[2] = {xaligned(bytes), xaligned(bytes)}, *s2[2] = {xaligned(bytes), xaligned(bytes)};
    fill(p1, N, 3, 1.0f);
    memcpy(p2, p1, bytes);
    fill(g, N, 4, 0.2f);
    OptStep whole, cut;
    optstep_begin(&whole, d, c, 0.003f, 5, p1, g, s1, 2);
    optstep_begin(&cut, d, c, 0.003f, 5, p2, g, s2, 2);
    /* clipping sets the same scale on both */
    size_t nb = clip_nblocks(N);
    double *part = xcalloc(nb, sizeof(double)), norm = 0;
    clip_block_sumsq(g, N, 0, N, part);
    float sc = optstep_clip(&whole, part, nb, 1.0f, &norm);
    assert_true(sc > 0 && sc < 1); /* the norm of 10007 N(0, 0.04) values is ~20 */
    assert_true(optstep_clip(&cut, part, nb, 1.0f, &norm) == sc);
    optstep_update(&whole, 0, N, 0);
    /* pieces in reverse order, state packed from 0 in that order */
    size_t cuts[] = {0, 17, 4096, 5000, 9999, N};
    size_t off = 0;
    size_t offs[5];
    for (int k = 0; k < 5; k++) { offs[k] = off; off += cuts[k + 1] - cuts[k]; }
    for (int k = 4; k >= 0; k--) optstep_update(&cut, cuts[k], cuts[k + 1], offs[k]);
    assert_memory_equal(p1, p2, bytes); /* offsets equal positions here: same state layout */
    for (int k = 0; k < 2; k++) assert_memory_equal(s1[k], s2[k], bytes);
    /* no clipping: scale 1 and NaN norm */
    assert_true(optstep_clip(&cut, part, nb, 0.0f, &norm) == 1.0f);
    assert_true(isnan(norm));
    free(part);
    free(p1);
    free(p2);
    free(g);
    for (int k = 0; k < 2; k++) { free(s1[k]); free(s2[k]); }
    device_destroy(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_backend),
        cmocka_unit_test(test_unknown_device),
        cmocka_unit_test(test_optstep_pieces),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
