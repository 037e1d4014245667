// The run controls of the execution page: cancel, pause / resume, retry from the failed
// step, replay from a node (input editable), send a signal. Each calls the REST API route
// of the same name; a refusal (problem+json) is shown at the field it concerns, and the
// dialogs keep whatever was typed.

import { api, ProblemError, workspace } from "./api.js";
import { LIVE } from "./execution-model.js";

const RETRYABLE = new Set(["failed", "cancelled", "timed_out"]);

function setError(id, message) {
  const element = document.getElementById(id);
  if (!element) return;
  element.textContent = message ?? "";
  const field = document.querySelector(`[aria-describedby~="${id}"]`);
  if (field) {
    if (message) field.setAttribute("aria-invalid", "true");
    else field.removeAttribute("aria-invalid");
  }
}

// Problems with a path go to the field named by its last part; the rest to ``general``.
function showProblem(error, fields, general) {
  const message = error instanceof ProblemError ? error.message : String(error);
  let placed = false;
  for (const problem of error instanceof ProblemError ? error.fieldErrors : []) {
    const key = String(problem.path ?? "").split(".").at(-1);
    if (fields[key]) {
      setError(fields[key], problem.message);
      placed = true;
    }
  }
  if (!placed) {
    const field = Object.keys(fields).find((key) => new RegExp(`\\b${key}\\b`).test(message));
    setError(field ? fields[field] : general, message);
  }
}

function parseJson(text, errorId) {
  if (!text.trim()) return { ok: true, value: null };
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    setError(errorId, `Not valid JSON: ${error.message}`);
    return { ok: false };
  }
}

const goTo = (id) => window.location.assign(`/w/${workspace()}/executions/${id}`);

export function createActions({ executionId, definition, announce, refresh }) {
  const bar = document.getElementById("execution-actions");
  if (!bar) return { update() {} };
  const button = (name) => bar.querySelector(`[data-action="${name}"]`);
  let current = null;

  async function run(name, request, after) {
    const target = button(name);
    setError("action-error", "");
    target.disabled = true;
    try {
      const result = await request();
      after?.(result);
    } catch (error) {
      showProblem(error, {}, "action-error");
    } finally {
      target.disabled = false;
    }
  }

  const post = (path, body) => api(`executions/${executionId}/${path}`, { method: "POST", body });

  button("cancel").addEventListener("click", () => run("cancel", () => post("cancel"), () => {
    announce("Cancel requested");
    refresh();
  }));
  button("pause").addEventListener("click", () => run("pause", () => post("pause"), () => {
    announce("Paused: no new step starts until it is resumed");
    update({ ...current, paused: true });
    refresh();
  }));
  button("resume").addEventListener("click", () => run("resume", () => post("resume"), () => {
    announce("Resumed");
    update({ ...current, paused: false });
    refresh();
  }));
  button("retry").addEventListener("click", () => run("retry", () => post("retry"), (r) => goTo(r.execution_id)));

  // Replay: choose the node, edit the input, pinned or current version.
  const replayDialog = document.getElementById("replay-dialog");
  const replayForm = document.getElementById("replay-form");
  const nodeSelect = document.getElementById("replay-node");
  const inputArea = document.getElementById("replay-input");
  let replayFilled = false;
  button("replay").addEventListener("click", () => {
    if (!replayFilled) {
      replayFilled = true;
      for (const node of definition.nodes ?? []) {
        const option = new Option(node.name ? `${node.id} (${node.name})` : node.id, node.id);
        nodeSelect.append(option);
      }
      const failedNode = current?.error?.node_id;
      if (failedNode) nodeSelect.value = failedNode;
      inputArea.value = JSON.stringify(current?.input ?? {}, null, 2);
    }
    replayDialog.showModal();
  });
  replayForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    for (const id of ["replay-node-error", "replay-input-error", "replay-error"]) setError(id, "");
    const parsed = parseJson(inputArea.value, "replay-input-error");
    if (!parsed.ok) return inputArea.focus();
    const submit = replayForm.querySelector('button[type="submit"]');
    submit.disabled = true;
    try {
      const body = { from_node: nodeSelect.value, version: document.getElementById("replay-current").checked ? "current" : "pinned" };
      if (parsed.value !== null) body.input = parsed.value;
      const result = await post("replay", body);
      goTo(result.execution_id);
    } catch (error) {
      showProblem(error, { from_node: "replay-node-error", input: "replay-input-error" }, "replay-error");
    } finally {
      submit.disabled = false;
    }
  });

  // Signal: the name pre-filled from what a waiting node waits for.
  const signalDialog = document.getElementById("signal-dialog");
  const signalForm = document.getElementById("signal-form");
  const nameInput = document.getElementById("signal-name");
  const dataArea = document.getElementById("signal-data");
  let nameTyped = false;
  nameInput.addEventListener("input", () => { nameTyped = true; });
  button("signal").addEventListener("click", () => {
    const waiting = (current?.steps ?? []).find((s) => s.status === "waiting" && s.wait_signal && !s.wait_signal.startsWith("child:"));
    if (waiting && !nameTyped) nameInput.value = waiting.wait_signal;
    signalDialog.showModal();
  });
  signalForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    for (const id of ["signal-name-error", "signal-data-error", "signal-error"]) setError(id, "");
    if (!nameInput.value.trim()) {
      setError("signal-name-error", "Give the signal's name.");
      return nameInput.focus();
    }
    const parsed = parseJson(dataArea.value, "signal-data-error");
    if (!parsed.ok) return dataArea.focus();
    const submit = signalForm.querySelector('button[type="submit"]');
    submit.disabled = true;
    try {
      await post("signal", { name: nameInput.value.trim(), data: parsed.value });
      signalDialog.close();
      announce(`Signal ${nameInput.value.trim()} sent`);
      refresh();
    } catch (error) {
      showProblem(error, { name: "signal-name-error", data: "signal-data-error" }, "signal-error");
    } finally {
      submit.disabled = false;
    }
  });

  for (const dialog of [replayDialog, signalDialog]) {
    dialog.querySelector("[data-close]").addEventListener("click", () => dialog.close());
  }

  function update(execution) {
    current = execution;
    const paused = Boolean(execution.paused);
    const live = LIVE.has(execution.status);
    button("cancel").hidden = !live;
    button("pause").hidden = !live || paused;
    button("resume").hidden = !live || !paused;
    button("signal").hidden = !live;
    button("retry").hidden = !RETRYABLE.has(execution.status);
    button("replay").hidden = live;
    if (!live && signalDialog.open) signalDialog.close();
    // A control that went away (Pause after pausing) hands the focus to one still there.
    if (bar.contains(document.activeElement) && document.activeElement.hidden) {
      bar.querySelector("button:not([hidden])")?.focus();
    }
  }

  return { update };
}
