// Connecting and disconnecting nodes with a form (from, branch, to), or by dragging from one
// node to another on the graph, and the list of edges, each with its delete button.

import { branchesOf, edgesWithOrigin, nodesOf } from "./editor-model.js";

function fill(select, options, keep) {
  const value = keep ?? select.value;
  select.replaceChildren(...options.map(([v, text]) => new Option(text, v)));
  if (options.some(([v]) => v === value)) select.value = value;
}

export function connectPanel(elements, types, { onConnect, onRemoveEdge }) {
  const { form, from, branch, to, error, edges } = elements;
  let doc = null;

  function updateBranches() {
    const node = nodesOf(doc).find((n) => String(n.id) === from.value);
    const labels = branchesOf(node, types.get(node?.type));
    fill(branch, labels.length ? labels.map((l) => [l, l]) : [["", "(no branches)"]]);
    branch.disabled = !labels.length;
  }

  from.addEventListener("change", updateBranches);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const problem = onConnect(from.value, to.value, branch.disabled ? null : branch.value || null);
    error.hidden = !problem;
    error.textContent = problem ?? "";
  });

  function renderEdges() {
    const items = edgesWithOrigin(doc).map((edge) => {
      const li = document.createElement("li");
      const text = document.createElement("span");
      text.textContent = `${edge.source} → ${edge.target}${edge.branch ? ` (${edge.branch})` : ""}`;
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "button small danger";
      remove.textContent = "Delete";
      remove.setAttribute(
        "aria-label",
        `Delete edge from ${edge.source}${edge.branch ? ` (${edge.branch})` : ""} to ${edge.target}`,
      );
      remove.addEventListener("click", () => onRemoveEdge(edge.origin));
      li.append(text, remove);
      return li;
    });
    if (!items.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "No edges yet.";
      items.push(li);
    }
    edges.replaceChildren(...items);
  }

  // Dragging from one node of the graph to another fills the form: it connects at once
  // when the source has no branches, else it waits for the branch to be chosen.
  function dragToConnect(elements) {
    for (const [id, g] of elements) {
      g.addEventListener("pointerdown", (down) => {
        if (down.button !== 0 || from.disabled) return;
        down.preventDefault(); // no panning (nor the mouse events svg-pan-zoom pans with)
        g.classList.add("connecting");
        const up = (event) => {
          document.removeEventListener("pointerup", up);
          g.classList.remove("connecting");
          const target = document.elementFromPoint(event.clientX, event.clientY)?.closest("g.node");
          if (!target || target.dataset.nodeId === id) return;
          from.value = id;
          updateBranches();
          to.value = target.dataset.nodeId;
          if (branch.disabled) form.requestSubmit();
          else branch.focus();
        };
        document.addEventListener("pointerup", up);
      });
    }
  }

  return {
    dragToConnect,
    render(next) {
      doc = next;
      const ids = nodesOf(doc).map((n) => String(n.id));
      const options = ids.map((id) => [id, id]);
      fill(from, options);
      fill(to, options, to.value && ids.includes(to.value) ? to.value : ids[ids.length - 1]);
      updateBranches();
      renderEdges();
    },
    setEnabled(enabled) {
      for (const control of form.elements) control.disabled = !enabled;
      if (enabled) updateBranches();
      for (const button of edges.querySelectorAll("button")) button.disabled = !enabled;
    },
  };
}
