"""Hostile input on the listeners of a running instance (docs/limits.md, "Listeners"): slow
clients, a connection flood past the limit, malformed HTTP, and oversized or malformed frames
to a replica's data port. After each: the answer was a 4xx/503 or a closed connection, every
process of the instance still runs with the same pid, memory stayed within a bound, and a
normal request still succeeds."""
import os
import re
import select
import socket
import struct
import time

import pytest

from conftest import (TEST_APP_DIR, ServeRun, get, process_cmdline, replica_addresses,
                      session_pids, stop_all, wait_for)

MAX_CONNECTIONS = 48
LIMITS_ENV = {"SERVE_HTTP_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
              "SERVE_HTTP_HEADER_READ_TIMEOUT_S": "1",
              "SERVE_HTTP_BODY_READ_TIMEOUT_S": "1"}
MEMORY_BOUND = 64 << 20  # growth allowed per process over a test, in bytes
FRAME_AUTH, FRAME_REQUEST, FRAME_PROBE = 11, 1, 7


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024


class Instance:
    """`serve run` of the echo app with small listener limits."""

    def __init__(self, temp_dir):
        self.run = ServeRun(temp_dir, "testapps:echo_builder", app_dir=TEST_APP_DIR,
                            env=LIMITS_ENV)
        self.url = self.run.wait_ready()
        self.port = int(self.url.rsplit(":", 1)[1])
        self.session = self.run.session_dir()
        with open(os.path.join(self.session, "cluster_token")) as f:
            self.token = f.read().strip()

    def processes(self):
        """pid -> resident bytes of every process of the instance."""
        return {pid: rss(pid) for pid in session_pids(self.run.temp_dir)}

    def data_address(self):
        host, port = replica_addresses(self.session)[0].rsplit(":", 1)
        return host, int(port)

    def connect(self):
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


@pytest.fixture(scope="module")
def instance(tmp_path_factory):
    inst = Instance(tmp_path_factory.mktemp("hostile"))
    yield inst
    stop_all([inst.run])


@pytest.fixture
def survives(instance):
    """Checks after the test that the instance survived it: same pids, memory within the
    bound, and a normal request answered."""
    before = instance.processes()
    assert before
    yield instance
    after = instance.processes()
    assert sorted(after) == sorted(before), f"processes changed: {before} -> {after}"
    for pid, size in after.items():
        assert size <= before[pid] + MEMORY_BOUND, f"pid {pid} grew {before[pid]} -> {size}"
    wait_for(lambda: get(instance.url + "/?after=1").status_code == 200, 15,
             what="a normal request to succeed")


def closed_by_peer(sock):
    """True when the peer closed `sock` (EOF or reset), without blocking; data is discarded."""
    try:
        while select.select([sock], [], [], 0)[0]:
            if not sock.recv(65536):
                return True
        return False
    except OSError:
        return True


def test_slow_headers_are_cut_off_while_the_proxy_keeps_serving(survives):
    inst = survives
    # One byte at a time, every 0.2 s: a header this long would take about 20 s to arrive.
    request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 60 + b"\r\n\r\n"
    conns = [inst.connect() for _ in range(30)]
    closed = set()
    start = time.monotonic()
    try:
        for i, byte in enumerate(request[:-1]):
            for k, s in enumerate(conns):
                if k in closed:
                    continue
                try:
                    s.send(request[i:i + 1])
                except OSError:
                    closed.add(k)
                    continue
                if closed_by_peer(s):
                    closed.add(k)
            if len(closed) == len(conns):
                break
            assert get(inst.url + "/?during=slow").status_code == 200
            time.sleep(0.2)  # the slow client's pace, not a wait for a condition
        elapsed = time.monotonic() - start
        assert len(closed) == len(conns), f"{len(conns) - len(closed)} slow clients still open"
        assert elapsed < 10, elapsed  # header timeout 1 s, checked every 0.25 s
    finally:
        for s in conns:
            s.close()


def test_a_stalled_body_is_cut_off(survives):
    inst = survives
    with inst.connect() as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + b"b" * 10)
        wait_for(lambda: closed_by_peer(s), 10, what="the stalled body's connection to close")


