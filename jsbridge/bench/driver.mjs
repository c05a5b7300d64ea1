#!/usr/bin/env node
// Benchmark driver: the same workloads, with the same official
// automerge-repo 2.5.6 client, against the reference Node sync server
// (test/reference-server.mjs) and against the relay (cmd/relay, default
// flags), one after the other in one run. For each workload it records the
// wall clock (measured by the client), the server's CPU seconds (utime +
// stime of the server and its child processes, from /proc, sampled before
// and after), its RSS (summed over the process tree; the peak is sampled
// every 250 ms) and the client's CPU seconds. Results go to a JSON file under
// bench/results/; report.mjs turns it into docs/benchmarks.md and plots.
//
//   node bench/driver.mjs [--quick] [--groups set,idle,stored,large]
//                         [--kinds reference,relay] [--out FILE] [--docs]
//
// At the end it prints the Markdown tables; with --docs it also writes them
// and the charts into docs/ (report.mjs).
//
// Groups run in order; within a group each server kind runs in turn on a
// fresh data directory (reference first), so that the two runs of a
// workload are close in time on a shared machine. The relay binary is
// $RELAY_BIN, or built as the interop harness builds it.

import { fork, spawnSync } from "node:child_process"
import fs from "node:fs"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { parseArgs } from "node:util"

import { freePort, makeTempDir, relayBinary, startServer, withDeadline } from "../test/interop/harness.mjs"
import { loadAvg1, machineInfo, sampleTree, startSampler } from "./proc.mjs"
import { report } from "./report.mjs"
import { makeBodies, makeUrls, relayImport, writeBackup, writeNodeFS } from "./stored.mjs"

const here = path.dirname(fileURLToPath(import.meta.url))
const jsbridgeRoot = path.resolve(here, "..")
const repoRoot = path.resolve(jsbridgeRoot, "..")

const { values: args } = parseArgs({
  options: {
    quick: { type: "boolean", default: false },
    groups: { type: "string", default: "set,idle,stored,large" },
    kinds: { type: "string", default: "reference,relay" },
    out: { type: "string" },
    docs: { type: "boolean", default: false },
  },
})

const MIN = 60_000

/** Workload sizes and limits. Full: the sizes. Quick: a smoke run of a few minutes. */
const SIZES = args.quick
  ? {
      mode: "quick",
      n: 200,
      nLarge: 1000,
      largeClients: 2,
      readers: 20,
      writes: 20,
      warmup: 2,
      readerProcs: 2,
      idleConns: 1000,
      idleProcs: 1,
      stored: 5000,
      distinct: 500,
      activeFraction: 0.01,
      capMs: 2 * MIN,
      largeCapMs: 4 * MIN,
      prepareMs: 5 * MIN,
      stallMs: 30_000,
      idleSettleMs: 3000,
    }
  : {
      mode: "full",
      n: 1000,
      nLarge: 10_000,
      largeClients: 10,
      readers: 100,
      writes: 50,
      warmup: 3,
      readerProcs: 4,
      idleConns: 10_000,
      idleProcs: 2,
      stored: 100_000,
      distinct: 2000,
      activeFraction: 0.01,
      capMs: 6 * MIN,
      largeCapMs: 15 * MIN,
      prepareMs: 20 * MIN,
      stallMs: 60_000,
      idleSettleMs: 5000,
    }

const kinds = args.kinds.split(",").map(s => s.trim()).filter(Boolean)
const groups = args.groups.split(",").map(s => s.trim()).filter(Boolean)
for (const k of kinds) if (k !== "relay" && k !== "reference") throw new Error(`unknown kind ${k}`)
for (const g of groups) if (!["set", "large", "idle", "stored"].includes(g)) throw new Error(`unknown group ${g}`)

function log(...xs) {
  console.log(`[bench ${new Date().toISOString().slice(11, 19)}]`, ...xs)
}

