#!/usr/bin/env bash
# The docs check: every relative link and every heading anchor (file.md#heading,
# #heading) in README.md, docs/**/*.md and the other READMEs resolves to an existing
# file and heading, and README.md stays a guide of at most 400 lines.
# Links are checked offline by remark-validate-links (an npm devDependency in web/,
# pinned by web/package-lock.json; `npm ci` in web/ installs it); external URLs are not
# fetched.
# Usage: scripts/check-docs.sh [FILE.md|DIR ...]   (default: the project's docs)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib.sh
. scripts/lib.sh
SAY_PREFIX="check-docs"

case "${1:-}" in
  -h|--help) sed -n '2,/^set /p' "$0" | grep '^#'; exit 0 ;;
esac

README_MAX_LINES=400
REMARK=web/node_modules/.bin/remark
[ -x "$REMARK" ] || die "$REMARK is missing: run (cd web && npm ci)"

if [ $# -gt 0 ]; then
  targets=("$@")
else
  targets=(README.md docs deploy/varnish/README.md certs/README.md)
fi

fail=0
lines=$(wc -l < README.md)
if [ "$lines" -gt "$README_MAX_LINES" ]; then
  say "README.md has $lines lines, more than $README_MAX_LINES: move reference material to docs/"
  fail=1
fi

# remark resolves its plugins from the working directory, so it runs in web/.
rel=()
for t in "${targets[@]}"; do rel+=("../$t"); done
if ! (cd web && node_modules/.bin/remark --use 'remark-validate-links=repository:false' \
        --frail --quiet --no-stdout --no-color "${rel[@]}"); then
  say "broken links or anchors (above)"
  fail=1
fi

[ "$fail" = 0 ] || exit 1
say "links and anchors resolve; README.md has $lines lines"
