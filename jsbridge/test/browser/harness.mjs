// Test harness of the browser tests: the real cmd/demo (and cmd/relay for
// its `relay doc` Go peer) built from this checkout, and Debian's Chromium
// driven by playwright-core with one fresh user-data-dir per profile.

import { chromium } from "playwright-core"
import { spawn, execFile } from "node:child_process"
import fs from "node:fs"
import os from "node:os"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"

const execFileP = promisify(execFile)
const here = path.dirname(fileURLToPath(import.meta.url))
export const repoRoot = path.resolve(here, "../../..")

export const CHROMIUM = process.env.CHROMIUM_BIN || "/usr/bin/chromium"
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
]

/** How long any one condition may take to become true. */
export const DEADLINE = Number(process.env.JSBRIDGE_TEST_DEADLINE_MS || 30_000)

const tmpRoots = []

/** tempDir makes a directory that cleanup() removes. */
export function tempDir(prefix) {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `jsbridge-${prefix}-`))
  tmpRoots.push(d)
  return d
}

let binaries

/**
 * buildBinaries builds cmd/demo and cmd/relay once per test process
 * (DEMO_BIN and RELAY_BIN name prebuilt ones instead).
 */
export async function buildBinaries() {
  binaries ??= (async () => {
    const dir = tempDir("bin")
    const out = {}
    for (const [name, env] of [["demo", "DEMO_BIN"], ["relay", "RELAY_BIN"]]) {
      if (process.env[env]) {
        out[name] = process.env[env]
        continue
      }
      out[name] = path.join(dir, name)
      await execFileP("go", ["build", "-o", out[name], `./cmd/${name}`], { cwd: repoRoot, maxBuffer: 1 << 24 })
    }
    return out
  })()
  return binaries
}

const listening = /msg="relay listening" addr=(\S+)/

/** Demo is a running cmd/demo process. */
export class Demo {
  /** start runs the demo on addr (127.0.0.1:0 picks a port) with data in dir. */
  static async start({ bin, data, addr = "127.0.0.1:0" }) {
    const proc = spawn(bin, ["-addr", addr, "-data", data, "-log-level", "info"], { stdio: ["ignore", "ignore", "pipe"] })
    const d = new Demo(proc)
    d.addr = await new Promise((resolve, reject) => {
      let buf = ""
      const onData = chunk => {
        buf += chunk
        d.log += chunk
        const m = buf.match(listening)
        if (m) resolve(m[1])
      }
      proc.stderr.setEncoding("utf8")
      proc.stderr.on("data", onData)
      proc.once("exit", code => reject(new Error(`demo exited with ${code} before listening:\n${d.log}`)))
      setTimeout(() => reject(new Error(`demo did not listen within ${DEADLINE} ms:\n${d.log}`)), DEADLINE).unref()
    })
    return d
  }

  constructor(proc) {
    this.proc = proc
    this.log = ""
    this.exited = new Promise(resolve => proc.once("exit", (code, signal) => resolve({ code, signal })))
  }

  get base() {
    return `http://${this.addr}`
  }

  get ws() {
    return `ws://${this.addr}`
  }

  /** stop sends SIGTERM and waits for a clean exit. */
  async stop() {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return
    this.proc.kill("SIGTERM")
    const { code, signal } = await this.exited
    if (code !== 0) throw new Error(`demo exited with ${code ?? signal}:\n${this.log}`)
  }

  kill() {
    if (this.proc.exitCode === null && this.proc.signalCode === null) this.proc.kill("SIGKILL")
  }
}

/** relayDoc runs `relay doc ARGS…` (the Go peer) and returns its stdout. */
export async function relayDoc(args) {
  const { relay } = await buildBinaries()
  const { stdout } = await execFileP(relay, ["doc", ...args], { timeout: DEADLINE })
  return stdout
}

/** Profile is one browser profile: a persistent context on its own user-data-dir. */
export class Profile {
  static async launch(label) {
    if (!fs.existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} is missing: apt-get install -y chromium (make test does this)`)
    }
    const dir = tempDir(`profile-${label}`)
    const context = await chromium.launchPersistentContext(dir, {
      executablePath: CHROMIUM,
      args: CHROMIUM_ARGS,
      headless: true,
      viewport: { width: 900, height: 720 },
    })
    return new Profile(label, context)
  }

  constructor(label, context) {
    this.label = label
    this.context = context
    this.errors = []
  }

  /** open loads url in a new tab and waits until the page's store is open. */
  async open(url) {
    const page = await this.context.newPage()
    page.on("pageerror", err => {
      this.errors.push(String(err))
      console.error(`[${this.label}] page error: ${err}`)
    })
    page.on("console", msg => {
      if (msg.type() === "error" && !/WebSocket connection to|Failed to load resource|ERR_CONNECTION_REFUSED/.test(msg.text())) {
        console.error(`[${this.label}] console: ${msg.text()}`)
      }
    })
    page.setDefaultTimeout(DEADLINE)
    await page.goto(url)
    await page.waitForFunction(() => window.todos !== undefined)
    return page
  }

  async close() {
    await this.context.close()
  }
}

/** until polls fn (in Node) until it returns a truthy value, within DEADLINE. */
export async function until(what, fn, { timeout = DEADLINE, interval = 50 } = {}) {
  const end = Date.now() + timeout
  let last
  for (;;) {
    try {
      const v = await fn()
      if (v) return v
      last = v
    } catch (err) {
      last = err
    }
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${last})`)
    await new Promise(r => setTimeout(r, interval))
  }
}

/** cleanup removes the temporary directories. */
export function cleanup() {
  for (const d of tmpRoots.splice(0)) fs.rmSync(d, { recursive: true, force: true })
}

/** withDeadline rejects when p has not settled within DEADLINE. */
export function withDeadline(what, p, timeout = DEADLINE) {
  let timer
  return Promise.race([
    p,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${timeout} ms: ${what}`)), timeout)
    }),
  ]).finally(() => clearTimeout(timer))
}

/**
 * poll evaluates fn(arg) in the page until it returns a truthy value, and
 * returns that value. Evaluations that fail (a page being reloaded) are
 * retried until the deadline.
 */
export function poll(page, what, fn, arg) {
  return until(what, () => page.evaluate(fn, arg))
}

/** online waits until the page's store is connected to the relay. */
export function online(page, what = "the store to be online") {
  return poll(page, what, () => window.store?.status().online === true)
}

/** offline waits until the page's store has noticed that the relay is gone. */
export function offline(page, what = "the store to notice it is offline") {
  return poll(page, what, () => window.store?.status().online === false)
}

/** synced waits for store.synced() in the page. */
export function synced(page, what = "store.synced()") {
  return withDeadline(what, page.evaluate(() => window.store.synced().then(() => true)))
}

/** serviceWorker waits until the demo's service worker controls the page (it caches the app shell). */
export function serviceWorker(page) {
  return poll(page, "the service worker to control the page", () => navigator.serviceWorker.controller !== null)
}
