#!/usr/bin/env bash
# Fresh Debian 12 (as root): install dependencies, build, and run the whole test suite
# (unit, lint and integration tests through CTest).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
ctest --test-dir "${SERVE_BUILD_DIR:-build}" --output-on-failure -j "${SERVE_TEST_JOBS:-2}" "$@"
