/* test_model.c — layer-list parsing, fusion, names, slab layout, errors, init. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "core/model.h"
#include "core/rng.h"

static void test_mlp(void **state)
{
    (void)state;
    Model m;
    assert_int_equal(model_build(&m, "dense:512 relu dense:512 relu dense:10", 784, 10), 0);
    assert_int_equal(m.nlayers, 3);
    const char *names[] = {"dense0", "dense1", "dense2"};
    const ActKind acts[] = {ACT_RELU, ACT_RELU, ACT_NONE};
    const int ins[] = {784, 512, 512}, outs[] = {512, 512, 10};
    for (int i = 0; i < 3; i++) {
        const Layer *l = &m.layers[i];
        assert_ptr_equal(l->ops, &layer_dense_ops);
        assert_string_equal(l->name, names[i]);
        assert_int_equal(l->act, acts[i]);
        assert_int_equal(l->index, i);
        assert_int_equal(l->in, ins[i]);
        assert_int_equal(l->out, outs[i]);
        assert_int_equal(l->aux_per_sample, 0);
        assert_non_null(l->ops);
    }
    assert_int_equal(m.in_dim, 784);
    assert_int_equal(m.num_classes, 10);
    assert_int_equal(m.ntrainable, 669706);
    assert_int_equal(m.max_width, 784);
    /* 401408 | 512 | 262144 | 512 | 5120 | 10 -> 6 pad to 669712 */
    assert_int_equal(m.layers[0].params[0].off, 0);
    assert_int_equal(m.layers[0].params[1].off, 401408);
    assert_int_equal(m.layers[1].params[0].off, 401920);
    assert_int_equal(m.layers[2].params[1].off, 669696);
    assert_int_equal(m.nparams, 669712);
    char buf[256];
    model_describe(&m, buf, sizeof buf);
    assert_string_equal(buf, "784-dense512+relu-dense512+relu-dense10 (669706 params)");
    model_describe(&m, buf, 10); /* truncates, stays terminated */
    assert_string_equal(buf, "784-dense");
    model_free(&m);
    assert_null(m.layers);
}

/* Odd widths: padding between arrays; fusion only directly after a dense layer. */
static void test_layout_and_fusion(void **state)
{
    (void)state;
    Model m;
    assert_int_equal(model_build(&m, "  dense:5\tgelu dropout:0.5 relu dense:3 tanh tanh ", 7, 0),
                     0);
    assert_int_equal(m.nlayers, 5);
    const char *names[] = {"dense0", "dropout0", "relu0", "dense1", "tanh0"};
    const char *kinds[] = {"dense", "dropout", "act", "dense", "act"};
    const ActKind acts[] = {ACT_GELU, ACT_NONE, ACT_RELU, ACT_TANH, ACT_TANH};
    const size_t aux[] = {5, 5, 0, 0, 0};
    for (int i = 0; i < 5; i++) {
        assert_string_equal(m.layers[i].name, names[i]);
        assert_ptr_equal(m.layers[i].ops, layer_kind(kinds[i]));
        assert_int_equal(m.layers[i].act, acts[i]);
        assert_int_equal(m.layers[i].aux_per_sample, aux[i]);
        assert_int_equal(m.layers[i].index, i);
    }
    char tok[64];
    m.layers[1].ops->format(&m.layers[1], tok, sizeof tok);
    assert_string_equal(tok, "dropout:0.5");
    assert_int_equal(m.layers[3].in, 5);
    assert_int_equal(m.num_classes, 3); /* the last layer's width */
    /* w0 35 @0 | b0 5 @48 | w1 15 @64 | b1 3 @80 | pad to 96 */
    assert_int_equal(m.layers[0].params[0].off, 0);
    assert_int_equal(m.layers[0].params[1].off, 48);
    assert_int_equal(m.layers[3].params[0].off, 64);
    assert_int_equal(m.layers[3].params[1].off, 80);
    assert_int_equal(m.nparams, 96);
    assert_int_equal(m.ntrainable, 58);
    assert_int_equal(m.max_width, 7);
    for (int i = 0; i < m.nlayers; i++)
        for (int k = 0; k < m.layers[i].nparams; k++)
            assert_int_equal(m.layers[i].params[k].off % PARAM_ALIGN, 0);
    char buf[256];
    model_describe(&m, buf, sizeof buf);
    assert_string_equal(buf, "7-dense5+gelu-dropout0.5-relu-dense3+tanh-tanh (58 params)");

    const Layer *l = NULL;
    const ParamDesc *p = model_find_param(&m, "dense1/b", &l);
    assert_non_null(p);
    assert_ptr_equal(l, &m.layers[3]);
    assert_int_equal(p->off, 80);
    assert_int_equal(p->count, 3);
    p = model_find_param(&m, "dense0/w", NULL);
    assert_non_null(p);
    assert_int_equal(p->shape[0], 5);
    assert_int_equal(p->shape[1], 7);
    assert_null(model_find_param(&m, "dense2/w", NULL));
    assert_null(model_find_param(&m, "dense0/x", NULL));
    assert_null(model_find_param(&m, "dense0", NULL));
    assert_null(model_find_param(&m, "relu0/w", NULL));
    model_free(&m);

    /* an activation after an activation is standalone; a second dense starts again */
    assert_int_equal(model_build(&m, "dense:4 relu relu gelu dense:2", 3, 2), 0);
    assert_int_equal(m.nlayers, 4);
    assert_string_equal(m.layers[1].name, "relu0");
    assert_string_equal(m.layers[2].name, "gelu0");
    assert_string_equal(m.layers[3].name, "dense1");
    assert_int_equal(m.layers[0].act, ACT_RELU);
    model_free(&m);
}