function pause(ms) {
  return new Promise(resolve => setTimeout(resolve, ms))
}

// ---------------------------------------------------------------------------
// the client process

class ClientProc {
  constructor(serverUrl) {
    this.child = fork(path.join(here, "client.mjs"), [], {
      cwd: jsbridgeRoot,
      env: { ...process.env, BENCH_SERVER_URL: serverUrl },
      stdio: ["ignore", "inherit", "inherit", "ipc"],
    })
    this.queue = []
    this.waiters = []
    this.exited = new Promise(resolve => this.child.on("exit", (code, signal) => resolve({ code, signal })))
    this.child.on("error", () => {}) // a send to a dead child; its exit is handled above
    this.exited.then(r => {
      for (const w of this.waiters.splice(0)) w.reject(new Error(`client exited ${JSON.stringify(r)}`))
    })
    this.child.on("message", m => {
      const w = this.waiters.findIndex(x => x.types.includes(m.type))
      if (w >= 0) this.waiters.splice(w, 1)[0].resolve(m)
      else this.queue.push(m)
    })
  }

  get pid() {
    return this.child.pid
  }

  next(types, timeoutMs, what) {
    const i = this.queue.findIndex(m => types.includes(m.type))
    if (i >= 0) return Promise.resolve(this.queue.splice(i, 1)[0])
    return withDeadline(
      new Promise((resolve, reject) => this.waiters.push({ types, resolve, reject })),
      timeoutMs,
      what
    )
  }

  get alive() {
    return this.child.exitCode === null && this.child.signalCode === null && this.child.connected
  }

  send(msg) {
    if (!this.alive) throw new Error("client process is gone")
    this.child.send(msg)
  }

  kill() {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL")
  }

  async prepare(phase, params, timeoutMs) {
    this.send({ type: "run", phase, params })
    const m = await this.next(["ready", "error"], timeoutMs, `client to prepare ${phase}`)
    if (m.type === "error") throw new Error(`${phase} (prepare): ${m.message}`)
    return m.info
  }

  async go(extra, timeoutMs, phase) {
    this.send({ type: "go", ...extra })
    const m = await this.next(["done", "error"], timeoutMs, `client to finish ${phase}`)
    if (m.type === "error") throw new Error(`${phase}: ${m.message}`)
    return m.result
  }

  async close() {
    if (!this.alive) return this.kill()
    this.child.send({ type: "exit" })
    try {
      await withDeadline(this.exited, 20_000, "client exit")
    } catch {
      this.child.kill("SIGKILL")
    }
  }
}

// ---------------------------------------------------------------------------
// measurement around a phase

function mb(bytes) {
  return Math.round((bytes / 1048576) * 10) / 10
}

function serverFigures(s) {
  return {
    cpuSec: Math.round((s.last.cpuSec - s.first.cpuSec) * 100) / 100,
    rssStartMB: mb(s.first.rssBytes),
    rssEndMB: mb(s.last.rssBytes),
    rssEndMainMB: mb(s.last.rootRssBytes),
    pssEndMB: s.last.pssBytes === undefined ? undefined : mb(s.last.pssBytes),
    rssPeakMB: mb(s.peakRssBytes),
    hwmMB: mb(s.last.hwmBytes),
    procs: s.last.procs,
  }
}

const METRICS = [
  "go_goroutines",
  "go_memstats_heap_inuse_bytes",
  "go_memstats_stack_inuse_bytes",
  "go_memstats_sys_bytes",
  "process_resident_memory_bytes",
  "amsync_connections",
  "amsync_documents_loaded",
  "amsync_documents_active",
  "amsync_document_loads_total",
  "amsync_document_saves_total",
  "amsync_core_calls_total",
  "amsync_frames_received_total",
  "amsync_frames_sent_total",
  "amsync_store_ops_total",
]

