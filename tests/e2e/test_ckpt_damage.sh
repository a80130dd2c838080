#!/usr/bin/env bash
# Damaged files never hang a command and never leak HDF5's own error text.
#  - a sealed checkpoint with 1-16 random bytes flipped in its first 16 KB (60 seeded
#    trials): `ckpt verify` (of all 60 at once) names each as damaged, `ckpt info` exits
#    65 within seconds naming the file; on every 10th trial `eval` exits 65 and
#    `train --resume auto` falls back to the older checkpoint;
#  - a flipped byte in an array's data: verify names the array; resume falls back and
#    ends bitwise equal to the uninterrupted run;
#  - an unsealed (version-1) checkpoint whose global heap makes HDF5 loop for ever:
#    every command ends within the bound (MPITRAIN_HDF5_TIMEOUT) naming the file, and
#    resume falls back; 20 random-damage trials of such a file;
#  - a dataset whose index.h5 makes HDF5 loop, and shards with damaged metadata:
#    `data verify` and `train` end within the bound, clearly.
source "$(dirname "$0")/lib.sh"
need_fmnist
DAMAGE=$ROOT/tests/e2e/damage.py   # the byte surgery: flip, unseal, array, heap
export MPITRAIN_HDF5_TIMEOUT=1
# seconds one command may take: the bound is 1 s, a hang never ends, and the machine is
# busy (mpirun and a training job start slower than a `ckpt` command)
LIMIT=10 TRAIN_LIMIT=40
small_job d "[checkpoint]" "every_steps = 10" "keep = 10"
J=$WORK/d.ini

# run_cmd [-e ERRFILE] CMD...: runs it, sets RC, DT (seconds) and OUT (stdout and
# stderr, or stdout only and stderr into ERRFILE)
run_cmd() {
    local t0 err=; t0=$(date +%s.%N)
    if [ "$1" = -e ]; then err=$2; shift 2; fi
    set +e
    if [ -n "$err" ]; then OUT=$("$@" 2>"$err"); else OUT=$("$@" 2>&1); fi
    RC=$?; set -e
    DT=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')
}
# failed_clearly NAME FILE: the last command failed (0 < exit < 128) within LIMIT seconds
# (TRAIN_LIMIT for a NAME with "train"), named FILE, and printed nothing of HDF5's own
failed_clearly() {
    local what=$1 file=$2 limit=$LIMIT
    case $what in *train*) limit=$TRAIN_LIMIT ;; esac
    [ "$RC" -gt 0 ] && [ "$RC" -lt 128 ] || { echo "$OUT" | tail -n 20 >&2; fail "$what: exit $RC"; }
    awk -v d="$DT" -v l="$limit" 'BEGIN{exit !(d < l)}' || fail "$what: took $DT s"
    grep -qF -- "$file" <<<"$OUT" || { echo "$OUT" | tail -n 20 >&2; fail "$what: the message does not name $file"; }
    no_hdf5_text "$what"
}
no_hdf5_text() {
    if grep -qE 'HDF5-DIAG|infinite loop|H5[A-Z][A-Za-z0-9_]*\(\)|#[0-9]{3}:|major:|minor:' <<<"$OUT"; then
        echo "$OUT" | tail -n 20 >&2; fail "$1: HDF5's own error text reached the user"
    fi
}

note "train 30 steps, a checkpoint every 10"
mpi 1 train "$J" >"$WORK/log.d" 2>&1 || { tail -n 20 "$WORK/log.d"; fail "training failed"; }
CK=$WORK/runs/d/checkpoints
REF=$CK/step-00000030.h5
expect_exit 0 "$MPITRAIN" ckpt verify "$CK"
expect_out "3 checkpoints OK, 0 bad"

note "60 trials: 1-16 random bytes flipped in the first 16 KB of a sealed checkpoint"
mkdir -p "$WORK/meta"
"$PYTHON" "$DAMAGE" flip "$CK/step-00000020.h5" "$WORK/meta/t%02d.h5" 1000 16384 60
t_start=$(date +%s)
# one process for the 60 files; its report (stdout) apart from its errors (stderr)
run_cmd -e "$WORK/verify.err" "$MPITRAIN" ckpt verify "$WORK"/meta/t*.h5
[ "$RC" -eq 65 ] || { echo "$OUT" | tail -n 20 >&2; fail "ckpt verify of the 60: exit $RC, not 65"; }
grep -q "^0 checkpoints OK, 60 bad$" <<<"$OUT" || { echo "$OUT" | tail >&2; fail "verify did not refuse all 60"; }
VOUT=$OUT
OUT=$(cat "$WORK/verify.err"); no_hdf5_text "ckpt verify of the 60 (stderr)"
OUT=$VOUT; no_hdf5_text "ckpt verify of the 60 (report)"
echo "ckpt verify of the 60 files: exit 65 after $DT s"
for t in $(seq -w 0 59); do
    f=$WORK/meta/t$t.h5
    grep -q "^BAD  checkpoint $f is damaged" <<<"$VOUT" || fail "trial $t: verify does not say $f is damaged"
    grep -q "^error: checkpoint $f is damaged" "$WORK/verify.err" || fail "trial $t: no error naming $f"
