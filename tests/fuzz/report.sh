#!/usr/bin/env bash
# report.sh NAME [TAG] — what one campaign of harness NAME (tests/fuzz/run.sh; TAG = NAME,
# or NAME-own / NAME-h5py for a seed subset) found, from its files in build-fuzz/:
#  1. its figures from the last status line of fuzz-TAG.log: executions, seconds,
#     oom/timeout/crash counts;
#  2. the leak pass: every input of the grown corpus corpus/TAG run once with
#     LeakSanitizer and complete stacks (tests/san/lsan.supp) -> leaks-TAG.log;
#  3. every finding in artifacts/TAG triaged (tests/fuzz/triage.sh: ours, hdf5, pass)
#     -> triage-TAG.txt;
#  4. for the HDF5 readers (ckpt, dataset), findings failing inside HDF5 replayed through
#     the real program with its bounded reads (tests/fuzz/guarded.sh) -> guarded-TAG.txt:
#     at most GUARD_PER_CLASS (default 20) of each class of kind and HDF5 function (those
#     of one class fail alike, and a hang takes the bound in each command).
# Prints one line and appends it to results/fuzz.csv with the date and the CPU.
# Exit 1 when a finding is ours, a guarded replay is bad, or the corpus leaks.
set -u
cd "$(dirname "$0")/../.."
B=build-fuzz
n=$1; tag=${2:-$1}
bin=$B/tests/fuzz/fuzz_$n
log=$B/fuzz-$tag.log corpus=$B/corpus/$tag art=$B/artifacts/$tag
[ -x "$bin" ] && [ -f "$log" ] || { echo "report.sh: no campaign of $tag ($bin, $log)" >&2; exit 2; }
sel=all; case $tag in *-own) sel=own ;; *-h5py) sel=h5py ;; esac
# fork mode's last status line: "#EXECS: cov: .. exec/s N oom/timeout/crash: a/b/c time: .."
last=$(grep -E '^#[0-9]+: cov:' "$log" | tail -n 1)
execs=$(sed -n 's/^#\([0-9]*\):.*/\1/p' <<<"$last")
secs=$(sed -n 's/.* time: \([0-9]*\)s.*/\1/p' <<<"$last")
speed=$(awk -v e="${execs:-0}" -v t="${secs:-0}" 'BEGIN { if (t > 0) printf "%.0f", e / t; else print "?" }')
otc=$(sed -n 's/.*oom\/timeout\/crash: \([0-9/]*\).*/\1/p' <<<"$last")
leaks=0
MPITRAIN_HDF5_TIMEOUT=0 \
ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0:allocator_may_return_null=1 \
LSAN_OPTIONS=suppressions=$PWD/tests/san/lsan.supp:print_suppressions=0 \
    "$bin" -runs=0 -timeout=30 -rss_limit_mb=2048 "$corpus" >"$B/leaks-$tag.log" 2>&1 || leaks=1
mapfile -t found < <(ls "$art" 2>/dev/null | sed "s|^|$art/|")
ours=0 inhdf5=0 passed=0 gok=0 gbad=0 gn=0
: >"$B/triage-$tag.txt"; : >"$B/guarded-$tag.txt"
if [ ${#found[@]} -gt 0 ]; then
    TRIAGE_TIMEOUT=${FUZZ_TIMEOUT:-2} bash tests/fuzz/triage.sh "$n" "${found[@]}" >"$B/triage-$tag.txt"
    ours=$(grep -c '^ours' "$B/triage-$tag.txt")
    inhdf5=$(grep -c '^hdf5' "$B/triage-$tag.txt")
    passed=$(grep -c '^pass' "$B/triage-$tag.txt")
    if [ "$n" = ckpt ] || [ "$n" = dataset ]; then
        mapfile -t h < <(awk -v k="${GUARD_PER_CLASS:-20}" '$1 == "hdf5" && seen[$2 " " $3]++ < k { print $NF }' "$B/triage-$tag.txt")
        gn=${#h[@]}
        [ "$gn" -eq 0 ] || bash tests/fuzz/guarded.sh "$n" "${h[@]}" >"$B/guarded-$tag.txt"
        gok=$(grep -c '^ok' "$B/guarded-$tag.txt"); gbad=$(grep -c '^BAD' "$B/guarded-$tag.txt")
    fi
fi
printf '%-16s %9s execs %5s exec/s  oom/timeout/crash %-10s triage: ours %d, hdf5 %d, pass %d;  %d replayed guarded: ok %d, bad %d;  corpus %s, leaks %s\n' \
    "$tag" "${execs:-?}" "${speed:-?}" "${otc:-?}" "$ours" "$inhdf5" "$passed" "$gn" "$gok" "$gbad" \
    "$(ls "$corpus" | wc -l)" "$([ $leaks = 0 ] && echo none || echo "FOUND ($B/leaks-$tag.log)")"
csv=results/fuzz.csv
[ -s "$csv" ] || echo "date,cpu,harness,seeds,seconds,executions,exec_per_s,ooms,timeouts,crashes,ours,hdf5,pass,guarded_inputs,guarded_ok,guarded_bad,corpus,leaks,note" >"$csv"
IFS=/ read -r o t c <<<"${otc:-0/0/0}"
echo "$(date -u +%Y-%m-%dT%H:%MZ),\"$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)\",$n,$sel,${secs:-0},${execs:-0},${speed:-0},$o,$t,$c,$ours,$inhdf5,$passed,$gn,$gok,$gbad,$(ls "$corpus" | wc -l),$leaks," >>"$csv"
[ "$ours" -eq 0 ] && [ "$gbad" -eq 0 ] && [ $leaks = 0 ]
