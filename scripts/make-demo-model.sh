#!/bin/sh
# make-demo-model.sh - build the phantom demo view classifier (MobileNet v1 head)
#
# usage: scripts/make-demo-model.sh [-b BUILD_DIR] [-o MODEL] [-s STUDIES]
#
# 1. imports the MobileNet v1 embedding extractor (shared/models/mobilenet)
#    with `usview import-tflite`;
# 2. writes a labelled phantom training set (`usview phantom`, STUDIES
#    studies x 11 views, Philips and Toshiba alternating) and a held-out set
#    of other studies;
# 3. trains the mobilenet preset head (1024 -> 256 -> 11) on it;
# 4. prints `usview eval` on the held-out set.
# The model (about 14 MB) goes to MODEL (default BUILD_DIR/demo-views.usvm);
# nothing is written into the source tree. Environment: USVIEW (the usview
# binary), USV_SHARED_DIR (default ../shared next to the source tree).
set -eu

here=$(cd "$(dirname "$0")/.." && pwd)
build="$here/build"
out=""
studies=24
while getopts b:o:s: opt; do
	case $opt in
	b) build=$OPTARG ;;
	o) out=$OPTARG ;;
	s) studies=$OPTARG ;;
	*) echo "usage: $0 [-b BUILD_DIR] [-o MODEL] [-s STUDIES]" >&2; exit 2 ;;
	esac
done
usview=${USVIEW:-$build/cli/usview}
shared=${USV_SHARED_DIR:-$here/../shared}
out=${out:-$build/demo-views.usvm}
extractor="$shared/models/mobilenet/mobilenet_v1_1.0_224_quant_embedding_extractor.tflite"

[ -x "$usview" ] || { echo "make-demo-model: $usview not found (build first)" >&2; exit 1; }
[ -f "$extractor" ] || { echo "make-demo-model: $extractor not found" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/usv-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT INT TERM

echo "== importing MobileNet v1 embedding extractor"
"$usview" import-tflite "$extractor" --name "MobileNet v1 1.0 224 embedding extractor" \
	-o "$work/mobilenet.usvm"
echo "== phantom: $studies training studies, 6 held-out studies"
"$usview" phantom --out "$work/train" --studies "$studies" --seed 2016
"$usview" phantom --out "$work/test" --studies 6 --seed 2016 --first-study 100000
echo "== training the view head"
mkdir -p "$(dirname "$out")"
"$usview" train --preset mobilenet --backbone "$work/mobilenet.usvm" \
	--data "$work/train/labels.csv" --val-fraction 0.15 --seed 2016 \
	--cache "$work/cache" --name "usview abdominal views (phantom demo)" -o "$out"
echo "== held-out phantom studies"
"$usview" eval -m "$out" --data "$work/test/labels.csv"
echo "demo model: $out"
