#!/usr/bin/env bash
# Writes results/RESULTS.md from the CSVs that scripts/bench.sh produced.
# usage: bench_report.sh "MACHINE DESCRIPTION" "PYTORCH BEST SETTING"
set -euo pipefail
cd "$(dirname "$0")/.."
R=results
host=$1; torch_best=$2
get() { awk -F, -v a="$1" -v b="$2" -v c="$3" -v d="$4" '$1==a&&$2==b&&$3==c&&$4==d {print $'"$5"'}' $R/train-throughput.csv; }
echo "# Benchmark results"
echo
echo "Measured by \`make bench\` on $(date -u +%Y-%m-%d) ($host). Medians of the"
echo "repetitions in each CSV; every ratio compares figures measured in the same run."
echo "These machines are shared and noisy: compare ratios, not absolute numbers."
echo
echo "## Training throughput, default MLP (784-512-512-10, batch 128, Fashion-MNIST)"
echo
echo "mpitrain computes with its own GEMM kernels (src/core/gemm.c: fma chains in a fixed"
echo "order, the same bits on every CPU); PyTorch 1.13 (Debian) uses OpenBLAS.  PyTorch runs"
echo "all three single-process thread settings (scripts/bench_torch.py --best) under each OpenBLAS kernel"
echo "family in every repetition; the best median is the reference ($torch_best); DDP's"
echo "reference is its best kernel family."
echo
echo "| implementation | BLAS | ranks x threads | micro-batches | samples/s | GFLOP/s | of OpenBLAS SGEMM | of own GEMM | vs PyTorch best | vs PyTorch DDP | vs PyTorch best, same ISA | vs PyTorch 1 thread, same ISA |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
tail -n +2 $R/train-throughput.csv | while IFS=, read impl blas np th m sps reps gf fs fo vt vd vi v1; do
    echo "| $impl | $blas | $np x $th | $m | $sps | $gf | $fs | $fo | $vt | $vd | ${vi:-} | ${v1:-} |"
done
echo
echo "\"mpitrain-gemm\" is mpitrain's best kernel on this CPU; \"mpitrain-gemm-avx2\" the AVX2 kernel"
echo "forced (MPITRAIN_GEMM_ISA=avx2) on the same CPU, what an AVX2-only CPU such as AMD Zen 3"
echo "runs; it is not a measurement on such a CPU.  \"Same ISA\": against PyTorch under the"
echo "OpenBLAS kernels of the same vector width (AVX-512: SkylakeX, AVX2: Haswell)."
echo
echo "### Targets (issue 12), this run"
echo
echo "| mpitrain kernel | 1 x 2 vs PyTorch best (same ISA) | 2 x 1 vs PyTorch best (same ISA) | 1 x 1 vs PyTorch 1 thread, same ISA | M=4 / M=1 at 1 thread |"
echo "|---|---|---|---|---|"
for lab in $(tail -n +2 $R/train-throughput.csv | cut -d, -f2 | grep '^mpitrain-gemm' | sort -u); do
    c() { awk -F, -v l="$lab" -v n="$1" -v t="$2" -v m="$3" -v k="$4" '$1=="mpitrain" && $2==l && $3==n && $4==t && $5==m {print $k}' $R/train-throughput.csv; }
    r=$(awk -v a="$(c 1 1 4 6)" -v b="$(c 1 1 1 6)" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "nan"}')
    echo "| $lab | $(c 1 2 4 11) ($(c 1 2 4 13)) | $(c 2 1 4 11) ($(c 2 1 4 13)) | $(c 1 1 4 14) (M=4), $(c 1 1 1 14) (M=1) | $r |"
