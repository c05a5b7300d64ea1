// Scenario: two clients with their own on-disk storage share a document, the
// server goes away, both edit while offline (different keys, the same key,
// list inserts), the server comes back on the same port and data dir, and
// both clients reconnect on their own (the official client retries every
// 5 s) and converge to identical heads and content with every edit present.

import { test } from "node:test"
import assert from "node:assert/strict"

import * as A from "@automerge/automerge"

import {
  CLIENT_RETRY_MS,
  SERVER_KIND,
  headsEqual,
  scope,
  serverStorageId,
  waitAcked,
  waitFor,
} from "./harness.mjs"

// Reconnect happens within one retry interval of the restart; allow several
// for the two sync round trips after it.
const CONVERGE_MS = 4 * CLIENT_RETRY_MS

test(`offline edits (${SERVER_KIND}): both clients converge after a server restart`, async t => {
  const s = scope(t)
  const srv = await s.server()
  const [a, b] = await Promise.all([
    s.client({ url: srv.url, name: "A", storageDir: s.tempDir("amsync-interop-A-") }),
    s.client({ url: srv.url, name: "B", storageDir: s.tempDir("amsync-interop-B-") }),
  ])
  const [sidA, sidB] = await Promise.all([serverStorageId(a.repo), serverStorageId(b.repo)])

  const ha = a.repo.create({ base: "v0", same: "initial", list: ["start"] })
  await waitAcked(ha, sidA, 10_000)
  const hb = await b.repo.find(ha.url)
  await waitAcked(hb, sidB, 10_000)
  assert.deepEqual(hb.doc(), ha.doc())

  const stopped = await srv.stop()
  t.diagnostic(`server stopped: ${JSON.stringify(stopped)}`)
  // Both see the server go away before they edit, so the edits are offline.
  await waitFor(() => a.repo.peers.length === 0 && b.repo.peers.length === 0, {
    timeoutMs: 5000,
    what: "both clients to notice the server is gone",
  })

  ha.change(d => {
    d.fromA = "a-only"
    d.same = "A wrote this"
    d.list.push("a1")
    d.list.insertAt(0, "a0")
  })
  hb.change(d => {
    d.fromB = "b-only"
    d.same = "B wrote this"
    d.list.push("b1")
    d.list.insertAt(1, "b-mid")
  })
  ha.change(d => {
    d.counterA = (d.counterA ?? 0) + 1
  })
  assert.ok(!headsEqual(ha.heads(), hb.heads()))

  const t0 = performance.now()
  await srv.restart()
  const converged = await waitFor(
    () => headsEqual(ha.heads(), hb.heads()) && a.repo.peers.length === 1 && b.repo.peers.length === 1,
    { timeoutMs: CONVERGE_MS, what: "A and B to reconnect and converge" }
  )
  assert.ok(converged)
  t.diagnostic(`converged ${(performance.now() - t0).toFixed(0)} ms after the restart began`)

  const da = ha.doc()
  const db = hb.doc()
  assert.deepEqual(da, db)
  assert.equal(da.base, "v0")
  assert.equal(da.fromA, "a-only")
  assert.equal(da.fromB, "b-only")
  assert.equal(da.counterA, 1)
  assert.ok(["A wrote this", "B wrote this"].includes(da.same), `same = ${da.same}`)
  // Both sides of the conflict are kept in the history.
  const conflicts = Object.values(A.getConflicts(da, "same") ?? {})
  assert.deepEqual([...conflicts].sort(), ["A wrote this", "B wrote this"])
  for (const item of ["start", "a0", "a1", "b1", "b-mid"]) {
    assert.ok(da.list.includes(item), `list ${JSON.stringify(da.list)} lacks ${item}`)
  }
  assert.equal(da.list.length, 5)

  // The server holds the merged document too: it acknowledges both sides'
  // heads, and a fresh client gets the merged content.
  await Promise.all([waitAcked(ha, sidA, 10_000), waitAcked(hb, sidB, 10_000)])
  const c = await s.client({ url: srv.url, name: "C" })
  const hc = await c.repo.find(ha.url)
  assert.deepEqual(hc.doc(), da)
})
