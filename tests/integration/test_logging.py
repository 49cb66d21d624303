"""logging_config end to end: JSON lines with Ray's fields in a custom logs_dir (replicas from
the application's config, controller and proxy from the top-level one), user log lines with the
request id and route, an in-place logging-only update (same replica pids), and clear errors for
invalid values."""
import glob
import json
import os

import yaml

from conftest import TEST_APP_DIR, get, wait_for


def write_config(tmp_path, doc, name="config.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return str(path)


def chat_doc(top_dir, app_logging):
    return {"logging_config": {"encoding": "JSON", "logs_dir": str(top_dir)},
            "applications": [{"name": "chat", "route_prefix": "/chat",
                              "import_path": "logapps:chatty_app",
                              "logging_config": app_logging}]}


def read_all(pattern):
    return "".join(open(f).read() for f in sorted(glob.glob(pattern)))


def json_lines(pattern):
    out = []
    for line in read_all(pattern).splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def test_json_logs_custom_dir_and_in_place_update(serve_instance, tmp_path):
    inst = serve_instance(TEST_APP_DIR)
    top_dir, app_dir = tmp_path / "top-logs", tmp_path / "app-logs"
    app_logging = {"encoding": "JSON", "logs_dir": str(app_dir),
                   "additional_log_standard_attrs": ["funcName"]}
    inst.cli("deploy", write_config(tmp_path, chat_doc(top_dir, app_logging)), check=True)
    inst.wait_running("chat")
    pids = inst.replica_pids("chat", "Chatty")
    assert len(pids) == 2

    r = get(inst.http + "/chat/?word=hi", headers={"X-Request-ID": "log-1"})
    assert r.status_code == 200
    replica_logs = str(app_dir / "replica_chat_Chatty_*.log")

    def user_line():
        for j in json_lines(replica_logs):
            if j.get("message") == "chatty says hi":
                return j
        return None
    wait_for(user_line, 10, what="the user's JSON log line in the application's logs_dir")
    line = user_line()
    assert line["request_id"] == "log-1"
    assert line["route"] == "/chat"
    assert line["application"] == "chat"
    assert line["deployment"] == "chat_Chatty"
    assert line["component_name"] == "replica"
    assert line["replica"]
    assert line["levelname"] == "INFO"
    assert line["filename"] == "logapps.cc" and isinstance(line["lineno"], int)
    assert "Chatty" in line["funcName"]  # additional_log_standard_attrs
    assert line["process"] in pids
    # The replica's access line, also JSON, carries the same request fields.
    access = [j for j in json_lines(replica_logs)
              if j.get("request_id") == "log-1" and j["message"].startswith("GET /chat")]
    assert access and access[0]["application"] == "chat", json_lines(replica_logs)
    # At INFO the DEBUG line is not written.
    assert not any(j["message"].startswith("chatty debug") for j in json_lines(replica_logs))
    # Nothing of the replicas in the session's default directory.
    session_logs = os.path.join(inst.temp_dir, "session_latest", "logs", "serve")
    assert not glob.glob(os.path.join(session_logs, "replica_chat_*"))

    # The proxy follows the top-level config: JSON lines in its logs_dir.
    def proxy_access():
        return [j for j in json_lines(str(top_dir / "proxy_*.log"))
                if j.get("request_id") == "log-1"]
    wait_for(proxy_access, 10, what="the proxy's JSON access line in the top-level logs_dir")
    assert proxy_access()[0]["component_name"] == "proxy"
    assert proxy_access()[0]["route"] == "/chat"
    wait_for(lambda: glob.glob(str(top_dir / "controller_*.log")), 10,
             what="the controller's log in the top-level logs_dir")

    # Change only logging_config: TEXT at DEBUG, applied to the running replicas in place.
    app_logging = {"encoding": "TEXT", "log_level": "DEBUG", "logs_dir": str(app_dir)}
    inst.cli("deploy", write_config(tmp_path, chat_doc(top_dir, app_logging), "c2.yaml"),
             check=True)

    def debug_text_lines():
        get(inst.http + "/chat/?word=again", headers={"X-Request-ID": "log-2"})
        return [ln for ln in read_all(replica_logs).splitlines()
                if "log-2 /chat -- chatty debug again" in ln and ln.startswith("DEBUG ")]
    wait_for(debug_text_lines, 20, interval=0.2,
             what="DEBUG user lines in TEXT after the logging-only update")
    inst.wait_running("chat")
    wait_for(lambda: len(inst.replica_pids("chat", "Chatty")) == 2, 20, what="2 running replicas")
    assert inst.replica_pids("chat", "Chatty") == pids  # not restarted


def test_invalid_logging_config_is_rejected_naming_the_field(serve_instance, tmp_path):
    inst = serve_instance(TEST_APP_DIR)
    for bad, field in [({"encoding": "XML"}, "logging_config.encoding"),
                       ({"log_level": "LOUD"}, "logging_config.log_level"),
                       ({"additional_log_standard_attrs": ["colour"]},
                        "logging_config.additional_log_standard_attrs[0]")]:
        doc = {"applications": [{"name": "chat", "route_prefix": "/chat",
                                 "import_path": "logapps:chatty_app",
                                 "deployments": [{"name": "Chatty", "logging_config": bad}]}]}
        out = inst.cli("deploy", write_config(tmp_path, doc))
        assert out.returncode != 0
        assert field in out.stdout + out.stderr, out.stdout + out.stderr


def test_logs_rotate_with_ray_rotation_env(serve_instance, tmp_path, monkeypatch):
    # Every process of the instance inherits these from `serve start`.
    monkeypatch.setenv("RAY_ROTATION_MAX_BYTES", "3000")
    monkeypatch.setenv("RAY_ROTATION_BACKUP_COUNT", "2")
    inst = serve_instance(TEST_APP_DIR)
    doc = {"applications": [{"name": "chat", "route_prefix": "/chat",
                             "import_path": "logapps:chatty_app"}]}
    inst.cli("deploy", write_config(tmp_path, doc), check=True)
    inst.wait_running("chat")
    logs = os.path.join(inst.temp_dir, "session_latest", "logs", "serve")

    def rotated():
        for i in range(20):
            get(inst.http + f"/chat/?word=w{i}", headers={"X-Request-ID": f"rot-{i}"})
        proxy = glob.glob(os.path.join(logs, "proxy_*.2.log"))
        replicas = glob.glob(os.path.join(logs, "replica_chat_Chatty_*.2.log"))
        return proxy and replicas
    wait_for(rotated, 60, interval=0.2, what="rotated proxy and replica logs")
    for name in os.listdir(logs):
        assert ".3.log" not in name, name  # at most RAY_ROTATION_BACKUP_COUNT backups
        assert os.path.getsize(os.path.join(logs, name)) <= 3000, name
