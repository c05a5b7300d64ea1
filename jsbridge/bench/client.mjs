// Benchmark client: a child process of driver.mjs that runs one group of
// workloads with official automerge-repo 2.5.6 clients (Repo +
// WebSocketClientAdapter) against one server. The driver sends
// {type: "run", phase, params}; the client prepares what must not be timed
// (creating documents before connecting, connecting, starting readers), says
// {type: "ready"}, waits for {type: "go"} (the driver samples the server's
// CPU and memory in between), runs the timed part and answers
// {type: "done", result}. State (URLs, the client holding the documents)
// carries from one phase to the next within the process.
//
// Every wait has a deadline (capMs) and a stall limit (stallMs without
// progress): a server that stops answering is recorded as timed out, with
// how far it got, instead of hanging the run.

import { fork } from "node:child_process"
import { setMaxListeners } from "node:events"
import path from "node:path"
import { fileURLToPath } from "node:url"

import { Repo } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"

import { headsEqual, serverStorageId, withDeadline } from "../test/interop/harness.mjs"
import { summarize } from "./stats.mjs"

const here = path.dirname(fileURLToPath(import.meta.url))

/** Finds, changes and creations are issued this many per macrotask (see many-docs.test.mjs). */
const SLICE = 100
/** The official client retries a lost connection after this long (5 s by default). */
const RETRY_MS = 200

const url = process.env.BENCH_SERVER_URL
if (!url) throw new Error("client.mjs: BENCH_SERVER_URL is required")

function nextMacrotask() {
  return new Promise(resolve => setImmediate(resolve))
}

function now() {
  return performance.timeOrigin + performance.now()
}

/** Connections lost by this process's clients, and socket errors the official adapter threw. */
const counters = { disconnects: 0, socketErrors: 0 }

// The official WebSocketClientAdapter throws from its socket "error" handler
// for every error but ECONNREFUSED, for example ECONNRESET when a server is
// killed: an uncaught exception. It is counted and the client carries on
// (its "close" handler reconnects), so that one reset does not end the run.
process.on("uncaughtException", err => {
  if (err?.code === "ECONNRESET" || /Unexpected server response|socket hang up/.test(String(err?.message))) {
    counters.socketErrors++
    return
  }
  console.error("client.mjs: uncaught", err)
  process.exit(1)
})

let clientSeq = 0
function newRepo({ connect = true, name } = {}) {
  const peerId = `bench-${name ?? "client"}-${process.pid}-${++clientSeq}`
  const adapter = new WebSocketClientAdapter(url, RETRY_MS)
  const c = { adapter, peerId, closing: false }
  adapter.on("peer-disconnected", () => {
    if (!c.closing) counters.disconnects++
  })
  c.repo = new Repo({ network: connect ? [adapter] : [], peerId })
  return c
}

async function closeRepo(c) {
  if (!c) return
  c.closing = true
  try {
    await withDeadline(c.repo.shutdown(), 10_000, `shutdown of ${c.peerId}`)
  } catch {
    // a stuck shutdown must not stop the benchmark
  }
  c.adapter.connect = () => {} // a reconnect timer may still be armed
}

/** The content of benchmark document i: small, like the "small new documents". */
function content(i) {
  return { i, title: `document ${i}`, tags: ["bench", `t${i % 10}`], done: false }
}

/**
 * Resolves when the server (storageId) has acknowledged every handle:
 * getSyncInfo(storageId).lastHeads equals the handle's non-empty heads (the
 * harness's waitAcked, counted). Gives up after capMs, or after stallMs
 * without a new acknowledgement.
 */
function trackAcks(handles, storageId, { capMs, stallMs, t0 = now() }) {
  return new Promise(resolve => {
    const ackedAt = new Array(handles.length).fill(undefined)
    let acked = 0
    let lastProgress = now()
    const listeners = []
    const check = i => {
      if (ackedAt[i] !== undefined) return
      const h = handles[i]
      if (!h.isReady()) return
      const heads = h.heads()
      if (heads.length === 0) return // empty heads are not an ack
      const info = h.getSyncInfo(storageId)
      if (info && headsEqual(info.lastHeads, heads)) {
        ackedAt[i] = now() - t0
        acked++
        lastProgress = now()
        if (acked === handles.length) finish(false)
      }
    }
    handles.forEach((h, i) => {
      const fn = () => check(i)
      h.on("remote-heads", fn)
      h.on("heads-changed", fn)
      listeners.push([h, fn])
    })
    const timer = setInterval(() => {
      const t = now()
      if (t - lastProgress > stallMs || t - t0 > capMs) finish(true)
    }, 250)
    let finished = false
    function finish(timedOut) {
      if (finished) return
      finished = true
      clearInterval(timer)
      for (const [h, fn] of listeners) {
        h.off("remote-heads", fn)
        h.off("heads-changed", fn)
      }
      resolve({ acked, total: handles.length, timedOut, ms: now() - t0, ackedAt, t0 })
    }
    handles.forEach((_, i) => check(i))
    if (handles.length === 0) finish(false)
  })
}

