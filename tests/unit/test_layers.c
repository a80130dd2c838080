/* test_layers.c — layer forward values, gradients by central finite differences, and
 * the bit-level promises (dropout masks by global sample position, repeatable dense).
 *
 * Gradient checks: the scalar L = sum_{r,j} c[r,j] y[r,j] (c fixed, random) is computed
 * in double from the float forward, so dL/dy = c.  For every parameter and input
 * element the numerical derivative (L(t+e) - L(t-e)) / (t+e - (t-e)) (the perturbed
 * float values' real difference) is compared with the backward's result:
 *   |analytic - numeric| <= GC_ATOL * scale + GC_RTOL * |numeric|
 * where scale = the largest |numeric| of the check.  A deliberately wrong derivative
 * (0.5% off) must fail the same comparison (test_checker_catches_wrong_gradient). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/layer.h"
#include "core/rng.h"

#define GC_EPS 1e-2
#define GC_ATOL 1e-4
#define GC_RTOL 5e-4

static float urand(uint64_t key, uint64_t i, float lo, float hi)
{
    return lo + (hi - lo) * rng_uniform(key, i);
}

typedef struct {
    Layer l;
    int B;
    float *params, *grads; /* slabs */
    float *x, *y, *aux;    /* (B, in), (B, out), (B, aux_per_sample) */
    double *c;             /* (B, out) */
    LayerCtx ctx;
} Case;

/* A layer of `kind` with params at offsets 0 (w) and a padded offset (b). */
static void case_init(Case *k, LayerKind kind, ActKind act, float p, int B, int in, int out,
                      uint64_t seed)
{
    memset(k, 0, sizeof *k);
    k->l.kind = kind;
    k->l.act = act;
    k->l.p = p;
    k->l.in = in;
    k->l.out = out;
    layer_setup(&k->l);
    size_t off = 0;
    for (int i = 0; i < k->l.nparams; i++) {
        off = (off + PARAM_ALIGN - 1) / PARAM_ALIGN * PARAM_ALIGN;
        k->l.params[i].off = off;
        off += k->l.params[i].count;
    }
    k->B = B;
    const uint64_t key = rng_key(seed, RNG_TEST, 0);
    k->params = xaligned((off + 1) * sizeof(float));
    k->grads = xaligned((off + 1) * sizeof(float));
    for (size_t i = 0; i < off; i++) k->params[i] = urand(key, i, -0.6f, 0.6f);
    k->x = xaligned((size_t)B * in * sizeof(float));
    for (size_t i = 0; i < (size_t)B * in; i++) k->x[i] = urand(key, 100000 + i, -1.5f, 1.5f);
    k->y = xaligned((size_t)B * out * sizeof(float));
    k->aux = xaligned(((size_t)B * k->l.aux_per_sample + 1) * sizeof(float));
    k->c = xmalloc((size_t)B * out * sizeof(double));
    for (size_t i = 0; i < (size_t)B * out; i++) k->c[i] = urand(key, 200000 + i, -1.0f, 1.0f);
    k->ctx = (LayerCtx){.seed = seed, .step = 3, .sample0 = 17, .train = 1};
}

static void case_free(Case *k)
{
    free(k->params), free(k->grads), free(k->x), free(k->y), free(k->aux), free(k->c);
}

/* L = sum c*y in double; *npos = pattern of y > 0 hashed (relu kink detection). */
static double case_loss(Case *k, uint64_t *pos_hash)
{
    k->l.ops->forward(&k->l, k->params, k->x, k->y, k->aux, k->B, &k->ctx);
    double L = 0;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < (size_t)k->B * k->l.out; i++) {
        L += k->c[i] * (double)k->y[i];
        h = (h ^ (uint64_t)(k->y[i] > 0.0f)) * 1099511628211ull;
    }
    if (pos_hash) *pos_hash = h;
    return L;
}

/* Analytic gradients: grads (slab) and dx (B, in). */
static void case_backward(Case *k, float *dx)
{
    case_loss(k, NULL);
    size_t no = (size_t)k->B * k->l.out;
    float *dy = xmalloc(no * sizeof(float));
    for (size_t i = 0; i < no; i++) dy[i] = (float)k->c[i];
    memset(k->grads, 0xff, 1 * sizeof(float)); /* garbage: must be overwritten */
    k->l.ops->backward(&k->l, k->params, k->x, k->y, k->aux, dy, dx, k->grads, k->B, &k->ctx);
    free(dy);
}

