#!/usr/bin/env bash
# Parameter-server mode (parallel.mode = ps, consistency = sync): the parameters and
# optimizer state after every run equal, bit for bit, those of allreduce with
# reduce = deterministic (any power-of-two worker count dividing M gives the bits of one
# rank), with and without clipping, 1 or 2 servers, servers first or last; delayed with
# s = 0 is sync, with s = 2 reproducible and independent of server and worker counts; checkpoints
# move between the modes and between server and worker counts; SIGTERM checkpoints and
# exits 75; kill -9 of a server or a worker ends the job within 10 s, mpirun naming
# the rank (the start line gives its role), and --resume auto with another server and
# worker count ends with the uninterrupted bits; impossible
# placements are refused before training (exit 78, naming the keys).
source "$(dirname "$0")/lib.sh"
need_fmnist
S=240
small_job p "[checkpoint]" "every_steps = 40" "keep = 3"
J=$WORK/p.ini
common=(--set train.steps=$S --set train.eval_every=120)
ps=(--set parallel.mode=ps --set parallel.zero=0)

note "references: allreduce at N=1, with clipping and without"
mpi 1 train "$J" "${common[@]}" --set run.dir="$WORK/runs/ref" >"$WORK/ref.log" 2>&1 || { tail "$WORK/ref.log"; fail "reference run"; }
mpi 1 train "$J" "${common[@]}" --set optim.clip_norm=0 --set run.dir="$WORK/runs/ref0" >"$WORK/ref0.log" 2>&1 || { tail "$WORK/ref0.log"; fail "reference run without clipping"; }
REF=$(final_ckpt "$WORK/runs/ref"); REF0=$(final_ckpt "$WORK/runs/ref0")

ps_case() { # NAME NP SERVERS PLACEMENT REF [more --set...]
    local name=$1 np=$2 srv=$3 place=$4 ref=$5; shift 5
    mpi "$np" train "$J" "${common[@]}" "${ps[@]}" --set parallel.servers="$srv" --set parallel.server_ranks="$place" \
        --set run.dir="$WORK/runs/$name" "$@" >"$WORK/$name.log" 2>&1 || { tail -n 20 "$WORK/$name.log"; fail "$name: run failed"; }
    grep -q "parameter servers: $srv server" "$WORK/$name.log" || fail "$name: no role line in the log"
    same_arrays "$ref" "$(final_ckpt "$WORK/runs/$name")" /model /optim
    echo "$name: $np ranks, $srv server(s) ($place): bitwise equal to its reference"
}
ps_case clip-s1 3 1 last "$REF"
ps_case clip-s2-first 4 2 first "$REF"
ps_case fused-s2 4 2 last "$REF0" --set optim.clip_norm=0
ps_case w4 5 1 first "$REF" --set train.threads=1
grep -q 'ps/sync/1s' <<<"$(h5dump -a mode "$(final_ckpt "$WORK/runs/clip-s1")")" || fail "checkpoint mode attribute is not ps/sync/1s"

note "delayed: s = 0 is sync; s = 2 is reproducible and the same for any server and worker count"
ps_case delayed0 3 1 last "$REF" --set parallel.consistency=delayed --set parallel.staleness=0
mpi 3 train "$J" "${common[@]}" "${ps[@]}" --set parallel.consistency=delayed --set parallel.staleness=2 --set run.dir="$WORK/runs/d2" >"$WORK/d2.log" 2>&1 || { tail "$WORK/d2.log"; fail "delayed s=2"; }
D2=$(final_ckpt "$WORK/runs/d2")
grep -q "consistency delayed (step t computes on version t - 2 moved on by lookahead 1 x its last step)" "$WORK/d2.log" || fail "delayed: no role line"
ps_case delayed2-again 3 1 last "$D2" --set parallel.consistency=delayed --set parallel.staleness=2
ps_case delayed2-s2 4 2 first "$D2" --set parallel.consistency=delayed --set parallel.staleness=2
ps_case delayed2-w4 5 1 last "$D2" --set parallel.consistency=delayed --set parallel.staleness=2 --set train.threads=1
h5diff -q "$REF" "$D2" /model /model >/dev/null 2>&1 && fail "delayed s=2 equals sync: the delay did nothing"
echo "delayed s=2: reproducible, equal for 1 and 2 servers and 2 and 4 workers, different from sync"
note "delayed without lookahead (parallel.lookahead = 0): reproducible too, and not the lookahead's bits"
mpi 3 train "$J" "${common[@]}" "${ps[@]}" --set parallel.consistency=delayed --set parallel.staleness=2 --set parallel.lookahead=0 \
    --set run.dir="$WORK/runs/d2l0" >"$WORK/d2l0.log" 2>&1 || { tail "$WORK/d2l0.log"; fail "delayed s=2 lookahead 0"; }
