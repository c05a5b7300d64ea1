// Store and Collection: the records model (docs/records.md) over an
// automerge-repo Repo with IndexedDB storage, the relay over WebSocket and
// the other tabs of the profile over BroadcastChannel.

import * as A from "@automerge/automerge/slim"
import { Repo, generateAutomergeUrl, parseAutomergeUrl } from "@automerge/automerge-repo/slim"
import { IndexedDBStorageAdapter } from "@automerge/automerge-repo-storage-indexeddb"
import { BroadcastChannelNetworkAdapter } from "@automerge/automerge-repo-network-broadcastchannel"

import { ReconnectingWebSocketAdapter } from "./network.js"
import {
  INDEX_TYPE,
  KEY_COLLECTION,
  KEY_DELETED,
  KEY_DELETED_AT,
  KEY_TYPE,
  RecordsError,
  checkCollection,
  checkFields,
  checkId,
  headsWithin,
  indexId,
  liveIds,
  recordOf,
} from "./records.js"

// Our own keys in the IndexedDB object store, beside automerge-repo's
// ([docId, "snapshot", …], ["storage-adapter-id"]; document ids are
// base58, so they never contain "-"). [NS, "pending", docId] marks a
// document that holds changes the relay had not acknowledged when we last
// knew; after a reload the marks stand in for the sync state, which lives
// in memory only.
const NS = "amsync-jsbridge"
const PENDING = "pending"

const READY = "ready"
const UNAVAILABLE = "unavailable"

let wasmInit

/**
 * The IndexedDB adapter of automerge-repo, closable: the Repo keeps
 * throttled writes (documents, sync states) in flight for a while after
 * its last change, and a write on a closed database throws. close() waits
 * for the writes under way, then turns later ones into no-ops (everything
 * the store holds was flushed before) and closes the database.
 */
class ClosableIndexedDBStorageAdapter extends IndexedDBStorageAdapter {
  #closed = false
  #inflight = new Set()

  #run(op, fallback) {
    if (this.#closed) return Promise.resolve(fallback)
    const p = op()
    this.#inflight.add(p)
    const done = () => this.#inflight.delete(p)
    p.then(done, done)
    return p
  }

  load(key) {
    return this.#run(() => super.load(key), undefined)
  }

  save(key, data) {
    return this.#run(() => super.save(key, data), undefined)
  }

  remove(key) {
    return this.#run(() => super.remove(key), undefined)
  }

  loadRange(prefix) {
    return this.#run(() => super.loadRange(prefix), [])
  }

  removeRange(prefix) {
    return this.#run(() => super.removeRange(prefix), undefined)
  }

