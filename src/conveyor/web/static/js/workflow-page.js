// The workflow page: draws the graph, then wires the Run button, the recent executions and
// statistics, and the tabs with the versions' diff and the triggers.

import { island } from "./api.js";
import { drawGraph } from "./graph.js";
import { initDiff } from "./workflow-diff.js";
import { initExecutions } from "./workflow-executions.js";
import { revealStep } from "./workflow-results.js";
import { initRun } from "./workflow-run.js";
import { initTabs } from "./workflow-tabs.js";
import { initTriggers } from "./workflow-triggers.js";

const definition = island("workflow-definition");
const run = island("workflow-run");
const results = document.getElementById("results");

initTabs(document.querySelector(".workflow-tabs"));
initDiff(run.workflow);
initExecutions(run);
initTriggers(run);

let graph = null;
try {
  graph = await drawGraph(document.getElementById("workflow-graph"), definition, {
    label: `Graph of ${run.workflow}`,
    onSelect(nodeId) {
      graph?.select(nodeId);
      revealStep(results, nodeId);
    },
  });
} finally {
  // Without a graph (a layout error) the Run button still works.
  initRun({ graph, definition, run, results });
}
