// The operator's views (ADR 0036): instances with remote control, queues (pause, resume,
// purge), task search with keyset paging and bulk actions, scheduled and retrying tasks,
// periodic tasks (enable, disable) and task types. A read token gets body.readonly, and the
// stylesheet hides every .mutating control (the server refuses them anyway).

import { api } from "./api.js";
import { ago, badge, bytes, el, fillRows, shortId, when } from "./format.js";

const REFRESH_MS = 2000;
const $ = (id) => document.getElementById(id);

function errorText(exc) {
  return exc && exc.code ? `${exc.code}: ${exc.message}` : String(exc?.message ?? exc);
}

function say(id, text) {
  $(id).textContent = text;
}

function epoch(iso) {
  return iso ? new Date(iso).getTime() / 1000 : null;
}

function inSeconds(epochSeconds) {
  if (epochSeconds == null) return "—";
  const secs = Math.round(epochSeconds - Date.now() / 1000);
  return secs <= 0 ? "now" : `in ${secs} s`;
}

export class OperatorViews {
  constructor(openTask) {
    this.openTask = openTask;
    this.lastRefresh = 0;
    this.inFlight = false;
    this.cursor = null;
    this.query = "";
    this.selected = new Set();
    this.bind();
  }

  /** Ask the server what this token may do; a read token hides the mutating controls. */
  async scope() {
    try {
      const me = await api.me();
      document.body.classList.toggle("readonly", me.scope !== "admin");
    } catch {
      // 401: the token prompt is up; the next refresh asks again
    }
  }

  async refresh({ force = false } = {}) {
    const now = Date.now();
    if (this.inFlight || (!force && now - this.lastRefresh < REFRESH_MS)) return;
    this.inFlight = true;
    this.lastRefresh = now;
    try {
      const [instances, queues, scheduled, retrying, periodic, types] = await Promise.allSettled([
        api.instances(), api.queues(), api.scheduled(), api.retrying(), api.periodic(), api.types(),
      ]);
      if (instances.status === "fulfilled") this.renderInstances(instances.value.instances);
      if (queues.status === "fulfilled") this.renderQueues(queues.value.queues);
      if (scheduled.status === "fulfilled") this.renderScheduled(scheduled.value.items);
      if (retrying.status === "fulfilled") this.renderRetrying(retrying.value.items);
      if (periodic.status === "fulfilled") this.renderPeriodic(periodic.value.periodic);
      if (types.status === "fulfilled") this.renderTypes(types.value.types);
    } finally {
      this.inFlight = false;
    }
  }

  // -- instances ------------------------------------------------------------------------------

  renderInstances(items) {
    const now = Date.now();
    const rows = items.map((i) => {
      const size = el("input", { type: "number", min: 1, max: 10000, value: i.workers, ariaLabel: "pool size" });
      const send = (body, button) => this.control(i.instance, body, button);
      return el("tr", { dataset: { instance: i.instance, draining: String(i.draining) } },
        el("td", { className: "mono" }, i.instance),
        el("td", {}, i.host),
        el("td", {}, String(i.pid)),
        el("td", { dataset: { cell: "version" } }, i.version ?? "—"), // "—": no report yet
        el("td", { className: "num", dataset: { cell: "workers" } }, String(i.workers)),
        el("td", { className: "num" }, String(i.busy)),
        el("td", { className: "num" }, String(i.processed)),
        el("td", { className: "num", dataset: { cell: "rss" } }, bytes(i.rss_bytes)),
        el("td", {}, badge(i.draining ? "draining" : "running")),
        el("td", { title: when(i.started_at) }, ago(i.started_at, now)),
        el("td", { className: "mutating" }, el("span", { className: "controls" },
          i.draining
            ? el("button", { type: "button", className: "small", dataset: { control: "resume" }, onclick: (e) => send({ command: "resume" }, e.currentTarget) }, "Resume")
            : el("button", { type: "button", className: "small", dataset: { control: "drain" }, onclick: (e) => send({ command: "drain" }, e.currentTarget) }, "Drain"),
          size,
          el("button", { type: "button", className: "small secondary", dataset: { control: "resize" }, onclick: (e) => send({ command: "resize", size: Number(size.value) }, e.currentTarget) }, "Resize"),
          el("button", { type: "button", className: "small danger", dataset: { control: "shutdown" }, onclick: (e) => {
            if (window.confirm(`Shut down ${i.instance} gracefully?`)) send({ command: "shutdown" }, e.currentTarget);
          } }, "Shut down"),
        )),
      );
    });
    fillRows(document.querySelector("#control-table tbody"), rows, "no live instances");
  }

  async control(instance, body, button) {
    button.disabled = true;
    try {
      await api.control(instance, body);
      say("control-message", `${body.command} sent to ${instance}`);
    } catch (exc) {
      say("control-message", errorText(exc));
    } finally {
      button.disabled = false;
      this.refresh({ force: true });
    }
  }

  // -- queues ---------------------------------------------------------------------------------

