"""Prometheus metrics: a real Prometheus server (Debian's `prometheus`) scrapes the node's
endpoint found through the session's service-discovery file; request and error counts, latency
quantiles and custom SDK metrics arrive with their tags; the REST API serves the cluster's
metrics; dead replicas' series go away; SERVE_METRICS_ENABLED=0 records nothing; the Grafana
dashboard only uses exported metrics."""
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess

import pytest
import requests

from conftest import SERVE, TEST_APP_DIR, free_port, get, session_pids, wait_for

SOURCE_DIR = os.environ.get("SERVE_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "../.."))
DASHBOARD = os.path.join(SOURCE_DIR, "dashboards", "grafana", "serve.json")
METRICS_DOC = os.path.join(SOURCE_DIR, "docs", "metrics.md")
FAST = {"SERVE_METRICS_PUSH_INTERVAL_S": "0.2", "SERVE_METRICS_STALE_S": "2"}


class Prometheus:
    """Debian's prometheus on a free loopback port with a temp storage dir, scraping the targets
    of `sd_file` every 0.5 s."""

    def __init__(self, tmp, sd_file):
        binary = shutil.which("prometheus")
        assert binary, "prometheus is missing (scripts/install-deps.sh installs it)"
        self.dir = os.path.join(tmp, "prometheus")
        os.makedirs(self.dir)
        config = os.path.join(self.dir, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 500ms\n  evaluation_interval: 500ms\n"
                    "scrape_configs:\n  - job_name: serve\n    scrape_timeout: 400ms\n"
                    "    file_sd_configs:\n"
                    f"      - files: ['{sd_file}']\n        refresh_interval: 1s\n")
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = open(os.path.join(self.dir, "prometheus.log"), "w")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={self.dir}/data",
             f"--web.listen-address={self.url[len('http://'):]}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(lambda: self.proc.poll() is None and get(self.url + "/-/ready").status_code == 200,
                 60, interval=0.2, what="prometheus to be ready")

    def query(self, expr):
        r = requests.get(self.url + "/api/v1/query", params={"query": expr}, timeout=10)
        r.raise_for_status()
        body = r.json()
        assert body["status"] == "success", body
        return body["data"]["result"]

    def value(self, expr):
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture
def prometheus(tmp_path):
    servers = []

    def start(sd_file):
        p = Prometheus(str(tmp_path), sd_file)
        servers.append(p)
        return p

    yield start
    for p in servers:
        p.stop()


def families(text):
    """{family name: number of HELP lines} of a Prometheus text."""
    out = {}
    for m in re.finditer(r"^# HELP (\S+) ", text, re.M):
        out[m.group(1)] = out.get(m.group(1), 0) + 1
    return out


def documented_metrics():
    with open(METRICS_DOC) as f:
        return set(re.findall(r"`(ray_[a-z0-9_]+)`", f.read()))


def test_prometheus_scrapes_serve_metrics(serve_run, prometheus):
    run = serve_run("metricsapp:scored", "--metrics-export-port", "0", app_dir=TEST_APP_DIR, env=FAST)
    url = run.wait_ready()
    session = run.session_dir()
    with open(os.path.join(session, "metrics_address")) as f:
        endpoint = f.read().strip()
    assert f"metrics at {endpoint}/metrics" in run.output()
    sd_file = os.path.join(session, "prom_metrics_service_discovery.json")
    with open(sd_file) as f:
        sd = json.load(f)
    assert sd[0]["targets"] == [endpoint[len("http://"):]], sd
    prom = prometheus(sd_file)

    ok, failing = 12, 4
    for i in range(ok):
        assert get(f"{url}/item{i}", params={"model": "m%d" % (i % 2)}).status_code == 200
    for _ in range(failing):
        r = get(url + "/", params={"fail": "1"})
        assert r.status_code == 500 and "asked to fail" in r.text, r.text

    total = 'sum(ray_serve_num_http_requests_total{route="/",application="default"})'
    wait_for(lambda: prom.value(total) == ok + failing, 60, interval=0.3,
             what=f"prometheus to count {ok + failing} requests")
    errors = 'sum(ray_serve_num_http_error_requests_total{route="/",error_code="500"})'
    assert prom.value(errors) == failing
    assert prom.value('sum(ray_serve_num_http_requests_total{status_code="200"})') == ok
    wait_for(lambda: prom.value("sum(ray_serve_deployment_request_counter_total)") == ok + failing
             and prom.value("sum(ray_serve_deployment_error_counter_total)") == failing,
             30, interval=0.3, what="the replicas' request and error counters")
    p50 = prom.value(
        "histogram_quantile(0.5, sum by (le) (ray_serve_http_request_latency_ms_bucket))")
    assert p50 is not None and not math.isnan(p50) and p50 > 0, p50

    # Custom metrics of the SDK, with the automatic tags.
    series = prom.query('ray_metricsapp_requests_total{model="m1"}')
    assert series, "custom counter missing"
    for s in series:
        m = s["metric"]
        assert (m["deployment"], m["application"], m["route"]) == ("Scored", "default", "/"), m
        assert m["replica"], m
    assert prom.value('sum(ray_metricsapp_requests_total{model="m1"})') == ok // 2
    assert prom.value("sum(ray_metricsapp_score_ms_count)") == ok + failing

    # The same metrics, cluster-wide, on the REST port: one HELP/TYPE per family although two
    # replicas and the proxy push them.
    with open(os.path.join(session, "dashboard_address")) as f:
        rest = f.read().strip()
    text = get(rest + "/api/serve/metrics").text
    fams = families(text)
    assert fams.get("ray_serve_deployment_request_counter_total") == 1, fams
    assert all(n == 1 for n in fams.values()), fams
    # Every built-in family the endpoint exports is documented in docs/metrics.md.
    undocumented = {f for f in fams if f.startswith("ray_serve_")} - documented_metrics()
    assert not undocumented, undocumented

    # A replica that dies: its series leave the node's endpoint.
    details = get(rest + "/api/serve/applications/").json()
    replicas = details["applications"]["default"]["deployments"]["Scored"]["replicas"]
    victim = replicas[0]
    assert f'replica="{victim["replica_id"]}"' in get(endpoint + "/metrics").text
    os.kill(victim["pid"], signal.SIGKILL)
    wait_for(lambda: f'replica="{victim["replica_id"]}",route' not in get(endpoint + "/metrics").text,
             30, interval=0.2, what="the dead replica's series to be dropped")


