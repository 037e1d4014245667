// The workflow editor page: one definition, two views. The YAML text is what is saved; the
// canvas edits the document parsed from it (the validate endpoint answers both the problems,
// each at its line, and the document), then writes the text anew. Save creates a version.

import { ProblemError, api, island, workspace } from "./api.js";
import { connectPanel } from "./editor-connect.js";
import { describePanel } from "./editor-describe.js";
import * as model from "./editor-model.js";
import { nodePanel } from "./editor-node-form.js";
import { palette } from "./editor-palette.js";
import { yamlView } from "./editor-yaml.js";
import { toYaml } from "./editor-yaml-text.js";
import { drawGraph } from "./graph.js";

const DEBOUNCE_MS = 400;
const $ = (id) => document.getElementById(id);
const data = island("editor-data");
const types = new Map(data.node_types.map((t) => [t.name, t]));

let doc = data.document; // the last document the text parsed to (null: it does not parse)
let savedText = toYaml(doc);
let problems = []; // located: {message, node_id, path, line, column, text}
let selected = null;
let graph = null;
let timer = null;
let validation = null; // {text, promise} of the newest request
let leaving = false;

// "node 'x', config.url: message", as `conveyor validate` prints a problem.
const problemText = (p) => {
  const where = [p.node_id ? `node '${p.node_id}'` : "", p.path].filter(Boolean).join(", ");
  return where ? `${where}: ${p.message}` : p.message;
};

const yaml = yamlView($("yaml-editor"), savedText, { onChange: () => { changed(); schedule(); } });

const paletteView = palette({ search: $("palette-search"), list: $("palette-list") }, data.node_types, (type) => {
  const [next, id] = model.addNode(doc, type);
  selected = id;
  edit(next);
});

const connect = connectPanel(
  { form: $("connect-form"), from: $("connect-from"), branch: $("connect-branch"), to: $("connect-to"), error: $("connect-error"), edges: $("edge-list") },
  types,
  {
    onConnect(from, to, branch) {
      const [next, problem] = model.connect(doc, from, to, branch);
      if (!problem) edit(next);
      return problem;
    },
    onRemoveEdge: (origin) => edit(model.removeEdge(doc, origin)),
  },
);

const nodeForm = nodePanel({ form: $("node-form"), none: $("node-none"), heading: $("node-heading") }, types, {
  onEdit: (id, path, value) => edit(model.setNodeField(doc, id, path, value), { rerenderNode: false }),
  onRename(id, newId) {
    if (!newId || newId === id) return;
    selected = newId;
    edit(model.renameNode(doc, id, newId));
  },
  onDelete(id) {
    selected = null;
    edit(model.removeNode(doc, id));
  },
});

// A canvas edit: the text is written from the new document, validated at once. The node
// form is drawn again unless the edit came from its own field (where the person still is).
function edit(next, { rerenderNode = true } = {}) {
  doc = next;
  yaml.setText(toYaml(doc));
  changed();
  renderCanvas({ rerenderNode });
  validate();
}

function changed() {
  const dirty = isDirty();
  $("editor-save").disabled = false;
  status(dirty ? "Unsaved changes" : "No changes");
}

const isDirty = () => !leaving && yaml.text() !== savedText;

function status(text) {
  const count = problems.length;
  const suffix = count ? ` · ${count} problem${count > 1 ? "s" : ""}` : " · valid";
  $("editor-state").textContent = text + (validation ? suffix : "");
}

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(validate, DEBOUNCE_MS);
}

// Validate the current text (the newest request wins); resolves to its answer.
function validate() {
  clearTimeout(timer);
  const text = yaml.text();
  if (validation?.text === text) return validation.promise;
  const promise = api("validate", { method: "POST", body: { yaml: text } }).then((answer) => {
    if (validation?.promise === promise) applyValidation(answer);
    return answer;
  });
  validation = { text, promise };
  promise.catch((error) => {
    if (validation?.promise === promise) showSaveError(error, "Could not validate");
  });
  return promise;
}

