/* test_layers.c — the layer registry and every kind in it: names unique and parse /
 * format round trips; for every example of every registered kind (LayerOps.examples)
 * on 1-d and 3-d samples, gradients by central finite differences and the
 * forward/backward contract of layer.h (writes only where allowed, row-split
 * invariance, scratch, dx == NULL, accumulate, init); then kind-specific values and
 * bit-level promises (dense against a double reference, dropout masks by global
 * sample position, repeatable dense).
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
    size_t np;             /* slab length: the layer's arrays, padded */
    LayerCtx ctx;
} Case;

/* One layer from `spec` (its first token, the others folded into it) on per-sample
 * input shape (ndim dims), as model_build makes it; parameter arrays at PARAM_ALIGN'ed
 * offsets from 0. */
static void layer_from_spec(Layer *l, const char *spec, const int *shape, int ndim)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", spec);
    char *save = NULL;
    int ntok = 0;
    for (char *tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        Layer t;
        if (layer_parse(tok, ++ntok, &t)) fail_msg("%s: %s", spec, err_msg());
        if (ntok == 1) *l = t;
        else assert_true(l->ops->fuse && l->ops->fuse(l, &t)); /* one layer per spec */
    }
    assert_true(ntok >= 1);
    snprintf(l->name, sizeof l->name, "t0");
    if (layer_shape(l, shape, ndim, 1)) fail_msg("%s: %s", spec, err_msg());
    size_t off = 0;
    for (int i = 0; i < l->nparams; i++) {
        off = (off + PARAM_ALIGN - 1) / PARAM_ALIGN * PARAM_ALIGN;
        l->params[i].off = off;
        off += l->params[i].count;
    }
}

static size_t layer_slab_len(const Layer *l)
{
    if (l->nparams == 0) return 0;
    const ParamDesc *p = &l->params[l->nparams - 1];
    return (p->off + p->count + PARAM_ALIGN - 1) / PARAM_ALIGN * PARAM_ALIGN;
}

static void case_init_shape(Case *k, const char *spec, const int *shape, int ndim, int B,
                            uint64_t seed)
{
    memset(k, 0, sizeof *k);
    layer_from_spec(&k->l, spec, shape, ndim);
    const int in = k->l.in, out = k->l.out;
    k->np = layer_slab_len(&k->l);
    k->B = B;
    const uint64_t key = rng_key(seed, RNG_TEST, 0);
    k->params = xaligned((k->np + 1) * sizeof(float));
    k->grads = xaligned((k->np + 1) * sizeof(float));
    for (size_t i = 0; i < k->np; i++) k->params[i] = urand(key, i, -0.6f, 0.6f);
    k->x = xaligned((size_t)B * in * sizeof(float));
    for (size_t i = 0; i < (size_t)B * in; i++) k->x[i] = urand(key, 100000 + i, -1.5f, 1.5f);
    k->y = xaligned((size_t)B * out * sizeof(float));
    k->aux = xaligned(((size_t)B * k->l.aux_per_sample + 1) * sizeof(float));
    k->c = xmalloc((size_t)B * out * sizeof(double));
    for (size_t i = 0; i < (size_t)B * out; i++) k->c[i] = urand(key, 200000 + i, -1.0f, 1.0f);
    k->ctx = (LayerCtx){.seed = seed, .step = 3, .sample0 = 17, .train = 1};
}