def test_metrics_switch_off_records_nothing(serve_run):
    env = dict(FAST, SERVE_METRICS_ENABLED="0")
    run = serve_run("metricsapp:scored", "--metrics-export-port", "0", app_dir=TEST_APP_DIR, env=env)
    url = run.wait_ready()
    for _ in range(3):
        assert get(url + "/").status_code == 200
    with open(os.path.join(run.session_dir(), "metrics_address")) as f:
        endpoint = f.read().strip()
    r = get(endpoint + "/metrics")
    assert r.status_code == 200
    assert "ray_serve_" not in r.text and "ray_metricsapp" not in r.text, r.text[:2000]


def test_serve_start_shows_the_metrics_url_and_rejects_a_busy_port(tmp_path):
    temp = str(tmp_path)

    def start(port):
        return subprocess.run([SERVE, "start", "--http-port", "0", "--dashboard-port", "0",
                               "--metrics-export-port", str(port), "--temp-dir", temp],
                              capture_output=True, text=True, timeout=60)

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        out = start(busy.getsockname()[1])
    finally:
        busy.close()
    assert out.returncode != 0
    assert "metrics endpoint" in out.stderr and "Address already in use" in out.stderr, out.stderr
    wait_for(lambda: not session_pids(temp), 15, what="the failed instance's processes to exit")

    out = start(0)
    try:
        assert out.returncode == 0, out.stdout + out.stderr
        url = re.search(r"Metrics:\s+(http://\S+/metrics)", out.stdout).group(1)
        assert get(url).status_code == 200
    finally:
        stop = subprocess.run([SERVE, "stop", "--temp-dir", temp], capture_output=True, text=True,
                              timeout=90)
        assert stop.returncode == 0, stop.stdout + stop.stderr
        wait_for(lambda: not session_pids(temp), 30, what="every process to exit")


def test_grafana_dashboard_uses_exported_metrics():
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
    exprs = []

    def walk(panels):
        for p in panels:
            exprs.extend(t["expr"] for t in p.get("targets", []) if "expr" in t)
            walk(p.get("panels", []))

    walk(dashboard["panels"])
    exprs.extend(v["definition"] for v in dashboard["templating"]["list"] if "definition" in v)
    assert len(exprs) >= 6, exprs
    exported = documented_metrics()
    used = set()
    for e in exprs:
        for name in re.findall(r"\bray_[a-z0-9_]+", e):
            used.add(re.sub(r"_(bucket|sum|count)$", "", name) if name not in exported else name)
    assert used, exprs
    unknown = used - exported
    assert not unknown, f"dashboard queries metrics that are not exported: {unknown}"
    titles = " ".join(p.get("title", "") for p in dashboard["panels"]).lower()
    for panel in ("qps", "error", "p50", "p90", "p99", "replicas", "queued"):
        assert panel in titles, f"no {panel} panel in {titles}"
