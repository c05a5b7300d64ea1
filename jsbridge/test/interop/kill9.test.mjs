// Scenario: nothing the server acknowledged is lost when it is SIGKILLed.
// Client A writes 200 documents as a stream (and edits some of them again),
// recording for each document the latest heads the server acknowledged
// (handle "remote-heads" / getSyncInfo for the server's storageId). After
// ~100 acknowledgements, with writes still in flight, the server is killed
// with SIGKILL, restarted on the same data dir, and a fresh client checks
// that every acknowledged head is in the history of the stored document.
//
// The official server acks before it saves, so for kind "reference" this is
// skipped, or with INTEROP_EXPECT_LOSS=1 it reports the loss without failing.

import { test } from "node:test"
import assert from "node:assert/strict"

import * as A from "@automerge/automerge"
import { decodeHeads } from "@automerge/automerge-repo"

import {
  LOSS_POLICY,
  SERVER_KIND,
  SKIP_UNLESS_DURABLE,
  headsEqual,
  scope,
  seededRandom,
  serverStorageId,
  waitFor,
} from "./harness.mjs"

const TOTAL_DOCS = 200
const KILL_AFTER_ACKS = 100
// At most this many documents wait for their ack at once, so the kill lands
// with writes in flight rather than after the stream has drained.
const WINDOW = 16

test(
  `kill -9 (${SERVER_KIND}): every acknowledged head survives SIGKILL`,
  { skip: SKIP_UNLESS_DURABLE },
  async t => {
    const s = scope(t)
    const srv = await s.server()
    const a = await s.client({ url: srv.url, name: "A" })
    const sid = await serverStorageId(a.repo)
    const rand = seededRandom(0x5eed)

    /** @type {{handle: any, acked?: string[]}[]} */
    const docs = []
    let ackEvents = 0
    const track = handle => {
      const entry = { handle, acked: undefined }
      handle.on("remote-heads", ({ storageId, heads }) => {
        // Empty heads acknowledge nothing: the server is saying it does not
        // have the document yet (its first reply to a new document).
        if (storageId !== sid || heads.length === 0) return
        entry.acked = heads
        ackEvents++
      })
      docs.push(entry)
      return entry
    }
    const ackedDocs = () => docs.filter(d => d.acked).length
    const pending = () =>
      docs.filter(d => !d.acked || !headsEqual(d.acked, d.handle.heads())).length

    let edits = 0
    let killAt
    let killing
    for (let i = 0; i < TOTAL_DOCS; i++) {
      const body = "x".repeat(16 + Math.floor(rand() * 512))
      track(a.repo.create({ i, body, edits: 0 }))
      // Edit an older document now and then, so acked heads move forward.
      if (i >= 10 && i % 3 === 0) {
        const old = docs[Math.floor(rand() * (i - 1))]
        old.handle.change(d => {
          d.edits += 1
          d[`e${i}`] = rand()
        })
        edits++
      }
      if (killing) {
        // The server is gone: keep writing, yielding to the event loop.
        await new Promise(resolve => setImmediate(resolve))
        continue
      }
      await waitFor(() => pending() < WINDOW, {
        timeoutMs: 15_000,
        what: `the server to ack writes (${ackedDocs()} docs acked so far)`,
      })
      if (ackedDocs() >= KILL_AFTER_ACKS) {
        killAt = { written: docs.length, acked: ackedDocs(), inFlight: pending() }
        killing = srv.kill9()
      }
    }
    assert.ok(killing, `never reached ${KILL_AFTER_ACKS} acked docs`)
    const exit = await killing
    assert.equal(exit.signal, "SIGKILL")
    await a.close()

    // Freeze what was acknowledged before anything can talk to a new server.
    const acked = docs.filter(d => d.acked).map(d => ({ url: d.handle.url, heads: d.acked }))
    t.diagnostic(`kill at ${JSON.stringify(killAt)}; ${ackEvents} ack events`)

    await srv.restart()
    const c = await s.client({ url: srv.url, name: "C" })
    await serverStorageId(c.repo)
    const t0 = performance.now()
    const results = await Promise.allSettled(acked.map(d => c.repo.find(d.url)))
    t.diagnostic(`verification finds settled in ${(performance.now() - t0).toFixed(0)} ms`)
    const lost = []
    results.forEach((r, i) => {
      const want = acked[i]
      if (r.status === "rejected") {
        lost.push(`${want.url}: ${r.reason?.message ?? r.reason}`)
        return
      }
      if (!A.hasHeads(r.value.doc(), decodeHeads(want.heads))) {
        lost.push(`${want.url}: acked heads ${want.heads} not in history ${r.value.heads()}`)
      }
    })
    const summary =
      `kill -9: docs written ${docs.length} (+${edits} edits), acked ${acked.length}, ` +
      `verified ${acked.length - lost.length}, lost ${lost.length}`
    console.log(summary)
    t.diagnostic(summary)
    for (const l of lost.slice(0, 5)) t.diagnostic(`lost ${l}`)
    if (LOSS_POLICY === "enforce") {
      assert.equal(lost.length, 0, `acknowledged data lost after SIGKILL:\n${lost.slice(0, 20).join("\n")}`)
    }
    assert.ok(acked.length >= KILL_AFTER_ACKS)
  }
)
