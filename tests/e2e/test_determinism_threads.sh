#!/usr/bin/env bash
# Same config and seed, two runs -> bitwise identical parameters and optimizer state,
# also when the number of worker threads differs (docs/determinism.md).
source "$(dirname "$0")/lib.sh"
need_fmnist
small_job a
note "run 1: 1 thread"
mpi 1 train "$WORK/a.ini" --set train.threads=1 --set run.name=t1 --set run.dir="$WORK/runs/t1" >/dev/null
note "run 2: 1 thread again"
mpi 1 train "$WORK/a.ini" --set train.threads=1 --set run.name=t1b --set run.dir="$WORK/runs/t1b" >/dev/null
note "run 3: 2 threads"
mpi 1 train "$WORK/a.ini" --set train.threads=2 --set run.name=t2 --set run.dir="$WORK/runs/t2" >/dev/null
note "run 4: 4 threads (oversubscribed)"
mpi 1 train "$WORK/a.ini" --set train.threads=4 --set run.name=t4 --set run.dir="$WORK/runs/t4" >/dev/null
A=$(final_ckpt "$WORK/runs/t1")
for r in t1b t2 t4; do
    same_arrays "$A" "$(final_ckpt "$WORK/runs/$r")" /model /optim
done
# a different seed must give different parameters (the comparison can fail)
mpi 1 train "$WORK/a.ini" --set train.seed=8 --set run.dir="$WORK/runs/s8" >/dev/null
if h5diff -q "$A" "$(final_ckpt "$WORK/runs/s8")" /model/dense0/w /model/dense0/w >/dev/null 2>&1; then
    fail "seed 7 and seed 8 gave identical weights"
fi
note "mpitrain eval: the weights of a run, on 1 and 2 ranks, equal the run's own final eval"
want=$(grep '"kind":"eval"' "$WORK/runs/t1/metrics.jsonl" | tail -n 1 | sed 's/.*"accuracy":\([0-9.]*\).*/\1/')
got1=$("$MPITRAIN" eval "$WORK/runs/t1" | sed 's/.*"accuracy":\([0-9.]*\).*/\1/')
got2=$(mpi 2 eval "$WORK/runs/t1" | sed 's/.*"accuracy":\([0-9.]*\).*/\1/')
awk -v a="$want" -v b="$got1" -v c="$got2" 'BEGIN{exit !(a == b && b == c)}' || fail "eval accuracy $got1 / $got2 (2 ranks) != run's $want"
expect_exit 0 "$MPITRAIN" eval "$(final_ckpt "$WORK/runs/t2")" --data "$FMNIST/train"; expect_out '"samples":60000'
expect_exit 66 "$MPITRAIN" eval "$WORK/runs/none"
note "dense-only model (the layer-wise executor): every GEMM kernel this CPU has, threads"
note "1 and 2, and the per-micro-batch path, all give the same bits"
small_job d
sed -i 's/^layers = .*/layers = dense:100 relu dense:37 tanh dense:10/; s/^name = adamw/name = sgd/' "$WORK/d.ini"
mpi 1 train "$WORK/d.ini" --set train.threads=2 --set run.dir="$WORK/runs/d-auto" > "$WORK/d-auto.log" 2>&1
grep -q 'layer-wise' "$WORK/d-auto.log" || fail "dense-only model did not take the layer-wise path: $(grep compute "$WORK/d-auto.log")"
D=$(final_ckpt "$WORK/runs/d-auto")
isas=(c)
grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo && isas+=(avx2)
grep -qw avx512f /proc/cpuinfo && isas+=(avx512)
for isa in "${isas[@]}"; do
    for th in 1 2; do
        MPITRAIN_GEMM_ISA=$isa mpi 1 train "$WORK/d.ini" --set train.threads=$th --set run.dir="$WORK/runs/d-$isa-$th" > "$WORK/d-$isa.log" 2>&1
        grep -q "gemm, $isa kernels" "$WORK/d-$isa.log" || fail "MPITRAIN_GEMM_ISA=$isa not taken: $(grep compute "$WORK/d-$isa.log")"
        same_arrays "$D" "$(final_ckpt "$WORK/runs/d-$isa-$th")" /model /optim
    done
done
MPITRAIN_EXEC=per-mb mpi 1 train "$WORK/d.ini" --set train.threads=2 --set run.dir="$WORK/runs/d-mb" > "$WORK/d-mb.log" 2>&1
grep -q 'per micro-batch' "$WORK/d-mb.log" || fail "MPITRAIN_EXEC=per-mb not taken"
same_arrays "$D" "$(final_ckpt "$WORK/runs/d-mb")" /model /optim
echo "ok: bitwise identical across runs, thread counts 1, 2, 4, GEMM kernels (${isas[*]}) and executor paths; eval agrees"
