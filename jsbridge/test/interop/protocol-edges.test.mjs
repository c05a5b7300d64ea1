// Scenario: the WebSocket handshake and malformed input, driven with a raw
// `ws` socket instead of a Repo so the exact frames can be checked.

import { after, before, test } from "node:test"
import assert from "node:assert/strict"
import { randomUUID } from "node:crypto"

import WebSocket from "ws"
import { cbor, generateAutomergeUrl, parseAutomergeUrl } from "@automerge/automerge-repo"

import {
  SERVER_KIND,
  scope,
  seededRandom,
  serverStorageId,
  waitAcked,
  withDeadline,
} from "./harness.mjs"

const FRAME_MS = 5000

// One server for the whole file (tests run one after another); each test
// makes and cleans up its own sockets and clients.
const file = scope({ after })
let srv
before(async () => {
  srv = await file.server()
})

/**
 * A raw WebSocket to the server that records every frame (decoded when it is
 * CBOR) and its close. Closed by the scope's cleanup.
 */
async function rawSocket(s, url) {
  const ws = new WebSocket(url)
  const frames = []
  const waiters = []
  let closeInfo
  const closed = new Promise(resolve => {
    ws.on("close", (code, reason) => {
      closeInfo = { code, reason: reason.toString() }
      resolve(closeInfo)
      for (const w of waiters.splice(0)) w()
    })
  })
  ws.on("error", () => {}) // a reset shows up as close as well
  ws.on("message", (data, isBinary) => {
    let msg
    try {
      msg = cbor.decode(new Uint8Array(data))
    } catch {
      msg = undefined
    }
    frames.push({ isBinary, msg, bytes: data.length })
    for (const w of waiters.splice(0)) w()
  })
  s.defer(() => {
    if (ws.readyState !== WebSocket.CLOSED) ws.terminate()
  })
  await withDeadline(
    new Promise((resolve, reject) => {
      ws.once("open", resolve)
      ws.once("error", reject)
    }),
    FRAME_MS,
    `raw socket to ${url} to open`
  )
  let read = 0
  return {
    ws,
    frames,
    closed,
    get isClosed() {
      return closeInfo !== undefined
    },
    send(obj) {
      ws.send(cbor.encode(obj))
    },
    sendRaw(bytes) {
      ws.send(bytes)
    },
    /** The next frame not yet returned, or undefined if the socket closed first. */
    async next(timeoutMs = FRAME_MS, what = "a frame from the server") {
      const got = new Promise(resolve => {
        const check = () => {
          if (read < frames.length) resolve(frames[read++])
          else if (closeInfo) resolve(undefined)
          else waiters.push(check)
        }
        check()
      })
      return withDeadline(got, timeoutMs, what)
    },
  }
}

/** The JOIN the official 2.5.6 client sends (WebSocketClientAdapter joinMessage). */
function joinMessage(peerId, versions = ["1"]) {
  return {
    type: "join",
    senderId: peerId,
    peerMetadata: { storageId: undefined, isEphemeral: true },
    supportedProtocolVersions: versions,
  }
}

/** Seeded random bytes that are not a single well-formed CBOR item. */
function garbageFrame(seed, length = 64) {
  for (let k = 0; ; k++) {
    const rand = seededRandom(seed + k)
    const bytes = new Uint8Array(length)
    for (let i = 0; i < length; i++) bytes[i] = Math.floor(rand() * 256)
    try {
      cbor.decode(bytes)
    } catch {
      return bytes
    }
  }
}

test(`protocol (${SERVER_KIND}): PEER answers JOIN; storageId is stable across a restart`, async t => {
  const s = scope(t)

  const handshake = async () => {
    const sock = await rawSocket(s, `${srv.url}/any/path`)
    const peerId = `raw-${randomUUID().slice(0, 8)}`
    sock.send(joinMessage(peerId))
    const f = await sock.next(FRAME_MS, "the PEER reply to JOIN")
    if (!f) assert.fail(`socket closed instead of PEER: ${JSON.stringify(await sock.closed)}`)
    assert.equal(f.isBinary, true, "PEER must be a binary frame (clients drop text frames)")
    const m = f.msg
    assert.equal(m?.type, "peer", `got ${JSON.stringify(m)}`)
    assert.equal(m.selectedProtocolVersion, "1")
    assert.equal(m.targetId, peerId)
    assert.equal(typeof m.senderId, "string")
    assert.ok(m.senderId.length > 0)
    assert.equal(typeof m.peerMetadata?.storageId, "string")
    assert.ok(m.peerMetadata.storageId.length > 0)
    assert.equal(m.peerMetadata.isEphemeral, false)
    sock.ws.close()
    return m
  }

  const first = await handshake()
  await srv.restart()
  const second = await handshake()
  t.diagnostic(`server peerId ${first.senderId} -> ${second.senderId}`)
  assert.equal(second.peerMetadata.storageId, first.peerMetadata.storageId)
})

