/**
 * Starts and stops the benchmark's child processes. Every process started here is tracked until
 * it exits, so the harness can stop all of them on success, failure, a signal or its time limit.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { openSync, closeSync } from 'node:fs'
import { connect } from 'node:net'
import { setTimeout as delay } from 'node:timers/promises'

const OUTPUT_TAIL_CHARS = 8 * 1024

export interface StartOptions {
  /** Extra environment variables; proxy variables are always removed. */
  env?: Record<string, string>
  /** Writes standard output to this file instead of keeping it in memory. */
  stdoutFile?: string
  /** Opens an IPC channel (for the benchmark's own Node child scripts). */
  ipc?: boolean
}

export interface ManagedProcess {
  readonly name: string
  readonly child: ChildProcess
  readonly pid: number
  /** Resolves with the exit code, or with the signal name when a signal ended the process. */
  readonly exited: Promise<number | string>
  /** Standard output kept in memory (empty when it goes to a file). */
  stdout(): string
  /** The last characters of standard error, and of standard output when it is kept in memory. */
  outputTail(): string
  /** Sends SIGTERM, then SIGKILL when the process is still running after `graceMs`. */
  stop(graceMs: number): Promise<void>
}

const running = new Set<ManagedProcess>()

// The timers raced against a process's exit below are unreferenced: a running child keeps the
// event loop alive by itself, and a pending timer would hold the harness open after the run.

/** Returns the environment of this process without proxy variables, plus `extra`. */
export function childEnvironment(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const environment: NodeJS.ProcessEnv = { ...process.env, ...extra }
  for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'all_proxy', 'no_proxy']) {
    delete environment[name]
  }
  return environment
}

export function startProcess(name: string, command: string, args: readonly string[], options: StartOptions = {}): ManagedProcess {
  const stdoutFd = options.stdoutFile === undefined ? undefined : openSync(options.stdoutFile, 'a')
  const stdio: Array<'ignore' | 'pipe' | 'ipc' | number> = ['ignore', stdoutFd ?? 'pipe', 'pipe']
  if (options.ipc === true) stdio.push('ipc')
  const child = spawn(command, args, { env: childEnvironment(options.env), stdio })
  if (stdoutFd !== undefined) closeSync(stdoutFd)
  if (child.pid === undefined) {
    // spawn reports a missing executable through an 'error' event and leaves pid unset.
    child.on('error', () => {})
    throw new Error(`could not start ${name} (${command}): no process id; is it installed?`)
  }

  let stdout = ''
  let stderrTail = ''
  child.stdout?.setEncoding('utf8')
  child.stdout?.on('data', (chunk: string) => {
    stdout += chunk
  })
  child.stderr?.setEncoding('utf8')
  child.stderr?.on('data', (chunk: string) => {
    stderrTail = (stderrTail + chunk).slice(-OUTPUT_TAIL_CHARS)
  })

  const exited = new Promise<number | string>((resolve) => {
    child.once('error', (error) => {
      stderrTail += `\n${name}: ${error.message}`
      resolve('error')
    })
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'))
  })

  const managed: ManagedProcess = {
    name,
    child,
    pid: child.pid,
    exited,
    stdout: () => stdout,
    outputTail: () => `${stderrTail}${stdout === '' ? '' : `\n[stdout] ${stdout.slice(-OUTPUT_TAIL_CHARS)}`}`.trim(),
    stop: async (graceMs) => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM')
        const outcome = await Promise.race([exited, delay(graceMs, 'timeout' as const, { ref: false })])
        if (outcome === 'timeout') {
          child.kill('SIGKILL')
          await Promise.race([exited, delay(5_000, undefined, { ref: false })])
        }
      }
      running.delete(managed)
    },
  }
  running.add(managed)
  void exited.then(() => running.delete(managed))
  return managed
}

/** Stops every process still running, in reverse order of starting. */
export async function stopAll(graceMs: number): Promise<void> {
  for (const managed of [...running].reverse()) {
    await managed.stop(graceMs)
  }
}

/** Process ids of the children started here that are still running. */
export function runningPids(): number[] {
  return [...running].map((managed) => managed.pid)
}

/** Kills every process still running without waiting: the last resort from an 'exit' handler. */
export function killAllNow(): void {
  for (const managed of running) {
    try {
      process.kill(managed.pid, 'SIGKILL')
    } catch {
      // Already gone.
    }
  }
  running.clear()
}

/** Waits for the process to exit within `timeoutMs`, then returns its exit code or signal. */
export async function waitForExit(managed: ManagedProcess, timeoutMs: number): Promise<number | string> {
  const outcome = await Promise.race([managed.exited, delay(timeoutMs, 'timeout' as const, { ref: false })])
  if (outcome === 'timeout') {
    await managed.stop(1_000)
    throw new Error(`${managed.name} did not finish within ${timeoutMs} ms; it was stopped. Output:\n${managed.outputTail()}`)
  }
  return outcome
}

/** Polls until a TCP connection to 127.0.0.1:`port` succeeds, failing early when `managed` exits. */
export async function waitForPort(port: number, managed: ManagedProcess, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (managed.child.exitCode !== null || managed.child.signalCode !== null) {
      throw new Error(`${managed.name} exited before listening on port ${port}. Output:\n${managed.outputTail()}`)
    }
    if (await canConnect(port)) return
    await delay(50)
  }
  throw new Error(`${managed.name} did not listen on 127.0.0.1:${port} within ${timeoutMs} ms. Output:\n${managed.outputTail()}`)
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port })
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

/** A message a benchmark child script sends over IPC. */
export interface ChildMessage {
  type: string
  id?: number
  [field: string]: unknown
}

/** Waits for the child's first IPC message of `type`, failing when it exits or the time runs out. */
export function waitForMessage(managed: ManagedProcess, type: string, timeoutMs: number, id?: number): Promise<ChildMessage> {
  return new Promise((resolve, reject) => {
    const onMessage = (message: ChildMessage): void => {
      if (message.type === 'error' && (id === undefined || message.id === id)) {
        finish()
        reject(new Error(`${managed.name}: ${String(message.message)}`))
      } else if (message.type === type && (id === undefined || message.id === id)) {
        finish()
        resolve(message)
      }
    }
    const onExit = (): void => {
      finish()
      reject(new Error(`${managed.name} exited while the harness waited for "${type}". Output:\n${managed.outputTail()}`))
    }
    const timer = setTimeout(() => {
      finish()
      reject(new Error(`${managed.name} sent no "${type}" message within ${timeoutMs} ms. Output:\n${managed.outputTail()}`))
    }, timeoutMs)
    const finish = (): void => {
      clearTimeout(timer)
      managed.child.off('message', onMessage)
      managed.child.off('exit', onExit)
    }
    managed.child.on('message', onMessage)
    managed.child.once('exit', onExit)
  })
}

let nextRequestId = 1

/** Sends `message` to the child and waits for its reply of type `replyType` with the same id. */
export async function askChild(managed: ManagedProcess, message: ChildMessage, replyType: string, timeoutMs: number): Promise<ChildMessage> {
  const id = nextRequestId++
  const reply = waitForMessage(managed, replyType, timeoutMs, id)
  managed.child.send({ ...message, id })
  return reply
}
