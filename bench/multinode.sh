#!/usr/bin/env bash
# Multi-node benchmarks (docs/benchmarks.md, "Multi-node"). Loopback only, bounded in time; each
# part has its baseline in the same run. Nodes are separate agents on loopback addresses of one
# machine (the head on 127.0.0.1, workers on 127.0.0.2 and 127.0.0.3), as in test_multinode.py.
#
#   bash bench/multinode.sh          # ≈ 3 min; BENCH_ONLY="scheduling cross-node failover"
#
#   scheduling  build/bin/bench_scheduler (bench/scheduler.cc): 1,000 replicas over 50 simulated
#               nodes, the Scheduler alone and the control loop's deploy and node-death steps.
#   cross-node  HTTP noop through the head's proxy to a replica on a worker node, against a
#               replica on the head itself: the head starts with --resources '{"head": 10}',
#               the worker with '{"worker": 10}', and apps /same and /cross (bench_apps:noop)
#               ask for one or the other in ray_actor_options. wrk -t1 --latency on core
#               $BENCH_LOAD_CPU, every serve process of both nodes on core $BENCH_SUT_CPU, the two
#               paths interleaved per concurrency in $BENCH_ROUNDS rounds (bench/lib.sh measure:
#               CPU-µs/request over both nodes' processes, foreign CPU).
#   failover    the only replica of /fo runs on one of two workers (resources {"pool": 1} each);
#               that worker's agent and every process of it get SIGKILL at once, and the time
#               to the first 200 through the head's proxy (a new replica on the other worker)
#               is measured, with the node declared DEAD and the new replica RUNNING (REST,
#               polled every 50 ms) on the way. The kill comes at a random point of the
#               worker's heartbeat period. SERVE_NODE_HEARTBEAT_TIMEOUT_S=2
#               ($BENCH_HEARTBEAT_TIMEOUT_S) on the head; workers heartbeat every 1 s (the
#               default). A fresh worker then joins on the killed address for the next round.
#
# Environment: BENCH_DURATION=3 (seconds per wrk run), BENCH_ROUNDS=3,
# BENCH_CONCURRENCY="1 16 64", BENCH_FAILOVER_ROUNDS=3, BENCH_HEARTBEAT_TIMEOUT_S=2,
# BENCH_LOAD_CPU=0 BENCH_SUT_CPU=1, BENCH_BUILD_DIR=build, BENCH_SKIP_BUILD=1,
# BENCH_NO_DOCS=1 (do not append to docs/benchmarks.md), BENCH_KEEP=1 (keep the work directory).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BUILD="${BENCH_BUILD_DIR:-build}"
D="${BENCH_DURATION:-3}"
ROUNDS="${BENCH_ROUNDS:-3}"
CONC="${BENCH_CONCURRENCY:-1 16 64}"
FAILOVER_ROUNDS="${BENCH_FAILOVER_ROUNDS:-3}"
HEARTBEAT_TIMEOUT_S="${BENCH_HEARTBEAT_TIMEOUT_S:-2}"
ONLY="${BENCH_ONLY:-scheduling cross-node failover}"
LOAD_CPU="${BENCH_LOAD_CPU:-0}"
SUT_CPU="${BENCH_SUT_CPU:-1}"
WAIT_S=60
COMMAND_LINE="bash bench/multinode.sh"
for v in BENCH_DURATION BENCH_ROUNDS BENCH_CONCURRENCY BENCH_FAILOVER_ROUNDS \
  BENCH_HEARTBEAT_TIMEOUT_S BENCH_ONLY; do
  [[ -n "${!v:-}" ]] && COMMAND_LINE="$v='${!v}' $COMMAND_LINE"
done

# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"

wants() { [[ " $ONLY " == *" $1 "* ]]; }

if wants cross-node; then
  [[ "${BENCH_SKIP_INSTALL:-0}" == 1 ]] || have_pkg wrk || apt_install wrk || die "cannot install wrk"
  command -v wrk >/dev/null || die "wrk missing"
fi
command -v curl >/dev/null || die "curl missing"
command -v python3 >/dev/null || die "python3 missing"
(($(nproc) >= 2)) || die "needs 2 cores (load generator and system under test pinned apart)"

