// The two time-series charts (uPlot, vendored in static/vendor/): queue depth per priority,
// and throughput (succeeded/s, failed/s) with the error rate on a second axis.
// Both show the chosen range: the last five minutes or hour per second, the last day per minute
// (a minute's point holds its sums: the charts divide them by the step for rates per second).

export const SPAN = 300;
let span = SPAN; // seconds the x axis spans (setSpan)
const HEIGHT = 190;

function palette() {
  const css = getComputedStyle(document.documentElement);
  const get = (name, fallback) => css.getPropertyValue(name).trim() || fallback;
  return {
    axis: get("--chart-axis", "#666"),
    grid: get("--chart-grid", "#e5e5e5"),
    high: get("--c-high", "#d9480f"),
    normal: get("--c-normal", "#1c7ed6"),
    low: get("--c-low", "#868e96"),
    ok: get("--c-ok", "#2b8a3e"),
    failed: get("--c-failed", "#c92a2a"),
    rate: get("--c-rate", "#e8590c"),
  };
}

/** A uPlot chart in `box` that follows the box's width. */
class Chart {
  constructor(box, options, empty) {
    this.box = box;
    this.plot = new window.uPlot({ ...options, width: this.width(), height: HEIGHT }, empty, box);
    let drawn = box.clientWidth;
    new ResizeObserver(() => {
      if (box.clientWidth !== drawn) {
        drawn = box.clientWidth;
        this.plot.setSize({ width: this.width(), height: HEIGHT });
      }
    }).observe(box);
  }

  width() {
    return Math.max(240, this.box.clientWidth);
  }

  set(data) {
    this.plot.setData(data);
    // while the pointer is elsewhere, the legend shows the newest values
    const left = this.plot.cursor.left;
    if ((left == null || left < 0) && data[0].length > 0) this.plot.setLegend({ idx: data[0].length - 1 });
  }
}

const pad = (n) => String(n).padStart(2, "0");

/** Local wall-clock tick labels: HH:MM, or HH:MM:SS when ticks are less than a minute apart. */
function clockLabels(u, splits, axisIdx, space, incr) {
  return splits.map((t) => {
    const d = new Date(t * 1000);
    const hm = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    return incr < 60 ? `${hm}:${pad(d.getSeconds())}` : hm;
  });
}

function axes(c, extra = []) {
  const axis = { stroke: c.axis, grid: { stroke: c.grid, width: 1 }, ticks: { stroke: c.grid, width: 1 } };
  return [{ ...axis, space: 70, values: clockLabels }, { ...axis, size: 44 }, ...extra];
}

/** x ends at the newest point and spans the data, at least MIN_SPAN and at most SPAN seconds. */
const MIN_SPAN = 60;
const lastSpan = (u, min, max) => {
  const end = max ?? Date.now() / 1000;
  const start = Math.min(min ?? end, end - MIN_SPAN);
  return [Math.max(end - span, start), end];
};
/** y starts at zero and never collapses to a flat line at 0..0. */
const fromZero = (minimum) => (u, min, max) => [0, Math.max(minimum, Math.ceil(max * 1.1))];

export class TimeCharts {
  constructor(depthBox, throughputBox) {
    const c = palette();
    const line = (label, stroke, more = {}) => ({ label, stroke, width: 1.5, points: { show: false }, ...more });
    this.depthBox = depthBox;
    this.throughputBox = throughputBox;
    this.depth = new Chart(
      depthBox,
      {
        scales: { x: { time: true, range: lastSpan }, y: { range: fromZero(5) } },
        series: [{}, line("HIGH", c.high), line("NORMAL", c.normal), line("LOW", c.low)],
        axes: axes(c),
        legend: { live: true },
      },
      [[], [], [], []],
    );
    const pct = (u, v) => (v == null ? "—" : `${v.toFixed(1)}%`);
    this.throughput = new Chart(
      throughputBox,
      {
        scales: {
          x: { time: true, range: lastSpan },
          y: { range: fromZero(5) },
          pct: { range: [0, 100] },
        },
        series: [
          {},
          line("succeeded/s", c.ok),
          line("failed/s", c.failed),
          line("error rate", c.rate, { scale: "pct", dash: [4, 3], value: pct }),
        ],
        axes: axes(c, [
          {
            scale: "pct",
            side: 1,
            size: 48,
            stroke: c.axis,
            grid: { show: false },
            ticks: { stroke: c.grid, width: 1 },
            values: (u, splits) => splits.map((v) => `${v}%`),
          },
        ]),
        legend: { live: true },
      },
      [[], [], [], []],
    );
  }

  /** The range the charts span, in seconds (300, 3600 or 86400). */
  setSpan(seconds) {
    span = seconds;
    this.depthBox.dataset.span = String(seconds);
  }

  /** Redraw from history points (oldest first), `step` seconds apart. */
  update(points, step = 1) {
    const recent = points.slice(-Math.ceil(span / step));
    const t = recent.map((p) => p.t);
    const depth = (name) => recent.map((p) => p.depth?.[name] ?? 0);
    this.depth.set([t, depth("HIGH"), depth("NORMAL"), depth("LOW")]);
    const ok = recent.map((p) => (p.ok ?? 0) / step);
    const failed = recent.map((p) => (p.failed ?? 0) / step);
    const errorRate = recent.map((p, i) => {
      const done = ok[i] + failed[i];
      return done > 0 ? (100 * failed[i]) / done : null;
    });
    this.throughput.set([t, ok, failed, errorRate]);
    // read by tests and handy in devtools: what the charts hold
    const maxDepth = Math.max(0, ...["HIGH", "NORMAL", "LOW"].flatMap((n) => depth(n)));
    this.depthBox.dataset.points = String(t.length);
    this.depthBox.dataset.maxDepth = String(maxDepth);
    this.throughputBox.dataset.points = String(t.length);
    this.throughputBox.dataset.maxOk = String(Math.max(0, ...ok));
    this.throughputBox.dataset.sumOk = String(ok.reduce((a, b) => a + b, 0));
    this.throughputBox.dataset.maxFailed = String(Math.max(0, ...failed));
  }
}