typedef struct {
    double max_err;  /* max of |a - n| / (ATOL*scale + RTOL*|n|): passes iff <= 1 */
    int checked, skipped;
} GcResult;

/* Numerical derivative of L w.r.t. *t (an element of params or x). skip: relu kink. */
static double numeric(Case *k, float *t, int *skip)
{
    const float t0 = *t;
    uint64_t h0, hp, hm;
    case_loss(k, &h0);
    *t = t0 + (float)GC_EPS;
    const double tp = *t;
    double Lp = case_loss(k, &hp);
    *t = t0 - (float)GC_EPS;
    const double tm = *t;
    double Lm = case_loss(k, &hm);
    *t = t0;
    *skip = hp != h0 || hm != h0;
    return (Lp - Lm) / (tp - tm);
}

/* Compare analytic a[i] with numerical derivatives w.r.t. t[i], i < n; `bump` scales
 * one analytic value (self-test of the checker). */
static void gc_compare(Case *k, float *t, const float *a, size_t n, int relu, double bump,
                       GcResult *res)
{
    double *num = xmalloc(n * sizeof(double));
    int *skip = xmalloc(n * sizeof(int));
    double scale = 1e-3;
    for (size_t i = 0; i < n; i++) {
        num[i] = numeric(k, &t[i], &skip[i]);
        if (!relu) skip[i] = 0;
        if (!skip[i]) scale = fmax(scale, fabs(num[i]));
    }
    size_t worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (skip[i]) {
            res->skipped++;
            continue;
        }
        res->checked++;
        double ai = a[i] * (i == worst ? bump : 1.0);
        double e = fabs(ai - num[i]) / (GC_ATOL * scale + GC_RTOL * fabs(num[i]));
        if (e > res->max_err) res->max_err = e;
        if (fabs(num[i]) > fabs(num[worst])) worst = i; /* bump lands on a large one */
    }
    free(num), free(skip);
}

/* Check d/dW, d/db, d/dx of a layer case. */
static GcResult gc_layer(Case *k, double bump)
{
    GcResult r = {0, 0, 0};
    const int relu = k->l.act == ACT_RELU;
    const size_t nx = (size_t)k->B * k->l.in;
    float *dx = xmalloc(nx * sizeof(float));
    case_backward(k, dx);
    for (int p = 0; p < k->l.nparams; p++) {
        const ParamDesc *pd = &k->l.params[p];
        float *ga = xmalloc(pd->count * sizeof(float));
        memcpy(ga, k->grads + pd->off, pd->count * sizeof(float));
        gc_compare(k, k->params + pd->off, ga, pd->count, relu, bump, &r);
        free(ga);
    }
    gc_compare(k, k->x, dx, nx, relu, bump, &r);
    free(dx);
    return r;
}

static void check_gc(GcResult r, const char *what)
{
    print_message("%-28s checked %3d skipped %2d  max err/tol %.3f\n", what, r.checked,
                  r.skipped, r.max_err);
    assert_true(r.checked > 0);
    assert_true(r.skipped * 10 <= r.checked); /* relu kinks: a few at most */
    assert_true(r.max_err <= 1.0);
}

static void test_dense_gradients(void **state)
{
    (void)state;
    const ActKind acts[] = {ACT_NONE, ACT_RELU, ACT_GELU, ACT_TANH};
    for (int a = 0; a < 4; a++) {
        Case k;
        case_init(&k, LAYER_DENSE, acts[a], 0, 3, 7, 5, 100 + a);
        char what[64];
        snprintf(what, sizeof what, "dense+%s", act_name(acts[a]));
        check_gc(gc_layer(&k, 1.0), what);
        case_free(&k);
    }
}

static void test_act_gradients(void **state)
{
    (void)state;
    const ActKind acts[] = {ACT_RELU, ACT_GELU, ACT_TANH};
    for (int a = 0; a < 3; a++) {
        Case k;
        case_init(&k, LAYER_ACT, acts[a], 0, 4, 9, 9, 200 + a);
        char what[64];
        snprintf(what, sizeof what, "act %s", act_name(acts[a]));
        check_gc(gc_layer(&k, 1.0), what);
        case_free(&k);
    }
}

