// Builds the container image's /app layout without Docker, as the Dockerfile's runtime stage does:
// package.json, production dependencies installed with `npm ci --omit=dev --ignore-scripts`, and the
// compiled dist/src. Then it runs the CLI from that layout and sends one request through the proxy,
// which fails if the build uses a devDependency at run time or the layout misses a file.
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ProxyAgent, request } from 'undici'

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url))
const BUILT_SRC = join(REPO_ROOT, 'dist', 'src')
const NPM_CI_TIMEOUT_MS = 90_000
const CLI_TIMEOUT_MS = 20_000

interface PackageManifest {
  version: string
  dependencies: Record<string, string>
  devDependencies: Record<string, string>
}

interface LockfileEntry {
  dev?: boolean
}

const manifest = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as PackageManifest
const lockfile = JSON.parse(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockfileEntry> }

/**
 * Returns the environment for processes started from the layout: this process's, less what npm and
 * tap set for their own children. npm_config_local_prefix in particular would point npm ci at the
 * repository instead of the layout. The proxy variables are dropped so that the sidecar reaches the
 * loopback servers directly.
 */
function layoutEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (/^(npm_|tap_|_tapjs_)/i.test(key)) continue
    if (/^(node_options|http_proxy|https_proxy|no_proxy|node_use_env_proxy)$/i.test(key)) continue
    env[key] = value
  }
  // Puts the npm that ships with the Node.js running this test ahead of any other npm on PATH.
  env.PATH = `${dirname(process.execPath)}:${env.PATH ?? ''}`
  return env
}

