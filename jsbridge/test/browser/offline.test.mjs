// The offline loop end to end: real cmd/demo, real Chromium profiles, real
// IndexedDB. The pages are the demo's own page (its service worker lets it
// open while the server is down); the tests use the store and collection it
// exposes (window.store, window.todos), that is, the public API.

import { test, after } from "node:test"
import assert from "node:assert/strict"

import { Demo, Profile, buildBinaries, cleanup, offline, online, poll, serviceWorker, synced, tempDir, until } from "./harness.mjs"

after(cleanup)

const sortById = list => [...list].sort((x, y) => (x.id < y.id ? -1 : 1))

test("two profiles edit one todo offline, one reloads with the server down, and both converge with no edit lost", async t => {
  const { demo } = await buildBinaries()
  const data = tempDir("data")
  let server = await Demo.start({ bin: demo, data })
  const addr = server.addr
  const [A, B] = await Promise.all([Profile.launch("A"), Profile.launch("B")])
  t.after(async () => {
    await Promise.all([A.close(), B.close()])
    server.kill()
  })
  const a = await A.open(server.base + "/")
  const b = await B.open(server.base + "/")
  await Promise.all([online(a), online(b), serviceWorker(a), serviceWorker(b)])

  // A's todo reaches B, numbered by the server: B had asked for the
  // collection's index before it existed anywhere, and is sent it when A
  // creates it.
  assert.deepEqual(await b.evaluate(() => todos.list()), [])
  const id = await a.evaluate(() => todos.put({ title: "milk", done: false, prio: 0 }))
  const seen = await poll(b, "B to list A's todo with its number", async id => {
    const t = (await todos.list()).find(x => x.id === id)
    return typeof t?.no === "number" && t
  }, id)
  await poll(b, "B's page to show #1", () => document.querySelector("#list .no")?.textContent === "#1")
  assert.equal(seen.title, "milk")
  assert.equal(seen.no, 1)
  await Promise.all([synced(a), synced(b)])

  // The server goes away.
  await server.stop()
  await Promise.all([offline(a), offline(b)])

  // Both edit the same todo: different fields (done / note), the same
  // text field (title, as text edits that merge), and the same scalar
  // field (prio: last writer wins, the same winner everywhere). Both
  // create a todo.
  await a.evaluate(id => todos.update(id, t => {
    t.done = true
    t.prio = 1
    jsbridge.updateText(t, ["title"], "milk (A)")
  }), id)
  await b.evaluate(id => todos.update(id, t => {
    t.note = "from B"
    t.prio = 2
    jsbridge.updateText(t, ["title"], "B: milk")
  }), id)
  const idA = await a.evaluate(() => todos.put({ title: "bread (A, offline)", done: false }))
  const idB = await b.evaluate(() => todos.put({ title: "eggs (B, offline)", done: false }))
  assert.deepEqual((await a.evaluate(() => store.status())).pendingIds, [id, idA].sort())

  // A reloads while the server is still down: everything comes back from
  // IndexedDB, still pending.
  await a.reload()
  await a.waitForFunction(() => window.todos !== undefined)
  const reloaded = await poll(a, "A's list after the reload", async () => {
    const l = await todos.list()
    return l.length === 2 && l
  })
  const mine = reloaded.find(x => x.id === id)
  assert.deepEqual(
    { title: mine.title, done: mine.done, prio: mine.prio, no: mine.no, note: mine.note },
    { title: "milk (A)", done: true, prio: 1, no: 1, note: undefined },
  )
  const offlineTodo = reloaded.find(x => x.id === idA)
  assert.equal(offlineTodo.title, "bread (A, offline)")
  assert.equal(offlineTodo.no, undefined)
  const st = await a.evaluate(() => store.status())
  assert.equal(st.online, false)
  assert.deepEqual(st.pendingIds, [id, idA].sort())
  await poll(a, "the page to show the todos", () => document.querySelectorAll("#list li").length === 2)
  assert.match(await a.locator("#status").innerText(), /offline.*2 pending/)

  // The server returns on the same port and data.
  const down = Date.now()
  server = await Demo.start({ bin: demo, data, addr })
  const back = Date.now()
  const converged = async () => {
    const l = await todos.list()
    return l.length === 3 && l.every(x => typeof x.no === "number") && store.status().synced && l
  }
  await Promise.all([
    poll(a, "A to reconnect and converge", converged),
    poll(b, "B to reconnect and converge", converged),
  ])
  const same = await sameLists(a, b)
  t.diagnostic(`server restart took ${back - down} ms; both profiles reconnected and converged ${Date.now() - back} ms later`)
  const byId = Object.fromEntries(same.map(x => [x.id, x]))
  const shared = byId[id]
  assert.equal(shared.done, true, "A's edit of done")
  assert.equal(shared.note, "from B", "B's edit of note")
  assert.equal(shared.title, "B: milk (A)", "both text edits of title")
  assert.ok([1, 2].includes(shared.prio), `prio is one of the two writes, got ${shared.prio}`)
  assert.equal(shared.no, 1)
  assert.equal(byId[idA].title, "bread (A, offline)")
  assert.equal(byId[idB].title, "eggs (B, offline)")
  assert.deepEqual(same.map(x => x.no).sort(), [1, 2, 3])
  await Promise.all([synced(a), synced(b)])
  for (const p of [a, b]) assert.equal((await p.evaluate(() => store.status())).pending, 0)
  assert.deepEqual(A.errors.concat(B.errors), [])
})

