#!/usr/bin/env bash
# make bench: every benchmark, each figure next to its reference measured in the same run.
#   results/gemm.csv              SGEMM rate of the default MLP's training shapes
#   results/train-throughput.csv  samples/s: mpitrain N=1,2,4 vs PyTorch (best single-process
#                                 setting) and PyTorch DDP (gloo), interleaved repetitions
#   results/comm-overlap.csv      exposed communication per step, 20M-parameter model, N=2
#   results/allreduce.csv         deterministic allreduce vs MPI_Allreduce vs p2p (scripts/bench_allreduce.sh)
#   results/ckpt.csv              checkpoint write vs raw write()+fsync, async pause
#   results/ps.csv, ps-straggler.csv/.png  parameter servers vs allreduce, and with a
#                                 straggler (scripts/bench_ps.sh; about an hour at PS_REPS=3)
#   results/RESULTS.md            the summary, with the ratios and the targets
# REPS=N (default 5) repetitions; PS_REPS=N (default 3) those of the parameter-server
# benches, PS=0 skips them; QUICK=1 skips allreduce sizes above 64 MB;
# ONLY=throughput measures the GEMM rates and training throughput only (the other CSVs
# are kept) and rewrites RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/mpitrain
PY=${PYTHON:-/usr/bin/python3}
REPS=${REPS:-5}
R=results
mkdir -p "$R"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OPENBLAS_NUM_THREADS_SAVED=${OPENBLAS_NUM_THREADS:-}
unset OPENBLAS_NUM_THREADS
# mpitrain computes with its own kernels (src/core/gemm.c); PyTorch and the SGEMM reference
# use OpenBLAS, measured under each kernel family the CPU supports (SkylakeX = AVX-512,
# Haswell = AVX2; OpenBLAS 0.3.21 itself picks the slow Prescott on some current CPUs), or
# only OPENBLAS_CORETYPE when it is set.  PyTorch's best is the reference.
if [ -n "${OPENBLAS_CORETYPE:-}" ]; then KERNELS=("$OPENBLAS_CORETYPE")
else KERNELS=(); grep -qw avx512f /proc/cpuinfo && KERNELS+=(SkylakeX); grep -qw avx2 /proc/cpuinfo && KERNELS+=(Haswell)
     [ ${#KERNELS[@]} -eq 0 ] && KERNELS=(Prescott); fi
CORETYPE="${KERNELS[*]}"
export MPITRAIN_BLAS_CORETYPE=keep
bash scripts/import-fmnist.sh
DATA=data/fmnist/train
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
host="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), OpenBLAS kernels measured: $CORETYPE"
echo "== machine: $host"

# ours NP M THREADS [--set ...] -> samples/s (median of the windows after the first);
# $ISA: the mpitrain GEMM kernel (MPITRAIN_GEMM_ISA; empty = the CPU's best).  The run's
# "gemm plan" log line is kept in $TMP/plan.<kernel>.
ours() { local np=$1 m=$2 th=$3; shift 3
    rm -rf "$TMP/run"
    MPITRAIN_GEMM_ISA=${ISA:-} mpirun -np "$np" --bind-to none $BIN train jobs/fmnist-mlp.ini --set train.steps=700 \
        --set train.micro_batches="$m" --set train.threads="$th" --set data.test= "$@" \
        --set train.log_every=100 --set run.progress=off --set run.dir="$TMP/run" >"$TMP/run.log" 2>&1
    grep -m1 'gemm plan:' "$TMP/run.log" | sed "s/^/$np x $th, M=$m: /" >> "$TMP/plan.${ISA:-$BEST_ISA}" || true
    grep '"kind":"train"' "$TMP/run/metrics.jsonl" | tail -n +2 | sed 's/.*"samples_per_s":\([0-9.]*\).*/\1/' | median
}
# mpitrain's kernels measured: the CPU's best, and AVX2 too where the best is AVX-512 (the
# kernel an AVX2-only CPU such as AMD Zen 3 runs; measured here, on this CPU)
BEST_ISA=$(bash scripts/machine-info.sh | sed -n 's/.*GEMM kernel taken by default: //p')
case $BEST_ISA in avx512|avx2|c) ;; *) echo "bench: cannot tell mpitrain's GEMM kernel (machine-info: '$BEST_ISA')" >&2; exit 1 ;; esac
OWN_ISAS=("$BEST_ISA"); [ "$BEST_ISA" = avx512 ] && OWN_ISAS+=(avx2)
# the OpenBLAS kernel family that matches a mpitrain kernel (for same-ISA ratios)
blas_of() { case $1 in avx512) echo SkylakeX ;; avx2) echo Haswell ;; *) echo Prescott ;; esac; }
SLUG=$(bash scripts/machine-info.sh --slug)

