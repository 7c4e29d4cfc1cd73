/** Runs the built sidecar CLI as a child process for the demo, the way a deployment would. */
import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { setTimeout as delay } from 'node:timers/promises'

export interface SidecarChildOptions {
  /** From `findSidecarCli()`. */
  cliPath: string
  routesFile: string
  proxyPort: number
  adminPort: number
  /** Extra environment variables, such as the client secret the routes file refers to. */
  environment: Record<string, string>
  /** Strings to blank out of the captured output before it is shown, such as that secret. */
  redact: string[]
}

export interface SidecarChild {
  proxyUrl: string
  adminUrl: string
  /** Polls `/readyz` until it returns 200. Throws when the child exits or the time runs out. */
  waitUntilReady(timeoutMs: number): Promise<void>
  /** The last lines the child wrote, with JWTs and the `redact` strings removed. */
  outputTail(): string
  /** Sends SIGTERM, then SIGKILL if the child has not exited after `graceMs`. */
  stop(graceMs: number): Promise<void>
}

const OUTPUT_TAIL_BYTES = 16 * 1024
const READY_POLL_INTERVAL_MS = 100
// Three base64url segments starting with an encoded '{"': the shape of a JWS compact token.
const JWT_PATTERN = /eyJ[\w-]*\.[\w-]*\.[\w-]*/g

/** Returns the path of the built sidecar CLI next to this compiled file, or throws when it is missing. */
export function findSidecarCli(): string {
  const cliPath = fileURLToPath(new URL('../src/cli/main.js', import.meta.url))
  if (!existsSync(cliPath)) {
    throw new Error(`sidecar CLI not found at ${cliPath}; run "npm run build" first`)
  }
  return cliPath
}

export function startSidecarChild(options: SidecarChildOptions): SidecarChild {
  const child = spawn(process.execPath, [
    options.cliPath,
    'run',
    '--routes', options.routesFile,
    '--listen', `127.0.0.1:${options.proxyPort}`,
    '--admin-listen', `127.0.0.1:${options.adminPort}`,
    '--shutdown-grace', '1',
  ], { env: childEnvironment(options.environment), stdio: ['ignore', 'pipe', 'pipe'] })

  const output = captureOutput(child)
  const adminUrl = `http://127.0.0.1:${options.adminPort}`
  return {
    proxyUrl: `http://127.0.0.1:${options.proxyPort}`,
    adminUrl,
    waitUntilReady: (timeoutMs) => waitUntilReady(child, adminUrl, timeoutMs, () => redactOutput(output(), options.redact)),
    outputTail: () => redactOutput(output(), options.redact),
    stop: (graceMs) => stopChild(child, graceMs),
  }
}

/**
 * Returns the demo's environment without proxy variables, so the sidecar reaches the loopback token
 * service and API directly, whatever proxy the person running the demo has configured.
 */
function childEnvironment(extra: Record<string, string>): NodeJS.ProcessEnv {
  const environment: NodeJS.ProcessEnv = { ...process.env, ...extra }
  for (const name of ['HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'http_proxy', 'https_proxy', 'all_proxy']) {
    delete environment[name]
  }
  return environment
}

function captureOutput(child: ChildProcess): () => string {
  let tail = ''
  const append = (chunk: Buffer): void => {
    tail = (tail + chunk.toString('utf8')).slice(-OUTPUT_TAIL_BYTES)
  }
  child.stdout?.on('data', append)
  child.stderr?.on('data', append)
  return () => tail
}

function redactOutput(text: string, secrets: string[]): string {
  let redacted = text.replace(JWT_PATTERN, '[JWT removed]')
  for (const secret of secrets.filter((value) => value !== '')) {
    redacted = redacted.split(secret).join('[secret removed]')
  }
  return redacted
}

async function waitUntilReady(child: ChildProcess, adminUrl: string, timeoutMs: number, output: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  let lastProblem = 'no answer yet'
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`the sidecar exited (${child.exitCode ?? child.signalCode}) before it was ready; its output:\n${output()}`)
    }
    try {
      const response = await fetch(`${adminUrl}/readyz`, { signal: AbortSignal.timeout(1000) })
      await response.body?.cancel()
      if (response.status === 200) {
        return
      }
      lastProblem = `/readyz returned ${response.status}`
    } catch (error) {
      lastProblem = error instanceof Error ? error.message : String(error)
    }
    await delay(READY_POLL_INTERVAL_MS)
  }
  throw new Error(`the sidecar was not ready within ${timeoutMs} ms (${lastProblem}); its output:\n${output()}`)
}

async function stopChild(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return
  }
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  const stoppedInTime = await Promise.race([exited.then(() => true), delay(graceMs).then(() => false)])
  if (!stoppedInTime) {
    child.kill('SIGKILL')
    await exited
  }
}
