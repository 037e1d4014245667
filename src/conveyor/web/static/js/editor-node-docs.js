// A node type's reference in the palette: its config fields (name, type, required or its
// default, whether it takes a template, description) from the catalog's JSON Schema, and
// its example node as YAML. Built when the disclosure is first opened.

import { toYaml } from "./editor-yaml-text.js";

function h(tag, className, text) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text !== undefined) element.textContent = text;
  return element;
}

function resolve(schema, defs) {
  let current = schema ?? {};
  for (let depth = 0; current.$ref && depth < 20; depth += 1) {
    current = { ...defs[current.$ref.split("/").pop()], ...current, $ref: undefined };
  }
  return current;
}

// A schema's type in a few words: "string", "integer or string", "one of: a, b", "list of object".
export function typeWords(schema, defs = {}, depth = 0) {
  const s = resolve(schema, defs);
  if (depth > 5) return "any";
  if (Array.isArray(s.enum)) return `one of: ${s.enum.map((v) => JSON.stringify(v)).join(", ")}`;
  if (s.const !== undefined) return JSON.stringify(s.const);
  const options = s.anyOf ?? s.oneOf;
  if (Array.isArray(options)) {
    const words = [...new Set(options.map((o) => typeWords(o, defs, depth + 1)))];
    return words.filter((w) => w !== "null").join(" or ") + (words.includes("null") ? " (optional)" : "");
  }
  if (s.type === "array") return s.items ? `list of ${typeWords(s.items, defs, depth + 1)}` : "list";
  if (s.type === "object") {
    const values = s.additionalProperties;
    return values && typeof values === "object" && Object.keys(values).some((k) => k !== "x-template")
      ? `map of ${typeWords(values, defs, depth + 1)}` : s.title && s.properties ? s.title : "object";
  }
  if (Array.isArray(s.type)) return s.type.join(" or ");
  return s.type ?? "any";
}

function fieldRow(name, schema, defs, required) {
  const s = resolve(schema, defs);
  const row = h("tr");
  row.dataset.field = name;
  const head = h("th", null);
  head.scope = "row";
  head.append(h("code", null, name));
  const when = required ? "required" : s.default !== undefined ? `default ${JSON.stringify(s.default)}` : "optional";
  row.append(
    head,
    h("td", null, typeWords(schema, defs)),
    h("td", null, when),
    h("td", null, s["x-template"] ? "yes" : "no"),
    h("td", null, s.description ?? ""),
  );
  return row;
}

function fieldTable(type) {
  const schema = type.config_schema ?? {};
  const defs = schema.$defs ?? {};
  const properties = Object.entries(schema.properties ?? {});
  if (!properties.length) return h("p", "muted small", "No config fields.");
  const table = h("table", "data node-fields");
  const caption = h("caption", "sr-only", `Config fields of ${type.name}`);
  const head = h("thead");
  const headRow = h("tr");
  for (const title of ["Field", "Type", "Required", "Template", "Description"]) {
    const th = h("th", null, title);
    th.scope = "col";
    headRow.append(th);
  }
  head.append(headRow);
  const body = h("tbody");
  const required = new Set(schema.required ?? []);
  for (const [name, prop] of properties) body.append(fieldRow(name, prop, defs, required.has(name)));
  table.append(caption, head, body);
  const wrap = h("div", "table-wrap");
  wrap.tabIndex = 0;
  wrap.setAttribute("role", "region");
  wrap.setAttribute("aria-label", `Config fields of ${type.name}`);
  wrap.append(table);
  return wrap;
}

function example(type) {
  if (!type.example) return null;
  let text;
  try {
    text = toYaml([type.example]);
  } catch {
    text = JSON.stringify(type.example, null, 2);
  }
  const pre = h("pre", "node-example", text);
  pre.tabIndex = 0;
  pre.setAttribute("aria-label", `Example ${type.name} node`);
  return pre;
}

// A <details> with the type's reference, filled in when first opened.
export function nodeDocs(type) {
  const details = h("details", "node-docs");
  const summary = h("summary", null, "Fields and example");
  summary.setAttribute("aria-label", `Fields and example of ${type.name}`);
  details.append(summary);
  details.addEventListener("toggle", () => {
    if (!details.open || details.dataset.filled) return;
    details.dataset.filled = "true";
    const flags = [];
    if (type.repeatable === false) flags.push("not repeatable: one attempt unless a retry policy is given");
    if (type.waits) flags.push("waits without running code");
    if (type.branches?.length) flags.push(`branches: ${type.branches.join(", ")}`);
    if (type.branches_from) flags.push(`branch labels from ${type.branches_from}`);
    if (flags.length) details.append(h("p", "muted small", flags.join(" · ")));
    details.append(h("h4", null, "Config"), fieldTable(type));
    const shown = example(type);
    if (shown) details.append(h("h4", null, "Example"), shown);
  });
  return details;
}
