// Drives demo.html: builds an editor, exercises the API, and writes what it saw into
// <pre id="report"> (one "name: value" per line) so a headless --dump-dom shows it.
const report = {}
const violations = []
document.addEventListener("securitypolicyviolation", (e) => {
  violations.push(`${e.violatedDirective} ${e.blockedURI || ""}`.trim())
})
function write() {
  report.csp_violations = violations.length ? violations.join(" | ") : "none"
  document.getElementById("report").textContent = Object.entries(report)
    .map(([k, v]) => `${k}: ${v}`)
    .join("\n")
}

fetch("../codemirror/test/rule-file.schema.json")
  .then((r) => r.json())
  .then((schema) => {
    let changes = 0
    const editor = OmiCodeMirror.createYamlEditor(document.getElementById("editor"), {
      doc: "id: demo\ntrigger: memory\ndo:\n  - log:\n      message: \"{{ memory.structured.title }}\"\n",
      onChange: () => changes++,
      schema,
      variables: () => ["memory.structured.title", "memory.structured.overview", "uid"],
    })
    report.api = Object.keys(editor).sort().join(",")
    report.rendered_lines = document.querySelectorAll(".cm-line").length
    report.line_numbers = document.querySelectorAll(".cm-lineNumbers .cm-gutterElement").length
    report.editor_display = getComputedStyle(document.querySelector(".cm-editor")).display
    report.style_elements = document.querySelectorAll("style").length
    report.adopted_style_sheets = document.adoptedStyleSheets.length
    editor.setText("id: demo\ntrigger: memory\nbogus: 1\ndo:\n  - \n")
    report.onchange_after_setText = changes
    editor.setDiagnostics([{ line: 3, column: 1, message: "unknown key 'bogus'", severity: "error" }])
    report.lint_markers = document.querySelectorAll(".cm-lint-marker-error").length
    report.lint_underline = document.querySelectorAll(".cm-lintRange-error").length
    // Type a connector name the way a user would (the browser's own editing command).
    editor.focus()
    const content = document.querySelector(".cm-content")
    const sel = getSelection()
    const lastLine = document.querySelectorAll(".cm-line")[4]
    sel.collapse(lastLine, lastLine.childNodes.length)
    document.execCommand("insertText", false, "sl")
    setTimeout(() => {
      report.onchange_after_typing = changes
      const options = [...document.querySelectorAll(".cm-tooltip-autocomplete li")].map((li) => li.textContent)
      report.completion_options = options.join(",") || "none"
      report.text_after_typing = JSON.stringify(editor.getText())
      write()
    }, 1000)
    write()
  })
  .catch((err) => {
    report.error = String(err)
    write()
  })
