#!/usr/bin/env bash
# Configures and builds serve into ./build (Release-like, warnings as errors for our code).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${SERVE_BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=${SERVE_BUILD_TYPE:-RelWithDebInfo} \
  -DSERVE_WERROR=${SERVE_WERROR:-ON} >/dev/null
cmake --build "$BUILD_DIR" -j "${SERVE_JOBS:-$(nproc)}"
