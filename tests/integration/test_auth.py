"""Token authentication of the cluster (docs/security.md), against the real binaries on loopback.
A head started with `serve start --head` and the REST API's loopback exemption turned off
(SERVE_REST_TRUST_LOOPBACK=0, as it would be for a remote caller): without the cluster token
each cluster port refuses the call (the agent's and the controller's gRPC, a replica's control
gRPC and data port, REST); with it the call works; a worker with a wrong token (or none) cannot
join, and one with the token can; the public HTTP ingress stays open; and the token appears in
no log."""
import os
import re
import socket
import stat
import struct

import grpc
import pytest
import requests

from conftest import TEST_APP_DIR, replica_addresses, session_pids, wait_for
from conftest import kill_sessions as kill_all
from conftest import serve_in as serve

WRONG_TOKEN = "f" * 64
FRAME_PROBE, FRAME_PROBE_REPLY, FRAME_AUTH = 7, 8, 11


class Head:
    def __init__(self, temp_dir):
        self.temp_dir = temp_dir
        out = serve(temp_dir, "start", "--head", "--http-port", "0", "--dashboard-port", "0",
                    "--app-dir", TEST_APP_DIR, env={"SERVE_REST_TRUST_LOOPBACK": "0"})
        assert out.returncode == 0, out.stdout + out.stderr
        self.start_output = out.stdout + out.stderr
        self.http = re.search(r"HTTP proxy:\s+(http://\S+)", out.stdout).group(1)
        self.rest = re.search(r"REST API:\s+(http://\S+)", out.stdout).group(1)
        self.controller = re.search(r"Controller:\s+(\S+)", out.stdout).group(1)
        self.session = os.path.realpath(os.path.join(temp_dir, "session_latest"))
        self.token_file = os.path.join(self.session, "cluster_token")
        with open(self.token_file) as f:
            self.token = f.read().strip()
        with open(os.path.join(self.session, "agent_address")) as f:
            self.agent = f.read().strip()

    def auth(self, token=None):
        return {"Authorization": "Bearer " + (token or self.token)}


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    temp_dir = tmp_path_factory.mktemp("head")
    h = None
    try:
        h = Head(temp_dir)
        yield h
    finally:
        if h is not None:
            out = serve(temp_dir, "stop", timeout=120)
            assert out.returncode == 0, out.stdout + out.stderr
        wait_for(lambda: not session_pids(str(temp_dir)), 30, what="the head's processes to exit")
        kill_all([temp_dir])


@pytest.fixture(scope="module")
def replica(head):
    """The address pair of the one replica of application `echo` (from its log line)."""
    config = {"applications": [{"name": "echo", "route_prefix": "/echo",
                                "import_path": "testapps:echo_builder",
                                "deployments": [{"name": "Echo", "num_replicas": 1}]}]}
    r = requests.put(head.rest + "/api/serve/applications/", json=config, headers=head.auth(),
                     timeout=30)
    assert r.status_code == 200, r.text

    def running():
        d = requests.get(head.rest + "/api/serve/applications/", headers=head.auth(),
                         timeout=10).json()
        return d["applications"].get("echo", {}).get("status") == "RUNNING"
    wait_for(running, 60, what="echo RUNNING")
    return replica_addresses(head.session, "replica_echo_")


def grpc_call(address, method, token):
    """A raw unary call with an empty request; returns the status code."""
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(method)
        metadata = [("authorization", "Bearer " + token)] if token else None
        try:
            call(b"", metadata=metadata, timeout=10)
            return grpc.StatusCode.OK
        except grpc.RpcError as e:
            return e.code()


def frame(kind, request_id, payload=b""):
    return struct.pack("<IBQ", 9 + len(payload), kind, request_id) + payload


