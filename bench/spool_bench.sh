#!/bin/sh
# spool_bench.sh - builds and runs the spool benchmark (bench/spool_bench.c):
# claim and /metrics cost with a backlog, against the former directory
# listings, measured in the same run.
# Usage: bench/spool_bench.sh [DIR [DONE [INCOMING [OUTBOX]]]]
#   DIR: where to build the spool (default: a new directory under /tmp;
#   choose one on the file system of the real spool to measure that one).
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
cc -std=c11 -O2 -g -D_GNU_SOURCE -Wall -Wextra -I"$src/daemon" -I"$src/common/include" \
	-o "$tmp/spool_bench" "$src/bench/spool_bench.c" "$src/daemon/spool.c" \
	"$src/common/src/err.c" -lpthread
"$tmp/spool_bench" "$@"
