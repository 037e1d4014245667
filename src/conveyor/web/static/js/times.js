// Every <time datetime> on the page, shown local, UTC or relative as the user chose (kept in
// localStorage); new <time> elements added by live updates are formatted too.

const KEY = "conveyor.time-format";
const relative = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
const local = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

export const timeFormat = () => localStorage.getItem(KEY) || "local";

function ago(date) {
  const seconds = (date.getTime() - Date.now()) / 1000;
  const steps = [[60, "second"], [60, "minute"], [24, "hour"], [30, "day"], [12, "month"]];
  let value = seconds;
  for (const [size, unit] of steps) {
    if (Math.abs(value) < size) return relative.format(Math.round(value), unit);
    value /= size;
  }
  return relative.format(Math.round(value), "year");
}

export function formatTime(iso, format = timeFormat()) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  if (format === "utc") return `${date.toISOString().slice(0, 19).replace("T", " ")} UTC`;
  if (format === "relative") return ago(date);
  return local.format(date);
}

export function formatTimes(root = document) {
  const format = timeFormat();
  for (const element of root.querySelectorAll("time[datetime]")) {
    element.textContent = formatTime(element.getAttribute("datetime"), format);
    element.title = element.getAttribute("datetime");
  }
}

export function initTimes() {
  const select = document.getElementById("time-format");
  if (select) {
    select.value = timeFormat();
    select.addEventListener("change", () => {
      localStorage.setItem(KEY, select.value);
      formatTimes();
    });
  }
  formatTimes();
  setInterval(() => timeFormat() === "relative" && formatTimes(), 30000);
  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) {
        if (node.nodeType === 1) formatTimes(node.matches?.("time") ? node.parentNode : node);
      }
    }
  }).observe(document.body, { childList: true, subtree: true });
}
