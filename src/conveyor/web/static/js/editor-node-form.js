// The selected node's form: id, name, needs, and its config as fields generated from the node
// type's JSON Schema (text, number, yes/no, choice, JSON), template fields marked {{ }}.
// Each change calls onEdit(path, value) (value undefined: remove the field).

const NUMBER = /^-?\d+(\.\d+)?$/;

function resolve(schema, defs) {
  let current = schema ?? {};
  for (let depth = 0; current.$ref && depth < 20; depth += 1) {
    current = { ...defs[current.$ref.split("/").pop()], ...current, $ref: undefined };
  }
  return current;
}

// A nullable property (anyOf [X, null]) is X with the property's own title, default, marks.
function effective(schema, defs) {
  const s = resolve(schema, defs);
  const options = (s.anyOf ?? s.oneOf ?? []).filter((o) => resolve(o, defs).type !== "null");
  if (options.length !== 1) return s;
  const { anyOf, oneOf, ...outer } = s;
  return { ...resolve(options[0], defs), ...outer };
}

// What kind of control a property gets.
export function fieldKind(schema, defs = {}) {
  const s = resolve(schema, defs);
  const options = (s.anyOf ?? s.oneOf ?? []).map((o) => resolve(o, defs)).filter((o) => o.type !== "null");
  if (options.length === 1) return fieldKind({ ...options[0], "x-template": s["x-template"] }, defs);
  if (options.length > 1) {
    const types = new Set(options.flatMap((o) => (o.anyOf ? o.anyOf.map((x) => x.type) : [o.type])));
    const simple = [...types].every((t) => ["string", "number", "integer"].includes(t));
    return simple ? "text-or-number" : "any";
  }
  if (Array.isArray(s.enum)) return "enum";
  switch (s.type) {
    case "string": return "text";
    case "integer": case "number": return s["x-template"] ? "text-or-number" : "number";
    case "boolean": return "boolean";
    case "object": case "array": return "json";
    default: return "any";
  }
}

function shown(kind, value) {
  if (value === undefined || value === null) return "";
  if (kind === "json" || (kind === "any" && typeof value !== "string")) return JSON.stringify(value, null, 2);
  return String(value);
}

// The value a control's text stands for; throws on bad JSON.
function parsed(kind, text) {
  if (text.trim() === "") return undefined;
  switch (kind) {
    case "number": return Number(text);
    case "text-or-number": return NUMBER.test(text.trim()) ? Number(text) : text;
    case "json": return JSON.parse(text);
    case "any":
      try {
        return JSON.parse(text);
      } catch {
        return text;
      }
    case "boolean": return text === "true";
    default: return text;
  }
}

let counter = 0;

function field(form, { key, label, kind, schema, value, required, template, errorKey }, onChange) {
  counter += 1;
  const id = `node-field-${counter}`;
  const wrap = document.createElement("div");
  wrap.className = "field";
  const labelEl = document.createElement("label");
  labelEl.htmlFor = id;
  labelEl.textContent = label;
  if (required) {
    const req = document.createElement("span");
    req.className = "muted";
    req.textContent = " (required)";
    labelEl.append(req);
  }
  let control;
  let suggestions = null;
  if (kind === "enum" && template) {
    // A choice that may also be a template: text, with the choices offered.
    control = document.createElement("input");
    control.type = "text";
    control.value = shown(kind, value);
    suggestions = document.createElement("datalist");
    suggestions.id = `${id}-choices`;
    suggestions.append(...schema.enum.map((c) => new Option(String(c))));
    control.setAttribute("list", suggestions.id);
    if (schema.default !== undefined && schema.default !== null) control.placeholder = `default: ${schema.default}`;
  } else if (kind === "enum" || kind === "boolean") {
    control = document.createElement("select");
    const choices = kind === "boolean" ? ["true", "false"] : schema.enum.map(String);
    const fallback = schema.default !== undefined ? `(default: ${schema.default})` : "(not set)";
    control.append(new Option(fallback, ""), ...choices.map((c) => new Option(c, c)));
    control.value = value === undefined || value === null ? "" : String(value);
  } else if (kind === "json" || kind === "any" || (kind === "text" && typeof value === "string" && value.includes("\n"))) {
    control = document.createElement("textarea");
    control.rows = kind === "json" || kind === "any" ? 3 : 4;
    control.className = "code";
    control.spellcheck = false;
    control.value = shown(kind, value);
  } else {
    control = document.createElement("input");
    control.type = kind === "number" ? "number" : "text";
    if (kind === "number" && schema.type === "number") control.step = "any";
    control.value = shown(kind, value);
    if (schema.default !== undefined && schema.default !== null) control.placeholder = `default: ${schema.default}`;
  }
  control.id = id;
  control.name = key;
  const described = [];
  const hintText = [schema.description, hintFor(kind)].filter(Boolean).join(" · ");
  if (hintText || template) {
    const hint = document.createElement("p");
    hint.className = "hint muted";
    hint.id = `${id}-hint`;
    if (template) {
      const mark = document.createElement("span");
      mark.className = "template-mark";
      mark.textContent = "{{ }}";
      mark.title = "Templates allowed";
      const text = document.createElement("span");
      text.className = "sr-only";
      text.textContent = "Templates allowed. ";
      hint.append(mark, text, " ");
    }
    hint.append(hintText);
    described.push(hint.id);
    wrap.append(labelEl, control, hint);
  } else {
    wrap.append(labelEl, control);
  }
  if (suggestions) wrap.append(suggestions);
  const error = document.createElement("p");
  error.className = "field-error";
  error.id = `${id}-error`;
  error.hidden = true;
  error.dataset.errorFor = errorKey;
  wrap.append(error);
  control.setAttribute("aria-describedby", [...described, error.id].join(" "));
  control.addEventListener("change", () => {
    try {
      const next = parsed(kind, control.value);
      setError(control, error, "");
      onChange(next);
    } catch (exc) {
      setError(control, error, `not valid JSON: ${exc.message}`);
    }
  });
  form.append(wrap);
  return { control, error };
}

