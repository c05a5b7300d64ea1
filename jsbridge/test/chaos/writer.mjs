#!/usr/bin/env node
// Chaos writer: one official automerge-repo 2.5.6 client (Repo +
// WebSocketClientAdapter, in-memory storage) driven by cmd/relay's chaos test
// (chaos_test.go) as a child process. It finds the shared documents, creates
// its own, and on "start" edits a seeded mix of them continuously, reporting
// on stdout, one JSON object per line:
//
//   {"type":"ready","peerId","storageId"}     connected, shared docs found, own docs created
//   {"type":"create","doc","heads"}           an own document was created (a write too)
//   {"type":"write","doc","heads"}            a local change (heads after it, hex)
//   {"type":"ack","doc","heads"}              the relay acknowledged the doc: the heads it
//                                             announced (remote-heads for its storageId,
//                                             non-empty) equal the doc's heads (hex)
//   {"type":"peer","peerId"}                  connected to the relay (the first one and
//                                             every reconnect)
//   {"type":"disconnect","peerId"}            lost the relay
//   {"type":"error","message"}                an exception thrown outside our code (the
//                                             websocket adapter throws ECONNRESET from its
//                                             error listener); counted, not fatal, as in
//                                             a browser, where a throwing listener is only
//                                             reported
//   {"type":"stopped","writes"}               answer to "stop"
//   {"type":"heads","id","docs":{doc:{"heads","acked"}}}  answer to "heads"; a doc
//                                             not acked also has "remote" (the heads the
//                                             relay last announced) and "remoteAgeMs"
//   {"type":"mark","id"}                      answer to "mark": every line before it was sent
//   {"type":"bye"}                            the repo shut down; the process exits 0
//
// Commands arrive on stdin, one JSON object per line: {"cmd":"start"},
// {"cmd":"stop"}, {"cmd":"heads","id":N}, {"cmd":"mark","id":N},
// {"cmd":"exit"}. "exit", the end of stdin, SIGTERM and SIGINT all shut the
// repo down and exit cleanly.
//
// Usage: node writer.mjs --url ws://127.0.0.1:PORT --name js-a --seed N
//          [--shared id,id] [--own 2] [--max-own 4] [--gap-min-ms 30]
//          [--gap-max-ms 90] [--retry-ms 5000]

import readline from "node:readline"
import { parseArgs } from "node:util"

import * as A from "@automerge/automerge"
import { Repo, decodeHeads } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"

import { headsEqual, seededRandom, serverStorageId, withDeadline } from "../interop/harness.mjs"

const { values: opts } = parseArgs({
  options: {
    url: { type: "string" },
    name: { type: "string", default: "js" },
    seed: { type: "string", default: "1" },
    shared: { type: "string", default: "" },
    own: { type: "string", default: "2" },
    "max-own": { type: "string", default: "4" },
    "gap-min-ms": { type: "string", default: "30" },
    "gap-max-ms": { type: "string", default: "90" },
    "retry-ms": { type: "string", default: "5000" },
  },
})

function intOpt(name) {
  const v = Number.parseInt(opts[name], 10)
  if (!Number.isInteger(v) || v < 0) {
    console.error(`writer: invalid --${name} ${opts[name]}`)
    process.exit(2)
  }
  return v
}

if (!opts.url) {
  console.error("writer: --url is required")
  process.exit(2)
}
const name = opts.name
const rand = seededRandom(intOpt("seed"))
const ownAtStart = intOpt("own")
const maxOwn = intOpt("max-own")
const gapMin = intOpt("gap-min-ms")
const gapMax = Math.max(gapMin, intOpt("gap-max-ms"))
const sharedIds = opts.shared.split(",").filter(Boolean)

function emit(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n")
}

// An exception thrown from a library's event listener would end the process;
// in a browser it is only reported. Report it the same way.
process.on("uncaughtException", err => emit({ type: "error", message: String(err?.message ?? err) }))
process.on("unhandledRejection", err => emit({ type: "error", message: String(err?.message ?? err) }))

const adapter = new WebSocketClientAdapter(opts.url, intOpt("retry-ms"))
const peerId = `${name}-${opts.seed}`
const repo = new Repo({ network: [adapter], peerId })

let relayStorageId
repo.networkSubsystem.on("peer", ({ peerId: remote }) => {
  relayStorageId ??= repo.getStorageIdOfPeer(remote)
  emit({ type: "peer", peerId: remote })
})
repo.networkSubsystem.on("peer-disconnected", ({ peerId: remote }) => {
  emit({ type: "disconnect", peerId: remote })
})

/** @type {{id: string, handle: any, own: boolean, ackKey?: string}[]} */
const docs = []

/** Sorted heads of the handle, hex (as the Go side prints them). */
function hexHeads(handle) {
  return [...A.getHeads(handle.doc())].sort()
}

