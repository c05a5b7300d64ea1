// Idle connection holder (forked by driver.mjs): opens BENCH_SOCKETS raw `ws`
// WebSockets to BENCH_SERVER_URL, sends each a protocol join (what an
// automerge-repo client sends first), waits for the server's peer reply, and
// then holds them idle (ws answers the server's pings by itself) until told
// to exit. Reports {type: "ready", joined, failed, ms}. A raw socket is used
// instead of a Repo because 10,000 Repos would need far more client memory
// and CPU than the server under test; the server sees the same frames.

import { cbor } from "@automerge/automerge-repo"
import WebSocket from "ws"

const url = process.env.BENCH_SERVER_URL
const count = Number(process.env.BENCH_SOCKETS)
const proc = process.env.BENCH_IDLE_PROC ?? "0"
const CONCURRENCY = 100
const JOIN_MS = 30_000

const sockets = []

function openOne(i) {
  return new Promise(resolve => {
    const ws = new WebSocket(url, { perMessageDeflate: false })
    sockets.push(ws)
    const timer = setTimeout(() => done(false), JOIN_MS)
    let settled = false
    function done(ok) {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resolve(ok)
    }
    ws.on("error", () => done(false))
    ws.on("close", () => done(false))
    ws.on("open", () => {
      ws.send(
        cbor.encode({
          type: "join",
          senderId: `bench-idle-${proc}-${i}-${process.pid}`,
          peerMetadata: { isEphemeral: true },
          supportedProtocolVersions: ["1"],
        })
      )
    })
    ws.on("message", data => {
      try {
        const msg = cbor.decode(new Uint8Array(data))
        if (msg?.type === "peer") done(true)
      } catch {
        // not CBOR: not the peer reply
      }
    })
  })
}

process.on("disconnect", () => process.exit(0))

process.on("message", m => {
  if (m.type !== "exit") return
  for (const ws of sockets) ws.terminate()
  process.exit(0)
})

const t0 = performance.now()
let joined = 0
let failed = 0
let next = 0
await Promise.all(
  Array.from({ length: Math.min(CONCURRENCY, count) }, async () => {
    while (next < count) {
      const i = next++
      if (await openOne(i)) joined++
      else failed++
    }
  })
)
process.send({ type: "ready", joined, failed, ms: performance.now() - t0 })
