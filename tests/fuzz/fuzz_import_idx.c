/* fuzz_import_idx.c — libFuzzer harness for the IDX import (dataset_import_idx in
 * src/io/dataset_import.c).  Input layout (little-endian):
 *   byte 0       shards - 1 (mod 4: 1..4 shards)
 *   byte 1       --classes (0 = max label + 1)
 *   bytes 2..3   n = length of the images file
 *   then n bytes of the images file, the rest is the labels file
 * (either may be gzip'd: gzread reads plain files as they are).  Both are written to
 * the scratch tmpfs and imported into a dataset directory there.  Property checked
 * besides ASan/UBSan: an import that succeeds writes a dataset that dataset_verify
 * accepts.  No HDF5 handle may stay open.  Seeds: tests/fuzz/import_idx/. */
#include <stdint.h>
#include <stdlib.h>

#include "core/common.h"
#include "fuzz_util.h"
#include "io/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data;
    size_t n = size;
    ImportConf c = {0};
    c.shards = 1 + (int)(fuzz_take(&p, &n, 1) % 4);
    c.num_classes = (int)fuzz_take(&p, &n, 1);
    size_t ni = (size_t)fuzz_take(&p, &n, 2);
    if (ni > n) ni = n;
    const char *img = fuzz_write("images.idx", p, ni);
    const char *lab = fuzz_write("labels.idx", p + ni, n - ni);
    c.out_dir = fuzz_path("out");
    int rc = dataset_import_idx(img, lab, &c);
    return fuzz_import_done(rc, "dataset_import_idx", c.out_dir);
}
