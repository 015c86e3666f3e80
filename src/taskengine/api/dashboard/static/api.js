// The REST client: same-origin fetch with the bearer token, errors as ApiError.
//
// Every request is same-origin (the server refuses cross-site state changes), carries
// `Authorization: Bearer …` when a token is set, and turns the server's error body
// {"error": {"code", "message"}} into an ApiError. A 401 is also announced on `auth`
// so the page can ask for a token.

const TOKEN_KEY = "taskengine.token";

/** Fires "unauthorized" (detail: the server's message) whenever a request gets a 401. */
export const auth = new EventTarget();

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) ?? "";
}

export function setToken(token) {
  const value = token.trim();
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** Headers every request sends: the bearer token when one is set. */
export function authHeaders() {
  const token = getToken();
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** Announce a 401 (the page shows its token prompt). */
export function unauthorized(message) {
  auth.dispatchEvent(new CustomEvent("unauthorized", { detail: message }));
}

/** One JSON request; resolves to the decoded body, rejects with an ApiError. */
export async function request(method, path, body) {
  const headers = { Accept: "application/json", ...authHeaders() };
  const init = { method, headers, mode: "same-origin", credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (exc) {
    throw new ApiError(0, "network_error", `cannot reach the server: ${exc.message}`);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const error = data && typeof data.error === "object" && data.error ? data.error : {};
    const failure = new ApiError(
      response.status,
      typeof error.code === "string" ? error.code : `http_${response.status}`,
      typeof error.message === "string" ? error.message : `HTTP ${response.status}`,
    );
    if (response.status === 401) unauthorized(failure.message);
    throw failure;
  }
  return data;
}

const task = (id) => `/api/tasks/${encodeURIComponent(id)}`;
const workflow = (id) => `/api/workflows/${encodeURIComponent(id)}`;

export const api = {
  metrics: () => request("GET", "/api/metrics"),
  history: (range) => request("GET", `/api/metrics/history?range=${encodeURIComponent(range)}`),
  workers: () => request("GET", "/api/workers"),
  recentTasks: (limit = 20) => request("GET", `/api/tasks?limit=${limit}`),
  deadLetters: (limit = 20, cursor = null) =>
    request("GET", `/api/dead-letters?limit=${limit}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`),
  getTask: (id) => request("GET", task(id)),
  cancelTask: (id) => request("DELETE", task(id)),
  retryTask: (id) => request("POST", `${task(id)}/retry`),
  submitTask: (body) => request("POST", "/api/tasks", body),
  getWorkflow: (id) => request("GET", workflow(id)),
  cancelWorkflow: (id) => request("POST", `${workflow(id)}/cancel`),
  replayWorkflow: (id) => request("POST", `${workflow(id)}/replay`),
  // the operator's views (ADR 0036)
  me: () => request("GET", "/api/me"),
  instances: () => request("GET", "/api/instances"),
  control: (instance, body) => request("POST", `/api/instances/${encodeURIComponent(instance)}/control`, body),
  queues: () => request("GET", "/api/queues"),
  pauseQueue: (name) => request("POST", `/api/queues/${encodeURIComponent(name)}/pause`),
  resumeQueue: (name) => request("POST", `/api/queues/${encodeURIComponent(name)}/resume`),
  purgeQueue: (name) => request("POST", `/api/queues/${encodeURIComponent(name)}/purge`, { confirm: true }),
  searchTasks: (query) => request("GET", `/api/tasks?${query}`),
  bulk: (body) => request("POST", "/api/bulk", body),
  scheduled: (limit = 20) => request("GET", `/api/scheduled?limit=${limit}`),
  retrying: (limit = 20) => request("GET", `/api/retrying?limit=${limit}`),
  periodic: () => request("GET", "/api/periodic"),
  setPeriodic: (name, enabled) => request("POST", `/api/periodic/${encodeURIComponent(name)}/${enabled ? "enable" : "disable"}`),
  types: () => request("GET", "/api/types"),
  limits: () => request("GET", "/api/limits"),
};
