#!/usr/bin/env bash
# Runs the test suite: tests/unit (cmocka), tests/mpi (cmocka under mpirun -np 1,2,4;
# a file that says "MPI_NP: 1 2 3 4" in its first lines runs at those sizes instead),
# tests/e2e (shell scripts running the real binary).  Usage: tests/run.sh [unit|mpi|e2e]...
# Last line: "N passed, N failed".
set -u
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
export PYTHON=${PYTHON:-/usr/bin/python3}
export MPITRAIN=${MPITRAIN:-$PWD/$BUILD/mpitrain}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OPENBLAS_NUM_THREADS=1
export TMPDIR=${TMPDIR:-/tmp}
# the GEMM planner measures in every test run but keeps nothing in the user's cache
# (test_golden_bits.sh tests the cache with its own file)
export MPITRAIN_PLAN_CACHE=${MPITRAIN_PLAN_CACHE:-off}
suites=("$@"); [ ${#suites[@]} -eq 0 ] && suites=(unit mpi e2e)
pass=0; fail=0; failed=()
LOG=$BUILD/test-logs; mkdir -p "$LOG"

run_one() { # name, timeout, command...
    local name=$1 to=$2; shift 2
    local log="$LOG/$(echo "$name" | tr '/ ' '__').log"
    local t0=$(date +%s.%N)
    if timeout -k 5 "$to" "$@" >"$log" 2>&1; then
        pass=$((pass+1)); printf 'PASS %-48s %6.1fs\n' "$name" "$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')"
    else
        local rc=$?
        fail=$((fail+1)); failed+=("$name")
        printf 'FAIL %-48s (exit %d) log: %s\n' "$name" "$rc" "$log"
        tail -n 25 "$log" | sed 's/^/    | /'
    fi
}

for s in "${suites[@]}"; do
  case $s in
  unit)
    for t in tests/unit/test_*.c; do
        b=$BUILD/${t%.c}; run_one "unit/$(basename "${t%.c}")" 300 "$b"
    done ;;
  mpi)
    for t in tests/mpi/test_*.c; do
        b=$BUILD/${t%.c}
        nps=$(head -n 20 "$t" | sed -n 's/.*MPI_NP: *\([0-9 ]*\).*/\1/p' | head -n 1)
        [ -z "$nps" ] && nps="1 2 4"
        for np in $nps; do
            run_one "mpi/$(basename "${t%.c}") np=$np" 300 mpirun -np "$np" --oversubscribe "$b"
        done
    done ;;
  e2e)
    for t in tests/e2e/test_*.sh; do
        run_one "e2e/$(basename "${t%.sh}")" 900 bash "$t"
    done ;;
  *) echo "unknown suite $s" >&2; exit 2 ;;
  esac
done
if [ $fail -gt 0 ]; then echo "failed: ${failed[*]}"; fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
