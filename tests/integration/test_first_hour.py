"""The first hour of a new user: start-up failures reported at once by the command that was
run, restart loops that back off, builder errors that name the builder, unknown config keys,
and follow-up hints that reach the right instance."""
import glob
import os
import re
import shlex
import signal
import socket
import subprocess
import time

import yaml

from conftest import (EXAMPLES_DIR, SERVE, TEST_APP_DIR, ServeRun, get, process_cmdline,
                      session_pids, wait_for)

QUICKSTART_DIR = os.path.join(EXAMPLES_DIR, "quickstart")
GREETER_DIR = os.path.join(EXAMPLES_DIR, "greeter")
SOURCE_PATH = re.compile(r"\.(hpp|h|cc|cpp):\d+")


def busy_port():
    """A listening socket on 127.0.0.1 (another program holding the port) and its port."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s, s.getsockname()[1]


def hold_port(port, timeout=2.0):
    """Binds `port` as soon as it is free (within `timeout`); None when it never was."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = socket.socket()
        # Past connections in TIME_WAIT do not stop us; a listener (the restarted process) does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
            return s
        except OSError:
            s.close()
    return None


def serve(*args, env=None, timeout=60):
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([SERVE, *args], capture_output=True, text=True, timeout=timeout,
                          env=full_env)


def assert_nothing_left(temp_dir):
    wait_for(lambda: not session_pids(str(temp_dir)), 15, what="every process of the session to exit")


def kill_leftovers(temp_dir):
    for pid in session_pids(str(temp_dir)):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def pids_of(temp_dir, binary):
    return [p for p in session_pids(str(temp_dir)) if process_cmdline(p)[0].endswith(binary)]


# ---------------------------------------------------------------- a busy port

def test_busy_http_port_fails_serve_run_at_once(tmp_path):
    holder, port = busy_port()
    try:
        started = time.monotonic()
        out = serve("run", "quickstart:app", "--app-dir", QUICKSTART_DIR, "--http-port", str(port),
                    "--dashboard-port", "0", "--temp-dir", str(tmp_path), timeout=60)
        elapsed = time.monotonic() - started
    finally:
        holder.close()
        kill_leftovers(tmp_path)
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    assert elapsed < 15, f"took {elapsed:.1f}s\n{text}"
    assert (f"Error: The HTTP proxy failed to start: Cannot listen on 127.0.0.1:{port}: "
            "Address already in use.") in out.stderr, text
    assert "--http-port" in out.stderr
    # One attempt, one line, no source paths; nothing restarted it in a loop.
    assert text.count(f"Cannot listen on 127.0.0.1:{port}") <= 3, text
    assert not SOURCE_PATH.search(text), text
    assert "restarting it in" not in text
    assert_nothing_left(tmp_path)


def test_busy_http_port_fails_serve_start_at_once(tmp_path):
    holder, port = busy_port()
    try:
        started = time.monotonic()
        out = serve("start", "--http-port", str(port), "--dashboard-port", "0",
                    "--temp-dir", str(tmp_path), "--app-dir", TEST_APP_DIR, timeout=60)
        elapsed = time.monotonic() - started
    finally:
        holder.close()
        kill_leftovers(tmp_path)
    assert out.returncode != 0, out.stdout + out.stderr
    assert elapsed < 15, f"took {elapsed:.1f}s"
    assert (f"The HTTP proxy failed to start: Cannot listen on 127.0.0.1:{port}: "
            "Address already in use.") in out.stderr
    assert "HTTP proxy:" not in out.stdout  # no address of another program's port
    assert "Stopped the serve instance it started" in out.stderr
    assert_nothing_left(tmp_path)
    # The instance it started is gone: a later command says so instead of hanging.
    assert "No running serve instance found." in serve("stop", "--temp-dir", str(tmp_path)).stdout


def test_busy_rest_port_fails_serve_start_at_once(tmp_path):
    holder, port = busy_port()
    try:
        started = time.monotonic()
        out = serve("start", "--http-port", "0", "--dashboard-port", str(port),
                    "--temp-dir", str(tmp_path), timeout=60)
        elapsed = time.monotonic() - started
    finally:
        holder.close()
        kill_leftovers(tmp_path)
    assert out.returncode != 0, out.stdout + out.stderr
    assert elapsed < 10, f"took {elapsed:.1f}s"
    assert (f"serve failed to start: The REST API cannot listen on 127.0.0.1:{port}: "
            "Address already in use") in out.stderr, out.stderr
    assert not SOURCE_PATH.search(out.stderr), out.stderr
    # The controller was started once, not restarted.
    session = os.path.realpath(os.path.join(tmp_path, "session_latest"))
    assert len(glob.glob(os.path.join(session, "logs", "serve", "controller_*.log"))) == 1
    assert "restarting it" not in open(os.path.join(session, "logs", "serve", "agent.log")).read()
    assert_nothing_left(tmp_path)


