/** Output helpers for the demo. None of them prints a whole token. */
import { createHash } from 'node:crypto'

export function printLine(text = ''): void {
  process.stdout.write(`${text}\n`)
}

export function printHeading(text: string): void {
  printLine()
  printLine(text)
  printLine('-'.repeat(text.length))
}

/** Returns a short SHA-256 fingerprint that identifies a token without revealing it. */
export function fingerprint(token: string): string {
  return `sha256:${createHash('sha256').update(token).digest('hex').slice(0, 12)}`
}

/** Formats one claim value: times as ISO dates, objects and arrays as JSON. */
export function formatClaim(name: string, value: unknown): string {
  if ((name === 'exp' || name === 'iat' || name === 'nbf') && typeof value === 'number') {
    return `${new Date(value * 1000).toISOString()} (${value})`
  }
  if (typeof value === 'string') {
    return value
  }
  return JSON.stringify(value)
}

/** Registered claims first, in the order a reader compares them, then the rest as they come. */
const CLAIM_ORDER = ['iss', 'sub', 'aud', 'scope', 'act', 'client_id', 'iat', 'exp', 'jti']

/** Prints claims as an aligned table, with an optional note after each value. */
export function printClaims(claims: Record<string, unknown>, notes: Record<string, string> = {}): void {
  const names = Object.keys(claims).sort((left, right) => claimRank(left) - claimRank(right))
  const rows = names.map((name) => ({ name, value: formatClaim(name, claims[name]), note: notes[name] }))
  const nameWidth = Math.max(...rows.map((row) => row.name.length))
  const valueWidth = Math.max(...rows.filter((row) => row.note !== undefined).map((row) => row.value.length), 0)
  for (const row of rows) {
    const text = `    ${row.name.padEnd(nameWidth)}  ${row.value}`
    printLine(row.note === undefined ? text : `${text.padEnd(6 + nameWidth + valueWidth)}  <- ${row.note}`)
  }
}

function claimRank(name: string): number {
  const index = CLAIM_ORDER.indexOf(name)
  return index === -1 ? CLAIM_ORDER.length : index
}

/** One sample of the Prometheus text exposition format. */
export interface MetricSample {
  name: string
  /** The sample line as exposed, name and labels included. */
  line: string
  value: number
}

/** Parses the samples of a Prometheus text exposition, skipping comments and blank lines. */
export function parseMetrics(text: string): MetricSample[] {
  const samples: MetricSample[] = []
  for (const line of text.split('\n')) {
    const match = /^([A-Za-z_:][\w:]*)(\{.*\})?\s+(\S+)/.exec(line.trim())
    if (match === null) {
      continue
    }
    samples.push({ name: match[1], line: line.trim(), value: Number(match[3]) })
  }
  return samples
}

/** Sums every sample of a metric over its label sets. Returns undefined when it has no sample. */
export function sumMetric(samples: MetricSample[], name: string): number | undefined {
  const matching = samples.filter((sample) => sample.name === name)
  if (matching.length === 0) {
    return undefined
  }
  return matching.reduce((total, sample) => total + sample.value, 0)
}
