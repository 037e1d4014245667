// The timeline (a Gantt chart) of every step attempt: one row per node, a bar per attempt
// from its start to its end, its waits (waiting for a signal or a time, retry backoff)
// hatched; hover for exact times; zoom with the buttons or Ctrl + wheel. The same attempts
// are listed in a plain table for keyboards and screen readers.

import { formatDuration } from "./execution-model.js";

const SVG = "http://www.w3.org/2000/svg";
const ROW = 30;
const BAR = 18;
const AXIS = 24;
const MIN_WIDTH = 160;

function el(name, attrs = {}, parent = null) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) element.setAttribute(key, value);
  if (parent) parent.append(element);
  return element;
}

const time = (iso) => (iso ? new Date(iso).toISOString().slice(11, 23) : "–");
const ms = (iso) => new Date(iso).getTime();

function tip(bar, segment) {
  const lines = [`${bar.nodeId} · attempt ${bar.attempt} · ${segment.label}`];
  lines.push(`from ${time(segment.from)} to ${segment.open ? "now" : time(segment.to)} UTC`);
  lines.push(formatDuration(ms(segment.to) - ms(segment.from)));
  if (segment.reason) lines.push(segment.reason);
  return lines.join("\n");
}

export function createTimeline(container, table, { onSelect }) {
  let zoom = 1;
  let last = null;
  const labels = document.createElement("ol");
  labels.className = "timeline-labels";
  // The table of attempts says the same to screen readers; the drawing is for eyes.
  labels.setAttribute("aria-hidden", "true");
  const scroller = document.createElement("div");
  scroller.className = "timeline-scroll";
  scroller.tabIndex = 0; // scrolled sideways with the keyboard when zoomed
  scroller.setAttribute("role", "img");
  scroller.setAttribute("aria-label", "Timeline of step attempts (the same attempts are listed in the table)");
  container.replaceChildren(labels, scroller);

  function draw(model) {
    last = model;
    const { rows, start, end } = model;
    container.hidden = false;
    const span = Math.max(end - start, 1);
    const width = Math.max(scroller.clientWidth - 8, MIN_WIDTH) * zoom;
    const x = (iso) => ((ms(iso) - start) / span) * width;
    const svg = el("svg", {
      width, height: AXIS + rows.length * ROW, "aria-hidden": "true", focusable: "false",
    });
    const ticks = Math.min(Math.max(Math.floor(width / 110), 2), 12); // labels never touch
    for (let i = 0; i <= ticks; i += 1) {
      const at = (width * i) / ticks;
      el("line", { x1: at, x2: at, y1: AXIS - 4, y2: AXIS + rows.length * ROW, class: "tick" }, svg);
      const label = el("text", {
        x: Math.min(Math.max(at, 2), width - 2), y: 14, class: "tick-label",
        "text-anchor": i === 0 ? "start" : i === ticks ? "end" : "middle",
      }, svg);
      label.textContent = `+${formatDuration((span * i) / ticks)}`;
    }
    labels.replaceChildren();
    rows.forEach((row, index) => {
      const li = document.createElement("li");
      li.dataset.nodeId = row.nodeId;
      const name = document.createElement("span");
      name.className = "timeline-node";
      name.textContent = row.nodeId;
      const status = document.createElement("span");
      status.className = `badge status-${row.status}`;
      status.textContent = row.statusText;
      li.append(name, status);
      labels.append(li);
      const y = AXIS + index * ROW + (ROW - BAR) / 2;
      const group = el("g", { class: "timeline-row", "data-node-id": row.nodeId }, svg);
      group.addEventListener("click", () => onSelect(row.nodeId));
      for (const bar of row.bars) {
        for (const segment of bar.segments) {
          const left = x(segment.from);
          const w = Math.max(x(segment.to) - left, 2);
          const rect = el("rect", {
            x: left, y, width: w, height: BAR, rx: 3,
            class: `bar ${segment.kind} status-${bar.status}`,
            "data-attempt": bar.attempt,
          }, group);
          el("title", {}, rect).textContent = tip(bar, segment);
          if (segment.kind === "run" && w > 64) {
            const text = el("text", { x: left + 5, y: y + 13, class: "bar-text" }, group);
            text.textContent = bar.attempt > 1 ? `${bar.status} #${bar.attempt}` : bar.status;
          }
        }
      }
    });
    scroller.replaceChildren(svg);
    if (!table.hidden) fillTable(model);
  }

  // Filled only while shown (and when shown): nobody reads a hidden table.
  function fillTable(model) {
    const body = table.querySelector("tbody");
    body.replaceChildren();
    for (const row of model.rows) {
      for (const bar of row.bars) {
        const tr = document.createElement("tr");
        const waited = bar.segments.filter((s) => s.kind === "wait")
          .reduce((sum, s) => sum + (ms(s.to) - ms(s.from)), 0);
        const cells = [
          row.nodeId, String(bar.attempt), bar.status,
          `${time(bar.started)} UTC`, bar.open ? "–" : `${time(bar.finished)} UTC`,
          formatDuration(ms(bar.finished) - ms(bar.started)), waited ? formatDuration(waited) : "–",
        ];
        cells.forEach((text, i) => {
          const cell = document.createElement(i === 0 ? "th" : "td");
          if (i === 0) cell.scope = "row";
          cell.textContent = text;
          tr.append(cell);
        });
        body.append(tr);
      }
    }
  }

  function setZoom(next) {
    const center = (scroller.scrollLeft + scroller.clientWidth / 2) / Math.max(scroller.scrollWidth, 1);
    zoom = Math.min(Math.max(next, 1), 64);
    if (last) draw(last);
    scroller.scrollLeft = center * scroller.scrollWidth - scroller.clientWidth / 2;
  }

  scroller.addEventListener("wheel", (e) => {
    if (!e.ctrlKey) return;
    e.preventDefault();
    setZoom(zoom * (e.deltaY < 0 ? 1.25 : 0.8));
  }, { passive: false });
  let width = 0;
  new ResizeObserver(() => {
    // Only a new width needs a new drawing (a redraw never changes the width: no loop).
    if (scroller.clientWidth === width) return;
    width = scroller.clientWidth;
    if (last) requestAnimationFrame(() => draw(last));
  }).observe(scroller);

  return {
    draw,
    showTable: () => last && fillTable(last),
    zoomIn: () => setZoom(zoom * 1.5),
    zoomOut: () => setZoom(zoom / 1.5),
    fit: () => setZoom(1),
  };
}