test(`protocol (${SERVER_KIND}): JOIN with only version "2" gets an error, then close`, async t => {
  const s = scope(t)
  const sock = await rawSocket(s, srv.url)
  const peerId = `raw-${randomUUID().slice(0, 8)}`
  sock.send(joinMessage(peerId, ["2"]))
  const f = await sock.next(FRAME_MS, "the error reply to an unsupported version")
  assert.ok(f, "socket closed without an error message")
  assert.equal(f.isBinary, true)
  assert.equal(f.msg?.type, "error", `got ${JSON.stringify(f.msg)}`)
  assert.equal(f.msg.message, "unsupported protocol version")
  const closed = await withDeadline(sock.closed, FRAME_MS, "the server to close the socket")
  t.diagnostic(`closed with ${JSON.stringify(closed)}`)
  const extra = sock.frames.filter(fr => fr.msg?.type === "peer")
  assert.equal(extra.length, 0, "no PEER after an unsupported version")
})

test(
  `protocol (${SERVER_KIND}): a non-join first frame gets an error and/or close`,
  {
    skip:
      SERVER_KIND === "reference"
        ? "the official 2.5.6 server silently ignores messages from a peer that has not joined (relay requirement only)"
        : false,
  },
  async t => {
    const s = scope(t)
    const sock = await rawSocket(s, srv.url)
    const { documentId } = parseAutomergeUrl(generateAutomergeUrl())
    sock.send({
      type: "request",
      senderId: `raw-${randomUUID().slice(0, 8)}`,
      targetId: "anyone",
      documentId,
      // the request an empty document sends (protocol notes section 2)
      data: new Uint8Array([0x42, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x02, 0x84]),
    })
    const f = await sock.next(FRAME_MS, "an error frame or a close after a non-join first frame")
    if (f) {
      assert.equal(f.msg?.type, "error", `first reply ${JSON.stringify(f.msg)}, want error`)
      assert.ok(typeof f.msg.message === "string" && f.msg.message.length > 0)
    }
    const closed = await withDeadline(sock.closed, FRAME_MS, "the server to close the socket").catch(
      () => undefined
    )
    t.diagnostic(`error frame: ${JSON.stringify(f?.msg)}; close: ${JSON.stringify(closed)}`)
    assert.ok(f || closed, "neither an error message nor a close")
    assert.ok(!sock.frames.some(fr => fr.msg?.type === "peer" || fr.msg?.type === "sync"))
  }
)

test(`protocol (${SERVER_KIND}): random bytes close that socket only`, async t => {
  const s = scope(t)
  const c = await s.client({ url: srv.url, name: "C" })
  const sid = await serverStorageId(c.repo)
  const h = c.repo.create({ n: 0 })
  await waitAcked(h, sid, 10_000)

  // Garbage as the very first frame.
  const first = await rawSocket(s, srv.url)
  first.sendRaw(garbageFrame(1))
  // Garbage after a successful handshake.
  const joined = await rawSocket(s, srv.url)
  const peerId = `raw-${randomUUID().slice(0, 8)}`
  joined.send(joinMessage(peerId))
  const peer = await joined.next(FRAME_MS, "PEER")
  assert.equal(peer?.msg?.type, "peer")
  joined.sendRaw(garbageFrame(2))

  const [c1, c2] = await Promise.all([
    withDeadline(first.closed, FRAME_MS, "the garbage-first socket to be closed"),
    withDeadline(joined.closed, FRAME_MS, "the joined socket to be closed after garbage"),
  ])
  t.diagnostic(`closes: ${JSON.stringify([c1, c2])}`)

  // The Repo client on its own socket is unaffected: same peer, still syncing.
  assert.equal(c.repo.peers.length, 1)
  h.change(d => {
    d.n = 1
  })
  await waitAcked(h, sid, 10_000)
  const other = await s.client({ url: srv.url, name: "D" })
  const found = await other.repo.find(h.url)
  assert.deepEqual(found.doc(), { n: 1 })
  const health = await fetch(`${srv.httpUrl}/healthz`)
  assert.equal(health.status, 200)
})
