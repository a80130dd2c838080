#!/usr/bin/env bash
# Bad input gets a clear message and a non-zero exit, never a crash or a hang.  What
# `train` refuses before its first step, `mpitrain check` (no MPI, no training) refuses
# with the same exit code and message.
source "$(dirname "$0")/lib.sh"
# mpirun waits 1 s after a rank exits non-zero unless told not to (docs/design.md §8);
# the exit codes and messages checked here are the same either way
export OMPI_MCA_odls_base_sigkill_timeout=0
need_fmnist
small_job ok
J=$WORK/ok.ini

# both CODE ARGS...: `train ARGS` and `check ARGS` exit CODE; $OUT holds check's output
both() { local want=$1; shift
    expect_exit "$want" mpi 1 train "$@"; local tout=$OUT
    expect_exit "$want" "$MPITRAIN" check "$@"
    [ "$want" -eq 0 ] || echo "$OUT" | grep -qF -- "$(echo "$tout" | grep -m1 'error: ' | sed 's/.*error: //' | cut -c1-60)" \
        || { echo "train: $tout" | tail -n 5 >&2; echo "check: $OUT" >&2; fail "check and train differ: $*"; }
}

note "check: a good job passes, prints its summary, and writes nothing"
expect_exit 0 "$MPITRAIN" check "$J"
expect_out "^job +$J: valid"; expect_out "^model +784-dense64\+relu-dropout0.1-dense10"
expect_out "^data +$FMNIST/train: 60000 samples of uint8 28x28, 10 classes"
expect_out "^steps +30 "; expect_out "^ranks +1 "
[ ! -e "$WORK/runs/ok" ] || fail "check created the run directory"
expect_exit 0 "$MPITRAIN" check "$J" --ranks 4 --set train.steps=5
expect_out "ranks +4 \(--ranks\): 2 micro-batches per rank, the same bits as 1 rank"
expect_exit 0 "$MPITRAIN" check "$J" --ranks 3; expect_out "NOT bitwise"
note "check: bad command lines"
expect_exit 64 "$MPITRAIN" check; expect_out "usage: mpitrain check"
expect_exit 64 "$MPITRAIN" check "$J" --ranks 0; expect_out "ranks"
expect_exit 64 "$MPITRAIN" check "$J" --bogus; expect_out "bogus"
expect_exit 64 "$MPITRAIN" check "$J" "$J"; expect_out "more than one job"

note "missing job file"
both 66 "$WORK/nope.ini"; expect_out "nope.ini"
note "garbled INI"
printf '[model]\nlayers = dense:10\nthis line is garbage\n' > "$WORK/garbled.ini"
both 78 "$WORK/garbled.ini"; expect_out "garbled.ini:3"
note "unknown key (names file, line, key)"
printf '[optim]\nlearning_rate = 0.1\n' > "$WORK/unknown.ini"
both 78 "$WORK/unknown.ini"; expect_out "unknown.ini:2.*learning_rate"
note "out-of-range value"
both 78 "$J" --set optim.lr=-1; expect_out "lr"
expect_out "range|must be"
note "bad enum value lists the allowed ones"
both 78 "$J" --set parallel.reduce=fastest; expect_out "deterministic"
note "a learning rate that is 0 as a float32"
both 78 "$J" --set optim.lr=4e-324; expect_out "rounds to 0 as a float32"
note "bad layer spec"
both 78 "$J" --set model.layers="dense:64 relu dens:10"; expect_out "dens:10"
note "missing dataset"
both 66 "$J" --set data.train="$WORK/no-such-data"; expect_out "no-such-data"
note "sample shape does not fit the model input"
both 65 "$J" --set model.input=100; expect_out "model.input"
note "last layer does not match the number of classes"
both 78 "$J" --set model.layers="dense:64 relu dense:7"; expect_out "10"
note "the test split does not match the training split"
printf '1,0.5,2\n0,1.5,3\n' > "$WORK/tiny.csv"
expect_exit 0 "$MPITRAIN" data import --format csv --csv "$WORK/tiny.csv" --shards 1 --out "$WORK/tiny"
both 65 "$J" --set data.test="$WORK/tiny"; expect_out "does not match"

# corrupt copies of the test split
mk() { rm -rf "$WORK/$1"; cp -r "$FMNIST/test" "$WORK/$1"; }
note "truncated shard"
mk trunc; f=$(ls "$WORK/trunc"/shard-*.h5 | tail -n 1); truncate -s 100000 "$f"
expect_exit 65 "$MPITRAIN" data verify "$WORK/trunc"; expect_out "$(basename "$f")"
both 65 "$J" --set data.train="$WORK/trunc"; expect_out "$(basename "$f")"
note "wrong dtype in a shard (float64)"
mk dtype; f=$(ls "$WORK/dtype"/shard-*.h5 | head -n 1)
"$PYTHON" -c "
import h5py, numpy as np, sys
with h5py.File('$f', 'r+') as h:
    x = h['x'][...].astype(np.float64); del h['x']; h.create_dataset('x', data=x)
"
expect_exit 65 "$MPITRAIN" data verify "$WORK/dtype"; expect_out "$(basename "$f")"
both 65 "$J" --set data.train="$WORK/dtype"; expect_out "dtype|float64|type"
note "wrong shape in a shard"
mk shape; f=$(ls "$WORK/shape"/shard-*.h5 | head -n 1)
"$PYTHON" -c "
import h5py, numpy as np
with h5py.File('$f', 'r+') as h:
    x = h['x'][...]; del h['x']; h.create_dataset('x', data=x.reshape(x.shape[0], 14, 56))
"
expect_exit 65 "$MPITRAIN" data verify "$WORK/shape"; expect_out "shape"
note "a shard listed outside the dataset directory (../ or an absolute path)"
for bad in "../elsewhere/shard.h5" "$WORK/shape/shard-00000.h5"; do
    mk outside
    "$PYTHON" -c "
import h5py, numpy as np
with h5py.File('$WORK/outside/index.h5', 'r+') as h:
    s = h['shards'][...]; s[0]['file'] = b'$bad'; del h['shards']; h['shards'] = s
"
    expect_exit 65 "$MPITRAIN" data verify "$WORK/outside"; expect_out "plain file name"
    both 65 "$J" --set data.train="$WORK/outside"; expect_out "names the file '$bad': a shard must be a plain file name"
done
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
expect_exit 78 "$MPITRAIN" check "$J" --ranks 4 --set train.micro_batches=2 --set train.batch=64; expect_out "micro_batches"
both 78 "$J" --set train.batch=100 --set train.micro_batches=8; expect_out "multiple|divisible"
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
