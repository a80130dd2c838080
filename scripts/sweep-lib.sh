# sweep-lib.sh — the sweep file, read by scripts/sweep-run and slurm/sweep.sbatch (sourced).
#
# A sweep file (jobs/sweep-*.txt) has one directive a line; '#' starts a comment line:
#   job FILE                  the job file every point trains (relative to the repository)
#   set KEY=VALUE...          overrides for every point (--set), e.g. train.steps=200
#   point RANKS LABEL [KEY=VALUE...]
#                             one point: RANKS ranks, LABEL names its series in the plots
#                             (e.g. the reduce mode), then its own overrides
# Values with spaces are quoted: set model.layers="dense:256 relu dense:10".
# After sweep_load FILE: SWEEP_JOB, SWEEP_SETS (--set KEY=VALUE pairs, an array),
# SWEEP_NPOINTS, and sweep_point I sets POINT_RANKS, POINT_LABEL, POINT_SETS (an array).
# Errors name the file and line and return 64.

sweep_words() { # TEXT -> one word a line, quotes as the shell reads them (no expansion)
    printf '%s\n' "$1" | xargs -n1 printf '%s\n'
}

sweep_load() {
    local file=$1 kw rest n=0 w
    SWEEP_JOB="" SWEEP_SETS=() SWEEP_POINT_LINES=()
    [ -f "$file" ] || { echo "sweep: $file: no such sweep file" >&2; return 66; }
    while read -r kw rest || [ -n "$kw" ]; do
        n=$((n + 1))
        case $kw in
        ''|'#'*) ;;
        job) SWEEP_JOB=$rest ;;
        set) while read -r w; do [ -n "$w" ] && SWEEP_SETS+=(--set "$w"); done < <(sweep_words "$rest") ;;
        point) SWEEP_POINT_LINES+=("$n $rest") ;;
        *) echo "sweep: $file:$n: unknown directive '$kw' (job | set | point)" >&2; return 64 ;;
        esac
    done < "$file"
    [ -n "$SWEEP_JOB" ] || { echo "sweep: $file: no 'job FILE' line" >&2; return 64; }
    SWEEP_NPOINTS=${#SWEEP_POINT_LINES[@]}
    [ "$SWEEP_NPOINTS" -gt 0 ] || { echo "sweep: $file: no 'point RANKS LABEL' line" >&2; return 64; }
    SWEEP_FILE=$file
}

sweep_point() { # I (0-based)
    local i=$1 words=() w
    [ "$i" -ge 0 ] && [ "$i" -lt "$SWEEP_NPOINTS" ] ||
        { echo "sweep: $SWEEP_FILE has $SWEEP_NPOINTS points; there is no point $i" >&2; return 64; }
    while read -r w; do [ -n "$w" ] && words+=("$w"); done < <(sweep_words "${SWEEP_POINT_LINES[$i]}")
    local line=${words[0]}
    POINT_RANKS=${words[1]:-} POINT_LABEL=${words[2]:-} POINT_SETS=()
    case $POINT_RANKS in ''|*[!0-9]*|0)
        echo "sweep: $SWEEP_FILE:$line: 'point RANKS LABEL [KEY=VALUE...]' needs a rank count" >&2; return 64 ;;
    esac
    [ -n "$POINT_LABEL" ] || { echo "sweep: $SWEEP_FILE:$line: the point has no label" >&2; return 64; }
    for w in "${words[@]:3}"; do POINT_SETS+=(--set "$w"); done
}

# sweep_point_env DIR I LAUNCHER NODES RESTARTS: what the report needs that the run
# directory does not say (DIR/point.env, KEY=VALUE lines)
sweep_point_env() {
    { printf 'point=%s\n' "$2"; printf 'label=%s\n' "$POINT_LABEL"; printf 'ranks=%s\n' "$POINT_RANKS"
      printf 'launcher=%s\n' "$3"; printf 'nodes=%s\n' "$4"; printf 'restarts=%s\n' "$5"
      printf 'host=%s\n' "$(hostname -s)"; } > "$1/point.env"
}
