// The palette: every registered node type, searchable; choosing one adds a node. Each entry
// shows the type's description and opens its reference (config fields, an example).

import { nodeDocs } from "./editor-node-docs.js";
import { badgeFor } from "./graph.js";

function item(type, onAdd) {
  const li = document.createElement("li");
  li.dataset.search = [type.name, type.title, type.category, type.description].join(" ").toLowerCase();
  const button = document.createElement("button");
  button.type = "button";
  button.className = "palette-item";
  button.dataset.type = type.name;
  const badge = document.createElement("span");
  badge.className = "palette-badge";
  badge.setAttribute("aria-hidden", "true");
  badge.textContent = badgeFor(type.name);
  const add = document.createElement("span");
  add.className = "sr-only";
  add.textContent = "Add ";
  const title = document.createElement("span");
  title.className = "palette-title";
  title.textContent = type.title;
  const name = document.createElement("code");
  name.textContent = type.name;
  const description = document.createElement("span");
  description.className = "palette-description muted";
  description.textContent = type.description;
  button.append(badge, add, title, " ", name, description);
  button.addEventListener("click", () => onAdd(type.name));
  li.append(button, nodeDocs(type));
  return li;
}

export function palette({ search, list }, nodeTypes, onAdd) {
  list.replaceChildren(...nodeTypes.map((type) => item(type, onAdd)));
  const empty = document.createElement("li");
  empty.className = "muted";
  empty.textContent = "No node type matches.";
  empty.hidden = true;
  list.append(empty);
  search.addEventListener("input", () => {
    const words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const li of list.querySelectorAll("li[data-search]")) {
      li.hidden = !words.every((w) => li.dataset.search.includes(w));
      shown += li.hidden ? 0 : 1;
    }
    empty.hidden = shown > 0;
  });
  return {
    setEnabled(enabled) {
      for (const button of list.querySelectorAll("button.palette-item")) button.disabled = !enabled;
    },
  };
}