// sameLists waits until both pages list the same records and returns them.
async function sameLists(a, b) {
  let last
  try {
    return await until("A and B to list the same records", async () => {
      const [la, lb] = await Promise.all([a.evaluate(() => todos.list()), b.evaluate(() => todos.list())])
      last = { A: sortById(la), B: sortById(lb) }
      return JSON.stringify(last.A) === JSON.stringify(last.B) && la
    })
  } catch (err) {
    err.message += `\n${JSON.stringify(last, null, 1)}`
    throw err
  }
}

test("a todo created offline gets its no and createdAt after reconnecting, and keeps them in IndexedDB", async t => {
  const { demo } = await buildBinaries()
  const data = tempDir("data")
  let server = await Demo.start({ bin: demo, data })
  const addr = server.addr
  const C = await Profile.launch("C")
  t.after(async () => {
    await C.close()
    server.kill()
  })
  const page = await C.open(server.base + "/")
  await Promise.all([online(page), serviceWorker(page)])

  await server.stop()
  await offline(page)
  const before = Date.now()
  const id = await page.evaluate(() => todos.put({ title: "written offline", done: false }))
  const draft = await page.evaluate(id => todos.get(id), id)
  assert.equal(draft.no, undefined)
  assert.equal(draft.createdAt, undefined)
  assert.deepEqual(await page.evaluate(() => store.status().pendingIds), [id])
  await poll(page, "the page to show the unnumbered todo", () => document.querySelector("#list .no")?.textContent === "#…")

  server = await Demo.start({ bin: demo, data, addr })
  const back = Date.now()
  const numbered = await poll(page, "the server's no and createdAt", async id => {
    const t = await todos.get(id)
    return typeof t?.no === "number" && typeof t.createdAt === "number" && t
  }, id)
  t.diagnostic(`numbered ${Date.now() - back} ms after the server was back`)
  assert.equal(numbered.no, 1)
  assert.ok(numbered.createdAt >= before - 1000 && numbered.createdAt <= Date.now() + 1000, `createdAt ${numbered.createdAt}`)
  await poll(page, "the page to show #1", () => document.querySelector("#list .no")?.textContent === "#1")
  await synced(page)

  // Down again, and a reload: the server's fields come from IndexedDB.
  await server.stop()
  await offline(page)
  await page.reload()
  await page.waitForFunction(() => window.todos !== undefined)
  const again = await page.evaluate(id => todos.get(id), id)
  assert.equal(again.no, numbered.no)
  assert.equal(again.createdAt, numbered.createdAt)
  const st = await page.evaluate(() => store.status())
  assert.equal(st.online, false)
  assert.equal(st.pending, 0)
  await poll(page, "the page to show #1 after the reload", () => document.querySelector("#list .no")?.textContent === "#1")
  assert.deepEqual(C.errors, [])
})
