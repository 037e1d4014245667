// The steps panel: one <details> per node with its attempts (newest first), each with its
// rendered input, output, error (with traceback) and log lines. A node's body is rendered
// when it is opened and again only when that node's attempts change.

import { workspaceApi } from "./api.js";
import { isPlaceholder, jsonViewer } from "./execution-json.js";
import { llmPart } from "./execution-llm.js";
import { formatDuration, isReused, nodeState, waitText } from "./execution-model.js";

const LOG_LINES = 500;
let ids = 0;

function h(tag, className, text) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text !== undefined) element.textContent = text;
  return element;
}

const signature = (attempts) =>
  attempts.map((s) => `${s.attempt}:${s.status}:${s.finished_at}:${s.wait_until}`).join("|");

// The API's download of one attempt's input, output, error or logs.
const payloadUrl = (execution, step, name) =>
  `${workspaceApi()}/executions/${execution.id}/steps/${encodeURIComponent(step.node_id)}/${name}?attempt=${step.attempt}`;

function part(title, value, step, execution) {
  const section = h("section", "step-part");
  const heading = h("h3", null, title);
  heading.id = `h-${step.node_id}-${step.attempt}-${title.toLowerCase()}-${++ids}`;
  section.setAttribute("aria-labelledby", heading.id);
  section.append(heading);
  const name = `${execution.id.slice(0, 8)}-${step.node_id}-${step.attempt}-${title.toLowerCase()}.json`;
  const href = payloadUrl(execution, step, title.toLowerCase());
  section.append(jsonViewer(value, { label: `${title.toLowerCase()} of ${step.node_id}`, file: name, href }));
  return section;
}

function errorPart(step) {
  const section = h("section", "step-part step-error");
  section.append(h("h3", null, "Error"));
  const error = step.error;
  section.append(h("p", "error-message", `${error.type ? `${error.type}: ` : ""}${error.message ?? ""}`));
  if (error.traceback) {
    const pre = h("pre", "traceback", error.traceback);
    pre.tabIndex = 0;
    section.append(pre);
  }
  return section;
}

function logsPart(step) {
  const section = h("section", "step-part");
  section.append(h("h3", null, "Logs"));
  const list = h("ol", "logs");
  for (const line of step.logs.slice(0, LOG_LINES)) {
    const li = h("li", `log-${line.level ?? "info"}`);
    li.append(h("span", "log-time", (line.ts ?? "").slice(11, 23)), " ");
    li.append(h("span", "log-level", line.level ?? ""), " ");
    li.append(h("span", "log-message", line.message ?? JSON.stringify(line)));
    list.append(li);
  }
  section.append(list);
  if (step.logs.length > LOG_LINES) section.append(h("p", "muted small", `${step.logs.length - LOG_LINES} more lines not shown.`));
  return section;
}

function attemptBody(step, execution) {
  const body = h("div", "attempt-body");
  const facts = h("p", "muted small");
  const parts = [`attempt ${step.attempt}`, step.status];
  if (step.duration_ms !== null) parts.push(formatDuration(step.duration_ms));
  if (step.step_index) parts.push(`step ${step.step_index}`);
  if (step.branch) parts.push(`branch ${step.branch}`);
  if (step.status === "waiting" && waitText(step)) parts.push(`waiting for ${waitText(step)}`);
  if (isReused(step, execution)) parts.push("output reused from an earlier execution");
  facts.textContent = parts.join(" · ");
  body.append(facts);
  const grid = h("div", "step-parts");
  const llm = llmPart(step);
  if (llm) grid.append(llm);
  grid.append(part("Input", step.input, step, execution));
  if (step.output !== null && step.output !== undefined) grid.append(part("Output", step.output, step, execution));
  if (isPlaceholder(step.error)) grid.append(part("Error", step.error, step, execution));
  else if (step.error) grid.append(errorPart(step));
  if (isPlaceholder(step.logs)) grid.append(part("Logs", step.logs, step, execution));
  else if (step.logs?.length) grid.append(logsPart(step));
  body.append(grid);
  return body;
}

