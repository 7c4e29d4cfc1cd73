import { Buffer } from 'node:buffer'
import t from 'tap'
import { createRemoteJWKSet, decodeProtectedHeader, jwtVerify } from 'jose'
import type { JWTPayload } from 'jose'
import {
  ACCESS_TOKEN_TYPE,
  JWT_BEARER_GRANT,
  JWT_TOKEN_TYPE,
  TOKEN_EXCHANGE_GRANT,
  startTokenService,
} from '../demo/token-service.js'
import type { TokenService } from '../demo/token-service.js'
import { startSampleApi } from '../demo/sample-api.js'

const ORDERS = 'https://orders.example.com'
const BILLING = 'https://billing.example.com'
const PLAIN_SECRET = 'plain-secret-0123456789'
// Every character that RFC 6749 section 2.3.1 form-urlencoding changes before Base64.
const AWKWARD_SECRET = 'a+b/c:d%e f=g&h'

interface TokenResponse {
  status: number
  headers: Headers
  body: Record<string, unknown>
}

/** Encodes one value as application/x-www-form-urlencoded, which RFC 6749 section 2.3.1 requires for Basic credentials. */
function formEncode(value: string): string {
  return new URLSearchParams({ value }).toString().slice('value='.length)
}

function basicAuthorization(clientId: string, secret: string): string {
  return `Basic ${Buffer.from(`${formEncode(clientId)}:${formEncode(secret)}`).toString('base64')}`
}

async function postToken(service: TokenService, params: Array<[string, string]>, authorization?: string): Promise<TokenResponse> {
  const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded' }
  if (authorization !== undefined) {
    headers.authorization = authorization
  }
  const response = await fetch(service.tokenEndpoint, { method: 'POST', headers, body: new URLSearchParams(params) })
  return { status: response.status, headers: response.headers, body: (await response.json()) as Record<string, unknown> }
}

function exchangeParams(subjectToken: string, extra: Array<[string, string]> = []): Array<[string, string]> {
  return [
    ['grant_type', TOKEN_EXCHANGE_GRANT],
    ['subject_token', subjectToken],
    ['subject_token_type', ACCESS_TOKEN_TYPE],
    ...extra,
  ]
}

async function verifyIssued(service: TokenService, token: unknown, audience: string): Promise<JWTPayload> {
  if (typeof token !== 'string') {
    throw new Error('access_token is missing from the token response')
  }
  const jwks = createRemoteJWKSet(new URL(service.jwksUri))
  const { payload } = await jwtVerify(token, jwks, { issuer: service.issuer, audience })
  return payload
}

const service = await startTokenService({
  clients: [
    { clientId: 'orders-agent', clientSecret: PLAIN_SECRET, authMethod: 'client_secret_basic' },
    { clientId: 'awkward-agent', clientSecret: AWKWARD_SECRET, authMethod: 'client_secret_basic' },
    { clientId: 'post-agent', clientSecret: PLAIN_SECRET, authMethod: 'client_secret_post' },
    { clientId: 'public-agent', authMethod: 'none' },
  ],
  audiences: [ORDERS, BILLING],
  scopes: ['orders.read', 'orders.write', 'billing.read'],
  accessTokenTtlSeconds: 120,
})
t.teardown(() => service.close())

const ordersAuthorization = basicAuthorization('orders-agent', PLAIN_SECRET)

void t.test('token exchange issues a delegated token', async (t) => {
  const userToken = await service.issueUserToken({ sub: 'alice', aud: 'orders-agent', scope: 'openid profile' })
  const before = service.exchangeCount()

  const response = await postToken(
    service,
    exchangeParams(userToken, [['audience', ORDERS], ['scope', 'orders.read']]),
    ordersAuthorization,
  )

  t.equal(response.status, 200)
  t.equal(response.headers.get('cache-control'), 'no-store')
  t.equal(response.body.issued_token_type, ACCESS_TOKEN_TYPE)
  t.equal(response.body.token_type, 'Bearer')
  t.equal(response.body.expires_in, 120)
  t.equal(response.body.scope, 'orders.read')
  t.equal(service.exchangeCount(), before + 1)

  const claims = await verifyIssued(service, response.body.access_token, ORDERS)
  t.equal(claims.iss, service.issuer)
  t.equal(claims.sub, 'alice')
  t.equal(claims.aud, ORDERS)
  t.equal(claims.scope, 'orders.read')
  t.equal(claims.client_id, 'orders-agent')
  t.same(claims.act, { sub: 'orders-agent' })
  t.type(claims.jti, 'string')
  t.equal((claims.exp ?? 0) - (claims.iat ?? 0), 120)
  t.equal(decodeProtectedHeader(response.body.access_token as string).typ, 'at+jwt')
})