# GEMM rates of the MLP's training shapes: mpitrain's own kernels (gemm.h; no OpenBLAS
# involved), and OpenBLAS under each kernel family (micro-batches, and PyTorch's way)
echo "== GEMM rate of the MLP's shapes (784-512-512-10, batch 128)"
echo "blas,setting,rows,threads,gflops_median" > "$R/gemm.csv"
for OPENBLAS_CORETYPE in "${KERNELS[@]}"; do
    export OPENBLAS_CORETYPE
    { for i in 1 2 3; do $BIN bench gemm --micro-batches 4 --threads 2 --seconds 2 | tail -n +2; done; } > "$TMP/gemm.$OPENBLAS_CORETYPE"
done
unset OPENBLAS_CORETYPE
cat "$TMP"/gemm.* | awk -F, '{print $1","$2","$3}' | sort -u | while IFS=, read s r t; do
    for k in "${KERNELS[@]}"; do
        [ "$s" = mpitrain ] && [ "$k" != "${KERNELS[0]}" ] && continue
        g=$(awk -F, -v s="$s" -v r="$r" -v t="$t" '$1==s && $2==r && $3==t {print $4}' "$TMP/gemm.$k" | median)
        if [ "$s" = mpitrain ]; then
            # its rows from every kernel family's run (OpenBLAS does not touch it)
            g=$(cat "$TMP"/gemm.* | awk -F, -v s="$s" -v r="$r" -v t="$t" '$1==s && $2==r && $3==t {print $4}' | median)
            echo "mpitrain-gemm,$s,$r,$t,$g"
        else echo "$k,$s,$r,$t,$g"; fi
    done; done >> "$R/gemm.csv"
cat "$R/gemm.csv"
own_gemm=$(awk -F, '$2=="mpitrain" {print $5}' "$R/gemm.csv")
sgemm_best=$(awk -F, '$2=="openblas" {print $5}' "$R/gemm.csv" | sort -g | tail -n 1)

echo "== training throughput, $REPS interleaved repetitions"
echo "   (PyTorch: each thread setting under each OpenBLAS kernel family, every repetition;"
echo "    the best median is the reference.  mpitrain does not use OpenBLAS.)"
: > "$TMP/tp.csv"
torch_run() { $PY scripts/bench_torch.py mlp --data "$DATA" --warmup 30 --steps 400 --repeats 1 "$@" 2>/dev/null | tail -n 1 | cut -d, -f4; }
for i in $(seq 1 "$REPS"); do
    for ISA in "${OWN_ISAS[@]}"; do
        lab=mpitrain-gemm; [ "$ISA" != "$BEST_ISA" ] && lab=mpitrain-gemm-$ISA
        echo "mpitrain,$lab,1,2,4,$(ours 1 4 2)" >> "$TMP/tp.csv"
        echo "mpitrain,$lab,2,1,4,$(ours 2 4 1)" >> "$TMP/tp.csv"
        echo "mpitrain,$lab,1,1,1,$(ours 1 1 1)" >> "$TMP/tp.csv"
        echo "mpitrain,$lab,1,1,4,$(ours 1 4 1)" >> "$TMP/tp.csv"
        [ "$ISA" != "$BEST_ISA" ] && continue
        echo "mpitrain,$lab,1,2,2,$(ours 1 2 2)" >> "$TMP/tp.csv"
        echo "mpitrain,$lab,2,1,2,$(ours 2 2 1)" >> "$TMP/tp.csv"
        echo "mpitrain-shm,$lab,2,1,4,$(ours 2 4 1 --set parallel.shm=true)" >> "$TMP/tp.csv"
        echo "mpitrain-mpi,$lab,4,1,4,$(ours 4 4 1 --set parallel.shm=false)" >> "$TMP/tp.csv"
        echo "mpitrain,$lab,4,1,4,$(ours 4 4 1)" >> "$TMP/tp.csv"
    done
    ISA=
    for k in "${KERNELS[@]}"; do
        export OPENBLAS_CORETYPE=$k
        echo "pytorch-set_num_threads1,$k,1,1,1,$(torch_run --threads 1)" >> "$TMP/tp.csv"
        echo "pytorch-set_num_threads2,$k,1,2,1,$(torch_run --threads 2)" >> "$TMP/tp.csv"
        echo "pytorch-openblas1,$k,1,1,1,$(torch_run --threads 1 --openblas-threads 1)" >> "$TMP/tp.csv"
        d=$($PY scripts/bench_torch.py ddp --data "$DATA" --nproc 2 --repeats 1 2>/dev/null | tail -n 1 | cut -d, -f4)
        echo "pytorch-ddp-gloo,$k,2,1,1,$d" >> "$TMP/tp.csv"
        unset OPENBLAS_CORETYPE
    done
    echo "rep $i: $(tail -n $((9 + 4 * (${#OWN_ISAS[@]} - 1) + 4 * ${#KERNELS[@]})) "$TMP/tp.csv" | cut -d, -f1-3,5,6 | tr '\n' ' ')"
