"""Draining and head loss on a cluster of loopback nodes (head 127.0.0.1, workers 127.0.0.2 and
127.0.0.3): proxies run on every node with a replica; `serve drain-node` and SIGTERM to a
worker agent move its replicas away under load without a failed request, then the node leaves;
a head lost with SIGKILL leaves the workers serving, and a new head on the same Redis and
controller port takes them back without restarting their replicas."""
import os
import re
import secrets
import signal
import threading
import time

import requests

from conftest import TEST_APP_DIR, free_port, session_pids, wait_for
from conftest import kill_sessions as kill_all
from conftest import serve_in as serve
from test_fault_tolerance import Redis

HEAD_ENV = {"SERVE_NODE_HEARTBEAT_TIMEOUT_S": "5", "RAY_SERVE_PROXY_MIN_DRAINING_PERIOD_S": "1"}
WORKER_ENV = {"SERVE_NODE_HEARTBEAT_PERIOD_S": "0.3"}


def start_head(temp_dir, *extra, env=None):
    out = serve(temp_dir, "start", "--head", "--http-port", "0", "--dashboard-port", "0",
                "--app-dir", TEST_APP_DIR, "--num-cpus", "2", "--metrics-export-port", "0",
                *extra, env={**HEAD_ENV, **(env or {})})
    assert out.returncode == 0, out.stdout + out.stderr
    grab = lambda name: re.search(name + r":\s+(\S+)", out.stdout).group(1)  # noqa: E731
    return grab("HTTP proxy"), grab("REST API"), grab("Controller")


def start_worker(temp_dir, controller, ip, token_file):
    out = serve(temp_dir, "start", "--address", controller, "--node-ip", ip, "--num-cpus", "1",
                "--metrics-export-port", "0", "--token-file", token_file, env=WORKER_ENV)
    assert out.returncode == 0, out.stdout + out.stderr
    return re.search(r"Node:\s+(\S+) at " + re.escape(ip), out.stdout).group(1)


def log_tails(temp_dir, lines=15):
    """The last lines of every log of the node under `temp_dir` (for failure messages)."""
    out = []
    for path in sorted(temp_dir.glob("session_2*/logs/serve/*.log")):
        out.append(f"== {path.name}\n" + "\n".join(path.read_text(errors="replace")
                                                    .splitlines()[-lines:]))
    return "\n".join(out)


