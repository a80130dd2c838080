/* cpuinfo.h — what this process may run on, and how many worker threads a rank uses. */
#ifndef MPITRAIN_CORE_CPUINFO_H
#define MPITRAIN_CORE_CPUINFO_H

#include <stddef.h>

/* CPUs this process may run on (its affinity mask; else the online CPUs; >= 1). */
int cpu_cores_available(void);
/* CPUs online on this machine (>= 1). */
int cpu_cores_online(void);
/* Worker threads of a rank: `requested` if > 0, else the process's CPUs shared by the
 * ranks on this node (at least 1); never more than its `nmb` micro-batches per step
 * (a thread computes whole micro-batches), at least 1. */
int cpu_threads_per_rank(int requested, int ranks_on_node, int nmb);

/* This CPU model, for keys and reports: "VENDOR FAMILY/MODEL/STEPPING MODEL NAME" from
 * /proc/cpuinfo (e.g. "AuthenticAMD 25/1/1 AMD EPYC 7B13"), "unknown" where it cannot be
 * read.  Writes at most n bytes (NUL-terminated). */
void cpu_model_id(char *buf, size_t n);

#endif