  renderQueues(items) {
    const now = Date.now();
    const rows = items.map((q) => {
      const by = q.queued_by_priority || {};
      const states = q.states || {};
      return el("tr", { dataset: { queue: q.name, paused: String(q.paused) } },
        el("td", { className: "mono" }, q.name),
        el("td", { className: "num" }, String(by.HIGH ?? 0)),
        el("td", { className: "num" }, String(by.NORMAL ?? 0)),
        el("td", { className: "num" }, String(by.LOW ?? 0)),
        el("td", { title: q.oldest_queued_at ? when(q.oldest_queued_at) : "" }, q.oldest_queued_at ? ago(q.oldest_queued_at, now) : "—"),
        el("td", { className: "num" }, String(states.running ?? 0)),
        el("td", { className: "num", dataset: { cell: "rate" }, title: "tasks that ended (succeeded, retried or dead) per second over the last minute, every instance" },
          (q.rate_per_second ?? 0).toFixed(2)),
        el("td", { className: "num" }, String(states.dead ?? 0)),
        el("td", {}, q.paused ? badge("paused") : ""),
        el("td", { className: "mutating" }, el("span", { className: "controls" },
          el("button", { type: "button", className: "small", dataset: { action: q.paused ? "resume" : "pause" },
            onclick: (e) => this.queueAction(q.name, q.paused ? "resume" : "pause", e.currentTarget) }, q.paused ? "Resume" : "Pause"),
          el("button", { type: "button", className: "small danger", dataset: { action: "purge" },
            onclick: (e) => {
              if (window.confirm(`Delete every queued task of ${q.name}? This cannot be undone.`)) this.queueAction(q.name, "purge", e.currentTarget);
            } }, "Purge"),
        )),
      );
    });
    fillRows(document.querySelector("#queues-table tbody"), rows, "no queues");
  }

  async queueAction(name, action, button) {
    button.disabled = true;
    try {
      if (action === "purge") {
        const answer = await api.purgeQueue(name);
        say("queues-message", `purged ${answer.purged} queued tasks of ${name}`);
      } else {
        await (action === "pause" ? api.pauseQueue(name) : api.resumeQueue(name));
        say("queues-message", `${action}d ${name}`);
      }
    } catch (exc) {
      say("queues-message", errorText(exc));
    } finally {
      button.disabled = false;
      this.refresh({ force: true });
    }
  }

  // -- search, paging and bulk actions --------------------------------------------------------

  filter() {
    const f = {};
    const pick = (id) => $(id).value.trim();
    if (pick("search-type")) f.type = [pick("search-type")];
    if (pick("search-state")) f.state = [pick("search-state")];
    if (pick("search-queue")) f.queue = [pick("search-queue")];
    if (pick("search-priority")) f.priority = [pick("search-priority")];
    const after = pick("search-after");
    const before = pick("search-before");
    if (after) f.created_after = new Date(after).getTime() / 1000;
    if (before) f.created_before = new Date(before).getTime() / 1000;
    return f;
  }

  queryOf(f) {
    const params = new URLSearchParams();
    for (const [key, value] of Object.entries(f)) {
      for (const item of Array.isArray(value) ? value : [value]) params.append(key, String(item));
    }
    params.set("limit", "50");
    return params;
  }

  async search({ next = false } = {}) {
    const id = $("search-id").value.trim();
    const body = document.querySelector("#search-table tbody");
    try {
      if (id) {
        const task = await api.getTask(id);
        this.renderSearch([task], false);
        this.cursor = null;
      } else {
        const params = this.queryOf(this.filter());
        if (next && this.cursor) params.set("cursor", this.cursor);
        const page = await api.searchTasks(params.toString());
        this.renderSearch(page.items, next);
        this.cursor = page.next_cursor;
      }
    } catch (exc) {
      fillRows(body, [], errorText(exc));
      this.cursor = null;
    }
    $("search-next").hidden = !this.cursor;
  }

  renderSearch(items, append) {
    const now = Date.now();
    const body = document.querySelector("#search-table tbody");
    if (!append) this.selected.clear();
    const rows = items.map((t) => {
      const box = el("input", { type: "checkbox", ariaLabel: `select ${t.id}`, checked: this.selected.has(t.id),
        onclick: (e) => { e.stopPropagation(); if (e.currentTarget.checked) this.selected.add(t.id); else this.selected.delete(t.id); } });
      return el("tr", { dataset: { id: t.id, state: t.state }, tabIndex: 0, onclick: () => this.openTask(t.id) },
        el("td", { className: "mutating" }, box),
        el("td", { className: "mono", title: t.id }, shortId(t.id)),
        el("td", { className: "mono" }, t.type),
        el("td", {}, t.queue),
        el("td", {}, t.priority),
        el("td", {}, badge(t.state)),
        el("td", { className: "num" }, `${t.attempt}/${t.max_attempts}`),
        el("td", { title: when(t.created_at) }, ago(t.created_at, now)),
      );
    });
    if (append) body.append(...rows);
    else fillRows(body, rows, "no matching tasks");
  }

