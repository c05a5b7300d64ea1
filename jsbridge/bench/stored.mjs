// Fills a fresh data directory with D stored documents, for the "stored"
// workload (memory and cold start with many documents at rest), without
// pushing them through the protocol:
//   - relay: a backup file in the relay's own format (docs/cli.md, "Backup
//     format, version 1"), loaded with `relay import -data DIR FILE`;
//   - reference: the NodeFSStorageAdapter layout written directly,
//     DIR/<id[0:2]>/<id[2:]>/snapshot/<headsHash> holding A.save(doc), which
//     is what the Node server writes for a small document (one snapshot).
// Creating a document costs the automerge JS core about 2 ms, so only
// `distinct` documents are made; document k gets the content of document
// k % distinct under its own random id. Neither server shares anything
// between documents, so each stored id is a separate document to both.

import { spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import fs from "node:fs"
import path from "node:path"
import zlib from "node:zlib"

import * as A from "@automerge/automerge"
import { generateAutomergeUrl, parseAutomergeUrl } from "@automerge/automerge-repo"

/** The `distinct` document bodies: { bytes (A.save), heads (hex, sorted) }. */
export function makeBodies(distinct) {
  const out = []
  for (let i = 0; i < distinct; i++) {
    const d = A.from({ i, title: `stored document ${i}`, tags: ["bench", `t${i % 10}`], done: false })
    out.push({ bytes: A.save(d), heads: [...A.getHeads(d)].sort() })
    A.free(d)
  }
  return out
}

/** D fresh document URLs. */
export function makeUrls(count) {
  return Array.from({ length: count }, () => generateAutomergeUrl())
}

function headsHash(heads) {
  return createHash("sha256").update(heads.join("")).digest("hex")
}

/** Writes the NodeFS layout of the reference server into dir. */
export function writeNodeFS(dir, urls, bodies) {
  for (let k = 0; k < urls.length; k++) {
    const id = parseAutomergeUrl(urls[k]).documentId
    const body = bodies[k % bodies.length]
    const docDir = path.join(dir, id.slice(0, 2), id.slice(2), "snapshot")
    fs.mkdirSync(docDir, { recursive: true })
    fs.writeFileSync(path.join(docDir, headsHash(body.heads)), body.bytes)
  }
}

/** Writes a version-1 backup (gzip JSON lines) of the documents to file. */
export async function writeBackup(file, urls, bodies) {
  const gz = zlib.createGzip({ level: 1 })
  const out = fs.createWriteStream(file)
  const finished = new Promise((resolve, reject) => {
    out.on("finish", resolve)
    out.on("error", reject)
    gz.on("error", reject)
  })
  gz.pipe(out)
  const write = line =>
    gz.write(line + "\n") ? Promise.resolve() : new Promise(resolve => gz.once("drain", resolve))
  await write(JSON.stringify({ format: "amsync-backup", version: 1, created: new Date().toISOString() }))
  const b64 = bodies.map(b => Buffer.from(b.bytes).toString("base64"))
  for (let k = 0; k < urls.length; k++) {
    const body = bodies[k % bodies.length]
    await write(
      JSON.stringify({
        doc: parseAutomergeUrl(urls[k]).documentId,
        heads: body.heads,
        chunks: [{ kind: "snapshot", data: b64[k % bodies.length] }],
      })
    )
  }
  await write(JSON.stringify({ end: true, documents: urls.length }))
  gz.end()
  await finished
}

/** Runs `relay import -data dir file`; returns its output line. Throws on failure. */
export function relayImport(relayBin, dir, file, timeoutMs) {
  const res = spawnSync(relayBin, ["import", "-data", dir, file], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    timeout: timeoutMs,
  })
  if (res.error) throw new Error(`relay import: ${res.error.message}`)
  if (res.status !== 0) throw new Error(`relay import exited ${res.status}: ${res.stderr}`)
  return res.stdout.trim()
}
