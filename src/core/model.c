/* model.c — parse the layer list, lay out the slabs, initialise parameters (model.h).
 * Layer kinds are known only through their descriptors (layer.h, layer_registry.c).
 *
 * Layer names are a stem and a counter per stem, in order: dense0, dense1, ...;
 * dropout0, ...; a standalone activation's stem is its function (relu0, gelu0, tanh0,
 * counted per function).  A token folded into the layer before it (an activation
 * fused into a dense layer) makes no layer and no name of its own.  Parameter arrays
 * are laid out in layer order, each layer's in its params order (w then b), each at
 * an offset that is a multiple of PARAM_ALIGN floats; nparams is rounded up to a
 * multiple of PARAM_ALIGN too. */
#include "core/model.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"

static size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

static const char *layer_stem(const Layer *l)
{
    return l->ops->stem ? l->ops->stem(l) : l->ops->kind_name;
}

/* l->name = its stem and the number of layers[0 .. n) with the same stem. */
static void name_layer(const Layer *layers, int n, Layer *l)
{
    const char *stem = layer_stem(l);
    int count = 0;
    for (int j = 0; j < n; j++) count += strcmp(layer_stem(&layers[j]), stem) == 0;
    snprintf(l->name, sizeof l->name, "%s%d", stem, count);
}

/* Check the input shape: 0 or MT_EX_CONFIG. */
static int check_input(const int *shape, int ndim)
{
    if (ndim < 1 || ndim > LAYER_MAX_DIMS)
        return err_set(MT_EX_CONFIG, "model: input samples with %d dimensions: 1 to %d are "
                                     "supported", ndim, LAYER_MAX_DIMS);
    long long n = 1;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 1) {
            if (ndim == 1)
                return err_set(MT_EX_CONFIG, "model: input width %d: the dataset's samples "
                                             "must have at least one feature", shape[0]);
            return err_set(MT_EX_CONFIG, "model: input dimension %d is %d: the dataset's "
                                         "samples must have at least one feature", d, shape[d]);
        }
        n *= shape[d];
        if (n > INT_MAX)
            return err_set(MT_EX_CONFIG, "model: input samples of more than %d features are "
                                         "not supported", INT_MAX);
    }
    return 0;
}

int model_build(Model *m, const char *spec, int in_dim, int num_classes)
{
    return model_build_shape(m, spec, (const int[]){in_dim}, 1, num_classes);
}

