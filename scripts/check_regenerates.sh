#!/usr/bin/env bash
# Regenerate the committed figures, REPORT.md and README's claims table in a scratch copy of results/, with the
# bnexp of the checkout given (default: this one), and say whether anything but REPORT.md's "Generated" line
# changed. A refactor that means to change nothing must print "regenerate identical".
#   scripts/check_regenerates.sh [CHECKOUT]        # PY=path/to/python to use another environment
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
diff -r -I '^Generated ' "$repo/results" "$out/results" && diff "$repo/README.md" "$out/README.md" \
    && echo "regenerate identical"
