"""Fault tolerance: health checks, graceful scale-down, controller and proxy restarts,
whole-head restart from the file store and from Redis, bad state."""
import os
import signal
import subprocess
import threading
import time

import requests
import yaml

from conftest import SERVE, ServeInstance, TEST_APP_DIR, free_port, get, session_pids, wait_for


def write_config(tmp_path, doc, name="config.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def echo_config(replicas=2):
    return {"applications": [{"name": "echo", "route_prefix": "/", "import_path":
                              "testapps:echo_builder",
                              "deployments": [{"name": "Echo", "num_replicas": replicas,
                                               "graceful_shutdown_wait_loop_s": 0.2}]}]}


class Load:
    """A bounded request loop in threads; counts ok and failed requests."""

    def __init__(self, url, threads=4, path="/"):
        self.url, self.path = url, path
        self.ok, self.failed, self.errors = 0, 0, []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self.run) for _ in range(threads)]
        for t in self.threads:
            t.start()

    def run(self):
        with requests.Session() as s:
            while not self.stop_event.is_set():
                try:
                    r = s.get(self.url + self.path, timeout=30)
                    good = r.status_code == 200
                    err = None if good else f"{r.status_code} {r.text[:100]}"
                except Exception as e:  # noqa: BLE001
                    good, err = False, repr(e)[:200]
                with self.lock:
                    if good:
                        self.ok += 1
                    else:
                        self.failed += 1
                        self.errors.append(err)

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join()


