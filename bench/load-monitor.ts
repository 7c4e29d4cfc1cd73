/**
 * Measures how much CPU other processes on the machine use while the benchmark runs: the
 * machine's busy time from /proc/stat minus the CPU time of the harness and every process it
 * started. On a shared machine this shows which measurements ran next to other work.
 */
import { performance } from 'node:perf_hooks'
import { readCpuTotals, readProcessTicks, type CpuTotals } from './procfs.js'
import { runningPids } from './processes.js'

const SAMPLE_INTERVAL_MS = 250
/** Samples kept for `recentShare`. */
const HISTORY_LENGTH = 20

/** Cumulative counters in clock ticks; the difference of two marks gives a share. */
export interface LoadMark {
  otherBusy: number
  total: number
}

export class LoadMonitor {
  /** Total milliseconds spent in `waitForQuiet`. */
  waitedMs = 0
  readonly #history: Array<LoadMark & { at: number }> = []
  #machine: CpuTotals = readCpuTotals()
  #harness = readProcessTicks(process.pid)
  #children = new Map<number, number>()
  #otherBusy = 0
  #total = 0
  readonly #timer: NodeJS.Timeout

  constructor() {
    this.#timer = setInterval(() => this.#sample(), SAMPLE_INTERVAL_MS)
    this.#timer.unref()
  }

  /** Samples now and returns the counters, for `otherShare`. */
  mark(): LoadMark {
    this.#sample()
    return { otherBusy: this.#otherBusy, total: this.#total }
  }

  stop(): void {
    clearInterval(this.#timer)
  }

  /** Returns the share of all cores that other processes used over about the last `windowMs`. */
  recentShare(windowMs: number): number {
    const latest = this.mark()
    const now = performance.now()
    const from = this.#history.find((sample) => now - sample.at <= windowMs + SAMPLE_INTERVAL_MS) ?? latest
    return otherShare(from, latest)
  }

  /**
   * Waits while other processes used more than `threshold` of all cores in the last half second,
   * for at most `limitMs`. Returns the share seen last, so a caller can note a noisy start.
   */
  async waitForQuiet(threshold: number, limitMs: number): Promise<number> {
    const started = performance.now()
    let share = this.recentShare(500)
    while (share > threshold && performance.now() - started < limitMs) {
      await new Promise((resolve) => setTimeout(resolve, SAMPLE_INTERVAL_MS))
      share = this.recentShare(500)
    }
    this.waitedMs += performance.now() - started
    return share
  }

  #sample(): void {
    const machine = readCpuTotals()
    const harness = readProcessTicks(process.pid)
    // A child's whole CPU time moves into the harness's reaped-children counter when it exits, so
    // what was already counted while it ran is taken off again for each child that disappeared.
    let ours = harness.own - this.#harness.own + (harness.reapedChildren - this.#harness.reapedChildren)
    const children = new Map<number, number>()
    for (const pid of runningPids()) {
      try {
        const ticks = readProcessTicks(pid).own
        children.set(pid, ticks)
        ours += ticks - (this.#children.get(pid) ?? 0)
      } catch {
        // Exited between the listing and the read; its time arrives with the reaped counter.
      }
    }
    for (const [pid, ticks] of this.#children) {
      if (!children.has(pid)) ours -= ticks
    }
    this.#otherBusy += Math.max(0, machine.busy - this.#machine.busy - ours)
    this.#total += machine.total - this.#machine.total
    this.#machine = machine
    this.#harness = harness
    this.#children = children
    this.#history.push({ otherBusy: this.#otherBusy, total: this.#total, at: performance.now() })
    if (this.#history.length > HISTORY_LENGTH) this.#history.shift()
  }
}

/** Share (0..1) of all cores that other processes used between two marks. */
export function otherShare(from: LoadMark, to: LoadMark): number {
  const total = to.total - from.total
  return total > 0 ? (to.otherBusy - from.otherBusy) / total : Number.NaN
}
