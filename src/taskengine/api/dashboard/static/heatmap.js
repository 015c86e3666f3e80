// The worker utilisation heatmap: one row per worker, one column per second of the last
// WINDOW seconds, colour = the worker's busy fraction in that second (0..1), drawn on a canvas.
// The history points carry the busy fractions of every instance's workers: this server's as
// it samples them, the others' as their heartbeats report them (up to a heartbeat late, filled
// in by the ticks' `amended` points). Rows are grouped by host, then instance, each group
// under a label; with many rows, the rows of a group carry no label of their own.
// Colours come from CSS custom properties (--heat-0, --heat-50, --heat-100, --heat-none), so
// the stylesheet owns the palette and the legend uses the same one.

export const WINDOW = 120;
const LABEL_MAX = 180;
const AXIS_H = 18;
const PAD = 4;
const GROUP_H = 14; // the label band above each instance's rows
const MANY_ROWS = 16; // above this, rows shrink and only groups are labelled
const TALL = 480; // px the rows of a large cluster share (rows never thinner than 3 px)

export class Heatmap {
  constructor(canvas, tip) {
    this.canvas = canvas;
    this.tip = tip;
    this.points = [];
    this.layout = null;
    canvas.addEventListener("mousemove", (event) => this.hover(event));
    canvas.addEventListener("mouseleave", () => {
      this.tip.hidden = true;
    });
    // redraw on width changes only: drawing sets the height, which must not loop back here
    this.drawnWidth = 0;
    new ResizeObserver(() => {
      if (canvas.parentElement.clientWidth !== this.drawnWidth) this.draw();
    }).observe(canvas.parentElement);
  }

  /** points: the history, oldest first. */
  update(points) {
    this.points = points;
    this.draw();
  }

  /** The workers the points describe, every instance's, by host, instance and number. */
  rowIds(bySecond, end) {
    const ids = new Set();
    for (let second = end - WINDOW + 1; second <= end; second++) {
      const point = bySecond.get(second);
      if (point && point.busy) for (const id of Object.keys(point.busy)) ids.add(id);
    }
    return [...ids].sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
  }

  /** The groups of rows: [{instance, label, first, count}], in row order. */
  groups(ids) {
    const groups = [];
    ids.forEach((id, row) => {
      const instance = instanceOf(id);
      const last = groups.at(-1);
      if (last && last.instance === instance) last.count += 1;
      else groups.push({ instance, label: groupLabel(instance), first: row, count: 1 });
    });
    return groups;
  }

