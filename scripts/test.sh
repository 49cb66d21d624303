#!/usr/bin/env bash
# Fresh Debian 12 (as root): install dependencies, build, and run the whole test suite
# (unit, lint and integration tests through CTest). Then, unless SERVE_TEST_ASAN=0, build the
# unit tests with ASan+UBSan in ${SERVE_ASAN_BUILD_DIR:-build-asan} and run them
# (docs/sanitizers.md).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
ctest --test-dir "${SERVE_BUILD_DIR:-build}" --output-on-failure -j "${SERVE_TEST_JOBS:-2}" "$@"
if [ "${SERVE_TEST_ASAN:-1}" != 0 ]; then
  bash scripts/sanitize.sh address,undefined
fi
