"""The Serve page of the dashboard, rendered by headless Debian chromium against a running
instance (driven over the Chrome DevTools protocol), and the dashboard's static-file and
replica-log endpoints, including path-traversal attempts.

Set SERVE_DASHBOARD_SCREENSHOT=<file.png> to keep a screenshot of the rendered page
(docs/dashboard.png is made this way)."""
import asyncio
import base64
import http.client
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import urllib.parse

import pytest
import requests
import websockets
import yaml

from conftest import TEST_APP_DIR, get, session_pids, wait_for

CHROMIUM = shutil.which("chromium")


def two_apps():
    return {
        "proxy_location": "EveryNode",
        "http_options": {"host": "127.0.0.1", "port": 0},
        "applications": [
            {"name": "echo", "route_prefix": "/echo", "import_path": "testapps:echo_builder",
             "args": {"replicas": "1"}, "deployments": [{"name": "Echo", "num_replicas": 2}]},
            {"name": "fn", "route_prefix": "/fn", "import_path": "testapps:function_app"},
        ],
    }


def start_two_apps(serve_instance, tmp_path):
    inst = serve_instance(TEST_APP_DIR)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(two_apps(), sort_keys=False))
    inst.cli("deploy", str(cfg), check=True)
    inst.wait_running("echo", "fn")
    return inst


class Browser:
    """Headless chromium with one page, driven over the DevTools protocol."""

    def __init__(self, tmp_dir):
        assert CHROMIUM, "chromium is not installed (scripts/install-deps.sh installs it)"
        self.profile = tempfile.mkdtemp(dir=tmp_dir, prefix="chromium-")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-dev-shm-usage", "--remote-debugging-address=127.0.0.1",
             "--remote-debugging-port=0", f"--user-data-dir={self.profile}",
             "--window-size=1300,1000", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
            # Its crash handler runs in a session of its own; with its files in the profile, its
            # command line names the profile, so close() finds it.
            env={**os.environ, "XDG_CONFIG_HOME": os.path.join(self.profile, "config")})
        self.loop = asyncio.new_event_loop()
        self.ws = None
        self.next_id = 0
        try:
            port_file = os.path.join(self.profile, "DevToolsActivePort")
            port = wait_for(lambda: open(port_file).readline().strip(), 30,
                            what="chromium's DevTools port")
            pages = wait_for(lambda: [t for t in get(f"http://127.0.0.1:{port}/json/list").json()
                                      if t["type"] == "page"], 30, what="a chromium page")

            async def connect():
                return await websockets.connect(pages[0]["webSocketDebuggerUrl"],
                                                max_size=64 << 20)
            self.ws = self.loop.run_until_complete(connect())
        except BaseException:
            self.close()
            raise

    def call(self, method, **params):
        async def roundtrip():
            self.next_id += 1
            await self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
            while True:
                msg = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
                if msg.get("id") == self.next_id:
                    assert "error" not in msg, f"{method}: {msg['error']}"
                    return msg["result"]
        return self.loop.run_until_complete(roundtrip())

    def eval(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def close(self):
        try:
            if self.ws is not None:
                self.loop.run_until_complete(self.ws.close())
        finally:
            self.loop.close()
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            for pid in session_pids(self.profile):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


@pytest.fixture
def browser(tmp_path):
    b = Browser(str(tmp_path))
    yield b
    b.close()


def send_requests(url, stop):
    """Requests to both applications until `stop` is set: every tenth one fails in Echo."""
    n = 0
    while not stop.is_set():
        n += 1
        try:
            requests.get(f"{url}/echo", params={"fail": "1"} if n % 10 == 0 else {}, timeout=10)
            requests.get(f"{url}/fn", timeout=10)
        except requests.RequestException:
            pass


def test_serve_page_shows_instance_and_charts(serve_instance, tmp_path, browser):
    inst = start_two_apps(serve_instance, tmp_path)
    stop = threading.Event()
    sender = threading.Thread(target=send_requests, args=(inst.http, stop), daemon=True)
    sender.start()
    try:
        browser.call("Page.navigate", url=inst.rest + "/serve?interval=1")
        dom = lambda: browser.eval("document.documentElement.outerHTML")  # noqa: E731

        # Applications, with their statuses and route prefixes.
        wait_for(lambda: browser.eval(
            "[...document.querySelectorAll('#applications tr[data-app]')].map(r => "
            "r.dataset.app + ':' + r.querySelector('[data-status]').dataset.status).sort().join()")
            == "echo:RUNNING,fn:RUNNING", 30, what="both applications RUNNING on the page")
        html = dom()
        assert "<code>/echo</code>" in html and "<code>/fn</code>" in html

        # Deployments with replica counts; replicas with pid and a working log link.
        details = inst.details()
        echo_replicas = details["applications"]["echo"]["deployments"]["Echo"]["replicas"]
        wait_for(lambda: browser.eval(
            "document.querySelectorAll('#replicas tr[data-replica]').length") == 3, 30,
            what="three replicas on the page")
        for r in echo_replicas:
            row = browser.eval(f"document.querySelector('#replicas tr[data-replica=\"{r['replica_id']}\"]')"
                               ".textContent")
            assert str(r["pid"]) in row and "RUNNING" in row
        link = browser.eval("document.querySelector('#replicas a.logs').href")
        wait_for(lambda: "Starting replica" in get(link).text, 30, what="a replica's log lines")
        deps = browser.eval("document.querySelector('#deployments tr[data-deployment=\"echo#Echo\"]')"
                            ".textContent")
        assert "RUNNING 2" in deps and "fixed 2 replicas" in deps, deps
        assert browser.eval("document.querySelectorAll('#proxies tbody tr').length") == 1
        assert "HEALTHY" in browser.eval("document.getElementById('proxies').textContent")

        # The charts: canvases with request rates, errors and latency from the metrics.
        if requests.get(inst.rest + "/api/serve/metrics", timeout=10).status_code == 404:
            pytest.fail("GET /api/serve/metrics answered 404: the charts have no data source")

        def chart(dep, kind):
            return browser.eval(
                f"(() => {{ const b = document.querySelector('.chart-row[data-deployment=\"{dep}\"] "
                f".chart[data-chart=\"{kind}\"]'); return b && b.querySelector('canvas') ? "
                "{points: Number(b.dataset.points), last: Number(b.dataset.last)} : null; })()")
        wait_for(lambda: (c := chart("echo#Echo", "qps")) and c["points"] > 0 and c["last"] > 0,
                 60, interval=0.5, what="a request-rate chart with data for echo/Echo")
        wait_for(lambda: (c := chart("fn#hello_fn", "qps")) and c["last"] > 0, 60,
                 interval=0.5, what="a request-rate chart with data for fn")
        wait_for(lambda: (c := chart("echo#Echo", "errors")) and c["last"] > 0, 60, interval=0.5,
                 what="an error-rate chart with data for echo/Echo")
        wait_for(lambda: (c := chart("echo#Echo", "latency")) and c["last"] > 0, 60,
                 interval=0.5, what="a latency chart with data for echo/Echo")

        # The page updates in place: the document is not reloaded between polls.
        browser.eval("window.__marker = 1")
        polls = browser.eval("Number(document.body.dataset.polls)")
        wait_for(lambda: browser.eval("Number(document.body.dataset.polls)") >= polls + 2, 30,
                 what="two more polls")
        assert browser.eval("window.__marker") == 1

        shot = os.environ.get("SERVE_DASHBOARD_SCREENSHOT")
        if shot:
            size = browser.call("Page.getLayoutMetrics")["cssContentSize"]
            png = browser.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                               clip={"x": 0, "y": 0, "width": size["width"],
                                     "height": size["height"], "scale": 1})["data"]
            with open(shot, "wb") as f:
                f.write(base64.b64decode(png))
    finally:
        stop.set()
        sender.join(timeout=30)