/** Finds every URL (SLICE per macrotask); counts unavailable, timed out and wrong content. */
async function findAll(repo, urls, { capMs, stallMs, expect }) {
  const t0 = now()
  const abort = new AbortController()
  setMaxListeners(0, abort.signal)
  let settled = 0
  let lastProgress = now()
  const handles = new Array(urls.length)
  const outcome = new Array(urls.length)
  const finds = []
  const watchdog = setInterval(() => {
    const t = now()
    if (t - lastProgress > stallMs || t - t0 > capMs) abort.abort()
  }, 250)
  for (let k = 0; k < urls.length; k += SLICE) {
    for (let i = k; i < Math.min(urls.length, k + SLICE); i++) {
      finds.push(
        repo.find(urls[i], { signal: abort.signal }).then(
          h => {
            handles[i] = h
            outcome[i] = "ok"
            settled++
            lastProgress = now()
          },
          err => {
            outcome[i] = abort.signal.aborted ? "timeout" : "unavailable"
            if (!abort.signal.aborted && !/unavailable/i.test(String(err?.message))) {
              outcome[i] = `error: ${err?.message ?? err}`
            }
            settled++
            lastProgress = now()
          }
        )
      )
    }
    await nextMacrotask()
    if (abort.signal.aborted) break
  }
  await Promise.allSettled(finds)
  clearInterval(watchdog)
  const ms = now() - t0
  let found = 0
  let unavailable = 0
  let timedOut = urls.length - finds.length // never issued
  let wrong = 0
  const errors = []
  outcome.forEach((o, i) => {
    if (o === "ok") {
      found++
      if (expect && handles[i].doc()?.i !== expect(i)) wrong++
    } else if (o === "unavailable") unavailable++
    else if (o === "timeout") timedOut++
    else if (o) errors.push(o)
  })
  return { found, unavailable, timedOut, wrong, errors: errors.slice(0, 5), total: urls.length, ms, handles }
}

// ---------------------------------------------------------------------------
// state carried between phases

const state = {
  urls: [], // the documents pushed by push-before, in order
  holder: undefined, // the client (repo) holding the documents: pull fetches them, edit and reconnect use them
  held: [], // its handles
  storageId: undefined,
}

async function connectFresh(name) {
  const c = newRepo({ name })
  const storageId = await serverStorageId(c.repo, 30_000)
  return { c, storageId }
}

// ---------------------------------------------------------------------------
// phases: each returns { ready: info, run: async (go) => result }

