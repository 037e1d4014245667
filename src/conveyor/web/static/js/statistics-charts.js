// The statistics charts: executions and failures, and duration p50/p95, per bucket of time,
// drawn by Chart.js (global `Chart`, vendored) from the page's JSON island. Colours come from
// the stylesheet's variables, so light and dark both hold; times follow the chosen format.
// update() takes fresh data (statistics-live.js) and redraws the charts in place.

import { island } from "./api.js";
import { timeFormat } from "./times.js";

let data = island("statistics-data");
const drawn = [];

const cssVar = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

function bucketLabel(iso, unit) {
  // Day buckets are whole UTC days: naming them in UTC keeps each on its own date.
  const utc = unit === "day" || timeFormat() === "utc";
  const options =
    unit === "day"
      ? { month: "short", day: "numeric" }
      : unit === "hour"
        ? { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" }
        : { hour: "2-digit", minute: "2-digit" };
  if (utc) options.timeZone = "UTC";
  const text = new Intl.DateTimeFormat(undefined, options).format(new Date(iso));
  return utc && unit !== "day" ? `${text} UTC` : text;
}

function duration(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const seconds = ms / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.floor(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

function baseOptions(colours) {
  return {
    animation: false,
    responsive: true,
    maintainAspectRatio: false,
    interaction: { mode: "index", intersect: false },
    plugins: {
      legend: { labels: { color: colours.text, boxWidth: 12 } },
      tooltip: {},
    },
    scales: {
      x: {
        ticks: { color: colours.muted, maxRotation: 0, autoSkip: true, autoSkipPadding: 12 },
        grid: { color: colours.grid },
      },
      y: {
        beginAtZero: true,
        ticks: { color: colours.muted },
        grid: { color: colours.grid },
      },
    },
  };
}

function executionsChart(canvas, labels, buckets, colours) {
  const options = baseOptions(colours);
  options.scales.y.ticks.precision = 0;
  return new Chart(canvas, {
    type: "bar",
    data: {
      labels,
      datasets: [
        {
          label: "Executions",
          data: buckets.map((b) => b.executions),
          backgroundColor: colours.accent,
        },
        {
          label: "Failed",
          data: buckets.map((b) => b.failed),
          backgroundColor: colours.failed,
        },
      ],
    },
    options,
  });
}

function durationsChart(canvas, labels, buckets, colours) {
  const options = baseOptions(colours);
  options.scales.y.ticks.callback = (value) => duration(value);
  options.plugins.tooltip.callbacks = {
    label: (item) => `${item.dataset.label}: ${duration(item.parsed.y)}`,
  };
  const line = (label, key, colour) => ({
    label,
    data: buckets.map((b) => b[key]),
    borderColor: colour,
    backgroundColor: colour,
    pointRadius: 2,
    spanGaps: true,
  });
  return new Chart(canvas, {
    type: "line",
    data: {
      labels,
      datasets: [line("p50", "p50_ms", colours.accent), line("p95", "p95_ms", colours.p95)],
    },
    options,
  });
}

function draw() {
  for (const chart of drawn.splice(0)) chart.destroy();
  if (!data || typeof Chart === "undefined") return;
  const colours = {
    text: cssVar("--text"),
    muted: cssVar("--muted"),
    grid: cssVar("--border"),
    accent: cssVar("--accent"),
    failed: cssVar("--failed"),
    p95: cssVar("--timed_out"),
  };
  const labels = data.buckets.map((b) => bucketLabel(b.start, data.unit));
  const charts = [
    ["chart-executions", executionsChart],
    ["chart-durations", durationsChart],
  ];
  for (const [id, make] of charts) {
    const canvas = document.getElementById(id);
    if (!canvas) continue;
    drawn.push(make(canvas, labels, data.buckets, colours));
    canvas.dataset.drawn = "true";
  }
}

// New data for the same charts: their bars and lines change in place (no flash, no resize).
export function update(next) {
  data = next;
  if (drawn.length === 0) {
    draw();
    return;
  }
  const labels = data.buckets.map((b) => bucketLabel(b.start, data.unit));
  const [executions, durations] = drawn;
  const series = [
    [executions, ["executions", "failed"]],
    [durations, ["p50_ms", "p95_ms"]],
  ];
  for (const [chart, keys] of series) {
    if (!chart) continue;
    chart.data.labels = labels;
    keys.forEach((key, i) => {
      chart.data.datasets[i].data = data.buckets.map((b) => b[key]);
    });
    chart.update("none");
  }
}

draw();
window.matchMedia("(prefers-color-scheme: dark)").addEventListener("change", draw);
document.getElementById("time-format")?.addEventListener("change", draw);
