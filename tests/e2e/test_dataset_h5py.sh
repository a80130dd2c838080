#!/usr/bin/env bash
# test_dataset_h5py.sh — the dataset schema (docs/dataset-format.md) as h5py sees it:
#  1. `mpitrain data import` of a CSV and of the Fashion-MNIST test split (IDX, gzip'd;
#     a synthetic IDX when the Debian package is absent), opened with h5py exactly as the
#     schema says: attributes, shard table, shapes, dtypes, chunking, counts, and every
#     sample and label equal to the source;
#  2. a dataset written from scratch with h5py by the schema is accepted by info/verify;
#  3. damage done with h5py (float64 x, wrong shape, bad label, missing or truncated
#     shard, no index) is caught by `data verify` with the right exit code and names
#     the shard; the output-directory policy of import.
# Uses $MPITRAIN (default build/mpitrain); without it, a driver around
# dataset_cli_main() is linked from build/libmpitrain.a.
source "$(dirname "$0")/lib.sh"

if [ ! -x "$MPITRAIN" ]; then
    [ -f "$BUILD/libmpitrain.a" ] || fail "neither $MPITRAIN nor $BUILD/libmpitrain.a is built (run make)"
    note "$MPITRAIN not built: linking a 'data' driver from $BUILD/libmpitrain.a"
    printf '#include "io/dataset.h"\nint main(int c, char **v) { return dataset_cli_main(c - 1, v + 1); }\n' > "$WORK/drv.c"
    gcc -std=c11 -Isrc "$WORK/drv.c" "$BUILD/libmpitrain.a" \
        $(pkg-config --libs hdf5-openmpi ompi-c openblas inih libxxhash) -lz -lm -pthread -o "$WORK/mpitrain"
    MPITRAIN=$WORK/mpitrain
fi
MT=$MPITRAIN

# ---------------------------------------------------------------- 1a. CSV
note "CSV import, read back with h5py"
"$PYTHON" - "$WORK/d.csv" <<'EOF'
import sys, numpy as np
rng = np.random.default_rng(5)
x = (rng.standard_normal((257, 6)) * 100).astype(np.float32)
y = rng.integers(0, 5, 257)
y[0] = 4
with open(sys.argv[1], "w") as f:
    f.write("label," + ",".join(f"f{j}" for j in range(6)) + "\n")
    for i in range(257):
        f.write(str(y[i]) + "," + ",".join(repr(float(v)) for v in x[i]) + "\n")
np.save(sys.argv[1] + ".x.npy", x); np.save(sys.argv[1] + ".y.npy", y)
EOF
expect_exit 0 "$MT" data import --format csv --csv "$WORK/d.csv" --shards 3 --out "$WORK/csv"
expect_out "samples +257 in 3 shards"
"$PYTHON" - "$WORK/csv" "$WORK/d.csv" <<'EOF' || fail "CSV dataset does not match the schema or the source"
import os, sys, h5py, numpy as np
d, src = sys.argv[1], sys.argv[2]
def check(c, what):
    if not c: sys.exit(f"mismatch: {what}")
with h5py.File(os.path.join(d, "index.h5"), "r") as f:
    a = f.attrs
    check(a["format"] == "mpitrain-dataset", "format")
    check(int(a["version"]) == 1, "version")
    check(list(a["sample_shape"]) == [6], "sample_shape")
    check(a["dtype"] == "float32", "dtype attr")
    check(int(a["num_classes"]) == 5, "num_classes")
    check(int(a["num_samples"]) == 257, "num_samples")
    check((float(a["scale"]), float(a["mean"]), float(a["std"])) == (1.0, 0.0, 1.0), "norm")
    shards = f["shards"][...]
    check(shards.dtype.names == ("file", "count"), "shards fields")
    check(shards.dtype["file"].kind == "S" and shards.dtype["count"] == np.int64, "shards types")
counts = [int(c) for c in shards["count"]]
check(sum(counts) == 257 and max(counts) - min(counts) <= 1, f"near-equal counts {counts}")
xs, ys = [], []
for row in shards:
    with h5py.File(os.path.join(d, row["file"].decode()), "r") as f:
        x, y = f["x"], f["y"]
        check(x.shape == (int(row["count"]), 6) and x.dtype == np.float32, "x shape/dtype")
        check(x.chunks is not None and x.compression is None, "x chunked, uncompressed")
        check(y.shape == (int(row["count"]),) and y.dtype == np.int32, "y shape/dtype")
        xs.append(x[...]); ys.append(y[...])
