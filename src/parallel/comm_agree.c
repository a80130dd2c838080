/* comm_agree.c — comm_agree_flags (comm.h): the per-step agreement, built on the table
 * (one comm_allreduce), so it is the same for every backend. */
#include <stdlib.h>
#include <string.h>

#include "core/common.h"
#include "parallel/comm.h"

int comm_agree_flags(Comm *c, int status, double *flags, int nflags, int *failed_rank)
{
    CHECK(status >= 0 && nflags >= 0 && (flags || nflags == 0));
    int W = c->size;
    /* [flags | one status slot per rank]: the sum is the flags' sums and every status */
    double *buf = xcalloc((size_t)(nflags + W), sizeof *buf);
    if (nflags) memcpy(buf, flags, (size_t)nflags * sizeof *buf);
    buf[nflags + c->rank] = status;
    int rc = comm_allreduce(c, buf, (size_t)(nflags + W), COMM_F64);
    CHECK(rc == 0); /* COMM_F64 is summable: nothing else can fail */
    if (nflags) memcpy(flags, buf, (size_t)nflags * sizeof *buf);
    int code = 0, failed = -1;
    for (int r = 0; r < W; r++) {
        int s = (int)buf[nflags + r];
        if (s && failed < 0) failed = r;
        if (s > code) code = s;
    }
    free(buf);
    if (failed_rank) *failed_rank = failed;
    return code;
}
