// The records model of docs/records.md, the parts that need no Repo: ids,
// reserved keys, validation, and turning automerge values into plain ones.
// engine/records/records.go is the Go implementation of the same model.

import bs58check from "bs58check"
import sha256 from "fast-sha256"
import * as A from "@automerge/automerge/slim"

/** Reserved top-level keys (docs/records.md). */
export const KEY_COLLECTION = "_collection"
export const KEY_DELETED = "_deleted"
export const KEY_DELETED_AT = "_deletedAt"
export const KEY_TYPE = "_type"
export const INDEX_TYPE = "amsync/index"

/**
 * An error of the records API. `code` is "not_found" (no live record with
 * that id in this collection) or "invalid" (a bad collection name, field
 * name or record id), the two sentinel errors of the Go side.
 */
export class RecordsError extends Error {
  constructor(code, message) {
    super(`records: ${code === "not_found" ? "not found" : "invalid argument"}: ${message}`)
    this.name = "RecordsError"
    this.code = code
  }
}

const utf8 = new TextEncoder()

/**
 * derivedId is the document id every client derives from a name:
 * bs58check(SHA-256("amsync/" + kind + "/" + name)[0:16]), as DerivedID in
 * Go.
 */
export function derivedId(kind, name) {
  const sum = sha256(utf8.encode(`amsync/${kind}/${name}`))
  return bs58check.encode(sum.subarray(0, 16))
}

/** indexId is the id of a collection's index document. */
export function indexId(collection) {
  return derivedId("index", collection)
}

/** checkCollection throws unless name is 1–200 UTF-8 bytes without NUL. */
export function checkCollection(name) {
  if (typeof name !== "string") throw new RecordsError("invalid", `collection name ${String(name)}`)
  const n = utf8.encode(name).length
  if (n === 0 || n > 200 || name.includes("\u0000")) {
    throw new RecordsError("invalid", `collection name ${JSON.stringify(name)}`)
  }
}

/** checkFields throws unless fields is a plain object without reserved keys. */
export function checkFields(fields) {
  if (fields === null || typeof fields !== "object" || Array.isArray(fields)) {
    throw new RecordsError("invalid", "fields must be an object")
  }
  for (const k of Object.keys(fields)) {
    if (k === "" || k.startsWith("_")) {
      throw new RecordsError("invalid", `field name ${JSON.stringify(k)} (names starting with _ are reserved)`)
    }
  }
}

/** checkId throws unless id is a document id (bs58check, as automerge-repo makes them). */
export function checkId(id) {
  if (typeof id !== "string" || id === "" || bs58check.decodeUnsafe(id) === undefined) {
    throw new RecordsError("invalid", `record id ${JSON.stringify(id)}`)
  }
}

/** liveIds lists the record ids an index document marks live, sorted. */
export function liveIds(index) {
  const ids = []
  for (const [k, v] of Object.entries(index ?? {})) {
    if (!k.startsWith("_") && v === true) ids.push(k)
  }
  return ids.sort()
}

/**
 * toPlain turns a value read from an automerge document into plain data:
 * scalar strings (which the Go side writes) and text become strings,
 * counters numbers; maps, lists, bytes and dates are copied.
 */
export function toPlain(v) {
  if (v === null || typeof v !== "object") return v
  if (A.isImmutableString(v)) return v.toString()
  if (v instanceof A.Counter) return v.value
  if (v instanceof Date) return new Date(v.getTime())
  if (v instanceof Uint8Array) return new Uint8Array(v)
  if (Array.isArray(v)) return v.map(toPlain)
  const out = {}
  for (const [k, x] of Object.entries(v)) out[k] = toPlain(x)
  return out
}

/** str reads a reserved string key (scalar or text) as a JS string. */
export function str(v) {
  if (typeof v === "string") return v
  if (v && A.isImmutableString(v)) return v.toString()
  return undefined
}

/**
 * recordOf returns {id, ...fields} of a record document (fields in sorted
 * order, so that replicas give identical objects), or undefined when it is
 * deleted or belongs to another collection.
 */
export function recordOf(id, doc, collection) {
  if (!doc || str(doc[KEY_COLLECTION]) !== collection || doc[KEY_DELETED] === true) return undefined
  const out = { id }
  for (const k of Object.keys(doc).sort()) {
    if (!k.startsWith("_")) out[k] = toPlain(doc[k])
  }
  return out
}

/** headsWithin reports whether every head of mine is among theirs. */
export function headsWithin(mine, theirs) {
  if (!theirs) return false
  const set = new Set(theirs)
  return mine.every(h => set.has(h))
}
