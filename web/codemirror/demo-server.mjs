// Serves web/ on 127.0.0.1:8765 with the UI's Content-Security-Policy, for demo.html.
import { createServer } from "node:http"
import { readFile } from "node:fs/promises"
import { extname, join, normalize } from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))
const csp =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
  "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
const types = { ".html": "text/html", ".js": "text/javascript", ".json": "application/json", ".css": "text/css" }
const port = Number(process.env.PORT || 8765)

createServer(async (req, res) => {
  const path = normalize(decodeURIComponent(new URL(req.url, "http://x").pathname))
  if (path.includes("..")) return res.writeHead(400).end()
  try {
    const body = await readFile(join(root, path))
    res.writeHead(200, { "Content-Type": types[extname(path)] || "application/octet-stream", "Content-Security-Policy": csp })
    res.end(body)
  } catch {
    res.writeHead(404).end("not found")
  }
}).listen(port, "127.0.0.1", () => console.log(`http://127.0.0.1:${port}/codemirror/demo.html`))
