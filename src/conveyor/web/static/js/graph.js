// A workflow definition drawn as a graph, left to right: elkjs (vendored, global ELK) lays
// it out, we draw SVG, svg-pan-zoom (vendored, global svgPanZoom) pans and zooms. Each node is
// a focusable <g class="node" data-node-id data-status>, so people, tests and axe can reach it.
// Pages load elk.bundled.js and svg-pan-zoom.min.js with classic <script> tags first.

const SVG = "http://www.w3.org/2000/svg";
const NODE_W = 210;
const NODE_H = 62;

// A short, font-independent badge per node type (letters render everywhere).
const BADGES = {
  "http.request": "HTTP", condition: "IF", switch: "SW", wait: "WAIT",
  wait_for_event: "EVT", transform: "ƒx", notify: "NTF", fail: "FAIL",
  "workflow.call": "SUB", code: "PY", set: "SET", filter: "FLT", merge: "MRG",
  foreach: "EACH", "email.send": "MAIL", "chat.post": "CHAT", "llm.chat": "AI",
  "db.query": "SQL", stop: "STOP", "llm.agent": "AGNT", split: "SPLT", aggregate: "AGG",
  "task.create": "TASK",
};
export const badgeFor = (type) => BADGES[type] ?? (type.split(".").pop() || "?").slice(0, 4).toUpperCase();

export const STATUS_TEXT = {
  pending: "pending", running: "running", succeeded: "succeeded", failed: "failed",
  skipped: "skipped", retrying: "retrying", waiting: "waiting", cancelled: "cancelled",
  interrupted: "interrupted", queued: "queued",
};

// Edges of a definition: explicit `edges` plus each node's `needs` ("a" or "a.true").
export function edgesOf(definition) {
  const edges = (definition.edges ?? []).map((e) => ({
    source: e.from ?? e.source, target: e.to ?? e.target, branch: e.branch ?? null,
  }));
  for (const node of definition.nodes ?? []) {
    const needs = typeof node.needs === "string" ? [node.needs] : node.needs ?? [];
    for (const need of needs) {
      const [source, ...rest] = need.split(".");
      edges.push({ source, target: node.id, branch: rest.length ? rest.join(".") : null });
    }
  }
  return edges;
}

function el(name, attrs = {}, parent = null) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) element.setAttribute(key, value);
  if (parent) parent.appendChild(element);
  return element;
}

function truncate(text, max) {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

async function layout(definition) {
  const ids = new Set((definition.nodes ?? []).map((n) => n.id));
  const edges = edgesOf(definition).filter((e) => ids.has(e.source) && ids.has(e.target));
  const graph = {
    id: "root",
    layoutOptions: {
      "elk.algorithm": "layered",
      "elk.direction": "RIGHT",
      "elk.edgeRouting": "ORTHOGONAL",
      "elk.layered.spacing.nodeNodeBetweenLayers": "60",
      "elk.spacing.nodeNode": "28",
      "elk.spacing.edgeLabel": "4",
      "elk.layered.nodePlacement.strategy": "BRANDES_KOEPF",
    },
    children: [...ids].map((id) => ({ id, width: NODE_W, height: NODE_H })),
    edges: edges.map((e, i) => ({
      id: `e${i}`,
      sources: [e.source],
      targets: [e.target],
      labels: e.branch ? [{ id: `l${i}`, text: e.branch, width: e.branch.length * 7 + 10, height: 16 }] : [],
      data: e,
    })),
  };
  const elk = new window.ELK();
  const result = await elk.layout(graph);
  result.edges.forEach((edge, i) => { edge.data = graph.edges[i].data; });
  return result;
}

function drawNode(parent, node, box, onSelect) {
  const title = node.name || node.id;
  const g = el("g", {
    class: "node",
    transform: `translate(${box.x},${box.y})`,
    "data-node-id": node.id,
    "data-node-type": node.type,
    "data-status": "pending",
    tabindex: "0",
    role: "button",
    "aria-label": `${title} (${node.type}): pending`,
  }, parent);
  el("rect", { width: NODE_W, height: NODE_H, rx: 8 }, g);
  const badge = el("g", { class: "node-icon", transform: "translate(10,12)" }, g);
  el("rect", { width: 38, height: 20, rx: 5, class: "badge-bg" }, badge);
  const letters = el("text", { x: 19, y: 14, "text-anchor": "middle", class: "badge-text" }, badge);
  letters.textContent = badgeFor(node.type);
  const name = el("text", { x: 56, y: 26, class: "node-name" }, g);
  name.textContent = truncate(title, 19);
  const sub = el("text", { x: 12, y: 50, class: "node-id" }, g);
  sub.textContent = truncate(node.name ? `${node.id} · ${node.type}` : node.type, 22);
  const status = el("text", { x: NODE_W - 10, y: 50, "text-anchor": "end", class: "node-status" }, g);
  status.textContent = "";
  // A running step's reported progress (setProgress): a thin bar along the bottom edge.
  el("rect", { x: 8, y: NODE_H - 6, width: 0, height: 3, rx: 1.5, class: "node-progress", "aria-hidden": "true" }, g);
  const tip = el("title", {}, g);
  tip.textContent = `${title}\nid: ${node.id}\ntype: ${node.type}`;
  const select = () => onSelect?.(node.id);
  g.addEventListener("click", select);
  g.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") {
      e.preventDefault();
      select();
    }
  });
  return g;
}

