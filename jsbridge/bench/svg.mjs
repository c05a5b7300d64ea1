// Grouped horizontal bar charts as standalone SVG, for docs/benchmarks.md.
// One row per workload, one bar per server. No dependencies: the benchmark
// results are small and the charts simple.

const FONT = "font-family:system-ui,-apple-system,'Segoe UI',sans-serif"

function esc(s) {
  return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")
}

function fmt(v) {
  if (v >= 100) return v.toFixed(0)
  if (v >= 10) return v.toFixed(1)
  if (v >= 1) return v.toFixed(2)
  return v.toPrecision(2)
}

/**
 * Renders a chart.
 * @param {object} o
 * @param {string} o.title
 * @param {string} o.unit          axis unit, e.g. "s"
 * @param {"linear"|"log"} o.scale
 * @param {{key: string, label: string, color: string}[]} o.series
 * @param {{label: string, values: Record<string, {v?: number, note?: string, timedOut?: boolean}>}[]} o.rows
 *   v: the value; timedOut: v is a lower bound (drawn hatched, labelled "≥");
 *   note: text shown instead of a bar when there is no value.
 */
export function barChart({ title, subtitle, unit, scale = "linear", series, rows }) {
  const labelW = 290
  const plotW = 430
  const valueW = 130
  const barH = 13
  const barGap = 2
  const rowGap = 10
  const top = subtitle ? 62 : 46
  const rowH = series.length * (barH + barGap) + rowGap
  const height = top + rows.length * rowH + 40
  const width = labelW + plotW + valueW

  const all = rows.flatMap(r => series.map(s => r.values[s.key]?.v)).filter(v => Number.isFinite(v) && v > 0)
  const max = all.length ? Math.max(...all) : 1
  let x
  let ticks
  if (scale === "log") {
    const min = all.length ? Math.min(...all) : 0.1
    const lo = Math.floor(Math.log10(min))
    const hi = Math.ceil(Math.log10(max))
    const span = Math.max(1, hi - lo)
    x = v => (v <= 0 ? 0 : Math.max(2, ((Math.log10(v) - lo) / span) * plotW))
    ticks = Array.from({ length: span + 1 }, (_, i) => 10 ** (lo + i))
  } else {
    const step = niceStep(max / 5)
    const hi = Math.ceil(max / step) * step
    x = v => Math.max(v > 0 ? 2 : 0, (v / hi) * plotW)
    ticks = Array.from({ length: Math.round(hi / step) + 1 }, (_, i) => i * step)
  }

  const out = []
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" style="${FONT}">`
  )
  out.push(
    `<defs><pattern id="hatch" patternUnits="userSpaceOnUse" width="6" height="6" patternTransform="rotate(45)">` +
      `<rect width="6" height="6" fill="#fff"/><line x1="0" y1="0" x2="0" y2="6" stroke="#c0392b" stroke-width="3"/></pattern></defs>`
  )
  out.push(`<rect width="${width}" height="${height}" fill="#fff"/>`)
  out.push(`<text x="12" y="22" font-size="15" font-weight="600">${esc(title)}</text>`)
  if (subtitle) out.push(`<text x="12" y="40" font-size="11" fill="#555">${esc(subtitle)}</text>`)
  // legend
  let lx = labelW
  const ly = top - 14
  for (const s of series) {
    out.push(`<rect x="${lx}" y="${ly - 9}" width="12" height="10" fill="${s.color}"/>`)
    out.push(`<text x="${lx + 16}" y="${ly}" font-size="11">${esc(s.label)}</text>`)
    lx += 24 + s.label.length * 6.5
  }
  out.push(`<rect x="${lx}" y="${ly - 9}" width="12" height="10" fill="url(#hatch)" stroke="#c0392b"/>`)
  out.push(`<text x="${lx + 16}" y="${ly}" font-size="11">timed out (at least)</text>`)

  const plotTop = top
  const plotBottom = top + rows.length * rowH
  for (const t of ticks) {
    const tx = labelW + x(t)
    out.push(`<line x1="${tx}" y1="${plotTop - 4}" x2="${tx}" y2="${plotBottom}" stroke="#e3e3e3"/>`)
    out.push(`<text x="${tx}" y="${plotBottom + 14}" font-size="10" text-anchor="middle" fill="#555">${esc(fmt(t))}</text>`)
  }
  out.push(
    `<text x="${labelW + plotW / 2}" y="${plotBottom + 30}" font-size="11" text-anchor="middle" fill="#333">${esc(unit)}${scale === "log" ? " (log scale)" : ""}</text>`
  )
  out.push(`<line x1="${labelW}" y1="${plotTop - 4}" x2="${labelW}" y2="${plotBottom}" stroke="#999"/>`)

  rows.forEach((r, i) => {
    const y0 = plotTop + i * rowH
    const mid = y0 + (series.length * (barH + barGap)) / 2
    out.push(`<text x="${labelW - 8}" y="${mid + 4}" font-size="11.5" text-anchor="end">${esc(r.label)}</text>`)
    series.forEach((s, j) => {
      const val = r.values[s.key]
      const by = y0 + j * (barH + barGap)
      if (!val || !Number.isFinite(val.v)) {
        out.push(
          `<text x="${labelW + 4}" y="${by + barH - 3}" font-size="10" fill="#888">${esc(s.label)}: ${esc(val?.note ?? "not run")}</text>`
        )
        return
      }
      const w = x(val.v)
      const fill = val.timedOut ? "url(#hatch)" : s.color
      const stroke = val.timedOut ? ` stroke="#c0392b"` : ""
      out.push(`<rect x="${labelW}" y="${by}" width="${w.toFixed(1)}" height="${barH}" fill="${fill}"${stroke}/>`)
      const text = `${val.timedOut ? "≥ " : ""}${fmt(val.v)} ${unit}${val.note ? ` (${val.note})` : ""}`
      out.push(`<text x="${labelW + w + 4}" y="${by + barH - 3}" font-size="10" fill="#222">${esc(text)}</text>`)
    })
  })
  out.push(`</svg>`)
  return out.join("\n") + "\n"
}

function niceStep(raw) {
  const p = 10 ** Math.floor(Math.log10(raw || 1))
  for (const m of [1, 2, 2.5, 5, 10]) if (raw <= m * p) return m * p
  return 10 * p
}
