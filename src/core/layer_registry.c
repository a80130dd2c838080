/* layer_registry.c — the layer kinds (layer.h).  Adding a kind: its file
 * layer_<kind>.c defining `const LayerOps layer_<kind>_ops`, and one line below.
 * The order is that of the "allowed forms" text in errors, and the order in which
 * the kinds are asked to parse a token. */
#include <stdio.h>
#include <string.h>

#include "core/common.h"
#include "core/layer.h"

#define LAYER_KINDS(X)                                                                     \
    X(layer_dense_ops)   /* dense:N, fuses a following activation (layer_dense.c) */       \
    X(layer_act_ops)     /* relu, gelu, tanh (layer_act.c) */                              \
    X(layer_dropout_ops) /* dropout:P (layer_dropout.c) */

#define LAYER_DECLARE(ops) extern const LayerOps ops;
#define LAYER_ENTRY(ops) &ops,
LAYER_KINDS(LAYER_DECLARE)
const LayerOps *const layer_registry[] = {LAYER_KINDS(LAYER_ENTRY)};
const int layer_registry_count = (int)(sizeof layer_registry / sizeof layer_registry[0]);

/* An example for the error text: kinds of the registry, in a typical model. */
#define LAYER_SPEC_EXAMPLE "dense:512 relu dropout:0.1 dense:10"

const LayerOps *layer_kind(const char *kind_name)
{
    for (int k = 0; k < layer_registry_count; k++)
        if (strcmp(layer_registry[k]->kind_name, kind_name) == 0) return layer_registry[k];
    return NULL;
}

void layer_allowed_forms(char *buf, size_t n)
{
    size_t used = 0;
    CHECK(n > 0);
    buf[0] = 0;
    for (int k = 0; k <= layer_registry_count && used < n; k++) {
        int w = k == layer_registry_count
                    ? snprintf(buf + used, n - used, ", separated by spaces, e.g. \"%s\"",
                               LAYER_SPEC_EXAMPLE)
                    : snprintf(buf + used, n - used, "%s%s", k ? ", " : "allowed forms are ",
                               layer_registry[k]->forms);
        used += w > 0 ? (size_t)w : 0;
    }
}

int layer_parse(const char *tok, int pos, Layer *l)
{
    char forms[512], why[256];
    layer_allowed_forms(forms, sizeof forms);
    for (int k = 0; k < layer_registry_count; k++) {
        memset(l, 0, sizeof *l);
        l->ops = layer_registry[k];
        why[0] = 0;
        switch (l->ops->parse(tok, l, why, sizeof why)) {
        case LAYER_PARSE_OK: return 0;
        case LAYER_PARSE_BAD:
            memset(l, 0, sizeof *l);
            return err_set(MT_EX_CONFIG, "model.layers: bad token \"%s\" (token %d): %s; %s",
                           tok, pos, why, forms);
        case LAYER_PARSE_OTHER: break;
        }
    }
    memset(l, 0, sizeof *l);
    return err_set(MT_EX_CONFIG, "model.layers: unknown token \"%s\" (token %d): %s", tok, pos,
                   forms);
}
