"""gRPC ingress through the proxy (spec §8.3) with Python's grpcio client (Debian's
python3-grpcio): unary and server-streaming calls of a user service, metadata, application
selection, the proxy's own RayServeAPIService, status codes (missing application, user-set code,
handler error, timeout, back-pressure), client cancellation reaching the replica, and a call
through a downstream handle. The test protos are compiled with grpc_tools.protoc (Debian's
python3-grpc-tools) into the test's temp dir."""
import glob
import importlib
import os
import re
import subprocess
import sys

import grpc
import pytest
import yaml

from conftest import EXAMPLES_DIR, TEST_APP_DIR, ServeRun, free_port, get, stop_all, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
PROTOS = os.path.join(HERE, "protos")
API_PROTO_DIR = os.path.join(HERE, "../../proto")


def compile_protos(out_dir):
    """Generates the Python modules of echo.proto and the proxy's ray/serve/serve_api.proto."""
    for include, proto in ((PROTOS, os.path.join(PROTOS, "echo.proto")),
                           (API_PROTO_DIR, os.path.join(API_PROTO_DIR, "ray/serve/serve_api.proto"))):
        out = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{include}",
                              f"--python_out={out_dir}", f"--grpc_python_out={out_dir}", proto],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
    sys.path.insert(0, str(out_dir))
    return (importlib.import_module("echo_pb2"), importlib.import_module("echo_pb2_grpc"),
            importlib.import_module("ray.serve.serve_api_pb2"),
            importlib.import_module("ray.serve.serve_api_pb2_grpc"))


class Cluster:
    """One `serve run` of two applications of the echo service, with gRPC on a free port."""

    def __init__(self, tmp):
        self.grpc_port = free_port()
        cfg = tmp / "config.yaml"
        app = {"import_path": "grpcapps:echo_app"}
        cfg.write_text(yaml.safe_dump({
            "http_options": {"host": "127.0.0.1", "port": 0},
            "grpc_options": {"port": self.grpc_port, "grpc_servicer_functions": ["servetest.Echo"],
                             "request_timeout_s": 2},
            "applications": [
                {**app, "name": "app1", "route_prefix": "/app1"},
                # One request at a time, one waiting: the back-pressure test fills it.
                {**app, "name": "app2", "route_prefix": "/app2",
                 "deployments": [{"name": "EchoIngress", "max_ongoing_requests": 1,
                                  "max_queued_requests": 1}]},
            ]}))
        self.run = ServeRun(tmp / "run", str(cfg), app_dir=TEST_APP_DIR)
        self.url = self.run.wait_ready()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")

    def replica_log(self, deployment, app="app1"):
        logs = os.path.join(self.run.session_dir(), "logs", "serve")
        return "".join(open(f).read()
                       for f in glob.glob(os.path.join(logs, f"replica_{app}_{deployment}_*.log")))


