#!/usr/bin/env bash
# Checkpoints as files: h5py reads every array by name with its true shape and the
# documented attributes; each dataset's xxh3_64 attribute is XXH3-64 of its bytes
# (recomputed through libxxhash); `ckpt info` / `ckpt verify` and their exit codes;
# checkpoint.keep; a corrupt or truncated checkpoint is detected (65) and `--resume auto`
# falls back to the previous one, says so, and ends bitwise equal to the uninterrupted
# run; a checkpoint written by 2 ranks resumes on 1 rank to the same bits; async
# checkpoints hold the same bits as synchronous ones.
source "$(dirname "$0")/lib.sh"
need_fmnist
small_job ck "[checkpoint]" "every_steps = 10" "keep = 2"
RUN=$WORK/runs/ck
CK=$RUN/checkpoints

note "train 30 steps on 2 ranks, checkpoint every 10 steps, keep 2"
mpi 2 train "$WORK/ck.ini" >"$WORK/log.ck" 2>&1 || { tail -n 20 "$WORK/log.ck"; fail "training failed"; }
[ "$(cat "$CK/latest")" = "step-00000030.h5" ] || fail "latest names '$(cat "$CK/latest")', not step-00000030.h5"
[ "$(cd "$CK" && ls step-* | tr '\n' ' ')" = "step-00000020.h5 step-00000030.h5 " ] \
    || fail "keep = 2 should leave steps 20 and 30, found: $(ls "$CK")"

note "ckpt verify / ckpt info"
expect_exit 0 "$MPITRAIN" ckpt verify "$CK"
expect_out "2 checkpoints OK, 0 bad"
expect_exit 0 "$MPITRAIN" ckpt info "$CK" --config
expect_out "step: +30$"
expect_out "world_size: +2$"
expect_out "optimizer: +adamw$"
expect_out "/model/dense0/w +float32 +\(64,784\)"
expect_out "/optim/v/dense1/b +float32 +\(10\)"
expect_out "layers = \"?dense:64 relu dropout:0.1 dense:10"

note "h5py reads it by name; the checksums are XXH3-64 of the bytes"
"$PYTHON" - "$CK/step-00000030.h5" <<'PY'
import ctypes, ctypes.util, sys
import h5py, numpy as np
path = sys.argv[1]
f = h5py.File(path, "r")
a = f.attrs
def check(cond, what):
    if not cond:
        sys.exit("FAIL: %s" % what)
check(a["format"] == "mpitrain-checkpoint", "format attribute %r" % a["format"])
check(int(a["version"]) == 1, "version")
check(int(a["step"]) == 30, "step %r" % a["step"])
check(int(a["world_size"]) == 2, "world_size")
check(int(a["seed"]) == 7, "seed")
check(a["optimizer"] == "adamw", "optimizer")
check(a["checksum"] == "xxh3_64", "checksum attribute")
for k in ("mode", "model", "mpitrain_version", "hdf5_version", "created"):
    check(k in a and len(a[k]) > 0, "attribute %s" % k)
check(a["created"].endswith("Z") and "T" in a["created"], "created is UTC ISO: %r" % a["created"])
shapes = {"dense0/w": (64, 784), "dense0/b": (64,), "dense1/w": (10, 64), "dense1/b": (10,)}
total = 0
for name, shape in shapes.items():
    for grp in ("model", "optim/m", "optim/v"):
        d = f[grp + "/" + name]
        check(d.shape == shape, "%s/%s shape %s, want %s" % (grp, name, d.shape, shape))
        check(d.dtype == np.float32, "%s/%s dtype %s" % (grp, name, d.dtype))
        check(np.isfinite(d[...]).all(), "%s/%s has non-finite values" % (grp, name))
    total += int(np.prod(shape))
check(int(a["nparams"]) == total, "nparams %d, arrays hold %d" % (int(a["nparams"]), total))
check(sorted(f["model"].keys()) == ["dense0", "dense1"], "model groups %s" % list(f["model"].keys()))
check(f["model/dense0"].attrs["activation"] == "relu", "dense0 activation attribute")
check(int(f["model/dense0"].attrs["out"]) == 64 and int(f["model/dense0"].attrs["in"]) == 784, "dense0 in/out")
check((f["optim/v/dense0/w"][...] >= 0).all(), "adam v must be >= 0")
check(np.abs(f["optim/m/dense0/w"][...]).max() > 0, "adam m is all zero after 30 steps")
s = f["state"].attrs
check(int(s["step"]) == 30 and int(s["seed"]) == 7, "/state step/seed")
check("pos_in_epoch" in s and "epoch" in s and s["rng"] == "philox4x32-10", "/state cursor and rng")
cfg = f["config"][()].decode()
check("dense:64 relu dropout:0.1 dense:10" in cfg, "/config text lacks the model line")
# XXH3-64 (seed 0) of the little-endian bytes, as documented
lib = ctypes.CDLL(ctypes.util.find_library("xxhash") or "libxxhash.so.0")
lib.XXH3_64bits.restype = ctypes.c_uint64
lib.XXH3_64bits.argtypes = (ctypes.c_char_p, ctypes.c_size_t)
n = 0
def visit(name, obj):
    global n
    if not isinstance(obj, h5py.Dataset):
        return
    if name == "config":
        v = obj[()]
        b = v.encode() if isinstance(v, str) else bytes(v)
    else:
        b = obj[...].astype("<f4").tobytes()
    check(lib.XXH3_64bits(b, len(b)) == int(obj.attrs["xxh3_64"]), "%s: xxh3_64 attribute is not XXH3-64 of its bytes" % name)
    n += 1
