// The YAML view: CodeMirror 6 (our bundle) with YAML highlighting (our colours), each problem a lint
// diagnostic at its line. Its <style> elements carry the page's CSP nonce.

import {
  EditorState, EditorView, basicSetup, classHighlighter, lintGutter, setDiagnostics,
  syntaxHighlighting, yaml,
} from "../vendor/codemirror-6.0.2/codemirror.bundle.js";

const nonce = () => document.querySelector('meta[name="csp-nonce"]')?.content ?? "";

// Typing over a selection lets Chromium's own editing keep the old text's look with style=""
// attributes, which the CSP refuses (a console error each time; CodeMirror redraws the lines
// anyway). Such edits are made here instead, as CodeMirror's own transactions.
const replaceSelection = EditorView.domEventHandlers({
  beforeinput(event, view) {
    const { state } = view;
    if (state.selection.ranges.every((r) => r.empty) || view.composing) return false;
    const insert = event.inputType === "insertText" ? event.data ?? ""
      : event.inputType.startsWith("deleteContent") || event.inputType === "deleteByCut" ? "" : null;
    if (insert === null) return false;
    event.preventDefault();
    view.dispatch(state.replaceSelection(insert), {
      scrollIntoView: true, userEvent: insert ? "input.type" : "delete.selection",
    });
    return true;
  },
});

// onChange(text) runs after each edit a person makes (not after setText).
export function yamlView(parent, text, { onChange, label = "Definition (YAML)" }) {
  let quiet = false;
  const view = new EditorView({
    parent,
    state: EditorState.create({
      doc: text,
      extensions: [
        basicSetup,
        yaml(),
        // tok-* classes, coloured by editor.css for light and dark alike
        syntaxHighlighting(classHighlighter),
        lintGutter(),
        EditorView.cspNonce.of(nonce()),
        replaceSelection,
        EditorView.lineWrapping,
        EditorView.contentAttributes.of({ "aria-label": label }),
        EditorView.updateListener.of((update) => {
          if (update.docChanged && !quiet) onChange(update.state.doc.toString());
        }),
      ],
    }),
  });
  return {
    view,
    text: () => view.state.doc.toString(),
    // Replace the whole text (after a canvas edit); the cursor stays near where it was.
    setText(next) {
      if (next === view.state.doc.toString()) return;
      const head = Math.min(view.state.selection.main.head, next.length);
      quiet = true;
      try {
        view.dispatch({ changes: { from: 0, to: view.state.doc.length, insert: next }, selection: { anchor: head } });
      } finally {
        quiet = false;
      }
    },
    // problems: [{line, column, text}] (1-based; a problem without a line is not shown here)
    setProblems(problems) {
      const doc = view.state.doc;
      const diagnostics = [];
      for (const p of problems) {
        if (!p.line) continue;
        const line = doc.line(Math.min(Math.max(p.line, 1), doc.lines));
        const from = Math.min(line.from + Math.max((p.column ?? 1) - 1, 0), line.to);
        diagnostics.push({ from, to: line.to > from ? line.to : from, severity: "error", message: p.text });
      }
      view.dispatch(setDiagnostics(view.state, diagnostics));
    },
    goTo(lineNumber) {
      const doc = view.state.doc;
      const line = doc.line(Math.min(Math.max(lineNumber, 1), doc.lines));
      view.dispatch({ selection: { anchor: line.from }, scrollIntoView: true });
      view.focus();
    },
  };
}
