/* fuzz_config.c — libFuzzer harness for the INI job configuration (src/io/config.c):
 * the input is a job file's text.  It is loaded over the defaults (config_load_string),
 * cross-checked (config_validate), and each of its lines is also tried as a --set
 * assignment (config_set).  Properties checked besides ASan/UBSan:
 *   - a failed load leaves the Config as it was and records a message;
 *   - a loaded config writes (config_to_string) a text that loads again to the same
 *     config (round trip);
 *   - config_diff of that text against the input, both ways, does not crash; nor does
 *     config_diff of the input against what follows its first NUL byte, if any (two
 *     arbitrary texts: a checkpoint's saved config is one).
 * Seed corpus: tests/fuzz/config/ (the job files of jobs/ and small hand-written ones). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "fuzz_util.h"
#include "io/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_dir(); /* quiet HDF5, abort hook */
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;

    Config c, before;
    config_defaults(&c);
    before = c;
    int rc = config_load_string(&c, text, "fuzz.ini");
    if (rc) {
        if (memcmp(&c, &before, sizeof c) != 0 || !err_msg()[0]) {
            fprintf(stderr, "config_load_string failed (%d) but changed the config or left no "
                    "message\n", rc);
            abort();
        }
    } else {
        config_validate(&c);
        char *out = config_to_string(&c);
        Config again;
        config_defaults(&again);
        if (config_load_string(&again, out, "round-trip") != 0 ||
            memcmp(&again, &c, sizeof c) != 0) {
            fprintf(stderr, "round trip failed: %s\n--- written:\n%s\n", err_msg(), out);
            abort();
        }
        char bad[512];
        config_diff(out, text, bad, sizeof bad);
        config_diff(text, out, bad, sizeof bad);
        free(out);
    }

    const char *nul = memchr(data, 0, size);
    if (nul) {
        size_t n2 = size - (size_t)(nul + 1 - (const char *)data);
        char *other = malloc(n2 + 1);
        memcpy(other, nul + 1, n2);
        other[n2] = 0;
        char bad[512];
        config_diff(text, other, bad, sizeof bad);
        config_diff(other, text, bad, sizeof bad);
        free(other);
    }

    /* every line as a --set override of the defaults */
    Config s;
    config_defaults(&s);
    for (char *line = text, *nl; line; line = nl) {
        nl = strchr(line, '\n');
        if (nl) *nl++ = 0;
        config_set(&s, line, "--set");
    }
    free(text);
    err_clear();
    return 0;
}
