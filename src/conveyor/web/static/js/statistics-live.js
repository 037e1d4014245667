// The statistics page, live: an execution queued or ended in the workspace (the workspace
// stream) makes the page read itself again (the same URL: the same range, which slides with
// "now"), at most once every few seconds and one read at a time. Only the parts whose content
// changed are replaced (data-live-part; an opened "Show data" stays open) and the charts are
// updated in place, so nothing jumps or flashes.

import { onWorkspaceEvents } from "./live.js";
import { update } from "./statistics-charts.js";

const COUNTED = new Set([
  "execution.queued", "execution.succeeded", "execution.failed", "execution.cancelled",
  "execution.timed_out",
]);
const EVERY_MS = 3000;

let due = false;
let busy = false;
let timer = null;
let last = -Infinity;

function apply(fresh) {
  for (const part of document.querySelectorAll("[data-live-part]")) {
    const next = fresh.querySelector(`[data-live-part="${part.dataset.livePart}"]`);
    if (!next || part.dataset.rendered === next.innerHTML) continue;
    part.innerHTML = next.innerHTML; // its <time> elements are formatted by times.js
    part.dataset.rendered = next.innerHTML;
  }
  const data = fresh.getElementById("statistics-data");
  if (data) update(JSON.parse(data.textContent));
}

async function refresh() {
  timer = null;
  due = false;
  busy = true;
  last = performance.now();
  try {
    const response = await fetch(location.href, { credentials: "same-origin" });
    if (response.ok) apply(new DOMParser().parseFromString(await response.text(), "text/html"));
  } catch {
    // offline: the status dot says so; the next event tries again
  } finally {
    busy = false;
    if (due) schedule();
  }
}

function schedule() {
  due = true;
  if (timer || busy) return;
  timer = setTimeout(refresh, Math.max(0, last + EVERY_MS - performance.now()));
}

onWorkspaceEvents((batch) => {
  if (batch.some((event) => COUNTED.has(event.type))) schedule();
}, ["execution."]);