if [[ "${BENCH_SKIP_BUILD:-0}" != 1 ]]; then
  log "building the bench targets in $BUILD"
  ninja -C "$BUILD" -j2 bench_scheduler bench_apps serve serve-agent serve-controller serve-proxy \
    serve-replica >/dev/null || die "build failed"
fi
BUILD_ABS="$(cd "$BUILD" && pwd)"

bench_workdir
bench_traps
snapshot_build "$BUILD_ABS" serve serve-agent serve-controller serve-proxy serve-replica bench_scheduler

LOADAVG_START=$(cut -d" " -f1-3 /proc/loadavg)
REPORT="$WORK/report.md"
: >"$REPORT"

# ------------------------------------------------------------------ nodes

# start_node NAME ARGS...: `serve start` with the temp dir $WORK/NAME, every process on the SUT
# core; registers the agent in STARTED and sets NODE_OUT (what serve start printed).
start_node() {
  local name=$1
  shift
  mkdir -p "$WORK/$name"
  NODE_OUT=$(taskset -c "$SUT_CPU" "$BIN/serve" start "$@" --temp-dir "$WORK/$name" \
    --metrics-export-port 0 2>&1) || { echo "$NODE_OUT" >&2; die "serve start ($name) failed"; }
  local pid
  pid=$(cat "$WORK/$name/session_latest/agent_pid")
  STARTED[$pid]=plain
  NODE_ID[$name]=$(field "Node")
}
declare -A NODE_ID=()  # node name -> node id (printed by serve start)
agent_of() { cat "$WORK/$1/session_latest/agent_pid"; }
field() { sed -nE "s/^ *$1:[[:space:]]+([^ ]+).*/\1/p" <<<"$NODE_OUT" | head -1; }

# start_head NAME HTTP_PORT ARGS...: sets HTTP, REST, CONTROLLER.
start_head() {
  local name=$1 port=$2
  shift 2
  start_node "$name" --head --http-port "$port" --dashboard-port 0 --app-dir "$APP_DIR" \
    --proxy-location HeadOnly "$@"
  HTTP=$(field "HTTP proxy")
  REST=$(field "REST API")
  CONTROLLER=$(field "Controller")
  [[ -n $HTTP && -n $REST && -n $CONTROLLER ]] || { echo "$NODE_OUT" >&2; die "head: no addresses"; }
}

# Every pid of the nodes named $@ (agents and their children).
node_pids() { local n; for n in "$@"; do tree_pids "$(agent_of "$n")"; done | tr '\n' ' '; }

# stop_cluster HEAD WORKER...: serve stop on the head (stops the workers too), then by pid.
stop_cluster() {
  local head=$1 n
  timeout 60 "$BIN/serve" stop --temp-dir "$WORK/$head" >/dev/null 2>&1 || true
  for n in "$@"; do
    local pid
    pid=$(agent_of "$n")
    [[ -n ${STARTED[$pid]:-} ]] && stop_pid "$pid"
  done
  return 0
}

# deploy JSON: PUT the config to the head's REST API.
deploy() {
  local code
  code=$(curl -s -o "$WORK/deploy.out" -w '%{http_code}' -X PUT -H 'Content-Type: application/json' \
    --data "$1" "$REST/api/serve/applications/")
  [[ $code == 200 ]] || { cat "$WORK/deploy.out" >&2; die "deploy failed ($code)"; }
}

# wait_ok URL: until it answers 200 "ok", at most WAIT_S seconds.
wait_ok() {
  local i
  for ((i = 0; i < WAIT_S * 10; i++)); do
    [[ $(curl -s -m 2 "$1" 2>/dev/null) == ok ]] && return 0
    sleep 0.1
  done
  die "$1 never answered ok"
}

# replica_ips APP: the node IPs of the app's RUNNING replicas (deployment Noop), space separated.
replica_ips() {
  curl -s -m 5 "$REST/api/serve/applications/" | python3 -c '
import json, sys
d = json.load(sys.stdin)["applications"].get(sys.argv[1], {})
reps = d.get("deployments", {}).get("Noop", {}).get("replicas", [])
print(" ".join(sorted(r["node_ip"] for r in reps if r["state"] == "RUNNING")))' "$1"
}

