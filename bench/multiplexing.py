#!/usr/bin/env python3
"""Model-aware routing against the plain router on the same multiplexed workload
(docs/benchmarks.md, "Model multiplexing"). Python 3 standard library + requests; loopback.

    python3 bench/multiplexing.py          # ≈ 30 s

For each mode it starts `serve run multiplexed_models:build` (examples/multiplexed_models:
2 replicas, 2 models per replica, a load costing BENCH_LOAD_MS (50) ms on top of reading the
XGBoost file) on free ports in a temporary --temp-dir, warms up by asking for each of the 4
model ids once (0.4 s apart), then sends BENCH_REQUESTS (1000) POST / requests with uniformly
random model ids from BENCH_CLIENTS (8) closed-loop clients. The plain mode is the same
instance with SERVE_MULTIPLEXED_ROUTING=0 (routers ignore model ids). Reports model loads per
1,000 requests (the replicas' load counters), p50/p99 latency and requests per second, and
prints markdown rows. Every process is stopped on exit (SIGINT to `serve run`).

Environment: SERVE_BIN_DIR (build/bin), SERVE_EXAMPLES_DIR (build/examples), BENCH_REQUESTS,
BENCH_CLIENTS, BENCH_LOAD_MS.
"""
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN_DIR = os.environ.get("SERVE_BIN_DIR", os.path.join(ROOT, "build", "bin"))
EXAMPLES = os.environ.get("SERVE_EXAMPLES_DIR", os.path.join(ROOT, "build", "examples"))
APP_DIR = os.path.join(EXAMPLES, "multiplexed_models")
REQUESTS = int(os.environ.get("BENCH_REQUESTS", "1000"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "8"))
LOAD_MS = int(os.environ.get("BENCH_LOAD_MS", "50"))
MODELS = ["cancer", "wine", "iris", "diabetes"]


def rows(model):
    with open(os.path.join(APP_DIR, "models", model + ".sample.json")) as f:
        return json.load(f)["features"][:1]


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def stats(url, session):
    seen = {}
    deadline = time.time() + 10
    while len(seen) < 2 and time.time() < deadline:
        s = session.get(url + "/stats", timeout=10).json()
        seen[s["replica"]] = s
    return seen


def run_mode(name, env_extra):
    tmp = tempfile.mkdtemp(prefix="serve-bench-mux-")
    log_path = os.path.join(tmp, "serve_run.out")
    env = dict(os.environ, **env_extra)
    cmd = [os.path.join(BIN_DIR, "serve"), "run", "multiplexed_models:build", "num_replicas=2",
           "max_models=2", f"load_delay_ms={LOAD_MS}", "--http-port", "0",
           "--dashboard-port", "0", "--temp-dir", tmp, "--app-dir", APP_DIR]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        url = None
        deadline = time.time() + 60
        while url is None:
            with open(log_path) as f:
                m = re.search(r"is ready at (http://[^ ]+?)/?\.\n", f.read())
            if m:
                url = m.group(1)
            elif proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("serve run failed:\n" + open(log_path).read())
            else:
                time.sleep(0.05)
        payload = {m: json.dumps({"features": rows(m)}) for m in MODELS}
        s = requests.Session()
        for m in MODELS:
            s.post(url + "/", data=payload[m], headers={"serve_multiplexed_model_id": m},
                   timeout=10).raise_for_status()
            time.sleep(0.4)
        before = sum(v["loads"] for v in stats(url, s).values())
        rng = random.Random(7)
        order = [rng.choice(MODELS) for _ in range(REQUESTS)]
        latencies, errors, lock = [], [], threading.Lock()

        def client(k):
            sess = requests.Session()
            for i in range(k, REQUESTS, CLIENTS):
                t0 = time.perf_counter()
                r = sess.post(url + "/", data=payload[order[i]],
                              headers={"serve_multiplexed_model_id": order[i]}, timeout=30)
                dt = time.perf_counter() - t0
                with lock:
                    (latencies if r.status_code == 200 else errors).append(dt)
        start = time.perf_counter()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - start
        loads = sum(v["loads"] for v in stats(url, s).values()) - before
        return {"mode": name, "loads_per_1000": 1000.0 * loads / REQUESTS,
                "p50_ms": 1000 * percentile(latencies, 50),
                "p99_ms": 1000 * percentile(latencies, 99),
                "rps": len(latencies) / wall, "errors": len(errors)}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


def main():
    if not os.path.exists(os.path.join(APP_DIR, "libmultiplexed_models.so")):
        print("examples/multiplexed_models is not built", file=sys.stderr)
        return 1
    results = [run_mode("model-aware", {}), run_mode("plain", {"SERVE_MULTIPLEXED_ROUTING": "0"})]
    print(f"{REQUESTS} requests, {CLIENTS} clients, 2 replicas x 2 models, 4 model ids, "
          f"load {LOAD_MS} ms")
    print("| router | model loads / 1,000 req | p50 ms | p99 ms | req/s | errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['mode']} | {r['loads_per_1000']:.0f} | {r['p50_ms']:.1f} | "
              f"{r['p99_ms']:.1f} | {r['rps']:.0f} | {r['errors']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
