import { Buffer } from 'node:buffer'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { Agent } from 'undici'
import { SecretReader } from '../../src/config/secrets.js'
import { ACCESS_TOKEN_TYPE, type IssuerConfig } from '../../src/config/types.js'
import { ExchangeError } from '../../src/errors.js'
import { TokenExchanger, type TokenExchangerOptions } from '../../src/exchange/client.js'

const SUBJECT_TOKEN = 'SENTINEL-subject-token-2b9c41d7e0'
const CLIENT_SECRET = 'SENTINEL-client-secret-88f1'
const SECRET_VARIABLE = 'OBO_TEST_CLIENT_SECRET'

interface ReceivedRequest {
  method: string | undefined
  path: string | undefined
  headers: IncomingMessage['headers']
  body: string
}

/**
 * A loopback token endpoint whose behaviour is chosen by path, for the failure modes a real IdP
 * cannot be made to show on demand.
 */
interface MockIdp {
  server: Server
  port: number
  received: ReceivedRequest[]
}

type Behaviour = (response: ServerResponse) => void

const behaviours: Record<string, Behaviour> = {
  '/token': (response) => {
    response.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' })
    response.end(JSON.stringify({ access_token: 'issued-token', token_type: 'Bearer', expires_in: 600, scope: 'orders:read' }))
  },
  '/invalid-grant': (response) => {
    response.writeHead(400, { 'content-type': 'application/json' })
    response.end(JSON.stringify({ error: 'invalid_grant', error_description: `expired: ${SUBJECT_TOKEN}` }))
  },
  '/hang': () => {
    // Sends no response, so only the client's deadline ends the request.
  },
  '/hang-body': (response) => {
    response.writeHead(200, { 'content-type': 'application/json' })
    response.write('{"access_token":')
  },
  '/large-chunked': (response) => {
    response.writeHead(200, { 'content-type': 'application/json' })
    for (let i = 0; i < 4; i += 1) response.write('x'.repeat(1024))
    response.end()
  },
  '/large-declared': (response) => {
    const body = 'x'.repeat(4096)
    response.writeHead(200, { 'content-type': 'application/json', 'content-length': String(body.length) })
    response.end(body)
  },
  '/redirect': (response) => {
    response.writeHead(302, { location: '/token' })
    response.end()
  },
}