def test_busy_rest_port_fails_serve_run_at_once(tmp_path):
    holder, port = busy_port()
    try:
        out = serve("run", "quickstart:app", "--app-dir", QUICKSTART_DIR, "--http-port", "0",
                    "--dashboard-port", str(port), "--temp-dir", str(tmp_path), timeout=30)
    finally:
        holder.close()
        kill_leftovers(tmp_path)
    assert out.returncode != 0
    assert f"The REST API cannot listen on 127.0.0.1:{port}: Address already in use" in out.stderr
    assert_nothing_left(tmp_path)


# ---------------------------------------------------------------- restart backoff

def test_restart_loops_back_off_and_recover(serve_run):
    run = serve_run("quickstart:app", app_dir=QUICKSTART_DIR)
    url = run.wait_ready()
    assert "REST API at http://127.0.0.1:" in run.output()  # --dashboard-port 0: the real one
    http_port = int(url.rsplit(":", 1)[1])
    [replica] = run.replica_pids()

    # The proxy dies and another program takes its port: restarts back off (0.5 s, 1 s, 2 s,
    # ...), one line each, and the proxy shows UNHEALTHY meanwhile.
    holder = None
    for _ in range(3):
        [proxy] = pids_of(run.temp_dir, b"serve-proxy")
        before = len(run.output())
        os.kill(proxy, signal.SIGKILL)
        holder = hold_port(http_port)
        if holder:
            break
        wait_for(lambda: pids_of(run.temp_dir, b"serve-proxy"), 10, what="the proxy back")
    assert holder, "could not take the proxy's port"
    try:
        time.sleep(10)  # the window the restarts are counted in
        window = run.output()[before:]
        attempts = window.count(f"Cannot listen on 127.0.0.1:{http_port}: Address already in use\n")
        restarts = len(re.findall(r"restarting it in [0-9.]+ s \(restart \d+\)", window))
        print(f"proxy: {attempts} start attempts, {restarts} restarts in 10 s")
        assert 3 <= attempts <= 7, f"{attempts} start attempts in 10 s:\n{window}"
        assert 2 <= restarts <= 7, window
        assert not SOURCE_PATH.search(window), window
        status = run.status()
        assert list(status["proxies"].values()) == ["UNHEALTHY"], status
        # The app is still RUNNING: only the proxy is down.
        assert status["applications"]["default"]["status"] == "RUNNING"
    finally:
        holder.close()
    # Once the port is free, the next attempt (at most 10 s away) brings the proxy back.
    wait_for(lambda: get(url + "/", timeout=2).text == "Hello world!", 20, interval=0.2,
             what="the proxy back on its port")
    assert list(run.status()["proxies"].values()) == ["HEALTHY"]

    # The controller dies and its REST port is taken: the agent restarts it with backoff
    # (0.25 s, 0.5 s, 1 s, ...), while the replica keeps serving through the proxy.
    session = run.session_dir()
    rest_port = int(open(os.path.join(session, "dashboard_address")).read().rsplit(":", 1)[1])
    [controller] = pids_of(run.temp_dir, b"serve-controller")
    agent_log = os.path.join(session, "logs", "serve", "agent.log")
    logs_before = set(glob.glob(os.path.join(session, "logs", "serve", "controller_*.log")))
    os.kill(controller, signal.SIGKILL)
    holder = hold_port(rest_port)
    assert holder, "could not take the REST port"
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert get(url + "/", timeout=5).text == "Hello world!"
            time.sleep(0.5)
        started = set(glob.glob(os.path.join(session, "logs", "serve", "controller_*.log"))) - logs_before
        print(f"controller: {len(started)} starts in 10 s")
        assert 3 <= len(started) <= 7, f"{len(started)} controller starts in 10 s"
        restart_lines = re.findall(r"The controller \(pid \d+\) (?:exited with code \d+|was killed "
                                   r"by signal \d+ \([^)]*\)); restarting it in [0-9.]+ s "
                                   r"\(restart \d+\)\.", open(agent_log).read())
        assert 3 <= len(restart_lines) <= 8, restart_lines
        for log in started:
            text = open(log).read()
            if "cannot listen" in text:
                assert f"The REST API cannot listen on 127.0.0.1:{rest_port}: Address already in use" in text
                assert not SOURCE_PATH.search(text), text
    finally:
        holder.close()
    wait_for(lambda: run.status()["applications"]["default"]["status"] == "RUNNING", 20,
             interval=0.2, what="the controller back")
    assert run.replica_pids() == [replica]  # taken over, not restarted
    assert run.stop() == 0