/* A per-sample input shape of up to 3 dims: shapes flow from layer to layer (dense
 * flattens, elementwise kinds keep the shape); names counted per stem over many layers
 * (the layer table grows past its first allocation). */
static void test_shapes_and_names(void **state)
{
    (void)state;
    Model m;
    assert_int_equal(model_build_shape(&m, "dropout:0.25 relu dense:6 tanh dense:4", (const int[]){1, 4, 5}, 3, 4), 0);
    assert_int_equal(m.nlayers, 4);
    assert_int_equal(m.in_dim, 20);
    assert_int_equal(m.in_ndim, 3);
    assert_int_equal(m.layers[0].out_ndim, 3);
    assert_int_equal(m.layers[1].in_shape[1], 4);
    assert_int_equal(m.layers[1].out_shape[2], 5);
    assert_int_equal(m.layers[2].in, 20);
    assert_int_equal(m.layers[2].out_ndim, 1);
    assert_int_equal(m.layers[2].params[0].shape[1], 20);
    assert_int_equal(m.layers[3].in, 6);
    assert_int_equal(m.num_classes, 4);
    assert_int_equal(m.max_width, 20);
    char buf[256];
    model_describe(&m, buf, sizeof buf);
    assert_string_equal(buf, "1x4x5-dropout0.25-relu-dense6+tanh-dense4 (154 params)");
    model_free(&m);

    assert_int_equal(model_build(&m, "relu gelu relu dense:3 relu relu tanh dropout:0.1 dense:3 "
                                     "gelu gelu dropout:0.2 tanh dense:2", 3, 2), 0);
    const char *names[] = {"relu0", "gelu0", "relu1", "dense0", "relu2", "tanh0", "dropout0",
                           "dense1", "gelu1", "dropout1", "tanh1", "dense2"};
    assert_int_equal(m.nlayers, 12);
    for (int i = 0; i < 12; i++) assert_string_equal(m.layers[i].name, names[i]);
    model_free(&m);

    err_clear();
    memset(&m, 0x5a, sizeof m);
    assert_int_equal(model_build_shape(&m, "dense:2", (const int[]){3, 0}, 2, 0), MT_EX_CONFIG);
    assert_non_null(strstr(err_msg(), "input dimension 1 is 0"));
    assert_null(m.layers);
    assert_int_equal(model_build_shape(&m, "dense:2", (const int[]){3, 2, 2, 2}, 4, 0), MT_EX_CONFIG);
    assert_non_null(strstr(err_msg(), "4 dimensions"));
    assert_int_equal(model_build_shape(&m, "dense:2", (const int[]){65536, 65536}, 2, 0), MT_EX_CONFIG);
    assert_non_null(strstr(err_msg(), "more than"));
}

static void expect_error(const char *spec, int in_dim, int classes, const char *const *needles)
{
    Model m;
    memset(&m, 0x5a, sizeof m);
    err_clear();
    int rc = model_build(&m, spec, in_dim, classes);
    print_message("  \"%s\" -> %s\n", spec ? spec : "(null)", err_msg());
    assert_int_equal(rc, MT_EX_CONFIG);
    assert_int_equal(err_code(), MT_EX_CONFIG);
    for (int i = 0; needles[i]; i++) {
        if (!strstr(err_msg(), needles[i])) print_message("missing \"%s\"\n", needles[i]);
        assert_non_null(strstr(err_msg(), needles[i]));
    }
    assert_null(m.layers); /* cleared: model_free is safe */
    assert_int_equal(m.nlayers, 0);
    model_free(&m);
}

