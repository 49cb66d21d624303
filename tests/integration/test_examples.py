"""The greeter example: builder args, constructor args, user_config through reconfigure()."""
import os

import requests

from conftest import EXAMPLES_DIR, get


def test_greeter_builder_args_and_user_config(serve_run):
    run = serve_run("greeter:build", "greeting=Hola", "repeat=2", "punctuation=?", "replicas=2",
                    app_dir=os.path.join(EXAMPLES_DIR, "greeter"))
    url = run.wait_ready()
    r = get(url + "/?name=Ann")
    assert r.status_code == 200
    body = r.json()
    # Constructor args (greeting, repeat) and user_config (punctuation) both applied.
    assert body["message"] == "Hola, Ann? Hola, Ann?"
    r = requests.post(url + "/", json={"name": "Bo"}, timeout=10)
    assert r.json()["message"] == "Hola, Bo? Hola, Bo?"
    dep = run.status()["applications"]["default"]["deployments"]["Greeter"]
    assert dep["replica_states"] == {"RUNNING": 2}
    r = get(url + "/fail")
    assert r.status_code == 500 and "asked to fail" in r.text
