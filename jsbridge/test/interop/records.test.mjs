// Scenario (issue 4): the records model from docs/records.md, used by a plain
// official automerge-repo 2.5.6 client and by the Go peer (the `relay doc`
// command line) through the demo application server, whose hook gives every
// new todo a sequential `no` and a `createdAt`. Online and offline edits from
// both sides converge, and the server-generated fields reach both.

import { test } from "node:test"
import assert from "node:assert/strict"
import { createHash } from "node:crypto"
import { execFile } from "node:child_process"
import { promisify } from "node:util"

import * as A from "@automerge/automerge"
import bs58check from "bs58check"

import { relayBinary, scope, serverStorageId, waitAcked, waitFor } from "./harness.mjs"

const run = promisify(execFile)

/** The index document id every client derives from a collection name. */
function indexId(name) {
  const sum = createHash("sha256").update(`amsync/index/${name}`).digest()
  return bs58check.encode(sum.subarray(0, 16))
}

/** Finds the collection's index, or makes it under its derived id. */
async function openIndex(repo, name) {
  const url = `automerge:${indexId(name)}`
  try {
    return await repo.find(url)
  } catch {
    const doc = A.change(A.init(), d => {
      d._type = "amsync/index"
      d._collection = name
    })
    return repo.import(A.save(doc), { docId: indexId(name) })
  }
}

/** Creates a record as docs/records.md says: index entry first, then the record. */
function putRecord(repo, index, collection, fields) {
  const handle = repo.create({ _collection: collection, ...fields })
  index.change(d => {
    d[handle.documentId] = true
  })
  return handle
}

function liveIds(index) {
  return Object.entries(index.doc())
    .filter(([k, v]) => !k.startsWith("_") && v === true)
    .map(([k]) => k)
    .sort()
}

/** Runs the relay CLI (the Go peer) and returns its stdout. */
async function relayCLI(args) {
  const { stdout } = await run(relayBinary(), args, { timeout: 60_000 })
  return stdout.trim()
}

async function goGet(url, serverUrl) {
  return JSON.parse(await relayCLI(["doc", "get", "-server", serverUrl, "-timeout", "20s", url]))
}

test("records (demo): a JS client and the Go peer share todos; server fields reach both", async t => {
  const s = scope(t)
  const srv = await s.server({ kind: "demo" })
  const a = await s.client({ url: srv.url, name: "A", storageDir: s.tempDir("amsync-rec-a-") })
  const sid = await serverStorageId(a.repo)

  // Online: A creates a todo; the hook numbers it; both sides see the number.
  const index = await openIndex(a.repo, "todos")
  const milk = putRecord(a.repo, index, "todos", { title: "milk", done: false })
  await waitAcked(milk, sid, 15_000)
  await waitAcked(index, sid, 15_000)
  await waitFor(() => typeof milk.doc().no === "number", { timeoutMs: 15_000, what: "milk's server no" })
  assert.equal(milk.doc().no, 1)
  assert.ok(milk.doc().createdAt > 1.7e12)
  const fromGo = await goGet(milk.url, srv.url)
  assert.equal(fromGo.no, 1)
  assert.equal(fromGo.title, "milk")
  assert.equal(fromGo._collection, "todos")

  // The Go peer edits the record online; the JS client sees it.
  await relayCLI(["doc", "set", "-server", srv.url, "-timeout", "20s", milk.url, "done=true"])
  await waitFor(() => milk.doc().done === true, { timeoutMs: 15_000, what: "the Go edit at A" })

  // Offline on both sides: the server stops; A adds a todo and edits milk;
  // the Go peer edits milk in its local store.
  const goDir = s.tempDir("amsync-rec-go-")
  await relayCLI(["doc", "get", "-server", srv.url, "-data", goDir, "-timeout", "20s", milk.url])
  await srv.stop()
  const eggs = putRecord(a.repo, index, "todos", { title: "eggs", done: false })
  milk.change(d => {
    d.note = "from A, offline"
  })
  await relayCLI(["doc", "set", "-offline", "-data", goDir, milk.url, 'tag="from go, offline"'])

  // Back online: everything converges; eggs gets the next number.
  await srv.start()
  await relayCLI(["doc", "sync", "-server", srv.url, "-data", goDir, "-timeout", "30s"])
  await waitFor(() => milk.doc().tag === "from go, offline" && typeof eggs.doc().no === "number", {
    timeoutMs: 30_000,
    what: "A sees the Go peer's offline edit and eggs' number (the client redials every 5 s)",
  })
  assert.equal(eggs.doc().no, 2)
  const milkGo = await goGet(milk.url, srv.url)
  assert.equal(milkGo.note, "from A, offline")
  assert.equal(milkGo.tag, "from go, offline")
  assert.equal(milkGo.done, true)
  assert.equal(milkGo.no, 1)
  await waitAcked(milk, sid, 15_000)
  assert.deepEqual(
    Object.fromEntries(Object.entries(milk.doc()).filter(([k]) => k !== "createdAt")),
    Object.fromEntries(Object.entries(milkGo).filter(([k]) => k !== "createdAt"))
  )

  // A fresh client that was never told any id discovers the records.
  const b = await s.client({ url: srv.url, name: "B" })
  await serverStorageId(b.repo)
  const bIndex = await b.repo.find(`automerge:${indexId("todos")}`)
  assert.deepEqual(liveIds(bIndex), [milk.documentId, eggs.documentId].sort())
  const bEggs = await b.repo.find(eggs.url)
  assert.equal(bEggs.doc().title, "eggs")
  assert.equal(bEggs.doc().no, 2)
})