def details(rest):
    r = requests.get(rest + "/api/serve/applications/", timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def replicas(rest, app="echo"):
    d = details(rest)["applications"].get(app)
    return d["deployments"]["Echo"]["replicas"] if d else []


def deploy_echo(rest, n):
    config = {"applications": [{
        "name": "echo", "route_prefix": "/echo", "import_path": "testapps:echo_builder",
        "deployments": [{"name": "Echo", "num_replicas": n,
                         "ray_actor_options": {"num_cpus": 0.5}}]}]}
    r = requests.put(rest + "/api/serve/applications/", json=config, timeout=30)
    assert r.status_code == 200, r.text


def running_on(rest, n):
    reps = [r for r in replicas(rest) if r["state"] == "RUNNING"]
    return reps if len(reps) == n else None


def agent_pid(temp_dir):
    with open(os.path.join(temp_dir, "session_latest", "agent_pid")) as f:
        return int(f.read())


class Load:
    """Threads sending GET requests to `url` until stopped; counts answers by status."""

    def __init__(self, url, threads=4):
        self.url, self.stop_flag = url, threading.Event()
        self.ok, self.failed, self.lock = 0, [], threading.Lock()
        self.threads = [threading.Thread(target=self.run) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def run(self):
        session = requests.Session()
        deadline = time.monotonic() + 180  # bounded even if a test forgets to stop it
        while not self.stop_flag.is_set() and time.monotonic() < deadline:
            try:
                r = session.get(self.url, timeout=10)
                with self.lock:
                    if r.status_code == 200:
                        self.ok += 1
                    else:
                        self.failed.append(f"{r.status_code} {r.text[:100]}")
            except requests.RequestException as e:
                with self.lock:
                    self.failed.append(repr(e))

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(30)
        return self.ok, self.failed


def test_drain_moves_replicas_under_load_without_a_failed_request(tmp_path):
    dirs = [tmp_path / n for n in ("head", "w1", "w2")]
    for d in dirs:
        d.mkdir()
    load = None
    try:
        http, rest, controller = start_head(dirs[0])
        token = os.path.join(dirs[0], "session_latest", "cluster_token")
        w1 = start_worker(dirs[1], controller, "127.0.0.2", token)
        w2 = start_worker(dirs[2], controller, "127.0.0.3", token)
        deploy_echo(rest, 3)
        reps = wait_for(lambda: running_on(rest, 3), 90, what="3 replicas RUNNING")
        assert sorted(r["node_ip"] for r in reps) == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]

        # EveryNode: a proxy on each node with a replica, bound to the node's IP.
        def worker_proxy():
            p = details(rest)["proxies"].get(w1)
            return p if p and p["status"] == "HEALTHY" and p["http_port"] > 0 else None
        proxy = wait_for(worker_proxy, 30, what="the proxy on 127.0.0.2")
        w1_http = f"http://127.0.0.2:{proxy['http_port']}"
        assert requests.get(w1_http + "/-/healthz", timeout=10).text == "success"
        assert requests.get(w1_http + "/echo", timeout=10).status_code == 200

        load = Load(http + "/echo")
        wait_for(lambda: load.ok >= 50, 30, what="load flowing")

        # serve drain-node: the replica is PENDING_MIGRATION until its replacement runs, the
        # proxy answers 503 on /-/healthz while it drains, then the node is gone.
        out = serve(dirs[0], "drain-node", w1, "--address", rest)
        assert out.returncode == 0, out.stdout + out.stderr
        assert details(rest)["nodes"][w1]["state"] in ("DRAINING", "DEAD")

        def healthz_503():
            try:
                r = requests.get(w1_http + "/-/healthz", timeout=2)
            except requests.RequestException:
                return "gone"  # already drained: the 503 window passed
            return r.status_code == 503 and r.text
        seen = wait_for(healthz_503, 30, interval=0.01, what="the draining proxy's 503")
        assert seen in ("This node is being drained.", "gone"), seen

        def node_gone(node, temp_dir):
            d = details(rest)
            return (d["nodes"][node]["state"] == "DEAD" and node not in d["proxies"]
                    and not session_pids(str(temp_dir)))
        wait_for(lambda: node_gone(w1, dirs[1]), 60, what="the drained node to leave")
        assert all(r["node_id"] != w1 for r in wait_for(lambda: running_on(rest, 3), 60))

        # SIGTERM to a worker's agent drains its node the same way.
        os.kill(agent_pid(dirs[2]), signal.SIGTERM)
        wait_for(lambda: node_gone(w2, dirs[2]), 60, what="the SIGTERM-ed node to leave")
        reps = wait_for(lambda: running_on(rest, 3), 60, what="3 replicas RUNNING on the head")
        assert {r["node_ip"] for r in reps} == {"127.0.0.1"}

        ok, failed = load.stop()
        load = None
        assert not failed, failed[:5]
        assert ok > 100
    finally:
        if load:
            load.stop()
        kill_all(dirs)


def test_a_new_head_takes_the_workers_back_without_restarting_them(tmp_path):
    redis = Redis(tmp_path)
    dirs = [tmp_path / n for n in ("head", "w1", "head2")]
    for d in dirs:
        d.mkdir()
    token = tmp_path / "token"
    token.write_text(secrets.token_hex(32))
    token.chmod(0o600)
    port = str(free_port())
    head_args = ("--controller-port", port, "--token-file", str(token),
                 "--redis-address", f"127.0.0.1:{redis.port}")
    try:
        _, rest, controller = start_head(dirs[0], *head_args)
        w1 = start_worker(dirs[1], controller, "127.0.0.2", str(token))
        deploy_echo(rest, 2)
        reps = wait_for(lambda: running_on(rest, 2), 90, what="2 replicas RUNNING")
        kept = [r for r in reps if r["node_id"] == w1]
        assert len(kept) == 1, reps
        def worker_proxy():
            p = details(rest)["proxies"].get(w1)
            return p if p and p["status"] == "HEALTHY" and p["http_port"] > 0 else None
        proxy = wait_for(worker_proxy, 30, what="the worker's proxy HEALTHY")
        w1_http = f"http://127.0.0.2:{proxy['http_port']}"
        # Its proxy knows the local replica (it prefers it): it answers from this node.
        wait_for(lambda: requests.get(w1_http + "/echo", timeout=10).json()["node_id"] == w1, 30,
                 what="the worker's proxy to route to its own replica")

        # The head is lost: every process of its node dies at once.
        kill_all([dirs[0]])
        wait_for(lambda: not session_pids(str(dirs[0])), 15, what="the head's processes")
        # The worker keeps serving through its own proxy, with its own replica: 20 answers
        # within a bounded time (a request caught by the head's death may fail; the failures
        # are reported, and none is allowed once serving resumed).
        answers, failures = [], []

        def serve_20():
            try:
                r = requests.get(w1_http + "/echo", timeout=5)
                if r.status_code == 200 and r.json()["node_id"] == w1:
                    answers.append(r)
                else:
                    failures.append(f"{r.status_code} {r.text[:100]}")
            except requests.RequestException as e:
                failures.append(repr(e))
                assert not answers, f"a failure after serving resumed: {failures}"
            return len(answers) >= 20
        try:
            wait_for(serve_20, 60, interval=0, what="20 answers from the worker during the outage")
        except AssertionError as e:
            raise AssertionError(f"{e}; failures: {failures[:5]}; worker logs:\n"
                                 f"{log_tails(dirs[1])}") from None
        print(f"worker answered 20 requests with the head gone; failures first: {failures}")

        # A new head on the same Redis and controller port takes the worker back.
        http2, rest2, controller2 = start_head(dirs[2], *head_args)
        assert controller2 == controller

        def taken_back():
            d = details(rest2)
            if d["nodes"].get(w1, {}).get("state") != "ALIVE":
                return None
            return running_on(rest2, 2)
        reps2 = wait_for(taken_back, 60, what="the worker and 2 replicas under the new head")
        on_worker = [r for r in reps2 if r["node_id"] == w1]
        assert [(r["replica_id"], r["pid"]) for r in on_worker] == [
            (kept[0]["replica_id"], kept[0]["pid"])], reps2
        assert details(rest2)["proxies"][w1]["pid"] == proxy["pid"]  # its proxy was kept too
        assert requests.get(http2 + "/echo", timeout=10).status_code == 200
        assert requests.get(w1_http + "/echo", timeout=10).status_code == 200
    finally:
        kill_all(dirs)
        redis.stop()
