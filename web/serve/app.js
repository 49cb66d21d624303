// The Serve page: polls the REST API's instance details and the Prometheus metrics, and keeps
// the tables and charts up to date in place (only what changed is redrawn; no page reload).
(function () {
  "use strict";

  const params = new URLSearchParams(location.search);
  const POLL_MS = Math.max(500, 1000 * (Number(params.get("interval")) || 2));
  const WINDOW_S = 300;  // charts show the last five minutes
  const LOG_LINES = 200;
  const metrics = window.serveMetrics;
  const history = new metrics.History(WINDOW_S, Math.ceil((WINDOW_S * 1000) / POLL_MS) + 1);
  const charts = new Map();  // "app#deployment" -> {row, plots: {qps, errors, latency}}

  const $ = (id) => document.getElementById(id);

  function esc(v) {
    return String(v ?? "").replace(/[&<>"']/g, (c) =>
      ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
  }

  function badge(status) {
    const s = String(status || "");
    let cls = "idle";
    if (/^(RUNNING|HEALTHY)$/.test(s)) cls = "ok";
    else if (/(FAILED|UNHEALTHY|ERROR)/.test(s)) cls = "bad";
    else if (/(DEPLOYING|UPDATING|STARTING|UPSCALING|DOWNSCALING|RECOVERING|STOPPING|DELETING|DRAINING|PENDING)/.test(s)) cls = "warn";
    return `<span class="status ${cls}" data-status="${esc(s)}">${esc(s)}</span>`;
  }

  function time(s) {
    return s ? new Date(s * 1000).toLocaleString() : "";
  }

  // Replaces a table's content only when it changed, so polling does not flicker or reset a
  // selection.
  function setTable(id, headers, rows, empty) {
    const body = rows.length
      ? rows.map((r) => `<tr${r.attrs || ""}>${r.cells.map((c) => `<td>${c}</td>`).join("")}</tr>`).join("")
      : `<tr><td class="empty" colspan="${headers.length}">${esc(empty)}</td></tr>`;
    const html = `<thead><tr>${headers.map((h) => `<th>${esc(h)}</th>`).join("")}</tr></thead><tbody>${body}</tbody>`;
    const el = $(id);
    if (el.dataset.html !== html) {
      el.innerHTML = html;
      el.dataset.html = html;
    }
  }

  function setText(id, text) {
    const el = $(id);
    if (el.textContent !== text) el.textContent = text;
  }

  function deploymentsOf(details) {
    const out = [];
    for (const [appName, app] of Object.entries(details.applications || {})) {
      for (const [depName, dep] of Object.entries(app.deployments || {})) {
        out.push({ appName, app, depName, dep });
      }
    }
    return out;
  }

  function scaling(dep) {
    const cfg = dep.deployment_config || {};
    const a = cfg.autoscaling_config;
    if (a) {
      const target = a.target_ongoing_requests ?? a.target_num_ongoing_requests_per_replica;
      return `autoscaling ${esc(a.min_replicas)}–${esc(a.max_replicas)} replicas, ` +
             `target ${esc(target)} ongoing requests each`;
    }
    const n = cfg.num_replicas ?? dep.target_num_replicas;
    return `fixed ${esc(n)} replica${n === 1 ? "" : "s"}`;
  }

  function renderDetails(d) {
    const apps = Object.entries(d.applications || {});
    const deps = deploymentsOf(d);
    setText("summary", `${apps.length} application${apps.length === 1 ? "" : "s"}, ` +
            `${deps.length} deployment${deps.length === 1 ? "" : "s"}`);

    setTable("applications", ["Name", "Status", "Route prefix", "Ingress", "Deployments", "Last deployed", "Message"],
      apps.map(([name, a]) => ({
        attrs: ` data-app="${esc(name)}"`,
        cells: [`<b class="app-name">${esc(name)}</b>`, badge(a.status), `<code>${esc(a.route_prefix ?? "")}</code>`,
                esc(a.ingress_deployment), esc(Object.keys(a.deployments || {}).length),
                esc(time(a.last_deployed_time_s)), esc(a.message)],
      })), "No applications.");

    setTable("deployments", ["Application", "Deployment", "Status", "Replicas by state", "Target", "Scaling", "Message"],
      deps.map(({ appName, depName, dep }) => {
        const byState = {};
        for (const r of dep.replicas || []) byState[r.state] = (byState[r.state] || 0) + 1;
        const states = Object.entries(byState).sort()
          .map(([s, n]) => `${badge(s)} ${n}`).join(" ") || "none";
        return {
          attrs: ` data-deployment="${esc(appName)}#${esc(depName)}"`,
          cells: [esc(appName), `<b>${esc(depName)}</b>`, badge(dep.status), states,
                  esc(dep.target_num_replicas), scaling(dep), esc(dep.message)],
        };
      }), "No deployments.");

    const replicas = [];
    for (const { appName, depName, dep } of deps) {
      for (const r of dep.replicas || []) replicas.push({ appName, depName, r });
    }
    setTable("replicas", ["Replica", "Application", "Deployment", "State", "Node", "PID", "Started", "Logs"],
      replicas.map(({ appName, depName, r }) => ({
        attrs: ` data-replica="${esc(r.replica_id)}"`,
        cells: [`<code>${esc(r.replica_id)}</code>`, esc(appName), esc(depName), badge(r.state),
                `<code>${esc(r.node_ip)}</code>`, esc(r.pid), esc(time(r.start_time_s)),
                `<a class="logs" target="_blank" href="/api/serve/replicas/${encodeURIComponent(r.replica_id)}/logs?lines=${LOG_LINES}">last ${LOG_LINES} lines</a>`],
      })), "No replicas.");

    const proxies = Object.values(d.proxies || {});
    setTable("proxies", ["Node", "Status", "HTTP port", "PID", "Message"],
      proxies.map((p) => ({
        cells: [`<code>${esc(p.node_ip)}</code> <span class="muted">${esc(p.node_id)}</span>`,
                badge(p.status), esc(p.http_port), esc(p.pid), esc(p.message)],
      })), d.proxy_location === "Disabled" ? "Proxies are disabled." : "No proxies.");

    const nodes = new Map();
    const node = (id, ip) => {
      if (!nodes.has(id)) nodes.set(id, { id, ip, replicas: 0, proxy: "", controller: false });
      return nodes.get(id);
    };
    if (d.controller_info && d.controller_info.node_id) {
      node(d.controller_info.node_id, d.controller_info.node_ip).controller = true;
    }
    for (const p of proxies) node(p.node_id, p.node_ip).proxy = p.status;
    for (const { r } of replicas) node(r.node_id, r.node_ip).replicas++;
    setTable("nodes", ["Node", "IP", "Controller", "Proxy", "Replicas"],
      [...nodes.values()].map((n) => ({
        cells: [`<code>${esc(n.id)}</code>`, `<code>${esc(n.ip)}</code>`, n.controller ? "yes" : "",
                n.proxy ? badge(n.proxy) : "", esc(n.replicas)],
      })), "No nodes.");
  }

  // --- charts -------------------------------------------------------------------------------

  const CHARTS = [
    { id: "qps", title: "Requests / s", series: [{ label: "req/s", stroke: "#0969da", fill: "rgba(9,105,218,0.1)" }] },
    { id: "errors", title: "Errors / s", series: [{ label: "errors/s", stroke: "#cf222e", fill: "rgba(207,34,46,0.1)" }] },
    { id: "latency", title: "Latency (ms)", series: [
      { label: "p50", stroke: "#1a7f37" }, { label: "p90", stroke: "#9a6700" }, { label: "p99", stroke: "#cf222e" }] },
  ];

  function chartRow(key) {
    let c = charts.get(key);
    if (c) return c;
    const [app, dep] = key.split("#");
    const row = document.createElement("div");
    row.className = "chart-row";
    row.dataset.deployment = key;
    row.innerHTML = `<h3>${esc(app)} / ${esc(dep)}</h3>`;
    c = { row, plots: {} };
    for (const spec of CHARTS) {
      const box = document.createElement("div");
      box.className = "chart";
      box.dataset.chart = spec.id;
      box.dataset.points = "0";
      row.appendChild(box);
      if (window.uPlot) {
        c.plots[spec.id] = new window.uPlot({
          title: spec.title, width: 340, height: 170,
          scales: { x: { time: true }, y: { range: (u, min, max) => [0, max > 0 ? max * 1.1 : 1] } },
          series: [{}, ...spec.series.map((s) => ({ ...s, width: 1.5, spanGaps: false }))],
          legend: { live: false },
        }, [[], ...spec.series.map(() => [])], box);
      } else {
        box.innerHTML = `<div class="none">Chart library not installed</div>`;
      }
      c[spec.id] = box;
    }
    $("charts").appendChild(row);
    charts.set(key, c);
    return c;
  }

  function renderCharts(known) {
    // Deployments that exist now, in the order of the details, plus any seen in the metrics.
    const keys = [...new Set([...known, ...history.keys()])];
    for (const [key, c] of charts) {
      if (!keys.includes(key)) { c.row.remove(); charts.delete(key); }
    }
    for (const key of keys) {
      const c = chartRow(key);
      const s = history.series(key);
      const data = { qps: [s.t, s.qps], errors: [s.t, s.errors], latency: [s.t, s.p50, s.p90, s.p99] };
      for (const spec of CHARTS) {
        const box = c[spec.id];
        const values = data[spec.id][1];
        box.dataset.points = String(s.t.length);
        box.dataset.last = values.length ? String(values[values.length - 1] ?? "") : "";
        if (c.plots[spec.id]) c.plots[spec.id].setData(data[spec.id]);
      }
    }
  }

  // --- polling ------------------------------------------------------------------------------

  let knownDeployments = [];
  let metricsNote = "";

  async function pollDetails() {
    const r = await fetch("/api/serve/applications/", { cache: "no-store" });
    if (!r.ok) throw new Error(`GET /api/serve/applications/ answered ${r.status}`);
    const d = await r.json();
    renderDetails(d);
    knownDeployments = deploymentsOf(d).map(({ appName, depName }) => appName + "#" + depName);
  }

  async function pollMetrics() {
    try {
      const r = await fetch("/api/serve/metrics", { cache: "no-store" });
      if (!r.ok) {
        metricsNote = `metrics unavailable (GET /api/serve/metrics answered ${r.status})`;
        return;
      }
      history.add(Date.now() / 1000, metrics.aggregate(metrics.parsePrometheus(await r.text())));
      metricsNote = `last ${WINDOW_S / 60} minutes, every ${POLL_MS / 1000} s`;
    } catch (e) {
      metricsNote = `metrics unavailable (${e.message})`;
    }
  }

  async function tick() {
    try {
      await Promise.all([pollDetails(), pollMetrics()]);
      setText("error", "");
      setText("updated", "updated " + new Date().toLocaleTimeString());
      document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
    } catch (e) {
      setText("error", e.message);
    }
    setText("metrics-status", metricsNote);
    renderCharts(knownDeployments);
    setTimeout(tick, POLL_MS);
  }

  tick();
})();