def test_metrics_parsing_in_the_browser(serve_instance, tmp_path, browser):
    """The page's Prometheus parser and rate math, run by chromium on known input."""
    inst = serve_instance(TEST_APP_DIR)
    browser.call("Page.navigate", url=inst.rest + "/")
    wait_for(lambda: browser.eval("!!window.serveMetrics"), 30, what="the page's scripts")
    series = 'application="a",deployment="D",route="/",replica="{r}"'
    text = lambda reqs, errs, b1, b10, replica="r1": "\n".join([  # noqa: E731
        "# HELP ray_serve_deployment_request_counter_total requests",
        "# TYPE ray_serve_deployment_request_counter_total counter",
        f"ray_serve_deployment_request_counter_total{{{series.format(r=replica)}}} {reqs}",
        f"ray_serve_deployment_error_counter_total{{{series.format(r=replica)}}} {errs} 1700000000000",
        f'ray_serve_deployment_processing_latency_ms_bucket{{{series.format(r=replica)},le="1"}} {b1}',
        f'ray_serve_deployment_processing_latency_ms_bucket{{{series.format(r=replica)},le="10"}} {b10}',
        f'ray_serve_deployment_processing_latency_ms_bucket{{{series.format(r=replica)},le="+Inf"}} {b10}',
        'other_metric{label="with \\"quotes\\" and \\\\ and }"} 5',
        "malformed{ 1",
    ])
    result = browser.eval(f"""(() => {{
        const m = window.serveMetrics;
        const parsed = m.parsePrometheus({json.dumps(text(0, 0, 0, 0))});
        const h = new m.History(300, 10);
        h.add(0, m.aggregate(m.parsePrometheus({json.dumps(text(10, 1, 5, 10))})));
        h.add(2, m.aggregate(m.parsePrometheus({json.dumps(text(30, 3, 15, 30))})));
        // r1 went away and r2 started: its whole count is new, nothing is negative.
        h.add(4, m.aggregate(m.parsePrometheus({json.dumps(text(8, 0, 8, 8, "r2"))})));
        return {{parsed, keys: h.keys(), series: h.series("a#D")}};
    }})()""")
    parsed = result["parsed"]
    assert len(parsed) == 6
    assert parsed[-1] == {"name": "other_metric", "labels": {"label": 'with "quotes" and \\ and }'},
                          "value": 5}
    assert result["keys"] == ["a#D"]
    s = result["series"]
    assert s["t"] == [2, 4]
    assert s["qps"] == [10, 4] and s["errors"] == [1, 0]
    assert s["p50"][0] == pytest.approx(1.0) and s["p90"][0] == pytest.approx(8.2)
    assert s["p99"][1] == pytest.approx(0.99)  # 7.92 of 8 requests, all in the first bucket


