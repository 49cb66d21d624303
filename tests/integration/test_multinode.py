"""A cluster of three nodes on one machine: the head on 127.0.0.1 and two worker nodes on the
loopback aliases 127.0.0.2 and 127.0.0.3, each with its own temp dir and simulated GPUs.
Replicas spread across the nodes, GPU replicas get their devices, and a worker killed with
SIGKILL has its replicas replaced on the other nodes while requests keep succeeding."""
import os
import re
import signal
import time

import requests

from conftest import TEST_APP_DIR, session_pids, wait_for
from conftest import kill_sessions as kill_all
from conftest import serve_in as serve

HEARTBEAT_TIMEOUT_S = "3"


def agent_pid(temp_dir):
    with open(os.path.join(temp_dir, "session_latest", "agent_pid")) as f:
        return int(f.read())


def test_three_node_cluster(tmp_path):
    head_dir, w1_dir, w2_dir = (tmp_path / n for n in ("head", "w1", "w2"))
    dirs = [head_dir, w1_dir, w2_dir]
    for d in dirs:
        d.mkdir()
    try:
        out = serve(head_dir, "start", "--head", "--http-port", "0", "--dashboard-port", "0",
                    "--app-dir", TEST_APP_DIR, "--num-cpus", "2", "--num-gpus", "0",
                    env={"SERVE_NODE_HEARTBEAT_TIMEOUT_S": HEARTBEAT_TIMEOUT_S})
        assert out.returncode == 0, out.stdout + out.stderr
        http = re.search(r"HTTP proxy:\s+(http://\S+)", out.stdout).group(1)
        rest = re.search(r"REST API:\s+(http://\S+)", out.stdout).group(1)
        controller = re.search(r"Controller:\s+(\S+)", out.stdout).group(1)
        # Workers join with the cluster token the head made (docs/security.md).
        token_file = os.path.join(head_dir, "session_latest", "cluster_token")

        workers = {}
        for d, ip, gpus in ((w1_dir, "127.0.0.2", "2"), (w2_dir, "127.0.0.3", "1")):
            out = serve(d, "start", "--address", controller, "--node-ip", ip, "--num-cpus", "1",
                        "--num-gpus", gpus, "--metrics-export-port", "0", "--token-file", token_file,
                        env={"SERVE_NODE_HEARTBEAT_PERIOD_S": "0.3"})
            assert out.returncode == 0, out.stdout + out.stderr
            workers[ip] = re.search(r"Node:\s+(\S+) at " + re.escape(ip), out.stdout).group(1)

        def details():
            r = requests.get(rest + "/api/serve/applications/", timeout=10)
            assert r.status_code == 200, r.text
            return r.json()

        nodes = details()["nodes"]
        assert {n["node_ip"] for n in nodes.values() if n["state"] == "ALIVE"} == {
            "127.0.0.1", "127.0.0.2", "127.0.0.3"}
        assert nodes[workers["127.0.0.2"]]["resources_total"]["GPU"] == 2

        config = {"applications": [
            {"name": "spread", "route_prefix": "/spread", "import_path": "testapps:echo_builder",
             "deployments": [{"name": "Echo", "num_replicas": 3,
                              "ray_actor_options": {"num_cpus": 0.5}}]},
            {"name": "gpu", "route_prefix": "/gpu", "import_path": "testapps:echo_builder",
             "deployments": [{"name": "Echo", "num_replicas": 2,
                              "ray_actor_options": {"num_cpus": 0, "num_gpus": 1}}]}]}
        r = requests.put(rest + "/api/serve/applications/", json=config, timeout=30)
        assert r.status_code == 200, r.text

        def running(app, n):
            d = details()["applications"].get(app)
            if not d or d["status"] != "RUNNING":
                return None
            reps = [x for x in d["deployments"]["Echo"]["replicas"] if x["state"] == "RUNNING"]
            return reps if len(reps) == n else None

        spread = wait_for(lambda: running("spread", 3), 90, what="spread RUNNING")
        assert sorted(x["node_ip"] for x in spread) == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
        gpu = wait_for(lambda: running("gpu", 2), 60, what="gpu RUNNING")
        assert sorted(x["node_ip"] for x in gpu) == ["127.0.0.2", "127.0.0.3"]
        assert all(x["gpu_ids"] == [0] for x in gpu), gpu

        # The head's proxy prefers its own node's replica (Ray's same-node preference); the GPU
        # replicas run only on the workers, so requests to them cross nodes, reaching each
        # replica at its node's IP.
        assert requests.get(http + "/spread", timeout=10).status_code == 200
        seen = set()
        def both_workers_answer():
            seen.add(requests.get(http + "/gpu", timeout=10).json()["node_id"])
            return seen == set(workers.values())
        wait_for(both_workers_answer, 30, interval=0, what="replicas on both workers answering")
        # The replica's context and environment carry its node and GPU devices.
        for _ in range(10):
            body = requests.get(http + "/gpu", timeout=10).json()
            assert body["gpu_ids"] == [0] and body["node_id"] in workers.values(), body
            env = requests.get(http + "/gpu?env=CUDA_VISIBLE_DEVICES", timeout=10).json()
            assert env["env"] == "0", env
        omp = requests.get(http + "/spread?env=OMP_NUM_THREADS", timeout=10).json()
        assert omp["env"] == "1", omp

        status = serve(head_dir, "status", "--address", rest)
        assert status.returncode == 0 and "127.0.0.3" in status.stdout, status.stdout

        # A worker dies without a word: after the heartbeat timeout its node is DEAD and its
        # replicas run elsewhere (the CPU replica on a node with room, the GPU one on the node
        # with a free device).
        dead = workers["127.0.0.3"]
        killed_at = time.monotonic()
        os.kill(agent_pid(w2_dir), signal.SIGKILL)
        wait_for(lambda: not session_pids(str(w2_dir)), 15, what="the killed node's processes")

        def replaced():
            d = details()
            if d["nodes"][dead]["state"] != "DEAD":
                return False
            s, g = running("spread", 3), running("gpu", 2)
            if not s or not g:
                return False
            return all(x["node_id"] != dead for x in s + g) and (s, g)
        s, g = wait_for(replaced, 60, what="replicas replaced after the node died")
        print(f"replicas replaced {time.monotonic() - killed_at:.2f} s after the SIGKILL "
              f"(heartbeat timeout {HEARTBEAT_TIMEOUT_S} s)")
        assert sorted(x["node_ip"] for x in g) == ["127.0.0.2", "127.0.0.2"]
        assert sorted(x["gpu_ids"][0] for x in g) == [0, 1]
        for _ in range(30):
            assert requests.get(http + "/spread", timeout=10).status_code == 200
            assert requests.get(http + "/gpu", timeout=10).status_code == 200

        # Stopping the head stops the whole cluster, worker agents included.
        out = serve(head_dir, "stop")
        assert out.returncode == 0, out.stdout + out.stderr
        wait_for(lambda: not session_pids(str(w1_dir)), 30, what="the worker node to stop")
        assert not session_pids(str(head_dir))
    finally:
        kill_all(dirs)
