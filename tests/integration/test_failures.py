"""Failure paths: crashed replicas, constructors and builders that throw, bad import paths."""
import os
import signal
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
