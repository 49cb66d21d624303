"""The HTTP proxy: routing, special endpoints, request ids, errors and limits."""
import socket

import requests

from conftest import TEST_APP_DIR, get


def raw_request(url, data, read=65536):
    host, port = url.replace("http://", "").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(data)
        chunks = b""
        while True:
            try:
                part = s.recv(read)
            except socket.timeout:
                break
            if not part:
                break
            chunks += part
        return chunks


def test_proxy_behaviour(serve_run):
    run = serve_run("testapps:echo_builder", "replicas=2", app_dir=TEST_APP_DIR)
    url = run.wait_ready()

    # Request details reach the replica; JSON returns are application/json.
    r = requests.post(url + "/some/path?a=1&b=two", data=b"x" * 1000, timeout=10,
                      headers={"X-Custom": "yes"})
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["method"] == "POST"
    assert body["path"] == "/some/path"
    assert body["query"] == "a=1&b=two"
    assert body["body_size"] == 1000
    assert body["headers"]["x-custom"] == "yes"
    assert body["deployment"] == "Echo"

    # X-Request-ID: echoed when given, generated (UUID) when not.
    assert get(url + "/", headers={"X-Request-ID": "my-id-42"}).headers["x-request-id"] == "my-id-42"
    generated = get(url + "/").headers["x-request-id"]
    assert len(generated) == 36 and generated.count("-") == 4

    # Special endpoints.
    assert get(url + "/-/routes").json() == {"/": "default"}
    r = get(url + "/-/healthz")
    assert r.status_code == 200 and r.text == "success"

    # Both replicas serve (power of two choices spreads concurrent load; sequential too).
    seen = {get(url + "/").json()["replica"] for _ in range(40)}
    assert len(seen) == 2

    # A user exception is a 500 with the message, and the replica keeps serving.
    r = get(url + "/?fail=1")
    assert r.status_code == 500
    assert "echo was asked to fail" in r.text
    assert "runtime_error" in r.text
    assert get(url + "/").status_code == 200

    # Keep-alive: many requests over one connection.
    with requests.Session() as s:
        for _ in range(20):
            assert s.get(url + "/", timeout=10).status_code == 200

    # Oversized header -> 431; oversized body -> 413; malformed HTTP -> 400.
    r = get(url + "/", headers={"X-Big": "a" * 20000})
    assert r.status_code == 431
    big = raw_request(url, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000000\r\n\r\n")
    assert big.startswith(b"HTTP/1.1 413")
    bad = raw_request(url, b"THIS IS NOT HTTP\r\n\r\n")
    assert bad.startswith(b"HTTP/1.1 400")

    # The proxy survived all of that.
    assert get(url + "/").status_code == 200


def test_unknown_route_is_404(serve_run):
    run = serve_run("testapps:echo_builder", app_dir=TEST_APP_DIR)
    url = run.wait_ready()
    # The app is mounted at "/", so everything matches; deploy under a prefix instead.
    assert get(url + "/anything").status_code == 200
    run.stop()

    run2 = serve_run("testapps:echo_builder", "--route-prefix", "/echo", app_dir=TEST_APP_DIR)
    url2 = run2.wait_ready()
    assert url2.endswith("/echo")
    base = url2[: -len("/echo")]
    r = get(base + "/other")
    assert r.status_code == 404
    assert "Path '/other' not found" in r.text
    assert "/-/routes" in r.text
    assert get(base + "/echoes").status_code == 404  # prefix matches whole segments only
    r = get(base + "/echo/sub")
    assert r.status_code == 200
    assert r.json()["route_prefix"] == "/echo"
    assert get(base + "/-/routes").json() == {"/echo": "default"}


def test_function_deployment(serve_run):
    run = serve_run("testapps:function_app", app_dir=TEST_APP_DIR)
    url = run.wait_ready()
    r = get(url + "/x/y")
    assert r.status_code == 200
    assert r.text == "fn:/x/y"
    assert "hello_fn" in run.status()["applications"]["default"]["deployments"]