/** A few of the relay's own /metrics (Go memory, documents loaded, frames); undefined for the Node server. */
async function relayMetrics(ctx) {
  if (ctx.kind !== "relay" || !ctx.srv?.running) return undefined
  try {
    const text = await (await fetch(`${ctx.srv.httpUrl}/metrics`, { signal: AbortSignal.timeout(5000) })).text()
    const out = {}
    for (const name of METRICS) {
      // sum over label sets
      let sum
      for (const m of text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, "gm"))) sum = (sum ?? 0) + Number(m[1])
      if (sum !== undefined) out[name] = sum
    }
    return out
  } catch (err) {
    return { error: String(err?.message ?? err) }
  }
}

/** Per-client parameters: a document count `n` is split over the clients. */
function splitParams(params, k, i) {
  if (params.n === undefined || k === 1) return params
  return { ...params, n: Math.floor(params.n / k) + (i < params.n % k ? 1 : 0) }
}

/** Keys of a phase result that are times (the slowest client counts), not counts (summed). */
const TIME_KEYS = new Set(["wallMs", "createMs", "editMs", "findMs", "fromStopMs", "ms"])

/** One result from the clients' results: counts summed, times the slowest, flags or-ed. */
function mergeResults(results) {
  if (results.length === 1) return results[0]
  const out = {}
  for (const key of Object.keys(results[0])) {
    const vals = results.map(r => r[key])
    if (vals.every(v => typeof v === "number")) {
      out[key] = key === "firstMs" ? Math.min(...vals) : TIME_KEYS.has(key) ? Math.max(...vals) : vals.reduce((a, b) => a + b, 0)
    } else if (vals.every(v => typeof v === "boolean")) {
      out[key] = vals.some(Boolean)
    } else if (vals.some(v => v === undefined) && TIME_KEYS.has(key)) {
      out[key] = undefined // a client never got there
    } else if (Array.isArray(vals[0])) {
      out[key] = vals.flat().slice(0, 5)
    }
  }
  out.clients = results.length
  return out
}

/** Runs one phase on every client of the group, with the server sampled around the timed part. */
async function runPhase(ctx, phase, params, { prepareMs = SIZES.prepareMs, before, extraGo } = {}) {
  const rec = { phase, params: { ...params }, loadavg: [loadAvg1()] }
  delete rec.params.urls
  if (ctx.broken) {
    rec.error = `skipped: ${ctx.broken}`
    ctx.phases.push(rec)
    log(`  ${phase}: ${rec.error}`)
    return rec
  }
  const clients = ctx.clients
  try {
    if (before) await before(rec)
    const prepared = await Promise.all(
      clients.map((c, i) => c.prepare(phase, splitParams(params, clients.length, i), prepareMs))
    )
    rec.prepared = clients.length === 1 ? prepared[0] : mergeResults(prepared.map(p => p ?? {}))
    let goExtra = {}
    if (extraGo) goExtra = await extraGo(rec)
    const sampler = startSampler(ctx.srv.pid)
    const c0 = clients.map(c => sampleTree(c.pid).cpuSec)
    const t0 = performance.now()
    const results = await Promise.all(clients.map(c => c.go(goExtra, (params.capMs ?? SIZES.capMs) + 2 * MIN, phase)))
    rec.driverWallMs = Math.round(performance.now() - t0)
    const c1 = clients.map(c => sampleTree(c.pid).cpuSec)
    rec.server = serverFigures(sampler.stop())
    // A client process that ended during the workload has no CPU figure
    // left to read (it would count as negative): report none.
    if (c1.every((v, i) => v >= c0[i])) {
      rec.clientCpuSec = Math.round(c1.reduce((a, v, i) => a + v - c0[i], 0) * 100) / 100
    }
    rec.result = mergeResults(results)
    if (clients.length > 1) rec.perClient = results.map(({ ackedAtMs, errors, ...r }) => r)
    rec.relayMetrics = await relayMetrics(ctx)
  } catch (err) {
    rec.error = String(err?.message ?? err).slice(0, 2000)
    log(`  ${phase}: ERROR ${rec.error.split("\n")[0]}`)
    if (/timed out after .* waiting for client|client exited|client process is gone/.test(rec.error)) {
      // A client is stuck or gone: its state is unknown, so the group's
      // remaining phases are skipped rather than queued behind it.
      ctx.broken = `${phase} failed (${rec.error.split("\n")[0]})`
      for (const c of clients) c.kill()
    }
  }
  rec.loadavg.push(loadAvg1())
  if (!rec.error) log(`  ${phase}: ${brief(rec)}`)
  ctx.phases.push(rec)
  return rec
}