check(np.array_equal(np.concatenate(xs), np.load(src + ".x.npy")), "x values (file order)")
check(np.array_equal(np.concatenate(ys), np.load(src + ".y.npy")), "y values")
EOF

# ---------------------------------------------------------------- 1b. IDX
SRC=/usr/share/datasets/fashion-mnist
if [ -f "$SRC/t10k-images-idx3-ubyte.gz" ]; then
    IMG=$SRC/t10k-images-idx3-ubyte.gz; LAB=$SRC/t10k-labels-idx1-ubyte.gz
    note "IDX import of the Fashion-MNIST test split"
else
    IMG=$WORK/img.gz; LAB=$WORK/lab.gz
    note "Fashion-MNIST not installed: IDX import of a synthetic set"
    "$PYTHON" - "$IMG" "$LAB" <<'EOF'
import gzip, struct, sys, numpy as np
rng = np.random.default_rng(1)
x = rng.integers(0, 256, (1000, 28, 28), dtype=np.uint8); y = rng.integers(0, 10, 1000, dtype=np.uint8)
with gzip.open(sys.argv[1], "wb") as f: f.write(struct.pack(">IIII", 0x803, 1000, 28, 28) + x.tobytes())
with gzip.open(sys.argv[2], "wb") as f: f.write(struct.pack(">II", 0x801, 1000) + y.tobytes())
EOF
fi
expect_exit 0 "$MT" data import --format idx --images "$IMG" --labels "$LAB" --shards 2 --out "$WORK/idx"
expect_exit 0 "$MT" data verify "$WORK/idx"
expect_out "verified +[0-9]+ samples in 2 shards"
"$PYTHON" - "$WORK/idx" "$IMG" "$LAB" <<'EOF' || fail "IDX dataset does not match the schema or the source"
import gzip, os, struct, sys, h5py, numpy as np
d, img, lab = sys.argv[1:4]
def check(c, what):
    if not c: sys.exit(f"mismatch: {what}")
with gzip.open(img) as f: raw = f.read()
magic, n, r, c = struct.unpack(">IIII", raw[:16])
X = np.frombuffer(raw, np.uint8, offset=16).reshape(n, r, c)
with gzip.open(lab) as f: Y = np.frombuffer(f.read(), np.uint8, offset=8)
with h5py.File(os.path.join(d, "index.h5"), "r") as f:
    a = f.attrs
    check(a["format"] == "mpitrain-dataset" and a["dtype"] == "uint8", "format/dtype")
    check(list(a["sample_shape"]) == [r, c] and int(a["num_samples"]) == n, "shape/count")
    check(int(a["num_classes"]) == int(Y.max()) + 1, "num_classes")
    scale, mean, std = a["scale"], a["mean"], a["std"]
    check(scale.dtype == np.float32 and scale == np.float32(1 / 255), "scale")
    v = X.astype(np.float64) / 255
    check(abs(mean - v.mean()) < 1e-6 and abs(std - v.std()) < 1e-6, f"mean/std {mean} {std}")
    shards = f["shards"][...]
xs, ys, first = [], [], 0
for row in shards:
    with h5py.File(os.path.join(d, row["file"].decode()), "r") as f:
        x = f["x"]
        check(x.dtype == np.uint8 and x.shape == (int(row["count"]), r, c), "x dtype/shape")
        check(f.attrs["first_sample"] == first, "first_sample")
        check(x.attrs["scale"] == scale and x.attrs["mean"] == mean, "x norm attrs")
        first += int(row["count"])
        xs.append(x[...]); ys.append(f["y"][...])
check(np.array_equal(np.concatenate(xs), X), "every image equals the IDX source")
check(np.array_equal(np.concatenate(ys), Y), "every label equals the IDX source")
# the documented model input
x0 = (xs[0][:5].astype(np.float32) * scale - mean) / std
check(x0.dtype == np.float32 and np.isfinite(x0).all(), "normalised input")
EOF
# normalisation copied from another dataset (e.g. test split from the train split)
expect_exit 65 "$MT" data import --images "$IMG" --labels "$LAB" --out "$WORK/idx3" --stats-from "$WORK/csv"
expect_out "stats-from .* holds float32 samples of shape 6 but this input has uint8 samples"
expect_exit 0 "$MT" data import --images "$IMG" --labels "$LAB" --out "$WORK/idx3" --stats-from "$WORK/idx"
cmp <("$MT" data info "$WORK/idx" | grep normalise) <("$MT" data info "$WORK/idx3" | grep normalise) \
    || fail "--stats-from did not copy the normalisation"

