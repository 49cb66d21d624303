"""Request timeouts (408), client-disconnect cancellation cascading to downstream calls,
shielded calls, and the keep-alive timeout."""
import glob
import os
import re
import socket
import time

import requests
import yaml

from conftest import TEST_APP_DIR, get, wait_for


def replica_log(run, deployment):
    logs = os.path.join(run.session_dir(), "logs", "serve")
    return "".join(open(f).read() for f in glob.glob(os.path.join(logs, f"replica_*_{deployment}_*.log")))


def test_client_disconnect_cancels_the_request_and_its_children(serve_run):
    run = serve_run("testapps:cancel_app", app_dir=TEST_APP_DIR)
    url = run.wait_ready()
    assert get(url + "/?ms=50").text == "slept"
    try:
        requests.get(url + "/?ms=5000", headers={"X-Request-ID": "cancel-1"}, timeout=0.5)
    except requests.exceptions.ReadTimeout:
        pass
    wait_for(lambda: "cancel-1 / -- CALL __call__ CANCELLED" in replica_log(run, "Sleeper"), 10,
             what="the downstream call cancelled")
    line = re.search(r"cancel-1 / -- CALL __call__ CANCELLED ([0-9.]+)ms", replica_log(run, "Sleeper"))
    assert float(line.group(1)) < 3000  # stopped early, not after 5 s
    wait_for(lambda: "cancel-1 / -- GET / CANCELLED" in replica_log(run, "Parent"), 10,
             what="the ingress request cancelled")
    logs = os.path.join(run.session_dir(), "logs", "serve")
    proxy_log = glob.glob(os.path.join(logs, "proxy_*.log"))[0]
    wait_for(lambda: "cancel-1 -- GET / 499" in open(proxy_log).read(), 10,
             what="499 in the proxy's access log")
    # Everything keeps serving.
    assert get(url + "/?ms=10").text == "slept"


def test_shielded_call_survives_the_callers_cancellation(serve_run):
    run = serve_run("testapps:cancel_app", app_dir=TEST_APP_DIR)
    url = run.wait_ready()
    try:
        requests.get(url + "/?ms=1000&shield=1", headers={"X-Request-ID": "shield-1"}, timeout=0.3)
    except requests.exceptions.ReadTimeout:
        pass
    wait_for(lambda: re.search(r"shield-1 / -- CALL __call__ OK ([0-9.]+)ms",
                               replica_log(run, "Sleeper")), 10, what="the shielded call to finish")
    took = float(re.search(r"shield-1 / -- CALL __call__ OK ([0-9.]+)ms",
                           replica_log(run, "Sleeper")).group(1))
    assert took >= 900


def test_request_timeout_answers_408_and_cancels(serve_run, tmp_path):
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "http_options": {"host": "127.0.0.1", "port": 0, "request_timeout_s": 0.5},
        "applications": [{"name": "default", "route_prefix": "/",
                          "import_path": "testapps:cancel_app"}]}))
    run = serve_run(str(cfg), app_dir=TEST_APP_DIR)
    url = run.wait_ready()
    start = time.monotonic()
    r = requests.get(url + "/?ms=5000", headers={"X-Request-ID": "slow-1"}, timeout=10)
    assert r.status_code == 408
    assert "Request slow-1 timed out after 0.5s." in r.text
    assert time.monotonic() - start < 3
    wait_for(lambda: "slow-1 / -- CALL __call__ CANCELLED" in replica_log(run, "Sleeper"), 10,
             what="the timed-out work cancelled")
    assert get(url + "/?ms=10").text == "slept"


def test_keep_alive_timeout_from_the_environment(serve_run):
    run = serve_run("testapps:echo_builder", app_dir=TEST_APP_DIR,
                    env={"SERVE_HTTP_KEEP_ALIVE_TIMEOUT_S": "1"})
    url = run.wait_ready()
    host, port = url.replace("http://", "").split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    start = time.monotonic()
    s.settimeout(10)
    while True:  # drain the body, then wait for the server to close the idle connection
        chunk = s.recv(65536)
        if not chunk:
            break
    idle = time.monotonic() - start
    s.close()
    assert 0.5 < idle < 5, idle
