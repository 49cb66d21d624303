#!/usr/bin/env python3
"""Batching benchmark: digits inference (examples/digits) with serve::Batcher (max_batch_size 32,
batch_wait_timeout_s 0, i.e. opportunistic) against the same deployment with batching=false,
at wrk concurrency 1/16/64. Reports rps, p50/p99 latency, CPU-us per request (utime + stime of
every process of the `serve run` session, after minus before each wrk run, over the requests
completed) and the mean batch size the model saw (the replica's /stats).

    python3 bench/batching.py [--build build] [--duration 5] [--conc 1,16,64]

Needs wrk and a build with examples/digits (libopenblas-dev, python3-numpy, the digits data). The two modes
run one after the other in the same invocation; compare rows of the same run only.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")


def children(root):
    """Every descendant pid of `root`, and root."""
    parent = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                parent[int(d)] = int(fields[1])
            except OSError:
                pass
    out, todo = {root}, [root]
    while todo:
        p = todo.pop()
        for c, pp in parent.items():
            if pp == p and c not in out:
                out.add(c)
                todo.append(c)
    return out


def cpu_us(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) * TICK_US
        except OSError:
            pass
    return total


def to_ms(s):
    m = re.match(r"([\d.]+)(us|ms|s)", s)
    v = float(m.group(1))
    return {"us": v / 1000, "ms": v, "s": v * 1000}[m.group(2)]


def start_serve(serve, app_dir, args, tmp):
    log = open(os.path.join(tmp, "serve.out"), "w")
    proc = subprocess.Popen([serve, "run", "digits:build", *args, "--http-port", "0",
                             "--dashboard-port", "0", "--temp-dir", tmp, "--app-dir", app_dir],
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        with open(log.name) as f:
            m = re.search(r"is ready at (http://[^ ]+?)/?\.\n", f.read())
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    with open(log.name) as f:
        sys.exit("serve run did not become ready:\n" + f.read())


def get_json(url, method="GET"):
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--conc", default="1,16,64")
    opts = ap.parse_args()
    serve = os.path.join(opts.build, "bin", "serve")
    app_dir = os.path.join(opts.build, "examples", "digits")
    with open(os.path.join(app_dir, "digits_model.json")) as f:
        x = json.load(f)["test"]["x"]
    work = tempfile.mkdtemp(prefix="serve-bench-batching-")
    lua = os.path.join(work, "post.lua")
    with open(lua, "w") as f:
        f.write('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n')
        f.write("wrk.body = '" + json.dumps({"pixels": x[0]}) + "'\n")
    rows = []
    for mode, args in (("batched (max 32)", ["max_batch_size=32", "batch_wait_timeout_s=0"]),
                       ("unbatched", ["batching=false"])):
        tmp = os.path.join(work, mode.split()[0])
        os.makedirs(tmp)
        proc, url = start_serve(serve, app_dir, args, tmp)
        try:
            for c in [int(v) for v in opts.conc.split(",")]:
                subprocess.run(["wrk", "-t1", f"-c{c}", "-d1s", "-s", lua, url + "/"],
                               capture_output=True, check=True)  # warm-up
                get_json(url + "/stats/reset", "POST")
                pids = children(proc.pid)
                before = cpu_us(pids)
                out = subprocess.run(["wrk", "-t1", f"-c{c}", f"-d{opts.duration}s", "--latency",
                                      "-s", lua, url + "/"],
                                     capture_output=True, text=True, check=True).stdout
                cpu = cpu_us(pids) - before
                n = int(re.search(r"(\d+) requests in", out).group(1))
                errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
                stats = get_json(url + "/stats")
                rows.append({
                    "mode": mode, "c": c,
                    "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
                    "p50": to_ms(re.search(r"50%\s+(\S+)", out).group(1)),
                    "p99": to_ms(re.search(r"99%\s+(\S+)", out).group(1)),
                    "cpu_us": cpu / max(n, 1),
                    "batch": stats["requests"] / max(stats["batches"], 1),
                    "errors": int(errors.group(1)) if errors else 0,
                })
                print(json.dumps(rows[-1]), file=sys.stderr)
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=60)
    print("| mode | c | rps | p50 ms | p99 ms | CPU-µs/req | mean batch | errors |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['mode']} | {r['c']} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
              f"{r['cpu_us']:.0f} | {r['batch']:.1f} | {r['errors']} |")
    base = {r["c"]: r for r in rows if r["mode"] == "unbatched"}
    for r in rows:
        if r["mode"] != "unbatched" and r["c"] in base:
            print(f"c={r['c']}: batched/unbatched throughput {r['rps'] / base[r['c']]['rps']:.2f}x, "
                  f"p99 {r['p99']:.2f} vs {base[r['c']]['p99']:.2f} ms")


if __name__ == "__main__":
    main()