static void test_dropout_gradient(void **state)
{
    (void)state;
    Case k;
    case_init(&k, LAYER_DROPOUT, ACT_NONE, 0.4f, 5, 8, 8, 300);
    check_gc(gc_layer(&k, 1.0), "dropout p=0.4 (fixed mask)");
    /* and dx is exactly dy * mask */
    float *dx = xmalloc(40 * sizeof(float));
    case_backward(&k, dx);
    for (int i = 0; i < 40; i++) assert_true(dx[i] == (float)k.c[i] * k.aux[i]);
    free(dx);
    case_free(&k);
}

/* A 0.5% error in one analytic derivative must fail the comparison: the tolerance is
 * tight enough to see a wrong derivative. */
static void test_checker_catches_wrong_gradient(void **state)
{
    (void)state;
    const ActKind acts[] = {ACT_NONE, ACT_GELU, ACT_TANH};
    for (int a = 0; a < 3; a++) {
        Case k;
        case_init(&k, LAYER_DENSE, acts[a], 0, 3, 7, 5, 100 + a);
        GcResult r = gc_layer(&k, 1.005);
        assert_true(r.max_err > 1.0);
        case_free(&k);
    }
}

/* Forward values against a double reference: y = act(x W^T + b). */
static double ref_act(ActKind a, double z)
{
    switch (a) {
    case ACT_NONE: return z;
    case ACT_RELU: return z > 0 ? z : 0;
    case ACT_TANH: return tanh(z);
    case ACT_GELU: return 0.5 * z * (1 + tanh(sqrt(2 / M_PI) * (z + 0.044715 * z * z * z)));
    }
    return NAN;
}

static void test_dense_forward_values(void **state)
{
    (void)state;
    const ActKind acts[] = {ACT_NONE, ACT_RELU, ACT_GELU, ACT_TANH};
    for (int a = 0; a < 4; a++) {
        Case k;
        const int B = 6, in = 37, out = 19; /* odd sizes: vector loops and their tails */
        case_init(&k, LAYER_DENSE, acts[a], 0, B, in, out, 400 + a);
        case_loss(&k, NULL);
        const float *w = k.params + k.l.params[0].off, *b = k.params + k.l.params[1].off;
        for (int r = 0; r < B; r++)
            for (int j = 0; j < out; j++) {
                double z = b[j];
                for (int i = 0; i < in; i++) z += (double)k.x[r * in + i] * w[j * in + i];
                double want = ref_act(acts[a], z);
                assert_true(fabs(k.y[r * out + j] - want) <= 1e-5 * (1 + fabs(want)));
                if (acts[a] == ACT_GELU) assert_true(fabs(k.aux[r * out + j] - z) <= 1e-5);
            }
        case_free(&k);
    }
    /* GELU (tanh approximation) at +-1, as PyTorch's gelu(approximate="tanh") */
    Case k;
    case_init(&k, LAYER_ACT, ACT_GELU, 0, 1, 2, 2, 1);
    k.x[0] = 1.0f, k.x[1] = -1.0f;
    case_loss(&k, NULL);
    assert_true(fabsf(k.y[0] - 0.8411920f) < 1e-6f);
    assert_true(fabsf(k.y[1] - -0.1588080f) < 1e-6f);
    case_free(&k);
}

/* dx == NULL: parameter gradients as with dx, nothing else written. */
static void test_dense_backward_without_dx(void **state)
{
    (void)state;
    Case k;
    case_init(&k, LAYER_DENSE, ACT_RELU, 0, 4, 6, 5, 500);
    const size_t np = k.l.params[1].off + k.l.params[1].count;
    float *dx = xmalloc(24 * sizeof(float));
    case_backward(&k, dx);
    float *g1 = xmalloc(np * sizeof(float));
    memcpy(g1, k.grads, np * sizeof(float));
    memset(k.grads, 0x7f, np * sizeof(float));
    case_backward(&k, NULL);
    for (int p = 0; p < 2; p++) /* the padding between w and b is not written */
        assert_memory_equal(g1 + k.l.params[p].off, k.grads + k.l.params[p].off,
                            k.l.params[p].count * sizeof(float));
    /* db is the column sum of dy * relu'(.) */
    for (int j = 0; j < 5; j++) {
        float s = 0;
        for (int r = 0; r < 4; r++) s += k.y[r * 5 + j] > 0 ? (float)k.c[r * 5 + j] : 0.0f;
        assert_true(k.grads[k.l.params[1].off + j] == s);
    }
    free(dx), free(g1);
    case_free(&k);
}