# ------------------------------------------------------------------ scheduling

if wants scheduling; then
  log "== scheduling: bench_scheduler (1,000 replicas over 50 simulated nodes)"
  SCHED_OUT=$(timeout 120 taskset -c "$SUT_CPU" "$BIN/bench_scheduler") || die "bench_scheduler failed"
  echo "$SCHED_OUT" >&2
  {
    echo "#### Scheduling (\`build/bin/bench_scheduler\`, on core $SUT_CPU)"
    echo
    sed -E 's/^## /##### /' <<<"$SCHED_OUT"
    echo
  } >>"$REPORT"
fi

# ------------------------------------------------------------------ cross-node HTTP noop

if wants cross-node; then
  log "== cross-node: head 127.0.0.1 {head: 10}, worker 127.0.0.2 {worker: 10}"
  start_head xhead "$(free_port)" --num-cpus 4 --resources '{"head": 10}'
  start_node xworker --address "$CONTROLLER" --node-ip 127.0.0.2 --num-cpus 4 \
    --resources '{"worker": 10}'
  app() {  # NAME PREFIX RESOURCE
    printf '{"name": "%s", "route_prefix": "%s", "import_path": "bench_apps:noop", "deployments":
      [{"name": "Noop", "ray_actor_options": {"num_cpus": 0, "resources": {"%s": 1}}}]}' "$1" "$2" "$3"
  }
  deploy "{\"applications\": [$(app same /same head), $(app cross /cross worker)]}"
  wait_ok "$HTTP/same"
  wait_ok "$HTTP/cross"
  [[ $(replica_ips same) == 127.0.0.1 && $(replica_ips cross) == 127.0.0.2 ]] ||
    die "placement: same on [$(replica_ips same)], cross on [$(replica_ips cross)]"
  SUT=$(node_pids xhead xworker)
  warmup "$HTTP/same"
  warmup "$HTTP/cross"
  for ((round = 1; round <= ROUNDS; round++)); do
    for c in $CONC; do
      # shellcheck disable=SC2086
      measure xnode same-node "$c" "$HTTP/same" $SUT
      # shellcheck disable=SC2086
      measure xnode cross-node "$c" "$HTTP/cross" $SUT
    done
  done
  stop_cluster xhead xworker
  # Per concurrency: medians over the rounds of rps, p50, p99, CPU-µs/req, and of the per-round
  # rps ratio cross / same.
  {
    echo "#### HTTP noop through the head's proxy: replica on the head vs on a worker node"
    echo
    echo "wrk -t1 --latency ${D}s per run on core $LOAD_CPU; both nodes' processes on core $SUT_CPU;" \
      "$ROUNDS interleaved rounds, medians (rps range in brackets). CPU-µs/req counts every process" \
      "of both nodes."
    echo
    echo "| path | c | rps | p50 ms | p99 ms | CPU-µs/req | cross/same rps | errors | foreign CPU % (max) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk -F'\t' '
      function median(arr, n,    i, j, t) {
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (arr[j] < arr[i]) { t = arr[i]; arr[i] = arr[j]; arr[j] = t }
        return (n % 2) ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
      }
      $1 != "xnode" { next }
      {
        k = $2 SUBSEP $3; n = ++cnt[k]
        rps[k, n] = $4; p50[k, n] = $5; p99[k, n] = $6; cpu[k, n] = $7; err[k] += $9
        if ($12 + 0 > fmax[k]) fmax[k] = $12 + 0
        byround[$2, $3, $13] = $4
        if (!($3 in seen)) { seen[$3] = 1; corder[++nc] = $3 }
      }
      END {
        split("same-node cross-node", sc, " ")
        for (ci = 1; ci <= nc; ci++) for (s = 1; s <= 2; s++) {
          c = corder[ci]; k = sc[s] SUBSEP c; m = cnt[k]
          if (!m) continue
          lo = 1e18; hi = 0
          for (i = 1; i <= m; i++) {
            a[i] = rps[k, i]; b[i] = p50[k, i]; d[i] = p99[k, i]; e[i] = cpu[k, i]
            if (rps[k, i] + 0 < lo) lo = rps[k, i] + 0
            if (rps[k, i] + 0 > hi) hi = rps[k, i] + 0
          }
          nr = 0
          for (r = 1; r <= m; r++)
            if ((("same-node", c, r) in byround) && byround["same-node", c, r] > 0)
              ratios[++nr] = byround["cross-node", c, r] / byround["same-node", c, r]
          ratio = (s == 1) ? "1.00×" : (nr ? sprintf("%.2f×", median(ratios, nr)) : "")
          printf "| %s | %s | %.0f (%.0f–%.0f) | %.3f | %.3f | %.1f | %s | %d | %.0f |\n", sc[s], c,
            median(a, m), lo, hi, median(b, m), median(d, m), median(e, m), ratio, err[k], fmax[k]
        }
      }' "$RESULTS"
    echo
  } >>"$REPORT"
