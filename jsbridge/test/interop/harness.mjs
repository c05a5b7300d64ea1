// Interop harness: starts a sync server (the amsync relay binary or the
// reference automerge-repo server) and official automerge-repo 2.5.6 clients,
// and offers poll-with-deadline waits. Every wait here has a deadline, so a
// broken server fails a test instead of hanging it; nothing sleeps for a fixed
// time to "let things settle".

import { spawn, spawnSync } from "node:child_process"
import { createHash, randomUUID } from "node:crypto"
import fs from "node:fs"
import net from "node:net"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"

import { Repo } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
import { NodeFSStorageAdapter } from "@automerge/automerge-repo-storage-nodefs"

const here = path.dirname(fileURLToPath(import.meta.url))
/** jsbridge/ */
export const jsbridgeRoot = path.resolve(here, "..", "..")
/** the Go module root (jsbridge/..) */
export const repoRoot = path.resolve(jsbridgeRoot, "..")
export const referenceServerPath = path.join(jsbridgeRoot, "test", "reference-server.mjs")

/** "relay" (default) or "reference", from INTEROP_SERVER. */
export const SERVER_KIND = (() => {
  const kind = process.env.INTEROP_SERVER ?? "relay"
  if (kind !== "relay" && kind !== "reference") {
    throw new Error(`INTEROP_SERVER must be "relay" or "reference", got ${JSON.stringify(kind)}`)
  }
  return kind
})()

/**
 * How a durability test treats lost acknowledged data:
 *   "enforce" for the relay (any loss fails the test);
 *   "report"  for the reference server with INTEROP_EXPECT_LOSS=1 (count and print, never fail);
 *   "skip"    for the reference server otherwise: the official server acks changes before it
 *             saves them (100 ms save throttle, no signal handler), so it loses them.
 */
export const LOSS_POLICY =
  SERVER_KIND === "relay" ? "enforce" : process.env.INTEROP_EXPECT_LOSS === "1" ? "report" : "skip"

/** node:test `skip` option for durability tests (see LOSS_POLICY). */
export const SKIP_UNLESS_DURABLE =
  LOSS_POLICY === "skip"
    ? "the reference server loses acknowledged data by design; set INTEROP_EXPECT_LOSS=1 to measure it"
    : false

/** The official client retries a lost connection every 5 s (WebSocketClientAdapter retryInterval). */
export const CLIENT_RETRY_MS = 5000

// ---------------------------------------------------------------------------
// waiting

/** Resolves after ms; used only as the pause between two polls of waitFor. */
function pause(ms) {
  return new Promise(resolve => setTimeout(resolve, ms))
}

/**
 * Polls pred() until it returns a truthy value (returned) or timeoutMs passes
 * (throws, naming `what`). pred may be async.
 */