def probe_data_port(address, token):
    """Sends (the token and) a queue-length probe; returns the reply's frame type, or None when
    the replica closed the connection without answering."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        data = frame(FRAME_AUTH, 0, token.encode()) if token else b""
        s.sendall(data + frame(FRAME_PROBE, 1))
        header = b""
        while len(header) < 13:
            chunk = s.recv(13 - len(header))
            if not chunk:
                return None
            header += chunk
        return header[4]


def test_session_files_are_private(head):
    assert stat.S_IMODE(os.stat(head.session).st_mode) == 0o700
    for name in ("cluster_token", "cluster.json"):
        assert stat.S_IMODE(os.stat(os.path.join(head.session, name)).st_mode) == 0o600, name
    assert re.fullmatch(r"[0-9a-f]{64}", head.token)
    assert head.token not in head.start_output
    assert head.token_file in head.start_output  # where workers' token comes from


@pytest.mark.parametrize("service,method", [
    ("agent", "/serve.v1.Agent/ListProcesses"),
    ("controller", "/serve.v1.Controller/GetDetails"),
])
def test_node_grpc_needs_the_token(head, service, method):
    address = head.agent if service == "agent" else head.controller
    assert grpc_call(address, method, None) == grpc.StatusCode.UNAUTHENTICATED
    assert grpc_call(address, method, WRONG_TOKEN) == grpc.StatusCode.UNAUTHENTICATED
    assert grpc_call(address, method, head.token) == grpc.StatusCode.OK


def test_replica_ports_need_the_token(head, replica):
    data, control = replica
    method = "/serve.v1.ReplicaControl/CheckHealth"
    assert grpc_call(control, method, None) == grpc.StatusCode.UNAUTHENTICATED
    assert grpc_call(control, method, WRONG_TOKEN) == grpc.StatusCode.UNAUTHENTICATED
    assert grpc_call(control, method, head.token) == grpc.StatusCode.OK
    assert probe_data_port(data, None) is None
    assert probe_data_port(data, WRONG_TOKEN) is None
    assert probe_data_port(data, head.token) == FRAME_PROBE_REPLY


def test_rest_needs_the_token_and_checks_host(head, replica):
    url = head.rest + "/api/serve/applications/"
    r = requests.get(url, timeout=10)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", r.text
    assert requests.get(url, headers=head.auth(WRONG_TOKEN), timeout=10).status_code == 401
    assert requests.put(url, json={"applications": []}, timeout=10).status_code == 401
    assert requests.delete(url, timeout=10).status_code == 401
    assert requests.get(head.rest + "/api/serve/metrics", timeout=10).status_code == 401
    assert requests.get(url, headers=head.auth(), timeout=10).status_code == 200
    # DNS rebinding: a page of another site reaching this port through its own name.
    r = requests.get(url, headers={"Host": "evil.example"}, timeout=10)
    assert r.status_code == 403, r.text
    # The CLI finds the token in the local session.
    out = serve(head.temp_dir, "status")
    assert out.returncode == 0 and "echo" in out.stdout, out.stdout + out.stderr
    # The public ingress stays open: the user's requests need no token.
    assert requests.get(head.http + "/echo", timeout=10).status_code == 200


def test_workers_need_the_token(head, tmp_path):
    wrong_file = tmp_path / "wrong_token"
    wrong_file.write_text(WRONG_TOKEN + "\n")
    dirs = [tmp_path / "none", tmp_path / "wrong", tmp_path / "right"]
    try:
        out = serve(dirs[0], "start", "--address", head.controller, "--node-ip", "127.0.0.2",
                    "--metrics-export-port", "0")
        assert out.returncode != 0
        assert "joining a cluster needs its token" in out.stderr, out.stderr

        out = serve(dirs[1], "start", "--address", head.controller, "--node-ip", "127.0.0.2",
                    "--metrics-export-port", "0", "--token-file", str(wrong_file))
        assert out.returncode != 0
        assert "refused this node" in out.stderr and "cluster token" in out.stderr, out.stderr
        wait_for(lambda: not session_pids(str(dirs[1])), 15, what="the refused agent to exit")

        out = serve(dirs[2], "start", "--address", head.controller, "--node-ip", "127.0.0.2",
                    "--metrics-export-port", "0", "--token-file", head.token_file,
                    "--num-cpus", "1")
        assert out.returncode == 0, out.stdout + out.stderr
        node = re.search(r"Node:\s+(\S+) at 127\.0\.0\.2", out.stdout).group(1)
        nodes = requests.get(head.rest + "/api/serve/applications/", headers=head.auth(),
                             timeout=10).json()["nodes"]
        assert nodes[node]["state"] == "ALIVE"
        worker_token = os.path.join(dirs[2], "session_latest", "cluster_token")
        assert stat.S_IMODE(os.stat(worker_token).st_mode) == 0o600
        out = serve(dirs[2], "stop", timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        wait_for(lambda: not session_pids(str(dirs[2])), 30, what="the worker to stop")
    finally:
        kill_all(dirs)
    for d in dirs[1:]:
        assert_no_token_in(d, head.token)


def assert_no_token_in(root, token):
    for directory, _, files in os.walk(root):
        for name in files:
            if name == "cluster_token":
                continue
            with open(os.path.join(directory, name), "rb") as f:
                content = f.read()
            assert token.encode() not in content, os.path.join(directory, name)
            assert WRONG_TOKEN.encode() not in content, os.path.join(directory, name)


def test_refusals_are_logged_without_the_token(head, replica):
    # Runs after the tests above (file order): each process logged what it refused.
    logs = os.path.join(head.session, "logs", "serve")

    def logged(prefix, text):
        for name in os.listdir(logs):
            if name.startswith(prefix):
                with open(os.path.join(logs, name)) as f:
                    if text in f.read():
                        return True
        return False
    wait_for(lambda: logged("agent", "Refused gRPC call /serve.v1.Agent/ListProcesses"), 10,
             what="the agent's refusal line")
    wait_for(lambda: logged("controller_", "Refused gRPC call /serve.v1.Controller/GetDetails"),
             10, what="the controller's gRPC refusal line")
    wait_for(lambda: logged("controller_", "Refused REST GET /api/serve/applications/"), 10,
             what="the controller's REST refusal line")
    wait_for(lambda: logged("replica_echo_", "Refused data-plane connection"), 10,
             what="the replica's data-plane refusal line")
    wait_for(lambda: logged("replica_echo_", "Refused gRPC call /serve.v1.ReplicaControl"), 10,
             what="the replica's control refusal line")
    assert_no_token_in(head.temp_dir, head.token)
