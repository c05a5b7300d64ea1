// Two tabs of one browser profile share one IndexedDB database and talk
// over BroadcastChannel: they stay in step with each other, also while the
// server is down.

import { test, after } from "node:test"
import assert from "node:assert/strict"

import { Demo, Profile, buildBinaries, cleanup, offline, online, poll, synced, tempDir } from "./harness.mjs"

after(cleanup)

test("two tabs of one profile stay in sync, with and without the server", async t => {
  const { demo } = await buildBinaries()
  const server = await Demo.start({ bin: demo, data: tempDir("data") })
  const P = await Profile.launch("tabs")
  t.after(async () => {
    await P.close()
    server.kill()
  })
  const one = await P.open(server.base + "/")
  const two = await P.open(server.base + "/")
  await Promise.all([online(one), online(two)])

  // Online: a put in one tab shows in the other, numbered.
  const id = await one.evaluate(() => todos.put({ title: "tab one", done: false }))
  await poll(two, "tab two to see tab one's todo, numbered", async id => (await todos.get(id))?.no === 1, id)

  // A subscriber in tab two is told of tab one's changes.
  await two.evaluate(() => {
    window.seen = []
    window.stopSeen = todos.subscribe(list => window.seen.push(list))
  })
  await poll(two, "tab two's first subscription call", () => window.seen.length > 0)

  // Offline (the server is gone): the tabs still sync with each other.
  await server.stop()
  await Promise.all([offline(one), offline(two)])
  const idOffline = await one.evaluate(() => todos.put({ title: "made in tab one, offline", done: false }))
  await poll(two, "tab two to see the offline todo", id => window.seen.at(-1).some(x => x.id === id), idOffline)
  await two.evaluate(id => todos.update(id, t => { t.done = true }), id)
  await poll(one, "tab one to see tab two's update", async id => (await todos.get(id))?.done === true, id)
  await one.evaluate(id => todos.delete(id), idOffline)
  await poll(two, "tab two to see the delete", id => !window.seen.at(-1).some(x => x.id === id), idOffline)
  assert.equal(await two.evaluate(id => todos.get(id), idOffline), undefined)

  // The page of each tab shows the same list.
  const rows = page => page.evaluate(() => [...document.querySelectorAll("#list li")].map(li => li.innerText.replace(/\s+/g, " ").trim()))
  await poll(one, "tab one's page to show one done todo", () => document.querySelectorAll("#list li.done").length === 1)
  await poll(two, "tab two's page to show one done todo", () => document.querySelectorAll("#list li.done").length === 1)
  assert.deepEqual(await rows(one), await rows(two))
  await two.evaluate(() => window.stopSeen())
  assert.deepEqual(P.errors, [])
})

test("a tab opened later finds what another tab wrote, from IndexedDB, with the server down", async t => {
  const { demo } = await buildBinaries()
  const data = tempDir("data")
  const server = await Demo.start({ bin: demo, data })
  const P = await Profile.launch("late-tab")
  t.after(async () => {
    await P.close()
    server.kill()
  })
  const one = await P.open(server.base + "/")
  await online(one)
  const id = await one.evaluate(() => todos.put({ title: "before the second tab", done: false }))
  await poll(one, "the todo's number", async id => (await todos.get(id))?.no === 1, id)
  await synced(one)
  await poll(one, "the service worker", () => navigator.serviceWorker.controller !== null)
  await server.stop()
  await offline(one)
  const two = await P.open(server.base + "/")
  const got = await poll(two, "the second tab to list the todo", async id => (await todos.list()).find(x => x.id === id), id)
  assert.equal(got.title, "before the second tab")
  assert.equal(got.no, 1)
  assert.deepEqual(P.errors, [])
})