export async function waitFor(pred, { timeoutMs, what, intervalMs = 10 }) {
  if (!(timeoutMs > 0)) throw new Error("waitFor: timeoutMs is required")
  const deadline = Date.now() + timeoutMs
  let lastErr
  for (;;) {
    try {
      const v = await pred()
      if (v) return v
    } catch (err) {
      lastErr = err
    }
    if (Date.now() >= deadline) {
      const why = lastErr ? ` (last error: ${lastErr.message ?? lastErr})` : ""
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${why}`)
    }
    await pause(Math.min(intervalMs, Math.max(1, deadline - Date.now())))
  }
}

/** Races promise against a deadline of timeoutMs; throws naming `what` when it passes. */
export async function withDeadline(promise, timeoutMs, what) {
  let timer
  const expired = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)),
      timeoutMs
    )
  })
  try {
    return await Promise.race([promise, expired])
  } finally {
    clearTimeout(timer)
  }
}

// ---------------------------------------------------------------------------
// ports, temp dirs, cleanup

/** Asks the OS for a free loopback TCP port (listen on 0, close, reuse). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.on("error", reject)
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address()
      srv.close(err => (err ? reject(err) : resolve(port)))
    })
  })
}

/** A fresh temp directory; removed by the caller (see scope()). */
export function makeTempDir(prefix = "amsync-interop-") {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix))
}

/**
 * Resource scope: everything made through it is torn down in reverse order in
 * t.after, whether the test passed or not.
 *   const s = scope(t); const srv = await s.server(); const a = await s.client({url: srv.url})
 * For a server shared by the tests of one file, pass node:test's hooks:
 *   const file = scope({ after })   // torn down after the file's last test
 */
export function scope(t) {
  const cleanups = []
  t.after(async () => {
    const errors = []
    while (cleanups.length > 0) {
      const fn = cleanups.pop()
      try {
        await fn()
      } catch (err) {
        errors.push(err)
      }
    }
    if (errors.length > 0) throw errors[0]
  })
  return {
    defer(fn) {
      cleanups.push(fn)
    },
    tempDir(prefix) {
      const dir = makeTempDir(prefix)
      cleanups.push(() => {
        if (process.env.INTEROP_KEEP_DIRS === "1") {
          console.log(`kept ${dir}`)
          return
        }
        fs.rmSync(dir, { recursive: true, force: true })
      })
      return dir
    },
    async server(opts = {}) {
      const dataDir = opts.dataDir ?? this.tempDir("amsync-interop-data-")
      const srv = await startServer({ ...opts, dataDir })
      cleanups.push(() => srv.dispose())
      return srv
    },
    async client(opts) {
      const c = newClient(opts)
      cleanups.push(() => c.close())
      return c
    },
  }
}

// ---------------------------------------------------------------------------
// servers

const liveChildren = new Set()
process.on("exit", () => {
  // Last resort if a test process dies without running its t.after hooks.
  for (const child of liveChildren) {
    try {
      child.kill("SIGKILL")
    } catch {
      // already gone
    }
  }
})

let relayBinCache

/**
 * The relay binary: $RELAY_BIN, or built once with `go build` into a stable
 * path keyed by the repo location (go skips the link when the binary is up
 * to date, so later test files reuse it cheaply).
 */
export function relayBinary() {
  if (relayBinCache) return relayBinCache
  relayBinCache = goBinary("relay", process.env.RELAY_BIN)
  return relayBinCache
}

let demoBinCache
/** The demo application server (cmd/demo): $DEMO_BIN, or built like relayBinary. */
export function demoBinary() {
  if (demoBinCache) return demoBinCache
  demoBinCache = goBinary("demo", process.env.DEMO_BIN)
  return demoBinCache
}

function goBinary(name, fromEnv) {
  if (fromEnv) return path.resolve(fromEnv)
  const key = createHash("sha256").update(repoRoot).digest("hex").slice(0, 12)
  const outDir = path.join(os.tmpdir(), `amsync-interop-relay-${key}`)
  fs.mkdirSync(outDir, { recursive: true })
  const out = path.join(outDir, name)
  const res = spawnSync("go", ["build", "-o", out, `./cmd/${name}`], {
    cwd: repoRoot,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    timeout: 600_000,
  })
  if (res.error) throw new Error(`go build ./cmd/${name}: ${res.error.message}`)
  if (res.status !== 0) {
    throw new Error(`go build ./cmd/${name} failed (exit ${res.status}):\n${res.stdout}${res.stderr}`)
  }
  return out
}

const LOG_TAIL_BYTES = 64 * 1024

/**
 * Starts a sync server on 127.0.0.1 and waits until GET /healthz answers 200.
 * @param {{kind?: "relay"|"reference"|"demo", dataDir: string, port?: number, readyTimeoutMs?: number}} opts
 * @returns {Promise<ServerProc>}
 */
export async function startServer({ kind = SERVER_KIND, dataDir, port, readyTimeoutMs = 15_000 }) {
  if (!dataDir) throw new Error("startServer: dataDir is required")
  const srv = new ServerProc(kind, dataDir, port ?? (await freePort()), readyTimeoutMs)
  await srv.start()
  return srv
}

class ServerProc {
  constructor(kind, dataDir, port, readyTimeoutMs) {
    this.kind = kind
    this.dataDir = dataDir
    this.port = port
    this.readyTimeoutMs = readyTimeoutMs
    this.url = `ws://127.0.0.1:${port}`
    this.httpUrl = `http://127.0.0.1:${port}`
    this.child = undefined
    this.exited = undefined
    this.log = ""
    this.starts = 0
  }

  get pid() {
    return this.child?.pid
  }

  get running() {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null
  }

  /** The last 64 KiB of the server's stdout+stderr over all its runs. */
  logTail() {
    return this.log
  }

  #command() {
    if (this.kind === "reference") {
      return [
        process.execPath,
        [referenceServerPath, "--port", String(this.port), "--data", this.dataDir],
      ]
    }
    const args = ["-addr", `127.0.0.1:${this.port}`, "-data", this.dataDir]
    if (process.env.INTEROP_LOG_LEVEL) args.push("-log-level", process.env.INTEROP_LOG_LEVEL)
    // Extra relay flags, space-separated (benchmarks of other settings).
    if (process.env.RELAY_EXTRA_ARGS) args.push(...process.env.RELAY_EXTRA_ARGS.split(/\s+/).filter(Boolean))
    return [this.kind === "demo" ? demoBinary() : relayBinary(), args]
  }

  async start() {
    if (this.running) throw new Error("server already running")
    const [cmd, args] = this.#command()
    this.starts++
    const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], cwd: jsbridgeRoot })
    this.child = child
    liveChildren.add(child)
    const onData = chunk => {
      this.log += chunk.toString()
      if (this.log.length > LOG_TAIL_BYTES) this.log = this.log.slice(-LOG_TAIL_BYTES)
      if (process.env.INTEROP_SERVER_LOG === "1") process.stderr.write(chunk)
    }
    child.stdout.on("data", onData)
    child.stderr.on("data", onData)
    this.exited = new Promise(resolve => {
      child.on("exit", (code, signal) => {
        liveChildren.delete(child)
        resolve({ code, signal })
      })
      child.on("error", err => {
        liveChildren.delete(child)
        this.log += `\nspawn error: ${err.message}\n`
        resolve({ code: null, signal: null, error: err })
      })
    })
    let exitedEarly
    this.exited.then(r => (exitedEarly = r))
    try {
      await waitFor(
        async () => {
          if (exitedEarly) {
            throw Object.assign(new Error("exited"), { fatal: true })
          }
          const res = await fetch(`${this.httpUrl}/healthz`, { signal: AbortSignal.timeout(1000) })
          await res.arrayBuffer()
          return res.status === 200
        },
        { timeoutMs: this.readyTimeoutMs, what: `${this.kind} server /healthz on :${this.port}` }
      ).catch(err => {
        if (exitedEarly) {
          throw new Error(
            `${this.kind} server exited before it was ready (${JSON.stringify(exitedEarly)})`
          )
        }
        throw err
      })
    } catch (err) {
      await this.kill9().catch(() => {})
      err.message += `\n--- server log ---\n${this.log}`
      throw err
    }
    return this
  }

  /**
   * SIGTERM, then wait for the exit. Returns {code, signal, ms}. If the
   * process is still alive after timeoutMs it is SIGKILLed and stop throws.
   */
  async stop(timeoutMs = 10_000) {
    if (!this.running) return this.exited ? await this.exited : { code: null, signal: null, ms: 0 }
    const t0 = performance.now()
    this.child.kill("SIGTERM")
    try {
      const r = await withDeadline(this.exited, timeoutMs, `${this.kind} server to exit after SIGTERM`)
      return { ...r, ms: performance.now() - t0 }
    } catch (err) {
      await this.kill9()
      throw err
    }
  }

  /** SIGKILL, then wait for the exit. */
  async kill9() {
    if (!this.running) return this.exited ? await this.exited : { code: null, signal: null }
    this.child.kill("SIGKILL")
    return withDeadline(this.exited, 10_000, `${this.kind} server to die after SIGKILL`)
  }

  /** Stops the server if it runs (SIGTERM), then starts it again on the same port and data dir. */
  async restart() {
    if (this.running) await this.stop()
    await this.start()
    return this
  }

  /** Cleanup: make sure the process is gone, whatever state it is in. */
  async dispose() {
    if (!this.running) return
    try {
      await this.stop(5000)
    } catch {
      // stop already SIGKILLed it
    }
  }
}

