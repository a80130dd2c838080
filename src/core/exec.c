/* exec.c — the registry of executors (exec.h): one line per backend, chosen by the
 * device the slabs live on; and the canonical tree sum of doubles. */
#include "core/exec.h"

#include <string.h>

#include "core/common.h"

static const ExecOps *const REGISTRY[] = {
    &exec_cpu_ops, /* device "cpu": thread pool (exec_cpu.c) */
};
#define NREG (sizeof REGISTRY / sizeof *REGISTRY)

Exec *exec_create(const Model *m, const ExecConf *c)
{
    const char *dev = c->dev ? c->dev->ops->name : "cpu";
    for (size_t i = 0; i < NREG; i++)
        if (!strcmp(REGISTRY[i]->name, dev)) return REGISTRY[i]->create(m, c, c->dev);
    fatal(MT_EX_SOFTWARE, "no executor for device '%s' in this build", dev);
}

double exec_tree_sum_f64(const double *v, int lo, int hi)
{
    if (hi <= lo) return 0.0;
    if (hi - lo == 1) return v[lo];
    int mid = tree_mid(lo, hi);
    return exec_tree_sum_f64(v, lo, mid) + exec_tree_sum_f64(v, mid, hi);
}
