// The monitor's live parts: the big "N running" (onCounts), the counts by status for the
// page's filter, and the table. An event about a visible execution refreshes that row's
// changed cells only; a new execution matching the filter is added at the top on the first
// page, or counted behind "N new — show" on the others. Running durations tick each second.
// Refreshes are coalesced: one request at a time, whatever the rate of events.

import { api, island } from "./api.js";
import { onCounts, onWorkspaceEvents } from "./live.js";

const monitor = island("executions-monitor");
const body = document.getElementById("executions-body");
const MAX_IDS = 50; // the rows route answers at most this many ids at once
const COALESCE_MS = 150;

const dirty = new Set();
const unseen = new Set();
let lookForNew = false;
let countsDue = false;
let busy = false;
let timer = null;

const rowOf = (id) => body.querySelector(`tr[data-execution-id="${CSS.escape(id)}"]`);

function runningNumber() {
  const box = document.getElementById("monitor-running");
  const number = box.querySelector("[data-monitor-running]");
  onCounts((counts) => {
    const running = String(counts.running ?? 0);
    if (number.textContent !== running) number.textContent = running;
    box.dataset.count = running;
    box.classList.toggle("active", (counts.running ?? 0) > 0);
  });
}

function parseRows(html) {
  const template = document.createElement("template");
  template.innerHTML = html;
  return [...template.content.querySelectorAll("tr[data-execution-id]")];
}

async function rows(query) {
  const response = await fetch(`${monitor.rows_url}?${query}`, { credentials: "same-origin" });
  if (!response.ok) throw new Error(`rows: ${response.status}`);
  return parseRows(await response.text());
}

// Copy what changed from a freshly rendered row into the row on the page, cell by cell.
function patch(row, fresh) {
  row.dataset.status = fresh.dataset.status;
  for (const cell of fresh.querySelectorAll("[data-cell]")) {
    const current = row.querySelector(`[data-cell="${cell.dataset.cell}"]`);
    if (!current || current.dataset.rendered === cell.innerHTML) continue;
    current.innerHTML = cell.innerHTML;
    current.dataset.rendered = cell.innerHTML;
    if (cell.dataset.runningSince) current.dataset.runningSince = cell.dataset.runningSince;
    else delete current.dataset.runningSince;
  }
}

async function refreshRows(ids) {
  const query = new URLSearchParams(ids.map((id) => ["id", id]));
  for (const fresh of await rows(query.toString())) {
    const row = rowOf(fresh.dataset.executionId);
    if (row) patch(row, fresh);
  }
}

// On the first page, the top row is the newest; an older page was told by the server.
function newest() {
  const top = body.querySelector("tr[data-execution-id]");
  if (monitor.first_page) return top ? Date.parse(top.dataset.createdAt) : -Infinity;
  return monitor.newest ? Date.parse(monitor.newest) : -Infinity;
}

// The first page of the filter, as the server selects it: rows newer than the top one are new.
async function findNew() {
  const since = newest();
  const found = (await rows(monitor.page_query)).filter(
    (tr) => !rowOf(tr.dataset.executionId) && Date.parse(tr.dataset.createdAt) > since,
  );
  if (!found.length) return;
  if (monitor.first_page) {
    body.prepend(...found);
    for (const tr of found) tr.classList.add("arrived");
    document.getElementById("executions-empty").hidden = true;
    document.dispatchEvent(new CustomEvent("executions:rows"));
    return;
  }
  for (const tr of found) unseen.add(tr.dataset.executionId);
  const note = document.getElementById("new-rows");
  note.querySelector("[data-new-count]").textContent = String(unseen.size);
  note.hidden = false;
}

async function refreshCounts() {
  const counts = await api(`executions/counts?${monitor.api_query}`);
  const set = (element, value) => {
    if (element && element.textContent !== String(value)) element.textContent = String(value);
  };
  set(document.querySelector("[data-count-total]"), counts.total);
  for (const element of document.querySelectorAll("[data-count-status]")) {
    set(element, counts.by_status[element.dataset.countStatus] ?? 0);
  }
}

async function refresh() {
  timer = null;
  busy = true;
  const ids = [...dirty].slice(0, MAX_IDS);
  for (const id of ids) dirty.delete(id);
  const work = [];
  if (ids.length) work.push(refreshRows(ids));
  if (lookForNew) work.push(findNew());
  if (countsDue) work.push(refreshCounts());
  lookForNew = false;
  countsDue = false;
  // Live updates are best effort: a failed refresh is retried by the next event.
  await Promise.allSettled(work);
  busy = false;
  if (dirty.size || lookForNew || countsDue) schedule();
}

function schedule() {
  if (!busy && !timer) timer = setTimeout(refresh, COALESCE_MS);
}

function onEvents(batch) {
  for (const event of batch) {
    const id = event.execution_id;
    if (!id) continue;
    const execution = event.type.startsWith("execution.");
    if (rowOf(id)) dirty.add(id);
    else if (execution && !unseen.has(id)) lookForNew = true;
    if (execution) countsDue = true;
  }
  if (dirty.size || lookForNew || countsDue) schedule();
}

// After a bulk action: the whole page of rows again (once, on purpose), and the counts.
async function reload() {
  const query = new URLSearchParams(monitor.page_query);
  if (monitor.cursor) query.set("cursor", monitor.cursor);
  const fresh = await rows(query.toString());
  body.replaceChildren(...fresh);
  document.getElementById("executions-empty").hidden = fresh.length > 0;
  document.dispatchEvent(new CustomEvent("executions:rows"));
  await refreshCounts();
}

function formatDuration(ms) {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.floor(seconds) % 60} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function tickDurations() {
  const now = Date.now();
  for (const cell of body.querySelectorAll("[data-running-since]")) {
    const text = formatDuration(Math.max(0, now - Date.parse(cell.dataset.runningSince)));
    if (cell.textContent !== text) cell.textContent = text;
  }
}

if (monitor && body) {
  runningNumber();
  onWorkspaceEvents(onEvents, ["execution.", "step."]); // steps move the progress bars
  document.addEventListener("executions:reload", () => reload().catch(() => {}));
  setInterval(tickDurations, 1000);
}
