// Small formatters the workflow page's components share: durations as the server renders
// them, and JSON blocks cut at a size a page can show.

export const EMPTY = "\u2013";
export const JSON_LIMIT = 20_000;

// "850 ms", "2.4 s", "3 min 5 s", "2 h 10 min" (render.py's duration filter).
export function duration(ms) {
  if (ms === null || ms === undefined) return EMPTY;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.floor(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

// The Run button's short form: "0.4s", "2.4s", "3m 5s".
export function shortDuration(ms) {
  if (ms === null || ms === undefined) return "";
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)}s`;
  return `${Math.floor(seconds / 60)}m ${Math.floor(seconds % 60)}s`;
}

export const percent = (rate) => (rate === null || rate === undefined ? EMPTY : `${Math.round(rate * 100)} %`);

function size(chars) {
  return chars < 1_000_000 ? `${Math.round(chars / 1000)} KB` : `${(chars / 1_000_000).toFixed(1)} MB`;
}

export function element(name, attrs = {}, ...children) {
  const node = document.createElement(name);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

// A <pre> of ``value`` as indented JSON; past JSON_LIMIT characters, the start of it, a note
// and a link to ``fullUrl`` (the API answer that holds the whole value).
export function jsonBlock(value, fullUrl, label) {
  const text = JSON.stringify(value, null, 2) ?? "null";
  const block = element("div", { class: "json-block" });
  const pre = element("pre", { class: "json", tabindex: "0", "aria-label": label });
  pre.textContent = text.length > JSON_LIMIT ? `${text.slice(0, JSON_LIMIT)}\n…` : text;
  block.append(pre);
  if (text.length > JSON_LIMIT) {
    const note = element("p", { class: "muted small" }, `Showing the first ${size(JSON_LIMIT)} of ${size(text.length)}. `);
    note.append(element("a", { href: fullUrl, text: "The full value (JSON from the API)" }));
    block.append(note);
  }
  return block;
}

export function timeElement(iso) {
  if (!iso) return document.createTextNode(EMPTY);
  const date = new Date(iso);
  return element("time", { datetime: iso, text: date.toISOString().slice(0, 19).replace("T", " ") + " UTC" });
}