f.visititems(visit)
check(n == 13, "expected 13 datasets (config + 4 model + 8 optim), found %d" % n)
print("h5py: ok (%d datasets, checksums recomputed)" % n)
PY

note "a flipped byte inside an array: verify names it (65); resume skips that checkpoint"
cp -r "$CK" "$WORK/bad"
"$PYTHON" - "$WORK/bad/step-00000030.h5" <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:
    off = f["model/dense0/w"].id.get_offset()
with open(sys.argv[1], "r+b") as g:
    g.seek(off + 1000); c = g.read(1); g.seek(off + 1000); g.write(bytes([c[0] ^ 0x10]))
PY
expect_exit 65 "$MPITRAIN" ckpt verify "$WORK/bad/step-00000030.h5"
expect_out "/model/dense0/w.*checksum"
expect_exit 65 "$MPITRAIN" ckpt verify "$WORK/bad"
expect_out "1 checkpoint OK, 1 bad"
expect_exit 0 "$MPITRAIN" ckpt verify "$WORK/bad/step-00000020.h5"
mpi 2 train "$WORK/ck.ini" --set run.dir="$WORK/runs/fallback" --set checkpoint.dir="$WORK/bad" \
    --resume auto >"$WORK/log.fallback" 2>&1 || { tail -n 20 "$WORK/log.fallback"; fail "resume with fallback failed"; }
grep -q "skipping .*step-00000030.h5" "$WORK/log.fallback" || { tail -n 20 "$WORK/log.fallback"; fail "the skipped checkpoint is not reported"; }
grep -q "step-00000020.h5" "$WORK/log.fallback" || fail "the fallback checkpoint is not named"
expect_exit 0 "$MPITRAIN" ckpt verify "$WORK/bad"
same_arrays "$CK/step-00000030.h5" "$WORK/bad/step-00000030.h5" /model /optim

note "2 ranks -> 1 rank: resume from step 20 ends bitwise equal at step 30"
mpi 1 train "$WORK/ck.ini" --set run.dir="$WORK/runs/np1" --resume "$CK/step-00000020.h5" \
    >"$WORK/log.np1" 2>&1 || { tail -n 20 "$WORK/log.np1"; fail "resume on 1 rank failed"; }
same_arrays "$CK/step-00000030.h5" "$(final_ckpt "$WORK/runs/np1")" /model /optim
"$PYTHON" -c "
import h5py, sys
a = h5py.File('$(final_ckpt "$WORK/runs/np1")', 'r').attrs
sys.exit(0 if int(a['world_size']) == 1 and int(a['step']) == 30 else 'FAIL: world_size/step of the 1-rank checkpoint')
"

note "checkpoint.async = true writes the same bits"
mpi 2 train "$WORK/ck.ini" --set run.dir="$WORK/runs/async" --set checkpoint.async=true \
    >"$WORK/log.async" 2>&1 || { tail -n 20 "$WORK/log.async"; fail "training with async checkpoints failed"; }
expect_exit 0 "$MPITRAIN" ckpt verify "$WORK/runs/async/checkpoints"
expect_out "2 checkpoints OK, 0 bad"
same_arrays "$CK/step-00000020.h5" "$WORK/runs/async/checkpoints/step-00000020.h5" /model /optim
same_arrays "$CK/step-00000030.h5" "$WORK/runs/async/checkpoints/step-00000030.h5" /model /optim

note "truncated and missing files"
cp "$CK/step-00000030.h5" "$WORK/trunc.h5"
truncate -s 20000 "$WORK/trunc.h5"
expect_exit 65 "$MPITRAIN" ckpt verify "$WORK/trunc.h5"
expect_out "trunc.h5"
expect_exit 65 "$MPITRAIN" ckpt info "$WORK/trunc.h5"
expect_exit 66 "$MPITRAIN" ckpt verify "$WORK/no-such.h5"
expect_out "no-such.h5"
mkdir -p "$WORK/empty"
expect_exit 66 "$MPITRAIN" ckpt info "$WORK/empty"
expect_exit 64 "$MPITRAIN" ckpt verify
echo "ok: h5py layout and checksums, info/verify, keep, corruption fallback, 2->1 ranks, async"