done
# medians per configuration
cut -d, -f1-5 "$TMP/tp.csv" | sort -u | while IFS=, read impl blas np th m; do
    med=$(awk -F, -v a="$impl" -v k="$blas" -v b="$np" -v c="$th" -v d="$m" '$1==a&&$2==k&&$3==b&&$4==c&&$5==d {print $6}' "$TMP/tp.csv" | median)
    echo "$impl,$blas,$np,$th,$m,$med"; done > "$TMP/tp.med"
best=$(grep '^pytorch-\(set\|openblas\)' "$TMP/tp.med" | sort -t, -k6 -g | tail -n 1)
torch_med=$(echo "$best" | cut -d, -f6)
ddp_med=$(grep '^pytorch-ddp' "$TMP/tp.med" | cut -d, -f6 | sort -g | tail -n 1)
echo "PyTorch best single-process setting: $(echo "$best" | cut -d, -f1,2) ($torch_med samples/s median)"
echo "PyTorch best: $(echo "$best" | cut -d, -f1) under OpenBLAS $(echo "$best" | cut -d, -f2) kernels" > "$TMP/torch-best.txt"
FLOP=3211264   # real FLOP of one training sample of the 784-512-512-10 MLP (no dX for layer 0)
# PyTorch's best single-process median under one OpenBLAS kernel family, and its one-thread
# (OpenBLAS too) median there: the same-ISA references
# (empty where that family was not measured, e.g. OPENBLAS_CORETYPE set to another one)
torch_best_k() { { grep "^pytorch-\(set\|openblas\)[^,]*,$1," "$TMP/tp.med" || true; } | cut -d, -f6 | sort -g | tail -n 1; }
torch_1t_k() { { grep "^pytorch-openblas1,$1," "$TMP/tp.med" || true; } | cut -d, -f6; }
echo "impl,blas,ranks,threads_per_rank,micro_batches,samples_per_s_median,reps,gflops,frac_of_sgemm,frac_of_own_gemm,vs_pytorch_best,vs_pytorch_ddp,vs_pytorch_best_same_isa,vs_pytorch_1thread_same_isa" > "$R/train-throughput.csv"
while IFS=, read impl blas np th m med; do
    gf=$(awk -v s="$med" -v f=$FLOP 'BEGIN{printf "%.1f", s*f/1e9}')
    fs=$(awk -v g="$gf" -v r="$sgemm_best" 'BEGIN{ if (r>0) printf "%.2f", g/r; else print "nan"}')
    fo=nan; [ "$impl" = mpitrain ] && [ "$blas" = mpitrain-gemm ] && fo=$(awk -v g="$gf" -v r="$own_gemm" 'BEGIN{ if (r>0) printf "%.2f", g/r; else print "nan"}')
    case $blas in mpitrain-gemm) fam=$(blas_of "$BEST_ISA") ;; mpitrain-gemm-*) fam=$(blas_of "${blas#mpitrain-gemm-}") ;; *) fam=$blas ;; esac
    tb=$(torch_best_k "$fam"); t1=$(torch_1t_k "$fam")
    vsi=$(awk -v a="$med" -v b="$tb" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "nan"}')
    v1=nan; [ "$np" = 1 ] && [ "$th" = 1 ] && v1=$(awk -v a="$med" -v b="$t1" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "nan"}')
    echo "$impl,$blas,$np,$th,$m,$med,$REPS,$gf,$fs,$fo,$(awk -v a="$med" -v b="$torch_med" 'BEGIN{printf "%.2f", a/b}'),$(awk -v a="$med" -v b="$ddp_med" 'BEGIN{printf "%.2f", a/b}'),$vsi,$v1"
done < "$TMP/tp.med" >> "$R/train-throughput.csv"
# the machine and the plans, for this CPU model's directory (results/cpus/SLUG/)
{ bash scripts/machine-info.sh
  echo "- PyTorch best single-process setting: $(echo "$best" | cut -d, -f1,2) ($torch_med samples/s)"
  for k in "${OWN_ISAS[@]}"; do
      echo "- gemm plan, $k kernels, the first configuration of the first repetition (\`mpitrain train\` logs it):"
      head -n 1 "$TMP/plan.$k" 2>/dev/null | sed 's/^/    /'
  done; } > "$TMP/machine.md"
