// The API of /jsbridge.js, exercised by a store of the test's own (its own
// IndexedDB database) in a page from the demo's origin.

import { test, after } from "node:test"
import assert from "node:assert/strict"

import { Demo, Profile, buildBinaries, cleanup, poll, tempDir, withDeadline } from "./harness.mjs"

after(cleanup)

test("the records API: put, get, list, update, delete, subscribe, status, synced, close", async t => {
  const { demo } = await buildBinaries()
  const server = await Demo.start({ bin: demo, data: tempDir("data") })
  const P = await Profile.launch("api")
  t.after(async () => {
    await P.close()
    server.kill()
  })
  const page = await P.open(server.base + "/")
  await page.evaluate(async url => {
    const { openStore } = await import("/jsbridge.js")
    window.s = await openStore({ url, name: "api-test" })
    window.c = s.collection("things")
    window.statuses = []
    s.on("status", st => statuses.push(st))
  }, server.ws)
  await poll(page, "the test store to be online", () => s.status().online)

  // Argument checks, with the codes of the Go side's sentinel errors.
  const errors = await page.evaluate(async () => {
    const code = async fn => {
      try {
        await fn()
        return "no error"
      } catch (err) {
        return err.code ?? err.name
      }
    }
    const { openStore } = await import("/jsbridge.js")
    return {
      noURL: await code(() => openStore({ name: "x" })),
      noName: await code(() => openStore({ url: "ws://localhost:1" })),
      emptyCollection: await code(() => s.collection("")),
      longCollection: await code(() => s.collection("x".repeat(201))),
      reservedField: await code(() => c.put({ _secret: 1 })),
      emptyField: await code(() => c.put({ "": 1 })),
      notAnObject: await code(() => c.put(["a"])),
      undefinedValue: await code(() => c.put({ t: undefined })),
      badId: await code(() => c.get("not an id!")),
      absentUpdate: await code(() => c.update(jsbridge.indexId("nothing here"), t => { t.x = 1 })),
      absentDelete: await code(() => c.delete(jsbridge.indexId("nothing here"))),
    }
  })
  assert.deepEqual(errors, {
    noURL: "TypeError",
    noName: "TypeError",
    emptyCollection: "invalid",
    longCollection: "invalid",
    reservedField: "invalid",
    emptyField: "invalid",
    notAnObject: "invalid",
    undefinedValue: "RangeError",
    badId: "invalid",
    absentUpdate: "not_found",
    absentDelete: "not_found",
  })

  // A subscriber sees local changes; an unsubscribed one no longer does.
  await page.evaluate(() => {
    window.calls = []
    window.stop = c.subscribe(list => calls.push(list))
    window.dropped = []
    window.stopDropped = c.subscribe(list => dropped.push(list))
  })
  await poll(page, "the first subscription calls", () => calls.length === 1 && dropped.length === 1)
  assert.deepEqual(await page.evaluate(() => calls[0]), [])
  // The refused put above wrote nothing, not even an index entry.
  assert.deepEqual(await page.evaluate(async () => {
    const h = await s.repo.find(c.indexId, { allowableStates: ["ready", "unavailable"] })
    return h.isReady() ? Object.keys(h.doc()) : []
  }), [])
  await page.evaluate(() => stopDropped())

  const fields = { title: "thing", n: 42, x: 1.5, ok: true, nothing: null, tags: ["a", "b"], meta: { depth: { n: 2 } } }
  const id = await page.evaluate(f => c.put(f), fields)
  assert.match(id, /^[1-9A-HJ-NP-Za-km-z]{20,}$/)
  assert.deepEqual(await page.evaluate(id => c.get(id), id), { id, ...fields })
  assert.deepEqual(await page.evaluate(() => c.list()), [{ id, ...fields }])
  await poll(page, "the subscriber to see the put", id => calls.at(-1).some(x => x.id === id), id)

  const updated = await page.evaluate(id => c.update(id, t => {
    t.n += 1
    t.tags.push("c")
    delete t.nothing
  }), id)
  const { nothing, ...kept } = fields
  assert.deepEqual(updated, { id, ...kept, n: 43, tags: ["a", "b", "c"] })
  await poll(page, "the subscriber to see the update", () => calls.at(-1)[0]?.n === 43)
  assert.equal(
    await page.evaluate(async id => {
      try {
        await c.update(id, async () => {})
        return "no error"
      } catch (err) {
        return err.name
      }
    }, id),
    "TypeError",
    "an async update callback is refused",
  )

  // Records belong to their collection.
  assert.equal(await page.evaluate(id => s.collection("other").get(id), id), undefined)
  assert.deepEqual(await page.evaluate(() => s.collection("other").list()), [])

  // Delete: a tombstone; get and list no longer see it.
  await page.evaluate(id => c.delete(id), id)
  assert.equal(await page.evaluate(id => c.get(id), id), undefined)
  assert.deepEqual(await page.evaluate(() => c.list()), [])
  await poll(page, "the subscriber to see the delete", () => calls.at(-1).length === 0)
  assert.equal(
    await page.evaluate(async id => c.delete(id).then(() => "deleted twice", err => err.code), id),
    "not_found",
  )
  assert.equal(await page.evaluate(() => dropped.length), 1, "an unsubscribed callback is not called")

  // Status: pending until the relay acknowledges, synced() then resolves.
  await page.evaluate(() => c.put({ title: "acknowledged" }))
  await withDeadline("synced()", page.evaluate(() => s.synced()))
  const st = await page.evaluate(() => s.status())
  assert.deepEqual(st, { online: true, pending: 0, pendingIds: [], synced: true, forcedOffline: false })
  assert.ok(await page.evaluate(() => statuses.some(x => x.pending > 0)), "a status event with pending records")

  // goOffline / goOnline, with status events.
  await page.evaluate(() => s.goOffline())
  await poll(page, "an offline status event", () => statuses.at(-1).online === false && statuses.at(-1).forcedOffline)
  const offlineId = await page.evaluate(() => c.put({ title: "while offline" }))
  await poll(page, "a pending status event", id => statuses.at(-1).pendingIds.includes(id), offlineId)
  await page.evaluate(() => s.goOnline())
  await poll(page, "online and synced again", () => s.status().synced)
  assert.equal(await page.evaluate(() => s.status().forcedOffline), false)

  // close: offline, and synced() refuses.
  await page.evaluate(() => s.close())
  assert.equal(await page.evaluate(() => s.status().online), false)
  assert.equal(await page.evaluate(() => s.synced().then(() => "resolved", err => err.message)), "jsbridge: store closed")
  assert.deepEqual(P.errors, [])
})