fi

# ------------------------------------------------------------------ failover

# failover_round VICTIM OTHER_IP: SIGKILLs every process of node VICTIM at once (its agent
# first) and measures, from that moment, until the app answers 200 "ok" through the head's proxy
# (requests back to back, each waiting up to 5 s, as a client would) while another thread polls
# REST every 50 ms for VICTIM's DEAD state and a RUNNING replica on OTHER_IP. Prints
# "dead_s running_s serving_s failed_requests" ("nan" for what was not seen within 60 s).
failover_round() {
  local victim=$1 other_ip=$2 pids
  pids=$(node_pids "$victim")
  [[ -n ${NODE_ID[$victim]} ]] || die "no node id for $victim"
  python3 - "$HTTP/fo" "$REST/api/serve/applications/" "$other_ip" "$pids" "${NODE_ID[$victim]}" <<'PY'
import json, os, signal, sys, threading, time, urllib.request
url, rest, other_ip, pids, victim = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(), sys.argv[5]
times = {}
def get(u, timeout):
    try:
        with urllib.request.urlopen(u, timeout=timeout) as r:
            return r.status, r.read()
    except Exception:
        return None, b""
def watch_rest():
    while time.monotonic() - t0 < 60 and ("dead" not in times or "running" not in times):
        status, body = get(rest, 2)
        if status == 200:
            d = json.loads(body)
            if d["nodes"].get(victim, {}).get("state") == "DEAD":
                times.setdefault("dead", time.monotonic() - t0)
            reps = d["applications"]["fo"]["deployments"]["Noop"]["replicas"]
            if any(r["state"] == "RUNNING" and r["node_ip"] == other_ip for r in reps):
                times.setdefault("running", time.monotonic() - t0)
        time.sleep(0.05)
t0 = time.monotonic()
for p in pids:
    try:
        os.kill(int(p), signal.SIGKILL)
    except ProcessLookupError:
        pass
watcher = threading.Thread(target=watch_rest)
watcher.start()
failed = 0
while time.monotonic() - t0 < 60:
    status, body = get(url, 5)
    if status == 200 and body == b"ok":
        times["serving"] = time.monotonic() - t0
        break
    failed += 1
    time.sleep(0.02)
watcher.join()
fmt = lambda k: f"{times[k]:.2f}" if k in times else "nan"
print(fmt("dead"), fmt("running"), fmt("serving"), failed)
PY
}

