#!/bin/sh
# The README's test command, and CI's (.ci/run): builds everything and runs
# every test, in three build folders, one after the other:
#   build       RelWithDebInfo: every unit and integration test.
#   build-asan  AddressSanitizer + UndefinedBehaviorSanitizer, every target:
#               every unit test (daemon's included: worker, sender, spool,
#               metrics, results), then the integration tests labelled "asan"
#               (usviewd receiving, classifying, writing and sending results,
#               crash recovery, systemd, configuration checks; the sender)
#               against the sanitized programs. Any report of a sanitized
#               program started by those tests lands in
#               build-asan/sanitizer-logs/ and fails the run.
#   build-tsan  ThreadSanitizer: only the tests labelled "tsan" (worker pool,
#               sender, spool, metrics, storage SCP unit tests; usviewd
#               delivering results and obeying systemd); any report fails
#               the run. tests/tsan.supp holds suppressions for third-party
#               code only.
# Each phase prints its duration; the exit status is 1 if any phase failed.
# Usage: scripts/test.sh   (after scripts/install-deps.sh)
#   JOBS=N  build and test parallelism (default: nproc)
set -eu
cd "$(dirname "$0")/.."
ROOT=$(pwd)
JOBS="${JOBS:-$(nproc)}"
status=0
t_start=$(date +%s)
t_phase=$t_start

# done_phase NAME: prints how long the phase took
done_phase() {
	now=$(date +%s)
	echo "== $1: $((now - t_phase)) s (total $((now - t_start)) s) =="
	t_phase=$now
}

echo "== release build =="
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j "$JOBS"
done_phase "release build"
echo "== release build: unit and integration tests =="
ctest --test-dir build --output-on-failure -j "$JOBS" || status=1
done_phase "release tests"

echo "== AddressSanitizer + UBSan build =="
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DUSV_SANITIZE=ON -DUSV_UNIT_TESTS_ONLY=OFF
cmake --build build-asan -j "$JOBS"
done_phase "asan build"
echo "== AddressSanitizer + UBSan: unit tests =="
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	ctest --test-dir build-asan -L unit --output-on-failure -j "$JOBS" || status=1
echo "== AddressSanitizer + UBSan: usviewd integration tests =="
logs="$ROOT/build-asan/sanitizer-logs"
rm -rf "$logs"
mkdir -p "$logs"
# The programs run as children of the Python drivers: their reports go to
# files (log_path), checked below, so none can hide in a driver's capture.
ASAN_OPTIONS="detect_leaks=1:log_path=$logs/asan" \
	UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan" \
	ctest --test-dir build-asan -L asan --output-on-failure -j "$JOBS" || status=1
if [ -n "$(ls -A "$logs")" ]; then
	echo "sanitizer reports from the integration tests:"
	for f in "$logs"/*; do
		echo "--- $f"
		cat "$f"
	done
	status=1
fi
done_phase "asan tests"

echo "== ThreadSanitizer build (tests labelled tsan) =="
cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DUSV_TSAN=ON -DUSV_UNIT_TESTS_ONLY=ON
cmake --build build-tsan -j "$JOBS" --target usv_tsan_tests
done_phase "tsan build"
echo "== ThreadSanitizer: worker, sender, spool, metrics, SCP tests, usviewd =="
# OpenBLAS is not instrumented: the hand-over to its own threads (spin-waits
# on shared flags) and their accesses are invisible, so they can neither be
# checked nor cause reports; OPENBLAS_NUM_THREADS is left as the programs set
# it (no run needs it to be 1).
# Reports go to files (usviewd runs under the Python drivers), shown below.
logs="$ROOT/build-tsan/sanitizer-logs"
rm -rf "$logs"
mkdir -p "$logs"
TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$ROOT/tests/tsan.supp:log_path=$logs/tsan" \
	ctest --test-dir build-tsan -L tsan --output-on-failure -j "$JOBS" || status=1
if [ -n "$(ls -A "$logs")" ]; then
	echo "ThreadSanitizer reports:"
	for f in "$logs"/*; do
		echo "--- $f"
		cat "$f"
	done
	status=1
fi
done_phase "tsan tests"

exit $status