# ---------------------------------------------------------------- builder errors

def test_builder_exception_names_the_builder_and_the_exception(tmp_path):
    out = serve("run", "greeter:build", "replicas=abc", "--app-dir", GREETER_DIR, "--http-port",
                "0", "--dashboard-port", "0", "--temp-dir", str(tmp_path), timeout=60)
    kill_leftovers(tmp_path)
    assert out.returncode == 1
    assert ("Error: Deploying application 'default' failed:\n"
            "Application builder 'greeter:build' raised std::invalid_argument: stoi\n") in out.stderr
    assert_nothing_left(tmp_path)


def test_builder_errors_in_serve_status(serve_instance, tmp_path):
    inst = serve_instance(TEST_APP_DIR)
    cfg = tmp_path / "apps.yaml"
    cfg.write_text(yaml.safe_dump({"applications": [
        {"name": "count", "route_prefix": "/count", "import_path": "firsthour:counting_builder",
         "args": {"count": "abc"}},
        {"name": "exits", "route_prefix": "/exits", "import_path": "firsthour:exiting_builder"},
    ]}, sort_keys=False))
    inst.cli("deploy", str(cfg), check=True)

    def failed():
        apps = inst.details()["applications"]
        return all(apps[n]["status"] == "DEPLOY_FAILED" for n in ("count", "exits")) and apps
    apps = wait_for(failed, 60, what="both applications DEPLOY_FAILED")
    assert apps["count"]["message"] == (
        "Application builder 'firsthour:counting_builder' raised std::invalid_argument: stoi")
    # A builder that dies without a result: its exit, and where its output went.
    m = re.fullmatch(r"The application builder process for 'firsthour:exiting_builder' exited "
                     r"with code 3 before reporting a result; its log: (\S+)",
                     apps["exits"]["message"])
    assert m, apps["exits"]["message"]
    status = yaml.safe_load(inst.cli("status", check=True).stdout)
    assert status["applications"]["count"]["message"] == apps["count"]["message"]


# ---------------------------------------------------------------- unknown config keys

def misspelled_config(tmp_path, http_port=None):
    doc = {"applications": [{
        "name": "greeter", "route_prefix": "/greet", "import_path": "greeter:build",
        "deployments": [{"name": "Greeter", "num_replica": 3}]}]}
    if http_port is not None:
        doc = {"http_options": {"host": "127.0.0.1", "port": http_port}, **doc}
    path = tmp_path / "misspelled.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "num_replica:" in text)
    return str(path), line


def test_unknown_config_key_warns_deploys_and_strict_rejects(serve_instance, tmp_path):
    inst = serve_instance(GREETER_DIR)
    cfg, line = misspelled_config(tmp_path)
    warning = (f"Warning: {cfg}: applications[0].deployments[0].num_replica: unknown field "
               f"(did you mean 'num_replicas'?); ignored (line {line})")

    out = inst.cli("deploy", cfg, check=True)
    assert warning in out.stderr, out.stderr
    assert "Sent deploy request successfully." in out.stdout
    inst.wait_running("greeter")
    assert len(inst.replica_pids("greeter", "Greeter")) == 1  # the code's value, as in Ray

    for args, env in ([("deploy", cfg, "--strict"), {}], [("deploy", cfg), {"SERVE_STRICT_CONFIG": "1"}]):
        out = serve(*args, "--temp-dir", inst.temp_dir, env=env)
        assert out.returncode != 0, out.stdout
        assert (f"applications[0].deployments[0].num_replica: unknown field (did you mean "
                f"'num_replicas'?) (line {line})") in out.stderr, out.stderr
        assert "strict" in out.stderr

    # serve config keeps the schema's field order (the order the file was written in).
    text = inst.cli("config", check=True).stdout
    keys = [l.split(":")[0] for l in text.splitlines() if l and not l.startswith(" ")]
    assert keys == ["name", "route_prefix", "import_path", "deployments"], text


