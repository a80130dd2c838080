/* fuzz_import_csv.c — libFuzzer harness for the CSV import (dataset_import_csv in
 * src/io/dataset_import.c).  The input is the CSV file; it is imported into 1, 2 or 3
 * shards (1 + size % 3, so a mutation that changes the length also changes the shard
 * count) in the scratch tmpfs.  Property checked besides ASan/UBSan: an import that
 * succeeds writes a dataset that dataset_verify accepts.  No HDF5 handle may stay open.
 * Seeds: tests/fuzz/import_csv/. */
#include <stdint.h>
#include <stdlib.h>

#include "core/common.h"
#include "fuzz_util.h"
#include "io/dataset.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ImportConf c = {0};
    c.shards = 1 + (int)(size % 3);
    const char *csv = fuzz_write("in.csv", data, size);
    c.out_dir = fuzz_path("out");
    int rc = dataset_import_csv(csv, &c);
    return fuzz_import_done(rc, "dataset_import_csv", c.out_dir);
}