done
for t in $(seq -w 0 59); do
    f=$WORK/meta/t$t.h5
    run_cmd "$MPITRAIN" ckpt info "$f"
    [ "$RC" -eq 65 ] || { echo "$OUT" | tail -n 20 >&2; fail "trial $t: ckpt info exit $RC, not 65"; }
    failed_clearly "trial $t: ckpt info" "$f"
    if [ $((10#$t % 10)) -eq 0 ]; then
        run_cmd "$MPITRAIN" eval "$f"
        [ "$RC" -eq 65 ] || { echo "$OUT" | tail -n 20 >&2; fail "trial $t: eval exit $RC, not 65"; }
        failed_clearly "trial $t: eval" "$f"
        d=$WORK/resume$t; mkdir -p "$d"
        cp "$CK/step-00000010.h5" "$d/"; cp "$f" "$d/step-00000020.h5"; echo step-00000020.h5 >"$d/latest"
        run_cmd mpi 1 train "$J" --set train.steps=11 --set run.dir="$WORK/runs/r$t" \
            --set checkpoint.dir="$d" --resume auto
        [ "$RC" -eq 0 ] || { echo "$OUT" | tail -n 20 >&2; fail "trial $t: train --resume auto exit $RC"; }
        grep -q "skipping $d/step-00000020.h5" <<<"$OUT" || fail "trial $t: the damaged checkpoint is not reported"
        grep -q "resumed from $d/step-00000010.h5" <<<"$OUT" || fail "trial $t: no fallback to step 10"
        no_hdf5_text "trial $t: train --resume auto"
    fi
done
echo "60/60 trials: verify and info exit 65 naming the file, no HDF5 text; eval 65 and" \
     "resume fell back to step 10 in 6/6 ($(( $(date +%s) - t_start )) s)"
echo "the verify report of trial 00:"; echo "$VOUT" | sed -n "/t00.h5 is damaged/,/^BAD .*t01.h5/p" | head -n 6 | cut -c1-150

note "a flipped byte in an array: verify names it; resume falls back, bitwise equal to the uninterrupted run"
D=$WORK/data-damage; mkdir -p "$D"
cp "$CK/step-00000010.h5" "$CK/step-00000020.h5" "$D/"; echo step-00000020.h5 >"$D/latest"
"$PYTHON" "$DAMAGE" array "$D/step-00000020.h5" model/dense0/w 3108
run_cmd "$MPITRAIN" ckpt verify "$D/step-00000020.h5"
[ "$RC" -eq 65 ] || fail "data damage: verify exit $RC"
grep -q "/model/dense0/w (64,784) fails its checksum" <<<"$OUT" || { echo "$OUT" >&2; fail "verify does not name the damaged array"; }
run_cmd "$MPITRAIN" ckpt info "$D/step-00000020.h5"
[ "$RC" -eq 65 ] || fail "data damage: ckpt info exit $RC"
failed_clearly "data damage: ckpt info" "$D/step-00000020.h5"
expect_exit 0 mpi 1 train "$J" --set run.dir="$WORK/runs/fb" --set checkpoint.dir="$D" --resume auto
expect_out "resumed from $D/step-00000010.h5"
same_arrays "$REF" "$D/step-00000030.h5" /model /optim
echo "data damage: named, skipped, resumed from step 10, final state bitwise equal"

note "an unsealed checkpoint (version 1, as 0.1.0 wrote it) whose global heap makes HDF5 loop"
L=$WORK/legacy; mkdir -p "$L"
cp "$CK/step-00000010.h5" "$L/"
"$PYTHON" "$DAMAGE" unseal "$CK/step-00000020.h5" "$WORK/legacy-ok.h5"
cp "$WORK/legacy-ok.h5" "$L/step-00000020.h5"
"$PYTHON" "$DAMAGE" heap "$L/step-00000020.h5"
expect_exit 0 "$MPITRAIN" ckpt verify "$WORK/legacy-ok.h5"
expect_exit 0 "$MPITRAIN" ckpt info "$WORK/legacy-ok.h5"
expect_out "format: +mpitrain-checkpoint version 1"
H=$L/step-00000020.h5
for cmd in "ckpt verify" "ckpt info" "eval"; do
    run_cmd "$MPITRAIN" $cmd "$H"
    [ "$RC" -eq 65 ] || { echo "$OUT" | tail >&2; fail "looping legacy file: $cmd exit $RC"; }
    failed_clearly "looping legacy file: $cmd" "$H"
    grep -q "looping on damaged metadata" <<<"$OUT" || fail "$cmd: the message does not say why"
    echo "$cmd: exit $RC after $DT s"
done
run_cmd "$MPITRAIN" eval "$L"   # a directory: falls back to step 10
[ "$RC" -eq 0 ] || { echo "$OUT" | tail >&2; fail "eval of the directory: exit $RC"; }
grep -q '"checkpoint":"' <<<"$OUT""$L"'/step-00000010.h5"' || fail "eval did not fall back to step 10"
no_hdf5_text "eval of the directory"
run_cmd mpi 2 train "$J" --set train.steps=11 --set run.dir="$WORK/runs/leg" --set checkpoint.dir="$L" --resume auto
[ "$RC" -eq 0 ] || { echo "$OUT" | tail -n 20 >&2; fail "resume past the looping file: exit $RC"; }
grep -q "skipping $H" <<<"$OUT" || fail "the looping checkpoint is not reported"
grep -q "resumed from $L/step-00000010.h5" <<<"$OUT" || fail "no fallback to step 10"
no_hdf5_text "resume past the looping file"
echo "train --resume auto (2 ranks): skipped the looping file, resumed from step 10 in $DT s"

note "20 trials: random bytes flipped in the first 16 KB of an unsealed checkpoint"
nref=0; nok=0; ninfo=0
for t in $(seq 0 19); do
    f=$WORK/leg-t$t.h5
    "$PYTHON" "$DAMAGE" flip "$WORK/legacy-ok.h5" "$f" $((2000 + t)) 16384
    run_cmd "$MPITRAIN" ckpt verify "$f"
    if [ "$RC" -eq 0 ]; then nok=$((nok+1)); no_hdf5_text "unsealed trial $t"; continue; fi
    [ "$RC" -eq 65 ] || { echo "$OUT" | tail >&2; fail "unsealed trial $t: verify exit $RC"; }
    failed_clearly "unsealed trial $t: ckpt verify" "$f"
    run_cmd "$MPITRAIN" ckpt info "$f"
    if [ "$RC" -eq 0 ]; then ninfo=$((ninfo+1)); no_hdf5_text "unsealed trial $t"; continue; fi
    failed_clearly "unsealed trial $t: ckpt info" "$f"   # (info reads no array data)
    nref=$((nref+1))
done
echo "unsealed, 20 trials: $nref refused by verify and info, $ninfo by verify only (info" \
     "reads no data), $nok still verify; every refusal non-zero, < 128, named, in time"

note "a dataset whose index.h5 makes HDF5 loop; shards with damaged metadata"
DS=$WORK/ds; cp -r "$FMNIST/test" "$DS"
"$PYTHON" "$DAMAGE" heap "$DS/index.h5"
run_cmd "$MPITRAIN" data verify "$DS"
[ "$RC" -eq 65 ] || { echo "$OUT" | tail >&2; fail "looping index: data verify exit $RC"; }
failed_clearly "looping index: data verify" "$DS/index.h5"
run_cmd mpi 1 train "$J" --set data.train="$DS" --set run.dir="$WORK/runs/ds"
failed_clearly "looping index: train" "$DS/index.h5"
echo "looping index.h5: data verify 65, train exit $RC, both within the bound, naming it"
cp "$FMNIST/test/index.h5" "$DS/index.h5"
bad=0
for t in $(seq 0 9); do
    "$PYTHON" "$DAMAGE" flip "$FMNIST/test/shard-00000.h5" "$DS/shard-00000.h5" $((3000 + t)) 4096
    run_cmd "$MPITRAIN" data verify "$DS"
    no_hdf5_text "shard trial $t: data verify"
    [ "$RC" -lt 128 ] || fail "shard trial $t: data verify exit $RC"
    awk -v d="$DT" -v l="$LIMIT" 'BEGIN{exit !(d < l)}' || fail "shard trial $t: data verify took $DT s"
    [ "$RC" -eq 0 ] && continue
    failed_clearly "shard trial $t: data verify" "$DS/shard-00000.h5"
    if [ $bad -eq 0 ]; then
        run_cmd mpi 1 train "$J" --set data.train="$DS" --set run.dir="$WORK/runs/sh$t"
        failed_clearly "shard trial $t: train" "$DS/shard-00000.h5"
    fi
    bad=$((bad+1))
done
[ $bad -gt 0 ] || fail "no shard trial damaged the metadata"
echo "shards: $bad of 10 damaged ones refused by data verify (and train) clearly and in time"
echo "ok: damaged checkpoints and datasets end every command within the bound, clearly"
