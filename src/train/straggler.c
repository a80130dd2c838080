/* straggler.c — see straggler.h */
#include "train/straggler.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "core/common.h"

int straggler_parse(const char *spec, int world, Straggler *out)
{
    out->rank = -1;
    out->ms = 0;
    out->every = 1;
    if (!spec[0]) return 0;
    char *end;
    errno = 0;
    long r = strtol(spec, &end, 10);
    int ok = end != spec && *end == ':' && !errno && r >= 0;
    double ms = ok ? strtod(end + 1, &end) : 0;
    ok = ok && ms > 0 && ms <= 3.6e6 && (*end == 0 || *end == ':');
    long long every = 1;
    if (ok && *end == ':') {
        every = strtoll(end + 1, &end, 10);
        ok = *end == 0 && every >= 1;
    }
    if (!ok)
        return err_set(MT_EX_CONFIG, "run.slow = '%s': expected RANK:MS[:EVERY] (e.g. 1:50 or "
                       "1:50:4: rank 1 sleeps 50 ms every 4th step), MS in (0, 3600000]", spec);
    if (r >= world)
        return err_set(MT_EX_CONFIG, "run.slow = '%s': rank %ld does not exist in a job of %d "
                       "ranks", spec, r, world);
    out->rank = (int)r;
    out->ms = ms;
    out->every = (uint64_t)every;
    return 0;
}

void straggler_step(const Straggler *s, int rank, uint64_t step)
{
    if (s->rank != rank || step % s->every != 0) return;
    struct timespec ts = {(time_t)(s->ms / 1000), (long)((s->ms - 1000.0 * (time_t)(s->ms / 1000)) * 1e6)};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}
