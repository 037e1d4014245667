// The versions tab's diff: choosing "From version" or "To version" reads
// GET .../versions/{a}/diff/{b} and renders it as the page does (partials/workflow-diff.html):
// the changes by node and edge, then the unified diff with added and removed lines marked.

import { api } from "./api.js";
import { element } from "./workflow-format.js";

// As diff_lines in pages/workflow.py: a removed "--- x" inside a hunk is not a file header.
function lineKinds(lines) {
  let inHunk = false;
  return lines.map((line) => {
    if (line.startsWith("@@")) {
      inHunk = true;
      return "hunk";
    }
    if (!inHunk && (line.startsWith("+++") || line.startsWith("---"))) return "file";
    return { "+": "added", "-": "removed" }[line[0]] ?? "same";
  });
}

function diffLine(line, kind) {
  if (kind === "added" || kind === "removed") {
    const tag = kind === "added" ? "ins" : "del";
    return element(tag, { class: `diff-line diff-${kind}` },
      element("span", { class: "sr-only", text: `${kind}: ` }), line);
  }
  return element("span", { class: `diff-line diff-${kind}`, text: line });
}

const edgeText = (e) => `${e.from}${e.branch ? `.${e.branch}` : ""} → ${e.to}`;

function item(kind, before, code, after) {
  return element("li", { class: `diff-${kind}` }, before, element("code", { text: code }), after);
}

function summary(changes) {
  const items = [
    ...changes.nodes.added.map((id) => item("added", "Node ", id, " added")),
    ...changes.nodes.removed.map((id) => item("removed", "Node ", id, " removed")),
    ...changes.nodes.changed.map((n) => item("changed", "Node ", n.id, ` changed: ${n.fields.join(", ")}`)),
    ...changes.edges.added.map((e) => item("added", "Edge ", edgeText(e), " added")),
    ...changes.edges.removed.map((e) => item("removed", "Edge ", edgeText(e), " removed")),
  ];
  if (changes.fields.length) items.push(element("li", { class: "diff-changed", text: `Changed: ${changes.fields.join(", ")}` }));
  if (!items.length) items.push(element("li", { text: "No changes" }));
  return element("ul", { class: "diff-summary", "aria-labelledby": "diff-heading" }, ...items);
}

export function renderDiff(container, diff) {
  const parts = [
    element("h4", { id: "diff-heading", text: `Changes from v${diff.from_version} to v${diff.to_version}` }),
    summary(diff.changes),
  ];
  const lines = diff.unified.split("\n").filter((line, i, all) => line !== "" || i < all.length - 1);
  if (lines.length) {
    const kinds = lineKinds(lines);
    const code = element("code", {}, ...lines.map((line, i) => diffLine(line, kinds[i])));
    parts.push(element("pre", { class: "diff", tabindex: "0", role: "region", "aria-label": "Unified diff of the YAML" }, code));
  }
  container.replaceChildren(...parts);
}

export function initDiff(workflow) {
  const form = document.getElementById("diff-form");
  if (!form) return;
  const from = form.querySelector("#diff-from");
  const to = form.querySelector("#diff-to");
  const error = document.getElementById("diff-error");
  const status = document.getElementById("diff-status");
  const container = document.getElementById("version-diff");
  // With scripts, a choice shows its diff at once: the Compare button is not needed.
  form.querySelector("#diff-submit").hidden = true;
  let asked = 0;
  async function show() {
    const mine = ++asked;
    const [a, b] = [from.value, to.value];
    try {
      const diff = await api(`workflows/${encodeURIComponent(workflow)}/versions/${a}/diff/${b}`);
      if (mine !== asked) return;  // a later choice is on its way
      error.hidden = true;
      renderDiff(container, diff);
      status.textContent = `Showing the changes from v${a} to v${b}`;
    } catch (err) {
      if (mine !== asked) return;
      error.textContent = `Could not compare v${a} with v${b}: ${err.message}`;
      error.hidden = false;
    }
  }
  form.addEventListener("change", show);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    show();
  });
}
