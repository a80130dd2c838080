#!/usr/bin/env bash
# Checkpoints as files: h5py reads every array by name with its true shape and the
# documented attributes; each dataset's xxh3_64 attribute is XXH3-64 of its bytes
# (recomputed through libxxhash), and the seal in the first 512 bytes is XXH3-128 of the
# whole file; string attributes are fixed-length (no global heap); `ckpt info` /
# `ckpt verify` and their exit codes;
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
def check(cond, what):
    if not cond:
        sys.exit("FAIL: %s" % what)
class Attrs:  # our strings are fixed-length: h5py gives bytes
    def __init__(self, a): self.a = a
    def __contains__(self, k): return k in self.a
    def __getitem__(self, k):
        v = self.a[k]
        check(not isinstance(v, str), "attribute %s is a variable-length string" % k)
        return v.decode() if isinstance(v, bytes) else v
a = Attrs(f.attrs)
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
check(Attrs(f["model/dense0"].attrs)["activation"] == "relu", "dense0 activation attribute")
check(int(f["model/dense0"].attrs["out"]) == 64 and int(f["model/dense0"].attrs["in"]) == 784, "dense0 in/out")
check((f["optim/v/dense0/w"][...] >= 0).all(), "adam v must be >= 0")
check(np.abs(f["optim/m/dense0/w"][...]).max() > 0, "adam m is all zero after 30 steps")
s = Attrs(f["state"].attrs)
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
check(f.userblock_size == 512, "user block of %d bytes, want 512 (the seal)" % f.userblock_size)
f.close()
# the seal: XXH3-128 of the whole file, its 32 hex digits taken as '0'
b = bytearray(open(path, "rb").read())
head = ("mpitrain checkpoint seal 1\nbytes %020d\nxxh3-128 " % len(b)).encode()
check(bytes(b[:63]) == head and b[95:96] == b"\n" and not any(b[96:512]), "seal layout %r" % bytes(b[:96]))
check(b"GCOL" not in b, "a global heap (variable-length strings) in the file")
stored = bytes(b[63:95]).decode()
b[63:95] = b"0" * 32
class H128(ctypes.Structure):
    _fields_ = [("low64", ctypes.c_uint64), ("high64", ctypes.c_uint64)]
lib.XXH3_128bits.restype = H128
lib.XXH3_128bits.argtypes = (ctypes.c_char_p, ctypes.c_size_t)
h = lib.XXH3_128bits(bytes(b), len(b))
check("%016x%016x" % (h.high64, h.low64) == stored, "seal hash %s is not XXH3-128 of the file" % stored)
print("h5py: ok (%d datasets, checksums and the seal recomputed)" % n)
PY

note "a flipped byte inside an array: verify names it (65); resume skips that checkpoint"
cp -r "$CK" "$WORK/bad"
"$PYTHON" tests/e2e/damage.py array "$WORK/bad/step-00000030.h5" model/dense0/w 1000
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