function brief(rec) {
  const r = rec.result ?? {}
  const parts = []
  if (r.wallMs !== undefined) parts.push(`wall ${(r.wallMs / 1000).toFixed(2)} s`)
  if (r.timedOut) parts.push("TIMED OUT")
  for (const k of ["acked", "found", "unavailable", "reacked", "missing"]) {
    if (r[k] !== undefined) parts.push(`${k} ${r[k]}`)
  }
  if (r.delivery) parts.push(`delivery p50 ${r.delivery.p50} p99 ${r.delivery.p99} ms`)
  if (rec.server) {
    parts.push(`server cpu ${rec.server.cpuSec} s, rss ${rec.server.rssEndMB} MB (peak ${rec.server.rssPeakMB})`)
  }
  if (rec.clientCpuSec !== undefined) parts.push(`client cpu ${rec.clientCpuSec} s`)
  return parts.join(", ")
}

async function timedStart(kind, dataDir, port) {
  const t0 = performance.now()
  const srv = await startServer({ kind, dataDir, port, readyTimeoutMs: 2 * MIN })
  return { srv, startMs: Math.round(performance.now() - t0) }
}

// ---------------------------------------------------------------------------
// groups

const limits = { capMs: SIZES.capMs, stallMs: SIZES.stallMs }

/** push, pull, edit, fan-out at N (the targets' set), then push-live and reconnect. */
async function groupSet(ctx, n, { full }) {
  const limits = { capMs: full ? SIZES.capMs : SIZES.largeCapMs, stallMs: SIZES.stallMs }
  await runPhase(ctx, "push-before", { n, ...limits })
  await runPhase(ctx, "pull", { ...limits })
  if (full) {
    await runPhase(ctx, "edit", { ...limits })
    await runPhase(ctx, "fanout", {
      readers: SIZES.readers,
      writes: SIZES.writes,
      warmup: SIZES.warmup,
      procs: SIZES.readerProcs,
      capMs: 5 * MIN,
      stallMs: 15_000,
    })
    ctx.afterSet = sampleTree(ctx.srv.pid, { pss: true })
    ctx.extra.afterSetRssMB = mb(ctx.afterSet.rssBytes)
    ctx.extra.afterSetPssMB = mb(ctx.afterSet.pssBytes)
    ctx.extra.afterSetMainRssMB = mb(ctx.afterSet.rootRssBytes)
    await runPhase(ctx, "push-live", { n, ...limits })
  }
  // The server is stopped (SIGTERM) first; the client changes every document
  // while it is down (prepare); the server starts again; timed from its
  // readiness until all are acknowledged.
  let stopAt
  await runPhase(ctx, "reconnect", { ...limits, capMs: full ? 3 * MIN : SIZES.largeCapMs }, {
    before: async rec => {
      stopAt = performance.timeOrigin + performance.now()
      const t0 = performance.now()
      const exit = await ctx.srv.stop(30_000)
      rec.stopMs = Math.round(performance.now() - t0)
      rec.stopExit = { code: exit.code, signal: exit.signal }
    },
    extraGo: async rec => {
      const t1 = performance.now()
      await ctx.srv.start()
      rec.restartMs = Math.round(performance.now() - t1)
      return { stopAt, readyAt: performance.timeOrigin + performance.now() }
    },
  })
  const rec = ctx.phases.at(-1)
  if (rec.server) rec.server.note = "the restarted server, from its readiness to the last ack"
}

