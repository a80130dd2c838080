/* test_finite.c — the finite checks: finite_first_bad (core/finite.h) against isfinite at
 * every position, length and alignment, for every NaN/inf bit pattern, on every device
 * backend (DeviceOps.first_nonfinite); optim_update's verdict for every optimizer, at
 * every lane of its vector loops and tails; the optimizer step's check (core/optstep.h):
 * the first bad element whatever the range order or thread, a NaN or inf gradient, an
 * overflow of Adam's v with a finite gradient, the bits of the update unchanged; and the
 * trainer's refusal to checkpoint non-finite state (train_report_check_state), naming
 * layer, parameter and element. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/device.h"
#include "core/finite.h"
#include "core/optstep.h"
#include "train/train_impl.h"

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* the reference: the first i with !isfinite(x[i]) */
static size_t ref_first(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return i;
    return n;
}

static void test_first_bad_every_position(void **state)
{
    (void)state;
    const uint32_t bad[] = {0x7fc00000u, 0xffc00000u, 0x7f800001u, 0x7fffffffu,
                            0x7f800000u, 0xff800000u};
    const float good[] = {0.0f, -0.0f, 1.0f, FLT_MAX, -FLT_MAX, FLT_MIN, from_bits(1u),
                          from_bits(0x7f7fffffu), from_bits(0x807fffffu)};
    const size_t lens[] = {0, 1, 5, 63, 64, 65, 127, 128, 129, 300};
    float *buf = malloc(sizeof(float) * 304);
    for (size_t li = 0; li < sizeof lens / sizeof *lens; li++) {
        size_t n = lens[li];
        for (int align = 0; align < 3; align++) {
            float *x = buf + align;
            for (size_t i = 0; i < n; i++) x[i] = good[(i * 7) % (sizeof good / sizeof *good)];
            assert_int_equal(finite_first_bad(x, n), n);
            for (size_t p = 0; p < n; p++) {
                for (size_t b = 0; b < sizeof bad / sizeof *bad; b++) {
                    x[p] = from_bits(bad[b]);
                    assert_int_equal(finite_first_bad(x, n), p);
                    if (p + 1 < n) { /* a second one later: still the first */
                        float keep = x[n - 1];
                        x[n - 1] = from_bits(bad[(b + 1) % 6]);
                        assert_int_equal(finite_first_bad(x, n), p);
                        x[n - 1] = keep;
                    }
                }
                x[p] = good[p % 3];
            }
        }
    }
    free(buf);
    assert_string_equal(finite_kind(NAN), "NaN");
    assert_string_equal(finite_kind(INFINITY), "inf");
    assert_string_equal(finite_kind(-INFINITY), "-inf");
    assert_string_equal(finite_kind(1.0f), "finite");
}

/* Every device backend's first_nonfinite agrees with the reference on random data. */
static void test_device_backends(void **state)
{
    (void)state;
    const size_t n = 5000;
    float *x = malloc(sizeof(float) * n);
    uint64_t s = 12345;
    for (int d = 0; d < device_count(); d++) {
        Device *dev;
        assert_int_equal(device_create(device_name(d), 0, &dev), 0);
        float *dx = device_alloc(dev, sizeof(float) * n);
        for (int trial = 0; trial < 50; trial++) {
            for (size_t i = 0; i < n; i++) {
                s = s * 6364136223846793005ull + 1442695040888963407ull;
                uint32_t u = (uint32_t)(s >> 32);
                /* mostly finite; about one value in 2000 non-finite */
                if ((u & 2047u) != 0) u &= 0xbfffffffu;
                x[i] = from_bits(u);
            }
            device_copy(dev, dx, x, sizeof(float) * n, DEVICE_H2D);
            assert_int_equal(device_first_nonfinite(dev, dx, n), ref_first(x, n));
            assert_int_equal(device_first_nonfinite(dev, dx + 1, n - 1), ref_first(x + 1, n - 1));
        }
        device_free(dev, dx);
        device_destroy(dev);
    }
    free(x);
}

/* ---------------------------------------------------------------- the optimizer step */

#define NP 40000

typedef struct {
    Device *d;
    OptimConf oc;
    float *p, *g, *s[2];
} Slabs;