D2L0=$(final_ckpt "$WORK/runs/d2l0")
grep -q "consistency delayed (step t computes on version t - 2);" "$WORK/d2l0.log" || fail "delayed lookahead 0: no role line"
ps_case delayed2-look0-s2 4 2 first "$D2L0" --set parallel.consistency=delayed --set parallel.staleness=2 --set parallel.lookahead=0
h5diff -q "$D2" "$D2L0" /model /model >/dev/null 2>&1 && fail "parallel.lookahead = 1 gave the bits of lookahead = 0: it did nothing"
echo "delayed s=2, lookahead 0: reproducible across 1 and 2 servers, different from lookahead 1"
note "delayed with work stealing (parallel.steal): the bits of delayed, with the straggler's shares moved"
# rank 1 sleeps 4 ms per share it computes: server 0 hands most of its shares to the others
ps_case delayed2-steal 3 1 last "$D2" --set parallel.consistency=delayed --set parallel.staleness=2 \
    --set parallel.steal=true --set run.slow=1:4
grep -q "work stealing: server 0 hands each step's 2 shares out by the workers' speed" "$WORK/delayed2-steal.log" || fail "steal: no role line"
ps_case delayed2-steal-w4s2 6 2 last "$D2" --set parallel.consistency=delayed --set parallel.staleness=2 \
    --set parallel.steal=true --set run.slow=1:4 --set train.threads=1
$PYTHON - "$WORK/runs/delayed2-steal/metrics.jsonl" 2 "$WORK/runs/delayed2-steal-w4s2/metrics.jsonl" 4 <<'PY' || fail "steal: the straggler's shares did not move"
import json, sys
for path, W in zip(sys.argv[1::2], map(int, sys.argv[2::2])):
    lines = [json.loads(l) for l in open(path) if '"kind":"train"' in l]
    assert lines and all("ps_shares_min" in m and "ps_shares_max" in m for m in lines), path
    # the first window holds the s + 1 steps every worker computes its own share
    lo = min(m["ps_shares_min"] for m in lines[1:])
    hi = max(m["ps_shares_max"] for m in lines[1:])
    assert lo <= 0.8 and hi > 1.0 and hi <= 2.0, (path, lo, hi)
    print(path.split("/")[-2], "ok: shares per step between", lo, "and", hi, "of", W)
PY
# the fused server path (no clipping), shares of 7 chunks (more than the server's window
# of 4 any-source receives), lookahead 0 (version t + 1 arrives in the slab the step reads)
big=(--set "model.layers=dense:512 relu dense:10" --set optim.clip_norm=0 --set parallel.consistency=delayed
     --set parallel.staleness=2 --set parallel.lookahead=0)
mpi 3 train "$J" "${common[@]}" "${ps[@]}" "${big[@]}" --set run.dir="$WORK/runs/bigref" >"$WORK/bigref.log" 2>&1 || { tail "$WORK/bigref.log"; fail "delayed, 400k parameters"; }
ps_case steal-fused-big 3 1 last "$(final_ckpt "$WORK/runs/bigref")" "${big[@]}" --set parallel.steal=true --set run.slow=1:4
# stopped at step 120, resumed on 2 servers: the same bits with and without stealing
for st in false true; do
    mpi 3 train "$J" "${common[@]}" "${ps[@]}" --set parallel.consistency=delayed --set parallel.staleness=2 --set train.steps=120 \
        --set parallel.steal=$st --set run.slow=1:4 --set run.dir="$WORK/runs/res-$st" >"$WORK/res-$st.log" 2>&1 || { tail "$WORK/res-$st.log"; fail "steal=$st: first half"; }
    mpi 4 train "$J" "${common[@]}" "${ps[@]}" --set parallel.consistency=delayed --set parallel.staleness=2 --set parallel.servers=2 \
        --set parallel.steal=$st --set run.slow=1:4 --set run.dir="$WORK/runs/res-$st" --resume auto >>"$WORK/res-$st.log" 2>&1 || { tail "$WORK/res-$st.log"; fail "steal=$st: resumed half"; }
    grep -q "resumed from .*step-00000120.h5" "$WORK/res-$st.log" || fail "steal=$st: did not resume from step 120"