def raw_get(base, target, method="GET"):
    """Sends `target` exactly as written (no client-side normalization of dot segments)."""
    u = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    try:
        conn.request(method, target)
        r = conn.getresponse()
        return r.status, r.getheader("content-type"), r.read()
    finally:
        conn.close()


def test_static_files_and_replica_logs_endpoints(serve_instance, tmp_path):
    inst = start_two_apps(serve_instance, tmp_path)
    base = inst.rest
    for target, type_prefix in [("/", "text/html"), ("/serve", "text/html"),
                                ("/static/serve/app.js", "text/javascript"),
                                ("/static/serve/style.css", "text/css"),
                                ("/static/vendor/uPlot.iife.min.js", "text/javascript")]:
        status, ctype, body = raw_get(base, target)
        assert status == 200 and ctype.startswith(type_prefix), (target, status, ctype)
        assert body
    assert b"<table id=\"applications\">" in raw_get(base, "/serve")[2]
    # The REST API next to the page still answers.
    assert get(base + "/api/serve/applications/").json()["applications"]["echo"]

    secret = tmp_path / "secret.txt"
    secret.write_text("not for the dashboard")
    rel_secret = os.path.relpath(secret, "/")
    for target in ["/static/../../../../../../" + rel_secret, "/static/serve/../../../../etc/passwd",
                   "/static/%2e%2e/%2e%2e/etc/passwd", "/static/..%2f..%2fetc/passwd",
                   "/static//etc/passwd", "/static/serve/.hidden.js", "/static/serve/missing.js",
                   "/static/serve/index.html.bak", "/static/", "/static/serve\\..\\x.js",
                   "/serve/extra", "/static/vendor/../serve/app.js"]:
        status, _, body = raw_get(base, target)
        assert 400 <= status < 500, (target, status)
        assert b"not for the dashboard" not in body and b"root:" not in body
    assert raw_get(base, "/", "POST")[0] == 405

    replica = inst.details()["applications"]["echo"]["deployments"]["Echo"]["replicas"][0]
    logs_url = f"{base}/api/serve/replicas/{replica['replica_id']}/logs"
    # The replica flushes its log file every second.
    wait_for(lambda: "Starting replica" in get(logs_url).text, 30, what="the replica's first log lines")
    logs = get(logs_url, params={"lines": 3})
    assert logs.status_code == 200
    lines = logs.text.splitlines()
    assert 1 <= len(lines) <= 3
    with open(replica["log_file_path"]) as f:
        assert f.read().splitlines()[-len(lines):] == lines
    for target in ["/api/serve/replicas/nope/logs", "/api/serve/replicas/../../../etc/passwd/logs",
                   "/api/serve/replicas/%2e%2e%2f%2e%2e/logs", "/api/serve/replicas//logs",
                   f"/api/serve/replicas/{replica['replica_id']}/../../logs"]:
        status, _, body = raw_get(base, target)
        assert status == 404, (target, status)
        assert b"root:" not in body
    for bad in ["0", "-1", "abc", "10001", "1e3"]:
        r = get(f"{base}/api/serve/replicas/{replica['replica_id']}/logs", params={"lines": bad})
        assert r.status_code == 400 and "'lines'" in r.text, (bad, r.text)