done
echo
echo "Targets: >= 1.2x PyTorch's best single-process setting at 1 x 2 and 2 x 1, >= 1.0x"
echo "PyTorch one thread at one thread, M=4 within 10 % of M=1 (ratio >= 0.90)."
echo
echo "### Per CPU model (results/cpus/*/: each CPU's latest run, kept side by side)"
echo
echo "| CPU (directory) | measured | kernel | 1 x 2 vs PyTorch best | 2 x 1 vs PyTorch best | 1 x 1 vs PyTorch 1 thread, same ISA | M=4 / M=1, 1 thread |"
echo "|---|---|---|---|---|---|---|"
for d in $R/cpus/*/; do
    [ -r "$d/train-throughput.csv" ] || continue
    when=$(sed -n 's/^Measured by .* on \([0-9-]*\), commit \([0-9a-f?]*\).*/\1, \2/p' "$d/machine.md" 2>/dev/null || true)
    for lab in $(tail -n +2 "$d/train-throughput.csv" | cut -d, -f2 | grep '^mpitrain-gemm' | sort -u); do
        c() { awk -F, -v l="$lab" -v n="$1" -v t="$2" -v m="$3" -v k="$4" '$1=="mpitrain" && $2==l && $3==n && $4==t && $5==m {print $k}' "$d/train-throughput.csv"; }
        r=$(awk -v a="$(c 1 1 4 6)" -v b="$(c 1 1 1 6)" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "nan"}')
        echo "| $(basename "$d") | ${when:-?} | $lab | $(c 1 2 4 11) | $(c 2 1 4 11) | $(c 1 1 4 14) | $r |"
    done
done
echo
echo "GFLOP/s: 3.21 MFLOP per sample.  \"of OpenBLAS SGEMM\": over OpenBLAS's best rate on the"
echo "same GEMM shapes in one process with 2 threads on 128 rows (how PyTorch computes;"
echo "\`mpitrain bench gemm\`, results/gemm.csv, same run).  \"of own GEMM\": over mpitrain's"
echo "kernels on the same shapes, 2 threads of 64 rows each, nothing else running."
echo
echo "## Communication"
echo
echo '```'
awk -F, 'NR>1' $R/comm-overlap.csv | while IFS=, read mode np p b st ex fr ct shm; do
    via=MPI; [ "$shm" = true ] && via="node-shared memory"
    echo "N=$np, $mode via $via, $p parameters, bucket $b MB: step $st s, exposed communication $ex s ($fr of the step); time in communication calls, overlapped or not: $ct s"
done
echo '```'
echo
echo "Exposed communication = what the step waits for after its backward: the rest of the"
echo "reductions, plus (ZeRO-1 or shared memory) the parameter allgather after the optimizer,"
echo "which nothing overlaps.  Through node-shared memory the shard owner sums straight from"
echo "the ranks' slabs and updates its parameters in the same pass (counted as communication"
echo "time), and the allgather is a wait for the other ranks' updates."
echo
echo "Allreduce (busbw GB/s, N=2; results/allreduce.csv):"
echo
echo "| size | deterministic | MPI_Allreduce | MPI_Iallreduce (fast) | p2p Sendrecv | det/MPI | det/p2p |"
echo "|---|---|---|---|---|---|---|"
awk -F, 'NR>1 && $3==2 && $2 !~ /\[/ {bw[$2","$1]=$6; if(!($1 in s)){s[$1]=1; o[++n]=$1}}
END{for(i=1;i<=n;i++){z=o[i]; d=bw["det,"z]; m=bw["mpi_allreduce,"z]; f=bw["fast_iallreduce,"z]; p=bw["p2p_sendrecv,"z];
 if(d==""||m=="") continue;
 printf "| %s | %.2f | %.2f | %s | %s | %.2f | %s |\n", (z>=1048576? z/1048576 " MB" : z/1024 " KB"), d, m, (f==""?"-":sprintf("%.2f",f)), (p==""?"-":sprintf("%.2f",p)), d/m, (p==""?"-":sprintf("%.2f",d/p))}}' $R/allreduce.csv
echo
echo "## Checkpoints"
echo
echo "Training pause per checkpoint inside a real run (results/ckpt-pause.csv: 56.5M-parameter"
echo "MLP with AdamW, 678 MB per checkpoint, a checkpoint every 4 steps; synchronous pause ="
echo "the whole write including verification and fsync; asynchronous pause = hand-over, plus"
echo "any wait for the background copy before the next optimizer update):"
echo
echo '```'
cat $R/ckpt-pause.csv
echo '```'
echo
echo "\`mpitrain bench ckpt\` (results/ckpt.csv; 50.4M parameters + AdamW = 604.6 MB; ratio ="
echo "against raw write()+fsync, raw read(), or the synchronous write for the async rows;"
echo "async_submit_pause is the API's immediate-copy submit, a memcpy):"
echo
echo '```'
cat $R/ckpt.csv
echo '```'
