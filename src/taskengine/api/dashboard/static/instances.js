// The per-instance breakdown of the cluster's metrics: one row per engine process that
// published a report (this server first), with its pool, its counts and its process figures.

import { bytes, count, el, fillRows, seconds } from "./format.js";

/** instances: the snapshot's `instances` list (metrics.instances). */
export function renderInstances(tbody, counter, instances) {
  const list = instances ?? [];
  const rows = list.map((i) => {
    const out = i.outcomes ?? {};
    return el("tr", { dataset: { instance: i.instance } },
      el("td", { className: "mono" }, i.local ? `${i.instance} (this server)` : i.instance),
      el("td", {}, i.host),
      el("td", { className: "num" }, i.pid),
      el("td", { className: "num" }, `${count(i.busy)} / ${count(i.size)}`),
      el("td", { className: "num" }, count(out.succeeded ?? 0)),
      el("td", { className: "num" }, count((out.failed ?? 0) + (out.timed_out ?? 0))),
      el("td", { className: "num" }, bytes(i.rss_bytes)),
      el("td", { className: "num" }, `${(i.cpu_percent ?? 0).toFixed(1)}%`),
      el("td", { className: "num" }, seconds(i.loop_lag_seconds)),
    );
  });
  fillRows(tbody, rows, "no instance has reported yet");
  const hosts = new Set(list.map((i) => i.host));
  counter.textContent = list.length
    ? `${list.length} on ${hosts.size} host${hosts.size === 1 ? "" : "s"}`
    : "";
}
