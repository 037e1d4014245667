// The editor's "Describe it" box: a description goes to the generate endpoint (the configured
// LLM drafts a definition, the validator's problems go back to it a few times), and the draft
// is handed to the editor to show, unsaved. A spinner and a live status while the LLM works.

import { ProblemError, api } from "./api.js";

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

// els: {form, text, button, status, problems}; onDraft(answer) loads the draft into the
// editor and resolves to false when the person chose to keep their text instead.
export function describePanel(els, { onDraft }) {
  const spinner = els.button.querySelector(".spinner");
  let busy = false;

  function say(text, { error = false } = {}) {
    els.status.textContent = text;
    els.status.classList.toggle("error", error);
  }

  function listProblems(problems) {
    els.problems.replaceChildren(...problems.map((p) => {
      const li = document.createElement("li");
      const where = [p.node_id ? `node '${p.node_id}'` : "", p.path].filter(Boolean).join(", ");
      li.textContent = where ? `${where}: ${p.message}` : p.message;
      return li;
    }));
    els.problems.hidden = problems.length === 0;
  }

  function setBusy(on) {
    busy = on;
    els.button.disabled = on;
    els.text.readOnly = on;
    spinner.hidden = !on;
    els.form.setAttribute("aria-busy", String(on));
  }

  async function draft(event) {
    event.preventDefault();
    const description = els.text.value.trim();
    if (busy || !description) return;
    setBusy(true);
    listProblems([]);
    say("Drafting… the LLM can take a minute.");
    try {
      const answer = await api("generate", { method: "POST", body: { description } });
      const attempts = plural(answer.attempts, "attempt");
      if (!(await onDraft(answer))) {
        say("Draft discarded: your text is unchanged.");
      } else if (answer.valid) {
        say(`Drafted in ${attempts}. Not saved yet: check the graph and the YAML, then Save.`);
      } else {
        listProblems(answer.problems);
        say(`Drafted in ${attempts}, but ${plural(answer.problems.length, "problem")} remain${answer.problems.length === 1 ? "s" : ""}: fix them below, or describe it again. Not saved.`, { error: true });
      }
    } catch (error) {
      if (!(error instanceof ProblemError)) throw error;
      say(`Could not draft: ${error.message}`, { error: true });
    } finally {
      setBusy(false);
    }
  }

  els.form.addEventListener("submit", draft);
}
