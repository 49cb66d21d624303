#!/usr/bin/env bash
# Helpers shared by the benchmark scripts (bench/run.sh, bench/multinode.sh); sourced, not run.
# The caller sets WAIT_S (seconds a process may take to start or stop) and, for measure,
# warmup and wait_quiet, D (seconds per wrk run), LOAD_CPU and SUT_CPU (cores of the load
# generator and of the system under test); bench_workdir creates WORK and RESULTS.

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ------------------------------------------------------------------ packages

as_root() { if [[ $(id -u) == 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
APT_UPDATED=0
apt_install() {
  if [[ $APT_UPDATED == 0 ]]; then
    as_root env DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -qq || return 1
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive timeout 600 \
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
# ------------------------------------------------------------------ process bookkeeping

declare -A STARTED=()  # pid -> how to stop it: serve | nginx | plain

# Creates the work directory WORK and the results file RESULTS (one TSV row per measure).
bench_workdir() {
  WORK="$(mktemp -d /tmp/serve-bench.XXXXXX)"
  RESULTS="$WORK/results.tsv"
  : >"$RESULTS"
}

# All pids of the tree rooted at $1 (itself included).
tree_pids() {
  ps -e -o pid=,ppid= | awk -v root="$1" '
    { kids[$2] = kids[$2] " " $1 }
    END {
      q[0] = root; n = 1
      for (i = 0; i < n; i++) {
        print q[i]
        m = split(kids[q[i]], a, " ")
        for (j = 1; j <= m; j++) q[n++] = a[j]
      }
    }'
}

# Sends $2 to each pid in $1.. (ignores pids that are gone).
signal_pids() { local sig=$1; shift; local p; for p in "$@"; do kill "-$sig" "$p" 2>/dev/null || true; done; }

# Waits until pid $1 is gone, at most $2 seconds. Returns 1 on timeout.
wait_gone() {
  local pid=$1 limit=$2 i
  for ((i = 0; i < limit * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
    sleep 0.1
  done
  return 1
}

stop_pid() {
  local pid=$1 kind=${STARTED[$1]:-plain}
  kill -0 "$pid" 2>/dev/null || { unset "STARTED[$pid]"; return 0; }
  local tree
  tree=$(tree_pids "$pid" | tr '\n' ' ')
  case $kind in
    serve) kill -INT "$pid" 2>/dev/null || true ;;   # Ctrl-C: serve shuts down in order
    nginx) kill -TERM "$pid" 2>/dev/null || true ;;  # master: fast shutdown of its workers
    *) kill -TERM "$pid" 2>/dev/null || true ;;
  esac
  if ! wait_gone "$pid" "$WAIT_S"; then
    log "pid $pid ($kind) did not stop in ${WAIT_S}s; SIGKILL"
    # shellcheck disable=SC2086
    signal_pids KILL $tree
    wait_gone "$pid" 5 || true
  fi
  # Anything of its tree still around (e.g. an agent orphaned by a crash).
  local p
  for p in $tree; do
    [[ $p == "$pid" ]] && continue
    if kill -0 "$p" 2>/dev/null; then
      sleep 1
      kill -KILL "$p" 2>/dev/null || true
    fi
  done
  unset "STARTED[$pid]"
}

cleanup() {
  local rc=$?
  set +e
  for pid in "${!STARTED[@]}"; do stop_pid "$pid"; done
  if [[ "${BENCH_KEEP:-0}" == 1 || $rc != 0 ]]; then
    log "work directory kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
# On exit (also on error, Ctrl-C or TERM): stop everything in STARTED, remove WORK.
bench_traps() {
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# snapshot_build BUILD_DIR BINARY...: copies the binaries, libserve.so and the bench/ app
# libraries into WORK/snap and points BIN, APP_DIR and LD_LIBRARY_PATH there. Other builds may
# relink BUILD_DIR while a benchmark runs, and all scenarios should run the same code.
# serve-agent only starts serve binaries next to itself, and LD_LIBRARY_PATH beats the build
# tree's RUNPATH for libserve.so.
snapshot_build() {
  local build=$1 b f
  shift
  SNAP="$WORK/snap"
  mkdir -p "$SNAP/bin" "$SNAP/lib" "$SNAP/bench"
  for b in "$@"; do snap_copy "$build/bin/$b" "$SNAP/bin/"; done
  for f in "$build"/lib/libserve.so*; do
    if [[ -L $f ]]; then cp -a "$f" "$SNAP/lib/"; else snap_copy "$f" "$SNAP/lib/"; fi
  done
  snap_copy "$build"/bench/lib*.so "$SNAP/bench/"
  # shellcheck disable=SC2034  # read by the sourcing script
  BIN="$SNAP/bin" APP_DIR="$SNAP/bench"
  export LD_LIBRARY_PATH="$SNAP/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
}
# Hard links when possible (the linker replaces its output file rather than rewriting it, so a
# link keeps the old version); copies across filesystems.
snap_copy() { cp -l "$@" 2>/dev/null || cp "$@"; }

# ------------------------------------------------------------------ waiting and measuring

free_port() {
  if command -v python3 >/dev/null; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
    return
  fi
  local p
  while :; do
    p=$((20000 + RANDOM % 30000))
    ss -ltn "sport = :$p" | grep -q LISTEN || { echo "$p"; return; }
  done
}

# Polls URL until it answers 200, at most WAIT_S seconds; $2: pid that must stay alive.
wait_http() {
  local url=$1 pid=$2 i
  for ((i = 0; i < WAIT_S * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ $(curl -s -o /dev/null -m 1 -w '%{http_code}' "$url" 2>/dev/null) == 200 ]]; then return 0; fi
    sleep 0.1
  done
  return 1
}

# Waits until file $1 has a first line, at most WAIT_S seconds; prints it.
wait_line() {
  local f=$1 i
  for ((i = 0; i < WAIT_S * 10; i++)); do
    if [[ -s $f ]]; then head -1 "$f"; return 0; fi
    sleep 0.1
  done
  return 1
}

CLK_TCK=$(getconf CLK_TCK)
# "pid comm ticks" (utime+stime, fields 14 and 15) for each live pid given.
cpu_sample() {
  local p line rest
  for p in "$@"; do
    line=$(cat "/proc/$p/stat" 2>/dev/null) || continue
    local comm=${line#*(}
    comm=${comm%)*}
    rest=${line##*) }
    # rest starts at field 3 (state): utime = field 14 -> word 12, stime -> word 13.
    read -r -a f <<<"$rest"
    echo "$p ${comm// /_} $((f[11] + f[12]))"
  done
}

# cpu_delta BEFORE AFTER -> "total_us group=us,group=us" (groups by process name).
cpu_delta() {
  awk -v tck="$CLK_TCK" '
    function group(c) {
      if (c ~ /^serve-proxy/) return "proxy"
      if (c ~ /^serve-replica/) return "replica"
      if (c ~ /^serve/) return "serve-other"
      if (c ~ /^nginx/) return "nginx"
      if (c ~ /^beast_backend/) return "backend"
      if (c ~ /^asio_pingpong/) return "server"
      return c
    }
    FNR == NR { before[$1] = $3; next }
    { d = $3 - ($1 in before ? before[$1] : 0); g = group($2); by[g] += d; total += d
      if (!(g in seen)) { seen[g] = 1; order[++n] = g } }
    END {
      printf "%.0f ", total * 1e6 / tck
      for (i = 1; i <= n; i++) printf "%s%s=%.0f", (i > 1 ? "," : ""), order[i], by[order[i]] * 1e6 / tck
      printf "\n"
    }' "$1" "$2"
}

# "busy_ticks_load busy_ticks_sut nanoseconds": busy time of the two cores from /proc/stat.
core_sample() {
  awk -v a="cpu$LOAD_CPU" -v b="cpu$SUT_CPU" '
    $1 == a || $1 == b { busy = $2 + $3 + $4 + $7 + $8; v[$1] = busy }
    END { printf "%d %d ", v[a], v[b] }' /proc/stat
  date +%s%N
}

# core_busy BEFORE AFTER SUT_US LOADGEN_US -> "load%/sut% foreign%": busy share of each core,
# and CPU on the two cores used by neither the system under test nor the load generator (other
# jobs on the machine; also kernel work not charged to either), in % of one core.
core_busy() {
  awk -v tck="$CLK_TCK" -v x="$1" -v y="$2" -v sut="$3" -v gen="$4" 'BEGIN {
    split(x, p, " "); split(y, q, " "); wall = (q[3] - p[3]) / 1e9
    if (wall <= 0) { print "? ?"; exit }
    l = (q[1] - p[1]) / tck; s = (q[2] - p[2]) / tck
    f = (l + s - sut / 1e6 - gen / 1e6) / wall * 100
    printf "%.0f/%.0f %.0f", l / wall * 100, s / wall * 100, (f < 0 ? 0 : f) }'
}

# Waits until both cores are nearly idle apart from the (idle) system under test: at most
# BENCH_QUIET_WAIT seconds per call and BENCH_QUIET_BUDGET seconds for the whole run.
QUIET_WAIT=${BENCH_QUIET_WAIT:-10}
QUIET_BUDGET=${BENCH_QUIET_BUDGET:-60}
QUIET_COUNT=0
QUIET_NOTES=""
wait_quiet() {
  local waited=0 a b busy
  while :; do
    a=$(core_sample)
    sleep 0.5
    b=$(core_sample)
    busy=$(core_busy "$a" "$b" 0 0)
    busy=${busy%% *}
    if awk -v b="$busy" 'BEGIN { split(b, v, "/"); exit !(v[1] < 15 && v[2] < 15) }'; then return 0; fi
    if ((waited >= QUIET_WAIT * 2 || QUIET_BUDGET <= 0)); then
      log "machine busy (cores $busy%) before $1; measuring anyway"
      QUIET_COUNT=$((QUIET_COUNT + 1))
      ((QUIET_COUNT <= 6)) && QUIET_NOTES="$QUIET_NOTES $1 (cores $busy% busy before);"
      return 0
    fi
    waited=$((waited + 1))
    ((waited % 2 == 0)) && QUIET_BUDGET=$((QUIET_BUDGET - 1))
  done
}

# Converts wrk's "123.45us" / "1.20ms" / "1.02s" to milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "nan" }'
}

# measure SECTION SCENARIO C URL PIDS... : one pinned wrk run, CPU of PIDS around it.
measure() {
  local section=$1 scenario=$2 c=$3 url=$4
  shift 4
  local tag="${scenario}_c${c}_${section}_r${round:-1}" before="$WORK/cpu_before" after="$WORK/cpu_after"
  local out="$WORK/wrk_${tag}.txt" tf="$WORK/time_${tag}.txt"
  wait_quiet "$tag"
  cpu_sample "$@" >"$before"
  local cores_before cores_after
  cores_before=$(core_sample)
  # `time` gives the load generator's own CPU (user, sys).
  { TIMEFORMAT='%U %S'; time (timeout $((D + 20)) taskset -c "$LOAD_CPU" wrk -t1 -c"$c" -d"${D}s" \
      --latency "$url" >"$out" 2>&1 || log "wrk exited with $? for $tag"); } 2>"$tf"
  cores_after=$(core_sample)
  cpu_sample "$@" >"$after"
  local cpu gen_us
  cpu=$(cpu_delta "$before" "$after")
  gen_us=$(awk 'END { printf "%.0f", ($1 + $2) * 1e6 }' "$tf")
  local rps reqs p50 p99 errors non2xx
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
  reqs=$(awk '/requests in/ {print $1}' "$out")
  p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$out")")
  p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$out")")
  errors=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' "$out")
  errors=$((${errors:-0} + ${non2xx:-0}))
  [[ -n $rps && -n $reqs && $reqs != 0 ]] || { log "no result for $tag:"; cat "$out" >&2; rps=0; reqs=0; }
  local total=${cpu%% *} split=${cpu#* }
  local per_req
  per_req=$(awk -v t="$total" -v r="$reqs" 'BEGIN { if (r > 0) printf "%.1f", t / r; else print "nan" }')
  local split_per_req
  split_per_req=$(awk -v s="$split" -v r="$reqs" 'BEGIN {
    n = split(s, a, ","); out = ""
    for (i = 1; i <= n; i++) { split(a[i], kv, "="); if (r > 0) out = out (i > 1 ? " " : "") kv[1] " " sprintf("%.1f", kv[2] / r) }
    print out }')
  local busy foreign
  busy=$(core_busy "$cores_before" "$cores_after" "$total" "$gen_us")
  foreign=${busy#* }
  busy=${busy%% *}
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$section" "$scenario" "$c" "$rps" "$p50" \
    "$p99" "$per_req" "$split_per_req" "$errors" "$reqs" "$busy" "$foreign" "${round:-1}" >>"$RESULTS"
  log "$(printf '%-12s %-6s c=%-4s %9s rps  p50 %7s ms  p99 %7s ms  %6s CPU-µs/req  [%s]  busy %s%%  foreign %s%%  errors %s' \
    "$scenario" "$section" "$c" "$rps" "$p50" "$p99" "$per_req" "$split_per_req" "$busy" "$foreign" "$errors")"
}

not_supported() {  # SECTION SCENARIO C NOTE
  printf '%s\t%s\t%s\t-\t-\t-\t-\t%s\t-\t0\t-\t-\t1\n' "$1" "$2" "$3" "$4" >>"$RESULTS"
}

warmup() {  # URL
  timeout 20 taskset -c "$LOAD_CPU" wrk -t1 -c16 -d1s "$1" >/dev/null 2>&1 || true
}

affinity_of() { local p; for p in "$@"; do taskset -cp "$p" 2>/dev/null | awk -F': ' '{print $2}'; done | sort -u | tr '\n' ' '; }

SUT_AFFINITY=""
note_affinity() { SUT_AFFINITY="$SUT_AFFINITY $1=[$(affinity_of "${@:2}" | sed 's/ $//')]"; }

# The first of pids $2.. whose /proc/<pid>/comm is $1.
pid_named() {
  local name=$1 p
  shift
  for p in "$@"; do
    if [[ $(cat "/proc/$p/comm" 2>/dev/null) == "$name" ]]; then
      echo "$p"
      return 0
    fi
  done
  return 0
}
