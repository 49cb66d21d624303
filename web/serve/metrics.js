// Prometheus text-format parsing and per-deployment rates for the Serve page. Pure functions
// plus a bounded history; no DOM. Exposed as window.serveMetrics.
(function () {
  "use strict";

  // Parses the Prometheus text exposition format into [{name, labels, value}]. Comments, blank
  // lines and malformed lines are skipped; timestamps are ignored.
  function parsePrometheus(text) {
    const out = [];
    for (const raw of text.split("\n")) {
      const line = raw.trim();
      if (!line || line[0] === "#") continue;
      const sample = parseLine(line);
      if (sample) out.push(sample);
    }
    return out;
  }

  function parseLine(line) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(line);
    if (!m) return null;
    const name = m[1];
    let i = name.length;
    const labels = {};
    if (line[i] === "{") {
      i++;
      for (;;) {
        while (line[i] === " " || line[i] === ",") i++;
        if (line[i] === "}") { i++; break; }
        const lm = /^([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"/.exec(line.slice(i));
        if (!lm) return null;
        i += lm[0].length;
        let value = "";
        for (;;) {
          if (i >= line.length) return null;
          const c = line[i++];
          if (c === '"') break;
          if (c === "\\") {
            const e = line[i++];
            value += e === "n" ? "\n" : e;
          } else {
            value += c;
          }
        }
        labels[lm[1]] = value;
      }
    }
    const rest = line.slice(i).trim().split(/\s+/);
    if (!rest[0]) return null;
    const value = parseValue(rest[0]);
    if (value === null) return null;
    return { name, labels, value };
  }

  function parseValue(s) {
    if (s === "+Inf" || s === "Inf") return Infinity;
    if (s === "-Inf") return -Infinity;
    if (s === "NaN") return NaN;
    const v = Number(s);
    return Number.isNaN(v) ? null : v;
  }

  const REQUESTS = "ray_serve_deployment_request_counter_total";
  const ERRORS = "ray_serve_deployment_error_counter_total";
  const LATENCY = "ray_serve_deployment_processing_latency_ms_bucket";

  // Groups the deployment series by deployment, keeping each series (one per replica and
  // route) apart so that a replica that goes away or restarts does not look like a reset:
  // Map "app#deployment" -> {app, deployment, requests, errors: Map(series -> value),
  //                          buckets: Map(le -> Map(series -> count))}.
  function aggregate(samples) {
    const out = new Map();
    for (const s of samples) {
      if (s.name !== REQUESTS && s.name !== ERRORS && s.name !== LATENCY) continue;
      const app = s.labels.application || "";
      const dep = s.labels.deployment || "";
      const key = app + "#" + dep;
      let a = out.get(key);
      if (!a) {
        a = { app, deployment: dep, requests: new Map(), errors: new Map(), buckets: new Map() };
        out.set(key, a);
      }
      const id = seriesId(s.labels);
      if (s.name === REQUESTS) a.requests.set(id, s.value);
      else if (s.name === ERRORS) a.errors.set(id, s.value);
      else {
        const le = parseValue(s.labels.le);
        if (le === null) continue;
        if (!a.buckets.has(le)) a.buckets.set(le, new Map());
        a.buckets.get(le).set(id, s.value);
      }
    }
    return out;
  }

  function seriesId(labels) {
    return Object.keys(labels).filter((k) => k !== "le").sort()
      .map((k) => k + "=" + labels[k]).join(",");
  }

  // The q-quantile of a cumulative histogram [[le, count], ...] sorted by le, interpolating
  // linearly inside the bucket (as Prometheus' histogram_quantile). null when it is empty.
  function histogramQuantile(q, buckets) {
    if (!buckets.length) return null;
    const total = buckets[buckets.length - 1][1];
    if (!(total > 0)) return null;
    const rank = q * total;
    let prevLe = 0, prevCount = 0;
    for (const [le, count] of buckets) {
      if (count >= rank) {
        if (le === Infinity) return prevLe;  // the highest finite bound
        if (count === prevCount) return le;
        return prevLe + (le - prevLe) * (rank - prevCount) / (count - prevCount);
      }
      prevLe = le;
      prevCount = count;
    }
    return prevLe;
  }

  // Growth of a set of counters between two scrapes (Map series -> value): a series that is new
  // or went down (reset) counts all of its value; a series that disappeared counts nothing.
  function increase(before, after) {
    let sum = 0;
    for (const [id, v] of after) {
      const b = before ? before.get(id) : undefined;
      sum += b !== undefined && v >= b ? v - b : v;
    }
    return sum;
  }

  // The last `windowS` seconds of scrapes (at most `maxPoints`), and per-deployment series of
  // request rate, error rate and latency quantiles between consecutive scrapes.
  class History {
    constructor(windowS, maxPoints) {
      this.windowS = windowS;
      this.maxPoints = maxPoints;
      this.points = [];  // [{t (s), agg}]
    }

    add(tSeconds, agg) {
      this.points.push({ t: tSeconds, agg });
      while (this.points.length > this.maxPoints ||
             (this.points.length && this.points[0].t < tSeconds - this.windowS)) {
        this.points.shift();
      }
    }

    keys() {
      const keys = new Set();
      for (const p of this.points) for (const k of p.agg.keys()) keys.add(k);
      return [...keys].sort();
    }

    // {t, qps, errors, p50, p90, p99}: arrays aligned on t (end of each interval). Latency is of
    // the requests finished in each interval (null when there were none).
    series(key) {
      const s = { t: [], qps: [], errors: [], p50: [], p90: [], p99: [] };
      for (let i = 1; i < this.points.length; i++) {
        const a = this.points[i - 1], b = this.points[i];
        const dt = b.t - a.t;
        const cur = b.agg.get(key);
        if (!(dt > 0) || !cur) continue;
        const prev = a.agg.get(key) || { requests: new Map(), errors: new Map(), buckets: new Map() };
        s.t.push(b.t);
        s.qps.push(increase(prev.requests, cur.requests) / dt);
        s.errors.push(increase(prev.errors, cur.errors) / dt);
        const les = [...cur.buckets.keys()].sort((x, y) => x - y);
        const delta = les.map((le) => [le, increase(prev.buckets.get(le), cur.buckets.get(le))]);
        s.p50.push(histogramQuantile(0.5, delta));
        s.p90.push(histogramQuantile(0.9, delta));
        s.p99.push(histogramQuantile(0.99, delta));
      }
      return s;
    }
  }

  window.serveMetrics = { parsePrometheus, aggregate, histogramQuantile, History };
})();