done
same_arrays "$(final_ckpt "$WORK/runs/res-false")" "$(final_ckpt "$WORK/runs/res-true")" /model /optim
echo "steal: resumed at step 120 on 2 servers, bitwise equal to the resumed run without stealing"
note "metrics: bytes, pull wait, server busy, staleness"
$PYTHON - "$WORK/runs/d2/metrics.jsonl" "$WORK/runs/clip-s1/metrics.jsonl" <<'PY' || fail "PS metrics"
import json, sys
for path, stale in ((sys.argv[1], 2), (sys.argv[2], 0)):
    lines = [json.loads(l) for l in open(path) if '"kind":"train"' in l]
    assert lines, path
    for m in lines:
        for k in ("ps_push_bytes", "ps_pull_bytes", "ps_pull_wait_s", "ps_server_bytes_max",
                  "ps_server_busy", "staleness_min", "staleness_mean", "staleness_max"):
            assert k in m, (path, k)
        assert m["ps_push_bytes"] > 0 and m["ps_push_bytes"] == m["ps_pull_bytes"], m
        # one server, two workers: it receives every worker's push
        assert m["ps_server_bytes_max"] >= 2 * m["ps_push_bytes"] * 0.99, m
        assert 0 <= m["ps_server_busy"] <= 1, m
        assert m["staleness_max"] == stale and m["staleness_min"] <= stale, m
    print(path.split("/")[-2], "ok:", {k: lines[-1][k] for k in ("ps_push_bytes", "staleness_max", "ps_server_busy")})
PY

note "checkpoints move between modes and counts: PS -> allreduce, allreduce -> PS"
cp -r "$WORK/runs/ref" "$WORK/runs/ar"
mpi 3 train "$J" "${common[@]}" "${ps[@]}" --set run.dir="$WORK/runs/x1" --set train.steps=$S \
    --resume "$WORK/runs/ref/checkpoints/step-00000160.h5" >"$WORK/x1.log" 2>&1 || { tail "$WORK/x1.log"; fail "allreduce -> PS resume"; }
same_arrays "$REF" "$(final_ckpt "$WORK/runs/x1")" /model /optim
mpi 2 train "$J" "${common[@]}" --set run.dir="$WORK/runs/x2" \
    --resume "$WORK/runs/clip-s1/checkpoints/step-00000160.h5" >"$WORK/x2.log" 2>&1 || { tail "$WORK/x2.log"; fail "PS -> allreduce resume"; }
same_arrays "$REF" "$(final_ckpt "$WORK/runs/x2")" /model /optim
grep -q "mode ps/sync/1s" "$WORK/x2.log" || fail "resume did not report the PS mode of the checkpoint"
echo "allreduce step 160 -> PS (1 server, 2 workers), PS step 160 -> allreduce N=2: equal"

note "SIGTERM of a PS job -> checkpoint, exit 75; resume auto with 2 servers: same bits"
run=$WORK/runs/term
start_bg "$WORK/term.1.log" 3 train "$J" "${common[@]}" "${ps[@]}" --set run.dir="$run"
wait_ckpt "$run" 40
kill -TERM $(rank_pids)
wait_bg
[ "$BG_RC" -eq 75 ] || { tail -n 20 "$WORK/term.1.log"; fail "exit $BG_RC after SIGTERM, want 75"; }
stopped=$(latest_step "$run"); [ "$stopped" -lt $S ] || fail "the job finished before it was stopped"
mpi 4 train "$J" "${common[@]}" "${ps[@]}" --set parallel.servers=2 --set run.dir="$run" --resume auto \
    >"$WORK/term.2.log" 2>&1 || { tail -n 20 "$WORK/term.2.log"; fail "resume after SIGTERM"; }