  draw() {
    const canvas = this.canvas;
    this.drawnWidth = canvas.parentElement.clientWidth;
    const width = Math.max(200, this.drawnWidth);
    const bySecond = new Map();
    for (const point of this.points) bySecond.set(Math.floor(point.t), point);
    const last = this.points.at(-1);
    const end = last ? Math.floor(last.t) : Math.floor(Date.now() / 1000);
    const ids = this.rowIds(bySecond, end);
    const groups = this.groups(ids);
    const many = ids.length > MANY_ROWS;
    const rowH = many ? Math.max(3, Math.floor(TALL / ids.length)) : 18;
    const groupH = groups.length > 1 || many ? GROUP_H : 0;
    const rowTop = []; // y of each row: groups' label bands push the rows below them down
    let y0 = PAD;
    for (const group of groups) {
      y0 += groupH;
      for (let k = 0; k < group.count; k++) rowTop.push(y0 + k * rowH);
      y0 += group.count * rowH;
    }
    const rowsBottom = ids.length ? y0 : PAD + rowH;
    const height = rowsBottom + AXIS_H;

    const dpr = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * dpr);
    canvas.height = Math.round(height * dpr);
    canvas.style.width = `${width}px`;
    canvas.style.height = `${height}px`;
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);

    const css = getComputedStyle(canvas);
    const text = css.getPropertyValue("--heat-text").trim() || "#555";
    const none = css.getPropertyValue("--heat-none").trim() || "#eee";
    const ramp = [
      parseColour(css.getPropertyValue("--heat-0"), [238, 242, 247]),
      parseColour(css.getPropertyValue("--heat-50"), [91, 145, 206]),
      parseColour(css.getPropertyValue("--heat-100"), [12, 44, 100]),
    ];
    ctx.font = "11px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace";
    ctx.textBaseline = "middle";

    const labels = many ? ids.map(() => "") : rowLabels(ids, groups.length);
    const gutter = Math.min(
      LABEL_MAX,
      Math.max(many ? 8 : 40, ...labels.map((label) => ctx.measureText(label).width + 10)),
    );
    const cellW = (width - gutter - PAD) / WINDOW;
    this.layout = { ids, bySecond, end, gutter, cellW, rowH, rowTop };

    let busyCells = 0;
    let busyTotal = 0;
    const busyColumns = new Set();
    if (ids.length === 0) {
      ctx.fillStyle = text;
      const why = this.points.length ? "no workers run in this server process" : "waiting for data…";
      ctx.fillText(why, gutter, PAD + rowH / 2);
    }
    if (groupH) {
      for (const group of groups) {
        const y = rowTop[group.first] - groupH;
        ctx.fillStyle = text;
        const label = `${group.label} · ${group.count} worker${group.count === 1 ? "" : "s"}`;
        ctx.fillText(fit(ctx, label, width - PAD), 0, y + groupH / 2);
      }
    }
    ids.forEach((id, row) => {
      const y = rowTop[row];
      ctx.fillStyle = text;
      if (labels[row]) ctx.fillText(fit(ctx, labels[row], gutter - 10), 0, y + rowH / 2);
      for (let col = 0; col < WINDOW; col++) {
        const value = bySecond.get(end - WINDOW + 1 + col)?.busy?.[id];
        const x = gutter + col * cellW;
        if (typeof value === "number") {
          const busy = Math.min(1, Math.max(0, value));
          ctx.fillStyle = colourAt(ramp, busy);
          if (busy > 0) {
            busyCells += 1;
            busyColumns.add(col);
          }
          busyTotal += busy;
        } else {
          ctx.fillStyle = none;
        }
        // overlap by a fraction of a pixel so no seams show between cells
        ctx.fillRect(x, y, cellW + 0.5, rowH - (rowH > 8 ? 2 : rowH > 3 ? 1 : 0));
      }
    });

    const axisY = rowsBottom + AXIS_H / 2;
    ctx.fillStyle = text;
    for (const ago of [120, 90, 60, 30, 0]) {
      const x = gutter + (WINDOW - ago) * cellW;
      const label = ago === 0 ? "now" : `−${ago} s`;
      const w = ctx.measureText(label).width;
      ctx.fillText(label, Math.min(width - w, Math.max(gutter, x - w / 2)), axisY);
    }
    // read by tests and handy in devtools: what the last frame showed
    canvas.dataset.rows = String(ids.length);
    canvas.dataset.groups = String(groups.length);
    canvas.dataset.instances = groups.map((group) => group.instance).join(" ");
    canvas.dataset.busyCells = String(busyCells);
    canvas.dataset.busyColumns = String(busyColumns.size);
    canvas.dataset.busyTotal = busyTotal.toFixed(3);
    canvas.dataset.end = String(end);
  }

  hover(event) {
    const layout = this.layout;
    if (!layout || layout.ids.length === 0) return;
    const rect = this.canvas.getBoundingClientRect();
    const x = event.clientX - rect.left;
    const y = event.clientY - rect.top;
    const col = Math.floor((x - layout.gutter) / layout.cellW);
    const row = layout.rowTop.findIndex((top) => y >= top && y < top + layout.rowH);
    if (col < 0 || col >= WINDOW || row < 0) {
      this.tip.hidden = true;
      return;
    }
    const id = layout.ids[row];
    const second = layout.end - WINDOW + 1 + col;
    const value = layout.bySecond.get(second)?.busy?.[id];
    const time = new Date(second * 1000).toLocaleTimeString();
    const busy = typeof value === "number" ? `${Math.round(value * 100)}% busy` : "no data";
    this.tip.textContent = `${id} · ${time} · ${busy}`;
    this.tip.hidden = false;
    const box = this.canvas.parentElement.clientWidth;
    this.tip.style.left = `${Math.min(box - this.tip.offsetWidth, x + 12)}px`;
    this.tip.style.top = `${y + 12}px`;
  }
}

/** Row labels: the worker's number within its instance once a group label names the instance
 * (or when every worker shares one instance). */
function rowLabels(ids, groupCount) {
  if (ids.every((id) => id.includes("/")) && (groupCount > 1 || new Set(ids.map(instanceOf)).size === 1)) {
    return ids.map((id) => id.slice(id.lastIndexOf("/") + 1));
  }
  return ids;
}

function instanceOf(id) {
  const cut = id.lastIndexOf("/");
  return cut < 0 ? id : id.slice(0, cut);
}

/** "host · pid" for the instance ids the engine makes (host:pid:random); the id otherwise. */
function groupLabel(instance) {
  const parts = instance.split(":");
  if (parts.length >= 3) return `${parts.slice(0, -2).join(":")} · pid ${parts.at(-2)} · ${parts.at(-1)}`;
  return instance;
}

/** Shorten from the left (the worker number is the end that tells rows apart). */
function fit(ctx, label, width) {
  if (ctx.measureText(label).width <= width) return label;
  let cut = label;
  while (cut.length > 1 && ctx.measureText(`…${cut}`).width > width) cut = cut.slice(1);
  return `…${cut}`;
}

function parseColour(value, fallback) {
  const hex = value.trim().replace(/^#/, "");
  if (/^[0-9a-f]{6}$/i.test(hex)) {
    return [0, 2, 4].map((i) => parseInt(hex.slice(i, i + 2), 16));
  }
  return fallback;
}

/** Linear interpolation over three stops at 0, 0.5 and 1. */
function colourAt(ramp, value) {
  const [from, to, f] = value <= 0.5 ? [ramp[0], ramp[1], value * 2] : [ramp[1], ramp[2], value * 2 - 1];
  const rgb = from.map((c, i) => Math.round(c + (to[i] - c) * f));
  return `rgb(${rgb[0]}, ${rgb[1]}, ${rgb[2]})`;
}
