#!/bin/sh
# ocr_bench.sh - builds and runs the annotation benchmark (bench/ocr_bench.c):
# annotation areas, Tesseract OCR of every area and caliper search on
# EPIQ-like 1024 x 768 frames, on 1 and 2 threads.
# Usage: bench/ocr_bench.sh [FRAMES [THREADS]]
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
cc -std=c11 -O2 -g -D_POSIX_C_SOURCE=200809L -Wall -Wextra -I"$src/cli" \
	-I"$src/label/include" -I"$src/image/include" -I"$src/common/include" \
	-o "$tmp/ocr_bench" "$src/bench/ocr_bench.c" "$src/label/src/ocr.c" \
	"$src/label/src/annot.c" "$src/image/src/crop.c" "$src/cli/font5x7.c" \
	$(pkg-config --cflags --libs tesseract lept) -lpthread -ldl -lm
"$tmp/ocr_bench" "$@"
