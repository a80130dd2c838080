/* loss.h — softmax cross-entropy over class logits. */
#ifndef MPITRAIN_CORE_LOSS_H
#define MPITRAIN_CORE_LOSS_H

#include <stdint.h>

/* logits (B, C), labels (B) in [0, C).  Writes dlogits (B, C) = (softmax - onehot) *
 * grad_scale (grad_scale = 1 / global batch, so that micro-batch gradients sum to the
 * gradient of the batch mean); dlogits may equal logits (in place).  Returns the SUM
 * over the B samples of the per-sample loss (double, summed in sample order); adds the
 * number of correctly classified samples (argmax, first max wins) to *correct if not NULL. */
double loss_softmax_xent(const float *logits, const int32_t *labels, int B, int C,
                         float grad_scale, float *dlogits, int64_t *correct);

/* Same, forward only (eval): no gradient. */
double loss_softmax_xent_eval(const float *logits, const int32_t *labels, int B, int C,
                              int64_t *correct);

#endif
