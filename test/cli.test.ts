import t from 'tap'
import { readFileSync } from 'node:fs'
import { CLI_PATH, runCli, startSidecarProcess, writeTempFile } from './helpers/sidecar-process.js'

const packageVersion = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version

const VALID_ROUTES = `issuers:
  corp:
    tokenEndpoint: http://127.0.0.1:9/token
    clientId: orders-agent
    clientSecret: { env: CLI_TEST_SECRET }
routes:
  - host: orders.example.com
    issuer: corp
    audience: https://orders.example.com
`

t.test('--version prints the package version', async (t) => {
  const result = await runCli(['--version'])
  t.equal(result.code, 0)
  t.equal(result.stdout.trim(), packageVersion)
})

t.test('run --help documents flags, environment variables and defaults', async (t) => {
  const result = await runCli(['run', '--help'])
  t.equal(result.code, 0)
  for (const text of ['--routes', 'OBO_SIDECAR_ROUTES', '--listen', 'OBO_SIDECAR_LISTEN', '--admin-listen', 'OBO_SIDECAR_ADMIN_LISTEN', '--exchange-timeout', '--default-token-lifetime', '--cache-expiry-skew']) {
    t.match(result.stdout, text)
  }
  t.match(result.stdout, /default:\s+127\.0\.0\.1:15080/, 'the proxy listens on loopback by default')
})

t.test('validate accepts a valid file', async (t) => {
  const result = await runCli(['validate', writeTempFile('routes.yaml', VALID_ROUTES)])
  t.equal(result.code, 0)
  t.match(result.stdout, /valid \(1 route, 1 issuer\)/)
})

t.test('validate prints FILE:LINE:COL problems and exits 1', async (t) => {
  const file = writeTempFile('routes.yaml', VALID_ROUTES.replace('issuer: corp', 'issuer: missing'))
  const result = await runCli(['validate', file])
  t.equal(result.code, 1)
  t.match(result.stderr, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:8:13: .*missing`, 'm'))
})

t.test('run refuses a bad routes file and does not start', async (t) => {
  const file = writeTempFile('routes.yaml', VALID_ROUTES.replace('host: orders.example.com', 'hots: orders.example.com'))
  const result = await runCli(['run', '--routes', file, '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0'])
  t.equal(result.code, 1)
  t.match(result.stderr, /:7:\d+: /, 'located problem')
  t.match(result.stderr, /not started/)
  t.notMatch(result.stdout, /sidecar started/)
})

t.test('run stops when a secret is missing, naming the issuer', async (t) => {
  const result = await runCli(['run', '--routes', writeTempFile('routes.yaml', VALID_ROUTES), '--listen', '127.0.0.1:0', '--admin-listen', '127.0.0.1:0'], { CLI_TEST_SECRET: '' })
  t.equal(result.code, 1)
  t.match(result.stderr, /issuer "corp" clientSecret/)
  t.match(result.stderr, /CLI_TEST_SECRET/)
})

t.test('run takes its settings from OBO_SIDECAR_* variables', async (t) => {
  const sidecar = await startSidecarProcess(undefined, [], {
    CLI_TEST_SECRET: 'secret-value',
    OBO_SIDECAR_ROUTES: writeTempFile('routes.yaml', VALID_ROUTES),
    OBO_SIDECAR_LISTEN: '127.0.0.1:0',
    OBO_SIDECAR_ADMIN_LISTEN: '127.0.0.1:0',
    OBO_SIDECAR_LOG_LEVEL: 'debug',
  })
  t.teardown(() => sidecar.stop().then(() => undefined))
  t.match(sidecar.proxyUrl, /^http:\/\/127\.0\.0\.1:\d+$/)
  t.equal((await fetch(`${sidecar.adminUrl}/readyz`)).status, 200)
})

t.test('run rejects a listen address that is not HOST:PORT', async (t) => {
  const result = await runCli(['run', '--routes', writeTempFile('routes.yaml', VALID_ROUTES), '--listen', 'somewhere'], { CLI_TEST_SECRET: 'x' })
  t.not(result.code, 0)
  t.match(result.stderr, /is not HOST:PORT/)
})

t.test('admin listener serves health, readiness and metrics', async (t) => {
  const sidecar = await startSidecarProcess(writeTempFile('routes.yaml', VALID_ROUTES), [], { CLI_TEST_SECRET: 'secret-value' })
  t.teardown(() => sidecar.stop().then(() => undefined))
  t.equal((await fetch(`${sidecar.adminUrl}/healthz`)).status, 200)
  t.equal((await fetch(`${sidecar.adminUrl}/readyz`)).status, 200)
  const metrics = await (await fetch(`${sidecar.adminUrl}/metrics`)).text()
  for (const name of [
    'obo_sidecar_token_exchanges_total',
    'obo_sidecar_token_exchange_duration_seconds',
    'obo_sidecar_token_cache_hits_total',
    'obo_sidecar_token_cache_misses_total',
    'obo_sidecar_proxy_requests_total',
    'obo_sidecar_proxy_request_duration_seconds',
    'obo_sidecar_token_cache_entries',
    'obo_sidecar_token_cache_bytes',
    'obo_sidecar_user_token_blocked_total',
    'obo_sidecar_tls_handshakes_total',
    'obo_sidecar_tls_certificates_minted_total',
    'obo_sidecar_tunnels_open',
    'obo_sidecar_config_reloads_total',
    'process_cpu_seconds_total',
  ]) {
    t.match(metrics, `# TYPE ${name} `, `${name} is registered before any traffic`)
  }
  t.equal((await fetch(`${sidecar.adminUrl}/nothing`)).status, 404)
})

t.test('SIGTERM stops the sidecar with exit code 0', async (t) => {
  const sidecar = await startSidecarProcess(writeTempFile('routes.yaml', VALID_ROUTES), [], { CLI_TEST_SECRET: 'secret-value' })
  t.equal(await sidecar.stop(), 0)
})

t.test('a busy admin port stops start-up with exit 1', async (t) => {
  const { createServer } = await import('node:net')
  const busy = createServer().listen(0, '127.0.0.1')
  await new Promise((resolve) => busy.once('listening', resolve))
  t.teardown(() => busy.close())
  const port = (busy.address() as { port: number }).port
  const result = await runCli(
    ['run', '--routes', writeTempFile('routes.yaml', VALID_ROUTES), '--listen', '127.0.0.1:0', '--admin-listen', `127.0.0.1:${port}`],
    { CLI_TEST_SECRET: 'secret-value' },
  )
  t.equal(result.code, 1, 'exits instead of serving without an admin listener')
  t.match(result.stderr, /not started: .*EADDRINUSE/)
})

// The machines this project runs on ship an older Node.js as /usr/bin/node.
const systemNode = '/usr/bin/node'
const systemNodeMajor = await runCommandVersion(systemNode)
t.test('an old Node.js gets a clear message', { skip: systemNodeMajor === undefined || systemNodeMajor >= 22 ? 'no Node.js older than 22 at /usr/bin/node' : false }, async (t) => {
  const { spawnSync } = await import('node:child_process')
  const result = spawnSync(systemNode, [CLI_PATH, '--version'], { encoding: 'utf8', timeout: 20_000 })
  t.equal(result.status, 1)
  t.match(result.stderr, /Node\.js 22\.19 or later is required/)
})

async function runCommandVersion(command: string): Promise<number | undefined> {
  const { spawnSync } = await import('node:child_process')
  const result = spawnSync(command, ['--version'], { encoding: 'utf8', timeout: 10_000 })
  const match = /^v(\d+)\./.exec(result.stdout ?? '')
  return match === null ? undefined : Number(match[1])
}
