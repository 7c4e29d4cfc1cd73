/** Runs wrk (Debian's package) with bench/wrk-requests.lua and parses its result line. */
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { startProcess, waitForExit } from './processes.js'

const WRK_EXECUTABLE = 'wrk'
/** The Lua script stays in bench/ (tsc does not copy it), two levels up from dist/bench/. */
const LUA_SCRIPT = fileURLToPath(new URL('../../bench/wrk-requests.lua', import.meta.url))

export interface WrkTarget {
  /** host:port that wrk connects to: the upstream, squid or the sidecar. */
  connectTo: string
  /** Request target written in the request line: origin-form or absolute-form. */
  requestTarget: string
  /** Host header value. */
  host: string
}

export interface WrkResult {
  requests: number
  durationSeconds: number
  requestsPerSecond: number
  /** Connect, read, write and timeout errors plus non-2xx/3xx responses. */
  errors: number
  p50Ms: number
  p99Ms: number
}

export function wrkVersion(): string {
  try {
    // wrk prints its version with the usage text and exits 1 on -v.
    execFileSync(WRK_EXECUTABLE, ['-v'], { encoding: 'utf8', stdio: 'pipe', timeout: 5_000 })
  } catch (error) {
    const output = String((error as { stdout?: string }).stdout ?? '')
    const first = output.split('\n')[0].trim()
    if (first.startsWith('wrk')) return first.replace(/ Copyright.*$/, '')
  }
  return 'unknown'
}

export function hasWrk(): boolean {
  try {
    execFileSync('which', [WRK_EXECUTABLE], { stdio: 'pipe' })
    return true
  } catch {
    return false
  }
}

/** Runs one wrk measurement with one thread and `connections` keep-alive connections. */
export async function runWrk(target: WrkTarget, tokenFile: string, connections: number, durationSeconds: number): Promise<WrkResult> {
  const args = [
    '-t', '1',
    '-c', String(connections),
    '-d', `${durationSeconds}s`,
    '--timeout', '5s',
    '-s', LUA_SCRIPT,
    `http://${target.connectTo}`,
    '--', target.requestTarget, target.host, tokenFile,
  ]
  const wrk = startProcess('wrk', WRK_EXECUTABLE, args)
  const exit = await waitForExit(wrk, (durationSeconds + 20) * 1000)
  const line = wrk.stdout().split('\n').find((text) => text.startsWith('WRK_RESULT '))
  if (exit !== 0 || line === undefined) throw new Error(`wrk failed (exit ${exit}):\n${wrk.outputTail()}`)
  const raw = JSON.parse(line.slice('WRK_RESULT '.length)) as Record<string, number>
  const seconds = raw.duration_us / 1e6
  return {
    requests: raw.requests,
    durationSeconds: seconds,
    requestsPerSecond: raw.requests / seconds,
    errors: raw.connect_errors + raw.read_errors + raw.write_errors + raw.timeouts + raw.status_errors,
    p50Ms: raw.p50_us / 1000,
    p99Ms: raw.p99_us / 1000,
  }
}