grep -q "resumed from .*step-0*$stopped.h5" "$WORK/term.2.log" || fail "did not resume from step $stopped"
same_arrays "$REF" "$(final_ckpt "$run")" /model /optim
echo "stopped at step $stopped by SIGTERM (exit 75), resumed with 2 servers: equal"

note "kill -9 of a worker and of a server: non-zero exit within 10 s naming the rank; resume auto on another S and W: same bits"
for victim in first last; do
    run=$WORK/runs/k$victim
    start_bg "$WORK/k$victim.log" 3 train "$J" "${common[@]}" "${ps[@]}" --set run.dir="$run"
    wait_ckpt "$run" 40
    pids=($(rank_pids)); [ ${#pids[@]} -eq 3 ] || fail "expected 3 ranks, found ${#pids[@]}"
    if [ $victim = first ]; then v=${pids[0]} r=0 role=worker; else v=${pids[2]} r=2 role=server; fi
    t0=$(date +%s.%N)
    kill -9 "$v"
    wait_bg
    dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')
    [ "$BG_RC" -ne 0 ] || fail "exit 0 after kill -9 of the $victim rank"
    awk -v d="$dt" 'BEGIN{exit !(d <= 10)}' || fail "took $dt s to exit after kill -9 of the $victim rank"
    [ -z "$(rank_pids)" ] || fail "ranks left running after the job ended"
    stopped=$(latest_step "$run"); [ "$stopped" -lt $S ] || fail "the job finished before the kill"
    grep -q "rank $r .*signal 9" "$WORK/k$victim.log" || { tail -n 15 "$WORK/k$victim.log"; fail "the end of the job does not name rank $r"; }
    grep -qE "parameter servers: .*$role" "$WORK/k$victim.log" || fail "the start line names no $role"
    echo "kill -9 of rank $r, a $role (pid $v) -> exit $BG_RC after $dt s, rank named; last checkpoint at step $stopped"
    # resume with another server and worker count: S=1, W=4 after the worker; S=2, W=2 after the server
    if [ $victim = first ]; then np=5 srv=1; else np=4 srv=2; fi
    mpi $np train "$J" "${common[@]}" "${ps[@]}" --set parallel.servers=$srv --set run.dir="$run" --resume auto \
        >"$WORK/k$victim.2.log" 2>&1 || { tail -n 20 "$WORK/k$victim.2.log"; fail "resume after kill -9 of the $role"; }
    grep -q "resumed from .*step-0*$stopped.h5" "$WORK/k$victim.2.log" || fail "did not resume from step $stopped"
    same_arrays "$REF" "$(final_ckpt "$run")" /model /optim
    echo "resumed with $srv server(s) and $((np - srv)) workers from step $stopped: bitwise equal to the uninterrupted run"
done

note "impossible placements are refused before training"
expect_exit 78 mpi 2 train "$J" "${ps[@]}" --set parallel.servers=2 --set run.dir="$WORK/runs/bad"
expect_out "leaves no worker"
expect_exit 78 mpi 2 train "$J" "${ps[@]}" --set parallel.server_ranks=spread --set run.dir="$WORK/runs/bad"
expect_out "parallel.server_ranks = spread"
expect_exit 78 mpi 2 train "$J" --set parallel.mode=ps --set parallel.zero=1 --set run.dir="$WORK/runs/bad"
expect_out "parallel.zero"
expect_exit 78 mpi 4 train "$J" "${ps[@]}" --set train.micro_batches=2 --set run.dir="$WORK/runs/bad"
expect_out "3 workers"
expect_exit 78 mpi 2 train "$J" --set run.slow=5:10 --set run.dir="$WORK/runs/bad"
expect_out "run.slow = '5:10': rank 5 does not exist"
expect_exit 78 mpi 3 train "$J" "${ps[@]}" --set parallel.steal=true --set run.dir="$WORK/runs/bad"
expect_out "parallel.steal = true needs parallel.consistency = delayed with parallel.staleness >= 1 \(it is sync"
expect_exit 78 mpi 2 train "$J" --set parallel.steal=true --set run.dir="$WORK/runs/bad"
expect_out "parallel.steal = true applies to parallel.mode = ps"
echo "ok: sync parameter servers give the bits of allreduce"