static void slabs_init(Slabs *sl, OptimKind kind)
{
    assert_int_equal(device_create("cpu", 0, &sl->d), 0);
    memset(&sl->oc, 0, sizeof sl->oc);
    sl->oc.kind = kind;
    sl->oc.momentum = kind == OPTIM_SGD ? 0.9f : 0.0f;
    sl->oc.beta1 = 0.9f, sl->oc.beta2 = 0.999f, sl->oc.eps = 1e-8f;
    sl->oc.weight_decay = 0.01f;
    sl->p = xaligned(NP * sizeof(float));
    sl->g = xaligned(NP * sizeof(float));
    for (int k = 0; k < 2; k++) sl->s[k] = xaligned(NP * sizeof(float));
    for (size_t i = 0; i < NP; i++) {
        sl->p[i] = (float)((int)(i % 97) - 48) / 64.0f;
        sl->g[i] = (float)((int)(i % 31) - 15) / 128.0f;
    }
}

static void slabs_free(Slabs *sl)
{
    free(sl->p);
    free(sl->g);
    for (int k = 0; k < 2; k++) free(sl->s[k]);
    device_destroy(sl->d);
}

static void begin(OptStep *os, Slabs *sl)
{
    optstep_begin(os, sl->d, &sl->oc, 0.01f, 3, sl->p, sl->g, sl->s,
                  optim_nstates(&sl->oc));
}

static void test_optstep_finite_and_bits(void **state)
{
    (void)state;
    for (int kind = 0; kind < 2; kind++) {
        Slabs a, b;
        slabs_init(&a, kind ? OPTIM_ADAMW : OPTIM_SGD);
        slabs_init(&b, kind ? OPTIM_ADAMW : OPTIM_SGD);
        OptStep os;
        begin(&os, &a);
        optstep_update(&os, 0, NP, 0);
        size_t idx;
        int arr;
        float v;
        assert_int_equal(optstep_nonfinite(&os, &idx, &arr, &v), 0);
        /* the same bits as one optim_update of the whole range */
        optim_update(&b.oc, 0.01f, 3, 1.0f, b.p, b.g, b.s, 0, NP);
        assert_memory_equal(a.p, b.p, NP * sizeof(float));
        for (int k = 0; k < optim_nstates(&a.oc); k++)
            assert_memory_equal(a.s[k], b.s[k], NP * sizeof(float));
        slabs_free(&a);
        slabs_free(&b);
    }
}

/* optim_update says 1 exactly when it wrote a non-finite value: every optimizer, a bad
 * gradient at every position of a range with vector blocks and a tail (and a range of
 * the tail alone). */
static void test_optim_verdict(void **state)
{
    (void)state;
    const size_t lens[2] = {53, 3};
    for (int kind = 0; kind < 4; kind++) {
        Slabs a;
        slabs_init(&a, kind == 3 ? OPTIM_ADAMW : OPTIM_SGD);
        a.oc.momentum = kind == 0 ? 0.0f : 0.9f;
        a.oc.nesterov = kind == 2;
        for (int li = 0; li < 2; li++) {
            size_t n = lens[li];
            assert_int_equal(optim_update(&a.oc, 0.01f, 2, 1.0f, a.p, a.g, a.s, 100, 100 + n), 0);
            for (size_t pos = 0; pos < n; pos++) {
                float keep = a.g[100 + pos];
                a.g[100 + pos] = pos % 2 ? INFINITY : NAN;
                assert_int_equal(optim_update(&a.oc, 0.01f, 2, 1.0f, a.p, a.g, a.s, 100, 100 + n),
                                 1);
                a.g[100 + pos] = keep;
                /* repair what it wrote, so the next position starts finite */
                a.p[100 + pos] = 0.5f;
                a.s[0][100 + pos] = a.s[1][100 + pos] = 0.0f;
            }
        }
        slabs_free(&a);
    }
}

/* A NaN gradient (sgd) and an inf gradient (adamw: inf/inf) make the parameter NaN; the
 * first one is reported whatever order the ranges come in. */
static void test_optstep_bad_gradient(void **state)
{
    (void)state;
    for (int kind = 0; kind < 2; kind++) {
        Slabs a;
        slabs_init(&a, kind ? OPTIM_ADAMW : OPTIM_SGD);
        a.g[30001] = kind ? INFINITY : NAN;
        a.g[20000] = kind ? -INFINITY : NAN;
        OptStep os;
        begin(&os, &a);
        optstep_update(&os, 20000, NP, 0); /* state packed from 0, as a shard */
        optstep_update(&os, 0, 20000, 20000);
        size_t idx;
        int arr;
        float v;
        assert_int_equal(optstep_nonfinite(&os, &idx, &arr, &v), 1);
        assert_int_equal(idx, 20000);
        assert_int_equal(arr, 0);
        assert_true(isnan(v));
        slabs_free(&a);
    }
}

