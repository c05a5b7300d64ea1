// Scenario: a document created by one client is stored by the server and can
// be found by URL by a fresh client that has no storage of its own.

import { test } from "node:test"
import assert from "node:assert/strict"

import { SERVER_KIND, scope, serverStorageId, waitAcked } from "./harness.mjs"

test(`create-find (${SERVER_KIND}): a fresh client finds an acked doc by URL`, async t => {
  const s = scope(t)
  const srv = await s.server()
  const a = await s.client({ url: srv.url, name: "A" })
  const content = { title: "hello relay", n: 42, tags: ["x", "y"], nested: { ok: true } }

  const handle = a.repo.create(content)
  const sid = await serverStorageId(a.repo)
  await waitAcked(handle, sid, 10_000)

  const b = await s.client({ url: srv.url, name: "B" })
  const found = await b.repo.find(handle.url)
  assert.equal(found.documentId, handle.documentId)
  assert.deepEqual(found.doc(), content)
  assert.deepEqual([...found.heads()].sort(), [...handle.heads()].sort())
})
