import t, { type Test } from 'tap'
import { writeFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { createRemoteJWKSet, decodeJwt, jwtVerify } from 'jose'
import { startTokenService } from '../../demo/token-service.js'
import { curlThroughProxy, fetchThroughProxy, proxyAgent } from '../helpers/clients.js'
import { startSidecarProcess, writeTempFile } from '../helpers/sidecar-process.js'
import { startUpstream } from '../helpers/upstream.js'

// RFC 6749 section 2.3.1 form-urlencodes the id and secret before Basic encoding; these
// characters are the ones that break implementations that skip that step.
const BASIC_SECRET = 'p+a/s:s%w0rd'
const POST_SECRET = 'po+st/se:cr%et'
const TOKEN_TTL_SECONDS = 3

const tokenService = await startTokenService({
  clients: [
    { clientId: 'agent-basic', clientSecret: BASIC_SECRET, authMethod: 'client_secret_basic' },
    { clientId: 'agent-post', clientSecret: POST_SECRET, authMethod: 'client_secret_post' },
  ],
  audiences: ['https://orders.example.com', 'https://billing.example.com'],
  scopes: ['orders.read', 'billing.read'],
  accessTokenTtlSeconds: TOKEN_TTL_SECONDS,
})
const upstream = await startUpstream()
const secretFile = writeTempFile('client-secret', `${BASIC_SECRET}\n`)
const routes = writeTempFile(
  'routes.yaml',
  `issuers:
  basic:
    tokenEndpoint: ${tokenService.tokenEndpoint}
    clientId: agent-basic
    clientAuth: client_secret_basic
    clientSecret: { file: ${secretFile} }
  post:
    tokenEndpoint: ${tokenService.tokenEndpoint}
    clientId: agent-post
    clientAuth: client_secret_post
    clientSecret: { env: POST_CLIENT_SECRET }
  entra-style:
    tokenEndpoint: ${tokenService.tokenEndpoint}
    grant: jwt-bearer
    clientId: agent-post
    clientAuth: client_secret_post
    clientSecret: { env: POST_CLIENT_SECRET }
routes:
  - name: orders
    host: ${upstream.authority}
    pathPrefix: /orders/
    issuer: basic
    audience: https://orders.example.com
    scopes: [orders.read]
  - name: billing
    host: ${upstream.authority}
    pathPrefix: /billing/
    issuer: basic
    audience: https://billing.example.com
    scopes: [billing.read]
  - name: orders-post
    host: ${upstream.authority}
    pathPrefix: /post/
    issuer: post
    audience: https://orders.example.com
    scopes: [orders.read]
  - name: orders-obo
    host: ${upstream.authority}
    pathPrefix: /obo/
    issuer: entra-style
    scopes: [orders.read]
`,
)
const sidecar = await startSidecarProcess(routes, ['--cache-expiry-skew', '1'], { POST_CLIENT_SECRET: POST_SECRET })
const agent = proxyAgent(sidecar.proxyUrl)
const jwks = createRemoteJWKSet(new URL(tokenService.jwksUri))
t.teardown(async () => {
  await agent.close()
  await sidecar.stop()
  await upstream.close()
  await tokenService.close()
})

function lastAuthorization(): string {
  return upstream.requests.at(-1)!.authorization.join(', ')
}

/** Verifies what the upstream received as a token from the token service, and returns its claims. */
async function verifyForwardedToken(authorization: string, audience: string) {
  const [scheme, token] = authorization.split(' ')
  const { payload } = await jwtVerify(token, jwks, { issuer: tokenService.issuer, audience })
  return { scheme, payload }
}

t.test('curl: RFC 8693 exchange with client_secret_basic', async (t) => {
  const userToken = await tokenService.issueUserToken({ sub: 'alice', aud: 'agent-basic' })
  const response = await curlThroughProxy(sidecar.proxyUrl, `http://${upstream.authority}/orders/42`, [
    '-H',
    `Authorization: Bearer ${userToken}`,
  ])
  t.equal(response.status, 200)
  const forwarded = lastAuthorization()
  t.not(forwarded, `Bearer ${userToken}`, 'the user token is not forwarded')
  t.notMatch(forwarded, userToken)
  const { scheme, payload } = await verifyForwardedToken(forwarded, 'https://orders.example.com')
  t.equal(scheme, 'Bearer')
  t.equal(payload.sub, 'alice', 'subject kept')
  t.equal(payload.scope, 'orders.read', 'scope from the route')
  t.same(payload.act, { sub: 'agent-basic' }, 'act names the sidecar client')
})

t.test('undici: client_secret_post with a secret from the environment', async (t) => {
  const userToken = await tokenService.issueUserToken({ sub: 'bob' })
  const response = await fetchThroughProxy(agent, `http://${upstream.authority}/post/1`, {
    headers: { authorization: `Bearer ${userToken}` },
  })
  t.equal(response.status, 200)
  const { payload } = await verifyForwardedToken(lastAuthorization(), 'https://orders.example.com')
  t.equal(payload.sub, 'bob')
  t.same(payload.act, { sub: 'agent-post' })
})

t.test('undici: RFC 7523 jwt-bearer on-behalf-of grant', async (t) => {
  const userToken = await tokenService.issueUserToken({ sub: 'carol' })
  const before = tokenService.exchangeCount()
  const response = await fetchThroughProxy(agent, `http://${upstream.authority}/obo/1`, {
    headers: { authorization: `Bearer ${userToken}` },
  })
  t.equal(response.status, 200)
  t.equal(tokenService.exchangeCount(), before + 1)
  const claims = decodeJwt(lastAuthorization().split(' ')[1])
  t.equal(claims.sub, 'carol')
  t.equal(claims.scope, 'orders.read')
})

t.test('cache: repeat call, other user, other audience', async (t) => {
  const dave = await tokenService.issueUserToken({ sub: 'dave' })
  const erin = await tokenService.issueUserToken({ sub: 'erin' })
  const call = (path: string, token: string) =>
    fetchThroughProxy(agent, `http://${upstream.authority}${path}`, { headers: { authorization: `Bearer ${token}` } })

  const exchangesBefore = tokenService.exchangeCount()
  const hitsBefore = await sidecar.metric('obo_sidecar_token_cache_hits_total')

  t.equal((await call('/orders/1', dave)).status, 200)
  const first = lastAuthorization()
  t.equal((await call('/orders/2', dave)).status, 200)
  t.equal(lastAuthorization(), first, 'repeat call reuses the exchanged token')
  t.equal(tokenService.exchangeCount(), exchangesBefore + 1, 'one exchange for two calls')
  t.equal(await sidecar.metric('obo_sidecar_token_cache_hits_total'), hitsBefore + 1, 'cache hit counted')

  t.equal((await call('/orders/3', erin)).status, 200)
  t.not(lastAuthorization(), first, 'another user gets another token')
  t.equal(tokenService.exchangeCount(), exchangesBefore + 2)

  t.equal((await call('/billing/1', dave)).status, 200)
  const billing = await verifyForwardedToken(lastAuthorization(), 'https://billing.example.com')
  t.equal(billing.payload.sub, 'dave')
  t.equal(tokenService.exchangeCount(), exchangesBefore + 3, 'another audience is another exchange')
  t.ok((await sidecar.metric('obo_sidecar_token_cache_entries')) >= 3, 'the cache gauge counts the entries')
  t.ok((await sidecar.metric('obo_sidecar_token_cache_bytes')) > 3 * 256, 'and their estimated size')
})

t.test('cache: entries expire with the issued token', async (t) => {
  const userToken = await tokenService.issueUserToken({ sub: 'frank' })
  const call = () =>
    fetchThroughProxy(agent, `http://${upstream.authority}/orders/1`, { headers: { authorization: `Bearer ${userToken}` } })
  const before = tokenService.exchangeCount()
  await call()
  await call()
  t.equal(tokenService.exchangeCount(), before + 1)
  // Issued tokens live 3 s and the skew is 1 s, so the entry is gone after 2 s.
  await sleep((TOKEN_TTL_SECONDS - 1) * 1000 + 300)
  t.equal((await call()).status, 200)
  t.equal(tokenService.exchangeCount(), before + 2, 'expired entry is exchanged again')
})

t.test('cache: entries never outlive the user token', async (t) => {
  const userToken = await tokenService.issueUserToken({ sub: 'grace', expiresInSeconds: 2 })
  const call = () =>
    fetchThroughProxy(agent, `http://${upstream.authority}/orders/1`, { headers: { authorization: `Bearer ${userToken}` } })
  t.equal((await call()).status, 200)
  await sleep(2300)
  const response = await call()
  t.equal(response.status, 401, 'the expired user token is sent to the IdP, which rejects it')
  t.equal(response.headers['www-authenticate'], 'Bearer error="invalid_token"')
  t.equal(JSON.parse(response.body).error, 'invalid_grant')
})

t.test('50 concurrent cold requests make one exchange', async (t) => {
  const userToken = await tokenService.issueUserToken({ sub: 'heidi' })
  const before = tokenService.exchangeCount()
  const responses = await Promise.all(
    Array.from({ length: 50 }, (_, i) =>
      fetchThroughProxy(agent, `http://${upstream.authority}/orders/${i}`, { headers: { authorization: `Bearer ${userToken}` } }),
    ),
  )
  t.ok(responses.every((response) => response.status === 200), 'all 50 succeed')
  t.equal(tokenService.exchangeCount(), before + 1, 'exactly one exchange')
  const tokens = new Set(upstream.requests.slice(-50).map((request) => request.authorization[0]))
  t.equal(tokens.size, 1, 'all 50 carry the same exchanged token')
})

/**
 * Starts a second sidecar with a one-route file for the upstream, for cases that need an issuer
 * configured differently from the shared sidecar's. `call(sub)` sends one request as that user.
 */
async function startSeparateSidecar(t: Test, issuerLines: string, audience: string, env: NodeJS.ProcessEnv = {}) {
  const file = writeTempFile(
    'routes.yaml',
    `issuers:
  basic:
    tokenEndpoint: ${tokenService.tokenEndpoint}
    clientId: agent-basic
${issuerLines}
routes:
  - host: ${upstream.authority}
    issuer: basic
    audience: ${audience}
`,
  )
  const other = await startSidecarProcess(file, [], env)
  const otherAgent = proxyAgent(other.proxyUrl)
  t.teardown(async () => {
    await otherAgent.close()
    await other.stop()
  })
  return {
    logs: other.stdoutLines,
    call: async (sub: string) =>
      fetchThroughProxy(otherAgent, `http://${upstream.authority}/x`, {
        headers: { authorization: `Bearer ${await tokenService.issueUserToken({ sub })}` },
      }),
  }
}

t.test('invalid_target from the IdP becomes 403', async (t) => {
  const other = await startSeparateSidecar(t, `    clientSecret: { file: ${secretFile} }`, 'https://payroll.example.com')
  const response = await other.call('ivan')
  t.equal(response.status, 403)
  t.equal(JSON.parse(response.body).error, 'invalid_target')
})

t.test('wrong client secret becomes 502 invalid_client', async (t) => {
  const other = await startSeparateSidecar(t, '    clientSecret: { env: WRONG_SECRET }', 'https://orders.example.com', {
    WRONG_SECRET: 'not-the-secret',
  })
  const response = await other.call('judy')
  t.equal(response.status, 502)
  t.equal(JSON.parse(response.body).error, 'invalid_client')
  t.notMatch(other.logs.join('\n'), 'not-the-secret', 'secret not logged')
})

t.test('rotated secret and actor token files are re-read', async (t) => {
  const rotatingSecret = writeTempFile('client-secret', 'stale-secret')
  const actorFile = writeTempFile('actor-token', await tokenService.issueUserToken({ sub: 'workload-1' }))
  const other = await startSeparateSidecar(
    t,
    `    clientSecret: { file: ${rotatingSecret} }
    actorToken: { file: ${actorFile}, type: urn:ietf:params:oauth:token-type:jwt }`,
    'https://orders.example.com',
  )
  t.equal((await other.call('kate')).status, 502, 'the stale secret is rejected')

  // Kubernetes updates mounted Secrets and projected tokens in place; no restart is needed.
  writeFileSync(rotatingSecret, BASIC_SECRET)
  t.equal((await other.call('kate')).status, 200, 'the rotated secret is used')
  t.same(decodeJwt(lastAuthorization().split(' ')[1]).act, { sub: 'workload-1' }, 'act names the actor token subject')

  writeFileSync(actorFile, await tokenService.issueUserToken({ sub: 'workload-2', name: 'a longer token' }))
  t.equal((await other.call('liam')).status, 200)
  t.same(decodeJwt(lastAuthorization().split(' ')[1]).act, { sub: 'workload-2' }, 'the rotated actor token is used')
})

t.test('audit log: one line per exchange, without tokens', async (t) => {
  const userToken = await tokenService.issueUserToken({ sub: 'mallory' })
  const exchangedBefore = sidecar.stdoutLines.filter((line) => line.includes('"token exchanged"')).length
  for (let i = 0; i < 3; i++) {
    await fetchThroughProxy(agent, `http://${upstream.authority}/orders/1`, { headers: { authorization: `Bearer ${userToken}` } })
  }
  const forwardedToken = lastAuthorization().split(' ')[1]
  // pino writes asynchronously; give the line a moment to arrive.
  await sleep(200)
  const audit = sidecar.stdoutLines
    .filter((line) => line.includes('"token exchanged"'))
    .slice(exchangedBefore)
    .map((line) => JSON.parse(line) as Record<string, unknown>)
  t.equal(audit.length, 1, 'three calls, one exchange, one audit line')
  t.equal(audit[0].route, 'orders')
  t.equal(audit[0].issuer, 'basic')
  t.equal(audit[0].sub, 'mallory')
  t.equal(audit[0].act, 'agent-basic')
  t.equal(audit[0].outcome, 'success')
  t.equal(audit[0].cache, 'miss')
  t.match(audit[0].subject_fingerprint, /^[0-9a-f]{12}$/)

  const output = sidecar.stdoutLines.join('\n') + sidecar.stderr()
  t.notMatch(output, userToken, 'no user token in logs')
  t.notMatch(output, forwardedToken, 'no exchanged token in logs')
  t.notMatch(output, BASIC_SECRET, 'no client secret in logs')
  t.notMatch(output, POST_SECRET, 'no client secret in logs')
})
