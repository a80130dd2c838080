/* device.c — the registry of device backends (device.h): one line per backend. */
#include <string.h>

#include "core/common.h"
#include "core/device.h"

static const DeviceOps *const REGISTRY[] = {
    &device_cpu_ops,
};
#define NREG (sizeof REGISTRY / sizeof *REGISTRY)

int device_count(void) { return (int)NREG; }
const char *device_name(int i) { return i >= 0 && i < (int)NREG ? REGISTRY[i]->name : NULL; }

int device_create(const char *name, int index, Device **out)
{
    *out = NULL;
    for (size_t i = 0; i < NREG; i++) {
        if (strcmp(REGISTRY[i]->name, name) != 0) continue;
        Device *d = xcalloc(1, sizeof *d);
        d->ops = REGISTRY[i];
        d->index = index;
        *out = d;
        return 0;
    }
    char names[128] = "";
    size_t used = 0;
    for (size_t i = 0; i < NREG && used < sizeof names; i++)
        used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "",
                                 REGISTRY[i]->name);
    return err_set(MT_EX_CONFIG, "device '%s' is not available in this build (allowed: %s)",
                   name, names);
}