if wants failover; then
  log "== failover: SERVE_NODE_HEARTBEAT_TIMEOUT_S=$HEARTBEAT_TIMEOUT_S, $FAILOVER_ROUNDS rounds"
  SERVE_NODE_HEARTBEAT_TIMEOUT_S=$HEARTBEAT_TIMEOUT_S start_head fhead "$(free_port)" --num-cpus 2
  declare -A NODE_AT=([127.0.0.2]=fw2a [127.0.0.3]=fw3a)
  for ip in 127.0.0.2 127.0.0.3; do
    start_node "${NODE_AT[$ip]}" --address "$CONTROLLER" --node-ip "$ip" --num-cpus 2 \
      --resources '{"pool": 1}'
  done
  deploy '{"applications": [{"name": "fo", "route_prefix": "/fo", "import_path": "bench_apps:noop",
    "deployments": [{"name": "Noop", "ray_actor_options": {"num_cpus": 0, "resources": {"pool": 1}}}]}]}'
  wait_ok "$HTTP/fo"
  FO_ROWS=()
  for ((round = 1; round <= FAILOVER_ROUNDS; round++)); do
    at=$(replica_ips fo)
    [[ $at == 127.0.0.2 || $at == 127.0.0.3 ]] || die "the replica of /fo is on [$at]"
    other=127.0.0.2
    [[ $at == 127.0.0.2 ]] && other=127.0.0.3
    wait_quiet "failover_r$round"
    # The kill lands at a uniformly random point of the worker's 1 s heartbeat period.
    sleep "0.$((RANDOM % 10))$((RANDOM % 10))"
    read -r dead running serving failed < <(failover_round "${NODE_AT[$at]}" "$other")
    log "round $round: replica on $at killed; node DEAD after $dead s, new replica RUNNING on $other after $running s, serving after $serving s ($failed failed requests)"
    FO_ROWS+=("| $round | $at → $other | $dead | $running | **$serving** | $failed |")
    [[ $serving != nan ]] || die "the app did not serve again within 60 s"
    # A fresh worker (new node id) on the killed address, for the next round.
    unset "STARTED[$(agent_of "${NODE_AT[$at]}")]"
    if ((round < FAILOVER_ROUNDS)); then
      NODE_AT[$at]="fw${at##*.}r$round"
      start_node "${NODE_AT[$at]}" --address "$CONTROLLER" --node-ip "$at" --num-cpus 2 \
        --resources '{"pool": 1}'
    fi
  done
  stop_cluster fhead "${NODE_AT[127.0.0.2]}" "${NODE_AT[127.0.0.3]}"
  {
    echo "#### Failover: worker SIGKILLed → its replica serving again on another node"
    echo
    echo "SERVE_NODE_HEARTBEAT_TIMEOUT_S=$HEARTBEAT_TIMEOUT_S on the head, heartbeats every 1 s;" \
      "one replica of bench_apps:noop (/fo) on one of two workers; seconds after the SIGKILL of" \
      "the worker's agent and processes. Aim: ≤ 2 s + the heartbeat timeout = $((HEARTBEAT_TIMEOUT_S + 2)) s."
    echo
    echo "| round | replica moved | node DEAD (REST) s | new replica RUNNING s | first 200 through the proxy s | failed requests |"
    echo "|---:|---|---:|---:|---:|---:|"
    printf '%s\n' "${FO_ROWS[@]}"
    echo
  } >>"$REPORT"
fi

# ------------------------------------------------------------------ report

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=""
[[ -n $(git status --porcelain -- src include bench 2>/dev/null) ]] && DIRTY=" (modified)"
FULL="$WORK/full.md"
{
  echo "### $(date '+%Y-%m-%d %H:%M %Z') — multi-node, commit $COMMIT$DIRTY"
  echo
  echo '```sh'
  echo "$COMMAND_LINE"
  echo '```'
  echo
  echo "Machine: $(nproc) CPUs; kernel $(uname -r); build" \
    "$(awk -F= '/^CMAKE_BUILD_TYPE:/ {print $2}' "$BUILD/CMakeCache.txt" 2>/dev/null)." \
    "Load average before: $LOADAVG_START; after: $(cut -d' ' -f1-3 /proc/loadavg)" \
    "(\`uptime\`: $(uptime | sed 's/^ *//'))."
  [[ -z $QUIET_NOTES ]] || echo "Other jobs were using the CPUs before $QUIET_COUNT runs:$QUIET_NOTES"
  echo
  cat "$REPORT"
} >"$FULL"
echo
cat "$FULL"
if [[ "${BENCH_NO_DOCS:-0}" != 1 ]]; then
  { echo; cat "$FULL"; } >>"$ROOT/docs/benchmarks.md"
  log "appended to docs/benchmarks.md"
fi
