#!/bin/sh
# kernels.sh - builds and runs the kernel micro-benchmark (bench/kernels.c)
# against the nn kernel sources, with the same optimisation as the library.
# Usage: bench/kernels.sh [threads] [reps] [all|conv|fc]
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
cc -std=c11 -O2 -g -Wall -Wextra -Wno-unused-parameter -I"$src/nn/src" -I"$src/nn/include" \
	-I"$src/common/include" -o "$tmp/kernels" "$src/bench/kernels.c" "$src/nn/src/cpu.c" \
	"$src/nn/src/kern_winograd.c" "$src/nn/src/kern_bf16.c" "$src/nn/src/kern_bgemm.c" $(pkg-config --cflags --libs openblas) \
	-lpthread -lm
"$tmp/kernels" "${1:-1}" "${2:-3}" "${3:-all}"
