#!/usr/bin/env bash
# Slurm, end to end, on a real cluster that this test starts on loopback
# (tests/slurm/cluster.sh: munged, slurmctld and two slurmd "nodes" of 1 CPU) and stops by
# PID at the end, also when an assertion fails or the test is killed:
#  - the small job by plain mpirun (the reference), `sbatch slurm/train.sbatch` (srun
#    --mpi=pmix, 2 nodes x 1 rank) and by mpirun inside the allocation: the same bits;
#  - `scancel -s USR1 -b` mid-training: checkpoint, exit 75, `scontrol requeue`,
#    SLURM_RESTART_COUNT=1, --resume auto, the same bits as the reference;
#  - preemption by a job in the higher-priority partition: the same;
#  - an array whose task 0 (the task whose job id is the array's) is signalled (USR2,
#    STOP_SIGNAL=USR2): only that task requeues; both end with the reference's bits;
#  - SIGTERM alone to the ranks (`scancel -s TERM`): checkpoint, requeue, same bits;
#  - no scontrol in the job: said in the log, exit 75, no requeue;
#  - a plain `scancel`: the ranks checkpoint, the job is not requeued;
#  - the sweep as a job array and through mpirun: one CSV each (same columns) and PNGs.
source "$(dirname "$0")/lib.sh"
need_fmnist
if [ "$(id -u)" -ne 0 ]; then echo "SKIP: the test cluster runs its daemons as root (SlurmUser=root)"; exit 0; fi
for b in munged slurmctld slurmd sbatch gnuplot; do
    command -v "$b" >/dev/null || fail "$b not installed: run scripts/install-deps.sh (slurmctld slurmd slurm-client munge gnuplot-nox)"
done
T0=$(date +%s.%N)
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%5.1f s", b-a}'; }
phase() { note "[$(elapsed)] $*"; }

