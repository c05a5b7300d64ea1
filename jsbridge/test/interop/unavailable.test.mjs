// Scenario: a document nobody has is reported unavailable at once (the server
// must answer `doc-unavailable` instead of letting the client wait for its
// 60 s timeout), and a requester that keeps its handle receives the document
// when it is created later by another client (late arrival).

import { after, before, test } from "node:test"
import assert from "node:assert/strict"

import * as A from "@automerge/automerge"
import { generateAutomergeUrl, parseAutomergeUrl } from "@automerge/automerge-repo"

import { SERVER_KIND, scope, serverStorageId, waitAcked, waitState } from "./harness.mjs"

const UNAVAILABLE_WITHIN_MS = 1500

const file = scope({ after })
let srv
before(async () => {
  srv = await file.server()
})

test(`unavailable (${SERVER_KIND}): unknown URL rejects within ${UNAVAILABLE_WITHIN_MS} ms`, async t => {
  const s = scope(t)
  const b = await s.client({ url: srv.url, name: "B" })
  // Wait for the handshake first: a client with no peer gives up after its own
  // 1 s forceReady, which would pass this test without the server's help.
  await serverStorageId(b.repo)
  assert.equal(b.repo.peers.length, 1)

  const url = generateAutomergeUrl()
  const t0 = performance.now()
  await assert.rejects(b.repo.find(url), /unavailable/)
  const ms = performance.now() - t0
  t.diagnostic(`find(unknown) rejected after ${ms.toFixed(1)} ms`)
  assert.ok(ms < UNAVAILABLE_WITHIN_MS, `rejected after ${ms.toFixed(0)} ms, want < ${UNAVAILABLE_WITHIN_MS}`)
  // The rejection came from the server's answer, not from losing the peer.
  assert.equal(b.repo.peers.length, 1)
})

test(`unavailable (${SERVER_KIND}): late arrival reaches the earlier requester`, async t => {
  const s = scope(t)
  const b = await s.client({ url: srv.url, name: "B" })
  const a = await s.client({ url: srv.url, name: "A" })
  const sidA = await serverStorageId(a.repo)
  await serverStorageId(b.repo)

  const url = generateAutomergeUrl()
  const { documentId } = parseAutomergeUrl(url)

  // B asks first and keeps the (unavailable) handle.
  const hb = await b.repo.find(url, { allowableStates: ["ready", "unavailable"] })
  assert.equal(hb.state, "unavailable")

  // A then creates the document under that id (Repo.import with a docId).
  const content = { arrived: "late", n: 7 }
  const binary = A.save(A.from(content))
  const ha = a.repo.import(binary, { docId: documentId })
  await waitAcked(ha, sidA, 10_000)

  // The server pushes it to B, whose handle goes unavailable -> ready.
  await waitState(hb, ["ready"], 10_000, "B's handle to become ready after the late arrival")
  assert.deepEqual(hb.doc(), content)
  assert.deepEqual([...hb.heads()].sort(), [...ha.heads()].sort())
})