/* The same micro-batch gives the same bits whether computed first, after others, or
 * again: each micro-batch is one gemm_f32 call of the same shape (docs/determinism.md). */
static void test_dense_forward_repeatable(void **state)
{
    (void)state;
    const int R = 32, M = 4, in = 784, out = 512;
    Case k;
    case_init(&k, LAYER_DENSE, ACT_RELU, 0, R * M, in, out, 600);
    float *y1 = xmalloc((size_t)R * M * out * sizeof(float));
    float *y2 = xmalloc((size_t)R * M * out * sizeof(float));
    for (int mb = 0; mb < M; mb++)
        k.l.ops->forward(&k.l, k.params, k.x + (size_t)mb * R * in, y1 + (size_t)mb * R * out,
                         NULL, R, &k.ctx);
    for (int mb = M - 1; mb >= 0; mb--)
        k.l.ops->forward(&k.l, k.params, k.x + (size_t)mb * R * in, y2 + (size_t)mb * R * out,
                         NULL, R, &k.ctx);
    assert_memory_equal(y1, y2, (size_t)R * M * out * sizeof(float));
    /* the backward, too */
    const size_t np = k.l.params[1].off + k.l.params[1].count;
    float *g1 = xmalloc(np * sizeof(float)), *dy = xmalloc((size_t)R * out * sizeof(float));
    float *dx1 = xmalloc((size_t)R * in * sizeof(float)), *dx2 = xmalloc((size_t)R * in * 4);
    for (int rep = 0; rep < 2; rep++) {
        for (size_t i = 0; i < (size_t)R * out; i++) dy[i] = (float)k.c[i];
        k.l.ops->backward(&k.l, k.params, k.x, y1, NULL, dy, rep ? dx2 : dx1, k.grads, R,
                          &k.ctx);
        if (rep == 0) memcpy(g1, k.grads, np * sizeof(float));
    }
    assert_memory_equal(g1, k.grads, np * sizeof(float));
    assert_memory_equal(dx1, dx2, (size_t)R * in * sizeof(float));
    free(y1), free(y2), free(g1), free(dy), free(dx1), free(dx2);
    case_free(&k);
}

/* Dropout: mask = (rng_uniform(key, (sample0 + r) * width + c) >= p) / (1 - p), the same
 * however the rows are split between calls; identity in eval and for p = 0. */
static void test_dropout_mask(void **state)
{
    (void)state;
    const int B = 12, W = 37;
    const float p = 0.3f;
    Case k;
    case_init(&k, LAYER_DROPOUT, ACT_NONE, p, B, W, W, 700);
    k.ctx = (LayerCtx){.seed = 77, .step = 5, .sample0 = 1000, .train = 1};
    case_loss(&k, NULL);
    const uint64_t key = rng_key(77, RNG_DROPOUT, 5);
    const float scale = 1.0f / (1.0f - p);
    int dropped = 0;
    for (int r = 0; r < B; r++)
        for (int c = 0; c < W; c++) {
            const float u = rng_uniform(key, (uint64_t)(1000 + r) * W + c);
            const float m = u >= p ? scale : 0.0f;
            assert_true(k.aux[r * W + c] == m);
            assert_true(k.y[r * W + c] == k.x[r * W + c] * m);
            dropped += m == 0.0f;
        }
    assert_true(dropped > 0.2 * B * W && dropped < 0.4 * B * W);

    /* rows split 5 + 7 with the matching sample0: same bits */
    float *y2 = xmalloc((size_t)B * W * sizeof(float)), *a2 = xmalloc((size_t)B * W * 4);
    LayerCtx c1 = k.ctx, c2 = k.ctx;
    c2.sample0 = 1005;
    k.l.ops->forward(&k.l, NULL, k.x, y2, a2, 5, &c1);
    k.l.ops->forward(&k.l, NULL, k.x + 5 * W, y2 + 5 * W, a2 + 5 * W, 7, &c2);
    assert_memory_equal(y2, k.y, (size_t)B * W * sizeof(float));
    assert_memory_equal(a2, k.aux, (size_t)B * W * sizeof(float));
    /* another step or seed: another mask */
    LayerCtx c3 = k.ctx;
    c3.step = 6;
    k.l.ops->forward(&k.l, NULL, k.x, y2, a2, B, &c3);
    assert_memory_not_equal(a2, k.aux, (size_t)B * W * sizeof(float));
    /* eval: identity */
    LayerCtx ev = k.ctx;
    ev.train = 0;
    k.l.ops->forward(&k.l, NULL, k.x, y2, a2, B, &ev);
    assert_memory_equal(y2, k.x, (size_t)B * W * sizeof(float));
    float *dy = xmalloc((size_t)B * W * 4), *dx = xmalloc((size_t)B * W * 4);
    for (int i = 0; i < B * W; i++) dy[i] = (float)i;
    k.l.ops->backward(&k.l, NULL, k.x, y2, a2, dy, dx, NULL, B, &ev);
    assert_memory_equal(dx, dy, (size_t)B * W * sizeof(float));
    /* p = 0: identity in training too */
    Case z;
    case_init(&z, LAYER_DROPOUT, ACT_NONE, 0.0f, B, W, W, 701);
    case_loss(&z, NULL);
    assert_memory_equal(z.y, z.x, (size_t)B * W * sizeof(float));
    case_free(&z);
    free(y2), free(a2), free(dy), free(dx);
    case_free(&k);
}

