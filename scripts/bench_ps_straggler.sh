#!/usr/bin/env bash
# bench_ps_straggler.sh — one straggling worker: samples/s and time to 88 % test accuracy
# for PS sync, delayed (s=2; and with work stealing, parallel.steal, at s=2 and s=1), ssp (s=2)
# and async (2 workers + 1 server, 3 ranks) and
# allreduce (2 ranks) as the reference, on the default job (jobs/fmnist-mlp.ini):
# results/ps-straggler.csv and results/ps-straggler.png.  Called by scripts/bench_ps.sh.
#   The straggler is rank 1 (a worker in every mode), run.slow = 1:MS with MS = the median
#   unslowed PS-sync step time measured first (its step then takes about 2x), and an
#   intermittent one, run.slow = 1:3MS:4 (4x slower every 4th step).  With parallel.steal
#   the sleep comes with every share of a step the straggler computes (its compute is that
#   much slower), so a share moved to the other worker no longer costs it the sleep.
#   samples/s: median of the train lines whose window holds neither the start nor an eval.
#   tta_train_s: seconds of training up to the first eval with accuracy >= TARGET, summed
#   from the train windows of metrics.jsonl, a window holding an eval counted at the run's
#   median time per step (so evals and process start-up are excluded); tta_wall_s: the
#   wall seconds from mpirun's start to that eval's log line (start-up and evals included).
#   A run that fails is recorded as nan, one that never reaches TARGET as "not-reached".
# Env: REPS (3, interleaved), STEPS (0 = the job's 7020), TARGET (0.88), EVAL_EVERY (100),
# LOG_EVERY (50; EVAL_EVERY a multiple of it), SLOW_MS (measured), DATA (data/fmnist),
# OUT (results/ps-straggler.csv; the PNG beside it);
# STRAGGLER_QUICK=1: a smoke test (60 steps, 1 rep, TARGET 0.6, the CSV in a temp dir).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=build/mpitrain
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=${OMPI_MCA_btl_vader_single_copy_mechanism:-none}
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
if [ "${STRAGGLER_QUICK:-0}" = 1 ]; then
    Q=$(mktemp -d "${TMPDIR:-/tmp}/ps-straggler-quick.XXXXXX")
    : "${REPS:=1}" "${STEPS:=60}" "${TARGET:=0.6}" "${EVAL_EVERY:=20}" "${LOG_EVERY:=10}" "${OUT:=$Q/ps-straggler.csv}"
