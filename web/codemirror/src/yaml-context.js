// What to complete at a cursor in a rule file, worked out from the text alone (no DOM, no
// CodeMirror), so `npm test` can check it under plain node.
//
// YAML nesting is read from indentation: walking up from the cursor line, every line that
// starts left of the current block is an ancestor. Each "- " is a list item step, each
// "key:" a key step. The path is then resolved against the rule file's JSON Schema
// ($ref, oneOf, anyOf and allOf are followed; variants are merged).

const KEY_LINE = /^(\s*)((?:-\s+)*)([A-Za-z_][\w-]*)\s*:(?:\s|$)/
const DASHES_ONLY = /^(\s*)((?:-(?:\s+|$))+)/

// The steps one line contributes: [{col, key}] where key is null for a "- " item.
function lineSteps(line) {
  const steps = []
  const match = KEY_LINE.exec(line) || DASHES_ONLY.exec(line)
  if (!match) {
    const indent = /^\s*/.exec(line)[0].length
    return { indent, steps, blockScalar: false }
  }
  let col = match[1].length
  const dashes = match[2] || ""
  for (let i = 0; i < dashes.length; i++) {
    if (dashes[i] === "-") steps.push({ col: col + i, key: null })
  }
  col += dashes.length
  if (match[3] !== undefined && KEY_LINE.test(line)) steps.push({ col, key: match[3] })
  const blockScalar = /:\s*[|>][-+0-9]*\s*(#.*)?$/.test(line)
  return { indent: match[1].length, steps, blockScalar }
}

function isSkippable(line) {
  return /^\s*(#.*)?$/.test(line) || /^\s*(---|\.\.\.)\s*$/.test(line)
}

// The ancestors of a position that starts at column `limit` on line `lineIndex`:
// a list of steps, outermost first; null when the position is inside a block scalar.
export function ancestorsOf(lines, lineIndex, limit) {
  const path = []
  for (let i = lineIndex - 1; i >= 0 && limit > 0; i--) {
    const line = lines[i]
    if (isSkippable(line)) continue
    const { indent, steps, blockScalar } = lineSteps(line)
    if (indent >= limit) continue
    const outer = steps.filter((step) => step.col < limit)
    if (outer.length === 0) return null // a plain scalar line left of us: not a mapping
    const innermost = outer[outer.length - 1]
    if (innermost.key !== null && blockScalar) return null // inside `key: |` text
    path.unshift(...outer)
    limit = indent
  }
  return path
}

// Keys already written in the mapping whose keys sit at column `col`, around line `lineIndex`.
export function siblingKeys(lines, lineIndex, col) {
  const keys = new Set()
  const collect = (i) => {
    const { indent, steps } = lineSteps(lines[i])
    for (const step of steps) if (step.col === col && step.key) keys.add(step.key)
    return indent
  }
  for (let i = lineIndex - 1; i >= 0; i--) {
    if (isSkippable(lines[i])) continue
    const indent = collect(i)
    if (indent < col) break // this line opened the mapping (e.g. "- key:") or is its parent
  }
  for (let i = lineIndex + 1; i < lines.length; i++) {
    if (isSkippable(lines[i])) continue
    const { indent, steps } = lineSteps(lines[i])
    if (indent < col) break // a parent, or the next "- " item of the enclosing list
    for (const step of steps) if (step.col === col && step.key) keys.add(step.key)
  }
  return keys
}

// Where the cursor is: {kind: "variable", from, word} inside {{ }} or {% %};
// {kind: "key", from, word, path, col, siblings} where a mapping key is being typed;
// {kind: "value", from, word, path} right after "key: "; or null.
export function contextAt(text, pos) {
  const lineStart = text.lastIndexOf("\n", pos - 1) + 1
  const before = text.slice(lineStart, pos)
  const openTag = Math.max(before.lastIndexOf("{{"), before.lastIndexOf("{%"))
  const closeTag = Math.max(before.lastIndexOf("}}"), before.lastIndexOf("%}"))
  if (openTag >= 0 && openTag > closeTag) {
    const word = /[\w.]*$/.exec(before)[0]
    return { kind: "variable", from: pos - word.length, word }
  }
  const lines = text.split("\n")
  const lineIndex = text.slice(0, lineStart).split("\n").length - 1
  const keyMatch = /^(\s*)((?:-\s+)*)([A-Za-z_][\w-]*)?$/.exec(before)
  if (keyMatch) {
    const word = keyMatch[3] || ""
    const col = before.length - word.length
    const own = []
    const dashes = keyMatch[2]
    for (let i = 0; i < dashes.length; i++) {
      if (dashes[i] === "-") own.push({ col: keyMatch[1].length + i, key: null })
    }
    const ancestors = ancestorsOf(lines, lineIndex, keyMatch[1].length)
    if (ancestors === null) return null
    const siblings = siblingKeys(lines, lineIndex, col)
    siblings.delete(word)
    return { kind: "key", from: pos - word.length, word, path: [...ancestors, ...own], col, siblings }
  }
  const valueMatch = /^(\s*)((?:-\s+)*)([A-Za-z_][\w-]*)\s*:\s+([\w.-]*)$/.exec(before)
  if (valueMatch) {
    const word = valueMatch[4]
    const own = []
    for (let i = 0; i < valueMatch[2].length; i++) {
      if (valueMatch[2][i] === "-") own.push({ col: valueMatch[1].length + i, key: null })
    }
    const ancestors = ancestorsOf(lines, lineIndex, valueMatch[1].length)
    if (ancestors === null) return null
    const keyCol = valueMatch[1].length + valueMatch[2].length
    const path = [...ancestors, ...own, { col: keyCol, key: valueMatch[3] }]
    return { kind: "value", from: pos - word.length, word, path }
  }
  return null
}

// ---- JSON Schema side ------------------------------------------------------------------

function deref(root, schema) {
  let seen = 0
  while (schema && typeof schema.$ref === "string" && seen++ < 32) {
    const parts = schema.$ref.replace(/^#\//, "").split("/")
    let target = root
    for (const part of parts) target = target ? target[part] : undefined
    schema = target
  }
  return schema
}

// Every concrete variant a schema can be (oneOf / anyOf / allOf flattened, $refs followed).
export function variants(root, schema, depth = 0) {
  schema = deref(root, schema)
  if (!schema || typeof schema !== "object" || depth > 16) return []
  const nested = [...(schema.oneOf || []), ...(schema.anyOf || []), ...(schema.allOf || [])]
  if (nested.length === 0) return [schema]
  const own = { ...schema }
  delete own.oneOf
  delete own.anyOf
  delete own.allOf
  const result = nested.flatMap((child) => variants(root, child, depth + 1))
  if (own.properties || own.items || own.enum || own.type) result.push(own)
  return result
}

// The schemas a path of steps leads to (possibly several, when variants differ).
export function resolvePath(root, path) {
  let current = [root]
  for (const step of path) {
    const next = []
    for (const schema of current) {
      for (const variant of variants(root, schema)) {
        if (step.key === null) {
          if (variant.items) next.push(variant.items)
        } else if (variant.properties && variant.properties[step.key]) {
          next.push(variant.properties[step.key])
        }
      }
    }
    current = next
    if (current.length === 0) break
  }
  return current
}

// What a value of this schema looks like: "mapping", "list" or "scalar" (decides what the
// completion inserts after "key:").
export function shapeOf(root, schema) {
  const kinds = variants(root, schema).map((v) =>
    v.properties || v.type === "object" ? "mapping" : v.items || v.type === "array" ? "list" : "scalar",
  )
  if (kinds.includes("scalar") || kinds.length === 0) return "scalar"
  return kinds.includes("list") ? "list" : "mapping"
}

// Key completions for a context of kind "key": [{label, detail, info, shape}].
export function keyOptions(root, ctx) {
  const options = new Map()
  for (const schema of resolvePath(root, ctx.path)) {
    for (const variant of variants(root, schema)) {
      if (!variant.properties) continue
      for (const [name, prop] of Object.entries(variant.properties)) {
        if (options.has(name) || ctx.siblings.has(name)) continue
        const target = deref(root, prop)
        const info = variant.title === name ? variant.description : target && target.description
        options.set(name, {
          label: name,
          detail: variant.title === name ? "connector" : undefined,
          info: info || undefined,
          shape: shapeOf(root, prop),
        })
      }
    }
  }
  return [...options.values()]
}

// Value completions for a context of kind "value": enum members and booleans.
export function valueOptions(root, ctx) {
  const values = new Set()
  for (const schema of resolvePath(root, ctx.path)) {
    for (const variant of variants(root, schema)) {
      for (const member of variant.enum || []) if (typeof member === "string") values.add(member)
      if (variant.type === "boolean") {
        values.add("true")
        values.add("false")
      }
    }
  }
  return [...values].map((label) => ({ label }))
}
