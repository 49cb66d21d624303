#!/usr/bin/env bash
# Builds the unit tests with sanitizers and runs them (docs/sanitizers.md):
#   scripts/sanitize.sh address,undefined   # ASan+UBSan in ${SERVE_ASAN_BUILD_DIR:-build-asan}
#   scripts/sanitize.sh thread              # TSan in ${SERVE_TSAN_BUILD_DIR:-build-tsan}
# A build directory that is already configured keeps its settings. Extra arguments go to ctest.
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
cmake --build "$BUILD_DIR" -j "${SERVE_JOBS:-$(nproc)}" --target serve_unit_tests
built=$(date +%s)
# The gtest binaries only: the sdk_misuse_* compile checks use no sanitizer.
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "${SERVE_TEST_JOBS:-2}" -L unit \
  -E '^sdk_misuse_' "$@"
echo "sanitize.sh ($SANITIZE): build $((built - start)) s, tests $(($(date +%s) - built)) s"
