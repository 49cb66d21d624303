"""The quickstart as a new user runs it: serve run, curl, serve status, Ctrl-C."""
import glob
import os
import subprocess

from conftest import EXAMPLES_DIR, SERVE, get, session_pids, wait_for


def test_quickstart_serves_reports_status_and_stops_cleanly(serve_run):
    run = serve_run("quickstart:app", app_dir=os.path.join(EXAMPLES_DIR, "quickstart"))
    url = run.wait_ready()

    r = get(url + "/")
    assert r.status_code == 200
    assert r.text == "Hello world!"
    assert r.headers["content-type"].startswith("text/plain")
    assert get(url + "/?name=Ann").text == "Hello Ann!"

    status = run.status()
    assert list(status.keys()) == ["proxies", "applications", "target_capacity"]
    assert list(status["proxies"].values()) == ["HEALTHY"]
    app = status["applications"]["default"]
    assert app["status"] == "RUNNING"
    dep = app["deployments"]["HelloWorld"]
    assert dep["status"] == "HEALTHY"
    assert dep["status_trigger"] == "CONFIG_UPDATE_COMPLETED"
    assert dep["replica_states"] == {"RUNNING": 1}
    assert status["target_capacity"] is None
    assert run.status(name="default")["status"] == "RUNNING"

    # Logs: per-component files with access lines, user log lines stamped with the request id.
    logs = os.path.join(run.session_dir(), "logs", "serve")
    rid = get(url + "/", headers={"X-Request-ID": "quickstart-req-1"}).headers["x-request-id"]
    assert rid == "quickstart-req-1"

    def logged():
        replica_logs = glob.glob(os.path.join(logs, "replica_default_HelloWorld_*.log"))
        text = "".join(open(f).read() for f in replica_logs)
        proxy = open(glob.glob(os.path.join(logs, "proxy_*.log"))[0]).read()
        return ("quickstart-req-1 / -- Handling GET /" in text
                and "quickstart-req-1 / -- GET / 200" in text
                and "quickstart-req-1 -- GET / 200" in proxy)
    wait_for(logged, 10, what="access and user log lines")
    assert glob.glob(os.path.join(logs, "controller_*.log"))

    # serve run streams the component logs with Ray-style prefixes.
    out = run.output()
    assert "(ServeController pid=" in out
    assert "(ProxyActor pid=" in out
    assert "(ServeReplica:default:HelloWorld pid=" in out

    assert run.stop() == 0
    assert session_pids(run.temp_dir) == []


def test_sigterm_also_tears_everything_down(serve_run):
    import signal
    run = serve_run("quickstart:app", app_dir=os.path.join(EXAMPLES_DIR, "quickstart"))
    run.wait_ready()
    assert len(run.replica_pids()) == 1
    assert run.stop(sig=signal.SIGTERM) == 0
    assert session_pids(run.temp_dir) == []


def test_serve_shutdown_deletes_the_applications(serve_run):
    run = serve_run("quickstart:app", app_dir=os.path.join(EXAMPLES_DIR, "quickstart"))
    run.wait_ready()
    out = subprocess.run([SERVE, "shutdown", "-y", "--temp-dir", run.temp_dir],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert "Sent shutdown request" in out.stdout
    wait_for(lambda: run.status()["applications"] == {} and not run.replica_pids(), 30,
             what="applications deleted")
    assert run.proc.poll() is None  # serve run keeps the instance until Ctrl-C
    assert run.stop() == 0


def test_status_without_a_running_instance_is_a_clear_error(tmp_path):
    out = subprocess.run([SERVE, "status", "--temp-dir", str(tmp_path)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode != 0
    assert "Could not reach the serve REST API" in out.stderr