def test_a_connection_flood_past_the_limit_gets_503_and_the_slots_come_back(survives):
    inst = survives
    extra = 30
    conns = []
    try:
        for _ in range(MAX_CONNECTIONS + extra):
            conns.append(inst.connect())
        refused = []

        def count_refused():
            for s in conns:
                if s in refused or not select.select([s], [], [], 0)[0]:
                    continue
                try:
                    data = s.recv(4096)
                except OSError:
                    data = b""
                refused.append(s)
                assert data == b"" or data.startswith(b"HTTP/1.1 503"), data[:100]
            return len(refused) >= extra
        wait_for(count_refused, 10, what=f"{extra} connections over the limit refused")
        # The accepted ones are held open (idle): nothing else fits now.
        assert len(refused) <= extra + 2, len(refused)
        with inst.connect() as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            reply = s.recv(4096)
        assert reply == b"" or reply.startswith(b"HTTP/1.1 503"), reply[:100]
    finally:
        for s in conns:
            s.close()


@pytest.mark.parametrize("raw,status", [
    (b"NOT A REQUEST\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (20 * 1024) + b"\r\n\r\n", 431),
    (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
    (b"GET / HTTP/1.1\r\nHost: x\r\nBad\x00Header: v\r\n\r\n", 400),
])
def test_malformed_http_gets_a_4xx(survives, raw, status):
    with survives.connect() as s:
        s.sendall(raw)
        reply = b""
        while b"\r\n" not in reply:
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(f"HTTP/1.1 {status}".encode()), reply[:200]


def frame_header(kind, request_id, length):
    return struct.pack("<IBQ", length, kind, request_id)


def frame(kind, request_id, payload=b""):
    return frame_header(kind, request_id, 9 + len(payload)) + payload


def read_frames(sock, done, timeout=15):
    """Reads frames from `sock` until `done(frames)` holds (or EOF, or `timeout`); returns the
    frames as (id, type, payload) in arrival order."""
    frames, buf = [], b""
    deadline = time.monotonic() + timeout
    while not done(frames) and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
        while len(buf) >= 13:
            (length,) = struct.unpack_from("<I", buf)
            if len(buf) < 4 + length:
                break
            frames.append((struct.unpack_from("<Q", buf, 5)[0], buf[4], buf[13:4 + length]))
            buf = buf[4 + length:]
    return frames


def has_id(request_id, kind=None):
    return lambda frames: any(f[0] == request_id and kind in (None, f[1]) for f in frames)


def pb_string(field, value):
    """A protobuf length-delimited field (lengths < 128 only)."""
    assert len(value) < 128
    return bytes([field << 3 | 2, len(value)]) + value


def http_request(request_id, query):
    """A data-plane request frame: an HTTP GET / of the ingress with `query`."""
    http = pb_string(1, b"GET") + pb_string(2, b"/") + pb_string(3, query)
    head = pb_string(1, request_id) + pb_string(4, b"__call__") + pb_string(8, http)
    return struct.pack("<I", len(head)) + head


def probe(address, auth, request_id):
    """The frame type answering a queue-length probe on a new connection (8: kProbeReply)."""
    with socket.create_connection(address, timeout=15) as s:
        s.sendall(auth + frame(FRAME_PROBE, request_id))
        frames = read_frames(s, has_id(request_id))
        return frames[-1][1] if frames else None


def test_oversized_and_malformed_frames_to_the_data_port_are_dropped(survives):
    inst = survives
    address = inst.data_address()
    auth = frame(FRAME_AUTH, 0, inst.token.encode())
    hostile = [
        # Without the token: garbage, an oversized first frame, a request instead of the token.
        os.urandom(4096),
        frame_header(FRAME_REQUEST, 1, 0xFFFFFFFF),
        frame_header(FRAME_AUTH, 0, 512 << 20),
        frame(FRAME_REQUEST, 1, b"x" * 100),
        # With the token: a length over the frame limit, one shorter than a header.
        auth + frame_header(FRAME_REQUEST, 1, 0xFFFFFFFF),
        auth + frame_header(FRAME_REQUEST, 1, 3),
    ]
    for data in hostile:
        with socket.create_connection(address, timeout=15) as s:
            s.sendall(data)
            wait_for(lambda: closed_by_peer(s), 15, what="the replica to drop the connection")

    # An authenticated caller announcing a huge frame (under the limit) and sending only part
    # of it: the replica holds what arrived, not what was announced (measured while the
    # connection is open; closing it frees the buffer).
    [replica] = inst.run.replica_pids()
    before = rss(replica)
    with socket.create_connection(address, timeout=15) as s:
        s.sendall(auth + frame_header(FRAME_REQUEST, 1, (1 << 30) - 1) + b"y" * 65536)
        for i in range(3):  # round trips on another connection: the replica has read ours
            assert probe(address, auth, 100 + i) == 8
        assert rss(replica) <= before + MEMORY_BOUND, (before, rss(replica))
    # Malformed frames after the token: an unknown type and a malformed envelope are answered
    # or ignored, and the connection still answers a probe.
    with socket.create_connection(address, timeout=15) as s:
        s.sendall(auth + frame(200, 5, b"zz") + frame(FRAME_REQUEST, 6, b"\xff\xff\xff\xff") +
                  frame(FRAME_PROBE, 7))
        frames = read_frames(s, has_id(7))
        assert (7, 8) in [f[:2] for f in frames], frames   # the probe's reply (kProbeReply)
        assert 6 in [f[0] for f in frames], frames        # the malformed request got an answer


def test_a_reused_request_id_is_refused_without_touching_the_running_call(survives):
    inst = survives
    address = inst.data_address()
    with socket.create_connection(address, timeout=15) as s:
        s.sendall(frame(FRAME_AUTH, 0, inst.token.encode()) +
                  frame(FRAME_REQUEST, 9, http_request(b"slow", b"sleep_ms=1000")) +
                  frame(FRAME_REQUEST, 9, http_request(b"dup", b"x=1")) +
                  frame(FRAME_REQUEST, 10, http_request(b"next", b"x=2")))
        responses = []

        def done(frames):
            responses[:] = [f for f in frames if f[1] == 2]  # kResponse
            return len(responses) >= 3
        read_frames(s, done)
        by_id = [(f[0], f[2]) for f in responses]
        assert len(by_id) == 3, by_id
        # The reuse is refused at once; the other request and the running call then answer.
        assert by_id[0][0] == 9 and b"already in flight" in by_id[0][1], by_id
        assert sorted(i for i, _ in by_id[1:]) == [9, 10], by_id
        assert all(b"sleep_ms=1000" in p for i, p in by_id[1:] if i == 9), by_id


def test_a_client_that_does_not_read_a_stream_pauses_it_within_bounded_memory(serve_run):
    # A replica streams as fast as it can (6.5 GB); the client reads nothing. Flow control
    # (kWindowUpdate credits, 8 MiB per stream) pauses the replica: neither the proxy nor the
    # replica buffers the stream, and both keep serving. Closing the client cancels it.
    run = serve_run("testapps:firehose", app_dir=TEST_APP_DIR)
    url = run.wait_ready()
    proxy = [p for p in session_pids(run.temp_dir)
             if os.path.basename(process_cmdline(p)[0]) == b"serve-proxy"]
    assert len(proxy) == 1, proxy
    [replica] = run.replica_pids()
    before = {pid: rss(pid) for pid in (proxy[0], replica)}
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /?count=100000&size=65536 HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_for(lambda: select.select([s], [], [], 0)[0], 10, what="the stream to start")
        # For 3 s (unbounded buffering grows by gigabytes in that time): memory stays within
        # the bound, and other requests are served meanwhile.
        end = time.monotonic() + 3
        while time.monotonic() < end:
            for pid, size in before.items():
                assert rss(pid) <= size + MEMORY_BOUND, (pid, size, rss(pid))
            r = get(url + "/?count=3&size=5")
            assert r.status_code == 200 and r.text == "fffff" * 3, r.text[:100]
    log = os.path.join(run.session_dir(), "logs", "serve")
    replica_log = [os.path.join(log, n) for n in os.listdir(log) if n.startswith("replica_")]

    def cancelled():
        return any("CANCELLED" in open(f).read() for f in replica_log)
    wait_for(cancelled, 15, what="the paused stream to be cancelled once its client left")