@pytest.fixture(scope="module")
def pb(tmp_path_factory):
    return compile_protos(tmp_path_factory.mktemp("protos"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("grpc"))
    yield c
    c.channel.close()
    stop_all([c.run])


def echo_stub(cluster, pb):
    return pb[1].EchoStub(cluster.channel)


def test_unary_call_with_metadata_and_trailing_request_id(cluster, pb):
    stub = echo_stub(cluster, pb)
    reply, call = stub.Say.with_call(
        pb[0].EchoRequest(text="hello"),
        metadata=(("application", "app1"), ("request_id", "rid-1"), ("x-user", "u1")), timeout=10)
    assert reply.text == "hello"
    assert reply.app == "app1"
    assert "x-user=u1;" in reply.metadata and "request_id=rid-1;" in reply.metadata
    assert ("request_id", "rid-1") in call.trailing_metadata()
    # A request id is generated when the client sends none, and returned.
    _, call = stub.Say.with_call(pb[0].EchoRequest(text="x"), metadata=(("application", "app2"),),
                                 timeout=10)
    rid = dict(call.trailing_metadata())["request_id"]
    assert re.fullmatch(r"[0-9a-f-]{36}", rid), rid


def test_application_metadata_picks_the_app(cluster, pb):
    stub = echo_stub(cluster, pb)
    for app in ("app1", "app2"):
        reply = stub.Say(pb[0].EchoRequest(text="a"), metadata=(("application", app),), timeout=10)
        assert reply.app == app


def test_missing_or_unknown_application_is_not_found(cluster, pb):
    stub = echo_stub(cluster, pb)
    with pytest.raises(grpc.RpcError) as e:
        stub.Say(pb[0].EchoRequest(text="a"), timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert "Application metadata not set" in e.value.details()
    assert "/ray.serve.RayServeAPIService/ListApplications" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        stub.Say(pb[0].EchoRequest(text="a"), metadata=(("application", "nope"),), timeout=10)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    assert "Application 'nope' not found." in e.value.details()


def test_server_streaming(cluster, pb):
    stub = echo_stub(cluster, pb)
    replies = list(stub.Count(pb[0].EchoRequest(text="s", count=5),
                              metadata=(("application", "app1"),), timeout=10))
    assert [r.index for r in replies] == [0, 1, 2, 3, 4]
    assert all(r.text == "s" and r.app == "app1" for r in replies)


def test_multiplexed_model_id_reaches_the_replica(cluster, pb):
    reply = echo_stub(cluster, pb).Say(
        pb[0].EchoRequest(text="m"),
        metadata=(("application", "app1"), ("multiplexed_model_id", "model-7")), timeout=10)
    assert reply.model_id == "model-7"


def test_user_set_code_details_and_trailing_metadata(cluster, pb):
    stub = echo_stub(cluster, pb)
    with pytest.raises(grpc.RpcError) as e:
        stub.SetCode(pb[0].EchoRequest(code=grpc.StatusCode.ALREADY_EXISTS.value[0],
                                       details="it is there"),
                     metadata=(("application", "app1"), ("request_id", "rid-code")), timeout=10)
    assert e.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert e.value.details() == "it is there"
    trailers = dict(e.value.trailing_metadata())
    assert trailers["custom-trailer"] == "trailer-value"
    assert trailers["request_id"] == "rid-code"
    # Code OK (0): the reply arrives with the trailing metadata.
    reply, call = stub.SetCode.with_call(pb[0].EchoRequest(code=0),
                                         metadata=(("application", "app1"),), timeout=10)
    assert reply.text == "with code"
    assert dict(call.trailing_metadata())["custom-trailer"] == "trailer-value"


def test_handler_error_is_internal(cluster, pb):
    stub = echo_stub(cluster, pb)
    with pytest.raises(grpc.RpcError) as e:
        stub.Fail(pb[0].EchoRequest(text="boom"), metadata=(("application", "app1"),), timeout=10)
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert "asked to fail: boom" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        stub.Missing(pb[0].EchoRequest(), metadata=(("application", "app1"),), timeout=10)
    assert e.value.code() == grpc.StatusCode.INTERNAL
    assert "Missing" in e.value.details()


def test_service_not_accepted_is_unimplemented(cluster, pb):
    hidden = pb[1].HiddenStub(cluster.channel)
    with pytest.raises(grpc.RpcError) as e:
        hidden.Say(pb[0].EchoRequest(), metadata=(("application", "app1"),), timeout=10)
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_call_through_a_downstream_handle(cluster, pb):
    reply = echo_stub(cluster, pb).Shout(pb[0].EchoRequest(text="quiet"),
                                         metadata=(("application", "app1"),), timeout=10)
    assert reply.text == "QUIET"


def test_same_ingress_serves_http(cluster):
    r = get(cluster.url + "/app1")
    assert r.status_code == 200 and r.text == "http ok"


def test_list_applications_and_healthz(cluster, pb):
    api = pb[3].RayServeAPIServiceStub(cluster.channel)
    apps = api.ListApplications(pb[2].ListApplicationsRequest(), timeout=10)
    assert sorted(apps.application_names) == ["app1", "app2"]
    health, call = api.Healthz.with_call(pb[2].HealthzRequest(), timeout=10)
    assert health.message == "success"
    assert call.code() == grpc.StatusCode.OK


def test_request_timeout_s_is_deadline_exceeded_and_cancels(cluster, pb):
    stub = echo_stub(cluster, pb)
    with pytest.raises(grpc.RpcError) as e:
        stub.Sleep(pb[0].EchoRequest(sleep_ms=8000),
                   metadata=(("application", "app1"), ("request_id", "rid-timeout")), timeout=20)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "timed out after 2s" in e.value.details()
    wait_for(lambda: "rid-timeout /app1 -- GRPC /servetest.Echo/Sleep CANCELLED"
             in cluster.replica_log("EchoIngress"), 10, what="the replica's call cancelled")


def test_client_deadline_is_deadline_exceeded(cluster, pb):
    with pytest.raises(grpc.RpcError) as e:
        echo_stub(cluster, pb).Sleep(pb[0].EchoRequest(sleep_ms=5000),
                                     metadata=(("application", "app1"),), timeout=0.3)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_client_cancel_cascades_to_the_replica(cluster, pb):
    stub = echo_stub(cluster, pb)
    future = stub.Sleep.future(pb[0].EchoRequest(sleep_ms=8000),
                               metadata=(("application", "app1"), ("request_id", "rid-cancel")),
                               timeout=20)
    wait_for(lambda: re.search(r"rid-cancel .*sleep started", cluster.replica_log("EchoIngress")),
             10, what="the handler to start")
    assert future.cancel()
    with pytest.raises(grpc.FutureCancelledError):
        future.result()
    wait_for(lambda: "rid-cancel /app1 -- GRPC /servetest.Echo/Sleep CANCELLED"
             in cluster.replica_log("EchoIngress"), 10, what="the replica's call cancelled")
    # The proxy keeps serving.
    assert stub.Say(pb[0].EchoRequest(text="after"), metadata=(("application", "app1"),),
                    timeout=10).text == "after"


def test_backpressure_is_unavailable(cluster, pb):
    stub = echo_stub(cluster, pb)
    md = (("application", "app2"),)
    # app2's ingress takes one request and queues one more: of four calls made while it sleeps,
    # one waits and the others are dropped at once.
    running = stub.Sleep.future(pb[0].EchoRequest(sleep_ms=1500),
                                metadata=md + (("request_id", "rid-bp"),), timeout=20)
    wait_for(lambda: re.search(r"rid-bp .*sleep started", cluster.replica_log("EchoIngress", "app2")),
             10, what="the first call to start")
    others = [stub.Say.future(pb[0].EchoRequest(text="x"), metadata=md, timeout=20)
              for _ in range(4)]
    codes = []
    for f in others:
        try:
            f.result()
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as e:
            codes.append(e.code())
            if e.code() == grpc.StatusCode.UNAVAILABLE:
                assert "backpressure" in e.details()
    assert codes.count(grpc.StatusCode.UNAVAILABLE) == 3, codes
    assert codes.count(grpc.StatusCode.OK) == 1, codes
    assert running.result().text == "slept"


def test_image_classifier_example(tmp_path):
    """examples/grpc as its README runs it: unary, streaming and a handler-set status."""
    out_dir = tmp_path / "gen"
    out_dir.mkdir()
    example_src = os.path.join(HERE, "../../examples/grpc")
    out = subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{example_src}",
                          f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
                          os.path.join(example_src, "image_classifier.proto")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    sys.path.insert(0, str(out_dir))
    pb = importlib.import_module("image_classifier_pb2")
    pb_grpc = importlib.import_module("image_classifier_pb2_grpc")
    port = free_port()
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump({
        "http_options": {"host": "127.0.0.1", "port": 0},
        "grpc_options": {"port": port,
                         "grpc_servicer_functions": ["imageclassifier.ImageClassificationService"]},
        "applications": [{"name": "classifier", "route_prefix": "/classifier",
                          "import_path": "grpc_classifier:app"}]}))
    image = tmp_path / "white.raw"
    image.write_bytes(bytes([230]) * 4096)
    run = ServeRun(tmp_path / "run", str(cfg), app_dir=os.path.join(EXAMPLES_DIR, "grpc"))
    try:
        run.wait_ready()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = pb_grpc.ImageClassificationServiceStub(channel)
            data = pb.ImageData(url=f"file://{image}", filename="white")
            reply = stub.Predict(data, timeout=10)
            assert reply.classes[0] == "white"
            assert abs(sum(reply.probabilities) - 1) < 1e-4
            streamed = list(stub.PredictStream(data, timeout=10))
            assert [s.classes[0] for s in streamed] == list(reply.classes)
            with pytest.raises(grpc.RpcError) as e:
                stub.Predict(pb.ImageData(), timeout=10)
            assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert e.value.details() == "url is required"
    finally:
        stop_all([run])


def test_cpp_client_with_in_tree_stubs(cluster):
    client = os.environ.get("SERVE_GRPC_ECHO_CLIENT")
    assert client and os.path.exists(client), "SERVE_GRPC_ECHO_CLIENT is not built"
    out = subprocess.run([client, f"127.0.0.1:{cluster.grpc_port}", "app1"], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert re.fullmatch(r"say from c\+\+ app1 request_id=[0-9a-f-]{36}", lines[0]), lines
    assert lines[1] == "count 0 1 2", lines


def test_proxy_grpc_metrics(cluster, pb):
    stub = echo_stub(cluster, pb)
    stub.Say(pb[0].EchoRequest(text="m"), metadata=(("application", "app1"),), timeout=10)
    with pytest.raises(grpc.RpcError):
        stub.Say(pb[0].EchoRequest(text="m"), metadata=(("application", "nope"),), timeout=10)
    with open(os.path.join(cluster.run.session_dir(), "metrics_address")) as f:
        url = f.read().strip()

    def scraped():
        text = get(url + "/metrics").text
        ok = re.search(r'ray_serve_num_grpc_requests_total\{[^}]*application="app1"[^}]*'
                       r'method="/servetest.Echo/Say"[^}]*status_code="OK"[^}]*\} ([0-9.]+)', text)
        nf = re.search(r'ray_serve_num_grpc_error_requests_total\{[^}]*error_code="NOT_FOUND"'
                       r'[^}]*\} ([0-9.]+)', text)
        return ok and nf and "ray_serve_grpc_request_latency_ms_bucket" in text
    wait_for(scraped, 15, interval=0.5, what="the proxy's gRPC metrics")


def test_serve_build_writes_grpc_servicer_functions():
    from conftest import SERVE
    out = subprocess.run([SERVE, "build", "grpcapps:echo_app", "-d", TEST_APP_DIR,
                          "--grpc-servicer-functions", "servetest.Echo",
                          "--grpc-servicer-functions", "servetest.Hidden"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    config = yaml.safe_load(out.stdout)
    assert config["grpc_options"] == {"port": 9000,
                                      "grpc_servicer_functions": ["servetest.Echo",
                                                                  "servetest.Hidden"]}


def test_rest_shows_grpc_options(cluster):
    with open(os.path.join(cluster.run.session_dir(), "dashboard_address")) as f:
        rest = f.read().strip()
    if not rest.startswith("http"):
        rest = "http://" + rest
    details = get(rest + "/api/serve/applications/").json()
    assert details["grpc_options"] == {"port": cluster.grpc_port,
                                       "grpc_servicer_functions": ["servetest.Echo"],
                                       "request_timeout_s": 2}
