/**
 * An open-loop load generator: it sends GET requests at a fixed rate, evenly spaced, whatever the
 * responses do, over a pool of keep-alive connections. Each request's latency counts from its
 * scheduled send time, so time spent queued behind slow responses (coordinated omission) is
 * included. Through a proxy it sends the absolute-form request target, as an HTTP_PROXY client does.
 *
 * Usage: node open-loop.js '<OpenLoopSettings as JSON>'. Prints "OPEN_LOOP_RESULT {json}".
 */
import { performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { Pool } from 'undici'
import type { PacerSettings } from './pacer-worker.js'
import { summarizeLatencies, type LatencySummary } from './stats.js'

const PACER_SCRIPT = fileURLToPath(new URL('./pacer-worker.js', import.meta.url))

export interface OpenLoopSettings {
  /** http://host:port of the server the connections go to: the upstream or a proxy. */
  origin: string
  /** Origin-form (`/small`) or absolute-form (`http://127.0.0.1:PORT/small`). */
  requestTarget: string
  host: string
  token: string
  /** Requests per second. */
  rate: number
  /** Requests in this first stretch are sent but not recorded. */
  warmupSeconds: number
  durationSeconds: number
  connections: number
  /** Limit for one request's headers and body. */
  timeoutMs: number
}

export interface OpenLoopResult {
  /** Recorded requests (after the warm-up). */
  recorded: number
  errors: number
  /** From the scheduled send time to the end of the response body. */
  latency: LatencySummary
  /** From the actual send time to the end of the response body. */
  service: LatencySummary
  /** How late each request was sent after its scheduled time: the pacer's and the event loop's delay. */
  sendLag: LatencySummary
  /** Recorded requests divided by the recorded stretch's scheduled length. */
  achievedRate: number
}

/** Time allowed after the last scheduled send for outstanding responses. */
const DRAIN_LIMIT_MS = 15_000

async function run(settings: OpenLoopSettings): Promise<OpenLoopResult> {
  const pool = new Pool(settings.origin, {
    connections: settings.connections,
    pipelining: 1,
    keepAliveTimeout: 60_000,
    headersTimeout: settings.timeoutMs,
    bodyTimeout: settings.timeoutMs,
  })
  const intervalMs = 1000 / settings.rate
  const warmupCount = Math.round(settings.rate * settings.warmupSeconds)
  const total = warmupCount + Math.round(settings.rate * settings.durationSeconds)
  const recordedCount = total - warmupCount
  const latency = new Float64Array(recordedCount)
  const service = new Float64Array(recordedCount)
  const lag = new Float64Array(recordedCount)
  const headers = { host: settings.host, authorization: `Bearer ${settings.token}` }
  let completed = 0
  let recorded = 0
  let errors = 0

  let allDone: () => void = () => {}
  const finished = new Promise<void>((resolve) => {
    allDone = resolve
  })

  const send = (index: number, scheduledAt: number): void => {
    const sentAt = performance.now()
    const complete = (ok: boolean): void => {
      const doneAt = performance.now()
      if (index >= warmupCount) {
        if (ok) {
          latency[recorded] = doneAt - scheduledAt
          service[recorded] = doneAt - sentAt
          lag[recorded] = sentAt - scheduledAt
          recorded += 1
        } else {
          errors += 1
        }
      }
      completed += 1
      if (completed === total) allDone()
    }
    pool
      .request({ path: settings.requestTarget, method: 'GET', headers })
      .then(async (response) => {
        await response.body.dump()
        complete(response.statusCode === 200)
      })
      .catch(() => complete(false))
  }

  // Request i is due at startAt + i * intervalMs. The pacer worker posts how many are due so far.
  const startAt = performance.now() + 50
  const stopPacer = new SharedArrayBuffer(4)
  const pacerSettings: PacerSettings = { startAt: performance.timeOrigin + startAt, intervalMs, total, stop: stopPacer }
  const pacer = new Worker(PACER_SCRIPT, { workerData: pacerSettings })
  let next = 0
  pacer.on('message', (due: number) => {
    // Sends every request whose time has come, so a late wake-up never skips or shifts the schedule.
    for (; next < due; next++) send(next, startAt + next * intervalMs)
  })
  pacer.on('error', (error: Error) => {
    process.stderr.write(`pacer failed: ${error.message}\n`)
    allDone()
  })

  const drainLimit = (settings.warmupSeconds + settings.durationSeconds) * 1000 + DRAIN_LIMIT_MS
  let timer: NodeJS.Timeout | undefined
  await Promise.race([finished, new Promise<void>((resolve) => (timer = setTimeout(resolve, drainLimit)))])
  clearTimeout(timer)
  Atomics.store(new Int32Array(stopPacer), 0, 1)
  await pacer.terminate()
  await pool.destroy()

  return {
    recorded,
    errors: errors + (total - completed),
    latency: summarizeLatencies(latency.subarray(0, recorded)),
    service: summarizeLatencies(service.subarray(0, recorded)),
    sendLag: summarizeLatencies(lag.subarray(0, recorded)),
    achievedRate: recorded / settings.durationSeconds,
  }
}

run(JSON.parse(process.argv[2] ?? '{}') as OpenLoopSettings).then(
  (result) => {
    process.stdout.write(`OPEN_LOOP_RESULT ${JSON.stringify(result)}\n`)
  },
  (error: unknown) => {
    process.stderr.write(`open-loop client failed: ${error instanceof Error ? error.stack : String(error)}\n`)
    process.exitCode = 1
  },
)
