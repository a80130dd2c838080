/* strategy.c — the registry of parallel strategies (strategy.h): one line per mode. */
#include "parallel/strategy.h"

#include <string.h>

#include "core/common.h"

static const StrategyOps *const REGISTRY[] = {
    &strategy_dp_ops, /* allreduce: data parallel (strategy_dp.c) */
    &strategy_ps_ops, /* ps: parameter servers (strategy_ps.c) */
};
#define NREG (sizeof REGISTRY / sizeof *REGISTRY)

int strategy_count(void) { return (int)NREG; }
const StrategyOps *strategy_at(int i) { return i >= 0 && i < (int)NREG ? REGISTRY[i] : NULL; }

const char *strategy_names(void)
{
    static char names[256];
    if (!names[0]) {
        size_t used = 0;
        for (size_t i = 0; i < NREG && used < sizeof names; i++)
            used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", i ? ", " : "",
                                     REGISTRY[i]->name);
    }
    return names;
}

const StrategyOps *strategy_find(const char *mode)
{
    for (size_t i = 0; i < NREG; i++)
        if (!strcmp(REGISTRY[i]->name, mode)) return REGISTRY[i];
    err_set(MT_EX_CONFIG, "parallel.mode = %s is not available in this build (allowed: %s)", mode,
            strategy_names());
    return NULL;
}
