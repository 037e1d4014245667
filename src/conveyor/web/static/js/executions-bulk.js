// Bulk cancel / retry / replay on the selected rows or on every execution matching the
// filter: a dry run counts what the action would touch, a <dialog> asks to confirm that
// number, then the action runs (the same POST .../executions/bulk as the API) and its
// outcome is announced; the table and counts are then read again.

import { api, island } from "./api.js";

const monitor = island("executions-monitor");
const body = document.getElementById("executions-body");
const dialog = document.getElementById("bulk-dialog");
const result = document.getElementById("bulk-result");
const selectAll = document.getElementById("select-all");
const confirmButton = dialog?.querySelector("[data-bulk-confirm]");
const summary = dialog?.querySelector("[data-bulk-summary]");
const nodeField = dialog?.querySelector("[data-bulk-node]");
const nodeInput = dialog?.querySelector("#bulk-from-node");
const errorLine = dialog?.querySelector("[data-bulk-error]");

const WORDS = {
  cancel: { verb: "Cancel", doing: "Cancelling", done: "Cancelled", able: "cancelled" },
  retry: { verb: "Retry", doing: "Retrying", done: "Retried", able: "retried" },
  replay: { verb: "Replay", doing: "Replaying", done: "Replayed", able: "replayed" },
};
// A replay's dry run only counts finished executions; the API asks for a node all the same.
const COUNT_ONLY_NODE = "-";

let pending = null;

const plural = (n, word = "execution") => `${n} ${word}${n === 1 ? "" : "s"}`;
const boxes = () => [...body.querySelectorAll('input[name="selected"]')];
const selectedIds = () => boxes().filter((box) => box.checked).map((box) => box.value);

function updateSelection() {
  const all = boxes();
  const chosen = all.filter((box) => box.checked).length;
  document.querySelector("[data-selected-count]").textContent = `${chosen} selected`;
  for (const button of document.querySelectorAll('[data-scope="ids"]')) button.disabled = !chosen;
  selectAll.checked = chosen > 0 && chosen === all.length;
  selectAll.indeterminate = chosen > 0 && chosen < all.length;
}

function selection(scope) {
  return scope === "ids" ? { ids: selectedIds() } : { filter: monitor.selection };
}

function showError(message) {
  errorLine.textContent = message;
  errorLine.hidden = !message;
}

async function open(action, scope) {
  const words = WORDS[action];
  pending = { action, scope, selection: selection(scope), eligible: 0 };
  dialog.querySelector("#bulk-title").textContent =
    `${words.verb} ${scope === "ids" ? "the selected executions" : "every matching execution"}`;
  summary.textContent = "Counting the executions this would touch…";
  confirmButton.disabled = true;
  confirmButton.textContent = words.verb;
  nodeField.hidden = action !== "replay";
  nodeInput.required = action === "replay";
  showError("");
  dialog.showModal();
  try {
    const dry = await api("executions/bulk", {
      method: "POST",
      body: { action, ...pending.selection, dry_run: true,
        ...(action === "replay" ? { from_node: COUNT_ONLY_NODE } : {}) },
    });
    describe(dry, words);
  } catch (error) {
    summary.textContent = "";
    showError(error.message);
  }
}

function describe(dry, words) {
  pending.eligible = dry.eligible;
  const left = dry.selected - dry.eligible;
  const rest = left ? ` The other ${plural(left)} cannot be ${words.able} and stay as they are.` : "";
  if (!dry.eligible) {
    summary.textContent = `None of the ${plural(dry.selected)} can be ${words.able}.`;
  } else if (dry.eligible > dry.limit) {
    summary.textContent = `This would touch ${plural(dry.eligible)}, more than the ` +
      `${dry.limit} one bulk action takes: narrow the filter first.`;
  } else {
    summary.textContent = `This will ${words.verb.toLowerCase()} ${plural(dry.eligible)}.${rest}`;
    confirmButton.textContent = `${words.verb} ${plural(dry.eligible)}`;
    confirmButton.disabled = false;
  }
}

function outcome(done, words) {
  const skipped = Math.max(0, done.selected - done.touched - done.errors_total);
  let text = `${words.done} ${plural(done.touched)}; ${skipped} skipped`;
  if (done.errors_total) {
    const first = done.errors[0];
    text += `; ${plural(done.errors_total, "error")} (${first.execution_id.slice(0, 8)}: ${first.detail})`;
  }
  return `${text}.`;
}

async function run() {
  const { action, selection: chosen, eligible } = pending;
  const words = WORDS[action];
  const buttons = document.querySelectorAll("[data-bulk]");
  for (const button of buttons) button.disabled = true;
  result.classList.remove("error");
  result.classList.add("working");
  result.textContent = `${words.doing} ${plural(eligible)}…`;
  try {
    const done = await api("executions/bulk", {
      method: "POST",
      body: { action, ...chosen, ...(action === "replay" ? { from_node: nodeInput.value.trim() } : {}) },
    });
    result.textContent = outcome(done, words);
  } catch (error) {
    result.classList.add("error");
    result.textContent = `${words.verb} failed: ${error.message}`;
  } finally {
    result.classList.remove("working");
    for (const button of buttons) button.disabled = false;
    document.dispatchEvent(new CustomEvent("executions:reload"));
  }
}

if (dialog && body) {
  body.addEventListener("change", updateSelection);
  document.addEventListener("executions:rows", updateSelection);
  selectAll.addEventListener("change", () => {
    for (const box of boxes()) box.checked = selectAll.checked;
    updateSelection();
  });
  for (const button of document.querySelectorAll("[data-bulk]")) {
    button.addEventListener("click", () => open(button.dataset.bulk, button.dataset.scope));
  }
  dialog.addEventListener("close", () => {
    if (dialog.returnValue === "confirm" && pending?.eligible) run();
    dialog.returnValue = "";
  });
  updateSelection();
}
