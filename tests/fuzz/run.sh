#!/usr/bin/env bash
# run.sh — runs the libFuzzer harnesses (`make fuzz` builds them, then calls this).
#   FUZZ_SECONDS=N (default 60) per harness; arguments name harnesses (default: all).
#   FUZZ_TIMEOUT=S (default 5): an input running longer is a hang.
# Each harness starts from its committed seeds (tests/fuzz/NAME/) and regression inputs
# (tests/fuzz/regress/NAME/) and grows a working corpus in build-fuzz/corpus/NAME (the
# committed corpus is never written).  libFuzzer runs in fork mode (-fork=1) and goes
# on after a finding, so a run always lasts FUZZ_SECONDS and counts every crash, leak,
# out-of-memory (-rss_limit_mb) and hang (-timeout); each finding's input lands in
# build-fuzz/artifacts/NAME/, the libFuzzer log in build-fuzz/fuzz-NAME.log.  Leaks
# inside HDF5 are suppressed by tests/san/lsan.supp; allocator_may_return_null=1 gives
# malloc's production behaviour (HDF5 copes with a NULL; our xmalloc aborts on one, so a
# huge allocation of ours is still a finding).  Prints one line per harness (executions,
# exec/s, ooms/timeouts/crashes) and exits 1 when any harness found one; then
# `tests/fuzz/triage.sh NAME build-fuzz/artifacts/NAME/*` sorts the findings into ours
# and HDF5's.
set -u
cd "$(dirname "$0")/../.."
B=build-fuzz
SECS=${FUZZ_SECONDS:-60}
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for f in tests/fuzz/fuzz_*.c; do
        n=${f#tests/fuzz/fuzz_}; n=${n%.c}
        [ "$n" = util ] || names+=("$n")
    done
fi
status=0
for n in "${names[@]}"; do
    bin=$B/tests/fuzz/fuzz_$n
    [ -x "$bin" ] || { echo "run.sh: $bin is not built (make fuzz)" >&2; exit 2; }
    corpus=$B/corpus/$n art=$B/artifacts/$n log=$B/fuzz-$n.log
    mkdir -p "$corpus" "$art"
    # seeds: the corpus and the regression inputs, less those failing inside HDF5
    # (KNOWN-HDF5: they would only be found again)
    reg=$B/regress/$n
    rm -rf "$reg" && mkdir -p "$reg"
    for f in tests/fuzz/regress/$n/*; do
        [ -f "$f" ] && [ "${f##*/}" != KNOWN-HDF5 ] || continue
        grep -qs "^${f##*/}\b" "tests/fuzz/regress/$n/KNOWN-HDF5" || cp "$f" "$reg/"
    done
    seeds=(tests/fuzz/$n "$reg")
    before=$(ls "$art" | wc -l)
    # -rss_limit_mb: an input using more memory is a finding too (a reader must not
    # allocate what a header merely claims)
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:fast_unwind_on_malloc=0:allocator_may_return_null=1} \
    LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/san/lsan.supp:print_suppressions=0} \
        "$bin" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
        -max_total_time="$SECS" -timeout="${FUZZ_TIMEOUT:-5}" -rss_limit_mb=2048 \
        -max_len="${FUZZ_MAX_LEN:-65536}" -artifact_prefix="$art/" \
        "$corpus" "${seeds[@]}" >"$log" 2>&1
    rc=$?
    # fork mode's last status line: "#EXECS: cov: .. exec/s N oom/timeout/crash: a/b/c time: .."
    last=$(grep -E '^#[0-9]+: cov:' "$log" | tail -n 1)
    execs=$(sed -n 's/^#\([0-9]*\):.*/\1/p' <<<"$last")
    secs=$(sed -n 's/.* time: \([0-9]*\)s.*/\1/p' <<<"$last")
    speed=$(awk -v e="${execs:-0}" -v t="${secs:-0}" 'BEGIN { if (t > 0) printf "%.0f", e / t; else print "?" }')
    otc=$(sed -n 's/.*oom\/timeout\/crash: \([0-9/]*\).*/\1/p' <<<"$last")
    after=$(ls "$art" | wc -l)
    printf '%-12s %10s executions %6s exec/s  oom/timeout/crash %-9s %d new artifact(s)  log %s\n' \
        "$n" "${execs:-?}" "${speed:-?}" "${otc:-?}" $((after - before)) "$log"
    if [ "$after" -gt "$before" ] || [ "${otc:-0/0/0}" != 0/0/0 ]; then status=1; fi
done
exit $status
