"""Dynamic request batching on the digits example (examples/digits): concurrent requests reach
the model as batches of the expected sizes (read from the replica's /stats), a partial batch
closes when its wait ends, batching=false calls the model once per request, and the served
model keeps the held-out accuracy."""
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import EXAMPLES_DIR, get, wait_for

SOURCE_DIR = os.environ.get("SERVE_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
DIGITS_DIR = os.path.join(EXAMPLES_DIR, "digits")
MODEL = os.path.join(DIGITS_DIR, "digits_model.json")

@pytest.fixture(autouse=True)
def digits_built():
    # scripts/install-deps.sh provides everything the example needs: a missing model is a
    # broken set-up, not a reason to skip.
    assert EXAMPLES_DIR and os.path.exists(MODEL), (
        "examples/digits was not built (needs libopenblas-dev, python3-numpy and the digits "
        "data from scripts/install-deps.sh)")


def held_out():
    with open(MODEL) as f:
        test = json.load(f)["test"]
    return test["x"], test["y"]


def classify_concurrently(url, samples):
    """POSTs every sample at once (one thread each); returns the predicted digits in order."""

    def one(pixels):
        r = requests.post(url + "/", json={"pixels": pixels}, timeout=30)
        assert r.status_code == 200, r.text
        return r.json()["digit"]

    with ThreadPoolExecutor(max_workers=len(samples)) as pool:
        return list(pool.map(one, samples))


def test_64_concurrent_requests_form_two_full_batches(serve_run):
    # A long wait: only a full batch (32) or the end of the wait closes a batch.
    run = serve_run("digits:build", "max_batch_size=32", "batch_wait_timeout_s=1.5",
                    app_dir=DIGITS_DIR)
    url = run.wait_ready()
    x, y = held_out()

    digits = classify_concurrently(url, x[:64])
    stats = get(url + "/stats").json()
    assert stats["batch_sizes"] == [32, 32], stats
    correct = sum(d == t for d, t in zip(digits, y[:64]))
    assert correct / 64 >= 0.9, (correct, digits)

    # A partial batch runs when the wait, counted from its first item, ends.
    requests.post(url + "/stats/reset", timeout=10)
    start = time.monotonic()
    classify_concurrently(url, x[64:69])
    elapsed = time.monotonic() - start
    assert get(url + "/stats").json()["batch_sizes"] == [5]
    assert 1.4 <= elapsed < 10, elapsed

    acc = get(url + "/accuracy").json()
    print(f"held-out accuracy {acc['accuracy']:.4f} (trainer {acc['trainer_accuracy']:.4f}, "
          f"n={acc['n']})")
    assert acc["n"] == len(y)
    assert acc["accuracy"] >= 0.9
    assert abs(acc["accuracy"] - acc["trainer_accuracy"]) <= 0.01


def test_unbatched_requests_run_alone(serve_run):
    # batching=false: the model sees every request alone.
    run = serve_run("digits:build", "batching=false", app_dir=DIGITS_DIR)
    url = run.wait_ready()
    x, y = held_out()
    digits = classify_concurrently(url, x[:64])
    sizes = get(url + "/stats").json()["batch_sizes"]
    assert sizes == [1] * 64
    assert sum(d == t for d, t in zip(digits, y[:64])) / 64 >= 0.9


def test_config_file_and_live_reconfigure(serve_instance, tmp_path):
    # examples/digits/config.yaml as shipped, then a user_config change applied in place
    # (reconfigure() -> set_max_batch_size / set_batch_wait_timeout_s, same replica).
    inst = serve_instance(DIGITS_DIR)
    config = os.path.join(SOURCE_DIR, "examples", "digits", "config.yaml")
    inst.cli("deploy", config, "--strict", check=True)
    inst.wait_running("digits")
    stats = get(inst.http + "/stats").json()
    assert stats["max_batch_size"] == 32 and stats["batch_wait_timeout_s"] == 0.005, stats
    pids = inst.replica_pids("digits", "Digits")

    with open(config) as f:
        text = f.read()
    changed = tmp_path / "digits.yaml"
    changed.write_text(text.replace("max_batch_size: 32", "max_batch_size: 4")
                       .replace("batch_wait_timeout_s: 0.005", "batch_wait_timeout_s: 1.0"))
    inst.cli("deploy", str(changed), "--strict", check=True)

    def applied():
        s = get(inst.http + "/stats").json()
        return s["max_batch_size"] == 4 and s["batch_wait_timeout_s"] == 1.0
    wait_for(applied, 30, what="the new user_config")
    assert inst.replica_pids("digits", "Digits") == pids  # reconfigured, not restarted

    x, _ = held_out()
    requests.post(inst.http + "/stats/reset", timeout=10)
    classify_concurrently(inst.http, x[:8])
    assert get(inst.http + "/stats").json()["batch_sizes"] == [4, 4]
