// The read-only panels drawn from one tick: counters, latency and wait tables, circuit
// breakers, outcome totals and the workers table. Pure rendering: data in, DOM out.

import { ago, badge, bytes, count, el, fillRows, percent, rate, seconds, shortId } from "./format.js";

function setCounter(key, value, sub = "") {
  const card = document.querySelector(`.counter[data-key="${key}"]`);
  if (!card) return;
  card.querySelector(".value").textContent = value;
  card.querySelector(".sub").textContent = sub;
}

/** The counter cards from a metrics snapshot (and the newest history point, if any). */
export function renderCounters(m, point) {
  const out = m.outcomes ?? {};
  const failed = (out.failed ?? 0) + (out.timed_out ?? 0);
  setCounter("submitted", count(m.submitted), `${count(m.started ?? 0)} started`);
  setCounter("succeeded", count(out.succeeded ?? 0), out.retried ? `${count(out.retried)} retried` : "");
  setCounter("failed", count(failed), out.timed_out ? `${count(out.timed_out)} timed out` : "");
  setCounter("dead", count(out.dead ?? 0), out.cancelled ? `${count(out.cancelled)} cancelled` : "");
  const tp = m.throughput ?? {};
  setCounter("throughput", `${rate(tp.per_second_10s)}/s`, `60 s: ${rate(tp.per_second_60s)}/s`);
  setCounter("error_rate", percent(m.error_rate), "of finished attempts");
  setCounter("queued", count(m.queued), depthText(m.queue_depth));
  setCounter("running", count(m.running), point ? `${count(point.ok)} done last second` : "");
  const pool = m.pool;
  const cluster = m.cluster_pool;
  if (cluster && cluster.instances > 1) {
    const here = pool ? ` · here ${count(pool.busy)} / ${count(pool.size)}` : "";
    setCounter("pool", `${count(cluster.busy)} / ${count(cluster.size)}`, `${count(cluster.instances)} instances${here}`);
  } else if (pool) {
    setCounter("pool", `${count(pool.busy)} / ${count(pool.size)}`, poolText(pool));
  } else {
    setCounter("pool", "—", "no workers in this process");
  }
  const proc = m.process ?? {};
  setCounter("rss", bytes(proc.rss_bytes), proc.threads ? `${count(proc.threads)} threads` : "");
  // the point's CPU share covers a whole second; the snapshot's may cover a few milliseconds
  const cpu = point?.cpu_percent ?? proc.cpu_percent;
  setCounter("cpu", typeof cpu === "number" ? `${cpu.toFixed(1)}%` : "—",
    proc.open_fds ? `${count(proc.open_fds)} open files` : "");
  setCounter("lag", seconds(proc.loop_lag_seconds ?? point?.loop_lag_seconds),
    m.uptime_seconds ? `up ${seconds(m.uptime_seconds)}` : "");
}

function poolText(pool) {
  const parts = [`${percent(pool.utilisation, 0)} busy`];
  if (pool.buffered) parts.push(`${count(pool.buffered)} buffered`);
  if (pool.overrunning_threads) parts.push(`${count(pool.overrunning_threads)} overrunning`);
  return parts.join(" · ");
}

function depthText(depth) {
  const queues = new Set(Object.keys(depth ?? {}).map((key) => key.split(":")[0]));
  return queues.size ? `${queues.size} queue${queues.size === 1 ? "" : "s"} active` : "";
}

/** A percentile table (run time or queue wait) from {type: {count, mean, p50, p95, p99}}. */
export function renderPercentiles(tbody, byType) {
  const rows = Object.entries(byType ?? {})
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([type, s]) =>
      el("tr", {},
        el("td", { className: "mono" }, type),
        el("td", { className: "num" }, count(s.count)),
        el("td", { className: "num" }, seconds(s.mean)),
        el("td", { className: "num" }, seconds(s.p50)),
        el("td", { className: "num" }, seconds(s.p95)),
        el("td", { className: "num" }, seconds(s.p99)),
      ),
    );
  fillRows(tbody, rows, "no finished tasks yet");
}

export function renderBreakers(list, breakers) {
  const items = (breakers ?? []).map((b) =>
    el("li", {}, el("span", { className: "mono" }, b.name), badge(b.state)),
  );
  list.replaceChildren(...(items.length ? items : [el("li", { className: "muted" }, "no circuit breakers yet")]));
}

export function renderOutcomes(list, outcomes) {
  const items = Object.entries(outcomes ?? {})
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([label, n]) => el("li", { className: `pill state-${label}` }, `${label} ${count(n)}`));
  list.replaceChildren(...(items.length ? items : [el("li", { className: "muted" }, "none yet")]));
}

/** The rate and concurrency limits stored in the broker (GET /api/limits). */
export function renderLimits(tbody, limits) {
  const dash = (value) => (value === null || value === undefined ? "–" : String(value));
  const rows = (limits ?? []).map((l) =>
    el("tr", {},
      el("td", {}, l.scope),
      el("td", { className: "mono" }, l.name),
      el("td", { className: "num" }, dash(l.max_concurrency)),
      el("td", { className: "num" }, dash(l.rate)),
      el("td", { className: "num" }, dash(l.burst)),
    ),
  );
  fillRows(tbody, rows, "no limits");
}

/** Workers of every instance, grouped by host, then instance, each group under a row that
 * sums it up; clicking a current task opens it. */
export function renderWorkers(tbody, counter, workers, openTask) {
  const now = Date.now();
  const byName = (a, b) => a.localeCompare(b, "en", { numeric: true });
  const sorted = [...(workers ?? [])].sort(
    (a, b) => byName(a.host, b.host) || byName(a.instance, b.instance) || byName(a.id, b.id),
  );
  const cols = tbody.closest("table").tHead.rows[0].cells.length;
  const rows = [];
  for (const w of sorted) {
    if (rows.length === 0 || rows.at(-1).dataset.instance !== w.instance) {
      const mine = sorted.filter((other) => other.instance === w.instance);
      const busy = mine.filter((other) => other.state === "busy").length;
      rows.push(
        el("tr", { className: "group", dataset: { instance: w.instance } },
          el("th", { colSpan: cols, scope: "rowgroup" },
            `${w.host} · ${w.instance} · pid ${w.pid} · ${mine.length} worker${mine.length === 1 ? "" : "s"}, ${busy} busy`)),
      );
    }
    rows.push(workerRow(w, now, openTask));
  }
  fillRows(tbody, rows, "no workers have reported in");
  const instances = new Set(sorted.map((w) => w.instance));
  const hosts = new Set(sorted.map((w) => w.host));
  counter.textContent = sorted.length
    ? `${sorted.length} on ${instances.size} instance${instances.size === 1 ? "" : "s"}, ${hosts.size} host${hosts.size === 1 ? "" : "s"}`
    : "";
}

function workerRow(w, now, openTask) {
  return (
    el("tr", { dataset: { instance: w.instance } },
      el("td", { className: "mono" }, w.id),
      el("td", { className: "mono" }, w.instance),
      el("td", {}, w.host),
      el("td", { className: "num" }, w.pid),
      el("td", {}, badge(w.state)),
      el("td", { className: "mono" },
        w.current_task
          ? el("button", { type: "button", className: "link", title: w.current_task, onclick: () => openTask(w.current_task) }, shortId(w.current_task))
          : "—"),
      el("td", { className: "num" }, count(w.processed)),
      el("td", { className: "num" }, percent(w.busy_ratio)),
      el("td", { title: w.last_heartbeat ?? "" }, ago(w.last_heartbeat, now)),
    )
  );
}