function acked(entry) {
  if (!relayStorageId) return false
  const info = entry.handle.getSyncInfo(relayStorageId)
  return !!info && info.lastHeads.length > 0 && headsEqual(info.lastHeads, entry.handle.heads())
}

function track(handle, own) {
  const entry = { id: handle.documentId, handle, own }
  const check = () => {
    if (!acked(entry)) return
    const heads = hexHeads(handle)
    const key = heads.join(",")
    if (key === entry.ackKey) return
    entry.ackKey = key
    emit({ type: "ack", doc: entry.id, heads })
  }
  handle.on("remote-heads", check)
  handle.on("heads-changed", check)
  docs.push(entry)
  if (own) emit({ type: "create", doc: entry.id, heads: hexHeads(handle) })
  check()
  return entry
}

function createOwn() {
  track(repo.create({ title: "", hits: new A.Counter(0), log: [], kv: {} }), true)
}

let writes = 0
let timer
let writing = false

function writeOnce() {
  const entry = docs[Math.floor(rand() * docs.length)]
  const n = writes
  const r = rand()
  const before = hexHeads(entry.handle).join(",")
  try {
    entry.handle.change(d => {
      if (r < 0.3) d.kv[`${name}-${n % 8}`] = n
      else if (r < 0.55) d.hits.increment(1)
      else if (r < 0.8) d.log.push(`${name}:${n}`)
      else A.splice(d, ["title"], 0, 0, name.at(-1))
    })
  } catch (err) {
    // Thrown after the change was made (by a listener), or before: the
    // heads tell which.
    emit({ type: "error", message: String(err?.message ?? err) })
  }
  const heads = hexHeads(entry.handle)
  if (heads.join(",") !== before) {
    writes++
    emit({ type: "write", doc: entry.id, heads })
  }
  if (rand() < 0.03 && docs.filter(d => d.own).length < maxOwn) createOwn()
}

function schedule() {
  if (!writing) return
  timer = setTimeout(
    () => {
      if (!writing) return
      writeOnce()
      schedule()
    },
    gapMin + Math.floor(rand() * (gapMax - gapMin + 1))
  )
}

let shuttingDown = false
async function shutdown() {
  if (shuttingDown) return
  shuttingDown = true
  writing = false
  clearTimeout(timer)
  try {
    await withDeadline(repo.shutdown(), 10_000, `${name} repo shutdown`)
  } finally {
    // disconnect() clears the retry interval but not a reconnect timer set
    // by an earlier close: make such a timer a no-op so the process can end.
    adapter.connect = () => {}
  }
  emit({ type: "bye" })
  process.exit(0)
}

function handleCommand(line) {
  let msg
  try {
    msg = JSON.parse(line)
  } catch {
    emit({ type: "error", message: `bad command ${JSON.stringify(line)}` })
    return
  }
  switch (msg.cmd) {
    case "start":
      if (!writing) {
        writing = true
        ready.then(schedule)
      }
      break
    case "stop":
      writing = false
      clearTimeout(timer)
      emit({ type: "stopped", writes })
      break
    case "heads": {
      const out = {}
      for (const d of docs) {
        out[d.id] = { heads: hexHeads(d.handle), acked: acked(d) }
        if (!out[d.id].acked) {
          // What the relay last announced, to say why not.
          const info = relayStorageId ? d.handle.getSyncInfo(relayStorageId) : undefined
          out[d.id].remote = info ? [...decodeHeads(info.lastHeads)].sort() : null
          out[d.id].remoteAgeMs = info ? Date.now() - info.lastSyncTimestamp : null
        }
      }
      emit({ type: "heads", id: msg.id, docs: out })
      break
    }
    case "mark":
      emit({ type: "mark", id: msg.id })
      break
    case "exit":
      shutdown()
      break
    default:
      emit({ type: "error", message: `unknown command ${JSON.stringify(msg.cmd)}` })
  }
}

process.on("SIGTERM", shutdown)
process.on("SIGINT", shutdown)

// Commands are read from the start, so that "exit" works at any time.
const rl = readline.createInterface({ input: process.stdin })
rl.on("line", handleCommand)
rl.on("close", shutdown)

async function setUp() {
  relayStorageId = await serverStorageId(repo, 20_000)
  for (const id of sharedIds) {
    const handle = await withDeadline(repo.find(`automerge:${id}`), 20_000, `shared doc ${id}`)
    track(handle, false)
  }
  for (let i = 0; i < ownAtStart; i++) createOwn()
  emit({ type: "ready", peerId, storageId: relayStorageId })
}

// Writing starts once this resolves, whenever "start" arrives.
const ready = setUp()
ready.catch(err => {
  emit({ type: "error", message: `setup: ${err?.message ?? err}` })
  process.exit(1)
})
