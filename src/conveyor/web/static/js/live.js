// The one live channel of a page: the workspace's Server-Sent Events stream, shared by every
// component, plus execution streams on demand. It starts after the page's cursor (what the
// page already shows) when the page gives one. Each component names the event types it
// shows, and the stream asks the server for those only (?types=): a page that shows the
// "N running" indicator and the inbox is not sent every step of every execution. Events are
// handed to components once per animation frame (batched), so 50 executions at once never
// make the page jump. When a stream drops, EventSource reconnects with Last-Event-ID
// (nothing is missed); while it is down, counts fall back to polling.

import { api, workspaceApi } from "./api.js";

const eventHandlers = new Set();
const countHandlers = new Set();
const statusHandlers = new Set();
const inboxHandlers = new Set();
let inboxPending = false;
let pending = [];
let scheduled = false;
let source = null;
let pollTimer = null;
let lastCounts = null;
let status = "connecting";
// The event type prefixes the page's components show (null: every event), the union the
// open stream asked for, and the last event id it delivered (a wider stream resumes there).
let wanted = new Set();
let asked = null;
let lastId = null;
let connectPending = false;

function flush() {
  scheduled = false;
  const batch = pending;
  pending = [];
  for (const handler of eventHandlers) handler(batch);
}

function queue(event) {
  pending.push(event);
  if (!scheduled) {
    scheduled = true;
    requestAnimationFrame(flush);
  }
}

function setStatus(next) {
  status = next;
  for (const handler of statusHandlers) handler(next);
}

function setCounts(counts) {
  lastCounts = counts;
  for (const handler of countHandlers) handler(counts);
}

// The inbox counts are the viewer's own (what is addressed to them), so the shared stream
// cannot carry them: a notification.created or task.created event (or a poll, while the
// stream is down) re-reads them, once per animation frame however many arrived.
function refreshInbox() {
  if (inboxPending || inboxHandlers.size === 0) return;
  inboxPending = true;
  requestAnimationFrame(async () => {
    inboxPending = false;
    try {
      const counts = await api("inbox");
      for (const handler of inboxHandlers) handler(counts);
    } catch {
      // offline: the status dot says so; the next event or poll tries again
    }
  });
}

async function poll() {
  refreshInbox();
  try {
    const page = await api("executions?limit=1&stats=true");
    const by = page.stats?.by_status ?? {};
    setCounts({ queued: by.queued ?? 0, running: by.running ?? 0, waiting: by.waiting ?? 0 });
  } catch {
    setStatus("offline");
  }
}

function startPolling() {
  if (pollTimer) return;
  setStatus("polling");
  poll();
  pollTimer = setInterval(poll, 5000);
}

function stopPolling() {
  clearInterval(pollTimer);
  pollTimer = null;
}

export const WORKSPACE_EVENTS = [
  "execution.queued", "execution.started", "execution.running", "execution.waiting",
  "execution.succeeded", "execution.failed", "execution.cancelled", "execution.timed_out",
  "execution.paused", "execution.resumed", "execution.unpaused", "execution.released",
  "execution.cancel_requested", "execution.signal",
  "step.started", "step.succeeded", "step.failed", "step.skipped", "step.retrying",
  "step.waiting", "step.interrupted", "step.cancelled", "step.log",
  "notification.created", "task.created",
];
const INBOX_EVENTS = ["notification.created", "task.created"];
const INBOX_TYPES = ["notification.", "task."];

function query() {
  const params = new URLSearchParams();
  const after = lastId ?? document.body.dataset.liveAfter;
  if (after) params.set("after", after);
  if (wanted !== null) params.set("types", [...wanted].sort().join(","));
  const text = params.toString();
  return text ? `?${text}` : "";
}

function open() {
  connectPending = false;
  if (source && sameTypes(asked, wanted)) return;
  if (source) source.close(); // a component wants more than this stream carries
  asked = wanted === null ? null : new Set(wanted);
  // A live page names the event its content reflects: the stream starts after it, so what
  // happened between the page's render and this connection is replayed, not lost (a
  // reconnect resumes from Last-Event-ID, which the server prefers; a wider stream from
  // the last event this page received).
  source = new EventSource(`${workspaceApi()}/stream${query()}`);
  source.addEventListener("open", () => {
    stopPolling();
    setStatus("live");
  });
  source.addEventListener("error", () => {
    // EventSource retries by itself (resuming with Last-Event-ID); poll meanwhile.
    startPolling();
  });
  source.addEventListener("connected", (e) => setCounts(JSON.parse(e.data).counts));
  source.addEventListener("counts", (e) => setCounts(JSON.parse(e.data)));
  const onEvent = (e) => {
    if (e.lastEventId) lastId = e.lastEventId;
    queue({ type: e.type, ...JSON.parse(e.data) });
  };
  for (const type of WORKSPACE_EVENTS) source.addEventListener(type, onEvent);
  for (const type of INBOX_EVENTS) source.addEventListener(type, refreshInbox);
  source.addEventListener("message", onEvent);
}

function sameTypes(a, b) {
  if (a === null || b === null) return a === b;
  return a.size === b.size && [...b].every((t) => a.has(t));
}

// types: the event type prefixes a component shows ("execution.", "step."), or null for
// every event. Components that register while the page loads share one stream, opened
// once they all have (a microtask later).
function connect(types) {
  if (types === null) wanted = null;
  else if (wanted !== null) for (const t of types) wanted.add(t);
  if (connectPending) return;
  connectPending = true;
  queueMicrotask(open);
}

// fn(batch): the workspace's events of the given type prefixes (default: every event),
// batched per animation frame; a handler may still see other types another component
// asked for.
export function onWorkspaceEvents(fn, types = null) {
  eventHandlers.add(fn);
  connect(types);
  return () => eventHandlers.delete(fn);
}

// fn({queued, running, waiting}) on every change of the live counts.
export function onCounts(fn) {
  countHandlers.add(fn);
  connect([]);
  if (lastCounts) fn(lastCounts);
  return () => countHandlers.delete(fn);
}

// fn({unread, open_tasks}) whenever the viewer's inbox may have changed.
export function onInbox(fn) {
  inboxHandlers.add(fn);
  connect(INBOX_TYPES);
  return () => inboxHandlers.delete(fn);
}

export function onStatus(fn) {
  statusHandlers.add(fn);
  fn(status);
  return () => statusHandlers.delete(fn);
}

export const LIVE_ONLY = ["step.progress", "step.delta"];

// One execution's stream: fn(batch) with its messages (step, progress, complete, error, the
// raw execution events and the live-only step.progress / step.delta), batched per animation frame; returns a function that closes it.
export function watchExecution(executionId, fn) {
  const stream = new EventSource(`${workspaceApi()}/executions/${executionId}/stream`);
  let batch = [];
  let frame = false;
  let done = false;
  const push = (e) => {
    batch.push({ kind: e.type, ...JSON.parse(e.data) });
    if (e.type === "complete") {
      done = true;
      stream.close();
    }
    if (!frame) {
      frame = true;
      requestAnimationFrame(() => {
        frame = false;
        const items = batch;
        batch = [];
        fn(items);
      });
    }
  };
  // step.progress and step.delta are live-only (no id): a step's progress and streamed text.
  for (const kind of ["connected", "step", "progress", "complete", "error", ...LIVE_ONLY, ...WORKSPACE_EVENTS]) {
    stream.addEventListener(kind, push);
  }
  stream.addEventListener("message", push);
  return () => {
    if (!done) stream.close();
  };
}
