#!/usr/bin/env python3
"""Reaction of autoscaling to load, on real processes (docs/benchmarks.md, "Controller and
autoscaling"). Python 3 standard library + requests only; loopback; bounded in time.

    python3 bench/autoscale_reaction.py     # ≈ 1.5 minutes; BENCH_FLAP_S=20 for a quicker run

Starts a private instance (`serve start --head`, free ports, a temporary --temp-dir), deploys
testapps:autoscale_builder (Echo as deployment "Scaled": min 1, max 8, target_ongoing_requests
1, upscale_delay_s 0.5, downscale_delay_s 2, look_back_period_s 2, metrics_interval_s 0.5) and
measures, polling GET /api/serve/applications/ every 50 ms:
  (a) BENCH_REPEATS (3) + 1 load steps from 1 replica: BENCH_CLIENTS (6) clients of
      GET /?sleep_ms=100 back to back start together; time to the first target increase, to
      the first response from a replica not seen before the step, to responses from
      `clients` - 1 new replicas, and to `clients` replicas RUNNING;
  (b) after each step (load held BENCH_HOLD_S, 4 s), the load stops: time to the first target
      decrease and back to 1 RUNNING replica with target 1;
  (c) flapping: in the last step, once `clients` replicas serve, the number of
      target_num_replicas changes during BENCH_FLAP_S (60) s of the same load, with the mean
      requests in flight the clients saw (and the lowest over 2 s windows).
It runs hard links of the binaries (a concurrent rebuild of build/ does not disturb it). Every
process it starts (the instance, by `serve stop`, then by pid whatever of its work dir is left)
is stopped on exit, also on Ctrl-C or an exception. Prints a summary and markdown rows.

Environment: SERVE_BIN_DIR (build/bin), SERVE_TEST_APP_DIR (build/tests/integration, with
libtestapps.so), BENCH_CLIENTS, BENCH_SLEEP_MS (100), BENCH_REPEATS, BENCH_HOLD_S, BENCH_FLAP_S.
"""
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN_DIR = os.environ.get("SERVE_BIN_DIR", os.path.join(ROOT, "build", "bin"))
APP_DIR = os.environ.get("SERVE_TEST_APP_DIR", os.path.join(ROOT, "build", "tests", "integration"))
SERVE = os.path.join(BIN_DIR, "serve")
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "6"))
SLEEP_MS = int(os.environ.get("BENCH_SLEEP_MS", "100"))
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
HOLD_S = float(os.environ.get("BENCH_HOLD_S", "4"))
FLAP_S = float(os.environ.get("BENCH_FLAP_S", "60"))
MIN_REPLICAS, MAX_REPLICAS = 1, 8
POLL_S = 0.05
WAIT_S = 30  # bound on every wait for a scaling event
AIM_SERVING_S = 1.5
ARGS = {"min": MIN_REPLICAS, "max": MAX_REPLICAS, "target": 1, "up_delay": 0.5,
        "down_delay": 2, "look_back": 2, "interval": 0.5}


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def session_pids(work_dir):
    """Pids of the processes whose command line mentions `work_dir` (this instance's)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0] and work_dir.encode() in b" ".join(argv):
            pids.append(int(entry))
    return pids


def snapshot(dst):
    """Hard links (copies across filesystems) of the binaries, libserve.so and the test apps:
    a concurrent rebuild of build/ relinks files rather than rewriting them, so the run keeps
    one version. Returns (serve binary, app dir, lib dir)."""
    def link(src, to):
        try:
            os.link(src, to)
        except OSError:
            shutil.copy2(src, to)
    for d in ("bin", "lib", "app"):
        os.makedirs(os.path.join(dst, d))
    for b in ("serve", "serve-agent", "serve-controller", "serve-proxy", "serve-replica"):
        link(os.path.join(BIN_DIR, b), os.path.join(dst, "bin", b))
    lib_dir = os.path.join(os.path.dirname(BIN_DIR), "lib")
    for f in sorted(os.listdir(lib_dir)) if os.path.isdir(lib_dir) else []:
        if not f.startswith("libserve.so"):
            continue
        src = os.path.join(lib_dir, f)
        if os.path.islink(src):
            os.symlink(os.readlink(src), os.path.join(dst, "lib", f))
        else:
            link(src, os.path.join(dst, "lib", f))
    link(os.path.join(APP_DIR, "libtestapps.so"), os.path.join(dst, "app", "libtestapps.so"))
    return os.path.join(dst, "bin", "serve"), os.path.join(dst, "app"), os.path.join(dst, "lib")


class Instance:
    """A `serve start` instance in its own work dir, run from a snapshot of the binaries;
    stop() leaves no process behind."""

    def __init__(self):
        self.work = tempfile.mkdtemp(prefix="serve-bench-autoscale-")
        self.temp_dir = os.path.join(self.work, "serve")
        os.makedirs(self.temp_dir)
        self.serve, self.app_dir, lib = snapshot(os.path.join(self.work, "snap"))
        self.env = dict(os.environ)
        self.env["LD_LIBRARY_PATH"] = lib + (":" + self.env["LD_LIBRARY_PATH"]
                                             if self.env.get("LD_LIBRARY_PATH") else "")
        self.http = self.rest = None

    def cli(self, *args, timeout=120):
        cmd = [self.serve, *args, "--temp-dir", self.temp_dir]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.env)

    def start(self):
        out = self.cli("start", "--head", "--http-port", "0", "--dashboard-port", "0",
                       "--app-dir", self.app_dir)
        http = re.search(r"HTTP proxy:\s+(http://\S+)", out.stdout)
        rest = re.search(r"REST API:\s+(http://\S+)", out.stdout)
        if out.returncode != 0 or not http or not rest:
            raise RuntimeError("serve start failed:\n" + out.stdout + out.stderr)
        self.http, self.rest = http.group(1).rstrip("/"), rest.group(1).rstrip("/")

    def deploy(self):
        app = {"name": "scaled", "route_prefix": "/", "import_path": "testapps:autoscale_builder",
               "args": {k: str(v) for k, v in ARGS.items()},
               "deployments": [{"name": "Scaled", "graceful_shutdown_wait_loop_s": 0.2}]}
        path = os.path.join(self.work, "config.yaml")
        with open(path, "w") as f:
            json.dump({"applications": [app]}, f)  # JSON is YAML
        out = self.cli("deploy", path)
        if out.returncode != 0:
            raise RuntimeError("serve deploy failed:\n" + out.stdout + out.stderr)

    def deployment(self):
        r = requests.get(self.rest + "/api/serve/applications/", timeout=10)
        r.raise_for_status()
        app = r.json()["applications"].get("scaled")
        return app, (app or {}).get("deployments", {}).get("Scaled")

    def stop(self):
        try:
            self.cli("stop", timeout=120)
        except Exception as e:  # noqa: BLE001 - fall through to the pid sweep
            print(f"serve stop failed: {e!r}", file=sys.stderr)
        deadline = time.monotonic() + 20
        while session_pids(self.work) and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in session_pids(self.work):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree(self.work, ignore_errors=True)


class Poller:
    """GET /api/serve/applications/ every 50 ms: (t, target, RUNNING replica ids)."""

    def __init__(self, inst):
        self.inst = inst
        self.samples = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop_event.is_set():
            t = time.monotonic()
            try:
                _, dep = self.inst.deployment()
                if dep:
                    running = {r["replica_id"] for r in dep["replicas"] if r["state"] == "RUNNING"}
                    with self.lock:
                        self.samples.append((t, dep["target_num_replicas"], running))
            except Exception:  # noqa: BLE001 - keep polling
                pass
            self.stop_event.wait(max(0.0, POLL_S - (time.monotonic() - t)))

    def since(self, t0):
        with self.lock:
            return [s for s in self.samples if s[0] >= t0]

    def latest(self):
        with self.lock:
            return self.samples[-1] if self.samples else None

    def wait(self, predicate, t0, what):
        """The first sample at or after t0 that satisfies predicate(target, running)."""
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            for s in self.since(t0):
                if predicate(s[1], s[2]):
                    return s
            time.sleep(POLL_S / 2)
        raise RuntimeError(f"timed out after {WAIT_S}s waiting for {what}")

    def stop(self):
        self.stop_event.set()
        self.thread.join(timeout=15)


class Load:
    """`clients` threads sending GET /?sleep_ms=N back to back; records (t, replica id)."""

    def __init__(self, url, clients):
        self.url = f"{url}/?sleep_ms={SLEEP_MS}"
        self.responses = []
        self.errors = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self.run, daemon=True) for _ in range(clients)]
        self.t0 = time.monotonic()
        for t in self.threads:
            t.start()

    def run(self):
        with requests.Session() as s:
            while not self.stop_event.is_set():
                start = time.monotonic()
                try:
                    r = s.get(self.url, timeout=30)
                    replica = r.json().get("replica") if r.status_code == 200 else None
                    err = None if replica else f"{r.status_code} {r.text[:100]}"
                except Exception as e:  # noqa: BLE001
                    replica, err = None, repr(e)[:200]
                with self.lock:
                    if err is None:
                        self.responses.append((time.monotonic(), replica, start))
                    else:
                        self.errors.append(err)

    def first_response_from(self, known, count=1):
        """Seconds from the start to the time `count` replicas outside `known` had answered."""
        seen = set()
        with self.lock:
            for t, replica, _ in self.responses:
                if replica not in known and replica not in seen:
                    seen.add(replica)
                    if len(seen) >= count:
                        return t - self.t0
        return None

    def in_flight(self, a, b):
        """Mean number of requests in flight over [a, b], as the clients saw them."""
        with self.lock:
            busy = sum(max(0.0, min(end, b) - max(start, a)) for end, _, start in self.responses)
        return busy / (b - a)

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=40)
        if any(t.is_alive() for t in self.threads):
            raise RuntimeError("load threads did not stop")


def target_changes(samples):
    """(t, old, new) for every change of the target in `samples`."""
    out = []
    for prev, cur in zip(samples, samples[1:]):
        if cur[1] != prev[1]:
            out.append((cur[0], prev[1], cur[1]))
    return out


def summary(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return "n/a"
    return f"{statistics.median(vals):.2f} (min {min(vals):.2f}, max {max(vals):.2f})"


def main():
    for path in (SERVE, os.path.join(APP_DIR, "libtestapps.so")):
        if not os.path.exists(path):
            sys.exit(f"missing {path}: ninja -C build serve serve-agent serve-controller "
                     "serve-proxy serve-replica testapps")
    print(f"machine: {os.cpu_count()} CPUs, load average before: {loadavg()}")
    inst = Instance()
    poller = None
    loads = []

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_signal)
    results = {"up": [], "down": []}
    flaps = None
    try:
        inst.start()
        inst.deploy()
        deadline = time.monotonic() + 60
        while True:
            app, dep = inst.deployment()
            if app and app["status"] == "RUNNING" and dep and dep["target_num_replicas"] == 1:
                break
            if app and app["status"] == "DEPLOY_FAILED":
                raise RuntimeError(f"deploy failed: {app.get('message')}")
            if time.monotonic() > deadline:
                raise RuntimeError("the application did not become RUNNING within 60 s")
            time.sleep(0.1)
        poller = Poller(inst)
        expected = min(MAX_REPLICAS, math.ceil(CLIENTS / ARGS["target"]))
        for i in range(REPEATS + 1):
            flap_round = i == REPEATS
            # Start from min replicas, with the router knowing only those.
            poller.wait(lambda tgt, run: tgt == MIN_REPLICAS and len(run) == MIN_REPLICAS,
                        time.monotonic(), "min replicas before the step")
            known = set(poller.latest()[2])
            time.sleep(1.0)
            load = Load(inst.http, CLIENTS)
            loads.append(load)
            t0 = load.t0
            first_change = poller.wait(lambda tgt, run: tgt > MIN_REPLICAS, t0, "a target increase")
            reached = poller.wait(lambda tgt, run: len(run) >= expected, t0,
                                  f"{expected} RUNNING replicas")
            deadline = time.monotonic() + WAIT_S
            while load.first_response_from(known, expected - MIN_REPLICAS) is None:
                if time.monotonic() > deadline:
                    break
                time.sleep(POLL_S)
            up = {"first_new_serving_s": load.first_response_from(known),
                  "all_new_serving_s": load.first_response_from(known, expected - MIN_REPLICAS),
                  "first_decision_s": first_change[0] - t0,
                  "target_running_s": reached[0] - t0,
                  "changes": [(round(t - t0, 2), a, b)
                              for t, a, b in target_changes(poller.since(t0 - POLL_S))]}
            if flap_round:
                t_flap = time.monotonic()
                time.sleep(FLAP_S)
                window = poller.since(t_flap - POLL_S)
                changes = target_changes(window)
                t_flap_end = time.monotonic()
                # Client-side requests in flight: over the window, and the lowest over 2 s
                # (the look-back period) windows, every 0.5 s.
                lows = [load.in_flight(a, a + 2) for a in
                        (t_flap + 0.5 * k for k in range(int((t_flap_end - t_flap - 2) / 0.5) + 1))]
                flaps = {"seconds": FLAP_S, "changes": len(changes),
                         "targets": sorted({s[1] for s in window}),
                         "running": sorted({len(s[2]) for s in window}),
                         "in_flight": round(load.in_flight(t_flap, t_flap_end), 2),
                         "in_flight_min_2s": round(min(lows), 2) if lows else None,
                         "detail": [(round(t - t_flap, 2), a, b) for t, a, b in changes]}
                print(f"flapping: {json.dumps(flaps)}", flush=True)
            else:
                time.sleep(max(0.0, HOLD_S - (time.monotonic() - t0)))
            results["up"].append(up)
            t_end = time.monotonic()
            load.stop()
            if load.errors:
                print(f"round {i}: {len(load.errors)} failed requests, e.g. {load.errors[:3]}")
            first_down = poller.wait(lambda tgt, run: tgt < expected, t_end, "a target decrease")
            back = poller.wait(lambda tgt, run: tgt == MIN_REPLICAS and len(run) == MIN_REPLICAS,
                               t_end, "back to min replicas")
            down = {"first_decision_s": first_down[0] - t_end,
                    "min_running_s": back[0] - t_end,
                    "changes": [(round(t - t_end, 2), a, b)
                                for t, a, b in target_changes(poller.since(t_end - POLL_S))
                                if t <= back[0]]}
            results["down"].append(down)
            label = "flap round" if flap_round else f"round {i + 1}"
            print(f"{label}: up {json.dumps(up)}\n    down {json.dumps(down)}", flush=True)
    except KeyboardInterrupt:
        print("interrupted; stopping the instance", file=sys.stderr)
        return 130
    finally:
        for load in loads:
            load.stop_event.set()
        for load in loads:
            try:
                load.stop()
            except RuntimeError:
                pass
        if poller:
            poller.stop()
        inst.stop()

    ups = results["up"]
    downs = results["down"]
    first_serving = [u["first_new_serving_s"] for u in ups]
    print(f"\nload average after: {loadavg()}")
    print(f"{CLIENTS} clients x GET /?sleep_ms={SLEEP_MS}; autoscaling {ARGS}; "
          f"{len(ups)} steps (medians, min, max in s)")
    rows = [
        ("step → first target increase", summary([u["first_decision_s"] for u in ups])),
        ("step → first response from a new replica", summary(first_serving)),
        (f"step → responses from {expected - MIN_REPLICAS} new replicas",
         summary([u["all_new_serving_s"] for u in ups])),
        (f"step → {expected} replicas RUNNING", summary([u["target_running_s"] for u in ups])),
        ("load end → first target decrease", summary([d["first_decision_s"] for d in downs])),
        (f"load end → back to {MIN_REPLICAS} RUNNING",
         summary([d["min_running_s"] for d in downs])),
    ]
    if flaps:
        rows.append((f"target changes during {FLAP_S:g} s of constant load",
                     f"{flaps['changes']} (targets seen {flaps['targets']}, RUNNING counts "
                     f"{flaps['running']}; requests in flight {flaps['in_flight']}, lowest over "
                     f"2 s {flaps['in_flight_min_2s']})"))
    print("\n| measure | seconds |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")
    met = all(x is not None and x <= AIM_SERVING_S for x in first_serving)
    print(f"\naim: a new replica serving within {AIM_SERVING_S} s of the step: "
          f"{'met' if met else 'NOT met'}; no flapping under steady load: "
          f"{'met' if flaps and flaps['changes'] == 0 else 'NOT met' if flaps else 'n/a'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
