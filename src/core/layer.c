/* layer.c — what every layer kind shares (see layer.h): shape inference and set-up
 * through the kind's descriptor, the settings buffer, parameter descriptions and
 * weight initialisation.  The kinds are in layer_<kind>.c, listed in layer_registry.c. */
#include "core/layer.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"

const char *act_name(ActKind a)
{
    static const char *const names[ACT_COUNT] = {"none", "relu", "gelu", "tanh"};
    return (unsigned)a < ACT_COUNT ? names[a] : "?";
}

void layer_conf_put(Layer *l, const void *conf, size_t n)
{
    CHECK(n <= sizeof l->conf);
    memcpy(l->conf, conf, n);
}

void layer_conf_get(const Layer *l, void *conf, size_t n)
{
    CHECK(n <= sizeof l->conf);
    memcpy(conf, l->conf, n);
}

void layer_param(ParamDesc *p, const char *name, int ndim, const int *shape, int fan_in,
                 int fan_out)
{
    CHECK(ndim >= 1 && ndim <= 4);
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->count = 1;
    for (int d = 0; d < ndim; d++) {
        p->shape[d] = shape[d];
        p->count *= (size_t)shape[d];
    }
    p->fan_in = fan_in;
    p->fan_out = fan_out;
}

void layer_init_weight(const Layer *l, const ParamDesc *w, float *params, InitKind init,
                       uint64_t seed)
{
    const uint64_t key = rng_key(seed, RNG_INIT, (uint64_t)l->index);
    float *pw = params + w->off;
    if (init == INIT_HE) {
        const double sd = sqrt(2.0 / w->fan_in);
        for (size_t i = 0; i < w->count; i++) pw[i] = (float)(sd * rng_normal(key, i));
    } else {
        const double a = sqrt(6.0 / (w->fan_in + w->fan_out));
        for (size_t i = 0; i < w->count; i++)
            pw[i] = (float)(a * (2.0 * rng_uniform(key, i) - 1.0));
    }
}

/* Product of a shape's dims, or -1 past INT_MAX. */
static long long shape_count(const int *shape, int ndim)
{
    long long n = 1;
    for (int d = 0; d < ndim; d++) {
        n *= shape[d];
        if (n > INT_MAX) return -1;
    }
    return n;
}

int layer_shape(Layer *l, const int *in_shape, int ndim, int pos)
{
    CHECK(ndim >= 1 && ndim <= LAYER_MAX_DIMS);
    l->in_ndim = ndim;
    for (int d = 0; d < LAYER_MAX_DIMS; d++) l->in_shape[d] = d < ndim ? in_shape[d] : 0;
    char why[256] = "";
    if (l->ops->infer) {
        if (l->ops->infer(l, why, sizeof why))
            return err_set(MT_EX_CONFIG, "model.layers: layer %s (token %d): %s", l->name, pos,
                           why);
    } else {
        l->out_ndim = l->in_ndim;
        memcpy(l->out_shape, l->in_shape, sizeof l->out_shape);
    }
    CHECK(l->out_ndim >= 1 && l->out_ndim <= LAYER_MAX_DIMS);
    long long in = shape_count(l->in_shape, l->in_ndim);
    long long out = shape_count(l->out_shape, l->out_ndim);
    CHECK(in >= 1);
    if (out < 1)
        return err_set(MT_EX_CONFIG, "model.layers: layer %s (token %d) would have %s outputs "
                                     "per sample: at least 1 and at most %d are possible",
                       l->name, pos, out < 0 ? "too many" : "no", INT_MAX);
    l->in = (int)in;
    l->out = (int)out;
    layer_setup(l);
    return 0;
}

void layer_setup(Layer *l)
{
    CHECK(l->ops && l->in >= 1 && l->out >= 1);
    l->nparams = 0;
    memset(l->params, 0, sizeof l->params);
    if (l->ops->setup) l->ops->setup(l);
    CHECK(l->nparams >= 0 && l->nparams <= LAYER_MAX_PARAMS);
    l->aux_per_sample = l->ops->aux_floats ? l->ops->aux_floats(l) : 0;
}

size_t layer_scratch_floats(const Layer *l, int B)
{
    return l->ops->scratch_floats ? l->ops->scratch_floats(l, B) : 0;
}