async function groupIdle(ctx) {
  const m = SIZES.idleConns
  await pause(SIZES.idleSettleMs)
  const before = sampleTree(ctx.srv.pid, { pss: true })
  const rec = { phase: "idle", params: { connections: m, procs: SIZES.idleProcs }, loadavg: [loadAvg1()] }
  const kids = []
  try {
    const per = Math.ceil(m / SIZES.idleProcs)
    const t0 = performance.now()
    const sampler = startSampler(ctx.srv.pid)
    for (let p = 0; p < SIZES.idleProcs; p++) {
      const count = Math.min(per, m - p * per)
      if (count <= 0) break
      kids.push(
        fork(path.join(here, "idle.mjs"), [], {
          cwd: jsbridgeRoot,
          env: { ...process.env, BENCH_SERVER_URL: ctx.srv.url, BENCH_SOCKETS: String(count), BENCH_IDLE_PROC: String(p) },
          stdio: ["ignore", "inherit", "inherit", "ipc"],
        })
      )
    }
    const readies = await withDeadline(
      Promise.all(kids.map(k => new Promise((resolve, reject) => {
        k.on("message", msg => msg.type === "ready" && resolve(msg))
        k.on("exit", code => reject(new Error(`idle process exited ${code}`)))
      }))),
      10 * MIN,
      `${m} idle connections`
    )
    const connectMs = performance.now() - t0
    const joined = readies.reduce((a, r) => a + r.joined, 0)
    const failed = readies.reduce((a, r) => a + r.failed, 0)
    // Let the server finish what the joins started (GC, buffers), then measure
    // an idle window: memory held and CPU spent on keepalives.
    await pause(SIZES.idleSettleMs)
    const w0 = sampleTree(ctx.srv.pid)
    await pause(10_000)
    const w1 = sampleTree(ctx.srv.pid, { pss: true })
    const s = sampler.stop()
    rec.relayMetrics = await relayMetrics(ctx)
    rec.server = serverFigures(s)
    rec.result = {
      connections: m,
      joined,
      failed,
      connectMs: Math.round(connectMs),
      rssBeforeMB: mb(before.rssBytes),
      rssHeldMB: mb(w1.rssBytes),
      perConnKB: joined > 0 ? Math.round(((w1.rssBytes - before.rssBytes) / joined / 1024) * 10) / 10 : undefined,
      pssBeforeMB: mb(before.pssBytes),
      pssHeldMB: mb(w1.pssBytes),
      perConnPssKB: joined > 0 ? Math.round(((w1.pssBytes - before.pssBytes) / joined / 1024) * 10) / 10 : undefined,
      idleCpuSecPer10s: Math.round((w1.cpuSec - w0.cpuSec) * 100) / 100,
    }
  } catch (err) {
    rec.error = String(err?.message ?? err)
    log(`  idle: ERROR ${rec.error}`)
  } finally {
    for (const k of kids) {
      if (k.exitCode === null) k.send({ type: "exit" })
    }
    await Promise.all(kids.map(k => (k.exitCode !== null ? null : new Promise(r => k.once("exit", r)))))
  }
  rec.loadavg.push(loadAvg1())
  if (rec.result) {
    log(`  idle: ${rec.result.joined}/${m} joined in ${(rec.result.connectMs / 1000).toFixed(1)} s, ` +
      `rss ${rec.result.rssBeforeMB} -> ${rec.result.rssHeldMB} MB, ${rec.result.perConnKB} KB/conn`)
  }
  ctx.phases.push(rec)
}