/* Adam with a finite gradient whose square overflows: v = inf while p stays finite (the
 * step is lr*m/inf = 0): the state is caught. */
static void test_optstep_state_overflow(void **state)
{
    (void)state;
    Slabs a;
    slabs_init(&a, OPTIM_ADAMW);
    a.g[777] = 1e30f;
    OptStep os;
    begin(&os, &a);
    optstep_update(&os, 0, NP, 0);
    assert_true(isfinite(a.p[777]) && isinf(a.s[1][777]));
    size_t idx;
    int arr;
    float v;
    assert_int_equal(optstep_nonfinite(&os, &idx, &arr, &v), 1);
    assert_int_equal(idx, 777);
    assert_int_equal(arr, 2); /* state 1: "v" */
    assert_true(isinf(v) && v > 0);
    slabs_free(&a);
}

typedef struct {
    OptStep *os;
    size_t lo, hi;
} Part;

static void *update_part(void *arg)
{
    Part *p = arg;
    optstep_update(p->os, p->lo, p->hi, p->lo);
    return NULL;
}

/* Threads updating disjoint ranges at once: the lowest bad index wins. */
static void test_optstep_threads(void **state)
{
    (void)state;
    Slabs a;
    slabs_init(&a, OPTIM_SGD);
    for (size_t i = 1000; i < NP; i += 9000) a.g[i] = NAN;
    OptStep os;
    begin(&os, &a);
    pthread_t th[4];
    Part parts[4];
    for (int k = 0; k < 4; k++) {
        parts[k] = (Part){&os, (size_t)(3 - k) * NP / 4, (size_t)(4 - k) * NP / 4};
        assert_int_equal(pthread_create(&th[k], NULL, update_part, &parts[k]), 0);
    }
    for (int k = 0; k < 4; k++) pthread_join(th[k], NULL);
    size_t idx;
    int arr;
    float v;
    assert_int_equal(optstep_nonfinite(&os, &idx, &arr, &v), 1);
    assert_int_equal(idx, 1000);
    slabs_free(&a);
}

/* ---------------------------------------------------------------- checkpoints */

static void test_ckpt_state_refused(void **state)
{
    (void)state;
    static Trainer T;
    Trainer *t = &T;
    memset(t, 0, sizeof *t);
    assert_int_equal(model_build(&t->model, "dense:4 relu dense:3", 5, 3), 0);
    assert_int_equal(device_create("cpu", 0, &t->dev), 0);
    t->oc.kind = OPTIM_ADAMW;
    t->nstates = 2;
    t->step = 12;
    snprintf(t->ckpt_dir, sizeof t->ckpt_dir, "runs/x/checkpoints");
    size_t n = t->model.nparams;
    t->params = xaligned(n * sizeof(float));
    float *full[2] = {xaligned(n * sizeof(float)), xaligned(n * sizeof(float))};
    assert_int_equal(train_report_check_state(t, full), 0);
    const Layer *l;
    const ParamDesc *w = model_find_param(&t->model, "dense1/w", &l);
    assert_non_null(w);
    full[1][w->off + 1 * 4 + 2] = INFINITY;
    err_clear();
    assert_int_equal(train_report_check_state(t, full), MT_EX_SOFTWARE);
    assert_non_null(strstr(err_msg(), "refusing to write the checkpoint of step 12: optimizer "
                                      "state 'v' of layer dense1 parameter w[1, 2] is inf"));
    assert_non_null(strstr(err_msg(), "runs/x/checkpoints"));
    const ParamDesc *b = model_find_param(&t->model, "dense0/b", &l);
    t->params[b->off + 3] = NAN;
    err_clear();
    assert_int_equal(train_report_check_state(t, full), MT_EX_SOFTWARE);
    assert_non_null(strstr(err_msg(), "layer dense0 parameter b[3] is NaN"));
    free(t->params);
    free(full[0]);
    free(full[1]);
    device_destroy(t->dev);
    model_free(&t->model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_bad_every_position),
        cmocka_unit_test(test_device_backends),
        cmocka_unit_test(test_optim_verdict),
        cmocka_unit_test(test_optstep_finite_and_bits),
        cmocka_unit_test(test_optstep_bad_gradient),
        cmocka_unit_test(test_optstep_state_overflow),
        cmocka_unit_test(test_optstep_threads),
        cmocka_unit_test(test_ckpt_state_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
