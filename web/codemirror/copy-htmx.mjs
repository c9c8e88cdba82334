// Copies htmx (the version pinned in package.json / package-lock.json) to ../static/vendor/.
import { copyFileSync, mkdirSync } from "node:fs"

const target = new URL("../static/vendor/", import.meta.url)
mkdirSync(target, { recursive: true })
copyFileSync(new URL("./node_modules/htmx.org/dist/htmx.min.js", import.meta.url), new URL("htmx.min.js", target))
console.log("copied htmx.org/dist/htmx.min.js -> web/static/vendor/htmx.min.js")
