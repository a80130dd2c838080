/* bench.h — the benchmarks of `mpitrain bench ...`, built into build/mpitrain-bench (the
 * only binary linked with OpenBLAS, the GEMM reference).  `mpitrain bench X` runs
 * `mpitrain-bench X` from the directory of the mpitrain binary.  Each takes argv with
 * argv[0] = the benchmark's name, prints CSV or a table on stdout, and returns an exit
 * code (MT_EX_USAGE for a bad command line). */
#ifndef MPITRAIN_BENCH_BENCH_H
#define MPITRAIN_BENCH_BENCH_H

/* `bench allreduce|p2p [--min 4K] [--max 256M] [--iters N] [--csv FILE]` (argv[0] =
 * "bench", argv[1] = the subcommand).  Run under mpirun; rank 0 prints a table and writes
 * the CSV (size_bytes,impl,nranks,time_us,algbw_GBps,busbw_GBps).  bench_comm.c */
int bench_comm_main(int argc, char **argv);

/* `bench ckpt [--dir D] [--layers SPEC] [--in-dim N] [--reps R]`: CSV on stdout
 * (what,bytes,seconds,MBps,ratio) comparing checkpoint writes with raw write()+fsync of
 * the same bytes, Fletcher32 with the stored hash, and the async submit pause.
 * bench_ckpt.c */
int bench_ckpt_main(int argc, char **argv);

/* `bench gemm ...` (argv[0] = "gemm"): SGEMM rate of a model's shapes, own GEMM against
 * OpenBLAS.  bench_gemm.c */
int bench_gemm_main(int argc, char **argv);

#endif
