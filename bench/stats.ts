/** Order statistics and number formatting shared by the benchmark's processes. */

/** Returns the q-quantile (0..1) of `values` by the nearest-rank method, or NaN when empty. */
export function quantile(values: readonly number[] | Float64Array, q: number): number {
  if (values.length === 0) return Number.NaN
  const sorted = Float64Array.from(values).sort()
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)))
  return sorted[rank - 1]
}

export function median(values: readonly number[]): number {
  return quantile(values, 0.5)
}

export function minimum(values: readonly number[]): number {
  return values.length === 0 ? Number.NaN : Math.min(...values)
}

export function maximum(values: readonly number[]): number {
  return values.length === 0 ? Number.NaN : Math.max(...values)
}

/** Quantiles of one batch of latency samples, in milliseconds. */
export interface LatencySummary {
  count: number
  p50: number
  p90: number
  p99: number
  p999: number
  max: number
}

export function summarizeLatencies(samplesMs: readonly number[] | Float64Array): LatencySummary {
  const sorted = Float64Array.from(samplesMs).sort()
  const at = (q: number): number => (sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length))) - 1])
  return {
    count: sorted.length,
    p50: at(0.5),
    p90: at(0.9),
    p99: at(0.99),
    p999: at(0.999),
    max: sorted.length === 0 ? Number.NaN : sorted[sorted.length - 1],
  }
}

/** Formats a number with `digits` decimals, or "n/a" for NaN and infinities. */
export function fixed(value: number, digits: number): string {
  return Number.isFinite(value) ? value.toFixed(digits) : 'n/a'
}

/** Formats a whole number with thousands separators, e.g. 12,345. */
export function count(value: number): string {
  return Number.isFinite(value) ? Math.round(value).toLocaleString('en-US') : 'n/a'
}

/** Formats a ratio as "1.23x". */
export function ratio(value: number): string {
  return Number.isFinite(value) ? `${value.toFixed(2)}x` : 'n/a'
}

export function megabytes(bytes: number): string {
  return Number.isFinite(bytes) ? `${(bytes / 1e6).toFixed(1)} MB` : 'n/a'
}
