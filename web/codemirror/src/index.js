// window.OmiCodeMirror: the YAML rule editor of the omi-rules web UI.
//
//   const editor = OmiCodeMirror.createYamlEditor(parentElement, {
//     doc: "id: x\n...",                 // initial text
//     onChange: (text) => {},           // called after each edit by the user (not by setText)
//     schema: {...},                    // JSON Schema of a rule file (`omi-rules schema`)
//     variables: () => ["memory.structured.title", ...],  // names for {{ }} completion
//   })
//   editor.getText()                    // the current text
//   editor.setText(text)                // replace the whole text; does NOT call onChange
//   editor.setDiagnostics([{line, column, message, severity}])  // 1-based; replaces all
//   editor.focus()

import { EditorState, Annotation } from "@codemirror/state"
import {
  EditorView,
  keymap,
  lineNumbers,
  highlightActiveLineGutter,
  highlightSpecialChars,
  drawSelection,
  highlightActiveLine,
} from "@codemirror/view"
import { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands"
import {
  indentOnInput,
  syntaxHighlighting,
  defaultHighlightStyle,
  bracketMatching,
  foldGutter,
  foldKeymap,
} from "@codemirror/language"
import { searchKeymap, highlightSelectionMatches } from "@codemirror/search"
import {
  autocompletion,
  completionKeymap,
  closeBrackets,
  closeBracketsKeymap,
} from "@codemirror/autocomplete"
import { lintGutter, lintKeymap, setDiagnostics } from "@codemirror/lint"
import { yaml } from "@codemirror/lang-yaml"
import { contextAt, keyOptions, valueOptions } from "./yaml-context.js"

// Marks transactions made by setText, so the update listener does not report them.
const external = Annotation.define()

function ruleCompletions(getSchema, getVariables) {
  return (context) => {
    const text = context.state.doc.toString()
    const ctx = contextAt(text, context.pos)
    if (!ctx) return null
    if (ctx.kind === "variable") {
      const names = getVariables()
      if (!names.length) return null
      return {
        from: ctx.from,
        options: names.map((name) => ({ label: name, type: "variable" })),
        validFor: /^[\w.]*$/,
      }
    }
    const schema = getSchema()
    if (!schema) return null
    if (!ctx.word && !context.explicit && ctx.kind === "value") return null
    if (ctx.kind === "key") {
      const line = context.state.doc.lineAt(context.pos)
      const indent = " ".repeat(ctx.col + 2)
      const options = keyOptions(schema, ctx).map((opt) => ({
        label: opt.label,
        type: "property",
        detail: opt.detail,
        info: opt.info,
        apply:
          opt.shape === "mapping"
            ? `${opt.label}:\n${indent}`
            : opt.shape === "list"
              ? `${opt.label}:\n${indent}- `
              : `${opt.label}: `,
      }))
      if (!options.length) return null
      // Typing on an empty line should not pop a list up unasked; after a letter it may.
      if (!ctx.word && !context.explicit && line.text.trim() !== "-") return null
      return { from: ctx.from, options, validFor: /^[\w-]*$/ }
    }
    const options = valueOptions(schema, ctx).map((opt) => ({ ...opt, type: "enum" }))
    return options.length ? { from: ctx.from, options, validFor: /^[\w.-]*$/ } : null
  }
}

function toDiagnostics(doc, items) {
  const result = []
  for (const item of items || []) {
    const lineNumber = Math.min(Math.max(1, Number(item.line) || 1), doc.lines)
    const line = doc.line(lineNumber)
    const column = Math.max(1, Number(item.column) || 1)
    const from = line.from + Math.min(column - 1, line.length)
    result.push({
      from,
      to: Math.max(from, line.to),
      severity: ["error", "warning", "info", "hint"].includes(item.severity) ? item.severity : "error",
      message: String(item.message ?? ""),
    })
  }
  return result
}

export function createYamlEditor(parent, opts = {}) {
  const onChange = typeof opts.onChange === "function" ? opts.onChange : null
  const getVariables = () => {
    try {
      const names = typeof opts.variables === "function" ? opts.variables() : opts.variables
      return Array.isArray(names) ? names.map(String) : []
    } catch (err) {
      console.error("OmiCodeMirror: variables() failed", err)
      return []
    }
  }
  const state = EditorState.create({
    doc: opts.doc == null ? "" : String(opts.doc),
    extensions: [
      lineNumbers(),
      highlightActiveLineGutter(),
      highlightSpecialChars(),
      history(),
      foldGutter(),
      lintGutter(),
      drawSelection(),
      EditorState.allowMultipleSelections.of(true),
      EditorState.tabSize.of(2),
      indentOnInput(),
      syntaxHighlighting(defaultHighlightStyle, { fallback: true }),
      bracketMatching(),
      closeBrackets(),
      autocompletion({ override: [ruleCompletions(() => opts.schema, getVariables)] }),
      highlightActiveLine(),
      highlightSelectionMatches(),
      keymap.of([
        ...closeBracketsKeymap,
        ...defaultKeymap,
        ...searchKeymap,
        ...historyKeymap,
        ...foldKeymap,
        ...completionKeymap,
        ...lintKeymap,
        indentWithTab,
      ]),
      yaml(),
      EditorView.lineWrapping,
      EditorView.updateListener.of((update) => {
        if (!onChange || !update.docChanged) return
        if (update.transactions.some((tr) => tr.annotation(external))) return
        onChange(update.state.doc.toString())
      }),
    ],
  })
  const view = new EditorView({ state, parent })
  return {
    getText: () => view.state.doc.toString(),
    setText(text) {
      text = text == null ? "" : String(text)
      if (text === view.state.doc.toString()) return
      view.dispatch({
        changes: { from: 0, to: view.state.doc.length, insert: text },
        annotations: external.of(true),
      })
      view.dispatch(setDiagnostics(view.state, []))
    },
    setDiagnostics(items) {
      view.dispatch(setDiagnostics(view.state, toDiagnostics(view.state.doc, items)))
    },
    focus: () => view.focus(),
  }
}
