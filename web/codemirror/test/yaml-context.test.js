// `npm test`: the completion logic of src/yaml-context.js against the real rule-file schema
// (test/rule-file.schema.json, a copy of `omi-rules schema` output).
import { test } from "node:test"
import assert from "node:assert/strict"
import { readFileSync } from "node:fs"
import { contextAt, keyOptions, valueOptions } from "../src/yaml-context.js"

const schema = JSON.parse(readFileSync(new URL("./rule-file.schema.json", import.meta.url), "utf8"))

// Text with a "§" where the cursor is.
function at(textWithCursor) {
  const pos = textWithCursor.indexOf("§")
  return contextAt(textWithCursor.slice(0, pos) + textWithCursor.slice(pos + 1), pos)
}
const labels = (options) => options.map((o) => o.label).sort()

test("top-level keys of a one-rule file, without the ones already written", () => {
  const ctx = at("id: x\ntrigger: memory\ntr§\ndo:\n  - log: {}\n")
  assert.equal(ctx.kind, "key")
  assert.equal(ctx.word, "tr")
  const got = labels(keyOptions(schema, ctx))
  assert.ok(got.includes("when") && got.includes("cooldown"), got.join(","))
  assert.ok(!got.includes("id") && !got.includes("do") && !got.includes("trigger"), got.join(","))
})

test("rule keys inside a list file", () => {
  const ctx = at("- id: a\n  trigger: memory\n  §\n")
  assert.deepEqual(ctx.path.map((s) => s.key), [null])
  const got = labels(keyOptions(schema, ctx))
  assert.ok(got.includes("do") && got.includes("for_each") && !got.includes("id"), got.join(","))
})

test("connector names in a new `do` item, with their descriptions", () => {
  const ctx = at("trigger: memory\ndo:\n  - sl§\n")
  const options = keyOptions(schema, ctx)
  assert.deepEqual(labels(options), ["email", "home_assistant", "http", "log", "notify", "notion", "record", "slack"])
  const slack = options.find((o) => o.label === "slack")
  assert.equal(slack.detail, "connector")
  assert.match(slack.info, /Slack/)
  assert.equal(slack.shape, "mapping")
})

test("connector options under the connector key", () => {
  const ctx = at("trigger: memory\ndo:\n  - slack:\n      text: hi\n      ch§\n  - log: {}\n")
  const got = labels(keyOptions(schema, ctx))
  assert.ok(got.includes("channel") && got.includes("webhook_url"), got.join(","))
  assert.ok(!got.includes("text") && !got.includes("message"), got.join(","))
})

test("condition keys in `when`, nested `any` too", () => {
  const ctx = at("trigger: transcript\nwhen:\n  - keywords: [a]\n    sp§\n")
  assert.ok(labels(keyOptions(schema, ctx)).includes("speaker"))
  assert.ok(!labels(keyOptions(schema, ctx)).includes("keywords"))
  const nested = at("when:\n  - any:\n      - pa§\n")
  assert.ok(labels(keyOptions(schema, nested)).includes("path"))
  assert.equal(keyOptions(schema, at("§when")).find((o) => o.label === "when").shape, "list")
})

test("enum values after a key", () => {
  assert.deepEqual(labels(valueOptions(schema, at("trigger: me§"))), ["audio", "day_summary", "memory", "transcript"])
  assert.deepEqual(labels(valueOptions(schema, at("when:\n  - speaker: §"))), ["any", "others", "user"])
  assert.deepEqual(labels(valueOptions(schema, at("once_per_session: §"))), ["false", "true"])
})

test("variables inside {{ }} and {% %}, not after them", () => {
  assert.deepEqual(at('do:\n  - log:\n      message: "{{ memory.str§'), { kind: "variable", from: 32, word: "memory.str" })
  assert.equal(at("text: {% for a in summ§").kind, "variable")
  assert.equal(at('text: "{{ x }} §'), null)
})

test("no key completion inside a block scalar", () => {
  assert.equal(at("do:\n  - email:\n      text: |\n        Hello\n        Dec§\n"), null)
})