const phases = {
  /** N documents created before the client connects, then pushed; timed from connecting to the last ack. */
  async "push-before"({ n, capMs, stallMs }) {
    const c = newRepo({ connect: false, name: "pusher" })
    const t0 = now()
    const handles = []
    for (let i = 0; i < n; i++) handles.push(c.repo.create(content(i)))
    const createMs = now() - t0
    return {
      ready: { createMs },
      async run() {
        const start = now()
        c.repo.networkSubsystem.addNetworkAdapter(c.adapter)
        const storageId = await serverStorageId(c.repo, 30_000)
        const acks = await trackAcks(handles, storageId, { capMs, stallMs, t0: start })
        state.urls = handles.map(h => h.url)
        state.storageId = storageId
        await closeRepo(c)
        return {
          n,
          createMs,
          acked: acks.acked,
          timedOut: acks.timedOut,
          wallMs: acks.ms,
          ackedAtMs: progressCurve(acks.ackedAt),
        }
      },
    }
  },

  /** A fresh client fetches every pushed document by URL; it keeps them for edit and reconnect. */
  async pull({ capMs, stallMs }) {
    const { c, storageId } = await connectFresh("puller")
    return {
      ready: { n: state.urls.length },
      async run() {
        const r = await findAll(c.repo, state.urls, { capMs, stallMs, expect: i => i })
        state.holder = c
        state.held = r.handles.filter(Boolean)
        state.storageId = storageId
        const { handles, ...rest } = r
        return { n: state.urls.length, ...rest, wallMs: r.ms }
      },
    }
  },

  /** The holder changes every document it holds once; timed until the server acknowledged all. */
  async edit({ capMs, stallMs }) {
    const handles = state.held
    return {
      ready: { n: handles.length },
      async run() {
        const t0 = now()
        for (let k = 0; k < handles.length; k += SLICE) {
          for (const h of handles.slice(k, k + SLICE)) {
            h.change(d => {
              d.done = true
            })
          }
          await nextMacrotask()
        }
        const acks = await trackAcks(handles, state.storageId, { capMs, stallMs, t0 })
        return { n: handles.length, acked: acks.acked, timedOut: acks.timedOut, wallMs: acks.ms }
      },
    }
  },

  /**
   * C readers (in `procs` reader processes) hold one document; the writer
   * changes it `writes` times, each time waiting until every reader has the
   * change. Latency: change made on the writer to change seen on a reader.
   */
  async fanout({ readers, writes, warmup, procs, capMs, stallMs }) {
    const { c, storageId } = await connectFresh("writer")
    const handle = c.repo.create({ seq: 0, at: 0 })
    const acks = await trackAcks([handle], storageId, { capMs: 30_000, stallMs: 30_000 })
    if (acks.acked !== 1) throw new Error("fan-out document was not acknowledged")
    const counts = Array.from({ length: procs }, (_, p) =>
      Math.floor(readers / procs) + (p < readers % procs ? 1 : 0)
    ).filter(x => x > 0)
    const seen = new Map() // seq -> array of latencies
    const writeAt = new Map()
    let waiter
    const kids = counts.map((count, p) => {
      const kid = fork(path.join(here, "reader.mjs"), [], {
        env: { ...process.env, BENCH_READERS: String(count), BENCH_DOC_URL: handle.url, BENCH_READER_PROC: String(p) },
        stdio: ["ignore", "inherit", "inherit", "ipc"],
      })
      kid.on("message", m => {
        if (m.type !== "got") return
        for (const [seq, at] of m.got) {
          const t = writeAt.get(seq)
          if (t === undefined) continue
          if (!seen.has(seq)) seen.set(seq, [])
          seen.get(seq).push(at - t)
        }
        waiter?.()
      })
      return kid
    })
    const readyAll = Promise.all(
      kids.map(
        kid =>
          new Promise((resolve, reject) => {
            kid.on("message", m => {
              if (m.type === "ready") resolve(m)
              if (m.type === "error") reject(new Error(`reader: ${m.message}`))
            })
            kid.on("exit", code => reject(new Error(`reader exited ${code} before ready`)))
          })
      )
    )
    const stopKids = async () => {
      await Promise.all(
        kids.map(
          kid =>
            new Promise(resolve => {
              if (kid.exitCode !== null || kid.signalCode !== null) return resolve()
              kid.once("exit", resolve)
              kid.send({ type: "exit" })
              setTimeout(() => kid.kill("SIGKILL"), 15_000).unref()
            })
        )
      )
    }
    let readyInfo
    try {
      readyInfo = await withDeadline(readyAll, capMs, `${readers} readers to find the document`)
    } catch (err) {
      await stopKids()
      await closeRepo(c)
      throw err
    }
    return {
      ready: { readers, procs: kids.length, readerSetupMs: Math.max(...readyInfo.map(r => r.ms)) },
      async run() {
        const perWrite = []
        let missing = 0
        const t0 = now()
        try {
          for (let k = 1; k <= writes; k++) {
            writeAt.set(k, now())
            handle.change(d => {
              d.seq = k
              d.at = Date.now()
            })
            const deadline = now() + stallMs
            while ((seen.get(k)?.length ?? 0) < readers && now() < deadline) {
              await new Promise(resolve => {
                waiter = resolve
                setTimeout(resolve, 50)
              })
            }
            waiter = undefined
            const lat = seen.get(k) ?? []
            missing += readers - lat.length
            perWrite.push({ seq: k, got: lat.length, maxMs: lat.length ? Math.max(...lat) : undefined })
          }
        } finally {
          await stopKids()
          await closeRepo(c)
        }
        const wallMs = now() - t0
        const measured = perWrite.filter(w => w.seq > warmup)
        const deliveries = measured.flatMap(w => seen.get(w.seq) ?? [])
        return {
          readers,
          writes,
          warmup,
          missing,
          wallMs,
          delivery: summarize(deliveries),
          toAll: summarize(measured.filter(w => w.got === readers).map(w => w.maxMs)),
        }
      },
    }
  },

  /** A connected client creates N documents (SLICE per macrotask) and waits for all acks; timed from the first create. */
  async "push-live"({ n, capMs, stallMs }) {
    const { c, storageId } = await connectFresh("live-pusher")
    return {
      ready: {},
      async run() {
        const t0 = now()
        const handles = []
        for (let k = 0; k < n; k += SLICE) {
          for (let i = k; i < Math.min(n, k + SLICE); i++) handles.push(c.repo.create(content(i)))
          await nextMacrotask()
        }
        const createMs = now() - t0
        const acks = await trackAcks(handles, storageId, { capMs, stallMs, t0 })
        await closeRepo(c)
        return { n, createMs, acked: acks.acked, timedOut: acks.timedOut, wallMs: acks.ms }
      },
    }
  },

  /**
   * Reconnect after a server restart. The driver has stopped the server;
   * the holder changes every document it holds while the server is down
   * (offline edits), the driver starts the server again, and the holder's
   * adapter reconnects (it retries every RETRY_MS). Timed from the server's
   * readiness (go.readyAt) until the server acknowledged every document's
   * new heads. The edits make the acknowledgement observable: automerge
   * core 0.5 (the relay's) does not answer a peer whose heads already
   * equal its own, so an unchanged document gets no reply from the relay
   * and its re-acknowledgement cannot be seen by the client.
   */
  async reconnect({ capMs, stallMs }) {
    const c = state.holder
    if (!c) throw new Error("reconnect: no client holds documents (pull did not run)")
    const handles = state.held
    const t0 = now()
    for (let k = 0; k < handles.length; k += SLICE) {
      for (const h of handles.slice(k, k + SLICE)) {
        h.change(d => {
          d.offline = true
        })
      }
      await nextMacrotask()
    }
    const editMs = now() - t0
    // Tracking starts now: the adapter may reconnect before "go" arrives.
    const tracking = trackAcks(handles, state.storageId, { capMs, stallMs, t0: now() })
    return {
      ready: { n: handles.length, editMs },
      async run(go) {
        const acks = await tracking
        const times = acks.ackedAt.filter(x => x !== undefined).map(x => acks.t0 + x - go.readyAt)
        return {
          n: handles.length,
          editMs,
          acked: acks.acked,
          timedOut: acks.timedOut,
          wallMs: times.length ? Math.max(...times) : undefined,
          firstMs: times.length ? Math.min(...times) : undefined,
          fromStopMs: times.length ? Math.max(...times) + go.readyAt - go.stopAt : undefined,
        }
      },
    }
  },

  /** Stored documents, 1% active: a fresh client finds the given URLs, changes each once, waits for the acks, and stays connected. */
  async activate({ urls, capMs, stallMs }) {
    const { c, storageId } = await connectFresh("activator")
    return {
      ready: { n: urls.length },
      async run() {
        const t0 = now()
        const r = await findAll(c.repo, urls, { capMs, stallMs })
        const handles = r.handles.filter(Boolean)
        for (let k = 0; k < handles.length; k += SLICE) {
          for (const h of handles.slice(k, k + SLICE)) {
            h.change(d => {
              d.active = true
            })
          }
          await nextMacrotask()
        }
        const acks = await trackAcks(handles, storageId, { capMs, stallMs })
        state.holder = c
        state.held = handles
        return {
          n: urls.length,
          found: r.found,
          unavailable: r.unavailable,
          timedOut: r.timedOut + (handles.length - acks.acked),
          acked: acks.acked,
          findMs: r.ms,
          wallMs: now() - t0,
        }
      },
    }
  },
}

