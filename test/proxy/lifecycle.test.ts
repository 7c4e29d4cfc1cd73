import t, { type Test } from 'tap'
import { once } from 'node:events'
import { mkdirSync, mkdtempSync, renameSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { request } from 'undici'
import { startTokenService } from '../../demo/token-service.js'
import { fetchThroughProxy, proxyAgent } from '../helpers/clients.js'
import { startSidecarProcess, type SidecarProcess } from '../helpers/sidecar-process.js'
import { startUpstream } from '../helpers/upstream.js'

const SECRET = 'lifecycle-secret'
const tokenService = await startTokenService({ clients: [{ clientId: 'life-agent', clientSecret: SECRET, authMethod: 'client_secret_basic' }] })
const orders = await startUpstream()
const billing = await startUpstream()
t.teardown(async () => {
  await orders.close()
  await billing.close()
  await tokenService.close()
})

function routesYaml(routes: Array<{ name: string; authority: string; scopes?: string }>): string {
  const lines = [
    'issuers:',
    '  dev:',
    `    tokenEndpoint: ${tokenService.tokenEndpoint}`,
    '    clientId: life-agent',
    '    clientSecret: { env: LIFECYCLE_SECRET }',
    'routes:',
  ]
  for (const route of routes) {
    lines.push(`  - name: ${route.name}`, `    host: ${route.authority}`, '    issuer: dev', '    audience: https://api.example.com')
    if (route.scopes !== undefined) lines.push(`    scopes: [${route.scopes}]`)
  }
  return `${lines.join('\n')}\n`
}

/** Replaces a file the way editors and `kubectl cp` do: a new file renamed over the old one. */
function replaceFile(path: string, content: string): void {
  writeFileSync(`${path}.tmp`, content)
  renameSync(`${path}.tmp`, path)
}

/** Polls a metric until it reaches `value`; bounded to 5 s. */
async function waitForMetric(sidecar: SidecarProcess, series: string, value: number): Promise<number> {
  let current = 0
  for (let i = 0; i < 50; i++) {
    current = await sidecar.metric(series)
    if (current >= value) return current
    await sleep(100)
  }
  return current
}

function isSwapped(authorization: string[], userToken: string): boolean {
  return authorization.length === 1 && authorization[0].startsWith('Bearer ') && authorization[0] !== `Bearer ${userToken}`
}

async function startWithRoutes(t: Test, file: string) {
  const sidecar = await startSidecarProcess(file, ['--config-poll-interval', '60'], { LIFECYCLE_SECRET: SECRET })
  const agent = proxyAgent(sidecar.proxyUrl)
  t.teardown(async () => {
    await agent.close()
    await sidecar.stop()
  })
  return { sidecar, agent }
}

t.test('reload adds a route without a restart', async (t) => {
  const file = join(mkdtempSync(join(tmpdir(), 'obo-reload-')), 'routes.yaml')
  writeFileSync(file, routesYaml([{ name: 'orders', authority: orders.authority }]))
  const { sidecar, agent } = await startWithRoutes(t, file)
  const userToken = await tokenService.issueUserToken({ sub: 'reload-user' })
  const headers = { authorization: `Bearer ${userToken}` }

  await fetchThroughProxy(agent, `http://${billing.authority}/before`, { headers })
  t.same(billing.requests.at(-1)!.authorization, [`Bearer ${userToken}`], 'unrouted before the reload')

  replaceFile(file, routesYaml([{ name: 'orders', authority: orders.authority }, { name: 'billing', authority: billing.authority }]))
  t.equal(await waitForMetric(sidecar, 'obo_sidecar_config_reloads_total{result="success"}', 1), 1)
  await fetchThroughProxy(agent, `http://${billing.authority}/after`, { headers })
  t.ok(isSwapped(billing.requests.at(-1)!.authorization, userToken), 'routed after the reload')
})

t.test('invalid edit is rejected while traffic continues', async (t) => {
  const file = join(mkdtempSync(join(tmpdir(), 'obo-reload-')), 'routes.yaml')
  writeFileSync(file, routesYaml([{ name: 'orders', authority: orders.authority }]))
  const { sidecar, agent } = await startWithRoutes(t, file)
  const userToken = await tokenService.issueUserToken({ sub: 'steady-user' })

  replaceFile(file, routesYaml([{ name: 'orders', authority: orders.authority }]).replace('issuer: dev', 'issuer: missing'))
  t.equal(await waitForMetric(sidecar, 'obo_sidecar_config_reloads_total{result="failure"}', 1), 1)
  const response = await fetchThroughProxy(agent, `http://${orders.authority}/still`, { headers: { authorization: `Bearer ${userToken}` } })
  t.equal(response.status, 200)
  t.ok(isSwapped(orders.requests.at(-1)!.authorization, userToken), 'the running routes still apply')
  await sleep(100)
  const rejected = sidecar.stdoutLines.find((line) => line.includes('rejected the new routes file'))
  t.ok(rejected, 'the rejection is logged')
  t.match(rejected, /routes\.yaml:9:13: .*\\"missing\\" is not defined/, 'with the line and column')
  t.equal(await sidecar.metric('obo_sidecar_config_reloads_total{result="success"}'), 0)
})

t.test('ConfigMap-style symlink swap is picked up', async (t) => {
  // The layout kubelet gives a mounted ConfigMap: routes.yaml -> ..data/routes.yaml, and ..data a
  // symlink to a timestamped directory that an update replaces atomically.
  const dir = mkdtempSync(join(tmpdir(), 'obo-configmap-'))
  mkdirSync(join(dir, '..2026_12_04_v1'))
  writeFileSync(join(dir, '..2026_12_04_v1', 'routes.yaml'), routesYaml([{ name: 'orders', authority: orders.authority }]))
  symlinkSync('..2026_12_04_v1', join(dir, '..data'))
  symlinkSync(join('..data', 'routes.yaml'), join(dir, 'routes.yaml'))
  const { sidecar, agent } = await startWithRoutes(t, join(dir, 'routes.yaml'))

  mkdirSync(join(dir, '..2026_12_04_v2'))
  writeFileSync(
    join(dir, '..2026_12_04_v2', 'routes.yaml'),
    routesYaml([{ name: 'orders', authority: orders.authority }, { name: 'billing', authority: billing.authority }]),
  )
  symlinkSync('..2026_12_04_v2', join(dir, '..data_tmp'))
  renameSync(join(dir, '..data_tmp'), join(dir, '..data'))

  t.equal(await waitForMetric(sidecar, 'obo_sidecar_config_reloads_total{result="success"}', 1), 1)
  const userToken = await tokenService.issueUserToken({ sub: 'configmap-user' })
  await fetchThroughProxy(agent, `http://${billing.authority}/swapped`, { headers: { authorization: `Bearer ${userToken}` } })
  t.ok(isSwapped(billing.requests.at(-1)!.authorization, userToken))
})

t.test('SIGHUP reloads, and changed routes lose their cached tokens', async (t) => {
  const file = join(mkdtempSync(join(tmpdir(), 'obo-reload-')), 'routes.yaml')
  writeFileSync(file, routesYaml([{ name: 'orders', authority: orders.authority, scopes: 'orders.read' }]))
  const { sidecar, agent } = await startWithRoutes(t, file)
  const userToken = await tokenService.issueUserToken({ sub: 'hup-user' })
  const call = () => fetchThroughProxy(agent, `http://${orders.authority}/x`, { headers: { authorization: `Bearer ${userToken}` } })

  sidecar.child.kill('SIGHUP')
  t.equal(await waitForMetric(sidecar, 'obo_sidecar_config_reloads_total{result="success"}', 1), 1, 'SIGHUP applies the file')

  const before = tokenService.exchangeCount()
  await call()
  await call()
  t.equal(tokenService.exchangeCount(), before + 1, 'cached before the change')

  replaceFile(file, routesYaml([{ name: 'orders', authority: orders.authority, scopes: 'orders.write' }]))
  t.equal(await waitForMetric(sidecar, 'obo_sidecar_config_reloads_total{result="success"}', 2), 2)
  await call()
  t.equal(tokenService.exchangeCount(), before + 2, 'the changed route exchanges again')
  await sleep(100)
  t.ok(sidecar.stdoutLines.some((line) => line.includes('"dropped_tokens":1')), 'the old entry was dropped')
})

t.test('SIGTERM lets a streaming response finish, then exits 0', async (t) => {
  const file = join(mkdtempSync(join(tmpdir(), 'obo-drain-')), 'routes.yaml')
  writeFileSync(file, routesYaml([{ name: 'orders', authority: orders.authority }]))
  const sidecar = await startSidecarProcess(file, ['--shutdown-grace', '10'], { LIFECYCLE_SECRET: SECRET })
  const agent = proxyAgent(sidecar.proxyUrl)
  t.teardown(async () => {
    await agent.close()
    await sidecar.stop()
  })
  const userToken = await tokenService.issueUserToken({ sub: 'drain-user' })
  const response = await request(`http://${orders.authority}/sse?events=5&delay=300`, {
    dispatcher: agent,
    headers: { authorization: `Bearer ${userToken}` },
  })
  t.equal(response.statusCode, 200)

  const exited = once(sidecar.child, 'exit') as Promise<[number | null]>
  let text = ''
  let signalled = false
  let readyDuringDrain: number | undefined
  for await (const chunk of response.body) {
    text += String(chunk)
    if (!signalled) {
      signalled = true
      sidecar.child.kill('SIGTERM')
      await sleep(100)
      readyDuringDrain = (await fetch(`${sidecar.adminUrl}/readyz`)).status
    }
  }
  t.equal(text.split('\n\n').length - 1, 5, 'all five events arrived after SIGTERM')
  t.equal(readyDuringDrain, 503, '/readyz fails while draining')
  const [code] = await exited
  t.equal(code, 0, 'exit code 0 after the stream completed')
})
