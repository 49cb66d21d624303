#!/usr/bin/env bash
# Builds the unit tests with sanitizers and runs them (docs/sanitizers.md):
#   scripts/sanitize.sh address,undefined   # ASan+UBSan in ${SERVE_ASAN_BUILD_DIR:-build-asan}
#   scripts/sanitize.sh thread              # TSan in ${SERVE_TSAN_BUILD_DIR:-build-tsan}
# A build directory that is already configured keeps its settings. Extra arguments go to ctest.
# SERVE_SANITIZE_TARGETS (default serve_unit_tests: all of them) names the unit-test binaries
# to build; the tests of binaries not built are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
SANITIZE=${1:?usage: scripts/sanitize.sh address,undefined|thread [ctest args...]}
shift
case "$SANITIZE" in
  thread) BUILD_DIR=${SERVE_TSAN_BUILD_DIR:-build-tsan} ;;
  *) BUILD_DIR=${SERVE_ASAN_BUILD_DIR:-build-asan} ;;
esac
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSERVE_WERROR=ON \
    -DSERVE_SANITIZE="$SANITIZE" -DSERVE_BUILD_BENCH=OFF >/dev/null
fi
start=$(date +%s)
# shellcheck disable=SC2086
cmake --build "$BUILD_DIR" -j "${SERVE_JOBS:-$(nproc)}" --target ${SERVE_SANITIZE_TARGETS:-serve_unit_tests}
built=$(date +%s)
# The gtest binaries only (the sdk_misuse_* compile checks use no sanitizer; <target>_NOT_BUILT
# stands for a binary not built).
# Under TSan, the tests that run gRPC servers and channels in-process are left out: Debian's
# libgrpc (and the libabsl under it) is not instrumented, and TSan reports the races between
# accesses that gRPC orders inside itself (docs/sanitizers.md).
exclude='^sdk_misuse_|_NOT_BUILT$'
[ "$SANITIZE" = thread ] && exclude="$exclude|^GrpcAuthTest\.|^RouterMetrics(Failure)?Test\."
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "${SERVE_TEST_JOBS:-2}" -L unit \
  -E "$exclude" "$@"
echo "sanitize.sh ($SANITIZE): build $((built - start)) s, tests $(($(date +%s) - built)) s"