fi
REPS=${REPS:-3}; STEPS=${STEPS:-0}; TARGET=${TARGET:-0.88}; EVAL_EVERY=${EVAL_EVERY:-100}
LOG_EVERY=${LOG_EVERY:-50}; DATA=${DATA:-data/fmnist}; OUT=${OUT:-results/ps-straggler.csv}
[ -d "$DATA/train" ] || { [ "$DATA" = data/fmnist ] && bash scripts/import-fmnist.sh >/dev/null; }
mkdir -p "$(dirname "$OUT")"
median() { sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
PS="--set parallel.mode=ps --set parallel.zero=0 --set parallel.servers=1 --set parallel.staleness=2 --set parallel.consistency"
# run NP [--set ...] -> "rc samples_per_s tta_train_s tta_wall_s step_reached final_acc"
run() { local np=$1; shift
    rm -rf "$TMP/run"; mkdir -p "$TMP/run"; local t0; t0=$(date +%s.%N)
    set +e
    mpirun -np "$np" --bind-to none $BIN train jobs/fmnist-mlp.ini --set train.steps="$STEPS" \
        --set data.train="$DATA/train" --set data.test="$DATA/test" --set train.eval_every="$EVAL_EVERY" \
        --set train.log_every="$LOG_EVERY" --set train.threads=1 --set run.progress=off \
        --set run.dir="$TMP/run" "$@" 2>&1 | perl -MTime::HiRes=time -ne '$|=1; printf "%.3f %s", time, $_' >"$TMP/log"
    local rc=${PIPESTATUS[0]}; set -e
    [ -f "$TMP/run/metrics.jsonl" ] || : >"$TMP/run/metrics.jsonl"
    [ "$rc" = 0 ] || { grep -m1 -o "step [0-9]*: .*diverged" "$TMP/log" >&2 || tail -n 3 "$TMP/log" >&2; }
    awk -v rc="$rc" -v t0="$t0" -v target="$TARGET" -v B=128 -v every="$EVAL_EVERY" '
        FNR == NR { if ($0 ~ /eval step/) { s = $0; sub(/.*eval step /, "", s); ws[s + 0] = $1 - t0 } next }
        /"kind":"train"/ { st = $0; sub(/.*"step":/, "", st); st += 0; sp = $0; sub(/.*"samples_per_s":/, "", sp); sp += 0
            n++; step[n] = st; len[n] = st - prev; dur[n] = len[n] * B / sp
            e = int((st - 1) / every) * every; ev[n] = e > 0 && e >= prev
            if (n > 1 && !ev[n]) { m++; ps[m] = dur[n] / len[n]; sps[m] = sp }
            prev = st }
        /"kind":"eval"/ { e = $0; sub(/.*"accuracy":/, "", e); e += 0; last = e; es = $0; sub(/.*"step":/, "", es); es += 0
            if (!hit && e >= target) hit = es }
        function med(a, k,   i, j, t) { for (i = 2; i <= k; i++) { t = a[i]; for (j = i - 1; j > 0 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
            return k == 0 ? "nan" : (k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2) }
        END { if (rc != 0) { print rc, "nan nan nan nan nan"; exit }
            pstep = med(ps, m); tr = 0
            for (i = 1; i <= n && (hit && step[i] <= hit); i++) tr += ev[i] ? len[i] * pstep : dur[i]
            if (hit) printf "0 %.1f %.3f %.3f %d %.4f\n", med(sps, m), tr, ws[hit], hit, last
            else printf "0 %.1f not-reached not-reached not-reached %.4f\n", med(sps, m), last }' "$TMP/log" "$TMP/run/metrics.jsonl"
}
cpu="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores"
load0=$(cut -d" " -f1-3 /proc/loadavg)
# the unslowed PS-sync step time of a worker -> MS
if [ -z "${SLOW_MS:-}" ]; then
    # shellcheck disable=SC2086
    read -r _ cal _ < <(STEPS=$(( STEPS > 0 && STEPS < 300 ? STEPS : 300 )) run 3 $PS=sync)
    SLOW_MS=$(awk -v s="$cal" 'BEGIN { printf "%.1f", 128000 / s }')
    echo "calibration: unslowed PS sync $cal samples/s -> straggler $SLOW_MS ms per step" >&2
else cal=given; fi
INT_MS=$(awk -v m="$SLOW_MS" 'BEGIN { printf "%.1f", 3 * m }')
cases=("persistent|allreduce|2|--set run.slow=1:$SLOW_MS" "persistent|sync|3|$PS=sync --set run.slow=1:$SLOW_MS"
       "persistent|delayed-s2|3|$PS=delayed --set run.slow=1:$SLOW_MS"
       "persistent|delayed-s2-steal|3|$PS=delayed --set parallel.steal=true --set run.slow=1:$SLOW_MS"
       "persistent|delayed-s1-steal|3|$PS=delayed --set parallel.staleness=1 --set parallel.steal=true --set run.slow=1:$SLOW_MS"
       "persistent|ssp-s2|3|$PS=ssp --set run.slow=1:$SLOW_MS"
       "persistent|async|3|$PS=async --set run.slow=1:$SLOW_MS"
       "intermittent|allreduce|2|--set run.slow=1:$INT_MS:4" "intermittent|sync|3|$PS=sync --set run.slow=1:$INT_MS:4"
       "intermittent|delayed-s2|3|$PS=delayed --set run.slow=1:$INT_MS:4"
       "intermittent|delayed-s2-steal|3|$PS=delayed --set parallel.steal=true --set run.slow=1:$INT_MS:4"
       "intermittent|delayed-s1-steal|3|$PS=delayed --set parallel.staleness=1 --set parallel.steal=true --set run.slow=1:$INT_MS:4"
       "intermittent|ssp-s2|3|$PS=ssp --set run.slow=1:$INT_MS:4"
       "intermittent|async|3|$PS=async --set run.slow=1:$INT_MS:4")
for rep in $(seq 1 "$REPS"); do
    for c in "${cases[@]}"; do
        IFS='|' read -r kind mode np sets <<<"$c"
        # shellcheck disable=SC2086
        out=$(run "$np" $sets)
        echo "$kind $mode $np ${sets##*run.slow=} $out" >>"$TMP/raw"
        echo "rep $rep $kind $mode: rc samples/s tta_train_s tta_wall_s step acc = $out" >&2
    done
done
bash scripts/bench_ps_straggler_report.sh "$TMP/raw" "$OUT" \
    "# scripts/bench_ps_straggler.sh, $(date -u +%Y-%m-%d), $cpu; load average at start $load0, at end $(cut -d" " -f1-3 /proc/loadavg); $REPS interleaved repetitions; steps ${STEPS/#0/7020 (the job: 15 epochs)}, eval every $EVAL_EVERY, target $TARGET; straggler rank 1: persistent run.slow=1:$SLOW_MS, intermittent run.slow=1:$INT_MS:4 (MS from the unslowed PS sync step, $cal samples/s)"