function applyValidation(answer) {
  const fromText = answer.document && JSON.stringify(answer.document) !== JSON.stringify(doc);
  setProblems(answer.problems);
  if (answer.document) doc = answer.document;
  setCanvasEnabled(Boolean(answer.document));
  // Laid out again only when the text changed the document (a canvas edit drew it already).
  if (fromText) renderCanvas({ rerenderNode: true });
  else showProblemsOnCanvas();
  changed();
}

const withText = (p) => ({ ...p, text: problemText(p) });

function setProblems(list) {
  // In text order; those without a line (not in the text) last.
  problems = list.map(withText).sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity));
  yaml.setProblems(problems);
  const items = problems.map((p) => {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "problem";
    button.textContent = `${p.line ? `Line ${p.line}: ` : ""}${p.text}`;
    button.addEventListener("click", () => {
      if (p.node_id && model.nodesOf(doc).some((n) => String(n.id) === p.node_id)) select(p.node_id);
      if (p.line) yaml.goTo(p.line);
    });
    li.append(button);
    return li;
  });
  $("problem-list").replaceChildren(...items);
  $("problems-none").hidden = problems.length > 0;
  $("problems-none").textContent = "No problems: ready to save.";
  $("problem-count").textContent = problems.length ? `(${problems.length})` : "";
  showProblemsOnCanvas();
}

function showProblemsOnCanvas() {
  if (!graph) return;
  const byNode = new Map();
  for (const p of problems) {
    if (p.node_id) byNode.set(p.node_id, [...(byNode.get(p.node_id) ?? []), p.text]);
  }
  for (const id of graph.elements.keys()) graph.setProblem(id, (byNode.get(id) ?? []).join("\n"));
  nodeForm.showProblems(problems.filter((p) => p.node_id && p.node_id === selected));
}

function setCanvasEnabled(enabled) {
  paletteView.setEnabled(enabled);
  connect.setEnabled(enabled);
  const note = $("canvas-note");
  note.hidden = enabled;
  note.textContent = enabled ? "" : "The YAML does not parse: fix it to edit on the canvas (the drawing shows the last text that did).";
  for (const control of $("node-form").elements) control.disabled = !enabled;
}

// Only what the graph can draw: nodes with an id (first of each), needs as text.
function drawable(document_) {
  const seen = new Set();
  const nodes = [];
  for (const node of model.nodesOf(document_)) {
    const id = node.id === undefined || node.id === null ? "" : String(node.id);
    if (!id || seen.has(id)) continue;
    seen.add(id);
    const needs = typeof node.needs === "string" ? [node.needs] : Array.isArray(node.needs) ? node.needs.map(String) : [];
    nodes.push({ id, type: typeof node.type === "string" ? node.type : "?", name: typeof node.name === "string" ? node.name : undefined, needs });
  }
  const edges = Array.isArray(document_?.edges) ? document_.edges.filter((e) => e && typeof e === "object").map((e) => ({ from: String(e.from), to: String(e.to), branch: e.branch ?? null })) : [];
  return { nodes, edges };
}

let drawing = null;
let drawAgain = false;

// Re-lay the graph out (one drawing at a time; the newest document wins).
async function redraw() {
  if (drawing) {
    drawAgain = true;
    return drawing;
  }
  drawing = (async () => {
    do {
      drawAgain = false;
      graph = await drawGraph($("editor-graph"), drawable(doc), { onSelect: select, label: "Workflow graph (canvas)" });
    } while (drawAgain);
    drawing = null;
    connect.dragToConnect(graph.elements);
    graph.select(selected);
    showProblemsOnCanvas();
  })();
  return drawing;
}

function renderCanvas({ rerenderNode = false } = {}) {
  connect.render(doc);
  const node = model.nodesOf(doc).find((n) => String(n.id) === selected);
  if (!node) selected = null;
  if (rerenderNode || !node) nodeForm.render(node ?? null);
  redraw();
}

function select(id) {
  selected = id;
  graph?.select(id);
  nodeForm.render(model.nodesOf(doc).find((n) => String(n.id) === id) ?? null);
  nodeForm.showProblems(problems.filter((p) => p.node_id === id));
  $("node-panel").scrollIntoView({ block: "nearest" });
}

