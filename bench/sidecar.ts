/**
 * Starts the built sidecar CLI (dist/src/cli/main.js) as its own process, the way a deployment
 * runs it, and reads its admin /metrics.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { setTimeout as delay } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { stringify } from 'yaml'
import { findFreePort } from '../demo/loopback.js'
import { startProcess, type ManagedProcess } from './processes.js'
import { AUDIENCE, CLIENT_ID, CLIENT_SECRET_VARIABLE, ROUTE_NAME, SCOPE } from './shared.js'

/** Cache bounds used for every sidecar in the benchmark: room for 100,000 tokens of about 1 KB. */
export const CACHE_MAX_ENTRIES = 200_000
export const CACHE_MAX_BYTES = 1024 * 1024 * 1024

/**
 * Returns the node flags of the container image's ENTRYPOINT (the exec-form array in the repository's
 * Dockerfile, between the node binary and dist/src/cli/main.js), so the benchmark runs the sidecar
 * with the same V8 settings as production. Returns no flags when there is no such Dockerfile line.
 */
export function productionNodeFlags(): { flags: string[]; source: string } {
  const dockerfile = fileURLToPath(new URL('../../Dockerfile', import.meta.url))
  try {
    const match = /^ENTRYPOINT\s+(\[.*\])\s*$/m.exec(readFileSync(dockerfile, 'utf8'))
    const entrypoint = match === null ? [] : (JSON.parse(match[1]) as unknown[])
    const script = entrypoint.findIndex((item) => typeof item === 'string' && item.endsWith('dist/src/cli/main.js'))
    if (script > 0) {
      const flags = entrypoint.slice(1, script).filter((item): item is string => typeof item === 'string' && item.startsWith('--'))
      return { flags, source: `${flags.length === 0 ? 'none' : flags.join(' ')}, copied from the Dockerfile's ENTRYPOINT so V8 runs as in the container image` }
    }
  } catch {
    // No Dockerfile, or an ENTRYPOINT in another form.
  }
  return { flags: [], source: 'none, because the Dockerfile has no exec-form ENTRYPOINT that runs dist/src/cli/main.js' }
}

export function sidecarCliPath(): string {
  // This file runs from dist/bench/, next to dist/src/.
  const cliPath = fileURLToPath(new URL('../src/cli/main.js', import.meta.url))
  if (!existsSync(cliPath)) throw new Error(`sidecar CLI not found at ${cliPath}; run "npm run build" first`)
  return cliPath
}

/** Writes a routes file with one route: the upstream's host and port, exchanged at the token service. */
export function writeRoutesFile(directory: string, tokenEndpoint: string, upstreamPort: number): string {
  const file = join(directory, 'routes.yaml')
  const routes = {
    version: 1,
    issuers: {
      bench: {
        tokenEndpoint,
        grant: 'token-exchange',
        clientId: CLIENT_ID,
        clientAuth: 'client_secret_basic',
        clientSecret: { env: CLIENT_SECRET_VARIABLE },
      },
    },
    routes: [{ name: ROUTE_NAME, host: `127.0.0.1:${upstreamPort}`, issuer: 'bench', audience: AUDIENCE, scopes: [SCOPE] }],
  }
  writeFileSync(file, stringify(routes), { mode: 0o600 })
  return file
}

export interface SidecarOptions {
  name: string
  routesFile: string
  clientSecret: string
  /** Standard output (the JSON log lines) goes here. */
  logFile: string
  /** Writes a V8 CPU profile into this directory when the process exits. */
  cpuProfileDirectory?: string
  /** Opens the inspector on 127.0.0.1:PORT, so the harness can force a garbage collection. */
  inspectPort?: number
}

export interface RunningSidecar {
  readonly process: ManagedProcess
  readonly port: number
  readonly adminPort: number
  /** The exact command line, for the report. */
  readonly commandLine: string[]
}

const SIDECAR_FLAGS = ['--log-level', 'info', '--cache-max-entries', String(CACHE_MAX_ENTRIES), '--cache-max-bytes', String(CACHE_MAX_BYTES), '--shutdown-grace', '2']

export function sidecarFlags(): string[] {
  return [...SIDECAR_FLAGS]
}

export async function startSidecar(options: SidecarOptions): Promise<RunningSidecar> {
  const port = await findFreePort()
  const adminPort = await findFreePort()
  const nodeFlags = productionNodeFlags().flags
  if (options.cpuProfileDirectory !== undefined) nodeFlags.push('--cpu-prof', '--cpu-prof-dir', options.cpuProfileDirectory, '--cpu-prof-interval', '500')
  if (options.inspectPort !== undefined) nodeFlags.push(`--inspect=127.0.0.1:${options.inspectPort}`)
  const args = [
    ...nodeFlags,
    sidecarCliPath(),
    'run',
    '--routes', options.routesFile,
    '--listen', `127.0.0.1:${port}`,
    '--admin-listen', `127.0.0.1:${adminPort}`,
    ...SIDECAR_FLAGS,
  ]
  const sidecar = startProcess(options.name, process.execPath, args, {
    env: { [CLIENT_SECRET_VARIABLE]: options.clientSecret },
    stdoutFile: options.logFile,
  })
  const running: RunningSidecar = { process: sidecar, port, adminPort, commandLine: ['node', ...args] }
  await waitUntilReady(running, options.logFile, 15_000)
  return running
}

async function waitUntilReady(sidecar: RunningSidecar, logFile: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const { child } = sidecar.process
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`${sidecar.process.name} exited during start-up. Log:\n${readTail(logFile)}\n${sidecar.process.outputTail()}`)
    }
    try {
      const response = await request(`http://127.0.0.1:${sidecar.adminPort}/readyz`, { headersTimeout: 1_000, bodyTimeout: 1_000 })
      await response.body.dump()
      if (response.statusCode === 200) return
    } catch {
      // Not listening yet.
    }
    await delay(50)
  }
  throw new Error(`${sidecar.process.name} was not ready within ${timeoutMs} ms. Log:\n${readTail(logFile)}`)
}

export function readTail(file: string, chars = 4_000): string {
  try {
    return readFileSync(file, 'utf8').slice(-chars)
  } catch {
    return '(no log)'
  }
}

/** One scrape of the Prometheus text format: sample lines by metric name, with their label text. */
export interface MetricsSnapshot {
  /** Sums every sample of `name` whose label text contains each of `labelParts`. */
  sum(name: string, ...labelParts: string[]): number
}

export async function scrapeMetrics(sidecar: RunningSidecar): Promise<MetricsSnapshot> {
  const response = await request(`http://127.0.0.1:${sidecar.adminPort}/metrics`, { headersTimeout: 10_000, bodyTimeout: 10_000 })
  const text = await response.body.text()
  if (response.statusCode !== 200) throw new Error(`/metrics returned ${response.statusCode}`)
  const samples: Array<{ name: string; labels: string; value: number }> = []
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const match = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line)
    if (match !== null) samples.push({ name: match[1], labels: match[2] ?? '', value: Number(match[3]) })
  }
  return {
    sum: (name, ...labelParts) =>
      samples
        .filter((sample) => sample.name === name && labelParts.every((part) => sample.labels.includes(part)))
        .reduce((total, sample) => total + sample.value, 0),
  }
}
