# lib.sh — helpers for the end-to-end tests (sourced).  Each test is a bash script that
# exits non-zero on the first failed assertion, printing what failed.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BUILD=${BUILD:-build}
MPITRAIN=${MPITRAIN:-$ROOT/$BUILD/mpitrain}
PYTHON=${PYTHON:-/usr/bin/python3}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
export OPENBLAS_NUM_THREADS=1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mpitrain-e2e.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
note() { echo "--- $*"; }

# Fashion-MNIST imported once per build tree (shared by the tests): $FMNIST/{train,test}
FMNIST=$ROOT/$BUILD/test-data/fmnist
need_fmnist() {
    if [ ! -f "$FMNIST/train/index.h5" ] || [ ! -f "$FMNIST/test/index.h5" ]; then
        (flock 9; MPITRAIN=$MPITRAIN bash "$ROOT/scripts/import-fmnist.sh" "$FMNIST") 9>"$ROOT/$BUILD/.fmnist.lock" >/dev/null
    fi
}

# mpirun NP ARGS... (oversubscribed, no binding)
mpi() { local np=$1; shift; mpirun -np "$np" --oversubscribe --bind-to none "$MPITRAIN" "$@"; }

# expect_exit CODE CMD...: run, capture output in $OUT, check the exit code
expect_exit() {
    local want=$1; shift
    set +e; OUT=$("$@" 2>&1); local got=$?; set -e
    [ "$got" -eq "$want" ] || { echo "$OUT" | tail -n 30 >&2; fail "expected exit $want, got $got: $*"; }
}
expect_out() { # PATTERN: $OUT must match (grep -E)
    grep -qE -- "$1" <<<"$OUT" || { echo "$OUT" | tail -n 30 >&2; fail "output does not match /$1/"; }
}

# a small job on Fashion-MNIST: writes $WORK/NAME.ini
small_job() { # NAME [extra INI lines...]
    local name=$1; shift
    cat > "$WORK/$name.ini" <<EOT
[model]
layers = dense:64 relu dropout:0.1 dense:10
[data]
train = $FMNIST/train
test = $FMNIST/test
[train]
steps = 30
batch = 64
micro_batches = 8
seed = 7
log_every = 10
eval_every = 1000
[optim]
name = adamw
lr = 0.002
weight_decay = 0.01
schedule = cosine
warmup_steps = 5
clip_norm = 1.0
[run]
name = $name
dir = $WORK/runs/$name
progress = plain
EOT
    for l in "$@"; do echo "$l" >> "$WORK/$name.ini"; done
}

# same_arrays A.h5 B.h5 GROUP...: bitwise equality of every dataset under GROUPs
same_arrays() {
    local a=$1 b=$2; shift 2
    for g in "$@"; do
        h5diff -r "$a" "$b" "$g" "$g" >"$WORK/h5diff.out" 2>&1 || { head -n 20 "$WORK/h5diff.out" >&2; fail "$a and $b differ in $g"; }
    done
}
final_ckpt() { # RUN_DIR -> path of the newest checkpoint
    echo "$1/checkpoints/$(cat "$1/checkpoints/latest")"
}

# start_bg LOG NP ARGS...: mpirun in the background; sets BG_PID
start_bg() { local log=$1 np=$2; shift 2
    mpirun -np "$np" --oversubscribe --bind-to none "$MPITRAIN" "$@" >"$log" 2>&1 &
    BG_PID=$!
}
# wait_bg: waits for BG_PID, sets BG_RC
wait_bg() { set +e; wait "$BG_PID"; BG_RC=$?; set -e; }
# latest_step RUN_DIR: the step of the checkpoint `latest` names (0 if none)
latest_step() { local f="$1/checkpoints/latest"
    [ -f "$f" ] || { echo 0; return; }
    sed -n 's/.*step-0*\([0-9][0-9]*\)\.h5.*/\1/p' "$f" | head -n 1 | grep . || echo 0
}
# wait_ckpt RUN_DIR STEP [TIMEOUT_S]: until `latest` names a step >= STEP (fails if the
# background job ends first)
wait_ckpt() { local run=$1 want=$2 to=${3:-120} t=0
    while [ "$(latest_step "$run")" -lt "$want" ]; do
        kill -0 "$BG_PID" 2>/dev/null || fail "the job ended before checkpoint step $want"
        sleep 0.05; t=$((t+1)); [ $t -lt $((to*20)) ] || fail "no checkpoint at step >= $want after ${to}s"
    done
}
# rank_pids: pids of the running mpitrain ranks (not mpirun)
rank_pids() { pgrep -f "^$MPITRAIN train" || true; }
