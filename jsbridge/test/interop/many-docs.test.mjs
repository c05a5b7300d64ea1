// Scenario: a fresh client asks for 2,000 documents at once (created and
// acked beforehand by another client); none is reported unavailable and
// every one arrives with its content.
//
// All 2,000 finds are outstanding together, but they are issued 100 per
// macrotask: each official-client find costs milliseconds of synchronous CPU,
// and issuing 2,000 in one tick blocks the client's event loop long enough
// (seconds on a busy machine) that it cannot answer the server's keepalive
// pings; the official server then drops the socket after 5-10 s and every
// pending find turns unavailable. That would test the client, not the server.

import { test } from "node:test"
import assert from "node:assert/strict"

import { SERVER_KIND, scope, serverStorageId, waitAcked } from "./harness.mjs"

const DOCS = 2000
const SLICE = 100

function nextMacrotask() {
  return new Promise(resolve => setImmediate(resolve))
}

test(`many docs (${SERVER_KIND}): a fresh client finds ${DOCS} docs at once`, async t => {
  const s = scope(t)
  const srv = await s.server()
  const a = await s.client({ url: srv.url, name: "A" })
  const sid = await serverStorageId(a.repo)

  let t0 = performance.now()
  const handles = []
  for (let k = 0; k < DOCS; k += SLICE * 2) {
    const batch = []
    for (let i = k; i < Math.min(DOCS, k + SLICE * 2); i++) {
      batch.push(a.repo.create({ i, name: `doc-${i}` }))
    }
    handles.push(...batch)
    await Promise.all(batch.map(h => waitAcked(h, sid, 60_000)))
  }
  t.diagnostic(`${DOCS} docs created and acked in ${(performance.now() - t0).toFixed(0)} ms`)
  await a.close()

  const b = await s.client({ url: srv.url, name: "B" })
  await serverStorageId(b.repo)
  t0 = performance.now()
  const finds = []
  for (let k = 0; k < DOCS; k += SLICE) {
    for (const h of handles.slice(k, k + SLICE)) finds.push(b.repo.find(h.url))
    await nextMacrotask()
  }
  const results = await Promise.allSettled(finds)
  t.diagnostic(`${DOCS} finds settled in ${(performance.now() - t0).toFixed(0)} ms`)
  const unavailable = []
  results.forEach((r, i) => {
    if (r.status === "rejected") {
      unavailable.push(`${handles[i].url}: ${r.reason?.message ?? r.reason}`)
      return
    }
    assert.deepEqual(r.value.doc(), { i, name: `doc-${i}` })
  })
  assert.equal(
    unavailable.length,
    0,
    `${unavailable.length} of ${DOCS} unavailable:\n${unavailable.slice(0, 10).join("\n")}`
  )
})
