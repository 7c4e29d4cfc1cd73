/**
 * The open-loop client's clock, in a worker thread. Node's timers fire on whole milliseconds, which
 * would delay a send by up to about 1 ms at 1,000 req/s. This worker sleeps with Atomics.wait,
 * which takes fractional milliseconds, and posts the number of requests due so far at each
 * scheduled send time. The main thread's event loop wakes on the message at once.
 */
import { parentPort, workerData } from 'node:worker_threads'
import { performance } from 'node:perf_hooks'

export interface PacerSettings {
  /** Epoch milliseconds (performance.timeOrigin + performance.now()) of request 0's send time. */
  startAt: number
  intervalMs: number
  total: number
  /** Int32 cell the main thread sets to 1 to stop the pacer early. */
  stop: SharedArrayBuffer
}

const settings = workerData as PacerSettings
const stop = new Int32Array(settings.stop)
const sleeper = new Int32Array(new SharedArrayBuffer(4))
const now = (): number => performance.timeOrigin + performance.now()

let due = 0
while (due < settings.total && Atomics.load(stop, 0) === 0) {
  const wait = settings.startAt + due * settings.intervalMs - now()
  // Nothing notifies `sleeper`, so the wait always runs to its timeout.
  if (wait > 0) Atomics.wait(sleeper, 0, 0, wait)
  const elapsed = now() - settings.startAt
  due = Math.min(settings.total, Math.floor(elapsed / settings.intervalMs) + 1)
  parentPort?.postMessage(due)
}
