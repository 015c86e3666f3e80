// Tasks: the recent-tasks and dead-letter lists, the task detail dialog (cancel, replay) and
// the submit form. Every change goes through api.js (same-origin fetch with the token).

import { api } from "./api.js";
import { ago, badge, el, fillRows, json, seconds, shortId, when } from "./format.js";
import { drawWorkflow } from "./graph.js";

const LIST_LIMIT = 20;
const REFRESH_MS = 2000; // the lists are fetched at most this often
const FOLLOW_MS = 1000; // an open, unfinished task is re-read this often
const ACTIVE = new Set(["blocked", "queued", "running"]);
const REPLAYABLE = new Set(["dead", "cancelled"]);

/** Example payloads for the built-in types, shown when the type changes. */
const EXAMPLES = {
  "cpu.primes": { limit: 100000 },
  "cpu.fibonacci": { n: 30 },
  "cpu.sha256": { data: "hello", rounds: 10 },
  "io.http": { url: "https://example.com/" },
  "io.file": { op: "list", path: "." },
  "io.sqlite": { database: "data.db", sql: "select 1" },
  "time.sleep": { seconds: 1 },
  "time.batch": { items: [1, 2, 3], chunk_size: 1, delay_per_chunk: 0.5 },
};

/** "3/8 · note": a progress report as text (the total 0 means unknown). */
function progressText(p) {
  const count = p.total > 0 ? `${p.done}/${p.total}` : `${p.done} done`;
  const share = p.fraction === null || p.fraction === undefined ? "" : ` (${Math.round(p.fraction * 100)}%)`;
  return p.note ? `${count}${share} · ${p.note}` : `${count}${share}`;
}

/** A <progress> bar with its text (indeterminate when the total is unknown). */
function progressBar(p) {
  const bar = el("progress", { max: 1 });
  if (p.fraction !== null && p.fraction !== undefined) bar.value = p.fraction;
  return bar;
}

/** The progress cell of a task row: a bar while it runs, the last report's text after. */
function progressCell(task) {
  const p = task.progress;
  const cell = el("td", { className: "progress-cell" });
  fillProgress(cell, p, task.state);
  return cell;
}

function fillProgress(cell, p, state) {
  if (!p) {
    cell.replaceChildren("—");
    cell.title = "";
    return;
  }
  const count = progressText({ ...p, note: null }); // the note only in the tooltip: rows stay short
  cell.title = `${progressText(p)} (attempt ${p.attempt}, ${when(p.at)})`;
  cell.replaceChildren(...(state === "running" ? [progressBar(p), count] : [count]));
}

function errorText(exc) {
  return exc && exc.code ? `${exc.code}: ${exc.message}` : String(exc?.message ?? exc);
}

export class TaskViews {
  constructor() {
    this.recentBody = document.querySelector("#recent-table tbody");
    this.dlqBody = document.querySelector("#dlq-table tbody");
    this.dlqCursor = null; // the cursor of the dead-letter page shown (null: the first)
    this.dlqNext = null; // the next page's cursor, from the last read
    this.dialog = document.getElementById("task-dialog");
    this.lastRefresh = 0;
    this.inFlight = false;
    this.again = false;
    this.detailId = null;
    this.detailSeq = 0;
    this.followTimer = null;
    this.openTracebacks = new Set(); // "id:attempt" of the tracebacks the user opened
    this.bindDialog();
    this.bindSubmit();
  }

  /** Re-read both lists unless that happened less than REFRESH_MS ago (or is under way). */
  async refresh({ force = false } = {}) {
    const now = Date.now();
    if (this.inFlight) {
      this.again ||= force; // an action happened meanwhile: read once more when this ends
      return;
    }
    if (!force && now - this.lastRefresh < REFRESH_MS) return;
    this.inFlight = true;
    this.lastRefresh = now;
    try {
      const cursor = this.dlqCursor;
      const [recent, dead] = await Promise.allSettled([api.recentTasks(LIST_LIMIT), api.deadLetters(LIST_LIMIT, cursor)]);
      if (recent.status === "fulfilled") this.renderRecent(recent.value.items);
      // a page read before the user paged is stale: the next read shows the page asked for
      if (dead.status === "fulfilled" && cursor === this.dlqCursor) {
        this.renderDead(dead.value.items);
        this.dlqNext = dead.value.next_cursor ?? null;
        document.getElementById("dlq-next").hidden = !this.dlqNext;
        document.getElementById("dlq-first").hidden = this.dlqCursor === null;
      }
    } finally {
      this.inFlight = false;
    }
    if (this.again) {
      this.again = false;
      await this.refresh({ force: true });
    }
  }

