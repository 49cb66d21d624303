#!/usr/bin/env bash
# Fresh Debian 12 (as root): install dependencies, build, and run the quickstart application
# with `serve run` on the embedded default (no Redis). Query it from another terminal with
#   curl http://127.0.0.1:8000/
# and stop it with Ctrl-C. $SERVE_HTTP_PORT / $SERVE_DASHBOARD_PORT pick other ports.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${SERVE_BUILD_DIR:-build}
bash scripts/install-deps.sh
bash scripts/build.sh
PORT=${SERVE_HTTP_PORT:-8000}
echo
echo "Starting the quickstart. In another terminal try:"
echo "    curl http://127.0.0.1:$PORT/            # Hello world!"
echo "    curl 'http://127.0.0.1:$PORT/?name=Ann' # Hello Ann!"
echo "    $BUILD_DIR/bin/serve status"
echo "Press Ctrl-C to stop."
echo
exec "$BUILD_DIR/bin/serve" run quickstart:app --app-dir "$BUILD_DIR/examples/quickstart"
