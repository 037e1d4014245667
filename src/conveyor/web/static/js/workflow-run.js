// The Run button: opens the input form, enqueues an execution, and follows it:
// Run -> Queued… (spinner, disabled) -> Running… (a Cancel button) -> "2.4s ✓" | Failed |
// Cancelled | Timed out -> Run again after a few seconds or on the next click. While the
// execution runs, every graph node shows its step's live status; at the end the results
// panel shows what it produced. Each state is announced in an aria-live region. A page opened
// while the workflow's latest execution has not ended follows that one from the start
// (viewers, without a Run button, see its nodes turn live too).

import { api, ProblemError } from "./api.js";
import { nodeStatus } from "./graph.js";
import { watchExecution } from "./live.js";
import { shortDuration } from "./workflow-format.js";
import { inputForm } from "./workflow-input.js";
import { liveText } from "./workflow-live.js";
import { latestSteps, renderResults } from "./workflow-results.js";

const BACK_TO_RUN_MS = 5000;
const DONE = new Set(["succeeded", "failed", "cancelled", "timed_out"]);
const STARTED = new Set(["execution.started", "execution.running", "execution.resumed", "execution.unpaused", "execution.waiting"]);

function clock(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

// A step message of the execution stream as [status, detail] for graph.setStatus.
export function stepMessageStatus(m) {
  switch (m.type) {
    case "step.started": return ["running", m.attempt > 1 ? `attempt ${m.attempt}` : ""];
    case "step.succeeded": return ["succeeded", ""];
    case "step.failed": return ["failed", m.continued ? "continued" : ""];
    case "step.skipped": return ["skipped", ""];
    case "step.retrying": return ["retrying", `attempt ${(m.attempt ?? 1) + 1} next`];
    case "step.waiting": return ["waiting", m.signal ? `for ${m.signal}` : m.until ? `until ${clock(m.until)}` : ""];
    case "step.interrupted": return ["interrupted", ""];
    case "step.cancelled": return ["cancelled", ""];
    default: return null;
  }
}

// A step message's status, a step's live progress and streamed text, on the graph and in
// the results panel.
function showLive(graph, live, m) {
  if (m.kind === "step.progress") graph?.setProgress(m.node_id, m);
  const found = m.kind === "step" ? stepMessageStatus(m) : null;
  if (found) {
    if (m.type === "step.started") graph?.setProgress(m.node_id, null); // a new attempt
    graph?.setStatus(m.node_id, ...found);
  }
  live.take(m);
}

const BUTTON = {
  idle: { text: "Run", cls: "primary" },
  queued: { text: "Queued…", cls: "", spinner: true, disabled: true },
  running: { text: "Running…", cls: "danger", spinner: true, action: "Cancel" },
  cancelling: { text: "Cancelling…", cls: "danger", spinner: true, disabled: true },
  succeeded: { cls: "success" },
  failed: { text: "Failed", cls: "failed" },
  cancelled: { text: "Cancelled", cls: "" },
  timed_out: { text: "Timed out", cls: "failed" },
};

// The graph alone follows an execution (no Run button to drive: a viewer, or blocked); at
// the end each node shows its step's final status (a cancelled wait sends no step message).
function followGraph(graph, definition, id, results) {
  const live = liveText(results, definition, id);
  watchExecution(id, async (batch) => {
    for (const m of batch) {
      showLive(graph, live, m);
      if (m.kind !== "complete") continue;
      try {
        const detail = await api(`executions/${id}`);
        for (const step of latestSteps(detail, definition)) graph?.setStatus(step.node_id, ...nodeStatus(step));
      } catch {
        // The live statuses stay as the stream left them.
      }
    }
  });
}

export function initRun({ graph, definition, run, results }) {
  const button = document.getElementById("run-button");
  const announce = document.getElementById("run-status");
  const panel = document.getElementById("run-panel");
  if (!button || button.disabled || !panel) {
    if (run.following) followGraph(graph, definition, run.following.id, results);
    return;
  }
  const form = panel.querySelector("#run-form");
  const submit = panel.querySelector("#run-submit");
  const formError = panel.querySelector("#run-form-error");
  let fields = null;
  let state = "idle";
  let executionId = null;
  let stopWatching = null;
  let backTimer = null;
  let live = null;

  function show(next, { text, said } = {}) {
    state = next;
    const look = BUTTON[next];
    button.dataset.state = next;
    button.className = `button run-button ${look.cls}`.trim();
    // aria-disabled, not disabled: the button keeps the focus it had through every state.
    if (look.disabled) button.setAttribute("aria-disabled", "true");
    else button.removeAttribute("aria-disabled");
    const parts = [];
    if (look.spinner) parts.push(Object.assign(document.createElement("span"), { className: "spinner", ariaHidden: "true" }));
    parts.push(document.createTextNode(text ?? look.text));
    if (look.action) parts.push(Object.assign(document.createElement("span"), { className: "run-action", textContent: look.action }));
    button.replaceChildren(...parts);
    if (next === "idle") button.setAttribute("aria-expanded", String(!panel.hidden));
    else button.removeAttribute("aria-expanded");
    if (said) announce.textContent = said;
  }

  // Built when first opened; an input too large to come with the page is read from the API
  // (the workflow's latest execution) then.
  async function ensureFields() {
    if (fields) return fields;
    let last = run.last_input;
    if (run.last_input_elsewhere) {
      try {
        last = (await api(`workflows/${encodeURIComponent(run.workflow)}/execute`)).input;
      } catch {
        last = null;
      }
    }
    fields ??= inputForm(panel.querySelector("#run-fields"), definition.input, last, formError);
    return fields;
  }

  async function openPanel() {
    panel.hidden = false;
    button.setAttribute("aria-expanded", "true");
    (await ensureFields()).focus();
  }

  function closePanel() {
    panel.hidden = true;
    if (state === "idle") button.setAttribute("aria-expanded", "false");
  }

  function backToRun() {
    clearTimeout(backTimer);
    backTimer = null;
    show("idle");
  }

  async function cancel() {
    show("cancelling", { said: "Cancelling the execution…" });
    try {
      await api(`executions/${executionId}/cancel`, { method: "POST" });
    } catch (err) {
      // Unless it ended meanwhile (then the end is what the button shows).
      if (state === "cancelling") show("running", { said: `Could not cancel: ${err.message}` });
    }
  }

  button.addEventListener("click", () => {
    if (button.getAttribute("aria-disabled") === "true") return;
    if (state === "running") return cancel();
    if (DONE.has(state)) {
      backToRun();
      return openPanel();
    }
    if (state === "idle") return panel.hidden ? openPanel() : closePanel();
  });
  panel.querySelector("#run-close").addEventListener("click", () => {
    closePanel();
    button.focus();
  });
  panel.addEventListener("keydown", (e) => {
    if (e.key !== "Escape") return;
    closePanel();
    button.focus();
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (state !== "idle" || !fields) return;
    const read = fields.read();
    if (!read.ok) return;
    submit.disabled = true;
    try {
      const accepted = await api(`workflows/${encodeURIComponent(run.workflow)}/execute`, {
        method: "POST", body: { input: read.value },
      });
      fields.clear();
      closePanel();
      button.focus();
      follow(accepted.execution_id);
    } catch (err) {
      const problems = err instanceof ProblemError ? err.fieldErrors : [];
      fields.showProblems(problems, err.message);
      announce.textContent = `Not started: ${err.message}`;
    } finally {
      submit.disabled = false;
    }
  });

  function follow(id, status = "queued") {
    clearTimeout(backTimer);
    stopWatching?.();
    executionId = id;
    graph?.resetStatuses();
    results.hidden = true;
    if (status === "queued") show("queued", { said: "Queued" });
    else show("running", { said: "Running" });
    live = liveText(results, definition, id);
    stopWatching = watchExecution(id, onMessages);
  }

  // The server rendered the button in the state of the execution it found running.
  if (run.following) follow(run.following.id, run.following.status);

  function onMessages(batch) {
    for (const m of batch) {
      showLive(graph, live, m);
      if (m.kind === "step") {
        if (state === "queued") show("running", { said: "Running" });
      } else if (STARTED.has(m.kind) && state === "queued") {
        show("running", { said: "Running" });
      } else if (m.kind === "complete") {
        finish(m.status);
      }
    }
  }

  async function finish(status) {
    stopWatching = null;
    let detail = null;
    try {
      detail = await api(`executions/${executionId}`);
    } catch {
      detail = null;
    }
    const final = detail?.status ?? status;
    if (detail) {
      for (const step of latestSteps(detail, definition)) graph?.setStatus(step.node_id, ...nodeStatus(step));
      renderResults(results, detail, definition);
    }
    const took = shortDuration(detail?.duration_ms);
    if (final === "succeeded") {
      show("succeeded", { text: `${took} ✓`, said: `Succeeded in ${took}` });
    } else {
      const look = BUTTON[final] ?? BUTTON.failed;
      const why = detail?.error?.message ? `: ${detail.error.message}` : "";
      show(DONE.has(final) ? final : "failed", { said: `${look.text}${why}` });
    }
    backTimer = setTimeout(backToRun, BACK_TO_RUN_MS);
  }
}