function drawEdge(parent, edge) {
  const g = el("g", {
    class: "edge",
    "data-source": edge.data.source,
    "data-target": edge.data.target,
    ...(edge.data.branch ? { "data-branch": edge.data.branch } : {}),
  }, parent);
  for (const section of edge.sections ?? []) {
    const points = [section.startPoint, ...(section.bendPoints ?? []), section.endPoint];
    const d = points.map((p, i) => `${i ? "L" : "M"}${p.x},${p.y}`).join(" ");
    el("path", { d, "marker-end": "url(#arrow)" }, g);
  }
  for (const label of edge.labels ?? []) {
    el("rect", { x: label.x - 2, y: label.y, width: label.width, height: label.height, rx: 3, class: "label-bg" }, g);
    const text = el("text", { x: label.x + 3, y: label.y + 12 }, g);
    text.textContent = label.text;
  }
  return g;
}

// Draw ``definition`` into ``container``; returns the handle pages use to show live state.
export async function drawGraph(container, definition, { onSelect, label = "Workflow graph" } = {}) {
  // Drawn again (the editor redraws after each change): let go of the last drawing first.
  container.graphResize?.disconnect();
  container.graphPanZoom?.destroy();
  container.graphResize = container.graphPanZoom = null;
  container.replaceChildren();
  container.classList.add("graph");
  const nodes = definition.nodes ?? [];
  if (!nodes.length) {
    const empty = document.createElement("p");
    empty.className = "empty";
    empty.textContent = "This workflow has no nodes yet.";
    container.append(empty);
    return handle(container, new Map(), null);
  }
  const result = await layout(definition);
  const svg = el("svg", { role: "group", "aria-label": label });
  const defs = el("defs", {}, svg);
  const marker = el("marker", {
    id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5",
    markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse",
  }, defs);
  el("path", { d: "M 0 0 L 10 5 L 0 10 z" }, marker);
  const root = el("g", { class: "graph-root" }, svg);
  const edgeLayer = el("g", { class: "edges" }, root);
  const nodeLayer = el("g", { class: "nodes" }, root);
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const elements = new Map();
  for (const box of result.children) {
    elements.set(box.id, drawNode(nodeLayer, byId.get(box.id), box, onSelect));
  }
  for (const edge of result.edges) drawEdge(edgeLayer, edge);
  container.append(svg);
  const width = result.width + 40;
  const height = result.height + 40;
  svg.setAttribute("viewBox", `-20 -20 ${width} ${height}`);
  // svg-pan-zoom writes style="overflow: hidden" unless the style already names overflow;
  // set through the CSSOM, which the CSP (style-src 'self') allows, unlike the attribute.
  svg.style.overflow = "hidden";
  const panZoom = window.svgPanZoom(svg, {
    viewportSelector: ".graph-root",
    fit: true, center: true, minZoom: 0.1, maxZoom: 4,
    zoomScaleSensitivity: 0.3, dblClickZoomEnabled: false,
  });
  readableScale(panZoom);
  container.append(tools(panZoom));
  container.graphPanZoom = panZoom;
  container.graphResize = new ResizeObserver(() => { panZoom.resize(); });
  container.graphResize.observe(container);
  return handle(container, elements, panZoom);
}

// Fitting blows a small graph up and shrinks a wide one past reading on a phone: keep the
// drawing between READABLE and 1 screen pixel per unit; when that overflows, show its start.
const READABLE = 0.6;

