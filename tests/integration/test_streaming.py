"""Streaming HTTP responses: chunks arrive as produced; client disconnect cancels the stream."""
import glob
import os
import socket
import time

import requests

from conftest import EXAMPLES_DIR, wait_for

STREAMING = os.path.join(EXAMPLES_DIR, "streaming")


def test_chunks_arrive_as_they_are_produced(serve_run):
    run = serve_run("streaming:app", app_dir=STREAMING)
    url = run.wait_ready()
    with requests.get(url + "/?count=5&interval_ms=300", stream=True, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers.get("transfer-encoding") == "chunked"
        arrivals = []
        start = time.monotonic()
        for line in r.iter_lines():
            arrivals.append((time.monotonic() - start, line.decode()))
    assert [v for _, v in arrivals] == ["0", "1", "2", "3", "4"]
    # Produced every 0.3 s and delivered as produced, not all at the end.
    assert arrivals[0][0] < 0.25
    assert arrivals[-1][0] > 1.0
    gaps = [b[0] - a[0] for a, b in zip(arrivals, arrivals[1:])]
    assert min(gaps) > 0.15


def test_relay_reads_a_typed_handle_stream(serve_run):
    # streaming:relay: a Stream handler reads Counter::numbers (Stream<int>) through
    # serve::Handle<Counter>, i.e. a ResponseStream<int>, and forwards each item as it comes.
    run = serve_run("streaming:relay", app_dir=STREAMING)
    url = run.wait_ready()
    with requests.get(url + "/?count=5", stream=True, timeout=30) as r:
        assert r.status_code == 200
        assert [line.decode() for line in r.iter_lines()] == ["0", "2", "4", "6", "8"]


def test_client_disconnect_cancels_the_stream(serve_run):
    run = serve_run("streaming:app", app_dir=STREAMING)
    url = run.wait_ready()
    host, port = url.replace("http://", "").split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    s.sendall(b"GET /?count=100&interval_ms=100 HTTP/1.1\r\nHost: x\r\nX-Request-ID: cut-me\r\n\r\n")
    got = b""
    while got.count(b"\n\r\n") < 3:
        got += s.recv(4096)
    s.close()
    started = time.monotonic()
    logs = os.path.join(run.session_dir(), "logs", "serve")

    def cancelled_line():
        text = "".join(open(f).read() for f in glob.glob(os.path.join(logs, "replica_*.log")))
        return "cut-me / -- GET / CANCELLED" in text
    wait_for(cancelled_line, 10, what="the replica to stop the cancelled stream")
    # It stopped long before producing 100 items (10 s).
    assert time.monotonic() - started < 5
    # The replica keeps serving.
    assert requests.get(url + "/?count=2&interval_ms=1", timeout=10).text == "0\n1\n"


def test_handle_streaming(serve_run):
    from conftest import TEST_APP_DIR, get
    run = serve_run("testapps:stream_consumer", app_dir=TEST_APP_DIR)
    url = run.wait_ready()
    assert get(url + "/?n=6").json() == {"items": [0, 1, 4, 9, 16, 25]}
    # A generator failing midway: the items so far, then the remote error.
    body = get(url + "/?n=6&fail_at=3").json()
    assert body["items"] == [0, 1, 4]
    assert body["error"] == "out_of_range" and body["message"] == "stopped at 3"
    # Streaming a method that does not stream is a TypeError, and so is the reverse.
    assert get(url + "/?plain=1").json()["error"] == "TypeError"
    body = get(url + "/?unary=1").json()
    assert body["error"] == "TypeError" and "remote_stream()" in body["message"]
    # options(stream=true): remote() is refused at the call site, remote_stream() streams.
    items = get(url + "/?stream_option=1").json()["items"]
    assert "call remote_stream<T>()" in items[0] and items[1:] == [0, 1, 4]


def test_handle_streaming_consumed_with_co_await(serve_run):
    from conftest import TEST_APP_DIR, get
    run = serve_run("testapps:async_stream_consumer", app_dir=TEST_APP_DIR)
    url = run.wait_ready()
    assert get(url + "/?n=7").json() == {"items": [0, 1, 4, 9, 16, 25, 36]}
