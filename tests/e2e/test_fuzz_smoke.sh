#!/usr/bin/env bash
# test_fuzz_smoke.sh — a short run of every libFuzzer harness (tests/fuzz, docs/fuzzing.md):
#  1. builds them (make FUZZ=1 fuzz-build: clang, ASan + UBSan + libFuzzer, build-fuzz/);
#  2. runs each committed seed (tests/fuzz/NAME/) and regression input
#     (tests/fuzz/regress/NAME/) once: none may crash, leak, run out of memory or hang,
#     except the inputs tests/fuzz/regress/NAME/KNOWN-HDF5 lists (they fail inside
#     HDF5 1.10.8): those are triaged and reported, and fail the test only if they
#     fail in our code; for the HDF5 readers each is also replayed through the real
#     program (tests/fuzz/guarded.sh): it must end cleanly, never crash or hang;
#  3. FUZZ_SMOKE_RUNS (default 2000) random mutations per harness with a fixed libFuzzer
#     seed (-seed=1, fork mode, going on after a finding); every finding is triaged
#     (tests/fuzz/triage.sh): one in our code fails the test, one inside HDF5 is reported.
# Skips (exit 0, saying why) when clang or its libFuzzer runtime is missing: install
# clang-14 and libclang-rt-14-dev (scripts/install-deps.sh does).
source "$(dirname "$0")/lib.sh"
CLANG=${FUZZ_CC:-$(command -v clang || command -v clang-14 || echo clang)}
RUNS=${FUZZ_SMOKE_RUNS:-2000}
if ! command -v "$CLANG" >/dev/null; then
    echo "SKIP: $CLANG not found; install clang-14 and libclang-rt-14-dev (scripts/install-deps.sh)"
    exit 0
fi
printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { (void)d; return (int)(n & 0); }\n' > "$WORK/t.c"
if ! "$CLANG" -fsanitize=fuzzer,address,undefined "$WORK/t.c" -o "$WORK/t" 2>"$WORK/t.err"; then
    cat "$WORK/t.err" >&2
    echo "SKIP: $CLANG cannot link libFuzzer; install libclang-rt-14-dev (scripts/install-deps.sh)"
    exit 0
fi
note "building the harnesses (build-fuzz/)"
make -j"$(nproc)" --no-print-directory FUZZ=1 FUZZ_CC="$CLANG" fuzz-build >"$WORK/build.log" 2>&1 ||
    { tail -n 30 "$WORK/build.log" >&2; fail "make FUZZ=1 fuzz-build failed"; }
# the checkpoint and dataset readers in-process (not the bounded child process of
# io/h5_guard.c): the fuzzer must see what HDF5 and our code do with the bytes
export MPITRAIN_HDF5_TIMEOUT=0
export ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0:allocator_may_return_null=1
export LSAN_OPTIONS="suppressions=$ROOT/tests/san/lsan.supp:print_suppressions=0"
OPTS=(-timeout=10 -rss_limit_mb=2048 -max_len=65536)
known() { # NAME: the files KNOWN-HDF5 lists (first word of each non-comment line)
    local f=tests/fuzz/regress/$1/KNOWN-HDF5
    [ -f "$f" ] && sed -e 's/#.*//' "$f" | awk 'NF { print $1 }'
    return 0
}
# triage NAME FILE...: fail on a finding in our code, report those inside HDF5
triage() {
    local n=$1; shift
    [ $# -gt 0 ] || return 0
    TRIAGE_TIMEOUT=3 bash tests/fuzz/triage.sh "$n" "$@" >"$WORK/$n-triage.txt"
    local rc=$?
    sed "s/^/    $n: /" "$WORK/$n-triage.txt"
    [ $rc -eq 0 ] || fail "$n: a finding in our code (tests/fuzz/triage.sh lines 'ours' above)"
}
for src in tests/fuzz/fuzz_*.c; do
    n=${src#tests/fuzz/fuzz_}; n=${n%.c}
    [ "$n" = util ] && continue
    bin=build-fuzz/tests/fuzz/fuzz_$n
    [ -d "tests/fuzz/$n" ] || fail "harness $n has no seed corpus tests/fuzz/$n/"
    mapfile -t hdf5 < <(known "$n")
    files=()
    for f in tests/fuzz/$n/* tests/fuzz/regress/$n/*; do
        [ -f "$f" ] || continue
        b=${f##*/}
        [ "$b" = KNOWN-HDF5 ] && continue
        [[ " ${hdf5[*]} " == *" $b "* ]] && continue
        files+=("$f")
    done
    note "$n: ${#files[@]} seed and regression inputs"
    "$bin" "${OPTS[@]}" "${files[@]}" >"$WORK/$n-inputs.log" 2>&1 ||
        { grep -E "ERROR|runtime error|Running:|harness" "$WORK/$n-inputs.log" | tail -n 20 >&2
          fail "$n: a committed input fails (log above)"; }
    if [ ${#hdf5[@]} -gt 0 ]; then
        note "$n: ${#hdf5[@]} inputs that fail inside HDF5 (KNOWN-HDF5): pass means no longer"
        triage "$n" "${hdf5[@]/#/tests/fuzz/regress/$n/}"
        if { [ "$n" = ckpt ] || [ "$n" = dataset ]; } && [ -x build/mpitrain ]; then
            # what the user meets: the real program (build/mpitrain, no sanitizers) with
            # its bounded reads ends each one cleanly (exit < 128, a message naming the
            # file, no HDF5 text, in time)
            bash tests/fuzz/guarded.sh "$n" "${hdf5[@]/#/tests/fuzz/regress/$n/}" >"$WORK/$n-guarded.txt" ||
                { cat "$WORK/$n-guarded.txt" >&2; fail "$n: a KNOWN-HDF5 input crashes, hangs or fails unclearly in $MPITRAIN"; }
            note "$n: the real program ends all ${#hdf5[@]} of them cleanly ($(grep -c '^ok' "$WORK/$n-guarded.txt") commands)"
        fi
    fi
    mkdir -p "$WORK/corpus-$n" "$WORK/art-$n"
    # (fork mode's exit status is that of its last job: the triage below decides)
    "$bin" -timeout=3 -rss_limit_mb=2048 -max_len=65536 -fork=1 -ignore_crashes=1 \
        -ignore_timeouts=1 -ignore_ooms=1 -runs="$RUNS" -seed=1 -artifact_prefix="$WORK/art-$n/" \
        "$WORK/corpus-$n" "tests/fuzz/$n" >"$WORK/$n-random.log" 2>&1 || true
    grep -q '^INFO: exiting:' "$WORK/$n-random.log" ||
        { tail -n 20 "$WORK/$n-random.log" >&2; fail "$n: libFuzzer did not finish"; }
    last=$(grep -E '^#[0-9]+: cov:' "$WORK/$n-random.log" | tail -n 1)
    note "$n: random executions: ${last:-none reported}"
    mapfile -t found < <(ls "$WORK/art-$n"/* 2>/dev/null)
    triage "$n" "${found[@]}"
done
echo "PASS: every harness ran its inputs and $RUNS random executions; no finding in our code"
