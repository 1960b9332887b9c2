#!/usr/bin/env bash
# Makes .anchor/: a git-ignored copy of ../shared/bench (the FlashMLA anchor, the cases files and
# compare.py), so that it can travel to the GPU machine with the checkout and the bundle.
#
#   scripts/prepare-anchor.sh [SOURCE]     SOURCE defaults to ../shared/bench beside the checkout
#
# Then, on the GPU machine (with .anchor and bundle carried along):
#   scripts/gpu-validate.sh anchor
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source=${1:-$root/../shared/bench}

for f in anchor/run.sh anchor/bench_flashmla.py cases/throughput.json cases/latency.json compare.py; do
  if [ ! -f "$source/$f" ]; then
    echo "error: $source/$f not found; give the folder of the shared bench (default ../shared/bench)" >&2
    exit 2
  fi
done

# Ignore the folder first, so that it never shows up as untracked. The exclude file lives in the
# common git directory, which also serves a worktree's checkout.
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
if ! grep -qxF '/.anchor/' "$exclude" 2>/dev/null; then
  echo '/.anchor/' >>"$exclude"
fi

rm -rf .anchor
mkdir .anchor
cp -R "$source/." .anchor/
chmod +x .anchor/anchor/run.sh

if ! git check-ignore -q .anchor/cases/throughput.json; then
  echo "error: .anchor/ is not ignored by git (check $exclude)" >&2
  exit 1
fi
echo "== .anchor/ from $(cd "$source" && pwd): $(du -sh .anchor | cut -f1), $(find .anchor -type f | wc -l) files, ignored through $exclude"
echo "   carry it with the bundle (carry: [\".anchor\", \"bundle\"]) and run: scripts/gpu-validate.sh anchor"