  renderRecent(items) {
    const now = Date.now();
    const rows = items.map((t) =>
      el("tr", { dataset: { id: t.id, state: t.state }, tabIndex: 0, onclick: () => this.open(t.id),
        onkeydown: (e) => { if (e.key === "Enter") this.open(t.id); } },
        el("td", { className: "mono", title: t.id }, shortId(t.id)),
        el("td", { className: "mono" }, t.type),
        el("td", {}, t.priority),
        el("td", {}, badge(t.state)),
        progressCell(t),
        el("td", { className: "num" }, `${t.attempt}/${t.max_attempts}`),
        el("td", { title: when(t.created_at) }, ago(t.created_at, now)),
      ),
    );
    fillRows(this.recentBody, rows, "no tasks yet");
  }

  /** The live feed's progress by task id: update the running rows and the open dialog. */
  applyProgress(progress) {
    if (!progress) return;
    for (const [id, p] of Object.entries(progress)) {
      const row = this.recentBody.querySelector(`tr[data-id="${CSS.escape(id)}"]`);
      const cell = row?.querySelector(".progress-cell");
      if (cell && row.dataset.state === "running") fillProgress(cell, p, "running");
      if (this.detailId === id) this.showProgress(p);
    }
  }

  showProgress(p) {
    const box = document.getElementById("detail-progress");
    box.hidden = !p;
    if (!p) return;
    const bar = document.getElementById("detail-progress-bar");
    if (p.fraction === null || p.fraction === undefined) bar.removeAttribute("value");
    else bar.value = p.fraction;
    document.getElementById("detail-progress-text").textContent =
      `${progressText(p)} · attempt ${p.attempt}, ${when(p.at)}`;
  }

  renderDead(items) {
    const rows = items.map((t) => {
      const error = t.result?.error ?? "";
      return el("tr", { dataset: { id: t.id } },
        el("td", { className: "mono" },
          el("button", { type: "button", className: "link", title: t.id, onclick: () => this.open(t.id) }, shortId(t.id))),
        el("td", { className: "mono" }, t.type),
        el("td", { className: "error-cell", title: error }, error || "—"),
        el("td", { title: when(t.finished_at ?? t.updated_at) }, ago(t.finished_at ?? t.updated_at)),
        el("td", {}, el("button", { type: "button", className: "small replay", onclick: (e) => this.replay(t.id, e.currentTarget) }, "Replay")),
      );
    });
    fillRows(this.dlqBody, rows, this.dlqCursor === null ? "no dead letters" : "no more dead letters");
  }

  async replay(id, button) {
    if (button) button.disabled = true;
    try {
      await api.retryTask(id);
      this.dlqBody.querySelector(`tr[data-id="${CSS.escape(id)}"]`)?.remove();
      if (this.detailId === id) await this.showDetail(id);
    } catch (exc) {
      if (button) {
        button.disabled = false;
        button.title = errorText(exc);
      }
      if (this.detailId === id) this.message(errorText(exc), true);
    }
    await this.refresh({ force: true });
  }

  // -- detail dialog ----------------------------------------------------------------------

  /** Page the dead letters: the next page (keyset cursor), or back to the first. */
  pageDead(cursor) {
    this.dlqCursor = cursor;
    this.dlqBody.scrollIntoView({ block: "nearest" });
    this.refresh({ force: true });
  }