static void test_bad_specs(void **state)
{
    (void)state;
    const char *forms = "allowed forms are dense:N";
    expect_error("dens:5 dense:10", 4, 10,
                 (const char *[]){"unknown token \"dens:5\"", "token 1", forms, "dropout:P", NULL});
    expect_error("dense:8 relu foo dense:10", 4, 10,
                 (const char *[]){"\"foo\"", "token 3", forms, NULL});
    expect_error("dense:0", 4, 0, (const char *[]){"\"dense:0\"", "integer from 1", forms, NULL});
    expect_error("dense:abc", 4, 0, (const char *[]){"\"dense:abc\"", forms, NULL});
    expect_error("dense:", 4, 0, (const char *[]){"\"dense:\"", forms, NULL});
    expect_error("dense:-3", 4, 0, (const char *[]){"\"dense:-3\"", NULL});
    expect_error("dense:5x", 4, 0, (const char *[]){"\"dense:5x\"", NULL});
    expect_error("dense:99999999999", 4, 0, (const char *[]){"\"dense:99999999999\"", NULL});
    expect_error("dense:5 dropout:1.5", 4, 0,
                 (const char *[]){"\"dropout:1.5\"", "token 2", "0 <= P < 1", NULL});
    expect_error("dense:5 dropout:1", 4, 0, (const char *[]){"\"dropout:1\"", NULL});
    expect_error("dense:5 dropout:-0.1", 4, 0, (const char *[]){"\"dropout:-0.1\"", NULL});
    expect_error("dense:5 dropout:", 4, 0, (const char *[]){"\"dropout:\"", NULL});
    expect_error("dense:5 dropout:nan", 4, 0, (const char *[]){"\"dropout:nan\"", NULL});
    expect_error("", 4, 10, (const char *[]){"model.layers is empty", "dense:512 relu", "allowed forms", NULL});
    expect_error("  \t ", 4, 10, (const char *[]){"empty", NULL});
    expect_error(NULL, 4, 10, (const char *[]){"empty", NULL});
    expect_error("relu dropout:0.1", 4, 0, (const char *[]){"no dense layer", NULL});
    expect_error("dense:512 relu dense:5", 784, 10,
                 (const char *[]){"last layer has 5 outputs", "10 classes",
                                  "must equal the number of classes", "dense:10", NULL});
    expect_error("dense:10 relu dense:10", 0, 10, (const char *[]){"input width 0", NULL});
}

/* Init: He normal / Xavier uniform from (seed, RNG_INIT, layer index), element i from
 * index i; biases and padding zero; same seed -> same bits. */
static void test_init(void **state)
{
    (void)state;
    Model m;
    assert_int_equal(model_build(&m, "dense:512 relu dropout:0.2 dense:300 relu dense:10", 784,
                                 10), 0);
    float *a = xaligned(m.nparams * sizeof(float)), *b = xaligned(m.nparams * sizeof(float));
    memset(a, 0x7f, m.nparams * sizeof(float)); /* garbage: padding must end zero */
    model_init_params(&m, a, INIT_HE, 1234);
    model_init_params(&m, b, INIT_HE, 1234);
    assert_memory_equal(a, b, m.nparams * sizeof(float));
    model_init_params(&m, b, INIT_HE, 1235);
    assert_memory_not_equal(a, b, m.nparams * sizeof(float));

    /* element i of layer index li's weight: sqrt(2/fan_in) * rng_normal(key(seed, INIT, li), i) */
    const Layer *l2 = &m.layers[2]; /* dense1: index 2 (after dropout0) */
    assert_string_equal(l2->name, "dense1");
    const uint64_t key2 = rng_key(1234, RNG_INIT, 2);
    for (size_t i = 0; i < 5; i++)
        assert_true(a[l2->params[0].off + i] == (float)(sqrt(2.0 / 512) * rng_normal(key2, i)));

    /* statistics of dense0's weight, biases and padding */
    const ParamDesc *w0 = &m.layers[0].params[0];
    double s1 = 0, s2 = 0;
    for (size_t i = 0; i < w0->count; i++) s1 += a[w0->off + i], s2 += (double)a[w0->off + i] * a[w0->off + i];
    double mean = s1 / w0->count, sd = sqrt(s2 / w0->count - mean * mean);
    assert_true(fabs(mean) < 0.001);
    assert_true(fabs(sd / sqrt(2.0 / 784) - 1.0) < 0.01);
    size_t used = 0;
    for (int li = 0; li < m.nlayers; li++)
        for (int k = 0; k < m.layers[li].nparams; k++) {
            const ParamDesc *p = &m.layers[li].params[k];
            for (size_t i = used; i < p->off; i++) assert_true(a[i] == 0.0f); /* padding */
            if (k == 1)
                for (size_t i = 0; i < p->count; i++) assert_true(a[p->off + i] == 0.0f);
            used = p->off + p->count;
        }
    for (size_t i = used; i < m.nparams; i++) assert_true(a[i] == 0.0f);

    /* Xavier: uniform in [-a, a), a = sqrt(6 / (fan_in + fan_out)), sd a/sqrt(3) */
    model_init_params(&m, b, INIT_XAVIER, 1234);
    const double lim = sqrt(6.0 / (784 + 512));
    s1 = s2 = 0;
    for (size_t i = 0; i < w0->count; i++) {
        assert_true(fabs(b[w0->off + i]) <= lim);
        s1 += b[w0->off + i], s2 += (double)b[w0->off + i] * b[w0->off + i];
    }
    sd = sqrt(s2 / w0->count - (s1 / w0->count) * (s1 / w0->count));
    assert_true(fabs(sd / (lim / sqrt(3.0)) - 1.0) < 0.01);
    assert_true(b[w0->off] ==
                (float)(lim * (2.0 * rng_uniform(rng_key(1234, RNG_INIT, 0), 0) - 1.0)));
    free(a), free(b);
    model_free(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mlp),
        cmocka_unit_test(test_layout_and_fusion),
        cmocka_unit_test(test_shapes_and_names),
        cmocka_unit_test(test_bad_specs),
        cmocka_unit_test(test_init),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
