// The execution page: the header, graph, timeline and steps drawn from the server's island,
// then kept live. The execution's stream says *when* something changed; the page then reads
// the execution detail once (one request in flight at a time) and updates only what changed.

import { api, island } from "./api.js";
import { createActions } from "./execution-actions.js";
import { attemptsByNode, foldWaits, formatDuration, LIVE, nodeState, timelineModel } from "./execution-model.js";
import { createSteps } from "./execution-steps.js";
import { createTimeline } from "./execution-timeline.js";
import { drawGraph } from "./graph.js";
import { watchExecution } from "./live.js";

const state = island("execution-state");
let execution = state.execution;
let seq = state.seq;
const waits = new Map();
const attemptOf = new Map();
foldWaits(waits, attemptOf, state.events);

const field = (name) => document.querySelector(`[data-field="${name}"]`);
const announcer = document.getElementById("execution-announce");
const announce = (text) => { announcer.textContent = text; };
const setText = (element, text) => {
  if (element && element.textContent !== text) element.textContent = text;
};

function timeElement(iso) {
  if (!iso) return "–";
  const time = document.createElement("time");
  time.dateTime = iso;
  time.textContent = iso;
  return time;
}

// Duration: the server's value plus the time since it was read, while it runs.
let durationBase = { ms: execution.duration_ms, at: performance.now() };
function tick() {
  const running = execution.started_at && !execution.finished_at;
  const value = running ? durationBase.ms + (performance.now() - durationBase.at) : execution.duration_ms;
  setText(field("duration"), formatDuration(value));
}

function header(previous) {
  const badge = field("status");
  if (badge.textContent !== execution.status.replace("_", " ")) {
    badge.className = `badge status-${execution.status}`;
    badge.textContent = execution.status.replace("_", " ");
    if (previous) announce(`Execution ${execution.status.replace("_", " ")}`);
  }
  setText(field("progress"), `${execution.progress.completed} / ${execution.progress.total}`);
  setText(field("tokens"), String(execution.usage.tokens));
  setText(field("api_calls"), String(execution.usage.api_calls));
  for (const name of ["started_at", "finished_at"]) {
    const cell = field(name);
    if (execution[name] && cell.querySelector("time")?.dateTime !== execution[name]) {
      cell.replaceChildren(timeElement(execution[name]));
    }
  }
  field("blocked").hidden = !execution.blocked_reason;
  setText(field("blocked_reason"), execution.blocked_reason ?? "");
  const error = execution.error;
  field("error").hidden = !error;
  if (error) {
    setText(field("error_message"), error.message ?? "");
    const where = error.node_id ? `at node ${error.node_id}${error.step_index ? `, step ${error.step_index}` : ""}` : "";
    setText(field("error_where"), where);
    const traceback = field("error_traceback");
    traceback.hidden = !error.traceback;
    setText(traceback.querySelector("pre"), error.traceback ?? "");
  }
  tick();
}

const steps = createSteps(document.getElementById("execution-steps"), state.definition);
const timeline = createTimeline(
  document.getElementById("execution-timeline"),
  document.getElementById("timeline-table"),
  { onSelect: (nodeId) => select(nodeId) },
);
let graph = null;

function select(nodeId) {
  graph?.select(nodeId);
  if (!steps.select(nodeId)) announce(`Node ${nodeId} has no step yet`);
}

const actions = createActions({
  executionId: execution.id,
  definition: state.definition,
  announce,
  refresh: () => refresh(),
});

// A node's box shows "type ... status · detail" on one line (about 27 characters): a long
// detail becomes short ("attempt 3" -> "#3") or goes.
function fitted(type, status, detail) {
  const fits = (text) => `${type}${status} · ${text}`.length <= 27;
  if (!detail || fits(detail)) return detail;
  const short = detail.replace(/^attempt (\d+)$/, "#$1");
  return fits(short) ? short : "";
}