  bindDialog() {
    document.getElementById("dlq-next").addEventListener("click", () => {
      if (this.dlqNext) this.pageDead(this.dlqNext);
    });
    document.getElementById("dlq-first").addEventListener("click", () => this.pageDead(null));
    document.getElementById("detail-close").addEventListener("click", () => this.dialog.close());
    this.dialog.addEventListener("close", () => {
      this.detailId = null;
      clearTimeout(this.followTimer);
    });
    document.getElementById("detail-cancel").addEventListener("click", () => this.cancel());
    document.getElementById("detail-replay").addEventListener("click", () => {
      if (this.detailId) this.replay(this.detailId, document.getElementById("detail-replay"));
    });
    document.getElementById("wf-cancel").addEventListener("click", () => this.workflowAction("cancel"));
    document.getElementById("wf-replay").addEventListener("click", () => this.workflowAction("replay"));
  }

  async showWorkflow(task) {
    const section = document.getElementById("detail-workflow");
    this.workflowId = task.workflow ?? null;
    if (!task.workflow) {
      section.hidden = true;
      return;
    }
    let workflow;
    try {
      workflow = await api.getWorkflow(task.workflow);
    } catch (exc) {
      this.message(errorText(exc), true);
      return;
    }
    if (this.detailId !== task.id) return;
    section.hidden = false;
    document.getElementById("wf-state").replaceWith(Object.assign(badge(workflow.state), { id: "wf-state" }));
    document.getElementById("wf-id").textContent = `${workflow.id} · ${workflow.nodes.length} tasks`;
    drawWorkflow(document.getElementById("wf-graph"), workflow, task.id, (id) => this.open(id));
    document.getElementById("wf-cancel").hidden = workflow.state !== "running";
    document.getElementById("wf-replay").hidden = !["failed", "cancelled"].includes(workflow.state);
  }

  async workflowAction(kind) {
    const id = this.workflowId;
    if (!id) return;
    try {
      const answer = kind === "cancel" ? await api.cancelWorkflow(id) : await api.replayWorkflow(id);
      const done = Object.values(answer.tasks).filter((a) => a === "cancelled" || a === "requested" || a === "replayed");
      this.message(`${kind === "cancel" ? "Cancelled" : "Replayed"} ${done.length} of the workflow's tasks.`);
    } catch (exc) {
      this.message(errorText(exc), true);
    }
    if (this.detailId) await this.showDetail(this.detailId);
    await this.refresh({ force: true });
  }

  async open(id) {
    this.detailId = id;
    this.message("");
    document.getElementById("detail-title").textContent = `Task ${id}`;
    if (!this.dialog.open) this.dialog.showModal();
    await this.showDetail(id);
  }

