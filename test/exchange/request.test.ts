import { Buffer } from 'node:buffer'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { SecretReader } from '../../src/config/secrets.js'
import { ACCESS_TOKEN_TYPE, GRANT_TYPE_URI, JWT_TOKEN_TYPE, type IssuerConfig } from '../../src/config/types.js'
import { buildExchangeRequest, type ExchangeInput } from '../../src/exchange/request.js'
import { issuerConfig } from '../helpers/issuer-config.js'

const SUBJECT_TOKEN = 'subject-token-SENTINEL-7f3a'

function exchangeInput(issuer: IssuerConfig, overrides: Partial<ExchangeInput> = {}): ExchangeInput {
  return { issuer, subjectToken: SUBJECT_TOKEN, audience: [], resource: [], scopes: [], ...overrides }
}

function parameterNames(body: string): string[] {
  return [...new URLSearchParams(body).keys()]
}

/** Reverses RFC 6749 section 2.3.1: base64, split at the one raw ':', then form-urldecode each half. */
function decodeBasic(header: string | undefined): { id: string; secret: string; raw: string } {
  if (header === undefined || !header.startsWith('Basic ')) throw new Error(`not a Basic header: ${header}`)
  const raw = Buffer.from(header.slice('Basic '.length), 'base64').toString('utf8')
  const separator = raw.indexOf(':')
  const formDecode = (value: string): string => decodeURIComponent(value.replace(/\+/g, ' '))
  return { id: formDecode(raw.slice(0, separator)), secret: formDecode(raw.slice(separator + 1)), raw }
}