function hintFor(kind) {
  if (kind === "json") return "JSON";
  if (kind === "any") return "JSON, or text";
  if (kind === "text-or-number") return "text or a number";
  return "";
}

function setError(control, error, message) {
  error.textContent = message;
  error.hidden = !message;
  if (message) control.setAttribute("aria-invalid", "true");
  else control.removeAttribute("aria-invalid");
}

function fieldset(form, legendText) {
  const set = document.createElement("fieldset");
  const legend = document.createElement("legend");
  legend.textContent = legendText;
  set.append(legend);
  form.append(set);
  return set;
}

export function nodePanel({ form, none, heading }, types, { onEdit, onRename, onDelete }) {
  let fields = new Map(); // "config.url" -> {control, error}
  let general = null;

  // Drawn anew for another node, or the same one renamed: focus stays on the same field.
  function render(node) {
    const focused = form.contains(document.activeElement) ? document.activeElement.name : null;
    draw(node);
    if (focused) form.elements.namedItem(focused)?.focus?.();
  }

  function draw(node) {
    form.replaceChildren();
    fields = new Map();
    form.hidden = !node;
    none.hidden = Boolean(node);
    heading.textContent = node ? `Node ${node.id}` : "Node";
    if (!node) return;
    const type = types.get(node.type);
    general = document.createElement("ul");
    general.className = "field-error node-problems";
    general.setAttribute("aria-label", `Problems of node ${node.id}`);
    general.hidden = true;
    form.append(general);

    const basics = fieldset(form, `${type?.title ?? node.type} · ${node.type}`);
    const add = (spec, onChange) => fields.set(spec.errorKey, field(basics, spec, onChange));
    add({ key: "id", label: "Id", kind: "text", schema: {}, value: node.id, required: true, errorKey: "id" },
      (value) => onRename(node.id, value ?? ""));
    add({ key: "name", label: "Name", kind: "text", schema: {}, value: node.name, errorKey: "name" },
      (value) => onEdit(node.id, ["name"], value));
    const needs = typeof node.needs === "string" ? [node.needs] : node.needs ?? [];
    add({
      key: "needs", label: "Needs", kind: "text", schema: { description: "node ids, comma-separated; a.true needs branch true of a" },
      value: needs.join(", "), errorKey: "needs",
    }, (value) => onEdit(node.id, ["needs"], value === undefined ? undefined : value.split(",").map((s) => s.trim()).filter(Boolean)));

    const schema = type?.config_schema;
    const config = node.config && typeof node.config === "object" ? node.config : {};
    const set = fieldset(form, "Config");
    if (!schema) {
      const p = document.createElement("p");
      p.className = "muted";
      p.textContent = `Unknown node type '${node.type}': edit its config in the YAML.`;
      set.append(p);
    } else {
      const required = new Set(schema.required ?? []);
      const defs = schema.$defs ?? {};
      for (const [key, prop] of Object.entries(schema.properties ?? {})) {
        const kind = fieldKind(prop, defs);
        const spec = {
          key, label: key, kind, schema: effective(prop, defs), value: config[key],
          required: required.has(key), template: prop["x-template"] === true, errorKey: `config.${key}`,
        };
        fields.set(spec.errorKey, field(set, spec, (value) => onEdit(node.id, ["config", key], value)));
      }
    }
    const actions = document.createElement("div");
    actions.className = "row";
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "button danger";
    remove.textContent = `Delete node ${node.id}`;
    remove.addEventListener("click", () => onDelete(node.id));
    actions.append(remove);
    form.append(actions);
  }

  // problems: this node's, as {path, text}; each shown at its field, the rest above them.
  function showProblems(problems) {
    if (form.hidden) return;
    const left = [];
    const byField = new Map();
    for (const p of problems) {
      const key = [...fields.keys()].find((k) => p.path === k || p.path.startsWith(`${k}.`) || p.path.startsWith(`${k}[`));
      if (key) byField.set(key, [...(byField.get(key) ?? []), p.message]);
      else left.push(p.text);
    }
    for (const [key, { control, error }] of fields) {
      if (error.textContent.startsWith("not valid JSON")) continue;
      setError(control, error, (byField.get(key) ?? []).join("; "));
    }
    general.replaceChildren(...left.map((text) => Object.assign(document.createElement("li"), { textContent: text })));
    general.hidden = !left.length;
  }

  return { render, showProblems };
}