  async showDetail(id) {
    clearTimeout(this.followTimer);
    const seq = ++this.detailSeq; // only the newest read may render (an older one is stale)
    let task;
    try {
      task = await api.getTask(id);
    } catch (exc) {
      if (seq === this.detailSeq) this.message(errorText(exc), true);
      return;
    }
    if (this.detailId !== id || seq !== this.detailSeq) return;
    document.getElementById("detail-title").textContent = `${task.type} · ${task.id}`;
    const state = document.getElementById("detail-state");
    state.replaceWith(Object.assign(badge(task.state), { id: "detail-state" }));
    const fields = [
      ["priority", task.priority], ["queue", task.queue],
      ["attempt", `${task.attempt} of ${task.max_attempts}`], ["timeout", seconds(task.timeout)],
      ["created", when(task.created_at)], ["run at", when(task.run_at)],
      ["started", when(task.started_at)], ["finished", when(task.finished_at)],
      ["worker", task.worker_id ?? "—"], ["idempotency key", task.idempotency_key ?? "—"],
    ];
    if (task.cancel_requested) fields.push(["cancel", "requested"]);
    if (task.depends_on?.length) {
      fields.push(["depends on", task.depends_on.join(" ")]);
      fields.push(["on parent failure", task.on_parent_failure]);
    }
    if (task.state === "blocked") fields.push(["waiting for", `${task.waiting} parent(s)`]);
    document.getElementById("detail-fields").replaceChildren(
      ...fields.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]),
    );
    document.getElementById("detail-payload").textContent = json(task.payload);
    document.getElementById("detail-result").textContent = task.result ? json(task.result) : "no result yet";
    this.showProgress(task.progress);
    const rows = (task.history ?? []).flatMap((h) => {
      const line = el("tr", { dataset: { attempt: h.attempt } },
        el("td", { className: "num" }, h.attempt),
        el("td", {}, badge(h.status)),
        el("td", { className: "mono" }, h.worker_id ?? "—"),
        el("td", {}, when(h.finished_at)),
        el("td", { className: "num" }, seconds(h.duration)),
        el("td", { className: "error-cell", title: h.error ?? "" }, h.error ?? ""),
      );
      if (!h.traceback) return [line];
      // kept open across the follow-up reads of a running task
      const open = this.openTracebacks.has(`${task.id}:${h.attempt}`);
      const details = el("details", { open },
        el("summary", {}, `traceback of attempt ${h.attempt}`),
        el("pre", { className: "traceback" }, h.traceback));
      details.addEventListener("toggle", () => {
        const key = `${task.id}:${h.attempt}`;
        if (details.open) this.openTracebacks.add(key);
        else this.openTracebacks.delete(key);
      });
      return [line, el("tr", { className: "traceback-row", dataset: { attempt: h.attempt } },
        el("td", { colSpan: 6 }, details))];
    });
    fillRows(document.querySelector("#detail-history tbody"), rows, "no attempt has finished");
    document.getElementById("detail-cancel").hidden = !ACTIVE.has(task.state);
    document.getElementById("detail-cancel").disabled = task.cancel_requested;
    document.getElementById("detail-replay").hidden = !REPLAYABLE.has(task.state);
    document.getElementById("detail-replay").disabled = false;
    await this.showWorkflow(task);
    if (ACTIVE.has(task.state)) {
      this.followTimer = setTimeout(() => {
        if (this.detailId === id && this.dialog.open) this.showDetail(id);
      }, FOLLOW_MS);
    }
  }

  async cancel() {
    const id = this.detailId;
    if (!id) return;
    const button = document.getElementById("detail-cancel");
    button.disabled = true;
    try {
      const answer = await api.cancelTask(id);
      this.message(answer.result === "requested" ? "Cancel requested: the worker is stopping it." : "Cancelled.");
    } catch (exc) {
      this.message(errorText(exc), true);
      button.disabled = false;
    }
    await this.showDetail(id);
    await this.refresh({ force: true });
  }

  message(text, isError = false) {
    const out = document.getElementById("detail-message");
    out.textContent = text;
    out.classList.toggle("error", isError);
  }

  // -- submit form ------------------------------------------------------------------------

  bindSubmit() {
    const form = document.getElementById("submit-form");
    const type = document.getElementById("submit-type");
    const payload = document.getElementById("submit-payload");
    let example = payload.value;
    type.addEventListener("input", () => {
      const next = EXAMPLES[type.value.trim()];
      // replace the payload only while it is an untouched example
      if (next && (payload.value.trim() === "" || payload.value === example)) {
        example = JSON.stringify(next);
        payload.value = example;
      }
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
  }

  async submit() {
    const out = document.getElementById("submit-result");
    out.classList.remove("error");
    const body = { type: document.getElementById("submit-type").value.trim() };
    const text = document.getElementById("submit-payload").value.trim();
    if (text) {
      try {
        body.payload = JSON.parse(text);
      } catch (exc) {
        out.classList.add("error");
        out.textContent = `the payload is not JSON: ${exc.message}`;
        return;
      }
    }
    body.priority = document.getElementById("submit-priority").value;
    const delay = Number(document.getElementById("submit-delay").value || 0);
    if (delay > 0) body.delay = delay;
    try {
      const answer = await api.submitTask(body);
      out.replaceChildren(
        answer.created ? "Submitted " : "Already submitted: ",
        el("button", { type: "button", className: "link mono", onclick: () => this.open(answer.id) }, answer.id),
      );
      await this.refresh({ force: true });
    } catch (exc) {
      out.classList.add("error");
      out.textContent = errorText(exc);
    }
  }
}
