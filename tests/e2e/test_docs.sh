#!/usr/bin/env bash
# The documentation stays true to the program and self-contained:
#  - docs/config.md is exactly what `mpitrain help config --markdown` prints (`make docs`);
#  - README.md is the front page: at most 250 lines;
#  - no file of the repository points to documents outside it (the founders' design
#    notes and machine notes that a clone does not have): docs/design.md is the design;
#  - every relative link in README.md and docs/*.md names a file (and heading) that exists.
source "$(dirname "$0")/lib.sh"

note "docs/config.md against mpitrain help config --markdown"
[ -f docs/config.md ] || fail "docs/config.md is missing: run make docs"
"$MPITRAIN" help config --markdown > "$WORK/config.md"
if ! diff -u docs/config.md "$WORK/config.md" > "$WORK/config.diff"; then
    head -n 40 "$WORK/config.diff" >&2
    fail "docs/config.md differs from \`mpitrain help config --markdown\`: run make docs"
fi

note "README.md length"
lines=$(wc -l < README.md)
[ "$lines" -le 250 ] || fail "README.md has $lines lines (at most 250: move detail into docs/)"

note "no references to documents outside the repository"
# The patterns are spelled with a bracket so that this file does not match itself.
pat='\.\./shar[e]d|shar[e]d/[A-Z]|DESIG[N]\.md|DESIG[N] §|MACHINE-FACT[S]|USER-PAI[N]|/wor[k]/'
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    list_files() { git ls-files -z --cached --others --exclude-standard; }
else # a copy without .git: everything but build outputs, data and runs
    list_files() {
        find . \( -name .git -o -path ./build -o -path './build-*' -o -path ./data \
                  -o -path ./runs \) -prune -o -type f -print0
    }
fi
hits=$(list_files | xargs -0 grep -nIE -- "$pat" 2>/dev/null || true)
[ -z "$hits" ] || { echo "$hits" >&2; fail "files refer to documents outside the repository (use docs/design.md)"; }

note "relative links and anchors in README.md and docs/"
# GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens
anchors() { sed -n 's/^#\{1,6\} //p' "$1" | LC_ALL=C tr 'A-Z' 'a-z' | LC_ALL=C sed 's/[^a-z0-9 _-]//g; s/ /-/g'; }
for md in README.md docs/*.md; do
    dir=$(dirname "$md")
    for link in $(grep -oE '\]\([^)[:space:]]+\)' "$md" | sed -E 's/^\]\(//; s/\)$//'); do
        case $link in http://*|https://*|mailto:*) continue ;; esac
        target=${link%%#*}; anchor=""
        [ "$target" != "$link" ] && anchor=${link#*#}
        if [ -z "$target" ]; then file=$md; else file=$dir/$target; fi
        [ -e "$file" ] || fail "$md links to $target, which does not exist"
        if [ -n "$anchor" ] && [ "${file%.md}" != "$file" ]; then
            anchors "$file" | grep -qxF -- "$anchor" || fail "$md links to $link: no such heading in $file"
        fi
    done
done
echo "docs ok"
