#!/usr/bin/env bash
# HTTPS vs plain HTTP at the proxy, side by side in one run (docs/benchmarks.md, "TLS at the
# proxy"): two `serve run`s of bench_apps:noop, one with http_options.ssl_* (certificates made
# here with the openssl CLI), wrk -t1 over keep-alive connections against each in turn,
# BENCH_ROUNDS rounds. CPU-µs per request = utime+stime of the instance's processes during the
# run / requests. Loopback only, bounded in time.
#
#   bash bench/tls.sh        # BENCH_DURATION=3 BENCH_ROUNDS=2 BENCH_CONCURRENCY=16
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${SERVE_BIN_DIR:-$ROOT/build/bin}
APP_DIR=${BENCH_APP_DIR:-$ROOT/build/bench}
DUR=${BENCH_DURATION:-3}
ROUNDS=${BENCH_ROUNDS:-2}
CONC=${BENCH_CONCURRENCY:-16}
TMP=$(mktemp -d /tmp/serve-tls-bench.XXXXXX)
cleanup() {  # Ctrl-C each `serve run`, then SIGKILL whatever of this run's instances is left
  local p
  for p in $(cat "$TMP/pids" 2>/dev/null); do kill -INT "$p" 2>/dev/null || true; done
  for p in $(cat "$TMP/pids" 2>/dev/null); do timeout 30 tail --pid="$p" -f /dev/null || true; done
  for p in $(grep -l -- "$TMP/" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do
    kill -9 "$p" 2>/dev/null || true
  done
  rm -rf "$TMP"
}
trap cleanup EXIT

cd "$TMP"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key \
  -out ca.pem -days 1 -subj /CN=bench-ca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key \
  -out server.csr -subj /CN=127.0.0.1 2>/dev/null
echo "subjectAltName=IP:127.0.0.1" > ext.cnf
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
  -days 1 -extfile ext.cnf 2>/dev/null

# start NAME EXTRA_HTTP_OPTIONS: prints the port once the app is ready.
start() {
  local name=$1 extra=$2 port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  printf 'http_options: {host: 127.0.0.1, port: %s%s}\napplications:\n  - {name: noop, route_prefix: /, import_path: "bench_apps:noop"}\n' \
    "$port" "$extra" > "$name.yaml"
  "$BIN/serve" run "$name.yaml" --app-dir "$APP_DIR" --dashboard-port 0 --temp-dir "$TMP/$name" \
    > "$name.out" 2>&1 &
  echo $! >> "$TMP/pids"
  for _ in $(seq 600); do
    grep -q "is ready at" "$name.out" && { echo "$port"; return; }
    sleep 0.1
  done
  cat "$name.out" >&2; exit 1
}
cpu_ticks() {  # utime+stime of every process of the instance under $1
  local total=0 p
  for p in $(grep -l -- "$1" /proc/[0-9]*/cmdline 2>/dev/null | cut -d/ -f3); do
    total=$((total + $(awk '{print $14+$15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$total"
}
HTTP_PORT=$(start plain "")
HTTPS_PORT=$(start tls ", ssl_keyfile: $TMP/server.key, ssl_certfile: $TMP/server.pem")
[[ $(curl -s -m 2 "http://127.0.0.1:$HTTP_PORT/") == ok ]]
[[ $(curl -s -m 2 --cacert ca.pem "https://127.0.0.1:$HTTPS_PORT/") == ok ]]
HZ=$(getconf CLK_TCK)
printf '%-6s %-5s %10s %8s %8s %10s\n' variant round rps p50 p99 cpu_us/req
for r in $(seq "$ROUNDS"); do
  for v in plain tls; do
    if [[ $v == plain ]]; then url="http://127.0.0.1:$HTTP_PORT/"; else url="https://127.0.0.1:$HTTPS_PORT/"; fi
    before=$(cpu_ticks "$TMP/$v")
    out=$(wrk -t1 -c"$CONC" -d"${DUR}s" --latency "$url")
    after=$(cpu_ticks "$TMP/$v")
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    cpu=$(awk -v t=$((after - before)) -v hz="$HZ" -v n="$reqs" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
    printf '%-6s %-5s %10s %8s %8s %10s\n' "$v" "$r" "$rps" "$p50" "$p99" "$cpu"
  done
done