def process_with_tag(inst, name):
    return [p for p in session_pids(inst.temp_dir)
            if os.path.basename(open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")[0]) == name]


def test_failing_health_check_replaces_the_replica(serve_run):
    run = serve_run("testapps:flaky", app_dir=TEST_APP_DIR)
    url = run.wait_ready()
    first = get(url + "/").json()["replica"]
    assert get(url + "/?sick=1").json()["replica"] == first
    # 3 failed checks at 0.2 s -> UNHEALTHY -> replaced -> HEALTHY again with a new replica.
    # Status and trigger from one read: the replacement may be HEALTHY by the next one.
    def unhealthy():
        dep = run.status()["applications"]["default"]["deployments"]["Flaky"]
        return dep if dep["status"] == "UNHEALTHY" else None
    dep = wait_for(unhealthy, 15, interval=0.02, what="UNHEALTHY")
    assert dep["status_trigger"] == "HEALTH_CHECK_FAILED"
    assert "replica feels sick" in dep["message"]
    wait_for(lambda: get(url + "/").json()["replica"] != first, 15, what="a new replica")
    wait_for(lambda: run.status()["applications"]["default"]["deployments"]["Flaky"]["status"]
             == "HEALTHY", 15, what="HEALTHY again")


def test_scale_down_under_load_loses_no_request(serve_instance, tmp_path):
    inst = serve_instance(TEST_APP_DIR)
    inst.cli("deploy", write_config(tmp_path, echo_config(3)), check=True)
    inst.wait_running("echo")
    load = Load(inst.http, path="/?sleep_ms=100")
    try:
        wait_for(lambda: load.ok >= 8, 30, what="load flowing")
        inst.cli("deploy", write_config(tmp_path, echo_config(1), "c2.yaml"), check=True)
        wait_for(lambda: len(inst.replica_pids("echo", "Echo")) == 1 and
                 len(inst.details()["applications"]["echo"]["deployments"]["Echo"]["replicas"]) == 1,
                 30, what="scaled down to 1")
        served = load.ok
        wait_for(lambda: load.ok >= served + 8, 30, what="load served after the scale-down")
    finally:
        load.stop()
    assert load.failed == 0, load.errors[:5]
    assert load.ok > 10


def test_controller_restart_adopts_replicas_and_serving_continues(serve_instance, tmp_path):
    inst = serve_instance(TEST_APP_DIR)
    inst.cli("deploy", write_config(tmp_path, echo_config(2)), check=True)
    inst.wait_running("echo")
    pids = inst.replica_pids("echo", "Echo")
    [controller] = process_with_tag(inst, b"serve-controller")
    load = Load(inst.http)
    try:
        os.kill(controller, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: process_with_tag(inst, b"serve-controller") not in ([], [controller]),
                 15, what="a new controller process")
        wait_for(lambda: inst.app_status("echo") == "RUNNING", 30, what="RUNNING after restart")
        recovery = time.monotonic() - killed
        served = load.ok
        wait_for(lambda: load.ok >= served + 20, 30, what="load served after the restart")
    finally:
        load.stop()
    assert load.failed == 0, load.errors[:5]
    assert load.ok > 20
    # Same replica processes: adopted, not restarted.
    assert inst.replica_pids("echo", "Echo") == pids
    assert recovery < 15
    # The restarted controller still manages the app (scale up works).
    inst.cli("deploy", write_config(tmp_path, echo_config(3), "c2.yaml"), check=True)
    wait_for(lambda: len(inst.replica_pids("echo", "Echo")) == 3, 30, what="scale up")
    log = open(os.path.join(inst.temp_dir, "session_latest", "logs", "serve", "agent.log")).read()
    assert "restarting it" in log


def test_proxy_restart(serve_instance, tmp_path):
    inst = serve_instance(TEST_APP_DIR)
    inst.cli("deploy", write_config(tmp_path, echo_config(1)), check=True)
    inst.wait_running("echo")
    [proxy] = process_with_tag(inst, b"serve-proxy")
    os.kill(proxy, signal.SIGKILL)
    answers = []

    def back():
        try:
            r = requests.get(inst.http + "/", timeout=5)
        except requests.exceptions.ConnectionError:
            return False  # not listening yet
        answers.append(r.status_code)
        return r.status_code == 200 and process_with_tag(inst, b"serve-proxy") not in ([], [proxy])
    wait_for(back, 15, interval=0.002, what="the proxy back on the same port")
    # The new proxy holds connections until it knows the routes: never a 404 for a live app.
    assert set(answers) == {200}, answers
    status = yaml.safe_load(inst.cli("status", check=True).stdout)
    assert list(status["proxies"].values()) == ["HEALTHY"]


def kill_everything(inst):
    for pid in session_pids(inst.temp_dir):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    wait_for(lambda: not session_pids(inst.temp_dir), 15, what="all processes dead")


def test_whole_head_restart_from_the_file_store(serve_instance, tmp_path):
    inst = serve_instance(TEST_APP_DIR)
    inst.cli("deploy", write_config(tmp_path, echo_config(2)), check=True)
    inst.wait_running("echo")
    session = os.path.realpath(os.path.join(inst.temp_dir, "session_latest"))
    kill_everything(inst)
    out = inst.cli("start", "--head", "--http-port", "0", "--dashboard-port", "0", "--app-dir",
                   TEST_APP_DIR, "--session-dir", session, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    import re
    inst.http = re.search(r"HTTP proxy:\s+(http://\S+)", out.stdout).group(1)
    inst.rest = re.search(r"REST API:\s+(http://\S+)", out.stdout).group(1)
    inst.wait_running("echo")
    assert len(inst.replica_pids("echo", "Echo")) == 2
    assert get(inst.http + "/").status_code == 200


class Redis:
    def __init__(self, tmp_path, port=None):
        self.port = port or free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(tmp_path)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: subprocess.run(["redis-cli", "-p", str(self.port), "ping"],
                                        capture_output=True, text=True).stdout.strip() == "PONG",
                 10, what="redis-server")

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                              text=True, timeout=10).stdout

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def start_with_redis(tmp_path, name, redis_port):
    env = dict(os.environ, SERVE_REDIS_ADDRESS=f"127.0.0.1:{redis_port}")
    old = os.environ.get("SERVE_REDIS_ADDRESS")
    os.environ["SERVE_REDIS_ADDRESS"] = env["SERVE_REDIS_ADDRESS"]
    try:
        return ServeInstance(tmp_path / name, TEST_APP_DIR)
    finally:
        if old is None:
            del os.environ["SERVE_REDIS_ADDRESS"]
        else:
            os.environ["SERVE_REDIS_ADDRESS"] = old


def test_redis_backed_state_survives_a_new_head(tmp_path):
    redis = Redis(tmp_path)
    instances = []
    try:
        a = start_with_redis(tmp_path, "a", redis.port)
        instances.append(a)
        a.cli("deploy", write_config(tmp_path, echo_config(2)), check=True)
        a.wait_running("echo")
        assert "serve:default:serve-controller-checkpoint" in redis.cli("keys", "*")
        kill_everything(a)
        # A brand-new session on the same Redis brings the applications back.
        b = start_with_redis(tmp_path, "b", redis.port)
        instances.append(b)
        b.wait_running("echo")
        assert len(b.replica_pids("echo", "Echo")) == 2
        assert get(b.http + "/").status_code == 200

        # Redis lost while running: serving continues; the controller catches up afterwards.
        redis.stop()
        assert get(b.http + "/").status_code == 200
        b.cli("deploy", write_config(tmp_path, echo_config(3), "c3.yaml"), check=True)
        wait_for(lambda: len(b.replica_pids("echo", "Echo")) == 3, 30, what="scale up without Redis")
        # Redis comes back (empty) on the same port: the controller writes its state again.
        redis = Redis(tmp_path, port=redis.port)
        wait_for(lambda: "serve-controller-checkpoint" in redis.cli("keys", "*"), 30,
                 what="the checkpoint rewritten after Redis returned")
    finally:
        for inst in instances:
            try:
                inst.stop()
            except AssertionError:
                kill_everything(inst)
        redis.stop()


def test_redis_unreachable_at_start_is_a_clear_error(tmp_path):
    port = free_port()  # nothing listens there
    out = subprocess.run([SERVE, "start", "--head", "--http-port", "0", "--dashboard-port", "0",
                          "--temp-dir", str(tmp_path), "--redis-address", f"127.0.0.1:{port}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "cannot open the state store" in (out.stdout + out.stderr).lower() or \
        "Cannot open the state store" in out.stdout + out.stderr
    assert f"127.0.0.1:{port}" in out.stdout + out.stderr
    wait_for(lambda: not session_pids(str(tmp_path)), 15, what="nothing left running")


def test_corrupt_checkpoint_starts_clean(tmp_path):
    redis = Redis(tmp_path)
    inst = None
    try:
        redis.cli("set", "serve:default:serve-controller-checkpoint", "this is not msgpack")
        inst = start_with_redis(tmp_path, "c", redis.port)
        assert inst.details()["applications"] == {}
        assert "corrupt" in redis.cli("keys", "*")
        inst.cli("deploy", write_config(tmp_path, echo_config(1)), check=True)
        inst.wait_running("echo")
    finally:
        if inst:
            inst.stop()
        redis.stop()
