"""Helpers for integration tests: run the real `serve` binaries in a private temp dir, wait on
conditions with deadlines, and make sure every process a test started is gone afterwards."""
import os
import re
import signal
import socket
import subprocess
import time

import pytest
import requests
import yaml

BIN_DIR = os.environ.get("SERVE_BIN_DIR", os.path.join(os.path.dirname(__file__), "../../build/bin"))
SERVE = os.path.join(BIN_DIR, "serve")
TEST_APP_DIR = os.environ.get("SERVE_TEST_APP_DIR", "")
EXAMPLES_DIR = os.environ.get("SERVE_EXAMPLES_DIR", "")


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago (for a server the test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cmake_build(src, build, prefix):
    """Configures (Ninja) and builds the CMake project `src` in `build` against the serve SDK
    installed under `prefix`; fails the test with CMake's output when either step fails."""
    cfg = subprocess.run(["cmake", "-S", str(src), "-B", str(build), "-G", "Ninja",
                          f"-DCMAKE_PREFIX_PATH={prefix}"], capture_output=True, text=True,
                         timeout=120)
    assert cfg.returncode == 0, cfg.stdout + cfg.stderr
    out = subprocess.run(["cmake", "--build", str(build)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def wait_for(predicate, timeout, interval=0.05, what="condition"):
    """Polls `predicate` until it returns a truthy value; fails the test after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - keep polling, report the last error
            last_exc = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last error: {last_exc}")


def session_pids(temp_dir):
    """Pids of every process whose command line mentions `temp_dir` (the cluster's processes)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if not argv or not argv[0] or b"python" in os.path.basename(argv[0]):
            continue  # the test runner itself
        if temp_dir.encode() in b" ".join(argv):
            pids.append(int(entry))
    return pids


def replica_addresses(session_dir, prefix="replica_"):
    """(data plane, control) addresses of the first replica whose log (under `session_dir`,
    file name starting with `prefix`) has its ready line; waits up to 30 s for one."""
    logs = os.path.join(session_dir, "logs", "serve")

    def ready_line():
        for name in os.listdir(logs):
            if name.startswith(prefix):
                with open(os.path.join(logs, name)) as f:
                    m = re.search(r"is ready: data plane (\S+), control (\S+)\.", f.read())
                if m:
                    return m.group(1), m.group(2)
        return None
    return wait_for(ready_line, 30, what="the replica's ready line")


def serve_in(temp_dir, *args, env=None, timeout=90):
    """`serve <args> --temp-dir <temp_dir>` with `env` added to the environment; the completed
    process (output captured as text)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([SERVE, *args, "--temp-dir", str(temp_dir)], capture_output=True,
                          text=True, timeout=timeout, env=full_env)


def kill_sessions(dirs):
    """SIGKILLs every process of the clusters under each temp dir of `dirs` (test cleanup)."""
    for d in dirs:
        for pid in session_pids(str(d)):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def process_cmdline(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().split(b"\0")


class ServeRun:
    """`serve run` as a user starts it, on a free HTTP port, in a private temp dir."""

    def __init__(self, temp_dir, import_path, *args, app_dir=None, env=None):
        self.temp_dir = str(temp_dir)
        self.log_path = os.path.join(self.temp_dir, "serve_run.out")
        os.makedirs(self.temp_dir, exist_ok=True)
        cmd = [SERVE, "run", import_path, *args, "--http-port", "0", "--dashboard-port", "0",
               "--temp-dir", self.temp_dir]
        if app_dir:
            cmd += ["--app-dir", app_dir]
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=full_env)
        self.url = None

    def output(self):
        with open(self.log_path) as f:
            return f.read()

    def wait_ready(self, timeout=60):
        def ready():
            m = re.search(r"is ready at (https?://[^ ]+?)/?\.\n", self.output())
            if m:
                return m.group(1)
            if self.proc.poll() is not None:
                raise AssertionError("serve run exited early:\n" + self.output())
            return None
        self.url = wait_for(ready, timeout, what="the application to be ready")
        return self.url

    def wait_exit(self, timeout=60):
        return self.proc.wait(timeout=timeout)

    def status(self, name=None):
        cmd = [SERVE, "status", "--temp-dir", self.temp_dir]
        if name:
            cmd += ["--name", name]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return yaml.safe_load(out.stdout)

    def session_dir(self):
        return os.path.realpath(os.path.join(self.temp_dir, "session_latest"))

    def replica_pids(self):
        return [p for p in session_pids(self.temp_dir)
                if process_cmdline(p)[0].endswith(b"serve-replica") and b"--replica-id" in process_cmdline(p)]

    def stop(self, sig=signal.SIGINT, timeout=60):
        """Ctrl-C, then assert that serve run exited and no cluster process is left."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("serve run did not exit after signal:\n" + self.output())
        self.log.close()
        wait_for(lambda: not session_pids(self.temp_dir), 15, what="every cluster process to exit")
        return self.proc.returncode


def stop_all(clusters):
    """Fixture teardown: stops each cluster (ServeRun / ServeInstance), SIGKILLs anything of its
    session still alive, and fails the test if something had to be killed or stop failed."""
    errors = []
    for cluster in clusters:
        try:
            cluster.stop()
        except AssertionError as e:
            errors.append(str(e))
        leftovers = session_pids(cluster.temp_dir)
        for pid in leftovers:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if leftovers:
            errors.append(f"processes left behind: {leftovers}")
    assert not errors, "\n".join(errors)


@pytest.fixture
def serve_run(tmp_path):
    """Factory fixture: serve_run(import_path, *args, app_dir=...) -> ServeRun; torn down after."""
    runs = []

    def start(import_path, *args, app_dir=None, env=None):
        run = ServeRun(tmp_path / f"run{len(runs)}", import_path, *args, app_dir=app_dir, env=env)
        runs.append(run)
        return run

    yield start
    stop_all(runs)


def get(url, **kwargs):
    kwargs.setdefault("timeout", 10)
    return requests.get(url, **kwargs)


class ServeInstance:
    """A long-lived instance from `serve start`, stopped with `serve stop`."""

    def __init__(self, temp_dir, app_dir):
        self.temp_dir = str(temp_dir)
        os.makedirs(self.temp_dir, exist_ok=True)
        out = self.cli("start", "--head", "--http-port", "0", "--dashboard-port", "0",
                       "--app-dir", app_dir, timeout=60)
        http = re.search(r"HTTP proxy:\s+(http://\S+)", out.stdout)
        rest = re.search(r"REST API:\s+(http://\S+)", out.stdout)
        if out.returncode != 0 or not http or not rest:
            for pid in session_pids(self.temp_dir):  # a half-started instance: stop it here
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            raise AssertionError("serve start failed:\n" + out.stdout + out.stderr)
        self.http, self.rest = http.group(1), rest.group(1)

    def cli(self, *args, timeout=60, check=False, input=None):
        cmd = [SERVE, *args]
        if args[0] in ("start", "stop", "deploy", "config", "status", "shutdown"):
            cmd += ["--temp-dir", self.temp_dir]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
        if check:
            assert out.returncode == 0, out.stdout + out.stderr
        return out

    def details(self):
        r = requests.get(self.rest + "/api/serve/applications/", timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def app_status(self, name):
        return self.details()["applications"].get(name, {}).get("status")

    def wait_running(self, *names, timeout=60):
        def ok():
            apps = self.details()["applications"]
            for n in names:
                if n in apps and apps[n]["status"] == "DEPLOY_FAILED":
                    raise AssertionError(f"{n} DEPLOY_FAILED: {apps[n]['message']}")
            return all(n in apps and apps[n]["status"] == "RUNNING" for n in names)
        wait_for(ok, timeout, what=f"{names} RUNNING")

    def replica_pids(self, app, deployment):
        dep = self.details()["applications"][app]["deployments"][deployment]
        return sorted(r["pid"] for r in dep["replicas"] if r["state"] == "RUNNING")

    def stop(self):
        out = self.cli("stop", timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        wait_for(lambda: not session_pids(self.temp_dir), 20, what="every cluster process to exit")


@pytest.fixture
def serve_instance(tmp_path):
    instances = []

    def start(app_dir):
        inst = ServeInstance(tmp_path / f"inst{len(instances)}", app_dir)
        instances.append(inst)
        return inst

    yield start
    stop_all(instances)


# Sanitizer builds (docs/sanitizers.md): CTest points ASAN/UBSAN/TSAN_OPTIONS' log_path into
# SERVE_SANITIZER_LOG_DIR, so every report of any serve process lands there as <tool>.<pid>.
SANITIZER_LOG_DIR = os.environ.get("SERVE_SANITIZER_LOG_DIR", "")


@pytest.fixture(autouse=True)
def no_sanitizer_reports():
    """Fails the test when a sanitizer report appeared while it ran (set up first, so checked
    after the cluster fixtures stopped their processes)."""
    if not SANITIZER_LOG_DIR:
        yield
        return
    os.makedirs(SANITIZER_LOG_DIR, exist_ok=True)
    before = set(os.listdir(SANITIZER_LOG_DIR))
    yield
    reports = sorted(set(os.listdir(SANITIZER_LOG_DIR)) - before)
    texts = []
    for name in reports:
        with open(os.path.join(SANITIZER_LOG_DIR, name), errors="replace") as f:
            texts.append(f"--- {name}\n{f.read()[:20000]}")
    if texts:
        pytest.fail("sanitizer reports:\n" + "\n".join(texts), pytrace=False)
