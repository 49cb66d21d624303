"""`serve run` onto a running instance, --non-blocking, the runtime-env flags (run and deploy),
`serve start --http-location`, and --reload of a C++ application built with CMake."""
import json
import os
import re
import shutil
import signal
import subprocess
import time

from conftest import SERVE, TEST_APP_DIR, cmake_build, get, process_cmdline, session_pids, wait_for

BUILD_DIR = os.environ.get("SERVE_BUILD_DIR", os.path.join(os.path.dirname(__file__), "../../build"))


def instance_pids(temp_dir):
    """Pids of the instance's long-lived processes (agent, controller, proxy)."""
    names = (b"serve-agent", b"serve-controller", b"serve-proxy")
    return sorted(p for p in session_pids(temp_dir) if process_cmdline(p)[0].endswith(names))


def start_run(temp_dir, *args, log_name="run.out"):
    """`serve run` against the instance in `temp_dir`; returns (process, log path)."""
    log_path = os.path.join(temp_dir, log_name)
    log = open(log_path, "w")
    proc = subprocess.Popen([SERVE, "run", *args, "--temp-dir", temp_dir],
                            stdout=log, stderr=subprocess.STDOUT)
    return proc, log_path


def wait_ready(proc, log_path, timeout=60):
    def ready():
        text = open(log_path).read()
        m = re.search(r"is ready at (http://[^ ]+?)/?\.\n", text)
        if m:
            return m.group(1)
        if proc.poll() is not None:
            raise AssertionError("serve run exited early:\n" + text)
        return None
    return wait_for(ready, timeout, what="the application to be ready")


def test_run_attaches_to_started_instance_and_ctrl_c_deletes_only_its_app(serve_instance):
    inst = serve_instance(TEST_APP_DIR)
    inst.cli("deploy", "testapps:function_app", "--name", "fn", "--route-prefix", "/fn", check=True)
    inst.wait_running("fn")
    before = instance_pids(inst.temp_dir)
    assert len(before) >= 3, before

    proc, log_path = start_run(inst.temp_dir, "testapps:echo_builder", "--name", "echo",
                               "--route-prefix", "/echo", "--app-dir", TEST_APP_DIR)
    try:
        url = wait_ready(proc, log_path)
        text = open(log_path).read()
        assert "Deploying onto the running serve instance at " + inst.rest in text, text
        assert "Started a local serve instance" not in text
        assert url == inst.http + "/echo"
        r = get(url + "/?x=1")
        assert r.status_code == 200 and r.json()["route_prefix"] == "/echo", r.text
        assert instance_pids(inst.temp_dir) == before  # no second instance
        assert inst.app_status("fn") == "RUNNING"
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=60)
    text = open(log_path).read()
    assert rc == 0, text
    assert "Deleted the application(s)." in text, text
    apps = inst.details()["applications"]
    assert "echo" not in apps, apps
    assert apps["fn"]["status"] == "RUNNING"
    assert get(inst.http + "/fn").status_code == 200
    assert instance_pids(inst.temp_dir) == before  # the instance kept running


def test_config_file_onto_instance_keeps_other_apps_and_takes_runtime_env_defaults(
        serve_instance, tmp_path):
    inst = serve_instance(TEST_APP_DIR)
    inst.cli("deploy", "testapps:function_app", "--name", "fn", "--route-prefix", "/fn", check=True)
    inst.wait_running("fn")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "applications:\n"
        "- name: a\n  route_prefix: /a\n  import_path: testapps:echo_builder\n"
        "  runtime_env: {env_vars: {SERVE_RUN_TEST_VAR: own}}\n"
        "- name: b\n  route_prefix: /b\n  import_path: testapps:echo_builder\n")
    proc, log_path = start_run(inst.temp_dir, str(cfg), "--app-dir", TEST_APP_DIR,
                               "--runtime-env-json",
                               json.dumps({"env_vars": {"SERVE_RUN_TEST_VAR": "flag"}}))
    try:
        wait_for(lambda: open(log_path).read().count("successfully.") == 2 or proc.poll(), 60,
                 what="both applications")
        assert proc.poll() is None, open(log_path).read()
        # The application's own env_vars win over the flag's.
        assert get(inst.http + "/a/?env=SERVE_RUN_TEST_VAR").json() == {"env": "own"}
        assert get(inst.http + "/b/?env=SERVE_RUN_TEST_VAR").json() == {"env": "flag"}
        assert inst.app_status("fn") == "RUNNING"
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=60)
    assert rc == 0, open(log_path).read()
    apps = inst.details()["applications"]
    assert sorted(apps) == ["fn"], apps
    # `serve config` still shows the application deployed with `serve deploy`.
    assert "testapps:function_app" in inst.cli("config", check=True).stdout