  async close() {
    this.#closed = true
    await Promise.allSettled([...this.#inflight])
    const db = await this.dbPromise
    db.close()
  }
}

function initWasm(url) {
  if (A.isWasmInitialized()) return Promise.resolve()
  wasmInit ??= A.initializeWasm(url ?? new URL("automerge.wasm", import.meta.url)).catch(err => {
    wasmInit = undefined
    throw err
  })
  return wasmInit
}

function randomTag() {
  if (globalThis.crypto?.getRandomValues) {
    const b = crypto.getRandomValues(new Uint8Array(8))
    return Array.from(b, x => x.toString(16).padStart(2, "0")).join("")
  }
  return Math.random().toString(36).slice(2)
}

const utf8 = new TextEncoder()
const utf8d = new TextDecoder()

/**
 * openStore opens (or creates) the IndexedDB database `name`, loads the
 * automerge core and starts syncing with the relay at `url`. Records work
 * offline from the start; the connection comes and goes on its own.
 *
 * Options: `wasmUrl` (default: automerge.wasm next to this module),
 * `reconnect` ({minDelay, maxDelay, handshakeTimeout} in ms), `broadcast`
 * (sync with the other tabs of this profile; default true), `peerId`.
 */
export async function openStore(opts = {}) {
  const { url, name, wasmUrl, reconnect, broadcast = true, peerId } = opts
  if (typeof url !== "string" || !/^wss?:\/\//.test(url)) {
    throw new TypeError("jsbridge: openStore: url must be a ws:// or wss:// URL")
  }
  if (typeof name !== "string" || name === "") {
    throw new TypeError("jsbridge: openStore: name (the IndexedDB database) is required")
  }
  // The Repo and every document call into the wasm core: nothing is built
  // before it is loaded.
  await initWasm(wasmUrl)
  const storage = new ClosableIndexedDBStorageAdapter(name)
  await storage.dbPromise
  const ws = new ReconnectingWebSocketAdapter(url, reconnect)
  const network = [ws]
  let bc
  if (broadcast && typeof BroadcastChannel === "function") {
    bc = new BroadcastChannelNetworkAdapter({ channelName: `${NS}:${name}` })
    network.push(bc)
  }
  const repo = new Repo({ storage, network, peerId: peerId ?? `jsbridge-${randomTag()}` })
  const core = new Core({ repo, storage, ws, bc, name })
  await core.loadMarks()
  return new Store(core)
}

/** Core is the state a Store and its Collections share. */
class Core {
  constructor({ repo, storage, ws, bc, name }) {
    this.repo = repo
    this.storage = storage
    this.ws = ws
    this.bc = bc
    this.name = name
    this.closed = false
    this.serverStorageId = undefined
    /** @type {Map<string, {handle: any, kind: string, pending: boolean, off: () => void}>} */
    this.tracked = new Map()
    this.marks = new Set()
    this.markChain = Promise.resolve()
    this.toEval = new Set()
    this.evalQueued = false
    this.events = new EventTarget()
    this.lastStatus = ""

    ws.on("peer-candidate", ({ peerMetadata }) => {
      this.serverStorageId = peerMetadata?.storageId || undefined
      this.reevalAll()
    })
    ws.on("status", () => this.reevalAll())
    this.onPageHide = ev => {
      // Tell the other tabs that this one is gone, so that they do not wait
      // for its answers.
      if (!ev.persisted) this.bc?.disconnect()
    }
    if (typeof addEventListener === "function") addEventListener("pagehide", this.onPageHide)
  }

  // Pending marks --------------------------------------------------------

  async loadMarks() {
    const rows = await this.storage.loadRange([NS, PENDING])
    const found = []
    for (const { key, data } of rows) {
      const id = key[2]
      let meta = {}
      try {
        meta = JSON.parse(utf8d.decode(data))
      } catch {
        // an unreadable mark still marks the document
      }
      this.marks.add(id)
      found.push({ id, kind: meta.kind === "index" ? "index" : "record" })
    }
    // Marked documents are local (we changed them here): loading them is a
    // storage read. Tracking them makes them sync at the next connection.
    await Promise.all(
      found.map(async ({ id, kind }) => {
        const h = await this.open(id, kind)
        if (!h.isReady()) this.unmark(id)
      }),
    )
  }

  mark(id, kind) {
    if (this.marks.has(id)) return
    this.marks.add(id)
    const data = utf8.encode(JSON.stringify({ kind }))
    this.markChain = this.markChain.then(() => this.storage.save([NS, PENDING, id], data)).catch(() => {})
  }

  unmark(id) {
    if (!this.marks.delete(id)) return
    this.markChain = this.markChain.then(() => this.storage.remove([NS, PENDING, id])).catch(() => {})
  }

  // Documents ------------------------------------------------------------

  /**
   * open finds a document (in IndexedDB, else from the relay or another
   * tab) and tracks it. The handle is ready, or unavailable when no one
   * has it (yet: it turns ready if it arrives later).
   */
  async open(id, kind) {
    const h = await this.repo.find(id, { allowableStates: [READY, UNAVAILABLE] })
    this.track(h, kind)
    return h
  }

  /** handle returns the document's handle at once, loading it if needed. */
  handle(id, kind) {
    const h = this.repo.findWithProgress(id).handle
    this.track(h, kind)
    return h
  }

  track(handle, kind) {
    const id = handle.documentId
    if (this.tracked.has(id) || this.closed) return
    const fn = () => this.reeval(id)
    handle.on("heads-changed", fn)
    handle.on("remote-heads", fn)
    const off = () => {
      handle.off("heads-changed", fn)
      handle.off("remote-heads", fn)
    }
    this.tracked.set(id, { handle, kind, pending: this.marks.has(id), off })
    this.reeval(id)
  }

  /** changed records a local change to a tracked document. */
  changed(handle, kind) {
    this.track(handle, kind)
    const t = this.tracked.get(handle.documentId)
    if (t) t.pending = true
    this.mark(handle.documentId, kind)
    this.reeval(handle.documentId)
    this.emitStatus()
  }

  /** persist writes the documents to IndexedDB now (not 100 ms later). */
  async persist(ids) {
    const ready = ids.filter(id => this.repo.handles[id]?.isReady())
    if (ready.length) await this.repo.flush(ready)
    await this.markChain
  }

  async persistAll() {
    await this.persist([...this.tracked.keys()])
  }

  // Pending and status ---------------------------------------------------

  reeval(id) {
    this.toEval.add(id)
    if (this.evalQueued) return
    this.evalQueued = true
    // After the current task: a sync message updates the relay's heads
    // before it updates the document; judging in between would flicker.
    queueMicrotask(() => this.evaluate())
  }

  reevalAll() {
    for (const id of this.tracked.keys()) this.toEval.add(id)
    this.reeval(undefined)
    this.emitStatus()
  }

  evaluate() {
    this.evalQueued = false
    for (const id of this.toEval) {
      const t = id && this.tracked.get(id)
      if (!t) continue
      const h = t.handle
      const info = this.serverStorageId && h.isReady() ? h.getSyncInfo(this.serverStorageId) : undefined
      if (!info) {
        // Nothing heard from the relay about it in this page's life: what
        // the marks say.
        t.pending = this.marks.has(id)
        continue
      }
      // Acknowledged when every head of ours is among the relay's heads.
      // (When the relay is ahead, our heads are its ancestors, not its
      // heads, until its changes arrive: pending for that round trip.)
      t.pending = !headsWithin(h.heads(), info.lastHeads)
      if (t.pending) this.mark(id, t.kind)
      else this.unmark(id)
    }
    this.toEval.clear()
    this.emitStatus()
  }

  status() {
    const pendingIds = []
    let synced = this.ws.online
    for (const [id, t] of this.tracked) {
      if (!t.pending) continue
      synced = false
      if (t.kind === "record") pendingIds.push(id)
    }
    pendingIds.sort()
    return {
      online: this.ws.online,
      pending: pendingIds.length,
      pendingIds,
      synced: synced && !this.evalQueued,
      forcedOffline: this.ws.paused,
    }
  }

  emitStatus() {
    const s = this.status()
    const key = JSON.stringify(s)
    if (key === this.lastStatus) return
    this.lastStatus = key
    this.events.dispatchEvent(new CustomEvent("status", { detail: s }))
  }

  async close() {
    if (this.closed) return
    this.closed = true
    if (typeof removeEventListener === "function") removeEventListener("pagehide", this.onPageHide)
    this.ws.disconnect()
    this.bc?.disconnect()
    await this.persistAll()
    for (const t of this.tracked.values()) t.off()
    this.emitStatus()
    await this.storage.close()
    this.events.dispatchEvent(new CustomEvent("close"))
  }
}

/**
 * Store is an open database of records. It is an EventTarget: "status"
 * events carry status() in event.detail; on("status", fn) is shorthand.
 */
export class Store extends EventTarget {
  #core
  #collections = new Map()

  constructor(core) {
    super()
    this.#core = core
    core.events.addEventListener("status", ev => {
      this.dispatchEvent(new CustomEvent("status", { detail: ev.detail }))
    })
    core.events.addEventListener("close", () => this.dispatchEvent(new CustomEvent("close")))
  }

  /** name is the IndexedDB database's name. */
  get name() {
    return this.#core.name
  }

  /** repo is the underlying automerge-repo Repo, for what records do not cover. */
  get repo() {
    return this.#core.repo
  }

  /** collection returns the collection called name (1–200 bytes of UTF-8, no NUL). */
  collection(name) {
    checkCollection(name)
    let c = this.#collections.get(name)
    if (!c) {
      c = new Collection(this.#core, name)
      this.#collections.set(name, c)
    }
    return c
  }

  /**
   * status: online (the relay answered on a live connection), pending (the
   * number of records holding changes the relay has not acknowledged),
   * pendingIds (those records), synced (online and nothing pending,
   * collection indexes included), forcedOffline (after goOffline()).
   */
  status() {
    return this.#core.status()
  }

  /** on subscribes fn to an event ("status": fn(status)) and returns the unsubscribe function. */
  on(type, fn) {
    const l = ev => fn(ev.detail)
    this.addEventListener(type, l)
    return () => this.removeEventListener(type, l)
  }

  /**
   * synced resolves once the store is online with nothing pending, and
   * what it holds is written to IndexedDB. It rejects when the store is
   * closed first.
   */
  synced() {
    const core = this.#core
    return new Promise((resolve, reject) => {
      let off = () => {}
      let done = false
      const check = () => {
        if (done) return
        if (core.closed) {
          done = true
          off()
          reject(new Error("jsbridge: store closed"))
          return
        }
        if (!core.status().synced) return
        done = true
        off()
        core.persistAll().then(resolve, reject)
      }
      const onClose = () => check()
      this.addEventListener("close", onClose)
      const offStatus = this.on("status", check)
      off = () => {
        offStatus()
        this.removeEventListener("close", onClose)
      }
      check()
    })
  }

  /** goOffline closes the connection to the relay and keeps it closed (records keep working). */
  goOffline() {
    this.#core.ws.pause()
    this.#core.emitStatus()
  }

  /** goOnline reconnects after goOffline(). */
  goOnline() {
    this.#core.ws.resume()
    this.#core.emitStatus()
  }

  /** reconnectNow retries a lost connection at once instead of after the backoff delay. */
  reconnectNow() {
    this.#core.ws.retryNow()
  }

  /** close writes everything to IndexedDB, disconnects and closes the database. */
  async close() {
    await this.#core.close()
  }
}

/** Collection is a named set of records (docs/records.md). */
export class Collection {
  #core
  #index

  constructor(core, name) {
    this.#core = core
    this.name = name
    /** indexId is the id of the collection's index document. */
    this.indexId = indexId(name)
  }

  /** The index handle: ready, or unavailable while no one has the index. */
  #indexHandle() {
    this.#index ??= this.#core.open(this.indexId, "index").catch(err => {
      this.#index = undefined
      throw err
    })
    return this.#index
  }

