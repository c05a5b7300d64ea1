// Fan-out reader process (forked by client.mjs): BENCH_READERS official
// automerge-repo clients, each with its own WebSocket, find the document at
// BENCH_DOC_URL and report every new value of its `seq` field with the time
// they saw it: {type: "got", got: [[seq, epochMs], ...]} (batched per
// macrotask). Readers are spread over several processes so that the clients'
// own CPU (each receive costs milliseconds in the official client) does not
// queue all deliveries behind one event loop.

import { Repo } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"

import { serverStorageId, withDeadline } from "../test/interop/harness.mjs"

const url = process.env.BENCH_SERVER_URL
const docUrl = process.env.BENCH_DOC_URL
const count = Number(process.env.BENCH_READERS)
const proc = process.env.BENCH_READER_PROC ?? "0"

function now() {
  return performance.timeOrigin + performance.now()
}

let pending = []
let flushQueued = false
function report(seq, at) {
  pending.push([seq, at])
  if (flushQueued) return
  flushQueued = true
  setImmediate(() => {
    flushQueued = false
    const got = pending
    pending = []
    process.send({ type: "got", got })
  })
}

const clients = []

async function startReader(i) {
  const adapter = new WebSocketClientAdapter(url, 200)
  const repo = new Repo({ network: [adapter], peerId: `bench-reader-${proc}-${i}-${process.pid}` })
  clients.push({ repo, adapter })
  // Find only once connected: the official adapter declares itself ready
  // after 1 s without a peer, and a find with no peer is "unavailable".
  await serverStorageId(repo, 60_000)
  const handle = await repo.find(docUrl)
  let last = handle.doc().seq ?? 0
  handle.on("change", ({ doc }) => {
    const at = now()
    if (doc.seq > last) {
      last = doc.seq
      report(doc.seq, at)
    }
  })
}

// The official adapter throws ECONNRESET from its socket error handler (see client.mjs).
process.on("uncaughtException", err => {
  if (err?.code === "ECONNRESET" || /Unexpected server response|socket hang up/.test(String(err?.message))) return
  console.error("reader.mjs: uncaught", err)
  process.exit(1)
})
// The parent is gone: do not linger.
process.on("disconnect", () => process.exit(0))

process.on("message", async m => {
  if (m.type !== "exit") return
  await Promise.allSettled(
    clients.map(async c => {
      await withDeadline(c.repo.shutdown(), 10_000, "reader shutdown").catch(() => {})
      c.adapter.connect = () => {}
    })
  )
  process.exit(0)
})

try {
  const t0 = now()
  await Promise.all(Array.from({ length: count }, (_, i) => startReader(i)))
  process.send({ type: "ready", ms: now() - t0 })
} catch (err) {
  process.send({ type: "error", message: String(err?.stack ?? err) })
}
