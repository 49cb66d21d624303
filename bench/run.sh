#!/usr/bin/env bash
# The benchmark script (see docs/benchmarks.md). Loopback only, bounded in time.
# Not run here: the controller benchmarks, build/bin/bench_controller_loop (bench/controller_loop.cc)
# and python3 bench/autoscale_reaction.py (docs/benchmarks.md, "Controller and autoscaling").
#
#   bash bench/run.sh                 # BENCH_DURATION=3 bash bench/run.sh for a quicker run
#
# The load generator (wrk, the ping-pong client) runs on core $BENCH_LOAD_CPU (0) and the
# system under test, all of its processes, on core $BENCH_SUT_CPU (1), both via taskset.
# Baselines run in the same invocation:
#   HTTP noop   serve proxy -> 1 noop replica | the same with metrics off (SERVE_METRICS_ENABLED=0)
#               | nginx (1 worker, upstream keep-alive) -> Beast backend | Beast backend alone;
#               wrk -t1 -c{1,16,64,256} --latency
#   streaming   50 chunks of 20 bytes: direct Beast chunked output | nginx -> Beast (reference)
#               | serve proxy -> bench_stream:app (when it builds and the proxy streams it)
#   handles     raw Asio TCP ping-pong (sequential RTT, batches of 100 in flight) | serve
#               DeploymentHandle calls, ingress replica -> Pong replica (bench_handles:app),
#               same pattern (reported as not supported when that app does not build/run).
#               Each in two placements, compared like with like: everything on the SUT core
#               (the ping-pong client too), and spread over both cores (ping-pong client on the
#               load core; serve processes allowed on both)
# CPU-µs per request = (utime+stime of every process of the system under test, from
# /proc/<pid>/stat, after - before the wrk run) / requests completed.
# Prints a table and appends the command, machine facts and the numbers to docs/benchmarks.md.
#
# Environment:
#   BENCH_DURATION=5           seconds per wrk run
#   BENCH_ROUNDS=3             rounds of the HTTP noop runs (the table shows medians over the
#                              rounds that other jobs did not disturb, and the rps range)
#   BENCH_CONCURRENCY="1 16 64 256"        HTTP noop concurrencies
#   BENCH_STREAM_CONCURRENCY="1 16 64 256" streaming concurrencies
#   BENCH_LOAD_CPU=0 BENCH_SUT_CPU=1       cores
#   BENCH_NGINX_KEEPALIVE=64   idle upstream connections nginx keeps (above this concurrency
#                              nginx opens and closes backend connections per request)
#   BENCH_PROFILE=1            perf record (dwarf call graphs) of serve-proxy, serve-replica and
#                              serve-agent under c=64 load, an extra unmeasured run, summarised
#                              by bench/perf_categories.py (skipped when perf is missing)
#   BENCH_STREAM_APP=mod:app   another streaming deployment (GET / -> 50 chunks of 20 bytes) to
#                              measure through the proxy instead of bench_stream:app;
#                              BENCH_STREAM_APP_DIR (default build/bench) finds it
#   BENCH_QUIET_WAIT=10 BENCH_QUIET_BUDGET=60  before each run, wait (at most this long per
#                              run / in all) for other jobs to leave the two cores idle
#   BENCH_BUILD_DIR=build      BENCH_SKIP_BUILD=1 skips building, BENCH_SKIP_INSTALL=1 apt
#   BENCH_NO_DOCS=1            do not append to docs/benchmarks.md
#   BENCH_KEEP=1               keep the work directory (logs, wrk outputs, perf.data)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD="${BENCH_BUILD_DIR:-build}"
D="${BENCH_DURATION:-5}"
CONC="${BENCH_CONCURRENCY:-1 16 64 256}"
STREAM_CONC="${BENCH_STREAM_CONCURRENCY:-$CONC}"
LOAD_CPU="${BENCH_LOAD_CPU:-0}"
SUT_CPU="${BENCH_SUT_CPU:-1}"
PROFILE="${BENCH_PROFILE:-1}"
ROUNDS="${BENCH_ROUNDS:-3}"
NGINX_KEEPALIVE="${BENCH_NGINX_KEEPALIVE:-64}"
DOCS="$ROOT/docs/benchmarks.md"
WAIT_S=30
COMMAND_LINE="BENCH_DURATION=$D bash bench/run.sh${*:+ $*}"
[[ -n "${BENCH_NGINX_KEEPALIVE:-}" ]] && COMMAND_LINE="BENCH_NGINX_KEEPALIVE=$NGINX_KEEPALIVE $COMMAND_LINE"
[[ -n "${BENCH_ROUNDS:-}" ]] && COMMAND_LINE="BENCH_ROUNDS=$ROUNDS $COMMAND_LINE"
[[ -n "${BENCH_CONCURRENCY:-}" ]] && COMMAND_LINE="BENCH_CONCURRENCY='$CONC' $COMMAND_LINE"
[[ -n "${BENCH_STREAM_APP:-}" ]] && COMMAND_LINE="BENCH_STREAM_APP=$BENCH_STREAM_APP $COMMAND_LINE"
[[ "$PROFILE" != 1 ]] && COMMAND_LINE="BENCH_PROFILE=$PROFILE $COMMAND_LINE"

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

