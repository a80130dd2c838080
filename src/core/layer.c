/* layer.c — layer set-up shared by every kind (see layer.h); the kinds themselves are in
 * layer_dense.c, layer_act.c and layer_dropout.c. */
#include "core/layer.h"

#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "core/layer_impl.h"

const char *act_name(ActKind a)
{
    switch (a) {
    case ACT_NONE: return "none";
    case ACT_RELU: return "relu";
    case ACT_GELU: return "gelu";
    case ACT_TANH: return "tanh";
    }
    return "?";
}

static void param(ParamDesc *p, const char *name, int ndim, int d0, int d1, int fan_in,
                  int fan_out)
{
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->shape[0] = d0;
    p->shape[1] = ndim > 1 ? d1 : 0;
    p->count = (size_t)d0 * (ndim > 1 ? (size_t)d1 : 1);
    p->fan_in = fan_in;
    p->fan_out = fan_out;
}

void layer_setup(Layer *l)
{
    CHECK(l->in >= 1 && l->out >= 1);
    l->nparams = 0;
    memset(l->params, 0, sizeof l->params);
    switch (l->kind) {
    case LAYER_DENSE:
        l->ops = &layer_dense_ops;
        l->aux_per_sample = l->act == ACT_GELU ? (size_t)l->out : 0; /* pre-activation */
        param(&l->params[0], "w", 2, l->out, l->in, l->in, l->out);
        param(&l->params[1], "b", 1, l->out, 0, l->in, l->out);
        l->nparams = 2;
        break;
    case LAYER_ACT:
        CHECK(l->in == l->out && l->act != ACT_NONE);
        l->ops = &layer_act_ops;
        l->aux_per_sample = 0; /* backward reads x and y */
        break;
    case LAYER_DROPOUT:
        CHECK(l->in == l->out && l->p >= 0.0f && l->p < 1.0f);
        l->ops = &layer_dropout_ops;
        l->aux_per_sample = (size_t)l->out; /* per element: 0 or 1/(1-p) */
        break;
    default:
        CHECK(!"unknown layer kind");
    }
}

size_t layer_scratch_floats(const Layer *l, int B)
{
    /* dense: x^T (in, B) and y^T (out, B) for the forward product */
    return l->kind == LAYER_DENSE ? (size_t)B * (size_t)(l->in + l->out) : 0;
}