let storedCache
function storedData() {
  if (!storedCache) {
    const t0 = performance.now()
    storedCache = {
      bodies: makeBodies(SIZES.distinct),
      urls: makeUrls(SIZES.stored),
    }
    storedCache.genMs = Math.round(performance.now() - t0)
  }
  return storedCache
}

/** Fills dataDir with the stored documents before the server starts; returns what it did. */
async function prepareStored(kind, dataDir) {
  const { bodies, urls, genMs } = storedData()
  const t0 = performance.now()
  let how
  if (kind === "relay") {
    const file = path.join(os.tmpdir(), `amsync-bench-backup-${process.pid}.jsonl.gz`)
    await writeBackup(file, urls, bodies)
    const t1 = performance.now()
    const line = relayImport(relayBinary(), dataDir, file, 30 * MIN)
    how = { method: "relay import of a generated backup", backupMs: Math.round(t1 - t0), importMs: Math.round(performance.now() - t1), output: line }
    fs.rmSync(file, { force: true })
  } else {
    writeNodeFS(dataDir, urls, bodies)
    how = { method: "NodeFS layout written directly (one snapshot file per document)", writeMs: Math.round(performance.now() - t0) }
  }
  return { documents: urls.length, distinctBodies: bodies.length, generateMs: genMs, ...how }
}

async function groupStored(ctx) {
  const { urls } = storedData()
  await pause(2000)
  const atRest = sampleTree(ctx.srv.pid, { pss: true })
  ctx.extra.storedAtRestMB = mb(atRest.rssBytes)
  ctx.extra.storedAtRestPssMB = mb(atRest.pssBytes)
  const step = Math.round(1 / SIZES.activeFraction)
  const active = urls.filter((_, i) => i % step === 0)
  await runPhase(ctx, "activate", { urls: active, n: active.length, ...limits })
  const held = sampleTree(ctx.srv.pid, { pss: true })
  ctx.extra.storedActiveMB = mb(held.rssBytes)
  ctx.extra.storedActivePssMB = mb(held.pssBytes)
  ctx.extra.storedActiveMetrics = await relayMetrics(ctx)
  ctx.extra.storedActiveHwmMB = mb(held.hwmBytes)
  log(`  stored: cold start ${ctx.startMs} ms, rss at rest ${ctx.extra.storedAtRestMB} MB, with ${active.length} active ${ctx.extra.storedActiveMB} MB`)
}

async function runGroup(group, kind) {
  const dataDir = makeTempDir(`amsync-bench-${kind}-`)
  const ctx = { group, kind, phases: [], extra: {} }
  log(`${group} / ${kind}: data ${dataDir}`)
  try {
    if (group === "stored") {
      ctx.extra.prepare = await prepareStored(kind, dataDir)
      log(`  prepared ${JSON.stringify(ctx.extra.prepare)}`)
    }
    const port = await freePort()
    const { srv, startMs } = await timedStart(kind, dataDir, port)
    ctx.srv = srv
    ctx.startMs = startMs
    ctx.extra.coldStartMs = startMs
    ctx.extra.rssAtStartMB = mb(sampleTree(srv.pid).rssBytes)
    if (group !== "idle") {
      // N=10,000 is pushed and pulled by several client processes: one
      // official Repo's cost per document grows with the documents it holds
      // (see the README), which would measure the client, not the server.
      const k = group === "large" ? SIZES.largeClients : 1
      ctx.clients = Array.from({ length: k }, () => new ClientProc(srv.url))
      await Promise.all(ctx.clients.map(c => c.next(["hello"], 60_000, "client process start")))
    }
    if (group === "set") await groupSet(ctx, SIZES.n, { full: true })
    if (group === "large") await groupSet(ctx, SIZES.nLarge, { full: false })
    if (group === "idle") await groupIdle(ctx)
    if (group === "stored") await groupStored(ctx)
  } catch (err) {
    ctx.error = String(err?.stack ?? err).slice(0, 4000)
    log(`  ${group}/${kind}: ERROR ${ctx.error.split("\n")[0]}`)
  } finally {
    await Promise.all((ctx.clients ?? []).map(c => c.close()))
    if (ctx.srv) {
      ctx.extra.finalRssMB = ctx.srv.running ? mb(sampleTree(ctx.srv.pid).rssBytes) : undefined
      await ctx.srv.stop(30_000).catch(() => ctx.srv.kill9())
      if (ctx.error) ctx.serverLogTail = ctx.srv.logTail().slice(-4000)
    }
    // rm(1) is several times faster than fs.rmSync on 100,000 directories
    spawnSync("rm", ["-rf", dataDir])
  }
  const { srv, clients, startMs, afterSet, broken, ...out } = ctx
  return out
}

