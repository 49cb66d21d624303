#!/usr/bin/env bash
# Fresh Debian 12 (as root): install dependencies, build, and run the quickstart application
# with `serve run` on the embedded default (no Redis). Query it from another terminal with
#   curl http://127.0.0.1:8000/
# and stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
echo
echo "Starting the quickstart. In another terminal try:"
echo "    curl http://127.0.0.1:8000/            # Hello world!"
echo "    curl 'http://127.0.0.1:8000/?name=Ann' # Hello Ann!"
echo "    build/bin/serve status"
echo "Press Ctrl-C to stop."
echo
exec build/bin/serve run quickstart:app --app-dir build/examples/quickstart
