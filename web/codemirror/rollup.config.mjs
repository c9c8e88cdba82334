// Builds ../static/vendor/codemirror.js: one minified IIFE that sets window.OmiCodeMirror.
// The banner names every npm package inside the bundle with its version from
// package-lock.json; tests/test_static_bundle.py fails when they disagree (a stale bundle).
import { readFileSync } from "node:fs"
import { nodeResolve } from "@rollup/plugin-node-resolve"
import terser from "@rollup/plugin-terser"

const lock = JSON.parse(readFileSync(new URL("./package-lock.json", import.meta.url), "utf8"))

function packageOf(id) {
  const match = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(id.replace(/\\/g, "/"))
  return match ? match[1] : null
}

function banner(chunk) {
  const names = [...new Set(chunk.moduleIds.map(packageOf).filter(Boolean))].sort()
  const versions = names.map((name) => {
    const entry = lock.packages[`node_modules/${name}`]
    if (!entry) throw new Error(`${name} is bundled but missing from package-lock.json`)
    return ` *   ${name}@${entry.version}`
  })
  return [
    "/*! omi-rules YAML editor (window.OmiCodeMirror), built from web/codemirror/",
    " * by `cd web/codemirror && npm ci && npm run build`. Do not edit by hand.",
    " * CodeMirror 6 and Lezer: MIT licence, (c) Marijn Haverbeke and others.",
    " * Bundled packages:",
    ...versions,
    " */",
  ].join("\n")
}

// style-mod (CodeMirror's CSS injector) writes a <style> element into a document, which a
// Content-Security-Policy of `style-src 'self'` blocks; it only uses a constructable
// stylesheet (document.adoptedStyleSheets, not subject to style-src) for shadow roots.
// Make it prefer the constructable stylesheet for documents too, and fail the build if
// a new style-mod version no longer has the line this patches.
function constructableStyles() {
  const from = "if (!root.head && root.adoptedStyleSheets && win.CSSStyleSheet) {"
  const to = "if (root.adoptedStyleSheets && win.CSSStyleSheet) {"
  return {
    name: "style-mod-constructable-stylesheets",
    transform(code, id) {
      if (packageOf(id) !== "style-mod") return null
      if (!code.includes(from)) this.error(`style-mod changed: cannot find ${JSON.stringify(from)}`)
      return { code: code.replace(from, to), map: null }
    },
  }
}

export default {
  input: "src/index.js",
  output: {
    file: "../static/vendor/codemirror.js",
    format: "iife",
    name: "OmiCodeMirror",
    banner,
    plugins: [terser({ format: { comments: /^!/ } })],
  },
  plugins: [constructableStyles(), nodeResolve({ browser: true })],
}