function render(previous = null) {
  const byNode = attemptsByNode(execution.steps);
  header(previous);
  document.getElementById("no-steps").hidden = execution.steps.length > 0;
  if (graph) {
    for (const node of state.definition.nodes ?? []) {
      const [status, detail] = nodeState(byNode.get(node.id), execution);
      graph.setStatus(node.id, status, fitted(node.type, status, detail));
    }
  }
  timeline.draw(timelineModel(execution, waits));
  steps.update(execution, byNode);
  actions.update(execution);
}

// One read of the detail at a time; changes that arrive meanwhile cause one more.
let inFlight = null;
let again = false;
async function refresh() {
  if (inFlight) {
    again = true;
    return;
  }
  inFlight = (async () => {
    do {
      again = false;
      try {
        const previous = execution;
        // The summary leaves payloads over 64 KiB to their downloads.
        execution = await api(`executions/${execution.id}?summary=true`);
        durationBase = { ms: execution.duration_ms, at: performance.now() };
        render(previous);
      } catch {
        again = false; // the next event tries again
      }
    } while (again);
  })();
  await inFlight;
  inFlight = null;
}

const STEP_ENDS = new Set(["step.succeeded", "step.failed", "step.skipped", "step.cancelled", "step.interrupted", "step.retrying"]);

// Live-only messages (no seq): a running step's progress on its node, its streamed text in
// its step; a step event that starts or ends an attempt clears them.
function onLive(message) {
  if (message.kind === "step.progress") graph?.setProgress(message.node_id, message);
  else if (message.kind === "step.delta" && typeof message.text === "string") steps.delta(message);
  else if (message.kind === "step" && (message.type === "step.started" || STEP_ENDS.has(message.type))) {
    graph?.setProgress(message.node_id, null);
    if (STEP_ENDS.has(message.type)) steps.endLive(message.node_id);
  }
}

function onMessages(batch) {
  let changed = false;
  const fresh = [];
  for (const message of batch) {
    onLive(message);
    if (message.seq === undefined || message.seq <= seq) continue;
    changed = true;
    if (message.kind === "step") fresh.push(message);
  }
  if (!changed) return;
  seq = Math.max(seq, ...batch.filter((m) => m.seq !== undefined).map((m) => m.seq));
  foldWaits(waits, attemptOf, fresh);
  refresh();
}

function wireTimelineTools() {
  const tools = document.querySelector(".timeline-tools");
  tools.querySelector('[data-zoom="in"]').addEventListener("click", timeline.zoomIn);
  tools.querySelector('[data-zoom="out"]').addEventListener("click", timeline.zoomOut);
  tools.querySelector('[data-zoom="fit"]').addEventListener("click", timeline.fit);
  const toggle = document.getElementById("timeline-as-table");
  toggle.addEventListener("click", () => {
    const table = document.getElementById("timeline-table");
    table.hidden = !table.hidden;
    if (!table.hidden) timeline.showTable();
    toggle.setAttribute("aria-pressed", String(!table.hidden));
    toggle.textContent = table.hidden ? "Show as table" : "Hide the table";
  });
}

async function start() {
  wireTimelineTools();
  render();
  if (!state.terminal) watchExecution(execution.id, onMessages);
  // While it runs, the duration and the open bars (running, waiting) grow each second.
  setInterval(() => {
    if (!LIVE.has(execution.status)) return;
    tick();
    timeline.draw(timelineModel(execution, waits));
  }, 1000);
  // The vendored layout scripts are deferred classic scripts before this module: they have
  // run already (the load event is a fallback).
  if (!window.ELK) await new Promise((r) => window.addEventListener("load", r, { once: true }));
  graph = await drawGraph(document.getElementById("execution-graph"), state.definition, {
    onSelect: select, label: `Graph of ${execution.workflow_name} with each node's status`,
  });
  render();
  const wanted = window.location.hash.match(/^#step-(.+)$/);
  if (wanted) select(decodeURIComponent(wanted[1]));
}

start();
