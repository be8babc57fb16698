#!/bin/sh
# Builds everything and runs every test: the release build with unit and
# integration tests, then the ASan/UBSan build of the unit tests.
# Usage: scripts/test.sh   (after scripts/install-deps.sh)
set -eu
cd "$(dirname "$0")/.."
JOBS="${JOBS:-$(nproc)}"

cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j "$JOBS"

cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DUSV_SANITIZE=ON -DUSV_UNIT_TESTS_ONLY=ON
cmake --build build-asan -j "$JOBS"

status=0
echo "== sanitizer build: unit tests =="
ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	ctest --test-dir build-asan -L unit --output-on-failure -j "$JOBS" || status=1
echo "== release build: unit and integration tests =="
ctest --test-dir build --output-on-failure -j "$JOBS" || status=1
exit $status