void t.test('token exchange with an actor token', async (t) => {
  const userToken = await service.issueUserToken({ sub: 'alice' })
  const actorToken = await service.issueUserToken({ sub: 'agent-workload-7' })

  const response = await postToken(
    service,
    exchangeParams(userToken, [['audience', ORDERS], ['actor_token', actorToken], ['actor_token_type', JWT_TOKEN_TYPE]]),
    ordersAuthorization,
  )

  t.equal(response.status, 200)
  const claims = await verifyIssued(service, response.body.access_token, ORDERS)
  t.equal(claims.sub, 'alice')
  t.same(claims.act, { sub: 'agent-workload-7' })
  t.notOk('scope' in response.body, 'no scope was requested, so none is returned')
})

void t.test('token exchange nests an earlier actor', async (t) => {
  const userToken = await service.issueUserToken({ sub: 'alice', act: { sub: 'front-end' } })

  const response = await postToken(service, exchangeParams(userToken, [['audience', ORDERS]]), ordersAuthorization)

  t.equal(response.status, 200)
  const claims = await verifyIssued(service, response.body.access_token, ORDERS)
  t.same(claims.act, { sub: 'orders-agent', act: { sub: 'front-end' } })
})

void t.test('token exchange target selection', async (t) => {
  const userToken = await service.issueUserToken({ sub: 'alice' })

  const both = await postToken(
    service,
    exchangeParams(userToken, [['audience', ORDERS], ['audience', BILLING]]),
    ordersAuthorization,
  )
  t.equal(both.status, 200)
  t.same((await verifyIssued(service, both.body.access_token, ORDERS)).aud, [ORDERS, BILLING])

  const byResource = await postToken(service, exchangeParams(userToken, [['resource', BILLING]]), ordersAuthorization)
  t.equal(byResource.status, 200)
  t.equal((await verifyIssued(service, byResource.body.access_token, BILLING)).aud, BILLING)

  const byDefault = await postToken(service, exchangeParams(userToken), ordersAuthorization)
  t.equal(byDefault.status, 200)
  t.equal((await verifyIssued(service, byDefault.body.access_token, ORDERS)).aud, ORDERS, 'first allowed audience')
})

void t.test('jwt-bearer on-behalf-of', async (t) => {
  const userToken = await service.issueUserToken({ sub: 'bob' })
  const before = service.exchangeCount()

  const response = await postToken(
    service,
    [
      ['grant_type', JWT_BEARER_GRANT],
      ['assertion', userToken],
      ['requested_token_use', 'on_behalf_of'],
      ['scope', `${BILLING}/billing.read`],
    ],
    ordersAuthorization,
  )

  t.equal(response.status, 200)
  t.notOk('issued_token_type' in response.body, 'Entra omits issued_token_type')
  t.equal(response.body.token_type, 'Bearer')
  t.equal(response.body.expires_in, 120)
  t.equal(response.body.scope, 'billing.read')
  t.equal(service.exchangeCount(), before + 1)

  const claims = await verifyIssued(service, response.body.access_token, BILLING)
  t.equal(claims.sub, 'bob')
  t.equal(claims.scope, 'billing.read')
  t.same(claims.act, { sub: 'orders-agent' })
})

void t.test('jwt-bearer rejects other requested_token_use', async (t) => {
  const userToken = await service.issueUserToken({ sub: 'bob' })
  const params: Array<[string, string]> = [
    ['grant_type', JWT_BEARER_GRANT],
    ['assertion', userToken],
    ['scope', 'orders.read'],
  ]

  const missing = await postToken(service, params, ordersAuthorization)
  t.equal(missing.status, 400)
  t.equal(missing.body.error, 'invalid_request')

  const other = await postToken(service, [...params, ['requested_token_use', 'something_else']], ordersAuthorization)
  t.equal(other.status, 400)
  t.equal(other.body.error, 'invalid_request')
})

void t.test('jwt-bearer rejects an expired assertion', async (t) => {
  const expired = await service.issueUserToken({ sub: 'bob', expiresInSeconds: -60 })

  const response = await postToken(
    service,
    [
      ['grant_type', JWT_BEARER_GRANT],
      ['assertion', expired],
      ['requested_token_use', 'on_behalf_of'],
      ['scope', 'orders.read'],
    ],
    ordersAuthorization,
  )

  t.equal(response.status, 400)
  t.equal(response.body.error, 'invalid_grant')
})

