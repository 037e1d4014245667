// The Triggers tab: enable / disable, each schedule's next five fire times, backfill (a dry
// run's count first, then the run), and the webhooks' copy buttons and test request
// (workflow-webhook-test.js). The tab re-reads itself (/w/{ws}/workflows/{name}/triggers)
// after an action, and when an execution is queued while it is shown: one request in
// flight, at most one every 2 s.

import { api, ProblemError, workspace } from "./api.js";
import { onWorkspaceEvents } from "./live.js";
import { formatTimes } from "./times.js";
import { copy, sendTest } from "./workflow-webhook-test.js";

const MIN_GAP_MS = 2000;
const PLURAL = { schedule: "schedules", webhook: "webhooks" };

function say(text) {
  const status = document.getElementById("triggers-status");
  if (status) status.textContent = text;
}

// An action's error, beside the trigger it was about; "Not Found" from a server without
// that endpoint says what is missing.
function showError(article, doing, error) {
  const alert = article.querySelector("[data-trigger-error]");
  if (!error) {
    alert.hidden = true;
    return;
  }
  // A route the server lacks answers Starlette's bare "Not Found"; a missing trigger says which.
  const missing = error instanceof ProblemError && error.status === 404 && error.problem.detail === "Not Found";
  const why = missing ? "this server does not offer it" : error.message || String(error);
  alert.textContent = `Could not ${doing}: ${why}.`;
  alert.hidden = false;
}

function triggerOf(element) {
  const article = element.closest("[data-trigger-id]");
  return { article, id: article.dataset.triggerId, kind: article.dataset.triggerKind };
}

const triggerApi = ({ kind, id }, tail = "") => `${PLURAL[kind]}/${encodeURIComponent(id)}${tail}`;

// A UTC instant from a datetime-local value (the form says UTC).
const utc = (value) => new Date(`${value}${value.length === 16 ? ":00" : ""}Z`).toISOString();

// As the schedule's zone reads it (Mon 2 Jun 09:00), the same words as schedule_words.py.
function wallClock(iso, zone) {
  const parts = Object.fromEntries(new Intl.DateTimeFormat("en-GB", {
    timeZone: zone, weekday: "short", day: "numeric", month: "short",
    hour: "2-digit", minute: "2-digit", hourCycle: "h23",
  }).formatToParts(new Date(iso)).map((p) => [p.type, p.value]));
  return `${parts.weekday} ${parts.day} ${parts.month} ${parts.hour}:${parts.minute} ${zone}`;
}

function nextFires(list, times, zone) {
  const items = times.map((iso) => {
    const li = document.createElement("li");
    const time = document.createElement("time");
    time.dateTime = iso;
    time.textContent = iso;
    li.append(time);
    if (zone) {
      const wall = document.createElement("span");
      wall.className = "muted";
      wall.textContent = `(${wallClock(iso, zone)})`;
      li.append(" ", wall);
    }
    return li;
  });
  list.replaceChildren(...items);
  formatTimes(list);
}

// The schedules API gives the next five; without it (older server) the row's one stays.
async function loadNextFires(root) {
  for (const article of root.querySelectorAll('[data-trigger-kind="schedule"]')) {
    const list = article.querySelector("[data-next-fires]");
    if (!list || article.querySelector('[data-enabled-badge]').textContent !== "enabled") continue;
    try {
      const detail = await api(triggerApi(triggerOf(article)));
      if (Array.isArray(detail?.next_fire_times) && detail.next_fire_times.length) {
        nextFires(list, detail.next_fire_times, article.dataset.timezone);
      }
    } catch (error) {
      if (!(error instanceof ProblemError) || error.status !== 404) throw error;
    }
  }
}

async function toggle(button, refresh) {
  const trigger = triggerOf(button);
  const action = button.dataset.toggle;
  button.disabled = true;
  try {
    await api(triggerApi(trigger, `/${action}`), { method: "POST" });
    showError(trigger.article, action, null);
    say(`${trigger.kind} ${action}d`);
    await refresh();
    // Disabled while it worked, the button lost the focus: give it to the new one.
    document.getElementById(button.id)?.focus();
  } catch (error) {
    showError(trigger.article, `${action} the ${trigger.kind}`, error);
    button.disabled = false;
  }
}

const executions = (n) => `${n} execution${n === 1 ? "" : "s"}`;

// The dry run's words: how many occurrences the range holds, how many of them started
// before (never started again), so how many executions confirming starts.
function dryRunWords({ occurrences, already }) {
  const held = `${occurrences} occurrence${occurrences === 1 ? "" : "s"} in this range`;
  const before = already ? `, ${already} already started` : "";
  return `${held}${before}: confirming starts ${executions(occurrences - already)}.`;
}

