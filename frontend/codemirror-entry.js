// What the workflow editor needs from CodeMirror 6, bundled into one ES module by build.sh
// (src/conveyor/web/static/vendor/codemirror-<version>/codemirror.bundle.js).
export { basicSetup, minimalSetup } from "codemirror";
export { EditorView, keymap, placeholder } from "@codemirror/view";
export { EditorState, Compartment } from "@codemirror/state";
export { syntaxHighlighting } from "@codemirror/language";
export { classHighlighter } from "@lezer/highlight";
export { yaml } from "@codemirror/lang-yaml";
export { linter, lintGutter, setDiagnostics, forEachDiagnostic, diagnosticCount } from "@codemirror/lint";
