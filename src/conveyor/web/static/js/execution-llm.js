// An LLM step (llm.chat, llm.agent, or any step whose output has an LLM's shape) on the
// execution page: its prompt, its response text, the model, token counts and, for agents,
// the turns it took. Whatever is missing is left out; whatever has an unexpected shape is
// shown as JSON, never dropped.

import { isPlaceholder } from "./execution-json.js";

export const LLM_TYPES = new Set(["llm.chat", "llm.agent"]);
const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);

function h(tag, className, text) {
  const element = document.createElement(tag);
  if (className) element.className = className;
  if (text !== undefined) element.textContent = text;
  return element;
}

export function isLlmStep(step) {
  const output = step.output;
  if (LLM_TYPES.has(step.node_type)) return true;
  return isObject(output) && !isPlaceholder(output) && typeof output.model === "string" && isObject(output.usage);
}

// A message's content as text: a string, or the text parts of a list of parts.
function contentText(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) {
    const texts = content.map((p) => (typeof p === "string" ? p : isObject(p) && typeof p.text === "string" ? p.text : null));
    if (texts.every((t) => t !== null)) return texts.join("\n");
  }
  if (content === null || content === undefined) return "";
  return JSON.stringify(content, null, 2);
}

function message(role, content, extra = null) {
  const item = h("li", `llm-message llm-${String(role).replace(/[^a-z_-]/gi, "")}`);
  item.append(h("span", "llm-role", String(role)));
  const text = contentText(content);
  if (text) item.append(h("div", "llm-text", text));
  if (extra !== null && extra !== undefined) item.append(h("pre", "llm-json", JSON.stringify(extra, null, 2)));
  return item;
}

// The prompt: `messages` as given, or `system` and `prompt`.
function promptMessages(input) {
  if (!isObject(input)) return [];
  const list = [];
  if (typeof input.system === "string" && input.system) list.push(["system", input.system]);
  if (Array.isArray(input.messages)) {
    for (const m of input.messages) {
      if (isObject(m)) list.push([m.role ?? "message", m.content ?? m.text ?? "", m.tool_calls ?? null]);
      else list.push(["message", m]);
    }
  }
  if (input.prompt !== undefined && input.prompt !== null) list.push(["user", input.prompt]);
  return list;
}

function turnsOf(output) {
  const turns = output.transcript ?? output.turns;
  return Array.isArray(turns) ? turns : [];
}

function turn(entry, index) {
  if (!isObject(entry)) return message(`turn ${index + 1}`, entry);
  const role = entry.role ?? entry.type ?? `turn ${index + 1}`;
  const content = entry.content ?? entry.text ?? entry.output ?? entry.result ?? "";
  const rest = Object.fromEntries(Object.entries(entry).filter(([k]) => !["role", "type", "content", "text", "output", "result"].includes(k)));
  return message(role, content, Object.keys(rest).length ? rest : null);
}

function facts(output) {
  const usage = isObject(output.usage) ? output.usage : {};
  const list = h("dl", "llm-facts");
  const add = (term, value, field) => {
    if (value === undefined || value === null || value === "") return;
    const row = h("div");
    const dd = h("dd", null, String(value));
    if (field) dd.dataset.llm = field;
    row.append(h("dt", null, term), dd);
    list.append(row);
  };
  add("Model", output.model, "model");
  add("Input tokens", usage.input_tokens, "input_tokens");
  add("Output tokens", usage.output_tokens, "output_tokens");
  add("Cached tokens", usage.cached_tokens, "cached_tokens");
  add("Finish reason", output.finish_reason, "finish_reason");
  return list;
}

function titled(title, ...children) {
  const section = h("section", "llm-block");
  section.append(h("h4", null, title), ...children);
  return section;
}

// The LLM view of one attempt, or null when the step is not an LLM step.
export function llmPart(step) {
  if (!isLlmStep(step)) return null;
  const section = h("section", "step-part llm-part");
  section.append(h("h3", null, "LLM"));
  const prompt = promptMessages(isPlaceholder(step.input) ? null : step.input);
  if (prompt.length) {
    const list = h("ol", "llm-messages");
    for (const [role, content, extra] of prompt) list.append(message(role, content, extra));
    section.append(titled("Prompt", list));
  }
  const output = isObject(step.output) && !isPlaceholder(step.output) ? step.output : null;
  if (output) {
    const turns = turnsOf(output);
    if (turns.length) {
      const list = h("ol", "llm-messages");
      turns.forEach((entry, i) => list.append(turn(entry, i)));
      section.append(titled(`Turns (${turns.length})`, list));
    }
    if (typeof output.text === "string") {
      const text = h("div", "llm-text llm-response", output.text || "(empty)");
      section.append(titled("Response", text));
    }
    if (Array.isArray(output.tool_calls) && output.tool_calls.length) {
      section.append(titled("Tool calls", h("pre", "llm-json", JSON.stringify(output.tool_calls, null, 2))));
    }
    section.append(facts(output));
  }
  return section;
}
