#!/bin/sh
# harvest.sh - usview harvest on a 500-image phantom archive (Philips EPIQ
# geometry, typed view text, unannotated and unmappable images, measurements,
# labels in attributes) on 2 threads with OCR: images per second against the
# target of 20, where the time goes (decode, OCR, calipers, mapping: sums of
# the per-image stage timings over both threads) and the accuracy against the
# phantom's annotations.csv (bench/harvest_score.py). Besides the wall clock it
# prints the CPU time per image and the rate that gives on 2 idle cores: on a
# loaded machine the wall-clock rate understates the program.
# Usage: bench/harvest.sh [BUILD_DIR [IMAGES]]   (default: build, 500)
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build}
n=${2:-500}
usview=$build/cli/usview
[ -x "$usview" ] || { echo "harvest.sh: $usview: not built" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
studies=$(( (n + 10) / 11 ))
"$usview" phantom --out "$tmp/arch" --studies "$studies" --manufacturer philips --seed "${SEED:-17}" \
	--unannotated 0.08 --unmappable 0.08 --measurements 0.2 --attr-labels 0.3 >/dev/null
# exactly n images: drop the last study's extra ones from the truth and the archive
/usr/bin/python3 - "$tmp/arch" "$n" <<'PY'
import csv, os, sys
arch, n = sys.argv[1], int(sys.argv[2])
with open(os.path.join(arch, "annotations.csv"), newline="") as f:
    rows = list(csv.DictReader(f))
for r in rows[n:]:
    os.unlink(os.path.join(arch, r["path"]))
with open(os.path.join(arch, "annotations.csv"), "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
    w.writeheader()
    w.writerows(rows[:n])
PY
/usr/bin/python3 "$src/bench/harvest_score.py" "$usview" "$tmp/arch" "$tmp"