cat "$R/train-throughput.csv"
per_cpu() { # this CPU model's copy of what this run measured, kept beside other CPUs'
    mkdir -p "$R/cpus/$SLUG"
    cp "$R/gemm.csv" "$R/train-throughput.csv" "$R/cpus/$SLUG/"
    { echo "# $SLUG"; echo; echo "Measured by \`make bench\` (REPS=$REPS) on $(date -u +%Y-%m-%d), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')."; echo; cat "$TMP/machine.md"; } > "$R/cpus/$SLUG/machine.md"
}
per_cpu
if [ "${ONLY:-}" = throughput ]; then
    bash scripts/bench_report.sh "$host" "$(tr '\n' ' ' < "$TMP/torch-best.txt" | sed 's/ *$//')" > "$R/RESULTS.md"
    echo "== summary: $R/RESULTS.md"
    exit 0
fi


export OPENBLAS_CORETYPE=${KERNELS[0]}
echo "== exposed communication, 20M-parameter MLP (784-4096-4096-10), N=2, batch 128"
{ echo "reduce,ranks,params,bucket_mb,step_s,comm_exposed_s,exposed_frac,comm_total_s,shm"
  for spec in deterministic:4:true deterministic:4:false fast:4:false deterministic:4096:false; do
      IFS=: read -r mode bmb shm <<<"$spec"
      rm -rf "$TMP/ov"
      mpirun -np 2 --bind-to none $BIN train jobs/fmnist-mlp.ini --set model.layers="dense:4096 relu dense:4096 relu dense:10" \
          --set train.steps=40 --set train.log_every=10 --set train.micro_batches=4 --set parallel.reduce=$mode \
          --set parallel.bucket_mb=$bmb --set parallel.shm=$shm \
          --set data.test= --set run.progress=off --set run.dir="$TMP/ov" >/dev/null 2>&1
      grep '"kind":"train"' "$TMP/ov/metrics.jsonl" | tail -n +2 | sed 's/.*"compute_s":\([0-9.e-]*\),"comm_exposed_s":\([0-9.e-]*\),"comm_s":\([0-9.e-]*\).*/\1 \2 \3/' > "$TMP/ov.txt"
      st=$(cut -d' ' -f1 "$TMP/ov.txt" | median); ex=$(cut -d' ' -f2 "$TMP/ov.txt" | median); ct=$(cut -d' ' -f3 "$TMP/ov.txt" | median)
      echo "$mode,2,20037642,$bmb,$st,$ex,$(awk -v a="$ex" -v b="$st" 'BEGIN{printf "%.3f", a/b}'),$ct,$shm"
  done; } > "$R/comm-overlap.csv"
cat "$R/comm-overlap.csv"

echo "== allreduce"
if [ "${QUICK:-0}" = 1 ]; then bash scripts/bench_allreduce.sh --quick; else bash scripts/bench_allreduce.sh; fi | tee "$TMP/allreduce.txt"

echo "== checkpoints"
mkdir -p "$TMP/ck"
$BIN bench ckpt --dir "$TMP/ck" --reps 3 | tee "$R/ckpt.csv"

echo "== checkpoint pause inside training: 56.5M-parameter MLP + AdamW (678 MB a checkpoint), every 4 steps"
{ echo "async,checkpoints,pause_s_median,sync_pause_s_median,ratio"
  for a in false true; do
      rm -rf "$TMP/big"
      mpirun -np 1 --bind-to none $BIN train jobs/fmnist-mlp.ini --set model.layers="dense:5120 relu dense:5120 relu dense:5120 relu dense:10" \
          --set optim.name=adamw --set optim.lr=0.001 --set train.steps=13 --set checkpoint.every_steps=4 \
          --set checkpoint.async=$a --set checkpoint.dir="$TMP/big/ck" --set data.test= --set run.progress=off --set run.dir="$TMP/big" >/dev/null 2>&1
      # the checkpoints at steps 4, 8, 12 (not the final one, which is always synchronous)
      grep '"kind":"checkpoint"' "$TMP/big/metrics.jsonl" | grep -v '"step":13,' | sed 's/.*"pause_s":\([0-9.e-]*\).*/\1/' > "$TMP/pause.$a"
  done
  ps=$(median < "$TMP/pause.false"); pa=$(median < "$TMP/pause.true")
  echo "true,$(wc -l < "$TMP/pause.true"),$pa,$ps,$(awk -v a="$pa" -v b="$ps" 'BEGIN{printf "%.4f", a/b}')"
} > "$R/ckpt-pause.csv"
cat "$R/ckpt-pause.csv"

if [ "${PS:-1}" != 0 ]; then
    echo "== parameter servers (scripts/bench_ps.sh, then scripts/bench_ps_straggler.sh)"
    REPS=${PS_REPS:-3} bash scripts/bench_ps.sh
fi

bash scripts/bench_report.sh "$host" "$(tr '\n' ' ' < "$TMP/torch-best.txt" | sed 's/ *$//')" > "$R/RESULTS.md"
echo "== summary: $R/RESULTS.md"
cat "$R/RESULTS.md"
