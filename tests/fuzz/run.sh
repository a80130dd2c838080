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
# suppressions that match, a tenth of the speed); afterwards report.sh runs every input
# of the grown corpus once with it (complete stacks, tests/san/lsan.supp), so a leak on
# any path the fuzzer reached is still found.  allocator_may_return_null=1 gives malloc's
# production behaviour (HDF5 copes with a NULL; our xmalloc aborts on one, so a huge
# allocation of ours is still a finding).
# Then tests/fuzz/report.sh triages every finding of the campaign (build-fuzz/artifacts/
# NAME is emptied first: ours, hdf5 or pass), replays those failing inside HDF5 through
# the real program with its bounded reads (tests/fuzz/guarded.sh: a clean error, never a
# crash or hang), prints one line per harness and appends it to results/fuzz.csv (with
# the date and the CPU); exit 1 when a finding is ours, a guarded replay is bad, or the
# corpus leaks.
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
    rm -rf "$art" && mkdir -p "$art"   # a campaign's findings are its own
    MPITRAIN_HDF5_TIMEOUT=0 \
    ASAN_OPTIONS=${FUZZ_ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1:symbolize=0} \
        "$bin" -fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1 \
        -max_total_time="$SECS" -timeout="${FUZZ_TIMEOUT:-2}" -rss_limit_mb=2048 \
        -max_len="${FUZZ_MAX_LEN:-65536}" -artifact_prefix="$art/" \
        "$corpus" "${seeds[@]}" >"$log" 2>&1
    bash tests/fuzz/report.sh "$n" "$tag" || status=1
done
exit $status
