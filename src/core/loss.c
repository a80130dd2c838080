/* loss.c — softmax cross-entropy (loss.h).
 *
 * Per sample (row z of C logits, label y), numerically stable:
 *   mx = max_j z_j;  e_j = exp(z_j - mx) (float);  s = sum_j e_j (double, j in order)
 *   loss = log(s) - (z_y - mx)                      (double)
 *   dz_j = (e_j * (float)(1/s) - [j == y]) * grad_scale   (float)
 * exp is mathf_expf (over a block of rows at once, vectorised), log is mathf_log
 * (core/mathf.h): the same bits on every CPU.  The loss is the same in the training and
 * the eval function. */
#include "core/loss.h"

#include <stdlib.h>

#include "core/common.h"
#include "core/mathf.h"

/* Exponentials per pass: rows of C logits are taken LOSS_CHUNK / C at a time (at least
 * one), so that one mathf_expf_n call covers many small rows. */
#define LOSS_CHUNK 2048

/* Rows [0, n) of z (n, C): writes e (n, C) = exp(z - rowmax) (e may equal z), inv[r] =
 * (float)(1 / s_r); returns the sum over the rows of the per-sample losses, in row
 * order; adds to *ok the rows whose argmax (first max) is the label. */
static double rows_xent(const float *z, const int32_t *labels, int n, int C, float *e,
                        float *inv, int64_t *ok)
{
    double off[LOSS_CHUNK]; /* z_y - mx per row, in double */
    for (int r = 0; r < n; r++) {
        const float *zr = z + (size_t)r * C;
        float *er = e + (size_t)r * C;
        const int32_t label = labels[r];
        CHECK(label >= 0 && label < C);
        float mx = zr[0];
        int arg = 0;
        for (int j = 1; j < C; j++)
            if (zr[j] > mx) mx = zr[j], arg = j;
        off[r] = (double)zr[label] - (double)mx;
        *ok += arg == label;
        for (int j = 0; j < C; j++) er[j] = zr[j] - mx;
    }
    mathf_expf_n(e, e, (size_t)n * C);
    double total = 0.0;
    for (int r = 0; r < n; r++) {
        const float *er = e + (size_t)r * C;
        double s = 0.0;
        for (int j = 0; j < C; j++) s += er[j];
        inv[r] = (float)(1.0 / s);
        total += mathf_log(s) - off[r];
    }
    return total;
}

static int rows_per_pass(int C) { return C >= LOSS_CHUNK ? 1 : LOSS_CHUNK / C; }

double loss_softmax_xent(const float *logits, const int32_t *labels, int B, int C,
                         float grad_scale, float *dlogits, int64_t *correct)
{
    CHECK(C >= 1);
    double total = 0.0;
    int64_t ok = 0;
    float inv[LOSS_CHUNK];
    const int per = rows_per_pass(C);
    for (int r0 = 0; r0 < B; r0 += per) {
        const int n = MT_MIN(per, B - r0);
        float *d = dlogits + (size_t)r0 * C;
        total += rows_xent(logits + (size_t)r0 * C, labels + r0, n, C, d, inv, &ok);
        for (int r = 0; r < n; r++) {
            float *dr = d + (size_t)r * C;
            const int32_t y = labels[r0 + r];
            for (int j = 0; j < C; j++) dr[j] = (dr[j] * inv[r] - (j == y ? 1.0f : 0.0f)) * grad_scale;
        }
    }
    if (correct) *correct += ok;
    return total;
}

double loss_softmax_xent_eval(const float *logits, const int32_t *labels, int B, int C,
                              int64_t *correct)
{
    CHECK(C >= 1);
    double total = 0.0;
    int64_t ok = 0;
    float inv[LOSS_CHUNK], ebuf[LOSS_CHUNK];
    float *e = C <= LOSS_CHUNK ? ebuf : xmalloc((size_t)C * sizeof *e);
    const int per = rows_per_pass(C);
    for (int r0 = 0; r0 < B; r0 += per) {
        const int n = MT_MIN(per, B - r0);
        total += rows_xent(logits + (size_t)r0 * C, labels + r0, n, C, e, inv, &ok);
    }
    if (e != ebuf) free(e);
    if (correct) *correct += ok;
    return total;
}
