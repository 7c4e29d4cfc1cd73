/** Reads a process's CPU time and resident memory from Linux's /proc, and the machine's description. */
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { cpus, totalmem, release } from 'node:os'

let clockTicks: number | undefined

function ticksPerSecond(): number {
  clockTicks ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  return clockTicks
}

/** CPU time of one process in clock ticks, from /proc/PID/stat. */
export interface ProcessTicks {
  /** utime + stime: the process itself, all its threads. */
  own: number
  /** cutime + cstime: its children that have exited and been waited for. */
  reapedChildren: number
}

export function readProcessTicks(pid: number): ProcessTicks {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  // The command name in field 2 is in parentheses and may contain spaces, so fields are counted
  // from the last ')': field 14 (utime) is at index 11.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { own: Number(fields[11]) + Number(fields[12]), reapedChildren: Number(fields[13]) + Number(fields[14]) }
}

/** Returns user plus system CPU seconds of process `pid` (fields 14 and 15 of /proc/PID/stat). */
export function cpuSeconds(pid: number): number {
  return readProcessTicks(pid).own / ticksPerSecond()
}

/** Returns VmRSS of process `pid` in bytes. */
export function residentBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const match = /^VmRSS:\s+(\d+) kB/m.exec(status)
  if (match === null) throw new Error(`no VmRSS in /proc/${pid}/status`)
  return Number(match[1]) * 1024
}

export interface MachineDescription {
  cores: number
  cpuModel: string
  memoryGiB: number
  kernel: string
  node: string
}

export function describeMachine(): MachineDescription {
  let cpuModel = 'unknown'
  try {
    const match = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))
    if (match !== null) cpuModel = match[1].trim()
  } catch {
    // Not Linux, or /proc is not mounted.
  }
  return {
    cores: cpus().length,
    cpuModel,
    memoryGiB: totalmem() / 1024 ** 3,
    kernel: release(),
    node: process.version,
  }
}

/** Machine-wide CPU time in clock ticks, summed over all cores. */
export interface CpuTotals {
  busy: number
  total: number
}

export function readCpuTotals(): CpuTotals {
  // The first line of /proc/stat sums all cores: user nice system idle iowait irq softirq steal ...
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number)
  const total = fields.reduce((sum, value) => sum + value, 0)
  return { busy: total - fields[3] - fields[4], total }
}

/**
 * Returns the share (0..1) of the machine's CPU time that was busy during the next `durationMs`.
 * Measured while the benchmark runs nothing, it shows how much other work shares the machine.
 */
export async function sampleMachineBusy(durationMs: number): Promise<number> {
  const before = readCpuTotals()
  await new Promise((resolve) => setTimeout(resolve, durationMs))
  const after = readCpuTotals()
  const total = after.total - before.total
  return total > 0 ? (after.busy - before.busy) / total : Number.NaN
}
