// Formatting and DOM helpers. Text from the server only ever reaches the page through
// textContent (never innerHTML), so it cannot inject markup under any circumstances.

/** Create an element: el("td", {className: "num", title: "x"}, "text", childNode, ...). */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** Replace the rows of a <tbody>; `empty` is the text of a single placeholder row. */
export function fillRows(tbody, rows, empty) {
  if (rows.length === 0) {
    const cols = tbody.closest("table").tHead.rows[0].cells.length;
    tbody.replaceChildren(el("tr", { className: "empty" }, el("td", { colSpan: cols }, empty)));
  } else {
    tbody.replaceChildren(...rows);
  }
}

/** A state or status as a coloured badge. */
export function badge(text) {
  const value = String(text ?? "");
  return el("span", { className: `badge state-${value.toLowerCase()}` }, value);
}

export function count(n) {
  return typeof n === "number" && Number.isFinite(n) ? Math.round(n).toLocaleString("en") : "—";
}

export function rate(n) {
  if (typeof n !== "number" || !Number.isFinite(n)) return "—";
  return n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2);
}

export function percent(fraction, digits = 1) {
  if (typeof fraction !== "number" || !Number.isFinite(fraction)) return "—";
  return `${(fraction * 100).toFixed(digits)}%`;
}

/** Seconds as a short duration: 850 µs, 12.3 ms, 1.25 s, 3 min 5 s. */
export function seconds(s) {
  if (typeof s !== "number" || !Number.isFinite(s)) return "—";
  if (s < 0.001) return `${(s * 1e6).toFixed(0)} µs`;
  if (s < 1) return `${(s * 1000).toFixed(s < 0.01 ? 2 : 1)} ms`;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const [big, small, bigUnit, smallUnit] =
    s < 3600 ? [Math.floor(s / 60), Math.round(s % 60), "min", "s"] : [Math.floor(s / 3600), Math.round((s % 3600) / 60), "h", "min"];
  return small ? `${big} ${bigUnit} ${small} ${smallUnit}` : `${big} ${bigUnit}`;
}

export function bytes(n) {
  if (typeof n !== "number" || !Number.isFinite(n)) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** An ISO time as "12 s ago" (or "in 5 min" for the future); "—" when missing. */
export function ago(iso, now = Date.now()) {
  if (!iso) return "—";
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return String(iso);
  const diff = (now - t) / 1000;
  const abs = Math.abs(diff);
  const text =
    abs < 1 ? "now" : abs < 90 ? `${Math.round(abs)} s` : abs < 5400 ? `${Math.round(abs / 60)} min` : `${Math.round(abs / 3600)} h`;
  if (text === "now") return text;
  return diff >= 0 ? `${text} ago` : `in ${text}`;
}

/** An ISO time in local time, for tooltips and the detail view. */
export function when(iso) {
  if (!iso) return "—";
  const t = new Date(iso);
  return Number.isNaN(t.getTime()) ? String(iso) : t.toLocaleString();
}

/** The last characters of a ULID are the random part; the first ten are the time. */
export function shortId(id) {
  return typeof id === "string" && id.length > 12 ? `…${id.slice(-8)}` : String(id ?? "");
}

export function json(value) {
  return value === undefined ? "—" : JSON.stringify(value, null, 2);
}
