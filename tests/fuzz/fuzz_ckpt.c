/* fuzz_ckpt.c — libFuzzer harness for the checkpoint reader and verifier
 * (src/io/ckpt_read.c, ckpt_format.c): the input is a checkpoint file, written to the
 * scratch tmpfs, then ckpt_verify, ckpt_info, ckpt_read_meta, ckpt_read_config and
 * ckpt_read into the model the seeds were written for (FUZZ_CKPT_SPEC on
 * FUZZ_CKPT_IN inputs, with the optimizer the file names: sgd with momentum, or adamw).
 * Besides ASan/UBSan: a file that ckpt_verify accepts must also be read by ckpt_read
 * when the model matches, and no HDF5 handle may stay open.
 * Seeds: tests/fuzz/ckpt/ (made by ckpt_write, tests/fuzz/gen_seeds.c, and copies
 * rewritten by h5py in HDF5's oldest file format, whose metadata has no checksums). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "fuzz_util.h"
#include "fuzz_seeds.h"
#include "io/ckpt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static Model m;
    static int built;
    if (!built) {
        fuzz_dir();
        if (model_build(&m, FUZZ_CKPT_SPEC, FUZZ_CKPT_IN, 0) != 0) {
            fprintf(stderr, "fuzz harness: model_build: %s\n", err_msg());
            abort();
        }
        built = 1;
    }
    const char *path = fuzz_write("step-00000001.h5", data, size);

    int verified = ckpt_verify(path, fuzz_null()) == 0;
    fuzz_check_no_h5_leak("ckpt_verify");
    ckpt_info(path, fuzz_null());
    fuzz_check_no_h5_leak("ckpt_info");
    CkptMeta meta;
    int have_meta = ckpt_read_meta(path, &meta) == 0;
    fuzz_check_no_h5_leak("ckpt_read_meta");
    char *text = NULL;
    if (ckpt_read_config(path, &text) == 0) free(text);
    fuzz_check_no_h5_leak("ckpt_read_config");

    OptimConf oc = {0};
    int adamw = have_meta && strcmp(meta.optimizer, "adamw") == 0;
    oc.kind = adamw ? OPTIM_ADAMW : OPTIM_SGD;
    oc.momentum = adamw ? 0.0f : 0.9f;
    oc.beta1 = 0.9f, oc.beta2 = 0.999f, oc.eps = 1e-8f;
    int ns = optim_nstates(&oc);
    float *params = xaligned(m.nparams * sizeof(float));
    float *st[2] = {NULL, NULL};
    for (int i = 0; i < ns; i++) st[i] = xaligned(m.nparams * sizeof(float));
    int rc = ckpt_read(path, &m, &oc, params, st, NULL);
    fuzz_check_no_h5_leak("ckpt_read");
    if (verified && rc == MT_EX_DATAERR) {
        fprintf(stderr, "ckpt_verify accepts the file but ckpt_read finds it damaged: %s\n",
                err_msg());
        abort();
    }
    free(params);
    for (int i = 0; i < ns; i++) free(st[i]);
    fuzz_clean();
    err_clear();
    return 0;
}
