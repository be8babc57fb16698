#!/bin/sh
# engine.sh - builds bench/engine.c against a build tree's nn library and runs it.
# Usage: bench/engine.sh ARCH BATCH THREADS [ITERS] [BUILD_DIR (default build)]
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
bld=${5:-$src/build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
cc -std=c11 -O2 -Wall -Wextra -I"$src/nn/include" -I"$src/common/include" -o "$tmp/engine" \
	"$src/bench/engine.c" "$bld/nn/libusv_nn.a" "$bld/common/libusv_common.a" \
	$(pkg-config --libs openblas libcjson) -lpthread -lm
"$tmp/engine" "$1" "$2" "$3" "${4:-5}"
