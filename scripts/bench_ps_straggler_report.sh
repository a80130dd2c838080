#!/usr/bin/env bash
# bench_ps_straggler_report.sh RAW OUT.csv HEADER — the CSV and plot of bench_ps_straggler.sh.
#   RAW: one line per run, "straggler mode ranks run_slow rc samples_per_s tta_train_s
#   tta_wall_s step_reached final_accuracy" (nan = failed, not-reached = never at target).
#   OUT.csv: HEADER, the column names, one row per straggler and mode with the medians over
#   the runs and every run's raw figure (";"-separated, in run order); OUT.png beside it.
#   A median counts a not-reached run as infinitely late and leaves failed runs out.
set -euo pipefail
RAW=$1 OUT=$2 HEADER=$3
D=$(mktemp -d); trap 'rm -rf "$D"' EXIT; TMP_R=$D/r
# med FIELD (of the runs on stdin) -> the median, "not-reached" or nan
med() { awk -v f="$1" '$f != "nan" {print ($f == "not-reached" ? "inf" : $f)}' | sort -g |
        awk '{a[NR]=$1} END { if (NR == 0) { print "nan"; exit }
             m = NR % 2 ? a[(NR+1)/2] : ((a[NR/2] == "inf" || a[NR/2+1] == "inf") ? "inf" : (a[NR/2]+a[NR/2+1])/2)
             print (m == "inf" ? "not-reached" : m) }'; }
runs() { awk -v f="$1" '{printf "%s%s", (NR > 1 ? ";" : ""), $f}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b > 0) printf "%.3f", a / b; else print "nan" }'; }
{ echo "$HEADER"
  echo "straggler,mode,ranks,run_slow,reps,failed,not_reached,samples_per_s_median,samples_per_s_runs,samples_vs_sync,samples_vs_allreduce,tta_train_s_median,tta_train_s_runs,tta_train_vs_sync,tta_wall_s_median,tta_wall_s_runs,step_reached_runs,final_accuracy_runs"
  for kind in persistent intermittent; do
      grep "^$kind sync " "$RAW" > "$TMP_R.sync" || :
      grep "^$kind allreduce " "$RAW" > "$TMP_R.ar" || :
      for mode in allreduce sync delayed-s2 delayed-s2-steal delayed-s1-steal ssp-s2 async; do
          grep "^$kind $mode " "$RAW" > "$TMP_R.m" || continue
          read -r _ _ np slow _ < "$TMP_R.m"
          sps=$(med 6 < "$TMP_R.m"); tta=$(med 7 < "$TMP_R.m"); wall=$(med 8 < "$TMP_R.m")
          echo "$kind,$mode,$np,$slow,$(wc -l < "$TMP_R.m"),$(awk '$5 != 0' "$TMP_R.m" | wc -l),$(awk '$7 == "not-reached"' "$TMP_R.m" | wc -l),$sps,$(runs 6 < "$TMP_R.m"),$(ratio "$sps" "$(med 6 < "$TMP_R.sync")"),$(ratio "$sps" "$(med 6 < "$TMP_R.ar")"),$tta,$(runs 7 < "$TMP_R.m"),$(ratio "$tta" "$(med 7 < "$TMP_R.sync")"),$wall,$(runs 8 < "$TMP_R.m"),$(runs 9 < "$TMP_R.m"),$(runs 10 < "$TMP_R.m")"
      done
  done; } > "$OUT"
# the plot: samples/s and time to target per mode, persistent and intermittent side by side
PNG=${OUT%.csv}.png
awk -F, 'NR > 2 { k = $1; m = $2; s[k, m] = $8; t[k, m] = $12; if (!(m in seen)) { seen[m] = 1; order[++n] = m } }
    function v(x) { return x ~ /^[0-9.]+$/ ? x : "NaN" }
    END { for (i = 1; i <= n; i++) { m = order[i]; print m, v(s["persistent", m]), v(s["intermittent", m]), v(t["persistent", m]), v(t["intermittent", m]) } }' "$OUT" > "$TMP_R.dat"
term=png; gnuplot -e 'set terminal' 2>&1 | grep -qw pngcairo && term=pngcairo
gnuplot <<EOF
set terminal $term size 1100,450
set output "$PNG"
set multiplot layout 1,2 title "one straggling worker (rank 1), 2 workers: $(date -u +%Y-%m-%d)"
set style data histograms; set style histogram clustered gap 1; set style fill solid 0.8 border -1
set boxwidth 0.9; set grid ytics; set yrange [0:*]; set key below horizontal
set title "samples/s (median)"; plot "$TMP_R.dat" using 2:xtic(1) title "persistent 2x", '' using 3 title "intermittent 4x every 4th"
set title "training s to target accuracy (median; no bar: not reached)"
plot "$TMP_R.dat" using 4:xtic(1) title "persistent 2x", '' using 5 title "intermittent 4x every 4th"
unset multiplot
EOF
echo "wrote $OUT and $PNG" >&2