def test_non_blocking_returns_once_running(serve_instance, tmp_path):
    inst = serve_instance(TEST_APP_DIR)
    started = time.monotonic()
    out = subprocess.run([SERVE, "run", "testapps:echo_builder", "--non-blocking", "-a", inst.rest,
                          "--name", "nb", "--route-prefix", "/nb", "--app-dir", TEST_APP_DIR],
                         capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stdout + out.stderr
    assert time.monotonic() - started < 60
    assert "Deployed app 'nb' successfully." in out.stdout, out.stdout
    assert inst.app_status("nb") == "RUNNING"
    assert get(inst.http + "/nb").status_code == 200

    # Without an instance, the one it starts outlives the command until `serve stop`.
    temp = str(tmp_path / "fresh")
    out = subprocess.run([SERVE, "run", "testapps:echo_builder", "--non-blocking", "--http-port",
                          "0", "--dashboard-port", "0", "--temp-dir", temp, "--app-dir",
                          TEST_APP_DIR], capture_output=True, text=True, timeout=90)
    try:
        assert out.returncode == 0, out.stdout + out.stderr
        url = re.search(r"is ready at (http://[^ ]+?)/?\.\n", out.stdout).group(1)
        assert get(url + "/").status_code == 200
        assert "serve stop --temp-dir" in out.stdout, out.stdout
    finally:
        stop = subprocess.run([SERVE, "stop", "--temp-dir", temp], capture_output=True, text=True,
                              timeout=120)
        wait_for(lambda: not session_pids(temp), 20, what="every process to exit")
    assert "Stopped serve." in stop.stdout, stop.stdout + stop.stderr

    # -a naming nothing that answers is an error, not a new instance.
    bad = subprocess.run([SERVE, "run", "testapps:echo_builder", "-a", "http://127.0.0.1:1",
                          "--app-dir", TEST_APP_DIR, "--temp-dir", str(tmp_path / "none")],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0
    assert "No serve instance answers at http://127.0.0.1:1" in bad.stderr, bad.stderr


def test_runtime_env_flags_reach_the_replica(serve_run, serve_instance, tmp_path):
    run = serve_run("testapps:echo_builder", "--runtime-env-json",
                    json.dumps({"env_vars": {"SERVE_RUN_TEST_VAR": "from-json"}}),
                    app_dir=TEST_APP_DIR)
    url = run.wait_ready()
    assert get(url + "/?env=SERVE_RUN_TEST_VAR").json() == {"env": "from-json"}
    assert run.stop() == 0

    # serve deploy takes the same flags (a YAML file here).
    inst = serve_instance(TEST_APP_DIR)
    env_file = tmp_path / "env.yaml"
    env_file.write_text("env_vars:\n  SERVE_RUN_TEST_VAR: from-yaml\n")
    inst.cli("deploy", "testapps:echo_builder", "--runtime-env", str(env_file), check=True)
    inst.wait_running("default")
    assert get(inst.http + "/?env=SERVE_RUN_TEST_VAR").json() == {"env": "from-yaml"}


def test_working_dir_holds_the_library(serve_run, tmp_path):
    wd = tmp_path / "wd"
    wd.mkdir()
    shutil.copy(os.path.join(TEST_APP_DIR, "libtestapps.so"), wd / "libtestapps.so")
    empty = tmp_path / "empty"
    empty.mkdir()
    run = serve_run("testapps:echo_builder", "--working-dir", str(wd), app_dir=str(empty))
    url = run.wait_ready()
    cwd = get(url + "/?cwd=1").json()["cwd"]
    assert "working_dir_files" in cwd, cwd  # the replica runs in the copied working_dir
    assert run.stop() == 0


def test_http_location_no_server_disables_the_proxy(tmp_path):
    temp = str(tmp_path / "inst")
    out = subprocess.run([SERVE, "start", "--http-location", "NoServer", "--dashboard-port", "0",
                          "--temp-dir", temp, "--app-dir", TEST_APP_DIR],
                         capture_output=True, text=True, timeout=60)
    try:
        assert out.returncode == 0, out.stdout + out.stderr
        assert "disabled" in out.stdout, out.stdout
    finally:
        subprocess.run([SERVE, "stop", "--temp-dir", temp], capture_output=True, timeout=120)
        wait_for(lambda: not session_pids(temp), 20, what="every process to exit")


RELOAD_SOURCE = r'''
#include <serve/serve.h>

class Hello {
 public:
  std::string operator()(const serve::HttpRequest&) { return "VERSION"; }
};
SERVE_DEPLOYMENT(Hello);

serve::Application build(const serve::Args&) { return serve::deployment<Hello>().bind(); }
SERVE_APP_BUILDER(build);
'''

RELOAD_CMAKE = '''
cmake_minimum_required(VERSION 3.25)
project(hello LANGUAGES CXX)
find_package(serve REQUIRED)
serve_add_app(hello hello.cc)
'''


def test_reload_rebuilds_and_redeploys_and_keeps_serving_on_a_build_error(serve_run, tmp_path):
    prefix = tmp_path / "prefix"
    subprocess.run(["cmake", "--install", BUILD_DIR, "--prefix", str(prefix)], check=True,
                   capture_output=True, timeout=120)
    src = tmp_path / "hello"
    src.mkdir()
    (src / "hello.cc").write_text(RELOAD_SOURCE.replace("VERSION", "v1"))
    (src / "CMakeLists.txt").write_text(RELOAD_CMAKE)
    build = src / "build"  # inside the source tree: the watcher must skip it
    cmake_build(src, build, prefix)

    run = serve_run("hello:build", "--reload", app_dir=str(build))
    url = run.wait_ready()
    assert get(url).text == "v1"
    assert f"under {src};" in run.output(), run.output()

    # Edit, save: the new code serves within seconds.
    (src / "hello.cc").write_text(RELOAD_SOURCE.replace("VERSION", "v2"))
    wait_for(lambda: get(url).text == "v2", 90, interval=0.2, what="the rebuilt version")

    # A broken edit: the build error is printed and v2 keeps serving.
    (src / "hello.cc").write_text(RELOAD_SOURCE.replace("VERSION", "v3") + "this is not C++\n")
    wait_for(lambda: "the build failed" in run.output(), 90, interval=0.2, what="the build error")
    assert "previous version keeps serving" in run.output()
    assert get(url).text == "v2"
    assert run.stop() == 0