CL=$WORK/cluster
cleanup() {
    bash "$ROOT/tests/slurm/cluster.sh" stop "$CL" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT
phase "starting the test cluster in $CL"
bash "$ROOT/tests/slurm/cluster.sh" start "$CL" >/dev/null || fail "the test cluster did not start"
export SLURM_CONF=$CL/etc/slurm.conf
export MPITRAIN

SB=$ROOT/slurm/train.sbatch
JOBF=$ROOT/jobs/fmnist-small.ini
DATA=(--set "data.train=$FMNIST/train" --set "data.test=$FMNIST/test")
# Every job in the cluster sleeps 25 ms in each step of rank 0 (run.slow, which does not
# change the bits): at least 7.5 s for its 300 steps, so that a signal or a preemption
# sent after its checkpoint at step 30 reaches it before it ends, also on a fast machine
# (CI's finished the job before the high-priority job had preempted it).
SLOW=(--set run.slow=0:25)
# submit NAME [SBATCH ARGS...]: train.sbatch on the small job from $WORK; prints the job id
submit() { local name=$1; shift
    (cd "$WORK" && sbatch --parsable --job-name="$name" --output="$WORK/$name.out" "$@" "$SB" "$JOBF" "${DATA[@]}" "${SLOW[@]}")
}
state() { scontrol show job "$1" 2>/dev/null | sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' | head -n 1; }
field() { scontrol show job "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }
# wait_end JOB [TIMEOUT_S]: until the job (or array task) has ended
wait_end() { local j=$1 to=${2:-120} t=0
    until case $(state "$j") in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY) true ;; *) false ;; esac; do
        sleep 0.2; t=$((t + 1)); [ $t -lt $((to * 5)) ] || { scontrol show job "$j" >&2; fail "job $j did not end within ${to}s"; }
    done
}
# wait_step RUN JOB STEP: until RUN has a checkpoint at >= STEP (fails if the job ends first)
wait_step() { local run=$1 j=$2 want=$3 t=0
    while [ "$(latest_step "$run")" -lt "$want" ]; do
        case $(state "$j") in COMPLETED|FAILED|CANCELLED|TIMEOUT) cat "$WORK"/*.out >&2; fail "job $j ended before its checkpoint at step $want" ;; esac
        sleep 0.05; t=$((t + 1)); [ $t -lt 2400 ] || fail "job $j: no checkpoint at step >= $want after 120 s"
    done
}
# check_run NAME JOB RUN RESTARTS: completed, restarted that often, the reference's bits
check_run() { local name=$1 j=$2 run=$3 want=$4
    [ "$(state "$j")" = COMPLETED ] || { tail -n 40 "$WORK/$name.out" >&2; fail "$name: job $j is $(state "$j"), not COMPLETED"; }
    [ "$(field "$j" Restarts)" = "$want" ] || { tail -n 40 "$WORK/$name.out" >&2; fail "$name: job $j restarted $(field "$j" Restarts) times, want $want"; }
    grep -q "SLURM_RESTART_COUNT=$want\$" "$WORK/$name.out" || fail "$name: no start with SLURM_RESTART_COUNT=$want in its log"
    same_arrays "$REF" "$(final_ckpt "$run")" /model /optim
    if [ "$want" -gt 0 ]; then
        grep -q "resumed from .*step-" "$WORK/$name.out" || fail "$name: the requeued job did not resume"
    fi
    echo "$name: job $j completed after $want requeue(s), final parameters and optimizer state bitwise equal to the reference"
}

phase "a wrong run.stop_signals is a configuration error (78) naming the key"
small_job cfg
expect_exit 78 "$MPITRAIN" train "$WORK/cfg.ini" --set run.stop_signals="TERM USR3"
expect_out "run.stop_signals: unknown signal 'USR3'"

phase "reference: the small job by plain mpirun, 2 ranks, no Slurm"
mpi 2 train "$JOBF" "${DATA[@]}" --set train.threads=1 --set run.dir="$WORK/runs/ref" >"$WORK/ref.log" 2>&1 || { tail "$WORK/ref.log"; fail "reference run"; }
REF=$(final_ckpt "$WORK/runs/ref")

phase "sbatch slurm/train.sbatch (srun --mpi=pmix, 2 nodes x 1 rank) and LAUNCHER=mpirun inside the allocation"
jplain=$(submit plain)
jalloc=$(LAUNCHER=mpirun submit inalloc)
wait_end "$jalloc"
check_run plain "$jplain" "$WORK/runs/fmnist-small-$jplain" 0
grep -q "launch: srun --mpi=pmix --ntasks=2 --nodes=2" "$WORK/plain.out" || fail "plain: not launched by srun --mpi=pmix on 2 nodes"
grep -q "parallel: 2 ranks x 1 thread" "$WORK/plain.out" || fail "plain: not 2 ranks x 1 thread (SLURM_CPUS_PER_TASK)"
check_run inalloc "$jalloc" "$WORK/runs/fmnist-small-$jalloc" 0
grep -q "launch: mpirun -np 2" "$WORK/inalloc.out" || fail "inalloc: not launched by mpirun"

phase "scancel -s USR1 -b mid-training: checkpoint, exit 75, scontrol requeue, resume"
jusr1=$(submit usr1)
wait_step "$WORK/runs/fmnist-small-$jusr1" "$jusr1" 30
scancel -s USR1 -b "$jusr1"
wait_end "$jusr1"
grep -q "received SIGUSR1" "$WORK/usr1.out" || fail "usr1: the script did not see SIGUSR1"
grep -q "the ranks checkpointed and stopped (exit 75)" "$WORK/usr1.out" || fail "usr1: no exit 75"
grep -q "requeued $jusr1 (requeue 1 of" "$WORK/usr1.out" || fail "usr1: no requeue logged"
check_run usr1 "$jusr1" "$WORK/runs/fmnist-small-$jusr1" 1

phase "preemption by a job in the partition 'high'"
jpre=$(submit preempted)
wait_step "$WORK/runs/fmnist-small-$jpre" "$jpre" 30
jhigh=$(cd "$WORK" && sbatch --parsable --partition=high --nodes=1 --output="$WORK/high.out" --wrap "echo high-priority job ran on \$SLURM_JOB_NODELIST")
wait_end "$jpre" 180
[ "$(state "$jhigh")" = COMPLETED ] || { scontrol show job "$jhigh" >&2; scontrol show job "$jpre" >&2; tail -n 20 "$WORK/preempted.out" >&2; fail "the high-priority job $jhigh is $(state "$jhigh")"; }
grep -q "received SIGUSR1" "$WORK/preempted.out" || fail "preempted: no SIGUSR1 at the preemption (preempt_send_user_signal)"
check_run preempted "$jpre" "$WORK/runs/fmnist-small-$jpre" 1

phase "1-node jobs, two at a time: an array (USR2 to task 0 only), TERM-only, no scontrol, scancel"
jarr=$(STOP_SIGNAL=USR2 submit array --array=0-1 --nodes=1 --output="$WORK/array-%a.out")
jterm=$(submit term --nodes=1)
jnosc=$(SCONTROL=scontrol-not-in-this-container submit noscontrol --nodes=1)
jcanc=$(submit cancelled --nodes=1)
wait_step "$WORK/runs/fmnist-small-${jarr}_0" "${jarr}_0" 30
scancel -s USR2 -b "${jarr}_0"
wait_step "$WORK/runs/fmnist-small-$jterm" "$jterm" 30
scancel -s TERM "$jterm"           # the ranks (all steps, not the batch script): what a time limit sends them
wait_step "$WORK/runs/fmnist-small-$jnosc" "$jnosc" 30
scancel -s USR1 -b "$jnosc"
wait_step "$WORK/runs/fmnist-small-$jcanc" "$jcanc" 30
scancel "$jcanc"               # the user's cancel: SIGTERM to everything, the script included
wait_end "${jarr}_0"; wait_end "${jarr}_1"; wait_end "$jterm"; wait_end "$jnosc"; wait_end "$jcanc"
cp "$WORK/array-0.out" "$WORK/array0.out"; cp "$WORK/array-1.out" "$WORK/array1.out"
grep -q "requeued ${jarr}_0 (requeue 1" "$WORK/array0.out" || { tail -n 30 "$WORK/array0.out"; fail "array task 0: not requeued as ${jarr}_0"; }
grep -q "SIGUSR2 received" "$WORK/array0.out" || fail "array task 0: the ranks did not get SIGUSR2"
check_run array0 "${jarr}_0" "$WORK/runs/fmnist-small-${jarr}_0" 1
check_run array1 "${jarr}_1" "$WORK/runs/fmnist-small-${jarr}_1" 0
! grep -q "requeued" "$WORK/array1.out" || fail "array task 1 was requeued too"
grep -q "mpitrain: SIGTERM received" "$WORK/term.out" || fail "term: the ranks did not get SIGTERM"
check_run term "$jterm" "$WORK/runs/fmnist-small-$jterm" 1
[ "$(state "$jnosc")" = FAILED ] && [ "$(field "$jnosc" ExitCode)" = "75:0" ] || fail "noscontrol: job $jnosc is $(state "$jnosc") with exit $(field "$jnosc" ExitCode), want FAILED 75:0"
grep -q "cannot requeue: 'scontrol-not-in-this-container' not found" "$WORK/noscontrol.out" || fail "noscontrol: the missing scontrol is not logged"
[ "$(field "$jnosc" Restarts)" = 0 ] || fail "noscontrol: requeued"
echo "noscontrol: job $jnosc checkpointed, logged that scontrol is missing and exited 75 ($(field "$jnosc" ExitCode))"
[ "$(state "$jcanc")" = CANCELLED ] && [ "$(field "$jcanc" Restarts)" = 0 ] || fail "cancelled: job $jcanc is $(state "$jcanc"), restarts $(field "$jcanc" Restarts)"
grep -q "the ranks checkpointed and stopped (exit 75)" "$WORK/cancelled.out" || { tail -n 30 "$WORK/cancelled.out"; fail "cancelled: the ranks did not checkpoint and exit 75 on the cancel"; }
grep -q "not requeueing: SIGTERM reached this script" "$WORK/cancelled.out" || { tail -n 30 "$WORK/cancelled.out"; fail "cancelled: the reason for not requeueing is not logged"; }
echo "cancelled: job $jcanc checkpointed at step $(latest_step "$WORK/runs/fmnist-small-$jcanc") on scancel and was not requeued"

phase "the sweep: a job array on the cluster (scripts/sweep-run --slurm) and with mpirun here"
SW=$WORK/sweep-small.txt
{ cat "$ROOT/jobs/sweep-small.txt"; echo "set data.train=$FMNIST/train data.test=$FMNIST/test"; } > "$SW"
sub=$(scripts/sweep-run --slurm --runs "$WORK/sweep-slurm" --out "$WORK/results/slurm" "$SW" --output="$WORK/sweep-%a.out" | tail -n 1)
arr=$(echo "$sub" | awk '{print $2}'); rep=$(echo "$sub" | awk '{print $4}')
scripts/sweep-run --runs "$WORK/sweep-ws" --out "$WORK/results/ws" "$SW" >"$WORK/sweep-ws.log" 2>&1 || { cat "$WORK/sweep-ws.log"; fail "sweep-run with mpirun"; }
wait_end "$rep" 180
[ "$(state "$rep")" = COMPLETED ] || { cat "$WORK/sweep-slurm"/report-*.out; fail "the sweep report job $rep is $(state "$rep")"; }
for i in 0 1 2 3; do [ "$(state "${arr}_$i")" = COMPLETED ] || fail "sweep task ${arr}_$i is $(state "${arr}_$i")"; done
for w in slurm ws; do
    csv=$WORK/results/$w.csv
    [ "$(wc -l < "$csv")" -eq 5 ] || { cat "$csv"; fail "$w: the sweep CSV should have a header and 4 rows"; }
    for p in samples efficiency; do [ -s "$WORK/results/$w-$p.png" ] || fail "$w: no $w-$p.png"; done
    head -c 4 "$WORK/results/$w-samples.png" | grep -q PNG || fail "$w: $w-samples.png is not a PNG"
done
[ "$(head -n 1 "$WORK/results/slurm.csv")" = "$(head -n 1 "$WORK/results/ws.csv")" ] || fail "the two sweeps' CSV columns differ"
cut -d, -f3,5 "$WORK/results/slurm.csv" | tail -n +2 | tr '\n' ' ' | grep -q "1,srun 2,srun 1,srun 2,srun" || { cat "$WORK/results/slurm.csv"; fail "slurm sweep: ranks/launcher columns"; }
cut -d, -f3,5 "$WORK/results/ws.csv" | tail -n +2 | tr '\n' ' ' | grep -q "1,mpirun 2,mpirun 1,mpirun 2,mpirun" || { cat "$WORK/results/ws.csv"; fail "ws sweep: ranks/launcher columns"; }
echo "sweep: $(($(wc -l < "$WORK/results/slurm.csv") - 1)) points from the job array $arr, 4 from mpirun; CSV and PNGs written"

phase "stopping the cluster"
pids=$(awk '{print $2}' "$CL/pids")
bash "$ROOT/tests/slurm/cluster.sh" stop "$CL"
running() { local s; s=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) && [ -n "$s" ] && [ "$s" != Z ]; }  # a zombie is gone
for p in $pids; do ! running "$p" || fail "daemon $p ($(cat "/proc/$p/comm" 2>/dev/null)) still running after stop"; done
phase "ok: Slurm training, requeue, preemption, arrays, launchers and sweeps"
