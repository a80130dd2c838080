/* cpuinfo.c — see cpuinfo.h */
#include "core/cpuinfo.h"

#include <sched.h>
#include <unistd.h>

#include "core/common.h"

int cpu_cores_online(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

int cpu_cores_available(void)
{
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) return CPU_COUNT(&set);
    return cpu_cores_online();
}

int cpu_threads_per_rank(int requested, int ranks_on_node, int nmb)
{
    int t = requested > 0 ? requested : MT_MAX(1, cpu_cores_available() / MT_MAX(1, ranks_on_node));
    return MT_MAX(1, MT_MIN(t, nmb));
}
