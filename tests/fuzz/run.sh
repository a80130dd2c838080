#!/usr/bin/env bash
# run.sh — runs the libFuzzer harnesses (`make fuzz` builds them, then calls this).
#   FUZZ_SECONDS=N (default 60) per harness; arguments name harnesses (default: all).
#   FUZZ_TIMEOUT=S (default 2): an input running longer is a hang (a healthy one takes
#   milliseconds).
# Each harness starts from its committed seeds (tests/fuzz/NAME/) and regression inputs
# (tests/fuzz/regress/NAME/) and grows a working corpus in build-fuzz/corpus/NAME (the
# committed corpus is never written).  libFuzzer runs in fork mode (-fork=1) and goes
# on after a finding, so a run always lasts FUZZ_SECONDS and counts every crash,
# out-of-memory (-rss_limit_mb) and hang (-timeout); each finding's input lands in
# build-fuzz/artifacts/NAME/, the libFuzzer log in build-fuzz/fuzz-NAME.log.  The
# campaign runs without leak detection (LeakSanitizer needs the slow unwinder for
# suppressions that match, a tenth of the speed); afterwards every input of the grown
# corpus is run once with it (complete stacks, tests/san/lsan.supp), so a leak on any
# path the fuzzer reached is still found.  allocator_may_return_null=1 gives malloc's
# production behaviour (HDF5 copes with a NULL; our xmalloc aborts on one, so a huge
# allocation of ours is still a finding).
# Then every new finding is triaged (tests/fuzz/triage.sh: ours, hdf5 or pass), and for
# the HDF5 readers each one failing inside HDF5 is replayed through the real program
# with its bounded reads (tests/fuzz/guarded.sh: a clean error, never a crash or hang).
# Prints one line per harness and appends it to results/fuzz.csv (with the date and the
# CPU); exits 1 when a finding is ours, a guarded replay is bad, or the corpus leaks.
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
    # FUZZ_SEEDS=own: only the seeds our writers made (fixed-length strings, checksummed
    # metadata); h5py: only those h5py made (variable-length strings: mutations reach
    # HDF5's global heap, which has no checksum and fails inside HDF5 every few hundred
    # inputs, so that campaign spends most of its time restarting); all (default): both
    sel=${FUZZ_SEEDS:-all}
    case $sel in all|own|h5py) ;; *) echo "run.sh: FUZZ_SEEDS=$sel: all, own or h5py" >&2; exit 2 ;; esac
    tag=$n; [ "$sel" = all ] || tag=$n-$sel
    corpus=$B/corpus/$tag art=$B/artifacts/$tag log=$B/fuzz-$tag.log
    mkdir -p "$corpus" "$art"
    picked=$B/seeds/$tag
    rm -rf "$picked" && mkdir -p "$picked"
    for f in tests/fuzz/$n/*; do
        case $sel:${f##*/} in all:*|own:*) ;; h5py:*h5py*) ;; *) continue ;; esac
        case $sel:${f##*/} in own:*h5py*) continue ;; esac
        cp -r "$f" "$picked/"
    done
    # seeds: the corpus and the regression inputs, less those failing inside HDF5
    # (KNOWN-HDF5: they would only be found again)
    reg=$B/regress/$n
    rm -rf "$reg" && mkdir -p "$reg"
    for f in tests/fuzz/regress/$n/*; do
        [ -f "$f" ] && [ "${f##*/}" != KNOWN-HDF5 ] || continue
        grep -qs "^${f##*/}\b" "tests/fuzz/regress/$n/KNOWN-HDF5" || cp "$f" "$reg/"
    done
    seeds=("$picked" "$reg")
    before=$(ls "$art" | sort)
    MPITRAIN_HDF5_TIMEOUT=0 \
    ASAN_OPTIONS=${FUZZ_ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1} \
        "$bin" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
        -max_total_time="$SECS" -timeout="${FUZZ_TIMEOUT:-2}" -rss_limit_mb=2048 \
        -max_len="${FUZZ_MAX_LEN:-65536}" -artifact_prefix="$art/" \
        "$corpus" "${seeds[@]}" >"$log" 2>&1
    # fork mode's last status line: "#EXECS: cov: .. exec/s N oom/timeout/crash: a/b/c time: .."
    last=$(grep -E '^#[0-9]+: cov:' "$log" | tail -n 1)
    execs=$(sed -n 's/^#\([0-9]*\):.*/\1/p' <<<"$last")
    secs=$(sed -n 's/.* time: \([0-9]*\)s.*/\1/p' <<<"$last")
    speed=$(awk -v e="${execs:-0}" -v t="${secs:-0}" 'BEGIN { if (t > 0) printf "%.0f", e / t; else print "?" }')
    otc=$(sed -n 's/.*oom\/timeout\/crash: \([0-9/]*\).*/\1/p' <<<"$last")
    # the leak pass: every corpus input once, leaks detected with complete stacks
    leaks=0
    MPITRAIN_HDF5_TIMEOUT=0 \
    ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0:allocator_may_return_null=1 \
    LSAN_OPTIONS=suppressions=$PWD/tests/san/lsan.supp:print_suppressions=0 \
        "$bin" -runs=0 -timeout=30 -rss_limit_mb=2048 "$corpus" >"$B/leaks-$tag.log" 2>&1 || leaks=1
    # triage of the new findings; guarded replay of those failing inside HDF5
    mapfile -t new < <(comm -13 <(echo "$before") <(ls "$art" | sort) | sed "s|^|$art/|" | grep -v "/$")
    ours=0 inhdf5=0 passed=0 gok=0 gbad=0
    if [ ${#new[@]} -gt 0 ]; then
        TRIAGE_TIMEOUT=${FUZZ_TIMEOUT:-2} bash tests/fuzz/triage.sh "$n" "${new[@]}" >"$B/triage-$tag.txt"
        ours=$(grep -c '^ours' "$B/triage-$tag.txt")
        inhdf5=$(grep -c '^hdf5' "$B/triage-$tag.txt")
        passed=$(grep -c '^pass' "$B/triage-$tag.txt")
        mapfile -t h < <(awk '$1 == "hdf5" { print $NF }' "$B/triage-$tag.txt")
        if [ ${#h[@]} -gt 0 ] && { [ "$n" = ckpt ] || [ "$n" = dataset ]; }; then
            bash tests/fuzz/guarded.sh "$n" "${h[@]}" >"$B/guarded-$tag.txt"
            gok=$(grep -c '^ok' "$B/guarded-$tag.txt"); gbad=$(grep -c '^BAD' "$B/guarded-$tag.txt")
        fi
    fi
    printf '%-16s %9s execs %5s exec/s  oom/timeout/crash %-9s triage: ours %d, hdf5 %d, pass %d;  guarded replays ok %d, bad %d;  corpus %s, leaks %s\n' \
        "$tag" "${execs:-?}" "${speed:-?}" "${otc:-?}" "$ours" "$inhdf5" "$passed" "$gok" "$gbad" \
        "$(ls "$corpus" | wc -l)" "$([ $leaks = 0 ] && echo none || echo "FOUND ($B/leaks-$tag.log)")"
    csv=results/fuzz.csv
    [ -s "$csv" ] || echo "date,cpu,harness,seeds,seconds,executions,exec_per_s,ooms,timeouts,crashes,ours,hdf5,pass,guarded_ok,guarded_bad,corpus,leaks" >"$csv"
    IFS=/ read -r o t c <<<"${otc:-0/0/0}"
    echo "$(date -u +%Y-%m-%dT%H:%MZ),\"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)\",$n,$sel,${secs:-0},${execs:-0},${speed:-0},$o,$t,$c,$ours,$inhdf5,$passed,$gok,$gbad,$(ls "$corpus" | wc -l),$leaks" >>"$csv"
    if [ "$ours" -gt 0 ] || [ "$gbad" -gt 0 ] || [ $leaks != 0 ]; then status=1; fi
done
exit $status