int model_build_shape(Model *m, const char *spec, const int *in_shape, int in_ndim,
                      int num_classes)
{
    memset(m, 0, sizeof *m);
    int rc = check_input(in_shape, in_ndim);
    if (rc) return rc;
    char *buf = xstrdup(spec ? spec : "");
    int cap = 8, n = 0, ntok = 0;
    Layer *layers = xcalloc((size_t)cap, sizeof *layers);
    int *pos = xcalloc((size_t)cap, sizeof *pos); /* pos[i]: layer i's token position */
    char *save = NULL;
    for (char *tok = strtok_r(buf, " \t\r\n", &save); tok; tok = strtok_r(NULL, " \t\r\n", &save)) {
        Layer t;
        ntok++;
        if ((rc = layer_parse(tok, ntok, &t))) goto fail;
        if (n > 0 && layers[n - 1].ops->fuse && layers[n - 1].ops->fuse(&layers[n - 1], &t))
            continue; /* folded: keeps the previous layer's name */
        if (n == cap) {
            cap *= 2;
            Layer *nl = xcalloc((size_t)cap, sizeof *nl);
            int *np = xcalloc((size_t)cap, sizeof *np);
            memcpy(nl, layers, (size_t)n * sizeof *nl);
            memcpy(np, pos, (size_t)n * sizeof *np);
            free(layers), free(pos);
            layers = nl, pos = np;
        }
        t.index = n;
        name_layer(layers, n, &t);
        pos[n] = ntok;
        layers[n++] = t;
    }
    char forms[512];
    layer_allowed_forms(forms, sizeof forms);
    if (n == 0) {
        rc = err_set(MT_EX_CONFIG, "model.layers is empty: list the layers; %s", forms);
        goto fail;
    }
    /* shapes, in model order: each layer's input is the previous one's output */
    for (int i = 0; i < n; i++) {
        const Layer *prev = i ? &layers[i - 1] : NULL;
        if ((rc = layer_shape(&layers[i], prev ? prev->out_shape : in_shape,
                              prev ? prev->out_ndim : in_ndim, pos[i])))
            goto fail;
    }
    size_t off = 0, ntrainable = 0, maxw = 1;
    for (int d = 0; d < in_ndim; d++) maxw *= (size_t)in_shape[d];
    for (int i = 0; i < n; i++) {
        Layer *l = &layers[i];
        for (int k = 0; k < l->nparams; k++) {
            off = round_up(off, PARAM_ALIGN);
            l->params[k].off = off;
            off += l->params[k].count;
            ntrainable += l->params[k].count;
        }
        maxw = MT_MAX(maxw, (size_t)l->out);
    }
    const int width = layers[n - 1].out;
    if (ntrainable == 0) {
        rc = err_set(MT_EX_CONFIG, "model.layers \"%s\" has no dense layer, so nothing to "
                                   "train: add at least one dense:N (the last one's N = the "
                                   "number of classes: its outputs are the class logits)", spec);
        goto fail;
    }
    if (num_classes > 0 && width != num_classes) {
        rc = err_set(MT_EX_CONFIG,
                     "model.layers: the last layer has %d outputs but the dataset has %d "
                     "classes: the last layer's width must equal the number of classes (end "
                     "the list with dense:%d; its outputs are the class logits)",
                     width, num_classes, num_classes);
        goto fail;
    }
    free(buf);
    free(pos);

    m->nlayers = n;
    m->layers = layers;
    m->in_ndim = in_ndim;
    memcpy(m->in_shape, in_shape, (size_t)in_ndim * sizeof *in_shape);
    m->in_dim = layers[0].in;
    m->num_classes = width;
    m->nparams = round_up(off, PARAM_ALIGN);
    m->ntrainable = ntrainable;
    m->max_width = maxw;
    return 0;
fail:
    free(buf);
    free(pos);
    free(layers);
    memset(m, 0, sizeof *m);
    return rc;
}

void model_free(Model *m)
{
    free(m->layers);
    memset(m, 0, sizeof *m);
}

void model_init_params(const Model *m, float *params, InitKind init, uint64_t seed)
{
    memset(params, 0, m->nparams * sizeof *params);
    for (int li = 0; li < m->nlayers; li++) {
        const Layer *l = &m->layers[li];
        if (l->ops->init) l->ops->init(l, params, init, seed);
    }
}

void model_describe(const Model *m, char *buf, size_t n)
{
    size_t used = 0;
#define PUT(...)                                                                           \
    do {                                                                                   \
        if (used < n) {                                                                    \
            int k_ = snprintf(buf + used, n - used, __VA_ARGS__);                          \
            used += k_ > 0 ? (size_t)k_ : 0;                                               \
        }                                                                                  \
    } while (0)
    if (n == 0) return;
    buf[0] = 0;
    for (int d = 0; d < m->in_ndim; d++) PUT(d ? "x%d" : "%d", m->in_shape[d]);
    for (int i = 0; i < m->nlayers; i++) {
        const Layer *l = &m->layers[i];
        char piece[128];
        l->ops->describe(l, piece, sizeof piece);
        PUT("-%s", piece);
    }
    PUT(" (%zu params)", m->ntrainable);
#undef PUT
}

const ParamDesc *model_find_param(const Model *m, const char *name, const Layer **layer)
{
    const char *slash = strchr(name, '/');
    if (!slash) return NULL;
    size_t ln = (size_t)(slash - name);
    for (int i = 0; i < m->nlayers; i++) {
        const Layer *l = &m->layers[i];
        if (strlen(l->name) != ln || strncmp(l->name, name, ln) != 0) continue;
        for (int k = 0; k < l->nparams; k++) {
            if (strcmp(l->params[k].name, slash + 1) == 0) {
                if (layer) *layer = l;
                return &l->params[k];
            }
        }
        return NULL;
    }
    return NULL;
}
