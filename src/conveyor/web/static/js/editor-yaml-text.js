// Plain JSON data as YAML text, block style, for the editor's canvas edits (js-yaml is not
// vendored and a definition is only JSON data: maps, lists, strings, numbers, booleans, null).
// Strings stay plain only when no YAML reader could take them for anything else (not even
// YAML 1.1's yes/no/on/off); any other string is a JSON string, which YAML reads the same.
// Multi-line text becomes a literal block (|) when that keeps it exactly.

const PLAIN = /^[A-Za-z_][A-Za-z0-9_./-]*(?: [A-Za-z0-9_./-]+)*$/;
const RESERVED = new Set(["null", "true", "false", "yes", "no", "on", "off"]);

const isEmpty = (value) =>
  Array.isArray(value) ? value.length === 0 : Object.keys(value).length === 0;

function isInline(value) {
  return value === null || typeof value !== "object" || isEmpty(value);
}

function number(value) {
  if (!Number.isFinite(value)) throw new TypeError(`JSON has no ${value}`);
  const text = String(Object.is(value, -0) ? 0 : value);
  // YAML 1.1 readers (PyYAML) take 1e+21 as text: a float needs a dot before its exponent.
  return /e/.test(text) && !text.includes(".") ? text.replace("e", ".0e") : text;
}

export function quote(text) {
  return PLAIN.test(text) && !RESERVED.has(text.toLowerCase()) ? text : JSON.stringify(text);
}

function inline(value) {
  if (value === null) return "null";
  if (typeof value === "boolean") return String(value);
  if (typeof value === "number") return number(value);
  if (typeof value === "string") return quote(value);
  if (Array.isArray(value)) return "[]";
  return "{}";
}

// A literal block keeps the text exactly when no line has leading space on the first line,
// trailing blanks, or a carriage return, and it ends with at most one newline.
function literal(text) {
  if (!text.includes("\n") || /\r/.test(text) || /^[ \t]/.test(text)) return null;
  const body = text.endsWith("\n") ? text.slice(0, -1) : text;
  if (body.endsWith("\n") || body === "") return null;
  const lines = body.split("\n");
  if (lines.some((line) => /[ \t]$/.test(line))) return null;
  return { indicator: text.endsWith("\n") ? "|" : "|-", lines };
}

// `value` after "key:" or "-": " scalar" on the same line, else the lines below.
function after(value, indent) {
  if (typeof value === "string") {
    const block = literal(value);
    if (block) {
      const pad = " ".repeat(indent + 2);
      return [` ${block.indicator}`, ...block.lines.map((line) => (line ? pad + line : ""))];
    }
  }
  if (isInline(value)) return [` ${inline(value)}`];
  return ["", ...lines(value, indent + 2)];
}

function join(head, rest) {
  const [first, ...more] = rest;
  return [head + first, ...more];
}

function lines(value, indent) {
  const pad = " ".repeat(indent);
  const out = [];
  if (Array.isArray(value)) {
    for (const item of value) {
      if (item !== null && typeof item === "object" && !Array.isArray(item) && !isEmpty(item)) {
        // "- key: value" with the item's other keys under the first one
        const [first, ...rest] = lines(item, indent + 2);
        out.push(`${pad}- ${first.slice(indent + 2)}`, ...rest);
      } else {
        out.push(...join(`${pad}-`, after(item, indent + 2)));
      }
    }
    return out;
  }
  for (const [key, item] of Object.entries(value)) {
    out.push(...join(`${pad}${quote(key)}:`, after(item, indent)));
  }
  return out;
}

// The whole document: a mapping (or any JSON value) as YAML text ending with a newline.
export function toYaml(value) {
  if (isInline(value)) return `${inline(value)}\n`;
  return `${lines(value, 0).join("\n")}\n`;
}
