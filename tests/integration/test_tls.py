"""HTTPS and gRPC over TLS at the proxy (http_options.ssl_*): a CA and a server certificate for
127.0.0.1 made with the openssl CLI in the test's temp dir, `serve run` of a config with the
files, curl --cacert against the HTTPS port, grpcio's ssl_channel_credentials against the gRPC
port, and the start-up failures of files that cannot be used."""
import re
import subprocess

import grpc
import pytest
import yaml

from conftest import TEST_APP_DIR, SERVE, ServeRun, free_port, session_pids, stop_all
from test_grpc import compile_protos

PASSWORD = "s3cret pass"


def openssl(*args, cwd):
    out = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "1",
            "-subj", f"/CN={name}", cwd=d)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """ca.pem signs server.pem (subjectAltName IP:127.0.0.1) for server.key, also written
    encrypted as server_enc.key; other_ca.pem signs nothing here."""
    d = tmp_path_factory.mktemp("certs")
    make_ca(d, "ca")
    make_ca(d, "other_ca")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "ext.cnf", cwd=d)
    openssl("pkey", "-in", "server.key", "-aes256", "-passout", f"pass:{PASSWORD}",
            "-out", "server_enc.key", cwd=d)
    return d


def write_config(path, http_options, grpc_port=None):
    doc = {"http_options": {"host": "127.0.0.1", "port": 0, **http_options},
           "applications": [{"name": "app1", "route_prefix": "/",
                             "import_path": "grpcapps:echo_app"}]}
    if grpc_port:
        doc["grpc_options"] = {"port": grpc_port, "grpc_servicer_functions": ["servetest.Echo"]}
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", "10", *args], capture_output=True,
                          text=True, timeout=30)


def port_of(url):
    m = re.fullmatch(r"https://127\.0\.0\.1:(\d+)/?", url)
    assert m, url
    return int(m.group(1))


@pytest.fixture(scope="module")
def tls_cluster(certs, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tls")
    grpc_port = free_port()
    cfg = write_config(tmp / "config.yaml", {"ssl_keyfile": str(certs / "server.key"),
                                             "ssl_certfile": str(certs / "server.pem"),
                                             "ssl_ca_certs": str(certs / "ca.pem")}, grpc_port)
    run = ServeRun(tmp / "run", cfg, app_dir=TEST_APP_DIR)
    port = port_of(run.wait_ready())
    yield run, port, grpc_port
    stop_all([run])


def test_https_with_the_ca_succeeds(certs, tls_cluster):
    _, port, _ = tls_cluster
    out = curl("--cacert", str(certs / "ca.pem"), f"https://127.0.0.1:{port}/")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "http ok"
    out = curl("--cacert", str(certs / "ca.pem"), f"https://127.0.0.1:{port}/-/healthz")
    assert out.returncode == 0 and out.stdout == "success", out.stdout + out.stderr


def test_plain_http_and_a_wrong_ca_fail(certs, tls_cluster):
    _, port, _ = tls_cluster
    plain = curl(f"http://127.0.0.1:{port}/")
    assert plain.returncode != 0 and "http ok" not in plain.stdout, plain.stdout
    wrong = curl("--cacert", str(certs / "other_ca.pem"), f"https://127.0.0.1:{port}/")
    assert wrong.returncode == 60, wrong.stderr  # CURLE_PEER_FAILED_VERIFICATION
    assert "http ok" not in wrong.stdout
    # The proxy still serves after those.
    assert curl("--cacert", str(certs / "ca.pem"), f"https://127.0.0.1:{port}/").stdout == "http ok"


def test_grpc_over_tls(certs, tls_cluster, tmp_path):
    _, _, grpc_port = tls_cluster
    pb = compile_protos(tmp_path)
    creds = grpc.ssl_channel_credentials(root_certificates=(certs / "ca.pem").read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{grpc_port}", creds) as channel:
        reply = pb[1].EchoStub(channel).Say(pb[0].EchoRequest(text="over tls"), timeout=10)
        assert reply.text == "over tls"
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        with pytest.raises(grpc.RpcError) as e:
            pb[1].EchoStub(channel).Say(pb[0].EchoRequest(text="plain"), timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    other = grpc.ssl_channel_credentials(root_certificates=(certs / "other_ca.pem").read_bytes())
    with grpc.secure_channel(f"127.0.0.1:{grpc_port}", other) as channel:
        with pytest.raises(grpc.RpcError) as e:
            pb[1].EchoStub(channel).Say(pb[0].EchoRequest(text="x"), timeout=5)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_password_protected_key(certs, tmp_path):
    cfg = write_config(tmp_path / "config.yaml", {"ssl_keyfile": str(certs / "server_enc.key"),
                                                  "ssl_certfile": str(certs / "server.pem"),
                                                  "ssl_keyfile_password": PASSWORD})
    run = ServeRun(tmp_path / "run", cfg, app_dir=TEST_APP_DIR)
    try:
        port = port_of(run.wait_ready())
        out = curl("--cacert", str(certs / "ca.pem"), f"https://127.0.0.1:{port}/")
        assert out.returncode == 0 and out.stdout == "http ok", out.stderr
        # The password is not on any process's command line.
        for pid in session_pids(run.temp_dir):
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                assert PASSWORD.encode() not in f.read()
    finally:
        stop_all([run])


def serve_run_fails(tmp_path, http_options):
    tmp_path.mkdir(parents=True, exist_ok=True)
    cfg = write_config(tmp_path / "config.yaml", http_options)
    out = subprocess.run([SERVE, "run", cfg, "--dashboard-port", "0", "--app-dir", TEST_APP_DIR,
                          "--temp-dir", str(tmp_path / "run")], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode != 0, out.stdout + out.stderr
    assert not session_pids(str(tmp_path / "run"))
    return out.stderr


def test_certfile_without_keyfile_is_rejected(certs, tmp_path):
    err = serve_run_fails(tmp_path, {"ssl_certfile": str(certs / "server.pem")})
    assert "http_options.ssl_certfile: ssl_keyfile and ssl_certfile must be given together" in err


def test_unusable_files_fail_the_start_with_the_reason(certs, tmp_path):
    err = serve_run_fails(tmp_path / "a", {"ssl_keyfile": str(certs / "server_enc.key"),
                                           "ssl_certfile": str(certs / "server.pem"),
                                           "ssl_keyfile_password": "wrong"})
    assert "The HTTP proxy failed to start: Cannot use the TLS files in http_options: " in err
    assert "cannot be decrypted with ssl_keyfile_password" in err
    assert "Free the port" not in err
    err = serve_run_fails(tmp_path / "b", {"ssl_keyfile": str(certs / "ca.key"),
                                           "ssl_certfile": str(certs / "server.pem")})
    assert "does not match the certificate in ssl_certfile" in err
    missing = str(certs / "missing.pem")
    err = serve_run_fails(tmp_path / "c", {"ssl_keyfile": str(certs / "server.key"),
                                           "ssl_certfile": missing})
    assert f"ssl_certfile '{missing}' cannot be read" in err
