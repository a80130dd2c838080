/* cpuinfo.c — see cpuinfo.h */
#include "core/cpuinfo.h"

#include <sched.h>
#include <stdio.h>
#include <string.h>
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

/* the value of "key : value" in a /proc/cpuinfo line, or NULL */
static const char *cpuinfo_value(const char *line, const char *key)
{
    size_t n = strlen(key);
    if (strncmp(line, key, n) != 0) return NULL;
    const char *p = line + n;
    while (*p == ' ' || *p == '\t') p++;
    if (*p != ':') return NULL;
    p++;
    while (*p == ' ') p++;
    return p;
}

void cpu_model_id(char *buf, size_t n)
{
    char vendor[64] = "", family[16] = "", model[16] = "", stepping[16] = "", name[160] = "";
    char line[512];
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        while (fgets(line, sizeof line, f) && !(vendor[0] && family[0] && model[0] && stepping[0] && name[0])) {
            line[strcspn(line, "\n")] = 0;
            const char *v;
            if (!vendor[0] && (v = cpuinfo_value(line, "vendor_id"))) snprintf(vendor, sizeof vendor, "%s", v);
            else if (!family[0] && (v = cpuinfo_value(line, "cpu family"))) snprintf(family, sizeof family, "%s", v);
            else if (!model[0] && (v = cpuinfo_value(line, "model"))) snprintf(model, sizeof model, "%s", v);
            else if (!stepping[0] && (v = cpuinfo_value(line, "stepping"))) snprintf(stepping, sizeof stepping, "%s", v);
            else if (!name[0] && (v = cpuinfo_value(line, "model name"))) snprintf(name, sizeof name, "%s", v);
        }
        fclose(f);
    }
    if (!vendor[0] && !name[0]) snprintf(buf, n, "unknown");
    else snprintf(buf, n, "%s %s/%s/%s %s", vendor, family, model, stepping, name);
}
