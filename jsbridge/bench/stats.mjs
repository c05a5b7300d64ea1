// Small statistics helpers shared by the benchmark scripts.

/** Nearest-rank percentile (q in 0..1) of an ascending array. */
export function percentile(sorted, q) {
  if (sorted.length === 0) return undefined
  const rank = Math.max(1, Math.ceil(q * sorted.length))
  return sorted[Math.min(sorted.length, rank) - 1]
}

/** count, min, p50, p90, p99, max and mean of a list of numbers (ms), rounded to 0.1. */
export function summarize(values) {
  const xs = values.filter(v => Number.isFinite(v)).sort((a, b) => a - b)
  const r = v => (v === undefined ? undefined : Math.round(v * 10) / 10)
  const mean = xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : undefined
  return {
    count: xs.length,
    min: r(xs[0]),
    p50: r(percentile(xs, 0.5)),
    p90: r(percentile(xs, 0.9)),
    p99: r(percentile(xs, 0.99)),
    max: r(xs[xs.length - 1]),
    mean: r(mean),
  }
}
