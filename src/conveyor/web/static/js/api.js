// Calls to the REST API from the pages: same-origin, the session cookie, the CSRF header,
// and problem+json errors as exceptions that carry the problem.

const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content ?? "";

export const workspaceApi = () => document.body.dataset.api;
export const workspace = () => document.body.dataset.workspace;
export const canWrite = () => document.body.dataset.canWrite === "true";

export class ProblemError extends Error {
  constructor(problem, status) {
    super(problem?.detail || problem?.title || `request failed (${status})`);
    this.problem = problem ?? {};
    this.status = status;
  }
  // Each problem with a path, as {path, message} (validation errors list several).
  get fieldErrors() {
    return this.problem.errors ?? [];
  }
}

export async function api(path, { method = "GET", body, signal } = {}) {
  const url = path.startsWith("/") ? path : `${workspaceApi()}/${path}`;
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = csrf();
  const response = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
    signal,
  });
  const text = await response.text();
  const data = text ? safeJson(text) : null;
  if (!response.ok) throw new ProblemError(data, response.status);
  return data;
}

function safeJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return { detail: text };
  }
}

// The JSON of a <script type="application/json" id="..."> island rendered by the server.
export function island(id) {
  const element = document.getElementById(id);
  return element ? JSON.parse(element.textContent) : null;
}
