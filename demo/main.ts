/**
 * `npm run demo`: starts a development token service, a sample API and the built sidecar on
 * loopback ports, sends an agent's requests through the sidecar and shows what changed.
 * Exits 0 when every check passes and 1 with the reason otherwise.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { decodeJwt } from 'jose'
import type { JWTPayload } from 'jose'
import { ProxyAgent, fetch } from 'undici'
import { stringify } from 'yaml'

import { findFreePort } from './loopback.js'
import { fingerprint, printClaims, printHeading, printLine, parseMetrics, sumMetric } from './print.js'
import { startSampleApi } from './sample-api.js'
import type { SampleApi } from './sample-api.js'
import { findSidecarCli, startSidecarChild } from './sidecar-child.js'
import type { SidecarChild } from './sidecar-child.js'
import { startTokenService } from './token-service.js'
import type { TokenService } from './token-service.js'

const CLIENT_ID = 'orders-agent'
const API_AUDIENCE = 'https://orders.example.com'
const API_SCOPE = 'orders.read'
const SECRET_VARIABLE = 'DEMO_CLIENT_SECRET'
const DEMO_TIMEOUT_MS = 14_000
const READY_TIMEOUT_MS = 10_000
const STOP_GRACE_MS = 3_000
const REQUEST_TIMEOUT_MS = 5_000

interface DemoEnvironment {
  tokenService: TokenService
  api: SampleApi
  sidecar: SidecarChild
  agent: ProxyAgent
}

/** Undo steps for whatever has started, run in reverse order. */
type Cleanup = Array<() => Promise<void>>

class DemoFailure extends Error {}

async function main(): Promise<number> {
  const deadline = Date.now() + DEMO_TIMEOUT_MS
  const cleanup: Cleanup = []
  let sidecar: SidecarChild | undefined
  try {
    const environment = await startEnvironment(cleanup, Math.min(READY_TIMEOUT_MS, deadline - Date.now()))
    sidecar = environment.sidecar
    await withTimeout(runScenario(environment), deadline - Date.now())
    printLine()
    printLine('Demo finished: every check passed.')
    return 0
  } catch (error) {
    reportFailure(error, sidecar)
    return 1
  } finally {
    await runCleanup(cleanup)
  }
}

async function startEnvironment(cleanup: Cleanup, readyTimeoutMs: number): Promise<DemoEnvironment> {
  const cliPath = findSidecarCli()
  printHeading('1. Start the token service, the sample API and the sidecar')
  const clientSecret = randomBytes(24).toString('base64url')

  const tokenService = await startTokenService({
    clients: [{ clientId: CLIENT_ID, clientSecret, authMethod: 'client_secret_basic' }],
    audiences: [API_AUDIENCE],
    scopes: [API_SCOPE, 'orders.write'],
  })
  cleanup.push(() => tokenService.close())
  printLine(`    token service  ${tokenService.issuer} (token endpoint ${tokenService.tokenEndpoint})`)

  const api = await startSampleApi({ jwksUri: tokenService.jwksUri, issuer: tokenService.issuer, audience: API_AUDIENCE })
  cleanup.push(() => api.close())
  printLine(`    sample API     ${api.url} (accepts tokens with aud ${API_AUDIENCE})`)

  const directory = await mkdtemp(join(tmpdir(), 'obo-sidecar-demo-'))
  cleanup.push(() => rm(directory, { recursive: true, force: true }))
  const routesFile = join(directory, 'routes.yaml')
  await writeFile(routesFile, routesYaml(tokenService, api), { mode: 0o600 })

  const sidecar = startSidecarChild({
    cliPath,
    routesFile,
    proxyPort: await findFreePort(),
    adminPort: await findFreePort(),
    environment: { [SECRET_VARIABLE]: clientSecret },
    redact: [clientSecret],
  })
  cleanup.push(() => sidecar.stop(STOP_GRACE_MS))
  const started = Date.now()
  await sidecar.waitUntilReady(readyTimeoutMs)
  printLine(`    sidecar        proxy ${sidecar.proxyUrl}, admin ${sidecar.adminUrl} (ready after ${Date.now() - started} ms)`)

  const agent = new ProxyAgent(sidecar.proxyUrl)
  cleanup.push(() => agent.close())
  return { tokenService, api, sidecar, agent }
}

