#!/usr/bin/env bash
# Fresh Debian 12 (as root): install dependencies, build, and run the whole test suite
# (unit, lint and integration tests through CTest). Then, unless SERVE_TEST_ASAN=0, build the
# unit tests of the parsers and network code (config, rpc, router, proxy) with ASan+UBSan in
# ${SERVE_ASAN_BUILD_DIR:-build-asan} and run them (docs/sanitizers.md: the whole unit suite
# under ASan does not fit CI's time budget).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
ctest --test-dir "${SERVE_BUILD_DIR:-build}" --output-on-failure -j "${SERVE_TEST_JOBS:-2}" "$@"
if [ "${SERVE_TEST_ASAN:-1}" != 0 ]; then
  SERVE_SANITIZE_TARGETS=${SERVE_SANITIZE_TARGETS:-serve_config_unit_tests serve_rpc_unit_tests \
serve_router_unit_tests serve_proxy_unit_tests} bash scripts/sanitize.sh address,undefined
fi
