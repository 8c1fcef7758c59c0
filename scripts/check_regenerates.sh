#!/usr/bin/env bash
# Regenerate the committed figures, REPORT.md and README's claims table in a scratch copy of results/, with the
# bnexp of the checkout given (default: this one), and say whether anything but REPORT.md's "Generated" line
# changed. A refactor that means to change nothing must print "regenerate identical". With BASE=<commit>, the
# export (CSV) and `list --json` of the committed results, which are not committed themselves, are also compared
# with that commit's.
#   scripts/check_regenerates.sh [CHECKOUT]        # PY=path/to/python to use another environment
#   BASE=2d0b335 scripts/check_regenerates.sh
set -euo pipefail
repo=$(cd "${1:-$(dirname "$0")/..}" && pwd)
py=$(command -v "${PY:-python}")
py=$(cd "$(dirname "$py")" && pwd)/$(basename "$py")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cp -r "$repo/results" "$out/results"
cp "$repo/README.md" "$out/README.md"
cd "$out"
PYTHONPATH="$repo" "$py" -m bnexp plot results >/dev/null
PYTHONPATH="$repo" "$py" -m bnexp report results --readme README.md >/dev/null
diff -r -I '^Generated ' "$repo/results" "$out/results" && diff "$repo/README.md" "$out/README.md"
if [ -n "${BASE:-}" ]; then
    git -C "$repo" worktree add -q "$out/base" "$BASE"
    for side in base new; do
        code=$([ "$side" = base ] && echo "$out/base" || echo "$repo")
        PYTHONPATH="$code" "$py" -m bnexp export "$repo/results" --csv "$out/csv-$side" >/dev/null 2>&1
        PYTHONPATH="$code" "$py" -m bnexp list "$repo/results" --json >"$out/list-$side.json" 2>/dev/null
    done
    git -C "$repo" worktree remove --force "$out/base"
    diff -r "$out/csv-base" "$out/csv-new" && diff "$out/list-base.json" "$out/list-new.json"
fi
echo "regenerate identical"