/* A layer of `spec` on 1-d samples of `in` features. */
static void case_init(Case *k, const char *spec, int B, int in, uint64_t seed)
{
    case_init_shape(k, spec, (const int[]){in}, 1, B, seed);
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

/* ------------------------------------------------------------------------------------
 * Every registered kind, every example of its descriptor, on 1-d and 3-d samples: the
 * finite-difference gradient check and the forward/backward contract (layer.h), the
 * way one test covers every op of a backend.  A new kind is tested by registering it. */

static const int SHAPE1[] = {7}, SHAPE3[] = {2, 3, 2};
static const struct {
    const int *shape;
    int ndim;
} SHAPES[] = {{SHAPE1, 1}, {SHAPE3, 3}};
#define NSHAPES ((int)(sizeof SHAPES / sizeof SHAPES[0]))

/* Calls f(kind, example, shape index, seed) for every kind, example and input shape. */
static void for_each_case(void (*f)(const LayerOps *kind, const char *spec, int s, uint64_t seed))
{
    uint64_t seed = 1000;
    for (int k = 0; k < layer_registry_count; k++)
        for (int e = 0; layer_registry[k]->examples[e]; e++)
            for (int s = 0; s < NSHAPES; s++) f(layer_registry[k], layer_registry[k]->examples[e], s, seed++);
}

static void gc_case(const LayerOps *kind, const char *spec, int s, uint64_t seed)
{
    Case k;
    case_init_shape(&k, spec, SHAPES[s].shape, SHAPES[s].ndim, 3, seed);
    assert_ptr_equal(k.l.ops, kind);
    char what[64];
    snprintf(what, sizeof what, "%s on %d-d", spec, SHAPES[s].ndim);
    check_gc(gc_layer(&k, 1.0), what);
    case_free(&k);
}

static void test_registry_gradients(void **state)
{
    (void)state;
    for_each_case(gc_case);
}

#define GUARD 0x7fc0dead /* a NaN pattern: no layer writes it */

static float *guarded(size_t n, const float *init)
{
    float *a = xaligned((n + 16) * sizeof(float));
    if (init) memcpy(a, init, n * sizeof(float));
    const uint32_t g = GUARD;
    for (size_t i = n; i < n + 16; i++) memcpy(&a[i], &g, sizeof g);
    return a;
}

static void assert_guard(const float *a, size_t n)
{
    for (size_t i = n; i < n + 16; i++) {
        uint32_t v;
        memcpy(&v, &a[i], sizeof v);
        assert_int_equal(v, GUARD);
    }
}

/* Shapes, parameter counts, writes only where allowed, row-split invariance, scratch,
 * dx == NULL, accumulate, init. */
static void contract_case(const LayerOps *kind, const char *spec, int s, uint64_t seed)
{
    const int B = 5, b1 = 2;
    Case k;
    case_init_shape(&k, spec, SHAPES[s].shape, SHAPES[s].ndim, B, seed);
    const Layer *l = &k.l;
    print_message("%-14s on %d-d: in %d out %d (%d-d) params %d aux %zu\n", spec,
                  SHAPES[s].ndim, l->in, l->out, l->out_ndim, l->nparams, l->aux_per_sample);
    /* shapes: in and out are the products of the per-sample shapes */
    assert_ptr_equal(l->ops, kind);
    assert_int_equal(l->in_ndim, SHAPES[s].ndim);
    long long pin = 1, pout = 1;
    for (int d = 0; d < l->in_ndim; d++) pin *= l->in_shape[d];
    assert_true(l->out_ndim >= 1 && l->out_ndim <= LAYER_MAX_DIMS);
    for (int d = 0; d < l->out_ndim; d++) pout *= l->out_shape[d];
    assert_int_equal(pin, l->in);
    assert_int_equal(pout, l->out);
    for (int p = 0; p < l->nparams; p++) {
        size_t n = 1;
        for (int d = 0; d < l->params[p].ndim; d++) n *= (size_t)l->params[p].shape[d];
        assert_int_equal(n, l->params[p].count);
        assert_true(l->params[p].name[0] != 0);
    }
    const size_t nx = (size_t)B * l->in, ny = (size_t)B * l->out;
    const size_t na = (size_t)B * l->aux_per_sample;

    /* forward: writes y and aux only, reads x and params only */
    float *x0 = guarded(nx, k.x), *p0 = guarded(k.np, k.params);
    float *y = guarded(ny, NULL), *aux = guarded(na, NULL);
    l->ops->forward(l, k.params, k.x, y, aux, B, &k.ctx);
    assert_guard(y, ny), assert_guard(aux, na);
    assert_memory_equal(x0, k.x, nx * sizeof(float));
    assert_memory_equal(p0, k.params, k.np * sizeof(float));
    /* the same bits again, with rows split between two calls, and with scratch */
    float *y2 = guarded(ny, NULL), *aux2 = guarded(na, NULL);
    LayerCtx c1 = k.ctx, c2 = k.ctx;
    c2.sample0 += (uint64_t)b1;
    l->ops->forward(l, k.params, k.x, y2, aux2, b1, &c1);
    l->ops->forward(l, k.params, k.x + (size_t)b1 * l->in, y2 + (size_t)b1 * l->out,
                    aux2 + (size_t)b1 * l->aux_per_sample, B - b1, &c2);
    assert_memory_equal(y, y2, ny * sizeof(float));
    assert_memory_equal(aux, aux2, na * sizeof(float));
    LayerCtx cs = k.ctx;
    cs.scratch_n = layer_scratch_floats(l, B);
    cs.scratch = cs.scratch_n ? guarded(cs.scratch_n, NULL) : NULL;
    l->ops->forward(l, k.params, k.x, y2, aux2, B, &cs);
    assert_memory_equal(y, y2, ny * sizeof(float));
    if (cs.scratch) assert_guard(cs.scratch, cs.scratch_n);

    /* backward: grads only inside the layer's arrays, dx only (B, in); x, y, aux and
     * params not written */
    float *dy = xmalloc((ny + 1) * sizeof(float)), *dx = guarded(nx, NULL);
    float *g = guarded(k.np, NULL), *g2 = guarded(k.np, NULL);
    for (size_t i = 0; i < k.np; i++) g[i] = g2[i] = -7.0f; /* padding must stay */
    float *yk = guarded(ny, y), *auxk = guarded(na, aux);
    for (size_t i = 0; i < ny; i++) dy[i] = (float)k.c[i];
    l->ops->backward(l, k.params, k.x, y, aux, dy, dx, g, B, &cs);
    assert_guard(dx, nx), assert_guard(g, k.np);
    assert_memory_equal(x0, k.x, nx * sizeof(float));
    assert_memory_equal(yk, y, ny * sizeof(float));
    assert_memory_equal(auxk, aux, na * sizeof(float));
    assert_memory_equal(p0, k.params, k.np * sizeof(float));
    size_t used = 0;
    for (int p = 0; p < l->nparams; p++) {
        for (size_t i = used; i < l->params[p].off; i++) assert_true(g[i] == -7.0f);
        used = l->params[p].off + l->params[p].count;
    }
    for (size_t i = used; i < k.np; i++) assert_true(g[i] == -7.0f);
    /* dx == NULL: the same parameter gradients */
    for (size_t i = 0; i < ny; i++) dy[i] = (float)k.c[i];
    l->ops->backward(l, k.params, k.x, y, aux, dy, NULL, g2, B, &k.ctx);
    assert_memory_equal(g, g2, k.np * sizeof(float));
    /* accumulate: grads + g, one rounding per element */
    float *acc = guarded(k.np, NULL);
    for (size_t i = 0; i < k.np; i++) acc[i] = urand(rng_key(seed, RNG_TEST, 1), i, -1, 1);
    float *want = xmalloc((k.np + 1) * sizeof(float));
    for (size_t i = 0; i < k.np; i++) want[i] = acc[i];
    for (int p = 0; p < l->nparams; p++)
        for (size_t i = l->params[p].off; i < l->params[p].off + l->params[p].count; i++)
            want[i] = acc[i] + g[i];
    LayerCtx ca = k.ctx;
    ca.accumulate = 1;
    for (size_t i = 0; i < ny; i++) dy[i] = (float)k.c[i];
    l->ops->backward(l, k.params, k.x, y, aux, dy, NULL, acc, B, &ca);
    assert_memory_equal(want, acc, k.np * sizeof(float));

    /* init: only the layer's arrays, the same bits for the same seed */
    if (l->nparams == 0) assert_null(l->ops->init);
    if (l->ops->init) {
        float *i1 = guarded(k.np, NULL), *i2 = guarded(k.np, NULL);
        for (InitKind ik = INIT_HE; ik <= INIT_XAVIER; ik++) {
            memset(i1, 0, k.np * sizeof(float)), memset(i2, 0, k.np * sizeof(float));
            l->ops->init(l, i1, ik, 42);
            l->ops->init(l, i2, ik, 42);
            assert_memory_equal(i1, i2, k.np * sizeof(float));
            assert_guard(i1, k.np);
            for (size_t i = 0; i < l->params[0].off; i++) assert_true(i1[i] == 0.0f);
            for (int p = 0; p + 1 < l->nparams; p++)
                for (size_t i = l->params[p].off + l->params[p].count; i < l->params[p + 1].off; i++)
                    assert_true(i1[i] == 0.0f);
            double sum2 = 0;
            for (size_t i = 0; i < k.np; i++) sum2 += (double)i1[i] * i1[i], assert_true(isfinite(i1[i]));
            assert_true(sum2 > 0); /* something was initialised */
        }
        free(i1), free(i2);
    }
    assert_int_equal(l->ops->nstate, 0); /* checkpoints save no layer state yet */
    free(x0), free(p0), free(y), free(aux), free(y2), free(aux2), free(cs.scratch), free(dy);
    free(dx), free(g), free(g2), free(yk), free(auxk), free(acc), free(want);
    case_free(&k);
}

static void test_registry_contract(void **state)
{
    (void)state;
    for_each_case(contract_case);
}

/* Names unique, descriptors complete, every example claimed by its kind only, and
 * parse(format(l)) == l's settings. */
static void test_registry_names_and_round_trip(void **state)
{
    (void)state;
    char forms[512];
    layer_allowed_forms(forms, sizeof forms);
    assert_true(layer_registry_count >= 3);
    const char *stems[64];
    const LayerOps *stem_kind[64];
    int nstems = 0;
    for (int k = 0; k < layer_registry_count; k++) {
        const LayerOps *o = layer_registry[k];
        assert_non_null(o->kind_name);
        assert_true(o->kind_name[0] != 0);
        assert_ptr_equal(layer_kind(o->kind_name), o);
        for (int j = 0; j < k; j++) assert_true(strcmp(layer_registry[j]->kind_name, o->kind_name) != 0);
        assert_non_null(o->forms);
        assert_non_null(strstr(forms, o->forms));
        assert_non_null(o->parse), assert_non_null(o->format), assert_non_null(o->describe);
        assert_non_null(o->forward), assert_non_null(o->backward);
        assert_non_null(o->examples);
        assert_non_null(o->examples[0]);
        for (int e = 0; o->examples[e]; e++) {
            Layer l, l2;
            layer_from_spec(&l, o->examples[e], SHAPE1, 1);
            assert_ptr_equal(l.ops, o);
            /* no other kind claims the first token */
            char tok[64], why[128];
            snprintf(tok, sizeof tok, "%s", o->examples[e]);
            tok[strcspn(tok, " ")] = 0;
            for (int j = 0; j < layer_registry_count; j++) {
                if (j == k) continue;
                Layer t;
                memset(&t, 0, sizeof t);
                t.ops = layer_registry[j];
                assert_int_equal(layer_registry[j]->parse(tok, &t, why, sizeof why), LAYER_PARSE_OTHER);
            }
            /* round trip: same settings, same text */
            char f1[128], f2[128];
            o->format(&l, f1, sizeof f1);
            layer_from_spec(&l2, f1, SHAPE1, 1);
            o->format(&l2, f2, sizeof f2);
            print_message("%-8s %-14s -> \"%s\"\n", o->kind_name, o->examples[e], f1);
            assert_string_equal(f1, f2);
            assert_ptr_equal(l2.ops, o);
            assert_int_equal(l2.act, l.act);
            assert_memory_equal(l2.conf, l.conf, sizeof l.conf);
            assert_int_equal(l2.out, l.out);
            /* stems: two kinds never share one (names would collide) */
            const char *st = o->stem ? o->stem(&l) : o->kind_name;
            int found = 0;
            for (int j = 0; j < nstems; j++)
                if (strcmp(stems[j], st) == 0) {
                    assert_ptr_equal(stem_kind[j], o);
                    found = 1;
                }
            if (!found && nstems < 64) stems[nstems] = st, stem_kind[nstems++] = o;
        }
    }
    assert_null(layer_kind("conv-that-does-not-exist"));
    assert_string_equal(forms, "allowed forms are dense:N (N an integer >= 1), relu, gelu, tanh, "
                               "dropout:P (0 <= P < 1), separated by spaces, e.g. \"dense:512 "
                               "relu dropout:0.1 dense:10\"");
}

/* Dropout's gradient is exactly dy * mask. */
static void test_dropout_gradient(void **state)
{
    (void)state;
    Case k;
    case_init(&k, "dropout:0.4", 5, 8, 300);
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
    const char *specs[] = {"dense:5", "dense:5 gelu", "dense:5 tanh"};
    for (int a = 0; a < 3; a++) {
        Case k;
        case_init(&k, specs[a], 3, 7, 100 + a);
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
        char spec[64];
        snprintf(spec, sizeof spec, "dense:%d %s", out, acts[a] ? act_name(acts[a]) : "");
        case_init(&k, spec, B, in, 400 + a);
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
    case_init(&k, "gelu", 1, 2, 1);
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
    case_init(&k, "dense:5 relu", 4, 6, 500);
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
    case_init(&k, "dense:512 relu", R * M, in, 600);
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
    case_init(&k, "dropout:0.3", B, W, 700);
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
    case_init(&z, "dropout:0", B, W, 701);
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
    case_init(&k, "dropout:0.5", B, W, 702);
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
    Layer l;
    layer_from_spec(&l, "dense:3 gelu", (const int[]){7}, 1);
    assert_ptr_equal(l.ops, &layer_dense_ops);
    assert_string_equal(l.ops->kind_name, "dense");
    assert_int_equal(l.act, ACT_GELU);
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
    assert_int_equal(l.params[1].shape[1], 0);
    assert_int_equal(l.params[1].count, 3);
    assert_int_equal(l.params[1].off, 32); /* 21 floats of w, padded */
    assert_int_equal(l.aux_per_sample, 3);
    assert_int_equal(layer_scratch_floats(&l, 4), 4 * (7 + 3));
    assert_true(l.ops->layerwise);
    l.act = ACT_RELU;
    layer_setup(&l);
    assert_int_equal(l.aux_per_sample, 0);
    /* dense flattens a 3-d sample; elementwise kinds keep the shape */
    layer_from_spec(&l, "dense:4", (const int[]){2, 3, 5}, 3);
    assert_int_equal(l.in, 30);
    assert_int_equal(l.out_ndim, 1);
    assert_int_equal(l.out_shape[0], 4);
    assert_int_equal(l.params[0].shape[1], 30);
    Layer d;
    layer_from_spec(&d, "dropout:0.5", (const int[]){5, 2}, 2);
    assert_int_equal(d.nparams, 0);
    assert_int_equal(d.in, 10);
    assert_int_equal(d.out, 10);
    assert_int_equal(d.out_ndim, 2);
    assert_int_equal(d.out_shape[0], 5);
    assert_int_equal(d.out_shape[1], 2);
    assert_int_equal(d.aux_per_sample, 10);
    assert_int_equal(layer_scratch_floats(&d, 4), 0);
    assert_false(d.ops->layerwise);
    Layer a;
    layer_from_spec(&a, "tanh", (const int[]){5}, 1);
    assert_int_equal(a.nparams, 0);
    assert_int_equal(a.aux_per_sample, 0);
    assert_int_equal(a.act, ACT_TANH);
    assert_false(a.ops->layerwise);
    assert_string_equal(act_name(ACT_NONE), "none");
    assert_string_equal(act_name(ACT_RELU), "relu");
    assert_string_equal(act_name(ACT_GELU), "gelu");
    assert_string_equal(act_name(ACT_TANH), "tanh");
    /* descriptor pieces: describe and format */
    char buf[64];
    layer_from_spec(&l, "dense:3 gelu", (const int[]){7}, 1);
    l.ops->describe(&l, buf, sizeof buf);
    assert_string_equal(buf, "dense3+gelu");
    l.ops->format(&l, buf, sizeof buf);
    assert_string_equal(buf, "dense:3 gelu");
    d.ops->describe(&d, buf, sizeof buf);
    assert_string_equal(buf, "dropout0.5");
    a.ops->describe(&a, buf, sizeof buf);
    assert_string_equal(buf, "tanh");
    /* a fused dense layer takes no second activation; an activation takes none */
    Layer t;
    assert_int_equal(layer_parse("relu", 2, &t), 0);
    assert_false(l.ops->fuse(&l, &t));
    assert_null(a.ops->fuse);
    /* parse errors name the token and its position */
    err_clear();
    assert_int_equal(layer_parse("dense:0", 4, &t), MT_EX_CONFIG);
    assert_non_null(strstr(err_msg(), "bad token \"dense:0\" (token 4): the width of dense:N"));
    assert_int_equal(layer_parse("conv:3", 1, &t), MT_EX_CONFIG);
    assert_non_null(strstr(err_msg(), "unknown token \"conv:3\" (token 1): allowed forms are"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_setup_and_names),
        cmocka_unit_test(test_registry_names_and_round_trip),
        cmocka_unit_test(test_registry_gradients),
        cmocka_unit_test(test_registry_contract),
        cmocka_unit_test(test_dense_forward_values),
        cmocka_unit_test(test_dropout_gradient),
        cmocka_unit_test(test_checker_catches_wrong_gradient),
        cmocka_unit_test(test_dense_backward_without_dx),
        cmocka_unit_test(test_dense_forward_repeatable),
        cmocka_unit_test(test_dropout_mask),
        cmocka_unit_test(test_dropout_mask_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