def test_unknown_config_key_warns_in_serve_run(tmp_path):
    cfg, line = misspelled_config(tmp_path, http_port=0)
    run = ServeRun(tmp_path / "run", cfg, app_dir=GREETER_DIR)
    try:
        run.wait_ready()
        assert (f"applications[0].deployments[0].num_replica: unknown field (did you mean "
                f"'num_replicas'?); ignored (line {line})") in run.output()
    finally:
        assert run.stop() == 0


# ---------------------------------------------------------------- hints and --temp-dir

def test_start_hints_reach_this_instance_and_a_second_start_fails(tmp_path):
    temp_dir = str(tmp_path / "my serve")  # a space: the hints quote it
    other = str(tmp_path / "other")
    try:
        out = serve("start", "--http-port", "0", "--dashboard-port", "0", "--temp-dir", temp_dir,
                    "--app-dir", TEST_APP_DIR, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        rest = re.search(r"REST API:\s+(http://\S+)", out.stdout).group(1)
        http = re.search(r"HTTP proxy:\s+(http://\S+)", out.stdout).group(1)
        assert get(http + "/-/routes").status_code == 200
        hints = [l.strip() for l in out.stdout.split("Next:\n", 1)[1].splitlines() if l.strip()]
        assert hints == [f"serve deploy config.yaml -a {rest}", f"serve status -a {rest}",
                         f"serve stop --temp-dir {shlex.quote(temp_dir)}"], out.stdout

        # Another instance under the default-looking layout must not be what the hints reach.
        out2 = serve("start", "--http-port", "0", "--dashboard-port", "0", "--temp-dir", other)
        assert out2.returncode == 0, out2.stderr
        other_rest = re.search(r"REST API:\s+(http://\S+)", out2.stdout).group(1)

        cfg = tmp_path / "config.yaml"
        cfg.write_text(yaml.safe_dump({"applications": [
            {"name": "fn", "route_prefix": "/fn", "import_path": "testapps:function_app"}]}))
        deploy = shlex.split(hints[0].replace("config.yaml", str(cfg)))
        assert serve(*deploy[1:]).returncode == 0
        wait_for(lambda: yaml.safe_load(serve(*shlex.split(hints[1])[1:]).stdout)
                 ["applications"].get("fn", {}).get("status") == "RUNNING", 60, what="fn RUNNING")
        assert yaml.safe_load(serve("status", "-a", other_rest).stdout)["applications"] == {}

        # $SERVE_TEMP_DIR is honoured like --temp-dir.
        status = serve("status", env={"SERVE_TEMP_DIR": temp_dir})
        assert "fn" in yaml.safe_load(status.stdout)["applications"]

        # A second start is an error that says how to stop the first.
        again = serve("start", "--http-port", "0", "--dashboard-port", "0", "--temp-dir", temp_dir)
        assert again.returncode != 0
        assert f"Serve is already running (REST API at {rest})" in again.stderr
        assert f"serve stop --temp-dir {shlex.quote(temp_dir)}" in again.stderr

        # serve deploy --app-dir: a library outside the instance's --app-dir.
        assert serve("deploy", "greeter:build", "--name", "greeter", "--route-prefix", "/greet",
                     "--app-dir", GREETER_DIR, "-a", rest).returncode == 0
        wait_for(lambda: get(http + "/greet/?name=Ann").status_code == 200, 60,
                 what="greeter deployed from --app-dir")

        stop = shlex.split(hints[2])
        assert serve(*stop[1:]).returncode == 0
        assert serve("stop", "--temp-dir", other).returncode == 0
    finally:
        kill_leftovers(temp_dir)
        kill_leftovers(other)
    assert_nothing_left(temp_dir)
    assert_nothing_left(other)


# ---------------------------------------------------------------- Ctrl-C

def test_ctrl_c_on_an_idle_app_returns_within_a_second(tmp_path):
    times = []
    for i in range(2):
        run = ServeRun(tmp_path / f"run{i}", "quickstart:app", app_dir=QUICKSTART_DIR)
        try:
            url = run.wait_ready()
            assert get(url + "/").status_code == 200
            started = time.monotonic()
            run.proc.send_signal(signal.SIGINT)
            assert run.proc.wait(timeout=30) == 0
            times.append(time.monotonic() - started)
        finally:
            run.stop()
    print(f"Ctrl-C: {', '.join(f'{t:.2f}' for t in times)} s")
    assert min(times) < 1.0, times
