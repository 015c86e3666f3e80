// Server-Sent Events over fetch() + ReadableStream.
//
// EventSource cannot send an Authorization header, so the stream is read with fetch and the
// SSE framing is parsed here (https://html.spec.whatwg.org/multipage/server-sent-events.html):
// lines end in CRLF, LF or CR; "field: value" (one leading space dropped); `data` lines join
// with "\n"; a blank line dispatches; lines starting with ":" are comments (pings).
// On a drop the stream reconnects with exponential backoff and jitter; a 401/403 stops it
// until restart() (a new token), and a silent stream is dropped by a watchdog.

/** Incremental SSE parser: push(text) returns the events completed by that text. */
export class SseParser {
  constructor() {
    this.buffer = "";
    this.type = "";
    this.data = [];
  }

  push(text) {
    this.buffer += text;
    const events = [];
    let start = 0;
    for (;;) {
      const match = /\r\n|\r|\n/g;
      match.lastIndex = start;
      const found = match.exec(this.buffer);
      if (!found) break;
      // a CR at the very end may be the first half of a CRLF split across chunks
      if (found[0] === "\r" && found.index === this.buffer.length - 1) break;
      this.line(this.buffer.slice(start, found.index), events);
      start = found.index + found[0].length;
    }
    this.buffer = this.buffer.slice(start);
    return events;
  }

  line(line, events) {
    if (line === "") {
      if (this.data.length > 0) events.push({ type: this.type || "message", data: this.data.join("\n") });
      this.type = "";
      this.data = [];
      return;
    }
    if (line.startsWith(":")) return; // a comment: the server's keep-alive ping
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "event") this.type = value;
    else if (field === "data") this.data.push(value);
    // `id` and `retry` are not used by this server; unknown fields are ignored per the spec
  }
}

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15_000;
const SILENCE_MS = 45_000; // the server pings every 15 s

/**
 * A self-reconnecting event stream.
 * onEvent(type, data) gets each event with its JSON data decoded;
 * onState(state, detail) gets "connecting" | "live" | "retrying" (detail: delay ms and
 * reason) | "unauthorized" (detail: the server's message; no retry until restart()).
 */
export class EventStream {
  constructor(url, { headers, onEvent, onState, onUnauthorized }) {
    this.url = url;
    this.headers = headers;
    this.onEvent = onEvent;
    this.onState = onState;
    this.onUnauthorized = onUnauthorized ?? (() => {});
    this.failures = 0;
    this.controller = null;
    this.timer = null;
    this.generation = 0;
    this.state = "stopped";
  }

  start() {
    this.stop();
    const generation = ++this.generation;
    this.run(generation);
  }

  /** Stop now and connect again at once (e.g. after the token changed). */
  restart() {
    this.failures = 0;
    this.start();
  }

  /** Report a state change (repeats of "live" are not reported). */
  setState(state, detail) {
    if (state === "live" && this.state === "live") return;
    this.state = state;
    this.onState(state, detail);
  }

  stop() {
    this.generation++;
    clearTimeout(this.timer);
    this.timer = null;
    if (this.controller) this.controller.abort();
    this.controller = null;
  }

  async run(generation) {
    const controller = new AbortController();
    this.controller = controller;
    this.setState("connecting");
    let reason = "";
    let watchdog = null;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => controller.abort(), SILENCE_MS);
    };
    try {
      arm();
      const response = await fetch(this.url, {
        headers: { Accept: "text/event-stream", ...this.headers() },
        cache: "no-store",
        credentials: "same-origin",
        signal: controller.signal,
      });
      if (response.status === 401 || response.status === 403) {
        const message = await errorMessage(response);
        if (generation !== this.generation) return;
        this.setState("unauthorized", message);
        this.onUnauthorized(message);
        return;
      }
      if (!response.ok || !response.body) {
        reason = `HTTP ${response.status}`;
        await response.body?.cancel();
      } else {
        await this.read(response.body, generation, arm);
        reason = "the stream ended";
      }
    } catch (exc) {
      reason = controller.signal.aborted ? "no data for a while" : String(exc.message ?? exc);
    } finally {
      clearTimeout(watchdog);
    }
    if (generation !== this.generation) return; // stopped or restarted meanwhile
    this.failures += 1;
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** (this.failures - 1));
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.setState("retrying", { delay, reason });
    this.timer = setTimeout(() => {
      if (generation === this.generation) this.run(generation);
    }, delay);
  }

  async read(body, generation, arm) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    const parser = new SseParser();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || generation !== this.generation) return;
        arm();
        for (const event of parser.push(value)) {
          let data;
          try {
            data = JSON.parse(event.data);
          } catch {
            continue; // not JSON: not one of ours
          }
          this.failures = 0;
          this.setState("live");
          this.onEvent(event.type, data);
        }
      }
    } finally {
      reader.releaseLock();
    }
  }
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    return body?.error?.message ?? `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}