void t.test('client_secret_post authenticates', async (t) => {
  const userToken = await service.issueUserToken({ sub: 'alice' })

  const response = await postToken(
    service,
    exchangeParams(userToken, [['client_id', 'post-agent'], ['client_secret', PLAIN_SECRET], ['audience', ORDERS]]),
  )

  t.equal(response.status, 200)
  t.equal((await verifyIssued(service, response.body.access_token, ORDERS)).client_id, 'post-agent')
})

void t.test('client_secret_basic with reserved characters', async (t) => {
  const userToken = await service.issueUserToken({ sub: 'alice' })

  const encoded = await postToken(
    service,
    exchangeParams(userToken, [['audience', ORDERS]]),
    basicAuthorization('awkward-agent', AWKWARD_SECRET),
  )
  t.equal(encoded.status, 200, 'form-urlencoded id and secret are accepted')

  const raw = `Basic ${Buffer.from(`awkward-agent:${AWKWARD_SECRET}`).toString('base64')}`
  const unencoded = await postToken(service, exchangeParams(userToken, [['audience', ORDERS]]), raw)
  t.not(unencoded.status, 200, 'a secret sent without form-urlencoding is rejected')
})

void t.test('public client authenticates with none', async (t) => {
  const userToken = await service.issueUserToken({ sub: 'alice' })

  const response = await postToken(service, exchangeParams(userToken, [['client_id', 'public-agent'], ['audience', ORDERS]]))

  t.equal(response.status, 200)
  const claims = await verifyIssued(service, response.body.access_token, ORDERS)
  t.same(claims.act, { sub: 'public-agent' })
})

void t.test('expired subject token is invalid_grant', async (t) => {
  const expired = await service.issueUserToken({ sub: 'alice', expiresInSeconds: -60 })
  const before = service.exchangeCount()

  const response = await postToken(service, exchangeParams(expired, [['audience', ORDERS]]), ordersAuthorization)

  t.equal(response.status, 400)
  t.equal(response.body.error, 'invalid_grant')
  t.notOk(String(response.body.error_description).includes(expired), 'description does not echo the token')
  t.equal(service.exchangeCount(), before)
})

void t.test('foreign signature is invalid_grant', async (t) => {
  const other = await startTokenService({ clients: [{ clientId: 'x', authMethod: 'none' }] })
  t.teardown(() => other.close())
  const foreign = await other.issueUserToken({ sub: 'alice' })

  const response = await postToken(service, exchangeParams(foreign, [['audience', ORDERS]]), ordersAuthorization)

  t.equal(response.status, 400)
  t.equal(response.body.error, 'invalid_grant')
})

void t.test('rejectedSubjectError selects invalid_request', async (t) => {
  const strict = await startTokenService({
    clients: [{ clientId: 'public-agent', authMethod: 'none' }],
    rejectedSubjectError: 'invalid_request',
  })
  t.teardown(() => strict.close())
  const expired = await strict.issueUserToken({ sub: 'alice', expiresInSeconds: -60 })

  const response = await postToken(strict, exchangeParams(expired, [['client_id', 'public-agent'], ['audience', ORDERS]]))

  t.equal(response.status, 400)
  t.equal(response.body.error, 'invalid_request')
})

void t.test('wrong secret is invalid_client', async (t) => {
  const userToken = await service.issueUserToken({ sub: 'alice' })
  const before = service.tokenRequestCount()

  const response = await postToken(
    service,
    exchangeParams(userToken, [['audience', ORDERS]]),
    basicAuthorization('orders-agent', 'not-the-secret'),
  )

  t.equal(response.status, 401)
  t.equal(response.body.error, 'invalid_client')
  t.match(response.headers.get('www-authenticate') ?? '', /^Basic /)
  t.equal(service.tokenRequestCount(), before, 'a request failing client authentication is not counted')
})

