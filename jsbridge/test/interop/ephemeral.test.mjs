// Scenario: ephemeral messages (presence, cursors) broadcast on a document
// handle reach the other clients that have the document open, with the
// original sender's peerId.

import { test } from "node:test"
import assert from "node:assert/strict"

import { SERVER_KIND, scope, serverStorageId, waitAcked, withDeadline } from "./harness.mjs"

function nextEphemeral(handle, timeoutMs, what) {
  let off
  const got = new Promise(resolve => {
    const onMsg = payload => resolve(payload)
    handle.on("ephemeral-message", onMsg)
    off = () => handle.off("ephemeral-message", onMsg)
  })
  return withDeadline(got, timeoutMs, what).finally(off)
}

test(`ephemeral (${SERVER_KIND}): broadcast reaches the other client with the sender's peerId`, async t => {
  const s = scope(t)
  const srv = await s.server()
  const [a, b] = await Promise.all([
    s.client({ url: srv.url, name: "A" }),
    s.client({ url: srv.url, name: "B" }),
  ])
  const [sidA] = await Promise.all([serverStorageId(a.repo), serverStorageId(b.repo)])

  const ha = a.repo.create({ text: "shared" })
  await waitAcked(ha, sidA, 10_000)
  const hb = await b.repo.find(ha.url)

  // A -> B
  const toB = nextEphemeral(hb, 5000, "B to receive A's ephemeral message")
  ha.broadcast({ cursor: 1 })
  const gotB = await toB
  assert.deepEqual(gotB.message, { cursor: 1 })
  assert.equal(gotB.senderId, a.peerId)
  assert.equal(gotB.handle.documentId, ha.documentId)

  // B -> A: the direction through the server that PR #742 was about.
  const toA = nextEphemeral(ha, 5000, "A to receive B's ephemeral message")
  hb.broadcast({ cursor: 2, who: "B" })
  const gotA = await toA
  assert.deepEqual(gotA.message, { cursor: 2, who: "B" })
  assert.equal(gotA.senderId, b.peerId)
})