async function backfill(form, dryRun) {
  const details = form.closest(".backfill");
  const trigger = triggerOf(form);
  const body = { start: utc(form.start.value), end: utc(form.end.value), dry_run: dryRun };
  const answer = await api(triggerApi(trigger, "/backfill"), { method: "POST", body });
  const confirm = details.querySelector("[data-backfill-confirm]");
  const run = confirm.querySelector("[data-backfill-run]");
  const result = details.querySelector("[data-backfill-result]");
  if (dryRun) {
    const toStart = answer.occurrences - answer.already;
    confirm.querySelector("[data-backfill-count]").textContent = dryRunWords(answer);
    run.textContent = `Start ${executions(toStart)}`;
    run.disabled = toStart === 0;
    confirm.hidden = false;
    result.textContent = "";
    if (toStart) run.focus();
  } else {
    confirm.hidden = true;
    const left = answer.already ? ` (${answer.already} had started before)` : "";
    result.textContent = `Backfill started ${executions(answer.started)}${left}.`;
  }
}

// What a person was doing in the tab survives its re-reading: open sections, typed values,
// a test request's answer, a backfill's count, and the focus.
function keep(panel) {
  const state = new Map();
  for (const article of panel.querySelectorAll("[data-trigger-id]")) {
    state.set(article.dataset.triggerId, {
      open: [...article.querySelectorAll("details")].map((d) => d.open),
      values: [...article.querySelectorAll("input:not([readonly]), textarea")].map((f) => f.value),
      kept: [...article.querySelectorAll("[data-keep]")].map((e) => ({ hidden: e.hidden, nodes: [...e.childNodes] })),
    });
  }
  return { state, focused: panel.contains(document.activeElement) ? document.activeElement.id : null };
}

function restore(panel, { state, focused }) {
  for (const article of panel.querySelectorAll("[data-trigger-id]")) {
    const was = state.get(article.dataset.triggerId);
    if (!was) continue;
    article.querySelectorAll("details").forEach((d, i) => { d.open = was.open[i] ?? d.open; });
    article.querySelectorAll("input:not([readonly]), textarea").forEach((f, i) => {
      if (was.values[i] !== undefined) f.value = was.values[i];
    });
    article.querySelectorAll("[data-keep]").forEach((e, i) => {
      if (!was.kept[i]) return;
      e.hidden = was.kept[i].hidden;
      e.replaceChildren(...was.kept[i].nodes);
    });
  }
  if (focused) document.getElementById(focused)?.focus();
}

export function initTriggers({ workflow: workflowName, workflow_id: workflowId }) {
  const panel = document.getElementById("panel-triggers");
  if (!panel) return;
  const url = `/w/${workspace()}/workflows/${encodeURIComponent(workflowName)}/triggers`;
  let reading = null;
  let again = false;
  let last = 0;
  let timer = null;

  async function refresh() {
    if (reading) { again = true; return reading; }
    reading = (async () => {
      do {
        again = false;
        last = Date.now();
        const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "text/html" } });
        if (!response.ok) break;
        const html = await response.text();
        // Read what the person did just before replacing, not before the await: a section
        // opened or a field typed while the answer arrived would otherwise be undone.
        const state = keep(panel);
        const template = document.createElement("template");
        template.innerHTML = html;
        panel.querySelector("#triggers-tab").replaceWith(template.content);
        restore(panel, state);
        formatTimes(panel);
        await loadNextFires(panel).catch(() => {});
      } while (again);
    })().finally(() => { reading = null; });
    return reading;
  }

  panel.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    if (button.dataset.copy) copy(button, say);
    else if (button.dataset.toggle) toggle(button, refresh);
    else if ("backfillRun" in button.dataset) {
      const form = button.closest(".backfill").querySelector("[data-backfill]");
      const article = triggerOf(button).article;
      button.disabled = true;
      backfill(form, false).then(
        () => {
          showError(article, "", null);
          refresh()
            .then(() => document.getElementById(`backfill-count-${article.dataset.triggerId}`)?.focus())
            .catch(() => {});
        },
        (error) => { showError(article, "start the backfill", error); button.disabled = false; },
      );
    } else if ("backfillCancel" in button.dataset) {
      button.closest("[data-backfill-confirm]").hidden = true;
    }
  });
  panel.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.matches("[data-backfill]")) {
      event.preventDefault();
      const article = triggerOf(form).article;
      backfill(form, true).then(
        () => showError(article, "", null),
        (error) => showError(article, "count the occurrences", error),
      );
    } else if (form.matches("[data-test-request]")) {
      event.preventDefault();
      // A tab that cannot be re-read keeps what it shows; the next action reads it again.
      sendTest(form).then(refresh).catch(() => {});
    }
  });

  // A trigger that fires queues an execution: re-read the tab, if it is shown.
  const ours = (e) => e.type === "execution.queued" && (!e.workflow_id || e.workflow_id === workflowId);
  onWorkspaceEvents((events) => {
    if (panel.hidden || timer || !events.some(ours)) return;
    const wait = Math.max(0, last + MIN_GAP_MS - Date.now());
    timer = setTimeout(() => { timer = null; refresh().catch(() => {}); }, wait);
  }, ["execution."]);
  loadNextFires(panel).catch(() => {});
}
