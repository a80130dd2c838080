#!/usr/bin/env bash
# Parameter servers with stale consistencies (parallel.consistency = ssp, async): ssp never
# exceeds its bound (the staleness the workers recorded, with one worker made slow by
# run.slow, reaches the bound and stays within it); async runs and records its staleness;
# on a short run of the default job (500 steps) async reaches the test accuracy of sync
# within 2.5 points (its order of updates depends on timing: 0.7 and 1.1 points behind
# in two runs on a loaded machine; 0.01 better after the full job), delayed (s = 2, its
# momentum lowered by the staleness rule and its parameters moved on by the lookahead:
# bitwise reproducible, so exactly 2.03 points behind at 500 steps on every machine —
# 2.9 without the lookahead — and 0.44 after the full job, docs/design.md §6) within 2.5
# points, ssp (s = 2, the rule but no lookahead: 3 points behind) within 4, all above
# 80 % (without the rule delayed diverges); ranks that are not in lockstep still
# stop together: a diverging async run exits 70, SIGTERM checkpoints and exits 75, and
# --resume auto finishes it; async with clipping is refused (exit 78).
source "$(dirname "$0")/lib.sh"
need_fmnist
J=$ROOT/jobs/fmnist-mlp.ini
base=(--set data.train="$FMNIST/train" --set data.test="$FMNIST/test" --set parallel.mode=ps
      --set parallel.zero=0 --set train.threads=1 --set run.progress=off)
short=(--set train.steps=500 --set optim.warmup_steps=100 --set train.eval_every=500)

note "ssp (s = 2) with worker 1 sleeping 4 ms a step: staleness reaches 2, never more"
mpi 3 train "$J" "${base[@]}" --set parallel.consistency=ssp --set parallel.staleness=2 \
    --set train.steps=300 --set train.log_every=20 --set run.slow=1:4 --set run.dir="$WORK/runs/ssp" \
    >"$WORK/ssp.log" 2>&1 || { tail -n 20 "$WORK/ssp.log"; fail "ssp run"; }
grep -q "consistency ssp (.*not bitwise reproducible)" "$WORK/ssp.log" || fail "ssp: no role line"
note "async with worker 1 slow: every push applied on arrival, staleness recorded"
mpi 3 train "$J" "${base[@]}" --set parallel.consistency=async --set train.steps=300 \
    --set train.log_every=20 --set run.slow=1:4 --set run.dir="$WORK/runs/async" \
    >"$WORK/async.log" 2>&1 || { tail -n 20 "$WORK/async.log"; fail "async run"; }
grep -q "consistency async (.*not bitwise reproducible)" "$WORK/async.log" || fail "async: no role line"
$PYTHON - "$WORK/runs/ssp/metrics.jsonl" "$WORK/runs/async/metrics.jsonl" <<'PY' || fail "staleness metrics"
import json, sys
ssp = [json.loads(l) for l in open(sys.argv[1]) if '"kind":"train"' in l]
asy = [json.loads(l) for l in open(sys.argv[2]) if '"kind":"train"' in l]
assert len(ssp) == 15 and len(asy) == 15, (len(ssp), len(asy))
worst = max(m["staleness_max"] for m in ssp)
assert all(0 <= m["staleness_min"] <= m["staleness_mean"] <= m["staleness_max"] <= 2 for m in ssp), ssp
assert worst == 2, "ssp never reached its bound with a slow worker: %d" % worst
assert max(m["staleness_max"] for m in asy) >= 1, asy
assert all(m["ps_push_bytes"] > 0 and m["staleness_mean"] >= 0 for m in asy), asy
print("ssp: staleness max %d over %d windows (bound 2); async: max %d, mean %.2f" % (
    worst, len(ssp), max(m["staleness_max"] for m in asy), sum(m["staleness_mean"] for m in asy) / len(asy)))
PY

note "accuracy after 500 steps of the default job: delayed, ssp, async against sync"
for c in sync delayed ssp async; do
    mpi 3 train "$J" "${base[@]}" "${short[@]}" --set parallel.consistency=$c --set run.dir="$WORK/runs/acc-$c" \
        >"$WORK/acc-$c.log" 2>&1 || { tail -n 20 "$WORK/acc-$c.log"; fail "$c: 500-step run"; }
done
grep -q "momentum 0.9 -> 0.7" "$WORK/acc-delayed.log" || fail "delayed: the staleness rule was not applied"
$PYTHON - "$WORK/runs" <<'PY' || fail "accuracy of the stale modes"
import json, sys
def acc(c):
    ev = [json.loads(l) for l in open("%s/acc-%s/metrics.jsonl" % (sys.argv[1], c)) if '"kind":"eval"' in l]
    assert ev and ev[-1]["step"] == 500, c
    return ev[-1]["accuracy"]
ref = acc("sync")
assert ref > 0.80, ref
for c, tol in (("delayed", 0.025), ("ssp", 0.04), ("async", 0.025)):
    a = acc(c)
    print("%-7s %.4f (sync %.4f, allowed %.1f points below)" % (c, a, ref, 100 * tol))
    assert a > 0.80 and ref - a <= tol, (c, a, ref)
PY

note "not in lockstep, still stopped together: divergence (70), SIGTERM (75), resume"
expect_exit 70 mpi 3 train "$J" "${base[@]}" --set parallel.consistency=async --set optim.lr=10 \
    --set train.steps=200 --set run.dir="$WORK/runs/nan"
expect_out "training diverged"
run=$WORK/runs/term
start_bg "$WORK/term.1.log" 3 train "$J" "${base[@]}" --set parallel.consistency=async --set train.steps=100000 \
    --set checkpoint.every_steps=100 --set run.slow=0:2 --set run.dir="$run"
wait_ckpt "$run" 100
t0=$(date +%s)
kill -TERM $(rank_pids)
wait_bg
[ "$BG_RC" -eq 75 ] || { tail -n 20 "$WORK/term.1.log"; fail "async: exit $BG_RC after SIGTERM, want 75"; }
[ $(( $(date +%s) - t0 )) -le 10 ] || fail "async: took more than 10 s to stop after SIGTERM"
stopped=$(latest_step "$run")
mpi 3 train "$J" "${base[@]}" --set parallel.consistency=async --set train.steps=$((stopped + 100)) \
    --set run.dir="$run" --resume auto >"$WORK/term.2.log" 2>&1 || { tail -n 20 "$WORK/term.2.log"; fail "async resume"; }
grep -q "resumed from .*step-0*$stopped.h5" "$WORK/term.2.log" || fail "did not resume from step $stopped"
echo "async: SIGTERM at step $stopped -> exit 75 -> resumed and finished"

expect_exit 78 mpi 3 train "$J" "${base[@]}" --set parallel.consistency=async --set optim.clip_norm=1 \
    --set run.dir="$WORK/runs/bad"
expect_out "optim.clip_norm = 1 with parallel.consistency = async"
echo "ok: ssp keeps its bound, async runs, both train like sync and stop together"