/* A mask over many rows (the vectorised rng path) matches the word-by-word definition. */
static void test_dropout_mask_large(void **state)
{
    (void)state;
    const int B = 64, W = 512;
    const float p = 0.5f;
    Case k;
    case_init(&k, LAYER_DROPOUT, ACT_NONE, p, B, W, W, 702);
    k.ctx = (LayerCtx){.seed = 5, .step = 123456789, .sample0 = 3, .train = 1};
    case_loss(&k, NULL);
    const uint64_t key = rng_key(5, RNG_DROPOUT, 123456789);
    for (int i = 0; i < B * W; i++) {
        const float u = rng_uniform(key, (uint64_t)3 * W + (uint64_t)i);
        assert_true(k.aux[i] == (u >= p ? 2.0f : 0.0f));
    }
    case_free(&k);
}

static void test_setup_and_names(void **state)
{
    (void)state;
    Layer l = {.kind = LAYER_DENSE, .in = 7, .out = 3, .act = ACT_GELU};
    layer_setup(&l);
    assert_string_equal(l.ops->kind_name, "dense");
    assert_int_equal(l.nparams, 2);
    assert_string_equal(l.params[0].name, "w");
    assert_int_equal(l.params[0].ndim, 2);
    assert_int_equal(l.params[0].shape[0], 3);
    assert_int_equal(l.params[0].shape[1], 7);
    assert_int_equal(l.params[0].count, 21);
    assert_int_equal(l.params[0].fan_in, 7);
    assert_int_equal(l.params[0].fan_out, 3);
    assert_string_equal(l.params[1].name, "b");
    assert_int_equal(l.params[1].ndim, 1);
    assert_int_equal(l.params[1].shape[0], 3);
    assert_int_equal(l.params[1].count, 3);
    assert_int_equal(l.aux_per_sample, 3);
    l.act = ACT_RELU;
    layer_setup(&l);
    assert_int_equal(l.aux_per_sample, 0);
    Layer d = {.kind = LAYER_DROPOUT, .in = 5, .out = 5, .p = 0.5f};
    layer_setup(&d);
    assert_int_equal(d.nparams, 0);
    assert_int_equal(d.aux_per_sample, 5);
    Layer a = {.kind = LAYER_ACT, .in = 5, .out = 5, .act = ACT_TANH};
    layer_setup(&a);
    assert_int_equal(a.nparams, 0);
    assert_int_equal(a.aux_per_sample, 0);
    assert_string_equal(act_name(ACT_NONE), "none");
    assert_string_equal(act_name(ACT_RELU), "relu");
    assert_string_equal(act_name(ACT_GELU), "gelu");
    assert_string_equal(act_name(ACT_TANH), "tanh");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_setup_and_names),
        cmocka_unit_test(test_dense_forward_values),
        cmocka_unit_test(test_dense_gradients),
        cmocka_unit_test(test_act_gradients),
        cmocka_unit_test(test_dropout_gradient),
        cmocka_unit_test(test_checker_catches_wrong_gradient),
        cmocka_unit_test(test_dense_backward_without_dx),
        cmocka_unit_test(test_dense_forward_repeatable),
        cmocka_unit_test(test_dropout_mask),
        cmocka_unit_test(test_dropout_mask_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
