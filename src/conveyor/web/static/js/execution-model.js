// What the execution page shows, computed from the API's execution detail and the step
// events (pure functions: no DOM): each node's status, its attempts, and the timeline rows.

export const LIVE = new Set(["queued", "running", "waiting"]);
const RETRIED = new Set(["failed", "interrupted"]);
const ms = (iso) => new Date(iso).getTime();
const clock = (iso) => new Date(iso).toISOString().slice(11, 19);

// The same wording as the server's ``duration`` filter: 850 ms, 2.4 s, 3 min 5 s, 2 h 10 min.
export function formatDuration(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (value < 1000) return `${Math.max(0, Math.round(value))} ms`;
  const seconds = value / 1000;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.floor(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

// Step attempts grouped per node, oldest attempt first.
export function attemptsByNode(steps) {
  const byNode = new Map();
  // Nodes in the order they started; skipped ones (no index) last.
  const index = (s) => s.step_index ?? Number.MAX_SAFE_INTEGER;
  const ordered = [...steps].sort((a, b) => index(a) - index(b) || a.attempt - b.attempt);
  for (const step of ordered) {
    if (!byNode.has(step.node_id)) byNode.set(step.node_id, []);
    byNode.get(step.node_id).push(step);
  }
  for (const list of byNode.values()) list.sort((a, b) => a.attempt - b.attempt);
  return byNode;
}

// A step copied from an earlier execution by a retry or replay (it did not run here).
export function isReused(step, execution) {
  return Boolean(step.started_at && ms(step.started_at) < ms(execution.created_at));
}

export function waitText(step) {
  const signal = step.wait_signal;
  if (signal) return signal.startsWith("child:") ? "child execution" : `signal ${signal}`;
  return step.wait_until ? `until ${clock(step.wait_until)}` : "";
}

// What a waiting node waits for, in a word (the node's box has little room).
function waitWord(step) {
  if (step.wait_signal) return step.wait_signal.startsWith("child:") ? "child" : "signal";
  return step.wait_until ? "timer" : "";
}

// [status, detail] for the graph: the latest attempt decides.
export function nodeState(attempts, execution) {
  const latest = attempts?.at(-1);
  if (!latest) return ["pending", ""];
  if (isReused(latest, execution)) return ["succeeded", "reused"];
  const attempt = latest.attempt > 1 ? `attempt ${latest.attempt}` : "";
  if (RETRIED.has(latest.status) && latest.wait_until && LIVE.has(execution.status)) {
    return ["retrying", `attempt ${latest.attempt + 1}`];
  }
  if (latest.status === "waiting") return ["waiting", waitWord(latest)];
  return [latest.status, attempt];
}

// The waits of each attempt ("node#attempt" -> [{from, to, reason}]), folded from step
// events: a step.waiting opens one, the node's next step event closes it.
export function foldWaits(waits, attempts, events) {
  for (const event of events) {
    const node = event.node_id;
    if (!node) continue;
    if (event.type === "step.started") {
      attempts.set(node, event.attempt);
      continue;
    }
    const key = `${node}#${attempts.get(node) ?? 1}`;
    const list = waits.get(key) ?? [];
    const open = list.at(-1)?.to === null ? list.at(-1) : null;
    // A wait taken up again (after a pause, a recovery) goes on: one wait, not two.
    if (event.type === "step.waiting" && open) continue;
    if (open) open.to = event.created_at;
    if (event.type === "step.waiting") {
      const reason = event.signal
        ? (event.signal.startsWith("child:") ? "waiting for a child execution" : `waiting for signal ${event.signal}`)
        : event.until ? `waiting until ${clock(event.until)}` : "waiting";
      list.push({ from: event.created_at, to: null, reason });
    }
    waits.set(key, list);
  }
}

function segmentsOf(step, next, waits, execution, now) {
  const live = LIVE.has(execution.status);
  const end = step.finished_at ?? now;
  const segments = [];
  if (step.status === "waiting") {
    segments.push({ kind: "run", label: "running", from: step.started_at, to: step.finished_at ?? now });
    if (step.finished_at) {
      segments.push({ kind: "wait", label: "waiting", from: step.finished_at, to: now, open: true, reason: waitText(step) });
    }
    return segments;
  }
  let from = step.started_at;
  for (const wait of waits.get(`${step.node_id}#${step.attempt}`) ?? []) {
    if (ms(wait.from) < ms(from) || ms(wait.from) > ms(end)) continue;
    segments.push({ kind: "run", label: "running", from, to: wait.from });
    from = wait.to ?? end;
    segments.push({ kind: "wait", label: "waiting", from: wait.from, to: from, reason: wait.reason });
  }
  segments.push({ kind: "run", label: step.status, from, to: end, open: !step.finished_at });
  if (RETRIED.has(step.status) && step.wait_until && step.finished_at && (next || live)) {
    const to = next?.started_at ?? now;
    segments.push({
      kind: "wait", label: "retry backoff", from: step.finished_at, to, open: !next,
      reason: `retry due ${clock(step.wait_until)}`,
    });
  }
  return segments.filter((s) => s.from && s.to);
}

// Rows for the timeline: {rows, start, end} in epoch milliseconds.
export function timelineModel(execution, waits, now = new Date().toISOString()) {
  const rows = [];
  let start = Infinity;
  let end = -Infinity;
  for (const [nodeId, attempts] of attemptsByNode(execution.steps)) {
    const [status, detail] = nodeState(attempts, execution);
    const row = { nodeId, status, statusText: detail === "reused" ? "reused" : status, bars: [] };
    attempts.forEach((step, i) => {
      if (!step.started_at || isReused(step, execution)) return;
      const segments = segmentsOf(step, attempts[i + 1], waits, execution, now);
      const last = segments.at(-1);
      row.bars.push({
        nodeId, attempt: step.attempt, status: step.status, segments,
        started: step.started_at, finished: last ? last.to : step.started_at, open: !step.finished_at,
      });
      for (const s of segments) {
        start = Math.min(start, ms(s.from));
        end = Math.max(end, ms(s.to));
      }
    });
    rows.push(row);
  }
  if (start === Infinity) {
    start = ms(execution.started_at ?? execution.created_at);
    end = start + 1000;
  }
  return { rows, start, end: Math.max(end, start + 50) };
}
