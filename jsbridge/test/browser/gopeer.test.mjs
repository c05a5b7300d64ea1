// The browser and the Go peer (`relay doc …`, a peer.Peer with its own
// store) edit the same records through cmd/demo and converge. This also
// checks the records model byte for byte across the two implementations:
// the Go side reads the index the browser wrote, and the browser lists a
// record the Go side made by hand from docs/records.md.

import { test, after } from "node:test"
import assert from "node:assert/strict"

import { Demo, Profile, buildBinaries, cleanup, online, poll, relayDoc, synced, tempDir, until } from "./harness.mjs"

after(cleanup)

test("a browser and the Go peer edit the same record and converge", async t => {
  const { demo } = await buildBinaries()
  const server = await Demo.start({ bin: demo, data: tempDir("data") })
  const G = await Profile.launch("go")
  t.after(async () => {
    await G.close()
    server.kill()
  })
  const page = await G.open(server.base + "/")
  await online(page)
  const goGet = async url => JSON.parse(await relayDoc(["get", "-server", server.ws, url]))

  const id = await page.evaluate(() => todos.put({ title: "shared with Go", done: false }))
  await poll(page, "the todo's number", async id => (await todos.get(id))?.no === 1, id)
  await synced(page)

  // The Go peer reads the record and the collection index the browser wrote.
  const rec = await goGet(`automerge:${id}`)
  assert.equal(rec._collection, "todos")
  assert.equal(rec.title, "shared with Go")
  assert.equal(rec.no, 1)
  const indexId = await page.evaluate(() => jsbridge.indexId("todos"))
  assert.equal(indexId, "dUjNJJiujLWDNQExoTSfNe5SnYx", "records.DerivedID(\"index\", \"todos\") in Go")
  const index = await goGet(`automerge:${indexId}`)
  assert.deepEqual(index, { _type: "amsync/index", _collection: "todos", [id]: true })

  // Concurrent edits: the browser is offline while the Go peer writes.
  await page.evaluate(() => store.goOffline())
  await poll(page, "the store to be offline", () => !store.status().online && store.status().forcedOffline)
  await page.evaluate(id => todos.update(id, t => {
    t.done = true
    jsbridge.updateText(t, ["title"], "shared with Go and JS")
  }), id)
  await relayDoc(["set", "-server", server.ws, `automerge:${id}`, 'note="from Go"', "done=false", "prio=7"])
  await page.evaluate(() => store.goOnline())

  const browser = await poll(page, "the browser to get the Go peer's note, and sync", async id => {
    const t = await todos.get(id)
    return t?.note === "from Go" && store.status().synced && t
  }, id)
  assert.equal(browser.title, "shared with Go and JS")
  assert.equal(browser.prio, 7)
  const goView = await until("the Go peer to see the browser's edits", async () => {
    const v = await goGet(`automerge:${id}`)
    return v.title === "shared with Go and JS" && v
  })
  // The same field (done) was written on both sides: one value wins, the
  // same on both.
  const latest = await page.evaluate(id => todos.get(id), id)
  assert.equal(goView.done, latest.done)
  const { _collection, ...goFields } = goView
  assert.equal(_collection, "todos")
  assert.deepEqual({ id, ...goFields }, latest)

  // A record the Go peer makes by hand, as any automerge-repo client would
  // (docs/records.md): the document, then its entry in the index. The
  // browser lists it, and the server numbers it.
  const url = (await relayDoc(["create", "-server", server.ws, '{"_collection":"todos","title":"made in Go","done":false}'])).trim()
  const goId = url.replace(/^automerge:/, "")
  await relayDoc(["set", "-server", server.ws, `automerge:${indexId}`, `${goId}=true`])
  const listed = await poll(page, "the browser to list the Go peer's record, numbered", async goId => {
    const l = await todos.list()
    const r = l.find(x => x.id === goId)
    return typeof r?.no === "number" && r
  }, goId)
  assert.equal(listed.title, "made in Go")
  assert.equal(listed.no, 2)
  await poll(page, "the page to show the Go peer's record", () => [...document.querySelectorAll("#list .title")].some(e => e.textContent === "made in Go"))
  assert.deepEqual(G.errors, [])
})