// Where a save's problem is in the text: the validation's line for the same problem, else
// the line of its node's id or of its top-level key.
function lineOf(p) {
  const same = problems.find((q) => q.node_id === p.node_id && q.path === p.path && q.message === p.message);
  if (same?.line) return same.line;
  const lines = yaml.text().split("\n");
  const escape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const pattern = p.node_id
    ? new RegExp(`^\\s*-?\\s*id:\\s*["']?${escape(p.node_id)}["']?\\s*$`)
    : p.path ? new RegExp(`^["']?${escape(p.path.split(/[.[]/)[0])}["']?\\s*:`) : null;
  const index = pattern ? lines.findIndex((line) => pattern.test(line)) : -1;
  return index >= 0 ? index + 1 : null;
}

function showSaveError(error, title) {
  const box = $("save-error");
  const heading = document.createElement("p");
  const strong = document.createElement("strong");
  strong.textContent = `${title}: `;
  heading.append(strong, error.message);
  box.replaceChildren(heading);
  box.hidden = false;
}

// A new workflow never quietly becomes the next version of an existing one of that name.
async function refuseExisting(name) {
  if (typeof name !== "string" || !name) return;
  try {
    await api(`workflows/${encodeURIComponent(name)}`);
  } catch (error) {
    if (error instanceof ProblemError && error.status === 404) return;
    throw error;
  }
  throw new ProblemError({
    detail: `a workflow named '${name}' exists already: choose another name, or edit that workflow`,
    errors: [{ message: `a workflow named '${name}' exists already`, path: "name", node_id: null }],
  }, 409);
}

async function save() {
  const button = $("editor-save");
  button.disabled = true;
  $("save-error").hidden = true;
  status("Saving…");
  try {
    const answer = await validate();
    if (!answer.document) {
      throw new ProblemError({ detail: "the YAML does not parse; see the problems below it" }, 422);
    }
    const body = { definition: answer.document };
    if (!data.workflow) await refuseExisting(answer.document.name);
    const saved = data.workflow
      ? await api(`workflows/${encodeURIComponent(data.workflow)}`, { method: "PUT", body })
      : await api("workflows", { method: "POST", body });
    savedText = yaml.text();
    leaving = true;
    window.location.assign(`/w/${encodeURIComponent(workspace())}/workflows/${encodeURIComponent(saved.name)}`);
  } catch (error) {
    if (!(error instanceof ProblemError)) throw error;
    showSaveError(error, "Not saved");
    const renamed = error.status === 409 && data.workflow && doc?.name !== data.workflow;
    const found = error.fieldErrors.length ? error.fieldErrors : renamed ? [{ message: error.message, path: "name", node_id: null }] : [];
    if (found.length) setProblems(found.map((p) => ({ node_id: null, path: "", ...p, line: lineOf(p), column: null })));
    button.disabled = false;
    status("Unsaved changes");
  }
}

// A draft from the "Describe it" box replaces the text (asked first over unsaved changes),
// unsaved: it is validated and drawn like typed text, and Save stores it. When editing a
// workflow the draft keeps that workflow's name, so Save makes its next version.
async function loadDraft(answer) {
  if (isDirty() && !window.confirm("Replace your unsaved changes with the draft?")) return false;
  const definition = answer.definition && data.workflow ? { ...answer.definition, name: data.workflow } : answer.definition;
  yaml.setText(definition ? toYaml(definition) : answer.yaml);
  changed();
  await validate().catch(() => null); // a failed validation shows its own error
  return true;
}

if (data.drafting) {
  describePanel(
    { form: $("describe-form"), text: $("describe-text"), button: $("describe-go"), status: $("describe-status"), problems: $("describe-problems") },
    { onDraft: loadDraft },
  );
}

$("editor-save").addEventListener("click", save);
window.addEventListener("beforeunload", (event) => {
  if (!isDirty()) return;
  event.preventDefault();
  event.returnValue = "";
});

renderCanvas({ rerenderNode: true });
validate();
status("No changes");
$("editor-save").disabled = false;