void t.test('secret sent by the other method is invalid_client', async (t) => {
  const userToken = await service.issueUserToken({ sub: 'alice' })

  const postForBasicClient = await postToken(
    service,
    exchangeParams(userToken, [['client_id', 'orders-agent'], ['client_secret', PLAIN_SECRET], ['audience', ORDERS]]),
  )
  t.equal(postForBasicClient.status, 401)
  t.equal(postForBasicClient.body.error, 'invalid_client')

  const basicForPostClient = await postToken(
    service,
    exchangeParams(userToken, [['audience', ORDERS]]),
    basicAuthorization('post-agent', PLAIN_SECRET),
  )
  t.equal(basicForPostClient.status, 401)
  t.equal(basicForPostClient.body.error, 'invalid_client')
})

void t.test('disallowed targets and scopes', async (t) => {
  const userToken = await service.issueUserToken({ sub: 'alice' })
  const before = service.exchangeCount()

  const audience = await postToken(
    service,
    exchangeParams(userToken, [['audience', 'https://payroll.example.com']]),
    ordersAuthorization,
  )
  t.equal(audience.status, 400)
  t.equal(audience.body.error, 'invalid_target')

  const resource = await postToken(
    service,
    exchangeParams(userToken, [['resource', 'https://payroll.example.com/']]),
    ordersAuthorization,
  )
  t.equal(resource.status, 400)
  t.equal(resource.body.error, 'invalid_target')

  const scope = await postToken(
    service,
    exchangeParams(userToken, [['audience', ORDERS], ['scope', 'orders.read orders.delete']]),
    ordersAuthorization,
  )
  t.equal(scope.status, 400)
  t.equal(scope.body.error, 'invalid_scope')

  t.equal(service.exchangeCount(), before)
})

void t.test('malformed token exchange requests', async (t) => {
  const userToken = await service.issueUserToken({ sub: 'alice' })
  const cases: Array<{ name: string; params: Array<[string, string]> }> = [
    { name: 'missing subject_token', params: [['grant_type', TOKEN_EXCHANGE_GRANT], ['subject_token_type', ACCESS_TOKEN_TYPE]] },
    { name: 'missing subject_token_type', params: [['grant_type', TOKEN_EXCHANGE_GRANT], ['subject_token', userToken]] },
    { name: 'unknown subject_token_type', params: [...exchangeParams(userToken).slice(0, 2), ['subject_token_type', 'urn:example:saml']] },
    { name: 'actor_token without type', params: exchangeParams(userToken, [['actor_token', userToken]]) },
    { name: 'actor_token_type without token', params: exchangeParams(userToken, [['actor_token_type', JWT_TOKEN_TYPE]]) },
    { name: 'repeated subject_token', params: exchangeParams(userToken, [['subject_token', userToken]]) },
    { name: 'unsupported requested_token_type', params: exchangeParams(userToken, [['requested_token_type', 'urn:example:other']]) },
  ]

  for (const { name, params } of cases) {
    const response = await postToken(service, params, ordersAuthorization)
    t.equal(response.status, 400, name)
    t.equal(response.body.error, 'invalid_request', name)
  }
})

void t.test('startTokenService rejects a client without secret', async (t) => {
  await t.rejects(
    startTokenService({ clients: [{ clientId: 'orders-agent', authMethod: 'client_secret_basic' }] }),
    /has no clientSecret/,
  )
})

// The sample API is the token service's resource server in the demo: it checks issued tokens
// against the JWKS endpoint served here.
void t.test('sample API verifies issued tokens', async (t) => {
  const api = await startSampleApi({ jwksUri: service.jwksUri, issuer: service.issuer, audience: ORDERS })
  t.teardown(() => api.close())
  const userToken = await service.issueUserToken({ sub: 'alice', aud: 'orders-agent' })
  const exchanged = await postToken(service, exchangeParams(userToken, [['audience', ORDERS], ['scope', 'orders.read']]), ordersAuthorization)
  const accessToken = String(exchanged.body.access_token)

  const accepted = await fetch(`${api.url}/orders/7?view=full`, { headers: { authorization: `Bearer ${accessToken}` } })
  const body = (await accepted.json()) as { path: string; claims: JWTPayload }
  t.equal(accepted.status, 200)
  t.equal(body.path, '/orders/7?view=full')
  t.equal(body.claims.sub, 'alice')
  t.same(body.claims.act, { sub: 'orders-agent' })

  const wrongAudience = await fetch(`${api.url}/orders/7`, { headers: { authorization: `Bearer ${userToken}` } })
  t.equal(wrongAudience.status, 401)
  t.match(wrongAudience.headers.get('www-authenticate') ?? '', /error="invalid_token"/)
  t.match(await wrongAudience.json(), { error: 'invalid_token' })

  const missing = await fetch(`${api.url}/orders/7`)
  t.equal(missing.status, 401)
  t.notMatch(missing.headers.get('www-authenticate') ?? '', /error=/, 'RFC 6750 section 3.1: no error code without credentials')
  await missing.body?.cancel()

  t.equal(api.requests.length, 3)
  t.equal(api.requests[0]?.authorization, `Bearer ${accessToken}`)
  t.equal(api.requests[0]?.claims?.sub, 'alice')
  t.equal(api.requests[1]?.claims, undefined, 'a rejected request records no claims')
  t.equal(api.requests[2]?.authorization, undefined)
})

