"""serve start / deploy / config / status / shutdown / build / stop, the REST API,
multi-application isolation and in-place updates."""
import os
import shutil
import threading
import time

import requests
import yaml

from conftest import EXAMPLES_DIR, TEST_APP_DIR, get, wait_for

GREETER_DIR = os.path.join(EXAMPLES_DIR, "greeter")


def write_config(tmp_path, doc, name="config.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def two_apps(echo_tag="one", echo_replicas=2, num_cpus=None):
    echo = {"name": "Echo", "num_replicas": echo_replicas, "user_config": {"tag": echo_tag}}
    if num_cpus is not None:
        echo["ray_actor_options"] = {"num_cpus": num_cpus}
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": "127.0.0.1", "port": 0},
        "applications": [
            {"name": "echo", "route_prefix": "/echo", "import_path": "testapps:echo_builder",
             "args": {"replicas": "1"}, "deployments": [echo]},
            {"name": "fn", "route_prefix": "/fn", "import_path": "testapps:function_app"},
        ],
    }


def test_deploy_status_config_rest_and_isolation(serve_instance, tmp_path):
    inst = serve_instance(TEST_APP_DIR)
    cfg = write_config(tmp_path, two_apps())
    out = inst.cli("deploy", cfg, check=True)
    assert "Sent deploy request successfully." in out.stdout
    inst.wait_running("echo", "fn")

    # Both apps serve under their prefixes; the config override (2 replicas, user_config) won
    # over the code (args replicas=1).
    body = get(inst.http + "/echo/x").json()
    assert body["tag"] == "one" and body["route_prefix"] == "/echo"
    assert get(inst.http + "/fn/y").text == "fn:/fn/y"
    assert get(inst.http + "/-/routes").json() == {"/echo": "echo", "/fn": "fn"}
    assert len(inst.replica_pids("echo", "Echo")) == 2

    # REST details carry Ray's field names.
    d = inst.details()
    for key in ["controller_info", "proxy_location", "http_options", "grpc_options", "proxies",
                "deploy_mode", "applications", "target_capacity"]:
        assert key in d, key
    assert d["deploy_mode"] == "MULTI_APP"
    app = d["applications"]["echo"]
    assert app["source"] == "declarative"
    assert app["route_prefix"] == "/echo"
    assert app["deployed_app_config"]["import_path"] == "testapps:echo_builder"
    dep = app["deployments"]["Echo"]
    assert dep["deployment_config"]["num_replicas"] == 2
    assert dep["deployment_config"]["user_config"] == {"tag": "one"}
    assert dep["target_num_replicas"] == 2
    replica = dep["replicas"][0]
    for key in ["replica_id", "state", "pid", "node_id", "node_ip", "actor_name",
                "log_file_path", "start_time_s"]:
        assert key in replica, key
    assert replica["actor_name"].startswith("SERVE_REPLICA::echo#Echo#")
    assert requests.get(inst.rest + "/api/ray/version", timeout=10).json()["session_name"]
    assert requests.get(inst.rest + "/api/serve/applications/?api_type=imperative",
                        timeout=10).json()["applications"] == {}
    assert requests.get(inst.rest + "/api/serve/applications/?api_type=bogus",
                        timeout=10).status_code == 400

    # serve status / serve config through the CLI.
    status = yaml.safe_load(inst.cli("status", check=True).stdout)
    assert status["applications"]["echo"]["status"] == "RUNNING"
    assert yaml.safe_load(inst.cli("status", "--name", "fn", check=True).stdout)["status"] == "RUNNING"
    configs = inst.cli("config", check=True).stdout.split("\n---\n\n")
    assert len(configs) == 2
    assert yaml.safe_load(inst.cli("config", "--name", "echo", check=True).stdout)["name"] == "echo"

    # Idempotent redeploy: nothing restarts.
    echo_pids = inst.replica_pids("echo", "Echo")
    fn_pids = inst.replica_pids("fn", "hello_fn")
    deployed_at = inst.details()["applications"]["echo"]["last_deployed_time_s"]
    inst.cli("deploy", cfg, check=True)
    # Once the controller has applied the redeploy and is RUNNING again, nothing restarted.
    wait_for(lambda: inst.details()["applications"]["echo"]["last_deployed_time_s"] > deployed_at,
             30, what="the redeploy applied")
    inst.wait_running("echo", "fn")
    assert inst.replica_pids("echo", "Echo") == echo_pids
    assert inst.replica_pids("fn", "hello_fn") == fn_pids

    # Lightweight update: user_config and num_replicas change in place (same pids); the other
    # application is untouched.
    inst.cli("deploy", write_config(tmp_path, two_apps(echo_tag="two", echo_replicas=3), "c2.yaml"),
             check=True)
    wait_for(lambda: len(inst.replica_pids("echo", "Echo")) == 3 and all(
        get(inst.http + "/echo/").json()["tag"] == "two" for _ in range(10)), 30,
        what="user_config applied and 3 replicas")
    assert set(echo_pids) <= set(inst.replica_pids("echo", "Echo"))
    assert inst.replica_pids("fn", "hello_fn") == fn_pids
    inst.wait_running("echo")

    # Removing an app from the config deletes it without touching the other.
    only_echo = two_apps(echo_tag="two", echo_replicas=3)
    only_echo["applications"] = only_echo["applications"][:1]
    echo_pids = inst.replica_pids("echo", "Echo")
    inst.cli("deploy", write_config(tmp_path, only_echo, "c3.yaml"), check=True)
    wait_for(lambda: "fn" not in inst.details()["applications"], 30, what="fn deleted")
    assert inst.replica_pids("echo", "Echo") == echo_pids
    assert get(inst.http + "/fn/y").status_code == 404

    # serve shutdown deletes everything; the instance stays up for later deploys.
    out = inst.cli("shutdown", "-y", check=True)
    assert "Sent shutdown request" in out.stdout
    wait_for(lambda: inst.details()["applications"] == {}, 30, what="all apps deleted")
    assert "No configuration was found." in inst.cli("config").stdout


