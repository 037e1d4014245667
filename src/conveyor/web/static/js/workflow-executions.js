// Recent executions of one workflow and its statistics, kept live from the workspace
// stream: a status cell changes when its execution's event arrives; a new execution of this
// workflow, or one that ends, costs one list request per batch of events (the stream's
// events do not say which workflow they belong to) plus one for the statistics, and brings
// every row's duration and step counts up to date (counting step events instead would count
// twice those the list already had).

import { api, workspace } from "./api.js";
import { onWorkspaceEvents } from "./live.js";
import { duration, element, percent, timeElement } from "./workflow-format.js";

const KEEP = 20;
const STATUS_OF = {
  "execution.queued": "queued", "execution.started": "running", "execution.running": "running",
  "execution.resumed": "running", "execution.unpaused": "running", "execution.released": "queued",
  "execution.waiting": "waiting", "execution.succeeded": "succeeded", "execution.failed": "failed",
  "execution.cancelled": "cancelled", "execution.timed_out": "timed_out",
};
const TERMINAL = new Set(["succeeded", "failed", "cancelled", "timed_out"]);

function badge(status) {
  return element("span", { class: `badge status-${status}`, text: status });
}

// The same row as partials/workflow-execution-row.html.
function row(e) {
  const tr = element("tr", { "data-execution-id": e.id });
  tr.append(
    element("th", { scope: "row" }, element("a", { href: `/w/${workspace()}/executions/${e.id}` }, element("code", { text: e.id.slice(0, 12) }))),
    element("td", { "data-cell": "status" }, badge(e.status)),
    element("td", { text: e.trigger_type }),
    element("td", {}, timeElement(e.created_at)),
    element("td", { "data-cell": "duration", text: duration(e.duration_ms) }),
    element("td", { "data-cell": "steps", text: `${e.progress.completed} / ${e.progress.total}` }),
  );
  return tr;
}

function setText(cell, text) {
  if (cell && cell.textContent !== text) cell.textContent = text;
}

function setStatus(tr, status) {
  const cell = tr.querySelector('[data-cell="status"]');
  if (cell.textContent !== status) cell.replaceChildren(badge(status));
}

function update(tr, e) {
  setStatus(tr, e.status);
  setText(tr.querySelector('[data-cell="duration"]'), duration(e.duration_ms));
  setText(tr.querySelector('[data-cell="steps"]'), `${e.progress.completed} / ${e.progress.total}`);
}

function renderStats(section, stats) {
  const values = {
    executions: String(stats.executions),
    success_rate: percent(stats.success_rate),
    avg_ms: duration(stats.durations?.avg_ms),
    p95_ms: duration(stats.durations?.p95_ms),
  };
  for (const [key, text] of Object.entries(values)) setText(section.querySelector(`[data-stat="${key}"]`), text);
  const last = section.querySelector('[data-stat="last_executed_at"]');
  if (stats.last_executed_at && last.querySelector("time")?.getAttribute("datetime") !== stats.last_executed_at) {
    last.replaceChildren(timeElement(stats.last_executed_at));
  }
}

export function initExecutions(run) {
  const table = document.getElementById("recent-executions");
  const empty = document.getElementById("recent-empty");
  const stats = document.getElementById("workflow-stats");
  if (!table) return;
  const body = table.tBodies[0];
  const rows = () => new Map([...body.rows].map((tr) => [tr.dataset.executionId, tr]));
  const base = `workflows/${encodeURIComponent(run.workflow)}`;
  let reading = Promise.resolve();

  async function reconcile() {
    const page = await api(`${base}/executions?limit=${KEEP}&stats=false`);
    const known = rows();
    for (const e of [...page.items].reverse()) {
      const tr = known.get(e.id);
      if (tr) update(tr, e);
      else body.prepend(row(e));
    }
    while (body.rows.length > KEEP) body.rows[body.rows.length - 1].remove();
    empty.hidden = body.rows.length > 0;
    if (stats) renderStats(stats, await api(`${base}/stats`));
  }

  onWorkspaceEvents((batch) => {
    const known = rows();
    let unknownQueued = false;
    let ended = false;
    for (const event of batch) {
      if (event.workflow_id && event.workflow_id !== run.workflow_id) continue;
      const tr = known.get(event.execution_id);
      if (!tr) {
        unknownQueued ||= event.type === "execution.queued";
        continue;
      }
      const status = STATUS_OF[event.type];
      if (status) setStatus(tr, status);
      if (TERMINAL.has(status)) ended = true;
    }
    if (unknownQueued || ended) {
      // One read at a time, in order: a slow answer never overwrites a newer one.
      reading = reading.then(() => reconcile()).catch(() => {});
    }
  }, ["execution."]);
}
