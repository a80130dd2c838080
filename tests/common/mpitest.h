/* mpitest.h — cmocka under MPI.
 *
 *   int main(int argc, char **argv) {
 *       mpitest_init(&argc, &argv);
 *       const struct CMUnitTest tests[] = { cmocka_unit_test(test_x), ... };
 *       return MPITEST_RUN(tests);
 *   }
 *
 * Every rank runs every test (each as a cmocka group of one); only rank 0's cmocka output
 * reaches stdout, every rank's failure messages reach stderr.  After each test the
 * verdicts of all ranks are reduced: rank 0 prints "mpitest: FAIL test (ranks 1 3)" for
 * a test that failed anywhere and a last line "mpitest: N tests, F failed on some rank
 * (np=P)".  MPITEST_RUN finalises MPI and returns the same exit code on every rank
 * (0 all passed, 1 otherwise).
 *
 * A test that fails (longjmps out) on one rank while others enter a collective hangs the
 * job until the runner's timeout: do the collectives first and assert afterwards, or
 * assert on mpitest_all(ok), which every rank reaches. */
#ifndef MPITRAIN_TESTS_MPITEST_H
#define MPITRAIN_TESTS_MPITEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

/* MPI_Init_thread(MPI_THREAD_FUNNELED) (fails the process if not provided), silences
 * stdout on ranks > 0, sets log_set_rank().  Call first in main. */
void mpitest_init(int *argc, char ***argv);
int mpitest_rank(void);
int mpitest_size(void);
/* 1 if ok is non-zero on every rank (collective). */
int mpitest_all(int ok);
/* Run the tests, reduce verdicts, finalise MPI; returns the exit code for main.  name
 * NULL: the program's name. */
int mpitest_run(const char *name, const struct CMUnitTest *tests, size_t n);
#define MPITEST_RUN(tests) mpitest_run(NULL, tests, sizeof(tests) / sizeof((tests)[0]))

#endif
