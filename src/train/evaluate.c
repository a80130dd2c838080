/* evaluate.c — evaluation over a dataset split across ranks.
 *
 * The split is cut into chunks of EVAL_CHUNK rows in file order; rank r evaluates the
 * chunks [r*C/N, (r+1)*C/N).  Each chunk's loss sum and correct count are written into
 * a zeroed array of all C chunks, the arrays are summed over ranks (exact: every entry
 * has one contributor) and the losses are added along the canonical tree.  So the
 * figures do not depend on the number of ranks or threads, and no sample is padded or
 * duplicated (as PyTorch's DistributedSampler does to even out the ranks). */
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "train/train_impl.h"

#define EVAL_GROUP 32 /* chunks read and evaluated at a time */

int trainer_evaluate(Trainer *t, Dataset *ds, double *loss, double *accuracy)
{
    const DatasetInfo *di = dataset_info(ds);
    int64_t n = di->num_samples;
    int C = (int)((n + EVAL_CHUNK - 1) / EVAL_CHUNK);
    /* the computing ranks share the chunks (a parameter server evaluates nothing) */
    int wi = t->split.worker, wn = t->split.workers;
    int c_lo = wi < 0 ? 0 : (int)((int64_t)wi * C / wn);
    int c_hi = wi < 0 ? 0 : (int)((int64_t)(wi + 1) * C / wn);
    if (!t->eval_x) {
        t->eval_cap_rows = EVAL_GROUP * EVAL_CHUNK;
        t->eval_x = xaligned((size_t)t->eval_cap_rows * di->sample_size * sizeof(float));
        t->eval_y = xcalloc(t->eval_cap_rows, sizeof(int32_t));
    }
    free(t->eval_buf);
    t->eval_buf = xcalloc(2 * (size_t)C, sizeof(double));
    double *closs = t->eval_buf, *ccorr = t->eval_buf + C;
    int64_t *idx = xcalloc(t->eval_cap_rows, sizeof(int64_t));
    double lbuf[EVAL_GROUP];
    int64_t cbuf[EVAL_GROUP];
    int st = 0;
    for (int g = c_lo; g < c_hi && !st; g += EVAL_GROUP) {
        int gc = MT_MIN(EVAL_GROUP, c_hi - g);
        int64_t r0 = (int64_t)g * EVAL_CHUNK;
        int rows = (int)MT_MIN((int64_t)gc * EVAL_CHUNK, n - r0);
        for (int i = 0; i < rows; i++) idx[i] = r0 + i;
        st = dataset_read(ds, idx, rows, t->eval_x, t->eval_y);
        if (st) break;
        exec_eval(t->exec, t->params, t->eval_x, t->eval_y, rows, EVAL_CHUNK, lbuf, cbuf);
        for (int j = 0; j < gc; j++) {
            closs[g + j] = lbuf[j];
            ccorr[g + j] = (double)cbuf[j];
        }
    }
    free(idx);
    int failed = -1;
    int code = comm_agree(t->comm, st, &failed);
    if (code) {
        if (failed == t->rank) log_error("eval: %s", err_msg());
        return code;
    }
    comm_allreduce(t->comm, t->eval_buf, 2 * (size_t)C, COMM_F64);
    double lsum = exec_tree_sum_f64(closs, 0, C);
    double csum = 0;
    for (int j = 0; j < C; j++) csum += ccorr[j];
    *loss = lsum / (double)n;
    *accuracy = csum / (double)n;
    return 0;
}
