#!/usr/bin/env bash
# gRPC noop benchmark (docs/benchmarks.md, "gRPC noop"): unary calls of benchnoop.Noop/Call
# (bench/protos/noop.proto) through the serve proxy's gRPC port to one replica
# (bench_grpc:noop), against a plain gRPC C++ callback server of the same service. The load is
# `grpc_bench load` (callback API, one channel, CONC calls in flight). Loopback only; the load
# runs on core $BENCH_LOAD_CPU (0), the system under test on $BENCH_SUT_CPU (1), via taskset.
#
#   bash bench/grpc.sh                # BENCH_DURATION=3 BENCH_CONCURRENCY="1 16" for less
#
# Environment: BENCH_DURATION=5 (seconds per run), BENCH_CONCURRENCY="1 16 64",
# BENCH_LOAD_CPU=0 BENCH_SUT_CPU=1, BENCH_BUILD_DIR=build, BENCH_SKIP_BUILD=1,
# BENCH_NO_DOCS=1 (do not append the table to docs/benchmarks.md).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD="${BENCH_BUILD_DIR:-build}"
D="${BENCH_DURATION:-5}"
CONC="${BENCH_CONCURRENCY:-1 16 64}"
LOAD_CPU="${BENCH_LOAD_CPU:-0}"
SUT_CPU="${BENCH_SUT_CPU:-1}"
BENCH="$BUILD/bin/grpc_bench"

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  ninja -C "$BUILD" grpc_bench bench_grpc serve serve-agent serve-controller serve-proxy \
    serve-replica >/dev/null
fi

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Retries the load's warm-up call for up to 60 s (the server may still be starting).
wait_serving() {
  for _ in $(seq 600); do
    if "$BENCH" load "$1" 1 0.01 >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "no gRPC server at $1" >&2
  return 1
}

ROWS=()
measure() {  # name address
  for c in $CONC; do
    read -r rps p50 p99 errors < <(taskset -c "$LOAD_CPU" "$BENCH" load "$2" "$c" "$D")
    ROWS+=("| $1 | $c | $rps | $p50 | $p99 | $errors |")
    echo "$1 c=$c: $rps calls/s, p50 $p50 ms, p99 $p99 ms, errors $errors"
  done
}

PLAIN_PORT="$(free_port)"
taskset -c "$SUT_CPU" "$BENCH" server "$PLAIN_PORT" &
PIDS+=($!)
wait_serving "127.0.0.1:$PLAIN_PORT"
measure "plain gRPC C++ callback server" "127.0.0.1:$PLAIN_PORT"
kill "${PIDS[0]}"

GRPC_PORT="$(free_port)"
cat > "$WORK/config.yaml" <<YAML
http_options: {host: 127.0.0.1, port: 0}
grpc_options: {port: $GRPC_PORT, grpc_servicer_functions: [benchnoop.Noop]}
logging_config: {enable_access_log: false}
applications:
  - {name: noop, route_prefix: /, import_path: "bench_grpc:noop"}
YAML
taskset -c "$SUT_CPU" "$BUILD/bin/serve" run "$WORK/config.yaml" --app-dir "$BUILD/bench" \
  --dashboard-port 0 --temp-dir "$WORK/serve" >"$WORK/serve.out" 2>&1 &
PIDS+=($!)
wait_serving "127.0.0.1:$GRPC_PORT"
measure "serve gRPC proxy -> noop replica" "127.0.0.1:$GRPC_PORT"
kill -INT "${PIDS[1]}"
wait "${PIDS[1]}" 2>/dev/null || true

TABLE="$(printf '%s\n' "| system | concurrency | calls/s | p50 ms | p99 ms | errors |" \
  "|---|---|---|---|---|---|" "${ROWS[@]}")"
echo "$TABLE"
if [[ "${BENCH_NO_DOCS:-0}" != 1 ]]; then
  {
    echo
    echo "#### gRPC noop, $(date -u +%Y-%m-%d) ($(nproc) cores, ${D}s per run)"
    echo
    echo "\`BENCH_DURATION=$D BENCH_CONCURRENCY=\"$CONC\" bash bench/grpc.sh\`"
    echo
    echo "$TABLE"
  } >> docs/benchmarks.md
fi
