// Live text in the results panel while an execution runs: what a step streams (step.delta)
// appears under its node as it comes; when that step finishes, its stored output (read from
// the API once) takes the text's place. The panel is drawn anew at the execution's end.

import { api, workspaceApi } from "./api.js";
import { element } from "./workflow-format.js";
import { latestSteps, stepDetails } from "./workflow-results.js";

const FINISHED = new Set(["step.succeeded", "step.failed", "step.cancelled", "step.interrupted"]);

export function liveText(section, definition, executionId) {
  const body = section.querySelector("#results-body");
  const nodes = new Map((definition.nodes ?? []).map((n) => [n.id, n]));
  const blocks = new Map(); // node id -> {box, text, attempt}
  let list = null;

  function block(nodeId, attempt) {
    let found = blocks.get(nodeId);
    if (found && found.attempt === attempt) return found;
    if (!list) {
      list = element("div", { class: "step-results live-steps" });
      body.replaceChildren(element("p", { class: "muted", text: "Running: text the steps stream appears here." }), list);
      section.hidden = false;
    }
    const node = nodes.get(nodeId);
    const text = element("pre", { class: "live-text", tabindex: "0" });
    const box = element("section", { class: "step-result live-step", "data-node-id": nodeId, "aria-label": `Live output of ${nodeId}` },
      element("p", {},
        element("span", { class: "badge status-running", text: "running" }), " ",
        element("strong", { text: node?.name ? `${node.name} (${nodeId})` : nodeId }),
        element("span", { class: "muted", text: attempt > 1 ? ` · attempt ${attempt}` : "" })),
      text);
    if (found) found.box.replaceWith(box);
    else list.append(box);
    found = { box, text, attempt };
    blocks.set(nodeId, found);
    return found;
  }

  async function finished(nodeId) {
    const found = blocks.get(nodeId);
    if (!found) return;
    try {
      const detail = await api(`executions/${executionId}`);
      const step = latestSteps(detail, definition).find((s) => s.node_id === nodeId);
      if (!step || blocks.get(nodeId) !== found) return;
      const details = stepDetails(step, nodes.get(nodeId), `${workspaceApi()}/executions/${executionId}`);
      details.open = true;
      found.box.replaceWith(details);
      found.box = details;
    } catch {
      // The text stays; the panel is drawn from the stored execution at its end anyway.
    }
  }

  return {
    // Every message of the execution's stream goes through here.
    take(m) {
      if (m.kind === "step.delta" && typeof m.text === "string") {
        block(m.node_id, m.attempt ?? 1).text.append(m.text);
      } else if (m.kind === "step" && FINISHED.has(m.type)) {
        finished(m.node_id);
      }
    },
  };
}