interface Completed {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

async function runToCompletion(command: string, args: string[], cwd: string, timeoutMs: number): Promise<Completed> {
  const child = spawn(command, args, { cwd, env: layoutEnv(), stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null]
  return { code, signal, stdout, stderr }
}

/** Lists every file under `dir` as a path relative to it, sorted. */
function listFiles(dir: string): string[] {
  const files: string[] = []
  const walk = (current: string): void => {
    for (const entry of readdirSync(current, { withFileTypes: true })) {
      const path = join(current, entry.name)
      if (entry.isDirectory()) walk(path)
      else files.push(relative(dir, path))
    }
  }
  walk(dir)
  return files.sort()
}

async function listen(server: Server): Promise<number> {
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return (server.address() as AddressInfo).port
}

async function close(server: Server): Promise<void> {
  server.closeAllConnections()
  await new Promise<void>((resolve) => server.close(() => resolve()))
}

interface RunningSidecar {
  child: ChildProcess
  proxyUrl: string
  adminUrl: string
  stderr: () => string
}

/** Starts `node dist/src/cli/main.js run` from the layout and waits for its start log line. */
async function startFromLayout(layout: string, routesFile: string): Promise<RunningSidecar> {
  const child = spawn(
    process.execPath,
    ['dist/src/cli/main.js', 'run', '--routes', routesFile, '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0'],
    { cwd: layout, env: layoutEnv(), stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let stderr = ''
  let partial = ''
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const addresses = await new Promise<{ proxy: string; admin: string }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sidecar did not start within ${CLI_TIMEOUT_MS} ms; stderr: ${stderr}`)), CLI_TIMEOUT_MS)
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      partial += chunk
      const lines = partial.split('\n')
      partial = lines.pop()!
      for (const line of lines) {
        let entry: Record<string, unknown>
        try {
          entry = JSON.parse(line) as Record<string, unknown>
        } catch {
          continue
        }
        if (entry.event === 'start' && typeof entry.proxy === 'string' && typeof entry.admin === 'string') {
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
  return { child, proxyUrl: `http://${addresses.proxy}`, adminUrl: `http://${addresses.admin}`, stderr: () => stderr }
}

async function stop(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null) return child.exitCode
  const exited = once(child, 'exit') as Promise<[number | null]>
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
  const [code] = await exited
  clearTimeout(timer)
  return code
}

t.test('production layout', async (t) => {
  if (!existsSync(join(BUILT_SRC, 'cli', 'main.js'))) {
    t.fail('dist/src/cli/main.js is missing: run `npm run build` first (npm test does)')
    return
  }

  const layout = mkdtempSync(join(tmpdir(), 'obo-sidecar-layout-'))
  t.teardown(() => rmSync(layout, { recursive: true, force: true }))
  cpSync(join(REPO_ROOT, 'package.json'), join(layout, 'package.json'))
  cpSync(join(REPO_ROOT, 'package-lock.json'), join(layout, 'package-lock.json'))
  cpSync(BUILT_SRC, join(layout, 'dist', 'src'), { recursive: true })

  const install = await runToCompletion('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund'], layout, NPM_CI_TIMEOUT_MS)
  if (install.code !== 0) {
    t.fail(`npm ci --omit=dev failed (exit ${install.code}, signal ${install.signal}): ${install.stderr.slice(-2000)}`)
    return
  }
  // The runtime stage copies node_modules, dist/src and package.json, not the lockfile.
  rmSync(join(layout, 'package-lock.json'))

  t.test('holds no devDependency', async (t) => {
    for (const name of ['tap', 'typescript', 'eslint', 'oidc-provider']) {
      t.notOk(existsSync(join(layout, 'node_modules', name)), `${name} is not installed`)
    }
    const devOnly = Object.entries(lockfile.packages)
      .filter(([path, entry]) => path.startsWith('node_modules/') && entry.dev === true)
      .map(([path]) => path)
    t.ok(devOnly.length > 0, 'the lockfile marks dev-only packages')
    t.same(devOnly.filter((path) => existsSync(join(layout, path))), [], 'no package the lockfile marks dev-only is installed')
  })

  t.test('holds every dependency', async (t) => {
    for (const name of Object.keys(manifest.dependencies)) {
      t.ok(statSync(join(layout, 'node_modules', name, 'package.json'), { throwIfNoEntry: false })?.isFile(), `${name} is installed`)
    }
  })

  t.test('--version runs from the layout', async (t) => {
    const result = await runToCompletion(process.execPath, ['dist/src/cli/main.js', '--version'], layout, CLI_TIMEOUT_MS)
    t.equal(result.code, 0, `exit code; stderr: ${result.stderr}`)
    t.equal(result.stdout.trim(), manifest.version)
  })

  t.test('proxies a routed request from the layout', async (t) => {
    const tokenRequests: URLSearchParams[] = []
    const tokenEndpoint = createServer((req, res) => {
      let body = ''
      req.setEncoding('utf8').on('data', (chunk: string) => (body += chunk))
      req.on('end', () => {
        tokenRequests.push(new URLSearchParams(body))
        res.writeHead(200, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ access_token: 'x', token_type: 'Bearer', expires_in: 60 }))
      })
    })
    const upstreamRequests: { url: string; headers: IncomingHttpHeaders }[] = []
    const upstream = createServer((req, res) => {
      upstreamRequests.push({ url: req.url ?? '', headers: req.headers })
      req.resume()
      res.writeHead(200, { 'content-type': 'text/plain' })
      res.end('ok')
    })
    const tokenPort = await listen(tokenEndpoint)
    const upstreamPort = await listen(upstream)
    t.teardown(() => close(tokenEndpoint))
    t.teardown(() => close(upstream))

    const routesFile = join(layout, 'routes.yaml')
    writeFileSync(
      routesFile,
      [
        'issuers:',
        '  local:',
        `    tokenEndpoint: http://127.0.0.1:${tokenPort}/token`,
        '    clientId: layout-test',
        '    clientAuth: none',
        'routes:',
        '  - name: api',
        `    host: 127.0.0.1:${upstreamPort}`,
        '    issuer: local',
        '    audience: https://api.example.test',
        '',
      ].join('\n'),
    )
    const filesBefore = listFiles(layout)

    const sidecar = await startFromLayout(layout, routesFile)
    t.teardown(() => stop(sidecar.child))

    const ready = await fetch(`${sidecar.adminUrl}/readyz`)
    t.equal(ready.status, 200, '/readyz answers 200 once both listeners are bound')

    const agent = new ProxyAgent(sidecar.proxyUrl)
    t.teardown(() => agent.close())
    const response = await request(`http://127.0.0.1:${upstreamPort}/v1/items`, {
      dispatcher: agent,
      headers: { authorization: 'Bearer user-token-from-agent' },
    })
    t.equal(response.statusCode, 200, 'status through the proxy')
    t.equal(await response.body.text(), 'ok')

    t.equal(upstreamRequests.length, 1, 'the upstream got one request')
    t.equal(upstreamRequests[0]?.headers.authorization, 'Bearer x', 'the upstream got the exchanged token')
    t.equal(upstreamRequests[0]?.url, '/v1/items')
    t.equal(tokenRequests.length, 1, 'one token exchange')
    t.equal(tokenRequests[0]?.get('subject_token'), 'user-token-from-agent', 'the user token was the subject token')
    t.equal(tokenRequests[0]?.get('grant_type'), 'urn:ietf:params:oauth:grant-type:token-exchange')

    t.equal(await stop(sidecar.child), 0, `exit code after SIGTERM; stderr: ${sidecar.stderr()}`)
    // The chart runs the image with a read-only root filesystem, so nothing may be written under /app.
    t.same(listFiles(layout), filesBefore, 'the sidecar wrote no file into the layout')
  })
})