void t.test('sample API streams events and uploads', async (t) => {
  const api = await startSampleApi({ jwksUri: service.jwksUri, issuer: service.issuer, audience: ORDERS })
  t.teardown(() => api.close())
  const token = await service.issueUserToken({ sub: 'alice', aud: ORDERS })
  const authorization = `Bearer ${token}`

  const events = await fetch(`${api.url}/events?count=3&intervalMs=200`, { headers: { authorization } })
  t.equal(events.status, 200)
  t.equal(events.headers.get('content-type'), 'text/event-stream')
  const received: Array<{ sequence: number; sentAt: number; receivedAt: number }> = []
  const decoder = new TextDecoder()
  let buffered = ''
  if (events.body === null) {
    throw new Error('the event stream has no body')
  }
  for await (const chunk of events.body) {
    buffered += decoder.decode(chunk as Uint8Array, { stream: true })
    for (let end = buffered.indexOf('\n\n'); end !== -1; end = buffered.indexOf('\n\n')) {
      const data = /^data: (.*)$/m.exec(buffered.slice(0, end))?.[1] ?? '{}'
      received.push({ ...(JSON.parse(data) as { sequence: number; sentAt: number }), receivedAt: Date.now() })
      buffered = buffered.slice(end + 2)
    }
  }
  t.same(received.map((event) => event.sequence), [1, 2, 3])
  const first = received[0]
  const last = received[2]
  t.ok(first !== undefined && last !== undefined && first.receivedAt < last.sentAt, 'the first event arrives before the last is sent')

  const size = 3 * 1024 * 1024 + 17
  const upload = await fetch(`${api.url}/upload`, { method: 'POST', headers: { authorization }, body: new Uint8Array(size) })
  t.equal(upload.status, 200)
  t.same(await upload.json(), { bytes: size })

  const unauthorized = await fetch(`${api.url}/upload`, { method: 'POST', body: new Uint8Array(1024) })
  t.equal(unauthorized.status, 401)
  await unauthorized.body?.cancel()
})

void t.test('token service is quiet by default', async (t) => {
  const calls = ['log', 'info', 'warn', 'error'].map((method) => t.capture(console, method as 'log'))

  const quiet = await startTokenService({ clients: [{ clientId: 'public-agent', authMethod: 'none' }], audiences: [ORDERS] })
  t.teardown(() => quiet.close())
  const userToken = await quiet.issueUserToken({ sub: 'alice' })
  const issued = await postToken(quiet, exchangeParams(userToken, [['client_id', 'public-agent']]))
  const rejected = await postToken(quiet, exchangeParams('not-a-jwt', [['client_id', 'public-agent']]))

  t.equal(issued.status, 200)
  t.equal(rejected.status, 400)
  t.same(calls.flatMap((results) => results()), [], 'nothing written to the console')
})

void t.test('log option reports without tokens', async (t) => {
  const lines: string[] = []
  const logged = await startTokenService({
    clients: [{ clientId: 'public-agent', authMethod: 'none' }],
    audiences: [ORDERS],
    log: (line) => lines.push(line),
  })
  t.teardown(() => logged.close())
  const userToken = await logged.issueUserToken({ sub: 'alice' })
  const expired = await logged.issueUserToken({ sub: 'alice', expiresInSeconds: -60 })

  const issued = await postToken(logged, exchangeParams(userToken, [['client_id', 'public-agent']]))
  await postToken(logged, exchangeParams(expired, [['client_id', 'public-agent']]))

  t.equal(lines.length, 2)
  t.match(lines[0], /issued a token for sub=alice aud=https:\/\/orders\.example\.com client=public-agent/)
  t.match(lines[1], /rejected a token request from public-agent: invalid_grant/)
  for (const secret of [userToken, expired, String(issued.body.access_token)]) {
    t.notOk(lines.some((line) => line.includes(secret)), 'no log line contains a token')
  }
})
