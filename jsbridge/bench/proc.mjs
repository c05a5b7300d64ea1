// What a server process costs, read from /proc: CPU seconds (user + system)
// and resident memory, summed over the process and all its descendants (the
// relay runs the automerge core in worker processes it spawns; they are part
// of its cost).

import fs from "node:fs"

/** Clock ticks per second of /proc/PID/stat times (sysconf(_SC_CLK_TCK), 100 on Linux). */
export const CLK_TCK = 100

function readStat(pid) {
  let text
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, "utf8")
  } catch {
    return undefined // gone
  }
  // comm (field 2) may contain spaces and parentheses: split after the last ")".
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ")
  // rest[0] is field 3 (state); field n is rest[n - 3].
  return {
    ppid: Number(rest[1]),
    utime: Number(rest[11]),
    stime: Number(rest[12]),
    cutime: Number(rest[13]),
    cstime: Number(rest[14]),
  }
}

function readStatusKB(pid) {
  let text
  try {
    text = fs.readFileSync(`/proc/${pid}/status`, "utf8")
  } catch {
    return undefined
  }
  const kb = name => {
    const m = text.match(new RegExp(`^${name}:\\s+(\\d+) kB`, "m"))
    return m ? Number(m[1]) : 0
  }
  return { rss: kb("VmRSS"), hwm: kb("VmHWM") }
}

/** Proportional set size in kB (/proc/PID/smaps_rollup): shared pages divided among their users. */
function readPssKB(pid) {
  try {
    const text = fs.readFileSync(`/proc/${pid}/smaps_rollup`, "utf8")
    return Number(text.match(/^Pss:\s+(\d+) kB/m)?.[1] ?? 0)
  } catch {
    return 0
  }
}

/** The pid and every descendant's pid (scans /proc for parent links). */
export function processTree(rootPid) {
  const children = new Map()
  for (const name of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue
    const st = readStat(name)
    if (!st) continue
    const pid = Number(name)
    if (!children.has(st.ppid)) children.set(st.ppid, [])
    children.get(st.ppid).push(pid)
  }
  const out = [rootPid]
  for (let i = 0; i < out.length; i++) out.push(...(children.get(out[i]) ?? []))
  return out
}

/**
 * One reading of a process tree: cpuSec is utime+stime of every live process
 * in the tree plus cutime+cstime of the root (children it has already
 * reaped); rssBytes is the sum of VmRSS (rootRssBytes the root's own); hwmBytes the sum of VmHWM (each
 * process's own peak: an upper bound of the tree's peak); with pss, pssBytes
 * is the sum of PSS, which counts pages shared between the processes (the
 * relay binary's text, mapped by the relay and each worker) once instead of
 * once per process; procs is the number of live processes.
 */
export function sampleTree(rootPid, { pss = false } = {}) {
  const pids = processTree(rootPid)
  let pssKB = 0
  let ticks = 0
  let rss = 0
  let hwm = 0
  let procs = 0
  let rootRss = 0
  for (const pid of pids) {
    const st = readStat(pid)
    if (!st) continue
    procs++
    ticks += st.utime + st.stime
    if (pid === rootPid) ticks += st.cutime + st.cstime
    const mem = readStatusKB(pid)
    if (mem) {
      rss += mem.rss
      hwm += mem.hwm
      if (pid === rootPid) rootRss = mem.rss
    }
    if (pss) pssKB += readPssKB(pid)
  }
  return {
    at: Date.now(),
    cpuSec: ticks / CLK_TCK,
    rssBytes: rss * 1024,
    rootRssBytes: rootRss * 1024,
    hwmBytes: hwm * 1024,
    pssBytes: pss ? pssKB * 1024 : undefined,
    procs,
  }
}

/**
 * Samples a process tree every intervalMs until stop(); stop() returns the
 * last reading and the highest summed RSS seen (including the first and last
 * readings), so a peak between two phase boundaries is not missed.
 */
export function startSampler(rootPid, intervalMs = 250) {
  const first = sampleTree(rootPid)
  let peak = first.rssBytes
  const timer = setInterval(() => {
    const s = sampleTree(rootPid)
    if (s.procs > 0) peak = Math.max(peak, s.rssBytes)
  }, intervalMs)
  return {
    first,
    stop() {
      clearInterval(timer)
      const last = sampleTree(rootPid, { pss: true })
      if (last.procs > 0) peak = Math.max(peak, last.rssBytes)
      return { first, last, peakRssBytes: peak }
    },
  }
}

/** Machine facts for the report: CPU model, cores, memory, kernel. */
export function machineInfo() {
  const cpuinfo = fs.readFileSync("/proc/cpuinfo", "utf8")
  const model = cpuinfo.match(/^model name\s*:\s*(.+)$/m)?.[1]?.trim()
  const mhz = cpuinfo.match(/^cpu MHz\s*:\s*(.+)$/m)?.[1]?.trim()
  const memKB = Number(fs.readFileSync("/proc/meminfo", "utf8").match(/^MemTotal:\s+(\d+)/m)?.[1])
  const kernel = fs.readFileSync("/proc/sys/kernel/osrelease", "utf8").trim()
  return { cpuModel: model, cpuMHz: mhz ? Number(mhz) : undefined, memBytes: memKB * 1024, kernel }
}

/** The 1-minute load average. */
export function loadAvg1() {
  return Number(fs.readFileSync("/proc/loadavg", "utf8").split(" ")[0])
}
