#!/usr/bin/env bash
# The restart wrapper: a rank killed after a checkpoint -> restarted with --resume auto,
# the job finishes with the same bits as an uninterrupted run; a signal to the wrapper
# stops the job cleanly (75) without a restart; a config error is not retried.
source "$(dirname "$0")/lib.sh"
need_fmnist
WRAP=$ROOT/scripts/mpitrain-restart
S=300
small_job w "[checkpoint]" "every_steps = 30"
J=$WORK/w.ini
common=(--set train.steps=$S --set model.layers="dense:512 relu dense:512 relu dense:10")
mpi 1 train "$J" "${common[@]}" --set run.dir="$WORK/runs/ref" >/dev/null 2>&1 || fail "reference"

note "a rank is killed after the checkpoint at step 60: the wrapper restarts the job"
run=$WORK/runs/w
"$WRAP" --max-restarts 3 --backoff 1 --log "$WORK/wrap.log" -- mpirun -np 2 --oversubscribe --bind-to none \
    "$MPITRAIN" train "$J" "${common[@]}" --set run.dir="$run" >"$WORK/w.out" 2>&1 &
BG_PID=$!
wait_ckpt "$run" 60
kill -9 $(rank_pids | head -n 1)
wait_bg
[ "$BG_RC" -eq 0 ] || { tail -n 30 "$WORK/w.out"; fail "wrapper exit $BG_RC"; }
grep -q "restart 1 of 3" "$WORK/wrap.log" || { cat "$WORK/wrap.log"; fail "no restart logged"; }
grep -q "resumed from" "$WORK/w.out" || fail "the restarted job did not resume"
same_arrays "$(final_ckpt "$WORK/runs/ref")" "$(final_ckpt "$run")" /model /optim
echo "restarted once, resumed, final state bitwise equal to the uninterrupted run"

note "SIGTERM to the wrapper: the job checkpoints and stops with 75, no restart"
run=$WORK/runs/t
"$WRAP" --max-restarts 3 --backoff 1 --log "$WORK/wrap2.log" -- mpirun -np 2 --oversubscribe --bind-to none \
    "$MPITRAIN" train "$J" --set train.steps=100000 --set run.dir="$run" >"$WORK/t.out" 2>&1 &
BG_PID=$!
wait_ckpt "$run" 30
kill -TERM "$BG_PID"
wait_bg
[ "$BG_RC" -eq 75 ] || { tail -n 20 "$WORK/t.out"; cat "$WORK/wrap2.log"; fail "wrapper exit $BG_RC after SIGTERM, want 75"; }
! grep -q "restart 1" "$WORK/wrap2.log" || fail "restarted after a stop request"

note "a configuration error is not retried"
expect_exit 78 "$WRAP" --max-restarts 3 --backoff 1 -- mpirun -np 1 "$MPITRAIN" train "$J" --set optim.lr=-1
expect_out "not restarting"
echo "ok: restart wrapper"
