// The Run form's fields: one labelled control per property of the workflow's input schema
// (``input:`` in the definition: string, number, integer, boolean, enum) or, without a
// schema, a JSON editor. Pre-filled with the last execution's input; problems from the API
// (422 with ``errors`` at ``input.<field>``, 413, 400) are shown at the field they concern,
// and nothing typed is ever cleared.

import { element } from "./workflow-format.js";

const SIMPLE = new Set(["string", "number", "integer", "boolean"]);

const isSchemaForm = (schema) =>
  schema && typeof schema === "object" && (schema.type === "object" || schema.type === undefined) &&
  schema.properties && typeof schema.properties === "object" && Object.keys(schema.properties).length > 0;

// "input.amount", "body.input.amount", "input[0]" -> "amount" (or "" for the whole input).
export function fieldOf(path) {
  const rest = String(path ?? "").replace(/^body\./, "");
  if (rest === "input") return "";
  if (!rest.startsWith("input.")) return null;
  return rest.slice("input.".length).split(/[.[]/)[0];
}

function errorSlot(id) {
  return element("p", { class: "field-error", id: `${id}-error`, hidden: true });
}

function setError(control, slot, message) {
  slot.textContent = message ?? "";
  slot.hidden = !message;
  if (message) control.setAttribute("aria-invalid", "true");
  else control.removeAttribute("aria-invalid");
}

function describedBy(...ids) {
  return ids.filter(Boolean).join(" ");
}

function jsonEditor(container, lastInput) {
  const id = "run-input";
  const textarea = element("textarea", {
    id, name: "input", rows: "8", class: "code", spellcheck: "false",
    "aria-describedby": describedBy(`${id}-hint`, `${id}-error`),
  });
  textarea.value = JSON.stringify(lastInput ?? {}, null, 2);
  const slot = errorSlot(id);
  container.replaceChildren(
    element("label", { for: id, text: "Input (JSON)" }),
    element("p", { class: "muted small", id: `${id}-hint`, text: "Pre-filled with the last execution's input; available to nodes as {{ input }}." }),
    textarea,
    slot,
  );
  return {
    focus: () => textarea.focus(),
    read() {
      try {
        const value = textarea.value.trim() ? JSON.parse(textarea.value) : {};
        setError(textarea, slot, null);
        return { ok: true, value };
      } catch (err) {
        setError(textarea, slot, `Not valid JSON: ${err.message}`);
        textarea.focus();
        return { ok: false };
      }
    },
    showProblems(problems, general) {
      const lines = problems.map((p) => (fieldOf(p.path) ? `${fieldOf(p.path)}: ${p.message}` : p.message));
      setError(textarea, slot, lines.length ? lines.join("\n") : general);
      textarea.focus();
    },
    clear: () => setError(textarea, slot, null),
  };
}

function control(name, prop, required, value) {
  const id = `input-${name}`;
  const hint = prop.description ? `${id}-hint` : null;
  const aria = { "aria-describedby": describedBy(hint, `${id}-error`), "aria-required": required ? "true" : null };
  let input;
  if (Array.isArray(prop.enum)) {
    input = element("select", { id, name, ...aria });
    if (!required) input.append(element("option", { value: "", text: "(none)" }));
    prop.enum.forEach((option, index) => {
      const opt = element("option", { value: String(index), text: String(option) });
      if (JSON.stringify(option) === JSON.stringify(value)) opt.selected = true;
      input.append(opt);
    });
  } else if (prop.type === "boolean") {
    input = element("input", { id, name, type: "checkbox", ...aria });
    input.checked = value === true;
  } else if (prop.type === "number" || prop.type === "integer") {
    input = element("input", { id, name, type: "number", step: prop.type === "integer" ? "1" : "any", ...aria });
    if (value !== undefined && value !== null) input.value = String(value);
  } else if (SIMPLE.has(prop.type)) {
    input = element("input", { id, name, type: "text", ...aria });
    if (value !== undefined && value !== null) input.value = String(value);
  } else {
    // Objects, arrays, untyped: a small JSON field of its own.
    input = element("textarea", { id, name, rows: "3", class: "code", spellcheck: "false", ...aria });
    if (value !== undefined) input.value = JSON.stringify(value, null, 2);
  }
  const label = element("label", { for: id }, prop.title || name);
  if (required) label.append(element("span", { class: "muted", text: " (required)" }));
  const field = element("div", { class: `field${prop.type === "boolean" ? " field-check" : ""}` });
  field.append(...(prop.type === "boolean" ? [input, label] : [label, input]));
  if (hint) field.append(element("p", { class: "muted small", id: hint, text: prop.description }));
  const slot = errorSlot(id);
  field.append(slot);
  return { name, prop, input, slot, field, required };
}

function readControl(c) {
  const { input, prop } = c;
  if (Array.isArray(prop.enum)) return input.value === "" ? { skip: true } : { value: prop.enum[Number(input.value)] };
  if (prop.type === "boolean") return { value: input.checked };
  if (input.value.trim() === "") return { skip: true };
  if (prop.type === "number" || prop.type === "integer") {
    const number = Number(input.value);
    if (!Number.isFinite(number) || (prop.type === "integer" && !Number.isInteger(number))) {
      return { error: prop.type === "integer" ? "enter a whole number" : "enter a number" };
    }
    return { value: number };
  }
  if (input.tagName === "TEXTAREA") {
    try {
      return { value: JSON.parse(input.value) };
    } catch (err) {
      return { error: `not valid JSON: ${err.message}` };
    }
  }
  return { value: input.value };
}

function schemaForm(container, schema, lastInput, formError) {
  const required = new Set(Array.isArray(schema.required) ? schema.required : []);
  const last = lastInput && typeof lastInput === "object" && !Array.isArray(lastInput) ? lastInput : {};
  // Required fields first, in the order ``required`` lists them (an array keeps its order
  // in every store; PostgreSQL's JSONB does not keep the order of ``properties``' keys).
  const names = Object.keys(schema.properties);
  const ordered = [...[...required].filter((n) => names.includes(n)), ...names.filter((n) => !required.has(n))];
  const controls = ordered.map((name) => {
    const prop = schema.properties[name];
    return control(name, prop ?? {}, required.has(name), name in last ? last[name] : prop?.default);
  });
  container.replaceChildren(...controls.map((c) => c.field));
  const byName = new Map(controls.map((c) => [c.name, c]));
  const showGeneral = (message) => {
    formError.textContent = message ?? "";
    formError.hidden = !message;
  };
  return {
    focus: () => controls[0]?.input.focus(),
    read() {
      const value = {};
      let first = null;
      for (const c of controls) {
        const read = readControl(c);
        let message = read.error ?? null;
        if (!message && read.skip && c.required) message = "a value is required";
        setError(c.input, c.slot, message);
        if (message) first ??= c.input;
        else if (!read.skip) value[c.name] = read.value;
      }
      showGeneral(null);
      if (first) {
        first.focus();
        return { ok: false };
      }
      return { ok: true, value };
    },
    showProblems(problems, general) {
      const elsewhere = [];
      let first = null;
      for (const p of problems) {
        const c = byName.get(fieldOf(p.path));
        if (c) {
          setError(c.input, c.slot, p.message);
          first ??= c.input;
        } else {
          elsewhere.push(p.message);
        }
      }
      showGeneral(elsewhere.length ? elsewhere.join("; ") : problems.length ? null : general);
      (first ?? controls[0]?.input)?.focus();
    },
    clear() {
      for (const c of controls) setError(c.input, c.slot, null);
      showGeneral(null);
    },
  };
}

// The fields in ``container``; ``formError`` shows problems no field owns.
export function inputForm(container, schema, lastInput, formError) {
  return isSchemaForm(schema) ? schemaForm(container, schema, lastInput, formError) : jsonEditor(container, lastInput);
}