def test_code_change_rolls_replicas_without_failed_requests(serve_instance, tmp_path):
    inst = serve_instance(TEST_APP_DIR)
    inst.cli("deploy", write_config(tmp_path, two_apps(echo_replicas=3)), check=True)
    inst.wait_running("echo", "fn")
    old = inst.replica_pids("echo", "Echo")

    failures, ok = [], [0]
    stop = threading.Event()

    def loop():
        with requests.Session() as s:
            while not stop.is_set():
                try:
                    r = s.get(inst.http + "/echo/", timeout=30)
                    if r.status_code != 200:
                        failures.append(r.status_code)
                    else:
                        ok[0] += 1
                except Exception as e:  # noqa: BLE001
                    failures.append(repr(e))
    threads = [threading.Thread(target=loop) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        # ray_actor_options is a heavyweight change: replicas are replaced a few at a time.
        inst.cli("deploy", write_config(tmp_path, two_apps(echo_replicas=3, num_cpus=0.5), "c2.yaml"),
                 check=True)
        wait_for(lambda: len(inst.replica_pids("echo", "Echo")) == 3 and
                 not set(inst.replica_pids("echo", "Echo")) & set(old), 60,
                 what="all replicas replaced")
        inst.wait_running("echo")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert failures == []
    assert ok[0] > 20


def test_runtime_env_env_vars_and_working_dir(serve_instance, tmp_path):
    inst = serve_instance(str(tmp_path))  # no library on the instance's search path
    wd = tmp_path / "wd"
    wd.mkdir()
    shutil.copy(os.path.join(TEST_APP_DIR, "libtestapps.so"), wd / "libtestapps.so")
    doc = {"applications": [{
        "name": "echo", "route_prefix": "/", "import_path": "testapps:echo_builder",
        "runtime_env": {"working_dir": "wd", "env_vars": {"MY_SETTING": "forty-two"}}}]}
    inst.cli("deploy", write_config(tmp_path, doc), check=True)
    inst.wait_running("echo")
    assert get(inst.http + "/?env=MY_SETTING").json()["env"] == "forty-two"
    cwd = get(inst.http + "/?cwd=1").json()["cwd"]
    assert "runtime_resources/working_dir_files" in cwd
    assert os.path.exists(os.path.join(cwd, "libtestapps.so"))

    # A .zip working_dir works too.
    shutil.make_archive(str(tmp_path / "wd2"), "zip", str(wd))
    doc["applications"][0]["runtime_env"] = {"working_dir": f"file://{tmp_path}/wd2.zip"}
    inst.cli("deploy", write_config(tmp_path, doc, "c2.yaml"), check=True)
    wait_for(lambda: get(inst.http + "/?env=MY_SETTING").json()["env"] is None, 60,
             what="redeploy without the env var")

    # Unsupported fields are a clear error.
    doc["applications"][0]["runtime_env"] = {"pip": ["requests"]}
    out = inst.cli("deploy", write_config(tmp_path, doc, "c3.yaml"))
    assert out.returncode != 0
    assert "runtime_env.pip is not supported" in out.stderr


def test_bad_configs_are_rejected_with_the_field(serve_instance, tmp_path):
    inst = serve_instance(TEST_APP_DIR)
    bad = two_apps()
    bad["applications"][0]["deployments"][0]["max_ongoing_requests"] = 0
    out = inst.cli("deploy", write_config(tmp_path, bad))
    assert out.returncode != 0
    assert "max_ongoing_requests" in out.stderr

    dup = two_apps()
    dup["applications"][1]["route_prefix"] = "/echo"
    out = inst.cli("deploy", write_config(tmp_path, dup, "dup.yaml"))
    assert out.returncode != 0 and "/echo" in out.stderr

    r = requests.put(inst.rest + "/api/serve/applications/", data="{not json", timeout=10)
    assert r.status_code == 400
    r = requests.put(inst.rest + "/api/serve/applications/", json={"applications": [{"name": "x"}]},
                     timeout=10)
    assert r.status_code == 400 and "import_path" in r.text

    # A config naming a deployment the code does not have fails that app.
    ghost = two_apps()
    ghost["applications"][0]["deployments"][0]["name"] = "Ghost"
    inst.cli("deploy", write_config(tmp_path, ghost, "ghost.yaml"), check=True)
    wait_for(lambda: inst.app_status("echo") == "DEPLOY_FAILED", 30, what="echo DEPLOY_FAILED")
    assert "Ghost" in inst.details()["applications"]["echo"]["message"]
    inst.wait_running("fn")


def test_route_prefix_null_is_not_exposed(serve_instance, tmp_path):
    inst = serve_instance(TEST_APP_DIR)
    doc = two_apps()
    doc["applications"][1]["route_prefix"] = None
    inst.cli("deploy", write_config(tmp_path, doc), check=True)
    inst.wait_running("echo", "fn")
    assert get(inst.http + "/-/routes").json() == {"/echo": "echo"}
    assert get(inst.http + "/fn/y").status_code == 404


def test_serve_build_then_deploy(serve_instance, tmp_path):
    out_file = tmp_path / "built.yaml"
    import subprocess
    from conftest import SERVE
    r = subprocess.run([SERVE, "build", "testapps:echo_builder", "testapps:function_app",
                        "-d", TEST_APP_DIR, "-o", str(out_file)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    text = out_file.read_text()
    assert text.startswith("#")
    doc = yaml.safe_load(text)
    assert [a["name"] for a in doc["applications"]] == ["app1", "app2"]
    assert [a["route_prefix"] for a in doc["applications"]] == ["/app1", "/app2"]
    echo = doc["applications"][0]["deployments"][0]
    assert echo["name"] == "Echo" and echo["num_replicas"] == 1
    assert echo["max_ongoing_requests"] == 100
    doc["http_options"] = {"host": "127.0.0.1", "port": 0}
    doc["applications"][0]["deployments"][0]["num_replicas"] = 2
    inst = serve_instance(TEST_APP_DIR)
    inst.cli("deploy", write_config(tmp_path, doc, "edited.yaml"), check=True)
    inst.wait_running("app1", "app2")
    assert len(inst.replica_pids("app1", "Echo")) == 2
    assert get(inst.http + "/app2/z").text == "fn:/app2/z"


def test_serve_run_config_file(serve_run, tmp_path):
    doc = two_apps()
    run = serve_run(write_config(tmp_path, doc), app_dir=TEST_APP_DIR)
    run.wait_ready()
    wait_for(lambda: "Deployed app 'fn' successfully." in run.output(), 60, what="fn deployed")
    from urllib.parse import urlsplit
    parts = urlsplit(run.url)  # whichever app was ready first
    base = f"{parts.scheme}://{parts.netloc}"
    assert get(base + "/fn/q").text == "fn:/fn/q"
    assert get(base + "/echo/").json()["tag"] == "one"


def test_get_app_handle_calls_another_applications_ingress(serve_instance, tmp_path):
    inst = serve_instance(TEST_APP_DIR)
    doc = {"applications": [
        {"name": "echo", "route_prefix": "/echo", "import_path": "testapps:echo_builder"},
        {"name": "caller", "route_prefix": "/caller", "import_path": "testapps:app_caller"}]}
    inst.cli("deploy", write_config(tmp_path, doc), check=True)
    inst.wait_running("echo", "caller")
    body = get(inst.http + "/caller/?app=echo").json()
    assert body["deployment"] == "Echo" and body["path"] == "/from-caller"
    assert "does not exist" in get(inst.http + "/caller/?app=nope").json()["error"]


def test_logging_config_turns_off_access_logs(serve_instance, tmp_path):
    import glob
    inst = serve_instance(TEST_APP_DIR)
    doc = {"applications": [
        {"name": "quiet", "route_prefix": "/quiet", "import_path": "testapps:echo_builder",
         "deployments": [{"name": "Echo", "logging_config": {"enable_access_log": False}}]},
        {"name": "loud", "route_prefix": "/loud", "import_path": "testapps:function_app"}]}
    inst.cli("deploy", write_config(tmp_path, doc), check=True)
    inst.wait_running("quiet", "loud")
    get(inst.http + "/quiet/", headers={"X-Request-ID": "quiet-1"})
    get(inst.http + "/loud/", headers={"X-Request-ID": "loud-1"})
    logs = os.path.join(inst.temp_dir, "session_latest", "logs", "serve")

    def read(pattern):
        return "".join(open(f).read() for f in glob.glob(os.path.join(logs, pattern)))
    wait_for(lambda: "loud-1 /loud -- GET /loud/ 200" in read("replica_loud_*.log"), 10,
             what="the access line of the app with access logs on")
    assert "quiet-1" not in read("replica_quiet_*.log")


def test_library_changed_on_disk_rolls_replicas(serve_instance, tmp_path):
    libdir = tmp_path / "lib"
    libdir.mkdir()
    lib = libdir / "libtestapps.so"
    shutil.copy(os.path.join(TEST_APP_DIR, "libtestapps.so"), lib)
    inst = serve_instance(str(libdir))
    doc = {"applications": [{"name": "echo", "route_prefix": "/",
                             "import_path": "testapps:echo_builder"}]}
    cfg = write_config(tmp_path, doc)
    inst.cli("deploy", cfg, check=True)
    inst.wait_running("echo")
    pids = inst.replica_pids("echo", "Echo")
    # A rebuilt library (new mtime) is picked up by redeploying the same config.
    st = os.stat(lib)
    os.utime(lib, (st.st_atime + 10, st.st_mtime + 10))
    inst.cli("deploy", cfg, check=True)
    wait_for(lambda: inst.replica_pids("echo", "Echo") and
             not set(inst.replica_pids("echo", "Echo")) & set(pids), 60,
             what="replicas replaced after the library changed")
    inst.wait_running("echo")
