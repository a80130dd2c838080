#!/usr/bin/env bash
# test_build.sh — the build's contract: without the dependencies `make` names the
# missing pkg-config modules and `make deps`, exits non-zero and compiles nothing; the
# product binary is not linked with OpenBLAS (only mpitrain-bench is); `mpitrain bench`
# runs the benchmark binary beside it; the version comes from VERSION.
source "$(dirname "$0")/lib.sh"

note "make with the dependencies missing (PKG_CONFIG=false)"
set +e
OUT=$(PKG_CONFIG=false make --no-print-directory BUILD="$WORK/build" all 2>&1); rc=$?
set -e
[ "$rc" -ne 0 ] || fail "make succeeded without dependencies"
expect_out "missing pkg-config modules: .*hdf5-openmpi.*ompi-c.*inih.*libxxhash.*openblas.*cmocka"
expect_out "make deps"
grep -q "gcc" <<<"$OUT" && fail "make ran the compiler without dependencies: $OUT"
[ ! -e "$WORK/build" ] || fail "make created $WORK/build without dependencies"

note "the product is not linked with OpenBLAS; the benchmarks are"
ldd "$MPITRAIN" | grep -qi blas && fail "$MPITRAIN links a BLAS: $(ldd "$MPITRAIN" | grep -i blas)"
ldd "$(dirname "$MPITRAIN")/mpitrain-bench" | grep -qi openblas || fail "mpitrain-bench does not link OpenBLAS"

note "mpitrain bench runs mpitrain-bench"
expect_exit 0 "$MPITRAIN" bench --help
expect_out "mpitrain bench gemm"
expect_exit 64 "$MPITRAIN" bench nosuch
expect_out "unknown benchmark 'nosuch'"
expect_exit 0 "$MPITRAIN" bench gemm --seconds 0.05 --threads 1
expect_out "^mpitrain,"

note "one version"
expect_exit 0 "$MPITRAIN" version
[ "$OUT" = "mpitrain $(cat VERSION)" ] || fail "version '$OUT' is not VERSION's $(cat VERSION)"
echo "ok"