# ---------------------------------------------------------------- 2. written by h5py
note "a dataset written with h5py from the schema"
"$PYTHON" - "$WORK/byhand" <<'EOF'
import os, sys, h5py, numpy as np
d = sys.argv[1]; os.makedirs(d)
rng = np.random.default_rng(3)
counts = [7, 5]
for k, n in enumerate(counts):
    with h5py.File(os.path.join(d, f"part{k}.h5"), "w") as f:
        f.create_dataset("x", data=rng.random((n, 2, 3), dtype=np.float32), chunks=(2, 2, 3))
        f["y"] = rng.integers(0, 3, n)            # int64, numpy's default
with h5py.File(os.path.join(d, "index.h5"), "w") as f:
    f.attrs["format"] = "mpitrain-dataset"        # h5py: variable-length UTF-8 strings
    f.attrs["version"] = 1
    f.attrs["sample_shape"] = [2, 3]
    f.attrs["dtype"] = "float32"
    f.attrs["num_classes"] = 3
    f.attrs["num_samples"] = sum(counts)
    f.attrs["scale"] = 1.0; f.attrs["mean"] = 0.5; f.attrs["std"] = 0.25
    f["shards"] = np.array([(b"part0.h5", 7), (b"part1.h5", 5)],
                           dtype=[("file", "S64"), ("count", "<i8")])
EOF
expect_exit 0 "$MT" data info "$WORK/byhand"
expect_out "samples +12 in 2 shards"
expect_out "sample +float32 2x3 \(6 values\)"
expect_exit 0 "$MT" data verify "$WORK/byhand"

# ---------------------------------------------------------------- 3. damage
note "damage done with h5py is caught by data verify"
damage() { # DIR PYTHON-CODE (f = the shard opened r+)
    "$PYTHON" -c "
import h5py, numpy as np
f = h5py.File('$1', 'r+')
$2
f.close()"
}
cp -r "$WORK/byhand" "$WORK/d1"
damage "$WORK/d1/part1.h5" 'del f["x"]; f["x"] = np.zeros((5, 2, 3))'          # float64
expect_exit 65 "$MT" data verify "$WORK/d1"
expect_out "FAILED: shard .*/d1/part1.h5: x has dtype float64 but index.h5 says float32"
cp -r "$WORK/byhand" "$WORK/d2"
damage "$WORK/d2/part0.h5" 'del f["x"]; f["x"] = np.zeros((7, 3, 2), np.float32)'
expect_exit 65 "$MT" data verify "$WORK/d2"
expect_out "part0.h5: x has shape \(7, 3, 2\) but index.h5 says \(7, 2, 3\)"
cp -r "$WORK/byhand" "$WORK/d3"
damage "$WORK/d3/part1.h5" 'f["y"][3] = 3'
expect_exit 65 "$MT" data verify "$WORK/d3"
expect_out "part1.h5 sample 3 \(global sample 10\): label 3 out of range \[0, 3\)"
cp -r "$WORK/idx" "$WORK/d4"
truncate -s 100000 "$WORK/d4/shard-00001.h5"
expect_exit 65 "$MT" data verify "$WORK/d4"
expect_out "FAILED: cannot open shard .*/d4/shard-00001.h5 as HDF5 \(truncated file"
rm "$WORK/d4/shard-00001.h5"
expect_exit 66 "$MT" data verify "$WORK/d4"
expect_out "shard 1 \(.*shard-00001.h5\) of dataset .* is missing"
rm "$WORK/d4/index.h5"
expect_exit 66 "$MT" data verify "$WORK/d4"
expect_out "not a complete dataset"

# ---------------------------------------------------------------- output directory policy
note "import output directory policy"
expect_exit 0 "$MT" data import --csv "$WORK/d.csv" --shards 4 --out "$WORK/csv"   # replaces
[ ! -e "$WORK/csv/index.h5.tmp" ] && [ -e "$WORK/csv/shard-00003.h5" ] || fail "re-import layout"
mkdir "$WORK/mine"; echo keep > "$WORK/mine/notes.txt"
expect_exit 73 "$MT" data import --csv "$WORK/d.csv" --out "$WORK/mine"
expect_out "holds notes.txt, which is not part of an mpitrain dataset"
[ "$(ls "$WORK/mine")" = notes.txt ] || fail "refused import touched the directory"
expect_exit 64 "$MT" data import --csv "$WORK/d.csv"
expect_exit 64 "$MT" data import --format xls --csv "$WORK/d.csv" --out "$WORK/x"
echo "ok"