# ------------------------------------------------------------------ dependencies

install_deps() {
  local need=()
  have_pkg wrk || need+=(wrk)
  have_pkg curl || need+=(curl)
  { have_pkg nginx || have_pkg nginx-light; } || need+=(nginx-light)
  if ((${#need[@]})); then
    log "installing ${need[*]}"
    apt_install "${need[@]}" || die "cannot install ${need[*]}"
  fi
  if [[ $PROFILE == 1 ]] && ! command -v perf >/dev/null; then
    have_pkg linux-perf || { log "installing linux-perf (optional)"; apt_install linux-perf || log "linux-perf not installable; no profile"; }
  fi
}
[[ "${BENCH_SKIP_INSTALL:-0}" == 1 ]] || install_deps
command -v wrk >/dev/null || die "wrk missing"
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
[[ -x "$NGINX" ]] || die "nginx missing"
command -v taskset >/dev/null || die "taskset missing (util-linux)"
(($(nproc) >= 2)) || die "needs 2 cores (load generator and system under test pinned apart)"

# ------------------------------------------------------------------ build

HAVE_STREAM_APP=0
HAVE_HANDLE_APP=0
if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  [[ -f "$BUILD/build.ninja" ]] || cmake -S . -B "$BUILD" -G Ninja >/dev/null
  log "building the bench targets in $BUILD"
  BUILD_LOG="$(mktemp /tmp/bench-build.XXXXXX)"
  ok=0
  for attempt in 1 2 3; do
    if ninja -C "$BUILD" -j2 beast_backend asio_pingpong bench_apps serve serve-agent \
      serve-controller serve-proxy serve-replica >"$BUILD_LOG" 2>&1; then
      ok=1
      break
    fi
    tail -5 "$BUILD_LOG" >&2
    ((attempt < 3)) && log "build attempt $attempt failed (another build may hold the lock); retrying in 30 s" && sleep 30
  done
  ((ok)) || { rm -f "$BUILD_LOG"; die "build failed"; }
  # Apps that need newer SDK features: a failure only drops their rows.
  if ninja -C "$BUILD" -j2 bench_handles >"$BUILD_LOG" 2>&1; then HAVE_HANDLE_APP=1; else
    log "bench_handles does not build (no DeploymentHandle?): handle calls not measured"
  fi
  if ninja -C "$BUILD" -j2 bench_stream >"$BUILD_LOG" 2>&1; then HAVE_STREAM_APP=1; else
    log "bench_stream does not build (no serve::Stream?): streaming through the proxy not measured"
  fi
  rm -f "$BUILD_LOG"
else
  [[ -f "$BUILD/bench/libbench_handles.so" ]] && HAVE_HANDLE_APP=1
  [[ -f "$BUILD/bench/libbench_stream.so" ]] && HAVE_STREAM_APP=1
fi
BUILD_ABS="$(cd "$BUILD" && pwd)"
BIN="$BUILD_ABS/bin"
for b in serve serve-proxy serve-replica beast_backend asio_pingpong; do
  [[ -x "$BIN/$b" ]] || die "$BIN/$b missing"
done
[[ -f "$BUILD_ABS/bench/libbench_apps.so" ]] || die "$BUILD/bench/libbench_apps.so missing"

# ------------------------------------------------------------------ process bookkeeping

bench_workdir
bench_traps

snapshot_build "$BUILD_ABS" serve serve-agent serve-controller serve-proxy serve-replica beast_backend \
  asio_pingpong

# perf report --stdio without comments, padding and the empty call-graph columns.
perf_clean() {
  sed -E '/^#/d; /^[[:space:]]*$/d; s/[[:space:]]+-[[:space:]]+-[[:space:]]*$//; s/[[:space:]]+$//' | cut -c1-170
}

# ------------------------------------------------------------------ baselines: nginx -> Beast, Beast alone

start_backend() {
  local out="$WORK/backend.out"
  taskset -c "$SUT_CPU" "$BIN/beast_backend" 0 >"$out" 2>"$WORK/backend.err" &
  BACKEND_PID=$!
  STARTED[$BACKEND_PID]=plain
  BACKEND_PORT=$(wait_line "$out") || die "beast_backend did not report its port"
  wait_http "http://127.0.0.1:$BACKEND_PORT/" "$BACKEND_PID" || die "beast_backend not answering"
}

start_nginx() {
  local dir="$WORK/nginx"
  mkdir -p "$dir"
  NGINX_PORT=$(free_port)
  cat >"$dir/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process on;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  keepalive_requests 1000000;
  upstream backend {
    server 127.0.0.1:$BACKEND_PORT;
    keepalive $NGINX_KEEPALIVE;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$NGINX_PORT;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
    location /stream {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }
  }
}
EOF
  taskset -c "$SUT_CPU" "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e "$dir/error.log" \
    >"$dir/stdout" 2>&1 &
  NGINX_PID=$!
  STARTED[$NGINX_PID]=nginx
  wait_http "http://127.0.0.1:$NGINX_PORT/" "$NGINX_PID" ||
    { cat "$dir/stdout" "$dir/error.log" >&2 2>/dev/null; die "nginx not answering"; }
}

check_stream() {  # URL: must be chunked with 50 chunks of 20 bytes
  local raw="$WORK/stream_check.txt"
  curl -s -m 5 -D "$raw.h" -o "$raw" "$1" || return 1
  grep -qi '^transfer-encoding: *chunked' "$raw.h" && [[ $(wc -c <"$raw") == 1000 ]]
}

# start_serve IMPORT_PATH APP_DIR NAME [MUST=1]: sets SERVE_PID, SERVE_PORT. With MUST=0 a
# failure to become ready returns 1 instead of ending the script.
start_serve() {
  local target=$1 app_dir=$2 name=$3 must=${4:-1} attempt
  for attempt in 1 2; do
    SERVE_PORT=$(free_port)
    mkdir -p "$WORK/$name.$attempt"
    # The node advertises 4 CPUs whatever its core mask (taskset): bench_handles needs one for
    # each of its two replicas, and placement is the mask's business here.
    SERVE_NUM_CPUS=4 taskset -c "${SERVE_CPUS:-$SUT_CPU}" "$BIN/serve" run "$target" --app-dir "$app_dir" --http-port "$SERVE_PORT" \
      --dashboard-port 0 --temp-dir "$WORK/$name.$attempt" >"$WORK/$name.$attempt/serve.out" 2>&1 &
    SERVE_PID=$!
    STARTED[$SERVE_PID]=serve
    if wait_http "http://127.0.0.1:$SERVE_PORT/$SERVE_READY_PATH" "$SERVE_PID"; then
      # `serve run` prints "... is ready at http://..." once the application is RUNNING.
      local i
      for ((i = 0; i < WAIT_S * 10; i++)); do
        grep -q 'is ready at' "$WORK/$name.$attempt/serve.out" && return 0
        sleep 0.1
      done
      log "warning: serve ($target) answers but never printed 'is ready at'"
      return 0
    fi
    tail -5 "$WORK/$name.$attempt/serve.out" >&2
    log "serve ($target) did not become ready (attempt $attempt)"
    stop_pid "$SERVE_PID"
  done
  ((must)) && die "serve ($target) did not start"
  return 1
}
SERVE_READY_PATH=""

# All systems run side by side (idle ones cost < 1% of a core) and the scenarios are
# interleaved per concurrency, so drift of the machine hits them alike; with BENCH_ROUNDS > 1
# the table shows medians over the rounds that other jobs did not disturb.
LOADAVG_START=$(cut -d" " -f1-3 /proc/loadavg)
log "work directory $WORK; load on core $LOAD_CPU, system under test on core $SUT_CPU; ${D}s per run, $ROUNDS round(s)"
start_backend
start_nginx
NGINX_SUT=$(
  tree_pids "$NGINX_PID"
  echo "$BACKEND_PID"
)
# shellcheck disable=SC2086
note_affinity nginx+backend $NGINX_SUT
check_stream "http://127.0.0.1:$BACKEND_PORT/stream" || die "beast_backend /stream is not 50 chunks of 20 bytes"
check_stream "http://127.0.0.1:$NGINX_PORT/stream" || log "warning: nginx /stream did not pass through chunked"

# The same app with metrics recording off (SERVE_METRICS_ENABLED=0): what metrics cost.
SERVE_METRICS_ENABLED=0 start_serve bench_apps:noop "$APP_DIR" serve-nometrics
[[ $(curl -s -m 2 "http://127.0.0.1:$SERVE_PORT/") == ok ]] || die "noop app (metrics off) does not answer 'ok'"
NOMETRICS_PID=$SERVE_PID NOMETRICS_PORT=$SERVE_PORT
NOMETRICS_SUT=$(tree_pids "$NOMETRICS_PID" | tr '\n' ' ')
start_serve bench_apps:noop "$APP_DIR" serve
[[ $(curl -s -m 2 "http://127.0.0.1:$SERVE_PORT/") == ok ]] || die "noop app does not answer 'ok'"
SERVE_SUT=$(tree_pids "$SERVE_PID" | tr '\n' ' ')
# shellcheck disable=SC2086
note_affinity serve $SERVE_SUT

log "== HTTP noop: nginx -> Beast | Beast alone | serve proxy -> 1 noop replica (metrics on | off)"
warmup "http://127.0.0.1:$NGINX_PORT/"
warmup "http://127.0.0.1:$BACKEND_PORT/"
warmup "http://127.0.0.1:$SERVE_PORT/"
warmup "http://127.0.0.1:$NOMETRICS_PORT/"
for ((round = 1; round <= ROUNDS; round++)); do
  for c in $CONC; do
    # shellcheck disable=SC2086
    measure http "nginx->beast" "$c" "http://127.0.0.1:$NGINX_PORT/" $NGINX_SUT
    measure http "beast" "$c" "http://127.0.0.1:$BACKEND_PORT/" "$BACKEND_PID"
    # shellcheck disable=SC2086
    measure http "serve" "$c" "http://127.0.0.1:$SERVE_PORT/" $SERVE_SUT
    # shellcheck disable=SC2086
    measure http "serve-nometrics" "$c" "http://127.0.0.1:$NOMETRICS_PORT/" $NOMETRICS_SUT
  done
done

PROFILE_TXT=""
if [[ $PROFILE == 1 ]] && command -v perf >/dev/null; then
  # shellcheck disable=SC2086  # $SERVE_SUT is a list of pids
  PROXY_PID=$(pid_named serve-proxy $SERVE_SUT)
  # shellcheck disable=SC2086
  REPLICA_PID=$(pid_named serve-replica $SERVE_SUT)
  # shellcheck disable=SC2086
  AGENT_PID=$(pid_named serve-agent $SERVE_SUT)
  if [[ -n $PROXY_PID && -n $REPLICA_PID ]]; then
    log "== perf record (dwarf call graphs) of serve-proxy, serve-replica, serve-agent under c=64 (unmeasured)"
    timeout $((D + 20)) taskset -c "$LOAD_CPU" wrk -t1 -c64 -d"$((D + 1))s" "http://127.0.0.1:$SERVE_PORT/" \
      >"$WORK/wrk_profile.txt" 2>&1 &
    WRK_PID=$!
    STARTED[$WRK_PID]=plain
    sleep 0.5
    # perf itself runs on the load core so that it does not steal the SUT core.
    if timeout $((D + 30)) taskset -c "$LOAD_CPU" perf record -q -F 499 --call-graph dwarf,16384 \
      -p "$PROXY_PID,$REPLICA_PID${AGENT_PID:+,$AGENT_PID}" -o "$WORK/perf.data" -- sleep "$D" \
      >"$WORK/perf_record.log" 2>&1; then
      {
        echo "samples by process:"
        perf report -i "$WORK/perf.data" --sort comm --stdio -g none 2>/dev/null | perf_clean | awk '{print "  " $0}'
        if command -v python3 >/dev/null; then
          echo
          echo "hot-path categories (bench/perf_categories.py; share of each process's samples):"
          timeout 120 perf script -i "$WORK/perf.data" -F comm,ip,sym 2>/dev/null |
            python3 "$ROOT/bench/perf_categories.py" serve-proxy serve-replica serve-agent || true
        fi
        for comm in serve-proxy serve-replica; do
          echo
          echo "top self-time symbols of $comm (share of its samples):"
          perf report -i "$WORK/perf.data" --comm "$comm" --percentage relative --no-children \
            --sort dso,symbol --stdio -g none 2>/dev/null | perf_clean | head -15
        done
      } >"$WORK/perf_top.txt" 2>&1 || true
      PROFILE_TXT="$WORK/perf_top.txt"
    else
      log "perf record failed: $(tail -2 "$WORK/perf_record.log")"
    fi
    wait_gone "$WRK_PID" $((D + 20)) || true
    unset "STARTED[$WRK_PID]"
  fi
fi
stop_pid "$SERVE_PID"
stop_pid "$NOMETRICS_PID"

# Streaming through the proxy: bench_stream:app (or BENCH_STREAM_APP), when the proxy streams.
STREAM_APP="${BENCH_STREAM_APP:-}"
STREAM_APP_DIR="${BENCH_STREAM_APP_DIR:-$APP_DIR}"
[[ -z $STREAM_APP && $HAVE_STREAM_APP == 1 ]] && STREAM_APP=bench_stream:app
STREAM_SUT=""
STREAM_NOTE="not supported yet (no streaming in the SDK)"
if [[ -n $STREAM_APP ]]; then
  if start_serve "$STREAM_APP" "$STREAM_APP_DIR" serve-stream 0; then
    if check_stream "http://127.0.0.1:$SERVE_PORT/"; then
      STREAM_SUT=$(tree_pids "$SERVE_PID" | tr '\n' ' ')
      # shellcheck disable=SC2086
      note_affinity serve-stream $STREAM_SUT
      warmup "http://127.0.0.1:$SERVE_PORT/"
    else
      log "$STREAM_APP: the proxy does not answer with 50 chunks of 20 bytes (chunked)"
      STREAM_NOTE="not supported yet (response not chunked through the proxy)"
    fi
  else
    STREAM_NOTE="not supported yet ($STREAM_APP does not deploy)"
  fi
fi
log "== streaming: nginx -> Beast | Beast direct | serve proxy -> ${STREAM_APP:-(none)}"
round=1
for c in $STREAM_CONC; do
  # shellcheck disable=SC2086
  measure stream "nginx->beast" "$c" "http://127.0.0.1:$NGINX_PORT/stream" $NGINX_SUT
  measure stream "beast" "$c" "http://127.0.0.1:$BACKEND_PORT/stream" "$BACKEND_PID"
  if [[ -n $STREAM_SUT ]]; then
    # shellcheck disable=SC2086
    measure stream "serve" "$c" "http://127.0.0.1:$SERVE_PORT/" $STREAM_SUT
  else
    not_supported stream serve "$c" "$STREAM_NOTE"
  fi
done
[[ -n $STREAM_APP ]] && stop_pid "$SERVE_PID"
stop_pid "$NGINX_PID"
stop_pid "$BACKEND_PID"

# ------------------------------------------------------------------ handle calls: raw Asio ping-pong

# jget JSON OBJECT KEY: a number from {"OBJECT": {... "KEY": N ...}} (flat objects only).
jget() { sed -E "s/.*\"$2\": ?\{[^}]*\"$3\": ?([0-9.e+-]+).*/\1/" <<<"$1"; }

# run_pingpong CLIENT_CPU: server on $SUT_CPU, client on CLIENT_CPU (the same core or the load
# core). Sets PP_JSON and PP_CPU_PER_CALL (server CPU, plus the client's when it shares the core).
run_pingpong() {
  local client_cpu=$1 tf="$WORK/pingpong_time.$1.txt" portf="$WORK/pingpong.$1.port"
  taskset -c "$SUT_CPU" "$BIN/asio_pingpong" server >"$portf" 2>"$WORK/pingpong.$1.err" &
  PP_PID=$!
  STARTED[$PP_PID]=plain
  PP_PORT=$(wait_line "$portf") || die "asio_pingpong server did not report its port"
  note_affinity "pingpong-server" "$PP_PID"
  wait_quiet "pingpong_cpu$client_cpu"
  cpu_sample "$PP_PID" >"$WORK/cpu_before"
  { TIMEFORMAT='%U %S'; time (PP_JSON=$(timeout $((2 * D + 30)) taskset -c "$client_cpu" "$BIN/asio_pingpong" \
      client --port "$PP_PORT" --iterations 1000000 --batches 1000000 --batch-size 100 --payload 16 \
      --seconds "$D") && echo "$PP_JSON" >"$WORK/pingpong.$1.json"); } 2>"$tf" || die "asio_pingpong client failed"
  PP_JSON=$(cat "$WORK/pingpong.$1.json")
  cpu_sample "$PP_PID" >"$WORK/cpu_after"
  local server_us client_us=0 n
  server_us=$(cpu_delta "$WORK/cpu_before" "$WORK/cpu_after" | awk '{print $1}')
  [[ $client_cpu == "$SUT_CPU" ]] && client_us=$(awk 'END { printf "%.0f", ($1 + $2) * 1e6 }' "$tf")
  stop_pid "$PP_PID"
  n=$(($(jget "$PP_JSON" sequential iterations) + $(jget "$PP_JSON" concurrent batches) * 100))
  PP_CPU_PER_CALL=$(awk -v t="$((server_us + client_us))" -v n="$n" 'BEGIN { printf "%.2f", t / n }')
}

log "== raw Asio TCP ping-pong, client and server on core $SUT_CPU (the handle benchmark's placement)"
run_pingpong "$SUT_CPU"
PP_SAME_JSON=$PP_JSON PP_SAME_CPU=$PP_CPU_PER_CALL
log "== raw Asio TCP ping-pong, client on core $LOAD_CPU, server on core $SUT_CPU"
run_pingpong "$LOAD_CPU"
PP_CROSS_JSON=$PP_JSON PP_CROSS_CPU=$PP_CPU_PER_CALL

# run_handles CPUS: HandleBench (ingress replica) -> Pong replica through a DeploymentHandle, every
# serve process on CPUS. The load generator is inside the system under test. Sets HANDLE_JSON
# ("" on failure, with HANDLE_NOTE) and HANDLE_CPU.
run_handles() {
  HANDLE_JSON=""
  HANDLE_CPU=""
  SERVE_READY_PATH="-/healthz"
  if SERVE_CPUS=$1 start_serve bench_handles:app "$APP_DIR" "serve-handles-${1//,/_}" 0; then
    local sut
    sut=$(tree_pids "$SERVE_PID" | tr '\n' ' ')
    # shellcheck disable=SC2086
    note_affinity "serve-handles" $sut
    wait_quiet "handles_cpu$1"
    # shellcheck disable=SC2086
    cpu_sample $sut >"$WORK/cpu_before"
    HANDLE_JSON=$(curl -s -m $((2 * D + 60)) \
      "http://127.0.0.1:$SERVE_PORT/?seconds=$D&iterations=1000000&batches=1000000&batch_size=100&payload=16" || true)
    # shellcheck disable=SC2086
    cpu_sample $sut >"$WORK/cpu_after"
    if [[ $HANDLE_JSON == *'"sequential"'* ]]; then
      HANDLE_CPU=$(cpu_delta "$WORK/cpu_before" "$WORK/cpu_after")
    else
      HANDLE_NOTE="failed: ${HANDLE_JSON:0:200}"
      HANDLE_JSON=""
    fi
  else
    HANDLE_NOTE="bench_handles:app did not deploy"
  fi
  SERVE_READY_PATH=""
  stop_pid "$SERVE_PID"
}

HANDLE_SAME_JSON="" HANDLE_CROSS_JSON=""
HANDLE_NOTE="not supported yet (bench_handles does not build: no DeploymentHandle)"
if [[ $HAVE_HANDLE_APP == 1 ]]; then
  log "== serve DeploymentHandle calls (bench_handles:app), every serve process on core $SUT_CPU"
  run_handles "$SUT_CPU"
  HANDLE_SAME_JSON=$HANDLE_JSON HANDLE_SAME_CPU=$HANDLE_CPU
  log "== serve DeploymentHandle calls (bench_handles:app), serve processes on cores $LOAD_CPU,$SUT_CPU"
  run_handles "$LOAD_CPU,$SUT_CPU"
  HANDLE_CROSS_JSON=$HANDLE_JSON HANDLE_CROSS_CPU=$HANDLE_CPU
fi

# ------------------------------------------------------------------ report

# Markdown table of one section. Per scenario and concurrency, over the rounds where other jobs
# used at most 15% of a core ("clean"; all rounds if none is): medians of rps, p50, p99 and
# CPU-µs/req, the rps range, and the median of the rps ratio against nginx -> Beast measured in
# the same round. The per-process split and busy figures come from the round whose CPU-µs/req
# is nearest the median. ⚠: no clean round.
table() {  # SECTION
  awk -F'\t' -v sec="$1" '
    function median(arr, n,    i, j, t) {  # sorts arr[1..n] in place
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (arr[j] < arr[i]) { t = arr[i]; arr[i] = arr[j]; arr[j] = t }
      return (n % 2) ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
    }
    function absf(x) { return x < 0 ? -x : x }
    $1 != sec { next }
    {
      k = $2 SUBSEP $3
      if (!($3 in cseen)) { cseen[$3] = 1; corder[++nc] = $3 }
      n = ++cnt[k]; row[k, n] = $0; rnd[k, n] = $13
      clean[k, n] = ($12 == "-" || $12 + 0 <= 15)
      byround[$2, $3, $13] = $4 + 0; cleanround[$2, $3, $13] = clean[k, n]
      if ($13 + 0 > maxround) maxround = $13 + 0
    }
    END {
      ns = split("nginx->beast beast serve serve-nometrics", sc, " ")
      multi = (maxround > 1)
      printf "| scenario | c | rps |%s p50 ms | p99 ms | CPU-µs/req | CPU-µs/req by process | rps vs nginx | cores busy %% (load/SUT) | foreign CPU %% | errors |\n", (multi ? " rps min–max (clean/rounds) |" : "")
      printf "|---|---:|---:|%s---:|---:|---:|---|---:|---:|---:|---:|\n", (multi ? "---|" : "")
      for (s = 1; s <= ns; s++) for (ci = 1; ci <= nc; ci++) {
        c = corder[ci]; k = sc[s] SUBSEP c
        if (!(k in cnt)) continue
        split(row[k, 1], f, "\t")
        name = f[2]
        if (name == "serve") name = (sec == "http" ? "serve proxy -> noop replica" : "serve proxy -> streaming replica")
        else if (name == "serve-nometrics") name = "serve proxy -> noop replica, metrics off"
        else if (name == "nginx->beast") name = "nginx -> Beast"
        else if (name == "beast") name = (sec == "http" ? "Beast alone" : "Beast chunked, direct")
        if (f[4] == "-") { printf "| %s | %s | %s |%s | | | | | | | |\n", name, f[3], f[8], (multi ? " |" : ""); continue }
        anyclean = 0
        for (i = 1; i <= cnt[k]; i++) anyclean += clean[k, i]
        m = 0; nr = 0; errs = 0; fmax = 0
        for (i = 1; i <= cnt[k]; i++) {
          if (!clean[k, i] && anyclean) continue
          split(row[k, i], f, "\t")
          m++; use[m] = i; vr[m] = f[4] + 0; v50[m] = f[5] + 0; v99[m] = f[6] + 0; vc[m] = f[7] + 0; cpu[m] = f[7] + 0
          errs += f[9]; if (f[12] + 0 > fmax) fmax = f[12] + 0
          r = rnd[k, i]
          if (sc[s] != "nginx->beast" && (("nginx->beast", c, r) in byround) && byround["nginx->beast", c, r] > 0 &&
              (cleanround["nginx->beast", c, r] || !anyclean)) ratios[++nr] = f[4] / byround["nginx->beast", c, r]
        }
        mrps = median(vr, m); lo = vr[1]; hi = vr[m]
        m50 = median(v50, m); m99 = median(v99, m); mcpu = median(vc, m)
        best = 1
        for (i = 1; i <= m; i++) if (absf(cpu[i] - mcpu) < absf(cpu[best] - mcpu)) best = i
        split(row[k, use[best]], f, "\t")
        ratio = (sc[s] == "nginx->beast") ? "1.00×" : (nr > 0 ? sprintf("%.2f×", median(ratios, nr)) : "")
        range = multi ? sprintf(" %.0f–%.0f (%d/%d) |", lo, hi, (anyclean ? m : 0), cnt[k]) : ""
        warn = anyclean ? "" : " ⚠"
        printf "| %s | %s | %.0f |%s %.3f | %.3f | %.1f | %s | %s | %s | %s%s | %s |\n", name, c, mrps, range, m50, m99, mcpu, f[8], ratio, f[11], fmax, warn, errs
      }
    }' "$RESULTS"
}

# One row of the handle table from JSON in asio_pingpong's shape.
call_row() {  # NAME JSON CPU_PER_CALL
  printf '| %s | %s / %s / %s | %.0f | %.0f | %s / %s | %s |\n' "$1" \
    "$(jget "$2" sequential rtt_mean_us)" "$(jget "$2" sequential rtt_p50_us)" \
    "$(jget "$2" sequential rtt_p99_us)" "$(jget "$2" sequential calls_per_s)" \
    "$(jget "$2" concurrent calls_per_s)" "$(jget "$2" concurrent batch_p50_us)" \
    "$(jget "$2" concurrent batch_p99_us)" "$3"
}

# handle_row NAME JSON CPU: one row of the handle table for a serve run ("" JSON: a slot).
handle_row() {
  if [[ -z $2 ]]; then
    echo "| $1 | **slot: $HANDLE_NOTE** | | | | |"
    return
  fi
  local n total split per
  n=$(($(jget "$2" sequential iterations) + $(jget "$2" concurrent batches) * 100))
  total=${3%% *}
  per=$(awk -v t="$total" -v n="$n" 'BEGIN { printf "%.1f", t / n }')
  split=$(awk -v s="${3#* }" -v n="$n" 'BEGIN {
    k = split(s, a, ","); for (i = 1; i <= k; i++) { split(a[i], kv, "="); printf "%s%s %.1f", (i > 1 ? ", " : ""), kv[1], kv[2] / n } }')
  call_row "$1" "$2" "$per (all serve processes: $split)"
}

# ratio_of A_JSON B_JSON OBJECT KEY: A's KEY / B's KEY, "n/a" when either is missing.
ratio_of() {
  [[ -n $1 && -n $2 ]] || { echo "n/a"; return; }
  awk -v a="$(jget "$1" "$3" "$4")" -v b="$(jget "$2" "$3" "$4")" 'BEGIN { if (b > 0) printf "%.2f×", a / b; else print "n/a" }'
}

pingpong_table() {
  echo "| scenario | sequential RTT mean / p50 / p99 µs | sequential calls/s | concurrent calls/s (batches of 100) | batch p50 / p99 µs | CPU-µs/call |"
  echo "|---|---|---:|---:|---|---|"
  call_row "raw Asio TCP ping-pong, 16 B, client and server on core $SUT_CPU" "$PP_SAME_JSON" "$PP_SAME_CPU (client + server)"
  handle_row "serve DeploymentHandle, ingress replica -> Pong replica, 16 B, all on core $SUT_CPU" "$HANDLE_SAME_JSON" "${HANDLE_SAME_CPU:-}"
  call_row "raw Asio TCP ping-pong, 16 B, client on core $LOAD_CPU, server on core $SUT_CPU" "$PP_CROSS_JSON" "$PP_CROSS_CPU (server)"
  handle_row "serve DeploymentHandle, ingress replica -> Pong replica, 16 B, on cores $LOAD_CPU,$SUT_CPU" "$HANDLE_CROSS_JSON" "${HANDLE_CROSS_CPU:-}"
  echo
  echo "Same placement ratios (serve handle / raw ping-pong): one core: sequential RTT mean" \
    "$(ratio_of "$HANDLE_SAME_JSON" "$PP_SAME_JSON" sequential rtt_mean_us), p50" \
    "$(ratio_of "$HANDLE_SAME_JSON" "$PP_SAME_JSON" sequential rtt_p50_us)," \
    "concurrent calls/s $(ratio_of "$HANDLE_SAME_JSON" "$PP_SAME_JSON" concurrent calls_per_s);" \
    "two cores: sequential RTT mean $(ratio_of "$HANDLE_CROSS_JSON" "$PP_CROSS_JSON" sequential rtt_mean_us)," \
    "p50 $(ratio_of "$HANDLE_CROSS_JSON" "$PP_CROSS_JSON" sequential rtt_p50_us)," \
    "concurrent calls/s $(ratio_of "$HANDLE_CROSS_JSON" "$PP_CROSS_JSON" concurrent calls_per_s)."
}

MODEL=$(lscpu | awk -F: '/Model name/ && !done {gsub(/^ +/, "", $2); print $2; done = 1}')
NGINX_VERSION=$("$NGINX" -v 2>&1 | sed 's/.*version: //')
WRK_VERSION=$({ wrk -v 2>&1 || true; } | awk 'NR == 1 {print $2}')
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=""
if [[ -n $(git status --porcelain -- src include 2>/dev/null) ]]; then DIRTY=" (src/include modified)"; fi
BUILD_TYPE=$(awk -F= '/^CMAKE_BUILD_TYPE:/ {print $2}' "$BUILD/CMakeCache.txt" 2>/dev/null || echo "?")

REPORT="$WORK/report.md"
{
  echo "### $(date '+%Y-%m-%d %H:%M %Z') — commit $COMMIT$DIRTY"
  echo
  echo '```sh'
  echo "$COMMAND_LINE"
  echo '```'
  echo
  echo "Machine: $(nproc) CPUs, $MODEL; kernel $(uname -r); nginx $NGINX_VERSION; wrk $WRK_VERSION;" \
    "build $BUILD_TYPE. nginx upstream keepalive $NGINX_KEEPALIVE." \
    "wrk -t1 --latency, ${D}s per run, on core $LOAD_CPU; system under test on" \
    "core $SUT_CPU (affinity seen:$SUT_AFFINITY). Load average before the run: $LOADAVG_START."
  echo
  if [[ -n $QUIET_NOTES ]]; then
    echo "**Other jobs were using the CPUs before $QUIET_COUNT of the runs** (see the foreign CPU column):$QUIET_NOTES$( ((QUIET_COUNT > 6)) && echo " …")"
    echo
  fi
  echo "#### HTTP noop (GET / -> \"ok\")"
  echo
  table http
  echo
  echo "#### Streaming (GET /stream -> 50 chunks of 20 bytes; latency = last byte)"
  echo
  table stream
  echo
  echo "#### Handle calls"
  echo
  pingpong_table
  echo
  echo "asio_pingpong client, one core: \`$PP_SAME_JSON\`; two cores: \`$PP_CROSS_JSON\`"
  [[ -z $HANDLE_SAME_JSON ]] || { echo; echo "bench_handles, one core: \`$HANDLE_SAME_JSON\`"; }
  [[ -z $HANDLE_CROSS_JSON ]] || { echo; echo "bench_handles, two cores: \`$HANDLE_CROSS_JSON\`"; }
  if [[ -n $PROFILE_TXT && -s $PROFILE_TXT ]]; then
    echo
    echo "#### Profile: perf record -F 499 --call-graph dwarf, serve-proxy + serve-replica + serve-agent, wrk c=64, ${D}s"
    echo
    echo '```'
    cat "$PROFILE_TXT"
    echo '```'
  fi
  echo
} >"$REPORT"

echo
cat "$REPORT"
if [[ "${BENCH_NO_DOCS:-0}" != 1 ]]; then
  if [[ ! -s $DOCS ]]; then
    printf '# Benchmarks\n\n## Results log\n\nAppended by bench/run.sh, newest last.\n' >"$DOCS"
  fi
  { echo; cat "$REPORT"; } >>"$DOCS"
  log "appended to $DOCS"
fi
