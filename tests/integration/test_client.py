"""The C++ client API from a program outside the cluster."""
import json
import os
import signal
import subprocess

from conftest import EXAMPLES_DIR, session_pids, wait_for

DEMO = os.environ.get("SERVE_CLIENT_DEMO", "")


def test_client_api_runs_calls_inspects_deletes_and_shuts_down(serve_instance):
    inst = serve_instance(os.path.join(EXAMPLES_DIR, "composition"))
    out = subprocess.run([DEMO, inst.temp_dir, os.path.join(EXAMPLES_DIR, "composition")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    steps = {s["step"]: s for s in map(json.loads, out.stdout.splitlines())}
    assert steps["call"]["result"] == {"result": 10, "factor": 2}  # (3 + 2) * 2
    assert steps["status"]["calc"] == "RUNNING"
    assert "no application named 'nope'" in steps["bad"]["error"]
    assert steps["deleted"]["apps"] == {}
    assert "shutdown" in steps
    # serve::shutdown() stopped the whole instance.
    wait_for(lambda: not session_pids(inst.temp_dir), 30, what="the instance to stop")


def test_client_api_run_starts_an_instance_when_none_is_running(tmp_path):
    temp_dir = str(tmp_path / "serve")
    app_dir = os.path.join(EXAMPLES_DIR, "composition")
    proc = subprocess.Popen([DEMO, temp_dir, app_dir, "--start"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for pid in session_pids(temp_dir):  # nothing may be left behind, even on failure
            os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 0, stdout + stderr
    steps = {s["step"]: s for s in map(json.loads, stdout.splitlines())}
    assert steps["call"]["result"] == {"result": 10, "factor": 2}
    assert steps["status"]["calc"] == "RUNNING"
    assert "shutdown" in steps
    # The instance ran in a session of its own under temp_dir, and stopped with shutdown().
    assert os.path.isdir(os.path.join(temp_dir, "session_latest", "logs", "serve"))
    assert not session_pids(temp_dir)
