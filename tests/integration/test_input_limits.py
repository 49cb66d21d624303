"""Input limits (docs/limits.md) on a running instance: hostile documents sent through the REST
API and through `serve deploy` are refused with a 4xx or a non-zero exit that names the field,
and the instance keeps serving what it had."""
import json
import subprocess

import requests
import yaml

from conftest import SERVE, TEST_APP_DIR, get


def fn_app():
    return {"name": "fn", "route_prefix": "/fn", "import_path": "testapps:function_app"}


def put(inst, data):
    return requests.put(inst.rest + "/api/serve/applications/", data=data,
                        headers={"content-type": "application/json"}, timeout=30)


def test_hostile_documents_are_refused_and_the_instance_keeps_serving(serve_instance, tmp_path):
    inst = serve_instance(TEST_APP_DIR)
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"http_options": {"host": "127.0.0.1", "port": 0},
                                    "applications": [fn_app()]}))
    inst.cli("deploy", str(good), check=True)
    inst.wait_running("fn")
    assert get(inst.http + "/fn/y").text == "fn:/fn/y"

    # REST: each hostile body is a 4xx naming the problem.
    deep = '{"applications": [{"name": "x", "import_path": "m:a", "args": {"a": ' + \
        "[" * 100000 + "]" * 100000 + "}}]}"
    r = put(inst, deep)
    assert r.status_code == 400 and "nested deeper than 64 levels" in r.text, r.text

    huge = dict(fn_app(), deployments=[{"name": "f", "num_replicas": 1e30}])
    r = put(inst, '{"applications": [%s]}' % json.dumps(huge))
    assert r.status_code == 400, r.text
    assert "applications[0].deployments[0].num_replicas" in r.text

    nan = '{"applications": [{"name": "fn", "import_path": "testapps:function_app", ' \
        '"deployments": [{"name": "f", "health_check_period_s": NaN}]}]}'
    assert put(inst, nan).status_code == 400  # not JSON at all

    preload = dict(fn_app(), runtime_env={"env_vars": {"LD_PRELOAD": "/tmp/evil.so"}})
    r = put(inst, json.dumps({"applications": [preload]}))
    assert r.status_code == 400 and "LD_PRELOAD" in r.text, r.text

    escape = dict(fn_app(), name="../../etc")
    r = put(inst, json.dumps({"applications": [escape]}))
    assert r.status_code == 400 and "applications[0].name" in r.text, r.text

    r = put(inst, " " * (9 * 1024 * 1024))
    assert r.status_code == 413, r.status_code

    # serve deploy: an alias bomb and an out-of-range number exit non-zero with the reason.
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefghi", "bcdefghij"):
        bomb.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    bomb.append("applications: []")
    (tmp_path / "bomb.yaml").write_text("\n".join(bomb) + "\n")
    out = inst.cli("deploy", str(tmp_path / "bomb.yaml"), timeout=60)
    assert out.returncode != 0 and "after expanding YAML aliases" in out.stderr, out.stderr

    # serve run reads the file the same way, before starting anything.
    out = subprocess.run([SERVE, "run", str(tmp_path / "bomb.yaml")], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode != 0 and "after expanding YAML aliases" in out.stderr, out.stderr

    port = tmp_path / "port.yaml"
    port.write_text("http_options: {port: 70000}\napplications: []\n")
    out = inst.cli("deploy", str(port))
    assert out.returncode != 0 and "http_options.port" in out.stderr, out.stderr

    # Nothing changed: the application still serves and is the only one.
    assert get(inst.http + "/fn/y").text == "fn:/fn/y"
    apps = inst.details()["applications"]
    assert list(apps) == ["fn"] and apps["fn"]["status"] == "RUNNING"
