// Edits of a definition document (plain data as written, not normalized), each returning a
// new document: the canvas makes them, then the YAML text is written from the result.

const clone = (value) => structuredClone(value);
const needsOf = (node) => (typeof node.needs === "string" ? [node.needs] : [...(node.needs ?? [])]);

export const nodesOf = (doc) => (Array.isArray(doc?.nodes) ? doc.nodes.filter((n) => n && typeof n === "object") : []);

// A new node id for a type: "condition" -> condition_1, condition_2, ...
export function freshId(doc, type) {
  const base = (type.split(".").pop() || "node").replace(/[^A-Za-z0-9_]/g, "_").replace(/^(?=\d)/, "n");
  const taken = new Set(nodesOf(doc).map((n) => String(n.id)));
  let i = 1;
  while (taken.has(`${base}_${i}`)) i += 1;
  return `${base}_${i}`;
}

export function addNode(doc, type) {
  const next = clone(doc ?? {});
  if (!Array.isArray(next.nodes)) next.nodes = [];
  const id = freshId(next, type);
  next.nodes.push({ id, type, config: {} });
  return [next, id];
}

// Every edge with where it is written: a node's `needs` entry or the `edges` list.
export function edgesWithOrigin(doc) {
  const found = [];
  (Array.isArray(doc?.edges) ? doc.edges : []).forEach((e, index) => {
    if (e && typeof e === "object") {
      found.push({ source: String(e.from ?? ""), target: String(e.to ?? ""), branch: e.branch ?? null, origin: { edges: index } });
    }
  });
  for (const node of nodesOf(doc)) {
    needsOf(node).forEach((need, index) => {
      const [source, ...rest] = String(need).split(".");
      found.push({ source, target: String(node.id), branch: rest.length ? rest.join(".") : null, origin: { node: String(node.id), index } });
    });
  }
  return found;
}

// Connect: `to` needs `from` (or its branch). Returns [doc, problem-or-null].
export function connect(doc, from, to, branch) {
  if (!from || !to) return [doc, "choose both nodes"];
  if (from === to) return [doc, "a node cannot need itself"];
  const exists = edgesWithOrigin(doc).some(
    (e) => e.source === from && e.target === to && (e.branch ?? "") === (branch ?? ""),
  );
  if (exists) return [doc, `${to} already needs ${branch ? `${from}.${branch}` : from}`];
  const next = clone(doc);
  const node = nodesOf(next).find((n) => String(n.id) === to);
  if (!node) return [doc, `no node '${to}'`];
  node.needs = [...needsOf(node), branch ? `${from}.${branch}` : from];
  return [next, null];
}

export function removeEdge(doc, origin) {
  const next = clone(doc);
  if ("edges" in origin) {
    next.edges.splice(origin.edges, 1);
    if (!next.edges.length) delete next.edges;
    return next;
  }
  const node = nodesOf(next).find((n) => String(n.id) === origin.node);
  const needs = needsOf(node);
  needs.splice(origin.index, 1);
  if (needs.length) node.needs = needs;
  else delete node.needs;
  return next;
}

const refersTo = (need, id) => need === id || String(need).startsWith(`${id}.`);

// Delete a node and every edge to or from it.
export function removeNode(doc, id) {
  const next = clone(doc);
  next.nodes = next.nodes.filter((n) => !(n && String(n.id) === id));
  for (const node of nodesOf(next)) {
    if (node.needs === undefined) continue;
    const needs = needsOf(node).filter((need) => !refersTo(need, id));
    if (needs.length) node.needs = needs;
    else delete node.needs;
  }
  if (Array.isArray(next.edges)) {
    next.edges = next.edges.filter((e) => !(e && (String(e.from) === id || String(e.to) === id)));
    if (!next.edges.length) delete next.edges;
  }
  return next;
}

// Rename a node; what needs it follows (templates that name it are left for validation).
export function renameNode(doc, id, newId) {
  const next = clone(doc);
  for (const node of nodesOf(next)) {
    if (String(node.id) === id) node.id = newId;
    if (node.needs === undefined) continue;
    node.needs = needsOf(node).map((need) => (refersTo(need, id) ? newId + String(need).slice(id.length) : need));
  }
  for (const edge of Array.isArray(next.edges) ? next.edges : []) {
    if (String(edge.from) === id) edge.from = newId;
    if (String(edge.to) === id) edge.to = newId;
  }
  return next;
}

// Set (or with `undefined`, remove) a field of a node: ["name"], ["config", "url"], ...
export function setNodeField(doc, id, path, value) {
  const next = clone(doc);
  const node = nodesOf(next).find((n) => String(n.id) === id);
  if (!node) return next;
  let target = node;
  for (const key of path.slice(0, -1)) {
    if (target[key] === null || typeof target[key] !== "object" || Array.isArray(target[key])) target[key] = {};
    target = target[key];
  }
  const last = path[path.length - 1];
  if (value === undefined) delete target[last];
  else target[last] = value;
  return next;
}

// The branch labels a node of this type offers: fixed ones, plus its config's case keys.
export function branchesOf(node, nodeType) {
  if (!nodeType) return [];
  const labels = [...(nodeType.branches ?? [])];
  if (nodeType.branches_from) {
    const [, field] = nodeType.branches_from.split(".");
    const cases = node?.config?.[field];
    if (cases && typeof cases === "object") labels.unshift(...Object.keys(cases));
  }
  return [...new Set(labels)];
}
