/* loss.c — softmax cross-entropy (loss.h).
 *
 * Per sample (row z of C logits, label y), numerically stable:
 *   mx = max_j z_j;  e_j = expf(z_j - mx) (float);  s = sum_j e_j (double, j in order)
 *   loss = log(s) - (z_y - mx)                      (double)
 *   dz_j = (e_j * (float)(1/s) - [j == y]) * grad_scale   (float)
 * The loss is the same in the training and the eval function. */
#include "core/loss.h"

#include <math.h>

#include "core/common.h"

/* One row: returns the loss, writes e_j into out (may alias z) if out != NULL, the
 * row's 1/s into *inv_s, and whether the argmax (first max) is the label. */
static double row_xent(const float *z, int C, int32_t label, float *out, float *inv_s,
                       int *hit)
{
    CHECK(label >= 0 && label < C);
    float mx = z[0];
    int arg = 0;
    for (int j = 1; j < C; j++)
        if (z[j] > mx) mx = z[j], arg = j;
    const float zy = z[label];
    double s = 0.0;
    for (int j = 0; j < C; j++) {
        float e = expf(z[j] - mx);
        s += e;
        if (out) out[j] = e;
    }
    *inv_s = (float)(1.0 / s);
    *hit = arg == label;
    return log(s) - ((double)zy - (double)mx);
}

double loss_softmax_xent(const float *logits, const int32_t *labels, int B, int C,
                         float grad_scale, float *dlogits, int64_t *correct)
{
    double total = 0.0;
    int64_t ok = 0;
    for (int r = 0; r < B; r++) {
        const float *z = logits + (size_t)r * C;
        float *d = dlogits + (size_t)r * C;
        float inv;
        int hit;
        total += row_xent(z, C, labels[r], d, &inv, &hit);
        ok += hit;
        for (int j = 0; j < C; j++) d[j] = (d[j] * inv - (j == labels[r] ? 1.0f : 0.0f)) * grad_scale;
    }
    if (correct) *correct += ok;
    return total;
}

double loss_softmax_xent_eval(const float *logits, const int32_t *labels, int B, int C,
                              int64_t *correct)
{
    double total = 0.0;
    int64_t ok = 0;
    for (int r = 0; r < B; r++) {
        float inv;
        int hit;
        total += row_xent(logits + (size_t)r * C, C, labels[r], NULL, &inv, &hit);
        ok += hit;
    }
    if (correct) *correct += ok;
    return total;
}
