/* model.c — parse the layer list, lay out the slabs, initialise parameters (model.h).
 *
 * Layer names are the kind and a counter per kind, in order: dense0, dense1, ...;
 * dropout0, ...; a standalone activation is named by its function (relu0, gelu0,
 * tanh0, counted per function).  An activation fused into a dense layer keeps the
 * dense layer's name.  Parameter arrays are laid out in layer order, w then b, each at
 * an offset that is a multiple of PARAM_ALIGN floats; nparams is rounded up to a
 * multiple of PARAM_ALIGN too. */
#include "core/model.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/rng.h"

#define MODEL_MAX_WIDTH (1 << 24)
#define ALLOWED_FORMS                                                                      \
    "allowed forms are dense:N (N an integer >= 1), relu, gelu, tanh, dropout:P "         \
    "(0 <= P < 1), separated by spaces, e.g. \"dense:512 relu dropout:0.1 dense:10\""

static size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

static int parse_act(const char *tok, ActKind *act)
{
    if (strcmp(tok, "relu") == 0) *act = ACT_RELU;
    else if (strcmp(tok, "gelu") == 0) *act = ACT_GELU;
    else if (strcmp(tok, "tanh") == 0) *act = ACT_TANH;
    else return 0;
    return 1;
}

/* Parse one token into *l (kind, out or act or p).  0 or MT_EX_CONFIG. */
static int parse_token(const char *tok, int pos, Layer *l)
{
    char *end;
    memset(l, 0, sizeof *l);
    if (strncmp(tok, "dense:", 6) == 0) {
        const char *v = tok + 6;
        errno = 0;
        long n = strtol(v, &end, 10);
        if (!isdigit((unsigned char)*v) || *end || errno || n < 1 || n > MODEL_MAX_WIDTH)
            return err_set(MT_EX_CONFIG,
                           "model.layers: bad token \"%s\" (token %d): the width of dense:N "
                           "must be an integer from 1 to %d; %s",
                           tok, pos, MODEL_MAX_WIDTH, ALLOWED_FORMS);
        l->kind = LAYER_DENSE;
        l->out = (int)n;
        return 0;
    }
    if (strncmp(tok, "dropout:", 8) == 0) {
        const char *v = tok + 8;
        errno = 0;
        double p = strtod(v, &end);
        if (!*v || isspace((unsigned char)*v) || *end || errno || !(p >= 0.0 && p < 1.0))
            return err_set(MT_EX_CONFIG,
                           "model.layers: bad token \"%s\" (token %d): the drop probability "
                           "of dropout:P must be a number with 0 <= P < 1; %s",
                           tok, pos, ALLOWED_FORMS);
        l->kind = LAYER_DROPOUT;
        l->p = (float)p;
        if (l->p >= 1.0f) l->p = nextafterf(1.0f, 0.0f); /* p just below 1 rounded up */
        return 0;
    }
    if (parse_act(tok, &l->act)) {
        l->kind = LAYER_ACT;
        return 0;
    }
    return err_set(MT_EX_CONFIG, "model.layers: unknown token \"%s\" (token %d): %s", tok, pos,
                   ALLOWED_FORMS);
}

int model_build(Model *m, const char *spec, int in_dim, int num_classes)
{
    memset(m, 0, sizeof *m);
    if (in_dim < 1)
        return err_set(MT_EX_CONFIG, "model: input width %d: the dataset's samples must have "
                                     "at least one feature", in_dim);
    char *buf = xstrdup(spec ? spec : "");
    int cap = 8, n = 0, ntok = 0, rc = 0;
    Layer *layers = xcalloc((size_t)cap, sizeof *layers);
    int width = in_dim;
    int count_dense = 0, count_drop = 0, count_act[4] = {0};
    char *save = NULL;
    for (char *tok = strtok_r(buf, " \t\r\n", &save); tok; tok = strtok_r(NULL, " \t\r\n", &save)) {
        Layer t;
        ntok++;
        if ((rc = parse_token(tok, ntok, &t))) goto fail;
        if (t.kind == LAYER_ACT && n > 0 && layers[n - 1].kind == LAYER_DENSE &&
            layers[n - 1].act == ACT_NONE) {
            layers[n - 1].act = t.act; /* fused: keeps the dense layer's name */
            continue;
        }
        if (n == cap) {
            cap *= 2;
            Layer *nl = xcalloc((size_t)cap, sizeof *nl);
            memcpy(nl, layers, (size_t)n * sizeof *nl);
            free(layers);
            layers = nl;
        }
        t.index = n;
        t.in = width;
        switch (t.kind) {
        case LAYER_DENSE:
            snprintf(t.name, sizeof t.name, "dense%d", count_dense++);
            break;
        case LAYER_DROPOUT:
            t.out = width;
            snprintf(t.name, sizeof t.name, "dropout%d", count_drop++);
            break;
        case LAYER_ACT:
            t.out = width;
            snprintf(t.name, sizeof t.name, "%s%d", act_name(t.act), count_act[t.act]++);
            break;
        }
        width = t.out;
        layers[n++] = t;
    }
    if (n == 0) {
        rc = err_set(MT_EX_CONFIG, "model.layers is empty: list the layers; %s", ALLOWED_FORMS);
        goto fail;
    }
    if (count_dense == 0) {
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
    buf = NULL;

    m->nlayers = n;
    m->layers = layers;
    m->in_dim = in_dim;
    m->num_classes = width;
    size_t off = 0, maxw = (size_t)in_dim;
    for (int i = 0; i < n; i++) {
        Layer *l = &layers[i];
        layer_setup(l);
        for (int k = 0; k < l->nparams; k++) {
            off = round_up(off, PARAM_ALIGN);
            l->params[k].off = off;
            off += l->params[k].count;
            m->ntrainable += l->params[k].count;
        }
        maxw = MT_MAX(maxw, (size_t)l->out);
    }
    m->nparams = round_up(off, PARAM_ALIGN);
    m->max_width = maxw;
    return 0;
fail:
    free(buf);
    free(layers);
    memset(m, 0, sizeof *m);
    return rc;
}

void model_free(Model *m)
{
    free(m->layers);
    memset(m, 0, sizeof *m);
}

/* Weight element i: He: (float)(sqrt(2/fan_in) * rng_normal(key, i)) in double;
 * Xavier: (float)(a * (2 u - 1)), a = sqrt(6/(fan_in+fan_out)), u = rng_uniform(key, i),
 * so in [-a, a).  key = rng_key(seed, RNG_INIT, layer index). */
void model_init_params(const Model *m, float *params, InitKind init, uint64_t seed)
{
    memset(params, 0, m->nparams * sizeof *params);
    for (int li = 0; li < m->nlayers; li++) {
        const Layer *l = &m->layers[li];
        if (l->kind != LAYER_DENSE) continue;
        const ParamDesc *w = &l->params[0];
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
        /* bias (params[1]) stays zero */
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
    PUT("%d", m->in_dim);
    for (int i = 0; i < m->nlayers; i++) {
        const Layer *l = &m->layers[i];
        switch (l->kind) {
        case LAYER_DENSE:
            PUT("-dense%d", l->out);
            if (l->act != ACT_NONE) PUT("+%s", act_name(l->act));
            break;
        case LAYER_ACT: PUT("-%s", act_name(l->act)); break;
        case LAYER_DROPOUT: PUT("-dropout%g", (double)l->p); break;
        }
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