function routesYaml(tokenService: TokenService, api: SampleApi): string {
  return stringify({
    issuers: {
      dev: {
        tokenEndpoint: tokenService.tokenEndpoint,
        grant: 'token-exchange',
        clientId: CLIENT_ID,
        clientAuth: 'client_secret_basic',
        clientSecret: { env: SECRET_VARIABLE },
      },
    },
    routes: [
      { name: 'orders', host: new URL(api.url).host, issuer: 'dev', audience: API_AUDIENCE, scopes: [API_SCOPE] },
    ],
  })
}

async function runScenario(environment: DemoEnvironment): Promise<void> {
  const { tokenService, api } = environment
  const userToken = await tokenService.issueUserToken({
    sub: 'alice',
    aud: CLIENT_ID,
    scope: 'openid profile orders',
    name: 'Alice Example',
    expiresInSeconds: 600,
  })
  const userClaims = decodeJwt(userToken)
  printHeading(`2. The signed-in user's token, as the agent holds it (${fingerprint(userToken)})`)
  printClaims(userClaims)

  await showDirectCallRejected(api, userToken)
  const first = await callThroughSidecar(environment, userToken, '/orders/42', '4. GET /orders/42 through the sidecar')
  printLine(`    The API received a different token (${first.fingerprint}) with these claims:`)
  printClaims(first.claims, claimNotes(userClaims, first.claims))
  checkExchangedClaims(userClaims, first.claims)
  expectEqual(tokenService.exchangeCount(), 1, 'token exchanges at the token service after the first call')

  const second = await callThroughSidecar(environment, userToken, '/orders/43', '5. GET /orders/43 through the sidecar again')
  expectEqual(second.fingerprint, first.fingerprint, 'fingerprint of the token the API received on the second call')
  expectEqual(tokenService.exchangeCount(), 1, 'token exchanges at the token service after the second call')
  printLine(`    Same exchanged token (${second.fingerprint}); the token service still counts 1 exchange.`)

  await showMetrics(environment.sidecar)
}

async function showDirectCallRejected(api: SampleApi, userToken: string): Promise<void> {
  printHeading('3. The agent calls the API directly with the user token')
  const response = await fetch(`${api.url}/orders/42`, {
    headers: { authorization: `Bearer ${userToken}` },
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  })
  const body = (await response.json()) as { message?: string }
  expectEqual(response.status, 401, 'status of a direct call with the user token')
  printLine(`    ${response.status}: ${body.message ?? 'no message'}`)
  printLine('    The user token was issued to the agent, not to the orders API, so the API rejects it.')
}

interface ProxiedCall {
  claims: JWTPayload
  fingerprint: string
}

async function callThroughSidecar(environment: DemoEnvironment, userToken: string, path: string, heading: string): Promise<ProxiedCall> {
  printHeading(heading)
  const response = await fetch(`${environment.api.url}${path}`, {
    dispatcher: environment.agent,
    headers: { authorization: `Bearer ${userToken}` },
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  })
  const body = await response.text()
  if (response.status !== 200) {
    throw new DemoFailure(`GET ${path} through the sidecar returned ${response.status}: ${body.slice(0, 500)}`)
  }
  printLine(`    200 from the API (${body.length} bytes of JSON)`)

  const received = environment.api.requests.at(-1)
  const token = /^Bearer (\S+)$/.exec(received?.authorization ?? '')?.[1]
  if (received?.path !== path || received.claims === undefined || token === undefined) {
    throw new DemoFailure(`the sample API did not record a verified request for ${path}`)
  }
  if (token === userToken) {
    throw new DemoFailure('the API received the user token itself: the sidecar did not swap the Authorization header')
  }
  return { claims: received.claims, fingerprint: fingerprint(token) }
}

