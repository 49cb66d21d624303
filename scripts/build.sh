#!/usr/bin/env bash
# Configures (once) and builds serve into ./build (Release-like, warnings as errors for our
# code). A build directory that is already configured keeps its settings; `cmake --build`
# re-runs the configuration by itself when a CMakeLists.txt changed.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${SERVE_BUILD_DIR:-build}
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=${SERVE_BUILD_TYPE:-RelWithDebInfo} \
    -DSERVE_WERROR=${SERVE_WERROR:-ON} >/dev/null
fi
cmake --build "$BUILD_DIR" -j "${SERVE_JOBS:-$(nproc)}"
