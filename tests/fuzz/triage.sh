#!/usr/bin/env bash
# triage.sh NAME FILE... — runs each input alone through build-fuzz/tests/fuzz/fuzz_NAME
# (TRIAGE_TIMEOUT seconds at most, default 5) and prints one line per input:
#   CLASS  KIND  WHERE  FILE
#   CLASS  ours  the first frame of the report outside the sanitizers, libc and libFuzzer
#                (and our xmalloc/fatal/CHECK wrappers) is in our code, or the bad access
#                is to a buffer our code allocated: a bug to fix
#          hdf5  that frame is inside libhdf5: HDF5 failing on a damaged file
#          pass  the input does not fail when run alone (e.g. a process-state effect)
#   KIND   what the sanitizer or libFuzzer reported (heap-buffer-overflow, timeout, ...)
#   WHERE  that frame's function (and file:line for our code)
# A crash inside HDF5 caused by a wrong call of ours that does not touch a buffer of ours
# would still read "hdf5": every such class was checked by hand (docs/fuzzing.md).  Leaks are checked with the
# suppressions of tests/san/lsan.supp and complete stacks.  Exit 1 if any input is ours.
set -u
cd "$(dirname "$0")/../.."
n=$1; shift
bin=build-fuzz/tests/fuzz/fuzz_$n
[ -x "$bin" ] || { echo "triage.sh: $bin is not built (make fuzz)" >&2; exit 2; }
# in-process, as the harnesses run under make fuzz: no watchdog or crash handler of
# io/h5_guard.c between HDF5 and the sanitizers
export MPITRAIN_HDF5_TIMEOUT=0
status=0
for f in "$@"; do
    out=$(ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0:allocator_may_return_null=1 \
          LSAN_OPTIONS=suppressions=$PWD/tests/san/lsan.supp:print_suppressions=0 \
          timeout -k 5 60 "$bin" -timeout="${TRIAGE_TIMEOUT:-5}" -rss_limit_mb=2048 "$f" 2>&1)
    rc=$?
    if grep -q 'out-of-memory (used:' <<<"$out"; then
        # over the RSS limit: run again stopping at the first malloc over 256 MB, whose
        # stack says who asked for it
        out=$(ASAN_OPTIONS=detect_leaks=0:fast_unwind_on_malloc=0:allocator_may_return_null=1 \
              timeout -k 5 60 "$bin" -timeout="${TRIAGE_TIMEOUT:-5}" -rss_limit_mb=100000 -malloc_limit_mb=256 "$f" 2>&1)
    fi
    if [ $rc -eq 0 ]; then
        printf 'pass  -  -  %s\n' "$f"
        continue
    fi
    kind=$(grep -m1 -oE 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer): [A-Za-z-]+( on)?|runtime error|timeout after|deadly signal' <<<"$out" |
           sed -E 's/ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer): //; s/ on$//; s/ after//')
    [ -z "$kind" ] && kind="exit-$rc"
    # UBSan names our file:line itself
    where=$(grep -m1 -oE '[a-z_/]+\.c:[0-9]+:[0-9]+: runtime error' <<<"$out" | sed 's/: runtime error//')
    if [ -n "$where" ]; then
        printf 'ours  %s  %s  %s\n' "$kind" "$where" "$f"; status=1; continue
    fi
    # a bad access to a buffer of ours (e.g. HDF5 writing past a buffer we sized) is ours:
    # the first frame of the "allocated by" stack decides
    alloc=$(sed -n '/allocated by thread/,/^$/p' <<<"$out" | grep -E '^ *#[0-9]+ 0x[0-9a-f]+ in ' |
            grep -vE ' in (__sanitizer|__asan|__interceptor|__libc|fuzzer::)' |
            grep -vE ' in (malloc|calloc|realloc|posix_memalign|aligned_alloc|memalign|str[a-z]*|xmalloc|xcalloc|xaligned|xstrdup) ' |
            grep -vE '(libc\.so|libclang_rt|libasan|libubsan)' | head -n 1)
    if [ -n "$alloc" ] && [[ "$alloc" != *libhdf5* ]]; then
        func=$(sed -E 's/.* in ([^ ]+).*/\1/' <<<"$alloc")
        printf 'ours  %s  in a buffer allocated by %s  %s\n' "$kind" "$func" "$f"; status=1; continue
    fi
    frame=$(grep -E '^ *#[0-9]+ 0x[0-9a-f]+ in ' <<<"$out" |
            grep -vE ' in (__sanitizer|__asan|__lsan|__ubsan|__interceptor|__libc|__GI_|__mem|__str|fuzzer::)' |
            grep -vE ' in (_start|abort|raise|gsignal|__pthread_kill[a-z_]*|pthread_kill|main|malloc|calloc|realloc|free|str[a-z]*|mem[a-z]*|operator|xmalloc|xcalloc|xaligned|xstrdup|fatal|check_fail|abort_hook|die) ' |
            grep -vE '(libc\.so|libclang_rt|libasan|libubsan|sysdeps|/libio/|csu/)' | head -n 1)
    func=$(sed -E 's/.* in ([^ ]+).*/\1/' <<<"$frame")
    if [[ "$frame" == *libhdf5* ]]; then
        printf 'hdf5  %s  %s  %s\n' "$kind" "$func" "$f"
    elif [ -n "$frame" ]; then
        loc=$(grep -oE '/[^ ]+\.c:[0-9]+' <<<"$frame" | sed "s|^$PWD/||")
        printf 'ours  %s  %s %s  %s\n' "$kind" "$func" "$loc" "$f"; status=1
    else
        printf 'ours  %s  (no stack)  %s\n' "$kind" "$f"; status=1
    fi
done
exit $status