function claimNotes(userClaims: JWTPayload, apiClaims: JWTPayload): Record<string, string> {
  const notes: Record<string, string> = {}
  for (const name of ['sub', 'aud', 'scope', 'act']) {
    const before = JSON.stringify(userClaims[name])
    const after = JSON.stringify(apiClaims[name])
    if (before === undefined) {
      notes[name] = 'added'
    } else if (before === after) {
      notes[name] = 'kept'
    } else {
      notes[name] = `was ${before}`
    }
  }
  notes.act = `added: ${CLIENT_ID} acts on behalf of ${String(apiClaims.sub)} (RFC 8693 section 4.1)`
  return notes
}

function checkExchangedClaims(userClaims: JWTPayload, apiClaims: JWTPayload): void {
  expectEqual(apiClaims.sub, userClaims.sub, 'sub of the exchanged token')
  expectEqual(apiClaims.aud, API_AUDIENCE, 'aud of the exchanged token')
  expectEqual(apiClaims.scope, API_SCOPE, 'scope of the exchanged token')
  expectEqual(JSON.stringify(apiClaims.act), JSON.stringify({ sub: CLIENT_ID }), 'act of the exchanged token')
}

async function showMetrics(sidecar: SidecarChild): Promise<void> {
  printHeading(`6. Sidecar metrics (${sidecar.adminUrl}/metrics)`)
  const response = await fetch(`${sidecar.adminUrl}/metrics`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) })
  const samples = parseMetrics(await response.text())

  const displayedMetrics = ['obo_sidecar_token_exchanges_total', 'obo_sidecar_token_cache_hits_total', 'obo_sidecar_token_cache_misses_total', 'obo_sidecar_proxy_requests_total']
  for (const sample of samples.filter((candidate) => displayedMetrics.includes(candidate.name))) {
    printLine(`    ${sample.line}`)
  }

  const exchanges = sumMetric(samples, 'obo_sidecar_token_exchanges_total')
  const cacheHits = sumMetric(samples, 'obo_sidecar_token_cache_hits_total')
  if (exchanges === undefined || cacheHits === undefined) {
    throw new DemoFailure('the sidecar /metrics output has no obo_sidecar_token_exchanges_total or obo_sidecar_token_cache_hits_total sample')
  }
  expectEqual(exchanges, 1, 'obo_sidecar_token_exchanges_total')
  if (cacheHits < 1) {
    throw new DemoFailure(`obo_sidecar_token_cache_hits_total is ${cacheHits}; expected the second call to be a cache hit`)
  }
  printLine(`    The second call was a cache hit: ${exchanges} exchange, ${cacheHits} cache hit(s).`)
}

function expectEqual(actual: unknown, expected: unknown, description: string): void {
  if (actual !== expected) {
    throw new DemoFailure(`${description} is ${JSON.stringify(actual)}; expected ${JSON.stringify(expected)}`)
  }
}

async function withTimeout<T>(work: Promise<T>, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new DemoFailure(`the demo did not finish within ${timeoutMs} ms`)), timeoutMs)
  })
  try {
    return await Promise.race([work, timeout])
  } finally {
    clearTimeout(timer)
  }
}

/** Joins an error's message with its causes', as undici's "fetch failed" hides the reason in `cause`. */
function describeError(error: unknown): string {
  const messages: string[] = []
  let current: unknown = error
  while (current instanceof Error && messages.length < 5) {
    messages.push(current.message)
    current = current.cause
  }
  if (messages.length === 0) {
    messages.push(typeof error === 'string' ? error : 'unknown error')
  }
  return messages.join(': ')
}

function reportFailure(error: unknown, sidecar: SidecarChild | undefined): void {
  process.stderr.write(`\nDemo failed: ${describeError(error)}\n`)
  if (sidecar !== undefined) {
    process.stderr.write(`\nLast sidecar output (JWTs and the client secret removed):\n${sidecar.outputTail()}\n`)
  }
}

async function runCleanup(cleanup: Cleanup): Promise<void> {
  for (const step of cleanup.reverse()) {
    try {
      await step()
    } catch (error) {
      process.stderr.write(`demo: cleanup step failed: ${describeError(error)}\n`)
    }
  }
}

const exitCode = await main()
process.exitCode = exitCode
// Everything is closed by now. Should a handle still hold the event loop, exit anyway.
setTimeout(() => process.exit(exitCode), 1000).unref()
