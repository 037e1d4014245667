// The tabs under the workflow page (versions, triggers, settings): the WAI-ARIA tab pattern,
// with arrow keys, Home and End moving between tabs.

export function initTabs(root) {
  if (!root) return;
  const tabs = [...root.querySelectorAll('[role="tab"]')];
  const select = (tab, focus = true) => {
    for (const other of tabs) {
      const selected = other === tab;
      other.setAttribute("aria-selected", String(selected));
      other.tabIndex = selected ? 0 : -1;
      document.getElementById(other.getAttribute("aria-controls")).hidden = !selected;
    }
    if (focus) tab.focus();
  };
  // A link to a panel (#panel-triggers) opens its tab.
  const wanted = tabs.find((t) => `#${t.getAttribute("aria-controls")}` === location.hash);
  if (wanted) select(wanted, false);
  root.addEventListener("click", (e) => {
    const tab = e.target.closest('[role="tab"]');
    if (tab) select(tab, false);
  });
  root.querySelector('[role="tablist"]').addEventListener("keydown", (e) => {
    const index = tabs.indexOf(document.activeElement);
    if (index < 0) return;
    const next = { ArrowRight: index + 1, ArrowLeft: index - 1, Home: 0, End: tabs.length - 1 }[e.key];
    if (next === undefined) return;
    e.preventDefault();
    select(tabs[(next + tabs.length) % tabs.length]);
  });
}
