// The results panel: what the execution the Run button started ended with (status banner,
// duration, steps, usage, result JSON, each node's output and log lines) and a link to its
// execution page. Rendered once, from the execution detail fetched at the end.

import { workspace, workspaceApi } from "./api.js";
import { duration, element, jsonBlock, timeElement } from "./workflow-format.js";

const BANNER = {
  succeeded: ["alert-ok", "Succeeded"],
  failed: ["alert-error", "Failed"],
  cancelled: ["alert-warn", "Cancelled"],
  timed_out: ["alert-error", "Timed out"],
};

// The latest attempt of each node, in the definition's order (then any others).
export function latestSteps(detail, definition) {
  const latest = new Map();
  for (const step of detail.steps ?? []) {
    const seen = latest.get(step.node_id);
    if (!seen || step.attempt >= seen.attempt) latest.set(step.node_id, step);
  }
  const order = (definition.nodes ?? []).map((n) => n.id);
  const ids = [...order.filter((id) => latest.has(id)), ...[...latest.keys()].filter((id) => !order.includes(id))];
  return ids.map((id) => latest.get(id));
}

function fact(term, ...value) {
  return element("div", {}, element("dt", { text: term }), element("dd", {}, ...value));
}

function banner(detail) {
  const [cls, title] = BANNER[detail.status] ?? ["alert-warn", detail.status];
  const box = element("div", { class: `alert ${cls} results-banner`, "data-status": detail.status });
  box.append(element("p", {}, element("strong", { text: title }), ` in ${duration(detail.duration_ms)}`));
  if (detail.error) {
    const where = detail.error.node_id ? ` at node ${detail.error.node_id}` : "";
    box.append(element("p", { text: `${detail.error.type ?? "Error"}${where}: ${detail.error.message ?? ""}` }));
  }
  return box;
}

function facts(detail) {
  const progress = detail.progress ?? {};
  const executed = (progress.succeeded ?? 0) + (progress.failed ?? 0);
  const page = `/w/${workspace()}/executions/${detail.id}`;
  return element("dl", { class: "results-facts" },
    fact("Duration", duration(detail.duration_ms)),
    fact("Steps executed", `${executed} / ${progress.total ?? 0}`, progress.skipped ? ` (${progress.skipped} skipped)` : ""),
    fact("AI tokens", String(detail.usage?.tokens ?? 0)),
    fact("API calls", String(detail.usage?.api_calls ?? 0)),
    fact("Execution", element("a", { href: page }, element("code", { text: detail.id }))),
    fact("Finished", timeElement(detail.finished_at)),
  );
}

function logList(lines) {
  const list = element("ol", { class: "logs" });
  for (const line of lines) {
    const item = element("li", { class: `log-${line.level ?? "info"}` });
    item.append(element("span", { class: "log-level", text: line.level ?? "info" }), " ", line.message ?? JSON.stringify(line));
    list.append(item);
  }
  return list;
}

export function stepDetails(step, node, fullUrl) {
  const title = node?.name ? `${node.name} (${step.node_id})` : step.node_id;
  const details = element("details", { class: "step-result", "data-node-id": step.node_id });
  const summary = element("summary", {},
    element("span", { class: `badge status-${step.status}`, text: step.status }), " ",
    element("strong", { text: title }),
    element("span", { class: "muted", text: ` · ${step.node_type}${step.attempt > 1 ? ` · attempt ${step.attempt}` : ""}${step.branch ? ` · branch ${step.branch}` : ""} · ${duration(step.duration_ms)}` }),
  );
  details.append(summary);
  if (step.error) {
    details.append(element("h4", { text: "Error" }), jsonBlock(step.error, fullUrl, `Error of ${step.node_id}`));
  }
  if (step.status !== "skipped") {
    details.append(element("h4", { text: "Output" }), jsonBlock(step.output, fullUrl, `Output of ${step.node_id}`));
  }
  if (step.logs?.length) details.append(element("h4", { text: "Log" }), logList(step.logs));
  return details;
}

export function renderResults(section, detail, definition) {
  const body = section.querySelector("#results-body");
  const fullUrl = `${workspaceApi()}/executions/${detail.id}`;
  const nodes = new Map((definition.nodes ?? []).map((n) => [n.id, n]));
  const steps = latestSteps(detail, definition);
  const stepList = element("div", { class: "step-results" }, ...steps.map((s) => stepDetails(s, nodes.get(s.node_id), fullUrl)));
  body.replaceChildren(
    banner(detail),
    facts(detail),
    element("h3", { text: "Result" }),
    jsonBlock(detail.result, fullUrl, "Result"),
    element("h3", { text: "Steps" }),
    steps.length ? stepList : element("p", { class: "muted", text: "No step ran." }),
    element("p", {}, element("a", { href: `/w/${workspace()}/executions/${detail.id}`, text: "Open the execution page" })),
  );
  section.hidden = false;
}

// Open a node's details (a click on the graph) and bring them into view.
export function revealStep(section, nodeId) {
  if (section.hidden) return;
  const details = [...section.querySelectorAll("details.step-result")].find((d) => d.dataset.nodeId === nodeId);
  if (!details) return;
  details.open = true;
  details.scrollIntoView({ block: "nearest", behavior: "smooth" });
}
