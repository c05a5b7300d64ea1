// Builds the browser bundle: dist/jsbridge.js (an ES module) and
// dist/automerge.wasm, which the bundle loads from next to itself.
//
//   node build.mjs           write dist/
//   node build.mjs --check   build in memory; fail unless dist/ is identical
//
// The output is deterministic (pinned esbuild and packages, no timestamps,
// no absolute paths), so that `make test` can check that the committed
// dist/ is what the sources build to.

import * as esbuild from "esbuild"
import fs from "node:fs"
import path from "node:path"
import { fileURLToPath } from "node:url"

const here = path.dirname(fileURLToPath(import.meta.url))
const dist = path.join(here, "dist")
const check = process.argv.includes("--check")

// The whole bundle must stay small: the automerge core comes as a separate
// wasm file. A bundle over this size has the wasm inlined (as base64, about
// 4.8 MB), which happens when something imports the "fullfat"
// @automerge/automerge entry point.
const MAX_BUNDLE_BYTES = 400 * 1024

function version(pkg) {
  const file = path.join(here, "node_modules", pkg, "package.json")
  return JSON.parse(fs.readFileSync(file, "utf8")).version
}

const bundled = [
  "@automerge/automerge",
  "@automerge/automerge-repo",
  "@automerge/automerge-repo-network-websocket",
  "@automerge/automerge-repo-network-broadcastchannel",
  "@automerge/automerge-repo-storage-indexeddb",
]

const banner = [
  "// @amsync/jsbridge: records in IndexedDB synced through an amsync relay. Generated",
  "// by jsbridge/build.mjs from jsbridge/src with esbuild " + version("esbuild") + "; do not edit.",
  "// Bundles " + bundled.map(p => `${p} ${version(p)}`).join(", ") + " (MIT).",
  '// Loads the automerge core from "automerge.wasm" next to this file.',
].join("\n")

// automerge-repo's default entry point imports "@automerge/automerge",
// whose browser build inlines the wasm. Send every such import to the slim
// build (the one whose wasm we load with initializeWasm), so that there is
// exactly one automerge module in the bundle and no inlined wasm.
const slimAutomerge = {
  name: "slim-automerge",
  setup(build) {
    build.onResolve({ filter: /^@automerge\/automerge$/ }, args =>
      build.resolve("@automerge/automerge/slim", { kind: args.kind, resolveDir: args.resolveDir }),
    )
  },
}

const result = await esbuild.build({
  absWorkingDir: here,
  entryPoints: ["src/index.js"],
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  minify: true,
  legalComments: "eof",
  charset: "utf8",
  banner: { js: banner },
  outfile: "dist/jsbridge.js",
  plugins: [slimAutomerge],
  write: false,
  logLevel: "warning",
})

const wasmSrc = path.join(here, "node_modules/@automerge/automerge/dist/automerge.wasm")
const files = new Map([
  ["jsbridge.js", Buffer.from(result.outputFiles[0].contents)],
  ["automerge.wasm", fs.readFileSync(wasmSrc)],
])

const js = files.get("jsbridge.js")
if (js.length > MAX_BUNDLE_BYTES) {
  console.error(`jsbridge: bundle is ${js.length} bytes (limit ${MAX_BUNDLE_BYTES}): is the wasm inlined?`)
  process.exit(1)
}
if (js.includes("AGFzbQ")) {
  // base64 of the wasm magic number "\0asm"
  console.error("jsbridge: the bundle contains an inlined wasm module")
  process.exit(1)
}

const kb = n => `${(n / 1024).toFixed(1)} KiB`
if (check) {
  const stale = []
  for (const [name, want] of files) {
    const file = path.join(dist, name)
    if (!fs.existsSync(file) || !fs.readFileSync(file).equals(want)) stale.push(name)
  }
  const extra = fs.existsSync(dist) ? fs.readdirSync(dist).filter(n => !files.has(n)) : []
  if (stale.length || extra.length) {
    if (stale.length) console.error(`jsbridge: dist/ is stale: ${stale.join(", ")} differ from a fresh build`)
    if (extra.length) console.error(`jsbridge: dist/ has files the build does not make: ${extra.join(", ")}`)
    console.error("jsbridge: run `make jsbridge-bundle` (or `cd jsbridge && npm run build`) and commit dist/")
    process.exit(1)
  }
  console.log(`jsbridge: dist/ matches the sources (jsbridge.js ${kb(js.length)}, automerge.wasm ${kb(files.get("automerge.wasm").length)})`)
} else {
  fs.mkdirSync(dist, { recursive: true })
  for (const [name, data] of files) fs.writeFileSync(path.join(dist, name), data)
  console.log(`jsbridge: wrote dist/jsbridge.js (${kb(js.length)}) and dist/automerge.wasm (${kb(files.get("automerge.wasm").length)})`)
}
