"""Autoscaling against real processes: scaling with load and back, scale to zero and the cold
start, num_replicas "auto", initial_replicas, target_capacity, and in-place updates of the
autoscaling config. Every delay is shortened through the config; every wait is bounded."""
import threading
import time

import requests
import yaml

from conftest import TEST_APP_DIR, get, wait_for


def write_config(tmp_path, doc, name="config.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def scaled_app(name="scaled", route_prefix="/", args=None, deployment=None):
    """An application of testapps:autoscale_builder (deployment "Scaled"); `args` go to the
    builder, `deployment` is the config-file override of Scaled."""
    app = {"name": name, "route_prefix": route_prefix, "import_path": "testapps:autoscale_builder",
           "args": {k: str(v) for k, v in (args or {}).items()}}
    if deployment is not None:
        app["deployments"] = [{"name": "Scaled", **deployment}]
    return app


def deployment(inst, app, name="Scaled"):
    return inst.details()["applications"][app]["deployments"][name]


def running(dep):
    return [r for r in dep["replicas"] if r["state"] == "RUNNING"]


class Load:
    """`clients` threads sending GET `url` back to back until stop() or `max_s` elapsed."""

    def __init__(self, url, clients, max_s):
        self.url = url
        self.deadline = time.monotonic() + max_s
        self.ok = 0
        self.errors = []
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads = [threading.Thread(target=self.run) for _ in range(clients)]
        for t in self.threads:
            t.start()

    def run(self):
        with requests.Session() as s:
            while not self.stop_event.is_set() and time.monotonic() < self.deadline:
                try:
                    r = s.get(self.url, timeout=30)
                    err = None if r.status_code == 200 else f"{r.status_code} {r.text[:100]}"
                except Exception as e:  # noqa: BLE001
                    err = repr(e)[:200]
                with self.lock:
                    if err is None:
                        self.ok += 1
                    else:
                        self.errors.append(err)

    def stop(self):
        self.stop_event.set()
        for t in self.threads:
            t.join(timeout=40)
        assert not any(t.is_alive() for t in self.threads), "load threads did not stop"


def test_step_load_scales_up_then_back_down(serve_instance, tmp_path):
    inst = serve_instance(TEST_APP_DIR)
    # Autoscaling comes from the code (builder args); the file only shortens the shutdown wait.
    doc = {"applications": [scaled_app(
        args={"min": 1, "max": 4, "target": 1, "up_delay": 0.5, "down_delay": 2,
              "look_back": 2, "interval": 0.5},
        deployment={"graceful_shutdown_wait_loop_s": 0.2})]}
    inst.cli("deploy", write_config(tmp_path, doc), check=True)
    inst.wait_running("scaled")

    dep = deployment(inst, "scaled")
    cfg = dep["deployment_config"]
    assert cfg["autoscaling_config"]["max_replicas"] == 4
    assert cfg["autoscaling_config"]["min_replicas"] == 1
    assert cfg["autoscaling_config"]["target_ongoing_requests"] == 1
    assert cfg.get("num_replicas") is None
    assert cfg["max_ongoing_requests"] == 100
    wait_for(lambda: len(running(deployment(inst, "scaled"))) == 1, 30, what="1 replica at start")
    assert deployment(inst, "scaled")["target_num_replicas"] == 1

    # 8 clients of 200 ms requests keep ~8 requests ongoing: 8 / target 1, bounded by max 4.
    seen = set()  # (deployment status, status_trigger) observed while scaling
    app_statuses = set()
    peak = {"running": 0, "target": 0}

    def scaled_up():
        d = inst.details()["applications"]["scaled"]
        app_statuses.add(d["status"])
        dep = d["deployments"]["Scaled"]
        seen.add((dep["status"], dep["status_trigger"]))
        peak["running"] = max(peak["running"], len(running(dep)))
        peak["target"] = max(peak["target"], dep["target_num_replicas"])
        return len(running(dep)) >= 3

    load = Load(inst.http + "/?sleep_ms=200", clients=8, max_s=25)
    try:
        wait_for(scaled_up, 20, what=">= 3 RUNNING replicas under load")
        status = yaml.safe_load(inst.cli("status", check=True).stdout)
        scaled_status = status["applications"]["scaled"]["deployments"]["Scaled"]
        assert scaled_status["replica_states"]["RUNNING"] >= 3, scaled_status
    finally:
        load.stop()
    assert load.errors == [], load.errors[:5]
    assert load.ok > 20
    # Replicas start in well under the poll period, so UPSCALING itself may be missed; its
    # completion (reachable only from UPSCALING) may not.
    assert seen & {("UPSCALING", "AUTOSCALING"), ("HEALTHY", "UPSCALE_COMPLETED")}, seen
    assert peak["running"] <= 4 and peak["target"] <= 4, peak
    # Autoscaling is not a config change: the application stays RUNNING while it scales.
    assert app_statuses == {"RUNNING"}, app_statuses

    # Without load it falls back to min_replicas.
    def back_to_one():
        dep = deployment(inst, "scaled")
        return dep["target_num_replicas"] == 1 and len(running(dep)) == 1
    wait_for(back_to_one, 15, interval=0.1, what="the replica count back at 1")

    def settled():
        dep = deployment(inst, "scaled")
        return dep["status"] == "HEALTHY" and len(dep["replicas"]) == 1 and dep
    dep = wait_for(settled, 20, what="Scaled HEALTHY with 1 replica")
    assert dep["status_trigger"] == "DOWNSCALE_COMPLETED", dep["status_trigger"]
    assert inst.app_status("scaled") == "RUNNING"


def test_scale_to_zero_and_cold_start(serve_instance, tmp_path):
    inst = serve_instance(TEST_APP_DIR)
    doc = {"applications": [scaled_app(
        args={"min": 0, "max": 2, "initial": 1, "target": 1, "up_delay": 0.5, "down_delay": 1,
              "zero_delay": 1, "look_back": 1, "interval": 0.5},
        deployment={"graceful_shutdown_wait_loop_s": 0.2})]}
    inst.cli("deploy", write_config(tmp_path, doc), check=True)
    inst.wait_running("scaled")
    cfg = deployment(inst, "scaled")["deployment_config"]["autoscaling_config"]
    assert cfg["min_replicas"] == 0 and cfg["downscale_to_zero_delay_s"] == 1

    # No traffic: the last replica goes away.
    def at_zero():
        dep = deployment(inst, "scaled")
        return dep["target_num_replicas"] == 0 and dep["replicas"] == []
    wait_for(at_zero, 20, interval=0.1, what="0 replicas")
    wait_for(lambda: inst.app_status("scaled") == "RUNNING", 10,
             what="the application RUNNING at 0 replicas")

    # One request brings a replica back and is answered by it. It sleeps, so the replica is
    # certainly RUNNING while the request is in flight.
    result = {}

    def cold_request():
        try:
            result["response"] = get(inst.http + "/?sleep_ms=2000", timeout=30)
        except Exception as e:  # noqa: BLE001
            result["error"] = repr(e)
    t = threading.Thread(target=cold_request)
    t.start()
    try:
        wait_for(lambda: len(running(deployment(inst, "scaled"))) >= 1, 30, interval=0.1,
                 what="a replica started by the first request")
    finally:
        t.join(timeout=40)
    assert not t.is_alive()
    assert "error" not in result, result.get("error")
    r = result["response"]
    assert r.status_code == 200, r.text
    assert r.json()["deployment"] == "Scaled"


def test_num_replicas_auto(serve_instance, tmp_path):
    inst = serve_instance(TEST_APP_DIR)
    doc = {"applications": [
        # In the config file, over code that sets num_replicas 1 and max_ongoing_requests 100.
        {"name": "file", "route_prefix": "/file", "import_path": "testapps:echo_builder",
         "deployments": [{"name": "Echo", "num_replicas": "auto"}]},
        # In the code (.num_replicas_auto()), without other options.
        scaled_app(name="code", route_prefix="/code", args={"auto": 1}),
        # In the code, with autoscaling fields overriding the "auto" defaults.
        scaled_app(name="code_max", route_prefix="/code_max", args={"auto": 1, "max": 7}),
    ]}
    inst.cli("deploy", write_config(tmp_path, doc), check=True)
    inst.wait_running("file", "code", "code_max")

    for app, name, max_replicas in [("file", "Echo", 100), ("code", "Scaled", 100),
                                    ("code_max", "Scaled", 7)]:
        dep = deployment(inst, app, name)
        cfg = dep["deployment_config"]
        autoscaling = cfg["autoscaling_config"]
        assert autoscaling["min_replicas"] == 1, (app, autoscaling)
        assert autoscaling["max_replicas"] == max_replicas, (app, autoscaling)
        assert autoscaling["target_ongoing_requests"] == 2, (app, autoscaling)
        assert cfg["max_ongoing_requests"] == 5, (app, cfg)
        assert cfg.get("num_replicas") is None, (app, cfg)
        assert dep["target_num_replicas"] == 1, (app, dep["target_num_replicas"])
        assert len(running(dep)) == 1, (app, dep["replicas"])
    assert get(inst.http + "/file/").status_code == 200
    assert get(inst.http + "/code/").json()["deployment"] == "Scaled"


def test_initial_replicas(serve_instance, tmp_path):
    inst = serve_instance(TEST_APP_DIR)
    doc = {"applications": [scaled_app(
        args={"min": 1, "max": 5, "initial": 3, "up_delay": 600, "down_delay": 600})]}
    inst.cli("deploy", write_config(tmp_path, doc), check=True)
    inst.wait_running("scaled")
    wait_for(lambda: len(running(deployment(inst, "scaled"))) == 3, 30, what="3 replicas")
    dep = deployment(inst, "scaled")
    assert dep["target_num_replicas"] == 3
    assert dep["deployment_config"]["autoscaling_config"]["initial_replicas"] == 3


def test_target_capacity_scales_fixed_deployments(serve_instance, tmp_path):
    inst = serve_instance(TEST_APP_DIR)

    def doc(capacity):
        return {"target_capacity": capacity, "applications": [
            {"name": "echo", "route_prefix": "/", "import_path": "testapps:echo_builder",
             "deployments": [{"name": "Echo", "num_replicas": 4,
                              "graceful_shutdown_wait_loop_s": 0.2}]}]}

    inst.cli("deploy", write_config(tmp_path, doc(50)), check=True)
    inst.wait_running("echo")
    wait_for(lambda: len(inst.replica_pids("echo", "Echo")) == 2, 30, what="2 of 4 replicas")
    d = inst.details()
    assert d["target_capacity"] == 50
    assert d["applications"]["echo"]["deployments"]["Echo"]["target_num_replicas"] == 2
    half = inst.replica_pids("echo", "Echo")

    inst.cli("deploy", write_config(tmp_path, doc(100), "c2.yaml"), check=True)
    wait_for(lambda: len(inst.replica_pids("echo", "Echo")) == 4, 30, what="4 of 4 replicas")
    inst.wait_running("echo")
    d = inst.details()
    assert d["target_capacity"] == 100
    assert d["applications"]["echo"]["deployments"]["Echo"]["target_num_replicas"] == 4
    assert set(half) <= set(inst.replica_pids("echo", "Echo"))


def test_autoscaling_config_update_keeps_replicas(serve_instance, tmp_path):
    inst = serve_instance(TEST_APP_DIR)

    def doc(max_replicas, look_back=2):
        return {"applications": [scaled_app(deployment={"autoscaling_config": {
            "min_replicas": 2, "max_replicas": max_replicas, "upscale_delay_s": 600,
            "downscale_delay_s": 600, "look_back_period_s": look_back,
            "metrics_interval_s": 0.5}})]}

    inst.cli("deploy", write_config(tmp_path, doc(4)), check=True)
    inst.wait_running("scaled")
    wait_for(lambda: len(inst.replica_pids("scaled", "Scaled")) == 2, 30, what="2 replicas")
    pids = inst.replica_pids("scaled", "Scaled")

    def autoscaling():
        return deployment(inst, "scaled")["deployment_config"]["autoscaling_config"]

    # Only the bounds change: applied in place.
    inst.cli("deploy", write_config(tmp_path, doc(5), "c2.yaml"), check=True)
    wait_for(lambda: autoscaling()["max_replicas"] == 5, 30, what="max_replicas 5 applied")
    inst.wait_running("scaled")
    assert inst.replica_pids("scaled", "Scaled") == pids
    assert deployment(inst, "scaled")["target_num_replicas"] == 2

    # The metrics window changes too (the replicas are reconfigured, not replaced).
    inst.cli("deploy", write_config(tmp_path, doc(5, look_back=3), "c3.yaml"), check=True)
    wait_for(lambda: autoscaling()["look_back_period_s"] == 3, 30, what="look_back 3 applied")
    inst.wait_running("scaled")
    assert inst.replica_pids("scaled", "Scaled") == pids
    assert get(inst.http + "/").status_code == 200


def policy_app(policy):
    return {"name": "policy", "route_prefix": "/", "import_path": "policyapps:policy_builder",
            "args": {"policy": policy}}


def test_custom_policy_runs_in_a_replica(serve_instance, tmp_path):
    # The policy (registered by the app library) asks for 3 replicas without any load.
    inst = serve_instance(TEST_APP_DIR)
    inst.cli("deploy", write_config(tmp_path, {"applications": [policy_app("three_replicas")]}),
             check=True)
    wait_for(lambda: len(running(deployment(inst, "policy"))) == 3, 30, what="3 replicas")
    dep = deployment(inst, "policy")
    assert dep["target_num_replicas"] == 3
    assert dep["deployment_config"]["autoscaling_config"]["policy"] == "three_replicas"
    assert get(inst.http + "/").text == "ok"


def test_failing_custom_policy_keeps_the_target_and_says_why(serve_instance, tmp_path):
    inst = serve_instance(TEST_APP_DIR)
    inst.cli("deploy", write_config(tmp_path, {"applications": [policy_app("broken_policy")]}),
             check=True)
    wait_for(lambda: "the policy cannot decide" in deployment(inst, "policy")["message"], 30,
             what="the policy's error in the status message")
    dep = deployment(inst, "policy")
    assert dep["target_num_replicas"] == 1
    assert len(running(dep)) == 1
    assert get(inst.http + "/").text == "ok"


def test_replica_side_metrics_when_handle_collection_is_off(serve_instance, tmp_path,
                                                            monkeypatch):
    # With handle-side collection off the routers report queued requests only; the ongoing
    # requests the upscale needs come from the replicas' own reports.
    monkeypatch.setenv("RAY_SERVE_COLLECT_AUTOSCALING_METRICS_ON_HANDLE", "0")
    inst = serve_instance(TEST_APP_DIR)
    doc = {"applications": [scaled_app(
        args={"min": 1, "max": 3, "target": 1, "up_delay": 0.5, "down_delay": 600,
              "look_back": 1, "interval": 0.3})]}
    inst.cli("deploy", write_config(tmp_path, doc), check=True)
    inst.wait_running("scaled")
    load = Load(inst.http + "/?sleep_ms=200", clients=6, max_s=25)
    try:
        wait_for(lambda: len(running(deployment(inst, "scaled"))) >= 2, 20,
                 what=">= 2 RUNNING replicas from replica-side metrics")
    finally:
        load.stop()
    assert load.errors == [], load.errors[:5]