// ---------------------------------------------------------------------------
// main

function readVersion(pkg) {
  try {
    return JSON.parse(fs.readFileSync(path.join(jsbridgeRoot, "node_modules", pkg, "package.json"), "utf8")).version
  } catch {
    return undefined
  }
}

function sh(cmd, argv) {
  const r = spawnSync(cmd, argv, { cwd: repoRoot, encoding: "utf8" })
  return r.status === 0 ? r.stdout.trim() : undefined
}

async function main() {
  const started = new Date()
  const relayBin = kinds.includes("relay") || groups.includes("stored") ? relayBinary() : undefined
  const meta = {
    date: started.toISOString(),
    mode: SIZES.mode,
    command: process.env.BENCH_COMMAND ?? `node bench/driver.mjs ${process.argv.slice(2).join(" ")}`.trim(),
    sizes: SIZES,
    groups,
    kinds,
    machine: { ...machineInfo(), nproc: os.availableParallelism(), loadavgAtStart: loadAvg1() },
    versions: {
      node: process.version,
      go: sh("go", ["version"]),
      automergeRepo: readVersion("@automerge/automerge-repo"),
      websocketAdapter: readVersion("@automerge/automerge-repo-network-websocket"),
      nodefs: readVersion("@automerge/automerge-repo-storage-nodefs"),
      automergeJs: readVersion("@automerge/automerge"),
      ws: readVersion("ws"),
      gitCommit: sh("git", ["rev-parse", "--short", "HEAD"]),
      gitDirty: (sh("git", ["status", "--porcelain", "--untracked-files=no"]) ?? "").length > 0,
    },
    relay: { binary: relayBin, flags: process.env.RELAY_EXTRA_ARGS
        ? `-addr 127.0.0.1:PORT -data DIR ${process.env.RELAY_EXTRA_ARGS} (all other flags default)`
        : "-addr 127.0.0.1:PORT -data DIR (all other flags default)" },
  }
  log(`mode ${SIZES.mode}; groups ${groups.join(",")}; kinds ${kinds.join(",")}; load ${meta.machine.loadavgAtStart}`)
  const outFile =
    args.out ??
    path.join(here, "results", `${SIZES.mode}-${started.toISOString().slice(0, 16).replace(/[-:]/g, "").replace("T", "-")}.json`)
  fs.mkdirSync(path.dirname(outFile), { recursive: true })
  const save = () => {
    meta.durationSec = Math.round((Date.now() - started.getTime()) / 1000)
    meta.machine.loadavgAtEnd = loadAvg1()
    fs.writeFileSync(outFile, JSON.stringify({ meta, runs }, null, 2) + "\n")
  }
  const runs = []
  for (const group of groups) {
    for (const kind of kinds) {
      runs.push(await runGroup(group, kind))
      save() // a run cut short keeps what it measured
    }
  }
  meta.finished = new Date().toISOString()
  save()
  log(`wrote ${outFile} (${meta.durationSec} s)`)
  console.log(report(outFile, { docs: args.docs }))
  if (args.docs) log("wrote docs/benchmarks.md and docs/bench-{wall,cpu,rss}.svg")
}

await main()
