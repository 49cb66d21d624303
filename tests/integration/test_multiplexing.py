"""Model multiplexing on examples/multiplexed_models: per-customer XGBoost models loaded by id
into a per-replica LRU, and routers that send each request to the replica holding its model."""
import json
import os
import random
import threading

import pytest
import requests

from conftest import EXAMPLES_DIR, get, wait_for

APP_DIR = os.path.join(EXAMPLES_DIR, "multiplexed_models")
MODELS = ["cancer", "wine", "iris", "diabetes"]

@pytest.fixture(autouse=True)
def example_built():
    # scripts/install-deps.sh provides everything the example needs: a missing library is a
    # broken set-up, not a reason to skip.
    assert os.path.exists(os.path.join(APP_DIR, "libmultiplexed_models.so")), (
        "examples/multiplexed_models was not built (needs libxgboost-dev, python3-numpy and "
        "the data sets from scripts/install-deps.sh)")


def sample(model):
    with open(os.path.join(APP_DIR, "models", model + ".sample.json")) as f:
        return json.load(f)


def predict(url, model, rows):
    return requests.post(url + "/", json={"features": rows},
                         headers={"serve_multiplexed_model_id": model}, timeout=10)


def replica_stats(url, replicas=2):
    """{replica id: /stats} of every replica (plain requests reach both)."""
    seen = {}

    def all_seen():
        s = get(url + "/stats").json()
        seen[s["replica"]] = s
        return len(seen) == replicas
    wait_for(all_seen, 10, what="every replica's stats")
    return seen


def test_predictions_match_the_trained_models(serve_run):
    run = serve_run("multiplexed_models:build", "num_replicas=1", app_dir=APP_DIR)
    url = run.wait_ready()
    for model in MODELS:
        s = sample(model)
        r = predict(url, model, s["features"])
        assert r.status_code == 200, r.text
        assert r.json()["model"] == model
        got, want = r.json()["predictions"], s["predictions"]
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g == pytest.approx(w, rel=1e-4, abs=1e-5)
    # 2 models per replica: the least recently used ones were evicted.
    stats = replica_stats(url, 1).popitem()[1]
    assert stats["models"] == ["iris", "diabetes"]  # least recently used first
    assert (stats["loads"], stats["unloads"]) == (4, 2)
    assert predict(url, "", [[1.0]]).status_code == 400
    assert predict(url, "nobody", [[1.0]]).status_code == 404


def test_requests_land_on_the_replica_holding_their_model(serve_run):
    run = serve_run("multiplexed_models:build", "num_replicas=2", "max_models=2",
                    app_dir=APP_DIR)
    url = run.wait_ready()
    rows = {m: sample(m)["features"][:1] for m in MODELS}
    # Warm-up: each model not held anywhere yet, each time until the controller knows which
    # replica loaded it, until the four are spread two per replica. The controller's knowledge
    # reaches the proxy's router by long poll a moment later, so a model sent before that may
    # land on a full replica and evict another one: that one is sent again (bounded rounds).
    rest = open(os.path.join(run.session_dir(), "dashboard_address")).read().strip()

    def known_models():
        apps = requests.get(rest + "/api/serve/applications/", timeout=10).json()["applications"]
        return {m for d in apps["default"]["deployments"].values() for r in d["replicas"]
                for m in r.get("multiplexed_model_ids", [])}

    def current_holders():
        return {m: replica for replica, s in replica_stats(url).items() for m in s["models"]}
    holders = {}
    for _ in range(10):
        holders = current_holders()
        if sorted(holders) == sorted(MODELS):
            break
        for model in MODELS:
            if model in holders:
                continue
            assert predict(url, model, rows[model]).status_code == 200
            wait_for(lambda: model in known_models(), 10, what=f"the controller knowing {model}")
    holders = current_holders()
    assert sorted(holders) == sorted(MODELS), holders
    before = {r: s["loads"] for r, s in replica_stats(url).items()}

    n, results, lock = 400, [], threading.Lock()
    order = [random.choice(MODELS) for _ in range(n)]

    def worker(k):
        for i in range(k, n, 8):
            r = predict(url, order[i], rows[order[i]])
            assert r.status_code == 200, r.text
            with lock:
                results.append(r.json())
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == n
    after = {r: s["loads"] for r, s in replica_stats(url).items()}
    loads = sum(after.values()) - sum(before.values())
    hits = sum(1 for r in results if r["hit"])
    on_holder = sum(1 for r in results if holders.get(r["model"]) == r["replica"])
    print(f"loads during {n} requests: {loads}; hits {hits}; on the warm-up holder {on_holder}")
    assert loads <= 0.1 * n, (loads, before, after)
    assert hits >= 0.9 * n
    assert on_holder >= 0.9 * n
