// The dashboard's wiring: the token field, the live event stream, and which view each
// event updates. Rendering lives in panels.js, heatmap.js, charts.js and tasks.js.

import { api, auth, authHeaders, getToken, setToken } from "./api.js";
import { TimeCharts } from "./charts.js";
import { seconds } from "./format.js";
import { Heatmap } from "./heatmap.js";
import { renderInstances } from "./instances.js";
import { renderBreakers, renderCounters, renderLimits, renderOutcomes, renderPercentiles, renderWorkers } from "./panels.js";
import { EventStream } from "./sse.js";
import { OperatorViews } from "./operator.js";
import { TaskViews } from "./tasks.js";

const HISTORY_MAX = 300; // points kept: what the server sends on connect
const POLL_MS = 1000; // the loop that refreshes the task lists (they throttle themselves)
const FALLBACK_MS = 2000; // without the stream, the snapshot is polled this often

const $ = (id) => document.getElementById(id);

const RANGES = { "5m": 300, "1h": 3600, "24h": 86400 }; // the chart's ranges, in seconds
const RANGE_REFRESH_MS = { "1h": 5000, "24h": 30000 }; // longer ranges are fetched, this often

const state = {
  points: [],
  range: "5m",
  rangePoints: [],
  rangeStep: 1,
  rangeFetched: 0,
  streamState: "connecting",
  needsToken: false,
  lastFallback: 0,
};

const tasks = new TaskViews();
const operator = new OperatorViews((id) => tasks.open(id));
const heatmap = new Heatmap($("heatmap"), $("heatmap-tip"));
const charts = new TimeCharts($("chart-depth"), $("chart-throughput"));

function renderSnapshot(metrics, workers, point) {
  renderCounters(metrics, point);
  renderPercentiles(document.querySelector("#latency-table tbody"), metrics.latency_seconds);
  renderPercentiles(document.querySelector("#wait-table tbody"), metrics.wait_seconds);
  renderBreakers($("breakers"), metrics.breakers);
  renderOutcomes($("outcomes"), metrics.outcomes);
  renderInstances(document.querySelector("#instances-table tbody"), $("instances-count"), metrics.instances);
  if (workers) {
    renderWorkers(document.querySelector("#workers-table tbody"), $("workers-count"), workers, (id) => tasks.open(id));
  }
  const instance = metrics.pool?.instance;
  $("instance").textContent = [instance, metrics.uptime_seconds ? `up ${seconds(metrics.uptime_seconds)}` : ""]
    .filter(Boolean)
    .join(" · ");
}

function renderSeries() {
  heatmap.update(state.points);
  if (state.range === "5m") charts.update(state.points);
}

/** The chart's range: five minutes from the live points, an hour or a day from the server. */
function chooseRange(range) {
  state.range = range;
  state.rangeFetched = 0;
  charts.setSpan(RANGES[range]);
  for (const button of document.querySelectorAll("#chart-range button")) {
    button.setAttribute("aria-pressed", String(button.dataset.range === range));
  }
  if (range === "5m") charts.update(state.points);
  else refreshRange();
}

async function refreshRange() {
  const range = state.range;
  if (range === "5m" || Date.now() - state.rangeFetched < RANGE_REFRESH_MS[range]) return;
  state.rangeFetched = Date.now();
  try {
    const body = await api.history(range);
    if (state.range !== range) return;
    charts.update(body.points ?? [], body.step ?? 1);
  } catch {
    state.rangeFetched = 0; // the next round tries again
  }
}

for (const button of document.querySelectorAll("#chart-range button")) {
  button.addEventListener("click", () => chooseRange(button.dataset.range));
}

function onEvent(type, data) {
  if (type === "history") {
    state.points = Array.isArray(data.points) ? data.points.slice(-HISTORY_MAX) : [];
    renderSeries();
  } else if (type === "tick") {
    const point = data.point;
    if (point) {
      const last = state.points.at(-1);
      if (last && last.t >= point.t) state.points[state.points.length - 1] = point;
      else state.points.push(point);
      if (state.points.length > HISTORY_MAX) state.points.splice(0, state.points.length - HISTORY_MAX);
    }
    // seconds other instances reported since (their heartbeats come up to an interval late)
    for (const amended of data.amended ?? []) {
      const at = state.points.findIndex((p) => p.t === amended.t);
      if (at >= 0) state.points[at] = amended;
    }
    if (data.metrics) renderSnapshot(data.metrics, data.workers, point);
    tasks.applyProgress(data.progress);
    renderSeries();
  }
}

// -- connection indicator and token prompt --------------------------------------------------

function setIndicator(kind, text) {
  const conn = $("conn");
  conn.className = `conn conn-${kind}`;
  conn.dataset.state = kind;
  $("conn-text").textContent = text;
}

function onStreamState(streamState, detail) {
  state.streamState = streamState;
  if (streamState === "live") {
    setIndicator("live", "Live");
    showTokenPrompt(false);
  } else if (streamState === "connecting") {
    setIndicator("connecting", "Connecting…");
  } else if (streamState === "retrying") {
    const secs = Math.max(1, Math.round(detail.delay / 1000));
    setIndicator("down", `Disconnected (${detail.reason}); retrying in ${secs} s`);
  } else if (streamState === "unauthorized") {
    setIndicator("auth", getToken() ? "Token refused" : "Token needed");
  }
}

function showTokenPrompt(show, message = "") {
  state.needsToken = show;
  $("auth-banner").hidden = !show;
  $("auth-message").textContent = message;
  if (show && document.activeElement !== $("token-input")) $("token-input").focus();
}

auth.addEventListener("unauthorized", (event) => {
  showTokenPrompt(true, getToken() ? `The token was refused: ${event.detail}.` : "");
});

const stream = new EventStream("/api/events", {
  headers: authHeaders,
  onEvent,
  onState: onStreamState,
  onUnauthorized: (message) => showTokenPrompt(true, getToken() ? `The token was refused: ${message}.` : ""),
});

$("token-input").value = getToken();
$("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  setToken($("token-input").value);
  showTokenPrompt(false);
  stream.restart();
  tasks.refresh({ force: true });
  operator.scope();
});
$("token-clear").addEventListener("click", () => {
  $("token-input").value = "";
  setToken("");
  stream.restart();
  tasks.refresh({ force: true });
});

// -- the polling loop: task lists always; the snapshot only while the stream is down -------

async function fallback() {
  if (state.streamState === "live" || state.needsToken) return;
  const now = Date.now();
  if (now - state.lastFallback < FALLBACK_MS) return;
  state.lastFallback = now;
  try {
    const [metrics, workers] = await Promise.all([api.metrics(), api.workers()]);
    if (state.streamState !== "live") renderSnapshot(metrics, workers.workers, null);
  } catch {
    // the indicator already says the server is unreachable; the next round tries again
  }
}

const LIMITS_MS = 5000; // limits change rarely: one broker read per dashboard every 5 s
let limitsAt = 0;

async function refreshLimits() {
  const now = Date.now();
  if (now - limitsAt < LIMITS_MS) return;
  limitsAt = now;
  try {
    renderLimits($("limits-table").tBodies[0], (await api.limits()).limits);
  } catch {
    // the indicator already says the server is unreachable; the next round tries again
  }
}

function poll() {
  if (!state.needsToken) {
    tasks.refresh();
    operator.refresh();
    fallback();
    refreshLimits();
    refreshRange();
  }
}

stream.start();
tasks.refresh({ force: true });
operator.scope();
operator.refresh({ force: true });
operator.search();
refreshLimits();
setInterval(poll, POLL_MS);