/** ms at which 10%, 50%, 90% and 100% of the documents were acknowledged (undefined when never). */
function progressCurve(ackedAt) {
  const done = ackedAt.filter(x => x !== undefined).sort((a, b) => a - b)
  const at = q => {
    const need = Math.ceil(ackedAt.length * q)
    return need <= done.length && need > 0 ? Math.round(done[need - 1]) : undefined
  }
  return { p10: at(0.1), p50: at(0.5), p90: at(0.9), p100: at(1) }
}

// ---------------------------------------------------------------------------
// IPC loop

let goResolver
process.on("disconnect", () => process.exit(0))
process.on("message", async m => {
  if (m.type === "go") {
    goResolver?.(m)
    return
  }
  if (m.type === "exit") {
    await closeRepo(state.holder)
    process.exit(0)
  }
  if (m.type !== "run") return
  try {
    const phase = phases[m.phase]
    if (!phase) throw new Error(`unknown phase ${m.phase}`)
    const p = await phase(m.params)
    const go = new Promise(resolve => (goResolver = resolve))
    process.send({ type: "ready", phase: m.phase, info: p.ready })
    const goMsg = await go
    goResolver = undefined
    const before = { ...counters }
    const result = await p.run(goMsg)
    result.disconnects = counters.disconnects - before.disconnects
    result.socketErrors = counters.socketErrors - before.socketErrors
    process.send({ type: "done", phase: m.phase, result })
  } catch (err) {
    process.send({ type: "error", phase: m.phase, message: String(err?.stack ?? err) })
  }
})
process.send({ type: "hello", pid: process.pid })
