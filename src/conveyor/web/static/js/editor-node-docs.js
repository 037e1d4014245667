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

function fieldItem(name, schema, defs, required) {
  const s = resolve(schema, defs);
  const item = h("li", "node-field");
  item.dataset.field = name;
  const when = required ? "required" : s.default !== undefined ? `default ${JSON.stringify(s.default)}` : "optional";
  const facts = [typeWords(schema, defs), when, s["x-template"] ? "template" : "no template"];
  item.append(h("code", "node-field-name", name), " ", h("span", "muted", facts.join(" · ")));
  if (s.description) item.append(h("span", "node-field-description", s.description));
  return item;
}

function fieldList(type) {
  const schema = type.config_schema ?? {};
  const defs = schema.$defs ?? {};
  const properties = Object.entries(schema.properties ?? {});
  if (!properties.length) return h("p", "muted small", "No config fields.");
  const list = h("ul", "node-fields");
  list.setAttribute("aria-label", `Config fields of ${type.name}`);
  const required = new Set(schema.required ?? []);
  for (const [name, prop] of properties) list.append(fieldItem(name, prop, defs, required.has(name)));
  return list;
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
    details.append(h("h4", null, "Config"), fieldList(type));
    const shown = example(type);
    if (shown) details.append(h("h4", null, "Example"), shown);
  });
  return details;
}
