#!/usr/bin/env bash
# test_nonfinite.sh — non-finite values never train, and no checkpoint holds them:
#  1. a float32 dataset (written with h5py by docs/dataset-format.md) with one NaN, and
#     one with one inf: `train` exits 65 naming the dataset, the shard and the row, with
#     the shard cached and uncached, at N = 1 and 2 (the rank that reads it names it, all
#     ranks stop); `eval` of a good run on them exits 65 too; `data verify` agrees;
#  2. a job made to diverge (sgd, lr 10, momentum 0.99) exits 70 naming the step, the
#     rank and the layer; it wrote checkpoints every 5 steps before: `ckpt verify` of the
#     directory passes, and every array of every checkpoint there is finite (h5py).
source "$(dirname "$0")/lib.sh"
# mpirun waits 1 s after a rank exits non-zero unless told not to (docs/design.md §8);
# the exit codes and messages checked here are the same either way
export OMPI_MCA_odls_base_sigkill_timeout=0
need_fmnist

# ---------------------------------------------------------------- 1. data
note "float32 datasets with one NaN and one inf (h5py)"
"$PYTHON" - "$WORK" <<'EOF'
import os, sys, h5py, numpy as np
root = sys.argv[1]
rng = np.random.default_rng(11)
counts = [300, 300]
x = rng.standard_normal((sum(counts), 16)).astype(np.float32)
y = (np.abs(x[:, 0]) * 3).astype(np.int64) % 4
def write(name, bad=None):
    d = os.path.join(root, name); os.makedirs(d)
    xx = x.copy()
    if bad is not None:
        xx[300 + 137, 5] = bad                   # shard-00001.h5 row 137, x[5]
    first = 0
    for k, n in enumerate(counts):
        with h5py.File(os.path.join(d, "shard-%05d.h5" % k), "w") as f:
            f.create_dataset("x", data=xx[first:first + n], chunks=(50, 16))
            f.create_dataset("y", data=y[first:first + n].astype(np.int32))
        first += n
    with h5py.File(os.path.join(d, "index.h5"), "w") as f:
        f.attrs["format"] = "mpitrain-dataset"
        f.attrs["version"] = 1
        f.attrs["sample_shape"] = [16]
        f.attrs["dtype"] = "float32"
        f.attrs["num_classes"] = 4
        f.attrs["num_samples"] = sum(counts)
        f.attrs["scale"] = 1.0; f.attrs["mean"] = 0.0; f.attrs["std"] = 1.0
        f["shards"] = np.array([(b"shard-00000.h5", 300), (b"shard-00001.h5", 300)],
                               dtype=[("file", "S64"), ("count", "<i8")])
write("good"); write("nan", np.nan); write("inf", np.inf)
EOF
cat > "$WORK/f32.ini" <<EOT
[model]
layers = dense:32 relu dense:4
[data]
train = $WORK/good
test = $WORK/good
[train]
steps = 20
batch = 32
micro_batches = 4
eval_every = 10
[optim]
lr = 0.01
[run]
name = f32
dir = $WORK/runs/f32
progress = off
EOT
expect_exit 0 "$MPITRAIN" data verify "$WORK/good"
for kind in nan inf; do
    want=$([ $kind = nan ] && echo NaN || echo inf)
    expect_exit 65 "$MPITRAIN" data verify "$WORK/$kind"
    expect_out "shard-00001.h5 row 137 \(global sample 437\): x\[5\] is $want"
    for cache in 1024 0; do
        for np in 1 2; do
            note "$kind: train exits 65 naming the shard and the row (cache_mb=$cache, N=$np)"
            rm -rf "$WORK/runs/bad"
            expect_exit 65 mpi $np train "$WORK/f32.ini" --set data.train="$WORK/$kind" \
                --set data.cache_mb=$cache --set run.dir="$WORK/runs/bad"
            expect_out "dataset $WORK/$kind: shard $WORK/$kind/shard-00001.h5 row 137 \(global sample 437\): x\[5\] is $want"
            [ ! -e "$WORK/runs/bad/checkpoints/latest" ] || fail "$kind: a checkpoint was written"
        done
    done
done
note "the test split is checked too: eval inside train, and mpitrain eval"
expect_exit 65 mpi 1 train "$WORK/f32.ini" --set data.test="$WORK/nan" --set run.dir="$WORK/runs/badtest"
expect_out "shard-00001.h5 row 137"
[ ! -e "$WORK/runs/badtest/checkpoints/latest" ] || fail "a checkpoint was written after bad test data"
expect_exit 0 mpi 1 train "$WORK/f32.ini"
for kind in nan inf; do
    expect_exit 65 "$MPITRAIN" eval "$WORK/runs/f32" --data "$WORK/$kind"
    expect_out "shard-00001.h5 row 137"
done
expect_exit 0 "$MPITRAIN" eval "$WORK/runs/f32" --data "$WORK/good"

# ---------------------------------------------------------------- 2. divergence
small_job div "[checkpoint]" "every_steps = 5" "keep = 0"
for np in 1 2; do
    note "a diverging job exits 70 naming the step, the rank and the layer (N=$np)"
    rm -rf "$WORK/runs/div"
    expect_exit 70 mpi $np train "$WORK/div.ini" --set optim.name=sgd --set optim.lr=10 \
        --set optim.momentum=0.99 --set optim.schedule=constant --set optim.clip_norm=0 \
        --set train.steps=200
    expect_out "step [0-9]+: the optimizer update on rank [01] made layer dense[0-9]+ parameter [wb]\[[0-9, ]+\] (NaN|-?inf)"
    bad=$(echo "$OUT" | sed -n 's/.*step \([0-9]*\): the optimizer update.*/\1/p' | head -n 1)
    last=$(latest_step "$WORK/runs/div")
    [ "$last" -gt 0 ] || fail "no checkpoint before the divergence at step $bad"
    [ "$last" -le "$bad" ] || fail "a checkpoint of step $last, after the divergence at step $bad"
    n=$(ls "$WORK/runs/div/checkpoints"/step-*.h5 | wc -l)
    [ "$n" -eq $((last / 5)) ] || fail "keep = 0 kept $n checkpoints, not all $((last / 5))"
    expect_exit 0 "$MPITRAIN" ckpt verify "$WORK/runs/div/checkpoints"
    "$PYTHON" - "$WORK/runs/div/checkpoints" <<'EOF' || fail "a checkpoint holds non-finite values"
import glob, sys, h5py, numpy as np
files = sorted(glob.glob(sys.argv[1] + "/step-*.h5"))
assert files, "no checkpoint"
for p in files:
    with h5py.File(p, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and obj.dtype.kind == "f":
                if not np.isfinite(obj[...]).all(): sys.exit("%s: %s is not finite" % (p, name))
        f.visititems(visit)
EOF
done
echo "ok: non-finite data refused (65), divergence stopped (70), every checkpoint finite"