function nodeBody(attempts, execution) {
  const body = h("div", "step-body");
  const newest = [...attempts].reverse();
  if (newest.length === 1) {
    body.append(attemptBody(newest[0], execution));
    return body;
  }
  newest.forEach((step, i) => {
    const details = h("details", "attempt");
    details.open = i === 0;
    const summary = h("summary", null, `Attempt ${step.attempt}: ${step.status}`);
    details.append(summary, attemptBody(step, execution));
    body.append(details);
  });
  return body;
}

export function createSteps(container, definition) {
  const types = new Map((definition.nodes ?? []).map((n) => [n.id, n]));
  const items = new Map(); // node id -> {details, summary parts, signature, rendered}
  let execution = null;
  let byNode = new Map();

  function item(nodeId) {
    let found = items.get(nodeId);
    if (found) return found;
    const details = h("details", "step");
    details.dataset.nodeId = nodeId;
    details.id = `step-${nodeId}`;
    const summary = h("summary");
    const name = h("span", "step-name", types.get(nodeId)?.name || nodeId);
    const meta = h("span", "step-meta muted");
    const badge = h("span", "badge");
    summary.append(name, " ", badge, " ", meta);
    details.append(summary);
    found = { details, badge, meta, signature: "", rendered: "" };
    details.addEventListener("toggle", () => details.open && renderBody(nodeId));
    items.set(nodeId, found);
    container.append(details);
    return found;
  }

  function renderBody(nodeId) {
    const found = items.get(nodeId);
    const attempts = byNode.get(nodeId) ?? [];
    if (!found.details.open || found.rendered === found.signature) return;
    found.rendered = found.signature;
    found.details.querySelector(".step-body")?.remove();
    found.details.append(nodeBody(attempts, execution));
  }

  function update(nextExecution, nextByNode) {
    execution = nextExecution;
    byNode = nextByNode;
    for (const [nodeId, attempts] of byNode) {
      const found = item(nodeId);
      const sig = signature(attempts);
      if (sig === found.signature) continue;
      found.signature = sig;
      const [status, detail] = nodeState(attempts, execution);
      found.badge.className = `badge status-${status}`;
      found.badge.textContent = detail === "reused" ? "reused" : status;
      const latest = attempts.at(-1);
      const type = latest.node_type;
      const bits = [nodeId === (types.get(nodeId)?.name || nodeId) ? type : `${nodeId} · ${type}`];
      if (attempts.length > 1) bits.push(`${attempts.length} attempts`);
      if (status === "waiting" && waitText(latest)) bits.push(`waiting for ${waitText(latest)}`);
      else if (detail && detail !== "reused") bits.push(detail);
      if (latest.duration_ms !== null) bits.push(formatDuration(latest.duration_ms));
      found.meta.textContent = bits.join(" · ");
      found.details.dataset.status = status;
      renderBody(nodeId);
    }
  }

  // Text a running step streams (step.delta), shown above its body until the step ends.
  function delta(message) {
    const found = item(message.node_id);
    if (!found.live || found.live.attempt !== (message.attempt ?? 1)) {
      found.live?.section.remove();
      const section = h("section", "step-part live-part");
      const heading = h("h3", null, `Live output${(message.attempt ?? 1) > 1 ? ` (attempt ${message.attempt})` : ""}`);
      heading.id = `live-${message.node_id}-${++ids}`;
      section.setAttribute("aria-labelledby", heading.id);
      const text = h("pre", "live-text");
      text.tabIndex = 0;
      section.append(heading, text);
      found.details.querySelector("summary").after(section);
      found.live = { section, text, attempt: message.attempt ?? 1 };
      found.details.open = true;
    }
    found.live.text.append(message.text);
  }

  // The step ended (its stored output is shown now): the live text goes.
  function endLive(nodeId) {
    const found = items.get(nodeId);
    found?.live?.section.remove();
    if (found) found.live = null;
  }

  function select(nodeId) {
    const found = items.get(nodeId);
    for (const [id, other] of items) other.details.classList.toggle("selected", id === nodeId);
    if (!found) return false;
    found.details.open = true;
    renderBody(nodeId);
    found.details.scrollIntoView({ block: "nearest", behavior: "smooth" });
    found.details.querySelector("summary").focus({ preventScroll: true });
    return true;
  }

  return { update, select, delta, endLive };
}
