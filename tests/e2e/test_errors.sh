#!/usr/bin/env bash
# Bad input gets a clear message and a non-zero exit, never a crash or a hang.
source "$(dirname "$0")/lib.sh"
need_fmnist
small_job ok
J=$WORK/ok.ini

note "missing job file"
expect_exit 66 mpi 1 train "$WORK/nope.ini"; expect_out "nope.ini"
note "garbled INI"
printf '[model]\nlayers = dense:10\nthis line is garbage\n' > "$WORK/garbled.ini"
expect_exit 78 mpi 1 train "$WORK/garbled.ini"; expect_out "garbled.ini:3"
note "unknown key (names file, line, key)"
printf '[optim]\nlearning_rate = 0.1\n' > "$WORK/unknown.ini"
expect_exit 78 mpi 1 train "$WORK/unknown.ini"; expect_out "unknown.ini:2.*learning_rate"
note "out-of-range value"
expect_exit 78 mpi 1 train "$J" --set optim.lr=-1; expect_out "lr"
expect_out "range|must be"
note "bad enum value lists the allowed ones"
expect_exit 78 mpi 1 train "$J" --set parallel.reduce=fastest; expect_out "deterministic"
note "bad layer spec"
expect_exit 78 mpi 1 train "$J" --set model.layers="dense:64 relu dens:10"; expect_out "dens:10"
note "missing dataset"
expect_exit 66 mpi 1 train "$J" --set data.train="$WORK/no-such-data"; expect_out "no-such-data"
note "sample shape does not fit the model input"
expect_exit 65 mpi 1 train "$J" --set model.input=100; expect_out "model.input"
note "last layer does not match the number of classes"
expect_exit 78 mpi 1 train "$J" --set model.layers="dense:64 relu dense:7"; expect_out "10"

# corrupt copies of the test split
mk() { rm -rf "$WORK/$1"; cp -r "$FMNIST/test" "$WORK/$1"; }
note "truncated shard"
mk trunc; f=$(ls "$WORK/trunc"/shard-*.h5 | tail -n 1); truncate -s 100000 "$f"
expect_exit 65 "$MPITRAIN" data verify "$WORK/trunc"; expect_out "$(basename "$f")"
expect_exit 65 mpi 1 train "$J" --set data.train="$WORK/trunc"; expect_out "$(basename "$f")"
note "wrong dtype in a shard (float64)"
mk dtype; f=$(ls "$WORK/dtype"/shard-*.h5 | head -n 1)
"$PYTHON" -c "
import h5py, numpy as np, sys
with h5py.File('$f', 'r+') as h:
    x = h['x'][...].astype(np.float64); del h['x']; h.create_dataset('x', data=x)
"
expect_exit 65 "$MPITRAIN" data verify "$WORK/dtype"; expect_out "$(basename "$f")"
expect_exit 65 mpi 1 train "$J" --set data.train="$WORK/dtype"; expect_out "dtype|float64|type"
note "wrong shape in a shard"
mk shape; f=$(ls "$WORK/shape"/shard-*.h5 | head -n 1)
"$PYTHON" -c "
import h5py, numpy as np
with h5py.File('$f', 'r+') as h:
    x = h['x'][...]; del h['x']; h.create_dataset('x', data=x.reshape(x.shape[0], 14, 56))
"
expect_exit 65 "$MPITRAIN" data verify "$WORK/shape"; expect_out "shape"
note "labels out of range"
mk labels; f=$(ls "$WORK/labels"/shard-*.h5 | tail -n 1)
"$PYTHON" -c "
import h5py
with h5py.File('$f', 'r+') as h:
    y = h['y']; y[17] = 12
"
expect_exit 65 "$MPITRAIN" data verify "$WORK/labels"; expect_out "$(basename "$f").*17|17.*$(basename "$f")"
note "a bad sample read by one rank of two: the job exits non-zero within seconds naming the rank"
t0=$(date +%s)
expect_exit 65 mpi 2 train "$J" --set data.train="$WORK/labels" --set train.steps=400
expect_out "rank [01]"
t1=$(date +%s); [ $((t1 - t0)) -le 60 ] || fail "took $((t1 - t0)) s to stop"

note "data-parallel configs refused before training"
expect_exit 78 mpi 4 train "$J" --set train.micro_batches=2 --set train.batch=64; expect_out "micro_batches"
expect_exit 78 mpi 1 train "$J" --set train.batch=100 --set train.micro_batches=8; expect_out "multiple|divisible"
note "NaN loss: the job stops, naming step and rank"
expect_exit 70 mpi 2 train "$J" --set optim.name=sgd --set optim.lr=10 --set optim.momentum=0.99 --set optim.schedule=constant --set optim.clip_norm=0 --set train.steps=200
expect_out "step [0-9]+.*rank [01]"
note "a stuck rank: the step watchdog aborts the job, naming the step"
start_bg "$WORK/wd.log" 2 train "$J" --set train.steps=100000 --set run.step_timeout_s=3 --set run.dir="$WORK/runs/wd"
sleep 3
kill -STOP $(rank_pids | tail -n 1)
t0=$(date +%s)
wait_bg
kill -CONT $(rank_pids) 2>/dev/null || true
[ "$BG_RC" -ne 0 ] || fail "watchdog: job exited 0"
[ $(( $(date +%s) - t0 )) -le 20 ] || fail "watchdog: took more than 20 s"
grep -q "watchdog: step [0-9]* has been in phase" "$WORK/wd.log" || { tail "$WORK/wd.log"; fail "no watchdog message"; }
note "bad command line"
expect_exit 64 "$MPITRAIN" frobnicate
expect_exit 64 mpi 1 train "$J" --bogus
echo "ok: every bad input refused with a message and the documented exit code"
