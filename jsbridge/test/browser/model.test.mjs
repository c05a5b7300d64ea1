// The parts of the bridge that need no browser: the records model's ids
// and checks (against values computed by the Go implementation), plain
// values, and the reconnect backoff.

import { test } from "node:test"
import assert from "node:assert/strict"
import * as A from "@automerge/automerge/slim"

import {
  RecordsError,
  checkCollection,
  checkFields,
  checkId,
  derivedId,
  headsWithin,
  indexId,
  liveIds,
  toPlain,
} from "../../src/records.js"
import { RECONNECT_DEFAULTS, backoffDelay } from "../../src/network.js"

test("indexId is records.DerivedID(\"index\", name) of the Go side", () => {
  // Printed by engine/records.DerivedID in Go.
  assert.equal(indexId("todos"), "dUjNJJiujLWDNQExoTSfNe5SnYx")
  assert.equal(indexId("x"), "3mp8coBpE7P2i7q9xXDieD9xrMVv")
  assert.equal(indexId("ünïcødé/名前"), "2dB6iJZwUmXrzW9ENrmBH3hvaSqg")
  assert.equal(derivedId("index", "todos"), indexId("todos"))
  checkId(indexId("todos"))
})

test("collection names, field names and ids are checked as in Go", () => {
  const code = fn => {
    try {
      fn()
      return "ok"
    } catch (err) {
      assert.ok(err instanceof RecordsError)
      return err.code
    }
  }
  assert.equal(code(() => checkCollection("todos")), "ok")
  assert.equal(code(() => checkCollection("é".repeat(100))), "ok") // 200 bytes
  assert.equal(code(() => checkCollection("é".repeat(101))), "invalid") // 202 bytes
  assert.equal(code(() => checkCollection("")), "invalid")
  assert.equal(code(() => checkCollection("a\u0000b")), "invalid")
  assert.equal(code(() => checkFields({ title: 1, done_: 2 })), "ok")
  assert.equal(code(() => checkFields({ _collection: "x" })), "invalid")
  assert.equal(code(() => checkFields({ "": 1 })), "invalid")
  assert.equal(code(() => checkFields(null)), "invalid")
  assert.equal(code(() => checkId("dUjNJJiujLWDNQExoTSfNe5SnYx")), "ok")
  assert.equal(code(() => checkId("dUjNJJiujLWDNQExoTSfNe5SnYy")), "invalid") // checksum
  assert.equal(code(() => checkId("")), "invalid")
  assert.equal(code(() => checkId(42)), "invalid")
})

test("liveIds lists the true entries of an index, without the reserved keys", () => {
  assert.deepEqual(liveIds({ _type: "amsync/index", _collection: "todos", b: true, a: true, c: false }), ["a", "b"])
  assert.deepEqual(liveIds(undefined), [])
})

test("toPlain turns automerge values into plain ones", () => {
  const v = {
    s: new A.ImmutableString("scalar"),
    n: new A.Counter(3),
    list: [new A.ImmutableString("x"), 1, null],
    bytes: new Uint8Array([1, 2]),
    when: new Date(5),
    map: { deep: { t: "text" } },
  }
  assert.deepEqual(toPlain(v), {
    s: "scalar",
    n: 3,
    list: ["x", 1, null],
    bytes: new Uint8Array([1, 2]),
    when: new Date(5),
    map: { deep: { t: "text" } },
  })
})

test("headsWithin: acknowledged when every head of ours is among the relay's", () => {
  assert.equal(headsWithin(["a"], ["a"]), true)
  assert.equal(headsWithin(["a"], ["a", "b"]), true)
  assert.equal(headsWithin(["a", "b"], ["a"]), false)
  assert.equal(headsWithin(["a"], undefined), false)
})

test("backoffDelay grows exponentially to the cap, with jitter between the floor and the cap", () => {
  const opts = { minDelay: 250, maxDelay: 10_000 }
  assert.deepEqual(RECONNECT_DEFAULTS, { ...opts, handshakeTimeout: 10_000 })
  const lo = () => 0
  const hi = () => 1 - Number.EPSILON
  const caps = [0, 1, 2, 3, 4, 5, 6, 10, 100].map(n => backoffDelay(n, opts, hi))
  assert.deepEqual(caps, [250, 500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000])
  for (let n = 0; n < 10; n++) assert.equal(backoffDelay(n, opts, lo), 250)
  // A seeded generator: delays spread over the whole range, so that
  // clients that lost the server together do not return together.
  let x = 42
  const rand = () => ((x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31)
  const ds = Array.from({ length: 200 }, () => backoffDelay(8, opts, rand))
  assert.ok(Math.min(...ds) < 2000 && Math.max(...ds) > 8000, `spread ${Math.min(...ds)}..${Math.max(...ds)}`)
  assert.ok(ds.every(d => d >= 250 && d <= 10_000))
})
