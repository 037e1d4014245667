// A JSON viewer: a collapsible tree (nested <details>, children rendered when first opened),
// a Copy button (clipboard API) and a download of the full value. It stays fast for a
// multi-megabyte payload: one expansion renders at most NODE_BUDGET values and CHAR_BUDGET
// characters, then says it is truncated and offers the whole value as a download; a payload
// the API left out of a summary (over 64 KiB) is only offered as a download.

const NODE_BUDGET = 2000;
const CHAR_BUDGET = 50_000;
const STRING_MAX = 2000;
const OPEN_DEPTH = 2;

function h(tag, className, text) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text !== undefined) element.textContent = text;
  return element;
}

const isContainer = (v) => v !== null && typeof v === "object";

function summaryText(value) {
  if (Array.isArray(value)) return `[…] ${value.length} item${value.length === 1 ? "" : "s"}`;
  const n = Object.keys(value).length;
  return `{…} ${n} key${n === 1 ? "" : "s"}`;
}

function primitive(value, budget) {
  if (typeof value === "string") {
    const text = value.length > STRING_MAX ? `${value.slice(0, STRING_MAX)}…` : value;
    budget.chars += text.length + 2;
    if (value.length > STRING_MAX) budget.cut = true;
    return h("span", "j-str", JSON.stringify(text));
  }
  const text = value === null ? "null" : String(value);
  budget.chars += text.length;
  return h("span", value === null ? "j-null" : `j-${typeof value}`, text);
}

function keyLabel(key) {
  if (key === null) return null;
  return h("span", "j-key", typeof key === "number" ? `${key}` : JSON.stringify(key));
}

// One entry: `key: value`, a <details> for objects and arrays.
function entry(key, value, depth, budget, download) {
  const li = h("li");
  const label = keyLabel(key);
  if (!isContainer(value)) {
    if (label) li.append(label, ": ");
    li.append(primitive(value, budget));
    return li;
  }
  const details = h("details");
  const summary = h("summary");
  if (label) summary.append(label, ": ");
  summary.append(h("span", "j-meta", summaryText(value)));
  details.append(summary);
  let filled = false;
  const fill = (own) => {
    if (filled) return;
    filled = true;
    details.append(children(value, depth + 1, own, download));
  };
  if (depth < OPEN_DEPTH && budget.nodes < NODE_BUDGET && budget.chars < CHAR_BUDGET) {
    details.open = true;
    fill(budget);
  } else {
    // Opened later: that expansion has a budget of its own.
    details.addEventListener("toggle", () => details.open && fill(newBudget()), { once: false });
  }
  li.append(details);
  return li;
}

function children(value, depth, budget, download) {
  const list = h("ul", "j-list");
  const keys = Array.isArray(value) ? value.map((_, i) => i) : Object.keys(value);
  for (let i = 0; i < keys.length; i += 1) {
    if (budget.nodes >= NODE_BUDGET || budget.chars >= CHAR_BUDGET) {
      list.append(truncated(keys.length - i, download));
      budget.cut = true;
      break;
    }
    budget.nodes += 1;
    list.append(entry(keys[i], value[keys[i]], depth, budget, download));
  }
  return list;
}

const newBudget = () => ({ nodes: 0, chars: 0, cut: false });

function truncated(more, download) {
  const li = h("li", "j-truncated");
  li.append(`… ${more} more not shown (truncated) — `);
  li.append(downloadControl(download, "download the full value"));
  return li;
}

// A link to the server's download of the value when there is one, else a button that saves
// the value the page holds.
function downloadControl(download, text) {
  if (typeof download === "string") {
    const link = h("a", "download-link", text);
    link.href = download;
    link.setAttribute("download", "");
    return link;
  }
  const button = h("button", "button small link", text);
  button.type = "button";
  button.addEventListener("click", () => download());
  return button;
}

// The API's stand-in for a payload too big to send with the execution (``summary=true``).
export const isPlaceholder = (value) =>
  isContainer(value) && !Array.isArray(value) && value.truncated === true &&
  typeof value.bytes === "number" && Object.keys(value).length === 2;

function kilobytes(bytes) {
  return bytes >= 1_048_576 ? `${(bytes / 1_048_576).toFixed(1)} MB` : `${Math.ceil(bytes / 1024)} KB`;
}

function saveAs(name, text) {
  const url = URL.createObjectURL(new Blob([text], { type: "application/json" }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

async function copy(button, text) {
  const label = button.textContent;
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = "Copied";
  } catch {
    button.textContent = "Copy failed";
  }
  setTimeout(() => { button.textContent = label; }, 2000);
}

// The viewer of ``value``; ``label`` names it for buttons ("Copy output of fetch"),
// ``file`` the name of a download saved from the page; ``href`` the server's download of the
// full value (preferred: a summary's stand-in for a big payload has only that).
export function jsonViewer(value, { label = "value", file = "value.json", href = null } = {}) {
  const root = h("div", "json-view");
  const download = href ?? (() => saveAs(file, text()));
  if (isPlaceholder(value)) {
    const note = h("p", "j-note", `Too large to show here (${kilobytes(value.bytes)}). `);
    const link = downloadControl(download, "Download the full value");
    link.setAttribute("aria-label", `Download ${label} (the full value)`);
    note.append(link);
    root.append(note);
    return root;
  }
  const text = () => JSON.stringify(value, null, 2) ?? "null";
  const tools = h("div", "json-tools");
  const copyButton = h("button", "button small", "Copy");
  copyButton.type = "button";
  copyButton.setAttribute("aria-label", `Copy ${label}`);
  copyButton.addEventListener("click", () => copy(copyButton, text()));
  const save = downloadControl(download, "Download");
  save.classList.add("button", "small");
  save.setAttribute("aria-label", `Download ${label}`);
  tools.append(copyButton, save);
  root.append(tools);
  const budget = newBudget();
  if (!isContainer(value)) {
    const line = h("div", "j-root");
    line.append(primitive(value, budget));
    root.append(line);
  } else {
    const tree = h("ul", "j-list j-root");
    budget.nodes += 1;
    tree.append(entry(null, value, 0, budget, download));
    root.append(tree);
  }
  if (budget.cut) {
    const note = h("p", "j-note", "Truncated: this value is too large to show whole. ");
    note.append(downloadControl(download, "Download the full value"));
    root.prepend(note);
  }
  return root;
}