  async bulk(action, scope, button) {
    const body = { action };
    if (scope === "selected") {
      if (this.selected.size === 0) {
        say("bulk-message", "select tasks first");
        return;
      }
      body.ids = [...this.selected];
    } else {
      body.filter = this.filter();
      if (!window.confirm(`${action} every task that matches the search?`)) return;
    }
    button.disabled = true;
    try {
      const answer = await api.bulk(body);
      say("bulk-message", `${action}: ${answer.touched} tasks changed`);
    } catch (exc) {
      say("bulk-message", errorText(exc));
    } finally {
      button.disabled = false;
      this.search();
    }
  }

  // -- scheduled, retrying, periodic, types ---------------------------------------------------

  renderScheduled(items) {
    const rows = items.map((t) => el("tr", { dataset: { id: t.id }, onclick: () => this.openTask(t.id) },
      el("td", { className: "mono", title: t.id }, shortId(t.id)),
      el("td", { className: "mono" }, t.type),
      el("td", {}, t.queue),
      el("td", { title: when(t.run_at) }, inSeconds(epoch(t.run_at))),
    ));
    fillRows(document.querySelector("#scheduled-table tbody"), rows, "nothing scheduled");
  }

  renderRetrying(items) {
    const rows = items.map((t) => {
      const last = (t.history || []).at(-1);
      return el("tr", { dataset: { id: t.id }, onclick: () => this.openTask(t.id) },
        el("td", { className: "mono", title: t.id }, shortId(t.id)),
        el("td", { className: "mono" }, t.type),
        el("td", { className: "num" }, `${t.attempt}/${t.max_attempts}`),
        el("td", { title: when(t.run_at) }, inSeconds(epoch(t.run_at))),
        el("td", {}, last?.error?.message ?? last?.error ?? ""),
      );
    });
    fillRows(document.querySelector("#retrying-table tbody"), rows, "nothing retrying");
  }

  renderPeriodic(items) {
    const rows = items.map((p) => el("tr", { dataset: { periodic: p.name, enabled: String(p.enabled) } },
      el("td", { className: "mono" }, p.name),
      el("td", { className: "mono" }, p.cron),
      el("td", { className: "mono" }, p.type),
      el("td", {}, inSeconds(p.next_slot)),
      el("td", {}, p.last_fired ? ago(new Date(p.last_fired * 1000).toISOString()) : "—"),
      el("td", { className: "mono" }, p.leader ?? "—"),
      el("td", {}, p.enabled ? "yes" : badge("disabled")),
      el("td", { className: "mutating" }, el("button", { type: "button", className: "small",
        dataset: { action: p.enabled ? "disable" : "enable" },
        onclick: (e) => this.togglePeriodic(p.name, !p.enabled, e.currentTarget) }, p.enabled ? "Disable" : "Enable")),
    ));
    fillRows(document.querySelector("#periodic-table tbody"), rows, "no periodic tasks");
  }

  async togglePeriodic(name, enabled, button) {
    button.disabled = true;
    try {
      await api.setPeriodic(name, enabled);
      say("periodic-message", `${enabled ? "enabled" : "disabled"} ${name}`);
    } catch (exc) {
      say("periodic-message", errorText(exc));
    } finally {
      button.disabled = false;
      this.refresh({ force: true });
    }
  }

  renderTypes(items) {
    const rows = items.map((t) => el("tr", { dataset: { type: t.name } },
      el("td", { className: "mono" }, t.name),
      el("td", {}, t.executor),
      el("td", { className: "num" }, `${t.timeout} s`),
      el("td", { className: "num" }, String(t.max_attempts)),
      el("td", {}, t.queue),
      el("td", { className: "num" }, String(t.instances.length)),
    ));
    fillRows(document.querySelector("#types-table tbody"), rows, "no task types");
    // the submit form offers the types this server accepts
    const list = $("task-types");
    const names = items.filter((t) => t.submittable).map((t) => t.name);
    const have = [...list.options].map((o) => o.value);
    if (names.join() !== have.join()) list.replaceChildren(...names.map((n) => el("option", { value: n })));
  }

  bind() {
    $("search-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.search();
    });
    $("search-next").addEventListener("click", () => this.search({ next: true }));
    $("search-all").addEventListener("click", (e) => {
      const on = e.currentTarget.checked;
      for (const box of document.querySelectorAll("#search-table tbody input[type=checkbox]")) {
        box.checked = on;
        const id = box.closest("tr").dataset.id;
        if (on) this.selected.add(id); else this.selected.delete(id);
      }
    });
    for (const button of document.querySelectorAll("[data-bulk]")) {
      button.addEventListener("click", (e) => this.bulk(button.dataset.bulk, button.dataset.scope, e.currentTarget));
    }
    $("dlq-replay-all").addEventListener("click", async (e) => {
      if (!window.confirm("Replay every dead task?")) return;
      const button = e.currentTarget;
      button.disabled = true;
      try {
        const answer = await api.bulk({ action: "replay", filter: { state: ["dead"] } });
        button.title = `replayed ${answer.touched}`;
      } finally {
        button.disabled = false;
      }
    });
  }
}
