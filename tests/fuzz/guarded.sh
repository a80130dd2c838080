#!/usr/bin/env bash
# guarded.sh NAME FILE... — replays fuzz inputs through the real program, as a user would
# meet them: build/mpitrain (no sanitizers; GUARD_BIN= another), HDF5 reads bounded by io/h5_guard.c
# (MPITRAIN_HDF5_TIMEOUT, here GUARD_BOUND seconds, default 2).  For the harnesses that
# read HDF5 files:
#   ckpt     FILE is a checkpoint:            mpitrain ckpt verify FILE; mpitrain ckpt info FILE
#   dataset  FILE is fuzz_dataset's layout (1 flag byte, 4 bytes n, n bytes index.h5, the
#            rest shard-00000.h5), unpacked into a directory D:
#                                             mpitrain data info D; mpitrain data verify D
# Each command must end by itself within 3 x GUARD_BOUND + 5 seconds, exit 0 or 1..127
# (never a signal: no crash reaches the user), and when it fails say why ("error: ..." on
# stderr, or a verify report's "FAILED: ..." on stdout) naming the file or directory;
# HDF5's own error stack ("HDF5-DIAG", "#000: ...", "H5Fopen()") must not show.
# The inputs are those the in-process harness finds failing inside HDF5 (triage.sh:
# class hdf5): this is what stands between such a file and the user.
# Prints a line "== FILE" per input, then one per command:  ok|BAD  EXIT  SECONDS  COMMAND;
# exits 1 if any is BAD.
set -u
cd "$(dirname "$0")/../.."
n=$1; shift
BIN=${GUARD_BIN:-$PWD/build/mpitrain}   # the product, never a sanitizer build (ASan stops at HDF5's overlaps)
[ -x "$BIN" ] || { echo "guarded.sh: $BIN is not built (make)" >&2; exit 2; }
export MPITRAIN_HDF5_TIMEOUT=${GUARD_BOUND:-2}
limit=$(awk -v b="$MPITRAIN_HDF5_TIMEOUT" 'BEGIN { printf "%d", 3 * b + 5 }')
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mpitrain-guarded.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
status=0
run() { # NAME_IN_MESSAGES COMMAND...
    local who=$1; shift
    local t0 t1 rc out
    t0=$(date +%s.%N)
    out=$(timeout -k 2 "$limit" "$@" 2>&1)
    rc=$?
    t1=$(date +%s.%N)
    local secs; secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    local why=""
    if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then why="did not end within ${limit}s"
    elif [ $rc -ge 128 ]; then why="killed by signal $((rc - 128))"
    elif [ $rc -ne 0 ] && ! grep -qE "error:|FAILED" <<<"$out"; then why="failed without an error message"
    elif [ $rc -ne 0 ] && ! grep -qF "$who" <<<"$out"; then why="the message does not name $who"
    elif grep -qE 'HDF5-DIAG|#[0-9]{3}: |H5[A-Z][a-z_]*\(\)|infinite loop closing library' <<<"$out"; then why="HDF5's own error text reached the user"
    fi
    if [ -n "$why" ]; then
        printf 'BAD  %3d  %6s  %s  (%s)\n' "$rc" "$secs" "$*" "$why"
        sed 's/^/      | /' <<<"$out" | head -n 5
        status=1
    else
        printf 'ok   %3d  %6s  %s\n' "$rc" "$secs" "$*"
    fi
}
for f in "$@"; do
    echo "== $f"
    case $n in
    ckpt)
        c=$tmp/step-00000001.h5
        cp "$f" "$c"
        run "$c" "$BIN" ckpt verify "$c"
        run "$c" "$BIN" ckpt info "$c"
        rm -f "$c" ;;
    dataset)
        d=$tmp/ds
        rm -rf "$d" && mkdir -p "$d"
        ${PYTHON:-/usr/bin/python3} - "$f" "$d" <<'EOF' || { echo "guarded.sh: cannot unpack $f" >&2; exit 2; }
import struct, sys
b = open(sys.argv[1], "rb").read()
flags, b = b[:1], b[1:]
n = struct.unpack("<I", (b[:4] + b"\0\0\0\0")[:4])[0]; b = b[4:]
n = min(n, len(b))
open(sys.argv[2] + "/index.h5", "wb").write(b[:n])
open(sys.argv[2] + "/shard-00000.h5", "wb").write(b[n:])
EOF
        run "$d" "$BIN" data info "$d"
        run "$d" "$BIN" data verify "$d" ;;
    *) echo "guarded.sh: no replay for harness $n (ckpt, dataset)" >&2; exit 2 ;;
    esac
done
exit $status
