// What every page has: the "N running" indicator, the inbox badge, the live-connection dot,
// times, menus.

import { onCounts, onInbox, onStatus } from "./live.js";
import { initTimes } from "./times.js";

const LIVE_TEXT = {
  connecting: "Connecting to live updates",
  live: "Live updates connected",
  polling: "Live updates interrupted; refreshing every few seconds",
  offline: "Offline: cannot reach the server",
};

function runningIndicator() {
  const link = document.getElementById("running-indicator");
  if (!link) return;
  const count = link.querySelector("[data-running-count]");
  onCounts((counts) => {
    const running = counts.running ?? 0;
    if (count.textContent !== String(running)) count.textContent = String(running);
    link.dataset.count = String(running);
    link.classList.toggle("active", running > 0);
    link.title = `${running} running, ${counts.queued ?? 0} queued, ${counts.waiting ?? 0} waiting`;
  });
}

function inboxBadge() {
  const link = document.getElementById("inbox-link");
  if (!link) return;
  const count = link.querySelector("[data-inbox-count]");
  const text = link.querySelector("[data-inbox-text]");
  onInbox(({ unread, open_tasks: openTasks }) => {
    const total = unread + openTasks;
    link.dataset.unread = String(unread);
    link.dataset.openTasks = String(openTasks);
    count.textContent = String(total);
    count.hidden = total === 0;
    text.textContent = total ? ` (${unread} unread, ${openTasks} open tasks for you)` : "";
  });
}

function liveStatus() {
  const dot = document.querySelector("[data-live-status]");
  if (!dot) return;
  const text = dot.querySelector("[data-live-text]");
  onStatus((status) => {
    dot.dataset.liveStatus = status;
    dot.title = LIVE_TEXT[status];
    text.textContent = LIVE_TEXT[status];
  });
}

function menus() {
  // A <details> menu closes on Escape and on a click elsewhere.
  document.addEventListener("click", (e) => {
    for (const menu of document.querySelectorAll("details.menu[open]")) {
      if (!menu.contains(e.target)) menu.open = false;
    }
  });
  document.addEventListener("keydown", (e) => {
    if (e.key !== "Escape") return;
    for (const menu of document.querySelectorAll("details.menu[open]")) {
      menu.open = false;
      menu.querySelector("summary").focus();
    }
  });
}

runningIndicator();
inboxBadge();
liveStatus();
initTimes();
menus();