void t.test('token-exchange sends only the required parameters by default', (t) => {
  const request = buildExchangeRequest(exchangeInput(issuerConfig()), new SecretReader())
  const form = new URLSearchParams(request.body)

  t.same(parameterNames(request.body), ['grant_type', 'subject_token', 'subject_token_type', 'client_id'])
  t.equal(form.get('grant_type'), GRANT_TYPE_URI['token-exchange'])
  t.equal(form.get('subject_token'), SUBJECT_TOKEN)
  t.equal(form.get('subject_token_type'), ACCESS_TOKEN_TYPE)
  t.equal(form.get('client_id'), 'sidecar')
  t.equal(request.url.href, 'https://idp.example.test/oauth2/token')
  t.same(request.headers, { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' })
  t.end()
})

void t.test('token-exchange sends every configured parameter', (t) => {
  const dir = t.testdir({ 'actor-token': 'actor-token-value\n' })
  const issuer = issuerConfig({
    actorToken: { source: { kind: 'file', path: join(dir, 'actor-token') }, type: JWT_TOKEN_TYPE },
    requestedTokenType: ACCESS_TOKEN_TYPE,
  })
  const input = exchangeInput(issuer, {
    audience: ['orders-api', 'billing-api'],
    resource: ['https://orders.example.test/', 'https://billing.example.test/'],
    scopes: ['orders:read', 'orders:write'],
  })
  const form = new URLSearchParams(buildExchangeRequest(input, new SecretReader()).body)

  t.equal(form.get('actor_token'), 'actor-token-value', 'actor token is trimmed')
  t.equal(form.get('actor_token_type'), JWT_TOKEN_TYPE)
  t.same(form.getAll('audience'), ['orders-api', 'billing-api'])
  t.same(form.getAll('resource'), ['https://orders.example.test/', 'https://billing.example.test/'])
  t.same(form.getAll('scope'), ['orders:read orders:write'])
  t.equal(form.get('requested_token_type'), ACCESS_TOKEN_TYPE)
  t.end()
})

void t.test('token-exchange omits each unconfigured optional parameter', (t) => {
  const cases: { name: string; input: Partial<ExchangeInput>; present: string }[] = [
    { name: 'audience', input: { audience: ['orders-api'] }, present: 'audience' },
    { name: 'resource', input: { resource: ['https://orders.example.test/'] }, present: 'resource' },
    { name: 'scope', input: { scopes: ['orders:read'] }, present: 'scope' },
  ]
  for (const testCase of cases) {
    const names = parameterNames(buildExchangeRequest(exchangeInput(issuerConfig(), testCase.input), new SecretReader()).body)
    t.ok(names.includes(testCase.present), `${testCase.name} sent when configured`)
    for (const other of ['audience', 'resource', 'scope', 'actor_token', 'actor_token_type', 'requested_token_type']) {
      if (other !== testCase.present) t.notOk(names.includes(other), `${other} absent when only ${testCase.name} is configured`)
    }
  }
  t.end()
})

void t.test('actor token is read again after rotation', (t) => {
  const dir = t.testdir({ 'actor-token': 'first-actor-token' })
  const path = join(dir, 'actor-token')
  const issuer = issuerConfig({ actorToken: { source: { kind: 'file', path }, type: JWT_TOKEN_TYPE } })
  const secrets = new SecretReader()

  const first = new URLSearchParams(buildExchangeRequest(exchangeInput(issuer), secrets).body)
  writeFileSync(path, 'rotated-actor-token-with-another-length')
  const second = new URLSearchParams(buildExchangeRequest(exchangeInput(issuer), secrets).body)

  t.equal(first.get('actor_token'), 'first-actor-token')
  t.equal(second.get('actor_token'), 'rotated-actor-token-with-another-length')
  t.end()
})

void t.test('jwt-bearer sends the on-behalf-of parameters', (t) => {
  const dir = t.testdir({ 'actor-token': 'actor-token-value' })
  const issuer = issuerConfig({
    grant: 'jwt-bearer',
    actorToken: { source: { kind: 'file', path: join(dir, 'actor-token') }, type: JWT_TOKEN_TYPE },
  })
  const input = exchangeInput(issuer, {
    audience: ['ignored-audience'],
    resource: ['https://ignored.example.test/'],
    scopes: ['https://graph.microsoft.com/user.read', 'offline_access'],
  })
  const form = new URLSearchParams(buildExchangeRequest(input, new SecretReader()).body)

  t.same(parameterNames(form.toString()), ['grant_type', 'assertion', 'scope', 'requested_token_use', 'client_id'])
  t.equal(form.get('grant_type'), GRANT_TYPE_URI['jwt-bearer'])
  t.equal(form.get('assertion'), SUBJECT_TOKEN)
  t.equal(form.get('scope'), 'https://graph.microsoft.com/user.read offline_access')
  t.equal(form.get('requested_token_use'), 'on_behalf_of')
  t.end()
})

void t.test('jwt-bearer sends requested_token_type only when configured', (t) => {
  const saml2 = 'urn:ietf:params:oauth:token-type:saml2'
  const withType = buildExchangeRequest(
    exchangeInput(issuerConfig({ grant: 'jwt-bearer', requestedTokenType: saml2 })),
    new SecretReader(),
  )
  const withoutType = buildExchangeRequest(exchangeInput(issuerConfig({ grant: 'jwt-bearer' })), new SecretReader())

  t.equal(new URLSearchParams(withType.body).get('requested_token_type'), saml2)
  t.notOk(parameterNames(withoutType.body).includes('requested_token_type'))
  t.notOk(parameterNames(withoutType.body).includes('scope'), 'scope absent when no scopes are configured')
  t.end()
})

void t.test('client_secret_basic form-urlencodes id and secret', (t) => {
  const secret = 'a+b/c:d%e f'
  const dir = t.testdir({ secret })
  const issuer = issuerConfig({
    clientId: 'my client:1',
    clientAuth: 'client_secret_basic',
    clientSecret: { kind: 'file', path: join(dir, 'secret') },
  })
  const request = buildExchangeRequest(exchangeInput(issuer), new SecretReader())
  const decoded = decodeBasic(request.headers.authorization)

  t.equal(decoded.raw, 'my+client%3A1:a%2Bb%2Fc%3Ad%25e+f')
  t.equal(decoded.id, 'my client:1')
  t.equal(decoded.secret, secret)
  t.notOk(parameterNames(request.body).includes('client_id'), 'no client_id in the body')
  t.notOk(parameterNames(request.body).includes('client_secret'), 'no client_secret in the body')
  t.end()
})

void t.test('client_secret_post sends id and secret in the body', (t) => {
  const variable = 'OBO_TEST_REQUEST_CLIENT_SECRET'
  process.env[variable] = 'post-secret'
  t.teardown(() => {
    delete process.env[variable]
  })
  const issuer = issuerConfig({ clientAuth: 'client_secret_post', clientSecret: { kind: 'env', name: variable } })
  const request = buildExchangeRequest(exchangeInput(issuer), new SecretReader())
  const form = new URLSearchParams(request.body)

  t.equal(form.get('client_id'), 'sidecar')
  t.equal(form.get('client_secret'), 'post-secret')
  t.equal(request.headers.authorization, undefined)
  t.end()
})

void t.test('clientAuth none sends only client_id', (t) => {
  const request = buildExchangeRequest(exchangeInput(issuerConfig()), new SecretReader())
  const form = new URLSearchParams(request.body)

  t.equal(form.get('client_id'), 'sidecar')
  t.notOk(form.has('client_secret'))
  t.equal(request.headers.authorization, undefined)
  t.end()
})

void t.test('unreadable secrets raise SecretUnavailableError', (t) => {
  const missingVariable = issuerConfig({
    clientAuth: 'client_secret_post',
    clientSecret: { kind: 'env', name: 'OBO_TEST_REQUEST_UNSET_VARIABLE' },
  })
  const noSecretConfigured = issuerConfig({ clientAuth: 'client_secret_basic', clientSecret: undefined })

  for (const issuer of [missingVariable, noSecretConfigured]) {
    t.throws(() => buildExchangeRequest(exchangeInput(issuer), new SecretReader()), {
      code: 'OBO_SECRET_UNAVAILABLE',
      message: /issuer "corp" clientSecret/,
    })
  }
  t.end()
})

void t.test('url is a copy of the configured endpoint', (t) => {
  const issuer = issuerConfig()
  const request = buildExchangeRequest(exchangeInput(issuer), new SecretReader())

  t.not(request.url, issuer.tokenEndpoint)
  t.equal(request.url.href, issuer.tokenEndpoint.href)
  t.end()
})
