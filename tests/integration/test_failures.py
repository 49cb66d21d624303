"""Failure paths: crashed replicas, constructors and builders that throw, bad import paths."""
import glob
import os
import re
import signal
import threading
import time

from conftest import TEST_APP_DIR, get, wait_for


def test_killed_replica_is_replaced_within_two_seconds(serve_run):
    run = serve_run("testapps:echo_builder", app_dir=TEST_APP_DIR)
    url = run.wait_ready()
    first = get(url + "/").json()["replica"]
    [pid] = run.replica_pids()

    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()

    def replaced():
        r = get(url + "/", timeout=2)
        return r.status_code == 200 and r.json()["replica"] != first and r.json()["replica"]
    new_replica = wait_for(replaced, 10, what="a replacement replica to serve")
    elapsed = time.monotonic() - killed_at
    assert elapsed < 2.0, f"replacement took {elapsed:.2f}s"
    assert new_replica != first

    def running():
        dep = run.status()["applications"]["default"]["deployments"]["Echo"]
        return dep["replica_states"] == {"RUNNING": 1} and dep["status"] == "HEALTHY"
    wait_for(running, 10, what="deployment HEALTHY with one RUNNING replica")
    assert len(run.replica_pids()) == 1 and run.replica_pids()[0] != pid


def test_constructor_failure_ends_deploy_failed_with_message(serve_run):
    run = serve_run("testapps:broken", app_dir=TEST_APP_DIR)
    code = run.wait_exit(timeout=60)
    out = run.output()
    assert code != 0
    assert "Deploying application 'default' failed" in out
    assert "Failed to update the deployments ['Broken']" in out
    assert "The deployment failed to start 3 times in a row" in out
    assert "constructor exploded" in out
    # The controller stayed up through the failures and handled the shutdown afterwards.
    logs = os.path.join(run.session_dir(), "logs", "serve")
    controller_log = open([os.path.join(logs, f) for f in os.listdir(logs)
                           if f.startswith("controller_")][0]).read()
    assert controller_log.count("constructor exploded") >= 3
    assert "All applications deleted" in controller_log
    assert "Controller stopping." in controller_log


def test_builder_exception_is_reported(serve_run):
    run = serve_run("testapps:bad_builder", app_dir=TEST_APP_DIR)
    assert run.wait_exit(timeout=60) != 0
    assert "builder refused the arguments" in run.output()


def test_missing_library_fails_fast(serve_run, tmp_path):
    run = serve_run("nosuchmodule:app", app_dir=str(tmp_path))
    assert run.wait_exit(timeout=30) != 0
    out = run.output()
    assert "Failed to import module 'nosuchmodule'" in out
    assert "libnosuchmodule.so" in out


def test_unregistered_application_name_is_reported(serve_run):
    run = serve_run("testapps:nope", app_dir=TEST_APP_DIR)
    assert run.wait_exit(timeout=60) != 0
    out = run.output()
    assert "no application named 'nope'" in out
    assert "echo_builder" in out  # lists what is registered


def test_malformed_arguments_are_rejected(serve_run):
    run = serve_run("testapps:echo_builder", "replicas", app_dir=TEST_APP_DIR)
    assert run.wait_exit(timeout=30) != 0
    assert "must be of the form '<key>=<val>'" in run.output()


def test_args_to_a_plain_application_are_rejected(serve_run):
    run = serve_run("testapps:function_app", "x=1", app_dir=TEST_APP_DIR)
    assert run.wait_exit(timeout=60) != 0
    assert "Arguments can only be passed to an application builder" in run.output()


def _data_port(run, pid):
    """The data-plane port replica `pid` announced in its log ("... is ready: data plane h:p");
    logs are flushed about once per second."""
    def announced():
        for path in glob.glob(os.path.join(run.session_dir(), "logs", "serve", "replica_*.log")):
            text = open(path).read()
            m = re.search(r"data plane [^ ]+:(\d+),", text)
            if f"(pid {pid})" in text and m:
                return int(m.group(1))
        return None
    return wait_for(announced, 10, what=f"replica {pid} to log its data port")


def _unread_bytes_on(pid, ports):
    """Bytes waiting unread in established connections to `ports` (owned by `pid`)."""
    total = 0
    with open(f"/proc/{pid}/net/tcp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            if cols[3] == "01" and int(cols[1].split(":")[1], 16) in ports:
                total += int(cols[4].split(":")[1], 16)
    return total


def test_request_that_never_started_is_retried_on_another_replica(serve_run):
    run = serve_run("testapps:echo_builder", app_dir=TEST_APP_DIR)
    url = run.wait_ready()
    assert get(url + "/").status_code == 200
    [pid] = run.replica_pids()
    ports = [_data_port(run, pid)]
    os.kill(pid, signal.SIGSTOP)  # it can no longer read, so it cannot accept
    result = {}

    def call():
        r = get(url + "/", timeout=60)
        result["status"], result["body"] = r.status_code, r.json() if r.ok else r.text
    t = threading.Thread(target=call)
    t.start()
    try:
        # The proxy sent it: it sits unread in the stopped replica's socket.
        wait_for(lambda: _unread_bytes_on(pid, ports) > 0, 10, what="the request at the replica")
    finally:
        os.kill(pid, signal.SIGKILL)
    t.join(60)
    assert result["status"] == 200, result
    assert result["body"]["pid"] != pid


def test_request_running_on_a_replica_that_dies_fails_with_500(serve_run, tmp_path):
    run = serve_run("testapps:echo_builder", app_dir=TEST_APP_DIR)
    url = run.wait_ready()
    [pid] = run.replica_pids()
    marker = tmp_path / "started"
    result = {}

    def call():
        r = get(url + f"/?touch={marker}&sleep_ms=30000", timeout=60)
        result["status"], result["text"], result["at"] = r.status_code, r.text, time.monotonic()
    t = threading.Thread(target=call)
    t.start()
    wait_for(marker.exists, 10, what="the request to start on the replica")
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    t.join(60)
    # Not run again elsewhere (it would have taken 30 s): a 500 naming the replica's death.
    assert result["status"] == 500, result
    assert "died while handling request" in result["text"]
    assert result["at"] - killed_at < 10
    assert marker.read_text() == str(pid)
    # The replacement serves new requests.
    wait_for(lambda: get(url + "/", timeout=2).status_code == 200, 10, what="the replacement")