async function startMockIdp(t: Test): Promise<MockIdp> {
  const received: ReceivedRequest[] = []
  const server = createServer((request, response) => {
    const chunks: Buffer[] = []
    request.on('data', (chunk: Buffer) => chunks.push(chunk))
    request.on('end', () => {
      received.push({ method: request.method, path: request.url, headers: request.headers, body: Buffer.concat(chunks).toString() })
      const behaviour = behaviours[request.url ?? '']
      if (behaviour === undefined) {
        response.writeHead(404).end()
        return
      }
      behaviour(response)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return { server, port: (server.address() as AddressInfo).port, received }
}

function issuerAt(port: number, path: string, overrides: Partial<IssuerConfig> = {}): IssuerConfig {
  return {
    name: 'corp',
    tokenEndpoint: new URL(`http://127.0.0.1:${port}${path}`),
    grant: 'token-exchange',
    clientId: 'sidecar',
    clientAuth: 'client_secret_basic',
    clientSecret: { kind: 'env', name: SECRET_VARIABLE },
    subjectTokenType: ACCESS_TOKEN_TYPE,
    actorToken: undefined,
    requestedTokenType: undefined,
    ...overrides,
  }
}

function exchangerFor(t: Test, options: Partial<TokenExchangerOptions> = {}): TokenExchanger {
  const exchanger = new TokenExchanger({
    timeoutMs: 2000,
    defaultLifetimeSeconds: 300,
    secrets: new SecretReader(),
    ...options,
  })
  t.teardown(() => exchanger.close())
  return exchanger
}

function exchangeAt(exchanger: TokenExchanger, issuer: IssuerConfig) {
  return exchanger.exchange({ issuer, subjectToken: SUBJECT_TOKEN, audience: ['orders-api'], resource: [], scopes: ['orders:read'] })
}

/** Asserts that no message in the error or its cause chain contains a token or secret. */
function assertNoSecrets(t: Test, error: unknown): void {
  let current: unknown = error
  for (let depth = 0; current instanceof Error && depth < 5; depth += 1) {
    t.notMatch(current.message, /SENTINEL/, `message at depth ${depth} has no token or secret`)
    current = current.cause
  }
}

async function expectExchangeError(t: Test, promise: Promise<unknown>): Promise<ExchangeError> {
  try {
    await promise
  } catch (error) {
    assertNoSecrets(t, error)
    if (error instanceof ExchangeError) return error
    throw error
  }
  throw new Error('expected the exchange to fail')
}

process.env[SECRET_VARIABLE] = CLIENT_SECRET
t.teardown(() => {
  delete process.env[SECRET_VARIABLE]
})

void t.test('successful exchange', async (t) => {
  const idp = await startMockIdp(t)
  const before = Date.now()
  const token = await exchangeAt(exchangerFor(t), issuerAt(idp.port, '/token'))

  t.equal(token.accessToken, 'issued-token')
  t.equal(token.tokenType, 'Bearer')
  t.equal(token.scope, 'orders:read')
  t.ok(token.expiresAt >= before + 600_000 && token.expiresAt <= Date.now() + 600_000, 'expiresAt counts from receipt')

  t.equal(idp.received.length, 1)
  const [request] = idp.received
  t.equal(request?.method, 'POST')
  t.equal(request?.headers['content-type'], 'application/x-www-form-urlencoded')
  t.equal(request?.headers.accept, 'application/json')
  t.equal(
    request?.headers.authorization,
    `Basic ${Buffer.from(`sidecar:${CLIENT_SECRET}`).toString('base64')}`,
  )
  const form = new URLSearchParams(request?.body)
  t.equal(form.get('subject_token'), SUBJECT_TOKEN)
  t.equal(form.get('audience'), 'orders-api')
})

void t.test('connections are reused', async (t) => {
  const idp = await startMockIdp(t)
  const ports = new Set<number | undefined>()
  idp.server.on('request', (request: IncomingMessage) => ports.add(request.socket.remotePort))
  const exchanger = exchangerFor(t)

  // undici may open a second connection when the next request starts before the previous one's
  // connection is marked idle, so the check is for reuse, not for exactly one connection.
  const exchanges = 5
  for (let i = 0; i < exchanges; i += 1) await exchangeAt(exchanger, issuerAt(idp.port, '/token'))
  t.ok(ports.size < exchanges, `${exchanges} sequential exchanges used ${ports.size} connections`)
})

void t.test('OAuth error response is classified', async (t) => {
  const idp = await startMockIdp(t)
  const error = await expectExchangeError(t, exchangeAt(exchangerFor(t), issuerAt(idp.port, '/invalid-grant')))

  t.equal(error.code, 'OBO_EXCHANGE_SUBJECT_REJECTED')
  t.equal(error.statusCode, 401)
  t.equal(error.idpError, 'invalid_grant')
})

void t.test('server that never answers times out', async (t) => {
  const idp = await startMockIdp(t)
  const started = Date.now()
  const error = await expectExchangeError(t, exchangeAt(exchangerFor(t, { timeoutMs: 200 }), issuerAt(idp.port, '/hang')))
  const elapsed = Date.now() - started

  t.equal(error.code, 'OBO_EXCHANGE_TIMEOUT')
  t.equal(error.statusCode, 504)
  t.match(error.message, /did not respond within 200 ms/)
  t.ok(elapsed >= 150 && elapsed < 2000, `gave up after ${elapsed} ms`)
})

void t.test('body that stalls times out', async (t) => {
  const idp = await startMockIdp(t)
  const error = await expectExchangeError(t, exchangeAt(exchangerFor(t, { timeoutMs: 200 }), issuerAt(idp.port, '/hang-body')))

  t.equal(error.code, 'OBO_EXCHANGE_TIMEOUT')
})

void t.test('oversized bodies are rejected', async (t) => {
  const idp = await startMockIdp(t)
  const exchanger = exchangerFor(t, { maxResponseBytes: 1024 })

  for (const path of ['/large-chunked', '/large-declared']) {
    const error = await expectExchangeError(t, exchangeAt(exchanger, issuerAt(idp.port, path)))
    t.equal(error.code, 'OBO_EXCHANGE_BAD_RESPONSE', path)
    t.match(error.message, /response body exceeds 1024 bytes/, path)
  }
})

void t.test('refused connection is IdpUnavailableError', async (t) => {
  const closed = createServer()
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
  const { port } = closed.address() as AddressInfo
  await new Promise<void>((resolve) => closed.close(() => resolve()))

  const error = await expectExchangeError(t, exchangeAt(exchangerFor(t), issuerAt(port, '/token')))
  t.equal(error.code, 'OBO_EXCHANGE_IDP_UNAVAILABLE')
  t.equal(error.statusCode, 502)
  t.match(error.message, /could not be reached \(ECONNREFUSED\)/)
})

void t.test('redirect is not followed', async (t) => {
  const idp = await startMockIdp(t)
  const error = await expectExchangeError(t, exchangeAt(exchangerFor(t), issuerAt(idp.port, '/redirect')))

  t.equal(error.code, 'OBO_EXCHANGE_BAD_RESPONSE')
  t.match(error.message, /HTTP 302, a redirect/)
  t.same(
    idp.received.map((request) => request.path),
    ['/redirect'],
    'the redirect target was not requested',
  )
})

void t.test('close leaves a passed dispatcher open', async (t) => {
  const idp = await startMockIdp(t)
  const dispatcher = new Agent()
  t.teardown(() => dispatcher.close())
  const exchanger = new TokenExchanger({ timeoutMs: 2000, defaultLifetimeSeconds: 300, secrets: new SecretReader(), dispatcher })

  await exchangeAt(exchanger, issuerAt(idp.port, '/token'))
  await exchanger.close()
  t.equal(dispatcher.closed, false)
  const token = await exchangeAt(exchanger, issuerAt(idp.port, '/token'))
  t.equal(token.accessToken, 'issued-token')
})
