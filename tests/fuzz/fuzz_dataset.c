/* fuzz_dataset.c — libFuzzer harness for the dataset reader (src/io/dataset.c,
 * dataset_verify.c): the index (index.h5) and shard reader.  Input layout:
 *   byte 0       flags: bit 0 = whole-shard cache on (cache_mb 1) or off
 *   bytes 1..4   n = length of index.h5 (little-endian)
 *   then n bytes of DIR/index.h5, the rest is DIR/shard-00000.h5
 * Both files are written to the scratch tmpfs; then dataset_open, and for a dataset that
 * opens: dataset_read of a few samples (first, last, middle, a repeat) twice,
 * dataset_print_info and, when it is small (at most 2^20 values), dataset_verify.
 * Besides ASan/UBSan: in-range samples are read without a CHECK failure, and no HDF5
 * handle stays open.  Seeds: tests/fuzz/dataset/ (written by dataset_import_* and by
 * h5py, tests/fuzz/gen_seeds*). */
#include <stdint.h>
#include <stdlib.h>

#include "core/common.h"
#include "fuzz_util.h"
#include "io/dataset.h"

#define READ_BYTES_MAX ((size_t)64 << 20) /* the harness reads at most this many floats' bytes */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data;
    size_t n = size;
    int flags = (int)fuzz_take(&p, &n, 1);
    size_t ni = (size_t)fuzz_take(&p, &n, 4);
    if (ni > n) ni = n;
    fuzz_write("index.h5", p, ni);
    fuzz_write("shard-00000.h5", p + ni, n - ni);
    const char *dir = fuzz_dir();

    Dataset *ds = NULL;
    int rc = dataset_open(dir, flags & 1 ? 1 : 0, &ds);
    if (rc == 0) {
        const DatasetInfo *in = dataset_info(ds);
        int64_t ns = in->num_samples;
        int64_t idx[5] = {0, ns - 1, ns / 2, 0, ns > 1 ? 1 : 0};
        size_t row = (size_t)in->sample_size * sizeof(float);
        int k = 5;
        while (k > 0 && row * (size_t)k > READ_BYTES_MAX) k--;
        if (k > 0) {
            float *x = malloc(row * (size_t)k);
            int32_t *y = malloc(sizeof(int32_t) * (size_t)k);
            dataset_read(ds, idx, k, x, y);
            dataset_read(ds, idx, k, x, y); /* again: cached or open handles now */
            free(x);
            free(y);
        }
        int small = (uint64_t)ns * (uint64_t)in->sample_size <= (1u << 20);
        dataset_close(ds);
        fuzz_check_no_h5_leak("dataset_open/read/close");
        dataset_print_info(dir, fuzz_null()); /* index.h5 only: what dataset_open read */
        fuzz_check_no_h5_leak("dataset_print_info");
        if (small) dataset_verify(dir, fuzz_null());
        fuzz_check_no_h5_leak("dataset_verify");
    }
    fuzz_check_no_h5_leak("dataset_open");
    fuzz_clean();
    err_clear();
    return 0;
}