  /** Sets the index entry of id, creating the index document if needed. */
  async #setIndex(id, live) {
    const core = this.#core
    let h = await this.#indexHandle()
    if (h.isReady()) {
      h.change(d => {
        if (d[KEY_TYPE] === undefined) {
          d[KEY_TYPE] = new A.ImmutableString(INDEX_TYPE)
          d[KEY_COLLECTION] = new A.ImmutableString(this.name)
        }
        d[id] = live
      })
    } else {
      // Nobody has the index yet (or we are offline and never had it):
      // make its first change here. Clients that do this concurrently
      // merge: every entry is its own root key.
      const doc = A.change(A.init(), d => {
        d[KEY_TYPE] = new A.ImmutableString(INDEX_TYPE)
        d[KEY_COLLECTION] = new A.ImmutableString(this.name)
        d[id] = live
      })
      h = core.repo.import(A.save(doc), { docId: this.indexId })
    }
    core.changed(h, "index")
  }

  async #live(id) {
    checkId(id)
    const h = await this.#core.open(id, "record")
    if (!h.isReady() || !recordOf(id, h.doc(), this.name)) {
      throw new RecordsError("not_found", id)
    }
    return h
  }

  /**
   * put creates a record with fields and returns its new id. It needs no
   * connection: the id is made here and the record syncs when it can. It
   * resolves once the record is written to IndexedDB.
   */
  async put(fields) {
    checkFields(fields)
    const core = this.#core
    const { documentId: id } = parseAutomergeUrl(generateAutomergeUrl())
    // Made first, in memory, so that values automerge refuses (undefined,
    // functions, …) throw before anything is written.
    const doc = A.change(A.init(), d => {
      d[KEY_COLLECTION] = new A.ImmutableString(this.name)
      for (const k of Object.keys(fields).sort()) d[k] = fields[k]
    })
    // Then written, the index first (as in Go): an entry whose record is
    // missing is skipped by list, a record missing from the index would be
    // invisible.
    await this.#setIndex(id, true)
    const h = core.repo.import(A.save(doc), { docId: id })
    core.changed(h, "record")
    await core.persist([this.indexId, id])
    return id
  }

  /**
   * update changes a record with fn, as one change: fn gets the record's
   * document (a proxy, as in automerge's change callback) and mutates it;
   * it must be synchronous. Resolves with the updated record once written
   * to IndexedDB; rejects with code "not_found" unless the record is live.
   */
  async update(id, fn) {
    if (typeof fn !== "function") throw new TypeError("jsbridge: update(id, fn): fn must be a function")
    const h = await this.#live(id)
    const before = h.heads()
    let ret
    h.change(d => {
      ret = fn(d)
    })
    if (!headsWithin(h.heads(), before)) {
      this.#core.changed(h, "record")
      await this.#core.persist([id])
    }
    if (ret && typeof ret.then === "function") {
      throw new TypeError("jsbridge: update: fn must be synchronous (changes after an await are not part of the change)")
    }
    return recordOf(id, h.doc(), this.name)
  }

  /**
   * get returns the record {id, ...fields} (server-generated fields
   * included once they arrived), or undefined when there is no live record
   * with that id in this collection.
   */
  async get(id) {
    checkId(id)
    const h = await this.#core.open(id, "record")
    return h.isReady() ? recordOf(id, h.doc(), this.name) : undefined
  }

  /** list returns the live records [{id, ...fields}], sorted by id. */
  async list() {
    const idx = await this.#indexHandle()
    if (!idx.isReady()) return []
    const ids = liveIds(idx.doc())
    const hs = await Promise.all(ids.map(id => this.#core.open(id, "record")))
    return hs.map((h, i) => (h.isReady() ? recordOf(ids[i], h.doc(), this.name) : undefined)).filter(Boolean)
  }

  /**
   * delete tombstones a record: it is marked deleted (the mark syncs to
   * every replica) and its index entry turns false.
   */
  async delete(id) {
    const h = await this.#live(id)
    h.change(d => {
      d[KEY_DELETED] = true
      d[KEY_DELETED_AT] = Date.now()
    })
    this.#core.changed(h, "record")
    await this.#setIndex(id, false)
    await this.#core.persist([id, this.indexId])
  }

  /**
   * subscribe calls fn with list() now and after every change to the
   * collection, local or remote (another tab, the relay). Records still on
   * their way are left out until they arrive. Returns the unsubscribe
   * function.
   */
  subscribe(fn) {
    const core = this.#core
    let stopped = false
    let running = false
    let again = false
    let last
    const offs = new Map()
    const watch = h => {
      if (offs.has(h.documentId)) return
      const l = () => kick()
      h.on("heads-changed", l)
      offs.set(h.documentId, () => h.off("heads-changed", l))
    }
    const run = async () => {
      const idx = await this.#indexHandle()
      watch(idx)
      const ids = idx.isReady() ? liveIds(idx.doc()) : []
      const hs = ids.map(id => core.handle(id, "record"))
      hs.forEach(watch)
      // Wait for what IndexedDB has; what must come over the network shows
      // up in a later call.
      await Promise.all(hs.map(h => h.whenReady([READY, UNAVAILABLE, "requesting"]).catch(() => {})))
      const list = hs.map((h, i) => (h.isReady() ? recordOf(ids[i], h.doc(), this.name) : undefined)).filter(Boolean)
      const key = JSON.stringify(list)
      if (key === last || stopped) return
      last = key
      try {
        fn(list)
      } catch (err) {
        console.error("jsbridge: subscriber threw", err)
      }
    }
    const kick = () => {
      if (stopped) return
      if (running) {
        again = true
        return
      }
      running = true
      queueMicrotask(async () => {
        try {
          do {
            again = false
            await run()
          } while (again && !stopped)
        } catch (err) {
          console.error("jsbridge: subscribe", err)
        } finally {
          running = false
        }
      })
    }
    kick()
    return () => {
      stopped = true
      for (const off of offs.values()) off()
      offs.clear()
    }
  }
}

