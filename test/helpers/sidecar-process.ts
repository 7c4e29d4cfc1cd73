import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The built CLI, as `bin["obo-sidecar"]` in package.json names it. */
export const CLI_PATH = fileURLToPath(new URL('../../dist/src/cli/main.js', import.meta.url))

export interface SidecarProcess {
  readonly child: ChildProcess
  /** `http://127.0.0.1:PORT`, for HTTP_PROXY. */
  readonly proxyUrl: string
  readonly adminUrl: string
  /** Every line written to standard output so far (JSON log lines). */
  readonly stdoutLines: string[]
  readonly stderr: () => string
  /** Sends SIGTERM and waits for the exit code. */
  stop(): Promise<number | null>
  /** The counter or gauge value from /metrics for a series like `name{label="x"}`, 0 when absent. */
  metric(series: string): Promise<number>
}

export function writeTempFile(name: string, content: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'obo-sidecar-test-'))
  const path = join(dir, name)
  writeFileSync(path, content)
  return path
}

export interface RunResult {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs the CLI to completion (for `validate`, `--version`, failed start-ups). Bounded by a timeout. */
export async function runCli(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 20_000): Promise<RunResult> {
  const child = spawn(process.execPath, [CLI_PATH, ...args], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    timeout: timeoutMs,
  })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const [code] = (await once(child, 'exit')) as [number | null]
  return { code, stdout, stderr }
}

/**
 * Starts `obo-sidecar run` on free loopback ports and resolves once its start log line has
 * appeared, which it writes after both listeners are bound. The log level must be info or lower.
 */
export async function startSidecarProcess(
  routesFile: string | undefined,
  extraArgs: string[] = [],
  env: NodeJS.ProcessEnv = {},
): Promise<SidecarProcess> {
  // Without a routes file, the caller sets everything through OBO_SIDECAR_* variables in `env`.
  const flags = routesFile === undefined ? [] : ['--routes', routesFile, '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0']
  const child = spawn(process.execPath, [CLI_PATH, 'run', ...flags, ...extraArgs], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  const stdoutLines: string[] = []
  let stderr = ''
  let partial = ''
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))

  const started = new Promise<{ proxy: string; admin: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sidecar did not start within 15 s; stderr: ${stderr}`)), 15_000)
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      partial += chunk
      const lines = partial.split('\n')
      partial = lines.pop()!
      for (const line of lines) {
        stdoutLines.push(line)
        const entry = parseJson(line)
        if (entry?.event === 'start' && typeof entry.proxy === 'string' && typeof entry.admin === 'string') {
          clearTimeout(timer)
          resolve({ proxy: entry.proxy, admin: entry.admin })
        }
      }
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`sidecar exited with ${code} before starting; stderr: ${stderr}`))
    })
  })
  const { proxy, admin } = await started
  const adminUrl = `http://${admin}`

  return {
    child,
    proxyUrl: `http://${proxy}`,
    adminUrl,
    stdoutLines,
    stderr: () => stderr,
    async stop() {
      if (child.exitCode !== null) return child.exitCode
      const exited = once(child, 'exit') as Promise<[number | null]>
      child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      const [code] = await exited
      clearTimeout(timer)
      return code
    },
    async metric(series: string) {
      const text = await (await fetch(`${adminUrl}/metrics`)).text()
      for (const line of text.split('\n')) {
        if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1))
      }
      return 0
    },
  }
}

function parseJson(line: string): Record<string, unknown> | undefined {
  try {
    return JSON.parse(line) as Record<string, unknown>
  } catch {
    return undefined
  }
}