// ---------------------------------------------------------------------------
// clients

/**
 * NodeFSStorageAdapter that can be closed: writes still queued in the Repo's
 * throttles after shutdown() are dropped and in-flight ones awaited, so a test
 * can delete the directory without a late write re-creating it.
 */
class ClosableNodeFSStorageAdapter extends NodeFSStorageAdapter {
  #pending = new Set()
  #closed = false

  #track(promise) {
    this.#pending.add(promise)
    const forget = () => this.#pending.delete(promise)
    promise.then(forget, forget)
    return promise
  }

  save(key, binary) {
    return this.#closed ? Promise.resolve() : this.#track(super.save(key, binary))
  }

  remove(key) {
    return this.#closed ? Promise.resolve() : this.#track(super.remove(key))
  }

  removeRange(prefix) {
    return this.#closed ? Promise.resolve() : this.#track(super.removeRange(prefix))
  }

  async close() {
    this.#closed = true
    await Promise.allSettled([...this.#pending])
  }
}

/**
 * An official automerge-repo 2.5.6 client: Repo + WebSocketClientAdapter (Node)
 * and, if storageDir is given, NodeFSStorageAdapter.
 * @returns {{repo: Repo, peerId: string, adapter: WebSocketClientAdapter, close(): Promise<void>}}
 */
export function newClient({ url, storageDir, name = "client" }) {
  const adapter = new WebSocketClientAdapter(url)
  const peerId = `${name}-${randomUUID().slice(0, 8)}`
  const storage = storageDir ? new ClosableNodeFSStorageAdapter(storageDir) : undefined
  const repo = new Repo({ network: [adapter], storage, peerId })
  let closed = false
  return {
    repo,
    peerId,
    adapter,
    async close() {
      if (closed) return
      closed = true
      try {
        await withDeadline(repo.shutdown(), 10_000, `client ${peerId} shutdown`)
      } finally {
        // disconnect() clears the retry interval but not a reconnect timer
        // scheduled by an earlier onClose; make any such timer a no-op so the
        // test process is free to exit.
        adapter.connect = () => {}
        await storage?.close()
      }
    },
  }
}

/** The server's peerId as seen by this client; waits for the PEER handshake. */
export async function serverPeerId(repo, timeoutMs = 10_000) {
  return waitFor(() => repo.peers[0], { timeoutMs, what: "the server peer (PEER reply to JOIN)" })
}

/**
 * The storageId the server announced in peerMetadata of its PEER message
 * (Repo.peerMetadataByPeerId via Repo.getStorageIdOfPeer); waits for it.
 */
export async function serverStorageId(repo, timeoutMs = 10_000) {
  return waitFor(
    () => {
      const peer = repo.peers[0]
      return peer ? repo.getStorageIdOfPeer(peer) : undefined
    },
    { timeoutMs, what: "the server's storageId in PEER peerMetadata" }
  )
}

/** Order-insensitive equality of two heads arrays. */
export function headsEqual(a, b) {
  if (!a || !b || a.length !== b.length) return false
  const sa = [...a].sort()
  const sb = [...b].sort()
  return sa.every((h, i) => h === sb[i])
}

/**
 * Resolves when the server has acknowledged the handle's current heads:
 * handle.getSyncInfo(storageId).lastHeads (bs58check-encoded, as set by the
 * Repo from the server's sync state) equals handle.heads() (encodeHeads of
 * A.getHeads(handle.doc())). Event-driven (remote-heads / heads-changed) with
 * a deadline. Resolves to the acknowledged heads.
 */
export function waitAcked(handle, storageId, timeoutMs = 10_000) {
  return new Promise((resolve, reject) => {
    const check = () => {
      if (!handle.isReady()) return false
      const info = handle.getSyncInfo(storageId)
      const heads = handle.heads()
      if (info && headsEqual(info.lastHeads, heads)) {
        done()
        resolve(heads)
        return true
      }
      return false
    }
    const onEvent = () => {
      try {
        check()
      } catch (err) {
        done()
        reject(err)
      }
    }
    const timer = setTimeout(() => {
      done()
      const info = handle.getSyncInfo(storageId)
      reject(
        new Error(
          `timed out after ${timeoutMs} ms waiting for the server to ack ${handle.documentId}: ` +
            `local heads ${JSON.stringify(handle.isReady() ? handle.heads() : handle.state)}, ` +
            `server heads ${JSON.stringify(info?.lastHeads)}`
        )
      )
    }, timeoutMs)
    function done() {
      clearTimeout(timer)
      handle.off("remote-heads", onEvent)
      handle.off("heads-changed", onEvent)
    }
    handle.on("remote-heads", onEvent)
    handle.on("heads-changed", onEvent)
    onEvent()
  })
}

/** Waits until handle is in one of states (DocHandle.whenReady) or the deadline passes. */
export function waitState(handle, states, timeoutMs, what) {
  return withDeadline(handle.whenReady(states), timeoutMs, what ?? `${handle.documentId} in ${states}`)
}

/**
 * Runs fn over items with at most `limit` in flight; resolves to the results
 * in order. Used to parallelise clients' work, not tests.
 */
export async function mapLimit(items, limit, fn) {
  const out = new Array(items.length)
  let next = 0
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i], i)
    }
  })
  await Promise.all(workers)
  return out
}

/** A small seeded PRNG (xorshift32) for reproducible "random" test data. */
export function seededRandom(seed) {
  let x = seed >>> 0 || 0x9e3779b9
  return () => {
    x ^= x << 13
    x >>>= 0
    x ^= x >>> 17
    x ^= x << 5
    x >>>= 0
    return x / 0x100000000
  }
}
