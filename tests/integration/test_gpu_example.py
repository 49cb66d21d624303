"""The GPU example (examples/gpu): a batched matrix-vector product on a CUDA kernel with a CPU
fallback. Deployed on a head with simulated GPUs (`--num-gpus 2`): replicas get device ids
(REST, their gpu_ids and CUDA_VISIBLE_DEVICES), answer correctly, and say which path they took.
The GPU path is checked only where a GPU exists; elsewhere that test is skipped with the reason."""
import glob
import os
import random
import shutil
import subprocess

import pytest
import requests
import yaml

from conftest import EXAMPLES_DIR, wait_for

GPU_DIR = os.path.join(EXAMPLES_DIR, "gpu")
SOURCE_DIR = os.environ.get("SERVE_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
CONFIG = os.path.join(SOURCE_DIR, "examples", "gpu", "config.yaml")


def physical_gpus():
    """NVIDIA GPUs this machine exposes, regardless of CUDA_VISIBLE_DEVICES: what `nvidia-smi -L`
    lists, else the driver's /proc entries; 0 without a driver."""
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
        return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
    return len(glob.glob("/proc/driver/nvidia/gpus/*"))


def matvec(matrix, vectors):
    """A · x for each x, for small integers (exact in float32, whatever the summation order)."""
    return [[float(sum(a * b for a, b in zip(row, x))) for row in matrix] for x in vectors]


def post(url, body, **params):
    r = requests.post(url + "/", json=body, params=params, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def rest_replicas(run):
    rest = open(os.path.join(run.session_dir(), "dashboard_address")).read().strip()
    apps = requests.get(rest + "/api/serve/applications/", timeout=10).json()["applications"]
    return {r["replica_id"]: r for r in apps["matvec"]["deployments"]["MatVec"]["replicas"]
            if r["state"] == "RUNNING"}


def answers_of_every_replica(url, body, n):
    """POSTs `body` until each of the `n` replicas has answered; {replica_id: response}."""
    seen = {}

    def all_seen():
        out = post(url, body)
        seen[out["replica_id"]] = out
        return len(seen) == n
    wait_for(all_seen, 60, interval=0, what=f"answers from all {n} replicas")
    return seen


def start(serve_run, tmp_path):
    """`serve run` of the example's config.yaml on a head with 2 simulated GPUs. The config as
    shipped, plus http_options on a free port (a config's http_options start the instance)."""
    assert os.path.exists(os.path.join(GPU_DIR, "libmatvec.so")), "examples/gpu is not built"
    with open(CONFIG) as f:
        config = yaml.safe_load(f)
    config["http_options"] = {"host": "127.0.0.1", "port": 0}
    path = tmp_path / "gpu.yaml"
    path.write_text(yaml.safe_dump(config))
    run = serve_run(str(path), "--num-gpus", "2", app_dir=GPU_DIR)
    return run, run.wait_ready(timeout=90)


def test_matvec_on_simulated_gpus(serve_run, tmp_path):
    run, url = start(serve_run, tmp_path)
    # Three replicas of half a GPU on two devices: two share device 0, one has device 1.
    replicas = wait_for(lambda: (lambda r: r if len(r) == 3 else None)(rest_replicas(run)), 30,
                        what="3 RUNNING replicas")
    assert sorted(r["gpu_ids"] for r in replicas.values()) == [[0], [0], [1]], replicas

    matrix = [[1, 2, 3], [4, 5, 6]]
    vectors = [[1, 0, 0], [0, 1, 0], [1, 1, 1], [-2, 7, 3]]
    body = {"matrix": matrix, "vectors": vectors}
    gpus = physical_gpus()
    for rid, out in answers_of_every_replica(url, body, 3).items():
        assert rid in replicas, (rid, list(replicas))
        ids = replicas[rid]["gpu_ids"]
        assert out["gpu_ids"] == ids, out
        assert out["cuda_visible_devices"] == ",".join(map(str, ids)), out
        assert out["node_id"] == replicas[rid]["node_id"]
        assert out["results"] == matvec(matrix, vectors), out
        # The kernel runs only where the replica's device exists (CUDA_VISIBLE_DEVICES names a
        # real GPU) and the library has it; the CPU path says why it was taken.
        on_gpu = out["built_with_cuda"] and ids[0] < gpus
        assert out["device"] == ("cuda:0" if on_gpu else "cpu"), out
        if not on_gpu:
            assert out["cpu_reason"], out
        forced = post(url, body, device="cpu")
        assert forced["device"] == "cpu" and forced["results"] == out["results"], forced

    info = requests.get(url + "/", timeout=10).json()
    assert "results" not in info and info["device"] in ("cpu", "cuda:0"), info
    bad = requests.post(url + "/", json={"matrix": [[1, 2]], "vectors": [[1, 2, 3]]}, timeout=10)
    assert bad.status_code == 400 and "vectors" in bad.json()["error"], bad.text


def test_gpu_path_matches_cpu(serve_run, tmp_path):
    gpus = physical_gpus()
    if gpus == 0:
        pytest.skip("no GPU on this machine (nvidia-smi lists none, or no NVIDIA driver): the "
                    "CUDA path cannot run here")
    run, url = start(serve_run, tmp_path)
    info = requests.get(url + "/", timeout=10).json()
    if not info["built_with_cuda"]:
        pytest.skip("examples/gpu was built without CUDA (CMake found no nvcc)")
    # Random floats: only the same operations in the same order give equal results.
    rng = random.Random(7)
    rows, cols = 33, 257
    matrix = [[rng.uniform(-1, 1) for _ in range(cols)] for _ in range(rows)]
    vectors = [[rng.uniform(-1, 1) for _ in range(cols)] for _ in range(5)]
    body = {"matrix": matrix, "vectors": vectors}
    on_device_0 = {rid: out for rid, out in answers_of_every_replica(url, body, 3).items()
                   if out["gpu_ids"] == [0]}
    assert len(on_device_0) == 2, on_device_0
    for out in on_device_0.values():
        assert out["device"] == "cuda:0", out
        assert out["gpu_name"], out
        assert post(url, body, device="cpu")["results"] == out["results"]
