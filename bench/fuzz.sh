#!/bin/sh
# fuzz.sh - builds the libFuzzer harnesses of tests/fuzz and runs them.
#
#   sh bench/fuzz.sh [-t SECONDS] [-j JOBS] [-b BUILDDIR] [-o OUTDIR] [HARNESS...]
#
# Configures BUILDDIR (default build-fuzz-clang) with clang and USV_FUZZ=ON
# (every library instrumented, AddressSanitizer + UBSan), builds the target
# usv_fuzz, then runs each HARNESS (default: all of tests/fuzz/fuzz_*.c[pp])
# for SECONDS (default 60) of wall time with JOBS (default 1) libFuzzer jobs.
# Each run starts from a fresh copy of tests/fuzz/corpus/<harness>/ plus
# tests/fuzz/regressions/<harness>/ in OUTDIR/<harness>/corpus (default
# OUTDIR: BUILDDIR/fuzz-out), so the committed corpus is never rewritten;
# crash, leak and timeout reproducers land in OUTDIR/<harness>/ (crash-*,
# leak-*, timeout-*, oom-*), the log in OUTDIR/<harness>/log. Per harness it
# prints the last libFuzzer status line (execs, cov, ft, corp, exec/s, rss)
# and the reproducers found; the exit status is 1 when any harness found one.
#
# The one-CPU-hour run per harness of docs/testing.md:
#   sh bench/fuzz.sh -t 3600
# Minimising a grown corpus back into the tree (then review and commit):
#   BUILDDIR/tests/fuzz/fuzz_H -merge=1 tests/fuzz/corpus/H.new OUTDIR/H/corpus
# A reproducer of a fixed bug goes to tests/fuzz/regressions/<harness>/,
# where the ctest fuzz_replay_<harness> replays it in every build.
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SECS=60
JOBS=1
BUILD=build-fuzz-clang
OUT=
while getopts t:j:b:o: opt; do
	case $opt in
	t) SECS=$OPTARG ;;
	j) JOBS=$OPTARG ;;
	b) BUILD=$OPTARG ;;
	o) OUT=$OPTARG ;;
	*)
		sed -n '2,22p' "$0"
		exit 2
		;;
	esac
done
shift $((OPTIND - 1))
OUT=${OUT:-$ROOT/$BUILD/fuzz-out}

if [ $# -eq 0 ]; then
	set -- $(cd tests/fuzz && ls fuzz_*.c fuzz_*.cpp 2>/dev/null | sed 's/^fuzz_//; s/\.cpp$//; s/\.c$//' |
		grep -v '^common$' | sort -u)
fi

launcher=""
if command -v ccache >/dev/null 2>&1; then
	launcher="-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache"
fi
# shellcheck disable=SC2086
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
	-DCMAKE_CXX_COMPILER=clang++ -DUSV_FUZZ=ON -DUSV_UNIT_TESTS_ONLY=ON $launcher >/dev/null
targets=""
for h in "$@"; do
	targets="$targets fuzz_$h"
done
# shellcheck disable=SC2086
cmake --build "$BUILD" -j "$(nproc)" --target $targets

found=0
for h in "$@"; do
	bin="$ROOT/$BUILD/tests/fuzz/fuzz_$h"
	dir="$OUT/$h"
	rm -rf "$dir"
	mkdir -p "$dir/corpus"
	for src in tests/fuzz/corpus/$h tests/fuzz/regressions/$h; do
		if [ -d "$src" ]; then
			find "$src" -maxdepth 1 -type f -exec cp {} "$dir/corpus/" \;
		fi
	done
	echo "== $h: $SECS s, $JOBS job(s)"
	# -rss_limit_mb: the readers cap their inputs well below this; -timeout:
	# no single input may take 25 s. detect_leaks: every harness frees all.
	par=""
	if [ "$JOBS" -gt 1 ]; then
		par="-jobs=$JOBS -workers=$JOBS"
	fi
	# shellcheck disable=SC2086
	(cd "$dir" && ASAN_OPTIONS=detect_leaks=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		"$bin" -max_total_time="$SECS" $par -timeout=25 \
		-rss_limit_mb=4096 -max_len=1048576 -print_final_stats=1 \
		-artifact_prefix="$dir/" corpus >"$dir/log" 2>&1) || true
	if [ "$JOBS" -gt 1 ]; then
		cat "$dir"/fuzz-*.log >>"$dir/log" 2>/dev/null || true
	fi
	grep -E '^#[0-9]+' "$dir/log" | tail -1 || true
	grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' "$dir/log" || true
	repro=$(find "$dir" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | sort)
	if [ -n "$repro" ]; then
		found=1
		echo "$h: reproducers:"
		echo "$repro"
		grep -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error' "$dir/log" | head -5 || true
	fi
done
exit $found