function readableScale(panZoom) {
  const { realZoom } = panZoom.getSizes();
  const target = Math.min(1, Math.max(realZoom, READABLE));
  if (Math.abs(target - realZoom) < 0.01) return;
  panZoom.zoom((panZoom.getZoom() * target) / realZoom);
  panZoom.center();
  if (target > realZoom) panZoom.pan({ x: 12, y: panZoom.getPan().y });
}

function tools(panZoom) {
  const bar = document.createElement("div");
  bar.className = "graph-tools";
  for (const [text, title, action] of [
    ["+", "Zoom in", () => panZoom.zoomIn()],
    ["−", "Zoom out", () => panZoom.zoomOut()],
    ["Fit", "Fit the graph", () => { panZoom.resize(); panZoom.fit(); panZoom.center(); }],
  ]) {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "button small";
    button.textContent = text;
    button.setAttribute("aria-label", title);
    button.title = title;
    button.addEventListener("click", action);
    bar.append(button);
  }
  return bar;
}

function handle(container, elements, panZoom) {
  return {
    container,
    elements,
    panZoom,
    // status: one of STATUS_TEXT's keys; detail: e.g. "attempt 2" or "signal approve".
    setStatus(nodeId, status, detail = "") {
      const g = elements.get(nodeId);
      if (!g) return;
      if (g.dataset.status !== status) g.dataset.status = status;
      g.statusDetail = detail;
      // Progress belongs to a running step: any other status clears it.
      if (status !== "running" && g.progress) this.setProgress(nodeId, null);
      const count = status === "running" ? progressText(g.progress) : "";
      const text = status === "pending" ? "" : [STATUS_TEXT[status] ?? status, count || detail].filter(Boolean).join(" · ");
      const label = g.querySelector(".node-status");
      if (label.textContent !== text) label.textContent = truncate(text, 24);
      const name = g.querySelector(".node-name").textContent;
      g.setAttribute("aria-label", `${name} (${g.dataset.nodeType}): ${text || "pending"}`);
    },
    // The live progress a running step reports ({done, total?, message?}); null clears it.
    setProgress(nodeId, progress) {
      const g = elements.get(nodeId);
      if (!g) return;
      // Progress may come before the step's start has been drawn; never after it ended.
      const open = ["pending", "queued", "running", "retrying"].includes(g.dataset.status);
      g.progress = progress && open ? progress : null;
      if (g.progress && g.dataset.status !== "running") g.dataset.status = "running";
      const bar = g.querySelector(".node-progress");
      const fraction = g.progress?.total > 0 ? Math.min(1, Math.max(0, g.progress.done / g.progress.total)) : 0;
      bar.setAttribute("width", String((NODE_W - 16) * fraction));
      if (g.progress) g.dataset.progress = progressText(g.progress);
      else delete g.dataset.progress;
      const tip = g.querySelector("title");
      g.plainTitle ??= tip.textContent;
      if (!g.dataset.problem) tip.textContent = g.progress?.message ? `${g.plainTitle}\n${g.progress.message}` : g.plainTitle;
      if (g.dataset.status === "running") this.setStatus(nodeId, "running", g.statusDetail ?? "");
    },
    resetStatuses() {
      for (const id of elements.keys()) this.setStatus(id, "pending");
    },
    setProblem(nodeId, message) {
      const g = elements.get(nodeId);
      if (!g) return;
      const tip = g.querySelector("title");
      g.plainTitle ??= tip.textContent; // shown again once the problem is gone
      if (message) {
        g.dataset.problem = "true";
        tip.textContent = message;
      } else {
        delete g.dataset.problem;
        tip.textContent = g.plainTitle;
      }
    },
    select(nodeId) {
      for (const [id, g] of elements) g.classList.toggle("selected", id === nodeId);
    },
  };
}

// "3/10" (or "3" without a total) for a step's reported progress.
function progressText(progress) {
  if (!progress || progress.done === undefined) return "";
  const done = Number.isInteger(progress.done) ? progress.done : Number(progress.done).toFixed(1);
  return progress.total ? `${done}/${progress.total}` : String(done);
}

// The status a node shows for its latest step attempt (API step rows, newest last).
export function nodeStatus(step) {
  if (!step) return ["pending", ""];
  const attempt = step.attempt > 1 ? `attempt ${step.attempt}` : "";
  switch (step.status) {
    case "running": return ["running", attempt];
    case "retrying": return ["retrying", `attempt ${step.attempt}`];
    case "waiting": return ["waiting", step.wait_reason ?? ""];
    default: return [step.status, attempt];
  }
}
